"""What each extra actor on the order path costs: the measurement behind the OMS owning risk, funds and matching.

    .venv/bin/python scripts/bench_order_path.py [--calls 2000] [--idle 3]

ARCHITECTURE.md draws the order path as client -> OMS -> risk -> account -> order book, four synchronous actors in a
row. This script measures that shape with empty actors (each stage only forwards the message, so the figures are the
floor of Ray's cost, before any trading logic), in a private local runtime:

- **plain actors**: synchronous actors (``max_task_retries=0``, ``num_cpus=0``, what an ordered stream needs); each
  stage calls the next and waits for its answer. Depth 1 is the engine as built (client -> OMS); depth 4 is the
  diagram.
- **compiled graph** (Ray Compiled Graphs, shared-memory channels): the same chain, compiled once; then the CPU each
  actor burns while the graph sits idle, since an engine waits for orders most of the time.

The round trips are measured from this process, one call at a time, after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private runtime of this process only

import ray  # noqa: E402
from ray.dag import InputNode  # noqa: E402


class Stage:
    """One stage of the order path: pass the message on to the next stage and return its answer."""

    def __init__(self, next_stage: Any = None) -> None:
        self.next_stage = next_stage

    def forward(self, message: Any) -> Any:
        if self.next_stage is None:
            return message
        return ray.get(self.next_stage.forward.remote(message))

    def echo(self, message: Any) -> Any:
        return message

    def pid(self) -> int:
        return os.getpid()


_ORDERED = {"num_cpus": 0, "max_task_retries": 0}


def _quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1e3, ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3


def _time(call: Any, calls: int) -> tuple[float, float]:
    for _ in range(min(200, calls)):
        call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return _quantiles(samples)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _idle_cpu(pids: list[int], idle: float) -> float:
    """Mean share of a core that each process burns over ``idle`` seconds."""
    before = [_cpu_seconds(pid) for pid in pids]
    time.sleep(idle)
    return sum(_cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)) / len(pids) / idle


def plain_chain(depth: int, calls: int, idle: float) -> tuple[float, float, float]:
    actor_class = ray.remote(Stage).options(**_ORDERED)
    head = None
    actors = []
    for _ in range(depth):
        head = actor_class.remote(head)
        actors.append(head)
    p50, p99 = _time(lambda: ray.get(head.forward.remote(1), timeout=30), calls)
    pids = ray.get([a.pid.remote() for a in actors], timeout=60)
    return p50, p99, _idle_cpu(pids, idle)


def compiled_chain(depth: int, calls: int, idle: float) -> tuple[float, float, float]:
    actor_class = ray.remote(Stage).options(**_ORDERED)
    actors = [actor_class.remote() for _ in range(depth)]
    pids = ray.get([a.pid.remote() for a in actors], timeout=60)
    with InputNode() as message:
        node = message
        for actor in actors:
            node = actor.echo.bind(node)
    dag = node.experimental_compile()
    try:
        p50, p99 = _time(lambda: ray.get(dag.execute(1), timeout=30), calls)
        cpu = _idle_cpu(pids, idle)
    finally:
        dag.teardown()
    return p50, p99, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed round trips per shape")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds to watch an idle compiled graph")
    args = parser.parse_args()
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
    try:
        print(f"Ray {ray.__version__}, {os.cpu_count()} cores, {args.calls} round trips per shape\n")
        print("| shape | actors on the path | p50 ms | p99 ms | idle CPU per actor (share of a core) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        names = {1: "client -> OMS (as built)", 4: "client -> OMS -> risk -> account -> book (diagram)"}
        for depth in (1, 2, 3, 4):
            p50, p99, cpu = plain_chain(depth, args.calls, args.idle)
            print(f"| plain actors, {names.get(depth, 'chain')} | {depth} | {p50:.2f} | {p99:.2f} | {cpu:.0%} |")
        for depth in (1, 4):
            p50, p99, cpu = compiled_chain(depth, args.calls, args.idle)
            print(f"| compiled graph, chain | {depth} | {p50:.2f} | {p99:.2f} | {cpu:.0%} |")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
