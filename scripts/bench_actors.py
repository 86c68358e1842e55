"""Benchmark the actor engine side by side with the single-process engine, in one run.

    .venv/bin/python scripts/bench_actors.py [--orders 3000] [--events 1000000] [--batch 1000] [--json out.json]

Measures, for both engines where it applies:

- order acknowledgement: place a resting limit order and wait for the kernel step's events (risk, reservation,
  state), one at a time (p50 / p99);
- fill to subscriber: place a market order and wait until its ``OrderFilled`` reaches a subscriber of the event bus
  (actors: OMS -> venue actor -> OMS -> bus -> a subscriber in this process whose poll the bus answers as soon as
  events are queued; single process: the engine's step and an in-process bounded queue), one at a time (p50 / p99);
- sustained orders/s: limit orders and their cancels, pipelined (actors: 64 calls in flight) and batched
  (``submit_many``, 500 commands per call);
- market events/s through feed -> venue -> subscriber, in batches (actors: feed actor -> venue actor -> event bus ->
  a subscriber polling from this process; single process: the same classes called in-process);
- a recorded Binance capture (``--capture``) replayed by the feed actor as fast as its book actors take it;
- Ray's floor for the same hops (``bench_floor``): actors that only pass the calls on, so each actor figure can be
  read against what Ray itself costs on this machine;
- memory: resident set of the engine (actors: every actor process incl. the supervisor; single process: this
  process's growth from building the engine and running the order tests).

Journals are on (``group`` durability, in a temporary directory) for both engines; the risk rate limit is lifted.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
CAPTURE = ROOT.parent / "shared" / "data" / "ticks_l2" / "binance_spot_btcusdt_20240808_ws.txt.gz"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private runtime of this process only

from veloz_actors.config import load_engine_config  # noqa: E402
from veloz_actors.fixed import parse_formatted  # noqa: E402
from veloz_actors.messages import (  # noqa: E402
    BookTop,
    CancelOrder,
    OrderAccepted,
    OrderFilled,
    OrderType,
    PlaceOrder,
    Side,
    Tick,
)
from veloz_actors.venues.engine import Engine  # noqa: E402


def _rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


LOG_LEVEL: str | None = None


def _latency_figures(acks: list[float], fills: list[float]) -> dict[str, float]:
    """p50 and p99 in ms of the order acknowledgements and of the fills reaching a subscriber."""
    return {
        "order_round_trip_p50_ms": statistics.median(acks) * 1e3,
        "order_round_trip_p99_ms": _pct(acks, 0.99) * 1e3,
        "fill_to_subscriber_p50_ms": statistics.median(fills) * 1e3,
        "fill_to_subscriber_p99_ms": _pct(fills, 0.99) * 1e3,
    }


def _config():
    config = load_engine_config(ROOT / "configs" / "engine.yaml")
    risk = config.risk.model_copy(update={"orders_per_second": 10_000_000, "burst": 10_000_000})
    metrics = config.metrics.model_copy(update={"enabled": False})
    update: dict[str, Any] = {"risk": risk, "metrics": metrics}
    if LOG_LEVEL is not None:
        update["logging"] = config.logging.model_copy(update={"level": LOG_LEVEL})
    return config.model_copy(update=update).with_actors(subscriber_queue=2_000_000)


def _limit(i: int, price: int, prefix: str) -> PlaceOrder:
    return PlaceOrder(
        client_order_id=f"{prefix}-{i}",
        account_id="main",
        symbol="BTCUSDT",
        side=Side.BUY,
        order_type=OrderType.LIMIT,
        qty=10_000,  # 0.0001 BTC
        price=price,
        ts=time.time_ns(),
    )


def _market(i: int, prefix: str) -> PlaceOrder:
    """A small market order, buying and selling in turn (the simulated market maker is on both sides)."""
    return PlaceOrder(
        client_order_id=f"{prefix}-{i}",
        account_id="main",
        symbol="BTCUSDT",
        side=Side.BUY if i % 2 == 0 else Side.SELL,
        order_type=OrderType.MARKET,
        qty=100_000,  # 0.001 BTC: above the minimum notional
        ts=time.time_ns(),
    )


def _cancel(i: int, prefix: str) -> CancelOrder:
    return CancelOrder(client_order_id=f"{prefix}-{i}", account_id="main", ts=time.time_ns())


def _synthetic_tops(count: int) -> list[BookTop]:
    now = time.time_ns()
    return [
        BookTop(
            symbol="BTCUSDT" if i % 2 else "ETHUSDT",
            bid_price=6_000_000_000_000 - 1_000_000,
            bid_qty=50_000_000,
            ask_price=6_000_000_000_000 + 1_000_000,
            ask_qty=50_000_000,
            update_id=i,
            ts_event=now,
            ts_recv=now,
        )
        for i in range(count)
    ]


# ------------------------------------------------------------------------------------------------- single process


def bench_single(orders: int, events: int, batch: int, journal_dir: Path) -> dict[str, Any]:
    from veloz_actors.actors.backpressure import DropOldestQueue

    gc.collect()
    base = _rss_mib()
    config = _config().engine_config()
    engine = Engine(config, journal_path=journal_dir / "single.journal", durability="group")
    engine.apply(Tick(ts=time.time_ns()))
    price = engine.reference["BTCUSDT"] * 97 // 100 // 1_000_000 * 1_000_000
    latencies = []
    for i in range(orders):
        start = time.perf_counter()
        engine.apply(_limit(i, price, "lat"))
        latencies.append(time.perf_counter() - start)
        engine.apply(_cancel(i, "lat"))
    start = time.perf_counter()
    for i in range(orders):
        engine.apply(_limit(i, price, "thr"))
        engine.apply(_cancel(i, "thr"))
    sustained = 2 * orders / (time.perf_counter() - start)
    fill_queue = DropOldestQueue(100_000)
    fill_latencies = []
    for i in range(orders):
        if i % 200 == 0:
            engine.apply(Tick(ts=time.time_ns()))
        command = _market(i, "fill")
        start = time.perf_counter()
        fill_queue.put_many(engine.apply(command))
        got = fill_queue.take(100_000)
        assert any(type(e) is OrderFilled and e.client_order_id == command.client_order_id for e in got)
        fill_latencies.append(time.perf_counter() - start)
    memory = _rss_mib() - base  # the engine after its order work (before the market test's input data)
    # feed -> book -> subscriber, in-process: the same book update and bounded queue, no Ray between them
    tops: dict[str, BookTop] = {}
    queue = DropOldestQueue(2_000_000)
    stream = _synthetic_tops(events)
    received = 0
    start = time.perf_counter()
    for offset in range(0, events, batch):
        chunk = stream[offset : offset + batch]
        for event in chunk:
            tops[event.symbol] = event
        queue.put_many(chunk)
        received += len(queue.take(batch))
    market = received / (time.perf_counter() - start)
    engine.close()
    return {
        **_latency_figures(latencies, fill_latencies),
        "orders_per_second_pipelined": sustained,
        "orders_per_second_batched": sustained,
        "market_events_per_second": market,
        "market_events_per_second_as_messages": market,
        "memory_mib": memory,
    }


# --------------------------------------------------------------------------------------------------------- actors


def bench_actors(orders: int, events: int, batch: int, journal_dir: Path) -> dict[str, Any]:
    import ray

    from veloz_actors.actors.api import start_local

    started = time.perf_counter()
    engine = start_local(_config(), name="bench", journal_dir=journal_dir / "actors", durability="group")
    startup = time.perf_counter() - started
    try:
        engine.tick()
        mid = parse_formatted(engine.status()["reference_prices"]["BTCUSDT"])
        price = mid * 97 // 100 // 1_000_000 * 1_000_000
        for i in range(200):  # warm-up
            engine.submit(_limit(i, price, "warm"))
            engine.submit(_cancel(i, "warm"))
        latencies = []
        for i in range(orders):
            command = _limit(i, price, "lat")
            start = time.perf_counter()
            engine.submit(command)
            latencies.append(time.perf_counter() - start)
            engine.submit(_cancel(i, "lat"))
        # a market order's fill event reaching a subscriber of the bus
        fills = engine.subscribe(kinds=["OrderFilled"], max_queue=100_000)
        fill_latencies = []
        for i in range(orders):
            if i % 200 == 0:
                engine.tick()
            command = _market(i, "fill")
            start = time.perf_counter()
            answer = engine.submit(command)
            if type(answer[0]) is not OrderAccepted:
                raise RuntimeError(f"the market order was not accepted: {answer[0]}")
            while not any(  # the bus answers the poll as soon as the fill is queued (or after 50 ms)
                type(e) is OrderFilled and e.client_order_id == command.client_order_id for e in fills.poll(wait=0.05)
            ):
                pass
            fill_latencies.append(time.perf_counter() - start)
        fills.close()
        # pipelined: 64 calls in flight from this client
        oms = engine.actor("oms")
        start = time.perf_counter()
        inflight: list[Any] = []
        for i in range(orders):
            inflight.append(oms.submit.remote(_limit(i, price, "pipe")))
            inflight.append(oms.submit.remote(_cancel(i, "pipe")))
            if len(inflight) >= 64:
                ray.get(inflight[:32], timeout=60)
                del inflight[:32]
        ray.get(inflight, timeout=60)
        pipelined = 2 * orders / (time.perf_counter() - start)
        # batched: 500 commands per call
        commands = []
        for i in range(orders):
            commands += [_limit(i, price, "batch"), _cancel(i, "batch")]
        start = time.perf_counter()
        refs = [oms.submit_many.remote(commands[k : k + 500]) for k in range(0, len(commands), 500)]
        ray.get(refs, timeout=120)
        batched = len(commands) / (time.perf_counter() - start)
        time.sleep(1.0)  # the OMS's log writer formats the orders above meanwhile: the market run starts on it idle
        # feed -> book -> bus -> subscriber (this process), batches of `batch`
        subscription = engine.subscribe(kinds=["BookTop"], max_queue=2_000_000)
        feed = engine.actor("feed")
        start = time.perf_counter()
        sent = feed.synthetic.remote(events, batch)
        received = 0
        deadline = time.monotonic() + 300
        while received < events and time.monotonic() < deadline:
            got = subscription.poll_raw()  # columnar batches, as a subscriber receives them
            received += sum(len(item) for item in got)
            if not got:
                time.sleep(0.002)
        elapsed = time.perf_counter() - start
        ray.get(sent, timeout=60)
        market = received / elapsed
        # the same, with the subscriber turning every row into the core's BookTop message
        start = time.perf_counter()
        sent = feed.synthetic.remote(events, batch)
        objects = 0
        deadline = time.monotonic() + 300
        while objects < events and time.monotonic() < deadline:
            got = subscription.poll()
            objects += len(got)
            if not got:
                time.sleep(0.002)
        market_objects = objects / (time.perf_counter() - start)
        ray.get(sent, timeout=60)
        dropped = subscription.dropped
        subscription.close()
        status = engine.status()
        pids = {}
        for name in status["actors"]:
            info = ray.get(engine.actor(name).status.remote(), timeout=30)
            pids[name] = info["pid"]
        pids["supervisor"] = status["supervisor_pid"]
        memory = {name: _rss_mib(pid) for name, pid in pids.items()}
    finally:
        engine.shutdown()
        ray.shutdown()
    return {
        "startup_seconds": startup,
        **_latency_figures(latencies, fill_latencies),
        "orders_per_second_pipelined": pipelined,
        "orders_per_second_batched": batched,
        "market_events_per_second": market,
        "market_events_per_second_as_messages": market_objects,
        "market_events_received": received,
        "market_events_dropped": dropped,
        "memory_mib": sum(memory.values()),
        "memory_mib_by_actor": memory,
    }


def bench_floor(orders: int, events: int, batch: int) -> dict[str, Any]:
    """Ray's own floor for the same paths on this machine: the actor engine's hops made by actors that do nothing
    else. Order acknowledgement: a call to an actor that sends one one-way call on (the OMS routes the order to its
    venue) and answers. Fill to subscriber: then venue -> OMS -> bus one-way and the bus answering a waiting poll.
    Market events: a prebuilt MarketBatch of ``batch`` tops sent feed -> venue -> bus with the engine's call windows
    (the feed's merging a busy venue's batches into one call, as the engine's feed does) and polled from this
    process."""
    import threading

    import numpy as np
    import ray

    from veloz_actors.actors.batches import MarketBatch
    from veloz_actors.actors.bus import BUS_CONCURRENCY_GROUPS
    from veloz_actors.actors.spec import CallWindow, MergingWindow

    @ray.remote(num_cpus=0, max_task_retries=0, concurrency_groups=BUS_CONCURRENCY_GROUPS)  # as the engine's bus
    class Bus:
        def __init__(self) -> None:
            self.queue: list[Any] = []
            self.cond = threading.Condition()

        def publish(self, items: Any) -> None:
            with self.cond:
                self.queue.append(items)
                self.cond.notify_all()

        def poll(self) -> list[Any]:
            with self.cond:
                out, self.queue = self.queue, []
                return out

        @ray.method(concurrency_group="poll")
        def poll_wait(self, wait: float) -> list[Any]:
            with self.cond:
                if not self.queue:
                    self.cond.wait_for(lambda: bool(self.queue), wait)
                out, self.queue = self.queue, []
                return out

    @ray.remote(num_cpus=0, max_task_retries=0)
    class Oms:
        def __init__(self, bus: Any) -> None:
            self.bus, self.venue = bus, None

        def attach(self, venue: Any) -> None:
            self.venue = venue

        def submit(self, command: Any) -> list[Any]:
            self.venue.requests.remote([command])
            return [command]

        def reports(self, reports: list[Any]) -> None:
            self.bus.publish.remote(reports)

    @ray.remote(num_cpus=0, max_task_retries=0)
    class Venue:
        def __init__(self, oms: Any, bus: Any) -> None:
            self.oms, self.bus, self.window = oms, bus, CallWindow(64)

        def requests(self, requests: list[Any]) -> None:
            self.oms.reports.remote(requests)

        def apply(self, rows: Any) -> int:
            self.window.send(self.bus.publish, rows)
            return len(rows)

        def flush(self) -> None:
            self.window.wait_all(60.0)

    @ray.remote(num_cpus=0, max_task_retries=0)
    class Feed:
        def __init__(self, venue: Any) -> None:
            self.venue, self.window = venue, MergingWindow(64, venue.apply)

        def run(self, count: int, rows: Any) -> int:
            sent = 0
            while sent < count:
                self.window.send(rows)
                sent += len(rows)
            self.window.wait_all(60.0)
            return sent

    ray.init(address="local", include_dashboard=False, logging_level="ERROR")
    try:
        bus = Bus.remote()
        oms = Oms.remote(bus)
        venue = Venue.remote(oms, bus)
        feed = Feed.remote(venue)
        ray.get([oms.attach.remote(venue), bus.poll.remote()], timeout=60)
        command = _market(0, "floor")
        for _ in range(200):  # warm-up
            ray.get(oms.submit.remote(command), timeout=30)
            while not ray.get(bus.poll_wait.remote(0.05), timeout=30):
                pass
        acks, fills = [], []
        for i in range(orders):
            command = _market(i, "floor")
            start = time.perf_counter()
            ray.get(oms.submit.remote(command), timeout=30)
            acks.append(time.perf_counter() - start)
            while not ray.get(bus.poll_wait.remote(0.05), timeout=30):
                pass
            fills.append(time.perf_counter() - start)
        rows = MarketBatch.of_tops(("BTCUSDT",), {"symbol": np.zeros(batch, dtype=np.int64), "bid_price": 1,
                                                  "bid_qty": 1, "ask_price": 2, "ask_qty": 1, "update_id": 1,
                                                  "ts_event": 1, "ts_recv": 1})  # fmt: skip
        start = time.perf_counter()
        sent = feed.run.remote(events, rows)
        received = 0
        deadline = time.monotonic() + 300
        while received < events and time.monotonic() < deadline:
            got = ray.get(bus.poll.remote(), timeout=30)
            received += sum(len(item) for item in got)
            if not got:
                time.sleep(0.002)
        market = received / (time.perf_counter() - start)
        ray.get(sent, timeout=60)
    finally:
        ray.shutdown()
    return {
        **_latency_figures(acks, fills),
        "market_events_per_second": market,
    }


def bench_replay(capture: Path, batch: int) -> dict[str, Any]:
    """The feed actor replaying a recorded Binance capture at speed 0: each batch acknowledged by its venue actor."""
    import ray

    from veloz_actors.actors.api import start_local

    config = _config()
    config = config.with_actors(replay={"path": str(capture), "speed": 0, "batch": batch})
    with start_local(config, name="bench-replay") as engine:
        deadline = time.monotonic() + 300
        while not (replay := engine.status()["replay"])["done"] and not replay["error"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"replay of {capture} not done after 300 s: {replay}")
            time.sleep(0.05)
    ray.shutdown()
    if replay["error"]:
        raise RuntimeError(replay["error"])
    return replay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--log-level", default=None, help="the engine's log level (default: the config's, INFO)")
    parser.add_argument("--capture", type=Path, default=CAPTURE, help="recorded capture the feed actor replays")
    args = parser.parse_args()
    global LOG_LEVEL
    LOG_LEVEL = args.log_level
    with tempfile.TemporaryDirectory() as tmp:
        single = bench_single(args.orders, args.events, args.batch, Path(tmp))
        actors = bench_actors(args.orders, args.events, args.batch, Path(tmp))
    floor = bench_floor(args.orders, args.events, args.batch)
    replay = bench_replay(args.capture, args.batch)
    rows = [
        ("order acknowledgement p50 (ms)", "order_round_trip_p50_ms", "{:.3f}"),
        ("order acknowledgement p99 (ms)", "order_round_trip_p99_ms", "{:.3f}"),
        ("market order fill to subscriber p50 (ms)", "fill_to_subscriber_p50_ms", "{:.3f}"),
        ("market order fill to subscriber p99 (ms)", "fill_to_subscriber_p99_ms", "{:.3f}"),
        ("orders/s, one per call, pipelined", "orders_per_second_pipelined", "{:,.0f}"),
        ("orders/s, batched 500 per call", "orders_per_second_batched", "{:,.0f}"),
        ("market events/s feed->venue->subscriber", "market_events_per_second", "{:,.0f}"),
        ("  ... subscriber builds BookTop messages", "market_events_per_second_as_messages", "{:,.0f}"),
        ("memory of the engine (MiB RSS)", "memory_mib", "{:.0f}"),
    ]
    print(f"{'':42} {'single-process':>16} {'actors':>14} {'actors/single':>14} {'Ray floor':>10} {'actors/floor':>13}")
    for label, key, fmt in rows:
        ratio = actors[key] / single[key] if single[key] else float("nan")
        line = f"{label:42} {fmt.format(single[key]):>16} {fmt.format(actors[key]):>14} {ratio:>14.2f}"
        if key in floor:
            line += f" {fmt.format(floor[key]):>10} {actors[key] / floor[key]:>13.2f}"
        print(line)
    print(
        f"actor engine start-up: {actors['startup_seconds']:.1f} s; market events received "
        f"{actors['market_events_received']:,} (dropped {actors['market_events_dropped']:,}); "
        f"batch {args.batch}; {os.cpu_count()} cores"
    )
    print(
        f"recorded capture replayed by the feed actor ({args.capture.name}, speed 0): {replay['total']:,} events, "
        f"load {replay['load_seconds']:.2f} s, replay {replay['replay_seconds']:.2f} s = "
        f"{replay['total'] / replay['replay_seconds']:,.0f} events/s (every batch acknowledged by its venue actor)"
    )
    print(
        "Ray floor: the same hops between actors that do nothing else, in a private runtime on this machine (the "
        "actor engine's latency cannot go below it; see bench_floor)"
    )
    actors["replay"] = replay
    actors["ray_floor"] = floor
    if args.json is not None:
        args.json.write_bytes(
            orjson.dumps(
                {"single_process": single, "actors": actors, "args": vars(args)},
                option=orjson.OPT_INDENT_2,
                default=str,  # paths
            )
        )


if __name__ == "__main__":
    main()
