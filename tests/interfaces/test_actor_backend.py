"""The stdio session's backend over the actor engine (``ActorBackend``): a command's answer is read from the bus up to
the OMS's ``Settled`` marker, and whatever came after the marker in the same read is kept for the next one, never
dropped (a live venue's fill arrives after the marker: the venue answers a request before the exchange fills it)."""

from __future__ import annotations

from collections import deque
from typing import Any

from veloz_actors.actors.bus import Settled
from veloz_actors.interfaces.engine_cli import ActorBackend
from veloz_actors.messages import BookTop
from veloz_actors.testing import book_top, place


class _Subscription:
    """The bus as one subscriber sees it: each poll hands over what was queued."""

    id = 1

    def __init__(self) -> None:
        self.reads: deque[list[Any]] = deque()

    def poll(self) -> list[Any]:
        return self.reads.popleft() if self.reads else []

    def close(self) -> None:
        pass


class _Handle:
    """The few EngineHandle calls ActorBackend makes; the OMS's marker lands in the same read as a later event."""

    def __init__(self, later: Any) -> None:
        self.subscription = _Subscription()
        self.later = later

    def subscribe(self, **_: Any) -> _Subscription:
        return self.subscription

    def submit(self, command: Any) -> list[Any]:
        return []

    def barrier(self, subscriber: int, token: int) -> None:
        self.subscription.reads.append([Settled(subscriber=subscriber, token=token), self.later])


def test_an_event_after_the_settled_marker_is_kept_for_the_next_poll() -> None:
    later = book_top("60000", "60001")
    backend = ActorBackend(_Handle(later), owned=False, market=True)  # type: ignore[arg-type]
    assert backend.submit(place("a1", "BUY", "0.01")) == []
    assert backend.poll() == [later]
    assert backend.poll() == []
    assert type(later) is BookTop


class _Resubscribing(_Subscription):
    """A subscription whose bus restarted: its first poll subscribes again, under a new id."""

    def poll(self) -> list[Any]:
        if self.id == 1:
            self.id = 2
            return []
        return super().poll()


class _RestartedBusHandle(_Handle):
    """The restarted bus knows only the new id (2): a marker for the old one reaches nobody."""

    def __init__(self, later: Any) -> None:
        super().__init__(later)
        self.subscription = _Resubscribing()

    def barrier(self, subscriber: int, token: int) -> None:
        if subscriber == 2:
            super().barrier(subscriber, token)


def test_a_command_s_outcome_is_still_read_to_its_marker_after_the_subscription_was_renewed() -> None:
    later = book_top("60000", "60001")
    backend = ActorBackend(_RestartedBusHandle(later), owned=False, market=True)  # type: ignore[arg-type]
    assert backend.submit(place("a1", "BUY", "0.01")) == []
    assert backend.poll() == [later]  # read after the marker asked for again under the new id
