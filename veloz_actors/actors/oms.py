"""The OMS actor: the order path's one sequencer, a thin shell over :class:`~veloz_actors.core.kernel.TradingKernel`.

A command (``PlaceOrder``, ``CancelOrder``, a halt or a kill switch) is one kernel step: risk, reservation and the
order's state change, journaled before it is applied; its events are the client's answer (one Ray hop). The step's
venue requests go one-way to the venue actor of the symbol's shard. Venue actors send their execution reports back
one-way as numbered batches (:meth:`OmsActor.reports`); the OMS applies each batch once, in order (the kernel
journals every report before applying it), fans the events out to the event bus at once, and acknowledges the
batches one-way together with the account view's and the risk actor's updates, at most one call each per 20 ms.
Neither side ever waits for the other (two actors calling each other with ``ray.get`` deadlock).

Recovery: a restarted OMS rebuilds its kernel from snapshot + journal, finds its venue actors by name and asks each to
send again what it has not acknowledged; after a venue's resync it sends that venue again the requests of orders still
SUBMITTED or PENDING_CANCEL (:meth:`~veloz_actors.core.kernel.TradingKernel.pending_requests`). Reports are idempotent
in the kernel, so a batch applied twice has no second effect. A client's command retried after the OMS died during
its call is answered with the events of its first application (:class:`Answers`), never with nothing.

With a risk actor, the OMS is also the source of its fills, numbered by kernel step and kept until acknowledged
(:class:`~veloz_actors.actors.risk.RiskFeed`; :meth:`OmsActor.follow_fills`); a restarted OMS finds the risk actor
by name and probes it, and the risk actor asks for what it lacks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from typing import Any

import ray

from .._exceptions import JournalError
from ..core.kernel import TradingKernel
from ..logs import log_events, log_file_status
from ..messages import (
    AccountUpdated,
    CancelOrder,
    Error,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    PositionUpdated,
    SubmitCancel,
    SubmitOrder,
)
from ..venues.engine import EngineConfig
from .bus import Settled
from .risk import RiskFeed, risk_actor_name
from .spec import (
    JOURNAL_LOCK_WAIT,
    LATENCY_BUCKETS,
    CallWindow,
    EngineSpec,
    hand_to_os,
    recovering,
    require_journal_dir,
    start_actor_process,
    venue_actor_name,
)

__all__ = ["OMS_CONCURRENCY_GROUPS", "OmsActor"]

# ``query`` runs in a group of its own: reading the order history file must not hold up the order path. Every other
# method stays in the one-thread default group, executed in each caller's order.
OMS_CONCURRENCY_GROUPS = {"history": 1}

_FLUSH_SECONDS = 0.005  # the flusher sends what a full window held back within ~5 ms
# The account view, the risk actor and the venues' acknowledgements get at most one call each per this interval, with
# everything that came meanwhile; the bus still gets a venue's fills at once. On two cores those calls (and the work
# they start in three more processes) landed just as the bus and the subscriber needed a core: a market order's fill
# reached a subscriber in 5.8 - 5.9 ms with a call each per report, 5.0 - 5.1 ms at 10 ms, 4.5 - 4.6 ms at 20 ms.
_PACED_SECONDS = 0.020
_RESYNC_AGAIN_SECONDS = 1.0  # a venue's resync not come after this long is asked for again
_ACCOUNT_OUTBOX = 100_000
_ACCOUNT_TYPES = frozenset({AccountUpdated, PositionUpdated, OrderFilled})
_ANSWERS_KEPT = 10_000  # the answers to the latest orders and cancels, for clients that retry after a restart
_log = logging.getLogger("veloz.oms")


class Answers:
    """The events the latest ``PlaceOrder`` and ``CancelOrder`` commands caused, by command (bounded, oldest out).

    A client whose call failed because the OMS died sends the very same command again once Ray has restarted it. The
    kernel takes that retry as a no-op with no events, so without this the client would read "no events" for an order
    that was rejected as much as for one that was accepted. The restarted OMS keeps the answers of the steps it
    replays from its journal, so a retry gets exactly the events its first application gave. A retry whose answer is
    not kept (its step is covered by the snapshot, or more than ``limit`` commands ago) gets an ``Error`` saying the
    outcome must be read with a query, never a silent empty answer.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept: OrderedDict[Any, list[Any]] = OrderedDict()
        self.answered = 0  # retries answered from what was kept
        self.unknown = 0  # retries whose first answer was not kept

    def keep(self, command: Any, events: list[Any]) -> None:
        if type(command) in _ANSWERED:
            kept = self.kept
            kept[command] = events
            if len(kept) > self.limit:
                kept.popitem(last=False)

    def retried(self, command: Any, kernel: TradingKernel) -> list[Any] | None:
        """The answer to ``command`` if the kernel applied it already (a retry), else None: apply it."""
        if type(command) not in _ANSWERED or not kernel.applied_before(command):
            return None  # (a new command costs the kernel's dict lookup only, no hash of the whole command)
        # its step is with the OS before it is answered: a step whose journal failed was refused to the caller (its
        # hand_to_os raised, and the journal drops its line), so its retry is refused the same way, never accepted
        hand_to_os(kernel.journal)
        answer = self.kept.get(command)
        if answer is not None:
            self.answered += 1
            return answer
        self.unknown += 1
        message = (
            f"{type(command).__name__} {command.client_order_id!r} was applied before and its first answer is no longer"
            " kept: query the order for its state"
        )
        return [Error(code="RETRY_OUTCOME_UNKNOWN", message=message, ts=command.ts)]


_ANSWERED = frozenset({PlaceOrder, CancelOrder})


class OmsActor:
    """The order path's sequencer over the trading kernel (see the module docstring)."""

    def __init__(self, spec: EngineSpec, account: Any, bus: Any, venues: dict[str, Any] | None = None) -> None:
        start_actor_process(spec.logging, "oms", rebuilt=spec.rebuilt)
        self.spec = spec
        config = EngineConfig.from_json(spec.engine_config).kernel_config()
        path = spec.journal_path("oms")
        self.restarted = recovering(spec)
        if self.restarted:
            require_journal_dir(spec.journal_dir, "oms", spec.name)
        self.answers = Answers(_ANSWERS_KEPT)
        if path is not None:
            durability: Any = spec.durability
            self.kernel, _ = TradingKernel.recover(config, path, durability=durability, on_step=self.answers.keep,
                                                   lock_wait=JOURNAL_LOCK_WAIT if self.restarted else 0.0)  # fmt: skip
        else:
            self.kernel = TradingKernel(config)
        try:
            self._start(spec, account, bus, venues)
        except BaseException:
            with contextlib.suppress(JournalError):
                self.kernel.close()  # else its journal's lock stays held until the process ends
            raise

    def _start(self, spec: EngineSpec, account: Any, bus: Any, venues: Any) -> None:
        """The rest of the constructor, once the kernel (and its journal) is up."""
        self.kernel.take_outbox()  # what the replay left behind: pending_requests() says what is still owed
        self.account, self.bus = account, bus
        self.shard_of = spec.shard_of()
        self.symbols_of = {shard: frozenset(symbols) for shard, symbols in spec.shards.items()}
        self.venues: dict[str, Any] = {}
        self.applied: dict[str, int | None] = dict.fromkeys(spec.shards)  # None: until the venue's resync
        self.resyncs = Counter[str]()
        self.resync_asked: dict[str, float] = {}
        self.incarnation = time.time_ns()
        self.calls = 0
        self.sent_token: dict[str, tuple[int, int]] = {}
        self.answered: dict[str, Any] = {}
        self.barriers: list[Settled] = []
        self.windows = {"account": CallWindow(spec.peer_window), "bus": CallWindow(spec.peer_window)}
        self.windows.update({f"venue:{shard}": CallWindow(spec.peer_window) for shard in spec.shards})
        self.orders = 0
        self.cancels = 0
        self.reports_applied = 0
        self.rejections: Counter[str] = Counter()
        self.market_events = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.bus_dropped = 0
        self._lock = threading.RLock()  # the fan-out thread shares the windows with the actor's calls
        self._steps = threading.Lock()  # held over kernel steps: the fan-out thread reads whole steps' state only
        self._account_out: list[Any] = []
        self._account_seq = self.kernel.seq
        self._account_resync = self.restarted  # after a restart the account view gets the full state first
        self._bus_out: list[Any] = []
        self._acks_due: dict[str, int] = {}  # per venue shard, the last report batch applied and not yet acknowledged
        self._paced_at = 0.0  # when the account view, the risk actor and the venues' acknowledgements last got calls
        self.risk_feed = None if spec.risk is None else RiskFeed(self.kernel.seq, window=spec.peer_window)
        if self.risk_feed is not None and self.restarted:
            with contextlib.suppress(ValueError):  # not there: its own start asks to follow
                self.risk_feed.follower = ray.get_actor(risk_actor_name(spec.name))
        self._stop = threading.Event()
        threading.Thread(target=self._flush_loop, name="veloz-oms-fan-out", daemon=True).start()
        if venues is not None:
            self.attach_venues(venues)
        elif self.restarted:
            self._find_venues()

    # --------------------------------------------------------------------------------------------------- venues

    def attach_venues(self, venues: dict[str, Any]) -> int:
        """The venue actors by shard (the supervisor's first start); each sends its unacknowledged reports, and then
        gets the requests it may not have had. Asked of every shard, even one whose resync already came: that one
        may have come before its venue was known here, when the requests it should have brought back could not go."""
        self.venues = dict(venues)
        for shard in self.venues:
            self._request_resync(shard)
        return len(self.venues)

    def _find_venues(self) -> None:
        for shard in self.spec.shards:
            with contextlib.suppress(ValueError):  # not there yet: its own start sends a resync
                self.venues[shard] = ray.get_actor(venue_actor_name(self.spec.name, shard))
                self._request_resync(shard)

    def _request_resync(self, shard: str) -> None:
        venue = self.venues.get(shard)
        if venue is not None:
            with self._lock:
                self.resyncs[shard] += 1
                self.resync_asked[shard] = time.monotonic()
                self.windows[f"venue:{shard}"].send(venue.resync)

    def _chase_resyncs(self) -> None:
        """Ask again a venue whose resync has not come (both sides restarted at once: either call may be lost)."""
        now = time.monotonic()
        for shard, applied in list(self.applied.items()):
            if applied is None and now - self.resync_asked.get(shard, 0.0) > _RESYNC_AGAIN_SECONDS:
                if shard not in self.venues:
                    with contextlib.suppress(ValueError):
                        self.venues[shard] = ray.get_actor(venue_actor_name(self.spec.name, shard))
                self._request_resync(shard)

    def _route(self, requests: list[SubmitOrder | SubmitCancel]) -> None:
        """One-way, one call per venue shard; the token lets :meth:`settled` tell when the venue has answered."""
        by_shard: dict[str, list[Any]] = {}
        for request in requests:
            by_shard.setdefault(self.shard_of[request.symbol], []).append(request)
        for shard, batch in by_shard.items():
            venue = self.venues.get(shard)
            if venue is None:
                continue  # the venue's resync re-sends what is pending once it is known
            self.calls += 1
            token = (self.incarnation, self.calls)
            self.sent_token[shard] = token
            with self._lock:
                self.windows[f"venue:{shard}"].send(venue.requests, batch, token)

    def reports(
        self, shard: str, batches: Sequence[tuple[int, list[Any]]], token: Any = None, resync: int | None = None
    ) -> int:
        """Apply a venue's numbered report batches once each, in order; acknowledge them one-way.

        ``resync`` (the last batch the venue saw acknowledged) marks a venue's full re-send: after a restart of
        either side. Batches from a venue whose resync has not come yet are ignored (the resync brings them again);
        a gap in the numbering asks the venue for a resync.
        """
        if resync is not None:
            self.applied[shard] = resync
        applied = self.applied.get(shard)
        if applied is None:
            if time.monotonic() - self.resync_asked.get(shard, 0.0) > _RESYNC_AGAIN_SECONDS:
                self._request_resync(shard)
            return 0
        kernel = self.kernel
        events: list[Any] = []
        for seq, reports in batches:
            if seq <= applied:
                continue
            if seq != applied + 1:
                self._request_resync(shard)
                break
            with self._steps:
                for report in reports:
                    events.extend(kernel.apply(report))
            self.reports_applied += len(reports)
            applied = seq
        self.applied[shard] = applied
        if token is not None:
            self.answered[shard] = token
        hand_to_os(kernel.journal)  # before anything leaves: the events, the acknowledgement
        with self._lock:
            self._acks_due[shard] = applied  # goes with the account view's and the risk actor's next calls
        self._publish(events)  # the fills reach the bus at once
        out = kernel.take_outbox()  # orders of the kernel's own (stop-losses) caused by these reports
        if resync is not None:
            out.extend(kernel.pending_requests(self.symbols_of.get(shard, frozenset())))
        if out:
            self._route(out)
        return applied

    def applied_batches(self) -> dict[str, int | None]:
        """The last report batch applied from each venue shard (clients wait on it after a clock step)."""
        return dict(self.applied)

    def settled(self) -> bool:
        """Every venue has answered every request sent so far in this incarnation, and its resync came."""
        return all(
            self.applied.get(shard) is not None
            and (shard not in self.sent_token or self.answered.get(shard) == self.sent_token[shard])
            for shard in self.spec.shards
        )

    def barrier(self, subscriber: int, token: int) -> bool:
        """Put a :class:`Settled` marker for ``subscriber`` on the bus once every request sent so far is answered,
        after the events before it: a client reading the bus then knows it has seen everything up to now."""
        with self._lock:
            self.barriers.append(Settled(subscriber=subscriber, token=token))
        self._publish([])
        return True

    # -------------------------------------------------------------------------------------------- the order path

    def submit(self, command: Any) -> list[Any]:
        """Apply one command (journaled first) and return its events; a retried identical command is a no-op."""
        answer = self.answers.retried(command, self.kernel)
        if answer is not None:
            return answer
        start = time.perf_counter()
        kernel = self.kernel
        with self._steps:
            events = kernel.apply(command)
        self.answers.keep(command, events)
        hand_to_os(kernel.journal)
        out = kernel.take_outbox()
        if out:
            self._route(out)
        self._count(command, events, time.perf_counter() - start)
        self._publish(events, send=False)  # the answer carries them; the bus and the account view within ~5 ms
        return events

    def submit_many(self, commands: Sequence[Any]) -> list[list[Any]]:
        """Apply a batch of commands in order; one list of events per command."""
        results = []
        everything: list[Any] = []
        kernel = self.kernel
        answers = self.answers
        for command in commands:
            answer = answers.retried(command, kernel)
            if answer is not None:
                results.append(answer)
                continue
            start = time.perf_counter()
            with self._steps:
                events = kernel.apply(command)
            answers.keep(command, events)
            self._count(command, events, time.perf_counter() - start)
            results.append(events)
            everything.extend(events)
        hand_to_os(kernel.journal)
        out = kernel.take_outbox()
        if out:
            self._route(out)
        self._publish(everything, send=False)
        return results

    def market(self, batch: Sequence[Any]) -> int:
        """Reference prices and marks from a recorded feed (matching stays on the simulated venues)."""
        events: list[Any] = []
        kernel = self.kernel
        with self._steps:
            for event in batch:
                events.extend(kernel.apply(event))
        self.market_events += len(batch)
        hand_to_os(kernel.journal)  # a stop-loss these prices placed is on its way out: its step first
        out = kernel.take_outbox()
        if out:
            self._route(out)
        self._publish(events)
        return len(batch)

    def _count(self, command: Any, events: list[Any], seconds: float) -> None:
        kind = type(command)
        if kind is PlaceOrder:
            self.orders += 1
        elif kind is CancelOrder:
            self.cancels += 1
        for event in events:
            if type(event) is OrderRejected:
                self.rejections[event.reason.value] += 1
        i = 0
        while i < len(LATENCY_BUCKETS) and seconds > LATENCY_BUCKETS[i]:
            i += 1
        self.latency_counts[i] += 1
        self.latency_sum += seconds

    # ----------------------------------------------------------------------------------------------- fan-out

    def _publish(self, events: list[Any], *, send: bool = True) -> None:
        """Queue the events for the bus, the account view and the risk actor and send at once what the windows have
        room for (the account view and the risk actor at most every ``_PACED_SECONDS``); with ``send=False`` the
        fan-out thread sends them within ``_FLUSH_SECONDS``, together with what else came by then (a command's answer
        carries its events: a one-way call costs the caller 0.25 - 1 ms it need not wait for, while the fills that
        venues report go to the bus at once)."""
        log_events(_log, events)  # every step's events pass here: the order lifecycle, logged once
        with self._lock:
            if events:
                self._account_seq = self.kernel.seq
                self._bus_out.extend(events)
                self._account_out.extend(e for e in events if type(e) in _ACCOUNT_TYPES)
                if self.risk_feed is not None:
                    self.risk_feed.publish(self.kernel.seq, [e for e in events if type(e) is OrderFilled])
                if len(self._account_out) > _ACCOUNT_OUTBOX:  # a stuck account view: drop, resync it when back
                    self._account_out.clear()
                    self._account_resync = True
                excess = len(self._bus_out) - self.spec.subscriber_queue
                if excess > 0:  # a stuck bus: oldest first, counted
                    del self._bus_out[:excess]
                    self.bus_dropped += excess
            if self.barriers and self.settled():
                self._bus_out.extend(self.barriers)
                self.barriers = []
            if send:
                self._flush_locked()

    def _flush_loop(self) -> None:
        while not self._stop.wait(_FLUSH_SECONDS):
            with contextlib.suppress(Exception):  # a dead peer: Ray restarts it, it resyncs
                self.flush()
                self._chase_resyncs()

    def flush(self, *, paced: bool = True) -> None:
        """Send what is queued for each peer whose window has room (one call per peer per flush); with ``paced``, the
        account view, the risk actor and the venues' acknowledgements only once ``_PACED_SECONDS`` have passed since
        their last calls."""
        with self._lock:
            self._flush_locked(paced=paced)

    def _flush_locked(self, *, paced: bool = True) -> None:
        window = self.windows["bus"]  # first: subscribers wait for it
        if self._bus_out and window.room():
            batch, self._bus_out = self._bus_out, []
            window.send(self.bus.publish, batch)
        now = time.monotonic()
        if paced and now - self._paced_at < _PACED_SECONDS:
            return  # the fan-out thread sends them once the interval is over
        self._paced_at = now
        for shard, seq in self._acks_due.items():
            venue = self.venues.get(shard)
            if venue is not None:  # (else its resync, when it is back, brings what it has not had acknowledged)
                self.windows[f"venue:{shard}"].send(venue.ack, seq)
        self._acks_due.clear()
        window = self.windows["account"]
        if self._account_resync and window.room():
            self._account_resync = False
            with self._steps:  # between two kernel steps, never inside one (the view ignores its step's events)
                seq, accounts, positions = self.account_state()
            window.send(self.account.reset, seq, accounts, positions)
        if self._account_out and window.room():
            batch, self._account_out = self._account_out, []
            window.send(self.account.apply, self._account_seq, batch)
        if self.risk_feed is not None:
            self.risk_feed.flush()

    def resync_account(self) -> None:
        """Push every account's full state to the account view (after either of them restarted)."""
        with self._lock:
            self._account_resync = True

    def follow_fills(self, risk: Any, cursor: int) -> int:
        """The risk actor has every fill up to kernel step ``cursor`` and asks for the rest (one-way, at its start
        and after a gap): the kept tail goes again, or this ledger when the tail is gone. Returns the stream's
        position."""
        feed = self.risk_feed
        if feed is None:
            return 0
        with self._lock:
            if not feed.follow(risk, cursor):
                feed.rebase(*self.account_state())
            feed.flush()
            return feed.position

    # ----------------------------------------------------------------------------------------------------- queries

    def account_state(self) -> tuple[int, list[AccountUpdated], list[PositionUpdated]]:
        kernel = self.kernel
        ledger = kernel.ledger
        quiet = kernel.quiet_accounts
        ts = max(kernel.now, 0)
        accounts = [ledger.account_event(a, ts) for a in ledger.account_ids() if a not in quiet]
        positions = [p.to_event(ts) for (a, _), p in sorted(ledger.positions.items()) if a not in quiet]
        return kernel.seq, accounts, positions

    @ray.method(concurrency_group="history")
    def query(self, account_id: str, client_order_id: str | None) -> list[dict[str, Any]]:
        """The account's open orders, or one order: from memory, or from the order history file once evicted.

        Runs on a thread of its own (:data:`OMS_CONCURRENCY_GROUPS`), beside the order path: an evicted order is read
        from a file with a line per order evicted in weeks of trading (0.6 s for a million), and the commands and
        reports of everyone else go on meanwhile. Memory is read between two kernel steps, the file after."""
        kernel = self.kernel
        with self._steps:
            if client_order_id is None:
                return [o.to_dict() for o in kernel.oms.open_orders(account_id)]
            order = kernel.oms.get(account_id, client_order_id)
            if order is not None:
                return [order.to_dict()]
            if not kernel.may_be_in_history(account_id, client_order_id):
                return []
            read = kernel.history_reader(account_id, client_order_id)
        return read()[-1:]

    def kernel_view(self, account_id: str, venue: str) -> Any:
        """What a live venue reconciles against: the kernel's open orders at ``venue`` (filled quantity, venue order
        id, trade ids booked), the last trade id booked per symbol, and the balances
        (:func:`~veloz_actors.venues.binance.reconcile.kernel_view`). The venue's threads ask; the OMS never waits on
        a venue, so the call cannot deadlock."""
        from ..venues.binance.reconcile import kernel_view

        return kernel_view(self.kernel, account_id, venue=venue)

    def all_orders(self, account_id: str) -> list[dict[str, Any]]:
        return self.kernel.oms.export(account_id)  # type: ignore[return-value]

    def balances(self, account_id: str) -> dict[str, tuple[int, int]]:
        return self.kernel.ledger.balances(account_id)

    def positions(self, account_id: str) -> list[PositionUpdated]:
        ts = max(self.kernel.now, 0)
        return [p.to_event(ts) for (a, _), p in sorted(self.kernel.ledger.positions.items()) if a == account_id]

    def exposure(self) -> dict[str, dict[str, int]]:
        """Per account: balances and position quantities (what the risk actor's ``exposure()`` must equal)."""
        return self.kernel.exposure()

    def totals(self) -> dict[str, int]:
        """For each asset, every account's balance plus the fees collected (the venues' makers hold the rest)."""
        return self.kernel.ledger.totals()

    def symbols(self) -> list[str]:
        return sorted(self.kernel.instruments)

    def status(self) -> dict[str, Any]:
        status = self.kernel.status()
        status.update(
            pid=os.getpid(),
            restarted=self.restarted,
            last_seq=self.kernel.seq,
            orders=self.orders,
            cancels=self.cancels,
            reports=self.reports_applied,
            rejections=dict(self.rejections),
            retries={"answered": self.answers.answered, "outcome_unknown": self.answers.unknown},
            market_events=self.market_events,
            latency_counts=list(self.latency_counts),
            latency_sum=self.latency_sum,
            applied_batches=dict(self.applied),
            venue_resyncs=dict(self.resyncs),
            risk_feed=None if self.risk_feed is None else self.risk_feed.status(),
            peers={
                name: {"inbox_depth": w.depth(), "sent": w.sent, "dropped": w.dropped}
                for name, w in self.windows.items()
            },
            log=log_file_status(),
        )
        status["peers"]["bus"]["dropped"] += self.bus_dropped
        return status

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.kernel.seq

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self.flush(paced=False)
            for window in self.windows.values():
                window.wait_all(5.0)
        self.kernel.close()
