"""The service's Tracker: the equity series' drawdown is measured from the engine's peak at each point, also for a
window that starts after the peak."""

from __future__ import annotations

from veloz_actors.core.instruments import Pricing
from veloz_actors.fixed import parse_decimal
from veloz_actors.interfaces.http_api import _page
from veloz_actors.interfaces.service import Tracker, Valuation


def _account(ts: int, usdt: str) -> dict:
    return {"type": "account", "ts": ts, "balances": {"USDT": {"free": usdt, "locked": "0"}}}


def test_a_window_after_the_peak_keeps_the_drawdown_from_the_peak() -> None:
    tracker = Tracker(Valuation(Pricing((), "USDT")))
    tracker.start({"USDT": (100 * 10**8, 0)}, {}, ts=1)
    for ts, usdt in ((2, "120"), (3, "90"), (4, "60")):
        tracker.observe([_account(ts, usdt)])
        tracker.sample(ts)
    assert [p["drawdown"] for p in tracker.series()] == ["0", "0", "0.25", "0.5"]
    assert [p["drawdown"] for p in tracker.series(since=3)] == ["0.25", "0.5"]  # not from the window's own 90


def test_fills_arriving_out_of_time_order_are_paged_once_each() -> None:
    """The actor engine's fills may arrive slightly out of time order; the API pages them by time."""
    tracker = Tracker(Valuation(Pricing((), "USDT")))
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


def test_the_api_values_equity_by_the_kernels_rule() -> None:
    """The API's equity, the kernel's and the risk monitor's follow one rule (core.instruments.Pricing): an asset
    valued through its instrument's mark once it has one; an asset no instrument values is left out and named."""
    from veloz_actors.testing import btcusdt, d, ethusdt, trade
    from veloz_actors.venues.engine import Engine, EngineConfig

    balances = {"main": {"USDT": d("1000"), "BTC": d("0.5"), "ETH": d("2"), "BNB": d("3")}}
    engine = Engine(EngineConfig(instruments=(btcusdt(), ethusdt()), balances=balances))
    valuation = Valuation.of(engine.kernel.config)
    tracker = Tracker(valuation)
    held = engine.kernel.ledger.balances("main")
    tracker.start(held, {}, ts=1)
    assert tracker.equity_now() | {"peak": None} == {
        "asset": "USDT", "equity": "1000", "peak": None, "drawdown": "0", "complete": False, "unvalued": ["BNB"]
    }  # fmt: skip
    assert not engine.kernel.equity_complete("main")
    for symbol, price in (("BTCUSDT", "60000"), ("ETHUSDT", "3000")):
        engine.apply(trade(price, symbol=symbol))
        tracker.observe([{"type": "market", "kind": "trade", "symbol": symbol, "price": price}])
    now = tracker.equity_now()
    assert (now["equity"], now["complete"], now["unvalued"]) == ("37000", True, ["BNB"])
    assert engine.kernel.equity_complete("main") and parse_decimal(now["equity"]) == engine.kernel.equity("main")


def test_balances_beyond_what_a_person_may_type_are_kept_as_the_kernels_integers() -> None:
    """The tracker reads the engine's own figures back exactly: a balance above the 1e10 a person may type (a fill
    took it there) and a negative one (a fee in an asset never deposited) are kept, never refused."""
    tracker = Tracker(Valuation(Pricing((), "USDT")))
    tracker.start({"USDT": (100 * 10**8, 0)}, {}, ts=1)
    tracker.observe(
        [
            {"type": "account", "ts": 2, "balances": {"USDT": {"free": "10000029982.56742", "locked": "0.00000001"},
                                                      "BNB": {"free": "-0.5", "locked": "0"}}},
            {"type": "market", "kind": "trade", "symbol": "BTCUSDT", "price": "20000000000"},
        ]
    )  # fmt: skip
    assert tracker.balances == {"USDT": (1_000_002_998_256_742_000, 1), "BNB": (-50_000_000, 0)}
    assert tracker.marks["BTCUSDT"] == 20_000_000_000 * 10**8
    tracker.sample(2)
    assert tracker.equity_now()["equity"] == "10000029982.56742001"


def test_a_refused_reuse_of_a_client_order_id_is_a_rejection_and_not_the_end_of_the_order_holding_it() -> None:
    """The API's finished orders (GET /api/v1/orders?state=closed) listed a resting order as REJECTED when a new
    order reusing its id was refused; its cancel then made a second row for it."""
    from veloz_actors.interfaces.local import LocalBackend
    from veloz_actors.interfaces.stdio import Session
    from veloz_actors.messages import Tick
    from veloz_actors.testing import FakeClock, engine_config
    from veloz_actors.venues.engine import Engine

    engine = Engine(engine_config(sim=True))
    engine.apply(Tick(ts=1))
    session = Session(LocalBackend(engine), symbols=set(engine.instruments), clock=FakeClock(), market=False)
    tracker = Tracker(Valuation.of(engine.kernel.config))
    for line in ("ORDER BUY BTCUSDT 0.01 59000 cid=a1", "ORDER BUY BTCUSDT 0.02 59000 cid=a1"):
        tracker.observe(session.handle_line(line))
    assert list(tracker.orders) == []
    assert [(r["cid"], r["reason"]) for r in tracker.rejections] == [("a1", "DUPLICATE_CLIENT_ORDER_ID")]
    tracker.observe(session.handle_line("CANCEL a1"))
    assert [(o["cid"], o["status"]) for o in tracker.orders] == [("a1", "CANCELLED")]
