"""The risk actor's gauges as Prometheus metrics: full-word names with unit suffixes, labels for symbols and limits."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from veloz_actors.core.risk_monitor import EngineRiskLimits, RiskMonitor, RiskMonitorConfig
from veloz_actors.interfaces.metrics import EngineCollector
from veloz_actors.messages import Liquidity, OrderFilled, Side
from veloz_actors.testing import START_NS, d, instruments


def _scrape(status: dict) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(lambda: status, None))  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def test_the_risk_gauges_are_exported_with_their_labels() -> None:
    config = RiskMonitorConfig(
        instruments=instruments(),
        balances={"main": {"USDT": d("100000")}},
        limits=EngineRiskLimits(max_symbol_exposure={"BTCUSDT": d("2")}, max_drawdown=d("0.2")),
        reference_prices={"BTCUSDT": d("60000")},
    )
    monitor = RiskMonitor(config)
    monitor.apply(
        OrderFilled(
            client_order_id="c1",
            order_id=1,
            account_id="main",
            symbol="BTCUSDT",
            side=Side.BUY,
            trade_id=1,
            price=d("60000"),
            qty=d("0.5"),
            fee=0,
            fee_asset="USDT",
            liquidity=Liquidity.TAKER,
            cum_qty=d("0.5"),
            leaves_qty=0,
            ts=START_NS,
        )  # fmt: skip
    )
    text = _scrape({"risk_gauges": monitor.gauges(), "valuation_asset": "USDT"})
    assert 'veloz_risk_equity_amount{asset="USDT"} 100000.0' in text
    assert 'veloz_risk_symbol_exposure_base_quantity{symbol="BTCUSDT"} 0.5' in text
    assert 'veloz_risk_asset_exposure_amount{asset="BTC"} 0.5' in text
    assert 'veloz_risk_limit_use_ratio{limit="symbol_exposure",subject="BTCUSDT"} 0.25' in text
    assert 'veloz_risk_limit_use_ratio{limit="drawdown",subject=""} 0.0' in text
    assert "veloz_risk_halted 0.0" in text
    assert "veloz_risk_fills_total 1.0" in text


def test_an_engine_without_a_risk_actor_exports_no_risk_metrics() -> None:
    assert "veloz_risk_" not in _scrape({})
