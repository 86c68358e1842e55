"""scripts/bench_l2book.py: the L2 depth benchmark counts exactly the diffs and levels the book applied."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from veloz_actors import InvalidInput
from veloz_actors.messages import Trade

from ..core.test_l2book import SPOT, _capture, _deltas, _synced_book

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_l2book.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_l2book", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_depth_counts_the_diffs_and_levels_it_applied(shared_data: Path) -> None:
    events = _capture(shared_data, SPOT)
    result = _script().bench_depth(shared_data / "ticks_l2" / SPOT, repeat=1, events=events)
    deltas = _deltas(events)
    book, diffs = _synced_book(deltas, "spot")
    replayed = book.diffs_applied
    assert result["diffs"] == replayed + len(diffs)
    assert result["level_updates"] == book.levels_applied + sum(len(d.bids) + len(d.asks) for d in diffs)
    assert result["level_updates_per_second"] > 0 and result["last_update_id"] == diffs[-1].last_update_id


def test_bench_depth_refuses_a_capture_without_a_snapshot(shared_data: Path) -> None:
    trades = [e for e in _capture(shared_data, SPOT) if isinstance(e, Trade)]
    with pytest.raises(InvalidInput, match="no depth snapshot"):
        _script().bench_depth(shared_data / "ticks_l2" / SPOT, repeat=1, events=trades)
