"""What every actor of one engine shares: its layout (:class:`EngineSpec`), the bounded window of one-way calls to a
peer (:class:`CallWindow`), actor names, where the stateful actors may run (:meth:`EngineSpec.placement`,
:func:`stranded_actors`), and the two small facts an actor asks Ray about itself.

Journal modes (``actors.journal_mode``) on a multi-node cluster: ``shared`` -- ``journal_dir`` is on a filesystem
every node reaches, so Ray may restart a stateful actor on any node and it recovers from snapshot + journal there;
``node-local`` -- the journals stay on one node's disk (``journal_node``, the node of the driver that started the
engine, unless ``nodes`` names another for an actor), and each stateful actor is pinned to its node with
``NodeAffinitySchedulingStrategy(soft=False)``. ``nodes`` pins any actor (``supervisor`` included) the same way, in
either mode: pins are hard because Ray's soft node affinity is only a hint for actors that need no CPU (they land on
either node). A pinned actor whose node is gone cannot come back: Ray marks it unschedulable, and
:func:`stranded_actors` / :func:`stranded_message` say which actor, which node and what to do.
"""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from .._exceptions import JournalError
from ..core.journal import Journal
from ..core.kernel import tune_gc
from ..core.market_batch import MarketBatch
from ..logs import LogSettings, configure_logging, redacted_repr

__all__ = [
    "JOURNAL_LOCK_WAIT",
    "JOURNAL_MODES",
    "LATENCY_BUCKETS",
    "CallWindow",
    "MergingWindow",
    "EngineSpec",
    "hand_to_os",
    "live_nodes",
    "mark_journal_dir",
    "require_journal_dir",
    "reconstructed",
    "recovering",
    "stranded_actors",
    "stranded_message",
    "venue_actor_name",
]

JOURNAL_MODES = ("shared", "node-local")

# How long a restarted actor waits for its journal's lock (one engine per journal): the process Ray replaced may still
# be exiting, and a node cut off from a shared folder holds it until its lease ends. Ray never retries an actor whose
# constructor raised, so refusing at once would leave the engine without that actor for good.
JOURNAL_LOCK_WAIT = 60.0

# order processing time inside the OMS and client round trips (seconds): the histograms' upper bounds
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
    subscriber_idle_seconds: float = 300.0  # a subscription not polled for this long is dropped by the bus
    order_inbox: int = 1_000
    peer_window: int = 64  # one-way calls in flight to one peer before the sender waits or drops
    tick_ms: int = 250
    run_clock: bool = False  # the feed ticks the simulated market (engines without a driver, e.g. detached)
    replay: dict[str, Any] | None = None  # a recorded file the feed replays: path, speed, batch, reference_prices
    market_data: dict[str, Any] | None = None  # live market data the feed streams (MarketDataSettings' fields)
    hold_market: bool = False  # the feed waits for start_market() (a client that subscribes first), see feed.py
    strategies: tuple[dict[str, Any], ...] = ()  # live strategies (see strategy_node.py)
    risk: dict[str, Any] | None = None  # the risk actor's settings (None: no risk actor)
    journal_mode: str = "shared"  # "shared" or "node-local" (see the module docstring)
    journal_node: str | None = None  # node-local: the node whose disk holds journal_dir
    nodes: dict[str, str] = field(default_factory=dict)  # actor ("oms", "venue:BTCUSDT", "supervisor") -> pinned node
    logging: LogSettings | None = None  # each actor's log set-up (veloz_actors.logs; None: leave logging alone)
    live: dict[str, Any] | None = None  # real orders on Binance (live_venue.py): settings, credentials ref, account
    rebuilt: bool = False  # the actors are built again by a supervisor Ray restarted: each recovers (recovering())

    def __repr__(self) -> str:  # no URL credential in a log line or an error that prints it
        return redacted_repr(self)

    def __post_init__(self) -> None:
        if self.journal_mode not in JOURNAL_MODES:
            raise ValueError(f"journal_mode must be one of {JOURNAL_MODES}, got {self.journal_mode!r}")

    def journal_path(self, actor: str) -> Path | None:
        return None if self.journal_dir is None else Path(self.journal_dir) / f"{actor}.journal"

    def strategy_actors(self) -> tuple[str, ...]:
        """The live strategies' STATUS names, one per ``strategies`` entry, in order."""
        return tuple(f"strategy:{i}:{settings['strategy']}" for i, settings in enumerate(self.strategies))

    def actor_names(self) -> tuple[str, ...]:
        """Every actor of the engine by its STATUS name (the names ``nodes`` may pin)."""
        return ("supervisor", "bus", *self.stateful_actors(), *self.strategy_actors())

    def stateful_actors(self) -> tuple[str, ...]:
        """The actors that keep a journal, by their STATUS names."""
        names = ["oms", "account", "feed", *(f"venue:{shard}" for shard in self.shards)]
        return (*names, "risk") if self.risk is not None else tuple(names)

    def placement(self, actor: str) -> str | None:
        """The node ``actor`` is pinned to, or None (wherever Ray puts it, and restarts it).

        ``nodes[actor]`` if given; else, in ``node-local`` mode, a journaled actor's ``journal_node``."""
        node = self.nodes.get(actor)
        if node is None and self.node_local_journals() and actor in self.stateful_actors():
            node = self.journal_node
        return node

    def node_local_journals(self) -> bool:
        return self.journal_mode == "node-local" and self.journal_dir is not None

    def pinned_nodes(self) -> dict[str, str]:
        """Actor -> the node it is pinned to (the journaled actors in ``node-local`` mode, and ``nodes``)."""
        out = {actor: node for actor in self.stateful_actors() if (node := self.placement(actor)) is not None}
        out.update(self.nodes)
        return out

    def shard_of(self) -> dict[str, str]:
        return {symbol: shard for shard, symbols in self.shards.items() for symbol in symbols}


def venue_actor_name(engine: str, shard: str) -> str:
    """The name a venue actor is registered under, so a restarted OMS finds its venues again."""
    return f"veloz-venue:{engine}:{shard}"


def live_nodes() -> set[str]:
    """The ids of the cluster's nodes that are alive now (one call to the GCS)."""
    return {node["NodeID"] for node in ray.nodes() if node.get("Alive")}


def stranded_actors(spec: EngineSpec, alive: set[str] | None = None) -> dict[str, str]:
    """Pinned actor -> its node, for each actor pinned (``node-local``) to a node that is no longer alive: Ray cannot
    restart those anywhere else."""
    pinned = spec.pinned_nodes()
    if not pinned:
        return {}
    alive = live_nodes() if alive is None else alive
    return {actor: node for actor, node in pinned.items() if node not in alive}


def stranded_message(spec: EngineSpec, actor: str, node: str) -> str:
    """What a person needs to know about an actor stranded on a node that is gone: which, where, what to do."""
    if spec.node_local_journals() and actor in spec.stateful_actors():
        return (
            f"engine {spec.name!r}: actor {actor!r} cannot run: actors.journal_mode is node-local and its journal "
            f"({spec.journal_dir}) is on node {node}, which has left the cluster, so Ray will not restart it "
            f"elsewhere. To recover, copy {spec.journal_dir} from that machine to a live node (or put it on a "
            f"filesystem every node reaches and set actors.journal_mode: shared), then `veloz stop --name {spec.name}`"
            f" and start the engine again with --journal pointing at it: every actor recovers from its journal."
        )
    return (
        f"engine {spec.name!r}: actor {actor!r} cannot run: it is pinned to node {node}, which has left the cluster, "
        f"so Ray will not restart it elsewhere. `veloz stop --name {spec.name}` and start the engine again (its "
        f"actors recover from their journals) without pinning it to that node."
    )


JOURNAL_MARKER = ".veloz-engine"  # written into the journal directory when an engine starts


def mark_journal_dir(spec: EngineSpec) -> None:
    """Write the engine's marker into its journal directory (at the engine's first start): a stateful actor that Ray
    restarts later checks it is there (:func:`require_journal_dir`), so a directory that is not in fact shared is
    caught instead of recovering from nothing."""
    if spec.journal_dir is None:
        return
    directory = Path(spec.journal_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / JOURNAL_MARKER).write_text(f"{spec.name}\n")


def require_journal_dir(directory: str | Path | None, actor: str, engine: str = "") -> None:
    """Before a restarted stateful actor recovers from ``directory``: raise :class:`JournalError` naming the actor,
    the directory and this node when the engine's marker is not there, i.e. this node does not see the journals
    (``actors.journal_mode: shared`` on a directory that is not on a filesystem every node reaches). Recovering from
    an empty directory would silently forget every order."""
    if directory is None or (Path(directory) / JOURNAL_MARKER).exists():
        return
    node = "this node"
    if ray.is_initialized():  # (asking the runtime context outside Ray would start Ray)
        with contextlib.suppress(Exception):
            node = ray.get_runtime_context().get_node_id()
    raise JournalError(
        f"engine {engine or '?'}: actor {actor!r} was restarted on node {node}, which does not see its journal "
        f"directory {directory} (the engine's marker {JOURNAL_MARKER} is missing there). With actors.journal_mode "
        "shared the directory must be on a filesystem every node reaches; otherwise use journal_mode node-local, "
        "which pins each journaled actor to the node holding its journal. The actor refuses to start empty rather "
        "than forget its orders."
    )


def start_actor_process(settings: LogSettings | None, actor: str, *, rebuilt: bool = False) -> None:
    """What an actor does first in its process: its logging (``actor`` is its STATUS name), and the collector tuned
    as in every engine process (:func:`~veloz_actors.core.kernel.tune_gc`): an OMS holds its kernel's live orders, a
    venue its books, and every actor turns batches into many short-lived messages.

    A log file that cannot be opened fails a first start (a clear error), but not an actor started again: Ray
    restarted it, or a restarted supervisor ``rebuilt`` it (``EngineSpec.rebuilt``). Ray never restarts an actor whose
    constructor raised, and a supervisor whose constructor raised is gone with all its actors, so the engine would be
    lost for good over a log file; the actor logs to stderr instead, and STATUS ``logs`` says why."""
    configure_logging(settings, actor=actor, fallback=rebuilt or reconstructed())
    tune_gc()


def reconstructed() -> bool:
    """True in an actor Ray restarted after a crash (False at its first start, and outside an actor)."""
    if not ray.is_initialized():  # (asking for the runtime context outside Ray would start Ray)
        return False
    try:
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # noqa: BLE001 - outside an actor (unit use): a fresh start
        return False


def recovering(spec: EngineSpec) -> bool:
    """True in an actor that must recover rather than start fresh: Ray restarted it, or a supervisor Ray restarted
    built it again (``spec.rebuilt``: the actors die with their supervisor). Either way the process it replaces may
    still be exiting, so it waits up to ``JOURNAL_LOCK_WAIT`` for its journal's lock, and finds the journal directory
    marked (:func:`require_journal_dir`)."""
    return spec.rebuilt or reconstructed()


def hand_to_os(journal: Journal | None) -> None:
    """Hand the journal's buffered lines to the OS before anything leaves the actor: a killed actor process then
    loses nothing it acknowledged (fsync for power loss stays the journal's durability policy)."""
    if journal is not None:
        journal.hand_to_os()


class CallWindow:
    """One-way calls to one peer, at most ``limit`` in flight: the sender waits for the oldest (ordered streams to a
    peer that never waits on the sender) or drops and counts (``drop=True``, market data to a slow peer)."""

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

    def send(self, method: Any, *args: Any, drop: bool = False, **kwargs: Any) -> bool:
        if len(self.refs) >= self.limit and self.depth() >= self.limit:
            if drop:
                self.dropped += 1
                return False
            oldest = self.refs.popleft()
            with contextlib.suppress(Exception):  # a dead peer: its restart resyncs it
                ray.wait([oldest], timeout=10.0, fetch_local=False)
        self.refs.append(method.remote(*args, **kwargs))
        self.sent += 1
        return True

    def wait_all(self, timeout: float = 30.0) -> None:
        """Wait until every call sent so far has run (benchmarks, tests, shutdown)."""
        refs = list(self.refs)
        if refs:
            with contextlib.suppress(Exception):
                ray.wait(refs, num_returns=len(refs), timeout=timeout, fetch_local=False)
        self.refs.clear()


_BUSY_DEPTH = 1  # calls in flight to a peer from which the next columnar batches wait to go as one
_MERGE_ROWS = 16_384  # rows merged at most: past them a batch goes anyway (and the window's limit holds it back)


class MergingWindow:
    """Columnar market batches to one peer method through a :class:`CallWindow`, merged while the peer is busy.

    A batch goes at once while fewer than ``_BUSY_DEPTH`` calls are in flight; otherwise it waits and goes with the
    next one, as one batch (up to ``_MERGE_ROWS`` rows). A busy peer then takes fewer, larger calls, which is where
    an actor's time goes on this path (each call costs both sides ~0.5 ms whatever its size), while a peer keeping up
    gets every batch as it comes. The sender must :meth:`flush` at the end of its stream (and before anything it sends
    the peer by another way that must come after these batches): what waits goes only with a later :meth:`send`."""

    __slots__ = ("window", "method", "parts", "rows", "merged")

    def __init__(self, limit: int, method: Any) -> None:
        self.window = CallWindow(limit)
        self.method = method
        self.parts: list[MarketBatch] = []
        self.rows = 0
        self.merged = 0  # batches that went inside another one's call

    def send(self, batch: MarketBatch) -> None:
        self.parts.append(batch)
        self.rows += len(batch)
        if self.rows < _MERGE_ROWS and self.window.depth() >= _BUSY_DEPTH:
            return  # the peer is busy: this batch goes with the next
        self.flush()

    def flush(self) -> None:
        """Send what waits, as one call (waiting for room in the window if it is full)."""
        parts = self.parts
        if not parts:
            return
        self.parts, self.rows = [], 0
        self.merged += len(parts) - 1
        self.window.send(self.method, parts[0] if len(parts) == 1 else MarketBatch.concat(parts))

    def wait_all(self, timeout: float = 30.0) -> None:
        """Send what waits, then wait until every call has run."""
        self.flush()
        self.window.wait_all(timeout)
