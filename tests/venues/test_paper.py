"""Paper trading in process: the kernel with PaperVenues fed the recorded Binance capture as live market data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from veloz_actors import JournalError
from veloz_actors.actors.venue_shard import VenueShard
from veloz_actors.core.l2book import L2Book
from veloz_actors.core.market_batch import MarketBatch
from veloz_actors.data.loaders import load_market_events
from veloz_actors.messages import (
    BookDelta,
    CancelOrder,
    Error,
    Liquidity,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    RejectReason,
    Side,
    SubmitOrder,
    Trade,
    VenueOrderAccepted,
    VenueOrderExpired,
    VenueOrderFilled,
)
from veloz_actors.testing import START_NS, book_top, d, encoded, engine_config, place, trade
from veloz_actors.venues.engine import Engine, replay
from veloz_actors.venues.paper import PAPER_VENUE, PaperVenue

from .faults import raise_on_call, raise_once

CAPTURE = Path(__file__).resolve().parents[2].parent / "shared/data/ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"
pytestmark = pytest.mark.skipif(not CAPTURE.exists(), reason="shared captures not present")


@pytest.fixture(scope="module")
def events() -> list:
    return load_market_events(CAPTURE)  # diffs before the snapshot line are buffered by the book, as Binance says


def paper_engine() -> Engine:
    return Engine(engine_config(venue_kind="paper"))


def feed(engine: Engine, events: list) -> list:
    out: list = []
    for event in events:
        out += engine.apply(event)
    return out


def test_paper_engine_builds_paper_venues() -> None:
    engine = paper_engine()
    assert all(type(v) is PaperVenue for v in engine.venues.values())
    assert sorted(engine.venues) == ["BTCUSDT", "ETHUSDT"]


def test_market_order_walks_the_live_book_and_money_is_conserved(events: list) -> None:
    engine = paper_engine()
    feed(engine, events[:2000])
    venue = engine.venues["BTCUSDT"]
    best_ask = venue.book.best_ask()
    assert best_ask is not None
    ts = events[1999].ts_recv + 1
    out = engine.apply(place("m1", "BUY", "0.5", ts=ts))
    fills = [e for e in out if type(e) is OrderFilled]
    assert fills, out
    assert sum(f.qty for f in fills) == d("0.5")
    assert fills[0].price == best_ask[0]  # the first fill is at the live best ask
    assert all(f.liquidity is Liquidity.TAKER for f in fills)
    # money: the kernel's accounts plus what the paper venue took in are exactly what the accounts were given
    assert engine.totals() == engine.deposited()
    assert venue.totals()["BTC"] == -d("0.5")


def test_resting_limit_order_fills_from_public_trades_under_the_queue_model(events: list) -> None:
    engine = paper_engine()
    feed(engine, events[:500])
    venue = engine.venues["BTCUSDT"]
    bid = venue.book.best_bid()
    assert bid is not None
    ts = events[499].ts_recv + 1
    out = engine.apply(place("l1", "BUY", "0.001", str(bid[0] / 10**8), ts=ts))
    assert any(type(e) is OrderAccepted for e in out)
    assert not any(type(e) is OrderFilled for e in out)  # it rests behind the queue at the best bid
    later = feed(engine, events[500:])
    fills = [e for e in later if type(e) is OrderFilled and e.client_order_id == "l1"]
    trades_at_or_through = [e for e in events[500:] if type(e) is Trade and e.price <= bid[0]]
    assert trades_at_or_through, "the capture trades at or below the bid later"
    assert fills and all(f.liquidity is Liquidity.MAKER for f in fills)
    assert sum(f.qty for f in fills) == d("0.001")
    assert engine.totals() == engine.deposited()


def test_no_fill_without_a_reference_or_against_a_book_that_lost_sync(events: list) -> None:
    engine = paper_engine()
    out = engine.apply(place("m0", "BUY", "0.01", ts=events[0].ts_recv))
    assert [e.reason for e in out if type(e) is OrderRejected] == [RejectReason.NO_REFERENCE_PRICE]
    feed(engine, events[:300])
    venue = engine.venues["BTCUSDT"]
    last = venue.book.last_update_id
    gap = BookDelta(symbol="BTCUSDT", first_update_id=last + 5, last_update_id=last + 6, bids=(), asks=(),
                    ts_event=events[299].ts_event, ts_recv=events[299].ts_recv)  # fmt: skip
    engine.apply(gap)
    assert venue.book.needs_resync and venue.sequence_gaps == 1
    out = engine.apply(place("m1", "BUY", "0.01", ts=events[299].ts_recv + 1))
    assert [e.reason for e in out if type(e) is OrderExpired] == [RejectReason.NO_LIQUIDITY]
    assert not any(type(e) is OrderFilled for e in out)
    assert engine.totals() == engine.deposited()


def test_cancel_a_resting_order(events: list) -> None:
    engine = paper_engine()
    feed(engine, events[:300])
    ask = engine.venues["BTCUSDT"].book.best_ask()
    assert ask is not None
    ts = events[299].ts_recv + 1
    engine.apply(place("r1", "SELL", "0.01", str((ask[0] + 10**8) / 10**8), ts=ts))
    assert engine.venues["BTCUSDT"].status()["working_orders"] == 1
    out = engine.apply(CancelOrder(client_order_id="r1", account_id="main", ts=ts + 1))
    assert any(type(e) is OrderCancelled for e in out)
    assert engine.venues["BTCUSDT"].status()["working_orders"] == 0
    fresh = Engine(engine_config(venue_kind="paper")).ledger
    assert engine.ledger.balances("main") == fresh.balances("main")  # the reservation was released, nothing else moved


def test_a_request_stamped_before_the_last_one_takes_effect_at_once(events: list) -> None:
    """Requests come from several sources (strategies in their own processes, the API, the kill switch), each
    stamped by its own clock, so one may carry an earlier time than the request before it. The paper venue held such
    a request in flight (it may not arrive before the one sent earlier) until a later request came: no answer to an
    order, and a cancel that did not take effect while public trades went on filling the order it cancelled."""
    engine = paper_engine()
    feed(engine, events[:300])
    bid = engine.venues["BTCUSDT"].book.best_bid()
    assert bid is not None
    ts = events[299].ts_recv + 1_000_000
    price = str((bid[0] - 10**8) / 10**8)  # below the bid: it rests
    engine.apply(place("r1", "BUY", "0.01", price, ts=ts))
    out = engine.apply(CancelOrder(client_order_id="r1", account_id="main", ts=ts - 1_000))
    assert [e.client_order_id for e in out if type(e) is OrderCancelled] == ["r1"]
    through = Trade(symbol="BTCUSDT", trade_id=10**12, price=bid[0] - 2 * 10**8, qty=d("1"), aggressor=Side.SELL,
                    ts_event=ts + 1, ts_recv=ts + 1)  # fmt: skip
    assert not any(type(e) is OrderFilled for e in engine.apply(through))
    out = engine.apply(place("m1", "BUY", "0.01", ts=ts - 2_000))
    assert [e.client_order_id for e in out if type(e) is OrderFilled] == ["m1"]
    assert engine.venues["BTCUSDT"].status()["in_flight"] == 0
    assert engine.totals() == engine.deposited()


def test_replay_of_the_journal_is_identical(tmp_path: Path, events: list) -> None:
    journal = tmp_path / "paper.journal"
    engine = Engine(engine_config(venue_kind="paper"), journal_path=journal)
    feed(engine, events[:400])
    ts = events[399].ts_recv + 1
    first = engine.apply(place("m1", "SELL", "0.2", ts=ts))
    feed(engine, events[400:900])
    engine.close()
    recovered, _ = Engine.recover(engine_config(venue_kind="paper"), journal)
    assert recovered.ledger.balances("main") == engine.ledger.balances("main")
    assert recovered.ledger.balances("main") != Engine(engine_config(venue_kind="paper")).ledger.balances("main")
    assert recovered.venues["BTCUSDT"].totals() == engine.venues["BTCUSDT"].totals()
    assert any(type(e) is OrderFilled and e.liquidity is Liquidity.TAKER for e in first)
    assert engine.venues["BTCUSDT"].name == PAPER_VENUE


def book_reset(symbol: str, ts: int) -> BookDelta:
    """The market-data client's word that ``symbol``'s book is unknown until its next snapshot."""
    return BookDelta(symbol=symbol, first_update_id=-1, last_update_id=-1, bids=(), asks=(), is_snapshot=True,
                     ts_event=ts, ts_recv=ts)  # fmt: skip


def snapshot_of(book: L2Book, ts: int) -> BookDelta:
    bids, asks = book.depth(len(book))
    return BookDelta(symbol=book.symbol, first_update_id=book.last_update_id, last_update_id=book.last_update_id,
                     bids=bids, asks=asks, is_snapshot=True, ts_event=ts, ts_recv=ts)  # fmt: skip


def test_a_book_reset_unsyncs_the_book_until_the_next_snapshot(events: list) -> None:
    engine = paper_engine()
    feed(engine, events[:2000])
    venue = engine.venues["BTCUSDT"]
    assert not venue.book.needs_resync
    live = L2Book("BTCUSDT")  # the live book, which the venue no longer knows after the reset
    for event in events[:2000]:
        if type(event) is BookDelta:
            (live.apply_snapshot if event.is_snapshot else live.apply)(event)
    ts = events[1999].ts_recv
    engine.apply(book_reset("BTCUSDT", ts))
    assert venue.book.needs_resync and len(venue.book) == 0 and venue.status()["book_resets"] == 1
    out = engine.apply(place("m1", "BUY", "0.01", ts=ts + 1))
    assert [e.reason for e in out if type(e) is OrderExpired] == [RejectReason.NO_LIQUIDITY]
    ask = live.best_ask()
    assert ask is not None
    out = engine.apply(place("l1", "BUY", "0.01", str((ask[0] + 100 * 10**8) / 10**8), ts=ts + 2))  # would cross
    assert any(type(e) is OrderAccepted for e in out) and not any(type(e) is OrderFilled for e in out)
    engine.apply(CancelOrder(client_order_id="l1", account_id="main", ts=ts + 3))
    # the next snapshot: the book is live again, and so is trading
    engine.apply(snapshot_of(live, ts + 4))
    assert not venue.book.needs_resync and venue.book.best_ask() == ask
    feed(engine, events[2000:2500])
    out = engine.apply(place("m2", "BUY", "0.01", ts=events[2499].ts_recv + 1))
    assert any(type(e) is OrderFilled for e in out)
    assert engine.totals() == engine.deposited()


def test_a_book_reset_is_journaled_and_replayed(tmp_path: Path, events: list) -> None:
    journal = tmp_path / "paper.journal"
    engine = Engine(engine_config(venue_kind="paper"), journal_path=journal)
    feed(engine, events[:1000])
    engine.apply(book_reset("BTCUSDT", events[999].ts_recv))
    out = engine.apply(place("m1", "BUY", "0.01", ts=events[999].ts_recv + 1))
    assert [e.reason for e in out if type(e) is OrderExpired] == [RejectReason.NO_LIQUIDITY]
    engine.close()
    recovered, _ = Engine.recover(engine_config(venue_kind="paper"), journal)
    venue = recovered.venues["BTCUSDT"]
    assert venue.book.needs_resync and venue.status() == engine.venues["BTCUSDT"].status()
    assert recovered.ledger.balances("main") == engine.ledger.balances("main")


def test_a_venue_shard_whose_start_fails_lets_go_of_its_journal(tmp_path: Path) -> None:
    """Its journal stayed open (its flusher thread kept it alive) with its lock, so a retry in the same process was
    refused as another engine."""
    path = tmp_path / "venue-s0.journal"
    VenueShard("s0", {}, journal_path=path).close()
    acks = Path(str(path) + ".acks")
    good = acks.read_bytes()
    acks.write_bytes(b'{"journal": "veloz", "version": 1, "config": {"other": 1}}\n')  # an .acks it refuses
    with pytest.raises(JournalError, match="different configuration"):
        VenueShard("s0", {}, journal_path=path)
    acks.write_bytes(good)
    VenueShard("s0", {}, journal_path=path).close()  # the retry opens it


def test_a_venue_shard_takes_a_book_reset_from_a_columnar_batch(tmp_path: Path, events: list) -> None:
    """The venue actor's path: MarketBatch.market_inputs hands the reset over with the diffs, the shard journals it,
    and a shard recovered from its journal has the same unsynced book."""
    instrument = paper_engine().venues["BTCUSDT"].instrument
    path = tmp_path / "shard.journal"
    shard = VenueShard("s0", {"BTCUSDT": PaperVenue(instrument)}, journal_path=path)
    batch = MarketBatch.from_events([*events[:1000], book_reset("BTCUSDT", events[999].ts_recv)])
    shard.market(batch)
    venue = shard.venues["BTCUSDT"]
    assert venue.book.needs_resync and venue.status()["book_resets"] == 1
    shard.close()
    again = VenueShard("s0", {"BTCUSDT": PaperVenue(instrument)}, journal_path=path)
    assert again.venues["BTCUSDT"].status() == venue.status()
    again.close()


def test_a_venue_shard_restored_from_its_snapshot_trades_against_the_book_fed_after_the_restart(
    tmp_path: Path, events: list
) -> None:
    """The restored venues take both the orders and the market data: the restore once swapped in the snapshot's
    venues for orders while market data (and ``depth``) still went to the venues the shard was built with."""
    instrument = paper_engine().venues["BTCUSDT"].instrument
    market = [e for e in events[:4000] if type(e) in (BookDelta, Trade) and e.symbol == "BTCUSDT"]
    half = len(market) // 2
    path = tmp_path / "shard.journal"
    shard = VenueShard("s0", {"BTCUSDT": PaperVenue(instrument)}, journal_path=path, snapshot_every=200)
    shard.market(market[:half])
    shard.close()
    assert Path(str(path) + ".snapshot").exists()
    again = VenueShard("s0", {"BTCUSDT": PaperVenue(instrument)}, journal_path=path, snapshot_every=200)
    again.market(market[half:])
    live = L2Book("BTCUSDT")  # the book of every diff, as an engine that never restarted has it
    for event in market:
        if type(event) is BookDelta:
            (live.apply_snapshot if event.is_snapshot else live.apply)(event)
    depth = again.depth("BTCUSDT", 5)
    assert depth is not None and depth["synced"] and depth["last_update_id"] == live.last_update_id
    assert (depth["bids"], depth["asks"]) == live.depth(5)
    ask = live.best_ask()
    assert ask is not None
    command = place("m1", "BUY", "0.01", ts=market[-1].ts_recv + 1)
    _, reports = again.request(SubmitOrder(command=command, order_id=1, limit=ask[0] + d("1000")))
    fills = [r for r in reports if type(r) is VenueOrderFilled]
    assert fills and fills[0].price == ask[0]
    again.close()


def off_tick_snapshot(book: L2Book, ts: int) -> BookDelta:
    """``book`` as a snapshot whose best ask is 0.00000023 off the tick: a fill there has no exact notional, so the
    venue raises on it (as it did on every fill of a symbol whose step VeloZ coarsened)."""
    snapshot = snapshot_of(book, ts)
    (price, qty), *rest = snapshot.asks
    newer = book.last_update_id + 1  # a snapshot not newer than the synced book changes nothing
    return replace(snapshot, first_update_id=newer, last_update_id=newer, asks=((price + 23, qty), *rest))


def second_level_off_tick(book: L2Book, ts: int) -> BookDelta:
    """``book`` as a snapshot whose best ask shows 0.1 and whose second ask is off the tick: a market order walking
    the asks fills the first level, then raises on the second."""
    snapshot = off_tick_snapshot(book, ts)
    (price, _), (second, second_qty), *rest = snapshot.asks
    return replace(snapshot, asks=((price - 23, d("0.1")), (second + 23, second_qty), *rest))


def test_the_fill_an_order_made_before_the_venue_raised_is_booked_and_only_the_remainder_expires(
    tmp_path: Path, events: list
) -> None:
    """The market order filled the first ask level, then the venue raised on the second: the venue had counted the
    first fill in what it took in, but its report never reached the kernel, which expired the whole order; money no
    longer added up (the venue held BTC and USDT that no account had paid or received)."""
    journal = tmp_path / "paper.journal"
    engine = Engine(engine_config(venue_kind="paper"), journal_path=journal)
    feed(engine, events[:400])
    venue = engine.venues["BTCUSDT"]
    ts = events[399].ts_recv + 1
    engine.apply(second_level_off_tick(venue.book, ts))
    first_level = venue.book.best_ask()
    assert first_level is not None
    qty = first_level[1] + d("0.01")
    out = engine.apply(place("m1", "BUY", str(qty / 10**8), ts=ts + 1))
    assert [(e.price, e.qty) for e in out if type(e) is OrderFilled] == [first_level]
    assert [e.code for e in out if type(e) is Error] == ["VENUE_ERROR"]
    assert [e.reason for e in out if type(e) is OrderExpired] == [RejectReason.VENUE_ERROR]
    assert engine.ledger.balances("main")["BTC"][0] == d("2") + first_level[1]
    assert engine.totals() == engine.deposited() and engine.ledger.conserved()
    assert not venue.orders
    engine.close()
    _, replayed = replay(journal)
    assert encoded(replayed[-len(out) :]) == encoded(out)


def test_a_venue_shard_delivers_the_fill_made_before_the_venue_raised(tmp_path: Path, events: list) -> None:
    """The actor engine's path: the shard's batch for the order carries the fill of the first level (the venue had
    counted it), then the error and the remainder's expiry; a restarted shard rebuilds the same batch."""
    instrument = paper_engine().venues["BTCUSDT"].instrument
    path = tmp_path / "shard.journal"
    shard = VenueShard("s0", {"BTCUSDT": PaperVenue(instrument)}, journal_path=path)
    shard.market([e for e in events[:400] if type(e) in (BookDelta, Trade) and e.symbol == "BTCUSDT"])
    venue = shard.venues["BTCUSDT"]
    ts = events[399].ts_recv + 1
    shard.market([second_level_off_tick(venue.book, ts)])
    first_level = venue.book.best_ask()
    assert first_level is not None
    command = place("m1", "BUY", str((first_level[1] + d("0.01")) / 10**8), ts=ts + 1)
    _, reports = shard.request(SubmitOrder(command=command, order_id=1, limit=d("1000000")))
    assert [type(r) for r in reports] == [VenueOrderAccepted, VenueOrderFilled, Error, VenueOrderExpired]
    assert (reports[1].price, reports[1].qty) == first_level and reports[3].reason is RejectReason.VENUE_ERROR
    assert venue.totals() == {"BTC": -first_level[1], "USDT": first_level[0] * first_level[1] // 10**8}
    shard.close()
    again = VenueShard("s0", {"BTCUSDT": PaperVenue(instrument)}, journal_path=path)
    assert again.after(0) == shard.after(0)
    again.close()


def test_the_fills_a_public_trade_made_before_the_venue_raised_are_booked(events: list) -> None:
    """A trade through two resting orders filled the first, then the venue raised filling the second: the first
    fill was counted by the venue and never booked by the kernel, which kept that order open (never to fill)."""
    engine = paper_engine()
    feed(engine, events[:400])
    venue = engine.venues["BTCUSDT"]
    bid = venue.book.best_bid()
    assert bid is not None
    ts = events[399].ts_recv + 1
    for cid, below in (("l1", "5"), ("l2", "6")):
        engine.apply(place(cid, "BUY", "0.01", str((bid[0] - d(below)) / 10**8), ts=ts))
    raise_on_call(venue, "_fill", 2)
    through = Trade(symbol="BTCUSDT", trade_id=10**12, price=bid[0] - d("7"), qty=d("1"), aggressor=Side.SELL,
                    ts_event=ts + 1, ts_recv=ts + 1)  # fmt: skip
    out = engine.apply(through)
    assert [(e.client_order_id, e.qty) for e in out if type(e) is OrderFilled] == [("l1", d("0.01"))]
    assert [e.code for e in out if type(e) is Error] == ["VENUE_ERROR"]
    assert [o.client_order_id for o in engine.oms.open_orders("main")] == ["l2"] == [c for _, c in venue.orders]
    assert engine.totals() == engine.deposited() and engine.ledger.conserved()


def test_a_venue_error_on_an_order_expires_it_and_the_journal_replays_the_same(tmp_path: Path, events: list) -> None:
    """An exception of the venue killed the engine, and every replay of its journal after: now the order expires
    VENUE_ERROR (its funds released), an Error says what failed, and the journal replays to the same events."""
    journal = tmp_path / "paper.journal"
    engine = Engine(engine_config(venue_kind="paper"), journal_path=journal)
    feed(engine, events[:400])
    ts = events[399].ts_recv + 1
    engine.apply(off_tick_snapshot(engine.venues["BTCUSDT"].book, ts))
    out = engine.apply(place("m1", "BUY", "0.01", ts=ts + 1))
    assert [e.code for e in out if type(e) is Error] == ["VENUE_ERROR"]
    assert [e.reason for e in out if type(e) is OrderExpired] == [RejectReason.VENUE_ERROR]
    fresh = Engine(engine_config(venue_kind="paper")).ledger
    assert engine.ledger.balances("main") == fresh.balances("main")
    assert engine.totals() == engine.deposited()
    engine.close()
    _, replayed = replay(journal)
    assert encoded(replayed[-len(out) :]) == encoded(out)


def test_a_venue_error_on_market_data_is_said_and_the_engine_trades_on(events: list) -> None:
    """A GTC order that waited for the book takes liquidity when a snapshot comes, inside the venue's handling of
    that snapshot: its failure is an Error event of the step, and the order can still be cancelled."""
    engine = paper_engine()
    feed(engine, events[:400])
    book = engine.venues["BTCUSDT"].book
    ask = book.best_ask()
    assert ask is not None
    ts = events[399].ts_recv + 1
    snapshot = off_tick_snapshot(book, ts + 2)
    engine.apply(book_reset("BTCUSDT", ts))
    engine.apply(place("l1", "BUY", "0.01", str((ask[0] + d("1")) / 10**8), ts=ts + 1))
    out = engine.apply(snapshot)
    assert [e.code for e in out if type(e) is Error] == ["VENUE_ERROR"]
    out = engine.apply(CancelOrder(client_order_id="l1", account_id="main", ts=ts + 3))
    assert any(type(e) is OrderCancelled for e in out)
    assert engine.ledger.balances("main") == Engine(engine_config(venue_kind="paper")).ledger.balances("main")


def test_a_venue_shard_turns_a_venue_error_into_the_orders_expiry_and_replays_it(tmp_path: Path, events: list) -> None:
    """The actor engine's venue shard journals a request before applying it: the exception left the order open at
    the OMS with its funds locked, and the journal raised again at the shard's restart."""
    instrument = paper_engine().venues["BTCUSDT"].instrument
    path = tmp_path / "shard.journal"
    shard = VenueShard("s0", {"BTCUSDT": PaperVenue(instrument)}, journal_path=path)
    shard.market([e for e in events[:400] if type(e) in (BookDelta, Trade) and e.symbol == "BTCUSDT"])
    ts = events[399].ts_recv + 1
    shard.market([off_tick_snapshot(shard.venues["BTCUSDT"].book, ts)])
    command = place("m1", "BUY", "0.01", ts=ts + 1)
    _, reports = shard.request(SubmitOrder(command=command, order_id=1, limit=d("1000000")))
    assert [type(r) for r in reports] == [VenueOrderAccepted, Error, VenueOrderExpired]  # the venue had accepted it
    assert reports[1].code == "VENUE_ERROR" and reports[2].reason is RejectReason.VENUE_ERROR
    shard.close()
    again = VenueShard("s0", {"BTCUSDT": PaperVenue(instrument)}, journal_path=path)
    assert again.after(0) == shard.after(0)
    again.close()


def test_a_market_batch_delivered_again_to_a_venue_shard_changes_nothing(tmp_path: Path, events: list) -> None:
    """The feed sends a batch again to a venue actor that restarted while applying it, whose journal already holds
    part of it: the trades in it filled our resting order a second time, and its snapshot rolled the book back."""
    instrument = paper_engine().venues["BTCUSDT"].instrument
    shard = VenueShard("s0", {"BTCUSDT": PaperVenue(instrument)}, journal_path=tmp_path / "shard.journal")
    market = [e for e in events[:2000] if type(e) in (BookDelta, Trade) and e.symbol == "BTCUSDT"]
    shard.market(market)
    venue = shard.venues["BTCUSDT"]
    bid = venue.book.best_bid()
    assert bid is not None
    price = bid[0] - d("5")  # no level there: nothing ahead of the order
    ts = market[-1].ts_recv + 1
    shard.request(SubmitOrder(command=place("b1", "BUY", "1", f"{price / 10**8}", ts=ts), order_id=1))
    last_trade = max(e.trade_id for e in market if type(e) is Trade)
    batch = [snapshot_of(venue.book, ts), Trade(symbol="BTCUSDT", trade_id=last_trade + 1, price=price, qty=d("0.3"),
                                                aggressor=Side.SELL, ts_event=ts + 1, ts_recv=ts + 1)]  # fmt: skip
    made = shard.market(batch)
    assert [(r.qty, r.leaves_qty) for _, reports in made for r in reports] == [(d("0.3"), d("0.7"))]
    state = venue.status(), venue.totals(), venue.book.depth(20)
    assert shard.market(batch) == []
    assert (venue.status(), venue.totals(), venue.book.depth(20)) == state
    shard.close()


def test_a_cancel_the_paper_venue_raised_on_leaves_no_order_to_fill_after_it_expired(events: list) -> None:
    """The cancel raised before the venue took the order off its book: the kernel expired it (VENUE_ERROR) and
    released its funds, and the next trade through its price filled it anyway (FILL_AFTER_CLOSE)."""
    engine = paper_engine()
    feed(engine, events[:400])
    venue = engine.venues["BTCUSDT"]
    bid = venue.book.best_bid()
    assert bid is not None
    price, ts = bid[0] - d("5"), events[399].ts_recv + 1
    engine.apply(place("l1", "BUY", "0.01", str(price / 10**8), ts=ts))
    raise_once(venue, "_cancel_now")
    out = engine.apply(CancelOrder(client_order_id="l1", account_id="main", ts=ts + 1))
    assert [e.code for e in out if type(e) is Error] == ["VENUE_ERROR"]
    assert [e.reason for e in out if type(e) is OrderExpired] == [RejectReason.VENUE_ERROR]
    assert venue.status()["working_orders"] == 0
    through = Trade(symbol="BTCUSDT", trade_id=10**12, price=price - d("1"), qty=d("1"), aggressor=Side.SELL,
                    ts_event=ts + 2, ts_recv=ts + 2)  # fmt: skip
    assert not [e for e in engine.apply(through) if type(e) is OrderFilled or type(e) is Error]
    assert engine.totals() == engine.deposited()


def test_an_order_the_paper_venue_raised_on_is_not_kept_as_working(events: list) -> None:
    """The venue's acceptance raised (a fill at a price off the tick): the kernel expired the order, while the
    venue still counted it among its working orders."""
    engine = paper_engine()
    feed(engine, events[:400])
    venue = engine.venues["BTCUSDT"]
    ts = events[399].ts_recv + 1
    engine.apply(off_tick_snapshot(venue.book, ts))
    out = engine.apply(place("m1", "BUY", "0.01", ts=ts + 1))
    assert [e.reason for e in out if type(e) is OrderExpired] == [RejectReason.VENUE_ERROR]
    assert venue.status()["working_orders"] == 0 and not venue.orders


def test_a_market_event_the_engine_raises_on_is_an_error_of_its_step_in_the_run_and_in_the_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure of the engine itself on one market event (a bug its data triggers: injected here as the failure of
    every application of that one event) is an ``Error`` ending that step, with its symbol's book to sync again, and
    the engine goes on. It is caught inside the journaled step, so the recovery of the journal takes the same step to
    the same ``Error`` and the same state: a restart never dies on the line the run survived."""
    bad = book_top("59990", "60010", ts=START_NS + 5)
    real = Engine._market

    def failing_on_bad(self: Engine, event, *rest):
        if event == bad:
            raise RuntimeError("injected: the engine fails on this event")
        return real(self, event, *rest)

    monkeypatch.setattr(Engine, "_market", failing_on_bad)
    config = engine_config()
    path = tmp_path / "engine.journal"
    engine = Engine(config, journal_path=path)
    run = engine.apply(book_top("59999", "60001", ts=START_NS + 1))
    failed = engine.apply(bad)
    assert [(type(e).__name__, e.code) for e in failed] == [("Error", "MARKET_APPLY_FAILED")]
    assert "BTCUSDT BookTop" in failed[0].message and "injected" in failed[0].message
    assert engine.take_books_to_resync() == ["BTCUSDT"] and engine.market_errors == 1
    run += failed
    run += engine.apply(place("after", "BUY", "0.01", "59000", ts=START_NS + 6))  # it trades on
    assert any(type(e) is OrderAccepted for e in run)
    state = _state(engine)
    engine.close()

    recovered, replayed = Engine.recover(config, path)
    try:
        assert encoded(replayed) == encoded(run)
        assert _state(recovered) == state and recovered.market_errors == 1
    finally:
        recovered.close()


def _state(engine: Engine) -> tuple:
    kernel = engine.kernel
    orders = sorted((o.client_order_id, o.status.value, o.filled) for o in kernel.oms.open_orders())
    return kernel.ledger.balances("main"), orders, dict(kernel.reference)


def thin_book(ts: int = START_NS) -> list:
    """A BTCUSDT book with 0.2 BTC offered (0.1 at 60,000 and 0.1 at 60,010), and a trade there (the reference)."""
    snapshot = BookDelta(symbol="BTCUSDT", first_update_id=1, last_update_id=1, bids=((d("59990"), d("1")),),
                         asks=((d("60000"), d("0.1")), (d("60010"), d("0.1"))), is_snapshot=True, ts_event=ts,
                         ts_recv=ts)  # fmt: skip
    return [snapshot, trade("60000", ts=ts)]


def test_a_market_buy_by_quote_amount_that_exhausts_the_book_expires_with_its_fills_kept() -> None:
    """Binance expires a MARKET order the book cannot fill (``market_orders_faq.md``: status ``EXPIRED``, the filled
    part kept). The paper venue closed an order by quote amount with its last fill, so it was FILLED having spent
    12,013 of its 50,000 USDT."""
    engine = paper_engine()
    feed(engine, thin_book())
    free = engine.ledger.free("main", "USDT")
    out = engine.apply(place("q1", "BUY", None, quote_qty="50000", ts=START_NS + 1))
    fills = [e for e in out if type(e) is OrderFilled]
    assert [(f.price, f.qty) for f in fills] == [(d("60000"), d("0.1")), (d("60010"), d("0.1"))]
    [expired] = [e for e in out if type(e) is OrderExpired]
    assert (expired.reason, expired.filled_qty) == (RejectReason.NO_LIQUIDITY, d("0.2"))
    order = engine.kernel.oms.get("main", "q1")
    assert order is not None and order.status.value == "EXPIRED" and order.filled == d("0.2")
    # money: the unspent reservation is back, exactly: what the fills cost and their fees went
    spent = sum(f.price * f.qty // 10**8 + f.fee for f in fills)
    assert spent == d("12013.001")  # 6,000 + 6,001, fees 0.1 %
    assert engine.ledger.balances("main")["USDT"] == (free - spent, 0)
    assert engine.totals() == engine.deposited()


def test_a_market_buy_by_quote_amount_that_spends_its_budget_is_filled() -> None:
    engine = paper_engine()
    feed(engine, thin_book())
    out = engine.apply(place("q1", "BUY", None, quote_qty="9000", ts=START_NS + 1))
    fills = [e for e in out if type(e) is OrderFilled]
    assert sum(f.qty for f in fills) == d("0.14984") and not any(type(e) is OrderExpired for e in out)
    order = engine.kernel.oms.get("main", "q1")
    assert order is not None and order.status.value == "FILLED"
    assert engine.ledger.balances("main")["USDT"][1] == 0 and engine.totals() == engine.deposited()


def test_a_journal_of_semantics_6_keeps_its_rule_for_a_quote_buy_that_exhausts_the_book() -> None:
    """A journal written before semantics 7 replays such an order as it was decided: FILLED, with the same fills."""
    engine = paper_engine()
    engine.use_semantics(6)
    feed(engine, thin_book())
    out = engine.apply(place("q1", "BUY", None, quote_qty="50000", ts=START_NS + 1))
    assert sum(f.qty for f in out if type(f) is OrderFilled) == d("0.2")
    assert not any(type(e) is OrderExpired for e in out)
    order = engine.kernel.oms.get("main", "q1")
    assert order is not None and order.status.value == "FILLED"
    assert engine.ledger.balances("main")["USDT"][1] == 0 and engine.totals() == engine.deposited()
