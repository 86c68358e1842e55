"""The Python API of the actor engine: ``vz.start_local(config)`` and ``vz.connect(address)`` return an
:class:`EngineHandle`.

Example::

    import veloz_actors as vz

    engine = vz.start_local("configs/engine.yaml")
    events = engine.place_order("BTCUSDT", "BUY", "0.01")            # a market order; events of the core
    engine.place_order("BTCUSDT", "SELL", "0.01", price="70000", client_order_id="ask-1")
    engine.cancel_order("ask-1")
    for event in engine.subscribe(max_events=10, timeout=5.0):      # its own bounded queue
        print(event)
    print(engine.balances(), engine.status()["actors"]["oms"])
    engine.shutdown()

Amounts are given as exact decimal strings (or ``Decimal``/``int``, never rounded); a bad value raises
:class:`~veloz_actors.InvalidInput` naming it and the engine goes on. Business outcomes (risk rejections, an
overloaded inbox) are events (``OrderRejected`` with a reason), not exceptions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn, get_args

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .._exceptions import ConfigError, EngineStopped, EngineUnavailable, InvalidInput, quoted
from ..config import (
    MAX_TICK_MS,
    EngineFileConfig,
    StrategyEntryModel,
    check_journal_instruments,
    check_journal_risk,
    check_paper_journal_instruments,
    default_engine_config,
    load_engine_config,
    resolve_venue_instruments,
)
from ..core.journal import Durability
from ..core.risk_monitor import kill_switch_commands
from ..messages import (
    CancelOrder,
    Command,
    Error,
    HaltTrading,
    MarketEvent,
    OrderRejected,
    PlaceOrder,
    ResetCircuitBreaker,
    Side,
    TimeInForce,
    checked,
)
from ..orders import ClientOrderIds, build_place_order, check_client_order_id, parse_amount
from ..search.runtime import check_joined, probe_address, redact
from ..strategies.bar_strategies import make_strategy
from .backpressure import InFlightWindow, overloaded
from .batches import as_events
from .bus import check_subscription
from .spec import LATENCY_BUCKETS, EngineSpec, stranded_actors, stranded_message
from .supervisor import (
    START_SECONDS,
    DiedWhileStarting,
    Supervisor,
    actor_restarts,
    actor_state,
    supervisor_name,
    wait_started,
)

__all__ = ["EngineHandle", "Subscription", "build_spec", "connect", "start_local"]

NAMESPACE = "veloz"
_CALL_TIMEOUT = 30.0
SUBMIT_CALL_SIZE = 1_000  # commands in one call of EngineHandle.submit_many: ~0.1 s of the OMS's time
_START_TIMEOUT = 2 * START_SECONDS + 30.0  # a new engine's supervisor starting every actor (see EngineHandle)
_RETRY_SECONDS = 60.0
# a resume waits this long for a risk actor that does not answer (Ray restarting it), then says it is down
_RISK_WAIT_SECONDS = 5.0
CONNECT_SECONDS = 15.0  # how long the CLI's status / stop / attach / metrics wait for an engine that does not answer
_REFRESH_SECONDS = 0.5  # after an actor error, the supervisor is asked for its actors at most this often
_POLL_WAIT = 0.05  # seconds an iterating subscription lets the bus wait for events per poll
_DURABILITIES = get_args(Durability)
# what a call to an actor raises while Ray restarts it, or once it is gone
_ACTOR_ERRORS = (
    ray.exceptions.RayActorError,
    ray.exceptions.ActorUnavailableError,
    ray.exceptions.ActorUnschedulableError,
)


def build_spec(
    file_config: EngineFileConfig,
    *,
    name: str = "default",
    journal_dir: str | Path | None = None,
    durability: str | None = None,
    run_clock: bool = False,
    tick_ms: int | None = None,
) -> EngineSpec:
    """The actor layout of an engine from its config file (the ``actors:`` section, typed in
    :class:`~veloz_actors.config.ActorsModel`: shards, queue limits, a replayed capture, live strategies).

    Everything is checked before any actor starts: a bad field, a missing replay file or a strategy's bad parameter
    is a :class:`ConfigError` now, not a dead actor later.
    """
    _check_arguments(name=name, journal_dir=journal_dir, durability=durability, run_clock=run_clock, tick_ms=tick_ms)
    live = file_config.venue.kind == "binance" and file_config.venue.mode == "live"
    run_dir = None if journal_dir is None else Path(journal_dir).parent
    actors = file_config.actor_settings()
    if live:
        engine_config, live_settings = _live_engine(file_config, journal_dir)
        shards = {"binance": tuple(i.symbol for i in engine_config.instruments)}  # one account, one user stream
    else:
        venue_instruments, _ = resolve_venue_instruments(file_config, run_dir)
        if journal_dir is not None:
            check_paper_journal_instruments(venue_instruments, Path(journal_dir) / "oms.journal")
        engine_config = file_config.engine_config(venue_instruments)
        live_settings = None
        shards = actors.shard_map([i.symbol for i in engine_config.instruments])
    return EngineSpec(
        name=name,
        engine_config=engine_config.to_json(),
        journal_dir=None if journal_dir is None else str(journal_dir),
        durability=durability or file_config.journal.durability,
        group_ms=file_config.journal.group_ms,
        shards=shards,
        subscriber_queue=actors.subscriber_queue,
        subscriber_idle_seconds=actors.subscriber_idle_seconds,
        order_inbox=actors.order_inbox,
        peer_window=actors.peer_window,
        tick_ms=tick_ms or file_config.sim.tick_ms,
        run_clock=run_clock,
        strategies=_strategies_settings(actors.strategies, engine_config.balances),
        replay=None if actors.replay is None else actors.replay.resolved(),
        market_data=file_config.venue.market_data() if file_config.venue.kind == "binance" else None,
        risk={"limits": asdict(file_config.engine_risk.build())} if actors.risk else None,
        journal_mode=actors.journal_mode,
        logging=file_config.logging.settings(run_dir),
        live=live_settings,
    )


def _got(value: Any) -> str:
    return f"{type(value).__name__} {quoted(value)}"


def _check_arguments(*, name: Any, journal_dir: Any, durability: Any, run_clock: Any, tick_ms: Any) -> None:
    """The arguments that reach the actors as given: a wrong one here would kill an actor at start, its error buried
    in a Ray error seconds later (or, unjournaled, go unnoticed)."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"name must be a non-empty str, got {_got(name)}")
    if journal_dir is not None and not isinstance(journal_dir, str | os.PathLike):
        raise ConfigError(f"journal_dir must be a directory path or None, got {_got(journal_dir)}")
    if durability is not None and durability not in _DURABILITIES:
        raise ConfigError(
            f"durability must be one of {', '.join(_DURABILITIES)} (or None: the config's journal.durability), got "
            f"{_got(durability)}"
        )
    if not isinstance(run_clock, bool):
        raise ConfigError(f"run_clock must be True or False, got {_got(run_clock)}")
    if tick_ms is not None and (
        isinstance(tick_ms, bool) or not isinstance(tick_ms, int) or not 0 < tick_ms <= MAX_TICK_MS
    ):
        raise ConfigError(
            f"tick_ms must be a positive int or None (the config's sim.tick_ms; at most {MAX_TICK_MS:,}, an hour), "
            f"got {_got(tick_ms)}"
        )


def _check_nodes(nodes: Any, spec: EngineSpec) -> dict[str, str]:
    """``nodes`` as a dict once every key is an actor of this engine and every value a node id: a misspelt actor
    would otherwise go unpinned, silently."""
    if nodes is None:
        return {}
    if not isinstance(nodes, Mapping):
        raise ConfigError(f"nodes must be a mapping of actor name to node id, or None, got {_got(nodes)}")
    actors = set(spec.actor_names())
    for actor, node in nodes.items():
        if actor not in actors:
            raise ConfigError(
                f"nodes: unknown actor {quoted(actor)}; this engine's actors: {', '.join(sorted(actors))}"
            )
        if not isinstance(node, str) or not node:
            raise ConfigError(f"nodes[{actor!r}]: the node id must be a non-empty str, got {_got(node)}")
    return dict(nodes)


_COMMANDS = get_args(Command)
_MARKET_EVENTS = get_args(MarketEvent)


def _check_seconds(value: Any, what: str) -> float:
    """A timeout in seconds, else :class:`InvalidInput` naming it (before: a bare ``TypeError`` from the arithmetic)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise InvalidInput(f"{what} must be a number of seconds >= 0, got {_got(value)}")
    return float(value)


_TICK_AHEAD_NS = 86_400 * 1_000_000_000  # how far ahead of the clock a simulated-market step may be


def _check_command(command: Any) -> Any:
    """``command`` as the OMS takes it (:data:`~veloz_actors.messages.Command`, every field of its type, see
    :func:`~veloz_actors.messages.checked`; ``ts`` at most a day ahead of the clock, as :meth:`EngineHandle.tick`'s:
    the rate limits run on message time, and one far-future ``ts`` would stop an account's refills), else
    :class:`InvalidInput` here: never an error inside the OMS actor, nor a journal line that does not read back."""
    if type(command) not in _COMMANDS:
        names = ", ".join(t.__name__ for t in _COMMANDS)
        raise InvalidInput(f"command must be one of {names}; got {type(command).__name__} {quoted(command)}")
    command = checked(command)
    if not 0 < command.ts <= time.time_ns() + _TICK_AHEAD_NS:
        raise InvalidInput(
            f"{command.TYPE}: ts must be nanoseconds since the epoch, at most a day ahead of the clock; got {command.ts}"
        )
    return command


def _live_engine(file_config: EngineFileConfig, journal_dir: str | Path | None) -> tuple[Any, dict[str, Any]]:
    """The engine config and the venue actor's settings of a live engine. A journal that exists is recovered with
    the config in its header; a new one starts its ledger from the account's balances on the exchange. The settings
    name where the credentials are (environment variables, ``venue.credentials_file``), never the keys."""
    from ..core.journal import read_header
    from ..core.kernel import KernelConfig
    from ..venues.binance.auth import CredentialsRef
    from ..venues.binance.venue import BinanceVenueSettings, VenueUnavailable, account_ledger
    from ..venues.engine import EngineConfig

    if journal_dir is None:
        raise ConfigError("live trading needs a journal (recovery and reconciliation start from it): drop --no-journal")
    settings = file_config.venue.trading_settings()  # checked here, before any actor starts
    ref = CredentialsRef(env_file=file_config.venue.credentials_file)
    credentials = ref.load()  # the keys are usable here, or the error names the variable
    oms_journal = Path(journal_dir) / "oms.journal"
    if oms_journal.exists():
        simulated = sorted(p.name for p in Path(journal_dir).glob("venue-*.journal"))
        if simulated:  # a live engine's venue keeps no journal: the exchange is its record
            raise ConfigError(f"{journal_dir} was written by a simulated or paper engine ({simulated[0]}): give a "
                              "new journal")  # fmt: skip
        header = read_header(oms_journal)
        kernel = KernelConfig.from_json(header["config"])
        check_journal_risk(file_config, kernel.risk, oms_journal)
        check_journal_instruments(file_config, kernel.instruments, oms_journal)  # the venue refuses a halted symbol
        engine_config = EngineConfig(
            instruments=kernel.instruments, balances=kernel.balances, risk=kernel.risk,
            valuation_asset=kernel.valuation_asset, snapshot_every=kernel.snapshot_every,
            emit_account_updates=kernel.emit_account_updates, retain_closed_ns=kernel.retain_closed_ns,
            venue_kind="live",
        )  # fmt: skip
    else:
        venue_instruments, _ = resolve_venue_instruments(file_config, Path(journal_dir).parent)
        try:
            ledger = account_ledger(BinanceVenueSettings(**settings), credentials)
        except VenueUnavailable as exc:
            raise ConfigError(f"live trading: cannot read the account's balances: {exc}") from None
        engine_config = dataclasses.replace(file_config.engine_config(venue_instruments), balances={"main": ledger})
    live = {
        "settings": settings,
        "credentials": dataclasses.asdict(ref),
        "account_id": "main",
    }
    return engine_config, live


def _strategies_settings(
    entries: Sequence[StrategyEntryModel], accounts: Mapping[str, Any]
) -> tuple[dict[str, Any], ...]:
    """Every live strategy's settings (:func:`_strategy_settings`), at most one per symbol and account: a strategy's
    position is its account's (as in a backtest, where it is the only trader), so two on one symbol and account would
    each take the other's position for its own, one selling what the other bought."""
    seen: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(entries):
        first = seen.setdefault((entry.account, entry.symbol), index)
        if first != index:
            raise ConfigError(
                f"actors.strategies: entries {first} ({entries[first].strategy}) and {index} ({entry.strategy}) both "
                f"trade {entry.symbol} in account {entry.account!r}: a strategy's position is its account's, so "
                "each would trade the other's (sell what the other bought); give each its own account (a name "
                "under engine.balances)"
            )
    return tuple(_strategy_settings(entry, accounts) for entry in entries)


def _strategy_settings(entry: StrategyEntryModel, accounts: Mapping[str, Any]) -> dict[str, Any]:
    """One live strategy's settings, its parameters checked by the strategy itself now, and its account one the
    engine has (``accounts``: the engine's opening balances by account). An unknown account is no error to the OMS:
    it has no funds, so a typo would have every order the strategy places rejected for as long as it runs."""
    try:
        make_strategy(entry.strategy, dict(entry.params))
    except InvalidInput as exc:
        raise ConfigError(f"actors.strategies: {exc}") from exc
    if entry.account not in accounts:
        raise ConfigError(
            f"actors.strategies: {entry.strategy}: unknown account {entry.account!r} (accounts: {', '.join(accounts)})"
        )
    return entry.model_dump()


class Subscription:
    """An iterator over engine events with its own bounded queue on the event bus (drop-oldest, counted).

    A queue the bus no longer knows (the bus restarted, or dropped it after ``actors.subscriber_idle_seconds`` without
    a poll) is subscribed again and counted in ``gaps``: the events in between are missing."""

    def __init__(
        self,
        engine: EngineHandle,
        sid: int,
        *,
        max_events: int | None,
        timeout: float | None,
        max_queue: int | None = None,
        kinds: Sequence[str] | None = None,
    ) -> None:
        self._engine = engine  # its bus: the current one (a restarted supervisor builds a new bus)
        self.id = sid
        self.max_events = max_events
        self.timeout = timeout
        self.dropped = 0
        self.gaps = 0  # times the bus restarted under this subscription (events in between are missing)
        self._max_queue = max_queue
        self._kinds = kinds
        self._buffer: deque[Any] = deque()
        self._seen = 0
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"Subscription(id={self.id}, engine={self._engine.name!r}, dropped={self.dropped}, gaps={self.gaps}, {state})"

    def poll_raw(self, wait: float = 0.0) -> list[Any]:
        """Whatever is queued now, market data still in columnar
        :class:`~veloz_actors.core.market_batch.MarketBatch` items; with ``wait``
        (seconds, at most 0.25) and nothing queued, the bus answers as soon as events come, or after ``wait``."""
        self._engine._check_open()  # shut down by this handle: its bus is gone for good (before, [] for ever)
        bus = self._engine._bus
        try:
            ref = bus.poll_wait.remote(self.id, 10_000, wait) if wait > 0 else bus.poll.remote(self.id)
            items, dropped = ray.get(ref, timeout=_CALL_TIMEOUT + wait)
            if dropped < 0:  # the bus lost this queue (restarted, dropped it as idle, or closed it while the engine
                # stops): subscribe again, count the gap; the bus may die between the two calls, so both are in here
                self.id = ray.get(bus.subscribe.remote(self._max_queue, self._kinds), timeout=_CALL_TIMEOUT)
                self.gaps += 1
                return []
        except _ACTOR_ERRORS as exc:  # Unschedulable too: a bus pinned to a node that left (stranded: said)
            self._engine._raise_if_lost(exc, every=_REFRESH_SECONDS)  # a bus given up after a crash loop: said
            self._engine._refresh()  # the bus is restarting, or a restarted supervisor built a new one
            return []
        self.dropped = dropped
        return items

    def poll(self, wait: float = 0.0) -> list[Any]:
        """Whatever is queued now (possibly nothing), as the core's messages; ``wait`` as in :meth:`poll_raw`."""
        return as_events(self.poll_raw(wait))

    def __next__(self) -> Any:
        if self._closed or (self.max_events is not None and self._seen >= self.max_events):
            self.close()
            raise StopIteration
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while not self._buffer:
            wait = _POLL_WAIT if deadline is None else min(_POLL_WAIT, max(0.0, deadline - time.monotonic()))
            try:
                self._buffer = deque(self.poll(wait))  # the bus answers as soon as events come (never blocks on us)
            except EngineUnavailable:
                if not self._engine._closed:  # stopped elsewhere, or lost: said
                    raise
                self.close()  # this handle's shutdown (another thread's) ends the iteration
                raise StopIteration from None
            if self._buffer:
                break
            if deadline is not None and time.monotonic() >= deadline:
                self.close()
                raise StopIteration
            time.sleep(0.001)  # (a bus restarting answers at once)
        self._seen += 1
        return self._buffer.popleft()  # a deque: a poll can return a whole batch

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):  # the engine is gone already
                self._engine._bus.unsubscribe.remote(self.id)


class _Gone(EngineUnavailable):
    """An actor that never comes back (Ray says it is dead), said at once by :meth:`EngineHandle._call`."""


class EngineHandle:
    """A running actor engine, local or on a cluster. Every method is synchronous and safe to call after errors.

    After an actor error the handle asks the supervisor for its actors again before it retries: a supervisor that Ray
    restarted has built a new actor graph (its actors die with it), recovered from the journals."""

    def __init__(
        self,
        supervisor: Any,
        *,
        name: str,
        owned: bool,
        account_id: str = "main",
        start_timeout: float = _START_TIMEOUT,
    ) -> None:
        self._supervisor = supervisor
        self.name = name
        self.account_id = account_id
        self._owned = owned
        # a new engine answers once every actor is up (its constructor waits twice up to START_SECONDS); a supervisor
        # whose process dies in its constructor (Ray restarts it for ever) is said after START_CRASHES deaths
        known = {"supervisor": actor_restarts(supervisor._actor_id.hex()) or 0}  # an engine's earlier restarts
        try:
            [handles] = wait_started([supervisor.handles.remote()], {"supervisor": supervisor}, start_timeout, known)
        except ray.exceptions.GetTimeoutError as exc:
            raise EngineUnavailable(
                f"engine {name!r} did not answer within {start_timeout:g} s: its actors are still starting "
                "(recovering their journals) or stuck"
            ) from exc
        except DiedWhileStarting as exc:
            raise EngineUnavailable(
                f"engine {name!r}: its supervisor died {exc.restarts - known['supervisor']} times while starting, "
                "its process ending inside its constructor with no Python error (out of memory, a native crash, an "
                "exit): see Ray's worker logs and the supervisor's log file (veloz-supervisor.log)"
            ) from None
        except ray.exceptions.RayTaskError as exc:  # stranded, or an actor failed to start: the supervisor's words
            if isinstance(exc.cause, EngineUnavailable):
                raise EngineUnavailable(str(exc.cause)) from None
            raise
        except ray.exceptions.RayActorError as exc:  # stopped since it was found by name (`veloz stop` at once)
            self._raise_supervisor_ended(exc)
        try:
            spec: EngineSpec = ray.get(supervisor.spec_data.remote(), timeout=_CALL_TIMEOUT)
        except ray.exceptions.RayActorError as exc:
            self._raise_supervisor_ended(exc)
        self.spec = spec
        self._take(handles)
        self._refreshed = time.monotonic()
        self._given_up_asked = 0.0  # when the supervisor was last asked which actors it gave up (_raise_if_given_up)
        self._no_actors: str | None = None  # why the supervisor has no actors to give (:meth:`_refresh` heard it)
        self.window = InFlightWindow(spec.order_inbox)
        # from the spec, not the OMS: a handle (and STATUS) works while the OMS cannot
        self.symbols = frozenset(i["symbol"] for i in spec.engine_config["instruments"])
        self._ids = ClientOrderIds.for_session("py")  # this handle's client order ids, made locally
        self._closed = False
        self.round_trip_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.round_trip_sum = 0.0

    # --------------------------------------------------------------------------------------------------- orders

    def place_order(
        self,
        symbol: str,
        side: str | Side,
        qty: str | Decimal | int,
        price: str | Decimal | int | None = None,
        *,
        tif: str | TimeInForce = TimeInForce.GTC,
        client_order_id: str | None = None,
    ) -> list[Any]:
        """Place an order (a limit order when ``price`` is given, else a market order); returns the kernel step's
        events (its acceptance or rejection, the reservation). Fills follow on the event bus (:meth:`subscribe`);
        :meth:`settle` waits until the venues answered every request sent so far."""
        return self.submit(self.order_command(symbol, side, qty, price, tif=tif, client_order_id=client_order_id))

    def order_command(
        self,
        symbol: str,
        side: str | Side,
        qty: str | Decimal | int,
        price: str | Decimal | int | None = None,
        *,
        tif: str | TimeInForce = TimeInForce.GTC,
        client_order_id: str | None = None,
    ) -> PlaceOrder:
        """Validate the arguments into a :class:`PlaceOrder` (raises :class:`InvalidInput` naming the problem), with
        the builder and client-order-id rule every client uses (:mod:`veloz_actors.orders`); a missing id is made
        locally, without asking the engine."""
        return build_place_order(
            symbol,
            side,
            qty=parse_amount(qty, "quantity"),
            price=None if price is None else parse_amount(price, "price"),
            tif=tif,
            client_order_id=client_order_id,
            ids=self._ids,
            account_id=self.account_id,
            ts=time.time_ns(),
            symbols=self.symbols,
        )

    def cancel_order(self, client_order_id: str) -> list[Any]:
        """Cancel an open order by client order id; returns the events of the OMS's step: ``[]`` when the request went
        to the order's venue (the order is ``PENDING_CANCEL``; its ``OrderCancelled``, or its fill if the venue filled
        it first, follows on the bus and in :meth:`query`), an ``OrderRejected`` if it is not open."""
        cid = check_client_order_id(client_order_id)
        return self.submit(CancelOrder(client_order_id=cid, account_id=self.account_id, ts=time.time_ns()))

    def submit(self, command: Any) -> list[Any]:
        """Send one command through the OMS and return its events.

        If the OMS dies during the call, the very same command is sent again once Ray has restarted it: the OMS
        recovered from its journal, and an identical command applied twice has no second effect; the answer is then
        the events of its first application (or an ``Error``, ``RETRY_OUTCOME_UNKNOWN``, when they are no longer
        kept: :meth:`query` tells the order's state).
        """
        command = _check_command(command)
        if not self.window.admit():
            return [self._overloaded(command)]
        start = time.perf_counter()
        try:
            return self._call(lambda: self._oms.submit.remote(command))
        finally:
            self.window.done()
            self._record(time.perf_counter() - start)

    def _record(self, seconds: float) -> None:
        i = bisect_left(LATENCY_BUCKETS, seconds)
        self.round_trip_counts[i] += 1
        self.round_trip_sum += seconds

    def round_trip(self) -> tuple[list[int], float]:
        """This client's order round-trip histogram: counts per ``LATENCY_BUCKETS`` bound (+Inf last), sum."""
        return list(self.round_trip_counts), self.round_trip_sum

    def submit_many(self, commands: Sequence[Any]) -> list[list[Any]]:
        """Send a batch of commands (the OMS applies them in order); one list of events per command.

        Batching pays Ray's per-call cost once per call: the way to sustain thousands of orders per second. A batch
        goes in calls of at most :data:`SUBMIT_CALL_SIZE` commands, one after the other, so a large one never holds
        the OMS (the venues' reports, the risk actor's halts, other clients) for more than one call's time, nor
        outlives the call's timeout while the OMS goes on applying it. When this client's window is full, the
        commands not yet sent are refused (``OVERLOADED``) and none after them is sent.
        """
        if isinstance(commands, str | bytes) or not isinstance(commands, Sequence):
            raise InvalidInput(f"commands must be a list of command messages, got {type(commands).__name__}")
        checked_commands = [_check_command(command) for command in commands]
        self._check_open()  # before the loop: its note would say a first chunk was sent
        results: list[list[Any]] = []
        for start in range(0, len(checked_commands), SUBMIT_CALL_SIZE):
            if not self.window.admit():
                return results + [[self._overloaded(c)] for c in checked_commands[start:]]
            chunk = checked_commands[start : start + SUBMIT_CALL_SIZE]
            try:
                results += self._call(lambda chunk=chunk: self._oms.submit_many.remote(chunk))
            except BaseException as exc:  # Ctrl-C too: a notebook user must learn what went through
                exc.add_note(
                    f"submit_many: the first {len(results)} of {len(checked_commands)} commands were applied and "
                    f"answered before this; the {len(chunk)} after them were sent, their outcome unknown (query() "
                    "tells an order's state); none after those was sent"
                )
                raise
            finally:
                self.window.done()
        return results

    def submit_async(self, command: Any) -> Any:
        """Send without waiting: an ``ObjectRef`` of the events, or at once an ``OrderRejected`` (OVERLOADED) when
        this client's inbox window is full. Complete each ref with :meth:`complete`."""
        command = _check_command(command)
        self._check_open()
        if not self.window.admit():
            return self._overloaded(command)
        ref = self._oms.submit.remote(command)
        self.window.hold(ref.hex())
        return ref

    def complete(self, refs: Sequence[Any], timeout: float | None = _CALL_TIMEOUT) -> list[list[Any]]:
        """The events of each of :meth:`submit_async`'s answers, in order: a ref's events, and for the
        ``OrderRejected`` it returned at once (``OVERLOADED``) that rejection alone. Each ref's slot in the window is
        given back once, also when the call fails or times out (a second ``complete`` of the same ref frees nothing);
        anything else is :class:`InvalidInput` before any wait (before: Ray's ``TypeError``, and the window gave back
        a slot per item, freeing slots of orders still in flight). An OMS that ended during the call (restarting, the
        engine stopped) is :class:`EngineUnavailable`: the calls are not retried, :meth:`query` tells the orders'
        state."""
        if isinstance(refs, str | bytes) or not isinstance(refs, Sequence):
            raise InvalidInput(f"refs must be a list of what submit_async returned, got {_got(refs)}")
        for index, item in enumerate(refs):
            if not isinstance(item, ray.ObjectRef | OrderRejected):
                raise InvalidInput(
                    f"refs[{index}] must be what submit_async returned (an ObjectRef, or the OrderRejected it gave at "
                    f"once), got {_got(item)}"
                )
        if timeout is not None:  # None: wait as long as it takes
            timeout = _check_seconds(timeout, "timeout")
        sent = [item for item in refs if isinstance(item, ray.ObjectRef)]
        try:
            answers = iter(ray.get(sent, timeout=timeout))
        except _ACTOR_ERRORS as exc:
            self._raise_if_lost(exc)  # an OMS given up after a crash loop, an engine stopped: said
            raise EngineUnavailable(
                f"engine {self.name!r}: the OMS ended during the call (Ray restarts it, recovered from its journal): "
                f"whether the {len(sent)} orders awaited were applied is unknown; query() tells each order's state"
            ) from exc
        finally:
            self.window.release(ref.hex() for ref in sent)
        return [next(answers) if isinstance(item, ray.ObjectRef) else [item] for item in refs]

    def _overloaded(self, command: Any) -> OrderRejected:
        return overloaded(command, self.window.refusal())

    def _take(self, handles: dict[str, Any]) -> None:
        self._oms = handles["oms"]
        self._account = handles["account"]
        self._bus = handles["bus"]
        self._feed = handles["feed"]
        self._venues = handles["venues"]
        self._risk = handles.get("risk")

    def _refresh(self) -> None:
        """After an actor error: the supervisor's actors as they are now (new ones if Ray restarted the supervisor),
        asked at most every ``_REFRESH_SECONDS``."""
        now = time.monotonic()
        if now - self._refreshed < _REFRESH_SECONDS:
            return
        self._refreshed = now
        try:
            self._take(ray.get(self._supervisor.handles.remote(), timeout=_CALL_TIMEOUT))
            self._no_actors = None
        except ray.exceptions.RayTaskError as exc:  # a restarted supervisor whose actors could not start: the next
            if isinstance(exc.cause, EngineUnavailable):  # actor error says why (the supervisor itself answers)
                self._no_actors = str(exc.cause)
        except Exception:  # noqa: BLE001, S110 - the supervisor restarting too: the next error asks again
            pass

    def _call(
        self, make_ref: Any, *, retry_seconds: float = _RETRY_SECONDS, lost: Callable[[], str | None] | None = None
    ) -> Any:
        """``ray.get(make_ref())``, retried for ``retry_seconds`` while an actor restarts (``make_ref`` reads the
        handle's actors when called, so a retry goes to the actors :meth:`_refresh` found). ``lost``: asked after an
        actor error (at most every ``_REFRESH_SECONDS``), the reason the actor never comes back
        (:class:`EngineUnavailable` at once), or None."""
        self._check_open()
        deadline = time.monotonic() + retry_seconds
        lost_asked = -_REFRESH_SECONDS
        while True:
            try:
                return ray.get(make_ref(), timeout=_CALL_TIMEOUT)
            except _ACTOR_ERRORS as exc:
                self._raise_if_lost(exc, every=_REFRESH_SECONDS)
                if lost is not None and time.monotonic() - lost_asked >= _REFRESH_SECONDS:
                    lost_asked = time.monotonic()
                    why = lost()
                    if why is not None:
                        raise _Gone(why) from exc
                if time.monotonic() >= deadline:
                    raise EngineUnavailable(f"engine {self.name!r} did not come back: {exc}") from exc
                time.sleep(0.05)
                self._refresh()
            except ray.exceptions.GetTimeoutError as exc:
                raise EngineUnavailable(f"engine {self.name!r} did not answer in {_CALL_TIMEOUT} s") from exc

    def _check_open(self) -> None:
        """After :meth:`shutdown` the actors are gone for good: said at once (before, each call retried for a minute
        and then said the engine "did not come back", as after a crash)."""
        if self._closed:
            raise EngineUnavailable(f"engine {self.name!r} was shut down by this handle: start or connect another")

    def _raise_if_lost(self, exc: Exception, *, every: float = 0.0) -> None:
        """After an actor error: :class:`EngineUnavailable` at once when the actor never comes back (pinned to a node
        that is gone, or given up by the supervisor after a crash loop); else nothing (Ray is restarting it). A retry
        loop passes ``every`` (seconds): the supervisor is asked at most that often."""
        if self._no_actors is not None:
            raise EngineUnavailable(self._no_actors) from exc
        self._raise_if_stranded(exc)
        self._raise_if_given_up(exc, every)

    def _raise_if_given_up(self, exc: Exception, every: float) -> None:
        """The supervisor's word on the failed actor: one it gave up after a crash loop is ended for good, so
        retrying it for ``_RETRY_SECONDS`` would only delay the answer."""
        now = time.monotonic()
        if now - self._given_up_asked < every:
            return
        self._given_up_asked = now
        try:
            given_up: dict[str, str] = ray.get(self._supervisor.given_up.remote(), timeout=_CALL_TIMEOUT)
        except ray.exceptions.RayTaskError as error:  # the supervisor stopping the engine (its ray.kill to come): said
            if isinstance(error.cause, EngineUnavailable):  # its type kept: an EngineStopped ends a session
                raise type(error.cause)(str(error.cause)) from exc
            self._raise_if_stopped(exc)
            return
        except Exception:  # noqa: BLE001 - the supervisor restarting too: the retry goes on, the next error asks again
            self._raise_if_stopped(exc)
            return
        failed = getattr(exc, "actor_id", None)  # the failed actor's id (hex), when Ray says which
        ids = {name: handle._actor_id.hex() for name, handle in self._actors().items() if handle is not None}
        problems = [why for name, why in given_up.items() if failed is None or ids.get(name) == failed]
        if problems:
            raise EngineUnavailable(" ".join(problems)) from exc

    def _raise_if_stopped(self, exc: Exception) -> None:
        """A supervisor Ray will not restart (``veloz stop``, another handle's :meth:`shutdown`): its actors ended with
        it, so the engine never comes back. Said at once (before, a call retried for a minute, and a subscription
        without a timeout polled the dead bus for ever)."""
        if actor_state(self._supervisor._actor_id.hex()) == "DEAD":
            raise EngineStopped(
                f"engine {self.name!r} has stopped (shut down by another handle or `veloz stop`, or its process "
                "ended): start or connect another"
            ) from exc

    def _raise_supervisor_ended(self, exc: Exception) -> NoReturn:
        """The supervisor died while a new handle asked it for its engine (found by name, then stopped by another
        handle or `veloz stop`): said, never Ray's error raw."""
        self._raise_if_stopped(exc)
        raise EngineUnavailable(f"engine {self.name!r}: its supervisor ended before it answered: {exc}") from exc

    def _actors(self) -> dict[str, Any]:
        """The handle's actors by their STATUS names."""
        venues = {f"venue:{shard}": handle for shard, handle in self._venues.items()}
        return {"oms": self._oms, "account": self._account, "bus": self._bus, "feed": self._feed, "risk": self._risk,
                **venues}  # fmt: skip

    def _raise_if_stranded(self, exc: Exception) -> None:
        """An actor pinned to a node that is gone (node-local journals) never comes back: say so now, clearly."""
        if not self.spec.pinned_nodes():
            return
        with contextlib.suppress(Exception):  # the GCS unreachable: fall back to waiting
            stranded = stranded_actors(self.spec)
        if stranded:
            messages = [stranded_message(self.spec, actor, node) for actor, node in stranded.items()]
            raise EngineUnavailable(" ".join(messages)) from exc

    # -------------------------------------------------------------------------------------------------- queries

    def query(self, client_order_id: str | None = None) -> list[dict[str, Any]]:
        """One order by client order id (empty list if unknown), or every open order when ``None``; a malformed id is
        :class:`InvalidInput` (it could never match an order)."""
        if client_order_id is not None:
            check_client_order_id(client_order_id)
        return self._call(lambda: self._oms.query.remote(self.account_id, client_order_id))

    def orders(self) -> list[dict[str, Any]]:
        """Every order of this account, in any state."""
        return self._call(lambda: self._oms.all_orders.remote(self.account_id))

    def balances(self) -> dict[str, tuple[int, int]]:
        """Asset -> (free, locked) in 1e-8 units, from the OMS's ledger (the source of truth)."""
        return self._call(lambda: self._oms.balances.remote(self.account_id))

    def account_view(self) -> dict[str, tuple[int, int]]:
        """The same balances as the account actor holds them (it follows the OMS asynchronously)."""
        return self._call(lambda: self._account.balances.remote(self.account_id))

    def positions(self) -> list[Any]:
        """``PositionUpdated`` snapshots of this account's positions."""
        return self._call(lambda: self._oms.positions.remote(self.account_id))

    def totals(self) -> dict[str, int]:
        """Per asset: every account's balance plus fees collected, plus what the venues' market makers hold (equal
        to the deposits of both when nothing is lost)."""
        out = dict(self._call(lambda: self._oms.totals.remote()))
        for shard in self.spec.shards:
            for asset, amount in self._call(lambda s=shard: self._venues[s].maker_totals.remote()).items():
                out[asset] = out.get(asset, 0) + amount
        return out

    def tick(self, ts: int | None = None, *, timeout: float = _CALL_TIMEOUT) -> list[Any]:
        """Advance the simulated market one step (``veloz start --local`` ticks from its driver) and wait until the
        OMS applied what it caused (fills of resting orders, the new reference prices). The events themselves go to
        the bus; the list returned is empty. ``ts`` (ns) at most a day ahead of the clock: a step is ignored when an
        earlier one was later, so a far-future ``ts`` would stop the market for good."""
        _check_seconds(timeout, "timeout")
        now = time.time_ns()
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int) or not 0 < ts <= now + _TICK_AHEAD_NS):
            raise InvalidInput(
                f"ts must be None (now) or an int of nanoseconds since the epoch, at most a day ahead of the clock; "
                f"got {type(ts).__name__} {quoted(ts)}"
            )
        marks = self._call(lambda: self._feed.tick.remote(ts if ts is not None else now))
        if marks:
            deadline = time.monotonic() + timeout
            pause = 0.0005
            while True:
                applied = self._call(lambda: self._oms.applied_batches.remote())
                if all((applied.get(shard) or 0) >= mark for shard, mark in marks.items()):
                    break
                if time.monotonic() >= deadline:
                    raise EngineUnavailable(f"engine {self.name!r}: the clock step was not applied in {timeout} s")
                time.sleep(pause)
                pause = min(pause * 2, 0.02)
        return []

    def settle(self, timeout: float = _CALL_TIMEOUT) -> bool:
        """Wait until every venue answered every request the OMS sent so far (fills, cancels and expiries applied);
        False if that did not happen within ``timeout`` seconds (a venue restarting)."""
        deadline = time.monotonic() + _check_seconds(timeout, "timeout")
        pause = 0.0005
        while not self._call(lambda: self._oms.settled.remote()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        return True

    def barrier(self, subscriber: int, token: int) -> None:
        """Ask the OMS to put a :class:`~veloz_actors.actors.bus.Settled` marker for ``subscriber`` on the bus once
        the venues answered every request sent so far (the stdio session prints a command's outcome this way)."""
        self._call(lambda: self._oms.barrier.remote(subscriber, token))

    def start_market(self) -> bool:
        """Start the market data (a replayed file, the live exchange's streams) of an engine started with
        ``hold_market=True``, once subscribed: the subscription then sees it from its first event. Idempotent; False
        when this engine has neither."""
        return bool(self._call(lambda: self._feed.start_market.remote()))

    def replay_market(self, events: Sequence[Any], *, batch_size: int = 1000, reference_prices: bool = False) -> int:
        """Replay recorded market events (e.g. ``data.loaders.load_market_events``) through the feed actor to
        the venue actors and subscribers, in batches; ``reference_prices`` also moves the OMS's reference prices."""
        if isinstance(events, str | bytes) or not isinstance(events, Sequence):
            raise InvalidInput(f"events must be a list of market events, got {_got(events)}")
        for i, event in enumerate(events):
            if type(event) not in _MARKET_EVENTS:  # else left out by the feed without a word, or an error in the OMS
                names = ", ".join(t.__name__ for t in _MARKET_EVENTS)
                raise InvalidInput(f"events[{i}] must be one of {names}; got {_got(event)}")
            if event.symbol not in self.symbols:  # else left out by the feed without a word, while counted as sent
                raise InvalidInput(
                    f"events[{i}] is for {event.symbol!r}, which this engine does not trade (configured: "
                    f"{', '.join(sorted(self.symbols))}): leave that symbol's events out"
                )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInput(f"batch_size must be an int >= 1, got {_got(batch_size)}")
        if not isinstance(reference_prices, bool):
            raise InvalidInput(f"reference_prices must be True or False, got {_got(reference_prices)}")
        self._check_open()
        ref = self._feed.replay.remote(list(events), batch_size, to_oms=reference_prices)
        try:  # not retried: a replay is not idempotent (the batches already sent went through)
            return ray.get(ref, timeout=max(_CALL_TIMEOUT, len(events) / 10_000))
        except _ACTOR_ERRORS as exc:
            self._raise_if_lost(exc)  # a feed given up after a crash loop, an engine stopped: said
            raise EngineUnavailable(
                f"engine {self.name!r}: the feed ended during the replay (Ray restarts it): the batches it had sent "
                "went through, the others did not (a replay is not retried: one sent again would repeat them)"
            ) from exc

    def top(self, symbol: str) -> Any:
        """The latest top of book the venue actor of ``symbol`` holds (a ``BookTop``), or None."""
        shard = self.spec.shard_of().get(symbol)
        if shard is None:
            raise InvalidInput(f"unknown symbol {symbol!r}; configured: {', '.join(sorted(self.symbols))}")
        return self._call(lambda: self._venues[shard].top.remote(symbol))

    def depth(self, symbol: str, levels: int = 20) -> dict[str, Any] | None:
        """The live book a paper venue of ``symbol`` trades against: ``{"synced", "last_update_id", "bids",
        "asks"}`` (levels best first, 1e-8 units), or None on the simulated venue."""
        shard = self.spec.shard_of().get(symbol)
        if shard is None:
            raise InvalidInput(f"unknown symbol {symbol!r}; configured: {', '.join(sorted(self.symbols))}")
        return self._call(lambda: self._venues[shard].depth.remote(symbol, levels))

    def subscribe(
        self,
        *,
        max_queue: int | None = None,
        kinds: Sequence[str] | None = None,
        max_events: int | None = None,
        timeout: float | None = None,
    ) -> Subscription:
        """Events from now on (optionally only some message types by name), through a bounded drop-oldest queue.

        ``max_queue`` is the queue's length in events (None: the engine's ``actors.subscriber_queue``); ``kinds`` a
        list of event type names (``["OrderFilled"]``; None: every kind); iterating stops after ``max_events`` events
        or ``timeout`` seconds without one. A bad argument is :class:`InvalidInput` naming it, before any call."""
        checked = check_subscription(max_queue, kinds)
        if max_events is not None and (
            isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 0
        ):
            raise InvalidInput(f"max_events must be an int >= 0 or None, got {_got(max_events)}")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0
        ):
            raise InvalidInput(f"timeout must be a number of seconds >= 0 or None, got {_got(timeout)}")
        names = None if checked is None else list(checked)
        sid = self._call(lambda: self._bus.subscribe.remote(max_queue, names))
        return Subscription(self, sid, max_events=max_events, timeout=timeout, max_queue=max_queue, kinds=names)

    def status(self) -> dict[str, Any]:
        """Health: every actor alive, its inbox depth, last sequence number and restarts; order counters."""
        status = self._call(lambda: self._supervisor.status.remote())
        oms = status["actors"].get("oms")  # none when its actors could not start
        if oms is not None:
            oms["inbox_depth"] += self.window.depth
        return status

    def kill_switch(self) -> list[Any]:
        """Cancel every open order, then halt risk-increasing orders on every account: straight to the OMS, so a risk
        actor that is down or restarting never holds the kill switch back, then the risk actor is told one-way (its
        reset lifts the halt; the commands it sends again change nothing in the kernel). Returns the kernel's
        events."""
        events = [event for command in kill_switch_commands(time.time_ns()) for event in self.submit(command)]
        if self._risk is not None:
            with contextlib.suppress(Exception):  # a dead risk actor: the halt holds, the API's resume lifts it
                self._risk.kill_switch.remote()
        return events

    def reset(self) -> list[Any]:
        """Lift the kill switch or a tripped breaker: the risk actor's reset, the engine-wide halt, and every halted
        account's own breaker. When an engine-wide limit is still crossed the risk actor halts again at once, and
        that halt stays: the answer is an ``Error`` (``ENGINE_HALTED``) naming the limit. A risk actor that does not
        answer within ``_RISK_WAIT_SECONDS`` (dead, or Ray restarting it) is :class:`EngineUnavailable` saying so, and
        nothing is lifted: trading without it would go unwatched by the engine-wide limits (before, the call waited a
        minute, then said only that the engine "did not come back")."""
        ts = time.time_ns()
        if self._risk is not None:
            try:
                commands = self._call(
                    lambda: self._risk.reset.remote(), retry_seconds=_RISK_WAIT_SECONDS, lost=self._risk_dead
                )
            except (_Gone, EngineStopped):
                raise
            except EngineUnavailable as exc:
                cause = str(exc).splitlines()[0]
                raise EngineUnavailable(
                    f"engine {self.name!r}: the risk actor is down, so nothing was resumed: while it is, the "
                    "engine-wide limits (exposure, drawdown, loss) are not watched, and the halt stays so that "
                    "nothing trades unwatched; resume again once STATUS shows actors.risk alive (Ray restarts it "
                    f"unless it was ended for good). The call to it: {cause}"
                ) from exc
            halts = [c for c in commands if type(c) is HaltTrading]
            if halts:  # lifting it here would leave the crossed limit unguarded until it is crossed anew
                message = (
                    f"trading stays halted: {halts[-1].reason}; reduce the exposure (selling is not halted) or raise "
                    "the limit, then resume"
                )
                return [Error(code="ENGINE_HALTED", message=message, ts=ts)]
        status = self.status()
        events: list[Any] = []
        if status.get("engine_halt"):  # the risk actor's reset sends this too (one-way); a second one changes nothing
            events += self.submit(ResetCircuitBreaker(account_id="*", ts=ts))
        for account in status.get("circuit_breaker") or {}:
            events += self.submit(ResetCircuitBreaker(account_id=account, ts=ts))
        return events

    def _risk_dead(self) -> str | None:
        """After a failed call to the risk actor: why it never answers again when Ray says it is dead (ended for good:
        killed, or given up), from the supervisor's current handles (a restarted supervisor's risk actor is a new
        one); None when it may come back, or when the supervisor does not answer (it may be restarting)."""
        try:
            self._take(ray.get(self._supervisor.handles.remote(), timeout=_CALL_TIMEOUT))
        except Exception:  # noqa: BLE001 - unknown: treated as restarting, the retry goes on
            return None
        if self._risk is None or actor_state(self._risk._actor_id.hex()) != "DEAD":
            return None
        return (
            f"engine {self.name!r}: the risk actor is dead and Ray will not restart it, so nothing was resumed: the "
            "engine-wide limits (exposure, drawdown, loss) are not watched until the engine starts again, and the "
            f"halt stays so that nothing trades unwatched; `veloz stop --name {self.name}` and start the engine "
            "again (every actor recovers from its journal), then resume"
        )

    def actor(self, name: str) -> Any:
        """The Ray handle of one actor (``oms``, ``account``, ``bus``, ``feed``, ``venue:<shard>``, ``risk``) -- for
        tests."""
        return self._actors()[name]

    def shutdown(self) -> None:
        """Flush the journals and stop every actor of the engine (also a detached one). Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # already gone
            ray.get(self._supervisor.shutdown.remote(), timeout=60.0)
        ray.kill(self._supervisor, no_restart=True)

    def __repr__(self) -> str:  # a notebook cell ending in the handle
        state = "shut down" if self._closed else "open"
        return f"EngineHandle(name={self.name!r}, symbols={sorted(self.symbols)!r}, {state})"

    def __enter__(self) -> EngineHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _config(config: str | Path | EngineFileConfig | None) -> EngineFileConfig:
    if config is None:
        return load_engine_config(default_engine_config())
    if isinstance(config, EngineFileConfig):
        return config
    if not isinstance(config, str | os.PathLike):
        raise ConfigError(f"config must be an engine config path, an EngineFileConfig or None, got {_got(config)}")
    return load_engine_config(config)


def _check_address(address: Any) -> None:
    # checked here even though probe_address checks too: with Ray already initialised the address is never probed
    if address is not None and not isinstance(address, str):
        raise ConfigError(
            f"address must be auto, local, HOST:PORT or ray://HOST:PORT (a str) or None, got {_got(address)}"
        )


def _ensure_ray(address: str | None, namespace: str) -> None:
    """Join the cluster at ``address`` (a private local runtime for None / "local"), unless Ray is initialised
    (then ``address`` must name the cluster joined: :func:`~veloz_actors.search.runtime.check_joined`).

    A malformed address, or one where nothing listens, fails within seconds rather than after minutes of Ray's
    retries (:func:`~veloz_actors.search.runtime.probe_address`: :class:`EngineUnavailable`, :class:`ConfigError`
    when malformed)."""
    if ray.is_initialized():
        check_joined(address)  # another cluster's address is refused, never silently ignored
        return
    local = address in (None, "local")
    if not local:
        probe_address(address)  # unreachable or malformed: one clear error in seconds, not minutes of Ray's retries
    else:  # Ray starts its workers at nice 15: any other work on the machine starves the engine (start 80 s, not 12)
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        ray.init(
            address=address or "local",
            namespace=namespace,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
            num_cpus=(os.cpu_count() or 2) if local else None,
        )
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        where = "cannot start a local Ray runtime" if local else f"cannot reach a Ray cluster at {address}"
        message = f"{where} ({str(exc).strip().splitlines()[0]})"
        raise EngineUnavailable(redact(message, address)) from exc


def start_local(
    config: str | Path | EngineFileConfig | None = None,
    *,
    name: str = "default",
    journal_dir: str | Path | None = None,
    durability: str | None = None,
    run_clock: bool = False,
    address: str | None = None,
    detached: bool = False,
    nodes: Mapping[str, str] | None = None,
    hold_market: bool = False,
) -> EngineHandle:
    """Start an engine's actors (a private local Ray runtime unless Ray is already initialised or ``address`` is
    given) and return its handle. ``run_clock`` lets the feed actor drive the simulated market by itself.

    The market data (``actors.replay``, the live venue's streams) starts once every actor is up, or with
    ``hold_market`` at :meth:`EngineHandle.start_market`: subscribe first to see it from its first event.

    ``nodes`` pins actors to cluster nodes by STATUS name (``{"bus": node_id, "supervisor": node_id}``): such an actor
    cannot come back when its node is gone (STATUS says so). With ``actors.journal_mode: node-local`` every journaled
    actor is pinned, by default to the node this driver runs on (where ``journal_dir`` is).

    Every argument is checked before Ray starts (:class:`ConfigError` naming it)."""
    file_config = _config(config)
    spec = build_spec(file_config, name=name, journal_dir=journal_dir, durability=durability, run_clock=run_clock)
    _check_address(address)
    for flag, value in (("detached", detached), ("hold_market", hold_market)):
        if not isinstance(value, bool):
            raise ConfigError(f"{flag} must be True or False, got {_got(value)}")
    pins = _check_nodes(nodes, spec)
    _ensure_ray(address, NAMESPACE)
    journal_node = ray.get_runtime_context().get_node_id() if spec.journal_mode == "node-local" else None
    spec = dataclasses.replace(spec, journal_node=journal_node, nodes=pins, hold_market=hold_market)
    options: dict[str, Any] = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": 0, "name": supervisor_name(name)}
    if spec.nodes.get("supervisor"):
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(spec.nodes["supervisor"], soft=False)
    if detached:
        options["lifetime"] = "detached"
    running = ConfigError(f"an engine named {name!r} is already running in namespace {_namespace()!r}")
    try:
        ray.get_actor(supervisor_name(name))
    except ValueError:
        pass
    else:
        raise running
    try:
        supervisor: Any = ray.remote(Supervisor).options(**options).remote(spec)
    except ray.exceptions.ActorAlreadyExistsError:  # another start took the name since we looked
        raise running from None
    try:
        return EngineHandle(supervisor, name=name, owned=not detached)  # waits until every actor is up
    except BaseException:  # interrupted (Ctrl-C) or not up in time: no half-started engine is left (a detached one
        ray.kill(supervisor, no_restart=True)  # would outlive this driver); its actors go with it (it owns them)
        raise


def _namespace() -> str:
    return ray.get_runtime_context().namespace


def connect(
    address: str | None = "auto", *, name: str = "default", namespace: str = NAMESPACE, timeout: float | None = None
) -> EngineHandle:
    """Connect to an engine already running (``veloz start --address ADDR --detached``) and return its handle.

    ``timeout``: seconds to wait for an engine still starting (default: as long as a start may take, minutes);
    :class:`EngineUnavailable` saying so after it (``veloz status`` / ``stop`` / ``attach`` wait ``CONNECT_SECONDS``)."""
    _check_address(address)
    for what, value in (("name", name), ("namespace", namespace)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{what} must be a non-empty str, got {_got(value)}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
        raise ConfigError(f"timeout must be a number of seconds > 0 or None, got {_got(timeout)}")
    _ensure_ray(address, namespace)
    try:
        supervisor = ray.get_actor(supervisor_name(name), namespace=namespace)
    except ValueError as exc:
        where = redact(str(address), address)
        raise EngineUnavailable(f"no engine named {name!r} in namespace {namespace!r} at {where}") from exc
    return EngineHandle(supervisor, name=name, owned=False, start_timeout=timeout or _START_TIMEOUT)
