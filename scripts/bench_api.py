"""Order latency through the HTTP API against the stdio protocol, and API throughput while 20 WebSocket clients watch.

    .venv/bin/python scripts/bench_api.py [--orders 1000] [--block 100] [--threads 4] [--watchers 20]

One engine, ``veloz start --local --single-process --no-journal --no-market --json --http 127.0.0.1:0`` as a
subprocess (the order rate limit lifted in a copy of the shipped config), serves both front ends at once:

- **latency**: the same ``--orders`` orders (a quarter each: market buy, market sell, a limit 3 % under the market
  that rests, an IOC at that price that expires), one at a time from one client, by stdio (write the ORDER line, time
  until its first answer line, which the engine writes together with the rest of the answer) and by REST (a
  keep-alive ``POST /api/v1/orders``, time until the whole JSON answer is read). The two alternate in blocks of
  ``--block`` orders so that a busy machine slows both alike.
- **throughput**: ``--orders`` orders from ``--threads`` REST clients, first alone, then while ``--watchers``
  WebSocket clients (in a separate process, so their parsing does not share this process's GIL) read the stream;
  the watchers must all reach the last event, and their gap messages are counted.

The figures are those of this machine at the time of the run: run it on a quiet machine and compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "engine.yaml"


def _config(folder: Path) -> Path:
    data = yaml.safe_load(CONFIG.read_text())
    data["engine"]["risk"].update({"orders_per_second": 1_000_000, "burst": 1_000_000})
    path = folder / "engine.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class Engine:
    """The ``veloz start`` subprocess: stdio lines in and out, and the API's URL and token from its stderr."""

    def __init__(self, folder: Path) -> None:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        env.pop("VELOZ_API_TOKEN", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "veloz_actors.interfaces.cli", "start", "--local", "--single-process",
             "--no-journal", "--no-market", "--json", "--config", str(_config(folder)), "--http", "127.0.0.1:0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=folder, env=env,
        )  # fmt: skip
        self.url = self.token = ""
        deadline = time.monotonic() + 60
        assert self.process.stderr is not None
        while time.monotonic() < deadline:
            line = self.process.stderr.readline().decode()
            if line.startswith("api: "):
                self.url = line.split()[1].split("/?token=")[0]
                self.token = line.split("/?token=")[1].split()[0]
                break
            if not line and self.process.poll() is not None:
                raise SystemExit(f"the engine stopped: {self.process.returncode}")
        threading.Thread(target=lambda: self.process.stderr.read(), daemon=True).start()  # type: ignore[union-attr]
        self.host, self.port = self.url.split("//")[1].rsplit(":", 1)
        # stdout carries every event (the REST orders' too): read it all the time, or the pipe fills and the engine
        # blocks writing to it
        self._marker: bytes | None = None
        self._seen = threading.Event()
        self._seen_at = 0.0
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for line in stdout:
            read_at = time.perf_counter()
            marker = self._marker
            if marker is not None and marker in line:
                self._marker = None
                self._seen_at = read_at
                json.loads(line)
                self._seen.set()

    def stdio_order(self, line: str, cid: str) -> float:
        """Write one ORDER line; seconds until its first answer line was read."""
        stdin = self.process.stdin
        assert stdin is not None
        self._seen.clear()
        self._marker = f'"cid":"{cid}"'.encode()
        start = time.perf_counter()
        stdin.write(line.encode() + b"\n")
        stdin.flush()
        if not self._seen.wait(60):
            raise SystemExit(f"no answer to {line!r}")
        return self._seen_at - start

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"QUIT\n")
        self.process.stdin.flush()
        self.process.stdin.close()
        self.process.wait(60)


class Rest:
    def __init__(self, engine: Engine) -> None:
        self.conn = http.client.HTTPConnection(engine.host, int(engine.port), timeout=60)
        self.conn.connect()
        # http.client writes the headers and the body in two sends: without TCP_NODELAY, Nagle's algorithm holds the
        # body until the server's delayed ACK (about 40 ms). Browsers and curl send a request in one go.
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.headers = {"Authorization": f"Bearer {engine.token}", "Content-Type": "application/json"}

    def order(self, body: dict[str, Any]) -> tuple[float, int]:
        start = time.perf_counter()
        self.conn.request("POST", "/api/v1/orders", body=json.dumps(body), headers=self.headers)
        response = self.conn.getresponse()
        payload = response.read()
        elapsed = time.perf_counter() - start
        json.loads(payload)
        return elapsed, response.status

    def get(self, path: str) -> Any:
        self.conn.request("GET", path, headers=self.headers)
        return json.loads(self.conn.getresponse().read())


def _orders(count: int, prefix: str, far: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        symbol = "BTCUSDT" if i % 8 < 4 else "ETHUSDT"
        body: dict[str, Any] = {"symbol": symbol, "qty": "0.001" if symbol == "BTCUSDT" else "0.01",
                                "cid": f"{prefix}-{i}"}  # fmt: skip
        kind = i % 4
        body["side"] = "SELL" if kind == 1 else "BUY"
        if kind >= 2:
            body["price"] = far[symbol]
            body["tif"] = "GTC" if kind == 2 else "IOC"
        out.append(body)
    return out


def _line(body: dict[str, Any]) -> str:
    price = body.get("price", "MARKET")
    return f"ORDER {body['side']} {body['symbol']} {body['qty']} {price} tif={body.get('tif', 'GTC')} cid={body['cid']}"


def _q(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3


def _far(rest: Rest) -> dict[str, str]:
    refs = rest.get("/api/v1/status")["reference_prices"]
    return {s: str((Decimal(p) * Decimal("0.97")).quantize(Decimal("0.01"), ROUND_FLOOR)) for s, p in refs.items()}


def latency(engine: Engine, orders: int, block: int) -> dict[str, Any]:
    rest = Rest(engine)
    far = _far(rest)
    stdio_orders, rest_orders = _orders(orders, "s", far), _orders(orders, "r", far)
    for body in _orders(50, "warm-s", far):
        engine.stdio_order(_line(body), body["cid"])
    for body in _orders(50, "warm-r", far):
        rest.order(body)
    stdio_times: list[float] = []
    rest_times: list[float] = []
    statuses: dict[int, int] = {}
    for start in range(0, orders, block):
        for body in stdio_orders[start : start + block]:
            stdio_times.append(engine.stdio_order(_line(body), body["cid"]))
        for body in rest_orders[start : start + block]:
            elapsed, status = rest.order(body)
            rest_times.append(elapsed)
            statuses[status] = statuses.get(status, 0) + 1
    return {"stdio": stdio_times, "rest": rest_times, "statuses": statuses}


def throughput(engine: Engine, orders: int, threads: int, prefix: str) -> dict[str, Any]:
    far = _far(Rest(engine))
    bodies = _orders(orders, prefix, far)
    statuses: list[int] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        rest = Rest(engine)
        for body in bodies[worker::threads]:
            _, status = rest.order(body)
            with lock:
                statuses.append(status)

    workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "orders_per_second": orders / seconds, "answered": len(statuses),
            "accepted": statuses.count(201)}  # fmt: skip


def _watch(url: str, token: str, count: int, ready: Any, results: Any, stop: Any) -> None:
    """The watchers' process: ``count`` asyncio WebSocket clients; each reports (events, gaps, last seq)."""
    import websockets.asyncio.client

    async def one(index: int) -> None:
        events = gaps = 0
        last = -1
        async with websockets.asyncio.client.connect(f"{url.replace('http', 'ws')}/api/v1/stream?token={token}",
                                                     max_size=1 << 24) as ws:  # fmt: skip
            first = json.loads(await ws.recv())
            last = first["seq"]
            ready.put(index)
            while not stop.is_set():
                try:
                    message = await asyncio.wait_for(ws.recv(), timeout=0.2)
                except TimeoutError:
                    continue
                parsed = json.loads(message)
                for obj in parsed if isinstance(parsed, list) else [parsed]:
                    if obj.get("type") == "gap":
                        gaps += 1
                    elif "seq" in obj:
                        last = obj["seq"]
                        events += obj.get("type") != "snapshot"
                results[index] = (events, gaps, last)
        results[index] = (events, gaps, last)

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(count)))

    asyncio.run(main())


def with_watchers(engine: Engine, orders: int, threads: int, watchers: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    manager = context.Manager()
    ready, results, stop = manager.Queue(), manager.dict(), manager.Event()
    process = context.Process(target=_watch, args=(engine.url, engine.token, watchers, ready, results, stop))
    process.start()
    for _ in range(watchers):
        ready.get(timeout=60)
    seq_before = Rest(engine).get("/api/v1/health")["seq"]
    figures = throughput(engine, orders, threads, "w")
    rest = Rest(engine)
    final = rest.get("/api/v1/health")["seq"]
    start = time.perf_counter()
    while time.perf_counter() - start < 120:
        values = list(results.values())
        if len(values) == watchers and all(v[2] >= final for v in values):
            break
        time.sleep(0.05)
    caught_up = time.perf_counter() - start
    values = list(results.values())
    stop.set()
    process.join(30)
    figures.update(
        watchers=watchers,
        events_each=statistics.median(v[0] for v in values),
        gaps=sum(v[1] for v in values),
        all_reached_last=all(v[2] >= final for v in values),
        catch_up_seconds=caught_up,
        events_published=final - seq_before,
        dropped=rest.get("/api/v1/status")["api"]["dropped"],
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--watchers", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(Path(tmp))
        try:
            lat = latency(engine, args.orders, args.block)
            alone = throughput(engine, args.orders, args.threads, "t")
            watched = with_watchers(engine, args.orders, args.threads, args.watchers)
        finally:
            engine.close()
    stdio, rest = lat["stdio"], lat["rest"]
    s50, s99, r50, r99 = _q(stdio, 0.5), _q(stdio, 0.99), _q(rest, 0.5), _q(rest, 0.99)
    print(f"order latency, {args.orders} orders each, one client, sequential (REST statuses {lat['statuses']})")
    print("| path | p50 ms | p99 ms | mean ms |\n| --- | --- | --- | --- |")
    print(f"| stdio (ORDER line -> first answer line) | {s50:.3f} | {s99:.3f} | {statistics.mean(stdio) * 1e3:.3f} |")
    print(f"| REST (POST /api/v1/orders, keep-alive) | {r50:.3f} | {r99:.3f} | {statistics.mean(rest) * 1e3:.3f} |")
    print(f"| REST / stdio | {r50 / s50:.2f}x | {r99 / s99:.2f}x | |")
    print()
    print(f"throughput, {args.orders} orders from {args.threads} REST clients")
    print("| | orders/s | answered | accepted | watchers | events each | gaps | all reached the last event |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| alone | {alone['orders_per_second']:.0f} | {alone['answered']} | {alone['accepted']} | 0 | | | |")
    print(
        f"| with watchers | {watched['orders_per_second']:.0f} | {watched['answered']} | {watched['accepted']} | "
        f"{watched['watchers']} | {watched['events_each']:.0f} | {watched['gaps']} | {watched['all_reached_last']} "
        f"(after {watched['catch_up_seconds']:.2f} s) |"
    )
    print(f"events published meanwhile: {watched['events_published']}; server's dropped counter: {watched['dropped']}")


if __name__ == "__main__":
    main()
