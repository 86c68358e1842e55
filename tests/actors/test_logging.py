"""Structured logs on the actor engine: every actor process writes its own file in the run folder, and the OMS actor
logs the order lifecycle with the order's numbers (``veloz_actors/logs.py``)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import ray

from veloz_actors.actors.api import start_local
from veloz_actors.config import with_logging

from .helpers import file_config, wait_for

pytestmark = pytest.mark.usefixtures("ray_runtime")


def _lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_each_actor_logs_to_a_file_of_its_own_and_the_oms_logs_the_fill(tmp_path: Path) -> None:
    config = with_logging(file_config(), format="json", level="INFO")
    engine = start_local(config, name="test-logging", journal_dir=tmp_path / "engine.journal.actors")
    try:
        assert engine.spec.logging is not None and engine.spec.logging.file == str(tmp_path / "veloz.log")
        engine.tick()  # the market maker quotes
        engine.place_order("BTCUSDT", "BUY", "0.01", client_order_id="actor-log-1")
        oms_log = tmp_path / "veloz-oms.log"
        fill = wait_for(
            lambda: next((x for x in _lines(oms_log) if x["msg"] == "order filled"), None),
            what="the OMS actor's line for the fill",
        )
        assert fill["level"] == "INFO" and fill["actor"] == "oms" and fill["logger"] == "veloz.oms"
        assert fill["cid"] == "actor-log-1" and fill["qty"] == "0.01" and fill["symbol"] == "BTCUSDT"
        accepted = [x for x in _lines(oms_log) if x["msg"] == "order accepted"]
        assert [x["cid"] for x in accepted] == ["actor-log-1"]
        expected = {"veloz-oms.log", "veloz-supervisor.log", "veloz-feed.log", "veloz-bus.log", "veloz-account.log"}
        expected |= {f"veloz-venue-{symbol}.log" for symbol in ("BTCUSDT", "ETHUSDT")}
        assert expected <= {p.name for p in tmp_path.glob("veloz-*.log")}
        assert not (tmp_path / "veloz.log").exists()  # the driver's file is the CLI's: this driver is a test
    finally:
        engine.shutdown()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device whose writes fail ENOSPC")
def test_an_actors_log_file_that_refuses_lines_shows_its_count_in_status_and_the_metrics(tmp_path: Path) -> None:
    """The OMS's file on a full disk (``/dev/full`` behind its name): STATUS ``logs.oms`` names the file, counts the
    lines it lost and says why; the Prometheus exporter shows the same count; the other actors' files are fine."""
    from prometheus_client import CollectorRegistry, generate_latest

    from veloz_actors.interfaces.metrics import EngineCollector

    oms_log = tmp_path / "veloz-oms.log"
    oms_log.symlink_to("/dev/full")
    config = with_logging(file_config(), format="json", level="INFO")
    engine = start_local(config, name="test-log-drops", journal_dir=tmp_path / "engine.journal.actors")
    try:
        engine.tick()
        engine.place_order("BTCUSDT", "BUY", "0.01", client_order_id="log-drop-1")  # accepted, filled: OMS lines

        def refused() -> dict | None:
            status = engine.status()
            return status if status["logs"]["oms"]["dropped"] >= 2 else None

        status = wait_for(refused, what="the OMS's refused lines in STATUS")
        logs = status["logs"]
        assert logs["oms"]["file"] == str(oms_log)
        assert logs["oms"]["failing"] == "No space left on device"
        assert logs["supervisor"] == {"file": str(tmp_path / "veloz-supervisor.log"), "dropped": 0, "failing": None}
        assert {"oms", "bus", "feed", "account", "venue:BTCUSDT", "supervisor"} <= set(logs)
        assert all("log" not in venue for venue in status["venues"].values())  # said once, under logs
        registry = CollectorRegistry(auto_describe=False)
        registry.register(EngineCollector(engine.status, None))  # type: ignore[arg-type]
        lines = generate_latest(registry).decode().splitlines()
        [oms_line] = [x for x in lines if x.startswith('veloz_log_dropped_lines_total{actor="oms"')]
        assert oms_line.startswith(f'veloz_log_dropped_lines_total{{actor="oms",file="{oms_log}"}} ')
        assert float(oms_line.split()[-1]) >= logs["oms"]["dropped"]
        assert f'veloz_log_file_failing{{actor="oms",file="{oms_log}"}} 1.0' in lines
        assert f'veloz_log_file_failing{{actor="bus",file="{tmp_path / "veloz-bus.log"}"}} 0.0' in lines
    finally:
        engine.shutdown()


def test_an_actor_restarted_where_its_log_file_cannot_be_opened_runs_on_and_status_says_why(tmp_path: Path) -> None:
    """A restarted actor opens its log file first: one it could not open any more (here a folder in its place; a
    full inode table after a rotation, permissions changed under it) raised in its constructor, and Ray never
    restarts an actor whose constructor raised, so the engine lost the actor for good over a log file. It now logs to
    stderr (Ray's worker log) at the file's level and STATUS ``logs`` says why the file is not written."""
    config = with_logging(file_config(), format="json", level="INFO")
    engine = start_local(config, name="test-log-reopen", journal_dir=tmp_path / "engine.journal.actors")
    try:
        feed_log = tmp_path / "veloz-feed.log"
        feed_log.unlink()
        feed_log.mkdir()
        ray.kill(engine.actor("feed"), no_restart=False)

        def back() -> dict | None:
            status = engine.status()
            feed = status["actors"]["feed"]
            return status if feed["alive"] and feed["restarts"] >= 1 else None

        status = wait_for(back, timeout=60, what="the feed to come back")
        assert status["logs"]["feed"] == {"file": str(feed_log), "dropped": 0, "failing": "Is a directory"}
        assert status["state"] == "running"
    finally:
        engine.shutdown()


def test_actors_a_restarted_supervisor_rebuilds_where_their_log_files_cannot_be_opened_run_on(tmp_path: Path) -> None:
    """A supervisor Ray restarted builds its actors again (they die with it): the bus, a strategy and the risk actor
    took it as a first start and raised over a log file they could not open, so the new supervisor's constructor
    raised and the engine was gone for good. Every actor now has the one rule of a Ray restart: stderr, and STATUS
    ``logs`` says why."""
    sma = {"strategy": "sma_cross", "params": {"fast": 2, "slow": 4}, "symbol": "BTCUSDT", "bar_ms": 1000}
    config = with_logging(file_config(strategies=[sma], risk=True), format="json", level="INFO")
    engine = start_local(config, name="test-log-rebuild", journal_dir=tmp_path / "engine.journal.actors")
    try:
        broken = {name: tmp_path / f"veloz-{label}.log" for name, label in
                  (("bus", "bus"), ("strategy:0:sma_cross", "strategy-0-sma_cross"), ("risk", "risk"), ("oms", "oms"))}  # fmt: skip
        for path in broken.values():
            path.unlink()
            path.mkdir()
        ray.kill(engine._supervisor, no_restart=False)  # its actors die with it; Ray restarts it, it rebuilds them

        def rebuilt() -> dict | None:
            status = engine.status()
            return status if status["supervisor_restarts"] >= 1 else None

        status = wait_for(rebuilt, timeout=120, what="the supervisor to rebuild its actors")
        assert status["state"] == "running" and status["problems"] == []
        assert all(actor["alive"] for actor in status["actors"].values()), status["actors"]
        for name, path in broken.items():
            assert status["logs"][name] == {"file": str(path), "dropped": 0, "failing": "Is a directory"}, name
    finally:
        engine.shutdown()
