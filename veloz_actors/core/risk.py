"""Risk: pre-trade checks on every order, post-trade limits, a loss circuit breaker and per-position stop-losses.

Every check that fails gives a :class:`~veloz_actors.messages.RejectReason` and a human-readable detail; the engine
turns it into an ``OrderRejected`` event. Time comes from the messages (``ts``), never from a wall clock, so a replay
takes exactly the same decisions.

Pre-trade, in order: circuit breaker (risk-increasing orders only), order rate (token bucket per account),
instrument filters (tick, step, min/max quantity, min notional), max order quantity and notional, price band around
the reference price, max position (the long position the buy could reach, open buys included), max leverage.
Available funds are checked last, by the account's atomic reservation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..fixed import SCALE, format_decimal
from ..messages import OrderType, PlaceOrder, RejectReason, Side, members
from .instruments import Instrument

__all__ = ["RiskEngine", "RiskLimits", "TokenBucket"]

# enum members read on the hot paths (messages.members: a module object's attributes, ~10x cheaper to read)
_Side = members(Side)
_OrderType = members(OrderType)

Rejection = tuple[RejectReason, str]


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Limits in 1e-8 units (quantities in base, notionals and losses in the valuation asset, fractions as 1e-8).

    A zero limit means "no limit" for the max_* fields.
    """

    max_order_qty: dict[str, int] = field(default_factory=dict)  # per symbol
    max_order_notional: int = 0
    max_position: dict[str, int] = field(default_factory=dict)  # per symbol, absolute base quantity
    max_leverage: int = 0  # long position value / equity, 1e-8 units (1x -> 100_000_000)
    price_band: int = (
        5_000_000  # 5 %: limit prices within reference x (1 +/- band); market orders protected at the edge
    )
    orders_per_second: int = 0  # token refill rate; 0 = unlimited
    burst: int = 50
    max_drawdown: int = 0  # fraction of peak equity that trips the breaker
    max_loss: int = 0  # absolute loss from the starting equity that trips the breaker
    stop_loss: int = 0  # per-position fraction below average entry that closes a long (spot: never buys)
    exempt_accounts: frozenset[str] = frozenset()  # e.g. the simulated market maker


class TokenBucket:
    """A token bucket on message time: ``rate`` tokens per second, at most ``burst`` stored."""

    __slots__ = ("rate", "burst", "tokens", "ts")

    def __init__(self, rate: int, burst: int, ts: int) -> None:
        self.rate = rate
        self.burst = burst
        # tokens are kept in units of 1e-9 of a token so refills on nanosecond clocks stay exact integers
        self.tokens = burst * 1_000_000_000
        self.ts = ts

    def take(self, ts: int) -> bool:
        if ts > self.ts:
            self.tokens = min(self.burst * 1_000_000_000, self.tokens + (ts - self.ts) * self.rate)
            self.ts = ts
        if self.tokens >= 1_000_000_000:
            self.tokens -= 1_000_000_000
            return True
        return False


class RiskEngine:
    """Holds the limits and the risk state (rate buckets, breaker) of every account."""

    __slots__ = ("limits", "_buckets", "tripped", "engine_halt", "peak_equity", "start_equity")

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        self._buckets: dict[str, TokenBucket] = {}
        self.tripped: dict[str, str] = {}  # account -> why its own breaker tripped
        self.engine_halt: str | None = None  # why the whole engine is halted (HaltTrading for "*"), if it is
        self.peak_equity: dict[str, int] = {}
        self.start_equity: dict[str, int] = {}

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        self.engine_halt = None  # a snapshot written before the engine-wide halt was kept apart has none
        for name, value in state[1].items():
            setattr(self, name, value)

    def pre_trade(
        self,
        cmd: PlaceOrder,
        inst: Instrument,
        *,
        reference_price: int | None,
        position_qty: int,
        open_qty_same_side: int,
        gross_exposure: int,
        equity: int,
        market_price: int | None = None,
        quote_rate: int | None = SCALE,
        quote_notional: bool = True,
    ) -> Rejection | None:
        """The pre-trade checks of one order; ``reference_price`` values it (a market order's protect price when its
        sender fixed one), ``market_price`` is the kernel's own last price (0: it has none; default: ``reference_price``),
        which alone bounds how much an order by quote amount may buy. ``quote_rate`` is the price of the symbol's quote
        asset in the valuation asset (``SCALE`` when they are the same; None: no price yet), which turns the order's
        notional into the valuation asset the notional and leverage limits are written in (``gross_exposure`` and
        ``equity`` are in it already). ``quote_notional``: an order by quote amount is held to the instrument's
        ``NOTIONAL`` filter as Binance holds it (journals of semantics 5 or less: it was not)."""
        limits = self.limits
        account = cmd.account_id
        exempt = account in limits.exempt_accounts
        # Spot: a BUY adds exposure; a SELL can only sell base the account holds (its reservation guarantees that,
        # whether the base was bought here or deposited), so it always reduces exposure.
        increases = cmd.side is _Side.BUY
        if increases and not exempt and (self.tripped or self.engine_halt is not None):
            halted = self.halted(account)
            if halted is not None:
                return RejectReason.CIRCUIT_BREAKER, f"trading halted: {halted}; send a reset to resume"
        if limits.orders_per_second and not exempt:
            bucket = self._buckets.get(account)
            if bucket is None:
                bucket = self._buckets[account] = TokenBucket(limits.orders_per_second, limits.burst, cmd.ts)
            if not bucket.take(cmd.ts):
                return RejectReason.RATE_LIMIT, f"more than {limits.orders_per_second} orders/s (burst {limits.burst})"

        price = cmd.price
        if cmd.order_type is _OrderType.LIMIT:
            if price is None:
                return RejectReason.INVALID_PRICE, "a limit order needs a price"
            rejection = inst.check_price(price)
            if rejection:
                return rejection
        elif price is not None:
            return RejectReason.INVALID_PRICE, "a market order takes no price"
        if cmd.quote_qty is not None:
            if cmd.order_type is not _OrderType.MARKET or cmd.side is not _Side.BUY:
                return RejectReason.INVALID_QUANTITY, "quote_qty is only for market buys"
            if cmd.quote_qty <= 0:
                return RejectReason.INVALID_QUANTITY, "quote_qty must be positive"
            if quote_notional:
                rejection = inst.check_notional_amount(cmd.quote_qty, market=True)
                if rejection:
                    return rejection
        else:
            rejection = inst.check_qty(cmd.qty, market=cmd.order_type is _OrderType.MARKET)
            if rejection:
                return rejection
        effective = price if price is not None else reference_price
        if effective is None:
            return RejectReason.NO_REFERENCE_PRICE, f"no reference price for {cmd.symbol} yet; market orders need one"
        if cmd.quote_qty is None:
            notional = inst.notional(effective, cmd.qty)
            rejection = inst.check_notional_amount(notional, market=cmd.order_type is _OrderType.MARKET)
            if rejection:
                return rejection
        else:
            notional = cmd.quote_qty
        max_qty = limits.max_order_qty.get(cmd.symbol, 0)
        max_pos = limits.max_position.get(cmd.symbol, 0)
        qty, what = cmd.qty, "quantity"
        if cmd.quote_qty is not None and (max_qty or max_pos) and not exempt:
            # what a quote amount buys at the lowest price the kernel expects it to trade at (never the sender's own
            # protect price, which could make the quantity look as small as the sender likes)
            market = reference_price if market_price is None else market_price
            if not market:
                return RejectReason.NO_REFERENCE_PRICE, (
                    f"no reference price for {cmd.symbol} yet: an order by quote amount needs one to be held to the "
                    "quantity limits"
                )
            low = self.band(market)[0] if limits.price_band else market
            qty = cmd.quote_qty * SCALE // max(low, 1)
            what = f"quantity (the quote amount at {format_decimal(low)}, the low end of the price band)"
        if max_qty and qty > max_qty and not exempt:
            return RejectReason.MAX_ORDER_QUANTITY, (
                f"{what} {format_decimal(qty)} above the risk limit {format_decimal(max_qty)}"
            )
        if not quote_rate and not increases:
            pass  # a sell lowers exposure: it is not held back for a price that values its notional
        elif (limits.max_order_notional or (limits.max_leverage and increases)) and not exempt:
            if not quote_rate:
                why = "no price yet to value" if quote_rate is None else "no instrument values"
                return RejectReason.NO_REFERENCE_PRICE, (
                    f"{why} {inst.quote_asset} (the quote asset of {cmd.symbol}) in the valuation asset, which the "
                    "notional and leverage limits are written in"
                )
            if quote_rate != SCALE:
                notional = notional * quote_rate // SCALE
        if limits.max_order_notional and notional > limits.max_order_notional and not exempt and quote_rate:
            quote = f" (in {inst.quote_asset} at {format_decimal(quote_rate)})" if quote_rate != SCALE else ""
            return RejectReason.MAX_ORDER_NOTIONAL, (
                f"notional {format_decimal(notional)}{quote} above the limit {format_decimal(limits.max_order_notional)}"
            )
        if price is not None and reference_price and limits.price_band and not exempt:
            low, high = self.band(reference_price)
            if not low <= price <= high:
                return RejectReason.PRICE_BAND, (
                    f"price {format_decimal(price)} outside the band [{format_decimal(low)}, {format_decimal(high)}]"
                    f" around the reference {format_decimal(reference_price)}"
                )
        if max_pos and not exempt and increases:
            # spot: a negative position is coins held before and sold; a buy brings it back towards zero first
            after = position_qty + open_qty_same_side + qty
            if after > max_pos:
                return RejectReason.MAX_POSITION, (
                    f"position would reach {format_decimal(after)}, above the limit {format_decimal(max_pos)}"
                )
        if limits.max_leverage and not exempt and increases:
            if equity <= 0:
                return RejectReason.MAX_LEVERAGE, "no positive equity to trade against"
            leverage = (gross_exposure + notional) * SCALE // equity
            if leverage > limits.max_leverage:
                return RejectReason.MAX_LEVERAGE, (
                    f"leverage would reach {format_decimal(leverage)}x, above {format_decimal(limits.max_leverage)}x"
                )
        return None

    def band(self, reference_price: int) -> tuple[int, int]:
        band = self.limits.price_band
        return reference_price * (SCALE - band) // SCALE, reference_price * (SCALE + band) // SCALE

    def protect_price(self, side: Side, reference_price: int, inst: Instrument) -> int:
        """How far a market order may walk the book: the edge of the price band, on tick."""
        low, high = self.band(reference_price)
        if side is _Side.BUY:
            return inst.round_price_down(high)
        return max(inst.round_price_up(low), inst.price_tick)

    def halted(self, account: str) -> str | None:
        """Why ``account`` may not add risk now: its own breaker, else the engine-wide halt; None when it may."""
        reason = self.tripped.get(account)
        if reason is None and account not in self.limits.exempt_accounts:
            reason = self.engine_halt
        return reason

    def post_trade(self, account: str, equity: int) -> str | None:
        """Track peak equity; return a reason when the breaker trips now (and not when it already was). ``equity``
        must value every holding that can be valued: the starting equity is the first one measured."""
        limits = self.limits
        if account in limits.exempt_accounts:
            return None
        start = self.start_equity.setdefault(account, equity)
        peak = self.peak_equity.get(account, equity)
        if equity > peak:
            peak = self.peak_equity[account] = equity
        else:
            self.peak_equity.setdefault(account, peak)
        if account in self.tripped:
            return None
        reason = None
        if limits.max_drawdown and peak > 0 and (peak - equity) * SCALE > limits.max_drawdown * peak:
            reason = (
                f"drawdown {format_decimal((peak - equity) * SCALE // peak)} from peak equity "
                f"{format_decimal(peak)} exceeds {format_decimal(limits.max_drawdown)}"
            )
        elif limits.max_loss and start - equity > limits.max_loss:
            reason = f"loss {format_decimal(start - equity)} exceeds {format_decimal(limits.max_loss)}"
        if reason:
            self.tripped[account] = reason
        return reason

    def reset(self, account: str, equity: int | None) -> bool:
        """Lift the account's own breaker and measure loss and drawdown afresh from ``equity`` (None: some holding
        has no price yet; the next complete measurement starts them)."""
        was = self.tripped.pop(account, None) is not None
        if equity is None:
            self.peak_equity.pop(account, None)
            self.start_equity.pop(account, None)
        else:
            self.peak_equity[account] = equity
            self.start_equity[account] = equity
        return was

    def stop_hit(self, qty: int, avg_entry: int, mark: int) -> bool:
        stop = self.limits.stop_loss
        if not stop or not qty or not mark:
            return False
        if qty > 0:
            return mark * SCALE < avg_entry * (SCALE - stop)
        return mark * SCALE > avg_entry * (SCALE + stop)
