"""The stdio command protocol: one command per line in, one JSON object per line out.

Commands (case-insensitive keywords; quantities and prices are exact decimals)::

    ORDER <BUY|SELL> <SYMBOL> <QTY> <PRICE|MARKET> [tif=GTC|IOC|FOK|POST_ONLY] [cid=<id>]
    CANCEL <cid>
    QUERY <cid>|OPEN
    BALANCE
    POSITIONS
    STATUS
    RESET            re-arm trading after the circuit breaker tripped
    HELP
    QUIT             (or end of input) shut down cleanly, journal flushed

Output: one JSON object per line with a ``type`` among ``market``, ``order_update``, ``fill``, ``order_state``,
``account``, ``position``, ``status``, ``error``, a ``ts`` in integer nanoseconds, and prices, quantities and balances
as exact decimal strings:

- ``order_update``: cid, order_id, symbol, side, order_type, tif, price, qty, filled_qty, status, and reason/detail
  when rejected, cancelled or expired (a CANCEL_REJECTED of an order already closed has filled_qty null: QUERY
  tells it);
- ``fill``: cid, order_id, symbol, side, price, qty, fee, fee_asset, liquidity, trade_id;
- ``account``: every asset's free and locked balance; ``position``: qty, average entry, realized/unrealized PnL;
- ``order_state``: the answer to QUERY, ``{"orders": [...]}``; ``status``: the engine's health;
- ``error``: a malformed line, with ``code``, ``message`` and the offending ``line``; the engine goes on.

The protocol is the same for the single-process engine and the actor engine: :class:`Session` talks to a
:class:`Backend`, and both engines provide one.

A cid is 1-36 letters, digits and ``- _ . :``. Without ``cid=`` the session makes one, ``cli-<start>-<n>`` (its start
time in base 36, then a count), locally, with the builder every client uses (:mod:`veloz_actors.orders`).
"""

from __future__ import annotations

import shlex
from typing import Any, Protocol

import orjson

from .._exceptions import EngineStopped, EngineUnavailable, InvalidInput, JournalError, quoted
from ..fixed import format_decimal
from ..messages import (
    AccountUpdated,
    BookTop,
    CancelOrder,
    CircuitBreakerTripped,
    Error,
    Kline,
    MarkPrice,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    PlaceOrder,
    PositionUpdated,
    RejectReason,
    ResetCircuitBreaker,
    Trade,
    VenueConnection,
)
from ..orders import ClientOrderIds, build_place_order, check_client_order_id, parse_amount

__all__ = ["HELP", "Backend", "EventFormatter", "Session", "closes_order", "parse_command", "unavailable"]

MAX_LINE = 4096  # bytes of one protocol line (UTF-8)

HELP = __doc__.split("Commands (case-insensitive keywords; quantities and prices are exact decimals)::")[1].split(
    "Output:"
)[0]


class Backend(Protocol):
    """What a session needs from an engine (single-process or actors)."""

    def submit(self, command: Any) -> list[Any]: ...
    def query(self, client_order_id: str | None) -> list[dict[str, Any]]: ...
    def balances(self) -> dict[str, tuple[int, int]]: ...
    def positions(self) -> list[Any]: ...
    def status(self) -> dict[str, Any]: ...


def parse_command(
    line: str,
    *,
    symbols: frozenset[str] | set[str],
    ts: int,
    account_id: str = "main",
    ids: ClientOrderIds | None = None,
) -> Any:
    """Turn one protocol line into a command message, or a (keyword, argument) request for queries.

    An ORDER without ``cid=`` takes its client order id from ``ids``. Raises :class:`InvalidInput` naming what is
    wrong.
    """
    # shlex takes time quadratic in a word's length: a long line never reaches it
    if len(line) > MAX_LINE or (not line.isascii() and len(line.encode("utf-8", "replace")) > MAX_LINE):
        raise InvalidInput(f"a line longer than {MAX_LINE:,} bytes; a command is at most that")
    if "\ufffd" in line:
        raise InvalidInput("the line is not valid UTF-8 (its unreadable bytes are shown as \ufffd)")
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise InvalidInput(f"cannot parse line: {exc}") from exc
    if not words:
        raise InvalidInput("empty command")
    keyword = words[0].upper()
    args = words[1:]
    if keyword == "ORDER":
        return _parse_order(args, symbols=symbols, ts=ts, account_id=account_id, ids=ids)
    if keyword == "CANCEL":
        if len(args) != 1:
            raise InvalidInput("usage: CANCEL <cid>")
        return CancelOrder(client_order_id=check_client_order_id(args[0]), account_id=account_id, ts=ts)
    if keyword == "QUERY":
        if len(args) != 1:
            raise InvalidInput("usage: QUERY <cid>|OPEN")
        return ("QUERY", None if args[0].upper() == "OPEN" else check_client_order_id(args[0]))
    if keyword == "RESET":
        if args:
            raise InvalidInput("RESET takes no arguments")
        return ResetCircuitBreaker(account_id=account_id, ts=ts)
    if keyword in ("BALANCE", "POSITIONS", "STATUS", "QUIT", "EXIT", "HELP"):
        if args:
            raise InvalidInput(f"{keyword} takes no arguments")
        return ("QUIT" if keyword == "EXIT" else keyword, None)
    raise InvalidInput(
        f"unknown command {quoted(words[0])}; expected ORDER, CANCEL, QUERY, BALANCE, POSITIONS, STATUS, RESET, HELP "
        "or QUIT"
    )


def _parse_order(
    args: list[str], *, symbols: frozenset[str] | set[str], ts: int, account_id: str, ids: ClientOrderIds | None
) -> PlaceOrder:
    """The ORDER line's words -> :func:`~veloz_actors.orders.build_place_order`, the builder every client uses."""
    usage = "usage: ORDER <BUY|SELL> <SYMBOL> <QTY> <PRICE|MARKET> [tif=GTC|IOC|FOK|POST_ONLY] [cid=<id>]"
    positional = [a for a in args if "=" not in a]
    options = [a for a in args if "=" in a]
    if len(positional) != 4:
        raise InvalidInput(f"ORDER needs 4 arguments, got {len(positional)}; {usage}")
    side, symbol, qty_text, price_text = positional
    chosen: dict[str, str] = {}
    for option in options:
        key, _, value = option.partition("=")
        key = key.lower()
        if key not in ("tif", "cid"):
            raise InvalidInput(f"unknown option {quoted(key)}; expected tif= or cid=")
        if key in chosen:
            raise InvalidInput(f"{key}= given twice ({quoted(chosen[key])} and {quoted(value)}); give it once")
        chosen[key] = value
    return build_place_order(
        symbol,
        side,
        qty=parse_amount(qty_text, "quantity"),
        price=None if price_text.upper() == "MARKET" else parse_amount(price_text, "price"),
        tif=chosen.get("tif", "GTC"),
        client_order_id=chosen.get("cid"),
        ids=ids,
        account_id=account_id,
        ts=ts,
        symbols=symbols,
    )


def closes_order(update: dict[str, Any]) -> bool:
    """Whether an ``order_update`` is the last of the order its cid names: FILLED, CANCELLED, EXPIRED or REJECTED,
    except a rejection for a reused client order id (``DUPLICATE_CLIENT_ORDER_ID``): it refused a new order, and the
    order that holds the id is as it was (maybe still open)."""
    status = update.get("status")
    if status == "REJECTED":
        return update.get("reason") != RejectReason.DUPLICATE_CLIENT_ORDER_ID.value
    return status in ("FILLED", "CANCELLED", "EXPIRED")


def _d(value: int | None) -> str | None:
    return None if value is None else format_decimal(value)


class EventFormatter:
    """Turns engine events into protocol objects, keeping a client-side view of each order for ``order_update``."""

    def __init__(self, account_id: str = "main", *, market: bool = True) -> None:
        self.account_id = account_id
        self.market = market
        self._orders: dict[str, dict[str, Any]] = {}

    def format(self, event: Any) -> list[dict[str, Any]]:
        kind = type(event)
        view: dict[str, Any] | None
        account = getattr(event, "account_id", None)
        if account is not None and account != self.account_id and kind is not OrderRejected:
            return []
        if kind is OrderAccepted:
            view = {
                "cid": event.client_order_id,
                "order_id": event.order_id,
                "symbol": event.symbol,
                "side": event.side.value,
                "order_type": event.order_type.value,
                "tif": event.tif.value,
                "price": _d(event.price),
                "qty": _d(event.qty),
                "filled_qty": "0",
            }
            self._orders[event.client_order_id] = view
            return [self._update(view, OrderStatus.ACCEPTED, event.ts)]
        if kind is OrderRejected:
            if account != self.account_id:
                return []
            cancel = event.detail.startswith("cancel")
            if cancel:
                view = self._orders.get(event.client_order_id)
            elif event.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID:
                view = None  # a new order refused: the one holding the id is as it was
            else:  # a new order refused, or an accepted one the venue refused: its last update
                view = self._orders.pop(event.client_order_id, None)
            filled = view["filled_qty"] if view else None if cancel else "0"  # a closed order's fills: not known here
            update = {
                "type": "order_update",
                "ts": event.ts,
                "cid": event.client_order_id,
                "order_id": view["order_id"] if view else None,
                "symbol": event.symbol or None,
                "side": event.side.value if event.side else None,
                "order_type": event.order_type.value if event.order_type else None,
                "price": _d(event.price),
                "qty": _d(event.qty) if event.qty else None,
                "filled_qty": filled,
                "status": "CANCEL_REJECTED" if cancel else "REJECTED",
                "reason": event.reason.value,
                "detail": event.detail,
            }
            return [update]
        if kind is OrderFilled:
            view = self._orders.get(event.client_order_id)
            out = [
                {
                    "type": "fill",
                    "ts": event.ts,
                    "cid": event.client_order_id,
                    "order_id": event.order_id,
                    "symbol": event.symbol,
                    "side": event.side.value,
                    "price": format_decimal(event.price),
                    "qty": format_decimal(event.qty),
                    "fee": format_decimal(event.fee),
                    "fee_asset": event.fee_asset,
                    "liquidity": event.liquidity.value,
                    "trade_id": event.trade_id,
                }
            ]
            if view is not None:
                view["filled_qty"] = format_decimal(event.cum_qty)
                status = OrderStatus.FILLED if event.leaves_qty == 0 else OrderStatus.PARTIALLY_FILLED
                out.append(self._update(view, status, event.ts))
            return out
        if kind is OrderCancelled or kind is OrderExpired:
            view = self._orders.pop(event.client_order_id, None) or {
                "cid": event.client_order_id,
                "order_id": event.order_id,
                "symbol": event.symbol,
            }
            view["filled_qty"] = format_decimal(event.filled_qty)
            status = OrderStatus.CANCELLED if kind is OrderCancelled else OrderStatus.EXPIRED
            update = self._update(view, status, event.ts)
            update["reason"] = event.reason.value
            return [update]
        if kind is AccountUpdated:
            return [
                {
                    "type": "account",
                    "ts": event.ts,
                    "account": event.account_id,
                    "balances": {
                        b.asset: {"free": format_decimal(b.free), "locked": format_decimal(b.locked)}
                        for b in event.balances
                    },
                }
            ]
        if kind is PositionUpdated:
            return [_position(event)]
        if kind is CircuitBreakerTripped:
            return [
                {
                    "type": "status",
                    "ts": event.ts,
                    "event": "circuit_breaker_tripped",
                    "reason": event.reason,
                    "equity": format_decimal(event.equity),
                    "peak_equity": format_decimal(event.peak_equity),
                }
            ]
        if kind is Error:
            return [{"type": "error", "ts": event.ts, "code": event.code, "message": event.message}]
        if kind is VenueConnection:
            line = {"type": "status", "ts": event.ts, "event": "venue_" + event.state, "venue": event.venue}
            for name in ("symbol", "detail"):
                if getattr(event, name):
                    line[name] = getattr(event, name)
            line["reconnects"], line["resyncs"] = event.reconnects, event.resyncs
            return [line]
        if not self.market:
            return []
        if kind is BookTop:
            return [
                {
                    "type": "market",
                    "ts": event.ts_recv,
                    "kind": "book_top",
                    "symbol": event.symbol,
                    "bid": format_decimal(event.bid_price),
                    "bid_qty": format_decimal(event.bid_qty),
                    "ask": format_decimal(event.ask_price),
                    "ask_qty": format_decimal(event.ask_qty),
                }
            ]
        if kind is Trade:
            return [
                {
                    "type": "market",
                    "ts": event.ts_recv,
                    "kind": "trade",
                    "symbol": event.symbol,
                    "price": format_decimal(event.price),
                    "qty": format_decimal(event.qty),
                    "aggressor": event.aggressor.value,
                }
            ]
        if kind is Kline or kind is MarkPrice:
            return []
        return []

    def _update(self, view: dict[str, Any], status: OrderStatus, ts: int) -> dict[str, Any]:
        out = {"type": "order_update", "ts": ts}
        out.update(view)
        out["status"] = status.value
        if status.is_terminal:
            self._orders.pop(view["cid"], None)
        return out


def _position(event: PositionUpdated) -> dict[str, Any]:
    return {
        "type": "position",
        "ts": event.ts,
        "symbol": event.symbol,
        "qty": format_decimal(event.qty),
        "avg_entry_price": format_decimal(event.avg_entry_price),
        "realized_pnl": format_decimal(event.realized_pnl),
        "unrealized_pnl": format_decimal(event.unrealized_pnl),
        "mark_price": format_decimal(event.mark_price),
    }


def order_state(order: dict[str, Any]) -> dict[str, Any]:
    """Format an OMS order record (raw ints) for ``order_state``."""
    return {
        "cid": order["client_order_id"],
        "order_id": order["order_id"],
        "symbol": order["symbol"],
        "side": order["side"],
        "order_type": order["order_type"],
        "tif": order["tif"],
        "price": _d(order["price"]),
        "qty": _d(order["qty"]),
        "filled_qty": _d(order["filled_qty"]),
        "status": order["status"],
        "history": [{"status": s, "ts": t} for s, t in order["history"]],
    }


def unavailable(exc: BaseException, ts: int, line: str | None = None) -> dict[str, Any]:
    """The error object for an engine that did not answer (an actor restarting, a timeout): a command's outcome is then
    unknown until it is queried."""
    out: dict[str, Any] = {
        "type": "error",
        "ts": ts,
        "code": "ENGINE_UNAVAILABLE",
        "message": f"the engine did not answer ({type(exc).__name__}: {exc}); a command's outcome is unknown until "
        "QUERY shows it",
    }
    if line is not None:
        out["line"] = line[:200]
    return out


class Session:
    """One protocol session over a backend. ``handle_line`` returns the JSON objects to print, in order."""

    def __init__(
        self, backend: Backend, *, symbols: set[str], clock: Any, account_id: str = "main", market: bool = True
    ):
        self.backend = backend
        self.symbols = frozenset(symbols)
        self.clock = clock
        self.account_id = account_id
        self.formatter = EventFormatter(account_id, market=market)
        self.closed = False
        self._last_ts = 0
        # client order ids of this session: counted here, no engine query (see veloz_actors.orders)
        self.ids = ClientOrderIds.for_session("cli", clock=clock)

    def now(self) -> int:
        ts = max(self.clock(), self._last_ts + 1)
        self._last_ts = ts
        return ts

    def events(self, events: list[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in events:
            out.extend(self.formatter.format(event))
        return out

    def handle_line(self, line: str) -> list[dict[str, Any]]:
        return self.handle(line)[0]

    def handle(self, line: str) -> tuple[list[dict[str, Any]], bool]:
        """The objects answering ``line``, and whether they are engine events (a command's outcome, which every
        watcher sees) rather than an answer for this session alone (a query, a malformed line). An engine that
        stopped (:class:`EngineStopped`) is raised: nothing more can be done in this session."""
        line = line.strip()
        if not line or line.startswith("#"):
            return [], False
        ts = self.now()
        try:
            command = parse_command(line, symbols=self.symbols, ts=ts, account_id=self.account_id, ids=self.ids)
        except InvalidInput as exc:
            return [{"type": "error", "ts": ts, "code": "BAD_COMMAND", "message": str(exc), "line": line[:200]}], False
        try:
            if isinstance(command, tuple):
                return self._request(command[0], command[1], ts), False
            return self.events(self.backend.submit(command)), True
        except EngineStopped:
            raise
        except (EngineUnavailable, TimeoutError) as exc:  # the actor engine did not answer: said, the session goes on
            return [unavailable(exc, ts, line)], False

    def _request(self, keyword: str, argument: str | None, ts: int) -> list[dict[str, Any]]:
        if keyword == "QUERY":
            try:
                orders = self.backend.query(argument)
            except JournalError as exc:  # a damaged order history file: said with its name, the session goes on
                return [{"type": "error", "ts": ts, "code": "ORDER_HISTORY_UNREADABLE", "message": str(exc)}]
            if argument is not None and not orders:
                return [
                    {"type": "error", "ts": ts, "code": "UNKNOWN_ORDER", "message": f"no order with cid {argument!r}"}
                ]
            return [{"type": "order_state", "ts": ts, "orders": [order_state(o) for o in orders]}]
        if keyword == "BALANCE":
            balances = self.backend.balances()
            return [
                {
                    "type": "account",
                    "ts": ts,
                    "account": self.account_id,
                    "balances": {
                        asset: {"free": format_decimal(free), "locked": format_decimal(locked)}
                        for asset, (free, locked) in balances.items()
                    },
                }
            ]
        if keyword == "POSITIONS":
            out = [_position(p.to_event(ts) if hasattr(p, "to_event") else p) for p in self.backend.positions()]
            return out or [{"type": "position", "ts": ts, "symbol": None, "positions": []}]
        if keyword == "STATUS":
            return [{"type": "status", "ts": ts, **self.backend.status()}]
        if keyword == "HELP":
            return [{"type": "status", "ts": ts, "help": HELP.strip()}]
        if keyword == "QUIT":
            self.closed = True
            return []
        raise AssertionError(keyword)


def dumps(obj: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:  # a string that is not valid UTF-8 (a lone surrogate from the input): never a dead session
        return orjson.dumps(_valid_text(obj))


def _valid_text(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_valid_text(k): _valid_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_valid_text(v) for v in value]
    return value
