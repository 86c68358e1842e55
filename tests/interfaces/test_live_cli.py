"""``veloz start --local --single-process --venue binance --live`` as a real subprocess against the local Binance
server: what it refuses to start without, a session with real (local) orders, a restart that reconciles a fill made
while it was away, and no secret anywhere in what the session wrote (stdout, stderr, journal, order history)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from veloz_actors.testing.binance_server import BinanceTestServer

from .test_paper_cli import CONFIG, Session, run_start

BTC = "ticks_l2/binance_spot_btcusdt_20240808_ws.txt.gz"
KEY = "cliLive" + "Q" * 57
SECRET = "cli-live-secret-" + "Z" * 48


def _flags(server: BinanceTestServer, journal: Path) -> list[str]:
    return ["--single-process", "--venue", "binance", "--live", "--symbols", "BTCUSDT", "--rest-url", server.rest_url,
            "--stream-url", server.stream_url, "--ws-api-url", server.stream_url + "/ws-api/v3", "--no-market",
            "--config", str(CONFIG), "--journal", str(journal)]  # fmt: skip


@pytest.fixture
def server(shared_data):
    with BinanceTestServer([shared_data / BTC], paused=True) as running:
        running.add_account(KEY, hmac_secret=SECRET, balances={"USDT": "100000", "BTC": "1"})
        yield running


def test_live_refuses_without_flag_keys_journal_or_limits(server, tmp_path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BINANCE_")}
    keys = {**base, "BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET}
    journal = tmp_path / "run" / "live.journal"
    no_keys = run_start(_flags(server, journal), base)
    assert (
        no_keys.returncode != 0 and "live trading needs keys" in no_keys.stderr and "BINANCE_API_KEY" in no_keys.stderr
    )
    actors = run_start([f for f in _flags(server, journal) if f not in ("--single-process", "--journal", str(journal))]
                  + ["--no-journal"], keys)  # fmt: skip
    assert actors.returncode != 0 and "needs a journal" in actors.stderr
    no_journal = run_start([*_flags(server, journal)[:-2], "--no-journal"], keys)
    assert no_journal.returncode != 0 and "needs a journal" in no_journal.stderr
    both = run_start([*_flags(server, journal), "--paper"], keys)
    assert both.returncode != 0 and "not both" in both.stderr
    data = yaml.safe_load(CONFIG.read_text())
    data["engine"]["risk"]["max_position"]["BTCUSDT"] = "0.00"  # written as a decimal, still no limit
    loose = tmp_path / "loose.yaml"
    loose.write_text(yaml.safe_dump(data))
    flags = _flags(server, journal)
    flags[flags.index(str(CONFIG))] = str(loose)
    no_limits = run_start(flags, keys)
    assert no_limits.returncode != 0 and "risk.max_position.BTCUSDT" in no_limits.stderr
    # venue.trading with a typo: refused by the single-process engine too (it used to drop venue.trading, so a
    # recv window or order path set there was silently the default)
    data = yaml.safe_load(CONFIG.read_text())
    data["engine"].setdefault("venue", {})["trading"] = {"recv_window_msec": 2500}
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(data))
    flags[flags.index(str(loose))] = str(typo)
    mistyped = run_start(flags, keys)
    assert mistyped.returncode != 0 and "venue.trading: " in mistyped.stderr and "recv_window_msec" in mistyped.stderr
    for result in (no_keys, actors, no_journal, both, no_limits, mistyped):
        assert SECRET not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert not journal.exists()


@pytest.mark.parametrize(("mode", "engine"), [("--live", "single-process"), ("--paper", "actors")])
def test_a_start_with_a_symbol_binance_does_not_list_names_it(server, tmp_path, mode, engine) -> None:
    """One real and one unknown symbol configured: Binance refuses the list -1121 "Invalid symbol." without naming
    either (the start said just that); the start is refused naming the unknown one, before any engine starts."""
    journal = tmp_path / "run" / "live.journal"
    flags = _flags(server, journal)
    flags[flags.index("--live")] = mode
    flags[flags.index("BTCUSDT")] = "BTCUSDT,ETHUSDT"  # the config's symbols; this server lists BTCUSDT only
    if engine == "actors":
        flags.remove("--single-process")
    refused = run_start(flags, {**os.environ, "BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET})
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert "exchangeInfo has no symbol ETHUSDT (Binance does not list it" in refused.stderr
    assert "-1121" not in refused.stderr and SECRET not in refused.stdout + refused.stderr
    assert not journal.exists()


@pytest.mark.parametrize("engine", ["single-process", "actors"])
def test_live_session_restart_and_no_secret_anywhere(server, tmp_path, engine) -> None:
    """The same session on both engines (the actor engine trades through its live venue actor)."""
    journal = tmp_path / "run" / "live.journal"
    flags = _flags(server, journal)
    if engine == "actors":
        flags.remove("--single-process")
    written: list[str] = []
    # first session: a market order and a resting one (the keys come from the environment, as a user's shell gives them)
    os.environ.update({"BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET})
    try:
        session = Session(*flags)
        try:
            session.wait(lambda o: o.get("state") == "started", timeout=300, what="the start line")
            assert server.wait_connections(1, timeout=60)
            server.publish(200)
            # the book's sync (a reference price) and the reconciliation; the actor engine reconciles before the
            # session subscribes to the bus (stderr says so): its STATUS carries the summary instead
            wanted = ("venue_resynced", "venue_reconciled") if engine == "single-process" else ("venue_resynced",)
            if engine == "actors":
                started = next(o for o in session.seen if o.get("state") == "started")
                assert started["venues"]["binance"]["trading"]["reconcile"]["count"] >= 1
            for event in wanted:
                if not any(o.get("event") == event for o in session.seen):
                    session.wait(lambda o, event=event: o.get("event") == event, what=event)
            for _ in range(100):  # the actor engine's OMS takes its reference price from the feed a moment later
                session.send("STATUS")
                status = session.wait(lambda o: o.get("type") == "status" and "reference_prices" in o, what="STATUS")
                if status["reference_prices"].get("BTCUSDT"):
                    break
                time.sleep(0.1)
            session.send("ORDER BUY BTCUSDT 0.01 MARKET cid=l1")
            fill = session.wait(lambda o: o.get("type") == "fill" and o.get("cid") == "l1", what="the fill")
            assert fill["liquidity"] == "TAKER"
            _, bids, _ = server.book("BTCUSDT")
            session.send(f"ORDER BUY BTCUSDT 0.01 {(bids[0][0] - 2_000_000) / 10**8:.2f} cid=l2")
            session.wait(lambda o: o.get("cid") == "l2" and o.get("status") == "ACCEPTED", what="l2 accepted")
            session.send("STATUS")
            status = session.wait(lambda o: o.get("type") == "status" and "venues" in o, what="STATUS")
            trading = status["trading"] if engine == "single-process" else status["venues"]["binance"]["trading"]
            assert trading["ready"] is True and trading.get("not_ready") in (None, "")
        finally:
            assert session.close() == 0
            written += [str(session.seen), session.proc.stderr.read().decode() if session.proc.stderr else ""]
        # a restart whose config changed the risk limits is refused, naming the change (before: the journal's limits
        # were used and the edit silently ignored)
        data = yaml.safe_load(CONFIG.read_text())
        data["engine"]["risk"]["max_order_qty"]["BTCUSDT"] = "0.5"
        tighter = tmp_path / "tighter.yaml"
        tighter.write_text(yaml.safe_dump(data))
        changed = list(flags)
        changed[changed.index(str(CONFIG))] = str(tighter)
        refused = run_start(changed, {**os.environ})
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert "risk: the config's limits differ from those" in refused.stderr
        assert "max_order_qty {BTCUSDT: 0.5, ETHUSDT: 100} (journal: {BTCUSDT: 10, ETHUSDT: 100})" in refused.stderr
        # a restart after Binance changed the symbol's filters is refused, naming them (before: the journal's rules
        # were used unchecked, and orders went out that Binance refuses)
        server.faults.change_symbol("BTCUSDT", filters={"PRICE_FILTER": {"tickSize": "0.10000000"}})
        stale = run_start(flags, {**os.environ})
        assert stale.returncode != 0 and "Traceback" not in stale.stderr
        assert "Binance changed the trading rules since" in stale.stderr
        assert "(BTCUSDT: PRICE_FILTER tickSize 0.01 -> 0.1)" in stale.stderr and "start a new journal" in stale.stderr
        server.faults.change_symbol("BTCUSDT", filters={"PRICE_FILTER": {"tickSize": "0.01000000"}})
        # while it is away the market trades through l2's price
        server.publish(1500)
        session = Session(*flags)
        try:
            session.wait(lambda o: o.get("state") == "started", timeout=300, what="the restart")
            session.send("QUERY l2")
            state = session.wait(lambda o: o.get("type") == "order_state", what="l2's state")
            assert state["orders"][0]["status"] == "FILLED", state
            truth = {o["clientOrderId"]: o["status"] for o in server.orders(KEY)}
            assert truth == {"l1": "FILLED", "l2": "FILLED"}  # nothing sent twice
        finally:
            assert session.close() == 0
            written += [str(session.seen), session.proc.stderr.read().decode() if session.proc.stderr else ""]
    finally:
        for name in ("BINANCE_API_KEY", "BINANCE_API_SECRET"):
            os.environ.pop(name, None)
    for path in journal.parent.rglob("*"):
        if path.is_file():
            written.append(path.read_bytes().decode(errors="replace"))
    assert len(written) >= 5 and all(SECRET not in text for text in written)
