"""Binance user data and trading answers -> the kernel's execution reports: the account side of the anti-corruption
layer (``official-spot-docs/user-data-stream.md``, ``rest-api.md`` / ``web-socket-api.md`` order responses).

Same rules as :mod:`.schemas`: every price, quantity and commission is parsed exactly into 1e-8 units, every ms time
becomes ns, and a payload that cannot become a message raises :class:`~veloz_actors.DataError` naming the payload kind
and the field. Reports carry the venue name (``"BINANCE"`` unless given) and the account id the caller passes in: one
API key is one Binance account, which the engine maps to one of its accounts.

**User data stream** (:func:`parse_user_event`; bare, in the WebSocket API's ``{"subscriptionId", "event"}`` envelope,
or in a combined-stream ``{"stream", "data"}`` envelope):

* ``executionReport`` (:func:`parse_execution_report`), by execution type ``x``:

  - ``NEW`` -> :class:`VenueOrderAccepted` (``c`` is the order's client id, ``i`` the venue's order id);
  - ``TRADE`` -> :class:`VenueOrderFilled`: trade id ``t``, price ``L``, quantity ``l``, commission ``n`` in ``N``,
    ``m`` (maker side) -> ``liquidity``, ``leaves_qty`` = ``q - z - A`` while the order works (``A``: the quantity
    self-trade prevention took off it, ``stp_faq.md``) and 0 once its status ``X`` is final (an order sized by quote
    amount: ``FILLED``; one that ``EXPIRED`` with the book exhausted is closed by its expiry). An order sized by quote
    amount (``Q``) whose ``q`` Binance leaves at 0 has no base quantity left to state: while it still works,
    ``leaves_qty`` is the unspent quote at the last price (at least 1 unit), an estimate that is only ever compared
    with 0;
  - ``CANCELED`` -> :class:`VenueOrderCancelled`; the client id is ``C`` ("the ID of the order being canceled") when
    set, since ``c`` is then the cancel request's own id, else ``c``;
  - ``TRADE_PREVENTION`` while the status ``X`` is not final (``NEW`` / ``PARTIALLY_FILLED``: STP modes
    ``DECREMENT`` and ``TRANSFER`` take the prevented quantity off an order that keeps working, ``stp_faq.md``
    Scenario G) -> nothing (None): the order works on, with less quantity left;
  - ``EXPIRED``, and ``TRADE_PREVENTION`` with a final ``X`` -> :class:`VenueOrderExpired`, the reason from (in order)
    self-trade prevention
    (``X`` = ``EXPIRED_IN_MATCH`` or ``x`` = ``TRADE_PREVENTION``: ``SELF_TRADE_PREVENTED``), a ``LIMIT_MAKER`` (post-only)
    order (``WOULD_TAKE_LIQUIDITY``), the expiry reason ``eR`` (``UNFILLED_IOC_QUANTITY_EXPIRED`` -> ``IOC_UNFILLED``,
    ``UNFILLED_FOK_ORDER_EXPIRED`` -> ``FOK_NOT_FILLABLE``, ``INSUFFICIENT_LIQUIDITY`` -> ``NO_LIQUIDITY``,
    ``EXECUTION_RULE_PRICE_RANGE_EXCEEDED`` -> ``PRICE_BAND``), then the time in force ``f`` (``IOC``, ``FOK``) or
    order type (``MARKET`` -> ``NO_LIQUIDITY``); anything else (``EXCHANGE_CANCELED``, order-list reasons) is
    ``VENUE_REJECTED``;
  - ``REJECTED`` -> :class:`VenueOrderRejected` with reason from ``r`` (``INSUFFICIENT_BALANCES`` ->
    ``INSUFFICIENT_FUNDS``, ``WOULD_MATCH_IMMEDIATELY`` -> ``WOULD_TAKE_LIQUIDITY``, else ``VENUE_REJECTED``; the
    detail names ``r``);
  - ``REPLACED`` (an amendment, which VeloZ never sends) and unknown types raise :class:`DataError`.

  ``ts`` is the transaction time ``T`` (the event time ``E`` when ``T`` is missing).
  :func:`parse_execution_reports` gives every report one event means: none, one, or a ``TRADE`` that left the order
  ``FILLED`` short of its quantity because self-trade prevention took the rest (``A`` > 0) followed by its expiry
  (``SELF_TRADE_PREVENTED``), since the kernel closes an order by quantity only when every unit is filled.
* ``outboundAccountPosition`` -> one :class:`VenueBalance` per asset (``ts`` = ``u``, the time of the account update;
  a row that cannot be read, 10**10 units or more of a token, can be left out and said while the others are kept);
* ``balanceUpdate`` -> :class:`VenueBalanceDelta` (``ts`` = ``T``, the clear time);
* ``eventStreamTerminated``, ``listenKeyExpired`` (the retired listen-key streams) and ``serverShutdown`` ->
  :class:`StreamTerminated`: the subscription (or the connection) is over, subscribe again;
* ``listStatus`` and ``externalLockUpdate`` are recognised and produce nothing (VeloZ places no order lists; an
  external lock shows in the next ``outboundAccountPosition``).

**Trading answers** (the REST response body, or the WebSocket API response's ``result``):

* :func:`parse_order_response` (``POST /api/v3/order``, ``order.place``): ``ACK`` -> accepted; ``RESULT`` / ``FULL``
  -> accepted, each of ``fills`` (taker fills: what an order trades on arrival takes liquidity; ``leaves_qty`` as
  above) and, when the order ended (``EXPIRED``, ``EXPIRED_IN_MATCH``, ``CANCELED``) and every executed unit is in
  ``fills``, its expiry or cancel. With fewer fills than ``executedQty`` (a ``RESULT`` answer) the end is left to the
  user data stream, so the kernel never closes an order before it has booked its fills. The same fills and ends come
  again from the user data stream; the kernel books each once.
* :func:`parse_cancel_response` (``DELETE /api/v3/order``, ``order.cancel``) -> :class:`VenueOrderCancelled` for
  ``origClientOrderId``. The order's fills before the cancel (``executedQty`` > 0) must reach the kernel first: they
  come from the user data stream (or ``myTrades``).
* :func:`parse_order_state` / :func:`parse_open_orders` (``GET /api/v3/order``, ``openOrders``, ``order.status``,
  and the cancel answer) -> :class:`OrderState`, whose :meth:`OrderState.report` settles an order whose outcome was
  unknown (fills come from ``myTrades``, never from ``executedQty``).
* :func:`parse_my_trades` (``GET /api/v3/myTrades``, ``myTrades``) -> :class:`AccountTrade`, which becomes a fill with
  :meth:`AccountTrade.to_report` (the row names the venue's order id, not the client's).
* :func:`parse_account_balances` (``GET /api/v3/account``, ``account.status``) -> :class:`VenueBalance` per asset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..._exceptions import DataError
from ...fixed import SCALE
from ...messages import (
    Liquidity,
    OrderStatus,
    RejectReason,
    Side,
    VenueBalance,
    VenueBalanceDelta,
    VenueOrderAccepted,
    VenueOrderCancelled,
    VenueOrderExpired,
    VenueOrderFilled,
    VenueOrderRejected,
)
from .schemas import _bool, _dec, _field, _int, _loads, _ms, _preview, _str, unwrap

__all__ = [
    "TERMINATING_EVENT_TYPES",
    "USER_EVENT_TYPES",
    "VENUE",
    "AccountTrade",
    "OrderReport",
    "OrderState",
    "StreamTerminated",
    "UserEvent",
    "parse_account_balances",
    "parse_balance_update",
    "parse_cancel_response",
    "parse_execution_report",
    "parse_execution_reports",
    "parse_my_trades",
    "parse_open_orders",
    "parse_order_response",
    "parse_order_state",
    "parse_outbound_account_position",
    "parse_user_event",
]

VENUE = "BINANCE"

_R = RejectReason
_MS = 1_000_000

# Binance order status -> the kernel's; the final ones end an order (leaves 0)
_STATUS = {
    "NEW": OrderStatus.ACCEPTED,
    "PENDING_NEW": OrderStatus.ACCEPTED,  # an order list's pending leg: accepted, not yet working
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELLED,
    "PENDING_CANCEL": OrderStatus.PENDING_CANCEL,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}
_FINAL = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH"})
_EXPIRY_REASONS = {
    "UNFILLED_IOC_QUANTITY_EXPIRED": _R.IOC_UNFILLED,
    "UNFILLED_FOK_ORDER_EXPIRED": _R.FOK_NOT_FILLABLE,
    "INSUFFICIENT_LIQUIDITY": _R.NO_LIQUIDITY,
    "EXECUTION_RULE_PRICE_RANGE_EXCEEDED": _R.PRICE_BAND,
}
_ORDER_REJECT_REASONS = {
    "INSUFFICIENT_BALANCES": _R.INSUFFICIENT_FUNDS,
    "WOULD_MATCH_IMMEDIATELY": _R.WOULD_TAKE_LIQUIDITY,
}


@dataclass(frozen=True, slots=True)
class StreamTerminated:
    """The user data subscription ended (``eventStreamTerminated``, ``listenKeyExpired``) or the server is closing the
    connection (``serverShutdown``): subscribe again. ``ts`` is the event time (ns)."""

    event: str
    ts: int


#: the execution reports Binance's answers and events become
OrderReport = VenueOrderAccepted | VenueOrderFilled | VenueOrderCancelled | VenueOrderExpired | VenueOrderRejected
#: what one user data stream event becomes
UserEvent = OrderReport | VenueBalance | VenueBalanceDelta | StreamTerminated


# ---------------------------------------------------------------------------------------------------- helpers


def _status(data: Any, key: str, kind: str) -> str:
    value = _str(data, key, kind)
    if value not in _STATUS:
        raise DataError(f"{kind}: field {key!r} is not a Binance order status, got {value!r}")
    return value


def _side(data: Any, key: str, kind: str) -> Side:
    value = _str(data, key, kind)
    if value == "BUY":
        return Side.BUY
    if value == "SELL":
        return Side.SELL
    raise DataError(f"{kind}: field {key!r} must be BUY or SELL, got {value!r}")


def _id(data: Any, key: str, kind: str) -> str:
    value = _int(data, key, kind)
    if value < 0:
        raise DataError(f"{kind}: field {key!r} must be a non-negative id, got {value}")
    return str(value)


def _optional_text(data: Any, key: str, kind: str, *, none_word: bool = False) -> str | None:
    """A string field that may be absent, null or empty (and, for an enum with ``none_word``, ``"NONE"``)."""
    value = data.get(key)
    if value is None or value == "" or (none_word and value == "NONE"):
        return None
    if type(value) is not str:
        raise DataError(f"{kind}: field {key!r} must be a string, got {value!r}")
    return value


def _fee(data: Any, amount_key: str, asset_key: str, kind: str) -> tuple[int, str]:
    fee = _dec(data, amount_key, kind)
    asset = _field(data, asset_key, kind)
    if asset is None or asset == "":
        if fee:
            raise DataError(f"{kind}: commission {amount_key!r} is not zero but its asset {asset_key!r} is {asset!r}")
        return 0, ""
    if type(asset) is not str:
        raise DataError(f"{kind}: field {asset_key!r} must be an asset name, got {asset!r}")
    return fee, asset


def _leaves(orig_qty: int, cum_qty: int, final: bool, quote_left: int, last_price: int, kind: str) -> int:
    """What the order still works after a fill: 0 once final; ``orig - cum`` while it works; for an order sized by
    quote amount whose base quantity is unknown (``orig`` 0), the unspent quote at the last price, at least 1."""
    if final:
        return 0
    if orig_qty:
        if cum_qty > orig_qty:
            raise DataError(f"{kind}: filled quantity {cum_qty} exceeds the order quantity {orig_qty} (1e-8 units)")
        if cum_qty < orig_qty:
            return orig_qty - cum_qty
    if quote_left > 0 and last_price > 0:
        return max(1, quote_left * SCALE // last_price)
    return 1


def _expiry(status: str, exec_type: str, order_type: str, tif: str, expiry: str | None) -> RejectReason:
    if status == "EXPIRED_IN_MATCH" or exec_type == "TRADE_PREVENTION":
        return _R.SELF_TRADE_PREVENTED
    if order_type == "LIMIT_MAKER" and expiry != "EXCHANGE_CANCELED":
        return _R.WOULD_TAKE_LIQUIDITY
    if expiry is not None:
        return _EXPIRY_REASONS.get(expiry, _R.VENUE_REJECTED)
    if tif == "IOC":
        return _R.IOC_UNFILLED
    if tif == "FOK":
        return _R.FOK_NOT_FILLABLE
    if order_type == "MARKET":
        return _R.NO_LIQUIDITY
    return _R.VENUE_REJECTED


def _ts(data: Any, kind: str) -> int:
    return _ms(data, "T" if data.get("T") is not None else "E", kind)


# ------------------------------------------------------------------------------------------------ stream events


def _prevented(data: Any, kind: str) -> int:
    """``A``: the quantity self-trade prevention took off the order over its life (0 when absent)."""
    if data.get("A") is None:
        return 0
    return _dec(data, "A", kind)


def parse_execution_report(data: dict, account_id: str, *, venue: str = VENUE) -> OrderReport | None:
    """One ``executionReport`` as the kernel's execution report (see the module docstring for the rules); None for
    a self-trade prevention that leaves the order working (``x`` ``TRADE_PREVENTION``, ``X`` not final)."""
    kind = "executionReport"
    exec_type = _str(data, "x", kind)
    status = _status(data, "X", kind)
    symbol = _str(data, "s", kind)
    ts = _ts(data, kind)
    client_order_id = _str(data, "c", kind)
    if exec_type == "NEW":
        return VenueOrderAccepted(
            venue=venue,
            client_order_id=client_order_id,
            account_id=account_id,
            symbol=symbol,
            venue_order_id=_id(data, "i", kind),
            ts=ts,
        )
    if exec_type == "TRADE":
        price = _dec(data, "L", kind, allow_zero=False)
        orig_qty = _dec(data, "q", kind)
        cum_qty = _dec(data, "z", kind)
        prevented = _prevented(data, kind)
        if orig_qty and prevented:  # what the order can still fill: q - z - A (never below what it filled)
            orig_qty = max(orig_qty - prevented, cum_qty)
        quote_left = 0
        if not orig_qty and "Q" in data:
            quote_left = _dec(data, "Q", kind) - _dec(data, "Z", kind)
        fee, fee_asset = _fee(data, "n", "N", kind)
        trade_id = _int(data, "t", kind)
        if trade_id < 0:
            raise DataError(f"{kind}: a TRADE needs its trade id 't', got {trade_id}")
        return VenueOrderFilled(
            venue=venue,
            client_order_id=client_order_id,
            account_id=account_id,
            symbol=symbol,
            venue_order_id=_id(data, "i", kind),
            trade_id=trade_id,
            price=price,
            qty=_dec(data, "l", kind, allow_zero=False),
            fee=fee,
            fee_asset=fee_asset,
            liquidity=Liquidity.MAKER if _bool(data, "m", kind) else Liquidity.TAKER,
            leaves_qty=_leaves(orig_qty, cum_qty, status in _FINAL, quote_left, price, kind),
            ts=ts,
        )
    if exec_type == "CANCELED":
        original = _optional_text(data, "C", kind)
        return VenueOrderCancelled(
            venue=venue,
            client_order_id=original or client_order_id,
            account_id=account_id,
            symbol=symbol,
            reason=_R.USER_CANCEL,
            ts=ts,
        )
    if exec_type == "TRADE_PREVENTION" and status not in _FINAL:
        return None  # DECREMENT / TRANSFER: the prevented quantity is gone, the rest keeps working
    if exec_type in ("EXPIRED", "TRADE_PREVENTION"):
        return VenueOrderExpired(
            venue=venue,
            client_order_id=client_order_id,
            account_id=account_id,
            symbol=symbol,
            reason=_expiry(
                status,
                exec_type,
                _str(data, "o", kind),
                _str(data, "f", kind),
                _optional_text(data, "eR", kind, none_word=True),
            ),
            ts=ts,
        )
    if exec_type == "REJECTED":
        why = _optional_text(data, "r", kind, none_word=True) or "NONE"
        return VenueOrderRejected(
            venue=venue,
            client_order_id=client_order_id,
            account_id=account_id,
            symbol=symbol,
            reason=_ORDER_REJECT_REASONS.get(why, _R.VENUE_REJECTED),
            detail=f"Binance reject reason {why}",
            ts=ts,
        )
    raise DataError(f"{kind}: unsupported execution type 'x' {exec_type!r}")


def parse_execution_reports(data: dict, account_id: str, *, venue: str = VENUE) -> list[OrderReport]:
    """Every report one ``executionReport`` means (see the module docstring): none for a self-trade prevention that
    leaves the order working; a fill then the order's expiry (``SELF_TRADE_PREVENTED``) when the fill left it
    ``FILLED`` with part of its quantity prevented (the kernel would otherwise wait for the rest); else the one
    report of :func:`parse_execution_report`."""
    report = parse_execution_report(data, account_id, venue=venue)
    if report is None:
        return []
    if type(report) is VenueOrderFilled and data.get("X") == "FILLED" and _prevented(data, "executionReport"):
        by_quote = not _dec(data, "q", "executionReport") and "Q" in data and _dec(data, "Q", "executionReport")
        if not by_quote:  # an order by quote amount ends with its last fill (leaves 0) already
            end = VenueOrderExpired(
                venue=venue,
                client_order_id=report.client_order_id,
                account_id=account_id,
                symbol=report.symbol,
                reason=_R.SELF_TRADE_PREVENTED,
                ts=report.ts,
            )
            return [report, end]
    return [report]


def parse_outbound_account_position(
    data: dict, account_id: str, *, venue: str = VENUE, unreadable: list[tuple[str, str]] | None = None
) -> list[VenueBalance]:
    """``outboundAccountPosition``: the balances the change touched, one :class:`VenueBalance` each. ``unreadable``
    as in :func:`parse_account_balances`: a row that cannot be read is left out and added to it."""
    kind = "outboundAccountPosition"
    ts = _ms(data, "u", kind) if "u" in data else _ms(data, "E", kind)
    return _balances(data, "B", ("a", "f", "l"), kind, account_id, venue, ts, unreadable)


def _balances(
    data: dict,
    field: str,
    keys: tuple[str, str, str],
    kind: str,
    account_id: str,
    venue: str,
    ts: int,
    unreadable: list[tuple[str, str]] | None,
) -> list[VenueBalance]:
    """The list of balance rows in ``data[field]``. With ``unreadable`` given, a row that cannot be read is left out
    and added to it as ``(asset, why)``, else it raises."""
    rows = _field(data, field, kind)
    if type(rows) is not list:
        raise DataError(f"{kind}: field '{field}' must be a list of balances, got {_preview(rows)}")
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(_balance(row, keys, f"{kind} {field}[{i}]", account_id, venue, ts))
        except DataError as exc:
            if unreadable is None:
                raise
            asset = row.get(keys[0]) if isinstance(row, dict) else None
            unreadable.append((asset[:20] if type(asset) is str and asset else f"{field}[{i}]", str(exc)))
    return out


def _balance(row: Any, keys: tuple[str, str, str], what: str, account_id: str, venue: str, ts: int) -> VenueBalance:
    """One balance row (its asset, free and locked fields named ``keys``) as a :class:`VenueBalance`."""
    asset, free, locked = keys
    return VenueBalance(
        venue=venue,
        account_id=account_id,
        asset=_str(row, asset, what),
        free=_dec(row, free, what),
        locked=_dec(row, locked, what),
        ts=ts,
    )


def parse_balance_update(data: dict, account_id: str, *, venue: str = VENUE) -> VenueBalanceDelta:
    """``balanceUpdate``: a deposit, withdrawal or transfer (signed ``d``)."""
    kind = "balanceUpdate"
    return VenueBalanceDelta(
        venue=venue,
        account_id=account_id,
        asset=_str(data, "a", kind),
        delta=_dec(data, "d", kind, allow_negative=True),
        ts=_ts(data, kind),
    )


#: the event types that end a user data subscription (or, ``serverShutdown``, the connection): a
#: :class:`StreamTerminated`, on which the venue subscribes again (or reconnects)
TERMINATING_EVENT_TYPES = frozenset({"eventStreamTerminated", "listenKeyExpired", "serverShutdown"})
_IGNORED = frozenset({"listStatus", "externalLockUpdate"})
#: every user data event type this client reads (``user-data-stream.md`` documents no other); a type outside it is one
#: Binance added since
USER_EVENT_TYPES = (
    frozenset({"executionReport", "outboundAccountPosition", "balanceUpdate"}) | TERMINATING_EVENT_TYPES | _IGNORED
)


def parse_user_event(
    raw: bytes | str | dict, account_id: str, *, venue: str = VENUE, unreadable: list[tuple[str, str]] | None = None
) -> list[UserEvent]:
    """Any user data stream event, bare or enveloped, as the messages it means (possibly none).

    Returns :class:`VenueOrderAccepted` / ``Filled`` / ``Cancelled`` / ``Expired`` / ``Rejected``,
    :class:`VenueBalance` values, a :class:`VenueBalanceDelta` or a :class:`StreamTerminated`. An unknown event type
    raises :class:`DataError` naming it. ``unreadable`` given, a balance row of ``outboundAccountPosition`` that
    cannot be read is left out and added to it (:func:`parse_account_balances`), the other rows kept.
    """
    data = _loads(raw)
    if isinstance(data, dict) and "event" in data and "e" not in data:
        data = data["event"]  # the WebSocket API: {"subscriptionId": n, "event": {...}}
    else:
        _, data = unwrap(data)
    if not isinstance(data, dict):
        raise DataError(f"user data: expected a JSON object event, got {_preview(data)}")
    event = data.get("e")
    if event == "executionReport":
        return list(parse_execution_reports(data, account_id, venue=venue))
    if event == "outboundAccountPosition":
        return list(parse_outbound_account_position(data, account_id, venue=venue, unreadable=unreadable))
    if event == "balanceUpdate":
        return [parse_balance_update(data, account_id, venue=venue)]
    if event in TERMINATING_EVENT_TYPES:
        return [StreamTerminated(event=event, ts=_ms(data, "E", event))]
    if event in _IGNORED:
        return []
    if event is None:
        raise DataError(f"user data: no event type 'e' in {_preview(data)}")
    raise DataError(f"user data: unsupported event type {event!r}")


# ------------------------------------------------------------------------------------------------ order records


@dataclass(frozen=True, slots=True)
class OrderState:
    """One order as Binance states it (an order query, an open-orders row, an order or cancel answer). Amounts in
    1e-8 units, times in ns; ``status``, ``order_type`` and ``time_in_force`` are Binance's words."""

    symbol: str
    venue_order_id: str
    client_order_id: str
    status: str
    side: Side
    order_type: str
    time_in_force: str
    price: int
    orig_qty: int
    executed_qty: int
    cum_quote_qty: int | None  # None: Binance does not know it (old orders report it negative)
    orig_quote_qty: int
    expiry_reason: str | None
    time: int
    update_time: int
    is_working: bool | None
    prevented_qty: int = 0  # ``preventedQuantity``: taken off by self-trade prevention over the order's life

    @property
    def order_status(self) -> OrderStatus:
        """The kernel's status for this order."""
        return _STATUS[self.status]

    @property
    def is_final(self) -> bool:
        return self.status in _FINAL

    @property
    def last_fill_closes(self) -> bool:
        """Whether the order's last fill closes it (``leaves_qty`` 0): it is final, unless it is an order by quote
        amount that did not end FILLED (an EXPIRED one ran out of book before its budget: its end report closes it,
        as an expiry, never its fill as FILLED)."""
        return self.is_final and (self.status == "FILLED" or not self.orig_quote_qty)

    @property
    def needs_end(self) -> bool:
        """Whether the kernel needs an end report besides the fills: the order ended not FILLED, or FILLED short of
        its quantity because self-trade prevention took the rest (an order by quantity: the kernel closes it as
        filled only once every unit is)."""
        if not self.is_final:
            return False
        return self.status != "FILLED" or (self.prevented_qty > 0 and not self.orig_quote_qty)

    def report(self, account_id: str, *, venue: str = VENUE) -> OrderReport:
        """The execution report this state implies, fills aside: accepted while it works (or once FILLED: its fills
        come from ``myTrades``), cancelled, expired or rejected once it ended."""
        common = {"venue": venue, "client_order_id": self.client_order_id, "account_id": account_id}
        ts = self.update_time
        if self.status == "CANCELED":
            return VenueOrderCancelled(**common, symbol=self.symbol, reason=_R.USER_CANCEL, ts=ts)
        if self.status in ("EXPIRED", "EXPIRED_IN_MATCH"):
            reason = _expiry(self.status, "", self.order_type, self.time_in_force, self.expiry_reason)
            return VenueOrderExpired(**common, symbol=self.symbol, reason=reason, ts=ts)
        if self.needs_end:  # FILLED, with the rest taken off by self-trade prevention
            return VenueOrderExpired(**common, symbol=self.symbol, reason=_R.SELF_TRADE_PREVENTED, ts=ts)
        if self.status == "REJECTED":
            return VenueOrderRejected(
                **common, symbol=self.symbol, reason=_R.VENUE_REJECTED, detail="Binance order status REJECTED", ts=ts
            )
        return VenueOrderAccepted(**common, symbol=self.symbol, venue_order_id=self.venue_order_id, ts=ts)


def parse_order_state(data: dict, *, kind: str = "order") -> OrderState:
    """An order record: ``GET /api/v3/order`` / ``order.status``, an ``openOrders`` row, or the order and cancel
    answers (``origClientOrderId``, when present, is the order's own client id)."""
    time_key = "time" if "time" in data else "transactTime"
    placed = _ms(data, time_key, kind)
    cum_quote_text = data.get("cummulativeQuoteQty")
    cum_quote = None
    if cum_quote_text is not None:
        cum_quote = _dec(data, "cummulativeQuoteQty", kind, allow_negative=True)
        if cum_quote < 0:
            cum_quote = None
    working = data.get("isWorking")
    if working is not None and type(working) is not bool:
        raise DataError(f"{kind}: field 'isWorking' must be true or false, got {working!r}")
    original = _optional_text(data, "origClientOrderId", kind)
    return OrderState(
        symbol=_str(data, "symbol", kind),
        venue_order_id=_id(data, "orderId", kind),
        client_order_id=original or _str(data, "clientOrderId", kind),
        status=_status(data, "status", kind),
        side=_side(data, "side", kind),
        order_type=_str(data, "type", kind),
        time_in_force=_str(data, "timeInForce", kind),
        price=_dec(data, "price", kind),
        orig_qty=_dec(data, "origQty", kind),
        executed_qty=_dec(data, "executedQty", kind),
        cum_quote_qty=cum_quote,
        orig_quote_qty=_dec(data, "origQuoteOrderQty", kind) if "origQuoteOrderQty" in data else 0,
        expiry_reason=_optional_text(data, "expiryReason", kind, none_word=True),
        time=placed,
        update_time=_ms(data, "updateTime", kind) if "updateTime" in data else placed,
        is_working=working,
        prevented_qty=_dec(data, "preventedQuantity", kind) if data.get("preventedQuantity") is not None else 0,
    )


def parse_open_orders(rows: list, *, unreadable: list[tuple[str, str]] | None = None) -> list[OrderState]:
    """``GET /api/v3/openOrders`` / ``openOrders.status``: a list of order records. With ``unreadable`` given, a
    record that cannot be read (a status Binance added, say) is left out and added to it as ``(client order id, why)``
    (the id ``""`` when it has none) instead of raising: one such order must not hide the others."""
    if type(rows) is not list:
        raise DataError(f"openOrders: expected a JSON list, got {_preview(rows)}")
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(parse_order_state(row, kind=f"openOrders[{i}]"))
        except DataError as exc:
            if unreadable is None:
                raise
            coid = row.get("clientOrderId") if isinstance(row, dict) else None
            unreadable.append((coid[:40] if type(coid) is str else "", str(exc)))
    return out


def parse_order_response(data: dict, account_id: str, *, venue: str = VENUE) -> list[OrderReport]:
    """A new order's answer (``ACK``, ``RESULT`` or ``FULL``) as reports: accepted, its fills, and its end when every
    executed unit is among the fills (see the module docstring)."""
    kind = "order response"
    symbol = _str(data, "symbol", kind)
    client_order_id = _str(data, "clientOrderId", kind)
    venue_order_id = _id(data, "orderId", kind)
    ts = _ms(data, "transactTime", kind)
    reports: list[OrderReport] = [
        VenueOrderAccepted(
            venue=venue,
            client_order_id=client_order_id,
            account_id=account_id,
            symbol=symbol,
            venue_order_id=venue_order_id,
            ts=ts,
        )
    ]
    if "status" not in data:  # ACK
        return reports
    state = parse_order_state(data, kind=kind)
    fills = data.get("fills", [])
    if type(fills) is not list:
        raise DataError(f"{kind}: field 'fills' must be a list, got {_preview(fills)}")
    cum = 0
    cum_quote = 0
    for i, fill in enumerate(fills):
        what = f"{kind} fills[{i}]"
        price = _dec(fill, "price", what, allow_zero=False)
        qty = _dec(fill, "qty", what, allow_zero=False)
        trade_id = _int(fill, "tradeId", what)
        fee, fee_asset = _fee(fill, "commission", "commissionAsset", what)
        cum += qty
        cum_quote += price * qty // SCALE
        last = i == len(fills) - 1
        reports.append(
            VenueOrderFilled(
                venue=venue,
                client_order_id=client_order_id,
                account_id=account_id,
                symbol=symbol,
                venue_order_id=venue_order_id,
                trade_id=trade_id,
                price=price,
                qty=qty,
                fee=fee,
                fee_asset=fee_asset,
                liquidity=Liquidity.TAKER,  # filled on arrival: it took liquidity
                leaves_qty=_leaves(
                    state.orig_qty,
                    cum,
                    last and state.last_fill_closes and cum == state.executed_qty,
                    state.orig_quote_qty - cum_quote,
                    price,
                    what,
                ),
                ts=ts,
            )
        )
    if cum > state.executed_qty:
        raise DataError(f"{kind}: fills add up to {cum}, more than executedQty {state.executed_qty} (1e-8 units)")
    if state.needs_end and cum == state.executed_qty:
        reports.append(state.report(account_id, venue=venue))
    return reports


def parse_cancel_response(data: dict, account_id: str, *, venue: str = VENUE) -> VenueOrderCancelled:
    """A cancel's answer (``DELETE /api/v3/order``, ``order.cancel``) for the order ``origClientOrderId``."""
    kind = "cancel response"
    status = _status(data, "status", kind)
    if status != "CANCELED":
        raise DataError(f"{kind}: field 'status' of a cancelled order must be CANCELED, got {status!r}")
    return VenueOrderCancelled(
        venue=venue,
        client_order_id=_str(data, "origClientOrderId", kind),
        account_id=account_id,
        symbol=_str(data, "symbol", kind),
        reason=_R.USER_CANCEL,
        ts=_ms(data, "transactTime", kind),
    )


# ------------------------------------------------------------------------------------------- trades, balances


@dataclass(frozen=True, slots=True)
class AccountTrade:
    """One of the account's trades (``myTrades``): amounts in 1e-8 units, ``ts`` in ns."""

    symbol: str
    trade_id: int
    venue_order_id: str
    side: Side
    price: int
    qty: int
    quote_qty: int
    fee: int
    fee_asset: str
    liquidity: Liquidity
    ts: int

    def to_report(
        self, *, client_order_id: str, account_id: str, leaves_qty: int, venue: str = VENUE
    ) -> VenueOrderFilled:
        """This trade as a fill of the kernel's order ``client_order_id`` (the caller maps ``venue_order_id`` to it
        and knows what the order still works)."""
        return VenueOrderFilled(
            venue=venue,
            client_order_id=client_order_id,
            account_id=account_id,
            symbol=self.symbol,
            venue_order_id=self.venue_order_id,
            trade_id=self.trade_id,
            price=self.price,
            qty=self.qty,
            fee=self.fee,
            fee_asset=self.fee_asset,
            liquidity=self.liquidity,
            leaves_qty=leaves_qty,
            ts=self.ts,
        )


def parse_my_trades(rows: list) -> list[AccountTrade]:
    """``GET /api/v3/myTrades`` / ``myTrades``: ``isBuyer`` -> side, ``isMaker`` -> liquidity, ``time`` -> ts."""
    if type(rows) is not list:
        raise DataError(f"myTrades: expected a JSON list, got {_preview(rows)}")
    out = []
    for i, row in enumerate(rows):
        what = f"myTrades[{i}]"
        fee, fee_asset = _fee(row, "commission", "commissionAsset", what)
        out.append(
            AccountTrade(
                symbol=_str(row, "symbol", what),
                trade_id=_int(row, "id", what),
                venue_order_id=_id(row, "orderId", what),
                side=Side.BUY if _bool(row, "isBuyer", what) else Side.SELL,
                price=_dec(row, "price", what, allow_zero=False),
                qty=_dec(row, "qty", what, allow_zero=False),
                quote_qty=_dec(row, "quoteQty", what),
                fee=fee,
                fee_asset=fee_asset,
                liquidity=Liquidity.MAKER if _bool(row, "isMaker", what) else Liquidity.TAKER,
                ts=_ms(row, "time", what),
            )
        )
    return out


def parse_account_balances(
    data: dict, account_id: str, *, venue: str = VENUE, unreadable: list[tuple[str, str]] | None = None
) -> list[VenueBalance]:
    """``GET /api/v3/account``: every listed balance as a :class:`VenueBalance` at ``updateTime``. With
    ``unreadable`` given, a balance that cannot be read (10**10 units or more of a token: beyond what a VeloZ balance
    holds) is left out and added to it as ``(asset, why)`` instead of raising: one such row must not hide the rest."""
    kind = "account"
    ts = _ms(data, "updateTime", kind)
    return _balances(data, "balances", ("asset", "free", "locked"), kind, account_id, venue, ts, unreadable)
