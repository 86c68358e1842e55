"""The backtest's ``report.html``: self-contained plotly page, every fill drawn, dates on the axis, the strategy's
indicators, monthly returns, the trade list; and the page rendered by a headless Chromium."""

from __future__ import annotations

import csv
import math
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from plotly.offline import get_plotlyjs

import veloz_actors as vz
from veloz_actors import InvalidInput
from veloz_actors.backtest import kernel
from veloz_actors.backtest.metrics import equity_and_metrics
from veloz_actors.backtest.report import (
    LINE_POINTS,
    MAX_CANDLES,
    MAX_SVG_MARKERS,
    monthly_returns,
    price_figure,
    write_outputs,
)
from veloz_actors.backtest.settings import BacktestSettings
from veloz_actors.data.loaders import load_bars
from veloz_actors.fixed import SCALE

ETH_1H = "ohlcv/binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz"  # 8,996 real bars: a backtest in ~0.1 s
BTC_5M = "ohlcv/binance_spot_BTCUSDT_5m_20240301-20250702.csv.gz"  # 140,614 bars: past MAX_CANDLES
RSI = {"period": 14, "lower": 30, "upper": 70}
SMA = {"fast": 10, "slow": 30}


def _run(shared_data: Path, out: Path, strategy: str, params: dict) -> dict:
    return vz.run_backtest(data=str(shared_data / ETH_1H), strategy=strategy, params=params, out=str(out))


def _fills_csv(out: Path) -> list[dict[str, str]]:
    with open(out / "trades.csv") as f:
        return list(csv.DictReader(f))


def _marker_traces(fig) -> list:
    return [t for t in fig.data if t.meta == "fills"]


def _figure(shared_data: Path, strategy: str, params: dict):
    bars = load_bars(shared_data / ETH_1H)
    trades, _ = kernel.backtest(bars, strategy, params)
    equity, _ = equity_and_metrics(bars, BacktestSettings(), trades)
    return bars, trades, price_figure(bars, trades, equity, strategy, params)


def test_the_page_inlines_plotly_js_and_fetches_nothing(shared_data: Path, tmp_path: Path) -> None:
    _run(shared_data, tmp_path, "rsi_reversion", RSI)
    page = (tmp_path / "report.html").read_text()
    assert page.count(get_plotlyjs()) == 1  # the installed bundle, verbatim, once
    ours = page.replace(get_plotlyjs(), "")
    assert re.findall(r"<script[^>]*>", ours) and all("src" not in tag for tag in re.findall(r"<script[^>]*>", ours))
    assert "://" not in ours  # no URL at all outside the bundle (base64 data has no ':')
    assert "cdn" not in re.sub(r'"bdata":"[^"]*"', "", ours).lower()
    assert 'id="price-chart"' in ours and 'id="monthly-returns"' in ours and 'id="trades"' in ours


def test_every_fill_is_one_marker_at_its_time_and_price(shared_data: Path, tmp_path: Path) -> None:
    _run(shared_data, tmp_path, "sma_cross", SMA)
    fills = _fills_csv(tmp_path)
    bars, trades, fig = _figure(shared_data, "sma_cross", SMA)  # the kernel: the same fills as the event engine
    buy, sell = _marker_traces(fig)
    assert (buy.name, sell.name) == ("buy", "sell")
    assert len(buy.x) + len(sell.x) == len(fills) == len(trades) > 100
    assert len(buy.x) == sum(1 for f in fills if f["side"] == "BUY")
    bought = [f for f in fills if f["side"] == "BUY"]
    assert [float(f["price"]) for f in bought] == pytest.approx(list(buy.y))
    assert [datetime.fromisoformat(x + "+00:00").timestamp() * 1000 for x in buy.x] == [int(f["ts_ms"]) for f in bought]


def test_thousands_of_fills_are_all_drawn_with_webgl(shared_data: Path) -> None:
    bars = load_bars(shared_data / BTC_5M)
    trades, _ = kernel.backtest(bars, "sma_cross", {"fast": 2, "slow": 5})
    equity, metrics = equity_and_metrics(bars, BacktestSettings(), trades)
    fig = price_figure(bars, trades, equity, "sma_cross", {"fast": 2, "slow": 5})
    markers = _marker_traces(fig)
    assert len(trades) > 2 * MAX_SVG_MARKERS
    assert [t.type for t in markers] == ["scattergl", "scattergl"]
    assert sum(len(t.x) for t in markers) == len(trades)
    # the long series stay small: merged candles, downsampled lines, yet the deepest drawdown is still drawn
    (candles,) = [t for t in fig.data if t.type == "candlestick"]
    assert len(candles.x) <= MAX_CANDLES < len(bars)
    assert float(np.max(candles.high)) == bars.data["high"].max() / SCALE
    (drawdown,) = [t for t in fig.data if t.name == "drawdown"]
    assert len(drawdown.x) <= 2 * LINE_POINTS
    assert float(np.min(drawdown.y)) == pytest.approx(-metrics["max_drawdown"], rel=1e-12)


def test_the_time_axes_carry_dates(shared_data: Path) -> None:
    bars, _, fig = _figure(shared_data, "rsi_reversion", RSI)
    axes = [fig.layout[name] for name in fig.layout if name.startswith("xaxis")]
    assert len(axes) == 4 and all(axis.type == "date" for axis in axes)
    (candles,) = [t for t in fig.data if t.type == "candlestick"]
    first = datetime.fromisoformat(candles.x[0] + "+00:00")
    assert first.timestamp() * 1e9 == bars.data["open_time"][0]
    assert first.year == 2023 and first.month == 1


def test_sma_cross_draws_its_fast_and_slow_averages(shared_data: Path) -> None:
    bars, _, fig = _figure(shared_data, "sma_cross", SMA)
    closes = bars.data["close"] / SCALE
    for name, window in (("SMA 10 (fast)", 10), ("SMA 30 (slow)", 30)):
        (trace,) = [t for t in fig.data if t.name == name]
        assert len(trace.y) == len(bars)  # below MAX_CANDLES: every bar
        assert math.isnan(trace.y[window - 2]) and not math.isnan(trace.y[window - 1])
        expected = np.convolve(closes, np.ones(window) / window, mode="valid")
        assert np.asarray(trace.y[window - 1 :], dtype=float) == pytest.approx(expected, rel=1e-9)
    assert not [t for t in fig.data if t.name and t.name.startswith("RSI")]


def test_rsi_reversion_draws_wilders_rsi_and_its_bands(shared_data: Path) -> None:
    bars, _, fig = _figure(shared_data, "rsi_reversion", RSI)
    (rsi,) = [t for t in fig.data if t.name == "RSI"]
    lower, upper = [t for t in fig.data if t.name and "band" in t.name]
    assert list(lower.y) == [30, 30] and list(upper.y) == [70, 70]
    assert rsi.xaxis == lower.xaxis == upper.xaxis != "x"  # a panel of its own
    assert not [t for t in fig.data if t.name and t.name.startswith("SMA")]
    # Wilder's RSI written out plainly, compared at every bar the downsampled line keeps
    closes = bars.data["close"].tolist()
    period = RSI["period"]
    gains = [max(b - a, 0) for a, b in zip(closes[:-1], closes[1:], strict=True)]
    losses = [max(a - b, 0) for a, b in zip(closes[:-1], closes[1:], strict=True)]
    avg_gain, avg_loss = sum(gains[:period]) / period, sum(losses[:period]) / period
    expected = {period: 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)}
    for t in range(period + 1, len(closes)):
        avg_gain = (avg_gain * (period - 1) + gains[t - 1]) / period
        avg_loss = (avg_loss * (period - 1) + losses[t - 1]) / period
        expected[t] = 100.0 if avg_loss == 0 else 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    index = {int(datetime.fromisoformat(x + "+00:00").timestamp() * 1e9): i for i, x in enumerate(rsi.x)}
    times = bars.data["open_time"].tolist()
    checked = 0
    for t, value in expected.items():
        if times[t] in index:
            assert rsi.y[index[times[t]]] == pytest.approx(value, rel=1e-12)
            checked += 1
    assert checked > 1000


def test_monthly_returns_on_a_hand_made_curve() -> None:
    def ns(text: str) -> int:
        return int(datetime.fromisoformat(text + "+00:00").timestamp()) * 10**9

    times = [ns("2023-12-30T00:00"), ns("2023-12-31T23:00"), ns("2024-01-15T00:00"), ns("2024-03-01T00:00")]
    equity = [100.0, 120.0, 90.0, 99.0]
    monthly = monthly_returns(np.array(times), np.array(equity))
    assert monthly.years == (2023, 2024)
    dec, jan, mar = monthly.table[0][11], monthly.table[1][0], monthly.table[1][2]
    assert dec == pytest.approx(0.20)  # 100 -> 120 within December
    assert jan == pytest.approx(-0.25)  # 120 -> 90
    assert mar == pytest.approx(0.10)  # 90 -> 99 (February had no bar)
    assert monthly.table[1][1] is None and monthly.table[0][:11] == (None,) * 11


def test_the_trade_list_has_every_fill_and_exact_round_trip_pnl(shared_data: Path, tmp_path: Path) -> None:
    _run(shared_data, tmp_path, "rsi_reversion", RSI)
    page = (tmp_path / "report.html").read_text()
    table = page[page.index('<table id="trades">') : page.index("</table>", page.index('<table id="trades">'))]
    rows = [re.findall(r"<td>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", table) if "<td>" in r]
    assert len(rows) == len(_fills_csv(tmp_path))
    cash_before_buy = 10_000 * SCALE
    for buy, sell in zip(rows[0::2], rows[1::2], strict=False):
        assert (buy[2], sell[2]) == ("BUY", "SELL")
        cash_after_sell = round(float(sell[6]) * SCALE)
        assert round(float(sell[7]) * SCALE) == cash_after_sell - cash_before_buy
        cash_before_buy = cash_after_sell


def test_parameters_the_strategy_refuses_are_named(shared_data: Path, tmp_path: Path) -> None:
    bars = load_bars(shared_data / ETH_1H)
    trades, _ = kernel.backtest(bars, "sma_cross", SMA)
    equity, metrics = equity_and_metrics(bars, BacktestSettings(), trades)
    with pytest.raises(InvalidInput, match=r"fast \(30\) must be smaller than slow \(10\)"):
        write_outputs(
            tmp_path, bars, trades, equity, metrics, {"strategy": "sma_cross", "params": {"fast": 30, "slow": 10}}
        )


def test_the_report_renders_in_chromium_with_dates_and_every_fill(shared_data: Path, tmp_path: Path) -> None:
    from tests.browser import chromium, console_errors

    _run(shared_data, tmp_path, "sma_cross", SMA)
    fills = len(_fills_csv(tmp_path))
    with chromium(height=2400) as driver:
        driver.get((tmp_path / "report.html").as_uri())
        deadline = time.monotonic() + 60
        while not driver.execute_script(
            "var g = document.getElementById('price-chart'); return !!(g && g._fullLayout && "
            "document.querySelectorAll('#price-chart .xtick text').length)"
        ):
            assert time.monotonic() < deadline, "the price chart did not render within 60 s"
            time.sleep(0.1)
        assert driver.find_elements("css selector", ".js-plotly-plot")
        assert console_errors(driver) == []
        labels = driver.execute_script(
            "return Array.from(document.querySelectorAll('#price-chart .xtick text')).map(e => e.textContent)"
        )
        month_or_year = re.compile(r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\b|\b20\d\d\b")
        assert any(month_or_year.search(label) for label in labels), labels
        drawn = driver.execute_script(
            "return document.getElementById('price-chart').data"
            ".filter(t => t.meta === 'fills').reduce((n, t) => n + t.x.length, 0)"
        )
        assert drawn == fills > 0
        points = driver.execute_script(
            "return document.querySelectorAll('#price-chart .scatterlayer .trace .points path.point').length"
        )
        assert points >= fills  # SVG markers: each fill is a point in the DOM (the SMA lines add none)
        driver.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_the_outputs_are_utf_8_whatever_the_locale(shared_data: Path, tmp_path: Path) -> None:
    """The page declares UTF-8: under an ASCII locale (C, no coercion) writing it in the locale's encoding raised
    UnicodeEncodeError after the run (on a cp1252 Windows it wrote '·' as a byte the browser cannot read)."""
    code = (
        "import sys, veloz_actors as vz; "
        "vz.run_backtest(data=sys.argv[1], strategy='sma_cross', params={'fast': 10, 'slow': 30}, out=sys.argv[2])"
    )
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(shared_data / ETH_1H), str(tmp_path)],
        env=env, cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    page = (tmp_path / "report.html").read_bytes().decode("utf-8")
    assert '<meta charset="utf-8">' in page and "ETHUSDT · sma_cross (fast=10, slow=30)" in page


def test_markup_in_a_symbol_or_a_run_setting_is_shown_as_text_never_run(shared_data: Path, tmp_path: Path) -> None:
    """A symbol comes from a file name and the run table from the config: neither may open a tag or a script."""
    evil = '</script><script>alert("x")</script><img src=x onerror=alert(1)>'
    bars = load_bars(shared_data / ETH_1H, symbol=evil)
    trades, _ = kernel.backtest(bars, "sma_cross", SMA)
    equity, metrics = equity_and_metrics(bars, BacktestSettings(), trades)
    meta = {"strategy": "sma_cross", "params": SMA, "data": evil, evil: evil}
    page = Path(write_outputs(tmp_path, bars, trades, equity, metrics, meta)["report"]).read_text(encoding="utf-8")
    ours = page.replace(get_plotlyjs(), "").lower()  # (the symbol is upper-cased: '</SCRIPT><SCRIPT>ALERT...')
    assert ours.count("alert") >= 4 and "<img" not in ours and 'alert("x")</script>' not in ours
    assert ours.count("<script") == 1 + 2  # plotly.js's tag, and one per figure


def test_a_write_that_fails_half_way_leaves_the_previous_outputs_whole(shared_data: Path, tmp_path: Path) -> None:
    """A write that fails part-way (the file-size limit, as a full disk would) truncated ``report.html`` (and the
    CSVs) and left a torn page where the good one was: every output is written beside it and renamed, so the
    previous files stay whole and no temporary file is left."""
    _run(shared_data, tmp_path, "sma_cross", SMA)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code = (
        "import resource, signal, sys; "
        "import veloz_actors as vz; "
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY)); "
        "vz.run_backtest(data=sys.argv[1], strategy='sma_cross', params={'fast': 5, 'slow': 20}, out=sys.argv[2])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(shared_data / ETH_1H), str(tmp_path)],
        cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0 and "File too large" in done.stderr, done.stderr[-2000:]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
