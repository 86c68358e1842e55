"""The parameter space, config parsing and the results store: pure, no Ray."""

from __future__ import annotations

import gzip
import itertools
import json
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.search.helpers import DATA_NAME
from veloz_actors import ConfigError, DataError, InvalidInput
from veloz_actors.search import ParameterSpace, ResultStore, load_config, parse_grid_flag, walk_forward_windows
from veloz_actors.search.config import Range
from veloz_actors.search.plan import fingerprint, make_plan
from veloz_actors.search.report import ranked_rows
from veloz_actors.search.space import MAX_GRID_SETS, FloatSteps
from veloz_actors.search.store import TopK

ROW = {"final_equity": 1.5, "total_return": 0.5, "max_drawdown": 0.1, "n_trades": 3, "win_rate": 0.25, "sharpe": 0.7}


def test_constraint_filters_the_product_in_order() -> None:
    space = ParameterSpace({"fast": (5, 10, 30), "slow": (10, 30)}, ["fast < slow"])
    assert list(space) == [{"fast": 5, "slow": 10}, {"fast": 5, "slow": 30}, {"fast": 10, "slow": 30}]
    assert len(space) == 3


def test_range_stop_is_inclusive() -> None:
    assert Range(start=30, stop=60, step=2).values()[-1] == 60
    assert tuple(Range(start=0.1, stop=0.3, step=0.1).values()) == (0.1, 0.2, 0.3)


def test_grid_flag_accepts_ranges_and_lists() -> None:
    assert parse_grid_flag("fast=5:20:5") == ("fast", Range(start=5, stop=20, step=5))
    assert parse_grid_flag("slow=30,40") == ("slow", [30, 40])


def test_random_sample_is_reproducible_and_distinct() -> None:
    space = ParameterSpace({"fast": tuple(range(2, 66)), "slow": tuple(range(70, 386, 5))}, ["fast < slow"])
    first, again = space.sample(100, seed=7), space.sample(100, seed=7)
    assert first == again
    assert len({(p["fast"], p["slow"]) for p in first}) == 100
    assert space.sample(100, seed=8) != first


def test_walk_forward_windows_roll_by_the_step() -> None:
    windows = walk_forward_windows(100, train_bars=40, test_bars=20, step_bars=20)
    assert [(w.train_start, w.train_stop, w.test_stop) for w in windows] == [(0, 40, 60), (20, 60, 80), (40, 80, 100)]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"data": "x.csv", "strategy": "sma_cross", "grid": {}}, "grid is empty"),
        ({"data": "x.csv", "strategy": "sma_cross", "grid": {"fast": []}}, "no values"),
        ({"data": "x.csv", "strategy": "sma_cross", "grid": {"fast": "5:1:1"}}, "range is empty"),
        ({"data": "x.csv", "strategy": "sma_cross", "grid": {"fast": [1]}, "metric": "profit"}, "unknown metric"),
        ({"data": "x.csv", "strategy": "sma_cross", "grid": {"fast": [1]}, "colour": 1}, "unknown key 'colour'"),
        ({"strategy": "sma_cross", "grid": {"fast": [1]}}, "missing required key 'data'"),
        (  # was numpy's ValueError traceback when the sample was drawn
            {"data": "x.csv", "strategy": "sma_cross", "grid": {"fast": [1]}, "random": {"budget": 5, "seed": -1}},
            "random.seed: Input should be greater than or equal to 0",
        ),
    ],
)
def test_bad_config_is_one_clear_error(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(raw)


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        ("fast << slow", "expected NAME OP NAME"),
        ("fast < medium", "'medium' is not a parameter"),
        ("1 < 2", "two numbers"),
    ],
)
def test_bad_constraint_is_rejected(constraint: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ParameterSpace({"fast": (1,), "slow": (2,)}, [constraint])


def _store(out: Path, resume: bool = False, data: str = "a.csv", **search: object) -> ResultStore:
    return ResultStore(
        out, ["fast", "slow"], {"fast": (5, 6), "slow": (30,)}, resume=resume, fingerprint={"data": data, **search}
    )


def _saved(out: Path, **search: object) -> dict[str, bytes]:
    """A finished two-row search in ``out``; returns every file's bytes, to show a refused resume changed none."""
    with _store(out, **search) as store:
        store.append([{"fast": 5, "slow": 30, **ROW, "node": "n1"}, {"fast": 6, "slow": 30, **ROW, "node": "n1"}])
    return {path.name: path.read_bytes() for path in out.iterdir()}


def test_resume_reads_back_rows_and_drops_a_torn_line(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        store.append([{"fast": 5, "slow": 30, **ROW, "node": "n1"}])
    with (tmp_path / "results.csv").open("a") as handle:
        handle.write("6,30,1.0,0.1")  # a driver killed mid-write
    with _store(tmp_path, resume=True) as store:
        assert store.is_done({"fast": 5, "slow": 30})
        assert not store.is_done({"fast": 6, "slow": 30})
        assert store.table().to_pylist() == [{"fast": 5, "slow": 30, **ROW, "node": "n1"}]


def test_existing_results_need_resume(tmp_path: Path) -> None:
    _saved(tmp_path)
    with pytest.raises(ConfigError, match="pass --resume"):
        _store(tmp_path)


def test_a_results_file_without_rows_does_not_block_a_new_search(tmp_path: Path) -> None:
    _store(tmp_path).close()  # a search stopped before its first result
    with _store(tmp_path) as store:
        store.append([{"fast": 5, "slow": 30, **ROW, "node": "n1"}])
    assert store.table().num_rows == 1


def test_resume_refuses_a_different_search(tmp_path: Path) -> None:
    _store(tmp_path).close()
    with pytest.raises(ConfigError, match="different data"):
        _store(tmp_path, resume=True, data="b.csv")


GRID = {"fast": [5, 6], "slow": [30]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"grid": {"fast": [5], "slow": [40]}}, "different grid for fast: 5, 6 (now 5)"),
        ({"constraints": ["fast < slow"]}, "different constraints: none (now fast < slow)"),
        (
            {"random": {"budget": 1, "seed": 0}},
            "different random sampling: none, the whole grid (now budget 1, seed 0)",
        ),
    ],
)
def test_resume_refuses_a_different_grid_and_changes_nothing(tmp_path: Path, change: dict, message: str) -> None:
    search = {"grid": GRID, "constraints": [], "random": None}
    before = _saved(tmp_path, **search)
    with pytest.raises(ConfigError, match=re.escape(f"holds a search with a {message}")):
        _store(tmp_path, resume=True, **{**search, **change})
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_resume_of_a_damaged_search_json_is_one_error_and_changes_nothing(tmp_path: Path) -> None:
    _saved(tmp_path)
    (tmp_path / "search.json").write_text('{"data": "a.cs')
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(DataError, match="search.json is damaged: not valid JSON"):
        _store(tmp_path, resume=True)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_resume_without_search_json_reads_the_rows_back_and_warns_they_were_not_checked(tmp_path: Path) -> None:
    _saved(tmp_path)
    with _store(tmp_path, resume=True) as store:
        assert store.warnings == []  # checked against search.json: nothing to say
    (tmp_path / "search.json").unlink()
    with _store(tmp_path, resume=True) as store:
        assert store.resumed_rows == 2
        assert len(store.warnings) == 1
        assert (
            f"{tmp_path} has no search.json, so the 2 results read back from results.csv could not be checked"
            in (store.warnings[0])
        )
    assert (tmp_path / "search.json").exists()  # written again: the next resume is checked


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"fast": (5, 7), "slow": (30,)}, "line 3: fast 6 is not one of this search's values of fast"),  # KeyError
        ({"fast": range(5, 10, 2), "slow": (30,)}, "line 3: fast 6 is not one of"),  # ranked in fast=7's place
        ({"fast": (5, 6), "slow": FloatSteps(25.5, 0.5, 3)}, "line 2: slow 30.0 is not one of"),
    ],
)
def test_resume_refuses_rows_of_another_grid_and_changes_nothing(tmp_path: Path, values: dict, message: str) -> None:
    """A results.csv without its search.json is trusted, with a warning, but a row outside this search's grid cannot
    be this search's: it crashed the ranking (a list) or took another set's place in it (a range)."""
    before = _saved(tmp_path)
    (tmp_path / "search.json").unlink()
    before.pop("search.json")
    with pytest.raises(DataError, match=re.escape(message)):
        ResultStore(tmp_path, ["fast", "slow"], values, resume=True, fingerprint={"data": "a.csv"})
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_float_steps_know_their_members() -> None:
    steps = FloatSteps(0.1, 0.1, 10**6)  # found by index: a range of 10**12 steps costs the same
    assert 0.3 in steps and 1e5 in steps and 0.1 in steps and 100000.1 not in steps
    assert 0.15 not in steps and 0.0 not in steps and float("nan") not in steps and "0.3" not in steps


def test_resume_of_a_bad_cell_names_the_line_and_keeps_the_parquet(tmp_path: Path) -> None:
    _saved(tmp_path)
    lines = (tmp_path / "results.csv").read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace("1.5", "abc", 1)
    (tmp_path / "results.csv").write_text("".join(lines))
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(DataError, match=r"results.csv line 3: final_equity 'abc' is not a number"):
        _store(tmp_path, resume=True)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def _config(**extra: object) -> dict:
    return {"data": "x.csv", "strategy": "sma_cross", "grid": {"fast": [5], "slow": [30]}, **extra}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"fee_rate": 1}, "settings.fee_rate 1 must be below 1 (a fraction of the notional: 0.001 is 0.1 %)"),
        ({"fee_rate": "2.5"}, "settings.fee_rate '2.5' must be below 1 (a fraction of the notional: 0.001 is 0.1 %)"),
        ({"slippage_bps": "0.00005"}, "settings.slippage_bps '0.00005' is finer than 1e-4 bps"),
        ({"slippage_bps": 20000}, "settings.slippage_bps 20000 must be below 10000 (100 % of the price)"),
    ],
)
def test_settings_are_checked_as_the_backtest_checks_them(settings: dict, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        load_config(_config(settings=settings)).settings.to_settings()
    assert str(caught.value) == message


def test_slippage_in_whole_ten_thousandths_of_a_bp_is_kept() -> None:
    settings = load_config(_config(settings={"slippage_bps": "2.5"})).settings.to_settings()
    assert settings.slippage_rate == 25_000  # 2.5 bps = 0.00025 in 1e-8 units


@pytest.mark.parametrize(
    "grid", [{"fast": [True, 5], "slow": [30]}, {"fast": {"start": 1, "stop": True}}, {"fast": False}]
)
def test_a_yes_no_grid_value_is_refused_naming_the_parameter(grid: dict) -> None:
    with pytest.raises(ConfigError, match="parameter 'fast': (true|false) is a yes/no value"):
        load_config(_config(grid=grid))


def test_huge_ranges_are_counted_not_expanded() -> None:
    values = load_config(_config(grid={"fast": "1:10000000000:1", "slow": "1:100000:1"})).parameter_values()
    space = ParameterSpace(values)
    assert space.product_size == len(space) == 10**15
    assert len(values["fast"]) == 10**10 and values["fast"][-1] == 10**10


def test_a_grid_above_the_limit_is_refused_with_its_size_before_any_work() -> None:
    config = load_config(_config(grid={"fast": "1:100000:1", "slow": "1:100000:1"}, constraints=["fast < slow"]))
    with pytest.raises(ConfigError) as caught:
        make_plan(config)  # the data file does not exist: the size is refused first, without counting the sets
    assert str(caught.value) == (
        f"the grid has 10,000,000,000 combinations (fast 100,000 x slow 100,000), more than the {MAX_GRID_SETS:,} a "
        "grid search runs: narrow it, or sample it with --random N (random: {budget: N} in a config)"
    )


def test_a_random_search_samples_a_huge_space_without_expanding_it() -> None:
    config = load_config(
        _config(
            grid={"fast": "1:1000000:1", "slow": "2:1000000:1", "extra": "0.5:1000000000:0.5"}, random={"budget": 5}
        )
    )
    space = ParameterSpace(config.parameter_values(), ["fast < slow"])
    assert space.product_size > 2**63  # indices beyond int64 too
    sample = space.sample(5, seed=1)
    assert len(sample) == 5 and all(p["fast"] < p["slow"] for p in sample)


def test_random_draws_that_fall_short_enumerate_a_space_small_enough() -> None:
    space = ParameterSpace({"fast": range(1, 1001), "slow": range(1, 1001)}, ["fast < slow", "fast == 500"])
    sets, complete = space.draw(50, seed=0)
    assert complete
    assert len(sets) == 50 and all(p["fast"] == 500 < p["slow"] for p in sets)


def test_random_draws_that_fall_short_in_a_huge_space_say_so() -> None:
    space = ParameterSpace({"a": range(1, 1001), "b": range(1, 1001), "c": range(1, 101)}, ["a == b"])
    sets, complete = space.draw(20, seed=0)
    assert not complete
    assert 0 < len(sets) < 20


def test_search_json_records_a_huge_range_by_its_ends() -> None:
    config = load_config(_config(grid={"fast": "1:1000000:1", "slow": [30]}, random={"budget": 5}))
    grid = json.loads(json.dumps(fingerprint(config)))["grid"]
    assert grid == {"fast": {"first": 1, "last": 1_000_000, "count": 1_000_000}, "slow": [30]}


def _bars_file(path: Path, shared_data: Path, rows: int) -> Path:
    """The first ``rows`` bars of the small real file, as a plain CSV (a file a person might update in place)."""
    with gzip.open(shared_data / DATA_NAME, "rt") as handle:
        path.write_text("".join(itertools.islice(handle, rows + 1)))
    return path


def _resume_store(out: Path, data: Path) -> ResultStore:
    """A store opened as ``run_plan`` opens it for the search of ``data``: its fingerprint records the data file."""
    plan = make_plan(load_config(_config(data=str(data))))
    return ResultStore(
        out,
        ["fast", "slow"],
        {"fast": (5,), "slow": (30,)},
        resume=True,
        fingerprint=fingerprint(plan.config, plan.bars),
    )


def test_resume_takes_the_same_data_file_moved_to_another_folder(tmp_path: Path, shared_data: Path) -> None:
    """A data folder moved (or mounted elsewhere on a cluster's head) between runs refused the resume as "a different
    data", the file's recorded contents unchanged: every result there was lost to a new --out."""
    (tmp_path / "a").mkdir()
    data = _bars_file(tmp_path / "a" / "binance_spot_BTCUSDT_1h_live.csv", shared_data, 300)
    with _resume_store(tmp_path / "out", data) as store:
        store.append([{"fast": 5, "slow": 30, **ROW, "node": "n1"}])
    moved = tmp_path / "b" / data.name
    moved.parent.mkdir()
    data.rename(moved)
    with _resume_store(tmp_path / "out", moved) as store:
        assert store.resumed_rows == 1
    assert json.loads((tmp_path / "out" / "search.json").read_text())["data"] == str(moved)
    renamed = moved.with_name("binance_spot_ETHUSDT_1h_live.csv")  # the symbol is read from the name
    moved.rename(renamed)
    with pytest.raises(ConfigError, match="holds a search with a different data"):
        _resume_store(tmp_path / "out", renamed)


def test_resume_refuses_data_changed_in_place_naming_what_changed(tmp_path: Path, shared_data: Path) -> None:
    data = _bars_file(tmp_path / "binance_spot_BTCUSDT_1h_live.csv", shared_data, 300)
    with _resume_store(tmp_path / "out", data) as store:
        store.append([{"fast": 5, "slow": 30, **ROW, "node": "n1"}])
    with _resume_store(tmp_path / "out", data) as store:  # the same file: resumed
        assert store.resumed_rows == 1
    _bars_file(data, shared_data, 200)  # the same path, other contents
    before = {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir()}
    with pytest.raises(ConfigError) as caught:
        _resume_store(tmp_path / "out", data)
    message = str(caught.value)
    assert "holds a search with a different data file contents" in message
    assert "300 bars 2023-01-01 00:00:00 to 2023-01-13 11:00:00" in message
    assert "(now " in message and "200 bars 2023-01-01 00:00:00 to 2023-01-09 07:00:00" in message
    assert {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir()} == before


def test_resume_of_a_search_json_from_before_data_contents_were_recorded_says_how_to_go_on(
    tmp_path: Path, shared_data: Path
) -> None:
    data = _bars_file(tmp_path / "binance_spot_BTCUSDT_1h_live.csv", shared_data, 300)
    plan = make_plan(load_config(_config(data=str(data))))
    old = ResultStore(tmp_path, ["fast", "slow"], {"fast": (5,), "slow": (30,)}, fingerprint=fingerprint(plan.config))
    with old as store:
        store.append([{"fast": 5, "slow": 30, **ROW, "node": "n1"}])
    with pytest.raises(ConfigError, match="was written by an older VeloZ that did not record the data file's contents"):
        _resume_store(tmp_path, data)
    (tmp_path / "search.json").unlink()  # the way out the message gives: resume unchecked, with a warning
    with _resume_store(tmp_path, data) as store:
        assert store.resumed_rows == 1 and len(store.warnings) == 1
    with _resume_store(tmp_path, data) as store:  # search.json now records the data: checked from here on
        assert store.resumed_rows == 1 and store.warnings == []


def test_ties_go_to_the_set_first_in_the_parameter_space_whatever_the_arrival_order() -> None:
    space = ParameterSpace({"fast": (10, 5, 7), "slow": range(40, 19, -10)})  # neither in ascending order
    rows = [{**p, **ROW, "node": "n1"} for p in space]
    rows[4]["sharpe"] = 0.9  # (5, 30): the best; every other set ties on 0.7
    rows[6]["sharpe"] = float("nan")  # (7, 40): last
    sets = [(r["fast"], r["slow"]) for r in rows]
    expected = [sets[4], *sets[:4], *sets[5:6], *sets[7:], sets[6]]
    table = pa.Table.from_pylist(rows)
    for seed in range(5):
        order = np.random.default_rng(seed).permutation(len(rows)).tolist()
        top = TopK(4, "sharpe", True, space=space)
        for i in order:  # one row per chunk, in a shuffled arrival order
            top.add([rows[i]])
        assert [(r["fast"], r["slow"]) for r in top.rows()] == expected[:4]
        ranked = ranked_rows(table.take(order), space, "sharpe", True, len(rows))
        assert [(r["fast"], r["slow"]) for r in ranked] == expected


def test_sets_below_min_trades_are_still_ranked_by_the_metric_among_themselves() -> None:
    """When no set trades enough (a quiet walk-forward training window), the choice is the best of the rest, not the
    set that happens to come first in the space."""
    space = ParameterSpace({"fast": (5, 10, 15, 20), "slow": (30,)})
    rows = [
        {**ROW, "fast": fast, "slow": 30, "sharpe": sharpe, "n_trades": trades}
        for fast, sharpe, trades in ((5, -2.0, 1), (10, 1.5, 3), (15, float("nan"), 2), (20, 0.5, 9))
    ]
    top = TopK(4, "sharpe", True, min_trades=9, space=space)
    top.add(rows)
    assert [r["fast"] for r in top.rows()] == [20, 10, 5, 15]  # enough trades first; then by Sharpe; NaN last
    lowest = TopK(4, "max_drawdown", False, min_trades=9, space=space)
    lowest.add({**r, "max_drawdown": 1.0 - r["fast"] / 100} for r in rows)
    assert [r["fast"] for r in lowest.rows()] == [20, 15, 10, 5]


def test_a_second_search_on_the_same_directory_is_refused_and_a_killed_one_leaves_no_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from veloz_actors.search import ResultStore\n"
            "store = ResultStore(__import__('pathlib').Path(sys.argv[1]), ['fast', 'slow'], "
            "{'fast': (5, 6), 'slow': (30,)}, fingerprint={'data': 'a.csv'})\n"
            "print('locked', flush=True); time.sleep(600)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(ConfigError, match=f"another search is writing {re.escape(str(tmp_path))}"):
            _store(tmp_path, resume=True)
    finally:
        holder.kill()
        holder.wait(timeout=60)
    with _store(tmp_path, resume=True) as store:  # the OS dropped the killed process's lock
        store.append([{"fast": 5, "slow": 30, **ROW, "node": "n1"}])
        with pytest.raises(ConfigError, match="another search is writing"):
            _store(tmp_path, resume=True)  # also within one process
    assert store.table().num_rows == 1


def test_a_running_search_leaves_the_previous_parquet_file_whole_until_it_ends(tmp_path: Path) -> None:
    _saved(tmp_path)
    with _store(tmp_path, resume=True) as store:
        store.append([{"fast": 7, "slow": 30, **ROW, "node": "n1"}] * 3000)  # past a Parquet row group
        assert pq.read_table(tmp_path / "results.parquet").num_rows == 2  # a reader sees the old file, never half
    assert pq.read_table(tmp_path / "results.parquet").num_rows == 3002


def test_the_store_keeps_no_key_per_computed_row(tmp_path: Path) -> None:
    """Only a resumed set is ever looked up; memory must not grow with every row computed (225 MiB per million)."""
    names = ["fast", "slow"]
    with ResultStore(tmp_path, names, {"fast": range(1, 101), "slow": range(1, 1001)}) as store:

        def append(fast: int) -> None:
            store.append([{"fast": fast, "slow": slow, **ROW, "node": "n" * 56} for slow in range(1, 1001)])

        append(1)
        append(2)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for fast in range(3, 51):
                append(fast)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(store) == 50_000
    assert grown < 2_000_000  # a key per row was about 10 MB here; the Parquet batch in hand is at most 2,048 rows


def test_a_search_config_with_a_key_written_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(f"data: {DATA_NAME}\nstrategy: sma_cross\nmetric: sharpe\nmetric: final_equity\n")
    with pytest.raises(ConfigError, match=r"not valid YAML \(duplicate key 'metric' \(first at line 3\) at line 4, "):
        load_config(path)


def test_an_unquoted_range_in_a_search_config_is_the_range_not_a_base_60_number(tmp_path: Path) -> None:
    """YAML 1.1 reads ``30:50:2`` as 30 x 3600 + 50 x 60 + 2: a one-set search on a window of 111,002 bars."""
    path = tmp_path / "grid.yaml"
    path.write_text(f"data: {DATA_NAME}\nstrategy: sma_cross\ngrid:\n  fast: 5:20:1\n  slow: 30:50:2\n")
    grid = load_config(path).grid
    assert grid == {"fast": Range(start=5, stop=20, step=1), "slow": Range(start=30, stop=50, step=2)}
    path.write_text(f"data: {DATA_NAME}\nstrategy: sma_cross\ngrid:\n  fast: 5:20\n  slow: [30, 40]\n")
    with pytest.raises(ConfigError, match=r"grid: '5:20': expected START:STOP:STEP"):
        load_config(path)


def test_a_metric_given_on_the_command_line_ranks_in_its_own_direction_not_the_config_s_mode() -> None:
    """A config ranking ``max_drawdown`` with ``mode: min`` and ``--metric sharpe`` on the command line ranked the
    lowest Sharpe first: the mode was meant for the config's own metric. It is dropped with it; the same metric given
    again, or a mode given with the metric, keeps it."""
    config = _config(metric="max_drawdown", mode="min")
    assert load_config(config).maximise is False
    assert load_config(config, overrides={"metric": "sharpe"}).maximise is True
    assert load_config(config, overrides={"metric": "max_drawdown"}).maximise is False
    assert load_config(config, overrides={"metric": "sharpe", "mode": "min"}).maximise is False
    assert load_config(_config(mode="min"), overrides={"metric": "sharpe"}).maximise is False  # the config's own metric
