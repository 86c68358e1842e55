"""Binance rate limits, tracked the way the exchange counts them (``rest-api.md`` "LIMITS", ``web-socket-api.md``
"Rate limits", ``enums.md`` "Rate limiters").

* **Limits** come from exchangeInfo's ``rateLimits``: ``REQUEST_WEIGHT`` (per IP), ``ORDERS`` (unfilled order count,
  per account) and ``RAW_REQUESTS``, each over ``intervalNum`` x ``interval`` (``SECOND``, ``MINUTE``, ``HOUR``,
  ``DAY``). Types Binance may add later are ignored, not guessed at.
* **Windows** are aligned to the clock, as Binance aligns them: a 1-minute window starts every minute, ``10 SECOND``
  resets at :00, :10, :20..., ``1 DAY`` at 00:00 UTC (so a window is ``[t - t % length, + length)`` in epoch ms).
  Every time is passed in, in the exchange's milliseconds (the caller's clock plus its measured offset): nothing here
  reads a clock, so a window rolls over exactly when the exchange's does.
* **Usage** is counted locally as requests go out (:meth:`RateLimits.note_request`, :meth:`RateLimits.note_order`) and
  corrected by the exchange's own counts, which are authoritative: the ``X-MBX-USED-WEIGHT-(n)(unit)`` and
  ``X-MBX-ORDER-COUNT-(n)(unit)`` response headers (any interval: ``-1M``, ``-10S``, ``-1D``...) or a WebSocket API
  response's ``rateLimits`` array. Within one window the higher of the two counts is kept (requests still in flight
  are in the local count, other clients of the same IP only in the exchange's).
* **429 / 418**: ``Retry-After`` (seconds; the WebSocket API's ``retryAfter`` is an epoch time in ms) blocks *every*
  request until then: :attr:`RateLimits.blocked_until_ms`, :meth:`RateLimits.wait_for`. Without a usable header the
  block is ``default_backoff_ms`` after a 429 and ``ban_backoff_ms`` (Binance's shortest ban, 2 minutes) after a 418;
  one beyond :data:`MAX_RETRY_AFTER_MS` (3 days, Binance's longest ban) is a malformed header, not a block for years.
  A 429 for the account's unfilled-order count (-1015 "Too many new orders", ``on_response(..., orders_only=True)``)
  is not an IP limit: it blocks new orders only (:attr:`RateLimits.orders_blocked_until_ms`,
  ``wait_for(..., order=True)``), so cancels and queries go on.
* **Pre-checks**: :meth:`RateLimits.allow_request` (a request of known weight: every weight window and the raw
  request count must have room) and :meth:`RateLimits.allow_order` (also no order-count block, and one more order in
  every ``ORDERS`` window).
  The caller rejects an order refused here with reason ``RATE_LIMIT`` instead of sending it.
* A malformed header is counted (``status()["bad_headers"]``) and otherwise ignored: it must not lose the response
  it came with.

>>> limits = RateLimits.from_exchange_info({"rateLimits": [
...     {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 2}]})
>>> limits.allow_order(1_000), limits.note_order(1_000), limits.note_order(2_000), limits.allow_order(9_999)
(True, None, None, False)
>>> limits.allow_order(10_000)  # the 10-second window rolled over
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..._exceptions import DataError

__all__ = [
    "KINDS",
    "MAX_RETRY_AFTER_MS",
    "ORDERS",
    "RAW_REQUESTS",
    "REQUEST_WEIGHT",
    "RateLimit",
    "RateLimits",
    "depth_weight",
    "parse_rate_limits",
]

REQUEST_WEIGHT = "REQUEST_WEIGHT"
ORDERS = "ORDERS"
RAW_REQUESTS = "RAW_REQUESTS"
KINDS = (REQUEST_WEIGHT, ORDERS, RAW_REQUESTS)
#: the longest block a 429 / 418 can ask for: Binance's longest IP ban ("from 2 minutes to 3 days", rest-api.md)
MAX_RETRY_AFTER_MS = 3 * 86_400_000

_UNIT_MS = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
_LETTER_UNIT = {"S": "SECOND", "M": "MINUTE", "H": "HOUR", "D": "DAY"}
_UNIT_LETTER = {ms: unit[0].lower() for unit, ms in _UNIT_MS.items()}
_HEADER = re.compile(r"^x-mbx-(used-weight|order-count)-([1-9][0-9]*)([smhd])$", re.IGNORECASE)
_HEADER_KIND = {"used-weight": REQUEST_WEIGHT, "order-count": ORDERS}


def depth_weight(limit: int) -> int:
    """The request weight of ``GET /api/v3/depth`` with ``limit`` (rest-api.md, "Order book")."""
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def _interval_label(interval_ms: int) -> str:
    """``60000`` -> ``"1m"``, ``10000`` -> ``"10s"``, ``86400000`` -> ``"1d"``: the header's form, lower case."""
    for unit_ms in sorted(_UNIT_LETTER, reverse=True):
        if interval_ms % unit_ms == 0:
            return f"{interval_ms // unit_ms}{_UNIT_LETTER[unit_ms]}"
    return f"{interval_ms}ms"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One limiter: at most ``limit`` of ``kind`` per aligned window of ``interval_ms``."""

    kind: str
    interval_ms: int
    limit: int

    @property
    def label(self) -> str:
        return _interval_label(self.interval_ms)


def _row_int(row: Mapping[str, Any], key: str, what: str, *, minimum: int) -> int:
    value = row.get(key)
    if type(value) is not int or value < minimum:
        raise DataError(f"{what}: field {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _row_interval(row: Mapping[str, Any], what: str) -> int:
    unit = row.get("interval")
    if unit not in _UNIT_MS:
        raise DataError(f"{what}: field 'interval' must be one of {', '.join(_UNIT_MS)}, got {unit!r}")
    return _UNIT_MS[unit] * _row_int(row, "intervalNum", what, minimum=1)


def parse_rate_limits(rows: Any) -> tuple[RateLimit, ...]:
    """exchangeInfo's ``rateLimits`` array (or the whole exchangeInfo object) as :class:`RateLimit` values; rows of a
    type other than ``REQUEST_WEIGHT``, ``ORDERS`` and ``RAW_REQUESTS`` are skipped. :class:`DataError` names the row
    and field of anything malformed."""
    if isinstance(rows, Mapping):
        if "rateLimits" not in rows:
            raise DataError("exchangeInfo: missing field 'rateLimits'")
        rows = rows["rateLimits"]
    if type(rows) is not list:
        raise DataError(f"rateLimits: expected a JSON list, got {rows!r:.120}")
    out = []
    for i, row in enumerate(rows):
        what = f"rateLimits[{i}]"
        if not isinstance(row, Mapping):
            raise DataError(f"{what}: expected a JSON object, got {row!r:.120}")
        kind = row.get("rateLimitType")
        if not isinstance(kind, str):
            raise DataError(f"{what}: field 'rateLimitType' must be a string, got {kind!r}")
        if kind not in KINDS:
            continue
        out.append(RateLimit(kind, _row_interval(row, what), _row_int(row, "limit", what, minimum=0)))
    return tuple(out)


class _Counter:
    __slots__ = ("window_start", "count")

    def __init__(self) -> None:
        self.window_start = -1
        self.count = 0


class RateLimits:
    """Request weight, raw request and order counts per window, the limits they are held to, and any 429/418 block.

    Not thread-safe: one owner (the trading client's event loop) calls it.
    """

    def __init__(
        self, limits: Iterable[RateLimit] = (), *, default_backoff_ms: int = 60_000, ban_backoff_ms: int = 120_000
    ) -> None:
        self.default_backoff_ms = default_backoff_ms
        self.ban_backoff_ms = ban_backoff_ms
        self._limits: dict[tuple[str, int], int] = {}
        self._counters: dict[tuple[str, int], _Counter] = {}
        self.blocked_until_ms = 0
        self.orders_blocked_until_ms = 0  # a -1015 429: new orders only
        self.too_many_requests = 0  # 429s seen (-1015's included)
        self.too_many_orders = 0  # of which for the unfilled-order count
        self.bans = 0  # 418s seen
        self.refused_requests = 0
        self.refused_orders = 0
        self.bad_headers = 0
        self.set_limits(limits)

    @classmethod
    def from_exchange_info(cls, info: Any, **kwargs: Any) -> RateLimits:
        """From exchangeInfo (the object, or its ``rateLimits`` list)."""
        return cls(parse_rate_limits(info), **kwargs)

    def set_limits(self, limits: Iterable[RateLimit]) -> None:
        """Replace the limits (a fresh exchangeInfo); the counts so far are kept."""
        self._limits = {(lim.kind, lim.interval_ms): lim.limit for lim in limits}
        for key in self._limits:
            self._counters.setdefault(key, _Counter())

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        return tuple(RateLimit(kind, interval, limit) for (kind, interval), limit in sorted(self._limits.items()))

    # ----------------------------------------------------------------------------------------------------- counts

    def _counter(self, key: tuple[str, int], now_ms: int) -> _Counter:
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = _Counter()
        start = now_ms - now_ms % key[1]
        if counter.window_start != start:
            if start < counter.window_start:  # a time from an earlier window than the one counted: keep the later
                return counter
            counter.window_start = start
            counter.count = 0
        return counter

    def used(self, kind: str, interval_ms: int, now_ms: int) -> int:
        """The count of ``kind`` in the window of ``interval_ms`` that contains ``now_ms`` (0 once it rolled over)."""
        counter = self._counters.get((kind, interval_ms))
        if counter is None or counter.window_start != now_ms - now_ms % interval_ms:
            return 0
        return counter.count

    def _add(self, kind: str, amount: int, now_ms: int) -> None:
        if amount <= 0:
            return
        for key in [k for k in self._counters if k[0] == kind]:
            self._counter(key, now_ms).count += amount

    def note_request(self, now_ms: int, weight: int = 1) -> None:
        """A request of ``weight`` is being sent now: count its weight and one raw request in every window."""
        self._add(REQUEST_WEIGHT, weight, now_ms)
        self._add(RAW_REQUESTS, 1, now_ms)

    def note_order(self, now_ms: int, weight: int = 1) -> None:
        """An order is being sent now: one order in every ``ORDERS`` window, plus its request (``weight``)."""
        self._add(ORDERS, 1, now_ms)
        self.note_request(now_ms, weight)

    def _observe(self, kind: str, interval_ms: int, count: int, now_ms: int) -> None:
        counter = self._counter((kind, interval_ms), now_ms)
        if counter.window_start == now_ms - now_ms % interval_ms and count > counter.count:
            counter.count = count

    def on_headers(self, headers: Mapping[str, Any], now_ms: int) -> None:
        """The exchange's counts from a REST response's ``X-MBX-USED-WEIGHT-*`` / ``X-MBX-ORDER-COUNT-*`` headers
        (names in any case, any interval)."""
        for name, value in headers.items():
            match = _HEADER.match(name) if isinstance(name, str) else None
            if match is None:
                continue
            try:
                count = int(str(value).strip())
            except ValueError:
                self.bad_headers += 1
                continue
            if count < 0:
                self.bad_headers += 1
                continue
            interval = int(match.group(2)) * _UNIT_MS[_LETTER_UNIT[match.group(3).upper()]]
            self._observe(_HEADER_KIND[match.group(1).lower()], interval, count, now_ms)

    def on_ws_rate_limits(self, rows: Any, now_ms: int) -> None:
        """A WebSocket API response's ``rateLimits`` array: each row's ``count`` (and its ``limit``, which may be
        newer than exchangeInfo's). Malformed rows are counted as bad headers."""
        if type(rows) is not list:
            self.bad_headers += 1
            return
        for i, row in enumerate(rows):
            try:
                kind = row["rateLimitType"]
                interval = _row_interval(row, f"rateLimits[{i}]")
                count = _row_int(row, "count", f"rateLimits[{i}]", minimum=0)
                limit = _row_int(row, "limit", f"rateLimits[{i}]", minimum=0) if "limit" in row else None
            except (DataError, KeyError, TypeError):
                self.bad_headers += 1
                continue
            if kind not in KINDS:
                continue
            if limit is not None:
                self._limits[(kind, interval)] = limit
            self._observe(kind, interval, count, now_ms)

    # ----------------------------------------------------------------------------------------------- 429 and 418

    def on_response(
        self,
        status: int,
        headers: Mapping[str, Any],
        now_ms: int,
        *,
        retry_after_ms: int | None = None,
        orders_only: bool = False,
    ) -> None:
        """Everything a response says about limits: its count headers and, for a 429 or 418, the block until
        ``Retry-After`` seconds from now (or ``retry_after_ms``, an epoch time in ms, as the WebSocket API's error
        ``data.retryAfter`` gives it). ``orders_only``: the 429 is for the unfilled-order count (-1015), so the block
        holds back new orders only."""
        self.on_headers(headers, now_ms)
        if status not in (418, 429):
            return
        if status == 429:
            self.too_many_requests += 1
            if orders_only:
                self.too_many_orders += 1
        else:
            self.bans += 1
            orders_only = False  # a ban is the IP's: nothing goes
        until: int | None = retry_after_ms
        if until is not None and until > now_ms + MAX_RETRY_AFTER_MS:
            self.bad_headers += 1  # beyond any ban Binance gives: a malformed answer, not a block for years
            until = None
        elif until is None:
            seconds = _header(headers, "retry-after")
            if seconds is not None:
                try:
                    value = float(seconds)
                except ValueError:
                    value = math.nan
                if math.isfinite(value) and 0 <= value * 1000 <= MAX_RETRY_AFTER_MS:
                    until = now_ms + math.ceil(value * 1000)
                else:
                    self.bad_headers += 1
        if until is None:
            until = now_ms + (self.ban_backoff_ms if status == 418 else self.default_backoff_ms)
        if orders_only:
            self.block_orders_until(until)
        else:
            self.block_until(until)

    def block_until(self, until_ms: int) -> None:
        """Allow nothing before ``until_ms`` (a later block already in force stays)."""
        if until_ms > self.blocked_until_ms:
            self.blocked_until_ms = until_ms

    def block_orders_until(self, until_ms: int) -> None:
        """Allow no new order before ``until_ms`` (the unfilled-order count's ``Retry-After``); other requests go on.
        A later block already in force stays."""
        if until_ms > self.orders_blocked_until_ms:
            self.orders_blocked_until_ms = until_ms

    def blocked(self, now_ms: int) -> bool:
        return now_ms < self.blocked_until_ms

    def orders_blocked(self, now_ms: int) -> bool:
        """Whether new orders are held back now (by any block: the IP's or the order count's)."""
        return now_ms < max(self.blocked_until_ms, self.orders_blocked_until_ms)

    # ------------------------------------------------------------------------------------------------ pre-checks

    def _full(self, kind: str, amount: int, now_ms: int) -> list[tuple[int, int]]:
        """The ``(interval_ms, limit)`` windows of ``kind`` without room for ``amount`` more."""
        return [
            (interval, limit)
            for (k, interval), limit in self._limits.items()
            if k == kind and self.used(kind, interval, now_ms) + amount > limit
        ]

    def _request_room(self, weight: int, now_ms: int) -> bool:
        return not self._full(REQUEST_WEIGHT, weight, now_ms) and not self._full(RAW_REQUESTS, 1, now_ms)

    def allow_request(self, weight: int, now_ms: int) -> bool:
        """Whether a request of ``weight`` may go now: no 429/418 block, and room in every weight and raw-request
        window. Does not count it (:meth:`note_request` does)."""
        if self.blocked(now_ms) or not self._request_room(weight, now_ms):
            self.refused_requests += 1
            return False
        return True

    def allow_order(self, now_ms: int, weight: int = 1) -> bool:
        """Whether an order may go now: as :meth:`allow_request`, and room for one more order in every ``ORDERS``
        window. Refused: the caller rejects the order with ``RATE_LIMIT``. Does not count it (:meth:`note_order`)."""
        if self.orders_blocked(now_ms) or self._full(ORDERS, 1, now_ms) or not self._request_room(weight, now_ms):
            self.refused_orders += 1
            return False
        return True

    def wait_for(self, now_ms: int, weight: int = 1, *, order: bool = False) -> float:
        """Seconds until a request of ``weight`` would be allowed: the rest of a 429/418 block, or of every full
        weight or raw-request window (0.0: now). ``order``: the request is a new order, which also waits out an
        order-count block."""
        until = self.blocked_until_ms
        if order:
            until = max(until, self.orders_blocked_until_ms)
        for kind, amount in ((REQUEST_WEIGHT, weight), (RAW_REQUESTS, 1)):
            for interval, _ in self._full(kind, amount, now_ms):
                until = max(until, now_ms - now_ms % interval + interval)
        return max(0, until - now_ms) / 1000

    # ---------------------------------------------------------------------------------------------------- status

    def status(self, now_ms: int) -> dict[str, Any]:
        """A JSON-ready picture for ``STATUS``: every window's use against its limit, the block, the counters."""
        windows = []
        for kind, interval in sorted(self._counters.keys() | self._limits.keys()):
            windows.append(
                {
                    "type": kind,
                    "interval": _interval_label(interval),
                    "limit": self._limits.get((kind, interval)),
                    "used": self.used(kind, interval, now_ms),
                }
            )
        return {
            "blocked": self.blocked(now_ms),
            "blocked_until_ms": self.blocked_until_ms if self.blocked(now_ms) else None,
            "orders_blocked_until_ms": self.orders_blocked_until_ms if now_ms < self.orders_blocked_until_ms else None,
            "windows": windows,
            "too_many_requests": self.too_many_requests,
            "too_many_orders": self.too_many_orders,
            "bans": self.bans,
            "refused_requests": self.refused_requests,
            "refused_orders": self.refused_orders,
            "bad_headers": self.bad_headers,
        }


def _header(headers: Mapping[str, Any], name: str) -> Any:
    value = headers.get(name)
    if value is not None:
        return value
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return value
    return None
