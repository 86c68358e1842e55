"""The stdio protocol through a Session over the in-process engine: commands, output shapes, and bad input.

Bad input is typed as a new user would; every line must give a clear ``error`` (or an ``order_update`` REJECTED with
the right reason), never raise, and never change a balance.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import pytest

from veloz_actors import EngineStopped, EngineUnavailable, InvalidInput
from veloz_actors.core.journal import read_journal
from veloz_actors.fixed import SCALE, format_decimal
from veloz_actors.interfaces.local import LocalBackend
from veloz_actors.interfaces.service import EngineService
from veloz_actors.interfaces.stdio import Session, parse_command
from veloz_actors.messages import Tick
from veloz_actors.testing import FakeClock, d, engine_config
from veloz_actors.venues.engine import Engine

from ..actors.helpers import wait_for

OUTPUT_TYPES = {"market", "order_update", "fill", "order_state", "account", "position", "status", "error"}


@pytest.fixture
def session() -> Session:
    engine = Engine(engine_config(sim=True))
    engine.apply(Tick(ts=1))  # the market maker quotes around 60000 / 2500
    return Session(LocalBackend(engine), symbols=set(engine.instruments), clock=FakeClock(), market=False)


def _balances(session: Session) -> dict[str, Any]:
    return session.handle_line("BALANCE")[0]["balances"]


def test_every_output_has_a_known_type_and_an_integer_ts(session: Session) -> None:
    lines = ["ORDER BUY BTCUSDT 0.01 MARKET", "ORDER SELL BTCUSDT 0.01 70000", "QUERY OPEN", "BALANCE", "POSITIONS",
             "STATUS", "HELP", "nonsense"]  # fmt: skip
    for line in lines:
        for out in session.handle_line(line):
            assert out["type"] in OUTPUT_TYPES and isinstance(out["ts"], int)


def test_status_gives_prices_as_decimal_strings_as_every_other_line_does(session: Session) -> None:
    engine = session.backend.engine  # type: ignore[attr-defined]
    [status] = session.handle_line("STATUS")
    assert status["reference_prices"] == {s: format_decimal(p) for s, p in sorted(engine.kernel.reference.items())}
    for symbol, venue in engine.venues.items():
        bid, _, ask, _ = venue.book.top()
        shown = status["venues"][symbol]
        assert (shown["best_bid"], shown["best_ask"], shown["mid"]) == (
            format_decimal(bid),
            format_decimal(ask),
            format_decimal(venue.mid),
        )


def test_market_order_reports_accept_fill_position_and_account(session: Session) -> None:
    out = session.handle_line("ORDER BUY BTCUSDT 0.01 MARKET cid=m1")
    # the kernel's step (accepted, funds reserved), then the venue's fill as the kernel books it
    assert [o["type"] for o in out] == ["order_update", "account", "fill", "order_update", "position", "account"]
    assert out[1]["balances"]["USDT"]["locked"] != "0"
    fill = out[2]
    assert (fill["cid"], fill["qty"], fill["liquidity"], fill["fee_asset"]) == ("m1", "0.01", "TAKER", "USDT")
    assert out[3]["status"] == "FILLED" and out[3]["filled_qty"] == "0.01"
    assert out[5]["balances"]["BTC"] == {"free": "2.01", "locked": "0"}


def test_limit_order_rests_and_can_be_queried_and_cancelled(session: Session) -> None:
    [accepted, _account] = session.handle_line("ORDER BUY BTCUSDT 0.01 59000 cid=l1")
    assert (accepted["status"], accepted["price"], accepted["qty"]) == ("ACCEPTED", "59000", "0.01")
    [state] = session.handle_line("QUERY l1")
    assert state["orders"][0]["status"] == "ACCEPTED"
    cancelled = session.handle_line("CANCEL l1")[0]
    assert (cancelled["status"], cancelled["reason"]) == ("CANCELLED", "USER_CANCEL")
    assert session.handle_line("QUERY OPEN")[0]["orders"] == []


def test_generated_client_order_ids_are_unique(session: Session) -> None:
    first = session.handle_line("ORDER BUY BTCUSDT 0.01 59000")[0]["cid"]
    second = session.handle_line("ORDER BUY BTCUSDT 0.01 59000")[0]["cid"]
    assert first != second


def test_a_generated_client_order_id_costs_no_question_to_the_engine(session: Session) -> None:
    backend = session.backend
    asked: list[str | None] = []
    query = backend.query
    backend.query = lambda cid: asked.append(cid) or query(cid)  # type: ignore[method-assign]
    [accepted, _account] = session.handle_line("ORDER BUY BTCUSDT 0.01 59000")
    assert accepted["status"] == "ACCEPTED" and accepted["cid"].startswith("cli-") and accepted["cid"].endswith("-1")
    assert asked == []


def test_a_new_session_never_reuses_the_ids_an_earlier_one_left_in_the_engine(session: Session) -> None:
    earlier = session.handle_line("ORDER BUY BTCUSDT 0.01 59000")[0]["cid"]
    again = Session(session.backend, symbols=set(session.symbols), clock=session.clock, market=False)
    [accepted, _account] = again.handle_line("ORDER BUY BTCUSDT 0.01 59000")
    assert accepted["status"] == "ACCEPTED" and accepted["cid"] != earlier


def test_commands_are_case_insensitive(session: Session) -> None:
    assert session.handle_line("order buy btcusdt 0.01 market tif=ioc")[0]["status"] == "ACCEPTED"


def test_quit_closes_the_session(session: Session) -> None:
    assert session.handle_line("QUIT") == [] and session.closed


@pytest.mark.parametrize("line", ["", "   ", "\t", "# a comment"])
def test_blank_lines_and_comments_are_ignored(session: Session, line: str) -> None:
    before = _balances(session)
    assert session.handle_line(line) == []
    assert _balances(session) == before and not session.closed


BAD_COMMANDS = {
    "nan-qty": "ORDER BUY BTCUSDT nan MARKET",
    "nan-price": "ORDER BUY BTCUSDT 0.01 NaN",
    "inf-price": "ORDER BUY BTCUSDT 0.01 inf",
    "negative-qty": "ORDER BUY BTCUSDT -0.01 60000",
    "negative-price": "ORDER SELL BTCUSDT 0.01 -60000",
    "zero-qty": "ORDER BUY BTCUSDT 0 MARKET",
    "zero-price": "ORDER BUY BTCUSDT 0.01 0",
    "exponent": "ORDER BUY BTCUSDT 1e30 MARKET",
    "huge-qty": "ORDER BUY BTCUSDT 100000000000000000000000000 MARKET",
    "huge-price": "ORDER BUY BTCUSDT 0.01 999999999999999",
    "too-many-decimals": "ORDER BUY BTCUSDT 0.000000001 60000",
    "unknown-symbol": "ORDER BUY DOGEUSDT 1 MARKET",
    "bad-side": "ORDER HOLD BTCUSDT 0.01 MARKET",
    "bad-tif": "ORDER BUY BTCUSDT 0.01 60000 tif=GTX",
    "unknown-option": "ORDER BUY BTCUSDT 0.01 60000 leverage=10",
    "post-only-market": "ORDER BUY BTCUSDT 0.01 MARKET tif=POST_ONLY",
    "missing-args": "ORDER BUY BTCUSDT",
    "no-args": "ORDER",
    "extra-args": "ORDER BUY BTCUSDT 0.01 60000 now",
    "bad-cid": "ORDER BUY BTCUSDT 0.01 60000 cid=a/b",
    "long-cid": "ORDER BUY BTCUSDT 0.01 60000 cid=" + "x" * 37,
    "cancel-without-cid": "CANCEL",
    "query-two-args": "QUERY a b",
    "balance-with-args": "BALANCE main",
    "garbage": "hello world",
    "unbalanced-quote": 'ORDER BUY "BTCUSDT 0.01 MARKET',
    "binary": "\x00\x01\x02",
    "sql": "'; DROP TABLE orders; --",
    "unicode-digits": "ORDER BUY BTCUSDT ١ MARKET",
    "cid-twice": "ORDER BUY BTCUSDT 0.01 60000 cid=x1 cid=x2",
    "tif-twice": "ORDER BUY BTCUSDT 0.01 60000 tif=IOC tif=GTC",
    "reset-with-args": "RESET please, not now",
    "reserved-cid": "ORDER BUY BTCUSDT 0.01 60000 cid=Open",
    "not-utf8": "BALANCE \ufffd",
    "too-long": "ORDER BUY BTCUSDT 0.01 60000 cid=" + "x" * 5000,
}


@pytest.mark.parametrize("line", list(BAD_COMMANDS.values()), ids=list(BAD_COMMANDS))
def test_malformed_line_gets_an_error_and_changes_nothing(session: Session, line: str) -> None:
    before = _balances(session)
    [error] = session.handle_line(line)
    assert error["type"] == "error" and error["code"] == "BAD_COMMAND"
    assert error["message"] and error["line"] == line.strip()[:200]
    assert _balances(session) == before


REJECTED = {
    "off-tick": ("ORDER BUY BTCUSDT 0.01 60000.001", "PRICE_NOT_ON_TICK"),
    "off-step": ("ORDER BUY BTCUSDT 0.000015 60000", "QUANTITY_NOT_ON_STEP"),
    "min-notional": ("ORDER BUY BTCUSDT 0.0001 60000", "NOTIONAL_BELOW_MINIMUM"),
    "eth-off-step": ("ORDER SELL ETHUSDT 0.00001 2500", "QUANTITY_NOT_ON_STEP"),
    "above-max-qty": ("ORDER SELL BTCUSDT 9001 60000", "MAX_ORDER_QUANTITY"),
    "above-max-price": ("ORDER SELL BTCUSDT 0.01 1000000.01", "INVALID_PRICE"),
    "price-band": ("ORDER BUY BTCUSDT 0.01 70000", "PRICE_BAND"),
    "funds": ("ORDER BUY BTCUSDT 1.9 MARKET", "INSUFFICIENT_FUNDS"),
}


def test_post_only_that_would_cross_is_accepted_by_the_kernel_then_rejected_by_the_venue(session: Session) -> None:
    before = _balances(session)
    out = session.handle_line("ORDER BUY BTCUSDT 0.01 60100 tif=POST_ONLY cid=p1")
    updates = [o for o in out if o["type"] == "order_update"]
    assert [u["status"] for u in updates] == ["ACCEPTED", "REJECTED"]
    assert updates[1]["reason"] == "WOULD_TAKE_LIQUIDITY" and updates[1]["detail"]
    assert _balances(session) == before


def test_an_accepted_order_the_venue_refuses_is_said_with_its_order_id_and_forgotten_by_the_session(
    session: Session,
) -> None:
    """Before: its REJECTED said order_id null, and the session kept the order's view for ever (one per refused
    post-only order: a market maker's session grew all day)."""
    for i in range(3):
        out = session.handle_line(f"ORDER BUY BTCUSDT 0.01 60100 tif=POST_ONLY cid=p{i}")
        accepted, rejected = (o for o in out if o["type"] == "order_update")
        assert (rejected["status"], rejected["order_id"]) == ("REJECTED", accepted["order_id"])
    assert session.formatter._orders == {}
    session.handle_line("ORDER BUY BTCUSDT 0.01 59000 cid=rest")
    [duplicate] = session.handle_line("ORDER BUY BTCUSDT 0.01 60100 tif=POST_ONLY cid=rest")
    assert (duplicate["reason"], duplicate["order_id"]) == ("DUPLICATE_CLIENT_ORDER_ID", None)
    assert list(session.formatter._orders) == ["rest"]  # the order holding the id keeps its view


@pytest.mark.parametrize(("line", "reason"), list(REJECTED.values()), ids=list(REJECTED))
def test_order_breaking_a_rule_is_rejected_with_its_reason(session: Session, line: str, reason: str) -> None:
    before = _balances(session)
    [update] = session.handle_line(line)
    assert (update["type"], update["status"], update["reason"]) == ("order_update", "REJECTED", reason)
    assert update["detail"]
    assert _balances(session) == before


def test_cancel_of_unknown_cid_is_rejected_as_unknown_order(session: Session) -> None:
    before = _balances(session)
    [update] = session.handle_line("CANCEL nope")
    assert (update["status"], update["reason"]) == ("CANCEL_REJECTED", "UNKNOWN_ORDER")
    assert _balances(session) == before


def test_a_refused_cancel_of_a_filled_order_never_says_it_filled_nothing(session: Session) -> None:
    """The session no longer holds a closed order's view: its cancel rejection said ``filled_qty`` "0" for an order
    that had filled (a client keeping fills from order_update read the order as unfilled); now null, unknown."""
    session.handle_line("ORDER BUY BTCUSDT 0.01 MARKET cid=f1")
    [update] = session.handle_line("CANCEL f1")
    assert (update["status"], update["reason"]) == ("CANCEL_REJECTED", "ORDER_NOT_OPEN")
    assert update["filled_qty"] is None
    [state] = session.handle_line("QUERY f1")
    assert state["orders"][0]["filled_qty"] == "0.01"


def test_query_of_unknown_cid_is_an_error(session: Session) -> None:
    [error] = session.handle_line("QUERY nope")
    assert (error["type"], error["code"]) == ("error", "UNKNOWN_ORDER")


def test_reused_cid_is_rejected_as_duplicate(session: Session) -> None:
    session.handle_line("ORDER BUY BTCUSDT 0.01 59000 cid=dup")
    before = _balances(session)
    [update] = session.handle_line("ORDER BUY BTCUSDT 0.02 59000 cid=dup")
    assert (update["status"], update["reason"]) == ("REJECTED", "DUPLICATE_CLIENT_ORDER_ID")
    assert _balances(session) == before


def test_an_error_repeats_at_most_a_few_dozen_characters_of_a_bad_value() -> None:
    """A 4,000-character cid, quantity or command word comes back cut, its length said (before: all of it)."""
    for line in ("ORDER BUY BTCUSDT 0.01 60000 cid=" + "x" * 4000, "ORDER BUY BTCUSDT " + "9" * 4000 + " 60000",
                 "Z" * 4000):  # fmt: skip
        with pytest.raises(InvalidInput) as caught:
            parse_command(line, symbols={"BTCUSDT"}, ts=1)
        assert len(str(caught.value)) < 200 and "4,000 characters" in str(caught.value)


def test_open_is_reserved_for_a_new_order_only_an_order_so_named_can_still_be_cancelled() -> None:
    with pytest.raises(InvalidInput, match="reserved"):
        parse_command("ORDER BUY BTCUSDT 0.01 58000 cid=open", symbols={"BTCUSDT"}, ts=1)
    assert parse_command("CANCEL open", symbols={"BTCUSDT"}, ts=1).client_order_id == "open"


def test_leading_zeros_are_the_same_number() -> None:
    order = parse_command("ORDER BUY BTCUSDT 000000000000000000000000000.01 58000 cid=z", symbols={"BTCUSDT"}, ts=1)
    assert order.qty == 1_000_000  # 0.01 (before: refused as "too large")


def test_parse_command_names_the_bad_field() -> None:
    from veloz_actors import InvalidInput

    with pytest.raises(InvalidInput, match="^quantity: "):
        parse_command("ORDER BUY BTCUSDT abc MARKET", symbols={"BTCUSDT"}, ts=1)


def test_query_finds_an_order_evicted_from_memory_in_the_order_history_file(tmp_path) -> None:
    from dataclasses import replace

    engine = Engine(replace(engine_config(sim=True), retain_closed_ns=1), journal_path=tmp_path / "e.journal",
                    durability="none")  # fmt: skip
    engine.apply(Tick(ts=1))
    session = Session(LocalBackend(engine), symbols=set(engine.instruments), clock=FakeClock(), market=False)
    session.handle_line("ORDER BUY BTCUSDT 0.01 59000 cid=old")
    session.handle_line("CANCEL old")
    assert engine.kernel.evict(before_ts=2**62) == 1
    assert engine.oms.get("main", "old") is None  # out of memory
    [state] = session.handle_line("QUERY old")
    [order] = state["orders"]
    assert (order["cid"], order["status"]) == ("old", "CANCELLED")
    engine.close()


def test_a_query_that_meets_a_damaged_order_history_is_an_error_naming_the_line_and_the_session_goes_on(
    tmp_path,
) -> None:
    from dataclasses import replace

    engine = Engine(replace(engine_config(sim=True), retain_closed_ns=1), journal_path=tmp_path / "e.journal",
                    durability="none")  # fmt: skip
    engine.apply(Tick(ts=1))
    session = Session(LocalBackend(engine), symbols=set(engine.instruments), clock=FakeClock(), market=False)
    session.handle_line("ORDER BUY BTCUSDT 0.01 59000 cid=old")
    session.handle_line("CANCEL old")
    assert engine.kernel.evict(before_ts=2**62) == 1
    history = tmp_path / "e.journal.orders"
    history.write_bytes(history.read_bytes()[:50] + b"\n")  # the record, damaged
    [error] = session.handle_line("QUERY old")
    assert error["type"] == "error" and error["code"] == "ORDER_HISTORY_UNREADABLE"
    assert f"{history}:1: corrupt order history line" in error["message"]
    assert session.handle_line("BALANCE")[0]["type"] == "account"
    engine.close()


def test_the_single_process_engine_hands_each_step_to_the_os_before_its_events_are_printed(tmp_path) -> None:
    """Under group commit a killed process loses no step whose events it printed (the actor engine's rule)."""
    journal = tmp_path / "e.journal"
    engine = Engine(engine_config(sim=True), journal_path=journal, durability="group", group_ms=600_000)
    backend = LocalBackend(engine)  # the flusher sleeps through this test: only hand_to_os writes
    backend.tick(1)
    session = Session(backend, symbols=set(engine.instruments), clock=FakeClock(), market=False)
    assert session.handle_line("ORDER BUY BTCUSDT 0.01 59000 cid=a1")[0]["status"] == "ACCEPTED"
    assert [type(m).__name__ for m in read_journal(journal)[1]] == ["Tick", "PlaceOrder"]  # what a kill leaves
    engine.close()


class _Restarting(LocalBackend):
    """An actor engine whose OMS is restarting: every call to it fails, as the Python handle's do."""

    def submit(self, command: Any) -> list[Any]:
        raise EngineUnavailable("the OMS actor is restarting; try again")

    def query(self, client_order_id: str | None) -> list[dict[str, Any]]:
        raise TimeoutError("the OMS did not answer within 30 s")


def test_an_engine_that_does_not_answer_is_an_error_and_the_session_goes_on() -> None:
    engine = Engine(engine_config(sim=True))
    engine.apply(Tick(ts=1))
    session = Session(_Restarting(engine), symbols=set(engine.instruments), clock=FakeClock(), market=False)
    for line in ("ORDER BUY BTCUSDT 0.01 MARKET", "QUERY OPEN"):
        [error] = session.handle_line(line)
        assert error["type"] == "error" and error["code"] == "ENGINE_UNAVAILABLE" and error["line"] == line
        assert "outcome is unknown" in error["message"]
    assert not session.closed and session.handle_line("BALANCE")[0]["type"] == "account"


def test_a_step_or_feed_poll_that_finds_the_engine_restarting_is_an_error_and_the_loop_goes_on() -> None:
    engine = Engine(engine_config(sim=True))
    backend = LocalBackend(engine)
    session = Session(backend, symbols=set(engine.instruments), clock=FakeClock(), market=False)
    calls = {"tick": 0, "feed": 0}

    def tick(ts: int) -> list[Any]:
        calls["tick"] += 1
        if calls["tick"] == 1:
            raise EngineUnavailable("the feed actor is restarting")
        return backend.tick(ts)

    def side_feed() -> list[Any]:
        calls["feed"] += 1
        if calls["feed"] == 1:
            raise TimeoutError("the bus did not answer")
        return []

    service = EngineService(session, tick=tick, tick_ms=10, side_feed=side_feed)
    seen: list[dict[str, Any]] = []
    service.hub.publish = seen.extend  # type: ignore[method-assign] - every engine event, in order
    thread = threading.Thread(target=service.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: calls["tick"] >= 3 and calls["feed"] >= 2, what="steps and polls after the failures")
    finally:
        service.stop()
        thread.join(30)
    assert not thread.is_alive()
    errors = [o for o in seen if o.get("type") == "error"]
    assert [e["code"] for e in errors] == ["ENGINE_UNAVAILABLE", "ENGINE_UNAVAILABLE"]
    assert {e["message"].split("(")[1].split(":")[0] for e in errors} == {"EngineUnavailable", "TimeoutError"}


_STOPPED = "engine 'default' has stopped (shut down by another handle or `veloz stop`)"


class _Stopped(LocalBackend):
    """An actor engine stopped elsewhere (``veloz stop``, another handle): every call to it says so."""

    def submit(self, command: Any) -> list[Any]:
        raise EngineStopped(_STOPPED)


@pytest.mark.parametrize("met_by", ["feed", "command"])
def test_an_engine_that_stopped_ends_the_loop_with_its_error(met_by: str) -> None:
    """``veloz attach`` to an engine stopped elsewhere printed ENGINE_UNAVAILABLE twice a second for ever: unlike an
    actor restarting, a stopped engine never comes back, so the loop ends and the CLI says it once."""
    engine = Engine(engine_config(sim=True))
    session = Session(_Stopped(engine), symbols=set(engine.instruments), clock=FakeClock(), market=False)

    def side_feed() -> list[Any]:
        if met_by == "feed":
            raise EngineStopped(_STOPPED)
        return []

    service = EngineService(session, side_feed=side_feed)
    seen: list[dict[str, Any]] = []
    service.hub.publish = seen.extend  # type: ignore[method-assign] - every engine event, in order
    if met_by == "command":
        service.submit_line("ORDER BUY BTCUSDT 0.01 MARKET")
    service.end_of_input()  # (before, the loop went on to it and ended well)
    with pytest.raises(EngineStopped, match=r"^engine 'default' has stopped"):
        service.run(install_signals=False)
    assert seen == []  # no ENGINE_UNAVAILABLE


def _run_lines(service: EngineService, lines: list[str]) -> tuple[int, list[dict[str, Any]]]:
    """Feed ``lines`` (then the end of input) to ``service`` and run its loop here; what it printed, in order."""
    printed: list[dict[str, Any]] = []

    class Collect:
        def write(self, objects: list[dict[str, Any]], *, reply: bool) -> None:
            printed.extend(objects)

    service.sink = Collect()
    for line in lines:
        service.submit_line(line)
    service.end_of_input()
    return service.run(install_signals=False), printed


def test_a_signal_that_comes_while_the_loop_holds_its_locks_still_stops_it() -> None:
    """Python runs a signal's handler on the main thread between two bytecodes: maybe inside the loop's
    ``Queue.get``, holding the inbox's lock, or while it sets its stop event. The handler must take neither lock (it
    would wait for ever on its own thread: ``veloz start`` hung after a SIGINT), and the loop must still stop."""
    engine = Engine(engine_config(sim=True))
    session = Session(LocalBackend(engine), symbols=set(engine.instruments), clock=FakeClock(), market=False)
    service = EngineService(session)
    printed: list[dict[str, Any]] = []

    class Collect:
        def write(self, objects: list[dict[str, Any]], *, reply: bool) -> None:
            printed.extend(objects)

    service.sink = Collect()
    before = signal.getsignal(signal.SIGINT)
    service.stop_on_signals()
    guard = threading.Timer(60.0, service.stop)  # should the signal be lost: a failure, not a hang
    try:
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler)
        # the handler called while this thread holds the locks, as the main thread would hold them
        with service._inbox.mutex, service._stop._cond:  # type: ignore[attr-defined]
            interrupted = threading.Thread(target=handler, args=(signal.SIGINT, None), daemon=True)
            interrupted.start()
            interrupted.join(30.0)
            assert not interrupted.is_alive(), "the SIGINT handler waits for a lock the interrupted loop holds"
        guard.start()
        assert service.run(install_signals=False) == 0
        assert not guard.finished.is_set()  # the signal stopped it, not the guard
    finally:
        guard.cancel()
        service.restore_signals()
    assert [o["state"] for o in printed if o["type"] == "status"] == ["started", "stopped"]
    assert signal.getsignal(signal.SIGINT) is before  # given back


def test_a_fill_that_takes_a_balance_above_what_a_person_may_type_keeps_the_engine_running() -> None:
    """A valid sell whose proceeds take USDT above 1e10 (the most a person may type) is printed, and the engine
    answers the next line: the API's tracker reads the engine's figures back exactly, without the typing limit."""
    balances = {"main": {"USDT": d("9999999999"), "BTC": d("2")}, "other": {"USDT": d("100000")}}
    engine = Engine(engine_config(sim=True, balances=balances))
    engine.apply(Tick(ts=1))
    session = Session(LocalBackend(engine), symbols=set(engine.instruments), clock=FakeClock(), market=False)
    service = EngineService(session)
    code, printed = _run_lines(service, ["ORDER SELL BTCUSDT 1 MARKET cid=s1", "BALANCE"])
    assert code == 0 and service.tracker_failures == 0
    assert [o["status"] for o in printed if o["type"] == "order_update"][-1] == "FILLED"
    assert printed[-2]["type"] == "account"  # the BALANCE answer, before the "stopped" status
    assert service.tracker.balances["USDT"] == engine.kernel.ledger.balances("main")["USDT"]
    assert service.tracker.balances["USDT"][0] > 10**10 * SCALE


def test_a_failing_tracker_never_stops_the_engine_and_is_said_once(caplog: pytest.LogCaptureFixture) -> None:
    """Monitoring (the API's fills, orders and equity) is not trading: its failure is logged once, every event
    still reaches the output and the subscribers, and the engine goes on."""
    engine = Engine(engine_config(sim=True))
    engine.apply(Tick(ts=1))
    session = Session(LocalBackend(engine), symbols=set(engine.instruments), clock=FakeClock(), market=False)
    service = EngineService(session)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("tracker bug")

    service.tracker.observe = broken  # type: ignore[method-assign]
    service.tracker.sample = broken  # type: ignore[method-assign]
    sub = service.hub.subscribe()
    with caplog.at_level("WARNING", logger="veloz"):
        code, printed = _run_lines(
            service, ["ORDER BUY BTCUSDT 0.01 MARKET cid=a1", "ORDER BUY BTCUSDT 0.01 MARKET cid=a2", "BALANCE"]
        )
    assert code == 0
    assert [o["cid"] for o in printed if o["type"] == "fill"] == ["a1", "a2"]
    assert printed[-2]["type"] == "account"
    assert [o["cid"] for _, o in sub.take()[0] if o["type"] == "fill"] == ["a1", "a2"]
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert service.tracker_failures > 1
