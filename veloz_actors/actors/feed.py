"""The market feed actor of one venue: the simulated market's clock and recorded market data, to the venue actors.

- The clock: a step (:meth:`MarketFeedActor.tick`) goes to every venue actor's ``clock``; their market makers
  requote, the fills of resting orders go to the OMS as execution reports and the new tops of book to the bus and the
  OMS. A driver (``veloz start --local``, the Python handle) steps it; an engine without one (detached on a cluster)
  lets the feed step it every ``tick_ms`` (``run_clock``), one-way.
- A recorded capture (``actors.replay``), paced by :class:`~veloz_actors.data.replay.ReplayPacer` at its recorded
  receive times and ``speed``, in batches each venue actor acknowledges; the offset reached is kept beside the
  journals, so a feed that Ray restarted resumes after the last batch delivered. Optionally the OMS takes the
  recorded prices as reference prices.
- Live market data from an exchange (``spec.market_data``: Binance): the market-data client runs on its own event
  loop thread (:class:`~veloz_actors.venues.binance.market_data.MarketDataThread`) and hands each batch it read to a
  bounded queue; a delivery thread takes them in order to the venue actors exactly as a replayed batch (each shard
  acknowledges, a restarting shard gets it again), the latest top of book of each symbol to the OMS as its reference
  prices, and connection changes (:class:`~veloz_actors.messages.VenueConnection`) to the bus. A queue that stays
  full for seconds makes the client drop that batch and resync every book (counted in its status): a book
  downstream is never wrong, though trades in the dropped batch never reach the paper venues. A shard that fails
  to apply a batch (its ``apply`` raised) may have missed some of its diffs: the client resyncs that shard's
  symbols' books (``resync_requests`` in its status), so its paper venues trade against the live book again; so
  does a paper venue that failed on one event (the shard says which in its answer).
- Recorded events or synthetic tops handed in by a client (:meth:`replay`, :meth:`synthetic`: tests, benchmarks).

A replayed file is loaded at once, but neither it nor the live client sends anything before
:meth:`~MarketFeedActor.start_market`: the supervisor's, once every actor is up and the live strategies subscribed, or
with ``spec.hold_market`` the client's, once it subscribed itself (``veloz start``'s session). At speed 0 a whole file
goes in about a second, and a book's first sync comes about a second after connecting: whoever subscribed later would
miss them. A feed Ray restarted starts again at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError

from ..logs import log_file_status
from ..messages import Error
from .batches import MarketBatch
from .spec import CallWindow, EngineSpec, MergingWindow, recovering, start_actor_process

__all__ = ["MarketFeedActor"]

_log = logging.getLogger("veloz.feed")

_LIVE_QUEUE = 10_000  # batches read from the exchange and not yet delivered
_LIVE_COALESCE = 5_000  # events per delivery at most, when batches queued up
_NOTICES = ("VenueConnection",)
_PRICE_KINDS = ("BookTop", "Trade")  # the OMS's reference prices follow the latest of either
_SINK_WAIT_SECONDS = 5.0  # the longest the market-data client waits for a full queue (pongs stop meanwhile)


class MarketFeedActor:
    """The market feed of one venue (see the module docstring)."""

    def __init__(self, spec: EngineSpec, oms: Any, venues: dict[str, Any], bus: Any = None) -> None:
        start_actor_process(spec.logging, "feed", rebuilt=spec.rebuilt)
        self.spec = spec
        self.oms = oms
        self.venues = venues
        self.bus = bus
        self.shard_of = spec.shard_of()
        # a client's market data to each shard, merged into fewer calls while the shard is busy (:meth:`publish`)
        self.windows = {name: MergingWindow(spec.peer_window, venue.apply) for name, venue in venues.items()}
        self.clock_windows = {name: CallWindow(spec.peer_window) for name in venues}
        self.sent = 0
        self.ticks = 0
        self.last_tick = 0
        self._stop = threading.Event()
        self._publishing = threading.Lock()  # the replay and clock threads and direct calls share the windows
        self._clock: threading.Thread | None = None
        if spec.run_clock:
            self.start_clock(spec.tick_ms)
        self.replay_state: dict[str, Any] | None = None
        self._replayer: threading.Thread | None = None
        self._replay_go = threading.Event()
        if spec.replay is not None:
            self.replay_state = {
                "path": spec.replay["path"], "started": False, "sent": 0, "total": None, "done": False, "error": None
            }  # fmt: skip
            self._replayer = threading.Thread(
                target=self._run_replay, args=(spec.replay,), name="veloz-replay", daemon=True
            )
            self._replayer.start()
        self.live: Any = None  # the market-data client's thread
        self.live_queue: queue.Queue[MarketBatch] = queue.Queue(maxsize=_LIVE_QUEUE)
        self.live_batches = 0
        self.live_error: str | None = None
        self.apply_errors = 0  # market batches a venue shard failed to apply (said on the bus, skipped)
        self.oms_window = CallWindow(spec.peer_window)
        self.bus_window = CallWindow(spec.peer_window)
        self._deliverer: threading.Thread | None = None
        self._market_started = False
        if recovering(spec):  # it was started before this restart
            self.start_market()

    # ------------------------------------------------------------------------------------------------------ clock

    def tick(self, ts: int) -> dict[str, int]:
        """One step of the simulated market on every venue actor; returns each shard's report batch number (0: none),
        which the OMS's :meth:`~veloz_actors.actors.oms.OmsActor.applied_batches` reaches once it applied it."""
        if ts <= self.last_tick:
            return {}
        self.last_tick = ts
        with self._publishing:
            self._send_merged()  # the step comes after the market data published before it
        refs = {shard: venue.clock.remote(ts) for shard, venue in self.venues.items()}
        self.ticks += 1
        marks: dict[str, int] = {}
        for shard, ref in refs.items():
            with contextlib.suppress(Exception):  # a venue restarting: it misses this step, the next one comes
                marks[shard] = ray.get(ref, timeout=30.0)
        return marks

    def start_clock(self, tick_ms: int) -> bool:
        if self._clock is not None:
            return False
        self._clock = threading.Thread(target=self._run_clock, args=(tick_ms,), name="veloz-sim-clock", daemon=True)
        self._clock.start()
        return True

    def _run_clock(self, tick_ms: int) -> None:
        interval = tick_ms / 1000.0
        while not self._stop.is_set():
            ts = time.time_ns()
            with self._publishing:
                if ts > self.last_tick:
                    self.last_tick = ts
                    self._send_merged()
                    for shard, venue in self.venues.items():
                        self.clock_windows[shard].send(venue.clock, ts)
                    self.ticks += 1
            self._stop.wait(interval)

    # ---------------------------------------------------------------------------------------------- recorded file

    def _offset_path(self) -> Path | None:
        path = self.spec.journal_path("feed")
        return None if path is None else path.with_suffix(".replay-offset")

    def start_market(self) -> bool:
        """Let the replay send (its file may still be loading) and start the live client (see the module docstring);
        idempotent. False when this engine has neither."""
        if self.replay_state is not None:
            self.replay_state["started"] = True
            self._replay_go.set()
        if self.spec.market_data is not None and not self._market_started:
            self._market_started = True
            self._start_live(self.spec.market_data)
        return self.replay_state is not None or self.spec.market_data is not None

    def _run_replay(self, settings: dict[str, Any]) -> None:
        """Replay a recorded capture paced by its receive times (see the module docstring)."""
        from ..data.loaders import load_market_events  # the loaders are only needed by a replaying feed
        from ..data.replay import ReplayPacer

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
        while not self._replay_go.wait(0.25):
            if self._stop.is_set():
                return
        began = time.perf_counter()
        offset_path = self._offset_path()
        start = 0
        if offset_path is not None and offset_path.exists() and recovering(self.spec):  # a fresh engine starts over
            with contextlib.suppress(ValueError, OSError):
                start = min(int(offset_path.read_text()), len(mine))
        state["sent"] = start
        pacer = ReplayPacer(
            mine, speed=float(settings.get("speed", 1.0)), batch=int(settings.get("batch", 1000)), start=start
        )
        to_oms = bool(settings.get("reference_prices", False))
        i = start
        for batch in pacer.batches(self._stop.wait):
            if self._stop.is_set():  # at speed 0 the pacer never waits, so it never sees a stop itself
                break
            if not self._deliver(MarketBatch.from_events(batch)):
                break
            if to_oms:
                with contextlib.suppress(Exception):  # the OMS is restarting: reference prices move on the next batch
                    ray.get(self.oms.market.remote(batch), timeout=30.0)
            i += len(batch)
            state["sent"] = i
            if offset_path is not None:
                tmp = offset_path.with_suffix(".tmp")
                tmp.write_text(str(i))
                os.replace(tmp, offset_path)
        state["done"] = i >= len(mine)
        state["replay_seconds"] = round(time.perf_counter() - began, 3)

    def _deliver(self, batch: MarketBatch, *, live: bool = False) -> bool:
        """Hand one columnar batch to its venue shards and wait until each took it. A shard that is restarting gets
        it again, so a restart of a venue actor (or of this feed, which resumes at the offset after the last batch
        delivered) loses nothing and repeats at most one batch; a shard still busy with it is waited for, never sent
        it twice. A shard whose ``apply`` raised would raise again on the same events: that is said (an ``Error`` on
        the bus, a log line) and the feed goes on; for ``live`` events the client resyncs that shard's books, and the
        books of the symbols whose paper venue failed on an event (the shard's answer; their ``Error`` went to the
        OMS). False when the feed is stopping."""
        pending = batch.split(self.shard_of)
        refs = {shard: self.venues[shard].apply.remote(events) for shard, events in pending.items()}
        while refs:
            for shard, ref in list(refs.items()):
                try:
                    failed = ray.get(ref, timeout=30.0)
                    if failed and live and self.live is not None:
                        self.live.resync(failed)  # their venues may lack what the events carried
                except GetTimeoutError:
                    continue  # still applying it: wait for the same call
                except RayTaskError as exc:  # apply raised: the same events would raise again
                    self._apply_failed(shard, pending[shard], exc, live=live)
                except RayError:  # the actor dead, restarting or unreachable (RayActorError): it gets the batch again
                    if self._stop.wait(0.2):
                        return False
                    refs[shard] = self.venues[shard].apply.remote(pending[shard])
                    continue
                del refs[shard]
            if refs and self._stop.is_set():
                return False
        with self._publishing:
            self.sent += len(batch)
        return True

    def _apply_failed(self, shard: str, events: MarketBatch, exc: RayTaskError, *, live: bool) -> None:
        """Say that ``shard`` raised applying ``events``. Its books may now lack some of their diffs (the next
        diff would show the gap and leave them unsynced, and nothing would sync them again before the client
        reconnects): for live events the client resyncs the books of that shard's symbols, and only those."""
        self.apply_errors += 1
        symbols = sorted(symbol for symbol, of in self.shard_of.items() if of == shard)
        resync = live and self.live is not None
        if resync:
            self.live.resync(symbols)
        cause = exc.cause if exc.cause is not None else exc
        message = (
            f"venue shard {shard!r} ({', '.join(symbols)}) failed to apply {len(events)} market events, which are "
            f"skipped{'; their books are synced again' if resync else ''}: {type(cause).__name__}: {cause}"
        )
        _log.error(message)
        if self.bus is not None:
            self.bus.publish.remote([Error(code="MARKET_APPLY_FAILED", message=message, ts=time.time_ns())])

    # -------------------------------------------------------------------------------------------- live market data

    def _start_live(self, settings: dict[str, Any]) -> None:
        from ..venues.binance.market_data import MarketDataSettings, MarketDataThread

        self._deliverer = threading.Thread(target=self._run_live_delivery, name="veloz-live-delivery", daemon=True)
        self._deliverer.start()
        # set before it starts: its first batch (a book reset per symbol) may reach the delivery thread at once
        self.live = MarketDataThread(MarketDataSettings(**settings), self._on_live, columnar=True)
        self.live.start()

    def _on_live(self, batch: MarketBatch) -> None:
        """The client's sink (its loop thread): queue the batch in order. A queue still full after a few seconds
        (venue actors far behind) is an error: the client drops the batch, counts it and resyncs every book, so no
        book downstream is ever wrong."""
        if not self._stop.is_set():
            self.live_queue.put(batch, timeout=_SINK_WAIT_SECONDS)

    def _run_live_delivery(self) -> None:
        """Deliver what the client read, in order; the batches that queued up meanwhile go together in one delivery,
        so the cost of a round trip to the venue actors is shared by more events the more the feed lags."""
        live_queue = self.live_queue
        while not self._stop.is_set():
            try:
                batch = live_queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if len(batch) < _LIVE_COALESCE and not live_queue.empty():
                parts, size = [batch], len(batch)
                while size < _LIVE_COALESCE:
                    try:
                        parts.append(live_queue.get_nowait())
                    except queue.Empty:
                        break
                    size += len(parts[-1])
                batch = MarketBatch.concat(parts)
            try:
                self._deliver_live(batch)
            except Exception as exc:  # noqa: BLE001 - reported; the feed goes on with the next batch
                self.live_error = f"{type(exc).__name__}: {exc}"

    def _deliver_live(self, events: MarketBatch) -> None:
        """One delivery of live events: the market events to the venue shards (a kline rides along at its place; a
        symbol unsubscribed a moment ago is left out), connection notices to the bus."""
        notices = events.select(_NOTICES).events() if events.objects else []
        batch = events.select(_NOTICES, exclude=True) if notices else events
        if len(batch):
            if not self._deliver(batch, live=True):
                return
            times = batch.times()
            if times is not None:  # receive -> publish (the venue actors took it and forwarded it to the bus)
                self.live.record_publish(times)
        self.live_batches += 1
        tops = [top for symbol, top in batch.latest(_PRICE_KINDS).items() if symbol in self.shard_of]
        if tops:  # the OMS's reference prices (risk price band, marks) follow the live market
            self.oms_window.send(self.oms.market, tops, drop=True)
        if notices and self.bus is not None:
            self.bus_window.send(self.bus.publish, notices)

    # ------------------------------------------------------------------------------------- client-driven market data

    def publish(self, batch: Sequence[Any] | MarketBatch) -> int:
        """Send one batch of market events to the venue shards of their symbols (waiting when a shard lags)."""
        count = self._publish(batch)
        with self._publishing:
            self._send_merged()
        return count

    def _publish(self, batch: Sequence[Any] | MarketBatch) -> int:
        """:meth:`publish` within a stream of batches: a busy shard gets this one with the next (in one call), so
        the stream must end with :meth:`flush` (or a clock step, which sends what waits first)."""
        with self._publishing:
            if type(batch) is not MarketBatch:
                batch = MarketBatch.from_events(batch)
            for shard, events in batch.split(self.shard_of).items():
                self.windows[shard].send(events)
            self.sent += len(batch)
            return len(batch)

    def _send_merged(self) -> None:
        """Send every shard what waits to be merged (the caller holds ``_publishing``)."""
        for window in self.windows.values():
            window.flush()

    def replay(self, events: Sequence[Any], batch_size: int = 1000, *, to_oms: bool = False) -> int:
        """Replay recorded market events in batches of ``batch_size`` (optionally also as reference prices)."""
        for start in range(0, len(events), batch_size):
            batch = events[start : start + batch_size]
            self._publish(batch)
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
            walk = mid + np.cumsum(rng.integers(-2, 3, n)) * 1_000_000
            mid = int(walk[-1])
            now = time.time_ns()
            columns = {
                "symbol": np.arange(sent, sent + n) % len(symbols),
                "bid_price": walk - 1_000_000,
                "ask_price": walk + 1_000_000,
                "bid_qty": 50_000_000,
                "ask_qty": 50_000_000,
                "update_id": np.arange(sent, sent + n),
                "ts_event": now,
                "ts_recv": now,
            }
            self._publish(MarketBatch.of_tops(symbols, columns))
            sent += n
        return self.flush()

    def flush(self) -> int:
        with self._publishing:
            for window in self.windows.values():
                window.wait_all(60.0)
            return self.sent

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "pid": os.getpid(),
            "last_seq": self.ticks,
            "sent": self.sent,
            "merged_batches": sum(window.merged for window in self.windows.values()),
            "clock": self._clock is not None,
            "apply_errors": self.apply_errors,
            "log": log_file_status(),
        }
        if self.replay_state is not None:
            status["replay"] = dict(self.replay_state)
        if self.live is not None:
            status["market_data"] = {
                **self.live.status(),
                "delivered_batches": self.live_batches,
                "queued_batches": self.live_queue.qsize(),
                "delivery_error": self.live_error,
            }
        return status

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.ticks

    def close(self) -> None:
        self._stop.set()
        if self.live is not None:
            self.live.close()
        for thread in (self._clock, self._replayer, self._deliverer):
            if thread is not None:
                thread.join(timeout=2.0)
