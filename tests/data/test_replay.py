"""The replay pacer: batches come due at their receive times divided by the speed, against an injected clock."""

from __future__ import annotations

import pytest

from veloz_actors import InvalidInput
from veloz_actors.data.replay import ReplayPacer
from veloz_actors.messages import Trade
from veloz_actors.testing import FakeClock, trade

MS = 1_000_000
T0 = 1_700_000_000_000_000_000  # a recording's first receive time, ns


def _recording(*offsets_ms: int) -> list[Trade]:
    return [trade("60000", ts=T0 + ms * MS, trade_id=k + 1) for k, ms in enumerate(offsets_ms)]


class _Run:
    """Drives a pacer with a fake clock: every wait advances the clock by exactly what was asked."""

    def __init__(self, clock: FakeClock, *, stop_after_waits: int | None = None) -> None:
        self.clock = clock
        self.started = clock.now
        self.waits: list[float] = []
        self.stop_after_waits = stop_after_waits

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.clock.advance(round(seconds * 1e9))
        return self.stop_after_waits is not None and len(self.waits) >= self.stop_after_waits

    def collect(self, pacer: ReplayPacer, *, busy_ms: int = 0) -> list[tuple[int, list[int]]]:
        """(ms since the start when the batch was handed out, its trade ids), one per batch."""
        out = []
        for batch in pacer.batches(self.wait):
            out.append(((self.clock.now - self.started) // MS, [e.trade_id for e in batch]))
            self.clock.advance(busy_ms * MS)  # the time the caller takes to deliver it
        return out


def test_at_speed_zero_the_recording_goes_out_at_once_in_full_batches() -> None:
    clock = FakeClock(now=0)
    run = _Run(clock)
    batches = run.collect(ReplayPacer(_recording(0, 10, 20, 30, 40), speed=0, batch=2, clock=clock))
    assert batches == [(0, [1, 2]), (0, [3, 4]), (0, [5])]
    assert run.waits == []


def test_at_speed_one_each_event_goes_out_at_its_receive_time() -> None:
    clock = FakeClock(now=0)
    run = _Run(clock)
    batches = run.collect(ReplayPacer(_recording(0, 100, 200, 1000, 1050), speed=1, clock=clock))
    assert batches == [(0, [1]), (100, [2]), (200, [3]), (1000, [4]), (1050, [5])]
    assert max(run.waits) == pytest.approx(0.25)  # a long gap is slept in short waits, so a stop is seen soon


def test_speed_divides_the_gaps() -> None:
    clock = FakeClock(now=0)
    batches = _Run(clock).collect(ReplayPacer(_recording(0, 100, 200, 1000), speed=10, clock=clock))
    assert batches == [(0, [1]), (10, [2]), (20, [3]), (100, [4])]


def test_events_received_together_go_out_together() -> None:
    clock = FakeClock(now=0)
    batches = _Run(clock).collect(ReplayPacer(_recording(0, 0, 0, 500, 500), speed=1, clock=clock))
    assert batches == [(0, [1, 2, 3]), (500, [4, 5])]


def test_a_slow_consumer_catches_up_in_batches_of_at_most_the_limit() -> None:
    clock = FakeClock(now=0)
    recording = _recording(*range(0, 100, 10))  # ten events 10 ms apart
    batches = _Run(clock).collect(ReplayPacer(recording, speed=1, batch=3, clock=clock), busy_ms=45)
    assert [ids for _, ids in batches] == [[1], [2, 3, 4], [5, 6, 7], [8, 9, 10]]
    assert all(len(ids) <= 3 for _, ids in batches)


def test_a_resumed_replay_starts_at_its_offset_at_once() -> None:
    clock = FakeClock(now=0)
    batches = _Run(clock).collect(ReplayPacer(_recording(0, 100, 5000, 5100), speed=1, start=2, clock=clock))
    assert batches == [(0, [3]), (100, [4])]
    assert _Run(clock).collect(ReplayPacer(_recording(0, 100), start=2, clock=clock)) == []


def test_a_stop_during_a_wait_ends_the_replay() -> None:
    clock = FakeClock(now=0)
    run = _Run(clock, stop_after_waits=2)
    batches = run.collect(ReplayPacer(_recording(0, 1000, 2000), speed=1, clock=clock))
    assert batches == [(0, [1])]


def test_a_caller_that_stops_reading_gets_no_more_batches() -> None:
    clock = FakeClock(now=0)
    pacer = ReplayPacer(_recording(0, 0, 0), speed=0, batch=1, clock=clock)
    batches = pacer.batches(lambda seconds: False)
    first = next(batches)
    batches.close()
    assert [e.trade_id for e in first] == [1]
    assert list(batches) == []


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"speed": -1}, "speed"),
        ({"speed": float("nan")}, "speed"),
        ({"batch": 0}, "batch"),
        ({"batch": 2.5}, "batch"),
        ({"start": 4}, "start"),
        ({"start": -1}, "start"),
    ],
)
def test_bad_settings_are_refused_at_construction(kwargs: dict, named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        ReplayPacer(_recording(0, 10, 20), **kwargs)
