"""The event bus actor: fans events out to subscribers, each with its own bounded drop-oldest queue and drop counter,
so a slow viewer never slows trading; and pushes chosen kinds to actors that follow them (:meth:`EventBusActor.forward`:
the risk actor's marks), one call in flight per follower and at most one per 10 ms, merging what comes meanwhile,
and never waiting on it.

What must arrive whole does not go through the bus: an OMS that died never published its last events, and a restarted
bus starts empty. The risk actor's fills come from the OMS, numbered and acknowledged (:class:`.risk.RiskFeed`).

Subscriber ids are never reused, not even by a restarted bus (each incarnation counts up from a random 48-bit start),
so a client holding an id its bus no longer knows (the bus restarted, or dropped the subscription after
``idle_seconds`` without a poll) always hears that it is unknown (``dropped == -1``), subscribes again and counts the
gap; it never reads another client's queue, and an OMS ``Settled`` marker addressed to it reaches nobody else."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import ray

from .._exceptions import InvalidInput, quoted
from ..config import MAX_SUBSCRIBER_QUEUE
from ..logs import LogSettings, log_file_status
from ..messages import BookTop, Event, MarketEvent
from .backpressure import DropOldestQueue
from .batches import MarketBatch
from .spec import start_actor_process

__all__ = ["BUS_CONCURRENCY_GROUPS", "EVENT_KINDS", "EventBusActor", "Settled", "check_subscription"]

# ``poll_wait`` runs in a concurrency group of its own, so a subscriber's poll may wait for new events without holding
# up publishing. Every other method (``poll`` too) stays in the default group: one thread, so the publishes of each
# caller run in the order they were sent (Ray keeps per-caller order for an actor whose default group has one thread
# and that does not allow out-of-order execution).
BUS_CONCURRENCY_GROUPS = {"poll": 8}
_MAX_POLL_WAIT = 0.25  # seconds a poll may wait for events
_TOPS = frozenset({"BookTop"})  # a forward takes only each symbol's latest top of a columnar batch
_FORWARD_PENDING = 10_000  # events a forward keeps while its call is in flight (beyond: the oldest go, counted)
_FORWARD_EVERY = 0.01  # a follower gets at most one call per 10 ms (what comes meanwhile merges into it)
_FORWARD_FLUSH_SECONDS = _FORWARD_EVERY / 2  # the flusher's look at what waits: it goes at most ~5 ms late
_EXPIRY_CHECK_SECONDS = 1.0  # idle subscriptions are looked for at most once a second


@dataclass(frozen=True, slots=True)
class Settled:
    """A marker the OMS puts on the bus for one subscriber (:meth:`OmsActor.barrier`): every event the engine made
    before it, including the venues' answers to every request sent so far, is already in that subscriber's queue."""

    subscriber: int
    token: int


# What a subscriber may filter on: the type names of what the bus carries (market data from the feed and venues, the
# engine's events from the OMS) and the OMS's Settled marker. Commands and venue reports never reach the bus.
EVENT_KINDS = frozenset(cls.TYPE for cls in (*get_args(MarketEvent), *get_args(Event))) | {"Settled"}


def check_subscription(max_queue: Any, kinds: Any) -> tuple[str, ...] | None:
    """``kinds`` as a tuple of names (None: every kind) once ``max_queue`` and ``kinds`` are valid: :class:`InvalidInput`
    naming the argument otherwise. A misspelt kind would make a subscription that silently never yields."""
    if max_queue is not None and (isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1):
        raise InvalidInput(
            f"max_queue must be a positive int or None, got {type(max_queue).__name__} {quoted(max_queue)}"
        )
    if max_queue is not None and max_queue > MAX_SUBSCRIBER_QUEUE:
        raise InvalidInput(f"max_queue must be at most {MAX_SUBSCRIBER_QUEUE:,} events, got {quoted(max_queue)}")
    if kinds is None:
        return None
    if not isinstance(kinds, list | tuple | set | frozenset) or not kinds:
        raise InvalidInput(
            f"kinds must be a non-empty list of event type names or None (every kind), got {type(kinds).__name__} "
            f"{quoted(kinds)}"
        )
    unknown = [kind for kind in kinds if not isinstance(kind, str) or kind not in EVENT_KINDS]
    if unknown:
        raise InvalidInput(f"kinds: unknown event type {quoted(unknown[0])}; known: {', '.join(sorted(EVENT_KINDS))}")
    return tuple(kinds)


def _latest_tops(events: list[Any]) -> list[Any]:
    """``events`` with each symbol's top of book kept only where it last comes (everything else as it was)."""
    seen: set[str] = set()
    kept = []
    for event in reversed(events):
        if type(event) is BookTop:
            if event.symbol in seen:
                continue
            seen.add(event.symbol)
        kept.append(event)
    kept.reverse()
    return kept


class Forward:
    """The chosen kinds of every publish, pushed to one follower's ``apply`` one-way with at most one call in flight.

    What comes while a call is in flight, or within ``_FORWARD_EVERY`` of the last call, waits and goes with the
    next one, a symbol's tops of book merged into the latest (a follower of marks needs the newest, not each one), so
    under load a follower costs at most one call per round trip and per 10 ms instead of one per publish, and after
    a quiet spell a publish goes at once. A follower that stops answering never holds the bus up: past
    ``_FORWARD_PENDING`` waiting events the oldest are dropped, counted."""

    __slots__ = ("name", "actor", "kinds", "others", "pending", "in_flight", "last", "sent", "dropped")

    def __init__(self, name: str, actor: Any, kinds: Sequence[str]) -> None:
        self.name, self.actor, self.kinds = name, actor, frozenset(kinds)
        self.others = self.kinds - _TOPS
        self.pending: list[Any] = []
        self.in_flight: Any = None
        self.last = 0.0  # monotonic time of the last call
        self.sent = 0
        self.dropped = 0

    def add(self, events: Sequence[Any] | MarketBatch) -> None:
        pending = self.pending
        if type(events) is MarketBatch:
            if self.others:
                pending.extend(events.select(self.others).events())
            if "BookTop" in self.kinds:
                pending.extend(events.latest().values())
        else:
            kinds = self.kinds
            pending.extend(e for e in events if type(e).__name__ in kinds)  # type: ignore[union-attr]
        if len(pending) > _FORWARD_PENDING:
            self.pending = pending = _latest_tops(pending)
            excess = len(pending) - _FORWARD_PENDING
            if excess > 0:
                del pending[:excess]
                self.dropped += excess

    def send(self) -> None:
        """Send what waits, unless the last call is still in flight or less than ``_FORWARD_EVERY`` old."""
        if not self.pending:
            return
        now = time.monotonic()
        if now - self.last < _FORWARD_EVERY:
            return
        if self.in_flight is not None:
            ready, _ = ray.wait([self.in_flight], timeout=0, fetch_local=False)
            if not ready:
                return
        batch, self.pending = _latest_tops(self.pending), []
        self.in_flight = self.actor.apply.remote(batch)
        self.last = now
        self.sent += 1

    def status(self) -> dict[str, Any]:
        in_flight = self.in_flight is not None and not ray.wait([self.in_flight], timeout=0, fetch_local=False)[0]
        return {
            "kinds": sorted(self.kinds),
            "sent": self.sent,
            "dropped": self.dropped,
            "in_flight": int(in_flight),
            "pending": len(self.pending),
        }


class EventBusActor:
    """Fans events out to subscribers (see the module docstring)."""

    def __init__(
        self,
        subscriber_queue: int,
        log_settings: LogSettings | None = None,
        *,
        idle_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        rebuilt: bool = False,
    ) -> None:
        start_actor_process(log_settings, "bus", rebuilt=rebuilt)
        self.default_queue = subscriber_queue
        self.queues: dict[int, DropOldestQueue] = {}
        self.filters: dict[int, frozenset[str] | None] = {}
        self.next_id = secrets.randbits(48)  # this incarnation's ids: apart from any earlier one's (module docstring)
        self.idle_seconds = idle_seconds
        self.clock = clock
        self.polled: dict[int, float] = {}  # subscriber -> when it last subscribed or polled (``clock``)
        self.next_expiry = clock() + _EXPIRY_CHECK_SECONDS
        self.expired = 0
        self.closed_dropped = 0  # events dropped by the queues of subscriptions since closed or expired
        self.published = 0
        self.batches = 0
        self.forwards: list[Forward] = []
        self._cond = threading.Condition()  # the queues, shared by the default thread and the poll threads
        self._forwarding = threading.Lock()  # the forwards, shared by the default thread and the forward flusher
        self._flusher: threading.Thread | None = None

    def forward(self, actor: Any, kinds: Sequence[str], name: str = "forward") -> int:
        """Push every event of ``kinds`` to ``actor.apply(events)`` one-way (:class:`Forward`: one call in flight and
        at most one per 10 ms, what comes meanwhile merged, for events a newer one supersedes, like the risk actor's
        marks; counted in ``status()["forwards"][name]``). Replaces an earlier forward to the same actor."""
        with self._forwarding:
            self.forwards = [f for f in self.forwards if f.actor != actor]
            self.forwards.append(Forward(name, actor, kinds))
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_forwards, name="veloz-bus-forwards", daemon=True)
                self._flusher.start()
            return len(self.forwards)

    def _flush_forwards(self) -> None:
        while True:
            time.sleep(_FORWARD_FLUSH_SECONDS)
            with self._forwarding:
                for forward in self.forwards:
                    with contextlib.suppress(Exception):  # a dead follower: Ray restarts it
                        forward.send()

    def publish(self, events: Sequence[Any] | MarketBatch) -> int:
        """Queue ``events`` (a list of messages, or a columnar batch kept whole) for every subscriber."""
        self.batches += 1
        if self.forwards:
            with self._forwarding:
                for forward in self.forwards:
                    forward.add(events)
                    with contextlib.suppress(Exception):  # a dead follower never fails a publish: Ray restarts it
                        forward.send()
        with self._cond:
            count = self._queue(events)
            self._cond.notify_all()
        return count

    def _queue(self, events: Sequence[Any] | MarketBatch) -> int:
        self._expire()
        if type(events) is MarketBatch:
            self.published += len(events)
            for sid, queue in self.queues.items():
                kinds = self.filters[sid]
                chosen = events if kinds is None else events.select(kinds)
                if len(chosen):
                    queue.put(chosen, len(chosen))
            return len(events)
        markers = [e for e in events if type(e) is Settled]  # type: ignore[union-attr]
        if markers:
            events = [e for e in events if type(e) is not Settled]  # type: ignore[union-attr]
        self.published += len(events)
        for sid, queue in self.queues.items():
            kinds = self.filters[sid]
            if kinds is None:
                queue.put_many(events)  # type: ignore[arg-type]
            else:
                queue.put_many([e for e in events if type(e).__name__ in kinds])  # type: ignore[union-attr]
        for marker in markers:  # a marker goes to its own subscriber only
            own = self.queues.get(marker.subscriber)
            if own is not None:
                own.put(marker)
        return len(events)

    def subscribe(self, maxlen: int | None = None, kinds: Sequence[str] | None = None) -> int:
        """A new subscriber's id: a queue of ``maxlen`` events (None: the engine's default) of ``kinds`` (None:
        every kind), checked here too (:func:`check_subscription`) for callers other than the handle."""
        names = check_subscription(maxlen, kinds)
        with self._cond:
            self._expire()
            self.next_id += 1
            self.queues[self.next_id] = DropOldestQueue(maxlen or self.default_queue)
            self.filters[self.next_id] = None if names is None else frozenset(names)
            self.polled[self.next_id] = self.clock()
            return self.next_id

    def unsubscribe(self, sid: int) -> None:
        with self._cond:
            self._drop(sid)

    def _drop(self, sid: int) -> None:
        queue = self.queues.pop(sid, None)
        if queue is not None:
            self.closed_dropped += queue.dropped
        self.filters.pop(sid, None)
        self.polled.pop(sid, None)

    def _expire(self) -> None:
        """Drop the subscriptions not polled for ``idle_seconds`` (a client that crashed or forgot its subscription
        would keep a full queue for good); their next poll, if any, hears the id is unknown. Under ``_cond``."""
        now = self.clock()
        if now < self.next_expiry:
            return
        self.next_expiry = now + _EXPIRY_CHECK_SECONDS
        idle = [sid for sid, polled in self.polled.items() if now - polled > self.idle_seconds]
        for sid in idle:
            self._drop(sid)
        self.expired += len(idle)

    def _take(self, sid: int, limit: int) -> tuple[list[Any], int] | None:
        """Subscriber ``sid``'s queued events and drop count, or None for an id this bus does not know. Under
        ``_cond``."""
        queue = self.queues.get(sid)
        if queue is None:
            return None
        self.polled[sid] = self.clock()
        return queue.take(limit), queue.dropped

    def poll(self, sid: int, limit: int = 10_000) -> tuple[list[Any], int]:
        """Up to ``limit`` queued events of subscriber ``sid`` and how many it has dropped so far; ``([], -1)`` for an
        id this bus does not know (it restarted, or dropped the subscription as idle): subscribe again."""
        with self._cond:
            self._expire()
            return self._take(sid, limit) or ([], -1)

    @ray.method(concurrency_group="poll")
    def poll_wait(self, sid: int, limit: int = 10_000, wait: float = 0.05) -> tuple[list[Any], int]:
        """:meth:`poll`, but with nothing queued it waits up to ``wait`` seconds (at most 0.25) for events first and
        answers as soon as they are queued (it runs beside the publishes, in the ``poll`` group)."""
        with self._cond:
            self._expire()
            queue = self.queues.get(sid)
            if queue is not None and not len(queue):
                self._cond.wait_for(lambda: len(queue) > 0 or sid not in self.queues, min(wait, _MAX_POLL_WAIT))
            return self._take(sid, limit) or ([], -1)

    def status(self) -> dict[str, Any]:
        with self._cond:
            return self._status()

    def _status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "last_seq": self.batches,
            "published": self.published,
            "expired": self.expired,
            # every subscription's drops, closed ones' too: a counter that never goes back (Prometheus exports it)
            "dropped": self.closed_dropped + sum(q.dropped for q in self.queues.values()),
            "subscribers": {
                str(sid): {"queued": len(q), "limit": q.maxlen, "dropped": q.dropped, "delivered": q.delivered}
                for sid, q in self.queues.items()
            },
            "forwards": {f.name: f.status() for f in self.forwards},
            "log": log_file_status(),
        }

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.batches

    def close(self) -> None:
        with self._cond:
            self.queues.clear()
            self.filters.clear()
            self.polled.clear()
            self._cond.notify_all()
