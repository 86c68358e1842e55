"""Binance error answers -> what the trading adapter does about them (``official-spot-docs/errors.md``,
``rest-api.md`` "HTTP Return Codes", ``web-socket-api.md`` "Status codes").

:func:`classify` maps ``(http_status, code, msg)`` to an :class:`Outcome`:

* ``reject_reason``: the order (or cancel) was **not** executed; report it with this :class:`RejectReason`.
* ``unknown_outcome``: the request may or may not have reached the matching engine (-1000, -1001, -1006, -1007
  TIMEOUT, and every HTTP 5xx whatever its code: "execution status is UNKNOWN and could have been a success"): report
  the order's status as unknown and **query** it; never send it again (a resend could trade twice).
  ``reject_reason`` is then None.
* ``retry_after_clock_sync``: -1021, the timestamp fell outside ``recvWindow`` (or was over 1 s ahead): the request was
  refused before the matching engine, so resynchronise the clock offset and send it **once** more; if that fails too,
  reject with ``reject_reason``.
* ``rate_limited``: 429 / 418 / -1003 / -1015 / -1034: the order is rejected ``RATE_LIMIT``, not retried behind the
  trader's back. A request limit (-1003, -1034, any 429/418 but -1015's) makes every request wait (see
  :mod:`.limits`); ``order_count_limited`` (-1015 TOO_MANY_ORDERS: the account's unfilled-order count) makes only
  new orders wait: cancels and queries do not add to that count and go on.
* ``fatal``: the credentials or the account cannot trade (-1002, -1022 bad signature, -2014, -2015, "This account may
  not place or cancel orders.", trading disabled for the API): halt trading on this venue and tell a human; retrying
  cannot help.

``detail`` is ``"<code> <NAME>: <Binance's message>"``, built only from the code and the message (never from request
parameters or credentials), cut to 200 characters, with any long hex or base64 run (a signature or key echoed back)
replaced by ``…``.

>>> classify(400, -2010, "Account has insufficient balance for requested action.").reject_reason
<RejectReason.INSUFFICIENT_FUNDS: 'INSUFFICIENT_FUNDS'>
>>> classify(None, -1007, "Timeout waiting for response from backend server.").unknown_outcome
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...messages import RejectReason

__all__ = ["CODE_NAMES", "Outcome", "classify"]

_R = RejectReason

#: errors.md's code -> name, for the ones the trading adapter can meet
CODE_NAMES: dict[int, str] = {
    -1000: "UNKNOWN",
    -1001: "DISCONNECTED",
    -1002: "UNAUTHORIZED",
    -1003: "TOO_MANY_REQUESTS",
    -1006: "UNEXPECTED_RESP",
    -1007: "TIMEOUT",
    -1008: "SERVER_BUSY",
    -1013: "INVALID_MESSAGE",
    -1014: "UNKNOWN_ORDER_COMPOSITION",
    -1015: "TOO_MANY_ORDERS",
    -1016: "SERVICE_SHUTTING_DOWN",
    -1020: "UNSUPPORTED_OPERATION",
    -1021: "INVALID_TIMESTAMP",
    -1022: "INVALID_SIGNATURE",
    -1034: "TOO_MANY_CONNECTIONS",
    -1100: "ILLEGAL_CHARS",
    -1101: "TOO_MANY_PARAMETERS",
    -1102: "MANDATORY_PARAM_EMPTY_OR_MALFORMED",
    -1103: "UNKNOWN_PARAM",
    -1104: "UNREAD_PARAMETERS",
    -1105: "PARAM_EMPTY",
    -1106: "PARAM_NOT_REQUIRED",
    -1108: "PARAM_OVERFLOW",
    -1111: "BAD_PRECISION",
    -1112: "NO_DEPTH",
    -1114: "TIF_NOT_REQUIRED",
    -1115: "INVALID_TIF",
    -1116: "INVALID_ORDER_TYPE",
    -1117: "INVALID_SIDE",
    -1118: "EMPTY_NEW_CL_ORD_ID",
    -1119: "EMPTY_ORG_CL_ORD_ID",
    -1121: "BAD_SYMBOL",
    -1122: "INVALID_SYMBOLSTATUS",
    -1125: "INVALID_LISTEN_KEY",
    -1128: "OPTIONAL_PARAMS_BAD_COMBO",
    -1130: "INVALID_PARAMETER",
    -1145: "INVALID_CANCEL_RESTRICTIONS",
    -2010: "NEW_ORDER_REJECTED",
    -2011: "CANCEL_REJECTED",
    -2013: "NO_SUCH_ORDER",
    -2014: "BAD_API_KEY_FMT",
    -2015: "REJECTED_MBX_KEY",
    -2026: "ORDER_ARCHIVED",
    -2035: "SUBSCRIPTION_ACTIVE",
    -2036: "SUBSCRIPTION_INACTIVE",
    -2039: "CLIENT_ORDER_ID_INVALID",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do about one error answer (see the module docstring)."""

    reject_reason: RejectReason | None
    unknown_outcome: bool = False
    retry_after_clock_sync: bool = False
    rate_limited: bool = False
    order_count_limited: bool = False
    fatal: bool = False
    detail: str = ""


# ------------------------------------------------------------------------------------------------------ tables

_UNKNOWN_CODES = frozenset({-1000, -1001, -1006, -1007})  # the request may have been executed
_RATE_LIMIT_CODES = frozenset({-1003, -1015, -1034})
_TOO_MANY_ORDERS = -1015  # "Too many new orders": the account's unfilled-order count, not the IP's request weight
_FATAL_CODES = frozenset({-1002, -1022, -2014, -2015})  # the key, its signature or its permissions

# "Filter failure: <FILTER>" (errors.md "Filter failures"); a failure that names no single cause maps to the reason
# that covers all its causes, or VENUE_REJECTED when none does
_FILTERS: dict[str, RejectReason] = {
    "PRICE_FILTER": _R.INVALID_PRICE,  # too high, too low or off the tick
    "PERCENT_PRICE": _R.PRICE_BAND,
    "PERCENT_PRICE_BY_SIDE": _R.PRICE_BAND,
    "LOT_SIZE": _R.INVALID_QUANTITY,  # too high, too low or off the step
    "MARKET_LOT_SIZE": _R.INVALID_QUANTITY,
    "MIN_NOTIONAL": _R.NOTIONAL_BELOW_MINIMUM,
    # NOTIONAL (which replaced MIN_NOTIONAL) also has a maximum, but VeloZ checks the maximum before sending
    # (check_filters) and Binance's answer names the filter only: below the minimum is the failure that gets through
    "NOTIONAL": _R.NOTIONAL_BELOW_MINIMUM,
    "MAX_POSITION": _R.MAX_POSITION,
}

# errors.md "Messages for -1010 ERROR_MSG_RECEIVED, -2010 NEW_ORDER_REJECTED, -2011 CANCEL_REJECTED"
_ORDER_MESSAGES: dict[str, RejectReason] = {
    "Account has insufficient balance for requested action.": _R.INSUFFICIENT_FUNDS,
    "Order would immediately match and take.": _R.WOULD_TAKE_LIQUIDITY,
    "Duplicate order sent.": _R.DUPLICATE_CLIENT_ORDER_ID,
    "Market is closed.": _R.HALTED,
    "Unknown order sent.": _R.UNKNOWN_ORDER,
    "Price * QTY is zero or less.": _R.NOTIONAL_BELOW_MINIMUM,
    "Order book liquidity is less than `LOT_SIZE` filter minimum quantity.": _R.NO_LIQUIDITY,
    "Order book liquidity is less than `MARKET_LOT_SIZE` filter minimum quantity.": _R.NO_LIQUIDITY,
    "Order book liquidity is less than symbol minimum quantity.": _R.NO_LIQUIDITY,
    "Order book liquidity is less than LOT_SIZE filter minimum quantity.": _R.NO_LIQUIDITY,
    "Order book liquidity is less than MARKET_LOT_SIZE filter minimum quantity.": _R.NO_LIQUIDITY,
}

# messages that mean the account or API cannot trade at all
_FATAL_MESSAGES = frozenset(
    {
        "This action is disabled on this account.",
        "This account may not place or cancel orders.",
        "Rest API trading is not enabled.",
        "WebSocket API trading is not enabled.",
    }
)

_PRECISION_REASONS = {
    "price": _R.INVALID_PRICE,
    "stopPrice": _R.INVALID_PRICE,
    "quantity": _R.INVALID_QUANTITY,
    "quoteOrderQty": _R.INVALID_QUANTITY,
    "icebergQty": _R.INVALID_QUANTITY,
}

_FILTER = re.compile(r"Filter failure:\s*([A-Z_]+)")
_PRECISION_PARAM = re.compile(r"Parameter '([A-Za-z]+)' has too much precision")
_SECRETISH = re.compile(r"[A-Za-z0-9+/=%]{32,}")  # a signature, key or token echoed back
_DETAIL_MAX = 200


def _detail(code: int | None, http_status: int | None, msg: str | None) -> str:
    text = _SECRETISH.sub("…", (msg or "").strip())
    if code is not None:
        head = f"{code} {CODE_NAMES.get(code, 'ERROR')}"
    else:
        head = f"HTTP {http_status}" if http_status is not None else "error"
    out = f"{head}: {text}" if text else head
    return out if len(out) <= _DETAIL_MAX else out[: _DETAIL_MAX - 1] + "…"


def _message_reason(msg: str) -> RejectReason | None:
    reason = _ORDER_MESSAGES.get(msg)
    if reason is not None:
        return reason
    match = _FILTER.search(msg)
    if match is not None:
        return _FILTERS.get(match.group(1), _R.VENUE_REJECTED)
    return None


def classify(http_status: int | None, code: int | None, msg: str | None) -> Outcome:
    """What an error answer means for the request that got it. ``http_status`` is the HTTP status (or the WebSocket
    API's ``status``; None when unknown), ``code``/``msg`` Binance's error body (None when it had none)."""
    msg = msg if isinstance(msg, str) else ""
    detail = _detail(code, http_status, msg)

    if code in _UNKNOWN_CODES or (http_status is not None and http_status >= 500):
        return Outcome(None, unknown_outcome=True, detail=detail)
    if code == _TOO_MANY_ORDERS:  # the unfilled-order count: new orders only, whatever the status
        return Outcome(_R.RATE_LIMIT, rate_limited=True, order_count_limited=True, detail=detail)
    if http_status in (418, 429) or code in _RATE_LIMIT_CODES:
        return Outcome(_R.RATE_LIMIT, rate_limited=True, detail=detail)
    if code in _FATAL_CODES or msg in _FATAL_MESSAGES:
        return Outcome(_R.VENUE_REJECTED, fatal=True, detail=detail)
    if code == -1021:
        return Outcome(_R.VENUE_REJECTED, retry_after_clock_sync=True, detail=detail)
    if code == -1008:  # overloaded (with a 4xx: a 5xx is unknown above): refused, the trader may try again
        return Outcome(_R.OVERLOADED, detail=detail)
    if code == -1121:
        return Outcome(_R.UNKNOWN_SYMBOL, detail=detail)
    if code == -1111:
        match = _PRECISION_PARAM.search(msg)
        param = match.group(1) if match else ""
        return Outcome(_PRECISION_REASONS.get(param, _R.VENUE_REJECTED), detail=detail)
    if code == -2011:  # CANCEL_REJECTED: "Unknown order sent." means the order is gone (filled, cancelled, expired)
        if msg == "Unknown order sent.":
            return Outcome(_R.ORDER_NOT_OPEN, detail=detail)
        return Outcome(_message_reason(msg) or _R.VENUE_REJECTED, detail=detail)
    if code in (-2013, -2039):  # the order does not exist (query), or the id pair does not match
        return Outcome(_R.UNKNOWN_ORDER, detail=detail)
    if code == -2026:  # archived: closed with nothing executed, long ago
        return Outcome(_R.ORDER_NOT_OPEN, detail=detail)
    # -1013 and -2010 by their message; every other 4xx (a parameter, order type or time in force Binance refused,
    # a 403 from its firewall): the request was refused as sent
    return Outcome(_message_reason(msg) or _R.VENUE_REJECTED, detail=detail)
