"""Live trading on Binance in one process (the single-process engine + the trading adapter), against the local
Binance server: orders in the kernel's terms equal the server's truth, and after the engine stops (fills, an order
placed outside VeloZ and a deposit happen meanwhile) and recovers from its journal twice, reconciliation brings the
kernel back to the server's truth without sending any order twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from veloz_actors.core.risk import RiskLimits
from veloz_actors.interfaces.local import LiveVenue
from veloz_actors.messages import BookTop, OrderStatus
from veloz_actors.testing import d, place
from veloz_actors.testing.binance_server import BinanceTestServer
from veloz_actors.venues.binance.auth import Credentials
from veloz_actors.venues.binance.instruments import load_instruments
from veloz_actors.venues.binance.venue import BinanceVenueSettings, fetch_account_balances
from veloz_actors.venues.engine import Engine, EngineConfig, UnattachedVenue

BTC = "ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"
KEY = "live" + "K" * 60
SECRET = "live-secret-" + "S" * 52
CREDS = Credentials.from_hmac(KEY, SECRET)
STATUS = {"NEW": "ACCEPTED", "PARTIALLY_FILLED": "PARTIALLY_FILLED", "FILLED": "FILLED", "CANCELED": "CANCELLED",
          "EXPIRED": "EXPIRED"}  # fmt: skip


@pytest.fixture
def server(shared_data):
    with BinanceTestServer([shared_data / BTC], paused=True) as running:
        running.add_account(KEY, hmac_secret=SECRET, balances={"USDT": "100000", "BTC": "1"})
        yield running


def _config(server: BinanceTestServer) -> EngineConfig:
    instruments, _ = load_instruments(server.rest_url, ["BTCUSDT"], cache_dir=None)
    balances = {b.asset: b.free + b.locked for b in fetch_account_balances(server.rest_url, CREDS)}
    return EngineConfig(
        instruments=tuple(instruments.values()),
        balances={"main": balances},
        risk=RiskLimits(orders_per_second=1000, burst=1000),
        venue_kind="live",
    )


def _start(engine: Engine, server: BinanceTestServer) -> LiveVenue:
    settings = BinanceVenueSettings(
        rest_url=server.rest_url, ws_api_url=server.stream_url + "/ws-api/v3", request_timeout=3.0,
        backoff_initial=0.05, backoff_max=0.5,
    )  # fmt: skip
    trading = LiveVenue(engine, settings, CREDS)
    assert trading.wait_ready(30), trading.status()
    _, bids, asks = server.book("BTCUSDT")
    trading.apply(BookTop(symbol="BTCUSDT", bid_price=bids[0][0], bid_qty=bids[0][1], ask_price=asks[0][0],
                          ask_qty=asks[0][1], update_id=0, ts_event=time.time_ns(), ts_recv=time.time_ns()))  # fmt: skip
    return trading


def _agree(
    engine: Engine, trading: LiveVenue, server: BinanceTestServer, deposited: dict[str, int], *, timeout: float = 30.0
) -> None:
    """Drain reports until every kernel order equals the server's truth and the ledger equals the server's balances
    less what was deposited outside trading (or fail naming the difference)."""
    deadline = time.monotonic() + timeout
    while True:
        trading.drain()
        truth = {o["clientOrderId"]: o for o in server.orders(KEY)}
        with trading.lock:
            mine = {o.client_order_id: o for o in engine.kernel.oms.orders(account_id="main")}
            ledger = engine.ledger.balances("main")
        problems = []
        for cid, order in mine.items():
            if order.status is OrderStatus.REJECTED and cid not in truth:
                continue  # refused before it reached the exchange
            row = truth.get(cid)
            if row is None:
                problems.append(f"{cid}: not on the server ({order.status.value})")
                continue
            if STATUS[row["status"]] != order.status.value or d(row["executedQty"]) != order.filled:
                problems.append(f"{cid}: kernel {order.status.value} {order.filled}, server {row['status']} "
                                f"{row['executedQty']}")  # fmt: skip
        exchange = server.balances(KEY)
        for asset in set(exchange) | set(ledger):
            if sum(exchange.get(asset, (0, 0))) - deposited.get(asset, 0) != sum(ledger.get(asset, (0, 0))):
                problems.append(f"{asset}: ledger {ledger.get(asset)}, server {exchange.get(asset)}")
        if not problems:
            return
        if time.monotonic() > deadline:
            raise AssertionError("; ".join(problems))
        time.sleep(0.05)


def test_live_orders_survive_two_restarts_with_the_exchange_moving_meanwhile(server, tmp_path: Path) -> None:
    config = _config(server)
    journal = tmp_path / "live.journal"
    deposited: dict[str, int] = {}
    engine = Engine(config, journal_path=journal)
    trading = _start(engine, server)
    _, bids, asks = server.book("BTCUSDT")
    bid, ask = bids[0][0], asks[0][0]
    tick = config.instruments[0].price_tick
    trading.apply(place("r1", "BUY", "0.01", str((bid - 2 * tick) / 10**8)))
    trading.apply(place("m1", "BUY", "0.01"))
    trading.apply(place("r2", "SELL", "0.02", str((ask + 40_000 * tick) / 10**8)))
    _agree(engine, trading, server, deposited)
    assert engine.kernel.oms.get("main", "m1").status is OrderStatus.FILLED
    assert engine.kernel.oms.get("main", "r1").status is OrderStatus.ACCEPTED
    orders_on_server = len(server.orders(KEY))
    engine.close()
    trading.close()

    for round_ in (1, 2):
        # while the engine is away: the market moves (in round 1 it trades down through r1's price, which fills),
        # someone trades on the account, a deposit arrives
        server.publish(1500)
        server.trading_faults.place_outside(KEY, "BTCUSDT", "SELL", "0.001", f"{(ask + 50_000 * tick) / 10**8:.2f}")
        server.deposit(KEY, "USDT", "100")
        deposited["USDT"] = deposited.get("USDT", 0) + d("100")
        engine, _ = Engine.recover(config, journal)
        assert all(type(v) is UnattachedVenue for v in engine.venues.values())
        held = sum(v.held for v in engine.venues.values())
        trading = _start(engine, server)
        assert trading.status()["replayed_requests_not_resent"] == held > 0
        _agree(engine, trading, server, deposited)
        assert engine.kernel.oms.get("main", "r1").status is OrderStatus.FILLED  # filled while the engine was away
        status = trading.status()
        usdt = status["balance_differences"]["USDT"]  # the deposits, reported, never applied to the ledger
        assert d(usdt["exchange"]) - d(usdt["ledger"]) == deposited["USDT"]
        assert len(status["reconcile"]["external_orders"]) == round_, status["reconcile"]
        # no order was ever sent twice: the server has ours and the outside ones, nothing more
        assert len(server.orders(KEY)) == orders_on_server + 1
        trading.apply(place(f"after{round_}", "BUY", "0.001"))
        _agree(engine, trading, server, deposited)
        orders_on_server += 2
        engine.close()
        trading.close()
