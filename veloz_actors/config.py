"""Configuration files: pydantic models for what comes from outside, converted into the core's plain values.

Money in config files is written as decimal strings (``"0.01"``, ``"100000"``) and converted exactly; a value that
does not validate raises :class:`ConfigError` naming the file and the field.

>>> cfg = load_engine_config("configs/engine.yaml")   # doctest: +SKIP
>>> engine = Engine(cfg.engine_config())              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ._exceptions import ConfigError, DataError, InvalidInput, quoted
from .core.instruments import Instrument, Pricing
from .core.kernel import KernelConfig
from .core.risk import RiskLimits
from .core.risk_monitor import EngineRiskLimits
from .fixed import SCALE, float_text, format_decimal, parse_decimal
from .logs import LogSettings, parse_format, parse_level, redact, redact_url
from .venues.engine import EngineConfig
from .venues.simmarket import SimSymbol

__all__ = [
    "DEFAULT_ENGINE_CONFIG",
    "INT64_MAX",
    "MAX_SUBSCRIBER_QUEUE",
    "MAX_TICK_MS",
    "ActorsModel",
    "ApiModel",
    "EngineFileConfig",
    "LoggingModel",
    "BINANCE_PRESETS",
    "ReplayModel",
    "VenueModel",
    "StrategyEntryModel",
    "default_engine_config",
    "load_engine_config",
    "load_yaml",
    "not_bool",
    "parse_yaml",
    "only_section",
    "resolve_venue_instruments",
    "with_logging",
    "with_venue",
]

#: where ``veloz start`` and ``vz.start_local()`` look for the engine config first (relative to the working directory)
DEFAULT_ENGINE_CONFIG = Path("configs/engine.yaml")


def _yaml_text(value: Any) -> str:
    """``value`` as it reads in a YAML file: ``true``, ``null``, ``[1, 2]``."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def _number(value: Any) -> Any:
    """Refuse what is not a number before pydantic coerces it (a YAML ``true`` would otherwise become 1)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f'expected a number like "0.01", got {_yaml_text(value)}')
    return value


def not_bool(value: Any) -> Any:
    """A pydantic before-validator: refuse YAML's true / false where a number belongs (it would be taken as 1 / 0)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {_yaml_text(value)}")
    return value


#: what the journal's JSON codec (orjson) and the numpy paths hold: a config integer beyond it crashed the start
INT64_MAX = 2**63 - 1


def _int64(value: int) -> int:
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise ValueError(f"must be at most {INT64_MAX:,} in size (a 64-bit integer), got {quoted(value)}")
    return value


def _finite(value: Any) -> Any:
    """:func:`not_bool`, and a float must be a number: YAML's .inf or .nan is refused (an infinite retention or
    speed crashed the start, NaN escaped the range checks)."""
    value = not_bool(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {_yaml_text(value)}")
    return value


Decimal = Annotated[str | int | float, BeforeValidator(_number)]
Int = Annotated[int, BeforeValidator(not_bool), AfterValidator(_int64)]
Float = Annotated[float, BeforeValidator(_finite), Field(allow_inf_nan=False)]


def _kind(value: Any) -> str:
    """What a YAML value is, in the file's terms: a list, a string, a number, ..."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({_yaml_text(value)})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    for kind, name in ((str, "a string"), (list, "a list"), (dict, "a mapping")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _message(error: Any) -> str:
    """A pydantic error's message in the file's terms: no model class name where a section is not a mapping, no
    "Value error," before a validator's own words."""
    if error["type"] == "model_type":
        return f"must be a mapping of settings, got {_kind(error['input'])}"
    return str(error["msg"]).removeprefix("Value error, ")


def _dec(value: Decimal, what: str) -> int:
    if isinstance(value, float):  # YAML reads an unquoted 0.00001 as the float 1e-05: judged by its digits
        value = float_text(value, what)
    return parse_decimal(value, what)


class _Model(BaseModel):
    # hide_input_in_errors: a ValidationError (chained under a ConfigError, shown in a traceback) never carries a
    # value of the file, which may be a secret (api.token, a key pasted into the wrong field)
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # a venue URL's userinfo or ?apiKey= never shows where a config is printed (a log line, an error, a debugger)
    def __repr__(self) -> str:
        return redact(super().__repr__())

    def __str__(self) -> str:
        return redact(super().__str__())


class InstrumentModel(_Model):
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    min_price: Decimal = "0"
    max_price: Decimal = "0"
    maker_fee_rate: Decimal = "0.001"
    taker_fee_rate: Decimal = "0.001"

    def build(self) -> Instrument:
        w = f"instruments.{self.symbol}"
        return Instrument(
            symbol=self.symbol,
            base_asset=self.base_asset,
            quote_asset=self.quote_asset,
            price_tick=_dec(self.tick_size, f"{w}.tick_size"),
            qty_step=_dec(self.step_size, f"{w}.step_size"),
            min_qty=_dec(self.min_qty, f"{w}.min_qty"),
            max_qty=_dec(self.max_qty, f"{w}.max_qty"),
            min_notional=_dec(self.min_notional, f"{w}.min_notional"),
            min_price=_dec(self.min_price, f"{w}.min_price"),
            max_price=_dec(self.max_price, f"{w}.max_price"),
            maker_fee_rate=_dec(self.maker_fee_rate, f"{w}.maker_fee_rate"),
            taker_fee_rate=_dec(self.taker_fee_rate, f"{w}.taker_fee_rate"),
        )


class RiskModel(_Model):
    max_order_qty: dict[str, Decimal] = Field(default_factory=dict)
    max_order_notional: Decimal = "0"
    max_position: dict[str, Decimal] = Field(default_factory=dict)
    max_leverage: Decimal = "0"
    price_band: Decimal = "0.05"
    orders_per_second: Int = Field(default=0, ge=0)
    burst: Int = Field(default=50, ge=1)
    max_drawdown: Decimal = "0"
    max_loss: Decimal = "0"
    stop_loss: Decimal = "0"

    def build(self) -> RiskLimits:
        max_drawdown = _dec(self.max_drawdown, "risk.max_drawdown")
        if max_drawdown > SCALE:
            raise ConfigError(
                f"risk.max_drawdown: {self.max_drawdown!r} is above 1 (100 %); it is a fraction of peak equity, "
                'e.g. "0.2" for 20 % ("0": no limit)'
            )
        stop_loss = _dec(self.stop_loss, "risk.stop_loss")
        if stop_loss >= SCALE:  # a long cannot fall 100 % below its entry: such a stop would never fire
            raise ConfigError(
                f"risk.stop_loss: {self.stop_loss!r} is 1 (100 %) or more; it is the fall below a position's average "
                'entry that closes it, e.g. "0.1" for 10 % ("0": no stop-loss)'
            )
        price_band = _dec(self.price_band, "risk.price_band")
        if price_band >= SCALE:  # the band's low end would be zero or below: a market sell walks down to one tick
            raise ConfigError(
                f"risk.price_band: {self.price_band!r} is 1 (100 %) or more; it is a fraction of the reference price "
                'that limit prices must stay within and market orders may walk, e.g. "0.05" for 5 %'
            )
        return RiskLimits(
            max_order_qty={k: _dec(v, f"risk.max_order_qty.{k}") for k, v in self.max_order_qty.items()},
            max_order_notional=_dec(self.max_order_notional, "risk.max_order_notional"),
            max_position={k: _dec(v, f"risk.max_position.{k}") for k, v in self.max_position.items()},
            max_leverage=_dec(self.max_leverage, "risk.max_leverage"),
            price_band=price_band,
            orders_per_second=self.orders_per_second,
            burst=self.burst,
            max_drawdown=max_drawdown,
            max_loss=_dec(self.max_loss, "risk.max_loss"),
            stop_loss=stop_loss,
        )


class EngineRiskModel(_Model):
    """``engine_risk``: engine-wide limits the risk actor watches (post-trade, off the order path); "0" or a symbol
    or asset left out means no limit. Crossing one halts trading (the kernel's circuit breaker) until a reset."""

    max_symbol_exposure: dict[str, Decimal] = Field(default_factory=dict)  # symbol -> sum of long positions (base)
    max_asset_exposure: dict[str, Decimal] = Field(default_factory=dict)  # asset -> sum of |balance|
    max_gross_exposure: Decimal = "0"  # sum of long position x mark, in the valuation asset
    max_drawdown: Decimal = "0"  # fraction of peak engine equity ("0.2" = 20 %)
    max_loss: Decimal = "0"  # fall from the starting engine equity, in the valuation asset

    def build(self) -> EngineRiskLimits:
        try:
            return EngineRiskLimits(
                max_symbol_exposure={
                    k: _dec(v, f"engine_risk.max_symbol_exposure.{k}") for k, v in self.max_symbol_exposure.items()
                },
                max_asset_exposure={
                    k: _dec(v, f"engine_risk.max_asset_exposure.{k}") for k, v in self.max_asset_exposure.items()
                },
                max_gross_exposure=_dec(self.max_gross_exposure, "engine_risk.max_gross_exposure"),
                max_drawdown=_dec(self.max_drawdown, "engine_risk.max_drawdown"),
                max_loss=_dec(self.max_loss, "engine_risk.max_loss"),
            )
        except InvalidInput as exc:
            raise ConfigError(str(exc)) from exc


class SimSymbolModel(_Model):
    symbol: str
    initial_mid: Decimal
    drift_ppb: Int = 0
    volatility_ppb: Int = Field(default=1_000, ge=0)
    spread_ticks: Int = Field(default=2, ge=1)
    levels: Int = Field(default=5, ge=1, le=100)
    level_spacing_ticks: Int = Field(default=1, ge=1)
    level_qty: Decimal = "0.1"

    def build(self) -> SimSymbol:
        w = f"sim.symbols.{self.symbol}"
        return SimSymbol(
            symbol=self.symbol,
            initial_mid=_dec(self.initial_mid, f"{w}.initial_mid"),
            drift_ppb=self.drift_ppb,
            volatility_ppb=self.volatility_ppb,
            spread_ticks=self.spread_ticks,
            levels=self.levels,
            level_spacing_ticks=self.level_spacing_ticks,
            level_qty=_dec(self.level_qty, f"{w}.level_qty"),
        )


#: the most events one subscriber's queue on the event bus may hold (a benchmark's subscriber lags this far at full
#: speed): a bigger queue on a slow or dead subscriber would be an unbounded one
MAX_SUBSCRIBER_QUEUE = 2_000_000


#: the slowest simulated market step: an hour (a longer wait overflowed the engine loop's timer and crashed the start)
MAX_TICK_MS = 3_600_000


class SimModel(_Model):
    seed: Int = Field(default=7, ge=0)  # the price process's generator (PCG64) takes a non-negative seed
    tick_ms: Int = Field(default=250, ge=1, le=MAX_TICK_MS)
    symbols: list[SimSymbolModel] = Field(default_factory=list)
    market_maker_balances: dict[str, Decimal] = Field(default_factory=dict)


# the retention is kept in int64 nanoseconds (the journal's header): 292 years
_MAX_RETAIN_SECONDS = INT64_MAX // 1_000_000_000


class JournalModel(_Model):
    path: str | None = "runs/engine.journal"
    durability: Literal["always", "group", "none"] = "group"
    group_ms: Float = Field(default=5.0, gt=0, le=1000)
    snapshot_every: Int = Field(default=10_000, ge=1)
    # closed orders older than this (seconds of message time) leave the kernel's memory for the order history file
    # beside the journal, which queries still read; 0 keeps every order in memory (a backtest, a short session)
    retain_closed_seconds: Float = Field(default=0, ge=0, le=_MAX_RETAIN_SECONDS)


#: Binance's spot endpoints (``venue.preset``): REST, market streams, WebSocket API
BINANCE_PRESETS: dict[str, dict[str, str]] = {
    "live": {
        "rest_url": "https://api.binance.com",
        "stream_url": "wss://stream.binance.com:9443",
        "ws_api_url": "wss://ws-api.binance.com:443/ws-api/v3",
    },
    "testnet": {
        "rest_url": "https://testnet.binance.vision",
        "stream_url": "wss://stream.testnet.binance.vision",
        "ws_api_url": "wss://ws-api.testnet.binance.vision/ws-api/v3",
    },
}


class VenueModel(_Model):
    """``venue:``: where orders go. ``sim`` (default): the seeded simulated market. ``binance``: Binance's live
    market data, with ``mode: paper`` filling orders in simulation against the live book, or ``mode: live`` sending
    real orders (which also needs the ``--live`` flag, keys and risk limits: ``veloz start``). The URLs default to the
    ``preset``'s endpoints; giving them points the engine at another server (the tests' local Binance server)."""

    kind: Literal["sim", "binance"] = "sim"
    mode: Literal["paper", "live"] = "paper"
    preset: Literal["live", "testnet"] = "live"
    symbols: list[str] = Field(default_factory=list)
    rest_url: str | None = None
    stream_url: str | None = None
    ws_api_url: str | None = None
    kline_interval: str | None = "1m"
    snapshot_limit: Int = Field(default=5000, ge=5, le=5000)
    # REST pacing of the market-data client: depth snapshots at once (all symbols), and the request weight a minute
    # it lets the IP reach (Binance allows 6000; the rest is left to the trading client)
    snapshots_in_flight: Int = Field(default=2, ge=1, le=100)
    rest_weight_per_minute: Int = Field(default=3000, ge=1, le=6000)
    # live: a 0600 KEY=VALUE file with BINANCE_API_KEY and BINANCE_API_SECRET / BINANCE_PRIVATE_KEY_FILE, read over
    # the environment by every process that trades (the actor engine's venue actor, also after a restart)
    credentials_file: str | None = None
    # live: the trading adapter's settings (BinanceVenueSettings: order_path, request_timeout, recv_window_ms, ...)
    trading: dict[str, Any] = Field(default_factory=dict)
    maker_fee_rate: Decimal = "0.001"
    taker_fee_rate: Decimal = "0.001"

    @field_validator("symbols")
    @classmethod
    def _upper_unique(cls, value: list[str]) -> list[str]:
        upper = [s.strip().upper() for s in value]
        if any(not s.isalnum() for s in upper):
            raise ValueError(f"symbols must be Binance symbols like BTCUSDT, got {value}")
        if len(set(upper)) != len(upper):
            raise ValueError(f"repeated symbols in {value}")
        return upper

    @field_validator("credentials_file")
    @classmethod
    def _a_path(cls, value: str | None) -> str | None:
        # imported here: the module loads the cryptography library (~0.15 s), which only a live venue needs, and every
        # actor process and CLI command imports this module
        from .venues.binance.auth import cannot_be_a_path

        if value is not None and cannot_be_a_path(value):
            raise ValueError(
                "must be the path of a KEY=VALUE file, not the file's content or a key (the value is not shown)"
            )
        return value

    @model_validator(mode="after")
    def _usable(self) -> VenueModel:
        if self.kind == "binance" and not self.symbols:
            raise ValueError("a binance venue needs symbols (venue.symbols or --symbols BTCUSDT,ETHUSDT)")
        from .venues.binance.limits import depth_weight

        if depth_weight(self.snapshot_limit) > self.rest_weight_per_minute:
            raise ValueError(
                f"rest_weight_per_minute {self.rest_weight_per_minute} is less than one depth snapshot's weight, "
                f"{depth_weight(self.snapshot_limit)} at snapshot_limit {self.snapshot_limit}: no book could ever sync"
            )
        for name in ("rest_url", "stream_url", "ws_api_url"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("http://", "https://", "ws://", "wss://")):
                raise ValueError(f"{name} must be an http(s):// or ws(s):// URL, got {redact_url(url)!r}")
        return self

    def urls(self) -> dict[str, str]:
        """The endpoints in use: the preset's, with any URL given here instead."""
        preset = BINANCE_PRESETS[self.preset]
        return {name: getattr(self, name) or preset[name] for name in ("rest_url", "stream_url", "ws_api_url")}

    def trading_settings(self) -> dict[str, Any]:
        """The live trading adapter's settings (:class:`~veloz_actors.venues.binance.venue.BinanceVenueSettings`):
        ``trading`` with the URLs, checked here (a :class:`ConfigError` naming what is wrong) for both engines."""
        from .venues.binance.venue import BinanceVenueSettings

        urls = self.urls()
        settings = {**self.trading, "rest_url": urls["rest_url"], "ws_api_url": urls["ws_api_url"]}
        try:
            BinanceVenueSettings(**settings)
        except TypeError as exc:
            raise ConfigError(f"venue.trading: {exc}") from None
        return settings

    def market_data(self) -> dict[str, Any]:
        """The settings of the market-data client (:class:`~veloz_actors.venues.binance.market_data.MarketDataSettings`)."""
        urls = self.urls()
        return {
            "venue": "binance",
            "rest_url": urls["rest_url"].rstrip("/"),
            "stream_url": urls["stream_url"].rstrip("/"),
            "symbols": tuple(self.symbols),
            "kline_interval": self.kline_interval,
            "snapshot_limit": self.snapshot_limit,
            "snapshots_in_flight": self.snapshots_in_flight,
            "rest_weight_per_minute": self.rest_weight_per_minute,
        }


class MetricsModel(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Int = Field(default=9464, ge=0, le=65535)


class ApiModel(_Model):
    """``api:``: the HTTP/WebSocket API and the monitoring page of ``veloz start`` (:mod:`veloz_actors.interfaces.http_api`).

    ``enabled`` serves it on ``host:port`` (``--http [HOST:]PORT`` overrides both and serves it whatever ``enabled``
    says). ``token`` unset: ``VELOZ_API_TOKEN``, else the run folder's ``api-token`` file, else a new one written
    there (mode 0600). ``queue``: events a WebSocket client may fall behind before its oldest are dropped (counted, and
    the client gets a gap message and a fresh snapshot). ``cors_origins``: origins allowed to call the API from a
    browser page served elsewhere (none by default: the monitoring page is served by the API itself).
    ``allowed_hosts``: names besides the bound host and the loopback names that requests may carry in ``Host`` (the
    machine's name when the API listens beyond it); ``allowed_origins``: pages elsewhere that may open the WebSocket
    stream (its own origin always may)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Int = Field(default=8080, ge=0, le=65535)
    token: str | None = Field(default=None, min_length=16, max_length=256, repr=False)
    queue: Int = Field(default=10_000, ge=1, le=100_000)
    max_body_bytes: Int = Field(default=16_384, ge=256, le=16 * 1024 * 1024)
    cors_origins: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        host = value.strip().strip("[]")
        if not host or any(c.isspace() or c in "/?#@" for c in host):
            raise ValueError(f"host must be an IP address or a host name, got {value!r}")
        return host

    @field_validator("cors_origins", "allowed_origins")
    @classmethod
    def _origins(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for origin in value:
            if not origin.startswith(("http://", "https://")) or origin.rstrip("/").count("/") > 2:
                raise ValueError(f"{info.field_name} take origins like https://example.com, got {origin!r}")
        return [origin.rstrip("/") for origin in value]

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        out = []
        for given in value:
            host = given.strip().strip("[]").lower()
            problem = not host or any(c.isspace() or c in "/?#@" for c in host)
            if ":" in host:  # an IPv6 address; a name with a port is refused (every port of an allowed name passes)
                try:
                    host = str(ipaddress.IPv6Address(host))
                except ValueError:
                    problem = True
            if problem:
                raise ValueError(f"allowed_hosts take host names or addresses without a port, got {given!r}")
            out.append(host)
        return out

    def address(self) -> str:
        """``HOST:PORT`` as ``--http`` takes it (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def options(self) -> dict[str, Any]:
        """The keyword options of :func:`~veloz_actors.interfaces.http_api.serve_api` this section sets."""
        return {
            "queue": self.queue,
            "max_body_bytes": self.max_body_bytes,
            "cors_origins": tuple(self.cors_origins),
            "allowed_hosts": tuple(self.allowed_hosts),
            "allowed_origins": tuple(self.allowed_origins),
        }


class LoggingModel(_Model):
    """``logging:``: the structured logs of the CLI, the engine and every actor (:mod:`veloz_actors.logs`).

    ``file``: true (default) writes ``veloz.log`` in the run folder (the journal's folder; none without a journal),
    a path writes that file (actors beside it: ``veloz-oms.log``, ...) even without a journal, false only stderr.
    ``stderr_level`` unset: WARNING while a file is written, else ``level``. ``--log-format`` and ``--log-level``
    override ``format`` and ``level``."""

    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    stderr_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None
    file: bool | str = True
    max_bytes: Int = Field(default=10 * 1024 * 1024, ge=1024)  # rotate when the file would grow past this
    backups: Int = Field(default=5, ge=1, le=1000)  # rotated files kept (veloz.log.1 ... veloz.log.<backups>)

    @field_validator("format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("level", "stderr_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    def settings(self, run_dir: str | Path | None) -> LogSettings:
        """The plain settings for :func:`~veloz_actors.logs.configure_logging`, the file made absolute (actors may
        run in another working directory): ``<run_dir>/veloz.log``, the configured path, or none."""
        if isinstance(self.file, str):
            file: Path | None = Path(self.file).expanduser().resolve()
        elif self.file and run_dir is not None:
            file = Path(run_dir).expanduser().resolve() / "veloz.log"
        else:
            file = None
        return LogSettings(
            format=self.format,
            level=self.level,
            stderr_level=self.stderr_level,
            file=None if file is None else str(file),
            max_bytes=self.max_bytes,
            backups=self.backups,
        )


class ReplayModel(_Model):
    """``actors.replay``: a recorded WebSocket capture (``../shared/data/ticks_l2``) the feed actor replays."""

    path: str
    speed: Float = Field(default=1.0, ge=0, description="1 = as recorded, 10 = ten times faster, 0 = at once")
    batch: Int = Field(default=1000, ge=1, le=100_000)
    reference_prices: bool = False  # its trades and tops also move the OMS's reference prices (risk price band)

    def resolved(self) -> dict[str, Any]:
        """The settings the feed actor gets, the path made absolute (the actor may run in another working directory);
        a missing file is a :class:`ConfigError` now rather than a silent feed later."""
        path = Path(self.path).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"actors.replay.path: no such file: {self.path}")
        return {**self.model_dump(), "path": str(path)}


class StrategyEntryModel(_Model):
    """One ``actors.strategies`` entry: a built-in bar strategy trading one symbol on the actor engine.

    Its ``params`` are the strategy's own to check (the actor layer asks the strategy when it builds the engine).
    """

    strategy: str
    symbol: str
    params: dict[str, Any] = Field(default_factory=dict)
    bar_ms: Int = Field(default=1000, gt=0)  # bars of this many milliseconds, from the book's mid price
    account: str = "main"
    queue: Int = Field(default=10_000, ge=1, le=MAX_SUBSCRIBER_QUEUE)  # the strategy's bounded queue on the event bus
    # "own": on_order_event gets the events of the orders the strategy placed (as in a backtest); "all": every order
    # event of its account, those of orders placed by hand or by another strategy too
    order_events: Literal["own", "all"] = "own"

    @model_validator(mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        if not isinstance(value, dict) or "strategy" not in value or "symbol" not in value:
            raise ValueError(f"each entry needs 'strategy' and 'symbol', got {value!r}")
        return value


class ActorsModel(_Model):
    """``actors:``: the actor engine's layout and limits (see ``configs/engine.yaml``)."""

    shards: dict[str, list[str]] = Field(default_factory=dict)  # venue actor -> its symbols (default: one each)
    subscriber_queue: Int = Field(default=10_000, ge=1, le=MAX_SUBSCRIBER_QUEUE)  # events a subscriber may lag
    # a subscription not polled for this long is dropped (a client that comes back subscribes again, counting a gap)
    subscriber_idle_seconds: Float = Field(default=300.0, ge=1.0, le=86_400.0)
    order_inbox: Int = Field(default=1_000, ge=1)  # orders in flight before new ones are rejected OVERLOADED
    peer_window: Int = Field(default=64, ge=1)  # one-way calls in flight to one peer actor
    replay: ReplayModel | None = None  # a recorded capture the feed replays (a bare path is accepted)
    strategies: list[StrategyEntryModel] = Field(default_factory=list)
    risk: bool = False  # run the risk actor (engine-wide post-trade risk); its limits are the engine_risk section
    journal_mode: Literal["shared", "node-local"] = Field(
        default="shared",
        description=(
            "Where the stateful actors' journals (OMS, venue actors, account view, risk actor, feed offsets; in the "
            "directory beside journal.path, <path>.actors/) live on a multi-node cluster. 'shared': a filesystem "
            "every node reaches (NFS, EFS, a mounted volume; one machine is trivially this case), so an actor Ray "
            "restarts on any node recovers from it. 'node-local': the journals stay on the disk of the node that "
            "started the engine, each stateful actor is pinned there (Ray's NodeAffinitySchedulingStrategy, "
            "soft=False); if that node is gone the actor cannot come back and STATUS names it, its node and what to "
            "do."
        ),
    )

    @field_validator("replay", mode="before")
    @classmethod
    def _bare_path(cls, value: Any) -> Any:
        return {"path": str(value)} if isinstance(value, str | Path) else value

    @field_validator("strategies", mode="before")
    @classmethod
    def _no_strategies(cls, value: Any) -> Any:
        return [] if value is None else value

    def shard_map(self, symbols: list[str]) -> dict[str, tuple[str, ...]]:
        """Venue actor -> its symbols: the configured shards, then one actor for each symbol no shard names."""
        shards = {name: tuple(members) for name, members in self.shards.items()}
        placed = {s for members in shards.values() for s in members}
        shards.update({symbol: (symbol,) for symbol in symbols if symbol not in placed})
        return shards


def parse_actors(data: Any) -> ActorsModel:
    """Validate an ``actors:`` mapping; :class:`ConfigError` names each bad field (``actors.replay: speed: ...``)."""
    try:
        return ActorsModel.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            section, *rest = [str(p) for p in error["loc"]] or ["value"]
            where = f"actors.{section}: {'.'.join(rest)}" if rest else f"actors.{section}"
            problems.append(f"{where}: {_message(error)}")
        raise ConfigError("; ".join(problems)) from None


class EngineFileConfig(_Model):
    """The engine section of a config file (``configs/engine.yaml``)."""

    instruments: list[InstrumentModel]
    balances: dict[str, dict[str, Decimal]]
    risk: RiskModel = Field(default_factory=RiskModel)
    engine_risk: EngineRiskModel = Field(default_factory=EngineRiskModel)
    valuation_asset: str = "USDT"
    sim: SimModel = Field(default_factory=SimModel)
    journal: JournalModel = Field(default_factory=JournalModel)
    metrics: MetricsModel = Field(default_factory=MetricsModel)
    api: ApiModel = Field(default_factory=ApiModel)
    logging: LoggingModel = Field(default_factory=LoggingModel)
    actors: ActorsModel = Field(default_factory=ActorsModel)
    venue: VenueModel = Field(default_factory=VenueModel)

    @field_validator("instruments")
    @classmethod
    def _unique_symbols(cls, value: list[InstrumentModel]) -> list[InstrumentModel]:
        symbols = [i.symbol for i in value]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"duplicate instrument symbols in {symbols}")
        return value

    @model_validator(mode="after")
    def _some_instruments(self) -> EngineFileConfig:
        if not self.instruments and self.venue.kind == "sim":
            raise ValueError("at least one instrument is required (or a binance venue, whose instruments come from it)")
        return self

    def symbols(self) -> list[str]:
        """The symbols this engine trades: the venue's for Binance, else the configured instruments'."""
        if self.venue.kind == "binance":
            return list(self.venue.symbols)
        return [i.symbol for i in self.instruments]

    def engine_config(self, venue_instruments: dict[str, Instrument] | None = None) -> EngineConfig:
        """The engine's config. With a Binance venue the instruments are the venue's (``venue_instruments``, from its
        exchangeInfo: :func:`resolve_venue_instruments`); without them the configured ones stand in, which only
        validates the rest of the file."""
        paper = self.venue.kind == "binance"
        kind = "sim" if not paper else ("live" if self.venue.mode == "live" else "paper")
        try:
            if paper and venue_instruments is not None:
                missing = sorted(set(self.venue.symbols) - set(venue_instruments))
                if missing:
                    raise ConfigError(f"venue.symbols: no instrument for {missing} in the venue's exchangeInfo")
                instruments = tuple(venue_instruments[s] for s in self.venue.symbols)
            else:
                instruments = tuple(i.build() for i in self.instruments)
            if paper and self.sim.symbols:
                raise ConfigError("sim.symbols: a binance venue trades the live market, not the simulated one")
            by_symbol = {i.symbol: i for i in instruments}
            sim_symbols = tuple(s.build() for s in self.sim.symbols)
            for sim in sim_symbols:
                if sim.symbol not in by_symbol:
                    raise ConfigError(f"sim.symbols: {sim.symbol} is not a configured instrument")
                tick = by_symbol[sim.symbol].price_tick
                if sim.initial_mid % tick:
                    raise ConfigError(
                        f"sim.symbols.{sim.symbol}.initial_mid: {format_decimal(sim.initial_mid)} is not a multiple "
                        f"of the instrument's tick {format_decimal(tick)}"
                    )
            self._check_risk_symbols()
            balances = {
                account: {asset: _dec(v, f"balances.{account}.{asset}") for asset, v in assets.items()}
                for account, assets in self.balances.items()
            }
            if not paper or venue_instruments is not None:  # a Binance venue's assets are known from its exchangeInfo
                assets = {a for i in instruments for a in (i.base_asset, i.quote_asset)}
                assets.update(a for account in balances.values() for a in account)
                if self.valuation_asset not in assets:
                    raise ConfigError(
                        f"valuation_asset: {self.valuation_asset!r} is not an asset of any instrument or balance "
                        f"(assets: {', '.join(sorted(assets))})"
                    )
                self._check_quote_assets(instruments)
                # a live engine's balances are the exchange's (any asset it holds), read after this check
                live = paper and self.venue.mode == "live"
                unknown = [a for a in self.engine_risk.max_asset_exposure if a not in assets and not live]
                if unknown:  # a typo would otherwise leave the asset unlimited
                    raise ConfigError(
                        f"engine_risk.max_asset_exposure: unknown asset {unknown[0]!r} (assets: {', '.join(sorted(assets))})"
                    )
            return EngineConfig(
                instruments=instruments,
                balances=balances,
                risk=self.risk.build(),
                valuation_asset=self.valuation_asset,
                sim_symbols=sim_symbols,
                seed=self.sim.seed,
                market_maker_balances={
                    a: _dec(v, f"sim.market_maker_balances.{a}") for a, v in self.sim.market_maker_balances.items()
                },
                snapshot_every=self.journal.snapshot_every,
                retain_closed_ns=int(self.journal.retain_closed_seconds * 1_000_000_000),
                venue_kind=kind,
            )
        except ConfigError:
            raise
        except InvalidInput as exc:
            raise ConfigError(str(exc)) from exc

    def _check_quote_assets(self, instruments: tuple[Instrument, ...]) -> None:
        """The notional and leverage limits are in the valuation asset: every symbol's quote asset must be it, or an
        instrument must quote that asset in it (ETHBTC needs BTCUSDT for USDT limits), or no order could be valued."""
        risk = self.risk
        if not (
            _dec(risk.max_order_notional, "risk.max_order_notional") or _dec(risk.max_leverage, "risk.max_leverage")
        ):
            return
        valuation = self.valuation_asset
        pricing = Pricing(instruments, valuation)  # the kernel's rule: what it can value, and through which symbol
        for inst in instruments:
            if inst.quote_asset != valuation and inst.quote_asset not in pricing.by:
                raise ConfigError(
                    f"risk.max_order_notional / risk.max_leverage are in {valuation}, but no instrument values "
                    f"{inst.quote_asset} (the quote asset of {inst.symbol}) in {valuation}: add "
                    f"{inst.quote_asset}{valuation} to the instruments (venue.symbols), set valuation_asset, or set "
                    'those limits to "0"'
                )

    def _check_risk_symbols(self) -> None:
        """Every per-symbol limit names a symbol this engine knows: a typo would otherwise leave the symbol unlimited.
        With a Binance venue the file's instruments count too (limits for symbols this run does not trade)."""
        known = [i.symbol for i in self.instruments]
        known += [s for s in self.symbols() if s not in known]
        limits = {
            "risk.max_order_qty": self.risk.max_order_qty,
            "risk.max_position": self.risk.max_position,
            "engine_risk.max_symbol_exposure": self.engine_risk.max_symbol_exposure,
        }
        for where, by_symbol in limits.items():
            unknown = [s for s in by_symbol if s not in known]
            if unknown:
                raise ConfigError(f"{where}: unknown symbol {unknown[0]!r} (instruments: {', '.join(known)})")

    def actor_settings(self) -> ActorsModel:
        """The ``actors:`` section, checked against the instruments: shards and strategies name configured symbols,
        each symbol in one shard at most. (A config copied with ``model_copy(update={"actors": {...}})`` skips
        pydantic; its mapping is validated here. :meth:`with_actors` is the checked way to change the section.)"""
        actors = self.actors if isinstance(self.actors, ActorsModel) else parse_actors(self.actors)
        symbols = self.symbols()
        placed = [s for members in actors.shards.values() for s in members]
        unknown = sorted(set(placed) - set(symbols))
        if unknown or len(placed) != len(set(placed)):
            raise ConfigError(f"actors.shards: unknown or repeated symbols {unknown or placed}")
        for entry in actors.strategies:
            if entry.symbol not in symbols:
                raise ConfigError(f"actors.strategies: unknown symbol {entry.symbol!r}; configured: {symbols}")
        return actors

    def with_actors(self, **changes: Any) -> EngineFileConfig:
        """This config with some ``actors:`` fields replaced (``with_actors(replay={"path": ..., "speed": 0})``),
        validated like the file: :class:`ConfigError` names a bad field."""
        actors = parse_actors({**self.actor_settings().model_dump(), **changes})
        config = self.model_copy(update={"actors": actors})
        config.actor_settings()
        return config


def check_journal_risk(config: EngineFileConfig, journaled: RiskLimits, journal: str | Path) -> None:
    """A live engine recovers with the risk limits its journal was started with (they are part of its identity): a
    ``risk:`` section edited since is refused, naming what differs, never silently ignored."""
    wanted = config.risk.build()
    if wanted == journaled:
        return
    now, then = dataclasses.asdict(wanted), dataclasses.asdict(journaled)
    changed = [name for name in now if now[name] != then[name]]

    def shown(value: Any) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {format_decimal(v)}" for k, v in sorted(value.items())) + "}"
        if isinstance(value, frozenset):
            return "[" + ", ".join(sorted(value)) + "]"
        return format_decimal(value) if isinstance(value, int) else str(value)

    detail = "; ".join(f"{name} {shown(now[name])} (journal: {shown(then[name])})" for name in changed)
    raise ConfigError(
        f"risk: the config's limits differ from those {journal} was started with: {detail}. The journal's limits are "
        "the engine's: put them back in the config, or start a new journal to trade under the new ones"
    )


def check_journal_instruments(
    config: EngineFileConfig, journaled: Iterable[Instrument], journal: str | Path
) -> dict[str, str]:
    """A live engine recovers with the instruments its journal was started with (its exact replay needs them), so
    they are checked against Binance's exchangeInfo of now, as a new journal's are. Filters Binance changed since are
    a :class:`ConfigError` naming each symbol and field (old -> new) and what to do: orders under the old rules would
    be refused by Binance, or break rules the engine does not know. A symbol Binance no longer trades (not listed,
    status ``BREAK``, ``HALT``) does not stop the engine: its new orders are refused by the trading adapter, which
    checks the same rules at its start and periodically, until Binance trades it again; returns those, symbol ->
    why (also logged). Binance not answering is a :class:`ConfigError`: a live journal is never recovered unchecked."""
    from .venues.binance.instruments import check_rules, fetch_exchange_info

    held = {instrument.symbol: instrument for instrument in journaled}
    if not held:
        return {}
    try:
        payload = fetch_exchange_info(config.venue.urls()["rest_url"].rstrip("/"), sorted(held))
        problems = check_rules(held, payload)
    except (InvalidInput, DataError) as exc:
        raise ConfigError(
            f"venue: cannot check the trading rules of {journal}'s symbols against Binance's: {exc}; a live journal is "
            "never recovered with rules Binance may have changed: retry when Binance answers"
        ) from exc
    _refuse_changed_rules(
        {symbol: problem.changes for symbol, problem in problems.items() if problem.changes},
        journal,
        "its ledger is read from the account again and its rules from Binance; cancel this journal's open orders "
        "first, or they show as orders placed outside VeloZ",
    )
    halted = {symbol: problem.reason for symbol, problem in problems.items()}
    log = logging.getLogger("veloz.binance")
    for reason in halted.values():
        log.warning("instruments: %s: its new orders are refused until Binance trades it again", reason)
    return halted


def check_paper_journal_instruments(venue_instruments: Mapping[str, Instrument] | None, journal: str | Path) -> None:
    """A paper engine recovers ``journal`` (when there is one) with the instruments it was started with (its exact
    replay needs them), so they are checked against ``venue_instruments``, Binance's exchangeInfo of now as
    :func:`resolve_venue_instruments` loaded it for this start, as a live journal's are
    (:func:`check_journal_instruments`): filters Binance changed since are a :class:`ConfigError` naming each symbol
    and field (old -> new) and what to do, not a simulation under rules Binance no longer has. (A symbol Binance no
    longer lists or trades was refused by :func:`resolve_venue_instruments` already.) Nothing to check for the
    simulated venue (``venue_instruments`` None) or a new journal."""
    from .core.journal import read_header
    from .venues.binance.instruments import rule_changes

    journal = Path(journal)
    if venue_instruments is None or not journal.exists():
        return
    held = KernelConfig.from_json(read_header(journal)["config"]).instruments
    changes = {
        instrument.symbol: rule_changes(instrument, venue_instruments[instrument.symbol])
        for instrument in held
        if instrument.symbol in venue_instruments
    }
    _refuse_changed_rules(
        {symbol: lines for symbol, lines in changes.items() if lines}, journal, "its rules are read from Binance"
    )


def _refuse_changed_rules(changes: Mapping[str, Sequence[str]], journal: str | Path, new_journal: str) -> None:
    """The refusal of a journal whose symbols' rules Binance changed since it was started (``changes``: symbol ->
    :func:`~veloz_actors.venues.binance.instruments.rule_changes` lines); ``new_journal`` says what a new one does."""
    if not changes:
        return
    detail = "; ".join(f"{symbol}: {', '.join(lines)}" for symbol, lines in changes.items())
    raise ConfigError(
        f"venue: Binance changed the trading rules since {journal} was started ({detail}). The journal replays with "
        "the rules it was started with, and orders under them would be refused by Binance or break rules the engine "
        f"does not know: start a new journal (a new --journal path; {new_journal}), or recover this one once "
        "Binance's rules are back as they were"
    )


def with_venue(config: EngineFileConfig, **changes: Any) -> EngineFileConfig:
    """``config`` with some ``venue:`` fields replaced (the CLI's ``--venue``, ``--symbols``, URLs), validated like the
    file. Switching to Binance leaves the simulated market (``sim.symbols``) out: the live market replaces it."""
    venue = {**config.venue.model_dump(exclude_unset=True), **{k: v for k, v in changes.items() if v is not None}}
    try:
        model = VenueModel.model_validate(venue)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"venue{'.' + where if where else ''}: {_message(first)}") from None
    update: dict[str, Any] = {"venue": model}
    if model.kind == "binance":
        update["sim"] = config.sim.model_copy(update={"symbols": []})
    data = {
        **config.model_dump(exclude={"actors"}),
        "actors": config.actor_settings().model_dump(exclude_unset=True),
        **{k: v.model_dump(exclude_unset=True) for k, v in update.items()},
    }
    return parse_engine_config(data, source="config")


def with_logging(config: EngineFileConfig, *, format: str | None = None, level: str | None = None) -> EngineFileConfig:
    """``config`` with the CLI's ``--log-format`` / ``--log-level`` (when given) in its ``logging:`` section; a bad
    value is a :class:`ConfigError` naming the option."""
    changes: dict[str, str] = {}
    try:
        if format is not None:
            changes["format"] = parse_format(format, "--log-format")
        if level is not None:
            changes["level"] = parse_level(level, "--log-level")
    except InvalidInput as exc:
        raise ConfigError(str(exc)) from None
    if not changes:
        return config
    return config.model_copy(update={"logging": config.logging.model_copy(update=changes)})


def resolve_venue_instruments(
    config: EngineFileConfig, run_dir: str | Path | None
) -> tuple[dict[str, Instrument] | None, dict[str, Any]]:
    """The Binance venue's instruments for ``config.venue.symbols``, from its exchangeInfo fetched now (and cached as
    ``exchange-info.json`` in ``run_dir``, the folder that holds the journal), with the configured fee rates. Paper
    trading falls back to that cache when the fetch fails, with a warning naming its age; live trading does not
    (a :class:`ConfigError`). ``(None, {})`` for the simulated venue."""
    venue = config.venue
    if venue.kind != "binance":
        return None, {}
    from .venues.binance.instruments import load_instruments

    try:
        found, info = load_instruments(
            venue.urls()["rest_url"].rstrip("/"),
            venue.symbols,
            cache_dir=None if run_dir is None else Path(run_dir),
            allow_cache=venue.mode != "live",
            maker_fee_rate=_dec(venue.maker_fee_rate, "venue.maker_fee_rate"),
            taker_fee_rate=_dec(venue.taker_fee_rate, "venue.taker_fee_rate"),
        )
    except InvalidInput as exc:
        raise ConfigError(f"venue: {exc}") from exc
    log = logging.getLogger("veloz.binance")
    for note in info.get("notes", ()):
        log.warning("instruments: %s", note)  # e.g. a quantity step coarsened so notionals stay exact
    if info.get("fallback"):
        log.warning("instruments: %s", info["fallback"])
    return dict(found), info


def default_engine_config() -> Path:
    """``configs/engine.yaml`` in the working directory if there is one, else the one shipped beside the package."""
    if DEFAULT_ENGINE_CONFIG.is_file():
        return DEFAULT_ENGINE_CONFIG
    return Path(__file__).resolve().parents[1] / DEFAULT_ENGINE_CONFIG


# YAML 1.1's base-60 numbers (PyYAML's int and float resolvers): read as text instead (see _UniqueKeyLoader).
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key written twice in one mapping is an error, and that ``5:20:1`` is text.

    PyYAML keeps the last value of a repeated key without a word, so a ``max_order_qty:`` or ``level:`` written twice
    would silently replace the first; the HTTP API refuses duplicate JSON keys for the same reason. Keys brought in by a
    merge (``<<: *defaults``) may still be overridden, as YAML intends.

    YAML 1.1 (PyYAML) reads an unquoted ``5:20:1`` as the base-60 number 19201 (``30:50:2`` as 111002, ``12:30`` as
    750); YAML 1.2 dropped that. Here such a value stays the text it is, so a search's ``fast: 5:20:1`` is the range it
    reads as, not silently a single window of 19,201 bars, and any other key names the text it could not use.
    """

    def resolve(self, kind: type[yaml.Node], value: str, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0] and _SEXAGESIMAL.match(value):
            return yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG
        return super().resolve(kind, value, implicit)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class says so in its own words
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {quoted(key)} (first at line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str | Path) -> Any:
    """The document in ``text`` (read from ``source``, named in errors), with every key unique in its mapping.

    Every YAML file VeloZ reads (engine, backtest and search configs) goes through here: a bad file is one
    :class:`ConfigError` naming the problem and its line, never PyYAML's own message, which quotes the offending line
    (it may hold a secret).
    """
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"cannot read config {source}: not valid YAML ({problem}{where})") from None
    except ValueError:
        # a scalar YAML reads but Python cannot convert: a number of more than 4,300 digits, a date like 2024-13-45
        # (the message is not shown: it may quote the value)
        raise ConfigError(
            f"cannot read config {source}: not valid YAML (a value YAML cannot convert: a number of thousands of "
            "digits, or an impossible date)"
        ) from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (see :func:`parse_yaml`); a :class:`ConfigError` for anything else."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")  # YAML's own encoding, whatever the locale
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read config {path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}): "
            "save it as UTF-8"
        ) from None
    data = parse_yaml(text, path)
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    return data


def only_section(data: dict[str, Any], name: str, source: str = "config") -> Any:
    """A config mapping's ``name:`` section when it has one (else the mapping itself, its settings at the top level).

    Keys beside that section are a :class:`ConfigError` naming them: the file's settings are read from inside it, so
    a section indented one level too little (a ``risk:`` at column 0 under ``engine:``) would be silently ignored,
    and the engine would run without the limits it names.
    """
    if name not in data:
        return data
    stray = [str(key) for key in data if key != name]
    if stray:
        one = len(stray) == 1
        raise ConfigError(
            f"{source}: {', '.join(stray)} {'is' if one else 'are'} beside the {name}: section, where nothing is "
            f"read: indent {'it' if one else 'them'} under {name}: (or remove {'it' if one else 'them'})"
        )
    return data[name]


def load_engine_config(path: str | Path) -> EngineFileConfig:
    """Read and validate an engine config file; errors name the file and the field."""
    data = load_yaml(path)
    data = only_section(data, "engine", str(path))
    return parse_engine_config(data, source=str(path))


def parse_engine_config(data: Any, source: str = "config") -> EngineFileConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the engine config must be a mapping of sections, got {_kind(data)}")
    try:
        config = EngineFileConfig.model_validate(data)
        config.engine_config()  # validate the money values now, not at first use
        config.engine_risk.build()
        config.actor_settings()
        return config
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source}: {where}: {_message(first)}") from None  # a traceback shows this line alone
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
