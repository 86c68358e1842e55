"""The risk actor's fill stream: the OMS's :class:`RiskFeed` numbers the fills by kernel step, keeps them until
acknowledged, bounds what it keeps (counting the drops), sends the unacknowledged tail again when the risk actor asks
to follow, and its ledger (a rebase) when that tail is gone; the risk actor applies only a segment that follows on.

The feed's peer is a stand-in: :class:`StandInRiskActor` records every one-way call and answers at once through
``ray.put`` (an answer that is ready, as the feed polls for it), so the session Ray runtime is all these tests start.
A :class:`RiskActor` built in this process asks Ray whether it was restarted, which starts a runtime when there is
none: those tests request the session one too.
"""

from __future__ import annotations

from typing import Any

import pytest
import ray

from tests.ray_fixtures import RayRuntime
from veloz_actors.actors import risk as risk_module
from veloz_actors.actors.risk import FEED_LIMIT, RiskActor, RiskFeed
from veloz_actors.core.risk_monitor import RiskMonitorConfig
from veloz_actors.messages import AccountUpdated, Balance, Liquidity, OrderFilled, PositionUpdated, Side
from veloz_actors.testing import START_NS, d, instruments


def _fill(trade_id: int, qty: str = "0.1") -> OrderFilled:
    return OrderFilled(
        client_order_id=f"c{trade_id}", order_id=trade_id, account_id="main", symbol="BTCUSDT", side=Side.BUY,
        trade_id=trade_id, price=d("60000"), qty=d(qty), fee=0, fee_asset="USDT", liquidity=Liquidity.TAKER,
        cum_qty=d(qty), leaves_qty=0, ts=START_NS + trade_id,
    )  # fmt: skip


def _ledger(usdt: str, btc: str, btcusdt: str) -> tuple[list[AccountUpdated], list[PositionUpdated]]:
    account = AccountUpdated(
        account_id="main", balances=(Balance(asset="BTC", free=d(btc), locked=0),
                                     Balance(asset="USDT", free=d(usdt), locked=0)), ts=START_NS,
    )  # fmt: skip
    position = PositionUpdated(
        account_id="main", symbol="BTCUSDT", qty=d(btcusdt), avg_entry_price=d("60000"), cost=0, realized_pnl=0,
        unrealized_pnl=0, mark_price=d("60000"), ts=START_NS,
    )  # fmt: skip
    return [account], [position]


@ray.remote(num_cpus=0)
def _risk_actor_died() -> int:
    raise RuntimeError("the risk actor died with the call in flight")


class _Method:
    def __init__(self, call: Any) -> None:
        self.remote = call


class StandInRiskActor:
    """The feed's follower: records ``fills`` and ``rebase`` calls and answers with the position it reached, as the
    risk actor does (a segment is taken only when it starts at that position). ``dead`` makes every call fail."""

    def __init__(self, cursor: int = 0) -> None:
        self.cursor = cursor
        self.dead = False
        self.calls: list[tuple[Any, ...]] = []
        self.failed: list[Any] = []
        self.fills = _Method(self._fills)
        self.rebase = _Method(self._rebase)

    def _answer(self) -> Any:
        if self.dead:
            ref = _risk_actor_died.remote()
            self.failed.append(ref)
            return ref
        return ray.put(self.cursor)

    def _fills(self, first: int, last: int, fills: list[OrderFilled]) -> Any:
        self.calls.append(("fills", first, last, [f.trade_id for f in fills]))
        if not self.dead and first == self.cursor:
            self.cursor = last
        return self._answer()

    def _rebase(self, position: int, accounts: list[AccountUpdated], positions: list[PositionUpdated]) -> Any:
        self.calls.append(("rebase", position, len(accounts), len(positions)))
        if not self.dead:
            self.cursor = position
        return self._answer()

    def wait_for_failures(self) -> None:
        ready, _ = ray.wait(self.failed, num_returns=len(self.failed), timeout=30.0)
        assert len(ready) == len(self.failed), "the failing calls did not finish"


class InProcessRiskActor:
    """A real :class:`RiskActor` (the plain class, in this process) behind the ``.remote`` calls of the feed."""

    def __init__(self) -> None:
        config = RiskMonitorConfig(
            instruments=instruments(),
            balances={"main": {"USDT": d("100000"), "BTC": d("2")}},
            reference_prices={"BTCUSDT": d("60000")},
        )
        self.actor = RiskActor(config, None)
        self.fills = _Method(lambda *args: ray.put(self.actor.fills(*args)))
        self.rebase = _Method(lambda *args: ray.put(self.actor.rebase(*args)))


# ------------------------------------------------------------------------------------------- numbering and keeping


def test_nothing_is_sent_before_the_risk_actor_asks_to_follow(ray_runtime: RayRuntime) -> None:
    feed = RiskFeed(0)
    feed.publish(3, [_fill(1)])
    feed.flush()
    assert feed.status()["follower"] is False
    assert (feed.sent_to, feed.kept) == (0, 1)


def test_segments_are_numbered_by_kernel_step_and_steps_without_fills_fold_into_the_next(
    ray_runtime: RayRuntime,
) -> None:
    feed, risk = RiskFeed(10), StandInRiskActor(cursor=10)
    assert feed.follow(risk, 10) is True
    feed.publish(13, [_fill(1), _fill(2)])
    feed.flush()
    feed.publish(14, [])  # a step without a fill
    feed.publish(16, [_fill(3)])
    feed.flush()
    assert risk.calls == [("fills", 10, 13, [1, 2]), ("fills", 13, 16, [3])]
    assert risk.cursor == 16
    assert feed.status()["fills_sent"] == 3


def test_fills_are_kept_until_acknowledged_and_the_answer_trims_them(ray_runtime: RayRuntime) -> None:
    feed, risk = RiskFeed(0), StandInRiskActor()
    feed.follow(risk, 0)
    feed.publish(3, [_fill(1)])
    feed.publish(5, [_fill(2), _fill(3)])
    feed.flush()
    assert [(first, last) for first, last, _ in feed.segments] == [(0, 3), (3, 5)]
    assert (feed.kept, feed.acknowledged) == (3, 0)  # sent, not yet acknowledged
    feed.flush()  # takes the answer
    assert (feed.kept, feed.acknowledged, feed.base) == (0, 5, 5)
    assert not feed.segments


def test_a_segment_the_risk_actor_did_not_take_stays_kept(ray_runtime: RayRuntime) -> None:
    feed, risk = RiskFeed(0), StandInRiskActor(cursor=2)  # it is not where the stream starts: a gap for it
    feed.follower = risk  # a restarted OMS found it by name, before it asked
    feed.publish(3, [_fill(1)])
    feed.flush()
    feed.flush()
    assert risk.calls == [("fills", 0, 3, [1])]
    assert (feed.acknowledged, feed.kept) == (2, 1)


# --------------------------------------------------------------------------------------------------- following


def test_a_follow_request_sends_the_unacknowledged_tail_again(ray_runtime: RayRuntime) -> None:
    feed, risk = RiskFeed(0), StandInRiskActor()
    feed.follow(risk, 0)
    feed.publish(3, [_fill(1)])
    feed.flush()
    feed.publish(6, [_fill(2)])
    feed.publish(9, [_fill(3), _fill(4)])
    risk.dead = True
    feed.flush()  # acknowledges 3, sends (3, 9]: the call fails
    risk.wait_for_failures()
    feed.flush()
    assert feed.status()["call_failures"] == 1
    assert (feed.acknowledged, feed.kept) == (3, 3)

    risk.dead, risk.cursor = False, 6  # back, with the fills up to step 6 in its journal
    assert feed.follow(risk, 6) is True
    feed.flush()
    assert risk.calls[-1] == ("fills", 6, 9, [3, 4])
    assert feed.status()["fills_resent"] == 2  # fill 2 is acknowledged by the request itself
    feed.flush()
    assert (risk.cursor, feed.acknowledged, feed.kept) == (9, 9, 0)


def test_a_follow_request_from_the_start_of_the_kept_tail_sends_all_of_it(ray_runtime: RayRuntime) -> None:
    feed, risk = RiskFeed(4), StandInRiskActor(cursor=4)
    feed.publish(6, [_fill(1)])
    feed.publish(8, [_fill(2)])
    assert feed.follow(risk, 4) is True
    feed.flush()
    assert risk.calls == [("fills", 4, 8, [1, 2])]
    assert feed.status()["fills_resent"] == 0  # never sent before


def test_a_follow_request_from_before_what_is_kept_asks_for_a_rebase_and_the_ledger_goes(
    ray_runtime: RayRuntime,
) -> None:
    feed, risk = RiskFeed(20), StandInRiskActor(cursor=7)  # an OMS restarted at step 20: steps 8..20 are gone
    feed.publish(22, [_fill(1)])
    assert feed.follow(risk, 7) is False
    accounts, positions = _ledger(usdt="50000", btc="3", btcusdt="1")
    feed.rebase(22, accounts, positions)  # what OmsActor.follow_fills does on False
    feed.publish(25, [_fill(2)])
    feed.flush()
    assert risk.calls == [("rebase", 22, 1, 1), ("fills", 22, 25, [2])]
    feed.flush()
    assert (risk.cursor, feed.acknowledged, feed.rebases) == (25, 25, 1)


def test_a_follow_request_from_a_position_inside_a_segment_gets_a_rebase(ray_runtime: RayRuntime) -> None:
    feed = RiskFeed(0)
    feed.publish(5, [_fill(1)])
    assert feed.follow(StandInRiskActor(cursor=3), 3) is False


def test_a_risk_actor_that_does_not_answer_is_probed_with_an_empty_segment(
    ray_runtime: RayRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(risk_module, "_PROBE_SECONDS", 0.0)
    feed, risk = RiskFeed(0), StandInRiskActor()
    feed.follow(risk, 0)
    feed.publish(3, [_fill(1)])
    risk.dead = True
    feed.flush()
    risk.wait_for_failures()
    risk.dead = False  # restarted, without the segment
    feed.flush()  # takes the failure; nothing unsent; not acknowledged: a probe
    assert risk.calls[-1] == ("fills", 3, 3, [])
    assert feed.probes == 1
    feed.flush()
    assert (feed.acknowledged, feed.kept) == (0, 1)  # its answer: still at 0, the fill stays for its follow request


# ------------------------------------------------------------------------------------------------------ the bound


def test_the_bound_defaults_to_feed_limit() -> None:
    assert RiskFeed(0).limit == FEED_LIMIT
    assert RiskFeed(0).status()["limit"] == FEED_LIMIT


def test_past_the_bound_the_oldest_segments_are_dropped_and_counted() -> None:
    feed = RiskFeed(0, limit=3)
    feed.publish(1, [_fill(1)])
    feed.publish(2, [_fill(2), _fill(3)])
    feed.publish(3, [_fill(4)])  # 4 kept: the oldest segment goes
    assert (feed.kept, feed.fills_dropped, feed.base) == (3, 1, 1)
    feed.publish(4, [_fill(5), _fill(6)])
    assert [(first, last) for first, last, _ in feed.segments] == [(2, 3), (3, 4)]
    status = feed.status()
    assert (status["fills_kept"], status["fills_dropped"], status["position"]) == (3, 3, 4)
    assert status["sent_to"] == 2  # unsent and gone: never sent at all


def test_after_a_drop_a_follower_before_the_kept_tail_is_rebased_and_one_at_it_gets_the_tail(
    ray_runtime: RayRuntime,
) -> None:
    feed = RiskFeed(0, limit=2)
    for step in range(1, 5):
        feed.publish(step, [_fill(step)])
    assert feed.fills_dropped == 2
    assert feed.follow(StandInRiskActor(cursor=1), 1) is False  # step 2 is gone
    at_the_tail = StandInRiskActor(cursor=2)
    assert feed.follow(at_the_tail, 2) is True
    feed.flush()
    assert at_the_tail.calls == [("fills", 2, 4, [3, 4])]


def test_a_segment_larger_than_the_bound_is_dropped_whole() -> None:
    feed = RiskFeed(0, limit=2)
    feed.publish(1, [_fill(1), _fill(2), _fill(3)])
    assert (feed.kept, feed.fills_dropped, feed.base, feed.sent_to, len(feed.segments)) == (0, 3, 1, 1, 0)


def test_at_most_window_calls_are_in_flight_with_a_rebase_and_fills_waiting(ray_runtime: RayRuntime) -> None:
    feed, risk = RiskFeed(0, window=1), StandInRiskActor(cursor=0)
    feed.publish(3, [_fill(1)])
    assert feed.follow(risk, 9) is False  # a risk actor ahead of this stream: rebased
    feed.rebase(5, *_ledger(usdt="1", btc="0", btcusdt="0"))
    feed.publish(7, [_fill(2)])
    feed.flush()
    assert feed.status()["calls_in_flight"] <= 1
    assert risk.calls == [("rebase", 5, 1, 1)]
    feed.flush()  # the rebase answered: the fills go
    assert risk.calls[-1] == ("fills", 5, 7, [2])


# ---------------------------------------------------------------------- the risk actor's side, behind the feed


def test_the_risk_actor_takes_only_a_segment_that_starts_at_its_position(ray_runtime: RayRuntime) -> None:
    actor = InProcessRiskActor().actor
    assert actor.fills(0, 3, [_fill(1, "0.5")]) == 3
    before = actor.exposure()
    assert actor.fills(5, 8, [_fill(2)]) == 3  # a gap: steps 4 and 5 missing
    assert actor.fills(2, 6, [_fill(1, "0.5"), _fill(3)]) == 3  # an overlap: starts before the position
    assert actor.fills(0, 3, [_fill(1, "0.5")]) == 3  # sent again: applied already
    assert actor.exposure() == before
    assert actor.exposure()["main"]["BTCUSDT"] == d("0.5")
    stream = actor.status()["stream"]
    assert (stream["position"], stream["segments"], stream["gaps"], stream["stale_segments"]) == (3, 1, 2, 1)
    assert actor.fills(3, 6, [_fill(2), _fill(3)]) == 6
    assert actor.exposure()["main"]["BTCUSDT"] == d("0.7")


def test_a_risk_actor_that_missed_dropped_fills_is_rebased_to_the_ledger(ray_runtime: RayRuntime) -> None:
    follower = InProcessRiskActor()
    feed = RiskFeed(0, limit=2)
    feed.follow(follower, 0)
    for step in range(1, 5):
        feed.publish(step, [_fill(step)])  # steps 1 and 2 dropped before any was sent
    feed.flush()
    feed.flush()
    assert follower.actor.status()["stream"]["gaps"] == 1  # (2, 4] does not follow on from 0
    assert feed.acknowledged == 0
    assert feed.follow(follower, 0) is False  # its request to follow (one-way in an engine)
    accounts, positions = _ledger(usdt="99976", btc="2.4", btcusdt="0.4")
    feed.rebase(4, accounts, positions)
    feed.flush()
    feed.flush()
    assert feed.acknowledged == 4
    assert follower.actor.exposure() == {"main": {"BTC": d("2.4"), "USDT": d("99976"), "BTCUSDT": d("0.4")}}
    assert follower.actor.status()["stream"]["rebases"] == 1
