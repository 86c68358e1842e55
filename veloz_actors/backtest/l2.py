"""The event-driven tick/L2 backtest: a strategy trading against a recorded Binance book, in one process, exactly.

The market is a recorded WebSocket capture (:func:`~veloz_actors.backtest.loaders.load_market_events`): depth snapshot
and diffs rebuild an :class:`~veloz_actors.core.l2book.L2Book` (Binance's update-id rules), public trades drive the
queues. The simulation clock is the capture's local receive time (``ts_recv``), which is also when the strategy sees
each event. Every rule below is deterministic; randomness only enters through a seeded latency model.

**Orders.** The strategy sends commands through a :class:`StrategyContext`. Funds are reserved at once in a
:class:`~veloz_actors.core.account.Ledger` (a BUY locks notional plus the largest possible fee; a SELL locks the base;
too little money is an :class:`OrderRejected` event, not an exception), then the command travels to the venue and
arrives ``LatencyModel.entry_ns()`` later. Commands arrive in the order they were sent (one connection: a later command
never overtakes an earlier one). An event recorded at the same nanosecond as an arrival is applied first.

**At arrival** (the book is the recorded book as of the arrival time):

* a market order walks the opposite side of the recorded book level by level, best first, each fill at the level's
  price (moved against the trader by the :class:`SlippageModel`), up to its *protect price* -- fixed when it was sent
  as the best opposite price moved ``market_protect_rate`` (default 5 %) against the trader, like Binance's market
  order price protection. Whatever is left when the protect price or the book is reached expires (``NO_LIQUIDITY``).
  A market BUY may give ``quote_qty`` instead of ``qty``: it spends at most that much, fees included.
* a limit order that crosses takes liquidity the same way up to its limit price (no slippage: a limit fills at its
  price or better); ``POST_ONLY`` expires instead (``WOULD_TAKE_LIQUIDITY``), ``FOK`` expires unless the book can fill
  all of it, ``IOC`` expires its remainder; a ``GTC``/``POST_ONLY`` remainder rests.
* our fills consume level quantity only *virtually, for that order*: the recorded book is never altered by our trading
  (the next order sees the recorded book again). This is the standard assumption of L2 replay -- our orders are small
  against the market -- and the reason to keep order sizes realistic.

**Resting orders** fill under the :class:`QueueModel` (default :class:`ConservativeQueue`): on arrival the whole
recorded quantity at the order's price is ahead of it; recorded trades at that price by an aggressor on the other side
eat that queue first and only what is beyond it fills the order; a recorded level that shrinks below the queue ahead
shrinks it. A recorded trade *through* the price (a SELL aggressor below our bid, a BUY aggressor above our ask) fills
the whole remaining order at its price. Resting fills are MAKER fills at the order's price. A recorded book that
crosses a resting order without a trade does not fill it (conservative). Cancels take effect when they arrive, after
the same latency; a cancel that finds its order already closed does nothing (counted in ``cancels_too_late``).

**Money.** Every fill settles through the ledger between the trader (``main``) and a counterparty account (``venue``)
that holds the other side; fees go to the ledger's fee bucket. At the end ``ledger.totals() == ledger.deposited`` is
asserted: no money created or destroyed. The position (:meth:`StrategyContext.position`) is the net quantity bought
by this run's fills; balances include ``initial_base``.

**Results.** :class:`L2Result` holds the trader's fills (:data:`L2_TRADE_DTYPE`), equity samples
(:data:`EQUITY_DTYPE`, every ``equity_interval_ns`` of recorded time, marked at the mid), metrics and timings.
:func:`write_trades_csv` writes the fills with exact decimals: same data + settings + seed -> the same bytes.

>>> from veloz_actors.backtest.loaders import load_market_events          # doctest: +SKIP
>>> from veloz_actors.backtest.l2_strategies import make_l2_strategy       # doctest: +SKIP
>>> events = load_market_events("../shared/data/ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz")  # doctest: +SKIP
>>> result = run_l2_backtest(events, make_l2_strategy("book_imbalance", {}), L2Settings.for_events(events))  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import os
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import ConfigError, DataError, InvalidInput, SequenceGap
from ..core.account import Ledger
from ..core.instruments import Instrument, ceil_div
from ..core.l2book import L2Book
from ..core.oms import OMS, Order
from ..fixed import SCALE, format_decimal
from ..messages import (
    BookDelta,
    Liquidity,
    MarketEvent,
    OrderRejected,
    OrderStatus,
    OrderType,
    PlaceOrder,
    RejectReason,
    Side,
    TimeInForce,
    Trade,
)
from ..strategies.base import Strategy, StrategyContext
from .fill_models import (
    ConservativeQueue,
    ConstantLatency,
    FeeModel,
    FixedSlippage,
    LatencyModel,
    NoSlippage,
    QueueModel,
    SlippageModel,
    UniformLatency,
)
from .runner import split_symbol

__all__ = [
    "EQUITY_DTYPE",
    "L2_TRADE_DTYPE",
    "L2Context",
    "L2Result",
    "L2Settings",
    "is_tick_capture",
    "l2_trades_to_records",
    "run_l2_backtest",
    "write_trades_csv",
]

VENUE = "venue"
TRADER = "main"

L2_TRADE_DTYPE = np.dtype(
    [
        ("ts", "<i8"),  # venue time of the fill (capture clock), ns since the epoch
        ("order_id", "<i8"),  # the backtest's order id (1, 2, ...); client ids are in the records and the CSV
        ("side", "<i8"),  # +1 BUY, -1 SELL
        ("price", "<i8"),  # fill price, 1e-8 quote units
        ("qty", "<i8"),  # filled quantity, 1e-8 base units
        ("fee", "<i8"),  # fee of this fill, 1e-8 quote units
        ("maker", "<i8"),  # 1 MAKER (resting order), 0 TAKER
        ("cash_after", "<i8"),  # trader's quote (free + locked) after the fill
        ("base_after", "<i8"),  # trader's base (free + locked) after the fill
    ]
)

EQUITY_DTYPE = np.dtype(
    [
        ("ts", "<i8"),  # sample time, ns (capture clock)
        ("mark", "<i8"),  # mid price (last trade price while the book is not synced), 1e-8 quote units
        ("cash", "<i8"),  # quote, free + locked
        ("base", "<i8"),  # base, free + locked
        ("equity", "<i8"),  # cash + base x mark, 1e-8 quote units (floored)
    ]
)

_CSV_HEADER = "ts_ns,client_order_id,order_id,side,price,qty,fee,liquidity,cash_after,base_after\n"
_CAPTURE_LINE = re.compile(rb"^\d{12,19} [\[{]")
_INT_FIELDS = (
    "initial_cash", "initial_base", "fee_rate", "slippage_rate", "latency_ns", "latency_jitter_ns",
    "market_protect_rate", "equity_interval_ns", "price_tick", "qty_step",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class L2Settings:
    """Everything an L2 backtest needs besides data, strategy and seed. Money and rates are ints in 1e-8 units.

    ``fee_rate`` is the taker rate (0.001 -> 100_000) and ``maker_fee_rate`` the maker rate (None: same as taker).
    ``slippage_rate`` is added against the trader to market-order fill prices (1 bp -> 10_000). Latency:
    ``latency_ns`` fixed, plus, when ``latency_jitter_ns > 0``, a seeded uniform draw in ``[0, latency_jitter_ns]``.
    Build it from the data with :meth:`for_events`, which infers the symbol, the market, the tick and the step.
    """

    symbol: str
    price_tick: int
    qty_step: int
    market: str = "spot"  # "spot" or "futures": the update-id rules of the depth stream (futures trade as cash here)
    initial_cash: int = 10_000 * SCALE
    initial_base: int = 0
    fee_rate: int = 100_000
    maker_fee_rate: int | None = None
    slippage_rate: int = 0
    latency_ns: int = 0
    latency_jitter_ns: int = 0
    market_protect_rate: int = 5_000_000  # 5 %: how far from the best price a market order may walk
    equity_interval_ns: int = 1_000_000_000

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInput(f"L2Settings.{name} must be an int (1e-8 units or ns), got {value!r}")
        if self.maker_fee_rate is not None and (
            isinstance(self.maker_fee_rate, bool) or not isinstance(self.maker_fee_rate, int)
        ):
            raise InvalidInput(f"L2Settings.maker_fee_rate must be an int or None, got {self.maker_fee_rate!r}")
        if not self.symbol or "_" in self.symbol:
            raise InvalidInput(
                f"L2 backtest symbol {self.symbol!r}: only spot and USD-margined (linear) symbols are supported, "
                "not coin-margined (inverse) contracts"
            )
        if self.market not in ("spot", "futures"):
            raise InvalidInput(f"market must be 'spot' or 'futures', got {self.market!r}")
        if self.price_tick <= 0 or self.qty_step <= 0:
            raise InvalidInput("price_tick and qty_step must be positive")
        if self.initial_cash < 0 or self.initial_base < 0:
            raise InvalidInput("initial cash and base must not be negative")
        if self.initial_cash == 0 and self.initial_base == 0:
            raise InvalidInput("the trader needs some initial cash or base")
        for name in ("fee_rate", "slippage_rate", "market_protect_rate"):
            if not 0 <= getattr(self, name) < SCALE:
                raise InvalidInput(f"{name} must be a fraction in [0, 1), got {format_decimal(getattr(self, name))}")
        if self.maker_fee_rate is not None and not 0 <= self.maker_fee_rate < SCALE:
            raise InvalidInput(
                f"maker_fee_rate must be a fraction in [0, 1), got {format_decimal(self.maker_fee_rate)}"
            )
        if self.latency_ns < 0 or self.latency_jitter_ns < 0:
            raise InvalidInput("latency must not be negative")
        if self.equity_interval_ns <= 0:
            raise InvalidInput("equity_interval_ns must be positive")

    @classmethod
    def for_events(cls, events: Sequence[MarketEvent], **overrides: Any) -> L2Settings:
        """Settings for a capture: symbol, market, price tick and quantity step inferred from the data, then
        ``overrides`` (any field, e.g. ``fee_rate=100_000, initial_cash=10_000 * SCALE``) applied.

        The tick (step) is the finest decimal step the capture's prices (quantities) are written in: 0.01 and 0.00001
        for Binance spot BTCUSDT.
        """
        symbol, market, tick, step = _infer(events)
        base: dict[str, Any] = {"symbol": symbol, "market": market, "price_tick": tick, "qty_step": step}
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidInput(f"unknown L2 setting(s): {', '.join(unknown)}")
        base.update({k: v for k, v in overrides.items() if v is not None or k == "maker_fee_rate"})
        return cls(**base)

    @property
    def taker_rate(self) -> int:
        return self.fee_rate

    @property
    def maker_rate(self) -> int:
        return self.fee_rate if self.maker_fee_rate is None else self.maker_fee_rate


def _infer(events: Sequence[MarketEvent]) -> tuple[str, str, int, int]:
    symbol = None
    market = "spot"
    price_zeros = qty_zeros = 8
    for event in events:
        if symbol is None:
            symbol = getattr(event, "symbol", None)
        if type(event) is Trade:
            price_zeros = min(price_zeros, _trailing_zeros(event.price))
            qty_zeros = min(qty_zeros, _trailing_zeros(event.qty))
        elif type(event) is BookDelta:
            if not event.is_snapshot and event.prev_update_id != -1:
                market = "futures"
            for levels in (event.bids, event.asks):
                for price, qty in levels:
                    price_zeros = min(price_zeros, _trailing_zeros(price))
                    if qty:
                        qty_zeros = min(qty_zeros, _trailing_zeros(qty))
    if symbol is None:
        raise InvalidInput("the capture has no market events to infer the symbol from")
    return symbol, market, 10**price_zeros, 10**qty_zeros


def _trailing_zeros(value: int) -> int:
    zeros = 0
    while zeros < 8 and value and value % 10 == 0:
        value //= 10
        zeros += 1
    return zeros if value else 8


def is_tick_capture(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a recorded WebSocket capture (``<local ts> <JSON>`` lines, gzip or plain text).

    Only the first line is read; a missing or unreadable file is simply not a capture.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as handle:
            first = handle.readline(4096)
    except (OSError, EOFError, gzip.BadGzipFile):
        return False
    return bool(_CAPTURE_LINE.match(first))


@dataclass
class L2Result:
    """Fills (:data:`L2_TRADE_DTYPE`), equity samples (:data:`EQUITY_DTYPE`), metrics, timings and the final state.

    ``client_order_ids[order_id]`` names each order; ``ledger`` is the run's ledger (balances, fees, positions);
    ``orders`` every order the strategy sent (JSON-ready dicts with their state history).
    """

    trades: np.ndarray
    equity: np.ndarray
    metrics: dict[str, float | int]
    settings: L2Settings
    seed: int
    timing: dict[str, float] = field(default_factory=dict)
    events: int = 0
    client_order_ids: dict[int, str] = field(default_factory=dict)
    orders: list[dict[str, object]] = field(default_factory=list)
    ledger: Ledger | None = None

    def records(self) -> list[dict[str, int | str]]:
        """The fills as JSON-ready dicts with exact decimal strings (see :func:`l2_trades_to_records`)."""
        return l2_trades_to_records(self.trades, self.client_order_ids)


def l2_trades_to_records(trades: np.ndarray, client_order_ids: dict[int, str] | None = None) -> list[dict[str, Any]]:
    """Fills as dicts: ``ts`` (ms), ``ts_ns``, ``client_order_id``, ``side``, ``price``/``qty``/``fee`` (exact
    decimals) and ``liquidity`` (MAKER/TAKER)."""
    names = client_order_ids or {}
    return [
        {
            "ts": ts // 1_000_000,
            "ts_ns": ts,
            "client_order_id": names.get(order_id, str(order_id)),
            "side": "BUY" if side > 0 else "SELL",
            "price": format_decimal(price),
            "qty": format_decimal(qty),
            "fee": format_decimal(fee),
            "liquidity": "MAKER" if maker else "TAKER",
        }
        for ts, order_id, side, price, qty, fee, maker in zip(
            trades["ts"].tolist(),
            trades["order_id"].tolist(),
            trades["side"].tolist(),
            trades["price"].tolist(),
            trades["qty"].tolist(),
            trades["fee"].tolist(),
            trades["maker"].tolist(),
            strict=True,
        )
    ]


def write_trades_csv(result: L2Result, path: str | os.PathLike[str]) -> None:
    """Write the fills as CSV with exact decimals and ``\\n`` line ends: byte-identical for identical runs."""
    names = result.client_order_ids
    trades = result.trades
    columns = L2_TRADE_DTYPE.names
    assert columns is not None  # a structured dtype always has field names (numpy's stubs say Optional)
    lines = [_CSV_HEADER]
    for ts, order_id, side, price, qty, fee, maker, cash, base in zip(
        *(trades[name].tolist() for name in columns), strict=True
    ):
        lines.append(
            f"{ts},{names.get(order_id, order_id)},{order_id},{'BUY' if side > 0 else 'SELL'},{format_decimal(price)},"
            f"{format_decimal(qty)},{format_decimal(fee)},{'MAKER' if maker else 'TAKER'},{format_decimal(cash)},"
            f"{format_decimal(base)}\n"
        )
    Path(path).write_bytes("".join(lines).encode())


# ---------------------------------------------------------------------------------------------------------- context


class L2Context(StrategyContext):
    """The :class:`~veloz_actors.backtest.strategy.StrategyContext` of an L2 backtest, plus the recorded book.

    Amounts are ints in 1e-8 units. :meth:`book` is the recorded :class:`L2Book` (read it, never change it).
    """

    def __init__(self, sim: _Simulation) -> None:
        self._sim = sim

    @property
    def symbol(self) -> str:
        return self._sim.instrument.symbol

    @property
    def instrument(self) -> Instrument:
        return self._sim.instrument

    def now(self) -> int:
        return self._sim.clock

    def book(self, symbol: str | None = None) -> L2Book:
        return self._sim.book

    def position(self, symbol: str) -> int:
        pos = self._sim.ledger.positions.get((TRADER, symbol))
        return pos.qty if pos is not None else 0

    def free(self, asset: str) -> int:
        return self._sim.ledger.free(TRADER, asset)

    def locked(self, asset: str) -> int:
        return self._sim.ledger.locked(TRADER, asset)

    def base_asset(self, symbol: str) -> str:
        return self._sim.instrument.base_asset

    def quote_asset(self, symbol: str) -> str:
        return self._sim.instrument.quote_asset

    def order(self, client_order_id: str) -> Order | None:
        """The backtest's state of one of the strategy's orders (status, filled, price ...), or None."""
        return self._sim.oms.get(TRADER, client_order_id)

    def open_orders(self) -> list[Order]:
        """Orders the venue has accepted and not yet closed (orders still travelling to it are not included)."""
        return self._sim.oms.open_orders(TRADER)

    def place_order(
        self,
        symbol: str,
        side: Side,
        *,
        qty: int = 0,
        price: int | None = None,
        order_type: OrderType = OrderType.MARKET,
        tif: TimeInForce = TimeInForce.GTC,
        quote_qty: int | None = None,
        client_order_id: str | None = None,
    ) -> str:
        return self._sim.place(symbol, side, qty, price, order_type, tif, quote_qty, client_order_id)

    def cancel_order(self, client_order_id: str) -> None:
        self._sim.cancel(client_order_id)

    def buy_limit(self, symbol: str, *, qty: int, price: int, tif: TimeInForce = TimeInForce.GTC) -> str:
        return self.place_order(symbol, Side.BUY, qty=qty, price=price, order_type=OrderType.LIMIT, tif=tif)

    def sell_limit(self, symbol: str, *, qty: int, price: int, tif: TimeInForce = TimeInForce.GTC) -> str:
        return self.place_order(symbol, Side.SELL, qty=qty, price=price, order_type=OrderType.LIMIT, tif=tif)


# ------------------------------------------------------------------------------------------------------- simulation


class _Resting:
    __slots__ = ("order", "price", "queue_ahead")

    def __init__(self, order: Order, price: int, queue_ahead: int) -> None:
        self.order = order
        self.price = price  # the order's limit price: only limit orders rest
        self.queue_ahead = queue_ahead


class _Simulation:
    """The venue, the trader's account and the strategy's outbox of one run (private: see the module docstring)."""

    def __init__(
        self,
        settings: L2Settings,
        strategy: Strategy,
        fees: FeeModel,
        slippage: SlippageModel,
        latency: LatencyModel,
        queue: QueueModel,
    ) -> None:
        base, quote = split_symbol(settings.symbol)
        try:
            self.instrument = Instrument(
                symbol=settings.symbol,
                base_asset=base,
                quote_asset=quote,
                price_tick=settings.price_tick,
                qty_step=settings.qty_step,
                min_qty=settings.qty_step,
                max_qty=10**6 * SCALE,
                min_notional=0,
                maker_fee_rate=fees.maker_rate,
                taker_fee_rate=fees.taker_rate,
            )
        except ConfigError as exc:
            raise InvalidInput(f"L2 settings do not fit {settings.symbol}: {exc}") from exc
        self.settings = settings
        self.strategy = strategy
        self.fees = fees
        self.slippage = slippage
        self.latency = latency
        self.queue = queue
        self.base = base
        self.quote = quote
        self.book = L2Book(settings.symbol, settings.market, buffer_limit=100_000)
        self.ledger = Ledger()
        self.ledger.deposit(TRADER, quote, settings.initial_cash)
        self.ledger.deposit(TRADER, base, settings.initial_base)
        # the counterparty of every fill: deep enough for any order the trader can afford
        self.ledger.deposit(VENUE, quote, 10**13 * SCALE)
        self.ledger.deposit(VENUE, base, 10**7 * SCALE)
        self.position = self.ledger.position(TRADER, settings.symbol)
        self.oms = OMS()
        self.clock = 0
        self.last_trade_price = 0
        self.arrivals: deque[tuple[int, bool, Order]] = deque()  # (arrival ns, is_cancel, order), FIFO
        self.last_arrival = 0
        self.resting: list[_Resting] = []
        self.outbox: deque[Any] = deque()
        self.rows: list[tuple[int, ...]] = []
        self.fill_count = 0
        self.counts = {"rejected": 0, "cancelled": 0, "expired": 0, "cancels_too_late": 0, "sequence_gaps": 0}
        self._ids = 0

    # ------------------------------------------------------------------------------------------- strategy commands

    def place(
        self,
        symbol: str,
        side: Side,
        qty: int,
        price: int | None,
        order_type: OrderType,
        tif: TimeInForce,
        quote_qty: int | None,
        client_order_id: str | None,
    ) -> str:
        inst = self.instrument
        if symbol != inst.symbol:
            raise InvalidInput(f"this backtest trades {inst.symbol}, not {symbol!r}")
        if client_order_id is None:
            self._ids += 1
            client_order_id = f"l2-{self._ids}"
        ts = self.clock
        if self.oms.get(TRADER, client_order_id) is not None:
            self._reject_unknown(client_order_id, side, order_type, price, qty, RejectReason.DUPLICATE_CLIENT_ORDER_ID)
            return client_order_id
        command = PlaceOrder(
            client_order_id=client_order_id,
            account_id=TRADER,
            symbol=symbol,
            side=side,
            order_type=order_type,
            qty=qty,
            price=price,
            quote_qty=quote_qty,
            tif=tif,
            ts=ts,
        )
        order = self.oms.create(command)
        problem = self._check(order)
        if problem is None:
            problem = self._reserve(order)
        if problem is not None:
            order.transition(OrderStatus.REJECTED, ts)
            self.counts["rejected"] += 1
            self.outbox.append(
                OrderRejected(
                    client_order_id=client_order_id,
                    account_id=TRADER,
                    symbol=symbol,
                    side=side,
                    order_type=order_type,
                    price=price,
                    qty=qty,
                    reason=problem[0],
                    detail=problem[1],
                    ts=ts,
                )
            )
            return client_order_id
        self._send(order, False)
        return client_order_id

    def cancel(self, client_order_id: str) -> None:
        order = self.oms.get(TRADER, client_order_id)
        if order is None:
            raise InvalidInput(f"cancel of unknown order {client_order_id!r}")
        if order.status.is_terminal:
            self.counts["cancels_too_late"] += 1
            return
        self._send(order, True)

    def _send(self, order: Order, is_cancel: bool) -> None:
        arrival = self.clock + self.latency.entry_ns()
        if arrival < self.last_arrival:
            arrival = self.last_arrival  # one connection: commands arrive in the order they were sent
        self.last_arrival = arrival
        self.arrivals.append((arrival, is_cancel, order))

    def _reject_unknown(
        self, cid: str, side: Side, order_type: OrderType, price: int | None, qty: int, reason: RejectReason
    ) -> None:
        self.counts["rejected"] += 1
        self.outbox.append(
            OrderRejected(
                client_order_id=cid,
                account_id=TRADER,
                symbol=self.instrument.symbol,
                side=side,
                order_type=order_type,
                price=price,
                qty=qty,
                reason=reason,
                ts=self.clock,
            )
        )

    def _check(self, order: Order) -> tuple[RejectReason, str] | None:
        inst = self.instrument
        if order.order_type is OrderType.LIMIT:
            if order.price is None:
                return RejectReason.INVALID_PRICE, "a limit order needs a price"
            if order.quote_qty is not None:
                return RejectReason.INVALID_QUANTITY, "quote_qty is for market buys only"
            return inst.check_price(order.price) or inst.check_qty(order.qty)
        if order.price is not None:
            return RejectReason.INVALID_PRICE, "a market order takes no price"
        if order.quote_qty is not None:
            if order.side is not Side.BUY or order.qty:
                return RejectReason.INVALID_QUANTITY, "quote_qty is for market buys, instead of qty"
            if order.quote_qty <= 0:
                return RejectReason.INVALID_QUANTITY, "quote_qty must be positive"
            return None
        return inst.check_qty(order.qty)

    def _reserve(self, order: Order) -> tuple[RejectReason, str] | None:
        inst = self.instrument
        tick = inst.price_tick
        if order.order_type is OrderType.MARKET:
            protect = self.settings.market_protect_rate
            if order.side is Side.BUY:
                best = self.book.best_ask() if not self.book.needs_resync else None
                if best is None:
                    return RejectReason.NO_REFERENCE_PRICE, "no recorded ask to protect a market buy"
                order.protect_price = ceil_div(best[0] * (SCALE + protect), SCALE * tick) * tick
            else:
                best = self.book.best_bid() if not self.book.needs_resync else None
                if best is None:
                    return RejectReason.NO_REFERENCE_PRICE, "no recorded bid to protect a market sell"
                order.protect_price = max(tick, best[0] * (SCALE - protect) // (SCALE * tick) * tick)
        if order.side is Side.SELL:
            asset, amount = self.base, order.qty
        elif order.quote_qty is not None:
            asset, amount = self.quote, order.quote_qty
        else:
            limit = order.price
            if limit is None:  # a market buy: _check let it through without a price, its protect_price is set above
                assert order.protect_price is not None
                limit = self.slippage.adjust(True, order.protect_price, tick)
            notional = limit * order.qty // SCALE
            asset, amount = self.quote, notional + self.fees.max_fee(notional)
        if not self.ledger.reserve(TRADER, asset, amount):
            free = self.ledger.free(TRADER, asset)
            return (
                RejectReason.INSUFFICIENT_FUNDS,
                f"needs {format_decimal(amount)} {asset}, {format_decimal(free)} free",
            )
        order.reserved = amount
        order.reserve_asset = asset
        return None

    # ----------------------------------------------------------------------------------------------------- venue

    def arrive(self, until: int, inclusive: bool) -> None:
        """Let the commands that reach the venue before ``until`` (or at it, if ``inclusive``) take effect."""
        arrivals = self.arrivals
        while arrivals and (arrivals[0][0] < until or (inclusive and arrivals[0][0] == until)):
            ts, is_cancel, order = arrivals.popleft()
            self.clock = ts
            if is_cancel:
                if order.is_open:
                    self._finish(order, OrderStatus.CANCELLED, RejectReason.USER_CANCEL)
                else:
                    self.counts["cancels_too_late"] += 1
            else:
                self._accept(order)
            self.drain()

    def _accept(self, order: Order) -> None:
        ts = self.clock
        order.transition(OrderStatus.ACCEPTED, ts)
        self.oms.mark_open(order)
        self.outbox.append(order.accepted_event(ts))
        book = self.book
        synced = not book.needs_resync
        if order.order_type is OrderType.MARKET:
            assert order.protect_price is not None  # _reserve sets it on every market order it lets through
            if synced:
                self._take(order, order.protect_price, market=True)
            if order.quote_qty is not None and order.filled:
                self._finish(order, OrderStatus.FILLED, None)
            elif order.is_open:
                self._finish(order, OrderStatus.EXPIRED, RejectReason.NO_LIQUIDITY)
            return
        price = order.price
        assert price is not None  # a limit order: _check rejected it without a price
        buy = order.side is Side.BUY
        best = (book.best_ask() if buy else book.best_bid()) if synced else None
        crosses = best is not None and (best[0] <= price if buy else best[0] >= price)
        if crosses:
            if order.tif is TimeInForce.POST_ONLY:
                self._finish(order, OrderStatus.EXPIRED, RejectReason.WOULD_TAKE_LIQUIDITY)
                return
            if order.tif is TimeInForce.FOK and self._available(buy, price, order.qty) < order.qty:
                self._finish(order, OrderStatus.EXPIRED, RejectReason.FOK_NOT_FILLABLE)
                return
            self._take(order, price, market=False)
        if not order.is_open:
            return
        if order.tif is TimeInForce.IOC or order.tif is TimeInForce.FOK:
            self._finish(order, OrderStatus.EXPIRED, RejectReason.IOC_UNFILLED)
            return
        level = book.level_qty(order.side, price) if synced else 0
        order.resting = True
        self.resting.append(_Resting(order, price, self.queue.on_arrival(level)))

    def _levels(self, buy: bool, depth: int) -> tuple[tuple[int, int], ...]:
        """The best ``depth`` recorded levels of the side a buy (sell) takes from; the best one is O(1)."""
        if depth == 1:
            best = self.book.best_ask() if buy else self.book.best_bid()
            return () if best is None else (best,)
        bids, asks = self.book.depth(depth)
        return asks if buy else bids

    def _available(self, buy: bool, limit: int, wanted: int) -> int:
        depth = 32
        while True:
            levels = self._levels(buy, depth)
            total = 0
            for price, qty in levels:
                if (price > limit) if buy else (price < limit):
                    return total
                total += qty
                if total >= wanted:
                    return total
            if len(levels) < depth:
                return total
            depth *= 4

    def _take(self, order: Order, limit: int, *, market: bool) -> None:
        """Walk the recorded opposite side, best first, up to ``limit``; the book itself is not changed."""
        buy = order.side is Side.BUY
        tick = self.instrument.price_tick
        step = self.instrument.qty_step
        adjust = self.slippage.adjust
        by_quote = order.quote_qty is not None
        depth = 1  # most orders fill within the best level: look deeper only when they do not
        seen = 0
        while True:
            levels = self._levels(buy, depth)
            for price, level_qty in levels[seen:]:
                if (price > limit) if buy else (price < limit):
                    return
                fill_price = adjust(buy, price, tick) if market else price
                if fill_price <= 0:
                    return
                if by_quote:
                    qty = self._affordable(order, fill_price, level_qty, step)
                    if qty <= 0:
                        return
                else:
                    qty = min(level_qty, order.qty - order.filled)
                self._fill(order, fill_price, qty, maker=False)
                if not by_quote and order.filled == order.qty:
                    return
            if len(levels) < depth:
                return
            seen = len(levels)
            depth = 32 if depth == 1 else depth * 4

    def _affordable(self, order: Order, price: int, level_qty: int, step: int) -> int:
        """The most whole steps of ``level_qty`` a quote-qty buy can still pay for at ``price``, fee included."""
        budget = order.reserved
        rate = self.fees.taker_rate
        qty = budget * SCALE * SCALE // (price * (SCALE + rate)) // step * step
        qty = min(qty, level_qty // step * step)
        while qty > 0:
            notional = price * qty // SCALE
            fee = ceil_div(order.fee_numerator + notional * rate, SCALE) - order.fees_paid
            if notional + fee <= budget:
                return qty
            qty -= step
        return 0

    def _fill(self, order: Order, price: int, qty: int, *, maker: bool) -> None:
        notional, remainder = divmod(price * qty, SCALE)
        if remainder:
            raise DataError(
                f"fill {format_decimal(qty)} @ {format_decimal(price)} has no exact notional: the capture's "
                "quantities are finer than price_tick x qty_step allows"
            )
        fee, order.fee_numerator = self.fees.fee(order.fee_numerator, order.fees_paid, notional, maker)
        order.fees_paid += fee
        order.notional_filled += notional
        order.filled += qty
        ledger = self.ledger
        base, quote = self.base, self.quote
        if order.side is Side.BUY:
            if not ledger.reserve(VENUE, base, qty):
                raise AssertionError("the backtest venue ran out of base")
            ledger.settle(
                buyer=TRADER, seller=VENUE, base=base, quote=quote, qty=qty, notional=notional, buyer_fee=fee,
                seller_fee=0,
            )  # fmt: skip
            order.reserved -= notional + fee
            signed = qty
        else:
            if not ledger.reserve(VENUE, quote, notional):
                raise AssertionError("the backtest venue ran out of quote")
            ledger.settle(
                buyer=VENUE, seller=TRADER, base=base, quote=quote, qty=qty, notional=notional, buyer_fee=0,
                seller_fee=fee,
            )  # fmt: skip
            order.reserved -= qty
            signed = -qty
        if order.reserved < 0:
            raise AssertionError(f"order {order.client_order_id} spent more than it reserved")
        self.position.apply_fill(signed, notional, fee)
        ts = self.clock
        by_quote = order.quote_qty is not None
        done = not by_quote and order.filled == order.qty
        if not done and order.status is not OrderStatus.PARTIALLY_FILLED:
            order.transition(OrderStatus.PARTIALLY_FILLED, ts)
        self.fill_count += 1
        cash = ledger.free(TRADER, quote) + ledger.locked(TRADER, quote)
        base_total = ledger.free(TRADER, base) + ledger.locked(TRADER, base)
        self.rows.append(
            (ts, order.order_id, 1 if signed > 0 else -1, price, qty, fee, 1 if maker else 0, cash, base_total)
        )
        self.outbox.append(
            order.fill_event(
                trade_id=self.fill_count,
                price=price,
                qty=qty,
                fee=fee,
                fee_asset=quote,
                liquidity=Liquidity.MAKER if maker else Liquidity.TAKER,
                ts=ts,
            )
        )
        if done:
            self._finish(order, OrderStatus.FILLED, None)

    def _finish(self, order: Order, status: OrderStatus, reason: RejectReason | None) -> None:
        ts = self.clock
        order.transition(status, ts)
        self.oms.mark_closed(order)
        if order.reserved:
            self.ledger.release(TRADER, order.reserve_asset, order.reserved)
            order.reserved = 0
        if order.resting:
            order.resting = False
            self.resting = [r for r in self.resting if r.order is not order]
        event = order.closed_event(reason, ts)
        if event is not None:
            self.counts["cancelled" if status is OrderStatus.CANCELLED else "expired"] += 1
            self.outbox.append(event)

    # --------------------------------------------------------------------------------------------- market events

    def on_trade(self, trade: Trade) -> None:
        """A recorded trade: advance the queues of resting orders at its price, fill what it reaches or trades through."""
        price = trade.price
        sell_aggressor = trade.aggressor is Side.SELL
        available = trade.qty  # what the trade can give our orders resting exactly at its price
        on_trade = self.queue.on_trade
        for resting in list(self.resting):
            order = resting.order
            if not order.is_open:
                continue
            buy = order.side is Side.BUY
            if buy != sell_aggressor:
                continue  # a trade by an aggressor on our own side never reaches our order
            leaves = order.qty - order.filled
            limit = resting.price
            if (price < limit) if buy else (price > limit):
                self._fill(order, limit, leaves, maker=True)  # traded through our price: all of it
            elif price == limit:
                resting.queue_ahead, reach = on_trade(resting.queue_ahead, trade.qty)
                qty = min(reach, leaves, available)
                if qty > 0:
                    available -= qty
                    self._fill(order, limit, qty, maker=True)

    def on_levels(self) -> None:
        """After a depth update: a level that shrank below an order's queue ahead shrinks that queue."""
        level_qty = self.book.level_qty
        on_level = self.queue.on_level
        for resting in self.resting:
            order = resting.order
            resting.queue_ahead = on_level(resting.queue_ahead, level_qty(order.side, resting.price))

    def drain(self) -> None:
        """Deliver the order events waiting in the outbox (the strategy may add more while handling them)."""
        outbox = self.outbox
        on_order_event = self.strategy.on_order_event
        while outbox:
            on_order_event(outbox.popleft())

    def mark(self) -> int:
        book = self.book
        if not book.needs_resync:
            mid = book.mid()
            if mid is not None:
                return mid
        return self.last_trade_price

    def balances(self) -> tuple[int, int]:
        ledger = self.ledger
        return (
            ledger.free(TRADER, self.quote) + ledger.locked(TRADER, self.quote),
            ledger.free(TRADER, self.base) + ledger.locked(TRADER, self.base),
        )


# -------------------------------------------------------------------------------------------------------------- run


def run_l2_backtest(
    events: Sequence[MarketEvent],
    strategy: Strategy,
    settings: L2Settings | None = None,
    *,
    seed: int = 0,
    fee_model: FeeModel | None = None,
    slippage_model: SlippageModel | None = None,
    latency_model: LatencyModel | None = None,
    queue_model: QueueModel | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> L2Result:
    """Run ``strategy`` over recorded market ``events`` (file order) against the recorded book; see the module doc.

    The models default to what ``settings`` describes (``seed`` seeds the random latency when
    ``settings.latency_jitter_ns > 0``); pass a model to replace one. ``progress(done, total)`` is called about a
    hundred times. Raises :class:`InvalidInput` for events of another symbol or settings that do not fit the data.
    """
    if settings is None:
        settings = L2Settings.for_events(events)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative int, got {seed!r}")
    fees = fee_model or FeeModel(settings.maker_rate, settings.taker_rate)
    slippage = slippage_model or (FixedSlippage(settings.slippage_rate) if settings.slippage_rate else NoSlippage())
    if latency_model is None:
        if settings.latency_jitter_ns:
            latency_model = UniformLatency(settings.latency_ns, settings.latency_ns + settings.latency_jitter_ns, seed)
        else:
            latency_model = ConstantLatency(settings.latency_ns)
    sim = _Simulation(settings, strategy, fees, slippage, latency_model, queue_model or ConservativeQueue())
    symbol = settings.symbol
    started = time.perf_counter()
    ctx = L2Context(sim)
    strategy.on_start(ctx)
    on_trade = strategy.on_trade
    on_book = strategy.on_book
    book = sim.book
    arrivals = sim.arrivals
    outbox = sim.outbox
    interval = settings.equity_interval_ns
    samples: list[tuple[int, int, int, int, int]] = []
    next_sample = 0
    initial_mark = 0
    n = len(events)
    step = max(1, n // 100)
    for index, event in enumerate(events):
        ts = event.ts_recv
        if arrivals and arrivals[0][0] < ts:
            sim.arrive(ts, False)
        sim.clock = ts
        if type(event) is BookDelta:  # exact-type checks (no subclasses), which also narrow the event for mypy
            if event.symbol != symbol:
                raise InvalidInput(f"event of {event.symbol} in a {symbol} backtest")
            try:
                if event.is_snapshot:
                    book.apply_snapshot(event)
                    applied = True
                else:
                    applied = book.apply(event)
            except SequenceGap:
                sim.counts["sequence_gaps"] += 1
                applied = False
            if applied:
                if sim.resting:
                    sim.on_levels()
                if outbox:
                    sim.drain()
                on_book(book)
        elif type(event) is Trade:
            if event.symbol != symbol:
                raise InvalidInput(f"event of {event.symbol} in a {symbol} backtest")
            sim.last_trade_price = event.price
            if sim.resting:
                sim.on_trade(event)
                if outbox:
                    sim.drain()
            on_trade(event)
        if outbox:
            sim.drain()
        if arrivals and arrivals[0][0] <= ts:
            sim.arrive(ts, True)
            sim.clock = ts
        if ts >= next_sample:
            mark = sim.mark()
            if mark:
                if not initial_mark:
                    initial_mark = mark
                cash, base = sim.balances()
                samples.append((ts, mark, cash, base, cash + base * mark // SCALE))
                next_sample = ts - ts % interval + interval
        if progress is not None and index % step == 0:
            progress(index, n)
    strategy.on_stop()
    sim.drain()
    run_seconds = time.perf_counter() - started
    ledger = sim.ledger
    if ledger.totals() != ledger.deposited:
        raise AssertionError("L2 backtest ledger does not balance: money was created or destroyed")
    if n:
        mark = sim.mark()
        cash, base = sim.balances()
        last_ts = events[-1].ts_recv
        if mark and (not samples or samples[-1][0] != last_ts):
            samples.append((last_ts, mark, cash, base, cash + base * mark // SCALE))
    trades = np.array(sim.rows, dtype=L2_TRADE_DTYPE) if sim.rows else np.zeros(0, dtype=L2_TRADE_DTYPE)
    equity = np.array(samples, dtype=EQUITY_DTYPE) if samples else np.zeros(0, dtype=EQUITY_DTYPE)
    metrics = _metrics(sim, trades, equity, initial_mark, n)
    client_ids = {order.order_id: order.client_order_id for order in sim.oms.orders(account_id=TRADER)}
    return L2Result(
        trades=trades,
        equity=equity,
        metrics=metrics,
        settings=settings,
        seed=seed,
        timing={"run_seconds": run_seconds, "events_per_second": n / run_seconds if run_seconds > 0 else 0.0},
        events=n,
        client_order_ids=client_ids,
        orders=sim.oms.export(TRADER),
        ledger=ledger,
    )


def _metrics(
    sim: _Simulation, trades: np.ndarray, equity: np.ndarray, initial_mark: int, n_events: int
) -> dict[str, float | int]:
    """Final equity, return, drawdown, PnL and execution counts; money as floats in quote units (display only)."""
    settings = sim.settings
    initial = settings.initial_cash + settings.initial_base * initial_mark // SCALE
    final = int(equity["equity"][-1]) if len(equity) else initial
    max_drawdown = 0.0
    if len(equity):
        values = equity["equity"].astype(np.float64)
        peak = np.maximum.accumulate(values)
        with np.errstate(divide="ignore", invalid="ignore"):
            drawdown = np.where(peak > 0, (peak - values) / peak, 0.0)
        max_drawdown = float(drawdown.max())
    maker = int(trades["maker"].sum()) if len(trades) else 0
    notional = int((trades["price"].astype(object) * trades["qty"].astype(object)).sum()) // SCALE if len(trades) else 0
    fees = int(trades["fee"].sum()) if len(trades) else 0
    position = sim.position
    position.mark_price = sim.mark()
    orders = sim.oms.orders(account_id=TRADER)
    return {
        "initial_equity": initial / SCALE,
        "final_equity": final / SCALE,
        "total_return": final / initial - 1.0 if initial else 0.0,
        "pnl": (final - initial) / SCALE,
        "realized_pnl": position.realized_pnl / SCALE,
        "unrealized_pnl": position.unrealized_pnl / SCALE,
        "max_drawdown": max_drawdown,
        "n_fills": len(trades),
        "maker_fills": maker,
        "taker_fills": len(trades) - maker,
        "fees": fees / SCALE,
        "volume_quote": notional / SCALE,
        "final_position": position.qty / SCALE,
        "n_orders": len(orders),
        "n_rejected": sim.counts["rejected"],
        "n_cancelled": sim.counts["cancelled"],
        "n_expired": sim.counts["expired"],
        "cancels_too_late": sim.counts["cancels_too_late"],
        "open_orders_at_end": sum(1 for o in orders if o.is_open),
        "unsent_at_end": len(sim.arrivals),
        "sequence_gaps": sim.counts["sequence_gaps"],
        "events": n_events,
    }
