"""The trading kernel: the trader's side of every order, whatever venue it trades on.

The kernel owns the OMS state machine, pre-trade risk, the ledger that reserves funds atomically, fees, positions and
PnL, and post-trade risk (the loss circuit breaker, per-position stop-losses). It never matches an order: it decides
each command in one step (risk, reservation, state) and leaves what must reach a venue in :attr:`TradingKernel.outbox`
(:class:`~veloz_actors.messages.SubmitOrder`, :class:`~veloz_actors.messages.SubmitCancel`); the venue answers with
execution reports (``VenueOrderAccepted``, ``VenueOrderFilled``, ...), which the kernel applies like any other input.

``apply(message) -> list[event]`` is the whole interface: commands, execution reports and market events. With a
journal attached every input is journaled *before* it is applied, so :func:`replay_kernel` over the journal gives
the same events byte for byte, and :meth:`TradingKernel.recover` rebuilds the state from snapshot + journal.

Idempotency:

- the very same command applied twice has no second effect (a retry); a new command reusing a client order id is
  rejected as a duplicate;
- a fill is known by (venue, symbol, trade id, order): applying it twice books it once; an acceptance, cancel or
  expiry of an order already past that state is ignored; so a venue may re-send its reports after a restart;
- a report for an order the kernel does not know is an ``Error`` event, never a crash, and changes no balance;
- an ``Error`` a venue reports (it failed on an input: :func:`~veloz_actors.venues.base.guarded`) is published as is.

Long runs: with ``retain_closed_ns`` set, orders closed longer ago than that leave memory (with their fill keys) and go
to an order history file beside the journal, which :meth:`TradingKernel.order_history` reads.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from .._exceptions import IllegalTransition, JournalError, quoted
from ..fixed import SCALE, format_decimal
from ..messages import (
    BookDelta,
    BookTop,
    CancelAllOrders,
    CancelOrder,
    CircuitBreakerTripped,
    Error,
    FundingRate,
    HaltTrading,
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
    SubmitCancel,
    SubmitOrder,
    Ticker,
    TimeInForce,
    Trade,
    VenueCancelRejected,
    VenueOrderAccepted,
    VenueOrderCancelled,
    VenueOrderExpired,
    VenueOrderFilled,
    VenueOrderRejected,
    VenueOrderStatusUnknown,
    builder,
    members,
)
from .account import Ledger, position_move
from .instruments import Instrument, Pricing, ceil_div
from .journal import (
    SEMANTICS,
    Durability,
    Journal,
    count_lines,
    drop_torn_tail,
    iter_journal,
    journal_error,
    other_configuration,
    read_header,
    read_journal,
    restore_snapshot,
    semantics_of,
    take_snapshot,
)
from .oms import OMS, TERMINAL, UNSENT, Order
from .risk import RiskEngine, RiskLimits

__all__ = ["KernelConfig", "TradingKernel", "gc_tuned", "replay_kernel", "tune_gc"]

# enum members read on the hot paths (messages.members: a module object's attributes, ~10x cheaper to read)
_Side = members(Side)
_OrderType = members(OrderType)
_TimeInForce = members(TimeInForce)
_Liquidity = members(Liquidity)

_S = members(OrderStatus)


def tune_gc() -> None:
    """Collect the young generation less often: a kernel holds ~10^5 live orders, and CPython's default threshold
    (700 allocations) re-scans them thousands of times a second. Called by the process entry points, never on
    import."""
    import gc

    gc.set_threshold(*_TUNED_GC)


_TUNED_GC = (50_000, 20, 100)


@contextlib.contextmanager
def gc_tuned() -> Iterator[None]:
    """:func:`tune_gc` for the duration of a ``with`` block, then the caller's thresholds again: for a run inside a
    process VeloZ does not own (a backtest called from a notebook or a search worker)."""
    import gc

    before = gc.get_threshold()
    gc.set_threshold(*_TUNED_GC)
    try:
        yield
    finally:
        gc.set_threshold(*before)


@dataclass(frozen=True, slots=True)
class KernelConfig:
    """Everything that determines the kernel's decisions (and so must match between a journal and its replay)."""

    instruments: tuple[Instrument, ...]
    balances: dict[str, dict[str, int]]  # account -> asset -> initial free balance
    risk: RiskLimits = field(default_factory=RiskLimits)
    valuation_asset: str = "USDT"
    snapshot_every: int = 10_000
    emit_account_updates: bool = True
    retain_closed_ns: int = 0  # closed orders older than this leave memory (0: keep them all)
    reference_prices: dict[str, int] = field(default_factory=dict)  # symbol -> price before any market data

    def to_json(self) -> dict[str, Any]:
        return json_normal(asdict(self), self.risk)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KernelConfig:
        try:
            risk = dict(data["risk"])
            risk["exempt_accounts"] = frozenset(risk.get("exempt_accounts", ()))
            return cls(
                instruments=tuple(Instrument(**i) for i in data["instruments"]),
                balances={a: dict(b) for a, b in data["balances"].items()},
                risk=RiskLimits(**risk),
                valuation_asset=data["valuation_asset"],
                snapshot_every=data["snapshot_every"],
                emit_account_updates=data["emit_account_updates"],
                retain_closed_ns=data.get("retain_closed_ns", 0),
                reference_prices=dict(data.get("reference_prices", {})),
            )
        except (KeyError, TypeError) as exc:
            raise JournalError(f"journal header has an unusable kernel config: {exc}") from exc


def json_normal(data: dict[str, Any], risk: RiskLimits) -> dict[str, Any]:
    """A config's ``asdict`` in JSON-normal form (lists, not tuples or sets), as a journal header reads back."""
    data["risk"]["exempt_accounts"] = sorted(risk.exempt_accounts)
    return orjson.loads(orjson.dumps(data))  # type: ignore[no-any-return]


_MARKET_TYPES = frozenset({Trade, BookTop, BookDelta, Kline, Ticker, FundingRate, MarkPrice})
_NOT_STATE = frozenset({"journal", "_handlers", "snapshot_path", "history_path"})  # never in a snapshot
_EVICT_EVERY = 4096  # steps between two looks for closed orders to evict
# client order ids of evicted orders still refused as duplicates: a venue recognises re-sent requests among its latest
# orders (the simulated venue's 200,000), so the kernel must not take an id it would still ignore for a new order
_EVICTED_IDS = 250_000
_CANCEL_ALL_TRIES = 3  # cancels a cancel-all sends to one order before leaving it to the trader
_STOP_RETRY_NS = 1_000_000_000  # message time between two stop-loss orders for one position
_submit_order, _submit_cancel = builder(SubmitOrder), builder(SubmitCancel)  # one of each per order


class TradingKernel:
    """The trader's side in one process. Not thread-safe: one caller applies messages in order."""

    def __init__(self, config: KernelConfig, *, journal_path: str | Path | None = None, **journal: Any) -> None:
        self.config = config
        self.instruments = {i.symbol: i for i in config.instruments}
        self._pricing = Pricing(config.instruments, config.valuation_asset)
        self.oms = OMS()
        self.ledger = Ledger()
        self.risk = RiskEngine(config.risk)
        self.reference: dict[str, int] = dict(config.reference_prices)
        self.seq = 0
        # the last CancelOrder taken for an order id that had no order in memory (see _last_cancel), and the orders
        # that keep theirs, for evict to let those expire too (only while closed orders are evicted)
        self.last_cancel: dict[tuple[str, str], CancelOrder] = {}
        self.cancelled_orders: deque[Order] = deque()
        self.last_duplicate: dict[tuple[str, str], PlaceOrder] = {}
        self.internal_orders = 0
        self.stops: dict[tuple[str, str], tuple[str, int]] = {}  # (account, symbol) -> its last stop order's cid, ts
        self.must_cancel: dict[tuple[str, str], int] = {}  # orders a cancel-all must close -> cancels rejected so far
        # the rules of the journal's semantics (journal.SEMANTICS), kept for life: see legacy_halts, _position_rule
        self.semantics = SEMANTICS
        self.quiet_accounts: frozenset[str] = frozenset()
        self.outbox: list[SubmitOrder | SubmitCancel] = []
        self.closed: deque[Order] = deque()  # closed orders, oldest first (for eviction)
        self.evicted = 0
        self.evicted_ids: set[str] = set()  # account and client order id of the latest _EVICTED_IDS evicted orders
        self.evicted_order: deque[str] = deque()
        self.history_bytes = 0  # the order history file's length after this state's last eviction
        self.history_pending: list[bytes] = []  # records of evicted orders the history file has not taken yet
        self.now = 0
        self._touched: set[str] = set()
        self._filled = False
        self._next_check = min(config.snapshot_every, _EVICT_EVERY)
        for account, assets in sorted(config.balances.items()):
            for asset, amount in sorted(assets.items()):
                self.ledger.deposit(account, asset, amount)
        self.journal: Journal | None = None
        self.snapshot_path: Path | None = None
        self.history_path: Path | None = None
        if journal_path is not None:
            self.attach_journal(journal_path, **journal)
        self._handlers = self._dispatch()

    def _dispatch(self) -> dict[type, Any]:
        handlers: dict[type, Any] = {
            PlaceOrder: self._place,
            CancelOrder: self._cancel,
            ResetCircuitBreaker: self._reset,
            HaltTrading: self._halt,
            CancelAllOrders: self._cancel_all,
            VenueOrderAccepted: self._on_accepted,
            VenueOrderRejected: self._on_rejected,
            VenueOrderFilled: self._on_filled,
            VenueOrderCancelled: self._on_closed,
            VenueOrderExpired: self._on_closed,
            VenueCancelRejected: self._on_cancel_rejected,
            VenueOrderStatusUnknown: self._on_unknown,
            Error: self._on_venue_error,
        }
        for kind in _MARKET_TYPES:
            handlers[kind] = self._market
        return handlers

    # ------------------------------------------------------------------------------------------------- persistence

    def attach_journal(self, path: str | Path, *, durability: Durability = "group", group_ms: float = 5.0) -> None:
        self._attach(Journal(path, self.config.to_json(), durability=durability, group_ms=group_ms))

    def _attach(self, journal: Journal) -> None:
        self.journal = journal
        self.semantics = journal.semantics
        self.snapshot_path = Path(str(journal.path) + ".snapshot")
        self.history_path = Path(str(journal.path) + ".orders")

    def resume_history(self, path: Path, *, journal_lines: int) -> None:
        """Write evicted orders to ``path`` from now on, first cutting it back to what this state wrote to it.

        Recovery calls this before it replays the journal's tail: the history file then ends at the last eviction the
        snapshot covers (at 0 without one), and the replayed evictions write their orders once, exactly as the run
        did, whatever it wrote after the snapshot (all, part of a line, or nothing) before it stopped. A file shorter
        than the snapshot's count lost orders the state no longer holds, and one with orders beside a journal of no
        lines (``journal_lines``) belongs to another run: each is a :class:`JournalError`, never cut.
        """
        try:
            size = path.stat().st_size if path.exists() else 0
            if size and not journal_lines:
                raise JournalError(
                    f"order history {path} holds orders, but its journal has no line: it belongs to another run; "
                    "move it away to start this one"
                )
            if size < self.history_bytes:
                raise JournalError(
                    f"order history {path} holds {size} bytes, fewer than the {self.history_bytes} its snapshot "
                    "covers: it was cut or replaced; put it back, or move the snapshot away to rebuild both from the "
                    "journal"
                )
            if size > self.history_bytes:
                with open(path, "r+b") as history:
                    history.truncate(self.history_bytes)
        except OSError as exc:
            raise JournalError(f"cannot resume order history {path}: {exc}") from exc
        self.history_path = path

    def close(self) -> None:
        """Flush and close the journal (idempotent)."""
        if self.journal is not None:
            self.journal.close()

    def __getstate__(self) -> dict[str, Any]:
        # the files belong to the process, not to the state: a snapshot restored elsewhere (a replay's copy, an
        # actor's new home) must never write to the files of the run that took it
        return {k: v for k, v in self.__dict__.items() if k not in _NOT_STATE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a snapshot written before these existed has none of them: they start empty (no stop-loss or cancel-all
        # then in progress can be lost: both are rebuilt from the next mark, and a cancel-all's cancels went out)
        self.__dict__.update(
            {"stops": {}, "must_cancel": {}, "semantics": SEMANTICS, "history_pending": [], "cancelled_orders": deque()}
        )
        self.__dict__.update(state)
        self.__dict__.pop("legacy_halts", None)  # a snapshot's flag from before: the journal's semantics say it
        if "_pricing" not in state:
            self._pricing = Pricing(self.config.instruments, self.config.valuation_asset)
        self.journal = None
        self.snapshot_path = self.history_path = None
        self._handlers = self._dispatch()

    def snapshot(self) -> bytes:
        """The whole state as bytes (the journal handle excluded)."""
        return pickle.dumps(self.__getstate__(), protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, state: bytes) -> None:
        keep = {k: self.__dict__[k] for k in ("journal", "snapshot_path", "history_path", "_handlers")}
        self.__dict__.update(pickle.loads(state))
        self.__dict__.update(keep)

    @classmethod
    def recover(
        cls,
        config: KernelConfig,
        journal_path: str | Path,
        *,
        durability: Durability = "group",
        on_step: Callable[[Message, list[Any]], None] | None = None,
        lock_wait: float = 0.0,
    ) -> tuple[TradingKernel, list[Any]]:
        """Rebuild a kernel from its snapshot and journal; returns it (journal attached) and the replayed events.

        What the replayed steps left in the outbox is kept: the caller decides what still has to reach a venue.
        ``on_step`` sees each replayed message with the events of its step (the lines after the snapshot). The order
        history file is cut back to the snapshot's and the replay writes the evictions after it (see
        :meth:`resume_history`). A journal another kernel has open is a :class:`JournalError`, before any file is
        touched.
        """
        journal_path = Path(journal_path)
        # the journal (and its lock) first: no snapshot or history file is read or cut while another kernel runs
        journal = Journal(journal_path, config.to_json(), durability=durability, lock_wait=lock_wait)
        try:
            lines = count_lines(journal_path)
            kernel = cls(config)
            start = restore_snapshot(journal_path, lines, kernel.restore)
            kernel.semantics = semantics_of(read_header(journal_path))
            kernel.resume_history(Path(str(journal_path) + ".orders"), journal_lines=lines)
            events: list[Any] = []
            # the journal is not attached yet: nothing is journaled twice
            for message in iter_journal(journal_path, start):
                step = kernel.apply(message)
                events.extend(step)
                if on_step is not None:
                    on_step(message, step)
        except BaseException:
            with contextlib.suppress(JournalError):
                journal.close()
            raise
        kernel._attach(journal)
        return kernel, events

    # -------------------------------------------------------------------------------------------------------- apply

    def apply(self, message: Message) -> list[Any]:
        """Journal ``message`` (if a journal is attached), apply it as one step, and return the events it caused.

        Every journaled message is one step, so a replay takes the same steps and gives the same events. At the end
        of a step the kernel reports every balance it touched, runs post-trade risk after fills, and snapshots and
        evicts when due."""
        events: list[Any] = []
        self.step(message, events)
        return events

    def step(self, message: Message, events: list[Any]) -> None:
        """:meth:`apply`, the step's events appended to ``events``: for a driver that gathers the events of several
        steps (a command and the reports its venue answers at once) in one list."""
        journal = self.journal
        if journal is not None:
            journal.append(message)
        self.seq += 1
        handler = self._handlers.get(type(message))
        if handler is None:
            events.append(
                Error(code="UNSUPPORTED_MESSAGE", message=f"kernel does not apply {type(message).__name__}", ts=0)
            )
        else:
            try:
                handler(message, events)
            except IllegalTransition as exc:  # a venue's report the order's state cannot take: said, never a crash
                events.append(Error(code="ILLEGAL_REPORT", message=f"{type(message).__name__}: {exc}", ts=self.now))
        touched = self._touched
        if touched:
            if self._filled:
                self._post_trade(touched, self.now, events)
                self._filled = False
            if self.config.emit_account_updates:  # each account the step touched, in name order
                accounts = sorted(touched) if len(touched) > 1 else touched
                self.ledger.account_events(accounts, self.now, events, self.quiet_accounts)
            touched.clear()
        if self.seq >= self._next_check:
            self._periodic(events)

    def apply_many(self, messages: Iterable[Message]) -> list[Any]:
        """Apply several messages, each as its own step."""
        events: list[Any] = []
        for message in messages:
            events.extend(self.apply(message))
        return events

    def _periodic(self, events: list[Any]) -> None:
        """Evict, then snapshot, when due (checked at the end of a step, never inside one).

        In that order: the snapshot is the state after the whole step, eviction included, which a recovery from it
        never redoes. A file that cannot be written is an ``Error`` event of the step (``ORDER_HISTORY_WRITE_FAILED``,
        ``SNAPSHOT_FAILED``), never an exception: the step was journaled and applied, and its events must reach the
        caller. Both are tried again when next due; the journal alone recovers every step meanwhile."""
        seq = self.seq
        if (self.closed or self.history_pending) and seq % _EVICT_EVERY == 0:
            try:
                self.evict(self.now - self.config.retain_closed_ns)
            except JournalError as exc:
                events.append(Error(code="ORDER_HISTORY_WRITE_FAILED", message=str(exc), ts=self.now))
        journal = self.journal
        if journal is not None and self.snapshot_path is not None and seq % self.config.snapshot_every == 0:
            error = take_snapshot(journal, self.snapshot_path, self.snapshot, self.config.snapshot_every, self.now)
            if error is not None:
                events.append(error)
        self._next_check = min(_next_multiple(seq, self.config.snapshot_every), _next_multiple(seq, _EVICT_EVERY))

    def take_outbox(self) -> list[SubmitOrder | SubmitCancel]:
        """What the steps so far must send to venues, in order; the outbox is empty afterwards."""
        out = self.outbox
        if out:
            self.outbox = []
        return out

    # ------------------------------------------------------------------------------------------------------ orders

    def _reject(
        self, cmd: PlaceOrder, reason: RejectReason, detail: str, order: Order | None, events: list[Any]
    ) -> None:
        if order is not None:
            order.transition(_S.REJECTED, cmd.ts)
            self._closed(order, cmd.ts)
        events.append(
            OrderRejected(
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
        )

    def _place(self, cmd: PlaceOrder, events: list[Any], *, checked: bool = True) -> None:
        self.now = cmd.ts
        existing = self.oms.get(cmd.account_id, cmd.client_order_id)
        if existing is not None:
            if self._placed_before(cmd, existing):
                return  # a retry of a message already applied: no second effect, not even a second rejection
            self.last_duplicate[(cmd.account_id, cmd.client_order_id)] = cmd
            detail = f"client order id {cmd.client_order_id!r} already used"
            self._reject(cmd, RejectReason.DUPLICATE_CLIENT_ORDER_ID, detail, None, events)
            return
        if self.evicted_ids and _evicted_id(cmd.account_id, cmd.client_order_id) in self.evicted_ids:
            detail = f"client order id {cmd.client_order_id!r} already used by an order closed earlier (order history)"
            self._reject(cmd, RejectReason.DUPLICATE_CLIENT_ORDER_ID, detail, None, events)
            return
        inst = self.instruments.get(cmd.symbol)
        order = self.oms.create(cmd)
        if inst is None:
            self._reject(cmd, RejectReason.UNKNOWN_SYMBOL, f"unknown symbol {cmd.symbol!r}", order, events)
            return
        account = cmd.account_id
        ledger = self.ledger
        if not ledger.has_account(account) and self._refuses_unknown_accounts():
            self._reject(cmd, RejectReason.UNKNOWN_ACCOUNT, self._unknown_account(account), order, events)
            return
        reference = self.reference.get(cmd.symbol)
        protect = cmd.protect_price if cmd.order_type is _OrderType.MARKET else None
        if protect is not None:  # the sender fixed the market order's worst price: value the order there
            reference = protect if protect > 0 else None  # 0: the sender had no price to protect it with
        if checked:
            pos = ledger.positions.get((account, cmd.symbol))
            limits = self.risk.limits
            needs_exposure = limits.max_position or limits.max_leverage
            rejection = self.risk.pre_trade(
                cmd,
                inst,
                reference_price=reference,
                position_qty=self._position_rule(pos.qty) if pos is not None else 0,
                open_qty_same_side=self._open_qty(account, cmd.symbol, cmd.side) if needs_exposure else 0,
                gross_exposure=self._gross_exposure(account) if limits.max_leverage else 0,
                equity=self.equity(account) if limits.max_leverage else 0,
                market_price=self.reference.get(cmd.symbol, 0),  # 0: none, never the sender's protect price
                quote_rate=self.asset_price(inst.quote_asset)
                if (limits.max_order_notional or limits.max_leverage) and inst.quote_asset != self._pricing.asset
                else SCALE,  # (the valuation asset's own price, SCALE, without asking)
                quote_notional=self.semantics >= 6,
            )
            if rejection is not None:
                self._reject(cmd, rejection[0], rejection[1], order, events)
                return
        if cmd.tif is _TimeInForce.POST_ONLY and cmd.order_type is not _OrderType.LIMIT:
            self._reject(cmd, RejectReason.INVALID_PRICE, "post-only orders must be limit orders", order, events)
            return
        # reserve funds atomically: the order reaches the venue only if the account can pay for all of it
        if cmd.order_type is _OrderType.MARKET:
            if reference is None:
                self._reject(cmd, RejectReason.NO_REFERENCE_PRICE, "no reference price", order, events)
                return
            order.protect_price = reference if protect else self.risk.protect_price(cmd.side, reference, inst)
        if cmd.side is _Side.BUY:
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
            detail = f"needs {amount / SCALE:.8f} {asset}, free {ledger.free(account, asset) / SCALE:.8f}"
            self._reject(cmd, RejectReason.INSUFFICIENT_FUNDS, detail, order, events)
            return
        order.reserved = amount
        order.reserve_asset = asset
        if cmd.quote_qty is not None:
            order.qty = inst.max_qty
        order.transition(_S.SUBMITTED, cmd.ts)
        self.oms.mark_open(order)
        if account not in self.quiet_accounts:
            events.append(order.accepted_event(cmd.ts))
        self._touched.add(account)
        self.outbox.append(_submit_request(order))

    def _placed_before(self, cmd: PlaceOrder, existing: Order) -> bool:
        return existing.command == cmd or self.last_duplicate.get((cmd.account_id, cmd.client_order_id)) == cmd

    def applied_before(self, command: Message) -> bool:
        """True for a ``PlaceOrder`` or ``CancelOrder`` this kernel has applied already: applying it again is a
        no-op with no events (a driver that answers clients answers a retry from what it kept, not with nothing)."""
        if isinstance(command, PlaceOrder):
            existing = self.oms.get(command.account_id, command.client_order_id)
            return existing is not None and self._placed_before(command, existing)
        if isinstance(command, CancelOrder):
            order = self.oms.get(command.account_id, command.client_order_id)
            return self._last_cancel(command, order) == command
        return False

    def _last_cancel(self, cmd: CancelOrder, order: Order | None) -> CancelOrder | None:
        """The last CancelOrder taken for ``cmd``'s order id (None: none, or its record expired, see :meth:`evict`).

        One record per id: on its order while the order is in memory, in :attr:`last_cancel` while the id had no
        order when the cancel came (an unknown id; an order placed under it later finds it there until a cancel of
        its own replaces it) or once its order left memory with it."""
        last = order.last_cancel if order is not None else None
        if last is None and self.last_cancel:
            last = self.last_cancel.get((cmd.account_id, cmd.client_order_id))
        return last

    def _cancel(self, cmd: CancelOrder, events: list[Any]) -> None:
        self.now = cmd.ts
        order = self.oms.get(cmd.account_id, cmd.client_order_id)
        last = self._last_cancel(cmd, order)
        if last is not None and last == cmd:  # (None == cmd would ask the message's __eq__)
            return  # a retry: it was sent or rejected already
        if order is None:
            self.last_cancel[(cmd.account_id, cmd.client_order_id)] = cmd
            events.append(_cancel_rejected(cmd, RejectReason.UNKNOWN_ORDER, "no order with that client order id"))
            return
        # the record of the id, on its order (a record kept for the id before goes)
        if order.last_cancel is None and self.config.retain_closed_ns:
            self.cancelled_orders.append(order)  # its record expires as the map's do (evict)
        order.last_cancel = cmd
        if self.last_cancel:
            self.last_cancel.pop((cmd.account_id, cmd.client_order_id), None)
        if order.status is _S.PENDING_CANCEL:
            events.append(_cancel_rejected(cmd, RejectReason.CANCEL_PENDING, "a cancel is already on its way", order))
            return
        if not order.is_open:
            events.append(_cancel_rejected(cmd, RejectReason.ORDER_NOT_OPEN, f"order is {order.status.value}", order))
            return
        self._request_cancel(order, cmd.ts)

    def _request_cancel(self, order: Order, ts: int) -> None:
        order.transition(_S.PENDING_CANCEL, ts)
        self.outbox.append(
            _submit_cancel(client_order_id=order.client_order_id, account_id=order.account_id, symbol=order.symbol,
                           ts=ts)
        )  # fmt: skip

    def pending_requests(self, symbols: Collection[str] | None = None) -> list[SubmitOrder | SubmitCancel]:
        """The requests a venue may not have received, for a driver to send again after either side restarted.

        An order still SUBMITTED (or PENDING_CANCEL before the venue ever acknowledged it) gets its ``SubmitOrder``
        again, a PENDING_CANCEL order its ``SubmitCancel``; in order id order, optionally only for ``symbols``. A venue
        ignores an order it has seen, and a cancel of an order it no longer works comes back as a cancel rejection the
        kernel keeps silent once the order has closed.
        """
        out: list[SubmitOrder | SubmitCancel] = []
        for order in sorted(self.oms.open_orders(), key=lambda o: o.order_id):
            if symbols is not None and order.symbol not in symbols:
                continue
            status = order.status
            if status is _S.SUBMITTED or (status is _S.PENDING_CANCEL and not order.venue_order_id):
                out.append(_submit_request(order))
            if status is _S.PENDING_CANCEL:
                ts: int = order.trail[-1]  # type: ignore[assignment]
                out.append(
                    SubmitCancel(
                        client_order_id=order.client_order_id, account_id=order.account_id, symbol=order.symbol, ts=ts
                    )
                )
        return out

    def _cancel_all(self, cmd: CancelAllOrders, events: list[Any]) -> None:
        self.now = cmd.ts
        account = None if cmd.account_id == "*" else cmd.account_id
        for order in sorted(self.oms.open_orders(account), key=lambda o: o.order_id):
            if order.account_id in self.quiet_accounts:
                continue
            # until it closes: a cancel the venue refuses while the order is still open goes out again (below)
            self.must_cancel.setdefault((order.account_id, order.client_order_id), 0)
            if order.status is not _S.PENDING_CANCEL:
                self._request_cancel(order, cmd.ts)

    # ------------------------------------------------------------------------------------------ execution reports

    def _order_of(self, report: Any, events: list[Any], venue_order_id: str = "") -> Order | None:
        """The order a venue's report is about; None, said in an ``Error`` event, for an order the kernel does not know
        or never sent (one it rejected itself: no venue has it, so whatever the report says did not happen to it)."""
        order = self.oms.get(report.account_id, report.client_order_id)
        if order is None or (order.status in UNSENT and not order.sent):  # (a working order is sent: no call to ask)
            what = "an unknown order" if order is None else "an order the kernel rejected and never sent"
            events.append(
                Error(
                    code="UNKNOWN_ORDER_REPORT",
                    message=f"{report.venue}: {type(report).__name__} for {report.account_id}/"
                    f"{report.client_order_id} ({report.symbol}), {what}; ignored",
                    ts=report.ts,
                )
            )
            return None
        if report.symbol != order.symbol or (venue_order_id and order.venue_order_id not in ("", venue_order_id)):
            # the same client order id on another order (a venue asks it unique among open orders only): not ours
            events.append(
                Error(
                    code="REPORT_ORDER_MISMATCH",
                    message=f"{report.venue}: {type(report).__name__} for {report.account_id}/"
                    f"{report.client_order_id} names {report.symbol} order {venue_order_id or '?'}, but that id is "
                    f"{order.symbol} order {order.venue_order_id or '(not yet acknowledged)'}; ignored",
                    ts=report.ts,
                )
            )
            return None
        return order

    def _on_accepted(self, report: VenueOrderAccepted, events: list[Any]) -> None:
        order = self._order_of(report, events, report.venue_order_id)
        if order is None:
            return
        order.venue_order_id = report.venue_order_id
        if order.status is _S.SUBMITTED or order.status is _S.UNKNOWN:
            # an order whose outcome was unknown may have traded before (or while) it was: it is working, with fills
            order.transition(_S.PARTIALLY_FILLED if order.filled else _S.ACCEPTED, report.ts)
            if self.must_cancel and (order.account_id, order.client_order_id) in self.must_cancel:
                self._request_cancel(order, report.ts)  # a cancel-all's cancel was refused before the venue had it

    def _on_rejected(self, report: VenueOrderRejected, events: list[Any]) -> None:
        order = self._order_of(report, events)
        if order is None or order.status in TERMINAL:
            return
        self.now = report.ts
        if order.filled:  # a venue cannot refuse an order it already traded: treat as the end of the order
            self._finish(order, _S.EXPIRED, report.reason, report.ts, events)
            return
        order.transition(_S.REJECTED, report.ts)
        self._release_all(order)
        self._closed(order, report.ts)
        if order.account_id not in self.quiet_accounts:
            command = order.command
            events.append(
                OrderRejected(
                    client_order_id=order.client_order_id,
                    account_id=order.account_id,
                    symbol=order.symbol,
                    side=order.side,
                    order_type=order.order_type,
                    price=command.price,
                    qty=command.qty,
                    reason=report.reason,
                    detail=report.detail,
                    ts=report.ts,
                )
            )

    def _on_filled(self, report: VenueOrderFilled, events: list[Any]) -> None:
        order = self._order_of(report, events, report.venue_order_id)
        if order is None:
            return
        key = (report.venue, report.trade_id)
        booked = (report.price, report.qty, report.fee, report.fee_asset)
        trade_keys = order.trade_keys
        if trade_keys is None:
            trade_keys = order.trade_keys = {}
        elif key in trade_keys:
            if trade_keys[key] != booked:  # the same trade told twice with different values: the first one stands
                events.append(_bad_fill(report, order, f"differs from the same trade booked before {trade_keys[key]}"))
            return  # a re-sent fill: booked once already
        ts = report.ts
        self.now = ts
        price, qty, fee, fee_asset = report.price, report.qty, report.fee, report.fee_asset
        notional = price * qty // SCALE
        problem = _fill_problem(report, order, notional)
        if problem is not None:
            events.append(_bad_fill(report, order, problem))
            return
        if order.status in TERMINAL:
            events.append(
                Error(
                    code="FILL_AFTER_CLOSE",
                    message=f"{report.venue}: fill {report.trade_id} for {order.client_order_id}, which is "
                    f"{order.status.value}; booked",
                    ts=ts,
                )
            )
        trade_keys[key] = booked
        inst = self.instruments[order.symbol]
        account = order.account_id
        rate = inst.maker_fee_rate if report.liquidity is _Liquidity.MAKER else inst.taker_fee_rate
        order.notional_filled += notional
        order.fee_numerator += notional * rate
        buy = order.side is _Side.BUY
        if buy:
            pay_asset, pay, receive_asset, receive = inst.quote_asset, notional, inst.base_asset, qty
        else:
            pay_asset, pay, receive_asset, receive = inst.base_asset, qty, inst.quote_asset, notional
        from_locked = self.ledger.trade(
            account,
            pay_asset=pay_asset,
            pay=pay,
            receive_asset=receive_asset,
            receive=receive,
            fee_asset=fee_asset,
            fee=fee,
            locked_available=order.reserved,
        )
        # part of it came out of a free balance (beyond the order's reservation, or a fee in a third asset, or one
        # larger than what the fill brought): that balance may now be below zero
        if fee_asset == pay_asset:
            took_free = pay + fee > from_locked
        else:
            took_free = pay > from_locked or (fee > 0 and (fee_asset != receive_asset or fee > receive))
        if took_free:
            self._said_negative(report, order, (pay_asset, fee_asset), events)
        sign = 1 if buy else -1
        position_fee = fee if fee_asset == inst.quote_asset else 0  # fees in other assets are not the position's
        moved = qty
        if fee_asset == inst.base_asset and self._nets_base_fees():  # (a fee in the quote asset asks nothing more)
            # the position moves by what the account's base moved: the fee in its cost, or its proceeds
            moved = position_move(qty, fee, fee_asset, inst.base_asset, buy=buy)
        order.reserved -= from_locked
        if fee_asset == inst.quote_asset:
            order.fees_paid += fee
        order.filled += qty
        self.reference[order.symbol] = price
        pos = self.ledger.position(account, order.symbol)
        pos.apply_fill(sign * moved, notional, position_fee)
        pos.mark_price = price
        self._touched.add(account)
        self._filled = True
        if account not in self.quiet_accounts:
            leaves = 0  # an order by quote amount: what its unspent quote buys at this price until its last fill
            if (
                order.quote_qty is not None
                and report.leaves_qty
                and self.semantics >= 7
                and order.status not in TERMINAL
            ):
                leaves = max(1, max(order.quote_qty - order.notional_filled, 0) * SCALE // price)
            events.append(
                order.fill_event(
                    trade_id=report.trade_id,
                    price=price,
                    qty=qty,
                    fee=fee,
                    fee_asset=fee_asset,
                    liquidity=report.liquidity,
                    ts=ts,
                    quote_leaves=leaves,
                )
            )
            events.append(pos.to_event(ts))
        if order.status in TERMINAL:
            return
        done = order.filled >= order.qty if order.quote_qty is None else report.leaves_qty == 0
        if done:
            if order.quote_qty is not None:
                order.qty = order.filled
            self._finish(order, _S.FILLED, None, ts, events)
        else:
            if order.status is not _S.PENDING_CANCEL:
                order.transition(_S.PARTIALLY_FILLED, ts)
            self._release_excess(order, inst)

    def _said_negative(
        self, report: VenueOrderFilled, order: Order, assets: tuple[str, str], events: list[Any]
    ) -> None:
        """A fill that took a free balance below zero is booked (the venue did trade) and said: the venue holds funds
        the ledger does not know of (a fee asset never deposited, a deposit not yet seen)."""
        account = order.account_id
        for asset in dict.fromkeys(assets):
            free = self.ledger.free(account, asset)
            if free < 0:
                events.append(
                    Error(
                        code="NEGATIVE_BALANCE",
                        message=f"{report.venue}: fill {report.trade_id} for {account}/{order.client_order_id} leaves "
                        f"{account} {format_decimal(free)} {asset} free: the venue holds funds the ledger does not "
                        "know of (a fee asset never deposited?); reconcile the balances",
                        ts=report.ts,
                    )
                )

    def _on_closed(self, report: VenueOrderCancelled | VenueOrderExpired, events: list[Any]) -> None:
        order = self._order_of(report, events)
        if order is None or order.status in TERMINAL:
            return
        self.now = report.ts
        status = _S.CANCELLED if type(report) is VenueOrderCancelled else _S.EXPIRED
        if order.quote_qty is not None and order.filled:
            order.qty = order.filled
            if status is _S.EXPIRED and self.semantics >= 7:
                # the book ran out before its budget did: EXPIRED with its fills kept, as Binance states it (a venue
                # closes one that spent its budget with its last fill's leaves_qty 0)
                self._finish(order, status, report.reason, report.ts, events)
            else:  # journals of semantics 6 or less: an order by quote amount that spent anything is filled
                self._finish(order, _S.FILLED, None, report.ts, events)
            return
        self._finish(order, status, report.reason, report.ts, events)

    def _on_cancel_rejected(self, report: VenueCancelRejected, events: list[Any]) -> None:
        order = self._order_of(report, events)
        if order is None or order.status is not _S.PENDING_CANCEL:
            return  # no cancel on its way (closed meanwhile, or a re-sent cancel's answer): nothing to say
        if order.filled:
            order.transition(_S.PARTIALLY_FILLED, report.ts)
        elif order.venue_order_id:
            order.transition(_S.ACCEPTED, report.ts)
        else:
            # the cancel overtook the order itself (both sent again after a restart, in a race): the venue has not
            # acknowledged the order, so it is SUBMITTED again and its request goes out again (a venue ignores an
            # order it has seen), never silently ACCEPTED while the venue does not work it
            order.transition(_S.SUBMITTED, report.ts)
            self.outbox.append(_submit_request(order))
        if order.account_id in self.quiet_accounts:
            return
        events.append(
            OrderRejected(
                client_order_id=order.client_order_id,
                account_id=order.account_id,
                symbol=order.symbol,
                reason=report.reason,
                detail=f"cancel rejected: {report.detail}",
                ts=report.ts,
            )
        )
        key = (order.account_id, order.client_order_id)
        if self.must_cancel and key in self.must_cancel:
            self._cancel_again(order, key, report.ts, events)

    def _cancel_again(self, order: Order, key: tuple[str, str], ts: int, events: list[Any]) -> None:
        """A cancel-all (the kill switch) must close the order: the venue refused its cancel while the order is still
        open (its answer was lost, or the cancel overtook the order), so it goes out again: now if the venue works the
        order, else once the venue acknowledges it. After ``_CANCEL_ALL_TRIES`` refusals the order is left to the
        trader, said in an ``Error``."""
        tries = self.must_cancel[key] = self.must_cancel[key] + 1
        if tries >= _CANCEL_ALL_TRIES:
            del self.must_cancel[key]
            events.append(
                Error(
                    code="CANCEL_ALL_FAILED",
                    message=f"{order.account_id}/{order.client_order_id} ({order.symbol}) is still open: the venue "
                    f"refused {tries} cancels sent to close it; cancel it by hand",
                    ts=ts,
                )
            )
            return
        if order.status is not _S.SUBMITTED:
            self._request_cancel(order, ts)

    def _on_unknown(self, report: VenueOrderStatusUnknown, events: list[Any]) -> None:
        order = self._order_of(report, events)
        if order is None or not order.is_open or order.status is _S.UNKNOWN:
            return
        order.transition(_S.UNKNOWN, report.ts)
        events.append(
            Error(
                code="ORDER_STATUS_UNKNOWN",
                message=f"{report.venue}: outcome of {order.client_order_id} unknown ({report.detail}); "
                "its funds stay reserved until the venue answers",
                ts=report.ts,
            )
        )

    def _on_venue_error(self, report: Error, events: list[Any]) -> None:
        """A venue failed on one of its inputs (:func:`~veloz_actors.venues.base.guarded`): said as it came."""
        events.append(report)

    # ------------------------------------------------------------------------------------------------ settlement

    def _release_excess(self, order: Order, inst: Instrument) -> None:
        """After a partial fill, unlock what the rest of the order can no longer need."""
        if order.quote_qty is not None:
            return  # spends up to its budget until the venue says it is done
        if order.side is _Side.SELL:
            need = order.qty - order.filled
        else:
            limit = order.price if order.price is not None else order.protect_price
            rest = limit * (order.qty - order.filled) // SCALE  # type: ignore[operator]
            need = rest + max(0, ceil_div(order.fee_numerator + rest * inst.max_fee_rate, SCALE) - order.fees_paid)
        excess = order.reserved - need
        if excess > 0:
            self.ledger.release(order.account_id, order.reserve_asset, excess)
            order.reserved = need

    def _release_all(self, order: Order) -> None:
        if order.reserved > 0:
            self.ledger.release(order.account_id, order.reserve_asset, order.reserved)
        order.reserved = 0
        self._touched.add(order.account_id)

    def _finish(
        self, order: Order, status: OrderStatus, reason: RejectReason | None, ts: int, events: list[Any]
    ) -> None:
        """Move an order to a terminal state and release what it still holds."""
        order.transition(status, ts)
        self._release_all(order)
        self._closed(order, ts)
        if order.account_id in self.quiet_accounts:
            return
        event = order.closed_event(reason, ts)
        if event is not None:
            events.append(event)

    def _closed(self, order: Order, ts: int) -> None:
        self.oms.mark_closed(order)
        order.closed_ts = ts
        if self.must_cancel:
            self.must_cancel.pop((order.account_id, order.client_order_id), None)
        if self.config.retain_closed_ns:
            self.closed.append(order)

    def evict(self, before_ts: int) -> int:
        """Move orders closed before ``before_ts`` out of memory into the order history file; returns how many.

        Their fill keys go with them, and so do the duplicate and cancel retry records older than that. A report
        that still arrives for an evicted order is reported as an ``Error`` and changes nothing. Their client order ids
        stay taken (the latest ``_EVICTED_IDS``): a new order with one is rejected as a duplicate, as it is while the
        order is in memory.

        The orders leave memory whatever the disk does, as they do in a replay, so the kernel's answers never depend
        on it. Their records wait in :attr:`history_pending` (queries read them there, snapshots keep them) until
        the file takes them: a write that fails raises :class:`JournalError` and is tried again at the next call.
        """
        closed = self.closed
        gone: list[Order] = []
        while closed and closed[0].closed_ts < before_ts:
            gone.append(closed.popleft())
        if gone and self.history_path is not None:
            self.history_pending.append(
                b"".join(orjson.dumps(o.to_dict(), option=orjson.OPT_APPEND_NEWLINE) for o in gone)
            )
        ids, oldest_first = self.evicted_ids, self.evicted_order
        for order in gone:
            self.oms.forget(order)
            if order.last_cancel is not None:  # its id's cancel record stays, for as long as any other (below)
                self.last_cancel[(order.account_id, order.client_order_id)] = order.last_cancel
                order.last_cancel = None
            taken = _evicted_id(order.account_id, order.client_order_id)
            ids.add(taken)
            oldest_first.append(taken)
        while len(oldest_first) > _EVICTED_IDS:
            ids.discard(oldest_first.popleft())
        for retries in (self.last_cancel, self.last_duplicate):
            for key in [k for k, cmd in retries.items() if cmd.ts < before_ts]:
                del retries[key]
        self._expire_order_cancels(before_ts)
        self.evicted += len(gone)
        self._write_history()
        return len(gone)

    def _expire_order_cancels(self, before_ts: int) -> None:
        """Drop the cancel records kept on orders in memory that are older than ``before_ts``, as :meth:`evict` drops
        those of :attr:`last_cancel` (:attr:`cancelled_orders` holds each order with a record once)."""
        kept: deque[Order] = deque()
        for order in self.cancelled_orders:
            record = order.last_cancel
            if record is None:  # evicted just now: its record went to the map
                continue
            if record.ts < before_ts:
                order.last_cancel = None
            else:
                kept.append(order)
        self.cancelled_orders = kept

    def _write_history(self) -> None:
        """Append the records waiting in :attr:`history_pending` to the history file, or leave them waiting."""
        path = self.history_path
        pending = self.history_pending
        if path is None or not pending:
            return
        data = b"".join(pending)
        orders = data.count(b"\n")
        try:
            if path.exists():
                drop_torn_tail(path)  # a write torn by a crash: the next record starts a line of its own
            with open(path, "ab", buffering=0) as out:
                start = out.seek(0, os.SEEK_END)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[out.write(view) :]
                    os.fsync(out.fileno())  # a snapshot counting these bytes must never be on disk before them
                except OSError:
                    os.ftruncate(out.fileno(), start)  # never half a batch: the whole of it goes again
                    raise
        except OSError as exc:
            raise JournalError(
                f"cannot write order history {path} ({exc}): the records of {orders} evicted orders wait "
                "in memory (queries find them) and are written at the next eviction"
            ) from exc
        self.history_bytes = start + len(data)
        pending.clear()

    def order_record(self, account_id: str, client_order_id: str) -> dict[str, Any] | None:
        """One order as a JSON-ready dict: from memory, or from the order history file once evicted."""
        order = self.oms.get(account_id, client_order_id)
        if order is not None:
            return order.to_dict()
        if not self.may_be_in_history(account_id, client_order_id):
            return None
        found = self.order_history(account_id, client_order_id)
        return found[-1] if found else None

    def may_be_in_history(self, account_id: str, client_order_id: str) -> bool:
        """Whether an order not in memory may be in the order history file: False when every evicted id is still
        known and this one is not among them (no need to read the file)."""
        return self.evicted > len(self.evicted_order) or _evicted_id(account_id, client_order_id) in self.evicted_ids

    def order_history(self, account_id: str | None = None, client_order_id: str | None = None) -> list[dict[str, Any]]:
        """Evicted orders from the history file (oldest first), optionally of one account and client order id.

        A line that does not parse is a :class:`JournalError` naming the file and line; an incomplete last line (a
        write a crash tore) is skipped, as the journal's readers skip theirs.
        """
        return self.history_reader(account_id, client_order_id)()

    def history_reader(
        self, account_id: str | None = None, client_order_id: str | None = None
    ) -> Callable[[], list[dict[str, Any]]]:
        """:meth:`order_history` as a call to make later, from another thread: it keeps the file's path and a copy of
        the records not yet written, and touches the kernel no more. The file may be large (a line per order evicted
        in weeks of trading): a driver reads it beside the kernel's steps, not between them."""
        return partial(_read_history, self.history_path, list(self.history_pending), account_id, client_order_id)

    # ----------------------------------------------------------------------------------------- market and risk

    def _market(self, event: Any, events: list[Any]) -> None:
        """Market data: update reference prices and marks, then run post-trade risk and stop-losses."""
        kind = type(event)
        if kind is Trade:
            price = event.price
        elif kind is BookTop:
            if not event.bid_price or not event.ask_price:
                return
            price = (event.bid_price + event.ask_price) // 2
            inst = self.instruments.get(event.symbol)
            price = inst.round_price_down(price) if inst is not None else price
        elif kind is Kline:
            price = event.close
        elif kind is MarkPrice:
            price = event.mark_price
        elif kind is Ticker:
            price = event.last_price
        else:  # BookDelta, FundingRate: no price of their own here
            return
        symbol = event.symbol
        if symbol not in self.instruments:
            return
        ts = event.ts_event
        self.now = ts
        self.reference[symbol] = price
        self._mark(symbol, price)
        limits = self.risk.limits
        if limits.max_drawdown or limits.max_loss:
            self._post_trade(self._risk_accounts(), ts, events)
        if limits.stop_loss:
            self._stop_losses(ts, events)

    def _mark(self, symbol: str, price: int) -> None:
        for (_, sym), pos in self.ledger.positions.items():
            if sym == symbol:
                pos.mark_price = price

    def _risk_accounts(self) -> set[str]:
        exempt = self.risk.limits.exempt_accounts
        return {a for a in self.ledger.account_ids() if a not in exempt and a not in self.quiet_accounts}

    def _post_trade(self, accounts: Iterable[str], ts: int, events: list[Any]) -> None:
        limits = self.risk.limits
        if not (limits.max_drawdown or limits.max_loss):
            return
        for account in sorted(accounts):
            if account in limits.exempt_accounts or account in self.quiet_accounts:
                continue
            if not self.equity_complete(account):
                continue  # a holding without a price yet: equity would read low (and a loss that is not one)
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
        """Close every long position whose mark fell ``stop_loss`` below its average entry, with a market SELL.

        Spot only sells what it holds: a negative position is coins held before and sold, never a short to cover, so
        a stop-loss never buys. Base locked by the account's resting SELL orders of the symbol (a take-profit) is
        freed by cancelling them, and the next mark sells it. One stop order per position is working at a time, and
        a position whose stop order did not close it (no liquidity, refused by the venue) gets the next one no
        sooner than ``_STOP_RETRY_NS`` later in message time.
        """
        exempt = self.risk.limits.exempt_accounts
        for (account, symbol), pos in sorted(self.ledger.positions.items()):
            if pos.qty <= 0 or account in exempt or account in self.quiet_accounts:
                continue
            if not self.risk.stop_hit(pos.qty, pos.avg_entry_price, pos.mark_price):
                continue
            key = (account, symbol)
            last = self.stops.get(key)
            if last is not None:
                if ts - last[1] < _STOP_RETRY_NS:
                    continue
                stop = self.oms.get(account, last[0])
                if stop is not None and stop.is_open:
                    continue  # a stop order for this position is already working
            inst = self.instruments[symbol]
            step = inst.qty_step
            qty = pos.qty // step * step
            free = self.ledger.free(account, inst.base_asset) // step * step
            if free < qty:
                working = self.oms.open_orders(account, symbol)
                sells = [o for o in working if o.side is _Side.SELL and o.status is not _S.PENDING_CANCEL]
                for order in sorted(sells, key=lambda o: o.order_id):
                    self._request_cancel(order, ts)
                if sells:
                    events.append(
                        Error(
                            code="STOP_LOSS",
                            message=f"{account} {symbol}: stop-loss cancels {len(sells)} resting sell order(s) "
                            f"holding the position's base ({', '.join(o.client_order_id for o in sells)})",
                            ts=ts,
                        )
                    )
                qty = free
            if qty <= 0:
                continue
            self.internal_orders += 1
            cid = f"stop-{symbol}-{self.internal_orders}"
            while self.oms.get(account, cid) is not None or (
                self.evicted_ids and _evicted_id(account, cid) in self.evicted_ids
            ):  # the trader's own order took that id: the next one (the kernel's stop is never refused as a duplicate)
                self.internal_orders += 1
                cid = f"stop-{symbol}-{self.internal_orders}"
            self.stops[key] = (cid, ts)
            cmd = PlaceOrder(
                client_order_id=cid,
                account_id=account,
                symbol=symbol,
                side=_Side.SELL,
                order_type=_OrderType.MARKET,
                qty=qty,
                ts=ts,
            )
            events.append(Error(code="STOP_LOSS", message=f"{account} {symbol}: stop-loss closes the position", ts=ts))
            self._place(cmd, events, checked=False)

    def _reset(self, cmd: ResetCircuitBreaker, events: list[Any]) -> None:
        """``"*"`` lifts the engine-wide halt; an account's reset lifts its own breaker and measures its loss and
        drawdown afresh, and leaves an engine-wide halt in force (said in an ``Error``)."""
        self.now = cmd.ts
        risk = self.risk
        account = cmd.account_id
        if self.legacy_halts:  # a journal written before the engine-wide halt was kept apart: its meaning then
            for name in sorted(self._risk_accounts()) if account == "*" else [account]:
                risk.reset(name, self.equity(name) if self.equity_complete(name) else None)
                if self.ledger.has_account(name):
                    events.append(self.ledger.account_event(name, cmd.ts))
            return
        if account == "*":
            risk.engine_halt = None
            for name in sorted(self._risk_accounts()):
                events.append(self.ledger.account_event(name, cmd.ts))
            return
        risk.reset(account, self.equity(account) if self.equity_complete(account) else None)
        if self.ledger.has_account(account):
            events.append(self.ledger.account_event(account, cmd.ts))
        if risk.engine_halt is not None and account not in risk.limits.exempt_accounts:
            events.append(
                Error(
                    code="ENGINE_HALTED",
                    message=f"{account}: its own breaker is reset, but trading stays halted engine-wide "
                    f"({risk.engine_halt}) until that halt is reset (the risk actor's reset, or the API's resume)",
                    ts=cmd.ts,
                )
            )

    def _halt(self, cmd: HaltTrading, events: list[Any]) -> None:
        self.now = cmd.ts
        risk = self.risk
        if cmd.account_id == "*":
            if not self.legacy_halts:
                if risk.engine_halt is not None:
                    return  # halted already (a halt sent again after a restart)
                risk.engine_halt = cmd.reason
            accounts = sorted(self._risk_accounts())
        else:
            accounts = [cmd.account_id]
        for account in accounts:
            if account in risk.tripped:
                continue
            if cmd.account_id != "*" or self.legacy_halts:
                risk.tripped[account] = cmd.reason
            equity = self.equity(account)
            events.append(
                CircuitBreakerTripped(
                    account_id=account,
                    reason=cmd.reason,
                    equity=equity,
                    peak_equity=self.risk.peak_equity.get(account, equity),
                    ts=cmd.ts,
                )
            )

    # --------------------------------------------------------------------------------------------------- queries

    @property
    def legacy_halts(self) -> bool:
        """A journal of semantics 1: ``HaltTrading("*")`` trips every account's own breaker, as it did then."""
        return self.semantics < 2

    def _refuses_unknown_accounts(self) -> bool:
        """Semantics 4 on: an order for an account the engine does not have is UNKNOWN_ACCOUNT, before the risk
        checks. A journal of 3 or less refused it on the way (INSUFFICIENT_FUNDS at the reservation), as decided."""
        return self.semantics >= 4

    def _nets_base_fees(self) -> bool:
        """Semantics 5 on: a fee paid in the symbol's base asset moves the position (a buy's by ``qty - fee``, a
        sell's by ``qty + fee``), so the position is what the account holds and can be sold whole. A journal of 4 or
        less counted the whole fill, as its positions were then."""
        return self.semantics >= 5

    def _unknown_account(self, account: str) -> str:
        known = sorted(a for a in self.ledger.account_ids() if a not in self.quiet_accounts)
        shown = ", ".join(known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
        return f"unknown account {quoted(account)}: this engine's accounts are {shown or 'none'}"

    def _position_rule(self, qty: int) -> int:
        """The position ``max_position`` starts from: the long position (a negative one is deposited coins sold); in a
        journal of semantics 2 or less, ``abs(qty)``, as its buys were decided."""
        return qty if self.semantics >= 3 else abs(qty)

    def _open_qty(self, account: str, symbol: str, side: Side) -> int:
        total = 0
        quote_rule = self.semantics >= 3  # before: an open quote order counted its placeholder quantity
        for order in self.oms.open_orders(account, symbol):
            if order.side is side:
                total += self._quote_order_qty(order) if order.quote_qty is not None and quote_rule else order.leaves
        return total

    def _quote_order_qty(self, order: Order) -> int:
        """What the unspent quote amount of an open order by quote amount can still buy, at the low end of the price
        band around the reference, as the pre-trade check measured it (its ``qty`` is the instrument's maximum, a
        placeholder that would make every other buy of the symbol look far above ``max_position``)."""
        reference = self.reference.get(order.symbol, 0)
        low = self.risk.band(reference)[0] if self.risk.limits.price_band else reference
        unspent = max((order.quote_qty or 0) - order.notional_filled, 0)
        return unspent * SCALE // max(low, 1)

    def _gross_exposure(self, account: str) -> int:
        """The value of the account's long positions in the valuation asset (spot: a negative position is coins held
        before and sold, which adds no exposure; a position whose quote asset has no price yet counts as zero, and an
        order in such a symbol is refused while the notional limits need that price)."""
        total = 0
        for (acc, symbol), pos in self.ledger.positions.items():
            if acc == account and pos.qty > 0:
                price = self.reference.get(symbol, pos.mark_price)
                value = pos.qty * price // SCALE  # in the quote asset
                rate = self.asset_price(self.instruments[symbol].quote_asset)
                total += value if rate == SCALE else value * (rate or 0) // SCALE
        return total

    def asset_price(self, asset: str) -> int | None:
        """The price of one unit of ``asset`` in the valuation asset: ``SCALE`` for the valuation asset itself, else the
        reference price of the first instrument quoting ``asset`` in it; None when such an instrument has no price
        yet, 0 when there is no such instrument (nothing can value the asset)."""
        return self._pricing.price(asset, self.reference)

    def equity(self, account: str) -> int:
        """Every balance of ``account`` valued in the valuation asset at the reference prices (an asset without a
        price counts as zero: :meth:`equity_complete` says whether there is one)."""
        return self._pricing.value(self.ledger.balances(account), self.reference)[0]

    def equity_complete(self, account: str) -> bool:
        """Whether :meth:`equity` values every holding of ``account`` that can be valued: each asset held is the
        valuation asset, or an instrument quoting it in the valuation asset has a price (an asset no instrument
        values is left out, as the risk monitor leaves it out)."""
        return self._pricing.value(self.ledger.balances(account), self.reference)[1]

    def exposure(self) -> dict[str, dict[str, int]]:
        """Per account: every asset's balance (free + locked) and every symbol's position quantity."""
        out: dict[str, dict[str, int]] = {}
        for account in sorted(self.ledger.account_ids()):
            if account in self.quiet_accounts:
                continue
            row = {asset: free + locked for asset, (free, locked) in self.ledger.balances(account).items()}
            for (acc, symbol), pos in sorted(self.ledger.positions.items()):
                if acc == account:
                    row[symbol] = pos.qty
            out[account] = row
        return out

    def halted_accounts(self) -> dict[str, str]:
        """Every account that may not add risk now, with why: its own breaker, else the engine-wide halt."""
        risk = self.risk
        out = dict(risk.tripped)
        if risk.engine_halt is not None:
            for account in self._risk_accounts():
                out.setdefault(account, risk.engine_halt)
        return dict(sorted(out.items()))

    def status(self) -> dict[str, Any]:
        """What ``STATUS`` shows of the kernel, prices as decimal strings (the protocol's, and what orders take)."""
        return {
            "seq": self.seq,
            "orders": len(self.oms),
            "open_orders": len(self.oms.open_orders()),
            "evicted_orders": self.evicted,
            "accounts": sorted(a for a in self.ledger.account_ids() if a not in self.quiet_accounts),
            "circuit_breaker": self.halted_accounts(),
            "engine_halt": self.risk.engine_halt,
            "journal": str(self.journal.path) if self.journal else None,
            "journal_lines": self.journal.count if self.journal else 0,
            "journal_error": journal_error(self.journal),
            "reference_prices": {symbol: format_decimal(price) for symbol, price in sorted(self.reference.items())},
        }


# A fill's notional beyond this is no trade a ledger of int64 amounts (what the journal and the JSON events carry) holds.
_MAX_NOTIONAL = 2**62


def _fill_problem(report: VenueOrderFilled, order: Order, notional: int) -> str | None:
    """Why a venue's fill cannot be true of ``order`` (None when it can): a venue never trades a non-positive
    quantity or price, charges a negative fee, fills beyond the order's quantity (or its quote budget) or through
    its limit price. Such a report is a corrupt message or another order's; booking it would move money that did not
    move."""
    price, qty = report.price, report.qty
    if qty <= 0 or price <= 0:
        return f"has quantity {format_decimal(qty)} at price {format_decimal(price)}: both must be positive"
    if report.fee < 0:
        return f"charges a negative fee {format_decimal(report.fee)} {report.fee_asset}"
    if notional > _MAX_NOTIONAL:
        return f"is worth {format_decimal(notional)}, beyond any amount a balance can hold"
    if order.quote_qty is not None:
        if order.notional_filled + notional > order.quote_qty:
            return (
                f"takes the quote spent to {format_decimal(order.notional_filled + notional)}, beyond the order's "
                f"budget {format_decimal(order.quote_qty)}"
            )
    elif order.filled + qty > order.qty:
        return (
            f"takes the filled quantity to {format_decimal(order.filled + qty)}, beyond the order's "
            f"{format_decimal(order.qty)}"
        )
    limit = order.price
    if limit is not None and (price > limit if order.side is _Side.BUY else price < limit):
        return f"trades at {format_decimal(price)}, through the order's limit {format_decimal(limit)}"
    return None


def _bad_fill(report: VenueOrderFilled, order: Order, problem: str) -> Error:
    return Error(
        code="BAD_FILL_REPORT",
        message=f"{report.venue}: fill {report.trade_id} of {order.side.value} {order.account_id}/"
        f"{order.client_order_id} ({order.symbol}) {problem}; not booked",
        ts=report.ts,
    )


def _submit_request(order: Order) -> SubmitOrder:
    """The venue request of a funded order (built from its command, so a re-send is the same message)."""
    cmd = order.command
    return _submit_order(command=cmd, order_id=order.order_id, limit=cmd.price if cmd.price is not None else
                       order.protect_price)  # fmt: skip


def _read_history(
    path: Path | None, pending: list[bytes], account_id: str | None, client_order_id: str | None
) -> list[dict[str, Any]]:
    if path is None:
        return []
    needle = b"" if client_order_id is None else orjson.dumps(client_order_id)  # lines without it are not parsed
    out: list[dict[str, Any]] = []
    try:
        with open(path, "rb") as lines:
            _match_history(str(path), lines, needle, account_id, client_order_id, out)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise JournalError(f"cannot read order history {path}: {exc}") from exc
    if pending:
        waiting = b"".join(pending).splitlines(keepends=True)
        _match_history(f"{path} (not yet written)", waiting, needle, account_id, client_order_id, out)
    return out


def _match_history(
    where: str,
    lines: Iterable[bytes],
    needle: bytes,
    account_id: str | None,
    client_order_id: str | None,
    out: list[dict[str, Any]],
) -> None:
    for number, line in enumerate(lines, start=1):
        if needle not in line or not line.endswith(b"\n"):
            continue  # another order's, or a last line a crash tore
        try:
            data = orjson.loads(line)
            mine = (account_id is None or data["account_id"] == account_id) and (
                client_order_id is None or data["client_order_id"] == client_order_id
            )
        except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
            raise JournalError(f"{where}:{number}: corrupt order history line: {exc}") from exc
        if mine:
            out.append(data)


def _evicted_id(account_id: str, client_order_id: str) -> str:
    return f"{len(account_id)}:{account_id}{client_order_id}"  # the length prefix keeps any two pairs apart


def _next_multiple(seq: int, every: int) -> int:
    return (seq // every + 1) * every


def _cancel_rejected(cmd: CancelOrder, reason: RejectReason, detail: str, order: Order | None = None) -> Any:
    return OrderRejected(
        client_order_id=cmd.client_order_id,
        account_id=cmd.account_id,
        symbol=order.symbol if order is not None else "",
        reason=reason,
        detail=f"cancel rejected: {detail}",
        ts=cmd.ts,
    )


def replay_kernel(journal_path: str | Path, config: KernelConfig | None = None) -> tuple[TradingKernel, list[Any]]:
    """Apply a kernel journal from its first line through a fresh kernel; return it and the events."""
    header, messages = read_journal(journal_path)
    if config is None:
        config = KernelConfig.from_json(header["config"])
    elif header.get("config") != config.to_json():
        raise other_configuration(journal_path, header.get("config"), config.to_json())
    kernel = TradingKernel(config)
    kernel.semantics = semantics_of(header)
    return kernel, kernel.apply_many(messages)
