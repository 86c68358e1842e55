"""The event-driven bar backtest: a strategy driven bar by bar, its orders going through the core engine.

One process, no Ray. Each bar updates a reused :class:`~veloz_actors.strategies.base.Bar` view and calls
``strategy.on_bar``; nothing else happens on a bar without orders, so the per-bar path allocates nothing. Orders the
strategy places during bar ``t`` reach the venue at bar ``t + 1``'s open: the simulated venue
(:class:`~veloz_actors.venues.sim.SimVenue`, its own money in its own ledger) offers exactly the liquidity the fill
model allows at the modelled price (the open, moved against the trader by the slippage and rounded to the tick
against the trader), and the strategy's market order then goes through the trading kernel's risk checks, OMS and
funds reservation, the venue's matching, and the kernel's settlement, like any other order. An order
still pending after the last bar is dropped.

Money is exact and conserved (the test suite checks the ledger after every run); the trade list and the metrics come
out in the same form as the vectorised kernel's, so the two can be compared exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .._exceptions import ConfigError, InvalidInput
from ..core.instruments import Instrument, ceil_div
from ..core.kernel import gc_tuned
from ..core.risk import RiskLimits
from ..data.bars import BarSeries
from ..fixed import MAX_ABS, SCALE, format_decimal
from ..messages import OrderFilled, OrderRejected, OrderType, PlaceOrder, Side, TimeInForce, Trade
from ..orders import ClientOrderIds, build_place_order
from ..strategies.base import Bar, Strategy, StrategyContext
from ..venues.engine import Engine, EngineConfig
from .metrics import TRADE_DTYPE, check_initial_cash, equity_and_metrics
from .settings import BacktestSettings

__all__ = ["BacktestResult", "run_bar_backtest", "skipped_buys_warning", "split_symbol"]

TRADER = "main"
_VENUE_FUNDS = MAX_ABS  # the venue's side of every fill; within what the codec and the metrics can represent
_KNOWN_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY", "USD")


def skipped_buys_warning(symbol: str, qty_step: int, count: int, first_budget: int, first_price: int) -> str:
    """The warning for ``count`` strategy buys whose budget could not pay for one quantity step of ``symbol`` at the
    fill price plus the fee, so they were not traded, naming the first one's budget and price (1e-8 units). Both bar
    engines give it in the same words: the event-driven one and the kernel (``--engine kernel``)."""
    base, quote = split_symbol(symbol)
    return (
        f"{count} strategy buys could not pay for one quantity step, not traded: the first had "
        f"{format_decimal(first_budget)} {quote} for {format_decimal(qty_step)} {base} at {format_decimal(first_price)} "
        "plus the fee; raise the initial cash or give a finer quantity step (--qty-step)"
    )


def split_symbol(symbol: str) -> tuple[str, str]:
    """Base and quote asset of a Binance symbol (``BTCUSDT`` -> ``BTC``, ``USDT``)."""
    for quote in _KNOWN_QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol, "QUOTE"


@dataclass
class BacktestResult:
    """Trades (``TRADE_DTYPE``), the equity curve at every bar close, the metrics, timings, the instrument traded
    (its tick and step as :meth:`BacktestSettings.for_bars` fixed them), and ``warnings``: one line when the engine
    rejected strategy orders (a rejection is a business outcome, not an error, but never a silent "no trade")."""

    trades: np.ndarray
    equity: np.ndarray
    metrics: dict[str, float | int]
    timing: dict[str, float] = field(default_factory=dict)
    events: int = 0
    instrument: Instrument | None = None
    warnings: list[str] = field(default_factory=list)


class _Context(StrategyContext):
    """The :class:`~veloz_actors.strategies.base.StrategyContext` of a bar backtest."""

    def __init__(self, engine: Engine, instrument: Instrument) -> None:
        self.engine = engine
        self.instrument = instrument
        # the orders placed on this bar, each stamped with the next bar's open, when it reaches the venue
        self.pending: list[PlaceOrder] = []
        self.bar: Bar | None = None
        # each bar's next open time, when the orders placed on that bar reach the venue (the last bar's own: its
        # orders are dropped); looked up per order rather than set per bar, which every bar would pay for
        self.next_opens: list[int] = []
        self._ids = ClientOrderIds("bt")  # a fixed prefix: the same ids every run
        self._positions = engine.ledger.positions
        self.rejected: dict[str, int] = {}  # reason -> how many of the strategy's orders the engine rejected
        self.first_rejected: OrderRejected | None = None
        # BUYs by quote amount whose budget buys less than one quantity step: (how many, the first's budget and price)
        self.unaffordable = 0
        self.first_unaffordable: tuple[int, int] = (0, 0)

    def rejection_warnings(self) -> list[str]:
        """One line naming the rejected orders' reasons and the first one's detail, and one for the buys whose budget
        bought less than a step; none when every order was traded."""
        warnings = []
        if self.first_rejected is not None:
            counts = ", ".join(f"{reason} {n}" for reason, n in self.rejected.items())
            first = self.first_rejected.detail or self.first_rejected.reason
            warnings.append(f"{sum(self.rejected.values())} strategy orders rejected by the engine, not traded "
                            f"({counts}); the first: {first}")  # fmt: skip
        if self.unaffordable:
            budget, price = self.first_unaffordable
            instrument = self.instrument
            warnings.append(
                skipped_buys_warning(instrument.symbol, instrument.qty_step, self.unaffordable, budget, price)
            )
        return warnings

    def now(self) -> int:
        """The open time of the bar being processed (orders placed now reach the venue at the next open)."""
        return self.bar.open_time if self.bar is not None else 0

    def position(self, symbol: str) -> int:
        pos = self._positions.get((TRADER, symbol))
        return pos.qty if pos is not None else 0

    def free(self, asset: str) -> int:
        return self.engine.ledger.free(TRADER, asset)

    def locked(self, asset: str) -> int:
        return self.engine.ledger.locked(TRADER, asset)

    def base_asset(self, symbol: str) -> str:
        return self.engine.instruments[symbol].base_asset

    def quote_asset(self, symbol: str) -> str:
        return self.engine.instruments[symbol].quote_asset

    def qty_step(self, symbol: str) -> int:
        return self.engine.instruments[symbol].qty_step

    def place_order(
        self,
        symbol: str,
        side: Side,
        *,
        qty: int = 0,
        price: int | None = None,
        order_type: OrderType | None = None,
        tif: TimeInForce = TimeInForce.GTC,
        quote_qty: int | None = None,
        client_order_id: str | None = None,
    ) -> str:
        if order_type is OrderType.LIMIT or (order_type is None and price is not None):
            raise InvalidInput("the bar backtest fills market orders at the next open; use the L2 backtest for limits")
        if price is not None:
            raise InvalidInput("a market order takes no price (the bar backtest fills it at the next open)")
        if symbol != self.instrument.symbol:
            raise InvalidInput(f"this backtest trades {self.instrument.symbol}, not {symbol!r}")
        bar = self.bar
        ts = self.next_opens[bar.index] if bar is not None and bar.index >= 0 else 0  # 0: before the first bar
        order = build_place_order(symbol, side, qty=qty, quote_qty=quote_qty, tif=tif, client_order_id=client_order_id,
                                  ids=self._ids, account_id=TRADER, ts=ts)  # fmt: skip
        self.pending.append(order)
        return order.client_order_id

    def cancel_order(self, client_order_id: str) -> None:
        self.pending[:] = [p for p in self.pending if p.client_order_id != client_order_id]


def _engine_for(bars: BarSeries, settings: BacktestSettings) -> tuple[Engine, Instrument]:
    """The engine and instrument for ``settings`` already fixed by :meth:`BacktestSettings.for_bars`."""
    base, quote = split_symbol(bars.symbol)
    tick, step = settings.tick_for(bars), settings.step_for(bars)
    top = int(bars.data["high"].max()) if len(bars) else SCALE
    try:
        instrument = Instrument(
            symbol=bars.symbol,
            base_asset=base,
            quote_asset=quote,
            price_tick=tick,
            qty_step=step,
            min_qty=step,
            # what the venue's funds buy at the highest price, within what VeloZ represents (fixed.MAX_ABS)
            max_qty=max(min(_VENUE_FUNDS // max(top, 1) * SCALE, MAX_ABS) // step * step, step),
            min_notional=0,
            maker_fee_rate=settings.fee_rate,
            taker_fee_rate=settings.fee_rate,
        )
    except ConfigError as exc:
        raise InvalidInput(f"backtest settings do not fit {bars.symbol}: {exc}") from exc
    config = EngineConfig(
        instruments=(instrument,),
        balances={TRADER: {quote: settings.initial_cash, base: 0}},
        risk=RiskLimits(price_band=int(SCALE * 0.5)),
        valuation_asset=quote,
        market_maker_balances={quote: _VENUE_FUNDS, base: instrument.max_qty},  # the venue's side of every fill
        emit_account_updates=False,
        snapshot_every=10**12,
    )
    return Engine(config), instrument


def run_bar_backtest(
    bars: BarSeries,
    strategy: Strategy,
    settings: BacktestSettings | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Run ``strategy`` over ``bars`` through the core engine; returns trades, equity, metrics and timings."""
    settings = settings or BacktestSettings()
    if not 0 <= settings.slippage_rate < SCALE:
        raise InvalidInput("slippage must be a fraction below 1")
    if settings.fee_rate < 0 or settings.fee_rate >= SCALE:
        raise InvalidInput("fee rate must be within [0, 1)")
    if settings.initial_cash <= 0:
        raise InvalidInput("initial cash must be positive")
    check_initial_cash(settings.initial_cash)  # before the run, not at its end
    settings = settings.for_bars(bars)  # the tick and the step for this series, checked
    started = time.perf_counter()
    engine, instrument = _engine_for(bars, settings)
    ctx = _Context(engine, instrument)
    strategy.on_start(ctx)
    data = bars.data
    open_times = data["open_time"].tolist()
    opens = data["open"].tolist()
    highs = data["high"].tolist()
    lows = data["low"].tolist()
    closes = data["close"].tolist()
    volumes = data["volume"].tolist()
    n = len(open_times)
    ctx.next_opens = open_times[1:] + open_times[-1:]
    bar = ctx.bar = Bar(bars.symbol)
    on_bar = strategy.on_bar
    pending = ctx.pending  # the same list for the whole run: orders are appended and drained in place
    rows: list[tuple[int, ...]] = []
    events = 0
    chunk = max(1, n) if progress is None else max(1, n // 100)
    with gc_tuned():  # the kernel and the venue hold every order of the run: scan them less often
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            for i, t, o, h, lo, c, v in zip(
                range(start, stop), open_times[start:stop], opens[start:stop], highs[start:stop], lows[start:stop],
                closes[start:stop], volumes[start:stop], strict=True,
            ):  # fmt: skip
                bar.index = i
                bar.open_time = t
                bar.open = o
                bar.high = h
                bar.low = lo
                bar.close = c
                bar.volume = v
                if pending:
                    events += _execute(ctx, strategy, instrument, settings, i, t, o, rows)
                on_bar(bar)
            if progress is not None:
                progress(stop, n)
    ctx.pending.clear()  # orders signalled on the last bar are dropped
    strategy.on_stop()
    run_seconds = time.perf_counter() - started
    if engine.totals() != engine.deposited() or not engine.ledger.conserved():
        raise AssertionError("backtest ledger does not balance: money was created or destroyed")
    trades = np.array(rows, dtype=TRADE_DTYPE) if rows else np.zeros(0, dtype=TRADE_DTYPE)
    equity, metrics = equity_and_metrics(bars, settings, trades)
    return BacktestResult(
        trades=trades,
        equity=equity,
        metrics=metrics,
        timing={"run_seconds": run_seconds},
        events=events,
        instrument=instrument,
        warnings=ctx.rejection_warnings(),
    )


def _too_large(symbol: str, qty: int, price: int) -> str:
    return (
        f"{symbol}: buying {format_decimal(qty)} at {format_decimal(price)} would hold more than {MAX_ABS // SCALE} "
        "whole units, beyond what VeloZ represents: lower the initial cash"
    )


def _beyond_the_venue(instrument: Instrument, side: Side, qty: int, price: int) -> str:
    """Why a fill the engine would take cannot happen: the simulated venue cannot fund its side of it."""
    doing = "buying" if side is Side.BUY else "selling"
    return (
        f"{instrument.symbol}: {doing} {format_decimal(qty)} at {format_decimal(price)} is more than the bar "
        f"backtest's venue can trade: its {MAX_ABS // SCALE:,} {instrument.quote_asset} buy at most "
        f"{format_decimal(instrument.max_qty)} at the data's highest price; lower the initial cash (the kernel, "
        "--engine kernel, has no such bound)"
    )


def _execute(
    ctx: _Context,
    strategy: Strategy,
    instrument: Instrument,
    settings: BacktestSettings,
    index: int,
    ts: int,
    open_price: int,
    rows: list[tuple[int, ...]],
) -> int:
    """Fill the pending market orders at this bar's open through the engine; record the trader's fills."""
    engine = ctx.engine
    orders = list(ctx.pending)
    ctx.pending.clear()
    tick = instrument.price_tick
    slip = settings.slippage_rate
    produced = 0
    symbol = instrument.symbol
    venue = engine.venues[symbol]
    for command in orders:
        side, order_qty, quote_qty = command.side, command.qty, command.quote_qty
        if (order_qty if quote_qty is None else quote_qty) <= 0:
            # the strategy's own quantity is not positive: the engine rejects the order (INVALID_QUANTITY) and the
            # result's warnings say so; skipped here, it was a silent "no trade"
            produced += _apply(ctx, strategy, command, index, ts, rows)
            continue
        if side is Side.BUY:
            price = ceil_div(open_price * (SCALE + slip), SCALE * tick) * tick
            if quote_qty is not None:
                qty = quote_qty * SCALE * SCALE // (price * (SCALE + instrument.taker_fee_rate))
                qty = qty // instrument.qty_step * instrument.qty_step
                if qty > MAX_ABS:
                    raise InvalidInput(_too_large(symbol, qty, price))
                if qty > instrument.max_qty:  # the venue holds no more: it would fill nothing, without a word
                    raise InvalidInput(_beyond_the_venue(instrument, side, qty, price))
            else:
                qty = order_qty
        else:
            price = max(open_price * (SCALE - slip) // (SCALE * tick) * tick, tick)  # as the kernel: never 0
            qty = order_qty
        if qty <= 0 or price <= 0:  # nothing the trader can afford: no trade, the strategy stays flat
            if quote_qty is not None:  # a budget below one step's cost: counted, never a silent "no trade"
                ctx.unaffordable += 1
                ctx.first_unaffordable = ctx.first_unaffordable if ctx.unaffordable > 1 else (quote_qty, price)
            continue
        # the market at this open: the reference price, then the liquidity the fill model allows
        engine.apply(
            Trade(symbol=symbol, trade_id=index, price=price, qty=qty, aggressor=side, ts_event=ts, ts_recv=ts)
        )
        # the trader has nothing resting that it could fill; an order above max_qty is the engine's to reject
        if not venue.offer(side.opposite, price, qty, ts, []) and qty <= instrument.max_qty:
            raise InvalidInput(_beyond_the_venue(instrument, side, qty, price))
        produced += _apply(ctx, strategy, command, index, ts, rows)
        venue.withdraw()
    return produced


def _apply(
    ctx: _Context, strategy: Strategy, command: PlaceOrder, index: int, ts: int, rows: list[tuple[int, ...]]
) -> int:
    """Apply one strategy order to the engine: its events to the strategy, a rejection counted, a fill recorded."""
    ledger = ctx.engine.ledger
    quote = ctx.instrument.quote_asset
    order_events = ctx.engine.apply(command)
    for event in order_events:
        if event.account_id == TRADER:
            strategy.on_order_event(event)
            if type(event) is OrderRejected:
                reason = event.reason.name
                ctx.rejected[reason] = ctx.rejected.get(reason, 0) + 1
                ctx.first_rejected = ctx.first_rejected or event
        if type(event) is OrderFilled and event.account_id == TRADER:
            cash = ledger.free(TRADER, quote) + ledger.locked(TRADER, quote)
            sign = 1 if event.side is Side.BUY else -1
            rows.append((index - 1, index, ts, sign, event.price, event.qty, event.fee, cash))
    return len(order_events)
