"""The search commands through a tiny typer app (the main CLI registers the same commands)."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import typer
from click.testing import Result
from typer.testing import CliRunner

from tests.search.helpers import DATA_NAME
from veloz_actors.interfaces.search_cli import register


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _flags(shared_data: Path, *extra: str) -> list[str]:
    return ["grid-search", "--data", str(shared_data / DATA_NAME), "--strategy", "sma_cross", *extra]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--grid", "fast=5,10", "--grid", "slow=30", "--grid", "medium=3"], "no parameter 'medium'"),
        (["--grid", "fast=5:20"], "expected NAME=START:STOP:STEP"),
        (["--grid", "fast=5,10", "--grid", "slow=30", "--address", "127.0.0.1:1"], "cannot reach a Ray cluster"),
        (["--grid", "fast=5,10", "--grid", "slow=30", "--resume"], "--resume needs --out"),
        # the second flag would replace the first: a search over fast=20 alone, not over 5, 10 and 20
        (["--grid", "fast=5,10", "--grid", "slow=30", "--grid", "fast=20"], "--grid fast is given more than once"),
    ],
)
def test_bad_input_is_one_error_line(app: typer.Typer, shared_data: Path, extra: list[str], message: str) -> None:
    result = CliRunner().invoke(app, _flags(shared_data, *extra))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: {result.stderr.strip().removeprefix('error: ')}"]
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_missing_data_file_is_one_error_line(app: typer.Typer) -> None:
    result = CliRunner().invoke(
        app, ["grid-search", "--data", "/nope.csv", "--strategy", "sma_cross", "--grid", "fast=5"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: data file not found: /nope.csv"


@pytest.mark.ray
def test_grid_search_prints_the_top_k(app: typer.Typer, ray_runtime, shared_data: Path, tmp_path: Path) -> None:
    flags = _flags(shared_data, "--grid", "fast=5:15:5", "--grid", "slow=30,40", "--top", "2", "--out", str(tmp_path))
    result = CliRunner().invoke(app, flags)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["fast", "slow", "final_equity"]
    assert len(lines) == 3
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 7


def test_a_refused_search_leaves_no_files(app: typer.Typer, shared_data: Path, tmp_path: Path) -> None:
    flags = _flags(shared_data, "--grid", "fast=5:10:1", "--grid", "slow=20", "--max-workers", "0")
    result = CliRunner().invoke(app, [*flags, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --max-workers must be >= 1, got 0"
    assert not (tmp_path / "out").exists()


@pytest.mark.ray
def test_walk_forward_names_only_the_files_it_wrote(
    app: typer.Typer, ray_runtime, shared_data: Path, tmp_path: Path
) -> None:
    flags = _flags(shared_data, "--grid", "fast=5,10", "--grid", "slow=30", "--walk-forward", "3000:2000")
    result = CliRunner().invoke(app, [*flags, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    assert f"; wrote walk_forward.csv, walk_forward.parquet in {tmp_path}" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == [".lock", "walk_forward.csv", "walk_forward.parquet"]


@pytest.mark.ray
def test_a_random_search_short_of_its_budget_prints_a_warning(app: typer.Typer, ray_runtime, shared_data: Path) -> None:
    result = CliRunner().invoke(app, _flags(shared_data, "--grid", "fast=5,10", "--grid", "slow=30", "--random", "5"))
    assert result.exit_code == 0, result.stderr
    assert (
        "warning: random search: the space holds only 2 parameter sets (after constraints), fewer than the budget "
        "of 5; all 2 are evaluated"
    ) in result.stderr


def test_a_submitted_jobs_upload_leaves_secrets_and_the_ray_token_behind(tmp_path: Path) -> None:
    """What Ray's packer uploads for ``veloz submit`` (the working directory with ``_JOB_EXCLUDES``): the cluster's auth
    token under .veloz/, credentials files and private keys stay here (before: all of them went to the cluster)."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    from veloz_actors.interfaces.search_cli import _JOB_EXCLUDES

    files = [".veloz/aws/auth_token", "keys.env", ".env", ".env.live", "binance-ed25519.pem", "id.key",
             "runs/engine.journal", "configs/engine.yaml", "veloz_actors/kernel.py", "README.md"]  # fmt: skip
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    uploaded: list[str] = []
    _dir_travel(tmp_path, [_get_excludes(tmp_path, _JOB_EXCLUDES)],
                lambda p: uploaded.append(p.relative_to(tmp_path).as_posix()) if p.is_file() else None,
                include_gitignore=False)  # fmt: skip
    assert sorted(uploaded) == ["README.md", "configs/engine.yaml", "veloz_actors/kernel.py"]


def _random_config(tmp_path: Path, shared_data: Path) -> Path:
    path = tmp_path / "random.yaml"
    path.write_text(
        f"data: {shared_data / DATA_NAME}\nstrategy: sma_cross\ngrid: {{fast: '5:20:1', slow: [30, 40]}}\n"
        "random: {budget: 3, seed: 7}\n"
    )
    return path


@pytest.mark.ray
@pytest.mark.parametrize(
    ("flags", "random"),
    [(["--seed", "5"], {"budget": 3, "seed": 5}), (["--random", "4"], {"budget": 4, "seed": 7})],
    ids=["seed-alone", "budget-alone"],
)
def test_seed_and_random_flags_change_only_their_own_key_of_the_configs_random_search(
    app: typer.Typer, ray_runtime, shared_data: Path, tmp_path: Path, flags: list[str], random: dict
) -> None:
    """--seed was ignored without --random, and --random N reset the config's seed to 0: silently another sample."""
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["grid-search", str(_random_config(tmp_path, shared_data)), *flags, "--out", str(out), "--top", "0"]
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "search.json").read_text())["random"] == random


def test_seed_without_a_random_search_is_refused(app: typer.Typer, shared_data: Path) -> None:
    result = CliRunner().invoke(app, _flags(shared_data, "--grid", "fast=5,10", "--grid", "slow=30", "--seed", "5"))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --seed without a random search: add --random N (or a random: section with its budget)"
    )


class _Dashboard(http.server.BaseHTTPRequestHandler):
    """A Ray dashboard's HTTP side, over a real socket. With token auth (``server.token``) every path answers 401
    with the text of Ray 2.60's middleware, as for a user without the token; without, ``/api/version`` answers as
    Ray's does and every other path (a job's logs, their WebSocket) 404."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.token:  # type: ignore[attr-defined]
            code, body = 401, b"Unauthorized: Missing authentication token"
        elif self.path.startswith("/api/version"):
            code, body = 200, json.dumps({"version": "4", "ray_version": ray.__version__, "ray_commit": "x"}).encode()
        else:
            code, body = 404, b"Not Found"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _dashboard(*, token: bool) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Dashboard)
    server.token = token  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _one_error_line(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


def _one_set_search(shared_data: Path) -> list[str]:
    """The flags of a one-set search on the shared data (what a Jobs command is refused before it would run)."""
    return ["--data", str(shared_data / DATA_NAME), "--strategy", "sma_cross", "--grid", "fast=5", "--grid", "slow=30"]


@pytest.mark.parametrize(
    "command",
    [["jobs"], ["logs", "raysubmit_1"], ["logs", "raysubmit_1", "--follow"], ["submit", "--out", "/srv/veloz/runs"]],
    ids=["jobs", "logs", "logs-follow", "submit"],
)
def test_jobs_commands_on_a_token_auth_cluster_without_the_token_are_one_error_line_with_the_auth_hint(
    app: typer.Typer, shared_data: Path, command: list[str]
) -> None:
    """Ray's AuthenticationError (a RayError, not a RuntimeError) went out as a 17-frame traceback."""
    search = _one_set_search(shared_data)
    with _dashboard(token=True) as hostport:
        args = [*command, "--address", f"http://{hostport}", *(search if command[0] == "submit" else [])]
        line = _one_error_line(CliRunner().invoke(app, args))
    assert "Missing authentication token" in line
    assert line.endswith("RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)")


def test_following_logs_the_dashboard_refuses_is_one_error_line(app: typer.Typer) -> None:
    """The logs' WebSocket refused (an aiohttp error) went out as a traceback."""
    with _dashboard(token=False) as hostport:
        line = _one_error_line(
            CliRunner().invoke(app, ["logs", "raysubmit_1", "--follow", "--address", f"http://{hostport}"])
        )
    assert line.startswith("error: job raysubmit_1: 404")


def test_a_dashboard_url_is_parsed_and_its_userinfo_never_shown(app: typer.Typer) -> None:
    """A user:password@ dashboard URL was refused with the password echoed; a path prefix was refused."""
    with _dashboard(token=True) as hostport:  # reached through the userinfo and the prefix: the cluster's answer
        line = _one_error_line(CliRunner().invoke(app, ["jobs", "--address", f"http://me:secretpw@{hostport}/ray"]))
    assert "Missing authentication token" in line and "secretpw" not in line
    dead = _one_error_line(CliRunner().invoke(app, ["jobs", "--address", "http://me:secretpw@127.0.0.1:1"]))
    assert dead.startswith("error: cannot reach a Ray cluster at 127.0.0.1:1 (") and "secretpw" not in dead
    bad = _one_error_line(CliRunner().invoke(app, ["jobs", "--address", "ftp://me:secretpw@127.0.0.1:1"]))
    assert bad == "error: --address 'ftp://***@127.0.0.1:1': Ray Jobs need the dashboard address, http://HEAD:8265"


def test_an_https_dashboard_is_probed_on_port_443(app: typer.Typer) -> None:
    # nothing listens on 443 here: the probe names the port it tried (it was 80)
    line = _one_error_line(CliRunner().invoke(app, ["jobs", "--address", "https://127.0.0.1"]))
    assert line.startswith("error: cannot reach a Ray cluster at 127.0.0.1:443 (")


def test_submit_refuses_a_relative_out(app: typer.Typer, shared_data: Path) -> None:
    """The job runs in a temporary copy of the working directory: a relative --out wrote the results there."""
    search = _one_set_search(shared_data)
    line = _one_error_line(CliRunner().invoke(app, ["submit", *search, "--out", "runs/sma"]))
    assert "--out runs/sma: give a path on the head node, absolute" in line
