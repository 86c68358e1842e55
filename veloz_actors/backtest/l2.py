"""The event-driven tick/L2 backtest: a strategy trading against a recorded Binance book, in one process, exactly.

It runs the same trading kernel as every other engine against the recorded market as a venue::

    strategy --PlaceOrder / CancelOrder--> TradingKernel --SubmitOrder / SubmitCancel--> L2ReplayVenue
    strategy <--order events------------- TradingKernel <--execution reports----------- L2ReplayVenue

The kernel (:class:`~veloz_actors.core.kernel.TradingKernel`) is the trader's side: risk, the atomic reservation of
funds (a BUY locks notional plus the largest possible fee; a SELL locks the base; too little money is an
:class:`OrderRejected` event, not an exception), fees as the venue reports them, positions. The venue
(:class:`~veloz_actors.venues.l2replay.L2ReplayVenue`, see its docstring for every fill rule) is the exchange's side:
the recorded book rebuilt from the capture (:func:`~veloz_actors.data.loaders.load_market_events`), order-entry
latency, queue position, matching against the recorded levels, fees. There is no other order path.

**Time.** The clock is the capture's local receive time (``ts_recv``), which is also when the strategy sees each
event. A request reaches the venue ``LatencyModel.entry_ns()`` after the kernel sent it, in the order sent; an event
recorded at the same nanosecond as an arrival is applied first. The strategy hears of each arrival's outcome before
the next request arrives, and of fills before the callback of the event that caused them.

**Order events.** The strategy receives the kernel's order events: ``OrderAccepted`` when the kernel accepted and
funded the order (the moment it is sent; the venue's acceptance shows in the order's state history), then fills,
cancels, expiries. A market order's protect price is fixed when it is sent: the best recorded opposite price moved
``market_protect_rate`` (default 5 %) against the trader, or the last recorded trade price moved so while the book is
unknown or crossed (the order then expires ``NO_LIQUIDITY`` unless the book is known when it arrives); one sent before
any book or trade is rejected (``NO_REFERENCE_PRICE``), nothing reserved (:meth:`L2ReplayVenue.protect_price`).

**Money.** The kernel's ledger books every fill against the venue; at the end ``ledger.conserved()`` is asserted (no
money created or destroyed) and the kernel's counterparty flows and fees must equal what the venue reported. The
position (:meth:`StrategyContext.position`) is the net quantity bought by this run's fills; balances include
``initial_base``.

**Results.** :class:`L2Result` holds the trader's fills (:data:`L2_TRADE_DTYPE`), equity samples
(:data:`EQUITY_DTYPE`, every ``equity_interval_ns`` of recorded time, marked at the mid), metrics and timings.
:func:`write_trades_csv` writes the fills with exact decimals: same data + settings + seed -> the same bytes.

>>> from veloz_actors.data.loaders import load_market_events              # doctest: +SKIP
>>> from veloz_actors.strategies.l2_strategies import make_l2_strategy    # doctest: +SKIP
>>> events = load_market_events("../shared/data/ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz")  # doctest: +SKIP
>>> result = run_l2_backtest(events, make_l2_strategy("book_imbalance", {}), L2Settings.for_events(events))  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
import math
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import ConfigError, InvalidInput
from ..core.account import Ledger
from ..core.instruments import Instrument
from ..core.kernel import KernelConfig, TradingKernel
from ..core.l2book import L2Book
from ..core.oms import Order
from ..core.risk import RiskLimits
from ..fixed import MAX_ABS, SCALE, as_decimal, format_decimal
from ..messages import (
    BookDelta,
    CancelOrder,
    Liquidity,
    MarketEvent,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderType,
    PlaceOrder,
    RejectReason,
    Side,
    SubmitOrder,
    TimeInForce,
    Trade,
)
from ..orders import ClientOrderIds, build_place_order
from ..strategies.base import Strategy, StrategyContext
from ..venues.fill_models import (
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
from ..venues.l2replay import L2ReplayVenue
from .metrics import drawdown_times, equity_returns, sharpe_ratio
from .report import write_atomically
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
    "trades_csv_text",
    "write_trades_csv",
]

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

_YEAR_NS = 365 * 86_400 * 10**9  # the year of the annualised Sharpe, as the bar backtest's
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
        for Binance spot BTCUSDT, 0.0001 and 1 for ALGOUSDT, so no default step rule is needed here (unlike the bar
        backtest, whose bars carry no quantities). A ``price_tick`` or ``qty_step`` override is checked against the
        capture: every recorded price must be on the tick, and ``price_tick x qty_step`` must be a multiple of 1e-8.
        """
        symbol, market, tick, step = _infer(events)
        base: dict[str, Any] = {"symbol": symbol, "market": market, "price_tick": tick, "qty_step": step}
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidInput(f"unknown L2 setting(s): {', '.join(unknown)}")
        base.update({k: v for k, v in overrides.items() if v is not None or k == "maker_fee_rate"})
        settings = cls(**base)
        _check_tick_and_step(events, settings, tick, step)
        return settings

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
    for number, event in enumerate(events, 1):
        if symbol is None:
            symbol = getattr(event, "symbol", None)
        elif event.symbol != symbol:  # one capture, one book: a second symbol's events are another market
            raise InvalidInput(
                f"the capture holds events of {symbol} and of {event.symbol} (the first at event {number:,}): the L2 "
                "backtest replays one symbol's book; give it a capture of one symbol"
            )
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


def _check_tick_and_step(events: Sequence[MarketEvent], settings: L2Settings, data_tick: int, data_step: int) -> None:
    """The clear error for a tick and step that cannot replay the capture exactly (see :meth:`L2Settings.for_events`)."""
    symbol, tick, step = settings.symbol, settings.price_tick, settings.qty_step
    if data_tick * data_step % SCALE:
        raise InvalidInput(
            f"{symbol}: the capture's prices (tick {format_decimal(data_tick)}) and quantities (step "
            f"{format_decimal(data_step)}) are together finer than 1e-8 of the quote asset: fills against the recorded "
            "book would not have exact notionals, so the L2 backtest cannot replay this capture"
        )
    if data_tick % tick:
        for price in _recorded_prices(events):
            if price % tick:
                raise InvalidInput(
                    f"{symbol}: price_tick (--price-tick) {format_decimal(tick)} does not fit the capture: the "
                    f"recorded price {format_decimal(price)} is not a multiple of it (the capture's prices are written "
                    f"in steps of {format_decimal(data_tick)})"
                )
    if tick * step % SCALE:
        tick_text = "the capture's price tick" if tick == data_tick else "price_tick (--price-tick)"
        raise InvalidInput(
            f"{symbol}: qty_step (--qty-step) {format_decimal(step)} x {tick_text} {format_decimal(tick)} is finer "
            f"than 1e-8 of the quote asset, so notionals would not be exact: use a qty_step that is a multiple of "
            f"{format_decimal(SCALE // math.gcd(tick, SCALE))}"
        )


def _recorded_prices(events: Sequence[MarketEvent]) -> Iterator[int]:
    for event in events:
        if type(event) is Trade:
            yield event.price
        elif type(event) is BookDelta:
            for levels in (event.bids, event.asks):
                for price, _ in levels:
                    yield price


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

    ``client_order_ids[order_id]`` names each order; ``ledger`` is the kernel's ledger (balances, fees, positions,
    what went to the venue); ``orders`` every order the strategy sent (JSON-ready dicts with their state history);
    ``kernel`` and ``venue`` the run's trading kernel and :class:`~veloz_actors.venues.l2replay.L2ReplayVenue`;
    ``warnings`` what made the run cover less than the capture (a recorded book that was never or no longer known,
    or crossed) and the strategy's orders that were rejected (how many of each reason, the first one's detail).
    """

    trades: np.ndarray
    equity: np.ndarray
    metrics: dict[str, Any]
    settings: L2Settings
    seed: int
    timing: dict[str, float] = field(default_factory=dict)
    events: int = 0
    client_order_ids: dict[int, str] = field(default_factory=dict)
    orders: list[dict[str, object]] = field(default_factory=list)
    ledger: Ledger | None = None
    kernel: TradingKernel | None = None
    venue: L2ReplayVenue | None = None
    warnings: list[str] = field(default_factory=list)

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
    write_atomically({Path(path): trades_csv_text(result)})


def trades_csv_text(result: L2Result) -> str:
    """The text :func:`write_trades_csv` writes (``veloz backtest --out`` writes it with the other outputs at once)."""
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
    return "".join(lines)


# ---------------------------------------------------------------------------------------------------------- context


class L2Context(StrategyContext):
    """The :class:`~veloz_actors.strategies.base.StrategyContext` of an L2 backtest, plus the recorded book.

    Amounts are ints in 1e-8 units. Orders and cancels go to the run's trading kernel as commands; :meth:`order` and
    :meth:`open_orders` read the kernel's orders. :meth:`book` is the venue's recorded :class:`L2Book` (read it,
    never change it).
    """

    def __init__(self, run: _Run) -> None:
        self._run = run

    @property
    def symbol(self) -> str:
        return self._run.instrument.symbol

    @property
    def instrument(self) -> Instrument:
        return self._run.instrument

    def now(self) -> int:
        return self._run.clock

    def book(self, symbol: str | None = None) -> L2Book:
        return self._run.venue.book

    def position(self, symbol: str) -> int:
        pos = self._run.kernel.ledger.positions.get((TRADER, symbol))
        return pos.qty if pos is not None else 0

    def free(self, asset: str) -> int:
        return self._run.kernel.ledger.free(TRADER, asset)

    def locked(self, asset: str) -> int:
        return self._run.kernel.ledger.locked(TRADER, asset)

    def base_asset(self, symbol: str) -> str:
        return self._run.instrument.base_asset

    def quote_asset(self, symbol: str) -> str:
        return self._run.instrument.quote_asset

    def qty_step(self, symbol: str) -> int:
        return self._run.instrument.qty_step

    def order(self, client_order_id: str) -> Order | None:
        """The kernel's state of one of the strategy's orders (status, filled, price ...), or None."""
        return self._run.kernel.oms.get(TRADER, client_order_id)

    def open_orders(self) -> list[Order]:
        """Orders the kernel sent and that are not closed yet (those still travelling to the venue included)."""
        return self._run.kernel.oms.open_orders(TRADER)

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
        return self._run.place(symbol, side, qty, price, order_type, tif, quote_qty, client_order_id)

    def cancel_order(self, client_order_id: str) -> None:
        self._run.cancel(client_order_id)

    def buy_limit(self, symbol: str, *, qty: int, price: int, tif: TimeInForce = TimeInForce.GTC) -> str:
        return self.place_order(symbol, Side.BUY, qty=qty, price=price, order_type=OrderType.LIMIT, tif=tif)

    def sell_limit(self, symbol: str, *, qty: int, price: int, tif: TimeInForce = TimeInForce.GTC) -> str:
        return self.place_order(symbol, Side.SELL, qty=qty, price=price, order_type=OrderType.LIMIT, tif=tif)


# -------------------------------------------------------------------------------------------------------------- run

_ORDER_EVENTS = frozenset({OrderAccepted, OrderRejected, OrderFilled, OrderCancelled, OrderExpired})
_CANCEL_TOO_LATE = frozenset({RejectReason.ORDER_NOT_OPEN, RejectReason.CANCEL_PENDING})


class _Run:
    """One backtest's kernel, venue and strategy outbox: commands into the kernel, its requests to the venue, the
    venue's reports back into the kernel, the kernel's order events to the strategy (private: see the module doc)."""

    def __init__(self, settings: L2Settings, strategy: Strategy, venue: L2ReplayVenue) -> None:
        inst = venue.instrument
        self.settings = settings
        self.strategy = strategy
        self.venue = venue
        self.instrument = inst
        self.kernel = TradingKernel(
            KernelConfig(
                instruments=(inst,),
                balances={TRADER: {inst.quote_asset: settings.initial_cash, inst.base_asset: settings.initial_base}},
                risk=RiskLimits(price_band=0),  # limit prices unchecked; market orders carry their protect price
                valuation_asset=inst.quote_asset,
                emit_account_updates=False,
            )
        )
        self.clock = 0
        self.outbox: deque[Any] = deque()  # order events waiting for the strategy
        self.rows: list[tuple[int, ...]] = []
        self.counts = {"rejected": 0, "cancelled": 0, "expired": 0, "cancels_too_late": 0}
        self.rejected: dict[str, int] = {}  # reason -> how many of the strategy's orders were rejected
        self.first_rejected: OrderRejected | None = None
        self._ids = ClientOrderIds("l2")  # a fixed prefix: the same ids every run

    # ------------------------------------------------------------------------------------------- strategy commands

    def place(
        self,
        symbol: str,
        side: Side,
        qty: int,
        price: int | None,
        order_type: OrderType | None,
        tif: TimeInForce,
        quote_qty: int | None,
        client_order_id: str | None,
    ) -> str:
        if symbol != self.instrument.symbol:
            raise InvalidInput(f"this backtest trades {self.instrument.symbol}, not {symbol!r}")
        protect = None
        if order_type is OrderType.MARKET or (order_type is None and price is None):
            protect = self.venue.protect_price(side, self.settings.market_protect_rate)
        order = build_place_order(symbol, side, qty=qty, price=price, quote_qty=quote_qty, protect_price=protect,
                                  order_type=order_type, tif=tif, client_order_id=client_order_id, ids=self._ids,
                                  account_id=TRADER, ts=self.clock)  # fmt: skip
        self._command(order)
        return order.client_order_id

    def cancel(self, client_order_id: str) -> None:
        if self.kernel.oms.get(TRADER, client_order_id) is None:
            raise InvalidInput(f"cancel of unknown order {client_order_id!r}")
        self._command(CancelOrder(client_order_id=client_order_id, account_id=TRADER, ts=self.clock))

    def _command(self, command: PlaceOrder | CancelOrder) -> None:
        """One kernel step, then its requests to the venue (which holds them in flight: no report comes back yet
        but a refusal)."""
        kernel = self.kernel
        self._take(kernel.apply(command))
        if kernel.outbox:
            venue = self.venue
            for request in kernel.take_outbox():
                self._apply(venue.submit(request) if type(request) is SubmitOrder else venue.cancel(request))  # type: ignore[arg-type]

    # ---------------------------------------------------------------------------------------------------- reports

    def _apply(self, reports: list[Any]) -> None:
        """Apply the venue's execution reports to the kernel, each as its own step."""
        apply = self.kernel.apply
        for report in reports:
            self._take(apply(report))

    def _take(self, events: list[Any]) -> None:
        """Keep the kernel's order events for the strategy; count them; record each fill with the balances after it."""
        for event in events:
            kind = type(event)
            if kind not in _ORDER_EVENTS:
                continue
            self.outbox.append(event)
            if kind is OrderFilled:
                ledger = self.kernel.ledger
                inst = self.instrument
                cash = ledger.free(TRADER, inst.quote_asset) + ledger.locked(TRADER, inst.quote_asset)
                base = ledger.free(TRADER, inst.base_asset) + ledger.locked(TRADER, inst.base_asset)
                buy = event.side is Side.BUY
                self.rows.append(
                    (event.ts, event.order_id, 1 if buy else -1, event.price, event.qty, event.fee,
                     1 if event.liquidity is Liquidity.MAKER else 0, cash, base)
                )  # fmt: skip
            elif kind is OrderRejected:
                cancel = event.detail.startswith("cancel rejected") and event.reason in _CANCEL_TOO_LATE
                self.counts["cancels_too_late" if cancel else "rejected"] += 1
                if not cancel:
                    self.rejected[event.reason.name] = self.rejected.get(event.reason.name, 0) + 1
                    self.first_rejected = self.first_rejected or event
            elif kind is OrderCancelled:
                self.counts["cancelled"] += 1
            elif kind is OrderExpired:
                self.counts["expired"] += 1

    def arrive(self, until: int, inclusive: bool) -> None:
        """Let the requests that reach the venue before ``until`` (or at it, if ``inclusive``) take effect, one at a
        time; the strategy hears of each (and may send more) before the next."""
        venue = self.venue
        in_flight = venue.in_flight
        while in_flight and (in_flight[0][0] < until or (inclusive and in_flight[0][0] == until)):
            self.clock = in_flight[0][0]
            self._apply(venue.arrive_next())
            self.drain()

    def drain(self) -> None:
        """Deliver the order events waiting in the outbox (the strategy may add more while handling them)."""
        outbox = self.outbox
        on_order_event = self.strategy.on_order_event
        while outbox:
            on_order_event(outbox.popleft())

    def balances(self) -> tuple[int, int]:
        ledger = self.kernel.ledger
        inst = self.instrument
        return (
            ledger.free(TRADER, inst.quote_asset) + ledger.locked(TRADER, inst.quote_asset),
            ledger.free(TRADER, inst.base_asset) + ledger.locked(TRADER, inst.base_asset),
        )


def _instrument(settings: L2Settings, fees: FeeModel) -> Instrument:
    base, quote = split_symbol(settings.symbol)
    try:
        return Instrument(
            symbol=settings.symbol,
            base_asset=base,
            quote_asset=quote,
            price_tick=settings.price_tick,
            qty_step=settings.qty_step,
            min_qty=settings.qty_step,
            max_qty=MAX_ABS // settings.qty_step * settings.qty_step,  # no cap short of what VeloZ represents
            min_notional=0,
            maker_fee_rate=fees.maker_rate,
            taker_fee_rate=fees.taker_rate,
        )
    except ConfigError as exc:
        raise InvalidInput(f"L2 settings do not fit {settings.symbol}: {exc}") from exc


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
    venue = L2ReplayVenue(
        _instrument(settings, fees),
        market=settings.market,
        fees=fees,
        slippage=slippage,
        latency=latency_model,
        queue=queue_model or ConservativeQueue(),
    )
    run = _Run(settings, strategy, venue)
    symbol = settings.symbol
    started = time.perf_counter()
    strategy.on_start(L2Context(run))
    on_trade = strategy.on_trade
    on_book = strategy.on_book
    book = venue.book
    apply_depth = venue.apply_depth
    venue_trade = venue.on_trade
    apply_reports = run._apply
    in_flight = venue.in_flight
    outbox = run.outbox
    interval = settings.equity_interval_ns
    samples: list[tuple[int, int, int, int, int]] = []
    next_sample = 0
    initial_mark = 0
    n = len(events)
    step = max(1, n // 100)
    book_known = False  # the recorded book was known at some point
    lost = 0  # events after that while it was not (a break in the update ids no later snapshot bridged)
    lost_from = 0  # when the first of them came
    for index, event in enumerate(events):
        ts = event.ts_recv
        if book.needs_resync:
            if book_known:
                if not lost:
                    lost_from = ts
                lost += 1
        elif not book_known:
            book_known = True
        if in_flight and in_flight[0][0] < ts:
            run.arrive(ts, False)
        run.clock = ts
        if type(event) is BookDelta:  # exact-type checks (no subclasses), which also narrow the event for mypy
            if event.symbol != symbol:
                raise InvalidInput(f"event of {event.symbol} in a {symbol} backtest")
            if apply_depth(event):
                if venue.joined:  # orders that waited for the book crossed it once it was known
                    apply_reports(venue.take_joined())
                if outbox:
                    run.drain()
                on_book(book)
        elif type(event) is Trade:
            if event.symbol != symbol:
                raise InvalidInput(f"event of {event.symbol} in a {symbol} backtest")
            reports = venue_trade(event)
            if reports:
                apply_reports(reports)
            if outbox:
                run.drain()
            on_trade(event)
        if outbox:
            run.drain()
        if in_flight and in_flight[0][0] <= ts:
            run.arrive(ts, True)
            run.clock = ts
        if ts >= next_sample:
            mark = venue.mark()
            if mark:
                if not initial_mark:
                    initial_mark = mark
                cash, base = run.balances()
                samples.append((ts, mark, cash, base, cash + base * mark // SCALE))
                next_sample = ts - ts % interval + interval
        if progress is not None and index % step == 0:
            progress(index, n)
    strategy.on_stop()
    run.drain()
    run_seconds = time.perf_counter() - started
    ledger = run.kernel.ledger
    if not ledger.conserved():
        raise AssertionError("L2 backtest ledger does not balance: money was created or destroyed")
    if {a: v for a, v in ledger.counterparty.items() if v} != {a: v for a, v in venue.received.items() if v} or {
        a: v for a, v in ledger.fees_collected.items() if v
    } != venue.fees_charged:
        raise AssertionError("L2 backtest: the kernel booked other trades or fees than the venue reported")
    if n:
        mark = venue.mark()
        cash, base = run.balances()
        last_ts = events[-1].ts_recv
        if mark and (not samples or samples[-1][0] != last_ts):
            samples.append((last_ts, mark, cash, base, cash + base * mark // SCALE))
    trades = np.array(run.rows, dtype=L2_TRADE_DTYPE) if run.rows else np.zeros(0, dtype=L2_TRADE_DTYPE)
    equity = np.array(samples, dtype=EQUITY_DTYPE) if samples else np.zeros(0, dtype=EQUITY_DTYPE)
    metrics = _metrics(run, trades, equity, initial_mark, n)
    oms = run.kernel.oms
    client_ids = {order.order_id: order.client_order_id for order in oms.orders(account_id=TRADER)}
    known_at_end = not book.needs_resync
    warnings = _book_warnings(symbol, n, book_known or known_at_end, known_at_end, lost, lost_from, venue.sequence_gaps)
    if venue.crossed_updates:
        warnings.append(
            f"{symbol}: {venue.crossed_updates:,} depth update(s) of the capture left the recorded book crossed (best "
            "bid at or above best ask, a book no exchange holds): no order could take liquidity or join a queue "
            "until a later one uncrossed it"
        )
    if run.first_rejected is not None:  # an outcome the strategy heard of, but never a silent "no trades"
        counts = ", ".join(f"{reason} {count:,}" for reason, count in run.rejected.items())
        first = run.first_rejected.detail or run.first_rejected.reason.name
        warnings.append(f"{sum(run.rejected.values()):,} strategy orders rejected, not traded ({counts}); the first: "
                        f"{first}")  # fmt: skip
    return L2Result(
        trades=trades,
        equity=equity,
        metrics=metrics,
        settings=settings,
        seed=seed,
        timing={"run_seconds": run_seconds, "events_per_second": n / run_seconds if run_seconds > 0 else 0.0},
        events=n,
        client_order_ids=client_ids,
        orders=oms.export(TRADER),
        ledger=ledger,
        kernel=run.kernel,
        venue=venue,
        warnings=warnings,
    )


def _book_warnings(
    symbol: str, n_events: int, known: bool, known_at_end: bool, lost: int, lost_from: int, gaps: int
) -> list[str]:
    """What a user must hear when the recorded book was not known for part of the capture: orders then could not
    take liquidity nor join a queue, so the run covers less of the capture than it seems."""
    if not n_events:
        return []
    if not known:
        return [
            f"{symbol}: the recorded book was never known: the capture has no depth snapshot (the REST /depth line) "
            f"its diffs could start from{f', and its update ids broke {gaps} time(s)' if gaps else ''}; no order could "
            f"take liquidity or join a queue in its {n_events:,} events (only a trade through a resting GTC order's "
            "price could fill one)"
        ]
    if lost:
        rebuilt = "until a later snapshot rebuilt it" if known_at_end else "and no later snapshot rebuilt it"
        return [
            f"{symbol}: the depth update ids broke {gaps} time(s): the recorded book was unknown for {lost:,} of the "
            f"capture's {n_events:,} events (from ts {lost_from} ns on, {rebuilt}), when no order could take "
            "liquidity or join a queue"
        ]
    return []


def _metrics(run: _Run, trades: np.ndarray, equity: np.ndarray, initial_mark: int, n_events: int) -> dict[str, Any]:
    """Final equity, return, drawdown (its peak, trough and recovery times and the longest time under water, as the
    bar backtest's), Sharpe, PnL and execution counts; money and the position as exact :class:`~decimal.Decimal`
    (quote and base units).

    ``sharpe`` is :func:`~veloz_actors.backtest.metrics.sharpe_ratio` of the returns between equity samples,
    annualised by the samples a 365-day year holds at ``equity_interval_ns`` (31,536,000 at one second). A sample is
    taken at the first event of each interval, so a capture with silent intervals has longer returns than that: the
    annualisation is then approximate.
    """
    settings = run.settings
    initial = settings.initial_cash + settings.initial_base * initial_mark // SCALE
    final = int(equity["equity"][-1]) if len(equity) else initial
    max_drawdown = 0.0
    sharpe = 0.0
    times: dict[str, Any] = {"max_drawdown_peak": None, "max_drawdown_trough": None, "max_drawdown_recovery": None,
                             "max_drawdown_duration_seconds": 0}  # fmt: skip
    if len(equity):
        values = equity["equity"].astype(np.float64)
        peak = np.maximum.accumulate(values)
        with np.errstate(divide="ignore", invalid="ignore"):
            drawdown = np.where(peak > 0, (peak - values) / peak, 0.0)
            returns = equity_returns(values)
        max_drawdown = float(drawdown.max())
        sharpe = sharpe_ratio(returns[np.isfinite(returns)], _YEAR_NS / settings.equity_interval_ns)
        if values[0] > 0:
            times = drawdown_times(values / SCALE, equity["ts"], int(values[0]))
    maker = int(trades["maker"].sum()) if len(trades) else 0
    notional = int((trades["price"].astype(object) * trades["qty"].astype(object)).sum()) // SCALE if len(trades) else 0
    fees = int(trades["fee"].sum()) if len(trades) else 0
    venue = run.venue
    position = run.kernel.ledger.position(TRADER, settings.symbol)
    position.mark_price = venue.mark()
    orders = run.kernel.oms.orders(account_id=TRADER)
    return {
        "initial_equity": as_decimal(initial),
        "final_equity": as_decimal(final),
        "total_return": final / initial - 1.0 if initial else 0.0,
        "pnl": as_decimal(final - initial),
        "realized_pnl": as_decimal(position.realized_pnl),
        "unrealized_pnl": as_decimal(position.unrealized_pnl),
        "max_drawdown": max_drawdown,
        **times,
        "sharpe": sharpe,
        "n_fills": len(trades),
        "maker_fills": maker,
        "taker_fills": len(trades) - maker,
        "fees": as_decimal(fees),
        "volume_quote": as_decimal(notional),
        "final_position": as_decimal(position.qty),
        "n_orders": len(orders),
        "n_rejected": run.counts["rejected"],
        "n_cancelled": run.counts["cancelled"],
        "n_expired": run.counts["expired"],
        "cancels_too_late": run.counts["cancels_too_late"] + venue.cancels_too_late,
        "open_orders_at_end": sum(1 for o in orders if o.is_open),
        "unsent_at_end": len(venue.in_flight),
        "sequence_gaps": venue.sequence_gaps,
        "events": n_events,
    }
