"""Risk: every pre-trade check with its reason code, the token bucket, the circuit breaker and the stop-loss."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from veloz_actors.core.risk import RiskEngine, RiskLimits, TokenBucket
from veloz_actors.messages import (
    CircuitBreakerTripped,
    Error,
    OrderAccepted,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    PlaceOrder,
    RejectReason,
    ResetCircuitBreaker,
    Side,
)
from veloz_actors.testing import d, engine_config, place, trade
from veloz_actors.venues.engine import Engine

SECOND = 1_000_000_000


def _engine(risk: RiskLimits, balances: dict[str, dict[str, int]] | None = None) -> Engine:
    return Engine(engine_config(risk=risk, balances=balances))


def _reason(events: list[Any]) -> RejectReason | None:
    rejected = [e for e in events if type(e) is OrderRejected]
    return rejected[0].reason if rejected else None


R = RejectReason
PRE_TRADE = [
    ("unknown-symbol", RiskLimits(), place("c", "BUY", "1", "100", symbol="DOGEUSDT"), R.UNKNOWN_SYMBOL),
    ("limit-without-price", RiskLimits(), replace(place("c", "BUY", "1", "100"), price=None),
     R.INVALID_PRICE),
    ("market-with-price", RiskLimits(), replace(place("c", "BUY", "1", None), price=d("100")), R.INVALID_PRICE),
    ("zero-price", RiskLimits(), place("c", "BUY", "1", "0"), R.INVALID_PRICE),
    ("off-tick", RiskLimits(), place("c", "BUY", "1", "100.001"), R.PRICE_NOT_ON_TICK),
    ("zero-qty", RiskLimits(), place("c", "BUY", "0", "100"), R.INVALID_QUANTITY),
    ("off-step", RiskLimits(), place("c", "BUY", "0.000001", "100"), R.QUANTITY_NOT_ON_STEP),
    ("instrument-max-qty", RiskLimits(), place("c", "SELL", "9000.1", "100"), R.MAX_ORDER_QUANTITY),
    ("min-notional", RiskLimits(), place("c", "BUY", "0.09", "100"), R.NOTIONAL_BELOW_MINIMUM),
    ("quote-qty-on-limit", RiskLimits(), replace(place("c", "BUY", "1", "100"), quote_qty=d("10")),
     R.INVALID_QUANTITY),
    ("quote-qty-on-sell", RiskLimits(), place("c", "SELL", None, None, quote_qty="10"), R.INVALID_QUANTITY),
    # Binance's NOTIONAL filter holds a market buy's quote amount to min_notional (10 USDT here), as the live venue
    # checks before it sends one: the simulated venue filled this one (semantics 5 or less)
    ("min-notional-by-quote", RiskLimits(), place("c", "BUY", None, None, quote_qty="9.99999999"),
     R.NOTIONAL_BELOW_MINIMUM),
    ("risk-max-qty", RiskLimits(max_order_qty={"BTCUSDT": d("0.5")}), place("c", "BUY", "0.6", "100"),
     R.MAX_ORDER_QUANTITY),
    ("max-notional", RiskLimits(max_order_notional=d("50")), place("c", "BUY", "0.6", "100"), R.MAX_ORDER_NOTIONAL),
    ("price-band", RiskLimits(), place("c", "BUY", "1", "105.01"), R.PRICE_BAND),
    ("max-position", RiskLimits(max_position={"BTCUSDT": d("1")}), place("c", "BUY", "1.1", "100"), R.MAX_POSITION),
    # an order by quote amount: the quantity it may buy at the low end of the band around the kernel's own price
    # (100 -> 95), whatever protect price its sender gave it
    ("risk-max-qty-by-quote", RiskLimits(max_order_qty={"BTCUSDT": d("0.5")}),
     place("c", "BUY", None, None, quote_qty="50"), R.MAX_ORDER_QUANTITY),
    ("risk-max-qty-by-quote-protected", RiskLimits(max_order_qty={"BTCUSDT": d("0.5")}),
     replace(place("c", "BUY", None, None, quote_qty="50"), protect_price=d("1000")), R.MAX_ORDER_QUANTITY),
    ("max-position-by-quote-protected", RiskLimits(max_position={"BTCUSDT": d("1")}),
     replace(place("c", "BUY", None, None, quote_qty="100"), protect_price=d("100000")), R.MAX_POSITION),
    ("max-leverage", RiskLimits(max_leverage=d("1")), place("c", "BUY", "1003", "100"), R.MAX_LEVERAGE),
    ("funds", RiskLimits(), place("c", "BUY", "1000", "100"), R.INSUFFICIENT_FUNDS),
]  # fmt: skip


@pytest.mark.parametrize(("limits", "order", "reason"), [p[1:] for p in PRE_TRADE], ids=[p[0] for p in PRE_TRADE])
def test_pre_trade_check_rejects_with_its_reason(limits: RiskLimits, order: PlaceOrder, reason: RejectReason) -> None:
    engine = _engine(limits)
    engine.apply(trade("100"))
    before = engine.ledger.export()
    assert _reason(engine.apply(order)) is reason
    assert engine.ledger.export() == before


def test_market_order_without_any_reference_is_rejected() -> None:
    assert _reason(_engine(RiskLimits()).apply(place("c", "BUY", "1", None))) is R.NO_REFERENCE_PRICE


def test_max_position_counts_open_orders_on_the_same_side() -> None:
    engine = _engine(RiskLimits(max_position={"BTCUSDT": d("1")}))
    engine.apply(trade("100"))
    assert _reason(engine.apply(place("a", "BUY", "0.6", "100"))) is None
    assert _reason(engine.apply(place("b", "BUY", "0.6", "100"))) is R.MAX_POSITION


def test_exempt_account_skips_the_limits() -> None:
    engine = _engine(RiskLimits(max_order_notional=d("50"), exempt_accounts=frozenset({"other"})))
    engine.apply(trade("100"))
    assert _reason(engine.apply(place("c", "BUY", "0.6", "100", account="other"))) is None


# ------------------------------------------------------------------------------------------------------- rate limit


def test_token_bucket_allows_the_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=1, burst=2, ts=0)
    assert [bucket.take(0) for _ in range(3)] == [True, True, False]


def test_token_bucket_refills_with_message_time_only() -> None:
    bucket = TokenBucket(rate=2, burst=2, ts=0)
    bucket.take(0), bucket.take(0)
    assert not bucket.take(SECOND // 2 - 1)
    assert bucket.take(SECOND // 2)


def test_token_bucket_never_stores_more_than_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=2, ts=0)
    assert [bucket.take(100 * SECOND) for _ in range(3)] == [True, True, False]


def test_rate_limit_rejects_orders_beyond_the_bucket() -> None:
    engine = _engine(RiskLimits(orders_per_second=1, burst=2))
    t = 1_000 * SECOND
    reasons = [_reason(engine.apply(place(f"c{i}", "BUY", "0.1", "100", ts=t))) for i in range(3)]
    assert reasons == [None, None, R.RATE_LIMIT]
    assert _reason(engine.apply(place("later", "BUY", "0.1", "100", ts=t + SECOND))) is None


# -------------------------------------------------------------------------------------------------- circuit breaker

BREAKER = RiskLimits(max_drawdown=d("0.2"), price_band=d("0.5"))
BALANCES = {"main": {"USDT": d("1000")}, "other": {"BTC": d("10"), "USDT": d("1000")}}


def _after_drawdown() -> tuple[Engine, list[Any]]:
    """main buys 5 BTC at 100, then the market falls to 50: equity 999.5 -> 749.5, a 25 % drawdown."""
    engine = _engine(BREAKER, BALANCES)
    engine.apply(trade("100"))
    engine.apply(place("ask", "SELL", "5", "100", account="other"))
    engine.apply(place("bid", "BUY", "5", "100"))
    return engine, engine.apply(trade("50", ts=2))


def test_breaker_trips_on_drawdown() -> None:
    _, events = _after_drawdown()
    [tripped] = [e for e in events if type(e) is CircuitBreakerTripped]
    assert (tripped.account_id, tripped.equity, tripped.peak_equity) == ("main", d("749.5"), d("1000"))


def test_breaker_does_not_trip_twice() -> None:
    engine, _ = _after_drawdown()
    assert not [e for e in engine.apply(trade("40", ts=3)) if type(e) is CircuitBreakerTripped]


def test_breaker_halts_risk_increasing_orders() -> None:
    engine, _ = _after_drawdown()
    assert _reason(engine.apply(place("more", "BUY", "0.5", "50", ts=3))) is R.CIRCUIT_BREAKER


def test_breaker_lets_risk_reducing_orders_through() -> None:
    engine, _ = _after_drawdown()
    assert _reason(engine.apply(place("less", "SELL", "1", "50", ts=3))) is None


def test_breaker_only_halts_the_account_that_lost() -> None:
    engine, _ = _after_drawdown()
    assert _reason(engine.apply(place("x", "BUY", "0.5", "50", account="other", ts=3))) is None


def test_reset_re_arms_trading() -> None:
    engine, _ = _after_drawdown()
    engine.apply(ResetCircuitBreaker(account_id="main", ts=3))
    assert _reason(engine.apply(place("more", "BUY", "0.5", "50", ts=4))) is None
    assert engine.risk.tripped == {}


def test_max_loss_trips_the_breaker() -> None:
    engine = _engine(RiskLimits(max_loss=d("100"), price_band=d("0.5")), BALANCES)
    engine.apply(trade("100"))
    engine.apply(place("ask", "SELL", "5", "100", account="other"))
    engine.apply(place("bid", "BUY", "5", "100"))
    assert not [e for e in engine.apply(trade("81", ts=2)) if type(e) is CircuitBreakerTripped]
    assert [e for e in engine.apply(trade("79", ts=3)) if type(e) is CircuitBreakerTripped]


def test_post_trade_tracks_the_peak() -> None:
    risk = RiskEngine(RiskLimits(max_drawdown=d("0.1")))
    assert risk.post_trade("a", 100) is None
    assert risk.post_trade("a", 200) is None
    assert risk.post_trade("a", 181) is None
    assert risk.post_trade("a", 179) is not None


# -------------------------------------------------------------------------------------------------------- stop-loss


def test_stop_hit_below_entry_for_a_long_above_for_a_short() -> None:
    risk = RiskEngine(RiskLimits(stop_loss=d("0.1")))
    assert not risk.stop_hit(1, d("100"), d("90"))
    assert risk.stop_hit(1, d("100"), d("89.99"))
    assert risk.stop_hit(-1, d("100"), d("110.01"))
    assert not risk.stop_hit(0, d("100"), d("1"))


def test_stop_loss_closes_a_long_position() -> None:
    engine = _engine(RiskLimits(stop_loss=d("0.1"), price_band=d("0.2")), BALANCES)
    engine.apply(trade("100"))
    engine.apply(place("ask", "SELL", "5", "100", account="other"))
    engine.apply(place("bid", "BUY", "5", "100"))
    engine.apply(place("support", "BUY", "5", "85", account="other"))
    events = engine.apply(trade("89", ts=2))
    fills = [e for e in events if type(e) is OrderFilled and e.account_id == "main"]
    assert [(f.side, f.price, f.qty) for f in fills] == [(Side.SELL, d("85"), d("5"))]
    assert engine.ledger.positions[("main", "BTCUSDT")].qty == 0
    stop = [o for o in engine.oms.orders(account_id="main") if o.client_order_id.startswith("stop-")]
    assert [o.status for o in stop] == [OrderStatus.FILLED]


def test_an_order_by_quote_amount_is_not_valued_at_its_own_protect_price_when_the_kernel_has_no_price() -> None:
    engine = _engine(RiskLimits(max_order_qty={"BTCUSDT": d("0.5")}))
    order = replace(place("c", "BUY", None, None, quote_qty="50"), protect_price=d("100000"))
    assert _reason(engine.apply(order)) is R.NO_REFERENCE_PRICE


def test_an_order_by_quote_amount_within_the_limits_goes() -> None:
    engine = _engine(RiskLimits(max_order_qty={"BTCUSDT": d("0.5")}, max_position={"BTCUSDT": d("0.5")}))
    engine.apply(trade("100"))
    assert _reason(engine.apply(place("c", "BUY", None, None, quote_qty="47"))) is None  # 47 / 95 < 0.5


def test_an_order_by_quote_amount_of_the_minimum_notional_goes_and_journals_of_semantics_5_took_less() -> None:
    engine = _engine(RiskLimits())
    engine.apply(trade("100"))
    engine.apply(place("ask", "SELL", "1", "100", account="other"))
    assert _reason(engine.apply(place("c", "BUY", None, None, quote_qty="10"))) is None
    old = _engine(RiskLimits())
    old.use_semantics(5)  # a journal written before: its quote orders below the minimum were decided as accepted
    old.apply(trade("100"))
    old.apply(place("ask", "SELL", "1", "100", account="other"))
    events = old.apply(place("c", "BUY", None, None, quote_qty="5"))
    assert _reason(events) is None and [e.qty for e in events if type(e) is OrderFilled] == [d("0.04995")] * 2


def test_a_stop_loss_never_buys() -> None:
    """Spot sells only what it holds: a negative position is a coin held before and sold, not a short to cover, so a
    mark far above its price places nothing (before, an unchecked market BUY past every limit, one per mark when it
    could not be paid)."""
    engine = _engine(RiskLimits(stop_loss=d("0.01"), price_band=d("0.2")),
                     {"main": {"USDT": d("1000"), "BTC": d("1")}, "other": {"BTC": d("10"), "USDT": d("1000")}})  # fmt: skip
    engine.apply(trade("100"))
    engine.apply(place("bid", "BUY", "1", "100", account="other"))
    engine.apply(place("s1", "SELL", "1", "100"))  # sells the deposited coin: a position of -1
    assert engine.ledger.positions[("main", "BTCUSDT")].qty == -d("1")
    engine.apply(place("ask", "SELL", "2", "102", account="other"))  # what a buy would take
    for i in range(5):
        events = engine.apply(trade("110", ts=2 + i * SECOND))  # 10 % above the sale: no stop-loss
        assert not [e for e in events if type(e) in (OrderAccepted, OrderRejected, OrderFilled)]
    assert [o.client_order_id for o in engine.oms.orders(account_id="main")] == ["s1"]
    assert engine.ledger.positions[("main", "BTCUSDT")].qty == -d("1")


def test_a_stop_loss_cancels_the_resting_sell_that_locks_the_base_then_sells() -> None:
    """A take-profit SELL resting at 110 locks the whole long: the stop-loss cancels it, and sells on the next mark
    (before: no order and no word while the loss grew)."""
    engine = _engine(RiskLimits(stop_loss=d("0.02"), price_band=d("0.5")), BALANCES)
    engine.apply(trade("100"))
    engine.apply(place("ask", "SELL", "1", "100", account="other"))
    engine.apply(place("bid", "BUY", "1", "100"))
    engine.apply(place("tp", "SELL", "1", "110"))
    assert engine.ledger.free("main", "BTC") == 0 and engine.ledger.locked("main", "BTC") == d("1")
    engine.apply(place("support", "BUY", "5", "80", account="other"))
    events = engine.apply(trade("97", ts=2))  # 3 % below the entry
    assert [e.message for e in events if type(e) is Error] == [
        "main BTCUSDT: stop-loss cancels 1 resting sell order(s) holding the position's base (tp)"
    ]
    assert engine.oms.get("main", "tp").status is OrderStatus.CANCELLED
    assert engine.ledger.free("main", "BTC") == d("1")
    events = engine.apply(trade("96", ts=3))
    fills = [(e.side, e.price, e.qty) for e in events if type(e) is OrderFilled and e.account_id == "main"]
    assert fills == [(Side.SELL, d("80"), d("1"))]
    assert engine.ledger.positions[("main", "BTCUSDT")].qty == 0


def test_the_traders_orders_named_like_a_stop_neither_block_nor_take_the_kernels_stop_loss() -> None:
    """Before: an open order whose id began "stop-BTCUSDT-" counted as the working stop (no stop-loss ever), and one
    with the very id the kernel chose made its stop a duplicate."""
    engine = _engine(RiskLimits(stop_loss=d("0.02"), price_band=d("0.5")), BALANCES)
    engine.apply(trade("100"))
    engine.apply(place("ask", "SELL", "1", "100", account="other"))
    engine.apply(place("bid", "BUY", "1", "100"))
    engine.apply(place("stop-BTCUSDT-1", "BUY", "0.2", "60"))  # the trader's own resting orders
    engine.apply(place("stop-BTCUSDT-x", "BUY", "0.2", "60"))
    engine.apply(place("support", "BUY", "5", "80", account="other"))
    events = engine.apply(trade("97", ts=2))
    fills = [(e.client_order_id, e.side, e.qty) for e in events if type(e) is OrderFilled and e.account_id == "main"]
    assert fills == [("stop-BTCUSDT-2", Side.SELL, d("1"))]
    assert engine.ledger.positions[("main", "BTCUSDT")].qty == 0
    assert {o.client_order_id for o in engine.oms.open_orders("main")} == {"stop-BTCUSDT-1", "stop-BTCUSDT-x"}


def test_a_stop_loss_that_cannot_fill_is_sent_again_at_most_once_a_second() -> None:
    """No bid to sell into: the stop's market order expires; the marks that follow within a second send no other
    (before: one order per mark, each kept in memory and the journal)."""
    engine = _engine(RiskLimits(stop_loss=d("0.02"), price_band=d("0.5")), BALANCES)
    engine.apply(trade("100"))
    engine.apply(place("ask", "SELL", "1", "100", account="other"))
    engine.apply(place("bid", "BUY", "1", "100"))
    for i in range(20):
        engine.apply(trade(str(97 - i % 3), ts=2 + i * 1_000_000))  # 20 marks within 20 ms
    stops = [o for o in engine.oms.orders(account_id="main") if o.client_order_id.startswith("stop-")]
    assert [o.status for o in stops] == [OrderStatus.EXPIRED]
    engine.apply(trade("96", ts=2 + SECOND))
    stops = [o for o in engine.oms.orders(account_id="main") if o.client_order_id.startswith("stop-")]
    assert len(stops) == 2


def test_breaker_lets_the_account_sell_deposited_base() -> None:
    """A spot SELL of base that was deposited (not bought here) reduces risk: the halted account may still sell it."""
    engine = _engine(BREAKER, {"main": {"USDT": d("100"), "BTC": d("9")}, "other": {"USDT": d("1000")}})
    engine.apply(trade("100"))
    tripped = [e for e in engine.apply(trade("50", ts=2)) if type(e) is CircuitBreakerTripped]
    assert tripped and engine.ledger.positions.get(("main", "BTCUSDT")) is None
    assert _reason(engine.apply(place("buy", "BUY", "0.5", "50", ts=3))) is R.CIRCUIT_BREAKER
    assert _reason(engine.apply(place("sell", "SELL", "9", "50", ts=4))) is None


def test_market_lot_size_and_notional_flags_reach_the_pre_trade_check() -> None:
    from veloz_actors.testing import btcusdt

    inst = btcusdt(market_max_qty=d("2"), min_notional_market=False)
    risk = RiskEngine(RiskLimits())

    def check(order: PlaceOrder) -> RejectReason | None:
        found = risk.pre_trade(order, inst, reference_price=d("100"), position_qty=0, open_qty_same_side=0,
                               gross_exposure=0, equity=d("1000000"))  # fmt: skip
        return found[0] if found else None

    assert check(place("m", "BUY", "2.1", None)) is R.MAX_ORDER_QUANTITY  # MARKET_LOT_SIZE maxQty
    assert check(place("l", "BUY", "2.1", "100")) is None  # a limit order is bound by LOT_SIZE only
    assert check(place("m", "BUY", "0.01", None)) is None  # notional 1 < 10, but applyMinToMarket is false
    assert check(place("l", "BUY", "0.01", "100")) is R.NOTIONAL_BELOW_MINIMUM
