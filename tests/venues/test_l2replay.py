"""L2ReplayVenue on a small hand-built book: latency holds requests in flight, market and limit orders against the
recorded levels, the queue model for resting orders, fees, cancels, and the kernel booking exactly what it reports.

Every expected number is written out here from the book each test builds, never taken from the venue's own code.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from veloz_actors.core.instruments import Instrument, ceil_div
from veloz_actors.core.kernel import KernelConfig, TradingKernel
from veloz_actors.core.risk import RiskLimits
from veloz_actors.fixed import SCALE
from veloz_actors.messages import (
    BookDelta,
    Liquidity,
    OrderStatus,
    OrderType,
    PlaceOrder,
    RejectReason,
    Side,
    SubmitCancel,
    SubmitOrder,
    TimeInForce,
    Trade,
    VenueCancelRejected,
    VenueOrderAccepted,
    VenueOrderCancelled,
    VenueOrderExpired,
    VenueOrderFilled,
)
from veloz_actors.venues.base import Venue
from veloz_actors.venues.fill_models import ConstantLatency, FeeModel, UniformLatency
from veloz_actors.venues.l2replay import L2ReplayVenue

TICK = 1_000_000  # 0.01
STEP = 1_000  # 0.00001
MAKER, TAKER = 20_000, 70_000  # 0.0002, 0.0007
MS = 1_000_000
P = SCALE  # one unit of price or quantity


def _instrument() -> Instrument:
    return Instrument(
        symbol="BTCUSDT",
        base_asset="BTC",
        quote_asset="USDT",
        price_tick=TICK,
        qty_step=STEP,
        min_qty=STEP,
        max_qty=10**6 * SCALE,
        min_notional=0,
        maker_fee_rate=MAKER,
        taker_fee_rate=TAKER,
    )


def _venue(latency_ns: int = 0, **kwargs: Any) -> L2ReplayVenue:
    venue = L2ReplayVenue(
        _instrument(), fees=FeeModel(MAKER, TAKER), latency=kwargs.pop("latency", ConstantLatency(latency_ns)), **kwargs
    )
    # bids 100.00 x 1, 99.99 x 2; asks 100.01 x 0.5, 100.02 x 1, 100.05 x 3
    venue.apply_depth(_snapshot(((100 * P, P), (9_999 * TICK, 2 * P)), ((10_001 * TICK, P // 2), (10_002 * TICK, P),
                                                                         (10_005 * TICK, 3 * P))))  # fmt: skip
    return venue


def _snapshot(bids: tuple[tuple[int, int], ...], asks: tuple[tuple[int, int], ...], update_id: int = 10) -> BookDelta:
    return BookDelta(
        symbol="BTCUSDT", first_update_id=update_id, last_update_id=update_id, bids=bids, asks=asks,
        is_snapshot=True, ts_event=0, ts_recv=0,
    )  # fmt: skip


def _order(cid: str, side: Side, qty: int, *, price: int | None = None, limit: int | None = None, ts: int = 0,
           tif: TimeInForce = TimeInForce.GTC, quote_qty: int | None = None, symbol: str = "BTCUSDT") -> SubmitOrder:  # fmt: skip
    command = PlaceOrder(
        client_order_id=cid, symbol=symbol, side=side, order_type=OrderType.LIMIT if price is not None else
        OrderType.MARKET, tif=tif, qty=qty, price=price, quote_qty=quote_qty, ts=ts,
    )  # fmt: skip
    return SubmitOrder(command=command, order_id=1, limit=price if price is not None else limit)


def _trade(price: int, qty: int, aggressor: Side, ts: int = 1) -> Trade:
    return Trade(symbol="BTCUSDT", trade_id=ts, price=price, qty=qty, aggressor=aggressor, ts_event=ts, ts_recv=ts)


def _fills(reports: list[Any]) -> list[VenueOrderFilled]:
    return [r for r in reports if type(r) is VenueOrderFilled]


def test_it_is_a_venue() -> None:
    assert isinstance(_venue(), Venue)


def test_a_request_stays_in_flight_until_its_latency_has_passed() -> None:
    venue = _venue(latency_ns=5 * MS)
    assert venue.submit(_order("a", Side.BUY, P // 10, limit=101 * P, ts=1_000)) == []
    assert venue.next_arrival == 1_000 + 5 * MS
    assert venue.on_clock(1_000 + 5 * MS - 1) == []
    reports = venue.on_clock(1_000 + 5 * MS)
    assert [type(r) for r in reports] == [VenueOrderAccepted, VenueOrderFilled]
    assert all(r.ts == 1_000 + 5 * MS for r in reports)
    assert venue.next_arrival is None


def test_requests_arrive_in_the_order_they_were_sent_whatever_the_random_latency() -> None:
    venue = _venue(latency=UniformLatency(0, 50 * MS, seed=3))
    for i in range(50):
        venue.submit(_order(f"o{i}", Side.BUY, STEP, price=90 * P, ts=i * MS))
    arrivals = [ts for ts, _ in venue.in_flight]
    assert arrivals == sorted(arrivals)
    assert [r.client_order_id for r in venue.on_clock(10**12) if type(r) is VenueOrderAccepted] == [
        f"o{i}" for i in range(50)
    ]


def test_market_buy_walks_the_levels_and_pays_one_rounded_up_taker_fee() -> None:
    venue = _venue()
    qty = P // 2 + P // 4  # all of 100.01, a quarter unit of 100.02
    venue.submit(_order("m", Side.BUY, qty, limit=101 * P))
    fills = _fills(venue.on_clock(0))
    assert [(f.price, f.qty, f.liquidity) for f in fills] == [
        (10_001 * TICK, P // 2, Liquidity.TAKER),
        (10_002 * TICK, P // 4, Liquidity.TAKER),
    ]
    notionals = [10_001 * TICK // 2, 10_002 * TICK // 4]
    assert sum(f.fee for f in fills) == ceil_div(sum(n * TAKER for n in notionals), SCALE)
    assert fills[-1].leaves_qty == 0
    assert venue.received == {"USDT": sum(notionals), "BTC": -qty}
    assert venue.fees_charged == {"USDT": sum(f.fee for f in fills)}


def test_market_order_stops_at_its_protect_price_and_the_rest_expires() -> None:
    venue = _venue()
    protect = venue.protect_price(Side.BUY, 15_000)  # 0.015 % above the best ask 100.01 -> 100.0251, up to 100.03
    assert protect == 10_003 * TICK
    venue.submit(_order("m", Side.BUY, 2 * P, limit=protect))
    reports = venue.on_clock(0)
    assert [(f.price, f.qty) for f in _fills(reports)] == [(10_001 * TICK, P // 2), (10_002 * TICK, P)]
    assert type(reports[-1]) is VenueOrderExpired and reports[-1].reason is RejectReason.NO_LIQUIDITY


def test_no_protect_price_without_a_book() -> None:
    venue = L2ReplayVenue(_instrument())
    assert venue.protect_price(Side.BUY, 5_000_000) == 0
    assert venue.protect_price(Side.SELL, 5_000_000) == 0


def test_without_a_book_the_last_trade_price_protects_a_market_order() -> None:
    """No snapshot yet, but a recorded trade at 100.00: a market order sent now is protected from it (5 %: a buy up to
    105.00, a sell down to 95.00), as a kernel protects one from the last price it saw; it expires on arrival."""
    venue = L2ReplayVenue(_instrument())
    venue.on_trade(_trade(100 * P, P, Side.BUY))
    assert venue.protect_price(Side.BUY, 5_000_000) == 105 * P
    assert venue.protect_price(Side.SELL, 5_000_000) == 95 * P
    venue.submit(_order("m", Side.BUY, P, limit=105 * P))
    reports = venue.on_clock(0)
    assert _fills(reports) == []
    assert type(reports[-1]) is VenueOrderExpired and reports[-1].reason is RejectReason.NO_LIQUIDITY


def test_market_buy_by_quote_amount_spends_at_most_that_much_with_fees() -> None:
    venue = _venue()
    budget = 60 * P
    venue.submit(_order("q", Side.BUY, 0, limit=101 * P, quote_qty=budget))
    fills = _fills(venue.on_clock(0))
    spent = sum(f.price * f.qty // SCALE + f.fee for f in fills)
    assert spent <= budget
    assert budget - spent < 10_002 * TICK * STEP // SCALE * 2  # not one more step could have been bought
    assert [f.leaves_qty == 0 for f in fills] == [False] * (len(fills) - 1) + [True]


def test_market_buy_by_quote_amount_buys_no_more_than_the_instruments_maximum() -> None:
    venue = L2ReplayVenue(replace(_instrument(), max_qty=P), fees=FeeModel(MAKER, TAKER), latency=ConstantLatency(0))
    venue.apply_depth(_snapshot(((100 * P, P),), ((10_001 * TICK, P // 2), (10_002 * TICK, P))))
    venue.submit(_order("q", Side.BUY, 0, limit=101 * P, quote_qty=1_000 * P))  # the budget would buy 1.5
    fills = _fills(venue.on_clock(0))
    assert [f.qty for f in fills] == [P // 2, P // 2] and fills[-1].leaves_qty == 0


def test_post_only_that_would_cross_expires_and_one_that_does_not_rests() -> None:
    venue = _venue()
    venue.submit(_order("x", Side.BUY, STEP, price=10_001 * TICK, tif=TimeInForce.POST_ONLY))
    venue.submit(_order("y", Side.BUY, STEP, price=100 * P, tif=TimeInForce.POST_ONLY))
    reports = venue.on_clock(0)
    assert [(type(r).__name__, r.client_order_id) for r in reports] == [
        ("VenueOrderAccepted", "x"), ("VenueOrderExpired", "x"), ("VenueOrderAccepted", "y"),
    ]  # fmt: skip
    assert reports[1].reason is RejectReason.WOULD_TAKE_LIQUIDITY
    assert [o.client_order_id for o in venue.resting] == ["y"]


def test_fok_expires_unless_the_book_can_fill_all_of_it_ioc_expires_its_rest() -> None:
    venue = _venue()
    venue.submit(_order("fok", Side.BUY, 2 * P, price=10_002 * TICK, tif=TimeInForce.FOK))  # 1.5 up to 100.02
    venue.submit(_order("ioc", Side.BUY, 2 * P, price=10_002 * TICK, tif=TimeInForce.IOC))
    reports = venue.on_clock(0)
    fok = [r for r in reports if r.client_order_id == "fok"]
    assert [type(r) for r in fok] == [VenueOrderAccepted, VenueOrderExpired]
    assert fok[1].reason is RejectReason.FOK_NOT_FILLABLE
    ioc = [r for r in reports if r.client_order_id == "ioc"]
    assert sum(f.qty for f in _fills(ioc)) == P // 2 + P
    assert type(ioc[-1]) is VenueOrderExpired and ioc[-1].reason is RejectReason.IOC_UNFILLED


def test_resting_bid_fills_only_once_trades_at_its_price_eat_the_queue_ahead() -> None:
    venue = _venue()
    venue.submit(_order("b", Side.BUY, P // 5, price=100 * P))  # joins 1.0 already bid at 100.00
    venue.on_clock(0)
    assert venue.on_trade(_trade(100 * P, 6 * P // 10, Side.SELL)) == []  # 0.4 still ahead
    assert venue.on_trade(_trade(100 * P, P // 2, Side.BUY)) == []  # a buyer never reaches a bid
    fills = venue.on_trade(_trade(100 * P, P // 2, Side.SELL))  # 0.4 ahead, 0.1 reaches us
    assert [(f.price, f.qty, f.liquidity, f.leaves_qty) for f in fills] == [
        (100 * P, P // 10, Liquidity.MAKER, P // 10)
    ]
    assert fills[0].fee == ceil_div(100 * P // 10 * MAKER, SCALE)
    fills = venue.on_trade(_trade(9_999 * TICK, STEP, Side.SELL))  # traded through: the rest of it
    assert [(f.price, f.qty, f.leaves_qty) for f in fills] == [(100 * P, P // 10, 0)]
    assert venue.resting == []


def test_our_earlier_order_at_the_same_price_stands_ahead_of_our_later_one() -> None:
    """Both join behind the recorded 1.0 at 100.00; the queue is then 1.0, a (0.2), b (0.1). A trade of 1.1 eats the
    1.0 and 0.1 of a; a trade of 0.15 then gives a its last 0.1 and b the 0.05 beyond it."""
    venue = _venue()
    venue.submit(_order("a", Side.BUY, P // 5, price=100 * P))
    venue.submit(_order("b", Side.BUY, P // 10, price=100 * P))
    venue.on_clock(0)
    fills = venue.on_trade(_trade(100 * P, 11 * P // 10, Side.SELL, ts=1))
    assert [(f.client_order_id, f.qty) for f in fills] == [("a", P // 10)]
    fills = venue.on_trade(_trade(100 * P, 15 * P // 100, Side.SELL, ts=2))
    assert [(f.client_order_id, f.qty, f.leaves_qty) for f in fills] == [("a", P // 10, 0), ("b", P // 20, P // 20)]


def test_fills_are_whole_steps_when_the_book_and_trades_are_finer_than_the_step() -> None:
    """A symbol whose step VeloZ coarsened (tick x step below 1e-8, as ETHBTC's): the book and the trades keep the
    exchange's finer quantities, and a fill of those had no exact notional (the venue raised). Each fill is rounded
    down to the step; a level or a trade's share below one step fills nothing."""
    tick, step = 10, P // 10  # 0.0000001, 0.1
    venue = L2ReplayVenue(replace(_instrument(), price_tick=tick, qty_step=step, min_qty=step))
    # asks 0.0268380 x 0.0365 (below one step), 0.0268381 x 1.2345, 0.0268390 x 5
    asks = ((268_380 * tick, 3_650_000), (268_381 * tick, 123_450_000), (268_390 * tick, 5 * P))
    venue.apply_depth(_snapshot(((268_370 * tick, 3_650_000),), asks))
    venue.submit(_order("m", Side.BUY, 15 * step, limit=P))
    fills = _fills(venue.on_clock(0))
    assert [(f.price, f.qty) for f in fills] == [(268_381 * tick, 12 * step), (268_390 * tick, 3 * step)]
    venue.submit(_order("b", Side.BUY, 10 * step, price=268_360 * tick))  # no level there: nothing ahead
    venue.on_clock(0)
    fills = venue.on_trade(_trade(268_360 * tick, 23_450_000, Side.SELL))  # 0.2345 reaches it: 0.2 fills
    assert [(f.qty, f.leaves_qty) for f in fills] == [(2 * step, 8 * step)]
    assert venue.on_trade(_trade(268_360 * tick, 9_000_000, Side.SELL, ts=2)) == []  # 0.09: less than a step
    fills = venue.on_trade(_trade(268_350 * tick, 10_000, Side.SELL, ts=3))  # traded through: the rest of it
    assert [(f.qty, f.leaves_qty) for f in fills] == [(8 * step, 0)]
    assert venue.resting == [] and venue.received["BTC"] == -25 * step  # the venue sold 1.5 and 1.0


def test_a_market_buy_by_quote_amount_passes_over_a_level_below_one_step_as_one_by_quantity_does() -> None:
    """A level below one step (a coarsened step) holds nothing to take: a market order by quantity passes over it,
    but one by quote amount stopped there and expired NO_LIQUIDITY with nothing bought, whatever lay behind it."""
    tick, step = 10, P // 10
    venue = L2ReplayVenue(replace(_instrument(), price_tick=tick, qty_step=step, min_qty=step))
    asks = ((268_380 * tick, 3_650_000), (268_381 * tick, 123_450_000))  # 0.0365 (below one step), then 1.2345
    venue.apply_depth(_snapshot(((268_370 * tick, 3_650_000),), asks))
    venue.submit(_order("q", Side.BUY, 0, limit=P, quote_qty=P // 100))  # 0.01: 0.3 at 0.0268381, fee included
    reports = venue.on_clock(0)
    assert [(f.price, f.qty, f.leaves_qty) for f in _fills(reports)] == [(268_381 * tick, 3 * step, 0)]
    assert not any(type(r) is VenueOrderExpired for r in reports)


def test_while_the_book_is_unknown_only_a_gtc_order_rests_and_its_place_in_the_queue_is_unknown() -> None:
    """No snapshot yet: nothing to take from or check a post-only against. A GTC bid rests, a trade at its price
    does not fill it (where it stands in the queue is unknown), and once the book is known it joins the back of its
    level; a trade through its price fills it whenever it comes."""
    venue = L2ReplayVenue(_instrument(), fees=FeeModel(MAKER, TAKER), latency=ConstantLatency(0))
    for cid, tif in (("po", TimeInForce.POST_ONLY), ("ioc", TimeInForce.IOC), ("fok", TimeInForce.FOK)):
        venue.submit(_order(cid, Side.BUY, P // 5, price=100 * P, tif=tif))
    venue.submit(_order("gtc", Side.BUY, P // 5, price=100 * P))
    venue.submit(_order("other", Side.BUY, P // 5, price=99 * P))
    reports = venue.on_clock(0)
    expired = [(r.client_order_id, r.reason) for r in reports if type(r) is VenueOrderExpired]
    assert expired == [(cid, RejectReason.NO_LIQUIDITY) for cid in ("po", "ioc", "fok")]
    assert [o.client_order_id for o in venue.resting] == ["gtc", "other"]
    assert venue.on_trade(_trade(100 * P, 5 * P, Side.SELL)) == []  # at its price: the queue ahead is unknown
    fills = venue.on_trade(_trade(9_950 * TICK, STEP, Side.SELL))  # through its price: all of it
    assert [(f.client_order_id, f.price, f.qty, f.liquidity) for f in fills] == [
        ("gtc", 100 * P, P // 5, Liquidity.MAKER)
    ]
    venue.apply_depth(_snapshot(((99 * P, P),), ((10_001 * TICK, P),)))  # known: 1.0 bid at 99.00 is ahead of "other"
    assert venue.on_trade(_trade(99 * P, 9 * P // 10, Side.SELL)) == []
    assert [f.qty for f in venue.on_trade(_trade(99 * P, P // 5, Side.SELL))] == [P // 10]


def _diff(bids: tuple[tuple[int, int], ...], update_id: int) -> BookDelta:
    return BookDelta(
        symbol="BTCUSDT", first_update_id=update_id, last_update_id=update_id, bids=bids, asks=(), ts_event=update_id,
        ts_recv=update_id,
    )  # fmt: skip


def test_a_crossed_recorded_book_is_not_traded_against_until_it_uncrosses() -> None:
    """A diff puts a bid of 1.0 at 100.05, above the asks 100.01 and 100.02: a book no exchange holds. Taking from it
    would buy 0.5 at 100.01 and sell 1.0 at 100.05 at once (free money from a wrong capture). So orders see it as
    an unknown book: a market order expires, a GTC bid waits, and joins once a diff uncrosses the book."""
    venue = _venue()
    assert venue.apply_depth(_diff(((10_005 * TICK, P),), 11))
    assert venue.crossed_updates == 1 and venue.protect_price(Side.BUY, 0) == 0 == venue.mark()
    venue.submit(_order("mb", Side.BUY, P, limit=101 * P, ts=11))
    venue.submit(_order("ms", Side.SELL, P, limit=99 * P, ts=11))
    venue.submit(_order("gtc", Side.BUY, P, price=10_002 * TICK, ts=11))
    reports = venue.on_clock(11)
    assert _fills(reports) == []
    assert [(r.client_order_id, r.reason) for r in reports if type(r) is VenueOrderExpired] == [
        ("mb", RejectReason.NO_LIQUIDITY),
        ("ms", RejectReason.NO_LIQUIDITY),
    ]
    assert venue.apply_depth(_diff(((10_005 * TICK, 0),), 12))  # uncrossed: the bid waiting takes the asks
    assert [(f.price, f.qty, f.liquidity) for f in _fills(venue.take_joined())] == [
        (10_001 * TICK, P // 2, Liquidity.TAKER),
        (10_002 * TICK, P // 2, Liquidity.TAKER),
    ]
    assert venue.crossed_updates == 1


@pytest.mark.parametrize("through", ["on_market", "apply_depth"])
def test_an_order_that_waited_for_the_book_and_crosses_it_takes_liquidity_when_the_book_is_known(through: str) -> None:
    """A GTC buy above the ask that came while the book was unknown: once the book is known it is worked as if it
    arrived then, taking the asks up to its price at their prices as a taker, and what is left joins its level. (Before,
    it rested as a maker at its own price above the ask.)"""
    venue = L2ReplayVenue(_instrument(), fees=FeeModel(MAKER, TAKER), latency=ConstantLatency(0))
    venue.submit(_order("x", Side.BUY, P, price=10_002 * TICK))
    venue.submit(_order("below", Side.BUY, P // 5, price=99 * P))  # does not cross: simply joins its level
    assert [type(r) for r in venue.on_clock(0)] == [VenueOrderAccepted, VenueOrderAccepted]
    snapshot = _snapshot(((99 * P, P),), ((10_001 * TICK, P // 2), (10_002 * TICK, P // 4), (10_003 * TICK, P)))
    if through == "on_market":
        reports = venue.on_market(snapshot)
    else:
        assert venue.apply_depth(snapshot)
        reports = venue.take_joined()
    assert venue.take_joined() == []  # taken once
    assert [(f.client_order_id, f.price, f.qty, f.liquidity, f.leaves_qty) for f in _fills(reports)] == [
        ("x", 10_001 * TICK, P // 2, Liquidity.TAKER, P // 2),
        ("x", 10_002 * TICK, P // 4, Liquidity.TAKER, P // 4),
    ]
    notional = (10_001 * TICK * (P // 2) + 10_002 * TICK * (P // 4)) // SCALE
    assert sum(f.fee for f in _fills(reports)) == -(-notional * TAKER // SCALE)  # the taker rate on both fills
    assert [(o.client_order_id, o.queue_known, o.queue_ahead) for o in venue.resting] == [
        ("x", True, 0),
        ("below", True, P),
    ]
    # the rest of "x" rests at 100.02 as a maker, first at its (empty) level
    fills = venue.on_trade(_trade(10_002 * TICK, P, Side.SELL))
    assert [(f.client_order_id, f.price, f.qty, f.liquidity) for f in fills] == [
        ("x", 10_002 * TICK, P // 4, Liquidity.MAKER)
    ]


def test_a_level_that_shrinks_moves_the_order_up_the_queue() -> None:
    venue = _venue()
    venue.submit(_order("b", Side.BUY, P // 5, price=100 * P))
    venue.on_clock(0)
    venue.apply_depth(_snapshot(((100 * P, P // 10),), ((10_001 * TICK, P),), update_id=11))  # cancels ahead of us
    fills = venue.on_trade(_trade(100 * P, P // 4, Side.SELL))
    assert [f.qty for f in fills] == [P // 4 - P // 10]


def test_cancel_takes_effect_on_arrival_and_one_after_the_order_closed_is_rejected() -> None:
    venue = _venue(latency_ns=MS)
    venue.submit(_order("b", Side.BUY, STEP, price=90 * P, ts=0))
    venue.cancel(SubmitCancel(client_order_id="b", account_id="main", symbol="BTCUSDT", ts=10))
    venue.cancel(SubmitCancel(client_order_id="b", account_id="main", symbol="BTCUSDT", ts=20))
    reports = venue.on_clock(10 * MS)
    assert [type(r) for r in reports] == [VenueOrderAccepted, VenueOrderCancelled, VenueCancelRejected]
    assert [r.ts for r in reports] == [MS, 10 + MS, 20 + MS]
    assert reports[2].reason is RejectReason.ORDER_NOT_OPEN
    assert venue.cancels_too_late == 1 and venue.resting == []


def test_an_order_for_another_symbol_is_rejected_at_once() -> None:
    venue = _venue(latency_ns=MS)
    reports = venue.submit(_order("e", Side.BUY, STEP, price=P, symbol="ETHUSDT"))
    assert [r.reason for r in reports] == [RejectReason.UNKNOWN_SYMBOL]


def test_the_kernel_books_exactly_what_the_venue_reports() -> None:
    venue = _venue(latency_ns=MS)
    kernel = TradingKernel(
        KernelConfig(instruments=(_instrument(),), balances={"main": {"USDT": 1_000 * P, "BTC": P}},
                     risk=RiskLimits(price_band=0), valuation_asset="USDT")
    )  # fmt: skip
    commands = [
        PlaceOrder(client_order_id="m", symbol="BTCUSDT", side=Side.BUY, order_type=OrderType.MARKET, qty=P,
                   protect_price=venue.protect_price(Side.BUY, 5_000_000), ts=0),
        PlaceOrder(client_order_id="s", symbol="BTCUSDT", side=Side.SELL, order_type=OrderType.LIMIT, qty=P // 2,
                   price=10_001 * TICK, ts=0),
    ]  # fmt: skip
    for command in commands:
        kernel.apply(command)
        for request in kernel.take_outbox():
            assert venue.submit(request) == []
    assert {o.client_order_id: o.status for o in kernel.oms.open_orders()} == {
        "m": OrderStatus.SUBMITTED, "s": OrderStatus.SUBMITTED,
    }  # fmt: skip
    reports = venue.on_clock(MS) + venue.on_trade(_trade(10_002 * TICK, P, Side.BUY, ts=2 * MS))
    for report in reports:
        kernel.apply(report)
    assert kernel.oms.get("main", "m").status is OrderStatus.FILLED
    assert kernel.oms.get("main", "s").status is OrderStatus.FILLED
    ledger = kernel.ledger
    assert ledger.conserved()
    assert {a: v for a, v in ledger.counterparty.items() if v} == {a: v for a, v in venue.received.items() if v}
    assert ledger.fees_collected == venue.fees_charged
    assert ledger.locked("main", "USDT") == 0 and ledger.locked("main", "BTC") == 0
