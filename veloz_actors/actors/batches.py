"""Market data in columnar batches: the hot feed -> book -> subscriber path pays Ray's per-call cost per batch and
pickles one numpy array (out of band, no per-event objects) instead of a thousand small dataclasses.

A :class:`BookTopBatch` holds top-of-book updates as rows of a structured array (integer ticks and nanoseconds, as
in the core's :class:`~veloz_actors.messages.BookTop`); :meth:`BookTopBatch.events` turns it back into the core's
frozen messages at the edge (a subscriber, a strategy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..messages import BookTop

__all__ = ["TOP_DTYPE", "BookTopBatch", "remember_market"]

TOP_DTYPE = np.dtype(
    [
        ("symbol", "u2"),
        ("bid_price", "i8"),
        ("bid_qty", "i8"),
        ("ask_price", "i8"),
        ("ask_qty", "i8"),
        ("update_id", "i8"),
        ("ts_event", "i8"),
        ("ts_recv", "i8"),
    ]
)


@dataclass(frozen=True, slots=True)
class BookTopBatch:
    """Top-of-book updates of one or more symbols; ``rows["symbol"]`` indexes ``symbols``."""

    symbols: tuple[str, ...]
    rows: np.ndarray

    def __post_init__(self) -> None:
        if self.rows.dtype != TOP_DTYPE:
            raise ValueError(f"rows must have dtype TOP_DTYPE, got {self.rows.dtype}")
        if len(self.rows) and int(self.rows["symbol"].max()) >= len(self.symbols):
            raise ValueError("a row's symbol index is outside the symbol table")

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def from_events(cls, events: Sequence[BookTop]) -> BookTopBatch:
        symbols = tuple(sorted({e.symbol for e in events}))
        index = {s: i for i, s in enumerate(symbols)}
        rows = np.array(
            [
                (index[e.symbol], e.bid_price, e.bid_qty, e.ask_price, e.ask_qty, e.update_id, e.ts_event, e.ts_recv)
                for e in events
            ],
            dtype=TOP_DTYPE,
        )
        return cls(symbols=symbols, rows=rows)

    def events(self) -> list[BookTop]:
        """The rows as the core's frozen ``BookTop`` messages, in order."""
        symbols = self.symbols
        return [
            BookTop(
                symbol=symbols[s],
                bid_price=bp,
                bid_qty=bq,
                ask_price=ap,
                ask_qty=aq,
                update_id=u,
                ts_event=te,
                ts_recv=tr,
            )
            for s, bp, bq, ap, aq, u, te, tr in self.rows.tolist()
        ]

    def latest(self) -> dict[str, BookTop]:
        """The last update of each symbol in the batch."""
        out: dict[str, BookTop] = {}
        codes = self.rows["symbol"]
        for i, symbol in enumerate(self.symbols):
            where = np.flatnonzero(codes == i)
            if len(where):
                s, bp, bq, ap, aq, u, te, tr = self.rows[where[-1]].tolist()
                out[symbol] = BookTop(
                    symbol=symbol,
                    bid_price=bp,
                    bid_qty=bq,
                    ask_price=ap,
                    ask_qty=aq,
                    update_id=u,
                    ts_event=te,
                    ts_recv=tr,
                )
        return out

    def split(self, shard_of: dict[str, str]) -> dict[str, BookTopBatch]:
        """One batch per book shard (symbols without a shard are left out)."""
        shards: dict[str, list[int]] = {}
        for i, symbol in enumerate(self.symbols):
            shard = shard_of.get(symbol)
            if shard is not None:
                shards.setdefault(shard, []).append(i)
        if len(shards) == 1:
            ((shard, codes),) = shards.items()
            if len(codes) == len(self.symbols):
                return {shard: self}
        codes_col = self.rows["symbol"]
        return {
            shard: BookTopBatch(self.symbols, self.rows[np.isin(codes_col, codes)]) for shard, codes in shards.items()
        }


def remember_market(batch: Sequence[object], tops: dict[str, BookTop]) -> None:
    """Keep the latest top of book per symbol from a batch of market events (a venue actor's answer to ``top``)."""
    if type(batch) is BookTopBatch:
        tops.update(batch.latest())
        return
    for event in batch:
        if type(event) is BookTop:
            tops[event.symbol] = event  # type: ignore[attr-defined]
