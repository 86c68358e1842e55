"""scripts/bench_core.py --count: the body callgrind counts runs the resting loops to the end, or only their set-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_core.py"


@pytest.mark.parametrize("extra", [[], ["--journal", "off"], ["--no-account-events"]])
@pytest.mark.parametrize("body", ["run", "skip"])
def test_the_counted_body_runs_and_exits_cleanly(body: str, extra: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--count", body, "--orders", "200", *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    # the run asserts every order closed and the ledger conserved before it leaves (os._exit(0))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # nothing of the full benchmark's report: only the loops (or none) ran


def test_the_counted_body_refuses_an_unknown_body() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--count", "walk"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2 and "invalid choice: 'walk'" in done.stderr
