"""The service's Tracker: the equity series' drawdown is measured from the engine's peak at each point, also for a
window that starts after the peak."""

from __future__ import annotations

from veloz_actors.interfaces.service import Tracker, Valuation


def _account(ts: int, usdt: str) -> dict:
    return {"type": "account", "ts": ts, "balances": {"USDT": {"free": usdt, "locked": "0"}}}


def test_a_window_after_the_peak_keeps_the_drawdown_from_the_peak() -> None:
    tracker = Tracker(Valuation("USDT", {}))
    tracker.start({"USDT": (100 * 10**8, 0)}, {}, ts=1)
    for ts, usdt in ((2, "120"), (3, "90"), (4, "60")):
        tracker.observe([_account(ts, usdt)])
        tracker.sample(ts)
    assert [p["drawdown"] for p in tracker.series()] == ["0", "0", "0.25", "0.5"]
    assert [p["drawdown"] for p in tracker.series(since=3)] == ["0.25", "0.5"]  # not from the window's own 90
