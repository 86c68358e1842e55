"""Benchmark the Binance trading adapter against the local Binance server, side by side with the simulated venue.

    .venv/bin/python scripts/bench_venue.py [--orders 300] [--json out.json]

A trading kernel's requests go to :class:`~veloz_actors.venues.binance.venue.VenueThread` (the adapter on its own
event-loop thread), which signs them (HMAC) and sends them over the WebSocket API to the local Binance server (in this
process, on its own loop thread: its matching engine is a ``PaperVenue`` over the served BTCUSDT book); the reports come
back through the user data stream and the order answers. Beside it, the same requests to an in-process
:class:`~veloz_actors.venues.paper.PaperVenue` over the same book (the simulated venue: no network, no signing).

- **acknowledgement**: a resting limit order sent (the kernel's step done) -> its ``VenueOrderAccepted`` report, one
  at a time (p50 / p99);
- **fill**: a small market order sent -> its ``VenueOrderFilled`` report, one at a time (p50 / p99);
- **sustained orders/s**: resting limit orders sent without waiting (their cancels after), with the server's rate
  limits lifted: what the adapter and the server sustain; then with Binance's published limits (``ORDERS`` 50 per
  10 s in the recorded exchangeInfo): the adapter rejects what would exceed them locally (``RATE_LIMIT``) and the
  server never answers 429 or bans the client.
"""

from __future__ import annotations

import argparse
import gzip
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT.parent / "shared" / "data" / "ticks_l2" / "binance_spot_btcusdt_20240808_ws.txt.gz"
sys.path.insert(0, str(ROOT))

from veloz_actors.core.kernel import KernelConfig, TradingKernel  # noqa: E402
from veloz_actors.messages import (  # noqa: E402
    CancelOrder,
    OrderType,
    PlaceOrder,
    RejectReason,
    Side,
    TimeInForce,
    VenueOrderAccepted,
    VenueOrderFilled,
    VenueOrderRejected,
)
from veloz_actors.testing import d  # noqa: E402
from veloz_actors.testing.binance_server import BinanceTestServer  # noqa: E402
from veloz_actors.venues.binance.auth import Credentials  # noqa: E402
from veloz_actors.venues.binance.instruments import load_instruments  # noqa: E402
from veloz_actors.venues.binance.venue import BinanceVenueSettings, VenueThread  # noqa: E402
from veloz_actors.venues.paper import PaperVenue  # noqa: E402

SYMBOL = "BTCUSDT"
API_KEY = "bench" + "k" * 59
SECRET = "bench-secret-" + "s" * 51
BALANCES = {"USDT": "100000000", "BTC": "1000"}
LIFTED = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 10_000_000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 10_000_000},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 100_000_000},
]
BINANCE = [  # the recorded exchangeInfo's limits (examples-nautilus/http_spot_market_exchange_info.json)
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
]


def _percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 3),
        "n": len(samples),
    }


class Driver:
    """A kernel whose requests go to ``send`` and whose reports come back on ``reports`` (any thread)."""

    def __init__(self, instruments: dict[str, Any], reference: int) -> None:
        self.kernel = TradingKernel(
            KernelConfig(
                instruments=tuple(instruments.values()),
                balances={"main": {asset: d(amount) for asset, amount in BALANCES.items()}},
                reference_prices={SYMBOL: reference},
            )
        )
        self.reports: queue.Queue[list[Any]] = queue.Queue()
        self.n = 0

    def order(self, side: Side, qty: int, price: int | None, prefix: str) -> tuple[str, list[Any]]:
        self.n += 1
        cid = f"{prefix}{self.n}"
        self.kernel.apply(
            PlaceOrder(
                client_order_id=cid,
                symbol=SYMBOL,
                side=side,
                order_type=OrderType.LIMIT if price is not None else OrderType.MARKET,
                qty=qty,
                price=price,
                tif=TimeInForce.GTC,
                ts=time.time_ns(),
            )
        )
        out = self.kernel.take_outbox()
        if not out:
            raise RuntimeError(f"the kernel refused {cid}: {self.kernel.oms.get('main', cid)}")
        return cid, out

    def cancel(self, cid: str) -> list[Any]:
        self.kernel.apply(CancelOrder(client_order_id=cid, ts=time.time_ns()))
        return self.kernel.take_outbox()

    def apply(self, batch: list[Any]) -> None:
        for report in batch:
            self.kernel.apply(report)
        self.kernel.take_outbox()  # e.g. nothing; emptied so the kernel's outbox never grows


def wait_for(driver: Driver, cid: str, kind: type, timeout: float = 10.0) -> float:
    """Apply reports until ``cid``'s report of ``kind`` arrives; returns the time it arrived (perf_counter)."""
    deadline = time.perf_counter() + timeout
    while True:
        batch = driver.reports.get(timeout=max(0.001, deadline - time.perf_counter()))
        now = time.perf_counter()
        driver.apply(batch)
        for report in batch:
            if type(report) is kind and report.client_order_id == cid:
                return now
            if type(report) is VenueOrderRejected and report.client_order_id == cid:
                raise RuntimeError(f"{cid} rejected: {report.reason} {report.detail}")


def latency_adapter(server: BinanceTestServer, instruments: dict[str, Any], orders: int) -> dict[str, Any]:
    _, bids, asks = server.book(SYMBOL)
    driver = Driver(instruments, (bids[0][0] + asks[0][0]) // 2 // 1_000_000 * 1_000_000)
    creds = Credentials.from_hmac(API_KEY, SECRET)
    settings = BinanceVenueSettings(rest_url=server.rest_url, ws_api_url=server.stream_url + "/ws-api/v3")
    venue = VenueThread(settings, creds, instruments, driver.reports.put).start()
    try:
        if not venue.wait_ready(30.0):
            raise RuntimeError(f"the adapter did not become ready: {venue.status()}")
        while not driver.reports.empty():
            driver.apply(driver.reports.get())
        rest_price = bids[0][0] - 500 * 1_000_000  # 500 ticks below the bid: rests, inside the price band
        acks, fills = [], []
        for _ in range(orders):
            cid, out = driver.order(Side.BUY, d("0.001"), rest_price, "a")
            sent = time.perf_counter()
            for request in out:
                venue.submit(request)
            acks.append((wait_for(driver, cid, VenueOrderAccepted) - sent) * 1000)
            for request in driver.cancel(cid):
                venue.cancel(request)
        for _ in range(orders):
            cid, out = driver.order(Side.BUY, d("0.001"), None, "m")
            sent = time.perf_counter()
            for request in out:
                venue.submit(request)
            fills.append((wait_for(driver, cid, VenueOrderFilled) - sent) * 1000)
        return {"ack": _percentiles(acks), "fill": _percentiles(fills), "status": venue.status()}
    finally:
        venue.close()


def latency_sim(instruments: dict[str, Any], orders: int) -> dict[str, Any]:
    from veloz_actors.data.loaders import load_market_events

    venue = PaperVenue(instruments[SYMBOL])
    events = load_market_events(CAPTURE)[:3000]
    for event in events:
        venue.on_market(event)
    bid, ask = venue.book.best_bid(), venue.book.best_ask()
    assert bid is not None and ask is not None
    driver = Driver(instruments, (bid[0] + ask[0]) // 2 // 1_000_000 * 1_000_000)
    acks, fills = [], []
    for _ in range(orders):
        cid, out = driver.order(Side.BUY, d("0.001"), bid[0] - 500 * 1_000_000, "a")
        sent = time.perf_counter()
        reports = [r for request in out for r in venue.submit(request)]
        driver.apply(reports)
        acks.append((time.perf_counter() - sent) * 1000)
        driver.apply([r for request in driver.cancel(cid) for r in venue.cancel(request)])
    for _ in range(orders):
        cid, out = driver.order(Side.BUY, d("0.001"), None, "m")
        sent = time.perf_counter()
        driver.apply([r for request in out for r in venue.submit(request)])
        fills.append((time.perf_counter() - sent) * 1000)
    return {"ack": _percentiles(acks), "fill": _percentiles(fills)}


def sustained(server: BinanceTestServer, instruments: dict[str, Any], orders: int, limits: list[dict]) -> dict:
    server.set_rate_limits(limits)
    _, bids, asks = server.book(SYMBOL)
    driver = Driver(instruments, (bids[0][0] + asks[0][0]) // 2 // 1_000_000 * 1_000_000)
    creds = Credentials.from_hmac(API_KEY, SECRET)
    settings = BinanceVenueSettings(rest_url=server.rest_url, ws_api_url=server.stream_url + "/ws-api/v3")
    venue = VenueThread(settings, creds, instruments, driver.reports.put).start()
    try:
        if not venue.wait_ready(30.0):
            raise RuntimeError(f"the adapter did not become ready: {venue.status()}")
        before = dict(server.trading_faults.counts)
        price = bids[0][0] - 800 * 1_000_000
        cids = []
        began = time.perf_counter()
        for _ in range(orders):
            cid, out = driver.order(Side.BUY, d("0.001"), price, "s")
            cids.append(cid)
            for request in out:
                venue.submit(request)
        accepted = rejected = 0
        outcome: dict[str, Any] = {}
        deadline = time.perf_counter() + 120
        last = began
        while accepted + rejected < orders and time.perf_counter() < deadline:
            try:
                batch = driver.reports.get(timeout=1.0)
            except queue.Empty:
                continue
            driver.apply(batch)
            for report in batch:
                if type(report) is VenueOrderAccepted:
                    accepted += 1
                    last = time.perf_counter()
                elif type(report) is VenueOrderRejected:
                    rejected += 1
                    outcome[str(report.reason)] = outcome.get(str(report.reason), 0) + 1
        seconds = last - began
        counts = server.trading_faults.counts
        for cid in cids:  # leave the book clean
            for request in driver.cancel(cid):
                venue.cancel(request)
        return {
            "orders": orders,
            "accepted": accepted,
            "rejected": outcome,
            "seconds": round(seconds, 3),
            "accepted_per_second": round(accepted / seconds) if seconds else None,
            "server_429": counts.get("too_many_requests", 0)
            - before.get("too_many_requests", 0)
            + counts.get("too_many_orders", 0)
            - before.get("too_many_orders", 0),
            "server_bans": counts.get("ip_ban", 0) - before.get("ip_ban", 0),
            "requests_during_ban": counts.get("requests_during_ban", 0) - before.get("requests_during_ban", 0),
            "early_requests": counts.get("early_requests", 0) - before.get("early_requests", 0),
            "locally_rate_limited": outcome.get(str(RejectReason.RATE_LIMIT), 0),
        }
    finally:
        venue.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--sustained", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="veloz-bench-venue-") as tmp:
        small = Path(tmp) / "btcusdt.txt.gz"
        small.write_bytes(gzip.compress(b"".join(gzip.decompress(CAPTURE.read_bytes()).splitlines(True)[:3000])))
        with BinanceTestServer([small], speed=0, paused=True) as server:
            server.add_account(API_KEY, hmac_secret=SECRET, balances=BALANCES)
            server.set_rate_limits(LIFTED)
            instruments, _ = load_instruments(server.rest_url, [SYMBOL], cache_dir=None)
            instruments = dict(instruments)
            adapter = latency_adapter(server, instruments, args.orders)
            sim = latency_sim(instruments, args.orders)
            lifted = sustained(server, instruments, args.sustained, LIFTED)
            binance = sustained(server, instruments, 200, BINANCE)
    results = {"adapter": adapter, "sim": sim, "sustained_lifted": lifted, "sustained_binance_limits": binance}
    print(f"{'measure':52} {'simulated venue':>16} {'Binance adapter':>16} {'ratio':>8}")
    for what, key in (("acknowledgement", "ack"), ("fill", "fill")):
        for q in ("p50_ms", "p99_ms"):
            a, s = adapter[key][q], sim[key][q]
            print(f"{what + ' ' + q.replace('_ms', '') + ' (ms)':52} {s:>16.3f} {a:>16.3f} {a / s:>8.0f}")
    print(f"{'sustained orders/s, limits lifted':52} {'':>16} {lifted['accepted_per_second']:>16,}")
    print(
        f"with Binance's limits (50 orders / 10 s): {binance['accepted']} accepted, "
        f"{binance['locally_rate_limited']} rejected locally RATE_LIMIT, server 429s {binance['server_429']}, "
        f"bans {binance['server_bans']}, requests during a ban {binance['requests_during_ban']}"
    )
    if args.json is not None:
        adapter.pop("status", None)
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
