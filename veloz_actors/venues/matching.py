"""Price-time priority matching for the simulated venue, one book per symbol.

The book holds the venue's own :class:`VenueOrder` objects (the trader's orders as the venue sees them, and the
simulated market maker's); matching only moves quantity (``filled``) and says who traded with whom. Fees and
execution reports are the venue's job (:mod:`veloz_actors.venues.sim`).

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
from ..messages import OrderType, Side, SubmitOrder, TimeInForce, members

__all__ = ["Fill", "OrderBook", "VenueOrder"]

# enum members read on the hot paths (messages.members: a module object's attributes, ~10x cheaper to read)
_Side = members(Side)


class VenueOrder:
    """One order as the venue works it: what is left, where it rests, and the fees it has paid so far.

    ``fee_numerator`` accumulates ``rate x notional`` exactly so that the fees over all fills are ``ceil(total/1e8)``.
    """

    __slots__ = (
        "client_order_id", "account_id", "order_id", "side", "order_type", "tif", "price", "qty", "quote_qty",
        "filled", "resting", "fee_numerator", "fees_paid", "venue_order_id", "internal", "reserved",
    )  # fmt: skip

    def __init__(
        self,
        *,
        client_order_id: str,
        account_id: str,
        side: Side,
        price: int | None,
        qty: int,
        order_id: int = 0,
        order_type: OrderType = OrderType.LIMIT,
        tif: TimeInForce = TimeInForce.GTC,
        quote_qty: int | None = None,
        venue_order_id: str = "",
        internal: bool = False,
    ) -> None:
        self.client_order_id = client_order_id
        self.account_id = account_id
        self.order_id = order_id
        self.side = side
        self.order_type = order_type
        self.tif = tif
        self.price = price
        self.qty = qty
        self.quote_qty = quote_qty
        self.filled = 0
        self.resting = False
        self.fee_numerator = 0
        self.fees_paid = 0
        self.venue_order_id = venue_order_id
        self.internal = internal  # the venue's own liquidity (market maker): no reports for it
        self.reserved = 0  # what an internal order still holds locked in the venue's own ledger

    @classmethod
    def from_request(cls, request: SubmitOrder, venue_order_id: str, max_qty: int) -> VenueOrder:
        """The venue's order for a kernel request (an order by quote amount works up to ``max_qty``)."""
        command = request.command
        order = cls.__new__(cls)
        order.client_order_id = command.client_order_id
        order.account_id = command.account_id
        order.order_id = request.order_id
        order.side = command.side
        order.order_type = command.order_type
        order.tif = command.tif
        order.price = command.price
        quote_qty = order.quote_qty = command.quote_qty
        order.qty = command.qty if quote_qty is None else max_qty
        order.filled = order.fee_numerator = order.fees_paid = order.reserved = 0
        order.resting = order.internal = False
        order.venue_order_id = venue_order_id
        return order

    @property
    def leaves(self) -> int:
        return self.qty - self.filled

    def charge(self, notional: int, rate: int) -> int:
        """Fee for this fill: the order's total fee is ceil(sum(rate x notional)), charged as it accrues."""
        self.fee_numerator += notional * rate
        fee = -(-self.fee_numerator // SCALE) - self.fees_paid
        self.fees_paid += fee
        return fee


# (maker order, price, qty)
Fill = tuple[VenueOrder, int, int]


class _Level:
    __slots__ = ("live", "orders", "qty")

    def __init__(self) -> None:
        self.qty = 0
        self.live = 0
        self.orders: deque[VenueOrder] = deque()


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

    def orders_at(self, side: Side, price: int) -> list[VenueOrder]:
        level = (self._bids if side is _Side.BUY else self._asks).get(price)
        return [o for o in level.orders if o.resting] if level else []

    def would_cross(self, side: Side, price: int) -> bool:
        if side is _Side.BUY:
            return bool(self._ask_keys) and price >= -self._ask_keys[-1]
        return bool(self._bid_prices) and price <= self._bid_prices[-1]

    def fillable(self, side: Side, limit: int | None, qty: int, account_id: str) -> bool:
        """Whether a taker could fill ``qty`` completely now at ``limit`` or better, before meeting its own order."""
        need = qty
        if side is _Side.BUY:
            book, keys, sign = self._asks, self._ask_keys, -1
        else:
            book, keys, sign = self._bids, self._bid_prices, 1
        for key in reversed(keys):
            price = sign * key
            if limit is not None and (price > limit if side is _Side.BUY else price < limit):
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

    def rest(self, order: VenueOrder) -> None:
        """Put an order (with a price and quantity left) at the back of its price level."""
        price = order.price
        assert price is not None
        if order.side is _Side.BUY:
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

    def remove(self, order: VenueOrder) -> None:
        """Take a resting order off the book (cancel or expiry)."""
        if not order.resting:
            return
        order.resting = False
        price = order.price
        book = self._bids if order.side is _Side.BUY else self._asks
        level = book[price]  # type: ignore[index]
        level.qty -= order.qty - order.filled
        level.live -= 1
        if level.live == 0:
            self._drop_level(order.side, price)  # type: ignore[arg-type]
        elif len(level.orders) > 2 * level.live + 16:
            level.orders = deque(o for o in level.orders if o.resting)

    def _drop_level(self, side: Side, price: int) -> None:
        if side is _Side.BUY:
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
        taker: VenueOrder,
        limit: int | None,
        *,
        budget: int | None = None,
        fee_rate: int = 0,
        qty_step: int = 1,
        into: list[Fill] | None = None,
    ) -> tuple[list[Fill], bool]:
        """Trade ``taker`` against the opposite side up to ``limit`` (None: no limit).

        With ``budget`` (a quote amount, fees included) the taker buys whole ``qty_step`` steps while the budget lasts
        instead of a fixed quantity. Returns the fills and whether matching stopped at the taker's own order
        (self-trade prevented). Each fill is appended to ``into`` (a new list by default) as it is made, so a caller
        passing its own still holds the fills made should matching raise part-way.
        """
        fills: list[Fill] = [] if into is None else into
        remaining = taker.qty - taker.filled
        account = taker.account_id
        buying = taker.side is _Side.BUY
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
                self._drop_level(_Side.SELL if buying else _Side.BUY, price)
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
