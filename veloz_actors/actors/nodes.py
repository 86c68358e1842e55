"""The actor classes of a running engine, as plain classes: ``ray.remote`` is applied at the edge (supervisor.py).

Each class is short delegation code over the core; none of them decides anything about orders or money:

- :class:`OmsNode` is the sequencer of the order path. It owns the core :class:`~veloz_actors.core.engine.Engine`
  (OMS state machine, risk, the account ledger that reserves funds, and the simulated venue's matching books), so an
  order is checked, funded, matched and settled in one synchronous step, in sequence order, journaled before it is
  applied. It then fans the resulting events out (fire-and-forget, ordered per sender) to the account, the book
  shards and the event bus. After a restart it rebuilds from snapshot + journal and pushes its account state again.
- :class:`AccountNode` keeps each account's balances and positions as the OMS reports them (idempotent by the OMS
  sequence number), journals what it applied, and answers balance and position queries off the order path.
- :class:`BookNode` is one shard of order books (one or more symbols): it applies batches of market events (the
  simulated venue's top of book, or a recorded feed), keeps the latest book per symbol and forwards the batch to the
  bus, with a bounded window of calls in flight.
- :class:`FeedNode` is the market feed of one venue: the simulated market's clock (a :class:`Tick` every
  ``tick_ms`` for engines without a driver) and/or a recorded file replayed in batches (``actors.replay``: paced by
  its recorded receive times at ``speed``, resuming where it was after a restart).
- :class:`BusNode` fans events out to subscribers, each with its own bounded drop-oldest queue and drop counter.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray

from ..core.engine import Engine, EngineConfig
from ..core.journal import Journal, read_journal, read_snapshot, write_snapshot
from ..messages import (
    AccountUpdated,
    BookTop,
    CancelOrder,
    Error,
    OrderFilled,
    OrderRejected,
    PlaceOrder,
    PositionUpdated,
    Tick,
    Trade,
)
from .backpressure import DropOldestQueue
from .batches import TOP_DTYPE, BookTopBatch

__all__ = ["AccountNode", "BookNode", "BusNode", "EngineSpec", "FeedNode", "OmsNode", "LATENCY_BUCKETS"]

# order processing time inside the OMS (seconds): the histogram's upper bounds
_FLUSH_SECONDS = 0.005  # the fan-out period: events reach the bus and the account within ~5 ms, coalesced
_ACCOUNT_OUTBOX = 100_000
_ACCOUNT_SNAPSHOT_EVERY = 10_000  # account batches between snapshots

LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Everything needed to start (or restart) one engine's actors; plain data, sent to every actor."""

    name: str
    engine_config: dict[str, Any]
    journal_dir: str | None = None
    durability: str = "group"
    group_ms: float = 5.0
    shards: dict[str, tuple[str, ...]] = field(default_factory=dict)  # shard name -> symbols
    subscriber_queue: int = 10_000
    order_inbox: int = 1_000
    peer_window: int = 64  # fire-and-forget calls in flight to one peer before the sender waits or drops
    tick_ms: int = 250
    run_clock: bool = False  # the feed ticks the simulated market (engines without a driver, e.g. detached)
    replay: dict[str, Any] | None = None  # a recorded file the feed replays: path, speed, batch, reference_prices
    strategies: tuple[dict[str, Any], ...] = ()  # live strategies (see strategy_node.py)

    def journal_path(self, actor: str) -> Path | None:
        return None if self.journal_dir is None else Path(self.journal_dir) / f"{actor}.journal"

    def shard_of(self) -> dict[str, str]:
        return {symbol: shard for shard, symbols in self.shards.items() for symbol in symbols}


def _reconstructed() -> bool:
    try:
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # noqa: BLE001 - outside an actor (unit use): a fresh start
        return False


def _to_os(journal: Journal | None) -> None:
    """Hand the journal's buffered lines to the OS before answering: a killed actor process then loses nothing it
    acknowledged (fsync for power loss stays the journal's durability policy)."""
    if journal is not None:
        journal.hand_to_os()


class _Window:
    """Fire-and-forget calls to one peer, at most ``limit`` in flight: the sender waits for the oldest (ordered
    streams) or drops and counts (``drop=True``, market data to a slow peer)."""

    __slots__ = ("refs", "limit", "dropped", "sent")

    def __init__(self, limit: int) -> None:
        self.refs: deque[Any] = deque()
        self.limit = limit
        self.dropped = 0
        self.sent = 0

    def depth(self) -> int:
        refs = self.refs
        if refs:
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0, fetch_local=False)
            if ready:
                done = set(ready)
                self.refs = deque(r for r in refs if r not in done)
        return len(self.refs)

    def room(self) -> bool:
        return len(self.refs) < self.limit or self.depth() < self.limit

    def send(self, method: Any, *args: Any, drop: bool = False) -> bool:
        if len(self.refs) >= self.limit and self.depth() >= self.limit:
            if drop:
                self.dropped += 1
                return False
            oldest = self.refs.popleft()
            with contextlib.suppress(Exception):  # a dead peer: its restart resyncs it
                ray.wait([oldest], timeout=10.0, fetch_local=False)
        self.refs.append(method.remote(*args))
        self.sent += 1
        return True


# ------------------------------------------------------------------------------------------------------------- OMS


class OmsNode:
    """The order path's sequencer over the core engine (see the module docstring)."""

    def __init__(self, spec: EngineSpec, account: Any, bus: Any, books: dict[str, Any]) -> None:
        self.spec = spec
        config = EngineConfig.from_json(spec.engine_config)
        path = spec.journal_path("oms")
        self.restarted = _reconstructed()
        if path is not None:
            self.engine, _ = Engine.recover(config, path, durability=spec.durability)  # type: ignore[arg-type]
        else:
            self.engine = Engine(config)
        self.account, self.bus, self.books = account, bus, books
        self.shard_of = spec.shard_of()
        self.windows = {"account": _Window(spec.peer_window), "bus": _Window(spec.peer_window)}
        self.windows.update({f"book:{name}": _Window(spec.peer_window) for name in books})
        self.orders = 0
        self.cancels = 0
        self.rejections: Counter[str] = Counter()
        self.market_events = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.started_ns = time.time_ns()
        self.bus_dropped = 0
        self._lock = threading.Lock()
        self._account_out: list[Any] = []
        self._account_seq = self.engine.seq
        self._account_resync = self.restarted  # after a restart the account gets the full state first
        self._bus_out: list[Any] = []
        self._book_out: dict[str, list[Any]] = {}
        self._stop = threading.Event()
        threading.Thread(target=self._flush_loop, name="veloz-oms-fan-out", daemon=True).start()

    # -------------------------------------------------------------------------------------------- the order path

    def submit(self, command: Any) -> list[Any]:
        """Apply one command (journaled first) and return its events; a retried identical command is a no-op."""
        start = time.perf_counter()
        events = self.engine.apply(command)
        _to_os(self.engine.journal)
        self._count(command, events, time.perf_counter() - start)
        self._fan_out(events)
        return events

    def submit_many(self, commands: Sequence[Any]) -> list[list[Any]]:
        """Apply a batch of commands in order; one list of events per command."""
        out = []
        everything: list[Any] = []
        engine = self.engine
        for command in commands:
            start = time.perf_counter()
            events = engine.apply(command)
            self._count(command, events, time.perf_counter() - start)
            out.append(events)
            everything.extend(events)
        _to_os(engine.journal)
        self._fan_out(everything)
        return out

    def tick(self, ts: int) -> list[Any]:
        """One step of the simulated market (its market maker requotes on the matching books)."""
        events = self.engine.apply(Tick(ts=ts))
        _to_os(self.engine.journal)
        self._fan_out(events)
        return events

    def market(self, batch: Sequence[Any]) -> int:
        """Reference prices and marks from a recorded feed (matching stays on the simulated venue's books)."""
        events: list[Any] = []
        for event in batch:
            events.extend(self.engine.apply(event))
        self.market_events += len(batch)
        self._fan_out(events)
        return len(batch)

    def _count(self, command: Any, events: list[Any], seconds: float) -> None:
        kind = type(command)
        if kind is PlaceOrder:
            self.orders += 1
        elif kind is CancelOrder:
            self.cancels += 1
        for event in events:
            if type(event) is OrderRejected:
                self.rejections[event.reason.value] += 1
        i = 0
        while i < len(LATENCY_BUCKETS) and seconds > LATENCY_BUCKETS[i]:
            i += 1
        self.latency_counts[i] += 1
        self.latency_sum += seconds

    def _fan_out(self, events: list[Any]) -> None:
        """Queue the events for the peers; the flusher thread sends them, coalesced, off the order path."""
        if not events:
            return
        with self._lock:
            self._account_seq = self.engine.seq
            for event in events:
                kind = type(event)
                if kind is BookTop:
                    shard = self.shard_of.get(event.symbol)
                    if shard is not None:
                        self._book_out.setdefault(shard, []).append(event)
                    continue
                if kind in _ACCOUNT_TYPES:
                    self._account_out.append(event)
                self._bus_out.append(event)
            if len(self._account_out) > _ACCOUNT_OUTBOX:  # a stuck account actor: drop, resync it when it is back
                self._account_out.clear()
                self._account_resync = True
            if len(self._bus_out) > self.spec.subscriber_queue:  # a stuck bus: oldest first, counted
                excess = len(self._bus_out) - self.spec.subscriber_queue
                del self._bus_out[:excess]
                self.bus_dropped += excess

    def _flush_loop(self) -> None:
        while not self._stop.wait(_FLUSH_SECONDS):
            with contextlib.suppress(Exception):  # a dead peer: Ray restarts it, it resyncs
                self.flush()

    def flush(self) -> None:
        """Send what is queued for each peer whose window has room (one call per peer per flush)."""
        with self._lock:
            window = self.windows["account"]
            if self._account_resync and window.room():
                self._account_resync = False
                seq, accounts, positions = self.account_state()
                window.send(self.account.reset, seq, accounts, positions)
            if self._account_out and window.room():
                batch, self._account_out = self._account_out, []
                window.send(self.account.apply, self._account_seq, batch)
            window = self.windows["bus"]
            if self._bus_out and window.room():
                batch, self._bus_out = self._bus_out, []
                window.send(self.bus.publish, batch)
            if self._book_out:
                for shard, batch in self._book_out.items():
                    self.windows[f"book:{shard}"].send(self.books[shard].apply, batch, drop=True)
                self._book_out = {}

    def resync_account(self) -> None:
        """Push every account's full state to the account actor (after either of them restarted)."""
        with self._lock:
            self._account_resync = True

    # ----------------------------------------------------------------------------------------------------- queries

    def account_state(self) -> tuple[int, list[AccountUpdated], list[PositionUpdated]]:
        engine = self.engine
        ledger = engine.ledger
        ts = max(engine.last_tick, 0)
        accounts = [ledger.account_event(a, ts) for a in ledger.account_ids() if a not in engine.quiet_accounts]
        positions = [p.to_event(ts) for (a, _), p in sorted(ledger.positions.items()) if a not in engine.quiet_accounts]
        return engine.seq, accounts, positions

    def query(self, account_id: str, client_order_id: str | None) -> list[dict[str, Any]]:
        oms = self.engine.oms
        if client_order_id is None:
            return [o.to_dict() for o in oms.open_orders(account_id)]
        order = oms.get(account_id, client_order_id)
        return [order.to_dict()] if order is not None else []

    def all_orders(self, account_id: str) -> list[dict[str, Any]]:
        return [o.to_dict() for o in self.engine.oms._orders.values() if o.account_id == account_id]  # noqa: SLF001

    def balances(self, account_id: str) -> dict[str, tuple[int, int]]:
        return self.engine.ledger.balances(account_id)

    def positions(self, account_id: str) -> list[PositionUpdated]:
        ts = max(self.engine.last_tick, 0)
        return [p.to_event(ts) for (a, _), p in sorted(self.engine.ledger.positions.items()) if a == account_id]

    def totals(self) -> dict[str, int]:
        """For each asset, every account's balance plus the fees collected (equals the deposits, exactly)."""
        return self.engine.ledger.totals()

    def symbols(self) -> list[str]:
        return sorted(self.engine.instruments)

    def has_sim(self) -> bool:
        return self.engine.sim is not None

    def status(self) -> dict[str, Any]:
        status = self.engine.status()
        status.update(
            pid=os.getpid(),
            restarted=self.restarted,
            last_seq=self.engine.seq,
            orders=self.orders,
            cancels=self.cancels,
            rejections=dict(self.rejections),
            market_events=self.market_events,
            latency_counts=list(self.latency_counts),
            latency_sum=self.latency_sum,
            peers={
                name: {"inbox_depth": w.depth(), "sent": w.sent, "dropped": w.dropped}
                for name, w in self.windows.items()
            },
        )
        status["peers"]["bus"]["dropped"] += self.bus_dropped
        return status

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.engine.seq

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self.flush()
        self.engine.close()


_ACCOUNT_TYPES = frozenset({AccountUpdated, PositionUpdated, OrderFilled})


# --------------------------------------------------------------------------------------------------------- account


class AccountNode:
    """Balances and positions per account as the OMS reports them, journaled, idempotent by OMS sequence number."""

    def __init__(self, spec: EngineSpec) -> None:
        self.seq = 0
        self.accounts: dict[str, AccountUpdated] = {}
        self.positions: dict[tuple[str, str], PositionUpdated] = {}
        self.fills = 0
        self.fees: Counter[str] = Counter()
        self.applied = 0
        self.restarted = _reconstructed()
        self.path = spec.journal_path("account")
        self.journal: Journal | None = None
        if self.path is not None:
            self._recover(self.path)
            self.journal = Journal(self.path, {"actor": "account"}, durability=spec.durability)  # type: ignore[arg-type]

    def _recover(self, path: Path) -> None:
        start = 0
        snap = read_snapshot(str(path) + ".snapshot")
        if snap is not None:
            start, state = snap
            self.seq, self.accounts, self.positions, self.fills, self.fees = pickle.loads(state)
        if path.exists():
            _, messages = read_journal(path)
            for message in messages[start:]:
                self._apply_one(message)

    def _apply_one(self, event: Any) -> None:
        kind = type(event)
        if kind is AccountUpdated:
            self.accounts[event.account_id] = event
        elif kind is PositionUpdated:
            self.positions[(event.account_id, event.symbol)] = event
        elif kind is OrderFilled:
            self.fills += 1
            self.fees[event.fee_asset] += event.fee
        elif kind is Tick:  # the sequence marker journaled with each batch
            self.seq = max(self.seq, event.ts)

    def apply(self, seq: int, events: Sequence[Any]) -> int:
        """Apply the accounting events of OMS sequence number ``seq``; an old or repeated ``seq`` is ignored."""
        if seq <= self.seq:
            return self.seq
        journal = self.journal
        for event in events:
            if journal is not None:
                journal.append(event)
            self._apply_one(event)
        if journal is not None:
            journal.append(Tick(ts=seq))
            _to_os(journal)
        self.seq = seq
        self.applied += 1
        if journal is not None and self.applied % _ACCOUNT_SNAPSHOT_EVERY == 0:
            self._snapshot()
        return seq

    def reset(self, seq: int, accounts: Sequence[AccountUpdated], positions: Sequence[PositionUpdated]) -> int:
        """Take the OMS's full state as of ``seq`` (after a restart of either side)."""
        if seq < self.seq:
            return self.seq
        self.accounts = {a.account_id: a for a in accounts}
        self.positions = {(p.account_id, p.symbol): p for p in positions}
        self.seq = seq
        self._snapshot()
        return seq

    def _snapshot(self) -> None:
        """State + the number of journal lines it covers: recovery applies only the lines after it."""
        if self.journal is not None and self.path is not None:
            state = pickle.dumps((self.seq, self.accounts, self.positions, self.fills, self.fees))
            self.journal.flush()
            write_snapshot(str(self.path) + ".snapshot", self.journal.count, state)

    def balances(self, account_id: str) -> dict[str, tuple[int, int]]:
        event = self.accounts.get(account_id)
        return {} if event is None else {b.asset: (b.free, b.locked) for b in event.balances}

    def position_list(self, account_id: str) -> list[PositionUpdated]:
        return [p for (a, _), p in sorted(self.positions.items()) if a == account_id]

    def status(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "last_seq": self.seq, "restarted": self.restarted, "fills": self.fills}

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.seq

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


# ----------------------------------------------------------------------------------------------------------- books


class BookNode:
    """One shard of market books: the latest top of book per symbol, forwarded to the bus in batches."""

    def __init__(self, spec: EngineSpec, shard: str, symbols: Sequence[str], bus: Any) -> None:
        self.shard = shard
        self.symbols = frozenset(symbols)
        self.bus = bus
        self.window = _Window(spec.peer_window)
        self.tops: dict[str, BookTop] = {}
        self.last_trade: dict[str, Trade] = {}
        self.events = 0
        self.batches = 0
        self.seq = 0
        self.restarted = _reconstructed()
        path = spec.journal_path(f"book-{shard}")
        self.snapshot_path = None if path is None else str(path) + ".snapshot"
        if self.snapshot_path is not None:
            snap = read_snapshot(self.snapshot_path)
            if snap is not None:
                self.seq, state = snap
                self.tops, self.last_trade = pickle.loads(state)

    def apply(self, batch: Sequence[Any]) -> int:
        """Apply a batch of market events and forward it to the bus; returns how many were applied."""
        tops = self.tops
        if type(batch) is BookTopBatch:
            tops.update(batch.latest())
        else:
            for event in batch:
                kind = type(event)
                if kind is BookTop:
                    tops[event.symbol] = event
                elif kind is Trade:
                    self.last_trade[event.symbol] = event
        self.events += len(batch)
        self.batches += 1
        self.seq += 1
        self.window.send(self.bus.publish, batch)
        if self.snapshot_path is not None and self.batches % 1000 == 0:
            self.snapshot()
        return len(batch)

    def snapshot(self) -> None:
        if self.snapshot_path is not None:
            write_snapshot(self.snapshot_path, self.seq, pickle.dumps((self.tops, self.last_trade)))

    def top(self, symbol: str) -> BookTop | None:
        return self.tops.get(symbol)

    def flush(self) -> int:
        """Wait until every batch forwarded to the bus has been taken (benchmarks, tests)."""
        refs = list(self.window.refs)
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=30.0, fetch_local=False)
        self.window.refs.clear()
        return self.events

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "last_seq": self.seq,
            "symbols": sorted(self.symbols),
            "events": self.events,
            "restarted": self.restarted,
            "peers": {"bus": {"inbox_depth": self.window.depth(), "dropped": self.window.dropped}},
        }

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.seq

    def close(self) -> None:
        self.snapshot()


# ------------------------------------------------------------------------------------------------------------ feed


class FeedNode:
    """The market feed of one venue: the simulated market's clock, or a recorded stream replayed in batches."""

    def __init__(self, spec: EngineSpec, oms: Any, books: dict[str, Any], bus: Any = None) -> None:
        self.spec = spec
        self.oms = oms
        self.books = books
        self.bus = bus
        self.shard_of = spec.shard_of()
        self.windows = {name: _Window(spec.peer_window) for name in books}
        self.sent = 0
        self.ticks = 0
        self._stop = threading.Event()
        self._publishing = threading.Lock()  # the replay thread and direct calls share the windows
        self._clock: threading.Thread | None = None
        if spec.run_clock:
            self.start_clock(spec.tick_ms)
        self.replay_state: dict[str, Any] | None = None
        self._replayer: threading.Thread | None = None
        if spec.replay is not None:
            self.replay_state = {"path": spec.replay["path"], "sent": 0, "total": None, "done": False, "error": None}
            self._replayer = threading.Thread(
                target=self._run_replay, args=(spec.replay,), name="veloz-replay", daemon=True
            )
            self._replayer.start()

    def start_clock(self, tick_ms: int) -> bool:
        if self._clock is not None:
            return False
        self._clock = threading.Thread(target=self._run_clock, args=(tick_ms,), name="veloz-sim-clock", daemon=True)
        self._clock.start()
        return True

    def _run_clock(self, tick_ms: int) -> None:
        interval = tick_ms / 1000.0
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # the OMS is restarting; the next tick goes on
                ray.get(self.oms.tick.remote(time.time_ns()), timeout=30.0)
                self.ticks += 1
            self._stop.wait(interval)

    # ---------------------------------------------------------------------------------------------- recorded file

    def _offset_path(self) -> Path | None:
        path = self.spec.journal_path("feed")
        return None if path is None else path.with_suffix(".replay-offset")

    def _run_replay(self, settings: dict[str, Any]) -> None:
        """Replay a recorded capture: batches of up to ``batch`` events, paced by their receive times divided by
        ``speed`` (0: as fast as the books take them). The offset reached is kept next to the journals, so a feed
        that Ray restarted resumes after the last batch its books took instead of sending the file again; a new
        engine replays the file from its start."""
        from ..data.loaders import load_market_events  # the loaders are only needed by a replaying feed

        state = self.replay_state
        assert state is not None
        began = time.perf_counter()
        try:
            events = load_market_events(settings["path"])
            mine = [e for e in events if e.symbol in self.shard_of]
            if not mine:
                found = sorted({e.symbol for e in events})
                raise ValueError(f"no events for the configured symbols {sorted(self.shard_of)} (the file has {found})")
        except Exception as exc:  # noqa: BLE001 - a bad file is reported (status and bus), the engine runs on
            state["error"] = f"replay of {settings['path']} failed: {exc}"
            if self.bus is not None:
                self.bus.publish.remote([Error(code="REPLAY_FAILED", message=state["error"], ts=time.time_ns())])
            return
        del events
        state["total"] = len(mine)
        state["load_seconds"] = round(time.perf_counter() - began, 3)
        began = time.perf_counter()
        offset_path = self._offset_path()
        start = 0
        if offset_path is not None and offset_path.exists() and _reconstructed():  # a fresh engine starts over
            with contextlib.suppress(ValueError, OSError):
                start = min(int(offset_path.read_text()), len(mine))
        state["sent"] = start
        speed = float(settings.get("speed", 1.0))
        batch_size = int(settings.get("batch", 1000))
        to_oms = bool(settings.get("reference_prices", False))
        origin_ts = mine[start].ts_recv if start < len(mine) else 0
        origin_wall = time.monotonic()
        i = start
        while i < len(mine) and not self._stop.is_set():
            if speed > 0:  # wait for the next event's time, then take every event that is due by now
                wait = origin_wall + (mine[i].ts_recv - origin_ts) / 1e9 / speed - time.monotonic()
                if wait > 0 and self._stop.wait(min(wait, 0.25)):
                    break
                if wait > 0.25:
                    continue
                due_ts = origin_ts + (time.monotonic() - origin_wall) * 1e9 * speed
                end = i + 1
                while end < len(mine) and end - i < batch_size and mine[end].ts_recv <= due_ts:
                    end += 1
            else:
                end = min(i + batch_size, len(mine))
            batch = mine[i:end]
            if not self._deliver(batch):
                break
            if to_oms:
                with contextlib.suppress(Exception):  # the OMS is restarting: reference prices move on the next batch
                    ray.get(self.oms.market.remote(batch), timeout=30.0)
            i = end
            state["sent"] = i
            if offset_path is not None:
                tmp = offset_path.with_suffix(".tmp")
                tmp.write_text(str(i))
                os.replace(tmp, offset_path)
        state["done"] = i >= len(mine)
        state["replay_seconds"] = round(time.perf_counter() - began, 3)

    def _deliver(self, batch: list[Any]) -> bool:
        """Hand one replayed batch to its book shards and wait until each took it, sending it again to a shard that
        is restarting; so a restart of a book (or of this feed, which resumes at the offset after the last batch
        delivered) loses nothing and repeats at most one batch. False when the feed is stopping."""
        pending: dict[str, list[Any]] = {}
        for event in batch:
            pending.setdefault(self.shard_of[event.symbol], []).append(event)
        while pending:
            refs = {shard: self.books[shard].apply.remote(events) for shard, events in pending.items()}
            for shard, ref in refs.items():
                with contextlib.suppress(Exception):  # the book actor is restarting: it gets the batch again
                    ray.get(ref, timeout=30.0)
                    del pending[shard]
            if pending and self._stop.wait(0.2):
                return False
        with self._publishing:
            self.sent += len(batch)
        return True

    def publish(self, batch: Sequence[Any] | BookTopBatch) -> int:
        """Send one batch of market events to the book shards of their symbols (waiting when a shard lags)."""
        with self._publishing:
            return self._publish(batch)

    def _publish(self, batch: Sequence[Any] | BookTopBatch) -> int:
        by_shard: dict[str, Any] = {}
        if isinstance(batch, BookTopBatch):
            by_shard = batch.split(self.shard_of)
        else:
            for event in batch:
                shard = self.shard_of.get(event.symbol)
                if shard is not None:
                    by_shard.setdefault(shard, []).append(event)
        for shard, events in by_shard.items():
            self.windows[shard].send(self.books[shard].apply, events)
        self.sent += len(batch)
        return len(batch)

    def replay(self, events: Sequence[Any], batch_size: int = 1000, *, to_oms: bool = False) -> int:
        """Replay recorded market events in batches of ``batch_size`` (optionally also as reference prices)."""
        for start in range(0, len(events), batch_size):
            batch = events[start : start + batch_size]
            self.publish(batch)
            if to_oms:
                ray.get(self.oms.market.remote(batch), timeout=60.0)
        return self.flush()

    def synthetic(self, count: int, batch_size: int = 1000, seed: int = 7) -> int:
        """Publish ``count`` top-of-book updates of a seeded random walk in columnar batches (benchmarks, tests)."""
        rng = np.random.default_rng(seed)
        symbols = tuple(sorted(self.shard_of))
        sent = 0
        mid = 6_000_000_000_000
        while sent < count:
            n = min(batch_size, count - sent)
            rows = np.empty(n, dtype=TOP_DTYPE)
            rows["symbol"] = np.arange(sent, sent + n) % len(symbols)
            walk = mid + np.cumsum(rng.integers(-2, 3, n)) * 1_000_000
            mid = int(walk[-1])
            rows["bid_price"] = walk - 1_000_000
            rows["ask_price"] = walk + 1_000_000
            rows["bid_qty"] = rows["ask_qty"] = 50_000_000
            rows["update_id"] = np.arange(sent, sent + n)
            rows["ts_event"] = rows["ts_recv"] = time.time_ns()
            self.publish(BookTopBatch(symbols, rows))
            sent += n
        return self.flush()

    def flush(self) -> int:
        with self._publishing:
            for window in self.windows.values():
                refs = list(window.refs)
                if refs:
                    ray.wait(refs, num_returns=len(refs), timeout=60.0, fetch_local=False)
                window.refs.clear()
            return self.sent

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "pid": os.getpid(),
            "last_seq": self.ticks,
            "sent": self.sent,
            "clock": self._clock is not None,
        }
        if self.replay_state is not None:
            status["replay"] = dict(self.replay_state)
        return status

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.ticks

    def close(self) -> None:
        self._stop.set()
        for thread in (self._clock, self._replayer):
            if thread is not None:
                thread.join(timeout=2.0)


# ------------------------------------------------------------------------------------------------------------- bus


class BusNode:
    """Fans events out to subscribers; each has a bounded drop-oldest queue, so a slow viewer never slows trading."""

    def __init__(self, spec: EngineSpec) -> None:
        self.default_queue = spec.subscriber_queue
        self.queues: dict[int, DropOldestQueue] = {}
        self.filters: dict[int, frozenset[str] | None] = {}
        self.next_id = 0
        self.published = 0
        self.batches = 0

    def publish(self, events: Sequence[Any] | BookTopBatch) -> int:
        """Queue ``events`` (a list of messages, or a columnar batch kept whole) for every subscriber."""
        self.published += len(events)
        self.batches += 1
        if type(events) is BookTopBatch:
            for sid, queue in self.queues.items():
                kinds = self.filters[sid]
                if kinds is None or "BookTop" in kinds:
                    queue.put(events, len(events))
            return len(events)
        for sid, queue in self.queues.items():
            kinds = self.filters[sid]
            if kinds is None:
                queue.put_many(events)  # type: ignore[arg-type]
            else:
                queue.put_many([e for e in events if type(e).__name__ in kinds])  # type: ignore[union-attr]
        return len(events)

    def subscribe(self, maxlen: int | None = None, kinds: Sequence[str] | None = None) -> int:
        self.next_id += 1
        self.queues[self.next_id] = DropOldestQueue(maxlen or self.default_queue)
        self.filters[self.next_id] = frozenset(kinds) if kinds else None
        return self.next_id

    def unsubscribe(self, sid: int) -> None:
        self.queues.pop(sid, None)
        self.filters.pop(sid, None)

    def poll(self, sid: int, limit: int = 10_000) -> tuple[list[Any], int]:
        """Up to ``limit`` queued events of subscriber ``sid`` and how many it has dropped so far."""
        queue = self.queues.get(sid)
        if queue is None:
            return [], -1
        return queue.take(limit), queue.dropped

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "last_seq": self.batches,
            "published": self.published,
            "subscribers": {
                str(sid): {"queued": len(q), "limit": q.maxlen, "dropped": q.dropped, "delivered": q.delivered}
                for sid, q in self.queues.items()
            },
        }

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.batches

    def close(self) -> None:
        self.queues.clear()
