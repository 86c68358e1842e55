"""Compare the L2 backtest's ``trades.csv`` between two source trees, byte for byte, on every shared capture.

The L2 backtest moved onto the trading kernel (``core/kernel.py``) and ``venues/l2replay.py``; this script proves the
move changed no fill. It runs the same cases in each tree, in a fresh interpreter with that tree first on
``sys.path`` (one process per tree and capture, which loads the capture once), writes each case's ``trades.csv``
under ``--out/<tree label>/`` and prints one line per case: ``same``, ``DIFF`` (with the first differing line) or the
error both (or one) raised.

    git worktree add /tmp/l2-before 3303a01          # the last commit before the redesign
    .venv/bin/python scripts/check_l2_parity.py --before /tmp/l2-before --out /tmp/l2-parity

Cases: both built-in L2 strategies (``book_imbalance``, ``passive_maker``) with default parameters, each under
default settings, 5 ms fixed latency, 1 ms + up to 40 ms seeded random latency with seeds 1 and 2, and separate maker /
taker fees with 2 bp slippage and 2 ms latency. Exit status
0 when every case is byte-identical (errors included: the same error on both sides counts as the same).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "ticks_l2"

CASES: dict[str, tuple[dict[str, int], int]] = {  # name -> (L2Settings overrides, seed)
    "default": ({}, 0),
    "latency5ms": ({"latency_ns": 5_000_000}, 0),
    "jitter-seed1": ({"latency_ns": 1_000_000, "latency_jitter_ns": 40_000_000}, 1),
    "jitter-seed2": ({"latency_ns": 1_000_000, "latency_jitter_ns": 40_000_000}, 2),
    "fees-slippage": (
        {"fee_rate": 70_000, "maker_fee_rate": 20_000, "slippage_rate": 20_000, "latency_ns": 2_000_000},
        0,
    ),
}
STRATEGIES = ("book_imbalance", "passive_maker")

# Runs inside the tree under test: imports what that tree has (the loaders and strategies moved packages). The venv's
# editable install of the main checkout adds an import hook that maps any ``veloz_actors.*`` module it knows to that
# checkout, whichever tree ``veloz_actors`` itself came from: without it gone, an older tree lacking a module
# (``veloz_actors.strategies``) silently ran the main checkout's.
_WORKER = r"""
import json, sys, time
sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
from pathlib import Path
try:
    from veloz_actors.data.loaders import load_market_events
except ImportError:
    from veloz_actors.backtest.loaders import load_market_events
try:
    from veloz_actors.strategies.l2_strategies import make_l2_strategy
except ImportError:
    from veloz_actors.backtest.l2_strategies import make_l2_strategy
from veloz_actors.backtest.l2 import L2Settings, run_l2_backtest, write_trades_csv

capture, out, cases, strategies = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4].split(",")
report = {}
try:
    events = load_market_events(capture)
except Exception as exc:
    events = exc
for case, (overrides, seed) in cases.items():
    for name in strategies:
        key = f"{case}-{name}"
        try:
            if isinstance(events, Exception):
                raise events
            settings = L2Settings.for_events(events, **overrides)
            started = time.perf_counter()
            result = run_l2_backtest(events, make_l2_strategy(name, {}), settings, seed=seed)
            seconds = time.perf_counter() - started
            write_trades_csv(result, out / f"{key}.csv")
            report[key] = {"fills": int(len(result.trades)), "seconds": round(seconds, 3)}
        except Exception as exc:
            report[key] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(report))
"""


def run_tree(tree: Path, capture: Path, out: Path) -> dict[str, dict[str, object]]:
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, str(capture), str(out), json.dumps(CASES), ",".join(STRATEGIES)],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{tree} on {capture.name} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def first_difference(a: bytes, b: bytes) -> str:
    for n, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False), start=1):
        if x != y:
            return f"line {n}: {x.decode()!r} vs {y.decode()!r}"
    return f"one is a prefix of the other ({len(a.splitlines())} vs {len(b.splitlines())} lines)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="the source tree to compare against")
    parser.add_argument("--after", type=Path, default=ROOT, help="the source tree under test (default: this one)")
    parser.add_argument("--out", type=Path, required=True, help="where each tree's trades.csv files go")
    parser.add_argument("--captures", nargs="*", type=Path, default=sorted(DATA.glob("*.txt.gz")))
    parser.add_argument("--jobs", type=int, default=2, help="processes at once")
    args = parser.parse_args()

    jobs = [(label, tree, capture) for capture in args.captures for label, tree in
            (("before", args.before), ("after", args.after))]  # fmt: skip
    with ThreadPoolExecutor(args.jobs) as pool:
        reports = list(pool.map(lambda j: run_tree(j[1], j[2], args.out / j[0] / j[2].name.split(".")[0]), jobs))
    results = {(label, capture.name): report for (label, _, capture), report in zip(jobs, reports, strict=True)}
    failed = 0
    for capture in args.captures:
        stem = capture.name.split(".")[0]
        before, after = results[("before", capture.name)], results[("after", capture.name)]
        for key in before:
            b, a = before[key], after.get(key, {"error": "missing"})
            if "error" in b or "error" in a:
                same = b.get("error") == a.get("error")
                verdict = f"{'same error' if same else 'ERROR DIFFERS'}: {b.get('error')} | {a.get('error')}"
            else:
                old = (args.out / "before" / stem / f"{key}.csv").read_bytes()
                new = (args.out / "after" / stem / f"{key}.csv").read_bytes()
                same = old == new
                verdict = (
                    f"same ({b['fills']} fills; {b['seconds']}s -> {a['seconds']}s)"
                    if same
                    else f"DIFF {first_difference(old, new)}"
                )
            failed += not same
            print(f"{stem:40s} {key:32s} {verdict}")
    print(f"{'all identical' if not failed else f'{failed} case(s) differ'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
