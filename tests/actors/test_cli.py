"""``veloz start --local`` on actors: the same protocol as ``--single-process``, and a clean shutdown.

Each run is a real subprocess with its own private Ray runtime. Every process it starts inherits a marker in its
environment, so the test can prove that nothing of that runtime is left behind after EOF, QUIT or a signal.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest

from .helpers import ROOT, wait_for

VELOZ = [sys.executable, "-m", "veloz_actors.interfaces.cli"]
COMMON = ["start", "--local", "--no-market", "--no-journal", "--tick-ms", "600000"]

SCRIPT = """\
ORDER BUY BTCUSDT 0.01 MARKET cid=m1
ORDER SELL BTCUSDT 0.005 MARKET
ORDER BUY BTCUSDT 0.01 59000 cid=l1
ORDER BUY BTCUSDT 0.01 59000 cid=l1
ORDER SELL ETHUSDT 0.5 2600 tif=POST_ONLY cid=p1
QUERY l1
QUERY OPEN
CANCEL l1
CANCEL l1
CANCEL nope
ORDER BUY BTCUSDT nan MARKET
ORDER BUY BTCUSDT 0.01 59000.001
ORDER BUY DOGEUSDT 1 MARKET
ORDER BUY BTCUSDT -1 MARKET
ORDER FLY BTCUSDT 1 MARKET
this is not a command
ORDER BUY BTCUSDT 0.000001 MARKET
ORDER BUY BTCUSDT 99999 MARKET
ORDER BUY ETHUSDT 0.2 MARKET tif=FOK
BALANCE
POSITIONS
"""


def _env(marker: str) -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"
    env["VELOZ_TEST_MARKER"] = marker
    env["PYTHONPATH"] = str(ROOT)
    env.pop("RAY_worker_niceness", None)  # the engine's runtime sets it itself (the test below checks that)
    return env


def _marked(marker: str) -> list[int]:
    """Processes whose environment carries ``marker`` (the veloz process and every Ray process it started)."""
    needle = f"VELOZ_TEST_MARKER={marker}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


_SESSION_CID = re.compile(r"^cli-[0-9a-z]+\.[0-9a-z]+-(\d+)$")  # generated: cli-<session start>.<pid>-<n> (base 36)


def _comparable(lines: list[bytes]) -> list[dict]:
    """Order, fill, account, position, query and error events without their timestamps (the start time in the
    session's generated client order ids included)."""
    out = []
    for line in lines:
        obj = orjson.loads(line)
        if obj["type"] in ("status", "market"):
            continue
        obj.pop("ts", None)
        for order in (obj, *obj.get("orders", ())):
            order.pop("history", None)
            if isinstance(order.get("cid"), str):
                order["cid"] = _SESSION_CID.sub(r"cli-\1", order["cid"])
        out.append(obj)
    return out


def _run(args: list[str], script: str, marker: str) -> list[bytes]:
    done = subprocess.run(
        [*VELOZ, *args], input=script.encode(), capture_output=True, cwd=ROOT, env=_env(marker), timeout=400
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout.splitlines()


def _start(args: list[str], marker: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*VELOZ, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=_env(marker),
    )


def test_actor_engine_gives_the_same_events_as_the_single_process_engine():
    marker = uuid.uuid4().hex
    single = _run([*COMMON, "--single-process"], SCRIPT, marker)
    actors = _run(COMMON, SCRIPT, marker)  # ends at EOF, without QUIT
    assert orjson.loads(actors[0])["engine"] == "actors"
    expected = _comparable(single)
    assert len(expected) > 20
    assert {e["type"] for e in expected} >= {"order_update", "fill", "account", "position", "order_state", "error"}
    assert _comparable(actors) == expected
    assert orjson.loads(actors[-1])["state"] == "stopped"
    wait_for(lambda: not _marked(marker), timeout=60, what="every Ray process of the run to exit")


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])  # QUIT: the replaying session below ends with it
def test_shutdown_leaves_no_ray_process_behind(how):
    marker = uuid.uuid4().hex
    proc = _start(COMMON, marker)
    try:
        first = proc.stdout.readline()  # the "started" status: the actors are up
        assert orjson.loads(first)["state"] == "started", proc.stderr.read().decode()[-2000:]
        proc.stdin.write(b"ORDER BUY BTCUSDT 0.01 MARKET cid=s1\nSTATUS\n")
        if how == "QUIT":
            proc.stdin.write(b"QUIT\n")
        proc.stdin.flush()
        lines = [orjson.loads(proc.stdout.readline())]  # accepted, account, fill, filled, position, account, status
        while lines[-1]["type"] != "status" and len(lines) < 20:
            lines.append(orjson.loads(proc.stdout.readline()))
        assert any(line["type"] == "fill" and line["cid"] == "s1" for line in lines)
        status = lines[-1]
        assert status["type"] == "status" and all(a["alive"] for a in status["actors"].values())
        # Ray would start them at nice 15, and any other work on the machine would starve the engine
        assert {
            name: os.getpriority(os.PRIO_PROCESS, a["pid"]) for name, a in status["actors"].items()
        } == dict.fromkeys(status["actors"], 0)
        if how != "QUIT":
            proc.send_signal(getattr(signal, how))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert orjson.loads(out.splitlines()[-1])["state"] == "stopped"
    wait_for(lambda: not _marked(marker), timeout=60, what=f"every Ray process to exit after {how}")


def test_a_replaying_session_prints_the_recorded_market_and_still_trades(shared_data):
    from veloz_actors.data.loaders import load_market_events
    from veloz_actors.messages import BookTop, Trade

    capture = shared_data / "ticks_l2" / "binance_spot_btcusdt_20230405_ws.txt.gz"
    events = load_market_events(capture)
    recorded = [e for e in events if type(e) in (BookTop, Trade)]
    marker = uuid.uuid4().hex
    replaying = [arg for arg in COMMON if arg != "--no-market"] + ["--replay", str(capture), "--replay-speed", "0"]
    proc = _start(replaying, marker)
    # stdout and stderr are read on threads, so an event that never comes fails the test instead of hanging it
    stdout: queue.Queue[bytes | None] = queue.Queue()
    errors: list[bytes] = []

    def read_stdout() -> None:
        for line in proc.stdout:
            stdout.put(line)
        stdout.put(None)

    readers = [
        threading.Thread(target=read_stdout, daemon=True),
        threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        first = stdout.get(timeout=300)  # a new runtime and every actor (a busy machine slows both)
        assert first is not None and orjson.loads(first)["state"] == "started"
        printed: list[dict] = []
        deadline = time.monotonic() + 120
        while len(printed) < len(recorded):  # the simulated market's quotes come through too: keep the recorded ones
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{len(printed)} of the {len(recorded)} recorded tops and trades printed in 120 s"
            try:
                line = stdout.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, f"the session ended after {len(printed)} of {len(recorded)} recorded events"
            obj = orjson.loads(line)
            if obj["type"] == "market" and obj["ts"] <= recorded[-1].ts_recv:
                printed.append(obj)
        proc.stdin.write(b"ORDER BUY BTCUSDT 0.01 MARKET cid=r1\nSTATUS\n")
        proc.stdin.flush()
        answered: list[bytes] = []
        while not answered or "actors" not in (status := orjson.loads(answered[-1])) or status["type"] != "status":
            line = stdout.get(timeout=120)  # the market's lines, the order's events, then the STATUS answer
            assert line is not None, b"".join(answered).decode()[-2000:]
            answered.append(line)
        assert all(a["alive"] for a in status["actors"].values())
        # Ray would start them at nice 15, and any other work on the machine would starve the engine
        assert {
            name: os.getpriority(os.PRIO_PROCESS, a["pid"]) for name, a in status["actors"].items()
        } == dict.fromkeys(status["actors"], 0)
        proc.stdin.write(b"QUIT\n")
        proc.stdin.flush()
        proc.wait(timeout=60)
        for reader in readers:
            reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, b"".join(errors).decode()[-2000:]
    rest: list[bytes] = []
    while (line := stdout.get_nowait()) is not None:
        rest.append(line)
    assert [(p["kind"], p["ts"]) for p in printed] == [
        ("book_top" if type(e) is BookTop else "trade", e.ts_recv) for e in recorded
    ]
    lines = [orjson.loads(line) for line in answered + rest]
    assert any(o["type"] == "fill" and o["cid"] == "r1" for o in lines)
    assert status["replay"]["path"] == str(capture) and status["replay"]["total"] == len(events)
    assert lines[-1]["type"] == "status" and lines[-1]["state"] == "stopped"  # QUIT stops the engine cleanly
    wait_for(lambda: not _marked(marker), timeout=60, what="every Ray process of the run to exit")
