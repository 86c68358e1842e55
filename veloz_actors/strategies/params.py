"""The built-in bar strategies' parameter rules: their names, types and ranges, in one place.

The event-driven strategies (:mod:`veloz_actors.strategies.bar_strategies`), the vectorised kernel
(:mod:`veloz_actors.backtest.kernel`) and parameter searches all ask :func:`validate_params`, so what a strategy
accepts cannot drift between them.

* ``sma_cross(fast, slow)``: integer windows, ``1 <= fast < slow <= MAX_WINDOW``.
* ``rsi_reversion(period, lower, upper)``: integer ``1 <= period <= MAX_WINDOW``, numbers ``0 <= lower < upper <= 100``.

A window is at most :data:`MAX_WINDOW` (1,000,000) bars, checked before the data is read: the length of the longest
series VeloZ is measured on (the README's 1,000,000-bar benchmark; 9.5 years of 5-minute candles), far beyond any
window a strategy uses. The event-driven strategy holds a window of closes in memory (8 bytes each), so an unbounded
window was an 8 GB allocation at 10**9 and an ``OverflowError`` traceback at 10**29.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._exceptions import InvalidInput, quoted

__all__ = ["MAX_WINDOW", "VALID_STRATEGIES", "WARM_UP", "never_trading_warm_up", "validate_params"]

#: the longest window (in bars) a built-in strategy takes (see the module docstring)
MAX_WINDOW = 1_000_000

#: strategy name -> the parameter that sets its warm-up: its first signal is at bar ``t >= value`` and fills at
#: ``t + 1``, so on ``n`` bars a value of ``n - 1`` or more never trades
WARM_UP: dict[str, str] = {"sma_cross": "slow", "rsi_reversion": "period"}


def never_trading_warm_up(bars: int) -> int:
    """The smallest :data:`WARM_UP` value that never trades on ``bars`` bars (a signal at bar ``t >= value`` fills at
    ``t + 1``, which must be a bar)."""
    return bars - 1


# strategy name -> its parameter names, in order.
VALID_STRATEGIES: dict[str, tuple[str, ...]] = {
    "sma_cross": ("fast", "slow"),
    "rsi_reversion": ("period", "lower", "upper"),
}


def validate_params(strategy: str, params: dict[str, Any]) -> dict[str, int | float]:
    """Check a parameter set for ``strategy`` and return it normalised; raise :class:`InvalidInput` otherwise.

    >>> validate_params("sma_cross", {"fast": 10, "slow": 30})
    {'fast': 10, 'slow': 30}
    """
    if strategy not in VALID_STRATEGIES:
        raise InvalidInput(f"unknown strategy {strategy!r}; valid strategies: {', '.join(VALID_STRATEGIES)}")
    if not isinstance(params, dict):
        raise InvalidInput(f"{strategy}: parameters must be a dict, got {type(params).__name__}")
    names = VALID_STRATEGIES[strategy]
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise InvalidInput(
            f"{strategy}: unknown parameter(s) {', '.join(map(str, unknown))}; expected {', '.join(names)}"
        )
    missing = [name for name in names if name not in params]
    if missing:
        raise InvalidInput(f"{strategy}: missing parameter(s) {', '.join(missing)}")
    if strategy == "sma_cross":
        fast = _window(strategy, "fast", params["fast"])
        slow = _window(strategy, "slow", params["slow"])
        if fast >= slow:
            raise InvalidInput(f"sma_cross: fast ({fast}) must be smaller than slow ({slow})")
        return {"fast": fast, "slow": slow}
    period = _window(strategy, "period", params["period"])
    lower = _level(strategy, "lower", params["lower"])
    upper = _level(strategy, "upper", params["upper"])
    if not lower < upper:
        raise InvalidInput(f"rsi_reversion: lower ({lower}) must be below upper ({upper})")
    return {"period": period, "lower": lower, "upper": upper}


def _window(strategy: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInput(f"{strategy}: {name} must be an integer, got {quoted(value)}")
    if value < 1:
        raise InvalidInput(f"{strategy}: {name} must be >= 1, got {quoted(value)}")
    if value > MAX_WINDOW:
        raise InvalidInput(
            f"{strategy}: {name} must be at most {MAX_WINDOW:,} (bars; a longer window is refused before it takes "
            f"memory), got {quoted(value)}"
        )
    return int(value)


def _level(strategy: str, name: str, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InvalidInput(f"{strategy}: {name} must be a number, got {quoted(value)}")
    if not (0 <= value <= 100):  # also nan (never compares) and infinities; an int is never converted to float
        raise InvalidInput(f"{strategy}: {name} must be within 0..100, got {quoted(value)}")
    return value.item() if isinstance(value, np.generic) else value
