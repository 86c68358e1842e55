"""The order management system: each order's state machine, its history, and the indexes to query orders.

The lifecycle is a transition table; :meth:`Order.transition` raises :class:`IllegalTransition` at once for anything
the table does not allow (NautilusTrader ``model/orders/base.pyx``). The kernel moves an order to SUBMITTED when it
passes risk and its funds are reserved; from there the venue's execution reports drive it::

    NEW ──> SUBMITTED ──> ACCEPTED ──> PARTIALLY_FILLED ──> FILLED
     │         │  │          │               │
     │         │  │          └───────────────┴──> PENDING_CANCEL ──> CANCELLED
     │         │  │                                  (a fill or a cancel rejection may still come)
     │         │  └──> UNKNOWN (the venue's answer was lost) ──> any state a report then says
     │         └──> REJECTED / FILLED / CANCELLED / EXPIRED (the venue answered at once)
     └──> REJECTED (risk, funds)

FILLED, CANCELLED, REJECTED and EXPIRED are terminal: nothing leaves them.
"""

from __future__ import annotations

from .._exceptions import IllegalTransition
from ..messages import (
    CancelOrder,
    Liquidity,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderStatus,
    OrderType,
    PlaceOrder,
    RejectReason,
    Side,
    TimeInForce,
    builder,
    members,
)

__all__ = ["OMS", "OPEN", "TERMINAL", "TRANSITIONS", "UNSENT", "Order"]

# enum members read on the hot paths (messages.members: a module object's attributes, ~10x cheaper to read)
_RejectReason = members(RejectReason)

# an order's events, built as their classes build them, cheaper (messages.builder): several per order
_order_accepted, _order_filled = builder(OrderAccepted), builder(OrderFilled)
_order_cancelled, _order_expired = builder(OrderCancelled), builder(OrderExpired)

_S = members(OrderStatus)
# the statuses of OrderStatus.is_open and .is_terminal, as sets: an enum property read costs a call per order step
OPEN = frozenset(s for s in OrderStatus if s.is_open)
TERMINAL = frozenset(s for s in OrderStatus if s.is_terminal)
# the only statuses an order never sent to its venue can be in: NEW leaves only for SUBMITTED (sent) or REJECTED
UNSENT = frozenset({_S.NEW, _S.REJECTED})
_WORKING = frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.EXPIRED, _S.PENDING_CANCEL, _S.UNKNOWN})
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    _S.NEW: frozenset({_S.SUBMITTED, _S.REJECTED}),
    _S.SUBMITTED: _WORKING | {_S.ACCEPTED, _S.REJECTED},
    _S.ACCEPTED: _WORKING,
    _S.PARTIALLY_FILLED: _WORKING,
    # a cancel in flight: fills may still arrive, and a rejected cancel puts the order back where it was; the order
    # itself may still be refused by the venue (it was cancelled before the venue's answer to it came)
    _S.PENDING_CANCEL: frozenset(
        {
            _S.PENDING_CANCEL,
            _S.REJECTED,
            _S.SUBMITTED,
            _S.ACCEPTED,
            _S.PARTIALLY_FILLED,
            _S.FILLED,
            _S.CANCELLED,
            _S.EXPIRED,
            _S.UNKNOWN,
        }
    ),
    _S.UNKNOWN: frozenset(
        {_S.ACCEPTED, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.EXPIRED, _S.REJECTED, _S.PENDING_CANCEL}
    ),
    _S.FILLED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.EXPIRED: frozenset(),
}


class Order:
    """One order's mutable state inside the core (never sent anywhere: events carry its changes).

    ``reserved`` is what the account still holds locked for this order; ``fee_numerator`` accumulates
    ``rate x notional`` exactly so that the fees charged over all fills are ``ceil(total / 1e8)``, never more.
    """

    __slots__ = (
        "client_order_id", "order_id", "account_id", "symbol", "side", "order_type", "tif", "price", "qty",
        "quote_qty", "filled", "status", "reserved", "reserve_asset", "fee_numerator", "fees_paid", "notional_filled",
        "trail", "command", "protect_price", "venue_order_id", "closed_ts", "trade_keys", "last_cancel",
    )  # fmt: skip

    def __init__(self, command: PlaceOrder, order_id: int) -> None:
        self.client_order_id = command.client_order_id
        self.order_id = order_id
        self.account_id = command.account_id
        self.symbol = command.symbol
        self.side: Side = command.side
        self.order_type: OrderType = command.order_type
        self.tif: TimeInForce = command.tif
        self.price: int | None = command.price
        self.qty: int = command.qty
        self.quote_qty: int | None = command.quote_qty
        self.filled = 0
        self.status = _S.NEW
        self.reserved = 0
        self.reserve_asset = ""
        self.fee_numerator = 0
        self.fees_paid = 0
        self.notional_filled = 0
        # the statuses it went through and when, flat (status, ts, status, ts, ...): no tuple per step to allocate,
        # nor for the young collector to scan while the order rests (see :attr:`history`)
        self.trail: list[OrderStatus | int] = [_S.NEW, command.ts]
        self.command = command
        self.protect_price: int | None = None
        self.venue_order_id = ""
        self.closed_ts = 0
        # the venue fills booked, by (venue, trade id): their (price, qty, fee, fee asset)
        self.trade_keys: dict[tuple[str, int], tuple[int, int, int, str]] | None = None
        # the last CancelOrder the kernel took for this order's id while the order was in memory (a retry of it has
        # no second effect); the kernel keeps the id's record itself while it has no order (TradingKernel.last_cancel)
        self.last_cancel: CancelOrder | None = None

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        self.last_cancel = None  # an order of a snapshot written before: the kernel's map held its cancel's record
        for name, value in state[1].items():
            if name == "history":  # a snapshot written before the trail: a list of (status, ts) pairs
                name, value = "trail", [item for pair in value for item in pair]  # type: ignore[attr-defined]
            setattr(self, name, value)

    @property
    def history(self) -> list[tuple[OrderStatus, int]]:
        """Each status the order went through and its time, oldest first."""
        trail = self.trail
        return list(zip(trail[::2], trail[1::2], strict=True))  # type: ignore[arg-type]

    @property
    def leaves(self) -> int:
        return self.qty - self.filled

    @property
    def is_open(self) -> bool:
        """Working at the venue, or possibly so (its funds are still reserved)."""
        return self.status in OPEN

    @property
    def sent(self) -> bool:
        """Sent to its venue (the kernel's own rejections never are): only such an order can have venue reports."""
        if self.status not in UNSENT:
            return True
        trail = self.trail
        return len(trail) > 2 and trail[2] is _S.SUBMITTED

    def transition(self, to: OrderStatus, ts: int) -> None:
        if to not in TRANSITIONS[self.status]:
            raise IllegalTransition(f"order {self.client_order_id}: {self.status} -> {to} is not allowed")
        self.status = to
        self.trail += (to, ts)

    def accepted_event(self, ts: int) -> OrderAccepted:
        """The event of an order the venue just accepted, with the quantity and price as ordered."""
        command = self.command
        return _order_accepted(
            client_order_id=self.client_order_id,
            order_id=self.order_id,
            account_id=self.account_id,
            symbol=self.symbol,
            side=self.side,
            order_type=self.order_type,
            tif=self.tif,
            price=command.price,
            qty=command.qty,
            ts=ts,
        )

    def fill_event(
        self,
        *,
        trade_id: int,
        price: int,
        qty: int,
        fee: int,
        fee_asset: str,
        liquidity: Liquidity,
        ts: int,
        quote_leaves: int = 0,
    ) -> OrderFilled:
        """The event of a fill already counted in ``filled``. An order by quote amount has no base quantity left to
        state: its ``leaves_qty`` is ``quote_leaves``, the kernel's estimate (what its unspent quote buys at the fill's
        price, at least 1 unit; 0 with its last fill), so a reader taking ``leaves_qty == 0`` for the order's end is
        right for it too (journals of semantics 6 and less: always 0, every fill looking like the last)."""
        return _order_filled(
            client_order_id=self.client_order_id,
            order_id=self.order_id,
            account_id=self.account_id,
            symbol=self.symbol,
            side=self.side,
            trade_id=trade_id,
            price=price,
            qty=qty,
            fee=fee,
            fee_asset=fee_asset,
            liquidity=liquidity,
            cum_qty=self.filled,
            leaves_qty=self.qty - self.filled if self.quote_qty is None else quote_leaves,
            ts=ts,
        )

    def closed_event(self, reason: RejectReason | None, ts: int) -> OrderCancelled | OrderExpired | None:
        """The event of an order that just became CANCELLED or EXPIRED (None for the other states)."""
        if self.status is _S.CANCELLED:
            return _order_cancelled(
                client_order_id=self.client_order_id,
                order_id=self.order_id,
                account_id=self.account_id,
                symbol=self.symbol,
                filled_qty=self.filled,
                reason=reason or _RejectReason.USER_CANCEL,
                ts=ts,
            )
        if self.status is _S.EXPIRED:
            return _order_expired(
                client_order_id=self.client_order_id,
                order_id=self.order_id,
                account_id=self.account_id,
                symbol=self.symbol,
                filled_qty=self.filled,
                reason=reason or _RejectReason.IOC_UNFILLED,
                ts=ts,
            )
        return None

    def to_dict(self) -> dict[str, object]:
        return {
            "client_order_id": self.client_order_id,
            "order_id": self.order_id,
            "account_id": self.account_id,
            "symbol": self.symbol,
            "side": self.side.value,
            "order_type": self.order_type.value,
            "tif": self.tif.value,
            "price": self.price,
            "qty": self.qty,
            "quote_qty": self.quote_qty,
            "filled_qty": self.filled,
            "status": self.status.value,
            "fees_paid": self.fees_paid,
            "notional_filled": self.notional_filled,
            "history": [(status.value, ts) for status, ts in self.history],
        }


class OMS:
    """Every order the engine has seen, by (account, client order id), with open-order and per-symbol indexes."""

    __slots__ = ("_orders", "_open", "_by_id", "_next_id")

    def __init__(self) -> None:
        self._orders: dict[tuple[str, str], Order] = {}
        self._open: dict[int, Order] = {}
        self._by_id: dict[int, Order] = {}
        self._next_id = 1

    def get(self, account_id: str, client_order_id: str) -> Order | None:
        return self._orders.get((account_id, client_order_id))

    def by_order_id(self, order_id: int) -> Order | None:
        return self._by_id.get(order_id)

    def create(self, command: PlaceOrder) -> Order:
        order = Order(command, self._next_id)
        self._next_id += 1
        self._orders[(command.account_id, command.client_order_id)] = order
        self._by_id[order.order_id] = order
        return order

    def mark_open(self, order: Order) -> None:
        self._open[order.order_id] = order

    def mark_closed(self, order: Order) -> None:
        self._open.pop(order.order_id, None)

    def forget(self, order: Order) -> None:
        """Drop a closed order from memory (the kernel wrote it to the order history file)."""
        self._orders.pop((order.account_id, order.client_order_id), None)
        self._by_id.pop(order.order_id, None)
        self._open.pop(order.order_id, None)

    def open_orders(self, account_id: str | None = None, symbol: str | None = None) -> list[Order]:
        return [
            o
            for o in self._open.values()
            if (account_id is None or o.account_id == account_id) and (symbol is None or o.symbol == symbol)
        ]

    def orders(
        self, *, account_id: str | None = None, status: OrderStatus | None = None, symbol: str | None = None
    ) -> list[Order]:
        return [
            o
            for o in self._orders.values()
            if (account_id is None or o.account_id == account_id)
            and (status is None or o.status is status)
            and (symbol is None or o.symbol == symbol)
        ]

    def __len__(self) -> int:
        return len(self._orders)

    def export(self, account_id: str | None = None) -> list[dict[str, object]]:
        """Every order (optionally of one account) as JSON-ready dicts, oldest first."""
        return [o.to_dict() for o in self._orders.values() if account_id is None or o.account_id == account_id]
