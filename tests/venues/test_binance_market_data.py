"""The live Binance spot market data client.

Pure parts first (no sockets): the backoff schedule, latency statistics, and the book-sync state machine fed with the
parsed events of a real capture. Then the client over real sockets against the local Binance-speaking test server
(:mod:`veloz_actors.testing.binance_server`): its book equals the offline book after every applied diff, drops and
gaps are detected and resynced, bad input is counted and never corrupts a book, live (un)subscribe, planned
reconnects and the status fields. Last, input at the edges (integers beyond int64, frames that raise, odd
``Retry-After`` values, a corrupt diff, stale snapshots) and the book resets a paper venue stops filling on. Nothing
here reaches the internet or starts Ray.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import itertools
import json
import logging
import random
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.venues.log_records import every_log_record
from veloz_actors import InvalidInput
from veloz_actors.core.l2book import L2Book
from veloz_actors.core.market_batch import MarketBatch
from veloz_actors.data.loaders import load_market_events
from veloz_actors.fixed import SCALE
from veloz_actors.messages import BookDelta, OrderExpired, OrderFilled, RejectReason, VenueConnection
from veloz_actors.testing import engine_config, place
from veloz_actors.testing.binance_server import BinanceTestServer
from veloz_actors.venues.binance.market_data import (
    _OUT_OF_ORDER_BEFORE_RESTART,
    _STALE_BEFORE_RESTART,
    APPLIED,
    BUFFERED,
    CROSSED,
    GAP,
    OUT_OF_ORDER,
    RESTART,
    STALE,
    Backoff,
    BinanceMarketData,
    BookSync,
    LatencyStats,
    MarketDataSettings,
    MarketDataThread,
    _Frames,
)
from veloz_actors.venues.engine import Engine

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


def after_snapshot(path: Path) -> tuple[BookDelta, list[BookDelta], L2Book]:
    """The capture's REST snapshot, the diffs after it, and an offline book at the snapshot."""
    snapshot, diffs = split(capture(path))
    offline = L2Book(snapshot.symbol)
    offline.apply_snapshot(snapshot)
    return snapshot, [d for d in diffs if d.last_update_id > snapshot.last_update_id], offline


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


def is_book_reset(event: Any) -> bool:
    """The client's word that a symbol's book is unknown until its next snapshot."""
    return isinstance(event, BookDelta) and event.is_snapshot and event.last_update_id == -1


def rebuild(events: list, symbol: str) -> L2Book:
    """What a downstream consumer rebuilds from the client's output alone."""
    book = L2Book(symbol)
    for event in events:
        if isinstance(event, BookDelta) and event.symbol == symbol:
            if is_book_reset(event):
                book = L2Book(symbol)
            elif event.is_snapshot:
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


def test_the_frame_queue_is_bounded_in_order_and_wakes_each_side():
    async def scenario() -> None:
        frames = _Frames(limit=3)
        assert not frames and frames.take_all() == []
        taker = asyncio.get_running_loop().create_task(frames.wait())
        await asyncio.sleep(0)
        assert not taker.done()  # nothing queued: the processor waits
        assert frames.put_nowait((1, b"a")) and frames.put_nowait((2, b"b"))
        await taker  # woken by the first frame
        assert not frames.put_nowait((3, b"c"))  # that filled it: the reader must wait for room before reading on
        room = asyncio.get_running_loop().create_task(frames.wait_room())
        await asyncio.sleep(0)
        assert not room.done()
        assert frames.take_all() == [(1, b"a"), (2, b"b"), (3, b"c")] and not frames
        await room  # woken by the processor's take
        await frames.wait_room()  # room already: returns at once

    asyncio.run(scenario())


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
        dict(snapshots_in_flight=0),
        dict(rest_weight_per_minute=249),  # a snapshot of 5000 levels weighs 250: it could never go
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
    snapshot, live, offline = after_snapshot(BTC_CAPTURE)
    symbol = snapshot.symbol

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


# --------------------------------------------------------------------------------------------- over real sockets

SYMBOLS = ("BTCUSDT", "ETHUSDT")
CAPTURES = {"BTCUSDT": BTC_CAPTURE, "ETHUSDT": ETH_CAPTURE}


class Offline:
    """The offline book of one capture, advanced on demand to a given update id (the reference for the client)."""

    def __init__(self, symbol: str) -> None:
        events = capture(CAPTURES[symbol])
        snapshot, diffs = split(events)
        self.book = L2Book(symbol)
        at = events.index(snapshot)
        for event in events[:at]:  # diffs before the snapshot: buffered, replayed by the snapshot
            if isinstance(event, BookDelta):
                self.book.apply(event)
        self.book.apply_snapshot(snapshot)
        self._rest = iter([d for d in diffs if d.last_update_id > self.book.last_update_id])

    def advance(self, update_id: int) -> L2Book:
        while self.book.last_update_id < update_id:
            self.book.apply(next(self._rest))
        assert self.book.last_update_id == update_id, "the client's update id is not on the capture's chain"
        return self.book


class Sink:
    """Collects every batch the client hands over (called from the client's thread)."""

    def __init__(self) -> None:
        self.batches: list[list] = []
        self.lock = threading.Lock()

    def __call__(self, batch: list) -> None:
        with self.lock:
            self.batches.append(list(batch))

    @property
    def events(self) -> list:
        with self.lock:
            return [event for batch in self.batches for event in batch]

    def connections(self, state: str | None = None) -> list[VenueConnection]:
        return [e for e in self.events if isinstance(e, VenueConnection) and (state is None or e.state == state)]


def settings_for(server: BinanceTestServer, symbols=SYMBOLS, **overrides) -> MarketDataSettings:
    # these tests resync far more often in a minute than Binance's weight allows (22 reconnects: 11,000 weight of
    # snapshots); the weight budget's pacing has tests of its own
    values: dict[str, Any] = dict(
        backoff_initial=0.02, backoff_max=0.2, snapshot_wait=0.05, request_timeout=5.0, rest_weight_per_minute=10**6
    )
    values.update(overrides)
    return MarketDataSettings(server.rest_url, server.stream_url, tuple(symbols), **values)


@contextmanager
def live(server: BinanceTestServer, symbols=SYMBOLS, seed: int = 1, **overrides):
    sink = Sink()
    feed = MarketDataThread(settings_for(server, symbols, **overrides), sink, rng=random.Random(seed)).start()
    try:
        yield feed, sink
    finally:
        feed.close()
        assert not feed.running and feed.error is None


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def caught_up(feed: MarketDataThread, server: BinanceTestServer, symbols=SYMBOLS, timeout: float = 10.0) -> None:
    """Wait until the client's books are synced at the server's current update ids (the server is paused)."""
    targets = {s: server.book(s)[0] for s in symbols}

    def done() -> bool:
        states = feed.status()["symbols"]
        return all(states[s]["synced"] and states[s]["last_update_id"] == targets[s] for s in symbols)

    wait_for(done, timeout, f"the client to reach {targets}")


def assert_same_as_server(feed: MarketDataThread, server: BinanceTestServer, offline: dict[str, Offline]) -> None:
    """The client's book equals the server's whole book and the offline book at the same update id (paused)."""
    for symbol in offline:
        last, bids, asks = server.book(symbol)
        book = feed.client.book(symbol)
        assert book.last_update_id == last
        assert levels(book) == (dict(bids), dict(asks))
        assert book.best_bid() == bids[0] and book.best_ask() == asks[0]
        assert same_book(book, offline[symbol].advance(last))


def assert_output_rebuilds(sink: Sink, symbols=SYMBOLS) -> None:
    """A downstream book fed the client's output alone equals the offline book after every emitted diff."""
    events = sink.events
    for symbol in symbols:
        reference = Offline(symbol)
        downstream = L2Book(symbol)
        diffs = 0
        for event in events:
            if not isinstance(event, BookDelta) or event.symbol != symbol:
                continue
            if is_book_reset(event):
                assert not event.bids and not event.asks
                downstream = L2Book(symbol)
                continue
            if event.is_snapshot:
                downstream.apply_snapshot(event)
            else:
                assert downstream.apply(event), "the client emitted a diff a book refuses"
                diffs += 1
            assert same_book(downstream, reference.advance(downstream.last_update_id))
        assert diffs > 0


def test_client_book_equals_the_offline_book_after_every_applied_diff():
    """Paused server, published in random steps: after each step the client's book equals the server's and the
    offline book (full depth); the client's output rebuilds the offline book after every single diff."""
    rng = random.Random(11)
    with BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server:
        with live(server) as (feed, sink):
            assert feed.wait_synced(10.0)
            offline = {s: Offline(s) for s in SYMBOLS}
            assert_same_as_server(feed, server, offline)
            steps = 0
            while not server.done:
                server.publish(rng.choice((1, 2, 7, 50, 400, 2500)))
                caught_up(feed, server)
                assert_same_as_server(feed, server, offline)
                steps += 1
            status = feed.status()
        assert steps > 40
        assert status["connects"] == 1 and status["bad_input"] == {} and status["resyncs"]["total"] == 2
        assert_output_rebuilds(sink)
        # the output per symbol: connected, then the snapshot, then diffs only; resynced once per symbol
        kinds = [e.state for e in sink.connections()]
        assert kinds[0] == "connected" and kinds.count("resynced") == 2 and kinds[-1] == "closed"
        for symbol in SYMBOLS:
            book_events = [e for e in sink.events if isinstance(e, BookDelta) and e.symbol == symbol]
            assert is_book_reset(book_events[0])  # the start: no book known yet, whatever downstream held
            assert is_book_reset(book_events[-1])  # the stream closed: the book is no longer kept
            book_events = book_events[1:-1]
            assert book_events[0].is_snapshot and not any(e.is_snapshot for e in book_events[1:])
            assert len(book_events[0].bids) > 500  # the whole REST snapshot, not a top-of-book


def test_dropped_connections_and_a_gap_are_detected_resynced_and_never_leave_a_wrong_book():
    rng = random.Random(5)
    with BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server:
        with live(server, seed=5) as (feed, sink):
            assert feed.wait_synced(10.0)
            offline = {s: Offline(s) for s in SYMBOLS}
            cuts = sorted(rng.sample(range(100, server.total - 2000), 22))
            gap_after = 9  # inject the gap after this many drops
            for number, cut in enumerate(cuts):
                server.publish(max(cut - server.published, 1))
                caught_up(feed, server)
                assert_same_as_server(feed, server, offline)
                connects = feed.status()["connects"]
                if number == 15:
                    server.faults.restart(0.3)  # listener down for 0.3 s: connects fail, then succeed
                else:
                    assert server.faults.drop_connections() == 1
                wait_for(lambda c=connects: feed.status()["connects"] > c, what="a reconnect")
                assert feed.wait_synced(10.0)
                caught_up(feed, server)
                assert_same_as_server(feed, server, offline)
                if number == gap_after:
                    check_gap(feed, server, sink, offline)
            status = feed.status()
        assert status["connects"] == 23 and status["reconnects"] == 22
        assert status["disconnects"].get("closed by the server", 0) + status["disconnects"].get("read error", 0) >= 1
        assert status["bad_input"] == {"sequence_gap": 1}
        # every reconnect resynced every book, and the gap resynced BTCUSDT once more
        assert status["resyncs"]["by_symbol"] == {"BTCUSDT": 24, "ETHUSDT": 23}
        assert len(sink.connections("disconnected")) == 22 and len(sink.connections("resynced")) == 47
        assert_output_rebuilds(sink)


def stream_until(server: BinanceTestServer, done, what: str, chunk: int = 25) -> None:
    """The market streams until ``done()``: ``chunk`` events at a time, each chunk once the client has answered
    ``done()`` since the last. The flow keeps pace with the client however slow the machine is: a stream paced at
    x real time outran a loaded machine (the whole capture is 7 s at 50x), so that a gap injected after it had
    run out never came."""
    while not done():
        if server.publish(chunk) == 0:
            raise AssertionError(f"the capture ran out before {what}")


def test_drops_and_a_gap_while_the_market_streams():
    """The same faults while the market streams: diffs keep flowing through every drop, the gap and every resync,
    and the output still rebuilds the offline book after every diff."""
    rng = random.Random(8)
    with BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server:
        with live(server, seed=8) as (feed, sink):
            assert feed.wait_synced(10.0)
            for number in range(8):
                server.publish(rng.randint(700, 1500))  # handed to the socket: the client is still reading them
                status = feed.status()
                connects, gaps = status["connects"], status["bad_input"].get("sequence_gap", 0)
                if number == 4:
                    server.faults.skip_update_ids(rng.choice(SYMBOLS), 2)
                else:
                    server.faults.drop_connections()

                def resynced(c: int = connects, g: int = gaps, gap: bool = number == 4) -> bool:
                    now = feed.status()  # one read on the loop: the fault seen, then every book synced again
                    seen = now["bad_input"].get("sequence_gap", 0) > g if gap else now["connects"] > c
                    return seen and now["state"] == "connected" and all(s["synced"] for s in now["symbols"].values())

                stream_until(server, resynced, "a gap" if number == 4 else "a reconnect")
            caught_up(feed, server)
            assert_same_as_server(feed, server, {s: Offline(s) for s in SYMBOLS})
            status = feed.status()
        assert status["connects"] == 8 and status["bad_input"] == {"sequence_gap": 1}
        assert server.published > 5000
        assert_output_rebuilds(sink)


def check_gap(feed: MarketDataThread, server: BinanceTestServer, sink: Sink, offline: dict[str, Offline]) -> None:
    """Skip one BTCUSDT diff; the next diff is the gap: detected on that message, never emitted, resynced."""
    before = server.book("BTCUSDT")[0]
    emitted_before = len(sink.events)
    server.faults.skip_update_ids("BTCUSDT", 1)
    ids = [before]
    while len(ids) < 3:  # publish one event at a time until the skipped diff and the one after it are out
        server.publish(1)
        last = server.book("BTCUSDT")[0]
        if last != ids[-1]:
            ids.append(last)
    skipped_u, gap_u = ids[1], ids[2]
    wait_for(lambda: feed.status()["bad_input"].get("sequence_gap") == 1, what="the gap to be detected")
    assert feed.wait_synced(10.0)
    caught_up(feed, server)
    assert_same_as_server(feed, server, offline)
    after = [e for e in sink.events[emitted_before:] if isinstance(e, BookDelta) and e.symbol == "BTCUSDT"]
    # nothing past the hole was emitted: first the word that the book is unknown, then the new snapshot, which is at
    # or past the diff that showed the gap
    assert len(after) >= 2 and is_book_reset(after[0])
    assert after[1].is_snapshot and after[1].last_update_id >= gap_u > skipped_u
    resynced = [e for e in sink.connections("resynced") if e.symbol == "BTCUSDT"]
    assert resynced[-1].ts >= after[1].ts_recv


def test_bad_input_is_counted_and_never_crashes_or_corrupts_a_book(caplog):
    caplog.set_level(logging.WARNING, logger="veloz.binance")
    with BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server:
        with live(server, snapshot_wait=5.0) as (feed, sink):
            assert server.wait_connections(1)
            server.publish(300)  # diffs for both symbols: the books sync from the first buffered diff on
            assert feed.wait_synced(10.0)
            offline = {s: Offline(s) for s in SYMBOLS}
            caught_up(feed, server)
            for kind in ("json", "unknown_event", "absurd_price", "out_of_order"):
                assert server.faults.malformed(kind, 3) == 3
            server.publish(500)
            caught_up(feed, server)
            assert_same_as_server(feed, server, offline)
            status = feed.status()
            assert status["bad_input"] == {"json": 3, "unknown_event": 3, "invalid_payload": 3, "out_of_order": 3}
            # no reconnect; the refused diffs (which came together) resynced their symbol once
            assert status["connects"] == 1 and status["resyncs"]["total"] == 3
            server.publish(300)  # diffs after the resync, emitted as they come
            caught_up(feed, server)
            assert_same_as_server(feed, server, offline)

            # stale snapshots: the first answer after a reconnect is older than the buffered diffs
            server.faults.stale_snapshot(2)
            assert server.faults.drop_connections() == 1
            wait_for(lambda: feed.status()["connects"] == 2 and server.connections() == 1, what="a reconnect")
            server.publish(300)
            assert feed.wait_synced(10.0)
            caught_up(feed, server)
            assert_same_as_server(feed, server, offline)
            assert server.faults.counts["stale_snapshot"] == 2
            assert feed.status()["bad_input"]["stale_snapshot"] == 2

            # 429 and 418 with Retry-After: nothing is sent before it has passed
            for status_code in (429, 418):
                server.faults.rate_limit(status_code, retry_after=1, count=1)
                limited_before = feed.status()["rate_limited"]["count"]
                connects = feed.status()["connects"]
                start = time.monotonic()
                assert server.faults.drop_connections() == 1
                wait_for(lambda c=connects: feed.status()["connects"] > c, what="a reconnect")
                server.publish(200)
                limited = wait_for(
                    lambda n=limited_before: (s := feed.status())["rate_limited"]["count"] == n + 1 and s, what="a 429"
                )
                assert feed.wait_synced(10.0)
                assert time.monotonic() - start >= 1.0
                # silent while Retry-After runs: in the second after the refusal the server saw only requests the
                # client had sent before it knew (the server's log says so however late this thread looks; a count
                # read twice 0.6 s apart failed when a loaded machine woke this thread after the second was over)
                log = server.rest_log()
                refused = next(r for r in reversed(log) if r.status == status_code)
                assert sum(r.arrived < refused.answered + 1.0 for r in log) <= limited["rest_requests"]
                caught_up(feed, server)
                assert_same_as_server(feed, server, offline)
            final = feed.status()
        assert final["rate_limited"]["count"] == 2 and server.faults.counts["rate_limit"] == 2
    assert_output_rebuilds(sink)
    logged = [r for r in caplog.records if r.name == "veloz.binance"]
    assert logged and all(len(r.getMessage()) < 1000 for r in logged)


def test_subscribe_and_unsubscribe_live_over_the_open_connection():
    with (
        BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server,
        live(server, symbols=("BTCUSDT",)) as (feed, sink),
    ):
        assert feed.wait_synced(10.0)
        offline = {s: Offline(s) for s in SYMBOLS}
        server.publish(1000)
        caught_up(feed, server, ("BTCUSDT",))
        assert not any(getattr(e, "symbol", "") == "ETHUSDT" for e in sink.events)

        feed.subscribe(["ethusdt"])  # lower case is fine
        assert feed.wait_synced(10.0)
        server.publish(1000)
        caught_up(feed, server)
        assert_same_as_server(feed, server, offline)
        assert any(isinstance(e, BookDelta) and e.symbol == "ETHUSDT" and not e.is_snapshot for e in sink.events)

        feed.unsubscribe("BTCUSDT")
        mark = len(sink.events)
        server.publish(2000)
        caught_up(feed, server, ("ETHUSDT",))
        assert_same_as_server(feed, server, {"ETHUSDT": offline["ETHUSDT"]})
        assert not any(getattr(e, "symbol", "") == "BTCUSDT" for e in sink.events[mark:])
        status = feed.status()
        assert list(status["symbols"]) == ["ETHUSDT"] and status["connects"] == 1
        assert all(name.startswith("ethusdt@") for name in status["last_event_age_ms"])
        with pytest.raises(InvalidInput):
            feed.client.book("BTCUSDT")
        feed.subscribe(["BTCUSDT"])  # and back again, still on the same connection
        assert feed.wait_synced(10.0)
        server.publish(500)
        caught_up(feed, server)
        assert_same_as_server(feed, server, {"BTCUSDT": Offline("BTCUSDT")} | {"ETHUSDT": offline["ETHUSDT"]})
        assert feed.status()["connects"] == 1


def test_planned_reconnect_server_shutdown_and_pings():
    with BinanceTestServer(
        [BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True, ping_interval=0.05, pong_timeout=5.0
    ) as server:  # pings often; a pong may be late on a busy machine (a late one closes the connection: unplanned)
        with live(server, max_connection_seconds=0.5) as (feed, sink):
            assert feed.wait_synced(10.0)
            wait_for(lambda: feed.status()["planned_reconnects"] >= 3, timeout=30, what="planned reconnects")
            status = feed.status()
            assert status["planned_reconnects"] >= 3 and status["pings"] > 5
            assert server.faults.counts["pong_timeout"] == 0  # every ping was answered in time
            planned = [e for e in sink.connections("disconnected") if e.detail.startswith("planned reconnect")]
            assert len(planned) >= 3
        with live(server) as (feed, sink):
            assert feed.wait_synced(10.0)
            server.publish(300)
            caught_up(feed, server)
            assert server.faults.server_shutdown() == 1
            wait_for(lambda: feed.status()["connects"] == 2, what="the reconnect after serverShutdown")
            assert feed.wait_synced(10.0)
            status = feed.status()
            assert status["server_shutdowns"] == 1 and status["last_disconnect"].startswith("serverShutdown")
            assert status["resyncs"]["by_symbol"] == {"BTCUSDT": 2, "ETHUSDT": 2}
            server.publish(300)
            caught_up(feed, server)
            assert_same_as_server(feed, server, {s: Offline(s) for s in SYMBOLS})


def test_a_connection_dropped_as_soon_as_it_delivered_keeps_backing_off():
    """The backoff was reset by any data, so a connection the server drops moments after its first frames (a slow
    consumer cut off, a proxy) came back at once, time after time: hundreds of connects a minute, where Binance
    allows an IP 300 connection attempts per 5 minutes and may ban one that keeps being disconnected. Only a
    connection that lasted ``backoff_max`` s resets it now."""
    with (
        BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server,
        live(server, backoff_initial=0.001, backoff_max=60.0, clock_samples=0) as (feed, _),
    ):
        for drop in range(6):
            wait_for(lambda n=drop + 1: feed.status()["connects"] == n, what=f"connection {drop + 1}")
            server.publish(20)
            out = feed.status()["events_out"]
            wait_for(lambda out=out: feed.status()["events_out"] > out, what="data on the connection")
            assert server.faults.drop_connections() == 1
        wait_for(lambda: feed.status()["connects"] == 7, what="the last reconnect")
        status = feed.status()
    assert status["reconnect_backoff"] == 6  # six drops, each after data: six steps, never reset


def test_status_fields_latency_and_clock_offset():
    with (
        BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server,
        live(server) as (feed, sink),
    ):
        assert feed.wait_synced(10.0)
        for _ in range(20):
            server.publish(50)
        caught_up(feed, server)
        published = [e for e in sink.events if hasattr(e, "ts_recv")]
        feed.record_publish(published)
        wait_for(lambda: feed.status()["clock_offset_ms"] is not None, what="the clock offset")
        status = feed.status()
    json.dumps(status)  # plain values only
    assert status["venue"] == "binance" and status["state"] == "connected"
    assert status["url"] == server.stream_url and status["connects"] == 1 and status["reconnects"] == 0
    assert status["resyncs"] == {"total": 2, "by_symbol": {"BTCUSDT": 1, "ETHUSDT": 1}}
    streams = [name for s in ("btcusdt", "ethusdt") for name in (f"{s}@depth@100ms", f"{s}@bookTicker", f"{s}@trade")]
    assert set(streams) <= set(status["last_event_age_ms"])
    assert all(status["last_event_age_ms"][name] >= 0 for name in streams)
    assert abs(status["clock_offset_ms"]) < 50  # the server's clock is this machine's
    for kind in ("depth", "trade", "kline"):
        assert status["latency_ms"][kind]["count"] > 0
        assert set(status["latency_ms"][kind]) == {"count", "p50", "p99", "max"}
    assert status["latency_ms"]["bookTicker"]["count"] == 0  # spot bookTicker carries no exchange time
    assert status["latency_ms"]["publish"]["count"] == len(published) and status["latency_ms"]["publish"]["p50"] >= 0
    assert status["bad_input"] == {} and status["rate_limited"] == {"count": 0, "until_ms": None}
    assert status["symbols"]["BTCUSDT"]["synced"] and status["symbols"]["BTCUSDT"]["last_update_id"] > 0
    assert status["connection_age_s"] > 0
    closed = feed.status()
    assert closed["state"] == "closed" and closed["connection_age_s"] is None
    assert sink.events[-1] == VenueConnection(
        venue="binance", state="closed", detail="closed", reconnects=0, resyncs=2, ts=sink.events[-1].ts
    )
    kinds = {type(e).__name__ for e in sink.events}
    assert kinds == {"VenueConnection", "BookDelta", "BookTop", "Trade", "Kline"}
    assert all(e.ts_event > 0 and e.ts_recv > 0 for e in sink.events if hasattr(e, "ts_recv"))


class FlakySink(Sink):
    """Once ``armed``, raises instead of taking the next batch that carries a depth diff (which is then lost).

    Armed by the test, not at a fixed call count: how many batches some published events make depends on how many
    frames the client had read when its loop got to them, so on a busy machine ten publishes may come as two batches.
    """

    def __init__(self) -> None:
        super().__init__()
        self.armed = threading.Event()

    def __call__(self, batch: list) -> None:
        if self.armed.is_set() and any(isinstance(e, BookDelta) and not e.is_snapshot for e in batch):
            self.armed.clear()
            raise RuntimeError("downstream is unhappy")
        super().__call__(batch)


def test_waiting_for_the_books_while_the_loop_thread_is_busy_is_a_false_never_an_exception():
    """``wait_synced`` reads the client on its loop thread; a loop busy past the read's own timeout (a large batch
    parsed, a slow sink) made it raise ``TimeoutError`` out of a wait that promises True or False."""
    import asyncio

    with BinanceTestServer([BTC_CAPTURE], speed=0, paused=True) as server:
        feed = MarketDataThread(settings_for(server, ("BTCUSDT",)), Sink(), rng=random.Random(3)).start()
        try:
            assert feed.wait_synced(10.0)
            busy = threading.Event()

            async def hold_the_loop() -> None:
                busy.set()
                time.sleep(1.0)  # blocks the loop thread itself, as heavy work on it does

            done = asyncio.run_coroutine_threadsafe(hold_the_loop(), feed._loop)
            assert busy.wait(5.0)
            assert feed.wait_synced(0.01) is False
            done.result(5.0)
            assert feed.wait_synced(10.0)
        finally:
            feed.close()


def test_a_sink_that_raises_costs_a_resync_never_a_wrong_downstream_book():
    with BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server:
        sink = FlakySink()
        feed = MarketDataThread(settings_for(server), sink, rng=random.Random(3)).start()
        try:
            assert feed.wait_synced(10.0)
            for _ in range(5):
                server.publish(100)
            caught_up(feed, server)  # the downstream books are live
            sink.armed.set()
            for _ in range(5):  # these diffs reach the client, so one batch of them reaches the sink and is lost
                server.publish(100)
            wait_for(lambda: feed.status()["sink_errors"] == 1, what="the sink error")
            assert feed.wait_synced(10.0)
            server.publish(1000)
            caught_up(feed, server)
            assert_same_as_server(feed, server, {s: Offline(s) for s in SYMBOLS})
            status = feed.status()
        finally:
            feed.close()
    assert status["connects"] == 1 and status["resyncs"]["total"] == 4  # every book rebuilt once more
    assert_output_rebuilds(sink)  # what reached the sink is still a consistent sequence


def test_run_never_raises_without_a_server_and_close_ends_it():
    """The coroutine API on a plain event loop: nothing listens, so connects fail and back off until close()."""

    async def scenario() -> dict:
        sink = Sink()
        client = BinanceMarketData(
            MarketDataSettings("http://127.0.0.1:9", "ws://127.0.0.1:9", ("BTCUSDT",), backoff_initial=0.01),
            sink,
            rng=random.Random(2),
        )
        task = asyncio.create_task(client.run())
        await asyncio.sleep(0.3)
        status = client.status()
        await client.close()
        await asyncio.wait_for(task, 2.0)
        assert client.status()["state"] == "closed"
        assert is_book_reset(sink.events[0]) and [e.state for e in sink.events[1:]] == ["closed"]
        return status

    status = asyncio.run(scenario())
    assert status["state"] in ("connecting", "disconnected") and status["connect_errors"] >= 2
    assert status["connects"] == 0


# ------------------------------------------------------------------------------------------ bad input, the edges


def offline_client(**overrides: Any) -> tuple[BinanceMarketData, list]:
    """A client that is not running (no socket): frames are handed to it directly; its sink collects the batches."""
    out: list = []
    settings = MarketDataSettings("http://h", "ws://h", SYMBOLS, **overrides)
    return BinanceMarketData(settings, out.append, clock=lambda: 1_800_000_000_000_000_000), out


def frame(stream: str, data: dict) -> bytes:
    return json.dumps({"stream": stream, "data": data}).encode()


TRADE = {"e": "trade", "E": 1_700_000_000_000, "s": "BTCUSDT", "t": 1, "p": "100.0", "q": "1.0", "m": True}


def test_settings_refuse_a_month_kline_interval():
    """A month has no fixed length: a Kline's interval is a number of nanoseconds."""
    for interval in ("1M", "3M"):
        with pytest.raises(InvalidInput, match="kline_interval .*months have no fixed length"):
            MarketDataSettings("http://h", "ws://h", ("BTCUSDT",), kline_interval=interval)
    assert MarketDataSettings("http://h", "ws://h", ("BTCUSDT",), kline_interval="1w").streams("BTCUSDT")[-1] == (
        "btcusdt@kline_1w"
    )


def test_an_integer_beyond_int64_is_bad_input_and_never_reaches_the_output():
    client, out = offline_client()
    client._frame(frame("btcusdt@trade", {**TRADE, "E": 10**13}), 1)  # its nanoseconds overflow an int64
    client._frame(frame("btcusdt@trade", {**TRADE, "t": 2**64}), 2)
    client._frame(frame("btcusdt@bookTicker", {"u": 2**63, "s": "BTCUSDT", "b": "1", "B": "1", "a": "2", "A": "1"}), 3)
    assert client.status()["bad_input"] == {"invalid_payload": 3}
    client._frame(frame("btcusdt@trade", TRADE), 4)
    client._flush()
    assert [type(e).__name__ for batch in out for e in batch] == ["Trade"]


def test_a_batch_that_cannot_be_built_is_dropped_and_every_book_reset_downstream():
    """The second guard: should a value the schemas let through fail the int64 columns, the batch is lost (counted,
    logged, every book resynced and said to be unknown downstream) and the output goes on."""
    client, out = offline_client()
    client._pending.trade("BTCUSDT", 1, 1, 1, False, 2**64, 0)  # what no schema lets through any more
    client._flush()
    assert client.status()["internal_errors"] == 1 and out == []
    client._frame(frame("btcusdt@trade", TRADE), 5)
    client._flush()
    (batch,) = out
    assert [e.symbol for e in batch if is_book_reset(e)] == list(SYMBOLS)
    assert [type(e).__name__ for e in batch if not is_book_reset(e)] == ["Trade"]


def test_a_frame_that_raises_anything_is_counted_and_never_ends_the_connection(monkeypatch):
    client, out = offline_client()
    client._frame(b'{"result": null, "id": [1]}', 1)  # a control reply whose id is not an int
    client._frame(b'{"result": null, "id": {"a": 1}}', 2)
    kline = {"t": 0, "T": 59_999, "i": "1M", "o": "1", "c": "1", "h": "1", "l": "1", "v": "1", "x": False}
    client._frame(frame("btcusdt@kline_1m", {"e": "kline", "E": 1, "s": "BTCUSDT", "k": kline}), 3)
    assert client.status()["bad_input"] == {"unexpected_reply": 2, "invalid_payload": 1}

    def broken(delta: BookDelta) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(client, "_depth", broken)
    diff = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 5, "u": 6, "b": [], "a": []}
    client._frame(frame("btcusdt@depth@100ms", diff), 4)
    assert client.status()["bad_input"]["unexpected_error"] == 1
    client._flush()  # the diff may have reached a book unemitted: every book is said to be unknown
    assert [e.symbol for batch in out for e in batch if is_book_reset(e)] == list(SYMBOLS)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("259200", 259_200.0),  # Binance's longest ban, 3 days
        ("inf", 60.0),  # the rest: not a real answer, the client's own backoff
        ("-inf", 60.0),
        ("nan", 60.0),
        ("1e400", 60.0),
        ("259201", 60.0),
        ("-1", 60.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),
        (None, 60.0),
    ],
)
def test_retry_after_is_taken_only_within_0_to_3_days(header, seconds):
    client, _ = offline_client(backoff_initial=60.0, backoff_max=60.0)
    client._note_rate_limit(429, header, "/api/v3/depth")
    status = client.status()
    assert status["rate_limited"]["count"] == 1
    assert status["rate_limited"]["until_ms"] == 1_800_000_000_000 + seconds * 1000


def synced_over(path: Path, diffs: int) -> tuple[BookSync, list[BookDelta], L2Book]:
    """A book sync at the capture's snapshot with its first ``diffs`` diffs applied, the diffs, and the offline book
    at the same point."""
    snapshot, live, offline = after_snapshot(path)
    sync = BookSync(snapshot.symbol)
    assert sync.on_snapshot(snapshot) is not None
    for delta in live[:diffs]:
        assert sync.on_diff(delta) == APPLIED
        offline.apply(delta)
    return sync, live, offline


def test_a_corrupt_diff_cannot_block_the_resync():
    """A diff with a huge U and u: a gap, and every real diff after it looks out of order; the next snapshot is stale
    against it, and so is every later one. After a few in a row the sync starts over from fresh diffs, and the snapshot
    after that connects."""
    sync, live, offline = synced_over(BTC_CAPTURE, 5)
    symbol = sync.symbol
    corrupt = BookDelta(
        symbol=symbol, first_update_id=10**15, last_update_id=10**15, bids=((1, 1),), asks=(), ts_event=0, ts_recv=0
    )
    assert sync.on_diff(corrupt) == GAP
    assert sync.on_diff(live[5]) == OUT_OF_ORDER  # below the corrupt u
    for delta in live[5:10]:
        offline.apply(delta)
    for tries in range(1, _STALE_BEFORE_RESTART + 1):  # the corrupt diff heads the buffer: each snapshot is stale
        assert sync.on_snapshot(snapshot_of(offline)) is None and sync.stale_snapshots == tries
        assert sync.book.buffered == (0 if tries == _STALE_BEFORE_RESTART else 1)  # then the sync starts over
    for delta in live[10:20]:
        assert sync.on_diff(delta) == BUFFERED  # fresh diffs, no longer judged against the corrupt u
        offline.apply(delta)
    probe = L2Book(symbol)
    probe.apply_snapshot(snapshot_of(offline))
    out = sync.on_snapshot(snapshot_of(probe))
    assert out is not None and sync.synced and same_book(sync.book, offline)


def test_a_corrupt_diff_that_connects_is_found_within_a_few_diffs_and_the_book_synced_again():
    """A well-formed diff with U = last u + 1 and a huge u is applied (no rule tells it from a real one); every real
    diff after it is then behind it. A lone repeat on a synced book is only dropped, but a few in a row mean the book
    took a corrupt diff: it is forgotten and synced again from fresh diffs, not left frozen and marked synced."""
    sync, live, offline = synced_over(BTC_CAPTURE, 5)
    symbol = sync.symbol
    assert sync.on_diff(live[3]) == OUT_OF_ORDER  # a repeat: dropped, and the next real diff ends the run
    assert sync.on_diff(live[5]) == APPLIED
    offline.apply(live[5])
    last = sync.book.last_update_id
    price, qty = sync.book.best_bid()
    corrupt = BookDelta(symbol=symbol, first_update_id=last + 1, last_update_id=last + 1 + 10**12,
                        bids=((price, qty + SCALE),), asks=(), ts_event=0, ts_recv=0)  # fmt: skip
    assert sync.on_diff(corrupt) == APPLIED and sync.synced
    behind = live[6 : 6 + _OUT_OF_ORDER_BEFORE_RESTART]
    assert [sync.on_diff(d) for d in behind] == [OUT_OF_ORDER] * (len(behind) - 1) + [RESTART]
    assert not sync.synced and sync.book.buffered == 0 and len(sync.book) == 0 and sync.restarts == 1
    for delta in behind:
        offline.apply(delta)
    rest = live[6 + len(behind) : 40]
    for delta in rest[:3]:
        assert sync.on_diff(delta) == BUFFERED  # fresh diffs, judged against nothing the corrupt diff left
        offline.apply(delta)
    rest_snapshot = snapshot_of(offline)  # the REST snapshot, taken while more diffs were buffered after it
    for delta in rest[3:]:
        assert sync.on_diff(delta) == BUFFERED
        offline.apply(delta)
    out = sync.on_snapshot(rest_snapshot)
    assert out is not None and [d.last_update_id for d in out[1:]] == [d.last_update_id for d in rest[3:]]
    assert sync.synced and same_book(sync.book, offline)


def test_book_sync_forgets_a_book_a_diff_leaves_crossed_live_or_replayed():
    """A best bid at or above the best ask is wrong input: the diff is not emitted, the book is forgotten (and its
    buffer), whether the diff came live or was replayed after a snapshot; the next snapshot over fresh diffs syncs."""
    sync, live, offline = synced_over(BTC_CAPTURE, 5)
    above_every_ask = ((10**15, SCALE),)  # a bid of 10 million USDT
    assert sync.on_diff(dataclasses.replace(live[5], bids=live[5].bids + above_every_ask)) == CROSSED
    assert not sync.synced and len(sync.book) == 0 and sync.book.buffered == 0 and sync.crossed == 1

    sync, live, offline = synced_over(BTC_CAPTURE, 0)
    snapshot = snapshot_of(offline)
    sync.forget()
    assert sync.on_diff(live[0]) == BUFFERED
    assert sync.on_diff(dataclasses.replace(live[1], bids=live[1].bids + above_every_ask)) == BUFFERED
    assert sync.on_snapshot(snapshot) is None  # the replay crosses the book
    assert not sync.synced and sync.book.buffered == 0 and sync.crossed == 1
    for delta in live[:4]:
        offline.apply(delta)
    assert sync.on_diff(live[4]) == BUFFERED
    assert sync.on_snapshot(snapshot_of(offline)) is not None and sync.synced


def test_a_diff_that_crosses_the_book_over_the_wire_is_counted_reset_downstream_and_resynced():
    with BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server:
        with live(server) as (feed, sink):
            assert feed.wait_synced(10.0)
            offline = {s: Offline(s) for s in SYMBOLS}
            server.publish(200)
            caught_up(feed, server)
            emitted = len(sink.events)
            server.faults.cross_book("BTCUSDT")
            while not server.faults.counts["cross_book"]:
                server.publish(1)
            wait_for(lambda: feed.status()["bad_input"].get("crossed_book") == 1, what="the crossed book")
            server.publish(300)
            caught_up(feed, server)
            assert_same_as_server(feed, server, offline)
            status = feed.status()
        assert status["bad_input"] == {"crossed_book": 1}
        assert status["resyncs"]["by_symbol"] == {"BTCUSDT": 2, "ETHUSDT": 1}
        after = [e for e in sink.events[emitted:] if isinstance(e, BookDelta) and e.symbol == "BTCUSDT"]
        assert is_book_reset(after[0]) and after[1].is_snapshot  # the crossing diff never left the client
        assert_output_rebuilds(sink)


def test_a_depth_diff_the_schema_refuses_resyncs_its_symbol_at_once():
    """The refused diff may have been a real one: the book is reset downstream and synced again without waiting for
    the next diff to show a gap (none comes here: the server is paused)."""
    with BinanceTestServer([BTC_CAPTURE], speed=0, paused=True) as server:
        with live(server, ("BTCUSDT",)) as (feed, sink):
            assert server.wait_connections(1)
            server.publish(300)
            assert feed.wait_synced(10.0)
            caught_up(feed, server, ("BTCUSDT",))
            emitted = len(sink.events)
            assert server.faults.malformed("absurd_price", 1) == 1
            wait_for(lambda: feed.status()["resyncs"]["total"] == 2, what="the resync")
            server.publish(300)
            caught_up(feed, server, ("BTCUSDT",))
            status = feed.status()
        assert status["bad_input"] == {"invalid_payload": 1}
        after = [e for e in sink.events[emitted:] if isinstance(e, BookDelta)]
        assert is_book_reset(after[0]) and after[1].is_snapshot
        assert_output_rebuilds(sink, ("BTCUSDT",))


def test_a_symbol_delisted_in_the_session_is_an_error_event_and_its_snapshot_is_not_asked_at_the_backoff_pace():
    """Binance answers the snapshot of a delisted symbol -1121: one ``VenueConnection(error)`` naming it and the code,
    its book unsynced, no new request before ``refused_symbol_retry``; the other symbol goes on (and resyncs after a
    gap meanwhile, which takes a whole backoff cycle's time)."""
    with BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server:
        with live(server, refused_symbol_retry=3600.0) as (feed, sink):
            assert feed.wait_synced(10.0)
            server.faults.delist("ETHUSDT")
            assert server.faults.drop_connections() == 1  # the new connection resyncs every book
            wait_for(lambda: sink.connections("error"), what="the error event")
            asked = server.faults.counts["delisted"]  # (a request already on its way when it was refused counts too)
            server.publish(300)
            wait_for(lambda: feed.status()["symbols"]["BTCUSDT"]["resyncs"] == 2, what="BTCUSDT to resync")
            server.faults.skip_update_ids("BTCUSDT", 1)
            while not feed.status()["bad_input"].get("sequence_gap"):
                server.publish(1)
            wait_for(lambda: feed.status()["symbols"]["BTCUSDT"]["resyncs"] == 3, what="BTCUSDT to resync")
            caught_up(feed, server, ("BTCUSDT",))
            status = feed.status()
        (error,) = sink.connections("error")
        assert error.symbol == "ETHUSDT" and "-1121 BAD_SYMBOL: Invalid symbol." in error.detail
        assert 1 <= asked <= 2 and server.faults.counts["delisted"] == asked  # not asked again after the refusal
        eth = status["symbols"]["ETHUSDT"]
        assert not eth["synced"] and eth["refused"] == error.detail and status["symbols"]["BTCUSDT"]["refused"] is None


def test_a_corrupt_diff_that_connects_over_the_wire_is_undone_by_a_resync_without_a_reconnect():
    with BinanceTestServer([BTC_CAPTURE], speed=0, paused=True) as server:
        with live(server, ("BTCUSDT",)) as (feed, sink):
            assert server.wait_connections(1)
            server.publish(300)
            assert feed.wait_synced(10.0)
            caught_up(feed, server, ("BTCUSDT",))
            offline = {"BTCUSDT": Offline("BTCUSDT")}
            assert server.faults.malformed("runaway_update_id") == 1
            wait_for(lambda: feed.status()["symbols"]["BTCUSDT"]["last_update_id"] > 10**12, what="the corrupt diff")
            server.publish(300)
            caught_up(feed, server, ("BTCUSDT",))
            assert_same_as_server(feed, server, offline)
            status = feed.status()
            assert status["connects"] == 1  # no reconnect needed
            assert status["bad_input"]["book_restart"] == 1 and status["symbols"]["BTCUSDT"]["restarts"] == 1
        # downstream: the book reset came before any real diff after the corrupt one, and the rebuilt book is right
        events = [e for e in sink.events if isinstance(e, BookDelta)]
        (at,) = [i for i, e in enumerate(events) if e.last_update_id > 10**12]
        assert is_book_reset(events[at + 1])
        downstream = L2Book("BTCUSDT")
        for event in events[at + 1 : -1]:  # (the last one: the stream closed)
            if event.is_snapshot:
                downstream.apply_snapshot(event)
            else:
                assert downstream.apply(event)
        assert same_book(downstream, Offline("BTCUSDT").advance(downstream.last_update_id))


def test_after_the_sync_starts_over_the_next_snapshot_is_fetched_only_over_fresh_diffs(monkeypatch):
    """Binance's step 4 needs buffered diffs to judge a snapshot by: stale snapshots are fetched again over the same
    buffer, and once the sync has started over (``_STALE_BEFORE_RESTART`` in a row) the client waits for a fresh diff
    (however long), never taking a snapshot over an empty buffer."""
    with BinanceTestServer([BTC_CAPTURE], speed=0, paused=True) as server:
        # no backoff to speak of: a refetch over an empty buffer, if there were one, would come at once
        settings = settings_for(server, ("BTCUSDT",), snapshot_wait=5.0, backoff_initial=1e-6, backoff_max=1e-6)
        feed = MarketDataThread(settings, Sink(), rng=random.Random(6))
        client = feed.client
        fetched: list[int] = []  # diffs buffered when a snapshot was requested
        rest = client._rest

        async def recording(path: str, params: dict | None = None, weight: int = 1) -> Any:
            if path == "/api/v3/depth" and params is not None:
                fetched.append(client.book(params["symbol"]).buffered)
            return await rest(path, params, weight)

        monkeypatch.setattr(client, "_rest", recording)
        feed.start()
        try:
            assert server.wait_connections(1)
            server.publish(300)
            assert feed.wait_synced(10.0)
            server.faults.stale_snapshot(_STALE_BEFORE_RESTART)
            assert server.faults.drop_connections() == 1
            wait_for(lambda: feed.status()["connects"] == 2 and server.connections() == 1, what="a reconnect")
            mark = len(fetched)
            server.publish(300)
            stale = _STALE_BEFORE_RESTART
            wait_for(lambda: feed.status()["bad_input"].get("stale_snapshot") == stale, what="the stale snapshots")
            server.publish(300)
            assert feed.wait_synced(10.0)
            caught_up(feed, server, ("BTCUSDT",))
            assert_same_as_server(feed, server, {"BTCUSDT": Offline("BTCUSDT")})
            assert len(fetched) - mark == stale + 1 and all(fetched[mark:])  # each fetch over buffered diffs
        finally:
            feed.close()


class BatchSink(Sink):
    """Keeps the columnar batches as they came, besides their events."""

    def __init__(self) -> None:
        super().__init__()
        self.columns: list[MarketBatch] = []

    def __call__(self, batch: MarketBatch) -> None:  # type: ignore[override]
        with self.lock:
            self.columns.append(batch)
        super().__call__(batch)  # type: ignore[arg-type]


def test_a_depth_stream_that_stops_while_the_book_moves_on_is_reconnected_and_its_book_synced_again():
    """Binance stops sending one symbol's diffs while its book moves on (its trades and the other symbol go on, so the
    connection never goes idle): the book, still marked synced, stood still at old prices for good, and a paper venue
    filled market orders at them. A book without a diff for ``stream_silence`` s is checked against the exchange's
    ``lastUpdateId``: past the book's, the stream is dead: the book is reset downstream and the connection reconnected,
    and the book is synced again at the exchange's."""
    with (
        BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server,
        live(server, stream_silence=0.2) as (feed, sink),
    ):
        assert feed.wait_synced(10.0)
        server.publish(300)
        caught_up(feed, server)
        frozen = feed.status()["symbols"]["BTCUSDT"]["last_update_id"]
        server.faults.skip_update_ids("BTCUSDT", 10**9)  # applied to the server's book, never sent
        emitted = len(sink.events)
        server.publish(1000)
        moved_on = server.book("BTCUSDT")[0]
        assert moved_on > frozen
        wait_for(lambda: feed.status()["bad_input"].get("silent_stream") == 1, what="the stopped stream to be found")
        caught_up(feed, server)  # synced again from a snapshot: the server is paused at moved_on
        status = feed.status()
    assert status["bad_input"] == {"silent_stream": 1}
    assert status["connects"] == 2 and status["disconnects"] == {"silent stream": 1}
    btc = [e for e in sink.events[emitted:] if isinstance(e, BookDelta) and e.symbol == "BTCUSDT"]
    assert is_book_reset(btc[0])  # said before anything else of BTCUSDT: no diff of the frozen book went out
    assert btc[1].is_snapshot and btc[1].last_update_id == moved_on


def test_a_depth_stream_that_stops_while_the_sync_waits_for_a_fresh_diff_is_reconnected():
    """After stale snapshots the sync starts over and waits for a fresh diff, however long: a stream that stopped
    then left the symbol unsynced for good (no diff ever came to wait for). Two looks without a diff while the
    exchange's ``lastUpdateId`` moved on: reconnected, and the book synced again."""
    with BinanceTestServer([BTC_CAPTURE], speed=0, paused=True) as server:
        settings = settings_for(server, ("BTCUSDT",), stream_silence=0.1, snapshot_wait=5.0, clock_samples=0)
        with MarketDataThread(settings, Sink(), rng=random.Random(6)) as feed:
            assert server.wait_connections(1)
            server.publish(300)
            assert feed.wait_synced(10.0)
            server.faults.stale_snapshot(_STALE_BEFORE_RESTART)
            assert server.faults.drop_connections() == 1
            wait_for(lambda: feed.status()["connects"] == 2 and server.connections() == 1, what="a reconnect")
            server.publish(300)  # buffered: the snapshots are judged stale over them, and the sync starts over
            wait_for(lambda: feed.status()["bad_input"].get("stale_snapshot") == _STALE_BEFORE_RESTART, what="stale")
            assert not feed.status()["symbols"]["BTCUSDT"]["synced"]
            server.faults.skip_update_ids("BTCUSDT", 10**9)  # the stream stops: no fresh diff will ever come

            def moved_on_and_found() -> bool:
                server.publish(20)  # the exchange's book moves on between the looks
                return feed.status()["bad_input"].get("silent_stream", 0) >= 1

            wait_for(moved_on_and_found, what="the stopped stream to be found")
            caught_up(feed, server, ("BTCUSDT",))  # synced again from a snapshot (the server is paused)
            status = feed.status()
    assert status["connects"] == 3 and status["disconnects"].get("silent stream") == 1


def test_a_quiet_market_is_checked_and_its_book_left_alone():
    """No diff because nothing changed: the exchange's ``lastUpdateId`` is the book's, so nothing happens."""
    with (
        BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server,
        live(server, stream_silence=0.05) as (feed, _),
    ):
        assert feed.wait_synced(10.0)
        syncs = len(server.rest_log("/api/v3/depth"))
        wait_for(lambda: len(server.rest_log("/api/v3/depth")) >= syncs + 6, what="a few checks of the books")
        status = feed.status()
    assert status["connects"] == 1 and status["bad_input"] == {} and status["resyncs"]["total"] == 2


def test_a_gap_a_reconnect_or_the_end_unsync_a_paper_venue_until_the_next_snapshot():
    """The client says when it stops knowing a book; a paper venue fed its columnar output (the depth messages and
    trades of MarketBatch.market_inputs, what a venue actor journals) fills nothing from then to the next snapshot."""
    with BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server:
        sink = BatchSink()
        feed = MarketDataThread(settings_for(server), sink, rng=random.Random(4), columnar=True).start()
        try:
            assert feed.wait_synced(10.0)
            offline = {s: Offline(s) for s in SYMBOLS}
            server.publish(1000)
            caught_up(feed, server)
            check_gap(feed, server, sink, offline)  # BTCUSDT
            connects = feed.status()["connects"]
            assert server.faults.drop_connections() == 1  # both
            wait_for(lambda: feed.status()["connects"] > connects, what="a reconnect")
            assert feed.wait_synced(10.0)
            server.publish(1000)
            caught_up(feed, server)
        finally:
            feed.close()  # the end of the stream: both
    engine = Engine(engine_config(venue_kind="paper"))
    resets = dict.fromkeys(SYMBOLS, 0)
    for batch in sink.columns:
        for event in batch.market_inputs(SYMBOLS):
            venue = engine.venues[event.symbol]
            synced = not venue.book.needs_resync
            engine.apply(event)
            if not is_book_reset(event) or venue.market_events == 1:
                continue  # (the client's first word, before any book: none known yet)
            resets[event.symbol] += 1
            assert synced and venue.book.needs_resync and len(venue.book) == 0  # the reset is what unsynced it
            order = place(f"m{sum(resets.values())}", "BUY", "0.01", symbol=event.symbol, ts=event.ts_recv)
            out = engine.apply(order)
            assert [e.reason for e in out if type(e) is OrderExpired] == [RejectReason.NO_LIQUIDITY]
            assert not any(type(e) is OrderFilled for e in out)
    assert resets == {"BTCUSDT": 3, "ETHUSDT": 2}
    assert engine.totals() == engine.deposited()


def test_a_paper_engine_recovered_from_its_journal_fills_nothing_before_the_new_client_synced_its_book(tmp_path):
    """A paper session restarted over its journal recovers the book the journal ended with, hours old maybe, marked
    synced: a market order filled at its prices until the new client's first snapshot, and for as long as none came
    (the network down, REST banned). The client's first word is a book reset for every symbol, before it connects."""
    events = capture(BTC_CAPTURE)
    journal = tmp_path / "paper.journal"
    engine = Engine(engine_config(venue_kind="paper"), journal_path=journal)
    for event in events[:2000]:
        engine.apply(event)
    assert not engine.venues["BTCUSDT"].book.needs_resync
    engine.close()
    engine, _ = Engine.recover(engine_config(venue_kind="paper"), journal)
    sink = Sink()
    settings = MarketDataSettings("http://127.0.0.1:9", "ws://127.0.0.1:9", SYMBOLS, backoff_initial=0.01)
    with MarketDataThread(settings, sink, rng=random.Random(3)) as feed:  # nothing listens: it never connects
        wait_for(lambda: len(sink.events) >= 2, what="the client's first batch")
        first = sink.events[:2]
        assert feed.status()["connects"] == 0
    assert [e.symbol for e in first if is_book_reset(e)] == list(SYMBOLS)
    for event in first:
        engine.apply(event)
    out = engine.apply(place("m1", "BUY", "0.01", ts=events[1999].ts_recv + 3_600 * 10**9))
    assert [e.reason for e in out if type(e) is OrderExpired] == [RejectReason.NO_LIQUIDITY]
    assert not any(type(e) is OrderFilled for e in out)
    assert engine.totals() == engine.deposited()
    engine.close()


def test_a_consumer_that_failed_to_apply_a_batch_gets_exactly_its_symbols_books_reset_and_synced_again():
    """A consumer (a venue actor that raised on a batch) may lack diffs the client's books hold: ``resync`` resets
    and syncs again the books it names, and no other, counted in the status."""
    with BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server:
        with live(server) as (feed, sink):
            assert feed.wait_synced(10.0)
            server.publish(300)
            caught_up(feed, server)
            emitted = len(sink.events)
            feed.resync(["btcusdt", "XRPUSDT"])  # a symbol not subscribed is left out
            wait_for(lambda: feed.status()["resyncs"]["total"] == 3, what="the resync")
            server.publish(300)
            caught_up(feed, server)
            assert_same_as_server(feed, server, {s: Offline(s) for s in SYMBOLS})
            status = feed.status()
            after = [e for e in sink.events[emitted:] if isinstance(e, BookDelta)]  # before the close resets all
        assert status["resync_requests"] == 1 and status["connects"] == 1
        assert status["resyncs"]["by_symbol"] == {"BTCUSDT": 2, "ETHUSDT": 1}
        assert is_book_reset(after[0]) and after[0].symbol == "BTCUSDT" and after[1].is_snapshot
        assert not any(e.is_snapshot for e in after if e.symbol == "ETHUSDT")
        assert_output_rebuilds(sink)


def test_no_url_secret_reaches_the_status_a_log_line_an_event_or_an_error():
    """Endpoints with a ``user:password@``: the status, the connection events, every log record and the reason of
    a failed connect show it as ``***`` (they were shown verbatim)."""
    password = "pa55word-Xy"
    with every_log_record() as records, BinanceTestServer([BTC_CAPTURE], speed=0, paused=True) as server:
        with_secret = {
            "rest_url": server.rest_url.replace("://", f"://trader:{password}@"),
            "stream_url": server.stream_url.replace("://", f"://trader:{password}@"),
        }
        settings = dataclasses.replace(settings_for(server, ("BTCUSDT",)), **with_secret)
        sink = Sink()
        feed = MarketDataThread(settings, sink, rng=random.Random(1)).start()
        try:
            assert feed.wait_synced(10.0)
            status = feed.status()
            server.faults.restart(downtime=0.3)  # a connect that fails on the way: its reason is logged
            wait_for(lambda: feed.status()["connects"] >= 2 and feed.wait_synced(0.01), what="the reconnect")
            status_after = feed.status()
        finally:
            feed.close()
    assert status["url"].startswith("ws://***@127.0.0.1") and status["rest_url"].startswith("http://***@127.0.0.1")
    texts = [json.dumps([status, status_after], default=str)] + [repr(e) for e in sink.events]
    texts += [record.getMessage() for record in records]
    leaks = [t for t in texts if password in t]
    assert not leaks, leaks[:3]


# ------------------------------------------------------------------------------ pacing the depth snapshots

MANY = ("BTCUSDT", "ETHUSDT", "AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT")


def renamed_capture(source: Path, symbol: str, directory: Path, lines: int = 3000) -> Path:
    """The first ``lines`` lines of a spot capture (its REST snapshot line among them), its symbol renamed: one more
    market for the test server."""
    old = source.name.split("_")[2].encode()  # "btcusdt"
    with gzip.open(source, "rb") as fh:
        head = b"".join(itertools.islice(fh, lines))
    body = head.replace(old.upper(), symbol.encode()).replace(old, symbol.lower().encode())
    path = directory / f"binance_spot_{symbol.lower()}_ws.txt.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(body)
    return path


@contextmanager
def many_markets(directory: Path):
    """A paused server with the six markets of ``MANY`` (two recorded, four renamed copies of the BTCUSDT one)."""
    extra = [renamed_capture(BTC_CAPTURE, symbol, directory) for symbol in MANY[2:]]
    with BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE, *extra], speed=0, paused=True) as server:
        yield server


def reconnect(feed: MarketDataThread, server: BinanceTestServer) -> None:
    """Drop the connection: every book goes out of sync at once, then wait until all are synced again."""
    connects = feed.status()["connects"]
    assert server.faults.drop_connections() == 1
    wait_for(lambda: feed.status()["connects"] > connects, what="the reconnect")
    assert feed.wait_synced(30.0)


def test_a_resync_storm_keeps_the_depth_requests_in_flight_bounded(tmp_path):
    """Every book out of sync at once (a reconnect): each symbol's sync fetched its snapshot at once, so N symbols put
    N depth requests (weight 250 each at limit 5000) on Binance together, and again on every failure. They now share
    ``snapshots_in_flight`` (2) slots for the whole client, and count against its REST weight budget."""
    with many_markets(tmp_path) as server:
        server.faults.slow_depth(0.1, count=100)  # answers that take a while, as 5000 levels do: requests overlap
        with live(server, MANY, clock_samples=0, rest_weight_per_minute=3000) as (feed, _):
            assert feed.wait_synced(30.0)
            reconnect(feed, server)
            status = feed.status()
        depth = server.rest_log("/api/v3/depth")
    assert len(depth) == 2 * len(MANY) and {r.status for r in depth} == {200}
    assert max(r.in_flight for r in depth) == 2
    weight = status["rest_weight"]  # twelve snapshots of weight 250 fit the minute's 3000 (the window may roll over)
    assert weight["per_minute"] == 3000 and 0 < weight["used"] <= 3000 and weight["paced"] == 0
    assert status["snapshots_in_flight"] == 0


def test_a_429_in_a_resync_storm_holds_back_every_symbol_until_its_retry_after(tmp_path):
    """A 429 with ``Retry-After`` while six symbols resync: besides the one request already on its way with it (two
    slots), no depth request reaches the server before ``Retry-After`` has passed; the old client had the other five
    in flight already, each a further strike towards an IP ban."""
    with many_markets(tmp_path) as server:
        # snapshots of 100 levels (weight 5): the weight budget has room for every one, only the 429 holds them back
        with live(server, MANY, clock_samples=0, snapshot_limit=100) as (feed, _):
            assert feed.wait_synced(30.0)
            server.faults.rate_limit(429, retry_after=1, count=1)
            reconnect(feed, server)
            status = feed.status()
        depth = server.rest_log("/api/v3/depth")
    (limited,) = [r for r in depth if r.status == 429]
    after = [r for r in depth if r.arrived > limited.arrived]
    early = [r for r in after if r.arrived < limited.answered + 1.0]
    assert len(early) <= 1, early  # at most the one sent with it, before the client had the 429
    assert len(after) >= len(MANY) - 1  # the rest came after the wait, the limited symbol's again among them
    assert status["rate_limited"]["count"] == 1 and all(s["synced"] for s in status["symbols"].values())


def test_a_symbol_that_keeps_going_out_of_sync_backs_off_across_its_syncs():
    """Each sync of a symbol made a fresh backoff, so a book that went out of sync again right after each snapshot
    fetched the next one at once, every time. Its backoff now carries over while it keeps doing so (the seeded
    generator gives the very delays the client draws: each snapshot comes at least that long after its gap)."""
    seed = 1
    expected = Backoff(0.5, 30.0, random.Random(seed))
    with (
        BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server,
        live(server, seed=seed, backoff_initial=0.5, backoff_max=30.0, clock_samples=0) as (feed, _),
    ):
        assert feed.wait_synced(10.0)
        for n in range(1, 4):
            gaps = feed.status()["bad_input"].get("sequence_gap", 0)
            asked = len(server.rest_log("/api/v3/depth"))
            server.faults.skip_update_ids("BTCUSDT", 1)
            started = time.monotonic()
            while feed.status()["bad_input"].get("sequence_gap", 0) == gaps:
                server.publish(1)
            delay = expected.next_delay()
            assert feed.wait_synced(10.0)
            (request,) = server.rest_log("/api/v3/depth")[asked:]
            assert request.symbol == "BTCUSDT" and request.arrived >= started + delay
            assert feed.status()["symbols"]["BTCUSDT"]["snapshot_backoff"] == n
        assert feed.status()["symbols"]["ETHUSDT"]["snapshot_backoff"] == 0


def test_a_sync_that_raises_unexpectedly_is_counted_and_its_symbol_synced_again(monkeypatch):
    """An exception no handler expects (a bug) ended the symbol's sync task: its book stayed unsynced, with no word
    of it in the status, until the next reconnect. It is counted as an internal error and the symbol synced again."""
    from veloz_actors.venues.binance import market_data

    parse = market_data.parse_depth_snapshot
    raised: list[str] = []

    def failing_once(body: Any, ts: int, symbol: str) -> BookDelta:
        if symbol == "ETHUSDT" and not raised:
            raised.append(symbol)
            raise RuntimeError("a bug in the snapshot's path")
        return parse(body, ts, symbol)

    monkeypatch.setattr(market_data, "parse_depth_snapshot", failing_once)
    with BinanceTestServer([BTC_CAPTURE, ETH_CAPTURE], speed=0, paused=True) as server, live(server) as (feed, _):
        assert feed.wait_synced(10.0)
        status = feed.status()
    assert raised == ["ETHUSDT"] and status["internal_errors"] == 1
    assert status["symbols"]["ETHUSDT"]["synced"] and status["connects"] == 1
