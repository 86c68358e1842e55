"""The L2 backtest on a real Binance spot capture: book walks, queue position, latency, fees, money, determinism.

Every expectation is computed here independently, from the capture and a fresh :class:`L2Book`, never from the
backtest's own code.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from veloz_actors import InvalidInput
from veloz_actors.backtest.fill_models import ConservativeQueue, FeeModel, FixedSlippage
from veloz_actors.backtest.l2 import (
    L2Settings,
    is_tick_capture,
    run_l2_backtest,
    write_trades_csv,
)
from veloz_actors.core.instruments import ceil_div
from veloz_actors.core.l2book import L2Book
from veloz_actors.data.loaders import load_market_events
from veloz_actors.fixed import SCALE
from veloz_actors.messages import (
    BookDelta,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    TimeInForce,
    Trade,
)
from veloz_actors.strategies.base import Strategy
from veloz_actors.strategies.l2_strategies import L2_STRATEGIES, make_l2_strategy

CAPTURE = "ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"
CASH = 1_000_000 * SCALE


@pytest.fixture(scope="module")
def events(shared_data: Any) -> list[Any]:
    return load_market_events(shared_data / CAPTURE)


@pytest.fixture(scope="module")
def settings(events: list[Any]) -> L2Settings:
    return L2Settings.for_events(events, initial_cash=CASH)


def _diff_index(events: list[Any], nth: int) -> int:
    """Index of the ``nth`` depth diff after the snapshot."""
    snapshot = next(i for i, e in enumerate(events) if type(e) is BookDelta and e.is_snapshot)
    seen = 0
    for i in range(snapshot + 1, len(events)):
        e = events[i]
        if type(e) is BookDelta and e.last_update_id > events[snapshot].last_update_id:
            seen += 1
            if seen == nth:
                return i
    raise AssertionError("capture too short")


def _book_after(events: list[Any], last_index: int) -> L2Book:
    book = L2Book(events[0].symbol)
    for e in events[: last_index + 1]:
        if type(e) is BookDelta:
            if e.is_snapshot:
                book.apply_snapshot(e)
            else:
                book.apply(e)
    return book


def _walk(levels: tuple[tuple[int, int], ...], qty: int) -> list[tuple[int, int]]:
    fills = []
    for price, level_qty in levels:
        take = min(qty, level_qty)
        fills.append((price, take))
        qty -= take
        if qty == 0:
            return fills
    raise AssertionError("book too thin")


class Scripted(Strategy):
    """Sends ``orders`` (place_order kwargs) on the book update with ``update_id``; records every order event."""

    def __init__(self, update_id: int, orders: list[dict[str, Any]], cancel_after_ns: int | None = None) -> None:
        self.update_id = update_id
        self.orders = orders
        self.cancel_after_ns = cancel_after_ns
        self.events: list[Any] = []
        self.sent_at = 0
        self.cids: list[str] = []

    def on_book(self, book: Any) -> None:
        if book.last_update_id == self.update_id and not self.cids:
            self.sent_at = self.ctx.now()
            self.cids = [self.ctx.place_order(self.ctx.symbol, **o) for o in self.orders]
        elif self.cids and self.cancel_after_ns is not None and self.ctx.now() >= self.sent_at + self.cancel_after_ns:
            self.cancel_after_ns = None
            for cid in self.cids:
                self.ctx.cancel_order(cid)

    def on_order_event(self, event: Any) -> None:
        self.events.append(event)

    def fills(self) -> list[OrderFilled]:
        return [e for e in self.events if type(e) is OrderFilled]


# ---------------------------------------------------------------------------------------------------- market orders


def test_market_buy_fills_at_the_vwap_of_the_recorded_levels_it_walks(events, settings) -> None:
    i = _diff_index(events, 400)
    asks = _book_after(events, i).depth(10)[1]
    qty = sum(q for _, q in asks[:3]) + asks[3][1] // 2 // settings.qty_step * settings.qty_step
    expected = _walk(asks, qty)
    assert len(expected) == 4

    strategy = Scripted(events[i].last_update_id, [{"side": Side.BUY, "qty": qty}])
    result = run_l2_backtest(events, strategy, settings)

    fills = strategy.fills()
    assert [(f.price, f.qty) for f in fills] == expected
    assert all(f.ts == events[i].ts_recv for f in fills)
    vwap = Fraction(sum(f.price * f.qty for f in fills), sum(f.qty for f in fills))
    assert vwap == Fraction(sum(p * q for p, q in expected), qty)
    assert result.trades["price"].tolist() == [p for p, _ in expected]


def test_market_order_remainder_beyond_the_protect_price_expires(events, settings) -> None:
    i = _diff_index(events, 400)
    asks = _book_after(events, i).depth(5000)[1]
    protect = ceil_div(asks[0][0] * (SCALE + 100_000), SCALE * settings.price_tick) * settings.price_tick  # 0.1 %
    within = sum(q for p, q in asks if p <= protect)
    tight = L2Settings.for_events(events, initial_cash=100 * CASH, market_protect_rate=100_000)
    strategy = Scripted(events[i].last_update_id, [{"side": Side.BUY, "qty": within + 10 * SCALE}])
    run_l2_backtest(events, strategy, tight)

    assert sum(f.qty for f in strategy.fills()) == within
    assert max(f.price for f in strategy.fills()) <= protect
    expired = [e for e in strategy.events if type(e) is OrderExpired]
    assert [(e.reason, e.filled_qty) for e in expired] == [(RejectReason.NO_LIQUIDITY, within)]


def test_slippage_moves_each_market_fill_against_the_trader(events, settings) -> None:
    i = _diff_index(events, 400)
    bids = _book_after(events, i).depth(10)[0]
    qty = bids[0][1] + bids[1][1]
    slipped = L2Settings.for_events(events, initial_base=10 * SCALE, slippage_rate=20_000)  # 2 bp
    strategy = Scripted(events[i].last_update_id, [{"side": Side.SELL, "qty": qty}])
    run_l2_backtest(events, strategy, slipped)
    tick = settings.price_tick
    assert [(f.price, f.qty) for f in strategy.fills()] == [
        (p * (SCALE - 20_000) // (SCALE * tick) * tick, q) for p, q in _walk(bids, qty)
    ]
    assert FixedSlippage(20_000).adjust(False, bids[0][0], tick) == strategy.fills()[0].price


# ----------------------------------------------------------------------------------------------------- queue model


def _queue_case(events: list[Any], qty: int) -> dict[str, Any]:
    """A bid joined at the best price on some diff, which the data fill through its queue (not through the price)
    after at least one recorded trade at that price too small to reach it. Found by an independent replay."""
    book = L2Book(events[0].symbol)
    candidates: list[dict[str, Any]] = []
    diffs = 0
    for j, e in enumerate(events):
        if type(e) is BookDelta:
            if e.is_snapshot:
                book.apply_snapshot(e)
                continue
            if not book.apply(e):
                continue
            for c in candidates:
                c["queue"] = min(c["queue"], book.level_qty(Side.BUY, c["price"]))
            diffs += 1
            if diffs % 7 == 0 and len(candidates) < 200:
                price, level = book.best_bid()
                candidates.append(
                    {"index": j, "update_id": e.last_update_id, "price": price, "queue": level, "small": []}
                )
        elif type(e) is Trade and e.aggressor is Side.SELL:
            for c in list(candidates):
                if e.price < c["price"]:
                    candidates.remove(c)  # traded through: not the case we want
                elif e.price == c["price"]:
                    if e.qty > c["queue"]:
                        if c["small"]:
                            c.update(fill_index=j, fill_qty=min(e.qty - c["queue"], qty))
                            return c
                        candidates.remove(c)
                    else:
                        c["queue"] -= e.qty
                        c["small"].append(j)
    raise AssertionError("no queue case in the capture")


def test_resting_bid_fills_only_once_trades_at_its_price_exceed_the_queue_ahead(events, settings) -> None:
    qty = 10_000  # 0.0001 BTC
    case = _queue_case(events, qty)
    order = {"side": Side.BUY, "qty": qty, "price": case["price"], "order_type": OrderType.LIMIT}
    strategy = Scripted(case["update_id"], [order])
    run_l2_backtest(events, strategy, settings)

    fills = strategy.fills()
    fill_ts = events[case["fill_index"]].ts_recv
    assert fills, "the order must fill"
    # trades at its price before the fill were smaller than the queue ahead: none of them filled it
    assert all(events[j].ts_recv < fill_ts for j in case["small"])
    assert fills[0].ts == fill_ts
    assert fills[0].qty == case["fill_qty"]
    assert fills[0].price == case["price"]
    assert all(f.liquidity.value == "MAKER" for f in fills)


def test_conservative_queue_rules() -> None:
    q = ConservativeQueue()
    assert q.on_arrival(500) == 500
    assert q.on_trade(500, 200) == (300, 0)
    assert q.on_trade(300, 300) == (0, 0)
    assert q.on_trade(300, 450) == (0, 150)
    assert q.on_level(300, 120) == 120  # cancels ahead of us
    assert q.on_level(120, 900) == 120  # orders joining behind us change nothing


def test_latency_delays_eligibility_of_a_resting_order(events, settings) -> None:
    qty = 10_000
    case = _queue_case(events, qty)
    sent = events[case["index"]].ts_recv
    fill_ts = events[case["fill_index"]].ts_recv
    latency = fill_ts - sent + 1  # arrives just after the trade that would have filled it
    slow = L2Settings.for_events(events, initial_cash=CASH, latency_ns=latency)
    order = {"side": Side.BUY, "qty": qty, "price": case["price"], "order_type": OrderType.LIMIT}
    strategy = Scripted(case["update_id"], [order])
    run_l2_backtest(events, strategy, slow)

    # the kernel accepts (funds) the order when it is sent; the venue takes it when it arrives
    accepted = [e for e in strategy.events if type(e) is OrderAccepted]
    assert [e.ts for e in accepted] == [sent]
    history = strategy.ctx.order(strategy.cids[0]).history
    assert (OrderStatus.ACCEPTED, sent + latency) in history
    assert all(f.ts > fill_ts for f in strategy.fills())


def test_latency_delays_a_market_order_to_the_book_at_its_arrival(events, settings) -> None:
    i = _diff_index(events, 400)
    latency = 250_000_000  # 250 ms
    arrival = events[i].ts_recv + latency
    last = max(j for j, e in enumerate(events) if e.ts_recv <= arrival)
    asks = _book_after(events, last).depth(10)[1]
    qty = asks[0][1] + asks[1][1] // 2 // settings.qty_step * settings.qty_step
    slow = L2Settings.for_events(events, initial_cash=CASH, latency_ns=latency)
    strategy = Scripted(events[i].last_update_id, [{"side": Side.BUY, "qty": qty}])
    run_l2_backtest(events, strategy, slow)
    assert [(f.price, f.qty, f.ts) for f in strategy.fills()] == [(p, q, arrival) for p, q in _walk(asks, qty)]


def test_cancel_takes_effect_after_latency(events, settings) -> None:
    i = _diff_index(events, 400)
    bid = _book_after(events, i).best_bid()[0]
    far = bid - 1000 * settings.price_tick  # never reached in this capture
    slow = L2Settings.for_events(events, initial_cash=CASH, latency_ns=30_000_000)
    strategy = Scripted(
        events[i].last_update_id,
        [{"side": Side.BUY, "qty": 10_000, "price": far, "order_type": OrderType.LIMIT}],
        cancel_after_ns=1,
    )
    result = run_l2_backtest(events, strategy, slow)
    cancelled = [e for e in strategy.events if type(e) is OrderCancelled]
    assert len(cancelled) == 1
    cancel_sent = next(e.ts_recv for e in events[i + 1 :] if type(e) is BookDelta and e.ts_recv > strategy.sent_at)
    assert cancelled[0].ts == cancel_sent + 30_000_000
    assert result.ledger.locked(TRADER := "main", "USDT") == 0 and result.ledger.free(TRADER, "USDT") == CASH


def test_crossing_limit_takes_up_to_its_price_and_rests_the_rest(events, settings) -> None:
    i = _diff_index(events, 400)
    asks = _book_after(events, i).depth(10)[1]
    limit = asks[1][0]
    qty = asks[0][1] + asks[1][1] + 50_000
    strategy = Scripted(
        events[i].last_update_id, [{"side": Side.BUY, "qty": qty, "price": limit, "order_type": OrderType.LIMIT}]
    )
    run_l2_backtest(events, strategy, settings)
    fills = strategy.fills()
    assert [(f.price, f.qty, f.liquidity.value) for f in fills[:2]] == [
        (asks[0][0], asks[0][1], "TAKER"),
        (asks[1][0], asks[1][1], "TAKER"),
    ]
    assert all(f.liquidity.value == "MAKER" and f.price == limit for f in fills[2:])


class BeforeTheBook(Strategy):
    """Sends one order on the capture's first trade, before the REST snapshot makes the book known."""

    def __init__(self, order: dict[str, Any]) -> None:
        self.order = order
        self.events: list[Any] = []
        self.sent = False

    def on_trade(self, trade: Any) -> None:
        if not self.sent:
            self.sent = True
            self.ctx.place_order(self.ctx.symbol, **self.order)

    def on_order_event(self, event: Any) -> None:
        self.events.append(event)


def test_a_crossing_limit_sent_before_the_book_is_known_takes_the_book_once_it_is(events, settings) -> None:
    """It arrives while the book is unknown and waits; the snapshot makes the book known, and it is then worked as
    if it arrived at that moment: TAKER fills at the book's asks up to its price, the rest resting at its price."""
    snapshot = next(i for i, e in enumerate(events) if type(e) is BookDelta and e.is_snapshot)
    asks = _book_after(events, snapshot).depth(10)[1]
    limit = asks[1][0]
    qty = asks[0][1] + asks[1][1] + 50_000
    strategy = BeforeTheBook({"side": Side.BUY, "qty": qty, "price": limit, "order_type": OrderType.LIMIT})
    run_l2_backtest(events, strategy, settings)
    accepted = next(e for e in strategy.events if type(e) is OrderAccepted)
    assert accepted.ts < events[snapshot].ts_recv  # it did arrive before the book was known
    fills = [e for e in strategy.events if type(e) is OrderFilled]
    assert [(f.price, f.qty, f.liquidity.value, f.ts) for f in fills[:2]] == [
        (asks[0][0], asks[0][1], "TAKER", events[snapshot].ts_recv),
        (asks[1][0], asks[1][1], "TAKER", events[snapshot].ts_recv),
    ]
    assert all(f.liquidity.value == "MAKER" and f.price == limit for f in fills[2:])


def test_a_market_order_sent_before_the_book_is_known_expires_for_want_of_liquidity(events, settings) -> None:
    """Sent on the capture's first trade, before the snapshot: the trade's price protects it, the kernel funds it and
    the venue, with no book to take from when it arrives, expires it (NO_LIQUIDITY), as README says and as the paper
    engine does with its kernel's last price. Before, the kernel rejected it: NO_REFERENCE_PRICE, "no reference price
    for BTCUSDT yet"."""
    snapshot = next(i for i, e in enumerate(events) if type(e) is BookDelta and e.is_snapshot)
    strategy = BeforeTheBook({"side": Side.BUY, "qty": SCALE // 100})
    result = run_l2_backtest(events, strategy, settings)
    kinds = [type(e) for e in strategy.events]
    assert kinds == [OrderAccepted, OrderExpired]
    expired = strategy.events[1]
    assert (expired.reason, expired.filled_qty) == (RejectReason.NO_LIQUIDITY, 0)
    assert expired.ts < events[snapshot].ts_recv  # it arrived before the book was known
    assert (result.metrics["n_rejected"], result.metrics["n_expired"], len(result.trades)) == (0, 1, 0)
    assert result.trades.size == 0 and result.warnings == []


class AtTheStart(Strategy):
    """Sends one order in ``on_start``, before the capture's first event: no book and no trade yet."""

    def __init__(self, order: dict[str, Any]) -> None:
        self.order = order
        self.events: list[Any] = []

    def on_start(self, ctx: Any) -> None:
        super().on_start(ctx)
        ctx.place_order(ctx.symbol, **self.order)

    def on_order_event(self, event: Any) -> None:
        self.events.append(event)


@pytest.mark.parametrize("order", [{"side": Side.BUY, "qty": SCALE // 100}, {"side": Side.BUY, "quote_qty": 100 * SCALE},
                                   {"side": Side.SELL, "qty": SCALE // 100}])  # fmt: skip
def test_a_market_order_sent_before_any_price_is_rejected_with_nothing_reserved(events, settings, order) -> None:
    """No book and no trade yet: no price to protect it with or to reserve a buy's funds at. The kernel rejects it
    (NO_REFERENCE_PRICE) before reserving anything, as the paper engine rejects a market order before its first
    price."""
    strategy = AtTheStart(order)
    base = replace(settings, initial_base=SCALE)
    result = run_l2_backtest(events, strategy, base)
    (rejected,) = strategy.events
    assert type(rejected) is OrderRejected and rejected.reason is RejectReason.NO_REFERENCE_PRICE
    assert result.metrics["n_rejected"] == 1 and len(result.trades) == 0
    assert result.warnings == [
        "1 strategy orders rejected, not traded (NO_REFERENCE_PRICE 1); the first: no reference price for BTCUSDT yet; "
        "market orders need one"
    ]


def test_post_only_that_would_cross_expires_and_unaffordable_order_is_rejected(events, settings) -> None:
    i = _diff_index(events, 400)
    ask = _book_after(events, i).best_ask()[0]
    orders = [
        {"side": Side.BUY, "qty": 10_000, "price": ask, "order_type": OrderType.LIMIT, "tif": TimeInForce.POST_ONLY},
        {"side": Side.BUY, "qty": 1_000 * SCALE},
    ]
    strategy = Scripted(events[i].last_update_id, orders)
    run_l2_backtest(events, strategy, settings)
    assert [(type(e).__name__, e.reason) for e in strategy.events if hasattr(e, "reason")] == [
        ("OrderRejected", RejectReason.INSUFFICIENT_FUNDS),
        ("OrderExpired", RejectReason.WOULD_TAKE_LIQUIDITY),
    ]
    assert not strategy.fills()
    assert any(type(e) is OrderRejected for e in strategy.events)


# ------------------------------------------------------------------------------------------------------ money, fees


@pytest.mark.parametrize("name", ["book_imbalance", "passive_maker"])
def test_fees_are_exact_and_money_is_conserved(events, name) -> None:
    maker, taker = 20_000, 70_000  # 0.0002 and 0.0007
    settings = L2Settings.for_events(events, fee_rate=taker, maker_fee_rate=maker, latency_ns=5_000_000)
    result = run_l2_backtest(events, make_l2_strategy(name, {}), settings)
    trades = result.trades
    assert len(trades) > 20
    by_order: dict[int, list[int]] = {}
    for order_id, price, qty, is_maker in zip(
        trades["order_id"].tolist(),
        trades["price"].tolist(),
        trades["qty"].tolist(),
        trades["maker"].tolist(),
        strict=True,
    ):
        assert price * qty % SCALE == 0
        by_order.setdefault(order_id, []).append(price * qty // SCALE * (maker if is_maker else taker))
    fees_by_order: dict[int, int] = {}
    for order_id, fee in zip(trades["order_id"].tolist(), trades["fee"].tolist(), strict=True):
        fees_by_order[order_id] = fees_by_order.get(order_id, 0) + fee
    assert fees_by_order == {o: ceil_div(sum(parts), SCALE) for o, parts in by_order.items()}

    # no money created or lost: the trader's balances and fees plus what went to the venue are what was deposited,
    # and the venue's own account of the trades (kept apart from the kernel's) says the same
    ledger, venue = result.ledger, result.venue
    assert ledger.conserved()
    totals = ledger.totals()
    for asset in ("USDT", "BTC"):
        assert totals.get(asset, 0) + venue.received.get(asset, 0) == ledger.deposited.get(asset, 0)
    sides, prices, qtys = (trades[k].tolist() for k in ("side", "price", "qty"))
    assert venue.received == {
        "USDT": sum(side * (price * qty // SCALE) for side, price, qty in zip(sides, prices, qtys, strict=True)),
        "BTC": -sum(side * qty for side, qty in zip(sides, qtys, strict=True)),
    }
    assert ledger.fees_collected["USDT"] == int(trades["fee"].sum()) == venue.fees_charged["USDT"]
    cash = settings.initial_cash
    base = settings.initial_base
    for side, price, qty, fee in zip(*(trades[k].tolist() for k in ("side", "price", "qty", "fee")), strict=True):
        cash += -side * (price * qty // SCALE) - fee
        base += side * qty
    assert ledger.free("main", "USDT") + ledger.locked("main", "USDT") == cash == trades["cash_after"][-1]
    assert ledger.free("main", "BTC") + ledger.locked("main", "BTC") == base
    assert result.metrics["n_fills"] == len(trades)
    assert result.metrics["maker_fills"] + result.metrics["taker_fills"] == len(trades)
    assert FeeModel(maker, taker).max_rate == taker


def test_the_sharpe_ratio_of_the_equity_samples_is_reported(events) -> None:
    """Sample-to-sample returns of the exact equity, annualised by the samples of a 365-day year (one a second)."""
    settings = L2Settings.for_events(events, latency_ns=5_000_000)
    result = run_l2_backtest(events, make_l2_strategy("passive_maker", {}), settings)
    values = [Fraction(int(v), SCALE) for v in result.equity["equity"].tolist()]
    returns = [float(b / a - 1) for a, b in zip(values, values[1:], strict=False)]
    assert len(returns) > 100 and statistics.stdev(returns) > 0
    expected = statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(365 * 86_400)
    assert result.metrics["sharpe"] == pytest.approx(expected, rel=1e-9)
    assert result.metrics["final_equity"] == Decimal(int(result.equity["equity"][-1])) / SCALE  # exact money


def test_the_drawdown_times_of_the_equity_samples_are_reported(events) -> None:
    """As the bar backtest's: the deepest drawdown's peak (the last sample at its top), trough and recovery, and the
    longest time under water of any drawdown (before: an L2 run reported its depth alone)."""
    settings = L2Settings.for_events(events, latency_ns=5_000_000)
    result = run_l2_backtest(events, make_l2_strategy("passive_maker", {}), settings)
    values, ts = result.equity["equity"].tolist(), result.equity["ts"].tolist()
    top, start, longest, deepest = 0, None, 0, (Fraction(0), 0, 0)
    for i, value in enumerate(values):
        if value >= values[top]:
            if start is not None:
                longest, start = max(longest, ts[i] - ts[start]), None
            top = i
            continue
        start = top if start is None else start
        deepest = max(deepest, (Fraction(values[top] - value, values[top]), top, i), key=lambda d: d[0])
    if start is not None:
        longest = max(longest, ts[-1] - ts[start])
    fall, peak, trough = deepest
    assert fall > 0 and longest > 0
    back = next((i for i in range(trough, len(values)) if values[i] >= values[peak]), None)

    def iso(i: int | None) -> str | None:
        return None if i is None else datetime.fromtimestamp(ts[i] // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    metrics = result.metrics
    assert metrics["max_drawdown"] == pytest.approx(float(fall), rel=1e-12)
    assert (metrics["max_drawdown_peak"], metrics["max_drawdown_trough"]) == (iso(peak), iso(trough))
    assert metrics["max_drawdown_recovery"] == iso(back)
    assert metrics["max_drawdown_duration_seconds"] == longest // 10**9


# ------------------------------------------------------------------------------------------- a book not known


def test_a_capture_without_a_snapshot_says_the_book_was_never_known(shared_data) -> None:
    """The 2023 spot capture has depth diffs only: no order could trade against a book, which a user must be told
    rather than read an empty run as the strategy's."""
    events = load_market_events(shared_data / "ticks_l2/binance_spot_btcusdt_20230405_ws.txt.gz")
    result = run_l2_backtest(events, make_l2_strategy("book_imbalance", {}))
    assert result.metrics["n_fills"] == 0
    assert len(result.warnings) == 1
    assert "the recorded book was never known: the capture has no depth snapshot" in result.warnings[0]
    assert f"in its {len(events):,} events" in result.warnings[0]


def test_orders_the_strategy_cannot_pay_for_are_a_warning_naming_the_first(events, settings) -> None:
    """100 USDT cannot buy 0.01 BTC: every order of the run was rejected (INSUFFICIENT_FUNDS), and the run ended with
    no fill and no warning; only ``n_rejected`` in the metrics hinted at it, never why."""
    poor = replace(settings, initial_cash=100 * SCALE)
    result = run_l2_backtest(events, make_l2_strategy("book_imbalance", {"threshold": 0.5, "qty": 0.01}), poor)
    rejected = result.metrics["n_rejected"]
    assert result.metrics["n_fills"] == 0 and rejected > 10
    assert rejected == sum(order["status"] == "REJECTED" for order in result.orders)  # every order the kernel kept
    assert len(result.warnings) == 1
    head = f"{rejected:,} strategy orders rejected, not traded (INSUFFICIENT_FUNDS {rejected:,}); the first: needs "
    assert result.warnings[0].startswith(head) and result.warnings[0].endswith(" USDT, free 100.00000000")
    rich = run_l2_backtest(events, make_l2_strategy("book_imbalance", {"threshold": 0.5, "qty": 0.01}), settings)
    assert rich.metrics["n_rejected"] == 0 and rich.warnings == []


def test_a_break_in_the_update_ids_says_how_much_of_the_capture_ran_without_a_book(events, settings) -> None:
    """One diff dropped from the capture: the next diff breaks the chain and no later snapshot bridges it, so every
    event after that one ran without a book."""
    dropped = _diff_index(events, 300)
    broken = events[:dropped] + events[dropped + 1 :]
    breaks_at = next(i for i in range(dropped, len(broken)) if type(broken[i]) is BookDelta)
    result = run_l2_backtest(broken, make_l2_strategy("book_imbalance", {}), settings)
    assert result.metrics["sequence_gaps"] == 1
    lost = len(broken) - breaks_at - 1
    assert result.warnings == [
        f"BTCUSDT: the depth update ids broke 1 time(s): the recorded book was unknown for {lost:,} of the capture's "
        f"{len(broken):,} events (from ts {broken[breaks_at + 1].ts_recv} ns on, and no later snapshot rebuilt it), "
        "when no order could take liquidity or join a queue"
    ]
    assert run_l2_backtest(events, make_l2_strategy("book_imbalance", {}), settings).warnings == []


def test_a_crossed_recorded_book_is_not_traded_against_and_is_warned_of(events, settings) -> None:
    """One diff of the capture given a bid at twice the best ask, a price no later diff touches: from then on the
    recorded book is crossed, so no market order fills (before, each bought at the asks below that bid)."""
    i = _diff_index(events, 300)
    high = _book_after(events, i).best_ask()[0] * 2
    crossed = events[:i] + [replace(events[i], bids=(*events[i].bids, (high, SCALE)))] + events[i + 1 :]
    book = L2Book(events[0].symbol)
    crossed_updates = 0
    for e in crossed:
        if type(e) is BookDelta:
            if e.is_snapshot:
                book.apply_snapshot(e)
            elif book.apply(e) and book.crossed:
                crossed_updates += 1
    assert crossed_updates > 100
    result = run_l2_backtest(crossed, make_l2_strategy("book_imbalance", {}), settings)
    assert len(result.trades) > 0 and all(ts < events[i].ts_recv for ts in result.trades["ts"].tolist())
    # the strategy's market orders on the crossed book, protected from the last trade, found nothing to take
    assert result.metrics["n_rejected"] == 0 and result.metrics["n_expired"] > 0
    assert result.warnings == [
        f"BTCUSDT: {crossed_updates:,} depth update(s) of the capture left the recorded book crossed (best bid at or "
        "above best ask, a book no exchange holds): no order could take liquidity or join a queue until a later one "
        "uncrossed it",
    ]


# ----------------------------------------------------------------------------------------------------- determinism


def _csv(events, settings, tmp_path, tag: str, seed: int = 0, name: str = "book_imbalance") -> bytes:
    path = tmp_path / f"{tag}.csv"
    write_trades_csv(run_l2_backtest(events, make_l2_strategy(name, {}), settings, seed=seed), path)
    return path.read_bytes()


def test_same_data_settings_and_seed_give_byte_identical_trades(events, settings, tmp_path) -> None:
    first = _csv(events, settings, tmp_path, "a")
    assert first == _csv(events, settings, tmp_path, "b")
    assert first.count(b"\n") > 20


def test_random_latency_is_reproducible_by_seed(events, tmp_path) -> None:
    jitter = L2Settings.for_events(events, latency_ns=1_000_000, latency_jitter_ns=40_000_000)
    one = _csv(events, jitter, tmp_path, "s1", seed=1, name="passive_maker")
    assert one == _csv(events, jitter, tmp_path, "s1b", seed=1, name="passive_maker")
    assert one != _csv(events, jitter, tmp_path, "s2", seed=2, name="passive_maker")


# ------------------------------------------------------------------------------------------------ inputs, registry


def test_is_tick_capture(shared_data, tmp_path) -> None:
    assert is_tick_capture(shared_data / CAPTURE)
    assert not is_tick_capture(next((shared_data / "ohlcv").glob("*.csv.gz")))
    assert not is_tick_capture(tmp_path / "missing.txt.gz")


def test_settings_inferred_from_the_capture(settings) -> None:
    assert (settings.symbol, settings.market, settings.price_tick) == ("BTCUSDT", "spot", 1_000_000)
    assert settings.price_tick * settings.qty_step % SCALE == 0


def test_a_capture_of_two_symbols_is_refused_naming_both(events, shared_data) -> None:
    """The BTCUSDT and ETHUSDT captures of the same minutes merged by local time: the settings took the first event's
    symbol and a tick and step inferred from both markets' prices, then the run stopped at "event of ETHUSDT in a
    BTCUSDT backtest", a choice of BTCUSDT the user never made."""
    eth = load_market_events(shared_data / "ticks_l2/binance_spot_ethusdt_20240808_ws.txt.gz")
    merged = sorted([*events, *eth], key=lambda e: e.ts_recv)
    first_eth = next(i for i, e in enumerate(merged, 1) if e.symbol != merged[0].symbol)
    with pytest.raises(InvalidInput) as refused:
        L2Settings.for_events(merged)
    assert str(refused.value) == (
        f"the capture holds events of {merged[0].symbol} and of {merged[first_eth - 1].symbol} (the first at event "
        f"{first_eth:,}): the L2 backtest replays one symbol's book; give it a capture of one symbol"
    )


def test_strategy_registry_validates_parameters() -> None:
    assert set(L2_STRATEGIES) == {"book_imbalance", "passive_maker"}
    make_l2_strategy("book_imbalance", {"threshold": 0.4, "qty": "0.002", "hold_ms": 500})
    for name, params, words in [
        ("nope", {}, "unknown L2 strategy"),
        ("book_imbalance", {"threshold": 1.5}, "threshold"),
        ("book_imbalance", {"hold_ms": -1}, "hold_ms"),
        ("book_imbalance", {"qty": "0.000000001"}, "qty"),
        ("book_imbalance", {"bogus": 1}, "unknown parameter"),
        ("passive_maker", {"qty": "0.01", "max_inventory": "0.001"}, "max_inventory"),
        ("book_imbalance", {"stop_loss_bps": "-1"}, "^book_imbalance: stop_loss_bps: '-1' must not be negative$"),
        ("book_imbalance", {"qty": "0"}, "^book_imbalance: qty must be positive, got '0'$"),
    ]:
        with pytest.raises(InvalidInput, match=words):
            make_l2_strategy(name, params)
    for zero in ("0", "0.0", 0, 0.0):  # no stop-loss, however it is written
        assert make_l2_strategy("book_imbalance", {"stop_loss_bps": zero}).stop_loss == 0


def test_a_price_without_an_order_type_is_a_limit_order_as_everywhere_else(events, settings) -> None:
    """``place_order(symbol, side, qty=..., price=...)`` defaulted to a MARKET order carrying a price, which the kernel
    rejects (INVALID_PRICE): a strategy's plain limit order never reached the book. A price now makes it a limit, as the
    Python handle and the stdio ORDER line read it; no price, a market order."""
    i = _diff_index(events, 400)
    bid = _book_after(events, i).depth(10)[0][2][0]  # well below the best ask: rests
    strategy = Scripted(
        events[i].last_update_id, [{"side": Side.BUY, "qty": 100_000, "price": bid}, {"side": Side.BUY, "qty": 100_000}]
    )
    run_l2_backtest(events, strategy, settings)
    accepted = {e.client_order_id: e for e in strategy.events if type(e) is OrderAccepted}
    limit, market = (accepted[cid] for cid in strategy.cids)
    assert (limit.order_type, limit.price) == (OrderType.LIMIT, bid)
    assert (market.order_type, market.price) == (OrderType.MARKET, None)
    assert not [e for e in strategy.events if type(e) is OrderRejected]
