"""Backpressure primitives: pure code, no Ray (columnar market batches: ``tests/core/test_market_batch.py``)."""

from __future__ import annotations

import pytest

from veloz_actors.actors.backpressure import DropOldestQueue, InFlightWindow


def test_a_full_queue_drops_the_oldest_and_counts_them():
    queue = DropOldestQueue(3)
    queue.put_many(range(5))
    assert len(queue) == 3 and queue.dropped == 2
    assert queue.take(10) == [2, 3, 4]
    assert queue.delivered == 3 and len(queue) == 0


def test_a_batch_counts_as_its_events_and_is_dropped_whole():
    queue = DropOldestQueue(10)
    queue.put("batch-a", 6)
    queue.put("batch-b", 6)
    assert queue.take(100) == ["batch-b"]
    assert queue.dropped == 6 and queue.delivered == 6


def test_take_returns_at_most_the_limit_of_single_events():
    queue = DropOldestQueue(100)
    queue.put_many(range(10))
    assert queue.take(4) == [0, 1, 2, 3]
    assert len(queue) == 6


def test_a_full_window_refuses_with_depth_and_limit():
    window = InFlightWindow(2)
    assert window.admit() and window.admit()
    assert not window.admit()
    assert window.refusal() == "order inbox full: depth 2 at limit 2"
    assert window.rejected == 1
    window.done()
    assert window.admit()


def test_a_window_shared_by_threads_ends_empty_after_as_many_dones_as_admits():
    """One engine handle used from a notebook's threads shares its window. Before: unlocked ``depth += 1`` lost
    updates (depth 8 after 800,000 balanced admits and dones here), drifting toward refusing every order."""
    import sys
    import threading

    window = InFlightWindow(10**9)

    def admit_and_complete() -> None:
        for _ in range(100_000):
            window.admit()
            window.done()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the lost update shows in every run
    try:
        threads = [threading.Thread(target=admit_and_complete) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert window.depth == 0
    assert window.peak <= 4


def test_a_held_slot_is_given_back_once_and_a_key_never_held_frees_nothing():
    """A request collected twice, or an answer that was never admitted, must not free the slot of a request still
    in flight (before, the handle gave back one slot per item it was handed)."""
    window = InFlightWindow(3)
    for key in ("a", "b"):
        assert window.admit()
        window.hold(key)
    window.release(["a", "a", "never-admitted"])
    assert window.depth == 1  # b is still in flight
    window.release(["a"])
    assert window.depth == 1
    window.release(["b"])
    assert window.depth == 0


@pytest.mark.parametrize("bad", [0, -1])
def test_limits_must_be_positive(bad):
    with pytest.raises(ValueError, match="positive"):
        DropOldestQueue(bad)
    with pytest.raises(ValueError, match="positive"):
        InFlightWindow(bad)


def test_symbols_can_be_sharded_into_one_book_actor_by_config():
    from veloz_actors.actors.api import build_spec

    from .helpers import file_config

    spec = build_spec(file_config(shards={"majors": ["BTCUSDT", "ETHUSDT"]}))
    assert spec.shards == {"majors": ("BTCUSDT", "ETHUSDT")}
    assert build_spec(file_config()).shards == {"BTCUSDT": ("BTCUSDT",), "ETHUSDT": ("ETHUSDT",)}
