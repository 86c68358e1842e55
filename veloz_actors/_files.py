"""Files replaced whole: one rule for every file VeloZ rewrites in place (backtest reports, a search's report and
results, the exchangeInfo cache).

Each file is written beside its name (``NAME.tmp``) and flushed to the disk, then renamed over the old one, and the
folder is flushed so that the rename is on the disk too. A reader sees the old file or the new, never half; a crash
or a power loss leaves one of them whole (a rename alone could leave the new name on an empty file, its data still
in memory); a failed write (a full disk) changes nothing and leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["flush_folder", "write_atomically"]


def write_atomically(files: Mapping[Path, str | bytes]) -> None:
    """Replace each file with its data (text as UTF-8, whatever the locale): every one is first written whole beside
    it (``NAME.tmp``) and flushed (``fsync``), then each takes its name (``os.replace``), then their folders are
    flushed. A crash, a power loss or a failed write leaves the previous files whole or the new ones whole, never a
    torn or empty page, and a failed write changes none of them (its temporary files are removed)."""
    temporaries = {path: path.with_name(path.name + ".tmp") for path in files}
    try:
        for path, data in files.items():
            with open(temporaries[path], "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
        for path, tmp in temporaries.items():
            os.replace(tmp, path)
    except BaseException:
        for tmp in temporaries.values():
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    for folder in dict.fromkeys(path.parent for path in files):
        flush_folder(folder)


def flush_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to the disk, where the system allows it (not on Windows, nor on some
    network filesystems): the files are in place either way."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
