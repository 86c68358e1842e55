"""``actors.order_inbox`` bounds a client's orders in flight, and only those: the engine's own actors and a client's
queries are never refused by it (Ray's ``max_pending_calls`` would apply it to every copy of the OMS handle)."""

from __future__ import annotations

import pytest
import ray

from veloz_actors.actors.api import start_local
from veloz_actors.messages import OrderRejected, RejectReason

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
