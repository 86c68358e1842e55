"""Messages: the immutable values that travel between VeloZ components, and their one JSON codec.

Every message is a frozen, slotted, keyword-only dataclass. Prices, quantities, balances and fees are integers in
1e-8 units (see :mod:`veloz_actors.fixed`); timestamps are integer nanoseconds since the Unix epoch. Market events
carry both the exchange time (``ts_event``) and the local receive time (``ts_recv``) so latency can be measured.

Commands are imperative (:class:`PlaceOrder`, :class:`CancelOrder`); events are past tense (:class:`OrderAccepted`,
:class:`OrderRejected`, :class:`OrderFilled`, ...). A business rejection is an event with a :class:`RejectReason`,
never an exception.

The codec (:func:`encode` / :func:`decode`) writes one JSON object per message with a ``"type"`` tag; every message
round-trips exactly::

    >>> m = PlaceOrder(client_order_id="c1", symbol="BTCUSDT", side=Side.BUY, order_type=OrderType.LIMIT,
    ...                qty=100000, price=6000000000000, ts=1)
    >>> decode(encode(m)) == m
    True
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, dataclass_transform

import orjson

from ._exceptions import InvalidInput, quoted

__all__ = [
    "AccountUpdated",
    "CancelAllOrders",
    "ExecutionReport",
    "HaltTrading",
    "SubmitCancel",
    "SubmitOrder",
    "VenueCancelRejected",
    "VenueAccountReport",
    "VenueBalance",
    "VenueBalanceDelta",
    "VenueConnection",
    "VenueOrderAccepted",
    "VenueOrderCancelled",
    "VenueOrderExpired",
    "VenueOrderFilled",
    "VenueOrderRejected",
    "VenueOrderStatusUnknown",
    "VenueRequest",
    "Balance",
    "BookDelta",
    "BookTop",
    "CancelOrder",
    "CircuitBreakerTripped",
    "Command",
    "Error",
    "Event",
    "FundingRate",
    "Kline",
    "Liquidity",
    "MarkPrice",
    "MarketEvent",
    "Message",
    "OrderAccepted",
    "OrderCancelled",
    "OrderEvent",
    "OrderExpired",
    "OrderFilled",
    "OrderRejected",
    "OrderStatus",
    "OrderType",
    "PlaceOrder",
    "PositionUpdated",
    "RejectReason",
    "ResetCircuitBreaker",
    "Side",
    "Tick",
    "Ticker",
    "TimeInForce",
    "Trade",
    "builder",
    "checked",
    "decode",
    "encode",
    "encode_line",
    "from_dict",
    "members",
    "positional",
    "to_dict",
]


class Side(enum.StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(enum.StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


class TimeInForce(enum.StrEnum):
    GTC = "GTC"  # good till cancelled: rests on the book
    IOC = "IOC"  # immediate or cancel: fills what it can now, the rest expires
    FOK = "FOK"  # fill or kill: fills completely now, or not at all
    POST_ONLY = "POST_ONLY"  # maker only: rejected if it would take liquidity (Binance LIMIT_MAKER / GTX)


class OrderStatus(enum.StrEnum):
    """An order's state in the trading kernel (the transition table is :data:`veloz_actors.core.oms.TRANSITIONS`).

    ``SUBMITTED``: risk passed, funds reserved, sent to the venue, not yet acknowledged by it. ``PENDING_CANCEL``: a
    cancel was sent and the venue has not answered. ``UNKNOWN``: the venue's answer was lost (a timeout, a dropped
    connection); the funds stay reserved until a report or a query settles it.
    """

    NEW = "NEW"
    SUBMITTED = "SUBMITTED"
    ACCEPTED = "ACCEPTED"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    PENDING_CANCEL = "PENDING_CANCEL"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_open(self) -> bool:
        """Working at the venue, or possibly so: its funds stay reserved."""
        return self in _OPEN


_TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED})
_OPEN = frozenset(
    {
        OrderStatus.SUBMITTED,
        OrderStatus.ACCEPTED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PENDING_CANCEL,
        OrderStatus.UNKNOWN,
    }
)


class Liquidity(enum.StrEnum):
    MAKER = "MAKER"
    TAKER = "TAKER"


class RejectReason(enum.StrEnum):
    """Why an order was rejected, cancelled or expired. Stable codes: tests, metrics and clients key on them."""

    DUPLICATE_CLIENT_ORDER_ID = "DUPLICATE_CLIENT_ORDER_ID"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"  # journal semantics 4 on: before, INSUFFICIENT_FUNDS
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    ORDER_NOT_OPEN = "ORDER_NOT_OPEN"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    INVALID_PRICE = "INVALID_PRICE"
    PRICE_NOT_ON_TICK = "PRICE_NOT_ON_TICK"
    QUANTITY_NOT_ON_STEP = "QUANTITY_NOT_ON_STEP"
    QUANTITY_BELOW_MINIMUM = "QUANTITY_BELOW_MINIMUM"
    NOTIONAL_BELOW_MINIMUM = "NOTIONAL_BELOW_MINIMUM"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    MAX_ORDER_QUANTITY = "MAX_ORDER_QUANTITY"
    MAX_ORDER_NOTIONAL = "MAX_ORDER_NOTIONAL"
    MAX_POSITION = "MAX_POSITION"
    MAX_LEVERAGE = "MAX_LEVERAGE"
    PRICE_BAND = "PRICE_BAND"
    NO_REFERENCE_PRICE = "NO_REFERENCE_PRICE"
    RATE_LIMIT = "RATE_LIMIT"
    CIRCUIT_BREAKER = "CIRCUIT_BREAKER"
    WOULD_TAKE_LIQUIDITY = "WOULD_TAKE_LIQUIDITY"
    FOK_NOT_FILLABLE = "FOK_NOT_FILLABLE"
    IOC_UNFILLED = "IOC_UNFILLED"
    NO_LIQUIDITY = "NO_LIQUIDITY"
    SELF_TRADE_PREVENTED = "SELF_TRADE_PREVENTED"
    STOP_LOSS = "STOP_LOSS"
    USER_CANCEL = "USER_CANCEL"
    OVERLOADED = "OVERLOADED"
    SHUTDOWN = "SHUTDOWN"
    CANCEL_PENDING = "CANCEL_PENDING"
    HALTED = "HALTED"
    VENUE_REJECTED = "VENUE_REJECTED"
    VENUE_ERROR = "VENUE_ERROR"  # the venue failed on the order (an error of its own, said in an Error event)


_T = TypeVar("_T")
_E = TypeVar("_E", bound=enum.Enum)


@functools.cache
def members(cls: type[_E]) -> type[_E]:
    """``cls``'s members as the attributes of a module object, for the hot paths: ``members(Side).BUY is Side.BUY``
    (one such object per enum, whichever module asks).

    Read through its enum class, a member costs about 1,000 machine instructions in Python 3.11 (``EnumType`` defines
    ``__getattr__``, which takes every attribute read of the class off the interpreter's fast path); through a plain
    class, about 220; through a module object, whose attribute reads the interpreter specializes as it does a
    module's globals, about 85. The engine compares sides, order types and statuses a few dozen times per order.
    """
    namespace = types.ModuleType(f"{cls.__name__}Members")
    namespace.__dict__.update(cls.__members__)
    return namespace  # type: ignore[return-value]


@dataclass_transform(frozen_default=True, kw_only_default=True)
def _message(cls: type[_T]) -> type[_T]:
    """A frozen, slotted, keyword-only dataclass whose ``__init__`` writes the slots directly.

    A frozen dataclass's own ``__init__`` goes through ``object.__setattr__`` once per field; setting the slot
    descriptors is about 30% faster, and the engine builds several events per order. Pickling (every message that
    crosses between actors) goes through a generated module-level ``_make_<Name>(*fields)``: a tuple of the values
    instead of the dataclass's state dict, about 3x faster both ways (``scripts/bench_feed.py`` moves market data
    through three actor hops). The same holds for ``_build_<Name>(**fields)`` (:func:`builder`), the class's keyword
    constructor for the engine's hot paths. Behaviour is unchanged: the instance stays immutable, equality, hashing
    and ``dataclasses.replace`` are the dataclass's own.
    """
    # The slots live on a plain base class of the message, ``_<Name>Fields``, whose attribute stores cost what a
    # mutable object's do: the builders fill one of those, then make it the message by setting its class. The message
    # class adds no slot of its own, so that costs one check of the two layouts (the same base), not a comparison of
    # their slots, name by name, as between two unrelated classes of the same slots.
    if cls.__bases__ != (object,):
        raise TypeError(f"{cls.__name__}: a message declares all its fields itself, it derives from no other class")
    names = [name for name, kind in cls.__dict__.get("__annotations__", {}).items() if "ClassVar" not in str(kind)]
    fields = type(f"_{cls.__name__}Fields", (), {"__slots__": tuple(names), "__module__": __name__})
    attrs = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    attrs["__qualname__"] = cls.__qualname__
    cls = dataclass(frozen=True, slots=True, kw_only=True)(type(cls.__name__, (fields,), attrs))
    if [f.name for f in dataclasses.fields(cls)] != names or cls.__slots__:  # type: ignore[arg-type, attr-defined]
        raise TypeError(f"{cls.__name__}: its fields {names} must be the slots of its base, and only they")
    namespace: dict[str, Any] = {}
    params, body = [], []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: messages take plain defaults, not default factories")
        namespace[f"_set_{f.name}"] = fields.__dict__[f.name].__set__
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})")
    exec(f"def __init__(self, *, {', '.join(params)}):\n" + "\n".join(body), namespace)  # noqa: S102
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign]
    # (a call through the class goes by a dict of keywords and a descriptor call per field, about 2.5x what a builder
    # costs)
    maker, build = f"_make_{cls.__name__}", f"_build_{cls.__name__}"
    # (the fields class is called, not given to object.__new__: its own call costs ~30% less, and it has no __init__)
    namespace.update(_cls=cls, _fields=fields)
    fill = "    self = _fields()\n" + "".join(f"    self.{n} = {n}\n" for n in names) + "    self.__class__ = _cls\n"
    exec(  # noqa: S102 - field names are identifiers
        f"def {maker}({', '.join(names)}):\n{fill}    return self\n"
        f"def {build}(*, {', '.join(params)}):\n{fill}    return self\n"
        f"def __reduce__(self):\n    return ({maker}, ({''.join(f'self.{n}, ' for n in names)}))",
        namespace,
    )
    for name in (maker, build):
        function = namespace[name]
        function.__module__, function.__qualname__ = __name__, name
        globals()[name] = function  # pickle finds the maker by module and name
    cls.__reduce__ = namespace["__reduce__"]  # type: ignore[method-assign]
    return cls


def positional(cls: type[_T]) -> Callable[..., _T]:
    """A message class's positional constructor, its fields in declaration order (what pickling calls): for the few
    hot paths that rebuild many messages from columns, about 3x cheaper than a call of the class."""
    return globals()[f"_make_{cls.__name__}"]  # type: ignore[no-any-return]


def builder(cls: type[_T]) -> Callable[..., _T]:
    """A message class's keyword-only constructor: the message a call of the class makes, with the same keywords and
    defaults, for about 40% of the cost (see :func:`_message`). For the engine's hot paths, which build several
    messages per order::

        >>> builder(Tick)(ts=1) == Tick(ts=1)
        True
    """
    return globals()[f"_build_{cls.__name__}"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------------- market events


@_message
class Trade:
    """A public trade. ``aggressor`` is the taker's side (Binance ``m`` = buyer is maker means a SELL aggressor)."""

    TYPE: ClassVar[str] = "Trade"
    symbol: str
    trade_id: int
    price: int
    qty: int
    aggressor: Side
    ts_event: int
    ts_recv: int


@_message
class BookTop:
    """Best bid and ask (Binance ``bookTicker``). A side with no orders has price and qty 0."""

    TYPE: ClassVar[str] = "BookTop"
    symbol: str
    bid_price: int
    bid_qty: int
    ask_price: int
    ask_qty: int
    update_id: int
    ts_event: int
    ts_recv: int


@_message
class BookDelta:
    """L2 level changes (qty 0 deletes a level), or a full snapshot when ``is_snapshot``.

    ``first_update_id``/``last_update_id`` are Binance's ``U``/``u``; ``prev_update_id`` is the futures ``pu`` (-1 on
    spot, where an event connects when ``U <= previous u + 1 <= u``). A snapshot has ``first_update_id == last_update_id ==
    lastUpdateId``. Levels are ``(price, qty)`` tuples.
    """

    TYPE: ClassVar[str] = "BookDelta"
    symbol: str
    first_update_id: int
    last_update_id: int
    prev_update_id: int = -1
    bids: tuple[tuple[int, int], ...]
    asks: tuple[tuple[int, int], ...]
    is_snapshot: bool = False
    ts_event: int
    ts_recv: int


@_message
class Kline:
    """A candle: ``open_time`` is the bar's open (ns), ``interval_ns`` its length; ``closed`` once it is final."""

    TYPE: ClassVar[str] = "Kline"
    symbol: str
    interval_ns: int
    open_time: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    closed: bool = True
    ts_event: int
    ts_recv: int


@_message
class Ticker:
    """A rolling 24 h ticker."""

    TYPE: ClassVar[str] = "Ticker"
    symbol: str
    last_price: int
    open_price: int
    high_price: int
    low_price: int
    volume: int
    quote_volume: int
    ts_event: int
    ts_recv: int


@_message
class FundingRate:
    """A perpetual's funding rate (a fraction in 1e-8 units: 0.0001 -> 10000) settled at ``funding_time`` (ns)."""

    TYPE: ClassVar[str] = "FundingRate"
    symbol: str
    rate: int
    funding_time: int
    ts_event: int
    ts_recv: int


@_message
class MarkPrice:
    """A perpetual's mark and index price, with the current funding rate and the next funding time."""

    TYPE: ClassVar[str] = "MarkPrice"
    symbol: str
    mark_price: int
    index_price: int
    funding_rate: int
    next_funding_time: int
    ts_event: int
    ts_recv: int


# --------------------------------------------------------------------------------------------------------- commands


@_message
class PlaceOrder:
    """Place an order. ``client_order_id`` makes the command idempotent.

    ``price`` is None for a market order. A market BUY may give ``quote_qty`` instead of ``qty`` (Binance's
    ``quoteOrderQty``): it spends at most that much quote, fees included, buying whole quantity steps.

    ``protect_price`` is a market order's worst fill price when the sender fixes it itself (the L2 backtest takes it
    from the recorded book the strategy saw, or its last trade while the book is unknown), 0 when that sender has no
    price to protect it with (the order is then rejected, ``NO_REFERENCE_PRICE``); None, as for every other sender,
    leaves it to the kernel: the edge of the risk price band around its reference price.
    """

    TYPE: ClassVar[str] = "PlaceOrder"
    client_order_id: str
    account_id: str = "main"
    symbol: str
    side: Side
    order_type: OrderType
    qty: int = 0
    price: int | None = None
    quote_qty: int | None = None
    tif: TimeInForce = TimeInForce.GTC
    protect_price: int | None = None
    ts: int


@_message
class CancelOrder:
    """Cancel an open order by its client order id."""

    TYPE: ClassVar[str] = "CancelOrder"
    client_order_id: str
    account_id: str = "main"
    ts: int


@_message
class ResetCircuitBreaker:
    """Re-arm trading after the loss circuit breaker tripped (a deliberate, journaled human decision).

    ``account_id`` lifts that account's own breaker (its loss or drawdown limit, or a halt sent for it alone);
    ``"*"`` lifts the engine-wide halt (:class:`HaltTrading` for ``"*"``: the risk actor's or the kill switch's),
    which an account's reset leaves in force."""

    TYPE: ClassVar[str] = "ResetCircuitBreaker"
    account_id: str = "main"
    ts: int


@_message
class Tick:
    """Advance the simulated market to ``ts`` (one step of its seeded price process)."""

    TYPE: ClassVar[str] = "Tick"
    ts: int


@_message
class HaltTrading:
    """Trip the circuit breaker of ``account_id`` from outside the kernel, or with ``"*"`` halt the whole engine (the
    risk actor's halt, the kill switch's: every account, also one opened later). Risk-increasing orders are rejected
    with reason ``CIRCUIT_BREAKER`` until a :class:`ResetCircuitBreaker` for the same ``account_id``."""

    TYPE: ClassVar[str] = "HaltTrading"
    account_id: str = "*"
    reason: str
    ts: int


@_message
class CancelAllOrders:
    """Cancel every open order of ``account_id`` (``"*"``: every account); with a halt, the kill switch."""

    TYPE: ClassVar[str] = "CancelAllOrders"
    account_id: str = "*"
    ts: int


# ---------------------------------------------------------------------------------------- requests to a venue


@_message
class SubmitOrder:
    """The kernel's order, risk-checked and funded, on its way to a venue: the trader's command as given, the
    kernel's order id, and ``limit``, the price the venue may trade up to (the order's price, or for a market order
    the protect price the kernel reserved funds for)."""

    TYPE: ClassVar[str] = "SubmitOrder"
    command: PlaceOrder
    order_id: int
    limit: int | None = None

    @property
    def symbol(self) -> str:
        return self.command.symbol

    @property
    def account_id(self) -> str:
        return self.command.account_id

    @property
    def client_order_id(self) -> str:
        return self.command.client_order_id

    @property
    def ts(self) -> int:
        return self.command.ts

    @property
    def side(self) -> Side:
        return self.command.side

    @property
    def order_type(self) -> OrderType:
        return self.command.order_type

    @property
    def tif(self) -> TimeInForce:
        return self.command.tif

    @property
    def qty(self) -> int:
        return self.command.qty

    @property
    def price(self) -> int | None:
        return self.command.price

    @property
    def quote_qty(self) -> int | None:
        return self.command.quote_qty


@_message
class SubmitCancel:
    """The kernel asks a venue to cancel one of its orders."""

    TYPE: ClassVar[str] = "SubmitCancel"
    client_order_id: str
    account_id: str
    symbol: str
    ts: int


# ------------------------------------------------------------------------------------ execution reports from a venue
# Each carries the venue's name and its own ids; the kernel journals them before applying them, and applying one
# twice has no second effect (a fill is known by venue, symbol, trade id and order).


@_message
class VenueOrderAccepted:
    """The venue took the order (it rests, or is about to trade)."""

    TYPE: ClassVar[str] = "VenueOrderAccepted"
    venue: str
    client_order_id: str
    account_id: str
    symbol: str
    venue_order_id: str
    ts: int


@_message
class VenueOrderRejected:
    """The venue refused the order (a post-only order that would take liquidity, an exchange filter, ...)."""

    TYPE: ClassVar[str] = "VenueOrderRejected"
    venue: str
    client_order_id: str
    account_id: str
    symbol: str
    reason: RejectReason
    detail: str = ""
    ts: int


@_message
class VenueOrderFilled:
    """One trade of the order at the venue. ``fee`` is in ``fee_asset``; ``leaves_qty`` is what the venue still works
    (0 on the last fill of an order sized by quote amount)."""

    TYPE: ClassVar[str] = "VenueOrderFilled"
    venue: str
    client_order_id: str
    account_id: str
    symbol: str
    venue_order_id: str
    trade_id: int
    price: int
    qty: int
    fee: int
    fee_asset: str
    liquidity: Liquidity
    leaves_qty: int
    ts: int


@_message
class VenueOrderCancelled:
    TYPE: ClassVar[str] = "VenueOrderCancelled"
    venue: str
    client_order_id: str
    account_id: str
    symbol: str
    reason: RejectReason = RejectReason.USER_CANCEL
    ts: int


@_message
class VenueOrderExpired:
    """The venue ended the order without filling the rest (IOC / FOK / market remainder, self-trade prevention)."""

    TYPE: ClassVar[str] = "VenueOrderExpired"
    venue: str
    client_order_id: str
    account_id: str
    symbol: str
    reason: RejectReason
    ts: int


@_message
class VenueCancelRejected:
    """The venue refused a cancel (the order had already filled or gone); the order stays as it is."""

    TYPE: ClassVar[str] = "VenueCancelRejected"
    venue: str
    client_order_id: str
    account_id: str
    symbol: str
    reason: RejectReason
    detail: str = ""
    ts: int


@_message
class VenueOrderStatusUnknown:
    """The venue's answer was lost (timeout, dropped connection): the order's outcome is unknown until a report or a
    status query settles it; its funds stay reserved."""

    TYPE: ClassVar[str] = "VenueOrderStatusUnknown"
    venue: str
    client_order_id: str
    account_id: str
    symbol: str
    detail: str = ""
    ts: int


# ----------------------------------------------------------------------------------------------------------- events


@_message
class OrderAccepted:
    TYPE: ClassVar[str] = "OrderAccepted"
    client_order_id: str
    order_id: int
    account_id: str
    symbol: str
    side: Side
    order_type: OrderType
    tif: TimeInForce
    price: int | None
    qty: int
    ts: int


@_message
class OrderRejected:
    TYPE: ClassVar[str] = "OrderRejected"
    client_order_id: str
    account_id: str
    symbol: str
    side: Side | None = None
    order_type: OrderType | None = None
    price: int | None = None
    qty: int = 0
    reason: RejectReason
    detail: str = ""
    ts: int


@_message
class OrderFilled:
    """A fill (partial or final) of one order. ``fee`` is in ``fee_asset`` units of 1e-8."""

    TYPE: ClassVar[str] = "OrderFilled"
    client_order_id: str
    order_id: int
    account_id: str
    symbol: str
    side: Side
    trade_id: int
    price: int
    qty: int
    fee: int
    fee_asset: str
    liquidity: Liquidity
    cum_qty: int
    leaves_qty: int
    ts: int


@_message
class OrderCancelled:
    TYPE: ClassVar[str] = "OrderCancelled"
    client_order_id: str
    order_id: int
    account_id: str
    symbol: str
    filled_qty: int
    reason: RejectReason = RejectReason.USER_CANCEL
    ts: int


@_message
class OrderExpired:
    """An IOC/FOK/market remainder that could not fill, or a taker stopped by self-trade prevention.

    (A post-only order that would take liquidity is *rejected* before it is accepted, as Binance's LIMIT_MAKER is.)
    """

    TYPE: ClassVar[str] = "OrderExpired"
    client_order_id: str
    order_id: int
    account_id: str
    symbol: str
    filled_qty: int
    reason: RejectReason
    ts: int


@_message
class Balance:
    asset: str
    free: int
    locked: int


@_message
class AccountUpdated:
    """Every asset's free and locked balance of one account after a change."""

    TYPE: ClassVar[str] = "AccountUpdated"
    account_id: str
    balances: tuple[Balance, ...]
    ts: int


@_message
class PositionUpdated:
    """A position after a fill or a mark: ``cost`` is the quote paid for ``qty`` (average entry = cost / qty)."""

    TYPE: ClassVar[str] = "PositionUpdated"
    account_id: str
    symbol: str
    qty: int
    avg_entry_price: int
    cost: int
    realized_pnl: int
    unrealized_pnl: int
    mark_price: int
    ts: int


@_message
class CircuitBreakerTripped:
    """New risk-increasing orders are halted for ``account_id`` until a :class:`ResetCircuitBreaker`."""

    TYPE: ClassVar[str] = "CircuitBreakerTripped"
    account_id: str
    reason: str
    equity: int
    peak_equity: int
    ts: int


@_message
class Error:
    """Something that went wrong and is reported rather than raised: a malformed command, an invariant alarm."""

    TYPE: ClassVar[str] = "Error"
    code: str
    message: str
    ts: int


@_message
class VenueConnection:
    """A change of a venue connection's state, reported on the bus and in ``STATUS``.

    ``state`` is ``connected``, ``disconnected`` (``detail`` says why; a reconnect follows), ``resynced`` (``symbol``'s
    book was rebuilt from a new snapshot: at every (re)connect and after a gap), ``error`` (``symbol``'s book cannot be
    synced: ``detail`` says why, e.g. Binance calls the symbol invalid after a delisting), ``halted`` (``symbol``'s new
    orders are refused: Binance halted or delisted it, or changed its filters; ``detail`` says which), ``trading``
    (``symbol`` trades again under the engine's rules) or ``closed`` (the engine stopped it).
    ``reconnects`` counts the connections opened after the first; ``resyncs`` the book rebuilds of ``symbol`` (or
    of all symbols when ``symbol`` is empty).
    """

    TYPE: ClassVar[str] = "VenueConnection"
    venue: str
    state: str
    detail: str = ""
    symbol: str = ""
    reconnects: int = 0
    resyncs: int = 0
    ts: int


@_message
class VenueBalance:
    """One asset's balance as the venue reports it (Binance ``outboundAccountPosition``, account information), to
    reconcile the kernel's ledger with; ``ts`` is the venue's time of the account update."""

    TYPE: ClassVar[str] = "VenueBalance"
    venue: str
    account_id: str
    asset: str
    free: int
    locked: int
    ts: int


@_message
class VenueBalanceDelta:
    """A balance change at the venue that no trade caused (Binance ``balanceUpdate``: a deposit, a withdrawal, a
    transfer between wallets); ``delta`` is signed."""

    TYPE: ClassVar[str] = "VenueBalanceDelta"
    venue: str
    account_id: str
    asset: str
    delta: int
    ts: int


MarketEvent = Trade | BookTop | BookDelta | Kline | Ticker | FundingRate | MarkPrice
Command = PlaceOrder | CancelOrder | ResetCircuitBreaker | Tick | HaltTrading | CancelAllOrders
VenueRequest = SubmitOrder | SubmitCancel
ExecutionReport = (
    VenueOrderAccepted
    | VenueOrderRejected
    | VenueOrderFilled
    | VenueOrderCancelled
    | VenueOrderExpired
    | VenueCancelRejected
    | VenueOrderStatusUnknown
)
VenueAccountReport = VenueBalance | VenueBalanceDelta
OrderEvent = OrderAccepted | OrderRejected | OrderFilled | OrderCancelled | OrderExpired
Event = OrderEvent | AccountUpdated | PositionUpdated | CircuitBreakerTripped | Error | VenueConnection
Message = MarketEvent | Command | VenueRequest | ExecutionReport | VenueAccountReport | Event

_TYPES: dict[str, type] = {
    cls.TYPE: cls
    for cls in (
        Trade, BookTop, BookDelta, Kline, Ticker, FundingRate, MarkPrice,
        PlaceOrder, CancelOrder, ResetCircuitBreaker, Tick, HaltTrading, CancelAllOrders, SubmitOrder, SubmitCancel,
        VenueOrderAccepted, VenueOrderRejected, VenueOrderFilled, VenueOrderCancelled, VenueOrderExpired,
        VenueCancelRejected, VenueOrderStatusUnknown, VenueBalance, VenueBalanceDelta,
        OrderAccepted, OrderRejected, OrderFilled, OrderCancelled, OrderExpired,
        AccountUpdated, PositionUpdated, CircuitBreakerTripped, Error, VenueConnection,
    )
}  # fmt: skip

# Fields that need converting back from their JSON form, per message type: name -> converter.
_ENUM_FIELDS = {
    "side": Side,
    "aggressor": Side,
    "order_type": OrderType,
    "tif": TimeInForce,
    "liquidity": Liquidity,
    "reason": RejectReason,
}


def _field_converters(cls: type) -> dict[str, Any]:
    converters: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in _ENUM_FIELDS and not (cls in (CircuitBreakerTripped, HaltTrading) and f.name == "reason"):
            enum_cls = _ENUM_FIELDS[f.name]
            converters[f.name] = lambda v, e=enum_cls: None if v is None else e(v)
        elif f.name in ("bids", "asks"):
            converters[f.name] = _levels
        elif f.name == "command":
            converters[f.name] = lambda v: _from_fields({**v, "type": "PlaceOrder"})
        elif f.name == "balances":
            converters[f.name] = lambda v: tuple(_balance(b) for b in v)
    return converters


def _levels(value: Any) -> tuple[tuple[int, int], ...]:
    """A book side's ``[[price, qty], ...]``, each an int (never a float or a string rounded into one)."""
    levels = tuple((p, q) for p, q in value)
    if not all(type(p) is int and type(q) is int for p, q in levels):
        raise TypeError(f"levels must be [price, quantity] pairs of ints, got {quoted(value)}")
    return levels


def _balance(value: Any) -> Balance:
    balance = Balance(**value)
    if not (type(balance.asset) is str and type(balance.free) is int and type(balance.locked) is int):
        raise TypeError(f"a balance is an asset name and int free and locked amounts, got {quoted(value)}")
    return balance


# What each plain field must hold once decoded, by its annotation (enums, tuples and nested messages are made by the
# converters above, which refuse what they cannot make). ``type(v) is int`` also refuses a bool.
_PLAIN_TYPES = {"int": "int", "str": "str", "bool": "bool"}


def _type_checker(cls: type) -> Callable[[Any], bool]:
    """A generated ``message -> bool``: every plain field holds its annotated type (an ``int``, ``str`` or ``bool``,
    or ``None`` where the annotation allows it). One expression over the slots, generated like the dict makers
    below, so decoding a journal line pays well under a microsecond for it."""
    checks = []
    for f in dataclasses.fields(cls):
        kinds = [k.strip() for k in str(f.type).split("|")]
        plain = [_PLAIN_TYPES[k] for k in kinds if k in _PLAIN_TYPES]
        if not plain or len(plain) + ("None" in kinds) != len(kinds):
            continue  # an enum, a tuple or a nested message: its converter made (and checked) it
        test = " or ".join(f"type(m.{f.name}) is {k}" for k in plain)
        checks.append(f"(m.{f.name} is None or {test})" if "None" in kinds else f"({test})")
    return eval(f"lambda m: {' and '.join(checks) or 'True'}")  # type: ignore[no-any-return]  # noqa: S307


def _wrong_type(message: Any) -> str:
    """The first field of ``message`` that is not of its annotated type, said (the slow path of a refusal)."""
    for f in dataclasses.fields(message):
        value = getattr(message, f.name)
        kinds = [k.strip() for k in str(f.type).split("|")]
        if all(k in _PLAIN_TYPES or k == "None" for k in kinds) and not (
            (value is None and "None" in kinds) or any(type(value).__name__ == k for k in kinds)
        ):
            return f"{f.name} must be {' or '.join(kinds)}, got {type(value).__name__} {quoted(value)}"
    return _NO_WRONG_TYPE


_NO_WRONG_TYPE = "a field of the wrong type"


_CONVERTERS = {name: _field_converters(cls) for name, cls in _TYPES.items()}
_CHECKERS = {name: _type_checker(cls) for name, cls in _TYPES.items()}


def _tagged_dict_maker(cls: type) -> Any:
    """A function ``message -> {"type": TYPE, <field>: <value>, ...}`` for one message class.

    Generated, like a dataclass ``__init__``, because orjson serializes a dict about twice as fast as a slotted
    dataclass, and encoding is on the engine's hot path (every input is journaled). Values stay Python objects:
    orjson writes enums as their values and nested dataclasses (``Balance``) as objects.
    """
    items = ", ".join(f"{f.name!r}: m.{f.name}" for f in dataclasses.fields(cls))
    tag = cls.TYPE  # type: ignore[attr-defined]
    return eval(f"lambda m: {{'type': {tag!r}, {items}}}")  # noqa: S307 - field names are identifiers


_TAGGED = {name: _tagged_dict_maker(cls) for name, cls in _TYPES.items()}


def to_dict(message: Message) -> dict[str, Any]:
    """The JSON-ready form of a message: its fields plus the ``type`` tag."""
    return orjson.loads(encode(message))  # type: ignore[no-any-return]


def encode(message: Message) -> bytes:
    """One JSON object, ``{"type": ..., <fields>}``, as bytes (no trailing newline)."""
    return orjson.dumps(_TAGGED[message.TYPE](message))


def encode_line(message: Message) -> bytes:
    """:func:`encode` plus a newline: one line of a journal or of the stdio protocol."""
    return orjson.dumps(_TAGGED[message.TYPE](message), option=orjson.OPT_APPEND_NEWLINE)


def from_dict(data: dict[str, Any]) -> Message:
    """Rebuild a message from its JSON-ready form; unknown types and fields, and a field of the wrong type (a
    quantity written as a string), raise :class:`InvalidInput` naming the field."""
    if not isinstance(data, dict):
        raise InvalidInput(f"a message is a mapping with a type, got {type(data).__name__} {quoted(data)}")
    return _from_fields(dict(data))


def _from_fields(fields: dict[str, Any]) -> Message:
    """:func:`from_dict` on a dict of its own (a decoded line's): the ``type`` is popped, the fields converted in
    place, no copy made."""
    kind = fields.pop("type", None)
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        names = ", ".join(map(str, fields))
        raise InvalidInput(f"unknown or missing message type {quoted(kind)} (fields: {names[:200]})")
    try:
        for name, convert in _CONVERTERS[kind].items():
            if name in fields:
                fields[name] = convert(fields[name])
        message = cls(**fields)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{kind}: {exc}") from exc
    if not _CHECKERS[kind](message):  # a field of the wrong type would crash the engine that applies the message
        raise InvalidInput(f"{kind}: {_wrong_type(message)}")
    return message  # type: ignore[no-any-return]


def decode(raw: bytes | str) -> Message:
    """Parse one encoded message."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"expected a JSON object, got {type(data).__name__}")
    return _from_fields(data)


def checked(message: Message) -> Message:
    """``message`` as the codec reads it back, for one built in Python (a message's ``__init__`` checks nothing):
    a field of the wrong type (a quantity as a str or float, a ``ts`` of None, an int beyond 64 bits) raises
    :class:`InvalidInput` naming it, and an enum given by its value (``side="BUY"``) comes back as the enum, which
    the engine compares by identity. What is journaled must read back, or recovery fails on that line."""
    try:
        raw = encode(message)
    except TypeError as exc:  # a value JSON cannot hold: a numpy number, a Decimal, an int beyond 64 bits
        wrong = _wrong_type(message)
        raise InvalidInput(f"{message.TYPE}: {wrong if wrong != _NO_WRONG_TYPE else exc}") from None
    return decode(raw)
