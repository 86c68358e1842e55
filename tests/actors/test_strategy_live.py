"""A backtest strategy (the built-in SMA cross) runs unchanged on the actor engine, from the config."""

from __future__ import annotations

import asyncio
import threading
import time

import orjson
import pytest
import ray

from veloz_actors import ConfigError
from veloz_actors.actors.api import build_spec, start_local
from veloz_actors.actors.strategy_node import StrategyNode
from veloz_actors.logs import LogSettings
from veloz_actors.messages import OrderType, PositionUpdated, RejectReason, Side, TimeInForce
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
        (
            {"strategy": "sma_cross", "symbol": "BTCUSDT", "params": {"fast": 2, "slow": 4}, "order_events": "mine"},
            "order_events",
        ),
    ],
)
def test_a_bad_strategy_entry_is_a_clear_config_error(entry, named):
    with pytest.raises(ConfigError, match=named):
        build_spec(file_config(strategies=[entry]))


def test_two_strategies_on_one_symbol_and_account_are_refused_at_start():
    """Each strategy takes its account's position for its own: two on one symbol and account traded each other's
    (on the simulated market sma_cross sold the 1.66381 BTC rsi_reversion had bought, to the unit). The start refuses
    them, naming both entries; on two accounts they are independent and accepted."""
    rsi = {"strategy": "rsi_reversion", "params": {"period": 2, "lower": 40, "upper": 60}, "symbol": "BTCUSDT"}
    with pytest.raises(ConfigError, match=r"entries 0 \(sma_cross\) and 1 \(rsi_reversion\) both trade BTCUSDT"):
        build_spec(file_config(strategies=[SMA, rsi]))
    config = file_config(strategies=[SMA, {**rsi, "account": "second"}])
    engine = config.model_copy(update={"balances": {**config.balances, "second": {"USDT": "1000"}}})
    spec = build_spec(engine)
    assert [(s["strategy"], s["account"]) for s in spec.strategies] == [
        ("sma_cross", "main"),
        ("rsi_reversion", "second"),
    ]
    assert len(build_spec(file_config(strategies=[SMA, {**SMA, "symbol": "ETHUSDT"}])).strategies) == 2


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


class _Recorder(Strategy):
    """Places one resting buy when armed (on the next book update) and records every order event it is told of."""

    def __init__(self) -> None:
        self.armed = False
        self.heard: list[tuple[str, str]] = []
        self.placed: list[str] = []

    def on_book(self, book):
        if self.armed:
            self.armed = False
            self.placed.append(self.ctx.place_order("BTCUSDT", Side.BUY, qty=100_000, price=5_900_000_000_000))

    def on_order_event(self, event):
        self.heard.append((type(event).__name__, event.client_order_id))


@ray.remote(num_cpus=0)
class _RecordingStrategyNode(StrategyNode):
    """The node of a configured strategy, its strategy swapped for :class:`_Recorder`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        recorder = _Recorder()
        recorder.on_start(self.ctx)
        self.strategy = recorder

    def arm(self) -> None:
        self.strategy.armed = True

    def record(self) -> tuple[list[str], list[tuple[str, str]]]:
        return list(self.strategy.placed), list(self.strategy.heard)


@pytest.mark.parametrize("order_events", ["own", "all"])
def test_a_strategy_hears_of_its_own_orders_unless_it_asks_for_every_order_of_its_account(ray_runtime, order_events):
    """An order placed by hand on the strategy's account (accepted, then cancelled) reached the strategy's
    on_order_event as if it were its own; in a backtest a strategy hears of its own orders only. Now it does here too,
    unless its entry says ``order_events: all``."""
    engine = start_local(file_config(), name=f"strategy-order-events-{order_events}")
    try:
        node = _RecordingStrategyNode.remote(
            {**SMA, "order_events": order_events}, engine.actor("oms"), engine.actor("bus"),
            {"BTCUSDT": ("BTC", "USDT")}, order_inbox=10,
        )  # fmt: skip
        ray.get(node.ping.remote(), timeout=60)
        engine.place_order("BTCUSDT", "BUY", "0.001", "59000", client_order_id="by-hand-1")
        engine.cancel_order("by-hand-1")
        wait_for(
            lambda: any(o["client_order_id"] == "by-hand-1" and o["status"] == "CANCELLED" for o in engine.orders()),
            what="the order placed by hand to be cancelled",
        )
        ray.get(node.arm.remote(), timeout=30)
        base = time.time_ns()

        def own_accepted():
            engine.tick(base)
            placed, heard = ray.get(node.record.remote(), timeout=30)
            return (placed, heard) if placed and ("OrderAccepted", placed[0]) in heard else None

        # the bus delivers in order: the events of the order placed by hand came before the strategy's own
        (own,), heard = wait_for(own_accepted, what="the strategy's own order to be accepted")
        by_hand = [kind for kind, cid in heard if cid == "by-hand-1"]
        assert ("OrderAccepted", own) in heard
        if order_events == "own":
            assert {cid for _, cid in heard} == {own}
        else:
            assert by_hand == ["OrderAccepted", "OrderCancelled"]
        assert ray.get(node.status.remote(), timeout=30)["order_events"] == order_events
        ray.get(node.close.remote(), timeout=30)
    finally:
        engine.shutdown()


def test_the_live_context_follows_its_own_orders_to_their_end_and_their_late_events(ray_runtime):
    """Which order events are the strategy's: those of the orders it placed, through a partial fill and a refused
    cancel to the last fill, and a cancel refused after that; an order it cancels that it did not place; never another
    order of the account. Finished orders leave the set of open ones."""
    from veloz_actors.actors.strategy_node import LiveContext
    from veloz_actors.messages import Liquidity, OrderAccepted, OrderCancelled, OrderFilled, OrderRejected
    from veloz_actors.orders import ClientOrderIds

    ctx = LiveContext(_RecordingOms(), "main", {"BTCUSDT": ("BTC", "USDT")}, ClientOrderIds("t"), order_inbox=10)
    cid = ctx.place_order("BTCUSDT", Side.BUY, qty=2, price=5)
    common = {"account_id": "main", "symbol": "BTCUSDT", "ts": 1}

    def fill(client_order_id, leaves):
        return OrderFilled(client_order_id=client_order_id, order_id=1, side=Side.BUY, trade_id=leaves, price=5,
                           qty=1, fee=0, fee_asset="BTC", liquidity=Liquidity.MAKER, cum_qty=2 - leaves,
                           leaves_qty=leaves, **common)  # fmt: skip

    def refused(client_order_id, reason):
        return OrderRejected(client_order_id=client_order_id, reason=reason, **common)

    accepted = OrderAccepted(client_order_id=cid, order_id=1, side=Side.BUY, order_type=OrderType.LIMIT,
                             tif=TimeInForce.GTC, price=5, qty=2, **common)  # fmt: skip
    other = OrderAccepted(client_order_id="by-hand", order_id=2, side=Side.BUY, order_type=OrderType.LIMIT,
                          tif=TimeInForce.GTC, price=5, qty=2, **common)  # fmt: skip
    assert ctx.mine(accepted) and not ctx.mine(other)
    assert ctx.mine(fill(cid, 1)) and ctx.mine(refused(cid, RejectReason.CANCEL_PENDING)) and cid in ctx.own
    assert ctx.mine(fill(cid, 0)) and cid not in ctx.own
    assert ctx.mine(refused(cid, RejectReason.ORDER_NOT_OPEN))  # a cancel sent before it heard of the last fill
    assert not ctx.mine(fill("by-hand", 0))
    ctx.cancel_order("by-hand")  # the strategy asked: the outcome is its business
    assert ctx.mine(OrderCancelled(client_order_id="by-hand", order_id=2, filled_qty=0, **common))
    assert ctx.own == {}


class _LeakyBroken(Strategy):
    """Raises on every bar with a message that holds a credential, as a strategy that prints its config might."""

    def on_bar(self, bar):
        raise ValueError(f"bar {bar.index} with api_key={'k' * 64}")


def _break(node) -> None:
    """Run inside a configured strategy's actor: its strategy becomes :class:`_LeakyBroken` (only built-ins can be
    configured), failing while its last exception is under a second old."""
    node.strategy = _LeakyBroken()
    node.failing_seconds = 1.0


def _strategy_actor(engine, name: str):
    """The Ray handle of a configured strategy's actor, from the engine's supervisor (the handle lists no strategy)."""
    return ray.get(engine._supervisor.__ray_call__.remote(lambda supervisor: supervisor.actors[name]), timeout=30)


def test_a_strategy_that_keeps_raising_is_a_status_problem_until_it_stops(ray_runtime):
    """A strategy's exceptions were counted in its own entry only: STATUS problems (what `veloz status` exits 1 on
    and the monitoring page shows per actor) listed stranded actors alone. A failing strategy is listed there now,
    with its count and last message, never a secret in it, and leaves the list once it stopped raising."""
    engine = start_local(file_config(strategies=[SMA]), name="strategy-failing")
    try:
        name = "strategy:0:sma_cross"
        node = _strategy_actor(engine, name)
        ray.get(node.__ray_call__.remote(_break), timeout=30)
        base = time.time_ns()
        for k in range(3):
            engine.tick(base + k * 1_000_000_000)

        def raised_twice():
            status = engine.status()
            return status if status["strategies"][name]["errors"] == 2 else None

        status = wait_for(raised_twice, what="the strategy to raise on both bars")
        entry = status["strategies"][name]
        assert entry["failing"] and entry["last_error"].startswith("ValueError: bar 1 with api_key=")
        (problem,) = status["problems"]
        assert f"actor {name!r}" in problem and "2 exceptions" in problem and entry["last_error"] in problem
        assert "k" * 64 not in orjson.dumps(status).decode()
        calm = wait_for(lambda: not (s := engine.status())["strategies"][name]["failing"] and s,
                        what="the strategy to count as failing no longer")  # fmt: skip
        assert calm["problems"] == []
    finally:
        engine.shutdown()


class _Blocked(Strategy):
    """Blocks in on_bar until released, as a strategy waiting on a lock or a network call does."""

    def __init__(self) -> None:
        self.released = threading.Event()

    def on_bar(self, bar):
        self.released.wait(timeout=300)


def _block(node) -> None:
    """Run inside a configured strategy's actor: its strategy becomes :class:`_Blocked`, stuck from its first second."""
    node.strategy = _Blocked()
    node.stuck_seconds = 0.0


def _unblock(node) -> None:
    node.strategy.released.set()


def test_a_strategy_stuck_in_a_callback_is_a_status_problem_until_it_returns(ray_runtime):
    """A callback that does not return (a strategy waiting on a lock or a network call) left STATUS silent: alive,
    not failing, no problem, while the strategy got no event and placed no order (measured: 8 s blocked in on_bar,
    `problems` empty). STATUS now names the callback and how long it has run, and lists the strategy in problems."""
    engine = start_local(file_config(strategies=[SMA]), name="strategy-stuck")
    try:
        name = "strategy:0:sma_cross"
        node = _strategy_actor(engine, name)
        ray.get(node.__ray_call__.remote(_block), timeout=30)
        base = time.time_ns()
        for k in range(2):
            engine.tick(base + k * 1_000_000_000)
        status = wait_for(
            lambda: (s := engine.status())["strategies"][name]["stuck"] and s, what="the strategy to be stuck in on_bar"
        )
        entry = status["strategies"][name]
        assert entry["callback"] == "on_bar" and entry["callback_seconds"] >= 0 and not entry["failing"]
        (problem,) = status["problems"]
        assert f"actor {name!r}" in problem and "has been in on_bar for" in problem
        ray.get(node.__ray_call__.remote(_unblock), timeout=30)
        calm = wait_for(
            lambda: not (s := engine.status())["strategies"][name]["stuck"] and s, what="the callback to return"
        )
        assert calm["problems"] == [] and calm["strategies"][name]["callback"] is None
        assert calm["strategies"][name]["errors"] == 0
    finally:
        engine.shutdown()


def _refusing_after_two(node) -> None:
    node.refusing_after = 2


def test_a_strategy_whose_orders_are_all_refused_says_why_in_status(ray_runtime):
    """sma_cross buys with all its account's free cash: with 1,000,000 USDT that is about 17 BTC, above the risk
    limit's 10 BTC an order, so every buy was refused MAX_ORDER_QUANTITY while its STATUS entry showed only a growing
    order count, nothing refused, no problem (the engine-wide rejection count does not say whose). Its entry now counts
    its refusals by reason with the last one's detail, and a run of them puts it in problems."""
    config = file_config(strategies=[SMA])
    rich = config.model_copy(update={"balances": {"main": {**config.balances["main"], "USDT": "1000000"}}})
    engine = start_local(rich, name="strategy-refused")
    try:
        name = "strategy:0:sma_cross"
        node = _strategy_actor(engine, name)
        ray.get(node.__ray_call__.remote(_refusing_after_two), timeout=30)
        base = time.time_ns()
        for k in range(120):
            engine.tick(base + k * 1_000_000_000)
        status = wait_for(
            lambda: (s := engine.status())["strategies"][name]["refusing"] and s, what="two buys refused in a row"
        )
        entry = status["strategies"][name]
        assert set(entry["rejected"]) == {"MAX_ORDER_QUANTITY"} and entry["refused_in_a_row"] >= 2
        assert (
            entry["last_rejection"].startswith("MAX_ORDER_QUANTITY: ")
            and "above the risk limit 10" in entry["last_rejection"]
        )
        (problem,) = status["problems"]
        assert f"actor {name!r}" in problem and entry["last_rejection"] in problem
        assert entry["errors"] == 0  # a refusal is an outcome the strategy is told of, not an error
    finally:
        engine.shutdown()


@ray.remote(num_cpus=0)
class _LateViewOms:
    """Stands in for the OMS actor's view queries: each answer is the account's state when the call arrives, sent back
    only once released when held, as an OMS answers a refresh computed before the fill it publishes next."""

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None
        self.to_hold = 0  # the next calls held
        self.qty = 0
        self.waiting = 0

    async def _answer(self, value):
        if self.gate is not None and self.to_hold > 0:
            self.to_hold -= 1
            self.waiting += 1
            await self.gate.wait()
        return value

    async def balances(self, account):
        return await self._answer({"USDT": (100_000_000, 0)})

    async def positions(self, account):
        position = PositionUpdated(account_id=account, symbol="BTCUSDT", qty=self.qty, avg_entry_price=1, cost=0,
                                   realized_pnl=0, unrealized_pnl=0, mark_price=1, ts=1)  # fmt: skip
        return await self._answer([position])

    async def hold(self, calls: int = 2) -> None:
        self.gate = asyncio.Event()
        self.to_hold = calls

    async def held(self) -> int:
        return self.waiting

    async def fill(self, qty: int) -> None:
        self.qty = qty

    async def release(self) -> None:
        assert self.gate is not None
        self.gate.set()


@ray.remote(num_cpus=0)
class _RefreshedStrategyNode(StrategyNode):
    """The node of a configured strategy whose view refresh a test starts, and whose view it reads."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.view_refresh_seconds = 3_600.0  # only when the test asks

    def refresh_now(self) -> None:
        self._view_due = 0.0

    def position(self) -> int:
        return self.ctx.position("BTCUSDT")

    def refresh_pending(self) -> bool:
        return self._view_asked is not None

    def load_view(self) -> None:
        self._load_view()  # what the node's loop does after the bus dropped some of its events


def test_a_view_refresh_never_undoes_an_event_that_came_while_it_was_on_its_way(ray_runtime):
    """The view's refresh asks the OMS and applies its answer on a later turn of the loop; a fill published after the
    OMS answered, and seen on the bus before the answer was read, was overwritten by it: the strategy saw itself
    flat while it held the position (sma_cross then skips its exit: it sells only on a cross) until the next refresh
    or fill. The events seen while the answer was on its way are applied again after it."""
    from veloz_actors.actors.bus import BUS_CONCURRENCY_GROUPS, EventBusActor

    oms = _LateViewOms.remote()
    bus = ray.remote(concurrency_groups=BUS_CONCURRENCY_GROUPS)(EventBusActor).options(num_cpus=0).remote(1_000)
    node = _RefreshedStrategyNode.remote(dict(SMA), oms, bus, {"BTCUSDT": ("BTC", "USDT")}, order_inbox=10)
    ray.get(node.ping.remote(), timeout=60)
    ray.get(oms.hold.remote(), timeout=30)
    ray.get(node.refresh_now.remote(), timeout=30)
    wait_for(lambda: ray.get(oms.held.remote(), timeout=30) == 2, what="the refresh's two queries at the OMS")
    ray.get(oms.fill.remote(7), timeout=30)  # the strategy's buy fills after the OMS answered: published next
    filled = PositionUpdated(account_id="main", symbol="BTCUSDT", qty=7, avg_entry_price=1, cost=7, realized_pnl=0,
                             unrealized_pnl=0, mark_price=1, ts=2)  # fmt: skip
    ray.get(bus.publish.remote([filled]), timeout=30)
    wait_for(lambda: ray.get(node.position.remote(), timeout=30) == 7, what="the fill in the strategy's view")
    ray.get(oms.release.remote(), timeout=30)
    wait_for(lambda: ray.get(node.status.remote(), timeout=30)["view_refreshes"] == 1, what="the refresh applied")
    assert ray.get(node.position.remote(), timeout=30) == 7
    ray.get(node.close.remote(), timeout=30)


def test_a_view_refresh_answered_before_a_reload_never_overwrites_it(ray_runtime):
    """After the bus dropped some of a slow strategy's events the node reads its view from the OMS at once; a periodic
    refresh asked before that and answered after it carried an older state and overwrote the reload, undoing what the
    dropped events had changed (the strategy's own fill among them) until the next refresh. The reload now supersedes
    a refresh on its way."""
    from veloz_actors.actors.bus import BUS_CONCURRENCY_GROUPS, EventBusActor

    oms = _LateViewOms.remote()
    bus = ray.remote(concurrency_groups=BUS_CONCURRENCY_GROUPS)(EventBusActor).options(num_cpus=0).remote(1_000)
    node = _RefreshedStrategyNode.remote(dict(SMA), oms, bus, {"BTCUSDT": ("BTC", "USDT")}, order_inbox=10)
    ray.get(node.ping.remote(), timeout=60)
    ray.get(oms.hold.remote(2), timeout=30)
    ray.get(node.refresh_now.remote(), timeout=30)
    wait_for(lambda: ray.get(oms.held.remote(), timeout=30) == 2, what="the refresh's two queries at the OMS")
    ray.get(oms.fill.remote(7), timeout=30)  # a fill whose events the bus dropped
    ray.get(node.load_view.remote(), timeout=30)
    assert ray.get(node.position.remote(), timeout=30) == 7
    ray.get(oms.release.remote(), timeout=30)  # the refresh's answer, computed before the fill, comes in
    wait_for(lambda: not ray.get(node.refresh_pending.remote(), timeout=30), what="no refresh on its way")
    assert ray.get(node.position.remote(), timeout=30) == 7
    ray.get(node.refresh_now.remote(), timeout=30)  # later refreshes go on
    wait_for(lambda: ray.get(node.status.remote(), timeout=30)["view_refreshes"] == 1, what="a refresh applied")
    assert ray.get(node.position.remote(), timeout=30) == 7
    ray.get(node.close.remote(), timeout=30)
