"""The risk actor: engine-wide post-trade risk off the order path, a thin shell over
:class:`~veloz_actors.core.risk_monitor.RiskMonitor`; and :class:`RiskFeed`, the OMS's side of its fill stream.

Its inputs, in an engine:

- **fills, lossless, from the OMS** (:meth:`RiskActor.fills`): the OMS cuts its kernel's steps into a numbered stream
  (a segment is ``(first, last, fills)``: every fill of the kernel steps after ``first`` up to ``last``, the kernel's
  sequence numbers, the same across an OMS restart because they are its journal's line numbers). The risk actor
  applies a segment only when ``first`` is the position it has reached, journals the new position, and answers it:
  the answer is the acknowledgement. The OMS keeps every segment until it is acknowledged (at most
  :data:`FEED_LIMIT` fills; past that the oldest are dropped and counted). A segment that does not follow on is a
  gap: the risk actor asks the OMS one-way to follow from its position (:meth:`OmsActor.follow_fills`, also at every
  start of the risk actor); the OMS sends again the kept tail, or, when that tail is gone (an OMS restart, an
  overflow, a risk actor that lost journal lines), its ledger at its current position (:meth:`RiskActor.rebase`),
  which the monitor takes in place of its own. While the risk actor has not acknowledged what was sent, the OMS
  probes it about once a second with an empty segment, so a request lost while both sides restarted is made again.
  The bus plays no part: fills an OMS made just before it died never reached the bus, and a restarted bus forgets.
- **marks from the bus** (:meth:`RiskActor.apply`): tops of book, trades, mark prices; a newer mark supersedes an
  older one, so the bus drops them when the risk actor is slow (counted) and never waits on it.

Both directions are one-way (the OMS never waits on the risk actor, the risk actor never waits on the OMS), so the
two can never deadlock. Used alone (tests, tools), ``apply`` also takes fills (deduplicated by the monitor).

It sends the commands the monitor returns -- a ``HaltTrading(account_id="*")`` when an engine-wide limit is crossed, ``CancelAllOrders`` then
``HaltTrading`` for the kill switch, ``ResetCircuitBreaker`` per account after a reset -- to the OMS actor one-way::

    oms.<oms_method>.remote([command, ...])          # default: oms.submit_many.remote(commands)

The OMS method must take a list of commands and apply them in order (``OmsNode.submit_many`` does: each command goes
through ``Engine.apply`` and so through the kernel, which applies ``HaltTrading``, ``CancelAllOrders`` and
``ResetCircuitBreaker``). The call is never awaited on the caller's path; a call that failed (the OMS died with it in
flight) is sent again when the actor next looks at its outbox (each call, and ``flush()``), with every call sent after
it, in order, so the OMS ends in the state of the last command sent: the three commands are idempotent in the
kernel. At most ``window`` calls are in flight; past that the actor waits for the oldest.

With a ``journal_path``, the monitor journals what it applied. When Ray restarts the actor (or ``resume=True``: an
engine restarted over its journals, as the OMS recovers its own), it recovers from snapshot + journal and sends its
halt again if one was in force; a fresh start (``resume=False``, or the default outside a Ray restart) moves an old
journal aside to ``<journal>.previous`` and starts from the configured balances.

Use :func:`start_risk_actor` (``ray.remote`` applied here, at the edge), or ``ray.remote(RiskActor)`` with
:data:`RISK_ACTOR_OPTIONS`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ray

from ..core.journal import Durability, journal_error
from ..core.risk_monitor import RiskMonitor, RiskMonitorConfig
from ..logs import LogSettings, log_file_status
from ..messages import AccountUpdated, OrderFilled, PositionUpdated
from .spec import JOURNAL_LOCK_WAIT, reconstructed, require_journal_dir, start_actor_process

__all__ = ["FEED_LIMIT", "RISK_ACTOR_OPTIONS", "RiskActor", "RiskFeed", "risk_actor_name", "start_risk_actor"]

FEED_LIMIT = 100_000  # fills the OMS keeps for the risk actor until acknowledged; past it the oldest are dropped
_PROBE_SECONDS = 1.0  # the OMS probes a risk actor that has not acknowledged what was sent for this long
_ASK_AGAIN_SECONDS = 0.5  # the risk actor asks the OMS to follow from its position at most this often

# A plain synchronous actor: calls from one sender run in order, a retried call could reorder them, and Ray restarts
# it when it dies (it recovers from its journal).
RISK_ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": 0, "max_concurrency": 1}


def risk_actor_name(engine: str) -> str:
    """The name the risk actor is registered under, so a restarted OMS finds it again."""
    return f"veloz-risk:{engine}"


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
        follow_method: str | None = None,
        resume: bool | None = None,
        window: int = 64,
        clock: Callable[[], int] = time.time_ns,
        engine: str | None = None,
        log_settings: LogSettings | None = None,
    ) -> None:
        start_actor_process(log_settings, "risk", rebuilt=bool(resume))
        self.oms = oms
        self.oms_method = oms_method
        self.clock = clock
        self.window = window
        self.restarted = reconstructed()
        resuming = self.restarted if resume is None else resume
        if resuming and journal_path is not None and engine is not None:  # an engine's: its marker is there
            require_journal_dir(Path(journal_path).parent, "risk", engine)
        self.resumed = False
        self._in_flight: deque[tuple[Any, list[Any]]] = deque()
        self.sent = 0
        self.resent = 0
        self.send_failures = 0
        self.follow_method = follow_method
        self.segments = 0
        self.stale_segments = 0
        self.gaps = 0
        self.asks = 0
        self._asked = -math.inf
        pending: list[Any] = []
        if journal_path is None:
            self.monitor = RiskMonitor(config)
        else:
            path = Path(journal_path)
            if resuming:  # (the process this one replaces may still be exiting: wait for its journal's lock)
                self.monitor, pending = RiskMonitor.recover(config, path, durability=durability,
                                                            lock_wait=JOURNAL_LOCK_WAIT)  # fmt: skip
                self.resumed = True
            else:
                for old in (path, Path(str(path) + ".snapshot")):
                    if old.exists():
                        old.replace(str(old) + ".previous")
                self.monitor = RiskMonitor(config, journal_path=path, durability=durability)
        self._send(pending)
        self._ask()  # at every start: the OMS sends the fills after the position recovered

    # ------------------------------------------------------------------------------------------- the fill stream

    def fills(self, first: int, last: int, fills: Sequence[OrderFilled]) -> int:
        """One segment of the OMS's fill stream (see the module docstring); returns the position reached, which
        acknowledges it."""
        monitor = self.monitor
        if first == monitor.cursor:
            commands = monitor.apply_segment(last, fills)
            monitor.hand_to_os()
            self._send(commands)
            self.segments += 1
        elif last <= monitor.cursor:
            self.stale_segments += 1  # sent again, applied already
        else:
            self.gaps += 1
            self._ask()
        return monitor.cursor

    def rebase(self, position: int, accounts: Sequence[AccountUpdated], positions: Sequence[PositionUpdated]) -> int:
        """The OMS's ledger at ``position``, in place of the monitor's (the tail before it is gone); returns the
        position reached."""
        commands = self.monitor.rebase(position, accounts, positions)
        self.monitor.hand_to_os()
        self._send(commands)
        return self.monitor.cursor

    def _ask(self) -> None:
        """Ask the OMS one-way to follow from the position reached (at most every ``_ASK_AGAIN_SECONDS``: the OMS's
        probes bring the next chance)."""
        if self.follow_method is None:
            return
        now = time.monotonic()
        if now - self._asked < _ASK_AGAIN_SECONDS:
            return
        self._asked = now
        self.asks += 1
        with contextlib.suppress(Exception):  # a dead OMS: its restart probes this actor, which asks again
            me = ray.get_runtime_context().current_actor
            getattr(self.oms, self.follow_method).remote(me, self.monitor.cursor)

    # ----------------------------------------------------------------------------------------------------- inputs

    def apply(self, events: Sequence[Any]) -> list[Any]:
        """Apply a batch of bus events in order (marks; fills too when used alone, outside the fill stream); returns
        the commands it sent to the OMS (usually none)."""
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
        """Forget the calls that succeeded; send again the ones that failed, in the order they were first sent.

        A call that failed is sent again together with every call sent after it (those that went through too): the
        OMS then ends in the state of the last command sent, never of an older one (a halt whose call died with the
        OMS, re-sent alone after a reset that went through, would halt trading again). The commands are idempotent
        in the kernel, so taking one twice changes nothing. A call that succeeded is forgotten only once every call
        before it did too."""
        if not self._in_flight:
            return
        refs = [ref for ref, _ in self._in_flight]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=True)
        if not ready:
            return
        done = set(ready)
        calls = list(self._in_flight)
        failed = None
        for i, (ref, _) in enumerate(calls):
            if ref not in done:
                continue
            try:
                ray.get(ref, timeout=0)  # ready already: this only raises the call's error, it never waits
            except Exception:  # noqa: BLE001 - the OMS died with the call in flight: send it again
                self.send_failures += 1
                failed = i
                break
        if failed is not None:  # that call and every later one, again, in order, as one call
            commands = [command for _, batch in calls[failed:] for command in batch]
            calls[failed:] = [(getattr(self.oms, self.oms_method).remote(commands), commands)]
            self.resent += 1
        while calls and calls[0][0] in done:
            calls.pop(0)  # succeeded, and so did every call before it
        self._in_flight = deque(calls)

    def flush(self) -> int:
        """Look at the calls in flight (re-sending failed ones); returns how many are not settled yet (in flight,
        or succeeded after one still in flight)."""
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
            journal_error=journal_error(self.monitor.journal),
            commands_sent=self.sent,
            commands_resent=self.resent,
            send_failures=self.send_failures,
            commands_in_flight=len(self._in_flight),
            oms_method=self.oms_method,
            stream={
                "position": self.monitor.cursor,
                "segments": self.segments,
                "stale_segments": self.stale_segments,
                "gaps": self.gaps,
                "asks": self.asks,
                "rebases": self.monitor.rebases,
            },
            gauges=self.gauges(),
            log=log_file_status(),
        )
        return status

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.monitor.seq

    def close(self) -> None:
        """Flush and close the journal (idempotent)."""
        self.monitor.close()


class RiskFeed:
    """The OMS's side of the risk actor's fill stream (see the module docstring): segments kept until acknowledged,
    at most ``limit`` fills (the oldest dropped past it, counted: the risk actor then gets a rebase), at most
    ``window`` calls in flight (what does not fit waits here; the OMS never waits on the risk actor).

    Plain state plus one-way calls; the OMS calls it under its lock (from its actor thread and its flush thread).
    ``publish`` and ``follow`` (with ``rebase``) run in the actor thread, beside the kernel; ``flush`` anywhere.
    """

    def __init__(self, position: int, *, window: int = 64, limit: int = FEED_LIMIT) -> None:
        self.follower: Any = None
        self.position = position  # the last kernel step the stream has reached
        self.base = position  # the kept segments follow on from here
        self.sent_to = position  # sent up to here
        self.acknowledged: int | None = None  # the position the risk actor last answered (None: not heard yet)
        self.segments: deque[tuple[int, int, list[OrderFilled]]] = deque()
        self.kept = 0
        self.window = window
        self.limit = limit
        self.fills_sent = 0
        self.fills_resent = 0
        self.fills_dropped = 0
        self.rebases = 0
        self.probes = 0
        self.failures = 0
        self._calls: deque[Any] = deque()
        self._rebase: tuple[int, list[AccountUpdated], list[PositionUpdated]] | None = None
        self._heard = -math.inf

    def publish(self, position: int, fills: list[OrderFilled]) -> None:
        """The fills of the kernel steps after the stream's position up to ``position`` (their journal is handed
        to the OS already)."""
        if not fills:
            return  # the steps without fills fold into the next segment
        self.segments.append((self.position, position, fills))
        self.position = position
        self.kept += len(fills)
        while self.kept > self.limit:
            _, last, dropped = self.segments.popleft()
            self.kept -= len(dropped)
            self.fills_dropped += len(dropped)
            self.base = last
            self.sent_to = max(self.sent_to, last)  # unsent and gone: the risk actor sees a gap, gets a rebase

    def follow(self, follower: Any, cursor: int) -> bool:
        """The risk actor has every fill up to ``cursor`` and wants the rest: True when the kept tail starts there
        (it goes again), False when it is gone (call :meth:`rebase`)."""
        self.follower = follower
        self.acknowledged = cursor
        self._heard = time.monotonic()
        if cursor != self.base and all(last != cursor for _, last, _ in self.segments):
            return False
        self._trim(cursor)
        self.fills_resent += sum(len(f) for _, last, f in self.segments if last <= self.sent_to)
        self.sent_to = cursor
        return True

    def rebase(self, position: int, accounts: list[AccountUpdated], positions: list[PositionUpdated]) -> None:
        """Send the ledger at ``position`` (the kernel's sequence now) in place of the tail that is gone."""
        self.segments.clear()
        self.kept = 0
        self.position = self.base = self.sent_to = position
        self._rebase = (position, accounts, positions)
        self.rebases += 1

    def _trim(self, cursor: int) -> None:
        segments = self.segments
        while segments and segments[0][1] <= cursor:
            _, self.base, fills = segments.popleft()
            self.kept -= len(fills)

    def flush(self) -> None:
        """Take the risk actor's answers, then send what the window has room for (or a probe when due)."""
        follower = self.follower
        if follower is None:
            return
        self._poll()
        if len(self._calls) >= self.window:
            return
        if self._rebase is not None:
            position, accounts, positions = self._rebase
            self._rebase = None
            self._calls.append(follower.rebase.remote(position, accounts, positions))
        if self.sent_to < self.position and len(self._calls) < self.window:  # a rebase sent may have filled it
            first, sent_to = self.sent_to, self.sent_to
            fills = [f for _, last, batch in self.segments if last > sent_to for f in batch]
            self._calls.append(follower.fills.remote(first, self.position, fills))
            self.fills_sent += len(fills)
            self.sent_to = self.position
        elif not self._calls and self.acknowledged != self.sent_to and time.monotonic() - self._heard > _PROBE_SECONDS:
            self._heard = time.monotonic()
            self.probes += 1
            self._calls.append(follower.fills.remote(self.sent_to, self.sent_to, []))

    def _poll(self) -> None:
        calls = self._calls
        if not calls:
            return
        ready, _ = ray.wait(list(calls), num_returns=len(calls), timeout=0, fetch_local=True)
        if not ready:
            return
        done = set(ready)
        for ref in [r for r in calls if r in done]:
            try:
                cursor = ray.get(ref, timeout=0)  # ready already: this only raises the call's error
            except Exception:  # noqa: BLE001 - the risk actor died with it: it asks again when back
                self.failures += 1
                continue
            self.acknowledged = cursor
            self._heard = time.monotonic()
            self._trim(cursor)
        self._calls = deque(r for r in calls if r not in done)

    def status(self) -> dict[str, Any]:
        """What ``STATUS`` shows of the stream: positions, fills sent, sent again, dropped and kept, and calls."""
        return {
            "follower": self.follower is not None,
            "position": self.position,
            "sent_to": self.sent_to,
            "acknowledged": self.acknowledged,
            "fills_sent": self.fills_sent,
            "fills_resent": self.fills_resent,
            "fills_dropped": self.fills_dropped,
            "fills_kept": self.kept,
            "limit": self.limit,
            "rebases": self.rebases,
            "probes": self.probes,
            "call_failures": self.failures,
            "calls_in_flight": len(self._calls),
        }


def start_risk_actor(config: RiskMonitorConfig, oms: Any, *, name: str | None = None, **options: Any) -> Any:
    """Start a :class:`RiskActor` with :data:`RISK_ACTOR_OPTIONS` (``name`` names it in Ray); returns its handle.

    ``options`` are :class:`RiskActor`'s keyword arguments (``journal_path``, ``durability``, ``oms_method``, ...).
    """
    actor_options = dict(RISK_ACTOR_OPTIONS)
    if name is not None:
        actor_options["name"] = name
    return ray.remote(RiskActor).options(**actor_options).remote(config, oms, **options)
