"""Every log record of a block, for the tests that search them all for secrets."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from veloz_actors.logs import ROOT_LOGGER


@contextmanager
def every_log_record() -> Iterator[list[logging.LogRecord]]:
    """The records of every logger, DEBUG included, emitted inside the ``with`` block. For the block the root logger's
    level is lowered and the ``veloz`` logger passes its records on to it (a ``configure_logging`` earlier in the
    process, an in-process CLI test's, stops them there and may raise its level); both are restored after."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    root = logging.getLogger()
    veloz = logging.getLogger(ROOT_LOGGER)
    before = root.level, veloz.level, veloz.propagate
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    veloz.setLevel(logging.DEBUG)
    veloz.propagate = True
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(before[0])
        veloz.setLevel(before[1])
        veloz.propagate = before[2]
