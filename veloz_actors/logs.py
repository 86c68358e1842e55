"""Structured logs: one set-up for the CLI, the engine and every actor.

:func:`configure_logging` gives the ``veloz`` logger (and so every ``veloz.*`` logger: ``veloz.binance``,
``veloz.engine``, ``veloz.oms``, ...) two handlers:

- **stderr**, at ``stderr_level`` (default: WARNING when a file is written, else ``level``). stdout is the stdio
  protocol and is never written here; stderr stays quiet in normal operation so a program that drives the engine over
  pipes and does not read stderr can never block on it.
- **a rotating file** (:class:`logging.handlers.RotatingFileHandler`, ``max_bytes`` x ``backups``, 10 MiB x 5 by
  default) at ``level``, in the run folder: the folder that holds the journal (``runs/veloz.log`` beside
  ``runs/engine.journal``), or the file ``logging.file`` names. Without a journal and without a configured file
  (``--no-journal``) there is no run folder: stderr only, at ``level``.

**One file per process.** A rotating file is safe with one writer only: two processes rotating one file rename it
under each other and lose or duplicate lines. Ray runs every actor in a process of its own (and the engine starts Ray
with ``log_to_driver=False``, so an actor's stderr lands in Ray's worker logs, not on the terminal), so each process
writes a file of its own beside the driver's and rotates it alone: the driver ``veloz.log``, the actors
``veloz-oms.log``, ``veloz-venue-BTCUSDT.log``, ``veloz-feed.log``, ``veloz-risk.log``, ``veloz-supervisor.log``...
(:meth:`LogSettings.file_for`). The settings reach the actors inside their :class:`~veloz_actors.actors.spec.EngineSpec`
and each actor calls :func:`configure_logging` first thing in its constructor (so a restarted actor appends to its
file again).

**Every line names its actor**: the ``actor`` field is the process's actor (``configure_logging(..., actor="oms")``)
unless the call gives one (``extra={"actor": ...}``). Formats (``--log-format``, ``logging.format``):

- ``text``: ``2024-05-01T12:00:00.123Z INFO    engine veloz.engine: order filled cid=a1 symbol=BTCUSDT ...``
- ``json``: one object per line with ``ts`` (ISO-8601 UTC, milliseconds), ``level``, ``logger``, ``actor``, ``msg``,
  every field passed with ``extra=`` (``cid``, ``symbol``, ``side``, ``qty``, ``price``, ``reason``, ...) and ``exc``
  (the traceback) when there is one.

**Secrets are never written**: :class:`RedactSecrets` sits on both handlers (so it sees every record of every
``veloz`` logger) and replaces the values of ``BINANCE_API_KEY`` / ``BINANCE_API_SECRET``, ``signature=...``,
``X-MBX-APIKEY`` headers, ``apiKey``/``secret``/``signature`` fields, any 64-character alphanumeric token (the
shape of a Binance key, secret or HMAC signature), a URL's ``user:password@`` and key-named query values,
``Bearer ...`` and ``token=...`` (the HTTP API's token, which
:func:`~veloz_actors.interfaces.http_api.serve_api` also registers, :func:`register_secrets`) with ``***``, in the
message, the extra fields and the traceback.

**What is logged where**: :func:`log_events` logs the order lifecycle (accepted, rejected, filled, cancelled, expired)
and venue connection changes at INFO, circuit breakers, errors and lost connections at WARNING, each with its numbers;
market data is never logged per event. The single-process engine calls it on every step's events
(``interfaces/local.py``), the actor engine in the OMS actor (``actors/oms.py``); the Binance clients log their
reconnects (attempt, backoff), gaps, resyncs and rate limits themselves (``veloz.binance``). With the level above INFO
a step costs one ``isEnabledFor`` check (a fraction of a microsecond; README "Logs").

>>> configure_logging(LogSettings(format="json", level="INFO", file="runs/veloz.log"), actor="cli")  # doctest: +SKIP
>>> logging.getLogger("veloz.cli").info("started", extra={"journal": "runs/engine.journal"})  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import logging.handlers
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import orjson

from ._exceptions import ConfigError, InvalidInput
from .fixed import format_decimal
from .messages import (
    CircuitBreakerTripped,
    Error,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    VenueConnection,
)

__all__ = [
    "FORMATS",
    "LEVELS",
    "LogSettings",
    "RedactSecrets",
    "configure_logging",
    "register_secrets",
    "flush_logs",
    "log_file_status",
    "output_handlers",
    "log_events",
    "parse_format",
    "parse_level",
    "redact",
    "redact_address",
    "redact_url",
    "redacted_repr",
]

FORMATS = ("text", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ROOT_LOGGER = "veloz"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5
SECRET_ENV = ("BINANCE_API_KEY", "BINANCE_API_SECRET", "BINANCE_PRIVATE_KEY_PASSWORD")
REDACTED = "***"
DRIVERS = ("cli", "engine")  # the processes that write the run folder's veloz.log (the CLI, the one-process engine)

_process_actor = "veloz"  # the actor field of lines that name none (configure_logging sets it)
_unopened: dict[str, Any] | None = None  # the file this process could not open (configure_logging's fallback)
_log = logging.getLogger(f"{ROOT_LOGGER}.logs")


def parse_level(value: str, what: str = "level") -> str:
    """``value`` as one of :data:`LEVELS` (any case); :class:`InvalidInput` naming ``what`` otherwise."""
    level = str(value).strip().upper()
    if level not in LEVELS:
        raise InvalidInput(f"{what}: expected one of {', '.join(LEVELS)}, got {value!r}")
    return level


def parse_format(value: str, what: str = "format") -> str:
    """``value`` as one of :data:`FORMATS` (any case); :class:`InvalidInput` naming ``what`` otherwise."""
    fmt = str(value).strip().lower()
    if fmt not in FORMATS:
        raise InvalidInput(f"{what}: expected one of {', '.join(FORMATS)}, got {value!r}")
    return fmt


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    """Where and how one engine logs (plain data: the actors get it in their spec).

    ``file`` is the driver's log file, absolute (``None``: stderr only); each actor writes beside it
    (:meth:`file_for`). ``stderr_level`` ``None`` means WARNING when there is a file, else ``level``.
    """

    format: str = "text"
    level: str = "INFO"
    stderr_level: str | None = None
    file: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    backups: int = DEFAULT_BACKUPS

    def __post_init__(self) -> None:
        object.__setattr__(self, "format", parse_format(self.format, "logging.format"))
        object.__setattr__(self, "level", parse_level(self.level, "logging.level"))
        if self.stderr_level is not None:
            object.__setattr__(self, "stderr_level", parse_level(self.stderr_level, "logging.stderr_level"))
        if self.max_bytes < 1024:
            raise InvalidInput(f"logging.max_bytes: at least 1024, got {self.max_bytes}")
        if self.backups < 1:
            raise InvalidInput(f"logging.backups: at least 1, got {self.backups}")

    def file_for(self, actor: str | None) -> Path | None:
        """The file one process writes: the driver's (``actor`` None) or an actor's beside it
        (``runs/veloz.log`` -> ``runs/veloz-venue-BTCUSDT.log`` for ``venue:BTCUSDT``)."""
        if self.file is None:
            return None
        path = Path(self.file)
        if actor is None:
            return path
        return path.with_name(f"{path.stem}-{actor_label(actor)}{path.suffix}")

    def stderr_threshold(self) -> str:
        if self.stderr_level is not None:
            return max(self.stderr_level, self.level, key=LEVELS.index)
        return max("WARNING", self.level, key=LEVELS.index) if self.file is not None else self.level


def actor_label(actor: str) -> str:
    """An actor's STATUS name as it appears in log lines and file names (``venue:BTCUSDT`` -> ``venue-BTCUSDT``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", actor)


# ------------------------------------------------------------------------------------------------------ secrets

_Q = r"(?:\\?[\"'])?"  # a quote around a name or value, perhaps JSON-escaped (\")
_SECRET_SHAPES = (
    r"(signature(?:=|%3D))[^&\s\"',;)\\]+",  # in a query string, also URL-encoded
    rf"(x-mbx-apikey{_Q}\s*[:=]\s*{_Q})[^\"'\s,;}})\\]+",
    rf"({_Q}(?:api_?key|api_?secret|secret|signature|private_?key_?password|password){_Q}\s*[:=]\s*{_Q})"
    r"[A-Za-z0-9+/=_-]{6,}",
    r"()(?<![A-Za-z0-9])[A-Za-z0-9]{64}(?![A-Za-z0-9])",  # a Binance key, secret or HMAC signature
    r"(bearer\s+)[^\s\"',;)\\]+",  # an Authorization header's token (the HTTP API's)
    rf"(token{_Q}\s*[:=]\s*{_Q})[^&\s\"',;}})\\]+",  # ?token=, token: ..., "token": "..." (the API's, any other)
    r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",  # a PEM key
)
_PATTERNS = tuple(re.compile(shape, re.IGNORECASE) for shape in _SECRET_SHAPES)
_ANY_SHAPE = re.compile("|".join(f"(?:{shape})" for shape in _SECRET_SHAPES), re.IGNORECASE)  # one scan: clean?
# a URL's secrets, looked for only in a line holding an @ or a query string (most do not): its userinfo
# (user:password@host), and a key-named query value (the name bounded, so that a long line is scanned in linear time)
_USERINFO = re.compile(r"(://)[^\s/?#@\"'<>]+(?=@)")
_QUERY_SECRET = re.compile(
    r"([?&][^=&?\s#\"']{0,40}(?:key|secret|token|password|passphrase|auth)[^=&?\s#\"']{0,40}=)[^&\s#\"',;)\\]+",
    re.IGNORECASE,
)


_registered: tuple[str, ...] = ()  # secrets this process read after its logging was set up (longest first)


def register_secrets(*values: str | None) -> None:
    """Values every log line of this process must not show from now on (credentials read from a credentials file,
    which the environment, read when logging was set up, did not hold)."""
    global _registered
    new = {v for v in values if v and len(v) >= 6} - set(_registered)
    if new:
        _registered = tuple(sorted({*_registered, *new}, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with ``secrets`` (and those given to :func:`register_secrets`) and anything shaped like a Binance
    credential, a signature or a PEM private key replaced by ``***``."""
    for secret in (*secrets, *_registered) if _registered else secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "@" in text:
        text = _USERINFO.sub(rf"\1{REDACTED}", text)
    if "=" in text and ("?" in text or "&" in text):
        text = _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text)
    if _ANY_SHAPE.search(text) is None:  # the common case: one scan, nothing to replace
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def redact_address(text: str, address: str | None) -> str:
    """``text`` (``address`` itself, or a message naming it) with the userinfo of ``address`` (``user:password@``,
    a token) shown as ``***``, so that a secret in an address never reaches a message or a log.

    >>> redact_address("cannot reach http://me:pw@head:8265", "http://me:pw@head:8265")
    'cannot reach http://***@head:8265'
    """
    if address is None:
        return text
    userinfo = address.partition("://")[2 if "://" in address else 0].split("/", 1)[0].rpartition("@")[0]
    return text.replace(userinfo, REDACTED) if userinfo else text


_SECRET_QUERY_NAME = re.compile(r"key|secret|signature|token|password|passphrase|auth", re.IGNORECASE)


def redact_url(url: str, text: str | None = None) -> str:
    """``text`` (default: ``url`` itself) with the secrets ``url`` may carry shown as ``***``: its userinfo
    (``user:password@``) and the value of every query parameter named like a credential (``apiKey``, ``signature``,
    ``token``, ...), besides what :func:`redact` removes. For every URL put in a status, a log line or an error.

    >>> redact_url("wss://me:pw@stream.binance.com:9443/ws?apiKey=abc&streams=x")
    'wss://***@stream.binance.com:9443/ws?apiKey=***&streams=x'
    """
    shown = redact_address(url if text is None else text, url)
    _, _, query = url.partition("?")
    for pair in query.split("#", 1)[0].split("&"):
        name, eq, value = pair.partition("=")
        if eq and value and _SECRET_QUERY_NAME.search(name):
            shown = shown.replace(f"{name}={value}", f"{name}={REDACTED}")
    return redact(shown)


def redacted_repr(settings: Any) -> str:
    """A dataclass's ``repr`` through :func:`redact`: the ``__repr__`` of settings that hold URLs (a proxy's
    ``user:password@``, a ``?apiKey=``), so that printing them in a log line or an error shows no credential."""
    shown = ", ".join(f"{f.name}={getattr(settings, f.name)!r}" for f in fields(settings) if f.repr)
    return redact(f"{type(settings).__name__}({shown})")


class RedactSecrets(logging.Filter):
    """A handler filter that removes secrets from a record's message, extra fields and traceback (it never drops a
    record). ``secrets``: exact values to remove besides the patterns; default the values of :data:`SECRET_ENV`."""

    def __init__(self, secrets: Iterable[str] | None = None) -> None:
        super().__init__()
        values = [os.environ.get(name, "") for name in SECRET_ENV] if secrets is None else list(secrets)
        self.secrets = tuple(sorted({v for v in values if len(v) >= 6}, key=len, reverse=True))

    def _scrub(self, value: Any) -> Any:
        if value is None or type(value) in (int, float, bool):
            return value
        if isinstance(value, str):
            return redact(value, self.secrets)
        if isinstance(value, dict):
            return {self._scrub(k) if isinstance(k, str) else k: self._scrub(v) for k, v in value.items()}
        if type(value) in (list, tuple):
            return type(value)(self._scrub(v) for v in value)
        if isinstance(value, bytes):
            return redact(value.decode("utf-8", "replace"), self.secrets)
        return redact(str(value), self.secrets)  # what the formatter would print of it (an exception, a set, ...)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_veloz_clean", False):  # the other handler's filter did it
            return True
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        for key in _extra_keys(record):
            record.__dict__[key] = self._scrub(record.__dict__[key])
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        record._veloz_clean = True
        return True


class _ActorField(logging.Filter):
    """Gives every record an ``actor`` (the process's, unless the call named one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "actor" not in record.__dict__:
            record.actor = _process_actor
        return True


# ---------------------------------------------------------------------------------------------------- formats

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "actor"}


def _extra_keys(record: logging.LogRecord) -> list[str]:
    return [k for k in record.__dict__ if k not in _STANDARD and not k.startswith("_")]


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _traceback(record: logging.LogRecord) -> str:
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    return record.exc_text or ""


class _Cached(logging.Formatter):
    """Formats a record once per formatter (a rotating file asks twice: to decide on rollover, then to write)."""

    def format(self, record: logging.LogRecord) -> str:
        cached = record.__dict__.get("_veloz_line")
        if cached is not None and cached[0] is self:
            return cached[1]  # type: ignore[no-any-return]
        text = self.render(record)
        record._veloz_line = (self, text)
        return text

    def render(self, record: logging.LogRecord) -> str:
        raise NotImplementedError


class JsonFormatter(_Cached):
    """One JSON object per line: ts, level, logger, actor, msg, the extra fields, exc."""

    def render(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "actor": record.__dict__.get("actor", _process_actor),
            "msg": record.getMessage(),
        }
        for key in _extra_keys(record):
            line.setdefault(key, record.__dict__[key])
        exc = _traceback(record)
        if exc:
            line["exc"] = exc
        if record.stack_info:
            line["stack"] = record.stack_info
        try:
            return orjson.dumps(line, default=str).decode()
        except TypeError:  # a field orjson cannot encode: the record is still written, that field as text
            return orjson.dumps({key: _encodable(value) for key, value in line.items()}, default=str).decode()


def _encodable(value: Any) -> Any:
    """A JSON line's field as orjson can encode it: as it is, with non-string dict keys as text (``{1: "x"}``), or
    else as its text (an int beyond 64 bits, a dict keyed by tuples), lone surrogates escaped: one record always
    gives one line."""
    if isinstance(value, str):
        return _no_surrogates(value)  # (orjson refuses a lone surrogate)
    for option in (0, orjson.OPT_NON_STR_KEYS):
        try:
            return orjson.Fragment(orjson.dumps(value, default=str, option=option))
        except TypeError:
            continue
    return _no_surrogates(str(value))


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _no_surrogates(text: str) -> str:
    r"""``text`` with each lone surrogate written as its escape (``\ud83d``): UTF-8 cannot encode one, and the file
    would refuse the whole line (one comes from the stdlib's ``json.loads('"\ud83d"')``, or a file name that is not
    UTF-8 read from the command line)."""
    if _SURROGATE.search(text) is None:  # nearly always: no copy
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class TextFormatter(_Cached):
    """``ts LEVEL actor logger: msg key=value ...`` and the traceback on the lines after. The message and the fields
    stay on their line: their line breaks and other control characters are escaped (``\\n``), so a message holding
    text from elsewhere (a venue's error) cannot forge a line that reads as a record of its own."""

    def render(self, record: logging.LogRecord) -> str:
        fields = "".join(f" {key}={_text_value(record.__dict__[key])}" for key in _extra_keys(record))
        actor = record.__dict__.get("actor", _process_actor)
        msg = _one_line(record.getMessage())
        text = f"{_timestamp(record)} {record.levelname:<7} {actor} {record.name}: {msg}{fields}"
        exc = _traceback(record)
        if exc:
            text += "\n" + exc
        if record.stack_info:
            text += "\n" + record.stack_info
        return _no_surrogates(text)


def _text_value(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text) or _CONTROL.search(text) is not None:
        return _one_line(orjson.dumps(text).decode())  # JSON escapes the C0 controls; _one_line what it leaves
    return text


# What could end a text line or steer a terminal: the C0 controls but the tab, DEL, and the Unicode line breaks (NEL,
# LINE / PARAGRAPH SEPARATOR: str.splitlines and some viewers break lines there)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_ESCAPES = {"\n": r"\n", "\r": r"\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def _one_line(text: str) -> str:
    r"""``text`` with :data:`_CONTROL` escaped (``\n``, ``\r``, ``\x1b``, ``\u2028``)."""
    return text if _CONTROL.search(text) is None else _CONTROL.sub(_escape, text)  # the common case: one scan


# ---------------------------------------------------------------------------------------------------- set-up


def configure_logging(settings: LogSettings | None, actor: str = "cli", *, fallback: bool = False) -> Path | None:
    """Set this process's ``veloz`` logging up (see the module docstring); returns the file written, if any.

    Idempotent: the handlers of an earlier call are closed and replaced. ``settings`` None leaves logging alone
    (an engine started without logging settings). ``actor`` is the ``actor`` field of the process's lines: ``cli``,
    ``engine`` (the single-process engine), or an actor's STATUS name (``oms``, ``venue:BTCUSDT``, ``supervisor``),
    which also names its file. A file that cannot be opened is a :class:`ConfigError`, or with ``fallback`` (an actor
    Ray restarted: raising would end it for good) stderr takes its lines at ``level`` and :func:`log_file_status` says
    why the file is not written.
    """
    global _process_actor, _unopened
    if settings is None:
        return None
    path = settings.file_for(None if actor in DRIVERS else actor)
    unopened = None
    try:  # first: a file that cannot be written changes nothing
        file = None if path is None else _open_file(path, settings)
    except _Unwritable as exc:
        if not fallback or path is None:
            raise
        file, unopened = None, {"file": redact(str(path)), "dropped": 0, "failing": exc.reason}
    _process_actor = actor_label(actor)
    _unopened = unopened
    logger = logging.getLogger(ROOT_LOGGER)
    for handler in [h for h in logger.handlers if getattr(h, "_veloz", False)]:
        logger.removeHandler(handler)
        handler.close()
    formatter: logging.Formatter = JsonFormatter() if settings.format == "json" else TextFormatter()
    filters = (_EventFields(), _ActorField(), RedactSecrets())
    stderr = _Stderr()
    stderr.setLevel(settings.level if unopened else settings.stderr_threshold())
    handlers: list[logging.Handler] = [stderr]
    if file is not None:
        handlers.append(file)
    for handler in handlers:
        handler.setFormatter(formatter)
        for f in filters:
            handler.addFilter(f)
    level = min((h.level for h in handlers), default=logging.WARNING)
    front = _BackgroundHandler(handlers)  # the caller only builds the record; a thread redacts, formats, writes
    front.setLevel(level)
    front._veloz = True  # type: ignore[attr-defined]
    logger.addHandler(front)
    logger.setLevel(level)
    # Redaction sits on these handlers: a record that went on to handlers of the root logger (an embedding program's
    # logging.basicConfig) would reach them unredacted, so the veloz lines stop here.
    logger.propagate = False
    if unopened is not None:
        _log.error("cannot write the log file %s (%s): this process logs to stderr", path, unopened["failing"])
        return None
    return path


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """The stderr handler: it writes to ``sys.stderr`` as it is when a line is written, not to the stream that was
    ``sys.stderr`` at the set-up. A program that runs a command in-process with its stderr captured (typer's
    ``CliRunner``, a notebook) closes that stream when the command returns; a handler that kept it turned every later
    line of the process into a "--- Logging error ---" traceback. ``setStream`` (the terminal view) still pins
    another stream, until it is given ``sys.stderr`` back."""

    def __init__(self) -> None:
        self._pinned: Any = None
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr if self._pinned is None else self._pinned

    @stream.setter
    def stream(self, value: Any) -> None:
        self._pinned = None if value is sys.stderr else value


class _Unwritable(ConfigError):
    """A log file that cannot be opened, with the system's ``reason``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _open_file(path: Path, settings: LogSettings) -> logging.Handler:
    """The rotating file handler of ``path``, its folder made; a path that cannot be written (a file where a folder
    must be, a folder that cannot be made, no permission) is a :class:`ConfigError` with the system's reason."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file = _LogFile(path, maxBytes=settings.max_bytes, backupCount=settings.backups, encoding="utf-8")
    except OSError as exc:
        if isinstance(exc, FileExistsError) and exc.filename is not None:
            reason = f"{exc.filename} is a file, not a folder"
        else:
            where = f": {exc.filename}" if exc.filename is not None and str(exc.filename) != str(path) else ""
            reason = f"{exc.strerror or type(exc).__name__}{where}"
        raise _Unwritable(f"cannot write the log file {path} ({reason})", reason) from exc
    file.setLevel(settings.level)
    return file


class _LogFile(logging.handlers.RotatingFileHandler):
    """The rotating log file, which says once that it cannot be written instead of a traceback on stderr per record.

    A record the file refuses (a full disk, an I/O error, a folder removed) is dropped and counted (``dropped``). The
    first of a run of such failures logs one ERROR line (on stderr, whatever its level) naming the file and the
    system's reason; the next record the file takes again is followed by a WARNING saying how many lines were lost.
    Between the two nothing more is said, and the engine goes on: a log is not the engine's record (the journal is).
    After a failure the file is opened again for the next record, so a disk with room again is written again.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dropped = 0  # records this file lost since it was opened
        self.failure: str | None = None  # the reason of the run of failures going on, None while writes succeed
        self.lost = 0  # records lost in that run
        self._refused = False  # the record being emitted was refused

    def emit(self, record: logging.LogRecord) -> None:
        self._refused = False
        super().emit(record)  # calls handleError on a failure
        if not self._refused and self.failure is not None:
            reason, lost, self.failure = self.failure, self.lost, None
            _log.warning("log file %s written again: %d lines were lost (%s)", self.baseFilename, lost, reason)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - the stdlib's name
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):  # not the file's fault (a call whose arguments do not fit its message)
            super().handleError(record)
            return
        self._refused = True
        self.dropped += 1
        stream, self.stream = self.stream, None  # type: ignore[assignment]  # opened again for the next record
        if stream is not None:
            with contextlib.suppress(Exception):  # closing flushes what is held, which fails the same way
                stream.close()
        if self.failure is None:
            self.failure, self.lost = error.strerror or type(error).__name__, 0
            _log.error(
                "cannot write the log file %s (%s): its lines are dropped until it can be written again",
                self.baseFilename, self.failure,
            )  # fmt: skip
        self.lost += 1


def output_handlers() -> list[logging.Handler]:
    """The handlers that write the ``veloz`` lines (stderr, the file), behind the queue of the writer thread: the
    terminal view redirects the stderr one while it owns the screen."""
    out: list[logging.Handler] = []
    for handler in logging.getLogger(ROOT_LOGGER).handlers:
        out.extend(getattr(handler, "handlers", None) or [handler])
    return out


def log_file_status() -> dict[str, Any] | None:
    """This process's log file for STATUS: ``{"file": path, "dropped": lines lost since it was opened (refused by the
    file: a full disk, an I/O error; or dropped because the writer fell behind), "failing": the system's reason while
    the file refuses them, else None}``; None without a file."""
    queued = sum(h.dropped for h in logging.getLogger(ROOT_LOGGER).handlers if isinstance(h, _BackgroundHandler))
    for handler in output_handlers():
        if isinstance(handler, _LogFile):
            dropped = handler.dropped + queued
            return {"file": redact(handler.baseFilename), "dropped": dropped, "failing": handler.failure}
    return None if _unopened is None else {**_unopened, "dropped": queued}


def flush_logs() -> None:
    """Wait until every ``veloz`` record logged so far is written (the writer thread works behind the callers)."""
    for handler in logging.getLogger(ROOT_LOGGER).handlers:
        handler.flush()


class _BackgroundHandler(logging.Handler):
    """Keeps records in a bounded deque that a writer thread drains every ``period`` seconds (at once for a WARNING or
    worse), so an actor's order path pays for building a record and appending it, not for redacting, formatting and
    writing it (~60 us a line), and the writer does not wake after every order to compete for the GIL just when the
    actor answers (measured with ``scripts/bench_actors.py``: a writer woken per record added ~0.4 ms to the actor
    engine's order acknowledgement). A full deque drops the record and counts it (``dropped``, in STATUS ``logs`` with
    the file's own), and the writer's next round says how many in a WARNING line; records still held
    when the process is killed outright are lost (the journal, not the log, is the engine's record). Closing (a new
    set-up, or the interpreter's exit) writes what is held first."""

    def __init__(self, handlers: list[logging.Handler], maxsize: int = 10_000, period: float = 0.2) -> None:
        super().__init__()
        self.handlers = handlers
        self.maxsize = maxsize
        self.period = period
        self.dropped = 0
        self._told = 0  # the drops a WARNING line has already reported
        self.records: collections.deque[logging.LogRecord] = collections.deque()
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="veloz-log-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) >= self.maxsize:
            self.dropped += 1
            return
        self.records.append(record)
        if record.levelno >= logging.WARNING:
            self._wake.set()  # a fault is written at once

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.period)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        with self._drain_lock:  # one drainer at a time keeps the lines in order
            records = self.records
            while records:
                self._write(records.popleft())
            if self.dropped > self._told:  # after the lines that were kept, where the gap is
                lost, self._told = self.dropped - self._told, self.dropped
                self._write(_log.makeRecord(
                    _log.name, logging.WARNING, __file__, 0,
                    "%d log lines were dropped: more than %d were waiting to be written (a burst; at level WARNING "
                    "only faults are logged)", (lost, self.maxsize), None,
                ))  # fmt: skip

    def _write(self, record: logging.LogRecord) -> None:
        for handler in self.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)

    def flush(self) -> None:
        """Write every record held so far (tests, shutdown)."""
        self._drain()
        for handler in self.handlers:
            handler.flush()

    def close(self) -> None:
        atexit.unregister(self.close)  # a replaced set-up is not kept alive until the interpreter exits
        if not self._stop.is_set():
            self._stop.set()
            self._wake.set()
            self._thread.join(5.0)
            self._drain()
        for handler in self.handlers:
            handler.close()
        super().close()


# ---------------------------------------------------------------------------------------------------- events


def _order_fields(event: Any) -> dict[str, Any]:
    return {"cid": event.client_order_id, "account": event.account_id, "symbol": event.symbol}


def _price(value: int | None) -> str | None:
    return None if value is None else format_decimal(value)


def _accepted(e: OrderAccepted) -> dict[str, Any]:
    return {
        **_order_fields(e), "order_id": e.order_id, "side": e.side.value, "order_type": e.order_type.value,
        "tif": e.tif.value, "qty": format_decimal(e.qty), "price": _price(e.price),
    }  # fmt: skip


def _rejected(e: OrderRejected) -> dict[str, Any]:
    return {
        **_order_fields(e), "side": None if e.side is None else e.side.value, "qty": format_decimal(e.qty),
        "price": _price(e.price), "reason": e.reason.value, "detail": e.detail,
    }  # fmt: skip


def _filled(e: OrderFilled) -> dict[str, Any]:
    return {
        **_order_fields(e), "order_id": e.order_id, "side": e.side.value, "qty": format_decimal(e.qty),
        "price": format_decimal(e.price), "fee": format_decimal(e.fee), "fee_asset": e.fee_asset,
        "liquidity": e.liquidity.value, "trade_id": e.trade_id, "cum_qty": format_decimal(e.cum_qty),
        "leaves_qty": format_decimal(e.leaves_qty),
    }  # fmt: skip


def _closed(e: OrderCancelled | OrderExpired) -> dict[str, Any]:
    return {
        **_order_fields(e), "order_id": e.order_id, "filled_qty": format_decimal(e.filled_qty), "reason": e.reason.value
    }  # fmt: skip


def _breaker(e: CircuitBreakerTripped) -> dict[str, Any]:
    return {
        "account": e.account_id, "reason": e.reason, "equity": format_decimal(e.equity),
        "peak_equity": format_decimal(e.peak_equity),
    }  # fmt: skip


def _error(e: Error) -> dict[str, Any]:
    return {"code": e.code}


def _connection(e: VenueConnection) -> dict[str, Any]:
    fields = {"venue": e.venue, "state": e.state, "detail": e.detail, "reconnects": e.reconnects}
    if e.symbol:
        fields.update(symbol=e.symbol, resyncs=e.resyncs)
    return fields


# each logged event's fields, formatted by the writer thread (_EventFields)
_FIELDS: dict[type, Callable[[Any], dict[str, Any]]] = {
    OrderAccepted: _accepted,
    OrderRejected: _rejected,
    OrderFilled: _filled,
    OrderCancelled: _closed,
    OrderExpired: _closed,
    CircuitBreakerTripped: _breaker,
    Error: _error,
    VenueConnection: _connection,
}
_MAY_WARN = frozenset({CircuitBreakerTripped, Error, VenueConnection})  # the only kinds that can give a WARNING
_VENUE_TROUBLE = frozenset({"disconnected", "error"})  # the VenueConnection states logged as a WARNING


def _head(event: Any) -> tuple[int, str]:
    """An event's level and message without its fields (the caller's part; the writer thread adds the fields)."""
    kind = type(event)
    if kind is VenueConnection:
        return (logging.WARNING if event.state in _VENUE_TROUBLE else logging.INFO), f"venue {event.state}"
    if kind is Error:
        return logging.WARNING, f"error: {event.message}"
    return _HEADS[kind]


_HEADS: dict[type, tuple[int, str]] = {
    OrderAccepted: (logging.INFO, "order accepted"),
    OrderRejected: (logging.INFO, "order rejected"),
    OrderFilled: (logging.INFO, "order filled"),
    OrderCancelled: (logging.INFO, "order cancelled"),
    OrderExpired: (logging.INFO, "order expired"),
    CircuitBreakerTripped: (logging.WARNING, "circuit breaker tripped: trading halted"),
}


class _EventFields(logging.Filter):
    """Adds a logged event's fields to its record where it is written (the writer thread): the caller of
    :func:`log_events` only builds the record, so the order path does not pay for formatting a dozen decimals."""

    def filter(self, record: logging.LogRecord) -> bool:
        event = record.__dict__.pop("_event", None)
        if event is not None:
            record.__dict__.update(_FIELDS[type(event)](event))
        return True


def log_events(logger: logging.Logger, events: Iterable[Any]) -> None:
    """Log the order lifecycle and venue events among ``events`` (one step's output); market data and account
    updates are skipped. Cheap when nothing would be written: one level check for the whole step; and when a line is
    written, its fields are formatted by the writer thread, not here."""
    if logger.isEnabledFor(logging.INFO):
        kinds: Iterable[type] = _FIELDS
    elif logger.isEnabledFor(logging.WARNING):
        kinds = _MAY_WARN  # only these can give a WARNING line
    else:
        return
    for event in events:
        if type(event) in kinds:
            level, msg = _head(event)
            if logger.isEnabledFor(level):
                logger.log(level, msg, extra={"_event": event})
