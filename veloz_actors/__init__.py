"""VeloZ: a crypto quant trading framework whose trading components are Ray actors passing immutable messages.

``import veloz_actors as vz`` gives the public API; ``__all__`` lists it and a test pins it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._exceptions import (
    ConfigError,
    DataError,
    EngineUnavailable,
    IllegalTransition,
    InvalidInput,
    JournalError,
    SequenceGap,
    VelozError,
)

if TYPE_CHECKING:
    from .actors.api import EngineHandle, Subscription, connect, start_local

__version__ = "0.1.0"

# The actor engine's API imports Ray, so it is loaded on first use: ``import veloz_actors`` stays light.
_ACTOR_API = {"EngineHandle", "Subscription", "connect", "start_local"}


def __getattr__(name: str) -> Any:
    if name in _ACTOR_API:
        from .actors import api

        return getattr(api, name)
    raise AttributeError(f"module 'veloz_actors' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "DataError",
    "EngineHandle",
    "EngineUnavailable",
    "IllegalTransition",
    "InvalidInput",
    "JournalError",
    "SequenceGap",
    "Subscription",
    "VelozError",
    "__version__",
    "connect",
    "start_local",
]
