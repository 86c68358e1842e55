"""Bad input from the wire reaching an engine that paper-trades: counted, resynced, never a crash, never a wrong
book, never a changed balance (single-process engine + LiveMarket against the local Binance server)."""

from __future__ import annotations

import time

from veloz_actors.config import BINANCE_PRESETS
from veloz_actors.interfaces.local import LiveMarket
from veloz_actors.messages import Error, OrderFilled, VenueConnection
from veloz_actors.testing import engine_config, place
from veloz_actors.testing.binance_server import BinanceTestServer
from veloz_actors.venues.engine import Engine
from veloz_actors.venues.paper import PaperVenue

from ..venues.faults import raise_once

BTC = "ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"
ETH = "ticks_l2/binance_spot_ethusdt_20240808_ws.txt.gz"


def _until(live: LiveMarket, predicate, timeout: float = 30.0) -> list:
    out: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out += live.drain()
        if predicate():
            return out
        time.sleep(0.02)
    raise AssertionError(f"timed out; status {live.status()}")


def test_bad_input_never_changes_the_book_or_a_balance(shared_data) -> None:
    engine = Engine(engine_config(venue_kind="paper"))
    venue = engine.venues["BTCUSDT"]
    balances = engine.ledger.balances("main")
    with BinanceTestServer([shared_data / BTC], paused=True) as server:
        settings = {"rest_url": server.rest_url, "stream_url": server.stream_url, "symbols": ("BTCUSDT",)}
        live = LiveMarket(engine, settings)
        try:
            assert server.wait_connections(1, timeout=30)
            server.publish(300)

            def same_book() -> bool:
                last_id, bids, asks = server.book("BTCUSDT")
                return (
                    not venue.book.needs_resync
                    and venue.book.last_update_id == last_id
                    and venue.book.depth(100) == (tuple(bids[:100]), tuple(asks[:100]))
                )

            _until(live, same_book)
            for kind in ("json", "unknown_event", "absurd_price", "out_of_order"):
                server.faults.malformed(kind, 2)
                server.publish(50)
                _until(live, same_book)
            server.faults.stale_snapshot(1)
            server.faults.skip_update_ids("BTCUSDT", 2)
            server.publish(100)
            out = _until(live, lambda: same_book() and live.status()["resyncs"]["total"] >= 2)
            server.faults.drop_connections()
            server.publish(100)
            out += _until(live, lambda: same_book() and live.status()["reconnects"] >= 1)
            bad = live.status()["bad_input"]
            assert {"json", "unknown_event", "invalid_payload", "out_of_order", "sequence_gap"} <= set(bad), bad
            assert not any(type(e) is OrderFilled for e in out)
            assert engine.ledger.balances("main") == balances  # nothing traded: the bad frames moved no money
            assert {e.state for e in out if type(e) is VenueConnection} >= {"disconnected", "connected", "resynced"}
            # and the engine still trades against the repaired book
            ask = venue.book.best_ask()
            filled = engine.apply(place("after", "BUY", "0.01", ts=time.time_ns()))
            assert [e.price for e in filled if type(e) is OrderFilled][0] == ask[0]
        finally:
            live.close()


def served(server: BinanceTestServer, engine: Engine, symbol: str) -> bool:
    """Whether the paper venue's book of ``symbol`` is synced at the server's book (the server paused)."""
    book = engine.venues[symbol].book
    last_id, bids, asks = server.book(symbol)
    return not book.needs_resync and book.last_update_id == last_id and book.depth(50) == (bids[:50], asks[:50])


def test_a_paper_venue_that_failed_on_market_data_has_its_book_synced_again(shared_data) -> None:
    """The paper venue raised applying one diff: its book lacked that diff, showed a gap at the next one and stayed
    unsynced (filling nothing) until the client resynced for its own reasons, since the client's own book was fine.
    Now the client resyncs that symbol's book, and only that one."""
    engine = Engine(engine_config(venue_kind="paper"))
    with BinanceTestServer([shared_data / BTC, shared_data / ETH], paused=True) as server:
        settings = {"rest_url": server.rest_url, "stream_url": server.stream_url, "symbols": ("BTCUSDT", "ETHUSDT")}
        live = LiveMarket(engine, settings)
        try:
            assert server.wait_connections(1, timeout=30)
            server.publish(400)
            _until(live, lambda: served(server, engine, "BTCUSDT") and served(server, engine, "ETHUSDT"))
            before = live.status()["resyncs"]["by_symbol"]
            raise_once(engine.venues["BTCUSDT"], "apply_depth")
            server.publish(400)
            out = _until(live, lambda: type(engine.venues["BTCUSDT"]) is PaperVenue)  # the failure happened
            assert [e.code for e in out if type(e) is Error] == ["VENUE_ERROR"]
            for _ in range(3):  # the book follows the served one again, diff after diff
                server.publish(400)
                _until(live, lambda: served(server, engine, "BTCUSDT") and served(server, engine, "ETHUSDT"))
            status = live.status()
            assert status["resync_requests"] == 1 and status["reconnects"] == 0
            assert status["resyncs"]["by_symbol"] == {"BTCUSDT": before["BTCUSDT"] + 1, "ETHUSDT": before["ETHUSDT"]}
        finally:
            live.close()


def test_an_engine_that_raised_on_a_live_market_event_says_so_and_goes_on(shared_data) -> None:
    """An exception while applying one live event left LiveMarket.drain, and with it the engine loop: the session
    ended. Now, as the actor engine's feed does with a batch a shard failed on, the event is skipped and said (an
    Error, logged with the other events), its symbol's book is synced again, and the engine trades on."""
    engine = Engine(engine_config(venue_kind="paper"))
    with BinanceTestServer([shared_data / BTC], paused=True) as server:
        settings = {"rest_url": server.rest_url, "stream_url": server.stream_url, "symbols": ("BTCUSDT",)}
        live = LiveMarket(engine, settings)
        try:
            assert server.wait_connections(1, timeout=30)
            server.publish(400)
            _until(live, lambda: served(server, engine, "BTCUSDT"))
            raise_once(engine, "_market")  # the engine's processing of the next market event fails
            server.publish(400)
            out = _until(live, lambda: type(engine) is Engine)  # the failure happened
            (error,) = [e for e in out if type(e) is Error]
            assert error.code == "MARKET_APPLY_FAILED" and "BTCUSDT" in error.message
            server.publish(400)
            _until(live, lambda: served(server, engine, "BTCUSDT"))
            status = live.status()
            assert status["apply_errors"] == 1 and status["resync_requests"] == 1 and status["reconnects"] == 0
            ask = engine.venues["BTCUSDT"].book.best_ask()
            filled = engine.apply(place("after", "BUY", "0.01", ts=time.time_ns()))
            assert [e.price for e in filled if type(e) is OrderFilled][0] == ask[0]
        finally:
            live.close()


def test_presets_name_binance_live_and_testnet() -> None:
    assert BINANCE_PRESETS["live"]["stream_url"] == "wss://stream.binance.com:9443"
    assert BINANCE_PRESETS["testnet"]["rest_url"] == "https://testnet.binance.vision"
