"""The account view actor: each account's balances and positions as the OMS reports them, journaled, idempotent by
the OMS's sequence number, answering balance queries off the order path. The OMS's ledger stays the source of truth;
after either side restarted the OMS pushes its full state again."""

from __future__ import annotations

import contextlib
import os
import pickle
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._exceptions import JournalError
from ..core.journal import Journal, count_lines, iter_journal, journal_error, restore_snapshot, write_snapshot
from ..logs import log_file_status
from ..messages import AccountUpdated, OrderFilled, PositionUpdated, Tick
from .spec import (
    JOURNAL_LOCK_WAIT,
    EngineSpec,
    hand_to_os,
    recovering,
    require_journal_dir,
    start_actor_process,
)

__all__ = ["AccountViewActor"]

_SNAPSHOT_EVERY = 10_000  # batches between snapshots


class AccountViewActor:
    """Balances and positions per account (see the module docstring)."""

    def __init__(self, spec: EngineSpec) -> None:
        start_actor_process(spec.logging, "account", rebuilt=spec.rebuilt)
        self.seq = 0
        self.accounts: dict[str, AccountUpdated] = {}
        self.positions: dict[tuple[str, str], PositionUpdated] = {}
        self.fills = 0
        self.fees: Counter[str] = Counter()
        self.applied = 0
        self.restarted = recovering(spec)
        if self.restarted:
            require_journal_dir(spec.journal_dir, "account", spec.name)
        self.path = spec.journal_path("account")
        self.journal: Journal | None = None
        if self.path is not None:
            # the journal (and its lock) first: nothing is read while the process Ray replaced may still write it
            self.journal = Journal(self.path, {"actor": "account"}, durability=spec.durability,  # type: ignore[arg-type]
                                   lock_wait=JOURNAL_LOCK_WAIT if self.restarted else 0.0)  # fmt: skip
            try:
                self._recover(self.path)
            except BaseException:
                with contextlib.suppress(JournalError):
                    self.journal.close()  # else its lock stays held until the process ends
                raise

    def _restore(self, state: bytes) -> None:
        self.seq, self.accounts, self.positions, self.fills, self.fees = pickle.loads(state)

    def _recover(self, path: Path) -> None:
        if not path.exists():
            return
        for message in iter_journal(path, restore_snapshot(path, count_lines(path), self._restore)):
            self._apply_one(message)

    def _apply_one(self, event: Any) -> None:
        kind = type(event)
        if kind is AccountUpdated:
            self.accounts[event.account_id] = event
        elif kind is PositionUpdated:
            self.positions[(event.account_id, event.symbol)] = event
        elif kind is OrderFilled:
            self.fills += 1
            self.fees[event.fee_asset] += event.fee
        elif kind is Tick:  # the sequence marker journaled with each batch
            self.seq = max(self.seq, event.ts)

    def apply(self, seq: int, events: Sequence[Any]) -> int:
        """Apply the accounting events of OMS sequence number ``seq``; an old or repeated ``seq`` is ignored."""
        if seq <= self.seq:
            return self.seq
        journal = self.journal
        for event in events:
            if journal is not None:
                journal.append(event)
            self._apply_one(event)
        if journal is not None:
            journal.append(Tick(ts=seq))
            hand_to_os(journal)
        self.seq = seq
        self.applied += 1
        if journal is not None and self.applied % _SNAPSHOT_EVERY == 0:
            self._snapshot()
        return seq

    def reset(self, seq: int, accounts: Sequence[AccountUpdated], positions: Sequence[PositionUpdated]) -> int:
        """Take the OMS's full state as of ``seq`` (after a restart of either side)."""
        if seq < self.seq:
            return self.seq
        self.accounts = {a.account_id: a for a in accounts}
        self.positions = {(p.account_id, p.symbol): p for p in positions}
        self.seq = seq
        self._snapshot()
        return seq

    def _snapshot(self) -> None:
        """State + the number of journal lines it covers: recovery applies only the lines after it."""
        if self.journal is not None and self.path is not None:
            state = pickle.dumps((self.seq, self.accounts, self.positions, self.fills, self.fees))
            self.journal.flush()
            write_snapshot(str(self.path) + ".snapshot", self.journal.count, state)

    def balances(self, account_id: str) -> dict[str, tuple[int, int]]:
        event = self.accounts.get(account_id)
        return {} if event is None else {b.asset: (b.free, b.locked) for b in event.balances}

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "last_seq": self.seq,
            "restarted": self.restarted,
            "fills": self.fills,
            "journal_error": journal_error(self.journal),
            "log": log_file_status(),
        }

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.seq

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
