"""The terminal view of ``veloz start``: a person's session in a pseudo-terminal, the JSON protocol through a pipe and
with ``--json``, and the view's formatting of fixed protocol objects.

The pseudo-terminal tests run the real ``veloz`` script with stdin, stdout and stderr on a pty slave (30 x 120,
TERM=xterm, the pty its controlling terminal so Ctrl-C is a signal), type at the prompt as a person would and read
everything the terminal received, with a deadline for each wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from veloz_actors.interfaces.local import LocalBackend
from veloz_actors.interfaces.service import EngineService
from veloz_actors.interfaces.stdio import Session
from veloz_actors.interfaces.tty import (
    PROMPT,
    TerminalView,
    ViewState,
    balances_table,
    describe,
    fill_line,
    order_line,
    orders_table,
    positions_table,
    status_lines,
)
from veloz_actors.messages import Tick
from veloz_actors.testing import FakeClock, d, engine_config
from veloz_actors.venues.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "engine.yaml"
VELOZ = Path(sys.executable).parent / "veloz"  # the virtualenv's console script
ROWS, COLS = 30, 120
WAIT_SECONDS = 60.0
START = ("start", "--local", "--single-process", "--no-journal", "--config", str(CONFIG))

_SGR = re.compile(rb"\x1b\[[0-9;]*m")  # colours: removed
_CONTROL = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[78=>]")  # cursor moves, saves, modes: a break between texts


_FRAME = re.compile(rb"\x1b7.*?\x1b8", re.DOTALL)  # what the view draws, always between save and restore cursor


def readable(raw: bytes) -> list[str]:
    """What a person reads: the texts between the escapes, one per cursor move or line end."""
    text = _CONTROL.sub(b"\n", _SGR.sub(b"", raw)).decode("utf-8", "replace")
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


def prompt_row(raw: bytes) -> str:
    """What readline wrote on the prompt's row: everything but the view's frames and the escapes."""
    return _CONTROL.sub(b"", _SGR.sub(b"", _FRAME.sub(b"", raw))).decode("utf-8", "replace")


# ----------------------------------------------------------------------------------------- the pseudo-terminal


class Terminal:
    """``veloz`` on a pseudo-terminal: type into it, read what it shows."""

    def __init__(self, *args: str, home: Path, echo: bool = True, program: Sequence[str] = (str(VELOZ),)) -> None:
        assert VELOZ.is_file(), f"the virtualenv's veloz script is missing: {VELOZ}"
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        if not echo:
            modes = termios.tcgetattr(self.slave)
            modes[3] &= ~termios.ECHO
            termios.tcsetattr(self.slave, termios.TCSANOW, modes)
        self.modes_before = termios.tcgetattr(self.slave)
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
        env.update(TERM="xterm", HOME=str(home), RAY_AUTH_MODE="disabled")
        self.proc = subprocess.Popen(
            [*program, *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            cwd=home,
            env=env,
            start_new_session=True,
            preexec_fn=_controlling_terminal,  # noqa: PLW1509 - the child's own session: only an ioctl
        )
        self.raw = bytearray()

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            with contextlib.suppress(OSError):  # nothing left on the slave's side
                self.raw.extend(os.read(self.master, 65536))

    def until(self, found: Callable[[list[str]], bool], what: str, timeout: float = WAIT_SECONDS) -> list[str]:
        """Read until ``found(readable lines)``; fail naming ``what`` with the end of the screen's text."""
        deadline = time.monotonic() + timeout
        while True:
            lines = readable(bytes(self.raw))
            if found(lines):
                return lines
            if time.monotonic() > deadline or self.proc.poll() is not None:
                tail = "\n".join(lines[-30:])
                raise AssertionError(f"{what}: not shown within {timeout}s (exit {self.proc.poll()}); last:\n{tail}")
            self._pump(0.1)

    def prompt(self, text: str = "") -> None:
        """Wait until readline shows the prompt followed by ``text``."""
        self.until(lambda _: PROMPT + text in prompt_row(bytes(self.raw)), f"the prompt {PROMPT + text!r}")

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait(self, timeout: float = WAIT_SECONDS) -> int:
        """The exit code, reading the terminal meanwhile (a full pty would block the program)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"veloz still running {timeout}s after it was asked to stop")
            self._pump(0.1)
        self._pump(0.2)
        return self.proc.returncode

    def modes(self) -> list[Any]:
        return termios.tcgetattr(self.slave)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self.master)
        os.close(self.slave)


def _controlling_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _has(*words: str) -> Callable[[list[str]], bool]:
    return lambda lines: any(all(w in line for w in words) for line in lines)


@dataclass
class Recorded:
    raw: bytes
    lines: list[str]
    exit_code: int
    modes_before: list[Any]
    modes_after: list[Any]
    history: str
    before_fill: list[str]


@pytest.fixture(scope="module")
def person(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """A person's session: a market order, BALANCE, an order the risk limits refuse, then QUIT."""
    home = tmp_path_factory.mktemp("home")
    terminal = Terminal(*START, home=home)
    try:
        terminal.until(_has("engine started"), "the start line")
        before_fill = terminal.until(_has("balances", "USDT"), "the panel's balances")
        terminal.prompt()
        terminal.type("ORDER BUY BTCUSDT 0.01 MARKET\r")
        terminal.until(_has("FILL", "BUY", "BTCUSDT", "@"), "the fill")
        terminal.until(_has("balances", "BTC 1.01"), "the panel's BTC balance after the fill")
        terminal.type("BALANCE\r")
        terminal.until(_has("ASSET", "FREE", "LOCKED", "TOTAL"), "the BALANCE table")
        terminal.type("ORDER BUY BTCUSDT 1000 MARKET\r")
        terminal.until(_has("REJECTED", "reason=MAX_ORDER_QUANTITY"), "the rejection")
        terminal.type("QUIT\r")
        code = terminal.wait()
        history = home / ".veloz_history"
        yield Recorded(
            raw=bytes(terminal.raw),
            lines=readable(bytes(terminal.raw)),
            exit_code=code,
            modes_before=terminal.modes_before,
            modes_after=terminal.modes(),
            history=history.read_text() if history.is_file() else "",
            before_fill=before_fill,
        )
    finally:
        terminal.close()


def test_a_market_order_typed_at_the_prompt_shows_its_fill_as_one_readable_line(person: Recorded) -> None:
    fills = [line for line in person.lines if "FILL" in line and "BTCUSDT" in line]
    assert fills, person.lines[-40:]
    assert re.search(
        r"\d\d:\d\d:\d\d  FILL  BUY 0\.01 BTCUSDT @ \d+(\.\d+)?  fee [\d.]+ USDT  TAKER  cid=cli-", fills[0]
    )
    assert "(order filled)" in fills[0]
    assert _has("ORDER ACCEPTED", "BUY 0.01 BTCUSDT MARKET")(person.lines)


def test_the_terminal_never_sees_json_market_lines_or_info_logs(person: Recorded) -> None:
    assert b'{"type"' not in person.raw
    assert not any(line.lstrip().startswith("{") for line in person.lines)
    assert b"veloz.engine" not in person.raw  # the INFO log lines (stderr is the terminal too) say what lines say


def test_the_panel_shows_quotes_and_the_balances_the_events_carried(person: Recorded) -> None:
    quotes = [line for line in person.lines if re.search(r"BTCUSDT \d+(\.\d+)? / \d+(\.\d+)?", line)]
    assert quotes and any("ETHUSDT" in line for line in quotes)
    assert _has("balances", "BTC 1 ", "USDT 100000")(person.before_fill)  # the start snapshot
    assert _has("balances", "BTC 1.01")(person.lines)  # the account event after the fill
    assert _has("VeloZ", "SIM", "open orders 0", "fills 1", "last event")(person.lines)


def test_answers_are_tables_and_rejections_name_their_reason(person: Recorded) -> None:
    header = next(i for i, line in enumerate(person.lines) if "ASSET" in line and "TOTAL" in line)
    rows = person.lines[header + 1 : header + 4]
    assert [row.split()[0] for row in rows] == ["BTC", "ETH", "USDT"]
    assert rows[0].split()[1:] == ["1.01", "0", "1.01"]
    rejected = next(line for line in person.lines if "REJECTED" in line)
    assert "BUY 1000 BTCUSDT MARKET" in rejected and "(quantity 1000 above the risk limit 10)" in rejected


def test_quit_exits_0_and_gives_the_terminal_back(person: Recorded) -> None:
    assert person.exit_code == 0
    assert person.modes_after == person.modes_before
    assert b"\x1b[r" in person.raw[-200:]  # the scroll region reset
    assert _has("engine stopped")(person.lines)


def test_the_typed_lines_are_kept_in_the_history(person: Recorded) -> None:
    assert "ORDER BUY BTCUSDT 0.01 MARKET" in person.history.splitlines()
    assert "BALANCE" in person.history.splitlines()


def test_ctrl_c_with_a_half_typed_line_stops_cleanly(tmp_path: Path) -> None:
    terminal = Terminal(*START, home=tmp_path)
    try:
        terminal.prompt()
        terminal.type("ORDER BUY BTC")
        terminal.prompt("ORDER BUY BTC")
        terminal.type("\x03")
        assert terminal.wait() == 0
        assert terminal.modes() == terminal.modes_before
        assert _has("engine stopped")(readable(bytes(terminal.raw)))
    finally:
        terminal.close()


# ``veloz``, but its main thread sends itself a Ctrl-C's SIGINT the moment the prompt is up, before the engine loop
# runs: what a person's Ctrl-C at the first prompt is when a busy machine lets the prompt's thread run first
CTRL_C_AT_THE_FIRST_PROMPT = """\
import os, signal
from veloz_actors.interfaces import cli, tty

start = tty.TerminalView.start


def start_then_ctrl_c(view):
    start(view)
    os.kill(os.getpid(), signal.SIGINT)


tty.TerminalView.start = start_then_ctrl_c
cli.main()
"""


def test_ctrl_c_at_the_first_prompt_before_the_engine_loop_runs_stops_cleanly(tmp_path: Path) -> None:
    terminal = Terminal(*START, home=tmp_path, program=(sys.executable, "-c", CTRL_C_AT_THE_FIRST_PROMPT))
    try:
        assert terminal.wait() == 0  # not 130: no KeyboardInterrupt, wherever the main thread was
        assert terminal.modes() == terminal.modes_before
        assert _has("engine stopped")(readable(bytes(terminal.raw)))
    finally:
        terminal.close()


# the same Ctrl-C, on a machine so loaded that the prompt thread reaches readline (which sets the terminal up) only
# after the engine has stopped and the view has given the terminal back, while the process is still on its way out
CTRL_C_BEFORE_READLINE_SETS_THE_TERMINAL_UP = CTRL_C_AT_THE_FIRST_PROMPT.replace(
    "cli.main()",
    """\
import atexit, time
_input = tty.TerminalView._input


def late_input(view):
    time.sleep(0.5)
    return _input(view)


tty.TerminalView._input = late_input
atexit.register(time.sleep, 1.5)  # the way out takes a while (journals, Ray, a busy machine)
cli.main()
""",
)


def test_a_prompt_that_sets_the_terminal_up_late_is_given_back_too(tmp_path: Path) -> None:
    terminal = Terminal(
        *START, home=tmp_path, program=(sys.executable, "-c", CTRL_C_BEFORE_READLINE_SETS_THE_TERMINAL_UP)
    )
    try:
        assert terminal.wait() == 0
        assert terminal.modes() == terminal.modes_before  # not readline's raw keys without echo
        assert _has("engine stopped")(readable(bytes(terminal.raw)))
    finally:
        terminal.close()


def test_ctrl_d_at_an_empty_prompt_is_the_end_of_input(tmp_path: Path) -> None:
    terminal = Terminal(*START, home=tmp_path)
    try:
        terminal.prompt()
        terminal.type("\x04")
        assert terminal.wait() == 0
        lines = readable(bytes(terminal.raw))
        assert _has("end of input")(lines) and _has("engine stopped")(lines)
        assert terminal.modes() == terminal.modes_before
    finally:
        terminal.close()


def test_a_pipe_gets_the_json_protocol(tmp_path: Path) -> None:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", TERM="xterm", HOME=str(tmp_path))
    result = subprocess.run(
        [str(VELOZ), *START],
        input=b"ORDER BUY BTCUSDT 0.01 MARKET\nBALANCE\nQUIT\n",
        capture_output=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    objects = [orjson.loads(line) for line in result.stdout.splitlines()]  # every line is one JSON object
    kinds = [o["type"] for o in objects]
    assert "order_update" in kinds and "fill" in kinds and "account" in kinds
    assert b"veloz>" not in result.stdout and b"\x1b" not in result.stdout


def test_json_flag_on_a_terminal_gives_the_json_lines(tmp_path: Path) -> None:
    terminal = Terminal(*START, "--json", "--log-level", "WARNING", home=tmp_path, echo=False)
    try:
        terminal.until(lambda lines: any('"state":"started"' in line for line in lines), "the started status")
        terminal.type("ORDER BUY BTCUSDT 0.01 MARKET\rQUIT\r")
        assert terminal.wait() == 0
        lines = [line for line in bytes(terminal.raw).split(b"\r\n") if line]
        objects = [orjson.loads(line) for line in lines]
        assert any(o["type"] == "fill" and o["symbol"] == "BTCUSDT" for o in objects)
        assert any(o["type"] == "market" for o in objects)  # the protocol unchanged: quotes included
        assert b"veloz>" not in terminal.raw
    finally:
        terminal.close()


# ------------------------------------------------------------------------------------ formatting, fixed objects

FILL = {"type": "fill", "ts": 1, "cid": "a1", "order_id": 7, "symbol": "BTCUSDT", "side": "BUY", "price": "60012.5",
        "qty": "0.01", "fee": "0.06", "fee_asset": "USDT", "liquidity": "TAKER", "trade_id": 3}  # fmt: skip
FILLED = {"type": "order_update", "ts": 1, "cid": "a1", "order_id": 7, "symbol": "BTCUSDT", "side": "BUY",
          "order_type": "MARKET", "tif": "GTC", "price": None, "qty": "0.01", "filled_qty": "0.01",
          "status": "FILLED"}  # fmt: skip
REJECTED = {"type": "order_update", "ts": 2, "cid": "b2", "order_id": None, "symbol": "ETHUSDT", "side": "SELL",
            "order_type": "LIMIT", "price": "2600", "qty": "500", "filled_qty": "0", "status": "REJECTED",
            "reason": "INSUFFICIENT_BALANCE", "detail": "needs 500 ETH, 10 free"}  # fmt: skip
ACCOUNT = {"type": "account", "ts": 3, "account": "main",
           "balances": {"USDT": {"free": "99369.1055358", "locked": "630.8944642"}, "BTC": {"free": "1.01",
                        "locked": "0"}}}  # fmt: skip
MARKET = {"type": "market", "ts": 4, "kind": "book_top", "symbol": "BTCUSDT", "bid": "60010.1", "bid_qty": "1",
          "ask": "60012.5", "ask_qty": "2"}  # fmt: skip


def test_fill_line() -> None:
    assert fill_line(FILL) == "FILL  BUY 0.01 BTCUSDT @ 60012.5  fee 0.06 USDT  TAKER  cid=a1"


def test_rejection_line_names_the_reason_and_its_detail() -> None:
    assert order_line(REJECTED) == (
        "REJECTED  SELL 500 ETHUSDT @ 2600  reason=INSUFFICIENT_BALANCE (needs 500 ETH, 10 free)  cid=b2"
    )


def test_cancel_and_accept_lines() -> None:
    accepted = {**FILLED, "status": "ACCEPTED", "order_type": "LIMIT", "price": "59000", "tif": "IOC"}
    assert order_line(accepted) == "ORDER ACCEPTED  BUY 0.01 BTCUSDT @ 59000 IOC  cid=a1  id=7"
    cancelled = {"type": "order_update", "cid": "c3", "order_id": 9, "symbol": "BTCUSDT", "filled_qty": "0",
                 "status": "CANCELLED", "reason": "USER_CANCEL"}  # fmt: skip
    assert order_line(cancelled) == "ORDER CANCELLED  BTCUSDT  filled 0  reason=USER_CANCEL  cid=c3"


def test_balances_table_lines_decimal_points_up_and_totals_exactly() -> None:
    assert balances_table(ACCOUNT["balances"]) == [
        "ASSET           FREE       LOCKED      TOTAL",
        "BTC        1.01         0               1.01",
        "USDT   99369.1055358  630.8944642  100000",
    ]


def test_a_balance_above_what_a_person_may_type_is_totalled_not_shown_as_unknown() -> None:
    big = {"USDT": {"free": "10000029982.56742", "locked": "1"}, "BNB": {"free": "-0.5", "locked": "0"}}
    assert [line.split()[-1] for line in balances_table(big)[1:]] == ["-0.5", "10000029983.56742"]


def test_positions_and_orders_tables() -> None:
    position = {"type": "position", "ts": 1, "symbol": "BTCUSDT", "qty": "0.01", "avg_entry_price": "60025.18",
                "realized_pnl": "-0.6002518", "unrealized_pnl": "0.1922", "mark_price": "60044.4"}  # fmt: skip
    assert positions_table([position])[1].split() == ["BTCUSDT", "0.01", "60025.18", "60044.4", "0.1922", "-0.6002518"]
    assert positions_table([{"type": "position", "symbol": None, "positions": []}]) == ["no positions"]
    order = {"cid": "l1", "side": "BUY", "symbol": "BTCUSDT", "order_type": "LIMIT", "price": "59000", "qty": "0.01",
             "filled_qty": "0", "status": "ACCEPTED", "tif": "GTC"}  # fmt: skip
    assert orders_table([order])[1].split() == [
        "l1",
        "BUY",
        "BTCUSDT",
        "LIMIT",
        "59000",
        "0.01",
        "0",
        "ACCEPTED",
        "GTC",
    ]
    assert orders_table([]) == ["no open orders"]


def test_status_answer_is_key_value_lines_with_one_line_per_section() -> None:
    lines = status_lines({"type": "status", "ts": 1, "engine": "single-process", "open_orders": 0,
                          "venues": {"BTCUSDT": {"venue": "SIM", "trades": 2}}, "accounts": ["main"]})  # fmt: skip
    assert lines == [
        "STATUS  engine=single-process  open_orders=0  accounts=main",
        "  venues.BTCUSDT: venue=SIM  trades=2",
    ]


def test_describe_folds_the_filled_update_into_the_fill_and_prints_no_market_or_account_event() -> None:
    lines = describe([MARKET, FILL, FILLED, ACCOUNT], reply=False)
    assert [line.text for line in lines] == [fill_line(FILL) + "  (order filled)"]
    assert lines[0].style == "good"


def test_describe_shows_a_balance_answer_as_a_table() -> None:
    lines = describe([ACCOUNT], reply=True)
    assert lines[0].text == "BALANCE  account main"
    assert [line.text.strip() for line in lines[1:]] == balances_table(ACCOUNT["balances"])


def test_describe_an_error_and_a_help_answer() -> None:
    error = {"type": "error", "ts": 5, "code": "BAD_COMMAND", "message": "unknown command 'X'", "line": "X"}
    assert describe([error], reply=True)[0].text == "error: BAD_COMMAND unknown command 'X'  (line: X)"
    help_lines = describe([{"type": "status", "ts": 6, "help": "ORDER ...\n    CANCEL <cid>"}], reply=True)
    assert [line.text.strip() for line in help_lines[:3]] == ["commands:", "ORDER ...", "CANCEL <cid>"]


def test_panel_figures_come_from_the_events() -> None:
    state = ViewState()
    state.apply_snapshot({"balances": {"USDT": {"free": "100000", "locked": "0"}}, "open_orders": [{"cid": "o1"}],
                          "positions": [], "marks": {"ETHUSDT": "2500"}})  # fmt: skip
    for obj in (MARKET, {**FILLED, "status": "ACCEPTED", "cid": "o2"}, FILL, {**FILLED, "cid": "o2"}, ACCOUNT):
        state.observe(obj)
    state.last_event = 10.0
    bar, markets, balances = (
        text for _, text in state.panel(200, 12.5, mode="sim", urls={"api": "http://h:1/?token=secret"})
    )
    assert "open orders 1" in bar and "fills 1" in bar and "last event 2.5s ago" in bar and "API http://h:1" in bar
    assert "secret" not in bar
    assert markets == "BTCUSDT 60010.1 / 60012.5    ETHUSDT mark 2500"
    assert balances == "balances  BTC 1.01   USDT 99369.1055358 (630.8944642 locked)"


def test_an_order_whose_client_order_id_a_refused_order_reused_stays_open_in_the_panel() -> None:
    """A REJECTED DUPLICATE_CLIENT_ORDER_ID refused the new order only: the one resting under that id is still open
    (before: the panel counted it gone, and Tab no longer offered it to CANCEL)."""
    engine = Engine(engine_config(sim=True))
    engine.apply(Tick(ts=1))
    session = Session(LocalBackend(engine), symbols=set(engine.instruments), clock=FakeClock(), market=False)
    state = ViewState()
    for line in ("ORDER BUY BTCUSDT 0.01 59000 cid=a1", "ORDER BUY BTCUSDT 0.02 59000 cid=a1"):
        for obj in session.handle_line(line):
            state.observe(obj)
    assert [o.client_order_id for o in engine.oms.open_orders("main")] == ["a1"]
    assert state.open_orders == {"a1"}
    for obj in session.handle_line("CANCEL a1"):
        state.observe(obj)
    assert state.open_orders == set()


# ---------------------------------------------------------------------- the view in-process, on a plain terminal


@pytest.fixture
def service() -> EngineService:
    engine = Engine(engine_config(sim=True))
    engine.apply(Tick(ts=1))
    session = Session(LocalBackend(engine), symbols=set(engine.instruments), clock=FakeClock(), market=True)
    return EngineService(session)


def test_the_view_prints_what_a_session_line_emits_and_counts_what_it_dropped(
    service: EngineService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "dumb")  # no escapes: the lines as they are
    out = io.StringIO()
    view = TerminalView(service, stdin=io.StringIO(), out=out, history=None, max_pending=2)
    for _ in range(3):
        view.write([{"type": "error", "ts": 1, "code": "X", "message": "old"}], reply=False)
    objects, _ = service.session.handle("ORDER BUY BTCUSDT 0.01 MARKET cid=m1")
    view.write(objects, reply=True)
    view.close()
    text = out.getvalue()
    assert "view: 2 batches of events not shown" in text
    assert text.count("error: X old") == 1
    assert "FILL  BUY 0.01 BTCUSDT @" in text and "cid=m1  (order filled)" in text
    assert view.state.balances["BTC"] == ("2.01", "0") and view.state.fills == 1
    assert "{" not in text


def test_the_panel_says_the_engine_is_halted_until_its_status_says_otherwise(service: EngineService) -> None:
    """Before: a halt was one line that scrolled away; the panel looked the same while every new order was refused."""
    from veloz_actors.core.risk_monitor import kill_switch_commands
    from veloz_actors.messages import HaltTrading, ResetCircuitBreaker

    view = TerminalView(service, stdin=io.StringIO(), out=io.StringIO(), history=None)
    view.write([{"type": "status", "ts": 1, **service.session.backend.status(), "state": "started"}], reply=True)
    assert "HALTED" not in view.state.panel(200, 0.0, mode="sim", urls={})[0][1]
    view.write(service.apply(HaltTrading(account_id="main", reason="drawdown 21%", ts=2)), reply=False)
    style, bar = view.state.panel(200, 0.0, mode="sim", urls={})[0]
    assert "HALTED (drawdown 21%)" in bar and style == "live"
    view.write(service.session.handle_line("ORDER BUY BTCUSDT 0.01 MARKET cid=h1"), reply=True)
    assert view.state.halted == "drawdown 21%"  # the refusal keeps the reason the trip gave
    service.apply(ResetCircuitBreaker(account_id="main", ts=3))  # e.g. the API's resume: no event says it
    view._refresh_halt(service)  # what the view asks, every few seconds while it shows a halt
    assert view.state.halted is None
    assert "HALTED" not in view.state.panel(200, 0.0, mode="sim", urls={})[0][1]
    for command in kill_switch_commands(4):  # the kill switch, engine-wide
        view.write(service.apply(command), reply=False)
    view.write(service.session.handle_line("RESET"), reply=True)  # lifts main's own breaker, not the engine's halt
    view._refresh_halt(service)
    assert view.state.halted == "kill switch"


def test_an_empty_side_of_a_book_shows_as_a_dash_not_a_price_of_zero() -> None:
    """A market sell that took every bid leaves ``bid`` "0" in the book_top: the panel read ``BTCUSDT 0 / 60012.5``."""
    state = ViewState()
    state.observe({"type": "market", "ts": 1, "kind": "book_top", "symbol": "BTCUSDT", "bid": "0", "bid_qty": "0",
                   "ask": "60012.5", "ask_qty": "1"})  # fmt: skip
    state.observe({"type": "market", "ts": 2, "kind": "book_top", "symbol": "ETHUSDT", "bid": "2500", "bid_qty": "1",
                   "ask": "0", "ask_qty": "0"})  # fmt: skip
    markets = state.panel(200, 0.0, mode="sim", urls={})[1][1]
    assert markets == "BTCUSDT - / 60012.5    ETHUSDT 2500 / -"


def test_the_panel_marks_a_disconnected_venue_and_a_halted_or_unsynced_symbol_until_they_recover() -> None:
    """Before: each was one line that scrolled away (a symbol Binance halted in the info colour), and the panel went
    on showing the last quotes as if they were live."""
    from veloz_actors.interfaces.stdio import EventFormatter
    from veloz_actors.messages import VenueConnection

    formatter, state = EventFormatter(), ViewState()

    def see(**fields: Any) -> None:
        for obj in formatter.format(VenueConnection(venue="binance", ts=1, **fields)):
            state.observe(obj)

    state.observe(MARKET)
    see(state="disconnected", detail="socket closed")
    see(state="halted", symbol="ETHUSDT", detail="status BREAK")
    see(state="error", symbol="BTCUSDT", detail="invalid symbol")
    (style, bar), (_, markets), _ = state.panel(200, 0.0, mode="paper", urls={})
    assert "binance DISCONNECTED" in bar and style == "live"
    assert markets == "BTCUSDT 60010.1 / 60012.5  UNSYNCED    ETHUSDT  HALTED"
    see(state="connected")
    see(state="resynced", symbol="BTCUSDT")
    see(state="trading", symbol="ETHUSDT")
    (style, bar), (_, markets), _ = state.panel(200, 0.0, mode="paper", urls={})
    assert "DISCONNECTED" not in bar and style == "bar"
    assert markets == "BTCUSDT 60010.1 / 60012.5"
    halted = describe(formatter.format(VenueConnection(venue="binance", state="halted", symbol="ETHUSDT", ts=2)),
                      reply=False)  # fmt: skip
    assert halted[0].style == "warn"


def test_a_view_that_fails_on_an_event_never_stops_the_engine(
    service: EngineService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The view's ``write`` runs on the engine thread: before, an exception there ended the engine loop (and the
    process) on the spot. Now it is said once on the screen and the engine goes on."""
    monkeypatch.setenv("TERM", "dumb")
    out = io.StringIO()
    view = TerminalView(service, stdin=io.StringIO(), out=out, history=None)

    def broken(obj: dict[str, Any]) -> None:
        if obj.get("type") == "fill":
            raise KeyError("a field the view expected")

    monkeypatch.setattr(view.state, "observe", broken)
    service.sink = view
    for line in ("ORDER BUY BTCUSDT 0.01 MARKET cid=v1", "ORDER BUY BTCUSDT 0.01 MARKET cid=v2", "BALANCE"):
        service.submit_line(line)
    service.end_of_input()
    assert service.run(install_signals=False) == 0
    view.close()
    text = out.getvalue()
    assert text.count("view: cannot show an event (KeyError") == 1
    assert "cid=v1" in text and "cid=v2" in text and "BALANCE  account main" in text
    assert service.session.backend.balances()["BTC"] == (d("2.02"), 0)  # both orders filled
