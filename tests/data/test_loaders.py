"""Loaders: every shared format loads exactly (row counts and times from the data README), and broken files fail
with a DataError that names the file, the row and the problem."""

from __future__ import annotations

import gzip
import re
import zipfile
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from veloz_actors import DataError
from veloz_actors.data.bars import BarGap
from veloz_actors.data.loaders import load_bars, load_funding_rates, load_market_events
from veloz_actors.fixed import format_decimal
from veloz_actors.messages import BookDelta, BookTop, MarkPrice, Trade

MINUTE = 60_000_000_000
HEADER = "open_time_ms,open,high,low,close,volume\n"


def _ns(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * 1_000_000_000


# file, symbol, interval (min), rows, first open, last open, gaps (count, missing bars)
SHARED = [
    ("ohlcv/binance_spot_BTCUSDT_5m_20240301-20250702.csv.gz", "BTCUSDT", 5, 140_614,
     "2024-03-01 00:00", "2025-07-02 05:45", (0, 0)),
    ("ohlcv/binance_spot_BTCUSDT_5m_20240301-20250702.feather", "BTCUSDT", 5, 140_614,
     "2024-03-01 00:00", "2025-07-02 05:45", (0, 0)),
    ("ohlcv/binance_spot_BTCUSDT_1h_20170817-20240421.csv.gz", "BTCUSDT", 60, 58_419,
     "2017-08-17 04:00", "2024-04-21 14:00", (28, 128)),
    ("ohlcv/binance_spot_BTCUSDT_1h_20230101-20240110.feather", "BTCUSDT", 60, 8_996,
     "2023-01-01 00:00", "2024-01-10 20:00", (1, 1)),
    ("ohlcv/binance_spot_ETHUSDT_1m_20240726-20240825.csv.gz", "ETHUSDT", 1, 43_208,
     "2024-07-26 14:16", "2024-08-25 14:23", (0, 0)),
    ("ohlcv/binance_spot_ADAUSDT_15m_20230401-20240409.feather", "ADAUSDT", 15, 35_999,
     "2023-04-01 00:00", "2024-04-09 23:30", (0, 0)),
    ("ohlcv/binance_spot_BTCUSDT_1m_202412_privet1x.csv.gz", "BTCUSDT", 1, 41_761,
     "2024-11-30 23:00", "2024-12-29 23:00", (0, 0)),
    ("ohlcv/binance_spot_BTCUSDT_15m_2024_privet1x.csv.gz", "BTCUSDT", 15, 34_945,
     "2023-12-31 23:00", "2024-12-29 23:00", (0, 0)),
    ("futures/binance_usdm_BTCUSDT_8h_mark_20231201-20251116.csv.gz", "BTCUSDT", 480, 2_151,
     "2023-12-01 00:00", "2025-11-16 16:00", (0, 0)),
    ("fixtures/nautilus/binance_spot_ADABTC-1m-2021-11-27.csv", "ADABTC", 1, 10,
     "2021-11-27 00:00", "2021-11-27 00:09", (0, 0)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "symbol", "minutes", "rows", "first", "last", "gaps"), SHARED)
def test_shared_file_loads_with_readme_counts_and_times(
    shared_data: Path, name: str, symbol: str, minutes: int, rows: int, first: str, last: str, gaps: tuple
) -> None:
    bars = load_bars(shared_data / name)
    assert (bars.symbol, bars.interval_ns, len(bars)) == (symbol, minutes * MINUTE, rows)
    assert bars.data["open_time"][0] == _ns(first) and bars.data["open_time"][-1] == _ns(last)
    assert (len(bars.gaps), sum(g.missing for g in bars.gaps)) == gaps


def test_csv_prices_are_the_exact_decimals_written_in_the_file(shared_data: Path) -> None:
    path = shared_data / "ohlcv/binance_spot_BTCUSDT_5m_20240301-20250702.csv.gz"
    bars = load_bars(path)
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()[1:]
    for row in range(0, len(lines), 997):
        fields = lines[row].split(",")
        for column, text in zip(("open", "high", "low", "close", "volume"), fields[1:], strict=True):
            assert Decimal(format_decimal(int(bars.data[column][row]))) == Decimal(text), (row, column)


def test_feather_and_csv_of_the_same_candles_load_identically(shared_data: Path) -> None:
    from_csv = load_bars(shared_data / "ohlcv/binance_spot_BTCUSDT_5m_20240301-20250702.csv.gz")
    from_feather = load_bars(shared_data / "ohlcv/binance_spot_BTCUSDT_5m_20240301-20250702.feather")
    assert np.array_equal(from_csv.data, from_feather.data)


@pytest.mark.parametrize(
    ("name", "tick"),
    [
        ("ohlcv/binance_spot_BTCUSDT_5m_20240301-20250702.csv.gz", 1_000_000),  # 0.01
        ("ohlcv/binance_spot_DOGEUSDT_15m_20230401-20240409.csv.gz", 1_000),  # 0.00001
        ("fixtures/nautilus/binance_spot_ADABTC-1m-2021-11-27.csv", 1),  # 0.00000001
    ],
)
def test_price_tick_is_the_finest_decimal_step_of_the_prices(shared_data: Path, name: str, tick: int) -> None:
    assert load_bars(shared_data / name).price_tick == tick


def test_privet_open_time_is_derived_from_the_offset_close_time(shared_data: Path) -> None:
    path = shared_data / "ohlcv/binance_spot_BTCUSDT_1m_202412_privet1x.csv.gz"
    with gzip.open(path, "rt") as f:
        f.readline()
        first = f.readline().strip().split(",")
    bars = load_bars(path)
    close = datetime.fromisoformat(first[-1])  # 2024-12-01 00:00:59.999+01:00
    assert bars.data["open_time"][0] == int(close.timestamp() * 1000 + 1 - 60_000) * 1_000_000
    assert format_decimal(int(bars.data["open"][0])) == first[0]


def test_gaps_are_reported_never_filled(shared_data: Path) -> None:
    bars = load_bars(shared_data / "fixtures/freqtrade/XRP_ETH-1m.feather")
    steps = Counter(np.diff(bars.data["open_time"]) // MINUTE)
    assert len(bars) == 2_469 and len(bars.gaps) == sum(n for step, n in steps.items() if step > 1)
    assert sum(g.missing for g in bars.gaps) == sum((step - 1) * n for step, n in steps.items())


def test_funding_rates_load_exact_and_agree_between_csv_and_feather(shared_data: Path) -> None:
    csv_rates = load_funding_rates(
        shared_data / "futures/binance_usdm_BTCUSDT_8h_funding_rate_20231201-20251116.csv.gz"
    )
    feather_rates = load_funding_rates(
        shared_data / "futures/binance_usdm_BTCUSDT_8h_funding_rate_20231201-20251116.feather"
    )
    assert len(csv_rates) == 2_151 and csv_rates == feather_rates
    assert csv_rates[0].rate == 10_000 and csv_rates[0].symbol == "BTCUSDT"  # 0.0001
    assert min(r.rate for r in csv_rates) == -12_232  # -0.012232 %, written as -0.00012232 (README: -0.0122 %)


def test_funding_rate_file_given_to_load_bars_points_to_load_funding_rates(shared_data: Path) -> None:
    with pytest.raises(DataError, match="load_funding_rates"):
        load_bars(shared_data / "futures/binance_usdm_BTCUSDT_8h_funding_rate_20231201-20251116.csv.gz")


# ------------------------------------------------------------------------------------------- 12-column klines


def _kline_lines(shared_data: Path) -> list[str]:
    return (shared_data / "fixtures/nautilus/binance_spot_ADABTC-1m-2021-11-27.csv").read_text().splitlines()


def test_kline_csv_with_header_loads_like_without(shared_data: Path, tmp_path: Path) -> None:
    header = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    header += "taker_buy_quote_volume,ignore"
    path = tmp_path / "ADABTC-1m-2021-11-27.csv"
    path.write_text("\n".join([header, *_kline_lines(shared_data)]) + "\n")
    plain = load_bars(shared_data / "fixtures/nautilus/binance_spot_ADABTC-1m-2021-11-27.csv")
    assert np.array_equal(load_bars(path).data, plain.data)


def test_kline_csv_in_microseconds_loads_like_milliseconds(shared_data: Path, tmp_path: Path) -> None:
    lines = []
    for line in _kline_lines(shared_data):
        fields = line.split(",")
        fields[0] += "000"
        fields[6] += "999"
        lines.append(",".join(fields))
    path = tmp_path / "ADABTC-1m-2021-11-27.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    micro = load_bars(path)
    plain = load_bars(shared_data / "fixtures/nautilus/binance_spot_ADABTC-1m-2021-11-27.csv")
    assert np.array_equal(micro.data, plain.data) and micro.interval_ns == MINUTE
    assert micro.data["open_time"][0] == _ns("2021-11-27 00:00")


# --------------------------------------------------------------------------------------------------- broken files


def _write(tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "BTCUSDT-1m.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + "".join(row + "\n" for row in rows))
    return path


GOOD = ["1700000000000,10.5,11,10,10.75,1.5", "1700000060000,10.75,11.5,10.5,11,2"]


def test_small_valid_csv_loads_with_inferred_symbol_and_interval(tmp_path: Path) -> None:
    bars = load_bars(_write(tmp_path, GOOD))
    assert (bars.symbol, bars.interval_ns, len(bars), bars.gaps) == ("BTCUSDT", MINUTE, 2, ())
    assert bars.price_tick == 1_000_000  # 0.01 (10.75)


def test_symbol_is_upper_case_whether_named_by_the_file_or_given(tmp_path: Path) -> None:
    # orders spell symbols in upper case: a lower-case series symbol made every bar backtest order UNKNOWN_SYMBOL
    assert load_bars(_write(tmp_path, GOOD, name="eth1h_3000.csv")).symbol == "ETH1H_3000"
    assert load_bars(_write(tmp_path, GOOD), symbol="ethusdt").symbol == "ETHUSDT"


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([GOOD[1], GOOD[0]], "row 2 (line 3): unsorted"),
        ([GOOD[0], GOOD[0]], "row 2 (line 3): duplicate"),
        ([GOOD[0], "1700000060000,10.75,10,11,10.5,2"], "row 2 (line 3): high is below low"),
        ([GOOD[0], "1700000060000,10.75,10.8,10.5,11,2"], "row 2 (line 3): high is below open or close"),
        ([GOOD[0], "1700000060000,0,11.5,0,11,2"], "row 2 (line 3): non-positive price"),
        ([GOOD[0], "1700000060000,10.75,11.5,10.5,11,-2"], "row 2 (line 3): volume must not be negative"),
        ([GOOD[0], "1700000060000,10.75,11.5,abc,11,2"], "row 2 (line 3): low: 'abc' is not a decimal"),
        ([GOOD[0], "1700000060000,NaN,11.5,10.5,11,2"], "row 2 (line 3): open: 'NaN' is not a decimal"),
        ([GOOD[0], "1700000060000,10.75,11.5,10.5,inf,2"], "row 2 (line 3): close: 'inf' is not a decimal"),
        ([GOOD[0], "1700000060000,10.75,,10.5,11,2"], "row 2 (line 3): high: '' is not a decimal"),
        ([GOOD[0], ",10.75,11.5,10.5,11,2"], "row 2 (line 3): column 'open_time_ms' must be an integer time, got ''"),
        (
            [GOOD[0], "1700000060000,10.123456789,11.5,10,11,2"],
            "row 2 (line 3): open: '10.123456789' has more than 8 decimal places",
        ),
        ([GOOD[0], "17000000600x0,10.75,11.5,10.5,11,2"], "row 2 (line 3): column 'open_time_ms' must be an integer"),
        ([*GOOD, "1700000120000,11,11,11,11,0", "1700000210000,11,11,11,11,0"], "row 4 (line 5): opens 90000000000 ns"),
        (
            ["1700000000,10.5,11,10,10.75,1", "1700000060,10.75,11.5,10.5,11,2"],
            "row 1 (line 2): column 'open_time_ms' "
            "must be a time in milliseconds, got 1700000000 (that looks like seconds)",
        ),  # fmt: skip
        (["1700000000000000,10.5,11,10,10.75,1"], "got 1700000000000000 (that looks like microseconds or finer)"),
        ([], "no bars in the file"),
    ],
)
def test_broken_csv_raises_data_error_naming_file_row_and_problem(tmp_path: Path, rows: list, problem: str) -> None:
    path = _write(tmp_path, rows)
    with pytest.raises(DataError) as error:
        load_bars(path)
    assert str(error.value).startswith(f"{path}: ") and problem in str(error.value)


def test_a_header_only_file_of_any_format_is_a_data_error_saying_it_has_no_rows(tmp_path: Path) -> None:
    kline = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote,x\n"
    path = _write(tmp_path, [], header=kline)
    with pytest.raises(DataError, match="no bars in the file"):
        load_bars(path)
    funding = tmp_path / "BTCUSDT-funding.csv"
    funding.write_text("open_time_ms,open\n")
    with pytest.raises(DataError, match="no funding rates in the file"):
        load_funding_rates(funding)


def test_whole_number_prices_get_a_tick_of_one_never_a_coarser_one(tmp_path: Path) -> None:
    """3000.00, 2900.00, ...: the tick is 1 (slippage rounds to it), not the 100 the values happen to be multiples of."""
    rows = ["1700000000000,3000.00,3000.00,3000.00,3000.00,1", "1700000060000,2900.00,2900.00,2900.00,2900.00,1"]
    assert load_bars(_write(tmp_path, rows)).price_tick == 100_000_000


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, ["1700000000000,10.5,11,10,10.75"], header="open_time_ms,open,high,low,close\n")
    with pytest.raises(DataError, match="missing column.*volume"):
        load_bars(path)


def test_garbage_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "BTCUSDT-1m.csv.gz"
    path.write_bytes(b"\x1f\x8b not really gzip \x00\xff")
    with pytest.raises(DataError, match=str(path)):
        load_bars(path)


def test_gap_is_reported_not_an_error(tmp_path: Path) -> None:
    rows = [GOOD[0], "1700000060000,10.75,11.5,10.5,11,2", "1700000240000,11,11,11,11,0"]
    bars = load_bars(_write(tmp_path, rows))
    assert len(bars) == 3 and bars.gaps == (BarGap(after_open_time=1_700_000_060_000_000_000, missing=2),)


def test_given_interval_that_disagrees_with_the_data_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="interval '5m' given"):
        load_bars(_write(tmp_path, GOOD), interval="5m")


# ------------------------------------------------------------------------------------------ WebSocket captures


def test_capture_loads_every_message_with_readme_counts(shared_data: Path) -> None:
    events = load_market_events(shared_data / "ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz")
    kinds = Counter(type(e).__name__ + ("Snapshot" if getattr(e, "is_snapshot", False) else "") for e in events)
    assert kinds == {"BookDelta": 3_451, "BookTop": 28_040, "Trade": 9_757, "BookDeltaSnapshot": 1}
    snapshot = next(e for e in events if isinstance(e, BookDelta) and e.is_snapshot)
    assert snapshot.symbol == "BTCUSDT" and len(snapshot.bids) == len(snapshot.asks) == 1000


def test_capture_times_are_nanoseconds_from_microsecond_files(shared_data: Path) -> None:
    events = load_market_events(shared_data / "ticks_l2/binance_usdm_btcusdt_20230404_ws.txt.gz")
    first = events[0]  # ... btcusdt@bookTicker with E 1680652700435, received at 1680652700423575 µs
    assert isinstance(first, BookTop) and first.ts_recv == 1_680_652_700_423_575_000
    assert first.ts_event == 1_680_652_700_435_000_000
    assert sum(isinstance(e, MarkPrice) for e in events) == 99
    recv = [e.ts_recv for e in events]
    assert recv == sorted(recv)


def test_spot_trade_event_time_is_binance_e(shared_data: Path) -> None:
    events = load_market_events(shared_data / "ticks_l2/binance_spot_btcusdt_20230405_ws.txt.gz")
    trade = events[0]  # 1680652800004107 {"e":"trade","E":1680652800000,...,"p":"28165.47000000"}
    assert isinstance(trade, Trade) and trade.ts_event == 1_680_652_800_000_000_000
    assert trade.ts_recv == 1_680_652_800_004_107_000 and trade.price == 2_816_547_000_000


def test_bad_capture_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "capture.txt"
    path.write_text('1723161253937085768 {"stream":"btcusdt@trade","data":{"e":"trade"}}\n')
    with pytest.raises(DataError, match=r"line 1: trade: missing field"):
        load_market_events(path)


# ----------------------------------------------------------------------------------- header variants and row shape


@pytest.mark.parametrize(
    "header",
    [
        "\ufeff" + HEADER,  # a byte-order mark, as spreadsheet programs write UTF-8 CSV
        HEADER.upper(),
        HEADER.replace(",", ", "),
        HEADER.replace("open_time_ms", "open_time"),  # six columns named as the kline's, times in ms
        HEADER.replace("open_time_ms", "Open time"),
        HEADER.replace("open_time_ms", "timestamp"),
    ],
    ids=["byte-order-mark", "upper-case", "spaces-after-commas", "open_time", "Open time", "timestamp"],
)
def test_a_header_variant_loads_like_the_plain_header(tmp_path: Path, header: str) -> None:
    plain = load_bars(_write(tmp_path, GOOD))
    assert np.array_equal(load_bars(_write(tmp_path, GOOD, header=header, name="BTCUSDT-1m-v.csv")).data, plain.data)


def test_a_kline_csv_with_a_byte_order_mark_loads_like_without(shared_data: Path, tmp_path: Path) -> None:
    plain = load_bars(shared_data / "fixtures/nautilus/binance_spot_ADABTC-1m-2021-11-27.csv")
    path = tmp_path / "ADABTC-1m-2021-11-27.csv"
    path.write_text("\ufeff" + "\n".join(_kline_lines(shared_data)) + "\n")
    assert np.array_equal(load_bars(path).data, plain.data)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("1700000060000,10.75,11.5", "line 4: expected 6 fields, got 3"),
        ("1700000060000,10.75,11.5,10.5,11,2,7", "line 4: expected 6 fields, got 7"),
    ],
)
def test_a_row_with_too_few_or_too_many_fields_is_named_by_its_line(tmp_path: Path, row: str, problem: str) -> None:
    path = _write(tmp_path, [GOOD[0], "", row, "1700000120000,11,11,11,11,0"])  # line 3 is blank
    with pytest.raises(DataError) as error:
        load_bars(path)
    assert str(error.value).startswith(f"{path}: ") and problem in str(error.value)


# ------------------------------------------------------------------------------- zipped klines (data.binance.vision)


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def test_a_data_binance_vision_zip_loads_like_the_csv_inside(shared_data: Path, tmp_path: Path) -> None:
    text = "\n".join(_kline_lines(shared_data)) + "\n"
    path = _zip(tmp_path / "ADABTC-1m-2021-11-27.zip", {"ADABTC-1m-2021-11-27.csv": text})
    plain = load_bars(shared_data / "fixtures/nautilus/binance_spot_ADABTC-1m-2021-11-27.csv")
    zipped = load_bars(path)
    assert (zipped.symbol, zipped.interval_ns) == ("ADABTC", MINUTE) and np.array_equal(zipped.data, plain.data)


def test_a_truncated_zip_or_one_of_several_files_is_a_data_error_naming_the_file(
    shared_data: Path, tmp_path: Path
) -> None:
    text = "\n".join(_kline_lines(shared_data)) + "\n"
    whole = _zip(tmp_path / "ADABTC-1m-2021-11-27.zip", {"ADABTC-1m-2021-11-27.csv": text}).read_bytes()
    truncated = tmp_path / "ADABTC-1m-2021-11-28.zip"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=f"{truncated}: cannot read: "):
        load_bars(truncated)
    several = _zip(tmp_path / "ADABTC-1m-2021-11.zip", {"a.csv": text, "b.csv": text})
    with pytest.raises(DataError, match=f"{several}: a zip holding one CSV file is expected, found 2: a.csv, b.csv"):
        load_bars(several)
    empty = _zip(tmp_path / "ADABTC-1m-2021-12.zip", {})
    with pytest.raises(DataError, match=f"{empty}: a zip holding one CSV file is expected, found 0$"):
        load_bars(empty)


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("1700000120000,11,11,abc,11,0", "row 3 (line 6): low: 'abc' is not a decimal"),
        ("1700000120000,11,10,11,11,0", "row 3 (line 6): high is below low"),
        ("1700000060000,11,11,11,11,0", "row 3 (line 6): duplicate"),
        ("17000001200x0,11,11,11,11,0", "row 3 (line 6): column 'open_time_ms' must be an integer time"),
    ],
)
def test_an_error_after_blank_lines_names_the_line_the_row_is_on(tmp_path: Path, row: str, problem: str) -> None:
    """Arrow skips blank lines, so a row's line is not its index plus the header: it is counted."""
    path = _write(tmp_path, ["", GOOD[0], "", GOOD[1], row])  # lines 2 and 4 are blank
    with pytest.raises(DataError) as error:
        load_bars(path)
    assert str(error.value).startswith(f"{path}: ") and problem in str(error.value)


def test_klines_across_binance_s_2025_switch_to_microseconds_load_row_by_row(shared_data: Path, tmp_path: Path) -> None:
    """data.binance.vision writes spot klines from 2025-01-01 in µs, before in ms: a month of each, joined, loads."""
    lines = []
    for number, line in enumerate(_kline_lines(shared_data)):
        fields = line.split(",")
        if number >= 5:  # the later rows in microseconds
            fields[0] += "000"
            fields[6] += "999"
        lines.append(",".join(fields))
    path = tmp_path / "ADABTC-1m-2021-11-27.csv"
    path.write_text("\n".join(lines) + "\n")
    plain = load_bars(shared_data / "fixtures/nautilus/binance_spot_ADABTC-1m-2021-11-27.csv")
    assert np.array_equal(load_bars(path).data, plain.data)


def test_a_kline_time_neither_in_milliseconds_nor_microseconds_is_named_by_its_row(
    shared_data: Path, tmp_path: Path
) -> None:
    lines = _kline_lines(shared_data)
    fields = lines[3].split(",")
    fields[0] = fields[0][:10]  # seconds
    lines[3] = ",".join(fields)
    path = tmp_path / "ADABTC-1m-2021-11-27.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"row 4 \(line 4\): open_time 1637971380 is not a time in milliseconds"):
        load_bars(path)


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("futures/binance_usdm_BTCUSDT_8h_mark_20231201-20251116.csv.gz", "row 1 (line 2)"),
        ("futures/binance_usdm_BTCUSDT_8h_mark_20231201-20251116.feather", "row 1 (line 1)"),
        ("ohlcv/binance_spot_BTCUSDT_1h_20230101-20240110.csv.gz", "row 1 (line 2)"),
    ],
)
def test_a_price_file_given_to_load_funding_rates_is_refused_not_read_as_rates(
    shared_data: Path, name: str, where: str
) -> None:
    """A mark-price or candle file has the funding file's columns: its 'open' of 37,716.8 was read as a rate of
    3,771,680 % every 8 hours."""
    path = shared_data / name
    with pytest.raises(DataError, match=rf"^{re.escape(f'{path}: {where}: funding rate ')}[0-9.]+ is 100 % or more"):
        load_funding_rates(path)


# ------------------------------------------------------------------------------------------------ bar interval


ILLIQUID_MINUTES = (0, 2, 4, 5, 7, 9, 11, 12, 14, 16)  # an illiquid 1m pair: most bars 2 min apart, a minute without


def _illiquid(tmp_path: Path, name: str) -> Path:
    return _write(tmp_path, [f"{1_700_000_000_000 + m * 60_000},1,1,1,1,1" for m in ILLIQUID_MINUTES], name=name)


def test_an_illiquid_file_whose_bars_are_mostly_two_intervals_apart_keeps_its_named_interval(tmp_path: Path) -> None:
    """The interval is the one the name says when some bars are that close, not the most common step (which refused
    the file: the bars one minute apart were 'not a multiple of the 2 min interval')."""
    bars = load_bars(_illiquid(tmp_path, "XRPETH-1m.csv"))
    assert bars.interval_ns == MINUTE and sum(g.missing for g in bars.gaps) == 16 + 1 - len(ILLIQUID_MINUTES)


def test_an_interval_given_for_an_illiquid_file_is_taken_when_some_bars_are_that_close(tmp_path: Path) -> None:
    path = _illiquid(tmp_path, "illiquid.csv")
    assert load_bars(path, interval="1m").interval_ns == MINUTE
    with pytest.raises(
        DataError, match=r"interval '5m' given, but the closest bars are 1 min apart \(most often 2 min"
    ):
        load_bars(path, interval="5m")
    with pytest.raises(
        DataError, match=r"row 4 \(line 5\): opens 60000000000 ns after the previous bar, not a multiple"
    ):
        load_bars(path, interval="2m")  # the most common step: the bar off its grid is named


def test_a_misaligned_bar_in_a_named_file_is_still_named_by_its_row(tmp_path: Path) -> None:
    rows = [f"{1_700_000_000_000 + m * 60_000},1,1,1,1,1" for m in range(6)]
    rows.insert(3, "1700000150000,1,1,1,1,1")  # 30 s after the bar before it
    with pytest.raises(DataError, match=r"row 4 \(line 5\): opens 30000000000 ns after the previous bar"):
        load_bars(_write(tmp_path, rows, name="XRPETH-1m.csv"))


def test_blank_lines_before_the_header_are_skipped_and_lines_still_counted(tmp_path: Path) -> None:
    """A file starting with blank lines was 'an empty file'."""
    plain = load_bars(_write(tmp_path, GOOD))
    assert np.array_equal(load_bars(_write(tmp_path, GOOD, header="\n\r\n" + HEADER, name="BTCUSDT-1m-b.csv")).data,
                          plain.data)  # fmt: skip
    path = _write(tmp_path, [GOOD[0], "1700000060000,10.75,11.5,abc,11,2"], header="\n\n" + HEADER, name="x-1m.csv")
    with pytest.raises(DataError, match=r"row 2 \(line 5\): low: 'abc' is not a decimal"):
        load_bars(path)
