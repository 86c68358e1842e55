"""Paper trading on the actor engine against the local Binance server: live market data in, orders filling against
the served book, money conserved exactly, the venue's connection on STATUS and the bus."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from veloz_actors.actors.api import build_spec, start_local
from veloz_actors.actors.feed import MarketFeedActor
from veloz_actors.actors.venue import VenueActor
from veloz_actors.config import with_venue
from veloz_actors.core.l2book import L2Book
from veloz_actors.data.loaders import load_market_events
from veloz_actors.fixed import format_decimal
from veloz_actors.messages import BookDelta, Error, OrderAccepted, OrderFilled, VenueConnection
from veloz_actors.testing.binance_server import BinanceTestServer
from veloz_actors.venues.paper import PaperVenue

from ..venues.faults import raise_once
from .helpers import file_config, wait_for

BTC = "ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"
ETH = "ticks_l2/binance_spot_ethusdt_20240808_ws.txt.gz"


@pytest.fixture
def server(shared_data):
    with BinanceTestServer([shared_data / BTC, shared_data / ETH], paused=True) as running:
        yield running


def paper_config(server: BinanceTestServer):
    return with_venue(
        file_config(),
        kind="binance",
        mode="paper",
        symbols=["BTCUSDT", "ETHUSDT"],
        rest_url=server.rest_url,
        stream_url=server.stream_url,
    )


def deposited(config) -> dict[str, int]:
    out: dict[str, int] = {}
    for assets in config.engine_config().balances.values():
        for asset, amount in assets.items():
            out[asset] = out.get(asset, 0) + amount
    return out


def offline_book(shared_data: Path, upto: int) -> L2Book:
    """The L2 book built from the file itself, through the last depth diff with ``u <= upto``."""
    book = L2Book("BTCUSDT")
    for event in load_market_events(shared_data / BTC):
        if type(event) is BookDelta:
            if event.is_snapshot:
                book.apply_snapshot(event)
            elif event.last_update_id <= upto:
                book.apply(event)
    return book


def test_instruments_come_from_the_venue_and_are_cached_in_the_run_folder(server, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    spec = build_spec(paper_config(server), journal_dir=run / "engine.actors")
    instruments = {i["symbol"]: i for i in spec.engine_config["instruments"]}
    assert sorted(instruments) == ["BTCUSDT", "ETHUSDT"]
    assert spec.engine_config["venue_kind"] == "paper"
    assert spec.engine_config["sim_symbols"] == []
    assert format_decimal(instruments["BTCUSDT"]["price_tick"]) == "0.01"
    assert (run / "exchange-info.json").is_file()
    assert spec.market_data is not None and spec.market_data["rest_url"] == server.rest_url


@pytest.mark.usefixtures("ray_runtime")
def test_paper_trading_end_to_end(server, shared_data, tmp_path):
    config = paper_config(server)
    engine = start_local(config, name="test-paper", journal_dir=tmp_path / "engine.actors")
    try:
        events = engine.subscribe(kinds=["OrderFilled", "OrderAccepted", "VenueConnection"], max_queue=100_000)
        assert server.wait_connections(1, timeout=30)
        seen: list = []
        # the engine's paper venue keeps the served book exactly, diff after diff
        for _ in range(5):
            server.publish(400)
            last_id, bids, asks = server.book("BTCUSDT")
            depth = wait_for(
                lambda last_id=last_id: (d := engine.depth("BTCUSDT", 50)) and d["last_update_id"] == last_id and d,
                timeout=30,
                what="the paper venue's book to reach the server's",
            )
            assert depth["synced"]
            assert depth["bids"] == tuple(bids[:50]) and depth["asks"] == tuple(asks[:50])
        offline = offline_book(shared_data, depth["last_update_id"])
        assert depth["bids"] == offline.depth(50)[0] and depth["asks"] == offline.depth(50)[1]

        status = engine.status()
        market = status["market_data"]
        assert market["state"] == "connected" and market["resyncs"]["total"] >= 2
        assert set(market["symbols"]) == {"BTCUSDT", "ETHUSDT"} and market["symbols"]["BTCUSDT"]["synced"]
        assert "clock_offset_ms" in market and market["last_event_age_ms"]

        # a market order walks the served asks
        best_ask = asks[0][0]
        out = engine.place_order("BTCUSDT", "BUY", "0.01", client_order_id="paper-m1")
        assert any(type(e) is OrderAccepted for e in out), out
        assert engine.settle()  # the venue answered; its fills reach the bus a moment later
        wait_for(
            lambda: (
                (seen.extend(events.poll()) or True)
                and sum(e.qty for e in seen if type(e) is OrderFilled and e.client_order_id == "paper-m1") >= 1_000_000
            ),
            timeout=30,
            what="the market order's fills on the bus",
        )
        fills = [e for e in seen if type(e) is OrderFilled and e.client_order_id == "paper-m1"]
        assert fills[0].price == best_ask and sum(f.qty for f in fills) == 1_000_000
        # a resting limit order at the best bid fills from later public trades (queue model), as a maker
        bid = bids[0][0]
        out = engine.place_order("BTCUSDT", "BUY", "0.001", format_decimal(bid), client_order_id="paper-l1")
        assert any(type(e) is OrderAccepted for e in out), out
        server.publish(20_000)
        wait_for(
            lambda: (
                (seen.extend(events.poll()) or True)
                and any(type(e) is OrderFilled and e.client_order_id == "paper-l1" for e in seen)
            ),
            timeout=60,
            what="the resting order to fill from the live trades",
        )
        assert engine.settle()
        # a dropped connection: reported on the bus and STATUS, the books resynced and exact again
        assert server.faults.drop_connections() == 1
        wait_for(
            lambda: (
                (seen.extend(events.poll()) or True)
                and any(type(e) is VenueConnection and e.state == "disconnected" for e in seen)
                and any(type(e) is VenueConnection and e.state == "connected" for e in seen)
            ),
            timeout=60,
            what="the disconnect and the reconnect on the bus",
        )
        server.publish(300)
        last_id, bids, asks = server.book("BTCUSDT")
        depth = wait_for(
            lambda: (d := engine.depth("BTCUSDT", 50)) and d["last_update_id"] == last_id and d,
            timeout=30,
            what="the paper venue's book after the reconnect",
        )
        assert depth["bids"] == tuple(bids[:50]) and depth["asks"] == tuple(asks[:50])
        assert engine.status()["market_data"]["reconnects"] >= 1
        # money: every account plus what the paper venue took in equals what was deposited, exactly
        totals, given = engine.totals(), deposited(config)
        assert totals["BTC"] != 0
        for asset in set(totals) | set(given):
            assert totals.get(asset, 0) == given.get(asset, 0), asset
    finally:
        engine.shutdown()


class _ShardFailingOnce(VenueActor):
    """A real venue shard that, once armed, fails on the next batch carrying a depth diff: it applies the first half
    of that batch and raises (an application error: the actor lives on), as a shard whose journal write failed."""

    armed = False
    failures = 0

    def arm(self) -> None:
        self.armed = True

    def apply(self, batch):  # type: ignore[no-untyped-def]
        if self.armed and len(batch.select(("BookDelta",))):
            self.armed = False
            self.failures += 1
            super().apply(batch[: len(batch) // 2])
            raise RuntimeError("injected: the shard failed halfway through this batch")
        return super().apply(batch)

    def failed(self) -> int:
        return self.failures


@ray.remote(num_cpus=0)
class _Peer:
    """The OMS and the bus of a feed and its shards: takes what they send, keeps the bus's errors."""

    def __init__(self) -> None:
        self.errors: list = []

    def reports(self, *args: object) -> None:
        pass

    def market(self, tops: list) -> None:
        pass

    def publish(self, events) -> None:  # type: ignore[no-untyped-def]
        self.errors.extend(e for e in events if type(e) is Error)

    def published_errors(self) -> list:
        return self.errors


@pytest.mark.usefixtures("ray_runtime")
def test_a_shard_that_fails_on_a_live_batch_has_its_books_synced_again_to_the_served_book(server, shared_data):
    """A shard that raised on a live batch lacked some of its diffs: its paper venue's book showed a gap at the next
    diff and stayed unsynced (or stale) until the client reconnected, since the client's own book was fine. The feed
    now has the client resync that shard's books, and only those: the paper venue's book is the served one again."""
    spec = build_spec(paper_config(server), name="test-paper-apply-error")
    assert spec.shards == {"BTCUSDT": ("BTCUSDT",), "ETHUSDT": ("ETHUSDT",)}
    peer = _Peer.remote()
    btc = ray.remote(num_cpus=0)(_ShardFailingOnce).remote(spec, "BTCUSDT", ("BTCUSDT",), peer, peer)
    eth = ray.remote(num_cpus=0)(VenueActor).remote(spec, "ETHUSDT", ("ETHUSDT",), peer, peer)
    shards = {"BTCUSDT": btc, "ETHUSDT": eth}
    feed = ray.remote(num_cpus=0)(MarketFeedActor).remote(spec, peer, shards, peer)

    def served(symbol: str) -> dict:
        """The shard's paper venue book once it is synced at the server's current update id (the server paused)."""
        last_id, bids, asks = server.book(symbol)
        depth = wait_for(
            lambda: (
                (d := ray.get(shards[symbol].depth.remote(symbol, 50), timeout=30))
                and d["synced"]
                and d["last_update_id"] == last_id
                and d
            ),
            timeout=30,
            what=f"the {symbol} paper venue's book to reach the server's ({last_id})",
        )
        assert depth["bids"] == tuple(bids[:50]) and depth["asks"] == tuple(asks[:50])
        return depth

    try:
        assert ray.get(feed.start_market.remote(), timeout=30)
        assert server.wait_connections(1, timeout=30)
        server.publish(400)
        served("BTCUSDT")
        served("ETHUSDT")
        before = ray.get(feed.status.remote(), timeout=30)["market_data"]["resyncs"]["by_symbol"]
        ray.get(btc.arm.remote(), timeout=30)
        server.publish(400)
        wait_for(lambda: ray.get(btc.failed.remote(), timeout=30) == 1, what="the injected failure")
        for _ in range(3):  # the book follows the served one again, diff after diff
            server.publish(400)
            depth = served("BTCUSDT")
        offline = offline_book(shared_data, depth["last_update_id"])
        assert depth["bids"] == offline.depth(50)[0] and depth["asks"] == offline.depth(50)[1]
        served("ETHUSDT")
        status = ray.get(feed.status.remote(), timeout=30)
        market = status["market_data"]
        assert status["apply_errors"] == 1 and market["resync_requests"] == 1 and market["reconnects"] == 0
        assert market["resyncs"]["by_symbol"] == {"BTCUSDT": before["BTCUSDT"] + 1, "ETHUSDT": before["ETHUSDT"]}
        errors = ray.get(peer.published_errors.remote(), timeout=30)
        assert [e.code for e in errors] == ["MARKET_APPLY_FAILED"] and "BTCUSDT" in errors[0].message
    finally:
        ray.get(feed.close.remote(), timeout=30)
        for actor in (feed, btc, eth, peer):
            ray.kill(actor)


class _VenueFailingOnce(VenueActor):
    """A real venue shard whose BTCUSDT paper venue, once armed, raises applying the next depth diff (the shard
    itself goes on: the venue's failure is an Error report to the OMS)."""

    def arm(self) -> None:
        raise_once(self.state.venues["BTCUSDT"], "apply_depth")

    def failed(self) -> bool:
        return type(self.state.venues["BTCUSDT"]) is PaperVenue  # the injected failure has happened


@pytest.mark.usefixtures("ray_runtime")
def test_a_paper_venue_that_fails_on_a_live_diff_has_its_book_synced_again_to_the_served_book(server, shared_data):
    """The paper venue raised applying one diff: its book lacked it, showed a gap at the next diff and stayed unsynced
    until the client resynced for its own reasons (the shard's apply itself had not failed, so the feed did nothing).
    Now the shard tells the feed, which has the client resync that symbol's book, and only that one."""
    spec = build_spec(paper_config(server), name="test-paper-venue-error")
    peer = _Peer.remote()
    btc = ray.remote(num_cpus=0)(_VenueFailingOnce).remote(spec, "BTCUSDT", ("BTCUSDT",), peer, peer)
    eth = ray.remote(num_cpus=0)(VenueActor).remote(spec, "ETHUSDT", ("ETHUSDT",), peer, peer)
    shards = {"BTCUSDT": btc, "ETHUSDT": eth}
    feed = ray.remote(num_cpus=0)(MarketFeedActor).remote(spec, peer, shards, peer)

    def served(symbol: str) -> None:
        last_id, bids, asks = server.book(symbol)
        wait_for(
            lambda: (
                (d := ray.get(shards[symbol].depth.remote(symbol, 50), timeout=30))
                and d["synced"]
                and d["last_update_id"] == last_id
                and d["bids"] == tuple(bids[:50])
                and d["asks"] == tuple(asks[:50])
            ),
            timeout=30,
            what=f"the {symbol} paper venue's book to reach the server's ({last_id})",
        )

    try:
        assert ray.get(feed.start_market.remote(), timeout=30)
        assert server.wait_connections(1, timeout=30)
        server.publish(400)
        served("BTCUSDT")
        served("ETHUSDT")
        before = ray.get(feed.status.remote(), timeout=30)["market_data"]["resyncs"]["by_symbol"]
        ray.get(btc.arm.remote(), timeout=30)
        server.publish(400)
        wait_for(lambda: ray.get(btc.failed.remote(), timeout=30), what="the injected failure")
        for _ in range(3):  # the book follows the served one again, diff after diff
            server.publish(400)
            served("BTCUSDT")
        served("ETHUSDT")
        status = ray.get(feed.status.remote(), timeout=30)
        market = status["market_data"]
        assert status["apply_errors"] == 0 and market["resync_requests"] == 1 and market["reconnects"] == 0
        assert market["resyncs"]["by_symbol"] == {"BTCUSDT": before["BTCUSDT"] + 1, "ETHUSDT": before["ETHUSDT"]}
    finally:
        ray.get(feed.close.remote(), timeout=30)
        for actor in (feed, btc, eth, peer):
            ray.kill(actor)
