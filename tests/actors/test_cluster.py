"""Engines on a real two-node Ray cluster started on this machine (``cluster/start-local.sh``, loopback, private
ports and temp dir): ``veloz start --address --detached``, ``attach`` from two processes, ``status``, ``stop``.

The cluster is stopped with ``cluster/stop-local.sh`` (its own process groups), never ``ray stop``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest

from .helpers import ROOT

VELOZ = [sys.executable, "-m", "veloz_actors.interfaces.cli"]


@pytest.fixture(scope="module")
def cluster_address():
    state = Path(tempfile.gettempdir()) / f"vz-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, VELOZ_CLUSTER_AUTH="disabled", VELOZ_CLUSTER_DASHBOARD="0", RAY_AUTH_MODE="disabled")
    started = subprocess.run(
        ["bash", str(ROOT / "cluster" / "start-local.sh"), str(state)], env=env, capture_output=True, timeout=120
    )
    try:
        assert started.returncode == 0, started.stderr.decode()[-2000:]
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (state / "env.sh").read_text().splitlines()
            if line.startswith("export ")
        )
        yield exports["VELOZ_RAY_ADDRESS"]
    finally:
        subprocess.run(["bash", str(ROOT / "cluster" / "stop-local.sh"), str(state)], capture_output=True, timeout=60)


def _veloz(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT))
    return subprocess.run([*VELOZ, *args], input=stdin.encode(), capture_output=True, cwd=ROOT, env=env, timeout=120)


def _lines(done: subprocess.CompletedProcess) -> list[dict]:
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def test_detached_engine_outlives_its_driver_and_is_attached_stopped_by_address(cluster_address):
    started = _lines(_veloz("start", "--address", cluster_address, "--detached", "--no-journal"))
    assert started[-1]["state"] == "started" and started[-1]["detached"]

    status = _lines(_veloz("status", "--address", cluster_address))[-1]
    assert status["engine"] == "actors" and status["state"] == "running"
    assert all(actor["alive"] for actor in status["actors"].values())

    # the feed actor ticks the simulated market by itself: a market order finds liquidity
    first = _lines(_veloz("attach", "--address", cluster_address, stdin="ORDER BUY BTCUSDT 0.01 MARKET cid=c1\n"))
    assert any(e["type"] == "fill" and e["cid"] == "c1" for e in first)
    # a second session, another process: the same engine, the order still there
    second = _lines(_veloz("attach", "--address", cluster_address, stdin="QUERY c1\nBALANCE\nQUIT\n"))
    (state,) = [e for e in second if e["type"] == "order_state"]
    assert state["orders"][0]["status"] == "FILLED"

    # its Prometheus metrics, served from another process on loopback
    exporter = subprocess.Popen(
        [*VELOZ, "metrics", "--address", cluster_address, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT)),
    )
    try:
        url = orjson.loads(exporter.stdout.readline())["metrics"]
        assert url.startswith("http://127.0.0.1:")
        text = urllib.request.urlopen(url, timeout=30).read().decode()
        assert 'veloz_actor_up{actor="oms"} 1.0' in text and "veloz_orders_total 1.0" in text
    finally:
        exporter.terminate()
        assert exporter.wait(timeout=30) == 0

    stopped = _lines(_veloz("stop", "--address", cluster_address))
    assert stopped[-1]["state"] == "stopped"
    gone = _veloz("status", "--address", cluster_address)
    assert gone.returncode != 0
    assert b"no engine named 'default'" in gone.stderr
    assert b"Traceback" not in gone.stderr
