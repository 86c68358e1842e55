"""The single-process engine behind the stdio protocol: ``veloz start --local --single-process``.

A reader thread feeds stdin lines into a bounded queue; the main thread owns the engine, applies commands in arrival
order and drives the simulated market with a :class:`~veloz_actors.messages.Tick` every ``tick_ms``. Shutdown on
EOF, QUIT, SIGINT or SIGTERM flushes and closes the journal.

Paper trading on Binance (``--venue binance --paper``): :class:`LiveMarket` runs the market-data client on its own
event loop thread; the batches it reads wait in a bounded queue and the main thread applies them to the engine in
order between commands (the paper venues' books and fills, the kernel's reference prices), so the engine stays
single-threaded.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..core.risk_monitor import kill_switch_commands
from ..logs import log_events, log_file_status
from ..messages import (
    ResetCircuitBreaker,
    Tick,
    VenueBalance,
    VenueBalanceDelta,
    VenueConnection,
)
from ..venues.engine import Engine, UnattachedVenue
from .service import EngineService, JsonLines, Valuation, read_lines
from .stdio import Session

__all__ = ["Frontends", "LiveMarket", "LiveVenue", "LocalBackend", "run_session"]

_SINK_WAIT_SECONDS = 5.0  # the longest the market-data client waits for a full queue (it answers pings meanwhile)
_log = logging.getLogger("veloz.engine")  # the one-process engine's order lifecycle (veloz_actors.logs)


class LocalBackend:
    """:class:`~veloz_actors.interfaces.stdio.Backend` over an in-process :class:`Engine`."""

    def __init__(
        self,
        engine: Engine,
        account_id: str = "main",
        live: LiveMarket | None = None,
        trading: LiveVenue | None = None,
    ) -> None:
        self.engine = engine
        self.account_id = account_id
        self.live = live
        self.trading = trading
        self.mode = engine.config.venue_kind  # sim, paper or live

    def submit(self, command: Any) -> list[Any]:
        events = self.trading.apply(command) if self.trading is not None else self.engine.apply(command)
        _hand_to_os(self.engine)  # before the events are printed: a killed process then keeps what it answered
        log_events(_log, events)
        return events

    def tick(self, ts: int) -> list[Any]:
        events = self.engine.apply(Tick(ts=ts))
        _hand_to_os(self.engine)
        log_events(_log, events)  # fills of resting orders (quotes are never logged)
        return events

    def halt(self) -> list[Any]:
        """The kill switch: cancel every open order, then halt risk-increasing orders (every account)."""
        return [event for command in kill_switch_commands(time.time_ns()) for event in self.submit(command)]

    def resume(self) -> list[Any]:
        """Lift a halt (the kill switch's or a tripped breaker's) on every account: the engine-wide halt, then each
        account's own breaker."""
        ts = time.time_ns()
        events: list[Any] = self.submit(ResetCircuitBreaker(account_id="*", ts=ts))
        for account in self.engine.kernel.status()["accounts"]:
            events += self.submit(ResetCircuitBreaker(account_id=account, ts=ts))
        return events

    def valuation(self) -> Valuation:
        return Valuation.of(self.engine.kernel.config)

    def query(self, client_order_id: str | None) -> list[dict[str, Any]]:
        oms = self.engine.oms
        if client_order_id is None:
            return [o.to_dict() for o in oms.open_orders(self.account_id)]
        record = self.engine.kernel.order_record(self.account_id, client_order_id)  # evicted: the history file
        return [record] if record is not None else []

    def balances(self) -> dict[str, tuple[int, int]]:
        return self.engine.ledger.balances(self.account_id)

    def positions(self) -> list[Any]:
        return [p for (acc, _), p in sorted(self.engine.ledger.positions.items()) if acc == self.account_id]

    def status(self) -> dict[str, Any]:
        status = {"engine": "single-process", "state": "running", **self.engine.status()}
        log = log_file_status()
        status["logs"] = {} if log is None else {"engine": log}
        if self.live is not None:
            status["market_data"] = self.live.status()
        if self.trading is not None:
            status["trading"] = self.trading.status()
        return status

    def close(self) -> None:
        if self.trading is not None:
            self.trading.close()
        if self.live is not None:
            self.live.close()
        self.engine.close()


def _hand_to_os(engine: Engine) -> None:
    """The journal's buffered lines to the OS (no fsync), as the actor engine does before it acknowledges a call:
    under group commit a killed process then loses no step whose events it printed."""
    if engine.journal is not None:
        engine.journal.hand_to_os()


class _Attached(UnattachedVenue):
    """One symbol's place in the engine's venues for the shared Binance adapter: orders and cancels go to it; the
    money on the exchange is the account's own, so the venue holds none of it (as while unattached)."""

    def __init__(self, adapter: Any, symbol: str) -> None:
        super().__init__(symbol, adapter.name)
        self.adapter = adapter

    def submit(self, request: Any) -> list[Any]:
        return self.adapter.submit(request)  # type: ignore[no-any-return]

    def cancel(self, request: Any) -> list[Any]:
        return self.adapter.cancel(request)  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        return {"venue": self.name, "symbol": self.symbol, "attached": True}


class LiveVenue:
    """Real orders on Binance for an in-process engine (``--venue binance --live --single-process``).

    The trading adapter (:class:`~veloz_actors.venues.binance.venue.VenueThread`) runs on its own event-loop thread
    and is attached as every symbol's venue; its reports wait in a queue and the main thread applies them (journaled)
    between commands, like the live market data. The kernel's view the adapter reconciles against is read under
    :attr:`lock`, which every application holds, so the two threads never see each other half-way.

    At start the adapter subscribes to the user data stream and reconciles the recovered kernel with the exchange
    (balances, open orders, trades since the last one booked); until that has finished every order is rejected with
    a reason that says so. The exchange's balance reports (``VenueBalance`` / ``VenueBalanceDelta``) are compared
    with the ledger: differences are kept for STATUS (:meth:`status`) and printed, never applied silently.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Any,
        credentials: Any,
        *,
        account_id: str = "main",
        reconcile_every: float | None = 60.0,
    ) -> None:
        from ..venues.binance.reconcile import kernel_view
        from ..venues.binance.venue import VenueThread

        self.engine = engine
        self.account_id = account_id
        self.lock = threading.RLock()
        self.reports: queue.Queue[list[Any]] = queue.Queue()
        self.notices: queue.Queue[Any] = queue.Queue()
        self.exchange_balances: dict[str, tuple[int, int]] = {}
        self.balance_deltas: list[Any] = []
        self.applied = 0

        def view() -> Any:
            with self.lock:
                return kernel_view(engine.kernel, account_id)

        self.thread = VenueThread(
            settings,
            credentials,
            engine.instruments,
            self.reports.put,
            account_id=account_id,
            events=self.notices.put,
            view=view,
            initial_view=view(),
            reconcile_every=reconcile_every,
        )
        held = sum(getattr(v, "held", 0) for v in engine.venues.values())
        self.replayed_requests = held  # sent by the run that wrote the journal: never sent again
        engine.venues = {symbol: _Attached(self.thread, symbol) for symbol in engine.instruments}
        self.thread.start()

    def wait_ready(self, timeout: float) -> bool:
        return self.thread.wait_ready(timeout)

    def apply(self, message: Any) -> list[Any]:
        """Apply one command or report to the engine, under the lock."""
        with self.lock:
            return self.engine.apply(message)

    def drain(self) -> list[Any]:
        """Apply the reports that arrived; returns the events they caused and the adapter's notices."""
        from ..venues.binance.reconcile import notice_events

        out: list[Any] = []
        while True:
            try:
                batch = self.reports.get_nowait()
            except queue.Empty:
                break
            for report in batch:
                kind = type(report)
                if kind is VenueBalance:
                    self.exchange_balances[report.asset] = (report.free, report.locked)
                elif kind is VenueBalanceDelta:
                    self.balance_deltas.append(report)
                else:
                    out.extend(self.apply(report))
                    self.applied += 1
        while True:
            try:
                notice = self.notices.get_nowait()
            except queue.Empty:
                _hand_to_os(self.engine)
                log_events(_log, out)
                return out
            out.extend(notice_events(notice))

    def balance_differences(self) -> dict[str, dict[str, str]]:
        """Assets whose exchange balance (the last reported) differs from the ledger's free + locked."""
        from ..fixed import format_decimal

        with self.lock:
            ledger = self.engine.ledger.balances(self.account_id)
        out = {}
        for asset, (free, locked) in sorted(self.exchange_balances.items()):
            mine = sum(ledger.get(asset, (0, 0)))
            if mine != free + locked:
                out[asset] = {"exchange": format_decimal(free + locked), "ledger": format_decimal(mine)}
        return out

    def status(self) -> dict[str, Any]:
        status = self.thread.status()
        status["applied_reports"] = self.applied
        status["replayed_requests_not_resent"] = self.replayed_requests
        status["balance_differences"] = self.balance_differences()
        status["balance_changes_outside_trading"] = len(self.balance_deltas)
        return status

    def close(self) -> None:
        self.thread.close()


class LiveMarket:
    """Live market data for an in-process engine (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        settings: dict[str, Any],
        *,
        max_batches: int = 10_000,
        apply: Callable[[Any], list[Any]] | None = None,
    ) -> None:
        from ..venues.binance.market_data import MarketDataSettings, MarketDataThread

        self.engine = engine
        self._apply = apply or engine.apply  # live trading: under the trading adapter's lock
        self.batches: queue.Queue[list[Any]] = queue.Queue(maxsize=max_batches)
        self._closed = threading.Event()
        self.applied = 0
        self.thread = MarketDataThread(MarketDataSettings(**settings), self._sink).start()

    def _sink(self, batch: list[Any]) -> None:
        """The client's sink (its loop thread). A queue still full after a few seconds (the engine far behind) is an
        error: the client drops the batch, counts it and resyncs every book, so no book is ever wrong downstream."""
        if not self._closed.is_set():
            self.batches.put(batch, timeout=_SINK_WAIT_SECONDS)

    def drain(self) -> list[Any]:
        """Apply every batch read so far to the engine; returns the market events and the events they caused. The
        books of paper venues that failed on an event (said in the engine's ``Error``) may lack what it carried: the
        client syncs them again, as it does the book of an event the engine raised on (``MARKET_APPLY_FAILED``,
        :meth:`~veloz_actors.venues.engine.Engine._market_failed`, logged with the other events): the session goes
        on."""
        out: list[Any] = []
        apply = self._apply
        engine = self.engine
        while True:
            try:
                batch = self.batches.get_nowait()
            except queue.Empty:
                _hand_to_os(engine)
                log_events(_log, out)  # paper fills, connection changes, errors (market events are never logged)
                return out
            received = [event.ts_recv for event in batch if type(event) is not VenueConnection]
            for event in batch:
                out.append(event)
                if type(event) is not VenueConnection:
                    out.extend(apply(event))
            self.applied += len(batch)
            resync = engine.take_books_to_resync()
            if resync:
                self.thread.resync(resync)
            if received:  # receive -> applied to the engine, oldest and newest of the batch
                self.thread.record_publish((received[0], received[-1]))

    def status(self) -> dict[str, Any]:
        return {
            **self.thread.status(),
            "applied_events": self.applied,
            "apply_errors": self.engine.market_errors,
            "queued_batches": self.batches.qsize(),
        }

    def close(self) -> None:
        self._closed.set()
        self.thread.close()


@dataclass(frozen=True)
class Frontends:
    """What ``veloz start`` serves beside the engine: the stdio view and, optionally, the HTTP/WebSocket API."""

    http: str | None = None  # "[HOST:]PORT", or None for no API
    view: str = "json"  # json: the JSON protocol on stdout; tty: the terminal view
    run_dir: Path | None = None  # the folder holding the journal: api-token, reports
    token: str | None = None  # the API token (default: VELOZ_API_TOKEN, else generated into run_dir/api-token)
    market: bool = True  # market lines in the JSON protocol
    api: dict[str, Any] | None = None  # serve_api's other options (queue, max_body_bytes, cors_origins): config api:

    @property
    def watchers(self) -> bool:
        """Whether anything besides the JSON lines watches the events (they then include the market)."""
        return self.http is not None or self.view == "tty"


def run_session(
    session: Session,
    tick: Callable[[int], list[Any]] | None,
    *,
    tick_ms: int,
    stdin: IO[str] = sys.stdin,
    stdout: IO[bytes] | None = None,
    clock: Callable[[], int] = time.time_ns,
    side_feed: Callable[[], list[Any]] | None = None,
    frontends: Frontends | None = None,
) -> int:
    """Run the engine's front ends until end of input, QUIT or a signal; return the process exit code.

    ``side_feed`` (polled between commands: the actor engine's bus, a live market's batches) returns more engine
    events (messages, formatted by the session). The backend's ``mode`` (sim, paper, live) is shown by the API and the
    page. The JSON protocol on ``stdout`` is the default front end; ``frontends`` adds the API and the terminal view.
    """
    frontends = frontends or Frontends(market=session.formatter.market)
    if frontends.watchers:
        session.formatter.market = True  # the API and the terminal view show quotes; the JSON lines filter them
    backend = session.backend
    valuation = backend.valuation() if hasattr(backend, "valuation") else None
    service = EngineService(
        session, tick=tick, tick_ms=tick_ms, side_feed=side_feed, clock=clock, valuation=valuation,
        halt=getattr(backend, "halt", None), resume=getattr(backend, "resume", None),
        mode=getattr(backend, "mode", "sim"),
    )  # fmt: skip
    out = stdout if stdout is not None else sys.stdout.buffer
    service.stop_on_signals()  # before any front end: a Ctrl-C at the first prompt comes before run() and stops too
    closers: list[Callable[[], None]] = []
    try:
        if frontends.view == "tty":
            from .tty import TerminalView

            view = TerminalView(service, stdin=stdin, out=sys.stdout)
            service.sink = view
        else:
            service.sink = JsonLines(out, market=frontends.market)
            read_lines(service, stdin)
        if frontends.http is not None:
            from .http_api import serve_api

            server = serve_api(
                service, frontends.http, run_dir=frontends.run_dir, token=frontends.token, **(frontends.api or {})
            )
            closers.append(server.close)
            service.urls["api"] = server.url  # the terminal view shows it (never with the token)
        if frontends.view == "tty":
            view.start()
            closers.insert(0, view.close)  # closed last (once started: closing gives the terminal and history back)
        return service.run()
    finally:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                close()
        service.restore_signals()  # run() gave them back already, unless a front end failed to start
