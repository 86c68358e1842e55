"""Loaders: market-data files -> validated VeloZ data (bars, funding rates, recorded market events).

Everything a loader returns is exact and validated, or the loader raises :class:`~veloz_actors.DataError` naming the
file, the row and what is wrong. Gaps in bar data are *not* errors: they are facts of the exchange (outages, minutes
without trades) and are reported in :attr:`BarSeries.gaps`, never filled in.

Formats (see ``../shared/data/README.md``):

* candle CSV with header ``open_time_ms,open,high,low,close,volume`` (``.csv`` or ``.csv.gz``; the first column may
  also be named ``open_time`` or ``timestamp``, in ms), including the freqtrade mark-price files (funding-rate files
  go to :func:`load_funding_rates`);
* freqtrade ``.feather`` (Arrow IPC; ``date`` = open time, float64 prices whose shortest repr is the decimal);
* privet1x CSV ``open,high,low,close,volume,quote_volume,trades,close_datetime`` (close time with a UTC offset);
* data.binance.vision 12-column kline CSV, with or without header, times in ms or µs (told apart row by row), also
  as the ``.zip`` holding one CSV that data.binance.vision ships;
* recorded WebSocket captures ``<local ts> <raw JSON>`` (:func:`load_market_events`).

CSV header names are read in lower case without surrounding spaces, quotes or a UTF-8 byte-order mark.

>>> bars = load_bars("../shared/data/ohlcv/binance_spot_BTCUSDT_5m_20240301-20250702.csv.gz")  # doctest: +SKIP
>>> bars.symbol, bars.interval_ns, len(bars), bars.price_tick
('BTCUSDT', 300000000000, 140614, 1000000)
"""

from __future__ import annotations

import csv
import gc
import gzip
import io
import os
import re
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from .._exceptions import DataError, InvalidInput, quoted
from ..fixed import DECIMALS, SCALE
from ..messages import FundingRate, MarketEvent
from ..venues.binance import schemas
from .bars import BAR_DTYPE, BarGap, BarSeries

__all__ = ["load_bars", "load_funding_rates", "load_market_events"]

_MS = 1_000_000
_US = 1_000
_MS_FLOOR, _MS_CEILING = 10**11, 10**14  # millisecond times from 1973 to 5138 (10**14 ms on: microseconds)
_PRICE_COLUMNS = ("open", "high", "low", "close")
_BAR_COLUMNS = ("open", "high", "low", "close", "volume")
_HEADER_COLUMNS = ("open_time_ms", *_BAR_COLUMNS)
_PRIVET_COLUMNS = (*_BAR_COLUMNS, "quote_volume", "trades", "close_datetime")
_KLINE_COLUMNS = (
    "open_time", "open", "high", "low", "close", "volume", "close_time",
    "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore",
)  # fmt: skip
_KLINE_HEADER_ALIASES = {"open_time", "opentime", "open time"}
_TIME_ALIASES = {*_KLINE_HEADER_ALIASES, "timestamp"}  # a six-column file's first column, read as ms

_INT64_MAX = np.iinfo(np.int64).max
# Below this magnitude a float64's rounding interval holds at most one 8-decimal number (ulp < 1e-8).
_FLOAT_EXACT_LIMIT = 2.0**25
_SNAP_ULPS = 4

_NAME_SYMBOL = re.compile(r"(?:^|[_\-])([A-Z0-9]{2,})_([A-Z0-9]{2,})(?:_[A-Z0-9]{2,})?-(\d+[smhdw])(?:[-_.]|$)")
_NAME_TOKEN_INTERVAL = re.compile(r"^\d+[smhdw]$")
_NAME_TOKEN_SYMBOL = re.compile(r"^[A-Z0-9]{5,}$")


def _pyarrow() -> tuple[Any, Any, Any, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv
    import pyarrow.feather as feather

    return pa, pc, pa_csv, feather


# ---------------------------------------------------------------------------------------------------- public: bars


def load_bars(path: str | os.PathLike[str], symbol: str | None = None, interval: str | int | None = None) -> BarSeries:
    """Load a candle file as a validated :class:`BarSeries` with exact prices, its price tick and its gaps.

    ``symbol`` and ``interval`` (``"5m"`` or nanoseconds) are inferred from the file name and contents when not given
    (the symbol, given or not, is upper-cased as orders spell it); the interval is the file name's when the closest
    bars are that far apart (an illiquid pair's 1m bars may be mostly 2 min apart), else the most common step between
    open times. A given interval that is neither the most common nor the closest step raises.
    Raises :class:`DataError` (naming file, row and problem) for unsorted or duplicate times, misaligned bars,
    high < low and other inconsistent candles, non-positive prices, negative volume, missing columns or garbage.
    """
    path = _path(path, symbol)
    if "funding_rate" in path.name:
        raise DataError(f"{path}: a funding-rate file (rate in 'open'), not candles: use load_funding_rates()")
    name_symbol, name_interval = _infer_from_name(path.name)
    if path.name.endswith(".feather"):
        times, columns, first_line = _read_feather(path)
    else:
        times, columns, first_line, close_times = _read_csv_bars(path)
        if close_times is not None:  # privet1x: only the close time is written
            close_step = _most_common_step(close_times, path) or _given_or_named_interval(interval, name_interval, path)
            times = close_times + _MS - close_step
    if len(times) == 0:
        raise DataError(f"{path}: no bars in the file")
    inferred = _interval(times, interval, name_interval, path)
    data = np.empty(len(times), dtype=BAR_DTYPE)
    data["open_time"] = times
    for name in _BAR_COLUMNS:
        data[name] = columns[name]
    gaps = _validate_bars(data, inferred, path, first_line)
    return BarSeries(
        symbol=_symbol(symbol, name_symbol, path),
        interval_ns=inferred,
        data=data,
        price_tick=_price_tick(data),
        source=str(path),
        gaps=gaps,
    )


def load_funding_rates(path: str | os.PathLike[str], symbol: str | None = None) -> list[FundingRate]:
    """Load a freqtrade funding-rate file (``.feather`` or ``.csv[.gz]``; the rate is in ``open``) as exact
    :class:`FundingRate` messages in time order (``ts_event == ts_recv == funding_time``). A rate of 1 (100 %) or
    more is refused as a price: mark-price and candle files have the same columns."""
    path = _path(path, symbol)
    if path.name.endswith(".feather"):
        times, columns, first_line = _read_feather(path, columns=("open",))
    else:
        times, columns, first_line = _read_header_csv(path, required=("open_time_ms", "open"), signed=("open",))
    if not times.size:
        raise DataError(f"{path}: no funding rates in the file")
    _check_increasing(times, path, first_line)
    too_large = np.flatnonzero(np.abs(columns["open"]) >= SCALE)
    if too_large.size:  # Binance caps funding at a few % an interval: this is a price (a mark or candle file)
        row = int(too_large[0])
        raise DataError(
            f"{_row(path, row, first_line)}: funding rate {_fmt(columns['open'][row])} is 100 % or more per "
            "interval: a price, not a rate (mark-price and candle files go to load_bars())"
        )
    name_symbol, _ = _infer_from_name(path.name)
    symbol = _symbol(symbol, name_symbol, path)
    rates = columns["open"].tolist()
    return [
        FundingRate(symbol=symbol, rate=rate, funding_time=t, ts_event=t, ts_recv=t)
        for t, rate in zip(times.tolist(), rates, strict=True)
    ]


# ------------------------------------------------------------------------------------------------- public: events


def load_market_events(path: str | os.PathLike[str], symbol: str | None = None) -> list[MarketEvent]:
    """Load a recorded WebSocket capture (``<local ts> <raw JSON>`` a line) as messages, in file order.

    Diffs become :class:`BookDelta`, the REST depth snapshot line a :class:`BookDelta` with ``is_snapshot``,
    ``bookTicker`` a :class:`BookTop`, trades :class:`Trade`, mark prices :class:`MarkPrice`. ``ts_recv`` is the local
    time in ns (the file's ns or µs, detected by magnitude); ``ts_event`` is Binance's ``E`` or, where the payload has
    none, ``ts_recv``. The snapshot has no symbol on spot and USD-M: it is taken from the other lines (or ``symbol``).
    """
    path = _path(path, symbol)
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    raw_lines: list[tuple[int, int, Any]] = []
    loads = orjson.loads
    gc_was_enabled = gc.isenabled()
    gc.disable()  # hundreds of thousands of small acyclic objects: the cycle collector would only slow this down
    try:
        for number, line in enumerate(raw.split(b"\n"), 1):
            head, _, body = line.partition(b" ")
            if not body:
                if line.strip():
                    raise DataError(f"{path}: line {number}: expected '<local timestamp> <JSON>', got {line[:80]!r}")
                continue
            try:
                raw_lines.append((number, int(head), loads(body)))
            except (ValueError, orjson.JSONDecodeError) as exc:
                raise DataError(f"{path}: line {number}: expected '<local timestamp> <JSON>': {exc}") from exc
        del raw
        return _capture_events(raw_lines, path, symbol)
    finally:
        if gc_was_enabled:
            gc.enable()


def _path(path: Any, symbol: Any) -> Path:
    """A loader's ``path`` argument as a Path; :class:`InvalidInput` (not a file problem, so not a DataError) when it
    or ``symbol`` has the wrong type."""
    if not isinstance(path, str | os.PathLike):
        raise InvalidInput(f"path must be a file path (str or os.PathLike), got {type(path).__name__} {quoted(path)}")
    if symbol is not None and not isinstance(symbol, str):
        raise InvalidInput(f"symbol must be a str or None, got {type(symbol).__name__} {quoted(symbol)}")
    return Path(path)


def _symbol(given: str | None, named: str | None, path: Path) -> str:
    """The series' symbol: the one given, else the file name's ``<SYMBOL>`` token, else the name's stem; upper case,
    as orders spell it (``build_place_order``), so an order for it is never an unknown symbol."""
    return (given or named or path.name.split(".")[0]).upper()


def _capture_events(raw_lines: list[tuple[int, int, Any]], path: Path, symbol: str | None) -> list[MarketEvent]:
    if not raw_lines:
        return []
    scale = _local_time_scale(raw_lines[0][1], path)
    if symbol is None:
        symbol = _capture_symbol(raw_lines)
    parse = schemas.parse_message
    events: list[MarketEvent] = []
    append = events.append
    previous = -1
    for number, local, data in raw_lines:
        ts_recv = local * scale
        if ts_recv < previous:
            raise DataError(f"{path}: line {number}: local timestamp {local} goes backwards")
        previous = ts_recv
        try:
            append(parse(data, ts_recv, symbol))
        except DataError as exc:
            raise DataError(f"{path}: line {number}: {exc}") from exc
    return events


def _local_time_scale(first: int, path: Path) -> int:
    if first > 10**17:
        return 1  # ns
    if first > 10**14:
        return _US  # µs
    if first > 10**11:
        return _MS  # ms
    raise DataError(f"{path}: local timestamp {first} is not a Unix time in ms, µs or ns")


def _capture_symbol(raw_lines: list[tuple[int, int, Any]]) -> str | None:
    for _, _, data in raw_lines:
        if isinstance(data, dict):
            payload = data.get("data", data)
            if isinstance(payload, dict):
                found = payload.get("s") or payload.get("symbol")
                if isinstance(found, str):
                    return found
    return None


# ------------------------------------------------------------------------------------------------------ file reads


def _read_feather(path: Path, columns: tuple[str, ...] = _BAR_COLUMNS) -> tuple[np.ndarray, dict, int]:
    pa, pc, _, feather = _pyarrow()
    try:
        table = feather.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: not a readable Arrow/feather file: {exc}") from exc
    _require_columns(path, table.column_names, ("date", *columns))
    date = table.column("date")
    if not pa.types.is_timestamp(date.type):
        raise DataError(f"{path}: column 'date' must be a timestamp, got {date.type}")
    if date.null_count:
        raise DataError(f"{path}: column 'date' has {date.null_count} missing values")
    times = pc.cast(date, pa.timestamp("ns", tz=date.type.tz)).cast(pa.int64()).to_numpy()
    out = {}
    for name in columns:
        column = table.column(name)
        if name == "volume" and "mark" in path.name and column.null_count == len(column):
            out[name] = np.zeros(len(column), dtype=np.int64)  # mark-price candles have no volume
            continue
        if column.null_count:
            raise DataError(f"{path}: column {name!r} has {column.null_count} missing values")
        out[name] = _floats_to_units(np.asarray(column.to_numpy(), dtype=np.float64), path, name, first_line=1)
    return times, out, 1


def _first_line(path: Path) -> str:
    """The file's first line that is not blank (Arrow skips blank lines), without a byte-order mark or the line end;
    ``""`` for a file with none."""
    return _header_line(path)[0]


def _header_line(path: Path) -> tuple[str, int]:
    """:func:`_first_line` and its line number (0 when there is none)."""
    try:
        with _open_text(path) as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    return line.strip(), number
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    return "", 0


@contextmanager
def _open_text(path: Path) -> Iterator[IO[str]]:
    """A CSV file (plain, ``.gz`` or a one-file ``.zip``) as text; a UTF-8 byte-order mark is dropped."""
    if path.name.endswith(".zip"):
        with io.TextIOWrapper(io.BytesIO(_zip_member(path)), encoding="utf-8-sig", errors="replace", newline="") as f:
            yield f
        return
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as f:
        yield f


def _zip_member(path: Path) -> bytes:
    """The one file inside a ``.zip`` (data.binance.vision ships each month or day of klines as one CSV zipped)."""
    with zipfile.ZipFile(path) as archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        if len(names) != 1:
            listed = f": {', '.join(names)}" if names else ""
            raise DataError(f"{path}: a zip holding one CSV file is expected, found {len(names)}{listed}")
        return archive.read(names[0])


def _csv_input(path: Path) -> Any:
    """What Arrow's CSV reader reads: the path (it decompresses ``.gz`` itself) or a zip's one file, in memory."""
    if path.name.endswith(".zip"):
        pa, _, _, _ = _pyarrow()
        return pa.BufferReader(_zip_member(path))
    return path


def _read_csv_bars(path: Path) -> tuple[np.ndarray, dict, int, np.ndarray | None]:
    """Times (ns), exact columns, the line number of the first data row, and (privet1x) close times instead."""
    first = _first_line(path)
    if not first:
        raise DataError(f"{path}: empty file")
    header = [c.strip().strip('"').strip().lower() for c in first.split(",")]
    if (header[0] in _KLINE_HEADER_ALIASES or header[0][:1].isdigit()) and len(header) >= 7:
        return (*_read_kline_csv(path, has_header=not header[0][:1].isdigit()), None)
    if header[: len(_PRIVET_COLUMNS)] == list(_PRIVET_COLUMNS) or (
        "close_datetime" in header and "open_time_ms" not in header
    ):
        return _read_privet_csv(path)
    time_column = "open_time_ms"
    if header[0] in _TIME_ALIASES and "open_time_ms" not in header:
        time_column = header[0]  # "open_time,open,high,low,close,volume": the six columns, open time in ms
    times, columns, first_line = _read_header_csv(path, required=(time_column, *_BAR_COLUMNS))
    return times, columns, first_line, None


def _read_table(path: Path, *, header: bool, names: tuple[str, ...] | None = None) -> Any:
    """The CSV as a table of strings. With ``header``, the columns are named by the first line in lower case, without
    surrounding spaces or quotes (``Open_Time_Ms, Open`` reads as ``open_time_ms,open``); else ``names``."""
    pa, _, pa_csv, _ = _pyarrow()
    skip = 0
    if header:
        first, skip = _header_line(path)  # Arrow's skip_rows counts blank lines too
        names = tuple(c.strip().strip('"').strip().lower() for c in first.split(","))
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise DataError(f"{path}: line 1: column(s) {', '.join(repeated)} named more than once")
    assert names is not None
    try:
        return pa_csv.read_csv(
            _csv_input(path),
            read_options=pa_csv.ReadOptions(column_names=list(names), skip_rows=skip, block_size=1 << 24),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False
            ),
        )  # fmt: skip
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, pa.ArrowException) as exc:
        counts = re.search(r"Expected (\d+) columns, got \d+", str(exc))
        bad_row = _row_of_another_width(path, int(counts.group(1))) if counts else None
        raise DataError(bad_row or f"{path}: not a readable CSV file: {exc}") from exc


def _row_of_another_width(path: Path, expected: int) -> str | None:
    """The first line that does not hold ``expected`` fields, named by its line number (Arrow's parse error says
    only its text), or None if there is none."""
    with _open_text(path) as f:
        reader = csv.reader(f)
        for fields in reader:
            if fields and len(fields) != expected:
                text = ",".join(fields)
                return f"{path}: line {reader.line_num}: expected {expected} fields, got {len(fields)}: {text[:120]!r}"
    return None


def _read_header_csv(
    path: Path, required: tuple[str, ...], signed: tuple[str, ...] = ()
) -> tuple[np.ndarray, dict, int]:
    table = _read_table(path, header=True)
    _require_columns(path, table.column_names, required)
    times = _ms_times(_int_column(table.column(required[0]), path, required[0], first_line=2), path, required[0])
    out = {
        name: _exact_units(table.column(name), path, name, first_line=2, signed=name in signed) for name in required[1:]
    }
    return times, out, 2


def _read_kline_csv(path: Path, has_header: bool) -> tuple[np.ndarray, dict, int]:
    if has_header:
        table = _read_table(path, header=True)
        if table.num_columns < 7:
            raise DataError(f"{path}: a kline CSV needs at least 7 columns, found {table.num_columns}")
        names = list(table.column_names)
    else:
        table = _read_table(path, header=False, names=_KLINE_COLUMNS)
        names = list(_KLINE_COLUMNS)
    first_line = 2 if has_header else 1
    cols = [table.column(i) for i in range(table.num_columns)]
    raw_open = _int_column(cols[0], path, names[0], first_line)
    raw_close = _int_column(cols[6], path, names[6], first_line)
    scale = _kline_time_scale(raw_open, path, names[0], first_line)
    times = raw_open * scale
    close_times = raw_close * scale
    out = {name: _exact_units(cols[i + 1], path, name, first_line) for i, name in enumerate(_BAR_COLUMNS)}
    bad = np.flatnonzero(close_times < times)
    if bad.size:
        raise DataError(f"{_row(path, int(bad[0]), first_line)}: close time is before open time")
    return times, out, first_line


def _ms_times(raw: np.ndarray, path: Path, name: str) -> np.ndarray:
    """Millisecond times as ns, refused unless every one is a millisecond time (13 digits, 1973 to 5138): seconds
    would make the bars 1,000 times closer together (and annualised figures 31.6 times larger), microseconds would
    overflow."""
    if raw.size and not (int(raw.min()) >= _MS_FLOOR and int(raw.max()) < _MS_CEILING):
        bad = int(np.flatnonzero((raw < _MS_FLOOR) | (raw >= _MS_CEILING))[0])
        unit = "seconds" if raw[bad] < _MS_FLOOR else "microseconds or finer"
        raise DataError(
            f"{_row(path, bad, 2)}: column {name!r} must be a time in milliseconds, got "
            f"{int(raw[bad])} (that looks like {unit})"
        )
    return raw * _MS


def _kline_time_scale(raw_open: np.ndarray, path: Path, name: str, first_line: int) -> np.ndarray:
    """Each row's ns per unit of its open time: milliseconds, or microseconds (data.binance.vision's spot klines
    from 2025-01-01 on), told apart by magnitude row by row, so months from both sides of the switch load joined.
    A row's close time is in its open time's unit."""
    bad = np.flatnonzero((raw_open < _MS_FLOOR) | (raw_open >= 10**17))
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"{_row(path, row, first_line)}: {name} {int(raw_open[row])} is not a time in milliseconds or "
            "microseconds (1973 on)"
        )
    return np.where(raw_open < _MS_CEILING, _MS, _US)


def _read_privet_csv(path: Path) -> tuple[np.ndarray, dict, int, np.ndarray]:
    pa, pc, _, _ = _pyarrow()
    table = _read_table(path, header=True)
    _require_columns(path, table.column_names, (*_BAR_COLUMNS, "close_datetime"))
    text = table.column("close_datetime")
    try:
        close = pc.cast(text, pa.timestamp("ns", tz="UTC"))
    except pa.ArrowException:
        close = None
    if close is None:
        close_ns = _parse_datetimes_slow(text.to_pylist(), path, first_line=2)
    else:
        close_ns = close.cast(pa.int64()).to_numpy()
    out = {name: _exact_units(table.column(name), path, name, first_line=2) for name in _BAR_COLUMNS}
    return close_ns, out, 2, close_ns


def _parse_datetimes_slow(values: list[str], path: Path, first_line: int) -> np.ndarray:
    from datetime import datetime

    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        try:
            moment = datetime.fromisoformat(value)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{_row(path, i, first_line)}: bad close_datetime {value!r}") from exc
        if moment.tzinfo is None:
            raise DataError(f"{_row(path, i, first_line)}: close_datetime {value!r} has no UTC offset")
        out[i] = int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * _US
    return out


def _require_columns(path: Path, found: list[str], required: tuple[str, ...]) -> None:
    missing = [name for name in required if name not in found]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(found) or 'none'}")


# -------------------------------------------------------------------------------------------------- exact decimals


def _int_column(column: Any, path: Path, name: str, first_line: int) -> np.ndarray:
    pa, pc, _, _ = _pyarrow()
    ok = pc.match_substring_regex(column, r"^[0-9]{1,18}$")
    if not pc.all(ok, min_count=0).as_py():  # (an empty column is all right: "no rows" is said by the caller)
        row = _first_false(ok)
        raise DataError(
            f"{_row(path, row, first_line)}: column {name!r} must be an integer time, got {column[row].as_py()!r}"
        )
    return pc.cast(column, pa.int64()).to_numpy()


def _first_false(mask: Any) -> int:
    values = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
    return int(np.flatnonzero(~values)[0])


def _exact_units(column: Any, path: Path, name: str, first_line: int, signed: bool = False) -> np.ndarray:
    """A column of decimal strings as exact int64 1e-8 units.

    Arrow's string -> ``decimal128(18, 8)`` cast is exact and strict (it refuses data loss, blanks, NaN and values of
    10**10 or more), and the unscaled integers of a decimal128 array *are* 1e-8 units, so they are read straight from
    its buffer. A column the cast refuses goes row by row through the exact parser, which names the bad row.
    """
    pa, pc, _, _ = _pyarrow()
    try:
        decimals = pc.cast(column, pa.decimal128(18, DECIMALS)).combine_chunks()
    except pa.ArrowException:
        decimals = None
    if decimals is not None and decimals.null_count == 0:
        words = np.frombuffer(decimals.buffers()[1], dtype="<i8")
        values = words[2 * decimals.offset : 2 * (decimals.offset + len(decimals)) : 2].copy()  # low 64 bits
    else:
        text = column.to_pylist()
        values = np.fromiter(
            (_exact_slow(t, path, name, row, first_line) for row, t in enumerate(text)), dtype=np.int64, count=len(text)
        )
    if not signed:
        negative_rows = np.flatnonzero(values < 0)
        if negative_rows.size:
            row = int(negative_rows[0])
            raise DataError(f"{_row(path, row, first_line)}: {name} must not be negative, got {column[row].as_py()!r}")
    return values


def _exact_slow(text: Any, path: Path, name: str, row: int, first_line: int) -> int:
    where = f"{_row(path, row, first_line)}: {name}"
    try:
        value = schemas.decimal_units(text, where, allow_negative=True, scientific=True)
    except (DataError, InvalidInput) as exc:
        raise DataError(str(exc)) from exc
    if abs(value) > _INT64_MAX:
        raise DataError(f"{where}: {text!r} is too large for 64-bit 1e-8 units")
    return value


def _floats_to_units(values: np.ndarray, path: Path, name: str, first_line: int) -> np.ndarray:
    """float64 -> the exact 1e-8 units of each value's shortest decimal repr (which is what the writer meant).

    Fast path: ``v = rint(x * 1e8)`` is the answer when ``v / 1e8 == x`` (both sides correctly rounded, so the decimal
    ``v * 1e-8`` rounds to ``x``) and ``|x| < 2**25`` (there a float's rounding interval holds at most one 8-decimal
    number, so that decimal *is* the shortest repr). A value a few ulps off an 8-decimal number (the residue of float
    arithmetic in the writer) is snapped to it. Every other value is parsed from ``repr(x)`` exactly, or rejected.
    Row numbers in errors are 1-based feather rows (``first_line`` is 1).
    """
    with np.errstate(invalid="ignore", over="ignore"):
        units = np.rint(values * SCALE)
        small = np.isfinite(values) & (np.abs(values) < _FLOAT_EXACT_LIMIT)
        ok = small & (units / SCALE == values)
        # Files written after float arithmetic hold values such as 1.0520100000000001 (one ulp off 1.05201): snap
        # those to the 8-decimal number within _SNAP_ULPS ulps, which is unique at this magnitude.
        snapped = small & ~ok & (np.abs(units / SCALE - values) <= _SNAP_ULPS * np.abs(np.spacing(values)))
    result = np.where(ok | snapped, units, 0).astype(np.int64)
    for row in np.flatnonzero(~(ok | snapped)).tolist():
        x = float(values[row])
        if x != x or x in (float("inf"), float("-inf")):
            raise DataError(f"{_row(path, row, first_line)}: {name} is {x!r}, not a number")
        result[row] = _exact_slow(repr(x), path, name, row, first_line)
    return result


# ------------------------------------------------------------------------------------------------------ validation


def _interval(times: np.ndarray, given: str | int | None, named: str | None, path: Path) -> int:
    """The bar interval (ns): the one given, if the bars are most often or at the closest that far apart (else it is
    refused); the file name's, if the closest bars are that far apart (an illiquid pair's 1m bars may be mostly 2 min
    apart); else the most common step between open times. A bar off the interval's grid is named by
    :func:`_validate_bars`."""
    common = _most_common_step(times, path)
    steps = np.diff(times)
    closest = int(steps[steps > 0].min()) if common is not None else None  # (unsorted rows are named later)
    if given is not None:
        step = _given_or_named_interval(given, None, path)
        if common is not None and step not in (common, closest):
            raise DataError(
                f"{path}: interval {given!r} given, but the closest bars are {_duration(closest or common)} apart "
                f"(most often {_duration(common)})"
            )
        return step
    if named is not None and closest is not None:
        try:
            if schemas.interval_ns(named) == closest:
                return closest
        except InvalidInput:
            pass  # a name token that is no Binance interval: the data decide
    return common if common is not None else _given_or_named_interval(None, named, path)


def _duration(ns: int) -> str:
    """``1 min``, ``8 h``, ``1 s``: a bar step as people write it."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)):
        if ns % (size * 10**9) == 0:
            return f"{ns // (size * 10**9)} {unit}"
    return f"{ns} ns"


def _most_common_step(times: np.ndarray, path: Path) -> int | None:
    if times.size < 2:
        return None
    steps = np.diff(times)
    positive = steps[steps > 0]
    if positive.size == 0:
        return None
    values, counts = np.unique(positive, return_counts=True)
    return int(values[np.argmax(counts)])


def _given_or_named_interval(interval: str | int | None, named: str | None, path: Path) -> int:
    if isinstance(interval, bool):
        raise DataError(f"{path}: interval must be text such as '5m' or a number of nanoseconds, got {interval!r}")
    if isinstance(interval, int):
        if interval <= 0:
            raise DataError(f"{path}: interval must be positive, got {interval}")
        return interval
    text = interval if interval is not None else named
    if text is None:
        raise DataError(f"{path}: cannot infer the bar interval from one row; pass interval=")
    try:
        return schemas.interval_ns(text)
    except InvalidInput as exc:
        raise DataError(f"{path}: {exc}") from exc


def _row(path: Path, index: int, first_line: int) -> str:
    """``<file>: row <n> (line <l>)`` for data row ``index`` (0-based); ``first_line`` is the first data row's line
    (1-based feather rows: the line is the row)."""
    return f"{path}: row {index + 1} (line {_line_of_row(path, index, first_line)})"


def _line_of_row(path: Path, index: int, first_line: int) -> int:
    """The line data row ``index`` of a CSV is on. Arrow skips blank lines, so after one the line is not
    ``index + first_line``: it is counted in the file (only when an error is raised)."""
    if path.name.endswith(".feather"):
        return index + first_line
    record = index + first_line - 1  # the header, if any, is record 0
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            for fields in reader:
                if fields:
                    if record == 0:
                        return reader.line_num
                    record -= 1
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, csv.Error):
        pass
    return index + first_line


def _check_increasing(times: np.ndarray, path: Path, first_line: int) -> np.ndarray:
    steps = np.diff(times)
    backwards = np.flatnonzero(steps < 0)
    if backwards.size:
        i = int(backwards[0]) + 1
        raise DataError(f"{_row(path, i, first_line)}: unsorted, time {times[i]} ns is before the previous row's")
    duplicates = np.flatnonzero(steps == 0)
    if duplicates.size:
        i = int(duplicates[0]) + 1
        raise DataError(f"{_row(path, i, first_line)}: duplicate, same time {times[i]} ns as the previous row")
    return steps


def _validate_bars(data: np.ndarray, interval: int, path: Path, first_line: int) -> tuple[BarGap, ...]:
    o, h, low, c, v = (data[name] for name in _BAR_COLUMNS)
    checks = (
        ((o <= 0) | (h <= 0) | (low <= 0) | (c <= 0), "non-positive price"),
        (h < low, "high is below low"),
        (h < np.maximum(o, c), "high is below open or close"),
        (low > np.minimum(o, c), "low is above open or close"),
        (v < 0, "negative volume"),
    )
    for mask, problem in checks:
        bad = np.flatnonzero(mask)
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{_row(path, i, first_line)}: {problem} (open={_fmt(o[i])} high={_fmt(h[i])} low={_fmt(low[i])} "
                f"close={_fmt(c[i])} volume={_fmt(v[i])})"
            )
    times = data["open_time"]
    steps = _check_increasing(times, path, first_line)
    misaligned = np.flatnonzero(steps % interval != 0)
    if misaligned.size:
        i = int(misaligned[0]) + 1
        raise DataError(
            f"{_row(path, i, first_line)}: opens {steps[i - 1]} ns after the previous bar, not a multiple of the "
            f"{interval} ns interval"
        )
    gap_rows = np.flatnonzero(steps > interval)
    return tuple(
        BarGap(after_open_time=int(times[i]), missing=int(steps[i] // interval) - 1) for i in gap_rows.tolist()
    )


def _fmt(units: np.int64) -> str:
    from ..fixed import format_decimal

    return format_decimal(int(units))


def _price_tick(data: np.ndarray) -> int:
    prices = np.concatenate([data[name] for name in _PRICE_COLUMNS])
    tick = SCALE  # never coarser than 1: prices of 3000, 2900, ... are not on a 100 tick (slippage would round to it)
    while tick > 1 and np.any(prices % tick):
        tick //= 10
    return tick


def _infer_from_name(name: str) -> tuple[str | None, str | None]:
    stem = name.split(".")[0]
    match = _NAME_SYMBOL.search(stem)
    if match:
        return match.group(1) + match.group(2), match.group(3)
    symbol = interval = None
    for token in re.split(r"[_\-]", stem):
        if interval is None and _NAME_TOKEN_INTERVAL.match(token):
            interval = token
        elif symbol is None and _NAME_TOKEN_SYMBOL.match(token) and not token.isdigit():
            symbol = token
    return symbol, interval
