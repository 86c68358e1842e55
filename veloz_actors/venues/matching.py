"""Price-time priority matching for the simulated venue, one book per symbol.

The book holds references to the OMS's :class:`~veloz_actors.core.oms.Order` objects; matching only moves quantity
(``filled``) and says who traded with whom. Settlement, fees and events are the engine's job.

Rules:

- a taker trades with the best opposite price first, and at one price with the oldest order first;
- trades happen at the maker's price; the taker gets any price improvement;
- a taker never trades with an order of its own account: matching stops there and the taker's remainder expires
  (Binance's self-trade prevention mode ``EXPIRE_TAKER``), so a self-trade is never silently filled;
- ``fillable`` answers "could this FOK order fill completely right now?" without touching the book.

Cancels are lazy: a cancelled order is flagged and skipped, and its level's live quantity drops at once, so a cancel
costs O(1) and the best prices stay exact.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque

from ..fixed import SCALE
from ..messages import Side
from .oms import Order

__all__ = ["Fill", "OrderBook"]

# (maker order, price, qty)
Fill = tuple[Order, int, int]


class _Level:
    __slots__ = ("live", "orders", "qty")

    def __init__(self) -> None:
        self.qty = 0
        self.live = 0
        self.orders: deque[Order] = deque()


class OrderBook:
    """The resting orders of one symbol."""

    __slots__ = ("symbol", "_bids", "_asks", "_bid_prices", "_ask_keys")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._bids: dict[int, _Level] = {}
        self._asks: dict[int, _Level] = {}
        self._bid_prices: list[int] = []  # ascending: best bid last
        self._ask_keys: list[int] = []  # negated prices, ascending: best ask last

    # ------------------------------------------------------------------------------------------------------ queries

    def best_bid(self) -> int | None:
        return self._bid_prices[-1] if self._bid_prices else None

    def best_ask(self) -> int | None:
        return -self._ask_keys[-1] if self._ask_keys else None

    def top(self) -> tuple[int, int, int, int]:
        """(bid price, bid qty, ask price, ask qty), zeros for an empty side."""
        bid = self._bid_prices[-1] if self._bid_prices else 0
        ask = -self._ask_keys[-1] if self._ask_keys else 0
        return bid, self._bids[bid].qty if bid else 0, ask, self._asks[ask].qty if ask else 0

    def depth(self, levels: int = 10) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        bids = tuple((p, self._bids[p].qty) for p in reversed(self._bid_prices[-levels:]))
        asks = tuple((-k, self._asks[-k].qty) for k in reversed(self._ask_keys[-levels:]))
        return bids, asks

    def orders_at(self, side: Side, price: int) -> list[Order]:
        level = (self._bids if side is Side.BUY else self._asks).get(price)
        return [o for o in level.orders if o.resting] if level else []

    def would_cross(self, side: Side, price: int) -> bool:
        if side is Side.BUY:
            return bool(self._ask_keys) and price >= -self._ask_keys[-1]
        return bool(self._bid_prices) and price <= self._bid_prices[-1]

    def fillable(self, side: Side, limit: int | None, qty: int, account_id: str) -> bool:
        """Whether a taker could fill ``qty`` completely now at ``limit`` or better, before meeting its own order."""
        need = qty
        if side is Side.BUY:
            book, keys, sign = self._asks, self._ask_keys, -1
        else:
            book, keys, sign = self._bids, self._bid_prices, 1
        for key in reversed(keys):
            price = sign * key
            if limit is not None and (price > limit if side is Side.BUY else price < limit):
                return False
            for maker in book[price].orders:
                if not maker.resting:
                    continue
                if maker.account_id == account_id:
                    return False
                need -= maker.qty - maker.filled
                if need <= 0:
                    return True
        return False

    # ---------------------------------------------------------------------------------------------------- mutations

    def rest(self, order: Order) -> None:
        """Put an order (with a price and quantity left) at the back of its price level."""
        price = order.price
        assert price is not None
        if order.side is Side.BUY:
            book = self._bids
            level = book.get(price)
            if level is None:
                level = book[price] = _Level()
                insort(self._bid_prices, price)
        else:
            book = self._asks
            level = book.get(price)
            if level is None:
                level = book[price] = _Level()
                insort(self._ask_keys, -price)
        level.orders.append(order)
        level.qty += order.qty - order.filled
        level.live += 1
        order.resting = True

    def remove(self, order: Order) -> None:
        """Take a resting order off the book (cancel or expiry)."""
        if not order.resting:
            return
        order.resting = False
        price = order.price
        book = self._bids if order.side is Side.BUY else self._asks
        level = book[price]  # type: ignore[index]
        level.qty -= order.qty - order.filled
        level.live -= 1
        if level.live == 0:
            self._drop_level(order.side, price)  # type: ignore[arg-type]
        elif len(level.orders) > 2 * level.live + 16:
            level.orders = deque(o for o in level.orders if o.resting)

    def _drop_level(self, side: Side, price: int) -> None:
        if side is Side.BUY:
            del self._bids[price]
            prices = self._bid_prices
            if prices[-1] == price:
                prices.pop()
            else:
                del prices[bisect_left(prices, price)]
        else:
            del self._asks[price]
            keys = self._ask_keys
            if keys[-1] == -price:
                keys.pop()
            else:
                del keys[bisect_left(keys, -price)]

    def match(
        self,
        taker: Order,
        limit: int | None,
        *,
        budget: int | None = None,
        fee_rate: int = 0,
        qty_step: int = 1,
    ) -> tuple[list[Fill], bool]:
        """Trade ``taker`` against the opposite side up to ``limit`` (None: no limit).

        With ``budget`` (a quote amount, fees included) the taker buys whole ``qty_step`` steps while the budget lasts
        instead of a fixed quantity. Returns the fills and whether matching stopped at the taker's own order
        (self-trade prevented).
        """
        fills: list[Fill] = []
        remaining = taker.qty - taker.filled
        account = taker.account_id
        buying = taker.side is Side.BUY
        if buying:
            book, keys = self._asks, self._ask_keys
        else:
            book, keys = self._bids, self._bid_prices
        while remaining > 0 and keys:
            price = -keys[-1] if buying else keys[-1]
            if limit is not None and (price > limit if buying else price < limit):
                break
            level = book[price]
            orders = level.orders
            while orders and remaining > 0:
                maker = orders[0]
                if not maker.resting:
                    orders.popleft()
                    continue
                if maker.account_id == account:
                    return fills, True
                trade = maker.qty - maker.filled
                if trade > remaining:
                    trade = remaining
                if budget is not None:
                    affordable = budget * SCALE * SCALE // (price * (SCALE + fee_rate)) // qty_step * qty_step
                    if affordable < trade:
                        trade = affordable
                    if trade <= 0:
                        return fills, False
                    notional = price * trade // SCALE
                    budget -= notional + -(-notional * fee_rate // SCALE)
                maker.filled += trade
                level.qty -= trade
                if maker.filled == maker.qty:
                    maker.resting = False
                    orders.popleft()
                    level.live -= 1
                taker.filled += trade
                remaining -= trade
                fills.append((maker, price, trade))
            if level.live == 0:
                self._drop_level(Side.SELL if buying else Side.BUY, price)
        return fills, False

    def check_invariants(self) -> None:
        """Assert the book is consistent and not crossed (used by property tests)."""
        for book, prices in ((self._bids, self._bid_prices), (self._asks, [-k for k in self._ask_keys])):
            assert sorted(book) == sorted(prices), "price index out of sync"
            for price, level in book.items():
                live = [o for o in level.orders if o.resting]
                assert len(live) == level.live > 0, "level live count wrong"
                assert sum(o.qty - o.filled for o in live) == level.qty, "level quantity wrong"
                assert all(o.price == price for o in live), "order on the wrong level"
        bid, ask = self.best_bid(), self.best_ask()
        assert bid is None or ask is None or bid < ask, f"book crossed: bid {bid} >= ask {ask}"
