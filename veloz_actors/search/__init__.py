"""Parameter searches fanned out over Ray: grid, random and walk-forward, resumable, locally or on a cluster.

>>> import veloz_actors.search as search
>>> table = search.grid_search({
...     "data": "../shared/data/ohlcv/binance_spot_BTCUSDT_5m_20240301-20250702.csv.gz",
...     "strategy": "sma_cross",
...     "grid": {"fast": "5:20:1", "slow": "30:60:2"},
...     "constraints": ["fast < slow"],
... }, out="runs/sma")                                                  # doctest: +SKIP
>>> table.sort_by([("sharpe", "descending")]).slice(0, 5).to_pylist()  # doctest: +SKIP

The config, space, store and progress modules are pure; only :mod:`.runner` and :mod:`.runtime` import Ray, and only
when a search actually runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import ConfigError, quoted
from .config import (
    METRICS,
    RandomSearch,
    Range,
    SearchConfig,
    SettingsConfig,
    WalkForward,
    load_config,
    parse_grid_flag,
)
from .progress import ProgressBar, SearchProgress
from .space import ParameterSpace, walk_forward_windows
from .store import ResultStore

if TYPE_CHECKING:
    from collections.abc import Callable

    import pyarrow as pa

__all__ = [
    "METRICS",
    "ParameterSpace",
    "ProgressBar",
    "RandomSearch",
    "Range",
    "ResultStore",
    "SearchConfig",
    "SearchProgress",
    "SettingsConfig",
    "WalkForward",
    "grid_search",
    "load_config",
    "parse_grid_flag",
    "walk_forward_windows",
]


def grid_search(
    config: str | Path | dict[str, Any] | SearchConfig,
    address: str | None = None,
    *,
    max_workers: int | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_progress: Callable[[SearchProgress], None] | None = None,
) -> pa.Table:
    """Run a parameter search and return its results as a :class:`pyarrow.Table`, one row per parameter set.

    ``config`` is a YAML path, a dict or a :class:`SearchConfig`. ``address``: ``None`` (this process's Ray runtime if
    it has one, else a private local one with ``max_workers`` CPUs), ``"auto"``, ``"HOST:PORT"`` or
    ``"ray://HOST:PORT"``. With ``out``, rows stream to ``out/results.csv`` and ``out/results.parquet`` as they
    finish, ``out/report.html`` is written at the end (:mod:`.report`), and ``resume=True`` runs only the sets missing
    from ``results.csv``. The progress line goes to stderr;
    ``on_progress`` is called with a :class:`SearchProgress` after every chunk.

    Rows are sorted by the parameter columns (``results.csv`` keeps the order in which they finished). Columns: the
    parameters, ``final_equity, total_return, max_drawdown, n_trades, win_rate, sharpe``, ``node``. With a
    ``walk_forward`` section the table has one row per fold instead (see ``runner.run_walk_forward``).

    Raises :class:`~veloz_actors.ConfigError` (bad config, empty grid, unknown parameter, missing data file) and
    :class:`~veloz_actors.EngineUnavailable` (unreachable address) before any work starts. A random search that
    evaluates fewer sets than its budget says so with a :class:`UserWarning`.
    """
    import warnings

    from .runner import run_plan

    if not isinstance(config, str | os.PathLike | dict | SearchConfig):
        raise ConfigError(
            f"config must be a YAML path, a dict or a SearchConfig, got {type(config).__name__} {quoted(config)}"
        )
    if out is not None and not isinstance(out, str | os.PathLike):
        raise ConfigError(f"out must be a directory path or None, got {type(out).__name__} {quoted(out)}")
    for flag, value in (("resume", resume), ("progress", progress)):
        if not isinstance(value, bool):
            raise ConfigError(f"{flag} must be True or False, got {type(value).__name__} {quoted(value)}")
    if on_progress is not None and not callable(on_progress):  # else a TypeError after the first chunk of work
        raise ConfigError(
            f"on_progress must be a callable or None, got {type(on_progress).__name__} {quoted(on_progress)}"
        )

    outcome = run_plan(
        load_config(config),
        address=address,
        max_workers=max_workers,
        out=None if out is None else Path(out),
        resume=resume,
        progress=progress,
        on_progress=on_progress,
    )
    for message in outcome.warnings:
        warnings.warn(message, stacklevel=2)
    return outcome.table
