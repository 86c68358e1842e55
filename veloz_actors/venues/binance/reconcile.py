"""Binance reconciliation, free of I/O: what the exchange says about an account, against what the kernel knows.

The trading adapter (:mod:`.venue`) fetches the exchange's side (``account.status``, ``openOrders.status``,
``order.status`` for each order the kernel holds open that is no longer open there, ``myTrades`` per symbol from the
last journaled trade id, or per order) into a :class:`VenueSnapshot`; :func:`build_reconciliation` compares it with a
:class:`KernelView` (the kernel's open orders with their filled quantity and booked trade ids, the last trade id per
symbol, the balances) and returns a :class:`ReconcileReport`:

* ``reports``: the execution reports the kernel lacks, in the order to apply them: per order (oldest first) an
  acceptance when the kernel has no venue order id yet, its fills by trade id, then its end (cancelled, expired,
  rejected) once the order is final and not FILLED (or FILLED short of its quantity because self-trade prevention
  took the rest: expired ``SELF_TRADE_PREVENTED``). A kernel order the exchange has never heard of (``order.status``
  -2013 once its ``recvWindow`` has passed) is rejected: it was never placed, so its funds are released. The kernel
  applies every report idempotently (fills are known by trade id), so a repeat reconciliation is harmless.
* ``external_orders``: orders of the account that VeloZ did not place (open at the exchange, or trades of an order
  with a client id no VeloZ order has), one :class:`ExternalOrder` each;
* ``balance_differences``: per asset, the exchange's total (free + locked) against the kernel's total after the fills
  in ``reports`` that the kernel did not have and the account's balances already include (a trade made after the
  account was read, ``VenueSnapshot.balances_until``, is on neither side); what is left is a deposit, a withdrawal, a
  trade outside VeloZ: one :class:`BalanceDifference` each;
* ``balances``: the exchange's balances as :class:`~veloz_actors.messages.VenueBalance` messages;
* ``summary``: a JSON-ready dict for ``STATUS``.

Every event id is derived from the exchange's ids and amounts (``BINANCE:main:order:BTCUSDT:123``,
``BINANCE:main:balance:USDT:+100``), never from a clock or a counter: a repeat reconciliation of the same state gives
the same ids, so a consumer can drop the ones it has seen.

:func:`kernel_view` reads a :class:`~veloz_actors.core.kernel.TradingKernel`'s view of one account (call it on the
thread that owns the kernel).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...fixed import SCALE, format_decimal
from ...messages import (
    Error,
    RejectReason,
    Side,
    VenueBalance,
    VenueConnection,
    VenueOrderAccepted,
    VenueOrderExpired,
    VenueOrderFilled,
    VenueOrderRejected,
)
from .user_data import VENUE, AccountTrade, OrderReport, OrderState

if TYPE_CHECKING:
    from ...core.instruments import Instrument

__all__ = [
    "NEVER_PLACED",
    "BalanceDifference",
    "ExternalOrder",
    "KernelView",
    "KnownOrder",
    "ReconcileReport",
    "VenueSnapshot",
    "balance_effects",
    "notice_events",
    "build_reconciliation",
    "kernel_view",
    "leaves_after",
]

#: ``VenueSnapshot.states`` value of an order the exchange does not know (``-2013`` after its recvWindow passed)
NEVER_PLACED = None
#: ``VenueSnapshot.states`` value of an order archived by the exchange (``-2026``: closed, nothing executed)
ARCHIVED = "ARCHIVED"


# ------------------------------------------------------------------------------------------------ the kernel's view


@dataclass(frozen=True, slots=True)
class KnownOrder:
    """An order the kernel holds open. ``filled_qty`` is what it has booked; ``trade_ids`` the fills it booked (None:
    unknown, then ``KernelView.last_trade_ids`` or ``filled_qty`` tell which fills are new); ``ts`` the order's
    command time (ns; 0: long ago), used to decide when "no such order" means "never placed"."""

    client_order_id: str
    symbol: str
    filled_qty: int = 0
    venue_order_id: str = ""
    trade_ids: frozenset[int] | None = None
    ts: int = 0


@dataclass(frozen=True, slots=True)
class KernelView:
    """What the kernel knows of one account: its open orders, the last trade id it journaled per symbol (trades at
    or below it are booked), and its balances per asset as totals (free + locked); ``balances`` None: not compared."""

    orders: tuple[KnownOrder, ...] = ()
    last_trade_ids: Mapping[str, int] = field(default_factory=dict)
    balances: Mapping[str, int] | None = None

    @classmethod
    def of(
        cls,
        known_orders: Iterable[KnownOrder] = (),
        last_trade_ids: Mapping[str, int] | None = None,
        balances: Mapping[str, int | tuple[int, int]] | None = None,
    ) -> KernelView:
        """From the caller's pieces; a balance may be a total or ``(free, locked)``."""
        totals = None
        if balances is not None:
            totals = {a: (b[0] + b[1] if isinstance(b, tuple) else int(b)) for a, b in balances.items()}
        return cls(tuple(known_orders), dict(last_trade_ids or {}), totals)


def kernel_view(kernel: Any, account_id: str = "main", *, venue: str = VENUE) -> KernelView:
    """A :class:`~veloz_actors.core.kernel.TradingKernel`'s view of ``account_id`` at ``venue``: its open orders
    (filled quantity, venue order id, the trade ids booked), the highest trade id booked per symbol over the orders it
    still holds, and its balances. Read it on the thread that applies messages to the kernel."""
    orders = []
    last: dict[str, int] = {}
    for order in kernel.oms.orders(account_id=account_id):
        ids = frozenset(t for v, t in (order.trade_keys or ()) if v == venue)
        if ids:
            last[order.symbol] = max(last.get(order.symbol, -1), max(ids))
        if order.is_open:
            orders.append(
                KnownOrder(
                    client_order_id=order.client_order_id,
                    symbol=order.symbol,
                    filled_qty=order.filled,
                    venue_order_id=order.venue_order_id,
                    trade_ids=ids,
                    ts=order.command.ts,
                )
            )
    balances = {asset: free + locked for asset, (free, locked) in kernel.ledger.balances(account_id).items()}
    orders.sort(key=lambda o: (o.ts, o.client_order_id))
    return KernelView(tuple(orders), last, balances)


# ------------------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class ExternalOrder:
    """An order of the account that VeloZ did not place: open at the exchange (``status`` its Binance status) or
    known only from its trades (``status`` empty). ``id`` is stable: venue, account, symbol and Binance order id."""

    id: str
    venue: str
    account_id: str
    symbol: str
    venue_order_id: str
    client_order_id: str
    side: Side
    status: str
    order_type: str
    price: int
    orig_qty: int
    executed_qty: int
    trade_ids: tuple[int, ...]
    ts: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "symbol": self.symbol,
            "venue_order_id": self.venue_order_id,
            "client_order_id": self.client_order_id,
            "side": self.side.value,
            "status": self.status,
            "type": self.order_type,
            "price": format_decimal(self.price),
            "orig_qty": format_decimal(self.orig_qty),
            "executed_qty": format_decimal(self.executed_qty),
            "trade_ids": list(self.trade_ids),
        }


@dataclass(frozen=True, slots=True)
class BalanceDifference:
    """The exchange's total of ``asset`` differs from the kernel's (after the fills the reconciliation reports):
    ``delta = venue_total - expected_total`` (a deposit is positive). ``id`` is stable: venue, account, asset, delta."""

    id: str
    venue: str
    account_id: str
    asset: str
    venue_total: int
    expected_total: int
    delta: int
    ts: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "asset": self.asset,
            "venue_total": format_decimal(self.venue_total),
            "expected_total": format_decimal(self.expected_total),
            "delta": _signed(self.delta),
        }


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """See the module docstring."""

    reports: tuple[OrderReport, ...]
    balances: tuple[VenueBalance, ...]
    external_orders: tuple[ExternalOrder, ...]
    balance_differences: tuple[BalanceDifference, ...]
    summary: dict[str, Any]

    @property
    def events(self) -> tuple[ExternalOrder | BalanceDifference, ...]:
        return self.external_orders + self.balance_differences


# ----------------------------------------------------------------------------------------------------- snapshot


@dataclass(slots=True)
class VenueSnapshot:
    """The exchange's side, as fetched.

    ``states``: for a known order not open at the exchange, its ``order.status`` (:data:`NEVER_PLACED` for -2013,
    :data:`ARCHIVED` for -2026); an order missing here (and from ``open_orders``) was not looked at (skipped).
    ``trades``: every trade fetched, any order, per symbol. ``order_clients``: Binance order id -> client order id
    for orders learnt otherwise (``order.status`` by order id). ``ours``: client ids VeloZ placed that are not in the
    view (closed, or being placed right now): neither reconciled nor external, their trades compared with the balances
    when the view lacks them; ``in_flight``: of those, the ones the view has, left out because their own request or
    resolution is under way, with the trade ids it booked of each. ``unread_assets``: assets whose balance
    could not be read (left out of ``balances``), not compared. ``balances_until``: the latest trade
    time (ns) the balances include: the account's ``updateTime``, or the time the account was asked if later (the
    trades are read after the account, and one made in between is not in its balances); 0: every trade.
    """

    balances: list[VenueBalance]
    account_ts: int
    open_orders: list[OrderState]
    states: dict[str, OrderState | str | None] = field(default_factory=dict)
    trades: dict[str, list[AccountTrade]] = field(default_factory=dict)
    order_clients: dict[str, str] = field(default_factory=dict)
    ours: frozenset[str] = frozenset()
    now: int = 0
    balances_until: int = 0
    in_flight: Mapping[str, frozenset[int]] = field(default_factory=dict)
    unread_assets: frozenset[str] = frozenset()


# ------------------------------------------------------------------------------------------------------- build


def _signed(units: int) -> str:
    return ("+" if units >= 0 else "") + format_decimal(units)


def leaves_after(state: OrderState | None, orig_qty: int, cum: int, last_of_final: bool) -> int:
    """What an order still works after a fill that brought it to ``cum``: 0 on the last fill of a final order,
    ``orig - prevented - cum`` while it works (``prevented``: what self-trade prevention took off it), and at least 1
    while an order sized by quote amount (no base quantity) works."""
    if last_of_final:
        return 0
    orig = state.orig_qty if state is not None and state.orig_qty else orig_qty
    if orig and state is not None and state.prevented_qty:
        orig = max(orig - state.prevented_qty, 1)
    if orig and cum < orig:
        return orig - cum
    return 1


def balance_effects(trade: AccountTrade | VenueOrderFilled, side: Side, inst: Instrument) -> dict[str, int]:
    """How one fill changes the account's totals, as the kernel books it: a buy receives ``qty`` base and pays the
    notional in quote, a sell the other way round; the fee comes off its asset."""
    notional = trade.price * trade.qty // SCALE
    sign = 1 if side is Side.BUY else -1
    out = {inst.base_asset: sign * trade.qty, inst.quote_asset: -sign * notional}
    if trade.fee:
        out[trade.fee_asset] = out.get(trade.fee_asset, 0) - trade.fee
    return out


def build_reconciliation(
    view: KernelView,
    snap: VenueSnapshot,
    instruments: Mapping[str, Instrument],
    *,
    account_id: str,
    venue: str = VENUE,
) -> ReconcileReport:
    """Compare ``snap`` with ``view`` (see the module docstring). Pure and deterministic."""
    prefix = f"{venue}:{account_id}"
    known = {o.client_order_id: o for o in view.orders}
    open_by_client = {s.client_order_id: s for s in snap.open_orders}
    state_of: dict[str, OrderState | str | None] = dict(snap.states)
    state_of.update(open_by_client)
    clients: dict[str, str] = dict(snap.order_clients)
    for s in snap.open_orders:
        clients[s.venue_order_id] = s.client_order_id
    for found in snap.states.values():
        if isinstance(found, OrderState):
            clients[found.venue_order_id] = found.client_order_id
    for o in view.orders:
        if o.venue_order_id:
            clients.setdefault(o.venue_order_id, o.client_order_id)
    by_order: dict[str, list[AccountTrade]] = {}
    for symbol in sorted(snap.trades):
        for t in snap.trades[symbol]:
            by_order.setdefault(t.venue_order_id, []).append(t)
    for rows in by_order.values():
        rows.sort(key=lambda t: t.trade_id)

    reports: list[OrderReport] = []
    effects: dict[str, int] = {}
    never_placed: list[str] = []
    closed = accepted = fills = fills_new = 0
    skipped: list[str] = []

    def add_effects(t: AccountTrade, side: Side, inst: Instrument | None) -> None:
        """Add a new trade's effects on the balances, if the balances as read include it (``balances_until``)."""
        if inst is not None and (not snap.balances_until or t.ts <= snap.balances_until):
            for asset, amount in balance_effects(t, side, inst).items():
                effects[asset] = effects.get(asset, 0) + amount

    def order_key(o: KnownOrder) -> tuple[int, int, str]:
        s = state_of.get(o.client_order_id)
        t = s.time if isinstance(s, OrderState) else o.ts
        vid = s.venue_order_id if isinstance(s, OrderState) else o.venue_order_id
        return (t, int(vid) if vid.isdigit() else 0, o.client_order_id)

    for o in sorted(view.orders, key=order_key):
        coid = o.client_order_id
        if coid not in state_of:
            skipped.append(coid)
            continue
        state = state_of[coid]
        if state is NEVER_PLACED:
            never_placed.append(coid)
            reports.append(
                VenueOrderRejected(
                    venue=venue,
                    client_order_id=coid,
                    account_id=account_id,
                    symbol=o.symbol,
                    reason=RejectReason.VENUE_REJECTED,
                    detail="never reached Binance: order.status found no such order after its recvWindow passed, so "
                    "it was not placed; its funds are released",
                    ts=snap.now,
                )
            )
            continue
        if state == ARCHIVED:
            closed += 1
            reports.append(
                VenueOrderExpired(
                    venue=venue,
                    client_order_id=coid,
                    account_id=account_id,
                    symbol=o.symbol,
                    reason=RejectReason.ORDER_NOT_OPEN,
                    ts=snap.now,
                )
            )
            continue
        assert isinstance(state, OrderState)
        if not o.venue_order_id:
            accepted += 1
            reports.append(
                VenueOrderAccepted(
                    venue=venue,
                    client_order_id=coid,
                    account_id=account_id,
                    symbol=state.symbol,
                    venue_order_id=state.venue_order_id,
                    ts=state.time,
                )
            )
        trades = by_order.get(state.venue_order_id, [])
        inst = instruments.get(state.symbol)
        # cumulative quantity before the first fetched trade: what the exchange executed minus what was fetched
        cum = max(state.executed_qty - sum(t.qty for t in trades), 0)
        new_by_filled = o.filled_qty
        for i, t in enumerate(trades):
            cum += t.qty
            last_of_final = state.last_fill_closes and i == len(trades) - 1 and cum >= state.executed_qty
            reports.append(
                t.to_report(
                    client_order_id=coid,
                    account_id=account_id,
                    leaves_qty=leaves_after(state, 0, cum, last_of_final),
                    venue=venue,
                )
            )
            fills += 1
            if o.trade_ids is not None:
                new = t.trade_id not in o.trade_ids
            elif state.symbol in view.last_trade_ids:
                new = t.trade_id > view.last_trade_ids[state.symbol]
            else:
                new = cum > new_by_filled
            if new:
                fills_new += 1
                add_effects(t, state.side, inst)
        if state.needs_end:
            closed += 1
            reports.append(state.report(account_id, venue=venue))

    # fills of VeloZ's own orders left to the adapter (placed after the view was read, or in flight when the
    # reconciliation began): not reported here, but the account's balances have them and the view's may not
    for vid, trades in by_order.items():
        coid = clients.get(vid, "")
        if coid in known or coid not in snap.ours:
            continue
        booked = snap.in_flight.get(coid)
        for t in trades:
            inst = instruments.get(t.symbol)
            # an order not in the view at all: its trades after the last one the view booked are not in its balances
            last = view.last_trade_ids.get(t.symbol, -1)
            new = t.trade_id not in booked if booked is not None else t.trade_id > last
            if new:
                add_effects(t, t.side, inst)

    # orders VeloZ did not place
    external: dict[str, dict[str, Any]] = {}
    ours = snap.ours | set(known)
    for s in snap.open_orders:
        if s.client_order_id in ours:
            continue
        external[s.venue_order_id] = {"state": s, "trades": []}
    for vid, trades in by_order.items():
        coid = clients.get(vid, "")
        if coid in ours:
            continue
        entry = external.setdefault(vid, {"state": None, "trades": [], "client": coid})
        entry["trades"] = trades
        entry.setdefault("client", coid)
    external_orders = []
    for vid in sorted(external, key=lambda v: (int(v) if v.isdigit() else 0, v)):
        entry = external[vid]
        s = entry["state"]
        trades = entry["trades"]
        if s is not None:
            symbol, side, coid = s.symbol, s.side, s.client_order_id
            status, kind, price, orig, executed, ts = (
                s.status, s.order_type, s.price, s.orig_qty, s.executed_qty, s.time
            )  # fmt: skip
        else:
            first = trades[0]
            symbol, side, coid = first.symbol, first.side, entry.get("client", "")
            status, kind, price, orig, ts = "", "", first.price, 0, first.ts
            executed = sum(t.qty for t in trades)
        external_orders.append(
            ExternalOrder(
                id=f"{prefix}:order:{symbol}:{vid}",
                venue=venue,
                account_id=account_id,
                symbol=symbol,
                venue_order_id=vid,
                client_order_id=coid,
                side=side,
                status=status,
                order_type=kind,
                price=price,
                orig_qty=orig,
                executed_qty=executed,
                trade_ids=tuple(t.trade_id for t in trades),
                ts=ts,
            )
        )

    differences = []
    if view.balances is not None:
        venue_totals = {b.asset: b.free + b.locked for b in snap.balances}
        for asset in sorted((set(venue_totals) | set(view.balances) | set(effects)) - snap.unread_assets):
            expected = view.balances.get(asset, 0) + effects.get(asset, 0)
            actual = venue_totals.get(asset, 0)
            if actual != expected:
                delta = actual - expected
                differences.append(
                    BalanceDifference(
                        id=f"{prefix}:balance:{asset}:{_signed(delta)}",
                        venue=venue,
                        account_id=account_id,
                        asset=asset,
                        venue_total=actual,
                        expected_total=expected,
                        delta=delta,
                        ts=snap.account_ts,
                    )
                )

    summary = {
        "venue_open_orders": len(snap.open_orders),
        "known_open_orders": len(view.orders),
        "skipped": skipped,
        "accepted": accepted,
        "fills": fills,
        "fills_new": fills_new,
        "closed": closed,
        "never_placed": never_placed,
        "external_orders": [e.id for e in external_orders],
        "balances_compared": view.balances is not None,
        "balance_differences": {d.asset: _signed(d.delta) for d in differences},
        "reports": len(reports),
    }
    return ReconcileReport(
        reports=tuple(reports),
        balances=tuple(snap.balances),
        external_orders=tuple(external_orders),
        balance_differences=tuple(differences),
        summary=summary,
    )


def notice_events(notice: Any) -> list[Any]:
    """The trading adapter's notices as bus/stdio events: connection changes as they are; a finished
    reconciliation as a ``reconciled`` connection state with its summary; each order placed outside VeloZ and each
    balance moved outside trading as an ``Error`` event naming it (with the reconciliation's stable id)."""
    kind = type(notice)
    now = time.time_ns()
    if kind is VenueConnection or kind is Error:
        return [notice]
    if kind is ReconcileReport:
        summary = notice.summary
        detail = (
            f"{summary.get('reports', 0)} reports, {summary.get('fills_new', 0)} new fills, "
            f"{len(summary.get('external_orders', []))} outside orders, balance differences "
            f"{summary.get('balance_differences') or 'none'}"
        )
        return [VenueConnection(venue="BINANCE", state="reconciled", detail=detail, ts=now)]
    if kind is ExternalOrder:
        info = notice.to_dict()
        return [Error(code="VENUE_EXTERNAL_ORDER", message=f"an order VeloZ did not place: {info}", ts=now)]
    if kind is BalanceDifference:
        info = notice.to_dict()
        return [Error(code="VENUE_BALANCE_DIFFERENCE", message=f"moved outside trading: {info}", ts=now)]
    return [Error(code="VENUE_NOTICE", message=f"{kind.__name__}", ts=now)]
