"""What the actors on the market-data path share about batches: market data crosses between them as columnar
:class:`~veloz_actors.core.market_batch.MarketBatch` items (a list of messages is still taken everywhere)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core.market_batch import MarketBatch
from ..messages import BookTop

__all__ = ["MarketBatch", "as_events", "remember_market"]


def remember_market(batch: Sequence[object] | MarketBatch, tops: dict[str, BookTop]) -> None:
    """Keep the latest top of book per symbol from a batch of market events (a venue actor's answer to ``top``)."""
    if type(batch) is MarketBatch:
        tops.update(batch.latest())
        return
    for event in batch:
        if type(event) is BookTop:
            tops[event.symbol] = event  # type: ignore[attr-defined]


def as_events(items: Sequence[Any]) -> list[Any]:
    """A subscriber's items (messages, and columnar batches of market data) as the core's messages, in order."""
    out: list[Any] = []
    for item in items:
        if type(item) is MarketBatch:
            out.extend(item.events())
        else:
            out.append(item)
    return out
