"""Instruments and their trading filters, with exact notional and fee arithmetic.

The filters mean what Binance's do (``binance-api/official-spot-docs/filters.md``): ``PRICE_FILTER`` (min/max price,
tick size), ``LOT_SIZE`` (min/max quantity, step size), ``MARKET_LOT_SIZE`` (min/max quantity of market orders, on top
of ``LOT_SIZE``) and ``NOTIONAL``/``MIN_NOTIONAL`` (price x quantity within ``[min_notional, max_notional]``, each bound
applying to market orders or not). An order that breaks one is rejected with a reason; nothing is ever rounded
silently.

All values are integers in 1e-8 units. ``price_tick * qty_step`` must be a whole multiple of 1e8 so that every
notional ``price * qty / 1e8`` is an exact integer of the quote asset's 1e-8 units; an instrument that breaks this is a
configuration error (:func:`exact_qty_step` gives the smallest step that keeps it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .._exceptions import ConfigError
from ..fixed import SCALE, format_decimal
from ..messages import RejectReason

__all__ = ["Instrument", "Pricing", "ceil_div", "exact_qty_step"]


def ceil_div(a: int, b: int) -> int:
    """Exact ceiling of a / b for b > 0."""
    return -(-a // b)


def exact_qty_step(price_tick: int, qty_step: int) -> int:
    """The smallest multiple of ``qty_step`` whose product with ``price_tick`` is a whole multiple of 1e8 (exact
    notionals); ``qty_step`` itself when it already is. For power-of-ten values it is the next power of ten:

    >>> exact_qty_step(10, 1_000_000)  # tick 0.0000001 x step 0.01 -> step 0.1
    10000000
    >>> exact_qty_step(1_000_000, 1_000)  # tick 0.01 x step 0.00001 is already exact
    1000
    """
    if price_tick <= 0 or qty_step <= 0:
        raise ConfigError("price_tick and qty_step must be positive")
    return math.lcm(qty_step, SCALE // math.gcd(price_tick, SCALE))


@dataclass(frozen=True, slots=True)
class Instrument:
    """A tradable symbol: assets, filters, and fee rates (fractions in 1e-8 units: 0.001 -> 100_000)."""

    symbol: str
    base_asset: str
    quote_asset: str
    price_tick: int
    qty_step: int
    min_qty: int
    max_qty: int
    min_notional: int
    min_price: int = 0
    max_price: int = 0  # 0: no maximum
    maker_fee_rate: int = 100_000
    taker_fee_rate: int = 100_000
    # MARKET_LOT_SIZE: market orders must also stay within these (0: no bound beyond min_qty / max_qty)
    market_min_qty: int = 0
    market_max_qty: int = 0
    max_notional: int = 0  # NOTIONAL maxNotional; 0: no maximum
    min_notional_market: bool = True  # NOTIONAL applyMinToMarket (MIN_NOTIONAL applyToMarket)
    max_notional_market: bool = False  # NOTIONAL applyMaxToMarket
    base_precision: int = 8  # decimals of the base asset (Binance baseAssetPrecision); informative
    quote_precision: int = 8  # decimals of the quote asset (Binance quoteAssetPrecision); informative

    def __post_init__(self) -> None:
        what = f"instrument {self.symbol}"
        if self.price_tick <= 0 or self.qty_step <= 0:
            raise ConfigError(f"{what}: price_tick and qty_step must be positive")
        if (self.price_tick * self.qty_step) % SCALE:
            raise ConfigError(
                f"{what}: price_tick x qty_step ({format_decimal(self.price_tick)} x {format_decimal(self.qty_step)})"
                " is finer than 1e-8 of the quote asset, so notionals would not be exact"
            )
        if self.min_qty < 0 or self.max_qty <= 0 or self.min_qty > self.max_qty:
            raise ConfigError(f"{what}: need 0 <= min_qty <= max_qty and max_qty > 0")
        if self.min_price < 0 or self.max_price < 0 or (self.max_price and self.min_price > self.max_price):
            raise ConfigError(
                f"{what}: need 0 <= min_price <= max_price (max_price 0: no maximum), got min_price "
                f"{format_decimal(self.min_price)} and max_price {format_decimal(self.max_price)}"
            )
        if self.min_notional < 0:
            raise ConfigError(f"{what}: min_notional must not be negative")
        if self.max_notional < 0 or (self.max_notional and self.max_notional < self.min_notional):
            raise ConfigError(f"{what}: need max_notional = 0 (no maximum) or max_notional >= min_notional")
        if self.market_min_qty < 0 or self.market_max_qty < 0:
            raise ConfigError(f"{what}: market_min_qty and market_max_qty must not be negative (0: no bound)")
        if self.market_max_qty and self.market_min_qty > self.market_max_qty:
            raise ConfigError(f"{what}: need market_min_qty <= market_max_qty")
        if self.base_precision < 0 or self.quote_precision < 0:
            raise ConfigError(f"{what}: base_precision and quote_precision must not be negative")
        for name in ("maker_fee_rate", "taker_fee_rate"):
            rate = getattr(self, name)
            if not 0 <= rate < SCALE:
                raise ConfigError(f"{what}: {name} must be in [0, 1)")

    @property
    def max_fee_rate(self) -> int:
        return max(self.maker_fee_rate, self.taker_fee_rate)

    def notional(self, price: int, qty: int) -> int:
        """price x qty in 1e-8 units of the quote asset (exact for on-tick, on-step values)."""
        return price * qty // SCALE

    def round_price_up(self, price: int) -> int:
        return ceil_div(price, self.price_tick) * self.price_tick

    def round_price_down(self, price: int) -> int:
        return price // self.price_tick * self.price_tick

    def check_price(self, price: int) -> tuple[RejectReason, str] | None:
        if price <= 0:
            return RejectReason.INVALID_PRICE, f"price {format_decimal(price)} must be positive"
        if price % self.price_tick:
            return (
                RejectReason.PRICE_NOT_ON_TICK,
                f"price {format_decimal(price)} is not a multiple of the tick {format_decimal(self.price_tick)}",
            )
        if price < self.min_price or (self.max_price and price > self.max_price):
            return (
                RejectReason.INVALID_PRICE,
                f"price {format_decimal(price)} outside [{format_decimal(self.min_price)}, "
                f"{format_decimal(self.max_price)}]",
            )
        return None

    def check_qty(self, qty: int, *, market: bool = False) -> tuple[RejectReason, str] | None:
        """``LOT_SIZE`` for every order; ``market`` orders must also pass ``MARKET_LOT_SIZE``."""
        if qty <= 0:
            return RejectReason.INVALID_QUANTITY, f"quantity {format_decimal(qty)} must be positive"
        if qty % self.qty_step:
            return (
                RejectReason.QUANTITY_NOT_ON_STEP,
                f"quantity {format_decimal(qty)} is not a multiple of the step {format_decimal(self.qty_step)}",
            )
        if qty < self.min_qty:
            return (
                RejectReason.QUANTITY_BELOW_MINIMUM,
                f"quantity {format_decimal(qty)} is below the minimum {format_decimal(self.min_qty)}",
            )
        if qty > self.max_qty:
            return (
                RejectReason.MAX_ORDER_QUANTITY,
                f"quantity {format_decimal(qty)} is above the instrument maximum {format_decimal(self.max_qty)}",
            )
        if market and qty < self.market_min_qty:
            return (
                RejectReason.QUANTITY_BELOW_MINIMUM,
                f"quantity {format_decimal(qty)} is below the market-order minimum {format_decimal(self.market_min_qty)}",
            )
        if market and self.market_max_qty and qty > self.market_max_qty:
            return (
                RejectReason.MAX_ORDER_QUANTITY,
                f"quantity {format_decimal(qty)} is above the market-order maximum {format_decimal(self.market_max_qty)}",
            )
        return None

    def check_notional(self, price: int, qty: int, *, market: bool = False) -> tuple[RejectReason, str] | None:
        """``NOTIONAL``: at least ``min_notional`` and at most ``max_notional`` (if set); for ``market`` orders (priced
        at the reference) each bound applies only when its ``*_market`` flag says so."""
        return self.check_notional_amount(self.notional(price, qty), market=market)

    def check_notional_amount(self, notional: int, *, market: bool = False) -> tuple[RejectReason, str] | None:
        """:meth:`check_notional` of a notional given as such: a market buy's quote amount (Binance applies
        ``NOTIONAL`` to ``quoteOrderQty`` as to a market order's notional)."""
        if notional < self.min_notional and (self.min_notional_market or not market):
            return (
                RejectReason.NOTIONAL_BELOW_MINIMUM,
                f"notional {format_decimal(notional)} {self.quote_asset} is below the minimum "
                f"{format_decimal(self.min_notional)}",
            )
        if self.max_notional and notional > self.max_notional and (self.max_notional_market or not market):
            return (
                RejectReason.MAX_ORDER_NOTIONAL,
                f"notional {format_decimal(notional)} {self.quote_asset} is above the instrument maximum "
                f"{format_decimal(self.max_notional)}",
            )
        return None


class Pricing:
    """How the kernel and the risk monitor value an asset in the valuation asset, one rule for both: the valuation
    asset itself at 1, any other at the price of the first instrument (in config order) quoting it in the valuation
    asset that has a price."""

    __slots__ = ("asset", "by")

    def __init__(self, instruments: Iterable[Instrument], valuation_asset: str) -> None:
        self.asset = valuation_asset
        self.by: dict[str, tuple[str, ...]] = {}  # asset -> the symbols quoting it in the valuation asset
        for inst in instruments:
            if inst.quote_asset == valuation_asset and inst.base_asset != valuation_asset:
                self.by[inst.base_asset] = (*self.by.get(inst.base_asset, ()), inst.symbol)

    def price(self, asset: str, prices: Mapping[str, int]) -> int | None:
        """The price of one unit of ``asset`` (``SCALE`` for the valuation asset) from ``prices`` (symbol -> price);
        None when an instrument could value it but has no price yet, 0 when no instrument values it."""
        if asset == self.asset:
            return SCALE
        symbols = self.by.get(asset)
        if not symbols:
            return 0
        for symbol in symbols:
            price = prices.get(symbol)
            if price is not None:
                return price
        return None

    def value(self, holdings: Mapping[str, tuple[int, int]], prices: Mapping[str, int]) -> tuple[int, bool, list[str]]:
        """``holdings`` (asset -> (free, locked)) valued at ``prices``: the total; whether every holding an
        instrument can value had a price (complete); and the assets held that no instrument values (left out)."""
        total, complete, unvalued = 0, True, []
        for asset, (free, locked) in holdings.items():
            amount = free + locked
            price = self.price(asset, prices)
            if price is None:
                complete = complete and not amount
            elif price:
                total += amount if price == SCALE else amount * price // SCALE
            elif amount:
                unvalued.append(asset)
        return total, complete, sorted(unvalued)
