"""``veloz start --local --venue binance --paper`` as a real subprocess against the local Binance server, on the
single-process engine and on the actor engine: the stdio protocol works unchanged, orders fill against the served
book, STATUS shows the venue's connection."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from veloz_actors.testing.binance_server import BinanceTestServer

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "engine.yaml"
BTC = "ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"


class Session:
    """A ``veloz start`` subprocess driven line by line."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_DEDUP_LOGS": "0"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "veloz_actors.interfaces.cli", "start", "--local", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(orjson.loads(line))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait(self, predicate: Any, timeout: float = 60.0, what: str = "a line") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                obj = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(obj)
            if predicate(obj):
                return obj
        err = self.proc.stderr.read().decode() if self.proc.poll() is not None and self.proc.stderr else ""
        raise AssertionError(f"no {what} within {timeout} s; last lines {self.seen[-5:]}; stderr {err[-2000:]}")

    def close(self) -> int:
        if self.proc.poll() is None:
            self.send("QUIT")
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(timeout=10)


def run_start(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``veloz start --local ARGS`` to its end: a start that is refused, or a session that quits at once."""
    return subprocess.run(
        [sys.executable, "-m", "veloz_actors.interfaces.cli", "start", "--local", *args],
        input="QUIT\n", capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False,
    )  # fmt: skip


def _paper_args(server: BinanceTestServer, engine: str, journal: Path) -> list[str]:
    """``veloz start --local`` arguments of a paper session on BTCUSDT against ``server``, on ``engine``."""
    args = ["--venue", "binance", "--paper", "--symbols", "BTCUSDT", "--rest-url", server.rest_url,
            "--stream-url", server.stream_url, "--no-market", "--config", str(CONFIG), "--journal", str(journal)]  # fmt: skip
    return [*args, "--single-process"] if engine == "single-process" else args


@pytest.mark.parametrize("engine", ["single-process", "actors"])
def test_paper_session_over_stdio(engine, shared_data, tmp_path):
    with BinanceTestServer([shared_data / BTC], paused=True) as server:
        args = _paper_args(server, engine, tmp_path / "run" / "engine.journal")
        session = Session(*args)
        try:
            session.wait(lambda o: o.get("state") == "started", timeout=300, what="the start line")
            assert server.wait_connections(1, timeout=60)
            server.publish(500)
            session.wait(lambda o: o.get("event") == "venue_resynced", what="the book's sync")
            book = server.book("BTCUSDT")
            session.send("ORDER BUY BTCUSDT 0.01 MARKET cid=p1")
            fill = session.wait(lambda o: o.get("type") == "fill" and o.get("cid") == "p1", what="the fill")
            assert fill["price"] == f"{book[2][0][0] / 10**8:.2f}" and fill["liquidity"] == "TAKER"
            session.send("ORDER BUY BTCUSDT 0.5 100 cid=p2")  # far from the live market: outside the price band
            rejected = session.wait(lambda o: o.get("cid") == "p2", what="the rejection")
            assert rejected["status"] == "REJECTED" and rejected["reason"] == "PRICE_BAND", rejected
            session.send("BALANCE")
            balance = session.wait(lambda o: o.get("type") == "account", what="the balance")
            assert balance["balances"]["BTC"]["free"] == "1.01"
            session.send("STATUS")
            status = session.wait(lambda o: o.get("type") == "status" and "market_data" in o, what="STATUS")
            market = status["market_data"]
            assert market["state"] == "connected" and market["symbols"]["BTCUSDT"]["synced"]
            assert {"clock_offset_ms", "last_event_age_ms", "resyncs", "reconnects"} <= set(market)
        finally:
            code = session.close()
        assert code == 0
        assert (tmp_path / "run" / "exchange-info.json").is_file()


@pytest.mark.parametrize("engine", ["single-process", "actors"])
def test_paper_restart_after_binance_changed_a_symbols_rules_is_refused_naming_them(engine, shared_data, tmp_path):
    """A paper journal replays with the instruments it was started with, so a restart after Binance changed a
    symbol's filters is refused naming them, as a live restart is (before: an engine-config mismatch that named
    nothing, and on the actor engine a dead OMS actor's traceback); with the rules back as they were it recovers."""
    with BinanceTestServer([shared_data / BTC], paused=True) as server:
        args = _paper_args(server, engine, tmp_path / "run" / "engine.journal")
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        first = run_start(args, env)
        assert first.returncode == 0, first.stderr[-2000:]
        server.faults.change_symbol("BTCUSDT", filters={"PRICE_FILTER": {"tickSize": "0.10000000"}})
        stale = run_start(args, env)
        assert stale.returncode != 0 and "Traceback" not in stale.stderr, stale.stderr[-2000:]
        assert "Binance changed the trading rules since" in stale.stderr
        assert "(BTCUSDT: PRICE_FILTER tickSize 0.01 -> 0.1)" in stale.stderr and "start a new journal" in stale.stderr
        server.faults.change_symbol("BTCUSDT", filters={"PRICE_FILTER": {"tickSize": "0.01000000"}})
        again = run_start(args, env)
        assert again.returncode == 0, again.stderr[-2000:]


def test_a_paper_restart_fills_nothing_against_the_book_its_journal_ended_with(shared_data, tmp_path):
    """The journal ends with a synced book; the market moves on while the engine is down. Restarted, the recovered
    paper venue filled a market order at that old book's prices until the new connection's first snapshot (here a
    long time coming). It now has no book until then: the order expires NO_LIQUIDITY."""
    with BinanceTestServer([shared_data / BTC], paused=True) as server:
        args = _paper_args(server, "single-process", tmp_path / "run" / "engine.journal")
        session = Session(*args)
        try:
            session.wait(lambda o: o.get("state") == "started", timeout=300, what="the start line")
            assert server.wait_connections(1, timeout=60)
            server.publish(500)
            session.wait(lambda o: o.get("event") == "venue_resynced", what="the book's sync")
        finally:
            assert session.close() == 0
        server.publish(5000)  # the market moves on meanwhile
        server.faults.slow_depth(60.0)  # the next depth snapshot is a long time coming
        session = Session(*args)
        try:
            session.wait(lambda o: o.get("state") == "started", timeout=300, what="the restart's start line")
            session.send("ORDER BUY BTCUSDT 0.01 MARKET cid=r1")
            done = ("FILLED", "EXPIRED", "REJECTED")
            line = session.wait(lambda o: o.get("cid") == "r1" and o.get("status") in done, what="the order's end")
            assert (line["status"], line.get("reason")) == ("EXPIRED", "NO_LIQUIDITY"), line
        finally:
            session.close()
