"""Binance error codes -> what the adapter does: reject (with which reason), query an unknown outcome, resync the clock
and retry once, back off, or halt."""

from __future__ import annotations

import pytest

from veloz_actors.messages import RejectReason
from veloz_actors.venues.binance.errors import CODE_NAMES, Outcome, classify

R = RejectReason


@pytest.mark.parametrize(
    ("http", "code", "msg", "reason"),
    [
        (400, -2010, "Account has insufficient balance for requested action.", R.INSUFFICIENT_FUNDS),
        (400, -2010, "Order would immediately match and take.", R.WOULD_TAKE_LIQUIDITY),
        (400, -2010, "Duplicate order sent.", R.DUPLICATE_CLIENT_ORDER_ID),
        (400, -2010, "Market is closed.", R.HALTED),
        (400, -2010, "Order would trigger immediately.", R.VENUE_REJECTED),
        (400, -2010, "Order book liquidity is less than `LOT_SIZE` filter minimum quantity.", R.NO_LIQUIDITY),
        (400, -2010, "Something new Binance says.", R.VENUE_REJECTED),
        (400, -2011, "Unknown order sent.", R.ORDER_NOT_OPEN),
        (400, -2011, "Order was not canceled due to cancel restrictions.", R.VENUE_REJECTED),
        (400, -2013, "Order does not exist.", R.UNKNOWN_ORDER),
        (400, -2026, "Order was canceled or expired with no executed qty over 90 days ago and has been archived.",
         R.ORDER_NOT_OPEN),
        (400, -1013, "Filter failure: PRICE_FILTER", R.INVALID_PRICE),
        (400, -1013, "Filter failure: PERCENT_PRICE_BY_SIDE", R.PRICE_BAND),
        (400, -1013, "Filter failure: LOT_SIZE", R.INVALID_QUANTITY),
        (400, -1013, "Filter failure: MARKET_LOT_SIZE", R.INVALID_QUANTITY),
        (400, -1013, "Filter failure: MIN_NOTIONAL", R.NOTIONAL_BELOW_MINIMUM),
        (400, -1013, "Filter failure: NOTIONAL", R.NOTIONAL_BELOW_MINIMUM),  # the maximum is checked before sending
        (400, -1013, "Filter failure: MAX_NUM_ORDERS", R.VENUE_REJECTED),
        (400, -1013, "Filter failure: MAX_POSITION", R.MAX_POSITION),
        (400, -1111, "Parameter 'price' has too much precision.", R.INVALID_PRICE),
        (400, -1111, "Parameter 'quantity' has too much precision.", R.INVALID_QUANTITY),
        (400, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[a-z]{1,36}$'.",
         R.VENUE_REJECTED),
        (400, -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.", R.VENUE_REJECTED),
        (400, -1121, "Invalid symbol.", R.UNKNOWN_SYMBOL),
        (400, -1008, "Server is currently overloaded with other requests. Please try again in a few minutes.",
         R.OVERLOADED),
        (403, None, None, R.VENUE_REJECTED),  # the WAF
    ],
)  # fmt: skip
def test_rejections_map_to_reasons_that_exist(http: int, code: int | None, msg: str | None, reason: R) -> None:
    outcome = classify(http, code, msg)
    assert outcome.reject_reason is reason
    assert not (outcome.unknown_outcome or outcome.fatal or outcome.rate_limited or outcome.retry_after_clock_sync)
    assert isinstance(outcome.reject_reason, RejectReason)


def test_every_5xx_is_an_unknown_outcome_whatever_its_code() -> None:
    # rest-api.md: a 5xx "is NOT a failure: the execution status is UNKNOWN", so even a -1008 (busy) that comes
    # with one is queried before anything is released
    assert classify(503, -1008, "busy").unknown_outcome
    assert classify(503, -2010, "Account has insufficient balance for requested action.").unknown_outcome
    assert classify(503, None, None).unknown_outcome


@pytest.mark.parametrize(
    ("http", "code", "msg"),
    [
        (None, -1007, "Timeout waiting for response from backend server. Send status unknown; execution status unknown."),
        (500, -1006, "An unexpected response was received from the message bus. Execution status unknown."),
        (500, -1000, "An unknown error occurred while processing the request."),
        (500, -1001, "Internal error; unable to process your request. Please try again."),
        (502, None, None),
        (504, None, "Gateway Time-out"),
        (400, -1007, "Timeout waiting for response from backend server."),
    ],
)  # fmt: skip
def test_unknown_outcomes_are_queried_never_resent(http: int | None, code: int | None, msg: str | None) -> None:
    outcome = classify(http, code, msg)
    assert outcome.unknown_outcome and outcome.reject_reason is None
    assert not outcome.retry_after_clock_sync and not outcome.fatal


def test_timestamp_outside_recv_window_resyncs_and_retries_once() -> None:
    for msg in ("Timestamp for this request is outside of the recvWindow.",
                "Timestamp for this request was 1000ms ahead of the server's time."):  # fmt: skip
        outcome = classify(400, -1021, msg)
        assert outcome.retry_after_clock_sync and not outcome.unknown_outcome and not outcome.fatal
        assert outcome.reject_reason is R.VENUE_REJECTED  # if the retry fails too
        assert outcome.detail.startswith("-1021 INVALID_TIMESTAMP: ")


@pytest.mark.parametrize(
    ("http", "code", "msg"),
    [
        (400, -1022, "Signature for this request is not valid."),
        (401, -2015, "Invalid API-key, IP, or permissions for action."),
        (400, -2014, "API-key format invalid."),
        (401, -1002, "You are not authorized to execute this request."),
        (400, -2010, "This account may not place or cancel orders."),
        (400, -2010, "WebSocket API trading is not enabled."),
    ],
)
def test_bad_credentials_and_disabled_trading_are_fatal(http: int, code: int, msg: str) -> None:
    outcome = classify(http, code, msg)
    assert outcome.fatal and outcome.reject_reason is R.VENUE_REJECTED and not outcome.unknown_outcome


@pytest.mark.parametrize(
    ("http", "code", "msg"),
    [
        (429, -1003, "Too much request weight used; current limit is 6000 request weight per 1 MINUTE."),
        (418, -1003, "Way too much request weight used; IP banned until 1659146400000."),
        (429, None, None),
        (400, -1015, "Too many new orders; current limit is 50 orders per 10 SECOND."),
    ],
)
def test_rate_limits_reject_rate_limit(http: int, code: int | None, msg: str | None) -> None:
    outcome = classify(http, code, msg)
    assert outcome.rate_limited and outcome.reject_reason is R.RATE_LIMIT and not outcome.fatal


@pytest.mark.parametrize(
    ("http", "code", "order_count"),
    [
        (429, -1015, True),  # "Too many new orders": the account's unfilled-order count
        (400, -1015, True),
        (429, -1003, False),  # the IP's request weight
        (418, -1003, False),
        (429, None, False),  # no code: cannot be told apart, so it counts as the IP's
        (429, -1034, False),
    ],
)
def test_only_the_unfilled_order_count_limits_new_orders_alone(http: int, code: int | None, order_count: bool) -> None:
    outcome = classify(http, code, "Too many new orders; current limit is 100 orders per 10 SECOND.")
    assert outcome.rate_limited and outcome.reject_reason is R.RATE_LIMIT
    assert outcome.order_count_limited is order_count


def test_detail_names_code_and_message_and_never_echoes_secrets_or_long_tokens() -> None:
    outcome = classify(400, -2010, "Account has insufficient balance for requested action.")
    assert outcome.detail == "-2010 NEW_ORDER_REJECTED: Account has insufficient balance for requested action."
    signature = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    key = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
    b64 = "EocljwPl29jDxWYaaRaOo4pJ9wEblFbklJvPugNscLLuKd5vHM2grWjn1z%2BrY0aJ7r%2F44enxHL6mOAJuJ1kqCg%3D%3D"
    detail = classify(400, -1022, f"bad signature {signature} for key {key} sig={b64}").detail
    assert signature not in detail and key not in detail and b64 not in detail and "…" in detail
    assert len(classify(400, -1100, "x " * 500).detail) <= 200
    assert classify(403, None, "").detail == "HTTP 403"
    assert classify(400, -9999, "new").detail == "-9999 ERROR: new"


def test_outcome_is_a_frozen_value() -> None:
    outcome = classify(400, -2010, "Duplicate order sent.")
    assert outcome == Outcome(R.DUPLICATE_CLIENT_ORDER_ID, detail="-2010 NEW_ORDER_REJECTED: Duplicate order sent.")
    with pytest.raises(AttributeError):
        outcome.fatal = True  # type: ignore[misc]
    assert CODE_NAMES[-1021] == "INVALID_TIMESTAMP"
