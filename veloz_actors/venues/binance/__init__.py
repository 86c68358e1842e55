"""The Binance adapter: payload schemas (:mod:`.schemas`) turning raw Binance JSON into VeloZ messages, and the live
spot market data client (:mod:`.market_data`, imported on first use: it pulls in aiohttp, which parsing recorded data
does not need).

Trading building blocks, all pure (no I/O): request signing and credentials (:mod:`.auth`, imported on first use: it
pulls in ``cryptography``), rate limits (:mod:`.limits`), error codes (:mod:`.errors`) and the user data stream and
trading answers (:mod:`.user_data`), and the reconciliation's comparison (:mod:`.reconcile`).

The trading adapter (:mod:`.venue`: :class:`BinanceVenue` behind the venue protocol, :class:`VenueThread` running it on
its own loop thread) is imported on first use, like the market data client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import Outcome, classify
from .instruments import ExchangeInstruments, load_instruments, parse_exchange_info
from .limits import RateLimit, RateLimits, parse_rate_limits
from .reconcile import (
    BalanceDifference,
    ExternalOrder,
    KernelView,
    KnownOrder,
    ReconcileReport,
    build_reconciliation,
    kernel_view,
)
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
from .user_data import (
    AccountTrade,
    OrderState,
    StreamTerminated,
    parse_account_balances,
    parse_balance_update,
    parse_cancel_response,
    parse_execution_report,
    parse_execution_reports,
    parse_my_trades,
    parse_open_orders,
    parse_order_response,
    parse_order_state,
    parse_outbound_account_position,
    parse_user_event,
)

if TYPE_CHECKING:
    from .auth import Credentials, CredentialsRef, Verifier
    from .market_data import (
        Backoff,
        BinanceMarketData,
        BookSync,
        LatencyStats,
        MarketDataSettings,
        MarketDataThread,
    )
    from .venue import BinanceVenue, BinanceVenueSettings, VenueThread, VenueUnavailable

_MARKET_DATA = frozenset(
    {"Backoff", "BinanceMarketData", "BookSync", "LatencyStats", "MarketDataSettings", "MarketDataThread"}
)
_AUTH = frozenset({"Credentials", "CredentialsRef", "Verifier"})
_VENUE = frozenset({"BinanceVenue", "BinanceVenueSettings", "VenueThread", "VenueUnavailable"})


def __getattr__(name: str) -> Any:
    if name in _MARKET_DATA:
        from . import market_data

        return getattr(market_data, name)
    if name in _AUTH:
        from . import auth

        return getattr(auth, name)
    if name in _VENUE:
        from . import venue

        return getattr(venue, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AccountTrade",
    "Backoff",
    "BalanceDifference",
    "BinanceMarketData",
    "BinanceVenue",
    "BinanceVenueSettings",
    "BookSync",
    "Credentials",
    "CredentialsRef",
    "ExchangeInstruments",
    "ExternalOrder",
    "KernelView",
    "KnownOrder",
    "LatencyStats",
    "MarketDataSettings",
    "MarketDataThread",
    "OrderState",
    "Outcome",
    "RateLimit",
    "RateLimits",
    "ReconcileReport",
    "StreamTerminated",
    "VenueThread",
    "VenueUnavailable",
    "Verifier",
    "build_reconciliation",
    "classify",
    "decimal_units",
    "interval_ns",
    "kernel_view",
    "load_instruments",
    "parse_account_balances",
    "parse_agg_trade",
    "parse_balance_update",
    "parse_book_ticker",
    "parse_cancel_response",
    "parse_depth_snapshot",
    "parse_depth_update",
    "parse_exchange_info",
    "parse_execution_report",
    "parse_execution_reports",
    "parse_funding_rates",
    "parse_kline",
    "parse_mark_price_update",
    "parse_message",
    "parse_my_trades",
    "parse_open_orders",
    "parse_order_response",
    "parse_order_state",
    "parse_outbound_account_position",
    "parse_premium_index",
    "parse_rate_limits",
    "parse_rest_klines",
    "parse_trade",
    "parse_user_event",
    "unwrap",
]
