"""A supervisor that Ray restarts builds the actor graph again (its actors die with it): every actor recovers from its
journal, an engine handle and its subscriptions find the new actors, and STATUS says the supervisor restarted."""

from __future__ import annotations

import dataclasses
import os
import threading

import pytest
import ray

from veloz_actors._exceptions import EngineUnavailable
from veloz_actors.actors.account import AccountViewActor
from veloz_actors.actors.api import EngineHandle, build_spec, start_local
from veloz_actors.actors.spec import mark_journal_dir
from veloz_actors.actors.supervisor import (
    RESTART_LIMIT,
    START_CRASHES,
    START_SECONDS,
    DiedWhileStarting,
    wait_started,
)
from veloz_actors.core.journal import Journal

from .helpers import file_config, wait_for


def test_an_engine_handle_survives_a_supervisor_restart(ray_runtime, tmp_path):
    engine = start_local(file_config(), name="test-supervisor-restart", journal_dir=tmp_path / "journals")
    try:
        engine.tick()
        engine.place_order("BTCUSDT", "BUY", "0.001", "1000", client_order_id="before")
        before = engine.query("before")
        subscription = engine.subscribe(kinds=["OrderAccepted", "OrderRejected"])
        old_oms = engine.actor("oms")
        ray.kill(engine._supervisor, no_restart=False)  # its process dies (its actors with it); Ray restarts it

        status = wait_for(lambda: (s := engine.status())["supervisor_restarts"] == 1 and s, what="the restart")
        assert all(actor["alive"] for actor in status["actors"].values()), status["actors"]
        assert engine.query("before") == before != []  # the new OMS, recovered from the journal
        assert engine.actor("oms") != old_oms
        assert ray.get(engine.actor("oms").ping.remote(), timeout=30)[0] == status["actors"]["oms"]["pid"]

        wait_for(lambda: subscription.poll() == [] and subscription.gaps == 1, what="the subscription to renew")
        engine.place_order("BTCUSDT", "BUY", "0.001", "1000", client_order_id="after")
        events = wait_for(lambda: subscription.poll(), what="an event from the new bus")
        assert [e.client_order_id for e in events] == ["after"]
        subscription.close()
    finally:
        engine.shutdown()


def test_an_actor_rebuilt_by_a_restarted_supervisor_waits_for_the_journal_lock_its_predecessor_holds(tmp_path):
    spec = dataclasses.replace(build_spec(file_config(), journal_dir=tmp_path), rebuilt=True)
    mark_journal_dir(spec)
    old = Journal(spec.journal_path("account"), {"actor": "account"}, durability="none")  # the old process's
    threading.Timer(0.3, old.close).start()  # the old process exits
    view = AccountViewActor(spec)  # waits for the lock instead of failing at once
    assert view.restarted
    view.close()


def test_an_actor_that_keeps_crashing_is_left_dead_and_status_and_calls_to_it_say_so(ray_runtime, tmp_path):
    """Ray restarts a dead actor for ever (``max_restarts=-1``): one that crashed again and again (an input that kills
    it, the memory monitor killing it while it recovers) was restarted in a loop while STATUS said ``running``. Past
    ``RESTART_LIMIT`` crashes within ``RESTART_WINDOW_SECONDS`` the supervisor stops it for good and says why; a call
    to it through the handle says the same at once."""
    from ray._private.state import actors as actor_table

    engine = start_local(file_config(), name="test-crash-loop", journal_dir=tmp_path / "journals")
    try:

        def restarted(count: int) -> bool:
            feed = engine.status()["actors"]["feed"]
            return feed["alive"] and feed["restarts"] >= count

        for crash in range(1, RESTART_LIMIT + 1):
            ray.kill(engine.actor("feed"), no_restart=False)
            wait_for(lambda crash=crash: restarted(crash), timeout=60, what=f"restart {crash}")
        assert engine.status()["state"] == "running"
        ray.kill(engine.actor("feed"), no_restart=False)  # one crash too many

        status = wait_for(lambda: (s := engine.status())["state"] == "failed" and s, timeout=60, what="giving up")
        assert status["actors"]["feed"]["alive"] is False
        [problem] = status["problems"]
        assert problem.startswith(f"engine 'test-crash-loop': actor 'feed' crashed {RESTART_LIMIT + 1} times within ")
        assert "not restarted again" in problem
        assert all(actor["alive"] for name, actor in status["actors"].items() if name != "feed")
        assert actor_table(engine.actor("feed")._actor_id.hex())["State"] == "DEAD"  # Ray restarts it no more

        # a call to it says so at once, with the supervisor's words (it retried for a minute, then "did not come back")
        with pytest.raises(EngineUnavailable, match="crash loop") as tick:
            engine.tick()  # through the handle's retrying call
        assert str(tick.value) == problem
        with pytest.raises(EngineUnavailable, match="crash loop") as replay:
            engine.replay_market([])  # straight to the feed (a replay is not retried)
        assert str(replay.value) == problem
        assert engine.balances()  # the other actors answer
    finally:
        engine.shutdown()


def test_an_actor_that_cannot_start_fails_the_start_at_once_with_its_own_error(ray_runtime, tmp_path):
    """An actor whose constructor raises at start (here the account view's journal is damaged) killed the supervisor's
    constructor: ``start_local`` raised Ray's ``ActorDiedError``, two nested tracebacks long, and ``veloz start``
    printed them. It is one :class:`EngineUnavailable` naming the engine, the actor and its error, and no supervisor
    is left behind holding the name."""
    journals = tmp_path / "journals"
    engine = start_local(file_config(), name="test-bad-start", journal_dir=journals)
    engine.tick()
    engine.shutdown()
    (journals / "account.journal").write_bytes(b"not a journal\n")

    with pytest.raises(EngineUnavailable) as failed:
        start_local(file_config(), name="test-bad-start", journal_dir=journals)
    message = str(failed.value)
    assert message.startswith("engine 'test-bad-start': actor 'account' failed to start: JournalError: ")
    assert f"{journals / 'account.journal'} is not a VeloZ journal" in message
    assert "Traceback" not in message and "\n" not in message

    def name_free() -> bool:
        try:
            ray.get_actor("veloz-engine:test-bad-start")
        except ValueError:
            return True
        return False

    wait_for(name_free, what="the failed supervisor to go")  # the name is free for the next start


def test_a_restarted_supervisor_whose_actor_cannot_start_says_so_in_status_and_to_the_handle(ray_runtime, tmp_path):
    """A supervisor Ray restarted rebuilds its actors from their journals: one it could not rebuild (a damaged journal)
    killed the new supervisor too, and the handle retried for a minute, then said "did not come back". The supervisor
    now stays, ``failed``, its ``problems`` naming the actor and its error, and a call through the handle says the
    same."""
    journals = tmp_path / "journals"
    engine = start_local(file_config(), name="test-bad-rebuild", journal_dir=journals)
    try:
        engine.tick()
        (journals / "account.journal").write_bytes(b"not a journal\n")
        ray.kill(engine._supervisor, no_restart=False)  # its actors die with it; the new one rebuilds them

        status = wait_for(lambda: (s := engine.status())["supervisor_restarts"] == 1 and s, what="the restart")
        assert status["state"] == "failed"
        [problem] = status["problems"]
        assert problem.startswith("engine 'test-bad-rebuild': actor 'account' failed to start: JournalError: ")
        with pytest.raises(EngineUnavailable) as call:
            engine.balances()
        assert str(call.value) == problem
    finally:
        engine.shutdown()


class _DiesInItsConstructor:
    """An actor whose process ends inside its constructor with no Python exception (as native code crashing, or the
    OOM killer, ends it)."""

    def __init__(self) -> None:
        os._exit(1)

    def ping(self) -> int:
        return os.getpid()


class _Starts:
    def ping(self) -> int:
        return os.getpid()


def test_an_actor_whose_process_dies_in_its_constructor_fails_the_start_naming_it_not_after_minutes(ray_runtime):
    """Ray restarts it for ever (``max_restarts=-1``) and a call to it waits for a constructor that never ends: the
    start waited START_SECONDS (240 s) and then said only that the actors did not start in time. Ray's count of its
    restarts tells it after START_CRASHES deaths (about a second each), naming the actor."""
    options = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": 0}
    fine = ray.remote(_Starts).options(**options).remote()
    dying = ray.remote(_DiesInItsConstructor).options(**options).remote()
    try:
        actors = {"fine": fine, "dying": dying}
        with pytest.raises(DiedWhileStarting) as died:
            wait_started([a.ping.remote() for a in actors.values()], actors, START_SECONDS)
        assert (died.value.actor, died.value.restarts >= START_CRASHES) == ("dying", True)
        [pid] = wait_started([fine.ping.remote()], {"fine": fine}, START_SECONDS)  # one that starts is waited for
        assert pid != os.getpid()
    finally:
        ray.kill(dying, no_restart=True)
        ray.kill(fine, no_restart=True)


class _SupervisorDiesInItsConstructor:
    """A supervisor whose process ends inside its constructor with no Python exception (the OOM killer while it
    builds the actor graph, native code crashing)."""

    def __init__(self) -> None:
        os._exit(1)

    def handles(self) -> dict:
        return {}


def test_a_supervisor_whose_process_dies_in_its_constructor_fails_the_start_naming_it_not_after_minutes(ray_runtime):
    """Ray restarts the supervisor for ever too (``max_restarts=-1``): the handle (``start_local``, ``veloz start``)
    waited the whole start timeout, about 510 s, then said only that the actors were still starting. Ray's count of
    the supervisor's restarts tells it after START_CRASHES deaths, and the error names the supervisor."""
    options = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": 0}
    supervisor = ray.remote(_SupervisorDiesInItsConstructor).options(**options).remote()
    try:
        with pytest.raises(EngineUnavailable) as failed:
            EngineHandle(supervisor, name="dies-starting", owned=True, start_timeout=START_SECONDS)
        message = str(failed.value)
        assert message.startswith("engine 'dies-starting': its supervisor died "), message
        assert "times while starting" in message and "veloz-supervisor" in message
    finally:
        ray.kill(supervisor, no_restart=True)


def test_a_supervisor_that_keeps_crashing_stops_rebuilding_and_says_so(ray_runtime, tmp_path):
    """Ray restarts the supervisor for ever (``max_restarts=-1``), and each new one builds every actor again: one that
    kept dying (the OOM killer while it rebuilds) looped for ever behind an engine that never answered, while the
    actors it supervises are given up past RESTART_LIMIT crashes within RESTART_WINDOW_SECONDS. The supervisor counts
    its own restarts the same way: past the limit it builds nothing, stays up ``failed`` and says why."""
    engine = start_local(file_config(), name="test-supervisor-loop", journal_dir=tmp_path / "journals")
    try:
        engine.tick()
        for restart in range(1, RESTART_LIMIT + 2):
            ray.kill(engine._supervisor, no_restart=False)  # its process dies (its actors with it); Ray restarts it
            status = wait_for(
                lambda restart=restart: (s := engine.status())["supervisor_restarts"] == restart and s,
                timeout=120,
                what=f"supervisor restart {restart}",
            )
            if restart <= RESTART_LIMIT:
                assert status["state"] == "running" and status["actors"], restart
        assert status["state"] == "failed" and status["actors"] == {}
        [problem] = status["problems"]
        assert problem.startswith(
            f"engine 'test-supervisor-loop': its supervisor was restarted {RESTART_LIMIT + 1} times within "
        ), problem
        assert "veloz stop --name test-supervisor-loop" in problem
        with pytest.raises(EngineUnavailable) as call:
            engine.balances()
        assert str(call.value) == problem
    finally:
        engine.shutdown()
