"""The simulated venue behind the kernel: what it keeps after one of its own calls raised."""

from __future__ import annotations

from veloz_actors.messages import BookTop, CancelOrder, Error, OrderExpired, OrderFilled, RejectReason, Tick
from veloz_actors.testing import d, engine_config, place
from veloz_actors.venues.engine import Engine

from .faults import raise_once

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
