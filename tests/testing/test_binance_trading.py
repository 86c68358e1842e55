"""The trading side of the local Binance test server (:mod:`veloz_actors.testing.binance_trading`), over real sockets.

Every request goes through aiohttp's client, signed in the test with :mod:`veloz_actors.venues.binance.auth` (HMAC
and Ed25519 keys): the SIGNED REST endpoints and every error code they answer, the WebSocket API and its user data
stream, the matching engine (a limit order resting then filled as the server publishes trades through its price, a
market order walking the book, partial fills, IOC/FOK expiry, post-only rejection, cancels) with every balance exact
to the 1e-8 unit after each step, rate limits (429 then 418), and every trading fault switch as a client sees it.
Answers and events are also read back with the adapter's own parsers (:mod:`veloz_actors.venues.binance.user_data`).
The server serves the first 3000 lines of the 2024 BTCUSDT capture, paused. No Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import aiohttp
import orjson
import pytest
import yarl
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from veloz_actors.core.instruments import ceil_div
from veloz_actors.messages import (
    Liquidity,
    VenueBalance,
    VenueBalanceDelta,
    VenueOrderAccepted,
    VenueOrderCancelled,
    VenueOrderExpired,
    VenueOrderFilled,
)
from veloz_actors.testing import d
from veloz_actors.testing.binance_server import BinanceTestServer
from veloz_actors.venues.binance.auth import Credentials
from veloz_actors.venues.binance.user_data import (
    StreamTerminated,
    parse_account_balances,
    parse_cancel_response,
    parse_my_trades,
    parse_open_orders,
    parse_order_response,
    parse_order_state,
    parse_user_event,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
BTC = SHARED / "ticks_l2" / "binance_spot_btcusdt_20240808_ws.txt.gz"
EXCHANGE_INFO = SHARED / "binance-api" / "examples-nautilus" / "http_spot_market_exchange_info.json"
SCALE = 100_000_000
RATE = 100_000  # 0.001
HMAC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
HMAC = Credentials.from_hmac("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A", HMAC_SECRET)
_ED_PEM = ed25519.Ed25519PrivateKey.generate().private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
ED = Credentials.from_private_key("edKey7Gs1yN1vWpXbqoZ3dGiFs9vmpNdV7e3FxkABstzbezDKwObcijvk", _ED_PEM)
STRANGER = Credentials.from_hmac("unknownKey0000000000000000000000", "unknownSecret00000000000000000000")
BALANCES = {"USDT": "1000000", "BTC": "10"}
LIMIT_BUY = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}

_T = TypeVar("_T")


# ----------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trading") / "btcusdt_small.txt.gz"
    lines = gzip.decompress(BTC.read_bytes()).splitlines(keepends=True)[:3000]
    path.write_bytes(gzip.compress(b"".join(lines)))
    return path


@pytest.fixture
def server(capture: Path) -> Any:
    srv = BinanceTestServer([capture], speed=0, paused=True)
    srv.add_account(HMAC.api_key, hmac_secret=HMAC_SECRET, balances=BALANCES)
    srv.add_account(ED.api_key, ed25519_public_key_pem=ED.public_key_pem(), balances=BALANCES)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def run(server: BinanceTestServer, scenario: Callable[[Client], Awaitable[_T]]) -> _T:
    async def main() -> _T:
        async with aiohttp.ClientSession() as session:
            return await scenario(Client(session, server))

    return asyncio.run(main())


# ------------------------------------------------------------------------------------------------------ clients


class Answer(NamedTuple):
    status: int
    headers: Any
    body: Any


class Client:
    """A test's view of the server: signed REST calls and WebSocket API connections."""

    def __init__(self, session: aiohttp.ClientSession, server: BinanceTestServer) -> None:
        self.session = session
        self.server = server

    async def rest(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        creds: Credentials = HMAC,
        in_body: bool = False,
        timestamp: int | None = None,
        recv_window: int | None = None,
        api_key: str | None = None,
        tamper: Callable[[str], str] | None = None,
    ) -> Answer:
        text = creds.signed_params(
            params or {}, timestamp_ms=timestamp or self.server.server_time_ms(), recv_window_ms=recv_window
        )
        if tamper is not None:
            text = tamper(text)
        headers = {"X-MBX-APIKEY": creds.api_key if api_key is None else api_key}
        if not headers["X-MBX-APIKEY"]:
            del headers["X-MBX-APIKEY"]
        kwargs: dict[str, Any] = {"headers": headers}
        url = self.server.rest_url + path
        if in_body:
            kwargs["data"] = text.encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            url += "?" + text
        async with self.session.request(method, yarl.URL(url, encoded=True), **kwargs) as response:
            return Answer(response.status, response.headers, await response.json())

    async def get(self, path: str) -> Answer:
        async with self.session.get(self.server.rest_url + path) as response:
            return Answer(response.status, response.headers, await response.json())

    @asynccontextmanager
    async def ws_api(self, query: str = "") -> AsyncIterator[WsApi]:
        ws = await self.session.ws_connect(f"{self.server.stream_url}/ws-api/v3{query}")
        api = WsApi(ws, self.server)
        try:
            yield api
        finally:
            api.reader.cancel()
            await ws.close()


class WsApi:
    """One WebSocket API connection: requests by id, every frame in arrival order, the user data events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, server: BinanceTestServer) -> None:
        self.ws = ws
        self.server = server
        self.frames: list[dict[str, Any]] = []
        self.pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.arrived = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.n = 0
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            frame = orjson.loads(msg.data)
            self.frames.append(frame)
            waiter = self.pending.pop(frame.get("id"), None) if "event" not in frame else None
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
            self.arrived.set()
        self.close_code = self.ws.close_code
        self.closed.set()

    async def send(self, message: dict[str, Any]) -> dict[str, Any]:
        future = asyncio.get_running_loop().create_future()
        self.pending[message.get("id")] = future
        await self.ws.send_str(orjson.dumps(message).decode())
        return await asyncio.wait_for(future, 5.0)

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, creds: Credentials | None = HMAC, **extra: Any
    ) -> dict[str, Any]:
        self.n += 1
        if creds is not None:
            params = creds.ws_signed_params(params or {}, timestamp_ms=self.server.server_time_ms())
        message: dict[str, Any] = {"id": f"req-{self.n}", "method": method, **extra}
        if params is not None:
            message["params"] = params
        return await self.send(message)

    def events(self, kind: str | None = None, sub: int | None = None) -> list[dict[str, Any]]:
        return [
            f["event"]
            for f in self.frames
            if "event" in f
            and (kind is None or f["event"]["e"] == kind)
            and (sub is None or f.get("subscriptionId") == sub)
        ]

    async def wait(self, kind: str, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events(kind)) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(self.events(kind))} {kind} events of {n} after {timeout} s: {self.frames}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), remaining)
        return self.events(kind)

    async def quiet(self, seconds: float = 0.15) -> None:
        await asyncio.sleep(seconds)


async def publish(server: BinanceTestServer, n: int) -> None:
    assert await asyncio.to_thread(server.publish, n) == n


def fee(notional: int, rate: int = RATE) -> int:
    return ceil_div(notional * rate, SCALE)


def notional(price: int, qty: int) -> int:
    return price * qty // SCALE


def best(server: BinanceTestServer) -> tuple[tuple[int, int], ...]:
    """The asks of the served book, best first."""
    return server.book("BTCUSDT")[2]


# ------------------------------------------------------------------------------------------------- the engine


def test_a_limit_order_rests_then_fills_as_the_published_trades_go_through_its_price(server: Any) -> None:
    """HMAC key, REST: the BUY rests (funds locked: notional + the most commission), the capture's sell trades go
    below its price, it fills whole as maker at its price; balances exact at each step, the stream and the queries
    agree, and the adapter's parsers read them back."""

    async def scenario(c: Client) -> None:
        async with c.ws_api() as api:
            sub = await api.call("userDataStream.subscribe.signature")
            assert sub["status"] == 200 and sub["result"] == {"subscriptionId": 0}
            placed = await c.rest("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.01", "price": "61835.00"})
            assert placed.status == 200, placed.body
            body = placed.body
            assert body["status"] == "NEW" and body["fills"] == [] and body["executedQty"] == "0.00000000"
            assert placed.headers["X-MBX-ORDER-COUNT-10S"] == "1" and placed.headers["X-MBX-ORDER-COUNT-1D"] == "1"
            assert int(placed.headers["X-MBX-USED-WEIGHT-1M"]) >= 1
            cost = notional(d("61835"), d("0.01"))
            locked = cost + fee(cost)
            assert server.balances(HMAC.api_key) == {"USDT": (d("1000000") - locked, locked), "BTC": (d("10"), 0)}
            await api.wait("outboundAccountPosition", 1)
            new = api.events("executionReport")[0]
            assert (new["x"], new["X"], new["w"], new["t"], new["W"]) == ("NEW", "NEW", True, -1, new["O"])
            assert new["c"] == body["clientOrderId"] and new["i"] == body["orderId"]
            await publish(server, 150)  # trades at 61834.63 (event 95): through our price
            await api.wait("outboundAccountPosition", 2)
            trade = api.events("executionReport")[1]
            assert (trade["x"], trade["X"], trade["m"], trade["L"], trade["l"]) == (
                "TRADE",
                "FILLED",
                True,
                "61835.00000000",
                "0.01000000",
            )
            assert trade["n"] == "0.61835000" and trade["N"] == "USDT" and trade["t"] >= 1 and "W" not in trade
            paid = cost + fee(cost)
            assert server.balances(HMAC.api_key) == {
                "USDT": (d("1000000") - paid, 0),
                "BTC": (d("10") + d("0.01"), 0),
            }
            position = api.events("outboundAccountPosition")[-1]
            assert {row["a"]: (row["f"], row["l"]) for row in position["B"]} == {
                "BTC": ("10.01000000", "0.00000000"),
                "USDT": ("999381.03165000", "0.00000000"),
            }
            query = await c.rest("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": body["orderId"]})
            assert query.body["status"] == "FILLED" and query.body["executedQty"] == "0.01000000"
            assert query.body == server.orders(HMAC.api_key)[0]
            trades = await c.rest("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})
            assert trades.body == server.trades(HMAC.api_key)
            assert (await c.rest("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})).body == []
            # the adapter reads it all back
            reports = [r for f in api.frames if "event" in f for r in parse_user_event(f, "main")]
            assert [type(r) for r in reports] == [
                VenueOrderAccepted,
                VenueBalance,
                VenueBalance,
                VenueOrderFilled,
                VenueBalance,
                VenueBalance,
            ]
            filled = reports[3]
            assert isinstance(filled, VenueOrderFilled)
            assert (filled.price, filled.qty, filled.fee, filled.liquidity, filled.leaves_qty) == (
                d("61835"),
                d("0.01"),
                d("0.61835"),
                Liquidity.MAKER,
                0,
            )
            [row] = parse_my_trades(trades.body)
            assert row.trade_id == filled.trade_id and row.liquidity is Liquidity.MAKER
            assert parse_order_state(query.body).is_final

    run(server, scenario)


def test_a_market_order_walks_the_book_as_taker_over_the_websocket_api_with_an_ed25519_key(server: Any) -> None:
    async def scenario(c: Client) -> None:
        asks = best(server)
        qty = d("1.615")
        async with c.ws_api() as api:
            await api.call("userDataStream.subscribe.signature", creds=ED)
            answer = await api.call(
                "order.place", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1.615"}, creds=ED
            )
            assert answer["status"] == 200, answer
            result = answer["result"]
            expected = []
            left = qty
            for price, level in asks:
                take = min(level, left)
                expected.append((price, take))
                left -= take
                if not left:
                    break
            assert len(expected) >= 3  # it walked several levels
            got = [(d(f["price"]), d(f["qty"])) for f in result["fills"]]
            assert got == expected
            cost = sum(notional(p, q) for p, q in expected)
            commission = ceil_div(sum(notional(p, q) * RATE for p, q in expected), SCALE)
            assert sum(d(f["commission"]) for f in result["fills"]) == commission
            assert (result["status"], result["executedQty"], d(result["cummulativeQuoteQty"])) == (
                "FILLED",
                "1.61500000",
                cost,
            )
            assert server.balances(ED.api_key) == {
                "USDT": (d("1000000") - cost - commission, 0),
                "BTC": (d("10") + qty, 0),
            }
            rows = {r["rateLimitType"] + r["interval"]: r["count"] for r in answer["rateLimits"]}
            assert rows["ORDERSSECOND"] == 1 and rows["ORDERSDAY"] == 1 and rows["REQUEST_WEIGHTMINUTE"] >= 1
            reports = await api.wait("executionReport", 1 + len(expected))
            assert [r["x"] for r in reports] == ["NEW"] + ["TRADE"] * len(expected)
            assert [r["X"] for r in reports[1:]] == ["PARTIALLY_FILLED"] * (len(expected) - 1) + ["FILLED"]
            assert all(r["m"] is False and r["w"] is False for r in reports)
            assert [r["t"] for r in reports[1:]] == [f["tradeId"] for f in result["fills"]]
            # on this connection, the answer came before the order's own events
            answer_at = next(i for i, f in enumerate(api.frames) if f.get("id") == answer["id"])
            first_report = next(i for i, f in enumerate(api.frames) if f.get("event", {}).get("e") == "executionReport")
            assert answer_at < first_report
            parsed = parse_order_response(result, "main")
            assert [type(r) for r in parsed] == [VenueOrderAccepted] + [VenueOrderFilled] * len(expected)
            last = parsed[-1]
            assert isinstance(last, VenueOrderFilled) and last.leaves_qty == 0

    run(server, scenario)


def test_market_orders_by_quote_amount(server: Any) -> None:
    """A BUY spends at most quoteOrderQty, commission included, in whole steps; a SELL sells the most whole steps
    whose proceeds stay within it."""

    async def scenario(c: Client) -> None:
        market = {"symbol": "BTCUSDT", "type": "MARKET"}
        buy = await c.rest("POST", "/api/v3/order", {**market, "side": "BUY", "quoteOrderQty": "1000"})
        body = buy.body
        assert body["status"] == "FILLED" and body["origQuoteOrderQty"] == "1000.00000000"
        spent = d(body["cummulativeQuoteQty"]) + sum(d(f["commission"]) for f in body["fills"])
        price = d(body["fills"][0]["price"])
        assert spent <= d("1000") < spent + notional(price, d("0.00001")) * 2
        assert body["origQty"] == body["executedQty"]
        bids = server.book("BTCUSDT")[1]
        sell = await c.rest("POST", "/api/v3/order", {**market, "side": "SELL", "quoteOrderQty": "500"})
        sold = sell.body
        assert sold["status"] == "FILLED"
        proceeds = d(sold["cummulativeQuoteQty"])
        assert proceeds <= d("500") < proceeds + notional(bids[0][0], d("0.00001"))
        commission = sum(d(f["commission"]) for f in sold["fills"])
        assert server.balances(HMAC.api_key) == {
            "USDT": (d("1000000") - spent + proceeds - commission, 0),
            "BTC": (d("10") + d(body["executedQty"]) - d(sold["executedQty"]), 0),
        }

    run(server, scenario)


def test_a_partial_fill_rests_then_is_cancelled_and_its_funds_released(server: Any) -> None:
    async def scenario(c: Client) -> None:
        ask, ask_qty = best(server)[0]
        price = f"{ask // SCALE}.{ask % SCALE:08d}"
        qty = ask_qty + d("0.5")
        async with c.ws_api() as api:
            await api.call("userDataStream.subscribe.signature")
            placed = await c.rest(
                "POST",
                "/api/v3/order",
                {**LIMIT_BUY, "quantity": _text(qty), "price": price, "newClientOrderId": "partial-1"},
            )
            body = placed.body
            assert body["status"] == "PARTIALLY_FILLED" and body["clientOrderId"] == "partial-1"
            assert [(d(f["price"]), d(f["qty"])) for f in body["fills"]] == [(ask, ask_qty)]
            taken = notional(ask, ask_qty)
            reserve = notional(ask, qty) + fee(notional(ask, qty))
            paid = taken + fee(taken)
            assert server.balances(HMAC.api_key) == {
                "USDT": (d("1000000") - reserve, reserve - paid),
                "BTC": (d("10") + ask_qty, 0),
            }
            [open_row] = (await c.rest("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})).body
            assert open_row["status"] == "PARTIALLY_FILLED" and open_row["executedQty"] == _text(ask_qty)
            assert parse_open_orders([open_row])[0].executed_qty == ask_qty
            cancel = await c.rest(
                "DELETE",
                "/api/v3/order",
                {"symbol": "BTCUSDT", "origClientOrderId": "partial-1", "newClientOrderId": "cancel-1"},
            )
            assert cancel.status == 200, cancel.body
            assert (cancel.body["status"], cancel.body["origClientOrderId"], cancel.body["clientOrderId"]) == (
                "CANCELED",
                "partial-1",
                "cancel-1",
            )
            assert parse_cancel_response(cancel.body, "main").client_order_id == "partial-1"
            assert server.balances(HMAC.api_key) == {"USDT": (d("1000000") - paid, 0), "BTC": (d("10") + ask_qty, 0)}
            reports = await api.wait("executionReport", 3)
            assert [r["x"] for r in reports] == ["NEW", "TRADE", "CANCELED"]
            assert reports[1]["X"] == "PARTIALLY_FILLED" and reports[1]["w"] is True and "W" in reports[1]
            assert (reports[2]["c"], reports[2]["C"], reports[2]["X"]) == ("cancel-1", "partial-1", "CANCELED")
            [cancelled] = parse_user_event(
                next(f for f in api.frames if f.get("event", {}).get("x") == "CANCELED"), "main"
            )
            assert isinstance(cancelled, VenueOrderCancelled) and cancelled.client_order_id == "partial-1"
            again = await c.rest("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "partial-1"})
            assert (again.status, again.body) == (400, {"code": -2011, "msg": "Unknown order sent."})

    run(server, scenario)


def test_limit_maker_is_refused_when_it_would_take_and_rests_when_it_would_not(server: Any) -> None:
    async def scenario(c: Client) -> None:
        ask = best(server)[0][0]
        maker = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER", "quantity": "0.01"}
        taking = await c.rest("POST", "/api/v3/order", {**maker, "price": _text(ask)})
        assert (taking.status, taking.body) == (400, {"code": -2010, "msg": "Order would immediately match and take."})
        assert server.orders(HMAC.api_key) == []
        assert server.balances(HMAC.api_key)["USDT"] == (d("1000000"), 0)
        resting = await c.rest("POST", "/api/v3/order", {**maker, "price": _text(ask - d("1"))})
        assert resting.status == 200 and set(resting.body) == {  # LIMIT_MAKER answers ACK by default
            "symbol",
            "orderId",
            "orderListId",
            "clientOrderId",
            "transactTime",
        }
        assert server.orders(HMAC.api_key)[0]["status"] == "NEW"
        tif = await c.rest("POST", "/api/v3/order", {**maker, "price": "1000.00", "timeInForce": "GTC"})
        assert tif.body == {"code": -1106, "msg": "Parameter 'timeInForce' sent when not required."}

    run(server, scenario)


def test_ioc_and_fok_orders_expire_with_their_reasons(server: Any) -> None:
    async def scenario(c: Client) -> None:
        ask, ask_qty = best(server)[0]
        async with c.ws_api() as api:
            await api.call("userDataStream.subscribe.signature")
            ioc = await c.rest(
                "POST",
                "/api/v3/order",
                {**LIMIT_BUY, "timeInForce": "IOC", "quantity": _text(ask_qty + d("1")), "price": _text(ask)},
            )
            assert (ioc.body["status"], ioc.body["expiryReason"]) == ("EXPIRED", "UNFILLED_IOC_QUANTITY_EXPIRED")
            assert ioc.body["executedQty"] == _text(ask_qty)
            fok = await c.rest(
                "POST",
                "/api/v3/order",
                {**LIMIT_BUY, "timeInForce": "FOK", "quantity": _text(ask_qty + d("1")), "price": _text(ask)},
            )
            assert (fok.body["status"], fok.body["expiryReason"], fok.body["fills"]) == (
                "EXPIRED",
                "UNFILLED_FOK_ORDER_EXPIRED",
                [],
            )
            paid = notional(ask, ask_qty) + fee(notional(ask, ask_qty))
            assert server.balances(HMAC.api_key) == {"USDT": (d("1000000") - paid, 0), "BTC": (d("10") + ask_qty, 0)}
            reports = await api.wait("executionReport", 5)
            assert [(r["x"], r["X"], r.get("eR")) for r in reports] == [
                ("NEW", "NEW", None),
                ("TRADE", "PARTIALLY_FILLED", None),
                ("EXPIRED", "EXPIRED", "UNFILLED_IOC_QUANTITY_EXPIRED"),
                ("NEW", "NEW", None),
                ("EXPIRED", "EXPIRED", "UNFILLED_FOK_ORDER_EXPIRED"),
            ]
            expired = [r for f in api.frames if "event" in f for r in parse_user_event(f, "main")]
            reasons = [str(r.reason) for r in expired if isinstance(r, VenueOrderExpired)]
            assert reasons == ["IOC_UNFILLED", "FOK_NOT_FILLABLE"]
            parsed = parse_order_response(ioc.body, "main")
            assert isinstance(parsed[-1], VenueOrderExpired)
            below = {**LIMIT_BUY, "quantity": "0.01", "price": "60000"}  # crosses nothing: nothing fills
            for tif, reason in (("IOC", "UNFILLED_IOC_QUANTITY_EXPIRED"), ("FOK", "UNFILLED_FOK_ORDER_EXPIRED")):
                answer = await c.rest("POST", "/api/v3/order", {**below, "timeInForce": tif})
                assert (answer.body["status"], answer.body["expiryReason"], answer.body["fills"]) == (
                    "EXPIRED",
                    reason,
                    [],
                )
            assert server.balances(HMAC.api_key)["USDT"] == (d("1000000") - paid, 0)

    run(server, scenario)


def test_answer_types_ack_result_full(server: Any) -> None:
    async def scenario(c: Client) -> None:
        base = {**LIMIT_BUY, "quantity": "0.001", "price": "60000.00"}
        ack = await c.rest("POST", "/api/v3/order", {**base, "newOrderRespType": "ACK"})
        result = await c.rest("POST", "/api/v3/order", {**base, "newOrderRespType": "RESULT"})
        full = await c.rest("POST", "/api/v3/order", {**base, "newOrderRespType": "FULL"})
        assert set(ack.body) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
        assert set(result.body) == set(ack.body) | {
            "price",
            "origQty",
            "executedQty",
            "origQuoteOrderQty",
            "cummulativeQuoteQty",
            "status",
            "timeInForce",
            "type",
            "side",
            "workingTime",
            "selfTradePreventionMode",
        }
        assert set(full.body) == set(result.body) | {"fills"}
        assert [a.body["orderId"] for a in (ack, result, full)] == [1, 2, 3]
        bad = await c.rest("POST", "/api/v3/order", {**base, "newOrderRespType": "ALL"})
        assert bad.body["code"] == -1130

    run(server, scenario)


def test_order_refusals_answer_binances_codes_and_messages(server: Any) -> None:
    async def scenario(c: Client) -> None:
        async def place(**params: str) -> Answer:
            return await c.rest("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.01", "price": "60000", **params})

        cases: list[tuple[dict[str, str], int, str]] = [
            ({"price": "60000.001"}, -1013, "Filter failure: PRICE_FILTER"),
            ({"price": "0.001"}, -1013, "Filter failure: PRICE_FILTER"),
            ({"quantity": "0.000001"}, -1013, "Filter failure: LOT_SIZE"),
            ({"quantity": "0.000015"}, -1013, "Filter failure: LOT_SIZE"),
            ({"quantity": "0.0001"}, -1013, "Filter failure: MIN_NOTIONAL"),
            ({"quantity": "100"}, -2010, "Account has insufficient balance for requested action."),
            ({"symbol": "NOPEUSDT"}, -1121, "Invalid symbol."),
            (
                {"symbol": "btc usdt"},
                -1100,
                "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'.",
            ),  # fmt: skip
            ({"side": "HOLD"}, -1117, "Invalid side."),
            ({"type": "STOP_LOSS"}, -1116, "Invalid orderType."),
            ({"timeInForce": "GTD"}, -1115, "Invalid timeInForce."),
            (
                {"quantity": "1.2.3"},
                -1100,
                "Illegal characters found in parameter 'quantity'; legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            ),  # fmt: skip
            ({"quantity": "0.000000001"}, -1111, "Parameter 'quantity' has too much precision."),
            (
                {"newClientOrderId": "bad id!"},
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            ),  # fmt: skip
        ]
        for params, code, msg in cases:
            answer = await place(**params)
            assert (answer.status, answer.body) == (400, {"code": code, "msg": msg}), params
        missing = await c.rest("POST", "/api/v3/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT"})
        assert missing.body == {
            "code": -1102,
            "msg": "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
        }
        market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"}
        assert (await c.rest("POST", "/api/v3/order", {**market, "quantity": "200"})).body == {
            "code": -1013,
            "msg": "Filter failure: MARKET_LOT_SIZE",
        }
        assert (await c.rest("POST", "/api/v3/order", market)).body["code"] == -1102
        assert (await c.rest("POST", "/api/v3/order", {**market, "quantity": "1", "price": "1"})).body["code"] == -1106
        first = await place(newClientOrderId="dup-1")
        assert first.status == 200
        assert (await place(newClientOrderId="dup-1")).body == {"code": -2010, "msg": "Duplicate order sent."}
        assert server.orders(HMAC.api_key)[0]["clientOrderId"] == "dup-1" and len(server.orders(HMAC.api_key)) == 1
        unknown = await c.rest("GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": 999})
        assert (unknown.status, unknown.body) == (400, {"code": -2013, "msg": "Order does not exist."})
        by_id = await c.rest("GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "nope"})
        assert by_id.body["code"] == -2013
        mismatch = await c.rest(
            "GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": 1, "origClientOrderId": "other"}
        )
        assert mismatch.body["code"] == -2013
        neither = await c.rest("GET", "/api/v3/order", {"symbol": "BTCUSDT"})
        assert neither.body == {
            "code": -1102,
            "msg": "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
        }
        cancel = await c.rest("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": 999})
        assert cancel.body == {"code": -2011, "msg": "Unknown order sent."}
        restricted = await c.rest(
            "DELETE",
            "/api/v3/order",
            {"symbol": "BTCUSDT", "orderId": 1, "cancelRestrictions": "ONLY_PARTIALLY_FILLED"},
        )
        assert restricted.body == {"code": -2011, "msg": "Order was not canceled due to cancel restrictions."}
        # another account cannot see or cancel it
        foreign = await c.rest("DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": 1}, creds=ED)
        assert foreign.body["code"] == -2011
        assert server.balances(ED.api_key) == {"USDT": (d("1000000"), 0), "BTC": (d("10"), 0)}

    run(server, scenario)


def test_notional_and_max_num_orders_filters_of_a_newer_exchange_info(capture: Path, tmp_path: Path) -> None:
    """An exchangeInfo with Binance's current NOTIONAL filter (min and max, both applied to market orders) and a
    small MAX_NUM_ORDERS: the server applies what it serves."""
    info = orjson.loads(EXCHANGE_INFO.read_bytes())
    btc = next(entry for entry in info["symbols"] if entry["symbol"] == "BTCUSDT")
    filters = [f for f in btc["filters"] if f["filterType"] not in ("MIN_NOTIONAL", "MAX_NUM_ORDERS")]
    filters.append(
        {
            "filterType": "NOTIONAL",
            "minNotional": "10.00000000",
            "applyMinToMarket": True,
            "maxNotional": "1000.00000000",
            "applyMaxToMarket": True,
            "avgPriceMins": 5,
        }
    )
    filters.append({"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 2})
    btc["filters"] = filters
    path = tmp_path / "exchange_info.json"
    path.write_bytes(orjson.dumps(info))
    srv = BinanceTestServer([capture], speed=0, paused=True, exchange_info=path)
    srv.add_account(HMAC.api_key, hmac_secret=HMAC_SECRET, balances=BALANCES)

    async def scenario(c: Client) -> None:
        notional_failure = {"code": -1013, "msg": "Filter failure: NOTIONAL"}
        for quantity in ("0.02", "0.0001"):  # 1200 and 6 USDT
            answer = await c.rest("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": quantity, "price": "60000"})
            assert answer.body == notional_failure, quantity
        market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"}
        assert (await c.rest("POST", "/api/v3/order", {**market, "quantity": "0.02"})).body == notional_failure
        assert (await c.rest("POST", "/api/v3/order", {**market, "quoteOrderQty": "2000"})).body == notional_failure
        for _ in range(2):
            placed = await c.rest("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.01", "price": "60000"})
            assert placed.status == 200, placed.body
        third = await c.rest("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.01", "price": "60000"})
        assert third.body == {"code": -1013, "msg": "Filter failure: MAX_NUM_ORDERS"}

    with srv:
        run(srv, scenario)


def test_signed_request_security(server: Any) -> None:
    """Key, signature (HMAC and Ed25519, in the query or the form body) and timing, as Binance checks them."""

    async def scenario(c: Client) -> None:
        path = "/api/v3/account"
        assert (await c.rest("GET", path)).status == 200
        assert (await c.rest("GET", path, creds=ED)).status == 200
        assert (await c.rest("GET", path, in_body=True)).status == 200
        none = await c.rest("GET", path, api_key="")
        assert (none.status, none.body) == (401, {"code": -2014, "msg": "API-key format invalid."})
        stranger = await c.rest("GET", path, creds=STRANGER)
        assert (stranger.status, stranger.body) == (
            401,
            {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
        )
        wrong_key = await c.rest("GET", path, creds=HMAC, api_key=ED.api_key)  # HMAC-signed, sent as the Ed25519 key
        assert (wrong_key.status, wrong_key.body) == (
            400,
            {"code": -1022, "msg": "Signature for this request is not valid."},
        )
        tampered = await c.rest(
            "POST",
            "/api/v3/order",
            {**LIMIT_BUY, "quantity": "0.01", "price": "60000"},
            tamper=lambda text: text.replace("quantity=0.01", "quantity=0.02"),
        )
        assert tampered.body["code"] == -1022 and server.orders(HMAC.api_key) == []
        ed_tampered = await c.rest(
            "GET", path, creds=ED, tamper=lambda text: text.replace("timestamp=", "omitZeroBalances=true&timestamp=")
        )
        assert ed_tampered.body["code"] == -1022
        unsigned = await c.rest("GET", path, tamper=lambda text: text.partition("&signature=")[0])
        assert unsigned.body == {
            "code": -1102,
            "msg": "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
        }
        now = server.server_time_ms()
        old = await c.rest("GET", path, timestamp=now - 6000)
        assert (old.status, old.body) == (
            400,
            {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."},
        )
        assert (await c.rest("GET", path, timestamp=now - 6000, recv_window=10_000)).status == 200
        ahead = await c.rest("GET", path, timestamp=now + 5000)
        assert ahead.body == {"code": -1021, "msg": "Timestamp for this request was 1000ms ahead of the server's time."}
        micro = await c.rest("GET", path, timestamp=server.server_time_ms() * 1000)
        assert micro.status == 200
        too_wide = await c.rest("GET", path, tamper=lambda text: "recvWindow=60001&" + text)
        assert too_wide.body == {"code": -1130, "msg": "Data sent for parameter 'recvWindow' is not valid."}

    run(server, scenario)


def test_order_test_validates_without_placing(server: Any) -> None:
    async def scenario(c: Client) -> None:
        params = {**LIMIT_BUY, "quantity": "0.01", "price": "60000"}
        plain = await c.rest("POST", "/api/v3/order/test", params)
        assert (plain.status, plain.body) == (200, {})
        rates = await c.rest("POST", "/api/v3/order/test", {**params, "computeCommissionRates": "true"})
        assert rates.body["standardCommissionForOrder"] == {"maker": "0.00100000", "taker": "0.00100000"}
        bad = await c.rest("POST", "/api/v3/order/test", {**params, "price": "60000.001"})
        assert bad.body == {"code": -1013, "msg": "Filter failure: PRICE_FILTER"}
        assert server.orders(HMAC.api_key) == [] and server.balances(HMAC.api_key)["USDT"] == (d("1000000"), 0)
        assert int(rates.headers["X-MBX-USED-WEIGHT-1M"]) - int(plain.headers["X-MBX-USED-WEIGHT-1M"]) == 20

    run(server, scenario)


def test_open_orders_cancel_all_my_trades_and_account(server: Any) -> None:
    async def scenario(c: Client) -> None:
        for i, price in enumerate(("60000", "60001", "60002")):
            placed = await c.rest(
                "POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.01", "price": price, "newClientOrderId": f"o{i}"}
            )
            assert placed.status == 200
        market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"}
        for _ in range(3):
            assert (await c.rest("POST", "/api/v3/order", {**market, "quantity": "0.001"})).status == 200
        listed = await c.rest("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
        assert [o["clientOrderId"] for o in listed.body] == ["o0", "o1", "o2"]
        every = await c.rest("GET", "/api/v3/openOrders")
        assert every.body == listed.body
        assert int(every.headers["X-MBX-USED-WEIGHT-1M"]) - int(listed.headers["X-MBX-USED-WEIGHT-1M"]) == 80
        trades = (await c.rest("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})).body
        assert len(trades) == 3 and [t["orderId"] for t in trades] == [4, 5, 6]
        ids = [t["id"] for t in trades]
        assert (await c.rest("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", "fromId": ids[1]})).body == trades[1:]
        assert (await c.rest("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", "limit": 2})).body == trades[1:]
        assert (await c.rest("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT", "orderId": 5})).body == [trades[1]]
        window = {"symbol": "BTCUSDT", "startTime": trades[0]["time"], "endTime": trades[-1]["time"]}
        assert (await c.rest("GET", "/api/v3/myTrades", window)).body == trades
        wide = await c.rest("GET", "/api/v3/myTrades", {**window, "startTime": trades[0]["time"] - 90_000_000})
        assert wide.body["code"] == -1127
        combo = await c.rest("GET", "/api/v3/myTrades", {**window, "fromId": 1})
        assert combo.body["code"] == -1128
        cancelled = await c.rest("DELETE", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
        assert [(o["origClientOrderId"], o["status"]) for o in cancelled.body] == [
            ("o0", "CANCELED"),
            ("o1", "CANCELED"),
            ("o2", "CANCELED"),
        ]
        assert len({o["clientOrderId"] for o in cancelled.body}) == 1
        nothing = await c.rest("DELETE", "/api/v3/openOrders", {"symbol": "BTCUSDT"})
        assert nothing.body == {"code": -2011, "msg": "Unknown order sent."}
        account = (await c.rest("GET", "/api/v3/account")).body
        spent = sum(d(t["quoteQty"]) + d(t["commission"]) for t in trades)
        balances = {b["asset"]: (d(b["free"]), d(b["locked"])) for b in account["balances"]}
        assert balances == {"USDT": (d("1000000") - spent, 0), "BTC": (d("10.003"), 0)}
        assert balances == server.balances(HMAC.api_key)
        assert (account["makerCommission"], account["commissionRates"]["taker"]) == (10, "0.00100000")
        assert [b.free for b in parse_account_balances(account, "main")] == [d("1000000") - spent, d("10.003")]
        server.deposit(HMAC.api_key, "ETH", "0")
        omitted = (await c.rest("GET", "/api/v3/account", {"omitZeroBalances": "true"})).body
        assert [b["asset"] for b in omitted["balances"]] == ["USDT", "BTC"]

    run(server, scenario)


def test_commission_rates_per_account(server: Any) -> None:
    server.add_account("zeroFeeKey000000000000000000", hmac_secret="zeroFeeSecret0000000000", maker_rate="0",
                       taker_rate="0.00075")  # fmt: skip
    zero = Credentials.from_hmac("zeroFeeKey000000000000000000", "zeroFeeSecret0000000000")

    async def scenario(c: Client) -> None:
        answer = await c.rest(
            "POST",
            "/api/v3/order",
            {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.1"},
            creds=zero,
        )
        [fill] = answer.body["fills"]
        proceeds = notional(d(fill["price"]), d("0.1"))
        assert d(fill["commission"]) == fee(proceeds, 75_000)
        assert server.balances(zero.api_key) == {"USDT": (d("100000") + proceeds - fee(proceeds, 75_000), 0),
                                                 "BTC": (d("0.9"), 0)}  # fmt: skip
        account = (await c.rest("GET", "/api/v3/account", creds=zero)).body
        assert account["commissionRates"]["maker"] == "0.00000000" and account["takerCommission"] == 7

    run(server, scenario)


def test_fees_in_bnb_are_converted_at_the_set_price_and_taken_from_the_received_amount_when_bnb_runs_short(
    server: Any,
) -> None:
    """``pay_fees_in``: each fill's commission (what it costs in USDT) is converted at the BNB price the test set,
    rounded up, and taken from the free BNB (``commissionAsset`` BNB in the answer, myTrades and the execution
    report); a fill whose commission the BNB left cannot pay has it taken out of what it received (a BUY: BTC, at
    the fill's price)."""
    with pytest.raises(ValueError, match="positive"):
        server.pay_fees_in(HMAC.api_key, "BNB", "0")
    with pytest.raises(ValueError, match="not a decimal"):
        server.pay_fees_in(HMAC.api_key, "BNB", "abc")
    server.deposit(HMAC.api_key, "BNB", "0.002")
    server.pay_fees_in(HMAC.api_key, "BNB", "512.5")
    price = d("512.5")
    [(ask, _), *_] = best(server)

    async def scenario(c: Client) -> None:
        async with c.ws_api() as api:
            await api.call("userDataStream.subscribe.signature")
            order = {**LIMIT_BUY, "timeInForce": "IOC", "price": _text(ask), "quantity": "0.01"}
            first = (await c.rest("POST", "/api/v3/order", order)).body
            [fill] = first["fills"]
            cost = notional(ask, d("0.01"))
            in_bnb = ceil_div(fee(cost) * SCALE, price)
            assert (fill["commissionAsset"], d(fill["commission"])) == ("BNB", in_bnb)
            assert server.balances(HMAC.api_key) == {
                "USDT": (d("1000000") - cost, 0), "BTC": (d("10.01"), 0), "BNB": (d("0.002") - in_bnb, 0),
            }  # fmt: skip
            [report] = [r for r in await api.wait("executionReport", 2) if r["x"] == "TRADE"]
            assert (report["N"], d(report["n"])) == ("BNB", in_bnb)
            assert d("0.002") - in_bnb < in_bnb  # the next fill's commission is more than the BNB left
            second = (await c.rest("POST", "/api/v3/order", order)).body
            [fill] = second["fills"]
            in_btc = ceil_div(fee(cost) * SCALE, ask)
            assert (fill["commissionAsset"], d(fill["commission"])) == ("BTC", in_btc)
            assert server.balances(HMAC.api_key) == {
                "USDT": (d("1000000") - 2 * cost, 0), "BTC": (d("10.02") - in_btc, 0),
                "BNB": (d("0.002") - in_bnb, 0),
            }  # fmt: skip
            trades = (await c.rest("GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})).body
            assert [t["commissionAsset"] for t in trades] == ["BNB", "BTC"]
        server.pay_fees_in(HMAC.api_key, None)
        third = (await c.rest("POST", "/api/v3/order", order)).body
        assert third["fills"][0]["commissionAsset"] == "USDT"

    run(server, scenario)


# --------------------------------------------------------------------------------------------- WebSocket API


def test_websocket_api_methods(server: Any) -> None:
    async def scenario(c: Client) -> None:
        async with c.ws_api() as api:
            assert (await api.call("ping", creds=None))["result"] == {}
            clock = await api.call("time", creds=None)
            assert abs(clock["result"]["serverTime"] - server.server_time_ms()) < 1000
            assert clock["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
            quiet = await api.call("time", {"returnRateLimits": False}, creds=None)
            assert "rateLimits" not in quiet
            versioned = await api.call("v3/ping", creds=None)
            assert versioned["status"] == 200
            unknown = await api.call("order.teleport", creds=None)
            assert (unknown["status"], unknown["error"]["code"]) == (400, -1020)
            placed = await api.call(
                "order.place",
                {
                    **LIMIT_BUY,
                    "quantity": "0.01",
                    "price": "60000",
                    "newClientOrderId": "ws-1",
                    "newOrderRespType": "ACK",
                },
            )
            assert placed["result"]["clientOrderId"] == "ws-1"
            status = await api.call("order.status", {"symbol": "BTCUSDT", "origClientOrderId": "ws-1"})
            assert status["result"]["status"] == "NEW" and status["result"] == server.orders(HMAC.api_key)[0]
            opened = await api.call("openOrders.status", {"symbol": "BTCUSDT"})
            assert [o["clientOrderId"] for o in opened["result"]] == ["ws-1"]
            tested = await api.call("order.test", {**LIMIT_BUY, "quantity": "0.01", "price": "60000"})
            assert tested["result"] == {}
            cancelled = await api.call("order.cancel", {"symbol": "BTCUSDT", "orderId": placed["result"]["orderId"]})
            assert cancelled["result"]["status"] == "CANCELED"
            missing = await api.call("order.status", {"symbol": "BTCUSDT", "orderId": 42})
            assert (missing["status"], missing["error"]) == (400, {"code": -2013, "msg": "Order does not exist."})
            taken = await api.call(
                "order.place", {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.01"}
            )
            assert taken["result"]["status"] == "FILLED"
            trades = await api.call("myTrades", {"symbol": "BTCUSDT"})
            assert trades["result"] == server.trades(HMAC.api_key)
            account = await api.call("account.status", {"omitZeroBalances": True})
            assert account["result"]["balances"] == (await c.rest("GET", "/api/v3/account")).body["balances"]
            placed_again = await api.call("order.place", {**LIMIT_BUY, "quantity": "0.01", "price": "60000"})
            assert placed_again["status"] == 200
            all_cancelled = await api.call("openOrders.cancelAll", {"symbol": "BTCUSDT"})
            assert [o["status"] for o in all_cancelled["result"]] == ["CANCELED"]
            # security over the WebSocket API
            stranger = await api.call("account.status", creds=STRANGER)
            assert (stranger["status"], stranger["error"]["code"]) == (401, -2015)
            forged = STRANGER.ws_signed_params({}, timestamp_ms=server.server_time_ms())
            forged["apiKey"] = HMAC.api_key
            bad_signature = await api.send({"id": "forged", "method": "account.status", "params": forged})
            assert bad_signature["error"] == {"code": -1022, "msg": "Signature for this request is not valid."}
            stale = HMAC.ws_signed_params({}, timestamp_ms=server.server_time_ms() - 10_000)
            old = await api.send({"id": 7, "method": "account.status", "params": stale})
            assert (old["id"], old["error"]["code"]) == (7, -1021)
            unsigned = await api.send({"id": None, "method": "account.status", "params": {"apiKey": HMAC.api_key}})
            assert unsigned["id"] is None and unsigned["error"]["code"] == -1102
            await api.ws.send_str("{not json")
            await asyncio.sleep(0.1)
            assert api.frames[-1]["status"] == 400 and api.frames[-1]["error"]["code"] == -1135
        async with c.ws_api("?returnRateLimits=false") as api:
            assert "rateLimits" not in await api.call("ping", creds=None)
            assert "rateLimits" in await api.call("ping", {"returnRateLimits": True}, creds=None)

    run(server, scenario)


def test_websocket_api_pings(capture: Path) -> None:
    async def scenario(c: Client) -> None:
        ws = await c.session.ws_connect(f"{c.server.stream_url}/ws-api/v3", autoping=False)
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.PING
        await ws.pong(msg.data)
        silent = await ws.receive(timeout=5)  # the next ping; not answered, the server closes the connection
        assert silent.type is aiohttp.WSMsgType.PING
        closed = await ws.receive(timeout=5)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        await ws.close()

    with BinanceTestServer([capture], speed=0, paused=True, ping_interval=0.2) as srv:
        run(srv, scenario)


def test_user_data_for_both_key_types_on_one_connection(server: Any) -> None:
    async def scenario(c: Client) -> None:
        async with c.ws_api() as api:
            h = await api.call("userDataStream.subscribe.signature", creds=HMAC)
            e = await api.call("userDataStream.subscribe.signature", creds=ED)
            assert (h["result"], e["result"]) == ({"subscriptionId": 0}, {"subscriptionId": 1})
            again = await api.call("userDataStream.subscribe.signature", creds=ED)
            assert again["error"] == {"code": -2035, "msg": "User Data Stream subscription already active."}
            listed = await api.call("session.subscriptions", creds=None)
            assert listed["result"] == [{"subscriptionId": 0}, {"subscriptionId": 1}]
            await c.rest("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.01", "price": "60000"}, creds=ED)
            await c.rest("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.02", "price": "60000"}, creds=HMAC)
            await api.wait("executionReport", 2)
            assert [f["event"]["q"] for f in api.frames if f.get("event", {}).get("e") == "executionReport"] == [
                "0.01000000",
                "0.02000000",
            ]
            assert api.events("executionReport", sub=1)[0]["q"] == "0.01000000"
            assert api.events("executionReport", sub=0)[0]["q"] == "0.02000000"
            server.deposit(ED.api_key, "BTC", "0.5")
            server.deposit(ED.api_key, "BTC", "-0.25")
            updates = await api.wait("balanceUpdate", 2)
            assert [u["d"] for u in updates] == ["0.50000000", "-0.25000000"]
            assert all(u["E"] >= u["T"] for u in updates)
            delta = parse_user_event(next(f for f in api.frames if f.get("event", {}).get("e") == "balanceUpdate"), "m")
            assert isinstance(delta[0], VenueBalanceDelta) and delta[0].delta == d("0.5")
            assert server.balances(ED.api_key)["BTC"] == (d("10.25"), 0)
            positions = api.events("outboundAccountPosition", sub=1)
            assert positions[-1]["B"] == [{"a": "BTC", "f": "10.25000000", "l": "0.00000000"}]
            with pytest.raises(ValueError):
                server.deposit(ED.api_key, "BTC", "-100")
            gone = await api.call("userDataStream.unsubscribe", {"subscriptionId": 1}, creds=None)
            assert gone["result"] == {}
            [ended] = await api.wait("eventStreamTerminated", 1)
            frame = next(f for f in api.frames if f.get("event", {}).get("e") == "eventStreamTerminated")
            assert frame["subscriptionId"] == 1 and ended["E"] > 0
            assert isinstance(parse_user_event(frame, "m")[0], StreamTerminated)
            before = len(api.events(sub=1))
            await c.rest("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.01", "price": "60000"}, creds=ED)
            await c.rest("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.01", "price": "60000"}, creds=HMAC)
            await api.wait("executionReport", 3)  # the HMAC order's; the Ed25519 one's stream is over
            await api.quiet()
            assert len(api.events(sub=1)) == before and len(api.events("executionReport")) == 3
            unknown = await api.call("userDataStream.unsubscribe", {"subscriptionId": 5}, creds=None)
            assert unknown["error"]["code"] == -2036
            await api.call("userDataStream.unsubscribe", creds=None)
            await api.wait("eventStreamTerminated", 2)
            assert len(api.events("eventStreamTerminated", sub=0)) == 1
            assert (await api.call("session.subscriptions", creds=None))["result"] == []

    run(server, scenario)


# ---------------------------------------------------------------------------------------------- rate limits


def test_the_weight_limit_answers_429_then_a_request_inside_retry_after_starts_a_418_ban(server: Any) -> None:
    server.set_rate_limits(
        [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "DAY", "intervalNum": 1, "limit": 50},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 1000},
        ],
        ban_seconds=60,
    )

    async def scenario(c: Client) -> None:
        info = await c.get("/api/v3/exchangeInfo")
        assert {r["rateLimitType"]: r["limit"] for r in info.body["rateLimits"]}["REQUEST_WEIGHT"] == 50
        first = await c.rest("GET", "/api/v3/account")
        assert first.headers["X-MBX-USED-WEIGHT-1D"] == "40"  # exchangeInfo 20, account 20
        limited = await c.rest("GET", "/api/v3/account")
        assert limited.status == 429 and limited.body["code"] == -1003
        assert limited.body["msg"].startswith(
            "Too much request weight used; current limit is 50 request weight per 1 DAY"
        )
        assert int(limited.headers["Retry-After"]) > 0
        assert server.trading_faults.counts["too_many_requests"] == 1
        banned = await c.rest("GET", "/api/v3/account")
        assert banned.status == 418 and banned.body["msg"].startswith(
            "Way too much request weight used; IP banned until"
        )
        assert 0 < int(banned.headers["Retry-After"]) <= 60
        again = await c.rest("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.01", "price": "60000"})
        market = await c.get("/api/v3/depth?symbol=BTCUSDT&limit=5")
        assert (again.status, market.status) == (418, 418) and server.orders(HMAC.api_key) == []
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await c.session.ws_connect(f"{server.stream_url}/ws-api/v3")
        assert refused.value.status == 418
        counts = server.trading_faults.counts
        assert (counts["ip_ban"], counts["requests_during_ban"]) == (1, 3)
        assert counts["early_requests"] == 4
        server.set_rate_limits()  # the ban is lifted, counters start over
        assert (await c.rest("GET", "/api/v3/account")).status == 200

    run(server, scenario)


def test_the_order_limit_answers_429_too_many_orders(server: Any) -> None:
    server.set_rate_limits(
        [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 2},
        ]
    )

    async def scenario(c: Client) -> None:
        order = {**LIMIT_BUY, "quantity": "0.01", "price": "60000"}
        counts = [(await c.rest("POST", "/api/v3/order", order)).headers.get("X-MBX-ORDER-COUNT-1D") for _ in range(2)]
        assert counts == ["1", "2"]
        refused = await c.rest("POST", "/api/v3/order", order)
        assert refused.status == 429 and refused.body == {
            "code": -1015,
            "msg": "Too many new orders; current limit is 2 orders per 1 DAY.",
        }
        assert "Retry-After" in refused.headers and len(server.orders(HMAC.api_key)) == 2
        other = await c.rest("POST", "/api/v3/order", order, creds=ED)  # orders count per account
        assert other.status == 200
        async with c.ws_api() as api:
            ws_refused = await api.call("order.place", order)
            assert ws_refused["status"] == 429 and ws_refused["error"]["code"] == -1015
            assert ws_refused["error"]["data"]["retryAfter"] > ws_refused["error"]["data"]["serverTime"]
        assert server.trading_faults.counts["too_many_orders"] == 2

    run(server, scenario)


# --------------------------------------------------------------------------------------------------- faults


def test_fault_timestamp_error(server: Any) -> None:
    async def scenario(c: Client) -> None:
        server.trading_faults.timestamp_error(2)
        rest = await c.rest("GET", "/api/v3/account")
        async with c.ws_api() as api:
            ws = await api.call("account.status")
            assert (ws["status"], ws["error"]["code"]) == (400, -1021)
            assert (await api.call("account.status"))["status"] == 200
        assert rest.body == {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
        assert server.trading_faults.counts["timestamp_error"] == 2

    run(server, scenario)


def test_fault_timeout_after_placing(server: Any) -> None:
    async def scenario(c: Client) -> None:
        server.trading_faults.timeout_after_placing(2)
        rest = await c.rest("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.01", "price": "60000"})
        assert (rest.status, rest.body) == (
            503,
            {
                "code": -1007,
                "msg": "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
            },
        )
        async with c.ws_api() as api:
            ws = await api.call("order.place", {**LIMIT_BUY, "quantity": "0.02", "price": "60000"})
            assert (ws["status"], ws["error"]["code"]) == (503, -1007)
        placed = (await c.rest("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"})).body
        assert [o["origQty"] for o in placed] == ["0.01000000", "0.02000000"]  # both orders were placed
        assert server.trading_faults.counts["timeout_after_placing"] == 2

    run(server, scenario)


def test_fault_rate_limit(server: Any) -> None:
    async def scenario(c: Client) -> None:
        faults = server.trading_faults
        faults.rate_limit(429, retry_after=1)
        limited = await c.rest("GET", "/api/v3/account")
        assert (limited.status, limited.body["code"], limited.headers["Retry-After"]) == (429, -1003, "1")
        await asyncio.sleep(1.05)  # a client that honours Retry-After is served again, never banned
        assert (await c.rest("GET", "/api/v3/account")).status == 200
        assert (faults.counts["early_requests"], faults.counts["ip_ban"]) == (0, 0)
        faults.rate_limit(418, retry_after=1)
        async with c.ws_api() as api:
            banned = await api.call("account.status")
            assert banned["status"] == 418 and banned["error"]["data"]["retryAfter"] > 0
            await asyncio.wait_for(api.closed.wait(), 5)  # a banned IP is disconnected
        assert (await c.rest("GET", "/api/v3/account")).status == 418  # still banned
        assert faults.counts["requests_during_ban"] == 1 and faults.counts["rate_limit"] == 2
        await asyncio.sleep(1.05)
        assert (await c.rest("GET", "/api/v3/account")).status == 200

    run(server, scenario)


def test_fault_drop_before_answer(server: Any) -> None:
    async def scenario(c: Client) -> None:
        async with c.ws_api() as watcher:
            await watcher.call("userDataStream.subscribe.signature")
            server.trading_faults.drop_before_answer(2)
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await c.rest("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.01", "price": "60000"})
            async with c.ws_api() as api:
                params = HMAC.ws_signed_params(
                    {**LIMIT_BUY, "quantity": "0.02", "price": "60000"}, timestamp_ms=server.server_time_ms()
                )
                await api.ws.send_str(
                    orjson.dumps({"id": "dropped", "method": "order.place", "params": params}).decode()
                )
                await asyncio.wait_for(api.closed.wait(), 5)
                assert api.frames == []  # no answer
            reports = await watcher.wait("executionReport", 2)  # placed all the same: the stream tells
            assert [r["q"] for r in reports] == ["0.01000000", "0.02000000"]
        assert len(server.orders(HMAC.api_key)) == 2
        assert server.trading_faults.counts["drop_before_answer"] == 2

    run(server, scenario)


def test_faults_on_execution_reports(server: Any) -> None:
    """duplicate_reports, reorder_reports and miss_report, seen on the stream; the orders are right all the same."""

    async def scenario(c: Client) -> None:
        market = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
        async with c.ws_api() as api:
            await api.call("userDataStream.subscribe.signature")
            faults = server.trading_faults
            faults.duplicate_reports(1)
            await c.rest("POST", "/api/v3/order", {**market, "newClientOrderId": "dup"})
            reports = await api.wait("executionReport", 3)
            assert [(r["c"], r["x"]) for r in reports] == [("dup", "NEW"), ("dup", "NEW"), ("dup", "TRADE")]
            assert reports[0] == reports[1]
            faults.reorder_reports(1)
            await c.rest("POST", "/api/v3/order", {**market, "newClientOrderId": "swap"})
            reports = await api.wait("executionReport", 5)
            assert [(r["c"], r["x"]) for r in reports[3:]] == [("swap", "TRADE"), ("swap", "NEW")]
            faults.miss_report(1)
            await c.rest("POST", "/api/v3/order", {**market, "newClientOrderId": "miss"})
            reports = await api.wait("executionReport", 6)
            await api.quiet()
            assert [(r["c"], r["x"]) for r in api.events("executionReport")[5:]] == [("miss", "TRADE")]
            assert [o["status"] for o in server.orders(HMAC.api_key)] == ["FILLED"] * 3
            assert (faults.counts["duplicate_reports"], faults.counts["reorder_reports"]) == (1, 1)
            assert faults.counts["miss_report"] == 1

    run(server, scenario)


def test_fault_terminate_stream_and_ws_server_shutdown(server: Any) -> None:
    async def scenario(c: Client) -> None:
        async with c.ws_api() as api:
            await api.call("userDataStream.subscribe.signature")
            await api.call("userDataStream.subscribe.signature", creds=ED)
            assert await asyncio.to_thread(server.trading_faults.terminate_stream, HMAC.api_key) == 1
            [ended] = await api.wait("eventStreamTerminated", 1)
            assert api.frames[-1]["subscriptionId"] == 0
            await c.rest("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.01", "price": "60000"})
            await c.rest("POST", "/api/v3/order", {**LIMIT_BUY, "quantity": "0.01", "price": "60000"}, creds=ED)
            await api.wait("executionReport", 1)
            await api.quiet()
            assert {f["subscriptionId"] for f in api.frames[3:] if "event" in f} == {1}  # HMAC: nothing more
            assert await asyncio.to_thread(server.trading_faults.ws_server_shutdown, 0.1) == 1
            [shutdown] = await api.wait("serverShutdown", 1)
            assert "subscriptionId" not in api.frames[-1] and shutdown["E"] > 0
            await asyncio.wait_for(api.closed.wait(), 5)
            assert api.close_code == 1001
        counts = server.trading_faults.counts
        assert (counts["terminate_stream"], counts["ws_server_shutdown"]) == (1, 1)

    run(server, scenario)


def test_fault_place_outside(server: Any) -> None:
    async def scenario(c: Client) -> None:
        async with c.ws_api() as api:
            await api.call("userDataStream.subscribe.signature", creds=ED)
            order = await asyncio.to_thread(
                server.trading_faults.place_outside, ED.api_key, "BTCUSDT", "SELL", "0.5", "70000.00"
            )
            assert order["status"] == "NEW" and order["side"] == "SELL"
            [report] = await api.wait("executionReport", 1)
            assert report["i"] == order["orderId"] and report["c"] == order["clientOrderId"]
            listed = (await c.rest("GET", "/api/v3/openOrders", {"symbol": "BTCUSDT"}, creds=ED)).body
            assert listed == [order] and server.balances(ED.api_key)["BTC"] == (d("9.5"), d("0.5"))
        assert server.trading_faults.counts["place_outside"] == 1

    run(server, scenario)


def test_restart_drops_websocket_api_connections_and_keeps_the_accounts(server: Any) -> None:
    async def scenario(c: Client) -> None:
        async with c.ws_api() as api:
            await api.call("userDataStream.subscribe.signature")
            await asyncio.to_thread(server.faults.restart, 0.2)
            await asyncio.wait_for(api.closed.wait(), 5)
        async with c.ws_api() as api:
            assert (await api.call("account.status"))["status"] == 200

    run(server, scenario)


def _text(units: int) -> str:
    return f"{units // SCALE}.{units % SCALE:08d}"
