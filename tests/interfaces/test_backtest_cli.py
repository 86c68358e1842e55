"""`veloz backtest` as a user runs it: the JSON contract, the outputs, and one clear error line for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
VELOZ = [sys.executable, "-m", "veloz_actors.interfaces.cli"]
ETH_1H = "../shared/data/ohlcv/binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz"


def _veloz(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VELOZ, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_json_output_has_metrics_trades_and_timing():
    proc = _veloz("backtest", "--data", ETH_1H, "--strategy", "sma_cross", "--param", "fast=10", "--param",
                  "slow=30", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = orjson.loads(proc.stdout)
    assert set(result) == {"metrics", "trades", "timing"}
    assert {"final_equity", "total_return", "max_drawdown", "n_trades", "win_rate", "sharpe"} <= set(result["metrics"])
    assert set(result["trades"][0]) == {"ts", "side", "price", "qty", "fee"}
    assert set(result["timing"]) == {"load_seconds", "run_seconds"}


def test_kernel_engine_gives_the_same_json_as_the_event_engine():
    common = ["backtest", "configs/backtest/rsi_reversion_eth_1h.yaml", "--json"]
    event = orjson.loads(_veloz(*common).stdout)
    kernel = orjson.loads(_veloz(*common, "--engine", "kernel").stdout)
    assert event["trades"] == kernel["trades"] and event["metrics"] == kernel["metrics"]


def test_out_dir_gets_trades_equity_metrics_and_report(tmp_path):
    proc = _veloz("backtest", "configs/backtest/rsi_reversion_eth_1h.yaml", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"trades.csv", "equity.csv", "metrics.json", "report.html"}


@pytest.mark.parametrize(
    "args,message",
    [
        (["--data", "missing.csv", "--strategy", "sma_cross"], "does not exist"),
        (["--data", ETH_1H, "--strategy", "macd"], "unknown strategy"),
        (["--data", ETH_1H, "--strategy", "sma_cross", "--param", "fast=30", "--param", "slow=10"], "smaller than"),
        (
            [
                "--data",
                ETH_1H,
                "--strategy",
                "rsi_reversion",
                "--param",
                "period=-1",
                "--param",
                "lower=30",
                "--param",
                "upper=70",
            ],
            "period must be >= 1",
        ),
        (["--data", ETH_1H, "--strategy", "sma_cross", "--param", "fast"], "NAME=VALUE"),
        (
            [
                "--data",
                ETH_1H,
                "--strategy",
                "sma_cross",
                "--param",
                "fast=3",
                "--param",
                "slow=9",
                "--fee-rate",
                "nan",
            ],
            "fee_rate",
        ),
        (["--data", "pyproject.toml", "--strategy", "sma_cross", "--param", "fast=3", "--param", "slow=9"], ""),
    ],
)
def test_bad_input_is_one_clear_line_and_non_zero_exit(args, message):
    proc = _veloz("backtest", *args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


def test_tick_capture_runs_the_l2_backtest_with_an_l2_strategy():
    capture = "../shared/data/ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"
    proc = _veloz("backtest", "--data", capture, "--strategy", "book_imbalance", "--param", "threshold=0.5", "--json")
    assert proc.returncode == 0, proc.stderr
    result = orjson.loads(proc.stdout)
    assert result["metrics"]["n_fills"] == len(result["trades"]) > 0
    bar_strategy = _veloz("backtest", "--data", capture, "--strategy", "sma_cross")
    assert bar_strategy.returncode != 0 and "unknown L2 strategy" in bar_strategy.stderr
