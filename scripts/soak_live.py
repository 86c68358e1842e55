"""Soak the actor engine: paper trading on a looping local Binance market for N minutes, watching what grows.

    .venv/bin/python scripts/soak_live.py [--minutes 10] [--speed 10] [--orders-per-second 2] [--every 30]
                                          [--run DIR] [--json out.json]

Starts the local Binance server (:mod:`veloz_actors.testing.binance_server`, in its own process so that its
memory is apart from the driver's) replaying the 2024-08-08 BTCUSDT and ETHUSDT spot captures at ``--speed`` x real
time, starting them over after their last event (``--loop``: each pass a gap, so the engine resyncs its books from a
new snapshot), and an engine on the actor layout in paper mode against it (a private local Ray runtime of this
process; ``journal.retain_closed_seconds`` from ``--retain-closed``). A subscriber takes every event off the bus; the
script keeps placing resting limit orders a few ticks off the best bid/ask, cancels the oldest when more than
``--open`` rest, and sends a small market order every tenth order (buys and sells alternate: the position stays near
flat).

Every ``--every`` seconds it prints one block: per process (the actors by the pids STATUS gives, the supervisor, the
server, this driver) the resident set (MiB), open file descriptors and threads; the run folder's files and their
sizes (journals, order history, logs); the inboxes, the bus's subscriber queues and the risk actor's marks waiting,
from STATUS; orders placed, fills and events/s since the last block. At the end, each figure's growth per hour
after the warm-up (the first third of the run), by a least-squares slope.

Run it by hand (not part of the test suite). Everything it starts (the server process, Ray's processes) is gone when
it returns; ``--run`` keeps the run folder (default: a temporary one, removed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ticks_l2"
CAPTURES = [DATA / "binance_spot_btcusdt_20240808_ws.txt.gz", DATA / "binance_spot_ethusdt_20240808_ws.txt.gz"]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private runtime of this process only

from veloz_actors.actors.api import start_local  # noqa: E402
from veloz_actors.config import load_engine_config, with_venue  # noqa: E402
from veloz_actors.core.market_batch import MarketBatch  # noqa: E402
from veloz_actors.fixed import format_decimal  # noqa: E402
from veloz_actors.messages import OrderFilled  # noqa: E402

QTY = {"BTCUSDT": "0.0005", "ETHUSDT": "0.005"}  # about 30 USDT and 13 USDT: above the minimum notional
TICK = 1_000_000  # 0.01 in 1e-8 units: both symbols' tick


@contextlib.contextmanager
def served(speed: float) -> Iterator[dict[str, Any]]:
    """The local Binance server in its own process (its memory apart from this driver's), looping the captures."""
    command = [sys.executable, "-m", "veloz_actors.testing.binance_server", "--speed", str(speed), "--loop"]
    for capture in CAPTURES:
        command += ["--capture", str(capture)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=ROOT, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the Binance test server did not start (exit {proc.wait(timeout=30)})")
        yield {**orjson.loads(line), "pid": proc.pid}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def process_figures(pid: int) -> dict[str, float] | None:
    """Resident set (MiB), open descriptors and threads of ``pid`` (None once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mib": int(fields["VmRSS"].split()[0]) / 1024,
        "fds": fds,
        "threads": int(fields["Threads"]),
    }


def folder_sizes(run: Path) -> dict[str, int]:
    """Every file under the run folder and its size in bytes."""
    out: dict[str, int] = {}
    for path in sorted(run.rglob("*")):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file():
                out[str(path.relative_to(run))] = path.stat().st_size
    return out


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, value)`` points, per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if den == 0 else sum((t - mt) * (v - mv) for t, v in points) / den * 3600


class Trader:
    """Resting limits a few ticks off the touch, cancels of the oldest, a small market order every tenth order."""

    def __init__(self, engine: Any, open_limit: int) -> None:
        self.engine = engine
        self.open_limit = open_limit
        self.resting: list[str] = []
        self.n = 0
        self.placed = self.cancelled = self.rejected = 0

    def step(self) -> None:
        self.n += 1
        symbol = "BTCUSDT" if self.n % 2 else "ETHUSDT"
        depth = self.engine.depth(symbol, 1)
        if not depth or not depth["synced"] or not depth["bids"] or not depth["asks"]:
            return
        side = "BUY" if (self.n // 2) % 2 else "SELL"
        cid = f"soak-{self.n}"
        if self.n % 10 == 0:
            out = self.engine.place_order(symbol, side, QTY[symbol], client_order_id=cid)
        else:
            away = (1 + self.n % 7) * TICK
            price = depth["bids"][0][0] - away if side == "BUY" else depth["asks"][0][0] + away
            out = self.engine.place_order(symbol, side, QTY[symbol], format_decimal(price), client_order_id=cid)
            self.resting.append(cid)
        self.placed += 1
        if any(type(e).__name__ == "OrderRejected" for e in out):
            self.rejected += 1
        while len(self.resting) > self.open_limit:
            self.engine.cancel_order(self.resting.pop(0))  # a filled one: a counted rejection, no harm
            self.cancelled += 1


def processes(status: dict[str, Any], server: int) -> Iterator[tuple[str, int]]:
    yield "driver", os.getpid()
    yield "server", server
    yield "supervisor", status["supervisor_pid"]
    for name, actor in sorted(status["actors"].items()):
        if actor.get("pid"):
            yield name, actor["pid"]


def bus_figures(status: dict[str, Any]) -> dict[str, Any]:
    """What STATUS says of the queues: each actor's inbox, each bus subscriber's queue, the risk marks waiting."""
    out = {f"inbox:{name}": actor.get("inbox_depth", 0) for name, actor in status["actors"].items()}
    for sid, queue in (status.get("subscribers") or {}).items():
        out[f"subscriber:{sid}"] = queue["queued"]
    marks = (status.get("risk_forwarding") or {}).get("marks") or {}
    out["risk marks pending"] = marks.get("pending", 0)
    out["subscriber dropped"] = status.get("subscriber_dropped", 0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to trade")
    parser.add_argument("--speed", type=float, default=10.0, help="market replay speed, x real time")
    parser.add_argument("--orders-per-second", type=float, default=2.0)
    parser.add_argument("--open", type=int, default=20, help="resting orders kept before the oldest is cancelled")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between reports")
    parser.add_argument(
        "--retain-closed",
        type=float,
        default=60.0,
        help="journal.retain_closed_seconds: closed orders older than this leave the OMS's memory for its history file",
    )
    parser.add_argument("--run", type=Path, default=None, help="keep the run folder here (default: temporary)")
    parser.add_argument("--json", type=Path, default=None, help="write every sample here")
    args = parser.parse_args(argv)

    run = args.run or Path(tempfile.mkdtemp(prefix="veloz-soak-"))
    run.mkdir(parents=True, exist_ok=True)
    config = load_engine_config(ROOT / "configs" / "engine.yaml")
    samples: list[dict[str, Any]] = []
    config = config.model_copy(
        update={"journal": config.journal.model_copy(update={"retain_closed_seconds": args.retain_closed})}
    )
    with served(args.speed) as server:
        config = with_venue(
            config,
            kind="binance",
            mode="paper",
            symbols=["BTCUSDT", "ETHUSDT"],
            rest_url=server["rest_url"],
            stream_url=server["stream_url"],
        )
        engine = start_local(config, name="soak", journal_dir=run / "engine.actors")
        try:
            events = engine.subscribe(max_queue=100_000)
            trader = Trader(engine, args.open)
            t0 = last = time.monotonic()
            end = t0 + args.minutes * 60
            count = fills = 0
            gap = 1.0 / args.orders_per_second
            next_order = t0
            while True:
                now = time.monotonic()
                for item in events.poll_raw():
                    if type(item) is MarketBatch:
                        count += len(item)
                    else:
                        count += 1
                        fills += type(item) is OrderFilled
                if now >= next_order:
                    trader.step()
                    next_order += gap
                if now - last >= args.every or now >= end:
                    status = engine.status()
                    sample = {
                        "t": round(now - t0, 1),
                        "events_per_second": round(count / (now - last), 1),
                        "placed": trader.placed,
                        "cancelled": trader.cancelled,
                        "rejected": trader.rejected,
                        "fills": fills,
                        "dropped": events.dropped,
                        "processes": {n: process_figures(pid) for n, pid in processes(status, server["pid"])},
                        "files": folder_sizes(run),
                        "queues": bus_figures(status),
                        "restarts": {n: a["restarts"] for n, a in status["actors"].items() if a["restarts"]},
                    }
                    samples.append(sample)
                    report(sample)
                    count, last = 0, now
                    if now >= end:
                        break
                time.sleep(min(0.05, max(0.0, next_order - time.monotonic())))
            events.close()
        finally:
            engine.shutdown()
            with contextlib.suppress(Exception):
                import ray

                ray.shutdown()
    summary(samples)
    if args.json:
        args.json.write_bytes(orjson.dumps(samples, option=orjson.OPT_INDENT_2))
    if args.run is None:
        shutil.rmtree(run, ignore_errors=True)
    return 0


def report(sample: dict[str, Any]) -> None:
    print(
        f"--- t={sample['t']:.0f}s  events/s {sample['events_per_second']:.0f}  orders {sample['placed']} "
        f"(cancels {sample['cancelled']}, rejected {sample['rejected']})  fills {sample['fills']}  "
        f"dropped {sample['dropped']}  restarts {sample['restarts'] or 'none'}",
        flush=True,
    )
    for name, figures in sample["processes"].items():
        if figures is None:
            print(f"  {name:<18} gone")
        else:
            print(
                f"  {name:<18} rss {figures['rss_mib']:8.1f} MiB  fds {figures['fds']:4d}  threads {figures['threads']:3d}"
            )
    files = sample["files"]
    print("  files: " + ", ".join(f"{k} {v / 1024:.0f}k" for k, v in files.items()), flush=True)
    busy = {k: v for k, v in sample["queues"].items() if v}
    print(f"  queues: {busy or 'all empty'}", flush=True)


def summary(samples: list[dict[str, Any]]) -> None:
    """Each figure's growth per hour after the warm-up (the first third of the samples)."""
    if len(samples) < 3:
        return
    steady = samples[len(samples) // 3 :]
    series: dict[str, list[tuple[float, float]]] = {}
    for sample in steady:
        for name, figures in sample["processes"].items():
            for key, value in (figures or {}).items():
                series.setdefault(f"{name} {key}", []).append((sample["t"], value))
        for name, size in sample["files"].items():
            series.setdefault(f"file {name} MiB", []).append((sample["t"], size / 2**20))
        for name, depth in sample["queues"].items():
            series.setdefault(name, []).append((sample["t"], depth))
    print(f"=== growth per hour from t={steady[0]['t']:.0f}s to t={steady[-1]['t']:.0f}s (least squares)")
    for name, points in sorted(series.items()):
        first, latest = points[0][1], points[-1][1]
        print(f"  {name:<48} {first:10.2f} -> {latest:10.2f}   {slope_per_hour(points):+10.2f}/h")


if __name__ == "__main__":
    sys.exit(main())
