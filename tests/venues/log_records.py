"""Every log record of a block, for the tests that search them all for secrets."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def every_log_record() -> Iterator[list[logging.LogRecord]]:
    """The records of every logger, DEBUG included, emitted inside the ``with`` block (the root logger's level is
    lowered for the block and restored after)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
