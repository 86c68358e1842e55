"""Built-in strategies for the tick/L2 backtest: ``book_imbalance`` (taker) and ``passive_maker`` (maker).

Both are plain :class:`~veloz_actors.strategies.base.Strategy` objects driven by
:func:`~veloz_actors.backtest.l2.run_l2_backtest` through an :class:`~veloz_actors.strategies.base.L2StrategyContext`;
they read the recorded book through ``ctx.book()`` and act only on what they have been told (order events), never on
what they hope happened. Parameters are validated by
:func:`make_l2_strategy` (unknown names, wrong types and out-of-range values are one clear :class:`InvalidInput`);
decimals such as quantities are exact (``"0.001"``, or a float whose shortest repr is that decimal).

``book_imbalance(threshold=0.6, levels=5, qty=0.001, hold_ms=1000, take_profit_bps=5, stop_loss_bps=0, cooldown_ms=0)``
    Imbalance over the best ``levels`` levels of each side, ``(B - A) / (B + A)`` with B, A the summed bid and ask
    quantities, compared exactly in integers. When flat with nothing in flight and the imbalance exceeds
    ``threshold``: market-buy ``qty``. Once long, exit with a market sell of the whole position at the first book or
    trade event where ``hold_ms`` has passed since the entry fill, or the best bid reaches the entry price plus
    ``take_profit_bps``, or (if ``stop_loss_bps > 0``) falls to the entry price minus ``stop_loss_bps``. After an exit,
    wait ``cooldown_ms`` before the next entry. Long only, one position at a time.

``passive_maker(qty=0.001, max_inventory=0.005, requote_ticks=1)``
    Joins the best bid with a post-only limit buy of ``qty`` while ``position + qty <= max_inventory``; offers the
    whole position with a post-only limit sell at the best ask. An order whose price is more than ``requote_ticks``
    ticks away from the best price on its side, or a sell whose size no longer matches the position, is cancelled and
    placed again at the next book update. At most one buy and one sell live (or travelling) at a time.

Both sell "the whole position" rounded down to the lot step (``ctx.sellable``) and take a position below one step
(dust) as flat: after a fee taken in the coin (Binance's rule without BNB) a live position need not be whole steps,
and a sell of it as it is would be refused. A backtest's positions are whole steps: its trades are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._exceptions import InvalidInput
from ..fixed import SCALE, parse_decimal, parse_rate
from ..messages import (
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderType,
    Side,
    TimeInForce,
)
from .base import L2StrategyContext, Strategy

__all__ = ["L2_STRATEGIES", "BookImbalance", "PassiveMaker", "make_l2_strategy"]

_MS = 1_000_000
_BPS = 10_000  # one basis point as a fraction in 1e-8 units


# ------------------------------------------------------------------------------------------------------ validation


def _decimal(strategy: str, name: str, value: Any, *, zero: bool = False) -> int:
    """A positive (or, with ``zero``, non-negative) exact decimal (str, int, or float with an exact short repr) ->
    1e-8 units."""
    if isinstance(value, bool):
        raise InvalidInput(f"{strategy}: {name} must be a number, got {value!r}")
    label = f"{strategy}: {name}"
    units = parse_rate(value, label) if isinstance(value, float) else parse_decimal(value, label)
    if units < 0 or (units == 0 and not zero):
        raise InvalidInput(f"{strategy}: {name} must be {'zero or more' if zero else 'positive'}, got {value!r}")
    return units


def _non_negative_decimal(strategy: str, name: str, value: Any) -> int:
    return _decimal(strategy, name, value, zero=True)


def _fraction(strategy: str, name: str, value: Any) -> int:
    units = _decimal(strategy, name, value)
    if units >= SCALE:
        raise InvalidInput(f"{strategy}: {name} must be between 0 and 1 (exclusive), got {value!r}")
    return units


def _integer(minimum: int) -> Callable[[str, str, Any], int]:
    def parse(strategy: str, name: str, value: Any) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{strategy}: {name} must be an integer, got {value!r}")
        if value < minimum:
            raise InvalidInput(f"{strategy}: {name} must be >= {minimum}, got {value}")
        return value

    return parse


def _validate(
    strategy: str, spec: dict[str, tuple[Callable[[str, str, Any], int], Any]], params: dict[str, Any]
) -> dict[str, int]:
    if not isinstance(params, dict):
        raise InvalidInput(f"{strategy}: parameters must be a dict, got {type(params).__name__}")
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise InvalidInput(
            f"{strategy}: unknown parameter(s) {', '.join(map(str, unknown))}; expected {', '.join(spec)}"
        )
    return {name: parse(strategy, name, params.get(name, default)) for name, (parse, default) in spec.items()}


# ------------------------------------------------------------------------------------------------------ strategies


class BookImbalance(Strategy):
    """Market-buy on top-of-book bid pressure; exit on time, take-profit or stop (see the module docstring)."""

    NAME = "book_imbalance"
    SPEC: dict[str, tuple[Callable[[str, str, Any], int], Any]] = {
        "threshold": (_fraction, "0.6"),
        "levels": (_integer(1), 5),
        "qty": (_decimal, "0.001"),
        "hold_ms": (_integer(1), 1000),
        "take_profit_bps": (_decimal, "5"),
        "stop_loss_bps": (_non_negative_decimal, "0"),
        "cooldown_ms": (_integer(0), 0),
    }
    PARAMETERS = {"threshold": float, "levels": int, "qty": float, "hold_ms": int, "take_profit_bps": float,
                  "stop_loss_bps": float, "cooldown_ms": int}  # fmt: skip
    ctx: L2StrategyContext  # set by on_start: book(), order(), symbol besides the StrategyContext

    def __init__(self, **params: Any) -> None:
        p = _validate(self.NAME, self.SPEC, params)
        self.threshold = p["threshold"]  # fraction, 1e-8 units
        self.levels = p["levels"]
        self.qty = p["qty"]
        self.hold_ns = p["hold_ms"] * _MS
        self.take_profit = p["take_profit_bps"] * _BPS // SCALE  # fraction, 1e-8 units
        self.stop_loss = p["stop_loss_bps"] * _BPS // SCALE
        self.cooldown_ns = p["cooldown_ms"] * _MS
        self.in_flight: str | None = None  # the one order travelling or working
        self.entry_ts = 0
        self.entry_price = 0
        self._entry_cost = 0
        self._entry_qty = 0
        self.resume_at = 0
        self.entries = 0

    def on_start(self, ctx: Any) -> None:
        self.ctx = ctx
        self.symbol = ctx.symbol

    def on_book(self, book: Any) -> None:
        if self.in_flight is not None:
            return
        ctx = self.ctx
        if ctx.sellable(self.symbol) > 0:  # long by a step or more (dust below one is flat)
            self._maybe_exit(book)
            return
        if ctx.now() < self.resume_at:
            return
        if self.levels == 1:
            bid, ask = book.best_bid(), book.best_ask()
            if bid is None or ask is None:
                return
            bids_qty, asks_qty = bid[1], ask[1]
        else:
            bids, asks = book.depth(self.levels)
            if not bids or not asks:
                return
            bids_qty = sum(q for _, q in bids)
            asks_qty = sum(q for _, q in asks)
        if (bids_qty - asks_qty) * SCALE > self.threshold * (bids_qty + asks_qty):
            self.in_flight = ctx.buy_market(self.symbol, qty=self.qty)
            self.entries += 1

    def on_trade(self, trade: Any) -> None:
        if self.in_flight is None and self.ctx.sellable(self.symbol) > 0:
            self._maybe_exit(self.ctx.book())

    def _maybe_exit(self, book: Any) -> None:
        if book.needs_resync:
            return
        ctx = self.ctx
        bid = book.best_bid()
        exit_now = ctx.now() - self.entry_ts >= self.hold_ns
        if bid is not None and not exit_now:
            entry = self.entry_price
            exit_now = bid[0] * SCALE >= entry * (SCALE + self.take_profit) or (
                self.stop_loss > 0 and bid[0] * SCALE <= entry * (SCALE - self.stop_loss)
            )
        if exit_now:
            self.in_flight = ctx.sell_market(self.symbol, qty=ctx.sellable(self.symbol))

    def on_order_event(self, event: Any) -> None:
        if event.client_order_id != self.in_flight:
            return
        typ = type(event)
        if typ is OrderFilled:
            if event.side is Side.BUY:
                if event.cum_qty == event.qty:  # first fill of this entry
                    self._entry_cost = self._entry_qty = 0
                self._entry_cost += event.price * event.qty
                self._entry_qty += event.qty
                self.entry_price = self._entry_cost // self._entry_qty  # average entry price, floored
                self.entry_ts = event.ts
            if event.leaves_qty == 0:
                self._done(event.ts)
        elif typ is OrderExpired or typ is OrderRejected or typ is OrderCancelled:
            self._done(event.ts)

    def _done(self, ts: int) -> None:
        self.in_flight = None
        if self.ctx.sellable(self.symbol) == 0:
            self.resume_at = ts + self.cooldown_ns


class PassiveMaker(Strategy):
    """Quote the best bid, offer the inventory at the best ask, inventory-limited (see the module docstring)."""

    NAME = "passive_maker"
    SPEC: dict[str, tuple[Callable[[str, str, Any], int], Any]] = {
        "qty": (_decimal, "0.001"),
        "max_inventory": (_decimal, "0.005"),
        "requote_ticks": (_integer(0), 1),
    }
    PARAMETERS = {"qty": float, "max_inventory": float, "requote_ticks": int}
    ctx: L2StrategyContext  # set by on_start

    def __init__(self, **params: Any) -> None:
        p = _validate(self.NAME, self.SPEC, params)
        if p["max_inventory"] < p["qty"]:
            raise InvalidInput(f"{self.NAME}: max_inventory must be at least qty")
        self.qty = p["qty"]
        self.max_inventory = p["max_inventory"]
        self.requote_ticks = p["requote_ticks"]
        # client order id -> [side, price, qty, cancelling]; an order lives here from sending until it is closed
        self.live: dict[str, list[Any]] = {}
        self.quotes = 0

    def on_start(self, ctx: Any) -> None:
        self.ctx = ctx
        self.symbol = ctx.symbol
        self.tick = ctx.instrument.price_tick

    def _live(self, side: Side) -> tuple[str, list[Any]] | None:
        for cid, state in self.live.items():
            if state[0] is side:
                return cid, state
        return None

    def on_book(self, book: Any) -> None:
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return
        ctx = self.ctx
        band = self.requote_ticks * self.tick
        position = ctx.position(self.symbol)
        offer = ctx.sellable(self.symbol)  # the position in whole lot steps: the dust below one is never offered
        buy = self._live(Side.BUY)
        if buy is not None:
            cid, state = buy
            if not state[3] and abs(state[1] - bid[0]) > band:
                state[3] = True
                ctx.cancel_order(cid)
        elif position + self.qty <= self.max_inventory:
            self._quote(Side.BUY, bid[0], self.qty)
        sell = self._live(Side.SELL)
        if sell is not None:
            cid, state = sell
            order = ctx.order(cid)
            leaves = state[2] - (order.filled if order is not None else 0)
            if not state[3] and (abs(state[1] - ask[0]) > band or leaves != offer):
                state[3] = True
                ctx.cancel_order(cid)
        elif offer > 0:
            self._quote(Side.SELL, ask[0], offer)

    def _quote(self, side: Side, price: int, qty: int) -> None:
        cid = self.ctx.place_order(
            self.symbol, side, qty=qty, price=price, order_type=OrderType.LIMIT, tif=TimeInForce.POST_ONLY
        )
        self.quotes += 1
        order = self.ctx.order(cid)
        if order is not None and not order.status.is_terminal:
            self.live[cid] = [side, price, qty, False]

    def on_order_event(self, event: Any) -> None:
        state = self.live.get(event.client_order_id)
        if state is None:
            return
        typ = type(event)
        if typ is OrderAccepted:
            return
        if typ is OrderFilled and event.leaves_qty > 0:
            return
        del self.live[event.client_order_id]


L2_STRATEGIES: dict[str, type[Strategy]] = {BookImbalance.NAME: BookImbalance, PassiveMaker.NAME: PassiveMaker}


def make_l2_strategy(name: str, params: dict[str, Any] | None = None) -> Strategy:
    """Build a built-in L2 strategy by name with validated parameters (missing ones take their defaults)."""
    cls = L2_STRATEGIES.get(name)
    if cls is None:
        raise InvalidInput(f"unknown L2 strategy {name!r}; valid L2 strategies: {', '.join(L2_STRATEGIES)}")
    return cls(**(params or {}))
