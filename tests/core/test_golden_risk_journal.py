"""A risk monitor's journal written by this version recovers to the same state in every later version.

The risk actor journals the fills, marks and operator actions it applied and, after a restart, rebuilds its ledger,
exposure, equity, peak and the halt in force from them (``RiskMonitor.recover``). A change to how it books a fill,
values a balance or measures a limit would rebuild an earlier journal into other numbers, and perhaps lift or invent a
halt. ``golden/risk_semantics3.journal`` was written by a run of :func:`scenario` (fills, a duplicate, marks, each
limit crossed, resets, a reset while still crossed, a kill switch, a fill of an unknown symbol) and
``golden/risk_semantics3.out`` holds, one JSON line each, the commands every step sent, then what the journal
recovers to (the status and the commands a restarted monitor sends). When this test fails after a deliberate change,
the change needs a new ``journal.SEMANTICS`` keeping the old behaviour for older journals, and a new golden pair
written by ``.venv/bin/python -m tests.core.test_golden_risk_journal`` beside this one. The kernel's twin is
``test_golden_journal.py``.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from veloz_actors.core.instruments import Instrument
from veloz_actors.core.journal import SEMANTICS, read_header
from veloz_actors.core.risk_monitor import EngineRiskLimits, RiskMonitor, RiskMonitorConfig
from veloz_actors.messages import Liquidity, OrderFilled, Side, encode_line
from veloz_actors.testing import START_NS, book_top, d, instruments, trade

GOLDEN = Path(__file__).parent / "golden"
LIMITS = EngineRiskLimits(
    max_symbol_exposure={"BTCUSDT": d("3")},
    max_asset_exposure={"ETH": d("60")},
    max_drawdown=d("0.1"),
    max_loss=d("40000"),
)  # not in the journal (limits may change between runs): the golden run's, fixed here


def fill(trade_id: int, side: str, qty: str, price: str, *, symbol: str = "BTCUSDT", fee: str = "0") -> OrderFilled:
    return OrderFilled(
        client_order_id=f"c{trade_id}", order_id=trade_id, account_id="main", symbol=symbol, side=Side[side],
        trade_id=trade_id, price=d(price), qty=d(qty), fee=d(fee), fee_asset="USDT", liquidity=Liquidity.TAKER,
        cum_qty=d(qty), leaves_qty=0, ts=0,
    )  # fmt: skip


def scenario() -> list[tuple[str, Any]]:
    """The golden run's steps: ("apply", a bus event), ("reset", None) or ("kill", None), one second apart."""
    steps: list[tuple[str, Any]] = [
        ("apply", fill(1, "BUY", "1", "60000", fee="6")),
        ("apply", fill(1, "BUY", "1", "60000", fee="6")),  # the same fill again: booked once
        ("apply", trade("61000")),  # a new peak
        ("apply", fill(2, "BUY", "2.5", "61000", fee="15.25")),  # 3.5 BTC bought: above 3, halts
        ("reset", None),  # still above: halts again at once
        ("apply", fill(3, "SELL", "1", "61000", fee="6.1")),  # selling is not blocked
        ("reset", None),  # 2.5: trading resumes
        ("apply", fill(4, "BUY", "20", "2500", symbol="ETHUSDT")),
        ("apply", book_top("2499", "2501", symbol="ETHUSDT")),
        ("apply", trade("50000")),  # 4.5 BTC held lose 49,500 USDT: above max_loss
        ("reset", None),
        ("apply", trade("35000")),  # more than 10 % below the new peak: drawdown and loss
        ("reset", None),
        ("apply", fill(5, "BUY", "50", "2500", symbol="ETHUSDT")),  # 70 ETH held: above 60
        ("kill", None),
        ("apply", fill(6, "BUY", "1", "1", symbol="XRPUSDT")),  # a symbol the monitor does not know
        ("apply", trade("44000")),
    ]
    return [(kind, _at(item, START_NS + i * 10**9)) for i, (kind, item) in enumerate(steps)]


def _at(item: Any, ts: int) -> Any:
    if item is None:
        return ts
    if hasattr(item, "ts_recv"):
        return dataclasses.replace(item, ts_event=ts, ts_recv=ts)
    return dataclasses.replace(item, ts=ts)


def config() -> RiskMonitorConfig:
    return RiskMonitorConfig(
        instruments=instruments(),
        balances={"main": {"USDT": d("500000"), "BTC": d("2")}},
        limits=LIMITS,
        reference_prices={"BTCUSDT": d("60000"), "ETHUSDT": d("2500")},
    )


def _commands(commands: list[Any]) -> bytes:
    return orjson.dumps([orjson.loads(encode_line(c)) for c in commands])


def run(monitor: RiskMonitor) -> list[bytes]:
    """Each step's commands, one JSON array per step."""
    out = []
    for kind, item in scenario():
        if kind == "apply":
            out.append(_commands(monitor.apply(item)))
        elif kind == "reset":
            out.append(_commands(monitor.reset(item)))
        else:
            out.append(_commands(monitor.kill_switch(item)))
    return out


def recover(journal: Path) -> bytes:
    """What a restarted monitor makes of a copy of ``journal`` (its config from the journal's header, the golden
    limits): its status and the commands it sends at once, as one JSON line."""
    ledger = read_header(journal)["config"]["risk_monitor"]
    restored = RiskMonitorConfig(
        instruments=tuple(Instrument(**i) for i in ledger["instruments"]),
        balances=ledger["balances"],
        limits=LIMITS,
        valuation_asset=ledger["valuation_asset"],
        reference_prices=ledger["reference_prices"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "risk.journal"
        shutil.copyfile(journal, path)
        monitor, commands = RiskMonitor.recover(restored, path, durability="none")
        try:
            status = monitor.status()
        finally:
            monitor.close()
    del status["journal"]  # the copy's path
    return orjson.dumps({"status": status, "commands": orjson.loads(_commands(commands))}, option=orjson.OPT_SORT_KEYS)


def write(directory: Path) -> None:
    """Run :func:`scenario` through a journaled monitor; write its journal and outputs as the golden pair."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "risk.journal"
        monitor = RiskMonitor(config(), journal_path=path, durability="always")
        steps = run(monitor)
        monitor.close()
        shutil.copyfile(path, directory / f"risk_semantics{SEMANTICS}.journal")
    recovered = recover(directory / f"risk_semantics{SEMANTICS}.journal")
    (directory / f"risk_semantics{SEMANTICS}.out").write_bytes(b"\n".join([*steps, recovered]) + b"\n")


def test_every_golden_risk_journal_recovers_to_the_state_its_run_left() -> None:
    journals = sorted(GOLDEN.glob("risk_semantics*.journal"))
    assert journals[-1].name == f"risk_semantics{SEMANTICS}.journal"  # one for the semantics written today
    for journal in journals:
        expected = journal.with_suffix(".out").read_bytes().splitlines()[-1]
        got = recover(journal)
        assert got == expected, (
            f"{journal.name} no longer recovers to the state it was written with:\n{got.decode()}\nagainst\n"
            f"{expected.decode()}\nthe risk monitor's booking or limits changed. See this module's docstring: a new "
            "journal.SEMANTICS keeping the old behaviour for older journals, and a new golden pair"
        )


def test_the_scenario_still_sends_the_commands_it_sent() -> None:
    """The decisions themselves, step by step, for today's semantics: each limit's halt at the step that crossed it,
    the reset while crossed halting again, the kill switch's cancel-all before its halt."""
    expected = (GOLDEN / f"risk_semantics{SEMANTICS}.out").read_bytes().splitlines()[:-1]
    assert run(RiskMonitor(config())) == expected


def test_the_golden_run_exercises_what_it_says() -> None:
    lines = (GOLDEN / f"risk_semantics{SEMANTICS}.out").read_bytes().splitlines()
    sent = [[(c["type"], c.get("reason", "")) for c in orjson.loads(line)] for line in lines[:-1]]
    reasons = " | ".join(reason for step in sent for _, reason in step)
    for words in ("BTCUSDT", "ETH", "drawdown", "loss", "kill switch"):
        assert words in reasons, (words, reasons)
    assert [kind for kind, _ in sent[4]] == ["ResetCircuitBreaker", "HaltTrading"]  # reset while still crossed
    assert [kind for kind, _ in sent[14]] == ["CancelAllOrders", "HaltTrading"]  # the kill switch
    assert sent[1] == [] and sent[15] == []  # the duplicate fill, the unknown symbol's fill
    final = orjson.loads(lines[-1])
    assert final["status"]["halt_reason"] == "kill switch" and final["status"]["fills"] == 5  # the duplicate once
    assert [c["type"] for c in final["commands"]] == ["CancelAllOrders", "HaltTrading"]


if __name__ == "__main__":  # python -m tests.core.test_golden_risk_journal [DIR]: write today's golden pair
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN)
