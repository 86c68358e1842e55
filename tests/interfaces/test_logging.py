"""Structured logs (``veloz_actors/logs.py``): formats, levels, the rotating file in the run folder, the actor field,
secrets redacted, the order lifecycle logged cheaply, and ``veloz start --single-process --log-format json`` writing an
INFO line for an order's fill."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import timeit
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from veloz_actors._exceptions import ConfigError, InvalidInput
from veloz_actors.config import load_engine_config, parse_engine_config, with_logging
from veloz_actors.logs import (
    LogSettings,
    configure_logging,
    flush_logs,
    log_events,
    log_file_status,
    redact,
    redact_url,
    register_secrets,
)
from veloz_actors.messages import Error, OrderType, PlaceOrder, Side, Tick, TimeInForce
from veloz_actors.venues.engine import Engine

from .api_helpers import running_api

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "engine.yaml"
KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"  # Binance's documented example key
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"  # and its example secret


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Each test configures the ``veloz`` logger of this process; put it back as it was afterwards."""
    logger = logging.getLogger("veloz")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(level)
    logger.propagate = propagate


def _json_lines(path: Path) -> list[dict]:
    flush_logs()  # the writer thread works behind the callers
    return [orjson.loads(line) for line in path.read_text().splitlines()]


def _order(cid: str, qty: int = 1_000_000) -> PlaceOrder:
    return PlaceOrder(
        client_order_id=cid, account_id="main", symbol="BTCUSDT", side=Side.BUY, order_type=OrderType.MARKET,
        tif=TimeInForce.GTC, price=None, qty=qty, ts=2,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------ formats


def test_json_lines_carry_ts_level_logger_actor_msg_and_the_extra_fields(tmp_path: Path) -> None:
    path = configure_logging(LogSettings(format="json", file=str(tmp_path / "veloz.log")), actor="cli")
    logging.getLogger("veloz.test").info("order filled", extra={"cid": "a1", "qty": "0.01"})
    [line] = _json_lines(tmp_path / "veloz.log")
    assert path == tmp_path / "veloz.log"
    assert line["level"] == "INFO" and line["logger"] == "veloz.test" and line["actor"] == "cli"
    assert line["msg"] == "order filled" and line["cid"] == "a1" and line["qty"] == "0.01"
    # ISO-8601 UTC with milliseconds: 2024-05-01T12:00:00.123Z
    assert len(line["ts"]) == 24 and line["ts"][10] == "T" and line["ts"][19] == "." and line["ts"].endswith("Z")


def test_a_call_may_name_another_actor_and_a_traceback_travels_as_exc(tmp_path: Path) -> None:
    configure_logging(LogSettings(format="json", file=str(tmp_path / "veloz.log")), actor="cli")
    log = logging.getLogger("veloz.test")
    log.warning("from elsewhere", extra={"actor": "engine"})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    first, second = _json_lines(tmp_path / "veloz.log")
    assert first["actor"] == "engine"
    assert second["level"] == "ERROR" and "RuntimeError: boom" in second["exc"]


def test_text_lines_name_level_actor_logger_and_fields(tmp_path: Path) -> None:
    configure_logging(LogSettings(format="text", file=str(tmp_path / "veloz.log")), actor="oms")
    logging.getLogger("veloz.oms").info("order accepted", extra={"cid": "b2", "detail": "two words"})
    flush_logs()
    [line] = (tmp_path / "veloz-oms.log").read_text().splitlines()
    ts, level, actor, logger, *rest = line.split()
    assert (level, actor, logger) == ("INFO", "oms", "veloz.oms:")
    assert ts.endswith("Z") and " cid=b2 " in line and line.endswith('detail="two words"')


def test_a_text_line_cannot_be_forged_by_a_message_or_a_field(tmp_path: Path) -> None:
    """Line breaks and control characters of a message (an ``Error`` event's text from a venue) or a field stay on
    the record's line, escaped: nothing that follows can pass for a record of its own."""
    configure_logging(LogSettings(format="text", file=str(tmp_path / "veloz.log")), actor="engine")
    forged = "2026-12-03T06:00:00.000Z INFO    engine veloz.engine: order filled cid=forged qty=100"
    log = logging.getLogger("veloz.engine")
    log_events(log, [Error(ts=1, code="VENUE_BAD_REPORT", message=f"bad\n{forged}\r\n{forged}")])
    log.warning("sep\u2028%s", forged, extra={"detail": f"x\x1b[2J\n{forged}"})
    flush_logs()
    text = (tmp_path / "veloz.log").read_text()
    lines = text.splitlines()  # also breaks at U+2028, as some viewers do
    assert len(lines) == 2 and not any(line.startswith(forged[:24]) for line in lines)
    assert lines[0].endswith(f"error: bad\\n{forged}\\r\\n{forged} code=VENUE_BAD_REPORT")
    assert "sep\\u2028" in lines[1] and "\x1b" not in text and 'detail="x\\u001b[2J\\n' in lines[1]


def test_a_json_field_that_cannot_be_encoded_is_written_as_text_and_the_record_is_kept(tmp_path: Path) -> None:
    configure_logging(LogSettings(format="json", file=str(tmp_path / "veloz.log")), actor="cli")
    log = logging.getLogger("veloz.test")
    log.warning("balances", extra={"balances": {1: "x"}, "cid": "a1"})
    log.warning("trade", extra={"trade_id": 2**70, "nested": {"id": 2**70}})
    log.warning("keyed by tuples", extra={"pairs": {(1, 2): "x"}})
    first, second, third = _json_lines(tmp_path / "veloz.log")  # one line per record, none lost
    assert first["msg"] == "balances" and first["balances"] == {"1": "x"} and first["cid"] == "a1"
    assert second["trade_id"] == str(2**70) and second["nested"] == str({"id": 2**70})
    assert third["pairs"] == "{(1, 2): 'x'}"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_lone_surrogate_is_written_escaped_and_the_record_is_kept(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture
) -> None:
    """Text holding a lone surrogate (the stdlib's ``json.loads('"\\ud83d"')``, a file name that is not UTF-8 read from
    the command line) cannot be encoded as UTF-8: the file refused the record (line lost) and printed a "Logging
    error" traceback on stderr for each one."""
    configure_logging(LogSettings(format=fmt, file=str(tmp_path / "veloz.log")), actor="cli")
    log = logging.getLogger("veloz.test")
    log.warning("venue said %s", "bad \ud83d half", extra={"path": "run-\udcff.log"})
    try:
        raise RuntimeError("no file \udcff")
    except RuntimeError:
        log.exception("failed")
    log.warning("after")
    flush_logs()
    assert "Logging error" not in capsys.readouterr().err
    if fmt == "json":
        said, failed, after = _json_lines(tmp_path / "veloz.log")
        assert (said["msg"], said["path"], after["msg"]) == ("venue said bad \\ud83d half", "run-\\udcff.log", "after")
        assert failed["exc"].endswith("RuntimeError: no file \\udcff")
    else:
        text = (tmp_path / "veloz.log").read_text(encoding="utf-8")
        assert "venue said bad \\ud83d half path=run-\\udcff.log\n" in text
        assert "RuntimeError: no file \\udcff\n" in text
        assert text.endswith("veloz.test: after\n")


# ------------------------------------------------------------------------------------------------------- levels


def test_the_level_filters_the_file(tmp_path: Path) -> None:
    configure_logging(LogSettings(format="json", level="WARNING", file=str(tmp_path / "veloz.log")), actor="cli")
    log = logging.getLogger("veloz.test")
    log.debug("debug")
    log.info("info")
    log.warning("warning")
    log.error("error")
    assert [line["msg"] for line in _json_lines(tmp_path / "veloz.log")] == ["warning", "error"]


def test_debug_reaches_the_file_at_level_debug(tmp_path: Path) -> None:
    configure_logging(LogSettings(format="json", level="DEBUG", file=str(tmp_path / "veloz.log")), actor="cli")
    logging.getLogger("veloz.test").debug("details")
    assert [line["level"] for line in _json_lines(tmp_path / "veloz.log")] == ["DEBUG"]


def test_stderr_shows_warnings_only_while_a_file_has_the_rest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    configure_logging(LogSettings(format="json", file=str(tmp_path / "veloz.log")), actor="cli")
    log = logging.getLogger("veloz.test")
    log.info("routine")
    log.warning("attention")
    flush_logs()
    err = capsys.readouterr().err
    assert [orjson.loads(line)["msg"] for line in err.splitlines()] == ["attention"]
    assert [line["msg"] for line in _json_lines(tmp_path / "veloz.log")] == ["routine", "attention"]


def test_without_a_run_folder_stderr_takes_the_level(capsys: pytest.CaptureFixture) -> None:
    assert configure_logging(LogSettings(format="json", level="INFO"), actor="cli") is None
    logging.getLogger("veloz.test").info("routine")
    flush_logs()
    assert [orjson.loads(line)["msg"] for line in capsys.readouterr().err.splitlines()] == ["routine"]


def test_stderr_lines_go_to_the_stderr_of_the_moment_not_to_one_closed_since(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command run in-process (typer's ``CliRunner``, as tests/interfaces/test_cli_single_process.py does) sets
    logging up while ``sys.stderr`` is the runner's stream, which it closes when the command returns. The stderr
    handler kept that stream: every later ``veloz`` warning of the process was a "--- Logging error ---" traceback
    (seen in CI from test_http_api.py's test_a_readable_token_file_is_made_private)."""
    borrowed = io.StringIO()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", borrowed)
        configure_logging(LogSettings(format="json"), actor="cli")
    borrowed.close()
    logging.getLogger("veloz.test").warning("after the command")
    flush_logs()
    assert [orjson.loads(line)["msg"] for line in capsys.readouterr().err.splitlines()] == ["after the command"]


def test_configuring_again_replaces_the_handlers(tmp_path: Path) -> None:
    configure_logging(LogSettings(format="json", file=str(tmp_path / "a.log")), actor="cli")
    configure_logging(LogSettings(format="json", file=str(tmp_path / "b.log")), actor="cli")
    logging.getLogger("veloz.test").info("once")
    flush_logs()
    assert (tmp_path / "a.log").read_text() == ""
    assert len(_json_lines(tmp_path / "b.log")) == 1


# --------------------------------------------------------------------------------------------------------- files


def test_the_file_rotates_at_max_bytes_and_keeps_backups(tmp_path: Path) -> None:
    settings = LogSettings(format="json", file=str(tmp_path / "veloz.log"), max_bytes=2048, backups=2)
    configure_logging(settings, actor="cli")
    log = logging.getLogger("veloz.test")
    for i in range(200):
        log.info("line", extra={"n": i})
    flush_logs()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["veloz.log", "veloz.log.1", "veloz.log.2"]
    assert all((tmp_path / name).stat().st_size <= 2048 for name in files)
    assert _json_lines(tmp_path / "veloz.log")[-1]["n"] == 199  # the newest lines are in the current file


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device whose writes fail ENOSPC")
def test_a_log_file_that_refuses_writes_says_so_once_and_again_when_it_takes_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A full disk (``/dev/full`` behind the file's name) costs the lines, not a traceback on stderr per record: one
    ERROR naming the file and the reason, then silence, then a WARNING with the count once the file takes lines."""
    path = tmp_path / "veloz.log"
    path.symlink_to("/dev/full")
    configure_logging(LogSettings(format="json", file=str(path)), actor="cli")
    log = logging.getLogger("veloz.test")
    for i in range(100):
        log.info("line", extra={"n": i})
    log.warning("attention")
    flush_logs()
    err = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]  # every line JSON: no traceback
    assert [(x["level"], x["msg"]) for x in err] == [
        ("WARNING", "attention"),
        ("ERROR", f"cannot write the log file {path} (No space left on device): its lines are dropped until it "
                  "can be written again"),
    ]  # fmt: skip
    path.unlink()  # room again: the next record opens the file again
    path.write_text("")
    log.info("back")
    written = _json_lines(path)
    assert [x["msg"] for x in written] == [
        "back",
        f"log file {path} written again: 102 lines were lost (No space left on device)",  # 101 and the ERROR
    ]
    assert [x["msg"] for x in map(orjson.loads, capsys.readouterr().err.splitlines())] == [written[1]["msg"]]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a device whose writes fail ENOSPC")
def test_lines_dropped_because_the_writer_fell_behind_are_counted_and_said_in_the_file(tmp_path: Path) -> None:
    """More records than the writer thread's queue holds (10,000; an OMS at INFO in a burst of orders) were dropped
    without a trace: STATUS ``logs`` said ``dropped: 0`` and no line said that any were missing."""
    configure_logging(LogSettings(format="json", file=str(tmp_path / "veloz.log")), actor="cli")
    # VeloZ's own front handler (an earlier test in this process may have left another one on the logger)
    [writer] = [h for h in logging.getLogger("veloz").handlers if getattr(h, "_veloz", False)]
    log = logging.getLogger("veloz.test")
    with writer._drain_lock:  # type: ignore[attr-defined]  # the writer busy: the records wait in its queue
        for i in range(writer.maxsize + 5):  # type: ignore[attr-defined]
            log.info("order accepted", extra={"i": i})
    lines = _json_lines(tmp_path / "veloz.log")
    assert [line["i"] for line in lines[:-1]] == list(range(writer.maxsize))  # type: ignore[attr-defined]
    assert lines[-1]["level"] == "WARNING" and lines[-1]["msg"].startswith("5 log lines were dropped: ")
    status = log_file_status()
    assert status is not None and status["dropped"] == 5


def test_the_engines_status_counts_the_lines_its_log_file_refused(tmp_path: Path) -> None:
    """The single-process engine's STATUS (here through the API) names its log file and counts the lines it lost."""
    path = tmp_path / "veloz.log"
    path.symlink_to("/dev/full")
    configure_logging(LogSettings(format="json", level="INFO", file=str(path)), actor="engine")
    with running_api(tmp_path / "run") as running:
        client = running.client()
        flush_logs()
        before = client.get("/api/v1/status")["logs"]["engine"]  # the API's own INFO lines were refused already
        assert before["file"] == str(path) and before["dropped"] >= 1
        assert before["failing"] == "No space left on device"
        for i in range(5):
            logging.getLogger("veloz.test").info("line", extra={"n": i})
        flush_logs()
        assert client.get("/api/v1/status")["logs"]["engine"] == {**before, "dropped": before["dropped"] + 5}
        path.unlink()  # room again: the count stays (lines lost since the file was opened), the failure is over
        path.write_text("")
        logging.getLogger("veloz.test").info("back")
        flush_logs()
        after = client.get("/api/v1/status")["logs"]["engine"]
        assert after == {"file": str(path), "dropped": before["dropped"] + 5, "failing": None}
        client.close()


def test_without_a_log_file_status_lists_none(tmp_path: Path) -> None:
    configure_logging(LogSettings(format="json"), actor="engine")
    with running_api(tmp_path) as running:
        client = running.client()
        assert client.get("/api/v1/status")["logs"] == {}
        client.close()


def test_each_actor_process_writes_a_file_of_its_own_beside_the_drivers(tmp_path: Path) -> None:
    settings = LogSettings(format="json", file=str(tmp_path / "veloz.log"))
    assert settings.file_for(None) == tmp_path / "veloz.log"
    assert settings.file_for("venue:BTCUSDT") == tmp_path / "veloz-venue-BTCUSDT.log"
    assert configure_logging(settings, actor="venue:BTCUSDT") == tmp_path / "veloz-venue-BTCUSDT.log"
    logging.getLogger("veloz.venue").warning("book resynced", extra={"symbol": "BTCUSDT"})
    [line] = _json_lines(tmp_path / "veloz-venue-BTCUSDT.log")
    assert line["actor"] == "venue-BTCUSDT" and not (tmp_path / "veloz.log").exists()


def test_the_config_places_the_file_in_the_run_folder_or_where_it_says(tmp_path: Path) -> None:
    config = load_engine_config(CONFIG)
    assert config.logging.settings(tmp_path).file == str(tmp_path / "veloz.log")
    assert config.logging.settings(None).file is None  # --no-journal: no run folder, stderr only
    named = config.logging.model_copy(update={"file": str(tmp_path / "logs" / "engine.log")})
    assert named.settings(None).file == str(tmp_path / "logs" / "engine.log")
    assert config.logging.model_copy(update={"file": False}).settings(tmp_path).file is None


# -------------------------------------------------------------------------------------------------------- config


def test_the_logging_section_validates_and_names_a_bad_field() -> None:
    data = load_engine_config(CONFIG).model_dump()
    data["logging"] = {"format": "JSON", "level": "debug", "max_bytes": 4096, "backups": 3}
    settings = parse_engine_config(data).logging.settings(None)
    assert (settings.format, settings.level, settings.max_bytes, settings.backups) == ("json", "DEBUG", 4096, 3)
    data["logging"] = {"format": "xml"}
    with pytest.raises(ConfigError, match="logging.format"):
        parse_engine_config(data)
    data["logging"] = {"backups": 0}
    with pytest.raises(ConfigError, match="logging.backups"):
        parse_engine_config(data)


def test_the_cli_options_override_the_config_and_bad_values_name_the_option() -> None:
    config = with_logging(load_engine_config(CONFIG), format="json", level="warning")
    assert (config.logging.format, config.logging.level) == ("json", "WARNING")
    with pytest.raises(ConfigError, match="--log-level: expected one of DEBUG, INFO, WARNING, ERROR, got 'LOUD'"):
        with_logging(config, level="LOUD")
    with pytest.raises(ConfigError, match="--log-format: expected one of text, json, got 'xml'"):
        with_logging(config, format="xml")
    with pytest.raises(InvalidInput, match="logging.max_bytes"):
        LogSettings(max_bytes=10)


@pytest.mark.parametrize(("option", "value"), [("--log-level", "LOUD"), ("--log-format", "xml")])
def test_veloz_start_refuses_a_bad_log_option_in_one_line(option: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "veloz_actors.interfaces.cli", "start", "--local", "--single-process", option, value],
        input=b"QUIT\n", capture_output=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    err = result.stderr.decode()
    assert result.returncode == 2 and err.startswith(f"error: {option}: expected one of") and len(err.splitlines()) == 1
    assert result.stdout == b""


def test_a_log_file_that_cannot_be_written_is_a_config_error_and_keeps_the_handlers(tmp_path: Path) -> None:
    configure_logging(LogSettings(format="json", file=str(tmp_path / "a.log")), actor="cli")
    blocker = tmp_path / "data.csv"
    blocker.write_text("")
    with pytest.raises(ConfigError) as caught:
        configure_logging(LogSettings(file=str(blocker / "veloz.log")), actor="cli")
    assert str(caught.value) == f"cannot write the log file {blocker / 'veloz.log'} ({blocker} is a file, not a folder)"
    logging.getLogger("veloz.test").info("still logged")
    flush_logs()
    assert [line["msg"] for line in _json_lines(tmp_path / "a.log")] == ["still logged"]


@pytest.mark.parametrize("where", ["--journal", "logging.file"])
def test_veloz_start_names_the_option_of_a_log_file_it_cannot_write(tmp_path: Path, where: str) -> None:
    """Before: a FileExistsError traceback from the log file's mkdir."""
    blocker = tmp_path / "data.csv"
    blocker.write_text("")
    args = ["--journal", str(blocker / "e.journal")]
    if where == "logging.file":
        config = tmp_path / "engine.yaml"
        config.write_text(CONFIG.read_text().replace("    file: true", f"    file: {blocker / 'veloz.log'}"))
        args = ["--no-journal", "--config", str(config)]
    result = subprocess.run(
        [sys.executable, "-m", "veloz_actors.interfaces.cli", "start", "--local", "--single-process", *args],
        input=b"QUIT\n", capture_output=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    option = f"--journal {blocker / 'e.journal'}" if where == "--journal" else "logging.file"
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode() == (
        f"error: {option}: cannot write the log file {blocker / 'veloz.log'} ({blocker} is a file, not a folder)\n"
    )


# ------------------------------------------------------------------------------------------------------- secrets


def test_secrets_never_reach_stderr_or_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "Zy9" * 10  # a secret that has no key-like shape: known only from the environment
    monkeypatch.setenv("BINANCE_API_KEY", KEY)
    monkeypatch.setenv("BINANCE_API_SECRET", other)
    configure_logging(LogSettings(format="json", file=str(tmp_path / "veloz.log")), actor="cli")
    log = logging.getLogger("veloz.binance")
    log.warning("GET /api/v3/order?symbol=BTCUSDT&timestamp=1&signature=%s failed", "c8db5" * 8)
    log.warning("headers %s", {"X-MBX-APIKEY": KEY, "Accept": "application/json"})
    log.warning("signing with %s", other, extra={"params": {"apiKey": KEY, "secret": SECRET}, "raw": SECRET})
    try:
        raise ValueError(f"bad key {KEY}")
    except ValueError:
        log.exception("request failed")
    flush_logs()
    err = capsys.readouterr().err
    written = (tmp_path / "veloz.log").read_text()
    for text in (err, written):
        assert len(text.splitlines()) == 4
        for secret in (KEY, SECRET, other, "c8db5" * 8):
            assert secret not in text
        assert "signature=***" in text and "***" in text
    assert "symbol=BTCUSDT" in written and "application/json" in written  # what is not a secret stays


def test_the_shapes_a_secret_takes_in_a_line_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PEM key (with + and /), the key's password, a signature in JSON-escaped text and URL-encoded, extra fields
    holding bytes, an exception or a set, and a secret read from a credentials file after logging was set up."""
    monkeypatch.setenv("BINANCE_PRIVATE_KEY_PASSWORD", "correct-horse-battery-staple")
    configure_logging(LogSettings(format="json", file=str(tmp_path / "veloz.log")), actor="cli")
    body = "MC4CAQAwBQYDK2VwBCIEIKo3eR9x+Qk/2vY1lJp0Zs8Vq6m5L0cW3aN7bT1uE4einG+"
    sig = "q3Zl+8x/Pz0WbF1d7Kc2Yh4Ln6Jm9Vt5Rs0Ue3Ai1Oo8Gg2Hh7Jj4Kk6Ll9Mm0Nn5Pp1Qq3Rr7Ss2Tt0Uu4Vv8Ww=="
    late = "from-the-file-" + "x7" * 12
    register_secrets(late)
    log = logging.getLogger("veloz.binance")
    log.error("cannot load key: %s", f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
    log.warning("password %s rejected", "correct-horse-battery-staple")
    log.warning("frame: %s", '{\\"apiKey\\":\\"abcdefgh12\\",\\"signature\\":\\"' + sig + '\\"}')
    log.warning("redirected to https://proxy/?u=https%3A%2F%2Fapi%2Forder%3Fsymbol%3DBTCUSDT%26signature%3D" + sig[:40])
    log.info("raw", extra={"body": SECRET.encode(), "error": ValueError(f"bad signature={sig}"), "keys": {KEY}})
    log.info("loaded %s", late)
    flush_logs()
    written = (tmp_path / "veloz.log").read_text()
    assert len(written.splitlines()) == 6
    for secret in (body, sig, sig[:40], "correct-horse", SECRET, KEY, late, "abcdefgh12"):
        assert secret not in written, secret


def test_the_api_token_never_reaches_a_veloz_log_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HTTP API registers its token when it starts: bare, as a bearer token or in a query string it is redacted
    from every ``veloz`` line; and any bearer or ``token=`` value is, a client's wrong token included."""
    monkeypatch.delenv("VELOZ_API_TOKEN", raising=False)
    configure_logging(LogSettings(format="json", file=str(tmp_path / "veloz.log")), actor="cli")
    log = logging.getLogger("veloz.test")
    wrong = "wrong-token-" + "q7" * 10
    with running_api(tmp_path / "run") as running:
        token = running.token
        log.warning("read %s from the token file", token)
        log.warning("request failed: headers={'Authorization': 'Bearer %s'}", token)
        log.warning("ws connect %s/api/v1/stream?token=%s&queue=5", running.server.url, token)
        log.warning(
            "refused: Authorization: Bearer %s; stream?token=%s", wrong, wrong, extra={"url": f"?token={token}"}
        )
    flush_logs()
    err = capsys.readouterr().err
    written = (tmp_path / "veloz.log").read_text()
    for text in (err, written):
        assert len([line for line in text.splitlines() if '"logger":"veloz.test"' in line]) == 4
        assert token not in text and wrong not in text and "q7q7" not in text
        assert "Bearer ***" in text and "token=***&queue=5" in text  # what is not the token stays


def test_the_veloz_lines_do_not_go_on_to_the_root_loggers_handlers(tmp_path: Path) -> None:
    """Redaction sits on the veloz handlers: an embedding program's root handler would get the raw record."""
    seen: list[str] = []

    class Sink(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    root = logging.getLogger()
    sink = Sink()
    root.addHandler(sink)
    try:
        configure_logging(LogSettings(format="json", file=str(tmp_path / "veloz.log")), actor="cli")
        logging.getLogger("veloz.binance").warning("secret is %s", SECRET)
        flush_logs()
    finally:
        root.removeHandler(sink)
    assert seen == [] and SECRET not in (tmp_path / "veloz.log").read_text()


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "order filled cid=a1 symbol=BTCUSDT qty=0.01 price=60025.18 trade_id=123456789"
    assert redact(text) == text
    assert redact(f"key {KEY}.") == "key ***."


def test_a_url_credential_in_any_log_line_is_redacted(tmp_path: Path) -> None:
    """A URL printed whole (a config's repr, an exception naming it): its userinfo and any key-named query value go,
    the host, the path and the other parameters stay."""
    configure_logging(LogSettings(format="json", file=str(tmp_path / "veloz.log")), actor="cli")
    log = logging.getLogger("veloz.test")
    log.warning("venue %r", {"rest_url": "https://trader:s3cret-pass@proxy:8443/api?recvWindow=5000&key=pr1vkey"})
    log.warning("connect to wss://tok3nvalue@proxy/ws?streams=btcusdt@depth&listenKey=l1stenkey failed")
    flush_logs()
    written = (tmp_path / "veloz.log").read_text()
    for secret in ("s3cret-pass", "trader", "pr1vkey", "tok3nvalue", "l1stenkey"):
        assert secret not in written, secret
    assert "https://***@proxy:8443/api?recvWindow=5000&key=***" in written
    assert "wss://***@proxy/ws?streams=btcusdt@depth&listenKey=*** failed" in written
    text = "GET https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=5000 from me@example.com"
    assert redact(text) == text


# ------------------------------------------------------------------------------------------------- order events


def _engine_events() -> list:
    engine = Engine(load_engine_config(CONFIG).engine_config())
    engine.apply(Tick(ts=1))  # the market maker quotes
    events = engine.apply(_order("f1"))
    events += engine.apply(_order("r1", qty=10**20))  # far beyond max_order_qty: rejected
    return events


def test_log_events_logs_the_order_lifecycle_with_its_numbers(tmp_path: Path) -> None:
    configure_logging(LogSettings(format="json", file=str(tmp_path / "veloz.log")), actor="engine")
    events = _engine_events()
    log_events(logging.getLogger("veloz.engine"), events)
    lines = _json_lines(tmp_path / "veloz.log")
    by_msg = {(line["msg"], line["cid"]): line for line in lines}
    fill = by_msg[("order filled", "f1")]
    assert fill["level"] == "INFO" and fill["actor"] == "engine" and fill["symbol"] == "BTCUSDT"
    assert fill["side"] == "BUY" and fill["qty"] == "0.01" and float(fill["price"]) > 0
    assert by_msg[("order accepted", "f1")]["qty"] == "0.01"
    rejected = by_msg[("order rejected", "r1")]
    assert rejected["reason"] and rejected["level"] == "INFO"
    kinds = {type(e).__name__ for e in events}
    assert {"AccountUpdated", "PositionUpdated"} <= kinds  # in the step, never logged
    assert len(lines) == sum(type(e).__name__.startswith("Order") for e in events)


def test_market_data_is_never_logged(tmp_path: Path) -> None:
    configure_logging(LogSettings(format="json", level="DEBUG", file=str(tmp_path / "veloz.log")), actor="engine")
    engine = Engine(load_engine_config(CONFIG).engine_config())

    ticks = [e for ts in range(1, 20) for e in engine.apply(Tick(ts=ts * 250_000_000))]
    assert any(type(e).__name__ == "BookTop" for e in ticks)
    log_events(logging.getLogger("veloz.engine"), ticks)
    assert not any(line["msg"].startswith(("book", "trade")) for line in _json_lines(tmp_path / "veloz.log"))
    assert all(line["msg"].startswith("order") for line in _json_lines(tmp_path / "veloz.log"))


def test_a_filtered_step_costs_a_few_microseconds_at_most() -> None:
    """With the level above INFO an order step's logging is one level check (a fraction of a microsecond here;
    README "Logs"); the bound leaves room for a loaded machine."""
    configure_logging(LogSettings(format="json", level="ERROR"), actor="engine")
    logger = logging.getLogger("veloz.engine")
    events = _engine_events()
    assert not logger.isEnabledFor(logging.WARNING)
    best = min(timeit.repeat(lambda: log_events(logger, events), number=2_000, repeat=5)) / 2_000
    assert best < 3e-6, f"{best * 1e6:.2f} us per filtered step"


# ----------------------------------------------------------------------------------------------------- the CLI


def test_a_single_process_session_logs_the_fill_of_its_order_as_a_json_line(tmp_path: Path) -> None:
    journal = tmp_path / "run" / "engine.journal"
    result = subprocess.run(
        [sys.executable, "-m", "veloz_actors.interfaces.cli", "start", "--local", "--single-process", "--no-market",
         "--config", str(CONFIG), "--journal", str(journal), "--log-format", "json"],
        input=b"ORDER BUY BTCUSDT 0.01 MARKET cid=logged-1\nQUIT\n", capture_output=True, cwd=ROOT, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0 and result.stderr == b"", result.stderr.decode()[-2000:]
    printed = [orjson.loads(line) for line in result.stdout.splitlines()]  # stdout: the protocol, nothing else
    assert printed[0]["state"] == "started" and printed[-1]["state"] == "stopped"
    assert any(o["type"] == "fill" and o["cid"] == "logged-1" for o in printed)
    lines = _json_lines(tmp_path / "run" / "veloz.log")
    [fill] = [line for line in lines if line["msg"] == "order filled"]
    assert fill["level"] == "INFO" and fill["cid"] == "logged-1" and fill["actor"] == "engine"
    assert fill["logger"] == "veloz.engine" and fill["qty"] == "0.01" and fill["side"] == "BUY"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.binance.com", "https://api.binance.com"),
        ("https://me:pw@proxy.example:8443/api", "https://***@proxy.example:8443/api"),
        ("wss://host/ws-api/v3?apiKey=abc&signature=x1&returnRateLimits=false",
         "wss://host/ws-api/v3?apiKey=***&signature=***&returnRateLimits=false"),
        ("wss://tok3n@host/stream?streams=btcusdt@depth&token=t", "wss://***@host/stream?streams=btcusdt@depth&token=***"),
    ],
)  # fmt: skip
def test_redact_url_hides_the_userinfo_and_credential_query_values_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(url, f"connect to {url} failed") == f"connect to {shown} failed"
