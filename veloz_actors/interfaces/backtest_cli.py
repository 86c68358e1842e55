"""``veloz backtest``: one deterministic backtest, from a config file and/or flags.

    veloz backtest [CONFIG] --data PATH --strategy NAME --param k=v ... [--fee-rate F] [--slippage-bps B]
                   [--initial-cash C] [--engine event|kernel] [--out DIR] [--json]

Flags override the config (``configs/backtest/*.yaml``). ``--json`` prints one JSON object:
``{"metrics": {...}, "trades": [{"ts", "side", "price", "qty", "fee"}, ...], "timing": {"load_seconds",
"run_seconds"}}``. A bad input is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import orjson
import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._exceptions import ConfigError, InvalidInput
from ..config import load_yaml
from ..fixed import SCALE, parse_decimal, parse_rate

__all__ = ["BacktestConfig", "register", "run_backtest"]


class BacktestConfig(BaseModel):
    """A backtest config file (``configs/backtest/*.yaml``); every field can be overridden by a flag."""

    model_config = ConfigDict(extra="forbid")

    data: str | None = None
    strategy: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    fee_rate: str | float = "0.001"
    slippage_bps: str | float = "0"
    initial_cash: str | float = "10000"
    qty_step: str = "0.00001"
    price_tick: str | None = None
    engine: Literal["event", "kernel"] = "event"
    out: str | None = None


def _parse_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidInput(f"--param expects NAME=VALUE, got {text!r}")
    value = value.strip()
    for cast in (int, float):
        try:
            return key.strip(), cast(value)
        except ValueError:
            continue
    return key.strip(), value


def _settings(cfg: BacktestConfig) -> Any:
    from ..backtest.bars import BacktestSettings

    slippage_bps = parse_rate(cfg.slippage_bps, "slippage_bps")  # bps in 1e-8 units
    return BacktestSettings(
        initial_cash=parse_decimal(_text(cfg.initial_cash), "initial_cash", allow_zero=False),
        fee_rate=parse_rate(cfg.fee_rate, "fee_rate"),
        slippage_rate=slippage_bps // 10_000 if slippage_bps % 10_000 == 0 else _bps_error(cfg.slippage_bps),
        qty_step=parse_decimal(cfg.qty_step, "qty_step", allow_zero=False),
        price_tick=parse_decimal(cfg.price_tick, "price_tick", allow_zero=False) if cfg.price_tick else None,
    )


def _text(value: str | float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _bps_error(value: Any) -> int:
    raise InvalidInput(f"slippage_bps {value!r} is finer than 1e-4 bps")


def run_backtest(cfg: BacktestConfig, *, progress: bool = False) -> dict[str, Any]:
    """Run one backtest as configured; returns ``{"metrics", "trades", "timing", ...}`` and writes ``cfg.out``."""
    from ..backtest import kernel
    from ..backtest.loaders import load_bars
    from ..backtest.metrics import trades_to_records
    from ..backtest.runner import run_bar_backtest
    from ..backtest.strategies import make_strategy

    if not cfg.data:
        raise InvalidInput("no data: give --data PATH (or `data:` in the config)")
    if not cfg.strategy:
        raise InvalidInput("no strategy: give --strategy NAME (sma_cross or rsi_reversion)")
    path = Path(cfg.data)
    if not path.exists():
        raise InvalidInput(f"data file {path} does not exist")
    settings = _settings(cfg)
    l2 = _l2_module()
    if l2 is not None and l2.is_tick_capture(path):
        return _run_l2(cfg, path, l2)
    kernel.validate_params(cfg.strategy, cfg.params)  # a bad parameter fails before the data is read
    strategy = make_strategy(cfg.strategy, cfg.params) if cfg.engine == "event" else None
    started = time.perf_counter()
    bars = load_bars(path)
    load_seconds = time.perf_counter() - started
    bar_progress = _progress_bar(len(bars)) if progress and len(bars) >= 200_000 else None
    started = time.perf_counter()
    if cfg.engine == "kernel":
        trades, metrics = kernel.backtest(bars, cfg.strategy, cfg.params, settings)
        from ..backtest.metrics import equity_and_metrics

        run_seconds = time.perf_counter() - started
        equity, _ = equity_and_metrics(bars, settings, trades) if cfg.out else (None, None)
    else:
        result = run_bar_backtest(bars, strategy, settings, progress=bar_progress)  # type: ignore[arg-type]
        run_seconds = time.perf_counter() - started
        trades, metrics, equity = result.trades, result.metrics, result.equity
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
        "fee_rate": _text(cfg.fee_rate),
        "slippage_bps": _text(cfg.slippage_bps),
        "initial_cash": _text(cfg.initial_cash),
    }
    output: dict[str, Any] = {"metrics": metrics, "trades": trades_to_records(trades), "timing": timing}
    if cfg.out:
        from ..backtest.report import write_outputs

        output["files"] = write_outputs(Path(cfg.out), bars, trades, equity, metrics, {**meta, **timing})
    output["run"] = meta
    return output


def _l2_module() -> Any:
    try:
        from ..backtest import l2
    except ImportError:
        return None
    return l2


def _run_l2(cfg: BacktestConfig, path: Path, l2: Any) -> dict[str, Any]:
    started = time.perf_counter()
    from ..backtest.loaders import load_market_events

    events = load_market_events(path)
    load_seconds = time.perf_counter() - started
    from ..backtest.l2_strategies import make_l2_strategy

    strategy = make_l2_strategy(cfg.strategy, cfg.params)
    bar_settings = _settings(cfg)
    settings = l2.L2Settings.for_events(
        events,
        fee_rate=bar_settings.fee_rate,
        slippage_rate=bar_settings.slippage_rate,
        initial_cash=bar_settings.initial_cash,
    )
    started = time.perf_counter()
    result = l2.run_l2_backtest(events, strategy, settings)
    run_seconds = time.perf_counter() - started
    output = {
        "metrics": result.metrics,
        "trades": result.records(),
        "timing": {"load_seconds": load_seconds, "run_seconds": run_seconds},
        "run": {"strategy": cfg.strategy, "params": cfg.params, "data": str(path), "events": len(events)},
    }
    if cfg.out:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        l2.write_trades_csv(result, out / "trades.csv")
        (out / "metrics.json").write_bytes(orjson.dumps(output["metrics"], option=orjson.OPT_INDENT_2))
    return output


def _progress_bar(total: int) -> Any:
    started = time.perf_counter()

    def show(done: int, total_: int) -> None:
        elapsed = time.perf_counter() - started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total_ - done) / rate if rate > 0 else 0.0
        filled = int(30 * done / max(total_, 1))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done:,}/{total_:,} bars {rate:,.0f}/s ETA {eta:.0f}s")
        sys.stderr.flush()

    return show


def register(app: typer.Typer) -> None:
    @app.command("backtest")
    def backtest(
        config: Annotated[Optional[Path], typer.Argument(help="Backtest config (YAML).")] = None,
        data: Annotated[Optional[str], typer.Option(help="Bars (.csv/.csv.gz/.feather) or a WebSocket capture.")] = None,
        strategy: Annotated[Optional[str], typer.Option(help="sma_cross or rsi_reversion (L2: see docs).")] = None,
        param: Annotated[Optional[list[str]], typer.Option(help="Strategy parameter NAME=VALUE (repeat).")] = None,
        fee_rate: Annotated[Optional[str], typer.Option(help="Fee as a fraction of notional (0.001).")] = None,
        slippage_bps: Annotated[Optional[str], typer.Option(help="Adverse slippage in basis points.")] = None,
        initial_cash: Annotated[Optional[str], typer.Option(help="Starting quote balance (10000).")] = None,
        engine: Annotated[Optional[str], typer.Option(help="event (default) or kernel.")] = None,
        out: Annotated[Optional[Path], typer.Option(help="Write trades, equity, metrics and an HTML report here.")] = None,
        json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")] = False,
    ) -> None:
        """Run one deterministic backtest on historical data."""
        raw: dict[str, Any] = load_yaml(config) if config is not None else {}
        raw = raw.get("backtest", raw)
        overrides = {
            "data": data,
            "strategy": strategy,
            "fee_rate": fee_rate,
            "slippage_bps": slippage_bps,
            "initial_cash": initial_cash,
            "engine": engine,
            "out": str(out) if out else None,
        }
        raw.update({k: v for k, v in overrides.items() if v is not None})
        if param:
            params = dict(raw.get("params") or {})
            params.update(dict(_parse_param(p) for p in param))
            raw["params"] = params
        try:
            cfg = BacktestConfig.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc
        result = run_backtest(cfg, progress=not json_output)
        if json_output:
            sys.stdout.buffer.write(orjson.dumps({k: result[k] for k in ("metrics", "trades", "timing")}) + b"\n")
            return
        metrics = result["metrics"]
        typer.echo(f"{cfg.strategy} {cfg.params} on {cfg.data} ({cfg.engine} engine)")
        for key, value in metrics.items():
            typer.echo(f"  {key:14s} {value:.6g}" if isinstance(value, float) else f"  {key:14s} {value}")
        timing = result["timing"]
        typer.echo(f"  load {timing['load_seconds']:.3f}s, run {timing['run_seconds']:.3f}s")
        if "files" in result:
            typer.echo(f"  wrote {', '.join(result['files'].values())}")


_ = SCALE  # re-exported unit for callers composing settings
