"""The parameter space, config parsing and the results store: pure, no Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from veloz_actors import ConfigError
from veloz_actors.search import ParameterSpace, ResultStore, load_config, parse_grid_flag, walk_forward_windows
from veloz_actors.search.config import Range

ROW = {"final_equity": 1.5, "total_return": 0.5, "max_drawdown": 0.1, "n_trades": 3, "win_rate": 0.25, "sharpe": 0.7}


def test_constraint_filters_the_product_in_order() -> None:
    space = ParameterSpace({"fast": (5, 10, 30), "slow": (10, 30)}, ["fast < slow"])
    assert list(space) == [{"fast": 5, "slow": 10}, {"fast": 5, "slow": 30}, {"fast": 10, "slow": 30}]
    assert len(space) == 3


def test_range_stop_is_inclusive() -> None:
    assert Range(start=30, stop=60, step=2).values()[-1] == 60
    assert Range(start=0.1, stop=0.3, step=0.1).values() == (0.1, 0.2, 0.3)


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


def _store(out: Path, resume: bool = False, data: str = "a.csv") -> ResultStore:
    return ResultStore(
        out, ["fast", "slow"], {"fast": (5, 6), "slow": (30,)}, resume=resume, fingerprint={"data": data}
    )


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
    _store(tmp_path).close()
    with pytest.raises(ConfigError, match="pass --resume"):
        _store(tmp_path)


def test_resume_refuses_a_different_search(tmp_path: Path) -> None:
    _store(tmp_path).close()
    with pytest.raises(ConfigError, match="different data"):
        _store(tmp_path, resume=True, data="b.csv")
