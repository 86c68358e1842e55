"""The journal: an append-only write-ahead log of every input the engine applies, and its snapshots.

File format (JSON lines): a header ``{"journal": "veloz", "version": 1, "config": {...}}`` then one encoded message
per line, in the order applied. Because the engine takes every timestamp from its inputs, replaying the lines through
a fresh engine built from the header's config rebuilds the same state and the same events, byte for byte.

Durability is a policy:

- ``"always"``: flush and fsync after every message (nothing acknowledged is ever lost);
- ``"group"``: flush and fsync at most every ``group_ms`` milliseconds, from a background thread, and on close (a
  crash loses at most that window, the usual group-commit trade);
- ``"none"``: leave it to the OS (backtests and benchmarks of the logic alone).

Snapshots are written beside the journal (``<journal>.snapshot``) atomically (write, fsync, rename) and record the
number of journal lines they include, so recovery loads the snapshot and applies only the lines after it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

from .._exceptions import JournalError
from ..messages import Message, decode, encode_line

__all__ = ["Durability", "Journal", "read_journal", "read_snapshot", "write_snapshot"]

Durability = Literal["always", "group", "none"]
_VERSION = 1
# The meaning of the lines, within one format version: 2 keeps an engine-wide HaltTrading("*") apart from accounts'
# own breakers (lifted by ResetCircuitBreaker("*") alone). A header without it was written before: semantics 1, where
# "*" tripped every account's own breaker and an account's reset lifted it. A journal keeps its semantics for life.
SEMANTICS = 2
_GROUP_BUFFER_BYTES = 4 << 20


class Journal:
    """Appends encoded messages to a file under a durability policy. One writer thread, plus the flusher."""

    def __init__(
        self, path: str | Path, config: dict[str, Any], *, durability: Durability = "group", group_ms: float = 5.0
    ) -> None:
        if durability not in ("always", "group", "none"):
            raise JournalError(f"unknown durability {durability!r}: use always, group or none")
        self.path = Path(path)
        self.durability = durability
        self._always = durability == "always"
        self.group_seconds = group_ms / 1000.0
        self.count = 0
        self._lock = threading.Lock()
        self._dirty = False
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            if not fresh:
                _drop_torn_tail(self.path)
            # Group commit gets a large buffer: the flusher, not the engine thread, then makes the write calls, so an
            # append never waits on a page the last fsync is still writing back (measured: ~1 us per order).
            buffering = _GROUP_BUFFER_BYTES if durability == "group" else -1
            self._file: BinaryIO = open(self.path, "ab", buffering=buffering)  # noqa: SIM115 - lives with the journal
        except OSError as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from exc
        if fresh:
            header = {"journal": "veloz", "version": _VERSION, "semantics": SEMANTICS, "config": config}
            self._file.write(orjson.dumps(header) + b"\n")
            self._sync()
        else:
            header, lines = _read(self.path)
            if header.get("config") != config:
                raise JournalError(f"{self.path} was written by an engine with a different configuration")
            self.count = lines
        self.semantics: int = semantics_of(header)
        self._flusher: threading.Thread | None = None
        if durability == "group":
            self._flusher = threading.Thread(target=self._flush_loop, name="veloz-journal-flush", daemon=True)
            self._flusher.start()

    def append(self, message: Message) -> None:
        # No lock on the hot path: the buffered file has its own, and the flusher clears ``_dirty`` *before* it
        # flushes, so a line written while it flushes is either in that flush or marks the journal dirty again.
        if self._closed:
            raise JournalError(f"journal {self.path} is closed")
        self._file.write(encode_line(message))
        self.count += 1
        if self._always:
            self._sync()
        else:
            self._dirty = True

    def hand_to_os(self) -> None:
        """Write the buffered lines to the OS without fsync: a killed process then loses none of them (a power loss
        still may, within the durability policy). The actors call this before acknowledging a call."""
        with self._lock:
            if not self._closed:
                self._file.flush()

    def flush(self) -> None:
        """Write and fsync everything appended so far."""
        with self._lock:
            if not self._closed:
                self._sync()
                self._dirty = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._sync()
            self._file.close()
            self._closed = True
        if self._flusher is not None:
            self._flusher.join(timeout=1.0)

    def _sync(self) -> None:
        self._file.flush()
        if self.durability != "none":
            os.fsync(self._file.fileno())

    def _flush_loop(self) -> None:
        # Group commit: hand the buffered lines to the OS under the lock (a write, microseconds), then fsync outside
        # it, so the engine keeps appending while the disk syncs everything written before the fsync began.
        fd = self._file.fileno()
        while not self._closed:
            time.sleep(self.group_seconds)
            if not self._dirty:
                continue
            with self._lock:
                if self._closed:
                    return
                self._dirty = False
                self._file.flush()
            with contextlib.suppress(OSError):  # closed under us: close() synced everything itself
                os.fsync(fd)


def _drop_torn_tail(path: Path) -> None:
    """Cut an incomplete last line (a write torn by a crash), so that the next append starts a line of its own.

    Readers already ignore such a line; appending after it would glue the two into one corrupt line mid-file.
    """
    with open(path, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            start = max(0, pos - 65536)
            f.seek(start)
            newline = f.read(pos - start).rfind(b"\n")
            if newline >= 0:
                if start + newline + 1 < end:
                    f.truncate(start + newline + 1)
                return
            pos = start


def _read(path: Path) -> tuple[dict[str, Any], int]:
    count = sum(1 for _ in _iter(path))
    return _header(path), count


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
    return header


def _iter(path: Path) -> Iterator[tuple[dict[str, Any], Message]]:
    header = _header(path)
    with open(path, "rb") as f:
        f.readline()
        for number, line in enumerate(f, start=2):
            if not line.endswith(b"\n"):
                # a torn final write after a crash: everything before it is intact and is all that was acknowledged
                return
            try:
                yield header, decode(line)
            except Exception as exc:
                raise JournalError(f"{path}:{number}: corrupt journal line: {exc}") from exc


def semantics_of(header: dict[str, Any]) -> int:
    """The semantics a journal's lines were written under (:data:`SEMANTICS`; 1 for a header without the key)."""
    return int(header.get("semantics", 1))


def read_journal(path: str | Path) -> tuple[dict[str, Any], list[Message]]:
    """The header and every complete message of a journal, in order."""
    path = Path(path)
    if not path.is_file():
        raise JournalError(f"journal {path} does not exist")
    header = _header(path)
    return header, [message for _, message in _iter(path)]


def write_snapshot(path: str | Path, seq: int, state: bytes) -> None:
    """Atomically write ``state`` (the engine's snapshot) taken after ``seq`` journal lines."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(seq.to_bytes(8, "little"))
        f.write(state)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_snapshot(path: str | Path) -> tuple[int, bytes] | None:
    path = Path(path)
    if not path.is_file():
        return None
    data = path.read_bytes()
    if len(data) < 8:
        raise JournalError(f"snapshot {path} is truncated")
    return int.from_bytes(data[:8], "little"), data[8:]
