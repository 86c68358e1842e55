"""The Binance adapter: payload schemas (:mod:`.schemas`) turning raw Binance JSON into VeloZ messages, and the live
spot market data client (:mod:`.market_data`, imported on first use: it pulls in aiohttp, which parsing recorded data
does not need)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .instruments import ExchangeInstruments, load_instruments, parse_exchange_info
from .schemas import (
    decimal_units,
    interval_ns,
    parse_agg_trade,
    parse_book_ticker,
    parse_depth_snapshot,
    parse_depth_update,
    parse_funding_rates,
    parse_kline,
    parse_mark_price_update,
    parse_message,
    parse_premium_index,
    parse_rest_klines,
    parse_trade,
    unwrap,
)

if TYPE_CHECKING:
    from .market_data import (
        Backoff,
        BinanceMarketData,
        BookSync,
        LatencyStats,
        MarketDataSettings,
        MarketDataThread,
    )

_MARKET_DATA = frozenset(
    {"Backoff", "BinanceMarketData", "BookSync", "LatencyStats", "MarketDataSettings", "MarketDataThread"}
)


def __getattr__(name: str) -> Any:
    if name in _MARKET_DATA:
        from . import market_data

        return getattr(market_data, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Backoff",
    "BinanceMarketData",
    "BookSync",
    "ExchangeInstruments",
    "LatencyStats",
    "MarketDataSettings",
    "MarketDataThread",
    "decimal_units",
    "interval_ns",
    "load_instruments",
    "parse_agg_trade",
    "parse_book_ticker",
    "parse_depth_snapshot",
    "parse_depth_update",
    "parse_exchange_info",
    "parse_funding_rates",
    "parse_kline",
    "parse_mark_price_update",
    "parse_message",
    "parse_premium_index",
    "parse_rest_klines",
    "parse_trade",
    "unwrap",
]
