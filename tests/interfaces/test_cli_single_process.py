"""``veloz start --local --single-process`` and ``veloz replay`` as real subprocesses.

A session with a journal is driven through stdin; bad input must never print a traceback or move a balance; EOF and
QUIT stop cleanly with the journal complete; ``veloz replay`` prints the same event stream byte for byte every time.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from veloz_actors.core.journal import SEMANTICS, read_journal
from veloz_actors.interfaces.stdio import EventFormatter
from veloz_actors.messages import CancelOrder, PlaceOrder, encode
from veloz_actors.testing import cancel, engine_config, place
from veloz_actors.venues.engine import Engine, replay

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "engine.yaml"
T0 = 1_700_000_000_000_000_000


def _veloz(*args: str, stdin: str = "") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "veloz_actors.interfaces.cli", *args],
        input=stdin.encode(),
        capture_output=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def _start(journal: Path, stdin: str) -> tuple[subprocess.CompletedProcess[bytes], list[dict]]:
    result = _veloz("start", "--local", "--single-process", "--no-market", "--config", str(CONFIG),
                    "--journal", str(journal), "--durability", "group", stdin=stdin)  # fmt: skip
    return result, [orjson.loads(line) for line in result.stdout.splitlines()]


BAD_LINES = [
    "ORDER BUY BTCUSDT nan MARKET",
    "ORDER BUY BTCUSDT 0.01 inf",
    "ORDER BUY BTCUSDT -1 60000",
    "ORDER BUY BTCUSDT 0 MARKET",
    "ORDER BUY BTCUSDT 0.01 60000.001",
    "ORDER BUY BTCUSDT 0.000015 60000",
    "ORDER BUY BTCUSDT 0.0001 60000",
    "ORDER BUY DOGEUSDT 1 MARKET",
    "CANCEL no-such-cid",
    "QUERY no-such-cid",
    "this is not a command",
    "ORDER BUY BTCUSDT 1e30 MARKET",
    "ORDER BUY BTCUSDT 999999999999 1",
    "ORDER SELL BTCUSDT 9999 1000000",
    "ORDER BUY BTCUSDT 0.000000001 60000",
    "ORDER BUY BTCUSDT 0.01 60000 tif=NEVER",
    "ORDER BUY BTCUSDT",
    'ORDER "BUY',
]


@pytest.fixture(scope="module")
def bad_session(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[bytes], list[dict]]:
    journal = tmp_path_factory.mktemp("bad") / "engine.journal"
    return _start(journal, "BALANCE\n" + "\n".join(BAD_LINES) + "\n\nBALANCE\nQUIT\n")


def test_bad_input_never_prints_a_traceback(bad_session) -> None:
    result, _ = bad_session
    assert result.returncode == 0
    assert result.stderr == b""


def test_every_bad_line_gets_an_error_or_a_rejection(bad_session) -> None:
    _, out = bad_session
    answers = [o for o in out if o["type"] == "error" or o.get("status") in ("REJECTED", "CANCEL_REJECTED")]
    assert len(answers) == len(BAD_LINES)
    assert all(a.get("message") or a.get("reason") for a in answers)


def test_bad_input_never_changes_a_balance(bad_session) -> None:
    _, out = bad_session
    balances = [o["balances"] for o in out if o["type"] == "account"]
    assert len(balances) == 2 and balances[0] == balances[1]


def test_bad_session_stops_cleanly(bad_session) -> None:
    _, out = bad_session
    assert out[0]["state"] == "started" and out[-1] == {"type": "status", "ts": out[-1]["ts"], "state": "stopped"}


def test_bytes_that_are_not_utf8_and_a_huge_line_get_errors_and_the_session_goes_on() -> None:
    """Before: a byte that is not UTF-8 killed the engine with a traceback (its error line could not be printed), and
    a line of megabytes held it for minutes (shlex is quadratic in a word's length), SIGTERM included."""
    stdin = (b"BALANCE\n\xff\xfeORDER BUY BTCUSDT 0.01 58000\n" + b"a" * 10_000_000 + b"\n"
             + b"ORDER BUY BTCUSDT 0.01 58000 cid=" + b"x" * 1_000_000 + b"\n"
             # a line of 4,988 bytes but 1,688 characters (three bytes a euro sign): too long, counted in bytes
             + b"ORDER BUY BTCUSDT 0.01 58000 cid=cut1 " + "\u20ac".encode() * 1_650 + b"\nBALANCE\nQUIT\n")  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "veloz_actors.interfaces.cli", "start", "--local", "--single-process", "--no-market",
         "--config", str(CONFIG), "--no-journal"],
        input=stdin, capture_output=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr == b""
    out = [orjson.loads(line) for line in result.stdout.splitlines()]
    errors = [o["message"] for o in out if o["type"] == "error"]
    assert errors == [
        "the line is not valid UTF-8 (its unreadable bytes are shown as \ufffd)",
        "a line longer than 4,096 bytes; a command is at most that",
        "a line longer than 4,096 bytes; a command is at most that",
        "a line longer than 4,096 bytes; a command is at most that",
    ]
    balances = [o["balances"] for o in out if o["type"] == "account"]
    assert len(balances) == 2 and balances[0] == balances[1]
    assert out[-1]["state"] == "stopped"


ORDERS = [
    "ORDER BUY BTCUSDT 0.01 MARKET cid=a1",
    "ORDER SELL BTCUSDT 0.005 MARKET cid=a2",
    "ORDER BUY ETHUSDT 0.5 2400 cid=a3",
    "ORDER BUY ETHUSDT 0.2 MARKET tif=IOC cid=a4",
    "CANCEL a3",
]


@pytest.mark.parametrize("ending", ["QUIT\n", ""], ids=["quit", "eof"])
def test_shutdown_flushes_the_complete_journal(tmp_path: Path, ending: str) -> None:
    journal = tmp_path / "engine.journal"
    result, out = _start(journal, "\n".join(ORDERS) + "\n" + ending)
    assert result.returncode == 0 and result.stderr == b""
    assert out[-1]["state"] == "stopped"
    commands = [m for m in read_journal(journal)[1] if type(m) in (PlaceOrder, CancelOrder)]
    assert [m.client_order_id for m in commands] == ["a1", "a2", "a3", "a4", "a3"]
    assert journal.read_bytes().endswith(b"\n")


def test_restart_recovers_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "engine.journal"
    _start(journal, "ORDER BUY BTCUSDT 0.01 MARKET cid=first\nQUIT\n")
    result, out = _start(journal, "QUERY first\nQUIT\n")
    assert result.returncode == 0 and result.stderr == b""
    [state] = [o for o in out if o["type"] == "order_state"]
    assert state["orders"][0]["status"] == "FILLED"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    journal = tmp_path_factory.mktemp("replay") / "engine.journal"
    result, out = _start(journal, "\n".join(ORDERS) + "\nQUIT\n")
    assert result.returncode == 0
    return journal, out


def _replay_lines(journal: Path) -> list[bytes]:
    result = _veloz("replay", str(journal))
    assert result.returncode == 0 and result.stderr == b""
    lines = result.stdout.splitlines()
    assert orjson.loads(lines[-1])["type"] == "replay_summary"
    return lines[:-1]


def test_replay_cli_prints_the_in_process_replay_events_byte_for_byte(recorded) -> None:
    journal, _ = recorded
    _, events = replay(journal)
    assert _replay_lines(journal) == [encode(e) for e in events]


def test_replay_cli_is_identical_every_time(recorded) -> None:
    journal, _ = recorded
    assert _replay_lines(journal) == _replay_lines(journal)


def test_replay_reproduces_what_the_session_printed(recorded) -> None:
    journal, out = recorded
    _, events = replay(journal)
    formatter = EventFormatter("main", market=False)
    reprinted = [orjson.dumps(o) for e in events for o in formatter.format(e)]
    printed = [orjson.dumps(o) for o in out[1:-1]]  # between the started and stopped status lines
    assert reprinted == printed
    assert any(o["type"] == "fill" for o in out)


def test_replay_of_a_journal_cut_mid_record_says_so_and_replays_what_is_whole(recorded, tmp_path: Path) -> None:
    """A journal copied while the engine wrote, or cut by a crash: its incomplete last line is left out, as recovery
    leaves it out, and said (before: silently, the summary as if the journal were whole)."""
    journal, _ = recorded
    data = journal.read_bytes()
    cut = tmp_path / "cut.journal"
    cut.write_bytes(data[:-25])
    result = _veloz("replay", "--summary", str(cut))
    assert result.returncode == 0
    torn = len(data[:-25]) - len(data[:-25].rsplit(b"\n", 1)[0]) - 1
    assert orjson.loads(result.stdout.splitlines()[-1])["torn_tail_bytes"] == torn > 0
    assert result.stderr.decode() == (
        f"warning: {cut}: its last line ({torn} bytes) is incomplete (a write cut short by a crash, or a copy taken "
        "while the engine wrote): replayed without it, as recovery leaves it out\n"
    )
    _, events = replay(cut)
    assert orjson.loads(result.stdout.splitlines()[-1])["events"] == len(events)
    whole = orjson.loads(_veloz("replay", "--summary", str(journal)).stdout.splitlines()[-1])
    assert whole["torn_tail_bytes"] == 0


def test_replay_of_a_missing_journal_is_a_one_line_error(tmp_path: Path) -> None:
    result = _veloz("replay", str(tmp_path / "missing.journal"))
    assert result.returncode != 0
    assert result.stderr.decode().startswith("error: ") and b"Traceback" not in result.stderr


def test_replay_from_a_snapshot_rebuilds_the_evicted_orders_and_never_writes_the_runs_files(tmp_path: Path) -> None:
    """It recovers a copy: the copy's order history is cut back to the snapshot and grows by the tail's evictions,
    and not one byte of the journal's folder changes (before, the snapshot's kernel appended to the live history)."""
    journal = tmp_path / "engine.journal"
    config = replace(engine_config(sim=True, snapshot_every=1000), retain_closed_ns=1)
    engine = Engine(config, journal_path=journal, durability="none")
    for i in range(2100):  # 4 kernel steps an order: evictions at steps 4,096 and 8,192 (after the last snapshot)
        engine.apply(place(f"o{i}", "BUY", "0.01", "59500", ts=T0 + i * 1000))
        engine.apply(cancel(f"o{i}", ts=T0 + i * 1000))
    engine.close()
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = _veloz("replay", "--from-snapshot", "--summary", str(journal))
    assert result.returncode == 0 and result.stderr == b""
    summary = orjson.loads(result.stdout.splitlines()[-1])
    assert summary["evicted_orders"] == engine.kernel.evicted == 2047  # 1,024 at step 4,096, 1,023 at step 8,192
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files


def test_replay_of_a_journal_with_a_field_of_the_wrong_type_is_a_one_line_error(recorded, tmp_path: Path) -> None:
    """Before: the line decoded and the engine crashed applying it (a TypeError traceback in instruments.py)."""
    journal, _ = recorded
    lines = journal.read_bytes().splitlines(keepends=True)
    number = next(i for i, line in enumerate(lines) if b'"type":"PlaceOrder"' in line)
    bad = orjson.loads(lines[number]) | {"qty": "abc"}
    corrupt = tmp_path / "corrupt.journal"
    corrupt.write_bytes(b"".join(lines[:number]) + orjson.dumps(bad) + b"\n" + b"".join(lines[number + 1 :]))
    result = _veloz("replay", "--summary", str(corrupt))
    assert result.returncode != 0 and result.stdout == b""
    assert result.stderr.decode() == (
        f"error: {corrupt}:{number + 1}: corrupt journal line: PlaceOrder: qty must be int, got str 'abc'\n"
    )


def test_replay_of_a_journal_a_newer_veloz_wrote_is_a_one_line_error(recorded, tmp_path: Path) -> None:
    """A header of a later VeloZ's semantics (its rules): before, it replayed silently under this VeloZ's rules."""
    journal, _ = recorded
    header, *rest = journal.read_bytes().splitlines(keepends=True)
    newer = tmp_path / "newer.journal"
    later = SEMANTICS + 1
    newer.write_bytes(orjson.dumps(orjson.loads(header) | {"semantics": later}) + b"\n" + b"".join(rest))
    result = _veloz("replay", "--summary", str(newer))
    assert result.returncode != 0 and result.stdout == b""
    assert result.stderr.decode() == (
        f"error: {newer}: journal semantics {later} is newer than this VeloZ reads (1 to {SEMANTICS}): use the VeloZ "
        "that wrote it\n"
    )


def test_replay_of_the_actor_engines_journals_says_what_they_are(tmp_path: Path) -> None:
    """``veloz start --local`` (the actor engine) journals per actor under ``<journal>.actors/``. Before: replaying
    that folder said it "does not exist", and its OMS's kernel journal "has an unusable engine config:
    'sim_symbols'"."""
    from veloz_actors.core.kernel import TradingKernel

    folder = tmp_path / "engine.journal.actors"
    folder.mkdir()
    kernel, _ = TradingKernel.recover(engine_config(sim=True).kernel_config(), folder / "oms.journal")
    kernel.close()
    for path, said in ((folder, "is a directory"), (folder / "oms.journal", "is a kernel journal")):
        result = _veloz("replay", "--summary", str(path))
        assert result.returncode != 0 and result.stdout == b""
        error = result.stderr.decode()
        assert error.startswith(f"error: {path} {said}") and error.count("\n") == 1
        assert "single-process" in error


def test_replay_of_a_venue_risk_or_account_actors_journal_says_what_it_is(tmp_path: Path) -> None:
    """The actor engine's other journals (a venue shard's, the risk monitor's, the account's: the golden ones its
    actors wrote, and one the account's Journal writes) said "journal header has an unusable kernel config: 'risk'",
    a KeyError's text, where the README promises they are refused saying so."""
    from veloz_actors.core.journal import Journal

    account = tmp_path / "account.journal"
    Journal(account, {"actor": "account"}, durability="none").close()
    journals = (
        (
            ROOT / "tests/venues/golden/sim_semantics7.journal",
            "is a venue shard's journal (the actor engine's venue s0",
        ),
        (ROOT / "tests/venues/golden/paper_semantics7.journal", "is a venue shard's journal"),
        (ROOT / "tests/core/golden/risk_semantics7.journal", "is a risk monitor's journal"),
        (account, "is an actor's journal (the actor engine's account writes one)"),
    )
    for path, said in journals:
        result = _veloz("replay", "--summary", str(path))
        assert result.returncode != 0 and result.stdout == b""
        error = result.stderr.decode()
        assert error.startswith(f"error: {path} {said}") and error.count("\n") == 1, error
        assert "single-process" in error


def test_a_ctrl_c_while_the_engine_starts_says_the_start_up_was_interrupted(tmp_path, monkeypatch):
    """A Ctrl-C before the prompt (here while the journal is recovered, the long part of a restart: injected as the
    KeyboardInterrupt it raises) exits 130 with one line saying so, not silently, and prints no status."""
    from typer.testing import CliRunner

    from veloz_actors.interfaces.cli import app

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Engine, "recover", interrupted)
    journal = tmp_path / "engine.journal"
    result = CliRunner().invoke(
        app, ["start", "--local", "--single-process", "--no-market", "--config", str(CONFIG), "--journal", str(journal)]
    )
    assert result.exit_code == 130, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "interrupted during start-up: the engine took no command, and what it had started is stopped"
    ]
