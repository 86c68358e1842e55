"""Engine-wide post-trade risk, off the order path: exposure, equity and drawdown from the bus, and a halt when a limit
is crossed.

The trading kernel checks each order before it is placed (pre-trade risk) and each account after its fills (its loss
circuit breaker). :class:`RiskMonitor` watches the whole engine from the outside, as a second pair of eyes that never
delays an order: it follows the fills and market prices the engine publishes, keeps its own ledger of every account
(balances per asset, position per symbol, built exactly the way the kernel's ledger books a fill), values it, and
when an engine-wide limit of :class:`EngineRiskLimits` is crossed it returns the command that halts trading::

    monitor = RiskMonitor(RiskMonitorConfig(instruments=..., balances=..., limits=EngineRiskLimits(max_loss=...)))
    commands = monitor.apply_many(events_from_the_bus)     # [] or [HaltTrading(account_id="*", reason=..., ts=...)]
    oms.submit_many(commands)                              # the kernel's circuit breaker: risk-increasing orders
                                                           # are rejected with CIRCUIT_BREAKER until reset

What it measures (integers in 1e-8 units, as everywhere in the core):

- **symbol exposure**: the sum over accounts of the long position in the symbol (the base bought through it, net;
  base units). Spot sells only what it holds: a negative position is coins held before and sold, which lowers the
  holdings (the asset exposure) and adds none here, so a halt, which blocks buys, never blocks what would lower it;
- **asset exposure**: the sum over accounts of ``|balance|`` (free + locked) of the asset, deposits included;
- **gross exposure**: the sum over accounts and symbols of the long ``position quantity x mark``, in the valuation
  asset (a symbol quoted in another asset, ETHBTC, is valued through that asset's price, BTCUSDT's mark);
- **equity**: every account's balances valued at the marks, summed over accounts (exactly the sum of
  :meth:`TradingKernel.equity <veloz_actors.core.kernel.TradingKernel.equity>` over the accounts, when both saw the
  same fills and prices); **drawdown** is the fall from its peak as a fraction of the peak, **loss** the fall from
  the starting equity. Both are measured only once every held asset has a mark.

Marks follow the kernel's reference prices: a ``Trade``'s price, a ``BookTop``'s mid rounded down to the tick, a
``MarkPrice``, a ``Kline``'s close, a ``Ticker``'s last price, and every fill's price.

Guarantees:

- a fill is booked once: it is known by (symbol, account, client order id, trade id), and a re-sent ``OrderFilled``
  has no second effect (the key set is bounded by ``max_fill_keys``, oldest forgotten first, counted);
- a limit halts once per crossing: the halt is returned when the limit is crossed, not on every event while it stays
  crossed; once back under its limit it is armed again. :meth:`RiskMonitor.reset` re-arms every limit and measures
  drawdown and loss afresh from the current equity; a limit still crossed then halts again at once (the reset's
  commands end with that halt, its reason naming the limit);
- its halt is engine-wide (``HaltTrading`` for ``"*"``) and its reset lifts that halt alone
  (``ResetCircuitBreaker`` for ``"*"``): an account's own loss breaker in the kernel stays as it is, and an account's
  reset in the kernel leaves the engine-wide halt in force;
- the kill switch (:meth:`RiskMonitor.kill_switch`) cancels every open order, then halts;
- fed from a numbered stream (:meth:`RiskMonitor.apply_segment`: the fills of the OMS's kernel steps after
  :attr:`RiskMonitor.cursor` up to a new position), the monitor records the position it reached in its journal (a
  ``Tick`` line whose ``ts`` is the position), so after a restart it asks for exactly what follows. When the sender
  no longer has that tail it sends its ledger instead (:meth:`RiskMonitor.rebase`: every account's balances and
  positions at a position, journaled as ``AccountUpdated`` / ``PositionUpdated`` lines closed by the ``Tick``; a
  rebase cut short by a crash is never applied);
- with a journal, every event that changes the state (a new fill, a mark that moved, a kill switch, a reset) is
  journaled before it is applied, and a snapshot is written every ``snapshot_every`` lines, so
  :meth:`RiskMonitor.recover` rebuilds the same state after a restart. Events that change nothing (a duplicate
  fill, an account update, a top of book whose mid did not move) are not journaled. A halt it sends is journaled
  too, after the event that caused it. The limits are not part of the journal's identity: a restart with new limits
  keeps the state (the halt in force, if any, is the one the journal says was sent), and the new limits apply from
  the next event.

The monitor never reads a clock: every timestamp comes from the events (or the caller, for the kill switch and reset).
"""

from __future__ import annotations

import os
import pickle
from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .._exceptions import InvalidInput, JournalError
from ..fixed import SCALE, format_decimal
from ..messages import (
    AccountUpdated,
    BookTop,
    CancelAllOrders,
    HaltTrading,
    Kline,
    MarkPrice,
    OrderFilled,
    PositionUpdated,
    ResetCircuitBreaker,
    Side,
    Tick,
    Ticker,
    Trade,
)
from .account import position_move
from .instruments import Instrument, Pricing
from .journal import (
    Durability,
    Journal,
    count_lines,
    iter_journal,
    lock_journal,
    read_header,
    restore_snapshot,
    write_snapshot,
)

__all__ = ["EngineRiskLimits", "RiskMonitor", "RiskMonitorConfig", "kill_switch_commands"]

KILL_SWITCH_REASON = "kill switch"

Command = HaltTrading | CancelAllOrders | ResetCircuitBreaker
FillKey = tuple[str, str, str, int]  # symbol (one venue per symbol), account, client order id, trade id


def kill_switch_commands(ts: int) -> list[Command]:
    """The kill switch as the kernel takes it: cancel every open order of every account, then halt them all."""
    return [CancelAllOrders(account_id="*", ts=ts), HaltTrading(account_id="*", reason=KILL_SWITCH_REASON, ts=ts)]


@dataclass(frozen=True, slots=True)
class EngineRiskLimits:
    """Engine-wide limits, in 1e-8 units; 0 (or a symbol or asset left out) means no limit.

    ``max_symbol_exposure``: symbol -> the most base bought through the symbol over all accounts (sum of the long
    positions);
    ``max_asset_exposure``: asset -> the most of that asset held over all accounts (sum of ``|balance|``);
    ``max_gross_exposure``: the most long position value over all accounts and symbols, in the valuation asset;
    ``max_drawdown``: the largest fall of engine equity from its peak, as a fraction (0.2 -> 20_000_000);
    ``max_loss``: the largest fall of engine equity from its starting value, in the valuation asset.

    >>> EngineRiskLimits(max_drawdown=20_000_000, max_symbol_exposure={"BTCUSDT": 5 * 10**8})  # doctest: +SKIP
    """

    max_symbol_exposure: dict[str, int] = field(default_factory=dict)
    max_asset_exposure: dict[str, int] = field(default_factory=dict)
    max_gross_exposure: int = 0
    max_drawdown: int = 0
    max_loss: int = 0

    def __post_init__(self) -> None:
        named = [(f"max_symbol_exposure.{k}", v) for k, v in self.max_symbol_exposure.items()]
        named += [(f"max_asset_exposure.{k}", v) for k, v in self.max_asset_exposure.items()]
        named += [
            ("max_gross_exposure", self.max_gross_exposure),
            ("max_drawdown", self.max_drawdown),
            ("max_loss", self.max_loss),
        ]
        for name, value in named:
            if type(value) is not int or value < 0:
                raise InvalidInput(f"engine risk limit {name} must be a non-negative integer (1e-8 units): {value!r}")
        if self.max_drawdown > SCALE:
            raise InvalidInput(f"engine risk limit max_drawdown {format_decimal(self.max_drawdown)} is above 1 (100 %)")

    @property
    def enabled(self) -> bool:
        """True when at least one limit is set."""
        return bool(
            any(self.max_symbol_exposure.values())
            or any(self.max_asset_exposure.values())
            or self.max_gross_exposure
            or self.max_drawdown
            or self.max_loss
        )


@dataclass(frozen=True, slots=True)
class RiskMonitorConfig:
    """What a monitor starts from and the limits it enforces.

    ``instruments``, ``balances`` (account -> asset -> initial balance, the shape of ``KernelConfig.balances``),
    ``valuation_asset`` and ``reference_prices`` (symbol -> the price before any market data) must be the kernel's,
    for the monitor's exposure to equal the kernel's: :meth:`from_kernel` takes them from a ``KernelConfig``.
    """

    instruments: tuple[Instrument, ...]
    balances: dict[str, dict[str, int]]
    limits: EngineRiskLimits = field(default_factory=EngineRiskLimits)
    valuation_asset: str = "USDT"
    reference_prices: dict[str, int] = field(default_factory=dict)
    snapshot_every: int = 10_000
    max_fill_keys: int = 100_000  # fills remembered for deduplication (oldest forgotten first)

    def __post_init__(self) -> None:
        symbols = [i.symbol for i in self.instruments]
        if len(set(symbols)) != len(symbols):
            raise InvalidInput(f"risk monitor: duplicate instruments in {symbols}")
        for account, assets in self.balances.items():
            for asset, amount in assets.items():
                if type(amount) is not int or amount < 0:
                    raise InvalidInput(f"risk monitor: balance {account}.{asset} must be a non-negative integer")
        unknown = sorted(set(self.reference_prices) - set(symbols))
        if unknown:
            raise InvalidInput(f"risk monitor: reference prices for unknown symbols {unknown}")
        if any(type(p) is not int or p <= 0 for p in self.reference_prices.values()):
            raise InvalidInput("risk monitor: reference prices must be positive integers (1e-8 units)")
        if self.snapshot_every < 1 or self.max_fill_keys < 1:
            raise InvalidInput("risk monitor: snapshot_every and max_fill_keys must be at least 1")

    @classmethod
    def from_kernel(cls, kernel_config: Any, limits: EngineRiskLimits, **options: Any) -> RiskMonitorConfig:
        """The monitor of a kernel: its instruments, balances, valuation asset and reference prices."""
        return cls(
            instruments=tuple(kernel_config.instruments),
            balances={a: dict(b) for a, b in kernel_config.balances.items()},
            limits=limits,
            valuation_asset=kernel_config.valuation_asset,
            reference_prices=dict(kernel_config.reference_prices),
            **options,
        )

    def to_json(self) -> dict[str, Any]:
        return orjson.loads(orjson.dumps(asdict(self)))  # type: ignore[no-any-return]

    def ledger_json(self) -> dict[str, Any]:
        """What a journal must have been written with to be replayed by this config: everything but the limits and
        the operational settings (limits may change between runs; the new ones apply from the next event)."""
        data = self.to_json()
        for name in ("limits", "snapshot_every", "max_fill_keys"):
            del data[name]
        return data


class RiskMonitor:
    """Engine-wide exposure, equity and drawdown from bus events; the halt and kill-switch commands to send.

    Not thread-safe: one caller applies events in order. Every method that can cause a command returns the commands
    to send to the OMS, in order (an empty list when there is nothing to send).
    """

    def __init__(
        self,
        config: RiskMonitorConfig,
        *,
        journal_path: str | Path | None = None,
        durability: Durability = "group",
        group_ms: float = 5.0,
    ) -> None:
        self.config = config
        self.limits = config.limits
        self.instruments = {i.symbol: i for i in config.instruments}
        self._pricing = Pricing(config.instruments, config.valuation_asset)  # the kernel's rule
        self.balances: dict[str, dict[str, int]] = {
            account: dict(sorted(assets.items())) for account, assets in sorted(config.balances.items())
        }
        self.positions: dict[tuple[str, str], int] = {}
        self.marks: dict[str, int] = dict(config.reference_prices)
        self._fill_keys: set[FillKey] = set()
        self._fill_order: deque[FillKey] = deque()
        self.fills = 0
        self.duplicate_fills = 0
        self.forgotten_fill_keys = 0
        self.unknown_symbol_fills = 0
        self.peak_equity: int | None = None
        self.start_equity: int | None = None
        self.breached: dict[str, str] = {}  # limit key -> the reason of its crossing
        self._measure_all = False  # the next event measures every limit (after a reset or a recovery)
        self.halted: str | None = None  # the reason of the halt this monitor sent (None: not halted by it)
        self.halts_sent = 0
        self.kill_switches = 0
        self.now = 0
        self.seq = 0  # state-changing inputs applied (journal lines, when journaled)
        self.cursor = 0  # the position reached in the sender's numbered stream (apply_segment, rebase)
        self.rebases = 0
        self._rebase: list[AccountUpdated | PositionUpdated] | None = None  # a rebase's lines until its Tick
        self._values: dict[tuple[str, str], int] = {}  # (account, asset) -> value in the valuation asset
        self._unpriced: set[tuple[str, str]] = set()  # held balances whose asset has no mark yet
        self._equity = 0
        for account, assets in self.balances.items():
            for asset in assets:
                self._revalue(account, asset)
        self._measure_start()
        self.journal: Journal | None = None
        self.snapshot_path: Path | None = None
        if journal_path is not None:
            self.attach_journal(journal_path, durability=durability, group_ms=group_ms)

    # ------------------------------------------------------------------------------------------------- persistence

    def attach_journal(
        self,
        path: str | Path,
        *,
        durability: Durability = "group",
        group_ms: float = 5.0,
        lock_file: BinaryIO | None = None,
    ) -> None:
        header = {"risk_monitor": self.config.ledger_json()}
        self.journal = Journal(path, header, durability=durability, group_ms=group_ms, lock_file=lock_file)
        self.snapshot_path = Path(str(path) + ".snapshot")

    def close(self) -> None:
        """Flush and close the journal (idempotent)."""
        if self.journal is not None:
            self.journal.close()

    def hand_to_os(self) -> None:
        """Write the journal's buffered lines to the OS (a killed process then loses none of them)."""
        if self.journal is not None:
            self.journal.hand_to_os()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("journal", "snapshot_path")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"_measure_all": False})  # newer than some pickles
        self.__dict__.update(state)
        if "_pricing" not in state:
            self._pricing = Pricing(self.config.instruments, self.config.valuation_asset)
        self.journal = None
        self.snapshot_path = None

    def snapshot(self) -> bytes:
        """The whole state as bytes (the journal handle excluded)."""
        return pickle.dumps(self.__getstate__(), protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, state: bytes) -> None:
        """Take the state of :meth:`snapshot` (this monitor's config, limits and journal stay)."""
        keep = {k: self.__dict__[k] for k in ("journal", "snapshot_path", "config", "limits")}
        self.__dict__.update(pickle.loads(state))
        self.__dict__.update(keep)

    @classmethod
    def recover(
        cls,
        config: RiskMonitorConfig,
        journal_path: str | Path,
        *,
        durability: Durability = "group",
        lock_wait: float = 0.0,
    ) -> tuple[RiskMonitor, list[Command]]:
        """Rebuild a monitor from its snapshot and journal; returns it (journal attached) and what to send now.

        The commands the replayed lines caused were sent before the restart and are not returned again, except the
        halt in force: a monitor that had halted trading (and was not reset) returns its halt once more, in case the
        restart came between journaling an event and sending the halt it caused (the kernel ignores a halt for an
        account that is halted already); after a kill switch, the cancel of every open order before it.
        """
        journal_path = Path(journal_path)
        held = lock_journal(journal_path, lock_wait)  # before any of its files is read or cut
        try:
            monitor, commands = cls._replay(config, journal_path)
            monitor.attach_journal(journal_path, durability=durability, lock_file=held)
        except BaseException:
            held.close()
            raise
        return monitor, commands

    @classmethod
    def _replay(cls, config: RiskMonitorConfig, journal_path: Path) -> tuple[RiskMonitor, list[Command]]:
        """The monitor of the snapshot and the journal's lines (journal not attached), and what to send now."""
        monitor = cls(config)
        if journal_path.exists():
            header = read_header(journal_path)
            if header.get("config") != {"risk_monitor": config.ledger_json()}:
                raise JournalError(
                    f"{journal_path} was written by a risk monitor with different instruments, balances, valuation "
                    "asset or reference prices; move it away to start from the configured balances"
                )
            start = restore_snapshot(journal_path, count_lines(journal_path), monitor.restore)
            for message in iter_journal(journal_path, start):
                monitor.seq += 1
                monitor._step(message)
            if monitor._rebase is not None:  # a rebase cut short: its lines end the journal; cut them, never apply
                _drop_last_lines(journal_path, len(monitor._rebase))
                monitor.seq -= len(monitor._rebase)
                monitor._rebase = None
            # The limits, perhaps new ones, are measured afresh: what the replay crossed under them was never sent
            # (the halt in force is the journaled one). Under a halt in force, a limit crossed now is covered by it;
            # without one, a crossed limit halts on the next event.
            monitor.breached = monitor._crossed(_ALL_LIMITS) if monitor.halted is not None else {}
            monitor._measure_all = monitor.halted is None
        commands: list[Command] = []
        if monitor.halted == KILL_SWITCH_REASON:  # its cancel-all too: the OMS may never have had it
            commands += kill_switch_commands(monitor.now)
        elif monitor.halted is not None:
            commands.append(HaltTrading(account_id="*", reason=monitor.halted, ts=monitor.now))
        return monitor, commands

    def _journal(self, message: Any) -> None:
        self.seq += 1
        journal = self.journal
        if journal is not None:
            journal.append(message)

    def _maybe_snapshot(self) -> None:
        journal = self.journal
        if journal is not None and self.snapshot_path is not None and self.seq % self.config.snapshot_every == 0:
            journal.flush()  # a snapshot never covers a line that is not yet on disk itself
            write_snapshot(self.snapshot_path, journal.count, self.snapshot())

    # -------------------------------------------------------------------------------------------------------- apply

    def apply(self, event: Any) -> list[Command]:
        """Apply one bus event; returns the commands to send (a halt when a limit was crossed, else nothing).

        Fills and market prices change the state; every other event (orders, account updates, the kernel's own
        circuit breaker) is ignored.
        """
        commands: list[Command] = []
        self._feed(event, commands)
        return commands

    def apply_many(self, events: Iterable[Any]) -> list[Command]:
        """Apply a batch of bus events in order; the commands of all of them, in order."""
        commands: list[Command] = []
        for event in events:
            self._feed(event, commands)
        return commands

    def apply_segment(self, position: int, fills: Iterable[OrderFilled]) -> list[Command]:
        """Apply the fills of one stretch of a numbered stream and record ``position`` as reached (journaled after
        the fills: a crash in between leaves the old position, the stretch comes again and its fills are known)."""
        commands = self.apply_many(fills)
        if position != self.cursor:
            self._journal(Tick(ts=position))
            self._step(Tick(ts=position), commands)
            self._maybe_snapshot()
        return commands

    def rebase(
        self, position: int, accounts: Iterable[AccountUpdated], positions: Iterable[PositionUpdated]
    ) -> list[Command]:
        """Take the sender's ledger at ``position`` (every account's balances, every position) in place of this
        monitor's, when the stream's tail before it is gone; marks, peaks and limits stay. Returns a halt when the
        new exposure crosses a limit."""
        lines: list[Any] = [*accounts, *positions, Tick(ts=position)]
        commands: list[Command] = []
        for line in lines:
            self._journal(line)
            self._step(line, commands)
        self._maybe_snapshot()
        return commands

    def _apply_rebase(self, lines: list[AccountUpdated | PositionUpdated], commands: list[Command] | None) -> None:
        balances: dict[str, dict[str, int]] = {}
        positions: dict[tuple[str, str], int] = {}
        for line in lines:
            if type(line) is AccountUpdated:
                balances[line.account_id] = dict(sorted((b.asset, b.free + b.locked) for b in line.balances))
            else:
                positions[(line.account_id, line.symbol)] = line.qty  # type: ignore[union-attr]
        self.balances = dict(sorted(balances.items()))
        self.positions = positions
        self._values.clear()
        self._unpriced.clear()
        self._equity = 0
        for account, assets in self.balances.items():
            for asset in assets:
                self._revalue(account, asset)
        self.rebases += 1
        self._check(self.now, commands, _ALL_LIMITS)

    def _feed(self, event: Any, commands: list[Command]) -> None:
        kind = type(event)
        if kind is OrderFilled:
            if self._fill_key(event) in self._fill_keys:
                self.duplicate_fills += 1
                return
            if event.symbol not in self.instruments:
                self.unknown_symbol_fills += 1
                return
        elif kind in _MARK_TYPES:
            mark = self._mark_of(event)
            if mark is None or self.marks.get(event.symbol) == mark:
                return
        else:
            return
        self._journal(event)
        self._step(event, commands)
        self._maybe_snapshot()

    def _step(self, message: Any, commands: list[Command] | None = None) -> None:
        """Apply one journaled input (a replay passes no ``commands``: what it caused was sent before, and the halts
        it sent are journaled lines of their own)."""
        out: list[Command] | None = commands
        kind = type(message)
        if kind is OrderFilled:
            self._fill(message)
            self._check(message.ts, out, _ALL_LIMITS)
        elif kind is HaltTrading:
            if message.reason == KILL_SWITCH_REASON:
                self._kill(message.ts, out if out is not None else [])
            else:  # a halt a crossed limit sent (journaled when sent)
                self.now = max(self.now, message.ts)
                self.halts_sent += 1
                if self.halted is None:
                    self.halted = message.reason
        elif kind is ResetCircuitBreaker:
            self._reset(message.ts, out if out is not None else [])
        elif kind is Tick:  # a position reached in the numbered stream; it closes a rebase
            self.cursor = message.ts
            if self._rebase is not None:
                lines, self._rebase = self._rebase, None
                self._apply_rebase(lines, out)
        elif kind is AccountUpdated or kind is PositionUpdated:
            if self._rebase is None:
                self._rebase = []
            self._rebase.append(message)
        else:
            self.marks[message.symbol] = self._mark_of(message)  # type: ignore[assignment]
            self._revalue_symbol(message.symbol)
            self._check(message.ts_event, out, _VALUE_LIMITS)  # a price moves no quantity

    # ------------------------------------------------------------------------------------------------------- fills

    @staticmethod
    def _fill_key(fill: OrderFilled) -> FillKey:
        return (fill.symbol, fill.account_id, fill.client_order_id, fill.trade_id)

    def _fill(self, fill: OrderFilled) -> None:
        """Book a fill exactly as the kernel's ledger does: pay, receive, and a fee out of its own asset."""
        key = self._fill_key(fill)
        self._fill_keys.add(key)
        self._fill_order.append(key)
        if len(self._fill_order) > self.config.max_fill_keys:
            self._fill_keys.discard(self._fill_order.popleft())
            self.forgotten_fill_keys += 1
        self.fills += 1
        inst = self.instruments[fill.symbol]
        notional = fill.price * fill.qty // SCALE
        if fill.side is Side.BUY:
            pay_asset, pay, receive_asset, receive, signed = inst.quote_asset, notional, inst.base_asset, fill.qty, 1
        else:
            pay_asset, pay, receive_asset, receive, signed = inst.base_asset, fill.qty, inst.quote_asset, notional, -1
        balances = self.balances.get(fill.account_id)
        if balances is None:
            balances = self.balances[fill.account_id] = {}
        balances[pay_asset] = balances.get(pay_asset, 0) - pay
        balances[receive_asset] = balances.get(receive_asset, 0) + receive
        if fill.fee:
            balances[fill.fee_asset] = balances.get(fill.fee_asset, 0) - fill.fee
        moved = position_move(fill.qty, fill.fee, fill.fee_asset, inst.base_asset, buy=signed > 0)  # as the kernel
        key_position = (fill.account_id, fill.symbol)
        self.positions[key_position] = self.positions.get(key_position, 0) + signed * moved
        self.now = max(self.now, fill.ts)
        if self.marks.get(fill.symbol) != fill.price:
            self.marks[fill.symbol] = fill.price
            self._revalue_symbol(fill.symbol)
        self._revalue(fill.account_id, pay_asset)
        self._revalue(fill.account_id, receive_asset)
        if fill.fee:
            self._revalue(fill.account_id, fill.fee_asset)

    def _mark_of(self, event: Any) -> int | None:
        kind = type(event)
        if event.symbol not in self.instruments:
            return None
        if kind is Trade:
            return event.price  # type: ignore[no-any-return]
        if kind is BookTop:
            if not event.bid_price or not event.ask_price:
                return None
            return self.instruments[event.symbol].round_price_down((event.bid_price + event.ask_price) // 2)
        if kind is MarkPrice:
            return event.mark_price  # type: ignore[no-any-return]
        if kind is Kline:
            return event.close  # type: ignore[no-any-return]
        return event.last_price  # type: ignore[no-any-return]  # Ticker

    # ------------------------------------------------------------------------------------------------ measurements

    def _price_of(self, asset: str) -> int | None:
        """The price valuing ``asset``: the first of its symbols with a mark, as the kernel values it; None when it
        has symbols but none has a mark yet; 0 for an asset nothing values (ignored, as the kernel ignores it)."""
        return self._pricing.price(asset, self.marks)

    def _revalue(self, account: str, asset: str) -> None:
        """Value one balance again and keep the equity total (equity is kept incrementally: marks arrive often)."""
        key = (account, asset)
        amount = self.balances[account].get(asset, 0)
        price = self._price_of(asset)
        if price is None:
            value = 0
            if amount:
                self._unpriced.add(key)
            else:
                self._unpriced.discard(key)
        else:
            value = amount if price == SCALE and asset == self.config.valuation_asset else amount * price // SCALE
            self._unpriced.discard(key)
        self._equity += value - self._values.get(key, 0)
        self._values[key] = value

    def _revalue_symbol(self, symbol: str) -> None:
        """A symbol's mark moved: value again the balances it values."""
        inst = self.instruments[symbol]
        asset = inst.base_asset
        if inst.quote_asset != self.config.valuation_asset or asset == inst.quote_asset:
            return
        for account, assets in self.balances.items():
            if asset in assets:
                self._revalue(account, asset)

    def equity(self) -> tuple[int, bool]:
        """Engine equity in the valuation asset (the sum over accounts of the kernel's ``equity``), and whether every
        held asset that can be valued has a mark."""
        return self._equity, not self._unpriced

    def symbol_exposure(self) -> dict[str, int]:
        """Per symbol traded so far: the sum over accounts of the long position (base bought net, 1e-8; a negative
        position, coins held before and sold, counts as none)."""
        out: dict[str, int] = {}
        for (_, symbol), qty in self.positions.items():
            out[symbol] = out.get(symbol, 0) + max(qty, 0)
        return dict(sorted(out.items()))

    def asset_exposure(self) -> dict[str, int]:
        """Per asset: the sum over accounts of ``|balance|`` (free + locked, 1e-8)."""
        out: dict[str, int] = {}
        for assets in self.balances.values():
            for asset, amount in assets.items():
                out[asset] = out.get(asset, 0) + abs(amount)
        return dict(sorted(out.items()))

    def gross_exposure(self) -> int:
        """The sum over accounts and symbols of the long ``position x mark``, in the valuation asset (a negative
        position, coins held before and sold, adds none): a symbol quoted in another asset is valued through that
        asset's price (symbols without a mark, or whose quote asset has no price yet, count as zero)."""
        total = 0
        marks = self.marks
        valuation = self.config.valuation_asset
        for (_, symbol), qty in self.positions.items():
            if qty > 0:
                value = qty * marks.get(symbol, 0) // SCALE  # in the symbol's quote asset
                quote = self.instruments[symbol].quote_asset
                if quote != valuation:
                    value = value * (self._price_of(quote) or 0) // SCALE
                total += value
        return total

    def _measure_start(self) -> None:
        if self.start_equity is None:
            equity, complete = self.equity()
            if complete:
                self.start_equity = self.peak_equity = equity

    # -------------------------------------------------------------------------------------------------------- limits

    def _check(self, ts: int, commands: list[Command] | None, kinds: frozenset[str]) -> None:
        """Measure the limits of ``kinds``; a limit crossed now (and not already) halts; one back under re-arms.

        ``commands`` None: a replay, which only follows the equity's peak (the halts it sent are journaled lines).
        """
        self.now = max(self.now, ts)
        if commands is None:
            self._crossed(frozenset())  # the peak and start equity, as the live run measured them
            return
        if self._measure_all:
            self._measure_all = False
            kinds = _ALL_LIMITS
        crossed = self._crossed(kinds)
        for key in [k for k in self.breached if k.partition(":")[0] in kinds and k not in crossed]:
            del self.breached[key]
        for key, reason in crossed.items():
            if key in self.breached:
                continue
            self.breached[key] = reason
            sent = f"risk monitor: {reason}"
            halt = HaltTrading(account_id="*", reason=sent, ts=self.now)
            self._journal(halt)  # after the event that caused it: a restart knows the halt was sent
            if self.halted is None:
                self.halted = sent
            self.halts_sent += 1
            commands.append(halt)

    def _crossed(self, kinds: frozenset[str]) -> dict[str, str]:
        limits = self.limits
        out: dict[str, str] = {}
        if limits.max_symbol_exposure and "symbol_exposure" in kinds:
            exposure = self.symbol_exposure()
            for symbol, limit in sorted(limits.max_symbol_exposure.items()):
                held = exposure.get(symbol, 0)
                if limit and held > limit:
                    out[f"symbol_exposure:{symbol}"] = (
                        f"engine exposure in {symbol} {format_decimal(held)} above the limit {format_decimal(limit)}"
                    )
        if limits.max_asset_exposure and "asset_exposure" in kinds:
            exposure = self.asset_exposure()
            for asset, limit in sorted(limits.max_asset_exposure.items()):
                held = exposure.get(asset, 0)
                if limit and held > limit:
                    out[f"asset_exposure:{asset}"] = (
                        f"engine holdings of {asset} {format_decimal(held)} above the limit {format_decimal(limit)}"
                    )
        valuation = self.config.valuation_asset
        if limits.max_gross_exposure:
            gross = self.gross_exposure()
            if gross > limits.max_gross_exposure:
                out["gross_exposure"] = (
                    f"gross exposure {format_decimal(gross)} {valuation} above the limit "
                    f"{format_decimal(limits.max_gross_exposure)} {valuation}"
                )
        equity, complete = self.equity()  # always measured: the peak is tracked for the gauges too
        if complete:
            if self.start_equity is None:
                self.start_equity = self.peak_equity = equity
            peak = self.peak_equity
            assert peak is not None
            if equity > peak:
                peak = self.peak_equity = equity
            if limits.max_drawdown and peak > 0 and (peak - equity) * SCALE > limits.max_drawdown * peak:
                out["drawdown"] = (
                    f"engine drawdown {format_decimal((peak - equity) * SCALE // peak)} from peak equity "
                    f"{format_decimal(peak)} {valuation} (equity {format_decimal(equity)}) above the limit "
                    f"{format_decimal(limits.max_drawdown)}"
                )
            loss = self.start_equity - equity
            if limits.max_loss and loss > limits.max_loss:
                out["loss"] = (
                    f"engine loss {format_decimal(loss)} {valuation} from the starting equity "
                    f"{format_decimal(self.start_equity)} above the limit {format_decimal(limits.max_loss)} {valuation}"
                )
        return out

    # --------------------------------------------------------------------------------------------- operator actions

    def kill_switch(self, ts: int) -> list[Command]:
        """Cancel every open order of every account, then halt trading: the commands to send, in that order."""
        self._journal(HaltTrading(account_id="*", reason=KILL_SWITCH_REASON, ts=ts))
        commands: list[Command] = []
        self._kill(ts, commands)
        self._maybe_snapshot()
        return commands

    def _kill(self, ts: int, commands: list[Command]) -> None:
        self.now = max(self.now, ts)
        self.halted = KILL_SWITCH_REASON
        self.kill_switches += 1
        self.halts_sent += 1
        commands.extend(kill_switch_commands(ts))

    def reset(self, ts: int) -> list[Command]:
        """Re-arm every limit and measure drawdown and loss from the current equity.

        When this monitor had halted trading (a limit or the kill switch), returns a ``ResetCircuitBreaker`` for
        ``"*"``, so trading resumes; otherwise nothing. Every limit is measured at once: one still crossed (an
        exposure: drawdown and loss start afresh) halts again now, its ``HaltTrading`` after the reset with the
        numbers in its reason, so no buy gets through before the next event. Reduce the exposure first (selling is
        not blocked by a halt) or raise the limit.
        """
        self._journal(ResetCircuitBreaker(account_id="*", ts=ts))
        commands: list[Command] = []
        self._reset(ts, commands)
        self._check(ts, commands, _ALL_LIMITS)  # a halt it sends is journaled after the reset: a replay keeps it
        self._maybe_snapshot()
        return commands

    def _reset(self, ts: int, commands: list[Command]) -> None:
        self.now = max(self.now, ts)
        if self.halted is not None:
            commands.append(ResetCircuitBreaker(account_id="*", ts=ts))  # the engine-wide halt; accounts' own stay
        self.halted = None
        self.breached.clear()
        self._measure_all = True
        self.start_equity = self.peak_equity = None
        self._measure_start()

    # --------------------------------------------------------------------------------------------------- queries

    def exposure(self) -> dict[str, dict[str, int]]:
        """Per account: every asset's balance and every traded symbol's position quantity.

        The shape of :meth:`TradingKernel.exposure <veloz_actors.core.kernel.TradingKernel.exposure>`: after the same
        fills the two are equal.
        """
        out: dict[str, dict[str, int]] = {}
        for account in sorted(self.balances):
            row = dict(sorted(self.balances[account].items()))
            for (acc, symbol), qty in sorted(self.positions.items()):
                if acc == account:
                    row[symbol] = qty
            out[account] = row
        return out

    def limit_use(self) -> dict[str, float]:
        """Each set limit's current use as a fraction of the limit (1.0 = at the limit), for display and gauges."""
        limits = self.limits
        out: dict[str, float] = {}
        if limits.max_symbol_exposure:
            exposure = self.symbol_exposure()
            for symbol, limit in sorted(limits.max_symbol_exposure.items()):
                if limit:
                    out[f"symbol_exposure:{symbol}"] = exposure.get(symbol, 0) / limit
        if limits.max_asset_exposure:
            exposure = self.asset_exposure()
            for asset, limit in sorted(limits.max_asset_exposure.items()):
                if limit:
                    out[f"asset_exposure:{asset}"] = exposure.get(asset, 0) / limit
        if limits.max_gross_exposure:
            out["gross_exposure"] = self.gross_exposure() / limits.max_gross_exposure
        drawdown, loss = self._drawdown_and_loss()
        if limits.max_drawdown:
            out["drawdown"] = drawdown / limits.max_drawdown
        if limits.max_loss:
            out["loss"] = loss / limits.max_loss
        return out

    def _drawdown_and_loss(self) -> tuple[int, int]:
        """Drawdown (fraction, 1e-8) and loss (valuation asset, 1e-8) now; zero until equity could be measured."""
        equity, complete = self.equity()
        peak, start = self.peak_equity, self.start_equity
        if not complete or peak is None or start is None:
            return 0, 0
        drawdown = (peak - equity) * SCALE // peak if peak > 0 and equity < peak else 0
        return drawdown, max(0, start - equity)

    def gauges(self) -> dict[str, float]:
        """The monitor's numbers as floats for Prometheus (``interfaces/metrics.py`` names and labels them).

        Keys: ``equity``, ``peak_equity``, ``start_equity``, ``loss`` and ``gross_exposure`` (valuation asset),
        ``drawdown`` (fraction of the peak), ``halted`` (0 or 1), ``fills`` and ``duplicate_fills`` (counts),
        ``symbol_exposure:<symbol>`` (base), ``asset_exposure:<asset>``, and ``limit_use:<limit>`` for each set
        limit (``limit_use:drawdown``, ``limit_use:symbol_exposure:BTCUSDT``, ...: the fraction of the limit used).
        """
        equity, _ = self.equity()
        drawdown, loss = self._drawdown_and_loss()
        out: dict[str, float] = {
            "equity": equity / SCALE,
            "peak_equity": (self.peak_equity or 0) / SCALE,
            "start_equity": (self.start_equity or 0) / SCALE,
            "drawdown": drawdown / SCALE,
            "loss": loss / SCALE,
            "gross_exposure": self.gross_exposure() / SCALE,
            "halted": 1.0 if self.halted is not None else 0.0,
            "fills": float(self.fills),
            "duplicate_fills": float(self.duplicate_fills),
        }
        for symbol, qty in self.symbol_exposure().items():
            out[f"symbol_exposure:{symbol}"] = qty / SCALE
        for asset, amount in self.asset_exposure().items():
            out[f"asset_exposure:{asset}"] = amount / SCALE
        for name, use in self.limit_use().items():
            out[f"limit_use:{name}"] = use
        return out

    def status(self) -> dict[str, Any]:
        """What ``STATUS`` shows: the state in decimal strings, the limits crossed, counters and the journal."""
        equity, complete = self.equity()
        drawdown, loss = self._drawdown_and_loss()
        return {
            "halted": self.halted is not None,
            "halt_reason": self.halted,
            "limits_crossed": dict(self.breached),
            "valuation_asset": self.config.valuation_asset,
            "equity": format_decimal(equity),
            "equity_complete": complete,
            # held assets with no price yet: until they have one, drawdown and loss are not measured
            "unpriced_assets": sorted({asset for _, asset in self._unpriced}),
            "peak_equity": format_decimal(self.peak_equity) if self.peak_equity is not None else None,
            "start_equity": format_decimal(self.start_equity) if self.start_equity is not None else None,
            "drawdown": format_decimal(drawdown),
            "loss": format_decimal(loss),
            "gross_exposure": format_decimal(self.gross_exposure()),
            "symbol_exposure": {s: format_decimal(q) for s, q in self.symbol_exposure().items()},
            "limit_use": {k: round(v, 6) for k, v in self.limit_use().items()},
            "fills": self.fills,
            "duplicate_fills": self.duplicate_fills,
            "forgotten_fill_keys": self.forgotten_fill_keys,
            "unknown_symbol_fills": self.unknown_symbol_fills,
            "halts_sent": self.halts_sent,
            "kill_switches": self.kill_switches,
            "rebases": self.rebases,
            "cursor": self.cursor,
            "seq": self.seq,
            "last_ts": self.now,
            "journal": str(self.journal.path) if self.journal is not None else None,
            "journal_lines": self.journal.count if self.journal is not None else 0,
        }


def _drop_last_lines(path: Path, count: int) -> None:
    """Cut the last ``count`` complete lines of a journal (and a torn line after them), on disk."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    for _ in range(count):
        end = data.rfind(b"\n", 0, end - 1) + 1
    with open(path, "r+b") as f:
        f.truncate(end)
        f.flush()
        os.fsync(f.fileno())


_MARK_TYPES = frozenset({Trade, BookTop, MarkPrice, Kline, Ticker})
_ALL_LIMITS = frozenset({"symbol_exposure", "asset_exposure", "gross_exposure", "drawdown", "loss"})
_VALUE_LIMITS = frozenset({"gross_exposure", "drawdown", "loss"})
