"""The search commands through a tiny typer app (the main CLI registers the same commands)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
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
