"""Bars as numpy structured arrays.

A :class:`BarSeries` holds candles ordered by open time. Times are int64 nanoseconds (the bar's *open* time); prices
and volume are int64 in 1e-8 units (see :mod:`veloz_actors.fixed`), exactly the decimals written in the source file.
The loaders (:mod:`veloz_actors.data.loaders`) produce it; the event-driven backtest, the vectorised kernel and
searches all read this one type.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..fixed import format_decimal

__all__ = ["BAR_DTYPE", "BarGap", "BarSeries"]

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
