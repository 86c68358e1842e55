"""A venue actor's shard on its own (no Ray): which report batches may leave it when its journal fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from veloz_actors import JournalError
from veloz_actors.actors.venue_shard import VenueShard
from veloz_actors.messages import SubmitOrder
from veloz_actors.testing import d, engine_config, place

from ..core.disk import disk_full_after


def _shard(path: Path) -> VenueShard:
    config = engine_config()
    return VenueShard("s0", config.venues(), journal_path=path, header=config.to_json(), durability="group")


def _submit(cid: str, order_id: int) -> SubmitOrder:
    return SubmitOrder(command=place(cid, "BUY", "0.01", "50000"), order_id=order_id, limit=d("50000"))


def _orders(batches: list) -> list[tuple[int, list[str]]]:
    return [(seq, [report.client_order_id for report in reports]) for seq, reports in batches]


def test_a_batch_whose_request_failed_to_reach_the_journal_never_leaves_the_venue(tmp_path: Path) -> None:
    """The disk filled while the venue took an order: it matched it in memory, then handing its journal line to the
    OS failed (the OMS's call raised, nothing was sent). The batch stayed in the kept ones, and the next ack or a
    resync sent it: the OMS booked an acceptance (or a fill) of an order the restarted venue, whose journal drops that
    line, does not have. And the shard's close stopped at the failed journal, leaving the acknowledgements' journal
    open and locked."""
    path = tmp_path / "venue.journal"
    shard = _shard(path)
    shard.request(_submit("a", 1))
    shard.hand_to_os()  # the venue actor's step: then its batch goes to the OMS
    with disk_full_after(path.stat().st_size + 20):
        shard.request(_submit("b", 2))
        with pytest.raises(JournalError, match="cannot be written"):
            shard.hand_to_os()
    assert _orders(shard.after(shard.acked)) == [(1, ["a"]), (2, ["b"])]  # kept (the venue matched it) ...
    assert _orders(shard.outgoing(shard.acked)) == [(1, ["a"])] and shard.handed == 1  # ... but never sent
    with pytest.raises(JournalError, match="cannot be written"):
        shard.close()
    again = _shard(path)  # both journals were closed: their locks are free
    assert _orders(again.outgoing(0)) == _orders(again.after(0)) == [(1, ["a"])] and again.handed == again.seq
    again.close()
