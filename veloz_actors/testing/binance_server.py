"""A local server that speaks Binance's spot market-data API over real sockets, replaying recorded captures.

Tests start it on 127.0.0.1 with a free port and point a real client (REST + websocket streams) at it::

    >>> with BinanceTestServer(["../shared/data/ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"],
    ...                        speed=0, paused=True) as server:                      # doctest: +SKIP
    ...     # connect to server.stream_url + "/ws/btcusdt@depth@100ms", then:
    ...     server.wait_connections(1)
    ...     server.publish(100)                     # the next 100 market events, now, to every connection
    ...     server.book("BTCUSDT")                  # what GET /api/v3/depth answers (full book, 1e-8 units)

**The market.** Every capture (``ticks_l2/*_ws.txt.gz``: ``<receive ts> <raw JSON>`` lines of combined-stream
envelopes and one REST depth snapshot line) is loaded at construction. Each symbol's market starts at its snapshot
line: the server's book is that snapshot plus the diffs received before it that follow it (Binance's
buffer-then-snapshot procedure, so the book is the bridged one), and nothing received before the snapshot line is
published. From then on the events of all captures are published in receive-time order, paced at ``speed`` x real
time by their receive times (``speed=0``: as fast as the sockets take them), each depth diff applied to the server's
book, so ``GET /api/v3/depth`` always answers the current book. ``paused=True`` publishes nothing until
:meth:`BinanceTestServer.publish`. After the last event :attr:`BinanceTestServer.done` is True; streams stay open
and REST keeps answering. With ``loop=True`` (soak runs) the captures start over instead: each book back to its first
state, update ids moved past every id sent (with a hole, so a client resyncs from a new snapshot), trade ids past every
trade sent, event times on from now, the latest 200,000 trades of each symbol kept for REST.

**Payloads** are the recorded bytes. With ``shift_times`` (default) the event times ``E``/``T`` are moved by one
constant (wall clock at start minus the first event time) so that latency exchange -> receive means something; the
payload is cut at load time into a template around those numbers, so shifting costs two integer formats per event.
``kline`` and ``aggTrade`` payloads are built from the published trades.

**Streams**: ``<symbol>@depth@100ms`` / ``@depth`` / ``@depth@1000ms`` (the same diffs), ``@depth<5|10|20>[@100ms]``
(partial book), ``@bookTicker``, ``@trade``, ``@aggTrade`` (one per trade), ``@kline_<interval>`` (at Binance's
update speed: on the first trade of a candle, then on a trade at least 1000 ms (``1s`` candles) or 2000 ms (other
intervals) of event time after the last update sent, and once more with ``x: true`` when the next event's time passes
its close). Raw streams at
``/ws/<stream>[/<stream>...]``, combined at ``/stream?streams=a/b``. ``SUBSCRIBE``, ``UNSUBSCRIBE``,
``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY``/``GET_PROPERTY`` (``combined``) as documented; a well-formed stream name of
an unknown symbol or kind is accepted and never sends anything (as Binance does). The server pings every
``ping_interval`` seconds with a payload and closes a connection whose oldest unanswered ping is older than
``pong_timeout``. Each connection has a bounded send queue (``send_queue`` frames): when it is full, a paced
publisher disconnects the client at once (as Binance drops a slow consumer); at ``speed=0`` the publisher waits for
it up to ``slow_client_timeout`` seconds, then disconnects it.

**REST** (GET, JSON, Binance error bodies ``{"code": -1121, "msg": "Invalid symbol."}`` with HTTP 400, header
``X-MBX-USED-WEIGHT-1M`` with the documented weights): ``/api/v3/ping``, ``/time``, ``/exchangeInfo``, ``/depth``,
``/trades``, ``/aggTrades``, ``/klines``, ``/ticker/bookTicker``.

**Faults** (:class:`Faults`, callable from the test thread while the server runs): dropped connections, stalls,
skipped update ids, diffs that cross a client's book, a delisted symbol, a symbol's status or filters changed
(``change_symbol``), malformed frames, stale snapshots, slow ``/time`` and ``/depth`` answers, rate limits
(429/418), ``serverShutdown``, restart. Every REST request of the market-data endpoints is recorded
(:meth:`BinanceTestServer.rest_log`: path, symbol, arrival and answer times, status, how many of its path were in
flight when it arrived), so a test sees how a client paces them.

**Trading** (:mod:`.binance_trading`, ``server.trading``): accounts (:meth:`BinanceTestServer.add_account`), a
matching engine fed with the published market, the SIGNED REST endpoints (``/api/v3/order``, ``openOrders``,
``myTrades``, ``account``), the WebSocket API at ``/ws-api/v3`` with the user data stream, rate limits shared with
the market data endpoints (``X-MBX-USED-WEIGHT-*``; a trading side's IP ban refuses market data too) and trading
faults (``server.trading_faults``). Nothing of it costs the market data path until the first order arrives.

Run by hand (benchmarks)::

    python -m veloz_actors.testing.binance_server --capture FILE [--capture FILE] [--speed X] [--port P] [--loop]

It prints its URLs as one JSON line and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import gzip
import os
import re
import signal
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiohttp import WSMsgType, web

from .._exceptions import DataError, SequenceGap
from ..core.l2book import L2Book
from ..messages import BookDelta
from ..venues.binance.schemas import decimal_units, parse_depth_snapshot, parse_depth_update
from .binance_trading import Trading

__all__ = ["BinanceTestServer", "Faults", "RestRequest", "build_app", "main"]

_T = TypeVar("_T")

DEFAULT_EXCHANGE_INFO = (
    Path(__file__).resolve().parents[2].parent
    / "shared/data/binance-api/examples-nautilus/http_spot_market_exchange_info.json"
)

_SCALE = 100_000_000
_DEPTH, _TICKER, _TRADE = 0, 1, 2
_TIME_FIELD = re.compile(rb'"([ET])":(\d+)')
#: trades a looping server keeps per symbol, from one pass to the next (REST trades, aggTrades and klines read them)
_LOOP_KEEP_TRADES = 200_000
_ID_FIELD = re.compile(rb'"([Uut])":(\d+)')  # depth/bookTicker update ids, trade ids: moved on each loop pass
# a stream name: lowercase symbol (or "!" for all-market streams), then "@kind" parts ("@bookTicker", "@kline_1m@+08:00")
_STREAM_NAME = re.compile(r"^(?:![A-Za-z0-9_]+|[a-z0-9._\-]+)(?:@[A-Za-z0-9_:+\-]+)+$")
_REST_SYMBOL = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_REST_INT = re.compile(r"^[0-9]{1,20}$")
_WS_ID = re.compile(r"^[A-Za-z0-9\-_]{1,36}$")
_SYMBOLS_RANGE = '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_DAY_MS = 86_400_000
# a kline stream's update speed (web-socket-streams.md): 1000 ms for ``1s`` candles, 2000 ms for the other intervals
_KLINE_UPDATE_MS_1S = 1000
_KLINE_UPDATE_MS = 2000
# Binance's kline intervals; None = calendar month. Weekly candles open on Monday 00:00 UTC (epoch day 4).
INTERVALS: dict[str, int | None] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": _DAY_MS,
    "3d": 3 * _DAY_MS,
    "1w": 7 * _DAY_MS,
    "1M": None,
}
_WRITE_BATCH = 1 << 18  # bytes of text frames per socket write
_SMALL_HEADERS = tuple(bytes((0x81, n)) for n in range(126))  # FIN + text opcode, unmasked, 7-bit length
_PACK_16 = struct.Struct("!BBH").pack
_PACK_64 = struct.Struct("!BBQ").pack
_QUOTES = ("USDT", "FDUSD", "USDC", "BUSD", "TUSD", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL", "JPY")
FAULT_KINDS = ("json", "unknown_event", "absurd_price", "out_of_order", "runaway_update_id")


def _fmt(units: int) -> str:
    """1e-8 units as Binance writes them: ``"61837.63000000"``."""
    whole, frac = divmod(units, _SCALE)
    return f"{whole}.{frac:08d}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _bucket(interval: str, t_ms: int) -> tuple[int, int]:
    """``(open_ms, next_open_ms)`` of the ``interval`` candle that holds ``t_ms`` (UTC)."""
    length = INTERVALS[interval]
    if length is None:
        dt = datetime.fromtimestamp(t_ms / 1000, UTC)
        start = datetime(dt.year, dt.month, 1, tzinfo=UTC)
        nxt = datetime(dt.year + dt.month // 12, dt.month % 12 + 1, 1, tzinfo=UTC)
        return int(start.timestamp()) * 1000, int(nxt.timestamp()) * 1000
    offset = 4 * _DAY_MS if interval == "1w" else 0
    open_ms = (t_ms - offset) // length * length + offset
    return open_ms, open_ms + length


# ------------------------------------------------------------------------------------------------------- captures


class _Event:
    """One recorded market event, pre-encoded: the recorded payload bytes cut around its time fields."""

    __slots__ = ("kind", "symbol", "recv_ns", "raw", "parts", "times", "event_ms", "delta", "trade", "ticker")

    def __init__(self, kind: int, symbol: str, recv_ns: int, raw: bytes, data: dict[str, Any]) -> None:
        self.kind = kind
        self.symbol = symbol
        self.recv_ns = recv_ns
        self.raw = raw
        parts: list[bytes] = []
        times: list[int] = []
        last = 0
        for match in _TIME_FIELD.finditer(raw):
            parts.append(raw[last : match.start(2)])
            times.append(int(match.group(2)))
            last = match.end(2)
        parts.append(raw[last:])
        self.parts = tuple(parts)
        self.times = tuple(times)
        event_ms = data.get("E", data.get("T"))
        self.event_ms: int | None = event_ms if type(event_ms) is int else None
        self.delta: BookDelta | None = None
        self.trade: tuple[int, int, int, str, str, int, bool, bool] | None = None
        self.ticker: tuple[int, str, str, str, str] | None = None

    def shifted(self, update_ids: int, trade_ids: int) -> _Event:
        """This event with its update ids (``U``/``u``) moved by ``update_ids`` and its trade id (``t``) by
        ``trade_ids``: the same market again, later (a looping server's next pass)."""
        moves = {b"U": update_ids, b"u": update_ids, b"t": trade_ids}
        raw = _ID_FIELD.sub(lambda m: b'"%s":%d' % (m.group(1), int(m.group(2)) + moves[m.group(1)]), self.raw)
        out = _Event(self.kind, self.symbol, self.recv_ns, raw, {"E": self.event_ms})
        if self.delta is not None:
            out.delta = replace(
                self.delta,
                first_update_id=self.delta.first_update_id + update_ids,
                last_update_id=self.delta.last_update_id + update_ids,
            )
        if self.trade is not None:
            out.trade = (self.trade[0] + trade_ids, *self.trade[1:])
        if self.ticker is not None:
            out.ticker = (self.ticker[0] + update_ids, *self.ticker[1:])
        return out

    def render(self, shift_ms: int) -> bytes:
        """The payload with every ``E``/``T`` moved by ``shift_ms`` (the recorded bytes when 0)."""
        if not shift_ms or not self.times:
            return self.raw
        parts = self.parts
        out = [parts[0]]
        for i, t in enumerate(self.times):
            out.append(str(t + shift_ms).encode())
            out.append(parts[i + 1])
        return b"".join(out)


class _Capture:
    """A loaded capture file: its symbol, REST snapshot, the diffs before it, and the events from it on."""

    __slots__ = ("path", "symbol", "snapshot", "pre_diffs", "events", "price_decimals", "qty_decimals")

    def __init__(
        self,
        path: str,
        symbol: str,
        snapshot: BookDelta,
        pre_diffs: list[_Event],
        events: list[_Event],
        price_decimals: int,
        qty_decimals: int,
    ) -> None:
        self.path = path
        self.symbol = symbol
        self.snapshot = snapshot
        self.pre_diffs = pre_diffs
        self.events = events
        self.price_decimals = price_decimals
        self.qty_decimals = qty_decimals


_CAPTURES: dict[tuple[str, int, int], _Capture] = {}
_CAPTURES_LOCK = threading.Lock()


def _decimals(text: str) -> int:
    frac = text.partition(".")[2].rstrip("0")
    return len(frac)


def load_capture(path: str | os.PathLike[str]) -> _Capture:
    """Load (once per process: the events are immutable) a spot capture; ValueError naming the file if it cannot
    serve a market (no REST snapshot line, futures data, several symbols, a broken update-id chain)."""
    name = os.fspath(path)
    stat = os.stat(name)
    key = (os.path.realpath(name), stat.st_mtime_ns, stat.st_size)
    with _CAPTURES_LOCK:
        cached = _CAPTURES.get(key)
        if cached is None:
            cached = _CAPTURES[key] = _load_capture(name)
        return cached


def _load_capture(name: str) -> _Capture:
    opener = gzip.open if name.endswith(".gz") else open
    with opener(name, "rb") as fh:
        lines = fh.read().splitlines()
    symbol: str | None = None
    snapshot_raw: dict[str, Any] | None = None
    snapshot_recv = 0
    pre: list[_Event] = []
    post: list[_Event] = []
    price_dec = qty_dec = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        ts_text, _, body = line.partition(b" ")
        try:
            recv = int(ts_text)
            obj = orjson.loads(body)
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"{name}:{lineno}: not a '<receive ts> <JSON>' capture line: {exc}") from None
        if recv < 10**17:  # the 2023 captures are in microseconds
            recv *= 1000
        if "lastUpdateId" in obj:
            if snapshot_raw is not None:
                raise ValueError(f"{name}:{lineno}: a second REST depth snapshot line")
            snapshot_raw = obj
            snapshot_recv = recv
            continue
        stream = obj.get("stream")
        data = obj.get("data")
        if type(stream) is not str or not isinstance(data, dict):
            raise ValueError(f"{name}:{lineno}: not a combined-stream envelope")
        if "pu" in data or stream.endswith("@0ms") or "markPrice" in stream:
            raise ValueError(
                f"{name}: a futures capture ({stream}); this server speaks Binance spot only (use a spot capture)"
            )
        prefix = b'{"stream":"' + stream.encode() + b'","data":'
        raw = body[len(prefix) : -1] if body.startswith(prefix) and body.endswith(b"}") else orjson.dumps(data)
        event_symbol = data.get("s")
        if type(event_symbol) is not str:
            raise ValueError(f"{name}:{lineno}: event without a symbol")
        if symbol is None:
            symbol = event_symbol
        elif symbol != event_symbol:
            raise ValueError(f"{name}: holds several symbols ({symbol}, {event_symbol}); one capture = one symbol")
        kind_name = stream.partition("@")[2]
        if kind_name.startswith("depth"):
            ev = _Event(_DEPTH, symbol, recv, raw, data)
            try:
                ev.delta = parse_depth_update(data, recv)
            except DataError as exc:
                raise ValueError(f"{name}:{lineno}: {exc}") from None
            for price, _ in data["b"][:1] + data["a"][:1]:
                price_dec = max(price_dec, _decimals(price))
        elif kind_name == "bookTicker":
            ev = _Event(_TICKER, symbol, recv, raw, data)
            ev.ticker = (int(data["u"]), data["b"], data["B"], data["a"], data["A"])
        elif kind_name == "trade":
            ev = _Event(_TRADE, symbol, recv, raw, data)
            price = decimal_units(data["p"], "trade price", allow_zero=False)
            qty = decimal_units(data["q"], "trade qty", allow_zero=False)
            ev.trade = (data["t"], price, qty, data["p"], data["q"], data["T"], bool(data["m"]), bool(data["M"]))
            price_dec = max(price_dec, _decimals(data["p"]))
            qty_dec = max(qty_dec, _decimals(data["q"]))
        else:
            continue  # a stream this server does not replay
        if snapshot_raw is None:
            if ev.kind == _DEPTH:
                pre.append(ev)
        else:
            post.append(ev)
    if symbol is None:
        raise ValueError(f"{name}: no market events")
    if snapshot_raw is None:
        raise ValueError(
            f"{name}: no REST depth snapshot line ({{'lastUpdateId': ...}}); the server's book must start from one, "
            "use a capture with a snapshot (e.g. binance_spot_btcusdt_20240808_ws.txt.gz)"
        )
    snapshot = parse_depth_snapshot(snapshot_raw, snapshot_recv, symbol)
    for price, _ in snapshot.bids[:1] + snapshot.asks[:1]:
        price_dec = max(price_dec, _decimals(_fmt(price)))
    for _, qty in snapshot.bids[:50] + snapshot.asks[:50]:
        qty_dec = max(qty_dec, _decimals(_fmt(qty)))
    # Published diffs are those the bridged book does not already hold; check the chain once, here.
    book = _initial_book(symbol, snapshot, pre)
    events: list[_Event] = []
    for ev in post:
        if ev.kind == _DEPTH:
            assert ev.delta is not None
            if ev.delta.last_update_id <= book.last_update_id:
                continue
            try:
                book.apply(ev.delta)
            except SequenceGap as exc:
                raise ValueError(f"{name}: the depth diffs break after the snapshot: {exc}") from None
        events.append(ev)
    return _Capture(name, symbol, snapshot, pre, events, price_dec, qty_dec)


def _initial_book(symbol: str, snapshot: BookDelta, pre_diffs: Sequence[_Event]) -> L2Book:
    """Binance's procedure: buffer the diffs, apply the snapshot, replay the buffered diffs that follow it."""
    book = L2Book(symbol)
    for ev in pre_diffs:
        assert ev.delta is not None
        book.apply(ev.delta)
    try:
        book.apply_snapshot(snapshot)
    except SequenceGap as exc:
        raise ValueError(f"{symbol}: the diffs received before the snapshot do not bridge it: {exc}") from None
    return book


# ----------------------------------------------------------------------------------------------------- the market


class _Candle:
    __slots__ = ("open_ms", "next_ms", "first_id", "last_id", "o", "h", "l", "c", "v", "n", "q", "tv", "tq")

    def __init__(self, open_ms: int, next_ms: int, trade_id: int, price: int) -> None:
        self.open_ms = open_ms
        self.next_ms = next_ms
        self.first_id = self.last_id = trade_id
        self.o = self.h = self.l = self.c = price
        self.v = self.n = self.q = self.tv = self.tq = 0

    def add(self, trade_id: int, price: int, qty: int, buyer_maker: bool) -> None:
        if price > self.h:
            self.h = price
        if price < self.l:
            self.l = price
        self.c = price
        self.last_id = trade_id
        self.v += qty
        self.n += 1
        self.q += price * qty
        if not buyer_maker:  # the taker bought
            self.tv += qty
            self.tq += price * qty

    def stream_payload(self, symbol: str, interval: str, event_ms: int, closed: bool) -> bytes:
        return orjson.dumps(
            {
                "e": "kline",
                "E": event_ms,
                "s": symbol,
                "k": {
                    "t": self.open_ms,
                    "T": self.next_ms - 1,
                    "s": symbol,
                    "i": interval,
                    "f": self.first_id,
                    "L": self.last_id,
                    "o": _fmt(self.o),
                    "c": _fmt(self.c),
                    "h": _fmt(self.h),
                    "l": _fmt(self.l),
                    "v": _fmt(self.v),
                    "n": self.n,
                    "x": closed,
                    "q": _fmt(self.q // _SCALE),
                    "V": _fmt(self.tv),
                    "Q": _fmt(self.tq // _SCALE),
                    "B": "0",
                },
            }
        )

    def rest_row(self) -> list[Any]:
        return [
            self.open_ms,
            _fmt(self.o),
            _fmt(self.h),
            _fmt(self.l),
            _fmt(self.c),
            _fmt(self.v),
            self.next_ms - 1,
            _fmt(self.q // _SCALE),
            self.n,
            _fmt(self.tv),
            _fmt(self.tq // _SCALE),
            "0",
        ]


# (time ms (shifted), trade id, price, qty, price text, qty text, buyer is maker, best match)
_TradeRow = tuple[int, int, int, int, str, str, bool, bool]


class _SymbolState:
    """One symbol's live market on the server: book, recent trades, last book ticker, open candles."""

    def __init__(self, capture: _Capture) -> None:
        self.symbol = capture.symbol
        self.lower = capture.symbol.lower()
        self.capture = capture
        self.book = _initial_book(capture.symbol, capture.snapshot, capture.pre_diffs)
        self.trades: list[_TradeRow] = []
        self.trades_dropped = 0  # rows a looping server let go (the aggregate trade id of trades[0])
        self.ticker: tuple[int, str, str, str, str] | None = None
        self.candles: dict[str, _Candle | None] = {}  # interval -> open candle, for subscribed kline streams
        self.skip = 0
        self.cross = 0  # the next diffs to send with a bid at the best ask (Faults.cross_book)
        self.sent_diffs: deque[tuple[int, bytes]] = deque(maxlen=4)  # (u, payload) of the last diffs sent
        self.last_partial_ms: dict[str, int] = {}
        self.last_kline_ms: dict[str, int] = {}  # kline stream -> event time of its last open-candle update
        lower = self.lower
        self.depth_names = (f"{lower}@depth@100ms", f"{lower}@depth", f"{lower}@depth@1000ms")
        self.ticker_name = f"{lower}@bookTicker"
        self.trade_name = f"{lower}@trade"
        self.agg_name = f"{lower}@aggTrade"
        self.kline_names = {interval: f"{lower}@kline_{interval}" for interval in INTERVALS}
        self.partial_names = tuple(
            (f"{lower}@depth{levels}{suffix}", levels, period)
            for levels in (5, 10, 20)
            for suffix, period in (("", 1000), ("@100ms", 0), ("@1000ms", 1000))
        )

    def ensure_candles(self, interval: str) -> None:
        """Start keeping ``interval``'s open candle (built from the trades published so far)."""
        if interval in self.candles:
            return
        candle: _Candle | None = None
        if self.trades:
            open_ms, next_ms = _bucket(interval, self.trades[-1][0])
            for row in self.trades:
                if row[0] < open_ms:
                    continue
                if candle is None:
                    candle = _Candle(open_ms, next_ms, row[1], row[2])
                candle.add(row[1], row[2], row[3], row[6])
        self.candles[interval] = candle

    def rest_klines(self, interval: str, start: int | None, end: int | None, limit: int) -> list[list[Any]]:
        """Klines from the published trades, gaps filled with empty candles at the previous close (as Binance)."""
        rows: list[_Candle] = []
        current: _Candle | None = None
        for row in self.trades:
            t = row[0]
            if current is None or t >= current.next_ms:
                open_ms, next_ms = _bucket(interval, t)
                while current is not None and current.next_ms < open_ms:  # empty candles between trades
                    gap = _Candle(current.next_ms, _bucket(interval, current.next_ms)[1], -1, current.c)
                    gap.first_id = gap.last_id = -1
                    rows.append(gap)
                    current = gap
                current = _Candle(open_ms, next_ms, row[1], row[2])
                rows.append(current)
            current.add(row[1], row[2], row[3], row[6])
        if start is not None:
            rows = [c for c in rows if c.open_ms >= start]
        if end is not None:
            rows = [c for c in rows if c.open_ms <= end]
        rows = rows[:limit] if start is not None else rows[-limit:]
        return [c.rest_row() for c in rows]


class _Faulty:
    """The fault switches' state on the server (touched only on the server's loop)."""

    def __init__(self) -> None:
        self.stall_until = 0.0
        self.stale_snapshots = 0
        self.slow_times = 0
        self.slow_time_seconds = 0.0
        self.slow_depths = 0
        self.slow_depth_seconds = 0.0
        self.rate_limited = 0
        self.rate_status = 429
        self.retry_after = 2
        self.delisted: set[str] = set()


# --------------------------------------------------------------------------------------------------- connections


class _Conn:
    """One market-stream websocket: its subscriptions, bounded send queue and writer task."""

    def __init__(
        self, hub: _Hub, ws: web.WebSocketResponse, transport: Any, drain: Callable[[], Awaitable[None]], combined: bool
    ) -> None:
        self.hub = hub
        self.ws = ws
        self.transport = transport
        self.drain = drain
        self.combined = combined
        self.streams: dict[str, None] = {}  # ordered set, in subscription order
        self.queue: deque[Any] = deque()
        self.waiting = False
        self.wake = asyncio.Event()
        self.flush_waiters: list[asyncio.Future[None]] = []
        self.space_waiter: asyncio.Future[None] | None = None
        self.pings: deque[tuple[bytes, float]] = deque()  # unanswered pings: (payload, sent at)
        self.closed = False
        self.sent = 0
        self.writer: asyncio.Task[None] | None = None

    def push(self, frame: bytes) -> None:
        queue = self.queue
        queue.append(frame)
        if self.waiting:
            self.waiting = False
            self.wake.set()
        if len(queue) >= self.hub.limit:
            if self.hub.backpressure:
                self.hub.full_flag = True
            elif len(queue) > self.hub.limit:
                self.hub.overflow(self)

    def push_control(self, opcode: WSMsgType, data: bytes, *, first: bool = False) -> None:
        if first:
            self.queue.appendleft((opcode, data))
        else:
            self.queue.append((opcode, data))
        if self.waiting:
            self.waiting = False
            self.wake.set()

    async def write_loop(self) -> None:
        """Hand the queued frames to the socket: the data frames waiting at once as one write (server frames are
        unmasked and uncompressed, RFC 6455 5.2), control frames through aiohttp; wait while the socket is full."""
        queue = self.queue
        ws = self.ws
        transport = self.transport
        low = self.hub.limit // 2
        small = _SMALL_HEADERS
        try:
            while not self.closed:
                if not queue:
                    self._flushed()
                    self.waiting = True
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                if type(queue[0]) is bytes:
                    chunks: list[bytes] = []
                    size = count = 0
                    while queue and size < _WRITE_BATCH and type(queue[0]) is bytes:
                        frame = queue.popleft()
                        n = len(frame)
                        chunks.append(
                            small[n] if n < 126 else _PACK_16(0x81, 126, n) if n < 65536 else _PACK_64(0x81, 127, n)
                        )
                        chunks.append(frame)
                        size += n
                        count += 1
                    if transport is None or transport.is_closing() or ws.closed:
                        break
                    transport.write(b"".join(chunks))
                    self.sent += count
                    if transport.get_write_buffer_size() > _WRITE_BATCH:
                        await self.drain()
                else:
                    opcode, data = queue.popleft()
                    if opcode is WSMsgType.CLOSE:
                        await asyncio.wait_for(ws.close(code=int.from_bytes(data, "big"), drain=False), 1.0)
                        break
                    await ws.send_frame(data, opcode)
                waiter = self.space_waiter
                if waiter is not None and len(queue) <= low:
                    self.space_waiter = None
                    if not waiter.done():
                        waiter.set_result(None)
        except asyncio.CancelledError:
            pass
        except Exception:  # the peer went away: the handler's receive loop ends and unregisters us
            pass
        finally:
            self.closed = True
            self.queue.clear()
            self._flushed()
            if self.space_waiter is not None and not self.space_waiter.done():
                self.space_waiter.set_result(None)
            if not self.ws.closed and self.transport is not None:
                self.transport.abort()

    def _flushed(self) -> None:
        waiters, self.flush_waiters = self.flush_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def flush(self) -> None:
        """Return once every frame queued so far was handed to the socket (or the connection closed)."""
        if self.closed or (not self.queue and self.waiting):
            return
        waiter = asyncio.get_running_loop().create_future()
        self.flush_waiters.append(waiter)
        await waiter

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        self.wake.set()


class _Hub:
    """The open market-stream connections and who subscribes to which stream name."""

    def __init__(self, server: BinanceTestServer, limit: int, slow_timeout: float) -> None:
        self.server = server
        self.limit = limit
        self.slow_timeout = slow_timeout
        self.backpressure = False  # True at speed 0: the publisher waits for full queues instead of dropping
        self.full_flag = False  # some queue reached its limit (checked by the publisher before the next event)
        self.conns: set[_Conn] = set()
        self.subs: dict[str, set[_Conn]] = {}
        self._prefix: dict[str, bytes] = {}

    # ------------------------------------------------------------------------------------------- subscriptions

    def open(
        self, ws: web.WebSocketResponse, transport: Any, drain: Callable[[], Awaitable[None]], combined: bool
    ) -> _Conn:
        conn = _Conn(self, ws, transport, drain, combined)
        self.conns.add(conn)
        conn.writer = asyncio.get_running_loop().create_task(conn.write_loop())
        return conn

    def close(self, conn: _Conn) -> None:
        if conn not in self.conns:
            return
        self.conns.discard(conn)
        for name in conn.streams:
            subs = self.subs.get(name)
            if subs is not None:
                subs.discard(conn)
                if not subs:
                    del self.subs[name]
        conn.closed = True
        conn.wake.set()

    def subscribe(self, conn: _Conn, names: Iterable[str]) -> None:
        for name in names:
            if name in conn.streams:
                continue
            conn.streams[name] = None
            self.subs.setdefault(name, set()).add(conn)
            self.server._market.on_subscribe(name)

    def unsubscribe(self, conn: _Conn, names: Iterable[str]) -> None:
        for name in names:
            if conn.streams.pop(name, 0) is None:
                subs = self.subs.get(name)
                if subs is not None:
                    subs.discard(conn)
                    if not subs:
                        del self.subs[name]

    # ------------------------------------------------------------------------------------------------- sending

    def fanout(self, name: str, payload: bytes) -> None:
        subs = self.subs.get(name)
        if not subs:
            return
        envelope = None
        for conn in tuple(subs):  # a push may drop a slow connection, which edits the set
            if conn.combined:
                if envelope is None:
                    prefix = self._prefix.get(name)
                    if prefix is None:
                        prefix = self._prefix[name] = b'{"stream":"' + name.encode() + b'","data":'
                    envelope = prefix + payload + b"}"
                conn.push(envelope)
            else:
                conn.push(payload)

    def frame_for(self, conn: _Conn, name: str, payload: bytes) -> bytes:
        if conn.combined:
            return b'{"stream":"' + name.encode() + b'","data":' + payload + b"}"
        return payload

    def full(self) -> bool:
        limit = self.limit
        self.full_flag = any(len(conn.queue) >= limit for conn in self.conns)
        return self.full_flag

    async def wait_space(self) -> None:
        """Wait until every connection's queue has room; a connection that stays full ``slow_timeout`` is dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.slow_timeout
        for conn in list(self.conns):
            while len(conn.queue) >= self.limit and not conn.closed:
                if conn.space_waiter is None or conn.space_waiter.done():
                    conn.space_waiter = loop.create_future()
                remaining = deadline - loop.time()
                try:
                    await asyncio.wait_for(asyncio.shield(conn.space_waiter), max(remaining, 0.0))
                except TimeoutError:
                    self.overflow(conn)

    def overflow(self, conn: _Conn) -> None:
        """A client too slow to keep up: disconnected, as Binance does."""
        if conn.closed:
            return
        self.server.faults._count("slow_client")
        conn.abort()
        self.close(conn)

    async def flush(self, timeout: float) -> None:
        """Wait until every connection handed its queue to the socket. One that makes no progress for
        ``slow_timeout`` is dropped as too slow; TimeoutError if ``timeout`` passes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = {asyncio.ensure_future(conn.flush()): conn for conn in self.conns if not conn.closed}
        sent = {conn: conn.sent for conn in pending.values()}
        while pending:
            remaining = deadline - loop.time()
            if remaining <= 0:
                for future in pending:
                    future.cancel()
                raise TimeoutError(f"{len(pending)} connection(s) did not take the published frames in {timeout} s")
            done, _ = await asyncio.wait(pending, timeout=min(self.slow_timeout, remaining))
            for future in done:
                del pending[future]
            for future, conn in list(pending.items()):
                if conn.sent == sent[conn] and loop.time() < deadline:  # no progress for slow_timeout
                    self.overflow(conn)
                    future.cancel()
                    del pending[future]
                sent[conn] = conn.sent

    # ----------------------------------------------------------------------------------------------- handlers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/stream"):
            combined = True
            names = request.query.get("streams", "").split("/")
        else:
            combined = False
            names = request.match_info.get("streams", "").split("/")
        ws = web.WebSocketResponse(autoping=False, compress=False, timeout=1.0, max_msg_size=1 << 20)
        payload_writer = await ws.prepare(request)
        conn = self.open(ws, request.transport, payload_writer.drain, combined)
        self.subscribe(conn, [name for name in names if name])
        try:
            while True:
                msg = await ws.receive()
                kind = msg.type
                if kind is WSMsgType.TEXT:
                    self._method(conn, msg.data)
                elif kind is WSMsgType.PING:
                    conn.push_control(WSMsgType.PONG, msg.data, first=True)
                elif kind is WSMsgType.PONG:
                    self._pong(conn, msg.data)
                elif kind is WSMsgType.BINARY:
                    self._reply(conn, {"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}})
                else:
                    break
        except Exception:
            pass
        finally:
            self.close(conn)
            writer = conn.writer
            if writer is not None and not writer.done():
                # let a close the writer is sending finish (bounded), then make sure it is gone
                await asyncio.wait({writer}, timeout=2.0)
                writer.cancel()
        return ws

    def _pong(self, conn: _Conn, payload: bytes) -> None:
        pings = conn.pings
        if any(sent == payload for sent, _ in pings):  # answers this ping and every earlier one
            while pings:
                sent, _ = pings.popleft()
                if sent == payload:
                    break
        # an unsolicited pong (no such ping) is allowed and changes nothing, as the docs say

    def _reply(self, conn: _Conn, body: dict[str, Any]) -> None:
        conn.push(orjson.dumps(body))

    def _error(self, conn: _Conn, code: int, msg: str, request_id: Any) -> None:
        self._reply(conn, {"error": {"code": code, "msg": msg}, "id": request_id})

    def _method(self, conn: _Conn, text: str) -> None:
        """A live request over the connection (``SUBSCRIBE`` and friends), answered as Binance does."""
        try:
            request = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self._error(conn, 3, f"Invalid JSON: {exc}", None)
            return
        if not isinstance(request, dict):
            self._error(conn, 2, "Invalid request: expected a JSON object", None)
            return
        request_id = request.get("id")
        valid_id = (
            (type(request_id) is int and -(2**63) <= request_id < 2**63)
            or (type(request_id) is str and _WS_ID.match(request_id) is not None)
            or ("id" in request and request_id is None)
        )
        if not valid_id:
            self._error(conn, 2, "Invalid request: request ID must be an unsigned integer", None)
            return
        if "method" not in request:
            self._error(conn, 2, "Invalid request: missing field `method`", request_id)
            return
        method = request["method"]
        if method not in _METHODS:
            self._error(
                conn,
                2,
                f"Invalid request: unknown variant `{method}`, expected one of "
                + ", ".join(f"`{m}`" for m in _METHODS),
                request_id,
            )
            return
        params = request.get("params", [])
        if type(params) is not list:
            self._error(conn, 2, "Invalid request: params must be an array", request_id)
            return
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            bad = [p for p in params if type(p) is not str or _STREAM_NAME.match(p) is None]
            if bad:
                self._error(conn, 2, f"Invalid request: invalid stream name {bad[0]!r}", request_id)
                return
            if method == "SUBSCRIBE":
                self.subscribe(conn, params)
            else:
                self.unsubscribe(conn, params)
            self._reply(conn, {"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            if params:
                self._error(conn, 2, "Invalid request: too many parameters", request_id)
                return
            self._reply(conn, {"result": list(conn.streams), "id": request_id})
        else:
            wanted = 2 if method == "SET_PROPERTY" else 1
            if len(params) != wanted:
                self._error(conn, 2, "Invalid request: too many parameters", request_id)
                return
            if type(params[0]) is not str:
                self._error(conn, 2, "Invalid request: property name must be a string", request_id)
                return
            if params[0] != "combined":
                self._error(conn, 0, "Unknown property", request_id)
                return
            if method == "GET_PROPERTY":
                self._reply(conn, {"result": conn.combined, "id": request_id})
                return
            if type(params[1]) is not bool:
                self._error(conn, 1, "Invalid value type: expected Boolean", request_id)
                return
            conn.combined = params[1]
            self._reply(conn, {"result": None, "id": request_id})


# ---------------------------------------------------------------------------------------------------- the market


class _Market:
    """The replayed market: the merged events, each symbol's state, and the publication of one event."""

    def __init__(self, captures: Sequence[_Capture]) -> None:
        self.captures = captures
        self.states = {capture.symbol: _SymbolState(capture) for capture in captures}
        events = [ev for capture in captures for ev in capture.events]
        events.sort(key=lambda ev: ev.recv_ns)  # stable: ties keep file order
        self.recorded = events
        self.events = events
        self.payloads: list[bytes] = [ev.raw for ev in events]
        self.shift_ms = 0
        self.pos = 0
        self.passes = 0  # how many times a looping server started the captures over
        self.hub: _Hub | None = None
        self.faults: Faults | None = None
        self.agg_ids: dict[str, int] = {}
        # the trading side's matching engine: sees every depth diff applied to the book and every trade published
        self.on_event: Callable[[str, _Event], None] | None = None

    def first_event_ms(self) -> int | None:
        return next((ev.event_ms for ev in self.events if ev.event_ms is not None), None)

    def render(self, shift_ms: int) -> None:
        self.shift_ms = shift_ms
        self.payloads = [ev.render(shift_ms) for ev in self.events]

    def next_pass(self, now_ms: int, shift_times: bool) -> None:
        """Start the captures over (a looping server, for soak runs): each symbol's book goes back to its first
        state, with update ids moved past every id sent so far and with a hole after them (a client sees a gap and
        takes a new snapshot, as after a real one), trade ids moved past every trade sent, event times moved on to
        now (never back). A trading side's venues take the new book as a snapshot."""
        self.passes += 1
        times = [ev.event_ms for ev in self.recorded if ev.event_ms is not None]
        span_ms = max(times) - min(times) + 1_000 if times else 0
        self.shift_ms = max(now_ms - min(times), self.shift_ms + span_ms) if shift_times and times else 0
        moves: dict[str, tuple[int, int]] = {}
        for symbol, state in self.states.items():
            capture = state.capture
            first = _initial_book(symbol, capture.snapshot, capture.pre_diffs)
            last_id = max((ev.delta.last_update_id for ev in capture.events if ev.delta is not None), default=0)
            trade_ids = [ev.trade[0] for ev in capture.events if ev.trade is not None]
            update_span = last_id - first.last_update_id + 1_000
            trade_span = max(trade_ids) - min(trade_ids) + 1 if trade_ids else 0
            moves[symbol] = (self.passes * update_span, self.passes * trade_span)
            bids, asks = first.depth(len(first))
            now_ns = now_ms * 1_000_000
            snapshot = BookDelta(
                symbol=symbol,
                first_update_id=first.last_update_id + moves[symbol][0],
                last_update_id=first.last_update_id + moves[symbol][0],
                bids=bids,
                asks=asks,
                is_snapshot=True,
                ts_event=now_ns,
                ts_recv=now_ns,
            )
            state.book = L2Book(symbol)
            state.book.apply_snapshot(snapshot)
            state.sent_diffs.clear()
            cut = len(state.trades) - _LOOP_KEEP_TRADES
            if cut > 0:  # REST trades, aggTrades and klines from the latest ones: a soak's server stays bounded
                del state.trades[:cut]
                state.trades_dropped += cut
            if self.on_event is not None:
                reset = _Event(_DEPTH, symbol, now_ns, b"", {})
                reset.delta = snapshot
                self.on_event(symbol, reset)
        self.events = [ev.shifted(*moves[ev.symbol]) for ev in self.recorded]
        self.payloads = [ev.render(self.shift_ms) for ev in self.events]
        self.pos = 0

    def on_subscribe(self, name: str) -> None:
        symbol, _, kind = name.partition("@")
        if kind.startswith("kline_"):
            interval = kind[6:]
            state = self.states.get(symbol.upper())
            if state is not None and interval in INTERVALS:
                state.ensure_candles(interval)

    def publish_one(self) -> None:
        """Publish the next event: apply it to the market, send it (and what derives from it) to the streams."""
        index = self.pos
        ev = self.events[index]
        self.pos = index + 1
        payload = self.payloads[index]
        state = self.states[ev.symbol]
        hub = self.hub
        assert hub is not None
        kind = ev.kind
        if kind == _DEPTH:
            delta = ev.delta
            assert delta is not None
            state.book.apply(delta)
            if self.on_event is not None:
                self.on_event(ev.symbol, ev)
            if state.skip:
                state.skip -= 1
                assert self.faults is not None
                self.faults._count("skip_update_ids")
                return
            if state.cross and (best_ask := state.book.best_ask()) is not None:
                state.cross -= 1
                assert self.faults is not None
                self.faults._count("cross_book")
                data = orjson.loads(payload)
                data["b"] = [*data["b"], [_fmt(best_ask[0]), "1.00000000"]]  # last: no level of the diff undoes it
                payload = orjson.dumps(data)
            state.sent_diffs.append((delta.last_update_id, payload))
            for name in state.depth_names:
                hub.fanout(name, payload)
            if hub.subs:
                self._partials(state, ev)
        elif kind == _TICKER:
            state.ticker = ev.ticker
            hub.fanout(state.ticker_name, payload)
        else:
            trade = ev.trade
            assert trade is not None
            trade_id, price, qty, price_text, qty_text, t_ms, buyer_maker, best = trade
            t_ms += self.shift_ms
            if state.candles:
                # candles close on trade time: a depth event stamped after a trade can arrive before it (the
                # capture has them so), and closing on it would split that trade's candle in two
                self._close_candles(state, t_ms)
            state.trades.append((t_ms, trade_id, price, qty, price_text, qty_text, buyer_maker, best))
            hub.fanout(state.trade_name, payload)
            e_ms = ev.event_ms + self.shift_ms if ev.event_ms is not None else t_ms
            agg_id = self.agg_ids.get(ev.symbol, 0)
            self.agg_ids[ev.symbol] = agg_id + 1
            if state.agg_name in hub.subs:
                hub.fanout(
                    state.agg_name,
                    orjson.dumps(
                        {
                            "e": "aggTrade",
                            "E": e_ms,
                            "s": ev.symbol,
                            "a": agg_id,
                            "p": price_text,
                            "q": qty_text,
                            "f": trade_id,
                            "l": trade_id,
                            "T": t_ms,
                            "m": buyer_maker,
                            "M": best,
                        }
                    ),
                )
            if state.candles:
                self._trade_candles(state, trade_id, price, qty, buyer_maker, t_ms, e_ms)
            if self.on_event is not None:
                self.on_event(ev.symbol, ev)

    def _partials(self, state: _SymbolState, ev: _Event) -> None:
        hub = self.hub
        assert hub is not None
        event_ms = ev.event_ms or 0
        for name, levels, period in state.partial_names:
            if name not in hub.subs:
                continue
            if period and event_ms - state.last_partial_ms.get(name, -period) < period:
                continue
            state.last_partial_ms[name] = event_ms
            bids, asks = state.book.depth(levels)
            hub.fanout(
                name,
                orjson.dumps(
                    {
                        "lastUpdateId": state.book.last_update_id,
                        "bids": [[_fmt(p), _fmt(q)] for p, q in bids],
                        "asks": [[_fmt(p), _fmt(q)] for p, q in asks],
                    }
                ),
            )

    def _close_candles(self, state: _SymbolState, now_ms: int) -> None:
        hub = self.hub
        assert hub is not None
        for interval, candle in state.candles.items():
            if candle is not None and now_ms >= candle.next_ms:
                name = state.kline_names[interval]
                if name in hub.subs:
                    hub.fanout(name, candle.stream_payload(state.symbol, interval, now_ms, True))
                state.candles[interval] = None

    def _trade_candles(
        self, state: _SymbolState, trade_id: int, price: int, qty: int, buyer_maker: bool, t_ms: int, e_ms: int
    ) -> None:
        hub = self.hub
        assert hub is not None
        for interval, candle in state.candles.items():
            opened = candle is None or t_ms >= candle.next_ms
            if opened:
                open_ms, next_ms = _bucket(interval, t_ms)
                candle = state.candles[interval] = _Candle(open_ms, next_ms, trade_id, price)
            assert candle is not None
            candle.add(trade_id, price, qty, buyer_maker)
            name = state.kline_names[interval]
            if name not in hub.subs:
                continue
            period = _KLINE_UPDATE_MS_1S if interval == "1s" else _KLINE_UPDATE_MS
            if opened or e_ms - state.last_kline_ms.get(name, e_ms - period) >= period:
                state.last_kline_ms[name] = e_ms
                hub.fanout(name, candle.stream_payload(state.symbol, interval, e_ms, False))


# ------------------------------------------------------------------------------------------------------- the REST


@dataclass(frozen=True, slots=True)
class RestRequest:
    """One REST request the server answered: times are ``time.monotonic()`` of this process (the test's clock);
    ``in_flight`` counts the requests of the same path being answered when it arrived, itself included."""

    path: str
    symbol: str | None
    arrived: float
    answered: float
    status: int
    in_flight: int


class _ApiError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _depth_weight(query: Mapping[str, str]) -> int:
    text = query.get("limit", "100")
    limit = int(text) if _REST_INT.match(text) else 100
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def _book_ticker_weight(query: Mapping[str, str]) -> int:
    return 2 if query.get("symbol") else 4


def _fixed(weight: int) -> Callable[[Mapping[str, str]], int]:
    return lambda query: weight


# path -> request weight (rest-api.md)
WEIGHTS: dict[str, Callable[[Mapping[str, str]], int]] = {
    "/api/v3/ping": _fixed(1),
    "/api/v3/time": _fixed(1),
    "/api/v3/exchangeInfo": _fixed(20),
    "/api/v3/depth": _depth_weight,
    "/api/v3/trades": _fixed(25),
    "/api/v3/aggTrades": _fixed(4),
    "/api/v3/klines": _fixed(2),
    "/api/v3/ticker/bookTicker": _book_ticker_weight,
}


class _Rest:
    """The REST endpoints. Handlers run on the server's loop and read the market directly."""

    def __init__(self, server: BinanceTestServer) -> None:
        self.server = server
        self.market = server._market

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        weigh = WEIGHTS.get(request.path)
        if weigh is None:
            return await handler(request)
        path = request.path
        in_flight = self.server._rest_in_flight
        in_flight[path] = concurrent = in_flight.get(path, 0) + 1
        arrived = time.monotonic()
        status = 0
        try:
            response = await self._answer(request, handler, weigh)
            status = response.status
            return response
        finally:
            in_flight[path] -= 1
            self.server._rest_log.append(
                RestRequest(path, request.query.get("symbol"), arrived, time.monotonic(), status, concurrent)
            )

    async def _answer(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        weigh: Callable[[Mapping[str, str]], int],
    ) -> web.StreamResponse:
        # the request weight is the trading side's (one IP: market and trading requests share it), and an IP ban
        # it started refuses market data too
        banned, weight_headers = self.server.trading.admit_market(weigh(request.query))
        faulty = self.server._faulty
        response: web.StreamResponse
        if banned is not None:
            response = _json({"code": banned.code, "msg": banned.msg}, status=banned.status)
            response.headers["Retry-After"] = str(banned.retry_after)
        elif faulty.rate_limited > 0:
            faulty.rate_limited -= 1
            self.server.faults._count("rate_limit")
            if faulty.rate_status == 418:
                msg = f"Way too much request weight used; IP banned until {_now_ms() + faulty.retry_after * 1000}. "
                msg += "Please use WebSocket Streams for live updates to avoid bans."
            else:
                msg = "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
                msg += "Please use WebSocket Streams for live updates to avoid polling the API."
            response = _json({"code": -1003, "msg": msg}, status=faulty.rate_status)
            response.headers["Retry-After"] = str(faulty.retry_after)
        else:
            try:
                response = await handler(request)
            except _ApiError as exc:
                response = _json({"code": exc.code, "msg": exc.msg}, status=exc.status)
        response.headers.update(weight_headers)
        return response

    # ------------------------------------------------------------------------------------------------ params

    def _symbol(self, query: Mapping[str, str], *, required: bool = True) -> str | None:
        text = query.get("symbol")
        if not text:
            if required:
                raise _ApiError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
            return None
        if _REST_SYMBOL.match(text) is None:
            raise _ApiError(
                -1100, "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."
            )
        if text not in self.market.states or text in self.server._faulty.delisted:
            if text in self.market.states:
                self.server.faults._count("delisted")
            raise _ApiError(-1121, "Invalid symbol.")
        return text

    def _symbols(self, query: Mapping[str, str]) -> list[str] | None:
        text = query.get("symbols")
        if text is None:
            return None
        try:
            symbols = orjson.loads(text)
        except orjson.JSONDecodeError:
            symbols = None
        if (
            type(symbols) is not list
            or not symbols
            or any(type(s) is not str or _REST_SYMBOL.match(s) is None for s in symbols)
        ):
            raise _ApiError(
                -1100, f"Illegal characters found in parameter 'symbols'; legal range is '{_SYMBOLS_RANGE}'."
            )
        if "symbol" in query:
            raise _ApiError(-1128, "Combination of optional parameters invalid.")
        for symbol in symbols:
            self._symbol({"symbol": symbol})
        return list(dict.fromkeys(symbols))

    @staticmethod
    def _int(query: Mapping[str, str], name: str, default: int | None) -> int | None:
        text = query.get(name)
        if text is None:
            return default
        if _REST_INT.match(text) is None:
            raise _ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
        return int(text)

    def _limit(self, query: Mapping[str, str], default: int, maximum: int) -> int:
        limit = self._int(query, "limit", default)
        assert limit is not None
        if limit < 1:
            raise _ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
        return min(limit, maximum)

    # ------------------------------------------------------------------------------------------------ handlers

    async def ping(self, request: web.Request) -> web.Response:
        return _json({})

    async def time(self, request: web.Request) -> web.Response:
        answer = _json({"serverTime": self.server.server_time_ms()})
        faulty = self.server._faulty
        if faulty.slow_times > 0:  # the clock was read: the answer is that old when it arrives
            faulty.slow_times -= 1
            self.server.faults._count("slow_time")
            await asyncio.sleep(faulty.slow_time_seconds)
        return answer

    async def exchange_info(self, request: web.Request) -> web.Response:
        symbols = self._symbols(request.query)
        one = self._symbol(request.query, required=False)
        if one is not None:
            symbols = [one]
        info = self.server._exchange_info
        entries = info["symbols"]
        if symbols is not None:
            by_name = {entry["symbol"]: entry for entry in entries}
            entries = [by_name[s] for s in symbols]
        else:  # a delisted symbol is simply not listed
            entries = [entry for entry in entries if entry["symbol"] not in self.server._faulty.delisted]
        body = dict(info)
        body["serverTime"] = self.server.server_time_ms()
        body["symbols"] = entries
        return _json(body)

    async def depth(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request.query)
        assert symbol is not None
        limit = self._limit(request.query, 100, 5000)
        faulty = self.server._faulty
        if faulty.slow_depths > 0:
            faulty.slow_depths -= 1
            self.server.faults._count("slow_depth")
            await asyncio.sleep(faulty.slow_depth_seconds)
        state = self.market.states[symbol]
        if faulty.stale_snapshots > 0:
            faulty.stale_snapshots -= 1
            self.server.faults._count("stale_snapshot")
            snapshot = state.capture.snapshot
            last, bids, asks = snapshot.last_update_id, snapshot.bids[:limit], snapshot.asks[:limit]
        else:
            bids, asks = state.book.depth(limit)
            last = state.book.last_update_id
        return _json(
            {
                "lastUpdateId": last,
                "bids": [[_fmt(p), _fmt(q)] for p, q in bids],
                "asks": [[_fmt(p), _fmt(q)] for p, q in asks],
            }
        )

    async def trades(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request.query)
        assert symbol is not None
        limit = self._limit(request.query, 500, 1000)
        rows = self.market.states[symbol].trades[-limit:]
        return _json(
            [
                {
                    "id": trade_id,
                    "price": price_text,
                    "qty": qty_text,
                    "quoteQty": _fmt(price * qty // _SCALE),
                    "time": t_ms,
                    "isBuyerMaker": buyer_maker,
                    "isBestMatch": best,
                }
                for t_ms, trade_id, price, qty, price_text, qty_text, buyer_maker, best in rows
            ]
        )

    async def agg_trades(self, request: web.Request) -> web.Response:
        symbol = self._symbol(request.query)
        assert symbol is not None
        query = request.query
        limit = self._limit(query, 500, 1000)
        from_id = self._int(query, "fromId", None)
        start = self._int(query, "startTime", None)
        end = self._int(query, "endTime", None)
        state = self.market.states[symbol]
        rows = list(enumerate(state.trades, start=state.trades_dropped))
        if from_id is not None:
            rows = [r for r in rows if r[0] >= from_id][:limit]
        elif start is not None or end is not None:
            rows = [r for r in rows if (start is None or r[1][0] >= start) and (end is None or r[1][0] <= end)]
            rows = rows[:limit]
        else:
            rows = rows[-limit:]
        return _json(
            [
                {"a": agg_id, "p": r[4], "q": r[5], "f": r[1], "l": r[1], "T": r[0], "m": r[6], "M": r[7]}
                for agg_id, r in rows
            ]
        )

    async def klines(self, request: web.Request) -> web.Response:
        query = request.query
        symbol = self._symbol(query)
        assert symbol is not None
        interval = query.get("interval")
        if not interval:
            raise _ApiError(-1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.")
        if interval not in INTERVALS:
            raise _ApiError(-1120, "Invalid interval.")
        start = self._int(query, "startTime", None)
        end = self._int(query, "endTime", None)
        if start is not None and end is not None and start > end:
            raise _ApiError(-1023, "Start time is greater than end time.")
        limit = self._limit(query, 500, 1000)
        return _json(self.market.states[symbol].rest_klines(interval, start, end, limit))

    async def book_ticker(self, request: web.Request) -> web.Response:
        symbols = self._symbols(request.query)
        one = self._symbol(request.query, required=False)
        if one is not None:
            return _json(self._ticker(one))
        return _json([self._ticker(s) for s in (symbols if symbols is not None else self.market.states)])

    def _ticker(self, symbol: str) -> dict[str, str]:
        state = self.market.states[symbol]
        if state.ticker is not None:
            _, bid, bid_qty, ask, ask_qty = state.ticker
        else:  # nothing published yet: the book's top
            best_bid = state.book.best_bid() or (0, 0)
            best_ask = state.book.best_ask() or (0, 0)
            bid, bid_qty, ask, ask_qty = (_fmt(best_bid[0]), _fmt(best_bid[1]), _fmt(best_ask[0]), _fmt(best_ask[1]))
        return {"symbol": symbol, "bidPrice": bid, "bidQty": bid_qty, "askPrice": ask, "askQty": ask_qty}


def build_app(server: BinanceTestServer) -> web.Application:
    """The aiohttp application: REST under ``/api/v3``, market streams at ``/ws`` and ``/stream``."""
    rest = _Rest(server)
    hub = server._hub
    app = web.Application(middlewares=[rest.middleware])
    routes = app.router
    routes.add_get("/api/v3/ping", rest.ping)
    routes.add_get("/api/v3/time", rest.time)
    routes.add_get("/api/v3/exchangeInfo", rest.exchange_info)
    routes.add_get("/api/v3/depth", rest.depth)
    routes.add_get("/api/v3/trades", rest.trades)
    routes.add_get("/api/v3/aggTrades", rest.agg_trades)
    routes.add_get("/api/v3/klines", rest.klines)
    routes.add_get("/api/v3/ticker/bookTicker", rest.book_ticker)
    routes.add_get("/ws", hub.handle)
    routes.add_get("/ws/{streams:.*}", hub.handle)
    routes.add_get("/stream", hub.handle)
    server.trading.install(app)  # the SIGNED REST endpoints and the WebSocket API (binance_trading.py)
    return app


# ------------------------------------------------------------------------------------------------- exchange info


def _exchange_info(captures: Sequence[_Capture], path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """``exchangeInfo`` for the captured symbols: the recorded entries where present, synthesized otherwise."""
    source = Path(path) if path is not None else DEFAULT_EXCHANGE_INFO
    if path is not None or source.is_file():
        info = orjson.loads(source.read_bytes())
    else:
        info = {"timezone": "UTC", "serverTime": 0, "rateLimits": [], "exchangeFilters": [], "symbols": []}
    recorded = {entry["symbol"]: entry for entry in info.get("symbols", [])}
    template = next(iter(recorded.values()), None)
    entries = []
    for capture in captures:
        entry = recorded.get(capture.symbol)
        if entry is None:
            entry = _synthesized_entry(capture, template)
        entries.append(entry)
    out = {key: value for key, value in info.items() if key != "symbols"}
    out["symbols"] = entries
    return out


def _synthesized_entry(capture: _Capture, template: dict[str, Any] | None) -> dict[str, Any]:
    symbol = capture.symbol
    quote = next((q for q in _QUOTES if symbol.endswith(q) and len(symbol) > len(q)), symbol[-4:])
    tick = _fmt(10 ** (8 - capture.price_decimals))
    step = _fmt(10 ** (8 - capture.qty_decimals))
    if template is None:
        template = {
            "symbol": "",
            "status": "TRADING",
            "baseAsset": "",
            "baseAssetPrecision": 8,
            "quoteAsset": "",
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": "", "maxPrice": "1000000.00000000", "tickSize": ""},
                {"filterType": "LOT_SIZE", "minQty": "", "maxQty": "9000.00000000", "stepSize": ""},
                {"filterType": "MIN_NOTIONAL", "minNotional": "10.00000000", "applyToMarket": True, "avgPriceMins": 5},
            ],
            "permissions": ["SPOT"],
        }
    entry = copy.deepcopy(template)
    entry.update(symbol=symbol, baseAsset=symbol[: -len(quote)], quoteAsset=quote)
    for flt in entry.get("filters", []):
        if flt.get("filterType") == "PRICE_FILTER":
            flt.update(minPrice=tick, tickSize=tick)
        elif flt.get("filterType") == "LOT_SIZE":
            flt.update(minQty=step, stepSize=step)
    return entry


# ------------------------------------------------------------------------------------------------------- faults


class Faults:
    """Fault switches of a running :class:`BinanceTestServer`; every method is safe to call from any thread.

    :attr:`counts` counts what each fault actually did (connections dropped, diffs skipped, bad frames sent, stale
    snapshots and rate-limited answers served, ...), plus ``slow_client`` and ``pong_timeout`` disconnects.
    """

    def __init__(self, server: BinanceTestServer) -> None:
        self._server = server
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "drop_connections",
                "stall",
                "skip_update_ids",
                "cross_book",
                "delisted",
                "symbol_changes",
                "malformed",
                "stale_snapshot",
                "slow_time",
                "slow_depth",
                "rate_limit",
                "server_shutdown",
                "restart",
                "slow_client",
                "pong_timeout",
            ),
            0,
        )

    def _count(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    def drop_connections(self) -> int:
        """Abort every market-stream connection (no close frame); how many were dropped."""

        def run() -> int:
            hub = self._server._hub
            conns = list(hub.conns)
            for conn in conns:
                conn.abort()
                hub.close(conn)
            self._count("drop_connections", len(conns))
            return len(conns)

        return self._server._call(run)

    def stall(self, seconds: float) -> None:
        """The publisher and the pings stop for ``seconds`` (connections stay open); the pacing resumes after."""

        def run() -> None:
            server = self._server
            server._faulty.stall_until = max(server._faulty.stall_until, server._loop_time() + seconds)
            server._reanchor = True
            self._count("stall")
            server._wakeup()

        self._server._call(run)

    def skip_update_ids(self, symbol: str, count: int = 1) -> None:
        """The next ``count`` depth diffs of ``symbol`` are applied to the server's book but not sent (a gap)."""
        state = self._symbol_state(symbol)

        def run() -> None:
            state.skip += count

        self._server._call(run)

    def _symbol_state(self, symbol: str) -> _SymbolState:
        state = self._server._market.states.get(symbol.upper())
        if state is None:
            raise ValueError(f"unknown symbol {symbol!r}; the server has {sorted(self._server._market.states)}")
        return state

    def cross_book(self, symbol: str, count: int = 1) -> None:
        """The next ``count`` depth diffs of ``symbol`` are sent with one more bid, at the best ask of the server's book
        after the diff: each leaves a client's book crossed (the server's book stays as recorded)."""
        state = self._symbol_state(symbol)

        def run() -> None:
            state.cross += count

        self._server._call(run)

    def delist(self, symbol: str) -> None:
        """From now on every REST request naming ``symbol`` is answered -1121 "Invalid symbol." (HTTP 400), as after
        a delisting, and the unfiltered exchangeInfo does not list it; its streams stay open. ``counts["delisted"]``
        counts the refused requests."""
        state = self._symbol_state(symbol)

        def run() -> None:
            self._server._faulty.delisted.add(state.symbol)

        self._server._call(run)

    def change_symbol(
        self, symbol: str, *, status: str | None = None, filters: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        """Binance changes ``symbol``'s exchangeInfo entry from now on: its ``status`` (``BREAK``, ``HALT``, or back to
        ``TRADING``) and/or fields of its filters, by filter type (``{"PRICE_FILTER": {"tickSize": "0.10000000"}}``;
        a filter type the entry lacks is added). The trading side checks new orders against the new filters and
        refuses every new order of a symbol that is not ``TRADING`` (-2010 "Market is closed."); its matching keeps
        the instrument it started with. ``counts["symbol_changes"]`` counts the changes."""
        state = self._symbol_state(symbol)

        def run() -> None:
            symbols = self._server._exchange_info["symbols"]
            index = next(i for i, entry in enumerate(symbols) if entry["symbol"] == state.symbol)
            entry = copy.deepcopy(symbols[index])
            if status is not None:
                entry["status"] = status
            by_type = {flt.get("filterType"): flt for flt in entry.setdefault("filters", [])}
            for kind, fields in (filters or {}).items():
                if kind not in by_type:
                    by_type[kind] = {"filterType": kind}
                    entry["filters"].append(by_type[kind])
                by_type[kind].update(fields)
            symbols[index] = entry
            self._server.trading.forget_filters(state.symbol)
            self._count("symbol_changes")

        self._server._call(run)

    def malformed(self, kind: str, count: int = 1) -> int:
        """Send ``count`` bad frames now to every connection with a subscription they apply to; how many were sent.

        ``json``: not JSON. ``unknown_event``: valid JSON of an unknown stream/event. ``absurd_price``: a
        ``depthUpdate`` (to a depth subscriber; ``U = u = next id``) or a ``trade`` with a negative and a non-numeric
        price. ``out_of_order``: an old depth diff again (its ``u`` below the book's), to depth subscribers.
        ``runaway_update_id``: a well-formed diff that connects (``U`` = the book's next id) with a ``u`` 10**12
        ahead and the best bid's quantity changed: a corrupt diff no rule can tell from a real one, to depth
        subscribers (every real diff after it is then behind it).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"malformed kind must be one of {FAULT_KINDS}, got {kind!r}")
        return self._server._call(lambda: self._server._send_malformed(kind, count))

    def stale_snapshot(self, count: int = 1) -> None:
        """The next ``count`` ``GET /api/v3/depth`` answers are the capture's REST snapshot (older than the book)."""

        def run() -> None:
            self._server._faulty.stale_snapshots += count

        self._server._call(run)

    def slow_time(self, seconds: float, count: int = 1) -> None:
        """The next ``count`` ``GET /api/v3/time`` answers leave ``seconds`` after the server read its clock for them
        (a slow way back): their ``serverTime`` is that much older than the moment they arrive, so a client that
        takes one sample's midpoint for the server's reading misjudges the offset by half of it; the smallest of
        several round trips does not."""

        def run() -> None:
            faulty = self._server._faulty
            faulty.slow_times += count
            faulty.slow_time_seconds = seconds

        self._server._call(run)

    def slow_depth(self, seconds: float, count: int = 1) -> None:
        """The next ``count`` ``GET /api/v3/depth`` answers leave ``seconds`` after their request arrived (a snapshot
        of 5000 levels takes a while on Binance too), so requests a client sends together overlap on the server."""

        def run() -> None:
            faulty = self._server._faulty
            faulty.slow_depths += count
            faulty.slow_depth_seconds = seconds

        self._server._call(run)

    def rate_limit(self, status: int = 429, retry_after: int = 2, count: int = 1) -> None:
        """The next ``count`` REST requests answer ``status`` (429 or 418), ``Retry-After`` and code -1003."""
        if status not in (429, 418):
            raise ValueError(f"status must be 429 or 418, got {status}")

        def run() -> None:
            faulty = self._server._faulty
            faulty.rate_limited += count
            faulty.rate_status = status
            faulty.retry_after = retry_after

        self._server._call(run)

    def server_shutdown(self) -> int:
        """Send Binance's ``serverShutdown`` event to every connection, then close them; how many were told."""
        return self._server._call_async(self._server._shutdown_streams)

    def restart(self, downtime: float = 0.5, wait: bool = True) -> None:
        """Stop listening and drop every connection for ``downtime`` s, then listen on the same port again (the
        market keeps its position and keeps going). ``wait``: return once listening again (else at once)."""
        server = self._server
        self._count("restart")
        server._call_async(lambda: server._go_down(downtime))
        if wait:
            server._call_async(server._wait_up, timeout=downtime + 30.0)


# ------------------------------------------------------------------------------------------------------- server


class BinanceTestServer:
    """The local Binance spot market-data server (see the module docstring). Start it with :meth:`start` or
    ``with``; it serves on its own event loop in a daemon thread."""

    def __init__(
        self,
        captures: Sequence[str | os.PathLike[str]],
        *,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        ping_interval: float = 20.0,
        pong_timeout: float = 60.0,
        paused: bool = False,
        shift_times: bool = True,
        exchange_info: str | os.PathLike[str] | None = None,
        send_queue: int = 10_000,
        slow_client_timeout: float = 5.0,
        loop: bool = False,
    ) -> None:
        if isinstance(captures, str | os.PathLike):
            captures = [captures]
        if not captures:
            raise ValueError("at least one capture is needed")
        if speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        if ping_interval <= 0 or pong_timeout <= 0:
            raise ValueError("ping_interval and pong_timeout must be positive")
        loaded = [load_capture(path) for path in captures]
        seen: dict[str, str] = {}
        for capture in loaded:
            if capture.symbol in seen:
                raise ValueError(f"{capture.path}: {capture.symbol} is already served from {seen[capture.symbol]}")
            seen[capture.symbol] = capture.path
        self.speed = float(speed)
        self.host = host
        self.port = port
        self.ping_interval = float(ping_interval)
        self.pong_timeout = float(pong_timeout)
        self.shift_times = shift_times
        self.loop = loop
        self.rest_url = ""
        self.stream_url = ""
        self.symbols = tuple(capture.symbol for capture in loaded)
        self._market = _Market(loaded)
        self._exchange_info = _exchange_info(loaded, exchange_info)
        self._hub = _Hub(self, send_queue, slow_client_timeout)
        self._hub.backpressure = self.speed == 0
        self._faulty = _Faulty()
        self.faults = Faults(self)
        self._market.hub = self._hub
        self._market.faults = self.faults
        self.trading = Trading(self)  # the trading side: accounts, matching, SIGNED REST, WebSocket API
        self._rest_log: deque[RestRequest] = deque(maxlen=100_000)
        self._rest_in_flight: dict[str, int] = {}
        self.trading_faults = self.trading.faults
        self._paused = paused
        self._reanchor = True
        self._clock_offset_ms = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._up: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._t0 = 0.0

    # ------------------------------------------------------------------------------------------- public state

    @property
    def published(self) -> int:
        """Market events published so far from the snapshot point on (a diff skipped by a fault counts)."""
        return self._market.pos

    @property
    def done(self) -> bool:
        """Every capture event was published (never, with ``loop``: the captures start over)."""
        return self._market.pos >= len(self._market.events) and not self.loop

    @property
    def passes(self) -> int:
        """How many times a looping server started the captures over."""
        return self._market.passes

    @property
    def total(self) -> int:
        """How many market events the captures hold after their snapshot points."""
        return len(self._market.events)

    def connections(self) -> int:
        """Open market-stream websocket connections."""
        return len(self._hub.conns)

    def wait_connections(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``n`` market-stream connections are open; False on timeout."""
        deadline = time.monotonic() + timeout
        while len(self._hub.conns) < n:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def rest_log(self, path: str | None = None) -> list[RestRequest]:
        """The market-data REST requests answered so far (of ``path`` only, if given), in the order they were
        answered (the latest 100,000)."""
        return self._call(lambda: [r for r in self._rest_log if path is None or r.path == path])

    def book(self, symbol: str) -> tuple[int, tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        """``(lastUpdateId, bids best-first, asks best-first)`` of the server's whole current book, 1e-8 units."""
        state = self._market.states.get(symbol.upper())
        if state is None:
            raise ValueError(f"unknown symbol {symbol!r}; the server has {sorted(self._market.states)}")

        def run() -> tuple[int, tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
            bids, asks = state.book.depth(len(state.book))
            return state.book.last_update_id, bids, asks

        return self._call(run)

    # ---------------------------------------------------------------------------------------- trading side

    def add_account(
        self,
        api_key: str,
        *,
        hmac_secret: str | None = None,
        ed25519_public_key_pem: str | bytes | None = None,
        balances: Mapping[str, str | int] | None = None,
        maker_rate: str | int = "0.001",
        taker_rate: str | int = "0.001",
    ) -> None:
        """An API key that may trade (see :meth:`Trading.add_account <.binance_trading.Trading.add_account>`)."""
        self.trading.add_account(
            api_key,
            hmac_secret=hmac_secret,
            ed25519_public_key_pem=ed25519_public_key_pem,
            balances=balances,
            maker_rate=maker_rate,
            taker_rate=taker_rate,
        )

    def pay_fees_in(self, api_key: str, asset: str | None = "BNB", price: str = "600") -> None:
        """Commissions paid in ``asset`` at ``price`` (see :meth:`Trading.pay_fees_in
        <.binance_trading.Trading.pay_fees_in>`)."""
        self.trading.pay_fees_in(api_key, asset, price)

    def deposit(self, api_key: str, asset: str, amount: str | int) -> None:
        """A deposit (negative: a withdrawal): ``balanceUpdate`` and ``outboundAccountPosition`` on its streams."""
        self.trading.deposit(api_key, asset, amount)

    def orders(self, api_key: str) -> list[dict[str, Any]]:
        """The account's orders, oldest first, as ``GET /api/v3/order`` states them (the server's truth)."""
        return self.trading.orders(api_key)

    def trades(self, api_key: str) -> list[dict[str, Any]]:
        """The account's trades, oldest first, as ``GET /api/v3/myTrades`` states them."""
        return self.trading.trades(api_key)

    def balances(self, api_key: str) -> dict[str, tuple[int, int]]:
        """The account's balances: ``asset -> (free, locked)`` in 1e-8 units."""
        return self.trading.balances(api_key)

    def set_rate_limits(
        self, rows: Iterable[Mapping[str, Any]] | None = None, *, ban_seconds: int | None = None
    ) -> None:
        """Replace the ``REQUEST_WEIGHT`` / ``ORDERS`` rate limits (exchangeInfo rows) and/or the IP ban length;
        counters and bans start over (no rows: just start over)."""
        self.trading.set_rate_limits(rows, ban_seconds=ban_seconds)

    def server_time_ms(self) -> int:
        """The server's clock: the wall clock (with ``shift_times=False``: moved back to the capture's clock)."""
        return _now_ms() + self._clock_offset_ms

    # ------------------------------------------------------------------------------------------------ control

    def publish(self, n: int, timeout: float = 10.0) -> int:
        """Publish the next ``n`` events now (paused mode) to every subscribed connection; returns how many were
        published, once they were handed to every connection's socket."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return self._call_async(lambda: self._publish(n, timeout), timeout=timeout + 5.0)

    def pause(self) -> None:
        """Stop publishing (until :meth:`resume`; :meth:`publish` still works)."""

        def run() -> None:
            self._paused = True
            self._wakeup()

        self._call(run)

    def resume(self) -> None:
        """Publish again, paced from now on."""

        def run() -> None:
            self._paused = False
            self._reanchor = True
            self._wakeup()

        self._call(run)

    def start(self) -> BinanceTestServer:
        """Serve on a new event loop in a daemon thread; returns once listening."""
        if self._loop is not None:
            raise RuntimeError("the server is already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="binance-test-server", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._astart(), loop).result(60.0)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close every connection and the listener, stop the loop and its thread."""
        loop = self._loop
        if loop is None:
            return
        if loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._astop(), loop).result(30.0)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(30.0)
        loop.close()
        self._loop = None
        self._thread = None

    def __enter__(self) -> BinanceTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"BinanceTestServer({list(self.symbols)}, {self.rest_url or 'not started'}, speed={self.speed}, "
            f"published={self.published}/{self.total})"
        )

    # -------------------------------------------------------------------------------------------- loop helpers

    def _call(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the server's loop (inline when not started, or when already on it)."""
        loop = self._loop
        if loop is None or not loop.is_running() or self._on_loop():
            return fn()

        async def run() -> _T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(30.0)

    def _call_async(self, fn: Callable[[], Awaitable[_T]], timeout: float = 30.0) -> _T:
        loop = self._loop
        if loop is None or not loop.is_running():
            raise RuntimeError("the server is not running: call start() first")
        if self._on_loop():
            raise RuntimeError("a blocking call from the server's own loop would deadlock")

        async def run() -> _T:
            return await fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)

    def _on_loop(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def _loop_time(self) -> float:
        return self._loop.time() if self._loop is not None else time.monotonic()

    def _wakeup(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------------------------------------------ serving

    async def _astart(self) -> None:
        self._wake = asyncio.Event()
        self._up = asyncio.Event()
        first = self._market.first_event_ms()
        shift = _now_ms() - first if first is not None else 0
        if self.shift_times:
            self._market.render(shift)
        else:
            self._clock_offset_ms = -shift
        await self._listen()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._publisher()), loop.create_task(self._heartbeat())]

    async def _listen(self) -> None:
        runner = web.AppRunner(build_app(self), access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        if self.port == 0 and server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        self._runner = runner
        self.rest_url = f"http://{self.host}:{self.port}"
        self.stream_url = f"ws://{self.host}:{self.port}"
        assert self._up is not None
        self._up.set()

    async def _go_down(self, downtime: float) -> None:
        assert self._up is not None
        self._up.clear()
        await self._unlisten()

        async def come_back() -> None:
            await asyncio.sleep(downtime)
            await self._listen()

        self._tasks.append(asyncio.get_running_loop().create_task(come_back()))

    async def _wait_up(self) -> None:
        assert self._up is not None
        await self._up.wait()

    async def _unlisten(self) -> None:
        hub = self._hub
        for conn in list(hub.conns):
            conn.abort()
            hub.close(conn)
        self.trading.close_connections()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _astop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self._unlisten()

    async def _publish(self, n: int, timeout: float) -> int:
        market = self._market
        hub = self._hub
        done = 0
        total = len(market.events)
        hub.backpressure = True  # publish(n) waits for full queues (a client gone slow is dropped after a while)
        try:
            while done < n and (market.pos < total or self.loop):
                if hub.full_flag and hub.full():
                    await hub.wait_space()
                if market.pos >= total:
                    market.next_pass(self.server_time_ms(), self.shift_times)
                market.publish_one()
                done += 1
                if done % 256 == 0:
                    await asyncio.sleep(0)
        finally:
            hub.backpressure = self.speed == 0
        await hub.flush(timeout)
        self._reanchor = True
        return done

    async def _wait(self, timeout: float | None) -> None:
        wake = self._wake
        assert wake is not None
        if timeout is not None and timeout <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)
        wake.clear()

    async def _publisher(self) -> None:
        """Publish the events in receive-time order: paced at ``speed`` x real time, or as fast as the sockets
        take them at ``speed=0``. Pauses, stalls and :meth:`publish` re-anchor the pacing on the next event."""
        loop = asyncio.get_running_loop()
        market = self._market
        hub = self._hub
        events = market.events
        total = len(events)
        faulty = self._faulty
        speed = self.speed
        recv0 = events[0].recv_ns if events else 0
        batch = 0
        while True:
            if market.pos >= total and self.loop and not self._paused:
                market.next_pass(self.server_time_ms(), self.shift_times)
                self._reanchor = True
                events = market.events
            if market.pos >= total or self._paused:
                await self._wait(None)
                continue
            now = loop.time()
            if now < faulty.stall_until:
                await self._wait(faulty.stall_until - now)
                continue
            pos = market.pos
            if speed == 0:
                if hub.full_flag and hub.full():
                    await hub.wait_space()
                    continue
                market.publish_one()
                batch += 1
                if batch >= 64:
                    batch = 0
                    await asyncio.sleep(0)
                continue
            if self._reanchor:
                self._reanchor = False
                self._t0 = now - (events[pos].recv_ns - recv0) / (speed * 1e9)
            due = self._t0 + (events[pos].recv_ns - recv0) / (speed * 1e9)
            if due > now:
                await self._wait(due - now)
                continue
            market.publish_one()
            batch += 1
            if batch >= 256:
                batch = 0
                await asyncio.sleep(0)

    async def _heartbeat(self) -> None:
        """Ping every connection every ``ping_interval`` s; close those whose oldest ping is ``pong_timeout`` old."""
        loop = asyncio.get_running_loop()
        tick = min(self.ping_interval, self.pong_timeout, 1.0) / 4
        next_ping = loop.time() + self.ping_interval
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            if now < self._faulty.stall_until:
                next_ping = max(next_ping, self._faulty.stall_until)
                continue
            for conn in list(self._hub.conns):
                if conn.pings and now - conn.pings[0][1] > self.pong_timeout and not conn.closed:
                    self.faults._count("pong_timeout")
                    conn.push_control(WSMsgType.CLOSE, (1008).to_bytes(2, "big"), first=True)
                    conn.pings.clear()
                    loop.call_later(2.0, conn.abort)
            if now >= next_ping:
                next_ping = now + self.ping_interval
                payload = str(_now_ms()).encode()
                for conn in self._hub.conns:
                    if not conn.closed:
                        conn.pings.append((payload, now))
                        conn.push_control(WSMsgType.PING, payload, first=True)

    # ------------------------------------------------------------------------------------------------- faults

    def _send_malformed(self, kind: str, count: int) -> int:
        market = self._market
        hub = self._hub
        sent = 0
        now = self.server_time_ms()
        for conn in list(hub.conns):
            target = self._malformed_target(conn, kind)
            if target is None:
                continue
            name, state, is_depth = target
            for _ in range(count):
                payload: bytes
                if kind == "json":
                    payload = b'{"e":"depthUpdate","E":' + str(now).encode() + b',"s":"' + state.symbol.encode()
                elif kind == "unknown_event":
                    payload = orjson.dumps({"e": "velozUnknownEvent", "E": now, "s": state.symbol})
                    name = f"{state.lower}@velozunknown"
                elif kind == "absurd_price" and is_depth:
                    next_id = state.book.last_update_id + 1
                    payload = orjson.dumps(
                        {
                            "e": "depthUpdate",
                            "E": now,
                            "s": state.symbol,
                            "U": next_id,
                            "u": next_id,
                            "b": [["-1.00000000", "1.00000000"]],
                            "a": [["not-a-price", "1.00000000"]],
                        }
                    )
                elif kind == "absurd_price":
                    payload = orjson.dumps(
                        {
                            "e": "trade",
                            "E": now,
                            "s": state.symbol,
                            "t": state.trades[-1][1] if state.trades else 0,
                            "p": "-1.00000000",
                            "q": "1.00000000",
                            "T": now,
                            "m": True,
                            "M": True,
                        }
                    )
                elif kind == "runaway_update_id":
                    next_id = state.book.last_update_id + 1
                    best = state.book.best_bid()
                    payload = orjson.dumps(
                        {
                            "e": "depthUpdate",
                            "E": now,
                            "s": state.symbol,
                            "U": next_id,
                            "u": next_id + 10**12,
                            "b": [[_fmt(best[0]), _fmt(best[1] + 123 * _SCALE)]] if best else [],
                            "a": [],
                        }
                    )
                else:  # out_of_order: the diff before the last one sent (or one the snapshot already holds)
                    if len(state.sent_diffs) >= 2:
                        payload = state.sent_diffs[-2][1]
                    else:
                        payload = (
                            state.capture.pre_diffs[-1].render(market.shift_ms) if state.capture.pre_diffs else b""
                        )
                    if not payload:
                        continue
                conn.push(hub.frame_for(conn, name, payload))
                sent += 1
        self.faults._count("malformed", sent)
        return sent

    def _malformed_target(self, conn: _Conn, kind: str) -> tuple[str, _SymbolState, bool] | None:
        """The stream a bad frame pretends to come from: a depth stream if the connection has one, else a trade
        stream (``absurd_price``), else any stream of a served symbol (``json``, ``unknown_event``)."""
        states = self._market.states
        depth = trade = other = None
        for name in conn.streams:
            state = states.get(name.partition("@")[0].upper())
            if state is None:
                continue
            if name in state.depth_names:
                depth = depth or (name, state, True)
            elif name == state.trade_name:
                trade = trade or (name, state, False)
            else:
                other = other or (name, state, False)
        if kind in ("out_of_order", "runaway_update_id"):
            return depth
        if kind == "absurd_price":
            return depth or trade
        return depth or trade or other

    async def _shutdown_streams(self) -> int:
        hub = self._hub
        conns = [conn for conn in hub.conns if not conn.closed]
        payload = orjson.dumps({"e": "serverShutdown", "E": self.server_time_ms()})
        for conn in conns:
            conn.push(hub.frame_for(conn, "!serverShutdown", payload))
            conn.push_control(WSMsgType.CLOSE, (1001).to_bytes(2, "big"))
        self.faults._count("server_shutdown", len(conns))
        writers = [conn.writer for conn in conns if conn.writer is not None]
        if writers:
            await asyncio.wait(writers, timeout=5.0)
        return len(conns)


# ---------------------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m veloz_actors.testing.binance_server",
        description="Serve recorded Binance spot captures over Binance's REST and websocket market-data API.",
    )
    parser.add_argument("--capture", action="append", required=True, help="a ticks_l2/*_ws.txt.gz capture (repeat)")
    parser.add_argument("--speed", type=float, default=1.0, help="x real time; 0 = as fast as possible")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ping-interval", type=float, default=20.0)
    parser.add_argument("--pong-timeout", type=float, default=60.0)
    parser.add_argument("--no-shift-times", action="store_true", help="keep the recorded event times")
    parser.add_argument("--exchange-info", default=None, help="an exchangeInfo JSON file to serve")
    parser.add_argument("--loop", action="store_true", help="start the captures over after their last event")
    parser.add_argument(
        "--wait-connections", type=int, default=0, help="publish nothing until this many stream connections are open"
    )
    args = parser.parse_args(argv)
    server = BinanceTestServer(
        args.capture,
        speed=args.speed,
        host=args.host,
        port=args.port,
        ping_interval=args.ping_interval,
        pong_timeout=args.pong_timeout,
        paused=args.wait_connections > 0,
        shift_times=not args.no_shift_times,
        exchange_info=args.exchange_info,
        loop=args.loop,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    try:
        line = {
            "rest_url": server.rest_url,
            "stream_url": server.stream_url,
            "symbols": list(server.symbols),
            "events": server.total,
        }
        print(orjson.dumps(line).decode(), flush=True)
        if args.wait_connections > 0:
            while not stop.is_set() and not server.wait_connections(args.wait_connections, timeout=0.2):
                pass
            if not stop.is_set():
                server.resume()
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
