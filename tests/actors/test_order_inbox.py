"""``actors.order_inbox`` bounds a client's orders in flight, and only those: the engine's own actors and a client's
queries are never refused by it (Ray's ``max_pending_calls`` would apply it to every copy of the OMS handle)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import ray

from veloz_actors import InvalidInput
from veloz_actors.actors import api
from veloz_actors.actors.api import start_local
from veloz_actors.messages import OrderAccepted, OrderRejected, RejectReason

from .helpers import file_config

pytestmark = pytest.mark.usefixtures("ray_runtime")

INBOX = 2
CALLS = 10 * INBOX


@pytest.fixture(scope="module")
def engine(ray_runtime):
    handle = start_local(file_config(order_inbox=INBOX), name="test-order-inbox")
    handle.tick()
    yield handle
    handle.shutdown()


@ray.remote(num_cpus=0)
class _Peer:
    """Stands for an engine actor (a venue, the risk actor) holding its copy of the OMS handle."""

    def burst(self, oms, calls: int) -> int:
        refs = [oms.applied_batches.remote() for _ in range(calls)]  # one-way, none waited for before the next
        return len(ray.get(refs, timeout=60))


def test_an_actor_holding_the_oms_handle_is_not_refused_by_the_client_order_limit(engine):
    peer = _Peer.remote()
    assert ray.get(peer.burst.remote(engine.actor("oms"), CALLS), timeout=120) == CALLS


def test_a_burst_of_queries_from_the_driver_is_not_refused_by_the_order_limit(engine):
    oms = engine.actor("oms")
    refs = [oms.applied_batches.remote() for _ in range(CALLS)]
    assert len(ray.get(refs, timeout=60)) == CALLS


def test_orders_beyond_the_window_are_rejected_overloaded_and_queries_still_answer(engine):
    commands = [engine.order_command("BTCUSDT", "BUY", "0.001", "1000", client_order_id=f"inbox-{i}") for i in range(3)]
    in_flight = [engine.submit_async(c) for c in commands[:INBOX]]
    refused = engine.submit_async(commands[INBOX])
    assert isinstance(refused, OrderRejected) and refused.reason is RejectReason.OVERLOADED
    assert f"depth {INBOX} at limit {INBOX}" in refused.detail
    assert engine.balances()  # a query beside the full window is answered
    engine.complete(in_flight)
    assert engine.window.depth == 0
    assert [len(engine.query(c.client_order_id)) for c in commands] == [1, 1, 0]  # the refused one never reached it


def test_complete_takes_what_submit_async_returned_and_gives_each_slot_back_once(engine):
    """Before: the ``OrderRejected`` that ``submit_async`` returns at once made ``complete`` fail with Ray's
    ``TypeError``, and every item handed to ``complete`` (also one completed before) gave a slot back, freeing the
    slots of orders still in flight: the window then admitted more than its limit."""
    price = (Decimal(engine.status()["reference_prices"]["BTCUSDT"]) * Decimal("0.97")).quantize(Decimal(1))
    commands = [engine.order_command("BTCUSDT", "BUY", "0.001", price, client_order_id=f"done-{i}") for i in range(4)]
    first, second = engine.submit_async(commands[0]), engine.submit_async(commands[1])
    refused = engine.submit_async(commands[2])
    assert isinstance(refused, OrderRejected)
    answers = engine.complete([first, refused])
    assert [type(a[0]) for a in answers] == [OrderAccepted, OrderRejected] and answers[1] == [refused]
    assert engine.window.depth == 1  # the second order is still in flight: its slot is not given back
    engine.complete([first])  # collected twice: frees nothing
    assert engine.window.depth == 1
    third = engine.submit_async(commands[3])
    assert not isinstance(third, OrderRejected)
    assert isinstance(engine.submit_async(commands[3]), OrderRejected)  # two in flight: the window is full
    for bad, named in ((5, "refs must be"), ([second, "ref"], r"refs\[1\] must be")):
        with pytest.raises(InvalidInput, match=named):
            engine.complete(bad)
    with pytest.raises(InvalidInput, match="timeout must be"):
        engine.complete([second], timeout="5")
    assert engine.window.depth == 2  # bad input changed nothing
    assert [type(a[0]) for a in engine.complete([second, third], timeout=None)] == [OrderAccepted, OrderAccepted]
    assert engine.window.depth == 0


class _CallSizes:
    """The OMS handle as the client holds it, recording how many commands each ``submit_many`` call carries."""

    def __init__(self, oms) -> None:
        self.oms = oms
        self.sizes: list[int] = []
        self.submit_many = self  # ``handle.submit_many.remote(chunk)`` lands in :meth:`remote`

    def remote(self, commands):
        self.sizes.append(len(commands))
        return self.oms.submit_many.remote(commands)

    def __getattr__(self, name):  # every other method: the OMS's own
        return getattr(self.oms, name)


def test_a_batch_goes_in_calls_of_bounded_size_in_order_and_a_full_window_sends_none(engine, monkeypatch):
    """Before: one call of any size; 250,000 commands outlived the handle's 30 s call timeout (EngineUnavailable)
    while the OMS went on applying them, and held the venues' reports and the risk actor's halts meanwhile."""
    monkeypatch.setattr(api, "SUBMIT_CALL_SIZE", 2)
    calls = _CallSizes(engine.actor("oms"))
    monkeypatch.setattr(engine, "_oms", calls)
    price = (Decimal(engine.status()["reference_prices"]["BTCUSDT"]) * Decimal("0.97")).quantize(Decimal(1))
    commands = [engine.order_command("BTCUSDT", "BUY", "0.001", price, client_order_id=f"many-{i}") for i in range(5)]
    answers = engine.submit_many(commands)
    assert calls.sizes == [2, 2, 1]
    assert [a[0].client_order_id for a in answers] == [c.client_order_id for c in commands]
    assert all(isinstance(a[0], OrderAccepted) for a in answers), answers
    assert engine.window.depth == 0

    more = [engine.order_command("BTCUSDT", "BUY", "0.001", "1000", client_order_id=f"full-{i}") for i in range(3)]
    in_flight = [engine.submit_async(c) for c in more[:INBOX]]  # the window is full
    refused = engine.submit_many(more[INBOX:] + commands)
    assert [a[0].reason for a in refused] == [RejectReason.OVERLOADED] * (1 + len(commands))
    assert calls.sizes == [2, 2, 1]  # nothing sent
    engine.complete(in_flight)
    assert engine.query("full-2") == []
