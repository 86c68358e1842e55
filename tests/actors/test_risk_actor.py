"""The risk actor: a crossed limit reaches the OMS as a halt, the kill switch as cancel-all then halt, and a restarted
actor recovers its exposure from its journal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import ray

from tests.ray_fixtures import RayRuntime
from veloz_actors.actors.risk import RiskActor, start_risk_actor
from veloz_actors.core.risk_monitor import EngineRiskLimits, RiskMonitorConfig
from veloz_actors.messages import CancelAllOrders, HaltTrading, Liquidity, OrderFilled, Side
from veloz_actors.testing import START_NS, d, instruments, trade


class _Recording:
    """A stand-in OMS that records every batch of commands it is sent (the risk actor's only peer)."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def submit_many(self, commands: list[Any]) -> int:
        self.batches.append(list(commands))
        return len(commands)

    def received(self) -> list[list[Any]]:
        return self.batches


RecordingOms = ray.remote(num_cpus=0)(_Recording)


def _config() -> RiskMonitorConfig:
    return RiskMonitorConfig(
        instruments=instruments(),
        balances={"main": {"USDT": d("100000"), "BTC": d("2")}},
        limits=EngineRiskLimits(max_symbol_exposure={"BTCUSDT": d("1")}, max_drawdown=d("0.5")),
        reference_prices={"BTCUSDT": d("60000")},
        snapshot_every=3,
    )


def _fill(trade_id: int, qty: str = "0.4") -> OrderFilled:
    return OrderFilled(
        client_order_id=f"c{trade_id}", order_id=trade_id, account_id="main", symbol="BTCUSDT", side=Side.BUY,
        trade_id=trade_id, price=d("60000"), qty=d(qty), fee=d("1"), fee_asset="USDT", liquidity=Liquidity.TAKER,
        cum_qty=d(qty), leaves_qty=0, ts=START_NS + trade_id,
    )  # fmt: skip


def _wait_for(oms: Any, count: int) -> list[list[Any]]:
    deadline = time.monotonic() + 30.0
    while True:
        batches = ray.get(oms.received.remote(), timeout=10.0)
        if len(batches) >= count or time.monotonic() > deadline:
            return batches
        time.sleep(0.02)


def test_a_crossed_limit_sends_one_halt_to_the_oms(ray_runtime: RayRuntime, tmp_path: Path) -> None:
    oms = RecordingOms.remote()
    risk = start_risk_actor(_config(), oms, journal_path=tmp_path / "risk.journal", durability="none")
    assert ray.get(risk.apply.remote([_fill(1), _fill(2)]), timeout=30.0) == []
    (halt,) = ray.get(risk.apply.remote([_fill(3), trade("59000", ts=START_NS + 4)]), timeout=30.0)
    assert halt.reason == "risk monitor: engine exposure in BTCUSDT 1.2 above the limit 1"
    assert ray.get(risk.apply.remote([_fill(4, "0.1")]), timeout=30.0) == []  # still crossed: no second halt
    assert _wait_for(oms, 1) == [[halt]]
    status = ray.get(risk.status.remote(), timeout=30.0)
    assert status["halted"] is True and status["commands_sent"] == 1
    assert ray.get(risk.gauges.remote(), timeout=30.0)["symbol_exposure:BTCUSDT"] == pytest.approx(1.3)
    ray.get(risk.close.remote(), timeout=30.0)
    ray.kill(risk, no_restart=True)
    ray.kill(oms, no_restart=True)


def test_the_kill_switch_cancels_every_order_then_halts(ray_runtime: RayRuntime) -> None:
    oms = RecordingOms.remote()
    risk = start_risk_actor(_config(), oms, clock=lambda: START_NS + 50)
    sent = ray.get(risk.kill_switch.remote(), timeout=30.0)
    assert sent == [
        CancelAllOrders(account_id="*", ts=START_NS + 50),
        HaltTrading(account_id="*", reason="kill switch", ts=START_NS + 50),
    ]
    assert _wait_for(oms, 1) == [sent]
    (reset,) = ray.get(risk.reset.remote(), timeout=30.0)
    assert reset.account_id == "*"  # the engine-wide halt it sent
    assert _wait_for(oms, 2)[1] == [reset]
    ray.kill(risk, no_restart=True)
    ray.kill(oms, no_restart=True)


@ray.remote(num_cpus=0)
class OmsThatDiesOnItsFirstCall(_Recording):
    """A stand-in OMS whose first call fails after a while, as a call in flight when the OMS died does; the calls
    after it go through, as calls to the restarted OMS do."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def submit_many(self, commands: list[Any]) -> int:
        self.calls += 1
        if self.calls == 1:
            time.sleep(0.5)  # the reset is sent meanwhile
            raise RuntimeError("the OMS died with this call in flight")
        return super().submit_many(commands)


def test_a_halt_whose_call_failed_is_sent_again_with_the_reset_after_it_never_alone(ray_runtime: RayRuntime) -> None:
    oms = OmsThatDiesOnItsFirstCall.remote()
    risk = RiskActor(_config(), oms, clock=lambda: START_NS + 50)  # in this process: its outbox is looked at here
    kill = risk.kill_switch()
    (reset,) = risk.reset()  # sent while the kill switch's call is still in flight
    deadline = time.monotonic() + 30.0
    while risk.flush() and time.monotonic() < deadline:
        time.sleep(0.05)
    received = [command for batch in ray.get(oms.received.remote(), timeout=10.0) for command in batch]
    # the reset went through first; the failed kill switch is sent again with the reset after it, so trading ends
    # reset, as the last command sent says (re-sent alone, the halt would have halted trading again)
    assert received == [reset, *kill, reset]
    assert risk.send_failures == 1 and risk.resent == 1
    ray.kill(oms, no_restart=True)


def test_a_killed_risk_actor_recovers_its_exposure(ray_runtime: RayRuntime, tmp_path: Path) -> None:
    oms = RecordingOms.remote()
    risk = start_risk_actor(_config(), oms, journal_path=tmp_path / "risk.journal", durability="none")
    ray.get(risk.apply.remote([_fill(1), trade("61000", ts=START_NS + 2), _fill(3)]), timeout=30.0)
    ray.get(risk.apply.remote([_fill(4), _fill(5, "0.1")]), timeout=30.0)  # crosses: a halt is in force
    before = ray.get(risk.exposure.remote(), timeout=30.0)
    pid_before, seq_before = ray.get(risk.ping.remote(), timeout=30.0)
    assert _wait_for(oms, 1)[0][0].reason.startswith("risk monitor: engine exposure in BTCUSDT")

    ray.kill(risk, no_restart=False)
    deadline = time.monotonic() + 60.0
    while True:  # until the restarted process answers (the kill is asynchronous: the old one may answer first)
        try:
            pid_after, seq_after = ray.get(risk.ping.remote(), timeout=10.0)
            if pid_after != pid_before:
                break
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass
        assert time.monotonic() < deadline, "the risk actor did not come back"
        time.sleep(0.05)
    assert seq_after == seq_before
    assert ray.get(risk.exposure.remote(), timeout=30.0) == before
    status = ray.get(risk.status.remote(), timeout=30.0)
    assert status["restarted"] is True and status["resumed"] is True and status["halted"] is True
    # the halt in force is sent again after the restart (the kernel ignores a halt for an account already halted)
    assert [type(c) for c in _wait_for(oms, 2)[1]] == [HaltTrading]
    assert ray.get(risk.apply.remote([_fill(5, "0.1")]), timeout=30.0) == []  # a re-sent fill: booked once
    assert ray.get(risk.exposure.remote(), timeout=30.0) == before
    ray.get(risk.close.remote(), timeout=30.0)
    ray.kill(risk, no_restart=True)
    ray.kill(oms, no_restart=True)


def test_an_engine_reports_the_risk_stream_in_status_and_its_gauges_to_prometheus(
    ray_runtime: RayRuntime, tmp_path: Path
) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from veloz_actors.actors.api import start_local
    from veloz_actors.interfaces.metrics import EngineCollector

    from .helpers import file_config, wait_for

    engine = start_local(file_config(risk=True), name="risk-metrics", journal_dir=tmp_path)
    try:
        engine.tick()
        engine.submit(engine.order_command("BTCUSDT", "BUY", "0.001", client_order_id="m-1"))
        assert engine.settle(), "the venue answered"
        status = wait_for(
            lambda: (
                (s := engine.status())["risk_gauges"]["fills"] >= 1
                and (f := s["risk_forwarding"]["fills"])["acknowledged"] == f["position"]
                and s
            ),
            what="the risk actor to acknowledge the fill",
        )
        registry = CollectorRegistry(auto_describe=False)
        registry.register(EngineCollector(engine.status, None))  # type: ignore[arg-type]
        text = generate_latest(registry).decode()
    finally:
        engine.shutdown()
    fills = status["risk_forwarding"]["fills"]
    assert fills["fills_sent"] == 1 and fills["fills_dropped"] == 0 and fills["fills_kept"] == 0
    assert status["actors"]["risk"]["alive"] and status["risk"]["stream"]["position"] == fills["position"]
    assert 'veloz_risk_symbol_exposure_base_quantity{symbol="BTCUSDT"} 0.001' in text
    assert "veloz_risk_fills_total 1.0" in text
    assert 'veloz_risk_equity_amount{asset="USDT"}' in text


def test_resume_while_an_engine_limit_is_still_crossed_keeps_the_halt_and_says_which_limit(
    ray_runtime: RayRuntime, tmp_path: Path
) -> None:
    from veloz_actors.actors.api import start_local
    from veloz_actors.config import EngineRiskModel
    from veloz_actors.messages import Error, OrderRejected, RejectReason

    from .helpers import file_config, wait_for

    config = file_config(risk=True).model_copy(
        update={"engine_risk": EngineRiskModel(max_symbol_exposure={"BTCUSDT": "0.0005"})}
    )
    engine = start_local(config, name="risk-resume", journal_dir=tmp_path)
    try:
        engine.tick()
        engine.submit(engine.order_command("BTCUSDT", "BUY", "0.001", client_order_id="r-1"))
        assert engine.settle(), "the venue answered"
        wait_for(lambda: engine.status().get("engine_halt"), what="the risk actor's halt to reach the OMS")
        answer = engine.reset()
        halt = wait_for(
            lambda: (h := engine.status().get("engine_halt")) and "engine exposure" in h and h,
            what="the halt the reset sent again",
        )
        events = engine.submit(engine.order_command("BTCUSDT", "BUY", "0.001", client_order_id="r-2"))
    finally:
        engine.shutdown()
    [said] = [e for e in answer if type(e) is Error]
    assert said.code == "ENGINE_HALTED" and "engine exposure in BTCUSDT 0.001 above the limit 0.0005" in said.message
    assert "engine exposure in BTCUSDT 0.001 above the limit 0.0005" in halt
    assert [e.reason for e in events if type(e) is OrderRejected] == [RejectReason.CIRCUIT_BREAKER]


def test_the_kill_switch_cancels_and_halts_even_when_the_risk_actor_is_gone(
    ray_runtime: RayRuntime, tmp_path: Path
) -> None:
    from veloz_actors.actors.api import start_local

    from .helpers import file_config, wait_for

    engine = start_local(file_config(risk=True), name="risk-gone-kill", journal_dir=tmp_path)
    try:
        engine.tick()
        engine.submit(engine.order_command("BTCUSDT", "BUY", "0.001", price="58500", client_order_id="k-1"))
        assert engine.settle(), "the venue answered"
        assert [o["client_order_id"] for o in engine.query()] == ["k-1"]
        ray.kill(engine.actor("risk"), no_restart=True)
        engine.kill_switch()
        halt = engine.status().get("engine_halt")
        wait_for(lambda: engine.query() == [], what="the resting order to be cancelled")
    finally:
        engine.shutdown()
    assert halt == "kill switch"


def test_a_resume_while_the_risk_actor_is_down_says_so_at_once_and_lifts_nothing(
    ray_runtime: RayRuntime, tmp_path: Path
) -> None:
    """Before: the resume retried the dead risk actor for a minute, then said only that the engine "did not come
    back". It says that the risk actor is down and what that means, and the halt stays. One that Ray says is dead
    (ended for good, as here) is said to be so at once: before, the resume waited as for one Ray is restarting and
    told the user to resume again once it was alive, which it never would be."""
    from veloz_actors import EngineUnavailable
    from veloz_actors.actors.api import start_local

    from .helpers import file_config

    engine = start_local(file_config(risk=True), name="risk-gone-resume", journal_dir=tmp_path)
    try:
        engine.tick()
        engine.kill_switch()
        ray.kill(engine.actor("risk"), no_restart=True)
        with pytest.raises(EngineUnavailable, match="the risk actor is dead and Ray will not restart it") as refused:
            engine.reset()
        message = str(refused.value)
        assert message.startswith("engine 'risk-gone-resume': ") and "\n" not in message
        assert "nothing was resumed" in message and "veloz stop --name risk-gone-resume" in message
        assert engine.status()["engine_halt"] == "kill switch"
    finally:
        engine.shutdown()
