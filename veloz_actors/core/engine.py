"""The deterministic engine: instruments, matching, OMS, account and risk composed in one process.

``Engine.apply(message) -> list[event]`` is the whole interface. The engine reads no clock: every timestamp comes
from its inputs (commands carry ``ts``, the simulated market is driven by :class:`~veloz_actors.messages.Tick`), so
the same inputs give the same events, byte for byte. With a journal attached every input is appended to the journal
*before* it is applied, and a snapshot is written every ``snapshot_every`` inputs; :meth:`Engine.recover` rebuilds the
state from snapshot + journal and :func:`replay` re-runs a journal from the start.

Idempotency: a second ``PlaceOrder`` with a known client order id is rejected as a duplicate, but the *very same*
message applied twice (a retry) has no second effect at all; the same holds for ``CancelOrder`` and ``Tick``.

The backtest loop, the actor engine and the stdio interface all drive this class.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .._exceptions import JournalError
from ..fixed import SCALE
from ..messages import (
    BookDelta,
    BookTop,
    CancelOrder,
    CircuitBreakerTripped,
    Error,
    FundingRate,
    Kline,
    Liquidity,
    MarkPrice,
    Message,
    OrderRejected,
    OrderStatus,
    OrderType,
    PlaceOrder,
    RejectReason,
    ResetCircuitBreaker,
    Side,
    Tick,
    Ticker,
    TimeInForce,
    Trade,
)
from .account import Ledger
from .instruments import Instrument, ceil_div
from .journal import Durability, Journal, read_journal, read_snapshot, write_snapshot
from .matching import OrderBook
from .oms import OMS, Order
from .risk import RiskEngine, RiskLimits
from .simmarket import SimMarket, SimSymbol

__all__ = ["Engine", "EngineConfig", "replay", "tune_gc"]

MM_ACCOUNT = "sim-mm"


def tune_gc() -> None:
    """Collect the young generation less often: an engine holds ~10^5 live orders, and CPython's default threshold
    (700 allocations) re-scans them thousands of times a second. Called by the engine's process entry points, never
    on import."""
    import gc

    gc.set_threshold(50_000, 20, 100)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything that determines an engine's behaviour (and so must match between a journal and its replay)."""

    instruments: tuple[Instrument, ...]
    balances: dict[str, dict[str, int]]  # account -> asset -> initial free balance
    risk: RiskLimits = field(default_factory=RiskLimits)
    valuation_asset: str = "USDT"
    sim_symbols: tuple[SimSymbol, ...] = ()
    seed: int = 7
    market_maker_balances: dict[str, int] = field(default_factory=dict)
    snapshot_every: int = 10_000
    emit_account_updates: bool = True

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["risk"]["exempt_accounts"] = sorted(self.risk.exempt_accounts)
        # JSON-normal form (lists, not tuples): it is compared with the header read back from a journal
        return orjson.loads(orjson.dumps(data))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineConfig:
        """Inverse of :meth:`to_json` (used to rebuild the engine of a journal from its header)."""
        try:
            risk = dict(data["risk"])
            risk["exempt_accounts"] = frozenset(risk.get("exempt_accounts", ()))
            return cls(
                instruments=tuple(Instrument(**i) for i in data["instruments"]),
                balances={a: dict(b) for a, b in data["balances"].items()},
                risk=RiskLimits(**risk),
                valuation_asset=data["valuation_asset"],
                sim_symbols=tuple(SimSymbol(**s) for s in data["sim_symbols"]),
                seed=data["seed"],
                market_maker_balances=dict(data["market_maker_balances"]),
                snapshot_every=data["snapshot_every"],
                emit_account_updates=data["emit_account_updates"],
            )
        except (KeyError, TypeError) as exc:
            raise JournalError(f"journal header has an unusable engine config: {exc}") from exc


class Engine:
    """The trading core in one process. Not thread-safe: one caller applies messages in order."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        journal_path: str | Path | None = None,
        durability: Durability = "group",
        group_ms: float = 5.0,
    ) -> None:
        self.config = config
        self.instruments = {i.symbol: i for i in config.instruments}
        self.books = {s: OrderBook(s) for s in self.instruments}
        self.oms = OMS()
        self.ledger = Ledger()
        limits = config.risk
        if config.sim_symbols:
            limits = _with_exempt(limits, MM_ACCOUNT)
        self.risk = RiskEngine(limits)
        self.reference: dict[str, int] = {}
        self.trade_ids = {s: 0 for s in self.instruments}
        self.seq = 0
        self.last_tick = -1
        self.last_cancel: dict[tuple[str, str], CancelOrder] = {}
        self.last_duplicate: dict[tuple[str, str], PlaceOrder] = {}  # the last PlaceOrder rejected as a duplicate
        self.internal_orders = 0
        self.quiet_accounts = frozenset({MM_ACCOUNT})
        self.sim: SimMarket | None = None
        for account, assets in sorted(config.balances.items()):
            for asset, amount in sorted(assets.items()):
                self.ledger.deposit(account, asset, amount)
        if config.sim_symbols:
            unknown = [s.symbol for s in config.sim_symbols if s.symbol not in self.instruments]
            if unknown:
                raise JournalError(f"simulated symbols without an instrument: {unknown}")
            self.sim = SimMarket(config.sim_symbols, config.seed)
            for asset, amount in sorted(config.market_maker_balances.items()):
                self.ledger.deposit(MM_ACCOUNT, asset, amount)
            for symbol, mid in self.sim.mids.items():
                self.reference[symbol] = mid
        self.journal: Journal | None = None
        self.snapshot_path: Path | None = None
        if journal_path is not None:
            self.attach_journal(journal_path, durability=durability, group_ms=group_ms)

    # ------------------------------------------------------------------------------------------------- persistence

    def attach_journal(self, path: str | Path, *, durability: Durability = "group", group_ms: float = 5.0) -> None:
        self.journal = Journal(path, self.config.to_json(), durability=durability, group_ms=group_ms)
        self.snapshot_path = Path(str(path) + ".snapshot")

    def close(self) -> None:
        """Flush and close the journal (idempotent)."""
        if self.journal is not None:
            self.journal.close()

    def snapshot(self) -> bytes:
        """The whole state as bytes (the journal handle excluded)."""
        journal, self.journal = self.journal, None
        try:
            return pickle.dumps(self.__dict__, protocol=pickle.HIGHEST_PROTOCOL)
        finally:
            self.journal = journal

    def _restore(self, state: bytes) -> None:
        journal, snapshot_path = self.journal, self.snapshot_path
        self.__dict__.update(pickle.loads(state))
        self.journal, self.snapshot_path = journal, snapshot_path

    @classmethod
    def recover(
        cls, config: EngineConfig, journal_path: str | Path, *, durability: Durability = "group"
    ) -> tuple[Engine, list[Any]]:
        """Rebuild an engine from its snapshot and journal; returns it (journal attached) and the replayed events."""
        journal_path = Path(journal_path)
        engine = cls(config)
        events: list[Any] = []
        if journal_path.exists():
            header, messages = read_journal(journal_path)
            if header.get("config") != config.to_json():
                raise JournalError(f"{journal_path} was written by an engine with a different configuration")
            start = 0
            snapshot_path = Path(str(journal_path) + ".snapshot")
            snap = read_snapshot(snapshot_path)
            if snap is not None and snap[0] <= len(messages):
                start, state = snap
                engine._restore(state)
            elif snap is not None:
                # The snapshot covers lines the journal lost (a crash inside the durability window of an engine
                # that snapshotted without syncing first). Replaying the journal alone is exact; the snapshot must
                # go, or once new lines grow the journal past its count it would skip them.
                snapshot_path.unlink()
            for message in messages[start:]:
                events.extend(engine.apply(message))
        engine.attach_journal(journal_path, durability=durability)
        return engine, events

    # -------------------------------------------------------------------------------------------------------- apply

    def apply(self, message: Message) -> list[Any]:
        """Journal ``message`` (if a journal is attached), apply it, and return the events it caused."""
        journal = self.journal
        if journal is not None:
            journal.append(message)
        self.seq += 1
        kind = type(message)
        if kind is PlaceOrder:
            events = self._place(message)  # type: ignore[arg-type]
        elif kind is CancelOrder:
            events = self._cancel(message)  # type: ignore[arg-type]
        elif kind is Tick:
            events = self._tick(message)  # type: ignore[arg-type]
        elif kind is ResetCircuitBreaker:
            events = self._reset(message)  # type: ignore[arg-type]
        elif kind in _MARKET_TYPES:
            events = self._market(message)
        else:
            events = [Error(code="UNSUPPORTED_MESSAGE", message=f"engine does not apply {kind.__name__}", ts=0)]
        if journal is not None and self.snapshot_path is not None and self.seq % self.config.snapshot_every == 0:
            journal.flush()  # a snapshot never covers a line that is not yet on disk itself
            write_snapshot(self.snapshot_path, journal.count, self.snapshot())
        return events

    def apply_many(self, messages: Iterable[Message]) -> list[Any]:
        events: list[Any] = []
        for message in messages:
            events.extend(self.apply(message))
        return events

    # ------------------------------------------------------------------------------------------------------ orders

    def _reject(self, cmd: PlaceOrder, reason: RejectReason, detail: str, order: Order | None = None) -> OrderRejected:
        if order is not None:
            order.transition(OrderStatus.REJECTED, cmd.ts)
        return OrderRejected(
            client_order_id=cmd.client_order_id,
            account_id=cmd.account_id,
            symbol=cmd.symbol,
            side=cmd.side,
            order_type=cmd.order_type,
            price=cmd.price,
            qty=cmd.qty,
            reason=reason,
            detail=detail,
            ts=cmd.ts,
        )

    def _place(self, cmd: PlaceOrder, *, checked: bool = True) -> list[Any]:
        existing = self.oms.get(cmd.account_id, cmd.client_order_id)
        if existing is not None:
            key = (cmd.account_id, cmd.client_order_id)
            if existing.command == cmd or self.last_duplicate.get(key) == cmd:
                return []  # a retry of a message already applied: no second effect, not even a second rejection
            self.last_duplicate[key] = cmd
            return [
                self._reject(
                    cmd, RejectReason.DUPLICATE_CLIENT_ORDER_ID, f"client order id {cmd.client_order_id!r} already used"
                )
            ]
        inst = self.instruments.get(cmd.symbol)
        order = self.oms.create(cmd)
        if inst is None:
            return [self._reject(cmd, RejectReason.UNKNOWN_SYMBOL, f"unknown symbol {cmd.symbol!r}", order)]
        account = cmd.account_id
        ledger = self.ledger
        reference = self.reference.get(cmd.symbol)
        if checked:
            pos = ledger.positions.get((account, cmd.symbol))
            position_qty = pos.qty if pos is not None else 0
            limits = self.risk.limits
            needs_exposure = limits.max_position or limits.max_leverage
            rejection = self.risk.pre_trade(
                cmd,
                inst,
                reference_price=reference,
                position_qty=position_qty,
                open_qty_same_side=self._open_qty(account, cmd.symbol, cmd.side) if needs_exposure else 0,
                gross_exposure=self._gross_exposure(account) if limits.max_leverage else 0,
                equity=self.equity(account) if limits.max_leverage else 0,
            )
            if rejection is not None:
                return [self._reject(cmd, rejection[0], rejection[1], order)]
        book = self.books[cmd.symbol]
        if cmd.tif is TimeInForce.POST_ONLY:
            if cmd.order_type is not OrderType.LIMIT:
                return [self._reject(cmd, RejectReason.INVALID_PRICE, "post-only orders must be limit orders", order)]
            if book.would_cross(cmd.side, cmd.price):  # type: ignore[arg-type]
                return [
                    self._reject(cmd, RejectReason.WOULD_TAKE_LIQUIDITY, "post-only order would trade at once", order)
                ]
        # reserve funds atomically: the order reaches the book only if the account can pay for all of it
        if cmd.order_type is OrderType.MARKET:
            if reference is None:
                return [self._reject(cmd, RejectReason.NO_REFERENCE_PRICE, "no reference price", order)]
            order.protect_price = self.risk.protect_price(cmd.side, reference, inst)
        if cmd.side is Side.BUY:
            asset = inst.quote_asset
            if cmd.quote_qty is not None:
                amount = cmd.quote_qty
            else:
                limit = cmd.price if cmd.price is not None else order.protect_price
                notional = limit * cmd.qty // SCALE  # type: ignore[operator]
                amount = notional + ceil_div(notional * inst.max_fee_rate, SCALE)
        else:
            asset = inst.base_asset
            amount = cmd.qty
        if not ledger.reserve(account, asset, amount):
            return [
                self._reject(
                    cmd,
                    RejectReason.INSUFFICIENT_FUNDS,
                    f"needs {amount / SCALE:.8f} {asset}, free {ledger.free(account, asset) / SCALE:.8f}",
                    order,
                )
            ]
        order.reserved = amount
        order.reserve_asset = asset
        if cmd.quote_qty is not None:
            order.qty = inst.max_qty
        order.transition(OrderStatus.ACCEPTED, cmd.ts)
        self.oms.mark_open(order)
        events: list[Any] = []
        quiet = account in self.quiet_accounts
        if not quiet:
            events.append(order.accepted_event(cmd.ts))
        limit = cmd.price if cmd.price is not None else order.protect_price
        # a market FOK can only fill up to its protect price, so that is its limit here too
        if cmd.tif is TimeInForce.FOK and not book.fillable(cmd.side, limit, cmd.qty, account):
            self._finish(order, OrderStatus.EXPIRED, RejectReason.FOK_NOT_FILLABLE, cmd.ts, events)
            self._account_events({account}, cmd.ts, events)
            return events
        fills: list[Any]
        if cmd.tif is TimeInForce.POST_ONLY or not book.would_cross(cmd.side, limit):  # type: ignore[arg-type]
            fills, self_trade = [], False
        else:
            fills, self_trade = book.match(
                order,
                limit,
                budget=cmd.quote_qty,
                fee_rate=inst.taker_fee_rate,
                qty_step=inst.qty_step,
            )
        touched = {account}
        if fills:
            self._settle(inst, order, fills, cmd.ts, events, touched)
        if cmd.quote_qty is not None:
            order.qty = order.filled
            if order.filled:
                self._finish(order, OrderStatus.FILLED, None, cmd.ts, events)
            else:
                self._finish(order, OrderStatus.EXPIRED, RejectReason.NO_LIQUIDITY, cmd.ts, events)
        elif order.leaves == 0:
            pass  # _settle already finished it
        elif self_trade:
            self._finish(order, OrderStatus.EXPIRED, RejectReason.SELF_TRADE_PREVENTED, cmd.ts, events)
        elif cmd.order_type is OrderType.MARKET:
            self._finish(order, OrderStatus.EXPIRED, RejectReason.NO_LIQUIDITY, cmd.ts, events)
        elif cmd.tif is TimeInForce.IOC or cmd.tif is TimeInForce.FOK:
            self._finish(order, OrderStatus.EXPIRED, RejectReason.IOC_UNFILLED, cmd.ts, events)
        else:
            book.rest(order)
        self._account_events(touched, cmd.ts, events)
        if fills:
            self._post_trade(touched, cmd.ts, events)
        return events

    def _settle(
        self, inst: Instrument, taker: Order, fills: list[Any], ts: int, events: list[Any], touched: set[str]
    ) -> None:
        """Book every fill of ``taker`` on both accounts, with fees, and emit fill and position events."""
        ledger = self.ledger
        symbol = inst.symbol
        base, quote = inst.base_asset, inst.quote_asset
        taker_buys = taker.side is Side.BUY
        quiet_accounts = self.quiet_accounts
        for maker, price, qty in fills:
            notional = price * qty // SCALE
            taker_fee = self._charge(taker, notional, inst.taker_fee_rate)
            maker_fee = self._charge(maker, notional, inst.maker_fee_rate)
            buyer, seller = (taker, maker) if taker_buys else (maker, taker)
            buyer_fee, seller_fee = (taker_fee, maker_fee) if taker_buys else (maker_fee, taker_fee)
            ledger.settle(
                buyer=buyer.account_id,
                seller=seller.account_id,
                base=base,
                quote=quote,
                qty=qty,
                notional=notional,
                buyer_fee=buyer_fee,
                seller_fee=seller_fee,
            )
            buyer.reserved -= notional + buyer_fee
            seller.reserved -= qty
            self.trade_ids[symbol] += 1
            trade_id = self.trade_ids[symbol]
            self.reference[symbol] = price
            touched.add(maker.account_id)
            for order, fee, liquidity in ((taker, taker_fee, Liquidity.TAKER), (maker, maker_fee, Liquidity.MAKER)):
                sign = 1 if order.side is Side.BUY else -1
                pos = ledger.position(order.account_id, symbol)
                pos.apply_fill(sign * qty, notional, fee)
                pos.mark_price = price
                if order.account_id in quiet_accounts:
                    continue
                events.append(
                    order.fill_event(
                        trade_id=trade_id, price=price, qty=qty, fee=fee, fee_asset=quote, liquidity=liquidity, ts=ts
                    )
                )
                events.append(pos.to_event(ts))
            if maker.filled == maker.qty:
                self._finish(maker, OrderStatus.FILLED, None, ts, events)
            else:
                if maker.status is not OrderStatus.PARTIALLY_FILLED:
                    maker.transition(OrderStatus.PARTIALLY_FILLED, ts)
                self._release_excess(maker, inst)
        if taker.quote_qty is None:
            if taker.filled == taker.qty:
                self._finish(taker, OrderStatus.FILLED, None, ts, events)
            else:
                taker.transition(OrderStatus.PARTIALLY_FILLED, ts)
                self._release_excess(taker, inst)

    @staticmethod
    def _charge(order: Order, notional: int, rate: int) -> int:
        """Fee for this fill: the order's total fee is ceil(sum(rate x notional)), charged as it accrues."""
        order.notional_filled += notional
        order.fee_numerator += notional * rate
        fee = ceil_div(order.fee_numerator, SCALE) - order.fees_paid
        order.fees_paid += fee
        return fee

    def _release_excess(self, order: Order, inst: Instrument) -> None:
        """After a partial fill, unlock what the rest of the order can no longer need."""
        if order.side is Side.SELL:
            need = order.qty - order.filled
        else:
            limit = order.price if order.price is not None else order.protect_price
            rest = limit * (order.qty - order.filled) // SCALE  # type: ignore[operator]
            need = rest + ceil_div(order.fee_numerator + rest * inst.max_fee_rate, SCALE) - order.fees_paid
        excess = order.reserved - need
        if excess > 0:
            self.ledger.release(order.account_id, order.reserve_asset, excess)
            order.reserved = need

    def _finish(
        self, order: Order, status: OrderStatus, reason: RejectReason | None, ts: int, events: list[Any]
    ) -> None:
        """Move an order to a terminal state, take it off the book and release what it still holds."""
        order.transition(status, ts)
        self.books[order.symbol].remove(order)
        self.oms.mark_closed(order)
        if order.reserved:
            self.ledger.release(order.account_id, order.reserve_asset, order.reserved)
            order.reserved = 0
        if order.account_id in self.quiet_accounts:
            return
        event = order.closed_event(reason, ts)
        if event is not None:
            events.append(event)

    def _cancel(self, cmd: CancelOrder) -> list[Any]:
        key = (cmd.account_id, cmd.client_order_id)
        if self.last_cancel.get(key) == cmd:
            return []  # a retry: it was cancelled or rejected already
        self.last_cancel[key] = cmd
        order = self.oms.get(cmd.account_id, cmd.client_order_id)
        if order is None:
            return [self._cancel_rejected(cmd, RejectReason.UNKNOWN_ORDER, "no order with that client order id")]
        if not order.is_open:
            return [self._cancel_rejected(cmd, RejectReason.ORDER_NOT_OPEN, f"order is {order.status.value}", order)]
        events: list[Any] = []
        self._finish(order, OrderStatus.CANCELLED, RejectReason.USER_CANCEL, cmd.ts, events)
        self._account_events({cmd.account_id}, cmd.ts, events)
        return events

    @staticmethod
    def _cancel_rejected(cmd: CancelOrder, reason: RejectReason, detail: str, order: Order | None = None) -> Any:
        return OrderRejected(
            client_order_id=cmd.client_order_id,
            account_id=cmd.account_id,
            symbol=order.symbol if order is not None else "",
            reason=reason,
            detail=f"cancel rejected: {detail}",
            ts=cmd.ts,
        )

    # ----------------------------------------------------------------------------------------- market and risk

    def _tick(self, tick: Tick) -> list[Any]:
        if tick.ts <= self.last_tick:
            return []
        self.last_tick = tick.ts
        events: list[Any] = []
        sim = self.sim
        if sim is None:
            return events
        ts = tick.ts
        mids = sim.step({s: self.instruments[s].price_tick for s in sim.symbols})
        for symbol, mid in mids.items():
            self.reference[symbol] = mid
            for order in self.oms.open_orders(MM_ACCOUNT, symbol):
                self._finish(order, OrderStatus.CANCELLED, RejectReason.USER_CANCEL, ts, events)
            bids, asks = sim.ladder(symbol, self.instruments[symbol].price_tick)
            qty = sim.symbols[symbol].level_qty
            for side, prices in ((Side.BUY, bids), (Side.SELL, asks)):
                for price in prices:
                    self.internal_orders += 1
                    events.extend(
                        self._place(
                            PlaceOrder(
                                client_order_id=f"mm-{self.internal_orders}",
                                account_id=MM_ACCOUNT,
                                symbol=symbol,
                                side=side,
                                order_type=OrderType.LIMIT,
                                qty=qty,
                                price=price,
                                ts=ts,
                            ),
                            checked=False,
                        )
                    )
            bid, bid_qty, ask, ask_qty = self.books[symbol].top()
            events.append(
                BookTop(
                    symbol=symbol,
                    bid_price=bid,
                    bid_qty=bid_qty,
                    ask_price=ask,
                    ask_qty=ask_qty,
                    update_id=ts,  # ticks strictly increase; self.seq would also count retried duplicates
                    ts_event=ts,
                    ts_recv=ts,
                )
            )
            self._mark(symbol, mid)
        self._post_trade(self._risk_accounts(), ts, events)
        self._stop_losses(ts, events)
        return events

    def _market(self, event: Any) -> list[Any]:
        """Market data from a feed: update reference prices and marks (matching stays on the venue's book)."""
        kind = type(event)
        if kind is Trade:
            price = event.price
        elif kind is BookTop:
            if not event.bid_price or not event.ask_price:
                return []
            price = (event.bid_price + event.ask_price) // 2
            price = (
                self.instruments[event.symbol].round_price_down(price) if event.symbol in self.instruments else price
            )
        elif kind is Kline:
            price = event.close
        elif kind is MarkPrice:
            price = event.mark_price
        elif kind is Ticker:
            price = event.last_price
        else:  # BookDelta, FundingRate: no price of their own here
            return []
        symbol = event.symbol
        if symbol not in self.instruments:
            return []
        self.reference[symbol] = price
        self._mark(symbol, price)
        events: list[Any] = []
        ts = event.ts_event
        self._post_trade(self._risk_accounts(), ts, events)
        self._stop_losses(ts, events)
        return events

    def _mark(self, symbol: str, price: int) -> None:
        for (_, sym), pos in self.ledger.positions.items():
            if sym == symbol:
                pos.mark_price = price

    def _risk_accounts(self) -> set[str]:
        return {a for a in self.ledger.account_ids() if a not in self.risk.limits.exempt_accounts}

    def _post_trade(self, accounts: Iterable[str], ts: int, events: list[Any]) -> None:
        limits = self.risk.limits
        if not (limits.max_drawdown or limits.max_loss):
            return
        for account in sorted(accounts):
            if account in limits.exempt_accounts:
                continue
            equity = self.equity(account)
            reason = self.risk.post_trade(account, equity)
            if reason:
                events.append(
                    CircuitBreakerTripped(
                        account_id=account,
                        reason=reason,
                        equity=equity,
                        peak_equity=self.risk.peak_equity.get(account, equity),
                        ts=ts,
                    )
                )

    def _stop_losses(self, ts: int, events: list[Any]) -> None:
        if not self.risk.limits.stop_loss:
            return
        for (account, symbol), pos in sorted(self.ledger.positions.items()):
            if account in self.risk.limits.exempt_accounts or not pos.qty:
                continue
            if not self.risk.stop_hit(pos.qty, pos.avg_entry_price, pos.mark_price):
                continue
            inst = self.instruments[symbol]
            qty = abs(pos.qty) // inst.qty_step * inst.qty_step
            if pos.qty > 0:
                qty = min(qty, self.ledger.free(account, inst.base_asset) // inst.qty_step * inst.qty_step)
            if qty <= 0:
                continue
            self.internal_orders += 1
            cmd = PlaceOrder(
                client_order_id=f"stop-{symbol}-{self.internal_orders}",
                account_id=account,
                symbol=symbol,
                side=Side.SELL if pos.qty > 0 else Side.BUY,
                order_type=OrderType.MARKET,
                qty=qty,
                ts=ts,
            )
            events.append(Error(code="STOP_LOSS", message=f"{account} {symbol}: stop-loss closes the position", ts=ts))
            events.extend(self._place(cmd, checked=False))

    def _reset(self, cmd: ResetCircuitBreaker) -> list[Any]:
        self.risk.reset(cmd.account_id, self.equity(cmd.account_id))
        return [self.ledger.account_event(cmd.account_id, cmd.ts)] if self.ledger.has_account(cmd.account_id) else []

    # --------------------------------------------------------------------------------------------------- queries

    def _account_events(self, accounts: set[str], ts: int, events: list[Any]) -> None:
        if not self.config.emit_account_updates:
            return
        for account in sorted(accounts) if len(accounts) > 1 else accounts:
            if account not in self.quiet_accounts and self.ledger.has_account(account):
                events.append(self.ledger.account_event(account, ts))

    def _open_qty(self, account: str, symbol: str, side: Side) -> int:
        return sum(o.leaves for o in self.oms.open_orders(account, symbol) if o.side is side)

    def _gross_exposure(self, account: str) -> int:
        total = 0
        for (acc, symbol), pos in self.ledger.positions.items():
            if acc == account and pos.qty:
                price = self.reference.get(symbol, pos.mark_price)
                total += abs(pos.qty) * price // SCALE
        return total

    def equity(self, account: str) -> int:
        """Every balance of ``account`` valued in the valuation asset at the reference prices."""
        value = 0
        valuation = self.config.valuation_asset
        for asset, (free, locked) in self.ledger.balances(account).items():
            amount = free + locked
            if asset == valuation:
                value += amount
                continue
            for inst in self.config.instruments:
                if inst.base_asset == asset and inst.quote_asset == valuation and inst.symbol in self.reference:
                    value += amount * self.reference[inst.symbol] // SCALE
                    break
        return value

    def status(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "orders": len(self.oms),
            "open_orders": len(self.oms.open_orders()),
            "accounts": sorted(a for a in self.ledger.account_ids() if a not in self.quiet_accounts),
            "circuit_breaker": dict(self.risk.tripped),
            "journal": str(self.journal.path) if self.journal else None,
            "journal_lines": self.journal.count if self.journal else 0,
            "last_tick": self.last_tick,
            "reference_prices": dict(sorted(self.reference.items())),
        }


_MARKET_TYPES = frozenset({Trade, BookTop, BookDelta, Kline, Ticker, FundingRate, MarkPrice})


def _with_exempt(limits: RiskLimits, account: str) -> RiskLimits:
    from dataclasses import replace

    return replace(limits, exempt_accounts=limits.exempt_accounts | {account})


def replay(journal_path: str | Path, config: EngineConfig | None = None) -> tuple[Engine, list[Any]]:
    """Apply a journal from its first line through a fresh engine (no journal attached); return it and the events.

    The engine is built from the config in the journal's header unless ``config`` is given (then they must match).
    """
    header, messages = read_journal(journal_path)
    if config is None:
        config = EngineConfig.from_json(header["config"])
    elif header.get("config") != config.to_json():
        raise JournalError(f"{journal_path} was written by an engine with a different configuration")
    engine = Engine(config)
    return engine, engine.apply_many(messages)
