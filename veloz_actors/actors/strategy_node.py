"""Strategies live: a strategy written for backtests (:class:`~veloz_actors.strategies.base.Strategy`) runs
unchanged against the actor engine.

A :class:`StrategyNode` actor subscribes to the event bus (its own bounded queue), turns top-of-book updates into
bars of ``bar_ms`` (mid price; a bar is delivered when the first update of the next bar arrives), calls the
strategy's callbacks, and sends its orders through the OMS (risk, funds reservation, then the venue) with a
:class:`LiveContext` that implements the backtest's :class:`~veloz_actors.strategies.base.StrategyContext`. The
context reads a local view of the account kept current from the bus and sends orders one-way: a strategy callback
never blocks on another actor. The strategy's order events (``on_order_event``) come from the bus too: those of
the orders it placed (and of those it asked to cancel), as in a backtest, where the strategy is the only trader. The
other orders of its account (placed by hand, through the API or by another strategy) are not its business unless its
entry says ``order_events: all``. (A strategy restarted by Ray is a new object: the orders its earlier self placed
are not told to it.)
Its commands in flight are bounded as any client's are (``actors.order_inbox``): one beyond the window is not sent,
and the strategy gets an ``OrderRejected`` (``OVERLOADED``) for it, so a strategy that floods orders cannot queue
without limit in front of the OMS (and of everyone else's orders and cancels, the risk actor's halt among them).
A command in flight when the OMS dies is sent again, the very same one, once Ray has restarted it (the OMS applies
an identical command once: its answer is the first application's), as the Python handle does; its outcome then
reaches the strategy on the bus like any other. (It goes after what the strategy sent in the meantime, a poll's
worth at most: a cancel of it sent then is refused as unknown, and the order's own events say it is open.)
An exception in strategy code is counted and reported in ``status()`` (``errors``, ``last_error``: its type and
message, secrets redacted; ``failing`` while the last one is less than ``_FAILING_SECONDS`` old, which puts the
strategy in STATUS ``problems``), and logged with its traceback in the strategy actor's log file (the first, then at
most one every ``_ERROR_LOG_SECONDS`` with the count so far, so a strategy failing on every book update cannot flood
it); the strategy keeps getting its callbacks, and the engine goes on. A callback that does not return (blocked on
I/O, waiting on a lock, an endless loop) cannot be interrupted; ``status()`` names it and how long it has run
(``callback``, ``callback_seconds``), and once that passes ``_STUCK_SECONDS`` the strategy is ``stuck``, which puts it
in STATUS ``problems`` too: meanwhile it gets no event (they wait in its bus queue, the oldest dropped past its limit,
counted) and places no order.
An order of the strategy that is refused (by risk, funds, the venue, its own window) comes to ``on_order_event`` like
any other outcome; it is also counted by reason in ``status()`` (``rejected``, ``last_rejection``: reason and detail),
logged the first time for each reason (the next are counted, not logged), and once ``_REFUSED_IN_A_ROW`` of its
orders in a row were refused (``refused_in_a_row``; an accepted one ends the run) the strategy is ``refusing``, which
puts it in STATUS ``problems``: a strategy whose every order is refused (sma_cross buying with all the account's
cash, above the risk limit's order size) otherwise looked like one trading.

Configured in the ``actors:`` section of the engine config::

    actors:
      strategies:
        - {strategy: sma_cross, params: {fast: 5, slow: 20}, symbol: BTCUSDT, bar_ms: 1000, account: main}
          # order_events: all   # every order event of the account, not only its own orders'
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

from ..logs import LogSettings, log_file_status, redact
from ..messages import (
    AccountUpdated,
    BookTop,
    CancelOrder,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderType,
    PositionUpdated,
    RejectReason,
    Side,
    TimeInForce,
    Trade,
)
from ..orders import ClientOrderIds, build_place_order
from ..strategies.bar_strategies import make_strategy
from ..strategies.base import Bar, StrategyContext
from .backpressure import InFlightWindow, overloaded
from .batches import as_events
from .spec import start_actor_process

__all__ = ["LiveContext", "StrategyNode"]

_log = logging.getLogger("veloz.strategy")

_POLL_SECONDS = 0.01
# the account's view is read from the OMS again this often, without waiting: events the bus never carried (those an
# OMS that died had not yet published; its restart pushes the account view its full state, not the strategies) would
# leave it stale until that symbol's next update, and a strategy decides on it (sma_cross buys when flat)
_VIEW_REFRESH_SECONDS = 5.0
_ERROR_LOG_SECONDS = 10.0  # a strategy's exceptions are logged at most this often (each one is counted)
_FAILING_SECONDS = 60.0  # a strategy whose last exception is younger than this is failing (STATUS problems)
_STUCK_SECONDS = 10.0  # a strategy whose callback has run this long is stuck (STATUS problems)
_REFUSED_IN_A_ROW = 5  # a strategy whose last this many orders were all refused is refusing (STATUS problems)
_ERROR_TEXT_LENGTH = 300  # characters of an exception's message kept in STATUS
_FINISHED_KEPT = 10_000  # the strategy's finished orders whose late events (a cancel refused) still reach it
# a cancel refused for these reasons says the order is no longer open
_NOT_OPEN = frozenset({RejectReason.UNKNOWN_ORDER, RejectReason.ORDER_NOT_OPEN})
_RESEND_SECONDS = 60.0  # how long a command whose call the OMS's death cut is sent again (the handle waits as long)
_RESEND_PAUSE = (0.05, 1.0)  # between two rounds of resends: the first, doubling to the last while calls keep failing
_OMS_DIED = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
_ORDER_EVENTS = (OrderAccepted, OrderRejected, OrderFilled, OrderCancelled, OrderExpired)
_VIEW_EVENTS = (AccountUpdated, PositionUpdated)
_KINDS = ["BookTop", "Trade", *(cls.TYPE for cls in _ORDER_EVENTS + _VIEW_EVENTS)]


class LiveContext(StrategyContext):
    """:class:`~veloz_actors.strategies.base.StrategyContext` over the OMS actor (one account), never blocking.

    Balances and positions are a local view, filled once when the node starts and then kept current from the
    account's ``AccountUpdated`` and ``PositionUpdated`` events on the bus; orders and cancels go to the OMS one-way,
    and their outcome (accepted, rejected, filled, ...) comes back as events on the bus. So a strategy callback never
    waits on another actor. The view lags the OMS by the bus's delivery (a millisecond or so): a strategy that
    places two orders in one callback sees its funds before either; the kernel still rejects what is not funded.
    At most ``order_inbox`` commands are unanswered at once; one beyond them is refused here, and the refusal waits in
    :meth:`take_refused` for the node to tell the strategy after the callback that placed it.
    """

    def __init__(
        self,
        oms: Any,
        account_id: str,
        instruments: dict[str, tuple[str, str]],
        ids: ClientOrderIds,
        *,
        order_inbox: int,
    ) -> None:
        self.oms = oms
        self.account_id = account_id
        self.instruments = instruments  # symbol -> (base, quote, qty_step)
        self.ids = ids  # where the orders' client order ids come from, made locally
        self.ts = 0
        self.orders = 0
        self.balances: dict[str, tuple[int, int]] = {}  # asset -> (free, locked)
        self.positions: dict[str, int] = {}  # symbol -> signed quantity
        # while a refresh's answer is on its way: the last view event seen of each kind and symbol, applied again after
        # the answer (one published after the OMS answered would otherwise be undone by it)
        self.seen_since_ask: dict[Any, Any] | None = None
        self.window = InFlightWindow(order_inbox)  # commands sent and not yet answered
        self.in_flight: list[tuple[Any, Any, float]] = []  # (object ref, command, resend until), checked unwaited
        self.to_resend: list[tuple[Any, float]] = []  # (command, resend until): calls the OMS's death cut
        self.resent = 0
        self._resend_at = 0.0  # time.monotonic() of the next round of resends
        self._resend_pause = _RESEND_PAUSE[0]
        self.refused: list[OrderRejected] = []  # OVERLOADED answers made here, not yet told to the strategy
        self.send_errors = 0
        self.last_send_error: str | None = None
        self.own: dict[str, bool] = {}  # client order id -> accepted: the strategy's orders still open (or on the way)
        self.finished: OrderedDict[str, None] = OrderedDict()  # its latest finished orders, at most _FINISHED_KEPT

    def load(self, balances: dict[str, tuple[int, int]], positions: Sequence[PositionUpdated]) -> None:
        """Replace the view (at start, and after the bus dropped events the view depends on)."""
        self.balances = dict(balances)
        self.positions = {p.symbol: p.qty for p in positions}

    def observe(self, event: Any) -> None:
        """Keep the view current from one of the account's events."""
        kind = type(event)
        if kind is AccountUpdated:
            self.balances = {b.asset: (b.free, b.locked) for b in event.balances}
        elif kind is PositionUpdated:
            self.positions[event.symbol] = event.qty
        else:
            return
        if self.seen_since_ask is not None:
            self.seen_since_ask[getattr(event, "symbol", kind)] = event

    def refreshed(self, balances: dict[str, tuple[int, int]], positions: Sequence[PositionUpdated]) -> None:
        """Replace the view with the OMS's answer to a refresh asked when :attr:`seen_since_ask` was set to ``{}``,
        then apply again the events seen since the ask: each may have been published after the OMS answered, and
        carries whole values, so the last of each kind and symbol is the newest the view knows."""
        seen, self.seen_since_ask = self.seen_since_ask or {}, None
        self.load(balances, positions)
        for event in seen.values():
            self.observe(event)

    def now(self) -> int:
        return self.ts

    def position(self, symbol: str) -> int:
        return self.positions.get(symbol, 0)

    def free(self, asset: str) -> int:
        return self.balances.get(asset, (0, 0))[0]

    def locked(self, asset: str) -> int:
        return self.balances.get(asset, (0, 0))[1]

    def base_asset(self, symbol: str) -> str:
        return self.instruments[symbol][0]

    def quote_asset(self, symbol: str) -> str:
        return self.instruments[symbol][1]

    def qty_step(self, symbol: str) -> int:
        entry = self.instruments[symbol]
        return int(entry[2]) if len(entry) > 2 else 1  # (base, quote, step); without a step, any quantity

    def place_order(
        self,
        symbol: str,
        side: Side,
        *,
        qty: int = 0,
        price: int | None = None,
        order_type: OrderType | None = None,
        tif: TimeInForce = TimeInForce.GTC,
        quote_qty: int | None = None,
        client_order_id: str | None = None,
    ) -> str:
        command = build_place_order(
            symbol,
            side,
            qty=qty,
            price=price,
            order_type=order_type,
            tif=tif,
            quote_qty=quote_qty,
            client_order_id=client_order_id,
            ids=self.ids,
            account_id=self.account_id,
            ts=max(self.ts, time.time_ns()),
        )
        self.orders += 1
        if self._send(command):
            cid = command.client_order_id
            self.own[cid] = False
            self.finished.pop(cid, None)
        return command.client_order_id

    def cancel_order(self, client_order_id: str) -> None:
        sent = self._send(CancelOrder(client_order_id=client_order_id, account_id=self.account_id, ts=time.time_ns()))
        if sent and client_order_id not in self.own and client_order_id not in self.finished:
            self.own[client_order_id] = True  # an order it did not place: the strategy asked for its outcome

    def mine(self, event: Any) -> bool:
        """Whether an order event of the account is of an order this strategy placed or asked to cancel; keeps
        the set of its open orders current (a finished order moves to a bounded set, for its late events)."""
        cid = event.client_order_id
        accepted = self.own.get(cid)
        kind = type(event)
        if accepted is None:
            if cid not in self.finished:
                return False
            if kind is OrderAccepted:  # a cancel sent before the acceptance was refused: the order is open after all
                del self.finished[cid]
                self.own[cid] = True
            return True
        if kind is OrderAccepted or (kind is OrderFilled and event.leaves_qty > 0):
            self.own[cid] = True
            return True
        if kind is OrderRejected and accepted and event.reason not in _NOT_OPEN:
            return True  # a cancel refused: the order is still open
        del self.own[cid]  # rejected, cancelled, expired, filled in full, or a cancel refused for a closed order
        self.finished[cid] = None
        if len(self.finished) > _FINISHED_KEPT:
            self.finished.popitem(last=False)
        return True

    def _send(self, command: Any) -> bool:
        """One-way to the OMS if the window has room (the answered calls leave it first), else refused ``OVERLOADED``
        without being sent (False); the reference is kept to notice a call that failed."""
        if self.window.depth >= self.window.limit:
            self.reap()
        if not self.window.admit():
            self.refused.append(overloaded(command, self.window.refusal("strategy order window")))
            return False
        self.in_flight.append((self.oms.submit.remote(command), command, time.monotonic() + _RESEND_SECONDS))
        return True

    def take_refused(self) -> list[OrderRejected]:
        """The ``OVERLOADED`` refusals made since the last call, each given once."""
        refused, self.refused = self.refused, []
        return refused

    def reap(self) -> None:
        """Look, without waiting, at the commands sent: those answered leave the window; one whose call the OMS's
        death cut is sent again (until ``_RESEND_SECONDS`` after it was first sent; rounds of resends back off while
        they keep failing, so an OMS that cannot come back is not called in a loop); count those that failed."""
        now = time.monotonic()
        if self.in_flight:
            refs = [ref for ref, _, _ in self.in_flight]
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            finished = set(done)
            pending: list[tuple[Any, Any, float]] = []
            answered = 0
            for ref, command, resend_until in self.in_flight:
                if ref not in finished:
                    pending.append((ref, command, resend_until))
                    continue
                try:
                    ray.get(ref, timeout=0)
                    self._resend_pause = _RESEND_PAUSE[0]
                except _OMS_DIED as exc:
                    if now < resend_until:  # Ray restarts it: an identical command is applied once
                        self.to_resend.append((command, resend_until))
                        continue
                    self._failed(exc)
                except Exception as exc:  # noqa: BLE001 - the strategy sees no order event for it: counted
                    self._failed(exc)
                answered += 1
            self.window.done(answered)
            self.in_flight = pending
        if self.to_resend and now >= self._resend_at:
            for command, resend_until in self.to_resend:
                self.in_flight.append((self.oms.submit.remote(command), command, resend_until))
            self.resent += len(self.to_resend)
            self.to_resend = []
            self._resend_at = now + self._resend_pause
            self._resend_pause = min(2 * self._resend_pause, _RESEND_PAUSE[1])

    def _failed(self, exc: Exception) -> None:
        self.send_errors += 1
        self.last_send_error = f"{type(exc).__name__}: {exc}"


class StrategyNode:
    """Runs one configured strategy on one symbol's bars (see the module docstring)."""

    def __init__(
        self,
        settings: dict[str, Any],
        oms: Any,
        bus: Any,
        instruments: dict[str, tuple[str, str]],
        *,
        order_inbox: int,
        log_settings: LogSettings | None = None,
        log_name: str = "strategy",
        rebuilt: bool = False,
    ) -> None:
        start_actor_process(log_settings, log_name, rebuilt=rebuilt)
        self.settings = dict(settings)
        self.symbol = str(settings["symbol"])
        self.bar_ns = int(settings.get("bar_ms", 1000)) * 1_000_000
        name = str(settings["strategy"])
        self.strategy = make_strategy(name, dict(settings.get("params", {})))
        ids = ClientOrderIds.for_session(name[:14])  # the strategy's name, then this session's stamp
        self.ctx = LiveContext(oms, str(settings.get("account", "main")), instruments, ids, order_inbox=order_inbox)
        self.oms = oms
        self.bus = bus
        self.queue = int(settings.get("queue", 10_000))
        self.all_order_events = settings.get("order_events", "own") == "all"
        self._busy: tuple[str, float] | None = None  # the callback running now and its time.monotonic() start
        self.stuck_seconds = _STUCK_SECONDS
        self.rejected: Counter[str] = Counter()  # the strategy's orders refused, by reason
        self.last_rejection: str | None = None  # the last one's reason and detail
        self.refused_in_a_row = 0  # its orders refused since the last one accepted
        self.refusing_after = _REFUSED_IN_A_ROW
        self.sid = ray.get(bus.subscribe.remote(self.queue, _KINDS), timeout=30)
        self._view_asked: list[Any] | None = None  # the OMS calls of a refresh on their way
        self._load_view()  # after subscribing: nothing between the two is missed
        self.bar = Bar(self.symbol)
        self.bar_start = -1
        self.bars = 0
        self.errors = 0
        self.last_error: str | None = None
        self._last_error_at = 0.0  # time.monotonic() of the last exception
        self.failing_seconds = _FAILING_SECONDS
        self.error_log_seconds = _ERROR_LOG_SECONDS
        self._next_error_log = 0.0  # time.monotonic() from which the next exception is logged
        self.dropped = 0
        self.view_refresh_seconds = _VIEW_REFRESH_SECONDS
        self.view_refreshes = 0
        self._view_due = time.monotonic() + self.view_refresh_seconds
        self._stop = threading.Event()
        self._guard(self.strategy.on_start, self.ctx)
        self._thread = threading.Thread(target=self._run, name="veloz-strategy", daemon=True)
        self._thread.start()

    def _guard(self, callback: Any, *args: Any) -> None:
        self._busy = (callback.__name__, time.monotonic())  # read by status(), on the actor's own thread
        try:
            callback(*args)
        except Exception as exc:  # noqa: BLE001 - strategy code: count it, report it, keep the engine running
            now = time.monotonic()
            self.errors += 1
            self.last_error = redact(f"{type(exc).__name__}: {exc}")[:_ERROR_TEXT_LENGTH]
            self._last_error_at = now
            if now >= self._next_error_log:
                self._next_error_log = now + self.error_log_seconds
                _log.error(
                    "strategy %s on %s raised in %s (%d errors so far; the next logged %.0f s later at the earliest)",
                    self.settings["strategy"], self.symbol, callback.__name__, self.errors, self.error_log_seconds,
                    exc_info=True,
                    extra={"strategy": self.settings["strategy"], "symbol": self.symbol,
                           "callback": callback.__name__, "errors": self.errors},
                )  # fmt: skip
        finally:
            self._busy = None

    def _load_view(self) -> None:
        """Fill the context's view of the account from the OMS: at start, and after events were dropped (outside
        every strategy callback: this is the node's own loop). A refresh on its way is dropped: its answer may be
        older than this one, and would undo what the dropped events changed."""
        self._view_asked = None
        self.ctx.seen_since_ask = None
        account = self.ctx.account_id
        balances, positions = ray.get(
            [self.oms.balances.remote(account), self.oms.positions.remote(account)], timeout=30
        )
        self.ctx.load(balances, positions)

    def _refresh_view(self) -> None:
        """Every ``view_refresh_seconds``, ask the OMS for the account's balances and positions and, once both answers
        are in (looked at without waiting, on later turns of the loop), replace the view with them: a view left stale
        by events the bus never carried is put right within that time. An OMS that cannot answer (restarting) is
        asked again at the next refresh. The view events seen while the answer was on its way are applied again after
        it (one published after the OMS answered, a fill, would be undone by it until that symbol's next update);
        those still on their way that predate it are applied after it, and each carries whole values, so the view is
        the OMS's again with the next of them."""
        now = time.monotonic()
        asked = self._view_asked
        if asked is None:
            if now >= self._view_due:
                account = self.ctx.account_id
                self.ctx.seen_since_ask = {}  # before the ask: an answer may predate what the bus brings meanwhile
                self._view_asked = [self.oms.balances.remote(account), self.oms.positions.remote(account)]
            return
        done, _ = ray.wait(asked, num_returns=len(asked), timeout=0)
        if len(done) < len(asked):
            return
        self._view_asked = None
        self._view_due = now + self.view_refresh_seconds
        try:
            balances, positions = ray.get(asked, timeout=0)
        except Exception:  # noqa: BLE001 - the OMS is restarting: the next refresh asks again
            self.ctx.seen_since_ask = None
            return
        self.ctx.refreshed(balances, positions)
        self.view_refreshes += 1

    def _run(self) -> None:
        while not self._stop.wait(_POLL_SECONDS):
            try:
                items, dropped = ray.get(self.bus.poll.remote(self.sid), timeout=30)
            except Exception:  # noqa: BLE001 - the bus is restarting: poll again
                continue
            if dropped < 0:  # the bus restarted or dropped us as idle: subscribe again (bars go on with the next)
                with contextlib.suppress(Exception):
                    self.sid = ray.get(self.bus.subscribe.remote(self.queue, _KINDS), timeout=30)
                    self.dropped = 0  # the new queue counts from zero
                    self._load_view()
                continue
            if dropped > self.dropped:  # a slow strategy lost events: its view of the account may be stale
                self.dropped = dropped
                with contextlib.suppress(Exception):
                    self._load_view()
            self._deliver(items)
            self.ctx.reap()
            self._refresh_view()
            for refusal in self.ctx.take_refused():  # after the callbacks that placed them, never inside one
                self._note_outcome(refusal)
                self._guard(self.strategy.on_order_event, refusal)

    def _deliver(self, items: Sequence[Any]) -> None:
        account = self.ctx.account_id
        for event in as_events(items):
            kind = type(event)
            if kind is BookTop:
                if event.symbol == self.symbol:
                    self._on_top(event)
            elif kind is Trade:
                if event.symbol == self.symbol:
                    self._guard(self.strategy.on_trade, event)
            elif getattr(event, "account_id", None) != account:
                continue
            elif kind in _VIEW_EVENTS:
                self.ctx.observe(event)
            elif kind in _ORDER_EVENTS:
                mine = self.ctx.mine(event)  # keeps the set of its open orders current
                if mine:
                    self._note_outcome(event)
                if mine or self.all_order_events:
                    self._guard(self.strategy.on_order_event, event)

    def _note_outcome(self, event: Any) -> None:
        """Count the strategy's orders refused (a refused cancel, which carries no side, is not one) and the run of
        them since its last order accepted; log the first refusal for each reason."""
        kind = type(event)
        if kind is OrderAccepted:
            self.refused_in_a_row = 0
        elif kind is OrderRejected and event.side is not None:
            reason = event.reason.value
            self.rejected[reason] += 1
            self.refused_in_a_row += 1
            self.last_rejection = redact(f"{reason}: {event.detail}")[:_ERROR_TEXT_LENGTH]
            if self.rejected[reason] == 1:
                _log.warning(
                    "strategy %s on %s: order %s refused, %s (the first refusal for this reason: the next are "
                    "counted in STATUS, not logged)",
                    self.settings["strategy"], self.symbol, event.client_order_id, self.last_rejection,
                    extra={"strategy": self.settings["strategy"], "symbol": self.symbol, "reason": reason},
                )  # fmt: skip

    def _on_top(self, top: BookTop) -> None:
        if not top.bid_price or not top.ask_price:
            return
        self.ctx.ts = top.ts_event
        mid = (top.bid_price + top.ask_price) // 2
        start = top.ts_event - top.ts_event % self.bar_ns
        bar = self.bar
        if start != self.bar_start:
            if self.bar_start >= 0:
                self.bars += 1
                self._guard(self.strategy.on_bar, bar)
            self.bar_start = start
            bar.index += 1
            bar.open_time = start
            bar.open = bar.high = bar.low = bar.close = mid
            bar.volume = 0
        else:
            bar.high = max(bar.high, mid)
            bar.low = min(bar.low, mid)
            bar.close = mid
        self._guard(self.strategy.on_book, top)

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        age = now - self._last_error_at if self.errors else None
        busy = self._busy
        running = None if busy is None else now - busy[1]
        return {
            "pid": os.getpid(),
            "last_seq": self.bars,
            "strategy": self.settings["strategy"],
            "symbol": self.symbol,
            "bars": self.bars,
            "orders": self.ctx.orders,
            "overloaded": self.ctx.window.rejected,
            "in_flight": self.ctx.window.depth,
            "resent": self.ctx.resent,
            "send_errors": self.ctx.send_errors,
            "view_refreshes": self.view_refreshes,
            "errors": self.errors,
            "last_error": self.last_error,
            "last_error_age_seconds": None if age is None else round(age, 3),
            "failing": age is not None and age < self.failing_seconds,
            "callback": None if busy is None else busy[0],  # the strategy's callback running now, if any
            "callback_seconds": None if running is None else round(running, 3),
            "stuck": running is not None and running >= self.stuck_seconds,
            "rejected": dict(self.rejected),  # its orders refused, by reason
            "last_rejection": self.last_rejection,
            "refused_in_a_row": self.refused_in_a_row,
            "refusing": self.refused_in_a_row >= self.refusing_after,
            "order_events": "all" if self.all_order_events else "own",
            "dropped": self.dropped,
            "log": log_file_status(),
        }

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.bars

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._guard(self.strategy.on_stop)
