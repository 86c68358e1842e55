"""Shared bits of the search tests: a small real-data config, serial expectations, worker processes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from veloz_actors.backtest import kernel
from veloz_actors.backtest.settings import BacktestSettings
from veloz_actors.data.loaders import load_bars

DATA_NAME = "ohlcv/binance_spot_BTCUSDT_1h_20230101-20240110.csv.gz"  # ~8.9k real 1h bars: quick to load and run
BIG_DATA_NAME = "ohlcv/binance_spot_BTCUSDT_5m_20240301-20250702.csv.gz"  # 140k bars: chunks long enough to catch
METRIC_COLUMNS = ("final_equity", "total_return", "max_drawdown", "n_trades", "win_rate", "sharpe")


def small_config(shared_data: Path, **extra: Any) -> dict[str, Any]:
    return {
        "data": str(shared_data / DATA_NAME),
        "strategy": "sma_cross",
        "grid": {"fast": "5:20:5", "slow": [20, 30, 45, 60]},
        "constraints": ["fast < slow"],
        **extra,
    }


def serial_results(
    shared_data: Path, param_sets: list[dict[str, Any]], data_name: str = DATA_NAME
) -> dict[tuple, dict[str, Any]]:
    """Each set run alone through the kernel, in this process: what a search must reproduce exactly."""
    prepared = kernel.prepare(load_bars(shared_data / data_name), "sma_cross", BacktestSettings())
    return {(p["fast"], p["slow"]): kernel.run_many(prepared, [p])[0] for p in param_sets}


def by_params(rows: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    return {(r["fast"], r["slow"]): {m: r[m] for m in METRIC_COLUMNS} for r in rows}


def descendant_pids(root: int) -> list[int]:
    """Every process below ``root`` (Linux /proc), so a test only ever touches processes its own runtime started."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
