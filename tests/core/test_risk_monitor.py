"""The engine-wide risk monitor: its ledger follows the kernel's exactly, limits halt once with their numbers, fills
are booked once, and its state survives a snapshot and a restart from its journal."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veloz_actors._exceptions import ConfigError, InvalidInput, JournalError
from veloz_actors.config import parse_engine_config
from veloz_actors.core.journal import read_journal
from veloz_actors.core.risk_monitor import EngineRiskLimits, RiskMonitor, RiskMonitorConfig, kill_switch_commands
from veloz_actors.messages import (
    AccountUpdated,
    Balance,
    CancelAllOrders,
    HaltTrading,
    Liquidity,
    OrderFilled,
    OrderRejected,
    OrderType,
    PlaceOrder,
    PositionUpdated,
    RejectReason,
    ResetCircuitBreaker,
    Side,
    Tick,
    TimeInForce,
)
from veloz_actors.testing import ACCOUNTS, START_NS, book_top, cancel, d, engine_config, instruments, trade
from veloz_actors.venues.engine import Engine

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def _config(limits: EngineRiskLimits | None = None, **options: Any) -> RiskMonitorConfig:
    """One account with 100000 USDT and 2 BTC, BTCUSDT at 60000: equity 220000 USDT."""
    return RiskMonitorConfig(
        instruments=instruments(),
        balances={"main": {"USDT": d("100000"), "BTC": d("2")}},
        limits=limits or EngineRiskLimits(),
        reference_prices={"BTCUSDT": d("60000"), "ETHUSDT": d("2500")},
        **options,
    )


def _fill(
    qty: str,
    price: str,
    *,
    side: Side = Side.BUY,
    trade_id: int = 1,
    cid: str = "c1",
    account: str = "main",
    symbol: str = "BTCUSDT",
    fee: str = "0",
    fee_asset: str = "USDT",
    ts: int = START_NS,
) -> OrderFilled:
    return OrderFilled(
        client_order_id=cid,
        order_id=1,
        account_id=account,
        symbol=symbol,
        side=side,
        trade_id=trade_id,
        price=d(price),
        qty=d(qty),
        fee=d(fee),
        fee_asset=fee_asset,
        liquidity=Liquidity.TAKER,
        cum_qty=d(qty),
        leaves_qty=0,
        ts=ts,
    )


# ------------------------------------------------------------------------------------- agreement with the kernel

order_op = st.tuples(
    st.just("order"),
    st.sampled_from(ACCOUNTS),
    st.sampled_from(SYMBOLS),
    st.sampled_from(list(Side)),
    st.sampled_from(("limit", "limit", "market", "ioc", "quote")),
    st.integers(min_value=1, max_value=300),  # quantity in steps x 10
    st.integers(min_value=-8, max_value=8),  # price offset from the reference, in ticks x 100
)
cancel_op = st.tuples(st.just("cancel"), st.sampled_from(ACCOUNTS), st.integers(min_value=0, max_value=30))
market_op = st.tuples(
    st.sampled_from(["tick", "tick", "trade", "book_top"]), st.sampled_from(SYMBOLS), st.integers(-30, 30)
)
operations = st.lists(st.one_of(order_op, order_op, cancel_op, market_op), min_size=1, max_size=50)


def _message(engine: Engine, op: tuple, ts: int, cids: list[tuple[str, str]]) -> Any:
    kind = op[0]
    if kind == "cancel":
        mine = [cid for account, cid in cids if account == op[1]]
        return cancel(mine[op[2] % len(mine)] if mine else f"x{op[2]}", account=op[1], ts=ts)
    if kind == "tick":
        return Tick(ts=ts)
    if kind in ("trade", "book_top"):
        symbol, inst = op[1], engine.instruments[op[1]]
        price = max(inst.price_tick, engine.reference[symbol] + op[2] * 50 * inst.price_tick)
        if kind == "trade":
            return trade("0", symbol=symbol, ts=ts, trade_id=ts).__class__(
                symbol=symbol, trade_id=ts, price=price, qty=inst.qty_step, aggressor=Side.BUY, ts_event=ts, ts_recv=ts
            )
        top = book_top("1", "2", symbol=symbol, ts=ts)
        return top.__class__(
            symbol=symbol, bid_price=price - inst.price_tick, bid_qty=inst.qty_step, ask_price=price + inst.price_tick,
            ask_qty=inst.qty_step, update_id=ts, ts_event=ts, ts_recv=ts,
        )  # fmt: skip
    _, account, symbol, side, order_kind, steps, offset = op
    inst = engine.instruments[symbol]
    reference = engine.reference[symbol]
    cid = f"o{len(cids)}"
    cids.append((account, cid))
    qty = steps * 10 * inst.qty_step
    if order_kind == "quote":
        return PlaceOrder(client_order_id=cid, account_id=account, symbol=symbol, side=Side.BUY,
                          order_type=OrderType.MARKET, quote_qty=qty * reference // 10**8, ts=ts)  # fmt: skip
    market = order_kind == "market"
    return PlaceOrder(
        client_order_id=cid, account_id=account, symbol=symbol, side=side,
        order_type=OrderType.MARKET if market else OrderType.LIMIT, qty=qty,
        price=None if market else max(inst.price_tick, reference + offset * 100 * inst.price_tick),
        tif=TimeInForce.IOC if order_kind == "ioc" else TimeInForce.GTC, ts=ts,
    )  # fmt: skip


def _session(ops: list[tuple]) -> tuple[Engine, list[Any]]:
    """Run ``ops`` through the single-process engine; returns it and what its bus carries (inputs' market data and
    every event), in order."""
    engine = Engine(engine_config(sim=True, levels=2))
    bus: list[Any] = list(engine.apply(Tick(ts=START_NS)))
    cids: list[tuple[str, str]] = []
    for i, op in enumerate(ops, start=1):
        message = _message(engine, op, START_NS + i * 1_000_000, cids)
        if op[0] in ("trade", "book_top"):
            bus.append(message)
        bus.extend(engine.apply(message))
    return engine, bus


def _kernel_equity(engine: Engine) -> int:
    return sum(engine.kernel.equity(account) for account in engine.kernel.ledger.account_ids())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_exposure_and_equity_equal_the_kernels_after_a_random_session(ops: list[tuple]) -> None:
    engine, bus = _session(ops)
    monitor = RiskMonitor(RiskMonitorConfig.from_kernel(engine.kernel.config, EngineRiskLimits()))
    assert monitor.apply_many(bus) == []
    assert monitor.exposure() == engine.kernel.exposure()
    assert monitor.equity() == (_kernel_equity(engine), True)
    assert monitor.fills == sum(type(e) is OrderFilled for e in bus)
    assert monitor.apply_many(bus) == []  # the whole stream re-sent: nothing booked twice
    assert monitor.exposure() == engine.kernel.exposure()


def test_the_session_harness_produces_fills_in_both_accounts_and_symbols() -> None:
    ops = [
        ("order", "main", "BTCUSDT", Side.BUY, "market", 5, 0),
        ("order", "other", "ETHUSDT", Side.SELL, "market", 30, 0),
        ("order", "other", "BTCUSDT", Side.BUY, "quote", 3, 0),
        ("tick", "BTCUSDT", 0),
        ("trade", "BTCUSDT", -5),
        ("book_top", "ETHUSDT", 4),
    ]
    engine, bus = _session(ops)
    fills = {(e.account_id, e.symbol) for e in bus if type(e) is OrderFilled}
    assert fills == {("main", "BTCUSDT"), ("other", "ETHUSDT"), ("other", "BTCUSDT")}
    monitor = RiskMonitor(RiskMonitorConfig.from_kernel(engine.kernel.config, EngineRiskLimits()))
    monitor.apply_many(bus)
    assert monitor.exposure() == engine.kernel.exposure()
    assert monitor.equity() == (_kernel_equity(engine), True)


def test_a_halt_from_the_monitor_stops_the_kernel_buying() -> None:
    engine = Engine(engine_config(sim=True, levels=2))
    bus = engine.apply(Tick(ts=START_NS))
    limits = EngineRiskLimits(max_symbol_exposure={"BTCUSDT": d("0.01")})
    monitor = RiskMonitor(RiskMonitorConfig.from_kernel(engine.kernel.config, limits))
    bus += engine.apply(PlaceOrder(client_order_id="b1", symbol="BTCUSDT", side=Side.BUY,
                                   order_type=OrderType.MARKET, qty=d("0.02"), ts=START_NS + 1))  # fmt: skip
    commands = monitor.apply_many(bus)
    assert [type(c) for c in commands] == [HaltTrading]
    for command in commands:
        engine.apply(command)
    events = engine.apply(PlaceOrder(client_order_id="b2", symbol="BTCUSDT", side=Side.BUY,
                                     order_type=OrderType.MARKET, qty=d("0.001"), ts=START_NS + 2))  # fmt: skip
    rejected = [e for e in events if type(e) is OrderRejected]
    assert rejected and rejected[0].reason is RejectReason.CIRCUIT_BREAKER
    assert "engine exposure in BTCUSDT 0.02 above the limit 0.01" in rejected[0].detail


# ----------------------------------------------------------------------------------------------------- the ledger


def test_a_buy_pays_notional_and_quote_fee_and_a_sell_receives_notional_less_fee() -> None:
    monitor = RiskMonitor(_config())
    monitor.apply(_fill("0.5", "60000", fee="30"))
    monitor.apply(_fill("0.2", "61000", side=Side.SELL, cid="c2", fee="12.2"))
    assert monitor.exposure() == {
        "main": {"USDT": d("100000") - d("30000") - d("30") + d("12200") - d("12.2"), "BTC": d("2.3"),
                 "BTCUSDT": d("0.3")},
    }  # fmt: skip


def test_a_fee_in_another_asset_comes_out_of_that_asset() -> None:
    monitor = RiskMonitor(_config())
    monitor.apply(_fill("0.5", "60000", fee="0.01", fee_asset="BNB"))
    assert monitor.exposure()["main"] == {"USDT": d("70000"), "BTC": d("2.5"), "BNB": d("-0.01"), "BTCUSDT": d("0.5")}


def test_a_resent_fill_is_booked_once() -> None:
    monitor = RiskMonitor(_config())
    fill = _fill("0.5", "60000", fee="30")
    monitor.apply(fill)
    once = monitor.exposure()
    monitor.apply_many([fill, fill])
    assert monitor.exposure() == once
    assert (monitor.fills, monitor.duplicate_fills) == (1, 2)
    monitor.apply(_fill("0.5", "60000", trade_id=2))  # the same order's next trade is a new fill
    assert monitor.exposure()["main"]["BTCUSDT"] == d("1")


def test_fill_keys_are_bounded_and_forgetting_is_counted() -> None:
    monitor = RiskMonitor(_config(max_fill_keys=2))
    for trade_id in range(1, 5):
        monitor.apply(_fill("0.01", "60000", trade_id=trade_id))
    assert len(monitor._fill_keys) == 2
    assert monitor.forgotten_fill_keys == 2
    assert monitor.status()["forgotten_fill_keys"] == 2


# -------------------------------------------------------------------------------------------------------- limits


def test_drawdown_halts_once_with_the_numbers_in_the_reason() -> None:
    monitor = RiskMonitor(_config(EngineRiskLimits(max_drawdown=d("0.1"))))
    assert monitor.apply(trade("55000", ts=START_NS + 1)) == []  # 210000: 4.5 % below 220000
    commands = monitor.apply(trade("48000", ts=START_NS + 2))  # 196000: 10.9 % below
    assert commands == [
        HaltTrading(
            account_id="*",
            reason="risk monitor: engine drawdown 0.1090909 from peak equity 220000 USDT (equity 196000) above "
            "the limit 0.1",
            ts=START_NS + 2,
        )
    ]
    assert monitor.apply(trade("40000", ts=START_NS + 3)) == []  # still crossed: no second halt
    assert monitor.status()["halted"] is True
    assert monitor.gauges()["halted"] == 1.0


def test_a_limit_back_under_is_armed_again() -> None:
    monitor = RiskMonitor(_config(EngineRiskLimits(max_drawdown=d("0.1"))))
    assert len(monitor.apply(trade("48000", ts=START_NS + 1))) == 1
    assert monitor.apply(trade("59000", ts=START_NS + 2)) == []  # back under the limit
    assert len(monitor.apply(trade("48000", ts=START_NS + 3))) == 1  # a second crossing


def test_symbol_and_asset_exposure_halt_with_their_numbers() -> None:
    limits = EngineRiskLimits(max_symbol_exposure={"BTCUSDT": d("0.5")}, max_asset_exposure={"BTC": d("2.6")})
    monitor = RiskMonitor(_config(limits))
    assert monitor.apply(_fill("0.5", "60000")) == []  # at the limit is not above it
    commands = monitor.apply(_fill("0.2", "60000", trade_id=2))
    assert [c.reason for c in commands] == [
        "risk monitor: engine exposure in BTCUSDT 0.7 above the limit 0.5",
        "risk monitor: engine holdings of BTC 2.7 above the limit 2.6",
    ]
    assert monitor.status()["limits_crossed"].keys() == {"symbol_exposure:BTCUSDT", "asset_exposure:BTC"}


def test_gross_exposure_and_loss_halt_with_their_numbers() -> None:
    monitor = RiskMonitor(_config(EngineRiskLimits(max_gross_exposure=d("50000"))))
    assert monitor.apply(_fill("1", "60000")) == [
        HaltTrading(
            account_id="*", reason="risk monitor: gross exposure 60000 USDT above the limit 50000 USDT", ts=START_NS
        )  # fmt: skip
    ]
    monitor = RiskMonitor(_config(EngineRiskLimits(max_loss=d("10000"))))
    (halt,) = monitor.apply(trade("54000"))  # 2 BTC lose 12000
    assert halt.reason == (
        "risk monitor: engine loss 12000 USDT from the starting equity 220000 above the limit 10000 USDT"
    )


def test_drawdown_waits_for_a_mark_of_every_held_asset() -> None:
    config = RiskMonitorConfig(
        instruments=instruments(),
        balances={"main": {"USDT": d("100000"), "BTC": d("2")}},
        limits=EngineRiskLimits(max_drawdown=d("0.1")),
    )
    monitor = RiskMonitor(config)
    assert monitor.equity() == (d("100000"), False)
    assert monitor.apply(book_top("60000", "60000.02")) == []  # the first mark: the start, not a 55 % rise
    assert monitor.status()["start_equity"] == "220000.02"
    assert len(monitor.apply(trade("48000", ts=START_NS + 1))) == 1


def test_kill_switch_cancels_everything_then_halts_and_reset_resumes() -> None:
    monitor = RiskMonitor(_config())
    assert monitor.kill_switch(START_NS + 5) == [
        CancelAllOrders(account_id="*", ts=START_NS + 5),
        HaltTrading(account_id="*", reason="kill switch", ts=START_NS + 5),
    ]
    assert monitor.status()["halt_reason"] == "kill switch"
    assert monitor.reset(START_NS + 6) == [ResetCircuitBreaker(account_id="*", ts=START_NS + 6)]  # the engine-wide halt
    assert monitor.status()["halted"] is False
    assert monitor.reset(START_NS + 7) == []  # nothing halted: nothing to lift


def test_reset_measures_drawdown_from_the_current_equity() -> None:
    monitor = RiskMonitor(_config(EngineRiskLimits(max_drawdown=d("0.1"))))
    assert len(monitor.apply(trade("48000", ts=START_NS + 1))) == 1
    monitor.reset(START_NS + 2)
    assert monitor.status()["peak_equity"] == "196000"
    assert monitor.apply(trade("47000", ts=START_NS + 3)) == []  # 1 % below the new peak


def test_limits_and_config_refuse_bad_values_at_construction() -> None:
    with pytest.raises(InvalidInput, match="max_loss"):
        EngineRiskLimits(max_loss=-1)
    with pytest.raises(InvalidInput, match="max_drawdown"):
        EngineRiskLimits(max_drawdown=d("1.5"))
    with pytest.raises(InvalidInput, match="unknown symbols"):
        RiskMonitorConfig(instruments=instruments(), balances={}, reference_prices={"XRPUSDT": 1})


def test_gauges_name_every_measure_and_each_set_limits_use() -> None:
    limits = EngineRiskLimits(max_symbol_exposure={"BTCUSDT": d("1")}, max_drawdown=d("0.2"))
    monitor = RiskMonitor(_config(limits))
    monitor.apply(_fill("0.5", "60000"))
    gauges = monitor.gauges()
    assert gauges["symbol_exposure:BTCUSDT"] == 0.5
    assert gauges["limit_use:symbol_exposure:BTCUSDT"] == 0.5
    assert gauges["equity"] == 220000.0
    assert gauges["asset_exposure:BTC"] == 2.5
    assert gauges["limit_use:drawdown"] == 0.0
    assert gauges["halted"] == 0.0
    assert all(type(v) is float for v in gauges.values())


# --------------------------------------------------------------------------------------------------- persistence


def _busy(monitor: RiskMonitor) -> None:
    monitor.apply(_fill("0.5", "60000", fee="30"))
    monitor.apply(book_top("59000", "59000.04", ts=START_NS + 1))
    monitor.apply(_fill("0.1", "59000", side=Side.SELL, cid="c2", fee="0.001", fee_asset="BNB", ts=START_NS + 2))
    monitor.apply(trade("40000", ts=START_NS + 3))


def test_snapshot_round_trip_keeps_the_whole_state() -> None:
    monitor = RiskMonitor(_config(EngineRiskLimits(max_drawdown=d("0.1"))))
    _busy(monitor)
    copy = RiskMonitor(_config(EngineRiskLimits(max_drawdown=d("0.1"))))
    copy.restore(monitor.snapshot())
    assert copy.exposure() == monitor.exposure()
    assert copy.status() == monitor.status()
    assert copy.gauges() == monitor.gauges()
    assert pickle.loads(pickle.dumps(monitor)).exposure() == monitor.exposure()
    assert copy.apply(_fill("0.5", "60000", fee="30")) == []  # the fill keys came along


@pytest.mark.parametrize("snapshot_every", [1, 3, 1000])
def test_recover_from_journal_and_snapshot(snapshot_every: int) -> None:
    config = _config(EngineRiskLimits(max_drawdown=d("0.1")), snapshot_every=snapshot_every)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "risk.journal"
        monitor = RiskMonitor(config, journal_path=path, durability="none")
        _busy(monitor)
        monitor.apply(_fill("0.5", "60000", fee="30"))  # a duplicate: not journaled
        monitor.close()
        recovered, commands = RiskMonitor.recover(config, path, durability="none")
        recovered.close()
    assert recovered.exposure() == monitor.exposure()
    unjournaled = {"journal": None, "duplicate_fills": None}  # duplicates change nothing, so are not journaled
    assert recovered.status() | unjournaled == monitor.status() | unjournaled
    assert monitor.status()["journal_lines"] == 5  # four inputs and the halt the drawdown sent
    assert commands == [HaltTrading(account_id="*", reason=monitor.halted or "", ts=START_NS + 3)]


def test_recover_after_a_reset_sends_nothing_and_refuses_other_balances() -> None:
    config = _config(EngineRiskLimits(max_drawdown=d("0.1")))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "risk.journal"
        monitor = RiskMonitor(config, journal_path=path, durability="none")
        _busy(monitor)
        monitor.kill_switch(START_NS + 4)
        monitor.reset(START_NS + 5)
        monitor.close()
        recovered, commands = RiskMonitor.recover(config, path, durability="none")
        recovered.close()
        assert commands == []
        assert recovered.status()["kill_switches"] == 1
        assert recovered.status()["peak_equity"] == monitor.status()["peak_equity"]
        other = RiskMonitorConfig(instruments=instruments(), balances={"main": {"USDT": d("1")}})
        with pytest.raises(JournalError, match="different instruments, balances"):
            RiskMonitor.recover(other, path, durability="none")


def test_recover_takes_the_journals_lock_before_it_reads_or_cuts_any_file() -> None:
    """It read the journal and could delete a snapshot while the process it replaces still wrote them."""
    config = _config(EngineRiskLimits(max_drawdown=d("0.1")))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "risk.journal"
        monitor = RiskMonitor(config, journal_path=path, durability="none")
        _busy(monitor)
        snapshot = Path(str(path) + ".snapshot")
        snapshot.write_bytes(b"not a snapshot")  # one recovery would refuse (or, covering lost lines, delete)
        files = {f.name: f.read_bytes() for f in Path(tmp).iterdir()}
        with pytest.raises(JournalError, match=r"is open in another engine .*\(waited 0.2 s\)"):
            RiskMonitor.recover(config, path, durability="none", lock_wait=0.2)
        assert {f.name: f.read_bytes() for f in Path(tmp).iterdir()} == files
        monitor.close()
        snapshot.unlink()
        recovered, _ = RiskMonitor.recover(config, path, durability="none", lock_wait=0.2)
        assert recovered.exposure() == monitor.exposure()
        recovered.close()


def test_recover_after_a_kill_switch_sends_its_cancel_all_again_then_the_halt() -> None:
    """The OMS may never have had the kill switch's commands (it was restarting when they went): a restarted monitor
    sends both again, not only the halt."""
    config = _config(EngineRiskLimits(max_drawdown=d("0.1")))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "risk.journal"
        monitor = RiskMonitor(config, journal_path=path, durability="none")
        monitor.kill_switch(START_NS + 4)
        monitor.close()
        recovered, commands = RiskMonitor.recover(config, path, durability="none")
        recovered.close()
    assert commands == kill_switch_commands(recovered.now)
    assert [type(c) for c in commands] == [CancelAllOrders, HaltTrading]


def test_a_restart_with_new_limits_keeps_the_state_and_applies_them() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "risk.journal"
        monitor = RiskMonitor(_config(snapshot_every=2), journal_path=path, durability="none")
        _busy(monitor)
        monitor.close()
        stricter = _config(EngineRiskLimits(max_symbol_exposure={"BTCUSDT": d("0.1")}), snapshot_every=2)
        recovered, commands = RiskMonitor.recover(stricter, path, durability="none")
        assert commands == []  # no halt was in force
        assert recovered.exposure() == monitor.exposure()
        assert recovered.limits == stricter.limits
        (halt,) = recovered.apply(_fill("0.1", "40000", trade_id=9, ts=START_NS + 9))
        recovered.close()
    assert halt.reason == "risk monitor: engine exposure in BTCUSDT 0.5 above the limit 0.1"


# ------------------------------------------------------------------------------------------------------- config


def _engine_file(engine_risk: dict[str, Any]) -> dict[str, Any]:
    instrument = {"symbol": "BTCUSDT", "base_asset": "BTC", "quote_asset": "USDT", "tick_size": "0.01",
                  "step_size": "0.00001", "min_qty": "0.00001", "max_qty": "9000", "min_notional": "10"}  # fmt: skip
    return {"instruments": [instrument], "balances": {"main": {"USDT": "1000"}}, "engine_risk": engine_risk}


def test_the_config_file_section_builds_the_limits_from_decimal_strings() -> None:
    section = {"max_symbol_exposure": {"BTCUSDT": "5"}, "max_asset_exposure": {"BTC": "7.5"},
               "max_gross_exposure": "300000", "max_drawdown": "0.2", "max_loss": "25000"}  # fmt: skip
    limits = parse_engine_config(_engine_file(section)).engine_risk.build()
    assert limits == EngineRiskLimits(
        max_symbol_exposure={"BTCUSDT": d("5")},
        max_asset_exposure={"BTC": d("7.5")},
        max_gross_exposure=d("300000"),
        max_drawdown=d("0.2"),
        max_loss=d("25000"),
    )
    assert parse_engine_config(_engine_file({})).engine_risk.build() == EngineRiskLimits()


def test_the_config_file_section_names_a_bad_value() -> None:
    with pytest.raises(ConfigError, match="engine_risk.max_drawdown"):
        parse_engine_config(_engine_file({"max_drawdown": "-0.1"}))
    with pytest.raises(ConfigError, match="max_leverage"):
        parse_engine_config(_engine_file({"max_leverage": "2"}))


# ------------------------------------------------------------------------------------------ the numbered stream


def _ledger(
    position: int, usdt: str, btc: str, btcusdt: str
) -> tuple[int, list[AccountUpdated], list[PositionUpdated]]:
    """What an OMS sends in a rebase: one account's balances and its BTCUSDT position at ``position``."""
    account = AccountUpdated(
        account_id="main", balances=(Balance(asset="BTC", free=d(btc), locked=0),
                                     Balance(asset="USDT", free=d(usdt) - d("100"), locked=d("100"))), ts=START_NS,
    )  # fmt: skip
    position_line = PositionUpdated(
        account_id="main", symbol="BTCUSDT", qty=d(btcusdt), avg_entry_price=d("60000"), cost=0, realized_pnl=0,
        unrealized_pnl=0, mark_price=d("60000"), ts=START_NS,
    )  # fmt: skip
    return position, [account], [position_line]


def _journal_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_a_segment_moves_the_position_after_its_fills_and_journals_it_as_a_tick() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "risk.journal"
        monitor = RiskMonitor(_config(), journal_path=path, durability="none")
        assert monitor.cursor == 0
        assert monitor.apply_segment(7, [_fill("0.5", "60000", trade_id=1), _fill("0.1", "60000", trade_id=2)]) == []
        monitor.close()
        _, lines = read_journal(path)
    assert monitor.cursor == 7
    assert monitor.exposure()["main"]["BTCUSDT"] == d("0.6")
    assert [type(line) for line in lines] == [OrderFilled, OrderFilled, Tick]  # the position after the fills
    assert lines[-1] == Tick(ts=7)
    assert monitor.status()["cursor"] == 7


def test_a_resent_segment_books_nothing_twice_and_journals_nothing() -> None:
    monitor = RiskMonitor(_config())
    segment = [_fill("0.5", "60000", trade_id=1), _fill("0.1", "60000", trade_id=2)]
    monitor.apply_segment(7, segment)
    once, lines = monitor.exposure(), monitor.seq
    assert monitor.apply_segment(7, segment) == []
    assert monitor.exposure() == once
    assert (monitor.cursor, monitor.seq) == (7, lines)  # no fill, no position line
    assert (monitor.fills, monitor.duplicate_fills) == (2, 2)


def test_a_segment_cut_short_by_a_crash_before_its_position_comes_again_and_books_once() -> None:
    """The fills are journaled before the position: a crash in between leaves the old position, and the segment
    sent again adds only the position."""
    config = _config()
    segment = [_fill("0.5", "60000", trade_id=1), _fill("0.1", "60000", trade_id=2)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "risk.journal"
        monitor = RiskMonitor(config, journal_path=path, durability="none")
        monitor.apply_segment(3, [_fill("0.2", "60000", trade_id=9)])
        monitor.apply_segment(7, segment)
        monitor.close()
        path.write_bytes(b"".join(_journal_lines(path)[:-1]))  # the Tick(7) never reached the disk
        recovered, _ = RiskMonitor.recover(config, path, durability="none")
        assert recovered.cursor == 3
        assert recovered.exposure() == monitor.exposure()  # the fills did reach it
        recovered.apply_segment(7, segment)
        recovered.close()
    assert recovered.cursor == 7
    assert recovered.exposure() == monitor.exposure()
    assert recovered.fills == 3


def test_an_empty_segment_at_the_position_changes_nothing() -> None:
    monitor = RiskMonitor(_config())
    monitor.apply_segment(4, [_fill("0.5", "60000")])
    seq = monitor.seq
    assert monitor.apply_segment(4, []) == []  # the OMS's probe
    assert (monitor.cursor, monitor.seq) == (4, seq)


def test_a_rebase_replaces_balances_and_positions_with_the_ledger_at_its_position() -> None:
    monitor = RiskMonitor(_config())
    monitor.apply_segment(3, [_fill("0.5", "60000", trade_id=1)])
    monitor.apply(trade("61000", ts=START_NS + 1))
    assert monitor.rebase(*_ledger(40, usdt="50000", btc="3", btcusdt="1")) == []
    assert monitor.cursor == 40
    assert monitor.exposure() == {"main": {"BTC": d("3"), "USDT": d("50000"), "BTCUSDT": d("1")}}
    assert monitor.equity() == (d("50000") + 3 * d("61000"), True)  # valued at the marks it had
    assert monitor.rebases == 1
    assert monitor.apply_segment(41, [_fill("0.5", "60000", trade_id=1)]) == []  # known before the rebase
    assert monitor.exposure()["main"]["BTCUSDT"] == d("1")


def test_a_rebase_drops_what_the_ledger_does_not_hold() -> None:
    monitor = RiskMonitor(_config())
    monitor.apply_segment(2, [_fill("0.5", "60000", account="other", symbol="BTCUSDT", trade_id=1)])
    assert "other" in monitor.exposure()
    monitor.rebase(*_ledger(9, usdt="1000", btc="0", btcusdt="0"))
    assert monitor.exposure() == {"main": {"BTC": 0, "USDT": d("1000"), "BTCUSDT": 0}}
    assert monitor.symbol_exposure() == {"BTCUSDT": 0}


def test_a_rebase_crossing_a_limit_halts() -> None:
    monitor = RiskMonitor(_config(EngineRiskLimits(max_symbol_exposure={"BTCUSDT": d("2")})))
    (halt,) = monitor.rebase(*_ledger(5, usdt="1000", btc="3", btcusdt="3"))
    assert halt.reason == "risk monitor: engine exposure in BTCUSDT 3 above the limit 2"


def test_exposure_and_equity_after_a_rebase_equal_the_kernels_ledger() -> None:
    ops = [
        ("order", "main", "BTCUSDT", Side.BUY, "market", 5, 0),
        ("order", "other", "ETHUSDT", Side.SELL, "market", 30, 0),
        ("order", "other", "BTCUSDT", Side.BUY, "quote", 3, 0),
        ("trade", "BTCUSDT", -5),
        ("order", "main", "ETHUSDT", Side.BUY, "market", 7, 0),
        ("book_top", "ETHUSDT", 4),
    ]
    engine, bus = _session(ops)
    kernel = engine.kernel
    ledger = kernel.ledger
    accounts = [ledger.account_event(a, kernel.now) for a in ledger.account_ids()]
    positions = [p.to_event(kernel.now) for _, p in sorted(ledger.positions.items())]
    monitor = RiskMonitor(RiskMonitorConfig.from_kernel(kernel.config, EngineRiskLimits()))
    monitor.apply_many([e for e in bus if type(e) is not OrderFilled])  # the marks, none of the fills
    assert monitor.exposure() != kernel.exposure()
    monitor.rebase(kernel.seq, accounts, positions)
    assert monitor.exposure() == kernel.exposure()
    assert monitor.equity() == (_kernel_equity(engine), True)
    assert monitor.cursor == kernel.seq


@pytest.mark.parametrize("snapshot_every", [1, 1000])
def test_recovery_after_a_complete_rebase_gives_the_rebased_state(snapshot_every: int) -> None:
    config = _config(snapshot_every=snapshot_every)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "risk.journal"
        monitor = RiskMonitor(config, journal_path=path, durability="none")
        monitor.apply_segment(3, [_fill("0.5", "60000", trade_id=1)])
        monitor.rebase(*_ledger(40, usdt="50000", btc="3", btcusdt="1"))
        monitor.apply_segment(44, [_fill("0.1", "60000", trade_id=2)])
        monitor.close()
        recovered, commands = RiskMonitor.recover(config, path, durability="none")
        recovered.close()
    assert commands == []
    assert recovered.exposure() == monitor.exposure()
    assert recovered.exposure()["main"]["BTCUSDT"] == d("1.1")
    assert (recovered.cursor, recovered.rebases, recovered.seq) == (44, 1, monitor.seq)


@pytest.mark.parametrize("cut", ["position line", "position and account lines", "torn position line"])
def test_a_rebase_cut_short_in_the_journal_is_never_applied(cut: str) -> None:
    """A crash between a rebase's ledger lines and the position line that closes it: recovery keeps the state before
    the rebase, and what comes after (the tail sent again, or another rebase) does not apply the cut lines either."""
    config = _config()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "risk.journal"
        monitor = RiskMonitor(config, journal_path=path, durability="none")
        monitor.apply_segment(3, [_fill("0.5", "60000", trade_id=1)])
        before = monitor.exposure()
        monitor.rebase(*_ledger(40, usdt="50000", btc="3", btcusdt="1"))
        monitor.close()
        lines = _journal_lines(path)
        assert [type(m) for m in read_journal(path)[1][-3:]] == [AccountUpdated, PositionUpdated, Tick]
        kept = {"position line": lines[:-1], "position and account lines": lines[:-2],
                "torn position line": [*lines[:-1], lines[-1][:-5]]}[cut]  # fmt: skip
        path.write_bytes(b"".join(kept))

        recovered, commands = RiskMonitor.recover(config, path, durability="none")
        assert commands == []
        assert (recovered.cursor, recovered.rebases) == (3, 0)
        assert recovered.exposure() == before
        recovered.apply_segment(5, [_fill("0.1", "60000", trade_id=2)])  # the tail after 3, sent again
        assert recovered.exposure()["main"]["BTCUSDT"] == d("0.6")
        assert recovered.exposure()["main"]["BTC"] == d("2.6")
        after = recovered.exposure()
        recovered.close()

        again, _ = RiskMonitor.recover(config, path, durability="none")  # the journal says the same
        assert (again.exposure(), again.cursor, again.rebases) == (after, 5, 0)
        again.rebase(*_ledger(60, usdt="7000", btc="1", btcusdt="0.25"))  # a new rebase: only its own lines
        again.close()
        last, _ = RiskMonitor.recover(config, path, durability="none")
        last.close()
    assert again.exposure() == {"main": {"BTC": d("1"), "USDT": d("7000"), "BTCUSDT": d("0.25")}}
    assert last.exposure() == again.exposure()
    assert (last.cursor, last.rebases) == (60, 1)


def test_status_names_the_held_assets_without_a_price_that_keep_loss_and_drawdown_unmeasured() -> None:
    config = RiskMonitorConfig(
        instruments=instruments(), balances={"main": {"USDT": d("100000"), "ETH": d("3")}},
        limits=EngineRiskLimits(max_loss=d("1000")), reference_prices={"BTCUSDT": d("60000")},
    )  # fmt: skip
    monitor = RiskMonitor(config)
    status = monitor.status()
    assert (status["equity_complete"], status["unpriced_assets"], status["start_equity"]) == (False, ["ETH"], None)
    monitor.apply(trade("2500", symbol="ETHUSDT", ts=START_NS))
    status = monitor.status()
    assert (status["equity_complete"], status["unpriced_assets"], status["start_equity"]) == (True, [], "107500")
