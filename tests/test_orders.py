"""The one PlaceOrder builder and client-order-id rule shared by stdio, the Python handle and strategies."""

from __future__ import annotations

from decimal import Decimal

import pytest

from veloz_actors import InvalidInput
from veloz_actors.messages import OrderType, PlaceOrder, Side, TimeInForce
from veloz_actors.orders import (
    CLIENT_ORDER_ID_MAX_LENGTH,
    ClientOrderIds,
    build_place_order,
    check_client_order_id,
    parse_amount,
)
from veloz_actors.testing import FakeClock

SYMBOLS = frozenset({"BTCUSDT", "ETHUSDT"})
NOW = 1_733_000_000_000_000_000  # a wall-clock time, ns


# ------------------------------------------------------------------------------------------------------ client ids


def test_a_fixed_prefix_counts_from_one_the_same_on_every_run() -> None:
    ids = ClientOrderIds("bt")
    assert [ids(), ids(), ids()] == ["bt-1", "bt-2", "bt-3"]
    assert ClientOrderIds("bt")() == "bt-1"


def test_a_session_prefix_carries_the_start_time_so_sessions_never_meet() -> None:
    clock = FakeClock(now=NOW)
    first = ClientOrderIds.for_session("cli", clock=clock)
    same_instant = ClientOrderIds.for_session("cli", clock=clock)
    clock.advance_seconds(60)
    later = ClientOrderIds.for_session("cli", clock=clock)
    made = [first(), first(), same_instant(), later()]
    assert len(set(made)) == 4
    assert all(cid.startswith("cli-") and len(cid) <= CLIENT_ORDER_ID_MAX_LENGTH for cid in made)
    assert made[0].rsplit("-", 1)[1] == "1" and made[1].rsplit("-", 1)[1] == "2"
    assert first.prefix != same_instant.prefix != later.prefix


def test_sessions_of_two_processes_started_in_the_same_microsecond_never_meet() -> None:
    """Two live strategies of one type (two actor processes, started side by side) or two scripts' handles: each
    process's stamps increase, but two processes reading the same microsecond took the same prefix, so the second's
    orders were refused as duplicates and each strategy took the other's order events for its own. A process's stamps
    carry its pid (two live processes of one machine never share one)."""
    import subprocess
    import sys

    code = (
        "from veloz_actors.orders import ClientOrderIds\n"
        f"ids = ClientOrderIds.for_session('sma_cross', clock=lambda: {NOW})\n"
        "print(ids(), ids())"
    )
    made = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
            for _ in range(2)]  # fmt: skip
    first, second = (set(done.stdout.split()) for done in made)
    assert len(first) == len(second) == 2 and not first & second, (first, second)
    assert all(cid.startswith("sma_cross-") and len(cid) <= CLIENT_ORDER_ID_MAX_LENGTH for cid in first | second)


def test_a_session_takes_a_new_stamp_rather_than_outgrow_the_id_length() -> None:
    ids = ClientOrderIds.for_session("rsi_reversion", clock=FakeClock(now=NOW))
    old_prefix = ids.prefix
    ids.count = 10 ** (CLIENT_ORDER_ID_MAX_LENGTH - len(old_prefix) - 1) - 2
    assert len(ids()) == CLIENT_ORDER_ID_MAX_LENGTH
    renewed = ids()
    assert renewed == f"{ids.prefix}-1" and ids.prefix != old_prefix and ids.prefix.startswith("rsi_reversion-")


def test_a_fixed_prefix_that_outgrows_the_id_length_raises() -> None:
    ids = ClientOrderIds("x" * 33)
    ids.count = 98
    assert ids() == "x" * 33 + "-99"  # 36 characters: the longest id
    with pytest.raises(InvalidInput, match="outgrew 36"):
        ids()


@pytest.mark.parametrize("cid", ["a", "bt-1", "A.b:c_d-9", "x" * 36])
def test_valid_client_order_ids_pass(cid: str) -> None:
    assert check_client_order_id(cid) == cid


@pytest.mark.parametrize("cid", ["", "x" * 37, "a/b", "a b", "é", None, 7])
def test_invalid_client_order_ids_are_refused_naming_the_rule(cid: object) -> None:
    with pytest.raises(InvalidInput, match="client order id .* must be 1-36 characters"):
        check_client_order_id(cid)


@pytest.mark.parametrize(("make", "named"), [(lambda: ClientOrderIds("a b"), "client order id"),
                                             (lambda: ClientOrderIds.for_session("k" * 15), "kind")])  # fmt: skip
def test_bad_prefixes_and_kinds_are_refused(make: object, named: str) -> None:
    with pytest.raises(InvalidInput, match=named):
        make()  # type: ignore[operator]


# ------------------------------------------------------------------------------------------------------ amounts


@pytest.mark.parametrize(
    ("value", "units"),
    [("0.01", 1_000_000), (Decimal("0.00000001"), 1), (2, 200_000_000), (0.1, 10_000_000), (" 1.5 ", 150_000_000)],
)
def test_amounts_are_parsed_exactly(value: object, units: int) -> None:
    assert parse_amount(value, "quantity") == units


@pytest.mark.parametrize("value", ["0", "-1", "nan", "1e400", "0.000000001", True, None, [1]])
def test_bad_amounts_name_the_field(value: object) -> None:
    with pytest.raises(InvalidInput, match="^quantity"):
        parse_amount(value, "quantity")


# ------------------------------------------------------------------------------------------------------ the builder


def test_a_price_makes_a_limit_order_and_none_a_market_order() -> None:
    ids = ClientOrderIds("t")
    limit = build_place_order("btcusdt", "buy", qty=100, price=6_000_000_000_000, ids=ids, ts=5, symbols=SYMBOLS)
    market = build_place_order("ETHUSDT", Side.SELL, qty=100, tif="ioc", ids=ids, account_id="alt", ts=6)
    assert limit == PlaceOrder(
        client_order_id="t-1", account_id="main", symbol="BTCUSDT", side=Side.BUY, order_type=OrderType.LIMIT,
        qty=100, price=6_000_000_000_000, tif=TimeInForce.GTC, ts=5,
    )  # fmt: skip
    assert (market.client_order_id, market.order_type, market.tif, market.account_id) == (
        "t-2", OrderType.MARKET, TimeInForce.IOC, "alt",
    )  # fmt: skip


def test_a_given_client_order_id_is_used_and_checked() -> None:
    order = build_place_order("BTCUSDT", "SELL", qty=1, client_order_id="mine-7", ts=1)
    assert order.client_order_id == "mine-7"
    with pytest.raises(InvalidInput, match="client order id 'a/b'"):
        build_place_order("BTCUSDT", "SELL", qty=1, client_order_id="a/b", ts=1)
    with pytest.raises(InvalidInput, match="no client order id"):
        build_place_order("BTCUSDT", "SELL", qty=1, ts=1)


def test_a_market_buy_may_give_a_quote_quantity_and_a_protect_price() -> None:
    order = build_place_order(
        "BTCUSDT", Side.BUY, quote_qty=50_000_000_000, protect_price=6_100_000_000_000, client_order_id="q-1", ts=1
    )
    assert (order.qty, order.quote_qty, order.order_type) == (0, 50_000_000_000, OrderType.MARKET)
    assert order.protect_price == 6_100_000_000_000
    assert build_place_order("BTCUSDT", Side.BUY, qty=1, client_order_id="q-2", ts=1).protect_price is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"symbol": "DOGEUSDT"}, "unknown symbol 'DOGEUSDT'; configured: BTCUSDT, ETHUSDT"),
        ({"symbol": 5}, "unknown symbol 5"),
        ({"side": "HOLD"}, "side must be BUY or SELL, got 'HOLD'"),
        ({"tif": "GTX"}, "tif must be GTC, IOC, FOK or POST_ONLY, got 'GTX'"),
        ({"order_type": "STOP"}, "order type must be MARKET or LIMIT, got 'STOP'"),
        ({"tif": "POST_ONLY"}, "a MARKET order cannot be POST_ONLY"),
        ({"qty": 0.5}, "quantity must be an int in 1e-8 units, got 0.5"),
        ({"qty": True}, "quantity must be an int in 1e-8 units"),
        ({"price": "60000", "order_type": "LIMIT"}, "price must be an int in 1e-8 units"),
    ],
)
def test_bad_orders_raise_one_clear_error(kwargs: dict, message: str) -> None:
    args = {"symbol": "BTCUSDT", "side": "BUY", "qty": 100, "client_order_id": "c-1", "ts": 1, "symbols": SYMBOLS}
    args.update(kwargs)
    with pytest.raises(InvalidInput) as caught:
        build_place_order(**args)
    assert str(caught.value) == message or str(caught.value).startswith(message)
