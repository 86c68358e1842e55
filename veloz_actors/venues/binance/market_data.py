"""Live Binance spot market data: one combined-stream WebSocket, books kept in sync by Binance's documented procedure.

:class:`BinanceMarketData` opens one combined stream (``<stream_url>/stream?streams=...``) carrying, per symbol,
``<sym>@depth@100ms``, ``<sym>@bookTicker``, ``<sym>@trade`` and ``<sym>@kline_<interval>``, parses every frame at
the edge with :mod:`.schemas`, keeps one :class:`~veloz_actors.core.l2book.L2Book` per symbol and hands what it
produces to ``sink(batch)`` (a list of messages; with ``columnar=True`` one
:class:`~veloz_actors.core.market_batch.MarketBatch`: no message is made for a top of book or a trade), always from
the event-loop thread and in order.

**Book sync** ("How to manage a local order book correctly"): diffs are buffered by the book itself while it is
unsynced (:class:`L2Book` refuses and buffers them); the sync task waits for the first buffered diff (at most
``snapshot_wait`` s), fetches ``GET /api/v3/depth?symbol=&limit=snapshot_limit``, and applies it: the book drops the
buffered diffs the snapshot already covers and replays the rest in update-id order. A snapshot older than the first
buffered diff (the book raises :class:`SequenceGap` while replaying) is counted as ``stale_snapshot`` and fetched
again over the same buffer (Binance's procedure); after ``_STALE_BEFORE_RESTART`` stale snapshots in a row the symbol
starts over (its buffer and the highest ``u`` seen are forgotten, so one corrupt diff cannot refuse every snapshot)
and the next snapshot is fetched once a fresh diff is buffered. A live gap (``U`` beyond the last ``u + 1``) is
detected by the book on the first diff after it; the book discards its levels and a new snapshot is fetched at once.
A corrupt diff that does connect (a huge ``u``) leaves every real diff after it out of order: after
``_OUT_OF_ORDER_BEFORE_RESTART`` of them in a row, moving on among themselves, the book is forgotten and synced again.
A book that a diff (live, or replayed after a snapshot) leaves crossed, its best bid at or above its best ask, is
wrong input too (``crossed_book``): the diff is not emitted, the book is forgotten and synced again from fresh diffs
(the schema refuses a crossed snapshot). So is a synced book whose symbol's ``depthUpdate`` the schema refused: that
diff may have been a real one, so the book is synced again at once instead of waiting for the next diff to show the
gap. While a book is unsynced no diff of its symbol is emitted. A sync that raises what no handler expects (a bug) is
counted in ``internal_errors``, its book reset, and the symbol synced again after a backoff step.

**Output**, per symbol, on every (re)sync: the snapshot (``BookDelta(is_snapshot=True)``, the full REST snapshot),
then each buffered diff the book applied after it, then ``VenueConnection(state="resynced")``; afterwards every diff
the book applied (never one it refused or dropped as stale). Whenever the client stops knowing a symbol's book (a
gap, a disconnect, the end of the stream, an unsubscribe, a batch lost on its way to the sink), or a consumer says it
failed to apply what it was handed (:meth:`BinanceMarketData.resync`), it says so first with a *book reset*; so it
does for every symbol as :meth:`BinanceMarketData.run` starts, before anything else: a consumer may hold a book
from an earlier client (a paper engine recovered from its journal holds the book the journal ended with, hours old
maybe), which no diff of this client continues:
``BookDelta(is_snapshot=True, first_update_id=last_update_id=-1)`` without levels (a real update id is never
negative): the book is unknown until the next snapshot, and a paper venue fills nothing against it until then. A
downstream :class:`L2Book` fed this sequence alone holds exactly this client's levels (none while it resyncs).
``BookTop``, ``Trade`` and ``Kline`` are passed on as they come;
``VenueConnection`` reports ``connected``, ``disconnected`` (``detail`` is the reason), ``resynced``, ``closed`` and
``error``: Binance answered a symbol's depth snapshot with -1121 or -1122 (the symbol is delisted or halted): its
book stays unsynced and is asked for again only every ``refused_symbol_retry`` s (5 minutes by default: a halt may
end in the session, and a retry that rare costs nothing), the other symbols go on.
A batch is what the reader had read from the socket when the loop got to it (split at ``batch_max``): nothing is held
back waiting for more.

**Connections**: exponential backoff with full jitter (``uniform(0, min(backoff_max, backoff_initial * 2**n))``, the
attempt count reset once a connection delivered data and lasted ``backoff_max`` s: one the server drops moments after
its first frames keeps backing off, since Binance allows an IP 300 connection attempts per 5 minutes and may ban one
that keeps being disconnected; ``status()["reconnect_backoff"]`` is the attempt count); every server ping is answered at once by the reader task
with a pong carrying the ping's payload (and counted: ``status()["pings"]``); a connection reaching
``max_connection_seconds`` (before Binance's 24 h cut) and a ``serverShutdown`` event both close the connection and
reconnect at once, without backoff (*reconnect*, not make-before-break: every reconnect resyncs every book anyway,
and a fresh snapshot after a switch costs one REST call per symbol). No frame at all (data or ping; Binance pings
every 20 s) for ``idle_timeout`` s counts as a dead connection. A symbol whose depth stream alone goes quiet is not
caught by that (the other streams keep the connection alive), and a quiet stream may be a quiet market or a stream
Binance stopped sending while the book moved on: then the book, still marked synced, stands still at old prices
(and a paper venue fills against them). So a synced book that received no diff for ``stream_silence`` s is checked
against ``GET /api/v3/depth?limit=1`` (weight 5): a ``lastUpdateId`` past the book's, with still no diff after a short
grace (diffs in flight), means its stream is dead (``bad_input["silent_stream"]``): the connection closes and
reconnects at once, so the book is reset downstream and synced again over a fresh subscription. A quiet market's
``lastUpdateId`` is the book's: nothing happens. So is an unsynced book whose sync waits for a diff (however long,
after stale snapshots) checked: a ``lastUpdateId`` that moved between two looks without a diff is a dead stream too,
instead of a symbol stuck unsynced until the next reconnect. Every reconnect resyncs every book and is reported.

**REST**: a 429 or 418 sets a "not before" time from ``Retry-After`` (seconds, 0 to 3 days, Binance's longest ban;
anything else falls back to the backoff); no REST request of this client is sent before it has passed. Requests are
also paced by their documented weight (``/api/v3/depth``: 5 to 250 by ``limit``): at most ``rest_weight_per_minute``
per clock-aligned minute, counting the IP's use the exchange reports (``X-MBX-USED-WEIGHT-1M``, which includes the
trading client's requests from the same address), and at most ``snapshots_in_flight`` depth snapshots at once, so a
reconnect or a burst of gaps across many symbols queues their snapshots instead of firing them all together (Binance
bans an IP that keeps hitting its limits). Each symbol keeps its own snapshot backoff across syncs: a book that goes
out of sync again less than ``backoff_max`` s after its last sync waits a backoff step before its next snapshot, and
the steps grow while it keeps doing so.
``GET /api/v3/time`` is sampled ``clock_samples`` times at each connect: the sample with the smallest round trip gives
``clock_offset_ms = serverTime - midpoint``.

**Bad input** (malformed JSON, unknown events, payloads the schemas reject, stale snapshots, out-of-order or missing
update ids, crossed books, and a frame that raised anything else: ``unexpected_error``) is counted by kind in
:meth:`BinanceMarketData.status`, logged (logger ``veloz.binance``, at most ``_LOG_BURST`` lines per kind per minute,
payloads truncated) and, where the book is concerned, resynced. It never raises out of :meth:`BinanceMarketData.run`
and never leaves a wrong book.

**Latency**: exchange -> receive (``ts_recv - ts_event``, ms) per stream kind over the last ``latency_reservoir``
samples (spot ``bookTicker`` carries no exchange time, so it has none); receive -> publish is recorded by whoever
publishes the batches: call :meth:`BinanceMarketData.record_publish` with the batch (or its ``ts_recv`` values) once
it is published. Both appear under ``status()["latency_ms"]``.

:class:`MarketDataThread` runs one client on its own event loop in a daemon thread, for actors and the
single-process engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import orjson
import yarl

from ..._exceptions import DataError, InvalidInput, SequenceGap
from ...core.l2book import L2Book
from ...core.market_batch import MarketBatch, MarketBatchBuilder
from ...logs import redact_url, redacted_repr
from ...messages import BookDelta, Kline, VenueConnection
from .errors import classify
from .limits import REQUEST_WEIGHT, RateLimit, RateLimits, depth_weight
from .schemas import book_ticker_fields, parse_depth_snapshot, parse_depth_update, parse_kline, trade_fields, unwrap

__all__ = [
    "Backoff",
    "BinanceMarketData",
    "BookSync",
    "LatencyStats",
    "MarketDataSettings",
    "MarketDataThread",
]

log = logging.getLogger("veloz.binance")

_MAX_STREAMS = 1024  # streams one connection may carry
_INTERVAL = re.compile(r"^[1-9]\d*[smhdw]$")  # no months ("1M"): a Kline's interval is a fixed number of ns
_DEPTH_STREAMS = ("depth", "depth@100ms", "depth@1000ms")
_LOG_BURST = 5  # log lines per kind per window; the rest are counted and summarised
_LOG_WINDOW_S = 60.0
_PREVIEW = 160  # characters of a bad payload that may be logged
_STALE_BEFORE_RESTART = 3  # stale snapshots in a row after which a symbol's sync starts over from fresh diffs
_OUT_OF_ORDER_BEFORE_RESTART = 3  # diffs moving on behind a synced book after which the book is not trusted
_MAX_RETRY_AFTER_S = 3 * 86_400  # Binance's longest IP ban ("from 2 minutes to 3 days", REST API, IP Limits)
_SYMBOL_REFUSED = frozenset({-1121, -1122})  # BAD_SYMBOL, INVALID_SYMBOLSTATUS (errors.md): delisted or halted
_MINUTE_MS = 60_000
_SILENCE_GRACE_S = 2.0  # after a depth probe: diffs already on their way (a 1000 ms depth stream sends once a second)


# ----------------------------------------------------------------------------------------------------------- settings


def check_endpoints(settings: Any, *, rest: str, ws: str) -> None:
    """Check a frozen settings object's ``venue`` name and its REST (http/https) and WebSocket (ws/wss) URLs, each
    named in the error, and strip their trailing slashes (shared by the market-data and trading settings)."""
    for name in (rest, ws, "venue"):
        value = getattr(settings, name)
        if not isinstance(value, str) or not value:
            raise InvalidInput(f"{name} must be a non-empty string, got {value!r}")
    for name, schemes, what in ((rest, ("http://", "https://"), "an http(s)"), (ws, ("ws://", "wss://"), "a ws(s)")):
        value = getattr(settings, name)
        if not value.startswith(schemes):
            raise InvalidInput(f"{name} must be {what} URL, got {redact_url(value)!r}")
        object.__setattr__(settings, name, value.rstrip("/"))


@dataclass(frozen=True, slots=True)
class MarketDataSettings:
    """Where and what to stream. Symbols are normalised to upper case (duplicates dropped, order kept).

    The fields after ``venue`` are tuning knobs with production defaults: ``snapshot_wait`` (s to wait for the first
    buffered diff before fetching a snapshot anyway), ``idle_timeout`` (s without any frame before the connection is
    considered dead; None: never), ``request_timeout`` (REST and SUBSCRIBE replies), ``clock_samples`` (``/time``
    samples per connect, 0: none), ``buffer_limit`` (diffs an unsynced book keeps), ``control_interval`` (s between two
    JSON control messages: Binance allows 5 incoming messages per second, pongs included), ``latency_reservoir``
    (samples kept per latency series), ``refused_symbol_retry`` (s between two depth snapshot requests of a symbol
    Binance calls invalid or not trading, -1121 / -1122: delisted or halted in the session), ``snapshots_in_flight``
    (depth snapshot requests at once, all symbols together), ``rest_weight_per_minute`` (REST request weight this
    client lets the IP reach per minute before it waits for the next: half of Binance's 6000, the rest left to the
    trading client), ``stream_silence`` (s a synced book may receive no depth diff before it is checked against the
    exchange's ``lastUpdateId``; a stream that stopped while the book moved on is reconnected; None: never).
    """

    rest_url: str
    stream_url: str
    symbols: tuple[str, ...]
    kline_interval: str | None = "1m"
    depth_stream: str = "depth@100ms"
    snapshot_limit: int = 5000
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_connection_seconds: float = 23.5 * 3600
    batch_max: int = 1000
    venue: str = "binance"
    snapshot_wait: float = 1.0
    idle_timeout: float | None = 30.0
    request_timeout: float = 10.0
    clock_samples: int = 3
    buffer_limit: int = 10_000
    control_interval: float = 0.25
    latency_reservoir: int = 4096
    refused_symbol_retry: float = 300.0
    snapshots_in_flight: int = 2
    rest_weight_per_minute: int = 3000
    stream_silence: float | None = 30.0

    def __repr__(self) -> str:  # no URL credential in a log line or an error that prints it
        return redacted_repr(self)

    def __post_init__(self) -> None:
        check_endpoints(self, rest="rest_url", ws="stream_url")
        object.__setattr__(self, "symbols", normalise_symbols(self.symbols))
        if self.kline_interval is not None and not (
            isinstance(self.kline_interval, str) and _INTERVAL.match(self.kline_interval)
        ):
            raise InvalidInput(
                "kline_interval must be a fixed-length Binance interval such as '1m', '1h' or '1d', or None (months "
                f"have no fixed length), got {self.kline_interval!r}"
            )
        if self.depth_stream not in _DEPTH_STREAMS:
            raise InvalidInput(f"depth_stream must be one of {_DEPTH_STREAMS}, got {self.depth_stream!r}")
        if not 1 <= self.snapshot_limit <= 5000:
            raise InvalidInput(f"snapshot_limit must be 1..5000, got {self.snapshot_limit}")
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise InvalidInput(
                f"need 0 < backoff_initial <= backoff_max, got {self.backoff_initial} and {self.backoff_max}"
            )
        positive = (
            "max_connection_seconds", "request_timeout", "batch_max", "buffer_limit", "latency_reservoir",
            "refused_symbol_retry", "snapshots_in_flight",
        )  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise InvalidInput(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("snapshot_wait", "control_interval", "clock_samples"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must not be negative, got {getattr(self, name)}")
        for name in ("idle_timeout", "stream_silence"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InvalidInput(f"{name} must be positive or None, got {value}")
        if not depth_weight(self.snapshot_limit) <= self.rest_weight_per_minute:
            raise InvalidInput(
                f"rest_weight_per_minute must be at least a depth snapshot's weight, {depth_weight(self.snapshot_limit)}"
                f" at snapshot_limit {self.snapshot_limit}, got {self.rest_weight_per_minute}"
            )
        if len(self.symbols) * self.streams_per_symbol > _MAX_STREAMS:
            raise InvalidInput(f"{len(self.symbols)} symbols need more than the {_MAX_STREAMS} streams of a connection")

    @property
    def streams_per_symbol(self) -> int:
        return 3 + (self.kline_interval is not None)

    def streams(self, symbol: str) -> list[str]:
        """The stream names of one symbol: depth diffs, book ticker, trades and (if set) klines."""
        sym = symbol.lower()
        names = [f"{sym}@{self.depth_stream}", f"{sym}@bookTicker", f"{sym}@trade"]
        if self.kline_interval is not None:
            names.append(f"{sym}@kline_{self.kline_interval}")
        return names


def normalise_symbols(symbols: Iterable[str] | str) -> tuple[str, ...]:
    """Upper-case symbol names, duplicates dropped, order kept; :class:`InvalidInput` for anything but plain names."""
    if isinstance(symbols, str):
        symbols = (symbols,)
    out: list[str] = []
    for symbol in symbols:
        if not isinstance(symbol, str) or not symbol.isascii() or not symbol.isalnum():
            raise InvalidInput(f"symbol must be a plain name such as 'BTCUSDT', got {symbol!r}")
        upper = symbol.upper()
        if upper not in out:
            out.append(upper)
    return tuple(out)


# ------------------------------------------------------------------------------------------------------ pure helpers


class Backoff:
    """Exponential backoff with full jitter: attempt ``n`` (from 0) waits ``uniform(0, min(maximum, initial * 2**n))``.

    >>> backoff = Backoff(0.5, 30.0, random.Random(1))
    >>> [backoff.ceiling(n) for n in range(8)]
    [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    """

    __slots__ = ("initial", "maximum", "attempt", "_rng")

    def __init__(self, initial: float, maximum: float, rng: random.Random) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng

    def ceiling(self, attempt: int) -> float:
        """The largest delay attempt ``attempt`` may wait."""
        if attempt >= 64:  # 2**64 * anything positive is beyond every sane maximum
            return self.maximum
        return min(self.maximum, self.initial * (1 << attempt))

    def next_delay(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        delay = self._rng.uniform(0.0, self.ceiling(self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Back to the first attempt (after a connection that worked)."""
        self.attempt = 0


class LatencyStats:
    """Latency samples (ns in, ms out): the total count and the max since start; p50/p99 over the last ``size``.

    Thread-safe: samples may be added from another thread (:meth:`BinanceMarketData.record_publish`).

    >>> stats = LatencyStats(size=100)
    >>> for ms in range(1, 101):
    ...     stats.add(ms * 1_000_000)
    >>> stats.summary()
    {'count': 100, 'p50': 50.0, 'p99': 99.0, 'max': 100.0}
    """

    __slots__ = ("count", "max_ns", "_samples", "_lock")

    def __init__(self, size: int = 4096) -> None:
        self.count = 0
        self.max_ns: int | None = None
        self._samples: deque[int] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, ns: int) -> None:
        with self._lock:
            self.count += 1
            self._samples.append(ns)
            if self.max_ns is None or ns > self.max_ns:
                self.max_ns = ns

    def summary(self) -> dict[str, Any]:
        """``{"count", "p50", "p99", "max"}`` in ms (None while there are no samples); nearest-rank percentiles."""
        with self._lock:
            samples = sorted(self._samples)
            count = self.count
            max_ns = self.max_ns
        if not samples:
            return {"count": count, "p50": None, "p99": None, "max": None}
        return {
            "count": count,
            "p50": _ms(_nearest_rank(samples, 50)),
            "p99": _ms(_nearest_rank(samples, 99)),
            "max": _ms(max_ns if max_ns is not None else samples[-1]),
        }


def _nearest_rank(ordered: list[int], percent: int) -> int:
    rank = -(-percent * len(ordered) // 100)  # ceil(p/100 * n), 1-based
    return ordered[max(rank, 1) - 1]


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


class _CrossedBook(Exception):
    """A diff left the book crossed (its best bid at or above its best ask): wrong input, since no exchange's book is."""


class _RecordingBook(L2Book):
    """An :class:`L2Book` that can list the diffs it applies (the ones :meth:`L2Book.apply_snapshot` replays from its
    buffer), so exactly those are emitted after the snapshot, and that raises :class:`_CrossedBook` on a diff that
    leaves it crossed (the levels are then wrong: the caller forgets the book)."""

    __slots__ = ("recording",)

    def __init__(self, symbol: str, *, buffer_limit: int) -> None:
        super().__init__(symbol, "spot", buffer_limit=buffer_limit)
        self.recording: list[BookDelta] | None = None

    def apply(self, delta: BookDelta) -> bool:
        applied = super().apply(delta)
        if applied:
            if self.crossed:
                raise _CrossedBook(
                    f"diff U={delta.first_update_id} u={delta.last_update_id} leaves best bid {self.best_bid()} at or "
                    f"above best ask {self.best_ask()}"
                )
            if self.recording is not None:
                self.recording.append(delta)
        return applied


# outcomes of BookSync.on_diff
APPLIED = "applied"  # in the book: emit it
BUFFERED = "buffered"  # the book is unsynced: kept for the next snapshot, not emitted
STALE = "stale"  # already covered by the snapshot (u <= lastUpdateId): normal right after a sync
OUT_OF_ORDER = "out_of_order"  # u at or below one already received on this stream: a late or repeated diff, dropped
GAP = "gap"  # U beyond the book's u + 1: the book discarded its levels and needs a new snapshot
CROSSED = "crossed"  # the diff left the book crossed: wrong input, the book is forgotten and synced again
RESTART = "restart"  # the stream moves on behind a synced book: forgotten, resync from fresh diffs


class BookSync:
    """Binance's local-book procedure for one symbol, free of I/O: feed it parsed diffs and snapshots, emit what it
    returns. The :class:`L2Book` does the buffering and the update-id rules; this adds which diffs to emit.

    >>> sync = BookSync("BTCUSDT")
    >>> diff = BookDelta(symbol="BTCUSDT", first_update_id=11, last_update_id=12, bids=((100, 1),), asks=(),
    ...                  ts_event=0, ts_recv=0)
    >>> sync.on_diff(diff)
    'buffered'
    >>> snapshot = BookDelta(symbol="BTCUSDT", first_update_id=10, last_update_id=10, bids=((99, 2),), asks=(),
    ...                      is_snapshot=True, ts_event=0, ts_recv=0)
    >>> [d.last_update_id for d in sync.on_snapshot(snapshot)]
    [10, 12]
    """

    __slots__ = (
        "symbol", "buffer_limit", "book", "resyncs", "gaps", "stale_snapshots", "stale_in_row", "out_of_order",
        "behind_in_row", "behind_u", "restarts", "crossed", "last_seen",
    )  # fmt: skip

    def __init__(self, symbol: str, *, buffer_limit: int = 10_000) -> None:
        self.symbol = symbol
        self.buffer_limit = buffer_limit
        self.book = _RecordingBook(symbol, buffer_limit=buffer_limit)
        self.resyncs = 0  # snapshots applied
        self.gaps = 0  # live gaps detected
        self.stale_snapshots = 0  # snapshots refused as older than the buffered diffs (or over a buffer hole)
        self.stale_in_row = 0  # of them, since the last snapshot applied or the last start over
        self.out_of_order = 0
        self.behind_in_row = 0  # out-of-order diffs in a row, each with a higher u than the one before
        self.behind_u = -1
        self.restarts = 0  # synced books forgotten because the stream moved on behind them
        self.crossed = 0  # books forgotten because a diff (live or replayed after a snapshot) left them crossed
        self.last_seen = -1  # the highest ``u`` received on this connection: a correct stream only goes up

    @property
    def synced(self) -> bool:
        return not self.book.needs_resync

    def forget(self) -> None:
        """Forget the book (its levels are wrong, or may be): unsynced, empty buffer, to sync again from fresh diffs."""
        self.book = _RecordingBook(self.symbol, buffer_limit=self.buffer_limit)

    def reset(self) -> None:
        """Forget the book and what this connection sent (a new connection); counters are kept."""
        self.forget()
        self.last_seen = -1
        self.stale_in_row = 0
        self.behind_in_row = 0
        self.behind_u = -1

    def on_diff(self, delta: BookDelta) -> str:
        """Apply (or buffer) one diff; the outcome says whether to emit it (``APPLIED``) or resync (``GAP``).

        A diff whose ``u`` is not above every ``u`` received before is out of order (a repeat or a late one): it is
        counted and dropped before it reaches the book (which could only drop it as stale, or buffer it). A repeat
        changes nothing; but several out-of-order diffs in a row whose ids go up among themselves are the market
        moving on behind a synced book: it took a corrupt diff that connected (``U`` = last ``u`` + 1 with a huge
        ``u``), which no real diff can follow. The book is then forgotten (``RESTART``) and synced again from fresh
        diffs, instead of standing still, marked synced, until the next reconnect.
        """
        u = delta.last_update_id
        if u <= self.last_seen:
            self.out_of_order += 1
            if u > self.behind_u:
                self.behind_u = u
                self.behind_in_row += 1
                if self.behind_in_row >= _OUT_OF_ORDER_BEFORE_RESTART and not self.book.needs_resync:
                    self.restarts += 1
                    self.reset()
                    return RESTART
            return OUT_OF_ORDER
        if self.behind_in_row:
            self.behind_in_row = 0
            self.behind_u = -1
        self.last_seen = u
        book = self.book
        if book.needs_resync:
            book.apply(delta)
            return BUFFERED
        try:
            applied = book.apply(delta)
        except SequenceGap:
            self.gaps += 1
            return GAP
        except _CrossedBook:
            self.crossed += 1
            self.forget()
            return CROSSED
        return APPLIED if applied else STALE

    def on_snapshot(self, snapshot: BookDelta) -> list[BookDelta] | None:
        """Apply a REST snapshot: ``[snapshot, *replayed diffs]`` to emit, or None if it does not connect to the
        buffered diffs (the book stays unsynced; fetch a newer snapshot). A snapshot older than the first buffered diff
        is counted in ``stale_snapshots`` and the buffer kept; the ``_STALE_BEFORE_RESTART``-th in a row also forgets
        the buffer and the highest ``u`` seen (buffer fresh diffs before the next fetch). After a hole inside the
        buffer the diffs past the hole are kept. A book left crossed by the snapshot or a replayed diff is counted in
        ``crossed`` and forgotten with its buffer (buffer fresh diffs before the next fetch)."""
        book = self.book
        replayed: list[BookDelta] = []
        book.recording = replayed
        try:
            book.apply_snapshot(snapshot)
            if book.crossed:  # the snapshot itself, with no diff replayed (the schema refuses a crossed one)
                raise _CrossedBook(f"snapshot {snapshot.last_update_id} is crossed")
        except _CrossedBook:
            self.crossed += 1
            self.forget()
            return None
        except SequenceGap:
            if replayed:
                self.gaps += 1  # a hole inside the buffer, after the snapshot bridged
            else:
                # Older than the first buffered diff: fetch again over this buffer (Binance's step 4). But a corrupt
                # diff (a huge U at the buffer's head, or a huge u in last_seen that drops every real diff since)
                # would refuse every snapshot: after a few in a row, start over from step 2 with fresh diffs.
                self.stale_snapshots += 1
                self.stale_in_row += 1
                if self.stale_in_row >= _STALE_BEFORE_RESTART:
                    self.reset()
            return None
        finally:
            book.recording = None
        self.resyncs += 1
        self.stale_in_row = 0
        return [snapshot, *replayed]


class LogLimiter:
    """At most ``burst`` log lines per kind per ``window`` seconds; the rest are counted and summarised (the
    market-data client and the trading adapter log through one each)."""

    __slots__ = ("burst", "window", "_state")

    def __init__(self, burst: int = _LOG_BURST, window: float = _LOG_WINDOW_S) -> None:
        self.burst = burst
        self.window = window
        self._state: dict[str, list[float]] = {}  # kind -> [window start, lines logged, lines suppressed]

    def __call__(self, level: int, kind: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        state = self._state.get(kind)
        if state is None or now - state[0] >= self.window:
            if state is not None and state[2]:
                log.log(level, "%s: %d similar messages suppressed in the last %.0f s", kind, state[2], self.window)
            state = self._state[kind] = [now, 0, 0]
        if state[1] < self.burst:
            state[1] += 1
            log.log(level, msg, *args, stacklevel=2)
        else:
            state[2] += 1


def _preview(raw: Any) -> str:
    if isinstance(raw, bytes | bytearray):
        raw = bytes(raw[: _PREVIEW * 2]).decode("utf-8", "replace")
    return f"{raw!r:.{_PREVIEW}}"


# ------------------------------------------------------------------------------------------------------------ client


class _RestError(Exception):
    """An HTTP error answer; ``code`` and ``msg`` are Binance's error body's when it has one."""

    def __init__(self, status: int, body: bytes) -> None:
        text = body[:200].decode("utf-8", "replace")
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        self.code = data.get("code") if isinstance(data, dict) and type(data.get("code")) is int else None
        self.msg = data.get("msg") if isinstance(data, dict) and isinstance(data.get("msg"), str) else text


class _Closed:
    """The reader's last word: the socket is closed (``reason`` says how)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


_WAKE = object()  # queued by close() and friends so a waiting processor looks at its flags


class _Frames:
    """The reader's frames, ``(ts_recv, data)``, to the processor on the same event loop: a bounded FIFO. The reader
    waits for room while it is full (so TCP backpressure reaches the server); the processor takes all there is at
    once. What :class:`asyncio.Queue` does, with less work per frame (no coroutine per put, no ``join()`` counters,
    no getter per frame): a live feed queues every frame it reads."""

    __slots__ = ("limit", "_items", "_taker", "_putter")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[tuple[int, Any]] = deque()
        self._taker: asyncio.Future[None] | None = None  # the processor, waiting for a frame
        self._putter: asyncio.Future[None] | None = None  # the reader, waiting for room

    def __bool__(self) -> bool:
        return bool(self._items)

    def put_nowait(self, item: tuple[int, Any]) -> bool:
        """Queue ``item``; False when that filled the queue (the reader then waits for room before reading on, so
        the queue never holds more than ``limit`` frames; close()'s few wake-ups come on top)."""
        items = self._items
        items.append(item)
        taker = self._taker
        if taker is not None:
            self._taker = None
            if not taker.done():
                taker.set_result(None)
        return len(items) < self.limit

    async def wait_room(self) -> None:
        """Return once the queue is below its limit."""
        while len(self._items) >= self.limit:
            putter = self._putter = asyncio.get_running_loop().create_future()
            await putter

    async def wait(self) -> None:
        """Return once a frame is queued."""
        while not self._items:
            taker = self._taker = asyncio.get_running_loop().create_future()
            await taker

    def take_all(self) -> list[tuple[int, Any]]:
        """Everything queued, oldest first; a reader waiting for room goes on."""
        items = list(self._items)
        self._items.clear()
        putter = self._putter
        if putter is not None:
            self._putter = None
            if not putter.done():
                putter.set_result(None)
        return items


class BinanceMarketData:
    """One live Binance spot market data connection (see the module docstring). Not thread-safe: call its coroutines
    on the loop that runs :meth:`run` (or use :class:`MarketDataThread`); :meth:`record_publish` is the exception.

    ``sink(batch)`` runs on the loop: it must return quickly (hand the batch to a queue or a bus), since pings are
    answered and frames read on that same loop. A sink that raises loses that batch; the client counts it
    (``sink_errors``) and resyncs every book, so what follows starts again from snapshots. ``columnar``: the sink
    takes each batch as one :class:`MarketBatch` (what crosses to another process) instead of a list of messages.
    """

    def __init__(
        self,
        settings: MarketDataSettings,
        sink: Callable[[Any], None],
        *,
        clock: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
        columnar: bool = False,
    ) -> None:
        self.settings = settings
        self._sink = sink
        self._columnar = columnar
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._backoff = Backoff(settings.backoff_initial, settings.backoff_max, self._rng)
        self._feeds: dict[str, BookSync] = {
            s: BookSync(s, buffer_limit=settings.buffer_limit) for s in settings.symbols
        }
        self._pending = MarketBatchBuilder()
        self._log = LogLimiter()
        # state
        self._state = "disconnected"
        self._running = False
        self._closing = False
        self._ws: aiohttp.ClientWebSocketResponse[Literal[False]] | None = None  # frames as bytes
        self._session: aiohttp.ClientSession | None = None
        self._conn_id = 0
        self._connected_at: float | None = None  # monotonic
        self._reconnect_reason: str | None = None
        self._queue: _Frames | None = None
        self._symbols_changed: asyncio.Event | None = None
        self._stopped: asyncio.Event | None = None
        self._first_diff: dict[str, asyncio.Event] = {}
        self._sync_tasks: dict[str, asyncio.Task[None]] = {}
        self._conn_tasks: set[asyncio.Task[Any]] = set()
        self._control_waiters: dict[int, asyncio.Future[Any]] = {}
        self._control_lock: asyncio.Lock | None = None
        self._control_id = 0
        self._last_control = 0.0
        self._connection_streams: set[str] = set()
        # counters
        self._connects = 0
        self._resyncs = 0  # book rebuilds from a snapshot, every symbol, since start
        self._connect_errors = 0
        self._disconnects: dict[str, int] = {}
        self._last_disconnect = ""
        self._got_data = False
        self._bad_input: dict[str, int] = {}
        self._rest_errors = 0
        self._rest_requests = 0
        self._rate_limited = 0
        self._rate_limited_until: float = 0.0  # monotonic
        self._rate_limited_until_ns: int | None = None  # the same moment on ``clock``
        self._server_shutdowns = 0
        self._planned_reconnects = 0
        self._sink_errors = 0
        self._resync_requests = 0  # symbols a consumer asked to resync (:meth:`resync`)
        self._open_klines: dict[tuple[str, int], int] = {}  # (symbol, interval) -> row of its open update in _pending
        self._klines_superseded = 0
        self._internal_errors = 0
        self._refused: dict[str, str] = {}  # symbol -> why Binance refuses its snapshots (until one is taken)
        # REST pacing: the weight per minute (ours, and the IP's as the exchange reports it), the snapshots at once,
        # and each symbol's snapshot backoff and last sync (time.monotonic()), kept across its syncs
        self._weight = RateLimits([RateLimit(REQUEST_WEIGHT, _MINUTE_MS, settings.rest_weight_per_minute)])
        self._snapshot_slots: asyncio.Semaphore | None = None
        self._snapshots_in_flight = 0
        self._paced = 0  # requests that waited for the weight budget
        self._snapshot_backoff: dict[str, Backoff] = {}
        self._synced_at: dict[str, float] = {}
        self._events_out = 0
        self._batches_out = 0
        self._clock_offset_ms: float | None = None
        self._clock_rtt_ms: float | None = None
        self._last_frame: dict[str, int] = {}  # stream name -> ts_recv of its last frame
        self._last_alive = 0.0  # monotonic time of the last frame of any kind (pings included)
        self._pings = 0
        self._latency: dict[str, LatencyStats] = {
            kind: LatencyStats(settings.latency_reservoir) for kind in ("depth", "bookTicker", "trade", "kline")
        }
        self._publish_latency = LatencyStats(settings.latency_reservoir)

    # -------------------------------------------------------------------------------------------------- public

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._feeds)

    def book(self, symbol: str) -> L2Book:
        """The client's book of ``symbol`` (live: read it on the loop thread; unsynced while ``needs_resync``)."""
        feed = self._feeds.get(symbol.upper())
        if feed is None:
            raise InvalidInput(f"{symbol!r} is not subscribed (symbols: {list(self._feeds)})")
        return feed.book

    def synced(self) -> bool:
        """True when connected and every symbol's book is synced."""
        return self._state == "connected" and all(feed.synced for feed in self._feeds.values())

    def record_publish(self, batch: Iterable[Any], now: int | None = None) -> None:
        """Record receive -> publish latency for a batch the sink handed over, once it has been published.

        ``batch`` is the batch itself (events without ``ts_recv``, such as ``VenueConnection``, are skipped) or the
        ``ts_recv`` values; ``now`` defaults to ``clock()``. Thread-safe.
        """
        now = self._clock() if now is None else now
        add = self._publish_latency.add
        for item in batch:
            ts_recv = item if type(item) is int else getattr(item, "ts_recv", None)
            if ts_recv is not None:
                add(now - ts_recv)

    async def run(self) -> None:
        """Connect, sync the books and stream until :meth:`close`; reconnects on every wire problem, never raises
        for one."""
        if self._running:
            raise InvalidInput("run() is already running")
        self._running = True
        self._queue = _Frames(max(4 * self.settings.batch_max, 1024))
        self._symbols_changed = asyncio.Event()
        self._stopped = asyncio.Event()
        self._control_lock = asyncio.Lock()
        self._snapshot_slots = asyncio.Semaphore(self.settings.snapshots_in_flight)
        for symbol in self._feeds:  # downstream may hold a book of an earlier client: a paper engine's journal
            self._book_lost(symbol)
        self._flush()
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                self._session = session
                while not self._closing:
                    if not self._feeds:
                        self._state = "disconnected"
                        self._symbols_changed.clear()
                        await self._symbols_changed.wait()
                        continue
                    began = time.monotonic()
                    try:
                        reason, at_once = await self._connection(session)
                    except Exception as exc:  # a bug, not the wire: log it, keep the feed alive
                        self._internal_errors += 1
                        log.exception("market data connection failed unexpectedly: %r", exc)
                        reason, at_once = f"internal error: {exc!r}", False
                    if self._closing:
                        break
                    if self._got_data and time.monotonic() - began >= self.settings.backoff_max:
                        self._backoff.reset()  # a connection that worked, not one dropped as soon as it delivered
                    delay = 0.0 if at_once else self._backoff.next_delay()
                    self._log(
                        logging.WARNING,
                        "reconnect",
                        "%s: %s; reconnecting in %.2f s (attempt %d without a lasting connection)",
                        self.settings.venue,
                        reason,
                        delay,
                        self._backoff.attempt,
                    )
                    if delay:
                        await self._sleep(delay)
        finally:
            self._session = None
            self._state = "closed"
            self._emit(VenueConnection(venue=self.settings.venue, state="closed", detail="closed", **self._counts()))
            self._flush()
            self._running = False
            self._stopped.set()

    async def close(self) -> None:
        """Stop: close the connection, emit ``VenueConnection(closed)`` and return once :meth:`run` has ended."""
        self._closing = True
        self._wake()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._running and self._stopped is not None:
            await self._stopped.wait()
        elif self._state != "closed":
            self._state = "closed"

    async def subscribe(self, symbols: Iterable[str] | str) -> None:
        """Add symbols live (``SUBSCRIBE`` over the open connection, answered before this returns); their books are
        synced as for a new connection. Without an open connection they join the next one. A refused SUBSCRIBE
        raises :class:`InvalidInput` and leaves the symbols out."""
        new = [s for s in normalise_symbols(symbols) if s not in self._feeds]
        if not new:
            return
        total = (len(self._feeds) + len(new)) * self.settings.streams_per_symbol
        if total > _MAX_STREAMS:
            raise InvalidInput(f"{total} streams exceed the {_MAX_STREAMS} a connection may carry")
        for symbol in new:
            self._feeds[symbol] = BookSync(symbol, buffer_limit=self.settings.buffer_limit)
        if self._symbols_changed is not None:
            self._symbols_changed.set()
        streams = [name for symbol in new for name in self.settings.streams(symbol)]
        if self._ws is not None and self._state == "connected":
            self._connection_streams.update(streams)
            for symbol in new:
                self._start_sync(symbol)
            try:
                await self._control("SUBSCRIBE", streams)
            except InvalidInput:  # refused as a whole: nothing was subscribed, forget the symbols again
                self._drop(new)
                self._connection_streams.difference_update(streams)
                raise

    async def unsubscribe(self, symbols: Iterable[str] | str) -> None:
        """Drop symbols live (``UNSUBSCRIBE``): their books, sync tasks and stream state go; late frames are
        ignored. A refused UNSUBSCRIBE is counted (``bad_input["control_error"]``), not raised."""
        gone = [s for s in normalise_symbols(symbols) if s in self._feeds]
        if not gone:
            return
        streams = [name for symbol in gone for name in self.settings.streams(symbol)]
        self._drop(gone)
        for symbol in gone:
            self._book_lost(symbol)  # nothing keeps their books downstream up to date any more
        self._flush()
        if self._ws is not None and self._state == "connected":
            self._connection_streams.difference_update(streams)
            try:
                await self._control("UNSUBSCRIBE", streams)
            except InvalidInput as exc:  # the symbols are gone here anyway; their late frames are ignored
                self._bad("control_error", "%s: %s", self.settings.venue, exc)

    def _drop(self, symbols: list[str]) -> None:
        for symbol in symbols:
            self._feeds.pop(symbol, None)
            task = self._sync_tasks.pop(symbol, None)
            if task is not None:
                task.cancel()
            self._first_diff.pop(symbol, None)
            self._refused.pop(symbol, None)
            self._snapshot_backoff.pop(symbol, None)
            self._synced_at.pop(symbol, None)
            for name in self.settings.streams(symbol):
                self._last_frame.pop(name, None)

    def resync(self, symbols: Iterable[str] | str) -> list[str]:
        """A consumer failed to apply part of what this client handed it for ``symbols`` (a venue actor raised on a
        batch): its books of them may lack diffs this client's books hold, and only this client can give them a
        snapshot again. Each subscribed symbol's book is reset downstream and synced again from a fresh snapshot,
        as after a batch lost on its way to the sink; counted in ``status()["resync_requests"]``. Returns the
        symbols resynced (others are not subscribed)."""
        wanted = [symbol for symbol in normalise_symbols(symbols) if symbol in self._feeds]
        self._resync_requests += len(wanted)
        self._resync_books(wanted)
        self._flush()
        return wanted

    def status(self) -> dict[str, Any]:
        """The connection's health as plain JSON-serialisable values (call on the loop thread, or through
        :meth:`MarketDataThread.status`)."""
        now = self._clock()
        feeds = self._feeds
        streams = [name for symbol in feeds for name in self.settings.streams(symbol)]
        ages = {}
        for name in streams:
            last = self._last_frame.get(name)
            ages[name] = None if last is None else _ms(now - last)
        latency = {kind: stats.summary() for kind, stats in self._latency.items()}
        latency["publish"] = self._publish_latency.summary()
        limited = self._rate_limited_until > time.monotonic()
        return {
            "venue": self.settings.venue,
            "state": self._state,
            "url": redact_url(self.settings.stream_url),
            "rest_url": redact_url(self.settings.rest_url),
            "connects": self._connects,
            "reconnects": max(self._connects - 1, 0),
            "connect_errors": self._connect_errors,
            "disconnects": dict(self._disconnects),
            "last_disconnect": self._last_disconnect,
            "server_shutdowns": self._server_shutdowns,
            "pings": self._pings,
            "planned_reconnects": self._planned_reconnects,
            "reconnect_backoff": self._backoff.attempt,
            "resyncs": {"total": self._resyncs_total(), "by_symbol": {s: f.resyncs for s, f in feeds.items()}},
            "last_event_age_ms": ages,
            "clock_offset_ms": self._clock_offset_ms,
            "clock_rtt_ms": self._clock_rtt_ms,
            "latency_ms": latency,
            "bad_input": dict(self._bad_input),
            "rate_limited": {
                "count": self._rate_limited,
                "until_ms": self._rate_limited_until_ns // 1_000_000
                if limited and self._rate_limited_until_ns is not None
                else None,
            },
            "rest_requests": self._rest_requests,
            "rest_errors": self._rest_errors,
            "rest_weight": {
                "per_minute": self.settings.rest_weight_per_minute,
                "used": self._weight.used(REQUEST_WEIGHT, _MINUTE_MS, self._exchange_ms()),
                "paced": self._paced,
            },
            "snapshots_in_flight": self._snapshots_in_flight,
            "sink_errors": self._sink_errors,
            "resync_requests": self._resync_requests,
            "klines_superseded": self._klines_superseded,
            "internal_errors": self._internal_errors,
            "events_out": self._events_out,
            "batches_out": self._batches_out,
            "symbols": {
                s: {
                    "synced": f.synced,
                    "last_update_id": f.book.last_update_id,
                    "buffered": f.book.buffered,
                    "resyncs": f.resyncs,
                    "gaps": f.gaps,
                    "restarts": f.restarts,
                    "refused": self._refused.get(s),
                    "snapshot_backoff": self._snapshot_backoff[s].attempt if s in self._snapshot_backoff else 0,
                }
                for s, f in feeds.items()
            },
            "connection_age_s": None
            if self._connected_at is None or self._state != "connected"
            else round(time.monotonic() - self._connected_at, 3),
        }

    # ---------------------------------------------------------------------------------------------- connection

    def _stream_url(self, streams: list[str]) -> yarl.URL:
        return yarl.URL(f"{self.settings.stream_url}/stream?streams={'/'.join(streams)}", encoded=True)

    async def _connection(self, session: aiohttp.ClientSession) -> tuple[str, bool]:
        """One connection from open to close: ``(why it ended, reconnect at once)``."""
        assert self._queue is not None
        self._state = "connecting"
        self._got_data = False
        symbols = list(self._feeds)
        streams = [name for symbol in symbols for name in self.settings.streams(symbol)]
        url = self._stream_url(streams)
        try:
            ws = await session.ws_connect(
                url,
                autoping=False,  # the reader answers pings itself, so that they count as signs of life
                decode_text=False,  # bytes straight to orjson
                max_msg_size=16 * 1024 * 1024,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            )
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            self._connect_errors += 1
            self._state = "disconnected"
            why = f"connect to {self.settings.stream_url} failed: {type(exc).__name__}: {exc}"
            return redact_url(str(url), why), False
        if self._closing:
            await ws.close()
            return "closed", True
        self._conn_id += 1
        conn = self._conn_id
        self._connects += 1
        self._connected_at = time.monotonic()
        self._reconnect_reason = None
        self._ws = ws
        self._connection_streams = set(streams)
        self._state = "connected"
        queue = self._queue
        queue.take_all()  # leftovers of the previous connection
        for feed in self._feeds.values():
            feed.reset()
        self._emit(
            VenueConnection(
                venue=self.settings.venue,
                state="connected",
                detail=f"{redact_url(self.settings.stream_url)} ({len(streams)} streams)",
                **self._counts(),
            )
        )
        self._flush()
        log.info("%s: connected to %s (%d streams)", self.settings.venue, redact_url(self.settings.stream_url),
                 len(streams))  # fmt: skip
        reason, at_once = "connection ended", False
        try:
            self._spawn(self._reader(ws, queue))
            if self.settings.clock_samples:
                self._spawn(self._sample_clock(conn))
            if self.settings.stream_silence is not None:
                self._spawn(self._watch_silence(conn))
            for symbol in self._feeds:
                self._start_sync(symbol)
            if set(self._feeds) != set(symbols):  # (un)subscribed while connecting
                self._spawn(self._catch_up_subscriptions(conn))
            reason, at_once = await self._process(queue, conn)
            return reason, at_once
        finally:
            self._ws = None
            self._state = "disconnected" if not self._closing else "closed"
            self._conn_id += 1  # whatever still runs for this connection sees it is over
            for task in list(self._sync_tasks.values()) + list(self._conn_tasks):
                task.cancel()
            self._sync_tasks.clear()
            self._conn_tasks.clear()
            for waiter in self._control_waiters.values():
                if not waiter.done():
                    waiter.set_result(None)  # the next connection subscribes to every symbol anyway
            self._control_waiters.clear()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
            for symbol, feed in self._feeds.items():
                feed.reset()
                self._book_lost(symbol)
            if not self._closing:
                self._disconnects[reason.split(":")[0]] = self._disconnects.get(reason.split(":")[0], 0) + 1
                self._last_disconnect = reason
                self._emit(
                    VenueConnection(venue=self.settings.venue, state="disconnected", detail=reason, **self._counts())
                )
            self._flush()

    async def _reader(self, ws: aiohttp.ClientWebSocketResponse[Literal[False]], queue: _Frames) -> None:
        """Read frames as they come, stamp each with ``clock()`` and queue it; answer pings (pong = the ping's
        payload) on the spot."""
        clock = self._clock
        monotonic = time.monotonic
        text, binary = aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY
        ping, pong = aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG
        try:
            while True:
                msg = await ws.receive()
                ts_recv = clock()
                self._last_alive = monotonic()
                kind = msg.type
                if kind is text or kind is binary:
                    if not queue.put_nowait((ts_recv, msg.data)):
                        await queue.wait_room()
                    continue
                if kind is ping:
                    self._pings += 1
                    await ws.pong(msg.data)
                    continue
                if kind is pong:
                    continue
                if kind is aiohttp.WSMsgType.ERROR:
                    reason = f"read error: {ws.exception()!r}"
                elif kind in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                    reason = f"closed by the server: code {ws.close_code}"
                else:
                    continue
                await queue.wait_room()
                queue.put_nowait((ts_recv, _Closed(reason)))
                return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await queue.wait_room()
            queue.put_nowait((clock(), _Closed(f"read failed: {exc!r}")))

    async def _process(self, queue: _Frames, conn: int) -> tuple[str, bool]:
        """Handle what the reader queued, all that is there at once, until the connection must end."""
        settings = self.settings
        idle = settings.idle_timeout
        assert self._connected_at is not None
        self._last_alive = time.monotonic()
        while True:
            if self._closing:
                return "closed", True
            if self._reconnect_reason is not None:
                return self._reconnect_reason, True
            now = time.monotonic()
            remaining = settings.max_connection_seconds - (now - self._connected_at)
            if remaining <= 0:
                self._planned_reconnects += 1
                return f"planned reconnect: connection is {now - self._connected_at:.1f} s old", True
            if not queue:
                quiet = now - self._last_alive
                timeout = remaining if idle is None else min(remaining, idle - quiet)
                if timeout <= 0:
                    return f"idle: no frame or ping for {quiet:.1f} s", False
                try:
                    await asyncio.wait_for(queue.wait(), timeout)
                except TimeoutError:
                    continue
            items = queue.take_all()
            batch_max = settings.batch_max
            frame = self._frame
            unflushed = 0  # frames since the last flush: a frame adds one event, mostly (the flush splits at batch_max)
            for ts_recv, raw in items:
                if raw is _WAKE:
                    continue
                if type(raw) is _Closed:
                    if self._reconnect_reason is not None:  # serverShutdown, then the server's close
                        return self._reconnect_reason, True
                    return raw.reason, False
                self._got_data = True
                frame(raw, ts_recv)
                unflushed += 1
                if unflushed >= batch_max:
                    self._flush()
                    unflushed = 0
            self._flush()

    # ------------------------------------------------------------------------------------------------- frames

    def _frame(self, raw: bytes, ts_recv: int) -> None:
        """One text frame: a control reply, a market event, or ``serverShutdown``. Bad input is counted, never raised;
        so is any other exception (input no check foresaw, or a bug): one frame never costs the connection."""
        try:
            stream, data = unwrap(raw)
        except DataError as exc:
            self._bad("json", "%s: malformed frame (%s): %s", self.settings.venue, exc, _preview(raw))
            return
        if not isinstance(data, dict):
            self._bad("not_object", "%s: frame payload is not an object: %s", self.settings.venue, _preview(raw))
            return
        event = data.get("e")
        try:
            if stream is None and ("result" in data or "error" in data or ("code" in data and "msg" in data)):
                self._control_reply(data)
                return
            if stream is not None:
                self._last_frame[stream] = ts_recv
            if event is None and "u" in data and "b" in data and "a" in data and "B" in data:
                symbol, bid, bid_qty, ask, ask_qty, update_id, ts_event = book_ticker_fields(data, ts_recv)
                if symbol in self._feeds:
                    self._pending.top(symbol, bid, bid_qty, ask, ask_qty, update_id, ts_event, ts_recv)
                    if "E" in data:
                        self._latency["bookTicker"].add(ts_recv - ts_event)
            elif event == "trade":
                symbol, trade_id, price, qty, sold, ts_event = trade_fields(data, ts_recv)
                if symbol in self._feeds:
                    self._pending.trade(symbol, trade_id, price, qty, sold, ts_event, ts_recv)
                    self._latency["trade"].add(ts_recv - ts_event)
            elif event == "depthUpdate":
                self._depth(parse_depth_update(data, ts_recv))
                self._latency_sample("depth", data, ts_recv)
            elif event == "kline":
                kline = parse_kline(data, ts_recv)
                if kline.symbol in self._feeds:
                    self._pending_kline(kline)
                    self._latency["kline"].add(ts_recv - kline.ts_event)
            elif event == "serverShutdown" or stream == "!serverShutdown":
                self._server_shutdowns += 1
                self._reconnect_reason = "serverShutdown: the server is about to close the connection"
                log.warning("%s: serverShutdown received; reconnecting at once", self.settings.venue)
            else:
                self._bad(
                    "unknown_event",
                    "%s: unknown event %r on stream %r: %s",
                    self.settings.venue,
                    event,
                    stream,
                    _preview(raw),
                )
        except DataError as exc:
            self._bad("invalid_payload", "%s: rejected payload on %r: %s", self.settings.venue, stream, exc)
            if event == "depthUpdate":
                self._depth_refused(stream, data)
        except Exception as exc:
            self._bad(
                "unexpected_error", "%s: frame on %r raised %r: %s", self.settings.venue, stream, exc, _preview(raw)
            )
            if event == "depthUpdate":
                self._resync_all()  # the diff may have reached a book without being emitted: trust none downstream

    def _depth_refused(self, stream: str | None, data: dict) -> None:
        """A diff the schema refused may have been a real one the book now lacks: a synced book of its symbol (named
        by the stream, else by ``s``) is forgotten and synced again at once, not left marked synced until the next
        diff shows the gap. An unsynced book needs nothing: a hole in its buffer fails the replay of the snapshot."""
        symbol = stream.partition("@")[0].upper() if stream is not None else data.get("s")
        feed = self._feeds.get(symbol) if type(symbol) is str else None
        if feed is not None and feed.synced:
            feed.forget()
            self._resync(feed.symbol)

    def _latency_sample(self, kind: str, data: dict, ts_recv: int) -> None:
        event_ms = data.get("E")
        if type(event_ms) is int:
            self._latency[kind].add(ts_recv - event_ms * 1_000_000)

    def _depth(self, delta: BookDelta) -> None:
        feed = self._feeds.get(delta.symbol)
        if feed is None:
            return  # unsubscribed: a late frame
        outcome = feed.on_diff(delta)
        if outcome is APPLIED:
            self._pending.add(delta)
        elif outcome is BUFFERED:
            event = self._first_diff.get(delta.symbol)
            if event is not None:
                event.set()
        elif outcome is GAP:
            self._bad(
                "sequence_gap",
                "%s %s: depth update gap (U=%d after u=%d); resyncing from a new snapshot",
                self.settings.venue,
                delta.symbol,
                delta.first_update_id,
                feed.book.last_update_id,
            )
            self._resync(delta.symbol, wait_first=False)
        elif outcome is CROSSED:
            self._bad(
                "crossed_book",
                "%s %s: diff U=%d u=%d leaves the book crossed (best bid at or above best ask); resyncing from a new "
                "snapshot",
                self.settings.venue,
                delta.symbol,
                delta.first_update_id,
                delta.last_update_id,
            )
            self._resync(delta.symbol)
        elif outcome is OUT_OF_ORDER:
            self._bad(
                "out_of_order",
                "%s %s: diff U=%d u=%d is not after the diffs already received; ignored",
                self.settings.venue,
                delta.symbol,
                delta.first_update_id,
                delta.last_update_id,
            )
        elif outcome is RESTART:
            self._bad(
                "book_restart",
                "%s %s: %d diffs in a row (latest u=%d) move on behind a diff the book took (a corrupt one?); "
                "resyncing from fresh diffs",
                self.settings.venue,
                delta.symbol,
                _OUT_OF_ORDER_BEFORE_RESTART,
                delta.last_update_id,
            )
            self._resync(delta.symbol)

    def _resync(self, symbol: str, *, wait_first: bool = True) -> None:
        """``symbol``'s book is no longer known (its client-side book already forgotten or unsynced): say so
        downstream and sync it again (``wait_first``: from the next diff buffered, else at once)."""
        self._book_lost(symbol)
        self._start_sync(symbol, wait_first=wait_first)

    def _bad(self, kind: str, msg: str, *args: Any) -> None:
        self._bad_input[kind] = self._bad_input.get(kind, 0) + 1
        self._log(logging.WARNING, kind, msg, *args)

    # ------------------------------------------------------------------------------------------------ book sync

    def _start_sync(self, symbol: str, *, wait_first: bool = True) -> None:
        task = self._sync_tasks.get(symbol)
        if task is not None and not task.done():
            return
        if wait_first:
            self._first_diff[symbol] = asyncio.Event()
        self._sync_tasks[symbol] = asyncio.get_running_loop().create_task(
            self._sync_guarded(symbol, self._conn_id, wait_first), name=f"veloz-binance-sync-{symbol}"
        )

    async def _sync_guarded(self, symbol: str, conn: int, wait_first: bool) -> None:
        """:meth:`_sync`, and again after anything it raises that no handler expects (a bug, not the wire): counted in
        ``internal_errors``, the book reset here and downstream, a backoff step, and the sync starts over, instead of
        the symbol's book staying unsynced until the next reconnect."""
        while True:
            try:
                await self._sync(symbol, conn, wait_first)
                return
            except Exception as exc:  # noqa: BLE001 - a bug: count it, keep the symbol syncing
                self._internal_errors += 1
                self._log(logging.ERROR, "sync", "%s %s: book sync failed unexpectedly: %r; syncing again",
                          self.settings.venue, symbol, exc)  # fmt: skip
                feed = self._feeds.get(symbol)
                if self._conn_id != conn or feed is None:
                    return
                feed.reset()
                self._book_lost(symbol)
                self._flush()
                backoff = self._snapshot_backoff.get(symbol)
                await self._sleep(backoff.next_delay() if backoff is not None else self.settings.backoff_initial)
                self._first_diff[symbol] = asyncio.Event()  # the next snapshot over fresh diffs, as on a new sync
                wait_first = True

    async def _sync(self, symbol: str, conn: int, wait_first: bool) -> None:
        """Fetch snapshots until ``symbol``'s book is synced (or the connection or subscription is gone)."""
        feed = self._feeds.get(symbol)
        if feed is None:
            return
        backoff = self._snapshot_backoff.get(symbol)
        if backoff is None:
            backoff = self._snapshot_backoff[symbol] = Backoff(
                self.settings.backoff_initial, self.settings.backoff_max, self._rng
            )
        synced_at = self._synced_at.get(symbol)
        if synced_at is not None and time.monotonic() - synced_at < self.settings.backoff_max:
            await self._sleep(backoff.next_delay())  # out of sync again soon after a sync: its next step first
        else:
            backoff.reset()  # its book held (or never synced yet): it starts from the first step
        params = {"symbol": symbol, "limit": str(self.settings.snapshot_limit)}
        weight = depth_weight(self.settings.snapshot_limit)
        # how long to wait for a buffered diff before fetching (None: no limit): snapshot_wait at first; no wait after
        # a gap (its diff is buffered); no limit after the sync started over from stale snapshots (they proved the
        # market moved past them: diffs will come)
        wait: float | None = self.settings.snapshot_wait if wait_first else 0.0
        while self._conn_id == conn and self._feeds.get(symbol) is feed and not feed.synced:
            first = self._first_diff.get(symbol)
            if wait != 0.0 and first is not None and not feed.book.buffered:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(first.wait(), wait)
                wait = 0.0
                continue  # the connection, the subscription or the book may have changed meanwhile
            try:
                body = await self._snapshot(params, weight)
                snapshot = parse_depth_snapshot(body, self._clock(), symbol)
            except DataError as exc:
                self._bad("invalid_snapshot", "%s %s: rejected depth snapshot: %s", self.settings.venue, symbol, exc)
                await self._sleep(backoff.next_delay())
                continue
            except (TimeoutError, _RestError, aiohttp.ClientError, OSError) as exc:
                self._rest_errors += 1
                if isinstance(exc, _RestError) and 400 <= exc.status < 500 and exc.code in _SYMBOL_REFUSED:
                    self._symbol_refused(symbol, exc)
                    await self._sleep(self.settings.refused_symbol_retry)
                    continue
                self._log(logging.WARNING, "rest", "%s %s: depth snapshot failed: %r", self.settings.venue, symbol, exc)
                await self._sleep(backoff.next_delay())
                continue
            self._refused.pop(symbol, None)
            if self._conn_id != conn or self._feeds.get(symbol) is not feed or feed.synced:
                return
            stale_before = feed.stale_snapshots
            crossed_before = feed.crossed
            emitted = feed.on_snapshot(snapshot)
            if emitted is None:
                stale = feed.stale_snapshots > stale_before
                crossed = feed.crossed > crossed_before
                restarted = crossed or (stale and not feed.book.buffered)  # on_snapshot started the symbol over
                self._bad(
                    "crossed_book" if crossed else "stale_snapshot" if stale else "sequence_gap",
                    "%s %s: snapshot lastUpdateId %d %s; fetching again%s",
                    self.settings.venue,
                    symbol,
                    snapshot.last_update_id,
                    "and the buffered diffs leave the book crossed (best bid at or above best ask)"
                    if crossed
                    else "does not connect to the buffered diffs",
                    " over fresh diffs" if restarted else "",
                )
                if restarted:  # a fresh diff first, then the next fetch
                    self._first_diff[symbol] = asyncio.Event()
                    wait = None
                await self._sleep(backoff.next_delay())
                continue
            self._resyncs += 1
            for event in emitted:
                self._pending.add(event)
            self._emit(
                VenueConnection(
                    venue=self.settings.venue,
                    state="resynced",
                    detail=f"snapshot {snapshot.last_update_id}, {len(emitted) - 1} buffered diffs applied",
                    symbol=symbol,
                    reconnects=max(self._connects - 1, 0),
                    resyncs=feed.resyncs,
                    ts=self._clock(),
                )
            )
            self._got_data = True  # the connection works: the next reconnect starts from the first backoff step
            self._synced_at[symbol] = time.monotonic()
            self._flush()
            return

    async def _watch_silence(self, conn: int) -> None:
        """Every ``stream_silence`` s, each book that received no diff since the last look is checked against the
        exchange's ``lastUpdateId`` (see the module docstring): a stream that stopped while the book moved on ends the
        connection (reconnect at once). A synced book is compared with that id (after a grace for diffs in flight);
        an unsynced one with nothing buffered (its sync waits for a diff) with the id of the look before. Runs for one
        connection."""
        period = self.settings.stream_silence
        assert period is not None
        marks: dict[str, tuple[BookSync, int]] = {}
        waiting: dict[str, tuple[BookSync, int]] = {}  # unsynced books waiting for a diff: the exchange's id then
        while self._conn_id == conn and not self._closing:  # (_sleep does not wait once closing)
            await self._sleep(period)
            for symbol, feed in list(self._feeds.items()):
                if self._conn_id != conn or self._closing:
                    return
                mark = (feed, feed.last_seen)
                if marks.get(symbol) != mark or (not feed.synced and feed.book.buffered):
                    marks[symbol] = mark  # diffs came (or the sync task has them): look again next time
                    waiting.pop(symbol, None)
                    continue
                if not feed.synced and symbol in self._refused:
                    continue  # delisted or halted: its sync asks Binance at its own pace
                exchange_id = await self._exchange_update_id(symbol)
                if not feed.synced:
                    # its sync waits for a diff (after stale snapshots, however long): a whole period more without
                    # one while the exchange's book moved on means that none will come on this connection
                    before = waiting.get(symbol)
                    if exchange_id is not None:
                        waiting[symbol] = (feed, exchange_id)
                    if exchange_id is None or before is None or before[0] is not feed or exchange_id <= before[1]:
                        continue
                    if (feed, feed.last_seen) != mark or feed.book.buffered or self._conn_id != conn:
                        continue
                    self._silent(symbol, period, exchange_id, before[1])
                    return
                if exchange_id is None or exchange_id <= feed.book.last_update_id:
                    continue  # not known, or a quiet market: the book is the exchange's
                await self._sleep(_SILENCE_GRACE_S)
                if self._conn_id != conn or self._feeds.get(symbol) is not feed or self._closing:
                    continue
                if (feed, feed.last_seen) != mark or not feed.synced or feed.book.last_update_id >= exchange_id:
                    marks[symbol] = (feed, feed.last_seen)
                    continue
                self._silent(symbol, period, exchange_id, feed.book.last_update_id)
                return

    def _silent(self, symbol: str, period: float, exchange_id: int, known_id: int) -> None:
        """``symbol``'s depth stream stopped while its book moved on: end the connection (reconnect at once)."""
        self._bad(
            "silent_stream",
            "%s %s: no depth diff for %g s while Binance's book moved on (lastUpdateId %d, ours %d): the stream "
            "stopped; reconnecting",
            self.settings.venue,
            symbol,
            period,
            exchange_id,
            known_id,
        )
        self._reconnect_reason = f"silent stream: {symbol}'s depth diffs stopped while its book moved on"
        self._wake()

    async def _exchange_update_id(self, symbol: str) -> int | None:
        """``lastUpdateId`` of ``symbol``'s book at the exchange now (``GET /api/v3/depth?limit=1``), None on failure."""
        try:
            body = await self._rest("/api/v3/depth", {"symbol": symbol, "limit": "1"}, depth_weight(1))
            return parse_depth_snapshot(body, self._clock(), symbol).last_update_id
        except DataError as exc:
            self._bad("invalid_snapshot", "%s %s: rejected depth probe: %s", self.settings.venue, symbol, exc)
        except (TimeoutError, _RestError, aiohttp.ClientError, OSError) as exc:
            self._rest_errors += 1
            self._log(logging.WARNING, "rest", "%s %s: depth probe failed: %r", self.settings.venue, symbol, exc)
        return None

    def _symbol_refused(self, symbol: str, exc: _RestError) -> None:
        """Binance says ``symbol`` is invalid or not trading (delisted or halted in the session): its book stays
        unsynced (a paper venue fills nothing against it); tell the engine with ``VenueConnection(state="error")``
        and ask again only every ``refused_symbol_retry`` s, not at the backoff's pace. The other symbols go on."""
        retry = self.settings.refused_symbol_retry
        detail = (
            f"Binance refused {symbol}'s depth snapshot ({classify(exc.status, exc.code, exc.msg).detail}): delisted "
            f"or halted; its book stays unsynced, next try in {retry:g} s"
        )
        self._refused[symbol] = detail
        self._log(logging.ERROR, "symbol_refused", "%s %s: %s", self.settings.venue, symbol, detail)
        self._emit(
            VenueConnection(
                venue=self.settings.venue,
                state="error",
                detail=detail,
                symbol=symbol,
                reconnects=max(self._connects - 1, 0),
                resyncs=self._feeds[symbol].resyncs,
                ts=self._clock(),
            )
        )
        self._flush()

    # ----------------------------------------------------------------------------------------------------- REST

    async def _snapshot(self, params: dict[str, str], weight: int) -> Any:
        """``GET /api/v3/depth`` in one of the ``snapshots_in_flight`` slots shared by every symbol."""
        assert self._snapshot_slots is not None
        async with self._snapshot_slots:
            self._snapshots_in_flight += 1
            try:
                return await self._rest("/api/v3/depth", params, weight)
            finally:
                self._snapshots_in_flight -= 1

    def _exchange_ms(self) -> int:
        """The exchange's time in ms (the clock plus its measured offset): the weight windows are aligned to it."""
        return self._clock() // 1_000_000 + round(self._clock_offset_ms or 0.0)

    async def _rest(self, path: str, params: dict[str, str] | None = None, weight: int = 1) -> Any:
        """GET ``rest_url + path`` as JSON. Waits out any 429/418 ``Retry-After`` first (and records new ones), and
        for room in the minute's weight budget (``rest_weight_per_minute``) for this request's ``weight``."""
        session = self._session
        if session is None:
            raise _RestError(0, b"no HTTP session (run() is not running)")
        paced = False
        while True:
            wait = self._rate_limited_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            wait = self._weight.wait_for(self._exchange_ms(), weight)
            if wait > 0:
                if not paced:
                    paced = True
                    self._paced += 1
                    self._log(logging.WARNING, "rest_paced", "%s: GET %s waits %.1f s for the REST weight budget "
                              "(%d a minute)", self.settings.venue, path, wait, self.settings.rest_weight_per_minute)  # fmt: skip
                await asyncio.sleep(min(wait, 1.0))  # then look again: the exchange's count may have changed
                continue
            self._rest_requests += 1
            self._weight.note_request(self._exchange_ms(), weight)
            async with session.get(self.settings.rest_url + path, params=params) as resp:
                self._weight.on_headers(resp.headers, self._exchange_ms())
                if resp.status in (418, 429):
                    self._note_rate_limit(resp.status, resp.headers.get("Retry-After"), path)
                    continue
                body = await resp.read()
                if resp.status != 200:
                    raise _RestError(resp.status, body)
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise DataError(f"GET {path}: response is not JSON: {exc}: {_preview(body)}") from exc

    def _note_rate_limit(self, status: int, retry_after: str | None, path: str) -> None:
        try:
            seconds = float(retry_after) if retry_after is not None else None
        except ValueError:
            seconds = None
        if seconds is None or not 0 <= seconds <= _MAX_RETRY_AFTER_S:  # NaN, inf, negative or beyond any real ban
            seconds = self._backoff.ceiling(self._rate_limited)  # no usable header: back off on our own
        self._rate_limited += 1
        until = time.monotonic() + seconds
        if until > self._rate_limited_until:
            self._rate_limited_until = until
            self._rate_limited_until_ns = self._clock() + int(seconds * 1e9)
        self._log(
            logging.WARNING,
            "rate_limited",
            "%s: HTTP %d on GET %s; no REST request for %.1f s (Retry-After %r)",
            self.settings.venue,
            status,
            path,
            seconds,
            retry_after,
        )

    async def _sample_clock(self, conn: int) -> None:
        """Offset of the server clock: ``serverTime - midpoint`` of the sample with the smallest round trip."""
        best: tuple[int, float] | None = None
        for _ in range(self.settings.clock_samples):
            if self._conn_id != conn:
                return
            try:
                start = self._clock()
                body = await self._rest("/api/v3/time")
                end = self._clock()
                server_ms = body["serverTime"]
                if type(server_ms) is not int:
                    raise TypeError(f"serverTime is {server_ms!r}")
            except (TimeoutError, _RestError, aiohttp.ClientError, OSError, DataError) as exc:
                self._rest_errors += 1
                self._log(logging.WARNING, "rest", "%s: GET /api/v3/time failed: %r", self.settings.venue, exc)
                continue
            except (KeyError, TypeError) as exc:
                self._bad("invalid_time", "%s: GET /api/v3/time gave %r", self.settings.venue, exc)
                continue
            rtt = end - start
            offset = server_ms - (start + end) / 2e6
            if best is None or rtt < best[0]:
                best = (rtt, offset)
        if best is not None:
            self._clock_rtt_ms = _ms(best[0])
            self._clock_offset_ms = round(best[1], 3)

    # ------------------------------------------------------------------------------------------ control messages

    async def _control(self, method: str, params: list[str]) -> Any:
        """Send a JSON control message (SUBSCRIBE/UNSUBSCRIBE) and wait for its reply; spaced ``control_interval``
        apart. An error reply raises :class:`InvalidInput`; a lost connection or no reply in time returns None
        (the next connection subscribes to the current symbols)."""
        ws = self._ws
        if ws is None or self._control_lock is None:
            return None
        loop = asyncio.get_running_loop()
        async with self._control_lock:
            wait = self._last_control + self.settings.control_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if self._ws is not ws:
                return None
            self._control_id += 1
            request_id = self._control_id
            waiter = self._control_waiters[request_id] = loop.create_future()
            try:
                await ws.send_str(orjson.dumps({"method": method, "params": params, "id": request_id}).decode())
            except (aiohttp.ClientError, OSError, ConnectionError) as exc:
                self._control_waiters.pop(request_id, None)
                self._log(logging.WARNING, "control", "%s: %s not sent: %r", self.settings.venue, method, exc)
                return None
            self._last_control = time.monotonic()
        try:
            reply = await asyncio.wait_for(waiter, self.settings.request_timeout)
        except TimeoutError:
            self._bad("control_timeout", "%s: no reply to %s id %d", self.settings.venue, method, request_id)
            return None
        finally:
            self._control_waiters.pop(request_id, None)
        if isinstance(reply, dict) and ("error" in reply or "code" in reply):
            error = reply.get("error", reply)
            raise InvalidInput(f"{method} {params} refused: {error!r:.200}")
        return None if reply is None else reply.get("result")

    def _control_reply(self, data: dict) -> None:
        """A reply to a control message: ``{"result": ..., "id": n}`` or an error (Binance writes ``{"error": {"code",
        "msg"}, "id"}``; the docs also show ``{"code", "msg", "id"}``)."""
        request_id = data.get("id")
        waiter = self._control_waiters.get(request_id) if type(request_id) is int else None
        if waiter is None:
            self._bad("unexpected_reply", "%s: reply to no pending request: %s", self.settings.venue, _preview(data))
        elif not waiter.done():
            waiter.set_result(data)

    async def _catch_up_subscriptions(self, conn: int) -> None:
        """Symbols (un)subscribed while the connection was being opened: tell the server now."""
        wanted = {name for symbol in self._feeds for name in self.settings.streams(symbol)}
        add = sorted(wanted - self._connection_streams)
        drop = sorted(self._connection_streams - wanted)
        self._connection_streams = wanted
        with contextlib.suppress(InvalidInput):
            if add and self._conn_id == conn:
                await self._control("SUBSCRIBE", add)
            if drop and self._conn_id == conn:
                await self._control("UNSUBSCRIBE", drop)

    # -------------------------------------------------------------------------------------------------- helpers

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._conn_tasks.add(task)
        task.add_done_callback(self._conn_tasks.discard)

    def _wake(self) -> None:
        if self._queue is not None:
            self._queue.put_nowait((0, _WAKE))
        if self._symbols_changed is not None:
            self._symbols_changed.set()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, cut short by close()."""
        if seconds <= 0 or self._closing:
            return
        if self._symbols_changed is None:
            await asyncio.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        while not self._closing:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.05))

    def _counts(self) -> dict[str, Any]:
        return {"reconnects": max(self._connects - 1, 0), "resyncs": self._resyncs_total(), "ts": self._clock()}

    def _resyncs_total(self) -> int:
        return self._resyncs

    def _emit(self, event: Any) -> None:
        self._pending.add(event)

    def _pending_kline(self, kline: Kline) -> None:
        """Queue a kline update. Binance sends one per trade while the candle is open, each superseding the last: a
        later update of the same open candle in the same batch replaces the earlier one (which leaves the batch),
        so a batch carries at most one open update per candle, at the place of its latest; a closed one always
        stays."""
        key = (kline.symbol, kline.interval_ns)
        pending = self._pending
        last = self._open_klines.get(key)
        if last is not None:
            earlier = pending.object_at(last)
            if earlier is not None and earlier.open_time == kline.open_time:
                pending.drop(last)
                self._klines_superseded += 1
        row = pending.add(kline)
        if kline.closed:
            self._open_klines.pop(key, None)
        else:
            self._open_klines[key] = row

    def _flush(self) -> None:
        """Hand the pending events to the sink (in ``batch_max`` pieces). A sink that raises, or a batch that cannot be
        built, loses the batch: every book is then reset downstream and resynced, so that none there is ever wrong."""
        if not len(self._pending):
            return
        pending, self._pending = self._pending, MarketBatchBuilder()  # nothing that fails to build stays queued
        self._open_klines.clear()
        try:
            whole = pending.build()
        except Exception as exc:  # a value the schemas let through (a bug): the batch is lost, never the client
            self._internal_errors += 1
            self._log(
                logging.ERROR,
                "batch",
                "%s: a batch of %d events cannot be built (%r); dropped, every book resynced",
                self.settings.venue,
                len(pending),
                exc,
            )
            self._resync_all()
            return
        batch_max = self.settings.batch_max
        for start in range(0, len(whole), batch_max):
            batch: MarketBatch | list[Any] = whole[start : start + batch_max] if len(whole) > batch_max else whole
            if not self._columnar:
                batch = batch.events()  # type: ignore[union-attr]
            try:
                self._sink(batch)
            except Exception as exc:
                self._sink_errors += 1
                self._log(logging.ERROR, "sink", "%s: sink raised %r; resyncing every book", self.settings.venue, exc)
                self._resync_all()
                return
            self._events_out += len(batch)
            self._batches_out += 1

    def _resync_all(self) -> None:
        """Events were lost on their way downstream: no book there can be trusted (see :meth:`_resync_books`)."""
        self._resync_books(list(self._feeds))

    def _resync_books(self, symbols: Iterable[str]) -> None:
        """Events of ``symbols`` were lost on their way downstream or by a consumer: no book of theirs there can be
        trusted. Say so, and resync them (when connected; otherwise the next connection does)."""
        for symbol in symbols:
            feed = self._feeds[symbol]
            self._book_lost(symbol)
            if self._ws is None:
                continue
            feed.reset()
            task = self._sync_tasks.pop(symbol, None)
            if task is not None:
                task.cancel()
            self._start_sync(symbol, wait_first=True)

    def _book_lost(self, symbol: str) -> None:
        """Tell downstream that ``symbol``'s book is unknown until its next snapshot (see the module docstring)."""
        now = self._clock()
        self._emit(
            BookDelta(
                symbol=symbol,
                first_update_id=-1,
                last_update_id=-1,
                bids=(),
                asks=(),
                is_snapshot=True,
                ts_event=now,
                ts_recv=now,
            )
        )


# ------------------------------------------------------------------------------------------------------------ thread


class LoopThread:
    """An async client (``run()`` until ``close()``, and ``status()``) on its own event loop in a daemon thread: the
    market-data client and the trading adapter each run in one, for an actor or the single-process engine."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._started = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> Any:
        if self._thread is not None:
            raise InvalidInput(f"{type(self).__name__}.start() called twice")
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, args=(loop,), name=self._name, daemon=True)
        self._thread.start()
        self._started.wait(5.0)
        return self

    def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            task = loop.create_task(self.client.run())
            loop.call_soon(self._started.set)
            loop.run_until_complete(task)
        except BaseException as exc:  # run() only ends by close(); anything else is a bug worth keeping
            self.error = exc
            log.exception("%s ended with an error", self._name)
        finally:
            self._started.set()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._done.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    def _call(self, coro: Any, timeout: float) -> Any:
        if not self.running or self._loop is None:
            coro.close()
            raise InvalidInput(f"the {self._name} thread is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def status(self, timeout: float = 5.0) -> dict[str, Any]:
        """The client's ``status()``, read on the loop thread (directly once the thread has ended)."""
        if not self.running:
            return self.client.status()  # type: ignore[no-any-return]

        async def read() -> dict[str, Any]:
            return self.client.status()  # type: ignore[no-any-return]

        return self._call(read(), timeout)  # type: ignore[no-any-return]

    def close(self, timeout: float = 5.0) -> None:
        """Stop the client and join the thread."""
        if self.running and self._loop is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.client.close(), self._loop).result(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Any:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MarketDataThread(LoopThread):
    """One :class:`BinanceMarketData` on its own event loop in a daemon thread. ``sink`` is called from that thread;
    ``close()`` makes the client emit ``VenueConnection(closed)``.

    >>> feed = MarketDataThread(settings, sink).start()        # doctest: +SKIP
    >>> feed.wait_synced(10.0)                                 # doctest: +SKIP
    True
    """

    client: BinanceMarketData

    def __init__(self, settings: MarketDataSettings, sink: Callable[[Any], None], **kw: Any) -> None:
        super().__init__(BinanceMarketData(settings, sink, **kw), f"veloz-{settings.venue}-market-data")

    def subscribe(self, symbols: Iterable[str] | str, timeout: float = 10.0) -> None:
        """Subscribe live; returns once the server acknowledged (books sync in the background: :meth:`wait_synced`)."""
        self._call(self.client.subscribe(symbols), timeout)

    def unsubscribe(self, symbols: Iterable[str] | str, timeout: float = 10.0) -> None:
        self._call(self.client.unsubscribe(symbols), timeout)

    def record_publish(self, batch: Iterable[Any], now: int | None = None) -> None:
        self.client.record_publish(batch, now)

    def resync(self, symbols: Iterable[str] | str) -> None:
        """Have the client resync ``symbols``' books (:meth:`BinanceMarketData.resync`) on its loop, without waiting:
        callable from any thread, even one the sink waits for (a delivery thread whose queue is full)."""
        loop = self._loop
        if self.running and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the client is gone with its books
                loop.call_soon_threadsafe(self.client.resync, symbols)

    def synced(self, timeout: float = 5.0) -> bool:
        if not self.running:
            return False

        async def read() -> bool:
            return self.client.synced()

        return self._call(read(), timeout)  # type: ignore[no-any-return]

    def wait_synced(self, timeout: float) -> bool:
        """Wait until connected with every symbol's book synced; False if that did not happen within ``timeout`` (also
        when the loop thread was too busy to answer in time: a wait, never an exception)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.synced(timeout=max(deadline - time.monotonic(), 0.1)):
                    return True
            except TimeoutError:  # the loop was busy past the read's own timeout: not known to be synced yet
                pass
            if time.monotonic() >= deadline or not self.running:
                return False
            time.sleep(0.01)
