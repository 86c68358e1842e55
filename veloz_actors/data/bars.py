"""Bars as numpy structured arrays, and the settings every bar backtest shares.

A :class:`BarSeries` holds candles ordered by open time. Times are int64 nanoseconds (the bar's *open* time); prices
and volume are int64 in 1e-8 units (see :mod:`veloz_actors.fixed`), exactly the decimals written in the source file.
The event-driven backtest and the vectorised kernel both read this one type, and both take a
:class:`BacktestSettings`, so "same data + same settings" means the same thing to both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fixed import SCALE, format_decimal

__all__ = ["BAR_DTYPE", "BacktestSettings", "BarGap", "BarSeries"]

BAR_DTYPE = np.dtype(
    [
        ("open_time", "<i8"),  # ns since the epoch, UTC, the candle's open
        ("open", "<i8"),  # 1e-8 units of the quote asset
        ("high", "<i8"),
        ("low", "<i8"),
        ("close", "<i8"),
        ("volume", "<i8"),  # 1e-8 units of the base asset
    ]
)


@dataclass(frozen=True, slots=True)
class BarGap:
    """Bars missing from a series: ``missing`` bars after the bar that opened at ``after_open_time`` (ns)."""

    after_open_time: int
    missing: int


@dataclass(frozen=True, slots=True, eq=False)
class BarSeries:
    """Candles of one symbol at one interval, validated, with the gaps the source has (reported, never filled in)."""

    symbol: str
    interval_ns: int
    data: np.ndarray
    price_tick: int  # the finest decimal step the source's prices are written in, 1e-8 units (0.01 -> 1_000_000)
    source: str = ""
    gaps: tuple[BarGap, ...] = ()

    def __post_init__(self) -> None:
        if self.data.dtype != BAR_DTYPE:
            raise TypeError(f"BarSeries.data must have BAR_DTYPE, got {self.data.dtype}")

    def __len__(self) -> int:
        return len(self.data)

    @property
    def interval_minutes(self) -> float:
        return self.interval_ns / 60e9

    def describe(self) -> str:
        return (
            f"{self.symbol} {self.interval_minutes:g}m bars={len(self)} tick={format_decimal(self.price_tick)} "
            f"gaps={len(self.gaps)} source={self.source}"
        )


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
