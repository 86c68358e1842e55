"""What every actor of one engine shares: its layout (:class:`EngineSpec`), the bounded window of one-way calls to a
peer (:class:`CallWindow`), actor names, and the two small facts an actor asks Ray about itself."""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from ..core.journal import Journal

__all__ = ["LATENCY_BUCKETS", "CallWindow", "EngineSpec", "hand_to_os", "reconstructed", "venue_actor_name"]

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
    order_inbox: int = 1_000
    peer_window: int = 64  # one-way calls in flight to one peer before the sender waits or drops
    tick_ms: int = 250
    run_clock: bool = False  # the feed ticks the simulated market (engines without a driver, e.g. detached)
    replay: dict[str, Any] | None = None  # a recorded file the feed replays: path, speed, batch, reference_prices
    strategies: tuple[dict[str, Any], ...] = ()  # live strategies (see strategy_node.py)
    risk: dict[str, Any] | None = None  # the risk actor's settings (None: no risk actor)

    def journal_path(self, actor: str) -> Path | None:
        return None if self.journal_dir is None else Path(self.journal_dir) / f"{actor}.journal"

    def shard_of(self) -> dict[str, str]:
        return {symbol: shard for shard, symbols in self.shards.items() for symbol in symbols}


def venue_actor_name(engine: str, shard: str) -> str:
    """The name a venue actor is registered under, so a restarted OMS finds its venues again."""
    return f"veloz-venue:{engine}:{shard}"


def reconstructed() -> bool:
    """True in an actor Ray restarted after a crash (False at its first start, and outside an actor)."""
    try:
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # noqa: BLE001 - outside an actor (unit use): a fresh start
        return False


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
