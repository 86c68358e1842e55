"""Pacing a recorded market stream: batches handed out when their receive times come due, scaled by a speed.

A recording (:func:`~veloz_actors.data.loaders.load_market_events`) keeps each event's local receive time
(``ts_recv``, ns). :class:`ReplayPacer` replays it against a clock: at ``speed`` 1 an event is due as long after the
first one as it was received after it, at 10 ten times sooner, at 0 at once. It only decides *when* and *what*; the
caller delivers (the feed actor hands each batch to its book shards) and decides how to wait, so the pacer runs the
same in a thread, a test with a fake clock, or a script::

    pacer = ReplayPacer(events, speed=10, batch=1000)
    for batch in pacer.batches(stop.wait):       # stop.wait(seconds) -> True when it is time to stop
        deliver(batch)

Each batch holds the next event (once it is due) and every later one already due by then, at most ``batch`` of
them; so a replay that falls behind catches up in full batches, and one that keeps up sends small ones on time.
Pure: no threads, no Ray; the clock is injected.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from typing import Generic, Protocol, TypeVar

from .._exceptions import InvalidInput

__all__ = ["ReplayPacer"]

MAX_WAIT_SECONDS = 0.25  # the longest single wait, so a stop request is seen within this


class _Received(Protocol):
    @property
    def ts_recv(self) -> int: ...


E = TypeVar("E", bound=_Received)


class ReplayPacer(Generic[E]):
    """Cuts ``events`` (ordered by ``ts_recv``) into batches paced by their receive times (see the module docstring).

    ``start`` resumes a replay at that index (its event is then due at once). ``clock`` returns monotonic integer
    nanoseconds (``time.monotonic_ns``); inject a fake one in tests.
    """

    def __init__(
        self,
        events: list[E],
        *,
        speed: float = 1.0,
        batch: int = 1000,
        start: int = 0,
        clock: Callable[[], int] = time.monotonic_ns,
        max_wait_seconds: float = MAX_WAIT_SECONDS,
    ) -> None:
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not math.isfinite(speed) or speed < 0:
            raise InvalidInput(f"replay speed must be a finite number >= 0, got {speed!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidInput(f"replay batch must be an integer >= 1, got {batch!r}")
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= len(events):
            raise InvalidInput(f"replay start must be within 0..{len(events)}, got {start!r}")
        if not max_wait_seconds > 0:
            raise InvalidInput(f"max_wait_seconds must be positive, got {max_wait_seconds!r}")
        self.events = events
        self.speed = float(speed)
        self.batch = batch
        self.start = start
        self.clock = clock
        self.max_wait_seconds = max_wait_seconds

    def batches(self, wait: Callable[[float], bool]) -> Generator[list[E], None, None]:
        """Yield the batches in order, each once it is due. ``wait(seconds)`` pauses up to that long and returns True
        to stop the replay (``threading.Event.wait`` does both). Breaking out of the loop stops it too."""
        events, n = self.events, len(self.events)
        i = self.start
        if i >= n:
            return
        if self.speed == 0:
            while i < n:
                end = min(i + self.batch, n)
                yield events[i:end]
                i = end
            return
        speed, clock, limit = self.speed, self.clock, self.batch
        origin_ts = events[i].ts_recv
        origin_wall = clock()
        while i < n:
            delay = (origin_wall + (events[i].ts_recv - origin_ts) / speed - clock()) / 1e9
            if delay > 0:
                if wait(min(delay, self.max_wait_seconds)):
                    return
                if delay > self.max_wait_seconds:
                    continue  # woke up early on purpose: look at the clock again
            due_ts = origin_ts + (clock() - origin_wall) * speed
            end = i + 1
            while end < n and end - i < limit and events[end].ts_recv <= due_ts:
                end += 1
            yield events[i:end]
            i = end
