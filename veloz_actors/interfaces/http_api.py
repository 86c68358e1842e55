"""The HTTP/WebSocket API of a running engine, and the monitoring page: ``veloz start --http [HOST:]PORT``.

FastAPI on uvicorn, on a daemon thread with its own asyncio loop. Every engine call goes through
:meth:`EngineService.call_async <veloz_actors.interfaces.service.EngineService.call_async>` (awaited with
``asyncio.wrap_future``), so the engine stays single-threaded and uvicorn's loop never blocks on it; the WebSocket
clients read the service's numbered event stream through bounded drop-oldest queues, so a slow client never slows
trading::

    browser / curl --HTTP--> uvicorn thread --call_async--> engine thread (EngineService) --publish--> EventHub
                   <--WS----  sender task per client  <--------- bounded queue per client (drops counted) <--/

:func:`serve_api` starts it and prints ONE line on stderr, the only place the token is ever printed::

    api: http://127.0.0.1:8080/?token=TOKEN (schema: http://127.0.0.1:8080/openapi.json)

**Token.** The ``token`` argument, else ``VELOZ_API_TOKEN``, else the content of ``<run_dir>/api-token``, else a new
``secrets.token_urlsafe(32)`` written there (mode 0600). Every endpoint except ``GET /api/v1/health``, ``GET /`` and
``/static/*`` needs ``Authorization: Bearer <token>``; the WebSocket and ``GET /reports/*`` (opened as a link, where a
browser sends no header) also take ``?token=``. Missing or wrong: 401 ``{"detail": "missing or wrong API token"}``
with ``WWW-Authenticate: Bearer``; on the WebSocket the server accepts and closes with code 4401. Tokens are compared
with :func:`hmac.compare_digest` and never logged (uvicorn's access log is off; its other lines are redacted, and the
token is registered with the ``veloz`` logs' redaction, :func:`~veloz_actors.logs.register_secrets`).

**Limits.** Request bodies are JSON (415 for another Content-Type or none, e.g. ``curl -d`` without
``-H 'Content-Type: application/json'``) and capped (``max_body_bytes``, default 16 KiB): 413. A key repeated in a JSON
object (``{"qty": "5", "qty": "0.01"}``) is 422 naming it, never the last value silently. At most ``max_in_flight``
engine calls wait at once (1024): 503 beyond, as when the engine is stopping. No CORS middleware unless
``cors_origins``.

**Callers** (:class:`_Callers`). A request whose ``Host`` header is not the bound host, a loopback name
(``localhost``, ``127.0.0.1``, ``::1``) or one of ``allowed_hosts`` (any IP address when bound to 0.0.0.0 or ``::``)
gets 400 naming the header: a page elsewhere whose name was rebound to this machine (DNS rebinding) is not answered.
A WebSocket handshake whose ``Origin`` header is present and neither the API's own origin (``http://`` + that
``Host``) nor one of ``allowed_origins`` gets 403 naming the header: browsers apply no CORS to WebSockets, so any
site's page could otherwise open the stream (it would still need the token). Clients that send no ``Origin`` (Python,
curl) are not browsers and pass. ``cors_origins`` does not open the stream: list such a page in ``allowed_origins``
too.

**Headers.** Every answer has ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` (a token in the
address never leaves as a Referer), ``X-Frame-Options: DENY`` and a Content-Security-Policy: :data:`PAGE_POLICY`
(the page's own files and the API only, nothing inline) except for reports, :data:`REPORT_POLICY` (their inline
plotly.js and styles, and no connection to anything).

**Endpoints** (JSON; prices, quantities and balances as exact decimal strings; ``ts`` in integer nanoseconds; the
objects are the stdio protocol's, see :mod:`veloz_actors.interfaces.stdio`):

- ``GET /api/v1/health`` (no token): ``{"status": "ok", "mode", "seq", "uptime_seconds", "loop_age_seconds"}``; 503
  ``"stopping"``, or ``"stalled"`` when the engine's loop (which turns at least 4 times a second) has not turned for
  :data:`STALL_SECONDS` (30 s: a call to the engine would time out), e.g. blocked in a venue call.
- ``GET /api/v1/status``: the engine's STATUS object plus ``"mode"`` and ``"api": {"clients", "dropped"}``
  (``dropped``: events slow WebSocket clients never got since the API started, the sum of their gaps' ``missed``).
- ``GET /api/v1/balances``: ``{"account", "balances": {asset: {"free", "locked"}}, "equity": {"asset", "equity",
  "peak", "drawdown", "complete", "unvalued"}}`` (``complete``: every holding an instrument values had a mark;
  ``unvalued``: assets held that no instrument values, left out of the equity as the kernel leaves them out).
- ``GET /api/v1/positions``: ``{"positions": [position objects]}``.
- ``GET /api/v1/orders?state=open`` (default): ``{"items": [order_state objects], "count"}``;
  ``?state=closed&since=NS&until=NS&limit=N``: finished orders (order_update objects), newest first, ``{"items",
  "count", "more", "next_until"}`` (ask for the next page with ``until=next_until``).
- ``GET /api/v1/orders/{cid}``: one order_state object, or 404.
- ``GET /api/v1/fills?since=&until=&limit=``: fill objects, paged as closed orders.
- ``GET /api/v1/pnl?since=&limit=``: ``{"equity": {...}, "series": [{"ts", "equity", "drawdown"}]}``, oldest first.
- ``GET /api/v1/actors``: ``{"engine": "actors"|"single-process", "actors": {name: {"alive", "inbox_depth",
  "restarts", "last_error"}}}``.
- ``GET /api/v1/risk``: ``{"limits": {...}, "use": {"open_orders", "positions": {symbol: {"qty", "max_position",
  "used"}}, "circuit_breaker", "halted"}, "rejections": [order_update objects, newest first]}``. Money and fractions
  in ``limits`` are decimal strings; ``orders_per_second`` and ``burst`` are counts (integers).
- ``GET /api/v1/venue``: ``{"mode", "venues", "market_data", "trading"}`` from STATUS.
- ``POST /api/v1/orders`` ``{"symbol", "side": "BUY"|"SELL", "qty": "0.01", "price": "60000"|null (MARKET),
  "tif": "GTC"|"IOC"|"FOK"|"POST_ONLY", "cid": str|null}`` (no other field): built with the stdio protocol's builder
  on the engine thread. 201 ``{"cid", "accepted": true, "events"}`` when the engine took it, 409 with
  ``"accepted": false`` when it rejected it (the order_update carries ``reason`` and ``detail``: RATE_LIMIT,
  INSUFFICIENT_BALANCE, DUPLICATE_CLIENT_ORDER_ID, CIRCUIT_BREAKER, ...), 422 for a bad body, naming the field
  (``{"detail": [{"loc": ["body", field], "msg": ...}]}``). Without ``cid`` the API makes one (``api-<stamp>-<n>``).
  504 when the engine did not answer within 30 s: the order may or may not have been placed, so a client that may
  retry sends its own ``cid`` and asks ``GET /api/v1/orders/{cid}`` (a repeated cid is rejected, never placed twice).
- ``DELETE /api/v1/orders/{cid}``: ``{"cid", "cancelled", "events"}``: 200 cancelled, 202 when the cancel is on its
  way (the actor engine's venue has not answered within the settle time), 404 unknown cid, 409 the cancel was
  rejected (already filled, ...).
- ``POST /api/v1/halt``: the kill switch (cancel every open order, then halt): ``{"halted": true, "events"}``;
  ``POST /api/v1/resume``: ``{"halted": false, "events"}``. Both answer once the engine's STATUS confirms the
  state (the actor engine's risk actor halts the OMS one-way); 202 with the state as it stands after 5 s (a resume
  while an engine-wide limit is still crossed: ``halted`` true and an ``ENGINE_HALTED`` error naming the limit).
- ``GET /api/v1/reports``: ``{"reports": [{"path", "size", "mtime"}]}``, every ``report.html`` under the run folder
  (depth <= 4); ``GET /reports/{path}`` serves one (``.html`` files under the run folder only; anything else 404).
- ``GET /`` and ``/static/*``: the monitoring page (``interfaces/web/``); 503 "monitoring page not installed"
  without it. ``/openapi.json``: FastAPI's schema. No ``/docs``: FastAPI's Swagger page loads its script from a
  CDN, and a script from elsewhere on this origin could read the page's token.

**The stream**, ``WS /api/v1/stream?token=T[&queue=N]`` (``queue`` 1..100000, default 10,000): every message is one
JSON text message:

1. first ``{"type": "snapshot", "seq": S, ...}`` (:meth:`EngineService.snapshot`): the next event is ``S + 1``;
2. then the events, each ``{"seq": n, ...event object}``, ``n`` increasing by one. **A message holds one event
   object, or a JSON array of event objects when several were ready at once** (in order, at most 1,000): a reader
   handles both (``Array.isArray``). Snapshots and gap messages are always single objects.
3. When this client fell behind and its queue dropped events: ``{"type": "gap", "missed": n, "last_seq": L}``
   (it never got events ``L + 1 .. L + n``; ``L`` is the last seq it got), then a fresh snapshot (its ``seq`` is at
   least ``L + n``), then the events after that snapshot's seq. Drops of events a snapshot already covered are not
   missed and cause no gap message. The server's ``api.dropped`` is the sum of every client's ``missed``. A client
   gets at most one snapshot a second (:data:`RESYNC_SECONDS`): each costs the engine's thread, so a tiny queue or a
   slow reader cannot slow trading down with them.

A bad ``queue`` closes with 4400 (and the reason). At most :data:`MAX_STREAMS` (64) clients stream at once; one more
closes with 1013 (try again later). When the engine or the API stops, the socket closes with 1001.

**Connections** (:func:`_bounded_http`). Each open connection holds one of the process's file descriptors, which the
engine shares (journal, log files, the venue's sockets), and opening one needs no token. A connection must have sent a
whole request within :data:`REQUEST_SECONDS` (10 s) of connecting or of its last answer, else it is closed (a client
that sends nothing, or a header a byte at a time). At most :data:`MAX_CONNECTIONS` (256, and a quarter of the
process's file descriptor limit: 64 under macOS's default of 256) are open at once, streams included: one more closes
the one that has waited longest for a request, if a second or more (never a stream, nor a request being answered),
or else itself; the listening socket takes a quarter of that at a time. Before, 400 connections that sent nothing took
every descriptor of an engine limited to 256, for as long as they stayed open, and its kill switch did not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import itertools
import json
import logging
import math
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import orjson
from fastapi import FastAPI, HTTPException, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._exceptions import EngineUnavailable, InvalidInput, JournalError
from .._files import flush_folder
from ..fixed import SCALE, format_decimal, parse_decimal
from ..logs import redact, register_secrets
from ..messages import CancelOrder
from ..orders import ClientOrderIds, build_place_order, check_client_order_id, parse_amount
from .service import EngineService, Subscriber
from .stdio import order_state

__all__ = ["ApiServer", "OrderBody", "build_app", "parse_address", "resolve_token", "serve_api"]

TOKEN_ENV = "VELOZ_API_TOKEN"
TOKEN_FILE = "api-token"
WEB_DIR = Path(__file__).resolve().parent / "web"
DEFAULT_QUEUE = 10_000
MAX_QUEUE = 100_000
DEFAULT_MAX_BODY = 16 * 1024
MAX_IN_FLIGHT = 1024  # engine calls awaiting their answer at once; more get 503
CALL_TIMEOUT_SECONDS = 30.0
STALL_SECONDS = CALL_TIMEOUT_SECONDS  # /health says "stalled" once the engine's loop has not turned for this long
HALT_CONFIRM_SECONDS = 5.0  # how long halt and resume wait for the engine to say it is (not) halted
MAX_BATCH = 1000  # events in one WebSocket message
RESYNC_SECONDS = 1.0  # a client that falls behind gets a fresh snapshot at most this often (each costs the engine)
MAX_STREAMS = 64  # WebSocket stream clients at once (each costs the engine's thread a little per event); more: 1013
MAX_CONNECTIONS = 256  # open at once (streams included), and at most a quarter of the process's file descriptors
REQUEST_SECONDS = 10.0  # a connection's whole request arrives within this, from connecting or from its last answer
_EVICT_AFTER_SECONDS = 1.0  # a connection waiting for a request this long may be closed for a new one
_FRAGMENTS = 20_000  # encoded events kept for the other clients
REPORT_DEPTH = 4
_UNAUTHORIZED = "missing or wrong API token"
_WS_UNAUTHORIZED = 4401
_WS_BAD_REQUEST = 4400
_WS_GOING_AWAY = 1001
_WS_TRY_AGAIN_LATER = 1013
_log = logging.getLogger("veloz.api")


# ------------------------------------------------------------------------------------------------------ set-up


def parse_address(address: str) -> tuple[str, int]:
    """``"[HOST:]PORT"`` -> (host, port); the host defaults to 127.0.0.1 and an IPv6 host is written in brackets
    (``[::1]:8080``). :class:`InvalidInput` names what is wrong."""
    text = str(address).strip()
    host, port_text = "127.0.0.1", text
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise InvalidInput(f"--http {address!r}: expected [HOST:]PORT, e.g. 8080, 127.0.0.1:8080 or [::1]:8080")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5) or not 0 <= int(port_text) <= 65535:
        raise InvalidInput(f"--http {address!r}: the port must be a number 0..65535 (0 picks a free port)")
    if not host or any(c.isspace() or c in "/?#@[]" for c in host):
        raise InvalidInput(f"--http {address!r}: bad host {host!r}")
    return host, int(port_text)


def resolve_token(token: str | None, run_dir: Path | None) -> str:
    """The API token: ``token``, else ``VELOZ_API_TOKEN``, else ``<run_dir>/api-token``, else a new one written there
    (mode 0600; the folder is created). Without a run folder a new token lives only in this process."""
    for given, where in ((token, "the token"), (os.environ.get(TOKEN_ENV), TOKEN_ENV)):
        if given is not None and given.strip():
            value = given.strip()
            if len(value) < 16:
                raise InvalidInput(f"{where} must be at least 16 characters")
            if not (value.isascii() and value.isprintable()):  # (never shown: it is a secret)
                raise InvalidInput(f"{where} must be printable ASCII, as an HTTP header carries it")
            return value
    if run_dir is None:
        return secrets.token_urlsafe(32)
    path = Path(run_dir) / TOKEN_FILE
    if path.is_file():
        value = path.read_bytes().decode("latin-1").strip()  # (any bytes: what is not ASCII is refused below)
        if value:
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
                _log.warning("api: %s was readable by others; now mode 0600", path)
            if len(value) < 16:
                raise InvalidInput(f"{path} must hold a token of at least 16 characters")
            if not (value.isascii() and value.isprintable()):  # e.g. an editor's byte order mark: never matched
                raise InvalidInput(f"{path} must hold printable ASCII only, as an HTTP header carries the token")
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a stale one, or a link planted there: removed, never followed
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)  # a new file, or an error
    try:
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)  # on the disk before it takes the name: a power loss leaves the old token or this one, never none
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    flush_folder(path.parent)
    return value


class _RedactToken(logging.Filter):
    """uvicorn's own lines (a WebSocket's path, an error) without the token (they do not go through the ``veloz``
    handlers, whose redaction knows the token once :func:`serve_api` registered it)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        cleaned = redact(text, (self.token,))  # the token, and any ?token= or Bearer value (a wrong token's)
        if cleaned != text:
            record.msg, record.args = cleaned, None
        return True


# --------------------------------------------------------------------------------------------------- the body


class OrderBody(BaseModel):
    """``POST /api/v1/orders``: quantities and prices as decimal strings (exact); no other field is accepted."""

    model_config = ConfigDict(extra="forbid", strict=True)

    symbol: str
    side: Literal["BUY", "SELL"]
    qty: str
    price: str | None = None
    tif: Literal["GTC", "IOC", "FOK", "POST_ONLY"] = "GTC"
    cid: str | None = None


class _Json(JSONResponse):
    """JSON written by orjson (exact decimal strings, integer ns): several times faster than the json module."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _ok(content: Any, status: int = 200) -> Response:
    """An endpoint's answer, as is: FastAPI's encoder (slow on a page of 10,000 fills) never walks it."""
    return _Json(content, status_code=status)


def _invalid(field: str, message: str, status: int = 422) -> Response:
    loc = ["body", field] if field else ["body"]
    return _Json({"detail": [{"loc": loc, "msg": message, "type": "value_error"}]}, status_code=status)


class _FieldError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# ------------------------------------------------------------------------------------------- the body limit


_OPEN_PATHS = frozenset({"/api/v1/health", "/", "/openapi.json", "/favicon.ico"})
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # a token in the address (?token=) never leaves as a Referer
    (b"x-frame-options", b"DENY"),  # (frame-ancestors 'none' in the policies below, for browsers that read only CSP)
]
# The monitoring page (and every JSON answer): its own three files and the API, nothing inline, nothing from
# elsewhere; connect-src 'self' covers the stream (ws: on the page's own host and port).
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# A report (``/reports/*``): one self-contained file whose plotly.js and figure scripts are inline <script> blocks and
# whose styles are a <style> block plus the style attributes plotly writes, hence 'unsafe-inline' for both (the file
# is written by a backtest or a search, not typed by a visitor). What it may not do is talk to anything: no fetch,
# XHR or WebSocket (connect-src 'none': a script in a report cannot use the token in its address against the API),
# no other script, no form, no base, no frame. Images are plotly's own (data: and blob: URLs: the modebar's icons,
# "download as png").
REPORT_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
    "font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_ANY_ADDRESS = ("0.0.0.0", "::")


class _Callers:
    """Which ``Host`` and ``Origin`` headers the API answers, against DNS rebinding and other sites' pages.

    A page elsewhere that rebinds its own name to this machine reaches the API with its name in ``Host``: only the
    bound host, the loopback names and ``allowed_hosts`` are answered (any IP address too when bound to 0.0.0.0 or
    ``::``: no name is involved then, so nothing can be rebound). A missing ``Host`` (HTTP/1.0, no browser) passes.

    Browsers apply no CORS to WebSockets: a page on any site may open one to the API. A handshake whose ``Origin`` is
    present must be the API's own origin (``http[s]://`` + its allowed ``Host``: the page the API served, under
    whichever allowed name and port it was opened, a port forward included) or one of ``allowed_origins``. Clients
    that send no ``Origin`` (Python, curl) are not browsers and pass."""

    def __init__(self, bound: str, hosts: Iterable[str], origins: Iterable[str]) -> None:
        bound = bound.strip("[]").lower()
        self.any_address = bound in _ANY_ADDRESS
        self.names = frozenset({*_LOOPBACK_NAMES, *(() if self.any_address else (bound,))}) | {
            h.strip("[]").lower() for h in hosts
        }
        self.origins = frozenset(o.rstrip("/").lower() for o in origins)

    def refuse_host(self, host: str | None) -> str | None:
        """Why the ``Host`` header is refused, or None."""
        if host is None:
            return None
        name = _host_name(host.lower())
        if name is not None and (name in self.names or (self.any_address and _is_address(name))):
            return None
        shown = ", ".join(sorted(self.names)) + (" and any IP address" if self.any_address else "")
        return f"Host header {host[:100]!r} not allowed: this API answers to {shown} (api.allowed_hosts adds names)"

    def refuse_origin(self, origin: str | None, host: str | None) -> str | None:
        """Why a WebSocket handshake's ``Origin`` header is refused, or None."""
        if origin is None:
            return None
        given = origin.rstrip("/").lower()
        if given in self.origins:
            return None
        if host is not None and given in (f"http://{host.lower()}", f"https://{host.lower()}"):
            return None
        own = f"http://{host}" if host is not None else "the API's own"
        return f"Origin header {origin[:100]!r} not allowed: the stream takes {own} origin or api.allowed_origins"


def _host_name(host: str) -> str | None:
    """The name of a ``Host`` header (``name[:port]``, ``[v6][:port]``), or None when it is malformed."""
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        return host[1:end]
    name, _, port = host.partition(":")
    if not name or (port and not port.isdigit()) or ":" in port:
        return None
    return name


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in headers if k == name), None)


class _Guard:
    """Pure ASGI middleware in front of every HTTP request and WebSocket handshake: the ``Host`` header (400) and a
    handshake's ``Origin`` (403, see :class:`_Callers`), then for HTTP the token (401), the body cap (413: by its
    Content-Length before it is read, or as it arrives when chunked) and its type (415 unless JSON, or without a
    Content-Type), a key repeated in a JSON object (422 naming it), then the app, whose answers get
    ``Cache-Control: no-store`` (unless they set one), ``nosniff``, ``no-referrer`` (a token may be in the URL),
    ``X-Frame-Options: DENY`` and a Content-Security-Policy (:data:`REPORT_POLICY` for reports, else
    :data:`PAGE_POLICY`)."""

    def __init__(self, app: ASGIApp, api: _Api, limit: int, callers: _Callers) -> None:
        self.app = app
        self.api = api
        self.limit = limit
        self.callers = callers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers = scope.get("headers", ())
        host = _header(headers, b"host")
        refused = self.callers.refuse_host(host)
        if scope["type"] == "websocket":
            if refused is not None:
                await _deny_handshake(scope, receive, send, 400, refused)
                return
            refused = self.callers.refuse_origin(_header(headers, b"origin"), host)
            if refused is not None:
                await _deny_handshake(scope, receive, send, 403, refused)
                return
            await self.app(scope, receive, send)
            return
        policy = _policy(path)
        if refused:
            await _plain_json(send, 400, {"detail": refused}, policy=policy)
            return
        if scope["method"] != "OPTIONS" and path not in _OPEN_PATHS and not path.startswith("/static/"):
            header = next((v.decode("latin-1") for k, v in headers if k == b"authorization"), None)
            query = _query_token(scope) if path.startswith("/reports/") else None
            if not self.api.authorized(header, query):
                await _plain_json(send, 401, {"detail": _UNAUTHORIZED}, [(b"www-authenticate", b"Bearer")], policy)
                return
        limit = self.limit
        length: int | None = None  # no Content-Length: a chunked body, or none
        kind = b""
        for name, value in headers:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = limit + 1
                if length > limit:
                    await _too_large(send, limit, policy)
                    return
            elif name == b"content-type":
                kind = value.split(b";")[0].strip().lower()
        if kind and kind != b"application/json" and not kind.endswith(b"+json") and length != 0:
            shown = kind.decode("latin-1")[:60]
            detail = f"the body must be JSON: send Content-Type: application/json (got {shown!r})"
            await _plain_json(send, 415, {"detail": detail}, policy=policy)
            return
        # read the body here (chunked bodies have no length to check first), at most ``limit`` bytes, then hand it on
        chunks: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > limit:
                await _too_large(send, limit, policy)
                return
            if not message.get("more_body", False):
                break
        if seen and chunks[-1]["type"] == "http.request":  # a whole body (a bodiless POST, e.g. halt, has none)
            if not kind:  # ``curl -d`` sends form-urlencoded; another client may send no Content-Type at all
                detail = "the body must be JSON: send Content-Type: application/json (the request has no Content-Type)"
                await _plain_json(send, 415, {"detail": detail}, policy=policy)
                return
            repeated = _repeated_key(b"".join(m.get("body", b"") for m in chunks))
            if repeated is not None:
                shown = repeated[:60].encode("utf-8", "backslashreplace").decode()  # a lone surrogate, escaped
                text = f"the key {shown!r} appears more than once in the JSON body: send each field once"
                problem = [{"loc": ["body", shown], "msg": text, "type": "value_error"}]
                await _plain_json(send, 422, {"detail": problem}, policy=policy)
                return

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = list(message.get("headers", ()))
                if not any(k.lower() == b"cache-control" for k, _ in out):
                    out.append((b"cache-control", b"no-store"))
                message = {**message, "headers": out + _security_headers(policy)}
            await send(message)

        await self.app(scope, replay, send_secured)


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s ``object_pairs_hook``: the object, or :class:`_RepeatedKey` when a key appears twice (the
    json module would keep the last value silently: ``{"qty": "5", "qty": "0.01"}`` would be an order for 0.01)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


def _repeated_key(body: bytes) -> str | None:
    """The first key repeated in an object of the JSON ``body`` (compared as decoded, so ``"q\\u0074y"`` is
    ``"qty"``), else None. A body that is not JSON is None too: FastAPI's own parse then names what is wrong."""
    try:
        json.loads(body, object_pairs_hook=_no_repeats)
    except _RepeatedKey as exc:
        return exc.key
    except (ValueError, RecursionError):
        return None
    return None


def _query_token(scope: Scope) -> str | None:
    from urllib.parse import parse_qs

    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


def _policy(path: str) -> str:
    return REPORT_POLICY if path.startswith("/reports/") else PAGE_POLICY


def _security_headers(policy: str) -> list[tuple[bytes, bytes]]:
    return [*_SECURITY_HEADERS, (b"content-security-policy", policy.encode())]


async def _plain_json(
    send: Send, status: int, content: Any, headers: Iterable[tuple[bytes, bytes]] = (), policy: str = PAGE_POLICY
) -> None:
    body = orjson.dumps(content)
    out = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": out + _security_headers(policy)})
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Send, limit: int, policy: str) -> None:
    await _plain_json(send, 413, {"detail": f"request body too large: the limit is {limit} bytes"}, policy=policy)


async def _deny_handshake(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    """Refuse a WebSocket handshake with an HTTP answer naming why (uvicorn's ``websocket.http.response``
    extension), or a bare 403 from a server without it."""
    await receive()  # websocket.connect
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers + _SECURITY_HEADERS})
    await send({"type": "websocket.http.response.body", "body": body})


# ------------------------------------------------------------------------------------------------- the app


class _Api:
    """The endpoints' state: the service, the token, the WebSocket clients and their drop counts."""

    def __init__(self, service: EngineService, token: str, run_dir: Path | None, *, queue: int,
                 max_in_flight: int) -> None:  # fmt: skip
        self.service = service
        self.token = token.encode()
        self.run_dir = None if run_dir is None else Path(run_dir).resolve()
        self.queue = queue
        self.clients: set[Subscriber] = set()
        self.missed = 0  # events WebSocket clients never got (the sum of their gap messages' ``missed``)
        self.in_flight = 0
        self.max_in_flight = max_in_flight
        self.ids = ClientOrderIds.for_session("api")  # used on the engine thread only
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, once it runs
        self.closed = False  # ApiServer.close: the streams end (1001)
        self.streams: set[_Stream] = set()
        self.armed = False  # a wake-up of the streams is scheduled (set on the engine thread, reset on the loop)
        self._fragments: dict[int, str] = {}  # seq -> the event's JSON with its seq, encoded once for every client

    # ---------------------------------------------------------------------------------------------- helpers

    def authorized(self, header: str | None, query: str | None = None) -> bool:
        given = None
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer":
                given = value.strip()
        if given is None:
            given = query
        if not given:
            return False
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.token)

    def dropped(self) -> int:
        return self.missed

    # ----------------------------------------------------------------------------------------- the streams

    def attach(self, stream: _Stream) -> None:
        self.loop = asyncio.get_running_loop()
        self.streams.add(stream)

    def notify(self) -> None:
        """Every subscriber's ``notify`` (the engine thread, after each batch; never blocks): one wake-up of the
        loop per batch, however many clients -- each call_soon_threadsafe is a write to the loop's self-pipe."""
        if not self.armed and self.loop is not None:
            self.armed = True
            with contextlib.suppress(RuntimeError):  # the loop closed
                self.loop.call_soon_threadsafe(self.wake_all)

    def wake_all(self) -> None:
        self.armed = False  # before the streams take: a batch published from now on schedules another wake-up
        for stream in self.streams:
            stream.wake.set()

    def close_streams(self) -> None:
        self.closed = True
        self.wake_all()

    def fragment(self, seq: int, event: dict[str, Any]) -> str:
        """``{"seq": seq, ...event}`` as JSON text, encoded once for every client (the last 20,000 kept)."""
        text = self._fragments.get(seq)
        if text is None:
            text = orjson.dumps({"seq": seq, **event}).decode()
            fragments = self._fragments
            fragments[seq] = text
            if len(fragments) > _FRAGMENTS:
                for old in list(itertools.islice(fragments, len(fragments) - _FRAGMENTS)):
                    del fragments[old]
        return text

    async def call(self, fn: Callable[[EngineService], Any]) -> Any:
        """Run ``fn(service)`` on the engine thread and await its result without blocking this loop."""
        service = self.service
        if service.stopping:
            raise EngineUnavailable("the engine is stopping")
        if self.in_flight >= self.max_in_flight:
            raise EngineUnavailable(f"too many requests in flight ({self.in_flight}, limit {self.max_in_flight})")
        self.in_flight += 1
        try:
            inbox = getattr(service, "_inbox", None)
            if inbox is not None and inbox.full():  # call_async would wait for room: not on this loop
                future = await asyncio.to_thread(service.call_async, fn)
            else:
                future = service.call_async(fn)
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=CALL_TIMEOUT_SECONDS)
        finally:
            self.in_flight -= 1


def _limits_dict(service: EngineService) -> dict[str, Any]:
    """The kernel's RiskLimits (1e-8 units) as the API shows them: decimal strings, counts as integers."""
    backend = service.session.backend
    engine = getattr(backend, "engine", None)
    limits: Any = None
    kernel = getattr(engine, "kernel", None)
    if kernel is not None:
        limits = kernel.risk.limits
        raw = {name: getattr(limits, name) for name in limits.__dataclass_fields__}
    else:
        spec = getattr(engine, "spec", None)
        raw = dict((getattr(spec, "engine_config", None) or {}).get("risk") or {})
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name in ("orders_per_second", "burst"):
            out[name] = value
        elif name == "exempt_accounts":
            out[name] = sorted(value)
        elif isinstance(value, dict):
            out[name] = {k: format_decimal(v) for k, v in sorted(value.items())}
        else:
            out[name] = format_decimal(value)
    return out


def _problems_by_actor(problems: Iterable[str], names: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for problem in problems:
        for name in names:
            if f"actor {name!r}" in problem:
                out[name] = problem
    return out


def build_app(
    service: EngineService,
    token: str,
    *,
    run_dir: Path | None = None,
    queue: int = DEFAULT_QUEUE,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    cors_origins: Iterable[str] = (),
    max_in_flight: int = MAX_IN_FLIGHT,
    web_dir: Path = WEB_DIR,
    host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
    allowed_origins: Iterable[str] = (),
) -> FastAPI:
    """The ASGI app over ``service`` (see the module docstring); :func:`serve_api` runs it. ``host`` is the address
    it is bound to: with the loopback names and ``allowed_hosts`` it makes the ``Host`` headers answered, and the
    stream takes the origins of those hosts and ``allowed_origins`` (:class:`_Callers`)."""
    if not 1 <= queue <= MAX_QUEUE:
        raise InvalidInput(f"api queue must be 1..{MAX_QUEUE}, got {queue}")
    api = _Api(service, token, run_dir, queue=queue, max_in_flight=max_in_flight)
    app = FastAPI(
        title="VeloZ engine API",
        version="1",
        description="The running engine: balances, positions, orders, fills, PnL, risk, actors; orders, cancels, "
        "kill switch; a WebSocket stream of every event. Authorize with the token `veloz start` printed.",
        docs_url=None,  # Swagger's page runs a CDN's script on the origin that holds the token (module docstring)
        redoc_url=None,
    )
    app.state.api = api

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, with the bearer token declared on every protected path (a client generated from it, or an
        OpenAPI viewer, can then authorize)."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path, operations in schema.get("paths", {}).items():
                if path not in _OPEN_PATHS:
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(_Guard, api=api, limit=max_body_bytes, callers=_Callers(host, allowed_hosts, allowed_origins))
    origins = list(cors_origins)
    if origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def _unprocessable(request: Request, exc: RequestValidationError) -> Response:
        """FastAPI's 422 shape without echoing the input (it may be huge, or a float JSON cannot write)."""
        detail = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        return _Json({"detail": detail}, status_code=422)

    @app.exception_handler(EngineUnavailable)
    async def _unavailable(request: Request, exc: EngineUnavailable) -> Response:
        return _Json({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(TimeoutError)
    async def _timeout(request: Request, exc: Exception) -> Response:
        return _Json({"detail": f"the engine did not answer within {CALL_TIMEOUT_SECONDS:g} s"}, status_code=504)

    # ------------------------------------------------------------------------------------------- reads

    @app.get("/api/v1/health", tags=["engine"])
    async def health() -> Response:
        """Liveness, without a token: the mode, the last event number, the uptime and how long ago the engine's loop
        last turned; 503 while it is stopping, or stalled (its loop has not turned for :data:`STALL_SECONDS`: every
        call to it would time out)."""
        started = service.started_ns
        turned = service.turned
        age = time.monotonic() - turned if turned else 0.0
        state = "stopping" if service.stopping else "stalled" if age > STALL_SECONDS else "ok"
        body = {
            "status": state,
            "mode": service.mode,
            "seq": service.hub.seq,
            "uptime_seconds": round((time.time_ns() - started) / 1e9, 3) if started else 0.0,
            "loop_age_seconds": round(age, 3),
        }
        return _Json(body, status_code=200 if state == "ok" else 503)

    @app.get("/api/v1/status", tags=["engine"])
    async def status() -> Response:
        """The engine's STATUS object, its mode and the API's clients and dropped events."""
        result = await api.call(lambda s: s.session.backend.status())
        result = {**result, "mode": service.mode, "api": {"clients": len(api.clients), "dropped": api.dropped()}}
        return _ok(result)

    @app.get("/api/v1/balances", tags=["account"])
    async def balances() -> Response:
        """Every asset's free and locked balance, and the equity (balances valued at the last marks)."""

        def read(s: EngineService) -> dict[str, Any]:
            return {
                "account": s.session.account_id,
                "balances": {
                    a: {"free": format_decimal(f), "locked": format_decimal(lk)}
                    for a, (f, lk) in s.session.backend.balances().items()
                },
                "equity": s.tracker.equity_now(),
            }

        return _ok(await api.call(read))

    @app.get("/api/v1/positions", tags=["account"])
    async def positions() -> Response:
        """Every position (position objects)."""

        def read(s: EngineService) -> dict[str, Any]:
            objects = s.session._request("POSITIONS", None, s.session.now())
            return {"positions": [o for o in objects if o.get("symbol")]}

        return _ok(await api.call(read))

    @app.get("/api/v1/orders", tags=["orders"])
    async def orders(
        state: Literal["open", "closed"] = "open",
        since: int = Query(0, ge=0),
        until: int | None = Query(None, ge=0),
        limit: int = Query(100, ge=1, le=10_000),
    ) -> Response:
        """Open orders (order_state objects), or a page of finished ones (order_update objects, newest first)."""
        if state == "open":

            def read_open(s: EngineService) -> dict[str, Any]:
                items = s.session._request("QUERY", None, s.session.now())[0]["orders"]
                return {"items": items, "count": len(items)}

            return _ok(await api.call(read_open))
        return _ok(await api.call(lambda s: _page(s.tracker.orders, since=since, until=until, limit=limit)))

    @app.get("/api/v1/orders/{cid}", tags=["orders"])
    async def order(cid: str) -> Response:
        """One order (order_state object with its history), or 404."""
        _check_cid_or_404(cid)
        try:
            found = await api.call(lambda s: s.session.backend.query(cid))
        except JournalError as exc:  # a damaged order history file: said with its name and line (the engine goes on)
            raise HTTPException(500, f"ORDER_HISTORY_UNREADABLE: {exc}") from None
        if not found:
            raise HTTPException(404, f"no order with cid {cid!r}")
        return _ok(order_state(found[0]))

    @app.get("/api/v1/fills", tags=["orders"])
    async def fills(
        since: int = Query(0, ge=0), until: int | None = Query(None, ge=0), limit: int = Query(100, ge=1, le=10_000)
    ) -> Response:
        """A page of fills, newest first."""
        return _ok(await api.call(lambda s: _page(s.tracker.fills, since=since, until=until, limit=limit)))

    @app.get("/api/v1/pnl", tags=["account"])
    async def pnl(since: int = Query(0, ge=0), limit: int = Query(5_000, ge=2, le=100_000)) -> Response:
        """The equity now and its series (equity and drawdown), oldest first, thinned to ``limit`` points."""
        return _ok(
            await api.call(lambda s: {"equity": s.tracker.equity_now(), "series": s.tracker.series(since, limit)})
        )

    @app.get("/api/v1/actors", tags=["engine"])
    async def actors() -> Response:
        """Each actor's health (the single-process engine: one entry, ``engine``)."""

        def read(s: EngineService) -> dict[str, Any]:
            st = s.session.backend.status()
            if st.get("engine") != "actors":
                inbox = getattr(s, "_inbox", None)
                entry = {
                    "alive": not s.stopping,
                    "inbox_depth": inbox.qsize() if inbox is not None else 0,
                    "restarts": 0,
                    "last_error": None,
                }
                return {"engine": st.get("engine", "single-process"), "actors": {"engine": entry}}
            found = st.get("actors") or {}
            problems = _problems_by_actor(st.get("problems") or [], found)
            return {
                "engine": "actors",
                "actors": {
                    name: {
                        "alive": bool(info.get("alive")),
                        "inbox_depth": int(info.get("inbox_depth") or 0),
                        "restarts": int(info.get("restarts") or 0),
                        "last_error": problems.get(name),
                    }
                    for name, info in found.items()
                },
            }

        return _ok(await api.call(read))

    @app.get("/api/v1/risk", tags=["engine"])
    async def risk() -> Response:
        """The risk limits, their use (open orders, each position against its limit, the breaker) and recent
        rejections."""

        def read(s: EngineService) -> dict[str, Any]:
            backend = s.session.backend
            limits = _limits_dict(s)
            st = backend.status()
            held = {}
            for p in backend.positions():
                held[p.symbol] = p.qty
            max_position = limits.get("max_position") or {}
            use_positions = {}
            for symbol in sorted(s.session.symbols):
                qty = held.get(symbol, 0)
                limit_text = max_position.get(symbol)
                limit = None if not limit_text or limit_text == "0" else parse_decimal(limit_text, "max_position")
                use_positions[symbol] = {
                    "qty": format_decimal(qty),
                    "max_position": None if limit is None else format_decimal(limit),
                    # the long position, as the pre-trade check meets it (coins held before and sold count as none)
                    "used": None if limit is None else format_decimal(max(qty, 0) * SCALE // limit),
                }
            breaker = st.get("circuit_breaker") or {}
            return {
                "limits": limits,
                "use": {
                    "open_orders": len(backend.query(None)),
                    "positions": use_positions,
                    "circuit_breaker": breaker,
                    "halted": bool(breaker),
                },
                "rejections": list(reversed(s.tracker.rejections)),
            }

        return _ok(await api.call(read))

    @app.get("/api/v1/venue", tags=["engine"])
    async def venue() -> Response:
        """Where orders go: each venue's state, the live market data and trading connections when there are."""
        st = await api.call(lambda s: s.session.backend.status())
        return _ok(
            {
                "mode": service.mode,
                "venues": st.get("venues"),
                "market_data": st.get("market_data"),
                "trading": st.get("trading"),
            }
        )

    # ------------------------------------------------------------------------------------------ writes

    @app.post("/api/v1/orders", tags=["orders"], status_code=201)
    async def place(body: OrderBody) -> Response:
        """Place an order; 201 when the engine took it, 409 when it rejected it (the order_update says why)."""
        try:
            qty = _amount(body.qty, "qty")
            price = None if body.price is None else _amount(body.price, "price")
            if body.cid is not None:
                _field(lambda: check_client_order_id(body.cid, new=True), "cid")
        except _FieldError as exc:
            return _invalid(exc.field, exc.message)

        def submit(s: EngineService) -> _FieldError | tuple[str, list[dict[str, Any]]]:
            session = s.session
            symbol = body.symbol.upper()
            if symbol not in session.symbols:
                known = ", ".join(sorted(session.symbols))
                return _FieldError("symbol", f"unknown symbol {body.symbol[:40]!r}; configured: {known}")
            try:
                command = build_place_order(
                    symbol, body.side, qty=qty, price=price, tif=body.tif, client_order_id=body.cid,
                    ids=api.ids, account_id=session.account_id, ts=session.now(), symbols=session.symbols,
                )  # fmt: skip
            except InvalidInput as exc:
                return _FieldError("tif" if "POST_ONLY" in str(exc) else "", str(exc))
            return command.client_order_id, s.apply(command)

        outcome = await api.call(submit)
        if isinstance(outcome, _FieldError):
            return _invalid(outcome.field, outcome.message)
        cid, events = outcome
        updates = [e for e in events if e.get("type") == "order_update" and e.get("cid") == cid]
        accepted = bool(updates) and updates[0].get("status") != "REJECTED"
        return _Json({"cid": cid, "accepted": accepted, "events": events}, status_code=201 if accepted else 409)

    @app.delete("/api/v1/orders/{cid}", tags=["orders"])
    async def cancel(cid: str) -> Response:
        """Cancel an order: 200 cancelled, 202 on its way, 404 unknown cid, 409 the cancel was rejected."""
        _check_cid_or_404(cid)

        def submit(s: EngineService) -> list[dict[str, Any]] | None:
            session = s.session
            if not session.backend.query(cid):
                return None
            command = CancelOrder(client_order_id=cid, account_id=session.account_id, ts=session.now())
            return s.apply(command)

        events = await api.call(submit)
        if events is None:
            raise HTTPException(404, f"no order with cid {cid!r}")
        statuses = [e.get("status") for e in events if e.get("type") == "order_update" and e.get("cid") == cid]
        if "CANCELLED" in statuses:
            code, cancelled = 200, True
        elif any(st in ("CANCEL_REJECTED", "REJECTED") for st in statuses):
            code, cancelled = 409, False
        else:
            code, cancelled = 202, False
        return _Json({"cid": cid, "cancelled": cancelled, "events": events}, status_code=code)

    async def settled_halt(wanted: bool) -> bool:
        """Whether trading is halted, once it is ``wanted`` or after :data:`HALT_CONFIRM_SECONDS`: the actor
        engine's risk actor halts the OMS one-way, so the answer waits until the OMS says so."""
        deadline = time.monotonic() + HALT_CONFIRM_SECONDS
        while True:
            halted = await api.call(lambda s: bool(s.session.backend.status().get("circuit_breaker")))
            if halted == wanted or time.monotonic() >= deadline:
                return halted
            await asyncio.sleep(0.05)

    @app.post("/api/v1/halt", tags=["engine"])
    async def halt() -> Response:
        """The kill switch: cancel every open order, then halt risk-increasing orders until resume. 200 once the
        engine is halted; 202 if it did not say so within 5 s (``halted`` is what it says)."""
        events = await api.call(lambda s: s.halt())
        halted = await settled_halt(True)
        return _ok({"halted": halted, "events": events}, 200 if halted else 202)

    @app.post("/api/v1/resume", tags=["engine"])
    async def resume() -> Response:
        """Lift the kill switch (or a tripped circuit breaker); 200 once trading is back, 202 if not within 5 s."""
        events = await api.call(lambda s: s.resume())
        halted = await settled_halt(False)
        return _ok({"halted": halted, "events": events}, 202 if halted else 200)

    # ---------------------------------------------------------------------------------------- reports

    @app.get("/api/v1/reports", tags=["reports"])
    async def reports() -> Response:
        """Every ``report.html`` under the run folder (backtests, searches), newest first."""
        return _ok({"reports": await asyncio.to_thread(_find_reports, api.run_dir)})

    @app.get("/reports/{path:path}", tags=["reports"], response_model=None)
    async def report(path: str) -> FileResponse:
        """One report page (an ``.html`` file under the run folder)."""
        found = _report_file(api.run_dir, path)
        if found is None:
            raise HTTPException(404, "no such report")
        return FileResponse(found, media_type="text/html")

    # ------------------------------------------------------------------------------------------- page

    @app.get("/", include_in_schema=False, response_model=None)
    async def index() -> Response:
        page_file = web_dir / "index.html"
        if not page_file.is_file():
            return PlainTextResponse("monitoring page not installed", status_code=503)
        return FileResponse(page_file, media_type="text/html")

    @app.get("/static/{path:path}", include_in_schema=False, response_model=None)
    async def static(path: str) -> Response:
        found = _file_under(web_dir, path)
        if found is None:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(found)

    # ----------------------------------------------------------------------------------------- stream

    @app.websocket("/api/v1/stream")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        if not api.authorized(ws.headers.get("authorization"), ws.query_params.get("token")):
            await ws.close(code=_WS_UNAUTHORIZED, reason=_UNAUTHORIZED)
            return
        text = ws.query_params.get("queue")
        size = api.queue
        if text is not None:
            if not (text.isascii() and text.isdigit() and len(text) <= 6) or not 1 <= int(text) <= MAX_QUEUE:
                await ws.close(code=_WS_BAD_REQUEST, reason=f"queue must be 1..{MAX_QUEUE}, got {text[:20]!r}")
                return
            size = int(text)
        if len(api.streams) >= MAX_STREAMS:
            await ws.close(code=_WS_TRY_AGAIN_LATER, reason=f"too many stream clients (the limit is {MAX_STREAMS})")
            return
        await _Stream(api, ws, size).run()

    return app


def _page(store: Iterable[dict[str, Any]], *, since: int, until: int | None, limit: int) -> dict[str, Any]:
    """A page of time-ordered ``store`` (oldest first): rows with ``since <= ts < until``, newest first, at most
    ``limit`` -- except that rows sharing the last row's ``ts`` (the fills of one order) are never split over two
    pages, since the next page asks for ``ts < next_until``. Stops reading once the page is full."""
    rows: list[dict[str, Any]] = []
    more = False
    for row in reversed(store):  # type: ignore[call-overload]
        ts = row["ts"]
        if until is not None and ts >= until:
            continue
        if ts < since:
            continue  # not break: the actor engine's fills may arrive slightly out of time order
        if len(rows) >= limit and ts != rows[-1]["ts"]:
            more = True
            break
        rows.append(row)
    return {"items": rows, "count": len(rows), "more": more, "next_until": rows[-1]["ts"] if more else None}


def _field(fn: Callable[[], Any], field: str) -> Any:
    try:
        return fn()
    except InvalidInput as exc:
        raise _FieldError(field, str(exc)) from None


def _amount(text: str, field: str) -> int:
    return _field(lambda: parse_amount(text, field), field)  # type: ignore[no-any-return]


def _check_cid_or_404(cid: str) -> None:
    try:
        check_client_order_id(cid)
    except InvalidInput:
        raise HTTPException(404, "no order with that cid (a cid is 1-36 letters, digits and - _ . :)") from None


def _file_under(root: Path, relative: str) -> Path | None:
    """``root/relative`` if it is a file inside ``root`` (no ``..``, no symlink out of it)."""
    try:
        base = root.resolve()
        found = (base / relative).resolve()
    except (OSError, ValueError):
        return None
    if not found.is_relative_to(base) or not found.is_file():
        return None
    return found


def _find_reports(run_dir: Path | None) -> list[dict[str, Any]]:
    if run_dir is None or not run_dir.is_dir():
        return []
    out: list[dict[str, Any]] = []
    for depth in range(REPORT_DEPTH + 1):
        pattern = "/".join(["*"] * depth + ["report.html"])
        for path in run_dir.glob(pattern):
            if path.is_file() and path.resolve().is_relative_to(run_dir):
                st = path.stat()
                out.append({"path": path.relative_to(run_dir).as_posix(), "size": st.st_size, "mtime": st.st_mtime_ns})
    out.sort(key=lambda r: int(r["mtime"]), reverse=True)
    return out


def _report_file(run_dir: Path | None, relative: str) -> Path | None:
    if run_dir is None or not relative.endswith(".html") or len(Path(relative).parts) > REPORT_DEPTH + 1:
        return None
    return _file_under(run_dir, relative)


# ---------------------------------------------------------------------------------------------- the stream


class _Stream:
    """One WebSocket client: its subscriber queue drained to the socket (see the module docstring)."""

    def __init__(self, api: _Api, ws: WebSocket, size: int) -> None:
        self.api = api
        self.ws = ws
        self.size = size
        self.wake = asyncio.Event()  # set by the API's wake-up (events queued), the reader (gone) and close
        self.gone = False

    async def send(self, obj: Any) -> None:
        await self.ws.send_text(orjson.dumps(obj).decode())

    async def run(self) -> None:
        api = self.api
        size, notify = self.size, api.notify

        def subscribe(s: EngineService) -> tuple[Subscriber, dict[str, Any]]:
            sub = s.hub.subscribe(size, notify)
            try:
                return sub, s.snapshot()
            except BaseException:
                sub.close()
                raise

        api.attach(self)
        try:
            sub, snap = await api.call(subscribe)
        except (EngineUnavailable, TimeoutError) as exc:
            api.streams.discard(self)
            await self.ws.close(code=_WS_GOING_AWAY, reason=str(exc)[:120])
            return
        api.clients.add(sub)
        reader = asyncio.ensure_future(self._read())
        fragment = api.fragment
        try:
            await self.send(snap)
            last = snap["seq"]
            resynced: float | None = None  # when this client last got a fresh snapshot (the first one goes at once)
            while not (self.gone or api.closed):
                self.wake.clear()
                items, dropped = sub.take(MAX_BATCH)
                if dropped:
                    # the queue holds a contiguous run of the sequence: what this client never got is what lies
                    # between the last event it got and the first one still queued (drops of events a fresh
                    # snapshot already covered are not missed)
                    missed = items[0][0] - 1 - last if items else dropped
                    if missed > 0:
                        api.missed += missed
                        await self.send({"type": "gap", "missed": missed, "last_seq": last})
                        # a snapshot costs the engine's thread: a client whose queue overflows again and again (a
                        # tiny queue, a slow reader) gets one at most every RESYNC_SECONDS (its events after it)
                        if resynced is not None:
                            await asyncio.sleep(max(0.0, resynced + RESYNC_SECONDS - time.monotonic()))
                        resynced = time.monotonic()
                        snap = await api.call(lambda s: s.snapshot())
                        await self.send(snap)
                        last = snap["seq"]
                if items and items[0][0] <= last:
                    items = [item for item in items if item[0] > last]
                if items:
                    if len(items) == 1:
                        await self.ws.send_text(fragment(*items[0]))
                    else:
                        await self.ws.send_text("[" + ",".join([fragment(seq, e) for seq, e in items]) + "]")
                    last = items[-1][0]
                    continue
                await self.wake.wait()
        except (WebSocketDisconnect, EngineUnavailable, TimeoutError, RuntimeError, OSError):
            pass
        finally:
            sub.close()
            api.clients.discard(sub)
            api.streams.discard(self)
            if not reader.done():
                reader.cancel()
            with contextlib.suppress(Exception):
                await self.ws.close(code=_WS_GOING_AWAY)

    async def _read(self) -> None:
        """Read (and ignore) what the client sends until it disconnects."""
        with contextlib.suppress(Exception):
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
        self.gone = True
        self.wake.set()


# ---------------------------------------------------------------------------------------------- the server


def _bounded_http(max_connections: int, request_seconds: float) -> type[Any]:
    """uvicorn's HTTP/1.1 connection (h11), bounded in number and in how long it waits for a request (see
    "Connections" in the module docstring). A connection *waits* from when it is made, or its last answer is sent,
    until a whole request (headers and body) has arrived; only a waiting connection is ever closed for the limits."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedH11(H11Protocol):  # type: ignore[misc]
        waiting: dict[BoundedH11, float] = {}  # (this server's) -> since when, longest-waiting first
        timers: dict[BoundedH11, asyncio.TimerHandle] = {}
        refused = [0, -math.inf]  # connections closed for the limit since the last warning, and when that was

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                self._note_refused()
                oldest = next(iter(self.waiting), None)
                # one that has only just connected has not been read yet: its request may be on its way
                if oldest is None or self.loop.time() - self.waiting[oldest] < _EVICT_AFTER_SECONDS:
                    transport.close()
                    return
                oldest._give_up()
            self._wait()

        def handle_events(self) -> None:
            super().handle_events()
            self._check()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._check()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            super().connection_lost(exc)

        def _check(self) -> None:
            """Waiting (answered, or its request still arriving) or not (a whole request read, a stream, closing)."""
            cycle = self.cycle
            upgraded = self.transport.get_protocol() is not self  # a WebSocket now, bounded by MAX_STREAMS
            reading = cycle is not None and not cycle.more_body and not cycle.response_complete
            if self.transport.is_closing() or upgraded or reading:
                self._stop_waiting()
            elif self not in self.waiting:
                self._wait()

        def _wait(self) -> None:
            self.waiting[self] = self.loop.time()
            self.timers[self] = self.loop.call_later(request_seconds, self._give_up)

        def _stop_waiting(self) -> None:
            self.waiting.pop(self, None)
            timer = self.timers.pop(self, None)
            if timer is not None:
                timer.cancel()

        def _give_up(self) -> None:
            self._stop_waiting()
            if not self.transport.is_closing():
                self.transport.close()

        def _note_refused(self) -> None:
            refused = self.refused
            refused[0] += 1
            now = self.loop.time()
            if now - refused[1] >= 60.0:
                _log.warning(
                    "api: %d connections open, over the limit of %d: the one waiting longest for a request is "
                    "closed, else the new one (%d times since this was last said)", len(self.connections),
                    max_connections, refused[0],
                )  # fmt: skip
                refused[:] = [0, now]

    return BoundedH11


_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class ApiServer:
    """A running API (:func:`serve_api`): ``url``, ``port``, ``token``; :meth:`close` stops it (idempotent)."""

    def __init__(self, server: Any, thread: threading.Thread, api: _Api, host: str, port: int, token: str) -> None:
        self._server = server
        self._thread = thread
        self._api = api
        self.host = host
        self.port = port
        self.token = token
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        self._closed = False
        self._redact: logging.Filter | None = None  # the token's filter on uvicorn's loggers, removed at close

    def __repr__(self) -> str:  # never the token
        return f"ApiServer(url={self.url!r})"

    @property
    def clients(self) -> int:
        return len(self._api.clients)

    @property
    def dropped(self) -> int:
        return self._api.dropped()

    def close(self, timeout: float = 10.0) -> None:
        """Close the WebSocket clients (1001), finish the requests in progress and stop the server."""
        if self._closed:
            return
        self._closed = True
        loop = self._api.loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(self._api.close_streams)
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._redact is not None:
            for name in _UVICORN_LOGGERS:
                logging.getLogger(name).removeFilter(self._redact)


def serve_api(
    service: EngineService,
    address: str,
    *,
    run_dir: Path | None,
    token: str | None,
    queue: int = DEFAULT_QUEUE,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    cors_origins: Iterable[str] = (),
    allowed_hosts: Iterable[str] = (),
    allowed_origins: Iterable[str] = (),
    web_dir: Path = WEB_DIR,
    announce: Callable[[str], None] | None = None,
) -> ApiServer:
    """Start the API on ``address`` (``"[HOST:]PORT"``; port 0 picks a free one) on a daemon thread, wait until it
    listens, print the ``api: ...`` line on stderr (or give it to ``announce``) and return the :class:`ApiServer`.

    :class:`InvalidInput` for a bad address or token; :class:`~veloz_actors.VelozError` when the port cannot be bound.
    """
    import uvicorn

    from .._exceptions import VelozError

    host, port = parse_address(address)
    value = resolve_token(token, run_dir)
    register_secrets(value)  # no veloz log line of this process shows it from now on
    app = build_app(
        service, value, run_dir=run_dir, queue=queue, max_body_bytes=max_body_bytes, cors_origins=cors_origins,
        web_dir=web_dir, host=host, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins,
    )  # fmt: skip
    api: _Api = app.state.api
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on such sockets, and without it every response
        # (headers, then body: two writes) waits for the client's delayed ACK, about 40 ms
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
    except (OSError, UnicodeError) as exc:
        raise VelozError(f"--http {address}: cannot listen on {host}:{port}: {exc}") from None
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    redact = _RedactToken(value)
    for name in _UVICORN_LOGGERS:
        logging.getLogger(name).addFilter(redact)
    limit = _connection_limit()
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=5,
        ws="websockets-sansio", ws_max_size=1 << 20, ws_per_message_deflate=False, server_header=False,
        http=_bounded_http(limit, REQUEST_SECONDS), backlog=max(16, limit // 4),  # accepted at once: limits the burst
    )  # fmt: skip
    server = uvicorn.Server(config)
    started = threading.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        api.loop = asyncio.get_running_loop()
        try:
            await server.serve(sockets=[sock])
        finally:
            started.set()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # noqa: BLE001 - reported by serve_api or logged
            failure.append(exc)
            _log.error("api: the server stopped: %s", exc)
        finally:
            started.set()
            sock.close()

    thread = threading.Thread(target=run, name="veloz-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15.0
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        started.wait(0.01)
    if not server.started:
        server.should_exit = True
        for name in _UVICORN_LOGGERS:
            logging.getLogger(name).removeFilter(redact)
        raise VelozError(f"--http {address}: the API did not start: {failure[0] if failure else 'timed out'}")
    result = ApiServer(server, thread, api, host, port, value)
    result._redact = redact
    line = f"api: {result.url}/?token={value} (schema: {result.url}/openapi.json)"
    if announce is not None:
        announce(line)
    else:
        print(line, file=sys.stderr, flush=True)
    if not _loopback(host):
        _log.warning("api: listening on %s, beyond this machine, without TLS: the token travels in clear", host)
    _log.info("api: serving %s", result.url)
    return result


def _connection_limit() -> int:
    """:data:`MAX_CONNECTIONS`, or a quarter of this process's file descriptor limit (at least 16) when that is less."""
    try:
        import resource
    except ImportError:  # not a Unix
        return MAX_CONNECTIONS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else min(MAX_CONNECTIONS, max(16, soft // 4))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
