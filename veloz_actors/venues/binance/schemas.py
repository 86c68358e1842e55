"""Binance payloads -> VeloZ messages: the anti-corruption layer of the Binance adapter.

Raw Binance JSON (already decoded into dicts and lists, or given as bytes/str) is parsed here and nowhere else.
Every price and quantity string is parsed exactly into 1e-8 units; every millisecond time becomes nanoseconds.
Market-data ids and times are non-negative and, like every integer, fit an int64 (times in nanoseconds included):
downstream they are int64 columns. A payload that cannot become a message raises :class:`~veloz_actors.DataError`
naming the payload kind and the field, so a bad message is rejected at the edge and never travels through the system.

Covered payloads (spot, USD-M and COIN-M where they differ):

* combined-stream envelope ``{"stream": ..., "data": ...}`` (:func:`unwrap`)
* ``depthUpdate`` diffs (spot ``U``/``u``; futures add ``pu``) -> :class:`BookDelta`
* REST ``GET /depth`` snapshot ``{"lastUpdateId", "bids", "asks"}`` -> :class:`BookDelta` with ``is_snapshot``
* ``bookTicker`` (spot has no ``e``/``E``; futures have ``E``/``T``) -> :class:`BookTop`
* ``trade`` and ``aggTrade`` -> :class:`Trade`
* ``markPriceUpdate`` and REST ``premiumIndex`` -> :class:`MarkPrice`
* ``kline`` events and REST klines arrays -> :class:`Kline`
* REST ``fundingRate`` -> :class:`FundingRate`

>>> delta = parse_depth_update({"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 5, "u": 7,
...                             "b": [["61837.63", "0.5"]], "a": []}, ts_recv=2)
>>> delta.bids, delta.last_update_id
(((6183763000000, 50000000),), 7)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from ..._exceptions import DataError, InvalidInput
from ...fixed import DECIMALS, MAX_ABS, SCALE, format_decimal, parse_decimal
from ...messages import BookDelta, BookTop, FundingRate, Kline, MarketEvent, MarkPrice, Side, Trade

__all__ = [
    "decimal_units",
    "interval_ns",
    "parse_agg_trade",
    "parse_book_ticker",
    "parse_depth_snapshot",
    "parse_depth_update",
    "parse_funding_rates",
    "parse_kline",
    "parse_mark_price_update",
    "parse_message",
    "parse_premium_index",
    "parse_rest_klines",
    "parse_trade",
    "book_ticker_fields",
    "trade_fields",
    "unwrap",
]

_MS = 1_000_000  # nanoseconds per millisecond
_INT64 = 1 << 63  # ids and times (ns) become int64 columns downstream (MarketBatch): every integer stays below this
_MAX_MS = (_INT64 - 1) // _MS  # the last millisecond whose nanoseconds still fit (year 2262)
_POW10 = tuple(10 ** (DECIMALS - n) for n in range(DECIMALS + 1))
_MAX_WHOLE_DIGITS = 10  # below fixed.MAX_ABS (10**10 whole units), so every value fits int64

_INTERVAL = re.compile(r"^(\d+)([smhdwM])$")
_INTERVAL_NS = {"s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000}
_INTERVAL_NS["w"] = 7 * _INTERVAL_NS["d"]


def interval_ns(interval: str) -> int:
    """Binance interval text ("1m", "15m", "1h", "8h", "1d", "1w") as nanoseconds. Months ("1M") have no fixed length.

    >>> interval_ns("15m")
    900000000000
    """
    match = _INTERVAL.match(interval) if isinstance(interval, str) else None
    if match is None or match.group(2) == "M" or int(match.group(1)) <= 0:
        raise InvalidInput(f"interval: {interval!r} is not a fixed-length Binance interval such as '1m', '1h', '8h'")
    return int(match.group(1)) * _INTERVAL_NS[match.group(2)]


def decimal_units(
    text: Any, what: str, *, allow_negative: bool = False, allow_zero: bool = True, scientific: bool = False
) -> int:
    """Parse one decimal string exactly into 1e-8 units; :class:`DataError` naming ``what`` if it cannot be.

    The common Binance form (``"61837.63000000"``, ``"0.014"``, ``"1001"``) takes a fast path; everything else goes
    through :func:`veloz_actors.fixed.parse_decimal`, which rejects NaN, exponents, signs and excess digits.
    ``scientific`` also accepts an exponent when the value is still an exact 8-decimal number (``"9.95e-05"``), as
    written by Python/pandas for small floats.
    """
    if type(text) is str:
        value = _UNITS_CACHE.get(text)
        if value is None:
            try:
                value = _plain_units(text)
            except _NotPlain:
                value = None
        if value is not None and (value or allow_zero):
            return value
    try:
        return parse_decimal(text, what, allow_negative=allow_negative, allow_zero=allow_zero)
    except InvalidInput as exc:
        if scientific and isinstance(text, str) and ("e" in text or "E" in text):
            return _scientific_units(text, what, allow_negative=allow_negative, allow_zero=allow_zero)
        raise DataError(str(exc)) from exc


def _scientific_units(text: str, what: str, *, allow_negative: bool, allow_zero: bool) -> int:
    try:
        value = Decimal(text.strip())
    except InvalidOperation as exc:
        raise DataError(f"{what}: {text!r} is not a decimal number") from exc
    if not value.is_finite():
        raise DataError(f"{what}: {text!r} is not a finite number")
    scaled = value.scaleb(DECIMALS)
    if abs(scaled) > MAX_ABS:
        raise DataError(f"{what}: {text!r} is too large")
    if scaled != scaled.to_integral_value():
        raise DataError(f"{what}: {text!r} has more than {DECIMALS} decimal places")
    units = int(scaled)
    if units < 0 and not allow_negative:
        raise DataError(f"{what}: {text!r} must not be negative")
    if units == 0 and not allow_zero:
        raise DataError(f"{what}: must be greater than zero, got {text!r}")
    return units


# ------------------------------------------------------------------------------------------------------- primitives


def _field(data: Any, key: str, kind: str) -> Any:
    try:
        return data[key]
    except KeyError:
        raise DataError(f"{kind}: missing field {key!r} in {_preview(data)}") from None
    except TypeError:
        raise DataError(f"{kind}: expected a JSON object, got {_preview(data)}") from None


def _int(data: Any, key: str, kind: str) -> int:
    """Any int64. The sign is the caller's business: market-data ids use :func:`_uint`, the user-data parsers check
    theirs with their own messages."""
    value = _field(data, key, kind)
    if type(value) is not int:
        raise DataError(f"{kind}: field {key!r} must be an integer, got {value!r}")
    if not -_INT64 <= value < _INT64:
        raise DataError(f"{kind}: field {key!r} is out of the 64-bit integer range, got {value}")
    return value


def _uint(data: Any, key: str, kind: str) -> int:
    """An update id, trade id or count: 0 <= value < 2**63."""
    value = _int(data, key, kind)
    if value < 0:
        raise DataError(f"{kind}: field {key!r} must be a non-negative integer, got {value}")
    return value


def _ms(data: Any, key: str, kind: str) -> int:
    value = _int(data, key, kind)
    if not 0 <= value <= _MAX_MS:
        raise DataError(f"{kind}: field {key!r} must be a time in ms in 0..{_MAX_MS}, got {value}")
    return value * _MS


def _str(data: Any, key: str, kind: str) -> str:
    value = _field(data, key, kind)
    if type(value) is not str or not value:
        raise DataError(f"{kind}: field {key!r} must be a non-empty string, got {value!r}")
    return value


def _bool(data: Any, key: str, kind: str) -> bool:
    value = _field(data, key, kind)
    if type(value) is not bool:
        raise DataError(f"{kind}: field {key!r} must be true or false, got {value!r}")
    return value


def _dec(data: Any, key: str, kind: str, *, allow_zero: bool = True, allow_negative: bool = False) -> int:
    return decimal_units(
        _field(data, key, kind), f"{kind}: field {key!r}", allow_zero=allow_zero, allow_negative=allow_negative
    )


class _NotPlain(Exception):
    """A level that is not in the plain form the fast path handles; it is re-parsed with full error reporting."""


_UNITS_CACHE: dict[str, int] = {}  # plain decimal text -> units; prices and quantities repeat a lot in a stream
_UNITS_CACHE_LIMIT = 1 << 18


def _plain_units(text: str) -> int:
    if len(text) > DECIMALS + 1 and text[-DECIMALS - 1] == ".":
        # Binance's own form, 1 to 10 whole digits and exactly 8 decimals ("61837.63000000"): its digits without the
        # dot are already the 1e-8 units. Only ASCII digits pass (isdigit alone takes other scripts' digits, and
        # int() would also take signs, spaces and underscores); a second dot leaves one behind, so it fails too.
        digits = text.replace(".", "", 1)
        if len(digits) <= _MAX_WHOLE_DIGITS + DECIMALS and digits.isdigit() and digits.isascii():
            value = int(digits)
            if len(_UNITS_CACHE) >= _UNITS_CACHE_LIMIT:
                _UNITS_CACHE.clear()
            _UNITS_CACHE[text] = value
            return value
    whole, dot, frac = text.partition(".")
    if (
        len(whole) <= _MAX_WHOLE_DIGITS
        and len(frac) <= DECIMALS
        and whole.isdigit()
        and (frac.isdigit() or not (dot or frac))
        and text.isascii()
    ):
        value = int(whole) * SCALE + (int(frac) * _POW10[len(frac)] if frac else 0)
        if len(_UNITS_CACHE) >= _UNITS_CACHE_LIMIT:
            _UNITS_CACHE.clear()
        _UNITS_CACHE[text] = value
        return value
    raise _NotPlain


def _levels(raw: Any, key: str, kind: str) -> tuple[tuple[int, int], ...]:
    """``[["price", "qty"], ...]`` -> ``((price, qty), ...)``: price > 0, qty >= 0 (0 deletes the level)."""
    if type(raw) is not list:
        raise DataError(f"{kind}: field {key!r} must be a list of [price, qty], got {_preview(raw)}")
    get = _UNITS_CACHE.get
    out: list[tuple[int, int]] = []
    append = out.append
    try:
        for price_text, qty_text in raw:
            price = get(price_text)
            if price is None:
                price = _plain_units(price_text)
            qty = get(qty_text)
            if qty is None:
                qty = _plain_units(qty_text)
            if not price:
                raise _NotPlain
            append((price, qty))
    except (_NotPlain, TypeError, ValueError, AttributeError):
        return _levels_checked(raw, key, kind)
    return tuple(out)


def _levels_checked(raw: list, key: str, kind: str) -> tuple[tuple[int, int], ...]:
    out = []
    for i, level in enumerate(raw):
        try:
            price_text, qty_text = level
        except (TypeError, ValueError):
            raise DataError(f"{kind}: field {key!r}[{i}] must be [price, qty], got {level!r}") from None
        price = decimal_units(price_text, f"{kind}: field {key!r}[{i}] price", allow_zero=False)
        qty = decimal_units(qty_text, f"{kind}: field {key!r}[{i}] qty")
        out.append((price, qty))
    return tuple(out)


def _preview(data: Any) -> str:
    return f"{data!r:.120}"


def _loads(raw: bytes | str | dict | list) -> Any:
    if type(raw) is not bytes and isinstance(raw, dict | list):
        return raw
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc}: {raw!r:.120}") from exc


# ---------------------------------------------------------------------------------------------------------- streams


_NO_STREAM = object()  # a field the envelope lacks


def unwrap(raw: bytes | str | dict) -> tuple[str | None, Any]:
    """Split a combined-stream envelope ``{"stream": s, "data": d}`` into ``(s, d)``; a bare payload gives
    ``(None, payload)``."""
    data = _loads(raw)
    if type(data) is dict or isinstance(data, dict):
        stream = data.get("stream", _NO_STREAM)
        if type(stream) is str:
            payload = data.get("data", _NO_STREAM)
            if payload is not _NO_STREAM:
                return stream, payload
            return stream, _field(data, "data", "envelope")  # raises, naming the field
        if stream is not _NO_STREAM:
            raise DataError(f"envelope: field 'stream' must be a string, got {stream!r}")
    return None, data


def parse_depth_update(data: dict, ts_recv: int) -> BookDelta:
    """A ``depthUpdate`` diff. Futures diffs carry ``pu`` (-> ``prev_update_id``); spot ones do not (-1)."""
    kind = "depthUpdate"
    first = _uint(data, "U", kind)
    last = _uint(data, "u", kind)
    if last < first:
        raise DataError(f"{kind}: last update id 'u' {last} is below first update id 'U' {first}")
    prev = _int(data, "pu", kind) if "pu" in data else -1
    return BookDelta(
        symbol=_str(data, "s", kind),
        first_update_id=first,
        last_update_id=last,
        prev_update_id=prev,
        bids=_levels(_field(data, "b", kind), "b", kind),
        asks=_levels(_field(data, "a", kind), "a", kind),
        ts_event=_ms(data, "E", kind),
        ts_recv=ts_recv,
    )


def parse_depth_snapshot(data: dict, ts_recv: int, symbol: str | None = None) -> BookDelta:
    """A REST ``GET /depth`` response as a snapshot :class:`BookDelta` (``first == last == lastUpdateId``).

    Spot and USD-M snapshots do not name their symbol, so pass it; COIN-M ones carry ``symbol``. ``ts_event`` is the
    futures ``E`` when present, else ``ts_recv``.
    """
    kind = "depth snapshot"
    update_id = _uint(data, "lastUpdateId", kind)
    if symbol is None:
        symbol = _str(data, "symbol", kind) if "symbol" in data else None
    if not symbol:
        raise DataError(f"{kind}: no symbol given and the payload has no 'symbol' field")
    bids = _levels(_field(data, "bids", kind), "bids", kind)
    asks = _levels(_field(data, "asks", kind), "asks", kind)
    best_bid = max(((p, q) for p, q in bids if q), default=(0, 0))
    best_ask = min(((p, q) for p, q in asks if q), default=(0, 0))
    _check_top(kind, *best_bid, *best_ask)
    return BookDelta(
        symbol=symbol,
        first_update_id=update_id,
        last_update_id=update_id,
        bids=bids,
        asks=asks,
        is_snapshot=True,
        ts_event=_ms(data, "E", kind) if "E" in data else ts_recv,
        ts_recv=ts_recv,
    )


def parse_book_ticker(data: dict, ts_recv: int) -> BookTop:
    """A ``bookTicker``: spot has no event time (``ts_event = ts_recv``); futures have ``E``. A side with quantity at
    price 0, or a bid at or above the ask, is refused (:func:`_top_problem`): such a top is no market's."""
    kind = "bookTicker"
    top = BookTop(
        symbol=_str(data, "s", kind),
        bid_price=_dec(data, "b", kind),
        bid_qty=_dec(data, "B", kind),
        ask_price=_dec(data, "a", kind),
        ask_qty=_dec(data, "A", kind),
        update_id=_uint(data, "u", kind),
        ts_event=_ms(data, "E", kind) if "E" in data else ts_recv,
        ts_recv=ts_recv,
    )
    _check_top(kind, top.bid_price, top.bid_qty, top.ask_price, top.ask_qty)
    return top


def _top_problem(bid: int, bid_qty: int, ask: int, ask_qty: int) -> str | None:
    """What makes a best bid and ask impossible (a side with quantity at price 0, or a bid at or above the ask; an
    empty side is price and quantity 0), or None."""
    if bid_qty and not bid:
        return f"best bid of quantity {format_decimal(bid_qty)} has price 0"
    if ask_qty and not ask:
        return f"best ask of quantity {format_decimal(ask_qty)} has price 0"
    if bid_qty and ask_qty and bid >= ask:
        return f"crossed: best bid {format_decimal(bid)} is at or above best ask {format_decimal(ask)}"
    return None


def _check_top(kind: str, bid: int, bid_qty: int, ask: int, ask_qty: int) -> None:
    problem = _top_problem(bid, bid_qty, ask, ask_qty)
    if problem is not None:
        raise DataError(f"{kind}: {problem}")


def parse_trade(data: dict, ts_recv: int) -> Trade:
    """A ``trade`` event. ``m`` (buyer is the maker) means the aggressor sold."""
    kind = "trade"
    return Trade(
        symbol=_str(data, "s", kind),
        trade_id=_uint(data, "t", kind),
        price=_dec(data, "p", kind, allow_zero=False),
        qty=_dec(data, "q", kind, allow_zero=False),
        aggressor=Side.SELL if _bool(data, "m", kind) else Side.BUY,
        ts_event=_ms(data, "E", kind),
        ts_recv=ts_recv,
    )


def _units(text: Any) -> int:
    """The plain decimal fast path: cached, or parsed by :func:`_plain_units`; raises for anything irregular."""
    value = _UNITS_CACHE.get(text)
    return _plain_units(text) if value is None else value


def book_ticker_fields(data: dict, ts_recv: int) -> tuple[str, int, int, int, int, int, int]:
    """A ``bookTicker``'s fields as :func:`parse_book_ticker` reads them, without making the message: ``(symbol, bid,
    bid qty, ask, ask qty, update id, ts_event)``. The hot path of a live feed (most of its events); a payload the
    fast path does not take (a missing or mistyped field, an irregular number, an impossible top) goes through
    :func:`parse_book_ticker`, so the answers and the errors are the same."""
    try:
        symbol = data["s"]
        update_id = data["u"]
        if type(symbol) is str and symbol and type(update_id) is int and 0 <= update_id < _INT64 and "E" not in data:
            b, bq, a, aq = data["b"], data["B"], data["a"], data["A"]
            get = _UNITS_CACHE.get  # _units() written out: most of a live feed's events come this way
            bid, bid_qty, ask, ask_qty = get(b), get(bq), get(a), get(aq)
            if bid is None:
                bid = _plain_units(b)
            if bid_qty is None:
                bid_qty = _plain_units(bq)
            if ask is None:
                ask = _plain_units(a)
            if ask_qty is None:
                ask_qty = _plain_units(aq)
            if 0 < bid < ask and bid_qty and ask_qty:  # two sides, not crossed; any other top is judged (and
                return symbol, bid, bid_qty, ask, ask_qty, update_id, ts_recv  # refused) by parse_book_ticker
    except (KeyError, TypeError, AttributeError, ValueError, _NotPlain):
        pass
    top = parse_book_ticker(data, ts_recv)
    return top.symbol, top.bid_price, top.bid_qty, top.ask_price, top.ask_qty, top.update_id, top.ts_event


def trade_fields(data: dict, ts_recv: int) -> tuple[str, int, int, int, bool, int]:
    """A ``trade``'s fields as :func:`parse_trade` reads them, without making the message: ``(symbol, trade id,
    price, qty, aggressor sold, ts_event)``; irregular payloads go through :func:`parse_trade` (same answers and
    errors)."""
    try:
        symbol = data["s"]
        trade_id = data["t"]
        maker = data["m"]
        event_ms = data["E"]
        price = _units(data["p"])
        qty = _units(data["q"])
        if (
            type(symbol) is str and symbol and type(trade_id) is int and 0 <= trade_id < _INT64
            and type(maker) is bool and type(event_ms) is int and 0 <= event_ms <= _MAX_MS and price and qty
        ):  # fmt: skip
            return symbol, trade_id, price, qty, maker, event_ms * _MS
    except (KeyError, TypeError, AttributeError, ValueError, _NotPlain):
        pass
    trade = parse_trade(data, ts_recv)
    return trade.symbol, trade.trade_id, trade.price, trade.qty, trade.aggressor is Side.SELL, trade.ts_event


def parse_agg_trade(data: dict, ts_recv: int, symbol: str | None = None) -> Trade:
    """An ``aggTrade`` event, or one row of REST ``aggTrades`` (which has no ``s``/``E``: pass ``symbol``; the trade
    time ``T`` is then the event time). ``trade_id`` is the aggregate id ``a``."""
    kind = "aggTrade"
    return Trade(
        symbol=symbol if symbol is not None else _str(data, "s", kind),
        trade_id=_uint(data, "a", kind),
        price=_dec(data, "p", kind, allow_zero=False),
        qty=_dec(data, "q", kind, allow_zero=False),
        aggressor=Side.SELL if _bool(data, "m", kind) else Side.BUY,
        ts_event=_ms(data, "E" if "E" in data else "T", kind),
        ts_recv=ts_recv,
    )


def parse_mark_price_update(data: dict, ts_recv: int) -> MarkPrice:
    """A futures ``markPriceUpdate`` (``p`` mark, ``i`` index, ``r`` funding rate, ``T`` next funding time)."""
    kind = "markPriceUpdate"
    return MarkPrice(
        symbol=_str(data, "s", kind),
        mark_price=_dec(data, "p", kind, allow_zero=False),
        index_price=_dec(data, "i", kind),
        funding_rate=_dec(data, "r", kind, allow_negative=True) if data.get("r", "") != "" else 0,
        next_funding_time=_ms(data, "T", kind),
        ts_event=_ms(data, "E", kind),
        ts_recv=ts_recv,
    )


def parse_premium_index(data: dict, ts_recv: int) -> MarkPrice:
    """A REST ``GET /fapi/v1/premiumIndex`` object (one symbol) as a :class:`MarkPrice`."""
    kind = "premiumIndex"
    return MarkPrice(
        symbol=_str(data, "symbol", kind),
        mark_price=_dec(data, "markPrice", kind, allow_zero=False),
        index_price=_dec(data, "indexPrice", kind),
        funding_rate=_dec(data, "lastFundingRate", kind, allow_negative=True),
        next_funding_time=_ms(data, "nextFundingTime", kind),
        ts_event=_ms(data, "time", kind),
        ts_recv=ts_recv,
    )


def parse_funding_rates(rows: list, ts_recv: int) -> list[FundingRate]:
    """A REST ``GET /fapi/v1/fundingRate`` list: ``[{"symbol", "fundingRate", "fundingTime"}, ...]``."""
    kind = "fundingRate"
    if type(rows) is not list:
        raise DataError(f"{kind}: expected a JSON list, got {_preview(rows)}")
    out = []
    for i, row in enumerate(rows):
        what = f"{kind}[{i}]"
        funding_time = _ms(row, "fundingTime", what)
        out.append(
            FundingRate(
                symbol=_str(row, "symbol", what),
                rate=_dec(row, "fundingRate", what, allow_negative=True),
                funding_time=funding_time,
                ts_event=funding_time,
                ts_recv=ts_recv,
            )
        )
    return out


def _check_ohlc(kind: str, open_: int, high: int, low: int, close: int) -> None:
    if high < low or high < max(open_, close) or low > min(open_, close):
        raise DataError(f"{kind}: inconsistent candle open={open_} high={high} low={low} close={close} (1e-8 units)")


def parse_kline(data: dict, ts_recv: int) -> Kline:
    """A ``kline`` stream event (``{"e": "kline", "E", "s", "k": {...}}``); ``closed`` is ``k.x``."""
    kind = "kline"
    k = _field(data, "k", kind)
    open_time = _ms(k, "t", kind)
    close_time = _ms(k, "T", kind)
    if close_time < open_time:
        raise DataError(f"{kind}: close time 'T' {close_time // _MS} is before open time 't' {open_time // _MS}")
    if "i" in k:
        try:
            interval = interval_ns(_str(k, "i", kind))
        except InvalidInput as exc:  # a month ("1M") or anything else without a fixed length
            raise DataError(f"{kind}: field 'i': {exc}") from exc
    else:
        interval = close_time + _MS - open_time
    open_, high, low, close = (_dec(k, key, kind, allow_zero=False) for key in ("o", "h", "l", "c"))
    _check_ohlc(kind, open_, high, low, close)
    return Kline(
        symbol=_str(data, "s", kind),
        interval_ns=interval,
        open_time=open_time,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=_dec(k, "v", kind),
        closed=_bool(k, "x", kind),
        ts_event=_ms(data, "E", kind),
        ts_recv=ts_recv,
    )


def parse_rest_klines(rows: list, symbol: str, ts_recv: int, interval: str | None = None) -> list[Kline]:
    """A REST klines response (spot ``/api/v3/klines``, futures ``/fapi/v1/klines`` or ``markPriceKlines``): a list
    of 12-element arrays ``[open_time, o, h, l, c, v, close_time, quote_volume, trades, ...]``.

    The interval is ``close_time + 1 ms - open_time`` unless given. Every kline is ``closed``; ``ts_event`` is its close
    time + 1 ms (when it became final).
    """
    kind = "klines"
    if type(rows) is not list:
        raise DataError(f"{kind}: expected a JSON list, got {_preview(rows)}")
    fixed_interval = interval_ns(interval) if interval is not None else None
    out = []
    for i, row in enumerate(rows):
        what = f"{kind}[{i}]"
        if type(row) is not list or len(row) < 7:
            raise DataError(f"{what}: expected an array of at least 7 fields, got {_preview(row)}")
        open_ms, close_ms = row[0], row[6]
        if type(open_ms) is not int or type(close_ms) is not int or not 0 <= open_ms <= close_ms < _MAX_MS:
            raise DataError(
                f"{what}: open/close times must be integers in 0..{_MAX_MS - 1} ms with close >= open, got "
                f"{open_ms!r}, {close_ms!r}"
            )
        open_, high, low, close = (
            decimal_units(row[j], f"{what} field {name!r}", allow_zero=False)
            for j, name in ((1, "open"), (2, "high"), (3, "low"), (4, "close"))
        )
        _check_ohlc(what, open_, high, low, close)
        close_time = (close_ms + 1) * _MS
        out.append(
            Kline(
                symbol=symbol,
                interval_ns=fixed_interval if fixed_interval is not None else close_time - open_ms * _MS,
                open_time=open_ms * _MS,
                open=open_,
                high=high,
                low=low,
                close=close,
                volume=decimal_units(row[5], f"{what} field 'volume'"),
                ts_event=close_time,
                ts_recv=ts_recv,
            )
        )
    return out


# --------------------------------------------------------------------------------------------------------- dispatch

_BY_EVENT: dict[str, Callable[[dict, int], MarketEvent]] = {
    "depthUpdate": parse_depth_update,
    "bookTicker": parse_book_ticker,
    "trade": parse_trade,
    "aggTrade": parse_agg_trade,
    "markPriceUpdate": parse_mark_price_update,
    "kline": parse_kline,
}


def parse_message(raw: bytes | str | dict, ts_recv: int, symbol: str | None = None) -> MarketEvent:
    """Any supported market-data payload, enveloped or bare, as its message.

    Spot ``bookTicker`` has no ``e`` and is recognised by its fields; a REST depth snapshot (``lastUpdateId``) needs
    ``symbol`` unless it carries one. Unsupported events raise :class:`DataError` naming the event type.
    """
    _, data = unwrap(raw)
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object payload, got {_preview(data)}")
    event = data.get("e")
    if event is None:
        if "lastUpdateId" in data:
            return parse_depth_snapshot(data, ts_recv, symbol)
        if "u" in data and "b" in data and "a" in data and "B" in data:
            return parse_book_ticker(data, ts_recv)
        raise DataError(f"unrecognised payload (no event type 'e'): {_preview(data)}")
    parse = _BY_EVENT.get(event)
    if parse is None:
        raise DataError(f"unsupported event type {event!r}")
    return parse(data, ts_recv)
