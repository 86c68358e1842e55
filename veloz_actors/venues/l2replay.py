"""The recorded market as a venue: a Binance L2 capture's book, with queue-position and latency models.

:class:`L2ReplayVenue` is the exchange's side of the tick-level backtest, behind the venue protocol: it takes the
kernel's :class:`~veloz_actors.messages.SubmitOrder` / :class:`~veloz_actors.messages.SubmitCancel` requests and
answers with execution reports, while the capture's depth diffs and public trades (:meth:`L2ReplayVenue.on_market`)
rebuild the recorded :class:`~veloz_actors.core.l2book.L2Book` and move its queues. Every rule is deterministic;
randomness only enters through a seeded latency model.

**Latency.** A request is *sent* when the venue receives it (the kernel's step) and *arrives*
``LatencyModel.entry_ns()`` later, one draw per request in the order they are sent; requests arrive in the order they
were sent (one connection: a later one never overtakes an earlier one). Until then the venue holds it in flight and
returns no report. :meth:`L2ReplayVenue.on_clock` releases everything that has arrived by a time;
:meth:`L2ReplayVenue.arrive_next` releases one request, for a driver that lets the strategy react between two.

**At arrival** (the book is the recorded book as of the arrival time):

* a market order walks the opposite side of the recorded book level by level, best first, each fill at the level's
  price moved against the trader by the :class:`~veloz_actors.venues.fill_models.SlippageModel`, while that fill price
  is no worse than the request's ``limit`` (the order's protect price: see :meth:`L2ReplayVenue.protect_price`).
  What is left when the limit or the book is reached expires (``NO_LIQUIDITY``). A market BUY by ``quote_qty`` spends
  at most that much, fees included, in whole quantity steps: its last fill closes it (``leaves_qty`` 0, FILLED) when
  its budget could not pay for one more step; when the book or the limit ran out first, it expires
  (``NO_LIQUIDITY``) after its fills, as Binance expires a market order that exhausted the book
  (``market_orders_faq.md``: status ``EXPIRED``). Journals of semantics 6 or less
  (:data:`~veloz_actors.core.journal.SEMANTICS`) keep their rule: any fill closed it (``leaves_qty`` 0).
* a limit order that crosses takes liquidity the same way up to its price (no slippage); ``POST_ONLY`` expires instead
  (``WOULD_TAKE_LIQUIDITY``), ``FOK`` expires unless the book can fill all of it, ``IOC`` expires its remainder; a
  ``GTC`` / ``POST_ONLY`` remainder rests.
* our fills consume level quantity only virtually, for that order: the recorded book is never altered by our trading.
  This is the standard assumption of L2 replay (our orders are small against the market).
* while the recorded book is not known (no snapshot yet, or after a break in the update ids) or is crossed (its best
  bid at or above its best ask: a book no exchange holds, so the capture is wrong there, and taking from it would buy
  below what the same book pays on the other side), nothing can be taken or checked against it: a market, ``IOC``,
  ``FOK`` or ``POST_ONLY`` order expires (``NO_LIQUIDITY``; a market order sent then is protected from the last
  recorded trade price, and one sent before any trade or book is rejected by the kernel, ``NO_REFERENCE_PRICE``:
  see :meth:`L2ReplayVenue.protect_price`), and a ``GTC`` order rests with its place in the queue
  unknown: only a trade through its price fills it, until the book is known again. Then it is worked as if it arrived
  at that moment: if it crosses the book it takes liquidity up to its price (TAKER fills at the book's prices,
  reported by :meth:`L2ReplayVenue.take_joined`, or by ``on_market``), and what is left joins the back of its level.

**Resting orders** fill under the :class:`~veloz_actors.venues.fill_models.QueueModel`: on arrival the recorded
quantity at the order's price is ahead of it; recorded trades at that price by an aggressor on the other side eat that
queue first and only what is beyond it fills the order (our own orders that came earlier at that price stand ahead of
it too: what they still had is taken from what reaches it); a recorded level that shrinks below the queue ahead
shrinks it. A recorded trade *through* the price fills the whole remaining order at its price. Resting fills are MAKER
fills. A recorded book that crosses a resting order without a trade does not fill it (conservative). A cancel that
arrives after its order closed is rejected (``ORDER_NOT_OPEN``) and counted in ``cancels_too_late``.

**Quantities.** Every fill is a whole number of the instrument's quantity steps, rounded down: a book level or a
trade's share finer than the step fills what whole steps it holds (a level with less than one step is passed over).
Exchange quantities are whole steps unless VeloZ coarsened the step (tick x step below 1e-8, as ETHBTC's): then a
finer fill would have no exact notional.

**Fees** are the :class:`~veloz_actors.venues.fill_models.FeeModel`'s, in the quote asset: each order's total is
``ceil(sum(rate x notional) / 1e8)`` over its fills, charged as it accrues. The kernel books the fee reported.

**Money.** The venue is every fill's counterparty. :attr:`L2ReplayVenue.received` is what it took in, net, per asset
(its side of the kernel ledger's ``counterparty``) and :attr:`L2ReplayVenue.fees_charged` what it charged, so after a
run ``venue.received == kernel.ledger.counterparty`` and ``venue.fees_charged == kernel.ledger.fees_collected``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any

from .._exceptions import DataError, InvalidInput, SequenceGap, VenueFailed
from ..core.instruments import Instrument, ceil_div
from ..core.journal import SEMANTICS
from ..core.l2book import L2Book
from ..fixed import SCALE, format_decimal
from ..messages import (
    BookDelta,
    Liquidity,
    OrderType,
    RejectReason,
    Side,
    SubmitCancel,
    SubmitOrder,
    TimeInForce,
    Trade,
    VenueCancelRejected,
    VenueOrderAccepted,
    VenueOrderCancelled,
    VenueOrderExpired,
    VenueOrderFilled,
    VenueOrderRejected,
)
from .fill_models import (
    ConservativeQueue,
    ConstantLatency,
    FeeModel,
    LatencyModel,
    NoSlippage,
    QueueModel,
    SlippageModel,
)

__all__ = ["L2ReplayVenue"]

_BUY = Side.BUY
_MARKET = OrderType.MARKET


class _Order:
    """One order as the venue works it (its own record: the kernel's order is the trader's)."""

    __slots__ = (
        "request", "client_order_id", "account_id", "venue_order_id", "side", "price", "qty", "by_quote", "budget",
        "filled", "fee_numerator", "fees_paid", "open", "queue_ahead", "queue_known",
    )  # fmt: skip

    def __init__(self, request: SubmitOrder, venue_order_id: str, max_qty: int) -> None:
        command = request.command
        self.request = request
        self.client_order_id = command.client_order_id
        self.account_id = command.account_id
        self.venue_order_id = venue_order_id
        self.side = command.side
        self.price = command.price
        self.by_quote = command.quote_qty is not None
        self.qty = max_qty if self.by_quote else command.qty
        self.budget = command.quote_qty or 0  # what an order by quote amount may still spend, fees included
        self.filled = 0
        self.fee_numerator = 0
        self.fees_paid = 0
        self.open = True
        self.queue_ahead = 0
        self.queue_known = True  # False: it came while the book was unknown; it joins its level once it is known


class L2ReplayVenue:
    """One symbol's recorded market. Not thread-safe: one caller at a time."""

    # a class default: a venue pickled (a paper engine's snapshot) before this existed still works
    joined: list[Any] | tuple[()] = ()
    crossed_updates = 0
    # the rules of the journal the venue's inputs are in (its driver sets it: venues.sim.use_semantics); a class
    # default, so a venue restored from a snapshot written before has none of its own
    semantics = SEMANTICS

    def __init__(
        self,
        instrument: Instrument,
        *,
        market: str = "spot",
        fees: FeeModel | None = None,
        slippage: SlippageModel | None = None,
        latency: LatencyModel | None = None,
        queue: QueueModel | None = None,
        name: str = "L2REPLAY",
        buffer_limit: int = 100_000,
    ) -> None:
        self.name = name
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.fees = fees or FeeModel(instrument.maker_fee_rate, instrument.taker_fee_rate)
        self.slippage: SlippageModel = slippage or NoSlippage()
        self.latency: LatencyModel = latency or ConstantLatency(0)
        self.queue: QueueModel = queue or ConservativeQueue()
        self.book = L2Book(instrument.symbol, market, buffer_limit=buffer_limit)
        self.last_trade_price = 0
        self.in_flight: deque[tuple[int, SubmitOrder | SubmitCancel]] = deque()  # (arrival ns, request), FIFO
        self.last_arrival = 0
        self.orders: dict[tuple[str, str], _Order] = {}  # working orders (arrived, not closed)
        self.resting: list[_Order] = []  # those on the book, in arrival order
        self.next_order_id = 0
        self.trade_id = 0
        self.received: dict[str, int] = {}  # net amount per asset the venue took in from traders
        self.fees_charged: dict[str, int] = {}
        self.cancels_too_late = 0
        self.sequence_gaps = 0
        self.crossed_updates = 0  # depth updates that left the recorded book crossed
        self.joined: list[Any] = []  # reports of waiting orders that crossed the book when it became known

    # ----------------------------------------------------------------------------------------- the venue protocol

    @property
    def next_arrival(self) -> int | None:
        """When the earliest request in flight reaches the venue (None if none is travelling)."""
        return self.in_flight[0][0] if self.in_flight else None

    def submit(self, request: SubmitOrder) -> list[Any]:
        """Send an order: it arrives after the latency model's delay; nothing is known before (an order for another
        symbol is rejected at once)."""
        if request.symbol != self.symbol:
            return [
                VenueOrderRejected(
                    venue=self.name,
                    client_order_id=request.client_order_id,
                    account_id=request.account_id,
                    symbol=request.symbol,
                    reason=RejectReason.UNKNOWN_SYMBOL,
                    detail=f"this venue trades {self.symbol}",
                    ts=request.ts,
                )
            ]
        self._send(request)
        return []

    def cancel(self, request: SubmitCancel) -> list[Any]:
        """Send a cancel: it takes effect when it arrives, after the same kind of delay as an order."""
        self._send(request)
        return []

    def on_market(self, event: Any) -> list[Any]:
        """A recorded market event: a depth diff or snapshot moves the book and its queues, a public trade fills the
        resting orders it reaches; returns those fills' reports. Requests in flight are not released here. Should it
        raise part-way, the fills made before go with the exception
        (:class:`~veloz_actors._exceptions.VenueFailed`)."""
        kind = type(event)
        reports: list[Any] = []
        try:
            if kind is BookDelta:
                self.apply_depth(event)
            elif kind is Trade:
                self._trade(event, reports)
        except Exception as exc:
            raise VenueFailed(self.take_joined() + reports) from exc
        return self.take_joined() if kind is BookDelta else reports

    def on_clock(self, ts: int) -> list[Any]:
        """Release every request that has arrived by ``ts`` (inclusive), in arrival order; returns their reports.
        Should one raise, the reports made before (fills among them) go with the exception
        (:class:`~veloz_actors._exceptions.VenueFailed`)."""
        reports: list[Any] = []
        in_flight = self.in_flight
        try:
            while in_flight and in_flight[0][0] <= ts:
                self._arrive(reports)
        except Exception as exc:
            raise VenueFailed(reports) from exc
        return reports

    def arrive_next(self) -> list[Any]:
        """The earliest request in flight reaches the venue and takes effect; returns its reports (timestamped at its
        arrival)."""
        reports: list[Any] = []
        self._arrive(reports)
        return reports

    def _arrive(self, reports: list[Any]) -> None:
        ts, request = self.in_flight.popleft()
        if type(request) is SubmitCancel:
            self._cancel_now(request, ts, reports)
        else:
            self._accept(request, ts, reports)  # type: ignore[arg-type]

    def drop_order(self, account_id: str, client_order_id: str) -> None:
        """Stop working an order whose submit or cancel raised (see :func:`~veloz_actors.venues.base.guarded`): its
        requests still in flight never arrive, and the order leaves the book (it is in ``orders`` from its arrival
        until :meth:`_close`)."""
        key = (account_id, client_order_id)
        if any((request.account_id, request.client_order_id) == key for _, request in self.in_flight):
            self.in_flight = deque(
                item for item in self.in_flight if (item[1].account_id, item[1].client_order_id) != key
            )
        order = self.orders.get(key)
        if order is not None:
            self._close(order)

    # ------------------------------------------------------------------------------------------ the recorded market

    def apply_depth(self, delta: BookDelta) -> bool:
        """Apply a recorded depth snapshot or diff; True if the book changed (a diff may be stale or refused while
        the book waits for a snapshot; a break in the update-id chain is counted in ``sequence_gaps``)."""
        if delta.symbol != self.symbol:
            raise InvalidInput(f"event of {delta.symbol} on the {self.symbol} venue")
        book = self.book
        try:
            if delta.is_snapshot:
                book.apply_snapshot(delta)
                applied = True
            else:
                applied = book.apply(delta)
        except SequenceGap:
            self.sequence_gaps += 1
            return False
        if not applied or book.needs_resync:
            return applied
        crossed = book.crossed
        if crossed:
            self.crossed_updates += 1
        if self.resting:
            level_qty = book.level_qty
            queue = self.queue
            waiting = False
            for order in self.resting:
                if order.queue_known:
                    order.queue_ahead = queue.on_level(order.queue_ahead, level_qty(order.side, order.price))  # type: ignore[arg-type]
                else:
                    waiting = True
            if waiting and not crossed:
                self._join(delta.ts_recv)
        return applied

    def usable(self) -> bool:
        """True when orders can trade against the recorded book: it is known and not crossed."""
        book = self.book
        return not book.needs_resync and not book.crossed

    def take_joined(self) -> list[Any]:
        """The reports of orders that waited for the book and crossed it once it was known (see the module's
        docstring); a driver calling :meth:`apply_depth` itself collects them here."""
        joined, self.joined = self.joined, []
        return list(joined)

    def _join(self, ts: int) -> None:
        """The book is known again: each order that came while it was not is worked as if it arrived now, in arrival
        order. One that crosses takes liquidity up to its price (a GTC order, the only kind that waits); what is left
        joins the back of its level."""
        book = self.book
        # a venue pickled before it had a list of its own reads the class's empty tuple
        joined: list[Any] = self.joined if "joined" in self.__dict__ else []  # type: ignore[assignment]
        self.joined = joined
        for order in [o for o in self.resting if not o.queue_known]:
            order.queue_known = True
            price = order.price
            assert price is not None  # only limit orders rest
            buy = order.side is _BUY
            best = book.best_ask() if buy else book.best_bid()
            if best is not None and (best[0] <= price if buy else best[0] >= price):
                self._take(order, price, False, ts, joined)
            if order.open:
                order.queue_ahead = self.queue.on_arrival(book.level_qty(order.side, price))

    def on_trade(self, trade: Trade) -> list[Any]:
        """A recorded trade: advance the queues of resting orders at its price, fill what it reaches or trades
        through; returns the fills' reports."""
        reports: list[Any] = []
        self._trade(trade, reports)
        return reports

    def _trade(self, trade: Trade, reports: list[Any]) -> None:
        if trade.symbol != self.symbol:
            raise InvalidInput(f"event of {trade.symbol} on the {self.symbol} venue")
        self.last_trade_price = trade.price
        if not self.resting:
            return
        price = trade.price
        ts = trade.ts_recv
        sell_aggressor = trade.aggressor is Side.SELL
        available = trade.qty  # what the trade can give our orders resting exactly at its price
        own_ahead = 0  # what our earlier orders resting at its price still had: they stand ahead of later ones
        on_trade = self.queue.on_trade
        step = self.instrument.qty_step
        for order in list(self.resting):
            if not order.open:
                continue
            buy = order.side is _BUY
            if buy != sell_aggressor:
                continue  # a trade by an aggressor on our own side never reaches our order
            leaves = order.qty - order.filled
            limit = order.price
            assert limit is not None  # only limit orders rest
            if (price < limit) if buy else (price > limit):
                self._fill(order, limit, leaves, True, ts, reports)  # traded through our price: all of it
            elif price == limit and order.queue_known:
                order.queue_ahead, reach = on_trade(order.queue_ahead, trade.qty)
                qty = min(reach - own_ahead, leaves, available) // step * step
                own_ahead += leaves
                if qty > 0:
                    available -= qty
                    self._fill(order, limit, qty, True, ts, reports)

    def protect_price(self, side: Side, rate: int) -> int:
        """The worst fill price for a market order sent now: the best recorded opposite price moved ``rate``
        (fraction, 1e-8 units) against the trader, on tick, then slipped like a fill at that level would be.

        It is fixed when the order is sent, from the market the trader saw (like Binance's market order price
        protection). While the book shows no opposite price (before the first snapshot, while it resyncs, or crossed)
        the last recorded trade price stands in for it, as the kernel of a paper or live engine protects with the
        last price it saw: the order is sent, and expires (``NO_LIQUIDITY``) if it arrives with still nothing to take.
        0 before any book or trade: the kernel then rejects the order (``NO_REFERENCE_PRICE``), with no price to
        reserve a buy's funds at, as every engine rejects a market order before its first price.
        """
        buy = side is _BUY
        best = None
        if self.usable():
            best = self.book.best_ask() if buy else self.book.best_bid()
        price = best[0] if best is not None else self.last_trade_price
        if not price:
            return 0
        tick = self.instrument.price_tick
        if buy:
            protect = ceil_div(price * (SCALE + rate), SCALE * tick) * tick
        else:
            protect = max(tick, price * (SCALE - rate) // (SCALE * tick) * tick)
        return self.slippage.adjust(buy, protect, tick)

    def mark(self) -> int:
        """The recorded mid price, or the last recorded trade price while the book is not synced or is crossed (0
        before any)."""
        book = self.book
        if self.usable():
            mid = book.mid()
            if mid is not None:
                return mid
        return self.last_trade_price

    def status(self) -> dict[str, Any]:
        return {
            "venue": self.name,
            "symbol": self.symbol,
            "in_flight": len(self.in_flight),
            "working_orders": len(self.orders),
            "trades": self.trade_id,
            "cancels_too_late": self.cancels_too_late,
            "sequence_gaps": self.sequence_gaps,
            "crossed_updates": self.crossed_updates,
            "synced": not self.book.needs_resync,
        }

    # ------------------------------------------------------------------------------------------------- arrivals

    def _send(self, request: SubmitOrder | SubmitCancel) -> None:
        arrival = request.ts + self.latency.entry_ns()
        if arrival < self.last_arrival:
            arrival = self.last_arrival  # one connection: requests arrive in the order they were sent
        self.last_arrival = arrival
        self.in_flight.append((arrival, request))

    def _cancel_now(self, request: SubmitCancel, ts: int, reports: list[Any]) -> None:
        order = self.orders.get((request.account_id, request.client_order_id))  # _close takes it out
        if order is None:
            self.cancels_too_late += 1
            reports.append(
                VenueCancelRejected(
                    venue=self.name,
                    client_order_id=request.client_order_id,
                    account_id=request.account_id,
                    symbol=request.symbol,
                    reason=RejectReason.ORDER_NOT_OPEN,
                    detail="the order is no longer working",
                    ts=ts,
                )
            )
            return
        self._close(order)
        reports.append(
            VenueOrderCancelled(
                venue=self.name,
                client_order_id=order.client_order_id,
                account_id=order.account_id,
                symbol=self.symbol,
                reason=RejectReason.USER_CANCEL,
                ts=ts,
            )
        )

    def _accept(self, request: SubmitOrder, ts: int, reports: list[Any]) -> None:
        """An order arrives: its reports (accepted, fills, expiry) go to ``reports``."""
        self.next_order_id += 1
        order = _Order(request, str(self.next_order_id), self.instrument.max_qty)
        first = len(reports)  # the reports of earlier arrivals come before
        reports.append(
            VenueOrderAccepted(
                venue=self.name,
                client_order_id=order.client_order_id,
                account_id=order.account_id,
                symbol=self.symbol,
                venue_order_id=order.venue_order_id,
                ts=ts,
            )
        )
        self.orders[(order.account_id, order.client_order_id)] = order
        book = self.book
        synced = self.usable()
        command = request.command
        if command.order_type is _MARKET:
            spent = synced and self._take(order, request.limit, True, ts, reports)  # type: ignore[arg-type]
            if order.by_quote and order.filled and (spent or self.semantics < 7):
                last = max(i for i in range(first, len(reports)) if type(reports[i]) is VenueOrderFilled)
                reports[last] = replace(reports[last], leaves_qty=0)  # it spent what it could: done
                self._close(order)
            elif order.open:
                self._expire(order, RejectReason.NO_LIQUIDITY, ts, reports)
            return
        price = order.price
        assert price is not None  # the kernel sends limit orders with their price
        if not synced:  # nothing to take from or check against: only a GTC order can wait for the book
            if command.tif is not TimeInForce.GTC:
                self._expire(order, RejectReason.NO_LIQUIDITY, ts, reports)
                return
            order.queue_known = False
            self.resting.append(order)
            return
        buy = order.side is _BUY
        best = book.best_ask() if buy else book.best_bid()
        if best is not None and (best[0] <= price if buy else best[0] >= price):
            tif = command.tif
            if tif is TimeInForce.POST_ONLY:
                self._expire(order, RejectReason.WOULD_TAKE_LIQUIDITY, ts, reports)
                return
            if tif is TimeInForce.FOK and self._available(buy, price, order.qty) < order.qty:
                self._expire(order, RejectReason.FOK_NOT_FILLABLE, ts, reports)
                return
            self._take(order, price, False, ts, reports)
        if not order.open:
            return
        if command.tif is TimeInForce.IOC or command.tif is TimeInForce.FOK:
            self._expire(order, RejectReason.IOC_UNFILLED, ts, reports)
            return
        order.queue_ahead = self.queue.on_arrival(book.level_qty(order.side, price))
        self.resting.append(order)

    def _levels(self, buy: bool, depth: int) -> tuple[tuple[int, int], ...]:
        """The best ``depth`` recorded levels of the side a buy (sell) takes from; the best one is O(1)."""
        if depth == 1:
            best = self.book.best_ask() if buy else self.book.best_bid()
            return () if best is None else (best,)
        bids, asks = self.book.depth(depth)
        return asks if buy else bids

    def _available(self, buy: bool, limit: int, wanted: int) -> int:
        """What :meth:`_take` could fill up to ``limit``: each level's quantity in whole steps."""
        step = self.instrument.qty_step
        depth = 32
        while True:
            levels = self._levels(buy, depth)
            total = 0
            for price, qty in levels:
                if (price > limit) if buy else (price < limit):
                    return total
                total += qty // step * step
                if total >= wanted:
                    return total
            if len(levels) < depth:
                return total
            depth *= 4

    def _take(self, order: _Order, limit: int, market: bool, ts: int, reports: list[Any]) -> bool:
        """Walk the recorded opposite side, best first, while the fill price is within ``limit``; the book itself
        is not changed. True when an order by quote amount spent its budget: it could not pay for one more step of the
        level it reached, or the book or the limit ran out when its budget could not pay for a step even at its last
        fill's price."""
        buy = order.side is _BUY
        tick = self.instrument.price_tick
        step = self.instrument.qty_step
        adjust = self.slippage.adjust
        by_quote = order.by_quote
        depth = 1  # most orders fill within the best level: look deeper only when they do not
        seen = 0
        last = 0  # the last fill's price
        while True:
            levels = self._levels(buy, depth)
            for price, level_qty in levels[seen:]:
                fill_price = adjust(buy, price, tick) if market else price
                if fill_price <= 0 or ((fill_price > limit) if buy else (fill_price < limit)):
                    return by_quote and last > 0 and not self._affordable(order, last, step, step)
                if level_qty < step:
                    continue  # less than one step shown at this level: nothing of it can be taken
                if by_quote:
                    qty = self._affordable(order, fill_price, level_qty, step)
                    if qty <= 0:
                        return True  # not one more step affordable (deeper levels cost more)
                else:
                    qty = min(level_qty, order.qty - order.filled) // step * step
                    if qty <= 0:
                        continue
                self._fill(order, fill_price, qty, False, ts, reports)
                last = fill_price
                if not order.open:
                    return False
            if len(levels) < depth:
                return by_quote and last > 0 and not self._affordable(order, last, step, step)
            seen = len(levels)
            depth = 32 if depth == 1 else depth * 4

    def _affordable(self, order: _Order, price: int, level_qty: int, step: int) -> int:
        """The most whole steps of ``level_qty`` an order by quote amount can still pay for at ``price``, fee
        included, and no more than the instrument lets one order buy."""
        budget = order.budget
        rate = self.fees.taker_rate
        qty = budget * SCALE * SCALE // (price * (SCALE + rate)) // step * step
        qty = min(qty, level_qty // step * step, (order.qty - order.filled) // step * step)
        while qty > 0:
            notional = price * qty // SCALE
            fee = ceil_div(order.fee_numerator + notional * rate, SCALE) - order.fees_paid
            if notional + fee <= budget:
                return qty
            qty -= step
        return 0

    def _fill(self, order: _Order, price: int, qty: int, maker: bool, ts: int, reports: list[Any]) -> None:
        notional, remainder = divmod(price * qty, SCALE)
        if remainder:
            raise DataError(
                f"fill {format_decimal(qty)} @ {format_decimal(price)} has no exact notional: the book's price is "
                f"off the instrument's tick {format_decimal(self.instrument.price_tick)}"
            )
        fee, order.fee_numerator = self.fees.fee(order.fee_numerator, order.fees_paid, notional, maker)
        order.fees_paid += fee
        order.filled += qty
        inst = self.instrument
        base, quote = inst.base_asset, inst.quote_asset
        received = self.received
        if order.side is _BUY:
            received[quote] = received.get(quote, 0) + notional
            received[base] = received.get(base, 0) - qty
        else:
            received[base] = received.get(base, 0) + qty
            received[quote] = received.get(quote, 0) - notional
        if fee:
            self.fees_charged[quote] = self.fees_charged.get(quote, 0) + fee
        if order.by_quote:
            order.budget -= notional + fee
        self.trade_id += 1
        reports.append(
            VenueOrderFilled(
                venue=self.name,
                client_order_id=order.client_order_id,
                account_id=order.account_id,
                symbol=self.symbol,
                venue_order_id=order.venue_order_id,
                trade_id=self.trade_id,
                price=price,
                qty=qty,
                fee=fee,
                fee_asset=quote,
                liquidity=Liquidity.MAKER if maker else Liquidity.TAKER,
                leaves_qty=order.qty - order.filled,
                ts=ts,
            )
        )
        if not order.by_quote and order.filled == order.qty:
            self._close(order)

    def _expire(self, order: _Order, reason: RejectReason, ts: int, reports: list[Any]) -> None:
        self._close(order)
        reports.append(
            VenueOrderExpired(
                venue=self.name,
                client_order_id=order.client_order_id,
                account_id=order.account_id,
                symbol=self.symbol,
                reason=reason,
                ts=ts,
            )
        )

    def _close(self, order: _Order) -> None:
        self.orders.pop((order.account_id, order.client_order_id), None)
        if order.open:
            order.open = False
            if order in self.resting:
                self.resting = [o for o in self.resting if o is not order]
