"""``veloz start`` and ``veloz attach`` on the actor engine: a private local Ray runtime (or a cluster), the actors,
the stdio protocol.

``start_command`` is what the CLI calls for ``veloz start --local`` (without ``--single-process``) and for
``veloz start --address ADDR [--detached]``. Locally the driver speaks the same protocol as the single-process
engine (:class:`~veloz_actors.interfaces.stdio.Session` over :class:`ActorBackend`) and ticks the simulated market
through the feed; on SIGINT, SIGTERM, EOF or QUIT it flushes the journals, stops the actors and shuts the private
runtime down, so no Ray process is left behind. A detached engine's feed actor ticks the market itself.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from .._exceptions import VelozError
from ..actors.api import CONNECT_SECONDS, EngineHandle, connect, start_local
from ..actors.bus import Settled
from ..config import EngineFileConfig
from ..logs import log_file_status
from ..venues.engine import EngineConfig
from .local import Frontends, run_session
from .metrics import serve_metrics
from .service import Valuation
from .stdio import Session

_SETTLE_SECONDS = 15.0  # the longest a session waits for a command's outcome (a venue restarting, a busy machine)
_READY_SECONDS = 60.0  # the longest ``veloz start`` waits for a live venue's first reconciliation before the session

__all__ = ["ActorBackend", "attach_command", "start_command"]


class ActorBackend:
    """:class:`~veloz_actors.interfaces.stdio.Backend` over an :class:`EngineHandle`.

    A command's answer is the kernel step's events (the OMS's reply) followed by what the venues' answers caused
    (fills, cancels, expiries, account updates), read from the event bus up to a :class:`Settled` marker, so a session
    prints each command's whole outcome before the next command, in the order the single-process engine gives. The
    bus also carries the step's own events to every subscriber: those are recognised and printed once.
    :meth:`poll` returns whatever else arrived meanwhile (market data, fills of resting orders, strategies' orders).
    """

    _ORDER_KINDS = (
        "OrderAccepted", "OrderRejected", "OrderFilled", "OrderCancelled", "OrderExpired", "AccountUpdated",
        "PositionUpdated", "CircuitBreakerTripped", "Error", "Settled", "VenueConnection",
    )  # fmt: skip
    _ECHO_LIMIT = 100_000

    def __init__(self, engine: EngineHandle, *, owned: bool = True, market: bool = False) -> None:
        self.engine = engine
        self.owned = owned
        kinds = [*self._ORDER_KINDS, *(("BookTop", "Trade") if market else ())]
        self.subscription = engine.subscribe(kinds=kinds, max_queue=100_000)
        self._echo: Counter[Any] = Counter()
        self._token = 0
        self._later: list[Any] = []  # events that followed a settle's marker in the same poll

    def submit(self, command: Any) -> list[Any]:
        events = self.engine.submit(command)
        if len(self._echo) > self._ECHO_LIMIT:  # echoes the bus dropped never come: forget them
            self._echo.clear()
        self._echo.update(events)
        return events + self.settle()

    def settle(self, timeout: float = _SETTLE_SECONDS) -> list[Any]:
        """Events from the bus up to a marker the OMS sends once the venues answered every request so far."""
        self._token += 1
        token = self._token
        sid = self.subscription.id
        self.engine.barrier(sid, token)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        pause = 0.0002
        while True:
            events = self._take()
            if self.subscription.id != sid:  # subscribed again (the bus restarted): the marker went to the old id
                sid = self.subscription.id
                self.engine.barrier(sid, token)
            for i, event in enumerate(events):
                if type(event) is Settled:
                    if event.token == token:
                        self._later = events[i + 1 :]  # what came after the marker: the next poll's
                        return out
                    continue
                if not self._is_echo(event):
                    out.append(event)
            if time.monotonic() >= deadline:
                return out  # a venue restarting: what follows comes with the next poll
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    def _is_echo(self, event: Any) -> bool:
        echo = self._echo
        try:
            count = echo.get(event, 0)
        except TypeError:  # an unhashable event cannot be an echo
            return False
        if count:
            if count == 1:
                del echo[event]
            else:
                echo[event] = count - 1
            return True
        return False

    @property
    def mode(self) -> str:
        """sim, paper or live: the engine config's venue kind."""
        return str(self.engine.spec.engine_config.get("venue_kind", "sim"))

    def _take(self) -> list[Any]:
        """What the bus has for this session, after anything a settle left for later."""
        later, self._later = self._later, []
        return later + self.subscription.poll() if later else self.subscription.poll()

    def poll(self) -> list[Any]:
        """Events that arrived on the bus since the last look (echoes of answered commands left out)."""
        return [e for e in self._take() if type(e) is not Settled and not self._is_echo(e)]

    def tick(self, ts: int) -> list[Any]:
        return self.engine.tick(ts)

    def halt(self) -> list[Any]:
        return self.engine.kill_switch()

    def resume(self) -> list[Any]:
        return self.engine.reset()

    def valuation(self) -> Valuation:
        return Valuation.of(EngineConfig.from_json(self.engine.spec.engine_config).kernel_config())

    def query(self, client_order_id: str | None) -> list[dict[str, Any]]:
        return self.engine.query(client_order_id)

    def balances(self) -> dict[str, tuple[int, int]]:
        return self.engine.balances()

    def positions(self) -> list[Any]:
        return self.engine.positions()

    def status(self) -> dict[str, Any]:
        status = self.engine.status()
        log = log_file_status()  # this front end's own file (veloz.log), beside the actors' (``logs``)
        if log is not None:
            status.setdefault("logs", {})["cli"] = log
        return status

    def close(self) -> None:
        self.subscription.close()
        if self.owned:
            self.engine.shutdown()


def _journal_dir(journal: str | Path | None) -> Path | None:
    """The actors' journals live in one directory beside the configured journal path (``<path>.actors/``)."""
    if journal is None:
        return None
    path = Path(journal).resolve()  # actors may run in another working directory
    return path if path.is_dir() else Path(str(path) + ".actors")


def _print(obj: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
    sys.stdout.buffer.flush()


def start_command(
    file_config: EngineFileConfig,
    *,
    local: bool,
    address: str | None,
    detached: bool,
    journal_dir: str | Path | None,
    durability: str,
    market: bool,
    tick_ms: int,
    name: str = "default",
    frontends: Frontends | None = None,
) -> int:
    """Run ``veloz start`` on actors; returns the process exit code."""
    import ray

    if detached and address is None:
        raise VelozError("--detached needs --address ADDR (a Ray cluster that outlives this process)")
    if local and address is not None:
        raise VelozError("use either --local (a private runtime) or --address ADDR (a cluster), not both")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        engine = start_local(
            file_config,
            name=name,
            journal_dir=_journal_dir(journal_dir),
            durability=durability,
            run_clock=detached,
            address=address,
            detached=detached,
            hold_market=not detached,  # the session subscribes first, then starts it: it prints all of it
        )
    except BaseException:  # a Ctrl-C or an error during start-up: the runtime begun for it goes now, not at exit
        ray.shutdown()
        raise
    if detached:
        _print(
            {
                "type": "status",
                "ts": time.time_ns(),
                "state": "started",
                "detached": True,
                "name": name,
                "address": address,
                "namespace": "veloz",
            }
        )
        ray.shutdown()
        return 0
    metrics = None
    try:
        if engine.spec.live is not None:
            _wait_reconciled(engine)
        metrics = _metrics(file_config, engine)
        return _session(engine, market=market, tick_ms=tick_ms, owned=True, ticking=True, frontends=frontends)
    finally:
        if metrics is not None:
            metrics.close()
        engine.shutdown()
        ray.shutdown()


def _wait_reconciled(engine: EngineHandle, timeout: float = _READY_SECONDS) -> bool:
    """Say on stderr that orders wait for the live venue's reconciliation with the exchange, and how it went."""
    import ray

    print("live: reconciling with the exchange; orders are refused until it has finished", file=sys.stderr, flush=True)
    venues = [engine.actor(f"venue:{shard}") for shard in engine.spec.shards]
    began = time.monotonic()
    lost = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError)
    while time.monotonic() - began < timeout:
        try:
            ready = all(ray.get([v.ready.remote() for v in venues], timeout=30))
        except lost:  # a venue restarting (Ray restarts it, and it reconciles again): asked again, not Ray's error
            ready = False
        if ready:
            print(f"live: reconciled in {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
            return True
        time.sleep(0.1)
    print(f"live: not reconciled after {timeout:.0f} s; still trying (STATUS says why)", file=sys.stderr, flush=True)
    return False


def _metrics(file_config: EngineFileConfig, engine: EngineHandle) -> Any:
    """The Prometheus exporter of this engine (host and port from the config), or None when disabled."""
    settings = file_config.metrics
    if not settings.enabled:
        return None
    try:
        return serve_metrics(engine.status, host=settings.host, port=settings.port, round_trip=engine.round_trip)
    except OSError as exc:  # a busy port must not stop trading: say so on stderr and go on
        print(f"warning: metrics not served on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return None


def _session(
    engine: EngineHandle, *, market: bool, tick_ms: int, owned: bool, ticking: bool, frontends: Frontends | None = None
) -> int:
    frontends = frontends or Frontends(market=market)
    backend = ActorBackend(engine, owned=owned, market=market or frontends.watchers)
    if owned:
        engine.start_market()  # subscribed: the recorded file or the live streams may go
    session = Session(backend, symbols=set(engine.symbols), clock=time.time_ns, market=market)
    has_sim = engine.spec.engine_config.get("sim_symbols")
    tick_fn = backend.tick if (ticking and has_sim) else None
    # quotes, trades, replay errors and fills of resting orders reach the session through the bus, each printed once
    return run_session(session, tick_fn, tick_ms=tick_ms, side_feed=backend.poll, frontends=frontends)


def attach_command(address: str, *, name: str = "default", market: bool = True) -> int:
    """``veloz attach``: the same command session, to an engine already running on a cluster."""
    import ray

    engine = connect(address, name=name, timeout=CONNECT_SECONDS)
    try:
        return _session(engine, market=market, tick_ms=1000, owned=False, ticking=False)
    finally:
        ray.shutdown()
