"""The deterministic engine: idempotency, journaling, replay and recovery."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from veloz_actors import JournalError
from veloz_actors.core import kernel as kernel_module
from veloz_actors.core.journal import read_journal, read_snapshot, write_snapshot
from veloz_actors.core.risk import RiskLimits
from veloz_actors.messages import (
    AccountUpdated,
    BookTop,
    Error,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    RejectReason,
    ResetCircuitBreaker,
    Tick,
)
from veloz_actors.testing import btcusdt, cancel, d, encoded, engine_config, engine_state, ethusdt, place, trade
from veloz_actors.venues.engine import Engine, EngineConfig, replay

T0 = 1_700_000_000_000_000_000


def _session(n: int = 30) -> list:
    """A mixed, deterministic input sequence on the simulated market: ticks, orders, cancels, a reset."""
    messages: list = []
    for i in range(n):
        ts = T0 + i * 250_000_000
        messages.append(Tick(ts=ts))
        side = "BUY" if i % 2 else "SELL"
        account = "main" if i % 3 else "other"
        messages.append(place(f"c{i}", side, "0.01", None, account=account, ts=ts + 1))
        messages.append(place(f"l{i}", side, "0.02", "59990" if side == "BUY" else "60010", account=account, ts=ts + 2))
        if i % 4 == 0:
            messages.append(cancel(f"l{i}", account=account, ts=ts + 3))
    messages.append(ResetCircuitBreaker(account_id="main", ts=T0 + n * 250_000_000))
    return messages


def _sim_config(**kwargs) -> EngineConfig:
    return engine_config(sim=True, **kwargs)


def test_same_inputs_give_the_same_events_byte_for_byte() -> None:
    first = Engine(_sim_config()).apply_many(_session())
    second = Engine(_sim_config()).apply_many(_session())
    assert encoded(first) == encoded(second)
    assert any(type(e).__name__ == "OrderFilled" for e in first)


def test_duplicate_client_order_id_with_other_content_is_rejected() -> None:
    engine = Engine(engine_config())
    engine.apply(place("c1", "BUY", "0.01", "60000"))
    before = engine_state(engine)
    [rejected] = engine.apply(place("c1", "BUY", "0.02", "60000"))
    assert rejected.reason is RejectReason.DUPLICATE_CLIENT_ORDER_ID
    assert engine_state(engine) == before


def test_same_client_order_id_in_another_account_is_a_new_order() -> None:
    engine = Engine(engine_config())
    engine.apply(place("c1", "BUY", "0.01", "60000"))
    events = engine.apply(place("c1", "BUY", "0.01", "60000", account="other"))
    assert [type(e) for e in events] == [OrderAccepted, AccountUpdated]


@pytest.mark.parametrize(
    "message",
    [place("c1", "BUY", "0.01", "60000"), place("bad", "BUY", "0.01", "60000.001"), Tick(ts=T0 + 1)],
    ids=["accepted-order", "rejected-order", "tick"],
)
def test_the_very_same_message_twice_has_no_second_effect(message) -> None:
    engine = Engine(_sim_config())
    assert engine.apply(message)
    state = engine_state(engine)
    assert engine.apply(message) == []
    assert engine_state(engine) == state


def test_the_very_same_cancel_twice_has_no_second_effect() -> None:
    engine = Engine(engine_config())
    engine.apply(place("c1", "BUY", "0.01", "60000"))
    message = cancel("c1", ts=T0 + 1)
    assert [type(e) for e in engine.apply(message)] == [OrderCancelled, AccountUpdated]
    state = engine_state(engine)
    assert engine.apply(message) == []
    assert engine_state(engine) == state


def test_a_new_cancel_of_a_cancelled_order_is_rejected_as_not_open() -> None:
    engine = Engine(engine_config())
    engine.apply(place("c1", "BUY", "0.01", "60000"))
    engine.apply(cancel("c1", ts=T0 + 1))
    [rejected] = engine.apply(cancel("c1", ts=T0 + 2))
    assert rejected.reason is RejectReason.ORDER_NOT_OPEN


def test_cancel_of_an_unknown_order_is_rejected() -> None:
    [rejected] = Engine(engine_config()).apply(cancel("nope"))
    assert (rejected.reason, rejected.symbol) == (RejectReason.UNKNOWN_ORDER, "")


def test_each_fill_of_a_taker_says_what_was_left_after_it() -> None:
    """One order taking several resting orders: every fill report carries the remainder after its own fill. (They
    all carried the last one, which closed an order by quote amount at its first fill, the rest booked as errors.)"""
    engine = Engine(replace(engine_config(), instruments=(btcusdt(max_qty=d("1")), ethusdt())))
    engine.apply(trade("100"))
    for i, price in enumerate(("100", "100.01", "100.02")):
        engine.apply(place(f"ask{i}", "SELL", "0.5", price, account="other"))
    reports: list = []
    venue = engine.venues["BTCUSDT"]
    submit = venue.submit
    venue.submit = lambda request: _keep(submit(request), reports)  # type: ignore[method-assign]
    events = engine.apply(place("q", "BUY", None, None, quote_qty="1000"))
    taker = [r for r in reports if r.client_order_id == "q" and hasattr(r, "leaves_qty")]
    assert [(r.qty, r.leaves_qty) for r in taker] == [(d("0.5"), d("0.5")), (d("0.5"), 0)]
    assert not [e for e in events if type(e) is Error]
    assert [e.qty for e in events if type(e) is OrderFilled and e.account_id == "main"] == [d("0.5"), d("0.5")]
    order = engine.oms.get("main", "q")
    assert order.status is OrderStatus.FILLED and order.filled == order.qty == d("1")
    assert engine.totals() == engine.deposited() and engine.ledger.conserved()


def _keep(reports: list, into: list) -> list:
    into.extend(reports)
    return reports


def test_an_older_tick_changes_nothing() -> None:
    engine = Engine(_sim_config())
    engine.apply(Tick(ts=T0 + 10))
    state = engine_state(engine)
    assert engine.apply(Tick(ts=T0 + 5)) == []
    assert engine_state(engine) == state


def test_tick_moves_the_simulated_market_and_reports_its_top() -> None:
    engine = Engine(_sim_config())
    events = engine.apply(Tick(ts=T0))
    tops = [e for e in events if type(e) is BookTop]
    assert [t.symbol for t in tops] == ["BTCUSDT", "ETHUSDT"]
    assert all(0 < t.bid_price < t.ask_price for t in tops)
    assert not any(getattr(e, "account_id", "") == "sim-mm" for e in events)  # the market maker is quiet


def test_message_the_engine_does_not_apply_gives_an_error_event() -> None:
    [error] = Engine(engine_config()).apply(AccountUpdated(account_id="main", balances=(), ts=1))
    assert type(error) is Error and error.code == "UNSUPPORTED_MESSAGE"


def test_market_event_for_an_unknown_symbol_is_ignored() -> None:
    engine = Engine(engine_config())
    assert engine.apply(trade("1", symbol="DOGEUSDT")) == []
    assert engine.reference == {}


def test_config_survives_its_json_form() -> None:
    config = _sim_config()
    data = orjson.loads(orjson.dumps(config.to_json()))
    assert EngineConfig.from_json(data) == config
    assert data == config.to_json()  # what a journal header holds compares equal to the live config


def test_journal_holds_every_input_in_order(tmp_path: Path) -> None:
    path = tmp_path / "engine.journal"
    engine = Engine(_sim_config(), journal_path=path, durability="none")
    messages = _session(5)
    engine.apply_many(messages)
    engine.close()
    assert read_journal(path)[1] == messages


def test_replay_gives_the_same_events_and_state(tmp_path: Path) -> None:
    path = tmp_path / "engine.journal"
    engine = Engine(_sim_config(), journal_path=path, durability="group")
    events = engine.apply_many(_session())
    engine.close()
    replayed, replay_events = replay(path)
    assert encoded(replay_events) == encoded(events)
    assert engine_state(replayed) == engine_state(engine)


def test_replay_with_another_config_is_a_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "engine.journal"
    Engine(_sim_config(), journal_path=path, durability="none").close()
    with pytest.raises(JournalError, match="different configuration"):
        replay(path, _sim_config(seed=8))


def test_a_changed_config_is_named_in_the_numbers_the_user_wrote(tmp_path: Path) -> None:
    """The changed-config error named money and fractions in the engine's 1e-8 units (a balance of 100000 USDT as
    10000000000000, a 5 % price band as 5000000): they read as the user wrote them; counts stay counts."""
    path = tmp_path / "engine.journal"
    Engine(engine_config(), journal_path=path, durability="none").close()
    balances = {account: {"USDT": d("100000"), "BTC": d("2"), "ETH": d("20")} for account in ("main", "other")}
    balances["main"]["USDT"] = d("100000.5")
    edited = engine_config(balances=balances, risk=RiskLimits(price_band=d("0.1"), burst=60))
    with pytest.raises(JournalError) as raised:
        Engine(edited, journal_path=path, durability="none")
    assert (
        "(balances.main.USDT: 100000 in the journal, 100000.5 now; risk.burst: 50 in the journal, 60 now; "
        "risk.price_band: 0.05 in the journal, 0.1 now)"
    ) in str(raised.value)


def test_recover_continues_an_existing_journal(tmp_path: Path) -> None:
    path = tmp_path / "engine.journal"
    messages = _session(10)
    engine = Engine(_sim_config(), journal_path=path, durability="none")
    engine.apply_many(messages[:15])
    engine.close()
    recovered, _ = Engine.recover(_sim_config(), path, durability="none")
    recovered.apply_many(messages[15:])
    recovered.close()
    full = Engine(_sim_config())
    full.apply_many(messages)
    assert engine_state(recovered) == engine_state(full)
    assert read_journal(path)[1] == messages


def test_snapshot_plus_journal_tail_equals_full_replay(tmp_path: Path) -> None:
    path = tmp_path / "engine.journal"
    config = _sim_config(snapshot_every=7)
    engine = Engine(config, journal_path=path, durability="none")
    messages = _session(12)
    events = engine.apply_many(messages)
    engine.close()
    snapshot_lines, _ = read_snapshot(Path(str(path) + ".snapshot"))
    assert 0 < snapshot_lines < len(messages)  # a real tail is left to apply
    recovered, tail_events = Engine.recover(config, path, durability="none")
    recovered.close()
    replayed, _ = replay(path)
    assert engine_state(recovered) == engine_state(replayed) == engine_state(engine)
    assert encoded(tail_events) == encoded(events[len(events) - len(tail_events) :])
    assert _internals(recovered) == _internals(replayed)


def test_a_snapshot_ahead_of_a_journal_that_lost_its_tail_is_never_used(tmp_path: Path) -> None:
    """A crash can leave a snapshot covering lines the journal never got to disk (durability ``none``, or a power loss
    within the group window). Recovery must replay the journal alone, now and after new lines grow it again."""
    path = tmp_path / "engine.journal"
    config = _sim_config(snapshot_every=7)
    messages = _session(12)
    engine = Engine(config, journal_path=path, durability="none")
    engine.apply_many(messages[:21])  # snapshots after 7, 14 and 21 lines
    engine.close()
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[: 1 + 17]))  # header + 17 lines: the last 4 never reached the disk
    recovered, _ = Engine.recover(config, path, durability="none")
    assert not Path(str(path) + ".snapshot").exists()
    survivors = messages[:17] + messages[21:30]  # the lost 4 are gone; the engine goes on with the next inputs
    recovered.apply_many(messages[21:30])
    recovered.close()
    again, _ = Engine.recover(config, path, durability="none")
    again.close()
    expected = Engine(config)
    expected.apply_many(survivors)
    assert engine_state(again) == engine_state(expected)
    assert _internals(again) == _internals(expected)


def test_a_damaged_snapshot_stops_recovery_with_its_name_and_the_journal_alone_recovers(tmp_path: Path) -> None:
    """A flipped bit in a balance, or a snapshot cut short: recovery says which file, and never restores it."""
    path = tmp_path / "engine.journal"
    config = _sim_config(snapshot_every=20)
    engine = Engine(config, journal_path=path, durability="none")
    engine.apply_many(_session(10))
    engine.close()
    snapshot = Path(str(path) + ".snapshot")
    good = snapshot.read_bytes()
    for damaged in (good[:-1] + bytes([good[-1] ^ 0x01]), good[: len(good) // 2]):
        snapshot.write_bytes(damaged)
        with pytest.raises(JournalError, match=f"snapshot {snapshot} is damaged"):
            Engine.recover(config, path, durability="none")
    snapshot.unlink()  # what the error says to do
    recovered, _ = Engine.recover(config, path, durability="none")
    recovered.close()
    assert engine_state(recovered) == engine_state(engine) and _internals(recovered) == _internals(engine)


def test_a_snapshot_whose_state_does_not_load_is_a_journal_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "engine.journal"
    Engine(engine_config(), journal_path=path, durability="none").close()
    snapshot = Path(str(path) + ".snapshot")
    write_snapshot(snapshot, 0, b"\x80\x05not a pickle")  # a sound file whose state other code wrote
    with pytest.raises(JournalError, match=f"snapshot {snapshot} cannot be loaded"):
        Engine.recover(engine_config(), path, durability="none")


def _evicting_run(journal: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[EngineConfig, Engine]:
    """An engine whose kernel evicts every 8 of its steps, snapshotted every 14 inputs, closed after 60 inputs."""
    monkeypatch.setattr(kernel_module, "_EVICT_EVERY", 8)
    config = replace(_sim_config(snapshot_every=14), retain_closed_ns=1)
    engine = Engine(config, journal_path=journal, durability="none")
    for i in range(30):
        engine.apply(place(f"o{i}", "BUY", "0.01", "59500", ts=T0 + i * 1000))
        engine.apply(cancel(f"o{i}", ts=T0 + i * 1000))
    engine.close()
    return config, engine


def test_recovery_from_a_snapshot_writes_each_evicted_order_to_the_history_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "engine.journal"
    config, engine = _evicting_run(journal, monkeypatch)
    history = Path(str(journal) + ".orders")
    written = history.read_bytes()
    assert engine.kernel.evicted > 0 and read_snapshot(Path(str(journal) + ".snapshot"))[0] < 60
    for _ in range(2):
        recovered, _ = Engine.recover(config, journal, durability="none")
        recovered.close()
        assert history.read_bytes() == written
    assert [r["client_order_id"] for r in recovered.kernel.order_history("main")] == [
        f"o{i}" for i in range(engine.kernel.evicted)
    ]


def test_a_snapshot_recovered_elsewhere_never_writes_to_the_files_of_the_run_that_took_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``veloz replay --from-snapshot`` does on a copy: the copy's order history grows, the live run's never."""
    live = tmp_path / "live" / "engine.journal"
    config, engine = _evicting_run(live, monkeypatch)
    files = {p.name: p.read_bytes() for p in live.parent.iterdir()}
    copy = tmp_path / "copy" / "engine.journal"
    copy.parent.mkdir()
    for suffix in ("", ".snapshot", ".orders"):
        shutil.copy(str(live) + suffix, str(copy) + suffix)
    recovered, _ = Engine.recover(config, copy, durability="none")
    recovered.close()
    assert {p.name: p.read_bytes() for p in live.parent.iterdir()} == files
    assert Path(str(copy) + ".orders").read_bytes() == files["engine.journal.orders"]
    assert engine_state(recovered) == engine_state(engine)


def test_a_second_engine_on_a_journal_in_use_is_refused_before_it_touches_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two engines on one journal each reserved the same funds, and the journal replayed to a state neither had."""
    journal = tmp_path / "engine.journal"
    config, _ = _evicting_run(journal, monkeypatch)
    running, _ = Engine.recover(config, journal, durability="always")
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(JournalError, match=f"journal {journal} is open in another engine"):
        Engine.recover(config, journal, durability="always")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files
    running.close()
    again, _ = Engine.recover(config, journal, durability="always")  # once the first has stopped
    again.close()


def test_a_snapshot_that_cannot_be_written_is_an_error_event_of_its_step_and_is_tried_again(tmp_path: Path) -> None:
    """The step was journaled, applied and sent to the venue before the snapshot: its events reach the caller."""
    path = tmp_path / "engine.journal"
    snapshot = Path(str(path) + ".snapshot")
    engine = Engine(_sim_config(snapshot_every=2), journal_path=path, durability="none")
    blocker = Path(str(snapshot) + ".tmp")
    blocker.mkdir()  # the snapshot cannot be written
    engine.apply(place("x0", "BUY", "0.01", "59500", ts=T0))
    events = engine.apply(place("x1", "BUY", "0.01", "59500", ts=T0 + 1))
    assert type(events[0]) is OrderAccepted and events[0].client_order_id == "x1"
    [error] = [e for e in events if type(e) is Error]
    assert error.code == "SNAPSHOT_FAILED" and f"snapshot {snapshot} not written" in error.message
    assert not snapshot.exists()
    blocker.rmdir()
    for i in (2, 3):
        assert not [e for e in engine.apply(place(f"x{i}", "BUY", "0.01", "59500", ts=T0 + i)) if type(e) is Error]
    assert read_snapshot(snapshot)[0] == 4  # tried again when next due
    engine.close()
    recovered, _ = Engine.recover(engine.config, path, durability="none")
    recovered.close()
    assert engine_state(recovered) == engine_state(engine)


def _internals(engine: Engine) -> tuple:
    """Engine state beyond balances and orders: books, prices, counters and the simulated market's generator."""
    venues = engine.venues
    assert all(v.market is not None for v in venues.values())
    return (
        {s: v.book.depth(100) for s, v in venues.items()},
        engine.reference,
        {s: v.trade_id for s, v in venues.items()},
        engine.seq,
        engine.last_tick,
        engine.kernel.internal_orders,
        {s: v.market.mids for s, v in venues.items()},  # type: ignore[union-attr]
        {s: v.market.rng.bit_generator.state for s, v in venues.items()},  # type: ignore[union-attr]
        {s: v.maker.export() for s, v in venues.items()},
    )


def test_recover_without_a_journal_starts_fresh(tmp_path: Path) -> None:
    engine, events = Engine.recover(engine_config(), tmp_path / "new.journal", durability="none")
    engine.close()
    assert events == [] and engine.seq == 0
    assert engine.ledger.balances("main")["USDT"] == (d("100000"), 0)


def test_recover_with_another_config_is_a_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "engine.journal"
    Engine(engine_config(), journal_path=path, durability="none").close()
    with pytest.raises(JournalError):
        Engine.recover(_sim_config(), path, durability="none")


def test_rejected_orders_are_journaled_too(tmp_path: Path) -> None:
    path = tmp_path / "engine.journal"
    engine = Engine(engine_config(), journal_path=path, durability="none")
    bad = place("bad", "BUY", "0.01", "-5")
    assert type(engine.apply(bad)[0]) is OrderRejected
    engine.close()
    assert read_journal(path)[1] == [bad]
