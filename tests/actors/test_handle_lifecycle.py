"""An engine handle and its subscriptions once the engine has stopped, as a notebook meets them: a subscription
without a timeout ends or raises, never polls a dead bus for ever, and a handle whose engine another handle stopped
says so at once (:class:`~veloz_actors.EngineStopped`, an ``EngineUnavailable`` no wait cures)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import ray

from veloz_actors import EngineStopped, EngineUnavailable
from veloz_actors.actors.api import connect, start_local
from veloz_actors.actors.supervisor import actor_state

from .helpers import file_config, wait_for

pytestmark = pytest.mark.usefixtures("ray_runtime")

_BOUND_SECONDS = 120.0  # a hang's bound, not a timing: the old code never returned


def _outcome(call: Callable[[], Any]) -> Any:
    """``call()``'s result or exception, from a thread joined within ``_BOUND_SECONDS`` (a hang fails the test)."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(_BOUND_SECONDS)
    assert box, "the call never returned"
    return box[0]


def test_a_subscription_without_a_timeout_ends_when_its_handle_shuts_down():
    """Before: the dead bus's errors were taken for a restart, and the iteration polled it for ever."""
    handle = start_local(file_config(), name="test-lifecycle-own")
    subscription = handle.subscribe()  # no timeout, no max_events: it ends with the engine
    assert repr(handle) == "EngineHandle(name='test-lifecycle-own', symbols=['BTCUSDT', 'ETHUSDT'], open)"
    handle.shutdown()
    assert repr(handle) == "EngineHandle(name='test-lifecycle-own', symbols=['BTCUSDT', 'ETHUSDT'], shut down)"
    assert _outcome(lambda: list(subscription)) == []
    assert repr(subscription) == (
        f"Subscription(id={subscription.id}, engine='test-lifecycle-own', dropped=0, gaps=0, closed)"
    )
    with pytest.raises(EngineUnavailable, match=r"^engine 'test-lifecycle-own' was shut down by this handle"):
        subscription.poll()


def test_a_handle_whose_engine_another_handle_stopped_says_so_at_once():
    """Before: a call retried for a minute, then said the engine "did not come back"; a subscription without a
    timeout polled the dead bus for ever."""
    owner = start_local(file_config(), name="test-lifecycle-other")
    other = connect(None, name="test-lifecycle-other", namespace="veloz-tests")
    subscription = other.subscribe()
    owner.shutdown()
    stopped = r"^engine 'test-lifecycle-other' has stopped \(shut down by another handle or `veloz stop`"
    error = _outcome(lambda: next(subscription))
    assert isinstance(error, EngineStopped), error
    assert error.__cause__ is not None
    with pytest.raises(EngineStopped, match=stopped):
        raise error
    with pytest.raises(EngineStopped, match=stopped):
        other.balances()
    with pytest.raises(EngineStopped, match=stopped):
        other.place_order("BTCUSDT", "BUY", "0.01", "59000")


class _BusStoppedBetweenPollAndSubscribe:
    """The engine's bus, except that its ``subscribe`` first lets ``stop()`` run: the interleaving CI met once, where
    a stopping engine's bus had closed every queue (a poll heard "unknown subscriber") and was killed before the
    subscription subscribed again."""

    def __init__(self, bus: Any, stop: Callable[[], None]) -> None:
        self._bus = bus
        self._stop = stop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    @property
    def subscribe(self) -> Any:
        bus, stop = self._bus, self._stop

        class _Method:
            @staticmethod
            def remote(*args: Any) -> Any:
                stop()
                return bus.subscribe.remote(*args)

        return _Method()


def test_a_subscription_whose_engine_stops_between_its_poll_and_its_resubscribe_says_the_engine_stopped():
    """Before: the resubscribe's ``ActorDiedError`` reached the caller raw (CI met it once)."""
    owner = start_local(file_config(), name="test-lifecycle-race")
    other = connect(None, name="test-lifecycle-race", namespace="veloz-tests")
    subscription = other.subscribe()
    bus = other._bus
    ray.get(bus.close.remote(), timeout=30)  # as a stopping engine's bus does first: the next poll hears -1
    other._bus = _BusStoppedBetweenPollAndSubscribe(bus, owner.shutdown)
    error = _outcome(lambda: next(subscription))
    assert isinstance(error, EngineStopped), repr(error)
    assert str(error).startswith("engine 'test-lifecycle-race' has stopped (shut down by another handle"), error
    assert isinstance(error.__cause__, ray.exceptions.RayActorError)


def test_ctrl_c_during_submit_many_says_which_commands_went_through_and_the_handle_goes_on(monkeypatch):
    """Before: a KeyboardInterrupt (not an Exception) went by without the note, so a notebook user could not tell
    which of the commands the engine had applied."""
    handle = start_local(file_config(), name="test-lifecycle-interrupt")
    try:
        commands = [
            handle.order_command("BTCUSDT", "BUY", "0.001", "50000", client_order_id=f"ci-{i}") for i in range(1_500)
        ]
        real_call = handle._call
        calls = 0

        def interrupted_second_call(make_ref, **kwargs):
            nonlocal calls
            calls += 1
            if calls == 2:  # the second chunk: Ctrl-C while its answer is awaited
                raise KeyboardInterrupt
            return real_call(make_ref, **kwargs)

        monkeypatch.setattr(handle, "_call", interrupted_second_call)
        with pytest.raises(KeyboardInterrupt) as caught:
            handle.submit_many(commands)
        assert caught.value.__notes__ == [
            "submit_many: the first 1000 of 1500 commands were applied and answered before this; the 500 after them "
            "were sent, their outcome unknown (query() tells an order's state); none after those was sent"
        ]
        monkeypatch.undo()
        assert handle.window.depth == 0  # the interrupted call's slot is given back
        assert handle.status()["orders"] >= 1_000  # the first chunk went through
        assert handle.place_order("BTCUSDT", "BUY", "0.001", "50000", client_order_id="after-ctrl-c")
    finally:
        handle.shutdown()
    with pytest.raises(EngineUnavailable, match="was shut down by this handle") as caught:
        handle.submit_many(commands)
    assert not hasattr(caught.value, "__notes__")  # nothing was sent: no note saying a chunk was


def test_connecting_to_an_engine_that_stops_after_it_was_found_says_the_engine_stopped(monkeypatch):
    """Two ``veloz stop`` (or a ``veloz status`` and a stop) at once: the engine is found by name, then the other stops
    it before the first call. Before: the supervisor's ``ActorDiedError`` reached the caller raw from ``connect`` (the
    CLI only says an ``EngineUnavailable``, so it printed Ray's traceback)."""
    owner = start_local(file_config(), name="test-lifecycle-found")
    supervisor_id = owner._supervisor._actor_id.hex()
    real_get_actor = ray.get_actor

    def found_then_stopped(*args: Any, **kwargs: Any) -> Any:
        found = real_get_actor(*args, **kwargs)
        owner.shutdown()
        wait_for(lambda: actor_state(supervisor_id) == "DEAD", what="the stopped supervisor's end")
        return found

    monkeypatch.setattr(ray, "get_actor", found_then_stopped)
    error = _outcome(lambda: connect(None, name="test-lifecycle-found", namespace="veloz-tests"))
    assert isinstance(error, EngineStopped), repr(error)
    assert str(error).startswith("engine 'test-lifecycle-found' has stopped (shut down by another handle"), error
    assert isinstance(error.__cause__, ray.exceptions.RayActorError)


def test_a_handle_whose_engine_is_stopping_says_the_engine_stopped_from_every_call():
    """The window between the supervisor's ``shutdown`` and its ``ray.kill`` (which returns before the supervisor is
    gone; for ever when ``veloz stop`` is interrupted in between): the supervisor answers with the dead actors'
    handles. Before: ``complete`` and ``replay_market`` raised Ray's ``ActorDiedError`` raw, a call retried for a
    minute and said the engine "did not come back", a subscription without a timeout polled the dead bus for ever."""
    owner = start_local(file_config(), name="test-lifecycle-stopping")
    try:
        other = connect(None, name="test-lifecycle-stopping", namespace="veloz-tests")
        subscription = other.subscribe()
        actors = [other.actor(name)._actor_id.hex() for name in ("oms", "bus", "feed")]
        ray.get(owner._supervisor.shutdown.remote(), timeout=60)  # what shutdown() does before its ray.kill
        wait_for(lambda: all(actor_state(a) == "DEAD" for a in actors), what="the engine's actors ended")
        stopped = "engine 'test-lifecycle-stopping' has stopped (shut down by another handle or `veloz stop`"
        ref = other.submit_async(other.order_command("BTCUSDT", "BUY", "0.01", "59000"))
        for call in (
            lambda: next(subscription),
            lambda: other.complete([ref]),
            lambda: other.replay_market([]),
            other.balances,
        ):
            error = _outcome(call)
            assert isinstance(error, EngineStopped), repr(error)
            assert str(error).startswith(stopped), error
            assert isinstance(error.__cause__, ray.exceptions.RayActorError), repr(error.__cause__)
    finally:
        owner.shutdown()


@ray.remote(num_cpus=0)
class _Hung:
    def wait(self) -> None:
        threading.Event().wait(_BOUND_SECONDS)


class _DiesDuringTheCall:
    """An actor handle whose ``method`` answers as a call in flight when the actor died does (Ray restarting it): an
    ``ObjectRef`` that raises ``ActorDiedError``; every other method goes to the real actor."""

    def __init__(self, actor: Any, method: str) -> None:
        self._actor = actor
        self._method = method

    def __getattr__(self, name: str) -> Any:
        if name != self._method:
            return getattr(self._actor, name)

        class _Method:
            @staticmethod
            def remote(*args: Any, **kwargs: Any) -> Any:
                hung = _Hung.remote()  # type: ignore[attr-defined]
                ref = hung.wait.remote()
                ray.kill(hung)
                return ref

        return _Method()


def test_an_actor_dying_during_complete_or_replay_market_is_engine_unavailable_not_a_raw_ray_error(monkeypatch):
    """Neither call is retried (an order's or a replay's outcome is then unknown), and both let Ray's error through
    when the actor was not given up. Before: ``ActorDiedError`` raw from both."""
    handle = start_local(file_config(), name="test-lifecycle-mid-call")
    try:
        monkeypatch.setattr(handle, "_oms", _DiesDuringTheCall(handle._oms, "submit"))
        monkeypatch.setattr(handle, "_feed", _DiesDuringTheCall(handle._feed, "replay"))
        ref = handle.submit_async(handle.order_command("BTCUSDT", "BUY", "0.01", "59000", client_order_id="lost-1"))
        error = _outcome(lambda: handle.complete([ref]))
        assert isinstance(error, EngineUnavailable), repr(error)
        assert str(error).startswith("engine 'test-lifecycle-mid-call': the OMS ended during the call"), error
        assert "query() tells each order's state" in str(error)
        assert isinstance(error.__cause__, ray.exceptions.RayActorError)
        assert handle.window.depth == 0  # its slot is given back
        error = _outcome(lambda: handle.replay_market([]))
        assert isinstance(error, EngineUnavailable), repr(error)
        assert str(error).startswith("engine 'test-lifecycle-mid-call': the feed ended during the replay"), error
        assert isinstance(error.__cause__, ray.exceptions.RayActorError)
        monkeypatch.undo()
        assert handle.balances()  # the engine goes on
    finally:
        handle.shutdown()


def test_a_second_stop_of_an_engine_that_is_stopping_stops_it_cleanly():
    """Two ``veloz stop`` at once: the second connects while the first's supervisor has shut the engine down but is
    not killed yet. It gets a handle whose shutdown ends it (``veloz stop`` says ``stopped``, exit status 0); a
    supervisor that refused to give its stopped actors made ``veloz stop`` kill it and say it ended without a clean
    stop."""
    owner = start_local(file_config(), name="test-lifecycle-second-stop")
    try:
        ray.get(owner._supervisor.shutdown.remote(), timeout=60)  # the first stop, before its ray.kill
        second = connect(None, name="test-lifecycle-second-stop", namespace="veloz-tests", timeout=30)
        second.shutdown()
        wait_for(lambda: actor_state(owner._supervisor._actor_id.hex()) == "DEAD", what="the supervisor's end")
    finally:
        owner.shutdown()
