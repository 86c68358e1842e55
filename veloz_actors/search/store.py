"""The results store: one row per parameter set, streamed to ``results.csv`` and ``results.parquet`` as results arrive.

``results.csv`` is the source of truth: a row is appended and flushed as soon as its chunk comes back, so whatever
finished before Ctrl-C, a killed driver or a lost node is on disk. ``--resume`` reads it back (dropping a torn last
line), and the search runs only the parameter sets that are not there. ``results.parquet`` is written alongside in row
groups under a temporary name and put in place when the search ends or is interrupted (a killed driver leaves the
previous file, or none; resume rebuilds it from the CSV). ``search.json`` records what the results depend on (the
data file's path and contents, strategy, settings, the grid, the constraints and the random sampling) so a resume
against a different search is refused instead of mixing results (a data file moved to another folder, the same name
and contents, is the same data) (and, with no ``search.json``, a row whose parameters
are not values of this search's grid). Everything a resume reads is checked before anything
is written: a refused or damaged resume leaves the directory as it was (but for the lock file). A search holds an
exclusive lock on ``.lock`` in the directory while it runs, so a second search on the same directory is refused
instead of corrupting the first one's files; the OS drops the lock when the process ends, however it ends.

Columns: the parameters (config order), then ``final_equity, total_return, max_drawdown, n_trades, win_rate, sharpe``,
then ``node`` (the Ray node id that ran the set). Pure: no Ray.
"""

from __future__ import annotations

import csv
import fcntl
import io
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._exceptions import ConfigError, DataError
from .._files import write_atomically
from .config import METRICS
from .space import FloatSteps, ParameterSpace, format_value, parameter_key

__all__ = ["ResultStore", "TopK", "best_first", "directory_lock", "format_table"]

CSV_NAME = "results.csv"
PARQUET_NAME = "results.parquet"
META_NAME = "search.json"
LOCK_NAME = ".lock"
_INT_METRICS = frozenset({"n_trades"})
_PARQUET_FLUSH_ROWS = 2048


class ResultStore:
    """Results of one search: appended in chunks, on disk when ``out_dir`` is given, in memory otherwise.

    >>> store = ResultStore(None, ["fast", "slow"], {"fast": (5,), "slow": (30,)})
    >>> store.append([{"fast": 5, "slow": 30, "final_equity": 1.0, "total_return": 0.0, "max_drawdown": 0.0,
    ...               "n_trades": 0, "win_rate": 0.0, "sharpe": 0.0, "node": "n1"}])
    >>> store.table().num_rows
    1
    """

    def __init__(
        self,
        out_dir: Path | None,
        param_names: Sequence[str],
        param_values: Mapping[str, Sequence[Any]],
        *,
        resume: bool = False,
        fingerprint: Mapping[str, Any] | None = None,
    ) -> None:
        self.param_names = tuple(param_names)
        self.columns = (*self.param_names, *METRICS, "node")
        self.schema = pa.schema(
            [(name, _arrow_type(param_values[name])) for name in self.param_names]
            + [(m, pa.int64() if m in _INT_METRICS else pa.float64()) for m in METRICS]
            + [("node", pa.string())]
        )
        # each parameter's values, to refuse a row read back that is not a set of this search (O(1) membership)
        self._values = {
            name: frozenset(values) if isinstance(values, tuple) else values for name, values in param_values.items()
        }
        self.out_dir = out_dir
        self._done: set[tuple[str, ...]] = set()  # the resumed rows' keys only: a new row's set never comes again
        self._appended = 0
        self._lock = ExitStack()
        self._memory: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []
        self._csv: io.TextIOWrapper | None = None
        self._writer: csv.writer | None = None  # type: ignore[valid-type]
        self._parquet: pq.ParquetWriter | None = None
        self.resumed_rows = 0
        self._resumed: list[dict[str, Any]] = []
        self.warnings: list[str] = []  # what the person should know about the rows read back
        if out_dir is not None:
            self._open(out_dir, resume, dict(fingerprint or {}))

    # -- set-up ------------------------------------------------------------------------------------------------------

    def _open(self, out_dir: Path, resume: bool, fingerprint: dict[str, Any]) -> None:
        self._lock.enter_context(directory_lock(out_dir))
        try:
            typed = self._load(out_dir, resume, fingerprint)  # every check first: nothing is written if one fails
        except BaseException:
            self.release()
            raise
        write_atomically({out_dir / META_NAME: json.dumps(fingerprint, indent=2, sort_keys=True, default=str) + "\n"})
        # Rewrite the CSV without any torn last line, then reopen it for appending.
        csv_path = out_dir / CSV_NAME
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(self.columns)
        writer.writerows([format_value(row[c]) for c in self.columns] for row in typed)
        write_atomically({csv_path: text.getvalue()})  # a power loss must not leave the results resumed from empty
        self._csv = csv_path.open("a", encoding="utf-8", newline="")
        self._writer = csv.writer(self._csv)
        self._parquet = pq.ParquetWriter(_temporary(out_dir / PARQUET_NAME), self.schema)
        for row in typed:
            self._done.add(parameter_key(row, self.param_names))
        self.resumed_rows = len(typed)
        self._resumed = typed
        if typed:
            self._parquet.write_table(pa.Table.from_pylist(typed, schema=self.schema))

    def _load(self, out_dir: Path, resume: bool, fingerprint: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows to resume from, read and checked without writing anything; refuse a search that is not this one."""
        csv_path = out_dir / CSV_NAME
        meta_path = out_dir / META_NAME
        if not csv_path.exists():
            return []
        if not resume:
            if not _holds_rows(csv_path):
                return []  # a header left by a search that stopped before its first result: nothing to lose
            raise ConfigError(
                f"{csv_path} already exists: pass --resume to continue that search, or choose another --out"
            )
        if meta_path.exists():
            previous = _read_meta(meta_path)
            now = json.loads(json.dumps(fingerprint, default=str))  # as search.json would hold it
            for key in ("data", "data_file", "strategy", "settings", "grid", "constraints", "random"):
                if key == "data_file" and key in now and key not in previous:
                    raise ConfigError(_unrecorded(out_dir, now))
                if key == "data" and _moved(previous, now):
                    continue  # the same file, its contents checked by data_file: moved to another folder, or mounted
                if key in now and previous.get(key) != now[key]:
                    raise ConfigError(
                        f"--resume: {out_dir} holds a search with a different {_difference(key, previous.get(key), now[key])}; "
                        "choose another --out"
                    )
        rows = self._read_csv(csv_path)
        if rows and not meta_path.exists():
            self.warnings.append(
                f"--resume: {out_dir} has no {META_NAME}, so the {len(rows):,} results read back from {CSV_NAME} could "
                "not be checked against this search's data, strategy, settings and grid; they are trusted as this "
                "search's"
            )
        return rows

    def _read_csv(self, path: Path) -> list[dict[str, Any]]:
        try:
            with path.open(encoding="utf-8", newline="") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"--resume: cannot read {path}: {exc}") from exc
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines.pop()  # torn write from a killed driver
        reader = csv.reader(lines)
        header = next(reader, None)
        if header is None:
            return []
        if tuple(header) != self.columns:
            raise ConfigError(
                f"--resume: {path} has columns {','.join(header)}, this search writes {','.join(self.columns)}; "
                "choose another --out"
            )
        rows: dict[tuple[str, ...], dict[str, Any]] = {}
        for cells in reader:
            if len(cells) != len(self.columns):
                raise DataError(
                    f"--resume: {path} line {reader.line_num} has {len(cells)} cells, expected {len(self.columns)} "
                    f"({','.join(self.columns)}); fix or delete that line"
                )
            row = self._typed(dict(zip(self.columns, cells, strict=True)), path, reader.line_num)
            self._check_in_grid(row, path, reader.line_num)
            rows[parameter_key(row, self.param_names)] = row
        return list(rows.values())

    def _typed(self, row: Mapping[str, str], path: Path, line: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in self.schema:
            text = row[field.name]
            try:
                if pa.types.is_integer(field.type):
                    out[field.name] = int(text)
                elif pa.types.is_floating(field.type):
                    out[field.name] = float(text)
                else:
                    out[field.name] = text
            except ValueError:
                kind = "a whole number" if pa.types.is_integer(field.type) else "a number"
                raise DataError(
                    f"--resume: {path} line {line}: {field.name} {text!r} is not {kind}; fix or delete that line"
                ) from None
        return out

    def _check_in_grid(self, row: Mapping[str, Any], path: Path, line: int) -> None:
        """A row read back must be a set of this search's grid: one from another search (a results.csv without its
        search.json) would be ranked and reported as this search's, its place in the grid undefined."""
        for name in self.param_names:
            if row[name] not in self._values[name]:
                raise DataError(
                    f"--resume: {path} line {line}: {name} {format_value(row[name])} is not one of this search's "
                    f"values of {name}, so the rows there are another search's; choose another --out (or delete "
                    "that line)"
                )

    # -- use ---------------------------------------------------------------------------------------------------------

    def take_resumed_rows(self) -> list[dict[str, Any]]:
        """The rows read back by ``--resume`` (once; the store then forgets them so memory stays flat)."""
        rows, self._resumed = self._resumed, []
        return rows

    def is_done(self, params: Mapping[str, Any]) -> bool:
        return parameter_key(params, self.param_names) in self._done

    def __len__(self) -> int:
        return self.resumed_rows + self._appended

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Record finished rows: written and flushed to the CSV at once, batched into Parquet row groups."""
        batch = [{c: _normalise(c, row[c]) for c in self.columns} for row in rows]
        self._appended += len(batch)
        if self._writer is None:
            self._memory.extend(batch)
            return
        self._writer.writerows([format_value(row[c]) for c in self.columns] for row in batch)
        assert self._csv is not None
        self._csv.flush()
        self._pending.extend(batch)
        if len(self._pending) >= _PARQUET_FLUSH_ROWS:
            self._flush_parquet()

    def _flush_parquet(self) -> None:
        if self._pending and self._parquet is not None:
            self._parquet.write_table(pa.Table.from_pylist(self._pending, schema=self.schema))
        self._pending = []

    def close(self) -> None:
        """Flush and close both files (the Parquet file put in place); idempotent. Called on success and on
        interruption alike. The directory stays locked until :meth:`release` (or the ``with`` block's end)."""
        self._flush_parquet()
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
            assert self.out_dir is not None
            os.replace(_temporary(self.out_dir / PARQUET_NAME), self.out_dir / PARQUET_NAME)
        if self._csv is not None:
            self._csv.close()
            self._csv = None
            self._writer = None

    def table(self) -> pa.Table:
        """Every row of the search (resumed ones included), as a pyarrow Table in the order rows were recorded."""
        if self.out_dir is None:
            return pa.Table.from_pylist(self._memory, schema=self.schema)
        self.close()  # a reader needs the footer
        return pq.read_table(self.out_dir / PARQUET_NAME, schema=self.schema)

    def release(self) -> None:
        """Let another search use the directory; idempotent."""
        self._lock.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        finally:
            self.release()


@contextmanager
def directory_lock(out_dir: Path) -> Iterator[None]:
    """Create ``out_dir`` if needed and hold an exclusive lock on its ``.lock`` file (``flock``; the OS drops it when
    the process ends, however it ends). Refuses with a :class:`ConfigError` when another search holds it."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot create --out directory {out_dir}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            f"another search is writing {out_dir} (it holds {out_dir / LOCK_NAME}); wait for it to end, or choose "
            "another --out"
        ) from None
    try:
        yield
    finally:
        os.close(fd)


def _holds_rows(path: Path) -> bool:
    """Whether a results.csv holds at least one complete row after its header."""
    with path.open(newline="", errors="replace") as handle:
        handle.readline()
        return handle.readline().endswith("\n")


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = (
            f"not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno})"
            if isinstance(exc, json.JSONDecodeError)
            else exc
        )
        raise DataError(
            f"--resume: {path} is damaged: {reason}; it records which search the results belong to, so the resume "
            "cannot be checked: restore it, delete it to resume without the check, or choose another --out"
        ) from exc
    if not isinstance(meta, dict):
        raise DataError(
            f"--resume: {path} is damaged: expected a JSON object; restore it, delete it, or choose another --out"
        )
    return meta


def _difference(key: str, before: Any, now: Any) -> str:
    """What changed in one part of the search, in the words of the config (``grid``, ``constraints``, ...)."""
    if key == "grid" and isinstance(before, dict) and isinstance(now, dict):
        if list(before) != list(now):
            return f"grid: parameters {', '.join(before)} (now {', '.join(now)})"
        name = next(n for n in now if before[n] != now[n])
        return f"grid for {name}: {_values_text(before[name])} (now {_values_text(now[name])})"
    if key == "constraints":
        return f"constraints: {'; '.join(before or []) or 'none'} (now {'; '.join(now) or 'none'})"
    if key == "random":
        return f"random sampling: {_random_text(before)} (now {_random_text(now)})"
    if key == "data_file":
        return f"data file contents: {_data_text(before)} (now {_data_text(now)}); the file has changed since"
    return f"{key} ({before!r}, now {now!r})"


def _moved(previous: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    """Whether the data file is the one the results were computed on, at another path: the same name (the symbol and
    the interval are read from it) and the same recorded contents."""
    before, after = previous.get("data"), now.get("data")
    return (
        isinstance(before, str)
        and isinstance(after, str)
        and Path(before).name == Path(after).name
        and "data_file" in now
        and previous.get("data_file") == now["data_file"]
    )


def _unrecorded(out_dir: Path, now: Mapping[str, Any]) -> str:
    """Why a resume stops when ``search.json`` was written before VeloZ recorded the data file's contents."""
    return (
        f"--resume: {out_dir / META_NAME} was written by an older VeloZ that did not record the data file's contents, "
        f"so this resume cannot check that the results there were computed on the data now at {now.get('data')}; "
        f"if that file has not changed since, delete {META_NAME} to resume without the check, or choose another --out"
    )


def _data_text(data: Any) -> str:
    if not isinstance(data, dict):
        return repr(data)
    text = f"{data.get('bytes', 0):,} bytes, sha256 {str(data.get('sha256'))[:16]}"
    if "bars" in data:
        text += f", {data['bars']:,} bars {data.get('first_open')} to {data.get('last_open')}"
    return text


def _values_text(values: Any) -> str:
    if isinstance(values, dict):
        return f"{values.get('first')}..{values.get('last')} ({values.get('count')} values)"
    if isinstance(values, list) and len(values) > 6:
        return f"{', '.join(map(str, values[:3]))}, ..., {values[-1]} ({len(values)} values)"
    return ", ".join(map(str, values)) if isinstance(values, list) else repr(values)


def _random_text(random: Any) -> str:
    if not isinstance(random, dict):
        return "none, the whole grid"
    return f"budget {random.get('budget')}, seed {random.get('seed')}"


def _temporary(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _arrow_type(values: Sequence[Any]) -> pa.DataType:
    if isinstance(values, range):
        return pa.int64()
    if isinstance(values, FloatSteps):
        return pa.float64()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pa.int64()
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return pa.float64()
    return pa.string()


def _normalise(column: str, value: Any) -> Any:
    if column in _INT_METRICS:
        return int(value)
    if column in METRICS:
        return float(value)
    return value


def best_first(
    columns: Mapping[str, Sequence[Any] | np.ndarray],
    space: ParameterSpace,
    metric: str,
    maximise: bool,
    min_trades: int = 0,
) -> np.ndarray:
    """The indices of the rows in ``columns`` (the parameters, ``metric`` and ``n_trades``), best first: the ranking.

    Larger ``metric`` first (smaller with ``maximise`` false); NaN, and fewer than ``min_trades`` round trips, after
    every other row, and ranked by ``metric`` among themselves too (NaN last): when no set trades enough (a quiet
    walk-forward training window), the choice is still the best of the rest, not merely the first set of the space.
    A tie goes to the set that comes first in ``space`` (its product order: the config's parameters and values in the
    config's order), never to the order results arrived in, so the same search ranks the same way every time. The one
    rule of the top table, ``report.html`` and a walk-forward fold's choice.
    """
    values = np.asarray(columns[metric], dtype=np.float64)
    trades = np.asarray(columns["n_trades"], dtype=np.int64)
    nan = np.isnan(values)
    score = np.where(nan, -np.inf, values if maximise else -values)
    below = nan | (trades < min_trades)
    places = [space.value_indices(name, columns[name]) for name in reversed(space.names)]
    return np.lexsort((*places, -score, below))


class TopK:
    """The best ``k`` rows (:func:`best_first`'s ranking), kept bounded while results stream."""

    _BATCH = 65_536  # rows ranked at once (resumed rows come all together)

    def __init__(self, k: int, metric: str, maximise: bool, min_trades: int = 0, *, space: ParameterSpace) -> None:
        self.k = k
        self.metric = metric
        self.maximise = maximise
        self.min_trades = min_trades
        self.space = space
        self._rows: list[dict[str, Any]] = []

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        if self.k <= 0:
            return
        source = iter(rows)
        while batch := [dict(row) for row in itertools.islice(source, self._BATCH)]:
            candidates = self._rows + batch
            names = (*self.space.names, self.metric, "n_trades")
            columns = {name: [row[name] for row in candidates] for name in names}
            order = best_first(columns, self.space, self.metric, self.maximise, self.min_trades)
            self._rows = [candidates[i] for i in order[: self.k]]

    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain fixed-width text table (floats to 4 significant places, node ids shortened)."""

    def cell(column: str, value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 1e6 else f"{value:.2f}"
        if column == "node" and isinstance(value, str) and len(value) > 12:
            return value[:12]
        return str(value)

    cells = [[cell(c, row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
