"""The bus's forwards (the risk actor's marks): one call in flight per follower, what comes meanwhile merged (each
symbol's latest top of book, every other event in order), nothing dropped below the bound, and a publish never waits
on a slow follower."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import ray

from tests.ray_fixtures import RayRuntime
from veloz_actors.actors.bus import _FORWARD_EVERY, BUS_CONCURRENCY_GROUPS, EventBusActor
from veloz_actors.core.market_batch import MarketBatch
from veloz_actors.messages import BookTop, Side, Trade

from .helpers import wait_for

_SLOW_SECONDS = 0.3


@ray.remote(num_cpus=0, max_task_retries=0)
class _SlowFollower:
    """Records every ``apply`` call, taking ``seconds`` over each."""

    def __init__(self, seconds: float = _SLOW_SECONDS) -> None:
        self.seconds = seconds
        self.calls: list[list[Any]] = []

    def apply(self, events: list[Any]) -> int:
        time.sleep(self.seconds)
        self.calls.append(list(events))
        return len(events)

    def received(self) -> list[list[Any]]:
        return self.calls


def _top(symbol: str, i: int) -> BookTop:
    return BookTop(
        symbol=symbol, bid_price=100 + i, bid_qty=1, ask_price=102 + i, ask_qty=1, update_id=i, ts_event=i, ts_recv=i
    )


def _trade(i: int) -> Trade:
    return Trade(symbol="BTCUSDT", trade_id=i, price=100 + i, qty=1, aggressor=Side.BUY, ts_event=i, ts_recv=i)


def _bus() -> Any:
    return (
        ray.remote(concurrency_groups=BUS_CONCURRENCY_GROUPS)(EventBusActor)  # type: ignore[call-overload]
        .options(num_cpus=0, max_task_retries=0, allow_out_of_order_execution=False)
        .remote(1000)
    )


def _wait_for(follower: Any, done: Any, timeout: float = 30.0) -> list[list[Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls = ray.get(follower.received.remote(), timeout=30)
        if done(calls):
            return calls
        time.sleep(0.05)
    raise AssertionError(f"the follower did not get what was published within {timeout} s: {calls}")


def test_a_slow_follower_gets_merged_calls_with_the_latest_tops_and_every_trade_in_order(
    ray_runtime: RayRuntime,
) -> None:
    bus, follower = _bus(), _SlowFollower.remote()
    assert ray.get(bus.forward.remote(follower, ["BookTop", "Trade"], name="marks"), timeout=30) == 1
    started = time.monotonic()
    for i in range(20):
        ray.get(bus.publish.remote([_top("BTCUSDT", i), _top("ETHUSDT", i), _trade(i)]), timeout=30)
    publishing = time.monotonic() - started
    assert publishing < 20 * _SLOW_SECONDS / 2, f"publishes waited on the slow follower: {publishing:.2f} s"
    calls = _wait_for(follower, lambda calls: any(_trade(19) in call for call in calls))
    most = 5 + int(publishing / _SLOW_SECONDS)  # (a slow machine's publishes span more round trips)
    assert 2 <= len(calls) <= most, f"one call per round trip of the follower, not one per publish: {len(calls)}"
    received = [event for call in calls for event in call]
    assert [e for e in received if type(e) is Trade] == [_trade(i) for i in range(20)]
    for call in calls:  # within a call, each symbol's top comes once: the latest
        symbols = [e.symbol for e in call if type(e) is BookTop]
        assert len(symbols) == len(set(symbols)) and set(symbols) == {"BTCUSDT", "ETHUSDT"}
    assert calls[-1][-3:] == [_top("BTCUSDT", 19), _top("ETHUSDT", 19), _trade(19)]
    # the bus learns that the last call ended a moment after the follower saw it
    status = wait_for(
        lambda: (f := ray.get(bus.status.remote(), timeout=30)["forwards"]["marks"])["in_flight"] == 0 and f,
        what="the bus to see the last call end",
    )
    assert status == {"kinds": ["BookTop", "Trade"], "sent": len(calls), "dropped": 0, "in_flight": 0, "pending": 0}


def test_a_columnar_batch_forwards_each_symbols_latest_top(ray_runtime: RayRuntime) -> None:
    bus, follower = _bus(), _SlowFollower.remote()
    ray.get(bus.forward.remote(follower, ["BookTop"], name="marks"), timeout=30)
    n = 10
    columns = {
        "symbol": np.arange(n) % 2,
        "bid_price": np.arange(n) + 100,
        "ask_price": np.arange(n) + 102,
        "bid_qty": 1,
        "ask_qty": 1,
        "update_id": np.arange(n),
        "ts_event": np.arange(n),
        "ts_recv": np.arange(n),
    }
    ray.get(bus.publish.remote(MarketBatch.of_tops(("BTCUSDT", "ETHUSDT"), columns)), timeout=30)
    calls = _wait_for(follower, lambda calls: len(calls) == 1)
    assert sorted(calls[0], key=lambda e: e.symbol) == [_top("BTCUSDT", 8), _top("ETHUSDT", 9)]


def test_a_quick_follower_gets_at_most_one_call_per_interval(ray_runtime: RayRuntime) -> None:
    bus, follower = _bus(), _SlowFollower.remote(0.0)
    ray.get(bus.forward.remote(follower, ["BookTop", "Trade"], name="marks"), timeout=30)
    ray.get(bus.publish.remote([_trade(0)]), timeout=30)  # after a quiet spell: at once
    assert _wait_for(follower, lambda calls: len(calls) == 1, timeout=5.0) == [[_trade(0)]]
    time.sleep(2 * _FORWARD_EVERY)
    started = time.monotonic()
    for i in range(1, 200):
        ray.get(bus.publish.remote([_top("BTCUSDT", i), _trade(i)]), timeout=30)
    elapsed = time.monotonic() - started
    calls = _wait_for(follower, lambda calls: any(_trade(199) in call for call in calls))
    bound = 1 + elapsed / _FORWARD_EVERY + 2  # the first call, one per interval while publishing, the rest
    assert len(calls) <= bound, f"{len(calls)} calls for 200 publishes over {elapsed:.3f} s (at most {bound:.0f})"
    assert [e for call in calls for e in call if type(e) is Trade] == [_trade(i) for i in range(200)]
    assert calls[-1][-2:] == [_top("BTCUSDT", 199), _trade(199)]
