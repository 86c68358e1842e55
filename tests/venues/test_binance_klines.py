"""Kline updates from the stream: one open update per candle per batch (the latest supersedes the earlier ones, at its
place), closed candles always kept, and every closed candle equal to the server's REST kline."""

from __future__ import annotations

import time
import urllib.request

import orjson

from veloz_actors.messages import Kline, Trade
from veloz_actors.testing.binance_server import BinanceTestServer
from veloz_actors.venues.binance.market_data import BinanceMarketData, MarketDataSettings, MarketDataThread
from veloz_actors.venues.binance.schemas import parse_rest_klines

BTC = "ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"


def test_closed_candles_from_the_stream_equal_the_rest_klines(shared_data) -> None:
    batches: list[list] = []
    with BinanceTestServer([shared_data / BTC], paused=True) as server:
        settings = MarketDataSettings(
            rest_url=server.rest_url, stream_url=server.stream_url, symbols=("BTCUSDT",), kline_interval="1s"
        )
        with MarketDataThread(settings, batches.append).start() as client:
            assert server.wait_connections(1, timeout=30) and client.wait_synced(30)
            for _ in range(20):
                server.publish(400)
            last_id = server.book("BTCUSDT")[0]
            deadline = time.monotonic() + 30
            while client.status()["symbols"]["BTCUSDT"]["last_update_id"] != last_id:
                assert time.monotonic() < deadline, "the client did not catch up"
                time.sleep(0.05)
            time.sleep(0.5)  # the trades and klines sent after the last diff
            with urllib.request.urlopen(f"{server.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1s&limit=1000") as r:
                rest = parse_rest_klines(orjson.loads(r.read()), "BTCUSDT", 0, "1s")
    klines = [e for b in batches for e in b if type(e) is Kline]
    trades = [e for b in batches for e in b if type(e) is Trade]
    assert trades and klines
    assert len(klines) < len(trades) / 3  # Binance's update speed (1000 ms for 1s candles), not one per trade
    for batch in batches:
        open_candles = [e.open_time for e in batch if type(e) is Kline and not e.closed]
        assert len(open_candles) == len(set(open_candles)), "two open updates of one candle in a batch"
    closed = [k for k in klines if k.closed]
    assert len({k.open_time for k in closed}) == len(closed) > 10  # each candle closes once
    by_open = {k.open_time: k for k in rest}
    for kline in closed:
        expected = by_open[kline.open_time]
        assert (kline.open, kline.high, kline.low, kline.close, kline.volume) == (
            expected.open, expected.high, expected.low, expected.close, expected.volume,
        )  # fmt: skip


def _frame(open_ms: int, event_ms: int, close: str, *, closed: bool = False) -> bytes:
    k = {
        "t": open_ms, "T": open_ms + 59_999, "s": "BTCUSDT", "i": "1m", "o": "100.00", "h": "101.00", "l": "99.00",
        "c": close, "v": "1.5", "x": closed,
    }  # fmt: skip
    return orjson.dumps({"stream": "btcusdt@kline_1m", "data": {"e": "kline", "E": event_ms, "s": "BTCUSDT", "k": k}})


def test_a_later_update_of_the_same_open_candle_replaces_the_earlier_one_in_a_batch() -> None:
    batches: list[list] = []
    settings = MarketDataSettings("http://127.0.0.1:9", "ws://127.0.0.1:9", ("BTCUSDT",), kline_interval="1m")
    client = BinanceMarketData(settings, batches.append)
    minute = 60_000
    frames = [
        _frame(0, 2_000, "100.10"),
        _frame(0, 4_000, "100.20"),
        _frame(0, 6_000, "100.30"),
        _frame(0, 60_001, "100.40", closed=True),  # the close: always kept
        _frame(minute, 60_002, "100.50"),
        _frame(minute, 62_000, "100.60"),
    ]
    for i, raw in enumerate(frames):
        client._frame(raw, ts_recv=i)
    client._flush()
    (batch,) = batches
    assert [(k.open_time, k.close, k.closed) for k in batch] == [
        (0, 10_040_000_000, True),  # the close supersedes the open updates of its candle
        (minute * 1_000_000, 10_060_000_000, False),  # the next candle's latest open update
    ]
    assert client.status()["klines_superseded"] == 4
    client._frame(_frame(minute, 64_000, "100.70"), ts_recv=9)  # a new batch starts with nothing to supersede
    client._flush()
    assert [k.close for k in batches[1]] == [10_070_000_000]
    assert client.status()["klines_superseded"] == 4
