"""The Binance trading adapter (:mod:`veloz_actors.venues.binance.venue`), against the local Binance server over real
sockets, in the kernel's terms.

Each server test starts :class:`~veloz_actors.testing.binance_server.BinanceTestServer` (the first 3000 lines of the
2024 BTCUSDT capture, paused: the market moves only when a test publishes) with an HMAC and an Ed25519 account, and a
:class:`VenueThread` whose reports are applied to a real :class:`~veloz_actors.core.kernel.TradingKernel` built from the
served exchangeInfo; after every step the kernel's orders (status, filled quantity) and balances must equal the
server's truth (``server.orders`` / ``server.balances``). Prices used: the book opens with its best ask at 61837.64;
the first 150 events trade down through 61835, the first 500 through 61826.

The pure parts (order parameters, filters, the clock offset, the reconciliation's comparison, an end held for its
late fill) are tested without a server. No Ray.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.venues.log_records import every_log_record
from veloz_actors.core.kernel import KernelConfig, TradingKernel
from veloz_actors.core.oms import Order
from veloz_actors.core.risk import RiskLimits
from veloz_actors.messages import (
    Error,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    OrderType,
    PlaceOrder,
    RejectReason,
    Side,
    SubmitOrder,
    TimeInForce,
    VenueBalance,
    VenueBalanceDelta,
    VenueCancelRejected,
    VenueConnection,
    VenueOrderAccepted,
    VenueOrderCancelled,
    VenueOrderExpired,
    VenueOrderFilled,
    VenueOrderRejected,
    VenueOrderStatusUnknown,
)
from veloz_actors.testing import d
from veloz_actors.testing.binance_server import BinanceTestServer
from veloz_actors.venues.base import Venue
from veloz_actors.venues.binance.auth import Credentials
from veloz_actors.venues.binance.instruments import load_instruments
from veloz_actors.venues.binance.reconcile import (
    NEVER_PLACED,
    ExternalOrder,
    KernelView,
    KnownOrder,
    ReconcileReport,
    VenueSnapshot,
    build_reconciliation,
    kernel_view,
)
from veloz_actors.venues.binance.user_data import parse_my_trades, parse_open_orders, parse_order_state
from veloz_actors.venues.binance.venue import (
    BinanceVenue,
    BinanceVenueSettings,
    VenueThread,
    VenueUnavailable,
    check_filters,
    clock_offset,
    fetch_account_balances,
    order_params,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
BTC = SHARED / "ticks_l2" / "binance_spot_btcusdt_20240808_ws.txt.gz"
SYMBOL = "BTCUSDT"
HMAC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
HMAC = Credentials.from_hmac("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A", HMAC_SECRET)
ED_PEM = ed25519.Ed25519PrivateKey.generate().private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
ED = Credentials.from_private_key("edKey7Gs1yN1vWpXbqoZ3dGiFs9vmpNdV7e3FxkABstzbezDKwObcijvk", ED_PEM)
BALANCES = {"USDT": "1000000", "BTC": "10"}
STATUS_OF = {
    "NEW": OrderStatus.ACCEPTED,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELLED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}
_EXECUTION = (
    VenueOrderAccepted,
    VenueOrderRejected,
    VenueOrderExpired,
    VenueOrderFilled,
    VenueOrderCancelled,
    VenueCancelRejected,
    VenueOrderStatusUnknown,
)


# ----------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venue") / "btcusdt_small.txt.gz"
    lines = gzip.decompress(BTC.read_bytes()).splitlines(keepends=True)[:3000]
    path.write_bytes(gzip.compress(b"".join(lines)))
    return path


@pytest.fixture
def server(capture: Path) -> Iterator[BinanceTestServer]:
    srv = BinanceTestServer([capture], speed=0, paused=True)
    srv.add_account(HMAC.api_key, hmac_secret=HMAC_SECRET, balances=BALANCES)
    srv.add_account(ED.api_key, ed25519_public_key_pem=ED.public_key_pem(), balances=BALANCES)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def publish(server: BinanceTestServer, n: int) -> None:
    assert server.publish(n) == n


class Harness:
    """A kernel, the adapter on its thread, and the server: the kernel's requests go to the adapter, its reports
    back into the kernel (on the test thread)."""

    def __init__(
        self,
        server: BinanceTestServer,
        creds: Credentials = HMAC,
        *,
        start: bool = True,
        instruments: dict[str, Any] | None = None,
        venue_kw: dict[str, Any] | None = None,
        balances: dict[str, str] | None = None,
        risk: RiskLimits | None = None,
        **settings: Any,
    ) -> None:
        self.server = server
        self.creds = creds
        loaded, _ = load_instruments(server.rest_url, [SYMBOL], cache_dir=None)
        self.instruments = instruments or dict(loaded)
        _, bids, asks = server.book(SYMBOL)
        self.ask, self.ask_qty = asks[0]
        reference = (bids[0][0] + asks[0][0]) // 2 // 1_000_000 * 1_000_000
        config = KernelConfig(
            instruments=tuple(self.instruments.values()),
            balances={"main": {asset: d(amount) for asset, amount in (balances or BALANCES).items()}},
            reference_prices={SYMBOL: reference},
            risk=risk or RiskLimits(),
        )
        self.kernel = TradingKernel(config)
        self.reports: queue.Queue[list[Any]] = queue.Queue()
        self.events: list[Any] = []
        self.kernel_events: list[Any] = []
        self.account_messages: list[Any] = []
        self.seen: list[Any] = []
        settings.setdefault("request_timeout", 3.0)
        settings.setdefault("backoff_initial", 0.05)
        settings.setdefault("backoff_max", 0.5)
        self.settings = BinanceVenueSettings(
            rest_url=server.rest_url, ws_api_url=server.stream_url + "/ws-api/v3", **settings
        )
        self.venue = VenueThread(
            self.settings, creds, self.instruments, self.reports.put, events=self.events.append, **(venue_kw or {})
        )
        self.n = 0
        if start:
            self.start()

    def start(self) -> None:
        self.venue.start()
        assert self.venue.wait_ready(10.0), self.venue.status()
        self.pump()

    def close(self) -> None:
        self.venue.close()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- kernel side

    def place(
        self,
        side: Side,
        qty: int = 0,
        price: int | None = None,
        *,
        tif: TimeInForce = TimeInForce.GTC,
        quote_qty: int | None = None,
        coid: str | None = None,
    ) -> str:
        self.n += 1
        coid = coid or f"t{self.n}"
        cmd = PlaceOrder(
            client_order_id=coid,
            symbol=SYMBOL,
            side=side,
            order_type=OrderType.LIMIT if price is not None else OrderType.MARKET,
            qty=qty,
            price=price,
            quote_qty=quote_qty,
            tif=tif,
            ts=time.time_ns(),
        )
        self.kernel_events += self.kernel.apply(cmd)
        self._flush()
        return coid

    def fund_unsent(self, coid: str, side: Side, qty: int, price: int, ts: int | None = None) -> None:
        """An order the kernel funded whose request never left (a crash before sending)."""
        cmd = PlaceOrder(
            client_order_id=coid, symbol=SYMBOL, side=side, order_type=OrderType.LIMIT, qty=qty, price=price,
            ts=time.time_ns() if ts is None else ts,
        )  # fmt: skip
        self.kernel_events += self.kernel.apply(cmd)
        assert self.kernel.take_outbox()  # never sent
        assert self.order(coid).status is OrderStatus.SUBMITTED

    def cancel(self, coid: str) -> None:
        from veloz_actors.messages import CancelOrder

        self.kernel_events += self.kernel.apply(CancelOrder(client_order_id=coid, ts=time.time_ns()))
        self._flush()

    def _flush(self) -> None:
        for request in self.kernel.take_outbox():
            if isinstance(request, SubmitOrder):
                self.venue.submit(request)
            else:
                self.venue.cancel(request)

    def order(self, coid: str) -> Order:
        order = self.kernel.oms.get("main", coid)
        assert order is not None, coid
        return order

    def pump(self, until: Callable[[], bool] | None = None, timeout: float = 5.0, quiet: float = 0.15) -> None:
        """Apply the reports as they come until ``until()`` holds (then for ``quiet`` s more), or, without
        ``until``, until nothing came for ``quiet`` s."""
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        done_at: float | None = None
        while True:
            now = time.monotonic()
            if until is not None and done_at is None and until():
                done_at = now
            if done_at is not None and now - done_at >= quiet:
                return
            if until is None and now - last >= quiet:
                return
            if now >= deadline:
                assert until is None or until(), f"timed out; status {self.venue.status()}"
                return
            try:
                batch = self.reports.get(timeout=0.02)
            except queue.Empty:
                continue
            last = time.monotonic()
            for message in batch:
                self.seen.append(message)
                if isinstance(message, _EXECUTION):
                    self.kernel_events += self.kernel.apply(message)
                    self._flush()
                else:
                    self.account_messages.append(message)

    def wait(self, coid: str, status: OrderStatus, timeout: float = 5.0) -> Order:
        self.pump(lambda: self.order(coid).status is status, timeout)
        return self.order(coid)

    def rejection(self, coid: str) -> OrderRejected:
        found = [e for e in self.kernel_events if isinstance(e, OrderRejected) and e.client_order_id == coid]
        assert found, coid
        return found[-1]

    def errors(self) -> list[str]:
        return [e.code for e in self.kernel_events if isinstance(e, Error)]

    # ------------------------------------------------------------------------------------------------ truth

    def assert_matches_server(self, *, skip: frozenset[str] = frozenset()) -> None:
        """Every order (but those in ``skip``, which a test checks itself) and every balance of the kernel equals the
        server's."""
        truth = {o["clientOrderId"]: o for o in self.server.orders(self.creds.api_key)}
        ours = self.kernel.oms.orders(account_id="main")
        for order in ours:
            if order.client_order_id in skip:
                continue
            row = truth.get(order.client_order_id)
            if order.status is OrderStatus.REJECTED:
                assert row is None, f"{order.client_order_id} rejected by the kernel but placed: {row}"
                continue
            assert row is not None, f"{order.client_order_id} ({order.status}) is not on the server"
            assert order.status is STATUS_OF[row["status"]], (order.client_order_id, order.status, row["status"])
            assert order.filled == d(row["executedQty"]), (order.client_order_id, order.filled, row["executedQty"])
        kernel = self.kernel.ledger.balances("main")
        venue = self.server.balances(self.creds.api_key)
        totals = {a: f + lo for a, (f, lo) in kernel.items() if f + lo}
        assert totals == {a: f + lo for a, (f, lo) in venue.items() if f + lo}
        if not self.kernel.oms.open_orders("main"):
            assert {a: b for a, b in kernel.items() if any(b)} == {a: b for a, b in venue.items() if any(b)}
        bad = {"FILL_AFTER_CLOSE", "UNKNOWN_ORDER_REPORT", "UNSUPPORTED_MESSAGE", "BAD_FILL_REPORT",
               "REPORT_ORDER_MISMATCH", "NEGATIVE_BALANCE"}  # fmt: skip
        assert not bad & set(self.errors()), self.errors()


def text(units: int) -> str:
    return f"{units // 100_000_000}.{units % 100_000_000:08d}"


# ------------------------------------------------------------------------------------------------------ pure parts


def _instrument() -> Any:
    from veloz_actors.core.instruments import Instrument

    return Instrument(
        symbol=SYMBOL,
        base_asset="BTC",
        quote_asset="USDT",
        price_tick=d("0.01"),
        qty_step=d("0.00001"),
        min_qty=d("0.00001"),
        max_qty=d("9000"),
        min_notional=d("5"),
        max_price=d("1000000"),
        min_price=d("0.01"),
        market_max_qty=d("100"),
    )


def _submit(coid: str = "c1", **kw: Any) -> SubmitOrder:
    fields: dict[str, Any] = {
        "client_order_id": coid,
        "symbol": SYMBOL,
        "side": Side.BUY,
        "order_type": OrderType.LIMIT,
        "qty": d("0.01"),
        "price": d("60000"),
        "ts": 1,
    }
    fields.update(kw)
    cmd = PlaceOrder(**fields)
    return SubmitOrder(command=cmd, order_id=1, limit=cmd.price if cmd.price is not None else d("60000"))


def test_order_parameters_per_type() -> None:
    assert order_params(_submit()) == {
        "symbol": SYMBOL,
        "side": "BUY",
        "newClientOrderId": "c1",
        "newOrderRespType": "FULL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "price": "60000",
        "quantity": "0.01",
    }
    maker = order_params(_submit(tif=TimeInForce.POST_ONLY))
    assert maker["type"] == "LIMIT_MAKER" and "timeInForce" not in maker
    assert order_params(_submit(tif=TimeInForce.FOK))["timeInForce"] == "FOK"
    # a market order by quantity: a LIMIT IOC at its protect price (the SubmitOrder's limit, here 60000)
    market = order_params(_submit(order_type=OrderType.MARKET, price=None, side=Side.SELL))
    assert (market["type"], market["timeInForce"], market["price"], market["quantity"]) == ("LIMIT", "IOC", "60000",
                                                                                            "0.01")  # fmt: skip
    market_fok = order_params(_submit(order_type=OrderType.MARKET, price=None, tif=TimeInForce.FOK))
    assert (market_fok["type"], market_fok["timeInForce"], market_fok["price"]) == ("LIMIT", "FOK", "60000")
    by_quote = order_params(_submit(order_type=OrderType.MARKET, price=None, qty=0, quote_qty=d("100.5")))
    assert (by_quote["quoteOrderQty"], "quantity" in by_quote) == ("100.5", False)


def test_filters_are_checked_before_sending_and_named() -> None:
    inst = _instrument()
    assert check_filters(inst, _submit()) is None
    reason, detail = check_filters(inst, _submit(price=d("60000.005"))) or (None, "")
    assert reason is RejectReason.PRICE_NOT_ON_TICK and detail.startswith("PRICE_FILTER:")
    reason, detail = check_filters(inst, _submit(qty=d("0.000015"))) or (None, "")
    assert reason is RejectReason.QUANTITY_NOT_ON_STEP and detail.startswith("LOT_SIZE:")
    reason, detail = check_filters(inst, _submit(qty=d("0.00001"))) or (None, "")
    assert reason is RejectReason.NOTIONAL_BELOW_MINIMUM and detail.startswith("NOTIONAL:")
    market = _submit(order_type=OrderType.MARKET, price=None, qty=d("101"))
    reason, detail = check_filters(inst, market) or (None, "")
    assert reason is RejectReason.MAX_ORDER_QUANTITY and detail.startswith("MARKET_LOT_SIZE:")
    small_quote = _submit(order_type=OrderType.MARKET, price=None, qty=0, quote_qty=d("4"))
    assert (check_filters(inst, small_quote) or (None,))[0] is RejectReason.NOTIONAL_BELOW_MINIMUM
    # a market sell is valued at its protect price, the band's edge (as the LIMIT IOC Binance gets), not the market:
    # 0.00009 BTC is worth 5.4 USDT at 60,000 and 4.95 at a protect price of 55,000
    sell = {"order_type": OrderType.MARKET, "price": None, "side": Side.SELL, "qty": d("0.00009")}
    assert check_filters(inst, _submit(**sell)) is None
    reason, detail = check_filters(inst, replace(_submit(**sell), limit=d("55000"))) or (None, "")
    assert reason is RejectReason.NOTIONAL_BELOW_MINIMUM
    assert detail.startswith("NOTIONAL:") and "LIMIT IOC at its protect price 55000" in detail


def test_clock_offset_takes_the_sample_with_the_smallest_round_trip() -> None:
    ms = 1_000_000
    samples = [(0, 5_000, 40 * ms), (100 * ms, 5_101, 102 * ms), (200 * ms, 5_250, 230 * ms)]
    assert clock_offset(samples) == (5_000.0, 2.0)
    assert clock_offset([]) is None


def test_a_clock_sample_that_waits_for_the_send_lock_does_not_count_the_wait(server: BinanceTestServer) -> None:
    """A ``GET /api/v3/time`` queued behind another request's send lock: its round trip is the exchange's alone
    (before: the timer started before the lock, so the wait counted as round trip and moved the midpoint, skewing the
    offset by half the wait). The local clock runs 10 s ahead of Binance's from the moment the lock is taken: the wait
    spans those 10 s on it, and the offset found must be those -10 s, within the sample's own window."""
    ahead_ns = 10 * 1_000_000_000
    skew = [0]
    with Harness(server, clock_samples=1, venue_kw={"clock": lambda: time.time_ns() + skew[0]}) as h:
        venue = h.venue.client

        async def sample_behind_the_lock() -> None:
            assert venue._send_lock is not None
            async with venue._send_lock:  # another request holds it
                sample = asyncio.ensure_future(venue._sync_clock())
                for _ in range(10):
                    await asyncio.sleep(0)  # the sample starts and queues for the lock (no I/O on its way there)
                skew[0] = ahead_ns
            await sample

        h.venue._call(sample_behind_the_lock(), 30.0)
        clock = h.venue.status()["clock"]
    assert clock["rtt_ms"] < ahead_ns / 1_000_000  # the wait is not in it
    assert abs(clock["offset_ms"] + ahead_ns / 1_000_000) <= clock["rtt_ms"] / 2 + 1  # Binance's time is inside it


def test_settings_are_validated() -> None:
    from veloz_actors import InvalidInput

    with pytest.raises(InvalidInput, match="order_path"):
        BinanceVenueSettings(rest_url="http://x", ws_api_url="ws://x", order_path="fix")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="recv_window_ms"):
        BinanceVenueSettings(rest_url="http://x", ws_api_url="ws://x", recv_window_ms=70_000)
    with pytest.raises(InvalidInput, match="ws_api_url"):
        BinanceVenueSettings(rest_url="http://x", ws_api_url="http://x")


def _state(coid: str, vid: int, status: str, executed: str, *, qty: str = "0.02", time_ms: int = 1000) -> Any:
    return parse_order_state(
        {
            "symbol": SYMBOL, "orderId": vid, "clientOrderId": coid, "price": "60000", "origQty": qty,
            "executedQty": executed, "cummulativeQuoteQty": "0", "status": status, "timeInForce": "GTC",
            "type": "LIMIT", "side": "BUY", "time": time_ms, "updateTime": time_ms + 5,
        }
    )  # fmt: skip


def _trade(tid: int, vid: int, qty: str, *, buyer: bool = True) -> Any:
    return parse_my_trades(
        [
            {
                "symbol": SYMBOL, "id": tid, "orderId": vid, "price": "60000", "qty": qty, "quoteQty": "0",
                "commission": "0.6", "commissionAsset": "USDT", "time": 2000 + tid, "isBuyer": buyer,
                "isMaker": True,
            }
        ]
    )[0]  # fmt: skip


def test_the_reconciliation_comparison_is_deterministic_and_complete() -> None:
    """Missing fills (then the end) of a known order, a never-placed one, an external order, a deposit."""
    inst = _instrument()
    view = KernelView(
        orders=(
            KnownOrder("k1", SYMBOL, filled_qty=d("0.01"), venue_order_id="11", trade_ids=frozenset({5})),
            KnownOrder("k2", SYMBOL),
            KnownOrder("k3", SYMBOL, venue_order_id="13"),
        ),
        last_trade_ids={SYMBOL: 5},
        balances={"USDT": d("1000"), "BTC": d("1")},
    )
    snap = VenueSnapshot(
        balances=[
            VenueBalance(venue="BINANCE", account_id="main", asset="USDT", free=d("1500"), locked=0, ts=0),
            VenueBalance(venue="BINANCE", account_id="main", asset="BTC", free=d("1.01"), locked=0, ts=0),
        ],
        account_ts=7,
        open_orders=parse_open_orders(
            [
                {
                    "symbol": SYMBOL,
                    "orderId": 13,
                    "clientOrderId": "k3",
                    "price": "60000",
                    "origQty": "0.01",
                    "executedQty": "0",
                    "cummulativeQuoteQty": "0",
                    "status": "NEW",
                    "timeInForce": "GTC",
                    "type": "LIMIT",
                    "side": "BUY",
                    "time": 900,
                    "updateTime": 900,
                },
                {
                    "symbol": SYMBOL,
                    "orderId": 14,
                    "clientOrderId": "web_1",
                    "price": "50000",
                    "origQty": "0.5",
                    "executedQty": "0",
                    "cummulativeQuoteQty": "0",
                    "status": "NEW",
                    "timeInForce": "GTC",
                    "type": "LIMIT",
                    "side": "BUY",
                    "time": 950,
                    "updateTime": 950,
                },
            ]
        ),  # fmt: skip
        states={"k1": _state("k1", 11, "CANCELED", "0.02"), "k2": NEVER_PLACED},
        trades={SYMBOL: [_trade(6, 11, "0.01")]},
        now=99,
    )
    report = build_reconciliation(view, snap, {SYMBOL: inst}, account_id="main")
    kinds = [(type(r).__name__, r.client_order_id) for r in report.reports]
    assert kinds == [  # oldest first: k2 has no exchange time (ts 0)
        ("VenueOrderRejected", "k2"),
        ("VenueOrderFilled", "k1"),
        ("VenueOrderCancelled", "k1"),
    ]
    fill = report.reports[1]
    assert isinstance(fill, VenueOrderFilled) and fill.trade_id == 6 and fill.leaves_qty == 0  # the end follows
    assert "never reached Binance" in report.reports[0].detail  # type: ignore[union-attr]
    [external] = report.external_orders
    assert external.id == "BINANCE:main:order:BTCUSDT:14" and external.client_order_id == "web_1"
    # the new fill moved USDT by -600.6 and BTC by +0.01; the rest of the USDT difference is a deposit
    [diff] = report.balance_differences
    assert (diff.asset, diff.delta, diff.id) == ("USDT", d("1100.6"), "BINANCE:main:balance:USDT:+1100.6")
    assert report.summary["fills_new"] == 1 and report.summary["never_placed"] == ["k2"]
    again = build_reconciliation(view, snap, {SYMBOL: inst}, account_id="main")
    assert again == report


def test_the_balances_are_compared_with_the_fills_of_own_orders_the_view_lacks() -> None:
    """Orders the reconciliation leaves to the adapter: k9 in flight (the view booked its trade 7, not 8), k10 placed
    after the view was read (its trade 9). The account has both new fills; trade 10, made after the account was read,
    is in neither side. None is a balance difference (each was one)."""
    # k9 is left out of the view compared, as the adapter leaves an order in flight out
    view = KernelView(orders=(), last_trade_ids={SYMBOL: 7}, balances={"USDT": d("10000"), "BTC": d("1")})
    account = {"USDT": d("10000") - 2 * d("600.6"), "BTC": d("1.02")}  # the view's, then trades 8 and 9
    snap = VenueSnapshot(
        balances=[VenueBalance(venue="BINANCE", account_id="main", asset=a, free=v, locked=0, ts=0)
                  for a, v in account.items()],
        account_ts=2009 * 1_000_000,
        balances_until=2009 * 1_000_000,  # trade t's time is 2000 + t ms
        open_orders=[],
        trades={SYMBOL: [_trade(8, 19, "0.01"), _trade(9, 20, "0.01"), _trade(10, 20, "0.01")]},
        order_clients={"19": "k9", "20": "k10"},
        ours=frozenset({"k9", "k10"}),
        in_flight={"k9": frozenset({7})},
    )  # fmt: skip
    report = build_reconciliation(view, snap, {SYMBOL: _instrument()}, account_id="main")
    assert report.reports == () and report.external_orders == ()
    assert report.balance_differences == (), report.summary["balance_differences"]


def test_an_end_reported_before_its_fill_waits_for_the_fill() -> None:
    """A CANCELED event whose ``z`` is ahead of the fills reported is held; the late TRADE arrives within the
    catch-up delay, goes first, and only then the end."""
    out: list[Any] = []
    settings = BinanceVenueSettings(rest_url="http://127.0.0.1:9", ws_api_url="ws://127.0.0.1:9", catch_up_delay=0.05)
    venue = BinanceVenue(settings, HMAC, {SYMBOL: _instrument()}, out.extend)

    def event(x: str, status: str, z: str, **extra: Any) -> dict[str, Any]:
        base = {
            "e": "executionReport", "E": 1, "s": SYMBOL, "c": "c1", "S": "BUY", "o": "LIMIT", "f": "GTC",
            "q": "0.02", "p": "60000", "x": x, "X": status, "r": "NONE", "i": 7, "l": "0", "z": z, "L": "0",
            "n": "0", "N": None, "T": 2, "t": -1, "m": False, "C": "",
        }  # fmt: skip
        base.update(extra)
        return base

    async def scenario() -> None:
        venue._loop = asyncio.get_running_loop()
        venue._register("c1", SYMBOL, _submit(qty=d("0.02")))
        venue._on_event(event("NEW", "NEW", "0"))
        venue._on_event(event("CANCELED", "CANCELED", "0.01", C="c1", c="cancel-1"))
        assert [type(m) for m in out] == [VenueOrderAccepted]  # the end waits
        await asyncio.sleep(0.01)
        venue._on_event(event("TRADE", "PARTIALLY_FILLED", "0.01", l="0.01", L="60000", t=3, n="0.6", N="USDT"))
        await asyncio.sleep(0.2)
        venue._on_event(event("CANCELED", "CANCELED", "0.01", C="c1", c="cancel-1"))  # a repeat: dropped

    asyncio.run(scenario())
    assert [type(m) for m in out] == [VenueOrderAccepted, VenueOrderFilled, VenueOrderCancelled]


# ------------------------------------------------------------------------------------------------- the lifecycle


def test_order_lifecycle_in_the_kernels_terms(server: BinanceTestServer) -> None:
    """HMAC key, orders over the WebSocket API: rest, partial fill, cancel, fill, market by quantity and by quote
    amount; the kernel equals the server after every step."""
    with Harness(server) as h:
        assert isinstance(h.venue, Venue) and h.venue.name == "BINANCE"
        resting = h.place(Side.BUY, d("0.01"), d("61835"))
        h.wait(resting, OrderStatus.ACCEPTED)
        h.assert_matches_server()
        partial = h.place(Side.BUY, h.ask_qty + d("0.5"), h.ask)
        order = h.wait(partial, OrderStatus.PARTIALLY_FILLED)
        assert order.filled == h.ask_qty and order.venue_order_id
        h.assert_matches_server()
        h.cancel(partial)
        assert h.wait(partial, OrderStatus.CANCELLED).filled == h.ask_qty
        h.assert_matches_server()
        publish(server, 150)
        h.wait(resting, OrderStatus.FILLED)
        h.assert_matches_server()
        sold = h.place(Side.SELL, d("0.5"))
        h.wait(sold, OrderStatus.FILLED)
        bought = h.place(Side.BUY, quote_qty=d("1000"))
        h.wait(bought, OrderStatus.FILLED)
        h.pump()
        h.assert_matches_server()
        status = h.venue.status()
        assert status["ready"] and status["counts"]["sent.order.place"] == 4
        assert status["api_key"] == HMAC.masked_api_key
        assert any(isinstance(m, VenueBalance) for m in h.account_messages)


def test_a_market_buy_by_quote_amount_that_exhausts_the_book_is_expired_as_binance_says(capture: Path) -> None:
    """Binance expires a MARKET order the book cannot fill, the filled part kept (``market_orders_faq.md``: status
    ``EXPIRED``, expiry reason ``INSUFFICIENT_LIQUIDITY``). The local server's paper venue closed an order by quote
    amount with its last fill (FILLED, having spent a part), and the kernel called any such order FILLED; now both
    say EXPIRED, and the unspent reservation is released on both sides."""
    balances = {"USDT": "10000000", "BTC": "10"}  # more than the whole served ask side costs (about 7.4 million)
    server = BinanceTestServer([capture], speed=0, paused=True)
    server.add_account(HMAC.api_key, hmac_secret=HMAC_SECRET, balances=balances)
    server.start()
    try:
        with Harness(server, balances=balances) as h:
            _, _, asks = server.book(SYMBOL)
            coid = h.place(Side.BUY, quote_qty=d("9000000"))
            order = h.wait(coid, OrderStatus.EXPIRED, timeout=30.0)
            step = h.instruments[SYMBOL].qty_step
            assert order.filled == sum(qty // step * step for _, qty in asks)
            [expired] = [e for e in h.kernel_events if isinstance(e, OrderExpired) and e.client_order_id == coid]
            assert expired.reason is RejectReason.NO_LIQUIDITY
            [row] = [o for o in server.orders(HMAC.api_key) if o["clientOrderId"] == coid]
            assert (row["status"], row["expiryReason"]) == ("EXPIRED", "INSUFFICIENT_LIQUIDITY")
            h.pump()
            h.assert_matches_server()  # the same status, fills and balances; nothing left locked
            assert h.kernel.ledger.balances("main")["USDT"][1] == 0
    finally:
        server.stop()


def test_a_market_order_by_quantity_never_fills_beyond_the_price_band(server: BinanceTestServer) -> None:
    """The kernel bounds a market order by the price band (``risk.price_band``: its protect price, at the band's edge,
    is what a buy reserves funds for) and the paper venue fills it within that price. Sent to Binance as a plain
    MARKET, it walked the book past it: with a band of 0.01 % a 9 BTC sell filled down to 61,824.00 under its protect
    price 61,831.45, and a 4 BTC buy up to 61,849.88 over 61,843.81, the price its funds were reserved at. Now it goes
    as a LIMIT IOC at the protect price: it fills at the book's prices up to the band's edge and its rest expires
    (``NO_LIQUIDITY``, as the paper venue says), so the reservation holds and the kernel equals the server."""
    with Harness(server, risk=RiskLimits(price_band=10_000)) as h:  # 0.01 %
        for side, qty in ((Side.SELL, d("9")), (Side.BUY, d("4"))):
            coid = h.place(side, qty)
            h.pump(lambda c=coid: h.order(c).status in (OrderStatus.FILLED, OrderStatus.EXPIRED))
            order = h.order(coid)
            protect = order.protect_price
            assert protect is not None
            fills = [e for e in h.kernel_events if isinstance(e, OrderFilled) and e.client_order_id == coid]
            worst = min(f.price for f in fills) if side is Side.SELL else max(f.price for f in fills)
            assert (worst >= protect) if side is Side.SELL else (worst <= protect), (side, text(worst), text(protect))
            assert order.status is OrderStatus.EXPIRED and 0 < order.filled < qty
            [expired] = [e for e in h.kernel_events if isinstance(e, OrderExpired) and e.client_order_id == coid]
            assert expired.reason is RejectReason.NO_LIQUIDITY
            [row] = [o for o in server.orders(HMAC.api_key) if o["clientOrderId"] == coid]
            assert (row["type"], row["timeInForce"], row["price"]) == ("LIMIT", "IOC", text(protect))
        h.pump()
        h.assert_matches_server()
        assert h.errors() == []


def test_another_order_under_our_client_order_id_is_an_external_order_not_ours(server: BinanceTestServer) -> None:
    """Binance asks a client order id unique among open orders only: once ours has closed, another program may use it.
    Its reports were booked onto ours (a fill beyond our order, after it closed)."""
    with Harness(server) as h:
        coid = h.place(Side.BUY, d("0.001"), h.ask)
        h.wait(coid, OrderStatus.FILLED)
        ours = h.order(coid).venue_order_id
        other = server.trading_faults.place_outside(HMAC.api_key, SYMBOL, "BUY", "0.001", text(h.ask),
                                                    client_order_id=coid)  # fmt: skip
        assert other["status"] == "FILLED" and str(other["orderId"]) != ours
        h.pump(lambda: any(isinstance(e, ExternalOrder) for e in h.events))
        [external] = [e for e in h.events if isinstance(e, ExternalOrder)]
        assert (external.client_order_id, external.venue_order_id) == (coid, str(other["orderId"]))
        order = h.order(coid)
        assert (order.status, order.filled, order.venue_order_id) == (OrderStatus.FILLED, d("0.001"), ours)
        assert h.errors() == []


def test_a_fill_report_that_cannot_be_read_is_said_and_the_fill_fetched_from_binance(server: BinanceTestServer) -> None:
    """It was only logged and counted: no Error event, and a fill only the stream told waited for the next periodic
    reconciliation. (Here the order's answer lists the fill too; the order ends filled, as Binance has it.)"""
    with Harness(server, catch_up_delay=0.2) as h:
        server.trading_faults.corrupt_report("L", "NaN")  # the price of the fill this order makes at once
        coid = h.place(Side.BUY, d("0.001"), h.ask)
        h.pump(lambda: any(isinstance(e, Error) for e in h.events))
        assert h.wait(coid, OrderStatus.FILLED).filled == d("0.001")
        [error] = [e for e in h.events if isinstance(e, Error)]
        assert error.code == "VENUE_BAD_REPORT" and "'NaN'" in error.message
        assert error.message.endswith(f"; order {coid} is read again from Binance")
        assert server.trading_faults.counts["corrupt_report"] == 1 and h.venue.status()["bad_input"] == {"bad_event": 1}
        h.assert_matches_server()


def test_each_binance_reject_post_only_and_ioc_fok_expiry(server: BinanceTestServer) -> None:
    with Harness(server) as h:
        maker = h.place(Side.BUY, d("0.01"), h.ask, tif=TimeInForce.POST_ONLY)
        h.wait(maker, OrderStatus.REJECTED)
        assert h.rejection(maker).reason is RejectReason.WOULD_TAKE_LIQUIDITY
        ioc = h.place(Side.BUY, h.ask_qty + d("1"), h.ask, tif=TimeInForce.IOC)
        assert h.wait(ioc, OrderStatus.EXPIRED).filled == h.ask_qty
        fok = h.place(Side.BUY, h.ask_qty + d("1"), h.ask, tif=TimeInForce.FOK)
        assert h.wait(fok, OrderStatus.EXPIRED).filled == 0
        h.pump()
        h.assert_matches_server()
        # insufficient funds at Binance (funds locked by an order placed elsewhere, which the kernel cannot know)
        server.trading_faults.place_outside(HMAC.api_key, SYMBOL, "BUY", "14", "61000", client_order_id="web-1")
        poor = h.place(Side.BUY, d("1"), d("61000"))
        h.wait(poor, OrderStatus.REJECTED)
        assert h.rejection(poor).reason is RejectReason.INSUFFICIENT_FUNDS
        assert any(isinstance(e, ExternalOrder) and e.client_order_id == "web-1" for e in h.events)
    # a server-side filter failure: Binance coarsened the tick after the adapter checked its rules (it checks at
    # start only here), so the adapter and the kernel still hold a finer tick than Binance's
    with Harness(server, ED, exchange_info_every=None) as h:
        server.faults.change_symbol(SYMBOL, filters={"PRICE_FILTER": {"tickSize": "0.10000000"}})
        off_tick = h.place(Side.BUY, d("0.01"), d("61000.01"))
        h.wait(off_tick, OrderStatus.REJECTED)
        rejected = h.rejection(off_tick)
        assert rejected.reason is RejectReason.INVALID_PRICE and "PRICE_FILTER" in rejected.detail
        assert server.orders(ED.api_key) == []


def test_local_rejections_name_the_filter_and_send_nothing(server: BinanceTestServer) -> None:
    with Harness(server) as h:
        raw: list[Any] = []
        for coid, kw in (
            ("tick", {"price": d("61000.001")}),
            ("step", {"qty": d("0.000001")}),
            ("notional", {"qty": d("0.00001"), "price": d("100")}),
            ("bad id!", {}),
        ):
            h.venue.submit(_submit(coid, **kw))
        deadline = time.monotonic() + 5
        while len(raw) < 4 and time.monotonic() < deadline:
            try:
                raw += h.reports.get(timeout=0.1)
            except queue.Empty:
                continue
        got = {r.client_order_id: r for r in raw}
        assert got["tick"].reason is RejectReason.PRICE_NOT_ON_TICK and "PRICE_FILTER" in got["tick"].detail
        assert got["step"].reason is RejectReason.QUANTITY_NOT_ON_STEP and "LOT_SIZE" in got["step"].detail
        assert got["notional"].reason is RejectReason.NOTIONAL_BELOW_MINIMUM and "NOTIONAL" in got["notional"].detail
        assert "client order id" in got["bad id!"].detail
        assert server.orders(HMAC.api_key) == []
        assert h.venue.status()["orders"]["rejected_locally"]["PRICE_NOT_ON_TICK"] == 1


def test_not_ready_rejects_orders_and_says_why(server: BinanceTestServer) -> None:
    settings = BinanceVenueSettings(
        rest_url=server.rest_url, ws_api_url=server.stream_url + "/no-such-path", backoff_initial=0.05, backoff_max=0.2
    )
    got: queue.Queue[list[Any]] = queue.Queue()
    venue = VenueThread(settings, HMAC, {SYMBOL: _instrument()}, got.put).start()
    try:
        assert not venue.wait_ready(0.5)
        status = venue.status()
        assert not status["ready"] and "refused the connection (HTTP 404)" in status["not_ready"]
        venue.submit(_submit())
        [rejected] = got.get(timeout=5)
        assert rejected.reason is RejectReason.HALTED and "not ready" in rejected.detail
        assert "HTTP 404" in rejected.detail
    finally:
        venue.close()


def test_ed25519_key_over_rest_with_a_skewed_local_clock(server: BinanceTestServer) -> None:
    """The REST order path and an Ed25519 key; the local clock is 7 s ahead, the measured offset takes it back."""
    skewed = {"clock": lambda: time.time_ns() + 7_000_000_000}
    with Harness(server, ED, order_path="rest", venue_kw=skewed) as h:
        assert -7_100 < h.venue.status()["clock"]["offset_ms"] < -6_900
        resting = h.place(Side.BUY, d("0.02"), d("61826"))
        h.wait(resting, OrderStatus.ACCEPTED)
        bought = h.place(Side.BUY, d("0.3"))
        h.wait(bought, OrderStatus.FILLED)
        publish(server, 500)
        h.wait(resting, OrderStatus.FILLED)
        h.pump()
        h.assert_matches_server()
        assert h.venue.status()["key_type"] == "ED25519"


# ------------------------------------------------------------------------------------------------------ faults


def test_a_timestamp_error_resyncs_the_clock_and_sends_once_more(server: BinanceTestServer) -> None:
    with Harness(server) as h:
        server.trading_faults.timestamp_error(1)
        coid = h.place(Side.BUY, d("0.01"), d("61000"))
        h.wait(coid, OrderStatus.ACCEPTED)
        assert server.trading_faults.counts["timestamp_error"] == 1
        assert len(server.orders(HMAC.api_key)) == 1
        assert h.venue.status()["clock"]["resyncs"] == 1
        h.assert_matches_server()


@pytest.mark.parametrize("path", ["ws", "rest"])
def test_minus_1007_on_a_placed_order_is_unknown_then_the_servers_truth(server: BinanceTestServer, path: str) -> None:
    """-1007 (HTTP 503) on orders Binance did place: a resting one whose NEW event is also lost goes UNKNOWN in
    the kernel and is resolved by ``order.status``; a crossing one is resolved with its fill (when the stream
    reported it before the answer was read, its outcome was never unknown). Neither is sent twice."""
    with Harness(server, order_path=path) as h:
        faults = server.trading_faults
        faults.timeout_after_placing(1)
        faults.miss_report(1)
        resting = h.place(Side.BUY, d("0.01"), d("61835"))
        order = h.wait(resting, OrderStatus.ACCEPTED)
        assert OrderStatus.UNKNOWN in [s for s, _ in order.history]
        assert "ORDER_STATUS_UNKNOWN" in h.errors()
        faults.timeout_after_placing(1)
        crossing = h.place(Side.BUY, h.ask_qty + d("0.5"), h.ask)
        assert h.wait(crossing, OrderStatus.PARTIALLY_FILLED).filled == h.ask_qty
        assert [o["clientOrderId"] for o in server.orders(HMAC.api_key)] == [resting, crossing]  # never sent again
        counts = h.venue.status()["counts"]
        assert counts["unknown_outcomes"] == 2 and counts["resolved"] == 2
        assert faults.counts["timeout_after_placing"] == 2
        h.assert_matches_server()
        publish(server, 150)
        h.wait(resting, OrderStatus.FILLED)
        h.assert_matches_server()


@pytest.mark.parametrize("path", ["ws", "rest"])
def test_a_connection_dropped_before_the_answer(server: BinanceTestServer, path: str) -> None:
    with Harness(server, order_path=path) as h:
        server.trading_faults.drop_before_answer(1)
        coid = h.place(Side.BUY, d("0.01"), d("61835"))
        h.pump(lambda: h.venue.status()["counts"].get("resolved") == 1)
        h.wait(coid, OrderStatus.ACCEPTED)
        if path == "ws":
            assert "ORDER_STATUS_UNKNOWN" in h.errors()
        assert [o["clientOrderId"] for o in server.orders(HMAC.api_key)] == [coid]
        h.pump(lambda: h.venue.ready)
        publish(server, 150)
        h.wait(coid, OrderStatus.FILLED)
        h.assert_matches_server()
        if path == "ws":
            assert h.venue.status()["reconnects"] == 1


def test_a_cancel_never_overtakes_its_order_and_an_order_is_never_sent_twice(server: BinanceTestServer) -> None:
    """The order's answer is lost (-1007): the cancel waits for its resolution, then cancels it; the kernel's
    request sent again (as after a restart) is not placed a second time."""
    with Harness(server) as h:
        server.trading_faults.timeout_after_placing(1)
        server.trading_faults.miss_report(1)
        coid = h.place(Side.BUY, d("0.01"), d("61000"))
        h.cancel(coid)  # at once: the place answer (-1007) and the resolution come first
        order = h.wait(coid, OrderStatus.CANCELLED)
        assert OrderStatus.UNKNOWN in [s for s, _ in order.history]
        request = SubmitOrder(command=order.command, order_id=order.order_id, limit=order.command.price)
        h.venue.submit(request)
        h.pump()
        assert [(o["clientOrderId"], o["status"]) for o in server.orders(HMAC.api_key)] == [(coid, "CANCELED")]
        assert h.venue.status()["counts"]["repeat_submits"] == 1
        h.assert_matches_server()


def test_a_cancel_whose_order_is_still_unanswered_after_cancel_wait_is_refused_not_sent(
    server: BinanceTestServer,
) -> None:
    """Before: sent anyway, it reached Binance before the order, was refused -2011 (``ORDER_NOT_OPEN``), and the
    order then rested: the trader's cancel silently did nothing."""
    with Harness(server, cancel_wait=0.5, request_timeout=5.0) as h:
        server.trading_faults.slow_orders(2.0, 1)
        coid = h.place(Side.BUY, d("0.01"), d("61000"))
        h.cancel(coid)
        h.wait(coid, OrderStatus.ACCEPTED, timeout=10.0)
        refused = [m for m in h.seen if isinstance(m, VenueCancelRejected) and m.client_order_id == coid]
        assert [(m.reason, m.detail.split(";")[0]) for m in refused] == [
            (RejectReason.VENUE_REJECTED, "not sent: the order's own answer has not come in 0.5 s")
        ]
        assert [(o["clientOrderId"], o["status"]) for o in server.orders(HMAC.api_key)] == [(coid, "NEW")]
        h.assert_matches_server()


def test_a_request_that_timed_out_leaves_the_waiting_list_and_its_late_answer_is_known_as_late(
    server: BinanceTestServer,
) -> None:
    """Before: the timed-out request stayed on the WebSocket API's waiting list until its answer came (or never, if
    it was lost), so the map grew and a planned reconnect waited its full timeout for it. Now it leaves at the
    timeout; the answer that still comes is counted as late, never as bad input, and breaks nothing."""
    with Harness(server, request_timeout=0.5) as h:
        server.trading_faults.slow_orders(1.5, 1)
        coid = h.place(Side.BUY, d("0.01"), d("61000"))
        h.pump(lambda: "ORDER_STATUS_UNKNOWN" in h.errors())
        assert h.venue.status()["pending_requests"] == 0  # gone at the timeout, not when (if) the answer comes
        h.wait(coid, OrderStatus.ACCEPTED)
        h.pump(lambda: h.venue.status()["counts"].get("late_answers") == 1)
        status = h.venue.status()
        assert status["pending_requests"] == 0
        assert "unexpected_answer" not in status["bad_input"] and "internal_errors" not in status["counts"]
        assert status["ready"]
        h.assert_matches_server()


def test_the_connection_is_renewed_before_its_age_limit(server: BinanceTestServer) -> None:
    with Harness(server, max_connection_seconds=0.4) as h:
        h.pump(lambda: h.venue.status()["reconnects"] >= 1 and h.venue.ready, timeout=5)
        coid = h.place(Side.BUY, d("0.01"), d("61000"))
        h.wait(coid, OrderStatus.ACCEPTED)
        status = h.venue.status()
        assert status["counts"]["planned_reconnects"] >= 1 and status["reconcile"]["count"] >= 2
        h.assert_matches_server()


def test_a_fill_the_stream_never_delivered_is_found_by_the_periodic_reconciliation(server: BinanceTestServer) -> None:
    """The connection stays up and the order sends nothing more: only a periodic reconciliation finds its fill. It
    runs in the adapter's thread object, so the actor engine's venue actor has it too (it had none: the fill waited
    for the next reconnect, up to 23.5 h, with the quote locked and the base never credited)."""
    holder: list[Harness] = []
    venue_kw = {"view": lambda: kernel_view(holder[0].kernel), "reconcile_every": 0.3}
    with Harness(server, start=False, venue_kw=venue_kw) as h:
        holder.append(h)
        h.start()
        coid = h.place(Side.BUY, d("0.01"), d("61835"))
        h.wait(coid, OrderStatus.ACCEPTED)
        server.trading_faults.miss_report(1)
        publish(server, 150)
        h.wait(coid, OrderStatus.FILLED, timeout=15.0)
        assert server.trading_faults.counts["miss_report"] == 1
        assert h.venue.status()["periodic_reconciliations"]["done"] >= 1
        h.assert_matches_server()


def test_duplicated_reordered_and_missed_reports(server: BinanceTestServer) -> None:
    """Every execution report doubled for a while, one held back behind the next, one never sent: the kernel
    still equals the server; the missed fill is found when the cancel of the (already filled) order is refused."""
    with Harness(server) as h:
        faults = server.trading_faults
        faults.duplicate_reports(2)
        faults.reorder_reports(2)
        partial = h.place(Side.BUY, h.ask_qty + d("0.5"), h.ask)
        resting = h.place(Side.BUY, d("0.01"), d("61835"))
        h.wait(partial, OrderStatus.PARTIALLY_FILLED)
        h.wait(resting, OrderStatus.ACCEPTED)
        h.cancel(partial)
        h.wait(partial, OrderStatus.CANCELLED)
        h.pump()
        assert faults.counts["duplicate_reports"] == 2 and faults.counts["reorder_reports"] == 2
        faults.miss_report(1)
        publish(server, 150)  # the resting order fills; its TRADE event is never sent
        h.pump()
        assert faults.counts["miss_report"] == 1 and h.order(resting).status is OrderStatus.ACCEPTED
        h.cancel(resting)  # -2011: the adapter looks the order up and reports its fill
        h.wait(resting, OrderStatus.FILLED)
        h.pump()
        h.assert_matches_server()
        assert h.venue.status()["counts"]["duplicates_dropped"] >= 2


def test_stream_terminated_and_server_shutdown_resubscribe_and_reconcile(server: BinanceTestServer) -> None:
    """A fill missed while the stream is away is recovered by the reconciliation after the resubscription
    (``eventStreamTerminated``) or the reconnection (``serverShutdown``)."""
    with Harness(server) as h:
        faults = server.trading_faults
        first = h.place(Side.BUY, d("0.01"), d("61835"))
        second = h.place(Side.BUY, d("0.01"), d("61826"))
        h.wait(first, OrderStatus.ACCEPTED)
        h.wait(second, OrderStatus.ACCEPTED)
        faults.miss_report(1)
        publish(server, 150)
        h.pump()
        assert h.order(first).status is OrderStatus.ACCEPTED  # its fill was missed
        assert faults.terminate_stream(HMAC.api_key) == 1
        h.wait(first, OrderStatus.FILLED)
        status = h.venue.status()
        assert status["counts"]["resubscribes"] == 1 and status["reconcile"]["fills"] == 1
        h.assert_matches_server()
        faults.miss_report(1)
        publish(server, 350)
        h.pump()
        assert h.order(second).status is OrderStatus.ACCEPTED
        assert faults.ws_server_shutdown(0.2) == 1
        h.wait(second, OrderStatus.FILLED)
        h.pump(lambda: h.venue.ready)
        status = h.venue.status()
        assert status["reconnects"] == 1 and status["counts"]["stream.serverShutdown"] == 1
        assert status["reconcile"]["count"] == 3
        h.assert_matches_server()
        states = [e.state for e in h.events if isinstance(e, VenueConnection)]
        assert states == ["connected", "disconnected", "connected"]


def test_429_sends_nothing_until_retry_after_and_never_earns_a_418(server: BinanceTestServer) -> None:
    with Harness(server, max_rate_limit_wait=5.0) as h:
        faults = server.trading_faults
        faults.rate_limit(429, retry_after=2)
        refused = h.place(Side.BUY, d("0.01"), d("61000"))
        h.wait(refused, OrderStatus.REJECTED)
        assert h.rejection(refused).reason is RejectReason.RATE_LIMIT
        started = time.monotonic()
        waited = h.place(Side.BUY, d("0.01"), d("61001"))
        h.wait(waited, OrderStatus.ACCEPTED, timeout=8)
        assert time.monotonic() - started >= 1.5  # it waited for the block (from the 429, a moment earlier)
        # a block longer than the trader may wait: rejected at once, not sent
        faults.rate_limit(429, retry_after=30)
        refused_again = h.place(Side.BUY, d("0.01"), d("61002"))
        h.wait(refused_again, OrderStatus.REJECTED)
        impatient = h.place(Side.BUY, d("0.01"), d("61003"))
        h.wait(impatient, OrderStatus.REJECTED, timeout=2)
        assert "rate limited" in h.rejection(impatient).detail
        counts = faults.counts
        assert counts["rate_limit"] == 2
        assert counts["early_requests"] == 0 and counts["requests_during_ban"] == 0 and counts["ip_ban"] == 0
        assert [o["clientOrderId"] for o in server.orders(HMAC.api_key)] == [waited]
        limits = h.venue.status()["rate_limits"]
        assert limits["blocked"] and limits["too_many_requests"] == 2 and limits["bans"] == 0


def test_an_order_beyond_the_order_count_is_rejected_locally(server: BinanceTestServer) -> None:
    server.set_rate_limits(
        [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 2},
        ]
    )
    with Harness(server) as h:
        coids = [h.place(Side.BUY, d("0.01"), d("61000") + i * d("1")) for i in range(3)]
        h.wait(coids[1], OrderStatus.ACCEPTED)
        h.wait(coids[2], OrderStatus.REJECTED)
        rejected = h.rejection(coids[2])
        assert rejected.reason is RejectReason.RATE_LIMIT and "ORDERS" in rejected.detail
        assert server.trading_faults.counts["too_many_orders"] == 0  # it was never sent
        assert len(server.orders(HMAC.api_key)) == 2
        h.assert_matches_server()


def test_an_outside_order_and_a_deposit_give_reconciliation_events_with_stable_ids(server: BinanceTestServer) -> None:
    before = server.trading_faults.place_outside(HMAC.api_key, SYMBOL, "SELL", "0.5", "62000", client_order_id="app-1")
    with Harness(server) as h:
        first = next(e for e in h.events if isinstance(e, ReconcileReport))
        assert first.summary["external_orders"] == [f"BINANCE:main:order:BTCUSDT:{before['orderId']}"]
        mine = h.place(Side.BUY, d("0.01"), d("61000"))
        h.wait(mine, OrderStatus.ACCEPTED)
        outside = server.trading_faults.place_outside(HMAC.api_key, SYMBOL, "BUY", "0.02", "60000")
        server.deposit(HMAC.api_key, "USDT", "100")
        h.pump(lambda: any(isinstance(m, VenueBalanceDelta) for m in h.account_messages))
        delta = next(m for m in h.account_messages if isinstance(m, VenueBalanceDelta))
        assert (delta.asset, delta.delta) == ("USDT", d("100"))
        streamed = [e.id for e in h.events if isinstance(e, ExternalOrder)]
        assert f"BINANCE:main:order:BTCUSDT:{outside['orderId']}" in streamed
        reports = [h.venue.reconcile(view=kernel_view(h.kernel)) for _ in range(2)]
        h.pump()
        for report in reports:
            assert [e.id for e in report.external_orders] == [
                f"BINANCE:main:order:BTCUSDT:{before['orderId']}",
                f"BINANCE:main:order:BTCUSDT:{outside['orderId']}",
            ]
            assert [e.id for e in report.balance_differences] == ["BINANCE:main:balance:USDT:+100"]
            assert report.reports == ()
        assert reports[0].events == reports[1].events
        assert h.order(mine).status is OrderStatus.ACCEPTED


def test_an_order_that_never_reached_binance_is_rejected_and_its_funds_released(server: BinanceTestServer) -> None:
    """The kernel funded an order whose request never left (a crash before sending): Binance answers -2013; once a
    request signed then could no longer arrive (its recvWindow passed) the reconciliation rejects it."""
    with Harness(server, recv_window_ms=500, never_placed_margin_ms=200) as h:
        h.n += 1
        lost = f"t{h.n}"
        cmd = PlaceOrder(
            client_order_id=lost, symbol=SYMBOL, side=Side.BUY, order_type=OrderType.LIMIT, qty=d("1"),
            price=d("61000"), ts=time.time_ns(),
        )  # fmt: skip
        h.kernel_events += h.kernel.apply(cmd)
        assert h.kernel.take_outbox()  # never sent
        assert h.kernel.ledger.locked("main", "USDT") > 0
        started = time.monotonic()
        report = h.venue.reconcile(view=kernel_view(h.kernel))
        assert time.monotonic() - started >= 0.5  # it waited until the request could no longer arrive
        assert report.summary["never_placed"] == [lost]
        h.wait(lost, OrderStatus.REJECTED)
        assert "never reached Binance" in h.rejection(lost).detail
        assert h.kernel.ledger.locked("main", "USDT") == 0
        h.assert_matches_server()


# ------------------------------------------------------------------------------------------ a client id used again

REUSED = "stop-BTCUSDT-1"  # the kernel's stop-loss ids start from 1 again in every run
EARLIER_SESSION = 3 * 86_400.0  # seconds: an order the previous run placed


def _earlier_order(server: BinanceTestServer, side: str, *, age_seconds: float) -> dict[str, Any]:
    """A FILLED order, placed outside this session, with the client id the kernel is about to use again."""
    _, bids, asks = server.book(SYMBOL)
    price = asks[0][0] if side == "BUY" else bids[0][0]
    row = server.trading_faults.place_outside(
        HMAC.api_key, SYMBOL, side, "0.01", text(price), client_order_id=REUSED, age_seconds=age_seconds
    )
    assert row["status"] == "FILLED"
    return row


def _server_balances(server: BinanceTestServer) -> dict[str, str]:
    """The account's balances now, for a kernel that starts from them (no order open)."""
    balances = server.balances(HMAC.api_key)
    assert not any(locked for _, locked in balances.values())
    return {asset: text(free) for asset, (free, _) in balances.items() if free}


@pytest.mark.parametrize(("path", "earlier"), [("ws", "session"), ("rest", "session"), ("ws", "sell")])
def test_an_unknown_outcome_is_never_settled_with_an_earlier_order_of_its_client_id(
    server: BinanceTestServer, path: str, earlier: str
) -> None:
    """Binance needs a client id to be unique among open orders only (rest-api.md ``newClientOrderId``), and
    ``order.status`` by ``origClientOrderId`` finds the latest order that had it. The kernel uses the id of an
    earlier FILLED order again (of an earlier session, same side and size; or of a moment ago, a SELL) and the new
    order's request is lost on its way: the earlier order is not this one, so the new order is rejected as never
    placed, and none of the earlier order's fills is booked."""
    if earlier == "session":
        before = _earlier_order(server, "BUY", age_seconds=EARLIER_SESSION)
    else:
        before = _earlier_order(server, "SELL", age_seconds=0.0)
    balances = _server_balances(server)
    with Harness(server, order_path=path, balances=balances, recv_window_ms=1000, never_placed_margin_ms=200) as h:
        server.trading_faults.lose_order_request(1)
        coid = h.place(Side.BUY, d("0.01"), d("61000"), coid=REUSED)
        h.wait(coid, OrderStatus.REJECTED)
        assert "never reached Binance" in h.rejection(coid).detail
        assert OrderStatus.UNKNOWN in [s for s, _ in h.order(coid).history]
        assert not [m for m in h.seen if isinstance(m, VenueOrderFilled) and m.client_order_id == REUSED]
        same_id = [o["orderId"] for o in server.orders(HMAC.api_key) if o["clientOrderId"] == REUSED]
        assert same_id == [before["orderId"]]  # the lost request was never placed
        assert server.trading_faults.counts["lose_order_request"] == 1
        assert h.venue.status()["counts"]["other_order_with_client_id"] >= 1
        h.assert_matches_server(skip=frozenset({REUSED}))


def test_the_reconciliation_never_takes_an_earlier_order_of_the_same_client_id(server: BinanceTestServer) -> None:
    """The kernel funded an order with the id of an earlier session's FILLED order and stopped before sending it:
    the reconciliation finds only the earlier order, which is not this one, and rejects the kernel's as never
    placed (its funds released, no fill booked)."""
    _earlier_order(server, "BUY", age_seconds=EARLIER_SESSION)
    with Harness(server, balances=_server_balances(server), recv_window_ms=500, never_placed_margin_ms=200) as h:
        h.fund_unsent(REUSED, Side.BUY, d("0.01"), d("61000"))
        report = h.venue.reconcile(view=kernel_view(h.kernel))
        assert report.summary["never_placed"] == [REUSED] and report.summary["fills"] == 0
        h.wait(REUSED, OrderStatus.REJECTED)
        assert h.order(REUSED).filled == 0 and h.kernel.ledger.locked("main", "USDT") == 0
        h.assert_matches_server(skip=frozenset({REUSED}))


def test_never_placed_is_judged_on_binances_clock_whatever_the_local_one(server: BinanceTestServer) -> None:
    """The local clock is 7 s behind Binance's, and the kernel's command time is read from it: the never-placed check
    moves it by the measured offset. Looked at on Binance's clock the order is 7 s old and its request could no
    longer arrive; on its own clock it is new, so "no such order" is only believed after its recvWindow passed and a
    second ``order.status`` says so again."""
    behind = 7_000_000_000
    with Harness(server, recv_window_ms=500, never_placed_margin_ms=200,
                 venue_kw={"clock": lambda: time.time_ns() - behind}) as h:  # fmt: skip
        assert 6_900 < h.venue.status()["clock"]["offset_ms"] < 7_100
        h.fund_unsent("lost-1", Side.BUY, d("0.01"), d("61000"), ts=time.time_ns() - behind)
        asked = h.venue.status()["counts"].get("sent.order.status", 0)
        report = h.venue.reconcile(view=kernel_view(h.kernel))
        assert report.summary["never_placed"] == ["lost-1"]
        assert h.venue.status()["counts"]["sent.order.status"] - asked == 2
        h.wait("lost-1", OrderStatus.REJECTED)
        h.assert_matches_server()


# -------------------------------------------------------------------------------------------- orders and their trades


def test_an_order_with_more_trades_than_a_page_is_settled_with_all_of_them(server: BinanceTestServer) -> None:
    """A limit BUY through the whole ask side makes over 1000 trades; its answer and every stream event are lost
    with the WebSocket API connection. The adapter settles it from ``order.status`` and ``myTrades`` by
    ``orderId``, which Binance serves 500 rows at a time by default and 1000 at most: every page is read and
    every fill booked once."""
    _, _, asks = server.book(SYMBOL)
    qty = sum(level_qty for _, level_qty in asks)
    server.deposit(HMAC.api_key, "USDT", "8000000")
    with Harness(server, balances={"USDT": "9000000", "BTC": "10"}) as h:
        server.trading_faults.drop_before_answer(1)
        coid = h.place(Side.BUY, qty, asks[-1][0])
        order = h.wait(coid, OrderStatus.FILLED, timeout=30)
        trades = server.trades(HMAC.api_key)
        assert len(trades) == len(asks) > 1000
        assert order.filled == qty and len(order.trade_keys or ()) == len(trades)
        assert h.venue.status()["counts"]["sent.myTrades"] >= 2
        h.assert_matches_server()


def test_self_trade_prevention_ends_an_order_only_when_nothing_is_left(server: BinanceTestServer) -> None:
    """STP ``DECREMENT`` (``stp_faq.md`` Scenario G) takes quantity off an order that keeps working: the kernel's
    order stays open and its cancel reaches Binance. An order whose whole remainder is prevented ends
    (``EXPIRED_IN_MATCH``); one that fills what prevention left is FILLED at Binance short of its quantity, and
    ends ``SELF_TRADE_PREVENTED`` in the kernel with every fill booked."""
    with Harness(server) as h:
        faults = server.trading_faults
        resting = h.place(Side.BUY, d("0.03"), d("61000"))
        h.wait(resting, OrderStatus.ACCEPTED)
        assert faults.prevent_match(HMAC.api_key, resting, "0.01")["status"] == "NEW"
        h.pump(lambda: h.venue.status()["counts"].get("trade_preventions") == 1 or not h.order(resting).is_open)
        assert h.order(resting).status is OrderStatus.ACCEPTED
        h.cancel(resting)
        h.wait(resting, OrderStatus.CANCELLED)
        h.assert_matches_server()  # CANCELED at Binance too: the cancel was sent

        gone = h.place(Side.BUY, d("0.02"), d("61000"))
        h.wait(gone, OrderStatus.ACCEPTED)
        assert faults.prevent_match(HMAC.api_key, gone, "0.005")["status"] == "NEW"
        assert faults.prevent_match(HMAC.api_key, gone, "0.015")["status"] == "EXPIRED_IN_MATCH"
        h.wait(gone, OrderStatus.EXPIRED)
        [expired] = [e for e in h.kernel_events if isinstance(e, OrderExpired) and e.client_order_id == gone]
        assert expired.reason is RejectReason.SELF_TRADE_PREVENTED
        h.assert_matches_server()

        short = h.place(Side.BUY, h.ask_qty + d("0.5"), h.ask)
        h.wait(short, OrderStatus.PARTIALLY_FILLED)
        assert faults.prevent_match(HMAC.api_key, short, "0.3")["status"] == "PARTIALLY_FILLED"
        h.pump(lambda: h.venue.status()["counts"].get("trade_preventions") == 3 or not h.order(short).is_open)
        assert h.order(short).status is OrderStatus.PARTIALLY_FILLED
        publish(server, 150)  # trades through its price: the 0.2 prevention left fills
        order = h.wait(short, OrderStatus.EXPIRED)
        row = next(o for o in server.orders(HMAC.api_key) if o["clientOrderId"] == short)
        assert row["status"] == "FILLED" and order.filled == d(row["executedQty"]) == h.ask_qty + d("0.2")
        h.assert_matches_server(skip=frozenset({short}))  # balances too: nothing stays reserved


# ------------------------------------------------------------------------------------------- the order count's 429


@pytest.mark.parametrize("path", ["ws", "rest"])
def test_an_order_count_429_holds_back_new_orders_but_not_cancels(server: BinanceTestServer, path: str) -> None:
    """-1015 "Too many new orders" (a 429 with Retry-After) is the account's unfilled-order count, not the IP's
    weight: new orders are held back until Retry-After (rejected ``RATE_LIMIT`` when that is longer than they may
    wait, without being sent), while cancels and queries go on."""
    server.set_rate_limits(
        [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 3},
        ]
    )
    with Harness(server, order_path=path) as h:
        first = h.place(Side.BUY, d("0.01"), d("61000"))
        second = h.place(Side.BUY, d("0.01"), d("61001"))
        h.wait(first, OrderStatus.ACCEPTED)
        h.wait(second, OrderStatus.ACCEPTED)
        server.trading_faults.place_outside(HMAC.api_key, SYMBOL, "BUY", "0.01", "60000")  # the day's third order
        refused = h.place(Side.BUY, d("0.01"), d("61002"))
        h.wait(refused, OrderStatus.REJECTED)
        assert h.rejection(refused).reason is RejectReason.RATE_LIMIT and "-1015" in h.rejection(refused).detail
        h.cancel(first)
        h.wait(first, OrderStatus.CANCELLED)  # the cancel went out at once
        held = h.place(Side.BUY, d("0.01"), d("61003"))
        h.wait(held, OrderStatus.REJECTED)
        assert h.rejection(held).reason is RejectReason.RATE_LIMIT
        report = h.venue.reconcile(view=kernel_view(h.kernel))  # and so do queries
        assert report.summary["known_open_orders"] == 1
        counts = server.trading_faults.counts
        assert counts["too_many_orders"] == 1  # the held order was never sent
        assert counts["early_requests"] == 0 and counts["ip_ban"] == 0 and counts["requests_during_ban"] == 0
        limits = h.venue.status()["rate_limits"]
        assert not limits["blocked"] and limits["orders_blocked_until_ms"] is not None
        assert limits["too_many_orders"] == 1
        h.assert_matches_server()


@pytest.mark.parametrize("path", ["ws", "rest"])
def test_client_ids_may_use_every_character_binance_allows(server: BinanceTestServer, path: str) -> None:
    """``newClientOrderId`` may hold ``. : / _ -`` besides letters and digits: such an order is placed and
    cancelled by its id."""
    with Harness(server, order_path=path) as h:
        coid = h.place(Side.BUY, d("0.01"), d("61000"), coid="grid:btc.1-a_b")
        h.wait(coid, OrderStatus.ACCEPTED)
        h.cancel(coid)
        h.wait(coid, OrderStatus.CANCELLED)
        assert [o["clientOrderId"] for o in server.orders(HMAC.api_key)] == [coid]
        h.assert_matches_server()


# ------------------------------------------------------------------------------------------------------ secrets


def test_no_secret_in_any_log_line_status_or_report(server: BinanceTestServer) -> None:
    """A session with errors, a reconnect, an unknown outcome and a rate limit, for both key types: every log record
    (any logger, DEBUG) and every status payload and report is searched for the secrets."""
    statuses: list[Any] = []
    seen: list[Any] = []
    with every_log_record() as records:
        for creds, path in ((HMAC, "ws"), (ED, "rest")):
            with Harness(server, creds, order_path=path, recv_window_ms=2000) as h:
                statuses.append(h.venue.status())
                faults = server.trading_faults
                faults.timestamp_error(1)
                h.wait(h.place(Side.BUY, d("0.01"), d("61000")), OrderStatus.ACCEPTED)
                faults.timeout_after_placing(1)
                h.wait(h.place(Side.BUY, d("0.01"), d("61001")), OrderStatus.ACCEPTED)
                faults.drop_before_answer(1)
                h.wait(h.place(Side.BUY, d("0.01"), d("61002")), OrderStatus.ACCEPTED)
                h.pump(lambda: h.venue.ready)
                faults.rate_limit(429, retry_after=1)
                h.wait(h.place(Side.BUY, d("0.01"), d("61003")), OrderStatus.REJECTED)
                statuses.append(h.venue.status())
                h.venue.reconcile(view=kernel_view(h.kernel, "main"))
                h.pump()
                statuses.append(h.venue.status())
                seen += h.seen + h.events + h.kernel_events
            statuses.append(h.venue.status())
            server.set_rate_limits()  # the 429 window starts over for the next key
    assert records and statuses
    pem_body = "".join(line for line in ED_PEM.decode().splitlines() if "-----" not in line)
    secrets = [HMAC_SECRET, HMAC.api_key, ED.api_key, ED_PEM.decode(), pem_body, pem_body[:40]]
    texts = []
    for record in records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    texts.append(json.dumps(statuses, default=str))
    texts += [repr(m) for m in seen]
    for secret in secrets:
        assert not any(secret in t for t in texts), f"a secret leaked ({secret[:4]}…)"


def test_no_url_secret_reaches_the_status_a_log_line_an_event_or_an_error(server: BinanceTestServer) -> None:
    """URLs with a ``user:password@`` and a query carrying ``apiKey`` / ``signature``: the status, every log record,
    the connection events and the errors of a failed start show them as ``***`` (they were shown verbatim)."""
    from veloz_actors.venues.binance.venue import VenueUnavailable, fetch_account_balances

    password, key, signature = "pa55word-Xy", "k3yInTheQuery", "s1gInTheQuery"
    userinfo = f"trader:{password}@"
    rest_url = server.rest_url.replace("://", f"://{userinfo}")
    ws_url = server.stream_url.replace("://", f"://{userinfo}") + f"/ws-api/v3?apiKey={key}&signature={signature}"
    texts: list[str] = []
    with every_log_record() as records:
        loaded, info = load_instruments(server.rest_url, [SYMBOL], cache_dir=None)
        events: list[Any] = []
        settings = BinanceVenueSettings(rest_url=rest_url, ws_api_url=ws_url, request_timeout=3.0)
        venue = VenueThread(settings, HMAC, dict(loaded), lambda batch: None, events=events.append).start()
        try:
            assert venue.wait_ready(10.0), venue.status()
            texts.append(json.dumps(venue.status(), default=str))
        finally:
            venue.close()
        texts += [repr(e) for e in events]
        for url in (f"http://{userinfo}127.0.0.1:9?apiKey={key}", f"htp://{userinfo}127.0.0.1:9"):
            with pytest.raises(Exception) as caught:
                load_instruments(url, [SYMBOL], cache_dir=None, allow_cache=False)
            texts.append(str(caught.value))
            with pytest.raises(VenueUnavailable) as unavailable:
                fetch_account_balances(url, HMAC, timeout=2.0)
            texts.append(str(unavailable.value))
        with pytest.raises(ValueError) as bad:
            BinanceVenueSettings(rest_url=f"ftp://{userinfo}host", ws_api_url=ws_url)
        texts.append(str(bad.value))
    texts += [record.getMessage() for record in records]
    connected = [e for e in events if isinstance(e, VenueConnection) and e.state == "connected"]
    assert connected and "ws://***@127.0.0.1" in connected[0].detail  # the URL is still shown, its secrets are not
    assert any("***@" in t for t in texts if "connected to the WebSocket API" in t)
    for secret in (password, key, signature):
        leaks = [t for t in texts if secret in t]
        assert not leaks, leaks[:3]


def test_the_opening_balances_estimate_the_clock_from_the_smallest_of_several_round_trips(
    server: BinanceTestServer,
) -> None:
    """``fetch_account_balances`` (a new live engine's opening ledger) estimates Binance's clock as the adapter does.
    The first ``GET /api/v3/time`` answer is slowed 1.5 s on its way back: taken alone (before: one sample), its
    midpoint put Binance's clock 0.75 s behind, so the signed request's timestamp was 0.75 s old on arrival, outside a
    0.5 s recvWindow, and Binance refused it (-1021); the smallest of several round trips is not fooled."""
    from veloz_actors.venues.binance.venue import fetch_account_balances

    server.faults.slow_time(1.5, count=1)
    balances = {b.asset: b.free for b in fetch_account_balances(server.rest_url, HMAC, recv_window_ms=500)}
    assert server.faults.counts["slow_time"] == 1
    assert balances["USDT"] == d("1000000") and balances["BTC"] == d("10")


def test_a_new_live_engine_s_opening_ledger_is_asked_with_the_adapter_s_own_settings(server: BinanceTestServer) -> None:
    """``account_ledger`` (the opening ledger of both engines) asks with the user's ``venue.trading`` settings, as
    the adapter does: with one clock sample the slowed ``/time`` answers mislead it and a 0.5 s window is missed
    (Binance's -1021, said naming the endpoint, after the one resample a -1021 asks for), with the default five it is
    not; a wider window holds it even with one sample. Before, it always asked with the defaults (5,000 ms, five
    samples), whatever the config said."""
    from veloz_actors.venues.binance.venue import VenueUnavailable, account_ledger

    def settings(**changes: Any) -> BinanceVenueSettings:
        return BinanceVenueSettings(rest_url=server.rest_url, ws_api_url=server.stream_url + "/ws-api/v3", **changes)

    server.faults.slow_time(1.5, count=2)
    with pytest.raises(VenueUnavailable, match="-1021"):
        account_ledger(settings(recv_window_ms=500, clock_samples=1), HMAC)
    server.faults.slow_time(1.5, count=1)
    assert account_ledger(settings(recv_window_ms=500), HMAC)["BTC"] == d("10")
    server.faults.slow_time(1.5, count=1)
    assert account_ledger(settings(recv_window_ms=5_000, clock_samples=1), HMAC)["BTC"] == d("10")
    assert server.faults.counts["slow_time"] == 4


def _halted_events(h: Harness) -> list[tuple[str, str, str]]:
    return [(e.state, e.symbol, e.detail) for e in h.events if isinstance(e, VenueConnection) and e.symbol]


def test_a_symbol_halted_or_given_new_filters_in_the_session_refuses_new_orders_and_lets_cancels_go(
    server: BinanceTestServer,
) -> None:
    """The periodic exchangeInfo check (``exchange_info_every``): Binance halts the symbol (status BREAK), then trades
    it again, then changes its tick size. While its rules differ from the engine's, new orders are rejected
    ``HALTED`` with the reason and never sent, cancels go on, and each change is one event (before: the adapter
    never looked again, and every order went to Binance to be refused)."""
    with Harness(server, exchange_info_every=0.1) as h:
        resting = h.place(Side.BUY, d("0.01"), d("61000"))
        h.wait(resting, OrderStatus.ACCEPTED)
        server.faults.change_symbol(SYMBOL, status="BREAK")
        h.pump(lambda: SYMBOL in h.venue.status()["halted_symbols"])
        checks = h.venue.status()["periodic_rules_checks"]["done"]
        h.pump(lambda: h.venue.status()["periodic_rules_checks"]["done"] >= checks + 3)  # said once, not per check
        refused = h.place(Side.BUY, d("0.01"), d("61000"))
        h.wait(refused, OrderStatus.REJECTED)
        rejection = h.rejection(refused)
        assert rejection.reason is RejectReason.HALTED
        assert "BTCUSDT: its status on Binance is BREAK, not TRADING" in rejection.detail
        h.cancel(resting)
        h.wait(resting, OrderStatus.CANCELLED)
        server.faults.change_symbol(SYMBOL, status="TRADING")
        h.pump(lambda: not h.venue.status()["halted_symbols"])
        h.wait(h.place(Side.BUY, d("0.01"), d("61000")), OrderStatus.ACCEPTED)
        server.faults.change_symbol(SYMBOL, filters={"PRICE_FILTER": {"tickSize": "0.10000000"}})
        h.pump(lambda: SYMBOL in h.venue.status()["halted_symbols"])
        stale = h.place(Side.BUY, d("0.01"), d("61000.10"))
        h.wait(stale, OrderStatus.REJECTED)
        assert "Binance changed its trading rules: PRICE_FILTER tickSize 0.01 -> 0.1" in h.rejection(stale).detail
        status = h.venue.status()
        assert status["periodic_rules_checks"]["errors"] == 0
        h.assert_matches_server()
    assert [(state, symbol) for state, symbol, _ in _halted_events(h)] == [
        ("halted", SYMBOL), ("trading", SYMBOL), ("halted", SYMBOL)
    ]  # fmt: skip
    assert [o["clientOrderId"] for o in server.orders(HMAC.api_key)] == [resting, "t3"]  # nothing refused was sent


def test_a_symbol_delisted_in_the_session_refuses_new_orders(server: BinanceTestServer) -> None:
    """Binance refuses exchangeInfo for a list naming a delisted symbol (-1121): the unfiltered exchangeInfo is
    asked for instead, which lacks it, and the symbol's orders are refused naming the delisting (before: no check,
    and the adapter's start-up would retry the refused exchangeInfo forever)."""
    with Harness(server, exchange_info_every=0.1) as h:
        server.faults.delist(SYMBOL)
        h.pump(lambda: h.venue.status()["periodic_rules_checks"]["done"] >= 2)
        assert h.venue.status()["halted_symbols"] == {SYMBOL: "BTCUSDT: Binance no longer lists it (delisted)"}
        refused = h.place(Side.BUY, d("0.01"), d("61000"))
        h.wait(refused, OrderStatus.REJECTED)
        assert "Binance no longer lists it" in h.rejection(refused).detail
        assert server.faults.counts["delisted"] == 1  # asked by name once; afterwards the unfiltered list
    again = VenueThread(h.settings, HMAC, h.instruments, lambda batch: None).start()  # a start with it delisted
    try:
        assert again.wait_ready(10.0), again.status()
        assert again.status()["halted_symbols"] == {SYMBOL: "BTCUSDT: Binance no longer lists it (delisted)"}
    finally:
        again.close()


def test_a_fill_while_the_reconciliation_runs_is_no_balance_difference(server: BinanceTestServer) -> None:
    """The reconciliation reads the account first and the trades after (here after waiting out a young order's
    recvWindow): a fill in between is among the trades but not in the account's balances. Its effect was counted all
    the same, and the fill said as money moved outside trading (a VENUE_BALANCE_DIFFERENCE of minus the fill, in
    BTC and in USDT) while the kernel and Binance agreed to the unit."""
    with Harness(server, recv_window_ms=3000, never_placed_margin_ms=200) as h:
        h.wait(h.place(Side.BUY, d("0.01"), h.ask), OrderStatus.FILLED)  # a trade booked: trades are read from it on
        resting = h.place(Side.BUY, d("0.01"), d("61835"))
        h.wait(resting, OrderStatus.ACCEPTED)
        h.fund_unsent("lost", Side.BUY, d("0.01"), d("60000"))  # young: the reconciliation waits its recvWindow
        view = kernel_view(h.kernel)
        asked = h.venue.status()["counts"].get("sent.order.status", 0)
        done: queue.Queue[Any] = queue.Queue()

        def reconcile() -> None:
            try:
                done.put(h.venue.reconcile(view=view))
            except Exception as exc:  # noqa: BLE001 - handed to the test thread
                done.put(exc)

        threading.Thread(target=reconcile, daemon=True).start()
        # the account has been read once the young order's first order.status has gone
        h.pump(lambda: h.venue.status()["counts"].get("sent.order.status", 0) > asked, timeout=10.0, quiet=0.0)
        publish(server, 150)  # the resting order fills while the reconciliation waits
        report = done.get(timeout=30.0)
        assert not isinstance(report, Exception), report
        assert report.summary["never_placed"] == ["lost"]
        assert resting in {r.client_order_id for r in report.reports if isinstance(r, VenueOrderFilled)}
        assert report.balance_differences == (), report.summary["balance_differences"]
        h.wait(resting, OrderStatus.FILLED)
        h.pump()
        h.assert_matches_server(skip=frozenset({"lost"}))


def test_a_fill_of_an_order_placed_after_the_kernels_view_is_no_balance_difference(server: BinanceTestServer) -> None:
    """The kernel's view is read before the reconciliation starts (the actor engine asks its OMS for it): an order
    placed and filled in between is not in it, nor its fill in its balances, while Binance's account has the fill. It
    was said as money moved outside trading (VENUE_BALANCE_DIFFERENCE of the fill) while the kernel and Binance
    agreed; as is an order still in flight when the reconciliation starts."""
    with Harness(server) as h:
        h.wait(h.place(Side.BUY, d("0.01"), h.ask), OrderStatus.FILLED)  # a trade booked: trades are read from it on
        view = kernel_view(h.kernel)
        late = h.place(Side.BUY, d("0.02"), h.ask)
        h.wait(late, OrderStatus.FILLED)
        report = h.venue.reconcile(view=view)
        assert report.balance_differences == (), report.summary["balance_differences"]
        assert report.reports == ()  # the order is the adapter's own, not the reconciliation's
        h.pump()
        h.assert_matches_server()


def test_an_open_order_binance_states_in_a_way_not_understood_does_not_keep_the_adapter_from_trading(
    server: BinanceTestServer,
) -> None:
    """One open order of the account (here placed outside VeloZ) stated with a status this client does not know (one
    Binance adds, say): the reconciliation could not be done at all, so the adapter never became ready and every
    order was refused for ever ('reconciling with the exchange'). The row is said (VENUE_BAD_REPORT, counted) and left
    out; the rest is reconciled and trading goes on."""
    server.trading_faults.place_outside(HMAC.api_key, SYMBOL, "BUY", "0.5", "50000", client_order_id="app-7")
    server.trading_faults.state_status(HMAC.api_key, "app-7", "PENDING_SOMETHING")
    with Harness(server) as h:
        errors = [e for e in h.events if isinstance(e, Error) and e.code == "VENUE_BAD_REPORT"]
        assert errors and "app-7" in errors[0].message and "PENDING_SOMETHING" in errors[0].message
        assert h.venue.status()["bad_input"].get("reconcile_row", 0) >= 1
        coid = h.place(Side.BUY, d("0.01"), h.ask)
        h.wait(coid, OrderStatus.FILLED)
        # an order of VeloZ's stated so: left out of the reconciliation (skipped), never taken as never placed
        resting = h.place(Side.BUY, d("0.01"), d("61000"))
        h.wait(resting, OrderStatus.ACCEPTED)
        server.trading_faults.state_status(HMAC.api_key, resting, "PENDING_SOMETHING")
        report = h.venue.reconcile(view=kernel_view(h.kernel))
        assert report.summary["skipped"] == [resting] and report.reports == ()
        h.pump()
        assert h.order(resting).status is OrderStatus.ACCEPTED


def test_a_balance_beyond_what_veloz_holds_is_left_out_not_a_start_that_never_ends(server: BinanceTestServer) -> None:
    """An account holding 25 billion units of a token (SHIB, BTTC, PEPE: a few dollars to a few hundred thousand):
    beyond the 10**10 units a VeloZ balance holds. The opening balances raised DataError (no live engine could start)
    and every reconciliation failed on it (the adapter never became ready, every order refused). The row is left out
    and said; the rest is read, compared and traded."""
    server.deposit(HMAC.api_key, "SHIB", "25000000000")
    opening = {b.asset: b.free + b.locked for b in fetch_account_balances(server.rest_url, HMAC)}
    assert opening == {asset: d(amount) for asset, amount in BALANCES.items()}
    with Harness(server) as h:
        [error] = [e for e in h.events if isinstance(e, Error) and e.code == "VENUE_BAD_REPORT"]
        assert "SHIB" in error.message and "too large" in error.message
        coid = h.place(Side.BUY, d("0.01"), h.ask)
        h.wait(coid, OrderStatus.FILLED)
        report = h.venue.reconcile(view=kernel_view(h.kernel))
        # the kernel equals Binance in every asset it can hold
        assert report.balance_differences == () and "SHIB" not in {b.asset for b in report.balances}


def test_fees_paid_in_bnb_keep_the_kernel_equal_to_binance_until_bnb_runs_short(server: BinanceTestServer) -> None:
    """Binance's "BNB burn": a BTCUSDT fill's commission is taken from the account's BNB (``commissionAsset`` BNB,
    converted at the BNB price of the trade's time, here 500 USDT). The kernel books it in BNB, BTC and USDT move as
    the fills say, and the kernel equals Binance to the unit; a reconciliation after a reconnect finds no balance
    difference. Once the BNB left is too little for a fill's commission, Binance takes it out of what the fill received
    (``commission_faq.md``: a BUY's BTC, a SELL's USDT) and the kernel follows."""
    server.deposit(HMAC.api_key, "BNB", "0.003")
    server.pay_fees_in(HMAC.api_key, "BNB", "500")
    holder: list[Harness] = []
    venue_kw = {"view": lambda: kernel_view(holder[0].kernel)}
    with Harness(server, start=False, venue_kw=venue_kw, balances={**BALANCES, "BNB": "0.003"}) as h:
        holder.append(h)
        h.start()
        h.wait(h.place(Side.BUY, d("0.01"), h.ask), OrderStatus.FILLED)
        h.wait(h.place(Side.SELL, d("0.01")), OrderStatus.FILLED)
        h.pump()
        trades = server.trades(HMAC.api_key)
        assert trades and {t["commissionAsset"] for t in trades} == {"BNB"}
        bnb_fees = sum(d(t["commission"]) for t in trades)
        assert 0 < bnb_fees < d("0.003")
        h.assert_matches_server()
        flows = sum((-1 if t["isBuyer"] else 1) * d(t["quoteQty"]) for t in trades)
        assert h.kernel.ledger.balances("main") == {
            "USDT": (d("1000000") + flows, 0), "BTC": (d("10"), 0), "BNB": (d("0.003") - bnb_fees, 0),
        }  # fmt: skip
        # a reconnect: the reconciliation that follows finds the kernel equal to Binance
        assert server.trading_faults.ws_server_shutdown(0.2) == 1
        h.pump(lambda: (h.venue.status()["reconcile"] or {}).get("count", 0) >= 2 and h.venue.ready, timeout=15.0)
        summary = h.venue.status()["reconcile"]
        assert summary["balances_compared"] and summary["balance_differences"] == {}, summary
        assert not [e for e in h.events if isinstance(e, Error) and "BALANCE" in e.code]
        # too little BNB left for the next fills' commissions: Binance takes them out of what they received
        bnb_left = server.balances(HMAC.api_key)["BNB"][0]
        h.wait(h.place(Side.BUY, d("0.01"), h.ask), OrderStatus.FILLED)
        h.wait(h.place(Side.SELL, d("0.005")), OrderStatus.FILLED)
        h.pump()
        new = server.trades(HMAC.api_key)[len(trades) :]
        assert {t["commissionAsset"] for t in new if t["isBuyer"]} == {"BTC"}
        assert {t["commissionAsset"] for t in new if not t["isBuyer"]} == {"USDT"}
        h.assert_matches_server()
        assert h.kernel.ledger.balances("main")["BNB"] == (bnb_left, 0)
        report = h.venue.reconcile(view=kernel_view(h.kernel))
        assert report.balance_differences == (), report.summary["balance_differences"]


def test_a_position_bought_with_its_fee_in_btc_can_be_sold_whole(server: BinanceTestServer) -> None:
    """Without BNB, Binance takes a BUY's commission out of the BTC received (``commission_faq.md``). The kernel's
    position counted the whole fill (0.01) while the account held 0.00999: a strategy that sells its position (every
    bar and L2 strategy exits so) was refused INSUFFICIENT_FUNDS when it started with no BTC, and never exited. Since
    journal semantics 5 the position is what the account holds."""
    server.deposit(HMAC.api_key, "BTC", "-10")
    server.pay_fees_in(HMAC.api_key, "BNB", "500")  # no BNB: the BUY's commission comes out of its BTC
    with Harness(server, balances={"USDT": "1000000"}) as h:
        h.wait(h.place(Side.BUY, d("0.01"), h.ask), OrderStatus.FILLED)
        h.pump()
        h.assert_matches_server()
        position = h.kernel.ledger.position("main", SYMBOL).qty
        assert position == d("0.00999") == sum(h.kernel.ledger.balances("main")["BTC"])  # what the account holds
        sell = h.place(Side.SELL, position)
        h.pump()
        assert h.order(sell).status is not OrderStatus.REJECTED, h.rejection(sell).detail
        h.wait(sell, OrderStatus.FILLED)
        h.pump()
        h.assert_matches_server()
        assert h.kernel.ledger.position("main", SYMBOL).qty == 0


def test_an_account_update_with_a_balance_beyond_what_veloz_holds_keeps_its_other_rows(
    server: BinanceTestServer,
) -> None:
    """An ``outboundAccountPosition`` names every asset a change touched; one of 25 billion SHIB (10**10 units or
    more: beyond a VeloZ balance) made the whole event unreadable, so the update of every other asset in it was lost.
    The row is left out and said; the others reach the consumer."""
    with Harness(server) as h:
        rows = [
            {"a": "USDT", "f": "999000.00000000", "l": "1000.00000000"},
            {"a": "SHIB", "f": "25000000000", "l": "0"},
        ]
        assert server.trading_faults.user_event(HMAC.api_key, {"e": "outboundAccountPosition", "u": 1, "B": rows})
        h.pump(lambda: any(isinstance(e, Error) for e in h.events))
        h.pump()
        updated = [m for m in h.account_messages if isinstance(m, VenueBalance) and m.ts == 1_000_000]  # "u": 1 ms
        assert [(m.asset, m.free, m.locked) for m in updated] == [("USDT", d("999000"), d("1000"))]
        [error] = [e for e in h.events if isinstance(e, Error)]
        assert error.code == "VENUE_BAD_REPORT" and "SHIB" in error.message and "too large" in error.message


def test_user_data_events_of_a_type_binance_adds_are_said_once_and_counted(server: BinanceTestServer) -> None:
    """An event type this client does not know (one Binance adds) said a VENUE_BAD_REPORT for every event: the
    events of a type are counted, and said once. The documented types it ignores are never said."""
    with Harness(server) as h:
        faults = server.trading_faults
        for _ in range(20):
            faults.user_event(HMAC.api_key, {"e": "somethingNew", "x": 1})
        faults.user_event(HMAC.api_key, {"e": "externalLockUpdate", "a": "BTC", "d": "1", "T": 1})
        faults.user_event(HMAC.api_key, {"e": "listStatus", "s": "BTCUSDT"})
        h.pump(lambda: h.venue.status()["counts"].get("unknown_events", 0) == 20)
        errors = [e for e in h.events if isinstance(e, Error)]
        assert [e.code for e in errors] == ["VENUE_BAD_REPORT"] and "'somethingNew'" in errors[0].message
        assert "bad_event" not in h.venue.status()["bad_input"]


def test_the_opening_balances_resync_the_clock_once_after_a_timestamp_refusal(server: BinanceTestServer) -> None:
    """A -1021 (timestamp outside recvWindow: the machine's clock moved since it was sampled) failed the opening
    balances, so a live engine did not start, where every request of the adapter resamples the clock and is sent once
    more. The same rule now: once more, then the refusal."""
    faults = server.trading_faults
    faults.timestamp_error(1)
    opening = {b.asset: b.free + b.locked for b in fetch_account_balances(server.rest_url, HMAC, clock_samples=1)}
    assert opening == {asset: d(amount) for asset, amount in BALANCES.items()}
    assert faults.counts["timestamp_error"] == 1
    faults.timestamp_error(2)
    with pytest.raises(VenueUnavailable, match="-1021"):
        fetch_account_balances(server.rest_url, HMAC, clock_samples=1)
    assert faults.counts["timestamp_error"] == 3
    with Harness(server) as h:  # a reconciliation's requests are the adapter's: each is sent once more so
        faults.timestamp_error(1)
        assert h.venue.reconcile(view=kernel_view(h.kernel)).balance_differences == ()
        assert faults.counts["timestamp_error"] == 4 and h.venue.status()["clock"]["resyncs"] == 1


def test_an_own_open_order_stated_unreadably_is_said_once_not_at_every_reconciliation(
    server: BinanceTestServer,
) -> None:
    """An open order of VeloZ's that Binance states in a way this client cannot read is skipped by every
    reconciliation (every 60 s, for as long as it is open). It was said twice at each (its open-orders row, then the
    order.status query sent for it, which cannot be read either): a VENUE_BAD_REPORT every 30 s for ever. Now its row
    is enough (it is open), and it is said once; each time is counted."""
    with Harness(server) as h:
        resting = h.place(Side.BUY, d("0.01"), d("61000"))
        h.wait(resting, OrderStatus.ACCEPTED)
        server.trading_faults.state_status(HMAC.api_key, resting, "PENDING_SOMETHING")
        queries = h.venue.status()["counts"].get("sent.order.status", 0)
        for _ in range(3):
            assert h.venue.reconcile(view=kernel_view(h.kernel)).summary["skipped"] == [resting]
        h.pump()
        said = [e for e in h.events if isinstance(e, Error) and resting in e.message]
        assert len(said) == 1 and "PENDING_SOMETHING" in said[0].message
        assert h.venue.status()["counts"].get("sent.order.status", 0) == queries  # its row says it is open
        assert h.venue.status()["bad_input"]["reconcile_row"] == 3
        assert h.order(resting).status is OrderStatus.ACCEPTED


def test_a_fill_or_kill_market_order_fills_all_of_it_within_the_protect_price_or_nothing(
    server: BinanceTestServer,
) -> None:
    """Binance has no fill-or-kill market order: a MARKET fills what it can and expires the rest. A market FOK goes as
    a LIMIT FOK at the kernel's protect price, so it fills whole at the book's prices up to that price, or nothing, as
    the simulated venues fill it (before: sent as a plain MARKET, it filled the part the book held and expired the
    rest, and bought beyond the protect price the kernel had reserved funds for)."""
    server.deposit(HMAC.api_key, "BTC", "300")  # more than the book holds up to the protect price, to sell
    with Harness(server, balances={"USDT": "1000000", "BTC": "310"}) as h:
        _, bids, _ = server.book(SYMBOL)
        reference = h.kernel.reference[SYMBOL]
        protect = h.kernel.risk.protect_price(Side.SELL, reference, h.instruments[SYMBOL])
        within = sum(qty for price, qty in bids if price >= protect)
        assert 0 < within < d("300")
        too_big = h.place(Side.SELL, within + d("0.001"), tif=TimeInForce.FOK)
        expired = h.wait(too_big, OrderStatus.EXPIRED)
        assert expired.filled == 0
        sent = [o for o in server.orders(HMAC.api_key) if o["clientOrderId"] == too_big]
        assert [(o["type"], o["timeInForce"], d(o["price"])) for o in sent] == [("LIMIT", "FOK", protect)]
        whole = h.place(Side.SELL, d("0.01"), tif=TimeInForce.FOK)
        assert h.wait(whole, OrderStatus.FILLED).filled == d("0.01")
        by_quote = h.place(Side.BUY, quote_qty=d("100"), tif=TimeInForce.FOK)
        h.wait(by_quote, OrderStatus.REJECTED)
        assert "quote amount cannot be fill-or-kill" in h.rejection(by_quote).detail
        h.pump()
        h.assert_matches_server()
