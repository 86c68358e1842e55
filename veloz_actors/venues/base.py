"""The venue protocol: the one seam between the trading kernel and every exchange, real or simulated.

A venue takes the kernel's requests and answers with execution reports carrying its own ids::

    kernel.apply(PlaceOrder(...))        -> OrderAccepted (the kernel's step: risk, reservation, state)
    kernel.take_outbox()                 -> [SubmitOrder(...)]
    venue.submit(request)                -> [VenueOrderAccepted, VenueOrderFilled, ...]
    kernel.apply(report)                 -> OrderFilled, PositionUpdated, AccountUpdated, ...

``submit`` and ``cancel`` return the reports the venue can give at once (an in-process venue gives them all; a remote
one may return none and emit them later). ``on_market`` and ``on_clock`` are optional: a venue that matches against
market data or a clock returns the reports and market events they cause. So is ``drop_order(account_id,
client_order_id)``: after its ``submit`` or ``cancel`` of an order raised, the venue stops working that order (off
its book, out of its maps, never to fill), so that the order's expiry :func:`guarded` reports is true. A call that
raises after it made reports (a match that filled some makers) raises
:class:`~veloz_actors._exceptions.VenueFailed` carrying them, from the exception. Reports are idempotent (the kernel
books a fill once however often it is sent), so a venue may re-send them after a restart.

Implementations: :class:`~veloz_actors.venues.sim.SimVenue` (matching + the seeded market maker, one per symbol),
:class:`~veloz_actors.venues.l2replay.L2ReplayVenue` (a recorded Binance book with queue and latency models).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .._exceptions import VenueFailed
from ..messages import Error, RejectReason, SubmitCancel, SubmitOrder, VenueOrderExpired

__all__ = ["BooksToResync", "Venue", "guarded", "venue_failure"]


@runtime_checkable
class Venue(Protocol):
    """What the kernel's drivers (the single-process engine, the backtests, the venue actors) call."""

    name: str

    def submit(self, request: SubmitOrder) -> list[Any]:
        """Take an order; return the execution reports known now."""
        ...

    def cancel(self, request: SubmitCancel) -> list[Any]:
        """Cancel an order; return the execution reports known now."""
        ...


class BooksToResync:
    """The symbols whose venue failed on market data, for a driver (the single-process engine, a venue shard) to hand
    to the market-data client: such a venue's book may lack what the event carried (a diff), and only the client can
    sync it again (:meth:`~veloz_actors.venues.binance.market_data.BinanceMarketData.resync`)."""

    __slots__ = ("symbols",)

    def __init__(self) -> None:
        self.symbols: set[str] = set()

    def on_market(self, venue: Any, event: Any) -> list[Any]:
        """``venue.on_market(event)`` through :func:`guarded`; the symbol is noted when the venue failed on it."""
        reports = guarded(venue, venue.on_market, event, event.ts_recv)
        if any(type(report) is Error and report.code == "VENUE_ERROR" for report in reports):
            self.symbols.add(event.symbol)
        return reports

    def take(self) -> list[str]:
        """The symbols noted since the last call, sorted."""
        symbols = sorted(self.symbols)
        self.symbols.clear()
        return symbols


def guarded(venue: Any, call: Callable[[Any], list[Any]], message: Any, ts: int) -> list[Any]:
    """``call(message)``, one of ``venue``'s ``submit``, ``cancel``, ``on_market`` or ``on_clock``, for a driver that
    applies what it returns as kernel steps: an exception it raises never escapes the step, which would leave the
    kernel's order open with its funds reserved, and the input journaled, to raise again in every replay. It becomes
    the reports instead: an ``Error`` (code ``VENUE_ERROR``) naming the venue, the input and the exception, which
    the kernel publishes, and for an order or a cancel the order's expiry (``VENUE_ERROR``), which releases what the
    order holds. A venue that raised part-way hands over what it had done before with
    :class:`~veloz_actors._exceptions.VenueFailed`: its fills moved quantity at the venue, facts as they are at an
    exchange (where no match is ever rolled back), so those reports come first. The kernel books every fill the
    venue made and expires only the remainder, and its orders and the venue's book agree again. The venue may have
    raised with the order still on its book (a cancel that failed before taking it off): its ``drop_order`` takes it
    off first, so that it never fills after the kernel closed it and released its funds. Should that raise too, the
    order expires all the same and the ``Error`` names both exceptions: kept open, it would hold its funds for good
    (no answer of the venue would ever close it), while a fill the venue may still make is booked anyway, said as
    ``FILL_AFTER_CLOSE``. The same input fails the same way in a replay, which so gives the same reports.

    >>> guarded(venue, venue.submit, request, request.ts)
    [Error(code='VENUE_ERROR', ...), VenueOrderExpired(reason=<RejectReason.VENUE_ERROR>, ...)]
    """
    try:
        return call(message)
    except Exception as exc:  # noqa: BLE001 - said in the reports (see above)
        return venue_failure(venue, call, message, ts, exc)


def venue_failure(venue: Any, call: Callable[[Any], list[Any]], message: Any, ts: int, exc: Exception) -> list[Any]:
    """The reports of ``call(message)`` that raised ``exc`` (:func:`guarded`): for a driver that makes the call inside
    its own ``try``, on a hot path, without :func:`guarded`'s extra call per request."""
    reports: list[Any] = []
    cause: BaseException = exc
    if type(exc) is VenueFailed:
        reports += exc.reports  # what the venue did before it raised: facts, booked first
        cause = exc.__cause__ or exc
    name = getattr(venue, "name", type(venue).__name__)
    request = type(message) is SubmitOrder or type(message) is SubmitCancel
    what = f"{message.account_id}/{message.client_order_id}" if request else type(message).__name__
    text = f"{name} {getattr(venue, 'symbol', '')}: {call.__name__} of {what} failed: {type(cause).__name__}: {cause}"
    drop_order = getattr(venue, "drop_order", None) if request else None
    try:
        if drop_order is not None:
            drop_order(message.account_id, message.client_order_id)
    except Exception as again:  # noqa: BLE001 - said in the Error (see above)
        text += f"; dropping the order failed too ({type(again).__name__}: {again}): the venue may still work it"
    reports.append(Error(code="VENUE_ERROR", message=text, ts=ts))
    if request:
        reports.append(
            VenueOrderExpired(
                venue=name,
                client_order_id=message.client_order_id,
                account_id=message.account_id,
                symbol=message.symbol,
                reason=RejectReason.VENUE_ERROR,
                ts=ts,
            )
        )
    return reports
