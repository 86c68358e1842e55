"""The venue actor: one shard of symbols' simulated exchange (books, matching, the seeded market maker) and its market
data books, a thin shell over :class:`~veloz_actors.actors.venue_shard.VenueShard`.

- Requests come one-way from the OMS (:meth:`VenueActor.requests`), clock steps from the feed
  (:meth:`VenueActor.clock`); each is journaled, applied, and its numbered report batch goes one-way to the OMS
  (``oms.reports``). The OMS acknowledges one-way (:meth:`VenueActor.ack`); the venue keeps every batch until then,
  holds new ones back while too many are unacknowledged, and sends them all again on a resync: at its own (re)start
  and when a restarted OMS asks (:meth:`VenueActor.resync`). It never waits for the OMS.
- The tops of book its market maker makes, and recorded market data from the feed (:meth:`VenueActor.apply`), go to
  the event bus in batches, with a bounded window of calls in flight; :meth:`VenueActor.top` answers the latest.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..logs import log_file_status
from ..messages import BookTop
from ..venues.engine import EngineConfig
from .batches import MarketBatch, remember_market
from .spec import (
    JOURNAL_LOCK_WAIT,
    CallWindow,
    EngineSpec,
    recovering,
    require_journal_dir,
    start_actor_process,
)
from .venue_shard import Batch, VenueShard

__all__ = ["VenueActor"]

_UNACKED_SENT_PER_WINDOW = 64  # batches sent but unacknowledged, per slot of the peer window, before holding back


class VenueActor:
    """One venue shard (see the module docstring)."""

    def __init__(self, spec: EngineSpec, shard: str, symbols: Sequence[str], oms: Any, bus: Any) -> None:
        start_actor_process(spec.logging, f"venue:{shard}", rebuilt=spec.rebuilt)
        self.shard = shard
        self.symbols = frozenset(symbols)
        self.oms = oms
        self.bus = bus
        self.restarted = recovering(spec)
        if self.restarted:
            require_journal_dir(spec.journal_dir, f"venue:{shard}", spec.name)
        config = EngineConfig.from_json(spec.engine_config)
        venues = {symbol: venue for symbol, venue in config.venues().items() if symbol in self.symbols}
        self.state = VenueShard(
            shard,
            venues,
            journal_path=spec.journal_path(f"venue-{shard}"),
            header=spec.engine_config,
            durability=spec.durability,  # type: ignore[arg-type]
            group_ms=spec.group_ms,
            snapshot_every=config.snapshot_every,
            lock_wait=JOURNAL_LOCK_WAIT if self.restarted else 0.0,
        )
        self.window = CallWindow(spec.peer_window)  # market data to the bus
        self.max_unacked_sent = spec.peer_window * _UNACKED_SENT_PER_WINDOW
        self.sent = 0  # the last batch number sent to the OMS
        self.token: Any = None  # the OMS's token of the last requests call taken
        self.tops: dict[str, BookTop] = dict(self.state.tops)
        self.events = 0
        self.resyncs = 0
        self.resync()  # at every start: the OMS learns where this venue is and gets what it has not acknowledged

    # --------------------------------------------------------------------------------------- orders and the clock

    def requests(self, requests: Sequence[Any], token: Any = None) -> int:
        """Take the OMS's requests (one-way); their reports go back one-way."""
        state = self.state
        for request in requests:
            state.request(request)
        self.token = token
        state.hand_to_os()
        self._send()
        return state.seq

    def clock(self, ts: int) -> int:
        """One step of the simulated market; returns the number of its batch (0: a step at or before the last)."""
        state = self.state
        batch = state.clock(ts)
        if batch is None:
            return 0
        state.hand_to_os()
        tops = [r for r in batch[1] if type(r) is BookTop]
        if tops:
            self.tops.update((t.symbol, t) for t in tops)
            self._publish(tops, drop=True)
        self._send()
        return batch[0]

    def ack(self, seq: int) -> int:
        """The OMS applied every batch up to ``seq``; send what was held back."""
        self.state.ack(seq)
        self._send()
        return self.state.acked

    def resync(self) -> int:
        """Send every unacknowledged batch again, marked as a resync (after a restart of either side)."""
        state = self.state
        self.resyncs += 1
        batches = state.outgoing(state.acked)
        self.oms.reports.remote(self.shard, batches, self.token, state.acked)
        self.sent = state.handed  # once the call went (one that raised sent nothing)
        return len(batches)

    def _send(self) -> None:
        state = self.state
        handed = state.handed  # (a batch made after it is of a step whose journal line failed: it never leaves)
        if self.sent >= handed or self.sent - state.acked >= self.max_unacked_sent:
            return  # nothing new, or too much unacknowledged: the next ack sends it
        new: list[Batch] = []
        for batch in reversed(state.unacked):
            if batch[0] <= self.sent:
                break
            if batch[0] <= handed:
                new.append(batch)
        new.reverse()  # (state.outgoing(self.sent), without a pass over every batch kept)
        self.oms.reports.remote(self.shard, new, self.token)
        self.sent = handed  # once the call went (one that raised sent nothing: the next sends it)

    # ------------------------------------------------------------------------------------------------ market data

    def apply(self, batch: Sequence[Any] | MarketBatch) -> list[str]:
        """Apply a batch of market events (recorded, or live; columnar or a list) and forward it to the bus as it
        came. Venues that trade against live market data (paper) take their symbols' diffs and trades first,
        journaled; the fills they cause go to the OMS like any report, and so does the ``Error`` of a venue that
        failed on one. Returns the symbols of those failed venues: their books may lack what the event carried, and
        the feed has the market-data client sync them again."""
        state = self.state
        if state.market_venues and state.market(batch):
            state.hand_to_os()
            self._send()
        remember_market(batch, self.tops)
        self._publish(batch)
        return state.take_books_to_resync()

    def _publish(self, events: Sequence[Any] | MarketBatch, *, drop: bool = False) -> None:
        """Market events to the bus, counted in ``events`` (STATUS ``market_events``) whatever their source: the
        simulated market's tops (dropped, counted in the bus window's ``dropped``, while the bus is behind) or a
        recorded or live batch."""
        if self.window.send(self.bus.publish, events, drop=drop):
            self.events += len(events)

    def top(self, symbol: str) -> BookTop | None:
        return self.tops.get(symbol)

    def depth(self, symbol: str, levels: int = 20) -> dict[str, Any] | None:
        return self.state.depth(symbol, levels)

    def flush(self) -> int:
        """Wait until every batch forwarded to the bus has been taken (benchmarks, tests)."""
        self.window.wait_all()
        return self.events

    # ----------------------------------------------------------------------------------------------------- queries

    def maker_totals(self) -> dict[str, int]:
        return self.state.maker_totals()

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "last_seq": self.state.seq,
            "symbols": sorted(self.symbols),
            "events": self.events,
            "restarted": self.restarted,
            "resyncs": self.resyncs,
            **self.state.status(),
            "peers": {"bus": {"inbox_depth": self.window.depth(), "dropped": self.window.dropped}},
            "log": log_file_status(),
        }

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.state.seq

    def close(self) -> None:
        self.window.wait_all(5.0)
        self.state.close()
