"""The journal: header, durability, torn tails, config mismatch, atomic snapshots."""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
from pathlib import Path

import orjson
import pytest

from veloz_actors import JournalError
from veloz_actors.core import journal as journal_module
from veloz_actors.core.journal import SEMANTICS, Journal, iter_journal, read_journal, read_snapshot, write_snapshot
from veloz_actors.messages import Tick, encode
from veloz_actors.messages import decode as decode_line

from .disk import disk_full_after

CONFIG = {"name": "test", "instruments": [1, 2]}


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_new_journal_starts_with_a_header(tmp_path: Path) -> None:
    path = tmp_path / "j"
    Journal(path, CONFIG, durability="none").close()
    assert orjson.loads(_lines(path)[0]) == {"journal": "veloz", "version": 1, "semantics": SEMANTICS, "config": CONFIG}


def test_messages_are_appended_one_encoded_line_each(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability="none")
    journal.append(Tick(ts=1))
    journal.append(Tick(ts=2))
    journal.close()
    assert _lines(path)[1:] == [encode(Tick(ts=1)) + b"\n", encode(Tick(ts=2)) + b"\n"]
    assert read_journal(path) == (
        {"journal": "veloz", "version": 1, "semantics": SEMANTICS, "config": CONFIG},
        [Tick(ts=1), Tick(ts=2)],
    )


def test_always_durability_has_the_line_on_disk_before_append_returns(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability="always")
    journal.append(Tick(ts=1))
    assert read_journal(path)[1] == [Tick(ts=1)]
    journal.close()


def test_group_durability_writes_everything_on_flush(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability="group", group_ms=50)
    for ts in range(5):
        journal.append(Tick(ts=ts))
    journal.flush()
    assert len(read_journal(path)[1]) == 5
    journal.close()


@pytest.mark.parametrize("durability", ["always", "group", "none"])
def test_close_flushes_every_message(tmp_path: Path, durability: str) -> None:
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability=durability)  # type: ignore[arg-type]
    for ts in range(100):
        journal.append(Tick(ts=ts))
    journal.close()
    assert read_journal(path)[1] == [Tick(ts=ts) for ts in range(100)]


def test_unknown_durability_is_a_journal_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="unknown durability"):
        Journal(tmp_path / "j", CONFIG, durability="sometimes")  # type: ignore[arg-type]


def test_append_after_close_is_a_journal_error(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", CONFIG, durability="none")
    journal.close()
    journal.close()  # idempotent
    with pytest.raises(JournalError, match="closed"):
        journal.append(Tick(ts=1))


def test_reopening_continues_the_count(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability="none")
    journal.append(Tick(ts=1))
    journal.close()
    again = Journal(path, CONFIG, durability="none")
    assert again.count == 1
    again.append(Tick(ts=2))
    again.close()
    assert read_journal(path)[1] == [Tick(ts=1), Tick(ts=2)]


def test_a_journal_may_wait_for_the_lock_the_process_it_replaces_still_holds(tmp_path: Path) -> None:
    """An actor Ray restarted while the old process still held the lock died for good (Ray never retries an actor
    whose constructor raised): it waits a bounded time, then says how long it waited."""
    path = tmp_path / "j"
    first = Journal(path, CONFIG, durability="none")
    with pytest.raises(JournalError, match=rf"{path} is open in another engine \(it holds j.lock\) \(waited 0.2 s\)"):
        Journal(path, CONFIG, durability="none", lock_wait=0.2)
    threading.Timer(0.3, first.close).start()  # the old process exits
    second = Journal(path, CONFIG, durability="none", lock_wait=60.0)  # well within the wait
    second.append(Tick(ts=1))
    second.close()
    assert read_journal(path)[1] == [Tick(ts=1)]


def test_reopening_with_another_config_is_a_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "j"
    Journal(path, CONFIG, durability="none").close()
    with pytest.raises(JournalError, match="different configuration"):
        Journal(path, {"name": "other"}, durability="none")


def test_another_config_is_refused_naming_where_it_differs_and_what_to_do(tmp_path: Path) -> None:
    """The engine was started on its journal with a config edited since (a symbol dropped, a limit changed): the
    error named the file only, not what differed nor how to go on."""
    path = tmp_path / "j"
    written = {"instruments": [{"symbol": "BTCUSDT", "tick": 1}, {"symbol": "ETHUSDT", "tick": 1}], "risk": {"a": 1}}
    Journal(path, written, durability="none").close()
    edited = {"instruments": [{"symbol": "BTCUSDT", "tick": 1}], "risk": {"a": 2, "b": 0}}
    with pytest.raises(JournalError) as raised:
        Journal(path, edited, durability="none")
    assert str(raised.value) == (
        f'{path} was written by an engine with a different configuration (instruments: ["BTCUSDT","ETHUSDT"] in '
        'the journal, ["BTCUSDT"] now; risk.a: 1 in the journal, 2 now; risk.b: nothing in the journal, 0 now): start '
        "it with the configuration the journal was written with, or move the journal away to start afresh"
    )


def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability="none")
    journal.append(Tick(ts=1))
    journal.close()
    with open(path, "ab") as f:
        f.write(encode(Tick(ts=2))[:7])
    assert read_journal(path)[1] == [Tick(ts=1)]


def test_appending_after_a_torn_line_keeps_the_journal_readable(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability="none")
    journal.append(Tick(ts=1))
    journal.close()
    with open(path, "ab") as f:
        f.write(encode(Tick(ts=2))[:7])  # a crash in the middle of a write
    again = Journal(path, CONFIG, durability="none")
    assert again.count == 1
    again.append(Tick(ts=3))
    again.close()
    assert read_journal(path)[1] == [Tick(ts=1), Tick(ts=3)]


def test_opening_a_journal_that_ends_in_a_torn_line_warns_naming_the_file_and_the_bytes_cut(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability="none")
    journal.append(Tick(ts=1))
    journal.close()
    whole = path.stat().st_size
    with open(path, "ab") as f:
        f.write(encode(Tick(ts=2))[:7])  # a crash in the middle of a write
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("veloz.journal")
    keep = Keep(logging.DEBUG)
    level = logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.DEBUG)  # whatever level an earlier test left on the "veloz" logger
    try:
        Journal(path, CONFIG, durability="none").close()
        Journal(path, CONFIG, durability="none").close()  # nothing more to cut: no second warning
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)
    assert path.stat().st_size == whole
    assert [(r.levelno, r.__dict__.get("path"), r.__dict__.get("torn_tail_bytes")) for r in records] == [
        (logging.WARNING, str(path), 7)
    ]


def test_opening_a_journal_counts_its_lines_without_decoding_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening decoded every line to count them: restarting over weeks of journal took minutes (2.7 s per 100 MiB)
    before recovery replayed a line. Recovery decodes what it replays; opening only counts."""
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability="none")
    for ts in range(1_000):
        journal.append(Tick(ts=ts))
    journal.close()
    decoded: list[bytes] = []
    monkeypatch.setattr(journal_module, "decode", lambda line: decoded.append(line) or decode_line(line))
    reopened = Journal(path, CONFIG, durability="none")
    reopened.close()
    assert reopened.count == 1_000 and decoded == []
    assert [m.ts for m in iter_journal(path, 990)] == list(range(990, 1_000)) and len(decoded) == 10


def test_corrupt_line_in_the_middle_is_a_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "j"
    Journal(path, CONFIG, durability="none").close()
    with open(path, "ab") as f:
        f.write(b"garbage\n" + encode(Tick(ts=1)) + b"\n")
    with pytest.raises(JournalError, match=":2: corrupt journal line"):
        read_journal(path)


def test_a_line_with_a_field_of_the_wrong_type_is_a_journal_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "j"
    Journal(path, CONFIG, durability="none").close()
    with open(path, "ab") as f:
        f.write(encode(Tick(ts=1)) + b'\n{"type":"Tick","ts":"2"}\n')
    with pytest.raises(JournalError) as caught:
        read_journal(path)
    assert str(caught.value) == f"{path}:3: corrupt journal line: Tick: ts must be int, got str '2'"


@pytest.mark.parametrize(
    "content", [b"", b"not json\n", b'{"journal": "other"}\n', b'{"journal": "veloz", "version": 99}\n']
)
def test_file_that_is_not_a_journal_is_rejected(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "j"
    path.write_bytes(content)
    with pytest.raises(JournalError):
        read_journal(path)


def test_missing_journal_is_a_journal_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="does not exist"):
        read_journal(tmp_path / "nope")


def test_snapshot_round_trips_with_its_line_count(tmp_path: Path) -> None:
    path = tmp_path / "j.snapshot"
    write_snapshot(path, 42, b"state")
    assert read_snapshot(path) == (42, b"state")


def test_snapshot_is_replaced_atomically_without_leftovers(tmp_path: Path) -> None:
    path = tmp_path / "j.snapshot"
    write_snapshot(path, 1, b"old")
    inode = os.stat(path).st_ino
    write_snapshot(path, 2, b"new")
    assert read_snapshot(path) == (2, b"new")
    assert os.stat(path).st_ino != inode  # a new file renamed over the old one, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.snapshot"]


def test_missing_snapshot_reads_as_none(tmp_path: Path) -> None:
    assert read_snapshot(tmp_path / "none.snapshot") is None


def test_truncated_snapshot_is_a_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "j.snapshot"
    path.write_bytes(b"\x01\x02")
    with pytest.raises(JournalError, match="truncated"):
        read_snapshot(path)


@pytest.mark.parametrize("where", ["state", "line count", "length"])
def test_a_snapshot_with_a_flipped_bit_is_a_journal_error_naming_it(tmp_path: Path, where: str) -> None:
    """A bit flipped anywhere would restore another balance or replay lines twice: refused, never restored."""
    path = tmp_path / "j.snapshot"
    write_snapshot(path, 42, b"balance 100000")
    data = bytearray(path.read_bytes())
    data[{"state": -1, "line count": 8, "length": 16}[where]] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match=f"snapshot {path} is damaged.*move it away"):
        read_snapshot(path)


def test_a_snapshot_cut_short_is_a_journal_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "j.snapshot"
    write_snapshot(path, 42, b"state" * 100)
    whole = path.read_bytes()
    for size in (len(whole) - 1, 60, 20):
        path.write_bytes(whole[:size])
        with pytest.raises(JournalError, match=f"snapshot {path} is damaged \\(truncated"):
            read_snapshot(path)


def test_a_snapshot_of_the_format_without_a_checksum_reads_as_none(tmp_path: Path) -> None:
    """The line count then the pickled state, as written before the header: not trusted, the journal alone is."""
    path = tmp_path / "j.snapshot"
    path.write_bytes((7).to_bytes(8, "little") + pickle.dumps({"seq": 7}))
    assert read_snapshot(path) is None


def test_a_failed_snapshot_write_keeps_the_last_snapshot_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "j.snapshot"
    write_snapshot(path, 1, b"old")
    with disk_full_after(1000), pytest.raises(OSError):
        write_snapshot(path, 2, b"new" * 1000)
    assert read_snapshot(path) == (1, b"old")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.snapshot"]


def test_hand_to_os_puts_every_line_in_the_file_without_waiting_for_the_flusher(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability="group", group_ms=60_000)  # the flusher will not run in this test
    for ts in range(100):
        journal.append(Tick(ts=ts))
    assert read_journal(path)[1] == []  # still in the journal's buffer: group commit writes from the flusher
    journal.hand_to_os()
    assert read_journal(path)[1] == [Tick(ts=ts) for ts in range(100)]  # what a killed process leaves behind
    journal.close()


def test_group_flusher_writes_lines_within_its_window(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability="group", group_ms=5)
    journal.append(Tick(ts=1))
    deadline = time.monotonic() + 5.0
    while read_journal(path)[1] != [Tick(ts=1)]:
        assert time.monotonic() < deadline, "the flusher never wrote the line"
        time.sleep(0.005)
    journal.close()


def test_a_second_journal_on_the_same_file_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    """Two engines on one journal would interleave their lines, each reserving the same funds: the second is told."""
    path = tmp_path / "j"
    first = Journal(path, CONFIG, durability="none")
    first.append(Tick(ts=1))
    with pytest.raises(JournalError, match=f"{path} is open in another engine"):
        Journal(path, CONFIG, durability="none")
    first.append(Tick(ts=2))
    first.close()
    again = Journal(path, CONFIG, durability="none")
    assert again.count == 2
    again.close()
    assert read_journal(path)[1] == [Tick(ts=1), Tick(ts=2)]


def test_always_a_failed_write_refuses_the_message_and_never_reaches_the_disk_later(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability="always")
    journal.append(Tick(ts=1))
    accepted = [Tick(ts=1)]
    room = 5 * len(encode(Tick(ts=2)) + b"\n") // 2  # two more lines and half of a third
    with disk_full_after(path.stat().st_size + room), pytest.raises(JournalError, match=f"{path} cannot be written"):
        for ts in range(2, 10):
            journal.append(Tick(ts=ts))
            accepted.append(Tick(ts=ts))
    assert read_journal(path)[1] == accepted and path.read_bytes().endswith(b"\n")  # cut back to the last good line
    with pytest.raises(JournalError, match="cannot be written"):  # the disk has room again: still refused
        journal.append(Tick(ts=100))
    with pytest.raises(JournalError, match="cannot be written"):
        journal.close()
    assert read_journal(path)[1] == accepted and journal.count == len(accepted)


def test_group_a_failed_flush_fails_the_journal_for_the_engines_next_call(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability="group", group_ms=1)
    with disk_full_after(path.stat().st_size + 10):
        for ts in range(20):
            journal.append(Tick(ts=ts))  # into the buffer: the flusher's write is the one that fails
        deadline = time.monotonic() + 30.0
        while journal.failure is None:
            assert time.monotonic() < deadline, "the flusher never wrote"
            time.sleep(0.005)
    for call in (lambda: journal.append(Tick(ts=99)), journal.flush, journal.hand_to_os, journal.close):
        with pytest.raises(JournalError, match=f"journal {path} cannot be written"):
            call()
    assert journal.count == 20
    assert read_journal(path)[1] == [Tick(ts=ts) for ts in range(20)]  # what close() could still write


@pytest.mark.parametrize(
    ("semantics", "message"),
    [
        (SEMANTICS + 1, rf"semantics {SEMANTICS + 1} is newer than this VeloZ reads \(1 to {SEMANTICS}\)"),
        ("x", r"semantics 'x' is not a whole number"),
        (None, r"semantics None is not a whole number"),
        (True, r"semantics True is not a whole number"),
        (0, rf"semantics 0 is not one this VeloZ reads \(1 to {SEMANTICS}\)"),
    ],
)
def test_a_journal_of_unknown_semantics_is_refused_naming_it_and_never_appended_to(
    tmp_path: Path, semantics: object, message: str
) -> None:
    """A journal a newer VeloZ wrote (semantics 3) was read under semantics 2's rules, and appended to; a damaged
    value raised a bare ValueError or TypeError (a traceback from ``veloz replay``)."""
    path = tmp_path / "j"
    header = {"journal": "veloz", "version": 1, "semantics": semantics, "config": CONFIG}
    path.write_bytes(orjson.dumps(header) + b"\n" + encode(Tick(ts=1)) + b"\n")
    before = path.read_bytes()
    with pytest.raises(JournalError, match=message):
        read_journal(path)
    with pytest.raises(JournalError, match=message):
        Journal(path, CONFIG, durability="none")
    assert path.read_bytes() == before


@pytest.mark.parametrize("durability", ["always", "group"])
@pytest.mark.parametrize("then", ["killed", "closed"])
def test_a_failure_after_the_last_hand_to_os_drops_the_lines_of_the_refused_steps(
    tmp_path: Path, durability: str, then: str
) -> None:
    """A writer that acknowledges with ``hand_to_os`` (the actors) applied a step, and its ``hand_to_os`` (or an
    append of the step) failed: the caller was refused. The step's lines that made it to the file anyway (a write the
    full disk cut short after whole lines, or the buffer ``close`` wrote once there was room) were replayed after the
    restart: an order its client was told failed went to the venue."""
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability=durability, group_ms=60_000)  # type: ignore[arg-type]
    journal.append(Tick(ts=1))
    journal.hand_to_os()  # acknowledged
    line = len(encode(Tick(ts=2)) + b"\n")
    with disk_full_after(path.stat().st_size + 2 * line + line // 2), pytest.raises(JournalError):
        for ts in range(2, 10):  # one step of several lines (a batch of commands): refused as a whole
            journal.append(Tick(ts=ts))
        journal.hand_to_os()
    assert read_journal(path)[1] == [Tick(ts=1)]  # a killed process leaves this
    if then == "closed":  # the disk has room again
        with pytest.raises(JournalError, match="after its line 1;"):
            journal.close()
        assert read_journal(path)[1] == [Tick(ts=1)] and path.read_bytes().endswith(b"\n")
