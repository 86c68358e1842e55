"""Binance user data and trading answers -> execution reports: the recorded nautilus executionReports, the docs'
payload examples, the reasons derived for expiries and rejections, and bad payloads named at the edge."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from veloz_actors import DataError
from veloz_actors.core.kernel import KernelConfig, TradingKernel
from veloz_actors.messages import (
    Liquidity,
    OrderStatus,
    RejectReason,
    Side,
    VenueBalance,
    VenueBalanceDelta,
    VenueOrderAccepted,
    VenueOrderCancelled,
    VenueOrderExpired,
    VenueOrderFilled,
    VenueOrderRejected,
)
from veloz_actors.testing import d, engine_config, place
from veloz_actors.venues.binance.user_data import (
    USER_EVENT_TYPES,
    AccountTrade,
    StreamTerminated,
    parse_account_balances,
    parse_cancel_response,
    parse_execution_report,
    parse_my_trades,
    parse_open_orders,
    parse_order_response,
    parse_order_state,
    parse_user_event,
)

MS = 1_000_000
R = RejectReason
ACCOUNT = "main"


def _nautilus(shared_data: Path, name: str) -> dict[str, Any]:
    return json.loads((shared_data / "binance-api" / "examples-nautilus" / name).read_text())


# user-data-stream.md's executionReport example (comments removed), in the WebSocket API envelope
DOC_EXECUTION_REPORT: dict[str, Any] = {
    "subscriptionId": 0,
    "event": {
        "e": "executionReport", "E": 1499405658658, "s": "ETHBTC", "c": "mUvoqJxFIILMdfAW5iGSOW", "S": "BUY",
        "o": "LIMIT", "f": "GTC", "q": "1.00000000", "p": "0.10264410", "P": "0.00000000", "F": "0.00000000",
        "g": -1, "C": "", "x": "NEW", "X": "NEW", "r": "NONE", "i": 4293153, "l": "0.00000000", "z": "0.00000000",
        "L": "0.00000000", "n": "0", "N": None, "T": 1499405658657, "t": -1, "v": 3, "I": 8641984, "w": True,
        "m": False, "M": False, "O": 1499405658657, "Z": "0.00000000", "Y": "0.00000000", "Q": "0.00000000",
        "W": 1499405658657, "V": "NONE",
    },
}  # fmt: skip


def _report(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = copy.deepcopy(DOC_EXECUTION_REPORT["event"])
    data.update(changes)
    return data


# ------------------------------------------------------------------------------------ recorded executionReports


def test_nautilus_new_is_accepted_with_the_venue_order_id(shared_data: Path) -> None:
    [report] = parse_user_event(_nautilus(shared_data, "ws_spot_execution_report_new.json"), ACCOUNT)
    assert report == VenueOrderAccepted(
        venue="BINANCE",
        client_order_id="O-12345-test-new",
        account_id=ACCOUNT,
        symbol="ETHUSDT",
        venue_order_id="1234567890",
        ts=1759347763167 * MS,
    )


def test_nautilus_trade_is_a_maker_fill_with_fee_and_leaves(shared_data: Path) -> None:
    [report] = parse_user_event(_nautilus(shared_data, "ws_spot_execution_report_trade.json"), ACCOUNT)
    assert report == VenueOrderFilled(
        venue="BINANCE",
        client_order_id="O-12345-test-trade",
        account_id=ACCOUNT,
        symbol="ETHUSDT",
        venue_order_id="1234567890",
        trade_id=98765432,
        price=d("2499.5"),
        qty=d("0.5"),
        fee=d("0.0005"),
        fee_asset="ETH",
        liquidity=Liquidity.MAKER,
        leaves_qty=d("0.5"),  # q 1.0 - z 0.5, the order is PARTIALLY_FILLED
        ts=1759347763167 * MS,
    )


def test_nautilus_cancel_without_orig_client_id_names_c(shared_data: Path) -> None:
    [report] = parse_user_event(_nautilus(shared_data, "ws_spot_execution_report_canceled.json"), ACCOUNT)
    assert report == VenueOrderCancelled(
        venue="BINANCE",
        client_order_id="O-12345-test-cancel",
        account_id=ACCOUNT,
        symbol="ETHUSDT",
        reason=R.USER_CANCEL,
        ts=1759347763167 * MS,
    )


def test_a_cancel_with_its_own_client_id_names_the_original_order() -> None:
    # "C": "Original client order ID; This is the ID of the order being canceled"; "c" is then the cancel's id
    data = _report(x="CANCELED", X="CANCELED", c="cancel-req-7", C="b1")
    assert parse_execution_report(data, ACCOUNT).client_order_id == "b1"


def test_docs_execution_report_in_the_ws_api_envelope() -> None:
    [report] = parse_user_event(json.dumps(DOC_EXECUTION_REPORT), ACCOUNT, venue="BINANCE_TESTNET")
    assert report == VenueOrderAccepted(
        venue="BINANCE_TESTNET",
        client_order_id="mUvoqJxFIILMdfAW5iGSOW",
        account_id=ACCOUNT,
        symbol="ETHBTC",
        venue_order_id="4293153",
        ts=1499405658657 * MS,  # T, the transaction time
    )
    no_t = _report()
    del no_t["T"]
    assert parse_execution_report(no_t, ACCOUNT).ts == 1499405658658 * MS  # E


# ----------------------------------------------------------------------------------------- fills and leaves


def test_the_last_fill_of_a_filled_order_leaves_nothing() -> None:
    data = _report(x="TRADE", X="FILLED", l="0.4", z="1.00000000", L="0.1026", n="0.00001", N="BNB", t=77, m=False)
    report = parse_execution_report(data, ACCOUNT)
    assert isinstance(report, VenueOrderFilled)
    assert (report.leaves_qty, report.liquidity, report.fee, report.fee_asset) == (0, Liquidity.TAKER, 1000, "BNB")


def test_an_order_sized_by_quote_amount_leaves_a_positive_estimate_until_it_ends() -> None:
    partial = _report(o="MARKET", x="TRADE", X="PARTIALLY_FILLED", q="0.00000000", Q="100.00000000", z="0.5",
                      Z="60.00000000", l="0.5", L="120", t=5, n="0", N=None)  # fmt: skip
    report = parse_execution_report(partial, ACCOUNT)
    assert isinstance(report, VenueOrderFilled) and report.leaves_qty == d("40") * 10**8 // d("120")
    dust = parse_execution_report({**partial, "Z": "99.99999999", "L": "1000000"}, ACCOUNT)  # rounds to 0 base
    assert isinstance(dust, VenueOrderFilled) and dust.leaves_qty == 1  # still working: never 0
    done = parse_execution_report({**partial, "X": "FILLED"}, ACCOUNT)
    assert isinstance(done, VenueOrderFilled) and done.leaves_qty == 0


# ---------------------------------------------------------------------------------------- expiry and rejection


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"f": "IOC", "eR": "UNFILLED_IOC_QUANTITY_EXPIRED"}, R.IOC_UNFILLED),
        ({"f": "IOC"}, R.IOC_UNFILLED),
        ({"f": "FOK", "eR": "UNFILLED_FOK_ORDER_EXPIRED"}, R.FOK_NOT_FILLABLE),
        ({"f": "FOK"}, R.FOK_NOT_FILLABLE),
        ({"o": "MARKET", "f": "GTC"}, R.NO_LIQUIDITY),
        ({"o": "MARKET", "eR": "INSUFFICIENT_LIQUIDITY"}, R.NO_LIQUIDITY),
        ({"o": "LIMIT_MAKER"}, R.WOULD_TAKE_LIQUIDITY),
        ({"eR": "EXECUTION_RULE_PRICE_RANGE_EXCEEDED"}, R.PRICE_BAND),
        ({"eR": "EXCHANGE_CANCELED"}, R.VENUE_REJECTED),
        ({"o": "LIMIT_MAKER", "eR": "EXCHANGE_CANCELED"}, R.VENUE_REJECTED),
        ({"X": "EXPIRED_IN_MATCH", "f": "IOC"}, R.SELF_TRADE_PREVENTED),
        ({"x": "TRADE_PREVENTION", "X": "EXPIRED_IN_MATCH"}, R.SELF_TRADE_PREVENTED),
        ({"eR": "NONE"}, R.VENUE_REJECTED),  # a GTC limit order the exchange expired, no reason given
    ],
)
def test_expiries_carry_the_reason_that_can_be_derived(changes: dict[str, Any], reason: R) -> None:
    data = _report(x="EXPIRED", X="EXPIRED")
    data.update(changes)
    assert parse_execution_report(data, ACCOUNT) == VenueOrderExpired(
        venue="BINANCE",
        client_order_id="mUvoqJxFIILMdfAW5iGSOW",
        account_id=ACCOUNT,
        symbol="ETHBTC",
        reason=reason,
        ts=1499405658657 * MS,
    )


# ---------------------------------------------------------------------------------------- self-trade prevention

# stp_faq.md Scenario G: a resting BUY 6 @ 2 meets a DECREMENT taker of 2: 2 are prevented, the order works on (NEW)
STP_KEEPS_WORKING = _report(
    x="TRADE_PREVENTION", X="NEW", q="6.00000000", p="2.00000000", l="0.00000000", z="0.00000000", L="0.00000000",
    V="DECREMENT", v=4, A="2.00000000", B="2.00000000", pl="2.00000000", pL="2.00000000", pY="4.00000000",
)  # fmt: skip


def test_a_trade_prevention_that_leaves_the_order_working_ends_nothing() -> None:
    assert parse_execution_report(STP_KEEPS_WORKING, ACCOUNT) is None
    assert parse_user_event({"subscriptionId": 0, "event": STP_KEEPS_WORKING}, ACCOUNT) == []
    partly = {**STP_KEEPS_WORKING, "X": "PARTIALLY_FILLED", "z": "1.00000000"}
    assert parse_user_event(partly, ACCOUNT) == []
    # once nothing is left the order ended (EXPIRE_* modes, or DECREMENT taking the rest)
    [end] = parse_user_event({**STP_KEEPS_WORKING, "X": "EXPIRED_IN_MATCH", "A": "6.00000000"}, ACCOUNT)
    assert isinstance(end, VenueOrderExpired) and end.reason is R.SELF_TRADE_PREVENTED


def test_fills_leave_what_self_trade_prevention_did_not_take_and_a_short_fill_ends_the_order() -> None:
    common = {"x": "TRADE", "q": "6.00000000", "L": "2.00000000", "n": "0", "N": None, "A": "2.00000000"}
    working = parse_execution_report(_report(**common, X="PARTIALLY_FILLED", z="1.00000000", l="1.00000000", t=9),
                                     ACCOUNT)  # fmt: skip
    assert isinstance(working, VenueOrderFilled) and working.leaves_qty == d("3")  # 6 - 1 filled - 2 prevented
    # the last 3 fill it: Binance says FILLED with 4 of 6 executed; the kernel closes an order by quantity only when
    # every unit is filled, so the fill comes with the order's end
    fill, end = parse_user_event(_report(**common, X="FILLED", z="4.00000000", l="3.00000000", t=10), ACCOUNT)
    assert isinstance(fill, VenueOrderFilled) and fill.leaves_qty == 0 and fill.qty == d("3")
    assert isinstance(end, VenueOrderExpired) and end.reason is R.SELF_TRADE_PREVENTED and end.ts == fill.ts
    [alone] = parse_user_event(_report(**{**common, "A": None}, X="FILLED", z="6.00000000", l="3.00000000", t=10),
                               ACCOUNT)  # fmt: skip
    assert isinstance(alone, VenueOrderFilled)
    # the same in an order query: FILLED short of its quantity needs its end too
    short = parse_order_state({**QUERY, "status": "FILLED", "executedQty": "0.4", "preventedQuantity": "0.6"})
    assert short.prevented_qty == d("0.6") and short.needs_end
    assert short.report(ACCOUNT).reason is R.SELF_TRADE_PREVENTED  # type: ignore[union-attr]
    assert not parse_order_state({**QUERY, "status": "FILLED", "executedQty": "1"}).needs_end


@pytest.mark.parametrize(
    ("r", "reason"),
    [
        ("INSUFFICIENT_BALANCES", R.INSUFFICIENT_FUNDS),
        ("WOULD_MATCH_IMMEDIATELY", R.WOULD_TAKE_LIQUIDITY),
        ("STOP_PRICE_WOULD_TRIGGER_IMMEDIATELY", R.VENUE_REJECTED),
        ("OCO_BAD_PRICES", R.VENUE_REJECTED),
    ],
)
def test_rejections_map_the_order_reject_reason(r: str, reason: R) -> None:
    report = parse_execution_report(_report(x="REJECTED", X="REJECTED", r=r), ACCOUNT)
    assert isinstance(report, VenueOrderRejected)
    assert (report.reason, report.detail) == (reason, f"Binance reject reason {r}")


# ---------------------------------------------------------------------------------------- account events


def test_account_position_balance_update_and_stream_ends() -> None:
    position = {"subscriptionId": 0, "event": {"e": "outboundAccountPosition", "E": 1728972148778,
                "u": 1728972148778, "B": [{"a": "BTC", "f": "11818.00000000", "l": "182.00000000"},
                                          {"a": "USDT", "f": "10580.00000000", "l": "70.00000000"}]}}  # fmt: skip
    assert parse_user_event(position, ACCOUNT) == [
        VenueBalance(venue="BINANCE", account_id=ACCOUNT, asset="BTC", free=d("11818"), locked=d("182"),
                     ts=1728972148778 * MS),
        VenueBalance(venue="BINANCE", account_id=ACCOUNT, asset="USDT", free=d("10580"), locked=d("70"),
                     ts=1728972148778 * MS),
    ]  # fmt: skip
    update = {"e": "balanceUpdate", "E": 1573200697110, "a": "BTC", "d": "100.00000000", "T": 1573200697068}
    assert parse_user_event({"subscriptionId": 3, "event": update}, ACCOUNT) == [
        VenueBalanceDelta(venue="BINANCE", account_id=ACCOUNT, asset="BTC", delta=d("100"), ts=1573200697068 * MS)
    ]
    assert parse_user_event({**update, "d": "-0.5"}, ACCOUNT)[0].delta == -d("0.5")  # type: ignore[union-attr]
    for event in ("eventStreamTerminated", "listenKeyExpired", "serverShutdown"):
        assert parse_user_event({"event": {"e": event, "E": 1728973001334}}, ACCOUNT) == [
            StreamTerminated(event=event, ts=1728973001334 * MS)
        ]
    assert parse_user_event({"e": "listStatus", "E": 1}, ACCOUNT) == []
    assert parse_user_event({"e": "externalLockUpdate", "E": 1, "a": "NEO", "d": "10", "T": 1}, ACCOUNT) == []


# --------------------------------------------------------------------------------------------- order answers

# rest-api.md "Response - FULL" (a MARKET SELL of 10, five fills)
REST_FULL = {
    "symbol": "BTCUSDT", "orderId": 28, "orderListId": -1, "clientOrderId": "6gCrw2kRUAF9CvJDGP16IP",
    "transactTime": 1507725176595, "price": "0.00000000", "origQty": "10.00000000", "executedQty": "10.00000000",
    "origQuoteOrderQty": "0.000000", "cummulativeQuoteQty": "10.00000000", "status": "FILLED", "timeInForce": "GTC",
    "type": "MARKET", "side": "SELL", "workingTime": 1507725176595, "selfTradePreventionMode": "NONE",
    "fills": [
        {"price": "4000.00000000", "qty": "1.00000000", "commission": "4.00000000", "commissionAsset": "USDT",
         "tradeId": 56},
        {"price": "3999.00000000", "qty": "5.00000000", "commission": "19.99500000", "commissionAsset": "USDT",
         "tradeId": 57},
        {"price": "3998.00000000", "qty": "2.00000000", "commission": "7.99600000", "commissionAsset": "USDT",
         "tradeId": 58},
        {"price": "3997.00000000", "qty": "1.00000000", "commission": "3.99700000", "commissionAsset": "USDT",
         "tradeId": 59},
        {"price": "3995.00000000", "qty": "1.00000000", "commission": "3.99500000", "commissionAsset": "USDT",
         "tradeId": 60},
    ],
}  # fmt: skip


def test_rest_full_response_is_accepted_then_five_taker_fills() -> None:
    reports = parse_order_response(REST_FULL, ACCOUNT)
    assert [type(r) for r in reports] == [VenueOrderAccepted] + [VenueOrderFilled] * 5
    fills = [r for r in reports if isinstance(r, VenueOrderFilled)]
    assert [f.trade_id for f in fills] == [56, 57, 58, 59, 60]
    assert [f.leaves_qty for f in fills] == [d("9"), d("4"), d("2"), d("1"), 0]
    assert {f.liquidity for f in fills} == {Liquidity.TAKER}
    assert sum(f.fee for f in fills) == d("39.983")
    assert all(r.ts == 1507725176595 * MS and r.client_order_id == "6gCrw2kRUAF9CvJDGP16IP" for r in reports)
    assert reports[0].venue_order_id == "28"  # type: ignore[union-attr]


def test_ws_full_result_and_ack() -> None:
    result = {"symbol": "BTCUSDT", "orderId": 12569099453, "orderListId": -1,
              "clientOrderId": "4d96324ff9d44481926157ec08158a40", "transactTime": 1660801715793,
              "price": "23416.10000000", "origQty": "0.00847000", "executedQty": "0.00847000",
              "origQuoteOrderQty": "0.000000", "cummulativeQuoteQty": "198.33521500", "status": "FILLED",
              "timeInForce": "GTC", "type": "LIMIT", "side": "SELL", "workingTime": 1660801715793,
              "fills": [{"price": "23416.10000000", "qty": "0.00635000", "commission": "0.000000",
                         "commissionAsset": "BNB", "tradeId": 1650422481},
                        {"price": "23416.50000000", "qty": "0.00212000", "commission": "0.000000",
                         "commissionAsset": "BNB", "tradeId": 1650422482}]}  # fmt: skip
    _, first, last = parse_order_response(result, ACCOUNT)
    assert (first.qty, first.leaves_qty, first.fee, first.fee_asset) == (d("0.00635"), d("0.00212"), 0, "BNB")  # type: ignore[union-attr]
    assert (last.price, last.leaves_qty) == (d("23416.5"), 0)  # type: ignore[union-attr]
    ack = {"symbol": "BTCUSDT", "orderId": 12569099453, "orderListId": -1,
           "clientOrderId": "4d96324ff9d44481926157ec08158a40", "transactTime": 1660801715639}  # fmt: skip
    assert parse_order_response(ack, ACCOUNT) == [
        VenueOrderAccepted(venue="BINANCE", client_order_id="4d96324ff9d44481926157ec08158a40", account_id=ACCOUNT,
                           symbol="BTCUSDT", venue_order_id="12569099453", ts=1660801715639 * MS)
    ]  # fmt: skip


def test_an_expired_ioc_ends_only_once_all_its_fills_are_known() -> None:
    ioc = {**REST_FULL, "type": "LIMIT", "timeInForce": "IOC", "price": "3998", "status": "EXPIRED",
           "executedQty": "8.00000000", "expiryReason": "UNFILLED_IOC_QUANTITY_EXPIRED",
           "fills": REST_FULL["fills"][:3]}  # type: ignore[index]  # fmt: skip
    reports = parse_order_response(ioc, ACCOUNT)
    assert [type(r) for r in reports] == [VenueOrderAccepted] + [VenueOrderFilled] * 3 + [VenueOrderExpired]
    assert reports[3].leaves_qty == 0 and reports[-1].reason is R.IOC_UNFILLED  # type: ignore[union-attr]
    result_type = {k: v for k, v in ioc.items() if k != "fills"}  # RESULT: executed 8, no fills listed
    assert [type(r) for r in parse_order_response(result_type, ACCOUNT)] == [VenueOrderAccepted]
    unfilled_fok = {**ioc, "timeInForce": "FOK", "executedQty": "0", "fills": [], "expiryReason": None}
    assert parse_order_response(unfilled_fok, ACCOUNT)[-1].reason is R.FOK_NOT_FILLABLE  # type: ignore[union-attr]


def test_cancel_answer_names_the_cancelled_order_and_its_state() -> None:
    answer = {"symbol": "LTCBTC", "origClientOrderId": "myOrder1", "orderId": 4, "orderListId": -1,
              "clientOrderId": "cancelMyOrder1", "transactTime": 1684804350068, "price": "2.00000000",
              "origQty": "1.00000000", "executedQty": "0.00000000", "origQuoteOrderQty": "0.000000",
              "cummulativeQuoteQty": "0.00000000", "status": "CANCELED", "timeInForce": "GTC", "type": "LIMIT",
              "side": "BUY", "selfTradePreventionMode": "NONE"}  # fmt: skip
    assert parse_cancel_response(answer, ACCOUNT) == VenueOrderCancelled(
        venue="BINANCE", client_order_id="myOrder1", account_id=ACCOUNT, symbol="LTCBTC", ts=1684804350068 * MS
    )
    state = parse_order_state(answer)
    assert (state.client_order_id, state.order_status, state.report(ACCOUNT)) == (
        "myOrder1",
        OrderStatus.CANCELLED,
        parse_cancel_response(answer, ACCOUNT),
    )
    with pytest.raises(DataError, match="CANCELED"):
        parse_cancel_response({**answer, "status": "FILLED"}, ACCOUNT)


QUERY = {
    "symbol": "LTCBTC", "orderId": 1, "orderListId": -1, "clientOrderId": "myOrder1", "price": "0.1",
    "origQty": "1.0", "executedQty": "0.0", "cummulativeQuoteQty": "0.0", "status": "NEW", "timeInForce": "GTC",
    "type": "LIMIT", "side": "BUY", "stopPrice": "0.0", "icebergQty": "0.0", "time": 1499827319559,
    "updateTime": 1499827319559, "isWorking": True, "workingTime": 1499827319559, "origQuoteOrderQty": "0.000000",
    "selfTradePreventionMode": "NONE",
}  # fmt: skip


def test_order_query_and_open_orders_become_order_states() -> None:
    state = parse_order_state(QUERY)
    assert (state.symbol, state.venue_order_id, state.client_order_id, state.side, state.price, state.orig_qty) == (
        "LTCBTC", "1", "myOrder1", Side.BUY, d("0.1"), d("1")
    )  # fmt: skip
    assert state.order_status is OrderStatus.ACCEPTED and not state.is_final and state.is_working
    assert state.report(ACCOUNT) == VenueOrderAccepted(
        venue="BINANCE", client_order_id="myOrder1", account_id=ACCOUNT, symbol="LTCBTC", venue_order_id="1",
        ts=1499827319559 * MS,
    )  # fmt: skip
    assert parse_open_orders([QUERY, {**QUERY, "orderId": 2, "status": "PARTIALLY_FILLED"}])[1].order_status is (
        OrderStatus.PARTIALLY_FILLED
    )
    old = parse_order_state({**QUERY, "cummulativeQuoteQty": "-1.00000000", "status": "EXPIRED", "type": "MARKET"})
    assert old.cum_quote_qty is None and old.report(ACCOUNT).reason is R.NO_LIQUIDITY  # type: ignore[union-attr]
    stp = parse_order_state({**QUERY, "status": "EXPIRED_IN_MATCH"})
    assert stp.order_status is OrderStatus.EXPIRED and stp.report(ACCOUNT).reason is R.SELF_TRADE_PREVENTED  # type: ignore[union-attr]


def test_my_trades_become_fills_of_the_order_the_caller_names() -> None:
    rows = [{"symbol": "BNBBTC", "id": 28457, "orderId": 100234, "orderListId": -1, "price": "4.00000100",
             "qty": "12.00000000", "quoteQty": "48.000012", "commission": "10.10000000", "commissionAsset": "BNB",
             "time": 1499865549590, "isBuyer": True, "isMaker": False, "isBestMatch": True}]  # fmt: skip
    [trade] = parse_my_trades(rows)
    assert trade == AccountTrade(symbol="BNBBTC", trade_id=28457, venue_order_id="100234", side=Side.BUY,
                                 price=d("4.000001"), qty=d("12"), quote_qty=d("48.000012"), fee=d("10.1"),
                                 fee_asset="BNB", liquidity=Liquidity.TAKER, ts=1499865549590 * MS)  # fmt: skip
    fill = trade.to_report(client_order_id="b1", account_id=ACCOUNT, leaves_qty=0)
    assert (fill.client_order_id, fill.trade_id, fill.venue_order_id, fill.venue) == ("b1", 28457, "100234", "BINANCE")


def test_account_information_becomes_balances() -> None:
    info = {"updateTime": 123456789, "balances": [{"asset": "BTC", "free": "4723846.89208129", "locked": "0.00000000"},
                                                  {"asset": "LTC", "free": "4763368.68006011", "locked": "0"}]}  # fmt: skip
    assert parse_account_balances(info, ACCOUNT) == [
        VenueBalance(venue="BINANCE", account_id=ACCOUNT, asset="BTC", free=d("4723846.89208129"), locked=0,
                     ts=123456789 * MS),
        VenueBalance(venue="BINANCE", account_id=ACCOUNT, asset="LTC", free=d("4763368.68006011"), locked=0,
                     ts=123456789 * MS),
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"x": "REPLACED"}, "unsupported execution type 'x' 'REPLACED'"),
        ({"x": "TRADE", "X": "PARTIALLY_FILLED", "t": -1, "l": "0.1", "L": "1", "z": "0.1"}, "trade id 't'"),
        ({"x": "TRADE", "X": "PARTIALLY_FILLED", "t": 1, "l": "0.1", "L": "1", "z": "0.1", "n": "0.1", "N": None},
         "commission 'n'"),
        ({"x": "TRADE", "X": "PARTIALLY_FILLED", "t": 1, "l": "0.1", "L": "1", "z": "2"}, "exceeds the order quantity"),
        ({"x": "TRADE", "X": "FILLED", "t": 1, "l": "0", "L": "1"}, "field 'l'"),
        ({"x": "TRADE", "X": "FILLED", "t": 1, "l": "0.1", "L": "NaN"}, "field 'L'"),
        ({"X": "ALMOST"}, "field 'X' is not a Binance order status"),
        ({"s": ""}, "field 's'"),
        ({"i": "4293153"}, "field 'i' must be an integer"),
        ({"T": "1499405658657"}, "field 'T' must be an integer"),
    ],
)  # fmt: skip
def test_bad_execution_reports_name_the_field(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        parse_execution_report(_report(**changes), ACCOUNT)
    assert str(info.value).startswith("executionReport")


def test_bad_user_events_and_answers_name_what_is_wrong() -> None:
    missing = _report()
    del missing["c"]
    with pytest.raises(DataError, match="missing field 'c'"):
        parse_user_event(missing, ACCOUNT)
    with pytest.raises(DataError, match="unsupported event type 'somethingNew'"):
        parse_user_event({"e": "somethingNew"}, ACCOUNT)
    with pytest.raises(DataError, match="no event type"):
        parse_user_event({"subscriptionId": 0, "event": {"E": 1}}, ACCOUNT)
    with pytest.raises(DataError, match="not valid JSON"):
        parse_user_event(b"{nope", ACCOUNT)
    with pytest.raises(DataError, match=r"outboundAccountPosition B\[0\]: field 'f'"):
        parse_user_event({"e": "outboundAccountPosition", "E": 1, "u": 1, "B": [{"a": "BTC", "f": "-1", "l": "0"}]},
                         ACCOUNT)  # fmt: skip
    with pytest.raises(DataError, match=r"order response fills\[1\]: missing field 'tradeId'"):
        broken = copy.deepcopy(REST_FULL)
        del broken["fills"][1]["tradeId"]  # type: ignore[index, attr-defined]
        parse_order_response(broken, ACCOUNT)
    with pytest.raises(DataError, match="more than executedQty"):
        parse_order_response({**REST_FULL, "executedQty": "9"}, ACCOUNT)
    with pytest.raises(DataError, match=r"myTrades\[0\]: field 'isMaker'"):
        parse_my_trades([{"symbol": "X", "id": 1, "orderId": 1, "price": "1", "qty": "1", "quoteQty": "1",
                          "commission": "0", "commissionAsset": "BNB", "time": 1, "isBuyer": True, "isMaker": "no"}])  # fmt: skip
    with pytest.raises(DataError, match="field 'side' must be BUY or SELL"):
        parse_order_state({**QUERY, "side": "HOLD"})
    with pytest.raises(DataError, match="openOrders: expected a JSON list"):
        parse_open_orders({})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- through the kernel


def test_binance_reports_drive_a_kernel_order_to_filled_once_whatever_repeats() -> None:
    config = engine_config().kernel_config()
    fields = {f: getattr(config, f) for f in KernelConfig.__dataclass_fields__}
    kernel = TradingKernel(KernelConfig(**{**fields, "reference_prices": {"BTCUSDT": d("60000")}}))
    btc, usdt = kernel.ledger.free(ACCOUNT, "BTC"), kernel.ledger.free(ACCOUNT, "USDT")
    kernel.apply(place("b1", "BUY", "0.002", "60000"))
    kernel.take_outbox()
    answer = {"symbol": "BTCUSDT", "orderId": 991, "clientOrderId": "b1", "transactTime": 1700000000001,
              "price": "60000", "origQty": "0.002", "executedQty": "0.002", "origQuoteOrderQty": "0",
              "cummulativeQuoteQty": "119.99", "status": "FILLED", "timeInForce": "GTC", "type": "LIMIT", "side": "BUY",
              "fills": [{"price": "59990", "qty": "0.001", "commission": "0.05999", "commissionAsset": "USDT",
                         "tradeId": 7001},
                        {"price": "60000", "qty": "0.001", "commission": "0.06", "commissionAsset": "USDT",
                         "tradeId": 7002}]}  # fmt: skip
    stream = [
        _report(s="BTCUSDT", c="b1", x="NEW", X="NEW", i=991, T=1700000000001),
        _report(s="BTCUSDT", c="b1", x="TRADE", X="PARTIALLY_FILLED", i=991, t=7001, q="0.002", z="0.001",
                l="0.001", L="59990", n="0.05999", N="USDT", m=False, T=1700000000001),
        _report(s="BTCUSDT", c="b1", x="TRADE", X="FILLED", i=991, t=7002, q="0.002", z="0.002", l="0.001",
                L="60000", n="0.06", N="USDT", m=False, T=1700000000001),
    ]  # fmt: skip
    reports = parse_order_response(answer, ACCOUNT)
    for raw in stream:
        reports += parse_user_event(raw, ACCOUNT)  # type: ignore[arg-type]
    for report in reports:  # the answer and the stream both report the same order: booked once
        kernel.apply(report)
    order = kernel.oms.get(ACCOUNT, "b1")
    assert order is not None and order.status is OrderStatus.FILLED and order.filled == d("0.002")
    assert kernel.ledger.locked(ACCOUNT, "USDT") == 0
    assert kernel.ledger.free(ACCOUNT, "BTC") == btc + d("0.002")
    assert kernel.ledger.free(ACCOUNT, "USDT") == usdt - d("59.99") - d("60") - d("0.05999") - d("0.06")


def test_an_account_update_row_beyond_what_veloz_holds_is_left_out_and_the_others_read() -> None:
    """25 billion SHIB (10**10 units or more) cannot be a VeloZ balance; with ``unreadable`` the row is left out and
    named, and every other row of the event is read (without, the event raises as before)."""
    rows = [{"a": "SHIB", "f": "25000000000", "l": "0"}, {"a": "USDT", "f": "1.5", "l": "0.5"}, ["junk"]]
    event = {"e": "outboundAccountPosition", "E": 1, "u": 2, "B": rows}
    unread: list[tuple[str, str]] = []
    [usdt] = parse_user_event(event, ACCOUNT, unreadable=unread)
    assert isinstance(usdt, VenueBalance)
    assert (usdt.asset, usdt.free, usdt.locked, usdt.ts) == ("USDT", d("1.5"), d("0.5"), 2 * MS)
    assert [asset for asset, _ in unread] == ["SHIB", "B[2]"] and "too large" in unread[0][1]
    with pytest.raises(DataError, match=r"outboundAccountPosition B\[0\]"):
        parse_user_event(event, ACCOUNT)


def test_every_documented_user_data_event_type_is_read(shared_data: Path) -> None:
    """user-data-stream.md names these event types; an event of any other is one Binance added since."""
    doc = (shared_data / "binance-api" / "official-spot-docs" / "user-data-stream.md").read_text()
    documented = set(re.findall(r'"e":\s*"(\w+)"', doc))
    assert documented and documented <= USER_EVENT_TYPES
