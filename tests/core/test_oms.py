"""The OMS: the transition table, per-order history, queries and export."""

from __future__ import annotations

import itertools

import pytest

from veloz_actors import IllegalTransition
from veloz_actors.core.oms import OMS, OPEN, TERMINAL, TRANSITIONS, Order
from veloz_actors.messages import OrderStatus
from veloz_actors.testing import place

S = OrderStatus


def _order(status_path: tuple[OrderStatus, ...] = ()) -> Order:
    order = Order(place("c1", "BUY", "0.01", "60000", ts=1), order_id=1)
    for i, status in enumerate(status_path, start=2):
        order.transition(status, i)
    return order


LEGAL_PATHS = {
    S.NEW: (),
    S.SUBMITTED: (S.SUBMITTED,),
    S.ACCEPTED: (S.SUBMITTED, S.ACCEPTED),
    S.PARTIALLY_FILLED: (S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED),
    S.FILLED: (S.SUBMITTED, S.ACCEPTED, S.FILLED),
    S.CANCELLED: (S.SUBMITTED, S.ACCEPTED, S.CANCELLED),
    S.REJECTED: (S.REJECTED,),
    S.EXPIRED: (S.SUBMITTED, S.ACCEPTED, S.EXPIRED),
    S.PENDING_CANCEL: (S.SUBMITTED, S.ACCEPTED, S.PENDING_CANCEL),
    S.UNKNOWN: (S.SUBMITTED, S.UNKNOWN),
}


def test_transition_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(OrderStatus)


def test_terminal_states_have_no_way_out() -> None:
    for status in OrderStatus:
        assert (TRANSITIONS[status] == frozenset()) == status.is_terminal


def test_open_and_terminal_sets_are_the_status_properties() -> None:
    # the kernel reads these sets instead of the enum's properties on its hot paths: they must say the same
    for status in OrderStatus:
        assert (status in OPEN) is status.is_open
        assert (status in TERMINAL) is status.is_terminal


@pytest.mark.parametrize(("start", "to"), list(itertools.product(OrderStatus, OrderStatus)))
def test_transition_follows_the_table(start: OrderStatus, to: OrderStatus) -> None:
    order = _order(LEGAL_PATHS[start])
    if to in TRANSITIONS[start]:
        order.transition(to, 99)
        assert order.status is to
    else:
        with pytest.raises(IllegalTransition):
            order.transition(to, 99)
        assert order.status is start


def test_illegal_transition_leaves_history_untouched() -> None:
    order = _order((S.SUBMITTED, S.ACCEPTED, S.FILLED))
    with pytest.raises(IllegalTransition):
        order.transition(S.CANCELLED, 10)
    assert order.history == [(S.NEW, 1), (S.SUBMITTED, 2), (S.ACCEPTED, 3), (S.FILLED, 4)]


def test_history_records_every_status_with_its_time() -> None:
    order = _order((S.SUBMITTED, S.ACCEPTED, S.PARTIALLY_FILLED, S.PARTIALLY_FILLED, S.FILLED))
    assert order.history == [
        (S.NEW, 1),
        (S.SUBMITTED, 2),
        (S.ACCEPTED, 3),
        (S.PARTIALLY_FILLED, 4),
        (S.PARTIALLY_FILLED, 5),
        (S.FILLED, 6),
    ]


def test_a_cancel_in_flight_still_takes_fills_and_a_rejected_cancel_restores_the_state() -> None:
    order = _order((S.SUBMITTED, S.ACCEPTED, S.PENDING_CANCEL, S.PENDING_CANCEL, S.PARTIALLY_FILLED))
    assert order.is_open
    order.transition(S.PENDING_CANCEL, 10)
    order.transition(S.CANCELLED, 11)
    assert not order.is_open


def test_an_unknown_outcome_keeps_the_order_open_until_a_report_settles_it() -> None:
    for outcome in (S.REJECTED, S.FILLED, S.CANCELLED, S.ACCEPTED):
        order = _order((S.SUBMITTED, S.UNKNOWN))
        assert order.is_open
        order.transition(outcome, 9)
        assert order.status is outcome


def _oms() -> OMS:
    oms = OMS()
    for cid, account, symbol in [("a", "main", "BTCUSDT"), ("b", "main", "ETHUSDT"), ("a", "other", "BTCUSDT")]:
        order = oms.create(place(cid, "BUY", "0.01", "100", symbol=symbol, account=account, ts=1))
        order.transition(S.SUBMITTED, 1)
        order.transition(S.ACCEPTED, 1)
        oms.mark_open(order)
    return oms


def test_get_finds_by_account_and_client_order_id() -> None:
    oms = _oms()
    assert oms.get("other", "a").account_id == "other"
    assert oms.get("main", "zzz") is None


def test_order_ids_are_sequential_and_indexed() -> None:
    oms = _oms()
    assert [o.order_id for o in oms.orders()] == [1, 2, 3]
    assert oms.by_order_id(2).client_order_id == "b"


def test_queries_by_status_and_symbol() -> None:
    oms = _oms()
    order = oms.get("main", "a")
    order.transition(S.CANCELLED, 2)
    oms.mark_closed(order)
    assert [o.client_order_id for o in oms.orders(status=S.CANCELLED)] == ["a"]
    assert [o.account_id for o in oms.orders(symbol="BTCUSDT")] == ["main", "other"]
    assert [o.client_order_id for o in oms.open_orders("main")] == ["b"]
    assert len(oms.open_orders(symbol="BTCUSDT")) == 1


def test_export_lists_every_order_oldest_first_as_plain_data() -> None:
    exported = _oms().export()
    assert [(o["client_order_id"], o["account_id"]) for o in exported] == [("a", "main"), ("b", "main"), ("a", "other")]
    assert exported[0]["status"] == "ACCEPTED"
    assert exported[0]["history"] == [("NEW", 1), ("SUBMITTED", 1), ("ACCEPTED", 1)]


def test_export_can_be_limited_to_one_account() -> None:
    assert [o["account_id"] for o in _oms().export("other")] == ["other"]
