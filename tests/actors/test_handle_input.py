"""Bad arguments to a running engine's handle: :class:`InvalidInput` naming the argument, raised before any call to
an actor, and the engine goes on (its orders and balances unchanged)."""

from __future__ import annotations

import math
import re
import socket
import time

import pytest
import ray

from veloz_actors import ConfigError, EngineUnavailable, InvalidInput
from veloz_actors.actors.api import connect, start_local
from veloz_actors.actors.supervisor import supervisor_name
from veloz_actors.messages import BookTop, CancelOrder, OrderFilled, OrderType, PlaceOrder, Side
from veloz_actors.search.runtime import check_joined

from .helpers import file_config, wait_for

pytestmark = pytest.mark.usefixtures("ray_runtime")


@pytest.fixture(scope="module")
def engine(ray_runtime):
    handle = start_local(file_config(subscriber_queue=100_000), name="test-handle-input")
    handle.tick()  # the simulated market maker quotes: liquidity and reference prices
    yield handle
    handle.shutdown()


def _state(engine) -> tuple:
    return engine.balances(), sorted((o["client_order_id"], o["status"]) for o in engine.orders())


def test_a_float_quantity_written_with_an_exponent_is_its_exact_decimal(engine):
    order = engine.order_command("BTCUSDT", "BUY", 0.00001, 50000.0, client_order_id="float-1")
    assert (order.qty, order.price) == (1_000, 5_000_000_000_000)
    with pytest.raises(InvalidInput, match=r"^quantity: '0\.000000001' has more than 8 decimal places"):
        engine.place_order("BTCUSDT", "BUY", 1e-09, "50000")


@pytest.mark.parametrize("client_order_id", [["x"], 123, "bad id!", "a" * 37, ""])
def test_query_refuses_a_malformed_client_order_id(engine, client_order_id):
    before = _state(engine)
    with pytest.raises(InvalidInput, match=r"^client order id .* must be 1-36 characters of letters, digits"):
        engine.query(client_order_id)
    assert _state(engine) == before


def test_query_still_answers_a_valid_id_and_none(engine):
    assert engine.query("no-such-order") == []
    assert isinstance(engine.query(None), list)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_queue": -1}, "max_queue must be a positive int or None, got int -1"),
        ({"max_queue": "x"}, "max_queue must be a positive int or None, got str 'x'"),
        ({"max_queue": 0}, "max_queue must be a positive int or None, got int 0"),
        ({"max_queue": True}, "max_queue must be a positive int or None, got bool True"),
        ({"kinds": "OrderFilled"}, "kinds must be a non-empty list of event type names or None (every kind), got str"),
        ({"kinds": ["OrderFiled"]}, "kinds: unknown event type 'OrderFiled'; known: AccountUpdated, "),
        ({"max_events": -1}, "max_events must be an int >= 0 or None, got int -1"),
        ({"timeout": "x"}, "timeout must be a number of seconds >= 0 or None, got str 'x'"),
        ({"timeout": -1.0}, "timeout must be a number of seconds >= 0 or None, got float -1.0"),
        ({"timeout": math.nan}, "timeout must be a number of seconds >= 0 or None, got float nan"),
    ],
)
def test_subscribe_refuses_a_bad_argument_before_asking_the_bus(engine, arguments, message):
    bus = engine.actor("bus")
    subscribers = ray.get(bus.status.remote(), timeout=30)["subscribers"]
    with pytest.raises(InvalidInput) as caught:
        engine.subscribe(**arguments)
    assert str(caught.value).startswith(message)
    assert ray.get(bus.status.remote(), timeout=30)["subscribers"].keys() == subscribers.keys()  # no queue made


@pytest.mark.parametrize(
    ("max_queue", "kinds", "message"),
    [
        (-1, None, "max_queue must be a positive int or None, got int -1"),
        (None, ["OrderFiled"], "kinds: unknown event type 'OrderFiled'"),
    ],
)
def test_the_bus_itself_refuses_a_bad_subscription_and_goes_on(engine, max_queue, kinds, message):
    bus = engine.actor("bus")
    with pytest.raises(InvalidInput) as caught:  # Ray's task error is also an instance of the actor's exception
        ray.get(bus.subscribe.remote(max_queue, kinds), timeout=30)
    assert message in str(caught.value)
    pid, _ = ray.get(bus.ping.remote(), timeout=30)
    subscription = engine.subscribe(kinds=["OrderFilled"], timeout=60.0, max_events=1)
    engine.place_order("BTCUSDT", "BUY", "0.001")  # a market order: it fills
    assert [type(e) for e in subscription] == [OrderFilled]
    assert ray.get(bus.ping.remote(), timeout=30)[0] == pid  # the same bus process: it never died
    assert engine.status()["actors"]["bus"]["restarts"] == 0


@pytest.mark.parametrize("command", ["junk", None, {"type": "PlaceOrder"}, OrderFilled])
def test_submit_refuses_what_is_not_a_command_before_it_reaches_the_oms(engine, command):
    """Before: a raw RayTaskError(AttributeError) from inside the OMS actor."""
    before = _state(engine)
    for send in (engine.submit, engine.submit_async, lambda c: engine.submit_many([c])):
        with pytest.raises(InvalidInput, match=r"^command must be one of PlaceOrder, CancelOrder, .*; got "):
            send(command)
    with pytest.raises(InvalidInput, match="commands must be a list of command messages, got str"):
        engine.submit_many("ORDER BUY")
    assert _state(engine) == before


def _order(**fields) -> PlaceOrder:
    base = {"client_order_id": "typed-1", "symbol": "BTCUSDT", "side": Side.BUY, "order_type": OrderType.LIMIT,
            "qty": 1_000, "price": 5_000_000_000_000, "ts": time.time_ns()}  # fmt: skip
    return PlaceOrder(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ts": None}, "PlaceOrder: ts must be int, got NoneType None"),
        ({"qty": "1"}, "PlaceOrder: qty must be int, got str '1'"),
        ({"qty": 0.01}, "PlaceOrder: qty must be int, got float 0.01"),
        ({"price": "60000"}, "PlaceOrder: price must be int or None, got str '60000'"),
        ({"qty": 2**70}, "PlaceOrder: Integer exceeds 64-bit range"),
        ({"side": "SIDEWAYS"}, "PlaceOrder: 'SIDEWAYS' is not a valid Side"),
        ({"ts": 0}, "PlaceOrder: ts must be nanoseconds since the epoch, at most a day ahead of the clock; got 0"),
        ({"ts": 10**19}, "PlaceOrder: ts must be nanoseconds since the epoch, at most a day ahead"),
    ],
)
def test_a_command_with_a_field_of_the_wrong_type_or_a_far_ts_is_refused_before_the_oms_journals_it(
    engine, fields, message
):
    """Before: the OMS journaled it first, then raised a raw TypeError (or accepted it: ``ts=None``); the journal
    could never be read back, and a ``ts=None`` or a far-future one broke the account's rate limit."""
    before = _state(engine)
    command = _order(**fields)
    for send in (engine.submit, engine.submit_async, lambda c: engine.submit_many([c])):
        with pytest.raises(InvalidInput, match=f"^{re.escape(message)}"):
            send(command)
    assert _state(engine) == before


def test_a_side_given_as_its_text_is_the_side_and_not_a_sell(engine):
    """``Side`` is a str enum: ``"BUY" == Side.BUY``, but the kernel compares sides by identity, so the text alone
    was taken for a SELL."""
    (accepted, *_) = engine.submit(
        _order(client_order_id="text-side", side="BUY", order_type="LIMIT", qty=100_000, price=5_900_000_000_000)
    )
    assert (type(accepted).__name__, accepted.side) == ("OrderAccepted", Side.BUY), accepted
    assert accepted.side is Side.BUY
    engine.submit(CancelOrder(client_order_id="text-side", ts=time.time_ns()))
    assert engine.settle()  # the cancel is answered: the next test starts from settled balances


@pytest.mark.parametrize("ts", ["now", 1.5, True, -1, "far"])
def test_a_market_step_far_ahead_of_the_clock_or_not_an_int_is_refused(engine, ts):
    """A step is ignored when an earlier one was later: a ts years ahead would have stopped the market for good."""
    if ts == "far":
        ts = time.time_ns() + 2 * 86_400 * 1_000_000_000
    before = _state(engine)
    with pytest.raises(InvalidInput, match=r"^ts must be None \(now\) or an int of nanoseconds"):
        engine.tick(ts)
    assert _state(engine) == before
    assert engine.tick() == []  # the market still steps


def test_an_address_of_another_cluster_is_refused_while_ray_is_joined(engine, ray_runtime):
    """Ray joins one cluster per process: an ``address=`` naming another was silently ignored (the engine started on
    the joined one); the joined cluster's own address, spelt any way, and auto / local / None still mean it."""
    joined = ray_runtime.gcs_address
    port = joined.rpartition(":")[2]
    for same in (None, "auto", "local", joined, f"localhost:{port}", f"127.0.0.1:{port}"):
        check_joined(same)
    with socket.socket() as listener:  # another cluster's address: something listens there
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        other = f"127.0.0.1:{listener.getsockname()[1]}"
        _refused_while_joined(other, joined)
    with pytest.raises(EngineUnavailable, match=rf"^cannot reach a Ray cluster at {other}"):
        start_local(file_config(), name="test-other-cluster", address=other)  # nothing listens there now
    with pytest.raises(ConfigError, match=r"expected auto, HOST:PORT or ray://HOST:PORT"):
        check_joined("nowhere")
    here = ray.get_runtime_context().namespace  # the engine of this module started in the tests' namespace
    assert connect(joined, name="test-handle-input", namespace=here).status()["actors"]["oms"]["alive"]
    with pytest.raises(ValueError):
        ray.get_actor(supervisor_name("test-other-cluster"), namespace=here)  # nothing was started


def _refused_while_joined(other: str, joined: str) -> None:
    message = rf"^address '{other}': this process has already joined the Ray cluster at {joined}; call ray\.shutdown"
    with pytest.raises(ConfigError, match=message):
        start_local(file_config(), name="test-other-cluster", address=other)
    with pytest.raises(ConfigError, match=message):
        connect(other, name="test-handle-input")


@pytest.mark.parametrize("detached", [False, True], ids=["owned", "detached"])
def test_a_start_interrupted_while_its_actors_come_up_leaves_no_engine_behind(ray_runtime, monkeypatch, detached):
    """A Ctrl-C while ``start_local`` waits for the engine's actors (injected as the KeyboardInterrupt the wait would
    raise) kills the supervisor it created, and with it its actors: a detached engine would otherwise outlive the
    driver, half started, under its name, and a new start with that name would be refused."""
    import veloz_actors.actors.api as api

    name = f"test-interrupted-start-{'detached' if detached else 'owned'}"

    def interrupted(self, supervisor, **kwargs):
        ray.get(supervisor.handles.remote(), timeout=120)  # the actors are up: there is something to tear down
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(api.EngineHandle, "__init__", interrupted)
        with pytest.raises(KeyboardInterrupt):
            start_local(file_config(), name=name, detached=detached)

    def gone() -> bool:
        try:
            ray.get_actor(supervisor_name(name))
        except ValueError:
            return True
        return False

    wait_for(gone, timeout=60, what=f"the supervisor of the interrupted engine {name!r} to be gone")
    handle = start_local(file_config(), name=name, detached=detached)  # the name is free again
    handle.shutdown()


def test_a_handle_used_after_its_shutdown_says_so_at_once_and_sends_nothing(ray_runtime):
    """Before: every call retried for a minute against the dead actors, then raised "did not come back", as if the
    engine had crashed."""
    handle = start_local(file_config(), name="test-handle-after-shutdown")
    handle.shutdown()
    calls = (
        lambda: handle.place_order("BTCUSDT", "BUY", "0.01", "59000"),
        lambda: handle.cancel_order("a1"),
        lambda: handle.query(None),
        lambda: handle.balances(),
        lambda: handle.status(),
        lambda: handle.kill_switch(),
        lambda: handle.submit_async(handle.order_command("BTCUSDT", "BUY", "0.01", "59000")),
    )
    for call in calls:
        with pytest.raises(
            EngineUnavailable, match=r"^engine 'test-handle-after-shutdown' was shut down by this handle"
        ):
            call()
    handle.shutdown()  # still idempotent


def _top(symbol: str) -> BookTop:
    return BookTop(
        symbol=symbol, bid_price=5_999_900_000_000, bid_qty=100_000_000, ask_price=6_000_100_000_000,
        ask_qty=100_000_000, update_id=1, ts_event=1, ts_recv=1,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("call", "message"),
    [
        # before: a bare TypeError from the deadline's arithmetic
        (lambda engine: engine.tick(timeout="5"), "timeout must be a number of seconds >= 0, got str '5'"),
        (lambda engine: engine.settle(timeout="5"), "timeout must be a number of seconds >= 0, got str '5'"),
        # before: a TypeError, a ValueError inside the feed actor, and text the feed left out while counting it sent
        (lambda engine: engine.replay_market(5), "events must be a list of market events, got int 5"),
        (lambda engine: engine.replay_market([], batch_size=0), "batch_size must be an int >= 1, got int 0"),
        (lambda engine: engine.replay_market(["a"]), "events[0] must be one of Trade, BookTop, BookDelta, "),
        (
            lambda engine: engine.replay_market([_top("BTCUSDT"), _top("DOGEUSDT")]),
            "events[1] is for 'DOGEUSDT', which this engine does not trade (configured: BTCUSDT, ETHUSDT): leave",
        ),
        (
            lambda engine: engine.replay_market([], reference_prices="yes"),
            "reference_prices must be True or False, got str 'yes'",
        ),
    ],
)
def test_a_bad_timeout_or_replay_argument_is_named_before_any_call(engine, call, message):
    before = _state(engine)
    sent = engine.actor("feed").status.remote()
    with pytest.raises(InvalidInput) as caught:
        call(engine)
    assert str(caught.value).startswith(message)
    assert _state(engine) == before
    assert ray.get(engine.actor("feed").status.remote(), timeout=30)["sent"] == ray.get(sent, timeout=30)["sent"]
