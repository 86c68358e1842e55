"""The search on the shared local Ray runtime: exact results, resume, clear errors before work, a killed worker."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.search.helpers import (
    BIG_DATA_NAME,
    DATA_NAME,
    by_params,
    command_line,
    descendant_pids,
    serial_results,
    small_config,
)
from veloz_actors import ConfigError, EngineUnavailable, InvalidInput
from veloz_actors.data.loaders import load_bars
from veloz_actors.search import ParameterSpace, SearchProgress, grid_search, load_config, walk_forward_windows
from veloz_actors.search.plan import make_plan

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
    assert set(before) == {"walk_forward.csv", "walk_forward.parquet"}
    other = {**config, "grid": {"fast": [5, 6], "slow": [40]}}
    with pytest.raises(ConfigError, match="walk_forward.csv already exists"):
        grid_search(other, out=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="--resume does not apply to a walk-forward search"):
        grid_search(other, out=tmp_path, resume=True, progress=False)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


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
