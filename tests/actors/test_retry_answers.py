"""The OMS's answers to retried commands, on a bare kernel: kept answers come back exactly, and a retry whose answer
is no longer kept gets an error that says to query, never an empty answer that reads as success."""

from __future__ import annotations

from pathlib import Path

import pytest

from veloz_actors import JournalError
from veloz_actors.actors.oms import Answers
from veloz_actors.actors.supervisor import journal_problems
from veloz_actors.core.kernel import TradingKernel
from veloz_actors.fixed import SCALE
from veloz_actors.messages import (
    BookTop,
    CancelOrder,
    Error,
    OrderAccepted,
    OrderType,
    PlaceOrder,
    ResetCircuitBreaker,
    Side,
)

from ..core.disk import disk_full_after
from .helpers import file_config


def _kernel() -> TradingKernel:
    kernel = TradingKernel(file_config().engine_config().kernel_config())
    kernel.apply(
        BookTop(symbol="BTCUSDT", bid_price=60_000 * SCALE, bid_qty=SCALE, ask_price=60_001 * SCALE, ask_qty=SCALE,
                update_id=1, ts_event=1, ts_recv=1)
    )  # fmt: skip
    return kernel


def _limit(cid: str, ts: int) -> PlaceOrder:
    return PlaceOrder(client_order_id=cid, symbol="BTCUSDT", side=Side.BUY, order_type=OrderType.LIMIT,
                      qty=SCALE // 1000, price=59_000 * SCALE, ts=ts)  # fmt: skip


def _apply(answers: Answers, kernel: TradingKernel, command) -> list:
    answer = answers.retried(command, kernel)
    if answer is None:
        answer = kernel.apply(command)
        answers.keep(command, answer)
    return answer


def test_a_kept_answer_comes_back_and_a_lost_one_is_an_error_naming_the_order():
    kernel, answers = _kernel(), Answers(limit=2)
    first, second, third = _limit("a", 2), _limit("b", 3), _limit("c", 4)
    answer_first = _apply(answers, kernel, first)
    assert [type(e) for e in answer_first][:1] == [OrderAccepted]
    _apply(answers, kernel, second)
    assert _apply(answers, kernel, first) is answer_first  # kept: the very events
    _apply(answers, kernel, third)  # the first answer leaves (limit 2)
    (lost,) = _apply(answers, kernel, first)
    assert type(lost) is Error and lost.code == "RETRY_OUTCOME_UNKNOWN" and "'a'" in lost.message
    assert (answers.answered, answers.unknown) == (1, 1)
    assert len(kernel.oms.open_orders()) == 3  # nothing placed twice


def test_a_new_command_with_a_used_id_and_other_commands_are_applied_not_answered_from_memory():
    kernel, answers = _kernel(), Answers(limit=10)
    _apply(answers, kernel, _limit("a", 2))
    assert answers.retried(_limit("a", 3), kernel) is None  # another order with the id: the kernel rejects it
    cancel = CancelOrder(client_order_id="a", ts=5)
    assert answers.retried(cancel, kernel) is None
    assert kernel.applied_before(cancel) is False
    _apply(answers, kernel, cancel)
    assert kernel.applied_before(cancel) is True
    assert answers.retried(cancel, kernel) == []  # a cancel on its way answers nothing, then and on a retry
    assert answers.retried(ResetCircuitBreaker(ts=6), kernel) is None


def test_an_order_refused_because_its_journal_failed_stays_refused_on_retry_and_after_the_restart(tmp_path: Path):
    """The disk filled while the OMS applied an order: its step was applied in memory, then handing the journal's
    line to the OS failed and the client got the JournalError. Its retry was answered from the kept answer with
    OrderAccepted, and the line the journal's close still wrote brought the order back after the restart, SUBMITTED
    and sent to the venue: an order its client was told failed would trade."""
    config = file_config().engine_config().kernel_config()
    path = tmp_path / "oms.journal"
    kernel, _ = TradingKernel.recover(config, path, durability="group")
    answers = Answers(limit=10)
    _apply(answers, kernel, _limit("a", 2))
    kernel.journal.hand_to_os()  # the OMS's step: handed to the OS, then answered
    refused = _limit("b", 3)
    with disk_full_after(path.stat().st_size + 10):
        _apply(answers, kernel, refused)  # into the journal's buffer, applied
        with pytest.raises(JournalError, match="cannot be written"):
            kernel.journal.hand_to_os()  # the OMS raises this to the client
    with pytest.raises(JournalError, match="cannot be written"):  # the client's retry: refused the same way
        answers.retried(refused, kernel)
    with pytest.raises(JournalError):
        kernel.close()  # the engine stops (the disk has room again)
    recovered, _ = TradingKernel.recover(config, path, durability="none")
    assert recovered.oms.get("main", "a") is not None and recovered.oms.get("main", "b") is None
    assert [r.command.client_order_id for r in recovered.pending_requests()] == ["a"]
    recovered.close()


def test_an_oms_whose_journal_failed_is_a_problem_in_status(tmp_path: Path):
    """An OMS whose journal cannot be written refuses every order, while Ray sees it alive: STATUS named no problem
    (``veloz status`` exited 0, the monitoring page was green)."""
    config = file_config().engine_config().kernel_config()
    path = tmp_path / "oms.journal"
    kernel, _ = TradingKernel.recover(config, path, durability="always")
    assert kernel.status()["journal_error"] is None and journal_problems("e", {"oms": kernel.status()}) == []
    with disk_full_after(path.stat().st_size + 10), pytest.raises(JournalError):
        kernel.apply(_limit("a", 2))
    [problem] = journal_problems("e", {"oms": kernel.status(), "bus": None})
    assert problem.startswith("engine 'e': actor 'oms' refuses everything it is sent: journal ")
    assert f"{path} cannot be written" in problem and "free the disk and restart the engine" in problem
    with pytest.raises(JournalError):
        kernel.close()
