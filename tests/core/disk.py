"""A full disk for tests: the real write path fails, with no stand-in for the file."""

from __future__ import annotations

import contextlib
import resource
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def disk_full_after(size: int) -> Iterator[None]:
    """Every file this process writes beyond ``size`` bytes fails (EFBIG, as a full disk's ENOSPC) until the block
    ends. Process-wide: keep the block to the writes under test."""
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the signal's default would kill the process
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, limits[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
