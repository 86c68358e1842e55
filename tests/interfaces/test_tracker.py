"""The service's Tracker: the equity series' drawdown is measured from the engine's peak at each point, also for a
window that starts after the peak."""

from __future__ import annotations

from veloz_actors.interfaces.http_api import _page
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


def test_fills_arriving_out_of_time_order_are_paged_once_each() -> None:
    """The actor engine's fills may arrive slightly out of time order; the API pages them by time."""
    tracker = Tracker(Valuation("USDT", {}))
    fills = [{"type": "fill", "ts": ts, "cid": cid, "symbol": "BTCUSDT", "price": "100"} for cid, ts in
             (("a", 10), ("b", 5), ("c", 8), ("d", 8), ("e", 12), ("f", 1))]  # fmt: skip
    tracker.observe(fills)
    assert [f["ts"] for f in tracker.fills] == [1, 5, 8, 8, 10, 12]
    paged, until = [], None
    while True:
        page = _page(tracker.fills, since=0, until=until, limit=2)
        paged += page["items"]
        if not page["more"]:
            break
        until = page["next_until"]
    assert sorted(f["cid"] for f in paged) == ["a", "b", "c", "d", "e", "f"] and len(paged) == 6
