"""The account view's recovery from its journal and snapshot, in process (the actor class without Ray)."""

from __future__ import annotations

import pickle

import pytest

from veloz_actors._exceptions import JournalError
from veloz_actors.actors.account import AccountViewActor
from veloz_actors.actors.spec import EngineSpec
from veloz_actors.core.journal import write_snapshot
from veloz_actors.messages import AccountUpdated, Balance


def _spec(tmp_path) -> EngineSpec:
    return EngineSpec(name="t", engine_config={}, journal_dir=str(tmp_path))


def _update(usdt: int, ts: int) -> AccountUpdated:
    return AccountUpdated(account_id="main", balances=(Balance(asset="USDT", free=usdt, locked=0),), ts=ts)


def test_a_restarted_view_has_the_snapshot_and_the_lines_after_it(tmp_path):
    view = AccountViewActor(_spec(tmp_path))
    view.apply(1, [_update(100, 1)])
    view.reset(2, [_update(200, 2)], [])  # a full state: snapshotted
    view.apply(3, [_update(300, 3)])
    view.close()
    again = AccountViewActor(_spec(tmp_path))
    assert (again.seq, again.balances("main")) == (3, {"USDT": (300, 0)})
    again.close()


def test_a_snapshot_covering_lines_the_journal_lost_is_dropped_for_the_journal(tmp_path):
    view = AccountViewActor(_spec(tmp_path))
    view.apply(1, [_update(100, 1)])
    view.close()
    snapshot = tmp_path / "account.journal.snapshot"
    # a snapshot of a later state that covers far more lines than the journal holds (they were lost in a crash)
    write_snapshot(snapshot, 1_000, pickle.dumps((99, {"main": _update(999, 99)}, {}, 0, {})))
    again = AccountViewActor(_spec(tmp_path))
    assert (again.seq, again.balances("main")) == (1, {"USDT": (100, 0)})
    assert not snapshot.exists()
    again.close()


def test_a_snapshot_that_does_not_load_is_a_clear_journal_error(tmp_path):
    view = AccountViewActor(_spec(tmp_path))
    view.apply(1, [_update(100, 1)])
    view.close()
    snapshot = tmp_path / "account.journal.snapshot"
    write_snapshot(snapshot, 1, pickle.dumps(("another", "version")))
    with pytest.raises(JournalError, match=f"snapshot {snapshot} cannot be loaded"):
        AccountViewActor(_spec(tmp_path))
    # the failed start released the journal's lock: once the snapshot is moved away, the view recovers
    snapshot.unlink()
    again = AccountViewActor(_spec(tmp_path))
    assert again.balances("main") == {"USDT": (100, 0)}
    again.close()
