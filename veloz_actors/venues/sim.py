"""The simulated exchange: one symbol's matching engine and its seeded market maker, behind the venue protocol.

:class:`SimVenue` is the exchange's side of :class:`~veloz_actors.core.kernel.TradingKernel`: it takes the kernel's
:class:`~veloz_actors.messages.SubmitOrder` and :class:`~veloz_actors.messages.SubmitCancel` requests and answers
with execution reports, as Binance does for a spot symbol:

- price-time priority; limit, market (up to the kernel's protect price), IOC, FOK and post-only (Binance
  ``LIMIT_MAKER``: rejected if it would trade at once); partial fills; trades at the maker's price;
- a market buy by quote amount spends at most that much, fees included, in whole steps: its last fill closes it
  (``leaves_qty`` 0) when its budget stopped it, and it expires (``NO_LIQUIDITY``) after its fills when the book
  within its protect price ran out first, as Binance expires a market order that exhausted the book (journals of
  semantics 6 or less, :data:`~veloz_actors.core.journal.SEMANTICS`: its last fill closed it either way);
- self-trade prevention ``EXPIRE_TAKER``: a taker never trades with an order of its own account, its rest expires;
- fees: maker or taker rate of the instrument, each order's total ``ceil(sum(rate x notional))`` charged as it
  accrues, in the quote asset;
- the seeded market maker (:class:`~veloz_actors.venues.simmarket.SimMarket`) quotes a ladder around a price process
  on every clock step (:meth:`SimVenue.on_clock`); its quotes are real orders of the venue's own ``sim-mm`` account,
  funded from its own ledger, so money is conserved across the kernel and the venue together, exactly.

The venue is deterministic: the same requests and clock steps give the same reports, byte for byte. Its market maker
draws from a generator seeded by (seed, symbol), so prices do not depend on how symbols are sharded over actors.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from .._exceptions import VenueFailed
from ..core.account import Ledger
from ..core.instruments import Instrument, ceil_div
from ..core.journal import SEMANTICS
from ..fixed import SCALE, format_decimal
from ..messages import (
    BookTop,
    Liquidity,
    OrderType,
    RejectReason,
    Side,
    SubmitCancel,
    SubmitOrder,
    TimeInForce,
    VenueCancelRejected,
    VenueOrderAccepted,
    VenueOrderCancelled,
    VenueOrderExpired,
    VenueOrderFilled,
    VenueOrderRejected,
    builder,
    members,
)
from .l2replay import L2ReplayVenue
from .matching import Fill, OrderBook, VenueOrder
from .simmarket import SimMarket, SimSymbol

__all__ = ["MM_ACCOUNT", "SimVenue", "use_semantics"]

# enum members read on the hot paths (messages.members: a module object's attributes, ~10x cheaper to read)
_Side = members(Side)
_OrderType = members(OrderType)
_TimeInForce = members(TimeInForce)
_Liquidity = members(Liquidity)
_RejectReason = members(RejectReason)

MM_ACCOUNT = "sim-mm"
_SEEN_LIMIT = 200_000  # re-sent requests are recognised among this many latest orders, and every order still working
# the reports, built as their classes build them, cheaper (messages.builder): one or more per request
_accepted, _filled, _cancelled = builder(VenueOrderAccepted), builder(VenueOrderFilled), builder(VenueOrderCancelled)
_expired, _rejected, _book_top = builder(VenueOrderExpired), builder(VenueOrderRejected), builder(BookTop)


class SimVenue:
    """One symbol's simulated exchange. Not thread-safe: one caller at a time.

    ``semantics`` is that of the journal the venue's inputs are in (its driver sets it after it opened or restored
    one): a journal keeps the market's rule it was written under (:mod:`~veloz_actors.venues.simmarket`)."""

    semantics = SEMANTICS  # (a class default: a venue restored from a snapshot written before has none of its own)

    def __init__(
        self,
        instrument: Instrument,
        *,
        market: SimSymbol | None = None,
        seed: int = 7,
        maker_balances: dict[str, int] | None = None,
        name: str = "SIM",
    ) -> None:
        self.name = name
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.book = OrderBook(instrument.symbol)
        self.orders: dict[tuple[str, str], VenueOrder] = {}  # the trader's resting orders
        # (account, client order id) of the latest _SEEN_LIMIT orders submitted, and their order of arrival
        self.seen: set[tuple[str, str]] = set()
        self.seen_order: deque[tuple[str, str]] = deque()
        self.trade_id = 0
        self.next_order_id = 0
        self.last_clock = -1
        self.market = SimMarket((market,), _symbol_seed(seed, instrument.symbol)) if market is not None else None
        self.maker = Ledger()  # the market maker's (and a backtest's liquidity provider's) own money
        self.maker_orders: list[VenueOrder] = []
        for asset, amount in sorted((maker_balances or {}).items()):
            if asset in (instrument.base_asset, instrument.quote_asset):
                self.maker.deposit(MM_ACCOUNT, asset, amount)

    # ----------------------------------------------------------------------------------------- the venue protocol

    @property
    def mid(self) -> int | None:
        """The market maker's current mid price (None without a simulated market)."""
        return self.market.mids[self.symbol] if self.market is not None else None

    def submit(self, request: SubmitOrder) -> list[Any]:
        """Take one order; return its execution reports (accepted or rejected, fills, expiry) in order."""
        command = request.command
        key = (command.account_id, command.client_order_id)
        seen = self.seen
        if key in seen:
            return []  # a re-sent request: the venue has it, and its reports were already given
        if command.symbol != self.symbol:
            return [self._rejected(request, _RejectReason.UNKNOWN_SYMBOL, f"this venue trades {self.symbol}")]
        seen.add(key)
        seen_order = self.seen_order
        seen_order.append(key)
        if len(seen_order) > _SEEN_LIMIT:
            # forget the oldest; one still working goes to the back instead (a request for it sent again must not make
            # a second order), and the next is looked at
            for _ in range(2):
                oldest = seen_order.popleft()
                if oldest not in self.orders:
                    seen.discard(oldest)
                    break
                seen_order.append(oldest)
        book = self.book
        side = command.side
        tif = command.tif
        if tif is _TimeInForce.POST_ONLY and book.would_cross(side, command.price):  # type: ignore[arg-type]
            return [self._rejected(request, _RejectReason.WOULD_TAKE_LIQUIDITY, "post-only order would trade at once")]
        self.next_order_id += 1
        venue_order_id = str(self.next_order_id)
        inst = self.instrument
        order = VenueOrder.from_request(request, venue_order_id, inst.max_qty)
        ts = command.ts
        reports: list[Any] = [
            _accepted(
                venue=self.name,
                client_order_id=command.client_order_id,
                account_id=command.account_id,
                symbol=self.symbol,
                venue_order_id=venue_order_id,
                ts=ts,
            )
        ]
        limit = request.limit
        try:
            if tif is _TimeInForce.FOK and not book.fillable(side, limit, command.qty, order.account_id):
                reports.append(self._expired(order, _RejectReason.FOK_NOT_FILLABLE, ts))
                return reports
            by_quote = order.quote_qty is not None
            # journals of semantics 6 or less: an order by quote amount is done when matching stops (its last fill
            # says so: nothing left to work), whether its budget or the book ran out first
            quote_done = by_quote and self.semantics < 7
            self_trade = False
            if tif is not _TimeInForce.POST_ONLY and limit is not None and book.would_cross(side, limit):
                self_trade = self._match(
                    order, limit, ts, reports, last_done=quote_done,
                    budget=order.quote_qty, fee_rate=inst.taker_fee_rate, qty_step=inst.qty_step,
                )  # fmt: skip
            if quote_done:
                if not order.filled:
                    reports.append(self._expired(order, _RejectReason.NO_LIQUIDITY, ts))
            elif by_quote:
                if (
                    order.filled
                    and not self_trade
                    and ((limit is not None and book.would_cross(side, limit)) or _spent(order, reports, inst))
                ):  # it stopped with the book still there, or could not pay for one more step: budget spent
                    _close_with_last_fill(reports, order)
                else:  # the book (within its limit) ran out first, or its own order stood next: as Binance, expired
                    reason = _RejectReason.SELF_TRADE_PREVENTED if self_trade else _RejectReason.NO_LIQUIDITY
                    reports.append(self._expired(order, reason, ts))
            elif order.filled == order.qty:  # nothing left
                pass
            elif self_trade:
                reports.append(self._expired(order, _RejectReason.SELF_TRADE_PREVENTED, ts))
            elif command.order_type is _OrderType.MARKET:
                reports.append(self._expired(order, _RejectReason.NO_LIQUIDITY, ts))
            elif tif is _TimeInForce.IOC or tif is _TimeInForce.FOK:
                reports.append(self._expired(order, _RejectReason.IOC_UNFILLED, ts))
            else:
                self.orders[key] = order
                book.rest(order)
        except Exception as exc:
            raise VenueFailed(reports) from exc  # what it did before it raised (fills) is delivered all the same
        return reports

    def cancel(self, request: SubmitCancel) -> list[Any]:
        """Cancel one resting order; a cancel for an order the venue no longer works is rejected."""
        key = (request.account_id, request.client_order_id)
        order = self.orders.get(key)
        if order is None:
            known = (request.account_id, request.client_order_id) in self.seen
            return [
                VenueCancelRejected(
                    venue=self.name,
                    client_order_id=request.client_order_id,
                    account_id=request.account_id,
                    symbol=request.symbol,
                    reason=_RejectReason.ORDER_NOT_OPEN if known else _RejectReason.UNKNOWN_ORDER,
                    detail="the order is no longer working" if known else "the venue has no such order",
                    ts=request.ts,
                )
            ]
        self.book.remove(order)
        del self.orders[key]  # after the book: a removal that raised leaves the order where drop_order finds it
        return [
            _cancelled(
                venue=self.name,
                client_order_id=order.client_order_id,
                account_id=order.account_id,
                symbol=self.symbol,
                reason=_RejectReason.USER_CANCEL,
                ts=request.ts,
            )
        ]

    def drop_order(self, account_id: str, client_order_id: str) -> None:
        """Stop working an order whose submit or cancel raised (see :func:`~veloz_actors.venues.base.guarded`).
        Every working order is in ``orders`` from before it rests until after it left the book."""
        order = self.orders.pop((account_id, client_order_id), None)
        if order is not None:
            self.book.remove(order)

    def on_market(self, event: Any) -> list[Any]:
        """Market data from a feed: the simulated venue matches only against its own book, so nothing changes."""
        return []

    def on_clock(self, ts: int) -> list[Any]:
        """One step of the simulated market: the maker re-quotes around the new mid (which may fill resting orders);
        returns those fills' reports, then the new top of book. A step at or before the last one does nothing."""
        market = self.market
        if market is None or ts <= self.last_clock:
            return []
        self.last_clock = ts
        inst = self.instrument
        symbol = self.symbol
        tick = inst.price_tick
        market.step({symbol: tick}, rounded_down=self.semantics < 6)
        reports: list[Any] = []
        try:
            self.withdraw()
            bids, asks = market.ladder(symbol, tick)
            qty = market.symbols[symbol].level_qty
            for side, prices in ((_Side.BUY, bids), (_Side.SELL, asks)):
                for price in prices:
                    self.offer(side, price, qty, ts, reports)
        except Exception as exc:
            raise VenueFailed(reports) from exc  # the fills of resting orders before it raised: delivered
        bid, bid_qty, ask, ask_qty = self.book.top()
        reports.append(
            _book_top(
                symbol=symbol,
                bid_price=bid,
                bid_qty=bid_qty,
                ask_price=ask,
                ask_qty=ask_qty,
                update_id=ts,
                ts_event=ts,
                ts_recv=ts,
            )
        )
        return reports

    # ------------------------------------------------------------------------------------------ the venue's money

    def offer(self, side: Side, price: int, qty: int, ts: int, reports: list[Any]) -> bool:
        """Put the venue's own liquidity on the book (a market-maker quote): it trades with resting orders it
        crosses (their reports go to ``reports``) and rests otherwise. False if the maker cannot fund it."""
        inst = self.instrument
        if side is _Side.BUY:
            notional = price * qty // SCALE
            asset, amount = inst.quote_asset, notional + ceil_div(notional * inst.max_fee_rate, SCALE)
        else:
            asset, amount = inst.base_asset, qty
        if not self.maker.reserve(MM_ACCOUNT, asset, amount):
            return False
        self.next_order_id += 1
        order = VenueOrder(
            client_order_id=f"mm-{self.next_order_id}",
            account_id=MM_ACCOUNT,
            side=side,
            price=price,
            qty=qty,
            venue_order_id=str(self.next_order_id),
            internal=True,
        )
        order.reserved = amount
        book = self.book
        if book.would_cross(side, price):
            try:
                self._match(order, price, ts, reports)
            except Exception:
                self._release_maker(order)  # it never rests: what the quote still holds goes back to the maker
                raise
        if order.leaves:
            book.rest(order)
            self.maker_orders.append(order)
        else:
            self._release_maker(order)
        return True

    def withdraw(self) -> None:
        """Take every one of the venue's own quotes off the book and unlock what they reserved."""
        book = self.book
        for order in self.maker_orders:
            if order.resting:
                book.remove(order)
            self._release_maker(order)
        self.maker_orders.clear()

    def _release_maker(self, order: VenueOrder) -> None:
        if order.reserved > 0:
            inst = self.instrument
            asset = inst.quote_asset if order.side is _Side.BUY else inst.base_asset
            self.maker.release(MM_ACCOUNT, asset, order.reserved)
            order.reserved = 0

    def _match(
        self, taker: VenueOrder, limit: int, ts: int, reports: list[Any], *, last_done: bool = False, **terms: Any
    ) -> bool:
        """Match ``taker`` up to ``limit`` (``terms``: :meth:`OrderBook.match`'s budget and steps) and settle its
        fills; returns whether matching stopped at the taker's own order. Should matching raise part-way, the fills
        it made are settled before the exception goes on: they moved the makers' quantities, which the kernel must
        book (the taker's remainder is then expired by :func:`~veloz_actors.venues.base.guarded`)."""
        fills: list[Fill] = []
        try:
            _, self_trade = self.book.match(taker, limit, into=fills, **terms)
        except Exception:
            if fills:
                self._settle(taker, fills, ts, reports)
            raise
        if fills:
            self._settle(taker, fills, ts, reports, last_done=last_done)
        return self_trade

    def _settle(
        self, taker: VenueOrder, fills: list[Fill], ts: int, reports: list[Any], *, last_done: bool = False
    ) -> None:
        """Fees for both sides of every fill; reports for the trader's orders, the maker's ledger for its own.
        ``last_done``: the taker's last fill reports nothing left to work (an order by quote amount)."""
        last_maker = fills[-1][0] if last_done else None
        inst = self.instrument
        name = self.name
        symbol = self.symbol
        quote = inst.quote_asset
        taker_rate = inst.taker_fee_rate
        maker_rate = inst.maker_fee_rate
        orders = self.orders
        # matching has applied every fill to the taker already: each report says what was left after its own fill
        taker_filled = taker.filled
        for _, _, qty in fills:  # (a loop, not sum() of a generator: one frame less per match)
            taker_filled -= qty
        for maker, price, qty in fills:
            notional = price * qty // SCALE
            self.trade_id += 1
            trade_id = self.trade_id
            taker_filled += qty
            for order, rate, liquidity in (
                (taker, taker_rate, _Liquidity.TAKER),
                (maker, maker_rate, _Liquidity.MAKER),
            ):
                fee = order.charge(notional, rate)
                if order.internal:
                    self._maker_trade(order, qty, notional, fee)
                    continue
                if order is taker:
                    leaves = 0 if maker is last_maker else order.qty - taker_filled
                else:
                    leaves = order.qty - order.filled  # a maker takes one fill per match
                reports.append(
                    _filled(
                        venue=name,
                        client_order_id=order.client_order_id,
                        account_id=order.account_id,
                        symbol=symbol,
                        venue_order_id=order.venue_order_id,
                        trade_id=trade_id,
                        price=price,
                        qty=qty,
                        fee=fee,
                        fee_asset=quote,
                        liquidity=liquidity,
                        leaves_qty=leaves,
                        ts=ts,
                    )
                )
            if maker.filled == maker.qty and not maker.internal:
                orders.pop((maker.account_id, maker.client_order_id), None)

    def _maker_trade(self, order: VenueOrder, qty: int, notional: int, fee: int) -> None:
        inst = self.instrument
        order.reserved -= self.maker.fill(
            MM_ACCOUNT, buy=order.side is _Side.BUY, base=inst.base_asset, quote=inst.quote_asset, qty=qty,
            notional=notional, fee_asset=inst.quote_asset, fee=fee, locked_available=order.reserved,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------------- reports

    def _rejected(self, request: SubmitOrder, reason: RejectReason, detail: str) -> VenueOrderRejected:
        command = request.command
        return _rejected(
            venue=self.name,
            client_order_id=command.client_order_id,
            account_id=command.account_id,
            symbol=command.symbol,
            reason=reason,
            detail=detail,
            ts=command.ts,
        )

    def _expired(self, order: VenueOrder, reason: RejectReason, ts: int) -> VenueOrderExpired:
        return _expired(
            venue=self.name,
            client_order_id=order.client_order_id,
            account_id=order.account_id,
            symbol=self.symbol,
            reason=reason,
            ts=ts,
        )

    def totals(self) -> dict[str, int]:
        """Per asset: what the venue's own side (its market maker) holds now."""
        return self.maker.totals()

    @property
    def deposited(self) -> dict[str, int]:
        """Per asset: what the venue's market maker was given."""
        return dict(self.maker.deposited)

    def status(self) -> dict[str, Any]:
        """What ``STATUS`` shows of the venue, prices as decimal strings ("0" for an empty side, as a ``book_top``)."""
        bid, bid_qty, ask, ask_qty = self.book.top()
        mid = self.mid
        return {
            "venue": self.name,
            "symbol": self.symbol,
            "resting_orders": len(self.orders),
            "trades": self.trade_id,
            "best_bid": format_decimal(bid),
            "best_ask": format_decimal(ask),
            "mid": None if mid is None else format_decimal(mid),
        }


def _close_with_last_fill(reports: list[Any], order: VenueOrder) -> None:
    """An order by quote amount that spent its budget: its last fill says nothing is left to work (``leaves_qty``
    0)."""
    key = (order.account_id, order.client_order_id)
    for i in range(len(reports) - 1, -1, -1):
        report = reports[i]
        if type(report) is VenueOrderFilled and (report.account_id, report.client_order_id) == key:
            reports[i] = replace(report, leaves_qty=0)
            return


def _spent(order: VenueOrder, reports: list[Any], inst: Instrument) -> bool:
    """Whether an order by quote amount cannot pay for one more step at its last fill's price, fee included."""
    key = (order.account_id, order.client_order_id)
    fills = [r for r in reports if type(r) is VenueOrderFilled and (r.account_id, r.client_order_id) == key]
    if not fills or order.quote_qty is None:
        return False
    spent = sum(f.price * f.qty // SCALE for f in fills) + order.fees_paid
    notional = fills[-1].price * inst.qty_step // SCALE
    fee = ceil_div(order.fee_numerator + notional * inst.taker_fee_rate, SCALE) - order.fees_paid
    return spent + notional + fee > order.quote_qty


def _symbol_seed(seed: int, symbol: str) -> list[int]:
    """The market maker's generator seed for one symbol: the engine's seed and the symbol, stable across machines."""
    return [seed, zlib.crc32(symbol.encode())]


def use_semantics(venues: Iterable[Any], semantics: int) -> None:
    """Give the simulated and recorded-market venues among ``venues`` the rules of a journal of ``semantics``
    (their driver's, once it opened or restored one): a journal keeps the rules it was written under (the market's,
    :mod:`.simmarket`; a market buy by quote amount's end, :mod:`.l2replay`)."""
    for venue in venues:
        if isinstance(venue, (SimVenue, L2ReplayVenue)):
            venue.semantics = semantics
