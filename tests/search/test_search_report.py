"""A search's ``report.html``: the metric's heatmap over two parameters, the top sets, their equity curves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import typer
from plotly.offline import get_plotlyjs
from typer.testing import CliRunner

from tests.search.helpers import DATA_NAME, METRIC_COLUMNS, small_config
from veloz_actors import ConfigError
from veloz_actors.backtest import kernel
from veloz_actors.interfaces.search_cli import register
from veloz_actors.search import grid_search, load_config
from veloz_actors.search.plan import make_plan
from veloz_actors.search.report import (
    build_search_report,
    heatmap_params,
    metric_grid,
    ranked_rows,
    write_search_report,
)


def _serial_table(config: dict[str, Any]) -> tuple[Any, pa.Table]:
    """The plan and its results table computed serially in this process (what a search stores), no Ray."""
    plan = make_plan(load_config(config))
    sets = list(plan.param_sets())
    prepared = kernel.prepare(plan.bars, plan.config.strategy, plan.settings)
    rows = [
        {**p, **{m: r[m] for m in METRIC_COLUMNS}, "node": "n"}
        for p, r in zip(sets, kernel.run_many(prepared, sets), strict=True)
    ]
    return plan, pa.Table.from_pylist(rows)


def _rsi_config(shared_data: Path, **extra: Any) -> dict[str, Any]:
    return {
        "data": str(shared_data / DATA_NAME),
        "strategy": "rsi_reversion",
        "grid": {"period": [7, 14], "lower": [20, 30], "upper": [70, 75, 80]},
        **extra,
    }


def test_the_heatmap_holds_each_sets_metric(shared_data: Path) -> None:
    plan, table = _serial_table(small_config(shared_data))
    grid = metric_grid(table, heatmap_params(plan.config), "sharpe", maximise=True)
    assert (grid.x_name, grid.y_name, grid.over) == ("fast", "slow", ())
    assert grid.x_values == (5, 10, 15, 20) and grid.y_values == (20, 30, 45, 60)
    expected = {(r["fast"], r["slow"]): r["sharpe"] for r in table.to_pylist()}
    for i, slow in enumerate(grid.y_values):
        for j, fast in enumerate(grid.x_values):
            assert grid.z[i][j] == expected.get((fast, slow))  # None where fast < slow excludes the pair
    assert grid.z[0][3] is None and grid.z[0][0] is not None
    assert grid.title == "sharpe over slow x fast"


def test_a_third_varying_parameter_is_folded_by_its_best_value(shared_data: Path) -> None:
    plan, table = _serial_table(_rsi_config(shared_data))
    assert heatmap_params(plan.config) == ("period", "lower")
    rows = table.to_pylist()
    for metric, maximise, best in (("sharpe", True, max), ("max_drawdown", False, min)):
        grid = metric_grid(table, ("period", "lower"), metric, maximise)
        assert grid.over == ("upper",) and grid.title.endswith(f"({'max' if maximise else 'min'} over upper)")
        for i, lower in enumerate(grid.y_values):
            for j, period in enumerate(grid.x_values):
                values = [r[metric] for r in rows if r["period"] == period and r["lower"] == lower]
                assert len(values) == 3 and grid.z[i][j] == best(values)


def test_report_params_choose_the_axes_and_a_single_valued_parameter_is_skipped(shared_data: Path) -> None:
    config = load_config(_rsi_config(shared_data, report_params="upper,period"))
    assert heatmap_params(config) == ("upper", "period")
    config = load_config({**_rsi_config(shared_data), "grid": {"period": [14], "lower": [20, 30], "upper": [70, 80]}})
    assert heatmap_params(config) == ("lower", "upper")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fast,bogus", "report_params: 'bogus' is not a parameter of the grid; the grid's parameters are fast, slow"),
        ("fast,fast", "expected one or two distinct parameter names"),
        ("fast,slow,fast", "expected one or two distinct parameter names"),
    ],
)
def test_bad_report_params_are_named(shared_data: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(small_config(shared_data, report_params=value))


def test_the_cli_refuses_an_unknown_report_parameter_before_any_work(shared_data: Path) -> None:
    app = typer.Typer()
    register(app)
    flags = ["grid-search", "--data", str(shared_data / DATA_NAME), "--strategy", "sma_cross"]
    flags += ["--grid", "fast=5,10", "--grid", "slow=30", "--report-params", "fast,medium"]
    result = CliRunner().invoke(app, flags)
    assert result.exit_code == 2
    assert "report_params: 'medium' is not a parameter of the grid" in result.stderr
    result = CliRunner().invoke(app, [*flags[:-2], "--min-trades", "-1"])
    assert result.exit_code == 2 and "min_trades" in result.stderr and "greater than or equal to 0" in result.stderr


def test_the_top_rows_are_ranked_and_their_curves_end_at_their_final_equity(shared_data: Path) -> None:
    plan, table = _serial_table(small_config(shared_data, report_curves=3))
    report = build_search_report(plan, table)
    by_sharpe = sorted(table.to_pylist(), key=lambda r: -r["sharpe"])
    assert [r["sharpe"] for r in report.top] == [r["sharpe"] for r in by_sharpe]  # 15 rows, fewer than 20
    assert len(report.curves) == len(report.equity_figure.data) - 1 == 3  # plus buy and hold
    for row, curve, trace in zip(report.top, report.curves, report.equity_figure.data, strict=False):
        assert len(curve) == len(plan.bars) and curve[-1] == row["final_equity"]  # the kernel, exactly
        assert trace.y[-1] == row["final_equity"]  # the sampled line keeps the last point
        assert trace.name.startswith(f"#{report.top.index(row) + 1} fast={row['fast']} slow={row['slow']}")
    assert report.equity_figure.layout.xaxis.type == "date"
    assert ranked_rows(table, plan.space, "max_drawdown", False, 1)[0]["max_drawdown"] == min(
        table.column("max_drawdown").to_pylist()
    )


def test_the_page_is_self_contained(shared_data: Path, tmp_path: Path) -> None:
    plan, table = _serial_table(small_config(shared_data, report_curves=2))
    page = write_search_report(tmp_path, plan, table).read_text()
    assert page.count(get_plotlyjs()) == 1
    ours = page.replace(get_plotlyjs(), "")
    assert "://" not in ours and all("src" not in tag for tag in re.findall(r"<script[^>]*>", ours))
    assert 'id="metric-heatmap"' in ours and 'id="top-equity"' in ours and 'id="top"' in ours


def test_the_page_is_utf_8_whatever_the_locale(shared_data: Path, tmp_path: Path) -> None:
    """The page declares UTF-8 and plotly's bundle holds non-ASCII characters: under an ASCII locale (C, no coercion)
    writing it in the locale's encoding raised UnicodeEncodeError at the end of every search."""
    code = (
        "import sys, json; from pathlib import Path; "
        "from tests.search.test_search_report import _serial_table; "
        "from veloz_actors.search.report import write_search_report; "
        "plan, table = _serial_table(json.loads(sys.argv[1])); write_search_report(Path(sys.argv[2]), plan, table)"
    )
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    config = json.dumps(small_config(shared_data, report_curves=2))
    done = subprocess.run(
        [sys.executable, "-c", code, config, str(tmp_path)],
        env=env, cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    page = (tmp_path / "report.html").read_bytes().decode("utf-8")
    assert '<meta charset="utf-8">' in page and page.count(get_plotlyjs()) == 1


@pytest.mark.ray
def test_a_search_with_out_writes_the_report(ray_runtime, shared_data: Path, tmp_path: Path) -> None:
    table = grid_search(small_config(shared_data, report_curves=2), out=tmp_path, progress=False)
    page = (tmp_path / "report.html").read_text()
    match = re.search(r'Plotly\.newPlot\(\s*"metric-heatmap",\s*(\[.*?\]),\s*\{', page, re.S)
    assert match is not None
    (heatmap,) = json.loads(match.group(1))
    expected = {(r["fast"], r["slow"]): r["sharpe"] for r in table.to_pylist()}
    assert heatmap["x"] == [5, 10, 15, 20] and heatmap["y"] == [20, 30, 45, 60]
    for slow, row in zip(heatmap["y"], heatmap["z"], strict=True):
        assert row == [expected.get((fast, slow)) for fast in heatmap["x"]]
    assert page.count('"name":"#') == 2  # two equity curves


def test_sets_with_fewer_round_trips_than_min_trades_never_rank_above_one_with_enough(shared_data: Path) -> None:
    """A set that hardly trades can top a ranking by luck (and one that never trades has no drawdown at all)."""
    from veloz_actors.search.store import TopK

    plan, table = _serial_table(small_config(shared_data))
    rows = table.to_pylist()
    best = max(rows, key=lambda r: r["sharpe"])
    floor = best["n_trades"] + 1  # the best Sharpe, here, has fewer round trips than this
    enough = [r for r in rows if r["n_trades"] >= floor]
    assert 2 <= len(enough) < len(rows)
    best_enough = max(r["sharpe"] for r in enough)
    ranked = ranked_rows(table, plan.space, "sharpe", True, len(rows), min_trades=floor)
    assert [r["n_trades"] >= floor for r in ranked] == [True] * len(enough) + [False] * (len(rows) - len(enough))
    assert ranked[0]["sharpe"] == best_enough < best["sharpe"]
    assert ranked_rows(table, plan.space, "sharpe", True, 1)[0] == best  # without the floor, as before
    top = TopK(3, "sharpe", True, min_trades=floor, space=plan.space)
    top.add(rows)
    assert top.rows() == ranked[:3]
    grid = metric_grid(table, ("fast", "slow"), "sharpe", True, min_trades=floor)
    cells = [v for row in grid.z for v in row if v is not None]
    assert max(cells) == best_enough and len(cells) == len(enough)  # one set per cell here
    report = build_search_report(make_plan(load_config(small_config(shared_data, min_trades=floor))), table)
    assert report.top[0]["sharpe"] == best_enough


def test_the_top_table_shows_money_exactly(shared_data: Path, tmp_path: Path) -> None:
    """A million of starting cash: the top table showed final equity to 6 significant digits (1.81953e+06)."""
    config = small_config(shared_data, settings={"initial_cash": "1000000"})
    plan, table = _serial_table(config)
    page = write_search_report(tmp_path, plan, table).read_text()
    body = page[page.index('<table id="top">') :]
    rows = re.findall(r"<tr>(.*?)</tr>", body[: body.index("</table>")])[1:]
    report = build_search_report(plan, table)
    assert len(rows) == len(report.top) > 5
    close = int(plan.bars.data["close"][-1])
    for cells, row in zip(rows, report.top, strict=True):
        fast, slow, final_equity, total_return = re.findall(r"<td>(.*?)</td>", cells)[1:5]
        trades, _ = kernel.backtest(plan.bars, "sma_cross", {"fast": row["fast"], "slow": row["slow"]}, plan.settings)
        held = int(trades["qty"][-1]) if len(trades) % 2 else 0
        exact = (int(trades["cash_after"][-1]) + held * close // 10**8) / Decimal(10**8)
        assert (fast, slow) == (str(row["fast"]), str(row["slow"]))
        assert final_equity == f"{exact.normalize():,f}" and "," in final_equity
        assert total_return == f"{row['total_return'] * 100:.2f} %"


def test_a_write_that_fails_half_way_leaves_the_previous_report_whole(shared_data: Path, tmp_path: Path) -> None:
    """The page is several megabytes: a write that fails part-way (here the file-size limit, as a full disk would)
    truncated ``report.html`` and left a torn page where the good one was. It is written beside it and renamed:
    the previous page stays whole and no temporary file is left."""
    config = small_config(shared_data, report_curves=2)
    good = write_search_report(tmp_path, *_serial_table(config)).read_bytes()
    code = (
        "import json, resource, signal, sys; from pathlib import Path; "
        "from tests.search.test_search_report import _serial_table; "
        "from veloz_actors.search.report import write_search_report; "
        "plan, table = _serial_table(json.loads(sys.argv[1])); "
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY)); "
        "write_search_report(Path(sys.argv[2]), plan, table)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps({**config, "report_curves": 1}), str(tmp_path)],
        cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0 and "File too large" in done.stderr, done.stderr[-2000:]
    assert (tmp_path / "report.html").read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
