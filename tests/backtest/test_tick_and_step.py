"""Backtests on every Binance symbol: the default quantity step rule (0.00001, coarser when the tick needs it), the
price_tick / qty_step overrides, and the clear errors for overrides that break exact notionals or are off the data."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from veloz_actors import ConfigError, InvalidInput
from veloz_actors.backtest import kernel
from veloz_actors.backtest.l2 import L2Settings
from veloz_actors.backtest.runner import BacktestResult, run_bar_backtest
from veloz_actors.backtest.settings import BacktestSettings, default_qty_step
from veloz_actors.core.instruments import ceil_div
from veloz_actors.data.bars import BarSeries
from veloz_actors.data.loaders import load_bars, load_market_events
from veloz_actors.messages import BookDelta, Side, Trade
from veloz_actors.search.config import SearchConfig
from veloz_actors.search.plan import fingerprint, make_plan
from veloz_actors.strategies.bar_strategies import make_strategy
from veloz_actors.testing import d

from .synthetic_bars import ALGO, DOT, TINY, Coin, write_bars

E8 = 10**8
SMA = {"fast": 3, "slow": 8}
BTC_1H = "ohlcv/binance_spot_BTCUSDT_1h_20230101-20240110.csv.gz"


@pytest.mark.parametrize(
    ("tick", "step"),
    [
        ("0.01", "0.00001"),  # BTCUSDT: unchanged
        ("0.001", "0.00001"),
        ("0.0001", "0.0001"),  # ALGOUSDT at 0.18
        ("0.00001", "0.001"),  # DOGEUSDT
        ("0.00000001", "1"),  # a coin priced 0.00000123
        ("0.0000001", "0.1"),
        ("0.00005", "0.001"),  # a tick that is not a power of ten: 0.00005 x 0.001 = 5e-8
        ("100", "0.00001"),  # whole-number prices written in hundreds
    ],
)
def test_default_step_is_0_00001_or_the_coarser_power_of_ten_the_tick_needs(tick: str, step: str) -> None:
    assert default_qty_step(d(tick)) == d(step)
    assert d(tick) * d(step) % E8 == 0
    assert d(step) == 1_000 or d(tick) * (d(step) // 10) % E8  # and no finer power of ten would do


def _coin_bars(tmp_path: Path, coin: Coin) -> BarSeries:
    return load_bars(write_bars(tmp_path, coin))


def _assert_money_is_exact(result: BacktestResult, settings: BacktestSettings, closes: np.ndarray) -> None:
    """Replay the trade list in integers: every price on the tick, quantity on the step, notional a whole 1e-8, fee
    rounded up, cash after each fill as recorded, and the final equity equal to cash + position at the last close."""
    inst = result.instrument
    assert inst is not None
    cash, held = settings.initial_cash, 0
    for row in result.trades:
        side, price, qty, fee = int(row["side"]), int(row["price"]), int(row["qty"]), int(row["fee"])
        assert price > 0 and price % inst.price_tick == 0
        assert qty > 0 and qty % inst.qty_step == 0
        assert price * qty % E8 == 0  # the notional is an exact amount of the quote asset
        notional = price * qty // E8
        assert fee == ceil_div(notional * settings.fee_rate, E8)
        if side == 1:
            assert held == 0
            cash -= notional + fee
            held = qty
            assert cash >= -1  # the fee's rounding up may take the last 1e-8
        else:
            assert qty == held
            cash += notional - fee
            held = 0
        assert cash == int(row["cash_after"])
    final = (cash + held * int(closes[-1]) // E8) / E8
    assert result.metrics["final_equity"] == pytest.approx(final, rel=1e-12, abs=1e-8)


@pytest.mark.parametrize(
    ("coin", "tick", "step"),
    [(ALGO, "0.0001", "0.0001"), (TINY, "0.00000001", "1"), (DOT, "0.001", "0.00001")],
    ids=["algo-0.0001-tick", "tiny-1e-8-tick", "dot-0.001-tick"],
)
def test_low_priced_coins_backtest_out_of_the_box(tmp_path: Path, coin: Coin, tick: str, step: str) -> None:
    bars = _coin_bars(tmp_path, coin)
    assert (bars.symbol, bars.price_tick) == (coin.symbol, d(tick))
    settings = BacktestSettings()
    result = run_bar_backtest(bars, make_strategy("sma_cross", SMA), settings)
    assert (result.instrument.price_tick, result.instrument.qty_step) == (d(tick), d(step))
    assert len(result.trades) >= 20 and result.metrics["n_trades"] >= 10
    _assert_money_is_exact(result, settings, bars.data["close"])
    # the vectorised kernel applies the same rule and gives the very same fills and metrics
    trades, metrics = kernel.backtest(bars, "sma_cross", SMA, settings)
    assert np.array_equal(trades, result.trades)
    assert metrics == result.metrics


def test_tiny_coin_positions_are_billions_of_units(tmp_path: Path) -> None:
    bars = _coin_bars(tmp_path, TINY)
    result = run_bar_backtest(bars, make_strategy("sma_cross", SMA), BacktestSettings())
    first = result.trades[0]
    assert int(first["qty"]) > 7 * 10**9 * E8  # 10,000 USDT at ~0.0000012: over 7 billion whole coins
    assert int(first["qty"]) % E8 == 0


def test_more_coins_than_veloz_represents_is_a_clear_error_in_both_engines(tmp_path: Path) -> None:
    # a coin at 0.0000006-0.0000009: 10,000 USDT would buy over 10 billion coins (fixed.MAX_ABS is 1e10 whole units)
    bars = load_bars(write_bars(tmp_path, Coin("TINYUSDT", "0.00000075", 1, 3)))
    assert int(bars.data["open"].max()) < 100  # below 0.000001
    with pytest.raises(InvalidInput, match=r"10000000000 whole units.* lower the initial cash"):
        run_bar_backtest(bars, make_strategy("sma_cross", SMA), BacktestSettings())
    with pytest.raises(InvalidInput, match=r"10000000000 whole units.* lower the initial cash"):
        kernel.backtest(bars, "sma_cross", SMA, BacktestSettings())
    settings = BacktestSettings(initial_cash=1_000 * E8)
    result = run_bar_backtest(bars, make_strategy("sma_cross", SMA), settings)
    assert len(result.trades) >= 20
    _assert_money_is_exact(result, settings, bars.data["close"])
    assert np.array_equal(kernel.backtest(bars, "sma_cross", SMA, settings)[0], result.trades)


def test_btcusdt_keeps_the_0_00001_step_and_its_results(shared_data: Path) -> None:
    bars = load_bars(shared_data / BTC_1H)
    assert bars.price_tick == d("0.01")
    default = run_bar_backtest(bars, make_strategy("sma_cross", SMA), BacktestSettings())
    explicit = run_bar_backtest(bars, make_strategy("sma_cross", SMA), BacktestSettings(qty_step=1_000))
    assert default.instrument.qty_step == explicit.instrument.qty_step == d("0.00001")
    assert np.array_equal(default.trades, explicit.trades) and default.metrics == explicit.metrics
    assert len(default.trades) > 500
    _assert_money_is_exact(default, BacktestSettings(), bars.data["close"])


# ----------------------------------------------------------------------------------------------------- overrides


def test_a_given_step_is_used(tmp_path: Path) -> None:
    bars = _coin_bars(tmp_path, ALGO)
    settings = BacktestSettings(qty_step=E8)  # whole ALGO, Binance's real ALGOUSDT step
    result = run_bar_backtest(bars, make_strategy("sma_cross", SMA), settings)
    assert (result.instrument.price_tick, result.instrument.qty_step) == (d("0.0001"), E8)
    assert len(result.trades) >= 40 and not np.any(result.trades["qty"] % E8)
    _assert_money_is_exact(result, settings, bars.data["close"])
    default = run_bar_backtest(bars, make_strategy("sma_cross", SMA), BacktestSettings())
    assert np.any(default.trades["qty"] % E8)  # the default step 0.0001 buys fractions of a coin


def test_a_given_finer_tick_is_used_and_gets_its_own_default_step(tmp_path: Path) -> None:
    bars = _coin_bars(tmp_path, ALGO)
    settings = BacktestSettings(price_tick=1_000, slippage_rate=30_000)  # tick 0.00001, slippage 3 bp
    result = run_bar_backtest(bars, make_strategy("sma_cross", SMA), settings)
    assert (result.instrument.price_tick, result.instrument.qty_step) == (d("0.00001"), d("0.001"))
    assert np.any(result.trades["price"] % 10_000)  # fills land between the data's 0.0001 ticks
    assert not np.any(result.trades["price"] % 1_000)
    _assert_money_is_exact(result, settings, bars.data["close"])
    trades, _ = kernel.backtest(bars, "sma_cross", SMA, settings)
    assert np.array_equal(trades, result.trades)


def test_for_bars_fixes_tick_and_step_once(tmp_path: Path) -> None:
    bars = _coin_bars(tmp_path, ALGO)
    fixed = BacktestSettings(fee_rate=75_000).for_bars(bars)
    assert (fixed.price_tick, fixed.qty_step, fixed.fee_rate) == (d("0.0001"), d("0.0001"), 75_000)
    assert fixed.for_bars(bars) is fixed


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            BacktestSettings(qty_step=1_000),
            "ALGOUSDT: qty_step (--qty-step) 0.00001 x the data's price tick 0.0001 is finer than 1e-8 of the quote "
            "asset, so notionals would not be exact: use a qty_step that is a multiple of 0.0001, or leave it out for "
            "the default 0.0001",
        ),
        (
            BacktestSettings(price_tick=1_000, qty_step=10_000),
            "ALGOUSDT: qty_step (--qty-step) 0.0001 x price_tick (--price-tick) 0.00001 is finer than 1e-8",
        ),
        (
            BacktestSettings(price_tick=100_000),
            "ALGOUSDT: price_tick (--price-tick) 0.001 is off the data: ",
        ),
        (
            BacktestSettings(price_tick=30_000),
            "price_tick (--price-tick) 0.0003 is off the data",
        ),
        (BacktestSettings(qty_step=0), "qty_step must be a positive int in 1e-8 units, got 0"),
        (BacktestSettings(price_tick=-5), "price_tick must be a positive int in 1e-8 units, got -5"),
    ],
    ids=["step-too-fine", "tick-and-step-too-fine", "tick-coarser-than-data", "tick-not-dividing-data", "zero-step",
         "negative-tick"],
)  # fmt: skip
def test_bad_overrides_are_clear_errors_in_both_engines(
    tmp_path: Path, settings: BacktestSettings, message: str
) -> None:
    bars = _coin_bars(tmp_path, ALGO)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        run_bar_backtest(bars, make_strategy("sma_cross", SMA), settings)
    with pytest.raises(InvalidInput, match=re.escape(message)):
        kernel.backtest(bars, "sma_cross", SMA, settings)


def test_an_off_data_tick_error_says_how_many_prices_and_which(tmp_path: Path) -> None:
    bars = _coin_bars(tmp_path, ALGO)
    prices = np.concatenate([bars.data[c] for c in ("open", "high", "low", "close")])
    off = int(np.count_nonzero(prices % 100_000))
    assert 0 < off < len(prices)
    with pytest.raises(InvalidInput, match=rf"0\.001 is off the data: {off} of its prices, e\.g\. 0\.\d+, are not"):
        BacktestSettings(price_tick=100_000).for_bars(bars)


def test_a_coarser_tick_that_every_price_is_on_is_accepted(tmp_path: Path) -> None:
    bars = _coin_bars(tmp_path, ALGO)
    data = bars.data.copy()
    for column in ("open", "high", "low", "close"):
        data[column] = data[column] // 100_000 * 100_000  # every price on 0.001, though written as 0.0001 would allow
    coarse = BarSeries(bars.symbol, bars.interval_ns, data, d("0.0001"))
    settings = BacktestSettings(price_tick=100_000).for_bars(coarse)
    assert (settings.price_tick, settings.qty_step) == (d("0.001"), d("0.00001"))


# ------------------------------------------------------------------------------------------------------- L2 rule


def _trade(price: int, qty: int, ts: int = 1) -> Trade:
    return Trade(symbol="TINYUSDT", trade_id=ts, price=price, qty=qty, aggressor=Side.BUY, ts_event=ts, ts_recv=ts)


def test_l2_tick_and_step_come_from_the_capture_so_low_priced_coins_need_no_rule() -> None:
    # ALGOUSDT-like: prices on 0.0001, quantities in whole coins -> step 1, exact
    events = [_trade(d("0.1801"), d("250")), _trade(d("0.1799"), d("1300"), 2)]
    settings = L2Settings.for_events(events)
    assert (settings.price_tick, settings.qty_step) == (d("0.0001"), d("1"))


def test_l2_capture_finer_than_1e_8_together_is_a_clear_error() -> None:
    events = [_trade(d("0.0000123"), d("10.01")), _trade(d("0.0000124"), d("3.02"), 2)]  # tick 1e-7, step 0.01
    with pytest.raises(InvalidInput, match=r"the capture's prices \(tick 0\.0000001\) and quantities \(step 0\.01\) "
                       "are together finer than 1e-8"):  # fmt: skip
        L2Settings.for_events(events)


@pytest.fixture(scope="module")
def btc_capture(shared_data: Path) -> list:
    return load_market_events(shared_data / "ticks_l2" / "binance_spot_btcusdt_20230405_ws.txt.gz")


def test_l2_overrides_are_used_when_they_fit_the_capture(btc_capture: list) -> None:
    default = L2Settings.for_events(btc_capture)
    assert (default.price_tick, default.qty_step) == (d("0.01"), d("0.000001"))  # as the 2023 capture writes them
    finer = L2Settings.for_events(btc_capture, price_tick=d("0.001"), qty_step=d("0.0001"))
    assert (finer.price_tick, finer.qty_step) == (d("0.001"), d("0.0001"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"price_tick": d("0.1")}, r"price_tick \(--price-tick\) 0\.1 does not fit the capture: the recorded price "),
        ({"qty_step": 1}, r"qty_step \(--qty-step\) 0\.00000001 x the capture's price tick 0\.01 is finer than 1e-8"),
        ({"price_tick": d("0.001"), "qty_step": d("0.000001")}, r"x price_tick \(--price-tick\) 0\.001 is finer"),
    ],
)
def test_l2_overrides_that_do_not_fit_are_clear_errors(btc_capture: list, overrides: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        L2Settings.for_events(btc_capture, **overrides)


def test_l2_book_prices_are_checked_too() -> None:
    snapshot = BookDelta(symbol="TINYUSDT", bids=((d("0.1805"), d("5")),), asks=((d("0.181"), d("7")),),
                         first_update_id=1, last_update_id=1, ts_event=1, ts_recv=1, is_snapshot=True)  # fmt: skip
    events = [snapshot, _trade(d("0.181"), d("2"), 2)]
    assert L2Settings.for_events(events).price_tick == d("0.0001")  # 0.1805 is written in 4 decimals
    with pytest.raises(InvalidInput, match=r"recorded price 0\.1805 is not a multiple of it"):
        L2Settings.for_events(events, price_tick=d("0.001"))


# ---------------------------------------------------------------------------------------------------- search path


def _search_config(data: Path, **settings: str) -> SearchConfig:
    return SearchConfig.model_validate(
        {"data": str(data), "strategy": "sma_cross", "grid": {"fast": [3], "slow": [8, 12]}, "settings": settings}
    )


def test_a_search_plan_fixes_the_same_tick_and_step_as_a_backtest(tmp_path: Path) -> None:
    data = write_bars(tmp_path, ALGO)
    plan = make_plan(_search_config(data))
    assert (plan.settings.price_tick, plan.settings.qty_step) == (d("0.0001"), d("0.0001"))
    prepared = kernel.prepare(plan.bars, "sma_cross", plan.settings)  # what every search worker runs
    backtest = run_bar_backtest(plan.bars, make_strategy("sma_cross", SMA), BacktestSettings())
    assert kernel.run_many(prepared, [SMA]) == [backtest.metrics]
    assert fingerprint(_search_config(data))["settings"]["qty_step"] is None  # the rule, not a fixed step
    given = make_plan(_search_config(data, qty_step="1", price_tick="0.00005"))
    assert (given.settings.price_tick, given.settings.qty_step) == (d("0.00005"), E8)


def test_a_search_with_a_step_too_fine_fails_before_any_work(tmp_path: Path) -> None:
    data = write_bars(tmp_path, ALGO)
    with pytest.raises(ConfigError, match=re.escape("settings: ALGOUSDT: qty_step 0.00001 x the data's price tick 0.0001 "
                                                    "is finer than 1e-8")):  # fmt: skip
        make_plan(_search_config(data, qty_step="0.00001"))
    with pytest.raises(ConfigError, match=re.escape("settings: ALGOUSDT: price_tick 0.001 is off the data")):
        make_plan(_search_config(data, price_tick="0.001"))
