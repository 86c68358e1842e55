"""The feed actor replaying a recorded Binance capture (``actors.replay`` / ``veloz start --replay``)."""

from __future__ import annotations

import time

import pytest
import ray

from veloz_actors import ConfigError
from veloz_actors.actors.api import build_spec, start_local
from veloz_actors.actors.feed import MarketFeedActor
from veloz_actors.actors.spec import EngineSpec
from veloz_actors.data.loaders import load_market_events
from veloz_actors.messages import BookDelta, BookTop, Error, Trade

from .helpers import file_config, wait_for

CAPTURE = "ticks_l2/binance_spot_btcusdt_20230405_ws.txt.gz"  # 15,088 BTCUSDT events over 415 s
_MARKET = (BookTop, BookDelta, Trade)


def test_replay_settings_are_checked_before_any_actor_starts(shared_data, tmp_path):
    spec = build_spec(file_config(replay={"path": str(shared_data / CAPTURE), "speed": 0, "batch": 250}))
    assert spec.replay == {"path": str(shared_data / CAPTURE), "speed": 0.0, "batch": 250, "reference_prices": False}
    assert build_spec(file_config(replay=str(shared_data / CAPTURE))).replay["speed"] == 1.0  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"actors\.replay\.path: no such file: .*missing\.txt\.gz"):
        build_spec(file_config(replay={"path": str(tmp_path / "missing.txt.gz")}))
    with pytest.raises(ConfigError, match=r"actors\.replay: speed: Input should be greater than or equal to 0"):
        build_spec(file_config(replay={"path": str(shared_data / CAPTURE), "speed": -1}))
    with pytest.raises(ConfigError, match=r"actors\.replay: pace: Extra inputs are not permitted"):
        build_spec(file_config(replay={"path": str(shared_data / CAPTURE), "pace": 2}))


def _market(subscription) -> list:
    return [e for e in subscription.poll() if isinstance(e, _MARKET)]


def _rewinds(received: list, wanted: list, batch: int) -> int:
    """How many times ``received`` steps back (a batch sent again after a restart); fails on a gap or a reorder."""
    expected = wanted.index(received[0])
    rewinds = 0
    for event in received:
        if event != wanted[expected]:
            back = wanted.index(event, max(0, expected - batch), expected)  # ValueError: lost or out of order
            assert expected - back <= batch, "stepped back by more than one batch"
            rewinds += 1
            expected = back
        expected += 1
    assert expected == len(wanted), "the replay stopped before the end of the file"
    return rewinds


@pytest.mark.usefixtures("ray_runtime")
def test_a_killed_feed_resumes_its_replay_where_it_was(shared_data, tmp_path):
    wanted = [e for e in load_market_events(shared_data / CAPTURE) if isinstance(e, _MARKET)]
    config = file_config(replay={"path": str(shared_data / CAPTURE), "speed": 20, "batch": 200})  # ~20 s
    engine = start_local(config, name="test-replay", journal_dir=tmp_path)
    try:
        subscription = engine.subscribe(max_queue=len(wanted) * 2)
        received: list = []
        at_kill = wait_for(
            lambda: (r := engine.status()["replay"])["sent"] > 3000 and r, timeout=120, what="a fifth of the replay"
        )
        ray.kill(engine.actor("feed"), no_restart=False)
        assert not at_kill["done"], "killed after the end: nothing to resume"
        status = wait_for(
            lambda: (s := engine.status())["replay"] and s["replay"]["done"] and s,
            timeout=90,
            what="the restarted feed to finish the file",
        )
        assert status["actors"]["feed"]["restarts"] == 1
        replay = status["replay"]
        assert replay["load_seconds"] > 0 and replay["replay_seconds"] > 0
        assert {k: v for k, v in replay.items() if not k.endswith("_seconds")} == {
            "path": str(shared_data / CAPTURE),
            "started": True,
            "sent": len(wanted),
            "total": len(wanted),
            "done": True,
            "error": None,
        }

        def _all() -> bool:
            received.extend(_market(subscription))
            return bool(received) and received[-1] == wanted[-1]

        wait_for(_all, timeout=60, what="the last recorded event at the subscriber")
        subscription.close()
        assert _rewinds(received, wanted, batch=200) <= 1  # nothing lost, at most one batch repeated
        assert engine.top("BTCUSDT") == [e for e in wanted if type(e) is BookTop][-1]
    finally:
        engine.shutdown()
    # a new engine on the same journals replays the file from its start (only a restarted feed resumes)
    config = file_config(replay={"path": str(shared_data / CAPTURE), "speed": 0, "batch": 1000})
    with start_local(config, name="test-replay-again", journal_dir=tmp_path) as again:
        wait_for(lambda: again.status()["replay"]["done"], timeout=60, what="the second replay")
        assert again.status()["market_events"] == len(wanted)


@pytest.mark.usefixtures("ray_runtime")
def test_a_file_that_is_not_a_capture_is_reported_and_the_engine_trades_on(tmp_path):
    bad = tmp_path / "bars.csv"
    bad.write_text("open_time,open,high,low,close\n1,2,3,4,5\n")
    engine = start_local(file_config(replay={"path": str(bad), "speed": 0}), name="test-replay-bad")
    try:
        replay = wait_for(lambda: engine.status()["replay"]["error"], timeout=120, what="the replay error")
        assert (
            replay.startswith(f"replay of {bad} failed: ") and "line 1: expected '<local timestamp> <JSON>'" in replay
        )
        engine.tick()
        engine.place_order("BTCUSDT", "BUY", "0.01", client_order_id="after-bad-replay")
        assert engine.settle()
        assert engine.query("after-bad-replay")[0]["status"] == "FILLED"
        assert all(info["alive"] for info in engine.status()["actors"].values())
    finally:
        engine.shutdown()


@pytest.mark.usefixtures("ray_runtime")
def test_a_capture_of_another_symbol_names_what_the_file_has(shared_data):
    other = shared_data / "ticks_l2" / "binance_cm_btcusd_perp_20240808_ws.txt.gz"
    engine = start_local(file_config(replay={"path": str(other), "speed": 0}), name="test-replay-other")
    try:
        replay = wait_for(lambda: engine.status()["replay"]["error"], timeout=120, what="the replay error")
        assert "no events for the configured symbols ['BTCUSDT', 'ETHUSDT'] (the file has ['BTCUSD_PERP'])" in replay
        assert engine.status()["replay"]["total"] is None
    finally:
        engine.shutdown()


@pytest.mark.usefixtures("ray_runtime")
def test_a_held_market_sends_nothing_until_started_and_a_subscriber_gets_it_from_its_first_event(shared_data):
    wanted = [e for e in load_market_events(shared_data / CAPTURE) if isinstance(e, _MARKET)]
    config = file_config(replay={"path": str(shared_data / CAPTURE), "speed": 0})
    engine = start_local(config, name="test-replay-held", hold_market=True)
    try:
        wait_for(lambda: engine.status()["replay"]["total"], timeout=120, what="the file to load")
        time.sleep(0.5)  # at speed 0 an unheld replay would have sent most of the file by now
        status = engine.status()
        assert status["replay"]["started"] is False and status["replay"]["sent"] == 0
        assert status["market_events"] == 0
        subscription = engine.subscribe(max_queue=len(wanted) * 2)
        assert engine.start_market() is True
        assert engine.start_market() is True  # idempotent: the file goes once
        received: list = []

        def _all() -> bool:
            received.extend(_market(subscription))
            return len(received) >= len(wanted)

        wait_for(_all, timeout=60, what="the whole file at the subscriber")
        time.sleep(0.2)
        received.extend(_market(subscription))
        assert received == wanted
        assert engine.status()["replay"] | {"load_seconds": 0, "replay_seconds": 0} == {
            "path": str(shared_data / CAPTURE), "started": True, "sent": len(wanted), "total": len(wanted),
            "done": True, "error": None, "load_seconds": 0, "replay_seconds": 0,
        }  # fmt: skip
    finally:
        engine.shutdown()
    with start_local(file_config(), name="test-replay-none") as plain:
        assert plain.start_market() is False


@pytest.mark.usefixtures("ray_runtime")
def test_an_unheld_replay_starts_once_the_live_strategies_subscribed(shared_data):
    """At speed 0 the file goes in about a second: a strategy that subscribed after it started would miss bars."""
    tops = [
        e for e in load_market_events(shared_data / CAPTURE)
        if type(e) is BookTop and e.symbol == "BTCUSDT" and e.bid_price and e.ask_price
    ]  # fmt: skip
    bar_ns = 1_000_000_000
    closed = len({top.ts_event - top.ts_event % bar_ns for top in tops}) - 1  # the last bar stays open
    # a queue for the whole file (11,159 tops and trades in about a second at speed 0): the test is about the start
    sma = {"strategy": "sma_cross", "params": {"fast": 2, "slow": 4}, "symbol": "BTCUSDT", "bar_ms": 1000}
    sma["queue"] = 20_000
    config = file_config(replay={"path": str(shared_data / CAPTURE), "speed": 0}, strategies=[sma])
    with start_local(config, name="test-replay-strategy") as engine:
        wait_for(lambda: engine.status()["replay"]["done"], timeout=60, what="the replay")
        status = wait_for(
            lambda: (s := engine.status()["strategies"]["strategy:0:sma_cross"])["bars"] >= closed and s,
            timeout=30,
            what=f"the strategy to close the file's {closed} bars",
        )
        assert status["bars"] == closed and status["dropped"] == 0


@ray.remote(num_cpus=0, max_task_retries=0)
class _FailingShard:
    """A venue shard whose ``apply`` raises (an application error: the actor lives on), counting the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def apply(self, batch: object) -> int:
        self.calls += 1
        raise ValueError(f"cannot apply call {self.calls}")

    def count(self) -> int:
        return self.calls


@ray.remote(num_cpus=0)
class _Bus:
    def __init__(self) -> None:
        self.events: list = []

    def publish(self, events: list) -> int:
        self.events.extend(events)
        return len(events)

    def errors(self) -> list:
        return [e for e in self.events if type(e) is Error]


@pytest.mark.usefixtures("ray_runtime")
def test_a_batch_a_venue_shard_fails_to_apply_is_said_once_and_the_replay_goes_on(shared_data):
    """The feed sent a batch whose ``apply`` raised again every 0.2 s forever: market data stopped for every shard
    and the events applied before the error were applied again. An application error (not a restart) is now said
    on the bus, naming the shard's symbols, and the feed moves on: each batch reaches the shard once."""
    spec = EngineSpec(name="test-apply-error", engine_config={}, shards={"s0": ("BTCUSDT",)},
                      replay={"path": str(shared_data / CAPTURE), "speed": 0, "batch": 4000})  # fmt: skip
    shard, bus = _FailingShard.remote(), _Bus.remote()
    feed = ray.remote(num_cpus=0)(MarketFeedActor).remote(spec, None, {"s0": shard}, bus)
    try:
        assert ray.get(feed.start_market.remote(), timeout=60)
        status = wait_for(lambda: (s := ray.get(feed.status.remote(), timeout=30))["replay"]["done"] and s,
                          timeout=120, what="the end of the replay")  # fmt: skip
        calls = ray.get(shard.count.remote(), timeout=30)
        assert calls >= 4 and status["apply_errors"] == calls  # 15,088 events in batches of 4,000, each sent once
        errors = wait_for(lambda: len(e := ray.get(bus.errors.remote(), timeout=30)) == calls and e,
                          what="one error per batch")  # fmt: skip
        assert {e.code for e in errors} == {"MARKET_APPLY_FAILED"} and all("BTCUSDT" in e.message for e in errors)
    finally:
        for actor in (feed, shard, bus):
            ray.kill(actor)
