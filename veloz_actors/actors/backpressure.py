"""Backpressure primitives: a bounded drop-oldest queue for low-priority streams, an in-flight window for orders.

Both are plain, single-threaded classes (no Ray): an actor owns one and the overflow is an explicit, counted outcome
(Ray ``serve/_private/router.py``; ``doc/source/ray-core/patterns/limit-pending-tasks.rst``):

- a slow subscriber never slows trading: its :class:`DropOldestQueue` keeps the newest ``maxlen`` items and counts
  what it dropped;
- order flow is never dropped silently: an :class:`InFlightWindow` that is full refuses the order and the refusal
  says how deep the inbox was and what the limit is.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from ..messages import OrderRejected, RejectReason

__all__ = ["DropOldestQueue", "InFlightWindow", "overloaded"]


class DropOldestQueue:
    """A FIFO of at most ``maxlen`` events; a put into a full queue evicts the oldest and counts what it evicted.

    An item may stand for several events (a columnar batch of market data): :meth:`put` takes its ``weight``, and
    the limit and the counters are in events, so a batch is kept or dropped whole.
    """

    __slots__ = ("_items", "maxlen", "size", "dropped", "delivered")

    def __init__(self, maxlen: int) -> None:
        if maxlen <= 0:
            raise ValueError(f"queue length must be positive, got {maxlen}")
        self.maxlen = maxlen
        self._items: deque[tuple[Any, int]] = deque()
        self.size = 0
        self.dropped = 0
        self.delivered = 0

    def __len__(self) -> int:
        return self.size

    def put(self, item: Any, weight: int = 1) -> None:
        self._items.append((item, weight))
        self.size += weight
        self._evict()

    def put_many(self, items: Iterable[Any]) -> None:
        append = self._items.append
        count = 0
        for item in items:
            append((item, 1))
            count += 1
        self.size += count
        self._evict()

    def _evict(self) -> None:
        items = self._items
        while self.size > self.maxlen and items:
            _, weight = items.popleft()
            self.size -= weight
            self.dropped += weight

    def take(self, limit: int) -> list[Any]:
        """The oldest items, up to ``limit`` events (at least one item when any is queued)."""
        items = self._items
        out: list[Any] = []
        taken = 0
        while items and (taken < limit or not out):
            item, weight = items.popleft()
            out.append(item)
            taken += weight
        self.size -= taken
        self.delivered += taken
        return out


class InFlightWindow:
    """Counts requests admitted but not yet completed; refuses a request when ``limit`` are in flight.

    Thread-safe: one engine handle is shared by a notebook's threads, and ``depth += 1`` is no atomic step (lost
    updates left the depth drifting up, toward refusing every order as OVERLOADED)."""

    __slots__ = ("limit", "depth", "rejected", "peak", "_held", "_lock")

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"in-flight limit must be positive, got {limit}")
        self.limit = limit
        self.depth = 0
        self.rejected = 0
        self.peak = 0
        self._held: set[str] = set()  # the keys of slots taken by :meth:`hold`, each given back once
        self._lock = threading.Lock()

    def admit(self) -> bool:
        with self._lock:
            if self.depth >= self.limit:
                self.rejected += 1
                return False
            self.depth += 1
            if self.depth > self.peak:
                self.peak = self.depth
            return True

    def done(self, count: int = 1) -> None:
        with self._lock:
            self.depth = max(0, self.depth - count)

    def hold(self, key: str) -> None:
        """The slot just admitted is ``key``'s (a request whose answer is collected later, perhaps twice)."""
        with self._lock:
            self._held.add(key)

    def release(self, keys: Iterable[str]) -> None:
        """Give back the slots of ``keys`` held by :meth:`hold`; a key not held (never admitted, or given back
        already) frees nothing, so a request collected twice cannot free another request's slot."""
        with self._lock:
            held = self._held
            freed = 0
            for key in keys:
                if key in held:
                    held.discard(key)
                    freed += 1
            self.depth = max(0, self.depth - freed)

    def refusal(self, what: str = "order inbox") -> str:
        return f"{what} full: depth {self.depth} at limit {self.limit}"


def overloaded(command: Any, detail: str) -> OrderRejected:
    """The ``OrderRejected`` (reason ``OVERLOADED``) that answers a command a full :class:`InFlightWindow` refused,
    an order's or a cancel's, ``detail`` saying how full (:meth:`InFlightWindow.refusal`)."""
    return OrderRejected(
        client_order_id=command.client_order_id,
        account_id=command.account_id,
        symbol=getattr(command, "symbol", ""),
        side=getattr(command, "side", None),
        order_type=getattr(command, "order_type", None),
        price=getattr(command, "price", None),
        qty=getattr(command, "qty", 0),
        reason=RejectReason.OVERLOADED,
        detail=detail,
        ts=command.ts,
    )
