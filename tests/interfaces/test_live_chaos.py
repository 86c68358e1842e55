"""Chaos: 1,000 orders on two symbols through the live single-process engine and the Binance adapter, while the local
server injects random faults (timestamp errors, an answer lost after the order was placed, a connection dropped
before the answer, duplicated, reordered and missed execution reports, the user stream terminated, the server
shutting the WebSocket API down) and the engine is stopped and recovered from its journal twice. Afterwards
every order is in exactly one state equal to the server's, every fill is counted once, and every balance equals the
server's exactly."""

from __future__ import annotations

import random
import time
from pathlib import Path

from veloz_actors.core.risk import RiskLimits
from veloz_actors.interfaces.local import LiveVenue
from veloz_actors.messages import BookTop, OrderStatus
from veloz_actors.testing import cancel, d, place
from veloz_actors.testing.binance_server import BinanceTestServer
from veloz_actors.venues.binance.auth import Credentials
from veloz_actors.venues.binance.instruments import load_instruments
from veloz_actors.venues.binance.venue import BinanceVenueSettings, fetch_account_balances
from veloz_actors.venues.engine import Engine, EngineConfig

CAPTURES = ("ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz", "ticks_l2/binance_spot_ethusdt_20240808_ws.txt.gz")
SYMBOLS = ("BTCUSDT", "ETHUSDT")
KEY = "chaos" + "C" * 59
SECRET = "chaos-secret-" + "X" * 51
CREDS = Credentials.from_hmac(KEY, SECRET)
STATUS = {"NEW": "ACCEPTED", "PARTIALLY_FILLED": "PARTIALLY_FILLED", "FILLED": "FILLED", "CANCELED": "CANCELLED",
          "EXPIRED": "EXPIRED"}  # fmt: skip
ORDERS = 1000
LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 100_000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 10_000},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 1_000_000},
]


def _start(engine: Engine, server: BinanceTestServer) -> LiveVenue:
    settings = BinanceVenueSettings(
        rest_url=server.rest_url, ws_api_url=server.stream_url + "/ws-api/v3", request_timeout=2.0,
        backoff_initial=0.02, backoff_max=0.3, catch_up_delay=0.05, max_rate_limit_wait=30.0,
    )  # fmt: skip
    trading = LiveVenue(engine, settings, CREDS, reconcile_every=1.0)
    assert trading.wait_ready(60), trading.status()
    return trading


def _tops(trading: LiveVenue, server: BinanceTestServer) -> dict[str, tuple[int, int]]:
    out = {}
    for symbol in SYMBOLS:
        _, bids, asks = server.book(symbol)
        out[symbol] = (bids[0][0], asks[0][0])
        now = time.time_ns()
        trading.apply(BookTop(symbol=symbol, bid_price=bids[0][0], bid_qty=bids[0][1], ask_price=asks[0][0],
                              ask_qty=asks[0][1], update_id=0, ts_event=now, ts_recv=now))  # fmt: skip
    return out


def _settle(engine: Engine, trading: LiveVenue, server: BinanceTestServer, timeout: float = 120.0) -> None:
    """Drain reports until the kernel equals the server's truth: every order's state and filled quantity, every
    fill once, every balance exactly."""
    deadline = time.monotonic() + timeout
    while True:
        trading.drain()
        truth = {o["clientOrderId"]: o for o in server.orders(KEY)}
        trades = server.trades(KEY)
        with trading.lock:
            mine = {o.client_order_id: o for o in engine.kernel.oms.orders(account_id="main")}
            ledger = engine.ledger.balances("main")
            booked = sum(len(o.trade_keys or ()) for o in mine.values())
        problems = []
        for cid, order in mine.items():
            row = truth.get(cid)
            if row is None:
                if order.status is not OrderStatus.REJECTED:
                    problems.append(f"{cid}: {order.status.value} in the kernel, unknown to the server")
                continue
            if STATUS[row["status"]] != order.status.value or d(row["executedQty"]) != order.filled:
                problems.append(f"{cid}: kernel {order.status.value} {order.filled}, server {row['status']} "
                                f"{row['executedQty']}")  # fmt: skip
        extra = sorted(set(truth) - set(mine))
        if extra:
            problems.append(f"orders on the server the kernel does not know: {extra[:5]}")
        if booked != len(trades):
            problems.append(f"{booked} fills booked, {len(trades)} trades on the server")
        exchange = server.balances(KEY)
        for asset in set(exchange) | set(ledger):
            if exchange.get(asset, (0, 0)) != ledger.get(asset, (0, 0)):
                problems.append(f"{asset}: ledger {ledger.get(asset)}, server {exchange.get(asset)}")
        if not problems:
            return
        if time.monotonic() > deadline:
            status = trading.status()
            keep = ("state", "ready", "not_ready", "halted", "connects", "reconnects", "disconnects", "last_disconnect",
                    "orders", "rate_limits")  # fmt: skip
            raise AssertionError(
                f"{len(problems)} differences: "
                + "; ".join(problems[:10])
                + f"; adapter { ({k: status.get(k) for k in keep}) }"
            )
        time.sleep(0.05)


FAULTS = (
    lambda f: f.timestamp_error(1),
    lambda f: f.timeout_after_placing(1),
    lambda f: f.drop_before_answer(1),
    lambda f: f.duplicate_reports(3),
    lambda f: f.reorder_reports(2),
    lambda f: f.miss_report(1),
    lambda f: f.terminate_stream(),
    lambda f: f.ws_server_shutdown(),
)  # 429s have their own tests (tests/venues/test_binance_venue.py): here orders in flight when one is answered would
#    reach the server inside its Retry-After, which the local server punishes with a ban (stricter than Binance)


def test_a_thousand_orders_through_faults_and_two_restarts(shared_data, tmp_path: Path) -> None:
    rng = random.Random(11)
    with BinanceTestServer([shared_data / c for c in CAPTURES], paused=True) as server:
        server.add_account(KEY, hmac_secret=SECRET, balances={"USDT": "10000000", "BTC": "100", "ETH": "1000"})
        server.set_rate_limits(LIMITS)  # a VIP account's limits: the faults, not the steady load, are under test
        instruments, _ = load_instruments(server.rest_url, list(SYMBOLS), cache_dir=None)
        balances = {b.asset: b.free + b.locked for b in fetch_account_balances(server.rest_url, CREDS)}
        config = EngineConfig(
            instruments=tuple(instruments.values()),
            balances={"main": balances},
            risk=RiskLimits(orders_per_second=100_000, burst=100_000, price_band=d("0.5")),
            venue_kind="live",
        )
        journal = tmp_path / "chaos.journal"
        engine = Engine(config, journal_path=journal)
        trading = _start(engine, server)
        faults = server.trading_faults
        restarts_at = {ORDERS // 3, 2 * ORDERS // 3}
        open_cids: list[str] = []
        tops = _tops(trading, server)
        for n in range(ORDERS):
            if n in restarts_at:
                _settle(engine, trading, server)
                engine.close()
                trading.close()
                server.publish(300)  # the market moves while the engine is away: resting orders may fill
                engine, _ = Engine.recover(config, journal)
                trading = _start(engine, server)
                tops = _tops(trading, server)
            if rng.random() < 0.04:
                rng.choice(FAULTS)(faults)
            symbol = rng.choice(SYMBOLS)
            bid, ask = tops[symbol]
            tick = instruments[symbol].price_tick
            qty = "0.001" if symbol == "BTCUSDT" else "0.01"
            roll = rng.random()
            cid = f"c{n}"
            if roll < 0.25:
                trading.apply(place(cid, rng.choice(("BUY", "SELL")), qty, symbol=symbol))
            elif roll < 0.85:
                side = rng.choice(("BUY", "SELL"))
                offset = rng.randint(0, 30) * tick
                price = bid - offset if side == "BUY" else ask + offset
                trading.apply(place(cid, side, qty, f"{price / 10**8:.2f}", symbol=symbol))
                open_cids.append(cid)
            elif open_cids:
                trading.apply(cancel(open_cids.pop(rng.randrange(len(open_cids)))))
            if n % 50 == 49:
                server.publish(60)  # trades reach some resting orders
                tops = _tops(trading, server)
            trading.drain()
        _settle(engine, trading, server)
        counts = dict(faults.counts)
        trading.close()
        engine.close()
    injected = {k: v for k, v in counts.items() if v and k not in ("requests_during_ban", "early_requests")}
    assert len(injected) >= 6, injected  # most kinds of fault really happened
    assert counts.get("requests_during_ban", 0) == 0 and counts.get("early_requests", 0) == 0
    assert len(engine.kernel.oms.orders(account_id="main")) >= ORDERS * 0.8
