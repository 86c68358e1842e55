"""The running engine as every interface sees it: one command loop, one numbered event stream.

``veloz start`` has several front ends at once -- the stdio protocol (JSON lines, or the terminal view), the
HTTP/WebSocket API and the monitoring page -- and one engine. :class:`EngineService` keeps the engine
single-threaded: every front end hands its work to one queue, and the loop (the process's main thread) applies it in
arrival order between the simulated market's ticks and the live feed's batches, exactly as the stdio session did
alone::

    stdin / prompt --line--> +--------------+  events --> EventHub --> stdout (JSON lines or the terminal view)
    HTTP handlers --call---> | EngineService|                    \\--> WS clients (bounded, drop-oldest each)
    ticks, live feed ------> +--------------+                     \\--> Tracker (fills, orders, equity, rejections)

Every object the engine emits gets the next sequence number in :class:`EventHub`. A subscriber (a WebSocket client)
has a bounded queue that drops its oldest entries when full and counts them, so a slow client never slows trading:
it learns how many it missed and takes a fresh snapshot. Answers to queries (BALANCE, QUERY, STATUS) go only to who
asked.

:class:`Tracker` keeps what the API serves beyond the engine's own queries, all built from the same events: fills
(paged), finished orders (paged by time), the equity and drawdown series (balances valued at the last marks) and
recent rejections. It reads the engine's figures back exactly (:func:`~veloz_actors.fixed.parse_formatted`: a
balance above what a person may type is still a balance). It is monitoring, not trading: should it ever fail, the
failure is logged once and the engine goes on without it.
"""

from __future__ import annotations

import bisect
import collections
import concurrent.futures
import contextlib
import itertools
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from .._exceptions import EngineStopped, EngineUnavailable
from ..core.instruments import Pricing
from ..core.kernel import KernelConfig
from ..fixed import SCALE, format_decimal, parse_formatted
from .stdio import MAX_LINE, Session, closes_order, dumps, unavailable

__all__ = [
    "EngineService",
    "EventHub",
    "JsonLines",
    "Sink",
    "Subscriber",
    "Tracker",
    "Valuation",
]

_log = logging.getLogger("veloz.engine")
_EOF = object()
_STOP = object()
_SIDE_FEED_SECONDS = 0.05  # how often a side feed (the bus, a live market) is polled while no command comes in
_EQUITY_SECONDS = 1.0  # the equity series' sampling period (and on every account change)
_SIGNAL_SECONDS = 0.25  # the longest the loop waits before it looks whether SIGINT or SIGTERM came


class Sink(Protocol):
    """Where the stdio session's output goes: JSON lines on stdout, or the terminal view."""

    def write(self, objects: list[dict[str, Any]], *, reply: bool) -> None:
        """``objects`` in order; ``reply`` is True for the answer to a line this session typed."""
        ...


class JsonLines:
    """The JSON protocol on a byte stream, byte for byte what the stdio session always printed."""

    def __init__(self, out: IO[bytes], *, market: bool = True) -> None:
        self.out = out
        self.market = market

    def write(self, objects: list[dict[str, Any]], *, reply: bool) -> None:
        if not self.market:
            objects = [o for o in objects if o.get("type") != "market"]
        if objects:
            self.out.write(b"".join(dumps(o) + b"\n" for o in objects))
            self.out.flush()


# ---------------------------------------------------------------------------------------------------- the hub


class Subscriber:
    """One reader of the event stream: a bounded queue that drops its oldest entries when full and counts them.

    ``notify`` (called on the engine thread after each batch) wakes the reader; it must not block.
    """

    def __init__(self, hub: EventHub, maxsize: int, notify: Callable[[], None] | None) -> None:
        if maxsize < 1:
            raise ValueError(f"a subscriber's queue holds at least one event, got {maxsize}")
        self.hub = hub
        self.maxsize = maxsize
        self.notify = notify
        self._items: collections.deque[tuple[int, dict[str, Any]]] = collections.deque()
        self._lock = threading.Lock()
        self.dropped = 0  # since the reader last looked
        self.dropped_total = 0
        self.delivered = 0

    def _offer(self, items: list[tuple[int, dict[str, Any]]]) -> None:
        with self._lock:
            queue_ = self._items
            over = len(queue_) + len(items) - self.maxsize
            if over > 0:
                if over >= len(queue_):
                    lost = len(queue_) + (len(items) - self.maxsize)
                    queue_.clear()
                    items = items[-self.maxsize :]
                else:
                    lost = over
                    for _ in range(over):
                        queue_.popleft()
                self.dropped += lost
                self.dropped_total += lost
            queue_.extend(items)
        if self.notify is not None:
            self.notify()

    def take(self, limit: int = 10_000) -> tuple[list[tuple[int, dict[str, Any]]], int]:
        """The queued (seq, event) pairs (at most ``limit``) and how many were dropped since the last take."""
        with self._lock:
            n = min(limit, len(self._items))
            items = [self._items.popleft() for _ in range(n)]
            dropped, self.dropped = self.dropped, 0
        self.delivered += len(items)
        return items, dropped

    def close(self) -> None:
        self.hub.unsubscribe(self)


class EventHub:
    """Numbers every event and hands it to each subscriber. ``publish`` runs on the engine thread only."""

    def __init__(self) -> None:
        self.seq = 0
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, maxsize: int = 10_000, notify: Callable[[], None] | None = None) -> Subscriber:
        sub = Subscriber(self, maxsize, notify)
        with self._lock:
            self._subscribers = [*self._subscribers, sub]
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers = [s for s in self._subscribers if s is not sub]

    def publish(self, objects: list[dict[str, Any]]) -> None:
        if not objects:
            return
        first = self.seq + 1
        self.seq += len(objects)
        numbered = list(zip(range(first, self.seq + 1), objects, strict=True))
        for sub in self._subscribers:  # a copy-on-write list: no lock on the hot path
            sub._offer(numbered)


# ------------------------------------------------------------------------------------------------ the tracker


@dataclass(frozen=True)
class Valuation:
    """How balances become equity, by the kernel's rule (:class:`~veloz_actors.core.instruments.Pricing`, which the
    risk monitor shares): the valuation asset at 1, another asset at the mark of the first instrument quoting it in
    the valuation asset that has one. An asset no instrument values is left out, as they leave it out, and named."""

    pricing: Pricing

    @classmethod
    def of(cls, config: KernelConfig) -> Valuation:
        return cls(Pricing(config.instruments, config.valuation_asset))

    @property
    def asset(self) -> str:
        return self.pricing.asset

    def equity(self, balances: dict[str, tuple[int, int]], marks: dict[str, int]) -> tuple[int, bool, list[str]]:
        """Every balance valued at the marks, whether it is complete, the assets left out (:meth:`Pricing.value`)."""
        return self.pricing.value(balances, marks)


@dataclass
class Tracker:
    """What the API serves beyond the engine's queries, built from the emitted events (engine thread only)."""

    valuation: Valuation
    max_fills: int = 1_000_000
    max_orders: int = 1_000_000
    max_points: int = 100_000
    max_rejections: int = 200
    fills: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)
    orders: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)  # finished, by time
    rejections: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)
    equity: collections.deque[tuple[int, int, int]] = field(default_factory=collections.deque)  # (ts, equity, peak)
    balances: dict[str, tuple[int, int]] = field(default_factory=dict)
    marks: dict[str, int] = field(default_factory=dict)
    peak: int = 0
    _dirty: bool = False
    _last_sample: int = 0

    def start(self, balances: dict[str, tuple[int, int]], marks: dict[str, str], ts: int) -> None:
        """Begin from the engine's balances and its reference prices (``marks``: STATUS's decimal strings)."""
        self.balances = dict(balances)
        self.marks.update({s: parse_formatted(p) for s, p in marks.items() if p and p != "0"})
        self.sample(ts, force=True)

    def observe(self, objects: Iterable[dict[str, Any]]) -> None:
        for obj in objects:
            kind = obj.get("type")
            if kind == "market":
                if obj.get("kind") == "book_top":
                    bid, ask = obj.get("bid"), obj.get("ask")
                    if bid and ask and bid != "0" and ask != "0":
                        self.marks[obj["symbol"]] = (parse_formatted(bid) + parse_formatted(ask)) // 2
                elif obj.get("kind") == "trade":
                    self.marks[obj["symbol"]] = parse_formatted(obj["price"])
            elif kind == "fill":
                _push_in_time(self.fills, obj, self.max_fills)
                self.marks.setdefault(obj["symbol"], parse_formatted(obj["price"]))
            elif kind == "order_update":
                status = obj.get("status")
                if closes_order(obj):
                    _push_in_time(self.orders, obj, self.max_orders)
                if status in ("REJECTED", "CANCEL_REJECTED"):
                    _push(self.rejections, obj, self.max_rejections)
            elif kind == "account":
                self.balances = {
                    asset: (parse_formatted(b["free"]), parse_formatted(b["locked"]))
                    for asset, b in obj["balances"].items()
                }
                self._dirty = True
            elif kind == "position":
                mark = obj.get("mark_price")
                if mark and mark != "0" and obj.get("symbol"):
                    self.marks[obj["symbol"]] = parse_formatted(mark)

    def sample(self, ts: int, *, force: bool = False) -> None:
        """Add an equity point when balances changed, or once a period (marks move)."""
        if not (force or self._dirty or ts - self._last_sample >= _EQUITY_SECONDS * 1e9):
            return
        value = self.valuation.equity(self.balances, self.marks)[0]
        if self.equity and self.equity[-1][1] == value and not self._dirty and not force:
            self._last_sample = ts
            return
        self.peak = max(self.peak, value)
        _push(self.equity, (ts, value, self.peak), self.max_points)
        self._dirty = False
        self._last_sample = ts

    def equity_now(self) -> dict[str, Any]:
        value, complete, unvalued = self.valuation.equity(self.balances, self.marks)
        peak = max(self.peak, value)
        return {
            "asset": self.valuation.asset,
            "equity": format_decimal(value),
            "peak": format_decimal(peak),
            "drawdown": _drawdown(value, peak),
            "complete": complete,
            "unvalued": unvalued,
        }

    def series(self, since: int = 0, limit: int = 5_000) -> list[dict[str, Any]]:
        """The equity and drawdown series from ``since`` (ns), evenly thinned to at most ``limit`` points; each
        point's drawdown is from the peak the engine had reached when it was sampled (not the window's own)."""
        points = [p for p in self.equity if p[0] >= since]
        if len(points) > limit > 1:
            step = (len(points) - 1) / (limit - 1)
            points = [points[round(i * step)] for i in range(limit)]
        return [
            {"ts": ts, "equity": format_decimal(value), "drawdown": _drawdown(value, peak)}
            for ts, value, peak in points
        ]


def _last(store: collections.deque[Any], n: int) -> list[Any]:
    """The newest ``n`` items, oldest first, without copying the whole store."""
    return list(itertools.islice(reversed(store), n))[::-1]


def _push(store: collections.deque[Any], item: Any, limit: int) -> None:
    store.append(item)
    if len(store) > limit:
        store.popleft()


def _push_in_time(store: collections.deque[dict[str, Any]], item: dict[str, Any], limit: int) -> None:
    """:func:`_push`, keeping ``store`` in time order: the actor engine's fills may arrive slightly out of it, and the
    API pages these stores by time (a row out of order would be skipped or served twice)."""
    ts = item["ts"]
    if store and store[-1]["ts"] > ts:
        store.insert(bisect.bisect_right(store, ts, key=_ts), item)
    else:
        store.append(item)
    if len(store) > limit:
        store.popleft()


def _ts(row: dict[str, Any]) -> int:
    return row["ts"]  # type: ignore[no-any-return]


def _drawdown(value: int, peak: int) -> str:
    """The fall from the peak as a fraction (exact decimal string, 8 places)."""
    if peak <= 0 or value >= peak:
        return "0"
    return format_decimal((peak - value) * SCALE // peak)


# ---------------------------------------------------------------------------------------------- the service


class EngineService:
    """One engine, many front ends. :meth:`run` is the engine loop (on the calling thread, usually the main one);
    :meth:`call` runs a function on it from any other thread and returns its result.

    ``tick`` drives the simulated market every ``tick_ms``; ``side_feed`` (polled between commands) returns more
    engine events (the bus of the actor engine, a live market's batches). Both go through the session's formatter.
    """

    def __init__(
        self,
        session: Session,
        *,
        tick: Callable[[int], list[Any]] | None = None,
        tick_ms: int = 250,
        side_feed: Callable[[], list[Any]] | None = None,
        valuation: Valuation | None = None,
        clock: Callable[[], int] = time.time_ns,
        halt: Callable[[], list[Any]] | None = None,
        resume: Callable[[], list[Any]] | None = None,
        mode: str = "sim",
    ) -> None:
        self.session = session
        self.tick = tick
        self.tick_ms = tick_ms
        self.side_feed = side_feed
        self.clock = clock
        self.hub = EventHub()
        self.tracker = Tracker(valuation or Valuation(Pricing((), "USDT")))
        self.sink: Sink | None = None
        self.mode = mode
        self.started_ns = 0
        self.turned = 0.0  # time.monotonic() of the engine loop's last turn (at least every _SIGNAL_SECONDS when well)
        self.urls: dict[str, str] = {}
        self._halt = halt
        self._resume = resume
        self._inbox: queue.Queue[Any] = queue.Queue(maxsize=4096)  # bounded: a flood of input waits for the engine
        self._stop = threading.Event()
        self._signal_handlers: dict[int, Any] = {}  # what SIGINT and SIGTERM did before stop_on_signals()
        self._signalled = False  # SIGINT or SIGTERM came: set by the handler alone, read by the loop
        self.tracker_failures = 0

    # ---------------------------------------------------------------------------------- from other threads

    def submit_line(self, line: str) -> None:
        """A line typed at the stdio session (its answer goes to the sink). Blocks while the inbox is full."""
        while not self._stop.is_set():
            try:
                self._inbox.put(("line", line), timeout=0.25)
                return
            except queue.Full:
                continue

    def end_of_input(self) -> None:
        """The stdio session's input ended: stop once the lines before it are applied."""
        with contextlib.suppress(queue.Full):
            self._inbox.put(_EOF, timeout=5.0)

    def call(self, fn: Callable[[EngineService], Any], timeout: float = 30.0) -> Any:
        """Run ``fn(service)`` on the engine thread and return its result (or raise its exception)."""
        future = self.call_async(fn)
        return future.result(timeout=timeout)

    def call_async(self, fn: Callable[[EngineService], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self._stop.is_set():
            future.set_exception(EngineUnavailable("the engine is stopping"))
            return future
        try:
            self._inbox.put(("call", fn, future), timeout=5.0)
        except queue.Full:
            future.set_exception(EngineUnavailable("the engine's inbox is full: try again"))
        return future

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._inbox.put_nowait(_STOP)

    def stop_on_signals(self) -> None:
        """From now until the engine loop ends, SIGINT and SIGTERM stop it (when called on the main thread: only it
        may install handlers). Call it before any front end can be used: a Ctrl-C at the first prompt, or a signal
        that comes before :meth:`run` starts, then stops the engine cleanly instead of raising ``KeyboardInterrupt``
        wherever the main thread happens to be. :meth:`run` calls it too (idempotent)."""
        if self._signal_handlers or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._signal_handlers[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        """Only a flag, which the loop reads at its next turn (within ``_SIGNAL_SECONDS``). Python runs a handler on
        the main thread between two bytecodes, maybe while the loop itself holds the inbox's lock (inside
        ``Queue.get``) or the stop event's: taking either here, as :meth:`stop` does, would wait for ever."""
        self._signalled = True

    def restore_signals(self) -> None:
        """Give SIGINT and SIGTERM back the handlers they had before :meth:`stop_on_signals` (idempotent)."""
        handlers, self._signal_handlers = self._signal_handlers, {}
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set() or self._signalled

    # ------------------------------------------------------------------------------- on the engine thread

    def emit(self, objects: list[dict[str, Any]], *, reply: list[dict[str, Any]] | None = None) -> None:
        """Publish engine events (numbered, to every subscriber and the sink); ``reply`` objects (the answer to a
        stdio line, which may include that line's events) go to the sink only."""
        if objects:
            self._track(self.tracker.observe, objects)
            self.hub.publish(objects)
        sink = self.sink
        if sink is None:
            return
        if reply is not None:
            sink.write(reply, reply=True)
        elif objects:
            sink.write(objects, reply=False)

    def apply(self, command: Any) -> list[dict[str, Any]]:
        """Apply one command message (the session's formatter turns its events into objects); publish them."""
        objects = self.session.events(self.session.backend.submit(command))
        self.emit(objects)
        return objects

    def halt(self) -> list[dict[str, Any]]:
        """The kill switch: cancel every open order, then halt risk-increasing orders until :meth:`resume`."""
        if self._halt is None:
            raise EngineUnavailable("this engine has no kill switch")
        objects = self.session.events(self._halt())
        self.emit(objects)
        return objects

    def resume(self) -> list[dict[str, Any]]:
        if self._resume is None:
            raise EngineUnavailable("this engine has no kill switch to reset")
        objects = self.session.events(self._resume())
        self.emit(objects)
        return objects

    def snapshot(self) -> dict[str, Any]:
        """Everything a new watcher needs, as of event number ``seq``: the next event it sees is ``seq + 1``."""
        backend = self.session.backend
        session = self.session
        ts = session.now()
        balances = backend.balances()
        return {
            "type": "snapshot",
            "seq": self.hub.seq,
            "ts": ts,
            "mode": self.mode,
            "balances": {
                a: {"free": format_decimal(f), "locked": format_decimal(lk)} for a, (f, lk) in balances.items()
            },
            "positions": [p for p in session._request("POSITIONS", None, ts) if p.get("symbol")],
            "open_orders": session._request("QUERY", None, ts)[0]["orders"],
            "fills": _last(self.tracker.fills, 50),
            "rejections": _last(self.tracker.rejections, 20),
            "equity": self.tracker.equity_now(),
            "marks": {s: format_decimal(p) for s, p in sorted(self.tracker.marks.items())},
        }

    def run(self, *, install_signals: bool = True) -> int:
        """The engine loop: until end of input, QUIT, :meth:`stop` or SIGINT/SIGTERM (``install_signals``, or
        :meth:`stop_on_signals` before). Returns the exit code; the signals' handlers are restored as the loop ends.

        An engine that does not answer (an actor restarting) is said (``ENGINE_UNAVAILABLE``) and waited for; one
        that stopped elsewhere (``veloz stop``, another handle) never comes back: its :class:`EngineStopped` ends the
        loop and is raised once the session is closed."""
        if install_signals:
            self.stop_on_signals()
        session = self.session
        interval = self.tick_ms * 1_000_000
        next_tick = self.clock() if self.tick is not None else None
        next_side_poll = 0.0
        self.started_ns = self.clock()
        status = session.backend.status()
        references = status.get("reference_prices") or {}  # decimal strings, as STATUS prints them
        self._track(self.tracker.start, session.backend.balances(), references, self.started_ns)
        try:
            self.emit([], reply=[{"type": "status", "ts": session.now(), **status, "state": "started"}])
            while not self.stopping and not session.closed:
                self.turned = time.monotonic()
                if next_tick is not None and self.clock() >= next_tick:
                    next_tick += interval
                    try:
                        self.emit(session.events(self.tick(session.now())))  # type: ignore[misc]
                    except EngineStopped:
                        raise
                    except (EngineUnavailable, TimeoutError) as exc:  # an actor restarting: the next step comes
                        self.emit([unavailable(exc, session.now())])
                    continue
                timeout = _SIGNAL_SECONDS
                if next_tick is not None:
                    timeout = min(timeout, max(0.0, (next_tick - self.clock()) / 1e9))
                if self.side_feed is not None:
                    now = time.monotonic()
                    if now >= next_side_poll:  # at most one poll per period, however fast commands come in
                        next_side_poll = now + _SIDE_FEED_SECONDS
                        try:
                            self.emit(session.events(self.side_feed()))
                        except EngineStopped:
                            raise
                        except (EngineUnavailable, TimeoutError) as exc:
                            self.emit([unavailable(exc, session.now())])
                    timeout = min(timeout, max(0.0, next_side_poll - now))
                self._track(self.tracker.sample, self.clock())
                try:
                    item = self._inbox.get(timeout=timeout)
                except queue.Empty:
                    continue
                if item is _EOF or item is _STOP:
                    break
                self._handle(item)
        except BrokenPipeError:
            pass
        finally:
            self._stop.set()
            self._drain_calls()
            close = getattr(session.backend, "close", None)
            try:
                if close is not None:
                    close()  # a Ctrl-C meanwhile only sets the flag: the stop goes to its end (the actors, the journal)
            finally:
                self.restore_signals()
            with contextlib.suppress(BrokenPipeError, ValueError):
                if self.sink is not None:
                    self.sink.write([{"type": "status", "ts": session.now(), "state": "stopped"}], reply=True)
        return 0

    def _track(self, method: Callable[..., None], *args: Any) -> None:
        """Run a :class:`Tracker` method: monitoring never stops trading. A failure is counted (``tracker_failures``)
        and logged the first time only (ERROR, so on stderr too), and the engine goes on; the API's fills, orders
        and equity may then be incomplete."""
        try:
            method(*args)
        except Exception:
            self.tracker_failures += 1
            if self.tracker_failures == 1:
                _log.exception(
                    "the API's tracker failed (the engine goes on; its fills, orders and equity views may be "
                    "incomplete; later failures are not logged)"
                )

    def _handle(self, item: tuple[Any, ...]) -> None:
        if item[0] == "line":
            objects, events = self.session.handle(item[1])
            self.emit(objects if events else [], reply=objects)
            return
        _, fn, future = item
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn(self))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, the engine goes on
            future.set_exception(exc)

    def _drain_calls(self) -> None:
        """Calls still queued when the loop ends are answered: the engine is stopping."""
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, tuple) and item[0] == "call":
                future = item[2]
                if future.set_running_or_notify_cancel():
                    future.set_exception(EngineUnavailable("the engine stopped"))


def read_lines(service: EngineService, stdin: IO[str]) -> threading.Thread:
    """Feed ``stdin``'s lines to the service on a daemon thread; end of input stops it.

    Lines are read as bytes when the stream has them: bytes that are not UTF-8 become U+FFFD (the session refuses
    such a line and goes on), and a line longer than :data:`~veloz_actors.interfaces.stdio.MAX_LINE` is read in
    bounded pieces and handed on cut (the session refuses it), so no input can hold the reader or the engine.
    """

    def read() -> None:
        for line in _lines(stdin):
            if service.stopping:
                return
            service.submit_line(line)
        service.end_of_input()

    thread = threading.Thread(target=read, name="veloz-stdin", daemon=True)
    thread.start()
    return thread


def _lines(stdin: IO[str]) -> Iterator[str]:
    source = getattr(stdin, "buffer", None)
    if source is None:  # a text stream with no bytes under it (a test's StringIO)
        yield from stdin
        return
    limit = MAX_LINE + 2  # a command, its line end and one more: more than that is too long
    while True:
        raw = source.readline(limit)
        if not raw:
            return
        text = raw.decode("utf-8", "replace")
        if len(raw) == limit and not raw.endswith(b"\n"):
            while True:  # the rest of the over-long line, dropped piece by piece
                more = source.readline(1 << 16)
                if not more or more.endswith(b"\n"):
                    break
            # what is handed on is refused as too long, never parsed as the command its first bytes might spell
            text = text.ljust(MAX_LINE + 1, "\ufffd")
        yield text
