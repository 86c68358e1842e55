"""The bus's subscriber ids and their lifetime, on the plain class (no Ray): an id is never handed out twice, not even
by a restarted bus, a subscription nobody polls is dropped after the configured time, and a queue has a size limit."""

from __future__ import annotations

import pytest

from veloz_actors import InvalidInput
from veloz_actors.actors.bus import EventBusActor, Settled, check_subscription
from veloz_actors.config import MAX_SUBSCRIBER_QUEUE, parse_actors
from veloz_actors.testing import book_top

IDLE = 5.0


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_restarted_bus_answers_an_id_of_its_earlier_incarnation_as_unknown():
    before = EventBusActor(10)
    stale = [before.subscribe(), before.subscribe()]
    after = EventBusActor(10)  # what Ray restarts: a new process, empty
    fresh = after.subscribe()
    assert fresh not in stale
    after.publish([book_top("60000", "60001")])
    assert [after.poll(sid) for sid in stale] == [([], -1), ([], -1)]  # each client subscribes again, counts a gap
    assert len(after.poll(fresh)[0]) == 1  # the new client's event was not taken by a stale one


def test_a_settled_marker_for_an_id_of_an_earlier_incarnation_reaches_nobody():
    stale = EventBusActor(10).subscribe()
    after = EventBusActor(10)
    fresh = after.subscribe()
    after.publish([Settled(subscriber=stale, token=1)])
    assert after.poll(fresh) == ([], 0)


def test_a_subscription_not_polled_for_the_idle_time_is_dropped_and_answered_unknown():
    clock = _Clock()
    bus = EventBusActor(10, idle_seconds=IDLE, clock=clock)
    forgotten, polled = bus.subscribe(), bus.subscribe()
    clock.now += IDLE * 0.6
    assert bus.poll(polled) == ([], 0)
    clock.now += IDLE * 0.6  # forgotten: idle 1.2 x IDLE; polled: 0.6 x IDLE
    bus.publish([book_top("60000", "60001")])
    assert set(bus.status()["subscribers"]) == {str(polled)}
    assert bus.status()["expired"] == 1
    assert bus.poll(forgotten) == ([], -1)
    assert len(bus.poll(polled)[0]) == 1


def test_the_drops_of_closed_and_expired_subscriptions_stay_in_the_dropped_total():
    """``status()["dropped"]`` (``veloz_subscriber_dropped_total``) is a counter: it never goes back when a
    subscription that dropped events closes or expires."""
    clock = _Clock()
    bus = EventBusActor(10, idle_seconds=IDLE, clock=clock)
    closed, forgotten, open_ = (bus.subscribe(2) for _ in range(3))
    bus.publish([book_top("60000", f"{60001 + i}") for i in range(5)])  # 3 dropped by each queue of 2
    assert bus.status()["dropped"] == 9
    bus.unsubscribe(closed)
    clock.now += IDLE * 0.6
    bus.poll(open_)
    clock.now += IDLE * 0.6  # forgotten: idle 1.2 x IDLE
    bus.publish([book_top("60000", "60001")])
    status = bus.status()
    assert set(status["subscribers"]) == {str(open_)} and status["expired"] == 1
    assert status["dropped"] == 9


def test_a_waiting_poll_keeps_a_subscription_alive():
    clock = _Clock()
    bus = EventBusActor(10, idle_seconds=IDLE, clock=clock)
    sid = bus.subscribe()
    for _ in range(3):
        clock.now += IDLE * 0.6
        assert bus.poll_wait(sid, wait=0.0) == ([], 0)
    assert bus.status()["expired"] == 0


def test_a_queue_beyond_the_limit_is_refused_naming_it():
    assert check_subscription(MAX_SUBSCRIBER_QUEUE, None) is None
    with pytest.raises(InvalidInput, match=f"max_queue must be at most {MAX_SUBSCRIBER_QUEUE:,} events, got 10"):
        check_subscription(10**12, None)
    with pytest.raises(InvalidInput, match="at most"):
        EventBusActor(10).subscribe(MAX_SUBSCRIBER_QUEUE + 1)


@pytest.mark.parametrize(
    ("actors", "message"),
    [
        ({"subscriber_queue": MAX_SUBSCRIBER_QUEUE + 1}, "actors.subscriber_queue: Input should be less than or equal"),
        (
            {"subscriber_idle_seconds": 0.5},
            "actors.subscriber_idle_seconds: Input should be greater than or equal to 1",
        ),
    ],
)
def test_the_subscriber_limits_of_the_config_are_bounded(actors, message):
    with pytest.raises(InvalidInput, match=message):
        parse_actors(actors)
