"""A search on a real two-node Ray cluster started on this machine by cluster/start-local.sh (1 CPU per node).

The cluster runs with authentication disabled (the test suite's RAY_AUTH_MODE) and without a dashboard, under
``tmp_path``; the search runs in a subprocess (one process can drive only one cluster, and this one drives the shared
test runtime), through the CLI, exactly as a user would type it.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.search.helpers import BIG_DATA_NAME, METRIC_COLUMNS
from veloz_actors.search import grid_search

pytestmark = [pytest.mark.ray, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]
GRID = {"fast": "5:20:1", "slow": [30, 40, 50, 60]}


@pytest.fixture
def two_node_cluster():
    state = Path(tempfile.mkdtemp(prefix="vzc-", dir="/tmp"))  # short: Ray's socket paths live under it
    env = {**os.environ, "VELOZ_CLUSTER_AUTH": "disabled", "VELOZ_CLUSTER_DASHBOARD": "0"}
    started = subprocess.run(
        [str(ROOT / "cluster" / "start-local.sh"), str(state)], env=env, capture_output=True, text=True, timeout=120
    )
    try:
        assert started.returncode == 0, started.stderr
        exports = dict(
            line.removeprefix("export ").split("=", 1) for line in (state / "env.sh").read_text().splitlines()
        )
        yield exports["VELOZ_RAY_ADDRESS"]
    finally:
        subprocess.run([str(ROOT / "cluster" / "stop-local.sh"), str(state)], capture_output=True, timeout=60)
        shutil.rmtree(state, ignore_errors=True)


def test_two_node_search_uses_both_nodes_and_equals_local(
    two_node_cluster: str, ray_runtime, shared_data: Path, tmp_path: Path
) -> None:
    data = shared_data / BIG_DATA_NAME
    out = tmp_path / "out"
    command = [sys.executable, "-m", "veloz_actors.interfaces.search_cli", "grid-search", "--data", str(data)]
    command += ["--strategy", "sma_cross", "--grid", "fast=5:20:1", "--grid", "slow=30,40,50,60"]
    command += ["--chunk-size", "4", "--address", two_node_cluster, "--out", str(out), "--top", "0"]
    run = subprocess.run(
        command, env={**os.environ, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    with (out / "results.csv").open() as handle:
        remote = list(csv.DictReader(handle))
    assert len({row["node"] for row in remote}) == 2
    local = grid_search({"data": str(data), "strategy": "sma_cross", "grid": GRID}, progress=False).to_pylist()
    assert len(remote) == len(local) == 64
    as_text = {
        (str(r["fast"]), str(r["slow"])): [repr(r[m]) if isinstance(r[m], float) else str(r[m]) for m in METRIC_COLUMNS]
        for r in local
    }
    assert {(r["fast"], r["slow"]): [r[m] for m in METRIC_COLUMNS] for r in remote} == as_text
