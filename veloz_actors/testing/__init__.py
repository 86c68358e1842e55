"""The VeloZ test kit: a fake clock, a small engine configuration and builders for stub messages.

Tests (ours and anyone building on VeloZ) import it instead of hand-writing configs and integer prices::

    >>> from veloz_actors.testing import d, engine_config, place
    >>> engine = Engine(engine_config())                                  # doctest: +SKIP
    >>> engine.apply(place("c1", "BUY", "0.01", "60000", ts=1))           # doctest: +SKIP

Money is written as decimal strings (``"60000.01"``) and converted exactly with :func:`veloz_actors.fixed.parse_decimal`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.instruments import Instrument
from ..core.risk import RiskLimits
from ..fixed import parse_decimal
from ..messages import (
    BookTop,
    CancelOrder,
    OrderType,
    PlaceOrder,
    Side,
    TimeInForce,
    Trade,
    encode,
)
from ..venues.engine import Engine, EngineConfig
from ..venues.simmarket import SimSymbol

__all__ = [
    "ACCOUNTS",
    "FakeClock",
    "btcusdt",
    "cancel",
    "d",
    "book_top",
    "engine_config",
    "engine_state",
    "ethusdt",
    "instruments",
    "place",
    "sim_symbols",
    "trade",
    "encoded",
]

# The two trading accounts of :func:`engine_config` ("main" is the default account of every command).
ACCOUNTS = ("main", "other")
START_NS = 1_700_000_000_000_000_000


def d(text: str | int) -> int:
    """A decimal string as 1e-8 units, exactly (negative allowed): ``d("0.01") == 1_000_000``."""
    return parse_decimal(text, "test value", allow_negative=True)


@dataclass
class FakeClock:
    """A clock in integer nanoseconds that moves only when told to (``clock()`` reads it, like ``time.time_ns``)."""

    now: int = START_NS

    def __call__(self) -> int:
        return self.now

    def advance(self, ns: int = 1) -> int:
        self.now += ns
        return self.now

    def advance_seconds(self, seconds: float) -> int:
        return self.advance(int(seconds * 1_000_000_000))


def btcusdt(**overrides: Any) -> Instrument:
    """BTCUSDT with Binance spot's real filters (tick 0.01, step 0.00001, min notional 10) and 0.1 % fees."""
    return _binance_spot("BTCUSDT", "BTC", "0.00001", overrides)


def ethusdt(**overrides: Any) -> Instrument:
    """ETHUSDT with Binance spot's real filters (tick 0.01, step 0.0001, min notional 10) and 0.1 % fees."""
    return _binance_spot("ETHUSDT", "ETH", "0.0001", overrides)


def _binance_spot(symbol: str, base_asset: str, step: str, overrides: dict[str, Any]) -> Instrument:
    values: dict[str, Any] = dict(
        symbol=symbol,
        base_asset=base_asset,
        quote_asset="USDT",
        price_tick=d("0.01"),
        qty_step=d(step),
        min_qty=d(step),
        max_qty=d("9000"),
        min_notional=d("10"),
        min_price=d("0.01"),
        max_price=d("1000000"),
        maker_fee_rate=d("0.001"),
        taker_fee_rate=d("0.001"),
    )
    values.update(overrides)
    return Instrument(**values)


def instruments() -> tuple[Instrument, ...]:
    return (btcusdt(), ethusdt())


def sim_symbols(levels: int = 3) -> tuple[SimSymbol, ...]:
    """A simulated market around 60000 BTCUSDT and 2500 ETHUSDT (a few levels, so property tests stay fast)."""
    return (
        SimSymbol(symbol="BTCUSDT", initial_mid=d("60000"), volatility_ppb=500, levels=levels, level_qty=d("0.5")),
        SimSymbol(symbol="ETHUSDT", initial_mid=d("2500"), volatility_ppb=700, levels=levels, level_qty=d("5")),
    )


def engine_config(
    *,
    sim: bool = False,
    risk: RiskLimits | None = None,
    balances: dict[str, dict[str, int]] | None = None,
    snapshot_every: int = 10_000,
    seed: int = 7,
    levels: int = 3,
    venue_kind: str = "sim",
) -> EngineConfig:
    """Two funded accounts (``main`` and ``other``: 100000 USDT, 2 BTC, 20 ETH each) on BTCUSDT and ETHUSDT.

    ``sim=True`` adds the seeded simulated market and its market maker; ``risk`` defaults to no limits at all except
    the default 5 % price band. ``venue_kind="paper"`` trades in a paper venue against market data handed in.
    """
    if balances is None:
        balances = {account: {"USDT": d("100000"), "BTC": d("2"), "ETH": d("20")} for account in ACCOUNTS}
    return EngineConfig(
        instruments=instruments(),
        balances=balances,
        risk=risk if risk is not None else RiskLimits(),
        sim_symbols=sim_symbols(levels) if sim else (),
        seed=seed,
        market_maker_balances={"USDT": d("100000000"), "BTC": d("10000"), "ETH": d("100000")} if sim else {},
        snapshot_every=snapshot_every,
        venue_kind=venue_kind,
    )


def place(
    cid: str,
    side: str | Side,
    qty: str | None,
    price: str | None = None,
    *,
    symbol: str = "BTCUSDT",
    account: str = "main",
    tif: str | TimeInForce = TimeInForce.GTC,
    quote_qty: str | None = None,
    ts: int = START_NS,
) -> PlaceOrder:
    """A PlaceOrder from decimal strings: a LIMIT order when ``price`` is given, else a MARKET order."""
    return PlaceOrder(
        client_order_id=cid,
        account_id=account,
        symbol=symbol,
        side=Side(side),
        order_type=OrderType.LIMIT if price is not None else OrderType.MARKET,
        qty=d(qty) if qty is not None else 0,
        price=d(price) if price is not None else None,
        quote_qty=d(quote_qty) if quote_qty is not None else None,
        tif=TimeInForce(tif),
        ts=ts,
    )


def cancel(cid: str, *, account: str = "main", ts: int = START_NS) -> CancelOrder:
    return CancelOrder(client_order_id=cid, account_id=account, ts=ts)


def trade(price: str, *, symbol: str = "BTCUSDT", qty: str = "0.1", ts: int = START_NS, trade_id: int = 1) -> Trade:
    """A public trade from a feed (it moves the engine's reference price and marks)."""
    return Trade(
        symbol=symbol, trade_id=trade_id, price=d(price), qty=d(qty), aggressor=Side.BUY, ts_event=ts, ts_recv=ts
    )


def book_top(bid: str, ask: str, *, symbol: str = "BTCUSDT", qty: str = "1", ts: int = START_NS) -> BookTop:
    return BookTop(
        symbol=symbol,
        bid_price=d(bid),
        bid_qty=d(qty),
        ask_price=d(ask),
        ask_qty=d(qty),
        update_id=1,
        ts_event=ts,
        ts_recv=ts,
    )


def engine_state(engine: Engine) -> tuple[dict[str, object], list[dict[str, object]]]:
    """What must be identical between two engines that saw the same inputs: balances, fees, positions and orders."""
    return engine.ledger.export(), engine.oms.export()


def encoded(events: list[Any]) -> list[bytes]:
    """Events as their codec bytes, to compare event streams byte for byte."""
    return [encode(e) for e in events]
