"""A live-like account for the built-in strategies' tests: a position that need not be whole lot steps (a fee taken in
the coin), cash, the lot step. Each test module adds what its strategies call besides (orders placed, a book)."""

from __future__ import annotations

from veloz_actors.strategies.base import StrategyContext
from veloz_actors.testing import d

STEP = d("0.00001")


class LiveLikeAccount(StrategyContext):
    """One symbol, BTC against USDT: the position held, 1,000 USDT free, nothing locked, a 0.00001 lot step."""

    def __init__(self, position: int) -> None:
        self.held = position

    def position(self, symbol: str) -> int:
        return self.held

    def free(self, asset: str) -> int:
        return d("1000") if asset == "USDT" else self.held

    def locked(self, asset: str) -> int:
        return 0

    def base_asset(self, symbol: str) -> str:
        return "BTC"

    def quote_asset(self, symbol: str) -> str:
        return "USDT"

    def qty_step(self, symbol: str) -> int:
        return STEP
