"""Engines on a real two-node Ray cluster started on this machine (``cluster/start-local.sh``, loopback, private
ports and temp dir): ``veloz start --address --detached``, ``attach`` from two processes, ``status``, ``stop``; a
detached engine whose OMS loses its node recovers every order on the other node from shared journals; with
node-local journals, an actor pinned to a node that is gone is reported (which actor, which node, what to do).

The cluster is stopped with ``cluster/stop-local.sh`` (its own process groups; ``stop-local.sh DIR worker`` takes one
node away), never ``ray stop``. One process can drive only one cluster, so the multi-step scenarios run in a driver
subprocess (``python -m tests.actors.test_cluster SCENARIO ...``, at the bottom of this file) that prints one JSON
object; the tests assert on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from veloz_actors._exceptions import ConfigError

from .helpers import ROOT

VELOZ = [sys.executable, "-m", "veloz_actors.interfaces.cli"]


@contextlib.contextmanager
def _local_cluster() -> Iterator[tuple[str, Path]]:
    """A two-node cluster from the project's scripts: (GCS address, state directory); stopped on exit."""
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
        yield exports["VELOZ_RAY_ADDRESS"], state
    finally:
        subprocess.run(["bash", str(ROOT / "cluster" / "stop-local.sh"), str(state)], capture_output=True, timeout=60)


class _Clusters:
    """The module's two-node clusters, started when a test first needs one (a start costs ~10 s, several times that
    on a loaded machine). A test that takes the worker node away is given the running cluster, which it then owns
    (stopped after it): the next test starts another."""

    def __init__(self) -> None:
        self._running: tuple[tuple[str, Path], contextlib.ExitStack] | None = None

    def intact(self) -> tuple[str, Path]:
        if self._running is None:
            stack = contextlib.ExitStack()
            self._running = stack.enter_context(_local_cluster()), stack
        return self._running[0]

    def take(self) -> tuple[tuple[str, Path], contextlib.ExitStack]:
        self.intact()
        assert self._running is not None
        running, self._running = self._running, None
        return running

    def close(self) -> None:
        if self._running is not None:
            self._running[1].close()


@pytest.fixture(scope="module")
def _clusters() -> Iterator[_Clusters]:
    clusters = _Clusters()
    try:
        yield clusters
    finally:
        clusters.close()


@pytest.fixture
def cluster_address(_clusters: _Clusters) -> str:
    """A two-node cluster with both nodes (an engine another test started there was stopped by that test)."""
    return _clusters.intact()[0]


@pytest.fixture
def losable_cluster(_clusters: _Clusters) -> Iterator[tuple[str, Path]]:
    """A two-node cluster of its own for a test that takes its worker node away: (address, state directory)."""
    cluster, stack = _clusters.take()
    with stack:
        yield cluster


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


# ------------------------------------------------------------------------------------------ losing a node


def test_node_local_pins_every_journaled_actor_and_shared_pins_only_what_is_named():
    from veloz_actors.actors.api import build_spec

    from .helpers import file_config

    local = build_spec(file_config(journal_mode="node-local"), journal_dir="/j")
    local = dataclasses.replace(local, journal_node="n-head", nodes={"oms": "n-worker"})
    assert local.pinned_nodes() == {
        "oms": "n-worker",
        "account": "n-head",
        "feed": "n-head",
        "venue:BTCUSDT": "n-head",
        "venue:ETHUSDT": "n-head",
    }
    assert local.placement("bus") is None  # no journal: wherever Ray puts it
    shared = build_spec(file_config(), journal_dir="/j")
    assert shared.journal_mode == "shared" and shared.pinned_nodes() == {} and shared.placement("oms") is None
    assert dataclasses.replace(shared, nodes={"bus": "n-head"}).pinned_nodes() == {"bus": "n-head"}
    with pytest.raises(ConfigError, match="journal_mode"):
        file_config(journal_mode="nfs").actor_settings()


UNSETTLED = {"SUBMITTED", "PENDING_CANCEL", "UNKNOWN"}


def _scenario(name: str, address: str, state: Path, journal_dir: Path) -> dict:
    """Run one driver scenario (below) in a subprocess against the cluster; its JSON result."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "tests.actors.test_cluster", name, address, str(state), str(journal_dir)],
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr.decode()[-4000:]
    return orjson.loads(done.stdout.splitlines()[-1])


def test_a_restarted_actor_refuses_a_journal_directory_without_its_engine_marker(tmp_path):
    """An actor Ray restarts on a node that does not see the shared journal directory must not start empty."""
    from veloz_actors import JournalError
    from veloz_actors.actors.spec import JOURNAL_MARKER, EngineSpec, mark_journal_dir, require_journal_dir

    spec = EngineSpec(name="marked", engine_config={}, journal_dir=str(tmp_path / "journals"))
    with pytest.raises(JournalError, match=r"actor 'oms' was restarted on .* does not see its journal directory"):
        require_journal_dir(spec.journal_dir, "oms", spec.name)
    mark_journal_dir(spec)
    assert (tmp_path / "journals" / JOURNAL_MARKER).read_text().strip() == "marked"
    require_journal_dir(spec.journal_dir, "oms", spec.name)  # the engine's own directory: no error
    require_journal_dir(None, "oms")  # no journals at all: nothing to check


def test_detached_engine_oms_moved_to_the_other_node_recovers_every_order(losable_cluster, tmp_path):
    address, state = losable_cluster
    result = _scenario("shared", address, state, tmp_path / "journals")

    # the OMS ran on the worker node, everything else on the head; it came back on the head, a new process
    assert result["oms_node_before"] == result["worker"] != result["head"]
    assert result["oms_node_after"] == result["head"]
    assert result["oms_restarts"] >= 1 and not result["old_oms_process_alive"]
    assert Path(result["journal_dir"]).parent == tmp_path / "journals"  # (one directory per engine tried)
    assert result["journals"] == {"mode": "shared", "dir": result["journal_dir"], "node_id": None}

    before, after = result["orders_before"], result["orders_after"]
    assert len(before) == result["placed"] and {o["status"] for o in before} >= {"FILLED", "ACCEPTED", "CANCELLED"}
    cids = [o["client_order_id"] for o in after]
    assert len(cids) == len(set(cids)) == len(before)  # every order exactly once
    assert after == before  # each in the same state, same fills
    assert not {o["status"] for o in after} & UNSETTLED
    assert result["balances_after"] == result["balances_before"]  # exactly, in 1e-8 units
    # new orders still work: a market order fills, a resting one is cancelled
    assert result["new_orders"] == {"n-market": "FILLED", "n-limit": "CANCELLED"}
    assert result["problems"] == []


def test_node_local_journal_actor_whose_node_is_gone_is_reported_clearly(losable_cluster, tmp_path):
    address, state = losable_cluster
    result = _scenario("node-local", address, state, tmp_path / "journals")
    worker = result["worker"]

    assert result["oms_pinned_before"] == worker and result["oms_node_before"] == worker
    assert result["journals"] == {"mode": "node-local", "dir": str(tmp_path / "journals"), "node_id": result["head"]}
    # after the worker left: STATUS answers, names the actor and the node, and says what to do
    (problem,) = result["problems"]
    assert "'oms'" in problem and worker in problem and "veloz stop" in problem
    oms = result["oms_after"]
    assert not oms["alive"] and oms["pinned_node"] == worker and not oms["node_alive"]
    assert all(a["alive"] for name, a in result["actors_after"].items() if name != "oms")
    # the Python handle fails at once with the same explanation, instead of retrying for a minute
    assert result["order_error"]["type"] == "EngineUnavailable" and worker in result["order_error"]["message"]
    assert result["order_error"]["seconds"] < 10

    # `veloz status` prints the status and the problem, and exits 1
    status = _veloz("status", "--address", address, "--name", "pinned")
    assert status.returncode == 1
    assert orjson.loads(status.stdout.splitlines()[-1])["problems"] == [problem]
    assert worker.encode() in status.stderr and b"Traceback" not in status.stderr
    assert _lines(_veloz("stop", "--address", address, "--name", "pinned"))[-1]["state"] == "stopped"


# ------------------------------------------------------------------------ the driver side of the scenarios


def _wait(predicate, *, timeout: float, what: str):
    from .helpers import wait_for

    return wait_for(predicate, timeout=timeout, what=what)


def _connect(address: str):
    import logging

    import ray

    ray.init(address=address, namespace="veloz", logging_level=logging.WARNING, log_to_driver=False)
    nodes = [n for n in ray.nodes() if n["Alive"]]
    (head,) = [n["NodeID"] for n in nodes if "node:__internal_head__" in n["Resources"]]
    (worker,) = [n["NodeID"] for n in nodes if n["NodeID"] != head]
    return head, worker


def _lose_worker(state: Path, worker: str) -> None:
    import ray

    stopped = subprocess.run(
        ["bash", str(ROOT / "cluster" / "stop-local.sh"), str(state), "worker"], capture_output=True, timeout=60
    )
    assert stopped.returncode == 0, stopped.stderr.decode()
    _wait(
        lambda: not any(n["Alive"] for n in ray.nodes() if n["NodeID"] == worker),
        timeout=60,
        what="the worker node to leave",
    )


def _commands(engine, count: int):
    """Market buys and sells (filled at once) and limit buys far below the market (resting); no order the moving
    market could fill later, so the state before and after the move must be equal."""
    from veloz_actors.fixed import format_decimal, parse_formatted

    mid = parse_formatted(engine.status()["reference_prices"]["BTCUSDT"])
    low = format_decimal(mid * 97 // 100 // 1_000_000 * 1_000_000)
    sides = [("BUY", "0.001", None), ("SELL", "0.0005", None), ("BUY", "0.001", low), ("BUY", "0.002", low)]
    return [engine.order_command("BTCUSDT", *sides[i % 4], client_order_id=f"s-{i}") for i in range(count)]


def _stream(engine, commands) -> None:
    """Send 20 commands at a time without waiting, then cancel some of the resting ones."""
    for start in range(0, len(commands), 20):
        batch = commands[start : start + 20]
        engine.complete([engine.submit_async(c) for c in batch], timeout=60)
        for c in batch[3::4]:
            engine.cancel_order(c.client_order_id)


def _orders(engine) -> list[dict]:
    return sorted(engine.orders(), key=lambda o: o["client_order_id"])


def _drive_shared(address: str, state: Path, journal_dir: Path) -> dict:
    import ray

    from veloz_actors.actors.api import build_spec, start_local
    from veloz_actors.actors.supervisor import RESTART_LIMIT
    from veloz_actors.fixed import format_decimal

    from .helpers import file_config

    head, worker = _connect(address)
    config = file_config()  # actors.journal_mode: shared (the default); one directory both nodes see
    names = [*build_spec(config).stateful_actors(), "bus", "supervisor"]
    nodes = dict.fromkeys((n for n in names if n != "oms"), head)  # all but the OMS pinned to the head node
    # Ray puts the unpinned OMS on either node: restart it until it runs on the worker. Each kill is a crash to the
    # supervisor, which gives an actor up after RESTART_LIMIT within its window, and losing the worker is one more:
    # an engine whose OMS has not reached the worker after RESTART_LIMIT - 1 kills is shut down and a fresh one tried
    for attempt in range(8):
        engine = start_local(
            config, name=f"moved-{attempt}", journal_dir=journal_dir / str(attempt), address=address, detached=True,
            run_clock=True, nodes=nodes,
        )  # fmt: skip
        oms = engine.actor("oms")
        for _ in range(RESTART_LIMIT - 1):
            if engine.status()["actors"]["oms"]["node_id"] == worker:
                break
            ray.kill(oms, no_restart=False)
            _wait(lambda e=engine: e.status()["actors"]["oms"]["node_id"], timeout=60, what="the OMS to restart")
        oms_node_before = engine.status()["actors"]["oms"]["node_id"]
        if oms_node_before == worker:
            break
        engine.shutdown()
    assert oms_node_before == worker, "the OMS never started on the worker node"
    old_pid, _ = ray.get(oms.ping.remote(), timeout=30)
    restarts_before = engine.status()["actors"]["oms"]["restarts"]
    commands = _commands(engine, 120)
    _stream(engine, commands)
    assert engine.settle(timeout=60)
    orders_before, balances_before = _orders(engine), engine.balances()

    _lose_worker(state, worker)

    seen: list[dict] = []

    def moved():
        status = engine.status()
        seen[:] = [{"supervisor_node": status["node_id"], **status["actors"]}]
        oms = status["actors"]["oms"]
        return oms["alive"] and oms["node_id"] == head and oms["restarts"] > restarts_before

    try:
        _wait(moved, timeout=90, what=f"the OMS to restart on the head node {head}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last STATUS: {seen}") from None
    assert engine.settle(timeout=60)
    orders_after, balances_after = _orders(engine), engine.balances()
    try:
        os.kill(old_pid, 0)
        old_alive = True
    except OSError:
        old_alive = False

    engine.place_order("BTCUSDT", "BUY", "0.001", client_order_id="n-market")
    engine.place_order("BTCUSDT", "BUY", "0.001", format_decimal(commands[2].price), client_order_id="n-limit")
    engine.cancel_order("n-limit")
    assert engine.settle(timeout=60)
    new_orders = {cid: engine.query(cid)[0]["status"] for cid in ("n-market", "n-limit")}
    status = engine.status()
    engine.shutdown()
    return {
        "head": head,
        "worker": worker,
        "oms_node_before": oms_node_before,
        "oms_node_after": status["actors"]["oms"]["node_id"],
        "oms_restarts": status["actors"]["oms"]["restarts"] - restarts_before,
        "old_oms_process_alive": old_alive,
        "journals": status["journals"],
        "journal_dir": str(journal_dir / str(attempt)),
        "problems": status["problems"],
        "placed": len(commands),
        "orders_before": orders_before,
        "orders_after": orders_after,
        "balances_before": balances_before,
        "balances_after": balances_after,
        "new_orders": new_orders,
    }


def _drive_node_local(address: str, state: Path, journal_dir: Path) -> dict:
    import time

    from veloz_actors._exceptions import EngineUnavailable
    from veloz_actors.actors.api import build_spec, start_local

    from .helpers import file_config

    head, worker = _connect(address)
    config = file_config(journal_mode="node-local")
    names = [*build_spec(config).stateful_actors(), "bus", "supervisor"]
    nodes = {**dict.fromkeys(names, head), "oms": worker}  # the OMS's journal "lives" on the worker
    engine = start_local(
        config, name="pinned", journal_dir=journal_dir, address=address, detached=True, run_clock=True, nodes=nodes
    )
    before = engine.status()
    engine.place_order("BTCUSDT", "BUY", "0.001", client_order_id="p-1")
    assert engine.settle(timeout=60)

    _lose_worker(state, worker)
    after = _wait(lambda: (s := engine.status())["problems"] and s, timeout=60, what="STATUS to report the problem")
    start = time.monotonic()
    try:
        engine.place_order("BTCUSDT", "BUY", "0.001", client_order_id="p-2")
        error = {"type": None, "message": "", "seconds": time.monotonic() - start}
    except EngineUnavailable as exc:
        error = {"type": type(exc).__name__, "message": str(exc), "seconds": time.monotonic() - start}
    return {
        "head": head,
        "worker": worker,
        "oms_pinned_before": before["actors"]["oms"]["pinned_node"],
        "oms_node_before": before["actors"]["oms"]["node_id"],
        "journals": after["journals"],
        "problems": after["problems"],
        "oms_after": after["actors"]["oms"],
        "actors_after": after["actors"],
        "order_error": error,
    }


if __name__ == "__main__":
    scenario, address_arg, state_arg, journal_arg = sys.argv[1:5]
    drive = {"shared": _drive_shared, "node-local": _drive_node_local}[scenario]
    out = drive(address_arg, Path(state_arg), Path(journal_arg))
    sys.stdout.buffer.write(orjson.dumps(out) + b"\n")
