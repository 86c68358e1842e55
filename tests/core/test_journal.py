"""The journal: header, durability, torn tails, config mismatch, atomic snapshots."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from veloz_actors import JournalError
from veloz_actors.core.journal import Journal, read_journal, read_snapshot, write_snapshot
from veloz_actors.messages import Tick, encode

CONFIG = {"name": "test", "instruments": [1, 2]}


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_new_journal_starts_with_a_header(tmp_path: Path) -> None:
    path = tmp_path / "j"
    Journal(path, CONFIG, durability="none").close()
    assert orjson.loads(_lines(path)[0]) == {"journal": "veloz", "version": 1, "semantics": 2, "config": CONFIG}


def test_messages_are_appended_one_encoded_line_each(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability="none")
    journal.append(Tick(ts=1))
    journal.append(Tick(ts=2))
    journal.close()
    assert _lines(path)[1:] == [encode(Tick(ts=1)) + b"\n", encode(Tick(ts=2)) + b"\n"]
    assert read_journal(path) == (
        {"journal": "veloz", "version": 1, "semantics": 2, "config": CONFIG},
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


def test_reopening_with_another_config_is_a_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "j"
    Journal(path, CONFIG, durability="none").close()
    with pytest.raises(JournalError, match="different configuration"):
        Journal(path, {"name": "other"}, durability="none")


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
    import time

    path = tmp_path / "j"
    journal = Journal(path, CONFIG, durability="group", group_ms=5)
    journal.append(Tick(ts=1))
    deadline = time.monotonic() + 5.0
    while read_journal(path)[1] != [Tick(ts=1)]:
        assert time.monotonic() < deadline, "the flusher never wrote the line"
        time.sleep(0.005)
    journal.close()
