"""Binance exchangeInfo -> Instrument: the recorded payload, hand-edited variants, and load_instruments against a real
local HTTP server (127.0.0.1, a real socket, no internet) for the fetch, cache and fallback rules."""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from veloz_actors import ConfigError, DataError, InvalidInput
from veloz_actors.config import (
    check_journal_instruments,
    default_engine_config,
    load_engine_config,
    resolve_venue_instruments,
    with_venue,
)
from veloz_actors.messages import RejectReason
from veloz_actors.testing import d
from veloz_actors.testing.binance_server import BinanceTestServer
from veloz_actors.venues.binance import ExchangeInstruments, load_instruments, parse_exchange_info
from veloz_actors.venues.binance.instruments import asks_unfiltered, exchange_info_query

E8 = 10**8


@pytest.fixture(scope="module")
def raw(shared_data: Path) -> bytes:
    return (shared_data / "binance-api" / "examples-nautilus" / "http_spot_market_exchange_info.json").read_bytes()


@pytest.fixture
def payload(raw: bytes) -> dict[str, Any]:
    return json.loads(raw)


def _symbol(payload: dict[str, Any], symbol: str) -> dict[str, Any]:
    return next(row for row in payload["symbols"] if row["symbol"] == symbol)


def _filter(payload: dict[str, Any], symbol: str, filter_type: str) -> dict[str, Any]:
    return next(f for f in _symbol(payload, symbol)["filters"] if f["filterType"] == filter_type)


def _with_symbol(payload: dict[str, Any], symbol: str, tick: str, step: str, **row: Any) -> dict[str, Any]:
    """``payload`` plus a copy of ETHUSDT renamed ``symbol`` with the given tick and step."""
    extra = copy.deepcopy(_symbol(payload, "ETHUSDT"))
    extra.update(symbol=symbol, baseAsset=symbol.removesuffix("USDT"), **row)
    for f in extra["filters"]:
        if f["filterType"] == "PRICE_FILTER":
            f.update(tickSize=tick, minPrice=tick)
        elif f["filterType"] == "LOT_SIZE":
            f.update(stepSize=step, minQty=step)
    payload["symbols"].append(extra)
    return payload


# --------------------------------------------------------------------------------------------- the recorded payload


def test_recorded_payload_gives_binance_filters_exactly(raw: bytes) -> None:
    instruments = parse_exchange_info(raw, ["BTCUSDT", "ETHUSDT"])
    assert isinstance(instruments, ExchangeInstruments) and list(instruments) == ["BTCUSDT", "ETHUSDT"]
    btc = instruments["BTCUSDT"]
    assert (btc.base_asset, btc.quote_asset) == ("BTC", "USDT")
    assert (btc.price_tick, btc.min_price, btc.max_price) == (d("0.01"), d("0.01"), d("1000000"))
    assert (btc.qty_step, btc.min_qty, btc.max_qty) == (d("0.00001"), d("0.00001"), d("9000"))
    assert (btc.market_min_qty, btc.market_max_qty) == (0, d("112.2110882"))  # MARKET_LOT_SIZE kept
    assert (btc.min_notional, btc.min_notional_market, btc.max_notional) == (d("10"), True, 0)  # legacy MIN_NOTIONAL
    assert (btc.base_precision, btc.quote_precision) == (8, 8)
    assert (btc.maker_fee_rate, btc.taker_fee_rate) == (100_000, 100_000)
    eth = instruments["ETHUSDT"]
    assert (eth.price_tick, eth.qty_step, eth.market_max_qty) == (d("0.01"), d("0.0001"), d("1630.44517663"))
    assert instruments.notes == [] and instruments.coarsened == {} and instruments.server_time_ms == 1634942465856


def test_market_lot_size_is_enforced_on_market_orders(raw: bytes) -> None:
    btc = parse_exchange_info(raw, ["BTCUSDT"])["BTCUSDT"]
    assert btc.check_qty(d("112.2111")) is None
    assert btc.check_qty(d("112.2111"), market=True)[0] is RejectReason.MAX_ORDER_QUANTITY


def test_no_symbols_means_every_trading_symbol_and_fees_are_passed_through(payload: dict[str, Any]) -> None:
    instruments = parse_exchange_info(payload, maker_fee_rate=75_000, taker_fee_rate=90_000)
    assert sorted(instruments) == ["BTCUSDT", "ETHUSDT"]
    assert {(i.maker_fee_rate, i.taker_fee_rate) for i in instruments.values()} == {(75_000, 90_000)}


def test_symbols_are_matched_case_insensitively_and_once(raw: bytes) -> None:
    assert list(parse_exchange_info(raw, ["ethusdt", "ETHUSDT", " btcusdt "])) == ["ETHUSDT", "BTCUSDT"]


def test_notional_filter_carries_max_notional_and_its_market_flags(payload: dict[str, Any]) -> None:
    filters = _symbol(payload, "BTCUSDT")["filters"]
    filters[:] = [f for f in filters if f["filterType"] != "MIN_NOTIONAL"]
    filters.append({"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": False,
                    "maxNotional": "9000000.00000000", "applyMaxToMarket": True, "avgPriceMins": 5})  # fmt: skip
    btc = parse_exchange_info(payload, ["BTCUSDT"])["BTCUSDT"]
    assert (btc.min_notional, btc.max_notional) == (d("5"), d("9000000"))
    assert (btc.min_notional_market, btc.max_notional_market) == (False, True)


def test_precisions_come_from_the_payload(payload: dict[str, Any]) -> None:
    row = _symbol(payload, "ETHUSDT")
    row["baseAssetPrecision"] = 6
    row["quoteAssetPrecision"] = 2
    eth = parse_exchange_info(payload, ["ETHUSDT"])["ETHUSDT"]
    assert (eth.base_precision, eth.quote_precision) == (6, 2)


def test_a_maximum_beyond_what_veloz_represents_is_capped_not_refused(payload: dict[str, Any]) -> None:
    _filter(payload, "BTCUSDT", "LOT_SIZE")["maxQty"] = "46116860414.00000000"
    btc = parse_exchange_info(payload, ["BTCUSDT"])["BTCUSDT"]
    assert btc.max_qty == 10**10 * E8


# ------------------------------------------------------------------------------------------------ tradability


def test_requested_symbol_that_is_not_trading_is_an_error_naming_it(payload: dict[str, Any]) -> None:
    _symbol(payload, "ETHUSDT")["status"] = "BREAK"
    with pytest.raises(InvalidInput, match="ETHUSDT is not tradable on Binance: its status is BREAK"):
        parse_exchange_info(payload, ["BTCUSDT", "ETHUSDT"])
    assert list(parse_exchange_info(payload, ["BTCUSDT"])) == ["BTCUSDT"]


def test_not_trading_symbols_are_skipped_and_counted_when_all_are_asked_for(payload: dict[str, Any]) -> None:
    _symbol(payload, "ETHUSDT")["status"] = "HALT"
    instruments = parse_exchange_info(payload)
    assert list(instruments) == ["BTCUSDT"]
    assert instruments.skipped == {"ETHUSDT": "status HALT"}
    assert instruments.notes == ["1 symbol(s) not TRADING skipped"]


def test_requested_symbol_missing_from_the_payload_is_an_error_naming_it(raw: bytes) -> None:
    with pytest.raises(InvalidInput, match="exchangeInfo has no symbol ALGOUSDT, DOGEUSDT"):
        parse_exchange_info(raw, ["BTCUSDT", "ALGOUSDT", "DOGEUSDT"])


def test_every_requested_symbol_missing_or_not_trading_is_named_in_one_error(payload: dict[str, Any]) -> None:
    """A start names every symbol to fix at once (before: the missing ones, and after fixing those the first one not
    trading, one per attempt)."""
    _symbol(payload, "BTCUSDT")["status"] = "HALT"
    _symbol(payload, "ETHUSDT")["status"] = "BREAK"
    with pytest.raises(InvalidInput) as refused:
        parse_exchange_info(payload, ["BTCUSDT", "NOPEUSDT", "ETHUSDT"])
    assert str(refused.value) == (
        "exchangeInfo has no symbol NOPEUSDT (Binance does not list it: a wrong name, or delisted); BTCUSDT is not "
        "tradable on Binance: its status is HALT, not TRADING; ETHUSDT is not tradable on Binance: its status is "
        "BREAK, not TRADING: check the symbol name(s)"
    )


# ----------------------------------------------------------------------------------------------- broken payloads


def test_missing_price_filter_is_a_data_error_naming_symbol_and_filter(payload: dict[str, Any]) -> None:
    filters = _symbol(payload, "BTCUSDT")["filters"]
    filters[:] = [f for f in filters if f["filterType"] != "PRICE_FILTER"]
    with pytest.raises(DataError, match="exchangeInfo BTCUSDT: no PRICE_FILTER filter"):
        parse_exchange_info(payload, ["BTCUSDT"])


def test_missing_lot_size_is_a_data_error(payload: dict[str, Any]) -> None:
    filters = _symbol(payload, "ETHUSDT")["filters"]
    filters[:] = [f for f in filters if f["filterType"] != "LOT_SIZE"]
    with pytest.raises(DataError, match="exchangeInfo ETHUSDT: no LOT_SIZE filter"):
        parse_exchange_info(payload, ["ETHUSDT"])


def test_missing_notional_filters_mean_no_minimum_and_say_so(payload: dict[str, Any]) -> None:
    filters = _symbol(payload, "BTCUSDT")["filters"]
    filters[:] = [f for f in filters if f["filterType"] != "MIN_NOTIONAL"]
    instruments = parse_exchange_info(payload, ["BTCUSDT"])
    assert instruments["BTCUSDT"].min_notional == 0
    assert instruments.notes == ["BTCUSDT: no NOTIONAL or MIN_NOTIONAL filter: no minimum notional"]


@pytest.mark.parametrize("bad", ["0.01.0", "1e-2", "-0.01", "0.000000001", "", "abc", 0.01])
def test_bad_decimal_is_a_data_error_naming_the_field(payload: dict[str, Any], bad: Any) -> None:
    _filter(payload, "BTCUSDT", "PRICE_FILTER")["tickSize"] = bad
    with pytest.raises(DataError, match=r"exchangeInfo BTCUSDT PRICE_FILTER\.tickSize"):
        parse_exchange_info(payload, ["BTCUSDT"])


def test_zero_step_is_a_data_error(payload: dict[str, Any]) -> None:
    _filter(payload, "BTCUSDT", "LOT_SIZE")["stepSize"] = "0.00000000"
    with pytest.raises(DataError, match="LOT_SIZE stepSize must be positive"):
        parse_exchange_info(payload, ["BTCUSDT"])


def test_inconsistent_filters_are_a_data_error_not_a_config_error(payload: dict[str, Any]) -> None:
    _filter(payload, "BTCUSDT", "LOT_SIZE")["minQty"] = "10000.00000000"  # above maxQty 9000
    with pytest.raises(DataError, match="exchangeInfo BTCUSDT: filters VeloZ cannot use"):
        parse_exchange_info(payload, ["BTCUSDT"])


def test_a_broken_symbol_is_skipped_with_a_note_when_all_are_asked_for(payload: dict[str, Any]) -> None:
    _filter(payload, "ETHUSDT", "LOT_SIZE")["stepSize"] = "nan"
    instruments = parse_exchange_info(payload)
    assert list(instruments) == ["BTCUSDT"]
    assert "LOT_SIZE.stepSize" in instruments.skipped["ETHUSDT"]
    assert instruments.notes[0].startswith("ETHUSDT: skipped: ")


@pytest.mark.parametrize(
    "body", [b'{"code": -1121, "msg": "Invalid symbol."}', b"not json", b"[]", b'{"timezone": "UTC"}']
)
def test_a_body_that_is_not_an_exchange_info_is_a_data_error(body: bytes) -> None:
    with pytest.raises(DataError, match="-1121: Invalid symbol|not valid JSON|exchangeInfo"):
        parse_exchange_info(body, ["BTCUSDT"])


# ---------------------------------------------------------------------------------------------------- coarsening


@pytest.mark.parametrize(
    ("tick", "step", "used"),
    [
        ("0.00000010", "0.01000000", "0.1"),  # tick 1e-7 x step 0.01 = 1e-9 -> step 0.1
        ("0.00000001", "0.01000000", "1"),  # tick 1e-8 (a coin at 0.00000123) -> step 1
        ("0.00010000", "0.00001000", "0.0001"),
    ],
)
def test_a_step_too_fine_for_exact_notionals_is_coarsened_and_said(
    payload: dict[str, Any], tick: str, step: str, used: str
) -> None:
    instruments = parse_exchange_info(_with_symbol(payload, "TINYUSDT", tick, step), ["BTCUSDT", "TINYUSDT"])
    tiny = instruments["TINYUSDT"]
    assert (tiny.price_tick, tiny.qty_step, tiny.min_qty) == (d(tick), d(used), d(step))
    assert instruments.coarsened == {"TINYUSDT": (d(step), d(used))}
    assert len(instruments.notes) == 1
    note = instruments.notes[0]
    assert note.startswith("TINYUSDT: Binance's tick ") and f"quantities use step {used} " in note
    assert tiny.qty_step % d(step) == 0  # still valid on Binance
    assert tiny.price_tick * tiny.qty_step % E8 == 0  # and every notional is exact
    assert instruments["BTCUSDT"].qty_step == d("0.00001")  # the others are untouched


def test_an_exact_step_is_left_alone(payload: dict[str, Any]) -> None:
    instruments = parse_exchange_info(_with_symbol(payload, "ALGOUSDT", "0.00010000", "1.00000000"), ["ALGOUSDT"])
    assert instruments["ALGOUSDT"].qty_step == d("1") and instruments.coarsened == {} and instruments.notes == []


def test_a_disabled_tick_uses_the_finest_tick_and_an_exact_step(payload: dict[str, Any]) -> None:
    instruments = parse_exchange_info(_with_symbol(payload, "ODDUSDT", "0.00000000", "0.00100000"), ["ODDUSDT"])
    odd = instruments["ODDUSDT"]
    assert (odd.price_tick, odd.qty_step) == (1, d("1"))
    assert instruments.coarsened == {"ODDUSDT": (d("0.001"), d("1"))}
    assert (
        instruments.notes[0] == "ODDUSDT: PRICE_FILTER tickSize is 0 (disabled): prices use the finest tick 0.00000001"
    )


def test_a_market_step_the_lot_step_is_not_a_multiple_of_is_folded_in(payload: dict[str, Any]) -> None:
    _filter(payload, "BTCUSDT", "MARKET_LOT_SIZE")["stepSize"] = "0.00100000"
    instruments = parse_exchange_info(payload, ["BTCUSDT"])
    assert instruments["BTCUSDT"].qty_step == d("0.001")
    assert "MARKET_LOT_SIZE stepSize 0.001 differs from LOT_SIZE stepSize 0.00001" in instruments.notes[0]


# ------------------------------------------------------------------------------------------- load_instruments


class _Server:
    """A real HTTP server on 127.0.0.1 answering every GET with ``status`` and ``body``; records the paths asked."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.status = 200
        self.delay = 0.0
        self.paths: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.paths.append(self.path)
                time.sleep(server.delay)
                try:
                    self.send_response(server.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(server.body)))
                    self.end_headers()
                    self.wfile.write(server.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(timeout=5)
            self.running = False


@pytest.fixture
def server(raw: bytes) -> Iterator[_Server]:
    srv = _Server(raw)
    yield srv
    srv.stop()


SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def test_fetches_the_symbols_and_caches_the_raw_payload_with_the_fetch_time(
    server: _Server, raw: bytes, tmp_path: Path
) -> None:
    before = time.time_ns() // 1_000_000
    instruments, info = load_instruments(server.url + "/", SYMBOLS, cache_dir=tmp_path)
    assert instruments["BTCUSDT"].price_tick == d("0.01") and sorted(instruments) == SYMBOLS
    assert len(server.paths) == 1
    path, _, query = server.paths[0].partition("?")
    assert path == "/api/v3/exchangeInfo"
    assert json.loads(urllib.parse.parse_qs(query)["symbols"][0]) == SYMBOLS
    cache = orjson.loads((tmp_path / "exchange-info.json").read_bytes())
    assert cache["payload"] == json.loads(raw)
    assert raw.strip() in (tmp_path / "exchange-info.json").read_bytes()  # Binance's bytes, unchanged
    assert before <= cache["fetched_at_ms"] <= time.time_ns() // 1_000_000
    assert info["source"] == "rest" and info["fetched_at"] == cache["fetched_at"]
    assert info["path"] == str(tmp_path / "exchange-info.json") and info["url"] == server.url + server.paths[0]
    assert info["notes"] == [] and info["coarsened"] == {} and "fallback" not in info


def test_every_start_fetches_again_and_sees_a_halted_symbol_and_a_changed_filter(
    server: _Server, raw: bytes, tmp_path: Path
) -> None:
    """A cache in the run folder is no reason to skip the fetch: a symbol halted since, or a filter changed since,
    would go unnoticed (paper fills against a frozen book, live orders Binance refuses)."""
    load_instruments(server.url, SYMBOLS, cache_dir=tmp_path)
    later = json.loads(raw)
    _filter(later, "BTCUSDT", "LOT_SIZE")["maxQty"] = "100.00000000"
    _symbol(later, "ETHUSDT")["status"] = "BREAK"
    server.body = json.dumps(later).encode()
    with pytest.raises(InvalidInput, match="ETHUSDT is not tradable on Binance: its status is BREAK"):
        load_instruments(server.url, SYMBOLS, cache_dir=tmp_path)
    instruments, info = load_instruments(server.url, ["BTCUSDT"], cache_dir=tmp_path)
    assert len(server.paths) == 3 and info["source"] == "rest" and instruments["BTCUSDT"].max_qty == d("100")
    server.stop()  # the fetch fails: the cache holds the last payload fetched
    cached, info = load_instruments(server.url, ["BTCUSDT"], cache_dir=tmp_path, timeout=0.2)
    assert info["source"] == "cache" and cached["BTCUSDT"].max_qty == d("100")


def test_live_trading_never_starts_from_the_cache(server: _Server, tmp_path: Path) -> None:
    """Paper trading falls back to the cache when Binance does not answer, saying how old it is; live trading is a
    clear error instead, whatever the cache holds."""
    shipped = load_engine_config(default_engine_config())
    paper = with_venue(shipped, kind="binance", mode="paper", symbols=SYMBOLS, rest_url=server.url)
    live = with_venue(paper, mode="live")
    found, info = resolve_venue_instruments(live, tmp_path)  # Binance answers: the cache is written
    assert found is not None and info["source"] == "rest" and (tmp_path / "exchange-info.json").exists()
    server.status = 503
    with pytest.raises(ConfigError, match=r"GET .* failed \(HTTP 503 .*\), and live trading never starts from a "
                       r"cached exchangeInfo"):  # fmt: skip
        resolve_venue_instruments(live, tmp_path)
    found, info = resolve_venue_instruments(paper, tmp_path)
    assert found is not None and info["source"] == "cache" and re.search(r"\(\d+ s old\)", info["fallback"])


def test_a_hand_written_bare_cache_is_used_with_an_unknown_fetch_time(raw: bytes, tmp_path: Path) -> None:
    (tmp_path / "exchange-info.json").write_bytes(raw)
    instruments, info = load_instruments("http://127.0.0.1:9", SYMBOLS, cache_dir=tmp_path)
    assert info["source"] == "cache" and info["fetched_at"] is None and sorted(instruments) == SYMBOLS


@pytest.mark.parametrize("failure", ["http-503", "refused", "timeout", "not-json"])
def test_a_failed_fetch_falls_back_to_the_cache_and_says_so(server: _Server, tmp_path: Path, failure: str) -> None:
    _, first = load_instruments(server.url, SYMBOLS, cache_dir=tmp_path)
    expected = {"http-503": "HTTP 503", "refused": "Connection refused", "timeout": "timed out", "not-json": "JSON"}
    if failure == "http-503":
        server.status = 503
    elif failure == "refused":
        server.stop()
    elif failure == "timeout":
        server.delay = 1.0
    else:
        server.body = b"<html>maintenance</html>"
    if failure == "timeout":
        instruments, info = load_instruments(server.url, SYMBOLS, cache_dir=tmp_path, timeout=0.2)
    else:  # answered late, as on a loaded machine: still the failure it is, not a timeout (it was, at timeout=0.2)
        server.delay = 0.3
        instruments, info = load_instruments(server.url, SYMBOLS, cache_dir=tmp_path)
    assert info["source"] == "cache" and info["fetched_at"] == first["fetched_at"]
    assert info["fallback"].startswith(f"GET {server.url}/api/v3/exchangeInfo")
    assert expected[failure] in info["fallback"] and f"fetched at {first['fetched_at']} (" in info["fallback"]
    assert re.search(r"\(\d+ s old\): a symbol halted or a filter changed since then is not seen", info["fallback"])
    assert instruments["BTCUSDT"].qty_step == d("0.00001")


def test_a_failed_fetch_without_a_cache_is_a_clear_error(server: _Server, tmp_path: Path) -> None:
    server.status = 500
    with pytest.raises(InvalidInput, match=r"cannot load instruments: GET http://127\.0\.0\.1:\d+/api/v3/exchangeInfo"
                       r"\?symbols=\S+ failed \(HTTP 500 .*\) and there is no cache at .*exchange-info\.json"):  # fmt: skip
        load_instruments(server.url, SYMBOLS, cache_dir=tmp_path)
    assert not (tmp_path / "exchange-info.json").exists()
    with pytest.raises(InvalidInput, match="no cache_dir to fall back to"):
        load_instruments(server.url, SYMBOLS, cache_dir=None)


def test_only_binance_refusing_a_symbol_list_as_invalid_asks_for_the_unfiltered_exchange_info() -> None:
    """The one rule of both transports (this module's fetch and the trading adapter's): a -1121 to a symbol list
    asks for the unfiltered exchangeInfo; another refusal, or the unfiltered request's own, stands."""
    listed = exchange_info_query(["BTCUSDT", "NOPEUSDT"])
    assert listed == {"symbols": '["BTCUSDT","NOPEUSDT"]'} and exchange_info_query([]) == {}
    assert asks_unfiltered(listed, -1121)
    assert not asks_unfiltered(listed, -1100) and not asks_unfiltered(listed, None)
    assert not asks_unfiltered({}, -1121)


@pytest.mark.parametrize("mode", ["live", "paper"])
def test_a_start_names_every_configured_symbol_binance_does_not_list_or_trade(
    shared_data: Path, tmp_path: Path, mode: str
) -> None:
    """Against the local Binance server: Binance refuses a symbol list naming one it does not list with -1121
    "Invalid symbol.", which names none (the start said just that, and left the user to guess which configured symbol
    was wrong). The unfiltered exchangeInfo is asked for instead, and the start is refused naming every symbol Binance
    does not list (a wrong name, or delisted since) and every one not TRADING; in paper mode the cache of an earlier
    start is no way around it."""
    captures = [shared_data / "ticks_l2" / f"binance_spot_{s}_20240808_ws.txt.gz" for s in ("btcusdt", "ethusdt")]
    with BinanceTestServer(captures, paused=True) as binance:
        config = with_venue(load_engine_config(default_engine_config()), kind="binance", mode=mode, symbols=SYMBOLS,
                            rest_url=binance.rest_url)  # fmt: skip
        found, info = resolve_venue_instruments(config, tmp_path)
        assert found is not None and sorted(found) == SYMBOLS and (tmp_path / "exchange-info.json").is_file()
        binance.faults.delist("ETHUSDT")
        more = with_venue(config, symbols=[*SYMBOLS, "NOPEUSDT"])
        with pytest.raises(ConfigError) as refused:
            resolve_venue_instruments(more, tmp_path)
        assert str(refused.value) == (
            "venue: exchangeInfo has no symbol ETHUSDT, NOPEUSDT (Binance does not list them: a wrong name, or "
            "delisted): check the symbol name(s)"
        )
        binance.faults.change_symbol("BTCUSDT", status="BREAK")
        with pytest.raises(ConfigError) as refused:
            resolve_venue_instruments(more, tmp_path)
        assert "delisted); BTCUSDT is not tradable on Binance: its status is BREAK, not TRADING" in str(refused.value)


def test_binance_refusing_the_request_is_an_error_not_a_fallback(server: _Server, tmp_path: Path) -> None:
    load_instruments(server.url, SYMBOLS, cache_dir=tmp_path)
    server.status = 400
    server.body = b'{"code":-1121,"msg":"Invalid symbol."}'
    with pytest.raises(InvalidInput, match=r"Binance refused GET .* error -1121: Invalid symbol\."):
        load_instruments(server.url, SYMBOLS, cache_dir=tmp_path)


def test_a_fetched_symbol_that_is_not_trading_is_an_error(server: _Server, raw: bytes, tmp_path: Path) -> None:
    halted = json.loads(raw)
    _symbol(halted, "ETHUSDT")["status"] = "HALT"
    server.body = json.dumps(halted).encode()
    with pytest.raises(InvalidInput, match="ETHUSDT is not tradable on Binance: its status is HALT"):
        load_instruments(server.url, SYMBOLS, cache_dir=tmp_path)


def test_coarsened_steps_reach_the_info(server: _Server, raw: bytes, tmp_path: Path) -> None:
    server.body = json.dumps(_with_symbol(json.loads(raw), "TINYUSDT", "0.00000010", "0.01000000")).encode()
    instruments, info = load_instruments(server.url, ["TINYUSDT"], cache_dir=tmp_path)
    assert instruments["TINYUSDT"].qty_step == d("0.1")
    assert info["coarsened"] == {"TINYUSDT": {"exchange_step": "0.01", "step": "0.1"}}
    assert info["notes"] == instruments.notes and len(info["notes"]) == 1


def test_a_journal_is_recovered_only_with_rules_binance_still_has(server: _Server, raw: bytes, tmp_path: Path) -> None:
    """A live engine recovers with its journal's instruments (its exact replay needs them), checked against
    Binance's exchangeInfo of now (before: never checked, and orders went out under stale rules). Filters changed
    since refuse the start, naming the symbol, the field, old -> new and what to do; a symbol not trading is said
    (its orders are refused by the adapter) without stopping the engine; Binance not answering refuses the start."""
    live = with_venue(load_engine_config(default_engine_config()), kind="binance", mode="live", symbols=SYMBOLS,
                      rest_url=server.url)  # fmt: skip
    journaled, _ = load_instruments(server.url, SYMBOLS, cache_dir=None)
    assert check_journal_instruments(live, journaled.values(), "run/oms.journal") == {}
    later = json.loads(raw)
    _filter(later, "BTCUSDT", "PRICE_FILTER")["tickSize"] = "0.10000000"
    _filter(later, "BTCUSDT", "LOT_SIZE")["minQty"] = "0.00100000"
    server.body = json.dumps(later).encode()
    with pytest.raises(ConfigError) as refused:
        check_journal_instruments(live, journaled.values(), "run/oms.journal")
    message = str(refused.value)
    assert "Binance changed the trading rules since run/oms.journal was started (BTCUSDT: PRICE_FILTER tickSize " \
           "0.01 -> 0.1, LOT_SIZE minQty 0.00001 -> 0.001)" in message  # fmt: skip
    assert "start a new journal" in message and "ETHUSDT" not in message
    halted = json.loads(raw)
    _symbol(halted, "ETHUSDT")["status"] = "BREAK"
    server.body = json.dumps(halted).encode()
    assert check_journal_instruments(live, journaled.values(), "run/oms.journal") == {
        "ETHUSDT": "ETHUSDT: its status on Binance is BREAK, not TRADING"
    }
    server.status = 503
    with pytest.raises(ConfigError, match=r"cannot check the trading rules of run/oms.journal's symbols .*HTTP 503"):
        check_journal_instruments(live, journaled.values(), "run/oms.journal")
