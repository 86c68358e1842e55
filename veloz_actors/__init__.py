"""VeloZ: a crypto quant trading framework whose trading components are Ray actors passing immutable messages.

``import veloz_actors as vz`` gives the public API; ``__all__`` lists it and a test pins it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._exceptions import (
    ConfigError,
    DataError,
    EngineStopped,
    EngineUnavailable,
    IllegalTransition,
    InvalidInput,
    JournalError,
    SequenceGap,
    VelozError,
)

if TYPE_CHECKING:
    from .actors.api import EngineHandle, Subscription, connect, start_local
    from .backtest.api import run_backtest
    from .data.loaders import load_bars
    from .search import grid_search

__version__ = "0.1.0"

# Loaded on first use, so ``import veloz_actors`` stays light (the actor engine and searches import Ray).
_LAZY = {
    "EngineHandle": "veloz_actors.actors.api",
    "Subscription": "veloz_actors.actors.api",
    "connect": "veloz_actors.actors.api",
    "start_local": "veloz_actors.actors.api",
    "run_backtest": "veloz_actors.backtest.api",
    "load_bars": "veloz_actors.data.loaders",
    "grid_search": "veloz_actors.search",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'veloz_actors' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "DataError",
    "EngineHandle",
    "EngineStopped",
    "EngineUnavailable",
    "IllegalTransition",
    "InvalidInput",
    "JournalError",
    "SequenceGap",
    "Subscription",
    "VelozError",
    "__version__",
    "connect",
    "grid_search",
    "load_bars",
    "run_backtest",
    "start_local",
]
