"""The venue protocol: the one seam between the trading kernel and every exchange, real or simulated.

A venue takes the kernel's requests and answers with execution reports carrying its own ids::

    kernel.apply(PlaceOrder(...))        -> OrderAccepted (the kernel's step: risk, reservation, state)
    kernel.take_outbox()                 -> [SubmitOrder(...)]
    venue.submit(request)                -> [VenueOrderAccepted, VenueOrderFilled, ...]
    kernel.apply(report)                 -> OrderFilled, PositionUpdated, AccountUpdated, ...

``submit`` and ``cancel`` return the reports the venue can give at once (an in-process venue gives them all; a remote
one may return none and emit them later). ``on_market`` and ``on_clock`` are optional: a venue that matches against
market data or a clock returns the reports and market events they cause. Reports are idempotent (the kernel books a
fill once however often it is sent), so a venue may re-send them after a restart.

Implementations: :class:`~veloz_actors.venues.sim.SimVenue` (matching + the seeded market maker, one per symbol),
:class:`~veloz_actors.venues.l2replay.L2ReplayVenue` (a recorded Binance book with queue and latency models).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ..messages import SubmitCancel, SubmitOrder

__all__ = ["Venue"]


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
