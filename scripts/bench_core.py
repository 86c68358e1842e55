"""Benchmark the pure core, single core, in-process: the trading kernel with its in-process SimVenue.

    .venv/bin/python scripts/bench_core.py [--orders 200000] [--json out.json]
    .venv/bin/python scripts/bench_core.py --soak 2000000      # memory over a long run, RSS every 100,000 orders

Instructions instead of seconds (they repeat exactly run after run, where this VM's speed moves by 5 - 10 %): the
place + cancel loops alone, counted by callgrind as the difference between a run with them and one without::

    for body in run skip; do OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=0 valgrind --tool=callgrind \\
        --callgrind-out-file=/dev/null .venv/bin/python scripts/bench_core.py --count $body --orders 10000 2>&1 \\
        | grep Collected; done
    # (run - skip) / 10000 = instructions per place + cancel; add --journal off or --no-account-events to both
    # to see what each costs. OPENBLAS_NUM_THREADS=1: numpy's BLAS worker threads otherwise spin under valgrind,
    # a different amount each run (~1 %); with it the count repeats to the instruction.

Reports:
- resting limit orders and cancels per second through the kernel (risk + OMS + funds reservation), the venue
  (matching) and back (execution reports settled by the kernel), with the journal on (group fsync every 5 ms), and
  the same with the journal off, to show its cost;
- aggressive (crossing) orders per second: each one fills against a resting maker;
- L2 depth updates applied per second on a real Binance capture (snapshot + diffs);
- peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from veloz_actors.core.instruments import Instrument  # noqa: E402
from veloz_actors.core.risk import RiskLimits  # noqa: E402
from veloz_actors.fixed import SCALE  # noqa: E402
from veloz_actors.messages import BookTop, CancelOrder, OrderType, PlaceOrder, Side  # noqa: E402
from veloz_actors.venues.engine import Engine, EngineConfig, tune_gc  # noqa: E402

BTC = Instrument(
    symbol="BTCUSDT", base_asset="BTC", quote_asset="USDT", price_tick=1_000_000, qty_step=1_000,
    min_qty=1_000, max_qty=9000 * SCALE, min_notional=10 * SCALE,
)  # fmt: skip


def _config() -> EngineConfig:
    return EngineConfig(
        instruments=(BTC,),
        balances={"main": {"USDT": 10**9 * SCALE, "BTC": 10**5 * SCALE}, "taker": {"USDT": 10**9 * SCALE}},
        risk=RiskLimits(max_order_notional=10**7 * SCALE, price_band=10_000_000, orders_per_second=0),
        emit_account_updates=True,
        snapshot_every=10**9,
    )


def _commands(n: int) -> tuple[list[PlaceOrder], list[CancelOrder]]:
    places, cancels = [], []
    for i in range(n):
        price = (59_000 + (i % 500)) * SCALE  # resting bids below the 60,000 reference, 500 levels
        places.append(
            PlaceOrder(
                client_order_id=f"o{i}",
                symbol="BTCUSDT",
                side=Side.BUY,
                order_type=OrderType.LIMIT,
                qty=1_000_000,
                price=price,
                ts=2 + i,
            )  # fmt: skip
        )
        cancels.append(CancelOrder(client_order_id=f"o{i}", ts=2 + n + i))
    return places, cancels


def _reference(engine: Engine) -> None:
    engine.apply(
        BookTop(symbol="BTCUSDT", bid_price=60_000 * SCALE, bid_qty=SCALE, ask_price=60_000 * SCALE + 1_000_000,
                ask_qty=SCALE, update_id=1, ts_event=1, ts_recv=1)
    )  # fmt: skip


def bench_rest_cancel(n: int, journal: str | None) -> dict[str, float]:
    places, cancels = _commands(n)
    with tempfile.TemporaryDirectory() as tmp:
        path = None if journal is None else Path(tmp) / "bench.journal"
        engine = Engine(_config(), journal_path=path, durability=journal or "none")
        _reference(engine)
        gc.collect()
        apply = engine.apply
        t0 = time.perf_counter()
        for cmd in places:
            apply(cmd)
        t1 = time.perf_counter()
        for cmd in cancels:
            apply(cmd)
        t2 = time.perf_counter()
        engine.close()
        assert len(engine.oms.open_orders()) == 0
        assert engine.totals() == engine.deposited() and engine.ledger.conserved()
    return {
        "orders": n,
        "place_per_s": n / (t1 - t0),
        "cancel_per_s": n / (t2 - t1),
        "place_and_cancel_per_s": 2 * n / (t2 - t0),
    }


def bench_crossing(n: int) -> dict[str, float]:
    engine = Engine(_config())
    _reference(engine)
    makers = [
        PlaceOrder(client_order_id=f"m{i}", account_id="main", symbol="BTCUSDT", side=Side.SELL,
                   order_type=OrderType.LIMIT, qty=1_000_000, price=60_010 * SCALE, ts=2 + i)
        for i in range(n)
    ]  # fmt: skip
    takers = [
        PlaceOrder(client_order_id=f"t{i}", account_id="taker", symbol="BTCUSDT", side=Side.BUY,
                   order_type=OrderType.LIMIT, qty=1_000_000, price=60_010 * SCALE, ts=2 + n + i)
        for i in range(n)
    ]  # fmt: skip
    for cmd in makers:
        engine.apply(cmd)
    gc.collect()
    t0 = time.perf_counter()
    for cmd in takers:
        engine.apply(cmd)
    elapsed = time.perf_counter() - t0
    assert engine.totals() == engine.deposited() and engine.ledger.conserved()
    return {"orders": n, "filled_orders_per_s": n / elapsed}


def bench_depth_updates() -> dict[str, float]:
    from bench_l2book import DEFAULT_CAPTURE, bench_depth  # scripts/bench_l2book.py, beside this script

    return bench_depth(DEFAULT_CAPTURE)


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench_soak(n: int, every: int = 100_000, open_orders: int = 1_000) -> dict[str, float]:
    """A long run: ``n`` orders and their cancels through kernel + SimVenue with the journal on (group), ``open_orders``
    resting at any time, closed orders older than 10 ms of message time leaving memory for the order history file.
    Prints the RSS every ``every`` orders; memory must stay flat after warm-up."""
    config = replace(_config(), retain_closed_ns=10_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(config, journal_path=Path(tmp) / "soak.journal", durability="group")
        _reference(engine)
        apply = engine.apply
        gc.collect()
        samples: list[tuple[int, float]] = []
        t0 = time.perf_counter()
        for i in range(n):
            ts = 10 + i * 1_000  # one order per microsecond of message time
            price = (59_000 + (i % 500)) * SCALE
            apply(PlaceOrder(client_order_id=f"s{i}", symbol="BTCUSDT", side=Side.BUY, order_type=OrderType.LIMIT,
                             qty=1_000_000, price=price, ts=ts))  # fmt: skip
            if i >= open_orders:
                apply(CancelOrder(client_order_id=f"s{i - open_orders}", ts=ts + 1))
            if (i + 1) % every == 0:
                samples.append((i + 1, _rss_mib()))
                print(f"soak: {i + 1:>10,} orders  rss {samples[-1][1]:7.1f} MiB  in memory "
                      f"{len(engine.oms):>7,} orders  evicted {engine.kernel.evicted:>10,}", flush=True)  # fmt: skip
        elapsed = time.perf_counter() - t0
        engine.close()
        assert engine.totals() == engine.deposited() and engine.ledger.conserved()
        history = (Path(tmp) / "soak.journal.orders").stat().st_size
    warm = [rss for count, rss in samples if count >= n // 4] or [samples[-1][1]]
    return {
        "orders": n,
        "orders_and_cancels_per_s": (2 * n - open_orders) / elapsed,
        "rss_first_mib": samples[0][1],
        "rss_after_warmup_min_mib": min(warm),
        "rss_after_warmup_max_mib": max(warm),
        "rss_last_mib": samples[-1][1],
        "order_history_mib": history / 2**20,
    }


def count_body(n: int, run: bool, *, journal: bool = True, account_events: bool = True) -> None:
    """The set-up of ``bench_rest_cancel(n, ...)`` (durability none: no flusher thread to count) and, if ``run``, its
    two loops; the process then leaves at once (``os._exit``), so that tearing the engine down is not counted either.
    Under callgrind, the run's instructions minus the skip's are the loops'."""
    places, cancels = _commands(n)
    config = _config() if account_events else replace(_config(), emit_account_updates=False)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(config, journal_path=Path(tmp) / "count.journal" if journal else None, durability="none")
        _reference(engine)
        gc.collect()
        if run:
            apply = engine.apply
            for cmd in places:
                apply(cmd)
            for cmd in cancels:
                apply(cmd)
        engine.close()
        assert not run or (len(engine.oms.open_orders()) == 0 and engine.ledger.conserved())
    sys.stdout.flush()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--soak", type=int, default=0, metavar="N", help="only the soak: N orders and cancels")
    parser.add_argument(
        "--count", choices=("run", "skip"), help="only the resting loops (or their set-up), for callgrind"
    )
    parser.add_argument(
        "--journal", choices=("on", "off"), default="on", help="with --count: the journal (durability none)"
    )
    parser.add_argument("--no-account-events", action="store_true", help="with --count: emit_account_updates off")
    args = parser.parse_args()
    tune_gc()  # as the engine's entry points do
    if args.count:
        count_body(args.orders, args.count == "run", journal=args.journal == "on",
                   account_events=not args.no_account_events)  # fmt: skip
    if args.soak:
        results: dict = {"soak": bench_soak(args.soak)}
        for key, value in results["soak"].items():
            print(f"soak.{key:40s} {value:>16,.1f}")
        if args.json:
            args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
        return
    results = {
        "rest_cancel_journal_group": bench_rest_cancel(args.orders, "group"),
        "rest_cancel_journal_off": bench_rest_cancel(args.orders, None),
        "crossing": bench_crossing(args.orders // 4),
        "l2_depth": bench_depth_updates(),
    }
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'benchmark':44s} {'result':>16s}")
    for name, row in results.items():
        if isinstance(row, dict):
            for key, value in row.items():
                text = f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)
                print(f"{name + '.' + key:44s} {text:>16s}")
        else:
            print(f"{name:44s} {row:>16,.1f}")
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
