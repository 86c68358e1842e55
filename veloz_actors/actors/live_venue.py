"""The live venue actor: real orders on Binance for the actor engine (``veloz start --local --venue binance --live``).

It speaks the venue actors' protocol with the OMS (:mod:`.venue`): requests come one-way (:meth:`requests`), execution
reports go back one-way as numbered batches (``oms.reports``), kept until the OMS acknowledges them (:meth:`ack`) and
sent again on a resync (:meth:`resync`). Behind it the Binance adapter
(:class:`~veloz_actors.venues.binance.venue.VenueThread`) runs on its own event loop thread: orders, cancels, the user
data stream, rate limits, unknown outcomes and reconciliation, exactly as on the single-process engine.

One sender thread makes every call to the OMS, so batches, resyncs and request answers arrive in the order they were
made. The adapter reconciles against the kernel's view, which it reads from the OMS on its own thread
(``oms.kernel_view``): the OMS never waits on a venue, so neither side can block the other.

**Recovery.** The exchange is the record of what happened, so this actor keeps no journal. Started again (by Ray,
after a crash), it subscribes to the user data stream again and reconciles with the kernel's view before it accepts
an order: fills and ends it had not handed over come back from ``myTrades`` and ``order.status``, and the kernel books
each trade id once. The kernel's view is read on a start thread, not in the constructor (the OMS may be waiting on a
call to this actor, which runs only once the constructor has returned); requests that come meanwhile wait for it.
The OMS then sends again the requests of orders still SUBMITTED or PENDING_CANCEL: an order the kernel held as sent
when this actor started may have reached Binance, so it is never sent again -- the start-up reconciliation settles it
(queried by ``origClientOrderId``; unknown to Binance after its ``recvWindow``: never placed). A restarted OMS asks
for a resync the same way, and the adapter ignores a repeated order it already sent.

**Credentials** come from a :class:`~veloz_actors.venues.binance.auth.CredentialsRef` (names of environment
variables, or a 0600 ``KEY=VALUE`` file): the spec carries no secret, so nothing secret sits in Ray's actor table,
and a restarted actor reads them again.

Market data (the feed's batches, :meth:`apply`) passes through to the bus as for a paper venue, keeping the latest
top of book; clock steps (:meth:`clock`) do nothing (the market is real).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import Any

import ray

from ..logs import log_file_status
from ..messages import BookTop, SubmitOrder, VenueBalance, VenueBalanceDelta
from ..venues.engine import EngineConfig
from .batches import remember_market
from .spec import CallWindow, EngineSpec, recovering, start_actor_process

__all__ = ["LiveVenueActor"]

_log = logging.getLogger("veloz.venue")
_VIEW_TIMEOUT = 30.0  # seconds a reconciliation waits for the kernel's view from the OMS
_STOP = object()


class LiveVenueActor:
    """Binance trading behind the venue actor protocol (see the module docstring)."""

    def __init__(self, spec: EngineSpec, shard: str, symbols: Sequence[str], oms: Any, bus: Any) -> None:
        from ..venues.binance.auth import CredentialsRef
        from ..venues.binance.venue import BinanceVenueSettings, VenueThread

        start_actor_process(spec.logging, f"venue:{shard}", rebuilt=spec.rebuilt)
        live = dict(spec.live or {})
        self.shard = shard
        self.symbols = frozenset(symbols)
        self.oms = oms
        self.bus = bus
        self.account_id = live.get("account_id", "main")
        self.restarted = recovering(spec)
        config = EngineConfig.from_json(spec.engine_config)
        instruments = {i.symbol: i for i in config.instruments if i.symbol in self.symbols}
        settings = BinanceVenueSettings(**live["settings"])
        credentials = CredentialsRef(**live.get("credentials", {})).load()
        self.venue_name = settings.venue
        self.seq = 0  # the number of the last batch made
        self.acked = 0
        self.unacked: deque[tuple[int, list[Any]]] = deque()
        self.exchange_balances: dict[str, tuple[int, int]] = {}
        self.balance_deltas = 0
        self.skipped_resends = 0
        self.requests_taken = 0
        self.events = 0
        self.resyncs = 0
        self.tops: dict[str, BookTop] = {}
        self.window = CallWindow(spec.peer_window)  # market data and notices to the bus
        self._lock = threading.Lock()
        self._out: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._send_loop, name="veloz-live-venue-send", daemon=True).start()
        self.held: frozenset[str] = frozenset()
        self.thread: VenueThread | None = None  # until the kernel's view came: requests wait in ``early``
        self.early: list[Any] | None = []
        self.view_attempts = 0
        adapter = partial(VenueThread, settings, credentials, instruments, self._reports, account_id=self.account_id,
                          events=self._notice, view=self._view)  # fmt: skip
        threading.Thread(target=self._start, args=(adapter,), name="veloz-live-venue-start", daemon=True).start()

    def _start(self, adapter: Any) -> None:
        """Read the kernel's view from the OMS, then start the adapter and hand it the requests that came meanwhile.

        Off the constructor: calls to this actor wait until its constructor returns, and an OMS whose window to this
        actor is full waits on one of them, so a constructor waiting on the OMS would stall both for the window's
        timeout.
        """
        while True:
            self.view_attempts += 1
            try:
                start_view = self._view()
                break
            except Exception as exc:  # noqa: BLE001 - the OMS restarting: ask again
                _log.warning("live venue: no kernel view from the OMS yet (%s); asking again", type(exc).__name__)
                time.sleep(min(0.1 * self.view_attempts, 2.0))
        # orders the kernel held as sent when this actor started may be on Binance already: the start-up
        # reconciliation settles them; a re-sent request for one is never sent again
        self.held = frozenset(o.client_order_id for o in start_view.orders)
        thread = adapter(initial_view=start_view)
        thread.start()
        with self._lock:  # the waiting requests go first, before any later call can hand the adapter its own
            early, self.early = self.early or [], None
            for item in early:
                if type(item) is tuple:  # a call's token: answered once its requests are
                    thread.when_answered(partial(self._out.put, item))
                else:
                    self._take(thread, item)
            self.thread = thread
        _log.info(
            "live venue started",
            extra={"shard": self.shard, "symbols": sorted(self.symbols), "restarted": self.restarted,
                   "held_orders": len(self.held), "requests_waiting": sum(type(i) is not tuple for i in early)},
        )  # fmt: skip
        self.resync()

    # ------------------------------------------------------------------------------------------------ the OMS

    def _view(self) -> Any:
        return ray.get(self.oms.kernel_view.remote(self.account_id, self.venue_name), timeout=_VIEW_TIMEOUT)

    def requests(self, requests: Sequence[Any], token: Any = None) -> int:
        """Take the OMS's requests (one-way): each goes to the adapter; the reports come back as batches, and the
        call's ``token`` after the reports of their first answers (Binance's, not this actor's taking them): the
        OMS's ``settled()`` means the exchange answered."""
        with self._lock:
            thread = self.thread
            if thread is None:
                assert self.early is not None
                self.early.extend(requests)  # the adapter is starting: it takes them once it has
                self.early.append(("token", token))
        if thread is not None:
            for request in requests:
                self._take(thread, request)
            thread.when_answered(partial(self._out.put, ("token", token)))
        self.requests_taken += len(requests)
        return self.seq

    def _take(self, thread: Any, request: Any) -> None:
        if type(request) is SubmitOrder:
            if request.client_order_id in self.held:
                self.skipped_resends += 1  # settled by the start-up reconciliation, never sent twice
                return
            thread.submit(request)
        else:
            thread.cancel(request)

    def _reports(self, reports: list[Any]) -> None:
        """The adapter's reports (its loop thread): balances kept here, the rest numbered as the next batch."""
        trading = []
        for report in reports:
            kind = type(report)
            if kind is VenueBalance:
                self.exchange_balances[report.asset] = (report.free, report.locked)
            elif kind is VenueBalanceDelta:
                self.balance_deltas += 1
            else:
                trading.append(report)
        if not trading:
            return
        with self._lock:
            self.seq += 1
            batch = (self.seq, trading)
            self.unacked.append(batch)
        self._out.put(("batch", batch))

    def _notice(self, notice: Any) -> None:
        """Connection changes, reconciliation summaries, orders placed outside VeloZ: to the bus as events."""
        from ..venues.binance.reconcile import notice_events

        events = notice_events(notice)
        if events:
            self.window.send(self.bus.publish, events)

    def ack(self, seq: int) -> int:
        """The OMS applied (and journaled) every batch up to ``seq``: forget them."""
        with self._lock:
            if seq > self.acked:
                self.acked = min(seq, self.seq)
                while self.unacked and self.unacked[0][0] <= self.acked:
                    self.unacked.popleft()
            return self.acked

    def resync(self) -> int:
        """Send every unacknowledged batch again, marked as a resync (after a restart of either side)."""
        with self._lock:
            self.resyncs += 1
            batches = list(self.unacked)
            acked = self.acked
        self._out.put(("resync", batches, acked))
        return len(batches)

    def _send_loop(self) -> None:
        """The one thread that calls the OMS: batches, answers and resyncs leave in the order they were made."""
        pending: list[tuple[int, list[Any]]] = []
        while True:
            item = self._out.get()
            if item is _STOP:
                return
            items = [item]
            with contextlib.suppress(queue.Empty):
                while len(items) < 1000:
                    items.append(self._out.get_nowait())
            token: Any = None
            for entry in items:
                if entry is _STOP:
                    self._flush(pending, token)
                    return
                kind = entry[0]
                if kind == "batch":
                    pending.append(entry[1])
                elif kind == "token":
                    token = entry[1]
                else:  # a resync: what is pending goes first, then the full re-send
                    self._flush(pending, token)
                    pending, token = [], None
                    with contextlib.suppress(Exception):  # a dead OMS: its restart asks for a resync
                        self.oms.reports.remote(self.shard, entry[1], None, entry[2])
            self._flush(pending, token)
            pending = []

    def _flush(self, batches: list[tuple[int, list[Any]]], token: Any) -> None:
        if not batches and token is None:
            return
        with contextlib.suppress(Exception):  # a dead OMS: its restart asks for a resync
            self.oms.reports.remote(self.shard, batches, token)

    # ------------------------------------------------------------------------------------------- market data

    def clock(self, ts: int) -> int:
        """A simulated clock step: nothing happens on a real market."""
        return 0

    def apply(self, batch: Sequence[Any]) -> int:
        """Forward a batch of live market events to the bus, keeping the latest top of book."""
        remember_market(batch, self.tops)
        self.events += len(batch)
        self.window.send(self.bus.publish, batch)
        return len(batch)

    def top(self, symbol: str) -> BookTop | None:
        return self.tops.get(symbol)

    def depth(self, symbol: str, levels: int = 20) -> dict[str, Any] | None:
        return None  # the book is Binance's own

    def flush(self) -> int:
        self.window.wait_all()
        return self.events

    # ----------------------------------------------------------------------------------------------------- queries

    def maker_totals(self) -> dict[str, int]:
        return {}  # the money on the exchange is the account's own: the kernel's ledger holds it

    def status(self) -> dict[str, Any]:
        thread = self.thread
        trading = {"state": "starting", "view_attempts": self.view_attempts} if thread is None else thread.status()
        return {
            "pid": os.getpid(),
            "venue": self.venue_name,
            "live": True,
            "last_seq": self.seq,
            "symbols": sorted(self.symbols),
            "events": self.events,
            "restarted": self.restarted,
            "resyncs": self.resyncs,
            "batches": self.seq,
            "acked": self.acked,
            "unacked": len(self.unacked),
            "requests": self.requests_taken,
            "held_orders": len(self.held),
            "resends_not_sent": self.skipped_resends,
            "exchange_balances": {a: list(v) for a, v in sorted(self.exchange_balances.items())},
            "balance_changes_outside_trading": self.balance_deltas,
            "trading": trading,
            "ready": thread is not None and bool(thread.ready),
            "peers": {"bus": {"inbox_depth": self.window.depth(), "dropped": self.window.dropped}},
            "log": log_file_status(),
        }

    def ready(self) -> bool:
        thread = self.thread
        return thread is not None and bool(thread.ready)

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.seq

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.thread is not None:
                self.thread.close()
        self._out.put(_STOP)
        self.window.wait_all(5.0)
