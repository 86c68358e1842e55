"""A search's ``report.html``, written beside ``results.csv``: one self-contained page (plotly.js inlined, as in the
backtest report) with

* the ranking metric as a heatmap over two parameters (``report_params`` / ``--report-params a,b``; by default the
  first two parameters of the grid that take more than one value). When other parameters vary too, each cell shows
  the best value over them (max, or min for a metric ranked smallest first) and the title says so; with one
  parameter the heatmap is a single row;
* the top rows by the ranking metric (:func:`~veloz_actors.search.store.best_first`, as the CLI's top table: ties
  go to the set that comes first in the parameter space), as a table;
* the equity curves of the best ``report_curves`` sets (5 by default, at most
  :data:`~veloz_actors.search.config.MAX_REPORT_CURVES`), against buy and hold: each set is backtested again here in
  the driver with the kernel the search ran, so a curve ends exactly at its row's ``final_equity``.

Pure: no Ray. Walk-forward searches write ``walk_forward.csv`` and no report.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .._exceptions import ConfigError
from ..backtest.metrics import equity_and_metrics, format_metric
from ..backtest.report import figure_html, html_page, html_table, iso_times, sample_indices, write_atomically
from ..fixed import SCALE
from .config import METRICS, SearchConfig
from .plan import SearchPlan, is_failed
from .space import ParameterSpace
from .store import best_first

__all__ = [
    "REPORT_NAME",
    "MetricGrid",
    "SearchReport",
    "build_search_report",
    "heatmap_params",
    "metric_grid",
    "ranked_rows",
    "write_search_report",
]

REPORT_NAME = "report.html"
TABLE_ROWS = 20  # rows of the top table (at least report_curves)
_LABELLED_CELLS = 400  # heatmaps up to this many cells print each value in its cell


@dataclass(frozen=True, slots=True)
class MetricGrid:
    """The heatmap's data: ``z[i][j]`` is ``metric`` at ``y = y_values[i]``, ``x = x_values[j]`` (``None``: no result,
    e.g. a pair the constraints exclude), the best over the parameters in ``over`` (``how``: "max" or "min")."""

    metric: str
    x_name: str
    x_values: tuple[Any, ...]
    y_name: str | None
    y_values: tuple[Any, ...]
    z: tuple[tuple[float | None, ...], ...]
    over: tuple[str, ...]
    how: str

    @property
    def title(self) -> str:
        axes = self.x_name if self.y_name is None else f"{self.y_name} x {self.x_name}"
        text = f"{self.metric} over {axes}"
        if self.over:
            text += f" ({self.how} over {', '.join(self.over)})"
        return text


def heatmap_params(config: SearchConfig) -> tuple[str, ...]:
    """The heatmap's parameters (x first): ``config.report_params`` when given, else the first two grid parameters
    with more than one value (the first one, or the first parameter, when fewer vary)."""
    if config.report_params:
        unknown = [name for name in config.report_params if name not in config.grid]
        if unknown:
            raise ConfigError(f"report_params: {', '.join(map(repr, unknown))} is not a parameter of the grid")
        return tuple(config.report_params)
    values = config.parameter_values()
    varying = [name for name, vals in values.items() if len(vals) > 1]
    return tuple(varying[:2]) if varying else tuple(values)[:1]


def metric_grid(table: pa.Table, params: Sequence[str], metric: str, maximise: bool, min_trades: int = 0) -> MetricGrid:
    """``metric`` of every row of ``table`` placed on ``params`` (one or two columns), the best over the rest (a row
    with fewer than ``min_trades`` round trips never wins a cell)."""
    missing = [name for name in [*params, metric] if name not in table.column_names]
    if missing:
        raise ConfigError(f"the results have no column {', '.join(map(repr, missing))}")
    x_name, y_name = params[0], (params[1] if len(params) > 1 else None)
    x_values, x_index = _axis(table.column(x_name).to_pylist())
    if y_name is None:
        y_values: tuple[Any, ...] = ("",)
        y_index = np.zeros(table.num_rows, dtype=np.int64)
    else:
        y_values, y_index = _axis(table.column(y_name).to_pylist())
    values = np.asarray(table.column(metric).to_numpy(zero_copy_only=False), dtype=np.float64)
    if min_trades:
        values = np.where(_trades(table) < min_trades, np.nan, values)
    z = np.full((len(y_values), len(x_values)), np.nan)
    (np.fmax if maximise else np.fmin).at(z, (y_index, x_index), values)  # NaN results never win a cell
    over = tuple(name for name in table.column_names if name not in params and name not in METRICS and name != "node")
    over = tuple(name for name in over if len(set(table.column(name).to_pylist())) > 1)
    return MetricGrid(
        metric=metric,
        x_name=x_name,
        x_values=x_values,
        y_name=y_name,
        y_values=y_values,
        z=tuple(tuple(None if math.isnan(v) else float(v) for v in row) for row in z.tolist()),
        over=over,
        how="max" if maximise else "min",
    )


def ranked_rows(
    table: pa.Table, space: ParameterSpace, metric: str, maximise: bool, k: int, min_trades: int = 0
) -> list[dict[str, Any]]:
    """The best ``k`` rows of ``table`` (a search over ``space``), as dicts, in
    :func:`~veloz_actors.search.store.best_first`'s order (NaN, and fewer than ``min_trades`` round trips, last; ties
    to the set that comes first in the space), whatever order the table's rows are in."""
    names = (*space.names, metric, "n_trades")
    columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in names}
    order = best_first(columns, space, metric, maximise, min_trades)[:k]
    return table.take(pa.array(order, type=pa.int64())).to_pylist()


def _trades(table: pa.Table) -> np.ndarray:
    return np.asarray(table.column("n_trades").to_numpy(zero_copy_only=False), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class SearchReport:
    """What ``report.html`` shows: the heatmap's grid and figure, the top rows, and the best sets' equity curves
    (``curves[i]`` belongs to ``top[i]``; plotly figures, ``equity_figure`` ``None`` without curves)."""

    grid: MetricGrid
    top: list[dict[str, Any]]
    curves: list[np.ndarray]
    heatmap: Any
    equity_figure: Any


def build_search_report(plan: SearchPlan, table: pa.Table) -> SearchReport:
    """The report of a finished search whose rows are ``table``: re-runs the best ``report_curves`` sets here."""
    import plotly.graph_objects as go

    config = plan.config
    grid = metric_grid(table, heatmap_params(config), config.metric, config.maximise, config.min_trades)
    k = max(TABLE_ROWS, config.report_curves)
    top = ranked_rows(table, plan.space, config.metric, config.maximise, k, config.min_trades)
    # a set that could not be computed (NaN metrics: ranked last, so never before a drawn one) has no curve to draw
    curves = [_equity_curve(plan, row) for row in top[: config.report_curves] if not is_failed(row)]
    heatmap = go.Figure(
        go.Heatmap(
            x=list(grid.x_values),
            y=list(grid.y_values),
            z=[list(row) for row in grid.z],
            colorscale="Viridis",
            reversescale=not config.maximise,
            colorbar={"title": {"text": config.metric}},
            texttemplate="%{z:.3g}" if len(grid.x_values) * len(grid.y_values) <= _LABELLED_CELLS else None,
            hovertemplate=f"{grid.x_name}=%{{x}}"
            + (f"<br>{grid.y_name}=%{{y}}" if grid.y_name else "")
            + f"<br>{config.metric}=%{{z:.4g}}<extra></extra>",
            name=config.metric,
        )
    )
    heatmap.update_layout(
        title={"text": grid.title},
        xaxis={"title": {"text": grid.x_name}, "type": "category"},
        yaxis={"title": {"text": grid.y_name or ""}, "type": "category"},
        height=max(320, min(900, 140 + 22 * len(grid.y_values))),
        margin={"l": 70, "r": 20, "t": 60, "b": 60},
    )
    equity_figure = _curves_figure(plan, list(zip(top, curves, strict=False))) if curves else None
    return SearchReport(grid, top, curves, heatmap, equity_figure)


def write_search_report(out: Path, plan: SearchPlan, table: pa.Table) -> Path:
    """Write ``out/report.html`` for a finished search whose rows are ``table``; return its path."""
    report = build_search_report(plan, table)
    config = plan.config
    body = [
        f"<h1>{html.escape(_title(config))}</h1>",
        html_table(("search", "value"), _summary(plan, table), table_id="search"),
        figure_html(report.heatmap, "metric-heatmap"),
        f"<h2>Top {len(report.top)} by {html.escape(config.metric)}</h2>",
        html_table(_top_columns(plan), _top_cells(plan, report.top), table_id="top"),
    ]
    if report.equity_figure is not None:
        body.append(figure_html(report.equity_figure, "top-equity"))
    path = out / REPORT_NAME
    out.mkdir(parents=True, exist_ok=True)
    write_atomically({path: html_page(_title(config), body)})  # UTF-8 as the page declares; never a torn page
    return path


# ------------------------------------------------------------------------------------------------ internals


def _axis(values: list[Any]) -> tuple[tuple[Any, ...], np.ndarray]:
    """The sorted distinct values of a column and each row's position among them."""
    distinct = tuple(sorted(set(values)))
    position = {v: i for i, v in enumerate(distinct)}
    return distinct, np.fromiter((position[v] for v in values), dtype=np.int64, count=len(values))


def _equity_curve(plan: SearchPlan, row: dict[str, Any]) -> np.ndarray:
    from ._backend import kernel

    params = {name: row[name] for name in plan.param_names}
    trades, _ = kernel.backtest(plan.bars, plan.config.strategy, params, plan.settings)
    equity, _ = equity_and_metrics(plan.bars, plan.settings, trades)
    return equity


def _curves_figure(plan: SearchPlan, curves: list[tuple[dict[str, Any], np.ndarray]]) -> Any:
    import plotly.graph_objects as go

    close = plan.bars.data["close"].astype(np.float64) / SCALE
    start = plan.settings.initial_cash / SCALE
    hold = start * close / close[0]
    series = [equity for _, equity in curves] + [hold]
    idx = sample_indices(series)
    x = iso_times(plan.bars.data["open_time"][idx])
    fig = go.Figure()
    for rank, (row, equity) in enumerate(curves, start=1):
        label = " ".join(f"{n}={row[n]}" for n in plan.param_names)
        fig.add_trace(go.Scatter(x=x, y=equity[idx], mode="lines", name=f"#{rank} {label}", line={"width": 1.3}))
    fig.add_trace(
        go.Scatter(x=x, y=hold[idx], mode="lines", name="buy and hold", line={"color": "#8c959f", "dash": "dot"})
    )
    fig.update_layout(
        title={"text": f"Equity of the best {len(curves)} by {plan.config.metric}"},
        xaxis={"type": "date", "title": {"text": "time (UTC)"}},
        yaxis={"title": {"text": "equity"}},
        height=480,
        margin={"l": 70, "r": 20, "t": 60, "b": 60},
        hovermode="x unified",
    )
    return fig


def _title(config: SearchConfig) -> str:
    return f"Search: {config.strategy} on {config.data.name}, ranked by {config.metric}"


def _summary(plan: SearchPlan, table: pa.Table) -> list[tuple[str, str]]:
    config = plan.config
    times = iso_times(plan.bars.data["open_time"][[0, -1]])
    return [
        ("data", str(config.data)),
        ("bars", f"{len(plan.bars):,} ({times[0].replace('T', ' ')} to {times[1].replace('T', ' ')} UTC)"),
        ("strategy", config.strategy),
        ("parameter sets", f"{table.num_rows:,}"),
        (
            "metric",
            f"{config.metric} ({'largest' if config.maximise else 'smallest'} first)"
            + (f"; sets under {config.min_trades} round trips last" if config.min_trades else ""),
        ),
        ("grid", "; ".join(f"{n}: {_values(v)}" for n, v in config.parameter_values().items())),
        ("constraints", "; ".join(config.constraints) or "none"),
        ("settings", ", ".join(f"{k}={v}" for k, v in config.settings.model_dump().items() if v is not None)),
    ]


def _values(values: Sequence[Any]) -> str:
    shown = ", ".join(map(str, values[:8]))
    return shown + (f", ... ({len(values)} values)" if len(values) > 8 else "")


def _top_columns(plan: SearchPlan) -> list[str]:
    return ["rank", *plan.param_names, *METRICS]


def _top_cells(plan: SearchPlan, rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Each row's rank, parameters and metrics, the metrics as a backtest's report shows them (money to 1e-8)."""
    return [
        [rank, *(row[name] for name in plan.param_names), *(_metric_cell(name, row[name]) for name in METRICS)]
        for rank, row in enumerate(rows, start=1)
    ]


def _metric_cell(name: str, value: Any) -> str:
    """A metric as :func:`format_metric` shows it; ``—`` for the NaN of a set that could not be computed."""
    return format_metric(name, None if isinstance(value, float) and math.isnan(value) else value)
