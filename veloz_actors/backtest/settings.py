"""The settings every bar backtest shares.

The event-driven backtest (:mod:`veloz_actors.backtest.runner`) and the vectorised kernel
(:mod:`veloz_actors.backtest.kernel`) both take a :class:`BacktestSettings` with a
:class:`~veloz_actors.data.bars.BarSeries`, so "same data + same settings" means the same thing to both: each starts
from :meth:`BacktestSettings.for_bars`, which fixes the price tick and the quantity step for the series.

**Tick and step.** The price tick is the series' own (the finest decimal step its prices are written in) unless
``price_tick`` is given (every price of the series must be on it). The quantity step is 0.00001 unless ``qty_step`` is given, or, when the tick is below 0.001,
the coarser power of ten that keeps ``tick x step`` at 1e-8 of the quote asset or above, so every notional is an exact
1e-8 amount: tick 0.01 (BTCUSDT) -> step 0.00001, tick 0.0001 (ALGOUSDT at 0.18) -> 0.0001, tick 0.00000001 (a coin at
0.00000123) -> 1.

>>> default_qty_step(10_000)  # tick 0.0001 -> step 0.0001
10000
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .._exceptions import InvalidInput
from ..core.instruments import exact_qty_step
from ..data.bars import BarSeries
from ..fixed import SCALE, format_decimal, parse_rate

__all__ = ["DEFAULT_QTY_STEP", "BacktestSettings", "default_qty_step", "parse_costs"]

DEFAULT_QTY_STEP = 1_000  # 0.00001


def default_qty_step(price_tick: int) -> int:
    """0.00001, or the next coarser power of ten that makes ``price_tick x step`` a whole multiple of 1e-8 of the
    quote asset (at most 1 whole unit, which any tick in 1e-8 units satisfies)."""
    if isinstance(price_tick, bool) or not isinstance(price_tick, int) or price_tick <= 0:
        raise InvalidInput(f"price tick must be a positive int in 1e-8 units, got {price_tick!r}")
    step = DEFAULT_QTY_STEP
    while price_tick * step % SCALE:
        step *= 10
    return step


@dataclass(frozen=True, slots=True)
class BacktestSettings:
    """What a bar backtest needs besides data and strategy parameters. All money fields in 1e-8 units.

    Defaults follow the backtest issue: quantity step by the rule above (0.00001 for a tick of 0.001 or coarser), price
    tick from the data, 10,000 quote of cash, fee 0.001 of notional, no slippage.
    """

    initial_cash: int = 10_000 * SCALE
    fee_rate: int = 100_000  # 0.001 as a fraction in 1e-8 units
    slippage_rate: int = 0  # bps / 10_000 as a fraction in 1e-8 units (1 bp -> 10_000)
    qty_step: int | None = None  # None: default_qty_step(the tick)
    price_tick: int | None = None  # None: the BarSeries' own tick

    def tick_for(self, bars: BarSeries) -> int:
        return self.price_tick if self.price_tick is not None else bars.price_tick

    def step_for(self, bars: BarSeries) -> int:
        return self.qty_step if self.qty_step is not None else default_qty_step(self.tick_for(bars))

    def for_bars(self, bars: BarSeries, *, flags: bool = True) -> BacktestSettings:
        """These settings with the tick and the step fixed for ``bars``, checked: an :class:`InvalidInput` naming the
        setting (``price_tick`` / ``qty_step``, and the ``veloz backtest`` flags ``--price-tick`` / ``--qty-step``
        unless ``flags`` is False) and its value when they cannot give exact notionals (``price_tick x qty_step``
        finer than 1e-8) or when a given tick is off the data (some price of the series is not a multiple of it; a
        finer tick that divides the data's is fine).
        """
        for name in ("price_tick", "qty_step"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise InvalidInput(f"{name} must be a positive int in 1e-8 units, got {value!r}")
        tick = self.tick_for(bars)
        if isinstance(tick, bool) or not isinstance(tick, int) or tick <= 0:
            raise InvalidInput(f"{bars.symbol}: the data's price tick must be a positive int, got {tick!r}")
        step = self.step_for(bars)
        tick_name, step_name = (
            ("price_tick (--price-tick)", "qty_step (--qty-step)") if flags else ("price_tick", "qty_step")
        )
        if tick * step % SCALE:
            tick_text = (
                f"{tick_name} {format_decimal(tick)}"
                if self.price_tick is not None
                else f"the data's price tick {format_decimal(tick)}"
            )
            raise InvalidInput(
                f"{bars.symbol}: {step_name} {format_decimal(step)} x {tick_text} is finer than 1e-8 of the "
                f"quote asset, so notionals would not be exact: use a qty_step that is a multiple of "
                f"{format_decimal(exact_qty_step(tick, 1))}, or leave it out for the default "
                f"{format_decimal(default_qty_step(tick))}"
            )
        if self.price_tick is not None and len(bars) and bars.price_tick % tick:
            prices = np.concatenate([bars.data[name] for name in ("open", "high", "low", "close")])
            off = np.flatnonzero(prices % tick)
            if off.size:
                raise InvalidInput(
                    f"{bars.symbol}: {tick_name} {format_decimal(tick)} is off the data: "
                    f"{off.size} of its prices, e.g. {format_decimal(int(prices[off[0]]))}, are not multiples of it "
                    f"(the data's prices are written in steps of {format_decimal(bars.price_tick)}); use a tick that "
                    f"divides {format_decimal(bars.price_tick)}, or leave it out"
                )
        if tick == self.price_tick and step == self.qty_step:
            return self
        return replace(self, price_tick=tick, qty_step=step)


def parse_costs(fee_rate: str | float, slippage_bps: str | float, prefix: str = "") -> tuple[int, int]:
    """A fee rate (a fraction of the notional) and slippage in bps as written in a config or on the command line ->
    ``(fee_rate, slippage_rate)`` in 1e-8 units, checked as the engines need them; errors quote the key (after
    ``prefix``, e.g. ``"settings."``) and the value as given."""
    fee = parse_rate(fee_rate, f"{prefix}fee_rate")
    if fee >= SCALE:
        raise InvalidInput(
            f"{prefix}fee_rate {fee_rate!r} must be below 1 (a fraction of the notional: 0.001 is 0.1 %)"
        )
    bps = parse_rate(slippage_bps, f"{prefix}slippage_bps")  # bps in 1e-8 units; 1 bp is a rate of 10,000
    if bps % 10_000:
        raise InvalidInput(f"{prefix}slippage_bps {slippage_bps!r} is finer than 1e-4 bps")
    if bps >= 10_000 * SCALE:
        raise InvalidInput(f"{prefix}slippage_bps {slippage_bps!r} must be below 10000 (100 % of the price)")
    return fee, bps // 10_000
