"""The trading kernel on its own: commands in, venue requests out, execution reports applied exactly once.

These tests play the venue by hand (the reports a remote venue could send, in any order, twice, late or for orders
the kernel never sent), which the in-process SimVenue never does.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from veloz_actors import JournalError
from veloz_actors.core import kernel as kernel_module
from veloz_actors.core.journal import read_snapshot
from veloz_actors.core.kernel import KernelConfig, TradingKernel, replay_kernel
from veloz_actors.messages import (
    AccountUpdated,
    CancelAllOrders,
    CircuitBreakerTripped,
    Error,
    HaltTrading,
    Liquidity,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    RejectReason,
    ResetCircuitBreaker,
    SubmitCancel,
    SubmitOrder,
    Tick,
    VenueCancelRejected,
    VenueOrderAccepted,
    VenueOrderCancelled,
    VenueOrderFilled,
    VenueOrderRejected,
    VenueOrderStatusUnknown,
)
from veloz_actors.testing import cancel, d, encoded, engine_config, place

from .disk import disk_full_after

T0 = 1_700_000_000_000_000_000
S = OrderStatus


def _kernel(**kwargs) -> TradingKernel:
    config = engine_config(**kwargs).kernel_config()
    return TradingKernel(KernelConfig(**{**_fields(config), "reference_prices": {"BTCUSDT": d("60000")}}))


def _fields(config: KernelConfig) -> dict:
    return {f: getattr(config, f) for f in KernelConfig.__dataclass_fields__}


def _accepted(cid: str, account: str = "main", ts: int = T0) -> VenueOrderAccepted:
    return VenueOrderAccepted(venue="X", client_order_id=cid, account_id=account, symbol="BTCUSDT",
                              venue_order_id=f"v-{cid}", ts=ts)  # fmt: skip


def _fill(cid: str, trade_id: int, qty: str, price: str = "60000", fee: str = "0.6", leaves: str = "0",
          account: str = "main", ts: int = T0) -> VenueOrderFilled:  # fmt: skip
    return VenueOrderFilled(venue="X", client_order_id=cid, account_id=account, symbol="BTCUSDT",
                            venue_order_id=f"v-{cid}", trade_id=trade_id, price=d(price), qty=d(qty), fee=d(fee),
                            fee_asset="USDT", liquidity=Liquidity.MAKER, leaves_qty=d(leaves), ts=ts)  # fmt: skip


def test_a_placed_order_is_submitted_funded_and_sent_to_the_venue_once() -> None:
    kernel = _kernel()
    events = kernel.apply(place("b1", "BUY", "0.01", "60000"))
    assert [type(e) for e in events] == [OrderAccepted, AccountUpdated]
    assert kernel.oms.get("main", "b1").status is S.SUBMITTED
    [request] = kernel.take_outbox()
    assert type(request) is SubmitOrder and request.command.client_order_id == "b1"
    assert request.limit == d("60000")
    assert kernel.take_outbox() == []
    assert kernel.ledger.locked("main", "USDT") == d("600") + d("0.6")  # notional + the maximum fee


def test_reports_drive_the_order_to_filled_and_settle_exactly() -> None:
    kernel = _kernel()
    kernel.apply(place("b1", "BUY", "0.01", "60000"))
    assert kernel.apply(_accepted("b1")) == []
    assert kernel.oms.get("main", "b1").status is S.ACCEPTED
    events = kernel.apply(_fill("b1", 1, "0.004", fee="0.24", leaves="0.006"))
    assert [type(e) for e in events][:1] == [OrderFilled]
    assert kernel.oms.get("main", "b1").status is S.PARTIALLY_FILLED
    kernel.apply(_fill("b1", 2, "0.006", fee="0.36"))
    order = kernel.oms.get("main", "b1")
    assert order.status is S.FILLED and order.filled == d("0.01") and order.reserved == 0
    assert kernel.ledger.balances("main")["USDT"] == (d("100000") - d("600") - d("0.6"), 0)
    assert kernel.ledger.balances("main")["BTC"] == (d("2.01"), 0)
    assert kernel.ledger.conserved()


def test_a_fill_sent_twice_is_booked_once() -> None:
    kernel = _kernel()
    kernel.apply(place("b1", "BUY", "0.01", "60000"))
    kernel.apply(_accepted("b1"))
    first = kernel.apply(_fill("b1", 7, "0.004", leaves="0.006"))
    before = (kernel.ledger.export(), kernel.oms.export())
    assert first and kernel.apply(_fill("b1", 7, "0.004", leaves="0.006")) == []
    assert (kernel.ledger.export(), kernel.oms.export()) == before


def test_a_fill_may_arrive_before_the_acceptance() -> None:
    kernel = _kernel()
    kernel.apply(place("b1", "BUY", "0.01", "60000"))
    kernel.apply(_fill("b1", 1, "0.01"))
    assert kernel.oms.get("main", "b1").status is S.FILLED
    assert kernel.apply(_accepted("b1")) == []  # late: nothing changes
    assert kernel.oms.get("main", "b1").status is S.FILLED


def test_a_report_for_an_unknown_order_is_an_error_event_and_changes_nothing() -> None:
    kernel = _kernel()
    before = kernel.ledger.export()
    for report in (_accepted("ghost"), _fill("ghost", 1, "0.01")):
        [error] = kernel.apply(report)
        assert type(error) is Error and error.code == "UNKNOWN_ORDER_REPORT" and "ghost" in error.message
    assert kernel.ledger.export() == before


def test_a_venue_rejection_releases_the_funds() -> None:
    kernel = _kernel()
    kernel.apply(place("p1", "BUY", "0.01", "60000", tif="POST_ONLY"))
    events = kernel.apply(VenueOrderRejected(venue="X", client_order_id="p1", account_id="main", symbol="BTCUSDT",
                                             reason=RejectReason.WOULD_TAKE_LIQUIDITY, detail="crosses", ts=T0))  # fmt: skip
    [rejected] = [e for e in events if type(e) is OrderRejected]
    assert rejected.reason is RejectReason.WOULD_TAKE_LIQUIDITY
    assert kernel.oms.get("main", "p1").status is S.REJECTED
    assert kernel.ledger.locked("main", "USDT") == 0


def test_cancel_goes_through_pending_cancel_and_a_fill_in_between_still_counts() -> None:
    kernel = _kernel()
    kernel.apply(place("b1", "BUY", "0.01", "60000"))
    kernel.take_outbox()
    kernel.apply(_accepted("b1"))
    assert kernel.apply(cancel("b1")) == []
    assert kernel.oms.get("main", "b1").status is S.PENDING_CANCEL
    [request] = kernel.take_outbox()
    assert type(request) is SubmitCancel
    [again] = kernel.apply(cancel("b1", ts=T0 + 1))
    assert again.reason is RejectReason.CANCEL_PENDING
    kernel.apply(_fill("b1", 1, "0.004", leaves="0.006"))
    assert kernel.oms.get("main", "b1").status is S.PENDING_CANCEL
    events = kernel.apply(VenueOrderCancelled(venue="X", client_order_id="b1", account_id="main", symbol="BTCUSDT",
                                              ts=T0 + 2))  # fmt: skip
    [cancelled] = [e for e in events if type(e) is OrderCancelled]
    assert cancelled.filled_qty == d("0.004")
    assert kernel.ledger.locked("main", "USDT") == 0
    assert kernel.ledger.conserved()


def test_a_rejected_cancel_puts_the_order_back_where_it_was() -> None:
    kernel = _kernel()
    kernel.apply(place("b1", "BUY", "0.01", "60000"))
    kernel.apply(_accepted("b1"))
    kernel.apply(_fill("b1", 1, "0.004", leaves="0.006"))
    kernel.apply(cancel("b1"))
    kernel.apply(VenueCancelRejected(venue="X", client_order_id="b1", account_id="main", symbol="BTCUSDT",
                                     reason=RejectReason.UNKNOWN_ORDER, detail="busy", ts=T0))  # fmt: skip
    assert kernel.oms.get("main", "b1").status is S.PARTIALLY_FILLED


def test_an_unknown_outcome_keeps_the_funds_until_a_report_settles_it() -> None:
    kernel = _kernel()
    kernel.apply(place("b1", "BUY", "0.01", "60000"))
    [error] = kernel.apply(VenueOrderStatusUnknown(venue="X", client_order_id="b1", account_id="main",
                                                   symbol="BTCUSDT", detail="timeout", ts=T0))  # fmt: skip
    assert error.code == "ORDER_STATUS_UNKNOWN"
    assert kernel.oms.get("main", "b1").status is S.UNKNOWN
    assert kernel.ledger.locked("main", "USDT") > 0
    kernel.apply(_fill("b1", 1, "0.01"))
    assert kernel.oms.get("main", "b1").status is S.FILLED and kernel.ledger.locked("main", "USDT") == 0


def test_an_order_known_again_after_an_unknown_outcome_keeps_its_fills() -> None:
    kernel = _kernel()
    kernel.apply(place("b1", "BUY", "0.01", "60000"))
    kernel.apply(_accepted("b1"))
    kernel.apply(_fill("b1", 1, "0.004", leaves="0.006"))
    kernel.apply(VenueOrderStatusUnknown(venue="X", client_order_id="b1", account_id="main", symbol="BTCUSDT",
                                         detail="answer lost", ts=T0 + 1))  # fmt: skip
    assert kernel.oms.get("main", "b1").status is S.UNKNOWN
    kernel.apply(_accepted("b1", ts=T0 + 2))  # the venue says it is still working
    order = kernel.oms.get("main", "b1")
    assert order.status is S.PARTIALLY_FILLED and order.filled == d("0.004")
    kernel.apply(_fill("b1", 2, "0.006"))
    assert kernel.oms.get("main", "b1").status is S.FILLED and kernel.ledger.locked("main", "USDT") == 0


def test_a_venue_may_refuse_an_order_whose_cancel_is_pending() -> None:
    kernel = _kernel()
    kernel.apply(place("b1", "BUY", "0.01", "60000"))
    kernel.apply(cancel("b1"))  # sent before the venue answered the order
    assert kernel.oms.get("main", "b1").status is S.PENDING_CANCEL
    events = kernel.apply(VenueOrderRejected(venue="X", client_order_id="b1", account_id="main", symbol="BTCUSDT",
                                             reason=RejectReason.VENUE_REJECTED, detail="refused", ts=T0 + 1))  # fmt: skip
    assert [type(e) for e in events if type(e) is OrderRejected] == [OrderRejected]
    assert kernel.oms.get("main", "b1").status is S.REJECTED and kernel.ledger.locked("main", "USDT") == 0


def test_a_report_the_order_state_cannot_take_is_an_error_never_a_crash() -> None:
    kernel = _kernel()
    kernel.apply(place("b1", "BUY", "0.01", "60000"))
    order = kernel.oms.get("main", "b1")
    before = kernel.ledger.export()

    def illegal(report, events):  # the safety net: whatever a report's handler cannot do is said, not raised
        order.transition(S.NEW, report.ts)  # SUBMITTED -> NEW: not in the table

    kernel._handlers[VenueOrderAccepted] = illegal
    [error] = kernel.apply(_accepted("b1"))
    assert error.code == "ILLEGAL_REPORT" and "b1" in error.message
    assert order.status is S.SUBMITTED and kernel.ledger.export() == before


def test_halt_rejects_risk_increasing_orders_until_reset_and_cancel_all_cancels_every_open_order() -> None:
    kernel = _kernel()
    kernel.apply(place("b1", "BUY", "0.01", "59000"))
    kernel.apply(place("b2", "BUY", "0.01", "59000", account="other"))
    kernel.take_outbox()
    [tripped, *_] = kernel.apply(HaltTrading(reason="risk monitor: drawdown", ts=T0))
    assert type(tripped) is CircuitBreakerTripped
    [rejected] = kernel.apply(place("b3", "BUY", "0.01", "59000", ts=T0 + 1))
    assert rejected.reason is RejectReason.CIRCUIT_BREAKER
    kernel.apply(CancelAllOrders(ts=T0 + 2))
    assert sorted(r.client_order_id for r in kernel.take_outbox()) == ["b1", "b2"]
    # an account's reset lifts its own breaker only: the engine-wide halt stays until it is reset itself
    events = kernel.apply(ResetCircuitBreaker(account_id="main", ts=T0 + 3))
    assert [e.code for e in events if type(e) is Error] == ["ENGINE_HALTED"]
    [still] = kernel.apply(place("b4", "BUY", "0.01", "59000", ts=T0 + 4))
    assert still.reason is RejectReason.CIRCUIT_BREAKER
    assert kernel.status()["engine_halt"] == "risk monitor: drawdown"
    assert set(kernel.status()["circuit_breaker"]) == {"main", "other"}
    kernel.apply(ResetCircuitBreaker(account_id="*", ts=T0 + 5))
    assert kernel.status()["engine_halt"] is None and kernel.status()["circuit_breaker"] == {}
    assert type(kernel.apply(place("b5", "BUY", "0.01", "59000", ts=T0 + 6))[0]) is OrderAccepted


def test_an_engine_wide_halt_covers_an_account_opened_after_it_and_keeps_an_accounts_own_breaker() -> None:
    kernel = _kernel()
    kernel.apply(HaltTrading(account_id="main", reason="its own", ts=T0))
    kernel.apply(HaltTrading(account_id="*", reason="engine", ts=T0 + 1))
    assert kernel.status()["circuit_breaker"] == {"main": "its own", "other": "engine"}
    kernel.apply(ResetCircuitBreaker(account_id="*", ts=T0 + 2))  # the engine's reset leaves main's own breaker
    assert kernel.status()["circuit_breaker"] == {"main": "its own"}
    [rejected] = kernel.apply(place("b1", "BUY", "0.01", "59000", ts=T0 + 3))
    assert rejected.reason is RejectReason.CIRCUIT_BREAKER and "its own" in rejected.detail
    assert type(kernel.apply(place("b2", "BUY", "0.01", "59000", account="other", ts=T0 + 4))[0]) is OrderAccepted


def test_closed_orders_leave_memory_for_the_history_file_and_queries_still_find_them(tmp_path: Path) -> None:
    config = KernelConfig(**{**_fields(_kernel().config), "retain_closed_ns": 1_000, "snapshot_every": 10**9})
    kernel = TradingKernel(config, journal_path=tmp_path / "k.journal", durability="none")
    for i in range(3):
        kernel.apply(place(f"c{i}", "BUY", "0.01", "59000", ts=T0 + i))
        kernel.apply(cancel(f"c{i}", ts=T0 + i))
        kernel.apply(VenueOrderCancelled(venue="X", client_order_id=f"c{i}", account_id="main", symbol="BTCUSDT",
                                         ts=T0 + i))  # fmt: skip
    assert kernel.evict(T0 + 10_000) == 3
    assert kernel.oms.get("main", "c0") is None and len(kernel.oms) == 0
    history = kernel.order_history("main", "c1")
    assert [h["status"] for h in history] == ["CANCELLED"]
    [late] = kernel.apply(_fill("c1", 9, "0.01"))  # a report for an evicted order: reported, not booked
    assert late.code == "UNKNOWN_ORDER_REPORT"
    kernel.close()


def _evicted_kernel(tmp_path: Path, n: int) -> TradingKernel:
    config = KernelConfig(**{**_fields(_kernel().config), "retain_closed_ns": 1_000, "snapshot_every": 10**9})
    kernel = TradingKernel(config, journal_path=tmp_path / "k.journal", durability="none")
    for i in range(n):
        kernel.apply(place(f"c{i}", "BUY", "0.01", "59000", ts=T0 + i))
        kernel.apply(cancel(f"c{i}", ts=T0 + i))
        kernel.apply(VenueOrderCancelled(venue="X", client_order_id=f"c{i}", account_id="main", symbol="BTCUSDT",
                                         ts=T0 + i))  # fmt: skip
    assert kernel.evict(T0 + 10_000) == n
    return kernel


def test_a_query_reads_the_order_history_file_only_for_an_id_that_can_be_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While every evicted id is still known, an unknown id is answered from memory (the file can be large and the
    query runs on the engine's thread); once older ids were let go, the file is read, and still finds them."""
    kernel = _evicted_kernel(tmp_path / "all", 3)
    reads = []
    read = kernel.order_history
    monkeypatch.setattr(kernel, "order_history", lambda *a: reads.append(a) or read(*a))
    assert kernel.order_record("main", "nobody") is None and reads == []
    assert kernel.order_record("main", "c1")["status"] == "CANCELLED" and reads == [("main", "c1")]
    kernel.close()

    monkeypatch.setattr(kernel_module, "_EVICTED_IDS", 2)
    kernel = _evicted_kernel(tmp_path / "some", 3)
    assert len(kernel.evicted_ids) == 2
    assert kernel.order_record("main", "c0")["status"] == "CANCELLED"  # let go from memory, found in the file
    assert kernel.order_record("main", "c") is None  # a prefix of every id is not an id
    kernel.close()


def test_an_evicted_orders_client_order_id_stays_taken(tmp_path: Path) -> None:
    """A retry (or a reused id) after the order left memory is a duplicate, as before: never a second order, and
    never one a venue that still remembers the id would ignore, leaving its funds locked."""
    config = KernelConfig(**{**_fields(_kernel().config), "retain_closed_ns": 1_000, "snapshot_every": 10**9})
    kernel = TradingKernel(config, journal_path=tmp_path / "k.journal", durability="none")
    first = place("c1", "BUY", "0.01", "59000", ts=T0)
    kernel.apply(first)
    kernel.apply(cancel("c1", ts=T0))
    kernel.apply(VenueOrderCancelled(venue="X", client_order_id="c1", account_id="main", symbol="BTCUSDT", ts=T0))
    kernel.take_outbox()
    assert kernel.evict(T0 + 10_000) == 1 and kernel.oms.get("main", "c1") is None
    for again in (first, place("c1", "BUY", "0.02", "58000", ts=T0 + 20_000)):
        [rejected] = kernel.apply(again)
        assert type(rejected) is OrderRejected and rejected.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
        assert "closed earlier" in rejected.detail
    assert kernel.take_outbox() == [] and kernel.ledger.locked("main", "USDT") == 0
    assert type(kernel.apply(place("c1", "BUY", "0.01", "59000", account="other", ts=T0 + 30_000))[0]) is OrderAccepted
    kernel.close()


def _closing(i: int) -> list:
    """Three kernel steps that leave one closed order: placed, cancelled, the venue's cancel report."""
    ts = T0 + i * 10_000
    return [place(f"c{i}", "BUY", "0.01", "59000", ts=ts), cancel(f"c{i}", ts=ts),
            VenueOrderCancelled(venue="X", client_order_id=f"c{i}", account_id="main", symbol="BTCUSDT", ts=ts)]  # fmt: skip


def _evicting_config(snapshot_every: int) -> KernelConfig:
    return KernelConfig(**{**_fields(_kernel().config), "retain_closed_ns": 1_000, "snapshot_every": snapshot_every})


def _run(config: KernelConfig, journal: Path, messages: list) -> TradingKernel:
    kernel = TradingKernel(config, journal_path=journal, durability="none")
    for message in messages:
        kernel.apply(message)
    kernel.close()
    return kernel


@pytest.mark.parametrize("snapshot_every", [10**9, 20])
def test_recovery_leaves_the_order_history_as_one_uninterrupted_run_leaves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snapshot_every: int
) -> None:
    """Every restart replays the evictions after the snapshot (all of them without one): each order is in the
    history file once, whatever the run wrote after its snapshot before it stopped (here: half a record)."""
    monkeypatch.setattr(kernel_module, "_EVICT_EVERY", 8)  # evictions at steps 8, 16, 24, 32; a snapshot at 20
    config = _evicting_config(snapshot_every)
    messages = [m for i in range(12) for m in _closing(i)]
    _run(config, tmp_path / "once" / "k.journal", messages)
    expected = (tmp_path / "once" / "k.journal.orders").read_bytes()
    journal = tmp_path / "k.journal"
    kernel = _run(config, journal, messages)
    history = Path(str(journal) + ".orders")
    assert history.read_bytes() == expected and kernel.evicted == 10
    with open(history, "ab") as torn:
        torn.write(expected[:50])  # a crash in the middle of an eviction's write
    for _ in range(3):
        recovered, _ = TradingKernel.recover(config, journal, durability="none")
        recovered.close()
        assert history.read_bytes() == expected
    assert recovered.oms.export() == kernel.oms.export() and recovered.evicted == kernel.evicted
    assert [h["client_order_id"] for h in recovered.order_history("main")] == [f"c{i}" for i in range(10)]


def _recovery_peak_bytes(folder: Path, ticks: int) -> int:
    """Peak memory allocated while recovering a kernel whose snapshot covers ``ticks`` Tick lines (an order before
    them, its cancel after the snapshot)."""
    config = KernelConfig(**{**_fields(_kernel().config), "snapshot_every": ticks + 1})
    journal = folder / "k.journal"
    kernel = _run(config, journal, [place("b1", "BUY", "0.01", "59000"), *(Tick(ts=T0 + i) for i in range(ticks)),
                                    cancel("b1")])  # fmt: skip
    assert read_snapshot(Path(str(journal) + ".snapshot"))[0] == ticks + 1  # type: ignore[index]
    tracemalloc.start()
    try:
        recovered, _ = TradingKernel.recover(config, journal, durability="none")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    recovered.close()
    assert recovered.oms.export() == kernel.oms.export() and recovered.oms.get("main", "b1").status is S.PENDING_CANCEL
    return peak


def test_recovery_holds_the_lines_after_the_snapshot_one_at_a_time_not_the_journal(tmp_path: Path) -> None:
    """A journal grows for the engine's whole life (weeks of a live session: millions of lines). Recovery decoded
    every line into one list and skipped those the snapshot covers, so a restart needed memory for the whole journal
    (100,000 covered lines here: ~10 MB more than 1,000). The covered lines are now skipped undecoded and the rest
    applied one at a time: the peak does not grow with the journal."""
    small = _recovery_peak_bytes(tmp_path / "small", 1_000)
    large = _recovery_peak_bytes(tmp_path / "large", 100_000)
    assert large - small < 1_000_000, (small, large)


def test_a_snapshot_taken_at_an_eviction_includes_it_and_recovery_answers_as_the_run_and_its_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Snapshot and eviction due at the same step: the snapshot holds the state after the eviction. Before, it held
    the orders the step evicted, which the recovered kernel kept: a retried order was then a silent no-op after the
    restart, where the run and ``replay`` reject it as a duplicate."""
    monkeypatch.setattr(kernel_module, "_EVICT_EVERY", 8)
    config = _evicting_config(8)  # both due at steps 8, 16, 24, 32
    journal = tmp_path / "k.journal"
    produced: list = []
    kernel = TradingKernel(config, journal_path=journal, durability="always")
    for message in [m for i in range(11) for m in _closing(i)]:  # 33 steps: the last snapshot after step 32
        produced += kernel.apply(message)
    kernel.close()
    recovered, _ = TradingKernel.recover(config, journal, durability="always")
    assert recovered.evicted == kernel.evicted == 10 and recovered.oms.export() == kernel.oms.export()
    [rejected] = recovered.apply(_closing(3)[0])  # the client sends c3 again
    assert rejected.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    recovered.close()
    _, replayed = replay_kernel(journal)
    assert encoded(replayed) == encoded([*produced, rejected])


def test_a_history_file_shorter_than_its_snapshot_counts_stops_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel_module, "_EVICT_EVERY", 8)
    config = _evicting_config(20)
    journal = tmp_path / "k.journal"
    _run(config, journal, [m for i in range(8) for m in _closing(i)])
    history = Path(str(journal) + ".orders")
    history.write_bytes(history.read_bytes()[:10])
    with pytest.raises(JournalError, match=f"order history {history} holds 10 bytes, fewer than"):
        TradingKernel.recover(config, journal, durability="none")


def test_an_order_history_beside_a_journal_of_no_line_is_refused_never_cut(tmp_path: Path) -> None:
    """The journal was moved away and the history left: it is another run's, and recovery says so."""
    history = tmp_path / "k.journal.orders"
    history.write_bytes(b'{"client_order_id":"old"}\n')
    with pytest.raises(JournalError, match=f"order history {history} holds orders, but its journal has no line"):
        TradingKernel.recover(_evicting_config(20), tmp_path / "k.journal", durability="none")
    assert history.read_bytes() == b'{"client_order_id":"old"}\n'


def test_a_second_recovery_of_a_journal_in_use_is_refused_before_it_touches_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel_module, "_EVICT_EVERY", 8)
    config = _evicting_config(20)
    journal = tmp_path / "k.journal"
    _run(config, journal, [m for i in range(12) for m in _closing(i)])
    running, _ = TradingKernel.recover(config, journal, durability="none")
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(JournalError, match=f"journal {journal} is open in another engine"):
        TradingKernel.recover(config, journal, durability="none")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files
    running.close()


def test_an_eviction_after_a_torn_history_line_starts_a_line_of_its_own(tmp_path: Path) -> None:
    """A crash tore the last record: the next eviction cuts it rather than glue its first record to it."""
    kernel = TradingKernel(_evicting_config(10**9), journal_path=tmp_path / "k.journal", durability="none")
    history = tmp_path / "k.journal.orders"
    for i in range(5):
        for message in _closing(i):
            kernel.apply(message)
        if i == 2:
            assert kernel.evict(T0 + 10**9) == 3
            history.write_bytes(history.read_bytes()[:-40])  # c2's record, torn
    assert kernel.evict(T0 + 10**9) == 2
    assert [h["client_order_id"] for h in kernel.order_history("main")] == ["c0", "c1", "c3", "c4"]
    assert kernel.order_record("main", "c3")["status"] == "CANCELLED"
    kernel.close()


def test_a_corrupt_order_history_line_is_a_journal_error_naming_the_file_and_line(tmp_path: Path) -> None:
    kernel = _evicted_kernel(tmp_path, 3)
    history = tmp_path / "k.journal.orders"
    lines = history.read_bytes().splitlines(keepends=True)
    history.write_bytes(lines[0] + lines[1][:50] + b"\n" + lines[2])  # c1's record, damaged
    for query in (lambda: kernel.order_history("main"), lambda: kernel.order_record("main", "c1")):
        with pytest.raises(JournalError, match=f"{history}:2: corrupt order history line"):
            query()
    assert kernel.order_record("main", "c2")["status"] == "CANCELLED"  # the lines without the id are not parsed
    kernel.close()


def test_a_failed_history_write_keeps_the_records_and_the_next_eviction_writes_them(tmp_path: Path) -> None:
    """The orders leave memory as they do in a replay (the kernel's answers never depend on the disk); their
    records wait in memory, where queries find them, until the file takes them."""
    kernel = TradingKernel(_evicting_config(10**9), journal_path=tmp_path / "k.journal", durability="none")
    history = tmp_path / "k.journal.orders"
    for message in _closing(0):
        kernel.apply(message)
    with disk_full_after(10), pytest.raises(JournalError, match=f"order history {history}.*1 evicted orders wait"):
        kernel.evict(T0 + 10**9)
    assert history.read_bytes() == b""  # never part of a record
    assert kernel.oms.get("main", "c0") is None and kernel.order_record("main", "c0")["status"] == "CANCELLED"
    [rejected] = kernel.apply(_closing(0)[0])
    assert rejected.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID  # as a replay of this journal answers
    assert kernel.evict(T0 + 10**9) == 0  # the disk has room again
    assert [h["client_order_id"] for h in _records(history)] == ["c0"] and kernel.history_pending == []
    assert kernel.history_bytes == history.stat().st_size
    kernel.close()


def test_files_a_step_cannot_write_are_error_events_of_the_step_and_are_written_when_next_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kernel_module, "_EVICT_EVERY", 8)
    journal = tmp_path / "k.journal"
    kernel = TradingKernel(_evicting_config(8), journal_path=journal, durability="none")
    history, snapshot = Path(str(journal) + ".orders"), Path(str(journal) + ".snapshot")
    blockers = [history, Path(str(snapshot) + ".tmp")]
    for blocker in blockers:
        blocker.mkdir()  # neither can be written
    messages = [m for i in range(6) for m in _closing(i)]
    events = [kernel.apply(m) for m in messages[:8]]
    assert [e.code for e in events[7]] == ["ORDER_HISTORY_WRITE_FAILED", "SNAPSHOT_FAILED"]  # step 8: both due
    assert not [e for step in events[:7] for e in step if type(e) is Error]
    for blocker in blockers:
        blocker.rmdir()
    events = [kernel.apply(m) for m in messages[8:16]]
    assert not [e for step in events for e in step if type(e) is Error]
    assert (
        [h["client_order_id"] for h in _records(history)]
        == ["c0", "c1", "c2", "c3", "c4"]
        == [f"c{i}" for i in range(kernel.evicted)]
    )
    assert read_snapshot(snapshot)[0] == 16
    kernel.close()


def _records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_report_for_an_order_the_kernel_rejected_itself_is_an_error_and_books_nothing() -> None:
    kernel = _kernel()
    [rejected] = kernel.apply(place("big", "BUY", "1000", "60000"))  # more than the account holds: never sent
    assert rejected.reason is RejectReason.INSUFFICIENT_FUNDS and kernel.take_outbox() == []
    before = kernel.ledger.export()
    for report in (_fill("big", 1, "0.01", leaves="999.99"), _accepted("big")):
        [error] = kernel.apply(report)
        assert type(error) is Error and error.code == "UNKNOWN_ORDER_REPORT" and "never sent" in error.message
    assert kernel.ledger.export() == before and kernel.oms.get("main", "big").status is S.REJECTED
    [unknown] = kernel.apply(place("foo", "BUY", "1", "1", symbol="FOOUSDT"))
    assert unknown.reason is RejectReason.UNKNOWN_SYMBOL
    [error] = kernel.apply(replace(_fill("foo", 2, "1", price="1", fee="0"), symbol="FOOUSDT"))  # no KeyError
    assert error.code == "UNKNOWN_ORDER_REPORT" and kernel.ledger.export() == before


@pytest.mark.parametrize(
    ("report", "problem"),
    [
        (_fill("b1", 1, "5"), "takes the filled quantity to 5, beyond the order's 0.01"),
        (_fill("b1", 1, "0"), "has quantity 0 at price 60000: both must be positive"),
        (_fill("b1", 1, "-0.01"), "has quantity -0.01 at price 60000: both must be positive"),
        (_fill("b1", 1, "0.004", price="0"), "has quantity 0.004 at price 0: both must be positive"),
        (_fill("b1", 1, "0.004", price="-60000"), "has quantity 0.004 at price -60000: both must be positive"),
        (_fill("b1", 1, "0.004", fee="-50"), "charges a negative fee -50 USDT"),
        (_fill("b1", 1, "0.004", price="60001"), "trades at 60001, through the order's limit 60000"),
        (_fill("b1", 1, "0.004", price="9999999999"), "trades at 9999999999, through the order's limit 60000"),
    ],
    ids=["overfill", "zero-qty", "negative-qty", "zero-price", "negative-price", "negative-fee", "through-limit",
         "absurd-price"],
)  # fmt: skip
def test_a_fill_that_cannot_be_true_of_the_order_is_an_error_and_books_nothing(
    report: VenueOrderFilled, problem: str
) -> None:
    """A corrupt message or another order's fill: booking it moved money that never moved (a fill of 5 BTC on an
    order for 0.01 left USDT at -200,300; a zero quantity divided by zero, and the journal replayed the crash)."""
    kernel = _kernel()
    kernel.apply(place("b1", "BUY", "0.01", "60000"))
    kernel.apply(_accepted("b1"))
    before = (kernel.ledger.export(), kernel.oms.export())
    [error] = kernel.apply(report)
    assert type(error) is Error and error.code == "BAD_FILL_REPORT"
    assert error.message == f"X: fill 1 of BUY main/b1 (BTCUSDT) {problem}; not booked"
    assert (kernel.ledger.export(), kernel.oms.export()) == before
    [filled, _position, _account] = kernel.apply(_fill("b1", 2, "0.01"))  # the true fill still books, in full
    assert type(filled) is OrderFilled and kernel.oms.get("main", "b1").status is S.FILLED
    assert kernel.ledger.conserved()


def test_a_sell_fills_at_or_above_its_limit_and_a_market_order_at_any_price() -> None:
    kernel = _kernel()
    kernel.apply(place("s1", "SELL", "0.01", "60000"))
    kernel.apply(place("m1", "BUY", "0.01"))  # market: its price is the venue's
    for cid in ("s1", "m1"):
        kernel.apply(_accepted(cid))
    [error] = kernel.apply(replace(_fill("s1", 1, "0.01", price="59999"), leaves_qty=0))
    assert error.code == "BAD_FILL_REPORT" and "through the order's limit 60000" in error.message
    assert type(kernel.apply(_fill("s1", 2, "0.01", price="60001"))[0]) is OrderFilled
    assert type(kernel.apply(_fill("m1", 3, "0.01", price="61000"))[0]) is OrderFilled
    assert kernel.ledger.conserved()


def test_a_quote_budget_order_refuses_a_fill_beyond_its_budget() -> None:
    kernel = _kernel()
    kernel.apply(place("q1", "BUY", None, quote_qty="600"))
    kernel.apply(_accepted("q1"))
    before = kernel.ledger.export()
    [error] = kernel.apply(_fill("q1", 1, "0.011", fee="0", leaves="0"))  # 660 USDT of a 600 budget
    assert error.code == "BAD_FILL_REPORT" and "beyond the order's budget 600;" in error.message
    assert kernel.ledger.export() == before
    assert type(kernel.apply(_fill("q1", 2, "0.01", fee="0", leaves="0"))[0]) is OrderFilled
    assert kernel.oms.get("main", "q1").status is S.FILLED and kernel.ledger.conserved()


def test_the_same_trade_told_again_with_other_values_is_an_error_and_the_first_stands() -> None:
    kernel = _kernel()
    kernel.apply(place("b1", "BUY", "0.01", "60000"))
    kernel.apply(_fill("b1", 7, "0.004", leaves="0.006"))
    before = (kernel.ledger.export(), kernel.oms.export())
    [error] = kernel.apply(_fill("b1", 7, "0.006", price="59000", leaves="0.004"))
    assert error.code == "BAD_FILL_REPORT" and "differs from the same trade booked before" in error.message
    assert (kernel.ledger.export(), kernel.oms.export()) == before
    assert kernel.apply(_fill("b1", 7, "0.004", leaves="0.006")) == []  # the same values again: a quiet re-send


def test_a_report_naming_another_symbol_or_venue_order_under_our_client_order_id_is_not_ours() -> None:
    """A venue asks a client order id unique among open orders only: another order may carry ours."""
    kernel = _kernel()
    kernel.apply(place("t1", "BUY", "0.01", "60000"))
    kernel.apply(_accepted("t1"))
    before = (kernel.ledger.export(), kernel.oms.export())
    for report in (
        replace(_fill("t1", 1, "0.001", price="2500"), symbol="ETHUSDT", venue_order_id="987654"),
        replace(_fill("t1", 2, "0.001"), venue_order_id="987654"),
        replace(_accepted("t1"), venue_order_id="987654"),
        VenueOrderCancelled(venue="X", client_order_id="t1", account_id="main", symbol="ETHUSDT", ts=T0),
    ):
        [error] = kernel.apply(report)
        assert error.code == "REPORT_ORDER_MISMATCH" and "but that id is BTCUSDT order v-t1" in error.message
    assert (kernel.ledger.export(), kernel.oms.export()) == before


def test_a_fee_in_an_asset_the_account_does_not_hold_is_booked_and_said() -> None:
    kernel = _kernel()
    kernel.apply(place("b1", "BUY", "0.01", "60000"))
    events = kernel.apply(replace(_fill("b1", 1, "0.01"), fee=d("0.001"), fee_asset="BNB"))
    [error] = [e for e in events if type(e) is Error]
    assert error.code == "NEGATIVE_BALANCE" and "leaves main -0.001 BNB free" in error.message
    assert kernel.oms.get("main", "b1").status is S.FILLED and kernel.ledger.conserved()


def test_the_journal_replays_commands_and_reports_byte_for_byte(tmp_path: Path) -> None:
    kernel = _kernel()
    kernel.attach_journal(tmp_path / "k.journal", durability="none")
    events = []
    events += kernel.apply(place("b1", "BUY", "0.01", "60000"))
    events += kernel.apply(_accepted("b1"))
    events += kernel.apply(_fill("b1", 1, "0.004", leaves="0.006"))
    events += kernel.apply(_fill("b1", 1, "0.004", leaves="0.006"))
    events += kernel.apply(cancel("b1"))
    events += kernel.apply(VenueOrderCancelled(venue="X", client_order_id="b1", account_id="main", symbol="BTCUSDT",
                                               ts=T0))  # fmt: skip
    kernel.close()
    replayed, again = replay_kernel(tmp_path / "k.journal")
    from veloz_actors.testing import encoded

    assert encoded(again) == encoded(events)
    assert replayed.ledger.export() == kernel.ledger.export()
    recovered, _ = TradingKernel.recover(kernel.config, tmp_path / "k.journal", durability="none")
    recovered.close()
    assert recovered.oms.export() == kernel.oms.export()


def test_a_cancel_that_overtook_its_order_leaves_it_submitted_and_sends_the_order_again() -> None:
    kernel = _kernel()
    kernel.apply(place("b1", "BUY", "0.01", "60000"))
    kernel.take_outbox()
    kernel.apply(cancel("b1"))
    kernel.take_outbox()
    [rejected] = kernel.apply(VenueCancelRejected(venue="X", client_order_id="b1", account_id="main",
                                                  symbol="BTCUSDT", reason=RejectReason.UNKNOWN_ORDER,
                                                  detail="the venue has no such order", ts=T0))  # fmt: skip
    assert rejected.reason is RejectReason.UNKNOWN_ORDER
    assert kernel.oms.get("main", "b1").status is S.SUBMITTED  # not ACCEPTED: the venue never acknowledged it
    [again] = kernel.take_outbox()
    assert type(again) is SubmitOrder and again.command.client_order_id == "b1"


def test_an_order_for_an_account_the_engine_does_not_have_is_refused_naming_the_account() -> None:
    """Before: the order went through the risk checks to the reservation and was refused as INSUFFICIENT_FUNDS, which
    sent a user with a mistyped account looking for money that was never the problem."""
    kernel = _kernel()
    [rejected] = kernel.apply(place("g1", "BUY", "0.01", "59000", account="mian", ts=T0))
    assert type(rejected) is OrderRejected and rejected.reason == "UNKNOWN_ACCOUNT"
    assert "'mian'" in rejected.detail and "main" in rejected.detail  # the account asked for, and the ones there are
    assert not kernel.ledger.has_account("mian") and kernel.take_outbox() == []


@pytest.mark.parametrize("semantics", [4, 5])
def test_a_fee_in_the_base_asset_moves_the_position_by_what_the_account_holds(semantics: int) -> None:
    """Binance takes a buy's commission out of the coins received unless fees go to BNB: 0.01 BTC bought holds 0.00999.
    Since semantics 5 the position is what the account holds (sellable whole) and the fee is in its cost; a journal of
    4 or less counted the whole fill, as its positions were then."""
    kernel = _kernel()
    kernel.semantics = semantics
    kernel.apply(place("b1", "BUY", "0.01", "60000"))
    kernel.apply(_accepted("b1"))
    kernel.apply(replace(_fill("b1", 1, "0.01"), fee=d("0.00001"), fee_asset="BTC"))
    position = kernel.ledger.position("main", "BTCUSDT")
    assert kernel.ledger.balances("main")["BTC"] == (d("2.00999"), 0)  # 2 deposited, 0.00999 received
    if semantics < 5:
        assert (position.qty, position.cost) == (d("0.01"), d("600"))
        return
    assert (position.qty, position.cost) == (d("0.00999"), d("600"))  # the fee in the cost: 600 for 0.00999
    kernel.apply(place("s1", "SELL", "0.00999", "61000"))
    kernel.apply(_accepted("s1"))
    kernel.apply(replace(_fill("s1", 2, "0.00999", price="61000"), fee=d("0.6093900"), fee_asset="USDT"))
    position = kernel.ledger.position("main", "BTCUSDT")
    assert position.qty == 0 and position.cost == 0
    # bought 0.00999 for 600, sold for 609.39 less a 0.60939 fee
    assert position.realized_pnl == d("609.39") - d("600") - d("0.60939")
    assert kernel.ledger.conserved()


# ---------------------------------------------------------------------------------------- retried cancels


def test_a_cancel_sent_before_its_order_and_again_after_it_has_no_second_effect() -> None:
    """One record per client order id, whether the id had an order when the cancel came or not."""
    kernel = _kernel()
    early = cancel("x1", ts=T0)
    [rejected] = kernel.apply(early)
    assert rejected.reason is RejectReason.UNKNOWN_ORDER
    assert type(kernel.apply(place("x1", "BUY", "0.01", "59000", ts=T0 + 1))[0]) is OrderAccepted
    kernel.take_outbox()
    assert kernel.apply(early) == [] and kernel.take_outbox() == []  # the retry: no cancel goes out
    assert kernel.oms.get("main", "x1").status is S.SUBMITTED
    assert kernel.applied_before(early)
    later = cancel("x1", ts=T0 + 2)
    assert not kernel.applied_before(later)
    kernel.apply(later)
    [request] = kernel.take_outbox()
    assert type(request) is SubmitCancel and kernel.oms.get("main", "x1").status is S.PENDING_CANCEL
    assert kernel.applied_before(later) and not kernel.applied_before(early)  # the later one replaced it
    assert kernel.apply(later) == [] and kernel.take_outbox() == []


def test_cancel_records_expire_at_eviction_whether_their_order_is_in_memory_or_left_it(tmp_path: Path) -> None:
    """A cancel's record lasts until eviction passes its own time, as the duplicate records do: kept on its order
    while the order is in memory, kept on after the order left memory with it, dropped either way once older."""
    config = KernelConfig(**{**_fields(_kernel().config), "retain_closed_ns": 1_000, "snapshot_every": 10**9})
    kernel = TradingKernel(config, journal_path=tmp_path / "k.journal", durability="none")
    kernel.apply(place("c1", "BUY", "0.01", "59000", ts=T0))
    kernel.apply(cancel("c1", ts=T0))
    kernel.apply(VenueOrderCancelled(venue="X", client_order_id="c1", account_id="main", symbol="BTCUSDT", ts=T0))
    late = cancel("c1", ts=T0 + 5_000)  # after the order closed
    [rejected] = kernel.apply(late)
    assert rejected.reason is RejectReason.ORDER_NOT_OPEN
    kernel.apply(place("c2", "BUY", "0.01", "59000", ts=T0 + 1))
    kernel.apply(cancel("c2", ts=T0 + 1))  # stays PENDING_CANCEL: no venue answers
    kernel.take_outbox()
    assert [o.client_order_id for o in kernel.cancelled_orders] == ["c1", "c2"]  # each order once, two cancels or one
    assert kernel.evict(T0 + 2_000) == 1 and kernel.oms.get("main", "c1") is None
    assert kernel.apply(late) == []  # its order left memory, its record (newer than the eviction) did not
    [pending] = kernel.apply(cancel("c2", ts=T0 + 1))  # c2's record is older: dropped, the retry is applied
    assert pending.reason is RejectReason.CANCEL_PENDING
    assert kernel.evict(T0 + 10_000) == 0
    [unknown] = kernel.apply(late)  # and now c1's too
    assert unknown.reason is RejectReason.UNKNOWN_ORDER
    assert kernel.take_outbox() == []
    kernel.close()


def test_an_order_of_a_snapshot_written_before_it_kept_its_cancel_has_none() -> None:
    kernel = _kernel()
    kernel.apply(place("c1", "BUY", "0.01", "59000", ts=T0))
    order = kernel.oms.get("main", "c1")
    state = order.__reduce_ex__(2)[2]
    del state[1]["last_cancel"]  # as pickled before orders kept their cancel's record
    old = type(order).__new__(type(order))
    old.__setstate__(state)
    assert old.last_cancel is None and old.client_order_id == "c1" and old.history == order.history


def test_an_order_of_a_snapshot_written_before_its_trail_keeps_its_history() -> None:
    kernel = _kernel()
    kernel.apply(place("c1", "BUY", "0.01", "59000", ts=T0))
    kernel.apply(cancel("c1", ts=T0 + 1))
    order = kernel.oms.get("main", "c1")
    state = order.__reduce_ex__(2)[2]
    state[1]["history"] = order.history  # as pickled when an order kept (status, ts) pairs
    del state[1]["trail"]
    old = type(order).__new__(type(order))
    old.__setstate__(state)
    assert old.history == [(OrderStatus.NEW, T0), (OrderStatus.SUBMITTED, T0), (OrderStatus.PENDING_CANCEL, T0 + 1)]
    assert old.trail == order.trail and old.sent
    assert [s.client_order_id for s in kernel.pending_requests()] == ["c1", "c1"]  # its order, then its cancel
