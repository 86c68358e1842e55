"""Risk as a trader with real money needs it, from a review that reproduced each case on the pure core: limits in the
valuation asset on a cross pair, what a sale of deposited coins does to the engine-wide exposure, the kill switch's
cancels when the venue refuses one, an account's reset against the engine-wide halt, the risk monitor's recovery with
new limits, and the kernel's starting equity while a holding has no price."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from veloz_actors import ConfigError
from veloz_actors.config import default_engine_config, load_yaml, parse_engine_config
from veloz_actors.core.instruments import Instrument
from veloz_actors.core.journal import SEMANTICS
from veloz_actors.core.kernel import TradingKernel
from veloz_actors.core.risk import RiskLimits
from veloz_actors.core.risk_monitor import EngineRiskLimits, RiskMonitor, RiskMonitorConfig, kill_switch_commands
from veloz_actors.messages import (
    HaltTrading,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    RejectReason,
    ResetCircuitBreaker,
    SubmitCancel,
    SubmitOrder,
    VenueCancelRejected,
    VenueOrderAccepted,
    encode_line,
)
from veloz_actors.testing import START_NS, btcusdt, d, engine_config, ethusdt, instruments, place, trade
from veloz_actors.venues.engine import Engine, EngineConfig


def _ethbtc() -> Instrument:
    return Instrument(
        symbol="ETHBTC", base_asset="ETH", quote_asset="BTC", price_tick=d("0.00001"), qty_step=d("0.001"),
        min_qty=d("0.001"), max_qty=d("9000"), min_notional=d("0.0001"), min_price=d("0.00001"), max_price=d("1000"),
        maker_fee_rate=d("0.001"), taker_fee_rate=d("0.001"),
    )  # fmt: skip


def _rejections(events: list[Any]) -> list[tuple[RejectReason, str]]:
    return [(e.reason, e.detail) for e in events if type(e) is OrderRejected]


# ------------------------------------------------------------------------------------------------ cross pairs


def _cross_pair_engine(**limits: Any) -> Engine:
    engine = Engine(
        EngineConfig(
            instruments=(btcusdt(), ethusdt(), _ethbtc()),
            balances={"main": {"USDT": d("100000"), "BTC": d("10")}, "other": {"ETH": d("1000")}},
            risk=RiskLimits(**limits),
        )
    )
    engine.apply(trade("60000", symbol="BTCUSDT", ts=START_NS))
    engine.apply(trade("3000", symbol="ETHUSDT", ts=START_NS))
    engine.apply(trade("0.05", symbol="ETHBTC", ts=START_NS))
    return engine


def test_the_notional_limit_values_a_cross_pair_order_in_the_valuation_asset() -> None:
    """100 ETH at 0.05 BTC is 5 BTC, 300,000 USDT: above a 1,000 USDT limit (before: 5, taken as USDT, passed)."""
    engine = _cross_pair_engine(max_order_notional=d("1000"))
    [(reason, detail)] = _rejections(engine.apply(place("x", "BUY", "100", "0.05", symbol="ETHBTC", ts=START_NS + 1)))
    assert reason is RejectReason.MAX_ORDER_NOTIONAL
    assert detail == "notional 300000 (in BTC at 60000) above the limit 1000"
    assert _rejections(engine.apply(place("y", "BUY", "0.3", "0.05", symbol="ETHBTC", ts=START_NS + 2))) == []  # 900


def test_the_leverage_limit_values_a_cross_pair_order_and_positions_in_the_valuation_asset() -> None:
    engine = _cross_pair_engine(max_leverage=d("0.5"))  # main's equity: 100,000 + 10 x 60,000 = 700,000 USDT
    # 150 ETH at 0.05 BTC: 7.5 BTC, 450,000 USDT, 0.64x (before: 7.5 taken as USDT, 0.00001x)
    [(reason, detail)] = _rejections(engine.apply(place("x", "BUY", "150", "0.05", symbol="ETHBTC", ts=START_NS + 1)))
    assert reason is RejectReason.MAX_LEVERAGE and detail.startswith("leverage would reach 0.64285714x")
    engine.apply(place("s", "SELL", "100", "0.05", symbol="ETHBTC", account="other", ts=START_NS + 2))
    assert _rejections(engine.apply(place("b", "BUY", "100", "0.05", symbol="ETHBTC", ts=START_NS + 3))) == []
    assert engine.kernel._gross_exposure("main") == d("300000")  # 100 ETH x 0.05 BTC x 60,000 USDT
    assert engine.kernel._gross_exposure("other") == 0  # sold ETH it held: no position to value


def test_a_cross_pair_order_waits_for_a_price_of_its_quote_asset_when_a_notional_limit_needs_it() -> None:
    engine = Engine(
        EngineConfig(
            instruments=(btcusdt(), _ethbtc()),
            balances={"main": {"BTC": d("10")}},
            risk=RiskLimits(max_order_notional=d("1000")),
        )
    )
    engine.apply(trade("0.05", symbol="ETHBTC", ts=START_NS))
    [(reason, detail)] = _rejections(engine.apply(place("x", "BUY", "1", "0.05", symbol="ETHBTC", ts=START_NS + 1)))
    assert reason is RejectReason.NO_REFERENCE_PRICE and "no price yet to value BTC" in detail


def test_the_monitor_values_a_cross_pair_position_in_the_valuation_asset() -> None:
    engine = _cross_pair_engine()
    monitor = RiskMonitor(
        RiskMonitorConfig.from_kernel(engine.kernel.config, EngineRiskLimits(max_gross_exposure=d("100000")))
    )
    for symbol, price in (("BTCUSDT", "60000"), ("ETHUSDT", "3000"), ("ETHBTC", "0.05")):
        monitor.apply(trade(price, symbol=symbol, ts=START_NS))
    engine.apply(place("s", "SELL", "100", "0.05", symbol="ETHBTC", account="other", ts=START_NS + 1))
    fills = [e for e in engine.apply(place("b", "BUY", "100", "0.05", symbol="ETHBTC", ts=START_NS + 2))
             if type(e) is OrderFilled]  # fmt: skip
    commands = monitor.apply_many(fills)
    assert monitor.gross_exposure() == d("300000")  # main's 100 ETH, 5 BTC (before: 5); other sold ETH it held
    assert [type(c) for c in commands] == [HaltTrading] and "gross exposure 300000 USDT" in commands[0].reason


# --------------------------------------------------------------------------------- a sale of deposited coins


def test_selling_deposited_coins_adds_no_symbol_exposure() -> None:
    """main sells 1.5 of its 3 deposited BTC to other: main's holdings fall (to 1.5) and other's long is 1.5, within
    the symbol limit of 2, so nothing halts (before: main's |-1.5| counted too, 3 crossed the limit, every account was
    halted, and only more selling was allowed)."""
    engine = Engine(engine_config(sim=False, balances={"main": {"USDT": d("1000"), "BTC": d("3")},
                                                       "other": {"USDT": d("1000000")}}))  # fmt: skip
    monitor = RiskMonitor(
        RiskMonitorConfig.from_kernel(engine.kernel.config, EngineRiskLimits(max_symbol_exposure={"BTCUSDT": d("2")}))
    )
    engine.apply(trade("60000", ts=START_NS))
    engine.apply(place("bid", "BUY", "3", "60000", account="other", ts=START_NS + 1))
    fills = [e for e in engine.apply(place("s", "SELL", "1.5", "60000", ts=START_NS + 2)) if type(e) is OrderFilled]
    assert monitor.apply_many(fills) == []
    assert monitor.symbol_exposure() == {"BTCUSDT": d("1.5")}  # other's long: 1.5 bought; main's -1.5 adds none
    fills = [e for e in engine.apply(place("s2", "SELL", "0.6", "60000", ts=START_NS + 3)) if type(e) is OrderFilled]
    [halt] = monitor.apply_many(fills)  # other's long is now 2.1: that crosses the limit
    assert "engine exposure in BTCUSDT 2.1 above the limit 2" in halt.reason


def test_a_reset_while_a_limit_is_still_crossed_halts_again_at_once_and_no_buy_gets_through() -> None:
    config = RiskMonitorConfig(
        instruments=instruments(), balances={"main": {"USDT": d("1000000")}, "mm": {"BTC": d("10")}},
        limits=EngineRiskLimits(max_symbol_exposure={"BTCUSDT": d("1")}), reference_prices={"BTCUSDT": d("60000")},
    )  # fmt: skip
    engine = Engine(engine_config(sim=False, balances={"main": {"USDT": d("1000000")}, "mm": {"BTC": d("10")}}))
    engine.apply(trade("60000", ts=START_NS))
    engine.apply(place("a", "SELL", "5", "60000", account="mm", ts=START_NS + 1))
    fills = [e for e in engine.apply(place("b", "BUY", "2", "60000", ts=START_NS + 2)) if type(e) is OrderFilled]
    with tempfile.TemporaryDirectory() as tmp:
        journal = Path(tmp) / "risk.jsonl"
        monitor = RiskMonitor(config, journal_path=journal, durability="none")
        for command in monitor.apply_many(fills):
            engine.apply(command)
        reset = monitor.reset(START_NS + 3)  # no market event follows: the limit is measured by the reset itself
        monitor.close()
        recovered, resend = RiskMonitor.recover(config, journal)
        recovered.close()
    assert [type(c) for c in reset] == [ResetCircuitBreaker, HaltTrading]
    assert "engine exposure in BTCUSDT 2 above the limit 1" in reset[1].reason
    assert monitor.status()["halted"] and list(monitor.status()["limits_crossed"]) == ["symbol_exposure:BTCUSDT"]
    for command in reset:
        engine.apply(command)
    assert _rejections(engine.apply(place("c", "BUY", "2", "60000", ts=START_NS + 4)))[0][0] is (
        RejectReason.CIRCUIT_BREAKER
    )
    assert recovered.halted == reset[1].reason and resend == [reset[1]]  # a restart keeps the halt the reset sent


# ------------------------------------------------------------------------------------------- the kill switch


def test_the_kill_switch_cancels_again_an_order_whose_cancel_the_venue_refused_while_it_is_open() -> None:
    kernel = TradingKernel(engine_config().kernel_config())
    kernel.apply(trade("60000", ts=START_NS))
    kernel.apply(place("b1", "BUY", "0.5", "59000", ts=START_NS + 1))
    kernel.apply(VenueOrderAccepted(venue="BINANCE", client_order_id="b1", account_id="main", symbol="BTCUSDT",
                                    venue_order_id="1", ts=START_NS + 2))  # fmt: skip
    kernel.apply(place("b2", "BUY", "0.5", "59000", ts=START_NS + 3))  # not acknowledged yet
    kernel.take_outbox()
    for command in kill_switch_commands(START_NS + 10):
        kernel.apply(command)
    assert [(type(r), r.client_order_id) for r in kernel.take_outbox()] == [(SubmitCancel, "b1"), (SubmitCancel, "b2")]

    def refused(cid: str, ts: int) -> None:
        kernel.apply(VenueCancelRejected(venue="BINANCE", client_order_id=cid, account_id="main", symbol="BTCUSDT",
                                         reason=RejectReason.VENUE_REJECTED, detail="still open", ts=ts))  # fmt: skip

    refused("b1", START_NS + 20)  # its answer was lost and it is still open: cancelled again
    refused("b2", START_NS + 20)  # the cancel overtook the order: the order goes again, its cancel once it is acked
    out = kernel.take_outbox()
    assert [(type(r), r.client_order_id) for r in out] == [(SubmitCancel, "b1"), (SubmitOrder, "b2")]
    assert kernel.oms.get("main", "b1").status is OrderStatus.PENDING_CANCEL
    kernel.apply(VenueOrderAccepted(venue="BINANCE", client_order_id="b2", account_id="main", symbol="BTCUSDT",
                                    venue_order_id="2", ts=START_NS + 30))  # fmt: skip
    assert [(type(r), r.client_order_id) for r in kernel.take_outbox()] == [(SubmitCancel, "b2")]
    # a venue that keeps refusing: after three refusals the order is left to the trader, said in an Error
    refused("b1", START_NS + 40)
    assert [r.client_order_id for r in kernel.take_outbox()] == ["b1"]
    events = kernel.apply(
        VenueCancelRejected(venue="BINANCE", client_order_id="b1", account_id="main", symbol="BTCUSDT",
                            reason=RejectReason.VENUE_REJECTED, detail="still open", ts=START_NS + 50)
    )  # fmt: skip
    assert [e.code for e in events if type(e).__name__ == "Error"] == ["CANCEL_ALL_FAILED"]
    assert kernel.take_outbox() == [] and kernel.must_cancel == {("main", "b2"): 1}  # refused once, cancel on its way


# ----------------------------------------------------------------------------------------- monitor recovery


def _monitor_config(limits: EngineRiskLimits, snapshot_every: int) -> RiskMonitorConfig:
    return RiskMonitorConfig(
        instruments=instruments(), balances={"main": {"USDT": d("100000"), "BTC": d("2")}}, limits=limits,
        reference_prices={"BTCUSDT": d("60000"), "ETHUSDT": d("2500")}, snapshot_every=snapshot_every,
    )  # fmt: skip


def test_a_monitor_recovered_with_new_limits_halts_only_for_what_is_crossed_now() -> None:
    """The live run had no limit; its loss went to 4,000 and back. Recovered with max_loss 1,000, with or without a
    snapshot: nothing halted (before: the replay's past crossing left a halt without a snapshot, none with one); a
    loss crossing the new limit later halts."""
    for snapshot_every in (10_000, 3):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "risk.journal"
            monitor = RiskMonitor(_monitor_config(EngineRiskLimits(), snapshot_every), journal_path=path,
                                  durability="none")  # fmt: skip
            for i, price in enumerate(("59000", "58000", "60000")):
                assert monitor.apply(trade(price, ts=START_NS + i)) == []
            monitor.close()
            limits = EngineRiskLimits(max_loss=d("1000"))
            recovered, commands = RiskMonitor.recover(_monitor_config(limits, snapshot_every), path, durability="none")
            assert (recovered.halted, commands, recovered.breached) == (None, [], {})
            [halt] = recovered.apply(trade("59000", ts=START_NS + 10))
            assert "engine loss 2000 USDT" in halt.reason
            recovered.close()


def test_a_monitor_that_halted_recovers_its_halt_from_the_journal_whatever_the_limits_now() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "risk.journal"
        monitor = RiskMonitor(_monitor_config(EngineRiskLimits(max_loss=d("1000")), 10_000), journal_path=path,
                              durability="none")  # fmt: skip
        [halt] = monitor.apply(trade("59000", ts=START_NS))
        assert monitor.apply(trade("58000", ts=START_NS + 1)) == []  # still crossed: halted once
        monitor.close()
        recovered, commands = RiskMonitor.recover(_monitor_config(EngineRiskLimits(), 10_000), path, durability="none")
        assert commands == [HaltTrading(account_id="*", reason=halt.reason, ts=START_NS + 1)]
        assert recovered.halted == halt.reason and recovered.halts_sent == 1
        recovered.close()


# ------------------------------------------------------------------------------- the kernel's starting equity


def test_the_kernels_loss_limit_starts_once_every_holding_has_a_price() -> None:
    """main holds 100,000 USDT and 2 BTC; the first price is ETH's. The starting equity waits for BTC's price
    (220,000), so a fall of BTC to 40,000 is a loss of 40,000 and trips a 10,000 limit (before: the start was taken
    as 100,000, and the loss never showed)."""
    engine = Engine(engine_config(sim=False, balances={"main": {"USDT": d("100000"), "BTC": d("2")}},
                                  risk=RiskLimits(max_loss=d("10000"), price_band=d("0.5"))))  # fmt: skip
    engine.apply(trade("2500", symbol="ETHUSDT", ts=START_NS))
    assert "main" not in engine.kernel.risk.start_equity
    engine.apply(trade("60000", ts=START_NS + 1))
    assert engine.kernel.risk.start_equity["main"] == d("220000")
    engine.apply(trade("40000", ts=START_NS + 2))
    assert engine.kernel.risk.tripped == {"main": "loss 40000 exceeds 10000"}


def test_a_kernel_pickled_before_the_new_risk_state_existed_still_trades() -> None:
    """An engine snapshot of the previous version holds a kernel without ``stops`` and
    ``must_cancel``: restored, it must place, close and stop-loss as ever (before the defaults: AttributeError on the
    first order that closed)."""
    import pickle

    engine = Engine(engine_config(sim=False, balances={"main": {"USDT": d("100000")}, "mm": {"BTC": d("10"), "USDT": d("1000000")}},
                                  risk=RiskLimits(stop_loss=d("0.02"), price_band=d("0.5"))))  # fmt: skip
    for name in ("stops", "must_cancel"):
        del engine.kernel.__dict__[name]
    engine.kernel = pickle.loads(pickle.dumps(engine.kernel))
    engine.apply(trade("60000", ts=START_NS))
    engine.apply(place("mm1", "SELL", "2", "60000", account="mm", ts=START_NS + 1))
    engine.apply(place("b1", "BUY", "1", "60000", ts=START_NS + 2))
    engine.apply(place("mm2", "BUY", "2", "50000", account="mm", ts=START_NS + 3))
    events = engine.apply(trade("58000", ts=START_NS + 4))  # the stop-loss sells into mm2
    assert [(e.client_order_id, e.qty) for e in events if type(e) is OrderFilled and e.account_id == "main"] == [
        ("stop-BTCUSDT-1", d("1"))
    ]


# ------------------------------------------------------------------------------------ journals of the last version


def _journal_of(path: Path, config: dict[str, Any], messages: list[Any], *, semantics: int | None) -> None:
    header: dict[str, Any] = {"journal": "veloz", "version": 1, "config": config}
    if semantics is not None:
        header["semantics"] = semantics
    path.write_bytes(orjson.dumps(header) + b"\n" + b"".join(encode_line(m) for m in messages))


def test_a_journal_of_the_last_version_replays_its_halts_and_resets_as_they_meant_then(tmp_path: Path) -> None:
    """Before: an engine-wide halt tripped every account, and the risk monitor lifted it with a reset per account. A
    journal without the semantics key replays so (b1 accepted, as it was) and keeps that meaning for what is appended;
    the same lines in a new journal mean the engine halt stays (b1 refused)."""
    config = engine_config()
    lines = [
        trade("60000", ts=START_NS),
        HaltTrading(account_id="*", reason="risk monitor: drawdown", ts=START_NS + 1),
        ResetCircuitBreaker(account_id="main", ts=START_NS + 2),
        ResetCircuitBreaker(account_id="other", ts=START_NS + 2),
        place("b1", "BUY", "0.01", "60000", ts=START_NS + 3),
    ]
    for semantics, refused in ((None, []), (2, [RejectReason.CIRCUIT_BREAKER])):
        path = tmp_path / f"engine-{semantics}.journal"
        _journal_of(path, config.to_json(), lines, semantics=semantics)
        engine, events = Engine.recover(config, path, durability="none")
        assert [e.reason for e in events if type(e) is OrderRejected] == refused
        assert engine.kernel.legacy_halts is (semantics is None)
        after = engine.apply(HaltTrading(account_id="*", reason="again", ts=START_NS + 4))
        after += engine.apply(ResetCircuitBreaker(account_id="main", ts=START_NS + 5))
        after += engine.apply(place("b2", "BUY", "0.01", "60000", ts=START_NS + 6))
        assert bool([e for e in after if type(e) is OrderRejected]) is (semantics is not None)
        engine.close()
        replayed, again = Engine.recover(config, path, durability="none")  # what was appended means the same
        assert [type(e) for e in again] == [type(e) for e in events + after]
        replayed.close()


def test_a_journal_of_semantics_2_replays_max_position_as_it_was_decided(tmp_path: Path) -> None:
    """Semantics 3 measures max_position from the long position (a sold deposit is no exposure); a journal written
    under 2 decided its buys from abs(position): replayed under the new rule, a buy refused then would be accepted now
    (an order the venue never got, rebuilt on recovery). Each journal keeps its rule, also for what is appended."""
    limits = RiskLimits(max_position={"BTCUSDT": d("2")}, exempt_accounts=frozenset({"mm"}))
    balances = {"main": {"USDT": d("1000000"), "BTC": d("3")}, "mm": {"USDT": d("1000000"), "BTC": d("10")}}
    config = engine_config(sim=False, risk=limits, balances=balances)
    lines = [
        trade("60000", ts=START_NS),
        place("bid", "BUY", "3", "60000", account="mm", ts=START_NS + 1),
        place("s", "SELL", "3", "60000", ts=START_NS + 2),  # deposited coins sold: position -3
        place("b1", "BUY", "2", "59000", ts=START_NS + 3),  # abs: 3 + 2 > 2, refused; long: -1, accepted
    ]
    for semantics, refused in ((2, [RejectReason.MAX_POSITION]), (3, [])):
        path = tmp_path / f"engine-{semantics}.journal"
        _journal_of(path, config.to_json(), lines, semantics=semantics)
        engine, events = Engine.recover(config, path, durability="none")
        assert [e.reason for e in events if type(e) is OrderRejected] == refused
        after = engine.apply(place("b2", "BUY", "0.5", "59000", ts=START_NS + 4))  # abs: 3.5 refused; long: 1.5
        assert bool([e for e in after if type(e) is OrderRejected]) is (semantics == 2)
        engine.close()
        replayed, again = Engine.recover(config, path, durability="none")  # what was appended means the same
        assert [type(e) for e in again] == [type(e) for e in events + after]
        replayed.close()


def test_a_journal_of_semantics_3_replays_an_order_for_an_unknown_account_as_it_was_decided(tmp_path: Path) -> None:
    """Semantics 4 refuses an order for an account the engine does not have as UNKNOWN_ACCOUNT, before the risk
    checks; a journal written under 3 refused it as INSUFFICIENT_FUNDS after them, and replays (and appends) so."""
    config = engine_config()
    lines = [trade("60000", ts=START_NS), place("g1", "BUY", "0.01", "59000", account="ghost", ts=START_NS + 1)]
    for semantics, reason in ((3, "INSUFFICIENT_FUNDS"), (SEMANTICS, "UNKNOWN_ACCOUNT")):
        path = tmp_path / f"engine-{semantics}.journal"
        _journal_of(path, config.to_json(), lines, semantics=semantics)
        engine, events = Engine.recover(config, path, durability="none")
        assert [e.reason for e in events if type(e) is OrderRejected] == [reason]
        after = engine.apply(place("g2", "SELL", "0.01", "61000", account="ghost", ts=START_NS + 2))
        assert [e.reason for e in after if type(e) is OrderRejected] == [reason]
        engine.close()
        replayed, again = Engine.recover(config, path, durability="none")  # what was appended means the same
        assert [e.reason for e in again if type(e) is OrderRejected] == [reason, reason]
        replayed.close()


def test_a_paper_venue_pickled_before_it_kept_joined_reports_takes_depth_again() -> None:
    import pickle

    from veloz_actors.messages import BookDelta
    from veloz_actors.venues.l2replay import L2ReplayVenue

    venue = L2ReplayVenue(btcusdt())
    del venue.__dict__["joined"]
    venue = pickle.loads(pickle.dumps(venue))
    snapshot = BookDelta(symbol="BTCUSDT", first_update_id=1, last_update_id=1, bids=((d("59999"), d("1")),),
                         asks=((d("60001"), d("1")),), is_snapshot=True, ts_event=1, ts_recv=1)  # fmt: skip
    assert venue.on_market(snapshot) == [] and venue.take_joined() == []


# --------------------------------------------------------------------------- cross pairs nothing can value


def test_a_sell_on_a_cross_pair_is_not_held_back_for_a_price_and_a_buy_says_what_is_missing() -> None:
    engine = Engine(
        EngineConfig(
            instruments=(_ethbtc(),), balances={"main": {"USDT": d("1000"), "BTC": d("1"), "ETH": d("10")}},
            risk=RiskLimits(max_order_notional=d("250000")),
        )
    )  # fmt: skip
    engine.apply(trade("0.05", symbol="ETHBTC", ts=START_NS))
    assert _rejections(engine.apply(place("s", "SELL", "1", "0.05", symbol="ETHBTC", ts=START_NS + 1))) == []
    [(reason, detail)] = _rejections(engine.apply(place("b", "BUY", "1", "0.05", symbol="ETHBTC", ts=START_NS + 2)))
    assert reason is RejectReason.NO_REFERENCE_PRICE and detail.startswith("no instrument values BTC")


def test_a_config_whose_notional_limit_cannot_value_a_symbol_is_refused_when_it_loads() -> None:
    data = load_yaml(default_engine_config())["engine"]
    data["instruments"].append({**data["instruments"][0], "symbol": "ETHBTC", "base_asset": "ETH",
                                "quote_asset": "BNB"})  # fmt: skip
    with pytest.raises(
        ConfigError, match=r"no instrument values BNB \(the quote asset of ETHBTC\) in USDT: add BNBUSDT"
    ):
        parse_engine_config(data, source="engine.yaml")
    data["risk"]["max_order_notional"] = "0"
    data["risk"]["max_leverage"] = "0"
    parse_engine_config(data, source="engine.yaml")  # no limit in the valuation asset: nothing to value


def test_a_price_band_of_100_percent_or_more_is_refused_when_the_config_loads() -> None:
    data = load_yaml(default_engine_config())["engine"]
    data["risk"]["price_band"] = "5"  # meant 5 %: a market sell could walk the book down to one tick
    with pytest.raises(ConfigError, match=r"risk.price_band: '5' is 1 \(100 %\) or more; .* e.g. \"0.05\" for 5 %"):
        parse_engine_config(data, source="engine.yaml")
    data["risk"]["price_band"] = "0.99"
    assert parse_engine_config(data, source="engine.yaml").risk.build().price_band == d("0.99")


def test_max_position_lets_an_account_that_sold_its_deposited_coins_buy_back_within_the_limit() -> None:
    limits = RiskLimits(max_position={"BTCUSDT": d("2")}, exempt_accounts=frozenset({"mm"}))
    balances = {"main": {"USDT": d("1000000"), "BTC": d("3")}, "mm": {"USDT": d("1000000"), "BTC": d("10")}}
    engine = Engine(engine_config(sim=False, risk=limits, balances=balances))
    engine.apply(trade("60000", ts=START_NS))
    engine.apply(place("bid", "BUY", "3", "60000", account="mm", ts=START_NS + 1))
    engine.apply(place("s", "SELL", "3", "60000", ts=START_NS + 2))  # deposited coins sold: position -3, holding 0
    assert engine.kernel.ledger.positions[("main", "BTCUSDT")].qty == -d("3")
    assert _rejections(engine.apply(place("b1", "BUY", "2", "59000", ts=START_NS + 3))) == []  # would reach -1
    [(reason, detail)] = _rejections(engine.apply(place("b2", "BUY", "4.5", "59000", ts=START_NS + 4)))
    assert reason is RejectReason.MAX_POSITION and detail == "position would reach 3.5, above the limit 2"


def test_an_order_by_quote_amount_in_flight_counts_what_its_quote_can_buy_toward_max_position() -> None:
    limits = RiskLimits(max_position={"BTCUSDT": d("2")})
    kernel = TradingKernel(engine_config(risk=limits, balances={"main": {"USDT": d("1000000")}}).kernel_config())
    kernel.apply(trade("60000", ts=START_NS))
    assert _rejections(kernel.apply(place("q", "BUY", None, quote_qty="5700", ts=START_NS + 1))) == []
    # the venue has not answered: 5700 USDT buys at most 0.1 BTC at 57000, the low end of the 5 % band
    assert _rejections(kernel.apply(place("l", "BUY", "1.9", "59000", ts=START_NS + 2))) == []
    [(reason, detail)] = _rejections(kernel.apply(place("m", "BUY", "0.01", "59000", ts=START_NS + 3)))
    assert reason is RejectReason.MAX_POSITION and detail == "position would reach 2.01, above the limit 2"
