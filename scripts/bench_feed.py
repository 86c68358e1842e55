"""Benchmark live Binance market data through the actor engine, side by side with a recorded replay, in one run.

    .venv/bin/python scripts/bench_feed.py [--repeat 3] [--latency-speed 30] [--json out.json]

The local Binance server (``veloz_actors.testing.binance_server``) serves the recorded spot captures of BTCUSDT and
ETHUSDT (75,000 events after their REST snapshots) over real sockets; a paper-trading engine on the actor engine
(``venue: binance, mode: paper``) consumes them: the market-data client on the feed actor's loop thread, the venue
actors (each paper venue's book journaled and kept), the event bus, and a subscriber polling from this process.

- **Live, events/s**: the server publishes as fast as the engine takes them (speed 0, with TCP backpressure); the
  rate is the market events the subscriber received (depth diffs, tops, trades) over the time from the server's first
  send to the subscriber's last receipt. Median of ``--repeat`` runs, each on a fresh engine and server. The
  subscriber makes every event's message; a second set of runs has it take the columnar batches as they come
  (``poll_raw``, the API a columnar consumer uses), counting their rows.
- **Recorded replay, events/s**: the same BTCUSDT capture replayed by the feed actor (``actors.replay``, speed 0,
  batches of 1,000) through the same venue actors, bus and subscriber: the path a recorded file takes. The live rate
  over one symbol is measured too, so the two compare like for like.
- **Latency, server send -> subscriber**: the server paced at ``--latency-speed`` x real time (a steady load, not a
  queue building up); each event's send time is taken inside the server (same process, same clock) and matched to
  its receipt by (symbol, update id / trade id). Also the client's own exchange -> receive and receive -> publish
  latencies from STATUS.
- **Floor**: a bare reader in another process (aiohttp + orjson, nothing else) on the same stream from the same server:
  what Python's socket and JSON handling alone cost here, the ceiling of any feed that parses in one process.
- **Memory**: resident set of every actor process of the engine at the end of a live run.

Journals are on (``group`` durability, in a temporary directory); the risk actor is off (no orders here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ticks_l2"
CAPTURES = [DATA / "binance_spot_btcusdt_20240808_ws.txt.gz", DATA / "binance_spot_ethusdt_20240808_ws.txt.gz"]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private runtime of this process only

import ray  # noqa: E402

from veloz_actors.actors.api import start_local  # noqa: E402
from veloz_actors.config import load_engine_config, with_venue  # noqa: E402
from veloz_actors.core.kernel import tune_gc  # noqa: E402
from veloz_actors.core.market_batch import DELTA, KIND, TOP, TRADE, MarketBatch  # noqa: E402
from veloz_actors.messages import BookDelta, BookTop, Trade  # noqa: E402
from veloz_actors.testing import binance_server  # noqa: E402
from veloz_actors.testing.binance_server import BinanceTestServer  # noqa: E402
from veloz_actors.venues.binance.market_data import MarketDataSettings  # noqa: E402

_KINDS = ["BookDelta", "BookTop", "Trade"]


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _key(event: Any) -> tuple[str, int, int] | None:
    kind = type(event)
    if kind is BookDelta:
        return None if event.is_snapshot else (event.symbol, 0, event.last_update_id)
    if kind is BookTop:
        return (event.symbol, 1, event.update_id)
    if kind is Trade:
        return (event.symbol, 2, event.trade_id)
    return None


class SendClock:
    """Records the server's send time of every published event, keyed like :func:`_key` (the server is in this
    process: its publisher thread and this one read the same clock)."""

    def __init__(self) -> None:
        self.sent: dict[tuple[str, int, int], int] = {}
        self._original = binance_server._Market.publish_one

    def __enter__(self) -> SendClock:
        sent = self.sent
        original = self._original

        def publish_one(market: Any) -> None:
            ev = market.events[market.pos]
            if ev.kind == binance_server._DEPTH:
                key = (ev.symbol, 0, ev.delta.last_update_id)
            elif ev.kind == binance_server._TICKER:
                key = (ev.symbol, 1, ev.ticker[0])
            else:
                key = (ev.symbol, 2, ev.trade[0])
            sent[key] = time.time_ns()
            original(market)

        binance_server._Market.publish_one = publish_one  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        binance_server._Market.publish_one = self._original  # type: ignore[method-assign]


def _config(server: BinanceTestServer, symbols: list[str], **actors: Any) -> Any:
    config = load_engine_config(ROOT / "configs" / "engine.yaml")
    config = config.model_copy(update={"actors": {"risk": False, "subscriber_queue": 1_000_000, **actors}})
    return with_venue(
        config, kind="binance", mode="paper", symbols=symbols, rest_url=server.rest_url, stream_url=server.stream_url
    )


_SNAPSHOT = 5  # a DELTA row's snapshot flag (the row layout of veloz_actors/core/market_batch.py)


def _market_rows(batch: MarketBatch) -> int:
    """A columnar batch's market events as :func:`_key` counts them: tops, trades, and diffs other than snapshots."""
    rows = batch.rows
    kind = rows[:, KIND]
    return int(((kind == TOP) | (kind == TRADE) | ((kind == DELTA) & (rows[:, _SNAPSHOT] == 0))).sum())


def _drain(
    subscription: Any, expected: int, idle: float = 5.0, *, columnar: bool = False
) -> tuple[int, int, list[tuple[Any, int]]]:
    """Poll until ``expected`` market events arrived (or nothing came for ``idle`` s); returns (count, last receipt ns,
    [(event, receipt ns)]). ``columnar``: take the batches as they come (``poll_raw``) and count their rows, making
    no message (nothing is listed then)."""
    got: list[tuple[Any, int]] = []
    count = 0
    last = time.time_ns()
    quiet_since = time.monotonic()
    while count < expected:
        items = subscription.poll_raw(wait=0.05) if columnar else subscription.poll(wait=0.05)
        now = time.time_ns()
        if items:
            quiet_since = time.monotonic()
            for item in items:
                if type(item) is MarketBatch:
                    count += _market_rows(item)
                elif _key(item) is not None:
                    if not columnar:
                        got.append((item, now))
                    count += 1
            last = now
        elif time.monotonic() - quiet_since > idle:
            break
    return count, last, got


def _actor_pids(engine: Any) -> dict[str, int]:
    pids = {}
    for name in ("feed", "bus", "oms", "account", *[f"venue:{s}" for s in engine.spec.shards]):
        try:
            pids[name] = ray.get(engine.actor(name).ping.remote(), timeout=30)[0]
        except Exception:  # noqa: BLE001 - an actor this layout does not have
            continue
    pids["driver+server"] = os.getpid()
    return pids


def _cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def live_rate(
    captures: list[Path], symbols: list[str], journal_root: Path, *, columnar: bool = False
) -> dict[str, Any]:
    """Market events per second from the server's first send to the subscriber's last receipt; ``columnar``: the
    subscriber takes the batches as they come instead of making every event's message."""
    with SendClock() as clock, BinanceTestServer(captures, speed=0, paused=True) as server:
        engine = start_local(_config(server, symbols), name=f"bench-live-{len(symbols)}", journal_dir=journal_root)
        try:
            subscription = engine.subscribe(kinds=_KINDS, max_queue=1_000_000)
            if not server.wait_connections(1, timeout=60):
                raise RuntimeError("the engine did not connect to the local server")
            deadline = time.monotonic() + 60
            while not all(
                (engine.status().get("market_data") or {}).get("symbols", {}).get(s, {}).get("synced") for s in symbols
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the books did not sync")
                time.sleep(0.05)
            subscription.poll()  # the snapshots' side effects
            pids = _actor_pids(engine)
            cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
            server.resume()
            count, last, _ = _drain(subscription, server.total, columnar=columnar)
            cpu = {name: round(_cpu_seconds(pid) - cpu_before[name], 2) for name, pid in pids.items()}
            first = min(clock.sent.values())
            seconds = (last - first) / 1e9
            status = engine.status()["market_data"]
            memory = sum(_rss_mib(pid) for name, pid in pids.items() if name != "driver+server")
            return {
                "cpu_seconds": cpu,
                "events": count,
                "served": server.total,
                "seconds": round(seconds, 3),
                "events_per_second": round(count / seconds),
                "memory_mib": round(memory),
                "resyncs": status["resyncs"]["total"],
                "bad_input": status["bad_input"],
            }
        finally:
            engine.shutdown()


_FLOOR_READER = """
import asyncio, sys, time
import aiohttp, orjson

count, last = 0, 0

async def read(ws, expected):
    global count, last
    while count < expected:
        msg = await ws.receive()
        if msg.type is aiohttp.WSMsgType.PING:
            await ws.pong(msg.data)
            continue
        if msg.type is not aiohttp.WSMsgType.TEXT and msg.type is not aiohttp.WSMsgType.BINARY:
            break
        frame = orjson.loads(msg.data)
        if "@kline" not in frame["stream"]:
            count += 1
            last = time.time_ns()

async def main(url, expected):
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(url, autoping=False, decode_text=False, max_msg_size=16 * 1024 * 1024)
        print("connected", flush=True)
        try:
            await asyncio.wait_for(read(ws, expected), 300)
        except TimeoutError:
            pass
    print(orjson.dumps({"count": count, "last": last}).decode(), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def reader_floor(captures: list[Path], symbols: list[str]) -> dict[str, Any]:
    """The floor of the live path's first process: another process reading the same combined stream from the same
    server with aiohttp and decoding each frame with orjson, and nothing else (no book, no batches, no Ray)."""
    import subprocess

    with SendClock() as clock, BinanceTestServer(captures, speed=0, paused=True) as server:
        settings = MarketDataSettings(rest_url=server.rest_url, stream_url=server.stream_url, symbols=tuple(symbols))
        streams = [name for symbol in settings.symbols for name in settings.streams(symbol)]  # the client's streams
        url = f"{server.stream_url}/stream?streams={'/'.join(streams)}"
        reader = subprocess.Popen(
            [sys.executable, "-c", _FLOOR_READER, url, str(server.total)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert reader.stdout is not None
            if reader.stdout.readline().strip() != "connected" or not server.wait_connections(1, timeout=60):
                raise RuntimeError("the floor reader did not connect to the local server")
            cpu_before = _cpu_seconds(reader.pid)
            server.resume()
            result = orjson.loads(reader.stdout.readline())
            cpu = _cpu_seconds(reader.pid) - cpu_before
        finally:
            reader.wait(timeout=60)
        seconds = (result["last"] - min(clock.sent.values())) / 1e9
        return {
            "events": result["count"],
            "served": server.total,
            "seconds": round(seconds, 3),
            "events_per_second": round(result["count"] / seconds),
            "reader_cpu_us_per_event": round(cpu / max(1, result["count"]) * 1e6, 2),
        }


def replay_rate(capture: Path, journal_root: Path) -> dict[str, Any]:
    config = load_engine_config(ROOT / "configs" / "engine.yaml")
    config = config.model_copy(
        update={
            "actors": {
                "risk": False,
                "subscriber_queue": 1_000_000,
                "replay": {"path": str(capture), "speed": 0, "batch": 1000},
            }
        }
    )
    from veloz_actors.data.loaders import load_market_events

    wanted = sum(1 for e in load_market_events(capture) if _key(e) is not None)
    engine = start_local(config, name="bench-replay", journal_dir=journal_root)
    try:
        subscription = engine.subscribe(kinds=_KINDS, max_queue=1_000_000)
        got: list[int] = []
        first = None
        count = 0
        quiet = time.monotonic()
        while count < wanted and time.monotonic() - quiet < 5:
            batch = subscription.poll(wait=0.05)
            if batch:
                now = time.time_ns()
                first = first or now
                n = sum(1 for e in batch if _key(e) is not None)
                count += n
                got.append(now)
                quiet = time.monotonic()
        seconds = (got[-1] - first) / 1e9 if got and first else float("nan")
        return {
            "events": count,
            "wanted": wanted,
            "seconds": round(seconds, 3),
            "events_per_second": round(count / seconds) if seconds else None,
            "note": "first to last receipt at the subscriber (the feed loads and parses the file first)",
        }
    finally:
        engine.shutdown()


def latency(captures: list[Path], symbols: list[str], speed: float, seconds: float, journal_root: Path) -> dict:
    with SendClock() as clock, BinanceTestServer(captures, speed=speed, paused=True) as server:
        engine = start_local(_config(server, symbols), name="bench-latency", journal_dir=journal_root)
        try:
            subscription = engine.subscribe(kinds=_KINDS, max_queue=1_000_000)
            server.wait_connections(1, timeout=60)
            time.sleep(2.0)  # the books sync
            subscription.poll()
            server.resume()
            deadline = time.monotonic() + seconds
            samples: list[float] = []
            while time.monotonic() < deadline:
                batch = subscription.poll(wait=0.02)
                now = time.time_ns()
                for event in batch:
                    key = _key(event)
                    sent = clock.sent.get(key) if key is not None else None
                    if sent is not None:
                        samples.append((now - sent) / 1e6)
            status = engine.status()["market_data"]
            samples.sort()
            return {
                "speed": speed,
                "events": len(samples),
                "events_per_second": round(len(samples) / seconds),
                "p50_ms": round(statistics.median(samples), 3),
                "p99_ms": round(samples[int(len(samples) * 0.99)], 3),
                "max_ms": round(samples[-1], 3),
                "client_latency_ms": status["latency_ms"],
            }
        finally:
            engine.shutdown()


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate, with every run's rate under ``all_runs``."""
    median = dict(sorted(runs, key=lambda r: r["events_per_second"] or 0)[len(runs) // 2])
    median["all_runs"] = [r["events_per_second"] for r in runs]
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-speed", type=float, default=30.0)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    tune_gc()  # as every engine process does: this one holds the server's captures and makes the subscriber's events
    ray.init(address="local", include_dashboard=False, logging_level="ERROR", namespace="veloz")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="veloz-bench-feed-") as tmp:
        root = Path(tmp)
        two = ["BTCUSDT", "ETHUSDT"]
        repeat = range(args.repeat)
        results["live_two_symbols"] = _median_run([live_rate(CAPTURES, two, root / f"live{i}.actors") for i in repeat])
        results["live_two_symbols_columnar"] = _median_run(
            [live_rate(CAPTURES, two, root / f"raw{i}.actors", columnar=True) for i in repeat]
        )
        results["live_btcusdt"] = _median_run(
            [live_rate(CAPTURES[:1], ["BTCUSDT"], root / f"one{i}.actors") for i in repeat]
        )
        results["replay_btcusdt"] = _median_run([replay_rate(CAPTURES[0], root / f"replay{i}.actors") for i in repeat])
        results["reader_floor"] = _median_run([reader_floor(CAPTURES, two) for _ in repeat])
        results["latency"] = latency(
            CAPTURES, ["BTCUSDT", "ETHUSDT"], args.latency_speed, args.latency_seconds, root / "lat.actors"
        )
    ray.shutdown()
    live, one, replay, lat = (
        results["live_two_symbols"],
        results["live_btcusdt"],
        results["replay_btcusdt"],
        results["latency"],
    )
    print(f"{'measure':58} {'value':>14}")
    print(f"{'live, 2 symbols: market events/s to a subscriber':58} {live['events_per_second']:>14,}")
    columnar = results["live_two_symbols_columnar"]
    print(f"{'  ... a subscriber taking the columnar batches (poll_raw)':58} {columnar['events_per_second']:>14,}")
    print(f"{'live, BTCUSDT: market events/s':58} {one['events_per_second']:>14,}")
    print(f"{'recorded replay, BTCUSDT: market events/s':58} {replay['events_per_second']:>14,}")
    ratio = one["events_per_second"] / replay["events_per_second"]
    print(f"{'live / replay (BTCUSDT)':58} {ratio:>14.2f}")
    floor = results["reader_floor"]
    print(f"{'floor: aiohttp + orjson reader alone, 2 symbols: events/s':58} {floor['events_per_second']:>14,}")
    print(f"{'  its CPU per event (us)':58} {floor['reader_cpu_us_per_event']:>14}")
    print(f"{'live (2 symbols) / floor':58} {live['events_per_second'] / floor['events_per_second']:>14.2f}")
    events = live["events"] or 1
    total_cpu = sum(live["cpu_seconds"].values())
    print(f"{'live: engine + server CPU per event, all processes (us)':58} {total_cpu / events * 1e6:>14.1f}")
    print(f"{'latency server send -> subscriber p50 (ms)':58} {lat['p50_ms']:>14}")
    print(f"{'latency server send -> subscriber p99 (ms)':58} {lat['p99_ms']:>14}")
    print(f"{'  (at events/s)':58} {lat['events_per_second']:>14,}")
    print(f"{'engine memory after a live run (MiB RSS, actors)':58} {live['memory_mib']:>14}")
    print("CPU seconds per process during the live 2-symbol run:", live["cpu_seconds"])
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
