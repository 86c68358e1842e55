"""The built-in L2 strategies against a context whose position is what a live account holds.

As for the bar strategies (``test_bar_strategies.py``): after a fee taken in the coin a position need not be a whole
number of lot steps (0.01234 BTC bought keeps 0.01232766 at a 0.00001 step). A sell of it as it is would be refused
(``QUANTITY_NOT_ON_STEP``) and the strategy would never exit; the dust below one step left after the sell would keep
``book_imbalance`` from entering again (it enters only when flat) and ``passive_maker`` offering it for ever.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from veloz_actors.messages import OrderStatus, Side
from veloz_actors.strategies.l2_strategies import BookImbalance, PassiveMaker
from veloz_actors.testing import d

from .accounts import STEP, LiveLikeAccount


class _Book:
    """A book of one level a side: best bid and ask, each (price, qty)."""

    needs_resync = False

    def __init__(self, bid: tuple[int, int], ask: tuple[int, int]) -> None:
        self.bid, self.ask = bid, ask

    def best_bid(self) -> tuple[int, int]:
        return self.bid

    def best_ask(self) -> tuple[int, int]:
        return self.ask

    def depth(self, n: int) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        return (self.bid,), (self.ask,)


class _Account(LiveLikeAccount):
    """A live-like L2 context: a position, cash, the lot step, a book; the orders placed are recorded (and stay
    open), the cancels too."""

    symbol = "BTCUSDT"
    instrument = SimpleNamespace(price_tick=d("0.01"), qty_step=STEP)

    def __init__(self, position: int, book: _Book) -> None:
        super().__init__(position)
        self.the_book = book
        self.orders: list[tuple[Side, int]] = []
        self.cancels: list[str] = []
        self.ts = 10**12

    def now(self) -> int:
        return self.ts

    def book(self, symbol: str | None = None) -> _Book:
        return self.the_book

    def order(self, client_order_id: str) -> Any:
        return SimpleNamespace(filled=0, status=OrderStatus.ACCEPTED)

    def place_order(self, symbol: str, side: Side, *, qty: int = 0, **_: Any) -> str:
        self.orders.append((side, qty))
        return f"o{len(self.orders)}"

    def cancel_order(self, client_order_id: str) -> None:
        self.cancels.append(client_order_id)


_BID_PRESSURE = _Book(bid=(d("60000"), d("9")), ask=(d("60000.01"), d("1")))  # imbalance 0.8, over 0.6


def test_book_imbalance_exits_a_position_off_the_lot_step_rounded_down_and_takes_its_dust_as_flat() -> None:
    held = _Account(d("0.01232766"), _BID_PRESSURE)  # 0.01234 bought, 0.00001234 of it the fee
    strategy = BookImbalance()
    strategy.on_start(held)
    strategy.on_book(held.the_book)  # hold_ms long past: exit now
    assert held.orders == [(Side.SELL, d("0.01232"))]  # whole steps only

    dust = _Account(d("0.00000766"), _BID_PRESSURE)  # what such a sell leaves: below one step
    strategy = BookImbalance()
    strategy.on_start(dust)
    strategy.on_book(dust.the_book)
    assert dust.orders == [(Side.BUY, d("0.001"))]  # flat: it enters again


def test_passive_maker_offers_a_position_off_the_lot_step_rounded_down_and_never_its_dust() -> None:
    held = _Account(d("0.01232766"), _BID_PRESSURE)
    strategy = PassiveMaker(max_inventory="0.02")
    strategy.on_start(held)
    strategy.on_book(held.the_book)
    assert held.orders == [(Side.BUY, d("0.001")), (Side.SELL, d("0.01232"))]
    strategy.on_book(held.the_book)  # nothing changed: the offer stands, no cancel and place again for ever
    assert held.cancels == [] and len(held.orders) == 2

    dust = _Account(d("0.00000766"), _BID_PRESSURE)
    strategy = PassiveMaker()
    strategy.on_start(dust)
    strategy.on_book(dust.the_book)
    assert dust.orders == [(Side.BUY, d("0.001"))]  # no sell of the dust
