"""Backtest outputs: trades CSV, equity curve CSV, metrics JSON and a self-contained interactive HTML report.

``report.html`` is one file that needs nothing but a browser: plotly.js is inlined from the installed ``plotly``
package (nothing is fetched at view time). It shows, on one time axis of UTC dates:

* the price as candlesticks (above :data:`MAX_CANDLES` bars, consecutive bars are merged into coarser candles so at
  most that many are drawn), the strategy's indicators (``sma_cross``: the fast and slow SMAs; ``rsi_reversion``:
  Wilder's RSI with its lower and upper bands in a panel of its own), computed by the kernel's own definitions, and
  **every** fill as a BUY or SELL marker at its fill time and price (never sampled: one marker per row of
  ``trades.csv``; WebGL markers above :data:`MAX_SVG_MARKERS` fills);
* equity against buy and hold (the starting equity invested at the first close, no fees) and the drawdown;
* monthly returns as a year x month heatmap (:func:`monthly_returns`), the metrics, the trade list (a scrollable
  table with each round trip's PnL net of fees) and the run's settings.

Lines (equity, buy and hold, drawdown, RSI) are downsampled to a few thousand points that keep every bucket's
minimum and maximum, so a million-bar run stays a few megabytes and its deepest drawdown is still drawn.

>>> from veloz_actors.backtest.runner import run_bar_backtest  # doctest: +SKIP
>>> result = run_bar_backtest(bars, make_strategy("sma_cross", {"fast": 10, "slow": 30}))  # doctest: +SKIP
>>> write_outputs(Path("runs/sma"), bars, result.trades, result.equity, result.metrics,
...               {"strategy": "sma_cross", "params": {"fast": 10, "slow": 30}})  # doctest: +SKIP
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._files import write_atomically
from ..data.bars import BarSeries
from ..fixed import SCALE, format_decimal
from .metrics import format_metric, iso_times, metrics_json, trades_to_records

__all__ = [
    "MAX_CANDLES",
    "MAX_SVG_MARKERS",
    "MonthlyReturns",
    "figure_html",
    "html_page",
    "html_table",
    "iso_times",
    "metrics_table",
    "monthly_returns",
    "price_figure",
    "sample_indices",
    "write_atomically",
    "write_l2_outputs",
    "write_outputs",
]

MAX_CANDLES = 20_000  # candles drawn at most; longer runs merge consecutive bars into coarser candles
MAX_SVG_MARKERS = 5_000  # fills per side drawn as SVG markers; above, WebGL (Scattergl) keeps the page responsive
LINE_POINTS = 4_000  # about this many points per downsampled line
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BUY_COLOUR, _SELL_COLOUR = "#1a7f37", "#cf222e"
_PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def write_outputs(
    out: Path, bars: BarSeries, trades: np.ndarray, equity: np.ndarray, metrics: dict[str, Any], meta: dict[str, Any]
) -> dict[str, str]:
    """Write every output into ``out`` (UTF-8, as the page declares, whatever the locale); return the paths written
    by kind.

    ``meta`` describes the run (``strategy`` and ``params`` choose the indicators drawn; every entry is listed in
    the report's run table).
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "trades": out / "trades.csv",
        "equity": out / "equity.csv",
        "metrics": out / "metrics.json",
        "report": out / "report.html",
    }
    records = trades_to_records(trades)
    lines = ["ts_ms,side,price,qty,fee"]
    lines += [f"{r['ts']},{r['side']},{r['price']},{r['qty']},{r['fee']}" for r in records]
    times = bars.data["open_time"] // 1_000_000
    rows = [f"{t},{e:.8f}\n" for t, e in zip(times.tolist(), equity.tolist(), strict=True)]
    write_atomically({
        paths["trades"]: "\n".join(lines) + "\n",
        paths["equity"]: "open_time_ms,equity\n" + "".join(rows),
        paths["metrics"]: metrics_json({"metrics": metrics, **meta}, indent=True),
        paths["report"]: _report_html(bars, trades, equity, metrics, meta),
    })  # fmt: skip
    return {k: str(v) for k, v in paths.items()}


def write_l2_outputs(
    out: Path,
    symbol: str,
    trades: np.ndarray,
    equity: np.ndarray,
    metrics: dict[str, Any],
    meta: dict[str, Any],
    trades_csv: str | None = None,
) -> dict[str, str]:
    """An L2 backtest's ``equity.csv`` (every sample: ``ts_ms``, the mark, cash, base and equity as exact decimals),
    ``metrics.json`` and ``report.html`` (the mark price with every fill, equity against holding the starting equity
    at the first mark, drawdown, the fills and the run); ``trades`` is :data:`~veloz_actors.backtest.l2.L2_TRADE_DTYPE`
    and ``equity`` :data:`~veloz_actors.backtest.l2.EQUITY_DTYPE`. Its ``trades.csv`` is
    :func:`~veloz_actors.backtest.l2.trades_csv_text`'s: given as ``trades_csv``, it is written with the others, in
    one :func:`write_atomically` (a failed write then leaves no new trades beside an old run's equity and report)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"equity": out / "equity.csv", "metrics": out / "metrics.json", "report": out / "report.html"}
    lines = ["ts_ms,mark,cash,base,equity\n"]
    lines += [
        f"{t // 1_000_000},{format_decimal(m)},{format_decimal(c)},{format_decimal(b)},{format_decimal(e)}\n"
        for t, m, c, b, e in zip(*(equity[name].tolist() for name in ("ts", "mark", "cash", "base", "equity")),
                                 strict=True)
    ]  # fmt: skip
    files: dict[Path, str | bytes] = {} if trades_csv is None else {out / "trades.csv": trades_csv}
    files.update({
        paths["equity"]: "".join(lines),
        paths["metrics"]: metrics_json({"metrics": metrics, **meta}, indent=True),
        paths["report"]: _l2_report_html(symbol, trades, equity, metrics, meta),
    })  # fmt: skip
    write_atomically(files)
    return {k: str(v) for k, v in paths.items()}


# ------------------------------------------------------------------------------------------------ pieces


def sample_indices(series: Sequence[np.ndarray], limit: int = LINE_POINTS) -> np.ndarray:
    """Indices that draw every series in ``series`` (equal lengths) with about ``limit`` points: an even sample plus
    each bucket's minimum and maximum of each series, so peaks and troughs survive. All indices when short.

    >>> sample_indices([np.array([0.0, 5.0, 1.0, 2.0, 3.0, -4.0, 1.0, 1.0])], limit=4).tolist()
    [0, 1, 5, 7]
    """
    n = len(series[0])
    if n <= limit:
        return np.arange(n, dtype=np.int64)
    buckets = max(1, limit // (2 * (len(series) + 1)))
    size = -(-n // buckets)
    base = np.arange(buckets, dtype=np.int64) * size
    pad = buckets * size - n
    picks = [np.linspace(0, n - 1, num=buckets).astype(np.int64), np.array([0, n - 1], dtype=np.int64)]
    for values in series:
        values = np.asarray(values, dtype=np.float64)
        missing = np.isnan(values)
        high = np.concatenate([np.where(missing, -np.inf, values), np.full(pad, -np.inf)]).reshape(buckets, size)
        low = np.concatenate([np.where(missing, np.inf, values), np.full(pad, np.inf)]).reshape(buckets, size)
        picks += [base + high.argmax(axis=1), base + low.argmin(axis=1)]
    indices = np.unique(np.concatenate(picks))
    return indices[indices < n]


@dataclass(frozen=True, slots=True)
class MonthlyReturns:
    """Each calendar month's return (UTC, by the bars' open time): ``table[i][m]`` is year ``years[i]``'s month
    ``m + 1`` as a fraction, ``None`` where the run has no bar in that month."""

    years: tuple[int, ...]
    table: tuple[tuple[float | None, ...], ...]


def monthly_returns(open_time_ns: np.ndarray, equity: np.ndarray, initial: float | None = None) -> MonthlyReturns:
    """Month by month: equity at the last bar close of the month over equity at the last close of the month before
    (for the first month, ``initial``, the equity before the first bar; the first close when not given), minus 1.

    >>> day = 86_400 * 10**9
    >>> jan, feb = 1_704_067_200 * 10**9, 1_706_745_600 * 10**9   # 2024-01-01, 2024-02-01
    >>> m = monthly_returns(np.array([jan, jan + day, feb, feb + day]), np.array([100.0, 110.0, 99.0, 121.0]))
    >>> m.years, [round(r, 6) for r in m.table[0][:2]], m.table[0][2]
    ((2024,), [0.1, 0.1], None)
    """
    open_time_ns = np.asarray(open_time_ns, dtype=np.int64)
    equity = np.asarray(equity, dtype=np.float64)
    if len(open_time_ns) != len(equity):
        raise ValueError(f"{len(open_time_ns)} times for {len(equity)} equity values")
    if len(equity) == 0:
        return MonthlyReturns((), ())
    months = open_time_ns.astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    last = np.flatnonzero(np.diff(months) != 0)
    last = np.append(last, len(months) - 1)
    ends = equity[last]
    starts = np.concatenate([equity[:1] if initial is None else [initial], ends[:-1]])
    returns = ends / starts - 1.0
    month_ids = months[last]
    first_year, last_year = int(month_ids[0] // 12) + 1970, int(month_ids[-1] // 12) + 1970
    years = tuple(range(first_year, last_year + 1))
    grid: list[list[float | None]] = [[None] * 12 for _ in years]
    for month_id, value in zip(month_ids.tolist(), returns.tolist(), strict=True):
        grid[month_id // 12 + 1970 - first_year][month_id % 12] = value
    return MonthlyReturns(years, tuple(tuple(row) for row in grid))


def monthly_figure(monthly: MonthlyReturns) -> Any:
    """The monthly returns as a year x month heatmap (green gains, red losses, each cell labelled in %)."""
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Heatmap(
            x=list(MONTHS),
            y=[str(y) for y in monthly.years],
            z=[list(row) for row in monthly.table],
            colorscale="RdYlGn",
            zmid=0.0,
            texttemplate="%{z:.1%}",
            hovertemplate="%{y} %{x}: %{z:.2%}<extra></extra>",
            colorbar={"title": {"text": "return"}, "tickformat": ".0%"},
            xgap=2,
            ygap=2,
            name="monthly returns",
        )
    )
    fig.update_layout(
        title={"text": "Monthly returns"},
        height=max(220, 90 + 38 * len(monthly.years)),
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        yaxis={"type": "category", "autorange": "reversed"},
        xaxis={"type": "category", "side": "top"},
    )
    return fig


def price_figure(
    bars: BarSeries, trades: np.ndarray, equity: np.ndarray, strategy: str | None, params: Mapping[str, Any] | None
) -> Any:
    """The main chart: price (candles, indicators, every fill), RSI when the strategy has one, equity against buy
    and hold, drawdown; all on one shared date axis. Raises :class:`InvalidInput` for parameters the strategy
    refuses."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    data = bars.data
    n = len(data)
    open_time = data["open_time"]
    close = data["close"].astype(np.float64) / SCALE
    overlays, rsi_panel = _indicators(bars, strategy, params)
    panels = [("price", 0.46)] + ([("RSI", 0.14)] if rsi_panel is not None else []) + [("equity", 0.25)]
    panels.append(("drawdown", 0.15))
    row = {name: i + 1 for i, (name, _) in enumerate(panels)}
    fig = make_subplots(
        rows=len(panels),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        row_heights=[h for _, h in panels],
        subplot_titles=[_panel_title(name, bars, strategy, n) for name, _ in panels],
    )
    # price: candles, merged into coarser ones past MAX_CANDLES bars
    step = -(-n // MAX_CANDLES) if n else 1
    starts = np.arange(0, n, step, dtype=np.int64)
    ends = np.minimum(starts + step, n) - 1
    fig.add_trace(
        go.Candlestick(
            x=iso_times(open_time[starts]),
            open=data["open"][starts] / SCALE,
            high=np.maximum.reduceat(data["high"], starts) / SCALE if n else [],
            low=np.minimum.reduceat(data["low"], starts) / SCALE if n else [],
            close=close[ends],
            name=bars.symbol if step == 1 else f"{bars.symbol} ({step}-bar candles)",
            increasing={"line": {"color": "#26a69a"}},
            decreasing={"line": {"color": "#ef5350"}},
            showlegend=False,
        ),
        row=row["price"],
        col=1,
    )
    for name, values, colour in overlays:
        fig.add_trace(
            go.Scatter(
                x=iso_times(open_time[ends]),
                y=values[ends],
                mode="lines",
                name=name,
                line={"color": colour, "width": 1.2},
                connectgaps=False,
            ),
            row=row["price"],
            col=1,
        )
    for trace in _fill_markers(trades):
        fig.add_trace(trace, row=row["price"], col=1)
    if rsi_panel is not None:
        rsi, lower, upper = rsi_panel
        idx = sample_indices([rsi])
        x = iso_times(open_time[idx])
        fig.add_trace(
            go.Scatter(x=x, y=rsi[idx], mode="lines", name="RSI", line={"color": "#8250df", "width": 1}),
            row=row["RSI"],
            col=1,
        )
        for level, label in ((lower, "lower"), (upper, "upper")):
            fig.add_trace(
                go.Scatter(
                    x=[x[0], x[-1]] if x else [],
                    y=[level, level],
                    mode="lines",
                    name=f"RSI {label} band ({_number(level)})",
                    line={"color": _BUY_COLOUR if label == "lower" else _SELL_COLOUR, "dash": "dash", "width": 1},
                ),
                row=row["RSI"],
                col=1,
            )
        fig.update_yaxes(range=[0, 100], row=row["RSI"], col=1)
    # equity against buy and hold, and drawdown
    equity = np.asarray(equity, dtype=np.float64)
    hold = equity[0] * close / close[0] if n else close
    # the running peak starts at the equity before the first bar, as the max_drawdown metric's
    peak = np.maximum(np.maximum.accumulate(equity), _starting_equity(trades, equity)) if n else equity
    drawdown = (equity - peak) / peak if n else equity
    idx = sample_indices([equity, hold, drawdown]) if n else np.zeros(0, np.int64)
    x = iso_times(open_time[idx])
    fig.add_trace(
        go.Scatter(x=x, y=equity[idx], mode="lines", name="equity", line={"color": "#0969da", "width": 1.4}),
        row=row["equity"],
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=x, y=hold[idx], mode="lines", name="buy and hold", line={"color": "#8c959f", "width": 1, "dash": "dot"}
        ),
        row=row["equity"],
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=drawdown[idx],
            mode="lines",
            name="drawdown",
            fill="tozeroy",
            line={"color": _SELL_COLOUR, "width": 1},
        ),
        row=row["drawdown"],
        col=1,
    )
    fig.update_yaxes(tickformat=".0%", row=row["drawdown"], col=1)
    fig.update_xaxes(type="date", showticklabels=True, rangeslider_visible=False)
    fig.update_xaxes(title_text="time (UTC)", row=len(panels), col=1)
    fig.update_layout(
        height=260 * len(panels) + 120,
        margin={"l": 60, "r": 20, "t": 40, "b": 40},
        hovermode="x unified",
        legend={"orientation": "h", "y": -0.05},
    )
    return fig


def html_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, table_id: str | None = None) -> str:
    """A plain HTML table, every cell escaped (floats to 6 significant digits)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in r) + "</tr>" for r in rows)
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """The statistics as a two-column table, each value as :func:`~veloz_actors.backtest.metrics.format_metric` shows
    it (exact money with thousands separators, never rounded to a few significant digits)."""
    return html_table(("metric", "value"), [(k, format_metric(k, v)) for k, v in metrics.items()], table_id="metrics")


def figure_html(fig: Any, div_id: str) -> str:
    """One figure as a ``<div>`` plus the script that draws it; plotly.js itself comes once, from :func:`html_page`."""
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_PLOT_CONFIG))


def html_page(title: str, body: Iterable[str]) -> str:
    """A complete HTML page with plotly.js inlined from the installed ``plotly`` package (no CDN, no network)."""
    from plotly.offline import get_plotlyjs

    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:24px;color:#1f2328}}table{{border-collapse:collapse}}
th,td{{padding:2px 10px;text-align:left;border-bottom:1px solid #eee;font-variant-numeric:tabular-nums}}
thead th{{position:sticky;top:0;background:#f6f8fa}}h2{{margin-top:28px}}
.scroll{{max-height:480px;overflow:auto;border:1px solid #ddd;display:inline-block}}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
{"".join(body)}
</body></html>
"""


# ------------------------------------------------------------------------------------------------ internals


def _report_html(
    bars: BarSeries, trades: np.ndarray, equity: np.ndarray, metrics: dict[str, Any], meta: dict[str, Any]
) -> str:
    strategy = meta.get("strategy")
    params = meta.get("params")
    title = _title("Backtest", bars.symbol, meta)
    trade_rows = _trade_rows(trades)
    body = [
        f"<h1>{html.escape(title)}</h1>",
        metrics_table(metrics),
        figure_html(price_figure(bars, trades, equity, strategy, params), "price-chart"),
        figure_html(
            monthly_figure(monthly_returns(bars.data["open_time"], equity, _starting_equity(trades, equity))),
            "monthly-returns",
        ),
        f"<h2>Trades ({len(trades):,} fills, {metrics['n_trades']:,} round trips)</h2>",
        '<div class="scroll">'
        + html_table(
            ("#", "time (UTC)", "side", "price", "qty", "fee", "cash after", "round trip PnL"),
            trade_rows,
            table_id="trades",
        )
        + "</div>",
        "<h2>Run</h2>",
        html_table(("setting", "value"), meta.items(), table_id="run"),
    ]
    return html_page(title, body)


def _indicators(
    bars: BarSeries, strategy: str | None, params: Mapping[str, Any] | None
) -> tuple[list[tuple[str, np.ndarray, str]], tuple[np.ndarray, float, float] | None]:
    """The strategy's indicators by the kernel's definitions: price overlays, and (RSI, lower, upper) for a panel."""
    from ..strategies.params import VALID_STRATEGIES, validate_params
    from . import kernel
    from .settings import BacktestSettings

    if strategy not in VALID_STRATEGIES or not params or len(bars) == 0:
        return [], None
    checked = validate_params(strategy, dict(params))
    # The indicator inputs (close units and their running sum; gains and losses) do not depend on the settings.
    prepared = kernel.prepare(bars, strategy, BacktestSettings())
    if strategy == "sma_cross":
        cumsum = prepared.close_units_cumsum
        assert cumsum is not None
        unit = int(np.gcd.reduce(bars.data["close"]))
        overlays = []
        for name, colour in (("fast", "#bf8700"), ("slow", "#0550ae")):
            window = int(checked[name])
            sma = np.full(len(bars), np.nan)
            if window <= len(bars):
                sma[window - 1 :] = (cumsum[window:] - cumsum[:-window]) / window * (unit / SCALE)
            overlays.append((f"SMA {window} ({name})", sma, colour))
        return overlays, None
    rsi = kernel.wilder_rsi(prepared, int(checked["period"]))
    return [], (rsi, float(checked["lower"]), float(checked["upper"]))


def _title(kind: str, symbol: str, meta: Mapping[str, Any]) -> str:
    """``Backtest: BTCUSDT · sma_cross (fast=10, slow=30)``: the page's title from the run's strategy and parameters."""
    title = f"{kind}: {symbol} · {meta.get('strategy') or ''}"
    params = meta.get("params")
    if params:
        title += " (" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"
    return title


def _l2_report_html(
    symbol: str, trades: np.ndarray, equity: np.ndarray, metrics: dict[str, Any], meta: dict[str, Any]
) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    title = _title("L2 backtest", symbol, meta)
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05,
        row_heights=[0.5, 0.3, 0.2],
        subplot_titles=[f"{symbol}: mark (mid) and fills ({len(equity):,} samples)", "equity against holding",
                        "drawdown"],
    )  # fmt: skip
    mark = equity["mark"].astype(np.float64) / SCALE
    value = equity["equity"].astype(np.float64) / SCALE
    n = len(equity)
    hold = value[0] * mark / mark[0] if n and mark[0] else np.full(n, np.nan)
    peak = np.maximum.accumulate(value) if n else value
    drawdown = np.divide(value - peak, peak, out=np.zeros(n), where=peak > 0)
    idx = sample_indices([mark, value, drawdown]) if n else np.zeros(0, np.int64)
    x = iso_times(equity["ts"][idx], unit="ms")
    lines = (
        (1, mark, "mark", {"color": "#57606a", "width": 1}),
        (2, value, "equity", {"color": "#0969da", "width": 1.4}),
        (2, hold, "holding", {"color": "#8c959f", "width": 1, "dash": "dot"}),
    )
    for row, values, name, line in lines:
        fig.add_trace(go.Scatter(x=x, y=values[idx], mode="lines", name=name, line=line), row=row, col=1)
    for trace in _fill_markers(trades, time_field="ts"):
        fig.add_trace(trace, row=1, col=1)
    fig.add_trace(
        go.Scatter(x=x, y=drawdown[idx], mode="lines", name="drawdown", fill="tozeroy",
                   line={"color": _SELL_COLOUR, "width": 1}),
        row=3,
        col=1,
    )  # fmt: skip
    fig.update_yaxes(tickformat=".2%", row=3, col=1)
    fig.update_xaxes(type="date", showticklabels=True)
    fig.update_layout(height=900, margin={"l": 60, "r": 20, "t": 40, "b": 40}, hovermode="x unified",
                      legend={"orientation": "h", "y": -0.05})  # fmt: skip
    rows = [
        (str(i + 1), t.replace("T", " "), "BUY" if side > 0 else "SELL", format_decimal(price), format_decimal(qty),
         format_decimal(fee), "MAKER" if maker else "TAKER", format_decimal(cash), format_decimal(base))
        for i, (t, side, price, qty, fee, maker, cash, base) in enumerate(
            zip(iso_times(trades["ts"], unit="ms"),
                *(trades[f].tolist() for f in ("side", "price", "qty", "fee", "maker", "cash_after", "base_after")),
                strict=True)
        )
    ]  # fmt: skip
    body = [
        f"<h1>{html.escape(title)}</h1>",
        metrics_table(metrics),
        figure_html(fig, "price-chart"),
        f"<h2>Fills ({len(trades):,})</h2>",
        '<div class="scroll">'
        + html_table(("#", "time (UTC)", "side", "price", "qty", "fee", "liquidity", "cash after", "base after"), rows,
                     table_id="trades")
        + "</div>",
        "<h2>Run</h2>",
        html_table(("setting", "value"), meta.items(), table_id="run"),
    ]  # fmt: skip
    return html_page(title, body)


def _fill_markers(trades: np.ndarray, time_field: str = "open_time") -> list[Any]:
    """One BUY and one SELL marker trace holding every fill (never sampled); ``time_field`` dates them."""
    import plotly.graph_objects as go

    traces = []
    sides = ((1, "buy", "triangle-up", _BUY_COLOUR), (-1, "sell", "triangle-down", _SELL_COLOUR))
    for side, name, symbol, colour in sides:
        rows = trades[trades["side"] == side]
        kind = go.Scattergl if len(rows) > MAX_SVG_MARKERS else go.Scatter
        text = [
            f"{name.upper()} {format_decimal(q)} @ {format_decimal(p)} (fee {format_decimal(f)})"
            for q, p, f in zip(rows["qty"].tolist(), rows["price"].tolist(), rows["fee"].tolist(), strict=True)
        ]
        traces.append(
            kind(
                x=iso_times(rows[time_field], unit="s" if time_field == "open_time" else "ms"),
                y=rows["price"] / SCALE,
                mode="markers",
                name=name,
                meta="fills",
                text=text,
                hovertemplate="%{text}<extra></extra>",
                marker={
                    "symbol": symbol,
                    "color": colour,
                    "size": 9 if len(trades) <= 1_000 else 6,
                    "line": {"width": 0.5, "color": "#1f2328"},
                },
            )
        )
    return traces


def _starting_equity(trades: np.ndarray, equity: np.ndarray) -> float:
    """The equity before the first bar (quote units): the cash before the first fill, a BUY from flat (its cash after
    plus ``ceil(notional)`` plus its fee), else the first close's equity. A fill at the first bar's open (a strategy
    ordering before the first bar) makes them differ."""
    if len(trades) == 0:
        return float(equity[0])
    price, qty, fee, cash = (int(trades[0][name]) for name in ("price", "qty", "fee", "cash_after"))
    return (cash - (-price * qty // SCALE) + fee) / SCALE


def _trade_rows(trades: np.ndarray) -> list[tuple[str, ...]]:
    """The trade list with exact decimals; the fill that leaves the position flat carries its round trip's PnL net of
    every fee: the cash after it minus the cash before the round trip's first BUY (that BUY's cash after plus
    ``ceil(notional)`` plus its fee, the kernel's rounding); for one BUY and one SELL,
    ``floor(sell notional) - sell fee - ceil(buy notional) - buy fee``."""
    rows: list[tuple[str, ...]] = []
    times = iso_times(trades["open_time"])
    position = 0
    cash_before = 0
    for i, (t, side, price, qty, fee, cash) in enumerate(
        zip(
            times,
            trades["side"].tolist(),
            trades["price"].tolist(),
            trades["qty"].tolist(),
            trades["fee"].tolist(),
            trades["cash_after"].tolist(),
            strict=True,
        )
    ):
        pnl = ""
        if side > 0 and position == 0:
            cash_before = cash - (-price * qty // SCALE) + fee
        position += side * qty
        if side < 0 and position == 0:
            pnl = format_decimal(cash - cash_before)
        rows.append(
            (
                str(i + 1),
                t.replace("T", " "),
                "BUY" if side > 0 else "SELL",
                format_decimal(price),
                format_decimal(qty),
                format_decimal(fee),
                format_decimal(cash),
                pnl,
            )
        )
    return rows


def _panel_title(name: str, bars: BarSeries, strategy: str | None, n: int) -> str:
    if name == "price":
        return f"{bars.symbol}: price and fills" + (f" ({n:,} bars)" if n else "")
    if name == "equity":
        return "equity against buy and hold"
    return {"RSI": f"RSI ({strategy})", "drawdown": "drawdown"}[name]


def _number(value: float) -> str:
    return f"{value:g}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)
