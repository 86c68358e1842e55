"""Shared helpers of the actor tests: configs and polling with a deadline (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from veloz_actors.config import EngineFileConfig, load_engine_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "engine.yaml"

T = TypeVar("T")


def file_config(**actors: Any) -> EngineFileConfig:
    """The shipped engine config, with an ``actors:`` section and a generous order rate limit for tests."""
    config = load_engine_config(CONFIG)
    risk = config.risk.model_copy(update={"orders_per_second": 100_000, "burst": 100_000})
    return config.model_copy(update={"actors": dict(actors), "risk": risk})


def wait_for(predicate: Callable[[], T], *, timeout: float = 30.0, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy, with a deadline and a short back-off."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
