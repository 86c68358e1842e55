"""A journal written by this version replays to the same events, byte for byte, in every later version.

The kernel does not journal its decisions: it journals commands and reports and decides again on replay. A change to
a decision (a risk rule, a filter, matching) would therefore rebuild an earlier journal into other orders and
balances, an order the venue never got among them. ``golden/semantics7.journal`` was written by a run of
:func:`scenario` (orders that rest, fill, cancel and are refused for each reason, an unknown account's and a quote
amount below the minimum notional among them; a halt and its reset; the ``max_position`` rule of semantics 3 on coins
sold from a deposit; the simulated market's steps rounded to the nearest tick) and ``golden/semantics7.events`` holds
what that run emitted, its last order a market buy by quote amount that takes every ask the market maker offers
(semantics 7 on: EXPIRED, its fills kept); ``semantics6.*`` (the run before that order), ``semantics5.*`` (the run before the ``dust-quote`` order, its market's steps rounded down),
``semantics4.*`` (the same run under semantics 4: this scenario's fills pay their fees in the quote asset, so
semantics 5's position rule changes none of its events) and ``semantics3.*``, of the run before the ``ghost`` order,
are kept and must replay as they did. When this test fails after a deliberate change of a decision, the change needs a new ``journal.SEMANTICS``
that keeps the old rule for older journals (as ``TradingKernel.legacy_halts`` and ``_position_rule`` do), and a new
golden pair written by ``.venv/bin/python -m tests.core.test_golden_journal`` beside this one: the old pair stays,
and must still replay as it did.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from veloz_actors.core.journal import SEMANTICS, read_header
from veloz_actors.core.risk import RiskLimits
from veloz_actors.messages import HaltTrading, ResetCircuitBreaker, Tick, encode_line
from veloz_actors.testing import START_NS, cancel, d, engine_config, place, trade
from veloz_actors.venues.engine import Engine, replay

GOLDEN = Path(__file__).parent / "golden"


def scenario() -> list[Any]:
    """The commands and market events of the golden run, in order (one nanosecond apart)."""
    steps: list[Any] = [
        trade("60000", ts=0),
        trade("3000", symbol="ETHUSDT", ts=0, trade_id=2),
        Tick(ts=0),
        place("rest", "BUY", "0.5", "59000"),  # rests below the market maker's bid
        place("mkt", "BUY", "0.2", None),  # takes the market maker's asks
        place("cross", "SELL", "0.1", "59000"),  # takes its bid
        cancel("rest"),
        cancel("rest"),  # closed already: refused
        place("mkt", "BUY", "0.1", None),  # a client order id used before: refused
        place("huge", "BUY", "50", "60000"),  # above max_position
        place("off-tick", "BUY", "0.1", "60000.001"),
        place("tiny", "BUY", "0.000001", "60000"),
        place("ghost", "BUY", "0.1", "59000", account="ghost"),  # no such account (semantics 4 on: UNKNOWN_ACCOUNT)
        place("sold", "SELL", "2", None),  # deposited coins sold: the position goes below zero
        place("back", "BUY", "2", "60500"),  # long rule: -1.3 + 2 is within the limit (abs(-1.3) + 2 is not)
        place("eth-quote", "BUY", None, symbol="ETHUSDT", quote_qty="1500"),
        place("dust-quote", "BUY", None, symbol="ETHUSDT", quote_qty="5"),  # below min_notional (semantics 6 on)
        place("ioc", "BUY", "0.1", "59500", tif="IOC"),  # nothing at that price: expires
        place("fok", "BUY", "1.6", "60030", tif="FOK", account="other"),  # not fillable in full
        place("post", "BUY", "0.1", "60100", tif="POST_ONLY"),  # would take liquidity
        place("rest-2", "SELL", "0.3", "62000", account="other"),
        Tick(ts=0),
        HaltTrading(account_id="*", reason="golden halt", ts=0),
        place("halted", "BUY", "0.1", "59000"),  # risk-increasing while halted: refused
        place("reduce", "SELL", "0.1", "62000", account="other"),  # a sell goes on
        ResetCircuitBreaker(account_id="*", ts=0),
        place("after", "BUY", "0.1", "59000"),
        cancel("rest-2", account="other"),
        cancel("nobody"),  # unknown order
        trade("61000", ts=0, trade_id=3),
        Tick(ts=0),
        place("sweep", "BUY", None, symbol="ETHUSDT", quote_qty="40000"),  # more than the maker offers: expires (7 on)
    ]
    return [_at(step, START_NS + i) for i, step in enumerate(steps)]


def _at(message: Any, ts: int) -> Any:
    if hasattr(message, "ts_recv"):  # a market event
        return dataclasses.replace(message, ts_event=ts, ts_recv=ts)
    return dataclasses.replace(message, ts=ts)


def config() -> Any:
    return engine_config(sim=True, risk=RiskLimits(max_position={"BTCUSDT": d("3")}))


def write(directory: Path) -> None:
    """Run :func:`scenario` through a journaled engine; write its journal and events as the golden pair."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "engine.journal"
        engine = Engine(config(), journal_path=path, durability="always")
        events = [event for message in scenario() for event in engine.apply(message)]
        engine.close()
        _, replayed = replay(path)
        assert [encode_line(e) for e in replayed] == [encode_line(e) for e in events]
        shutil.copyfile(path, directory / f"semantics{SEMANTICS}.journal")
    (directory / f"semantics{SEMANTICS}.events").write_bytes(b"".join(encode_line(e) for e in events))


def test_every_golden_journal_replays_to_the_events_its_run_emitted() -> None:
    journals = sorted(GOLDEN.glob("semantics*.journal"))
    assert [p.name for p in journals][-1] == f"semantics{SEMANTICS}.journal"  # one for the semantics written today
    for journal in journals:
        expected = journal.with_suffix(".events").read_bytes().splitlines(keepends=True)
        _, events = replay(journal)
        got = [encode_line(e) for e in events]
        first = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), None)
        assert got == expected, (
            f"{journal.name} no longer replays to the events it was written with (first difference at event "
            f"{first}, {len(got)} events against {len(expected)}): a kernel decision changed. See this module's "
            "docstring: a new journal.SEMANTICS keeping the old rule for older journals, and a new golden pair"
        )


def test_the_golden_run_exercises_what_it_says() -> None:
    """The pair is not trivially small: fills, rests, cancels, each kind of refusal and expiry, a halt, and the
    long-position rule of semantics 3 (``back`` fills; under abs(position) it was refused)."""
    journal = GOLDEN / f"semantics{SEMANTICS}.journal"
    assert read_header(journal)["semantics"] == SEMANTICS
    events = [orjson.loads(line) for line in journal.with_suffix(".events").read_bytes().splitlines()]
    seen = {(e["type"], e.get("reason")) for e in events}
    assert seen >= {
        ("OrderFilled", None),
        ("OrderCancelled", "USER_CANCEL"),
        ("CircuitBreakerTripped", "golden halt"),
        *(
            ("OrderRejected", reason)
            for reason in (
                "ORDER_NOT_OPEN",
                "DUPLICATE_CLIENT_ORDER_ID",
                "MAX_POSITION",
                "PRICE_NOT_ON_TICK",
                "QUANTITY_NOT_ON_STEP",
                "CIRCUIT_BREAKER",
                "UNKNOWN_ORDER",
                "UNKNOWN_ACCOUNT",
                "NOTIONAL_BELOW_MINIMUM",
            )
        ),  # fmt: skip
        *(("OrderExpired", reason) for reason in ("NO_LIQUIDITY", "IOC_UNFILLED", "FOK_NOT_FILLABLE")),
    }
    assert any(e["type"] == "OrderFilled" and e["client_order_id"] == "back" for e in events)
    assert any(e["type"] == "OrderExpired" and e["client_order_id"] == "sweep" and e["filled_qty"] for e in events)


if __name__ == "__main__":  # python -m tests.core.test_golden_journal [DIR]: write the golden pair of today's semantics
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN)
