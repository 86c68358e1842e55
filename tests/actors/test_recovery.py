"""Kill the OMS, the account and a book actor in the middle of a stream of orders: nothing is lost or doubled."""

from __future__ import annotations

from collections import Counter

import pytest
import ray

from veloz_actors.actors.api import start_local
from veloz_actors.venues.engine import replay
from veloz_actors.fixed import SCALE, format_decimal
from veloz_actors.messages import OrderFilled, Side

from .helpers import file_config, wait_for

pytestmark = pytest.mark.usefixtures("ray_runtime")

TERMINAL = {"FILLED", "CANCELLED", "REJECTED", "EXPIRED"}


def _commands(engine, count: int):
    """A deterministic mix: market buys and sells, resting limits, and cancels of those limits."""
    mid = engine.status()["reference_prices"]["BTCUSDT"]
    low = format_decimal(mid * 97 // 100 // 1_000_000 * 1_000_000)
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            out.append(engine.order_command("BTCUSDT", "BUY", "0.001", client_order_id=f"r-{i}"))
        elif kind == 1:
            out.append(engine.order_command("BTCUSDT", "SELL", "0.0005", client_order_id=f"r-{i}"))
        elif kind == 2:
            out.append(engine.order_command("BTCUSDT", "BUY", "0.001", low, client_order_id=f"r-{i}"))
        else:
            out.append(engine.order_command("BTCUSDT", "BUY", "0.001", low, client_order_id=f"r-{i}"))
    return out


def _drive(engine, commands, kill_at: dict[int, str]) -> list:
    """Send commands 20 at a time without waiting; kill an actor mid-batch; re-drive what failed, unchanged."""
    seen: list = []
    for start in range(0, len(commands), 20):
        batch = commands[start : start + 20]
        refs = [engine.submit_async(c) for c in batch]
        victim = kill_at.get(start)
        if victim is not None:
            ray.kill(engine.actor(victim), no_restart=False)
        for command, ref in zip(batch, refs, strict=True):
            try:
                seen.extend(ray.get(ref, timeout=60))
            except ray.exceptions.RayError:
                seen.extend(engine.submit(command))  # the very same message: applied at most once
            finally:
                engine.window.done()
        if start % 40 == 0:
            seen.extend(engine.tick())
        cancels = [c for c in batch if c.client_order_id.endswith(("3", "7"))]
        for c in cancels:
            seen.extend(engine.cancel_order(c.client_order_id))
    return seen


def test_killing_oms_account_and_a_book_mid_stream_loses_and_doubles_nothing(tmp_path):
    config = file_config()
    engine = start_local(config, name="recovery", journal_dir=tmp_path, durability="group")
    try:
        engine.tick()
        commands = _commands(engine, 240)
        seen = _drive(engine, commands, {40: "oms", 100: "account", 160: "book:BTCUSDT"})
        killed = ("oms", "account", "book:BTCUSDT")
        wait_for(
            lambda: (
                (s := engine.status()["actors"])
                and all(a["alive"] for a in s.values())
                and all(s[name]["restarts"] >= 1 for name in killed)
            ),
            what="the killed actors restarted (counted) and every actor alive",
        )
        orders = {o["client_order_id"]: o for o in engine.orders()}
        balances = engine.balances()
        totals = engine.totals()
        wait_for(lambda: engine.account_view() == balances, what="the account actor to match the OMS")
    finally:
        engine.shutdown()

    # every order in exactly one, consistent state
    for command in commands:
        order = orders[command.client_order_id]
        if order["status"] == "FILLED":
            assert order["filled_qty"] == order["qty"]
        elif order["status"] in ("ACCEPTED", "PARTIALLY_FILLED"):
            assert order["filled_qty"] < order["qty"]
        else:
            assert order["status"] in TERMINAL
    # the journal replayed from the start gives the authoritative fill stream: no fill doubled ...
    _, events = replay(tmp_path / "oms.journal")
    fills = [e for e in events if type(e) is OrderFilled and e.account_id == "main"]
    keys = Counter((f.symbol, f.trade_id, f.client_order_id) for f in fills)
    assert max(keys.values()) == 1
    # ... none lost: every fill the client saw is in it, and each order's fills add up to its filled quantity
    seen_fills = {(f.symbol, f.trade_id, f.client_order_id) for f in seen if type(f) is OrderFilled}
    assert seen_fills <= set(keys)
    filled = Counter()
    for f in fills:
        filled[f.client_order_id] += f.qty
    for cid, order in orders.items():
        assert filled[cid] == order["filled_qty"], cid
    # balances are exactly what the fills say
    exact = config.engine_config()
    initial = dict(exact.balances["main"])
    usdt, btc = initial["USDT"], initial["BTC"]
    for f in fills:
        notional = f.price * f.qty // SCALE
        if f.side is Side.BUY:
            usdt -= notional + f.fee
            btc += f.qty
        else:
            usdt += notional - f.fee
            btc -= f.qty
    assert sum(balances["USDT"]) == usdt
    assert sum(balances["BTC"]) == btc
    # and no money is created or destroyed: balances + fees == deposits, for every asset
    deposits = Counter()
    for assets in (*exact.balances.values(), exact.market_maker_balances):
        for asset, amount in assets.items():
            deposits[asset] += amount
    assert totals == dict(deposits)
