"""L2Book: snapshot + diffs with Binance's update-id rules, checked against the real captures in ../shared/data."""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

import pytest

from veloz_actors import InvalidInput, SequenceGap
from veloz_actors.core.l2book import L2Book
from veloz_actors.data.loaders import load_market_events
from veloz_actors.messages import BookDelta, BookTop, Side

SPOT = "binance_spot_btcusdt_20240808_ws.txt.gz"
USDM = "binance_usdm_btcusdt_20230404_ws.txt.gz"
COINM = "binance_cm_ethusd_perp_20240808_ws.txt.gz"
MARKET = {SPOT: "spot", USDM: "futures", COINM: "futures"}


@cache
def _events(path: Path) -> tuple:
    return tuple(load_market_events(path))


def _capture(shared_data: Path, name: str) -> tuple:
    return _events(shared_data / "ticks_l2" / name)


def _deltas(events: tuple) -> list[BookDelta]:
    return [e for e in events if isinstance(e, BookDelta)]


def _synced_book(deltas: list[BookDelta], market: str) -> tuple[L2Book, list[BookDelta]]:
    """A book fed every delta up to and including the snapshot; returns it and the diffs that follow."""
    index = next(i for i, d in enumerate(deltas) if d.is_snapshot)
    book = L2Book(deltas[index].symbol, market)
    for delta in deltas[:index]:
        book.apply(delta)
    book.apply_snapshot(deltas[index])
    return book, deltas[index + 1 :]


def _snapshot_of(book: L2Book, ts: int = 0) -> BookDelta:
    bids, asks = book.depth(len(book))
    return BookDelta(
        symbol=book.symbol,
        first_update_id=book.last_update_id,
        last_update_id=book.last_update_id,
        bids=bids,
        asks=asks,
        is_snapshot=True,
        ts_event=ts,
        ts_recv=ts,
    )


def _delta(first: int, last: int, bids=(), asks=(), prev: int = -1) -> BookDelta:
    return BookDelta(
        symbol="BTCUSDT",
        first_update_id=first,
        last_update_id=last,
        prev_update_id=prev,
        bids=tuple(bids),
        asks=tuple(asks),
        ts_event=0,
        ts_recv=0,
    )


def _snapshot(update_id: int, bids=((100, 5),), asks=((101, 7),)) -> BookDelta:
    return dataclasses.replace(_delta(update_id, update_id, bids, asks), is_snapshot=True)


# ------------------------------------------------------------------------------------------------ real captures


@pytest.mark.parametrize("name", [SPOT, USDM, COINM])
def test_book_from_snapshot_and_diffs_matches_recorded_book_ticker(shared_data: Path, name: str) -> None:
    events = _capture(shared_data, name)
    tickers = {e.update_id: e for e in events if isinstance(e, BookTop)}
    book = L2Book(events[0].symbol, MARKET[name])
    compared = 0
    for event in events:
        if not isinstance(event, BookDelta):
            continue
        if event.is_snapshot:
            book.apply_snapshot(event)
        else:
            book.apply(event)
        ticker = tickers.get(book.last_update_id)
        if ticker is not None and not book.needs_resync:
            assert book.best_bid() == (ticker.bid_price, ticker.bid_qty), book.last_update_id
            assert book.best_ask() == (ticker.ask_price, ticker.ask_qty), book.last_update_id
            compared += 1
    assert compared >= 300  # hundreds of independent checkpoints per capture


def test_diffs_before_the_snapshot_are_buffered_then_replayed(shared_data: Path) -> None:
    deltas = _deltas(_capture(shared_data, SPOT))
    index = next(i for i, d in enumerate(deltas) if d.is_snapshot)
    book = L2Book("BTCUSDT", "spot")
    assert [book.apply(d) for d in deltas[:index]] == [False] * index
    assert book.buffered == index and book.needs_resync and book.best_bid() is None

    book.apply_snapshot(deltas[index])

    assert book.buffered == 0 and not book.needs_resync
    assert book.stale_dropped > 0  # diffs already contained in the snapshot were dropped
    assert book.last_update_id == max(d.last_update_id for d in deltas[:index])


def test_removed_diff_raises_sequence_gap_and_book_refuses_diffs_until_resync(shared_data: Path) -> None:
    book, diffs = _synced_book(_deltas(_capture(shared_data, SPOT)), "spot")
    reference, _ = _synced_book(_deltas(_capture(shared_data, SPOT)), "spot")
    for diff in diffs[:50]:
        book.apply(diff)
        reference.apply(diff)
    reference.apply(diffs[50])  # the book never sees diff 50

    with pytest.raises(SequenceGap) as gap:
        book.apply(diffs[51])
    assert gap.value.expected == diffs[50].first_update_id and gap.value.got == diffs[51].first_update_id
    assert book.needs_resync and book.best_bid() is None and book.best_ask() is None  # no wrong book to read

    for diff in diffs[52:60]:
        assert book.apply(diff) is False  # refused, kept for the resync
    assert book.best_bid() is None

    for diff in diffs[51:55]:
        reference.apply(diff)
    book.apply_snapshot(_snapshot_of(reference))  # a fresh snapshot taken after diff 54

    assert not book.needs_resync and book.buffered == 0
    for diff in diffs[55:60]:
        reference.apply(diff)
    assert book.last_update_id == reference.last_update_id == diffs[59].last_update_id
    assert book.depth(len(reference)) == reference.depth(len(reference))


def test_futures_book_follows_the_pu_chain_where_update_ids_are_not_contiguous(shared_data: Path) -> None:
    book, diffs = _synced_book(_deltas(_capture(shared_data, USDM)), "futures")
    non_contiguous = sum(1 for a, b in zip(diffs, diffs[1:], strict=False) if b.first_update_id != a.last_update_id + 1)
    applied = [book.apply(d) for d in diffs]
    assert non_contiguous > 0 and all(applied)
    assert book.last_update_id == diffs[-1].last_update_id


def test_futures_diff_whose_pu_is_not_the_previous_u_raises_sequence_gap(shared_data: Path) -> None:
    book, diffs = _synced_book(_deltas(_capture(shared_data, USDM)), "futures")
    for diff in diffs[:20]:
        book.apply(diff)
    broken = dataclasses.replace(diffs[20], prev_update_id=diffs[20].prev_update_id - 1)
    with pytest.raises(SequenceGap):
        book.apply(broken)
    assert book.needs_resync


def test_stale_diff_is_dropped_and_leaves_the_book_unchanged(shared_data: Path) -> None:
    book, diffs = _synced_book(_deltas(_capture(shared_data, SPOT)), "spot")
    for diff in diffs[:10]:
        book.apply(diff)
    before = book.depth(len(book))
    assert book.apply(diffs[5]) is False
    assert book.depth(len(book)) == before and book.stale_dropped >= 1
    assert book.last_update_id == diffs[9].last_update_id


# ---------------------------------------------------------------------------------------------------- sequencing


def test_spot_first_diff_must_bridge_the_snapshot() -> None:
    book = L2Book("BTCUSDT", "spot")
    book.apply_snapshot(_snapshot(10))
    assert book.apply(_delta(5, 10)) is False  # u <= lastUpdateId: stale
    with pytest.raises(SequenceGap):
        book.apply(_delta(12, 14))  # U > lastUpdateId + 1: updates 11 lost


def test_spot_diff_overlapping_the_book_is_applied_as_binance_documents() -> None:
    """web-socket-streams.md: ignore ``u <= local``, gap only when ``U > local + 1``; an event that overlaps what the
    book holds (``U <= local < u``) is applied, not taken for a gap."""
    book = L2Book("BTCUSDT", "spot")
    book.apply_snapshot(_snapshot(10))
    assert book.apply(_delta(11, 14, bids=((99, 1),)))
    assert book.apply(_delta(13, 16, bids=((98, 2),))) is True  # U=13 <= 15 <= u=16
    assert book.last_update_id == 16 and book.level_qty(Side.BUY, 98) == 2 and not book.needs_resync
    assert book.apply(_delta(12, 16, bids=((97, 3),))) is False  # u <= 16: stale, not applied
    assert book.level_qty(Side.BUY, 97) == 0
    with pytest.raises(SequenceGap):
        book.apply(_delta(18, 19))  # U=18 > 17: update 17 was lost


def test_futures_diff_overlapping_the_book_still_needs_pu_to_be_the_previous_u() -> None:
    """The futures rule is the ``pu`` chain, not spot's overlap: after the bridge, ``pu`` must equal the last ``u``."""
    book = L2Book("BTCUSDT", "futures")
    book.apply_snapshot(_snapshot(10))
    assert book.apply(_delta(8, 12, prev=7))  # the bridge: U <= 10 <= u
    assert book.apply(_delta(11, 15, bids=((99, 1),), prev=12))  # pu == 12: applied although U <= 12
    with pytest.raises(SequenceGap):
        book.apply(_delta(14, 18, prev=14))  # overlaps (U <= 15 < u) but pu is not 15


def test_futures_first_diff_must_contain_the_snapshot_id() -> None:
    book = L2Book("BTCUSDT", "futures")
    book.apply_snapshot(_snapshot(10))
    assert book.apply(_delta(5, 9, prev=4)) is False  # u < lastUpdateId: stale
    assert book.apply(_delta(8, 10, bids=((99, 1),), prev=7)) is True  # U <= 10 <= u
    assert book.apply(_delta(15, 20, bids=((98, 2),), prev=10)) is True  # pu == previous u
    assert book.level_qty(Side.BUY, 98) == 2


def test_snapshot_older_than_the_buffered_diffs_raises_gap_and_keeps_them() -> None:
    book = L2Book("BTCUSDT", "spot")
    book.apply(_delta(20, 25, bids=((99, 1),)))
    book.apply(_delta(26, 30, bids=((98, 1),)))
    with pytest.raises(SequenceGap):
        book.apply_snapshot(_snapshot(10))
    assert book.needs_resync and book.buffered == 2

    book.apply_snapshot(_snapshot(22))
    assert book.last_update_id == 30 and book.level_qty("bid", 98) == 1


def test_pre_snapshot_buffer_is_bounded_and_counts_what_it_dropped() -> None:
    book = L2Book("BTCUSDT", "spot", buffer_limit=2)
    for first in (1, 2, 3):
        book.apply(_delta(first, first))
    assert book.buffered == 2 and book.buffer_dropped == 1


def test_market_must_be_spot_or_futures() -> None:
    with pytest.raises(InvalidInput, match="market"):
        L2Book("BTCUSDT", "margin")


# ------------------------------------------------------------------------------------------------------- queries


def test_zero_quantity_deletes_a_level_and_the_next_best_takes_over() -> None:
    book = L2Book("BTCUSDT", "spot")
    book.apply_snapshot(_snapshot(1, bids=((100, 5), (99, 4), (98, 3)), asks=((101, 7), (102, 8))))
    book.apply(_delta(2, 2, bids=((100, 0),), asks=((101, 0), (103, 1))))
    assert book.best_bid() == (99, 4) and book.best_ask() == (102, 8)
    assert book.level_qty(Side.BUY, 100) == 0


def test_depth_mid_and_spread_read_the_best_levels_first() -> None:
    book = L2Book("BTCUSDT", "spot")
    book.apply_snapshot(_snapshot(1, bids=((98, 3), (100, 5), (99, 4)), asks=((103, 9), (101, 7), (102, 8))))
    assert book.depth(2) == (((100, 5), (99, 4)), ((101, 7), (102, 8)))
    assert book.mid() == 100 and book.spread() == 1  # (100 + 101) // 2, floored to the 1e-8 unit


def test_empty_side_gives_none_for_best_mid_and_spread() -> None:
    book = L2Book("BTCUSDT", "spot")
    book.apply_snapshot(_snapshot(1, bids=((100, 5),), asks=()))
    assert book.best_ask() is None and book.mid() is None and book.spread() is None


def test_a_book_reset_empties_the_book_until_the_next_snapshot() -> None:
    book = L2Book("BTCUSDT")
    book.apply_snapshot(_snapshot(10))
    assert book.apply(_delta(11, 11, ((100, 6),), ()))
    book.apply_snapshot(_snapshot(-1, bids=(), asks=()))  # the live client no longer knows the book
    assert book.needs_resync and len(book) == 0 and book.best_bid() is None and book.last_update_id == -1
    assert not book.apply(_delta(12, 12, ((100, 1),), ()))  # refused (buffered) while unsynced
    book.apply_snapshot(_snapshot(11))
    assert not book.needs_resync and book.last_update_id == 12 and book.best_bid() == (100, 1)
