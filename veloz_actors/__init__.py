"""VeloZ: a crypto quant trading framework whose trading components are Ray actors passing immutable messages.

``import veloz_actors as vz`` gives the public API; ``__all__`` lists it and a test pins it.
"""

from __future__ import annotations

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

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "EngineUnavailable",
    "IllegalTransition",
    "InvalidInput",
    "JournalError",
    "SequenceGap",
    "VelozError",
    "__version__",
]
