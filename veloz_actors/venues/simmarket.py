"""A seeded simulated market: a price process with drift and noise, and a market maker quoting a ladder around it.

The process is integer-only (PCG64 integers, no floating point, no libm), so the same seed gives the same prices on
every machine. Each step moves the mid by ``mid * (drift + volatility * u) / 1e9`` with ``u`` uniform in
[-1000, 1000], rounded to the tick, never below ten ticks. The market maker's quotes are real orders of a real
account (``sim-mm``) in the matching book, so when the market moves through a resting order, that order fills against
the maker and every unit of money is still accounted for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SimMarket", "SimSymbol"]


@dataclass(frozen=True, slots=True)
class SimSymbol:
    """How one symbol moves: drift and volatility per step in parts per billion (per unit of ``u``)."""

    symbol: str
    initial_mid: int
    drift_ppb: int = 0
    volatility_ppb: int = 1_000  # x u in [-1000, 1000]: up to 0.1 % a step
    spread_ticks: int = 2
    levels: int = 5
    level_spacing_ticks: int = 1
    level_qty: int = 10_000_000  # 0.1 base per level


class SimMarket:
    """The state of the price process: mids and the generator, both part of the engine snapshot."""

    __slots__ = ("symbols", "mids", "rng")

    def __init__(self, symbols: tuple[SimSymbol, ...], seed: int | list[int]) -> None:
        self.symbols = {s.symbol: s for s in symbols}
        self.mids = {s.symbol: s.initial_mid for s in symbols}
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def step(self, tick_of: dict[str, int]) -> dict[str, int]:
        """Advance every symbol one step; return the new mids (on tick)."""
        draws = self.rng.integers(-1000, 1001, size=len(self.symbols)).tolist()
        for u, (symbol, spec) in zip(draws, self.symbols.items(), strict=True):
            tick = tick_of[symbol]
            mid = self.mids[symbol]
            change = mid * (spec.drift_ppb + spec.volatility_ppb * u) // 1_000_000_000
            mid = (mid + change) // tick * tick
            self.mids[symbol] = max(mid, 10 * tick)
        return dict(self.mids)

    def ladder(self, symbol: str, tick: int) -> tuple[list[int], list[int]]:
        """Bid and ask prices of the maker's quotes around the current mid."""
        spec = self.symbols[symbol]
        mid = self.mids[symbol]
        half = max(1, spec.spread_ticks // 2) * tick
        step = spec.level_spacing_ticks * tick
        bids = [mid - half - i * step for i in range(spec.levels)]
        asks = [mid + half + i * step for i in range(spec.levels)]
        return [b for b in bids if b > 0], asks
