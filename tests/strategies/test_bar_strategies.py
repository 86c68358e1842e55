"""The built-in bar strategies against a context whose position is what a live account holds.

On Binance without BNB a buy's commission comes out of the coins received, so a live position need not be a whole
number of lot steps (0.01234 BTC bought by quote amount keeps 0.01232766 at a 0.00001 step): a strategy that sold
the position as it is had its sell refused (``QUANTITY_NOT_ON_STEP``) and never exited, and the dust left once it
had would have kept it from buying again (it buys only when flat).
"""

from __future__ import annotations

from typing import Any

import pytest

from veloz_actors.messages import Side
from veloz_actors.strategies.bar_strategies import RsiReversion, SmaCross
from veloz_actors.strategies.base import Bar
from veloz_actors.testing import d

from .accounts import LiveLikeAccount


class _Account(LiveLikeAccount):
    """A live-like context; the orders placed are recorded."""

    def __init__(self, position: int) -> None:
        super().__init__(position)
        self.orders: list[tuple[Side, int, int | None]] = []

    def now(self) -> int:
        return 0

    def place_order(self, symbol: str, side: Side, *, qty: int = 0, quote_qty: int | None = None, **_: Any) -> str:
        self.orders.append((side, qty, quote_qty))
        return f"o{len(self.orders)}"

    def cancel_order(self, client_order_id: str) -> None:
        raise AssertionError("the bar strategies never cancel")


def _run(strategy: Any, closes: list[str], ctx: _Account) -> None:
    strategy.on_start(ctx)
    bar = Bar("BTCUSDT")
    for i, close in enumerate(closes):
        bar.index, bar.open = i, d(close)
        bar.high = bar.low = bar.close = d(close)
        strategy.on_bar(bar)


# a rise then a fall (a sell signal of both: sma_cross (2, 3) crossing down, rsi (2, 30, 70) above 70 after the rise)
_UP_DOWN = ["100", "100", "100", "100", "110", "120", "120", "90", "80", "70"]
# a fall then a rise (a buy signal of both)
_DOWN_UP = ["100", "100", "100", "100", "90", "80", "80", "110", "120", "130"]


@pytest.mark.parametrize("make", [lambda: SmaCross(fast=2, slow=3), lambda: RsiReversion(period=2, lower=30, upper=70)])
def test_a_position_off_the_lot_step_is_sold_rounded_down_and_its_dust_counts_as_flat(make: Any) -> None:
    held = _Account(position=d("0.01232766"))  # 0.01234 bought, 0.00001234 of it the fee
    _run(make(), _UP_DOWN, held)
    sells = [(qty, quote) for side, qty, quote in held.orders if side is Side.SELL]
    assert sells and all(qty == d("0.01232") for qty, _ in sells), held.orders  # whole steps only

    dust = _Account(position=d("0.00000766"))  # what such a sell leaves: below one step, nothing a sell could take
    _run(make(), _DOWN_UP, dust)
    assert any(side is Side.BUY for side, _, _ in dust.orders), dust.orders
    assert not any(side is Side.SELL for side, _, _ in dust.orders), dust.orders
