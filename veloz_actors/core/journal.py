"""The journal: an append-only write-ahead log of every input the engine applies, and its snapshots.

File format (JSON lines): a header ``{"journal": "veloz", "version": 1, "config": {...}}`` then one encoded message
per line, in the order applied. Because the engine takes every timestamp from its inputs, replaying the lines through
a fresh engine built from the header's config rebuilds the same state and the same events, byte for byte.

Durability is a policy:

- ``"always"``: flush and fsync after every message (nothing acknowledged is ever lost);
- ``"group"``: flush and fsync at most every ``group_ms`` milliseconds, from a background thread, and on close (a
  crash loses at most that window, the usual group-commit trade);
- ``"none"``: leave it to the OS (backtests and benchmarks of the logic alone).

One engine at a time writes a journal (it holds ``<journal>.lock`` while open), and a write or sync that fails fails
the journal for good rather than leave a line on disk that the engine never applied (see :class:`Journal`).

Snapshots are written beside the journal (``<journal>.snapshot``) atomically (write, fsync, rename) and record the
number of journal lines they include, so recovery loads the snapshot and applies only the lines after it. A checksum
covers each: a damaged snapshot is a :class:`JournalError`, never a restored state that differs from the engine's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

from .._exceptions import JournalError
from ..fixed import format_decimal
from ..messages import Error, Message, decode, encode_line

__all__ = [
    "Durability",
    "Journal",
    "count_lines",
    "drop_torn_tail",
    "iter_journal",
    "journal_error",
    "other_configuration",
    "lock_journal",
    "read_header",
    "read_journal",
    "read_snapshot",
    "restore_snapshot",
    "take_snapshot",
    "torn_tail_bytes",
    "unloadable_snapshot",
    "write_snapshot",
]

Durability = Literal["always", "group", "none"]
_VERSION = 1
# The meaning of the lines, within one format version: 2 keeps an engine-wide HaltTrading("*") apart from accounts'
# own breakers (lifted by ResetCircuitBreaker("*") alone). A header without it was written before: semantics 1, where
# "*" tripped every account's own breaker and an account's reset lifted it. 3 measures max_position as the long
# position a buy could reach (position + open buys + qty; an open order by quote amount counts what its unspent quote
# buys at the band's low end); before, abs(position) and an open quote order's placeholder quantity: a journal of 2
# replays its buys as they were decided. 4 refuses an order for an account the engine does not have as UNKNOWN_ACCOUNT,
# before the risk checks; before, it went through them and was refused as INSUFFICIENT_FUNDS at the reservation (or by
# a check on the way). 5 moves a position by what a fill with its fee in the symbol's base asset left the account (a
# buy's qty - fee, a sell's qty + fee: Binance takes a buy's commission out of the coins received unless fees go to
# BNB); before, by the fill's qty, so a position bought so was more than the account held and could not be sold whole.
# 6 rounds each step of the simulated market's price to the nearest tick (venues.simmarket); before, down, so a market
# without drift fell half a tick a step (a price moving less than a tick a step only ever fell). 6 also holds a market
# buy by quote amount to the instrument's NOTIONAL filter, as Binance does (a quote amount below min_notional is
# refused); before, it went to the venue and the simulated one filled it.
# 7 ends a market buy by quote amount that ran out of book (or reached its protect price) with budget left as Binance
# does: EXPIRED (NO_LIQUIDITY), its fills kept, from the simulated, paper and L2 venues and in the kernel; before,
# FILLED. 7 also gives the fill events of every order by quote amount a leaves_qty (what its unspent budget buys at
# the fill's price, 0 with its last fill); before, every fill of it said 0, as if it were the last.
# A journal keeps its semantics for life.
SEMANTICS = 7
_GROUP_BUFFER_BYTES = 4 << 20
_log = logging.getLogger("veloz.journal")


class Journal:
    """Appends encoded messages to a file under a durability policy. One writer thread, plus the flusher.

    One engine at a time: the journal holds an exclusive lock on ``<journal>.lock`` from before it reads the file
    until :meth:`close`, so a second engine on the same journal gets a :class:`JournalError` instead of interleaving
    its lines with the first's (each would reserve the same funds). The lock is the OS's (``flock``): a killed
    process leaves none behind.

    A write or sync that fails (a full disk, an I/O error) fails the journal for good: that append, and every later
    ``append``, ``flush``, ``hand_to_os`` and ``close``, raises :class:`JournalError`, so the message is never applied.
    Under ``"always"`` the file is cut back at once to the last line that was synced, so no line of a message the
    engine refused can reach the disk later; under ``"group"`` the flusher's failure is kept and raised the same way
    from the engine's thread, and ``close`` cuts off whatever a failed append left after the last accepted line.

    A writer that acknowledges through :meth:`hand_to_os` (the actors call it before anything of a step leaves them)
    has its file cut back, at the failure and again at ``close``, to the last line handed so: the lines after it are
    of steps the writer applied but refused to its callers (their ``hand_to_os`` raised), which a replay must never
    bring back (an order its client was told failed would go to the venue after the restart).
    """

    def __init__(
        self,
        path: str | Path,
        config: dict[str, Any],
        *,
        durability: Durability = "group",
        group_ms: float = 5.0,
        lock_wait: float = 0.0,
        lock_file: BinaryIO | None = None,
    ) -> None:
        if durability not in ("always", "group", "none"):
            raise JournalError(f"unknown durability {durability!r}: use always, group or none")
        self.path = Path(path)
        self.durability = durability
        self._always = durability == "always"
        self.group_seconds = group_ms / 1000.0
        self.count = 0
        self.failure: OSError | None = None  # what failed the journal (then it takes nothing more)
        self._handed: tuple[int, int] | None = None  # (bytes, lines) at the last hand_to_os: what was acknowledged
        self._lock = threading.Lock()
        self._dirty = False
        self._closed = False
        self._lock_file = lock_file if lock_file is not None else lock_journal(self.path, lock_wait)
        try:
            self._open(config)
        except BaseException:
            self._lock_file.close()
            raise
        self._flusher: threading.Thread | None = None
        if durability == "group":
            self._flusher = threading.Thread(target=self._flush_loop, name="veloz-journal-flush", daemon=True)
            self._flusher.start()

    def _open(self, config: dict[str, Any]) -> None:
        try:
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            if not fresh:
                drop_torn_tail(self.path)
            # Group commit gets a large buffer: the flusher, not the engine thread, then makes the write calls, so an
            # append never waits on a page the last fsync is still writing back (measured: ~1 us per order). "always"
            # writes unbuffered: a line that failed is never left in a buffer for a later write to carry to disk.
            buffering = _GROUP_BUFFER_BYTES if self.durability == "group" else 0 if self._always else -1
            self._file: BinaryIO = open(self.path, "ab", buffering=buffering)  # noqa: SIM115 - lives with the journal
        except OSError as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        try:
            if fresh:
                header = {"journal": "veloz", "version": _VERSION, "semantics": SEMANTICS, "config": config}
                try:
                    self._write(orjson.dumps(header) + b"\n")
                    self._sync()
                except OSError as exc:
                    raise JournalError(f"cannot write journal {self.path}: {exc}") from exc
            else:
                header, lines = _read(self.path)
                if header.get("config") != config:
                    raise other_configuration(self.path, header.get("config"), config)
                self.count = lines
            self._length = os.fstat(self._file.fileno()).st_size  # the bytes of every line accepted so far
        except BaseException:
            self._file.close()
            raise
        self.semantics: int = semantics_of(header)

    def append(self, message: Message) -> None:
        # No lock on the hot path: the buffered file has its own, and the flusher clears ``_dirty`` *before* it
        # flushes, so a line written while it flushes is either in that flush or marks the journal dirty again.
        if self._closed:
            raise JournalError(f"journal {self.path} is closed")
        if self.failure is not None:
            raise self._failed()
        line = encode_line(message)
        try:
            if self._always:
                self._write(line)
                os.fsync(self._file.fileno())
            else:
                self._file.write(line)
        except OSError as exc:
            with self._lock:
                self._fail(exc)
            raise self._failed() from exc
        self._length += len(line)
        self.count += 1
        if not self._always:
            self._dirty = True

    @property
    def error(self) -> str | None:
        """Why the journal takes no more messages (what every call raises), None while it works."""
        return None if self.failure is None else str(self._failed())

    def hand_to_os(self) -> None:
        """Write the buffered lines to the OS without fsync: a killed process then loses none of them (a power loss
        still may, within the durability policy). The actors call this before acknowledging a call."""
        with self._lock:
            if self._closed:
                return
            if self.failure is not None:
                raise self._failed()
            try:
                self._file.flush()
            except OSError as exc:
                self._fail(exc)
                raise self._failed() from exc
            self._handed = (self._length, self.count)

    def flush(self) -> None:
        """Write and fsync everything appended so far."""
        with self._lock:
            if self._closed:
                return
            if self.failure is not None:
                raise self._failed()
            try:
                self._sync()
            except OSError as exc:
                self._fail(exc)
                raise self._failed() from exc
            self._dirty = False

    def close(self) -> None:
        """Flush, fsync and close the file, and let go of the lock (idempotent). A failed journal still closes, then
        raises its failure."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self.failure is None:
                    self._sync()
            except OSError as exc:
                self.failure = exc
            try:
                self._file.close()  # a failed journal's buffer may write here: cut back below
            except OSError as exc:
                self.failure = self.failure or exc
            try:
                if self.failure is not None:
                    _cut(self.path, self._kept()[0])
            finally:
                self._lock_file.close()
        if self._flusher is not None:
            self._flusher.join(timeout=1.0)
        if self.failure is not None:
            raise self._failed()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # unbuffered ("always"): a write may take only part of the line
            written = self._file.write(view)
            view = view[written:]

    def _sync(self) -> None:
        self._file.flush()
        if self.durability != "none":
            os.fsync(self._file.fileno())

    def _fail(self, exc: OSError) -> None:
        """Keep the first failure (called under ``_lock``); cut the file back at once to the last line acknowledged
        (:meth:`_kept`), under "always" also to its last synced line: a process killed now leaves no line of a step
        its callers were refused on the disk."""
        if self.failure is None:
            self.failure = exc
        if self._always or self._handed is not None:
            with contextlib.suppress(OSError):
                fd = self._file.fileno()
                keep = self._kept()[0]
                if os.fstat(fd).st_size > keep:  # (never extended: a buffered file may not have written that far)
                    os.ftruncate(fd, keep)

    def _kept(self) -> tuple[int, int]:
        """The bytes and lines a failed journal keeps: up to the last :meth:`hand_to_os` if the writer acknowledges
        with it, else every line accepted."""
        return self._handed if self._handed is not None else (self._length, self.count)

    def _failed(self) -> JournalError:
        return JournalError(
            f"journal {self.path} cannot be written ({self.failure}): it takes no more messages after its line "
            f"{self._kept()[1]}; free the disk and restart the engine, which recovers from the journal"
        )

    def _flush_loop(self) -> None:
        # Group commit: hand the buffered lines to the OS under the lock (a write, microseconds), then fsync outside
        # it, so the engine keeps appending while the disk syncs everything written before the fsync began. A
        # failure stops the flusher and fails the journal: the engine's next call raises it.
        fd = self._file.fileno()
        while not self._closed and self.failure is None:
            time.sleep(self.group_seconds)
            if not self._dirty:
                continue
            with self._lock:
                if self._closed:
                    return
                self._dirty = False
                try:
                    self._file.flush()
                except OSError as exc:
                    self._fail(exc)
                    return
            try:
                os.fsync(fd)
            except OSError as exc:
                if not self._closed:  # else closed under us: close() synced everything itself
                    self._fail(exc)
                return


def journal_error(*journals: Journal | None) -> str | None:
    """The first of ``journals`` that failed, said (:attr:`Journal.error`), for an actor's status: a journal that
    cannot be written refuses everything its actor is sent, and STATUS ``problems`` says so."""
    for journal in journals:
        if journal is not None and journal.failure is not None:
            return journal.error
    return None


def other_configuration(path: str | Path, written: Any, given: Any) -> JournalError:
    """The error for a journal opened (or replayed) with another configuration than the one it was written with,
    naming where the two differ (up to three places, with both values as the config file writes them: money, prices
    and fractions as decimals, not in the engine's 1e-8 units) and what to do."""
    places: list[str] = []
    _differences("", written, given, places, decimal=False)
    shown = "; ".join(places[:3]) + (f"; and {len(places) - 3} more" if len(places) > 3 else "")
    return JournalError(
        f"{path} was written by an engine with a different configuration ({shown}): start it with the configuration "
        "the journal was written with, or move the journal away to start afresh"
    )


# The configuration keys whose integers (or whose values' integers: balances per account and asset) are in the 1e-8
# units of veloz_actors.fixed, written as decimals in a config file; every other integer is a count (burst, seed).
_DECIMAL_KEYS = frozenset({
    "balances", "market_maker_balances", "reference_prices",  # the engine's, the kernel's, the risk monitor's
    "max_order_qty", "max_order_notional", "max_position", "max_leverage", "price_band", "max_drawdown", "max_loss",
    "stop_loss",  # risk limits
    "price_tick", "qty_step", "min_qty", "max_qty", "min_notional", "min_price", "max_price", "maker_fee_rate",
    "taker_fee_rate", "market_min_qty", "market_max_qty", "max_notional",  # an instrument's
    "initial_mid", "level_qty",  # a simulated symbol's
})  # fmt: skip


def _differences(where: str, written: Any, given: Any, out: list[str], *, decimal: bool) -> None:
    if written == given:
        return
    if isinstance(written, dict) and isinstance(given, dict):
        for key in sorted(set(written) | set(given), key=str):
            here = f"{where}.{key}" if where else str(key)
            inner = decimal or key in _DECIMAL_KEYS
            if key not in written or key not in given:
                then, now = written.get(key, _ABSENT), given.get(key, _ABSENT)
                out.append(f"{here}: {_shown(then, inner)} in the journal, {_shown(now, inner)} now")
            else:
                _differences(here, written[key], given[key], out, decimal=inner)
        return
    if isinstance(written, list) and isinstance(given, list) and len(written) == len(given):
        for i, (a, b) in enumerate(zip(written, given, strict=True)):
            name = a.get("symbol") if isinstance(a, dict) and a.get("symbol") == (b or {}).get("symbol") else None
            _differences(f"{where}[{name if name is not None else i}]", a, b, out, decimal=decimal)
        return
    out.append(
        f"{where or 'the configuration'}: {_shown(written, decimal)} in the journal, {_shown(given, decimal)} now"
    )


_ABSENT = object()


def _shown(value: Any, decimal: bool = False) -> str:
    """A configuration value in a few words: a list of instruments by their symbols, anything else as JSON (its
    integers as decimals where ``decimal``), cut."""
    if value is _ABSENT:
        return "nothing"
    if isinstance(value, list) and value and all(isinstance(v, dict) and "symbol" in v for v in value):
        value = [v["symbol"] for v in value]
    elif decimal:
        value = _as_decimals(value)
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= 60 else text[:57] + "..."


def _as_decimals(value: Any) -> Any:
    """``value`` with each integer in it (not a boolean) as the decimal number it stands for (1e-8 units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return orjson.Fragment(format_decimal(value))
    if isinstance(value, dict):
        return {key: _as_decimals(v) for key, v in value.items()}
    if isinstance(value, list):
        return [_as_decimals(v) for v in value]
    return value


def lock_journal(path: str | Path, wait: float = 0.0) -> BinaryIO:
    """Hold ``<path>.lock`` exclusively (released when the returned file closes, or handed to a :class:`Journal` as
    its ``lock_file``), or raise if another holds it ``wait`` seconds on (an actor Ray restarted waits: the process
    it replaces may still be exiting). Recovery takes it before it reads or cuts any of the journal's files."""
    path = Path(path)
    lock_path = Path(str(path) + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_file: BinaryIO = open(lock_path, "ab")  # noqa: SIM115 - lives with the journal
    except OSError as exc:
        raise JournalError(f"cannot open journal {path}: {exc}") from exc
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock_file
        except BlockingIOError as exc:
            if time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            lock_file.close()
            waited = f" (waited {wait:g} s)" if wait else ""
            raise JournalError(
                f"journal {path} is open in another engine (it holds {lock_path.name}){waited}: one engine per "
                "journal, or their lines would interleave; stop the other engine first"
            ) from exc
        except OSError as exc:
            lock_file.close()
            raise JournalError(f"cannot lock journal {path}: {exc}") from exc


def _cut(path: Path, length: int) -> None:
    """Cut ``path`` back to ``length`` bytes if it is longer (never extends it)."""
    with contextlib.suppress(OSError), open(path, "r+b") as f:
        if f.seek(0, os.SEEK_END) > length:
            f.truncate(length)


def drop_torn_tail(path: Path) -> None:
    """Cut an incomplete last line (a write torn by a crash), so that the next append starts a line of its own.

    Readers already ignore such a line; appending after it would glue the two into one corrupt line mid-file. A cut
    is logged at WARNING (``veloz.journal``, naming the file and the bytes), so an operator learns that the last
    write before the crash did not make it, as ``veloz replay`` reports it (``torn_tail_bytes``).
    """
    with open(path, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        torn = _torn_tail(f, end)
        if not 0 < torn < end:  # a file without any line end is left as it is
            return
        f.truncate(end - torn)
    _log.warning(
        "%s ended in a torn last line (a write cut short by a crash): cut its %d bytes, kept the %d before them",
        path,
        torn,
        end - torn,
        extra={"path": str(path), "torn_tail_bytes": torn},
    )


def torn_tail_bytes(path: str | Path) -> int:
    """The length of an incomplete last line (a write cut short by a crash, a copy taken while the engine wrote),
    which readers leave out; 0 when the file ends with a whole line."""
    with open(path, "rb") as f:
        return _torn_tail(f, f.seek(0, os.SEEK_END))


def _torn_tail(f: BinaryIO, end: int) -> int:
    pos = end
    while pos > 0:
        start = max(0, pos - 65536)
        f.seek(start)
        newline = f.read(pos - start).rfind(b"\n")
        if newline >= 0:
            return end - (start + newline + 1)
        pos = start
    return end


def _read(path: Path) -> tuple[dict[str, Any], int]:
    # counted, not decoded: a journal of weeks took minutes to open (2.7 s per 100 MiB); recovery decodes the lines
    # it replays (those after the snapshot: the snapshot, checksummed, stands for the others)
    return _header(path), count_lines(path)


def _header(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            first = f.readline()
        header = orjson.loads(first)
    except (OSError, orjson.JSONDecodeError) as exc:
        raise JournalError(f"{path} is not a VeloZ journal: {exc}") from exc
    if not isinstance(header, dict) or header.get("journal") != "veloz":
        raise JournalError(f"{path} is not a VeloZ journal (bad header)")
    if header.get("version") != _VERSION:
        raise JournalError(f"{path}: journal version {header.get('version')} is not supported")
    semantics = header.get("semantics", 1)
    # read under another semantics' rules, the lines would rebuild other balances; appended to, the journal would
    # mix two meanings
    if type(semantics) is not int:
        raise JournalError(f"{path}: journal semantics {semantics!r} is not a whole number (bad header)")
    if semantics > SEMANTICS:
        raise JournalError(
            f"{path}: journal semantics {semantics} is newer than this VeloZ reads (1 to {SEMANTICS}): use the "
            "VeloZ that wrote it"
        )
    if semantics < 1:
        raise JournalError(f"{path}: journal semantics {semantics} is not one this VeloZ reads (1 to {SEMANTICS})")
    return header


def _iter(path: Path, start: int = 0) -> Iterator[tuple[dict[str, Any], Message]]:
    header = _header(path)
    with open(path, "rb") as f:
        f.readline()
        for number, line in enumerate(f, start=2):
            if not line.endswith(b"\n"):
                # a torn final write after a crash: everything before it is intact and is all that was acknowledged
                return
            if number - 2 < start:
                continue  # covered by a snapshot: never decoded
            try:
                yield header, decode(line)
            except Exception as exc:
                raise JournalError(f"{path}:{number}: corrupt journal line: {exc}") from exc


def count_lines(path: str | Path) -> int:
    """How many complete messages a journal holds (a torn final line left out), without decoding them."""
    path = Path(path)
    if not path.is_file():
        raise JournalError(f"journal {path} does not exist")
    _header(path)
    newlines = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            newlines += chunk.count(b"\n")
    return max(0, newlines - 1)  # the header's


def iter_journal(path: str | Path, start: int = 0) -> Iterator[Message]:
    """A journal's complete messages from the ``start``-th on, decoded one at a time: recovery holds one message,
    not the journal, and skips undecoded the lines a snapshot covers (``start`` from :func:`restore_snapshot`).
    A journal grows for the engine's whole life; read into one list, a restart after weeks needed memory for every
    line ever written."""
    path = Path(path)
    if not path.is_file():
        raise JournalError(f"journal {path} does not exist")
    return (message for _, message in _iter(path, start))


def semantics_of(header: dict[str, Any]) -> int:
    """The semantics a journal's lines were written under (:data:`SEMANTICS`; 1 for a header without the key)."""
    return int(header.get("semantics", 1))


def read_header(path: str | Path) -> dict[str, Any]:
    """A journal's header (the config it was started with) without reading its messages."""
    path = Path(path)
    if not path.is_file():
        raise JournalError(f"journal {path} does not exist")
    return _header(path)


def read_journal(path: str | Path) -> tuple[dict[str, Any], list[Message]]:
    """The header and every complete message of a journal, in order."""
    path = Path(path)
    if not path.is_file():
        raise JournalError(f"journal {path} does not exist")
    header = _header(path)
    return header, [message for _, message in _iter(path)]


def write_snapshot(path: str | Path, seq: int, state: bytes) -> None:
    """Atomically write ``state`` (the engine's snapshot) taken after ``seq`` journal lines.

    The file is a header (:data:`_SNAPSHOT_MAGIC`, ``seq``, the state's length, the SHA-256 of the three) and the
    state: :func:`read_snapshot` refuses a file that does not match it rather than restore a wrong balance.
    """
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(_SNAPSHOT_HEAD.pack(_SNAPSHOT_MAGIC, seq, len(state), _snapshot_digest(seq, state)))
            f.write(state)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()  # a half-written snapshot is never left behind
        raise


def take_snapshot(journal: Journal, path: Path, state: Callable[[], bytes], every: int, ts: int) -> Error | None:
    """Write a snapshot covering every line of ``journal``; a failure is returned as a ``SNAPSHOT_FAILED`` error."""
    try:
        journal.flush()  # a snapshot never covers a line that is not yet on disk itself
        write_snapshot(path, journal.count, state())
    except (OSError, JournalError) as exc:
        return Error(
            code="SNAPSHOT_FAILED",
            message=f"snapshot {path} not written ({exc}); the journal holds every step, and the next snapshot is "
            f"due {every} steps on",
            ts=ts,
        )
    return None


def read_snapshot(path: str | Path) -> tuple[int, bytes] | None:
    """The journal lines a snapshot covers and its state; None without a snapshot.

    A snapshot that is truncated, fails its checksum or is not one raises :class:`JournalError` naming the file:
    recovery does not guess around damage (the disk that damaged it may have damaged more), and the error says how to
    go on: move the snapshot away and the state is rebuilt from the journal alone, which is exact, only slower. A
    snapshot of the format before the header (the line count, then the pickled state, with no checksum) reads as
    none for the same reason: the journal alone is exact, and the next snapshot is written with a checksum.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JournalError(f"cannot read snapshot {path}: {exc}") from exc

    def damaged(what: str) -> JournalError:
        return JournalError(
            f"snapshot {path} is damaged ({what}); move it away to recover from the journal alone (exact, slower)"
        )

    if data[:8] != _SNAPSHOT_MAGIC:
        if len(data) > 8 and data[8] == _PICKLE_PROTO:
            return None  # the format before the header: not trusted without a checksum
        raise damaged("truncated" if len(data) < 8 else "not a VeloZ snapshot")
    if len(data) < _SNAPSHOT_HEAD.size:
        raise damaged(f"truncated: {len(data)} bytes, shorter than its header")
    _, seq, length, digest = _SNAPSHOT_HEAD.unpack_from(data)
    state = data[_SNAPSHOT_HEAD.size :]
    if len(state) != length:
        raise damaged(f"truncated: {len(state)} of its {length} bytes of state")
    if _snapshot_digest(seq, state) != digest:
        raise damaged("its checksum does not match its content")
    return seq, state


def restore_snapshot(journal_path: str | Path, lines: int, restore: Callable[[bytes], None]) -> int:
    """Restore the snapshot beside ``journal_path`` with ``restore(state)`` and return the journal lines it covers
    (replay the ones after them); 0 without one. A snapshot covering more than the journal's ``lines`` covers lines
    the journal lost (a crash inside the durability window of a writer that snapshotted without syncing): it is
    deleted, since the journal alone is exact and, once new lines grew past its count, it would skip them. A state
    that does not load is :func:`unloadable_snapshot`'s error."""
    path = Path(str(journal_path) + ".snapshot")
    snap = read_snapshot(path)
    if snap is None:
        return 0
    start, state = snap
    if start > lines:
        path.unlink()
        return 0
    try:
        restore(state)
    except Exception as exc:  # unpickling raises anything: the state is another version's
        raise unloadable_snapshot(path, exc) from exc
    return start


def unloadable_snapshot(path: str | Path, exc: Exception) -> JournalError:
    """The error for a snapshot whose checksum holds but whose state does not load (written by other code)."""
    return JournalError(
        f"snapshot {path} cannot be loaded ({type(exc).__name__}: {exc}); move it away to recover from the journal "
        "alone (exact, slower)"
    )


# magic, journal lines covered, length of the state, SHA-256 of (lines, length, state)
_SNAPSHOT_MAGIC = b"VZSNAP\x00\x01"
_SNAPSHOT_HEAD = struct.Struct("<8sQQ32s")
_PICKLE_PROTO = 0x80  # the first byte of a pickle (its PROTO opcode)


def _snapshot_digest(seq: int, state: bytes) -> bytes:
    digest = hashlib.sha256(struct.pack("<QQ", seq, len(state)))
    digest.update(state)
    return digest.digest()
