"""The stdio session's backend over the actor engine (``ActorBackend``): a command's answer is read from the bus up to
the OMS's ``Settled`` marker, and whatever came after the marker in the same read is kept for the next one, never
dropped (a live venue's fill arrives after the marker: the venue answers a request before the exchange fills it)."""

from __future__ import annotations

import threading
from collections import deque
from types import SimpleNamespace
from typing import Any

import ray

from veloz_actors.actors.bus import Settled
from veloz_actors.interfaces.engine_cli import ActorBackend, _wait_reconciled
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


class _ReadyVenue:
    def ready(self) -> bool:
        return True

    def hang(self) -> None:
        threading.Event().wait(60.0)


class _VenueRestartingOnce:
    """A live venue actor whose first ``ready`` call is in flight when its process dies (Ray restarts it): the
    call's ``ActorDiedError``; the calls after it reach the restarted venue."""

    def __init__(self) -> None:
        self.venue = ray.remote(num_cpus=0)(_ReadyVenue).remote()
        self.calls = 0

    @property
    def ready(self) -> Any:
        outer = self

        class _Method:
            @staticmethod
            def remote() -> Any:
                outer.calls += 1
                if outer.calls > 1:
                    return outer.venue.ready.remote()
                dying = ray.remote(num_cpus=0)(_ReadyVenue).remote()
                ref = dying.hang.remote()
                ray.kill(dying)
                return ref

        return _Method()


def test_a_live_venue_restarting_while_the_start_waits_for_its_reconciliation_is_waited_for(ray_runtime, capsys):
    """Before: ``veloz start`` ended with Ray's ``ActorDiedError`` raw when a live venue's process died while the start
    waited for its first reconciliation (Ray restarts it, and it reconciles again)."""
    venue = _VenueRestartingOnce()
    engine = SimpleNamespace(spec=SimpleNamespace(shards=("binance",)), actor=lambda name: venue)
    try:
        assert _wait_reconciled(engine, timeout=60.0) is True  # type: ignore[arg-type]
        assert venue.calls == 2
        assert "live: reconciled in " in capsys.readouterr().err
    finally:
        ray.kill(venue.venue)
