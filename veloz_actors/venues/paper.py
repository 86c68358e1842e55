"""Paper trading: orders fill in simulation against a live exchange's book.

:class:`PaperVenue` is the recorded-market venue (:class:`~veloz_actors.venues.l2replay.L2ReplayVenue`) fed with
live market data instead of a file: the market-data client (:mod:`veloz_actors.venues.binance.market_data`) hands
it the depth snapshot of every (re)sync and each diff the client's book applied after it, and the public trades, so
its book is the live book. The rules are the L2 backtest's, so a strategy paper-trades exactly as it backtests:

* a market order walks the live opposite side level by level within its protect price;
* a limit order that crosses takes liquidity up to its price; a ``GTC`` / ``POST_ONLY`` remainder rests, behind the
  quantity the book showed at its price, and fills under the conservative queue model (public trades at its price
  eat the queue ahead first; a trade through its price fills it whole);
* our fills never change the live book (our orders are small against the market).

Unlike the backtest there is no modelled latency: a request takes effect the moment the kernel sends it, at its
own timestamp, or at the one before it when its own is earlier (requests come from several sources, strategies in
their own processes, the API, the kill switch, each stamped by its own clock: one never waits for a later one). While the book resyncs (after a gap or a reconnect) market orders expire ``NO_LIQUIDITY`` and
limit orders rest without taking: an order never fills against a book that may be wrong. The client says when its
book became unknown with a *book reset* (``BookDelta(is_snapshot=True, last_update_id=-1)``, no levels; a real update
id is never negative): the venue's book is then unsynced until the next snapshot. The reset is a market input like
any diff, journaled and replayed with them.

The venue is every fill's counterparty: :meth:`PaperVenue.totals` is what it took in, net, per asset, so the
kernel's accounts plus the venue hold exactly what the accounts were given (:meth:`PaperVenue.deposited` is empty).
"""

from __future__ import annotations

from typing import Any

from .._exceptions import InvalidInput
from ..core.instruments import Instrument
from ..messages import BookDelta, SubmitCancel, SubmitOrder, Trade
from .fill_models import FeeModel
from .l2replay import L2ReplayVenue

__all__ = ["PAPER_VENUE", "PaperVenue"]

PAPER_VENUE = "BINANCE-PAPER"


class PaperVenue(L2ReplayVenue):
    """One symbol's paper venue over live market data. Not thread-safe: one caller at a time."""

    def __init__(self, instrument: Instrument, *, name: str = PAPER_VENUE, fees: FeeModel | None = None) -> None:
        super().__init__(instrument, market="spot", fees=fees, name=name)
        self.market_events = 0

    def submit(self, request: SubmitOrder) -> list[Any]:
        """Take an order: it works at once, against the book as it is now."""
        reports = super().submit(request)
        return reports or self.on_clock(max(request.ts, self.last_arrival))

    def cancel(self, request: SubmitCancel) -> list[Any]:
        """Take a cancel: it works at once."""
        super().cancel(request)
        return self.on_clock(max(request.ts, self.last_arrival))  # arrivals never go back: see the module docstring

    consumes_market = True  # its drivers hand it the live market data
    # class defaults: a venue pickled (a journal snapshot) before these existed still works
    book_resets = 0
    last_trade_id = -1

    def on_market(self, event: Any) -> list[Any]:
        """A live depth snapshot, diff or book reset, or a public trade: returns the fills it causes.

        An event it already has changes nothing, so a batch delivered again (to a venue actor that restarted while
        applying it) is harmless: a trade whose id is not above the last one's (Binance numbers each symbol's trades
        in order), a snapshot not newer than the synced book, and (as the book does) a diff not newer than it."""
        kind = type(event)
        if kind is Trade:
            if event.trade_id <= self.last_trade_id:
                return []
            self.last_trade_id = event.trade_id
        elif (
            kind is BookDelta
            and event.is_snapshot
            and 0 <= event.last_update_id <= self.book.last_update_id  # a book reset (id -1) always applies
            and not self.book.needs_resync
        ):
            return []
        if kind is BookDelta and event.last_update_id < 0 and event.is_snapshot:
            if event.symbol != self.symbol:
                raise InvalidInput(f"event of {event.symbol} on the {self.symbol} venue")
            self.market_events += 1
            self.book_resets += 1
            self.book.apply_snapshot(event)  # unsynced until a snapshot; not apply_depth: the queues ahead stay
            return []
        if kind is BookDelta or kind is Trade:
            self.market_events += 1
            return super().on_market(event)
        return []

    def totals(self) -> dict[str, int]:
        """Per asset: the net amount the venue took in from the traders (its side of every fill)."""
        return dict(self.received)

    @property
    def deposited(self) -> dict[str, int]:
        return {}

    def status(self) -> dict[str, Any]:
        status = super().status()
        status["market_events"] = self.market_events
        status["book_resets"] = self.book_resets
        status["last_update_id"] = self.book.last_update_id
        return status
