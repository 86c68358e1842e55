"""Kline updates from the stream: one open update per candle per batch (the latest supersedes the earlier ones),
closed candles always kept, and the last update of every candle equal to the server's REST kline."""

from __future__ import annotations

import time
import urllib.request

import orjson

from veloz_actors.messages import Kline, Trade
from veloz_actors.testing.binance_server import BinanceTestServer
from veloz_actors.venues.binance.market_data import MarketDataSettings, MarketDataThread
from veloz_actors.venues.binance.schemas import parse_rest_klines

BTC = "ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"


def test_kline_updates_are_coalesced_per_batch_and_end_exact(shared_data) -> None:
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
            status = client.status()
            with urllib.request.urlopen(f"{server.rest_url}/api/v3/klines?symbol=BTCUSDT&interval=1s&limit=1000") as r:
                rest = parse_rest_klines(orjson.loads(r.read()), "BTCUSDT", 0, "1s")
    klines = [e for b in batches for e in b if type(e) is Kline]
    trades = [e for b in batches for e in b if type(e) is Trade]
    assert trades and klines
    assert status["klines_superseded"] > 0  # the capture trades several times a second: updates were coalesced
    assert len(klines) < len(trades)
    for batch in batches:
        open_candles = [e.open_time for e in batch if type(e) is Kline and not e.closed]
        assert len(open_candles) == len(set(open_candles)), "two open updates of one candle in a batch"
    last = {}
    for kline in klines:
        last[kline.open_time] = kline
    by_open = {k.open_time: k for k in rest}
    assert len(last) > 10
    for open_time, kline in last.items():
        expected = by_open[open_time]
        assert (kline.open, kline.high, kline.low, kline.close, kline.volume) == (
            expected.open, expected.high, expected.low, expected.close, expected.volume,
        )  # fmt: skip
