"""The backtest pieces a search runs: the bar loader and the vectorised kernel (imported in one place)."""

from __future__ import annotations

from ..backtest import kernel
from ..data.loaders import load_bars

__all__ = ["kernel", "load_bars"]
