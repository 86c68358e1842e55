"""The risk actor: engine-wide post-trade risk off the order path, a thin shell over
:class:`~veloz_actors.core.risk_monitor.RiskMonitor`.

It is fed batches of bus events (fills and market prices; anything else is ignored) and sends the commands the
monitor returns -- a ``HaltTrading(account_id="*")`` when an engine-wide limit is crossed, ``CancelAllOrders`` then
``HaltTrading`` for the kill switch, ``ResetCircuitBreaker`` per account after a reset -- to the OMS actor one-way::

    oms.<oms_method>.remote([command, ...])          # default: oms.submit_many.remote(commands)

The OMS method must take a list of commands and apply them in order (``OmsNode.submit_many`` does: each command goes
through ``Engine.apply`` and so through the kernel, which applies ``HaltTrading``, ``CancelAllOrders`` and
``ResetCircuitBreaker``). The call is never awaited on the caller's path; a call that failed (the OMS died with it in
flight) is sent again when the actor next looks at its outbox (each call, and ``flush()``): the three commands are
idempotent in the kernel. At most ``window`` calls are in flight; past that the actor waits for the oldest.

With a ``journal_path``, the monitor journals what it applied. When Ray restarts the actor (or ``resume=True``: an
engine restarted over its journals, as the OMS recovers its own), it recovers from snapshot + journal and sends its
halt again if one was in force; a fresh start (``resume=False``, or the default outside a Ray restart) moves an old
journal aside to ``<journal>.previous`` and starts from the configured balances.

Use :func:`start_risk_actor` (``ray.remote`` applied here, at the edge), or ``ray.remote(RiskActor)`` with
:data:`RISK_ACTOR_OPTIONS`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ray

from ..core.journal import Durability
from ..core.risk_monitor import RiskMonitor, RiskMonitorConfig

__all__ = ["RISK_ACTOR_OPTIONS", "RiskActor", "start_risk_actor"]

# A plain synchronous actor: calls from one sender run in order, a retried call could reorder them, and Ray restarts
# it when it dies (it recovers from its journal).
RISK_ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": 0, "max_concurrency": 1}


def _reconstructed() -> bool:
    """True when Ray restarted this actor (the same check as the engine's other actors)."""
    try:
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # noqa: BLE001 - outside an actor (unit use): a fresh start
        return False


class RiskActor:
    """Engine-wide risk as an actor: ``apply`` batches of bus events, halts sent to the OMS one-way."""

    def __init__(
        self,
        config: RiskMonitorConfig,
        oms: Any,
        *,
        journal_path: str | Path | None = None,
        durability: Durability = "group",
        oms_method: str = "submit_many",
        resume: bool | None = None,
        window: int = 64,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.oms = oms
        self.oms_method = oms_method
        self.clock = clock
        self.window = window
        self.restarted = _reconstructed()
        self.resumed = False
        self._in_flight: deque[tuple[Any, list[Any]]] = deque()
        self.sent = 0
        self.resent = 0
        self.send_failures = 0
        pending: list[Any] = []
        if journal_path is None:
            self.monitor = RiskMonitor(config)
        else:
            path = Path(journal_path)
            if self.restarted if resume is None else resume:
                self.monitor, pending = RiskMonitor.recover(config, path, durability=durability)
                self.resumed = True
            else:
                for old in (path, Path(str(path) + ".snapshot")):
                    if old.exists():
                        old.replace(str(old) + ".previous")
                self.monitor = RiskMonitor(config, journal_path=path, durability=durability)
        self._send(pending)

    # ----------------------------------------------------------------------------------------------------- inputs

    def apply(self, events: Sequence[Any]) -> list[Any]:
        """Apply a batch of bus events in order; returns the commands it sent to the OMS (usually none)."""
        commands = self.monitor.apply_many(events)
        self.monitor.hand_to_os()
        self._send(commands)
        return commands

    def kill_switch(self) -> list[Any]:
        """Cancel every open order, then halt trading; returns the commands sent."""
        commands = self.monitor.kill_switch(self._now())
        self.monitor.hand_to_os()
        self._send(commands)
        return commands

    def reset(self) -> list[Any]:
        """Re-arm the limits (drawdown and loss measured from now); lift the halt this actor sent, if any."""
        commands = self.monitor.reset(self._now())
        self.monitor.hand_to_os()
        self._send(commands)
        return commands

    def _now(self) -> int:
        return max(self.clock(), self.monitor.now)

    # ------------------------------------------------------------------------------------------------- the outbox

    def _send(self, commands: list[Any]) -> None:
        self._settle()
        if not commands:
            return
        if len(self._in_flight) >= self.window:
            oldest = self._in_flight[0][0]
            with contextlib.suppress(Exception):  # a dead OMS: _settle re-sends what failed
                ray.wait([oldest], timeout=10.0, fetch_local=False)
            self._settle()
        self._in_flight.append((getattr(self.oms, self.oms_method).remote(commands), commands))
        self.sent += 1

    def _settle(self) -> None:
        """Forget the calls that succeeded; send again the ones that failed."""
        if not self._in_flight:
            return
        refs = [ref for ref, _ in self._in_flight]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=True)
        if not ready:
            return
        done = set(ready)
        keep: deque[tuple[Any, list[Any]]] = deque()
        retry: list[list[Any]] = []
        for ref, commands in self._in_flight:
            if ref not in done:
                keep.append((ref, commands))
                continue
            try:
                ray.get(ref, timeout=0)  # ready already: this only raises the call's error, it never waits
            except Exception:  # noqa: BLE001 - the OMS died with the call in flight: send it again
                self.send_failures += 1
                retry.append(commands)
        self._in_flight = keep
        for commands in retry:
            self._in_flight.append((getattr(self.oms, self.oms_method).remote(commands), commands))
            self.resent += 1

    def flush(self) -> int:
        """Look at the calls in flight (re-sending failed ones); returns how many are still in flight."""
        self._settle()
        return len(self._in_flight)

    # ---------------------------------------------------------------------------------------------------- queries

    def exposure(self) -> dict[str, dict[str, int]]:
        """Per account: balances and position quantities (the shape of ``TradingKernel.exposure()``)."""
        return self.monitor.exposure()

    def gauges(self) -> dict[str, float]:
        """The monitor's gauges (see ``RiskMonitor.gauges``), for ``interfaces/metrics.py``."""
        return self.monitor.gauges()

    def status(self) -> dict[str, Any]:
        """The monitor's status plus the actor's: pid, restarts, sequence, commands sent and in flight."""
        self._settle()
        status = self.monitor.status()
        status.update(
            pid=os.getpid(),
            last_seq=self.monitor.seq,
            restarted=self.restarted,
            resumed=self.resumed,
            commands_sent=self.sent,
            commands_resent=self.resent,
            send_failures=self.send_failures,
            commands_in_flight=len(self._in_flight),
            oms_method=self.oms_method,
        )
        return status

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.monitor.seq

    def close(self) -> None:
        """Flush and close the journal (idempotent)."""
        self.monitor.close()


def start_risk_actor(config: RiskMonitorConfig, oms: Any, *, name: str | None = None, **options: Any) -> Any:
    """Start a :class:`RiskActor` with :data:`RISK_ACTOR_OPTIONS` (``name`` names it in Ray); returns its handle.

    ``options`` are :class:`RiskActor`'s keyword arguments (``journal_path``, ``durability``, ``oms_method``, ...).
    """
    actor_options = dict(RISK_ACTOR_OPTIONS)
    if name is not None:
        actor_options["name"] = name
    return ray.remote(RiskActor).options(**actor_options).remote(config, oms, **options)
