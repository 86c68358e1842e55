"""The Binance adapter: payload schemas (:mod:`.schemas`) turning raw Binance JSON into VeloZ messages."""

from __future__ import annotations

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

__all__ = [
    "ExchangeInstruments",
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
