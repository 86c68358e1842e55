"""The live market-data client's status as Prometheus metrics, from a real client of the local Binance server."""

from __future__ import annotations

import re
import time

from prometheus_client import CollectorRegistry, generate_latest

from veloz_actors.interfaces.metrics import EngineCollector
from veloz_actors.testing.binance_server import BinanceTestServer
from veloz_actors.venues.binance.market_data import MarketDataSettings, MarketDataThread

BTC = "ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"


def _scrape(status: dict) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(lambda: status, None))  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def _value(text: str, series: str) -> float:
    match = re.search(re.escape(series) + r" (\S+)", text)
    assert match is not None, f"{series} not in the scrape"
    return float(match.group(1))


def test_market_data_status_is_exported(shared_data) -> None:
    with BinanceTestServer([shared_data / BTC], paused=True) as server:
        settings = MarketDataSettings(rest_url=server.rest_url, stream_url=server.stream_url, symbols=("BTCUSDT",))
        with MarketDataThread(settings, lambda batch: None).start() as client:
            assert server.wait_connections(1, timeout=30) and client.wait_synced(30)
            server.publish(200)
            server.faults.skip_update_ids("BTCUSDT", 1)
            server.publish(200)
            deadline = time.monotonic() + 30
            while client.status()["resyncs"]["total"] < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            text = _scrape({"market_data": client.status()})
    assert _value(text, 'veloz_market_data_connected{venue="binance"}') == 1.0
    assert _value(text, 'veloz_market_data_resyncs_total{symbol="BTCUSDT",venue="binance"}') == 2.0
    assert _value(text, 'veloz_market_data_bad_input_total{kind="sequence_gap",venue="binance"}') == 1.0
    assert _value(text, 'veloz_market_data_reconnects_total{venue="binance"}') == 0.0
    assert 'veloz_market_data_last_event_age_seconds{stream="btcusdt@depth@100ms",venue="binance"}' in text
    assert 'veloz_market_data_latency_seconds{percentile="50",stage="depth",venue="binance"}' in text
    assert 'veloz_market_data_latency_seconds{percentile="99",stage="depth",venue="binance"}' in text
    assert "quantile=" not in text  # Prometheus's label of summaries, never of a gauge
    assert abs(_value(text, 'veloz_market_data_clock_offset_seconds{venue="binance"}')) < 1.0


def test_an_engine_without_market_data_exports_none() -> None:
    assert "veloz_market_data_" not in _scrape({})
