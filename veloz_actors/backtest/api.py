"""Backtests from Python: ``vz.run_backtest(...)`` runs one deterministic backtest from a config file, a dict or keywords.

>>> import veloz_actors as vz
>>> result = vz.run_backtest(data="../shared/data/ohlcv/binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz",
...                      strategy="rsi_reversion", params={"period": 14, "lower": 30, "upper": 70})  # doctest: +SKIP
>>> result["metrics"]["sharpe"], len(result["trades"])                                           # doctest: +SKIP

Bars (``.csv``, ``.csv.gz``, ``.feather``, Binance kline CSV) run the bar backtest (``engine="event"``, the default:
the strategy object driven bar by bar with its orders through the core engine; ``engine="kernel"``: the vectorised
twin); a recorded Binance WebSocket capture runs the L2 backtest with an L2 strategy. The ``veloz backtest`` command
is a thin layer over :func:`execute`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .._exceptions import ConfigError, DataError, InvalidInput, quoted
from ..config import load_yaml, not_bool, only_section
from ..fixed import SCALE, float_text, format_decimal, parse_decimal, parse_rate

__all__ = [
    "BacktestConfig",
    "BacktestResult",
    "backtest_section",
    "execute",
    "parse_config",
    "read_backtest_config",
    "run_backtest",
]


def _path_text(value: Any) -> Any:
    """A pydantic before-validator: a path given as an ``os.PathLike`` (``pathlib.Path``) is its text; anything else
    but a str or None is refused for what it is (pydantic said only "Input should be a valid string")."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise ValueError(f"must be a file path (a str or os.PathLike), got {type(value).__name__} {quoted(value)}")


_Path = Annotated[str | None, BeforeValidator(_path_text)]


class BacktestConfig(BaseModel):
    """A backtest config file (``configs/backtest/*.yaml``); every field can be overridden by a flag."""

    model_config = ConfigDict(extra="forbid")

    data: _Path = None
    strategy: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    fee_rate: Annotated[str | float, BeforeValidator(not_bool)] = "0.001"
    slippage_bps: Annotated[str | float, BeforeValidator(not_bool)] = "0"
    initial_cash: Annotated[str | float, BeforeValidator(not_bool)] = "10000"
    # None: 0.00001, coarser when the price tick needs it (see backtest.settings); a number as a search config takes it
    qty_step: Annotated[str | float | None, BeforeValidator(not_bool)] = None
    price_tick: Annotated[str | float | None, BeforeValidator(not_bool)] = None  # None: the data's own tick
    engine: Literal["event", "kernel"] = "event"
    out: _Path = None
    # tick (L2) backtests only: when an order or cancel reaches the venue, the maker fee, the random latency's seed
    latency_ms: Annotated[str | float, BeforeValidator(not_bool)] = "0"
    latency_jitter_ms: Annotated[str | float, BeforeValidator(not_bool)] = "0"
    maker_fee_rate: Annotated[str | float | None, BeforeValidator(not_bool)] = None
    seed: Annotated[int, BeforeValidator(not_bool), Field(ge=0, le=2**63 - 1)] = 0


_MAX_LATENCY_NS = 3_600 * 10**9  # an hour: anything longer is a typo, not a venue


def _l2_options(cfg: BacktestConfig) -> dict[str, int | None]:
    """The L2 backtest's latency (ns, exact to the nanosecond), maker fee rate (1e-8 units) and seed from a config."""
    latency = {name: _duration_ns(getattr(cfg, name), name) for name in ("latency_ms", "latency_jitter_ms")}
    maker = cfg.maker_fee_rate
    maker_rate = None if maker is None else parse_rate(maker, "maker_fee_rate")
    if maker_rate is not None and maker_rate >= SCALE:
        raise InvalidInput(f"maker_fee_rate {maker!r} must be below 1 (a fraction of the notional: 0.001 is 0.1 %)")
    return {
        "latency_ns": latency["latency_ms"],
        "latency_jitter_ns": latency["latency_jitter_ms"],
        "maker_fee_rate": maker_rate,
    }


def _duration_ns(value: str | float, name: str) -> int:
    what = f"{name} (--{name.replace('_', '-')})"
    units = parse_decimal(_text(value, what), what)  # milliseconds in 1e-8 units: 100 of them are a nanosecond
    if units % 100:
        raise InvalidInput(f"{what} {value!r} is finer than a nanosecond (0.000001 ms)")
    if units // 100 > _MAX_LATENCY_NS:
        raise InvalidInput(f"{what} {value!r} is more than an hour")
    return units // 100


def _refuse_l2_options(cfg: BacktestConfig) -> None:
    """A bar backtest fills at the next bar's open, as a taker, with no latency: an L2 option given to one is refused,
    never ignored."""
    options = _l2_options(cfg)
    given = [
        name
        for name, value in (("latency_ms", options["latency_ns"]), ("latency_jitter_ms", options["latency_jitter_ns"]),
                            ("maker_fee_rate", options["maker_fee_rate"]), ("seed", cfg.seed))
        if value
    ]  # fmt: skip
    if given:
        raise InvalidInput(
            f"{', '.join(given)}: only tick (L2) backtests on a recorded capture take "
            f"{'these' if len(given) > 1 else 'this'}; a bar backtest fills at the next bar's open, as a taker"
        )


def _settings(cfg: BacktestConfig) -> Any:
    from ..backtest.settings import BacktestSettings, parse_costs

    fee_rate, slippage_rate = parse_costs(cfg.fee_rate, cfg.slippage_bps)
    return BacktestSettings(
        initial_cash=parse_decimal(_text(cfg.initial_cash, "initial_cash"), "initial_cash", allow_zero=False),
        fee_rate=fee_rate,
        slippage_rate=slippage_rate,
        qty_step=None
        if cfg.qty_step is None
        else parse_decimal(_text(cfg.qty_step, "qty_step"), "qty_step (--qty-step)", allow_zero=False),
        price_tick=None
        if cfg.price_tick is None
        else parse_decimal(_text(cfg.price_tick, "price_tick"), "price_tick (--price-tick)", allow_zero=False),
    )


_OUTPUTS = ("trades.csv", "equity.csv", "metrics.json", "report.html")


def _output_dir(out: str) -> None:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InvalidInput(f"--out {out}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"--out {out}: cannot create the directory ({exc.strerror or exc})") from exc
    taken = [name for name in _OUTPUTS if (path / name).is_dir()]  # a file cannot replace it
    if taken:
        raise InvalidInput(f"--out {out}: {', '.join(taken)} {'is a directory' if len(taken) == 1 else 'are directories'}"
                           f"; the run writes {', '.join(_OUTPUTS)} there")  # fmt: skip


def _write_failed(out: str, exc: OSError) -> InvalidInput:
    """One line for an output the system refused (a full disk, no permission), naming the file."""
    name = Path(exc.filename).name.removesuffix(".tmp") if exc.filename else "its files"
    return InvalidInput(f"--out {out}: cannot write {name} ({exc.strerror or exc})")


def _text(value: str | float, what: str) -> str:
    """A config amount as decimal text (a float by :func:`~veloz_actors.fixed.float_text`)."""
    return float_text(value, what) if isinstance(value, float) else str(value)


def execute(cfg: BacktestConfig, *, progress: bool = False) -> dict[str, Any]:
    """Run one backtest as configured; returns ``{"metrics", "trades", "timing", "warnings", ...}`` and writes
    ``cfg.out``."""
    from ..backtest import kernel
    from ..backtest.metrics import equity_and_metrics, report_metrics, trades_to_records
    from ..backtest.runner import run_bar_backtest, skipped_buys_warning
    from ..data.loaders import load_bars
    from ..strategies.bar_strategies import make_strategy
    from ..strategies.params import VALID_STRATEGIES, validate_params

    if not cfg.data:
        raise InvalidInput("no data: give --data PATH (or `data:` in the config)")
    path = Path(cfg.data)
    if not path.exists():
        raise InvalidInput(f"data file {path} does not exist")
    l2 = _l2_module()
    if not cfg.strategy:  # the strategies that can run on this data
        names = _l2_strategy_names() if l2 is not None and l2.is_tick_capture(path) else tuple(VALID_STRATEGIES)
        raise InvalidInput(f"no strategy: give --strategy NAME ({' or '.join(names)})")
    settings = _settings(cfg)
    if cfg.out:
        _output_dir(cfg.out)  # before the run: a run is never lost to a folder that cannot be written
    capture = detected = l2 is not None and l2.is_tick_capture(path)
    if l2 is not None and not capture and cfg.strategy in _l2_strategy_names():
        capture = True  # an L2 strategy reads a capture: its loader names what is wrong with the file (empty, torn)
    elif capture and cfg.strategy in VALID_STRATEGIES:
        raise InvalidInput(
            f"{cfg.strategy} is a bar strategy and {path} is a recorded WebSocket capture: a capture runs an L2 "
            f"strategy ({', '.join(_l2_strategy_names())}), a bar strategy needs candles"
        )
    if capture:
        if cfg.engine != "event":
            raise InvalidInput(
                f"engine {cfg.engine!r}: a recorded capture runs the L2 backtest (the kernel is for bars)"
            )
        return _run_l2(cfg, cfg.strategy, path, l2, detected=detected)
    _refuse_l2_options(cfg)
    validate_params(cfg.strategy, cfg.params)  # a bad parameter fails before the data is read
    strategy = make_strategy(cfg.strategy, cfg.params) if cfg.engine == "event" else None
    started = time.perf_counter()
    bars = load_bars(path)
    load_seconds = time.perf_counter() - started
    settings = settings.for_bars(bars)  # the tick and the step for this data, checked before anything runs
    bar_progress = _progress_bar(len(bars)) if progress and len(bars) >= 200_000 else None
    started = time.perf_counter()
    if cfg.engine == "kernel":
        trades, metrics, skipped = kernel.backtest_with_skipped_buys(bars, cfg.strategy, cfg.params, settings)
        run_seconds = time.perf_counter() - started
        warnings: list[str] = []
        if skipped.count:  # as the event engine says it
            step = settings.step_for(bars)
            warnings.append(
                skipped_buys_warning(bars.symbol, step, skipped.count, skipped.first_cash, skipped.first_price)
            )
        equity, _ = equity_and_metrics(bars, settings, trades)
    else:
        result = run_bar_backtest(bars, strategy, settings, progress=bar_progress)  # type: ignore[arg-type]
        run_seconds = time.perf_counter() - started
        trades, metrics, equity, warnings = result.trades, result.metrics, result.equity, result.warnings
    warnings += _never_trades(cfg.strategy, validate_params(cfg.strategy, cfg.params), len(bars))
    metrics = report_metrics(bars, settings, trades, equity, metrics)
    if bar_progress is not None:
        bar_progress(len(bars), len(bars))
        sys.stderr.write("\n")
    timing = {"load_seconds": load_seconds, "run_seconds": run_seconds}
    meta = {
        "strategy": cfg.strategy,
        "params": cfg.params,
        "engine": cfg.engine,
        "data": str(path),
        "bars": len(bars),
        "gaps": len(bars.gaps),
        "fee_rate": _text(cfg.fee_rate, "fee_rate"),
        "slippage_bps": _text(cfg.slippage_bps, "slippage_bps"),
        "initial_cash": _text(cfg.initial_cash, "initial_cash"),
        **_instrument_meta(bars.symbol, settings.price_tick, settings.qty_step, cfg),
    }
    output: dict[str, Any] = {
        "metrics": metrics, "trades": trades_to_records(trades), "timing": timing, "warnings": warnings
    }  # fmt: skip
    if cfg.out:
        from ..backtest.report import write_outputs

        try:
            output["files"] = write_outputs(Path(cfg.out), bars, trades, equity, metrics, {**meta, **timing})
        except OSError as exc:
            raise _write_failed(cfg.out, exc) from exc
    output["run"] = meta
    return output


def _never_trades(strategy: str, params: dict[str, Any], bars: int) -> list[str]:
    """A warning when the strategy's warm-up is too long for the data: no trade is its outcome, not the market's."""
    from ..strategies.params import WARM_UP, never_trading_warm_up

    name = WARM_UP[strategy]
    if params[name] < never_trading_warm_up(bars):
        return []
    return [
        f"{name} {params[name]} is too long to trade on the {bars:,} bars of the data (a signal needs {name} bars "
        "before it and one after it to fill): the run has no trades"
    ]


def _instrument_meta(
    symbol: str, tick: int | None, step: int | None, cfg: BacktestConfig, *, step_from: str = "default"
) -> dict[str, Any]:
    """The instrument the run traded: its tick and step, and where each came from ("config" when given; else the
    data's tick, and the default step rule or, for a capture, the capture's step)."""
    assert tick is not None and step is not None  # fixed by for_bars / for_events
    return {
        "symbol": symbol,
        "price_tick": format_decimal(tick),
        "price_tick_from": "config" if cfg.price_tick else "data",
        "qty_step": format_decimal(step),
        "qty_step_from": "config" if cfg.qty_step else step_from,
    }


def _l2_module() -> Any:
    try:
        from ..backtest import l2
    except ImportError:
        return None
    return l2


def _l2_strategy_names() -> tuple[str, ...]:
    from ..strategies.l2_strategies import L2_STRATEGIES

    return tuple(L2_STRATEGIES)


def _run_l2(cfg: BacktestConfig, strategy_name: str, path: Path, l2: Any, *, detected: bool = True) -> dict[str, Any]:
    from ..data.loaders import load_market_events
    from ..strategies.l2_strategies import make_l2_strategy

    strategy = make_l2_strategy(strategy_name, cfg.params)  # a bad parameter fails before the capture is read
    started = time.perf_counter()
    try:
        events = load_market_events(path)
    except DataError as exc:
        if detected:
            raise
        raise DataError(f"{strategy_name} is an L2 strategy, which reads a recorded WebSocket capture: {exc}") from exc
    load_seconds = time.perf_counter() - started
    if not events:
        raise DataError(f"{path}: the capture has no market events (an empty file)")
    bar_settings = _settings(cfg)
    options = _l2_options(cfg)
    settings = l2.L2Settings.for_events(
        events,
        fee_rate=bar_settings.fee_rate,
        slippage_rate=bar_settings.slippage_rate,
        initial_cash=bar_settings.initial_cash,
        price_tick=bar_settings.price_tick,  # None: the capture's
        qty_step=bar_settings.qty_step,  # None: the capture's
        **options,
    )
    started = time.perf_counter()
    result = l2.run_l2_backtest(events, strategy, settings, seed=cfg.seed)
    run_seconds = time.perf_counter() - started
    timing = {"load_seconds": load_seconds, "run_seconds": run_seconds}
    meta = {
        "strategy": cfg.strategy,
        "params": cfg.params,
        "engine": "l2",
        "data": str(path),
        "events": len(events),
        "fee_rate": _text(cfg.fee_rate, "fee_rate"),
        "maker_fee_rate": format_decimal(settings.maker_fee_rate if settings.maker_fee_rate is not None
                                         else settings.fee_rate),
        "slippage_bps": _text(cfg.slippage_bps, "slippage_bps"),
        "initial_cash": _text(cfg.initial_cash, "initial_cash"),
        "latency_ms": format_decimal(settings.latency_ns * 100),
        "latency_jitter_ms": format_decimal(settings.latency_jitter_ns * 100),
        "seed": cfg.seed,
        **_instrument_meta(settings.symbol, settings.price_tick, settings.qty_step, cfg, step_from="data"),
    }  # fmt: skip
    output: dict[str, Any] = {
        "metrics": result.metrics, "trades": result.records(), "timing": timing, "warnings": list(result.warnings),
        "run": meta,
    }  # fmt: skip
    if cfg.out:
        from ..backtest.report import write_l2_outputs

        out = Path(cfg.out)
        try:
            files = write_l2_outputs(out, settings.symbol, result.trades, result.equity, result.metrics,
                                     {**meta, **timing}, trades_csv=l2.trades_csv_text(result))  # fmt: skip
        except OSError as exc:
            raise _write_failed(cfg.out, exc) from exc
        output["files"] = {"trades": str(out / "trades.csv"), **files}
    return output


def _progress_bar(total: int) -> Any:
    started = time.perf_counter()

    def show(done: int, total_: int) -> None:
        elapsed = time.perf_counter() - started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total_ - done) / rate if rate > 0 else 0.0
        filled = int(30 * done / max(total_, 1))
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total_:,} bars {rate:,.0f}/s ETA {eta:.0f}s"
        )
        sys.stderr.flush()

    return show


def backtest_section(raw: Any, source: str = "config") -> dict[str, Any]:
    """The backtest settings of a config mapping: its ``backtest:`` section if it has one, else the mapping itself.
    A key beside the ``backtest:`` section (a ``fee_rate:`` indented one level too little) is a :class:`ConfigError`
    naming it, never silently ignored."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: must be a mapping of settings, got {type(raw).__name__}")
    if "backtest" not in raw:
        other = _other_config(raw)
        if other:  # its keys would be refused one at a time, as if misspelled backtest settings
            raise ConfigError(f"{source} is {other}, not a backtest config (configs/backtest/*.yaml)")
        return dict(raw)
    section = only_section(raw, "backtest", source)
    if not isinstance(section, dict):
        got = "nothing" if section is None else type(section).__name__
        raise ConfigError(f"{source}: backtest: must be a mapping of settings, got {got}")
    return dict(section)


_DATA_SUFFIXES = (".csv", ".gz", ".zip", ".feather", ".txt")  # the files ``data`` names; a config is YAML


def read_backtest_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The backtest settings of a YAML config file (:func:`backtest_section`); a data file given in its place is an
    :class:`InvalidInput` saying to give it as the data."""
    if os.fspath(path).lower().endswith(_DATA_SUFFIXES):
        raise InvalidInput(f"{path} is a data file, not a backtest config: give it as --data {path}")
    return backtest_section(load_yaml(Path(path)), str(path))


def _other_config(raw: dict[str, Any]) -> str:
    """What another VeloZ config file is, from the keys only it has ("" when it has none of them)."""
    if isinstance(raw.get("engine"), dict) or "actors" in raw:
        return "an engine config (veloz start --config)"
    if any(key in raw for key in ("grid", "random", "walk_forward", "constraints", "metric")):
        return "a search config (veloz grid-search)"
    return ""


def parse_config(raw: dict[str, Any]) -> BacktestConfig:
    """Validate a backtest config mapping; a bad field is one :class:`ConfigError` naming it."""
    raw = backtest_section(raw)
    try:
        return BacktestConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{'.'.join(str(p) for p in first['loc'])}: {message}") from exc


class BacktestResult(dict[str, Any]):
    """What :func:`run_backtest` returns: a plain ``dict`` (``result["metrics"]``, ``json.dumps(result)``) whose repr
    is a summary, so a notebook cell ending in ``result`` shows the run and its metrics, not every trade (half a
    megabyte of text for the README's 5m example); ``result["trades"]`` holds them all."""

    __slots__ = ()

    def __repr__(self) -> str:
        run = self.get("run", {})
        where = run.get("bars", run.get("events"))
        unit = "bars" if "bars" in run else "events"
        summary = {
            "strategy": run.get("strategy"),
            "params": run.get("params"),
            "data": run.get("data"),
            unit: where,
            "trades": len(self.get("trades", ())),
            "warnings": len(self.get("warnings", ())),
            "metrics": self.get("metrics"),
        }
        return f"BacktestResult({', '.join(f'{key}={value!r}' for key, value in summary.items())})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython / Jupyter
        printer.text(repr(self))


def run_backtest(config: str | Path | dict[str, Any] | None = None, **overrides: Any) -> BacktestResult:
    """Run one backtest; ``config`` is a YAML path or a dict, ``overrides`` are config fields (``data``,
    ``strategy``, ``params``, ``fee_rate``, ``slippage_bps``, ``initial_cash``, ``qty_step``, ``price_tick``,
    ``engine``, ``out``; ``data`` and ``out`` a str or a ``pathlib.Path``; for a capture also ``latency_ms``, ``latency_jitter_ms``, ``maker_fee_rate``, ``seed``).

    Returns ``{"metrics": {...}, "trades": [{"ts", "side", "price", "qty", "fee"}, ...], "timing": {...},
    "warnings": [...], "run": {...}}`` (and ``"files"`` when ``out`` is given); ``warnings`` names strategy orders
    the engine rejected (the L2 backtest counts them in ``metrics["n_rejected"]`` too) or could not pay for. Money in
    ``metrics`` is an exact :class:`~decimal.Decimal` (a bar backtest's statistics are
    :func:`~veloz_actors.backtest.metrics.report_metrics`'s). The dict is a :class:`BacktestResult`, whose repr is a
    summary (the run, the counts of trades and warnings, the metrics), not every trade.
    """
    raw: dict[str, Any]
    if config is None:
        raw = {}
    elif isinstance(config, dict):
        raw = backtest_section(config)
    elif isinstance(config, str | os.PathLike):
        raw = read_backtest_config(config)
    else:
        raise ConfigError(
            f"config must be a YAML path or a dict of settings, got {type(config).__name__} {quoted(config)}"
        )
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return BacktestResult(execute(parse_config(raw)))
