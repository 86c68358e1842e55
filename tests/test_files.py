"""Files replaced whole (``veloz_actors._files.write_atomically``): reports, the instrument cache, a search's files.

Written beside their names and renamed, they were never torn by a crash; but without a flush to the disk a power loss
could leave the new name on an empty file (the data still in the page cache), the report or cache lost."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from veloz_actors._files import write_atomically


def test_every_file_is_whole_under_its_name_and_no_temporary_is_left(tmp_path: Path) -> None:
    text = "équité,€\n" * 100_000  # UTF-8 whatever the locale
    data = bytes(range(256)) * 1000
    (tmp_path / "report.html").write_text("old")
    write_atomically({tmp_path / "report.html": text, tmp_path / "trades.bin": data})
    assert (tmp_path / "report.html").read_bytes() == text.encode("utf-8")
    assert (tmp_path / "trades.bin").read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "trades.bin"]


def test_the_data_reach_the_disk_before_the_rename_and_the_rename_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[str] = []
    fsync, replace = os.fsync, os.replace

    def recorded_fsync(fd: int) -> None:
        steps.append("fsync directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        fsync(fd)

    def recorded_replace(src: Any, dst: Any) -> None:
        steps.append("rename")
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded_replace)
    write_atomically({tmp_path / "a.json": "{}", tmp_path / "b.csv": "x\n"})
    assert steps == ["fsync file", "fsync file", "rename", "rename", "fsync directory"]


def test_a_failed_write_changes_no_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "metrics.json").write_text("old metrics")

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_atomically({tmp_path / "metrics.json": "new", tmp_path / "equity.csv": "new"})
    assert (tmp_path / "metrics.json").read_text() == "old metrics"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError):  # the second file's folder does not exist
        write_atomically({tmp_path / "metrics.json": "new", tmp_path / "gone" / "equity.csv": "new"})
    assert (tmp_path / "metrics.json").read_text() == "old metrics"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
