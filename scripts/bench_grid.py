"""Benchmark the distributed grid search against vectorbt and backtrader, side by side, on this machine.

    .venv/bin/python scripts/bench_grid.py [--json bench_grid.json]

Measured (sma_cross on the 140,614-bar 5m BTCUSDT file, default backtest settings):

1. the 256-combination grid (fast 5..20 by 1 x slow 30..60 by 2): this project's kernel serially in one process, then
   the Ray search with 1 and 2 workers (each in a fresh process with its own private runtime): combinations/s of the
   first search on a new runtime ("cold": worker processes start and import numba) and of a second one ("warm"),
   and the parallel efficiency rate(2) / (2 * rate(1));
2. vectorbt's parameter broadcasting (``vbt.MA.run_combs``-style lists + ``Portfolio.from_signals``) and backtrader's
   ``optstrategy`` on 4 combinations, extrapolated (labelled so), when they are importable (they are not project
   dependencies; a clear line says when they are skipped);
3. the 4,096-combination search (fast 2..65 by 1 x slow 70..385 by 5) end to end in a fresh process: imports, data
   load, runtime start, search, results written, runtime stop; and the driver's peak memory (max RSS), compared with
   the 256 grid's to show memory staying flat as the grid grows (results stream to disk).

Every search runs in a child process (``--child``) so each starts its own runtime and reports its own peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = (ROOT.parent / "shared" / "data" / "ohlcv" / "binance_spot_BTCUSDT_5m_20240301-20250702.csv.gz").resolve()
GRID_256 = {"fast": "5:20:1", "slow": "30:60:2"}
GRID_4096 = {"fast": "2:65:1", "slow": "70:385:5"}


def _config(grid: dict[str, str]) -> dict[str, Any]:
    return {"data": str(DATA), "strategy": "sma_cross", "grid": grid, "constraints": ["fast < slow"]}


def _peak_rss_mib() -> float:
    """This program's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over fork + exec from the parent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- children (each a fresh process with its own runtime) ----------------------------------------------------------


def child_search(workers: int, grid: dict[str, str]) -> dict[str, Any]:
    """Cold and warm searches on one private runtime of ``workers`` CPUs."""
    import logging

    import ray

    from veloz_actors.search import grid_search

    started = time.perf_counter()
    ray.init(
        address="local", num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False
    )
    runtime_seconds = time.perf_counter() - started
    out = {"workers": workers, "runtime_start_seconds": runtime_seconds}
    for label in ("cold", "warm"):
        states: list[Any] = []
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            table = grid_search(_config(grid), out=tmp, progress=False, on_progress=states.append)
            seconds = time.perf_counter() - t0
        # Wall time includes loading and validating the data; the search phase is first submit -> last result.
        out[f"{label}_wall_seconds"] = seconds
        out[f"{label}_wall_combinations_per_second"] = table.num_rows / seconds
        out[f"{label}_search_seconds"] = states[-1].elapsed_seconds
        out[f"{label}_combinations_per_second"] = states[-1].rate_per_second
        out["combinations"] = table.num_rows
    ray.shutdown()
    out["driver_peak_rss_mib"] = _peak_rss_mib()
    return out


def child_end_to_end(grid: dict[str, str], workers: int) -> dict[str, Any]:
    """Everything a user waits for: imports, load, runtime start, search, results on disk, runtime stop."""
    t0 = time.perf_counter()
    from veloz_actors.search import grid_search

    with tempfile.TemporaryDirectory() as tmp:
        table = grid_search(_config(grid), max_workers=workers, out=tmp, progress=False)
        rows = table.num_rows
        csv_rows = len(Path(tmp, "results.csv").read_text().splitlines()) - 1
    seconds = time.perf_counter() - t0
    return {
        "combinations": rows,
        "csv_rows": csv_rows,
        "workers": workers,
        "end_to_end_seconds": seconds,
        "combinations_per_second": rows / seconds,
        "driver_peak_rss_mib": _peak_rss_mib(),
    }


def _run_child(*args: str) -> dict[str, Any]:
    env = {**os.environ}
    env.setdefault("RAY_AUTH_MODE", "disabled")  # a private throwaway runtime; no token file needed
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env, timeout=900
    )
    if done.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- in-process measurements ---------------------------------------------------------------------------------------


def serial_kernel() -> dict[str, Any]:
    from veloz_actors.backtest import kernel
    from veloz_actors.backtest.settings import BacktestSettings
    from veloz_actors.data.loaders import load_bars
    from veloz_actors.search import ParameterSpace, load_config
    from veloz_actors.search.plan import execute_chunk

    t0 = time.perf_counter()
    bars = load_bars(DATA)
    load_seconds = time.perf_counter() - t0
    cfg = load_config(_config(GRID_256))
    sets = list(ParameterSpace(cfg.parameter_values(), cfg.constraints))
    # exactly what a search worker does with a chunk: shared rolling sums, tuned allocator, execute_chunk
    prepared = kernel.share(kernel.prepare(bars, "sma_cross", BacktestSettings()), sets)
    execute_chunk(prepared, sets[:1])  # numba load
    t0 = time.perf_counter()
    execute_chunk(prepared, sets)
    seconds = time.perf_counter() - t0
    return {
        "bars": len(bars),
        "load_seconds": load_seconds,
        "combinations": len(sets),
        "seconds": seconds,
        "combinations_per_second": len(sets) / seconds,
    }


def vectorbt_bench(engine: str = "numba") -> dict[str, Any]:
    """vectorbt's broadcasting over the 256 grid with its ``numba`` or ``rust`` (vectorbt-rust) engine."""
    try:
        import numpy as np
        import pandas as pd
        import vectorbt as vbt
    except ImportError as exc:
        return {"skipped": f"vectorbt not importable ({exc.name}); pip install vectorbt==1.2.0 to compare"}
    if engine == "rust":
        from vectorbt._engine import is_rust_available

        if not is_rust_available():
            return {"skipped": "vectorbt-rust not installed; pip install vectorbt-rust==1.2.0 to compare"}
    from veloz_actors.data.loaders import load_bars

    bars = load_bars(DATA)
    close = pd.Series(bars.data["close"] / 1e8)
    opens = pd.Series(bars.data["open"] / 1e8)
    fast = list(range(5, 21))
    slow = list(range(30, 61, 2))

    def run() -> int:
        fast_ma = vbt.MA.run(close, window=fast, short_name="fast", param_product=True)
        slow_ma = vbt.MA.run(close, window=slow, short_name="slow", param_product=True)
        f = fast_ma.ma.values[:, :, None].repeat(len(slow), 2).reshape(len(close), -1)
        s = np.tile(slow_ma.ma.values, len(fast))
        entries = (f[1:] > s[1:]) & (f[:-1] <= s[:-1])
        exits = (f[1:] < s[1:]) & (f[:-1] >= s[:-1])
        pad = np.zeros((1, f.shape[1]), dtype=bool)
        pf = vbt.Portfolio.from_signals(
            opens.shift(-1).ffill(),
            np.vstack([pad, entries]),
            np.vstack([pad, exits]),
            fees=0.001,
            init_cash=10_000,
            engine=engine,
        )
        pf.total_return()
        return f.shape[1]

    run()  # compile / warm up
    t0 = time.perf_counter()
    combos = run()
    seconds = time.perf_counter() - t0
    return {
        "combinations": combos,
        "seconds": seconds,
        "combinations_per_second": combos / seconds,
        "version": vbt.__version__,
    }


def backtrader_bench() -> dict[str, Any]:
    try:
        import backtrader as bt
    except ImportError as exc:
        return {"skipped": f"backtrader not importable ({exc.name}); pip install backtrader to compare"}
    import datetime as dt

    from veloz_actors.data.loaders import load_bars

    bars = load_bars(DATA)

    class Feed(bt.feeds.PandasData):
        pass

    import pandas as pd

    frame = pd.DataFrame(
        {c: bars.data[c] / 1e8 for c in ("open", "high", "low", "close", "volume")},
        index=pd.to_datetime(bars.data["open_time"], unit="ns"),
    )

    class SmaCross(bt.Strategy):
        params = (("fast", 10), ("slow", 30))

        def __init__(self) -> None:
            self.cross = bt.ind.CrossOver(bt.ind.SMA(period=self.p.fast), bt.ind.SMA(period=self.p.slow))

        def next(self) -> None:
            if not self.position and self.cross > 0:
                self.buy()
            elif self.position and self.cross < 0:
                self.close()

    cerebro = bt.Cerebro(optreturn=True, maxcpus=1)
    cerebro.adddata(Feed(dataname=frame, fromdate=dt.datetime(2000, 1, 1)))
    cerebro.optstrategy(SmaCross, fast=[5, 6], slow=[30, 32])
    cerebro.broker.setcommission(commission=0.001)
    t0 = time.perf_counter()
    cerebro.run()
    seconds = time.perf_counter() - t0
    return {
        "combinations": 4,
        "seconds": seconds,
        "combinations_per_second": 4 / seconds,
        "extrapolated_256_seconds": seconds / 4 * 256,
        "note": "4 combinations run, 256 extrapolated",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, workers = args.child[0], int(args.child[1])
        result = child_search(workers, GRID_256) if kind == "search" else child_end_to_end(GRID_4096, workers)
        print(json.dumps(result))
        return

    print(f"data: {DATA.name}; cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count(), "load_average": os.getloadavg()}}
    results["serial_kernel_256"] = serial_kernel()
    results["ray_256_1_worker"] = _run_child("search", "1")
    results["ray_256_2_workers"] = _run_child("search", "2")
    one, two = results["ray_256_1_worker"], results["ray_256_2_workers"]
    results["speedup_1_to_2_warm"] = two["warm_combinations_per_second"] / one["warm_combinations_per_second"]
    results["parallel_efficiency_warm"] = results["speedup_1_to_2_warm"] / 2
    results["end_to_end_4096_2_workers"] = _run_child("e2e", "2")
    results["vectorbt_256"] = vectorbt_bench("numba")
    results["vectorbt_rust_256"] = vectorbt_bench("rust")
    results["backtrader_optstrategy"] = backtrader_bench()

    rows = [
        ("kernel, serial in one process (no Ray)", results["serial_kernel_256"]["combinations_per_second"], ""),
        (
            "Ray search, 1 worker, warm",
            one["warm_combinations_per_second"],
            f"cold {one['cold_combinations_per_second']:.0f}/s; with load+validate {one['warm_wall_combinations_per_second']:.0f}/s",
        ),
        (
            "Ray search, 2 workers, warm",
            two["warm_combinations_per_second"],
            f"cold {two['cold_combinations_per_second']:.0f}/s; with load+validate {two['warm_wall_combinations_per_second']:.0f}/s",
        ),
    ]
    for name, key in (
        ("vectorbt numba (from_signals, broadcast)", "vectorbt_256"),
        ("vectorbt rust (from_signals, broadcast)", "vectorbt_rust_256"),
        ("backtrader optstrategy", "backtrader_optstrategy"),
    ):
        res = results[key]
        if "skipped" in res:
            rows.append((name, None, res["skipped"]))
        else:
            rows.append((name, res["combinations_per_second"], res.get("note", "")))
    print(f"\n256 combinations, sma_cross, {results['serial_kernel_256']['bars']:,} bars")
    print(f"{'engine':<42} {'combos/s':>10}  note")
    for name, rate, note in rows:
        print(f"{name:<42} {'-' if rate is None else (f'{rate:,.0f}' if rate >= 10 else f'{rate:.2f}'):>10}  {note}")
    print(
        f"speed-up 1 -> 2 workers (warm): {results['speedup_1_to_2_warm']:.2f}x "
        f"(parallel efficiency {results['parallel_efficiency_warm']:.0%})"
    )
    for label, key in (("numba", "vectorbt_256"), ("rust", "vectorbt_rust_256")):
        if "combinations_per_second" in results[key]:
            ratio = two["warm_combinations_per_second"] / results[key]["combinations_per_second"]
            results[f"ratio_2_workers_vs_vectorbt_{label}"] = ratio
            print(f"2 workers vs vectorbt {label}: {ratio:.1f}x")
    e2e = results["end_to_end_4096_2_workers"]
    print(
        f"\n4,096 combinations end to end (imports + load + runtime start + search + stop), 2 workers: "
        f"{e2e['end_to_end_seconds']:.1f} s ({e2e['combinations_per_second']:,.0f} combos/s overall)"
    )
    print(
        f"driver peak RSS: 256 grid {two['driver_peak_rss_mib']:.0f} MiB, 4,096 grid {e2e['driver_peak_rss_mib']:.0f} MiB"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
