"""Shared test set-up.

Core, data, strategy and backtest tests must never start Ray: ``ray.init`` is replaced by a function that fails the
test (the pattern of Ray Serve's ``serve/tests/unit/conftest.py``). Tests of the actor layer use the one
session-scoped Ray runtime from ``tests/actors/conftest.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (ROOT.parent / "shared" / "data").resolve()

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

_PURE_DIRS = ("core", "data", "strategies", "backtest")


@pytest.fixture(autouse=True)
def _refuse_ray_in_pure_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = Path(str(request.node.fspath)).parts
    if not any(part in _PURE_DIRS for part in parts[-3:-1]):
        return
    ray = sys.modules.get("ray")
    if ray is None:
        return

    def _refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("core and backtest tests must not start Ray")

    monkeypatch.setattr(ray, "init", _refuse)


def pytest_configure(config: pytest.Config) -> None:
    # Many tests read the real data by its ../shared/data path: without it, say so once instead of 160 failures.
    if not SHARED_DATA.is_dir():
        raise pytest.UsageError(
            f"VeloZ's tests read the real Binance data in ../shared/data, not found at {SHARED_DATA}: "
            "clone the repository beside the shared/ folder"
        )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real Binance data shipped beside the repository (``../shared/data``)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared market data not found at {SHARED_DATA}")
    return SHARED_DATA


# The shared session-scoped Ray runtime (`ray_runtime`) for tests/actors and tests/search.
pytest_plugins = ["tests.ray_fixtures"]
