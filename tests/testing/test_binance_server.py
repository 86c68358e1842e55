"""The local Binance-speaking test server (:mod:`veloz_actors.testing.binance_server`), over real sockets.

Every check goes through aiohttp's client (the client VeloZ uses) against a server on 127.0.0.1: REST answers,
errors and weights; raw and combined streams byte for byte against the recorded captures; live SUBSCRIBE and friends;
paused ``publish(n)``; the server's book against an offline :class:`L2Book` built from the capture; every fault switch
as a client sees it; pings and pong timeouts; restart on the same port; the command line. Most tests serve the first
3000 lines of each 2024 spot capture (about 28 s of market, the REST snapshot included). No Ray.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType

from veloz_actors import DataError
from veloz_actors.core.l2book import L2Book
from veloz_actors.testing import binance_server
from veloz_actors.testing.binance_server import BinanceTestServer
from veloz_actors.venues.binance.schemas import (
    parse_depth_snapshot,
    parse_depth_update,
    parse_message,
    parse_trade,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
TICKS = SHARED / "ticks_l2"
BTC = TICKS / "binance_spot_btcusdt_20240808_ws.txt.gz"
ETH = TICKS / "binance_spot_ethusdt_20240808_ws.txt.gz"
EXCHANGE_INFO = SHARED / "binance-api" / "examples-nautilus" / "http_spot_market_exchange_info.json"
SMALL_LINES = 3000

_T = TypeVar("_T")


# ------------------------------------------------------------------------------------------------ recorded data


class Recorded:
    """A capture read independently of the server: what it must publish, in order, and the offline book."""

    def __init__(self, path: Path) -> None:
        self.path = path
        lines = gzip.decompress(path.read_bytes()).splitlines()
        pre: list[dict[str, Any]] = []
        post: list[tuple[int, str, bytes, dict[str, Any]]] = []
        snapshot: dict[str, Any] | None = None
        for line in lines:
            ts, _, body = line.partition(b" ")
            obj = orjson.loads(body)
            if "lastUpdateId" in obj:
                snapshot = obj
                continue
            stream = obj["stream"]
            prefix = b'{"stream":"' + stream.encode() + b'","data":'
            assert body.startswith(prefix)
            raw = body[len(prefix) : -1]
            if snapshot is None:
                if "@depth" in stream:
                    pre.append(obj["data"])
            else:
                post.append((int(ts), stream, raw, obj["data"]))
        assert snapshot is not None
        self.symbol = post[0][3]["s"]
        self.snapshot = snapshot
        self.pre = pre
        book = self.initial_book()
        self.events: list[tuple[int, str, bytes, dict[str, Any]]] = []  # what the server publishes, in order
        for event in post:
            if "@depth" in event[1]:
                delta = parse_depth_update(event[3], 0)
                if delta.last_update_id <= book.last_update_id:
                    continue  # the bridged snapshot already holds it
                book.apply(delta)
            self.events.append(event)

    def initial_book(self) -> L2Book:
        """Binance's procedure: buffer the diffs, apply the REST snapshot, replay the buffered ones after it."""
        book = L2Book(self.symbol)
        for data in self.pre:
            book.apply(parse_depth_update(data, 0))
        book.apply_snapshot(parse_depth_snapshot(self.snapshot, 0, self.symbol))
        return book

    def book_after(self, n: int) -> tuple[int, tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        book = self.initial_book()
        for _, stream, _, data in self.events[:n]:
            if "@depth" in stream:
                book.apply(parse_depth_update(data, 0))
        bids, asks = book.depth(len(book))
        return book.last_update_id, bids, asks


_RECORDED: dict[Path, Recorded] = {}


def recorded(path: Path) -> Recorded:
    if path not in _RECORDED:
        _RECORDED[path] = Recorded(path)
    return _RECORDED[path]


def merged(*captures: Recorded) -> list[tuple[int, str, bytes, dict[str, Any]]]:
    return sorted((e for c in captures for e in c.events), key=lambda e: e[0])


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The first 3000 lines of the 2024 spot BTCUSDT and ETHUSDT captures."""
    folder = tmp_path_factory.mktemp("captures")
    out = {}
    for symbol, path in (("BTCUSDT", BTC), ("ETHUSDT", ETH)):
        target = folder / path.name
        lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)[:SMALL_LINES]
        target.write_bytes(gzip.compress(b"".join(lines)))
        out[symbol] = target
    return out


# --------------------------------------------------------------------------------------------------- helpers


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def off_loop(fn: Callable[..., _T], *args: Any) -> _T:
    """A blocking server call from an async test (the client's loop must keep running meanwhile)."""
    return await asyncio.to_thread(fn, *args)


@asynccontextmanager
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def connect(
    s: aiohttp.ClientSession, server: BinanceTestServer, path: str, **kwargs: Any
) -> aiohttp.ClientWebSocketResponse:
    before = server.connections()
    ws = await s.ws_connect(server.stream_url + path, **kwargs)
    assert await off_loop(server.wait_connections, before + 1)
    return ws


async def texts(ws: aiohttp.ClientWebSocketResponse, n: int, timeout: float = 5.0) -> list[str]:
    """The next ``n`` text frames (pings are answered by aiohttp, or skipped)."""
    out: list[str] = []
    while len(out) < n:
        msg = await ws.receive(timeout=timeout)
        if msg.type is WSMsgType.TEXT:
            out.append(msg.data)
        elif msg.type not in (WSMsgType.PING, WSMsgType.PONG):
            raise AssertionError(f"expected a text frame, got {msg.type} {msg.data!r}")
    return out


async def until_quiet(ws: aiohttp.ClientWebSocketResponse, quiet: float = 0.15) -> list[str]:
    """Every text frame until none came for ``quiet`` seconds."""
    out: list[str] = []
    while True:
        try:
            msg = await ws.receive(timeout=quiet)
        except TimeoutError:
            return out
        if msg.type is WSMsgType.TEXT:
            out.append(msg.data)
        elif msg.type not in (WSMsgType.PING, WSMsgType.PONG):
            raise AssertionError(f"expected a text frame, got {msg.type} {msg.data!r}")


async def request(s: aiohttp.ClientSession, server: BinanceTestServer, path: str) -> tuple[int, Any, Any]:
    async with s.get(server.rest_url + path) as response:
        return response.status, await response.json(content_type=None), response.headers


def serve(*captures: Path, **kwargs: Any) -> BinanceTestServer:
    kwargs.setdefault("speed", 0)
    kwargs.setdefault("paused", True)
    return BinanceTestServer(list(captures), **kwargs)


# ------------------------------------------------------------------------------------------------------- REST


def test_rest_answers_errors_and_request_weights(small: dict[str, Path]) -> None:
    with serve(small["BTCUSDT"], small["ETHUSDT"]) as server:

        async def main() -> None:
            async with session() as s:
                # weights per the docs; the header is the minute's running total
                calls = [
                    ("/api/v3/ping", 1),
                    ("/api/v3/time", 1),
                    ("/api/v3/exchangeInfo", 20),
                    ("/api/v3/depth?symbol=BTCUSDT", 5),
                    ("/api/v3/depth?symbol=BTCUSDT&limit=100", 5),
                    ("/api/v3/depth?symbol=BTCUSDT&limit=101", 25),
                    ("/api/v3/depth?symbol=BTCUSDT&limit=500", 25),
                    ("/api/v3/depth?symbol=BTCUSDT&limit=501", 50),
                    ("/api/v3/depth?symbol=BTCUSDT&limit=1000", 50),
                    ("/api/v3/depth?symbol=BTCUSDT&limit=1001", 250),
                    ("/api/v3/depth?symbol=BTCUSDT&limit=5000", 250),
                    ("/api/v3/trades?symbol=BTCUSDT", 25),
                    ("/api/v3/aggTrades?symbol=BTCUSDT", 4),
                    ("/api/v3/klines?symbol=BTCUSDT&interval=1m", 2),
                    ("/api/v3/ticker/bookTicker?symbol=BTCUSDT", 2),
                    ("/api/v3/ticker/bookTicker", 4),
                    ('/api/v3/ticker/bookTicker?symbols=["BTCUSDT","ETHUSDT"]', 4),
                    ("/api/v3/depth?symbol=NOPEUSDT", 5),  # an error costs its weight too
                ]
                used = None
                for path, weight in calls:
                    _, _, headers = await request(s, server, path)
                    now = int(headers["X-MBX-USED-WEIGHT-1M"])
                    # a new minute may start between two requests: then the total restarts at this weight
                    assert now == (used or 0) + weight or now == weight, path
                    used = now

                status, body, _ = await request(s, server, "/api/v3/ping")
                assert (status, body) == (200, {})
                before = time.time_ns() // 1_000_000
                status, body, _ = await request(s, server, "/api/v3/time")
                after = time.time_ns() // 1_000_000
                assert status == 200 and before - 5 <= body["serverTime"] <= after + 5

                errors = {
                    "/api/v3/depth": (400, -1102),
                    "/api/v3/depth?symbol=": (400, -1102),
                    "/api/v3/depth?symbol=btcusdt": (400, -1100),
                    "/api/v3/depth?symbol=NOPEUSDT": (400, -1121),
                    "/api/v3/depth?symbol=BTCUSDT&limit=abc": (400, -1100),
                    "/api/v3/depth?symbol=BTCUSDT&limit=-5": (400, -1100),
                    "/api/v3/depth?symbol=BTCUSDT&limit=0": (400, -1130),
                    "/api/v3/trades?symbol=NOPE": (400, -1121),
                    "/api/v3/aggTrades?symbol=BTCUSDT&fromId=x": (400, -1100),
                    "/api/v3/klines?symbol=BTCUSDT": (400, -1102),
                    "/api/v3/klines?symbol=BTCUSDT&interval=7m": (400, -1120),
                    "/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=10&endTime=5": (400, -1023),
                    "/api/v3/exchangeInfo?symbol=NOPEUSDT": (400, -1121),
                    '/api/v3/exchangeInfo?symbols=["BTCUSDT","NOPEUSDT"]': (400, -1121),
                    "/api/v3/exchangeInfo?symbols=BTCUSDT": (400, -1100),
                    '/api/v3/exchangeInfo?symbols=["BTCUSDT"]&symbol=BTCUSDT': (400, -1128),
                    "/api/v3/ticker/bookTicker?symbol=NOPEUSDT": (400, -1121),
                }
                for path, (want_status, want_code) in errors.items():
                    status, body, headers = await request(s, server, path)
                    assert (status, body["code"]) == (want_status, want_code), path
                    assert set(body) == {"code", "msg"} and body["msg"], path
                    assert "X-MBX-USED-WEIGHT-1M" in headers
                _, body, _ = await request(s, server, "/api/v3/depth?symbol=NOPEUSDT")
                assert body == {"code": -1121, "msg": "Invalid symbol."}
                async with s.get(server.rest_url + "/api/v3/nothing") as response:
                    assert response.status == 404

        run(main())


def test_exchange_info_is_the_recorded_payload_for_the_captured_symbols(small: dict[str, Path], tmp_path: Path) -> None:
    real = json.loads(EXCHANGE_INFO.read_text())
    real_entries = {e["symbol"]: e for e in real["symbols"]}
    with serve(small["BTCUSDT"], small["ETHUSDT"]) as server:

        async def main() -> None:
            async with session() as s:
                _, body, _ = await request(s, server, "/api/v3/exchangeInfo")
                assert [e["symbol"] for e in body["symbols"]] == ["BTCUSDT", "ETHUSDT"]
                assert body["symbols"] == [real_entries["BTCUSDT"], real_entries["ETHUSDT"]]
                assert body["rateLimits"] == real["rateLimits"] and body["timezone"] == "UTC"
                assert abs(body["serverTime"] - time.time() * 1000) < 5000
                _, body, _ = await request(s, server, "/api/v3/exchangeInfo?symbol=ETHUSDT")
                assert body["symbols"] == [real_entries["ETHUSDT"]]
                _, body, _ = await request(s, server, '/api/v3/exchangeInfo?symbols=["ETHUSDT","BTCUSDT"]')
                assert [e["symbol"] for e in body["symbols"]] == ["ETHUSDT", "BTCUSDT"]

        run(main())

    # a symbol missing from the exchange info is synthesized from the captured prices' decimals: it finds the
    # real tick and step sizes
    only_btc = dict(real, symbols=[real_entries["BTCUSDT"]])
    (tmp_path / "info.json").write_text(json.dumps(only_btc))
    with serve(small["BTCUSDT"], small["ETHUSDT"], exchange_info=tmp_path / "info.json") as server:

        async def synthesized() -> dict[str, Any]:
            async with session() as s:
                _, body, _ = await request(s, server, "/api/v3/exchangeInfo?symbol=ETHUSDT")
                return body["symbols"][0]

        entry = run(synthesized())
    recorded_eth = real_entries["ETHUSDT"]
    assert set(entry) == set(recorded_eth) and entry["baseAsset"] == "ETH" and entry["quoteAsset"] == "USDT"
    filters = {f["filterType"]: f for f in entry["filters"]}
    real_filters = {f["filterType"]: f for f in recorded_eth["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == real_filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == real_filters["LOT_SIZE"]["stepSize"] == "0.00010000"


def test_depth_trades_klines_and_book_ticker_follow_the_published_market(small: dict[str, Path]) -> None:
    rec = recorded(small["BTCUSDT"])
    n = 1500
    published = rec.events[:n]
    trades = [e[3] for e in published if e[1].endswith("@trade")]
    tickers = [e[3] for e in published if e[1].endswith("@bookTicker")]
    with serve(small["BTCUSDT"], shift_times=False) as server:

        async def main() -> None:
            async with session() as s:
                # before anything is published: the bridged snapshot, and the book's top as the ticker
                _, body, _ = await request(s, server, "/api/v3/depth?symbol=BTCUSDT&limit=5000")
                last, bids, asks = rec.book_after(0)
                assert body["lastUpdateId"] == last == server.book("BTCUSDT")[0] > rec.snapshot["lastUpdateId"]
                assert len(body["bids"]) == len(bids) and len(body["asks"]) == len(asks)
                _, body, _ = await request(s, server, "/api/v3/trades?symbol=BTCUSDT")
                assert body == []
                _, body, _ = await request(s, server, "/api/v3/ticker/bookTicker?symbol=BTCUSDT")
                assert body["bidPrice"] == f"{bids[0][0] // 10**8}.{bids[0][0] % 10**8:08d}"

                assert await off_loop(server.publish, n) == n
                assert server.published == n and not server.done
                last, bids, asks = rec.book_after(n)
                _, body, _ = await request(s, server, "/api/v3/depth?symbol=BTCUSDT")
                assert body["lastUpdateId"] == last
                assert len(body["bids"]) == len(body["asks"]) == 100
                assert [(parse(p), parse(q)) for p, q in body["bids"]] == list(bids[:100])
                assert [(parse(p), parse(q)) for p, q in body["asks"]] == list(asks[:100])
                assert all(len(p.partition(".")[2]) == 8 for p, _ in body["bids"] + body["asks"])
                _, body, _ = await request(s, server, "/api/v3/depth?symbol=BTCUSDT&limit=7")
                assert len(body["bids"]) == 7

                _, body, _ = await request(s, server, "/api/v3/trades?symbol=BTCUSDT&limit=3")
                assert [t["id"] for t in body] == [t["t"] for t in trades[-3:]]
                _, body, _ = await request(s, server, "/api/v3/trades?symbol=BTCUSDT")
                assert len(body) == min(500, len(trades))
                last_trade = trades[-1]
                assert body[-1] == {
                    "id": last_trade["t"],
                    "price": last_trade["p"],
                    "qty": last_trade["q"],
                    "quoteQty": body[-1]["quoteQty"],
                    "time": last_trade["T"],
                    "isBuyerMaker": last_trade["m"],
                    "isBestMatch": last_trade["M"],
                }
                assert parse(body[-1]["quoteQty"]) == parse(last_trade["p"]) * parse(last_trade["q"]) // 10**8

                _, body, _ = await request(s, server, "/api/v3/aggTrades?symbol=BTCUSDT&limit=2")
                assert [(a["f"], a["p"], a["T"]) for a in body] == [(t["t"], t["p"], t["T"]) for t in trades[-2:]]

                _, body, _ = await request(s, server, "/api/v3/ticker/bookTicker?symbol=BTCUSDT")
                assert body == {
                    "symbol": "BTCUSDT",
                    "bidPrice": tickers[-1]["b"],
                    "bidQty": tickers[-1]["B"],
                    "askPrice": tickers[-1]["a"],
                    "askQty": tickers[-1]["A"],
                }
                _, body, _ = await request(s, server, "/api/v3/ticker/bookTicker")
                assert isinstance(body, list) and body[0]["symbol"] == "BTCUSDT"

                # klines from the published trades, against an independent aggregation (gaps filled at the close)
                for interval, ms in (("1s", 1000), ("1m", 60_000)):
                    _, body, _ = await request(
                        s, server, f"/api/v3/klines?symbol=BTCUSDT&interval={interval}&limit=1000"
                    )
                    assert body == expected_klines(trades, ms), interval
                    _, tail, _ = await request(s, server, f"/api/v3/klines?symbol=BTCUSDT&interval={interval}&limit=2")
                    assert tail == body[-2:]
                rows = expected_klines(trades, 1000)
                start, end = rows[3][0], rows[6][0]
                _, body, _ = await request(
                    s, server, f"/api/v3/klines?symbol=BTCUSDT&interval=1s&startTime={start}&endTime={end}"
                )
                assert body == rows[3:7]
                _, body, _ = await request(
                    s, server, f"/api/v3/klines?symbol=BTCUSDT&interval=1s&startTime={start}&limit=2"
                )
                assert body == rows[3:5]

        run(main())


def parse(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 10**8 + int((frac + "00000000")[:8])


def fmt(units: int) -> str:
    return f"{units // 10**8}.{units % 10**8:08d}"


def expected_klines(trades: list[dict[str, Any]], ms: int) -> list[list[Any]]:
    """Binance's REST klines computed from trade payloads, empty intervals carried at the previous close."""
    candles: dict[int, list[dict[str, Any]]] = {}
    for t in trades:
        candles.setdefault(t["T"] // ms * ms, []).append(t)
    rows: list[list[Any]] = []
    opens = sorted(candles)
    for open_ms in range(opens[0], opens[-1] + 1, ms):
        group = candles.get(open_ms)
        if not group:
            close = rows[-1][4]
            rows.append([open_ms, close, close, close, close, fmt(0), open_ms + ms - 1, fmt(0), 0, fmt(0), fmt(0), "0"])
            continue
        prices = [parse(t["p"]) for t in group]
        qtys = [parse(t["q"]) for t in group]
        buys = [(p, q) for p, q, t in zip(prices, qtys, group, strict=True) if not t["m"]]
        rows.append(
            [
                open_ms,
                group[0]["p"],
                fmt(max(prices)),
                fmt(min(prices)),
                group[-1]["p"],
                fmt(sum(qtys)),
                open_ms + ms - 1,
                fmt(sum(p * q for p, q in zip(prices, qtys, strict=True)) // 10**8),
                len(group),
                fmt(sum(q for _, q in buys)),
                fmt(sum(p * q for p, q in buys) // 10**8),
                "0",
            ]
        )
    return rows


# ---------------------------------------------------------------------------------------------------- streams


def test_raw_and_combined_streams_send_the_recorded_payloads_in_receive_time_order(small: dict[str, Path]) -> None:
    btc, eth = recorded(small["BTCUSDT"]), recorded(small["ETHUSDT"])
    events = merged(btc, eth)
    kinds = ("depth@100ms", "bookTicker", "trade")
    with serve(small["BTCUSDT"], small["ETHUSDT"], shift_times=False) as server:
        assert server.total == len(events)

        async def main() -> None:
            async with session() as s:
                names = [f"{sym}@{kind}" for sym in ("btcusdt", "ethusdt") for kind in kinds]
                combined = await connect(s, server, "/stream?streams=" + "/".join(names))
                raw_trade = await connect(s, server, "/ws/btcusdt@trade")
                raw_depth = await connect(s, server, "/ws/btcusdt@depth")  # @depth: the same diffs
                raw_two = await connect(s, server, "/ws/ethusdt@bookTicker/ethusdt@trade")
                assert await off_loop(server.publish, len(events) + 10) == len(events)
                assert server.done and server.published == len(events)

                got = await texts(combined, len(events))
                want = [b'{"stream":"' + e[1].encode() + b'","data":' + e[2] + b"}" for e in events]
                assert [g.encode() for g in got] == want  # byte for byte, merged by receive time
                assert await until_quiet(combined, 0.1) == []

                def payloads(stream: str) -> list[bytes]:
                    return [e[2] for e in events if e[1] == stream]

                assert [g.encode() for g in await texts(raw_trade, len(payloads("btcusdt@trade")))] == payloads(
                    "btcusdt@trade"
                )
                depth = payloads("btcusdt@depth@100ms")
                assert [g.encode() for g in await texts(raw_depth, len(depth))] == depth
                two = [e[2] for e in events if e[1] in ("ethusdt@bookTicker", "ethusdt@trade")]
                assert [g.encode() for g in await texts(raw_two, len(two))] == two

                # done: the streams stay open and REST keeps answering
                assert not combined.closed and server.connections() == 4
                status, _, _ = await request(s, server, "/api/v3/depth?symbol=ETHUSDT")
                assert status == 200
                assert await off_loop(server.publish, 5) == 0

        run(main())


def test_paced_speed_publishes_by_receive_time(small: dict[str, Path]) -> None:
    rec = recorded(small["BTCUSDT"])
    span = (rec.events[-1][0] - rec.events[0][0]) / 1e9  # about 28 s of market
    speed = span / 1.0  # the whole capture in about a second
    with serve(small["BTCUSDT"], speed=speed) as server:

        async def main() -> list[float]:
            async with session() as s:
                ws = await connect(s, server, "/ws/btcusdt@trade")
                start = time.monotonic()
                await off_loop(server.resume)
                arrivals = []
                count = sum(1 for e in rec.events if e[1].endswith("@trade"))
                for _ in range(count):
                    await texts(ws, 1)
                    arrivals.append(time.monotonic() - start)
                return arrivals

        arrivals = run(main())
    assert 0.7 < arrivals[-1] < 30.0  # paced: never early (a busy machine may make it late, never instant)
    # the middle trade arrives no sooner than its receive time says, at this speed
    trades = [e[0] for e in rec.events if e[1].endswith("@trade")]
    mid = len(trades) // 2
    expected = (trades[mid] - rec.events[0][0]) / 1e9 / speed
    assert expected - 0.05 <= arrivals[mid] < expected + 30.0


def test_shifted_times_follow_the_wall_clock_and_only_times_change(small: dict[str, Path]) -> None:
    rec = recorded(small["BTCUSDT"])
    first_trade = next(i for i, e in enumerate(rec.events) if e[1].endswith("@trade"))
    with serve(small["BTCUSDT"]) as server:

        async def main() -> None:
            async with session() as s:
                ws = await connect(s, server, "/stream?streams=btcusdt@trade/btcusdt@depth@100ms/btcusdt@bookTicker")
                await off_loop(server.publish, first_trade + 1)
                frames = [orjson.loads(f) for f in await texts(ws, first_trade + 1)]
                now = time.time() * 1000
                shifts = set()
                for frame, (_, stream, _, data) in zip(frames, rec.events[: first_trade + 1], strict=True):
                    assert frame["stream"] == stream
                    got = frame["data"]
                    assert set(got) == set(data)
                    for key in got:
                        if key in ("E", "T"):
                            shifts.add(got[key] - data[key])
                        else:
                            assert got[key] == data[key]
                assert len(shifts) == 1  # one constant for every time field
                trade = frames[-1]["data"]
                assert abs(trade["E"] - now) < 5000  # close to the wall clock when sent
                _, body, _ = await request(s, server, "/api/v3/time")
                assert abs(body["serverTime"] - time.time() * 1000) < 1000

        run(main())

    with serve(small["BTCUSDT"], shift_times=False) as server:

        async def recorded_clock() -> int:
            async with session() as s:
                _, body, _ = await request(s, server, "/api/v3/time")
                return int(body["serverTime"])

        first_e = next(e[3]["E"] for e in rec.events if "E" in e[3])
        assert abs(run(recorded_clock()) - first_e) < 5000  # the capture's clock, running from its first event


def test_live_subscribe_unsubscribe_list_and_properties(small: dict[str, Path]) -> None:
    rec = recorded(small["BTCUSDT"])
    with serve(small["BTCUSDT"], shift_times=False) as server:

        async def main() -> None:
            async with session() as s:
                ws = await connect(s, server, "/ws")

                async def call(message: Any) -> Any:
                    await ws.send_str(message if isinstance(message, str) else json.dumps(message))
                    return orjson.loads((await texts(ws, 1))[0])

                assert await call(
                    {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "btcusdt@aggTrade"], "id": 1}
                ) == {
                    "result": None,
                    "id": 1,
                }
                assert await call({"method": "LIST_SUBSCRIPTIONS", "id": "abc"}) == {
                    "result": ["btcusdt@trade", "btcusdt@aggTrade"],
                    "id": "abc",
                }
                assert await call({"method": "UNSUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 2}) == {
                    "result": None,
                    "id": 2,
                }
                assert await call({"method": "LIST_SUBSCRIPTIONS", "id": None}) == {
                    "result": ["btcusdt@trade"],
                    "id": None,
                }
                # unknown symbols and stream kinds are accepted (as Binance does) and never send anything
                assert await call({"method": "SUBSCRIBE", "params": ["nopeusdt@trade", "btcusdt@ticker"], "id": 3}) == {
                    "result": None,
                    "id": 3,
                }

                n = 300
                await off_loop(server.publish, n)
                trades = [e[2] for e in rec.events[:n] if e[1] == "btcusdt@trade"]
                assert [f.encode() for f in await until_quiet(ws)] == trades  # raw payloads, no aggTrade any more

                # SET_PROPERTY combined: the same connection now sends envelopes
                assert await call({"method": "GET_PROPERTY", "params": ["combined"], "id": 4}) == {
                    "result": False,
                    "id": 4,
                }
                assert await call({"method": "SET_PROPERTY", "params": ["combined", True], "id": 5}) == {
                    "result": None,
                    "id": 5,
                }
                assert await call({"method": "GET_PROPERTY", "params": ["combined"], "id": 6}) == {
                    "result": True,
                    "id": 6,
                }
                await off_loop(server.publish, n)
                frames = [orjson.loads(f) for f in await until_quiet(ws)]
                assert frames and all(f["stream"] == "btcusdt@trade" and f["data"]["e"] == "trade" for f in frames)

                # bad requests: Binance's error form {"error": {"code", "msg"}, "id"}
                bad = {
                    "not json": 3,
                    json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"]}): 2,  # no id
                    json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": [1]}): 2,
                    json.dumps({"params": ["btcusdt@trade"], "id": 7}): 2,  # no method
                    json.dumps({"method": "SUBSCRIBED", "params": [], "id": 8}): 2,
                    json.dumps({"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 9}): 2,
                    json.dumps({"method": "SUBSCRIBE", "params": ["BTCUSDT@trade"], "id": 10}): 2,
                    json.dumps({"method": "SET_PROPERTY", "params": ["colour", True], "id": 11}): 0,
                    json.dumps({"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 12}): 1,
                    json.dumps({"method": "GET_PROPERTY", "params": [5], "id": 13}): 2,
                }
                for message, code in bad.items():
                    answer = await call(message)
                    assert set(answer) == {"error", "id"} and answer["error"]["code"] == code, message
                    assert isinstance(answer["error"]["msg"], str) and answer["error"]["msg"]
                assert (await call(json.dumps({"method": "SUBSCRIBED", "params": [], "id": 8})))["id"] == 8
                assert await call({"method": "LIST_SUBSCRIPTIONS", "id": 14}) == {
                    "result": ["btcusdt@trade", "nopeusdt@trade", "btcusdt@ticker"],
                    "id": 14,
                }
                assert not ws.closed  # nothing above closes the connection

        run(main())


def test_kline_agg_trade_and_partial_depth_streams(small: dict[str, Path]) -> None:
    rec = recorded(small["BTCUSDT"])
    n = 2000
    trades = [e[3] for e in rec.events[:n] if e[1].endswith("@trade")]
    with serve(small["BTCUSDT"], shift_times=False) as server:

        async def main() -> None:
            async with session() as s:
                klines = await connect(s, server, "/ws/btcusdt@kline_1s")
                agg = await connect(s, server, "/ws/btcusdt@aggTrade")
                partial = await connect(s, server, "/ws/btcusdt@depth5@100ms/btcusdt@depth10")
                await off_loop(server.publish, n)
                events = [orjson.loads(f) for f in await until_quiet(klines)]
                updates = [e for e in events if not e["k"]["x"]]
                closes = [e for e in events if e["k"]["x"]]
                # Binance's update speed for 1s candles: the first trade of a candle, then a trade 1000 ms or more
                # (event time) after the last update sent
                paced, candle, last_sent = [], None, 0
                for t in trades:
                    if t["T"] // 1000 != candle or t["E"] - last_sent >= 1000:
                        candle, last_sent = t["T"] // 1000, t["E"]
                        paced.append(t)
                assert len(trades) > 3 * len(paced) > 0
                assert [u["k"]["L"] for u in updates] == [t["t"] for t in paced]
                assert all(u["E"] == t["E"] and u["s"] == "BTCUSDT" for u, t in zip(updates, paced, strict=True))
                # every candle with trades closes once, when a later event passes its close time; its values are
                # Binance's (the REST row of the same candle)
                rows = {r[0]: r for r in expected_klines(trades, 1000)}
                opened = sorted({u["k"]["t"] for u in updates})
                assert [c["k"]["t"] for c in closes] == opened[: len(closes)] and len(closes) >= len(opened) - 1
                for c in closes:
                    k = c["k"]
                    row = rows[k["t"]]
                    assert [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"], k["V"], k["Q"]] == (
                        row[:11]
                    )
                    assert k["i"] == "1s" and c["E"] >= k["T"]

                aggs = [orjson.loads(f) for f in await until_quiet(agg)]
                assert [(a["f"], a["l"], a["p"], a["q"], a["m"]) for a in aggs] == [
                    (t["t"], t["t"], t["p"], t["q"], t["m"]) for t in trades
                ]
                assert [a["a"] for a in aggs] == list(range(len(aggs)))

                books = [orjson.loads(f) for f in await until_quiet(partial)]
                fives = [b for b in books if len(b["bids"]) == 5]
                tens = [b for b in books if len(b["bids"]) == 10]
                diffs = [e[3] for e in rec.events[:n] if "@depth" in e[1]]
                assert len(fives) == len(diffs)  # @100ms: after every diff
                assert 0 < len(tens) < len(fives)  # 1000 ms: at most once a second
                last, bids, asks = server.book("BTCUSDT")
                assert fives[-1] == {
                    "lastUpdateId": last,
                    "bids": [[fmt(p), fmt(q)] for p, q in bids[:5]],
                    "asks": [[fmt(p), fmt(q)] for p, q in asks[:5]],
                }

        run(main())


def test_paused_publish_is_deterministic(small: dict[str, Path]) -> None:
    streams = "/".join(
        f"{sym}@{kind}"
        for sym in ("btcusdt", "ethusdt")
        for kind in ("depth@100ms", "bookTicker", "trade", "aggTrade", "kline_1s", "depth5@100ms")
    )

    def session_frames() -> list[str]:
        with serve(small["BTCUSDT"], small["ETHUSDT"], shift_times=False) as server:

            async def main() -> list[str]:
                async with session() as s:
                    ws = await connect(s, server, "/stream?streams=" + streams)
                    frames: list[str] = []
                    for step in (1, 5, 50, 200, 1000):
                        assert await off_loop(server.publish, step) == step
                        frames += await until_quiet(ws, 0.15)
                    return frames

            return run(main())

    first, second = session_frames(), session_frames()
    assert len(first) > 1256 and first == second


def test_the_server_book_equals_the_offline_book() -> None:
    btc, eth = recorded(BTC), recorded(ETH)
    events = merged(btc, eth)
    with serve(BTC, ETH) as server:
        assert server.total == len(events)
        done = 0
        for step in (0, 1, 10, 100, 1000, 10_000):
            done += server.publish(step)
            for rec in (btc, eth):
                n = sum(1 for e in events[:done] if e[3]["s"] == rec.symbol)
                assert server.book(rec.symbol) == rec.book_after(n), (rec.symbol, done)
        server.resume()  # the rest as fast as it goes, to nobody
        deadline = time.monotonic() + 20
        while not server.done and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.done and server.published == len(events)
        for rec in (btc, eth):
            assert server.book(rec.symbol) == rec.book_after(len(rec.events))

        async def rest_depth() -> dict[str, Any]:
            async with session() as s:
                return (await request(s, server, "/api/v3/depth?symbol=ETHUSDT&limit=5000"))[1]

        body = run(rest_depth())
        last, bids, asks = server.book("ETHUSDT")
        assert body["lastUpdateId"] == last
        assert [(parse(p), parse(q)) for p, q in body["bids"]] == list(bids[:5000])
        assert [(parse(p), parse(q)) for p, q in body["asks"]] == list(asks[:5000])


# ------------------------------------------------------------------------------------------------------ faults


def test_drop_connections_aborts_without_a_close_frame(small: dict[str, Path]) -> None:
    with serve(small["BTCUSDT"]) as server:

        async def main() -> None:
            async with session() as s:
                a = await connect(s, server, "/ws/btcusdt@trade")
                b = await connect(s, server, "/stream?streams=btcusdt@depth")
                assert await off_loop(server.faults.drop_connections) == 2
                for ws in (a, b):
                    msg = await ws.receive(timeout=5)
                    assert msg.type is WSMsgType.CLOSED  # no close frame (that would be WSMsgType.CLOSE)
                    assert ws.close_code == 1006  # abnormal closure
                assert server.connections() == 0 and server.faults.counts["drop_connections"] == 2
                c = await connect(s, server, "/ws/btcusdt@trade")  # the server still accepts
                await off_loop(server.publish, 200)
                assert await until_quiet(c)

        run(main())


def test_stall_stops_publishing_and_pings_then_the_pacing_resumes(small: dict[str, Path]) -> None:
    rec = recorded(small["BTCUSDT"])
    span = (rec.events[-1][0] - rec.events[0][0]) / 1e9
    with serve(small["BTCUSDT"], speed=span / 2.0, ping_interval=0.05) as server:

        async def main() -> tuple[list[float], float]:
            async with session() as s:
                ws = await connect(s, server, "/ws/btcusdt@bookTicker", autoping=False)
                await off_loop(server.resume)
                start = time.monotonic()
                arrivals: list[float] = []
                stalled_at = 0.0
                while time.monotonic() - start < 1.5:
                    if not stalled_at and time.monotonic() - start > 0.4:
                        await off_loop(server.faults.stall, 0.6)
                        stalled_at = time.monotonic() - start
                    msg = await ws.receive(timeout=2)
                    if msg.type is WSMsgType.PING:
                        await ws.pong(msg.data)
                    arrivals.append(time.monotonic() - start)
                return arrivals, stalled_at

        arrivals, stalled_at = run(main())
    inside = [t for t in arrivals if stalled_at + 0.05 < t < stalled_at + 0.55]
    assert inside == []  # neither market frames nor pings while stalled
    assert any(t > stalled_at + 0.6 for t in arrivals)  # and both come back
    assert server.faults.counts["stall"] == 1


def test_skip_update_ids_makes_a_gap_the_client_sees(small: dict[str, Path]) -> None:
    rec = recorded(small["BTCUSDT"])
    diffs = [i for i, e in enumerate(rec.events) if "@depth" in e[1]]
    with serve(small["BTCUSDT"], shift_times=False) as server:

        async def main() -> None:
            async with session() as s:
                ws = await connect(s, server, "/ws/btcusdt@depth@100ms")
                await off_loop(server.publish, diffs[2] + 1)
                seen = [orjson.loads(f) for f in await texts(ws, 3)]
                assert all(b["U"] == a["u"] + 1 for a, b in zip(seen, seen[1:], strict=False))  # continuous
                server.faults.skip_update_ids("btcusdt", 2)
                await off_loop(server.publish, diffs[5] + 1 - server.published)
                after = [orjson.loads(f) for f in await until_quiet(ws)]
                assert len(after) == 1  # two of the three diffs were not sent
                skipped = [rec.events[i][3] for i in diffs[3:5]]
                assert after[0]["U"] == skipped[-1]["u"] + 1 > seen[-1]["u"] + 1  # the gap
                assert server.book("BTCUSDT")[0] == after[0]["u"]  # the server's book applied the skipped diffs
                assert server.faults.counts["skip_update_ids"] == 2

        run(main())
    with pytest.raises(ValueError, match="unknown symbol"):
        server.faults.skip_update_ids("NOPEUSDT")


def test_a_looping_server_starts_the_captures_over_with_later_ids_and_times(
    small: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``loop=True`` (soak runs): after the last event the same market again, each book back to its first state
    with update ids past every id sent and a hole after them (a client resyncs), trade ids past every trade sent,
    event times never back; a client applying diffs to a fresh snapshot keeps the server's book exactly. It keeps
    the latest trades only (a soak's server stays bounded), their aggregate ids going on."""
    monkeypatch.setattr(binance_server, "_LOOP_KEEP_TRADES", 5)
    rec = recorded(small["BTCUSDT"])
    total = len(rec.events)
    sent = sum(1 for e in rec.events if "@depth" in e[1] or "@trade" in e[1])  # the streams subscribed to
    tail = sum(1 for e in rec.events[:10] if "@depth" in e[1] or "@trade" in e[1])
    with serve(small["BTCUSDT"], loop=True) as server:

        async def main() -> None:
            async with session() as s:
                ws = await connect(s, server, "/stream?streams=btcusdt@depth@100ms/btcusdt@trade")
                await off_loop(server.publish, total)
                first = [orjson.loads(f)["data"] for f in await texts(ws, sent)]
                assert not server.done and server.passes == 0
                await off_loop(server.publish, total + 10)
                second = [orjson.loads(f)["data"] for f in await texts(ws, sent + tail)]
                assert server.passes == 2 and server.published == 10
                third = second[sent:]
                second = second[:sent]

                def of(events: list[dict[str, Any]], kind: str, field: str) -> list[int]:
                    return [e[field] for e in events if e["e"] == kind]

                diffs = [of(run, "depthUpdate", "U") for run in (first, second)]
                ends = [of(run, "depthUpdate", "u") for run in (first, second)]
                assert diffs[1][0] > ends[0][-1] + 1  # a hole: the client's book needs a new snapshot
                moved = diffs[1][0] - diffs[0][0]
                assert [u - moved for u in diffs[1]] == diffs[0] and [u - moved for u in ends[1]] == ends[0]
                trades = [of(run, "trade", "t") for run in (first, second)]
                assert min(trades[1]) > max(trades[0])
                assert min(of(second, "depthUpdate", "E")) >= max(of(first, "depthUpdate", "E"))
                assert of(third, "depthUpdate", "U")[0] > ends[1][-1] + 1
                assert [e["s"] for e in second] == [e["s"] for e in first]
                # the third pass's book, from its snapshot and its diffs, is the server's book
                book = L2Book("BTCUSDT")
                status, snapshot, _ = await request(s, server, "/api/v3/depth?symbol=BTCUSDT&limit=5000")
                assert status == 200
                last_id, bids, asks = server.book("BTCUSDT")
                assert snapshot["lastUpdateId"] == last_id
                book.apply_snapshot(parse_depth_snapshot(snapshot, 0, "BTCUSDT"))
                assert book.depth(len(book)) == (bids, asks)
                offline = rec.book_after(10)
                assert (bids, asks) == offline[1:]
                status, aggregated, _ = await request(s, server, "/api/v3/aggTrades?symbol=BTCUSDT&limit=1000")
                published = len(trades[0]) + len(trades[1]) + len(of(third, "trade", "t"))
                assert status == 200 and len(aggregated) == 5 + len(of(third, "trade", "t"))
                assert [a["a"] for a in aggregated] == list(range(published - len(aggregated), published))

        run(main())


def test_malformed_frames_of_each_kind(small: dict[str, Path]) -> None:
    with serve(small["BTCUSDT"], shift_times=False) as server:

        async def main() -> None:
            async with session() as s:
                depth = await connect(s, server, "/stream?streams=btcusdt@depth@100ms/btcusdt@trade")
                trade = await connect(s, server, "/ws/btcusdt@trade")
                ticker = await connect(s, server, "/ws/btcusdt@bookTicker")
                await off_loop(server.publish, 400)
                last_u = max(orjson.loads(f)["data"].get("u", 0) for f in await until_quiet(depth))
                await until_quiet(trade)
                await until_quiet(ticker)

                assert server.faults.malformed("json", 2) == 6  # every subscribed connection
                for ws in (depth, trade, ticker):
                    for frame in await texts(ws, 2):
                        with pytest.raises(orjson.JSONDecodeError):
                            orjson.loads(frame)

                assert server.faults.malformed("unknown_event") == 3
                for ws in (depth, trade, ticker):
                    with pytest.raises(DataError, match="unsupported event type"):
                        parse_message((await texts(ws, 1))[0], 0)
                assert await until_quiet(depth, 0.05) == []  # once per connection, as asked

                assert server.faults.malformed("absurd_price", 2) == 4  # depth and trade subscribers only
                for frame in await texts(depth, 2):
                    envelope = orjson.loads(frame)
                    assert envelope["stream"] == "btcusdt@depth@100ms"
                    with pytest.raises(DataError, match="price"):
                        parse_depth_update(envelope["data"], 0)
                for frame in await texts(trade, 2):
                    with pytest.raises(DataError, match="'p'.*negative"):
                        parse_trade(orjson.loads(frame), 0)
                assert await until_quiet(ticker, 0.1) == []

                assert server.faults.malformed("out_of_order", 3) == 3  # depth subscribers only
                for frame in await texts(depth, 3):
                    data = orjson.loads(frame)["data"]
                    assert data["e"] == "depthUpdate" and data["u"] < last_u  # an old diff again
                assert await until_quiet(trade, 0.1) == []

                assert server.faults.malformed("runaway_update_id") == 1  # depth subscribers only
                (frame,) = await texts(depth, 1)
                data = orjson.loads(frame)["data"]
                assert data["U"] == last_u + 1 and data["u"] == last_u + 1 + 10**12  # it connects, then runs away
                assert parse_depth_update(data, 0).bids  # well formed: nothing in the frame tells it is wrong
                assert await until_quiet(trade, 0.1) == []
                assert server.faults.counts["malformed"] == 6 + 3 + 4 + 3 + 1

                # the market goes on undisturbed after the bad frames
                await off_loop(server.publish, 200)
                frames = [orjson.loads(f)["data"] for f in await until_quiet(depth)]
                diffs = [f for f in frames if f["e"] == "depthUpdate"]
                assert diffs and diffs[0]["U"] == last_u + 1

        run(main())
    with pytest.raises(ValueError, match="malformed kind"):
        server.faults.malformed("nonsense")


def test_stale_snapshot_is_older_than_the_buffered_diffs(small: dict[str, Path]) -> None:
    rec = recorded(small["BTCUSDT"])
    with serve(small["BTCUSDT"]) as server:

        async def main() -> None:
            async with session() as s:
                ws = await connect(s, server, "/ws/btcusdt@depth@100ms")
                await off_loop(server.publish, 300)
                first_u = orjson.loads((await texts(ws, 1))[0])["U"]  # step 2: U of the first buffered diff
                server.faults.stale_snapshot()
                _, stale, _ = await request(s, server, "/api/v3/depth?symbol=BTCUSDT&limit=1000")
                assert stale["lastUpdateId"] == rec.snapshot["lastUpdateId"] < first_u  # step 4: go back to step 3
                assert stale["bids"] == rec.snapshot["bids"] and stale["asks"] == rec.snapshot["asks"]
                _, fresh, _ = await request(s, server, "/api/v3/depth?symbol=BTCUSDT&limit=1000")
                assert fresh["lastUpdateId"] == server.book("BTCUSDT")[0] >= first_u
                assert server.faults.counts["stale_snapshot"] == 1

        run(main())


def test_rate_limit_answers_429_and_418_with_retry_after(small: dict[str, Path]) -> None:
    with serve(small["BTCUSDT"]) as server:

        async def main() -> None:
            async with session() as s:
                server.faults.rate_limit(retry_after=3, count=2)
                for path in ("/api/v3/depth?symbol=BTCUSDT", "/api/v3/time"):
                    status, body, headers = await request(s, server, path)
                    assert status == 429 and headers["Retry-After"] == "3" and body["code"] == -1003
                    assert "X-MBX-USED-WEIGHT-1M" in headers and "request weight" in body["msg"]
                status, _, _ = await request(s, server, "/api/v3/time")
                assert status == 200
                server.faults.rate_limit(status=418, retry_after=7)
                status, body, headers = await request(s, server, "/api/v3/ping")
                assert status == 418 and headers["Retry-After"] == "7" and body["code"] == -1003
                assert "banned" in body["msg"]
                assert (await request(s, server, "/api/v3/ping"))[0] == 200
                assert server.faults.counts["rate_limit"] == 3

        run(main())
    with pytest.raises(ValueError):
        server.faults.rate_limit(status=500)


def test_server_shutdown_event_then_close(small: dict[str, Path]) -> None:
    with serve(small["BTCUSDT"]) as server:

        async def main() -> None:
            async with session() as s:
                raw = await connect(s, server, "/ws/btcusdt@trade")
                combined = await connect(s, server, "/stream?streams=btcusdt@trade")
                before = time.time() * 1000
                assert await off_loop(server.faults.server_shutdown) == 2
                event = orjson.loads((await texts(raw, 1))[0])
                assert set(event) == {"e", "E"} and event["e"] == "serverShutdown" and event["E"] >= before - 5
                wrapped = orjson.loads((await texts(combined, 1))[0])
                assert wrapped["stream"] == "!serverShutdown" and wrapped["data"]["e"] == "serverShutdown"
                for ws in (raw, combined):
                    msg = await ws.receive(timeout=5)
                    assert msg.type is WSMsgType.CLOSE and msg.data == 1001  # a close frame: going away
                deadline = time.monotonic() + 5
                while server.connections() and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                assert server.connections() == 0
                await connect(s, server, "/ws/btcusdt@trade")  # a new connection is welcome
                assert server.faults.counts["server_shutdown"] == 2

        run(main())


def test_restart_drops_everything_and_listens_again_on_the_same_port(small: dict[str, Path]) -> None:
    with serve(small["BTCUSDT"]) as server:
        port = server.port
        server.publish(500)
        book = server.book("BTCUSDT")

        async def main() -> None:
            async with session() as s:
                ws = await connect(s, server, "/ws/btcusdt@trade")
                await off_loop(lambda: server.faults.restart(0.5, wait=False))
                msg = await ws.receive(timeout=5)
                assert msg.type is WSMsgType.CLOSED
                with pytest.raises(aiohttp.ClientConnectionError):  # nobody listens during the downtime
                    await request(s, server, "/api/v3/ping")
                deadline = time.monotonic() + 10
                while True:
                    try:
                        status, _, _ = await request(s, server, "/api/v3/ping")
                        break
                    except aiohttp.ClientConnectionError:
                        assert time.monotonic() < deadline
                        await asyncio.sleep(0.05)
                assert status == 200 and server.port == port and server.rest_url.endswith(f":{port}")
                ws = await connect(s, server, "/ws/btcusdt@trade")
                await off_loop(server.publish, 100)
                assert await until_quiet(ws)

        run(main())
        assert server.published == 600  # the market kept its position
        assert server.book("BTCUSDT")[0] >= book[0]
        server.faults.restart(0.1)  # blocking: listening again on return

        async def ping() -> int:
            async with session() as s:
                return (await request(s, server, "/api/v3/ping"))[0]

        assert run(ping()) == 200 and server.faults.counts["restart"] == 2


def _slow_socket(server: BinanceTestServer, path: str) -> socket.socket:
    """A websocket client that never reads, with a tiny receive buffer: the server's queue for it fills up."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


@pytest.mark.parametrize("mode", ["speed 0", "paced", "publish"])
def test_a_slow_client_is_disconnected_and_never_holds_up_the_others(mode: str) -> None:
    """At speed 0 (and in ``publish(n)``) the publisher waits for a full queue a while, then drops its client; paced,
    it drops it at once. The slow client never reads every diff three times over (more than the socket buffers)."""
    rec = recorded(BTC)
    speed = (rec.events[-1][0] - rec.events[0][0]) / 1e9 / 1.0 if mode == "paced" else 0  # paced: all in about 1 s
    trades = [e[2] for e in rec.events if e[1] == "btcusdt@trade"]
    heavy = "/".join(f"btcusdt@{k}" for k in ("depth@100ms", "depth", "depth@1000ms", "bookTicker", "trade"))
    with serve(BTC, speed=speed, send_queue=256, slow_client_timeout=0.3, shift_times=False) as server:

        async def main() -> list[bytes]:
            async with session() as s:
                fast = await connect(s, server, "/ws/btcusdt@trade")
                slow = _slow_socket(server, "/stream?streams=" + heavy)
                try:
                    assert await off_loop(server.wait_connections, 2)
                    reader = asyncio.ensure_future(texts(fast, len(trades), timeout=10))
                    if mode == "publish":
                        assert await off_loop(server.publish, server.total) == server.total
                    else:
                        await off_loop(server.resume)
                    got = [f.encode() for f in await reader]
                    assert server.connections() == 1  # the slow one is gone, the fast one stays
                    return got
                finally:
                    slow.close()

        assert run(main()) == trades  # the fast client got everything
        assert server.faults.counts["slow_client"] == 1


# ------------------------------------------------------------------------------------------------------- pings


def test_pings_carry_a_payload_and_a_client_that_does_not_pong_is_closed(small: dict[str, Path]) -> None:
    with serve(small["BTCUSDT"], ping_interval=0.1, pong_timeout=0.4) as server:

        async def main() -> None:
            async with session() as s:
                good = await connect(s, server, "/ws/btcusdt@trade")  # aiohttp answers pings while it reads
                silent = await connect(s, server, "/ws/btcusdt@trade", autoping=False)
                unsolicited = await connect(s, server, "/ws/btcusdt@trade", autoping=False)

                async def keep_reading() -> None:
                    # aiohttp answers each ping inside receive(), which goes on waiting for a data frame
                    with pytest.raises(TimeoutError):
                        await asyncio.wait_for(good.receive(), 1.5)

                async def never_pong() -> tuple[list[bytes], float]:
                    pings: list[bytes] = []
                    first = 0.0
                    while True:
                        msg = await silent.receive(timeout=5)
                        if msg.type is WSMsgType.PING:
                            first = first or time.monotonic()
                            pings.append(msg.data)
                        else:
                            assert msg.type is WSMsgType.CLOSE and msg.data == 1008
                            return pings, time.monotonic() - first  # from the first unanswered ping

                async def empty_pongs() -> WSMsgType:
                    while True:
                        msg = await unsolicited.receive(timeout=5)
                        if msg.type is WSMsgType.PING:
                            await unsolicited.pong(b"")  # not a copy of the ping: does not count
                        else:
                            return msg.type

                _, (pings, closed_after), kind = await asyncio.gather(keep_reading(), never_pong(), empty_pongs())
                assert len(pings) >= 3 and all(p for p in pings) and len(set(pings)) == len(pings)
                assert 0.3 <= closed_after < 1.5  # pong_timeout 0.4 s (the first ping may have waited a little)
                assert kind is WSMsgType.CLOSE
                assert not good.closed and server.connections() >= 1
                assert server.faults.counts["pong_timeout"] == 2

        run(main())


# ---------------------------------------------------------------------------------------------------- captures


def test_captures_the_server_cannot_serve_are_refused_naming_the_file(small: dict[str, Path]) -> None:
    no_snapshot = TICKS / "binance_spot_btcusdt_20230405_ws.txt.gz"
    with pytest.raises(ValueError, match="binance_spot_btcusdt_20230405_ws.txt.gz.*snapshot"):
        BinanceTestServer([no_snapshot])
    with pytest.raises(ValueError, match="binance_usdm_btcusdt_20240808_ws.txt.gz.*futures"):
        BinanceTestServer([TICKS / "binance_usdm_btcusdt_20240808_ws.txt.gz"])
    with pytest.raises(ValueError, match="already served"):
        BinanceTestServer([small["BTCUSDT"], BTC])
    with pytest.raises(ValueError, match="speed"):
        BinanceTestServer([small["BTCUSDT"]], speed=-1)


def test_the_command_line_serves_until_sigterm(small: dict[str, Path]) -> None:
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "veloz_actors.testing.binance_server",
            "--capture",
            str(small["BTCUSDT"]),
            "--speed",
            "0",
        ],
        stdout=subprocess.PIPE,
        cwd=root,
        env=env,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["rest_url"].startswith("http://127.0.0.1:") and info["stream_url"].startswith("ws://127.0.0.1:")
        assert info["symbols"] == ["BTCUSDT"] and info["events"] == len(recorded(small["BTCUSDT"]).events)

        async def ping() -> Any:
            async with session() as s, s.get(info["rest_url"] + "/api/v3/ping") as response:
                return await response.json()

        assert run(ping()) == {}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
