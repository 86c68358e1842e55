"""The trading side of the local Binance test server (:mod:`.binance_server`): accounts, a matching engine over the
served market, the SIGNED REST endpoints, the WebSocket API with the user data stream, rate limits and trading faults.

A test gives the server API keys, then trades over real sockets exactly as against Binance spot::

    >>> server = BinanceTestServer([capture], speed=0, paused=True)                         # doctest: +SKIP
    >>> server.add_account("key-1", hmac_secret="secret-1", balances={"USDT": "100000", "BTC": "1"})
    >>> server.start()
    >>> # POST {server.rest_url}/api/v3/order (X-MBX-APIKEY, signed), or order.place on {server.stream_url}/ws-api/v3
    >>> server.publish(500)                 # the market moves: resting orders fill under the queue model
    >>> server.orders("key-1"), server.trades("key-1"), server.balances("key-1")    # the server's truth

**Accounts** (:meth:`Trading.add_account`): an API key with an HMAC secret or an Ed25519 public key (PEM), balances
(exact, 1e-8 units; ``free`` and ``locked``) and commission rates (default 0.001 maker and taker). Signatures are
checked with :class:`~veloz_actors.venues.binance.auth.Verifier` (REST: the query string and form body as received,
``rest-api.md``; WebSocket API: the params sorted by name, ``web-socket-api.md``), then the timing rule
(``timestamp < server + 1000`` and ``server - timestamp <= recvWindow``, default 5000, at most 60000; a timestamp in
microseconds is accepted as Binance does). Answers: -2014 no key, -2015 unknown key (HTTP 401), -1022 bad signature,
-1021 timestamp.

**Matching.** Each symbol is matched by VeloZ's :class:`~veloz_actors.venues.paper.PaperVenue` (one per symbol and
commission-rate pair), fed with the very depth diffs and trades the server publishes, in its publish path, from a
snapshot of the server's book taken when the first order arrives: a market order walks the book, a crossing limit
order takes up to its price, a resting limit order fills under the conservative queue model from the published
trades (a trade through its price fills it whole; at its price, the queue ahead is eaten first). Our fills never
change the served book. The venue's reports become Binance's order states (``NEW``, ``PARTIALLY_FILLED``, ``FILLED``,
``CANCELED``, ``EXPIRED`` with ``expiryReason``) and execution reports; ``REJECTED`` never occurs (Binance answers a
refused placement with an error: no order exists), and self-trade prevention only when a test makes it happen
(:meth:`TradingFaults.prevent_match`: our orders never meet each other otherwise).

* ``LIMIT`` (``GTC``, ``IOC``, ``FOK``), ``LIMIT_MAKER`` (-2010 "Order would immediately match and take." when it
  would cross: no order, no event), ``MARKET`` by ``quantity`` or ``quoteOrderQty`` (a BUY spends at most that much,
  commission included, in whole steps; a SELL sells the most whole steps whose proceeds stay within it; one the book
  runs out for ends ``EXPIRED``, ``INSUFFICIENT_LIQUIDITY``, its fills kept, as ``market_orders_faq.md`` says).
  Other types (stop, take-profit, order lists, SOR, amend, cancel-replace) answer -1116 "Invalid orderType." (not
  served).
* A symbol whose ``status`` is not ``TRADING`` refuses new orders: -2010 "Market is closed.".
* Filters of the served ``exchangeInfo``: ``PRICE_FILTER``, ``LOT_SIZE``, ``MARKET_LOT_SIZE``, ``MIN_NOTIONAL`` /
  ``NOTIONAL`` (market orders: at the last trade price, else the mid), ``MAX_NUM_ORDERS``: -1013 "Filter failure: X".
* ``newClientOrderId`` (1-36 of ``A-Z a-z 0-9 . : / _ -``) kept (generated when absent); another open order of the
  account on the symbol with it: -2010 "Duplicate order sent." (an id is unique among open orders only: a closed
  order's may be used again). Lookups by ``origClientOrderId`` find the newest order with that id (a cancel's own
  ``newClientOrderId`` names the cancel in its answer and execution report ``c``, the order keeps its id here).
* **Balances**: a BUY locks ``price x qty`` plus the most commission it can pay (``max(maker, taker) x notional``,
  rounded up), a SELL locks its quantity; a market order locks what it will spend for the moment it trades. Commission
  is charged in the quote asset on both sides (``ceil(sum(rate x notional))`` per order, VeloZ's fee model): a BUY
  pays ``notional + commission``, a SELL receives ``notional - commission``. Whatever an order did not use is released
  when it ends. Not enough free balance: -2010 "Account has insufficient balance for requested action.".
* **Fees in BNB** (:meth:`Trading.pay_fees_in`, Binance's "BNB burn"): each fill's commission is converted at a price
  the test sets and taken from the account's free BNB (``commissionAsset`` ``BNB``); with too little BNB for a fill,
  that fill's commission comes out of what it received (``commission_faq.md``): a SELL's USDT as above, a BUY's BTC.

**REST** (SIGNED, ``X-MBX-APIKEY``; parameters in the query string and/or a form body, the query string winning):
``POST /api/v3/order`` (``newOrderRespType`` ``ACK`` / ``RESULT`` / ``FULL``, default ``FULL`` for ``LIMIT`` and
``MARKET``, ``ACK`` otherwise), ``POST /api/v3/order/test`` (``computeCommissionRates``), ``DELETE /api/v3/order``
(``cancelRestrictions``; -2011 "Unknown order sent."), ``GET /api/v3/order`` (-2013 "Order does not exist."),
``GET`` / ``DELETE /api/v3/openOrders``, ``GET /api/v3/myTrades`` (``orderId``, ``fromId``, ``startTime`` /
``endTime``, ``limit``: default 500, at most 1000; the combinations ``rest-api.md`` lists: with ``orderId`` only
``fromId``, never a time; without ``fromId`` or a time, the most recent trades), ``GET /api/v3/account``
(``omitZeroBalances``).

**WebSocket API** at ``/ws-api/v3``: ``{"id", "method", "params"}`` requests, ``{"id", "status", "result" | "error",
"rateLimits"}`` answers (``returnRateLimits`` per request or in the URL). Methods: ``ping``, ``time``,
``userDataStream.subscribe.signature`` (session-free: ``apiKey``, ``timestamp``, ``signature``; one subscription
per account per connection, -2035 otherwise; ids count from 0 per connection), ``userDataStream.unsubscribe`` (one
``subscriptionId`` or all; each ends with ``eventStreamTerminated``), ``session.subscriptions``, ``order.place``,
``order.test``, ``order.cancel``, ``order.status``, ``openOrders.status``, ``openOrders.cancelAll``,
``account.status``, ``myTrades`` (the subscription methods answer without ``rateLimits``, as the docs show them).
A subscription receives its account's events as ``{"subscriptionId": n, "event":
{...}}``: ``executionReport`` (every unconditional field, ``W`` while the order is on the book, ``eR`` once expired),
``outboundAccountPosition`` after every balance change, ``balanceUpdate`` (:meth:`Trading.deposit`),
``eventStreamTerminated``. A request's own events go out after its answer on the same connection. The server pings
every ``ping_interval`` s and closes a connection that does not answer within half of it (aiohttp's heartbeat).

**Rate limits** from the served ``exchangeInfo`` ``rateLimits`` (``REQUEST_WEIGHT`` per IP, shared with the market
data endpoints; ``ORDERS`` per account), windows aligned to the clock, configurable with
:meth:`Trading.set_rate_limits`. Every answer carries ``X-MBX-USED-WEIGHT-<n><unit>`` (WebSocket API:
``rateLimits``), a placed order ``X-MBX-ORDER-COUNT-<n><unit>``. Over the weight limit a trading request answers 429
(-1003, ``Retry-After`` = seconds to the window's end); any request before that ``Retry-After`` ran out starts an IP
ban: 418 for ``ban_seconds`` (default 120) on every endpoint, market data and WebSocket connections included. Over an
order limit: 429 -1015, no ban. ``counts["requests_during_ban"]`` counts the requests received while banned and
``counts["early_requests"]`` those received before any announced ``Retry-After`` ran out: a well-behaved client
keeps both at 0. Market data requests count weight but are never refused for it (only while banned).

**Faults** (:class:`TradingFaults`, ``server.trading_faults``, callable from any thread): ``timestamp_error``,
``timeout_after_placing`` (-1007, HTTP 503, the order placed), ``rate_limit``, ``drop_before_answer`` (the order
placed, the connection closed without an answer), ``lose_order_request`` (the order not placed, the connection closed
without an answer), ``slow_orders`` (order placements reach the matching engine, and are answered, only after a
delay), ``duplicate_reports``, ``reorder_reports``, ``miss_report``, ``corrupt_report``, ``terminate_stream``,
``ws_server_shutdown``, ``user_event`` (any user data event, sent as given), ``place_outside`` (optionally dated back,
as an earlier session's order), ``prevent_match`` (self-trade prevention, mode ``DECREMENT``); each counted in
:attr:`TradingFaults.counts`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson
from aiohttp import WSMsgType, web

from ..core.instruments import ceil_div
from ..messages import (
    BookDelta,
    OrderType,
    PlaceOrder,
    Side,
    SubmitCancel,
    SubmitOrder,
    TimeInForce,
    Trade,
    VenueCancelRejected,
    VenueOrderAccepted,
    VenueOrderCancelled,
    VenueOrderExpired,
    VenueOrderFilled,
    VenueOrderRejected,
)
from ..venues.binance.auth import MAX_RECV_WINDOW_MS, Verifier
from ..venues.binance.instruments import parse_exchange_info
from ..venues.fill_models import FeeModel
from ..venues.paper import PaperVenue


class _Server(Protocol):
    """What the trading side uses of the :class:`~veloz_actors.testing.binance_server.BinanceTestServer` that owns
    it (a protocol, so this module does not import the server's: the server imports this one)."""

    ping_interval: float
    _exchange_info: dict[str, Any]
    _market: Any

    def _call(self, fn: Callable[[], Any]) -> Any: ...

    def server_time_ms(self) -> int: ...


__all__ = ["DEFAULT_BALANCES", "DEFAULT_FEE_RATE", "Refusal", "Trading", "TradingFaults"]

SCALE = 100_000_000
DEFAULT_FEE_RATE = "0.001"
DEFAULT_BALANCES: dict[str, str] = {"USDT": "100000", "BTC": "1"}
DEFAULT_RECV_WINDOW_MS = 5_000
VENUE_NAME = "BINANCE-TEST"

_DECIMAL = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_DECIMAL_RANGE = "^([0-9]{1,20})(\\.[0-9]{1,20})?$"
_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_CLIENT_ID_RANGE = "^[\\.A-Z\\:/a-z0-9_-]{1,36}$"
_SYMBOL = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_INT = re.compile(r"^-?[0-9]{1,20}$")
_WS_ID = re.compile(r"^[A-Za-z0-9\-_]{1,36}$")
_INTERVAL_MS = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
_LETTER = {"SECOND": "S", "MINUTE": "M", "HOUR": "H", "DAY": "D"}
_DEFAULT_LIMITS = (
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
)
_OPEN = ("NEW", "PARTIALLY_FILLED")
_BIG_PRICE = 1 << 62
_TIMEOUT_MSG = "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
_INSUFFICIENT = "Account has insufficient balance for requested action."
_UNKNOWN_MSG = "An unknown error occurred while processing the request."
_log = logging.getLogger(__name__)


def _fmt(units: int) -> str:
    """1e-8 units as Binance writes them (``"-1.50000000"``)."""
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), SCALE)
    return f"{sign}{whole}.{frac:08d}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _rate(text: str | int) -> int:
    """A commission rate (``"0.001"`` or 1e-8 units) as 1e-8 units."""
    if isinstance(text, int):
        return text
    return _decimal(str(text), "rate")


def _decimal(text: str, name: str) -> int:
    """A DECIMAL parameter as 1e-8 units, or Binance's -1100 / -1111."""
    match = _DECIMAL.match(text)
    if match is None:
        raise Refusal(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{_DECIMAL_RANGE}'.")
    frac = (match.group(2) or ".")[1:]
    if len(frac) > 8 and frac[8:].strip("0"):
        raise Refusal(-1111, f"Parameter '{name}' has too much precision.")
    return int(match.group(1)) * SCALE + int((frac + "00000000")[:8])


def _signed_decimal(text: str | int, name: str) -> int:
    if isinstance(text, int):
        return text
    text = str(text)
    negative = text.startswith("-")
    try:
        units = _decimal(text[1:] if negative else text, name)
    except Refusal as exc:
        raise ValueError(f"{name}: not a decimal amount: {text!r}") from exc
    return -units if negative else units


class Refusal(Exception):
    """A Binance error answer: ``{"code", "msg"}`` with an HTTP (or WebSocket API) status."""

    def __init__(self, code: int, msg: str, status: int = 400, retry_after: int | None = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.retry_after = retry_after  # seconds (the Retry-After header)
        self.retry_until: int | None = None  # ms (the WebSocket API's error data)


class _Dropped(Exception):
    """Close the connection without answering (the ``drop_before_answer`` fault)."""


# ----------------------------------------------------------------------------------------------------- accounts


class _Account:
    __slots__ = (
        "api_key", "kind", "verifier", "name", "uid", "balances", "maker", "taker", "fees", "update_ms", "fee_asset",
        "fee_price",
    )  # fmt: skip

    def __init__(
        self, api_key: str, verifier: Verifier, uid: int, balances: dict[str, list[int]], maker: int, taker: int
    ) -> None:
        self.api_key = api_key
        self.verifier = verifier
        self.kind = verifier.kind
        self.uid = uid
        self.name = f"account-{uid}"
        self.balances = balances  # asset -> [free, locked], 1e-8 units
        self.maker = maker
        self.taker = taker
        self.fees = FeeModel(maker, taker)
        self.update_ms = 0
        self.fee_asset: str | None = None  # fees paid in this asset (BNB) while it has enough, at fee_price
        self.fee_price = 0  # 1e-8 units of the quote asset per whole fee_asset

    def balance(self, asset: str) -> list[int]:
        row = self.balances.get(asset)
        if row is None:
            row = self.balances[asset] = [0, 0]
        return row


class _Order:
    """One order as the server states it (Binance's view), with its reservation and its venue."""

    __slots__ = (
        "account", "symbol", "order_id", "client_order_id", "side", "type", "tif", "price", "orig_qty", "quote_qty",
        "executed", "cum_quote", "status", "time", "update", "expiry", "reserve_asset", "reserved", "vcid", "venue",
        "fills", "on_book", "base", "quote", "prevented", "shown_status",
    )  # fmt: skip

    def __init__(self, account: _Account, symbol: str, order_id: int, client_order_id: str, spec: _Spec) -> None:
        self.account = account
        self.symbol = symbol
        self.order_id = order_id
        self.client_order_id = client_order_id
        self.side = spec.side
        self.type = spec.type
        self.tif = spec.tif
        self.price = spec.price
        self.orig_qty = spec.qty
        self.quote_qty = spec.quote_qty
        self.executed = 0
        self.cum_quote = 0
        self.status = "NEW"
        self.time = 0
        self.update = 0
        self.expiry: str | None = None
        self.reserve_asset = ""
        self.reserved = 0
        self.vcid = str(order_id)
        self.venue: PaperVenue | None = None
        self.fills: list[dict[str, Any]] = []  # the fills on arrival (the FULL answer)
        self.on_book = False
        self.base = spec.base
        self.quote = spec.quote
        self.prevented = 0  # taken off by self-trade prevention (``preventedQuantity``)
        self.shown_status: str | None = None  # the status its queries state instead (faults.state_status)

    @property
    def open(self) -> bool:
        return self.status in _OPEN

    def _qty_text(self) -> str:
        # a MARKET order by quote amount states what it executed
        return _fmt(self.executed if self.quote_qty and self.type == "MARKET" else self.orig_qty)

    def ack(self, now: int) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "transactTime": now,
        }

    def result(self, now: int) -> dict[str, Any]:
        out = self.ack(now)
        out.update(
            price=_fmt(self.price),
            origQty=self._qty_text(),
            executedQty=_fmt(self.executed),
            origQuoteOrderQty=_fmt(self.quote_qty),
            cummulativeQuoteQty=_fmt(self.cum_quote),
            status=self.status,
            timeInForce=self.tif,
            type=self.type,
            side=self.side,
            workingTime=self.time,
            selfTradePreventionMode="NONE",
        )
        if self.expiry is not None:
            out["expiryReason"] = self.expiry
        return out

    def full(self, now: int) -> dict[str, Any]:
        out = self.result(now)
        out["fills"] = list(self.fills)
        return out

    def query(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": _fmt(self.price),
            "origQty": self._qty_text(),
            "executedQty": _fmt(self.executed),
            "cummulativeQuoteQty": _fmt(self.cum_quote),
            "status": self.shown_status or self.status,
            "timeInForce": self.tif,
            "type": self.type,
            "side": self.side,
            "stopPrice": _fmt(0),
            "icebergQty": _fmt(0),
            "time": self.time,
            "updateTime": self.update,
            "isWorking": True,
            "workingTime": self.time,
            "origQuoteOrderQty": _fmt(self.quote_qty),
            "selfTradePreventionMode": "NONE",
        }
        if self.expiry is not None:
            out["expiryReason"] = self.expiry
        if self.prevented:
            out["preventedMatchId"] = 0
            out["preventedQuantity"] = _fmt(self.prevented)
        return out

    def cancelled(self, cancel_id: str, now: int) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "origClientOrderId": self.client_order_id,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": cancel_id,
            "transactTime": now,
            "price": _fmt(self.price),
            "origQty": self._qty_text(),
            "executedQty": _fmt(self.executed),
            "origQuoteOrderQty": _fmt(self.quote_qty),
            "cummulativeQuoteQty": _fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": self.tif,
            "type": self.type,
            "side": self.side,
            "selfTradePreventionMode": "NONE",
        }


class _Spec:
    """A validated new order."""

    __slots__ = (
        "symbol",
        "side",
        "type",
        "tif",
        "qty",
        "price",
        "quote_qty",
        "client_order_id",
        "resp",
        "base",
        "quote",
    )

    def __init__(self) -> None:
        self.symbol = ""
        self.side = ""
        self.type = ""
        self.tif = "GTC"
        self.qty = 0
        self.price = 0
        self.quote_qty = 0
        self.client_order_id: str | None = None
        self.resp = "FULL"
        self.base = ""
        self.quote = ""


class _Filters:
    """One symbol's order rules from the served exchangeInfo entry (1e-8 units; 0 disables a bound)."""

    def __init__(self, entry: Mapping[str, Any]) -> None:
        self.status = str(entry.get("status", "TRADING"))
        self.base = str(entry.get("baseAsset", ""))
        self.quote = str(entry.get("quoteAsset", ""))
        self.order_types = tuple(entry.get("orderTypes", ("LIMIT", "LIMIT_MAKER", "MARKET")))
        self.quote_market = bool(entry.get("quoteOrderQtyMarketAllowed", True))
        self.min_price = self.max_price = self.tick = 0
        self.min_qty = self.max_qty = self.step = 0
        self.market: tuple[int, int, int] | None = None
        self.min_notional = self.max_notional = 0
        self.min_to_market = self.max_to_market = False
        self.notional_name = ""
        self.max_orders = 0
        for flt in entry.get("filters", ()):
            kind = flt.get("filterType")
            if kind == "PRICE_FILTER":
                self.min_price, self.max_price, self.tick = (
                    _decimal(flt[k], k) for k in ("minPrice", "maxPrice", "tickSize")
                )
            elif kind == "LOT_SIZE":
                self.min_qty, self.max_qty, self.step = (_decimal(flt[k], k) for k in ("minQty", "maxQty", "stepSize"))
            elif kind == "MARKET_LOT_SIZE":
                self.market = (_decimal(flt["minQty"], "minQty"), _decimal(flt["maxQty"], "maxQty"),
                               _decimal(flt["stepSize"], "stepSize"))  # fmt: skip
            elif kind == "MIN_NOTIONAL":
                self.notional_name = "MIN_NOTIONAL"
                self.min_notional = _decimal(flt["minNotional"], "minNotional")
                self.min_to_market = bool(flt.get("applyToMarket", True))
            elif kind == "NOTIONAL":
                self.notional_name = "NOTIONAL"
                self.min_notional = _decimal(flt.get("minNotional", "0"), "minNotional")
                self.max_notional = _decimal(flt.get("maxNotional", "0"), "maxNotional")
                self.min_to_market = bool(flt.get("applyMinToMarket", True))
                self.max_to_market = bool(flt.get("applyMaxToMarket", False))
            elif kind == "MAX_NUM_ORDERS":
                self.max_orders = int(flt.get("maxNumOrders", 0))

    def check(self, spec: _Spec, reference: int, open_orders: int) -> None:
        """Binance's filter checks, in its order; -1013 naming the first that fails."""
        market = spec.type == "MARKET"
        if not market:
            price = spec.price
            if (
                (self.min_price and price < self.min_price)
                or (self.max_price and price > self.max_price)
                or (self.tick and price % self.tick)
            ):
                _filter_failure("PRICE_FILTER")
        if spec.qty:
            qty = spec.qty
            if qty < self.min_qty or (self.max_qty and qty > self.max_qty) or (self.step and qty % self.step):
                _filter_failure("LOT_SIZE")
            if market and self.market is not None:
                low, high, step = self.market
                if qty < low or (high and qty > high) or (step and qty % step):
                    _filter_failure("MARKET_LOT_SIZE")
        if self.notional_name:
            if market:
                notional = spec.quote_qty or reference * spec.qty // SCALE
                low = self.min_notional if self.min_to_market else 0
                high = self.max_notional if self.max_to_market else 0
            else:
                notional = spec.price * spec.qty // SCALE
                low, high = self.min_notional, self.max_notional
            if notional < low or (high and notional > high):
                _filter_failure(self.notional_name)
        if self.max_orders and open_orders >= self.max_orders:
            _filter_failure("MAX_NUM_ORDERS")


def _filter_failure(name: str) -> None:
    raise Refusal(-1013, f"Filter failure: {name}")


# -------------------------------------------------------------------------------------------------- rate limits


class _Limit:
    __slots__ = ("kind", "interval", "num", "limit", "ms", "label")

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.kind = str(row["rateLimitType"])
        self.interval = str(row["interval"])
        self.num = int(row["intervalNum"])
        self.limit = int(row["limit"])
        if self.interval not in _INTERVAL_MS or self.num <= 0 or self.limit <= 0:
            raise ValueError(f"not a usable rate limit row: {dict(row)}")
        self.ms = _INTERVAL_MS[self.interval] * self.num
        self.label = f"{self.num}{_LETTER[self.interval]}"

    def row(self, count: int) -> dict[str, Any]:
        return {
            "rateLimitType": self.kind,
            "interval": self.interval,
            "intervalNum": self.num,
            "limit": self.limit,
            "count": count,
        }


class _Limits:
    """Request weight (per IP: this server has one) and order counts (per account) in clock-aligned windows."""

    def __init__(self, rows: Iterable[Mapping[str, Any]], ban_seconds: int = 120) -> None:
        self.ban_seconds = ban_seconds
        self.set_rows(rows)

    def set_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        limits = [_Limit(row) for row in rows if row.get("rateLimitType") in ("REQUEST_WEIGHT", "ORDERS")]
        self.weights = [lim for lim in limits if lim.kind == "REQUEST_WEIGHT"]
        self.orders = [lim for lim in limits if lim.kind == "ORDERS"]
        self.reset()

    def reset(self) -> None:
        self.counts: dict[tuple[int, str], tuple[int, int]] = {}  # (id(limit), who) -> (window start, count)
        self.banned_until = 0
        self.warned_until = 0  # a 429's Retry-After: a request before it starts a ban
        self.announced_until = 0  # the latest Retry-After announced (429 or 418, real or injected)

    def _get(self, limit: _Limit, who: str, now: int) -> int:
        start = now - now % limit.ms
        window = self.counts.get((id(limit), who))
        return window[1] if window is not None and window[0] == start else 0

    def _add(self, limit: _Limit, who: str, now: int, amount: int) -> int:
        start = now - now % limit.ms
        count = self._get(limit, who, now) + amount
        self.counts[(id(limit), who)] = (start, count)
        return count

    def add_weight(self, now: int, weight: int) -> None:
        for limit in self.weights:
            self._add(limit, "", now, weight)

    def weight_rows(self, now: int) -> list[tuple[_Limit, int]]:
        return [(limit, self._get(limit, "", now)) for limit in self.weights]

    def order_rows(self, who: str, now: int) -> list[tuple[_Limit, int]]:
        return [(limit, self._get(limit, who, now)) for limit in self.orders]

    def add_order(self, who: str, now: int) -> None:
        for limit in self.orders:
            self._add(limit, who, now, 1)

    @staticmethod
    def window_end(limit: _Limit, now: int) -> int:
        return now - now % limit.ms + limit.ms


# ------------------------------------------------------------------------------------------------ WebSocket API


class _ApiConn:
    """One WebSocket API connection: its send queue, writer task and user data subscriptions."""

    def __init__(self, ws: web.WebSocketResponse, transport: Any, rate_limits: bool) -> None:
        self.ws = ws
        self.transport = transport
        self.rate_limits = rate_limits
        self.queue: deque[str | int] = deque()  # text frames; an int is a close code
        self.wake = asyncio.Event()
        self.closed = False
        self.subs: dict[int, _Account] = {}
        self.next_sub = 0
        self.writer: asyncio.Task[None] | None = None

    def push(self, frame: str | int) -> None:
        if self.closed:
            return
        self.queue.append(frame)
        self.wake.set()

    async def write_loop(self) -> None:
        try:
            while not self.closed:
                if not self.queue:
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                frame = self.queue.popleft()
                if isinstance(frame, int):
                    await asyncio.wait_for(self.ws.close(code=frame), 2.0)
                    break
                await self.ws.send_str(frame)
        except asyncio.CancelledError:
            pass
        except Exception:  # the peer went away
            pass
        finally:
            self.closed = True

    def abort(self) -> None:
        self.closed = True
        self.queue.clear()
        if self.transport is not None:
            self.transport.abort()
        self.wake.set()


# ------------------------------------------------------------------------------------------------------- faults


class _FaultState:
    def __init__(self) -> None:
        self.timestamp_errors = 0
        self.timeouts = 0
        self.rate_limited = 0
        self.rate_status = 429
        self.retry_after = 2
        self.drops = 0
        self.losses = 0
        self.slow = 0
        self.slow_seconds = 0.0
        self.duplicates = 0
        self.reorders = 0
        self.misses = 0
        self.corruptions: list[tuple[str, str, Any]] = []  # (execution type, field, value)
        self.held: tuple[_Account, dict[str, Any]] | None = None


class TradingFaults:
    """Trading fault switches of a running server; every method is safe to call from any thread.

    :attr:`counts` counts what each did (answers refused, orders placed then not answered, reports doubled, swapped
    or dropped, subscriptions terminated, connections told to go, outside orders), and the rate limiter's own
    refusals: ``too_many_requests`` (429 -1003), ``too_many_orders`` (429 -1015), ``ip_ban`` (bans started by a
    request inside a ``Retry-After``), ``requests_during_ban`` and ``early_requests`` (see the module docstring).
    """

    def __init__(self, trading: Trading) -> None:
        self._trading = trading
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "timestamp_error",
                "timeout_after_placing",
                "rate_limit",
                "drop_before_answer",
                "lose_order_request",
                "slow_orders",
                "duplicate_reports",
                "reorder_reports",
                "miss_report",
                "corrupt_report",
                "terminate_stream",
                "ws_server_shutdown",
                "user_event",
                "place_outside",
                "prevent_match",
                "too_many_requests",
                "too_many_orders",
                "ip_ban",
                "requests_during_ban",
                "early_requests",
            ),
            0,
        )

    def _count(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    def _set(self, **changes: int) -> None:
        state = self._trading._faulty

        def run() -> None:
            for name, add in changes.items():
                setattr(state, name, getattr(state, name) + add)

        self._trading._call(run)

    def timestamp_error(self, count: int = 1) -> None:
        """The next ``count`` SIGNED requests (REST or WebSocket API) answer -1021, whatever their timestamp."""
        self._set(timestamp_errors=count)

    def timeout_after_placing(self, count: int = 1) -> None:
        """The next ``count`` order placements are placed, and answered -1007 "Timeout waiting for response from
        backend server. Send status unknown; execution status unknown." (HTTP / WebSocket API status 503)."""
        self._set(timeouts=count)

    def rate_limit(self, status: int = 429, retry_after: int = 2, count: int = 1) -> None:
        """The next ``count`` trading requests answer ``status`` with ``Retry-After: retry_after`` and -1003. As the
        real limiter: after a 429 a request before ``retry_after`` s starts an IP ban; a 418 is a ban of
        ``retry_after`` s (every request refused until it ends)."""
        if status not in (429, 418):
            raise ValueError(f"status must be 429 or 418, got {status}")
        state = self._trading._faulty

        def run() -> None:
            state.rate_limited += count
            state.rate_status = status
            state.retry_after = retry_after

        self._trading._call(run)

    def drop_before_answer(self, count: int = 1) -> None:
        """The next ``count`` order placements are placed, then their connection (REST or WebSocket API) is closed
        before the answer is sent."""
        self._set(drops=count)

    def lose_order_request(self, count: int = 1) -> None:
        """The next ``count`` order placements are lost on their way: not placed, and their connection (REST or
        WebSocket API) is closed without an answer, so the client cannot know whether they were."""
        self._set(losses=count)

    def slow_orders(self, seconds: float, count: int = 1) -> None:
        """The next ``count`` order placements wait ``seconds`` before they are placed and answered (a slow backend;
        keep it inside the request's ``recvWindow``)."""

        def run() -> None:
            state = self._trading._faulty
            state.slow += count
            state.slow_seconds = seconds

        self._trading._call(run)

    def duplicate_reports(self, count: int = 1) -> None:
        """The next ``count`` execution reports are sent twice."""
        self._set(duplicates=count)

    def reorder_reports(self, count: int = 1) -> None:
        """``count`` times: an execution report is held back and sent right after the account's next one."""
        self._set(reorders=count)

    def miss_report(self, count: int = 1) -> None:
        """The next ``count`` execution reports are not sent at all (the orders change state all the same)."""
        self._set(misses=count)

    def corrupt_report(self, field: str, value: Any, *, execution_type: str = "TRADE") -> None:
        """The next execution report of ``execution_type`` (``x``) is sent with ``field`` set to ``value`` (a payload
        no client can read, say)."""
        state = self._trading._faulty
        self._trading._call(lambda: state.corruptions.append((execution_type, field, value)))

    def terminate_stream(self, api_key: str | None = None) -> int:
        """Send ``eventStreamTerminated`` on every user data subscription (of ``api_key``, or all), then stop sending
        user data on them; how many were terminated."""
        trading = self._trading
        return trading._call(lambda: trading._terminate(api_key, "terminate_stream"))

    def user_event(self, api_key: str, event: dict[str, Any]) -> int:
        """Send ``event`` as it is (``"E"``, the event time, added when missing) on the account's user data
        subscriptions: an event type Binance adds, or an event with a row no client can read; how many got it."""
        trading = self._trading

        def run() -> int:
            account = trading._account(api_key)
            trading._deliver(account, {"E": trading._now(), **event})
            self._count("user_event")
            return len(trading.subscribers.get(account.api_key) or ())

        return trading._call(run)

    def ws_server_shutdown(self, close_after: float | None = 0.5) -> int:
        """Send ``{"event": {"e": "serverShutdown", ...}}`` on every WebSocket API connection and close them after
        ``close_after`` seconds (None: leave them open); how many were told."""
        trading = self._trading
        return trading._call(lambda: trading._ws_shutdown(close_after))

    def place_outside(
        self,
        api_key: str,
        symbol: str,
        side: str,
        qty: str,
        price: str,
        *,
        client_order_id: str | None = None,
        age_seconds: float = 0.0,
    ) -> dict[str, Any]:
        """Place a ``LIMIT`` ``GTC`` order on the account as someone else would (another program, the web UI, an
        earlier session): it reserves, rests, fills and streams like any order; returns it as ``GET /api/v3/order``
        states it. ``age_seconds``: its ``time`` / ``updateTime`` and those of the trades it made on arrival are
        dated that far back, as an order an earlier session placed. A refusal raises :class:`Refusal`."""
        trading = self._trading

        def run() -> dict[str, Any]:
            account = trading._account(api_key)
            params = {"symbol": symbol, "side": side, "type": "LIMIT", "timeInForce": "GTC", "quantity": qty}
            params["price"] = price
            if client_order_id is not None:
                params["newClientOrderId"] = client_order_id
            order = trading._place(account, params)
            if age_seconds:
                back = round(age_seconds * 1000)
                order.time -= back
                order.update -= back
                for row in trading.account_trades[account.api_key]:
                    if row["orderId"] == order.order_id:
                        row["time"] -= back
            self._count("place_outside")
            return order.query()

        return trading._call(run)

    def state_status(self, api_key: str, client_order_id: str, status: str) -> None:
        """The account's open order ``client_order_id`` is stated with ``status`` in order queries and open-orders
        lists (a status Binance may add that a client does not know yet); it works on as before."""
        trading = self._trading

        def run() -> None:
            account = trading._account(api_key)
            [order] = [o for o in trading._open_orders(account) if o.client_order_id == client_order_id]
            order.shown_status = status

        trading._call(run)

    def prevent_match(self, api_key: str, client_order_id: str, qty: str) -> dict[str, Any]:
        """Self-trade prevention in mode ``DECREMENT`` on the account's open order ``client_order_id`` (the newest
        with that id), as when another order of the account would have matched it for ``qty`` (``stp_faq.md``
        Scenario G): its prevented quantity grows by ``qty``, which it can no longer fill (its reservation for it is
        released); it keeps working (``NEW`` / ``PARTIALLY_FILLED``) while some quantity is left, else it ends
        ``EXPIRED_IN_MATCH``. Sends the ``TRADE_PREVENTION`` execution report; returns the order as ``GET
        /api/v3/order`` states it. ``qty`` must be positive and at most what the order has left (ValueError)."""
        trading = self._trading

        def run() -> dict[str, Any]:
            account = trading._account(api_key)
            order = next(
                (o for o in reversed(trading.account_orders[account.api_key]) if o.client_order_id == client_order_id),
                None,
            )
            if order is None or not order.open or order.type == "MARKET":
                raise ValueError(f"no open limit order {client_order_id!r} on this account")
            amount = _decimal(qty, "qty")
            left = order.orig_qty - order.executed - order.prevented
            if not 0 < amount <= left:
                raise ValueError(f"qty must be in (0, {_fmt(left)}], got {qty}")
            trading._prevent(order, amount)
            self._count("prevent_match")
            return order.query()

        return trading._call(run)


# ------------------------------------------------------------------------------------------------------ trading


_Params = dict[str, str]
_Handler = Callable[[_Account, _Params], Any]


class Trading:
    """The trading side of a :class:`~veloz_actors.testing.binance_server.BinanceTestServer` (see the module
    docstring). The server builds it; tests reach it through the server's methods."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.accounts: dict[str, _Account] = {}
        self.orders_by_id: dict[int, _Order] = {}
        self.account_orders: dict[str, list[_Order]] = {}
        self.account_trades: dict[str, list[dict[str, Any]]] = {}
        self.venues: dict[tuple[str, int, int], PaperVenue] = {}
        self.symbol_venues: dict[str, list[PaperVenue]] = {}
        self.by_vcid: dict[str, _Order] = {}
        self.next_order_id = 1
        self.next_trade_id: dict[str, int] = {}
        self.next_exec_id = 1
        self.next_prevented_match_id = 0
        self.next_client_id = 1
        self.conns: set[_ApiConn] = set()
        self.subscribers: dict[str, dict[tuple[_ApiConn, int], None]] = {}
        self._deferred: list[tuple[_ApiConn, str]] | None = None
        self._filters: dict[str, _Filters] = {}
        info = server._exchange_info
        rows = [row for row in info.get("rateLimits", []) if row.get("rateLimitType") in ("REQUEST_WEIGHT", "ORDERS")]
        self.limits = _Limits(rows or _DEFAULT_LIMITS)
        if not rows:
            info["rateLimits"] = list(info.get("rateLimits", [])) + [dict(row) for row in _DEFAULT_LIMITS]
        self._faulty = _FaultState()
        self.faults = TradingFaults(self)

    # ------------------------------------------------------------------------------------------- loop helpers

    def _call(self, fn: Callable[[], Any]) -> Any:
        return self.server._call(fn)

    def _now(self) -> int:
        return self.server.server_time_ms()

    # ------------------------------------------------------------------------------------------------ accounts

    def add_account(
        self,
        api_key: str,
        *,
        hmac_secret: str | None = None,
        ed25519_public_key_pem: str | bytes | None = None,
        balances: Mapping[str, str | int] | None = None,
        maker_rate: str | int = DEFAULT_FEE_RATE,
        taker_rate: str | int = DEFAULT_FEE_RATE,
    ) -> None:
        """Give the server an API key: an HMAC secret or an Ed25519 public key (PEM), its balances (decimal text or
        1e-8 units; default 100000 USDT and 1 BTC) and commission rates (default 0.001)."""
        if (hmac_secret is None) == (ed25519_public_key_pem is None):
            raise ValueError("give either hmac_secret or ed25519_public_key_pem")
        verifier = (
            Verifier.from_hmac(hmac_secret)
            if hmac_secret is not None
            else Verifier.from_public_key(ed25519_public_key_pem)  # type: ignore[arg-type]
        )
        wanted = DEFAULT_BALANCES if balances is None else balances
        parsed = {asset: [_signed_decimal(amount, f"balance {asset}"), 0] for asset, amount in wanted.items()}
        if any(row[0] < 0 for row in parsed.values()):
            raise ValueError("balances must not be negative")
        maker, taker = _rate(maker_rate), _rate(taker_rate)

        def run() -> None:
            if api_key in self.accounts:
                raise ValueError(f"API key {api_key[:4]}… is already an account")
            account = _Account(api_key, verifier, len(self.accounts) + 1, parsed, maker, taker)
            account.update_ms = self._now()
            self.accounts[api_key] = account
            self.account_orders[api_key] = []
            self.account_trades[api_key] = []

        self._call(run)

    def _account(self, api_key: str) -> _Account:
        account = self.accounts.get(api_key)
        if account is None:
            raise ValueError(f"no account with API key {api_key[:4]}…")
        return account

    def deposit(self, api_key: str, asset: str, amount: str | int) -> None:
        """A deposit (or, negative, a withdrawal) outside trading: the balance changes and the account's
        subscriptions get ``balanceUpdate`` then ``outboundAccountPosition``."""
        delta = _signed_decimal(amount, "amount")

        def run() -> None:
            account = self._account(api_key)
            row = account.balance(asset)
            if row[0] + delta < 0:
                raise ValueError(f"withdrawal of {_fmt(-delta)} {asset}: only {_fmt(row[0])} free")
            row[0] += delta
            now = self._now()
            account.update_ms = now
            self._deliver(account, {"e": "balanceUpdate", "E": now, "a": asset, "d": _fmt(delta), "T": now})
            self._position(account, (asset,), now)

        self._call(run)

    def pay_fees_in(self, api_key: str, asset: str | None = "BNB", price: str = "600") -> None:
        """The account pays its commissions in ``asset`` (Binance's "BNB burn"; ``None``: in the traded assets again),
        converted at ``price`` (decimal text: the quote asset per whole ``asset``, the rate at the trade's time: a test sets it, and may
        change it between trades). A fill's commission (what it would cost in the quote asset) is converted, rounded
        up to 1e-8, and taken from the free ``asset`` balance. When that balance is too small, the commission comes out
        of the received amount (``commission_faq.md``: "If you do not have enough BNB to pay the discounted commission,
        the full commission will be taken out of your received amount"): a SELL's in the quote asset as without the
        switch, a BUY's in the base asset (converted at the fill's price, rounded up). A symbol whose base or quote is
        ``asset`` is charged as without the switch. No BNB discount is applied (the account's rates are charged)."""
        try:
            units = _decimal(price, "price") if asset is not None else 0
        except Refusal as exc:
            raise ValueError(f"the fee asset's price {price!r} is not a decimal") from exc
        if asset is not None and units <= 0:
            raise ValueError(f"the fee asset's price must be positive, got {price!r}")

        def run() -> None:
            account = self._account(api_key)
            account.fee_asset = asset
            account.fee_price = units

        self._call(run)

    def orders(self, api_key: str) -> list[dict[str, Any]]:
        """Every order of the account, oldest first, as ``GET /api/v3/order`` states it."""
        return self._call(lambda: [order.query() for order in self.account_orders[self._account(api_key).api_key]])

    def trades(self, api_key: str) -> list[dict[str, Any]]:
        """Every trade of the account, oldest first, as ``GET /api/v3/myTrades`` states it."""
        return self._call(lambda: [dict(row) for row in self.account_trades[self._account(api_key).api_key]])

    def balances(self, api_key: str) -> dict[str, tuple[int, int]]:
        """``asset -> (free, locked)`` in 1e-8 units."""
        return self._call(lambda: {asset: (row[0], row[1]) for asset, row in self._account(api_key).balances.items()})

    def set_rate_limits(
        self, rows: Iterable[Mapping[str, Any]] | None = None, *, ban_seconds: int | None = None
    ) -> None:
        """Replace the ``REQUEST_WEIGHT`` / ``ORDERS`` limits (exchangeInfo ``rateLimits`` rows; the served
        exchangeInfo says so too) and/or the IP ban length; counters, warnings and bans start over."""
        new_rows = None if rows is None else [dict(row) for row in rows]

        def run() -> None:
            limits = self.limits
            if ban_seconds is not None:
                limits.ban_seconds = ban_seconds
            if new_rows is None:
                limits.reset()
                return
            limits.set_rows(new_rows)
            info = self.server._exchange_info
            kept = [r for r in info.get("rateLimits", []) if r.get("rateLimitType") not in ("REQUEST_WEIGHT", "ORDERS")]
            info["rateLimits"] = [
                {k: v for k, v in row.items() if k != "count"}
                for row in new_rows
                if row.get("rateLimitType") in ("REQUEST_WEIGHT", "ORDERS")
            ] + kept

        self._call(run)

    # ------------------------------------------------------------------------------------------- the venues

    def forget_filters(self, symbol: str) -> None:
        """``symbol``'s exchangeInfo entry changed: its rules are read again for the next order (on the loop)."""
        self._filters.pop(symbol, None)

    def _filters_of(self, symbol: str) -> _Filters:
        filters = self._filters.get(symbol)
        if filters is None:
            entry = next(e for e in self.server._exchange_info["symbols"] if e["symbol"] == symbol)
            filters = self._filters[symbol] = _Filters(entry)
        return filters

    def _venue(self, symbol: str, account: _Account) -> PaperVenue:
        key = (symbol, account.maker, account.taker)
        venue = self.venues.get(key)
        if venue is not None:
            return venue
        instrument = parse_exchange_info(
            self.server._exchange_info, [symbol], maker_fee_rate=account.maker, taker_fee_rate=account.taker
        )[symbol]
        venue = PaperVenue(instrument, name=VENUE_NAME, fees=account.fees)
        book = self.server._market.states[symbol].book
        bids, asks = book.depth(len(book))
        last = book.last_update_id
        now_ns = time.time_ns()
        venue.on_market(
            BookDelta(
                symbol=symbol,
                first_update_id=last,
                last_update_id=last,
                bids=bids,
                asks=asks,
                is_snapshot=True,
                ts_event=now_ns,
                ts_recv=now_ns,
            )
        )
        self.venues[key] = venue
        self.symbol_venues.setdefault(symbol, []).append(venue)
        self.server._market.on_event = self.on_market
        return venue

    def on_market(self, symbol: str, ev: Any) -> None:
        """A published market event (called in the server's publish path): every venue of the symbol sees it; the
        fills it causes are booked and streamed."""
        venues = self.symbol_venues.get(symbol)
        if not venues:
            return
        if ev.delta is not None:
            for venue in venues:
                venue.on_market(ev.delta)
            return
        if ev.trade is None:
            return
        trade_id, price, qty, _, _, _, buyer_maker, _ = ev.trade
        now_ns = time.time_ns()
        trade = Trade(
            symbol=symbol,
            trade_id=trade_id,
            price=price,
            qty=qty,
            aggressor=Side.SELL if buyer_maker else Side.BUY,
            ts_event=now_ns,
            ts_recv=now_ns,
        )
        for venue in venues:
            if venue.resting:
                self._apply(venue.on_market(trade), None)

    def _reference_price(self, symbol: str) -> int:
        state = self.server._market.states[symbol]
        if state.trades:
            return state.trades[-1][2]
        return state.book.mid() or 0

    # --------------------------------------------------------------------------------------------- placement

    def _spec(self, params: _Params) -> _Spec:
        """A new order's parameters, validated as Binance does (before filters and balances)."""
        spec = _Spec()
        spec.symbol = self._symbol(params)
        filters = self._filters_of(spec.symbol)
        spec.base, spec.quote = filters.base, filters.quote
        side = params.get("side")
        if not side:
            raise _mandatory("side")
        if side not in ("BUY", "SELL"):
            raise Refusal(-1117, "Invalid side.")
        spec.side = side
        kind = params.get("type")
        if not kind:
            raise _mandatory("type")
        if kind not in ("LIMIT", "MARKET", "LIMIT_MAKER") or kind not in filters.order_types:
            raise Refusal(-1116, "Invalid orderType.")
        spec.type = kind
        tif = params.get("timeInForce")
        price = params.get("price")
        qty = params.get("quantity")
        quote_qty = params.get("quoteOrderQty")
        if kind == "LIMIT":
            if not tif:
                raise _mandatory("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise Refusal(-1115, "Invalid timeInForce.")
            spec.tif = tif
        elif tif:
            raise Refusal(-1106, "Parameter 'timeInForce' sent when not required.")
        if kind == "MARKET":
            if price:
                raise Refusal(-1106, "Parameter 'price' sent when not required.")
            if qty and quote_qty:
                raise Refusal(-1106, "Parameter 'quoteOrderQty' sent when not required.")
            if not qty and not quote_qty:
                raise Refusal(-1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!")
            if quote_qty:
                if not filters.quote_market:
                    raise Refusal(-2010, "Quote order qty market orders are not support for this symbol.")
                spec.quote_qty = _decimal(quote_qty, "quoteOrderQty")
                if spec.quote_qty <= 0:
                    raise Refusal(-2010, "Price * QTY is zero or less.")
            else:
                spec.qty = _decimal(qty, "quantity")  # type: ignore[arg-type]
        else:
            if not qty:
                raise _mandatory("quantity")
            if not price:
                raise _mandatory("price")
            if quote_qty:
                raise Refusal(-1106, "Parameter 'quoteOrderQty' sent when not required.")
            spec.qty = _decimal(qty, "quantity")
            spec.price = _decimal(price, "price")
            if spec.price * spec.qty // SCALE <= 0:
                raise Refusal(-2010, "Price * QTY is zero or less.")
        client_id = params.get("newClientOrderId")
        if client_id is not None:
            if _CLIENT_ID.match(client_id) is None:
                raise Refusal(
                    -1100,
                    f"Illegal characters found in parameter 'newClientOrderId'; legal range is '{_CLIENT_ID_RANGE}'.",
                )
            spec.client_order_id = client_id
        resp = params.get("newOrderRespType")
        if resp is None:
            resp = "FULL" if kind in ("LIMIT", "MARKET") else "ACK"
        elif resp not in ("ACK", "RESULT", "FULL"):
            raise Refusal(-1130, "Data sent for parameter 'newOrderRespType' is not valid.")
        spec.resp = resp
        return spec

    def _symbol(self, params: _Params, *, required: bool = True) -> str:
        symbol = params.get("symbol")
        if not symbol:
            if required:
                raise _mandatory("symbol")
            return ""
        if _SYMBOL.match(symbol) is None:
            raise Refusal(
                -1100, "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."
            )
        if symbol not in self.server._market.states:
            raise Refusal(-1121, "Invalid symbol.")
        return symbol

    def _open_orders(self, account: _Account, symbol: str | None = None) -> list[_Order]:
        return [o for o in self.account_orders[account.api_key] if o.open and (symbol is None or o.symbol == symbol)]

    def _validate(self, account: _Account, spec: _Spec) -> None:
        """The symbol's status (-2010 "Market is closed." when it is not ``TRADING``) and filters (-1013)."""
        if self._filters_of(spec.symbol).status != "TRADING":
            raise Refusal(-2010, "Market is closed.")
        self._filters_of(spec.symbol).check(
            spec, self._reference_price(spec.symbol), len(self._open_orders(account, spec.symbol))
        )

    def _place(self, account: _Account, params: _Params, *, count_orders: bool = True) -> _Order:
        """Validate, reserve, submit to the venue and book its reports; the placed order."""
        spec = self._spec(params)
        self._validate(account, spec)
        symbol = spec.symbol
        if spec.client_order_id is not None and any(
            o.client_order_id == spec.client_order_id for o in self._open_orders(account, symbol)
        ):
            raise Refusal(-2010, "Duplicate order sent.")
        now = self._now()
        if count_orders:
            self._check_order_limits(account, _now_ms())
        venue = self._venue(symbol, account)
        buy = spec.side == "BUY"
        if spec.type == "LIMIT_MAKER":
            best = venue.book.best_ask() if buy else venue.book.best_bid()
            if best is not None and (best[0] <= spec.price if buy else best[0] >= spec.price):
                raise Refusal(-2010, "Order would immediately match and take.")
        venue_qty = spec.qty
        if spec.type == "MARKET" and spec.quote_qty and not buy:
            venue_qty = self._sell_qty_for(venue, spec.quote_qty)
            if venue_qty <= 0:
                raise Refusal(-2010, "Order book liquidity is less than symbol minimum quantity.")
        # the reservation
        if buy:
            asset = spec.quote
            if spec.type != "MARKET":
                notional = spec.price * spec.qty // SCALE
                reserve = notional + account.fees.max_fee(notional)
            elif spec.quote_qty:
                reserve = spec.quote_qty
            else:
                cost = _walk(venue, True, spec.qty)[1]
                reserve = cost + account.fees.max_fee(cost)
        else:
            asset = spec.base
            reserve = venue_qty
        if account.balance(asset)[0] < reserve:
            raise Refusal(-2010, _INSUFFICIENT)
        order_id = self.next_order_id
        self.next_order_id += 1
        client_id = spec.client_order_id or self._client_id()
        order = _Order(account, symbol, order_id, client_id, spec)
        order.time = order.update = now
        order.venue = venue
        order.reserve_asset = asset
        order.reserved = reserve
        row = account.balance(asset)
        row[0] -= reserve
        row[1] += reserve
        account.update_ms = now
        account.balance(spec.base if buy else spec.quote)
        self.orders_by_id[order_id] = order
        self.account_orders[account.api_key].append(order)
        self.by_vcid[order.vcid] = order
        if count_orders:
            self.limits.add_order(account.api_key, _now_ms())
        command = PlaceOrder(
            client_order_id=order.vcid,
            account_id=account.name,
            symbol=symbol,
            side=Side.BUY if buy else Side.SELL,
            order_type=OrderType.MARKET if spec.type == "MARKET" else OrderType.LIMIT,
            qty=0 if (spec.quote_qty and buy) else venue_qty,
            price=None if spec.type == "MARKET" else spec.price,
            quote_qty=spec.quote_qty if (spec.quote_qty and buy) else None,
            tif=TimeInForce.POST_ONLY if spec.type == "LIMIT_MAKER" else TimeInForce(spec.tif),
            ts=time.time_ns(),
        )
        limit = spec.price if spec.type != "MARKET" else (_BIG_PRICE if buy else 0)
        self._apply(venue.submit(SubmitOrder(command=command, order_id=order_id, limit=limit)), order)
        return order

    def _sell_qty_for(self, venue: PaperVenue, quote_qty: int) -> int:
        """A SELL by quote amount: the most whole steps whose proceeds, walking the bids, stay within it."""
        step = venue.instrument.qty_step
        total = notional = 0
        for price, level_qty in _levels(venue, False):
            room = (quote_qty - notional) * SCALE // price // step * step
            take = min(room, level_qty // step * step)
            total += take
            notional += price * take // SCALE
            if take < level_qty:
                break
        return total

    def _client_id(self) -> str:
        n = self.next_client_id
        self.next_client_id += 1
        return f"srv{n:019d}"

    def _check_order_limits(self, account: _Account, now: int) -> None:
        for limit, count in self.limits.order_rows(account.api_key, now):
            if count + 1 > limit.limit:
                self.faults._count("too_many_orders")
                end = self.limits.window_end(limit, now)
                refusal = Refusal(
                    -1015,
                    f"Too many new orders; current limit is {limit.limit} orders per {limit.num} {limit.interval}.",
                    429,
                    ceil_div(end - now, 1000),
                )
                refusal.retry_until = end
                raise refusal

    # ------------------------------------------------------------------------------------------- the reports

    def _apply(self, reports: Iterable[Any], placing: _Order | None) -> None:
        """Book a venue's reports: order state, balances, trades, and the events they send."""
        for report in reports:
            kind = type(report)
            order = self.by_vcid.get(report.client_order_id)
            if order is None:
                continue
            now = self._now()
            order.update = now
            if kind is VenueOrderAccepted:
                order.on_book = order.type != "MARKET" and order.tif == "GTC"
                self._report(order, "NEW", now)
                self._position(order.account, (order.base, order.quote), now)
            elif kind is VenueOrderFilled:
                self._fill(order, report, now, placing is order)
            elif kind is VenueOrderExpired:
                # Binance's expiryReason follows the order (the venue expires a FOK that does not cross as IOC)
                reason = "INSUFFICIENT_LIQUIDITY"
                if order.type != "MARKET":
                    reason = "UNFILLED_FOK_ORDER_EXPIRED" if order.tif == "FOK" else "UNFILLED_IOC_QUANTITY_EXPIRED"
                self._expire(order, reason, now)
            elif kind is VenueOrderCancelled:
                order.status = "CANCELED"
                self._close(order)
            elif kind is VenueOrderRejected:
                order.status = "REJECTED"
                self._close(order)
                self._report(order, "REJECTED", now)
                self._position(order.account, (order.base, order.quote), now)

    def _fill(self, order: _Order, report: VenueOrderFilled, now: int, on_arrival: bool) -> None:
        account = order.account
        qty, price, fee = report.qty, report.price, report.fee
        notional = price * qty // SCALE
        order.executed += qty
        order.cum_quote += notional
        base, quote = account.balance(order.base), account.balance(order.quote)
        fee_asset, commission, base_fee = order.quote, fee, 0
        burn = account.fee_asset
        if burn is not None and fee and burn not in (order.base, order.quote):
            converted = -(-fee * SCALE // account.fee_price)
            row = account.balance(burn)
            if row[0] >= converted:
                row[0] -= converted
                fee_asset, commission, fee = burn, converted, 0
            elif order.side == "BUY":  # Binance takes it out of the received amount: a BUY's is the base asset
                base_fee = -(-fee * SCALE // price)
                fee_asset, commission, fee = order.base, base_fee, 0
        if order.side == "BUY":
            spend = notional + fee
            quote[1] -= spend
            order.reserved -= spend
            base[0] += qty - base_fee
        else:
            base[1] -= qty
            order.reserved -= qty
            quote[0] += notional - fee
        account.update_ms = now
        symbol = order.symbol
        trade_id = self.next_trade_id.get(symbol, 1)
        self.next_trade_id[symbol] = trade_id + 1
        maker = report.liquidity == "MAKER"
        self.account_trades[account.api_key].append(
            {
                "symbol": symbol,
                "id": trade_id,
                "orderId": order.order_id,
                "orderListId": -1,
                "price": _fmt(price),
                "qty": _fmt(qty),
                "quoteQty": _fmt(notional),
                "commission": _fmt(commission),
                "commissionAsset": fee_asset,
                "time": now,
                "isBuyer": order.side == "BUY",
                "isMaker": maker,
                "isBestMatch": True,
            }
        )
        if on_arrival:
            order.fills.append(
                {
                    "price": _fmt(price),
                    "qty": _fmt(qty),
                    "commission": _fmt(commission),
                    "commissionAsset": fee_asset,
                    "tradeId": trade_id,
                }
            )
        done = report.leaves_qty == 0
        order.status = "FILLED" if done else "PARTIALLY_FILLED"
        if done:
            self._close(order)
        elif order.type == "MARKET" or order.tif != "GTC":
            order.on_book = False  # still taking on arrival; it ends (expires or fills) before the answer
        self._report(
            order, "TRADE", now, last_qty=qty, last_price=price, fee=commission, fee_asset=fee_asset,
            trade_id=trade_id, maker=maker,
        )  # fmt: skip
        self._position(account, (order.base, order.quote, fee_asset), now)

    def _expire(self, order: _Order, reason: str, now: int) -> None:
        order.status = "EXPIRED"
        order.expiry = reason
        order.update = now
        self._close(order)
        self._report(order, "EXPIRED", now)
        self._position(order.account, (order.base, order.quote), now)

    def _close(self, order: _Order) -> None:
        """The order ended: release what it did not use."""
        order.on_book = False
        if order.reserved:
            row = order.account.balance(order.reserve_asset)
            row[1] -= order.reserved
            row[0] += order.reserved
            order.reserved = 0
        order.account.update_ms = self._now()
        self.by_vcid.pop(order.vcid, None)

    def _prevent(self, order: _Order, qty: int) -> None:
        """Self-trade prevention (``DECREMENT``) took ``qty`` off ``order``: the venue's order works that much less
        (or is withdrawn when nothing is left: ``EXPIRED_IN_MATCH``), the reservation for it is released, and the
        ``TRADE_PREVENTION`` execution report goes out."""
        venue = order.venue
        assert venue is not None
        account = order.account
        now = self._now()
        order.prevented += qty
        order.update = now
        self.next_prevented_match_id += 1
        if order.orig_qty - order.executed - order.prevented == 0:
            order.status = "EXPIRED_IN_MATCH"
            self._close(order)  # first: the venue's cancel reports below then belong to no order
            venue.cancel(
                SubmitCancel(
                    client_order_id=order.vcid, account_id=account.name, symbol=order.symbol, ts=time.time_ns()
                )
            )
        else:
            working = venue.orders.get((account.name, order.vcid))
            if working is not None:
                working.qty -= qty
            # a BUY releases the notional of what it can no longer buy (its fee reserve goes when it ends), a SELL
            # the quantity
            release = min(order.reserved, order.price * qty // SCALE if order.side == "BUY" else qty)
            row = account.balance(order.reserve_asset)
            row[1] -= release
            row[0] += release
            order.reserved -= release
            account.update_ms = now
        self._report(order, "TRADE_PREVENTION", now, prevented=qty)
        self._position(account, (order.base, order.quote), now)

    def _cancel(self, order: _Order, cancel_id: str, now: int) -> dict[str, Any]:
        venue = order.venue
        assert venue is not None
        account = order.account
        reports = venue.cancel(
            SubmitCancel(client_order_id=order.vcid, account_id=account.name, symbol=order.symbol, ts=time.time_ns())
        )
        if any(type(r) is VenueCancelRejected for r in reports):  # cannot happen: only open orders are cancelled
            raise Refusal(-2011, "Unknown order sent.")
        order.status = "CANCELED"
        order.update = now
        self._close(order)
        self._report(order, "CANCELED", now, client_id=cancel_id, original=order.client_order_id)
        self._position(account, (order.base, order.quote), now)
        return order.cancelled(cancel_id, now)

    # ------------------------------------------------------------------------------------------- user data

    def _report(
        self,
        order: _Order,
        exec_type: str,
        now: int,
        *,
        last_qty: int = 0,
        last_price: int = 0,
        fee: int = 0,
        fee_asset: str = "",
        trade_id: int = -1,
        maker: bool = False,
        client_id: str | None = None,
        original: str = "",
        prevented: int = 0,
    ) -> None:
        exec_id = self.next_exec_id
        self.next_exec_id += 1
        by_quote = bool(order.quote_qty) and order.type == "MARKET"
        trade = exec_type == "TRADE"
        event: dict[str, Any] = {
            "e": "executionReport",
            "E": now,
            "s": order.symbol,
            "c": client_id or order.client_order_id,
            "S": order.side,
            "o": order.type,
            "f": order.tif,
            "q": _fmt(0 if by_quote else order.orig_qty),
            "p": _fmt(order.price),
            "P": _fmt(0),
            "F": _fmt(0),
            "g": -1,
            "C": original,
            "x": exec_type,
            "X": order.status,
            "r": "NONE",
            "i": order.order_id,
            "l": _fmt(last_qty),
            "z": _fmt(order.executed),
            "L": _fmt(last_price),
            "n": _fmt(fee) if trade else "0",
            "N": (fee_asset or order.quote) if trade else None,
            "T": now,
            "t": trade_id,
            "I": exec_id,
            "w": order.on_book,
            "m": maker,
            "M": False,
            "O": order.time,
            "Z": _fmt(order.cum_quote),
            "Y": _fmt(last_price * last_qty // SCALE),
            "Q": _fmt(order.quote_qty),
        }
        if order.on_book:
            event["W"] = order.time
        event["V"] = "NONE"
        if order.prevented:  # self-trade prevention: the order's cumulative prevented quantity
            event["A"] = _fmt(order.prevented)
        if exec_type == "TRADE_PREVENTION":
            event.update(
                V="DECREMENT",
                v=self.next_prevented_match_id,
                B=_fmt(prevented),
                pl=_fmt(prevented),
                pL=_fmt(order.price),
                pY=_fmt(order.price * prevented // SCALE),
            )
        if order.expiry is not None:
            event["eR"] = order.expiry
        self._send_report(order.account, event)

    def _send_report(self, account: _Account, event: dict[str, Any]) -> None:
        """An execution report through the report faults: dropped, doubled, or held for the account's next one."""
        faulty = self._faulty
        if faulty.misses > 0:
            faulty.misses -= 1
            self.faults._count("miss_report")
            return
        if faulty.corruptions and faulty.corruptions[0][0] == event.get("x"):
            _, field, value = faulty.corruptions.pop(0)
            event = {**event, field: value}
            self.faults._count("corrupt_report")
        held = faulty.held
        if held is None and faulty.reorders > 0:
            faulty.reorders -= 1
            self.faults._count("reorder_reports")
            faulty.held = (account, event)
            return
        times = 1
        if faulty.duplicates > 0:
            faulty.duplicates -= 1
            self.faults._count("duplicate_reports")
            times = 2
        for _ in range(times):
            self._deliver(account, event)
        if held is not None and held[0] is account:
            faulty.held = None
            self._deliver(account, held[1])

    def _position(self, account: _Account, assets: Iterable[str], now: int) -> None:
        rows = []
        for asset in dict.fromkeys(assets):
            free, locked = account.balance(asset)
            rows.append({"a": asset, "f": _fmt(free), "l": _fmt(locked)})
        self._deliver(account, {"e": "outboundAccountPosition", "E": now, "u": account.update_ms, "B": rows})

    def _deliver(self, account: _Account, event: dict[str, Any]) -> None:
        subs = self.subscribers.get(account.api_key)
        if not subs:
            return
        deferred = self._deferred
        for conn, sub_id in list(subs):
            frame = orjson.dumps({"subscriptionId": sub_id, "event": event}).decode()
            if deferred is not None:
                deferred.append((conn, frame))
            else:
                conn.push(frame)

    def _subscribe(self, conn: _ApiConn, account: _Account) -> int:
        if any(a is account for a in conn.subs.values()):
            raise Refusal(-2035, "User Data Stream subscription already active.")
        if conn.next_sub >= 65_535:
            raise Refusal(-2042, "Maximum subscription ID reached for this connection.")
        sub_id = conn.next_sub
        conn.next_sub += 1
        conn.subs[sub_id] = account
        self.subscribers.setdefault(account.api_key, {})[(conn, sub_id)] = None
        return sub_id

    def _end_subscription(self, conn: _ApiConn, sub_id: int, *, notify: bool) -> None:
        account = conn.subs.pop(sub_id, None)
        if account is None:
            return
        subs = self.subscribers.get(account.api_key)
        if subs is not None:
            subs.pop((conn, sub_id), None)
        if notify:
            event = {"e": "eventStreamTerminated", "E": self._now()}
            frame = orjson.dumps({"subscriptionId": sub_id, "event": event}).decode()
            if self._deferred is not None:
                self._deferred.append((conn, frame))
            else:
                conn.push(frame)

    def _terminate(self, api_key: str | None, counter: str) -> int:
        ended = 0
        for conn in list(self.conns):
            for sub_id, account in list(conn.subs.items()):
                if api_key is None or account.api_key == api_key:
                    self._end_subscription(conn, sub_id, notify=True)
                    ended += 1
        self.faults._count(counter, ended)
        return ended

    def _ws_shutdown(self, close_after: float | None) -> int:
        conns = [conn for conn in self.conns if not conn.closed]
        frame = orjson.dumps({"event": {"e": "serverShutdown", "E": self._now()}}).decode()
        for conn in conns:
            conn.push(frame)
            if close_after is not None:
                loop = asyncio.get_running_loop()
                loop.call_later(close_after, conn.push, 1001)
        self.faults._count("ws_server_shutdown", len(conns))
        return len(conns)

    def close_connections(self) -> None:
        """Abort every WebSocket API connection (the server stops listening)."""
        for conn in list(self.conns):
            conn.abort()
            self._drop_conn(conn)
            if conn.writer is not None:
                conn.writer.cancel()

    def _drop_conn(self, conn: _ApiConn) -> None:
        for sub_id in list(conn.subs):
            self._end_subscription(conn, sub_id, notify=False)
        self.conns.discard(conn)

    # ----------------------------------------------------------------------------------------- rate limits

    def admit_market(self, weight: int) -> tuple[Refusal | None, dict[str, str]]:
        """A market data REST request: refused only while an IP ban runs (or it starts one, inside a 429's
        ``Retry-After``); its weight counts. Returns the refusal and the weight headers."""
        now = _now_ms()
        try:
            self._admit(now, weight, trading=False)
            refusal = None
        except Refusal as exc:
            refusal = exc
        return refusal, self._weight_headers(now)

    def _admit(self, now: int, weight: int, *, trading: bool) -> None:
        """Rate limits of one request, in Binance's order: a running ban, an injected fault (trading requests), a
        request inside a 429's ``Retry-After`` (starts a ban), then the weight (trading requests only)."""
        limits = self.limits
        counts = self.faults
        if now < limits.announced_until:
            counts._count("early_requests")
        if now < limits.banned_until:
            counts._count("requests_during_ban")
            raise self._banned(now)
        faulty = self._faulty
        if trading and faulty.rate_limited > 0:
            faulty.rate_limited -= 1
            counts._count("rate_limit")
            until = now + faulty.retry_after * 1000
            limits.announced_until = max(limits.announced_until, until)
            if faulty.rate_status == 418:
                limits.banned_until = until
                raise self._banned(now)
            limits.warned_until = until
            refusal = Refusal(-1003, self._weight_msg(), 429, faulty.retry_after)
            refusal.retry_until = until
            raise refusal
        if now < limits.warned_until:
            counts._count("ip_ban")
            limits.banned_until = now + limits.ban_seconds * 1000
            limits.announced_until = max(limits.announced_until, limits.banned_until)
            raise self._banned(now)
        limits.add_weight(now, weight)
        if not trading:
            return
        for limit, count in limits.weight_rows(now):
            if count > limit.limit:
                counts._count("too_many_requests")
                end = limits.window_end(limit, now)
                limits.warned_until = end
                limits.announced_until = max(limits.announced_until, end)
                refusal = Refusal(-1003, self._weight_msg(limit), 429, ceil_div(end - now, 1000))
                refusal.retry_until = end
                raise refusal

    def _weight_msg(self, limit: _Limit | None = None) -> str:
        if limit is None:
            limit = self.limits.weights[0] if self.limits.weights else _Limit(_DEFAULT_LIMITS[0])
        return (
            f"Too much request weight used; current limit is {limit.limit} request weight per {limit.num} "
            f"{limit.interval}. Please use WebSocket Streams for live updates to avoid polling the API."
        )

    def _banned(self, now: int) -> Refusal:
        until = self.limits.banned_until
        refusal = Refusal(
            -1003,
            f"Way too much request weight used; IP banned until {until}. "
            "Please use WebSocket Streams for live updates to avoid bans.",
            418,
            max(1, ceil_div(until - now, 1000)),
        )
        refusal.retry_until = until
        return refusal

    def _weight_headers(self, now: int) -> dict[str, str]:
        return {f"X-MBX-USED-WEIGHT-{limit.label}": str(count) for limit, count in self.limits.weight_rows(now)}

    def _rate_rows(self, now: int, account: _Account | None) -> list[dict[str, Any]]:
        rows = []
        if account is not None:
            rows = [limit.row(count) for limit, count in self.limits.order_rows(account.api_key, now)]
        return rows + [limit.row(count) for limit, count in self.limits.weight_rows(now)]

    # ----------------------------------------------------------------------------------------- security

    def _signed(self, account: _Account, params: _Params, valid_signature: Callable[[], bool]) -> None:
        """Binance's checks of a SIGNED request after the key: mandatory params, signature, then timing."""
        stamp = params.get("timestamp")
        if not stamp:
            raise _mandatory("timestamp")
        if not params.get("signature"):
            raise _mandatory("signature")
        if _INT.match(stamp) is None:
            raise Refusal(-1100, "Illegal characters found in parameter 'timestamp'; legal range is '^[0-9]{1,20}$'.")
        window_text = params.get("recvWindow")
        window = float(DEFAULT_RECV_WINDOW_MS)
        if window_text is not None:
            if re.match(r"^[0-9]{1,20}(\.[0-9]{1,3})?$", window_text) is None:
                raise Refusal(-1130, "Data sent for parameter 'recvWindow' is not valid.")
            window = float(window_text)
            if window > MAX_RECV_WINDOW_MS:
                raise Refusal(-1130, "Data sent for parameter 'recvWindow' is not valid.")
        if not valid_signature():
            raise Refusal(-1022, "Signature for this request is not valid.")
        faulty = self._faulty
        if faulty.timestamp_errors > 0:
            faulty.timestamp_errors -= 1
            self.faults._count("timestamp_error")
            raise Refusal(-1021, "Timestamp for this request is outside of the recvWindow.")
        timestamp = int(stamp)
        if timestamp >= 10**14:  # microseconds
            timestamp //= 1000
        server_ms = self._now()
        if timestamp >= server_ms + 1000:
            raise Refusal(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if server_ms - timestamp > window:
            raise Refusal(-1021, "Timestamp for this request is outside of the recvWindow.")

    def _key(self, api_key: str | None) -> _Account:
        if not api_key:
            raise Refusal(-2014, "API-key format invalid.", 401)
        account = self.accounts.get(api_key)
        if account is None:
            raise Refusal(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return account

    # -------------------------------------------------------------------------------------- the endpoints

    def _lookup(self, account: _Account, params: _Params, missing: Refusal) -> _Order:
        symbol = self._symbol(params)
        order_id_text = params.get("orderId")
        client_id = params.get("origClientOrderId")
        if not order_id_text and not client_id:
            raise Refusal(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        if order_id_text:
            if _INT.match(order_id_text) is None:
                raise Refusal(-1100, "Illegal characters found in parameter 'orderId'; legal range is '^[0-9]{1,20}$'.")
            order = self.orders_by_id.get(int(order_id_text))
            if (
                order is None
                or order.account is not account
                or order.symbol != symbol
                or (client_id and order.client_order_id != client_id)
            ):
                raise missing
            return order
        for order in reversed(self.account_orders[account.api_key]):
            if order.symbol == symbol and order.client_order_id == client_id:
                return order
        raise missing

    def new_order(self, account: _Account, params: _Params) -> Any:
        faulty = self._faulty
        if faulty.losses > 0:
            faulty.losses -= 1
            self.faults._count("lose_order_request")
            raise _Dropped
        order = self._place(account, params)
        if faulty.drops > 0:
            faulty.drops -= 1
            self.faults._count("drop_before_answer")
            raise _Dropped
        if faulty.timeouts > 0:
            faulty.timeouts -= 1
            self.faults._count("timeout_after_placing")
            raise Refusal(-1007, _TIMEOUT_MSG, 503)
        now = self._now()
        resp = params.get("newOrderRespType") or ("FULL" if order.type in ("LIMIT", "MARKET") else "ACK")
        if resp == "ACK":
            return order.ack(now)
        if resp == "RESULT":
            return order.result(now)
        return order.full(now)

    def test_order(self, account: _Account, params: _Params) -> Any:
        spec = self._spec(params)
        self._validate(account, spec)
        compute = params.get("computeCommissionRates")
        if compute not in (None, "true", "false"):
            raise Refusal(-1130, "Data sent for parameter 'computeCommissionRates' is not valid.")
        if compute != "true":
            return {}
        zero = {"maker": _fmt(0), "taker": _fmt(0)}
        return {
            "standardCommissionForOrder": {"maker": _fmt(account.maker), "taker": _fmt(account.taker)},
            "specialCommissionForOrder": dict(zero),
            "taxCommissionForOrder": dict(zero),
            "discount": {
                "enabledForAccount": False,
                "enabledForSymbol": False,
                "discountAsset": "BNB",
                "discount": _fmt(0),
            },
        }

    def cancel_order(self, account: _Account, params: _Params) -> Any:
        restriction = params.get("cancelRestrictions")
        if restriction is not None and restriction not in ("ONLY_NEW", "ONLY_PARTIALLY_FILLED"):
            raise Refusal(-1145, "Invalid cancelRestrictions")
        cancel_id = params.get("newClientOrderId")
        if cancel_id is not None and _CLIENT_ID.match(cancel_id) is None:
            raise Refusal(
                -1100, f"Illegal characters found in parameter 'newClientOrderId'; legal range is '{_CLIENT_ID_RANGE}'."
            )
        unknown = Refusal(-2011, "Unknown order sent.")
        order = self._lookup(account, params, unknown)
        if not order.open:
            raise unknown
        if (restriction == "ONLY_NEW" and order.status != "NEW") or (
            restriction == "ONLY_PARTIALLY_FILLED" and order.status != "PARTIALLY_FILLED"
        ):
            raise Refusal(-2011, "Order was not canceled due to cancel restrictions.")
        return self._cancel(order, cancel_id or self._client_id(), self._now())

    def query_order(self, account: _Account, params: _Params) -> Any:
        return self._lookup(account, params, Refusal(-2013, "Order does not exist.")).query()

    def open_orders(self, account: _Account, params: _Params) -> Any:
        symbol = self._symbol(params, required=False) or None
        return [order.query() for order in self._open_orders(account, symbol)]

    def cancel_all(self, account: _Account, params: _Params) -> Any:
        symbol = self._symbol(params)
        orders = self._open_orders(account, symbol)
        if not orders:
            raise Refusal(-2011, "Unknown order sent.")
        cancel_id = self._client_id()
        now = self._now()
        return [self._cancel(order, cancel_id, now) for order in orders]

    def my_trades(self, account: _Account, params: _Params) -> Any:
        symbol = self._symbol(params)
        values: dict[str, int | None] = {}
        for name in ("orderId", "fromId", "startTime", "endTime", "limit"):
            text = params.get(name)
            if text is not None and _INT.match(text) is None:
                raise Refusal(
                    -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
                )
            values[name] = int(text) if text is not None else None
        limit = values["limit"] or 500
        if limit < 1:
            raise Refusal(-1130, "Data sent for parameter 'limit' is not valid.")
        limit = min(limit, 1000)
        start, end, from_id = values["startTime"], values["endTime"], values["fromId"]
        timed = start is not None or end is not None
        if timed and (from_id is not None or values["orderId"] is not None):
            raise Refusal(-1128, "Combination of optional parameters invalid.")
        if start is not None and end is not None:
            if start > end:
                raise Refusal(-1023, "Start time is greater than end time.")
            if end - start > 86_400_000:
                raise Refusal(-1127, "More than 24 hours between startTime and endTime.")
        rows = [r for r in self.account_trades[account.api_key] if r["symbol"] == symbol]
        if values["orderId"] is not None:
            rows = [r for r in rows if r["orderId"] == values["orderId"]]
        if from_id is not None:
            return [r for r in rows if r["id"] >= from_id][:limit]
        if start is not None or end is not None:
            rows = [r for r in rows if (start is None or r["time"] >= start) and (end is None or r["time"] <= end)]
            return rows[:limit] if start is not None else rows[-limit:]
        return rows[-limit:]

    def account_info(self, account: _Account, params: _Params) -> Any:
        omit = params.get("omitZeroBalances")
        if omit not in (None, "true", "false"):
            raise Refusal(-1130, "Data sent for parameter 'omitZeroBalances' is not valid.")
        balances = [
            {"asset": asset, "free": _fmt(free), "locked": _fmt(locked)}
            for asset, (free, locked) in account.balances.items()
            if omit != "true" or free or locked
        ]
        return {
            "makerCommission": account.maker // 10_000,
            "takerCommission": account.taker // 10_000,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": _fmt(account.maker),
                "taker": _fmt(account.taker),
                "buyer": _fmt(0),
                "seller": _fmt(0),
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": account.update_ms,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": account.uid,
        }

    # -------------------------------------------------------------------------------------------------- REST

    def install(self, app: web.Application) -> None:
        """Add the SIGNED REST endpoints and the WebSocket API to the server's application."""
        routes = app.router
        for method, path, handler, weight, placing in (
            ("POST", "/api/v3/order", self.new_order, _fixed(1), True),
            ("POST", "/api/v3/order/test", self.test_order, _test_weight, False),
            ("DELETE", "/api/v3/order", self.cancel_order, _fixed(1), False),
            ("GET", "/api/v3/order", self.query_order, _fixed(4), False),
            ("GET", "/api/v3/openOrders", self.open_orders, _open_orders_weight, False),
            ("DELETE", "/api/v3/openOrders", self.cancel_all, _fixed(1), False),
            ("GET", "/api/v3/myTrades", self.my_trades, _trades_weight, False),
            ("GET", "/api/v3/account", self.account_info, _fixed(20), False),
        ):
            routes.add_route(method, path, self._rest_handler(handler, weight, placing))
        routes.add_get("/ws-api/v3", self._ws_api)

    def _rest_handler(
        self, handler: _Handler, weight: Callable[[_Params], int], placing: bool
    ) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            delay = self._slow_delay() if placing else 0.0
            if delay:
                await asyncio.sleep(delay)
            raw_query = request.raw_path.partition("?")[2]
            body = await request.text() if request.body_exists else ""
            params: _Params = {}
            for text in (raw_query, body):  # the query string wins over the body
                for name, value in parse_qsl(text, keep_blank_values=True):
                    params.setdefault(name, value)
            now = _now_ms()
            account: _Account | None = None
            headers: dict[str, str] = {}
            try:
                self._admit(now, weight(params), trading=True)
                account = self._key(request.headers.get("X-MBX-APIKEY"))
                chosen = account
                self._signed(chosen, params, lambda: chosen.verifier.verify_query(raw_query, body))
                body_out = handler(account, params)
                status = 200
                if placing:
                    headers.update(self._order_headers(account, now))
            except _Dropped:
                if request.transport is not None:
                    request.transport.abort()  # the answer written below goes nowhere
                return web.Response(status=500)
            except Refusal as refusal:
                body_out = {"code": refusal.code, "msg": refusal.msg}
                status = refusal.status
                if refusal.retry_after is not None:
                    headers["Retry-After"] = str(refusal.retry_after)
            except Exception:  # a bug of this server: Binance's answer to an internal error, and the traceback
                _log.exception("binance test server: %s %s failed", request.method, request.path)
                body_out, status = {"code": -1000, "msg": _UNKNOWN_MSG}, 500
            headers.update(self._weight_headers(now))
            response = web.Response(body=orjson.dumps(body_out), status=status, content_type="application/json")
            response.headers.update(headers)
            return response

        return handle

    def _order_headers(self, account: _Account, now: int) -> dict[str, str]:
        return {
            f"X-MBX-ORDER-COUNT-{limit.label}": str(count)
            for limit, count in self.limits.order_rows(account.api_key, now)
        }

    # --------------------------------------------------------------------------------------- WebSocket API

    async def _ws_api(self, request: web.Request) -> web.StreamResponse:
        now = _now_ms()
        try:
            self._admit(now, 2, trading=False)  # connecting costs 2 weight
        except Refusal as refusal:
            response = web.Response(
                body=orjson.dumps({"code": refusal.code, "msg": refusal.msg}),
                status=refusal.status,
                content_type="application/json",
            )
            response.headers["Retry-After"] = str(refusal.retry_after)
            return response
        # pings every ping_interval s (aiohttp's heartbeat: a connection that does not pong within half of it is closed)
        ws = web.WebSocketResponse(autoping=True, heartbeat=self.server.ping_interval, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = _ApiConn(ws, request.transport, request.query.get("returnRateLimits", "true") != "false")
        self.conns.add(conn)
        conn.writer = asyncio.get_running_loop().create_task(conn.write_loop())
        try:
            while not conn.closed:
                msg = await ws.receive()
                if msg.type is WSMsgType.TEXT:
                    self._ws_request(conn, msg.data)
                elif msg.type is WSMsgType.BINARY:
                    self._ws_answer(conn, None, Refusal(-1135, "Invalid JSON Request"), None, None)
                else:
                    break
        except Exception:
            pass
        finally:
            self._drop_conn(conn)
            conn.closed = True
            conn.wake.set()
            writer = conn.writer
            if writer is not None and not writer.done():
                await asyncio.wait({writer}, timeout=2.0)
                writer.cancel()
        return ws

    def _slow_delay(self) -> float:
        """The delay of the ``slow_orders`` fault for this order placement (0: none), counted once taken."""
        faulty = self._faulty
        if faulty.slow <= 0:
            return 0.0
        faulty.slow -= 1
        self.faults._count("slow_orders")
        return faulty.slow_seconds

    def _ws_request(self, conn: _ApiConn, text: str, *, delayed: bool = False) -> None:
        """One WebSocket API request, answered on the connection; its user data events follow the answer."""
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._ws_answer(conn, None, Refusal(-1135, "Invalid JSON Request"), None, None)
            return
        if not isinstance(request, dict):
            self._ws_answer(conn, None, Refusal(-1135, "Invalid JSON Request"), None, None)
            return
        request_id = request.get("id")
        if not (
            (type(request_id) is int and -(2**63) <= request_id < 2**63)
            or (type(request_id) is str and _WS_ID.match(request_id) is not None)
            or request_id is None
        ):
            self._ws_answer(conn, None, Refusal(-1100, "Illegal characters found in parameter 'id'."), None, None)
            return
        method = request.get("method")
        raw_params = request.get("params", {})
        if type(method) is not str or not method:
            self._ws_answer(conn, request_id, _mandatory("method"), None, None)
            return
        method = method.removeprefix("v3/")
        delay = self._slow_delay() if method == "order.place" and not delayed else 0.0
        if delay:
            asyncio.get_running_loop().call_later(delay, lambda: self._ws_request(conn, text, delayed=True))
            return
        if not isinstance(raw_params, dict):
            self._ws_answer(conn, request_id, Refusal(-1130, "Data sent for parameter 'params' is not valid."))
            return
        return_limits = raw_params.get("returnRateLimits")
        show_limits = conn.rate_limits if type(return_limits) is not bool else return_limits
        if method.startswith(("userDataStream.", "session.")):
            show_limits = False  # the docs' answers to the subscription methods carry no rateLimits
        params = {k: _param_text(v) for k, v in raw_params.items() if k != "returnRateLimits" and v is not None}
        spec = _WS_METHODS.get(method)
        self._deferred = []
        account: _Account | None = None
        placing = False
        now = _now_ms()
        try:
            if spec is None:
                raise Refusal(-1020, "This operation is not supported.")
            weight, signed, placing = spec[0](params), spec[1], spec[2]
            self._admit(now, weight, trading=method not in ("ping", "time"))
            if signed:
                account = self._key(params.get("apiKey"))
                chosen = account
                self._signed(chosen, params, lambda: chosen.verifier.verify_ws_params(raw_params))
            result = self._ws_call(conn, method, account, params)
            self._ws_answer(conn, request_id, result, now if show_limits else None, account if placing else None)
        except _Dropped:
            conn.abort()
        except Refusal as refusal:
            self._ws_answer(conn, request_id, refusal, now if show_limits else None, None)
            if refusal.status == 418:
                conn.push(1008)  # a banned IP is disconnected
        except Exception:  # a bug of this server: Binance's answer to an internal error, and the traceback
            _log.exception("binance test server: WebSocket API %s failed", method)
            self._ws_answer(conn, request_id, Refusal(-1000, _UNKNOWN_MSG, 500), None, None)
        finally:
            deferred, self._deferred = self._deferred, None
            for target, frame in deferred or ():
                target.push(frame)

    def _ws_call(self, conn: _ApiConn, method: str, account: _Account | None, params: _Params) -> Any:
        if method == "ping":
            return {}
        if method == "time":
            return {"serverTime": self._now()}
        if method == "session.subscriptions":
            return [{"subscriptionId": sub_id} for sub_id in conn.subs]
        if method == "userDataStream.unsubscribe":
            text = params.get("subscriptionId")
            if text is None:
                for sub_id in list(conn.subs):
                    self._end_subscription(conn, sub_id, notify=True)
                return {}
            if _INT.match(text) is None:
                raise Refusal(-1100, "Illegal characters found in parameter 'subscriptionId'.")
            if int(text) not in conn.subs:
                raise Refusal(-2036, "User Data Stream subscription not active.")
            self._end_subscription(conn, int(text), notify=True)
            return {}
        assert account is not None
        if method == "userDataStream.subscribe.signature":
            return {"subscriptionId": self._subscribe(conn, account)}
        return _WS_HANDLERS[method](self, account, params)

    def _ws_answer(
        self,
        conn: _ApiConn,
        request_id: Any,
        result: Any,
        limits_at: int | None = None,
        order_account: _Account | None = None,
    ) -> None:
        answer: dict[str, Any] = {"id": request_id}
        if isinstance(result, Refusal):
            answer["status"] = result.status
            error: dict[str, Any] = {"code": result.code, "msg": result.msg}
            if result.retry_until is not None:
                error["data"] = {"serverTime": self._now(), "retryAfter": result.retry_until}
            answer["error"] = error
        else:
            answer["status"] = 200
            answer["result"] = result
        if limits_at is not None:
            answer["rateLimits"] = self._rate_rows(limits_at, order_account)
        conn.push(orjson.dumps(answer).decode())


def _mandatory(name: str) -> Refusal:
    return Refusal(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return orjson.dumps(value).decode()


def _levels(venue: PaperVenue, buy: bool) -> Iterable[tuple[int, int]]:
    """The side of the venue's book a buy (sell) takes from, best first."""
    depth = 32
    seen = 0
    while True:
        bids, asks = venue.book.depth(depth)
        levels = asks if buy else bids
        yield from levels[seen:]
        if len(levels) < depth:
            return
        seen = len(levels)
        depth *= 4


def _walk(venue: PaperVenue, buy: bool, qty: int) -> tuple[int, int]:
    """What a market order of ``qty`` takes walking the book: ``(quantity, notional)``."""
    filled = notional = 0
    for price, level_qty in _levels(venue, buy):
        take = min(level_qty, qty - filled)
        filled += take
        notional += price * take // SCALE
        if filled >= qty:
            break
    return filled, notional


def _fixed(weight: int) -> Callable[[_Params], int]:
    return lambda params: weight


def _test_weight(params: _Params) -> int:
    return 20 if params.get("computeCommissionRates") == "true" else 1


def _open_orders_weight(params: _Params) -> int:
    return 6 if params.get("symbol") else 80


def _trades_weight(params: _Params) -> int:
    return 5 if params.get("orderId") else 20


# method -> (weight, SIGNED, places an order)
_WS_METHODS: dict[str, tuple[Callable[[_Params], int], bool, bool]] = {
    "ping": (_fixed(1), False, False),
    "time": (_fixed(1), False, False),
    "session.subscriptions": (_fixed(2), False, False),
    "userDataStream.unsubscribe": (_fixed(2), False, False),
    "userDataStream.subscribe.signature": (_fixed(2), True, False),
    "order.place": (_fixed(1), True, True),
    "order.test": (_test_weight, True, False),
    "order.cancel": (_fixed(1), True, False),
    "order.status": (_fixed(4), True, False),
    "openOrders.status": (_open_orders_weight, True, False),
    "openOrders.cancelAll": (_fixed(1), True, False),
    "account.status": (_fixed(20), True, False),
    "myTrades": (_trades_weight, True, False),
}
_WS_HANDLERS: dict[str, Callable[[Trading, _Account, _Params], Any]] = {
    "order.place": Trading.new_order,
    "order.test": Trading.test_order,
    "order.cancel": Trading.cancel_order,
    "order.status": Trading.query_order,
    "openOrders.status": Trading.open_orders,
    "openOrders.cancelAll": Trading.cancel_all,
    "account.status": Trading.account_info,
    "myTrades": Trading.my_trades,
}
