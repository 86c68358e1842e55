"""Matching: price-time priority, partial fills, maker/taker, IOC/FOK/POST_ONLY, market protection, self-trade, cancel.

Book-level rules are tested on :class:`OrderBook` directly; the order types on the engine, which owns them.
"""

from __future__ import annotations

from typing import Any

from veloz_actors.messages import (
    Liquidity,
    OrderAccepted,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    RejectReason,
    Side,
)
from veloz_actors.testing import d, engine_config, place, trade
from veloz_actors.venues.engine import Engine
from veloz_actors.venues.matching import OrderBook, VenueOrder

_ids = iter(range(1, 10**6))


def _order(cid: str, side: str, qty: str, price: str | None, account: str) -> VenueOrder:
    return VenueOrder(client_order_id=cid, account_id=account, side=Side(side), price=None if price is None else d(price),
                      qty=d(qty), order_id=next(_ids))  # fmt: skip


def _resting(book: OrderBook, side: str, qty: str, price: str, account: str = "maker") -> VenueOrder:
    order = _order(f"m{next(_ids)}", side, qty, price, account)
    book.rest(order)
    return order


def _taker(side: str, qty: str, account: str = "taker") -> VenueOrder:
    return _order(f"t{next(_ids)}", side, qty, None, account)


def test_taker_trades_best_price_first() -> None:
    book = OrderBook("BTCUSDT")
    worse = _resting(book, "SELL", "1", "101")
    better = _resting(book, "SELL", "1", "100")
    fills, _ = book.match(_taker("BUY", "1.5"), None)
    assert [(maker, price, qty) for maker, price, qty in fills] == [
        (better, d("100"), d("1")),
        (worse, d("101"), d("0.5")),
    ]


def test_oldest_order_at_a_price_trades_first() -> None:
    book = OrderBook("BTCUSDT")
    first = _resting(book, "BUY", "1", "100")
    second = _resting(book, "BUY", "1", "100")
    fills, _ = book.match(_taker("SELL", "1.5"), None)
    assert [(f[0], f[2]) for f in fills] == [(first, d("1")), (second, d("0.5"))]


def test_partial_fill_keeps_the_maker_at_the_front_with_its_remainder() -> None:
    book = OrderBook("BTCUSDT")
    maker = _resting(book, "SELL", "1", "100")
    book.match(_taker("BUY", "0.4"), None)
    assert maker.filled == d("0.4") and maker.resting
    assert book.top() == (0, 0, d("100"), d("0.6"))
    book.check_invariants()


def test_limit_stops_the_walk() -> None:
    book = OrderBook("BTCUSDT")
    _resting(book, "SELL", "1", "100")
    _resting(book, "SELL", "1", "102")
    taker = _taker("BUY", "2")
    fills, _ = book.match(taker, d("101"))
    assert [f[1] for f in fills] == [d("100")]
    assert taker.filled == d("1")


def test_cancelled_order_is_skipped_and_its_level_updated_at_once() -> None:
    book = OrderBook("BTCUSDT")
    gone = _resting(book, "SELL", "1", "100")
    kept = _resting(book, "SELL", "1", "100")
    book.remove(gone)
    assert book.top()[3] == d("1")
    fills, _ = book.match(_taker("BUY", "1"), None)
    assert [f[0] for f in fills] == [kept]
    assert book.best_ask() is None
    book.check_invariants()


def test_cancelling_the_last_order_drops_the_level() -> None:
    book = OrderBook("BTCUSDT")
    order = _resting(book, "BUY", "1", "100")
    _resting(book, "BUY", "1", "99")
    book.remove(order)
    assert book.best_bid() == d("99")
    assert book.depth() == (((d("99"), d("1")),), ())


def test_match_stops_at_the_takers_own_order() -> None:
    book = OrderBook("BTCUSDT")
    other = _resting(book, "SELL", "1", "100", account="maker")
    _resting(book, "SELL", "1", "100", account="taker")
    _resting(book, "SELL", "1", "101", account="maker")
    fills, self_trade = book.match(_taker("BUY", "3", account="taker"), None)
    assert self_trade is True
    assert [f[0] for f in fills] == [other]


def test_fillable_counts_depth_up_to_the_limit() -> None:
    book = OrderBook("BTCUSDT")
    _resting(book, "SELL", "1", "100")
    _resting(book, "SELL", "1", "101")
    assert book.fillable(Side.BUY, d("101"), d("2"), "taker")
    assert not book.fillable(Side.BUY, d("100"), d("2"), "taker")
    assert not book.fillable(Side.BUY, None, d("2.1"), "taker")


def test_would_cross_compares_with_the_opposite_best() -> None:
    book = OrderBook("BTCUSDT")
    _resting(book, "SELL", "1", "100")
    _resting(book, "BUY", "1", "98")
    assert book.would_cross(Side.BUY, d("100")) and not book.would_cross(Side.BUY, d("99.99"))
    assert book.would_cross(Side.SELL, d("98")) and not book.would_cross(Side.SELL, d("98.01"))


# ------------------------------------------------------------------------------------------------ through the engine


def _engine() -> Engine:
    engine = Engine(engine_config())
    engine.apply(trade("100"))  # a reference price, so market orders have a band
    return engine


def _of(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if type(e) is kind]


def test_fills_carry_maker_and_taker_flags_at_the_makers_price() -> None:
    engine = _engine()
    engine.apply(place("ask", "SELL", "1", "100", account="other"))
    events = engine.apply(place("bid", "BUY", "1", "101"))
    fills = {f.client_order_id: f for f in _of(events, OrderFilled)}
    assert fills["bid"].liquidity is Liquidity.TAKER and fills["ask"].liquidity is Liquidity.MAKER
    assert fills["bid"].price == fills["ask"].price == d("100")
    assert fills["bid"].trade_id == fills["ask"].trade_id


def test_partially_filled_limit_rests_its_remainder() -> None:
    engine = _engine()
    engine.apply(place("ask", "SELL", "0.4", "100", account="other"))
    engine.apply(place("bid", "BUY", "1", "100"))
    order = engine.oms.get("main", "bid")
    assert order.status is OrderStatus.PARTIALLY_FILLED and order.filled == d("0.4")
    assert engine.venues["BTCUSDT"].book.top()[:2] == (d("100"), d("0.6"))


def test_ioc_remainder_expires() -> None:
    engine = _engine()
    engine.apply(place("ask", "SELL", "0.4", "100", account="other"))
    events = engine.apply(place("ioc", "BUY", "1", "100", tif="IOC"))
    [expired] = _of(events, OrderExpired)
    assert (expired.reason, expired.filled_qty) == (RejectReason.IOC_UNFILLED, d("0.4"))
    assert engine.venues["BTCUSDT"].book.best_bid() is None


def test_fok_that_cannot_fill_completely_trades_nothing() -> None:
    engine = _engine()
    engine.apply(place("ask", "SELL", "0.4", "100", account="other"))
    events = engine.apply(place("fok", "BUY", "1", "100", tif="FOK"))
    assert _of(events, OrderFilled) == []
    assert _of(events, OrderExpired)[0].reason is RejectReason.FOK_NOT_FILLABLE
    assert engine.oms.get("other", "ask").filled == 0


def test_fok_that_can_fill_fills_completely() -> None:
    engine = _engine()
    engine.apply(place("a1", "SELL", "0.4", "100", account="other"))
    engine.apply(place("a2", "SELL", "0.6", "100.5", account="other"))
    engine.apply(place("fok", "BUY", "1", "100.5", tif="FOK"))
    assert engine.oms.get("main", "fok").status is OrderStatus.FILLED


def test_market_fok_never_fills_partially_beyond_its_protect_price() -> None:
    engine = _engine()  # reference 100, band 5 %: a market buy may walk up to 105
    engine.apply(place("near", "SELL", "0.4", "100", account="other"))
    engine.apply(trade("103"))  # inside the band of 103, outside the band of 100
    engine.apply(place("far", "SELL", "0.6", "106", account="other"))
    engine.apply(trade("100"))
    assert engine.oms.get("other", "far").is_open
    events = engine.apply(place("fok", "BUY", "1", None, tif="FOK"))
    assert _of(events, OrderFilled) == []
    assert engine.oms.get("main", "fok").status is OrderStatus.EXPIRED


def test_post_only_that_would_take_is_rejected() -> None:
    engine = _engine()
    engine.apply(place("ask", "SELL", "1", "100", account="other"))
    events = engine.apply(place("po", "BUY", "1", "100", tif="POST_ONLY"))
    # the kernel accepts (risk passed, funds reserved); the venue, which sees the book, rejects it
    [rejected] = _of(events, OrderRejected)
    assert rejected.reason is RejectReason.WOULD_TAKE_LIQUIDITY
    assert engine.oms.get("main", "po").status is OrderStatus.REJECTED
    assert engine.ledger.locked("main", "USDT") == 0
    assert engine.oms.get("other", "ask").filled == 0


def test_post_only_that_does_not_cross_rests() -> None:
    engine = _engine()
    engine.apply(place("ask", "SELL", "1", "100", account="other"))
    events = engine.apply(place("po", "BUY", "1", "99.99", tif="POST_ONLY"))
    assert _of(events, OrderAccepted) and engine.venues["BTCUSDT"].book.best_bid() == d("99.99")


def test_market_order_walks_no_further_than_its_protect_price() -> None:
    engine = _engine()
    engine.apply(place("near", "SELL", "0.4", "104", account="other"))
    engine.apply(trade("103"))
    engine.apply(place("far", "SELL", "0.6", "105.01", account="other"))
    engine.apply(trade("100"))  # a market buy may now walk up to 105
    assert engine.oms.get("other", "far").is_open
    events = engine.apply(place("mkt", "BUY", "1", None))
    assert [f.price for f in _of(events, OrderFilled) if f.account_id == "main"] == [d("104")]
    assert _of(events, OrderExpired)[0].reason is RejectReason.NO_LIQUIDITY
    assert engine.oms.get("other", "far").filled == 0


def test_self_trade_is_prevented_and_the_taker_expires() -> None:
    engine = _engine()
    engine.apply(place("mine", "SELL", "1", "100"))
    events = engine.apply(place("cross", "BUY", "1", "100"))
    assert _of(events, OrderFilled) == []
    [expired] = _of(events, OrderExpired)
    assert (expired.client_order_id, expired.reason) == ("cross", RejectReason.SELF_TRADE_PREVENTED)
    assert engine.oms.get("main", "mine").status is OrderStatus.ACCEPTED


def test_self_trade_prevention_keeps_fills_made_before_it() -> None:
    engine = _engine()
    engine.apply(place("theirs", "SELL", "0.5", "100", account="other"))
    engine.apply(place("mine", "SELL", "1", "100.01"))
    events = engine.apply(place("cross", "BUY", "1", "101"))
    assert [f.qty for f in _of(events, OrderFilled) if f.account_id == "main"] == [d("0.5")]
    assert _of(events, OrderExpired)[0].reason is RejectReason.SELF_TRADE_PREVENTED


def test_market_order_on_empty_book_expires_with_no_liquidity() -> None:
    engine = _engine()
    events = engine.apply(place("mkt", "SELL", "0.1", None))
    assert _of(events, OrderExpired)[0].reason is RejectReason.NO_LIQUIDITY


def test_market_order_without_reference_price_is_rejected() -> None:
    engine = Engine(engine_config())
    [rejected] = engine.apply(place("mkt", "BUY", "0.1", None))
    assert type(rejected) is OrderRejected and rejected.reason is RejectReason.NO_REFERENCE_PRICE
