"""The actor engine through its Python handle: orders, queries, subscriptions, health, bad input, backpressure."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import ray

from veloz_actors import ConfigError, InvalidInput
from veloz_actors.actors.api import start_local
from veloz_actors.actors.backpressure import InFlightWindow
from veloz_actors.actors.oms import _PACED_SECONDS
from veloz_actors.fixed import format_decimal, parse_formatted
from veloz_actors.messages import (
    BookTop,
    OrderAccepted,
    OrderFilled,
    OrderRejected,
    RejectReason,
    Side,
)

from .helpers import file_config, wait_for

pytestmark = pytest.mark.usefixtures("ray_runtime")


@pytest.fixture(scope="module")
def engine(ray_runtime):
    handle = start_local(file_config(subscriber_queue=100_000), name="test-engine")
    handle.tick()  # the simulated market maker quotes: liquidity and reference prices
    yield handle
    handle.shutdown()


def _below_mid(engine, percent: int, symbol: str = "BTCUSDT") -> str:
    """A decimal price ``percent`` under the reference price, on the 0.01 tick."""
    mid = parse_formatted(engine.status()["reference_prices"][symbol])
    return format_decimal(mid * (100 - percent) // 100 // 1_000_000 * 1_000_000)


def test_limit_order_rests_then_cancels_and_unlocks_funds(engine):
    price = _below_mid(engine, 2)
    before = engine.balances()["USDT"]
    events = engine.place_order("BTCUSDT", "BUY", "0.01", price, client_order_id="rest-1")
    assert [type(e) for e in events][0] is OrderAccepted  # the kernel's step: risk passed, funds reserved
    assert engine.balances()["USDT"][1] > before[1]
    assert engine.settle()
    assert engine.query("rest-1")[0]["status"] == "ACCEPTED"  # the venue took it: it rests
    subscription = engine.subscribe(kinds=["OrderCancelled"], timeout=60.0, max_events=1)
    assert engine.cancel_order("rest-1") == []  # on its way to the venue (PENDING_CANCEL)
    assert [e.client_order_id for e in subscription] == ["rest-1"]  # the venue's answer, on the bus
    assert engine.query("rest-1")[0]["status"] == "CANCELLED"
    assert engine.balances()["USDT"] == before


def test_market_order_fills_and_the_account_actor_follows(engine):
    subscription = engine.subscribe(kinds=["OrderFilled"])
    events = engine.place_order("BTCUSDT", Side.BUY, Decimal("0.01"), client_order_id="mkt-1")
    assert type(events[0]) is OrderAccepted and not any(type(e) is OrderFilled for e in events)
    fills = []
    wait_for(
        lambda: fills.extend(subscription.poll()) or sum(f.qty for f in fills) >= 1_000_000,
        what="the market order's fills on the bus",
    )
    subscription.close()
    assert fills and sum(f.qty for f in fills) == 1_000_000
    assert engine.query("mkt-1")[0]["status"] == "FILLED"
    truth = engine.balances()
    wait_for(lambda: engine.account_view() == truth, what="the account actor to catch up with the OMS")
    assert any(p.symbol == "BTCUSDT" and p.qty > 0 for p in engine.positions())


def test_fills_reach_the_bus_at_once_while_the_views_and_acknowledgements_follow_in_paced_calls(engine):
    """A venue's fills go to the bus in the call that applies them; the account view, the risk actor and the venue's
    acknowledgements get at most one call each per ``_PACED_SECONDS`` (a call each per report landed on two cores just
    as the bus and the subscriber needed one), and still catch up with everything."""
    oms = engine.actor("oms")
    before = ray.get(oms.status.remote(), timeout=30)["peers"]
    subscription = engine.subscribe(kinds=["OrderFilled"])
    start = time.monotonic()
    for i in range(40):
        cid = f"paced-{i}"
        engine.place_order("BTCUSDT", "BUY" if i % 2 == 0 else "SELL", "0.001", client_order_id=cid)
        wait_for(
            lambda cid=cid: any(f.client_order_id == cid for f in subscription.poll(wait=0.05)),
            what=f"the fill of {cid} on the bus",
        )
    elapsed = time.monotonic() - start
    after = ray.get(oms.status.remote(), timeout=30)["peers"]
    subscription.close()
    account_calls = after["account"]["sent"] - before["account"]["sent"]
    assert 0 < account_calls <= elapsed / _PACED_SECONDS + 2, (account_calls, elapsed)
    truth = engine.balances()
    wait_for(lambda: engine.account_view() == truth, what="the account view to catch up with the OMS")
    venues = [name for name in engine.status()["actors"] if name.startswith("venue:")]
    for name in venues:
        venue = engine.actor(name)
        wait_for(
            lambda venue=venue: (s := ray.get(venue.status.remote(), timeout=30))["acked"] == s["batches"],
            what=f"{name}'s report batches all acknowledged",
        )


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"symbol": "DOGEUSDT", "side": "BUY", "qty": "1"}, "unknown symbol"),
        ({"symbol": "BTCUSDT", "side": "HOLD", "qty": "1"}, "side"),
        ({"symbol": "BTCUSDT", "side": "BUY", "qty": "nan"}, "quantity"),
        ({"symbol": "BTCUSDT", "side": "BUY", "qty": "-1"}, "quantity"),
        ({"symbol": "BTCUSDT", "side": "BUY", "qty": "0"}, "quantity"),
        ({"symbol": "BTCUSDT", "side": "BUY", "qty": "1e400"}, "quantity"),
        ({"symbol": "BTCUSDT", "side": "BUY", "qty": True}, "quantity"),
        ({"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "price": "abc"}, "price"),
        ({"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "tif": "GTX"}, "tif"),
        ({"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "client_order_id": "x" * 99}, "client order id"),
    ],
)
def test_bad_input_raises_a_clear_error_and_changes_nothing(engine, kwargs, named):
    before = engine.balances()
    with pytest.raises(InvalidInput, match=named):
        engine.place_order(**kwargs)
    assert engine.balances() == before
    assert engine.status()["actors"]["oms"]["alive"]


def test_business_rejections_are_events_with_a_reason(engine):
    events = engine.place_order("BTCUSDT", "BUY", "0.0000001", client_order_id="tiny-1")  # off the 0.00001 step
    assert [e.reason for e in events] == [RejectReason.QUANTITY_NOT_ON_STEP]
    events = engine.cancel_order("never-placed")
    assert [e.reason for e in events] == [RejectReason.UNKNOWN_ORDER]


def test_subscription_yields_the_events_of_new_orders(engine):
    subscription = engine.subscribe(kinds=["OrderAccepted", "OrderFilled"], timeout=60.0)
    engine.place_order("ETHUSDT", "BUY", "0.01", client_order_id="sub-1")
    seen = []
    for event in subscription:
        seen.append(event)
        if type(event) is OrderFilled:
            break
    subscription.close()
    assert [type(e) for e in seen][0] is OrderAccepted
    assert {e.client_order_id for e in seen} == {"sub-1"}


def test_status_reports_every_actor_alive_with_depth_and_sequence(engine):
    status = engine.status()
    assert status["engine"] == "actors"
    assert set(status["actors"]) == {"oms", "account", "bus", "feed", "venue:BTCUSDT", "venue:ETHUSDT"}
    for name, actor in status["actors"].items():
        assert actor["alive"], name
        assert actor["inbox_depth"] >= 0 and actor["last_seq"] is not None
    assert status["actors"]["oms"]["last_seq"] >= 1


def test_status_gives_prices_as_decimal_strings_as_the_orders_take_them(engine):
    status = engine.status()
    assert set(status["reference_prices"]) == {"BTCUSDT", "ETHUSDT"}
    assert all(type(p) is str and parse_formatted(p) > 0 for p in status["reference_prices"].values())
    for shard in ("BTCUSDT", "ETHUSDT"):
        venue = status["venues"][shard]["venues"][shard]
        bid, mid, ask = (parse_formatted(venue[k]) for k in ("best_bid", "mid", "best_ask"))
        assert 0 < bid <= mid <= ask


def test_market_batches_flow_from_feed_through_books_to_a_subscriber(engine):
    subscription = engine.subscribe(kinds=["BookTop"], max_queue=50_000)
    count = engine_feed_synthetic(engine, 20_000)
    assert count >= 20_000
    received = wait_for(lambda: _drain(subscription, 20_000), what="20 000 book updates at the subscriber")
    assert all(type(e) is BookTop for e in received[:100])
    subscription.close()


def engine_feed_synthetic(engine, count: int) -> int:
    import ray

    feed = engine.actor("feed")
    return ray.get(feed.synthetic.remote(count, 1000), timeout=60)


_drained: dict[int, list] = {}


def _drain(subscription, want: int):
    got = _drained.setdefault(subscription.id, [])
    got.extend(subscription.poll())
    return got if len(got) >= want else None


def test_a_flood_of_orders_is_refused_with_depth_and_limit_and_none_is_lost(engine):
    slow = engine.subscribe(max_queue=50)  # never read during the flood
    window, engine.window = engine.window, InFlightWindow(64)
    try:
        price = _below_mid(engine, 3)
        accepted_refs, commands, refused = [], {}, []
        for wave in range(4):
            for i in range(400):
                command = engine.order_command("BTCUSDT", "BUY", "0.0001", price, client_order_id=f"flood-{wave}-{i}")
                commands[command.client_order_id] = command
                outcome = engine.submit_async(command)
                if type(outcome) is OrderRejected:
                    refused.append(outcome)
                else:
                    accepted_refs.append(outcome)
            engine.complete(accepted_refs[-64:] if len(accepted_refs) >= 64 else accepted_refs)
        results = engine.complete([r for r in accepted_refs[:-64]]) if len(accepted_refs) > 64 else []
        assert engine.window.depth == 0
    finally:
        engine.window = window
    assert refused and all(r.reason is RejectReason.OVERLOADED for r in refused)
    assert "depth 64 at limit 64" in refused[0].detail
    refused_ids = {r.client_order_id for r in refused}
    assert len(refused_ids) + len(accepted_refs) == len(commands)
    for cid in commands:  # every order in exactly one place: refused at the door, or known to the OMS once
        known = engine.query(cid)
        assert len(known) == (0 if cid in refused_ids else 1), cid
    del results
    status = engine.status()
    queue = status["subscribers"][str(slow.id)]
    assert queue["queued"] <= queue["limit"] == 50
    assert queue["dropped"] > 0
    for order in engine.query(None):  # tidy up: cancel what rests
        engine.cancel_order(order["client_order_id"])
    slow.close()


def test_prometheus_endpoint_exports_orders_latency_depths_rejections_and_drops(engine):
    import urllib.request

    from veloz_actors.interfaces.metrics import serve_metrics

    engine.place_order("BTCUSDT", "BUY", "0.01", client_order_id="metrics-1")
    engine.place_order("BTCUSDT", "BUY", "0.0000001", client_order_id="metrics-2")
    server = serve_metrics(engine.status, port=0, round_trip=engine.round_trip)
    try:
        assert server.host == "127.0.0.1"
        text = urllib.request.urlopen(server.url, timeout=10).read().decode()
    finally:
        server.close()
    for needle in (
        'veloz_actor_up{actor="oms"} 1.0',
        'veloz_inbox_depth{actor="bus"}',
        'veloz_actor_restarts_total{actor="account"} 0.0',
        'veloz_order_rejections_total{reason="QUANTITY_NOT_ON_STEP"}',
        "veloz_orders_total ",
        "veloz_market_events_total ",
        'veloz_order_round_trip_seconds_bucket{le="0.01"}',
        "veloz_order_processing_seconds_count ",
    ):
        assert needle in text, needle
    assert "veloz_subscriber_dropped_total" in text


def test_the_simulated_markets_tops_count_as_market_events(engine):
    """``market_events`` (``veloz_market_events_total``) counts what the venue actors publish whatever its source:
    here the simulated market's tops, which ``make run``'s engine publishes and nothing else."""
    subscription = engine.subscribe(kinds=["BookTop"])
    before = engine.status()["market_events"]
    engine.tick()  # waits until every venue actor took the step (and published its tops)
    published = engine.status()["market_events"] - before
    assert published > 0
    received = wait_for(lambda: _drain(subscription, published), what="the step's tops at the subscriber")
    subscription.close()
    assert all(type(e) is BookTop for e in received) and len(received) == published


def test_a_recorded_binance_capture_replays_through_feed_books_and_bus(engine, shared_data):
    from veloz_actors.data.loaders import load_market_events
    from veloz_actors.messages import Trade

    events = load_market_events(shared_data / "ticks_l2" / "binance_spot_btcusdt_20230405_ws.txt.gz")
    wanted = [e for e in events if type(e) in (BookTop, Trade) and e.symbol == "BTCUSDT"]
    assert len(wanted) > 1000
    subscription = engine.subscribe(kinds=["BookTop", "Trade"], max_queue=len(wanted) + 10)
    engine.replay_market(events, batch_size=500)
    received = wait_for(lambda: _drain(subscription, len(wanted)), what="every recorded top and trade")
    subscription.close()
    assert received == wanted  # in order, nothing lost, nothing added
    last_top = [e for e in wanted if type(e) is BookTop][-1]
    assert engine.top("BTCUSDT") == last_top


def test_concurrent_orders_can_never_spend_the_same_balance(engine):
    from veloz_actors.fixed import SCALE, parse_decimal

    free, locked = engine.balances()["USDT"]
    price_text = _below_mid(engine, 3)
    price = parse_decimal(price_text)
    qty = (free * 4 // 10) * SCALE // price // 1000 * 1000  # each order wants ~40 % of the free USDT
    commands = [
        engine.order_command("BTCUSDT", "BUY", format_decimal(qty), price_text, client_order_id=f"race-{i}")
        for i in range(6)
    ]
    refs = [engine.submit_async(c) for c in commands]  # all in flight at once
    results = engine.complete(refs)
    accepted = [c for c, events in zip(commands, results, strict=True) if type(events[0]) is OrderAccepted]
    refused = [events[0] for events in results if type(events[0]) is OrderRejected]
    assert len(accepted) == 2 and len(refused) == 4
    assert {r.reason for r in refused} == {RejectReason.INSUFFICIENT_FUNDS}
    now_free, now_locked = engine.balances()["USDT"]
    assert now_free >= 0 and now_free + now_locked == free + locked
    for command in accepted:
        engine.cancel_order(command.client_order_id)
    assert engine.settle()
    assert engine.balances()["USDT"] == (free, locked)


def test_connect_finds_a_running_engine_by_name_and_refuses_an_unknown_one(engine):
    import veloz_actors as vz

    other = vz.connect(None, name="test-engine", namespace="veloz-tests")
    assert other.query("rest-1")[0]["status"] == "CANCELLED"
    assert other.balances() == engine.balances()
    with pytest.raises(vz.EngineUnavailable, match="no engine named 'nope'"):
        vz.connect(None, name="nope", namespace="veloz-tests")


def test_a_subscription_survives_a_bus_restart_and_counts_the_gap(engine):
    import ray

    subscription = engine.subscribe(kinds=["OrderAccepted"])
    ray.kill(engine.actor("bus"), no_restart=False)
    wait_for(lambda: subscription.poll() == [] and subscription.gaps == 1, what="the subscription to re-subscribe")
    engine.place_order("BTCUSDT", "BUY", "0.001", _below_mid(engine, 3), client_order_id="after-bus")
    events = wait_for(lambda: subscription.poll(), what="an event after the bus restart")
    assert [e.client_order_id for e in events] == ["after-bus"]
    engine.cancel_order("after-bus")
    subscription.close()


def test_a_second_engine_with_a_running_engines_name_is_refused_and_the_first_goes_on(engine, monkeypatch) -> None:
    refused = "an engine named 'test-engine' is already running in namespace "
    with pytest.raises(ConfigError, match=refused):
        start_local(file_config(), name="test-engine")
    # two starts at once: both look before either has registered the name, and Ray refuses the later registration
    # (a ValueError and its traceback before)
    monkeypatch.setattr(ray, "get_actor", lambda *args, **kwargs: (_ for _ in ()).throw(ValueError("not found")))
    with pytest.raises(ConfigError, match=refused):
        start_local(file_config(), name="test-engine")
    monkeypatch.undo()
    status = engine.status()
    assert status["state"] == "running" and all(actor["alive"] for actor in status["actors"].values())


def test_a_subscription_whose_bus_cannot_be_scheduled_says_why_not_a_raw_ray_error(engine, monkeypatch) -> None:
    """A bus pinned to a node that left cannot be scheduled again: Ray answers a poll with ``ActorUnschedulableError``
    (no ``RayActorError``), which the subscription let through raw, while every other call of the handle says which
    actor, which node and what to do."""
    import dataclasses

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from veloz_actors import EngineUnavailable
    from veloz_actors.actors.bus import BUS_CONCURRENCY_GROUPS, EventBusActor

    gone = "ab" * 28  # a node id no node has
    pinned = NodeAffinitySchedulingStrategy(gone, soft=False)
    bus_class = ray.remote(concurrency_groups=BUS_CONCURRENCY_GROUPS)(EventBusActor)  # type: ignore[call-overload]
    bus = bus_class.options(num_cpus=0, scheduling_strategy=pinned).remote(10)
    subscription = engine.subscribe(kinds=["OrderAccepted"])
    try:
        monkeypatch.setattr(engine, "_bus", bus)
        monkeypatch.setattr(engine, "spec", dataclasses.replace(engine.spec, nodes={"bus": gone}))
        with pytest.raises(EngineUnavailable) as lost:
            subscription.poll()
        assert "'bus'" in str(lost.value) and gone in str(lost.value)
    finally:
        monkeypatch.undo()
        subscription.close()
        ray.kill(bus)
