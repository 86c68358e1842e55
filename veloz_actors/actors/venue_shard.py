"""The exchange side of one venue actor, as a plain class: its simulated venues, the journal of its inputs, and the
numbered report batches it keeps until the OMS acknowledges them. No Ray here (the actor in :mod:`.venue` is the
shell that moves the batches).

Every input is journaled before it is applied: a request from the OMS (``SubmitOrder``, ``SubmitCancel``), a step
of the simulated clock (``Tick``), or, for venues that trade against live market data (paper trading), a depth diff
or snapshot or a public trade. A request or a clock step gives exactly one numbered batch (its execution reports, and
for a clock step the fills it caused and the new top of book of every symbol), possibly empty; a market event gives a
batch only when it filled something. Either way replaying the journal numbers the batches the same way. Acknowledgements go to a second journal (``<journal>.acks``, one ``Tick`` per ack whose
``ts`` is the batch number acknowledged): after a restart the shard rebuilds every batch from its inputs and keeps
those after the last acknowledged one, to send again. A snapshot (``<journal>.snapshot``) every ``snapshot_every``
inputs bounds the replay.
"""

from __future__ import annotations

import contextlib
import pickle
from collections import deque
from pathlib import Path
from typing import Any

from .._exceptions import JournalError
from ..core.journal import (
    Durability,
    Journal,
    count_lines,
    iter_journal,
    journal_error,
    restore_snapshot,
    write_snapshot,
)
from ..core.market_batch import MarketBatch
from ..messages import BookDelta, BookTop, RejectReason, SubmitCancel, SubmitOrder, Tick, Trade, VenueOrderRejected
from ..venues.base import BooksToResync, guarded
from ..venues.sim import use_semantics

__all__ = ["Batch", "VenueShard"]

Batch = tuple[int, list[Any]]  # (batch number, execution reports and tops of book)
_MARKET_INPUTS = (BookDelta, Trade)


class VenueShard:
    """One shard's simulated venues (one per symbol) with journaled inputs and acknowledged report batches."""

    def __init__(
        self,
        shard: str,
        venues: dict[str, Any],
        *,
        journal_path: str | Path | None = None,
        header: dict[str, Any] | None = None,
        durability: Durability = "group",
        group_ms: float = 5.0,
        snapshot_every: int = 10_000,
        lock_wait: float = 0.0,
    ) -> None:
        self.shard = shard
        self.venues = dict(sorted(venues.items()))
        self.seq = 0  # the number of the last batch made
        self.acked = 0  # the last batch the OMS acknowledged
        self.handed = 0  # the last batch whose input is with the OS (hand_to_os): no later one may leave the actor
        self.unacked: deque[Batch] = deque()
        self.inputs = 0
        self.last_clock = -1
        self.tops: dict[str, BookTop] = {}
        self.books_to_resync = BooksToResync()  # symbols whose venue failed on market data (take_books_to_resync)
        self.snapshot_every = snapshot_every
        self.journal: Journal | None = None
        self.acks: Journal | None = None
        self.path = None if journal_path is None else Path(journal_path)
        if self.path is not None:
            # the journals (and the lock) first: nothing is read while another process may still write them
            head = {"venue_shard": shard, "config": header or {}}
            self.journal = Journal(self.path, head, durability=durability, group_ms=group_ms, lock_wait=lock_wait)
            try:
                self.acks = Journal(
                    str(self.path) + ".acks", head, durability=durability, group_ms=group_ms, lock_wait=lock_wait
                )
                self._recover(self.path)
            except BaseException:
                with contextlib.suppress(JournalError):
                    self.close()  # a journal left open would hold its lock until the process ends
                raise

    @property
    def market_venues(self) -> dict[str, Any]:
        """The venues that trade against live market data (paper), read from ``venues`` at each call: a restore
        replaces ``venues``, and orders and market data must reach the same objects."""
        return {s: v for s, v in self.venues.items() if getattr(v, "consumes_market", False)}

    # ------------------------------------------------------------------------------------------------ recovery

    def _state(self) -> bytes:
        return pickle.dumps((self.venues, self.seq, self.acked, self.unacked, self.inputs, self.last_clock, self.tops))

    def _restore(self, state: bytes) -> None:
        self.venues, self.seq, self.acked, self.unacked, self.inputs, self.last_clock, self.tops = pickle.loads(state)

    def _recover(self, path: Path) -> None:
        start = restore_snapshot(path, count_lines(path), self._restore) if path.exists() else 0
        if self.journal is not None:  # the market's rule of the journal's semantics, for its lines and those to come
            use_semantics(self.venues.values(), self.journal.semantics)
        for message in iter_journal(path, start) if path.exists() else ():
            if type(message) in _MARKET_INPUTS:
                self._apply_market(message)
            else:
                self._apply(message)
        acks = Path(str(path) + ".acks")
        if acks.exists():
            last = max((m.ts for m in iter_journal(acks)), default=None)  # type: ignore[union-attr]
            if last is not None:
                self._prune(last)
        self.handed = self.seq  # every batch rebuilt here came from the disk

    # ------------------------------------------------------------------------------------------------- inputs

    def request(self, request: SubmitOrder | SubmitCancel) -> Batch:
        """Journal and apply one request of the OMS; returns its batch."""
        if self.journal is not None:
            self.journal.append(request)
        return self._apply(request)

    def clock(self, ts: int) -> Batch | None:
        """Journal and apply one step of the simulated market; None for a step at or before the last one."""
        if ts <= self.last_clock:
            return None
        tick = Tick(ts=ts)
        if self.journal is not None:
            self.journal.append(tick)
        return self._apply(tick)

    def market(self, events: Any) -> list[Batch]:
        """Journal and apply the live market events of the venues that trade against them (paper trading); returns
        the batches of the fills they caused. Other events, and every event of a shard of simulated venues, only pass
        by (nothing to journal: they change nothing here)."""
        venues = self.market_venues
        if not venues:
            return []
        if type(events) is MarketBatch:
            events = events.market_inputs(venues)
        journal = self.journal
        made: list[Batch] = []
        for event in events:
            if type(event) in _MARKET_INPUTS and event.symbol in venues:
                if journal is not None:
                    journal.append(event)
                batch = self._apply_market(event)
                if batch is not None:
                    made.append(batch)
        return made

    def _apply_market(self, event: Any) -> Batch | None:
        venue = self.venues[event.symbol]  # one of market_venues: market() journals no other's events
        return self._made(self.books_to_resync.on_market(venue, event) or None)

    def take_books_to_resync(self) -> list[str]:
        """The symbols whose venue failed on market data since the last call
        (:class:`~veloz_actors.venues.base.BooksToResync`)."""
        return self.books_to_resync.take()

    def _made(self, reports: list[Any] | None) -> Batch | None:
        """Count one input applied; number its reports as the next batch (none for a market event that filled
        nothing); snapshot every ``snapshot_every`` inputs."""
        self.inputs += 1
        batch = None
        if reports is not None:
            self.seq += 1
            batch = (self.seq, reports)
            self.unacked.append(batch)
        if self.journal is not None and self.inputs % self.snapshot_every == 0:
            self.snapshot()
        return batch

    def _apply(self, message: Any) -> Batch:
        kind = type(message)
        reports: list[Any]
        if kind is Tick:
            self.last_clock = message.ts
            reports = []
            for sim in self.venues.values():
                for output in guarded(sim, sim.on_clock, message.ts, message.ts):
                    reports.append(output)
                    if type(output) is BookTop:
                        self.tops[output.symbol] = output
        else:
            venue = self.venues.get(message.symbol)
            if venue is None:
                reports = [
                    VenueOrderRejected(
                        venue="SIM",
                        client_order_id=message.client_order_id,
                        account_id=message.account_id,
                        symbol=message.symbol,
                        reason=RejectReason.UNKNOWN_SYMBOL,
                        detail=f"venue shard {self.shard!r} trades {sorted(self.venues)}",
                        ts=message.ts,
                    )  # fmt: skip
                ]
            else:
                reports = guarded(venue, venue.submit if kind is SubmitOrder else venue.cancel, message, message.ts)
        batch = self._made(reports)
        assert batch is not None
        return batch

    def ack(self, seq: int) -> None:
        """The OMS applied (and journaled) every batch up to ``seq``: forget them."""
        if seq <= self.acked:
            return
        if self.acks is not None:
            self.acks.append(Tick(ts=seq))
        self._prune(seq)

    def _prune(self, seq: int) -> None:
        seq = min(seq, self.seq)
        self.acked = max(self.acked, seq)
        unacked = self.unacked
        while unacked and unacked[0][0] <= self.acked:
            unacked.popleft()

    def after(self, seq: int) -> list[Batch]:
        """The batches kept after ``seq`` (all unacknowledged ones when ``seq`` is at or below the last ack)."""
        return [b for b in self.unacked if b[0] > seq]

    def outgoing(self, seq: int) -> list[Batch]:
        """The batches kept after ``seq`` that may leave the actor: up to the last one handed to the OS
        (:attr:`handed`)."""
        return [b for b in self.unacked if seq < b[0] <= self.handed]

    # ------------------------------------------------------------------------------------------------ persistence

    def snapshot(self) -> None:
        if self.journal is not None and self.path is not None:
            self.journal.flush()  # a snapshot never covers a line that is not yet on disk itself
            write_snapshot(str(self.path) + ".snapshot", self.journal.count, self._state())

    def hand_to_os(self) -> None:
        """Hand the journals' lines to the OS; the batches made so far may then leave the actor (:attr:`handed`).

        One whose input's line failed to reach the OS never leaves: its journal drops that line (the step was
        refused), so a restarted venue would not know the order or fill the OMS had booked from it."""
        for journal in (self.journal, self.acks):
            if journal is not None:
                journal.hand_to_os()
        self.handed = self.seq

    def close(self) -> None:
        """Close both journals (one failing leaves the other closed too, its lock let go), then raise the first
        error."""
        errors = []
        for journal in (self.journal, self.acks):
            if journal is not None:
                try:
                    journal.close()
                except JournalError as exc:
                    errors.append(exc)
        if errors:
            raise errors[0]

    def status(self) -> dict[str, Any]:
        return {
            "batches": self.seq,
            "acked": self.acked,
            "unacked": len(self.unacked),
            "inputs": self.inputs,
            "last_clock": self.last_clock,
            "journal_error": journal_error(self.journal, self.acks),
            "venues": {symbol: venue.status() for symbol, venue in self.venues.items()},
        }

    def depth(self, symbol: str, levels: int = 20) -> dict[str, Any] | None:
        """The book a paper venue trades against (None for a simulated venue or another shard's symbol):
        ``{"synced", "last_update_id", "bids", "asks"}``, best ``levels`` of each side."""
        venue = self.market_venues.get(symbol)
        if venue is None:
            return None
        book = venue.book
        bids, asks = book.depth(levels)
        return {"synced": not book.needs_resync, "last_update_id": book.last_update_id, "bids": bids, "asks": asks}

    def maker_totals(self) -> dict[str, int]:
        """Per asset: what the venues' market makers hold (with the kernel's totals, the engine's whole money)."""
        out: dict[str, int] = {}
        for venue in self.venues.values():
            for asset, amount in venue.totals().items():
                out[asset] = out.get(asset, 0) + amount
        return out
