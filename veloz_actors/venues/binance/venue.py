"""The Binance spot trading adapter behind the venue protocol: orders, cancels, the user data stream, reconciliation.

:class:`BinanceVenue` runs on an asyncio loop (:class:`VenueThread` runs one on its own loop thread for an actor or the
single-process engine). ``submit(request)`` / ``cancel(request)`` take the kernel's
:class:`~veloz_actors.messages.SubmitOrder` / :class:`~veloz_actors.messages.SubmitCancel`, return ``[]`` at once, and
every execution report arrives later through ``reports(batch)``, in order, from the loop thread.

**Transport.** One WebSocket API connection (``ws_api_url``, ``/ws-api/v3``) carries the user data stream, subscribed
session-free with ``userDataStream.subscribe.signature`` (the listenKey endpoints are gone). ``order_path="ws"``
(default) sends orders, cancels and queries over that same connection (``order.place``, ``order.cancel``,
``order.status``, ``openOrders.status``, ``account.status``, ``myTrades``): no HTTP request per order, every answer
carries the exchange's rate-limit counts, and the connection is needed for the stream anyway. ``order_path="rest"``
sends them as signed REST requests (``/api/v3/order``, ``openOrders``, ``account``, ``myTrades``) instead, so orders
do not depend on the stream connection. ``/api/v3/time`` (clock) and ``/api/v3/exchangeInfo`` (rate limits, the
symbols' rules) are always REST.

**Rules.** At start (with the rate limits) and every ``exchange_info_every`` seconds (:class:`VenueThread`),
exchangeInfo is compared with the instruments the adapter trades with (:func:`~.instruments.check_rules`): a symbol
whose status left ``TRADING``, that Binance no longer lists (its -1121 to the list: the unfiltered exchangeInfo is
asked instead, and the symbol by name never again), or whose filters changed has its new orders rejected ``HALTED``
with that reason (cancels still go) until a check finds it trading under the same rules; each change is logged once
and sent to ``events`` as ``VenueConnection`` ``halted`` / ``trading`` for the symbol; ``status()["halted_symbols"]``.

**Clock.** ``clock_samples`` samples of ``GET /api/v3/time`` at every connect, each timed around its HTTP exchange
(a wait for the send lock or the rate-limit gate is not round trip); the one with the smallest round trip
gives ``offset = serverTime - midpoint``; every signed request carries ``timestamp = local + offset`` and
``recvWindow``. A -1021 answer (timestamp outside the window) resamples the clock and sends that request once more
(Binance refused it before the matching engine, so this is not a resend of an order it may have taken).

**Rate limits** (:class:`~.limits.RateLimits`): the limits from exchangeInfo's ``rateLimits``, the counts from every
answer (REST ``X-MBX-*`` headers, WS ``rateLimits``). Requests leave in the order they were made, one gate for all;
while a 429/418 ``Retry-After`` block (or a full weight window) lasts nothing is sent: requests wait in order, and a
trader's order or cancel that would wait longer than ``max_rate_limit_wait`` is rejected ``RATE_LIMIT`` instead (the
adapter's own queries wait as long as it takes). A 429 for the account's unfilled-order count (-1015 "Too many new
orders") is not the IP's: it holds back new orders only until its ``Retry-After`` (they wait outside the gate, so
cancels and queries go on). An order beyond the ``ORDERS`` count is rejected locally
(``VenueOrderRejected(reason=RATE_LIMIT)``) without being sent.

**Orders.** ``LIMIT`` (``GTC``/``IOC``/``FOK``), ``LIMIT_MAKER`` for ``POST_ONLY``, ``MARKET`` by ``quantity`` or
``quoteOrderQty``; ``newClientOrderId`` is the VeloZ client order id; ``newOrderRespType=FULL``, so the answer lists
every fill taken on arrival (the same fills come again from the stream: the adapter drops the repeats, and the kernel
books a trade id once anyway). The instrument's filters are checked first: a violation is a local
``VenueOrderRejected`` whose detail names the filter (``PRICE_FILTER``, ``LOT_SIZE``, ``MARKET_LOT_SIZE``,
``NOTIONAL``). Error answers go through :func:`~.errors.classify`. A timeout, a dropped connection, an unknown-outcome
error (-1000/-1001/-1006/-1007, any 5xx) or Binance's "Duplicate order sent." make the order's outcome unknown:
``VenueOrderStatusUnknown``, then ``order.status`` by ``origClientOrderId`` with backoff until it is known (a timed-out
request leaves the WebSocket API's waiting list at once; an answer that still comes is counted in ``late_answers``
and not used). Binance
needs a client id to be unique among open orders only, so that query may find an earlier, closed order that had the
id (the kernel's ids restart in a new run): one created before this request could have arrived (its ``time`` before
the send time less ``max(recvWindow, 1 s)`` and the margin), or whose side, type or quantity differ, is not this order
and counts as "no such order" (logged; ``orderId`` is sent too once it is known, and then Binance answers for that
order only). An order Binance does not know (-2013) once the request's ``timestamp + recvWindow`` (+ a margin) has
passed on Binance's clock can never arrive: it is rejected (never placed, so the kernel releases its funds; the detail
says so). Otherwise its state and its trades become the reports: ``myTrades`` by ``orderId`` from ``fromId`` 0 in
pages of 1000, until a short page (an order can trade more often than one page holds). **An order is never sent
twice**: a repeated ``SubmitOrder`` for a client id already sent is ignored (its acceptance is repeated when known).

**Fills before ends.** Every report that states an order's cumulative filled quantity (the stream's ``z``, an
answer's ``executedQty``) is compared with the fills already reported: when fills are missing (a missed or late
``TRADE``), a cancel, expiry or rejection is held back, the order's trades are fetched (``myTrades`` by ``orderId``,
after ``catch_up_delay`` in case the late event arrives by itself), the missing fills are reported, and only then the
end. A fill-only shortfall is caught up the same way.

**Cancels** go by ``origClientOrderId``; they wait (at most ``cancel_wait``) for the venue to be ready and for the
order's own answer or resolution, so a cancel never overtakes its order: one whose order is still unanswered then is
not sent but refused (``VenueCancelRejected``, cancel again), since Binance would refuse it -2011 and the order could
still rest. -2011 "Unknown order sent." ->
``VenueCancelRejected(ORDER_NOT_OPEN)``, and the order's state is fetched to settle whatever the adapter missed. A
cancel whose answer is lost is settled by querying the order (still open: ``VenueCancelRejected``, cancel again).

**User data.** ``executionReport`` -> execution reports (exact duplicates and repeated fills dropped, bounded;
reports of client ids VeloZ never used are not passed on but raised as :class:`~.reconcile.ExternalOrder` events);
a ``TRADE_PREVENTION`` that leaves the order working (STP ``DECREMENT`` / ``TRANSFER``) ends nothing;
``outboundAccountPosition`` / ``balanceUpdate`` -> ``VenueBalance`` / ``VenueBalanceDelta`` in the same report
stream (a balance row that cannot be read, 10**10 units or more of a token, is left out, the others kept, and said
once per asset as ``VENUE_BAD_REPORT``; counted in ``bad_input.balance_row``). An event of a type this client does not
read (one Binance added: every documented type is read or ignored on purpose) is ignored, counted
(``counts.unknown_events``) and said once per type. ``eventStreamTerminated`` -> subscribe again and reconcile;
``serverShutdown`` and the connection reaching ``max_connection_seconds`` (before Binance's 24-hour cut) -> let the
answers in flight arrive, reconnect, subscribe, reconcile; any other loss -> reconnect with exponential backoff and
full jitter.

**Reconciliation** (:meth:`BinanceVenue.reconcile`, and automatically after every (re)subscription, before the adapter
is ready): ``account.status``, ``openOrders.status`` per symbol, ``order.status`` for each known open order that is
not open any more, ``myTrades`` per symbol from the last known trade id + 1 (or per known order by ``orderId``), then
:func:`~.reconcile.build_reconciliation`. Stream events arriving meanwhile are held and handled after its reports.
The kernel's view comes from the caller (``reconcile(known_orders, last_trade_ids, balances)``, or ``view=`` a
callable the adapter calls on its loop thread), else from the adapter's own record of what it has reported. Its
reports and the ``VenueBalance`` snapshot go to ``reports``; the :class:`~.reconcile.ReconcileReport` and its
:class:`~.reconcile.ExternalOrder` / :class:`~.reconcile.BalanceDifference` events go to ``events`` (ids derived from
the exchange's ids: a repeat gives the same ids); the summary appears in ``status()["reconcile"]``.

**Ready.** :attr:`BinanceVenue.ready` is False until the first reconciliation finished, and again while the stream is
being re-established; meanwhile every order is rejected ``HALTED`` with a detail that says why, and
``status()["not_ready"]`` says the same. A fatal error (bad key or signature, trading disabled) halts the adapter:
orders are rejected ``HALTED`` until a human fixes the key and restarts it.

**Secrets** never appear in a log line, an error, a report's detail or the status: requests are never logged with
their parameters, error details come from Binance's code and message only (:func:`~.errors.classify` redacts long
tokens), and the status shows the API key masked as :class:`~.auth.Credentials` does. Logger ``veloz.binance``, at
most a few lines per kind per minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import threading
import time
import urllib.request
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import aiohttp
import orjson
import yarl

from ..._exceptions import DataError, InvalidInput, VelozError
from ...core.instruments import Instrument
from ...fixed import format_decimal
from ...logs import redact_url, redacted_repr
from ...messages import (
    Error,
    OrderType,
    PlaceOrder,
    RejectReason,
    Side,
    SubmitCancel,
    SubmitOrder,
    TimeInForce,
    VenueBalance,
    VenueBalanceDelta,
    VenueCancelRejected,
    VenueConnection,
    VenueOrderAccepted,
    VenueOrderCancelled,
    VenueOrderExpired,
    VenueOrderFilled,
    VenueOrderRejected,
    VenueOrderStatusUnknown,
)
from .auth import Credentials, query_string
from .errors import Outcome, classify
from .instruments import asks_unfiltered, check_rules, exchange_info_query
from .limits import RateLimits, parse_rate_limits
from .market_data import Backoff, LogLimiter, LoopThread, check_endpoints
from .reconcile import (
    ARCHIVED,
    NEVER_PLACED,
    ExternalOrder,
    KernelView,
    KnownOrder,
    ReconcileReport,
    VenueSnapshot,
    balance_effects,
    build_reconciliation,
    leaves_after,
)
from .schemas import decimal_units
from .user_data import (
    TERMINATING_EVENT_TYPES,
    USER_EVENT_TYPES,
    VENUE,
    AccountTrade,
    OrderState,
    parse_account_balances,
    parse_cancel_response,
    parse_execution_reports,
    parse_my_trades,
    parse_open_orders,
    parse_order_response,
    parse_order_state,
    parse_user_event,
)

__all__ = [
    "BinanceVenue",
    "BinanceVenueSettings",
    "VenueThread",
    "VenueUnavailable",
    "account_ledger",
    "check_filters",
    "clock_offset",
    "order_params",
]

log = logging.getLogger("veloz.binance")

OrderPath = Literal["ws", "rest"]

_R = RejectReason
_MS = 1_000_000
_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")  # Binance's newClientOrderId rule
_TERMINAL = (VenueOrderCancelled, VenueOrderExpired, VenueOrderRejected)
_SAID_ONCE = 1_000  # distinct unknown event types and unreadable balances said once each; beyond, only counted
_REST = {
    "order.place": ("POST", "/api/v3/order"),
    "order.cancel": ("DELETE", "/api/v3/order"),
    "order.status": ("GET", "/api/v3/order"),
    "openOrders.status": ("GET", "/api/v3/openOrders"),
    "account.status": ("GET", "/api/v3/account"),
    "myTrades": ("GET", "/api/v3/myTrades"),
    "time": ("GET", "/api/v3/time"),
    "exchangeInfo": ("GET", "/api/v3/exchangeInfo"),
}
_ALWAYS_REST = frozenset({"time", "exchangeInfo"})
_CLOCK_SAMPLES = 5  # GET /api/v3/time round trips per clock estimate (the smallest one counts)
_MY_TRADES_LIMIT = 1000
_OPEN_ORDERS_ALL_WEIGHT = 80
_OPEN_ORDERS_SYMBOL_WEIGHT = 6


# ----------------------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class BinanceVenueSettings:
    """Where to trade and how patiently.

    ``order_path``: ``"ws"`` (default: orders over the WebSocket API connection that also carries the user data
    stream) or ``"rest"``. ``request_timeout``: seconds to wait for an answer (Binance's own backend timeout is 10 s);
    no answer -> the order's outcome is unknown and is queried. ``max_rate_limit_wait``: the longest a trader's order
    or cancel waits for a rate-limit block before it is rejected ``RATE_LIMIT``. ``cancel_wait``: the longest a cancel
    waits for the venue to be ready and for its order's answer. ``catch_up_delay``: how long a late stream event may
    take before missing fills are fetched. ``never_placed_margin_ms``: added to ``recvWindow`` before "no such order"
    is taken to mean "never placed". ``rate_limit_margin_ms``: added (with the clock's round trip) to every 429/418
    block, so that no request arrives a moment before Binance's ``Retry-After`` ends. ``heartbeat``: client ping
    interval (s) on the WebSocket (None: only answer the server's pings). ``max_connection_seconds``: the connection is
    renewed after this long (Binance cuts it at 24 hours). ``dedup_size``: exact duplicate reports remembered;
    ``max_closed_orders``: closed orders kept. ``exchange_info_every``: seconds between two checks of the traded
    symbols' status and filters against exchangeInfo (weight 20 each, of Binance's 6000 a minute; None: only at
    start), run by :class:`VenueThread`.
    """

    rest_url: str
    ws_api_url: str
    recv_window_ms: int = 5000
    order_path: OrderPath = "ws"
    venue: str = VENUE
    request_timeout: float = 10.0
    connect_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_rate_limit_wait: float = 5.0
    cancel_wait: float = 10.0
    catch_up_delay: float = 0.25
    clock_samples: int = _CLOCK_SAMPLES
    max_connection_seconds: float = 23.5 * 3600
    heartbeat: float | None = 30.0
    never_placed_margin_ms: int = 1000
    rate_limit_margin_ms: int = 250
    dedup_size: int = 10_000
    max_closed_orders: int = 100_000
    exchange_info_every: float | None = 600.0

    def __repr__(self) -> str:  # no URL credential in a log line or an error that prints it
        return redacted_repr(self)

    def __post_init__(self) -> None:
        check_endpoints(self, rest="rest_url", ws="ws_api_url")
        if self.order_path not in ("ws", "rest"):
            raise InvalidInput(f"order_path must be 'ws' or 'rest', got {self.order_path!r}")
        if type(self.recv_window_ms) is not int or not 0 < self.recv_window_ms <= 60_000:
            raise InvalidInput(f"recv_window_ms must be an integer in 1..60000, got {self.recv_window_ms!r}")
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise InvalidInput(
                f"need 0 < backoff_initial <= backoff_max, got {self.backoff_initial}, {self.backoff_max}"
            )
        for name in ("request_timeout", "connect_timeout", "max_connection_seconds", "dedup_size", "max_closed_orders"):
            if not getattr(self, name) > 0:
                raise InvalidInput(f"{name} must be positive, got {getattr(self, name)}")
        for name in (
            "max_rate_limit_wait",
            "cancel_wait",
            "catch_up_delay",
            "never_placed_margin_ms",
            "rate_limit_margin_ms",
        ):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must not be negative, got {getattr(self, name)}")
        if type(self.clock_samples) is not int or self.clock_samples < 1:
            raise InvalidInput(f"clock_samples must be a positive integer, got {self.clock_samples!r}")
        for name in ("heartbeat", "exchange_info_every"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InvalidInput(f"{name} must be positive or None, got {value}")


# ------------------------------------------------------------------------------------------------- pure helpers


def order_params(request: SubmitOrder) -> dict[str, Any]:
    """The ``order.place`` / ``POST /api/v3/order`` parameters of a kernel order (unsigned).

    >>> from veloz_actors.messages import PlaceOrder
    >>> cmd = PlaceOrder(client_order_id="c1", symbol="BTCUSDT", side=Side.BUY, order_type=OrderType.LIMIT,
    ...                  qty=100_000, price=6_000_000_000_000, tif=TimeInForce.POST_ONLY, ts=1)
    >>> order_params(SubmitOrder(command=cmd, order_id=1, limit=cmd.price))["type"]
    'LIMIT_MAKER'
    """
    cmd = _as_sent(request)
    params: dict[str, Any] = {
        "symbol": cmd.symbol,
        "side": cmd.side.value,
        "newClientOrderId": cmd.client_order_id,
        "newOrderRespType": "FULL",
    }
    if cmd.order_type is OrderType.MARKET:
        params["type"] = "MARKET"
        if cmd.quote_qty is not None:
            params["quoteOrderQty"] = format_decimal(cmd.quote_qty)
        else:
            params["quantity"] = format_decimal(cmd.qty)
        return params
    assert cmd.price is not None
    if cmd.tif is TimeInForce.POST_ONLY:
        params["type"] = "LIMIT_MAKER"
    else:
        params["type"] = "LIMIT"
        params["timeInForce"] = cmd.tif.value
    params["price"] = format_decimal(cmd.price)
    params["quantity"] = format_decimal(cmd.qty)
    return params


def _as_sent(request: SubmitOrder) -> PlaceOrder:
    """The order as Binance gets it. A market order by quantity goes as a *protected market*: a LIMIT at the kernel's
    protect price (``request.limit``, the price band's edge), IOC (FOK for a fill-or-kill one: Binance has no
    fill-or-kill market order), so it takes the book at its own prices up to that price and its rest expires, as the
    simulated and paper venues fill a market order, and never costs more than the kernel reserved for it. A plain
    MARKET walks the book as far as it must: on a thin or moving book a sell could fill far below the mark. One by
    quote amount goes as a MARKET with ``quoteOrderQty`` (Binance has no limit order by quote amount): its budget
    bounds what it spends, not its price (:func:`check_filters` refuses a fill-or-kill one)."""
    cmd = request.command
    if cmd.order_type is OrderType.MARKET and cmd.quote_qty is None and request.limit is not None:
        tif = TimeInForce.FOK if cmd.tif is TimeInForce.FOK else TimeInForce.IOC
        return replace(cmd, order_type=OrderType.LIMIT, price=request.limit, tif=tif)
    return cmd


def check_filters(inst: Instrument, request: SubmitOrder) -> tuple[RejectReason, str] | None:
    """The exchange filters an order must pass, checked before it is sent: ``(reason, detail naming the filter)``
    for the first one it breaks, else None. ``PRICE_FILTER`` and ``LOT_SIZE`` always, ``MARKET_LOT_SIZE`` for market
    orders, ``NOTIONAL`` for limit orders and for a market order's quote amount. A market order by quantity is checked
    as the LIMIT IOC (FOK) at its protect price it is sent as (:func:`_as_sent`): its ``NOTIONAL`` is valued at that
    price, so a small sell a plain MARKET would pass can be refused (the detail says so); its ``MARKET_LOT_SIZE``
    still applies. A fill-or-kill market order by quote amount is refused."""
    cmd = request.command
    if cmd.order_type is OrderType.MARKET and cmd.tif is TimeInForce.FOK:  # sent as a LIMIT FOK (_as_sent)
        if cmd.quote_qty is not None:
            return _R.INVALID_QUANTITY, (
                "a market order by quote amount cannot be fill-or-kill on Binance (quoteOrderQty is for MARKET orders "
                "only, which fill what they can): give a quantity, or leave tif out"
            )
        if request.limit is None:
            return (
                _R.NO_REFERENCE_PRICE,
                "a fill-or-kill market order needs a protect price (sent as a LIMIT FOK at it)",
            )
    cmd = _as_sent(request)
    market = cmd.order_type is OrderType.MARKET
    if not market:
        if cmd.price is None:
            return _R.INVALID_PRICE, "PRICE_FILTER: a limit order needs a price"
        bad = inst.check_price(cmd.price)
        if bad is not None:
            return bad[0], f"PRICE_FILTER: {bad[1]}"
    if cmd.quote_qty is not None:
        if not market:
            return _R.INVALID_QUANTITY, "quoteOrderQty is for MARKET orders only"
        quote = cmd.quote_qty
        if quote <= 0:
            return _R.INVALID_QUANTITY, f"quoteOrderQty {format_decimal(quote)} must be positive"
        unit = 10 ** (8 - min(inst.quote_precision, 8))
        if quote % unit:
            return _R.INVALID_QUANTITY, (
                f"quoteOrderQty {format_decimal(quote)} has more than {inst.quote_precision} decimals"
            )
        if inst.min_notional_market and quote < inst.min_notional:
            return _R.NOTIONAL_BELOW_MINIMUM, (
                f"NOTIONAL: quote amount {format_decimal(quote)} {inst.quote_asset} is below the minimum "
                f"{format_decimal(inst.min_notional)}"
            )
        if inst.max_notional and inst.max_notional_market and quote > inst.max_notional:
            return _R.MAX_ORDER_NOTIONAL, (
                f"NOTIONAL: quote amount {format_decimal(quote)} {inst.quote_asset} is above the maximum "
                f"{format_decimal(inst.max_notional)}"
            )
        return None
    protected = request.command.order_type is OrderType.MARKET  # and sent as a LIMIT at its protect price
    bad = inst.check_qty(cmd.qty, market=market or protected)  # the market order's MARKET_LOT_SIZE all the same
    if bad is not None:
        name = "MARKET_LOT_SIZE" if "market-order" in bad[1] else "LOT_SIZE"
        return bad[0], f"{name}: {bad[1]}"
    if not market:  # a market order's notional is Binance's to judge, at its average price
        assert cmd.price is not None
        bad = inst.check_notional(cmd.price, cmd.qty)
        if bad is not None:
            if protected:  # Binance values the LIMIT it gets at its price: the band's edge, not the market
                return bad[0], (
                    f"NOTIONAL: {bad[1]} (a market order goes to Binance as a LIMIT {cmd.tif.value} at its protect "
                    f"price {format_decimal(cmd.price)}, the price band's edge, and is valued there)"
                )
            return bad[0], f"NOTIONAL: {bad[1]}"
    return None


def clock_offset(samples: Iterable[tuple[int, int, int]]) -> tuple[float, float] | None:
    """``(offset_ms, rtt_ms)`` from ``(sent_ns, server_ms, received_ns)`` samples: the one with the smallest round trip,
    ``offset = server - midpoint``; None without samples.

    >>> clock_offset([(0, 1_000, 10_000_000), (20_000_000, 1_030, 22_000_000)])
    (1009.0, 2.0)
    """
    best: tuple[int, float] | None = None
    for sent, server_ms, received in samples:
        rtt = received - sent
        offset = server_ms - (sent + received) / 2 / _MS
        if best is None or rtt < best[0]:
            best = (rtt, offset)
    if best is None:
        return None
    return round(best[1], 3), round(best[0] / _MS, 3)


# ----------------------------------------------------------------------------------------------------- internals


class VenueUnavailable(VelozError):
    """A request of the caller's (a reconciliation) could not be completed: the exchange could not be reached, did
    not answer in time, or answered with an error (the message says which; it never holds a secret)."""


class _NotSent(Exception):
    """The request never left: safe to reject (nothing can have happened at the exchange)."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _NoAnswer(Exception):
    """The request may have been executed: no answer in time, or the connection was lost."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Refused(Exception):
    """An error answer (see :func:`~.errors.classify`)."""

    def __init__(self, status: int | None, code: int | None, outcome: Outcome) -> None:
        super().__init__(outcome.detail)
        self.status = status
        self.code = code
        self.outcome = outcome


def _same_order(rec: _Order, symbol: object, order_id: object) -> bool:
    """Whether a stream report (its ``s`` and ``i``) is about the order the adapter keeps under its client order id:
    another order may carry the same id (one of another symbol, or one placed after ours closed)."""
    return symbol == rec.symbol and (not rec.venue_order_id or str(order_id) == rec.venue_order_id)


class _Order:
    """The adapter's record of one order it was asked about."""

    __slots__ = (
        "client_order_id", "symbol", "request", "side", "venue_order_id", "trade_ids", "filled", "closed",
        "inflight", "resolving", "settling", "catching_up", "sent_ms", "ts", "idle", "final", "adopted",
    )  # fmt: skip

    def __init__(self, client_order_id: str, symbol: str, request: SubmitOrder | None, ts: int) -> None:
        self.client_order_id = client_order_id
        self.symbol = symbol
        self.request = request
        self.side: Side | None = request.side if request is not None else None
        self.venue_order_id = ""
        self.trade_ids: set[int] = set()
        self.filled = 0
        self.closed = False
        self.inflight = False
        self.resolving = False
        self.settling = False
        self.catching_up = False
        self.sent_ms = 0  # the timestamp (exchange ms) of the last place request sent
        self.ts = ts
        self.idle: asyncio.Event | None = None  # set while no place answer or resolution is outstanding
        self.final = False  # Binance said the order ended (its fills may still be missing)
        self.adopted = False  # known from the kernel's view, not from a request this adapter took

    @property
    def busy(self) -> bool:
        return self.inflight or self.resolving

    @property
    def orig_qty(self) -> int:
        return self.request.qty if self.request is not None else 0


class BinanceVenue:
    """The Binance spot adapter (see the module docstring). Not thread-safe: call :meth:`submit`, :meth:`cancel` and
    the coroutines on the loop that runs :meth:`run` (or use :class:`VenueThread`).

    ``reports(batch)`` gets execution reports, ``VenueBalance`` and ``VenueBalanceDelta`` messages, in order, on the
    loop; it must return quickly. ``events(event)``, when given, gets ``VenueConnection`` changes, every
    :class:`~.reconcile.ReconcileReport` and its :class:`~.reconcile.ExternalOrder` / :class:`~.reconcile.BalanceDifference`
    events, and the external orders the stream reveals. ``view``, when given, returns the kernel's
    :class:`~.reconcile.KernelView` for the automatic reconciliations (called on the loop thread: make it safe);
    ``initial_view`` is the kernel's view at start (a recovered kernel's open orders), so their stream reports are
    passed on from the first moment.
    """

    def __init__(
        self,
        settings: BinanceVenueSettings,
        credentials: Credentials,
        instruments: Mapping[str, Instrument],
        reports: Callable[[list[Any]], None],
        *,
        account_id: str = "main",
        clock: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
        events: Callable[[Any], None] | None = None,
        view: Callable[[], KernelView] | None = None,
        initial_view: KernelView | None = None,
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise InvalidInput("credentials must be a Credentials (veloz_actors.venues.binance.auth)")
        self.settings = settings
        self.name = settings.venue
        self.account_id = account_id
        self.instruments = dict(instruments)
        self._creds = credentials
        self._reports = reports
        self._events = events
        self._view = view
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._log = LogLimiter(burst=5, window=60.0)
        self.limits = RateLimits()
        # orders
        self._orders: dict[str, _Order] = {}
        self._closed: deque[str] = deque()
        self._recent: OrderedDict[Any, None] = OrderedDict()
        self._external_seen: OrderedDict[str, None] = OrderedDict()
        self._watermarks: dict[str, int] = {}
        self._expected: dict[str, int] | None = None  # totals the consumer was told (own view)
        if initial_view is not None:
            for known in initial_view.orders:
                self._adopt(known)
            self._watermarks.update(initial_view.last_trade_ids)
            self._expected = dict(initial_view.balances) if initial_view.balances is not None else None
        # connection state
        self._state = "stopped"
        self._not_ready = "not started"
        self._connect_failure: str | None = None  # why the last connection attempt failed (kept while retrying)
        self._ready = False
        self._fatal: str | None = None
        self._running = False
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._conn_id = 0
        self._connected_at: float | None = None
        self._signals: asyncio.Queue[tuple[str, str]] | None = None
        self._send_lock: asyncio.Lock | None = None
        self._clock_lock: asyncio.Lock | None = None
        self._closing_event: asyncio.Event | None = None
        self._ready_event: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._waiters: dict[str, asyncio.Future[Any]] = {}
        self._timed_out: OrderedDict[str, None] = OrderedDict()  # ids of requests that gave up waiting (bounded)
        self._halted_symbols: dict[str, str] = {}  # symbol -> why its new orders are refused (its rules changed)
        self._unlisted: set[str] = set()  # symbols exchangeInfo no longer lists: never asked for by name again
        self._request_id = 0
        self._holding: list[dict[str, Any]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._answering: set[asyncio.Task[Any]] = set()  # order and cancel requests not yet answered
        self._subscription: Any = None
        self._offset_ms = 0.0
        self._rtt_ms: float | None = None
        self._clock_synced_at = 0.0
        self._last_reconcile: dict[str, Any] | None = None
        # counters
        self._n: dict[str, int] = {}
        self._local_rejects: dict[str, int] = {}
        self._disconnects: dict[str, int] = {}
        self._last_disconnect = ""
        self._bad_input: dict[str, int] = {}
        self._said: set[str] = set()  # what is said once (an unknown event type, an unreadable balance), bounded

    # ------------------------------------------------------------------------------------------------ public

    @property
    def ready(self) -> bool:
        """True once the user data stream is subscribed and reconciled (and while it stays so)."""
        return self._ready

    def submit(self, request: SubmitOrder) -> list[Any]:
        """Take an order (on the loop thread); its reports come through ``reports``. Returns ``[]``."""
        self._count("orders_submitted")
        rec = self._orders.get(request.client_order_id)
        if rec is not None and (rec.request is not None or rec.venue_order_id or rec.adopted):
            # sent before, here or by an earlier process (a kernel re-sends its pending requests after a restart or
            # a cancel race): never twice, and never refused either (it may be working); the stream and the
            # reconciliation report what became of it
            self._count("repeat_submits")
            self._log(logging.INFO, "repeat", "%s: order %s was sent already; not sending it again", self.name,
                      request.client_order_id)  # fmt: skip
            if rec.venue_order_id and not rec.closed and not rec.busy:
                self._emit([self._accepted(rec, self._now_ns())], dedup=False)
            return []
        problem = self._refusal(request)
        if problem is not None:
            self._local_reject(request, *problem)
            return []
        params = order_params(request)
        rec = self._register(request.client_order_id, request.symbol, request)
        rec.inflight = True
        self._idle(rec).clear()
        self._answer_task(self._place(rec, params))
        return []

    def cancel(self, request: SubmitCancel) -> list[Any]:
        """Cancel an order (on the loop thread); the answer comes through ``reports``. Returns ``[]``."""
        self._count("cancels_requested")
        if request.client_order_id not in self._orders:
            self._register(request.client_order_id, request.symbol, None)
        self._answer_task(self._cancel(request))
        return []

    def when_answered(self, callback: Callable[[], Any]) -> None:
        """Call ``callback`` (on the loop) once every order and cancel taken so far has had its first answer: placed
        or refused, or its outcome found unknown (the query that settles it may take longer), a cancel done or
        refused. Right away when none is waiting; the reports of those answers have gone to ``reports`` before."""
        waiting = set(self._answering)
        if not waiting:
            callback()
            return

        async def wait() -> None:
            await asyncio.wait(waiting)
            callback()

        self._spawn(wait())

    async def reconcile(
        self,
        known_orders: Iterable[KnownOrder] | None = None,
        last_trade_ids: Mapping[str, int] | None = None,
        balances: Mapping[str, int | tuple[int, int]] | None = None,
        *,
        view: KernelView | None = None,
    ) -> ReconcileReport:
        """Reconcile now against the kernel's view (``view``, or the three pieces; none of them: the ``view``
        callable, else the adapter's own record). Its reports go to ``reports`` and its events to ``events`` as
        well; returns the :class:`~.reconcile.ReconcileReport`."""
        if view is None and (known_orders is not None or last_trade_ids is not None or balances is not None):
            view = KernelView.of(known_orders or (), last_trade_ids, balances)
        if view is None:
            view = self._current_view()
        try:
            return await self._reconcile(view, hold=True)
        except (_NotSent, _NoAnswer, _Refused, DataError) as exc:
            raise VenueUnavailable(f"{self.name}: reconciliation failed: {_why(exc)}") from None

    async def run(self) -> None:
        """Start (clock, rate limits), connect, subscribe, reconcile and trade until :meth:`close`; reconnects on every
        wire problem, never raises for one."""
        if self._running:
            raise InvalidInput("run() is already running")
        self._running = True
        self._loop = asyncio.get_running_loop()
        self._send_lock = asyncio.Lock()
        self._clock_lock = asyncio.Lock()
        self._closing_event = asyncio.Event()
        self._ready_event = asyncio.Event()
        self._stopped = asyncio.Event()
        for rec in self._orders.values():
            rec.idle = asyncio.Event()
            rec.idle.set()
        backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max, self._rng)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.settings.connect_timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                self._session = session
                await self._startup(backoff)
                while not self._closing:
                    if self._fatal is not None:
                        self._state = "halted"
                        await self._sleep(3600.0)
                        continue
                    try:
                        reason, planned = await self._connection(session)
                    except Exception as exc:  # a bug, not the wire: log it, keep the adapter alive
                        self._count("internal_errors")
                        log.exception("%s: trading connection failed unexpectedly: %s", self.name, type(exc).__name__)
                        reason, planned = f"internal error: {type(exc).__name__}", False
                    if self._closing:
                        break
                    if planned:
                        delay = self._rng.uniform(0.0, self.settings.backoff_initial)
                        backoff.reset()
                    else:
                        delay = backoff.next_delay()
                    self._log(logging.WARNING, "reconnect", "%s: %s; reconnecting in %.2f s (attempt %d)", self.name,
                              reason, delay, backoff.attempt)  # fmt: skip
                    await self._sleep(delay)
        finally:
            self._ready = False
            self._state = "closed"
            self._not_ready = "closed"
            self._session = None
            for task in list(self._tasks):
                task.cancel()
            for task in list(self._tasks):
                with contextlib.suppress(BaseException):
                    await task
            self._fail_waiters("closed")
            self._event(VenueConnection(venue=self.name, state="closed", detail="closed", **self._conn_counts()))
            self._running = False
            self._stopped.set()

    async def close(self) -> None:
        """Stop: close the connection and return once :meth:`run` has ended. Orders still being resolved stay
        unknown to the kernel; the next start reconciles them."""
        self._closing = True
        if self._closing_event is not None:
            self._closing_event.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._running and self._stopped is not None:
            await self._stopped.wait()
        self._state = "closed"

    async def wait_ready(self, timeout: float) -> bool:
        if self._ready_event is None:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready_event.wait(), timeout)
        return self._ready

    def status(self) -> dict[str, Any]:
        """The adapter's health as plain JSON values (no secret: the API key is masked)."""
        now_ms = self._server_ms()
        busy = [r for r in self._orders.values() if r.busy]
        return {
            "venue": self.name,
            "account_id": self.account_id,
            "api_key": self._creds.masked_api_key,
            "key_type": self._creds.kind,
            "order_path": self.settings.order_path,
            "ws_api_url": redact_url(self.settings.ws_api_url),
            "rest_url": redact_url(self.settings.rest_url),
            "state": self._state,
            "ready": self._ready,
            "not_ready": None if self._ready else self._not_ready,
            "halted": self._fatal,
            "subscription_id": self._subscription,
            "connects": self._n.get("connects", 0),
            "reconnects": max(self._n.get("connects", 0) - 1, 0),
            "disconnects": dict(self._disconnects),
            "last_disconnect": self._last_disconnect,
            "connection_age_s": None
            if self._connected_at is None or self._ws is None
            else round(time.monotonic() - self._connected_at, 3),
            "clock": {
                "offset_ms": self._offset_ms,
                "rtt_ms": self._rtt_ms,
                "resyncs": self._n.get("clock_resyncs", 0),
            },
            "rate_limits": self.limits.status(now_ms),
            "pending_requests": len(self._waiters),
            "halted_symbols": dict(self._halted_symbols),
            "orders": {
                "known": len(self._orders),
                "open": sum(1 for r in self._orders.values() if not r.closed),
                "in_flight": sum(1 for r in busy if r.inflight),
                "resolving": sorted(r.client_order_id for r in busy if r.resolving),
                "rejected_locally": dict(self._local_rejects),
            },
            "counts": dict(sorted(self._n.items())),
            "reconcile": self._last_reconcile,
            "bad_input": dict(self._bad_input),
        }

    # --------------------------------------------------------------------------------------------- lifecycle

    async def _startup(self, backoff: Backoff) -> None:
        """Rate limits and the traded symbols' rules from exchangeInfo (retried until they come or the adapter
        closes)."""
        self._state = "starting"
        self._not_ready = "loading rate limits from exchangeInfo"
        while not self._closing:
            try:
                info = await self._exchange_info()
                self.limits.set_limits(parse_rate_limits(info))
                self._apply_rules(info)
                backoff.reset()
                return
            except (_NotSent, _NoAnswer, _Refused, DataError) as exc:
                delay = backoff.next_delay()
                self._log(logging.WARNING, "startup", "%s: exchangeInfo failed (%s); again in %.2f s", self.name,
                          _why(exc), delay)  # fmt: skip
                await self._sleep(delay)

    async def check_rules(self) -> dict[str, str]:
        """Check the traded symbols' status and filters against exchangeInfo now: a symbol whose status left
        ``TRADING``, that Binance no longer lists, or whose filters changed has its new orders refused (``HALTED``,
        the detail says why; cancels still go) until a later check finds it trading under the same rules again. Each
        change is logged once and sent to ``events`` (``VenueConnection`` ``halted`` / ``trading`` for the symbol).
        Returns the symbols refused now, symbol -> why."""
        try:
            info = await self._exchange_info()
            self._apply_rules(info)
        except (_NotSent, _NoAnswer, _Refused, DataError) as exc:
            raise VenueUnavailable(f"{self.name}: exchangeInfo check failed: {_why(exc)}") from None
        self._count("rules_checks")
        return dict(self._halted_symbols)

    async def _exchange_info(self) -> Any:
        """exchangeInfo for the traded symbols (weight 20). Binance refuses the whole request (-1121) when one of them
        is not listed any more: then the unfiltered one is asked for, which simply lacks it (the rule of
        :func:`~.instruments.asks_unfiltered`, shared with the start-up's fetch)."""
        query = exchange_info_query(sorted(set(self.instruments) - self._unlisted))
        try:
            return await self._request("exchangeInfo", query, weight=20, signed=False)
        except _Refused as exc:
            if not asks_unfiltered(query, exc.code):
                raise
            return await self._request("exchangeInfo", {}, weight=20, signed=False)

    def _apply_rules(self, info: Any) -> None:
        problems = check_rules(self.instruments, info)
        now = self._now_ns()
        for symbol, problem in problems.items():
            if not problem.status:
                self._unlisted.add(symbol)
            reason = problem.reason
            if self._halted_symbols.get(symbol) == reason:
                continue
            self._halted_symbols[symbol] = reason
            log.warning("%s: %s: its new orders are refused (cancels still go)", self.name, reason)
            self._event(VenueConnection(venue=self.name, state="halted", symbol=symbol, detail=reason, ts=now))
        for symbol in [s for s in self._halted_symbols if s not in problems]:
            del self._halted_symbols[symbol]
            log.warning("%s: %s trades again under the rules the engine holds: its orders go again", self.name, symbol)
            self._event(VenueConnection(venue=self.name, state="trading", symbol=symbol,
                                        detail=f"{symbol} is TRADING with unchanged rules again", ts=now))  # fmt: skip

    async def _connection(self, session: aiohttp.ClientSession) -> tuple[str, bool]:
        """One WebSocket API connection from open to close: ``(why it ended, planned)``."""
        settings = self.settings
        self._state = "connecting"
        failed = self._connect_failure
        self._not_ready = "connecting to the WebSocket API" + (f" (the last attempt: {failed})" if failed else "")
        await self._sync_clock()
        try:
            assert self._send_lock is not None
            async with self._send_lock:
                await self._gate(2, None, order=False)  # connecting costs 2 weight
            ws = await session.ws_connect(
                settings.ws_api_url,
                heartbeat=settings.heartbeat,
                max_msg_size=16 * 1024 * 1024,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            )
        except _NotSent as exc:
            return exc.detail, False
        except aiohttp.WSServerHandshakeError as exc:
            self._count("connect_errors")
            self._state = "disconnected"
            if exc.status in (418, 429):  # the IP is rate limited or banned: no attempt before Retry-After
                self.limits.on_response(exc.status, exc.headers or {}, self._server_ms())
                self._rate_limited(exc.status)
            self._not_ready = self._connect_failure = f"the WebSocket API refused the connection (HTTP {exc.status})"
            return f"connect refused: HTTP {exc.status}", False
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            self._count("connect_errors")
            self._state = "disconnected"
            self._not_ready = self._connect_failure = f"cannot connect to the WebSocket API ({type(exc).__name__})"
            return f"connect failed: {type(exc).__name__}", False
        self._connect_failure = None
        self._conn_id += 1
        conn = self._conn_id
        self._count("connects")
        self._connected_at = time.monotonic()
        self._ws = ws
        signals: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._signals = signals
        shown = redact_url(settings.ws_api_url)
        log.info("%s: connected to the WebSocket API %s", self.name, shown)
        self._event(VenueConnection(venue=self.name, state="connected", detail=shown, **self._conn_counts()))
        reader = self._spawn(self._reader(ws, conn, signals))
        reason, planned = "connection ended", False
        try:
            reason, planned = await self._session_loop(conn, signals)
        finally:
            self._ready = False
            if self._ready_event is not None:
                self._ready_event.clear()
            if planned:  # let the answers already on their way arrive before closing
                deadline = time.monotonic() + settings.request_timeout
                while self._waiters and self._ws is ws and time.monotonic() < deadline and not self._closing:
                    await asyncio.sleep(0.01)
            self._connection_lost(conn, reason)
            reader.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
            self._state = "disconnected" if not self._closing else "closed"
            if not self._closing:
                kind = reason.split(":")[0]
                self._disconnects[kind] = self._disconnects.get(kind, 0) + 1
                self._last_disconnect = reason
                self._not_ready = f"reconnecting ({reason})"
                self._event(VenueConnection(venue=self.name, state="disconnected", detail=reason,
                                            **self._conn_counts()))  # fmt: skip
        return reason, planned

    async def _session_loop(self, conn: int, signals: asyncio.Queue[tuple[str, str]]) -> tuple[str, bool]:
        settings = self.settings
        backoff = Backoff(settings.backoff_initial, settings.backoff_max, self._rng)
        while True:
            if self._conn_id != conn or self._ws is None:
                return "connection lost", False
            self._state = "subscribing"
            self._not_ready = "subscribing to the user data stream"
            try:
                result = await self._request("userDataStream.subscribe.signature", {}, weight=2, path="ws")
            except _Refused as exc:
                if exc.outcome.fatal:
                    self._halt(exc.outcome.detail)
                    return f"subscription refused: {exc.outcome.detail}", False
                return f"subscription refused: {exc.outcome.detail}", False
            except (_NotSent, _NoAnswer) as exc:
                return f"subscription failed: {_why(exc)}", False
            self._subscription = result.get("subscriptionId") if isinstance(result, dict) else None
            self._count("subscriptions")
            self._state = "reconciling"
            self._not_ready = "reconciling with the exchange"
            while True:
                try:
                    await self._reconcile(self._current_view(), hold=True, auto=True)
                    break
                except (_NotSent, _NoAnswer, _Refused, DataError) as exc:
                    if self._conn_id != conn or self._ws is None or self._closing:
                        return f"connection lost while reconciling: {_why(exc)}", False
                    delay = backoff.next_delay()
                    self._log(logging.WARNING, "reconcile", "%s: reconciliation failed (%s); again in %.2f s",
                              self.name, _why(exc), delay)  # fmt: skip
                    await self._sleep(delay)
            backoff.reset()
            self._ready = True
            self._state = "ready"
            self._not_ready = ""
            assert self._ready_event is not None
            self._ready_event.set()
            left = settings.max_connection_seconds - (time.monotonic() - (self._connected_at or time.monotonic()))
            try:
                kind, detail = await asyncio.wait_for(signals.get(), max(left, 0.0))
            except TimeoutError:
                self._count("planned_reconnects")
                return "connection age limit: reconnecting before Binance's 24-hour cut", True
            if kind == "resubscribe":
                self._ready = False
                self._ready_event.clear()
                self._count("resubscribes")
                self._log(logging.WARNING, "stream", "%s: %s; subscribing again", self.name, detail)
                continue
            return detail, kind == "reconnect"

    async def _reader(self, ws: aiohttp.ClientWebSocketResponse, conn: int, signals: asyncio.Queue[Any]) -> None:
        reason = "closed by the server"
        try:
            while True:
                msg = await ws.receive()
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    try:
                        self._on_frame(msg.data)
                    except Exception as exc:  # a bug in handling one frame must not end the connection
                        self._count("internal_errors")
                        log.exception("%s: frame handling failed: %s", self.name, type(exc).__name__)
                    continue
                if msg.type is aiohttp.WSMsgType.ERROR:
                    reason = f"read error: {type(ws.exception()).__name__}"
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    reason = f"closed by the server: code {ws.close_code}"
                else:
                    continue
                break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = f"read failed: {type(exc).__name__}"
        self._connection_lost(conn, reason)
        signals.put_nowait(("closed", reason))

    def _connection_lost(self, conn: int, reason: str) -> None:
        if self._conn_id != conn:
            return
        self._conn_id += 1  # whatever still runs for this connection sees that it is over
        self._ws = None
        self._ready = False
        if self._ready_event is not None:
            self._ready_event.clear()
        self._fail_waiters(f"connection lost: {reason}")

    def _fail_waiters(self, why: str) -> None:
        waiters, self._waiters = self._waiters, {}
        for fut in waiters.values():
            if not fut.done():
                fut.set_exception(_NoAnswer(why))
                fut.exception()  # retrieved here: the awaiting request may have given up already

    # ----------------------------------------------------------------------------------------------- requests

    def _server_ms(self) -> int:
        return int(self._clock() // _MS + self._offset_ms)

    def _now_ns(self) -> int:
        return int(self._clock() + self._offset_ms * _MS)

    async def _sync_clock(self, *, force: bool = False) -> None:
        """Offset of Binance's clock from ``clock_samples`` ``GET /api/v3/time`` (smallest round trip). Each sample is
        timed around the HTTP exchange itself (:meth:`_rest_call`): a wait for the send lock or the rate-limit gate
        is not network round trip, and counting it would move the midpoint and skew the offset."""
        assert self._clock_lock is not None
        async with self._clock_lock:
            if force and time.monotonic() - self._clock_synced_at < 0.5:
                return  # another request resynced just now
            samples = []
            for _ in range(self.settings.clock_samples):
                try:
                    answer = await self._answer("time", {}, weight=1, signed=False)
                    server_ms = answer["result"]["serverTime"]
                    if type(server_ms) is not int:
                        raise DataError(f"serverTime is {server_ms!r}")
                except (_NotSent, _NoAnswer, _Refused, DataError, KeyError, TypeError) as exc:
                    self._log(logging.WARNING, "clock", "%s: GET /api/v3/time failed: %s", self.name, _why(exc))
                    continue
                samples.append((answer["sent_ns"], server_ms, answer["received_ns"]))
            result = clock_offset(samples)
            if result is not None:
                self._offset_ms, self._rtt_ms = result
                self._clock_synced_at = time.monotonic()
                self._count("clock_syncs")

    def _path(self, method: str, path: str | None) -> str:
        if method in _ALWAYS_REST:
            return "rest"
        return path or self.settings.order_path

    async def _request(self, method: str, params: dict[str, Any], **options: Any) -> Any:
        """Send one request (through the rate-limit gate, in order; ``options`` as :meth:`_answer` takes them) and
        return its ``result``. Raises :class:`_NotSent` (never left), :class:`_NoAnswer` (outcome unknown) or
        :class:`_Refused` (an error answer; -1021 is retried once after a clock resync)."""
        answer = await self._answer(method, params, **options)
        return answer.get("result")

    async def _answer(
        self,
        method: str,
        params: dict[str, Any],
        *,
        weight: int,
        signed: bool = True,
        order: bool = False,
        max_wait: float | None = None,
        path: str | None = None,
        rec: _Order | None = None,
    ) -> dict[str, Any]:
        """:meth:`_request`'s successful answer as the transport gave it: ``result``, and for REST ``sent_ns`` and
        ``received_ns`` (the local clock around the HTTP exchange)."""
        via = self._path(method, path)
        for attempt in (0, 1):
            answer = await self._send(method, params, weight, signed, order, max_wait, via, rec)
            status = answer.get("status")
            if status == 200:
                return answer
            error = answer.get("error")
            error = error if isinstance(error, dict) else {}
            code = error.get("code") if type(error.get("code")) is int else None
            msg = error.get("msg") if isinstance(error.get("msg"), str) else ""
            outcome = classify(status if type(status) is int else None, code, msg)
            if outcome.retry_after_clock_sync and attempt == 0:
                self._count("clock_resyncs")
                self._log(logging.WARNING, "clock", "%s: %s on %s; resyncing the clock and sending it once more",
                          self.name, outcome.detail, method)  # fmt: skip
                await self._sync_clock(force=True)
                continue
            raise _Refused(status if type(status) is int else None, code, outcome)
        raise AssertionError("unreachable")

    async def _gate(self, weight: int, max_wait: float | None, *, order: bool) -> None:
        """Wait out any 429/418 block and full weight window (or refuse when that is beyond ``max_wait``), then count
        the request. Call with the send lock held."""
        while True:
            if self._closing:
                raise _NotSent(_R.SHUTDOWN, "the adapter is closing")
            now = self._server_ms()
            wait = self.limits.wait_for(now, weight)
            if wait <= 0:
                break
            if max_wait is not None and wait > max_wait:
                raise _NotSent(_R.RATE_LIMIT, f"rate limited: requests may go again in {wait:.1f} s")
            self._count("rate_limit_waits")
            await self._sleep(wait + 0.001)
        if order:
            if self.limits.orders_blocked(now):  # a -1015 block that came while this order waited for the lock
                raise _NotSent(_R.RATE_LIMIT, self._orders_blocked_detail(now))
            if not self.limits.allow_order(now, weight):
                raise _NotSent(_R.RATE_LIMIT, "the ORDERS rate limit is reached: not sent")
            self.limits.note_order(now, weight)
        else:
            self.limits.note_request(now, weight)

    def _orders_blocked_detail(self, now: int) -> str:
        wait = max(self.limits.orders_blocked_until_ms - now, 0) / 1000
        return f"Binance's unfilled-order count limit (-1015): new orders may go again in {wait:.1f} s"

    async def _wait_order_block(self, max_wait: float | None) -> None:
        """Wait out a block of new orders (the unfilled-order count's 429, -1015) before queueing for the send lock,
        so the cancels and queries behind this order are not held up by it; refuse when it lasts beyond
        ``max_wait``."""
        deadline = None if max_wait is None else time.monotonic() + max_wait
        while True:
            if self._closing:
                raise _NotSent(_R.SHUTDOWN, "the adapter is closing")
            now = self._server_ms()
            wait = max(self.limits.orders_blocked_until_ms - now, 0) / 1000
            if wait <= 0:
                return
            if deadline is not None and time.monotonic() + wait > deadline:
                raise _NotSent(_R.RATE_LIMIT, self._orders_blocked_detail(now))
            self._count("order_count_waits")
            await self._sleep(wait + 0.001)

    async def _send(
        self,
        method: str,
        params: dict[str, Any],
        weight: int,
        signed: bool,
        order: bool,
        max_wait: float | None,
        via: str,
        rec: _Order | None,
    ) -> dict[str, Any]:
        assert self._send_lock is not None
        if max_wait is not None:  # refuse at once rather than queue behind a long block
            wait = self.limits.wait_for(self._server_ms(), weight)
            if wait > max_wait:
                raise _NotSent(_R.RATE_LIMIT, f"rate limited: requests may go again in {wait:.1f} s")
        if order:
            await self._wait_order_block(max_wait)
        async with self._send_lock:
            await self._gate(weight, max_wait, order=order)
            ts = self._server_ms()
            if rec is not None:
                rec.sent_ms = ts
            self._count(f"sent.{method}")
            request_id = None
            if via == "ws":
                request_id, fut = await self._ws_send(method, params, signed, ts)
            else:
                fut = asyncio.ensure_future(self._rest_call(method, params, signed, ts))
        try:
            return await asyncio.wait_for(fut, self.settings.request_timeout)
        except TimeoutError:
            if request_id is not None:
                self._give_up(request_id)
            raise _NoAnswer(f"no answer to {method} within {self.settings.request_timeout:g} s") from None

    def _give_up(self, request_id: str) -> None:
        """A WebSocket API request that timed out leaves the waiting list (a planned reconnect would wait for it, and
        the list would grow); its id is remembered (bounded), so an answer that still comes is known as late."""
        self._waiters.pop(request_id, None)
        self._timed_out[request_id] = None
        while len(self._timed_out) > self.settings.dedup_size:
            self._timed_out.popitem(last=False)

    async def _ws_send(
        self, method: str, params: dict[str, Any], signed: bool, ts: int
    ) -> tuple[str, asyncio.Future[Any]]:
        ws = self._ws
        if ws is None or ws.closed:
            raise _NotSent(_R.HALTED, "not connected to the Binance WebSocket API")
        self._request_id += 1
        request_id = f"v{self._request_id}"
        if signed:
            params = self._creds.ws_signed_params(params, timestamp_ms=ts, recv_window_ms=self.settings.recv_window_ms)
        frame: dict[str, Any] = {"id": request_id, "method": method}
        if params:
            frame["params"] = params
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._waiters[request_id] = fut
        try:
            await ws.send_str(orjson.dumps(frame).decode())
        except (ConnectionError, aiohttp.ClientError, RuntimeError, OSError) as exc:
            self._waiters.pop(request_id, None)
            raise _NoAnswer(f"connection lost while sending {method} ({type(exc).__name__})") from None
        return request_id, fut

    async def _rest_call(self, method: str, params: dict[str, Any], signed: bool, ts: int) -> dict[str, Any]:
        session = self._session
        if session is None:
            raise _NotSent(_R.HALTED, "no HTTP session (the adapter is not running)")
        verb, path = _REST[method]
        if signed:
            query = self._creds.signed_params(params, timestamp_ms=ts, recv_window_ms=self.settings.recv_window_ms)
            headers = self._creds.headers()
        else:
            query = query_string(params)
            headers = {}
        url = yarl.URL(self.settings.rest_url + path + (f"?{query}" if query else ""), encoded=True)
        sent = self._clock()  # here, not before the send lock: only the exchange is its round trip
        try:
            # never a redirect: it would carry the API key header and the signed query to another address
            async with session.request(verb, url, headers=headers, allow_redirects=False) as resp:
                body = await resp.read()
                status = resp.status
                resp_headers = resp.headers.copy()
            received = self._clock()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:  # no connection: nothing sent
            raise _NotSent(_R.HALTED, f"cannot reach the Binance REST API ({type(exc).__name__})") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _NoAnswer(f"{verb} {path}: connection lost ({type(exc).__name__})") from None
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            data = None
        orders_only = status == 429 and isinstance(data, dict) and _order_count_limited(status, data)
        self.limits.on_response(status, resp_headers, self._server_ms(), orders_only=orders_only)
        if status in (418, 429):
            self._rate_limited(status, orders_only=orders_only)
        if status == 200 and data is not None:
            return {"status": 200, "result": data, "sent_ns": sent, "received_ns": received}
        if isinstance(data, dict) and "code" in data:
            return {"status": status, "error": data}
        return {"status": status, "error": {"code": None, "msg": ""}}

    def _rate_limited(self, status: int, *, orders_only: bool = False) -> None:
        # a margin over Binance's own time (our estimate of its clock is off by up to a round trip): a request a
        # moment too early would turn the 429 into an IP ban
        margin = self.settings.rate_limit_margin_ms + int(self._rtt_ms or 0)
        if orders_only:  # the account's unfilled-order count: cancels and queries go on
            self.limits.block_orders_until(self.limits.orders_blocked_until_ms + margin)
            self._log(logging.WARNING, "order_count_limited", "%s: HTTP %d -1015 (unfilled-order count): no new order "
                      "until %d (Binance time, ms); cancels and queries go on", self.name, status,
                      self.limits.orders_blocked_until_ms)  # fmt: skip
            return
        self.limits.block_until(self.limits.blocked_until_ms + margin)
        until = self.limits.blocked_until_ms
        self._log(logging.WARNING, "rate_limited", "%s: HTTP %d: no request until %d (Binance time, ms)", self.name,
                  status, until)  # fmt: skip

    # ---------------------------------------------------------------------------------------------- frames

    def _on_frame(self, raw: str | bytes) -> None:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._bad("json", "%s: a frame that is not JSON", self.name)
            return
        if not isinstance(data, dict):
            self._bad("frame", "%s: a frame that is not a JSON object", self.name)
            return
        if "id" in data and "status" in data:
            self._on_response(data)
            return
        event = data.get("event")
        if isinstance(event, dict):
            self._count("stream_events")
            self._on_event(event)
            return
        self._bad("frame", "%s: a frame that is neither an answer nor an event (keys %s)", self.name,
                  sorted(data)[:8])  # fmt: skip

    def _on_response(self, data: dict[str, Any]) -> None:
        now = self._server_ms()
        rows = data.get("rateLimits")
        if rows is not None:
            self.limits.on_ws_rate_limits(rows, now)
        status = data.get("status")
        if status in (418, 429):
            error = data.get("error")
            extra = error.get("data") if isinstance(error, dict) else None
            retry = extra.get("retryAfter") if isinstance(extra, dict) else None
            orders_only = status == 429 and isinstance(error, dict) and _order_count_limited(status, error)
            self.limits.on_response(
                status, {}, now, retry_after_ms=retry if type(retry) is int else None, orders_only=orders_only
            )
            self._rate_limited(status, orders_only=orders_only)
        request_id = str(data.get("id"))
        fut = self._waiters.pop(request_id, None)
        if fut is None and request_id in self._timed_out:
            # its request gave up waiting (an order's outcome is then queried): the answer is not needed any more
            del self._timed_out[request_id]
            self._count("late_answers")
            self._log(logging.INFO, "late_answer", "%s: an answer came after its request timed out (id %s)",
                      self.name, request_id)  # fmt: skip
        elif fut is None:
            self._bad("unexpected_answer", "%s: an answer to no pending request (id %r)", self.name, data.get("id"))
        elif not fut.done():
            fut.set_result(data)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("e")
        if kind in TERMINATING_EVENT_TYPES:
            self._count(f"stream.{kind}")
            if self._signals is not None:
                if kind == "serverShutdown":
                    self._signals.put_nowait(("reconnect", "serverShutdown: the server is about to shut down"))
                else:
                    self._signals.put_nowait(("resubscribe", f"{kind}: the subscription ended"))
            return
        if isinstance(kind, str) and kind not in USER_EVENT_TYPES:
            self._unknown_event(kind)
            return
        if self._holding is not None:  # a reconciliation is running: its reports go first
            self._holding.append(event)
            return
        try:
            if kind == "executionReport":
                reports = parse_execution_reports(event, self.account_id, venue=self.name)
                cum = decimal_units(event.get("z"), "executionReport: field 'z'")
                if not reports:  # self-trade prevention took quantity off an order that keeps working
                    self._count("trade_preventions")
                    coid = event.get("c")
                    self._log(logging.INFO, "stp", "%s: self-trade prevention (%s) took %s off order %s, which keeps "
                              "working (status %s)", self.name, event.get("V"), event.get("B"), coid,
                              event.get("X"))  # fmt: skip
                    rec = self._orders.get(coid) if isinstance(coid, str) else None
                    if rec is not None and _same_order(rec, event.get("s"), event.get("i")):
                        self._apply([], source="stream", cum={rec.client_order_id: cum})
                    return
                report = reports[0]
                rec = self._orders.get(report.client_order_id)
                if rec is None or not _same_order(rec, report.symbol, event.get("i")):
                    self._external_report(event, report)  # (Binance asks a client order id unique among open ones)
                    return
                if rec.side is None and event.get("S") in ("BUY", "SELL"):
                    rec.side = Side(event["S"])
                if event.get("X") in ("FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH", "REJECTED"):
                    rec.final = True
                self._apply(reports, source="stream", cum={report.client_order_id: cum})
                return
            unread: list[tuple[str, str]] = []
            messages = parse_user_event(event, self.account_id, venue=self.name, unreadable=unread)
        except DataError as exc:
            self._bad("bad_event", "%s: a user data event that cannot be read: %s", self.name, exc)
            self._unreadable(event, exc)
            return
        for asset, why in unread:  # the event's other balances are read
            self._bad("balance_row", "%s: an account update leaves out the balance of %s, which cannot be read: %s",
                      self.name, asset, why)  # fmt: skip
            if self._first_time(f"balance:{asset}"):
                self._event(
                    Error(code="VENUE_BAD_REPORT", message=f"{self.name}: account updates leave out the balance of "
                          f"{asset}, which cannot be read: {why}", ts=self._now_ns())
                )  # fmt: skip
        out = []
        for message in messages:
            if isinstance(message, VenueBalanceDelta) and self._expected is not None:
                self._expected[message.asset] = self._expected.get(message.asset, 0) + message.delta
            if isinstance(message, VenueBalance | VenueBalanceDelta):
                out.append(message)
        self._emit(out)

    def _unreadable(self, event: dict[str, Any], exc: DataError) -> None:
        """A user data event that cannot be read is said as an ``Error`` event; one about an order of ours (a fill,
        perhaps) has that order read again from Binance after the catch-up delay, as a missing fill is."""
        coid = event.get("c") if event.get("e") == "executionReport" else None
        rec = self._orders.get(coid) if isinstance(coid, str) else None
        ours = rec is not None and _same_order(rec, event.get("s"), event.get("i"))
        detail = f"; order {coid} is read again from Binance" if ours else ""
        self._event(
            Error(code="VENUE_BAD_REPORT", message=f"{self.name}: a user data event that cannot be read: {exc}{detail}",
                  ts=self._now_ns())
        )  # fmt: skip
        if ours and rec is not None and not rec.catching_up and not rec.settling:
            self._spawn(self._catch_up(rec, rec.filled + 1))

    def _unknown_event(self, kind: str) -> None:
        """A user data event of a type this client does not read (one Binance added): ignored and counted, and said
        (a log line, an ``Error`` event) the first time of its type only, so a stream of them floods nothing."""
        self._count("unknown_events")
        name = kind[:40]
        if not self._first_time(f"event:{name}"):
            return
        self._log(logging.WARNING, "unknown_event", "%s: user data events of type %r, which this client does not "
                  "read, are ignored (counted in counts.unknown_events)", self.name, name)  # fmt: skip
        self._event(
            Error(code="VENUE_BAD_REPORT", message=f"{self.name}: user data events of type {name!r}, which this "
                  "client does not read, are ignored", ts=self._now_ns())
        )  # fmt: skip

    def _first_time(self, what: str) -> bool:
        """Whether ``what`` is said now: the first time it comes, while fewer than ``_SAID_ONCE`` things were."""
        if what in self._said or len(self._said) >= _SAID_ONCE:
            return False
        self._said.add(what)
        return True

    def _external_report(self, event: dict[str, Any], report: Any) -> None:
        """A stream report of an order VeloZ did not place: an :class:`ExternalOrder` event (once per order)."""
        self._count("external_reports")
        vid = str(event.get("i", ""))
        key = f"{self.name}:{self.account_id}:order:{report.symbol}:{vid}"
        if key in self._external_seen:
            return
        self._external_seen[key] = None
        while len(self._external_seen) > self.settings.dedup_size:
            self._external_seen.popitem(last=False)
        try:
            external = ExternalOrder(
                id=key,
                venue=self.name,
                account_id=self.account_id,
                symbol=report.symbol,
                venue_order_id=vid,
                client_order_id=report.client_order_id,
                side=Side(event.get("S", "BUY")),
                status=str(event.get("X", "")),
                order_type=str(event.get("o", "")),
                price=decimal_units(event.get("p", "0"), "executionReport: field 'p'"),
                orig_qty=decimal_units(event.get("q", "0"), "executionReport: field 'q'"),
                executed_qty=decimal_units(event.get("z", "0"), "executionReport: field 'z'"),
                trade_ids=(),
                ts=report.ts,
            )
        except (DataError, ValueError):
            return
        self._log(logging.INFO, "external", "%s: order %s was not placed by VeloZ", self.name, key)
        self._event(external)

    # ------------------------------------------------------------------------------------------------ reports

    def _apply(self, reports: Iterable[Any], *, source: str, cum: Mapping[str, int] | None = None) -> None:
        """Pass reports on, in order: repeats dropped (except from a reconciliation, which the kernel asked for), the
        adapter's record updated, and an end held back while its order's fills are missing."""
        out: list[Any] = []
        forced = source == "reconcile"
        for report in reports:
            if type(report) is VenueOrderExpired and report.reason is _R.IOC_UNFILLED:
                report = self._as_market_expiry(report)
            if not forced and report in self._recent:
                self._count("duplicates_dropped")
                continue
            coid = report.client_order_id
            rec = self._orders.get(coid)
            if rec is None:
                rec = self._register(coid, report.symbol, None)
            kind = type(report)
            if kind is VenueOrderFilled:
                if report.trade_id in rec.trade_ids:
                    if not forced:
                        self._count("duplicates_dropped")
                        continue
                else:
                    rec.trade_ids.add(report.trade_id)
                    rec.filled += report.qty
                    self._book_fill(rec, report)
                    self._count("fills")
            elif kind is VenueOrderAccepted:
                rec.venue_order_id = report.venue_order_id
            elif kind in _TERMINAL:
                if rec.closed and not forced:
                    self._count("duplicates_dropped")
                    continue
                total = cum.get(coid) if cum is not None else None
                if not forced and total is not None and total > rec.filled:
                    if not rec.settling:
                        self._spawn(self._settle(rec, report, total))
                    continue
                if rec.settling and not forced:
                    continue  # the settling task reports the end once the fills are in
                self._close(rec)
            if not forced:
                self._remember(report)
            out.append(report)
        self._emit(out, dedup=False)
        if cum is not None and not forced:
            for coid, total in cum.items():
                rec = self._orders.get(coid)
                if rec is not None and total > rec.filled and not rec.settling and not rec.catching_up:
                    self._spawn(self._catch_up(rec, total))

    def _as_market_expiry(self, report: VenueOrderExpired) -> VenueOrderExpired:
        """The expiry of a protected market order (sent as a LIMIT IOC, :func:`_as_sent`) is a market order's:
        ``NO_LIQUIDITY`` (the book within its protect price ran out), as the simulated and paper venues say."""
        rec = self._orders.get(report.client_order_id)
        request = rec.request if rec is not None else None
        if request is not None and request.command.order_type is OrderType.MARKET:
            return replace(report, reason=_R.NO_LIQUIDITY)
        return report

    def _emit(self, batch: list[Any], *, dedup: bool = True) -> None:
        if dedup:
            kept = []
            for message in batch:
                if message in self._recent:
                    self._count("duplicates_dropped")
                    continue
                self._remember(message)
                kept.append(message)
            batch = kept
        if not batch:
            return
        self._count("reports_out", len(batch))
        self._count("batches_out")
        try:
            self._reports(batch)
        except Exception as exc:
            self._count("report_errors")
            self._log(logging.ERROR, "reports", "%s: the reports callback raised %s; batch of %d lost", self.name,
                      type(exc).__name__, len(batch))  # fmt: skip

    def _event(self, event: Any) -> None:
        if self._events is None:
            return
        try:
            self._events(event)
        except Exception as exc:
            self._count("event_errors")
            self._log(logging.ERROR, "events", "%s: the events callback raised %s", self.name, type(exc).__name__)

    def _remember(self, message: Any) -> None:
        recent = self._recent
        try:
            recent[message] = None
        except TypeError:  # unhashable: never a duplicate
            return
        if len(recent) > self.settings.dedup_size:
            recent.popitem(last=False)

    def _book_fill(self, rec: _Order, fill: VenueOrderFilled) -> None:
        """The own record of totals (what the consumer was told) moves with each first-reported fill."""
        if self._expected is None or rec.side is None:
            return
        inst = self.instruments.get(fill.symbol)
        if inst is None:
            return
        for asset, amount in balance_effects(fill, rec.side, inst).items():
            self._expected[asset] = self._expected.get(asset, 0) + amount

    def _register(self, coid: str, symbol: str, request: SubmitOrder | None) -> _Order:
        rec = self._orders.get(coid)
        if rec is None:
            rec = _Order(coid, symbol, request, request.ts if request is not None else 0)
            self._orders[coid] = rec
        elif request is not None:
            rec.request = request
            rec.side = request.side
            rec.ts = request.ts
        if self._loop is not None and rec.idle is None:
            rec.idle = asyncio.Event()
            rec.idle.set()
        return rec

    def _adopt(self, known: KnownOrder) -> None:
        rec = _Order(known.client_order_id, known.symbol, None, known.ts)
        rec.adopted = True
        rec.venue_order_id = known.venue_order_id
        rec.filled = known.filled_qty
        rec.trade_ids = set(known.trade_ids or ())
        self._orders[known.client_order_id] = rec

    def _idle(self, rec: _Order) -> asyncio.Event:
        if rec.idle is None:
            rec.idle = asyncio.Event()
            rec.idle.set()
        return rec.idle

    def _close(self, rec: _Order) -> None:
        if rec.closed:
            return
        rec.closed = True
        self._closed.append(rec.client_order_id)
        while len(self._closed) > self.settings.max_closed_orders:
            coid = self._closed.popleft()
            old = self._orders.get(coid)
            if old is not None and old.closed and not old.busy:
                del self._orders[coid]

    def _accepted(self, rec: _Order, ts: int) -> VenueOrderAccepted:
        return VenueOrderAccepted(
            venue=self.name,
            client_order_id=rec.client_order_id,
            account_id=self.account_id,
            symbol=rec.symbol,
            venue_order_id=rec.venue_order_id,
            ts=ts,
        )

    # ------------------------------------------------------------------------------------------------- orders

    def _refusal(self, request: SubmitOrder) -> tuple[RejectReason, str] | None:
        if self._fatal is not None:
            return _R.HALTED, f"trading on {self.name} is halted: {self._fatal}"
        if not self._ready:
            return _R.HALTED, f"{self.name} venue not ready: {self._not_ready or self._state}"
        if request.account_id != self.account_id:
            return _R.VENUE_REJECTED, f"account {request.account_id!r} is not traded on this connection"
        inst = self.instruments.get(request.symbol)
        if inst is None:
            return _R.UNKNOWN_SYMBOL, f"{request.symbol} is not an instrument of this venue"
        halted = self._halted_symbols.get(request.symbol)
        if halted is not None:
            return _R.HALTED, f"no new order on {self.name}: {halted} (cancels still go)"
        if not _CLIENT_ID.match(request.client_order_id):
            return _R.VENUE_REJECTED, "client order id must be 1-36 characters of A-Z a-z 0-9 . : / _ - for Binance"
        return check_filters(inst, request)

    def _local_reject(self, request: SubmitOrder, reason: RejectReason, detail: str) -> None:
        self._local_rejects[reason.value] = self._local_rejects.get(reason.value, 0) + 1
        self._emit_rejected(request.client_order_id, request.account_id, request.symbol, reason, detail)

    def _reject(self, rec: _Order, reason: RejectReason, detail: str) -> None:
        self._close(rec)
        self._emit_rejected(rec.client_order_id, self.account_id, rec.symbol, reason, detail)

    def _emit_rejected(
        self, client_order_id: str, account_id: str, symbol: str, reason: RejectReason, detail: str
    ) -> None:
        self._emit(
            [
                VenueOrderRejected(
                    venue=self.name,
                    client_order_id=client_order_id,
                    account_id=account_id,
                    symbol=symbol,
                    reason=reason,
                    detail=detail,
                    ts=self._now_ns(),
                )
            ],
            dedup=False,
        )

    async def _place(self, rec: _Order, params: dict[str, Any]) -> None:
        coid = rec.client_order_id
        try:
            result = await self._request(
                "order.place", params, weight=1, order=True, max_wait=self.settings.max_rate_limit_wait, rec=rec
            )
        except _NotSent as exc:
            self._local_rejects[exc.reason.value] = self._local_rejects.get(exc.reason.value, 0) + 1
            self._reject(rec, exc.reason, f"not sent: {exc.detail}")
        except _Refused as exc:
            outcome = exc.outcome
            if outcome.unknown_outcome:
                self._unknown(rec, outcome.detail)
            elif outcome.reject_reason is _R.DUPLICATE_CLIENT_ORDER_ID:
                self._unknown(rec, f"{outcome.detail} (Binance has an order with this client id)")
            else:
                if outcome.fatal:
                    self._halt(outcome.detail)
                self._count("rejected_by_venue")
                self._reject(rec, outcome.reject_reason or _R.VENUE_REJECTED, outcome.detail)
        except _NoAnswer as exc:
            self._unknown(rec, exc.detail)
        else:
            try:
                reports = parse_order_response(result, self.account_id, venue=self.name)
                executed = decimal_units(result["executedQty"], "executedQty") if "executedQty" in result else None
                status = result.get("status")
            except (DataError, TypeError, KeyError):
                self._unknown(rec, "the order's answer could not be read")
            else:
                if status in ("FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH", "REJECTED"):
                    rec.final = True
                self._count("orders_placed")
                self._apply(reports, source="answer", cum={coid: executed} if executed is not None else None)
        finally:
            rec.inflight = False
            if not rec.resolving:
                self._idle(rec).set()

    def _unknown(self, rec: _Order, detail: str) -> None:
        self._count("unknown_outcomes")
        self._log(logging.WARNING, "unknown", "%s: outcome of order %s unknown (%s); querying it", self.name,
                  rec.client_order_id, detail)  # fmt: skip
        if rec.venue_order_id or rec.trade_ids or rec.closed:
            # the stream reported the order already (its events can overtake a REST answer): its outcome is known,
            # and an "unknown" now would take the kernel's order back from what it has booked
            self._count("unknown_but_streamed")
        else:
            self._emit(
                [
                    VenueOrderStatusUnknown(
                        venue=self.name,
                        client_order_id=rec.client_order_id,
                        account_id=self.account_id,
                        symbol=rec.symbol,
                        detail=f"{detail}; querying the order (it is never sent again)",
                        ts=self._now_ns(),
                    )
                ],
                dedup=False,
            )
        if not rec.resolving:
            rec.resolving = True
            self._idle(rec).clear()
            self._spawn(self._resolve(rec))

    async def _resolve(self, rec: _Order) -> None:
        """Query an order whose outcome is unknown until Binance says what became of it."""
        settings = self.settings
        backoff = Backoff(settings.backoff_initial, settings.backoff_max, self._rng)
        coid = rec.client_order_id
        try:
            while not self._closing:
                await self._sleep(backoff.next_delay())
                try:
                    state = await self._order_status(rec)
                    if state is None:  # no such order (-2013), or only an earlier order that had this client id
                        deadline = self._sent_ms(rec) + settings.recv_window_ms + settings.never_placed_margin_ms
                        left = deadline - self._server_ms()
                        if left <= 0:
                            self._count("never_placed")
                            self._reject(rec, _R.VENUE_REJECTED, "never reached Binance: it has no order with this "
                                         "client id placed by this request after the request's recvWindow passed, so "
                                         "the order was not placed and its funds are released")  # fmt: skip
                            return
                        await self._sleep(left / 1000)
                        backoff.reset()
                        continue
                    trades = await self._order_trades(rec.symbol, state.venue_order_id) if state.executed_qty else []
                except _Refused as exc:
                    self._log(logging.WARNING, "resolve", "%s: order.status for %s refused (%s); trying again",
                              self.name, coid, exc.outcome.detail)  # fmt: skip
                    continue
                except (_NotSent, _NoAnswer, DataError) as exc:
                    self._log(logging.WARNING, "resolve", "%s: order.status for %s failed (%s); trying again",
                              self.name, coid, _why(exc))  # fmt: skip
                    continue
                self._count("resolved")
                self._state_reports(rec, state, trades, source="resolve")
                return
        finally:
            rec.resolving = False
            if not rec.inflight:
                self._idle(rec).set()

    def _state_reports(self, rec: _Order, state: OrderState, trades: list[AccountTrade], *, source: str) -> None:
        """An order's state and trades as reports: accepted, fills (by trade id), then its end if it ended."""
        rec.venue_order_id = state.venue_order_id
        rec.side = state.side
        if state.is_final:
            rec.final = True
        reports: list[Any] = [self._accepted(rec, state.time)] if state.status != "REJECTED" else []
        reports += self._fills(rec, state, trades)
        if state.needs_end:
            reports.append(state.report(self.account_id, venue=self.name))
        self._apply(reports, source=source, cum={rec.client_order_id: state.executed_qty})

    def _fills(self, rec: _Order, state: OrderState | None, trades: list[AccountTrade]) -> list[VenueOrderFilled]:
        trades = sorted(trades, key=lambda t: t.trade_id)
        executed = state.executed_qty if state is not None else sum(t.qty for t in trades)
        cum = max(executed - sum(t.qty for t in trades), 0)
        final = state.last_fill_closes if state is not None else rec.final
        out = []
        for i, t in enumerate(trades):
            cum += t.qty
            last = final and i == len(trades) - 1 and cum >= executed
            out.append(
                t.to_report(
                    client_order_id=rec.client_order_id,
                    account_id=self.account_id,
                    leaves_qty=leaves_after(state, rec.orig_qty, cum, last),
                    venue=self.name,
                )
            )
        return out

    async def _order_trades(self, symbol: str, venue_order_id: str) -> list[AccountTrade]:
        """Every trade of one order, oldest first: ``myTrades`` by ``orderId`` pages of ``limit`` 1000 (Binance's
        most; its default is 500) from ``fromId`` 0, each next page from the last trade id + 1, until a short page.
        (``symbol`` + ``orderId`` + ``fromId`` is a combination Binance serves; without ``fromId`` it returns the
        most recent trades, which cannot be paged back from.)"""
        trades: dict[int, AccountTrade] = {}
        from_id = 0
        while True:
            params = {"symbol": symbol, "orderId": int(venue_order_id), "fromId": from_id, "limit": _MY_TRADES_LIMIT}
            page = parse_my_trades(await self._request("myTrades", params, weight=5))
            for t in page:
                trades[t.trade_id] = t
            if len(page) < _MY_TRADES_LIMIT:
                return [trades[k] for k in sorted(trades)]
            last = max(t.trade_id for t in page)
            if last < from_id:
                raise DataError(f"myTrades: a page from trade id {from_id} ends at trade id {last}")
            from_id = last + 1

    def _sent_ms(self, rec: _Order | None, ts: int = 0) -> int:
        """When the order's place request was sent, on Binance's clock (ms): the record's own send time, else the
        kernel's command time (local clock, ns) moved by the measured clock offset; 0: unknown (long ago)."""
        if rec is not None:
            if rec.sent_ms:
                return rec.sent_ms
            ts = ts or rec.ts
        if ts <= 0:
            return 0
        return int(ts // _MS + self._offset_ms)

    def _other_order(self, state: OrderState, rec: _Order | None, sent_ms: int, venue_order_id: str) -> str | None:
        """Why the order Binance returned for a client id is not the one asked about, or None when it may be.

        Binance needs a ``newClientOrderId`` to be unique among *open* orders only: once an order is no longer
        open its id may be used again (the kernel's ids restart in a new run), and a query by
        ``origClientOrderId`` returns the latest order that had it. An order this request placed cannot have been
        created before the request was signed (Binance refuses a timestamp over 1 s ahead of its clock), so one
        created earlier than the send time less ``max(recvWindow, 1 s)`` and the margin is another order; so is one
        whose side, type or quantity differ from the request's. When the order's Binance id is known the query names
        it too, and Binance answers for that order only."""
        if venue_order_id:  # asked by order id as well: Binance answered for that very order, or refused
            if state.venue_order_id != venue_order_id:
                return f"its order id is {state.venue_order_id}, this order's is {venue_order_id}"
            return None
        if sent_ms > 0:
            settings = self.settings
            earliest = sent_ms - max(settings.recv_window_ms, 1000) - settings.never_placed_margin_ms
            placed = state.time // _MS
            if placed < earliest:
                return (
                    f"it was placed at {placed} (Binance ms), before this order's request, sent at {sent_ms}, could "
                    "have arrived"
                )
        request = rec.request if rec is not None else None
        if request is None:
            return None
        expected = order_params(request)
        if state.side.value != expected["side"]:
            return f"it is a {state.side.value} order, this one a {expected['side']}"
        if state.order_type != expected["type"]:
            return f"it is a {state.order_type} order, this one a {expected['type']}"
        cmd = request.command
        if "quantity" in expected and state.orig_qty != cmd.qty:
            return f"its quantity is {format_decimal(state.orig_qty)}, this order's {expected['quantity']}"
        if "quoteOrderQty" in expected and cmd.quote_qty is not None and state.orig_quote_qty not in (0, cmd.quote_qty):
            return (
                f"its quote amount is {format_decimal(state.orig_quote_qty)}, this order's {expected['quoteOrderQty']}"
            )
        return None

    async def _order_status(self, rec: _Order | None, known: KnownOrder | None = None) -> OrderState | None:
        """``order.status`` of one of our orders (by ``origClientOrderId``, and ``orderId`` when known): its state, or
        None when Binance has no such order (-2013) or answers with another order that had the same client id (see
        :meth:`_other_order`; logged). Any other error answer raises :class:`_Refused`."""
        if known is not None:
            coid, symbol, vid = known.client_order_id, known.symbol, known.venue_order_id
            sent_ms = self._sent_ms(rec, known.ts)
        else:
            assert rec is not None
            coid, symbol, vid = rec.client_order_id, rec.symbol, rec.venue_order_id
            sent_ms = self._sent_ms(rec)
        vid = vid or (rec.venue_order_id if rec is not None else "")
        params: dict[str, Any] = {"symbol": symbol, "origClientOrderId": coid}
        if vid:
            params["orderId"] = int(vid)
        try:
            row = await self._request("order.status", params, weight=4)
        except _Refused as exc:
            if exc.code == -2013:
                return None
            raise
        state = parse_order_state(row)
        why = self._other_order(state, rec, sent_ms, vid)
        if why is None:
            return state
        self._count("other_order_with_client_id")
        self._log(logging.WARNING, "reused_id", "%s: order.status for client id %s returned Binance order %s (%s, "
                  "status %s), not this order: %s; taken as no such order (-2013)", self.name, coid,
                  state.venue_order_id, state.side.value, state.status, why)  # fmt: skip
        return None

    async def _fetch_order(self, rec: _Order) -> tuple[OrderState, list[AccountTrade]] | None:
        """The order's state and trades, retried with backoff; None when Binance does not know it (or only an
        earlier order with its client id) or on close."""
        backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max, self._rng)
        while not self._closing:
            try:
                state = await self._order_status(rec)
                if state is None:
                    return None
                trades = await self._order_trades(rec.symbol, state.venue_order_id) if state.executed_qty else []
                return state, trades
            except _Refused as exc:
                if exc.code == -2026:
                    return None
                why = exc.outcome.detail
            except (_NotSent, _NoAnswer, DataError) as exc:
                why = _why(exc)
            delay = backoff.next_delay()
            self._log(logging.WARNING, "fetch", "%s: cannot read order %s (%s); again in %.2f s", self.name,
                      rec.client_order_id, why, delay)  # fmt: skip
            await self._sleep(delay)
        return None

    async def _settle(self, rec: _Order, end: Any, total: int) -> None:
        """An end reported while fills are missing: fetch them first (unless the late events arrive by
        themselves), then report the end."""
        rec.settling = True
        self._count("settles")
        try:
            await self._sleep(self.settings.catch_up_delay)
            if rec.filled < total and not self._closing:
                fetched = await self._fetch_order(rec)
                if fetched is not None:
                    state, trades = fetched
                    self._apply(self._fills(rec, state, trades), source="catch_up")
        finally:
            rec.settling = False
            if not rec.closed:
                self._close(rec)
                self._remember(end)
                self._emit([end], dedup=False)

    async def _catch_up(self, rec: _Order, total: int) -> None:
        """Fills missing behind a stated cumulative quantity: wait for late events, then fetch the order's trades."""
        rec.catching_up = True
        try:
            await self._sleep(self.settings.catch_up_delay)
            if rec.filled >= total or self._closing:
                return
            self._count("catch_ups")
            fetched = await self._fetch_order(rec)
            if fetched is not None:
                self._state_reports(rec, fetched[0], fetched[1], source="catch_up")
        finally:
            rec.catching_up = False

    # -------------------------------------------------------------------------------------------------- cancel

    async def _cancel(self, request: SubmitCancel) -> None:
        settings = self.settings
        coid = request.client_order_id
        rec = self._orders.get(coid) or self._register(coid, request.symbol, None)
        deadline = time.monotonic() + settings.cancel_wait
        if not self._ready and self._fatal is None and self._ready_event is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready_event.wait(), max(deadline - time.monotonic(), 0.0))
        if self._fatal is not None or not self._ready:
            why = f"trading is halted: {self._fatal}" if self._fatal else f"venue not ready: {self._not_ready}"
            self._cancel_rejected(request, _R.HALTED, why)
            return
        if rec.busy:  # never overtake the order's own answer or resolution
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle(rec).wait(), max(deadline - time.monotonic(), 0.0))
            if rec.busy:  # sent now, the cancel could reach Binance first, be refused -2011, and the order then rest
                self._cancel_rejected(request, _R.VENUE_REJECTED, f"not sent: the order's own answer has not come in "
                                      f"{settings.cancel_wait:g} s; it may still be placed: cancel again once it is known")  # fmt: skip
                return
        if rec.closed and not rec.settling:
            self._cancel_rejected(request, _R.ORDER_NOT_OPEN, "the order has already ended")
            return
        try:
            result = await self._request("order.cancel", {"symbol": request.symbol, "origClientOrderId": coid},
                                         weight=1, max_wait=settings.max_rate_limit_wait)  # fmt: skip
        except _NotSent as exc:
            self._cancel_rejected(request, exc.reason, f"not sent: {exc.detail}")
        except _Refused as exc:
            outcome = exc.outcome
            if outcome.unknown_outcome:
                await self._cancel_unknown(request, rec, outcome.detail)
                return
            if outcome.fatal:
                self._halt(outcome.detail)
            self._cancel_rejected(request, outcome.reject_reason or _R.VENUE_REJECTED, outcome.detail)
            if exc.code == -2011 and not rec.closed and not rec.busy and not rec.catching_up:
                self._spawn(self._refresh(rec))  # it ended without the adapter seeing it: settle it
        except _NoAnswer as exc:
            await self._cancel_unknown(request, rec, exc.detail)
        else:
            try:
                report = parse_cancel_response(result, self.account_id, venue=self.name)
                executed = decimal_units(result.get("executedQty", "0"), "executedQty")
            except (DataError, TypeError, AttributeError):
                await self._cancel_unknown(request, rec, "the cancel's answer could not be read")
                return
            self._count("cancelled")
            rec.final = True
            self._apply([report], source="answer", cum={coid: executed})

    async def _cancel_unknown(self, request: SubmitCancel, rec: _Order, detail: str) -> None:
        """The cancel's answer was lost: the order's state decides."""
        self._count("cancel_unknown")
        fetched = await self._fetch_order(rec)
        if fetched is None:
            self._cancel_rejected(request, _R.ORDER_NOT_OPEN, f"{detail}; Binance has no such order")
            return
        state, trades = fetched
        self._state_reports(rec, state, trades, source="resolve")
        if not state.is_final:
            self._cancel_rejected(request, _R.VENUE_REJECTED, f"{detail}; the order is still open: cancel again")

    async def _refresh(self, rec: _Order) -> None:
        rec.catching_up = True
        try:
            fetched = await self._fetch_order(rec)
            if fetched is not None:
                self._state_reports(rec, fetched[0], fetched[1], source="catch_up")
        finally:
            rec.catching_up = False

    def _cancel_rejected(self, request: SubmitCancel, reason: RejectReason, detail: str) -> None:
        self._count("cancels_rejected")
        self._emit(
            [
                VenueCancelRejected(
                    venue=self.name,
                    client_order_id=request.client_order_id,
                    account_id=request.account_id,
                    symbol=request.symbol,
                    reason=reason,
                    detail=detail,
                    ts=self._now_ns(),
                )
            ],
            dedup=False,
        )

    def _halt(self, detail: str) -> None:
        if self._fatal is None:
            self._fatal = detail
            log.error("%s: trading halted: %s (fix the API key or its permissions, then restart)", self.name, detail)

    # ------------------------------------------------------------------------------------------------ reconcile

    def _current_view(self) -> KernelView:
        if self._view is not None:
            try:
                return self._view()
            except Exception as exc:
                self._log(logging.ERROR, "view", "%s: the view callable raised %s; using the adapter's own record",
                          self.name, type(exc).__name__)  # fmt: skip
        return self._own_view()

    def _own_view(self) -> KernelView:
        orders = tuple(
            KnownOrder(
                client_order_id=r.client_order_id,
                symbol=r.symbol,
                filled_qty=r.filled,
                venue_order_id=r.venue_order_id,
                trade_ids=frozenset(r.trade_ids),
                ts=r.ts,
            )
            for r in self._orders.values()
            if not r.closed
        )
        return KernelView(orders, dict(self._watermarks), dict(self._expected) if self._expected is not None else None)

    async def _reconcile(self, view: KernelView, *, hold: bool, auto: bool = False) -> ReconcileReport:
        """Fetch, compare, and report; stream events arriving meanwhile are handled after the reports."""
        started = time.monotonic()
        owner = hold and self._holding is None
        if owner:
            self._holding = []
        try:
            report = await self._reconciliation(view)
            self._publish(report, auto=auto, started=started)
        finally:
            if owner:
                held, self._holding = self._holding or [], None
                for event in held:
                    self._on_event(event)
        return report

    def _publish(self, report: ReconcileReport, *, auto: bool, started: float) -> None:
        self._apply(report.reports, source="reconcile")
        self._emit(list(report.balances), dedup=False)
        self._expected = {b.asset: b.free + b.locked for b in report.balances}  # the own record matches again
        summary = dict(report.summary)
        summary.update(auto=auto, duration_ms=round((time.monotonic() - started) * 1000, 1), at_ms=self._server_ms())
        summary["count"] = (self._last_reconcile or {}).get("count", 0) + 1
        self._last_reconcile = summary
        self._count("reconciliations")
        if report.reports or report.events:
            self._log(logging.INFO, "reconcile", "%s: reconciled: %d reports, %d external orders, %d balance "
                      "differences", self.name, len(report.reports), len(report.external_orders),
                      len(report.balance_differences))  # fmt: skip
        self._event(report)
        for event in report.events:
            self._event(event)

    async def _reconciliation(self, view: KernelView) -> ReconcileReport:
        """Fetch the exchange's side and compare (see :mod:`.reconcile`)."""
        settings = self.settings
        skip = {coid for coid, r in self._orders.items() if r.busy or r.settling}
        known = [o for o in view.orders if o.client_order_id not in skip]
        in_flight = {
            o.client_order_id: o.trade_ids for o in view.orders if o.client_order_id in skip and o.trade_ids is not None
        }
        # own orders in flight are reconciled by their own resolution, never here
        view = KernelView(tuple(known), view.last_trade_ids, view.balances)
        asked_ms = self._server_ms()  # a trade before this is in the account's balances
        account = await self._request("account.status", {}, weight=20)
        unread: list[tuple[str, str]] = []
        balances = parse_account_balances(account, self.account_id, venue=self.name, unreadable=unread)
        for asset, why in unread:
            self._unreadable_order(f"the balance of {asset}", DataError(why))
        account_ts = int(account.get("updateTime", 0)) * _MS if isinstance(account, dict) else 0
        symbols = sorted(self.instruments)
        open_rows: list[OrderState] = []
        # an open order stated in a way that cannot be read (a status Binance added, say): said, and left out of the
        # reconciliation; the rest is reconciled, and the adapter becomes ready
        unread_rows: list[tuple[str, str]] = []
        if len(symbols) * _OPEN_ORDERS_SYMBOL_WEIGHT > _OPEN_ORDERS_ALL_WEIGHT:
            answer = await self._request("openOrders.status", {}, weight=_OPEN_ORDERS_ALL_WEIGHT)
            open_rows = [r for r in parse_open_orders(answer, unreadable=unread_rows) if r.symbol in self.instruments]
        else:
            for symbol in symbols:
                answer = await self._request("openOrders.status", {"symbol": symbol}, weight=_OPEN_ORDERS_SYMBOL_WEIGHT)
                open_rows += parse_open_orders(answer, unreadable=unread_rows)
        for coid, why in unread_rows:
            self._unreadable_order(f"order {coid}" if coid else "an open order", DataError(why))
        # listed open: asked no further (one stated unreadably is skipped; a query would be no more readable)
        open_coids = {r.client_order_id for r in open_rows} | {coid for coid, _ in unread_rows if coid}
        states: dict[str, OrderState | str | None] = {}
        young: list[KnownOrder] = []
        window_ms = settings.recv_window_ms + settings.never_placed_margin_ms
        for o in known:
            if o.client_order_id in open_coids:
                continue
            rec = self._orders.get(o.client_order_id)
            try:
                found = await self._order_status(rec, o)
            except _Refused as exc:
                if exc.code != -2026:
                    raise
                states[o.client_order_id] = ARCHIVED
                continue
            except DataError as exc:  # left out (skipped), the rest reconciled
                self._unreadable_order(f"order {o.client_order_id} ({o.symbol})", exc)
                continue
            if found is not None:
                states[o.client_order_id] = found
            elif self._server_ms() - self._sent_ms(rec, o.ts) < window_ms:
                young.append(o)
            else:
                states[o.client_order_id] = NEVER_PLACED
        if young:  # "no such order" means "never placed" only once a request for it can no longer arrive
            wait_ms = max(self._sent_ms(self._orders.get(o.client_order_id), o.ts) + window_ms for o in young)
            await self._sleep(max(wait_ms - self._server_ms(), 0) / 1000)
            for o in young:
                try:
                    found = await self._order_status(self._orders.get(o.client_order_id), o)
                except DataError as exc:
                    self._unreadable_order(f"order {o.client_order_id} ({o.symbol})", exc)
                    continue
                states[o.client_order_id] = found if found is not None else NEVER_PLACED
        # trades
        trades: dict[str, list[AccountTrade]] = {}
        watermarks: dict[str, int] = {}
        state_of: dict[str, OrderState] = {r.client_order_id: r for r in open_rows}
        state_of.update({k: v for k, v in states.items() if isinstance(v, OrderState)})
        for symbol in symbols:
            got: dict[int, AccountTrade] = {}
            if symbol in view.last_trade_ids:
                from_id = view.last_trade_ids[symbol] + 1
                while True:
                    params = {"symbol": symbol, "fromId": from_id, "limit": _MY_TRADES_LIMIT}
                    page = parse_my_trades(await self._request("myTrades", params, weight=20))
                    for t in page:
                        got[t.trade_id] = t
                    if len(page) < _MY_TRADES_LIMIT:
                        break
                    from_id = max(t.trade_id for t in page) + 1
            else:
                latest = parse_my_trades(await self._request("myTrades", {"symbol": symbol, "limit": 1}, weight=20))
                if latest:
                    watermarks[symbol] = latest[-1].trade_id
            # a known order the fetch above does not explain completely: all its trades
            for o in known:
                state = state_of.get(o.client_order_id)
                if state is None or state.symbol != symbol or not state.executed_qty:
                    continue
                booked = o.trade_ids or frozenset()
                vid = state.venue_order_id
                have = sum(t.qty for t in got.values() if t.venue_order_id == vid and t.trade_id not in booked)
                if symbol in view.last_trade_ids and o.filled_qty + have >= state.executed_qty:
                    continue
                for t in await self._order_trades(symbol, state.venue_order_id):
                    got[t.trade_id] = t
            trades[symbol] = [got[k] for k in sorted(got)]
            if got:
                watermarks[symbol] = max(watermarks.get(symbol, -1), max(got))
        # trades of orders the adapter cannot place: ask Binance whose they are
        clients: dict[str, str] = {}
        mapped = {s.venue_order_id for s in state_of.values()} | {o.venue_order_id for o in known if o.venue_order_id}
        mapped |= {r.venue_order_id for r in self._orders.values() if r.venue_order_id}
        for symbol, fetched in trades.items():
            for vid in sorted({t.venue_order_id for t in fetched} - mapped, key=int):
                try:
                    row = await self._request("order.status", {"symbol": symbol, "orderId": int(vid)}, weight=4)
                    clients[vid] = parse_order_state(row).client_order_id
                except _Refused:
                    clients[vid] = ""
                mapped.add(vid)
        for r in self._orders.values():
            if r.venue_order_id:
                clients.setdefault(r.venue_order_id, r.client_order_id)
        ours = frozenset(self._orders) - {o.client_order_id for o in known}
        snap = VenueSnapshot(
            balances=balances,
            account_ts=account_ts,
            balances_until=max(account_ts, asked_ms * _MS),
            in_flight=in_flight,
            unread_assets=frozenset(asset for asset, _ in unread),
            open_orders=open_rows,
            states=states,
            trades=trades,
            order_clients=clients,
            ours=ours,
            now=self._now_ns(),
        )
        report = build_reconciliation(view, snap, self.instruments, account_id=self.account_id, venue=self.name)
        for symbol, mark in watermarks.items():
            self._watermarks[symbol] = max(self._watermarks.get(symbol, -1), mark)
        # orders the kernel knows but the adapter did not: adopt them so their stream reports are passed on
        for o in known:
            if o.client_order_id not in self._orders:
                self._adopt(o)
        return report

    def _unreadable_order(self, who: str, exc: DataError) -> None:
        """Say what the reconciliation leaves out because Binance's answer about it cannot be read: counted every
        time, said (an ``Error`` event) the first time only, since every reconciliation while it lasts leaves it
        out again (STATUS ``reconcile.skipped`` lists the orders each one skipped)."""
        self._bad("reconcile_row", "%s: the reconciliation leaves out %s, which Binance states in a way that cannot "
                  "be read: %s", self.name, who, exc)  # fmt: skip
        if not self._first_time(f"reconcile:{who}"):
            return
        self._event(
            Error(code="VENUE_BAD_REPORT", message=f"{self.name}: the reconciliation leaves out {who}, which Binance "
                  f"states in a way that cannot be read: {exc}", ts=self._now_ns())
        )  # fmt: skip

    # -------------------------------------------------------------------------------------------------- helpers

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        assert self._loop is not None, "the adapter's loop is not running (call run() first)"
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _answer_task(self, coro: Any) -> None:
        task = self._spawn(coro)
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._count("internal_errors")
            log.error("%s: a background task failed: %s", self.name, type(exc).__name__, exc_info=exc)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, cut short by close()."""
        if seconds <= 0 or self._closing:
            return
        if self._closing_event is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing_event.wait(), seconds)

    def _count(self, name: str, n: int = 1) -> None:
        self._n[name] = self._n.get(name, 0) + n

    def _bad(self, kind: str, msg: str, *args: Any) -> None:
        self._bad_input[kind] = self._bad_input.get(kind, 0) + 1
        self._log(logging.WARNING, f"bad_{kind}", msg, *args)

    def _conn_counts(self) -> dict[str, Any]:
        return {"reconnects": max(self._n.get("connects", 0) - 1, 0), "ts": self._now_ns()}


def _order_count_limited(status: int, error: Mapping[str, Any]) -> bool:
    """Whether an error answer is the unfilled-order count's (-1015), which holds back new orders only."""
    code = error.get("code")
    msg = error.get("msg")
    return classify(
        status, code if type(code) is int else None, msg if isinstance(msg, str) else ""
    ).order_count_limited


def _why(exc: BaseException) -> str:
    if isinstance(exc, _Refused):
        return exc.outcome.detail
    if isinstance(exc, _NotSent | _NoAnswer):
        return exc.detail
    if isinstance(exc, DataError):
        return f"unreadable answer: {str(exc)[:160]}"
    return type(exc).__name__


# ------------------------------------------------------------------------------------------------------------ thread


class _Periodic:
    """One job :class:`VenueThread` runs every ``every`` seconds (None: never), with its counts for the status."""

    def __init__(self, every: float | None, run: Callable[[float], None]) -> None:
        self.every = every
        self.run = run
        self.due = 0.0
        self.done = 0
        self.errors = 0
        self.last_error = ""

    def status(self) -> dict[str, Any]:
        return {"every_seconds": self.every, "done": self.done, "errors": self.errors, "last_error": self.last_error}


class VenueThread(LoopThread):
    """One :class:`BinanceVenue` on its own event loop in a daemon thread: the venue protocol for an actor or the
    single-process engine. ``submit`` and ``cancel`` are thread-safe, queue the request and return ``[]``; the
    reports arrive through ``reports(batch)``, called from the venue's thread.

    >>> venue = VenueThread(settings, credentials, instruments, reports).start()    # doctest: +SKIP
    >>> venue.wait_ready(30.0)                                                       # doctest: +SKIP
    True
    """

    client: BinanceVenue

    def __init__(
        self,
        settings: BinanceVenueSettings,
        credentials: Credentials,
        instruments: Mapping[str, Instrument],
        reports: Callable[[list[Any]], None],
        *,
        reconcile_every: float | None = 60.0,
        **kw: Any,
    ) -> None:
        venue = BinanceVenue(settings, credentials, instruments, reports, **kw)
        super().__init__(venue, f"veloz-{venue.name}-trading")
        self.name = venue.name
        self._view: Callable[[], KernelView] | None = kw.get("view")
        self.reconcile_every = reconcile_every
        self._periodic = {
            "reconcile": _Periodic(reconcile_every if self._view is not None else None, self._reconcile_now),
            "rules_check": _Periodic(settings.exchange_info_every, self._check_rules_now),
        }
        self._stop_periodic = threading.Event()

    def start(self) -> VenueThread:
        """Start the adapter's thread and the periodic work: the reconciliation (with a ``view`` and
        ``reconcile_every``) and the check of the symbols' rules (``settings.exchange_info_every``)."""
        super().start()
        if any(job.every for job in self._periodic.values()):
            threading.Thread(target=self._run_periodically, name="veloz-periodic", daemon=True).start()
        return self

    def _run_periodically(self) -> None:
        """Each periodic job when it is due, on this thread (``view`` may block: the actor engine asks its OMS), while
        the adapter is ready. The reconciliation, besides the adapter's own (start, each resubscription), finds an
        execution report the stream never delivered while the connection stayed up, for an order that then sent
        nothing more; what it reports again is idempotent in the kernel. The rules check finds a symbol Binance
        halted, delisted or gave new filters while the engine runs (:meth:`BinanceVenue.check_rules`)."""
        jobs = [(job, job.every) for job in self._periodic.values() if job.every]
        for job, every in jobs:
            job.due = time.monotonic() + every
        while not self._stop_periodic.wait(max(min(job.due for job, _ in jobs) - time.monotonic(), 0.0)):
            for job, every in jobs:
                if time.monotonic() < job.due:
                    continue
                job.due = time.monotonic() + every
                if not self.ready:
                    continue
                try:
                    job.run(every * 4 + 30)
                    job.done += 1
                except Exception as exc:  # noqa: BLE001 - counted and shown; the next round tries again
                    job.errors += 1
                    job.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"

    def _reconcile_now(self, timeout: float) -> None:
        assert self._view is not None
        self.reconcile(view=self._view(), timeout=timeout)

    def _check_rules_now(self, timeout: float) -> None:
        self._call(self.client.check_rules(), timeout)

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        status = super().status(timeout)
        status["periodic_reconciliations"] = self._periodic["reconcile"].status()
        status["periodic_rules_checks"] = self._periodic["rules_check"].status()
        return status

    @property
    def ready(self) -> bool:
        return self.client.ready

    def _post(self, fn: Callable[[Any], Any], arg: Any) -> None:
        if not self.running or self._loop is None:
            raise InvalidInput("the Binance trading thread is not running")
        self._loop.call_soon_threadsafe(fn, arg)

    def submit(self, request: SubmitOrder) -> list[Any]:
        """Queue an order; its reports come through ``reports``."""
        self._post(self.client.submit, request)
        return []

    def cancel(self, request: SubmitCancel) -> list[Any]:
        """Queue a cancel; its reports come through ``reports``."""
        self._post(self.client.cancel, request)
        return []

    def when_answered(self, callback: Callable[[], Any]) -> None:
        """Call ``callback`` (on the venue's thread) once every order and cancel queued before has had its first
        answer (:meth:`BinanceVenue.when_answered`)."""
        self._post(self.client.when_answered, callback)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the stream is subscribed and the first reconciliation is done; False if not within
        ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                return False
            if self.client.ready:
                return True
            time.sleep(0.01)
        return self.client.ready

    def reconcile(
        self,
        known_orders: Iterable[KnownOrder] | None = None,
        last_trade_ids: Mapping[str, int] | None = None,
        balances: Mapping[str, int | tuple[int, int]] | None = None,
        *,
        view: KernelView | None = None,
        timeout: float = 60.0,
    ) -> ReconcileReport:
        """:meth:`BinanceVenue.reconcile` from any thread (blocks until it is done)."""
        return self._call(  # type: ignore[no-any-return]
            self.client.reconcile(known_orders, last_trade_ids, balances, view=view), timeout
        )

    def close(self, timeout: float = 10.0) -> None:
        """Stop the periodic work and the adapter, and join the thread."""
        self._stop_periodic.set()
        super().close(timeout)


# --------------------------------------------------------------------------------------------- account at start-up


def account_ledger(settings: BinanceVenueSettings, credentials: Credentials) -> dict[str, int]:
    """A new live engine's opening ledger: every asset the account holds now, free + locked (1e-8 units), asked with
    the adapter's own ``settings`` (its REST URL, receive window, request timeout and clock samples: a user's wider
    window for a distant machine holds for this first signed request too)."""
    balances = fetch_account_balances(
        settings.rest_url,
        credentials,
        recv_window_ms=settings.recv_window_ms,
        timeout=settings.request_timeout,
        clock_samples=settings.clock_samples,
    )
    return {b.asset: b.free + b.locked for b in balances if b.free or b.locked}


class _ClockRefused(VenueUnavailable):
    """A signed request refused for its timestamp (-1021): sent again once, with the clock sampled again."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse every redirect: the 3xx answer is then an ``HTTPError`` (Binance's API never redirects)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch_account_balances(
    rest_url: str,
    credentials: Credentials,
    *,
    account_id: str = "main",
    recv_window_ms: int = 5000,
    timeout: float = 10.0,
    clock_samples: int = _CLOCK_SAMPLES,
) -> list[VenueBalance]:
    """The account's balances now (``GET /api/v3/account``, signed), once, synchronously: what a new live engine's
    ledger starts from, so the kernel and the exchange agree before the first order. The clock offset is estimated as
    the adapter's is (:func:`clock_offset`: the smallest round trip of ``clock_samples`` ``GET /api/v3/time``; one
    sample slowed on its way back would misjudge it by half its delay). An answer the adapter would send again after
    resampling the clock (-1021, the timestamp outside ``recvWindow``: :func:`~.errors.classify`'s
    ``retry_after_clock_sync``) is sent again so, once. Raises :class:`VenueUnavailable` naming the endpoint and
    Binance's code and message (never the request's parameters or the key)."""
    import urllib.error

    if type(clock_samples) is not int or clock_samples < 1:
        raise InvalidInput(f"clock_samples must be a positive integer, got {clock_samples!r}")
    base = rest_url.rstrip("/")

    opener = urllib.request.build_opener(_NoRedirect)  # a redirect would carry the key and the signature elsewhere

    def get(path: str, headers: dict[str, str]) -> Any:
        request = urllib.request.Request(base + path, headers=headers)
        try:
            with opener.open(request, timeout=timeout) as answer:
                return orjson.loads(answer.read())
        except urllib.error.HTTPError as exc:
            try:
                body = orjson.loads(exc.read())
                outcome = classify(exc.code, body.get("code"), str(body.get("msg", "")))
            except Exception:  # noqa: BLE001 - not Binance's error form: the status says enough
                raise VenueUnavailable(f"{path.split('?')[0]}: HTTP {exc.code}") from None
            refused = _ClockRefused if outcome.retry_after_clock_sync else VenueUnavailable
            raise refused(f"{path.split('?')[0]}: {outcome.detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            why = f"{path.split('?')[0]}: {type(exc).__name__}: {exc}"  # the error may quote the signed URL
            raise VenueUnavailable(redact_url(base + path, why)) from None

    def offset_ms() -> float:
        samples = []
        for _ in range(clock_samples):
            sent = time.time_ns()
            server = get("/api/v3/time", {})
            received = time.time_ns()
            server_ms = server.get("serverTime") if isinstance(server, dict) else None
            if type(server_ms) is not int:
                raise VenueUnavailable("/api/v3/time: the answer has no serverTime")
            samples.append((sent, server_ms, received))
        estimate = clock_offset(samples)
        assert estimate is not None  # at least one sample
        return estimate[0]

    for attempt in (0, 1):
        offset = offset_ms()  # sampled before the request's time is read: sampling takes round trips
        query = credentials.signed_params(
            {"omitZeroBalances": "false"},
            timestamp_ms=round(time.time_ns() / _MS + offset),
            recv_window_ms=recv_window_ms,
        )
        try:
            data = get("/api/v3/account?" + query, {"X-MBX-APIKEY": credentials.api_key})
            break
        except _ClockRefused as exc:
            if attempt:
                raise VenueUnavailable(str(exc)) from None
            log.warning("%s; resampling the clock and sending it once more", exc)
    unread: list[tuple[str, str]] = []
    balances = parse_account_balances(data, account_id, unreadable=unread)
    for asset, why in unread:
        log.warning("the opening balances leave out %s, which cannot be read: %s", asset, why)
    return balances
