"""Pluggable execution models of the recorded-market venue: fees, slippage, order-entry latency and queue position.

:class:`~veloz_actors.venues.l2replay.L2ReplayVenue` (the L2 backtest's exchange) runs them; they live with the venue
because they describe how the exchange treats an order, not the trader's side. ``backtest.fill_models`` re-exports
them. Each model is a small class behind a :class:`typing.Protocol`, so a quant can swap one without touching the
loop (hftbacktest's ``ConstantLatency`` / ``RiskAverseQueueModel`` split, in exact integers):

* :class:`FeeModel` -- maker and taker rates (fractions in 1e-8 units: 0.001 -> 100_000). An order's total fee is
  ``ceil(sum(rate_i x notional_i) / 1e8)`` over its fills, charged as it accrues, exactly as SimVenue charges it.
* :class:`NoSlippage` / :class:`FixedSlippage` -- a fixed fraction added against the trader to every *market-order*
  fill price, then rounded to the tick against the trader. Limit orders never slip: they fill at their price or better.
* :class:`ConstantLatency` / :class:`UniformLatency` -- order entry latency: how long after the strategy sends an order
  or a cancel the venue sees it. The random one draws integers from numpy's PCG64 seeded by the run's seed, one draw
  per command in send order, so the same seed gives the same arrivals.
* :class:`ConservativeQueue` -- where a resting order stands in the recorded queue at its price (see its docstring).

>>> fees = FeeModel(maker_rate=0, taker_rate=100_000)
>>> fees.max_fee(6_183_763_000_000)  # ceil(0.001 x 61837.63) in 1e-8 units
6183763000
>>> FixedSlippage(10_000).adjust(True, 6_183_763_000_000, 1_000_000)  # 1 bp on a buy, rounded up to the cent
6184382000000
>>> q = ConservativeQueue()
>>> q.on_trade(q.on_arrival(50), 80)  # 50 ahead; a trade of 80 at our price: 30 of it reaches us
(0, 30)
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .._exceptions import InvalidInput
from ..core.instruments import ceil_div
from ..fixed import SCALE

__all__ = [
    "ConservativeQueue",
    "ConstantLatency",
    "FeeModel",
    "FixedSlippage",
    "LatencyModel",
    "NoSlippage",
    "QueueModel",
    "SlippageModel",
    "UniformLatency",
]


class FeeModel:
    """Maker and taker fee rates, fractions of notional in 1e-8 units; fees in quote, rounded up per order."""

    __slots__ = ("maker_rate", "taker_rate")

    def __init__(self, maker_rate: int, taker_rate: int) -> None:
        for name, rate in (("maker_rate", maker_rate), ("taker_rate", taker_rate)):
            if isinstance(rate, bool) or not isinstance(rate, int) or not 0 <= rate < SCALE:
                raise InvalidInput(f"fee model: {name} must be an int fraction in [0, 1e8), got {rate!r}")
        self.maker_rate = maker_rate
        self.taker_rate = taker_rate

    @property
    def max_rate(self) -> int:
        return max(self.maker_rate, self.taker_rate)

    def max_fee(self, notional: int) -> int:
        """The most any mix of maker and taker fills of ``notional`` can cost (what a buy reserves for fees)."""
        return ceil_div(notional * self.max_rate, SCALE)

    def fee(self, fee_numerator: int, fees_paid: int, notional: int, maker: bool) -> tuple[int, int]:
        """Fee of one fill and the order's new fee numerator: ``ceil(total numerator / 1e8) - fees already paid``."""
        numerator = fee_numerator + notional * (self.maker_rate if maker else self.taker_rate)
        return ceil_div(numerator, SCALE) - fees_paid, numerator


class SlippageModel(Protocol):
    """Moves a market-order fill price against the trader (``buy``: up; sell: down), keeping it on the tick."""

    def adjust(self, buy: bool, price: int, tick: int) -> int: ...


class NoSlippage:
    """Market orders fill at the recorded level prices."""

    __slots__ = ()

    def adjust(self, buy: bool, price: int, tick: int) -> int:
        return price


class FixedSlippage:
    """Every market-order fill price moves ``rate`` (fraction in 1e-8 units; 1 bp = 10_000) against the trader."""

    __slots__ = ("rate",)

    def __init__(self, rate: int) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int) or not 0 <= rate < SCALE:
            raise InvalidInput(f"slippage must be an int fraction in [0, 1e8), got {rate!r}")
        self.rate = rate

    def adjust(self, buy: bool, price: int, tick: int) -> int:
        if buy:
            return ceil_div(price * (SCALE + self.rate), SCALE * tick) * tick
        return price * (SCALE - self.rate) // (SCALE * tick) * tick


class LatencyModel(Protocol):
    """Order entry latency in ns: called once per order or cancel, in the order the strategy sends them."""

    def entry_ns(self) -> int: ...


class ConstantLatency:
    """Every command reaches the venue ``ns`` nanoseconds after it is sent."""

    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        if isinstance(ns, bool) or not isinstance(ns, int) or ns < 0:
            raise InvalidInput(f"latency must be a non-negative int of ns, got {ns!r}")
        self.ns = ns

    def entry_ns(self) -> int:
        return self.ns


class UniformLatency:
    """Latency drawn uniformly from ``[low_ns, high_ns]`` (integers) with numpy PCG64 seeded by ``seed``."""

    __slots__ = ("low_ns", "high_ns", "_rng")

    def __init__(self, low_ns: int, high_ns: int, seed: int) -> None:
        for name, value in (("low_ns", low_ns), ("high_ns", high_ns)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"latency {name} must be a non-negative int of ns, got {value!r}")
        if high_ns < low_ns:
            raise InvalidInput(f"latency high_ns ({high_ns}) must not be below low_ns ({low_ns})")
        self.low_ns = low_ns
        self.high_ns = high_ns
        self._rng = np.random.Generator(np.random.PCG64(seed))

    def entry_ns(self) -> int:
        return int(self._rng.integers(self.low_ns, self.high_ns, endpoint=True))


class QueueModel(Protocol):
    """Queue position of a resting order at its price: how much recorded quantity must trade before it fills."""

    def on_arrival(self, level_qty: int) -> int: ...

    def on_trade(self, queue_ahead: int, trade_qty: int) -> tuple[int, int]: ...

    def on_level(self, queue_ahead: int, level_qty: int) -> int: ...


class ConservativeQueue:
    """The order joins the back of the recorded queue and only moves up when the data prove it did.

    * On arrival, everything recorded at its price is ahead of it: ``queue_ahead = level qty``.
    * A recorded trade at its price (by an aggressor on the other side) eats the queue ahead first; only the part of
      the trade beyond ``queue_ahead`` reaches the order.
    * When the recorded level shrinks below ``queue_ahead`` (cancels ahead of us, or trades not yet seen),
      ``queue_ahead = min(queue_ahead, level qty)``; a level that grows (orders joining behind us) changes nothing.

    A trade *through* the price (the counterparty accepted a worse price than ours) is handled by the loop: it fills
    the whole remaining order.
    """

    __slots__ = ()

    def on_arrival(self, level_qty: int) -> int:
        return level_qty

    def on_trade(self, queue_ahead: int, trade_qty: int) -> tuple[int, int]:
        """``(new queue_ahead, quantity that reaches the order)`` after a trade of ``trade_qty`` at its price."""
        if trade_qty <= queue_ahead:
            return queue_ahead - trade_qty, 0
        return 0, trade_qty - queue_ahead

    def on_level(self, queue_ahead: int, level_qty: int) -> int:
        return level_qty if level_qty < queue_ahead else queue_ahead
