"""The feed's market data to a busy venue actor (:class:`MergingWindow`): batches that come while a call is in flight
go together in the next call, every row in order and none lost; a peer that keeps up gets each batch in its own call;
past the row bound a batch goes anyway; and a flush sends what waits."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import ray

from tests.ray_fixtures import RayRuntime
from veloz_actors.actors.spec import _MERGE_ROWS, MergingWindow
from veloz_actors.core.market_batch import MarketBatch


@ray.remote(num_cpus=0, max_task_retries=0)
class _Peer:
    """Records the update ids of every ``apply`` call, taking ``seconds`` over each."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: list[list[int]] = []

    def apply(self, batch: MarketBatch) -> int:
        time.sleep(self.seconds)
        self.calls.append([top.update_id for top in batch.events()])
        return len(batch)

    def received(self) -> list[list[int]]:
        return self.calls


def _tops(first: int, count: int) -> MarketBatch:
    ids = np.arange(first, first + count)
    columns = {"symbol": ids % 2, "bid_price": 100, "bid_qty": 1, "ask_price": 102, "ask_qty": 1, "update_id": ids,
               "ts_event": ids, "ts_recv": ids}  # fmt: skip
    return MarketBatch.of_tops(("BTCUSDT", "ETHUSDT"), columns)


def _received(peer: Any, window: MergingWindow) -> list[list[int]]:
    window.wait_all(30.0)
    return ray.get(peer.received.remote(), timeout=30)


def test_a_busy_peer_takes_the_batches_that_came_meanwhile_in_one_call_in_order(ray_runtime: RayRuntime) -> None:
    peer = _Peer.remote(0.3)
    window = MergingWindow(64, peer.apply)
    for k in range(20):
        window.send(_tops(k * 10, 10))
    calls = _received(peer, window)
    assert len(calls) == 2  # the first at once; the other 19 waited for it and went as one
    assert [len(call) for call in calls] == [10, 190]
    assert [i for call in calls for i in call] == list(range(200))
    assert window.merged == 18


def test_a_peer_that_keeps_up_gets_each_batch_in_its_own_call(ray_runtime: RayRuntime) -> None:
    peer = _Peer.remote(0.0)
    window = MergingWindow(64, peer.apply)
    for k in range(5):
        window.send(_tops(k * 10, 10))
        window.window.wait_all(30.0)  # the peer took it before the next comes
    calls = _received(peer, window)
    assert [len(call) for call in calls] == [10] * 5
    assert window.merged == 0


def test_past_the_row_bound_a_batch_goes_without_waiting_for_the_busy_peer(ray_runtime: RayRuntime) -> None:
    peer = _Peer.remote(0.3)
    window = MergingWindow(64, peer.apply)
    size = _MERGE_ROWS // 4
    for k in range(9):
        window.send(_tops(k * size, size))
    assert window.window.depth() >= 2  # two went while the first call was still in flight
    calls = _received(peer, window)
    assert [len(call) for call in calls] == [size, 4 * size, 4 * size]
    assert [i for call in calls for i in call] == list(range(9 * size))


def test_flush_sends_what_waits(ray_runtime: RayRuntime) -> None:
    peer = _Peer.remote(0.3)
    window = MergingWindow(64, peer.apply)
    window.send(_tops(0, 10))
    window.send(_tops(10, 10))  # waits: the first call is in flight
    assert window.rows == 10
    window.flush()
    assert window.rows == 0 and window.window.depth() == 2
    assert [len(call) for call in _received(peer, window)] == [10, 10]
