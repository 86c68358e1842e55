"""Binance schemas: golden tests on recorded payloads (examples-nautilus, ticks_l2 capture lines) and bad payloads."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

import pytest

from veloz_actors import DataError, InvalidInput
from veloz_actors.fixed import SCALE, parse_decimal
from veloz_actors.messages import BookDelta, BookTop, FundingRate, Kline, MarkPrice, Side, Trade
from veloz_actors.venues.binance import (
    interval_ns,
    parse_agg_trade,
    parse_book_ticker,
    parse_depth_snapshot,
    parse_depth_update,
    parse_funding_rates,
    parse_kline,
    parse_message,
    parse_premium_index,
    parse_rest_klines,
    parse_trade,
    unwrap,
)
from veloz_actors.venues.binance.schemas import book_ticker_fields, trade_fields

MS = 1_000_000
RECV = 1_700_000_000_000_000_000


def _example(shared_data: Path, name: str) -> object:
    return json.loads((shared_data / "binance-api" / "examples-nautilus" / name).read_text())


def _capture_line(shared_data: Path, name: str, contains: str) -> tuple[int, bytes]:
    with gzip.open(shared_data / "ticks_l2" / name, "rb") as f:
        for line in f:
            if contains.encode() in line:
                head, _, body = line.partition(b" ")
                return int(head), body
    raise AssertionError(f"no line with {contains!r} in {name}")


# ---------------------------------------------------------------------------------------------- recorded payloads


def test_spot_trade_in_combined_stream_envelope(shared_data: Path) -> None:
    raw = _example(shared_data, "ws_spot_trade.json")
    stream, _ = unwrap(raw)
    trade = parse_message(raw, RECV)
    assert stream == "ethusdt@trade"
    assert trade == Trade(
        symbol="ETHUSDT",
        trade_id=705291099,
        price=414974000000,
        qty=43870000,
        aggressor=Side.SELL,  # m: the buyer was the maker, so the taker sold
        ts_event=1639351062244 * MS,
        ts_recv=RECV,
    )


def test_agg_trade_event_uses_the_aggregate_id(shared_data: Path) -> None:
    trade = parse_message(_example(shared_data, "ws_spot_agg_trade.json"), RECV)
    assert (trade.trade_id, trade.price, trade.qty, trade.aggressor) == (226532, 163246000000, 34305000, Side.BUY)


def test_rest_agg_trades_take_the_symbol_and_trade_time(shared_data: Path) -> None:
    rows = _example(shared_data, "http_spot_market_agg_trades.json")
    trades = [parse_agg_trade(row, RECV, symbol="BTCUSDT") for row in rows]
    assert trades[0].ts_event == 1634944096633 * MS and trades[0].price == 6075960000000
    assert [t.trade_id for t in trades] == list(range(966492862, 966492862 + len(trades)))


def test_spot_book_ticker_without_event_time_uses_receive_time(shared_data: Path) -> None:
    local_ns, body = _capture_line(shared_data, "binance_spot_btcusdt_20240808_ws.txt.gz", "@bookTicker")
    top = parse_message(body, local_ns)
    data = json.loads(body)["data"]
    assert isinstance(top, BookTop) and top.ts_event == top.ts_recv == local_ns
    assert (top.bid_price, top.bid_qty, top.ask_price, top.update_id) == (
        int(Decimal(data["b"]) * 10**8),
        int(Decimal(data["B"]) * 10**8),
        int(Decimal(data["a"]) * 10**8),
        data["u"],
    )


def test_futures_book_ticker_carries_event_time(shared_data: Path) -> None:
    top = parse_message(_example(shared_data, "ws_futures_book_ticker.json"), RECV)
    assert top == BookTop(
        symbol="BNBUSDT",
        bid_price=2535190000,
        bid_qty=3121000000,
        ask_price=2536520000,
        ask_qty=4066000000,
        update_id=400900217,
        ts_event=1568014460893 * MS,
        ts_recv=RECV,
    )


def test_spot_depth_update_has_no_prev_update_id(shared_data: Path) -> None:
    local_ns, body = _capture_line(shared_data, "binance_spot_btcusdt_20240808_ws.txt.gz", "@depth@100ms")
    delta = parse_message(body, local_ns)
    assert isinstance(delta, BookDelta) and not delta.is_snapshot
    assert (delta.first_update_id, delta.last_update_id, delta.prev_update_id) == (50093239189, 50093239202, -1)
    assert delta.bids[0] == (6173763000000, 0)  # ["61737.63000000", "0.00000000"]: delete
    assert delta.asks[0] == (6183764000000, 154698000)
    assert delta.ts_event == 1723161255208 * MS


def test_futures_depth_update_keeps_pu(shared_data: Path) -> None:
    delta = parse_depth_update(_example(shared_data, "ws_futures_depth_update.json"), RECV)
    assert (delta.first_update_id, delta.last_update_id, delta.prev_update_id) == (390497796, 390497878, 390497794)
    assert delta.bids[0] == (740389000000, 200000) and delta.asks[-1] == (740720000000, 17500000)


def test_rest_depth_snapshot_is_a_snapshot_delta(shared_data: Path) -> None:
    raw = _example(shared_data, "http_spot_market_depth.json")
    snapshot = parse_depth_snapshot(raw, RECV, symbol="BTCUSDT")
    assert snapshot.is_snapshot and snapshot.first_update_id == snapshot.last_update_id == 14527958487
    assert snapshot.bids[0] == (6065000000000, 213000) and snapshot.ts_event == RECV
    assert len(snapshot.bids) == len(raw["bids"]) and len(snapshot.asks) == len(raw["asks"])


def test_coin_m_depth_snapshot_names_its_own_symbol(shared_data: Path) -> None:
    local_ns, body = _capture_line(shared_data, "binance_cm_btcusd_perp_20240808_ws.txt.gz", "lastUpdateId")
    snapshot = parse_message(body, local_ns)
    assert snapshot.symbol == "BTCUSD_PERP" and snapshot.last_update_id == 1007198635033
    assert snapshot.ts_event == 1723161257835 * MS and snapshot.bids[0] == (6180470000000, 3500000000)


def test_mark_price_update_from_usdm_capture(shared_data: Path) -> None:
    local_us, body = _capture_line(shared_data, "binance_usdm_btcusdt_20230404_ws.txt.gz", "markPriceUpdate")
    mark = parse_message(body, local_us * 1000)
    assert mark == MarkPrice(
        symbol="BTCUSDT",
        mark_price=2814727373413,
        index_price=2815975642857,
        funding_rate=2754,
        next_funding_time=1680652800000 * MS,
        ts_event=1680652701000 * MS,
        ts_recv=local_us * 1000,
    )


def test_premium_index_becomes_mark_price(shared_data: Path) -> None:
    mark = parse_premium_index(_example(shared_data, "http_futures_market_premium_index.json"), RECV)
    assert (mark.mark_price, mark.index_price, mark.funding_rate) == (1179363104562, 1178180495970, 38246)
    assert mark.ts_event == 1597370495002 * MS


def test_rest_funding_rates_keep_their_sign(shared_data: Path) -> None:
    rates = parse_funding_rates(_example(shared_data, "http_futures_market_funding_rate.json"), RECV)
    assert rates[0] == FundingRate(
        symbol="BTCUSDT", rate=-3750000, funding_time=1570608000000 * MS, ts_event=1570608000000 * MS, ts_recv=RECV
    )
    assert rates[1].rate == 10000


def test_rest_klines_are_closed_candles_with_their_interval(shared_data: Path) -> None:
    klines = parse_rest_klines(_example(shared_data, "http_spot_market_klines.json"), "BTCUSDT", RECV)
    first = klines[0]
    assert isinstance(first, Kline) and first.interval_ns == interval_ns("1m") and first.closed
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        6068522000000,
        6072984000000,
        6067090000000,
        6071927000000,
        2163272000,
    )
    assert first.open_time == 1634943780000 * MS and first.ts_event == 1634943840000 * MS


def test_mark_price_klines_parse_with_eight_decimals(shared_data: Path) -> None:
    (kline,) = parse_rest_klines(_example(shared_data, "http_futures_market_mark_price_klines.json"), "BTCUSDT", RECV)
    assert kline.open == 965329201333 and kline.volume == 0


# The Binance docs' kline example, except that its low (0.0015) sits above its open (0.0010): fixed to 0.0005.
_DOC_KLINE = {
    "e": "kline",
    "E": 1672515782136,
    "s": "BNBBTC",
    "k": {"t": 1672515780000, "T": 1672515839999, "s": "BNBBTC", "i": "1m", "f": 100, "L": 200, "o": "0.0010",
          "c": "0.0020", "h": "0.0025", "l": "0.0005", "v": "1000", "n": 100, "x": False, "q": "1.0000",
          "V": "500", "Q": "0.500", "B": "123456"},
}  # fmt: skip


def test_kline_event_is_an_open_candle_until_x() -> None:
    kline = parse_message(_DOC_KLINE, RECV)
    assert isinstance(kline, Kline) and not kline.closed
    assert (kline.open, kline.high, kline.low, kline.close) == (100000, 250000, 50000, 200000)
    assert kline.interval_ns == 60_000_000_000 and kline.open_time == 1672515780000 * MS


def test_kline_event_with_low_above_open_is_rejected() -> None:
    payload = {**_DOC_KLINE, "k": {**_DOC_KLINE["k"], "l": "0.0015"}}
    with pytest.raises(DataError, match="inconsistent candle"):
        parse_kline(payload, RECV)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"i": "1M"}, "field 'i': .*'1M' is not a fixed-length"),  # a month: no fixed number of nanoseconds
        ({"i": "0m"}, "field 'i'"),
        ({"i": 5}, "field 'i'"),
        ({"T": 1672515779999}, "close time 'T' .* is before open time 't'"),
        ({"t": 10**13}, "field 't' must be a time in ms"),
    ],
)
def test_a_kline_the_parser_cannot_take_is_a_data_error(change: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_kline({**_DOC_KLINE, "k": {**_DOC_KLINE["k"], **change}}, RECV)


# ---------------------------------------------------------------------------------------------------- bad payloads


def test_missing_field_is_named() -> None:
    with pytest.raises(DataError, match=r"trade: missing field 'p'"):
        parse_message({"e": "trade", "E": 1, "s": "BTCUSDT", "t": 1, "q": "1", "m": True}, RECV)


def test_non_decimal_price_is_named_with_its_level() -> None:
    payload = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2, "b": [["1.0", "1"], ["abc", "1"]], "a": []}
    with pytest.raises(DataError, match=r"depthUpdate: field 'b'\[1\] price: 'abc' is not a decimal number"):
        parse_message(payload, RECV)


def test_negative_quantity_is_rejected() -> None:
    payload = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2, "b": [], "a": [["1.0", "-1"]]}
    with pytest.raises(DataError, match=r"field 'a'\[0\] qty: '-1' must not be negative"):
        parse_message(payload, RECV)


def test_zero_price_level_is_rejected() -> None:
    payload = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2, "b": [["0.00", "1"]], "a": []}
    with pytest.raises(DataError, match=r"price: must be greater than zero"):
        parse_message(payload, RECV)


def test_more_than_eight_decimals_is_rejected_not_rounded() -> None:
    with pytest.raises(DataError, match="more than 8 decimal places"):
        parse_message({"e": "trade", "E": 1, "s": "X", "t": 1, "p": "1.000000001", "q": "1", "m": False}, RECV)


def test_update_ids_out_of_order_are_rejected() -> None:
    with pytest.raises(DataError, match="below first update id"):
        parse_message({"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 5, "u": 4, "b": [], "a": []}, RECV)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        # ms times whose nanoseconds do not fit an int64 (this one is year 2286)
        ({"e": "trade", "E": 10**13, "s": "X", "t": 1, "p": "1", "q": "1", "m": False}, "field 'E' must be a time"),
        ({"e": "depthUpdate", "E": 2**63, "s": "X", "U": 1, "u": 2, "b": [], "a": []}, "field 'E'"),
        ({"e": "aggTrade", "s": "X", "a": 1, "p": "1", "q": "1", "T": -1, "m": False}, "field 'T' must be a time"),
        # ids beyond int64, or negative (-1 is the client's "book unknown", never a real update id)
        ({"e": "trade", "E": 1, "s": "X", "t": 2**63, "p": "1", "q": "1", "m": False}, "field 't' is out of the 64"),
        ({"e": "depthUpdate", "E": 1, "s": "X", "U": 1, "u": 2**63, "b": [], "a": []}, "field 'u' is out of the 64"),
        ({"e": "depthUpdate", "E": 1, "s": "X", "U": -1, "u": 2, "b": [], "a": []}, "field 'U' must be a non-negative"),
        ({"lastUpdateId": -1, "bids": [], "asks": [], "symbol": "X"}, "field 'lastUpdateId' must be a non-negative"),
        ({"lastUpdateId": 2**64, "bids": [], "asks": [], "symbol": "X"}, "field 'lastUpdateId' is out of the 64"),
        ({"u": 2**63, "s": "X", "b": "1", "B": "1", "a": "2", "A": "1"}, "field 'u' is out of the 64"),
    ],
)
def test_integers_beyond_int64_or_negative_ids_are_rejected(payload: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_message(payload, RECV)


def test_the_fast_readers_reject_what_does_not_fit_an_int64() -> None:
    trade = {"e": "trade", "E": 5, "s": "BTCUSDT", "t": 7, "p": "100.5", "q": "0.25", "m": True}
    for change, message in (({"E": 10**13}, "field 'E'"), ({"t": 2**63}, "field 't'"), ({"t": -1}, "field 't'")):
        with pytest.raises(DataError, match=message):
            trade_fields({**trade, **change}, RECV)
    top = {"u": 1, "s": "BTCUSDT", "b": "1.0", "B": "1", "a": "2.0", "A": "1"}
    for update_id in (2**63, -1):
        with pytest.raises(DataError, match="field 'u'"):
            book_ticker_fields({**top, "u": update_id}, RECV)
    assert trade_fields({**trade, "E": 9_223_372_036_854, "t": 2**63 - 1}, RECV)[-1] == 9_223_372_036_854 * MS


def test_rest_klines_times_must_fit_an_int64() -> None:
    row = [10**13, "1", "1", "1", "1", "1", 10**13 + 59_999, "1", 1, "1", "1", "0"]
    with pytest.raises(DataError, match="open/close times"):
        parse_rest_klines([row], "BTCUSDT", RECV)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"b": "70000.00", "a": "60000.00"}, r"bookTicker: crossed: best bid 70000 is at or above best ask 60000"),
        ({"b": "60000.00", "a": "60000.00"}, r"bookTicker: crossed: best bid 60000 is at or above best ask 60000"),
        ({"b": "0.00000000"}, r"bookTicker: best bid of quantity 1 has price 0"),
        ({"a": "0"}, r"bookTicker: best ask of quantity 1 has price 0"),
        ({"E": 5, "b": "70000.00", "a": "60000.00"}, r"bookTicker: crossed"),  # futures: the checked path
    ],
)
def test_an_impossible_book_ticker_is_refused_by_both_readers(change: dict, message: str) -> None:
    """A crossed top or a side with quantity at price 0 never becomes a top of book (nor a reference price)."""
    payload = {"u": 1, "s": "BTCUSDT", "b": "59999.00", "B": "1", "a": "60000.00", "A": "1", **change}
    with pytest.raises(DataError, match=message):
        book_ticker_fields(payload, RECV)
    with pytest.raises(DataError, match=message):
        parse_book_ticker(payload, RECV)


def test_a_book_ticker_with_an_empty_side_is_taken() -> None:
    empty_ask = {"u": 1, "s": "BTCUSDT", "b": "59999.00", "B": "1", "a": "0.00000000", "A": "0.00000000"}
    assert book_ticker_fields(empty_ask, RECV)[1:5] == (59999 * SCALE, SCALE, 0, 0)


@pytest.mark.parametrize(
    ("bids", "asks", "message"),
    [
        ([["60000.00", "1"]], [["60000.00", "2"]], "depth snapshot: crossed: best bid 60000 is at or above best ask"),
        ([["59000.00", "1"], ["70000.00", "1"]], [["60000.00", "2"]], "crossed: best bid 70000 is at or above"),
    ],
)
def test_a_crossed_depth_snapshot_is_refused(bids: list, asks: list, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_depth_snapshot({"lastUpdateId": 10, "bids": bids, "asks": asks}, RECV, "BTCUSDT")
    # a level of quantity 0 does not count as the best
    parse_depth_snapshot({"lastUpdateId": 10, "bids": [["70000.00", "0"]], "asks": asks}, RECV, "BTCUSDT")


def test_snapshot_without_symbol_needs_one() -> None:
    with pytest.raises(DataError, match="no symbol"):
        parse_message({"lastUpdateId": 1, "bids": [], "asks": []}, RECV)


def test_invalid_json_is_a_data_error() -> None:
    with pytest.raises(DataError, match="not valid JSON"):
        parse_message(b'{"stream": "btcusdt@trade", "data": {', RECV)


def test_unsupported_event_type_is_named() -> None:
    with pytest.raises(DataError, match="unsupported event type 'executionReport'"):
        parse_message({"e": "executionReport", "E": 1}, RECV)


# ------------------------------------------------------------------------------------------- the feed's fast path


def _fields_of(message: BookTop | Trade) -> tuple:
    if type(message) is BookTop:
        m = message
        return (m.symbol, m.bid_price, m.bid_qty, m.ask_price, m.ask_qty, m.update_id, m.ts_event)
    t = message
    return (t.symbol, t.trade_id, t.price, t.qty, t.aggressor is Side.SELL, t.ts_event)  # type: ignore[union-attr]


def test_fast_field_readers_agree_with_the_parsers_on_every_recorded_payload(shared_data: Path) -> None:
    seen = {"bookTicker": 0, "trade": 0}
    for name in ("binance_spot_btcusdt_20240808_ws.txt.gz", "binance_spot_ethusdt_20240808_ws.txt.gz"):
        with gzip.open(shared_data / "ticks_l2" / name, "rb") as f:
            for line in f:
                head, _, body = line.partition(b" ")
                _, data = unwrap(body)
                if "@bookTicker" in body[:60].decode(errors="replace"):
                    assert book_ticker_fields(data, int(head)) == _fields_of(parse_book_ticker(data, int(head)))
                    seen["bookTicker"] += 1
                elif data.get("e") == "trade":
                    assert trade_fields(data, int(head)) == _fields_of(parse_trade(data, int(head)))
                    seen["trade"] += 1
    assert seen["bookTicker"] > 10_000 and seen["trade"] > 1_000
    futures = _example(shared_data, "ws_futures_book_ticker.json")  # has "E": the checked path, same answer
    assert book_ticker_fields(futures, RECV) == _fields_of(parse_book_ticker(futures, RECV))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"u": 1, "s": "BTCUSDT", "b": "1.0", "B": "x", "a": "2.0", "A": "1"}, "field 'B'"),
        ({"u": 1, "s": "BTCUSDT", "b": "-1.0", "B": "1", "a": "2.0", "A": "1"}, "field 'b'"),
        ({"u": "1", "s": "BTCUSDT", "b": "1.0", "B": "1", "a": "2.0", "A": "1"}, "field 'u'"),
        ({"u": 1, "s": "", "b": "1.0", "B": "1", "a": "2.0", "A": "1"}, "field 's'"),
        ({"u": 1, "b": "1.0", "B": "1", "a": "2.0", "A": "1"}, "missing field 's'"),
        ({"u": 1, "s": "BTCUSDT", "b": [], "B": "1", "a": "2.0", "A": "1"}, "field 'b'"),
    ],
)
def test_fast_book_ticker_reader_names_what_is_wrong(payload: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        book_ticker_fields(payload, RECV)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"p": "0.00000000"}, "field 'p'"),
        ({"q": "0"}, "field 'q'"),
        ({"m": 1}, "field 'm'"),
        ({"E": -5}, "field 'E'"),
        ({"t": 1.5}, "field 't'"),
        ({"p": "1e5"}, "field 'p'"),
        ({"q": None}, "field 'q'"),
    ],
)
def test_fast_trade_reader_names_what_is_wrong(change: dict, message: str) -> None:
    good = {"e": "trade", "E": 5, "s": "BTCUSDT", "t": 7, "p": "100.5", "q": "0.25", "T": 5, "m": True, "M": True}
    assert trade_fields(good, RECV) == ("BTCUSDT", 7, 10_050_000_000, 25_000_000, True, 5 * MS)
    with pytest.raises(DataError, match=message):
        trade_fields({**good, **change}, RECV)


# Binance's own form (1 to 10 whole digits, a dot, 8 decimals) takes a shortcut: its digits without the dot are the
# units. Strings of that shape that are not plain ASCII digits must still be judged by the exact parser.
_EIGHT_DECIMAL_SHAPES = [
    "0.00000001", "61837.63000000", "9999999999.99999999", "0000000001.00000000", "00000000001.00000000",
    "12345678901.00000000", "\u0663.00000000", "\uff11.00000000", "1.0000000\u0663", "1_0.00000000", "+1.00000000",
    "-1.00000000", " 1.00000000", "1.00000000 ", "1.2.00000000", "1..00000000", "0.00000000", ".000000001",
]  # fmt: skip


def _exact(text: str) -> int | None:
    try:
        return parse_decimal(text, "x", allow_negative=True)
    except InvalidInput:
        return None


@pytest.mark.parametrize("text", _EIGHT_DECIMAL_SHAPES)
def test_eight_decimal_strings_are_read_as_the_exact_parser_reads_them(text: str) -> None:
    expected = _exact(text)
    diff = {"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 2, "b": [[text, text]], "a": []}
    ticker = {"u": 1, "s": "BTCUSDT", "b": "1.00000000", "B": text, "a": "2.00000000", "A": text}
    for _ in range(2):  # the first reading fills the cache of plain numbers, the second is served from it
        if expected is None or expected <= 0:
            with pytest.raises(DataError):
                parse_depth_update(diff, RECV)  # a price must be positive
        else:
            assert parse_depth_update(diff, RECV).bids == ((expected, expected),)
        if expected is None or expected < 0:
            with pytest.raises(DataError):
                book_ticker_fields(ticker, RECV)
        else:
            assert book_ticker_fields(ticker, RECV)[1:5] == (SCALE, expected, 2 * SCALE, expected)
