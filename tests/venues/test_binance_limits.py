"""Binance rate limits: exchangeInfo limits, header counts on exchange time, 429/418 blocks, order and weight
pre-checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veloz_actors import DataError
from veloz_actors.venues.binance.limits import (
    ORDERS,
    RAW_REQUESTS,
    REQUEST_WEIGHT,
    RateLimit,
    RateLimits,
    parse_rate_limits,
)

T0 = 1_700_000_040_000  # exactly on a minute boundary (and on a 10 s one)
DAY = 86_400_000

# web-socket-api.md's rateLimits example plus exchangeInfo's RAW_REQUESTS row (enums.md)
EXCHANGE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
]


def _limits(**kwargs: object) -> RateLimits:
    return RateLimits.from_exchange_info({"rateLimits": EXCHANGE_LIMITS}, **kwargs)


def test_limits_come_from_exchange_info(shared_data: Path) -> None:
    info = json.loads(
        (shared_data / "binance-api" / "examples-nautilus" / "http_spot_market_exchange_info.json").read_text()
    )
    parsed = parse_rate_limits(info)
    assert parsed and all(limit.kind in (REQUEST_WEIGHT, ORDERS, RAW_REQUESTS) for limit in parsed)
    assert parse_rate_limits(EXCHANGE_LIMITS) == (
        RateLimit(REQUEST_WEIGHT, 60_000, 6000),
        RateLimit(ORDERS, 10_000, 50),
        RateLimit(ORDERS, DAY, 160000),
        RateLimit(RAW_REQUESTS, 300_000, 61000),
    )
    assert [limit.label for limit in parse_rate_limits(EXCHANGE_LIMITS)] == ["1m", "10s", "1d", "5m"]


def test_unknown_limiter_types_are_skipped_and_malformed_rows_named() -> None:
    assert parse_rate_limits([{"rateLimitType": "NEW_KIND", "interval": "MINUTE", "intervalNum": 1, "limit": 1}]) == ()
    bad = [
        ({}, "rateLimits"),
        (
            [{"rateLimitType": "ORDERS", "interval": "WEEK", "intervalNum": 1, "limit": 5}],
            r"rateLimits\[0\].*'interval'",
        ),
        ([{"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 0, "limit": 5}], "'intervalNum'"),
        ([{"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": "5"}], "'limit'"),
        ([{"interval": "DAY", "intervalNum": 1, "limit": 5}], "'rateLimitType'"),
        (["x"], "expected a JSON object"),
    ]
    for rows, match in bad:
        with pytest.raises(DataError, match=match):
            parse_rate_limits(rows)


def test_header_counts_of_any_interval_are_tracked_in_any_case() -> None:
    limits = _limits()
    limits.on_headers(
        {"X-MBX-USED-WEIGHT-1M": "321", "x-mbx-order-count-10s": "12", "X-Mbx-Order-Count-1D": "4043",
         "X-MBX-USED-WEIGHT-5S": "7", "Content-Type": "application/json"},
        T0 + 500,
    )  # fmt: skip
    assert limits.used(REQUEST_WEIGHT, 60_000, T0 + 500) == 321
    assert limits.used(ORDERS, 10_000, T0 + 500) == 12
    assert limits.used(ORDERS, DAY, T0 + 500) == 4043
    assert limits.used(REQUEST_WEIGHT, 5_000, T0 + 500) == 7  # tracked although exchangeInfo has no such limit
    status = limits.status(T0 + 500)
    assert {"type": "REQUEST_WEIGHT", "interval": "5s", "limit": None, "used": 7} in status["windows"]
    assert {"type": "ORDERS", "interval": "10s", "limit": 50, "used": 12} in status["windows"]


def test_windows_roll_over_on_exchange_time_aligned_to_the_clock() -> None:
    limits = _limits()
    limits.on_headers({"X-MBX-USED-WEIGHT-1M": "5990", "X-MBX-ORDER-COUNT-10S": "50"}, T0 + 59_000)
    assert not limits.allow_request(20, T0 + 59_999)
    assert not limits.allow_order(T0 + 9_999 + 50_000)
    assert limits.allow_request(20, T0 + 60_000)  # the next minute: weight resets
    assert limits.used(REQUEST_WEIGHT, 60_000, T0 + 60_000) == 0
    assert limits.allow_order(T0 + 60_000)  # the next 10 s window


def test_local_counts_and_exchange_counts_keep_the_higher_within_a_window() -> None:
    limits = _limits()
    for _ in range(3):
        limits.note_request(T0 + 1, weight=4)
    assert limits.used(REQUEST_WEIGHT, 60_000, T0 + 1) == 12
    assert limits.used(RAW_REQUESTS, 300_000, T0 + 1) == 3
    limits.on_headers({"X-MBX-USED-WEIGHT-1M": "8"}, T0 + 2)  # two of ours still in flight
    assert limits.used(REQUEST_WEIGHT, 60_000, T0 + 2) == 12
    limits.on_headers({"X-MBX-USED-WEIGHT-1M": "100"}, T0 + 3)  # another client of the same IP
    assert limits.used(REQUEST_WEIGHT, 60_000, T0 + 3) == 100
    limits.note_order(T0 + 4)
    assert (limits.used(ORDERS, 10_000, T0 + 4), limits.used(ORDERS, DAY, T0 + 4)) == (1, 1)
    assert limits.used(REQUEST_WEIGHT, 60_000, T0 + 4) == 101


def test_allow_order_refuses_beyond_the_order_count_limit_in_any_window() -> None:
    limits = _limits()
    for i in range(50):
        assert limits.allow_order(T0 + i)
        limits.note_order(T0 + i)
    assert not limits.allow_order(T0 + 50)
    assert limits.status(T0 + 50)["refused_orders"] == 1
    assert limits.allow_request(1, T0 + 50)  # other requests still go
    # the daily count binds too, whatever the 10-second window says
    daily = _limits()
    daily.on_headers({"X-MBX-ORDER-COUNT-1D": "160000"}, T0)
    assert not daily.allow_order(T0 + 30_000)
    assert daily.allow_order(T0 - T0 % DAY + DAY)  # 00:00 UTC


def test_weight_pre_check_for_a_request_of_known_weight() -> None:
    limits = _limits()
    limits.on_headers({"X-MBX-USED-WEIGHT-1M": "5980"}, T0)
    assert limits.allow_request(20, T0)
    assert not limits.allow_request(21, T0)
    assert not limits.allow_order(T0, weight=21)
    assert limits.wait_for(T0 + 15_000, weight=21) == 45.0  # the rest of the minute
    assert limits.wait_for(T0 + 15_000, weight=20) == 0.0


@pytest.mark.parametrize("status", [429, 418])
def test_nothing_is_allowed_between_a_429_or_418_and_its_retry_after(status: int) -> None:
    limits = _limits()
    limits.on_response(status, {"Retry-After": "90"}, T0 + 1_000)  # every window has room: only the block refuses
    until = T0 + 91_000
    assert limits.blocked_until_ms == until
    for t in (T0 + 1_000, T0 + 1_001, T0 + 59_999, T0 + 60_000, T0 + 75_000, until - 1):  # across a window roll
        assert limits.blocked(t)
        assert not limits.allow_request(1, t)
        assert not limits.allow_request(0, t)
        assert not limits.allow_order(t, weight=0)
        assert limits.wait_for(t, weight=0) == (until - t) / 1000
    assert not limits.blocked(until) and limits.wait_for(until) == 0.0
    assert limits.allow_order(until) and limits.allow_request(1, until)
    status_key = "too_many_requests" if status == 429 else "bans"
    assert limits.status(T0 + 1_000)[status_key] == 1
    assert limits.status(T0 + 1_000)["blocked_until_ms"] == until and limits.status(until)["blocked_until_ms"] is None


def test_an_order_count_429_holds_back_new_orders_only() -> None:
    """-1015 "Too many new orders" is the account's unfilled-order count, not the IP's weight: cancels and queries
    go on until its Retry-After, new orders do not."""
    limits = _limits()
    limits.on_response(429, {"Retry-After": "8"}, T0 + 1_000, orders_only=True)
    until = T0 + 9_000
    assert limits.orders_blocked_until_ms == until and limits.blocked_until_ms == 0
    for t in (T0 + 1_000, until - 1):
        assert not limits.blocked(t) and limits.orders_blocked(t)
        assert limits.allow_request(1, t) and limits.wait_for(t, weight=1) == 0.0
        assert not limits.allow_order(t) and limits.wait_for(t, weight=1, order=True) == (until - t) / 1000
    assert limits.allow_order(until) and limits.wait_for(until, order=True) == 0.0
    status = limits.status(T0 + 1_000)
    assert status["orders_blocked_until_ms"] == until and status["blocked_until_ms"] is None
    assert (status["too_many_requests"], status["too_many_orders"]) == (1, 1)
    # the WebSocket API's retryAfter (epoch ms); a 418 is the IP's ban whatever it says
    limits.on_response(429, {}, T0 + 10_000, retry_after_ms=T0 + 20_000, orders_only=True)
    assert limits.orders_blocked(T0 + 19_999) and not limits.blocked(T0 + 19_999)
    limits.on_response(418, {"Retry-After": "5"}, T0 + 10_000, orders_only=True)
    assert limits.blocked(T0 + 14_999) and not limits.allow_request(1, T0 + 14_999)


def test_a_later_block_is_never_shortened_and_missing_retry_after_backs_off() -> None:
    limits = _limits(default_backoff_ms=10_000, ban_backoff_ms=120_000)
    limits.on_response(429, {}, T0)
    assert limits.blocked_until_ms == T0 + 10_000
    limits.on_response(418, {"retry-after": "soon"}, T0 + 1)
    assert limits.blocked_until_ms == T0 + 1 + 120_000 and limits.bad_headers == 1
    limits.on_response(429, {"Retry-After": "1"}, T0 + 2)
    assert limits.blocked_until_ms == T0 + 1 + 120_000  # the ban stays
    limits.on_response(429, {"Retry-After": "0.5"}, T0 + 200_000)
    assert limits.blocked_until_ms == T0 + 200_500


def test_ws_api_rate_limits_and_retry_after_epoch() -> None:
    limits = RateLimits()
    rows = [
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50, "count": 50},
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000, "count": 321},
        {"rateLimitType": "ORDERS", "interval": "DAY"},  # malformed: counted, skipped
    ]
    limits.on_ws_rate_limits(rows, T0)
    assert limits.bad_headers == 1
    assert not limits.allow_order(T0 + 1) and limits.allow_request(1, T0 + 1)
    # web-socket-api.md: a 418 whose error data carries retryAfter (epoch ms)
    limits.on_response(418, {}, 1659142907531, retry_after_ms=1659146400000)
    assert limits.blocked(1659146399999) and not limits.blocked(1659146400000)


def test_a_retry_after_beyond_any_real_ban_is_a_bad_header_not_a_block_for_ever() -> None:
    """Binance bans for 2 minutes to 3 days: a Retry-After (or the WebSocket API's retryAfter) beyond that is a
    malformed answer. Taken as said, it held back every order and every cancel until the engine was restarted."""
    limits = _limits(default_backoff_ms=10_000, ban_backoff_ms=120_000)
    limits.on_response(429, {"Retry-After": "1000000000"}, T0)  # 31 years
    assert limits.blocked_until_ms == T0 + 10_000 and limits.bad_headers == 1
    limits.on_response(418, {}, T0 + 1, retry_after_ms=T0 + 4 * 86_400_000)  # 4 days
    assert limits.blocked_until_ms == T0 + 1 + 120_000 and limits.bad_headers == 2
    limits.on_response(429, {}, T0 + 2, retry_after_ms=10**18, orders_only=True)
    assert limits.orders_blocked_until_ms == T0 + 2 + 10_000 and limits.bad_headers == 3
    limits.on_response(418, {"Retry-After": str(3 * 86_400)}, T0 + 3)  # the longest real ban stands
    assert limits.blocked_until_ms == T0 + 3 + 3 * 86_400_000 and limits.bad_headers == 3


def test_malformed_headers_are_counted_not_raised() -> None:
    limits = _limits()
    limits.on_response(200, {"X-MBX-USED-WEIGHT-1M": "lots", "X-MBX-ORDER-COUNT-10S": "-1"}, T0)
    assert limits.bad_headers == 2 and limits.used(REQUEST_WEIGHT, 60_000, T0) == 0


def test_new_limits_replace_old_ones_and_keep_counts() -> None:
    limits = _limits()
    limits.note_request(T0, weight=100)
    limits.set_limits([RateLimit(REQUEST_WEIGHT, 60_000, 100)])
    assert limits.limits == (RateLimit(REQUEST_WEIGHT, 60_000, 100),)
    assert not limits.allow_request(1, T0) and limits.allow_order(T0, weight=0)
