"""A backtest strategy (the built-in SMA cross) runs unchanged on the actor engine, from the config."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import ray

from veloz_actors import ConfigError
from veloz_actors.actors.api import build_spec, start_local
from veloz_actors.actors.strategy_node import StrategyNode
from veloz_actors.logs import LogSettings
from veloz_actors.messages import RejectReason
from veloz_actors.strategies.base import Strategy

from .helpers import file_config, wait_for

SMA = {"strategy": "sma_cross", "params": {"fast": 2, "slow": 4}, "symbol": "BTCUSDT", "bar_ms": 1000}


def test_sma_cross_trades_the_simulated_market_through_risk_and_the_oms(ray_runtime):
    engine = start_local(file_config(strategies=[SMA]), name="strategy-live")
    try:
        base = time.time_ns()
        for k in range(240):  # one simulated-market step per one-second bar
            engine.tick(base + k * 1_000_000_000)
        name = "strategy:0:sma_cross"

        def settled():
            # every bar delivered (240 steps close 239 bars), and the OMS holds every order the strategy placed
            status = engine.status()["strategies"].get(name)
            if not status or status["bars"] < 239:
                return None
            orders = [o for o in engine.orders() if o["client_order_id"].startswith("sma_cross-")]
            return (status, orders) if len(orders) == status["orders"] else None

        status, orders = wait_for(settled, what="the strategy to see every bar and its orders to reach the OMS")
        assert engine.settle()  # the venue answered every order (none still SUBMITTED)
        orders = [o for o in engine.orders() if o["client_order_id"].startswith("sma_cross-")]
        assert status["errors"] == 0, status["last_error"]
        assert status["orders"] >= 1
        assert any(o["status"] == "FILLED" for o in orders)
        assert all(o["status"] in ("FILLED", "EXPIRED", "REJECTED", "ACCEPTED") for o in orders)
    finally:
        engine.shutdown()


@pytest.mark.parametrize(
    ("entry", "named"),
    [
        ({"strategy": "moon", "symbol": "BTCUSDT"}, "unknown strategy"),
        ({"strategy": "sma_cross", "symbol": "DOGEUSDT", "params": {"fast": 2, "slow": 4}}, "unknown symbol"),
        ({"strategy": "sma_cross", "symbol": "BTCUSDT", "params": {"fast": 9, "slow": 4}}, "fast"),
        ({"symbol": "BTCUSDT"}, "needs 'strategy'"),
        # a typo in the account would leave the strategy with no funds, every order rejected, for as long as it runs
        (
            {"strategy": "sma_cross", "symbol": "BTCUSDT", "params": {"fast": 2, "slow": 4}, "account": "mian"},
            "sma_cross: unknown account 'mian'",
        ),
    ],
)
def test_a_bad_strategy_entry_is_a_clear_config_error(entry, named):
    with pytest.raises(ConfigError, match=named):
        build_spec(file_config(strategies=[entry]))


class _RecordingOms:
    """Stands in for the OMS actor handle: records what a context sends (``oms.submit.remote(command)``)."""

    def __init__(self) -> None:
        self.sent: list = []
        self.submit = self

    def remote(self, command):
        self.sent.append(command)
        return ray.put([])


def test_the_live_context_reads_its_account_from_events_and_sends_orders_without_waiting(ray_runtime):
    from veloz_actors.actors.strategy_node import LiveContext
    from veloz_actors.messages import AccountUpdated, Balance, PositionUpdated
    from veloz_actors.orders import ClientOrderIds

    oms = _RecordingOms()
    ctx = LiveContext(oms, "main", {"BTCUSDT": ("BTC", "USDT")}, ClientOrderIds("t"), order_inbox=10)
    ctx.load({"USDT": (100, 0)}, [])
    assert (ctx.free("USDT"), ctx.position("BTCUSDT")) == (100, 0)
    ctx.observe(AccountUpdated(account_id="main", balances=(Balance(asset="USDT", free=40, locked=60),), ts=1))
    ctx.observe(PositionUpdated(account_id="main", symbol="BTCUSDT", qty=7, avg_entry_price=1, cost=7,
                                realized_pnl=0, unrealized_pnl=0, mark_price=1, ts=1))  # fmt: skip
    assert (ctx.free("USDT"), ctx.locked("USDT"), ctx.position("BTCUSDT")) == (40, 60, 7)
    cid = ctx.buy_market("BTCUSDT", qty=1_000_000)
    ctx.cancel_order(cid)
    assert [c.client_order_id for c in oms.sent] == [cid, cid]
    assert [type(c).__name__ for c in oms.sent] == ["PlaceOrder", "CancelOrder"]
    ctx.reap()
    assert ctx.send_errors == 0 and not ctx.in_flight


@ray.remote(num_cpus=0)
class _HeldOms:
    """Stands in for a busy OMS actor: takes a strategy's commands and answers none until :meth:`release`."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.received = 0

    async def submit(self, command):
        self.received += 1
        await self.released.wait()
        return []

    async def count(self) -> int:
        return self.received

    async def release(self) -> None:
        self.released.set()


def test_a_strategy_flooding_orders_is_refused_overloaded_beyond_its_window_and_told_so(ray_runtime):
    from veloz_actors.actors.strategy_node import LiveContext
    from veloz_actors.orders import ClientOrderIds

    oms = _HeldOms.remote()
    ctx = LiveContext(oms, "main", {"BTCUSDT": ("BTC", "USDT")}, ClientOrderIds("flood"), order_inbox=3)
    cids = [ctx.buy_market("BTCUSDT", qty=1_000_000) for _ in range(5)]
    ctx.cancel_order(cids[0])
    refused = ctx.take_refused()
    assert [(e.client_order_id, e.reason) for e in refused] == [(cid, RejectReason.OVERLOADED) for cid in cids[3:]] + [
        (cids[0], RejectReason.OVERLOADED)
    ]
    assert "depth 3 at limit 3" in refused[0].detail
    assert ctx.take_refused() == []  # each refusal is told once
    wait_for(lambda: ray.get(oms.count.remote(), timeout=30) == 3, what="the admitted commands to reach the OMS")
    assert ray.get(oms.count.remote(), timeout=30) == 3  # only the admitted ones were sent

    ray.get(oms.release.remote(), timeout=30)  # the OMS catches up: the window has room again

    def emptied() -> bool:
        ctx.reap()
        return ctx.window.depth == 0

    wait_for(emptied, what="the answered commands to leave the window")
    ctx.buy_market("BTCUSDT", qty=1_000_000)
    assert ctx.take_refused() == [] and ctx.window.rejected == 3


def test_a_strategys_orders_in_flight_when_the_oms_dies_are_sent_again_and_applied_once(ray_runtime, tmp_path):
    """The OMS dies with most of a burst of the strategy's orders in its inbox: each is sent again, the very same
    command, once Ray restarted it, so every one is applied once (none lost, none doubled) and the strategy hears of
    each on the bus as of any other."""
    from veloz_actors.actors.strategy_node import LiveContext
    from veloz_actors.messages import OrderType, Side
    from veloz_actors.orders import ClientOrderIds

    engine = start_local(file_config(), name="strategy-oms-restart", journal_dir=tmp_path)
    try:
        oms = engine.actor("oms")
        ctx = LiveContext(oms, "main", {"BTCUSDT": ("BTC", "USDT")}, ClientOrderIds("restart"), order_inbox=1_000)
        price = 5_900_000_000_000  # bids below the market, left resting
        cids = [
            ctx.place_order("BTCUSDT", Side.BUY, qty=100_000, price=price, order_type=OrderType.LIMIT)
            for _ in range(400)
        ]
        ray.kill(oms, no_restart=False)  # most of the burst still waits in its inbox

        def answered() -> bool:
            ctx.reap()
            return ctx.window.depth == 0

        wait_for(answered, timeout=120, what="every command sent to be answered")
        assert ctx.resent > 0  # the kill caught commands in flight
        assert (ctx.send_errors, ctx.last_send_error) == (0, None)
        assert engine.settle()  # the venue answered every order the OMS sent it
        orders = [o for o in engine.orders() if o["client_order_id"].startswith("restart-")]
        assert sorted(o["client_order_id"] for o in orders) == sorted(cids)
        assert {o["status"] for o in orders} == {"ACCEPTED"}
    finally:
        engine.shutdown()


class _Broken(Strategy):
    """Raises on every bar, as a strategy with a bug does."""

    def on_bar(self, bar):
        raise ValueError(f"bar {bar.index}")


@ray.remote(num_cpus=0)
class _BrokenStrategyNode(StrategyNode):
    """The node of a configured strategy, its strategy swapped for :class:`_Broken` (only built-ins are configurable)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.strategy = _Broken()
        self.error_log_seconds = 3_600.0  # every later exception of the test falls inside the first one's interval


def test_a_strategy_callback_that_raises_is_isolated_counted_and_logged_with_its_traceback(ray_runtime, tmp_path):
    engine = start_local(file_config(), name="strategy-raises")
    try:
        log = LogSettings(format="json", level="INFO", file=str(tmp_path / "veloz.log"))
        node = _BrokenStrategyNode.remote(
            dict(SMA), engine.actor("oms"), engine.actor("bus"), {"BTCUSDT": ("BTC", "USDT")}, order_inbox=10,
            log_settings=log, log_name="strategy:0:broken",
        )  # fmt: skip
        ray.get(node.ping.remote(), timeout=60)
        base = time.time_ns()
        for k in range(5):
            engine.tick(base + k * 1_000_000_000)

        def bars_seen():
            status = ray.get(node.status.remote(), timeout=30)
            return status if status["bars"] == 4 else None

        status = wait_for(bars_seen, what="the node to go on through every bar")
        assert status["errors"] == 4  # each bar's exception, counted: the node went on

        def logged():
            path = log.file_for("strategy:0:broken")
            lines = path.read_text().splitlines() if path.exists() else []
            return [r for r in map(orjson.loads, lines) if r["level"] == "ERROR"]

        records = wait_for(logged, what="the strategy's exception in its actor's log file")
        assert records[0]["callback"] == "on_bar" and records[0]["strategy"] == "sma_cross"
        assert "ValueError: bar 0" in records[0]["exc"]  # the traceback, where the strategy's author can read it
        assert len(records) == 1  # the next ones within the interval are counted, not logged: no flood
        ray.get(node.close.remote(), timeout=30)
    finally:
        engine.shutdown()


@ray.remote(num_cpus=0)
class _ViewedStrategyNode(StrategyNode):
    """The node of a configured strategy whose view a test can read and spoil, as events the bus never carried would
    (an OMS that died before publishing them: its restart resyncs the account view, not the strategies)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.view_refresh_seconds = 0.2

    def view(self) -> tuple[dict, dict]:
        return dict(self.ctx.balances), dict(self.ctx.positions)

    def spoil_view(self) -> None:
        self.ctx.balances = {"USDT": (1, 0)}
        self.ctx.positions = {"BTCUSDT": 123}


def test_a_strategy_s_view_left_stale_by_lost_events_is_put_right_from_the_oms(ray_runtime):
    """A strategy's view of its account followed the bus alone (read from the OMS only at start and after the bus
    dropped events): what the bus never carried left it stale until that symbol's next update, and sma_cross, which buys
    when it sees itself flat, would decide on it. It is read from the OMS again every few seconds, without waiting."""
    engine = start_local(file_config(), name="strategy-view")
    try:
        node = _ViewedStrategyNode.remote(
            dict(SMA), engine.actor("oms"), engine.actor("bus"), {"BTCUSDT": ("BTC", "USDT")}, order_inbox=10
        )
        ray.get(node.ping.remote(), timeout=60)
        truth = {asset: tuple(v) for asset, v in engine.balances().items()}
        wait_for(lambda: ray.get(node.view.remote(), timeout=30)[0] == truth, what="the view read at start")
        ray.get(node.spoil_view.remote(), timeout=30)
        balances, positions = wait_for(
            lambda: (v := ray.get(node.view.remote(), timeout=30))[0] == truth and v,
            what="the spoiled view to be the OMS's again",
        )
        assert positions.get("BTCUSDT", 0) == 0  # the account holds no BTCUSDT position
        assert ray.get(node.status.remote(), timeout=30)["view_refreshes"] >= 1
        ray.get(node.close.remote(), timeout=30)
    finally:
        engine.shutdown()
