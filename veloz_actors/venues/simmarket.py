"""A seeded simulated market: a price process with drift and noise, and a market maker quoting a ladder around it.

The process is integer-only (PCG64 integers, no floating point, no libm), so the same seed gives the same prices on
every machine. Each step moves the mid by ``mid * (drift + volatility * u) / 1e9`` with ``u`` uniform in
[-1000, 1000], rounded to the nearest tick (a half tick away from zero, so a move and its opposite round to opposite
ticks and a market without drift has none), never below ten ticks. A move smaller than half a tick leaves the mid
where it is. Journals of semantics 5 or less (:data:`~veloz_actors.core.journal.SEMANTICS`) keep the rule they were
written under, which rounded every move down: half a tick lost per step, so a market without drift fell (a price
whose moves were below one tick only ever fell, to ten ticks). The market maker's quotes are real orders of a real
account (``sim-mm``) in the matching book, so when the market moves through a resting order, that order fills against
the maker and every unit of money is still accounted for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SimMarket", "SimSymbol", "next_mid"]


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


def next_mid(mid: int, spec: SimSymbol, u: int, tick: int, *, rounded_down: bool = False) -> int:
    """The mid after one step whose draw is ``u`` (see the module docstring), on tick and at least ten ticks."""
    move = mid * (spec.drift_ppb + spec.volatility_ppb * u)  # in 1e-9 of the 1e-8 units
    if rounded_down:
        mid = (mid + move // 1_000_000_000) // tick * tick
    else:
        unit = 1_000_000_000 * tick
        ticks = (abs(move) + unit // 2) // unit
        mid = mid // tick * tick + (ticks if move >= 0 else -ticks) * tick
    return max(mid, 10 * tick)


class SimMarket:
    """The state of the price process: mids and the generator, both part of the engine snapshot."""

    __slots__ = ("symbols", "mids", "rng")

    def __init__(self, symbols: tuple[SimSymbol, ...], seed: int | list[int]) -> None:
        self.symbols = {s.symbol: s for s in symbols}
        self.mids = {s.symbol: s.initial_mid for s in symbols}
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def step(self, tick_of: dict[str, int], *, rounded_down: bool = False) -> dict[str, int]:
        """Advance every symbol one step; return the new mids (on tick). ``rounded_down``: the rule of journals of
        semantics 5 or less (see the module docstring)."""
        draws = self.rng.integers(-1000, 1001, size=len(self.symbols)).tolist()
        for u, (symbol, spec) in zip(draws, self.symbols.items(), strict=True):
            self.mids[symbol] = next_mid(self.mids[symbol], spec, u, tick_of[symbol], rounded_down=rounded_down)
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
