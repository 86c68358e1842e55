"""Small synthetic-but-realistic candle files (the ``open_time_ms,open,high,low,close,volume`` CSV of shared/data) for
coins whose price tick is not BTCUSDT's 0.01: a seeded random walk on the tick, written in the tick's decimals."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from veloz_actors.fixed import format_decimal

BAR_MS = 900_000  # 15m
START_MS = 1_712_000_700_000  # a 15m boundary in April 2024


@dataclass(frozen=True)
class Coin:
    symbol: str
    start: str  # first open, a decimal on the tick
    tick: int  # 1e-8 units
    move: int  # largest bar-to-bar move, in ticks

    @property
    def file_name(self) -> str:
        return f"binance_spot_{self.symbol}_15m_synthetic.csv"


ALGO = Coin("ALGOUSDT", "0.1800", 10_000, 6)  # tick 0.0001, like ALGOUSDT at 0.18
TINY = Coin("TINYUSDT", "0.00000123", 1, 3)  # tick 0.00000001: a coin priced 0.00000123
DOT = Coin("DOTUSDT", "5.123", 100_000, 8)  # tick 0.001


def write_bars(
    directory: Path, coin: Coin, n: int = 600, seed: int = 7, band: tuple[float, float] = (0.85, 1.2)
) -> Path:
    """``n`` 15m candles of ``coin``: open = previous close, every price a positive multiple of the tick; closes stay
    within ``band`` x the start price (a move that would leave it goes the other way)."""
    rnd = random.Random(seed)
    whole, _, frac = coin.start.partition(".")
    price = (int(whole) * 10**8 + int(frac.ljust(8, "0"))) // coin.tick  # in ticks
    lowest, highest = int(price * band[0]), int(price * band[1])
    rows = ["open_time_ms,open,high,low,close,volume"]
    for i in range(n):
        open_ = price
        move = rnd.randint(-coin.move, coin.move)
        close = open_ + move if lowest <= open_ + move <= highest else open_ - move
        high = max(open_, close) + rnd.randint(0, coin.move // 2)
        low = max(1, min(open_, close) - rnd.randint(0, coin.move // 2))
        volume = rnd.randint(10_000, 5_000_000)
        prices = ",".join(format_decimal(p * coin.tick) for p in (open_, high, low, close))
        rows.append(f"{START_MS + i * BAR_MS},{prices},{volume}")
        price = close
    path = directory / coin.file_name
    path.write_text("\n".join(rows) + "\n")
    return path
