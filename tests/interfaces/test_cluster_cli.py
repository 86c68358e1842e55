"""``veloz status / stop / attach / metrics / start --address``: an address with no Ray cluster behind it is a clean
``error:`` line within seconds (not minutes of Ray's retries, not a traceback); an engine that does not answer (still
starting, or stuck) is said so within seconds, and ``stop`` ends it; conflicting ``start`` flags are refused.
"""

from __future__ import annotations

import http.server
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
import ray

from veloz_actors.actors.api import NAMESPACE
from veloz_actors.actors.supervisor import supervisor_name

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "engine.yaml"


def _veloz(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI; a hang fails the test after ``timeout`` s instead of blocking the suite."""
    return subprocess.run(
        [sys.executable, "-m", "veloz_actors.interfaces.cli", *args],
        input="",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )


@pytest.mark.parametrize(
    "command",
    [["status"], ["stop"], ["attach"], ["metrics"], ["start", "--config", str(CONFIG), "--no-journal"]],
    ids=["status", "stop", "attach", "metrics", "start"],
)
def test_an_address_where_nothing_listens_fails_fast_and_cleanly(command: list[str]) -> None:
    result = _veloz(*command, "--address", "127.0.0.1:1")  # (it ran for minutes: _veloz's timeout fails a hang)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("error: cannot reach a Ray cluster at 127.0.0.1:1 (")
    assert "Traceback" not in result.stderr and "GCS" not in result.stderr


def test_an_address_with_a_password_is_shown_without_it() -> None:
    result = _veloz("status", "--address", "ray://me:secretpw@127.0.0.1:1")
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot reach a Ray cluster at ray://***@127.0.0.1:1 (")
    assert "secretpw" not in result.stderr


@pytest.mark.parametrize("command", [["status"], ["start", "--config", str(CONFIG), "--no-journal"]])
def test_an_address_where_a_web_server_listens_fails_fast_and_says_so(command: list[str]) -> None:
    """A wrong port (the dashboard's 8265, any web server) kept Ray's client retrying for minutes."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{server.server_address[1]}"
    try:
        result = _veloz(*command, "--address", address)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"error: {address} is not a Ray cluster (it answered b'")  # its error page
    assert "give the cluster address HOST:6379" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["status"], ["start", "--config", str(CONFIG), "--no-journal"]])
def test_a_malformed_address_is_a_clean_error(command: list[str]) -> None:
    result = _veloz(*command, "--address", "nonsense")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("error: --address 'nonsense': ")
    assert "expected auto, HOST:PORT or ray://HOST:PORT" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--detached"], "--detached, --address and --name are for the actor engine"),
        (["--address", "auto"], "--detached, --address and --name are for the actor engine"),
        (["--name", "paper"], "--detached, --address and --name are for the actor engine"),
        (["--journal", "x.journal", "--no-journal"], "choose --journal x.journal or --no-journal, not both"),
    ],
)
def test_start_single_process_refuses_flags_it_would_ignore(flags: list[str], message: str) -> None:
    result = _veloz("start", "--single-process", "--config", str(CONFIG), *flags)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("error: ") and message in result.stderr


def test_start_single_process_refuses_configured_strategies_it_would_not_run(tmp_path: Path) -> None:
    """The single-process engine hosts no live strategy: started with one configured it would trade without it."""
    text = CONFIG.read_text()
    assert "    strategies: []" in text
    config = tmp_path / "engine.yaml"
    config.write_text(text.replace("    strategies: []", "    strategies: [{strategy: sma_cross, symbol: BTCUSDT, "
                                   "params: {fast: 10, slow: 30}}]"))  # fmt: skip
    result = _veloz("start", "--single-process", "--no-market", "--no-journal", "--config", str(config))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("error: ") and "actors.strategies (sma_cross on BTCUSDT)" in result.stderr


def test_start_single_process_says_a_journal_directory_is_a_directory(tmp_path: Path) -> None:
    result = _veloz("start", "--single-process", "--no-market", "--config", str(CONFIG), "--journal", str(tmp_path))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"error: --journal {tmp_path} is a directory; ")


def test_a_bad_durability_is_refused_before_the_run_folder_is_made(tmp_path: Path) -> None:
    journal = tmp_path / "run" / "engine.journal"
    result = _veloz("start", "--single-process", "--config", str(CONFIG), "--journal", str(journal),
                    "--durability", "sometimes")  # fmt: skip
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "error: --durability must be always, group or none, got 'sometimes'\n"
    assert not (tmp_path / "run").exists()  # no run folder, no veloz.log


class _StartingSupervisor:
    """An engine's supervisor as a client sees it while its start takes minutes (a restarted engine whose actors
    recover long journals, or wait up to 60 s each for the journal lock a predecessor still holds): it answers
    nothing until its constructor returns."""

    def __init__(self) -> None:
        threading.Event().wait(600)  # (the test ends it)

    def handles(self) -> dict[str, object]:  # what a client asks first (never answered here)
        return {}


def test_an_engine_that_does_not_answer_is_said_so_by_status_and_ended_by_stop(ray_runtime, tmp_path: Path) -> None:
    """``status`` and ``stop`` waited up to 510 s for an engine still starting (or stuck) without a word, and
    ``stop`` could not end it."""
    name = f"starting-{tmp_path.name}"
    supervisor = (
        ray.remote(_StartingSupervisor)
        .options(name=supervisor_name(name), namespace=NAMESPACE, num_cpus=0, max_restarts=0)
        .remote()
    )
    try:
        address = ray_runtime.gcs_address
        status = _veloz("status", "--address", address, "--name", name, timeout=120)  # (510 s before)
        assert (status.returncode, status.stdout) == (2, "")
        assert status.stderr.startswith(f"error: engine {name!r} did not answer within ")
        assert "still starting" in status.stderr and "Traceback" not in status.stderr

        stop = _veloz("stop", "--address", address, "--name", name, timeout=120)
        assert orjson.loads(stop.stdout) == {"type": "status", "name": name, "state": "killed"}
        assert stop.returncode == 1 and "did not answer within " in stop.stderr and "Traceback" not in stop.stderr
        gone = _veloz("status", "--address", address, "--name", name, timeout=120)
        assert gone.returncode == 2 and f"no engine named {name!r}" in gone.stderr
    finally:
        ray.kill(supervisor, no_restart=True)


def test_attach_to_an_engine_stopped_elsewhere_says_so_once_and_exits(ray_runtime) -> None:
    """Once another process ran ``veloz stop`` (or another handle shut the engine down), ``attach`` printed
    ENGINE_UNAVAILABLE twice a second for ever: a stopped engine never comes back, unlike one whose actors Ray
    restarts (still waited for, ``tests/interfaces/test_stdio.py``)."""
    address = ray_runtime.gcs_address
    started = _veloz("start", "--address", address, "--detached", "--no-journal", timeout=120)  # named "default"
    assert started.returncode == 0, started.stderr
    attach = subprocess.Popen(
        [sys.executable, "-m", "veloz_actors.interfaces.cli", "attach", "--address", address],
        stdin=subprocess.PIPE,  # kept open: the end of input would end the session by itself
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    printed: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [printed.put(line) for line in attach.stdout or ()], daemon=True)
    reader.start()
    try:
        assert orjson.loads(printed.get(timeout=120))["state"] == "started"
        stop = _veloz("stop", "--address", address, timeout=120)
        assert stop.returncode == 0, stop.stderr
        try:
            code = attach.wait(timeout=60)
        except subprocess.TimeoutExpired:
            said = sum("ENGINE_UNAVAILABLE" in line for line in printed.queue)
            pytest.fail(f"attach went on after its engine stopped, saying ENGINE_UNAVAILABLE {said} times")
    finally:
        attach.kill()
        attach.wait(30)
    reader.join(30)
    lines = [orjson.loads(line) for line in printed.queue]
    assert not [line for line in lines if line.get("code") == "ENGINE_UNAVAILABLE"], lines
    assert lines[-1]["state"] == "stopped"
    stderr = attach.stderr.read() if attach.stderr else ""
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and code == 2, stderr
    assert errors[0].startswith("error: engine 'default' has stopped (shut down by another handle or `veloz stop`")
    assert "Traceback" not in stderr


def test_an_engine_started_under_a_name_is_found_by_that_name_and_no_other(ray_runtime) -> None:
    """``veloz start --name`` (two engines on one cluster, each with its own journal): ``status``, ``attach`` and
    ``stop`` take the name; the default name does not reach it."""
    address = ray_runtime.gcs_address
    started = _veloz("start", "--address", address, "--detached", "--no-journal", "--name", "named-cli", timeout=120)
    assert started.returncode == 0, started.stderr
    assert orjson.loads(started.stdout.splitlines()[-1])["name"] == "named-cli"
    try:
        status = _veloz("status", "--address", address, "--name", "named-cli", timeout=120)
        assert status.returncode == 0, status.stderr
        assert orjson.loads(status.stdout)["name"] == "named-cli"
        other = _veloz("status", "--address", address, timeout=120)  # "default": none runs
        assert other.returncode == 2 and "default" in other.stderr and "named-cli" not in other.stdout
    finally:
        stopped = _veloz("stop", "--address", address, "--name", "named-cli", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(ValueError):  # its supervisor is gone from the namespace
        ray.get_actor(supervisor_name("named-cli"), namespace=NAMESPACE)
