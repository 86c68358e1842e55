"""The event-driven backtest (strategies over the core engine) and the vectorised kernel give the same fills and
metrics, exactly, over many parameter sets on real Binance data."""

from __future__ import annotations

import numpy as np
import pytest

from tests.backtest.synthetic_bars import ALGO, write_bars
from veloz_actors.backtest import kernel
from veloz_actors.backtest.metrics import equity_and_metrics, report_metrics
from veloz_actors.backtest.runner import run_bar_backtest
from veloz_actors.backtest.settings import BacktestSettings
from veloz_actors.data.bars import BAR_DTYPE, BarSeries
from veloz_actors.data.loaders import load_bars
from veloz_actors.strategies.bar_strategies import make_strategy


@pytest.fixture(scope="module")
def btc_5m(shared_data) -> BarSeries:
    full = load_bars(shared_data / "ohlcv" / "binance_spot_BTCUSDT_5m_20240301-20250702.csv.gz")
    return BarSeries(full.symbol, full.interval_ns, full.data[:20_000].copy(), full.price_tick, full.source)


@pytest.fixture(scope="module")
def eth_1h(shared_data) -> BarSeries:
    return load_bars(shared_data / "ohlcv" / "binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz")


SMA_PARAMS = [(2, 3), (5, 20), (10, 30), (12, 26), (20, 60), (7, 45), (50, 200)]
RSI_PARAMS = [(14, 30, 70), (7, 25, 75), (21, 35, 60), (2, 10, 90), (14, 45.5, 55.5)]
SETTINGS = [
    BacktestSettings(),
    BacktestSettings(fee_rate=75_000, slippage_rate=20_000),  # 0.075 % fee, 2 bps slippage
    BacktestSettings(fee_rate=0, initial_cash=123_456_789_000, qty_step=1_000),
]


def _assert_same(bars: BarSeries, name: str, params: dict, settings: BacktestSettings) -> None:
    event = run_bar_backtest(bars, make_strategy(name, params), settings)
    trades, metrics = kernel.backtest(bars, name, params, settings)
    assert len(event.trades) == len(trades), f"{name} {params}: fill count differs"
    assert np.array_equal(event.trades, trades), f"{name} {params}: fills differ"
    assert event.metrics == metrics, f"{name} {params}: metrics differ"
    # the report's statistics (CAGR, drawdown duration, Sortino, ...) too, each engine's from its own equity curve
    settings = settings.for_bars(bars)
    equity, _ = equity_and_metrics(bars, settings, trades)
    assert np.array_equal(event.equity, equity), f"{name} {params}: equity differs"
    report = report_metrics(bars, settings, event.trades, event.equity, event.metrics)
    assert report == report_metrics(bars, settings, trades, equity, metrics), f"{name} {params}: report differs"


@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "fee-slippage", "zero-fee"])
@pytest.mark.parametrize("fast,slow", SMA_PARAMS)
def test_sma_cross_event_engine_equals_kernel_on_btc_5m(btc_5m, fast, slow, settings):
    _assert_same(btc_5m, "sma_cross", {"fast": fast, "slow": slow}, settings)


@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "fee-slippage", "zero-fee"])
@pytest.mark.parametrize("period,lower,upper", RSI_PARAMS)
def test_rsi_reversion_event_engine_equals_kernel_on_eth_1h(eth_1h, period, lower, upper, settings):
    _assert_same(eth_1h, "rsi_reversion", {"period": period, "lower": lower, "upper": upper}, settings)


def test_agreement_is_not_vacuous(btc_5m, eth_1h):
    sma = run_bar_backtest(btc_5m, make_strategy("sma_cross", {"fast": 10, "slow": 30}))
    rsi = run_bar_backtest(eth_1h, make_strategy("rsi_reversion", {"period": 14, "lower": 30, "upper": 70}))
    assert len(sma.trades) > 500 and len(rsi.trades) > 20
    assert sma.metrics["n_trades"] == len(sma.trades) // 2


def test_a_sell_whose_slipped_price_rounds_below_one_tick_fills_at_one_tick_in_both_engines():
    """An open of one tick less any slippage floors to 0: both engines sell at one tick (before, the kernel sold at 0,
    a total loss, while the event engine skipped the exit and stayed long)."""
    closes = [5, 5, 6, 6, 1, 1, 1]  # 1e-8 units, on a 1e-8 tick
    data = np.zeros(len(closes), dtype=BAR_DTYPE)
    data["open_time"] = np.arange(len(closes)) * 60_000_000_000
    data["close"] = closes
    data["open"] = [closes[0], *closes[:-1]]
    data["high"] = np.maximum(data["open"], data["close"])
    data["low"] = np.minimum(data["open"], data["close"])
    data["volume"] = 1
    bars = BarSeries("PEPEUSDT", 60_000_000_000, data, 1)
    settings = BacktestSettings(slippage_rate=10_000, initial_cash=100 * 10**8)
    _assert_same(bars, "sma_cross", {"fast": 1, "slow": 2}, settings)
    trades, _ = kernel.backtest(bars, "sma_cross", {"fast": 1, "slow": 2}, settings)
    assert [(int(t["side"]), int(t["price"])) for t in trades] == [(1, 7), (-1, 1)]


def test_engines_agree_on_a_file_not_named_binance_spot_symbol(tmp_path):
    path = write_bars(tmp_path, ALGO).rename(tmp_path / "algo15m_synthetic.csv")  # the symbol comes from the stem
    bars = load_bars(path)
    event = run_bar_backtest(bars, make_strategy("sma_cross", {"fast": 3, "slow": 9}))
    assert len(event.trades) > 10 and not event.warnings
    _assert_same(bars, "sma_cross", {"fast": 3, "slow": 9}, BacktestSettings())


@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "python"])
def test_both_engines_give_the_same_warning_for_buys_the_cash_cannot_pay_for(shared_data, monkeypatch, compiled):
    """20 USDT buys 0.01 ETH while ETH is cheap enough: 302 fills, and 482 BUY signals the cash could not pay for one
    step. The event engine warned of them; the kernel (numba walk or the exact Python one) skipped them without a word.
    Now both give the same line, through the same ``warnings`` of ``veloz backtest``, and the same trades."""
    import veloz_actors as vz
    from veloz_actors.backtest import kernel as bar_kernel

    monkeypatch.setattr(bar_kernel, "_USE_NUMBA", compiled and bar_kernel._USE_NUMBA)
    data = str(shared_data / "ohlcv" / "binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz")
    config = {"strategy": "sma_cross", "params": {"fast": 3, "slow": 9}, "initial_cash": "20", "qty_step": "0.01"}
    event = vz.run_backtest(data=data, engine="event", **config)
    vectorised = vz.run_backtest(data=data, engine="kernel", **config)
    assert len(event["trades"]) == 302
    assert event["warnings"] == [
        "482 strategy buys could not pay for one quantity step, not traded: the first had 16.2781125 USDT for 0.01 ETH "
        "at 1643.34 plus the fee; raise the initial cash or give a finer quantity step (--qty-step)"
    ]
    assert vectorised["warnings"] == event["warnings"]
    assert vectorised["trades"] == event["trades"] and vectorised["metrics"] == event["metrics"]
