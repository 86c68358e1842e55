"""The built-in strategies, event-driven: ``sma_cross`` and ``rsi_reversion``.

Their rules are exactly those of :mod:`veloz_actors.backtest.kernel` (see its docstring), their parameters those of
:mod:`veloz_actors.strategies.params`; the kernel is the vectorised twin used for sweeps, and ``tests/backtest/test_engine_agreement.py`` proves both give the same trades on real data.
Here each rule is applied bar by bar with exact integer state, the way a live engine will drive them.
"""

from __future__ import annotations

from typing import Any

from .._exceptions import InvalidInput
from .base import Bar, Strategy, StrategyContext
from .params import validate_params

__all__ = ["STRATEGIES", "RsiReversion", "SmaCross", "make_strategy"]


class SmaCross(Strategy):
    """Long when the fast SMA crosses above the slow one, flat when it crosses below (exact integer comparison)."""

    PARAMETERS = {"fast": int, "slow": int}

    def __init__(self, fast: int, slow: int) -> None:
        params = validate_params("sma_cross", {"fast": fast, "slow": slow})
        self.fast = int(params["fast"])
        self.slow = int(params["slow"])
        self._closes: list[int] = [0] * self.slow  # padded so the bar leaving each window always exists
        self._sum_fast = 0
        self._sum_slow = 0
        self._prev = 0  # sign of fast - slow at the previous bar: -1, 0, 1

    def on_bar(self, bar: Bar) -> None:
        closes = self._closes
        close = bar.close
        closes.append(close)
        end = len(closes)
        fast, slow = self.fast, self.slow
        sum_fast = self._sum_fast = self._sum_fast + close - closes[end - 1 - fast]
        sum_slow = self._sum_slow = self._sum_slow + close - closes[end - 1 - slow]
        t = end - 1 - slow  # this bar's index in the series
        if t < slow - 1:
            return
        left, right = slow * sum_fast, fast * sum_slow
        sign = (left > right) - (left < right)
        prev, self._prev = self._prev, sign
        if t < slow or sign == prev:
            return
        ctx = self.ctx
        symbol = bar.symbol
        if sign > 0 and prev <= 0:
            if ctx.sellable(symbol) == 0:  # flat, or dust no sell could take
                ctx.buy_market(symbol, quote_qty=ctx.free(ctx.quote_asset(symbol)))
        elif sign < 0 and prev >= 0:
            _sell_position(ctx, symbol)


class RsiReversion(Strategy):
    """Buy when Wilder's RSI is below ``lower``, sell when it is above ``upper`` (float64, fixed operation order)."""

    PARAMETERS = {"period": int, "lower": float, "upper": float}

    def __init__(self, period: int, lower: float, upper: float) -> None:
        params = validate_params("rsi_reversion", {"period": period, "lower": lower, "upper": upper})
        self.period = int(params["period"])
        self.lower = params["lower"]
        self.upper = params["upper"]
        self._prev_close: int | None = None
        self._t = -1
        self._sum_gain = 0
        self._sum_loss = 0
        self._avg_gain = 0.0
        self._avg_loss = 0.0

    def on_bar(self, bar: Bar) -> None:
        close = bar.close
        prev, self._prev_close = self._prev_close, close
        self._t += 1
        t = self._t
        if prev is None:
            return
        delta = close - prev
        gain = delta if delta > 0 else 0
        loss = -delta if delta < 0 else 0
        period = self.period
        if t < period:
            self._sum_gain += gain
            self._sum_loss += loss
            return
        if t == period:
            self._avg_gain = float(self._sum_gain + gain) / period
            self._avg_loss = float(self._sum_loss + loss) / period
        else:
            self._avg_gain = (self._avg_gain * (period - 1) + float(gain)) / period
            self._avg_loss = (self._avg_loss * (period - 1) + float(loss)) / period
        avg_loss = self._avg_loss
        rsi = 100.0 if avg_loss == 0 else 100.0 - 100.0 / (1.0 + self._avg_gain / avg_loss)
        ctx = self.ctx
        symbol = bar.symbol
        if rsi < self.lower:
            if ctx.sellable(symbol) == 0:  # flat, or dust no sell could take
                ctx.buy_market(symbol, quote_qty=ctx.free(ctx.quote_asset(symbol)))
        elif rsi > self.upper:
            _sell_position(ctx, symbol)


def _sell_position(ctx: StrategyContext, symbol: str) -> None:
    """Sell the long position, rounded down to the lot step (:meth:`StrategyContext.sellable`); the dust stays."""
    qty = ctx.sellable(symbol)
    if qty > 0:
        ctx.sell_market(symbol, qty=qty)


STRATEGIES: dict[str, type[Strategy]] = {"sma_cross": SmaCross, "rsi_reversion": RsiReversion}


def make_strategy(name: str, params: dict[str, Any]) -> Strategy:
    """Build a built-in strategy by name, validating its parameters (clear :class:`InvalidInput` otherwise)."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise InvalidInput(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}")
    normalised = validate_params(name, params)
    return cls(**normalised)
