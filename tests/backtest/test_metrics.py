"""A bar backtest's report statistics (``report_metrics``) against an independent replay in exact arithmetic, their
edge cases, and how money is written (exact JSON numbers) and shown (exact, with thousands separators)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.backtest.test_kernel import MINUTE_NS, synthetic
from veloz_actors._exceptions import InvalidInput
from veloz_actors.backtest import kernel
from veloz_actors.backtest.metrics import (
    TRADE_DTYPE,
    equity_and_metrics,
    format_metric,
    metrics_json,
    report_metrics,
)
from veloz_actors.backtest.settings import BacktestSettings
from veloz_actors.data.bars import BarSeries
from veloz_actors.data.loaders import load_bars

E8 = 10**8
ETH_1H = "ohlcv/binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz"
BTC_1H = "ohlcv/binance_spot_BTCUSDT_1h_20230101-20240110.csv.gz"


def _full(bars: BarSeries, settings: BacktestSettings, trades: np.ndarray) -> dict[str, Any]:
    equity, metrics = equity_and_metrics(bars, settings, trades)
    return report_metrics(bars, settings, trades, equity, metrics)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _round_half_even(value: Fraction) -> Decimal:
    return Decimal(round(value * E8)) / E8  # Python's round() of a Fraction is half to even


def reference(bars: BarSeries, settings: BacktestSettings, trades: np.ndarray) -> dict[str, Any]:
    """Replay the trade list bar by bar in exact arithmetic (Fractions of quote units), with the textbook formulas."""
    closes = [Fraction(int(c), E8) for c in bars.data["close"]]
    times = [int(t) for t in bars.data["open_time"]]
    fills: dict[int, list[Any]] = {}
    for row in trades.tolist():
        fills.setdefault(row[1], []).append(row)
    cash, qty = Fraction(settings.initial_cash, E8), Fraction(0)
    equity, held, pnls, fees = [], 0, [], Fraction(0)
    cash_before_buy = cash
    for i, close in enumerate(closes):
        for _signal, _fill, _time, side, price, size, fee, _cash_after in fills.get(i, []):
            notional, fee = Fraction(price, E8) * Fraction(size, E8), Fraction(fee, E8)
            fees += fee
            if side > 0:
                if qty == 0:  # a round trip opens: from flat back to flat, however many fills it takes
                    cash_before_buy = cash
                cash -= Fraction(math.ceil(notional * E8), E8) + fee
                qty += Fraction(size, E8)
            else:
                cash += Fraction(math.floor(notional * E8), E8) - fee
                qty -= Fraction(size, E8)
                if qty == 0:
                    pnls.append(cash - cash_before_buy)
        held += qty != 0
        equity.append(cash + qty * close)
    # the deepest fall from a running peak: the first bar reaching it; its peak, the last bar at that peak before it
    initial = Fraction(settings.initial_cash, E8)
    peak, deepest, trough = initial, Fraction(0), None
    for i, value in enumerate(equity):
        peak = max(peak, value)
        if (peak - value) / peak > deepest:
            deepest, trough = (peak - value) / peak, i
    drawdown: dict[str, Any] = {"max_drawdown_peak": None, "max_drawdown_trough": None,
                                "max_drawdown_recovery": None, "max_drawdown_duration_seconds": 0}  # fmt: skip
    if trough is not None:
        top = max([initial, *equity[: trough + 1]])
        start = max((i for i in range(trough) if equity[i] == top), default=0)  # 0: the initial cash, the start
        back = next((i for i in range(trough + 1, len(equity)) if equity[i] >= top), None)
        # the longest time under water, of any drawdown: from the last bar at a peak to the first back at it (or
        # the last bar)
        longest, high, high_time, under = 0, initial, times[0], False
        for i, value in enumerate(equity):
            if value >= high:
                if under:
                    longest = max(longest, times[i] - high_time)
                high, high_time, under = value, times[i], False
            else:
                under = True
        if under:
            longest = max(longest, times[-1] - high_time)
        drawdown = {
            "max_drawdown_peak": _iso(times[start]),
            "max_drawdown_trough": _iso(times[trough]),
            "max_drawdown_recovery": _iso(times[back]) if back is not None else None,
            "max_drawdown_duration_seconds": longest // 10**9,
        }
    returns = [float(equity[t] / equity[t - 1] - 1) for t in range(1, len(equity))]
    downside = math.sqrt(math.fsum(min(r, 0.0) ** 2 for r in returns) / len(returns)) if len(returns) >= 2 else 0.0
    per_year = 365 * 24 * 60 / (bars.interval_ns / MINUTE_NS)
    wins, losses = [p for p in pnls if p > 0], [p for p in pnls if p < 0]
    return {
        "final_equity": Decimal(equity[-1].numerator) / equity[-1].denominator,  # exact: a whole 1e-8
        "total_fees": Decimal(fees.numerator) / fees.denominator,
        "avg_trade": _round_half_even(sum(pnls) / len(pnls)) if pnls else None,
        "avg_win": _round_half_even(sum(wins) / len(wins)) if wins else None,
        "avg_loss": _round_half_even(sum(losses) / len(losses)) if losses else None,
        "profit_factor": float(sum(wins) / -sum(losses)) if losses else None,
        "exposure": float(Fraction(held, len(closes))),
        "sortino": math.fsum(returns) / len(returns) / downside * math.sqrt(per_year) if downside else None,
        **drawdown,
    }


def _assert_agrees(bars: BarSeries, settings: BacktestSettings, trades: np.ndarray) -> dict[str, Any]:
    got = _full(bars, settings, trades)
    expected = reference(bars, settings, trades)
    for name, value in expected.items():
        if name == "sortino" and value is not None:
            # float statistics of float returns: the sums run in another order, so agreement is to rounding
            assert got[name] == pytest.approx(value, rel=1e-9), name
        else:
            assert got[name] == value, name
            assert type(got[name]) is type(value), name
    return got


@pytest.mark.parametrize(
    ("data", "strategy", "params"),
    [
        (ETH_1H, "rsi_reversion", {"period": 14, "lower": 30, "upper": 70}),
        (ETH_1H, "sma_cross", {"fast": 10, "slow": 30}),
        (BTC_1H, "sma_cross", {"fast": 3, "slow": 9}),  # ends with a position open
        (BTC_1H, "rsi_reversion", {"period": 14, "lower": 30, "upper": 70}),
    ],
)
def test_report_statistics_agree_with_an_exact_replay_on_real_data(
    shared_data: Path, data: str, strategy: str, params: dict
) -> None:
    bars = load_bars(shared_data / data)
    settings = BacktestSettings(slippage_rate=10_000).for_bars(bars)
    trades, _ = kernel.backtest(bars, strategy, params, settings)
    got = _assert_agrees(bars, settings, trades)
    assert got["n_trades"] >= 10 and got["max_drawdown_peak"] is not None  # not vacuous
    assert got["profit_factor"] is not None and got["sortino"] is not None


def test_statistics_without_trades_are_null_never_inf_or_nan() -> None:
    bars = synthetic(["100"] * 50)
    got = _assert_agrees(bars, BacktestSettings(), np.zeros(0, dtype=TRADE_DTYPE))
    assert got["final_equity"] == Decimal(10_000) and got["total_fees"] == 0 and got["exposure"] == 0.0
    assert got["avg_trade"] is got["profit_factor"] is got["sortino"] is got["max_drawdown_peak"] is None
    written = metrics_json(got).decode()
    assert "Infinity" not in written and "NaN" not in written
    assert json.loads(written)["sortino"] is None and json.loads(written)["max_drawdown_duration_seconds"] == 0


def test_only_winning_round_trips_have_no_profit_factor_and_no_downside() -> None:
    closes = ["100"] * 10 + [str(100 + i) for i in range(1, 30)] + [str(128 - i) for i in range(1, 10)]
    bars = synthetic(closes)
    trades, _ = kernel.sma_cross(bars, 2, 5, BacktestSettings(fee_rate=0))
    got = _assert_agrees(bars, BacktestSettings(fee_rate=0), trades)
    assert got["n_trades"] == 1 and got["win_rate"] == 1.0
    assert got["profit_factor"] is None and got["avg_loss"] is None and got["avg_win"] == got["avg_trade"] > 0


def test_only_losing_round_trips_have_a_profit_factor_of_zero() -> None:
    bars = synthetic(["100", "100", "100", "101", "102", "99", "96", "95", "95"])
    trades, _ = kernel.sma_cross(bars, 1, 2)
    got = _assert_agrees(bars, BacktestSettings(), trades)
    assert got["n_trades"] == 1 and got["profit_factor"] == 0.0 and got["avg_win"] is None
    assert got["max_drawdown_recovery"] is None  # never back at its peak: the duration runs to the last bar
    assert (got["max_drawdown_peak"], got["max_drawdown_trough"]) == ("1970-01-01T00:03:00Z", "1970-01-01T00:06:00Z")
    assert got["max_drawdown_duration_seconds"] == (8 - 3) * 60  # the peak's bar to the last bar


def test_a_drawdown_that_recovers_ends_at_the_recovery() -> None:
    closes = ["100", "100", "100", "101", "103", "106", "110", "105", "104", "106", "112", "120", "130", "131"]
    bars = synthetic(closes)
    trades, _ = kernel.sma_cross(bars, 1, 2, BacktestSettings(fee_rate=0))
    got = _assert_agrees(bars, BacktestSettings(fee_rate=0), trades)
    assert (got["max_drawdown_peak"], got["max_drawdown_trough"], got["max_drawdown_recovery"]) == (
        "1970-01-01T00:06:00Z", "1970-01-01T00:08:00Z", "1970-01-01T00:11:00Z")  # fmt: skip
    assert got["max_drawdown_duration_seconds"] == (11 - 6) * 60


def test_the_json_number_is_the_exact_amount_not_float_noise() -> None:
    """37.61272962 as a float prints as 37.612729619999996 (the bar equity formula's rounding); JSON gets the
    amount."""
    written = metrics_json({"final_equity": Decimal("37.61272962"), "total_fees": Decimal("9631.07061788")})
    assert written == b'{"final_equity":37.61272962,"total_fees":9631.07061788}'
    assert json.loads(written, parse_float=Decimal)["final_equity"] == Decimal("37.61272962")


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("final_equity", Decimal("1819534.26884073"), "1,819,534.26884073"),
        ("final_equity", 1819534.26884073, "1,819,534.26884073"),  # a search row's float, to 1e-8
        ("final_equity", 37.612729619999996, "37.61272962"),
        ("total_fees", Decimal("0.00000001"), "0.00000001"),
        ("avg_loss", Decimal("-3.51541527"), "-3.51541527"),
        ("final_equity", Decimal("10000"), "10,000"),
        ("total_return", 0.8195236535770001, "81.95 %"),
        ("max_drawdown", 0.17312521270054296, "17.31 %"),
        ("exposure", 0.4405, "44.05 %"),
        ("sharpe", -11.53671061888551, "-11.537"),
        ("profit_factor", None, "—"),
        ("n_trades", 2834, "2,834"),
        ("max_drawdown_duration_seconds", 41 * 86_400 + 6 * 3600 + 30 * 60, "41 d 06:30:00"),
        ("max_drawdown_peak", "2024-03-01T20:55:00Z", "2024-03-01T20:55:00Z"),
    ],
)
def test_statistics_are_shown_exactly_never_in_scientific_notation(name: str, value: Any, shown: str) -> None:
    assert format_metric(name, value) == shown


@pytest.mark.parametrize(("minutes", "per_year"), [(1, 525_600), (5, 105_120), (60, 8_760), (1_440, 365)])
def test_sharpe_and_sortino_are_annualised_by_the_bars_a_365_day_year_holds(minutes: int, per_year: int) -> None:
    """Hand-computed on four bar closes held all along: returns +10 %, -10 %, +5 % (equity 10000, 11000, 9900,
    10395), annualised by sqrt(bars per year) at the series' interval."""
    closes = ["100", "110", "99", "103.95"]
    data = synthetic(closes).data.copy()
    data["open_time"] = np.arange(len(closes), dtype=np.int64) * minutes * MINUTE_NS
    bars = BarSeries("TEST", minutes * MINUTE_NS, data, 1_000_000)
    trades = np.zeros(1, dtype=TRADE_DTYPE)
    trades[0] = (-1, 0, 0, 1, 100 * E8, 100 * E8, 0, 0)  # all 10,000 in at the first open, no fee
    got = _full(bars, BacktestSettings(fee_rate=0), trades)
    returns = [0.1, -0.1, 0.05]
    mean = sum(returns) / 3
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / 2)
    downside = math.sqrt(0.01 / 3)
    assert got["sharpe"] == pytest.approx(mean / std * math.sqrt(per_year), rel=1e-12)
    assert got["sortino"] == pytest.approx(mean / downside * math.sqrt(per_year), rel=1e-12)
    assert got["exposure"] == 1.0 and got["max_drawdown"] == pytest.approx(0.1, rel=1e-12)


def _held_from_the_first_open(closes: list[str], minutes: int = 1) -> dict[str, Any]:
    """The report of 100 units bought at the first open (price 100, no fee), held to the end: equity = 100 x close."""
    data = synthetic(closes).data.copy()
    data["open_time"] = np.arange(len(closes), dtype=np.int64) * minutes * MINUTE_NS
    bars = BarSeries("TEST", minutes * MINUTE_NS, data, 1_000_000)
    trades = np.zeros(1, dtype=TRADE_DTYPE)
    trades[0] = (-1, 0, 0, 1, 100 * E8, 100 * E8, 0, 0)
    return _full(bars, BacktestSettings(fee_rate=0), trades)


def test_max_drawdown_duration_is_the_longest_time_under_water_not_the_deepest_falls() -> None:
    """As quantstats, vectorbt, pyfolio and backtrader (``max.len``) define it: a deep fall recovered at once (10 %,
    bars 0 -> 2) and a shallow one that lasts (1 %, bars 2 -> 7): the duration is the shallow one's 5 minutes, while
    the peak, trough and recovery stay those of the deepest fall."""
    got = _held_from_the_first_open(["100", "90", "100", "99", "99", "99", "99", "100", "101"])
    assert got["max_drawdown"] == pytest.approx(0.1, rel=1e-12)
    assert (got["max_drawdown_peak"], got["max_drawdown_trough"], got["max_drawdown_recovery"]) == (
        "1970-01-01T00:00:00Z", "1970-01-01T00:01:00Z", "1970-01-01T00:02:00Z")  # fmt: skip
    assert got["max_drawdown_duration_seconds"] == (7 - 2) * 60


def test_a_drawdown_never_recovered_lasts_to_the_last_bar_even_when_shallower() -> None:
    got = _held_from_the_first_open(["100", "80", "100", "101", "100", "100", "100", "100", "100"])
    assert got["max_drawdown_trough"] == "1970-01-01T00:01:00Z"  # the deepest: 20 %, 2 minutes
    assert got["max_drawdown_duration_seconds"] == (8 - 3) * 60  # under water from bar 3's peak to the end


@pytest.mark.parametrize(
    ("minutes", "closes", "expected"),
    [
        (1_440, ["100"] * 729 + ["121"], 0.1),  # 730 daily bars: 2 years, x 1.21
        (60, ["100"] * 4_379 + ["110"], 1.1**2 - 1),  # 4,380 hourly bars: half a year, x 1.1
        (1_440, ["100"] * 364 + ["50"], -0.5),  # one year, halved
        (5, ["100"] * 50, 0.0),
    ],
)
def test_cagr_is_annualised_by_the_equity_curves_time_span(minutes: int, closes: list[str], expected: float) -> None:
    """``(final / initial) ** (1 / years) - 1`` with ``years`` the time from the first bar's open (the initial cash)
    to the last bar's close, in 365-day years."""
    got = _held_from_the_first_open(closes, minutes)
    assert got["cagr"] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_cagr_counts_a_gap_in_the_data_as_the_time_it_lasted() -> None:
    """Two daily bars a year apart (a 364-day gap): one year, not two bars' worth of days."""
    data = synthetic(["100", "110"]).data.copy()
    data["open_time"] = [0, 364 * 1_440 * MINUTE_NS]
    bars = BarSeries("TEST", 1_440 * MINUTE_NS, data, 1_000_000)
    trades = np.zeros(1, dtype=TRADE_DTYPE)
    trades[0] = (-1, 0, 0, 1, 100 * E8, 100 * E8, 0, 0)
    assert _full(bars, BacktestSettings(fee_rate=0), trades)["cagr"] == pytest.approx(0.1, rel=1e-12)


def test_cagr_of_a_total_loss_is_minus_one_and_of_an_unrepresentable_growth_null() -> None:
    lost = _held_from_the_first_open(["100", "0.01"])  # bought at 100, marked at 0.01: equity 1, minute-long run
    assert lost["cagr"] == -1.0 or lost["cagr"] == pytest.approx(-1.0, abs=1e-12)
    boom = _held_from_the_first_open(["100", "200"])  # doubled in two minutes: 2 ** 262800 overflows a float
    assert boom["cagr"] is None
    assert "Infinity" not in metrics_json(boom).decode()


def test_a_position_scaled_in_and_out_is_one_round_trip_from_flat_to_flat() -> None:
    """A strategy of one's own may buy twice and sell in two parts: hand-computed at no fee on closes 100, 100, 110,
    120, 90, 100, 100 (each fill at its bar's open, equal to the close). BUY 10 @ 100 (cash 9,000), BUY 10 @ 110
    (7,900), SELL 5 @ 120 (8,500), SELL 15 @ 90 (9,850: flat, the round trip lost 150), BUY 10 @ 100 (8,850), open
    at the end."""
    bars = synthetic(["100", "100", "110", "120", "90", "100", "100"])
    trades = np.zeros(5, dtype=TRADE_DTYPE)
    for row, (bar, side, price, qty, cash) in enumerate(
        [(1, 1, 100, 10, 9_000), (2, 1, 110, 10, 7_900), (3, -1, 120, 5, 8_500), (4, -1, 90, 15, 9_850),
         (5, 1, 100, 10, 8_850)]
    ):  # fmt: skip
        trades[row] = (bar - 1, bar, bar * MINUTE_NS, side, price * E8, qty * E8, 0, cash * E8)
    equity, metrics = equity_and_metrics(bars, BacktestSettings(fee_rate=0), trades)
    assert equity.tolist() == [10_000, 10_000, 10_100, 10_300, 9_850, 9_850, 9_850]
    assert metrics["n_trades"] == 1 and metrics["win_rate"] == 0.0
    got = _assert_agrees(bars, BacktestSettings(fee_rate=0), trades)
    assert got["avg_trade"] == got["avg_loss"] == Decimal(-150) and got["profit_factor"] == 0.0
    assert got["exposure"] == 5 / 7 and got["final_equity"] == Decimal(9_850)


def test_a_sell_of_more_than_the_position_is_refused_naming_the_fill() -> None:
    bars = synthetic(["100"] * 4)
    trades = np.zeros(2, dtype=TRADE_DTYPE)
    trades[0] = (0, 1, MINUTE_NS, 1, 100 * E8, 10 * E8, 0, 9_000 * E8)
    trades[1] = (1, 2, 2 * MINUTE_NS, -1, 100 * E8, 11 * E8, 0, 10_100 * E8)
    with pytest.raises(InvalidInput, match="fill 2 sells more than the position"):
        equity_and_metrics(bars, BacktestSettings(fee_rate=0), trades)
