"""Backtest speed, side by side: VeloZ's event-driven backtest and kernel vs vectorbt (numba and Rust engines) vs
backtrader, same data, same SMA.

Every engine runs sma_cross(10, 30) long-only on the same real Binance bars (fee 0.0001, 10,000 quote, fill at the
next bar's open), on the 140,614-bar BTCUSDT 5m file and on a ~1M-bar series (that file tiled end to end with shifted
open times). Engine time is measured with the data already loaded and converted to each engine's input type
(BarSeries for VeloZ, float64 pandas Series for vectorbt, a pandas feed for backtrader); it covers signals,
simulation and metrics. The first call is timed separately (numba compile or cache load, vectorbt's JIT), then the
best of ``--repeat`` calls is reported. Peak memory is the resident-set high-water mark above the level before the
run (Linux ``/proc/self/clear_refs``; falls back to ``ru_maxrss``), which sees numba and Rust allocations too.

The peers are NOT project dependencies and this script installs nothing. To include them::

    .venv/bin/pip install vectorbt==1.2.0 backtrader==1.9.78.123    # vectorbt-rust==1.2.0 adds the Rust engine

A peer that is not importable is skipped with a line saying so.

Usage::

    .venv/bin/python scripts/bench_backtest.py [--json results.json] [--repeat 5] [--bars 1000000] [--skip backtrader]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from veloz_actors.backtest import kernel  # noqa: E402
from veloz_actors.backtest.runner import run_bar_backtest  # noqa: E402
from veloz_actors.backtest.settings import BacktestSettings  # noqa: E402
from veloz_actors.data.bars import BarSeries  # noqa: E402
from veloz_actors.data.loaders import load_bars  # noqa: E402
from veloz_actors.strategies.bar_strategies import SmaCross  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "ohlcv" / "binance_spot_BTCUSDT_5m_20240301-20250702.csv.gz"
FAST, SLOW = 10, 30
# 10,000 quote, no slippage, step 0.00001, fee 1 bp: at the default 0.001 this strategy loses ~99.6 % per 140k bars, so
# on the tiled series VeloZ would stop trading (quantity 0 below one step) while the peers trade on with dust.
SETTINGS = BacktestSettings(fee_rate=10_000)
FEE = SETTINGS.fee_rate / 1e8
CASH = SETTINGS.initial_cash / 1e8


def _veloz_kernel(bars: BarSeries) -> dict[str, Any]:
    _trades, metrics = kernel.sma_cross(bars, FAST, SLOW, SETTINGS)
    return metrics


def _veloz_event(bars: BarSeries) -> dict[str, Any]:
    """The event-driven backtest: the SmaCross strategy object bar by bar, orders through the core engine."""
    return run_bar_backtest(bars, SmaCross(FAST, SLOW), SETTINGS).metrics


# VeloZ engines: name -> callable(bars: BarSeries) -> metrics dict. Each is timed as called, with the bars loaded.
ENGINES: dict[str, Callable[[BarSeries], dict[str, Any]]] = {
    "veloz kernel": _veloz_kernel,
    "veloz event-driven": _veloz_event,
}


# -------------------------------------------------------------------------------------------- peers
# A peer is setup(bars) -> run(): the conversion into its input types happens in setup, outside the timing.


def _pandas_frame(bars: BarSeries) -> Any:
    import pandas as pd

    data = bars.data
    index = pd.DatetimeIndex(data["open_time"].astype("datetime64[ns]"))  # tz-naive: tz-aware is ~100x slower in vbt
    columns = {name: data[name] / 1e8 for name in ("open", "high", "low", "close", "volume")}
    return pd.DataFrame(columns, index=index)


def _vectorbt_peer(engine: str) -> Callable[[BarSeries], Callable[[], dict[str, Any]]]:
    def setup(bars: BarSeries) -> Callable[[], dict[str, Any]]:
        import vectorbt as vbt

        frame = _pandas_frame(bars)
        close, open_ = frame["close"], frame["open"]
        freq = f"{int(bars.interval_ns // 60_000_000_000)}min"

        def run() -> dict[str, Any]:
            fast = vbt.MA.run(close, FAST)
            slow = vbt.MA.run(close, SLOW)
            # signal at t's close -> order at t+1's open, as in VeloZ.
            entries = fast.ma_crossed_above(slow).shift(1, fill_value=False)
            exits = fast.ma_crossed_below(slow).shift(1, fill_value=False)
            # No size_granularity: in vectorbt 1.2.0 it leaves dust positions that block later entries.
            portfolio = vbt.Portfolio.from_signals(
                close, entries, exits, price=open_, fees=FEE, init_cash=CASH, freq=freq, engine=engine
            )
            return {
                "final_equity": float(portfolio.final_value()),
                "total_return": float(portfolio.total_return()),
                "max_drawdown": -float(portfolio.max_drawdown()),
                "n_trades": int(portfolio.trades.closed.count()),
                "win_rate": float(portfolio.trades.closed.win_rate()),
                "sharpe": float(portfolio.sharpe_ratio()),
            }

        return run

    return setup


def _backtrader_setup(bars: BarSeries) -> Callable[[], dict[str, Any]]:
    import backtrader as bt

    frame = _pandas_frame(bars)

    class SmaCross(bt.Strategy):
        def __init__(self) -> None:
            self.cross = bt.ind.CrossOver(bt.ind.SMA(period=FAST), bt.ind.SMA(period=SLOW))

        def next(self) -> None:
            if not self.position and self.cross[0] > 0:
                # all cash at the signal close (the fill is at the next open; backtrader shrinks nothing by itself)
                size = int(self.broker.getcash() / (self.data.close[0] * (1 + FEE) * 1.001) * 1e5) / 1e5
                if size > 0:
                    self.buy(size=size)
            elif self.position and self.cross[0] < 0:
                self.close()

    def run() -> dict[str, Any]:
        cerebro = bt.Cerebro(stdstats=False)
        cerebro.adddata(bt.feeds.PandasData(dataname=frame))
        cerebro.addstrategy(SmaCross)
        cerebro.broker.setcash(CASH)
        cerebro.broker.setcommission(commission=FEE)
        cerebro.addanalyzer(bt.analyzers.DrawDown, _name="drawdown")
        cerebro.addanalyzer(bt.analyzers.TradeAnalyzer, _name="trades")
        strategy = cerebro.run()[0]
        trades = strategy.analyzers.trades.get_analysis()
        closed = trades.get("total", {}).get("closed", 0)
        won = trades.get("won", {}).get("total", 0)
        final = cerebro.broker.getvalue()
        return {
            "final_equity": final,
            "total_return": final / CASH - 1,
            "max_drawdown": strategy.analyzers.drawdown.get_analysis()["max"]["drawdown"] / 100,
            "n_trades": closed,
            "win_rate": won / closed if closed else 0.0,
            "sharpe": float("nan"),
        }

    return run


def _peers(skip: set[str]) -> dict[str, Callable[[BarSeries], Callable[[], dict[str, Any]]]]:
    peers: dict[str, Callable[[BarSeries], Callable[[], dict[str, Any]]]] = {}
    if "vectorbt" not in skip:
        try:
            import vectorbt as vbt
        except ImportError as exc:
            print(f"SKIP vectorbt: not importable ({exc}); pip install vectorbt==1.2.0")
        else:
            peers[f"vectorbt {vbt.__version__} numba"] = _vectorbt_peer("numba")
            from vectorbt._engine import is_rust_available

            if is_rust_available():
                peers[f"vectorbt {vbt.__version__} rust"] = _vectorbt_peer("rust")
            else:
                print("SKIP vectorbt rust engine: vectorbt-rust not installed; pip install vectorbt-rust==1.2.0")
    if "backtrader" not in skip:
        try:
            import backtrader as bt
        except ImportError as exc:
            print(f"SKIP backtrader: not importable ({exc}); pip install backtrader==1.9.78.123")
        else:
            peers[f"backtrader {bt.__version__}"] = _backtrader_setup
    return peers


# -------------------------------------------------------------------------------------------- measuring


def _rss_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def measure(run: Callable[[], dict[str, Any]], repeat: int) -> dict[str, Any]:
    gc.collect()
    exact_peak = _reset_peak()
    base = _rss_kib("VmRSS") if exact_peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    metrics = run()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    peak = _rss_kib("VmHWM") if exact_peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "first_call_seconds": first,
        "seconds": min(times) if times else first,
        "peak_rss_mib": max(0, (peak or 0) - (base or 0)) / 1024,
        "peak_rss_method": "VmHWM-after-clear_refs" if exact_peak else "ru_maxrss-delta (lower bound)",
        "metrics": metrics,
    }


def tile(bars: BarSeries, target: int) -> BarSeries:
    """``bars`` repeated end to end (open times shifted, prices unchanged) and cut to ``target`` bars."""
    copies = -(-target // len(bars))
    span = int(bars.data["open_time"][-1] - bars.data["open_time"][0]) + bars.interval_ns
    data = np.concatenate([bars.data] * copies)[:target].copy()
    data["open_time"] += np.repeat(np.arange(copies, dtype=np.int64) * span, len(bars))[:target]
    return BarSeries(bars.symbol, bars.interval_ns, data, bars.price_tick, f"{bars.source} tiled x{copies}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls after the first (best is reported)")
    parser.add_argument("--bars", type=int, default=1_000_000, help="size of the tiled large series")
    parser.add_argument("--skip", action="append", default=[], help="peer to skip: vectorbt, backtrader")
    parser.add_argument("--backtrader-repeat", type=int, default=0, help="timed backtrader calls after the first")
    args = parser.parse_args()

    # gunzip, parse, validate, exact integer conversion; the first load also pays pyarrow's lazy imports
    started = time.perf_counter()
    bars = load_bars(DATA)
    first_load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    bars = load_bars(DATA)
    load_seconds = time.perf_counter() - started
    print(
        f"loaded {len(bars):,} bars from {DATA.name} in {load_seconds:.3f} s ({first_load_seconds:.3f} s the first "
        "time in this process, imports included)",
        flush=True,
    )
    datasets = {"BTCUSDT 5m": bars, f"BTCUSDT 5m tiled {args.bars:,}": tile(bars, args.bars)}
    peers = _peers(set(args.skip))
    rows: list[dict[str, Any]] = []
    for dataset, series in datasets.items():
        runs: list[tuple[str, Callable[[], dict[str, Any]], int]] = [
            (name, (lambda engine=engine, series=series: engine(series)), args.repeat)
            for name, engine in ENGINES.items()
        ]
        for name, setup in peers.items():
            repeat = args.backtrader_repeat if name.startswith("backtrader") else args.repeat
            runs.append((name, setup(series), repeat))
        for name, run, repeat in runs:
            print(f"  running {name} on {dataset} ...", flush=True)
            result = measure(run, repeat)
            rows.append({"dataset": dataset, "engine": name, "bars": len(series), **result})
            rows[-1]["bars_per_second"] = len(series) / result["seconds"]

    for row in rows:
        reference = next(r for r in rows if r["dataset"] == row["dataset"] and r["engine"] == "veloz kernel")
        row["kernel_speedup"] = row["seconds"] / reference["seconds"]

    print()
    print(f"sma_cross({FAST}, {SLOW}), fee {FEE}, cash {CASH:g}; {platform.python_version()} on {platform.machine()}")
    header = f"{'dataset':<26} {'engine':<24} {'bars/s':>12} {'best s':>9} {'1st call s':>10} {'peak MiB':>9} {'kernel x':>9} {'trades':>7} {'final eq':>10}"
    print(header)
    print("-" * len(header))
    for row in rows:
        m = row["metrics"]
        print(
            f"{row['dataset']:<26} {row['engine']:<24} {row['bars_per_second']:>12,.0f} {row['seconds']:>9.4f} "
            f"{row['first_call_seconds']:>10.3f} {row['peak_rss_mib']:>9.1f} {row['kernel_speedup']:>9.1f} "
            f"{m['n_trades']:>7} {m['final_equity']:>10.2f}"
        )
    print("kernel x = engine time / VeloZ kernel time on the same data (higher = the kernel is that many times faster)")

    grid = [{"fast": f, "slow": s} for f in range(5, 21) for s in range(30, 61, 2)]
    prepared = kernel.prepare(bars, "sma_cross", SETTINGS)
    sweep = measure(lambda: {"n": len(kernel.run_many(prepared, grid))}, args.repeat)
    sweep.update(combinations=len(grid), combinations_per_second=len(grid) / sweep["seconds"])
    print(
        f"\nsweep run_many, {len(grid)} combinations (fast 5..20 x slow 30..60 step 2) on {len(bars):,} bars, one core: "
        f"{sweep['combinations_per_second']:,.0f} combinations/s ({sweep['seconds'] * 1e3 / len(grid):.2f} ms each, "
        f"peak {sweep['peak_rss_mib']:.1f} MiB)"
    )
    if args.json:
        payload = {
            "fast": FAST, "slow": SLOW, "fee": FEE, "cash": CASH, "load_seconds": load_seconds,
            "first_load_seconds": first_load_seconds, "results": rows,
            "sweep": sweep,
        }  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
