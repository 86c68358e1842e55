"""The simulated venue behind the kernel: what it keeps after one of its own calls raised."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from veloz_actors._exceptions import ConfigError
from veloz_actors.core.journal import read_journal
from veloz_actors.messages import (
    BookTop,
    CancelOrder,
    Error,
    OrderExpired,
    OrderFilled,
    RejectReason,
    Side,
    SubmitCancel,
    SubmitOrder,
    Tick,
    VenueOrderAccepted,
)
from veloz_actors.testing import btcusdt, d, encoded, engine_config, engine_state, place
from veloz_actors.venues import sim as sim_module
from veloz_actors.venues.engine import MM_ACCOUNT, Engine
from veloz_actors.venues.sim import SimVenue

from .faults import raise_on_call, raise_once

START = 10**18


def test_a_cancel_that_raised_takes_the_order_off_the_book_so_it_never_fills_after_it_expired() -> None:
    """The cancel raised while taking the order off the book: the kernel expired it (VENUE_ERROR) and released its
    funds, but it kept resting and the market maker later filled it (FILL_AFTER_CLOSE, bought with no funds held)."""
    engine = Engine(engine_config(sim=True))
    engine.apply(Tick(ts=START))
    venue = engine.venues["BTCUSDT"]
    price = venue.book.top()[0] - d("1")
    engine.apply(place("o1", "BUY", "0.001", str(price / 10**8), ts=START + 1))
    assert venue.status()["resting_orders"] == 1
    raise_once(venue.book, "remove")
    out = engine.apply(CancelOrder(client_order_id="o1", account_id="main", ts=START + 2))
    assert [e.code for e in out if type(e) is Error] == ["VENUE_ERROR"]
    assert [e.reason for e in out if type(e) is OrderExpired] == [RejectReason.VENUE_ERROR]
    assert venue.status()["resting_orders"] == 0
    later = [e for step in range(1, 200) for e in engine.apply(Tick(ts=START + step * 10**9))]
    assert min(e.ask_price for e in later if type(e) is BookTop) <= price  # the market came to the order's price
    assert not [e for e in later if type(e) is OrderFilled or type(e) is Error]
    assert engine.totals() == engine.deposited()


def _fills(events: list, cid: str) -> list[int]:
    return [e.qty for e in events if type(e) is OrderFilled and e.client_order_id == cid]


def test_the_fills_a_match_made_before_it_raised_reach_the_kernel_and_only_the_remainder_expires(
    tmp_path: Path,
) -> None:
    """Matching raised on the taker's second price level, after the first two makers had filled: the venue had
    moved their quantities off its book, but no fill report reached the kernel, which expired the whole taker and
    kept both makers open for their full quantity (never to fill: the venue no longer had them)."""
    journal = tmp_path / "sim.journal"
    engine = Engine(engine_config(), journal_path=journal)
    venue = engine.venues["BTCUSDT"]
    for cid, price in (("s1", "60000"), ("s2", "60010"), ("s3", "60020")):
        engine.apply(place(cid, "SELL", "0.1", price, account="other", ts=START))
    raise_on_call(venue.book, "_drop_level", 2, after=True)  # the second level emptied, then matching raised
    out = engine.apply(place("b1", "BUY", "0.25", "60020", ts=START + 1))
    assert _fills(out, "b1") == [d("0.1"), d("0.1")] and _fills(out, "s1") == _fills(out, "s2") == [d("0.1")]
    assert [e.code for e in out if type(e) is Error] == ["VENUE_ERROR"]
    assert [(e.client_order_id, e.reason) for e in out if type(e) is OrderExpired] == [("b1", RejectReason.VENUE_ERROR)]
    # the kernel's open orders are exactly what the venue still works, for the same quantities
    kernel = {o.client_order_id: o.qty - o.filled for o in engine.oms.open_orders("other")}
    assert kernel == {cid: o.leaves for (_, cid), o in venue.orders.items()} == {"s3": d("0.1")}
    assert not engine.oms.open_orders("main")
    assert venue.book.depth() == ((), ((d("60020"), d("0.1")),))
    assert engine.ledger.balances("main")["BTC"] == (d("2.2"), 0)
    assert engine.totals() == engine.deposited() and engine.ledger.conserved()
    engine.close()
    # the journal replayed through an engine meeting the same failure gives the same events and the same state
    again = Engine(engine_config())
    raise_on_call(again.venues["BTCUSDT"].book, "_drop_level", 2, after=True)
    _, messages = read_journal(journal)
    assert encoded(again.apply_many(messages)[-len(out) :]) == encoded(out)
    assert engine_state(again) == engine_state(engine)


def test_the_fills_a_market_step_made_before_it_raised_reach_the_kernel() -> None:
    """The market maker's first bid swept two resting sells and its matching raised after the first: the sell had
    traded with the maker (the maker's own ledger booked it) but its fill never reached the kernel, so money no
    longer added up, and the quote's reservation stayed locked in the maker's ledger for good."""
    engine = Engine(engine_config(sim=True))
    engine.apply(Tick(ts=START))
    venue = engine.venues["BTCUSDT"]
    venue.withdraw()  # no bid on the book: the sells below the mid rest, the maker's next bid takes them
    bid = venue.mid - d("50")
    engine.apply(place("s1", "SELL", "0.01", str(bid / 10**8), ts=START + 1))
    engine.apply(place("s2", "SELL", "0.01", str((bid + d("1")) / 10**8), ts=START + 1))
    raise_on_call(venue.book, "_drop_level", 1, after=True)  # the first level emptied, then matching raised
    out = engine.apply(Tick(ts=START + 10**9))
    assert _fills(out, "s1") == [d("0.01")] and not _fills(out, "s2")
    assert [e.code for e in out if type(e) is Error] == ["VENUE_ERROR"]
    assert {o.client_order_id for o in engine.oms.open_orders("main")} == {"s2"} == {c for _, c in venue.orders}
    assert engine.totals() == engine.deposited() and engine.ledger.conserved()
    assert venue.maker.balances(MM_ACCOUNT)["USDT"][1] == sum(o.reserved for o in venue.maker_orders) == 0
    later = engine.apply(Tick(ts=START + 2 * 10**9))  # the market goes on: the next step's bid takes the other sell
    assert _fills(later, "s2") == [d("0.01")] and not [e for e in later if type(e) is Error]
    assert engine.totals() == engine.deposited()


def test_an_order_whose_drop_raised_too_expires_and_the_error_names_both_failures() -> None:
    """The cancel raised, then so did the venue's drop_order: the order stayed open at the kernel with its funds
    reserved for good (the venue, which still had it, was never asked again), with no test of that path at all."""
    engine = Engine(engine_config(sim=True))
    engine.apply(Tick(ts=START))
    venue = engine.venues["BTCUSDT"]
    price = venue.book.top()[0] - d("1")
    engine.apply(place("o1", "BUY", "0.001", str(price / 10**8), ts=START + 1))
    raise_once(venue.book, "remove")
    raise_once(venue, "drop_order")
    out = engine.apply(CancelOrder(client_order_id="o1", account_id="main", ts=START + 2))
    (error,) = [e for e in out if type(e) is Error]
    assert "OrderBook.remove failed" in error.message and "SimVenue.drop_order failed" in error.message
    assert [(e.client_order_id, e.reason) for e in out if type(e) is OrderExpired] == [("o1", RejectReason.VENUE_ERROR)]
    assert engine.ledger.balances("main") == Engine(engine_config(sim=True)).ledger.balances("main")  # released
    assert not engine.oms.open_orders("main")
    assert engine.totals() == engine.deposited() and engine.ledger.conserved()


def test_an_account_named_as_the_market_maker_is_refused_at_configuration() -> None:
    """A trader's account called ``sim-mm`` shared the market maker's account id at the venue: its orders never
    traded with the maker's quotes (self-trade prevention), and a quote stopped by one rested across it, so the book
    crossed (bid 60045.25 over ask 60045.18 a few steps after such an account rested orders around the market)."""
    config = engine_config(sim=True)
    with pytest.raises(ConfigError, match="'sim-mm' is the simulated market maker's own"):
        replace(config, balances={**config.balances, MM_ACCOUNT: {"USDT": d("1000")}})
    replace(config, balances={**config.balances, "sim-mm-2": {"USDT": d("1000")}})  # another name is fine


@pytest.mark.parametrize("semantics", [7, 6])
def test_a_market_buy_by_quote_amount_that_exhausts_the_market_makers_asks_expires_with_its_fills_kept(
    semantics: int,
) -> None:
    """The market maker offers 1.5 BTC (three levels of 0.5): a 99,000 USDT buy takes it all. Binance expires a market
    order the book cannot fill, its fills kept (``market_orders_faq.md``); the simulated venue closed it with its last
    fill, FILLED. A journal of semantics 6 keeps that rule."""
    engine = Engine(engine_config(sim=True))
    engine.use_semantics(semantics)
    engine.apply(Tick(ts=START))
    out = engine.apply(place("q", "BUY", None, quote_qty="99000", ts=START + 1))
    assert sum(_fills(out, "q")) == d("1.5")
    order = engine.kernel.oms.get("main", "q")
    assert order is not None and order.filled == d("1.5")
    if semantics >= 7:
        assert [(e.reason, e.filled_qty) for e in out if type(e) is OrderExpired] == [
            (RejectReason.NO_LIQUIDITY, d("1.5"))
        ]
        assert order.status.value == "EXPIRED"
    else:
        assert not [e for e in out if type(e) is OrderExpired] and order.status.value == "FILLED"
    assert engine.ledger.balances("main")["USDT"][1] == 0  # the unspent reservation released
    assert engine.totals() == engine.deposited()


def test_a_market_buy_by_quote_amount_that_spends_its_budget_on_the_simulated_venue_is_filled() -> None:
    engine = Engine(engine_config(sim=True))
    engine.apply(Tick(ts=START))
    out = engine.apply(place("q", "BUY", None, quote_qty="1000", ts=START + 1))
    order = engine.kernel.oms.get("main", "q")
    assert order is not None and order.status.value == "FILLED" and 0 < order.filled < d("0.5")
    assert not [e for e in out if type(e) is OrderExpired]
    assert engine.ledger.balances("main")["USDT"][1] == 0 and engine.totals() == engine.deposited()


@pytest.mark.parametrize("semantics", [7, 6])
@pytest.mark.parametrize(("quote", "end"), [("45000", "FILLED"), ("99000", "EXPIRED")])
def test_a_market_buy_by_quote_amount_says_on_each_fill_what_its_budget_still_buys(
    semantics: int, quote: str, end: str
) -> None:
    """Its fill events said ``leaves_qty`` 0 on every fill (an order by quote amount has no base quantity left), so a
    reader taking 0 for an order's end (stdio's order status, the HTTP API's orders, a strategy's open orders) saw it
    FILLED at the first of its fills. Semantics 7: what its unspent quote buys at the fill's price, 0 with the fill
    that spent its budget; one that runs out of book says so to its last fill, then expires. Semantics 6: 0."""
    engine = Engine(engine_config(sim=True))
    engine.use_semantics(semantics)
    engine.apply(Tick(ts=START))
    out = engine.apply(place("q", "BUY", None, quote_qty=quote, ts=START + 1))
    fills = [e for e in out if type(e) is OrderFilled and e.client_order_id == "q"]
    assert len(fills) >= 2  # it walks the market maker's levels
    order = engine.kernel.oms.get("main", "q")
    assert order is not None
    if semantics < 7:
        assert [f.leaves_qty for f in fills] == [0] * len(fills) and order.status.value == "FILLED"
        return
    assert order.status.value == end
    unspent = d(quote)
    for fill in fills[:-1]:
        unspent -= fill.price * fill.qty // d("1")
        assert 0 < fill.leaves_qty <= unspent * d("1") // fill.price  # at most what the rest of its budget buys
    assert (fills[-1].leaves_qty == 0) == (end == "FILLED")


def test_a_request_sent_again_for_an_order_still_resting_after_many_newer_ones_is_recognised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The venue remembers the latest requests it took, and every order it still works however old: a request sent
    again (after a restart) for an old resting order never rests a second one under the same id."""
    monkeypatch.setattr(sim_module, "_SEEN_LIMIT", 3)
    venue = SimVenue(btcusdt())

    def request(cid: str, order_id: int) -> SubmitOrder:
        command = place(cid, "BUY", "0.01", "59000", ts=START + order_id)
        return SubmitOrder(command=command, order_id=order_id, limit=command.price)

    old = request("old", 1)
    assert [type(r) for r in venue.submit(old)] == [VenueOrderAccepted]
    for i in range(2, 8):  # newer orders, cancelled at once: only "old" stays on the book
        assert venue.submit(request(f"n{i}", i))
        assert venue.cancel(SubmitCancel(client_order_id=f"n{i}", account_id="main", symbol="BTCUSDT", ts=START + i))
    assert venue.submit(old) == []  # recognised: no second order
    assert venue.book.orders_at(Side.BUY, d("59000")) == [venue.orders[("main", "old")]]
    assert venue.submit(request("n2", 2)) != []  # a closed order beyond the limit is forgotten, as before
    assert len(venue.seen) == 3  # the limit holds: the resting order took the place of a closed one
