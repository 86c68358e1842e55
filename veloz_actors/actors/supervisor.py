"""The engine supervisor: starts the actor graph, watches it, and stops it.

One supervisor per engine, named ``veloz-engine:<name>`` in the driver's namespace (``veloz`` for engines on a
cluster). It creates the actors: the event bus, the account view, the OMS (:mod:`.oms`), one venue actor per symbol
shard (:mod:`.venue`, registered by name so a restarted OMS finds them), the market feed (:mod:`.feed`), the live
strategies and, when configured, the risk actor. Each is a plain synchronous actor (calls from one sender run in
order), ``max_task_retries=0`` (a retried call could reorder an ordered stream) and ``max_restarts=-1`` (Ray restarts
a dead actor; it rebuilds itself from snapshot + journal, and the OMS and the venues resync their report streams).
Its health loop never dies: it pings every actor, counts restarts (a new process id, or Ray's count of them), and
after the account view restarted asks the OMS to push the account state again. An actor that crashed more than
``RESTART_LIMIT`` times within ``RESTART_WINDOW_SECONDS`` (an input that kills it whenever it recovers, the memory
monitor killing it while it replays its journal) is not restarted again: the supervisor ends it for good, the engine's
state becomes ``failed`` and ``problems`` says which actor and what to do, instead of a restart loop behind a
``running`` engine. ``status()`` reports each actor alive, its inbox depth and its last sequence number.

Placement (:meth:`EngineSpec.placement`): with ``actors.journal_mode: shared`` every actor goes wherever Ray puts it
and a restarted one recovers on any node from the shared journal directory. With ``node-local`` each journaled actor
is created pinned (``NodeAffinitySchedulingStrategy(soft=False)``) to the node holding its journal (as is any actor
``spec.nodes`` names, in either mode); the supervisor records those nodes, and when one is gone STATUS lists the
stranded actors in ``problems`` (which actor, which node, what to do) instead of waiting for a restart that cannot
happen. A supervisor started (or restarted by Ray) while a pinned node is already gone starts no actor and reports
the same. A live strategy that keeps raising (its last exception under a minute old) is listed in ``problems`` too
(:func:`strategy_problems`), so an operator sees it in STATUS and on the monitoring page, not only in its log.

Its own restart (``max_restarts=-1`` in :func:`~veloz_actors.actors.api.start_local`): the actors it created die with
it (Ray's ownership), so a restarted supervisor builds the graph again, every actor recovering from its journal as if
Ray had restarted it (``EngineSpec.rebuilt``, :func:`~veloz_actors.actors.spec.recovering`: it waits for the journal
lock a still-exiting predecessor holds). STATUS says how often that happened (``supervisor_restarts``), and an engine
handle asks for the new actors after an actor error (:class:`~veloz_actors.actors.api.EngineHandle`). Its own crash
loop ends as its actors' do: each start is noted in the GCS's key-value store (:func:`_record_start`), and a supervisor
restarted more than ``RESTART_LIMIT`` times within ``RESTART_WINDOW_SECONDS`` builds no actor, stays up ``failed`` and
says why in ``problems`` (and to a handle's calls), instead of rebuilding the engine for ever. An actor that
cannot start (its constructor raised: a damaged journal) ends the others and leaves the supervisor ``failed`` with the
actor's error in ``problems`` (:meth:`Supervisor.handles` raises it, so a start fails at once with it); so does one
whose process dies inside its constructor with no Python error (native code crashing, the OOM killer, an exit), once
Ray restarted it ``START_CRASHES`` times (:func:`wait_started`), instead of after ``START_SECONDS``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import threading
import time
from typing import Any

import orjson
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .._exceptions import EngineStopped, EngineUnavailable
from ..logs import log_file_status
from .account import AccountViewActor
from .bus import BUS_CONCURRENCY_GROUPS, EventBusActor
from .feed import MarketFeedActor
from .live_venue import LiveVenueActor
from .oms import OMS_CONCURRENCY_GROUPS, OmsActor
from .spec import (
    EngineSpec,
    live_nodes,
    mark_journal_dir,
    reconstructed,
    require_journal_dir,
    start_actor_process,
    stranded_actors,
    stranded_message,
    venue_actor_name,
)
from .strategy_node import StrategyNode
from .venue import VenueActor

__all__ = [
    "RESTART_LIMIT",
    "RESTART_WINDOW_SECONDS",
    "START_CRASHES",
    "SUPERVISOR_PREFIX",
    "DiedWhileStarting",
    "Supervisor",
    "actor_restarts",
    "actor_state",
    "wait_started",
    "journal_problems",
    "strategy_problems",
    "supervisor_name",
]

SUPERVISOR_PREFIX = "veloz-engine:"
START_SECONDS = 240.0  # each of the two waits for actors to start (a busy machine, a journal to recover); see api
# an actor whose process died this often before it answered its first call dies inside its constructor (os._exit, a
# crash of native code, the OOM killer while it recovers): the start fails then, not after START_SECONDS. Ray restarts
# such an actor about once a second; one death (a memory spike while it replayed a journal) may still recover.
START_CRASHES = 3
_START_POLL_SECONDS = 1.0  # while actors start: how often Ray's count of their restarts is read (ms per actor)
_RISK_MARKS = ("BookTop", "Trade", "MarkPrice", "Kline", "Ticker")  # the risk actor's fills come from the OMS
# an actor that crashed more than RESTART_LIMIT times within RESTART_WINDOW_SECONDS is not restarted again
RESTART_LIMIT = 5
RESTART_WINDOW_SECONDS = 600.0
_ACTIVE = ("running", "failed")  # the states in which the supervisor looks after its actors (not stopping, stopped)
_ORDERED = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": 0, "max_concurrency": 1}


def supervisor_name(name: str) -> str:
    return SUPERVISOR_PREFIX + name


class DiedWhileStarting(Exception):
    """An actor's process died ``restarts`` times before it answered its first call: it dies in its constructor
    without a Python exception (a Python exception reaches the caller as Ray's ``RayActorError`` at once)."""

    def __init__(self, actor: str, restarts: int) -> None:
        super().__init__(f"actor {actor!r} died {restarts} times while starting")
        self.actor = actor
        self.restarts = restarts


def wait_started(
    refs: list[Any], actors: dict[str, Any], timeout: float, known: dict[str, int] | None = None
) -> list[Any]:
    """``ray.get(refs)`` for calls that answer once ``actors`` are up, waiting up to ``timeout`` seconds, but reading
    Ray's count of each actor's restarts every :data:`_START_POLL_SECONDS` meanwhile: one restarted
    :data:`START_CRASHES` times raises :class:`DiedWhileStarting` naming it, at once. Ray restarts an actor whose
    constructor kills its process for ever (``max_restarts=-1``), and a call to it waits for a constructor that never
    ends: before, the start waited the whole ``timeout``. ``known``: restarts an actor had before this wait (an
    engine's supervisor that Ray restarted earlier in its life), not counted. A timeout is ``GetTimeoutError``, a
    constructor's exception ``RayActorError``, as from ``ray.get``."""
    known = known or {}
    deadline = time.monotonic() + timeout
    pending = list(refs)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ray.exceptions.GetTimeoutError(f"actors not started within {timeout:g} s")
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=min(_START_POLL_SECONDS, left))
        if ready:
            ray.get(ready, timeout=left)  # a constructor's exception is raised now, not once the slowest actor is up
        if pending:
            for name, handle in actors.items():
                restarts = actor_restarts(handle._actor_id.hex()) or 0  # unknown (a busy GCS): asked again next time
                if restarts - known.get(name, 0) >= START_CRASHES:
                    raise DiedWhileStarting(name, restarts)
    return list(ray.get(refs, timeout=max(1.0, deadline - time.monotonic())))


def actor_restarts(actor_id: str) -> int | None:
    """Ray's count of the restarts of the actor ``actor_id`` (hex), from the GCS's actor table (the state API needs
    the dashboard, which the engine's runtime does not run); None when the GCS does not say (busy, the actor gone)."""
    from ray._private.state import actors as actor_table  # the one place Ray keeps an actor's restart count

    try:
        return int(actor_table(actor_id)["NumRestarts"])
    except Exception:  # noqa: BLE001 - each caller says what an unknown count means to it
        return None


def actor_state(actor_id: str) -> str | None:
    """Ray's state of the actor ``actor_id`` (hex): ``ALIVE``, ``RESTARTING``, ``DEAD`` (for good: Ray will not
    restart it), ...; None when the GCS does not say."""
    from ray._private.state import actors as actor_table

    try:
        return str(actor_table(actor_id)["State"])
    except Exception:  # noqa: BLE001 - unknown: the caller goes on as if Ray were restarting it
        return None


def _record_start(engine: str, *, restarted: bool) -> int:
    """Note this supervisor's start in the GCS's key-value store (it outlives the process, which Ray replaces) and
    return how many restarts the engine's supervisor had within ``RESTART_WINDOW_SECONDS``, this one included (0 at a
    first start); 0 too when the store does not answer (not counted)."""
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_put

    key = f"veloz-supervisor-starts:{ray.get_runtime_context().namespace}:{engine}".encode()
    now = time.time()  # wall clock: the starts of processes that follow one another
    try:
        starts = orjson.loads(_internal_kv_get(key) or b"[]") if restarted else []
        starts = [at for at in starts if 0 <= now - at <= RESTART_WINDOW_SECONDS] + [now]
        _internal_kv_put(key, orjson.dumps(starts), overwrite=True)
    except Exception:  # noqa: BLE001 - the GCS busy: this start is not counted
        return 0
    return len(starts) - 1


def _own_restarts() -> int:
    """How often Ray restarted this supervisor (0 at its first start)."""
    if not reconstructed():
        return 0
    actor_id = ray.get_runtime_context().get_actor_id()
    count = None if actor_id is None else actor_restarts(actor_id)
    return 1 if count is None else count  # informative: restarted, at least once


class Supervisor:
    """Owns one engine's actors (so with a detached supervisor they all outlive the driver)."""

    def __init__(self, spec: EngineSpec) -> None:
        start_actor_process(spec.logging, "supervisor")
        self.own_restarts = _own_restarts()
        if self.own_restarts:  # the actors died with the supervisor Ray replaced: build them again, recovering
            spec = dataclasses.replace(spec, rebuilt=True)
        self.spec = spec
        self.started_ns = time.time_ns()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.actors: dict[str, Any] = {}
        self.pids: dict[str, int] = {}
        self.seqs: dict[str, int] = {}
        self.alive: dict[str, bool] = {}
        self.restarts: dict[str, int] = {}
        self.crashes: dict[str, collections.deque[float]] = {}  # actor -> when its recent crashes were seen
        self.ray_restarts: dict[str, int] = {}  # actor -> Ray's count of its restarts when last asked
        self.new_pids: dict[str, int] = {}  # actor -> how often its ping answered from a new process
        self.gave_up: dict[str, str] = {}  # actor -> why it is no longer restarted
        self.risk: Any = None
        self.pinned = spec.pinned_nodes()  # actor -> the node it is pinned to (node-local journals, spec.nodes)
        self.stranded_at_start: dict[str, str] = {}
        recent = _record_start(spec.name, restarted=bool(self.own_restarts))
        if recent > RESTART_LIMIT:  # a crash loop of the supervisor itself: build nothing, stay up and say so
            self._gave_up_restarting(recent)
            return
        stranded = stranded_actors(spec)
        if stranded:  # restarted after a pinned node left: no actor could start, say so instead of hanging
            self.state = "stranded"
            self.stranded_at_start = stranded
            return
        if reconstructed():
            require_journal_dir(spec.journal_dir, "supervisor", spec.name)
        else:
            mark_journal_dir(spec)
        try:
            self._start_actors()
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, DiedWhileStarting) as exc:
            self._failed_start(exc)  # an actor that cannot start: said now, in the actor's words, not after minutes
            return
        self.state = "running"
        if not spec.hold_market or reconstructed():
            self.feed.start_market.remote()  # type: ignore[attr-defined]  # everyone subscribed (held: the client's)
        threading.Thread(target=self._watch, name="veloz-supervisor", daemon=True).start()

    def _start_actors(self) -> None:
        """Create every actor and wait until each is up (its constructor recovers its journal)."""
        spec = self.spec
        # the bus's poll_wait has a concurrency group of its own (a subscriber may wait for events); publishes stay
        # in the one-thread default group, executed in each sender's order
        self.bus = (
            ray.remote(concurrency_groups=BUS_CONCURRENCY_GROUPS)(EventBusActor)  # type: ignore[call-overload]
            .options(**self._options("bus"), allow_out_of_order_execution=False)
            .remote(
                spec.subscriber_queue,
                log_settings=spec.logging,
                idle_seconds=spec.subscriber_idle_seconds,
                rebuilt=spec.rebuilt,
            )
        )
        self.account = ray.remote(AccountViewActor).options(**self._options("account")).remote(spec)
        # no max_pending_calls: Ray would enforce it per process on every copy of the handle (the venues', the risk
        # actor's, a client's queries); clients' orders are admitted by their handle's window (actors.order_inbox)
        # and every actor bounds its own calls to the OMS with a CallWindow
        self.oms = (
            ray.remote(concurrency_groups=OMS_CONCURRENCY_GROUPS)(OmsActor)  # type: ignore[call-overload]
            .options(**self._options("oms"), allow_out_of_order_execution=False)
            .remote(spec, self.account, self.bus)
        )
        venue_class = VenueActor if spec.live is None else LiveVenueActor
        self.venues = {
            shard: ray.remote(venue_class)
            .options(**self._options(f"venue:{shard}"), name=venue_actor_name(spec.name, shard))
            .remote(spec, shard, symbols, self.oms, self.bus)
            for shard, symbols in spec.shards.items()
        }
        attached = self.oms.attach_venues.remote(self.venues)  # type: ignore[attr-defined]
        wait_started([attached], self._created(), START_SECONDS)
        feed = ray.remote(MarketFeedActor).options(**self._options("feed"))
        self.feed = feed.remote(spec, self.oms, self.venues, self.bus)
        self.actors = {"oms": self.oms, "account": self.account, "bus": self.bus, "feed": self.feed}
        self.actors.update({f"venue:{shard}": handle for shard, handle in self.venues.items()})
        self.risk = self._start_risk()
        if self.risk is not None:
            self.actors["risk"] = self.risk
        instruments = {
            i["symbol"]: (i["base_asset"], i["quote_asset"], int(i.get("qty_step", 1)))
            for i in spec.engine_config["instruments"]
        }
        for name, settings in zip(spec.strategy_actors(), spec.strategies, strict=True):
            node = ray.remote(StrategyNode).options(**self._options(name))
            self.actors[name] = node.remote(
                settings,
                self.oms,
                self.bus,
                instruments,
                order_inbox=spec.order_inbox,
                log_settings=spec.logging,
                log_name=name,
                rebuilt=spec.rebuilt,
            )
        # the first ping waits for every actor to be up (each actor's constructor recovers its journal)
        pings = wait_started([a.ping.remote() for a in self.actors.values()], self.actors, START_SECONDS)
        self.pids = {name: pid for name, (pid, _) in zip(self.actors, pings, strict=True)}
        self.seqs = {name: seq for name, (_, seq) in zip(self.actors, pings, strict=True)}
        self.alive = dict.fromkeys(self.actors, True)
        self.restarts = dict.fromkeys(self.actors, 0)

    def _gave_up_restarting(self, restarts: int) -> None:
        log = None if self.spec.logging is None else self.spec.logging.file_for("supervisor")
        self.gave_up["supervisor"] = (
            f"engine {self.spec.name!r}: its supervisor was restarted {restarts} times within "
            f"{RESTART_WINDOW_SECONDS:g} s (a crash loop: its process keeps dying, each time with every actor) and "
            f"builds the actors no more; {'' if log is None else f'its log file {log} and '}Ray's worker logs say "
            f"why; remove the cause, then `veloz stop --name {self.spec.name}` and start the engine again (it "
            "recovers from its journals)"
        )
        self.state = "failed"

    def _created(self) -> dict[str, Any]:
        """Name -> handle of every actor :meth:`_start_actors` has created so far."""
        created = {"bus": getattr(self, "bus", None), "account": getattr(self, "account", None),
                   "oms": getattr(self, "oms", None), "feed": getattr(self, "feed", None), **self.actors}  # fmt: skip
        created.update({f"venue:{shard}": handle for shard, handle in getattr(self, "venues", {}).items()})
        return {name: handle for name, handle in created.items() if handle is not None}

    def _failed_start(self, exc: Exception) -> None:
        """An actor died while the engine started (its constructor raised: a damaged journal, a file it cannot read)
        or did not start within ``START_SECONDS``: the actors are ended, the state is ``failed``, and ``problems`` (and
        :meth:`handles`, so ``start_local`` at once) says which actor and its error."""
        created = self._created()
        failed = getattr(exc, "actor_id", None)
        actor = next((name for name, handle in created.items() if handle._actor_id.hex() == failed), None)
        if isinstance(exc, DiedWhileStarting):
            actor = exc.actor
            what = (
                f"died {exc.restarts} times while starting, each time before it answered: its process ends inside "
                "its constructor without a Python error (a crash of native code, the OOM killer, an exit)"
            )
        elif isinstance(exc, ray.exceptions.GetTimeoutError):
            what = f"did not start within {START_SECONDS:g} s (a crash loop while it starts, or a journal too long)"
        elif getattr(exc, "actor_init_failed", False):  # the constructor's exception is the message's last line
            last = [line for line in str(exc).splitlines() if line.strip()][-1].strip()
            kind, _, message = last.partition(": ")
            what = f"failed to start: {kind.rsplit('.', 1)[-1]}: {message}" if message else f"failed to start: {last}"
        else:
            what = f"died while starting: {str(exc).splitlines()[0]}"
        name = "an actor" if actor is None else f"actor {actor!r}"
        log = None if self.spec.logging is None or actor is None else self.spec.logging.file_for(actor)
        self.gave_up[actor or "engine"] = (
            f"engine {self.spec.name!r}: {name} {what}. {'' if log is None else f'Its log file {log} and '}"
            f"Ray's worker logs say more; remove the cause, then start the engine again"
        )
        self.state = "failed"
        for handle in created.values():
            with contextlib.suppress(Exception):  # already dead
                ray.kill(handle, no_restart=True)
        self.actors = {}

    def _options(self, name: str) -> dict[str, Any]:
        """Ray options of one actor: ordered, restartable, and pinned where :meth:`EngineSpec.placement` says (the
        node holding its journal in node-local mode, or a node ``spec.nodes`` names)."""
        node = self.spec.placement(name)
        if node is None:
            return dict(_ORDERED)
        return {**_ORDERED, "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}

    def _start_risk(self) -> Any:
        """The engine-wide risk actor (:mod:`.risk`), off the order path, when the spec configures it
        (``actors.risk``: the limits of :class:`~veloz_actors.core.risk_monitor.EngineRiskLimits`, in 1e-8 units): the
        OMS streams it every fill (numbered, kept until acknowledged), the bus pushes it marks, and it sends the OMS
        ``HaltTrading`` / ``CancelAllOrders`` one-way."""
        if self.spec.risk is None:
            return None
        from ..core.risk_monitor import EngineRiskLimits, RiskMonitorConfig
        from ..venues.engine import EngineConfig
        from .risk import RiskActor, risk_actor_name

        settings = dict(self.spec.risk)
        limits = EngineRiskLimits(**dict(settings.get("limits", settings)))
        kernel_config = EngineConfig.from_json(self.spec.engine_config).kernel_config()
        config = RiskMonitorConfig.from_kernel(kernel_config, limits)
        risk = (
            ray.remote(RiskActor)
            .options(**self._options("risk"), name=risk_actor_name(self.spec.name))
            .remote(
                config,
                self.oms,
                journal_path=self.spec.journal_path("risk"),
                durability=self.spec.durability,
                follow_method="follow_fills",
                resume=True if self.spec.rebuilt else None,
                engine=self.spec.name,
                log_settings=self.spec.logging,
            )
        )
        self._follow(risk)
        return risk

    def _follow(self, risk: Any) -> None:
        ray.get(self.bus.forward.remote(risk, _RISK_MARKS, name="risk"), timeout=60)

    def handles(self) -> dict[str, Any]:
        """The actor handles, for an engine handle in another process (``vz.connect``); a stopped engine's too (a
        second ``veloz stop`` then stops it cleanly again), whose calls :meth:`given_up` answers."""
        if self.state == "stranded" or not self.actors:  # stranded, or an actor failed to start
            raise EngineUnavailable(" ".join(self.problems()))
        return {
            "oms": self.oms,
            "account": self.account,
            "bus": self.bus,
            "feed": self.feed,
            "venues": self.venues,
            "risk": self.risk,
        }

    def _raise_if_stopping(self) -> None:
        """From :meth:`shutdown` until the ``ray.kill`` that ends this supervisor (which returns before it is gone; never
        comes when ``veloz stop`` is interrupted in between) its actors are dead: a handle whose call to one failed
        hears that the engine stopped, rather than retrying dead handles for a minute (a subscription: for ever)."""
        if self.state in ("stopping", "stopped"):
            raise EngineStopped(
                f"engine {self.spec.name!r} has stopped (shut down by another handle or `veloz stop`): start or "
                "connect another"
            )

    def spec_data(self) -> EngineSpec:
        return self.spec

    def given_up(self) -> dict[str, str]:
        """Actor -> why it is not restarted again (a crash loop, :meth:`_count_crashes`), for an engine handle whose
        call to it failed: said at once rather than retried; once the engine is stopping, that it stopped."""
        self._raise_if_stopping()
        with self._lock:
            return dict(self.gave_up)

    def problems(self, alive_nodes: set[str] | None = None) -> list[str]:
        """What keeps actors from running that Ray cannot fix by itself: each actor pinned to a node that is gone."""
        stranded = self.stranded_at_start or stranded_actors(self.spec, alive_nodes)
        return [
            *(stranded_message(self.spec, actor, node) for actor, node in stranded.items()),
            *self.gave_up.values(),
        ]

    def _nodes_now(self) -> dict[str, str | None]:
        """Actor -> the node it runs on now (None while Ray restarts it, or if its node is gone), from the GCS."""
        from ray._private.state import actors as actor_table  # the one place Ray keeps each actor's address

        out: dict[str, str | None] = {}
        for name, handle in self.actors.items():
            try:
                info = actor_table(handle._actor_id.hex())
                alive = info.get("State") == "ALIVE"
                out[name] = (info.get("Address") or {}).get("NodeID") if alive else None
            except Exception:  # noqa: BLE001 - placement is informative; never fail STATUS over it
                out[name] = None
        return out

    # ------------------------------------------------------------------------------------------------------ watch

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            with contextlib.suppress(Exception):  # the health loop never dies
                self.check()

    def check(self) -> dict[str, bool]:
        """Ping every actor once; count restarts; resync the account view after it restarted."""
        names = list(self.actors)
        refs = [self.actors[n].ping.remote() for n in names]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=2.0)
        done = set(ready)
        with self._lock:
            for name, ref in zip(names, refs, strict=True):
                if name in self.gave_up:
                    continue
                if ref not in done:
                    self.alive[name] = False
                    self._count_crashes(name)
                    continue
                try:
                    pid, seq = ray.get(ref, timeout=1.0)
                except Exception:  # noqa: BLE001 - died (Ray is restarting it)
                    self.alive[name] = False
                    self._count_crashes(name)
                    continue
                if pid != self.pids[name]:
                    self.new_pids[name] = self.new_pids.get(name, 0) + 1
                    self.restarts[name] = max(self.restarts[name], self.new_pids[name])
                    self.pids[name] = pid
                    if self._count_crashes(name):
                        continue
                    if name == "account" and self.state in _ACTIVE:
                        self.oms.resync_account.remote()  # type: ignore[attr-defined]
                    if name == "bus" and self.risk is not None and self.state in _ACTIVE:
                        # a restarted bus forgot its forwards
                        self.bus.forward.remote(self.risk, _RISK_MARKS, name="risk")
                self.alive[name] = True
                self.seqs[name] = seq
            return dict(self.alive)

    def _count_crashes(self, name: str) -> bool:
        """After an actor did not answer or answered from a new process: Ray's count of its restarts (the GCS's actor
        table: a crash the pings missed counts too); past ``RESTART_LIMIT`` within ``RESTART_WINDOW_SECONDS`` the actor
        is ended for good and the engine is ``failed`` (returns True)."""
        count = actor_restarts(self.actors[name]._actor_id.hex())
        if count is None:  # the GCS busy: the next check asks again
            return False
        now = time.monotonic()
        crashes = self.crashes.setdefault(name, collections.deque())
        crashes.extend([now] * (count - self.ray_restarts.get(name, 0)))  # the crashes since the last look
        self.ray_restarts[name] = count
        self.restarts[name] = max(self.new_pids.get(name, 0), count)  # the same restarts, seen two ways
        while crashes and now - crashes[0] > RESTART_WINDOW_SECONDS:
            crashes.popleft()
        if len(crashes) <= RESTART_LIMIT or self.state not in _ACTIVE:
            return False
        ray.kill(self.actors[name], no_restart=True)
        self.alive[name] = False
        log = None if self.spec.logging is None else self.spec.logging.file_for(name)
        self.gave_up[name] = (
            f"engine {self.spec.name!r}: actor {name!r} crashed {len(crashes)} times within "
            f"{RESTART_WINDOW_SECONDS:g} s and is not restarted again (a crash loop): "
            f"{'' if log is None else f'its log file {log} and '}Ray's worker logs say why; remove the cause, then "
            f"`veloz stop --name {self.spec.name}` and start the engine again (it recovers from its journals)"
        )
        self.state = "failed"
        return True

    def status(self) -> dict[str, Any]:
        """Health of every actor: alive, inbox depth, last sequence number, restarts; and the engine summary."""
        names = list(self.actors)
        refs = [self.actors[n].status.remote() for n in names]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=5.0)
        done = set(ready)
        detail: dict[str, Any] = {}
        for name, ref in zip(names, refs, strict=True):
            try:
                detail[name] = ray.get(ref, timeout=1.0) if ref in done else None
            except Exception:  # noqa: BLE001 - reported as not alive
                detail[name] = None
        # each process's log file (its path, the lines it refused): one place in STATUS, not in every actor's entry
        logs = {name: (detail[name] or {}).pop("log", None) for name in names}
        logs["supervisor"] = log_file_status()
        oms = detail.get("oms") or {}
        depth: dict[str, int] = {name: 0 for name in names}
        for peer, info in (oms.get("peers") or {}).items():
            depth[peer] = depth.get(peer, 0) + info.get("inbox_depth", 0)
        for name in names:
            if name.startswith("venue:") and detail.get(name):
                depth["bus"] = depth.get("bus", 0) + detail[name]["peers"]["bus"]["inbox_depth"]
        nodes_now = self._nodes_now()
        alive_nodes = live_nodes()
        problems = (
            self.problems(alive_nodes)
            + journal_problems(self.spec.name, detail)
            + strategy_problems(self.spec.name, {n: detail[n] for n in names if n.startswith("strategy:")})
        )
        with self._lock:
            actors = {
                name: {
                    "alive": detail[name] is not None,
                    "inbox_depth": depth.get(name, 0),
                    "last_seq": detail[name]["last_seq"] if detail[name] else self.seqs.get(name),
                    "restarts": self.restarts[name],
                    "pid": (detail[name] or {}).get("pid", self.pids.get(name)),
                    "node_id": nodes_now.get(name),
                }
                for name in names
            }
        for name, node in self.pinned.items():
            if name == "supervisor":
                continue
            entry = actors.setdefault(name, {"alive": False, "inbox_depth": 0, "last_seq": None, "restarts": 0})
            entry["pinned_node"] = node
            entry["node_alive"] = node in alive_nodes
        bus = detail.get("bus") or {}
        risk = detail.get("risk")
        risk_gauges = risk.pop("gauges", None) if risk else None
        return {
            "engine": "actors",
            "name": self.spec.name,
            "state": self.state,
            "node_id": ray.get_runtime_context().get_node_id(),
            "supervisor_pid": os.getpid(),
            "supervisor_restarts": self.own_restarts,
            "uptime_seconds": round((time.time_ns() - self.started_ns) / 1e9, 3),
            "actors": actors,
            "seq": oms.get("seq"),
            "orders": oms.get("orders", 0),
            "open_orders": oms.get("open_orders", 0),
            "rejections": oms.get("rejections", {}),
            "retries": oms.get("retries", {}),
            "latency_counts": oms.get("latency_counts", []),
            "latency_sum": oms.get("latency_sum", 0.0),
            "market_events": sum((detail.get(n) or {}).get("events", 0) for n in names if n.startswith("venue:")),
            "subscribers": bus.get("subscribers", {}),
            "subscriber_dropped": bus.get("dropped", 0),  # all subscriptions', closed ones' too
            "strategies": {n: detail[n] for n in names if n.startswith("strategy:")},
            "risk": risk,
            "risk_gauges": risk_gauges,  # interfaces/metrics.py exports them
            "valuation_asset": risk["valuation_asset"] if risk else None,
            "risk_forwarding": {  # the risk actor's inputs: fills from the OMS (lossless), marks from the bus
                "fills": oms.get("risk_feed"),
                "marks": (bus.get("forwards") or {}).get("risk"),
            }
            if "risk" in self.actors
            else None,
            "venues": {n.split(":", 1)[1]: detail[n] for n in names if n.startswith("venue:")},
            "journal": oms.get("journal"),
            "journals": {
                "mode": self.spec.journal_mode,
                "dir": self.spec.journal_dir,
                "node_id": self.spec.journal_node if self.spec.journal_mode == "node-local" else None,
            },
            "problems": problems,
            "journal_lines": oms.get("journal_lines", 0),
            "reference_prices": oms.get("reference_prices", {}),
            "circuit_breaker": oms.get("circuit_breaker", {}),
            "engine_halt": oms.get("engine_halt"),
            "replay": (detail.get("feed") or {}).get("replay"),
            "market_data": (detail.get("feed") or {}).get("market_data"),
            "logs": {name: entry for name, entry in sorted(logs.items()) if entry is not None},
        }

    # --------------------------------------------------------------------------------------------------- shutdown

    def shutdown(self) -> bool:
        """Stop the feed, flush and close every journal, then end the actors. Idempotent."""
        if self.state == "stopped":
            return True
        self.state = "stopping"
        self._stop.set()
        order = [
            *[n for n in self.actors if n.startswith("strategy:")],
            *(["risk"] if "risk" in self.actors else []),
            "feed",
            "oms",
            *[n for n in self.actors if n.startswith("venue:")],
            "account",
            "bus",
        ]
        order = [name for name in order if name in self.actors]  # none when stranded at start
        for name in order:
            with contextlib.suppress(Exception):  # a dead actor has nothing left to flush
                ray.get(self.actors[name].close.remote(), timeout=10.0)
        for name in order:
            ray.kill(self.actors[name], no_restart=True)
        self.state = "stopped"
        return True


def journal_problems(engine: str, statuses: dict[str, dict[str, Any] | None]) -> list[str]:
    """A line for STATUS ``problems`` per actor whose journal cannot be written (a full disk, an I/O error): it
    refuses every command or report it is sent until the engine restarts, while Ray sees it alive and well."""
    return [
        f"engine {engine!r}: actor {actor!r} refuses everything it is sent: {status['journal_error']}"
        for actor, status in statuses.items()
        if status and status.get("journal_error")
    ]


def strategy_problems(engine: str, strategies: dict[str, dict[str, Any] | None]) -> list[str]:
    """A line for STATUS ``problems`` per live strategy stuck in a callback (its ``status()`` says ``stuck``): which
    actor, which callback, for how long; one per strategy whose orders are all refused (``refusing``): how many, the
    last reason; and one per strategy that keeps raising (``failing``): which actor, how often, the last exception's
    message (secrets redacted by the node) and where its traceback is."""
    out = []
    for actor, status in strategies.items():
        if status and status.get("stuck"):
            out.append(
                f"engine {engine!r}: actor {actor!r} (strategy {status['strategy']} on {status['symbol']}) has been "
                f"in {status['callback']} for {status['callback_seconds']:.0f} s: until it returns the strategy gets "
                "no event and places no order (its events wait in its bus queue, the oldest dropped past its limit)"
            )
        if status and status.get("refusing"):
            out.append(
                f"engine {engine!r}: actor {actor!r} (strategy {status['strategy']} on {status['symbol']}) has had its "
                f"last {status['refused_in_a_row']} orders refused, the last {status['last_rejection']}. It goes on "
                "placing orders at its signals; the reason says what to change (a risk limit, the account's funds)"
            )
        if not status or not status.get("failing"):
            continue
        out.append(
            f"engine {engine!r}: actor {actor!r} (strategy {status['strategy']} on {status['symbol']}) is raising: "
            f"{status['errors']} exceptions so far, the last {status['last_error_age_seconds']:.0f} s ago: "
            f"{status['last_error']}. It goes on getting its callbacks; the tracebacks are in its log file."
        )
    return out
