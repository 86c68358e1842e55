"""Backpressure primitives: a bounded drop-oldest queue for low-priority streams, an in-flight window for orders.

Both are plain, single-threaded classes (no Ray): an actor owns one and the overflow is an explicit, counted outcome
(Ray ``serve/_private/router.py``; ``doc/source/ray-core/patterns/limit-pending-tasks.rst``):

- a slow subscriber never slows trading: its :class:`DropOldestQueue` keeps the newest ``maxlen`` items and counts
  what it dropped;
- order flow is never dropped silently: an :class:`InFlightWindow` that is full refuses the order and the refusal
  says how deep the inbox was and what the limit is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

__all__ = ["DropOldestQueue", "InFlightWindow"]


class DropOldestQueue:
    """A FIFO of at most ``maxlen`` items; a put into a full queue evicts the oldest item and counts it."""

    __slots__ = ("_items", "maxlen", "dropped", "delivered")

    def __init__(self, maxlen: int) -> None:
        if maxlen <= 0:
            raise ValueError(f"queue length must be positive, got {maxlen}")
        self.maxlen = maxlen
        self._items: deque[Any] = deque(maxlen=maxlen)
        self.dropped = 0
        self.delivered = 0

    def __len__(self) -> int:
        return len(self._items)

    def put_many(self, items: Iterable[Any]) -> None:
        batch = items if isinstance(items, (list, tuple)) else list(items)
        overflow = len(self._items) + len(batch) - self.maxlen
        if overflow > 0:
            self.dropped += overflow
        self._items.extend(batch)

    def take(self, limit: int) -> list[Any]:
        items = self._items
        count = min(limit, len(items))
        if count == len(items):
            out = list(items)
            items.clear()
        else:
            out = [items.popleft() for _ in range(count)]
        self.delivered += len(out)
        return out


class InFlightWindow:
    """Counts requests admitted but not yet completed; refuses a request when ``limit`` are in flight."""

    __slots__ = ("limit", "depth", "rejected", "peak")

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"in-flight limit must be positive, got {limit}")
        self.limit = limit
        self.depth = 0
        self.rejected = 0
        self.peak = 0

    def admit(self) -> bool:
        if self.depth >= self.limit:
            self.rejected += 1
            return False
        self.depth += 1
        if self.depth > self.peak:
            self.peak = self.depth
        return True

    def done(self, count: int = 1) -> None:
        self.depth = max(0, self.depth - count)

    def refusal(self, what: str = "order inbox") -> str:
        return f"{what} full: depth {self.depth} at limit {self.limit}"
