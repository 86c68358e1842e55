"""The single-process engine: the trading kernel driving in-process simulated venues, one per symbol.

``Engine.apply(message) -> list[event]`` is the whole interface, as for the kernel. A command goes to the kernel,
whose step (risk, reservation, state) leaves venue requests in its outbox; the engine hands each to the symbol's
:class:`~veloz_actors.venues.sim.SimVenue` at once and applies the execution reports it answers, each as a kernel
step, before the next input. A :class:`~veloz_actors.messages.Tick` steps every venue's simulated market (sorted by
symbol) and applies what it produced: fills of resting orders, then the new top of book.

The engine reads no clock: every timestamp comes from its inputs, so the same inputs give the same events, byte for
byte. With a journal attached every input is appended *before* it is applied and a snapshot of kernel and venues is
written every ``snapshot_every`` inputs; :meth:`Engine.recover` rebuilds from snapshot + journal and :func:`replay`
re-runs a journal from the start. The venues' reports are not journaled here: they follow from the journaled inputs
exactly (the actor engine, whose venues live in other processes, journals them in the OMS).

``veloz start --local --single-process``, ``veloz replay`` and the bar backtest run this class; the L2 backtest runs
the same kernel against :class:`~veloz_actors.venues.l2replay.L2ReplayVenue`.
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._exceptions import ConfigError, JournalError
from ..core.instruments import Instrument
from ..core.journal import (
    Durability,
    Journal,
    count_lines,
    iter_journal,
    other_configuration,
    read_header,
    read_journal,
    restore_snapshot,
    semantics_of,
    take_snapshot,
)
from ..core.kernel import KernelConfig, TradingKernel, json_normal, tune_gc
from ..core.risk import RiskLimits
from ..messages import BookDelta, BookTop, Error, Kline, Message, SubmitOrder, Tick, Trade
from .base import BooksToResync, guarded, venue_failure
from .paper import PaperVenue
from .sim import MM_ACCOUNT, SimVenue, use_semantics
from .simmarket import SimSymbol

__all__ = ["MM_ACCOUNT", "VENUE_KINDS", "Engine", "EngineConfig", "UnattachedVenue", "replay", "tune_gc"]

VENUE_KINDS = ("sim", "paper", "live")
_MARKET_TYPES = frozenset({Trade, BookTop, BookDelta, Kline})


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything that determines an engine's behaviour (and so must match between a journal and its replay).

    ``market_maker_balances`` funds each symbol's market maker with the amounts of that symbol's two assets.
    """

    instruments: tuple[Instrument, ...]
    balances: dict[str, dict[str, int]]  # account -> asset -> initial free balance
    risk: RiskLimits = field(default_factory=RiskLimits)
    valuation_asset: str = "USDT"
    sim_symbols: tuple[SimSymbol, ...] = ()
    seed: int = 7
    market_maker_balances: dict[str, int] = field(default_factory=dict)
    snapshot_every: int = 10_000
    emit_account_updates: bool = True
    retain_closed_ns: int = 0
    venue_kind: str = "sim"  # "sim": SimVenue per symbol; "paper": PaperVenue over live market data; "live": Binance

    def __post_init__(self) -> None:
        if self.venue_kind not in VENUE_KINDS:
            raise ConfigError(f"venue kind must be one of {VENUE_KINDS}, got {self.venue_kind!r}")
        if self.venue_kind != "sim" and self.sim_symbols:
            raise ConfigError(f"a {self.venue_kind} venue trades the live market: no sim.symbols with it")
        if self.venue_kind == "sim" and MM_ACCOUNT in self.balances:
            # its orders would never trade with the maker's quotes (self-trade prevention), which then rest across them
            raise ConfigError(
                f"balances: the account {MM_ACCOUNT!r} is the simulated market maker's own; give the account another "
                "name"
            )

    def kernel_config(self) -> KernelConfig:
        """The trader's side of this config: the kernel starts from the simulated market's first prices."""
        return KernelConfig(
            instruments=self.instruments,
            balances=self.balances,
            risk=self.risk,
            valuation_asset=self.valuation_asset,
            snapshot_every=self.snapshot_every,
            emit_account_updates=self.emit_account_updates,
            retain_closed_ns=self.retain_closed_ns,
            reference_prices={s.symbol: s.initial_mid for s in self.sim_symbols},
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-normal form (lists, not tuples): it is compared with the header read back from a journal."""
        return json_normal(asdict(self), self.risk)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineConfig:
        """Inverse of :meth:`to_json` (used to rebuild the engine of a journal from its header): the trader's side
        is read as the kernel reads its own header, then the simulated market."""
        kernel = KernelConfig.from_json(data)
        try:
            return cls(
                instruments=kernel.instruments,
                balances=kernel.balances,
                risk=kernel.risk,
                valuation_asset=kernel.valuation_asset,
                sim_symbols=tuple(SimSymbol(**s) for s in data["sim_symbols"]),
                seed=data["seed"],
                market_maker_balances=dict(data["market_maker_balances"]),
                snapshot_every=kernel.snapshot_every,
                emit_account_updates=kernel.emit_account_updates,
                retain_closed_ns=kernel.retain_closed_ns,
                venue_kind=data.get("venue_kind", "sim"),  # journals written before paper trading are "sim"
            )
        except (KeyError, TypeError) as exc:
            raise JournalError(f"journal header has an unusable engine config: {exc}") from exc

    def venues(self) -> dict[str, Any]:
        """One venue per instrument: a :class:`SimVenue` (with its market maker where the config simulates that
        symbol), or a :class:`PaperVenue` for paper trading."""
        if self.venue_kind == "paper":
            return {inst.symbol: PaperVenue(inst) for inst in self.instruments}
        if self.venue_kind == "live":
            return {inst.symbol: UnattachedVenue(inst.symbol) for inst in self.instruments}
        sims = {s.symbol: s for s in self.sim_symbols}
        known = {i.symbol for i in self.instruments}
        unknown = sorted(set(sims) - known)
        if unknown:
            raise JournalError(f"simulated symbols without an instrument: {unknown}")
        return {
            inst.symbol: SimVenue(
                inst, market=sims.get(inst.symbol), seed=self.seed, maker_balances=self.market_maker_balances
            )
            for inst in self.instruments
        }


class UnattachedVenue:
    """A live venue's place until its adapter is attached (``engine.venues[symbol] = adapter``).

    A journal replayed at recovery re-issues the requests the kernel made in the run that wrote it; they were sent
    then, and must never be sent again: this venue keeps only their count (``held``). The exchange's reconciliation,
    once the adapter is attached, settles every order they concern.
    """

    consumes_market = False

    def __init__(self, symbol: str, name: str = "UNATTACHED") -> None:
        self.symbol = symbol
        self.name = name
        self.held = 0

    def submit(self, request: Any) -> list[Any]:
        self.held += 1
        return []

    cancel = submit

    def totals(self) -> dict[str, int]:
        return {}

    @property
    def deposited(self) -> dict[str, int]:
        return {}

    def status(self) -> dict[str, Any]:
        return {"venue": self.name, "symbol": self.symbol, "attached": False, "held_requests": self.held}


class Engine:
    """Kernel + in-process venues in one process. Not thread-safe: one caller applies messages in order."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        journal_path: str | Path | None = None,
        durability: Durability = "group",
        group_ms: float = 5.0,
    ) -> None:
        self.config = config
        self.venues = config.venues()
        self.kernel = TradingKernel(config.kernel_config())
        self.seq = 0
        self.last_tick = -1
        self.books_to_resync = BooksToResync()  # symbols whose venue failed on market data (take_books_to_resync)
        self.market_errors = 0  # market events the engine raised on (an Error of their step: _market_failed)
        self.journal: Journal | None = None
        self.snapshot_path: Path | None = None
        if journal_path is not None:
            self.attach_journal(journal_path, durability=durability, group_ms=group_ms)

    # the kernel's state, as the interfaces and tests read it
    @property
    def ledger(self) -> Any:
        return self.kernel.ledger

    @property
    def oms(self) -> Any:
        return self.kernel.oms

    @property
    def risk(self) -> Any:
        return self.kernel.risk

    @property
    def instruments(self) -> dict[str, Instrument]:
        return self.kernel.instruments

    @property
    def reference(self) -> dict[str, int]:
        return self.kernel.reference

    def equity(self, account: str) -> int:
        return self.kernel.equity(account)

    # ------------------------------------------------------------------------------------------------- persistence

    def attach_journal(self, path: str | Path, *, durability: Durability = "group", group_ms: float = 5.0) -> None:
        self._attach(Journal(path, self.config.to_json(), durability=durability, group_ms=group_ms))

    def _attach(self, journal: Journal) -> None:
        self.journal = journal
        self.snapshot_path = Path(str(journal.path) + ".snapshot")
        self.kernel.history_path = Path(str(journal.path) + ".orders")
        self.use_semantics(journal.semantics)

    def use_semantics(self, semantics: int) -> None:
        """Apply the rules of a journal of ``semantics`` (:data:`~veloz_actors.core.journal.SEMANTICS`): the kernel's
        decisions and the simulated venues' market."""
        self.kernel.semantics = semantics
        use_semantics(self.venues.values(), semantics)

    def close(self) -> None:
        """Flush and close the journal (idempotent)."""
        if self.journal is not None:
            self.journal.close()

    def snapshot(self) -> bytes:
        """Kernel and venues as bytes (the journal handle excluded)."""
        state = {k: v for k, v in self.__dict__.items() if k != "journal"}
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def _restore(self, state: bytes) -> None:
        # the kernel's files are not in its state (TradingKernel.__getstate__): the caller gives it its own
        journal, snapshot_path = self.journal, self.snapshot_path
        self.__dict__.update(pickle.loads(state))
        self.journal, self.snapshot_path = journal, snapshot_path

    @classmethod
    def recover(
        cls, config: EngineConfig, journal_path: str | Path, *, durability: Durability = "group"
    ) -> tuple[Engine, list[Any]]:
        """Rebuild an engine from its snapshot and journal; returns it (journal attached) and the replayed events.

        As :meth:`TradingKernel.recover`: the journal's lock first, the order history cut back to the snapshot's.
        """
        journal_path = Path(journal_path)
        # the journal (and its lock) first: no snapshot or history file is read or cut while another engine runs
        journal = Journal(journal_path, config.to_json(), durability=durability)
        try:
            engine, events = cls._replay_tail(config, journal_path)
        except BaseException:
            with contextlib.suppress(JournalError):
                journal.close()
            raise
        engine._attach(journal)
        return engine, events

    @classmethod
    def _replay_tail(cls, config: EngineConfig, journal_path: Path) -> tuple[Engine, list[Any]]:
        """The engine of the snapshot (if any) with the journal's lines after it applied, journal not attached."""
        engine = cls(config)
        events: list[Any] = []
        lines = count_lines(journal_path)
        start = restore_snapshot(journal_path, lines, engine._restore)
        engine.use_semantics(semantics_of(read_header(journal_path)))
        engine.kernel.resume_history(Path(str(journal_path) + ".orders"), journal_lines=lines)
        for message in iter_journal(journal_path, start):
            events.extend(engine.apply(message))
        return engine, events

    # -------------------------------------------------------------------------------------------------------- apply

    def apply(self, message: Message) -> list[Any]:
        """Journal ``message`` (if a journal is attached), apply it, and return the events it caused."""
        journal = self.journal
        if journal is not None:
            journal.append(message)
        self.seq += 1
        kind = type(message)
        if kind is Tick:
            events = self._tick(message)  # type: ignore[arg-type]
        elif kind in _MARKET_TYPES:
            events = []
            try:
                self._market(message, events)
            except Exception as exc:  # noqa: BLE001 - an Error of the step, in the run and in every replay
                events.append(self._market_failed(message, exc))
        else:  # a command or a report: the kernel's step, then its requests routed as _route does, inline (the order
            # path's every step sends one: calling _route and take_outbox cost 1.9 % of a place + cancel's instructions,
            # scripts/bench_core.py --count); the loop is _route's: keep the two the same
            kernel = self.kernel
            events = []
            step = kernel.step
            step(message, events)
            while kernel.outbox:
                requests, kernel.outbox = kernel.outbox, []  # (its take_outbox, inline)
                for request in requests:
                    if type(request) is SubmitOrder:
                        command = request.command
                        venue = self.venues[command.symbol]
                        call, ts = venue.submit, command.ts
                    else:
                        venue = self.venues[request.symbol]
                        call, ts = venue.cancel, request.ts
                    try:
                        reports = call(request)
                    except Exception as exc:  # noqa: BLE001 - said in the reports
                        reports = venue_failure(venue, call, request, ts, exc)
                    for report in reports:
                        step(report, events)
        if journal is not None and self.snapshot_path is not None and self.seq % self.config.snapshot_every == 0:
            # after the whole step, its evictions included; a failure is an event of the step, never an exception
            error = take_snapshot(
                journal, self.snapshot_path, self.snapshot, self.config.snapshot_every, self.kernel.now
            )
            if error is not None:
                events.append(error)
        return events

    def apply_many(self, messages: Iterable[Message]) -> list[Any]:
        events: list[Any] = []
        for message in messages:
            events.extend(self.apply(message))
        return events

    def _route(self, events: list[Any]) -> None:
        """Hand the kernel's requests to their venues and apply the reports, until nothing is left to send.

        As :func:`~veloz_actors.venues.base.guarded`, inline: a venue that raises answers with the reports of
        :func:`~veloz_actors.venues.base.venue_failure`. For market data and clock ticks; :meth:`apply` runs the same
        loop inline for commands and reports (the order path), so a change here is a change there too."""
        kernel = self.kernel
        venues = self.venues
        step = kernel.step
        while kernel.outbox:
            for request in kernel.take_outbox():
                # the kernel only sends orders for its instruments; a SubmitOrder's symbol and ts are its command's
                if type(request) is SubmitOrder:
                    command = request.command
                    venue = venues[command.symbol]
                    call, ts = venue.submit, command.ts
                else:
                    venue = venues[request.symbol]
                    call, ts = venue.cancel, request.ts
                try:
                    reports = call(request)
                except Exception as exc:  # noqa: BLE001 - said in the reports
                    reports = venue_failure(venue, call, request, ts, exc)
                for report in reports:
                    step(report, events)

    def _market(self, event: Any, events: list[Any]) -> None:
        """Market data: a venue trading against it (paper) moves its book and fills what it reaches, then the kernel
        takes the event (reference prices, marks, post-trade risk); their events go to ``events`` as they come. A
        venue that failed on it may lack what it carried (a diff): its symbol waits in :meth:`take_books_to_resync`."""
        kernel = self.kernel
        venue = self.venues.get(event.symbol)
        if venue is not None and getattr(venue, "consumes_market", False):
            for report in self.books_to_resync.on_market(venue, event):
                events += kernel.apply(report)
        events += kernel.apply(event)
        if kernel.outbox:
            self._route(events)

    def _market_failed(self, event: Any, exc: Exception) -> Error:
        """The engine raised applying a market event (not a venue: :func:`guarded` keeps those): an ``Error``
        (``MARKET_APPLY_FAILED``) ends the step instead, with the events it made before (facts, kept), and the
        symbol's book waits to be synced again. It is caught here, inside the journaled step, so a replay of the
        journal takes the same step to the same ``Error`` and goes on: a restart never dies on the line that the
        run survived, as the actor engine's feed goes on past a batch a venue shard failed on."""
        self.market_errors += 1
        self.books_to_resync.symbols.add(event.symbol)
        message = (
            f"the engine failed to apply a {event.symbol} {type(event).__name__}, which is skipped; its book is "
            f"synced again: {type(exc).__name__}: {exc}"
        )
        return Error(code="MARKET_APPLY_FAILED", message=message, ts=event.ts_recv)

    def _tick(self, tick: Tick) -> list[Any]:
        if tick.ts <= self.last_tick:
            return []
        self.last_tick = tick.ts
        events: list[Any] = []
        kernel = self.kernel
        for symbol in sorted(self.venues):
            venue = self.venues[symbol]
            for output in guarded(venue, venue.on_clock, tick.ts, tick.ts):
                if type(output) is BookTop:
                    events.append(output)  # the market the venue now shows is an event of the engine too
                kernel.step(output, events)
                if kernel.outbox:
                    self._route(events)
        return events

    def take_books_to_resync(self) -> list[str]:
        """The symbols whose venue failed on market data, or the engine on a market event, since the last call
        (:class:`~veloz_actors.venues.base.BooksToResync`)."""
        return self.books_to_resync.take()

    # --------------------------------------------------------------------------------------------------- queries

    def totals(self) -> dict[str, int]:
        """For each asset: the kernel's accounts and fees plus every venue's own money, which trading conserves."""
        out = self.kernel.ledger.totals()
        for venue in self.venues.values():
            for asset, amount in venue.totals().items():
                out[asset] = out.get(asset, 0) + amount
        return out

    def deposited(self) -> dict[str, int]:
        """For each asset: what the kernel's accounts and the venues' market makers started with."""
        out = dict(self.kernel.ledger.deposited)
        for venue in self.venues.values():
            for asset, amount in venue.deposited.items():
                out[asset] = out.get(asset, 0) + amount
        return out

    def status(self) -> dict[str, Any]:
        status = self.kernel.status()
        status["seq"] = self.seq
        status["journal"] = str(self.journal.path) if self.journal else None
        status["journal_lines"] = self.journal.count if self.journal else 0
        status["last_tick"] = self.last_tick
        status["venues"] = {s: v.status() for s, v in sorted(self.venues.items())}
        return status


def replay(journal_path: str | Path, config: EngineConfig | None = None) -> tuple[Engine, list[Any]]:
    """Apply a journal from its first line through a fresh engine (no journal attached); return it and the events.

    The engine is built from the config in the journal's header unless ``config`` is given (then they must match).
    """
    header, messages = read_journal(journal_path)
    if config is None:
        config = EngineConfig.from_json(header["config"])
    elif header.get("config") != config.to_json():
        raise other_configuration(journal_path, header.get("config"), config.to_json())
    engine = Engine(config)
    engine.use_semantics(semantics_of(header))
    return engine, engine.apply_many(messages)
