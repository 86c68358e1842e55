"""The OMS actor's queries beside the order path: an order read from the order history file holds no one's orders up."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from veloz_actors.actors.api import start_local
from veloz_actors.messages import CancelOrder, OrderAccepted, OrderRejected

from .helpers import file_config, wait_for

pytestmark = pytest.mark.usefixtures("ray_runtime")


def _writer_once_read(path: Path) -> int | None:
    """The write end of the pipe ``path`` once a reader has it open (a reader waiting in ``open`` counts), else None;
    opening it lets that reader on to its ``read``, which waits for what the test writes."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader yet
            return None
        raise
    os.set_blocking(fd, True)
    return fd


def test_a_query_reading_the_order_history_file_does_not_hold_up_orders(tmp_path: Path) -> None:
    """A query for an order evicted to the history file reads that file (a line per order evicted: 0.6 s for a
    million, seconds after weeks of trading) inside the OMS, the one sequencer: every client's orders and cancels,
    and the venues' reports, waited for it. Here the file is a pipe that gives nothing until the test writes it: an
    order placed meanwhile was not answered until then."""
    config = file_config()
    config = config.model_copy(
        update={"journal": config.journal.model_copy(update={"retain_closed_seconds": 0.001})}
    )  # orders closed a millisecond ago leave memory at the next eviction (every 4096 kernel steps)
    engine = start_local(config, name="history-query", journal_dir=tmp_path)
    try:
        [rejected] = engine.place_order("BTCUSDT", "BUY", "1000000", "1", client_order_id="old-1")
        assert type(rejected) is OrderRejected  # closed at once
        steps = [CancelOrder(client_order_id=f"none-{i}", account_id="main", ts=time.time_ns()) for i in range(4100)]
        engine.submit_many(steps)  # kernel steps: an eviction among them
        history = tmp_path / "oms.journal.orders"
        [record] = engine.query("old-1")  # from the history file
        assert record["status"] == "REJECTED" and history.exists()
        content = history.read_bytes()
        history.rename(tmp_path / "history.bytes")
        os.mkfifo(history)  # a reader of it waits until the test writes
        answers: list = []
        reader = threading.Thread(target=lambda: answers.append(engine.query("old-1")), daemon=True)
        reader.start()
        pipe = wait_for(lambda: _writer_once_read(history), what="the OMS to read the history file")
        try:
            command = engine.order_command("BTCUSDT", "BUY", "0.001", "1000", client_order_id="new-1")
            [events] = engine.complete([engine.submit_async(command)], timeout=30.0)  # the query still reads
            assert type(events[0]) in (OrderAccepted, OrderRejected) and events[0].client_order_id == "new-1"
            os.write(pipe, content)
        finally:
            os.close(pipe)  # the end of the file for the query
        reader.join(timeout=30.0)
        assert [[r["status"] for r in a] for a in answers] == [["REJECTED"]]
    finally:
        engine.shutdown()
