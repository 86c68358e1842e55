"""A venue shard's journal written by this version recovers to the same report batches in every later version.

A venue actor journals its inputs (the OMS's requests, the simulated clock's steps, the live market data a paper venue
trades against) and, after a restart, rebuilds every report batch from them: the ones the OMS had not acknowledged are
sent again, and the venue's books must be the ones the OMS's fills came from. A change to matching, to the simulated
market maker or to the paper venue's queue model would rebuild an earlier journal into other fills. ``golden/`` holds,
for a shard of simulated venues and a shard of paper venues, the journal of a run and the batches that run made. When
this test fails after a deliberate change, the change needs a new ``journal.SEMANTICS`` that keeps the old behaviour for
older journals, and new golden files written by ``.venv/bin/python -m tests.venues.test_golden_venue_journal`` beside
these (the old ones stay, and must still recover as they did). The core's twin is ``tests/core/test_golden_journal.py``.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from veloz_actors.actors.venue_shard import VenueShard
from veloz_actors.core.journal import SEMANTICS, read_header
from veloz_actors.data.loaders import load_market_events
from veloz_actors.messages import (
    BookDelta,
    SubmitCancel,
    SubmitOrder,
    Tick,
    Trade,
    VenueCancelRejected,
    VenueOrderAccepted,
    VenueOrderCancelled,
    VenueOrderExpired,
    VenueOrderFilled,
    VenueOrderRejected,
    encode_line,
)
from veloz_actors.testing import START_NS, d, engine_config, place
from veloz_actors.venues.engine import EngineConfig

GOLDEN = Path(__file__).parent / "golden"
CAPTURE = Path(__file__).resolve().parents[2].parent / "shared/data/ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"
SECOND = 1_000_000_000


def submit(
    order_id: int, cid: str, side: str, qty: str | None, price: str | None, limit: str, **kw: Any
) -> SubmitOrder:
    """The OMS's request for one order it accepted (``limit``: its price, or a market order's protect price)."""
    return SubmitOrder(command=place(cid, side, qty, price, **kw), order_id=order_id, limit=d(limit))


def withdraw(cid: str, *, account: str = "main", symbol: str = "BTCUSDT") -> SubmitCancel:
    return SubmitCancel(client_order_id=cid, account_id=account, symbol=symbol, ts=0)


def sim_scenario() -> list[Any]:
    """Requests and clock steps for a shard of the seeded simulated market (BTCUSDT and ETHUSDT, its market maker),
    one second apart: orders that rest, take, cross, expire and are refused, cancels, steps that move the market
    maker's quotes through resting orders, and a market buy by quote amount that takes every ask (7 on: expires)."""
    steps: list[Any] = [
        Tick(ts=0),
        submit(1, "rest", "BUY", "0.5", "59990", "59990"),
        submit(2, "take", "BUY", "0.2", None, "61000"),  # market: walks the maker's asks
        submit(3, "cross", "SELL", "0.1", "59000", "59000"),  # takes the maker's bid
        submit(4, "ioc", "BUY", "0.1", "59500", "59500", tif="IOC"),  # nothing at that price: expires
        submit(5, "fok", "BUY", "50", "60100", "60100", tif="FOK"),  # more than the book holds there
        submit(6, "post", "BUY", "0.1", "60100", "60100", tif="POST_ONLY"),  # would take liquidity
        submit(7, "eth", "SELL", "1", "3001", "3001", symbol="ETHUSDT", account="other"),
        submit(8, "away", "SELL", "0.3", "60200", "60200", account="other"),
        *[Tick(ts=0) for _ in range(40)],  # the maker's random walk fills what rests near it
        withdraw("away", account="other"),
        withdraw("rest"),  # filled by then
        withdraw("nobody"),
        submit(9, "last", "BUY", "0.05", None, "65000"),
        Tick(ts=0),
        submit(10, "sweep", "BUY", None, None, "65000", quote_qty="500000"),  # takes every ask: expires (7 on)
    ]
    return [_at(step, START_NS + i * SECOND) for i, step in enumerate(steps)]


def paper_scenario() -> list[Any]:
    """The first 600 depth diffs and trades of a recorded BTCUSDT capture (near 61,830), with orders into the live
    book between them: one before there is a book, a market order walking it, bids below the best bid that public
    trades fill under the queue model, an ask far away, cancels, and a market buy by quote amount that reaches its
    protect price before its budget is spent (semantics 7 on: it expires after its fills)."""
    events = [e for e in load_market_events(CAPTURE) if type(e) in (BookDelta, Trade)][:600]
    orders = {
        0: [submit(1, "early", "BUY", "0.01", None, "70000")],  # no book yet: nothing to take
        150: [submit(2, "walk", "BUY", "0.5", None, "70000"), submit(3, "far", "SELL", "0.01", "70000", "70000")],
        170: [
            submit(4, "bid", "BUY", "0.002", "61824.01", "61824.01"),
            submit(5, "bid2", "BUY", "0.3", "61828.58", "61828.58"),
        ],
        450: [withdraw("far"), withdraw("bid2")],
        500: [submit(6, "quote", "BUY", None, None, "61840", quote_qty="1000000")],
    }
    steps: list[Any] = []
    for i, event in enumerate(events):
        steps += [_at(order, event.ts_recv - 1) for order in orders.get(i, [])]
        steps.append(event)
    return steps


SCENARIOS = {
    "sim": (sim_scenario, lambda: engine_config(sim=True)),
    "paper": (paper_scenario, lambda: engine_config(venue_kind="paper")),
}


def _at(message: Any, ts: int) -> Any:
    if type(message) is SubmitOrder:
        return dataclasses.replace(message, command=dataclasses.replace(message.command, ts=ts))
    return dataclasses.replace(message, ts=ts)


def _shard(path: Path, config: EngineConfig) -> VenueShard:
    return VenueShard("s0", config.venues(), journal_path=path, header=config.to_json(), durability="always")


def _run(shard: VenueShard, steps: list[Any]) -> None:
    for step in steps:
        if type(step) is Tick:
            shard.clock(step.ts)
        elif type(step) in (BookDelta, Trade):
            shard.market([step])
        else:
            shard.request(step)


def _encoded(batches: list[Any]) -> list[bytes]:
    """A batch as one line: its number, then each report's JSON line, tab-separated (JSON escapes tabs)."""
    return [b"\t".join([b"%d" % seq, *(encode_line(r).rstrip(b"\n") for r in reports)]) for seq, reports in batches]


def write(directory: Path) -> None:
    """Run each scenario through a journaled shard; write its journal and batches as a golden pair."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, (scenario, config) in SCENARIOS.items():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "venue.journal"
            shard = _shard(path, config())
            _run(shard, scenario())
            batches = _encoded(shard.after(0))
            shard.close()
            again = recover(path)
            assert again == batches, f"{name}: the run's own journal does not recover to its batches"
            shutil.copyfile(path, directory / f"{name}_semantics{SEMANTICS}.journal")
        (directory / f"{name}_semantics{SEMANTICS}.batches").write_bytes(b"\n".join(batches) + b"\n")


def recover(journal: Path) -> list[bytes]:
    """Open a copy of ``journal`` as a restarted venue actor does (its venues from the journal's own config, no
    acknowledgement kept) and return every batch it rebuilt."""
    header = read_header(journal)["config"]["config"]
    config = EngineConfig.from_json(header)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "venue.journal"
        shutil.copyfile(journal, path)
        shard = VenueShard("s0", config.venues(), journal_path=path, header=header, durability="none")
        try:
            return _encoded(shard.after(0))
        finally:
            shard.close()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_golden_venue_journal_recovers_to_the_batches_its_run_made(name: str) -> None:
    journals = sorted(GOLDEN.glob(f"{name}_semantics*.journal"))
    assert journals[-1].name == f"{name}_semantics{SEMANTICS}.journal"  # one for the semantics written today
    for journal in journals:
        expected = journal.with_suffix(".batches").read_bytes().splitlines()
        got = recover(journal)
        first = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), None)
        assert got == expected, (
            f"{journal.name} no longer recovers to the batches it was written with (first difference at batch "
            f"{first}, {len(got)} batches against {len(expected)}): the venue's matching changed. See this module's "
            "docstring: a new journal.SEMANTICS keeping the old behaviour for older journals, and new golden files"
        )


def test_the_golden_runs_exercise_what_they_say() -> None:
    """Neither pair is trivially small: taker and maker fills (the paper venue's from public trades), cancels and
    refused cancels, expiries and refusals."""
    kinds: dict[str, set[tuple[str, Any]]] = {}
    for name in SCENARIOS:
        lines = (GOLDEN / f"{name}_semantics{SEMANTICS}.batches").read_bytes().splitlines()
        reports = [orjson.loads(r) for line in lines for r in line.split(b"\t")[1:]]
        kinds[name] = {(r["type"], r.get("liquidity") or r.get("reason")) for r in reports}
    accepted, filled, cancelled = VenueOrderAccepted.TYPE, VenueOrderFilled.TYPE, VenueOrderCancelled.TYPE
    expired, rejected, refused = VenueOrderExpired.TYPE, VenueOrderRejected.TYPE, VenueCancelRejected.TYPE
    assert kinds["sim"] >= {
        (accepted, None), (filled, "TAKER"), (filled, "MAKER"), (cancelled, "USER_CANCEL"),
        (expired, "IOC_UNFILLED"), (expired, "FOK_NOT_FILLABLE"), (rejected, "WOULD_TAKE_LIQUIDITY"),
        (refused, "ORDER_NOT_OPEN"), (refused, "UNKNOWN_ORDER"),
    }, kinds["sim"]  # fmt: skip
    assert kinds["paper"] >= {
        (accepted, None), (filled, "TAKER"), (filled, "MAKER"), (cancelled, "USER_CANCEL"),
        (expired, "NO_LIQUIDITY"), (refused, "ORDER_NOT_OPEN"),
    }, kinds["paper"]  # fmt: skip
    for name, cid in (("paper", b"quote"), ("sim", b"sweep")):  # a market buy by quote amount that ran out of book
        lines = (GOLDEN / f"{name}_semantics{SEMANTICS}.batches").read_bytes().splitlines()
        mine = [
            orjson.loads(r) for line in lines for r in line.split(b"\t")[1:] if b'"client_order_id":"%s"' % cid in r
        ]
        assert [r["type"] for r in mine][-1] == expired and len(mine) > 2, mine  # accepted, fills, then its expiry


if __name__ == "__main__":  # python -m tests.venues.test_golden_venue_journal [DIR]: write today's golden files
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN)
