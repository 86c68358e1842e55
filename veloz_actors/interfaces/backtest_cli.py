"""``veloz backtest``: one deterministic backtest, from a config file and/or flags.

    veloz backtest [CONFIG] --data PATH --strategy NAME --param k=v ... [--fee-rate F] [--slippage-bps B]
                   [--initial-cash C] [--price-tick T] [--qty-step S] [--engine event|kernel] [--out DIR] [--json]
                   [--latency-ms L] [--latency-jitter-ms J] [--maker-fee-rate M] [--seed N]     (L2 captures only)

Flags override the config (``configs/backtest/*.yaml``). The price tick is the data's own and the quantity step
0.00001, or the coarser power of ten that keeps tick x step at 1e-8 or above (``--price-tick`` / ``--qty-step`` and
the ``price_tick`` / ``qty_step`` config keys override them). ``--json`` prints one JSON object:
``{"metrics": {...}, "trades": [{"ts", "side", "price", "qty", "fee"}, ...], "timing": {"load_seconds",
"run_seconds"}}``, money in ``metrics`` as exact decimal numbers; the summary without ``--json`` shows money exactly,
with thousands separators. Strategy orders the engine rejected are one ``warning:`` line on stderr (the run goes on: a
rejection is an outcome the strategy sees, as it would live). A bad input is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from .._exceptions import InvalidInput
from ..backtest.api import execute, parse_config, read_backtest_config
from ..backtest.metrics import format_metric, metrics_json

__all__ = ["register"]


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


def register(app: typer.Typer) -> None:
    @app.command("backtest")
    def backtest(
        config: Annotated[Path | None, typer.Argument(help="Backtest config (YAML).")] = None,
        data: Annotated[str | None, typer.Option(help="Bars (.csv/.csv.gz/.feather) or a WebSocket capture.")] = None,
        strategy: Annotated[
            str | None, typer.Option(help="sma_cross or rsi_reversion; on a capture book_imbalance or passive_maker.")
        ] = None,
        param: Annotated[list[str] | None, typer.Option(help="Strategy parameter NAME=VALUE (repeat).")] = None,
        fee_rate: Annotated[str | None, typer.Option(help="Fee as a fraction of notional (0.001).")] = None,
        slippage_bps: Annotated[str | None, typer.Option(help="Adverse slippage in basis points.")] = None,
        initial_cash: Annotated[str | None, typer.Option(help="Starting quote balance (10000).")] = None,
        price_tick: Annotated[
            str | None, typer.Option(help="Price tick (default: the finest decimal step the data is written in).")
        ] = None,
        qty_step: Annotated[
            str | None,
            typer.Option(help="Quantity step (default: 0.00001, coarser if tick x step would be below 1e-8)."),
        ] = None,
        engine: Annotated[str | None, typer.Option(help="event (default) or kernel.")] = None,
        latency_ms: Annotated[
            str | None, typer.Option(help="L2: how long an order or cancel takes to reach the venue (0).")
        ] = None,
        latency_jitter_ms: Annotated[
            str | None, typer.Option(help="L2: plus a seeded uniform draw in [0, this] per order or cancel (0).")
        ] = None,
        maker_fee_rate: Annotated[str | None, typer.Option(help="L2: the maker fee (default: --fee-rate).")] = None,
        seed: Annotated[int | None, typer.Option(help="L2: the seed of the latency draws (0).")] = None,
        out: Annotated[Path | None, typer.Option(help="Write trades, equity, metrics and an HTML report here.")] = None,
        json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object to stdout.")] = False,
    ) -> None:
        """Run one deterministic backtest on historical data."""
        raw = read_backtest_config(config) if config is not None else {}
        overrides = {
            "data": data,
            "strategy": strategy,
            "fee_rate": fee_rate,
            "slippage_bps": slippage_bps,
            "initial_cash": initial_cash,
            "price_tick": price_tick,
            "qty_step": qty_step,
            "engine": engine,
            "out": str(out) if out else None,
            "latency_ms": latency_ms,
            "latency_jitter_ms": latency_jitter_ms,
            "maker_fee_rate": maker_fee_rate,
            "seed": seed,
        }
        raw.update({k: v for k, v in overrides.items() if v is not None})
        if param:
            given = [_parse_param(p) for p in param]
            names = [name for name, _ in given]
            twice = next((name for name in names if names.count(name) > 1), None)
            if twice is not None:  # a dict would keep only the last flag's value, without a word
                raise InvalidInput(f"--param {twice} is given more than once; give it once")
            params = dict(raw.get("params") or {})
            params.update(given)
            raw["params"] = params
        cfg = parse_config(raw)
        result = execute(cfg, progress=not json_output)
        for warning in result["warnings"]:
            typer.echo(f"warning: {warning}", err=True)
        if json_output:
            sys.stdout.buffer.write(metrics_json({k: result[k] for k in ("metrics", "trades", "timing")}) + b"\n")
            return
        metrics = result["metrics"]
        run = result["run"]
        typer.echo(f"{cfg.strategy} {cfg.params} on {cfg.data} ({run['engine']} engine)")
        typer.echo(
            f"  {run['symbol']}: price tick {run['price_tick']} ({run['price_tick_from']}), "
            f"quantity step {run['qty_step']} ({run['qty_step_from']})"
        )
        width = max(map(len, metrics))
        for key, value in metrics.items():
            typer.echo(f"  {key:{width}s} {format_metric(key, value)}")
        timing = result["timing"]
        typer.echo(f"  load {timing['load_seconds']:.3f}s, run {timing['run_seconds']:.3f}s")
        if "files" in result:
            typer.echo(f"  wrote {', '.join(result['files'].values())}")
