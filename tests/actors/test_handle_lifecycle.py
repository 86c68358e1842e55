"""An engine handle and its subscriptions once the engine has stopped, as a notebook meets them: a subscription
without a timeout ends or raises, never polls a dead bus for ever, and a handle whose engine another handle stopped
says so at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from veloz_actors import EngineUnavailable
from veloz_actors.actors.api import connect, start_local

from .helpers import file_config

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
    handle.shutdown()
    assert _outcome(lambda: list(subscription)) == []
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
    assert isinstance(error, EngineUnavailable), error
    assert error.__cause__ is not None
    with pytest.raises(EngineUnavailable, match=stopped):
        raise error
    with pytest.raises(EngineUnavailable, match=stopped):
        other.balances()
    with pytest.raises(EngineUnavailable, match=stopped):
        other.place_order("BTCUSDT", "BUY", "0.01", "59000")
