"""The strategy interface: the same object runs in a backtest and, later, against a live or simulated engine.

A strategy overrides the callbacks it needs and acts through the :class:`StrategyContext` it receives in
:meth:`Strategy.on_start`::

    class Momentum(Strategy):
        def on_start(self, ctx):
            self.ctx = ctx

        def on_bar(self, bar):
            if bar.close > bar.open and self.ctx.position(bar.symbol) == 0:
                self.ctx.buy_market(bar.symbol, quote_qty=self.ctx.free(self.ctx.quote_asset(bar.symbol)))

Callbacks receive the core's frozen messages (``Trade``, ``BookTop``/``BookDelta``, order events), except
:meth:`Strategy.on_bar`, which receives a :class:`Bar` *view*: the driver reuses one object per symbol and updates it
in place for every bar, so a backtest does not allocate per bar. A strategy that keeps a bar must copy what it needs.

Orders placed from a callback are commands like any other: in a bar backtest they reach the venue at the next bar's
open (the next moment the market trades); against an engine they go through risk and the OMS at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..messages import OrderType, Side, TimeInForce

if TYPE_CHECKING:
    from ..core.instruments import Instrument
    from ..core.l2book import L2Book
    from ..core.oms import Order

__all__ = ["Bar", "L2StrategyContext", "Strategy", "StrategyContext"]


class Bar:
    """A candle as a reusable view (ints in 1e-8 units, ``open_time`` in ns, ``index`` = position in the series)."""

    __slots__ = ("symbol", "index", "open_time", "open", "high", "low", "close", "volume")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.index = -1
        self.open_time = 0
        self.open = 0
        self.high = 0
        self.low = 0
        self.close = 0
        self.volume = 0

    def __repr__(self) -> str:
        return (
            f"Bar({self.symbol} #{self.index} t={self.open_time} o={self.open} h={self.high} l={self.low} "
            f"c={self.close} v={self.volume})"
        )


class StrategyContext(Protocol):
    """What a strategy can see and do. Amounts are ints in 1e-8 units; ids are client order ids. ``place_order``
    without ``order_type`` places a limit order when given a price and a market order without one, as the Python
    handle and the stdio ``ORDER`` line do (a price with ``order_type=MARKET`` is an error, never ignored)."""

    def now(self) -> int: ...
    def position(self, symbol: str) -> int: ...
    def free(self, asset: str) -> int: ...
    def locked(self, asset: str) -> int: ...
    def base_asset(self, symbol: str) -> str: ...
    def quote_asset(self, symbol: str) -> str: ...
    def qty_step(self, symbol: str) -> int: ...
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
    ) -> str: ...
    def cancel_order(self, client_order_id: str) -> None: ...

    # Shortcuts over place_order, inherited by the contexts that subclass this protocol.
    def buy_market(self, symbol: str, *, qty: int = 0, quote_qty: int | None = None) -> str:
        return self.place_order(symbol, Side.BUY, qty=qty, quote_qty=quote_qty)

    def sell_market(self, symbol: str, *, qty: int) -> str:
        return self.place_order(symbol, Side.SELL, qty=qty)

    def sellable(self, symbol: str) -> int:
        """The long position rounded down to the lot step: what a sell of it can take (0 when flat, short, or only
        dust is held). After a fee taken in the coin (Binance's rule without BNB) a live position need not be a whole
        number of steps (0.01234 BTC bought keeps 0.01232766), and a sell of it as it is would be refused."""
        step = self.qty_step(symbol)
        return max(self.position(symbol), 0) // step * step


class L2StrategyContext(StrategyContext, Protocol):
    """What an L2 (tick) strategy sees besides :class:`StrategyContext`: the one symbol traded, its recorded book and
    the state of its own orders. The L2 backtest's context provides it (``backtest.l2.L2Context``)."""

    @property
    def symbol(self) -> str: ...
    @property
    def instrument(self) -> Instrument: ...
    def book(self, symbol: str | None = None) -> L2Book: ...
    def order(self, client_order_id: str) -> Order | None: ...
    def open_orders(self) -> list[Order]: ...


class Strategy:
    """Base class of strategies; every callback is optional."""

    #: parameter names and their types, for validation by the CLI and searches (subclasses fill it in)
    PARAMETERS: dict[str, type] = {}

    def on_start(self, ctx: StrategyContext) -> None:
        self.ctx = ctx

    def on_bar(self, bar: Bar) -> None:
        pass

    def on_trade(self, trade: Any) -> None:
        pass

    def on_book(self, book: Any) -> None:
        pass

    def on_order_event(self, event: Any) -> None:
        pass

    def on_stop(self) -> None:
        pass
