"""The live Binance spot market data client.

Pure parts first (no sockets): the backoff schedule, latency statistics, and the book-sync state machine fed with the
parsed events of a real capture. Then the client over real sockets against the local Binance-speaking test server
(:mod:`veloz_actors.testing.binance_server`): its book equals the offline book after every applied diff, drops and
gaps are detected and resynced, bad input is counted and never corrupts a book, live (un)subscribe, planned
reconnects and the status fields. Nothing here reaches the internet or starts Ray.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from veloz_actors import InvalidInput
from veloz_actors.core.l2book import L2Book
from veloz_actors.data.loaders import load_market_events
from veloz_actors.messages import BookDelta
from veloz_actors.venues.binance.market_data import (
    APPLIED,
    BUFFERED,
    GAP,
    OUT_OF_ORDER,
    STALE,
    Backoff,
    BookSync,
    LatencyStats,
    MarketDataSettings,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "ticks_l2"
BTC_CAPTURE = SHARED / "binance_spot_btcusdt_20240808_ws.txt.gz"
ETH_CAPTURE = SHARED / "binance_spot_ethusdt_20240808_ws.txt.gz"

_EVENTS: dict[Path, list] = {}


def capture(path: Path) -> list:
    if path not in _EVENTS:
        _EVENTS[path] = load_market_events(path)
    return _EVENTS[path]


def split(events: list) -> tuple[BookDelta, list[BookDelta]]:
    """The capture's REST snapshot and its depth diffs, in file order."""
    snapshot = next(e for e in events if isinstance(e, BookDelta) and e.is_snapshot)
    diffs = [e for e in events if isinstance(e, BookDelta) and not e.is_snapshot]
    return snapshot, diffs


def levels(book: L2Book) -> tuple[dict[int, int], dict[int, int]]:
    """Every level of both sides (the full depth, not just the best)."""
    return dict(book._bids), dict(book._asks)


def same_book(a: L2Book, b: L2Book) -> bool:
    return (
        a.last_update_id == b.last_update_id
        and a.best_bid() == b.best_bid()
        and a.best_ask() == b.best_ask()
        and levels(a) == levels(b)
    )


def snapshot_of(book: L2Book) -> BookDelta:
    """A REST-style snapshot of ``book`` as it is now."""
    bids, asks = levels(book)
    return BookDelta(
        symbol=book.symbol,
        first_update_id=book.last_update_id,
        last_update_id=book.last_update_id,
        bids=tuple(sorted(bids.items(), reverse=True)),
        asks=tuple(sorted(asks.items())),
        is_snapshot=True,
        ts_event=0,
        ts_recv=0,
    )


def rebuild(events: list, symbol: str) -> L2Book:
    """What a downstream consumer rebuilds from the client's output alone."""
    book = L2Book(symbol)
    for event in events:
        if isinstance(event, BookDelta) and event.symbol == symbol:
            if event.is_snapshot:
                book.apply_snapshot(event)
            else:
                assert book.apply(event), f"the client emitted a diff the book refuses: {event.first_update_id}"
    return book


# ------------------------------------------------------------------------------------------------------ pure parts


def test_backoff_is_exponential_with_full_jitter_and_seeded():
    backoff = Backoff(0.5, 30.0, random.Random(7))
    ceilings = [backoff.ceiling(n) for n in range(9)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    delays = [backoff.next_delay() for _ in range(9)]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == 9  # jittered, not a fixed schedule
    again = Backoff(0.5, 30.0, random.Random(7))
    assert [again.next_delay() for _ in range(9)] == delays  # the seed decides everything
    backoff.reset()
    assert backoff.attempt == 0 and backoff.next_delay() <= 0.5
    assert Backoff(0.5, 30.0, random.Random(1)).ceiling(10_000) == 30.0
    # full jitter spreads over the whole range: the mean of many first-attempt delays is near half the ceiling
    rng = random.Random(3)
    many = [Backoff(1.0, 30.0, rng).next_delay() for _ in range(4000)]
    assert 0.45 < sum(many) / len(many) < 0.55 and min(many) < 0.01 and max(many) > 0.99


def test_latency_stats_percentiles_over_a_bounded_reservoir():
    stats = LatencyStats(size=1000)
    assert stats.summary() == {"count": 0, "p50": None, "p99": None, "max": None}
    for ms in range(1, 1001):
        stats.add(ms * 1_000_000)
    assert stats.summary() == {"count": 1000, "p50": 500.0, "p99": 990.0, "max": 1000.0}
    for _ in range(1000):  # the reservoir keeps the last 1000: old samples leave p50/p99, but not count and max
        stats.add(2_000_000)
    assert stats.summary() == {"count": 2000, "p50": 2.0, "p99": 2.0, "max": 1000.0}
    stats.add(-500_000)  # a receive clock behind the exchange's shows as negative latency, not as an error
    assert stats.summary()["count"] == 2001


def test_settings_normalise_and_validate():
    settings = MarketDataSettings("https://api.binance.com/", "wss://stream.binance.com:9443", ("btcusdt", "BTCUSDT"))
    assert settings.symbols == ("BTCUSDT",)
    assert settings.rest_url == "https://api.binance.com"
    assert settings.streams("BTCUSDT") == [
        "btcusdt@depth@100ms",
        "btcusdt@bookTicker",
        "btcusdt@trade",
        "btcusdt@kline_1m",
    ]
    no_klines = MarketDataSettings("http://h", "ws://h", ("ETHUSDT",), kline_interval=None)
    assert no_klines.streams("ETHUSDT") == ["ethusdt@depth@100ms", "ethusdt@bookTicker", "ethusdt@trade"]
    for bad in (
        dict(rest_url="ftp://x"),
        dict(stream_url="http://x"),
        dict(symbols=("BTC/USDT",)),
        dict(kline_interval="7x"),
        dict(depth_stream="depth5"),
        dict(snapshot_limit=5001),
        dict(backoff_initial=0),
        dict(backoff_initial=2.0, backoff_max=1.0),
        dict(batch_max=0),
        dict(symbols=tuple(f"S{i}USDT" for i in range(257))),  # 1028 streams > 1024
    ):
        args = dict(rest_url="http://h", stream_url="ws://h", symbols=("BTCUSDT",)) | bad
        with pytest.raises(InvalidInput):
            MarketDataSettings(**args)


@pytest.mark.parametrize("path", [BTC_CAPTURE, ETH_CAPTURE], ids=["btcusdt", "ethusdt"])
def test_book_sync_on_a_capture_emits_what_rebuilds_the_offline_book(path):
    """Diffs before the snapshot are buffered by the book; the snapshot replays the ones after it; from then on every
    applied diff is emitted, and a book rebuilt from the emitted sequence alone equals the offline book at every
    step (full depth)."""
    events = capture(path)
    snapshot, diffs = split(events)
    symbol = snapshot.symbol
    offline = L2Book(symbol)
    sync = BookSync(symbol)
    downstream = L2Book(symbol)
    outcomes: dict[str, int] = {}
    emitted_count = 0
    for event in events:
        if not isinstance(event, BookDelta):
            continue
        if event.is_snapshot:
            offline.apply_snapshot(event)
            out = sync.on_snapshot(event)
            assert out is not None and out[0] is event
            for delta in out:
                (downstream.apply_snapshot if delta.is_snapshot else downstream.apply)(delta)
            emitted_count += len(out) - 1
        else:
            offline.apply(event)
            outcome = sync.on_diff(event)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome == APPLIED:
                assert downstream.apply(event)
                emitted_count += 1
        if sync.synced:
            assert same_book(sync.book, offline) and same_book(downstream, offline)
    assert outcomes.get(GAP, 0) == 0 and outcomes.get(OUT_OF_ORDER, 0) == 0
    assert outcomes[BUFFERED] >= 1  # the capture starts with diffs before its snapshot
    assert emitted_count == offline.diffs_applied
    assert sync.resyncs == 1 and offline.last_update_id == diffs[-1].last_update_id


def test_book_sync_stale_snapshot_gap_and_out_of_order():
    events = capture(BTC_CAPTURE)
    snapshot, diffs = split(events)
    symbol = snapshot.symbol
    live = [d for d in diffs if d.last_update_id > snapshot.last_update_id]
    offline = L2Book(symbol)
    offline.apply_snapshot(snapshot)

    sync = BookSync(symbol)
    for delta in live[:5]:
        assert sync.on_diff(delta) == BUFFERED
        offline.apply(delta)
    # a snapshot older than the first buffered diff cannot be used: refused, counted, the buffer kept
    old = BookDelta(
        symbol=symbol,
        first_update_id=live[0].first_update_id - 10,
        last_update_id=live[0].first_update_id - 10,
        bids=((100, 1),),
        asks=((200, 1),),
        is_snapshot=True,
        ts_event=0,
        ts_recv=0,
    )
    assert sync.on_snapshot(old) is None and sync.stale_snapshots == 1 and not sync.synced
    assert sync.book.buffered == 5
    # the right snapshot replays the 5 buffered diffs and emits exactly them after itself
    out = sync.on_snapshot(snapshot)
    assert out is not None and [d.last_update_id for d in out] == [snapshot.last_update_id] + [
        d.last_update_id for d in live[:5]
    ]
    assert same_book(sync.book, offline)
    # a repeated diff after the chain started is out of order: ignored, never emitted
    assert sync.on_diff(live[4]) == OUT_OF_ORDER and sync.out_of_order == 1
    # a missing diff: the next one is a gap, detected on that very message; the book drops its levels
    assert sync.on_diff(live[6]) == GAP and not sync.synced and len(sync.book) == 0 and sync.gaps == 1
    for delta in live[5:20]:
        offline.apply(delta)
    for delta in live[7:20]:
        assert sync.on_diff(delta) == BUFFERED  # refused while unsynced
    # a new snapshot taken later (at live[15]): the buffered diffs it covers are dropped, the rest replayed
    probe = L2Book(symbol)
    probe.apply_snapshot(snapshot)
    for delta in live[:16]:
        probe.apply(delta)
    out = sync.on_snapshot(snapshot_of(probe))
    assert out is not None and [d.last_update_id for d in out[1:]] == [d.last_update_id for d in live[16:20]]
    assert same_book(sync.book, offline) and sync.resyncs == 2
    # the next diff bridges; a diff already covered right after a snapshot is merely stale
    fresh = BookSync(symbol)
    fresh.on_snapshot(snapshot_of(probe))
    assert fresh.on_diff(live[10]) == STALE and fresh.on_diff(live[16]) == APPLIED
