"""Kill the OMS, a venue actor, the account view and the risk actor in the middle of a stream of orders, one at a time
and together: every order ends in exactly one state the venue agrees with, no fill is lost or doubled, balances are
exactly what the fills say, no money is created or destroyed, and the risk actor's exposure equals the ledger's."""

from __future__ import annotations

from collections import Counter

import pytest
import ray

from veloz_actors.actors.api import start_local
from veloz_actors.core.journal import read_journal
from veloz_actors.core.kernel import replay_kernel
from veloz_actors.fixed import SCALE, format_decimal, parse_formatted
from veloz_actors.messages import (
    CancelOrder,
    OrderAccepted,
    OrderFilled,
    OrderRejected,
    RejectReason,
    Side,
    SubmitCancel,
    SubmitOrder,
    Tick,
    VenueOrderFilled,
)

from .helpers import file_config, wait_for

pytestmark = pytest.mark.usefixtures("ray_runtime")

TERMINAL = {"FILLED", "CANCELLED", "REJECTED", "EXPIRED"}
RESTING = {"ACCEPTED", "PARTIALLY_FILLED"}


def _commands(engine, count: int):
    """A deterministic mix: market buys and sells, resting limits near the market (the clock fills some), far ones."""
    mid = parse_formatted(engine.status()["reference_prices"]["BTCUSDT"])
    near = format_decimal(mid * 9995 // 10000 // 1_000_000 * 1_000_000)
    low = format_decimal(mid * 97 // 100 // 1_000_000 * 1_000_000)
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            out.append(engine.order_command("BTCUSDT", "BUY", "0.001", client_order_id=f"r-{i}"))
        elif kind == 1:
            out.append(engine.order_command("BTCUSDT", "SELL", "0.0005", client_order_id=f"r-{i}"))
        elif kind == 2:
            out.append(engine.order_command("BTCUSDT", "BUY", "0.001", near, client_order_id=f"r-{i}"))
        else:
            out.append(engine.order_command("BTCUSDT", "BUY", "0.001", low, client_order_id=f"r-{i}"))
    return out


def _drive(engine, commands, kill_at: int, victims: tuple[str, ...]) -> None:
    """Send commands 20 at a time without waiting, step the clock, cancel some limits; kill the victims mid-batch
    and drive again, unchanged, what failed (an identical command applied twice has no second effect, and is answered
    with the events of its first application)."""
    for start in range(0, len(commands), 20):
        batch = commands[start : start + 20]
        refs = [engine.submit_async(c) for c in batch]
        if start == kill_at:
            for victim in victims:
                ray.kill(engine.actor(victim), no_restart=False)
        for command, ref in zip(batch, refs, strict=True):
            try:
                ray.get(ref, timeout=60)
            except ray.exceptions.RayError:
                answer = engine.submit(command)  # applied before the kill or not: its acceptance or rejection
                assert {type(e) for e in answer} & {OrderAccepted, OrderRejected}, (command, answer)
            finally:
                engine.window.done()
        if start % 40 == 0:
            engine.tick()
        for c in batch:
            if c.client_order_id.endswith(("3", "7")):
                engine.cancel_order(c.client_order_id)


def _venue_fills(journal) -> dict[tuple[int, str], VenueOrderFilled]:
    """Every fill the venue made for the trader, rebuilt from the venue actor's own journal of inputs."""
    from veloz_actors.venues.engine import EngineConfig

    header, lines = read_journal(journal)
    config = EngineConfig.from_json(header["config"]["config"])
    venue = config.venues()["BTCUSDT"]
    fills = {}
    for message in lines:
        if type(message) is SubmitOrder:
            reports = venue.submit(message)
        elif type(message) is SubmitCancel:
            reports = venue.cancel(message)
        else:
            assert type(message) is Tick
            reports = venue.on_clock(message.ts)
        for r in reports:
            if type(r) is VenueOrderFilled:
                fills[(r.trade_id, r.client_order_id)] = r
    return fills, venue


@pytest.mark.parametrize(
    "victims",
    [("oms",), ("venue:BTCUSDT",), ("account",), ("risk",), ("oms", "venue:BTCUSDT", "account", "risk")],
    ids=["oms", "venue", "account", "risk", "together"],
)
def test_killing_actors_mid_stream_loses_and_doubles_nothing(tmp_path, victims):
    config = file_config(risk=True)  # a risk actor that follows every fill, with no limit to halt on
    engine = start_local(config, name=f"recovery-{'-'.join(v.replace(':', '') for v in victims)}", journal_dir=tmp_path)
    try:
        engine.tick()
        commands = _commands(engine, 240)
        _drive(engine, commands, 100, victims)
        wait_for(
            lambda: (
                (s := engine.status()["actors"])
                and all(a["alive"] for a in s.values())
                and all(s[name]["restarts"] >= 1 for name in victims)
            ),
            what="the killed actors restarted (counted) and every actor alive",
        )
        engine.tick()
        assert engine.settle(), "the venues answered every request"
        orders = {o["client_order_id"]: o for o in engine.orders()}
        balances = engine.balances()
        totals = engine.totals()
        wait_for(lambda: engine.account_view() == balances, what="the account view to match the OMS")
        ledger = ray.get(engine.actor("oms").exposure.remote(), timeout=60)
        wait_for(
            lambda: ray.get(engine.actor("risk").exposure.remote(), timeout=60) == ledger,
            what="the risk actor's exposure to equal the ledger's",
        )
        risk = wait_for(
            lambda: (
                (s := engine.status()) and (f := s["risk_forwarding"]["fills"])["acknowledged"] == f["position"] and s
            ),
            what="the risk actor to acknowledge the whole fill stream",
        )
    finally:
        engine.shutdown()

    # every order in exactly one, settled state
    assert set(orders) == {c.client_order_id for c in commands}
    for order in orders.values():
        if order["status"] == "FILLED":
            assert order["filled_qty"] == order["qty"]
        elif order["status"] in RESTING:
            assert order["filled_qty"] < order["qty"]
        else:
            assert order["status"] in TERMINAL, order
    # the kernel's fills, from its journal replayed from the start: none doubled ...
    _, events = replay_kernel(tmp_path / "oms.journal")
    fills = [e for e in events if type(e) is OrderFilled and e.account_id == "main"]
    keys = Counter((f.trade_id, f.client_order_id) for f in fills)
    assert fills and max(keys.values()) == 1
    # ... and none lost: exactly the fills the venue made, rebuilt from the venue's own journal
    venue_fills, venue = _venue_fills(tmp_path / "venue-BTCUSDT.journal")
    assert set(keys) == set(venue_fills)
    for f in fills:
        made = venue_fills[(f.trade_id, f.client_order_id)]
        assert (f.price, f.qty, f.fee) == (made.price, made.qty, made.fee)
    filled = Counter()
    for f in fills:
        filled[f.client_order_id] += f.qty
    for cid, order in orders.items():
        assert filled[cid] == order["filled_qty"], cid
    # the risk actor followed them all: none lost or doubled (an OMS restart re-bases it on the ledger instead)
    forwarding = risk["risk_forwarding"]["fills"]
    assert forwarding["fills_dropped"] == 0 and forwarding["fills_kept"] == 0
    if "oms" not in victims:
        assert risk["risk"]["fills"] == len(fills) and risk["risk"]["stream"]["rebases"] == 0
    if "risk" in victims:
        assert risk["risk"]["restarted"] and risk["risk"]["resumed"]
    # the orders resting in the kernel are exactly those resting at the venue
    resting = {cid for cid, o in orders.items() if o["status"] in RESTING}
    assert resting == {cid for (_, cid) in venue.orders}
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
    # and no money is created or destroyed: balances + fees + the market makers' money == deposits, for every asset
    deposits = Counter()
    for assets in exact.balances.values():
        for asset, amount in assets.items():
            deposits[asset] += amount
    for inst in exact.instruments:  # each symbol's market maker is funded with its two assets
        for asset in (inst.base_asset, inst.quote_asset):
            deposits[asset] += exact.market_maker_balances.get(asset, 0)
    assert totals == dict(deposits)


def test_a_command_retried_after_the_oms_restarted_gets_the_answer_its_first_application_gave(tmp_path):
    """The handle sends a command again when the OMS died during the call. The kernel takes the retry as a no-op; the
    restarted OMS answers it with the events the first application gave, never "no events" (which read as accepted)."""
    engine = start_local(file_config(), name="retry-answer", journal_dir=tmp_path)
    try:
        engine.tick()
        mid = parse_formatted(engine.status()["reference_prices"]["BTCUSDT"])
        low = format_decimal(mid * 97 // 100 // 1_000_000 * 1_000_000)
        accepted = engine.order_command("BTCUSDT", "BUY", "0.001", low, client_order_id="retry-ok")
        too_big = engine.order_command("BTCUSDT", "BUY", "5000", low, client_order_id="retry-refused")
        no_such = CancelOrder(client_order_id="retry-nobody", ts=accepted.ts + 1)
        commands = (accepted, too_big, no_such)
        first = [engine.submit(c) for c in commands]
        assert any(type(e) is OrderAccepted for e in first[0]), first[0]
        (refused,) = [e for e in first[1] if type(e) is OrderRejected]
        assert refused.reason is not RejectReason.DUPLICATE_CLIENT_ORDER_ID
        assert [(type(e), e.reason) for e in first[2]] == [(OrderRejected, RejectReason.UNKNOWN_ORDER)]

        ray.kill(engine.actor("oms"), no_restart=False)
        wait_for(lambda: engine.status()["actors"]["oms"]["restarts"] >= 1, what="the OMS restarted")
        assert [engine.submit(c) for c in commands] == first
        assert engine.submit_many(list(commands)) == first
        assert engine.status()["retries"] == {"answered": 6, "outcome_unknown": 0}
        orders = {o["client_order_id"]: o for o in engine.orders()}
        assert orders["retry-ok"]["status"] == "ACCEPTED" and orders["retry-refused"]["status"] == "REJECTED"
        assert len(orders) == 2  # each order once
    finally:
        engine.shutdown()
