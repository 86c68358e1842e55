"""The event bus actor: fans events out to subscribers, each with its own bounded drop-oldest queue and drop counter,
so a slow viewer never slows trading; and pushes chosen kinds to actors that follow them (:meth:`EventBusActor.forward`:
the risk actor's marks), dropping what a slow follower has no room for, counted, and never waiting on it.

What must arrive whole does not go through the bus: an OMS that died never published its last events, and a restarted
bus starts empty. The risk actor's fills come from the OMS, numbered and acknowledged (:class:`.risk.RiskFeed`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .backpressure import DropOldestQueue
from .batches import BookTopBatch
from .spec import CallWindow

__all__ = ["EventBusActor", "Settled"]


@dataclass(frozen=True, slots=True)
class Settled:
    """A marker the OMS puts on the bus for one subscriber (:meth:`OmsActor.barrier`): every event the engine made
    before it, including the venues' answers to every request sent so far, is already in that subscriber's queue."""

    subscriber: int
    token: int


class EventBusActor:
    """Fans events out to subscribers (see the module docstring)."""

    def __init__(self, subscriber_queue: int) -> None:
        self.default_queue = subscriber_queue
        self.queues: dict[int, DropOldestQueue] = {}
        self.filters: dict[int, frozenset[str] | None] = {}
        self.next_id = 0
        self.published = 0
        self.batches = 0
        self.forwards: list[tuple[str, Any, frozenset[str], CallWindow]] = []

    def forward(self, actor: Any, kinds: Sequence[str], window: int = 64, name: str = "forward") -> int:
        """Push every event of ``kinds`` to ``actor.apply(events)`` one-way, at most ``window`` calls in flight; a
        batch with no room is dropped and counted (``status()["forwards"][name]``): for events a newer one
        supersedes, like the risk actor's marks. Of a columnar batch of tops only each symbol's latest is pushed.
        Replaces an earlier forward to the same actor."""
        self.forwards = [f for f in self.forwards if f[1] != actor]
        self.forwards.append((name, actor, frozenset(kinds), CallWindow(window)))
        return len(self.forwards)

    def _forward(self, events: Sequence[Any] | BookTopBatch) -> None:
        for _, actor, kinds, window in self.forwards:
            if type(events) is BookTopBatch:
                chosen: list[Any] = list(events.latest().values()) if "BookTop" in kinds else []
            else:
                chosen = [e for e in events if type(e).__name__ in kinds]
            if chosen:
                window.send(actor.apply, chosen, drop=True)

    def publish(self, events: Sequence[Any] | BookTopBatch) -> int:
        """Queue ``events`` (a list of messages, or a columnar batch kept whole) for every subscriber."""
        self.batches += 1
        if self.forwards:
            self._forward(events)
        if type(events) is BookTopBatch:
            self.published += len(events)
            for sid, queue in self.queues.items():
                kinds = self.filters[sid]
                if kinds is None or "BookTop" in kinds:
                    queue.put(events, len(events))
            return len(events)
        markers = [e for e in events if type(e) is Settled]
        if markers:
            events = [e for e in events if type(e) is not Settled]
        self.published += len(events)
        for sid, queue in self.queues.items():
            kinds = self.filters[sid]
            if kinds is None:
                queue.put_many(events)  # type: ignore[arg-type]
            else:
                queue.put_many([e for e in events if type(e).__name__ in kinds])  # type: ignore[union-attr]
        for marker in markers:  # a marker goes to its own subscriber only
            queue = self.queues.get(marker.subscriber)
            if queue is not None:
                queue.put(marker)
        return len(events)

    def subscribe(self, maxlen: int | None = None, kinds: Sequence[str] | None = None) -> int:
        self.next_id += 1
        self.queues[self.next_id] = DropOldestQueue(maxlen or self.default_queue)
        self.filters[self.next_id] = frozenset(kinds) if kinds else None
        return self.next_id

    def unsubscribe(self, sid: int) -> None:
        self.queues.pop(sid, None)
        self.filters.pop(sid, None)

    def poll(self, sid: int, limit: int = 10_000) -> tuple[list[Any], int]:
        """Up to ``limit`` queued events of subscriber ``sid`` and how many it has dropped so far."""
        queue = self.queues.get(sid)
        if queue is None:
            return [], -1
        return queue.take(limit), queue.dropped

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "last_seq": self.batches,
            "published": self.published,
            "subscribers": {
                str(sid): {"queued": len(q), "limit": q.maxlen, "dropped": q.dropped, "delivered": q.delivered}
                for sid, q in self.queues.items()
            },
            "forwards": {
                name: {"kinds": sorted(kinds), "sent": w.sent, "dropped": w.dropped, "in_flight": w.depth()}
                for name, _, kinds, w in self.forwards
            },
        }

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.batches

    def close(self) -> None:
        self.queues.clear()
