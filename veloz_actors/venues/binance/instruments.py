"""Binance spot ``GET /api/v3/exchangeInfo`` -> :class:`~veloz_actors.core.instruments.Instrument`, exactly.

:func:`parse_exchange_info` maps each symbol's filters (``binance-api/official-spot-docs/filters.md``):

* ``PRICE_FILTER`` -> ``min_price``, ``max_price``, ``price_tick`` (required; a ``tickSize`` of 0, "disabled", becomes
  the finest representable tick 0.00000001, and says so in the notes)
* ``LOT_SIZE`` -> ``min_qty``, ``max_qty``, ``qty_step`` (required)
* ``MARKET_LOT_SIZE`` -> ``market_min_qty``, ``market_max_qty`` (0: no bound beyond ``LOT_SIZE``); a non-zero market
  ``stepSize`` that the lot step is not a multiple of makes the step their least common multiple (noted)
* ``NOTIONAL`` -> ``min_notional``, ``max_notional``, ``applyMinToMarket``/``applyMaxToMarket``; or the legacy
  ``MIN_NOTIONAL`` -> ``min_notional`` and ``applyToMarket`` (neither: no minimum, noted)
* ``baseAssetPrecision`` and ``quoteAssetPrecision`` (``quotePrecision`` in older payloads) -> the precisions
* ``status``: only ``TRADING`` symbols become instruments; a requested symbol that is missing or not ``TRADING`` is an
  :class:`InvalidInput` naming it

Every decimal string is parsed exactly (:func:`~veloz_actors.venues.binance.schemas.decimal_units`); one that cannot be
is a :class:`DataError` naming the symbol, the filter and the field. A maximum above what VeloZ represents
(``fixed.MAX_ABS``, 1e10 whole units; Binance writes e.g. ``maxQty`` 46116860414 for some coins) is capped there, which
bounds nothing any balance could reach.

**Exact notionals.** VeloZ keeps every amount in 1e-8 units, so ``price_tick x qty_step`` must be a multiple of 1e-8
of the quote asset. Binance has symbols where it is not (tick 0.0000001 x step 0.01 = 1e-9): their step is coarsened to
the smallest multiple of Binance's step that is exact (for Binance's power-of-ten filters: the next power of ten, here
0.1), so every order VeloZ sends is still valid on Binance. Never silently: the result's ``coarsened`` maps each such
symbol to ``(Binance's step, the step used)`` and its ``notes`` say it in words, for the engine to log.

:func:`check_rules` compares the instruments an engine trades with (a journal's, fixed for its exact replay) with a
fresh exchangeInfo: a symbol Binance no longer lists, whose status is not ``TRADING``, or whose filters changed
(:func:`rule_changes`, each field named in Binance's words with its old and new value) is a :class:`RulesProblem`.
A live engine checks this when it recovers a journal and, in the trading adapter, at every start and periodically.

:func:`load_instruments` fetches the payload at every start-up with the standard library and caches it as
``exchange-info.json`` in the run folder, for a paper start while Binance does not answer; see its docstring for the
fallback rules.

>>> import pathlib
>>> raw = pathlib.Path("../shared/data/binance-api/examples-nautilus/http_spot_market_exchange_info.json")
>>> btc = parse_exchange_info(raw.read_bytes(), ["BTCUSDT"])["BTCUSDT"]  # doctest: +SKIP
>>> btc.price_tick, btc.qty_step, btc.min_notional, btc.market_max_qty  # doctest: +SKIP
(1000000, 1000, 1000000000, 11221108820)
"""

from __future__ import annotations

import http.client
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from ..._exceptions import ConfigError, DataError, InvalidInput
from ..._files import write_atomically
from ...core.instruments import Instrument, exact_qty_step
from ...fixed import MAX_ABS, format_decimal
from ...logs import redact_url
from .schemas import _bool, _field, _loads, _preview, _str, decimal_units

__all__ = [
    "CACHE_NAME",
    "ExchangeInstruments",
    "RulesProblem",
    "asks_unfiltered",
    "check_rules",
    "exchange_info_query",
    "fetch_exchange_info",
    "load_instruments",
    "parse_exchange_info",
    "rule_changes",
]

CACHE_NAME = "exchange-info.json"
TRADING = "TRADING"
_DEFAULT_FEE_RATE = 100_000  # 0.001: Binance spot's base rate (exchangeInfo carries no fees)
_TOO_LARGE = re.compile(r"^\d{11,}(\.\d*)?$")  # 1e10 whole units or more: beyond fixed.MAX_ABS


class ExchangeInstruments(dict[str, Instrument]):
    """``symbol -> Instrument`` as parsed from one exchangeInfo payload, with what the parse had to adjust.

    ``coarsened``: symbol -> ``(Binance's qty step, the exact step used)`` for the symbols whose step was coarsened.
    ``notes``: one line per adjustment or skipped symbol, each naming the symbol (for the engine's log).
    ``skipped``: symbol -> why it is not here (not ``TRADING``, or filters VeloZ cannot use), when no symbols were
    requested; a requested symbol is never skipped, it is an error.
    """

    def __init__(self) -> None:
        super().__init__()
        self.coarsened: dict[str, tuple[int, int]] = {}
        self.notes: list[str] = []
        self.skipped: dict[str, str] = {}
        self.server_time_ms: int | None = None


def parse_exchange_info(
    payload: dict[str, Any] | bytes | str,
    symbols: Iterable[str] | None = None,
    *,
    maker_fee_rate: int = _DEFAULT_FEE_RATE,
    taker_fee_rate: int = _DEFAULT_FEE_RATE,
) -> ExchangeInstruments:
    """The instruments of ``symbols`` (all ``TRADING`` symbols when None) in a ``GET /api/v3/exchangeInfo`` payload.

    Fee rates are fractions in 1e-8 units (0.001 -> 100_000); exchangeInfo has none, so they are given here. Raises
    :class:`InvalidInput` for a requested symbol that the payload lacks or that is not ``TRADING``, and
    :class:`DataError` for a payload that is not an exchangeInfo (a Binance error body included) or a requested
    symbol whose filters cannot be parsed exactly.
    """
    data = _loads(payload)
    if isinstance(data, dict) and "code" in data and "msg" in data and "symbols" not in data:
        raise DataError(f"exchangeInfo: Binance answered error {data['code']}: {data['msg']}")
    rows = _field(data, "symbols", "exchangeInfo")
    if type(rows) is not list:
        raise DataError(f"exchangeInfo: field 'symbols' must be a list, got {_preview(rows)}")
    by_symbol: dict[str, dict[str, Any]] = {}
    for row in rows:
        by_symbol[_str(row, "symbol", "exchangeInfo symbol")] = row
    out = ExchangeInstruments()
    server_time = data.get("serverTime")
    out.server_time_ms = server_time if type(server_time) is int else None
    if symbols is None:
        for symbol, row in by_symbol.items():
            status = row.get("status")
            if status != TRADING:
                out.skipped[symbol] = f"status {status}"
                continue
            try:
                out[symbol] = _instrument(symbol, row, maker_fee_rate, taker_fee_rate, out)
            except (DataError, InvalidInput) as exc:
                out.skipped[symbol] = str(exc)
                out.notes.append(f"{symbol}: skipped: {exc}")
        if out.skipped:
            others = sum(1 for reason in out.skipped.values() if reason.startswith("status "))
            if others:
                out.notes.append(f"{others} symbol(s) not {TRADING} skipped")
        return out
    wanted = _wanted(symbols)
    refused = _untradable(wanted, by_symbol)
    if refused:
        raise InvalidInput(f"{refused}: check the symbol name(s)")
    for symbol in wanted:
        out[symbol] = _instrument(symbol, by_symbol[symbol], maker_fee_rate, taker_fee_rate, out)
    return out


def _untradable(wanted: list[str], by_symbol: Mapping[str, Mapping[str, Any]]) -> str:
    """Every one of ``wanted`` that the exchangeInfo rows do not list or that is not ``TRADING``, in one sentence
    ("" when all trade): a start names each symbol to fix at once, not one per attempt."""
    missing = [s for s in wanted if s not in by_symbol]
    parts = []
    if missing:
        parts.append(
            f"exchangeInfo has no symbol {', '.join(missing)} (Binance does not list "
            f"{'it' if len(missing) == 1 else 'them'}: a wrong name, or delisted)"
        )
    for symbol in (s for s in wanted if s in by_symbol):
        status = by_symbol[symbol].get("status")
        if status != TRADING:
            parts.append(f"{symbol} is not tradable on Binance: its status is {status}, not {TRADING}")
    return "; ".join(parts)


def _wanted(symbols: Iterable[str]) -> list[str]:
    if isinstance(symbols, str):
        symbols = [symbols]
    wanted: list[str] = []
    for symbol in symbols:
        if not isinstance(symbol, str) or not symbol.strip():
            raise InvalidInput(f"symbols: expected non-empty symbol names, got {symbol!r}")
        name = symbol.strip().upper()
        if name not in wanted:
            wanted.append(name)
    if not wanted:
        raise InvalidInput("symbols: no symbol requested (give None for every TRADING symbol)")
    return wanted


def _instrument(symbol: str, row: dict[str, Any], maker: int, taker: int, out: ExchangeInstruments) -> Instrument:
    kind = f"exchangeInfo {symbol}"
    raw_filters = _field(row, "filters", kind)
    if type(raw_filters) is not list:
        raise DataError(f"{kind}: field 'filters' must be a list, got {_preview(raw_filters)}")
    filters: dict[str, Any] = {}
    for f in raw_filters:
        filters[_str(f, "filterType", f"{kind} filter")] = f
    for name in ("PRICE_FILTER", "LOT_SIZE"):
        if name not in filters:
            raise DataError(
                f"{kind}: no {name} filter, so its {'tick' if name == 'PRICE_FILTER' else 'step'} is unknown"
            )

    price = filters["PRICE_FILTER"]
    tick = _dec(price, "tickSize", symbol, "PRICE_FILTER")
    if tick == 0:
        tick = 1
        out.notes.append(f"{symbol}: PRICE_FILTER tickSize is 0 (disabled): prices use the finest tick 0.00000001")
    lot = filters["LOT_SIZE"]
    step = exchange_step = _dec(lot, "stepSize", symbol, "LOT_SIZE")
    if step == 0:
        raise DataError(f"{kind}: LOT_SIZE stepSize must be positive, got {lot.get('stepSize')!r}")
    market_min = market_max = 0
    market = filters.get("MARKET_LOT_SIZE")
    if market is not None:
        market_min = _dec(market, "minQty", symbol, "MARKET_LOT_SIZE")
        market_max = _dec(market, "maxQty", symbol, "MARKET_LOT_SIZE", cap=True)
        market_step = _dec(market, "stepSize", symbol, "MARKET_LOT_SIZE")
        if market_step and step % market_step:
            joint = math.lcm(step, market_step)
            out.notes.append(
                f"{symbol}: MARKET_LOT_SIZE stepSize {format_decimal(market_step)} differs from LOT_SIZE stepSize "
                f"{format_decimal(step)}: quantities use {format_decimal(joint)}, valid for both"
            )
            step = joint
    exact = exact_qty_step(tick, step)
    if exact != step:
        out.coarsened[symbol] = (exchange_step, exact)
        out.notes.append(
            f"{symbol}: Binance's tick {format_decimal(tick)} x step {format_decimal(step)} is finer than 1e-8 "
            f"of the quote asset, so notionals would not be exact: quantities use step {format_decimal(exact)} "
            "(a multiple of Binance's step)"
        )
    min_notional, max_notional, min_on_market, max_on_market = _notional(filters, symbol, out)
    try:
        return Instrument(
            symbol=symbol,
            base_asset=_str(row, "baseAsset", kind),
            quote_asset=_str(row, "quoteAsset", kind),
            price_tick=tick,
            qty_step=exact,
            min_qty=_dec(lot, "minQty", symbol, "LOT_SIZE"),
            max_qty=_dec(lot, "maxQty", symbol, "LOT_SIZE", cap=True),
            min_notional=min_notional,
            min_price=_dec(price, "minPrice", symbol, "PRICE_FILTER"),
            max_price=_dec(price, "maxPrice", symbol, "PRICE_FILTER", cap=True),
            maker_fee_rate=maker,
            taker_fee_rate=taker,
            market_min_qty=market_min,
            market_max_qty=market_max,
            max_notional=max_notional,
            min_notional_market=min_on_market,
            max_notional_market=max_on_market,
            base_precision=_precision(row, ("baseAssetPrecision",), kind),
            quote_precision=_precision(row, ("quoteAssetPrecision", "quotePrecision"), kind),
        )
    except ConfigError as exc:
        raise DataError(f"{kind}: filters VeloZ cannot use: {exc}") from exc


def _notional(filters: dict[str, Any], symbol: str, out: ExchangeInstruments) -> tuple[int, int, bool, bool]:
    notional = filters.get("NOTIONAL")
    kind = f"exchangeInfo {symbol}"
    if notional is not None:
        return (
            _dec(notional, "minNotional", symbol, "NOTIONAL"),
            _dec(notional, "maxNotional", symbol, "NOTIONAL", cap=True) if "maxNotional" in notional else 0,
            _bool(notional, "applyMinToMarket", f"{kind} NOTIONAL") if "applyMinToMarket" in notional else True,
            _bool(notional, "applyMaxToMarket", f"{kind} NOTIONAL") if "applyMaxToMarket" in notional else False,
        )
    legacy = filters.get("MIN_NOTIONAL")
    if legacy is not None:
        on_market = _bool(legacy, "applyToMarket", f"{kind} MIN_NOTIONAL") if "applyToMarket" in legacy else True
        return _dec(legacy, "minNotional", symbol, "MIN_NOTIONAL"), 0, on_market, False
    out.notes.append(f"{symbol}: no NOTIONAL or MIN_NOTIONAL filter: no minimum notional")
    return 0, 0, True, False


def _dec(f: Any, key: str, symbol: str, filter_type: str, *, cap: bool = False) -> int:
    what = f"exchangeInfo {symbol} {filter_type}.{key}"
    text = _field(f, key, f"exchangeInfo {symbol} {filter_type}")
    if cap and isinstance(text, str) and _TOO_LARGE.match(text.strip()):
        return MAX_ABS
    return decimal_units(text, what)


def _precision(row: dict[str, Any], keys: tuple[str, ...], kind: str) -> int:
    for key in keys:
        if key in row:
            value = row[key]
            if type(value) is not int or value < 0:
                raise DataError(f"{kind}: field {key!r} must be a non-negative integer, got {value!r}")
            return value
    return 8


# ------------------------------------------------------------------------------------------------ rules changed

# the exchange's part of an Instrument, each with the exchangeInfo field it comes from (fee rates are VeloZ's config)
_RULES = (
    ("price_tick", "PRICE_FILTER tickSize"),
    ("min_price", "PRICE_FILTER minPrice"),
    ("max_price", "PRICE_FILTER maxPrice"),
    ("qty_step", "LOT_SIZE stepSize"),
    ("min_qty", "LOT_SIZE minQty"),
    ("max_qty", "LOT_SIZE maxQty"),
    ("market_min_qty", "MARKET_LOT_SIZE minQty"),
    ("market_max_qty", "MARKET_LOT_SIZE maxQty"),
    ("min_notional", "NOTIONAL minNotional"),
    ("max_notional", "NOTIONAL maxNotional"),
    ("min_notional_market", "NOTIONAL applyMinToMarket"),
    ("max_notional_market", "NOTIONAL applyMaxToMarket"),
    ("base_asset", "baseAsset"),
    ("quote_asset", "quoteAsset"),
    ("base_precision", "baseAssetPrecision"),
    ("quote_precision", "quoteAssetPrecision"),
)
_COUNTS = frozenset({"base_precision", "quote_precision"})  # plain integers, not 1e-8 units


def rule_changes(old: Instrument, new: Instrument) -> list[str]:
    """What differs between two instruments of one symbol in the exchange's rules, one line a field in Binance's
    words with the old and the new value (fee rates, which come from VeloZ's config, are not compared).

    >>> import dataclasses
    >>> from veloz_actors.core.instruments import Instrument
    >>> old = Instrument("BTCUSDT", "BTC", "USDT", 1_000_000, 1_000, 1_000, 900_000_000_000, 500_000_000)
    >>> rule_changes(old, dataclasses.replace(old, price_tick=10_000_000))
    ['PRICE_FILTER tickSize 0.01 -> 0.1']
    """
    out = []
    for name, label in _RULES:
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            shown = str if name in _COUNTS or type(before) is not int else format_decimal
            out.append(f"{label} {shown(before)} -> {shown(after)}")
    return out


@dataclass(frozen=True, slots=True)
class RulesProblem:
    """Why a symbol's new orders must not go out under the rules an engine holds for it: Binance no longer lists it
    (``status`` ""), its status is not ``TRADING`` (``BREAK``, ``HALT``, ...), or its filters changed (``changes``,
    one :func:`rule_changes` line each; an entry that cannot be read is one line saying so)."""

    symbol: str
    status: str
    changes: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        if not self.status:
            return f"{self.symbol}: Binance no longer lists it (delisted)"
        if self.status != TRADING:
            return f"{self.symbol}: its status on Binance is {self.status}, not {TRADING}"
        return f"{self.symbol}: Binance changed its trading rules: {'; '.join(self.changes)}"


def check_rules(instruments: Mapping[str, Instrument], payload: Any) -> dict[str, RulesProblem]:
    """The symbols of ``instruments`` whose rules in the exchangeInfo ``payload`` (parsed JSON, or bytes) differ
    from the instruments' (see :class:`RulesProblem`); an empty dict when all are unchanged and ``TRADING``. A
    payload that is not an exchangeInfo is a :class:`DataError`."""
    data = _loads(payload)
    rows = _field(data, "symbols", "exchangeInfo")
    if type(rows) is not list:
        raise DataError(f"exchangeInfo: field 'symbols' must be a list, got {_preview(rows)}")
    by_symbol = {row.get("symbol"): row for row in rows if isinstance(row, dict)}
    problems = {}
    for symbol, held in instruments.items():
        row = by_symbol.get(symbol)
        if row is None:
            problems[symbol] = RulesProblem(symbol, "")
            continue
        status = str(row.get("status"))
        if status != TRADING:
            problems[symbol] = RulesProblem(symbol, status)
            continue
        try:
            now = _instrument(symbol, row, held.maker_fee_rate, held.taker_fee_rate, ExchangeInstruments())
        except (DataError, InvalidInput) as exc:
            problems[symbol] = RulesProblem(symbol, status, (f"its exchangeInfo entry cannot be read: {exc}",))
            continue
        changes = rule_changes(held, now)
        if changes:
            problems[symbol] = RulesProblem(symbol, status, tuple(changes))
    return problems


def fetch_exchange_info(rest_url: str, symbols: Iterable[str], *, timeout: float = 10.0) -> Any:
    """``GET /api/v3/exchangeInfo`` for ``symbols``, parsed, at once (no cache). Binance refusing the list for a
    symbol it does not list (:func:`asks_unfiltered`) gets the unfiltered exchangeInfo, which simply lacks that symbol
    (:func:`check_rules` names it). :class:`InvalidInput` names the URL and the failure."""
    try:
        _, payload = _fetch_listed(rest_url, _wanted(symbols), timeout)
    except _FetchFailed as exc:
        raise InvalidInput(str(exc)) from exc
    return payload


def exchange_info_query(symbols: Iterable[str]) -> dict[str, str]:
    """The query of ``GET /api/v3/exchangeInfo`` for ``symbols`` (``{}``: the unfiltered one, every symbol), as every
    transport sends it.

    >>> exchange_info_query(["BTCUSDT", "ETHUSDT"])
    {'symbols': '["BTCUSDT","ETHUSDT"]'}
    """
    listed = list(symbols)
    return {"symbols": json.dumps(listed, separators=(",", ":"))} if listed else {}


def asks_unfiltered(query: Mapping[str, str], code: Any) -> bool:
    """Whether Binance refusing the exchangeInfo request ``query`` with error ``code`` is answered by asking for the
    unfiltered exchangeInfo (query ``{}``). Binance refuses a whole symbol list with -1121 "Invalid symbol." when one
    of them is not listed (a wrong name, or delisted) and does not say which; the unfiltered payload simply lacks it,
    so :func:`parse_exchange_info` and :func:`check_rules` can name it. Any other refusal, or one of the unfiltered
    request itself, stands. The one rule of every transport (this module's, the trading adapter's).

    >>> asks_unfiltered({"symbols": '["NOPEUSDT"]'}, -1121), asks_unfiltered({}, -1121)
    (True, False)
    """
    return code == _INVALID_SYMBOL and bool(query)


# ------------------------------------------------------------------------------------------------------- loading


def load_instruments(
    rest_url: str,
    symbols: Iterable[str] | None,
    *,
    cache_dir: Path | None,
    allow_cache: bool = True,
    timeout: float = 10.0,
    maker_fee_rate: int = _DEFAULT_FEE_RATE,
    taker_fee_rate: int = _DEFAULT_FEE_RATE,
) -> tuple[ExchangeInstruments, dict[str, Any]]:
    """The instruments of ``symbols`` from ``GET {rest_url}/api/v3/exchangeInfo?symbols=[...]`` (once, at start-up).

    Every start fetches a fresh payload, so a symbol halted or delisted since, or a filter Binance changed, is seen; it
    is cached as ``exchange-info.json`` in ``cache_dir`` (the run folder), with the fetch time. A fetch that fails
    (network, timeout, HTTP 5xx or 429, a body that is not an exchangeInfo) falls back to the cache when there is one
    and ``allow_cache`` (paper trading), and says so in the info, with the cache's age; otherwise it is an
    :class:`InvalidInput` naming the URL and the failure (live trading never starts from a cache: its filters or the
    symbol's status may have changed). Binance refusing the request itself (HTTP 4xx with an error code) is an error,
    never a fallback; its -1121 "Invalid symbol." to the list, which names no symbol, gets the unfiltered exchangeInfo
    (:func:`asks_unfiltered`), so the :class:`InvalidInput` names every requested symbol Binance does not list, and
    every one not ``TRADING``.

    Returns ``(instruments, info)``; ``info`` has ``source`` ("rest" or "cache"), ``fetched_at`` (ISO UTC, None for a
    cache written by hand), ``url``, ``path`` (the cache file or None), ``notes`` and ``coarsened`` (symbol ->
    ``{"exchange_step", "step"}``), and ``fallback`` (why the cache was used, and how old it is) when it was.
    """
    wanted = _wanted(symbols) if symbols is not None else None
    shown = redact_url(_url(rest_url, wanted))  # what the info, errors and cache say: never a userinfo or key in it
    path = Path(cache_dir) / CACHE_NAME if cache_dir is not None else None
    info: dict[str, Any] = {"url": shown, "path": str(path) if path is not None else None}
    try:
        body, payload = _fetch_listed(rest_url, wanted, timeout)
    except _FetchFailed as exc:
        failure = str(exc)
        if not allow_cache:
            raise InvalidInput(
                f"cannot load instruments: {failure}, and live trading never starts from a cached exchangeInfo (a "
                "symbol's status or filters may have changed since): retry when Binance answers"
            ) from exc
        cached = _read_cache(path) if path is not None and path.exists() else None
        if cached is None:
            where = f"no cache at {path}" if path is not None else "no cache_dir to fall back to"
            raise InvalidInput(f"cannot load instruments: {failure} and there is {where}") from exc
        lacking = _lacking(cached[0], wanted)
        if lacking:
            raise InvalidInput(
                f"cannot load instruments: {failure} and the cache {path} has no {', '.join(lacking)}"
            ) from exc
        payload, fetched_at, fetched_at_ms = cached
        age = "of unknown age" if fetched_at_ms is None else f"{_age(time.time_ns() // 1_000_000 - fetched_at_ms)} old"
        info["fallback"] = (
            f"{failure}; using the cache fetched at {fetched_at or 'an unknown time'} ({age}): a symbol halted or a "
            "filter changed since then is not seen"
        )
        return _parsed((payload, fetched_at), "cache", info, wanted, maker_fee_rate, taker_fee_rate)
    now_ms = time.time_ns() // 1_000_000
    fetched_at = datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(timespec="milliseconds")
    if path is not None:
        _write_cache(path, body, shown, fetched_at, now_ms)
    return _parsed((payload, fetched_at), "rest", info, wanted, maker_fee_rate, taker_fee_rate)


def _age(ms: int) -> str:
    """A duration in ms in words, to the two largest units: ``"3 d 4 h"``, ``"12 min 5 s"``, ``"0 s"``."""
    seconds = max(ms, 0) // 1000
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts[:2])


class _FetchFailed(Exception):
    """The request did not produce an exchangeInfo (network, timeout, HTTP error that is not Binance's no, a body
    that is not one)."""


class _Refused(InvalidInput):
    """Binance's own "no" to the request (its error ``code``)."""

    def __init__(self, message: str, code: Any) -> None:
        super().__init__(message)
        self.code = code


_INVALID_SYMBOL = -1121


def _fetch_listed(rest_url: str, wanted: list[str] | None, timeout: float) -> tuple[bytes, Any]:
    """The body and the parsed exchangeInfo for ``wanted`` (every symbol when None); when Binance refuses the list
    (:func:`asks_unfiltered`), the unfiltered one's. :class:`_FetchFailed` names the URL and what failed;
    :class:`_Refused` is Binance's own "no" (the message names the URL), never a reason to use a cache: neither is the
    unfiltered request failing after it (an :class:`InvalidInput` saying both)."""
    url = _url(rest_url, wanted)
    try:
        return _fetch_payload(url, timeout)
    except _Refused as refused:
        if not asks_unfiltered(exchange_info_query(wanted or ()), refused.code):
            raise
        unfiltered = _url(rest_url, None)
        try:
            return _fetch_payload(unfiltered, timeout)
        except (_FetchFailed, DataError) as exc:
            raise InvalidInput(
                f"{refused}; the unfiltered exchangeInfo, asked to name the symbol(s) Binance does not list, gave "
                f"nothing: {_failure(unfiltered, exc)}"
            ) from exc
    except (_FetchFailed, DataError) as exc:
        raise _FetchFailed(_failure(url, exc)) from exc


def _failure(url: str, exc: Exception) -> str:
    if isinstance(exc, _FetchFailed):
        return f"GET {redact_url(url)} failed ({exc})"
    return f"GET {redact_url(url)} gave no usable body ({exc})"


def _fetch_payload(url: str, timeout: float) -> tuple[bytes, Any]:
    """The body at ``url`` and its parsed exchangeInfo (:class:`DataError` for a body that is not one)."""
    body = _fetch(url, timeout)
    payload = _loads(body)
    _field(payload, "symbols", "exchangeInfo")
    return body, payload


def _url(rest_url: str, wanted: list[str] | None) -> str:
    if not isinstance(rest_url, str) or not rest_url.strip():
        raise InvalidInput(f"rest_url: expected an http(s) URL, got {rest_url!r}")
    query = exchange_info_query(wanted or ())
    return f"{rest_url.strip().rstrip('/')}/api/v3/exchangeInfo" + (
        f"?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}" if query else ""
    )


def _fetch(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "veloz-actors"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - an http(s) URL from config
            return response.read()  # type: ignore[no-any-return]
    except urllib.error.HTTPError as exc:
        body = exc.read() if exc.fp is not None else b""
        refusal = _binance_refusal(exc.code, body)
        if refusal:
            raise _Refused(f"Binance refused GET {redact_url(url)}: {refusal[1]}", refusal[0]) from exc
        raise _FetchFailed(redact_url(url, f"HTTP {exc.code} {exc.reason}")) from exc
    except (OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise _FetchFailed(redact_url(url, f"{type(exc).__name__}: {reason}")) from exc  # it may quote the URL


def _binance_refusal(status: int, body: bytes) -> tuple[Any, str] | None:
    """Binance's own "no" to the request (4xx with ``{"code", "msg"}``): ``(code, text)``, except rate limits (429,
    418), or None."""
    if not 400 <= status < 500 or status in (418, 429):
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, dict) and "code" in data and "msg" in data:
        return data["code"], f"error {data['code']}: {data['msg']}"
    return None


def _read_cache(path: Path) -> tuple[Any, str | None, int | None] | None:
    """``(payload, fetched_at, fetched_at_ms)`` from the cache; a file holding a bare exchangeInfo payload (written by
    hand) works too, with an unknown fetch time. An unreadable cache is ignored (as if missing)."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if isinstance(data, dict) and "payload" in data:
        fetched_at = data.get("fetched_at")
        fetched_at_ms = data.get("fetched_at_ms")
        return (
            data["payload"],
            fetched_at if isinstance(fetched_at, str) else None,
            fetched_at_ms if type(fetched_at_ms) is int else None,
        )
    if isinstance(data, dict) and "symbols" in data:
        return data, None, None
    return None


def _write_cache(path: Path, body: bytes, url: str, fetched_at: str, fetched_at_ms: int) -> None:
    """``{"fetched_at", "fetched_at_ms", "url", "payload": <Binance's bytes, unchanged>}``, written whole or not at
    all (:func:`~veloz_actors._files.write_atomically`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "fetched_at": fetched_at,
        "fetched_at_ms": fetched_at_ms,
        "url": url,
        "payload": orjson.Fragment(body),
    }
    write_atomically({path: orjson.dumps(record)})


def _lacking(payload: Any, wanted: list[str] | None) -> list[str]:
    if wanted is None:
        return []
    rows = payload.get("symbols") if isinstance(payload, dict) else None
    have = {row.get("symbol") for row in rows if isinstance(row, dict)} if isinstance(rows, list) else set()
    return [s for s in wanted if s not in have]


def _parsed(
    cached: tuple[Any, str | None],
    source: str,
    info: dict[str, Any],
    wanted: list[str] | None,
    maker: int,
    taker: int,
) -> tuple[ExchangeInstruments, dict[str, Any]]:
    payload, fetched_at = cached
    instruments = parse_exchange_info(payload, wanted, maker_fee_rate=maker, taker_fee_rate=taker)
    info.update(
        source=source,
        fetched_at=fetched_at,
        notes=list(instruments.notes),
        coarsened={
            symbol: {"exchange_step": format_decimal(before), "step": format_decimal(after)}
            for symbol, (before, after) in instruments.coarsened.items()
        },
    )
    return instruments, info
