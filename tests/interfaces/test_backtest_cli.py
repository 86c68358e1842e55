"""`veloz backtest` as a user runs it: the JSON contract, the outputs, and one clear error line for bad input."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

import orjson
import pytest

from tests.backtest.synthetic_bars import ALGO, write_bars
from veloz_actors.config import load_yaml
from veloz_actors.fixed import parse_decimal

ROOT = Path(__file__).resolve().parents[2]
VELOZ = [sys.executable, "-m", "veloz_actors.interfaces.cli"]
ETH_1H = "../shared/data/ohlcv/binance_spot_ETHUSDT_1h_20230101-20240110.csv.gz"
SMA_3_9 = ["--data", ETH_1H, "--strategy", "sma_cross", "--param", "fast=3", "--param", "slow=9"]


def _veloz(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VELOZ, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture
def veloz_here(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``veloz ARGS`` run by the CLI's own entry point (``cli.main``) in this process: its exit code, stdout and
    stderr, as :func:`_veloz` gives them without a new Python and its imports (~1 s a run). For the checks of bad
    input, refused before anything runs; the tests above run ``python -m`` itself. An exception escaping ``main``
    (a traceback for a user) fails the test."""
    from veloz_actors.interfaces import cli

    monkeypatch.chdir(ROOT)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["veloz", *args])
        with warnings.catch_warnings(record=True) as caught, pytest.raises(SystemExit) as exit_:
            warnings.simplefilter("default")
            cli.main()
        out, err = capsys.readouterr()
        hidden = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)  # as python's own
        err += "".join(
            warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
            for w in caught
            if not issubclass(w.category, hidden)
        )  # a warning a user would see on stderr
        code = exit_.value.code  # as the interpreter exits: None is 0, a message is printed with 1
        if code is not None and not isinstance(code, int):
            err, code = f"{err}{code}\n", 1
        return subprocess.CompletedProcess(["veloz", *args], code or 0, out, err)

    return run


@pytest.mark.parametrize("engine", ["event", "kernel"])
def test_a_cash_that_grows_past_what_the_metrics_value_names_the_initial_cash(veloz_here, engine):
    """90 million passes the start's bound (90,071,992.54740991); the run's first winning trade takes the cash past
    it. The error said only "cash above 2**53 units (90 million) cannot be valued exactly", which reads as a refused
    input: it says now that the run's cash grew there, from which initial cash, and what to change."""
    proc = veloz_here("backtest", *SMA_3_9, "--initial-cash", "90000000", "--engine", engine)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "the run's cash grew to" in proc.stderr and "from an initial cash of 90000000" in proc.stderr
    assert "lower the initial cash" in proc.stderr


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
        ([*SMA_3_9, "--qty-step", "0.0000001"],
         "qty_step (--qty-step) 0.0000001 x the data's price tick 0.01 is finer than 1e-8 of the quote asset"),
        ([*SMA_3_9, "--price-tick", "0.1"], "ETHUSDT: price_tick (--price-tick) 0.1 is off the data"),
        ([*SMA_3_9, "--price-tick", "0.0o1"], "price_tick (--price-tick): '0.0o1' is not a decimal number"),
        ([*SMA_3_9, "--engine", "kernel", "--fee-rate", "5"], "fee_rate '5' must be below 1"),
        ([*SMA_3_9, "--slippage-bps", "20000"], "slippage_bps '20000' must be below 10000"),
        ([*SMA_3_9, "--out", "pyproject.toml"], "--out pyproject.toml: exists and is not a directory"),
        # before: the last one won without a word (slow=60 run, slow=50 meant)
        ([*SMA_3_9, "--param", "slow=60"], "--param slow is given more than once; give it once"),
        # before: an OverflowError traceback (and at slow=10**9, 8 GB allocated)
        (["--data", ETH_1H, "--strategy", "sma_cross", "--param", "fast=5", "--param", f"slow={10**29}"],
         f"sma_cross: slow must be at most 1,000,000 (bars; a longer window is refused before it takes memory), "
         f"got {10**29}"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line_and_non_zero_exit(veloz_here, args, message):
    proc = veloz_here("backtest", *args)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("backtest:\n", "backtest: must be a mapping of settings, got nothing"),
        ("backtest: [1, 2]\n", "backtest: must be a mapping of settings, got list"),
        (f"data: {ETH_1H}\nstrategy: sma_cross\nparams: {{fast: 3, slow: 9}}\ninitial_cash: true\n",
         "initial_cash: expected a number, got true"),  # never a cash of 1
        (f"data: {ETH_1H}\nstrategy: sma_cross\nparams: {{fast: 3, slow: 9}}\nfee_rate: false\n",
         "fee_rate: expected a number, got false"),
        # settings indented one level too little: before, the run went on with the default fee and cash
        (f"backtest:\n  data: {ETH_1H}\n  strategy: sma_cross\n  params: {{fast: 3, slow: 9}}\n"
         'fee_rate: "0.01"\ninitial_cash: "500"\n',
         "fee_rate, initial_cash are beside the backtest: section, where nothing is read: indent them under backtest:"),
        # a key written twice: before, the last fee won without a word
        (f"backtest:\n  data: {ETH_1H}\n  strategy: sma_cross\n  fee_rate: \"0.001\"\n  params: {{fast: 3, slow: 9}}\n"
         '  fee_rate: "0.01"\n',
         "not valid YAML (duplicate key 'fee_rate' (first at line 4) at line 6, column 3)"),
    ],
)  # fmt: skip
def test_a_bad_config_file_is_one_clear_line(veloz_here, tmp_path, text, message):
    config = tmp_path / "backtest.yaml"
    config.write_text(text)
    proc = veloz_here("backtest", str(config))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_an_out_folder_that_cannot_be_made_is_said_before_the_run(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    out = blocked / "run"  # inside a file: cannot be created
    proc = _veloz("backtest", *SMA_3_9, "--out", str(out))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: --out {out}: cannot create the directory (Not a directory)"


def test_tick_capture_runs_the_l2_backtest_with_an_l2_strategy():
    capture = "../shared/data/ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"
    proc = _veloz("backtest", "--data", capture, "--strategy", "book_imbalance", "--param", "threshold=0.5", "--json")
    assert proc.returncode == 0, proc.stderr
    result = orjson.loads(proc.stdout)
    assert result["metrics"]["n_fills"] == len(result["trades"]) > 0
    bar_strategy = _veloz("backtest", "--data", capture, "--strategy", "sma_cross")
    assert bar_strategy.returncode != 0 and bar_strategy.stderr.strip() == (
        f"error: sma_cross is a bar strategy and {capture} is a recorded WebSocket capture: a capture runs an L2 "
        "strategy (book_imbalance, passive_maker), a bar strategy needs candles"
    )  # it said "unknown L2 strategy 'sma_cross'", a strategy the README lists


def _torn_captures(tmp_path: Path) -> dict[str, Path]:
    import gzip

    whole = (ROOT / CAPTURE).read_bytes()
    lines = gzip.decompress(whole).split(b"\n")
    files = {
        "empty": gzip.compress(b""),
        "torn": whole[:40],  # a copy cut short inside its first line
        "not_gzip": b"garbage\n",
        "leading_blank_line": gzip.compress(b"\n" + b"\n".join(lines[:2000]) + b"\n"),
    }
    for name, raw in files.items():
        (tmp_path / f"{name}_ws.txt.gz").write_bytes(raw)
    return {name: tmp_path / f"{name}_ws.txt.gz" for name in files}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty", "{path}: the capture has no market events (an empty file)"),
        ("torn", "passive_maker is an L2 strategy, which reads a recorded WebSocket capture: {path}: cannot read: "
                 "Compressed file ended before the end-of-stream marker was reached"),
        ("not_gzip", "passive_maker is an L2 strategy, which reads a recorded WebSocket capture: {path}: cannot read: "
                     "Not a gzipped file (b'ga')"),
        ("candles", "passive_maker is an L2 strategy, which reads a recorded WebSocket capture: {path}: line 1: "
                    "expected '<local timestamp> <JSON>', got b'open_time_ms,open,high,low,close,volume'"),
    ],
)  # fmt: skip
def test_an_l2_strategy_on_a_file_that_is_no_capture_names_what_is_wrong_with_the_file(
    veloz_here, tmp_path, name, message
):
    """A capture whose first line is not one (empty, torn, not gzip) went to the bar backtest, which said "unknown
    strategy 'passive_maker'; valid strategies: sma_cross, rsi_reversion": the strategy was right, the file wrong."""
    path = ROOT / ETH_1H if name == "candles" else _torn_captures(tmp_path)[name]
    proc = veloz_here("backtest", "--data", str(path), "--strategy", "passive_maker")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: " + message.format(path=path.resolve() if name != "candles" else path)


@pytest.mark.parametrize("data", ["bars", "capture"])
def test_an_output_name_taken_by_a_directory_is_one_line_before_the_run(veloz_here, tmp_path, data):
    """A folder named report.html in --out: the run went to its end, replaced trades.csv, equity.csv and metrics.json,
    then died with IsADirectoryError's traceback, leaving the new files beside no report."""
    out = tmp_path / "run"
    (out / "report.html").mkdir(parents=True)
    args = SMA_3_9 if data == "bars" else IMBALANCE
    proc = veloz_here("backtest", *args, "--out", str(out))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        f"error: --out {out}: report.html is a directory; the run writes trades.csv, equity.csv, metrics.json, "
        "report.html there"
    )
    assert [p.name for p in out.iterdir()] == ["report.html"]


def test_an_l2_run_whose_outputs_cannot_be_written_leaves_the_previous_run_whole(veloz_here, tmp_path):
    """The L2 trades.csv was written on its own, before the other three: a write that failed after it (here the
    report's, its temporary name taken) left the new run's trades beside the previous run's equity, metrics and
    report, a folder that looked complete, and the error was a traceback."""
    out = tmp_path / "run"
    assert veloz_here("backtest", *IMBALANCE, "--out", str(out)).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "report.html.tmp").mkdir()
    proc = veloz_here("backtest", *IMBALANCE, "--latency-ms", "40", "--out", str(out))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: --out {out}: cannot write report.html (Is a directory)"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


@pytest.mark.parametrize(
    ("data", "names"),
    [
        (ETH_1H, "sma_cross or rsi_reversion"),
        ("../shared/data/ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz", "book_imbalance or passive_maker"),
    ],
)
def test_no_strategy_names_those_that_run_on_the_data(veloz_here, data, names):
    """On a capture it named the bar strategies (sma_cross or rsi_reversion), which a capture refuses."""
    proc = veloz_here("backtest", "--data", data)
    assert proc.returncode != 0 and proc.stderr == f"error: no strategy: give --strategy NAME ({names})\n"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("configs/engine.yaml", "configs/engine.yaml is an engine config (veloz start --config), not a backtest config "
                                "(configs/backtest/*.yaml)"),
        ("configs/search/sma_grid.yaml", "configs/search/sma_grid.yaml is a search config (veloz grid-search), not a "
                                         "backtest config (configs/backtest/*.yaml)"),
        (ETH_1H, f"{ETH_1H} is a data file, not a backtest config: give it as --data {ETH_1H}"),
    ],
)  # fmt: skip
def test_another_file_given_as_the_backtest_config_says_what_it_is(veloz_here, config, message):
    """The engine config said "engine: Input should be 'event' or 'kernel'" (its engine: section read as the backtest's
    engine option), a search config "grid: Extra inputs are not permitted", and the data file given without --data
    "not UTF-8 text (byte 0x8b at offset 1): save it as UTF-8"."""
    proc = veloz_here("backtest", config, "--strategy", "sma_cross")
    assert proc.returncode != 0 and proc.stderr == f"error: {message}\n"


def test_an_l2_capture_with_a_leading_blank_line_runs(veloz_here, tmp_path):
    path = _torn_captures(tmp_path)["leading_blank_line"]
    proc = veloz_here("backtest", "--data", str(path), "--strategy", "passive_maker")
    assert proc.returncode == 0, proc.stderr
    assert "(l2 engine)" in proc.stdout


def test_an_l2_capture_without_a_snapshot_is_warned_of():
    capture = "../shared/data/ticks_l2/binance_spot_btcusdt_20230405_ws.txt.gz"
    proc = _veloz("backtest", "--data", capture, "--strategy", "book_imbalance", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "warning: BTCUSDT: the recorded book was never known: the capture has no depth snapshot" in proc.stderr


def test_a_0_0001_tick_coin_backtests_out_of_the_box_and_reports_its_instrument(tmp_path):
    data = write_bars(tmp_path, ALGO)
    out = tmp_path / "run"
    proc = _veloz("backtest", "--data", str(data), "--strategy", "sma_cross", "--param", "fast=3", "--param",
                  "slow=8", "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "ALGOUSDT: price tick 0.0001 (data), quantity step 0.0001 (default)" in proc.stdout
    run = orjson.loads((out / "metrics.json").read_bytes())
    assert (run["symbol"], run["price_tick"], run["qty_step"]) == ("ALGOUSDT", "0.0001", "0.0001")
    assert (run["price_tick_from"], run["qty_step_from"]) == ("data", "default")
    assert run["metrics"]["n_trades"] >= 20
    trades = (out / "trades.csv").read_text().splitlines()[1:]
    assert len(trades) >= 40
    for line in trades:
        _, _, price, qty, _ = line.split(",")
        assert _units(price) % 10_000 == 0 and _units(qty) % 10_000 == 0  # on the tick and the step


def test_flags_override_tick_and_step(tmp_path):
    data = write_bars(tmp_path, ALGO)
    proc = _veloz("backtest", "--data", str(data), "--strategy", "sma_cross", "--param", "fast=3", "--param",
                  "slow=8", "--qty-step", "1", "--price-tick", "0.00005", "--slippage-bps", "3", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    trades = orjson.loads(proc.stdout)["trades"]
    assert len(trades) >= 40
    assert all(_units(t["qty"]) % 10**8 == 0 for t in trades)  # whole ALGO
    assert all(_units(t["price"]) % 5_000 == 0 for t in trades)
    assert any(_units(t["price"]) % 10_000 for t in trades)  # a fill between the data's 0.0001 ticks


def test_config_keys_override_tick_and_step_and_a_bad_one_is_named(tmp_path):
    data = write_bars(tmp_path, ALGO)
    config = tmp_path / "algo.yaml"
    config.write_text(
        f"backtest:\n  data: {data}\n  strategy: sma_cross\n  params: {{fast: 3, slow: 8}}\n"
        '  price_tick: "0.00001"\n  qty_step: "0.01"\n'
    )
    out = tmp_path / "run"
    proc = _veloz("backtest", str(config), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    run = orjson.loads((out / "metrics.json").read_bytes())
    assert (run["price_tick"], run["price_tick_from"], run["qty_step"], run["qty_step_from"]) == (
        "0.00001", "config", "0.01", "config")  # fmt: skip
    bad = _veloz("backtest", str(config), "--qty-step", "0.0001")  # the flag wins over the file
    assert bad.returncode != 0
    assert bad.stderr.strip() == (
        "error: ALGOUSDT: qty_step (--qty-step) 0.0001 x price_tick (--price-tick) 0.00001 is finer than 1e-8 of the "
        "quote asset, so notionals would not be exact: use a qty_step that is a multiple of 0.001, or leave it out "
        "for the default 0.001"
    )


def test_l2_capture_takes_the_tick_and_step_flags_too():
    capture = "../shared/data/ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"
    proc = _veloz("backtest", "--data", capture, "--strategy", "book_imbalance", "--qty-step", "0.00000001")
    assert proc.returncode != 0
    assert "qty_step (--qty-step) 0.00000001 x the capture's price tick 0.01 is finer than 1e-8" in proc.stderr


CAPTURE = "../shared/data/ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"
IMBALANCE = ["--data", CAPTURE, "--strategy", "book_imbalance", "--param", "threshold=0.5"]


def test_an_l2_backtest_takes_latency_maker_fee_and_seed_and_writes_every_output(tmp_path):
    """They were only in the Python API: from the command line an L2 run always had zero latency, and --out wrote no
    equity curve and no report."""
    from veloz_actors.backtest import l2
    from veloz_actors.data.loaders import load_market_events
    from veloz_actors.strategies.l2_strategies import make_l2_strategy

    out = tmp_path / "run"
    flags = ["--latency-ms", "25", "--latency-jitter-ms", "10.5", "--seed", "7", "--maker-fee-rate", "0.0002"]
    proc = _veloz("backtest", *IMBALANCE, *flags, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "(l2 engine)" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["equity.csv", "metrics.json", "report.html", "trades.csv"]
    # the same run from Python with those settings: the same fills, byte for byte
    events = load_market_events(ROOT / CAPTURE)
    settings = l2.L2Settings.for_events(events, latency_ns=25_000_000, latency_jitter_ns=10_500_000,
                                        maker_fee_rate=20_000)  # fmt: skip
    result = l2.run_l2_backtest(events, make_l2_strategy("book_imbalance", {"threshold": 0.5}), settings, seed=7)
    l2.write_trades_csv(result, tmp_path / "expected.csv")
    assert (out / "trades.csv").read_bytes() == (tmp_path / "expected.csv").read_bytes()
    no_latency = _veloz("backtest", *IMBALANCE, "--json")
    assert orjson.loads(no_latency.stdout)["trades"] != result.records()  # the latency moved the fills
    saved = json.loads((out / "metrics.json").read_bytes(), parse_float=Decimal)  # the numbers as written
    assert saved["metrics"] == {k: Decimal(repr(v)) if isinstance(v, float) else v for k, v in result.metrics.items()}
    assert (saved["latency_ms"], saved["latency_jitter_ms"], saved["seed"], saved["maker_fee_rate"]) == (
        "25", "10.5", 7, "0.0002")  # fmt: skip
    rows = (out / "equity.csv").read_text().splitlines()
    assert rows[0] == "ts_ms,mark,cash,base,equity" and len(rows) == len(result.equity) + 1
    assert _units(rows[-1].split(",")[4]) == int(result.equity["equity"][-1])
    report = (out / "report.html").read_text()
    assert "L2 backtest: BTCUSDT" in report and report.count("<tr>") >= len(result.trades) + len(result.metrics)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*SMA_3_9, "--latency-ms", "5"], "latency_ms: only tick (L2) backtests on a recorded capture take this"),
        ([*SMA_3_9, "--seed", "3", "--maker-fee-rate", "0.0001"], "maker_fee_rate, seed: only tick (L2) backtests"),
        ([*IMBALANCE, "--latency-ms", "-1"], "latency_ms (--latency-ms): '-1' must not be negative"),
        ([*IMBALANCE, "--latency-ms", "0.0000001"], "latency_ms (--latency-ms) '0.0000001' is finer than a nanosecond"),
        ([*IMBALANCE, "--latency-jitter-ms", "3600001"], "latency_jitter_ms (--latency-jitter-ms) '3600001' is more "
                                                          "than an hour"),
        ([*IMBALANCE, "--maker-fee-rate", "1"], "maker_fee_rate '1' must be below 1"),
        ([*IMBALANCE, "--engine", "kernel"], "engine 'kernel': a recorded capture runs the L2 backtest"),
    ],
)  # fmt: skip
def test_l2_options_are_checked_and_refused_where_they_do_not_apply(veloz_here, args, message):
    proc = veloz_here("backtest", *args)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


def test_a_zero_latency_on_a_bar_backtest_is_no_l2_option():
    assert _veloz("backtest", *SMA_3_9, "--latency-ms", "0.0", "--seed", "0").returncode == 0


def _units(text: str) -> int:
    return parse_decimal(text)


def _exact_final_equity(out: Path, data: Path, initial_cash: str) -> tuple[Decimal, Decimal]:
    """Final equity and fees replayed from ``trades.csv`` in exact decimals: notionals rounded to 1e-8 against the
    trader, the open position marked at the data's last close."""
    from veloz_actors.data.loaders import load_bars

    unit = Decimal("0.00000001")
    cash, qty, fees = Decimal(initial_cash), Decimal(0), Decimal(0)
    with open(out / "trades.csv") as f:
        for row in csv.DictReader(f):
            price, size, fee = Decimal(row["price"]), Decimal(row["qty"]), Decimal(row["fee"])
            fees += fee
            if row["side"] == "BUY":
                cash -= (price * size).quantize(unit, rounding=ROUND_CEILING) + fee
                qty += size
            else:
                cash += (price * size).quantize(unit, rounding=ROUND_FLOOR) - fee
                qty -= size
    last_close = Decimal(int(load_bars(data).data["close"][-1])) / 10**8
    return cash + qty * last_close, fees


@pytest.mark.parametrize(
    ("config", "cash"),
    [
        ("configs/backtest/rsi_reversion_eth_1h.yaml", "1000000"),  # was shown as 1.81953e+06
        ("configs/backtest/sma_cross_btc_5m.yaml", "10000"),  # was written as 37.612729619999996
    ],
)
def test_money_is_shown_and_written_exactly(tmp_path, config, cash):
    out = tmp_path / "run"
    proc = _veloz("backtest", config, "--initial-cash", cash, "--engine", "kernel", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    data = ROOT / load_yaml(ROOT / config)["backtest"]["data"]
    final, fees = _exact_final_equity(out, data, cash)
    assert final == final.quantize(Decimal("0.00000001"))  # a whole 1e-8 amount, as the kernel's integers
    shown = f"{final.normalize():,f}"
    assert re.search(rf"^  final_equity +{re.escape(shown)}$", proc.stdout, re.MULTILINE), proc.stdout
    assert re.search(rf"^  total_fees +{re.escape(f'{fees.normalize():,f}')}$", proc.stdout, re.MULTILINE)
    assert "e+" not in proc.stdout and "e-" not in proc.stdout
    written = (out / "metrics.json").read_text()
    assert f'"final_equity": {final.normalize():f},' in written
    saved = json.loads(written, parse_float=Decimal)["metrics"]
    assert (saved["final_equity"], saved["total_fees"]) == (final, fees)
    page = (out / "report.html").read_text()
    assert f"<tr><td>final_equity</td><td>{shown}</td></tr>" in page
