"""The search on the shared local Ray runtime: exact results, resume, clear errors before work, a killed worker."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.backtest.synthetic_bars import TINY, write_bars
from tests.search.helpers import (
    BIG_DATA_NAME,
    DATA_NAME,
    METRIC_COLUMNS,
    by_params,
    command_line,
    descendant_pids,
    serial_results,
    small_config,
)
from veloz_actors import ConfigError, EngineUnavailable, InvalidInput
from veloz_actors.backtest import kernel
from veloz_actors.backtest.settings import BacktestSettings
from veloz_actors.data.bars import BAR_DTYPE, BarSeries
from veloz_actors.data.loaders import load_bars
from veloz_actors.search import ParameterSpace, SearchProgress, grid_search, load_config, runner, walk_forward_windows
from veloz_actors.search.plan import execute_chunk, make_plan, slice_bars

pytestmark = pytest.mark.ray


def _sets(config: dict) -> list[dict]:
    cfg = load_config(config)
    return list(ParameterSpace(cfg.parameter_values(), cfg.constraints))


def test_small_grid_equals_serial_kernel_runs(ray_runtime, shared_data: Path) -> None:
    config = small_config(shared_data, chunk_size=2)
    table = grid_search(config, progress=False)
    expected = serial_results(shared_data, _sets(config))
    assert table.num_rows == len(expected) == 15
    assert by_params(table.to_pylist()) == expected
    assert set(table.column("node").to_pylist()) == {ray_runtime.node_id}


def test_results_stream_to_csv_and_parquet(ray_runtime, shared_data: Path, tmp_path: Path) -> None:
    table = grid_search(small_config(shared_data), out=tmp_path, progress=False)
    header = (tmp_path / "results.csv").read_text().splitlines()[0]
    assert header == "fast,slow,final_equity,total_return,max_drawdown,n_trades,win_rate,sharpe,node"
    assert len((tmp_path / "results.csv").read_text().splitlines()) == table.num_rows + 1
    import pyarrow.parquet as pq

    assert (
        pq.read_table(tmp_path / "results.parquet")
        .sort_by([("fast", "ascending"), ("slow", "ascending")])
        .equals(table)
    )


def test_resume_after_interruption_computes_only_missing_sets(ray_runtime, shared_data: Path, tmp_path: Path) -> None:
    config = small_config(shared_data, chunk_size=2, max_in_flight=1)

    def interrupt(state: SearchProgress) -> None:
        if state.computed >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        grid_search(config, out=tmp_path, progress=False, on_progress=interrupt)
    saved = len((tmp_path / "results.csv").read_text().splitlines()) - 1
    assert 4 <= saved < 15
    seen: list[SearchProgress] = []
    table = grid_search(config, out=tmp_path, resume=True, progress=False, on_progress=seen.append)
    assert seen[-1].resumed == saved
    assert seen[-1].computed == 15 - saved
    assert by_params(table.to_pylist()) == serial_results(shared_data, _sets(config))


def test_resume_without_out_is_refused_not_a_silent_search_from_scratch(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match=r"^resume needs out, the directory holding the results.csv to resume"):
        grid_search(small_config(shared_data), resume=True, progress=False)


def test_random_search_runs_its_budget_reproducibly(ray_runtime, shared_data: Path) -> None:
    config = small_config(shared_data, random={"budget": 4, "seed": 3})
    first = grid_search(config, progress=False)
    again = grid_search(config, progress=False)
    assert first.num_rows == 4
    assert first.drop(["node"]).equals(again.drop(["node"]))


def test_walk_forward_gives_one_row_per_fold(ray_runtime, shared_data: Path) -> None:
    config = small_config(shared_data, walk_forward={"train_bars": 3000, "test_bars": 1500})
    table = grid_search(config, progress=False)
    bars = load_bars(shared_data / DATA_NAME)
    windows = walk_forward_windows(len(bars), 3000, 1500, 1500)
    assert table.column("fold").to_pylist() == [w.fold for w in windows]
    assert table.num_rows >= 2
    opens = bars.data["open_time"] // 1_000_000  # each date is the open time of a bar in the window, both ends in
    assert table.column("test_start_ms").to_pylist() == [int(opens[w.train_stop]) for w in windows]
    assert table.column("test_end_ms").to_pylist() == [int(opens[w.test_stop - 1]) for w in windows]
    assert all(f < s for f, s in zip(table.column("fast").to_pylist(), table.column("slow").to_pylist(), strict=True))


def test_a_walk_forward_fold_where_no_set_trades_enough_takes_the_best_of_the_rest_and_says_so(
    ray_runtime, shared_data: Path
) -> None:
    config = small_config(shared_data, walk_forward={"train_bars": 3000, "test_bars": 1500})
    plan = make_plan(load_config(config))
    first = tuple(next(plan.param_sets()).values())
    free = grid_search(config, progress=False)  # no floor: each fold's best Sharpe
    winners = list(zip(free.column("fast").to_pylist(), free.column("slow").to_pylist(), strict=True))
    assert any(winner != first for winner in winners)  # else the first set of the space would pass unnoticed
    folds = ", ".join(str(w.fold) for w in plan.windows)
    said = re.escape(f"walk-forward fold(s) {folds}: no parameter set made min_trades (100000) round trips")
    with pytest.warns(UserWarning, match=said) as caught:
        floored = grid_search({**config, "min_trades": 100_000}, progress=False)
    assert len(caught) == 1
    assert floored.drop(["node"]).equals(free.drop(["node"]))


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"grid": {"fast": [], "slow": [30]}}, ConfigError, "no values"),
        ({"grid": {"fast": [5], "slow": [30], "medium": [7]}}, ConfigError, "no parameter 'medium'"),
        ({"data": "/nonexistent/bars.csv.gz"}, ConfigError, "data file not found"),
        ({"constraints": ["fast > slow"]}, ConfigError, "no parameter set satisfies"),
        ({"constraints": []}, ConfigError, "must be smaller than slow"),
        ({"settings": {"slippage_bps": 20000}}, InvalidInput, "settings.slippage_bps 20000 must be below 10000"),
        ({"settings": {"fee_rate": 1}}, InvalidInput, "settings.fee_rate 1 must be below 1"),
        ({"grid": {"fast": "1:100000:1", "slow": "1:100000:1"}}, ConfigError, "10,000,000,000 combinations"),
    ],
)
def test_bad_input_fails_before_any_work(
    shared_data: Path, tmp_path: Path, change: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        grid_search({**small_config(shared_data), **change}, out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("slow", "shown"),
    [(10**9, "1000000000"), (10**29, "1" + "0" * 29), (10**5000, "an integer of about 5,000 digits")],
    ids=["1e9", "1e29", "1e5000"],
)
def test_a_grid_window_above_a_million_bars_is_refused_before_any_work(
    shared_data: Path, slow: int, shown: str
) -> None:
    config = small_config(shared_data, grid={"fast": [5], "slow": [30, slow]})
    with pytest.raises(ConfigError) as caught:
        make_plan(load_config(config))
    assert str(caught.value).startswith(f"parameter set fast=5 slow={shown}: sma_cross: slow must be at most 1,000,000")


def test_a_tick_capture_is_refused_saying_a_search_runs_on_bars(shared_data: Path, tmp_path: Path) -> None:
    capture = shared_data / "ticks_l2" / "binance_spot_btcusdt_20240808_ws.txt.gz"
    with pytest.raises(ConfigError, match="is a recorded WebSocket capture: a search runs on bars"):
        grid_search({**small_config(shared_data), "data": str(capture)}, out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_too_few_workers_fail_before_any_file_is_written(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--max-workers must be >= 1, got 0"):
        grid_search(small_config(shared_data), max_workers=0, out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_random_budget_above_the_space_is_a_warning(shared_data: Path) -> None:
    plan = make_plan(load_config(small_config(shared_data, random={"budget": 100})))
    assert plan.count() == 15
    assert plan.warnings == (
        "random search: the space holds only 15 parameter sets (after constraints), fewer than the budget of 100; "
        "all 15 are evaluated",
    )


def test_a_random_search_short_of_its_budget_warns_and_records_it(
    ray_runtime, shared_data: Path, tmp_path: Path
) -> None:
    with pytest.warns(UserWarning, match="the space holds only 15 parameter sets"):
        table = grid_search(small_config(shared_data, random={"budget": 100}), out=tmp_path, progress=False)
    assert table.num_rows == 15
    assert json.loads((tmp_path / "search.json").read_text())["warnings"] == list(
        make_plan(load_config(small_config(shared_data, random={"budget": 100}))).warnings
    )


def test_walk_forward_neither_overwrites_nor_pretends_to_resume(ray_runtime, shared_data: Path, tmp_path: Path) -> None:
    config = small_config(shared_data, walk_forward={"train_bars": 3000, "test_bars": 2000})
    grid_search(config, out=tmp_path, progress=False)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert set(before) == {".lock", "walk_forward.csv", "walk_forward.parquet"}  # .lock: held while a search runs
    other = {**config, "grid": {"fast": [5, 6], "slow": [40]}}
    with pytest.raises(ConfigError, match="walk_forward.csv already exists"):
        grid_search(other, out=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="--resume does not apply to a walk-forward search"):
        grid_search(other, out=tmp_path, resume=True, progress=False)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_walk_forward_files_are_on_the_disk_before_they_take_their_names(
    ray_runtime, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They were renamed into place unflushed: a power loss could leave an empty walk_forward.csv, which the next
    run then refuses to overwrite (``already exists``) and which holds none of the folds."""
    config = small_config(shared_data, walk_forward={"train_bars": 3000, "test_bars": 2000})
    steps: list[str] = []
    fsync, replace = os.fsync, os.replace

    def recorded_fsync(fd: int) -> None:
        name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
        if name.startswith("walk_forward"):
            steps.append(f"fsync {name}")
        fsync(fd)

    def recorded_replace(source: Any, target: Any) -> None:
        if Path(target).name.startswith("walk_forward"):
            steps.append(f"rename to {Path(target).name}")
        replace(source, target)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded_replace)
    grid_search(config, out=tmp_path, progress=False)
    assert steps == [
        "fsync walk_forward.csv.tmp",
        "fsync walk_forward.parquet.tmp",
        "rename to walk_forward.csv",
        "rename to walk_forward.parquet",
    ]
    assert {path.name for path in tmp_path.iterdir()} == {".lock", "walk_forward.csv", "walk_forward.parquet"}


def test_unreachable_address_fails_fast_before_work(shared_data: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match="cannot reach a Ray cluster at 127.0.0.1:1"):
        grid_search(small_config(shared_data), address="127.0.0.1:1", out=tmp_path / "out", progress=False)
    assert time.monotonic() - started < 5
    assert not (tmp_path / "out").exists()


def test_killed_worker_does_not_lose_the_search(ray_runtime, shared_data: Path) -> None:
    config = small_config(
        shared_data,
        data=str(shared_data / BIG_DATA_NAME),
        grid={"fast": "2:41:1", "slow": [60, 80, 100, 120, 140, 160]},
        chunk_size=30,
        max_in_flight=2,
    )
    outcome: dict[str, object] = {}
    search = threading.Thread(target=lambda: outcome.update(table=grid_search(config, progress=False)), daemon=True)
    search.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and search.is_alive() and time.monotonic() < deadline:
        for pid in descendant_pids(os.getpid()):
            if command_line(pid).startswith("ray::_run_chunk"):
                os.kill(pid, signal.SIGKILL)  # a worker of this session's own runtime, mid-chunk
                killed = pid
                break
    search.join(timeout=120)
    assert killed is not None, "no chunk task was seen running"
    table = outcome["table"]
    assert table.num_rows == 240
    assert by_params(table.to_pylist()) == serial_results(shared_data, _sets(config), BIG_DATA_NAME)


def test_automatic_chunks_balance_the_workers_but_stay_worth_a_task() -> None:
    from veloz_actors.search.runner import _auto_chunk

    assert _auto_chunk(256, 2, 140_614) == 32  # 4 chunks per worker, each ~4.5M bar-steps
    assert _auto_chunk(256, 2, 1_000) == 256  # tiny data: one task per 4,000 sets would be all overhead; capped
    assert _auto_chunk(4096, 2, 140_614) == 256  # capped, for progress and cheap retries
    assert _auto_chunk(3, 8, 10**7) == 1


def _noisy_bars(path: Path, shared_data: Path, rows: int) -> Path:
    """Real bars with 1e-8 added to every price (a resample's float noise): the closes share no divisor any more."""
    with gzip.open(shared_data / DATA_NAME, "rt") as handle:
        lines = list(itertools.islice(handle, rows + 1))
    noisy = [lines[0]]
    for line in lines[1:]:
        cells = line.rstrip("\n").split(",")
        noisy.append(",".join([cells[0], *(f"{float(c) + 1e-8:.8f}" for c in cells[1:5]), cells[5]]) + "\n")
    path.write_text("".join(noisy))
    return path


@pytest.mark.parametrize(
    ("walk_forward", "where"),
    [(None, ""), ({"train_bars": 2700, "test_bars": 300}, " (walk-forward fold 0's training window)")],
)
def test_windows_the_kernel_cannot_sum_on_the_data_are_refused_before_any_work(
    shared_data: Path, tmp_path: Path, walk_forward: dict | None, where: str
) -> None:
    data = _noisy_bars(tmp_path / "binance_spot_BTCUSDT_1h_noisy.csv", shared_data, 3000)
    config = {"data": str(data), "strategy": "sma_cross", "grid": {"fast": [50, 1200], "slow": [2000, 2500]}}
    with pytest.raises(ConfigError) as caught:
        grid_search({**config, "walk_forward": walk_forward}, out=tmp_path / "out", progress=False)
    assert str(caught.value).startswith(f"parameter set fast=1200 slow=2500{where}: sma_cross: fast*slow*max close")
    assert "overflows int64; use smaller windows" in str(caught.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("strategy", "grid", "message"),
    [
        (
            "sma_cross",
            {"fast": "5:20:5", "slow": [10, 30]},
            "fast=10 slow=10: sma_cross: fast (10) must be smaller than slow (10); add a constraint such as 'fast < slow'",
        ),
        (
            "rsi_reversion",
            {"period": 14, "lower": "20:60:10", "upper": "50:80:10"},
            "lower=50 upper=50: rsi_reversion: lower (50) must be below upper (50); add a constraint such as 'lower < upper'",
        ),
    ],
)
def test_a_grid_crossing_a_strategy_s_order_rule_says_which_constraint_keeps_it_within(
    shared_data: Path, strategy: str, grid: dict, message: str
) -> None:
    config = {"data": str(shared_data / DATA_NAME), "strategy": strategy, "grid": grid}
    with pytest.raises(ConfigError) as caught:
        make_plan(load_config(config))
    assert str(caught.value).endswith(message)


def test_windows_too_long_to_ever_trade_are_a_warning(shared_data: Path) -> None:
    """Indicators warm up inside each walk-forward window: slow 300 and 400 never trade on 300 test bars, so every
    fold's winner could show 0 out-of-sample round trips, and nothing said why."""
    config = small_config(
        shared_data,
        grid={"fast": "5:20:5", "slow": "100:400:100"},
        walk_forward={"train_bars": 3000, "test_bars": 300},
    )
    assert make_plan(load_config(config)).warnings == (
        "2 of the grid's 4 values of slow are 299 or more, too long to trade on the 300 bars of each test window: a "
        "set with one never trades (0 round trips; set min_trades to rank such sets last)",
    )
    rsi = {"data": str(shared_data / DATA_NAME), "strategy": "rsi_reversion"}
    (warning,) = make_plan(load_config({**rsi, "grid": {"period": [14, 9000], "lower": 30, "upper": 70}})).warnings
    assert warning.startswith("1 of the grid's 2 values of period are 8995 or more, too long to trade on the 8996 bars")
    assert make_plan(load_config(small_config(shared_data))).warnings == ()


def test_a_failure_common_to_every_set_stops_the_search_with_one_error(
    ray_runtime, shared_data: Path, tmp_path: Path
) -> None:
    """50,000 USDT buy 4e10 TINY at 0.00000123, beyond the 1e10 whole units VeloZ represents, whatever the windows:
    every set fails on its own trades. One error, not a table of NaN rows after running every set."""
    data = write_bars(tmp_path, TINY)
    config = {
        "data": str(data),
        "strategy": "sma_cross",
        "grid": {"fast": "2:9:1", "slow": [20, 30]},
        "settings": {"initial_cash": "50000"},
        "chunk_size": 4,
    }
    with pytest.raises(InvalidInput, match=r"^the 16 parameter sets computed first all failed, so the search stops"):
        grid_search(config, out=tmp_path / "out", progress=False)


def test_an_initial_cash_the_metrics_cannot_value_is_refused_before_any_work(shared_data: Path, tmp_path: Path) -> None:
    """100 million USDT is above the 2**53 units metrics value exactly, for every set: refused at once, not a night of
    sets that each fail on their own trades."""
    config = small_config(shared_data, settings={"initial_cash": "100000000"})
    with pytest.raises(InvalidInput, match=r"^settings.initial_cash 100000000 is above the 90071992.54740991 that"):
        grid_search(config, out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_every_set_is_validated_before_any_work_not_only_the_first_ones(shared_data: Path) -> None:
    config = small_config(shared_data, grid={"fast": "1:1000:1", "slow": "500:1000:1"}, constraints=[])
    with pytest.raises(ConfigError, match=r"^parameter set fast=500 slow=500: sma_cross: fast \(500\) must be smaller"):
        make_plan(load_config(config))  # its 250,000th set: beyond the first 200,000


def test_a_set_that_fails_on_its_own_trades_is_named_and_the_rest_of_its_chunk_computed() -> None:
    """A failure only the trades show (here a fill beyond int64: 45 million quote units spent at a price of 1e-8) cannot be
    caught before work. The first set of the chunk never trades: it is computed; the failing one is named."""
    closes = [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3]  # in 1e-8 units
    data = np.zeros(len(closes), dtype=BAR_DTYPE)
    data["open_time"] = np.arange(len(closes), dtype=np.int64) * 60_000_000_000
    data["open"] = data["close"] = data["high"] = data["low"] = closes
    data["volume"] = 10**8
    prepared = kernel.prepare(
        BarSeries("TESTUSDT", 60_000_000_000, data, 1),
        "sma_cross",
        BacktestSettings(initial_cash=2**52, qty_step=10**8),
    )
    quiet, failing = execute_chunk(prepared, [{"fast": 2, "slow": 25}, {"fast": 2, "slow": 4}])
    assert quiet == {m: kernel.run_many(prepared, [{"fast": 2, "slow": 25}])[0][m] for m in METRIC_COLUMNS}
    assert failing["error"].startswith("parameter set fast=2 slow=4: a fill's cash, quantity or fee does not fit")
    assert np.isnan(failing["final_equity"]) and failing["n_trades"] == 0


def _tie_config(shared_data: Path, **extra: Any) -> dict[str, Any]:
    """Integer RSI levels: neighbouring levels often make the same trades, so sets tie on the ranking metric."""
    return {
        "data": str(shared_data / DATA_NAME),
        "strategy": "rsi_reversion",
        "grid": {"period": [14], "lower": "10:30:1", "upper": "70:90:1"},
        "chunk_size": 21,
        **extra,
    }


def _arrival_reversed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hand every chunk's result over in the reverse of the order it arrived in (a cluster may deliver in any order)."""
    real = runner._drive

    def drive(tasks: Any, *, limit: int, on_result: Any, on_retry: Any) -> None:
        arrived: list[tuple[Any, Any]] = []
        real(tasks, limit=limit, on_result=lambda args, result: arrived.append((args, result)), on_retry=on_retry)
        for args, result in reversed(arrived):
            on_result(args, result)

    monkeypatch.setattr(runner, "_drive", drive)


def _serial_ranking(plan: Any, bars: Any) -> tuple[list[tuple[Any, ...]], list[float]]:
    """Every set run here, ranked by Sharpe, ties to the set first in the grid's order (what any run must choose);
    and their Sharpe ratios in that order."""
    sets = list(plan.param_sets())
    results = kernel.run_many(kernel.prepare(bars, plan.config.strategy, plan.settings), sets)
    ranked = sorted(range(len(sets)), key=lambda i: (-results[i]["sharpe"], i))
    return [tuple(sets[i].values()) for i in ranked], [results[i]["sharpe"] for i in ranked]


def test_the_top_table_does_not_depend_on_the_order_chunks_arrive_in(
    ray_runtime, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(_tie_config(shared_data))
    plan = make_plan(config)
    expected, sharpes = _serial_ranking(plan, plan.bars)
    assert len(set(sharpes[:7])) < 7  # ties in the top 6 or across its cut: else the test could not fail
    tops = [runner.run_plan(config, top=6, progress=False).top]
    _arrival_reversed(monkeypatch)
    tops.append(runner.run_plan(config, top=6, progress=False).top)
    for top in tops:
        assert [(r["period"], r["lower"], r["upper"]) for r in top] == expected[:6]


def test_walk_forward_fold_winners_do_not_depend_on_the_order_chunks_arrive_in(
    ray_runtime, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = {"period": [14], "lower": "20:30:1", "upper": "75:90:1"}
    walk_forward = {"train_bars": 1000, "test_bars": 500, "step_bars": 3000}
    config = load_config(_tie_config(shared_data, grid=grid, chunk_size=3, walk_forward=walk_forward))
    plan = make_plan(config)
    folds = [_serial_ranking(plan, slice_bars(plan.bars, w.train_start, w.train_stop)) for w in plan.windows]
    assert any(sharpes[0] == sharpes[3] for _, sharpes in folds)  # a fold's best tied across chunks
    tables = [grid_search(config, progress=False)]
    _arrival_reversed(monkeypatch)
    tables.append(grid_search(config, progress=False))
    for table in tables:
        winners = zip(*(table.column(n).to_pylist() for n in ("period", "lower", "upper")), strict=True)
        assert list(winners) == [ranked[0] for ranked, _ in folds]
    assert tables[0].drop(["node"]).equals(tables[1].drop(["node"]))


def test_a_set_that_fails_on_its_own_trades_is_recorded_and_the_search_goes_on(
    ray_runtime, shared_data: Path, tmp_path: Path
) -> None:
    """With 50 million USDT, the 2023 winner fast=15 slow=60 ends above the 2**53 units (90 million) that metrics
    value exactly: that one set cannot be computed. It stopped the whole search (every set after it was lost, and a
    resume met it again, so the search could never finish); now its row holds NaN metrics, ranked last, a warning
    names it, and every other set is computed."""
    config = small_config(
        shared_data,
        grid={"fast": "5:20:5", "slow": [30, 60, 100, 200]},
        settings={"initial_cash": "50000000"},
        chunk_size=4,
        max_in_flight=1,
        report_curves=20,  # every set's curve is drawn, but for the set that cannot be computed
    )
    with pytest.warns(UserWarning, match=r"1 of 16 parameter sets could not be computed.*fast=15 slow=60: cash above"):
        table = grid_search(config, out=tmp_path, progress=False)
    assert table.num_rows == 16
    rows = {(r["fast"], r["slow"]): r for r in table.to_pylist()}
    failed = rows.pop((15, 60))
    assert all(np.isnan(failed[m]) for m in ("final_equity", "total_return", "max_drawdown", "win_rate", "sharpe"))
    assert failed["n_trades"] == 0
    prepared = kernel.prepare(
        load_bars(shared_data / DATA_NAME), "sma_cross", BacktestSettings(initial_cash=5 * 10**15)
    )
    assert by_params(list(rows.values())) == {
        (f, s): kernel.run_many(prepared, [{"fast": f, "slow": s}])[0] for f, s in rows
    }
    assert (tmp_path / "report.html").exists()
    seen: list[SearchProgress] = []
    with pytest.warns(
        UserWarning, match=r"1 of the 16 parameter sets read back from results.csv could not be computed"
    ):
        again = grid_search(config, out=tmp_path, resume=True, progress=False, on_progress=seen.append)
    assert seen[-1].computed == 0 and seen[-1].resumed == 16
    np.testing.assert_equal(again.drop(["node"]).to_pylist(), table.drop(["node"]).to_pylist())  # NaN equal to NaN
