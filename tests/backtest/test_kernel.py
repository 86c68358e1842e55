"""The vectorised kernel against an independent, deliberately simple reference written from the rules.

The reference below walks the bars one by one like an event-driven backtest: money in ``fractions.Fraction``, SMAs as
exact fractions, Wilder's RSI per bar in plain Python floats, metrics from exact equity. It shares no code with the
kernel or with ``metrics.py``. Trades must agree exactly; float metrics to 1e-9.
"""

from __future__ import annotations

import math
import pickle
import statistics
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from veloz_actors import InvalidInput
from veloz_actors.backtest import kernel
from veloz_actors.backtest.metrics import TRADE_DTYPE, equity_and_metrics, trades_to_records
from veloz_actors.backtest.settings import BacktestSettings
from veloz_actors.data.bars import BAR_DTYPE, BarSeries
from veloz_actors.data.loaders import load_bars

E8 = 10**8
MINUTE_NS = 60_000_000_000

# ------------------------------------------------------------------------------------------------ the reference


def reference_backtest(bars: BarSeries, settings: BacktestSettings, strategy: str, params: dict) -> tuple[list, dict]:
    """Bar-by-bar backtest from the written rules: returns (trades as tuples, metrics)."""
    settings = settings.for_bars(bars)  # the tick and the step of the rules (the data's tick, the default step rule)
    data = bars.data
    n = len(data)
    opens = [Fraction(int(v), E8) for v in data["open"]]
    close_ints = [int(v) for v in data["close"]]
    closes = [Fraction(v, E8) for v in close_ints]
    tick = Fraction(settings.tick_for(bars), E8)
    fee_rate = Fraction(settings.fee_rate, E8)
    slippage = Fraction(settings.slippage_rate, E8)
    step = Fraction(settings.qty_step, E8)
    unit = Fraction(1, E8)
    initial = Fraction(settings.initial_cash, E8)
    rsi = reference_rsi(close_ints, params["period"]) if strategy == "rsi_reversion" else None

    cash, qty = initial, Fraction(0)
    pending = None  # (side, signal index)
    trades = []  # (signal, fill, open_time, side, price, qty, fee, cash_after) in 1e-8 ints
    round_trips = []  # net PnL of each completed round trip
    buy_cost = Fraction(0)
    equity = []
    for t in range(n):
        if pending is not None:
            side, signal = pending
            pending = None
            if side == 1:
                price = math.ceil(opens[t] * (1 + slippage) / tick) * tick
                q = math.floor(cash / (price * (1 + fee_rate)) / step) * step
                if q > 0:
                    cost = math.ceil(price * q / unit) * unit
                    fee = math.ceil(fee_rate * price * q / unit) * unit
                    cash -= cost + fee
                    qty = q
                    buy_cost = cost + fee
                    trades.append((signal, t, int(data["open_time"][t]), 1, price, q, fee, cash))
            else:
                price = math.floor(opens[t] * (1 - slippage) / tick) * tick
                proceeds = math.floor(price * qty / unit) * unit
                fee = math.ceil(fee_rate * price * qty / unit) * unit
                cash += proceeds - fee
                round_trips.append(proceeds - fee - buy_cost)
                trades.append((signal, t, int(data["open_time"][t]), -1, price, qty, fee, cash))
                qty = Fraction(0)
        equity.append(cash + qty * closes[t])

        signal_side = 0
        if strategy == "sma_cross":
            fast, slow = params["fast"], params["slow"]
            if t >= slow:
                f_now, s_now = sum(closes[t - fast + 1 : t + 1]) / fast, sum(closes[t - slow + 1 : t + 1]) / slow
                f_prev, s_prev = sum(closes[t - fast : t]) / fast, sum(closes[t - slow : t]) / slow
                if qty == 0 and f_prev <= s_prev and f_now > s_now:
                    signal_side = 1
                elif qty > 0 and f_prev >= s_prev and f_now < s_now:
                    signal_side = -1
        elif t >= params["period"]:
            if qty == 0 and rsi[t] < params["lower"]:
                signal_side = 1
            elif qty > 0 and rsi[t] > params["upper"]:
                signal_side = -1
        if signal_side and t + 1 < n:
            pending = (signal_side, t)

    as_ints = [
        (s, f, o, side, int(p / unit), int(q / unit), int(fee / unit), int(c / unit))
        for s, f, o, side, p, q, fee, c in trades
    ]
    return as_ints, reference_metrics(equity, initial, round_trips, bars.interval_ns)


def reference_rsi(closes: list[int], period: int) -> list[float | None]:
    """Wilder's RSI, one bar at a time, in plain floats (the order of operations the rules fix)."""
    out: list[float | None] = [None] * len(closes)
    gains, losses = [0], [0]
    avg_gain = avg_loss = 0.0
    for t in range(1, len(closes)):
        delta = closes[t] - closes[t - 1]
        gains.append(max(delta, 0))
        losses.append(max(-delta, 0))
        if t < period:
            continue
        if t == period:
            avg_gain = float(sum(gains[1 : period + 1])) / period
            avg_loss = float(sum(losses[1 : period + 1])) / period
        else:
            avg_gain = (avg_gain * (period - 1) + float(gains[t])) / period
            avg_loss = (avg_loss * (period - 1) + float(losses[t])) / period
        out[t] = 100.0 if avg_loss == 0 else 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    return out


def reference_metrics(equity: list[Fraction], initial: Fraction, round_trips: list[Fraction], interval_ns: int) -> dict:
    peak, max_drawdown = equity[0], Fraction(0)
    for value in equity:
        peak = max(peak, value)
        max_drawdown = max(max_drawdown, (peak - value) / peak)
    returns = [float(equity[t] / equity[t - 1] - 1) for t in range(1, len(equity))]
    sharpe = 0.0
    if len(returns) >= 2 and statistics.stdev(returns) > 0:
        per_year = 365 * 24 * 60 / (interval_ns / MINUTE_NS)
        sharpe = statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(per_year)
    wins = sum(1 for pnl in round_trips if pnl > 0)
    return {
        "final_equity": float(equity[-1]),
        "total_return": float(equity[-1] / initial - 1),
        "max_drawdown": float(max_drawdown),
        "n_trades": len(round_trips),
        "win_rate": wins / len(round_trips) if round_trips else 0.0,
        "sharpe": sharpe,
    }


def as_tuples(trades: np.ndarray) -> list[tuple[int, ...]]:
    return [tuple(int(v) for v in row) for row in trades.tolist()]


def assert_matches_reference(bars: BarSeries, settings: BacktestSettings, strategy: str, params: dict) -> np.ndarray:
    trades, metrics = kernel.backtest(bars, strategy, params, settings)
    expected_trades, expected = reference_backtest(bars, settings, strategy, params)
    assert as_tuples(trades) == expected_trades
    assert metrics["n_trades"] == expected["n_trades"]
    assert metrics["win_rate"] == expected["win_rate"]
    for name in ("final_equity", "total_return", "max_drawdown", "sharpe"):
        assert metrics[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name
    return trades


# ------------------------------------------------------------------------------------------------ data


def head(bars: BarSeries, count: int) -> BarSeries:
    return BarSeries(bars.symbol, bars.interval_ns, bars.data[:count].copy(), bars.price_tick, bars.source)


@pytest.fixture(scope="module")
def btc_1h(shared_data: Path) -> BarSeries:
    return head(load_bars(shared_data / "ohlcv" / "binance_spot_BTCUSDT_1h_20230101-20240110.csv.gz"), 3000)


@pytest.fixture(scope="module")
def btc_5m(shared_data: Path) -> BarSeries:
    return head(load_bars(shared_data / "ohlcv" / "binance_spot_BTCUSDT_5m_20240301-20250702.csv.gz"), 3000)


@pytest.fixture(params=["btc_1h", "btc_5m"])
def real_bars(request: pytest.FixtureRequest) -> BarSeries:
    return request.getfixturevalue(request.param)


def synthetic(closes: list[str | int], opens: list[str | int] | None = None, tick: int = 1_000_000) -> BarSeries:
    """Bars with the given closes (decimal strings or whole quote units); opens default to the closes."""
    data = np.zeros(len(closes), dtype=BAR_DTYPE)
    data["open_time"] = np.arange(len(closes), dtype=np.int64) * MINUTE_NS
    data["close"] = [int(Fraction(str(c)) * E8) for c in closes]
    data["open"] = [int(Fraction(str(o)) * E8) for o in (opens if opens is not None else closes)]
    data["high"] = np.maximum(data["open"], data["close"])
    data["low"] = np.minimum(data["open"], data["close"])
    data["volume"] = E8
    return BarSeries("TEST", MINUTE_NS, data, tick)


DEFAULT = BacktestSettings()
SLIPPY = BacktestSettings(fee_rate=75_000, slippage_rate=50_000)  # fee 0.075 %, slippage 5 bp
NO_FEE = BacktestSettings(fee_rate=0, slippage_rate=100_000)  # slippage 10 bp
# qty_step 0.000001: the finest step whose notionals stay exact at a 0.01 tick
ODD = BacktestSettings(initial_cash=12_345 * E8 + 6789, fee_rate=123_457, slippage_rate=12_345, qty_step=100)
# a finer tick than the data's (every price is on it) with a coarser step: fills rounded to 0.0001, step 0.001
FINE_TICK = BacktestSettings(slippage_rate=20_000, price_tick=10_000, qty_step=100_000)
TINY_FEE = BacktestSettings(fee_rate=1)  # int64 walk bounds exceeded: the exact Python walk takes over

SMA_CASES = [
    ({"fast": 10, "slow": 30}, DEFAULT),
    ({"fast": 2, "slow": 3}, SLIPPY),
    ({"fast": 5, "slow": 20}, NO_FEE),
    ({"fast": 3, "slow": 50}, ODD),
    ({"fast": 20, "slow": 21}, FINE_TICK),
    ({"fast": 7, "slow": 40}, TINY_FEE),
]
RSI_CASES = [
    ({"period": 14, "lower": 30, "upper": 70}, DEFAULT),
    ({"period": 2, "lower": 10, "upper": 90}, SLIPPY),
    ({"period": 7, "lower": 25.5, "upper": 60}, NO_FEE),
    ({"period": 30, "lower": 45, "upper": 55}, ODD),
    ({"period": 1, "lower": 20, "upper": 80}, FINE_TICK),
    ({"period": 14, "lower": 35, "upper": 65}, TINY_FEE),
]


# ------------------------------------------------------------------------------------------------ golden tests


@pytest.mark.parametrize(("params", "settings"), SMA_CASES)
def test_sma_cross_matches_reference_on_real_bars(
    real_bars: BarSeries, params: dict, settings: BacktestSettings
) -> None:
    trades = assert_matches_reference(real_bars, settings, "sma_cross", params)
    assert len(trades) >= 10


@pytest.mark.parametrize(("params", "settings"), RSI_CASES)
def test_rsi_reversion_matches_reference_on_real_bars(
    real_bars: BarSeries, params: dict, settings: BacktestSettings
) -> None:
    trades = assert_matches_reference(real_bars, settings, "rsi_reversion", params)
    assert len(trades) >= 4


def test_compiled_and_python_paths_agree_exactly(btc_5m: BarSeries, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [("sma_cross", p, s) for p, s in SMA_CASES] + [("rsi_reversion", p, s) for p, s in RSI_CASES]
    compiled = [kernel.backtest(btc_5m, strategy, p, s) for strategy, p, s in cases]
    monkeypatch.setattr(kernel, "_USE_NUMBA", False)
    for (strategy, p, s), (trades, metrics) in zip(cases, compiled, strict=True):
        python_trades, python_metrics = kernel.backtest(btc_5m, strategy, p, s)
        assert np.array_equal(trades, python_trades)
        assert metrics == python_metrics


def test_rsi_series_is_bit_identical_to_a_plain_float_loop(btc_5m: BarSeries) -> None:
    prepared = kernel.prepare(btc_5m, "rsi_reversion")
    closes = [int(v) for v in btc_5m.data["close"]]
    for period in (1, 2, 14, 100):
        expected = reference_rsi(closes, period)
        got = kernel.wilder_rsi(prepared, period)
        assert np.isnan(got[:period]).all()
        assert got[period:].tolist() == expected[period:]


# ------------------------------------------------------------------------------------------------ sweeps


def test_run_many_equals_single_runs_for_sma(btc_5m: BarSeries) -> None:
    prepared = kernel.prepare(btc_5m, "sma_cross", SLIPPY)
    grid = [{"fast": f, "slow": s} for f in (3, 5, 8) for s in (20, 21, 40)]
    many = kernel.run_many(prepared, grid)
    singles = [kernel.run(prepared, p)[1] for p in grid]
    assert many == singles
    assert many[0] == kernel.sma_cross(btc_5m, 3, 20, SLIPPY)[1]
    assert len({m["final_equity"] for m in many}) == len(grid)


def test_run_many_equals_single_runs_for_rsi(btc_5m: BarSeries) -> None:
    prepared = kernel.prepare(btc_5m, "rsi_reversion")
    grid = [{"period": p, "lower": lo, "upper": hi} for p in (7, 14) for lo, hi in ((25, 75), (30, 70), (40, 60))]
    many = kernel.run_many(prepared, grid)
    assert many == [kernel.rsi_reversion(btc_5m, g["period"], g["lower"], g["upper"])[1] for g in grid]
    assert all(m["n_trades"] > 0 for m in many)


def test_prepared_is_read_only_and_survives_pickling(btc_5m: BarSeries) -> None:
    prepared = kernel.prepare(btc_5m, "sma_cross")
    assert not prepared.close.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        prepared.close_units_cumsum[0] = 1
    clone = pickle.loads(pickle.dumps(prepared))
    assert kernel.run_many(clone, [{"fast": 10, "slow": 30}]) == kernel.run_many(prepared, [{"fast": 10, "slow": 30}])


# ------------------------------------------------------------------------------------------------ exact edge cases


def test_flat_series_never_crosses() -> None:
    bars = synthetic(["100.01"] * 200)
    trades, metrics = kernel.sma_cross(bars, 3, 7)
    assert len(trades) == 0
    assert metrics == {
        "final_equity": 10_000.0,
        "total_return": 0.0,
        "max_drawdown": 0.0,
        "n_trades": 0,
        "win_rate": 0.0,
        "sharpe": 0.0,
    }


def test_touching_is_not_crossing_and_a_cross_from_equality_is() -> None:
    # fast=1, slow=2: fast > slow exactly when close[t] > close[t-1]. Equal closes are ties, never crosses.
    closes = [10, 10, 10, 11, 11, 11, 10, 10, 12, 12]
    bars = synthetic(closes)
    trades, _ = kernel.sma_cross(bars, 1, 2, BacktestSettings(fee_rate=0))
    # t=3: from tie (fast == slow at t=2) to above -> BUY, filled at bar 4. t=4: 11 vs 11 tie, no SELL.
    # t=6: from tie to below -> SELL, fill 7. t=8: tie to above -> BUY, fill 9.
    assert trades["signal_index"].tolist() == [3, 6, 8]
    assert trades["side"].tolist() == [1, -1, 1]
    assert trades["price"].tolist() == [11 * E8, 10 * E8, 12 * E8]
    assert (
        as_tuples(trades)
        == reference_backtest(bars, BacktestSettings(fee_rate=0), "sma_cross", {"fast": 1, "slow": 2})[0]
    )


def test_signal_on_the_last_bar_is_dropped() -> None:
    bars = synthetic([10, 10, 10, 10, 11])
    trades, metrics = kernel.sma_cross(bars, 1, 2)
    assert len(trades) == 0 and metrics["final_equity"] == 10_000.0
    one_more = synthetic([10, 10, 10, 10, 11, 12])
    trades, _ = kernel.sma_cross(one_more, 1, 2)
    assert trades["signal_index"].tolist() == [4]
    assert trades["fill_index"].tolist() == [5]
    assert trades["open_time"].tolist() == [5 * MINUTE_NS]


def test_rsi_signal_on_the_last_bar_is_dropped() -> None:
    bars = synthetic([10, 11, 12, 13, 12])  # RSI(2) falls below 80 only at the last bar
    prepared = kernel.prepare(bars, "rsi_reversion")
    assert kernel.wilder_rsi(prepared, 2)[-1] < 80
    trades, _ = kernel.rsi_reversion(bars, 2, 80, 90)
    assert len(trades) == 0


def test_no_trade_when_cash_buys_less_than_one_step() -> None:
    bars = synthetic([10, 10, 10, 10, 11, 12, 12])
    settings = BacktestSettings(initial_cash=10_000, qty_step=1_000)  # 0.0001 quote buys < 0.00001 at 11
    trades, metrics = kernel.sma_cross(bars, 1, 2, settings)
    assert len(trades) == 0
    assert metrics["final_equity"] == 0.0001 and metrics["n_trades"] == 0


def test_a_buy_too_small_stays_flat_and_a_later_cheaper_buy_fills() -> None:
    # step 1 unit of base, cash 150: no unit at 200 (stays flat, the SELL cross is ignored), one unit at 100.
    closes = [200, 200, 200, 201, 202, 199, 100, 100, 101, 102, 103]
    settings = BacktestSettings(initial_cash=150 * E8, qty_step=E8, fee_rate=0)
    bars = synthetic(closes)
    trades, metrics = kernel.sma_cross(bars, 1, 2, settings)
    assert trades["side"].tolist() == [1]
    assert trades["signal_index"].tolist() == [8]
    assert trades["qty"].tolist() == [E8]
    assert as_tuples(trades) == reference_backtest(bars, settings, "sma_cross", {"fast": 1, "slow": 2})[0]
    assert metrics["final_equity"] == 150 - 102 + 103  # the open position is marked at the last close
    assert metrics["n_trades"] == 0


def test_fill_prices_round_against_the_trader() -> None:
    bars = synthetic(["100.00", "100.00", "100.01", "100.00", "99.99", "100.05"], tick=1_000_000)
    settings = BacktestSettings(slippage_rate=33_333, fee_rate=0)  # 3.3333 bp
    trades, _ = kernel.sma_cross(bars, 1, 2, settings)
    # BUY at 100.00 * 1.00033333 = 100.033333 -> up to 100.04; SELL at 99.99 * 0.99966667 = 99.95667 -> down to 99.95.
    assert trades["price"].tolist() == [10_004_000_000, 9_995_000_000]
    assert as_tuples(trades) == reference_backtest(bars, settings, "sma_cross", {"fast": 1, "slow": 2})[0]


# ------------------------------------------------------------------------------------------------ metrics


def test_metrics_of_a_hand_computed_round_trip() -> None:
    bars = synthetic([100, 100, 100, 100, 100])
    trades = np.zeros(2, dtype=TRADE_DTYPE)
    cash_after_buy = 10_000 * E8 - 50 * E8 - 5_000_000  # 0.5 BTC at 100 plus a 0.05 fee
    cash_after_sell = cash_after_buy + 50 * E8 - 5_000_000
    trades[0] = (0, 1, MINUTE_NS, 1, 100 * E8, E8 // 2, 5_000_000, cash_after_buy)
    trades[1] = (2, 3, 3 * MINUTE_NS, -1, 100 * E8, E8 // 2, 5_000_000, cash_after_sell)
    equity, metrics = equity_and_metrics(bars, BacktestSettings(), trades)
    assert equity.tolist() == [10_000.0, 9_999.95, 9_999.95, 9_999.9, 9_999.9]
    assert metrics["n_trades"] == 1 and metrics["win_rate"] == 0.0
    assert metrics["final_equity"] == 9_999.9
    assert metrics["max_drawdown"] == pytest.approx(0.1 / 10_000, rel=1e-12)
    assert metrics["total_return"] == pytest.approx(-1e-5, rel=1e-9)
    returns = [9_999.95 / 10_000 - 1, 0.0, 9_999.9 / 9_999.95 - 1, 0.0]
    per_year = 525_600.0
    assert metrics["sharpe"] == pytest.approx(
        statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(per_year), rel=1e-9
    )


def test_metrics_without_trades_and_with_a_single_bar() -> None:
    none = np.zeros(0, dtype=TRADE_DTYPE)
    equity, metrics = equity_and_metrics(synthetic([5]), BacktestSettings(initial_cash=E8), none)
    assert equity.tolist() == [1.0]
    assert metrics == {
        "final_equity": 1.0,
        "total_return": 0.0,
        "max_drawdown": 0.0,
        "n_trades": 0,
        "win_rate": 0.0,
        "sharpe": 0.0,
    }
    _, two = equity_and_metrics(synthetic([5, 6]), BacktestSettings(initial_cash=E8), none)
    assert two["sharpe"] == 0.0  # one return: no standard deviation


def test_a_winning_round_trip_counts_net_of_both_fees(btc_1h: BarSeries) -> None:
    trades, metrics = kernel.sma_cross(btc_1h, 10, 30)
    cash_before = [BacktestSettings().initial_cash] + trades["cash_after"][1::2].tolist()
    wins = sum(after > before for after, before in zip(trades["cash_after"][1::2].tolist(), cash_before, strict=False))
    assert metrics["win_rate"] == wins / metrics["n_trades"]
    assert 0 < wins < metrics["n_trades"]


def test_equity_and_metrics_rejects_a_trade_list_that_is_not_long_only(btc_1h: BarSeries) -> None:
    trades, _ = kernel.sma_cross(btc_1h, 10, 30)
    with pytest.raises(InvalidInput, match="fill 1 sells more than the position"):
        equity_and_metrics(btc_1h, BacktestSettings(), trades[1:])
    broken = trades.copy()
    broken["qty"][1] += 1
    with pytest.raises(InvalidInput, match="fill 2 sells more than the position"):
        equity_and_metrics(btc_1h, BacktestSettings(), broken)
    broken["side"][1] = 0
    with pytest.raises(InvalidInput, match="side must be BUY"):
        equity_and_metrics(btc_1h, BacktestSettings(), broken)
    with pytest.raises(InvalidInput, match="TRADE_DTYPE"):
        equity_and_metrics(btc_1h, BacktestSettings(), np.zeros(2, dtype=np.int64))


def test_trades_to_records_gives_exact_decimal_strings(btc_1h: BarSeries) -> None:
    trades, _ = kernel.sma_cross(btc_1h, 10, 30)
    records = trades_to_records(trades[:2])

    def decimal(units: np.int64) -> str:
        return format(Decimal(int(units)).scaleb(-8).normalize(), "f")

    for record, trade in zip(records, trades[:2], strict=True):
        assert record == {
            "ts": int(trade["open_time"]) // 1_000_000,
            "side": "BUY" if trade["side"] == 1 else "SELL",
            "price": decimal(trade["price"]),
            "qty": decimal(trade["qty"]),
            "fee": decimal(trade["fee"]),
        }
    assert records[0]["ts"] == int(btc_1h.data["open_time"][trades[0]["fill_index"]]) // 1_000_000
    assert records[1]["side"] == "SELL" and records[1]["qty"] == records[0]["qty"]
    assert trades_to_records(np.zeros(1, dtype=TRADE_DTYPE)[:0]) == []


# ------------------------------------------------------------------------------------------------ validation


def test_run_many_validates_every_set_before_running(btc_1h: BarSeries) -> None:
    prepared = kernel.prepare(btc_1h, "sma_cross")
    with pytest.raises(InvalidInput, match="fast .40. must be smaller than slow .30."):
        kernel.run_many(prepared, [{"fast": 10, "slow": 30}, {"fast": 40, "slow": 30}])
    with pytest.raises(InvalidInput, match="unknown parameter"):
        kernel.run_many(prepared, [{"period": 14, "lower": 30, "upper": 70}])
    with pytest.raises(InvalidInput, match="unknown strategy"):
        kernel.prepare(btc_1h, "buy_and_hold")
    with pytest.raises(InvalidInput, match="slippage_rate"):
        kernel.prepare(btc_1h, "sma_cross", BacktestSettings(slippage_rate=-1))


def test_shared_inputs_give_the_same_results_and_are_computed_once(shared_data):
    from veloz_actors.data.loaders import load_bars

    bars = load_bars(shared_data / "ohlcv" / "binance_spot_BTCUSDT_1h_20230101-20240110.csv.gz")
    sets = [{"fast": f, "slow": s} for f in (5, 8) for s in (20, 30)]
    prepared = kernel.prepare(bars, "sma_cross", BacktestSettings())
    shared = kernel.share(prepared, sets)
    assert set(shared.shared) == {("sum", 5), ("sum", 8), ("sum", 20), ("sum", 30)}
    assert all(not array.flags.writeable for array in shared.shared.values())
    assert kernel.run_many(shared, sets) == kernel.run_many(prepared, sets)
    rsi_sets = [{"period": 14, "lower": 30, "upper": u} for u in (60, 70)]
    rsi = kernel.share(kernel.prepare(bars, "rsi_reversion", BacktestSettings()), rsi_sets)
    assert set(rsi.shared) == {("rsi", 14)}
    assert kernel.run_many(rsi, rsi_sets) == [kernel.run(rsi, p)[1] for p in rsi_sets]
