"""The settings every bar backtest shares.

The event-driven backtest (:mod:`veloz_actors.backtest.runner`) and the vectorised kernel
(:mod:`veloz_actors.backtest.kernel`) both take a :class:`BacktestSettings` with a
:class:`~veloz_actors.data.bars.BarSeries`, so "same data + same settings" means the same thing to both.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data.bars import BarSeries
from ..fixed import SCALE

__all__ = ["BacktestSettings"]


@dataclass(frozen=True, slots=True)
class BacktestSettings:
    """What a bar backtest needs besides data and strategy parameters. All money fields in 1e-8 units.

    Defaults follow the backtest issue: quantity step 0.00001, price tick from the data, 10,000 quote of cash,
    fee 0.001 of notional, no slippage.
    """

    initial_cash: int = 10_000 * SCALE
    fee_rate: int = 100_000  # 0.001 as a fraction in 1e-8 units
    slippage_rate: int = 0  # bps / 10_000 as a fraction in 1e-8 units (1 bp -> 10_000)
    qty_step: int = 1_000  # 0.00001
    price_tick: int | None = None  # None: the BarSeries' own tick

    def tick_for(self, bars: BarSeries) -> int:
        return self.price_tick if self.price_tick is not None else bars.price_tick
