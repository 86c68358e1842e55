"""Shared by the API tests: a real engine behind a real API server, and small clients over real sockets.

:func:`running_api` builds the single-process engine (the shipped config, a generous order rate limit), the stdio
session and :class:`EngineService`, runs the engine loop on a background thread and serves the API on a free port.
The simulated market ticks once at start (quotes, reference prices) and then only when a test asks
(:meth:`RunningApi.tick`), so the event stream is exactly what the test caused.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import websockets.sync.client

from veloz_actors.config import default_engine_config, load_engine_config
from veloz_actors.fixed import format_decimal
from veloz_actors.interfaces.http_api import ApiServer, serve_api
from veloz_actors.interfaces.local import LocalBackend
from veloz_actors.interfaces.service import EngineService
from veloz_actors.interfaces.stdio import Session
from veloz_actors.venues.engine import Engine

from ..actors.helpers import wait_for  # noqa: F401 - the tests import it from here too

T = TypeVar("T")
HOUR_MS = 3_600_000  # the market's tick period in these tests: one tick at start, then only on request


def engine_config(**risk: Any) -> Any:
    """The shipped engine config with a generous order rate (and any other risk fields given)."""
    config = load_engine_config(default_engine_config())
    limits = config.risk.model_copy(update={"orders_per_second": 1_000_000, "burst": 1_000_000, **risk})
    return config.model_copy(update={"risk": limits}).engine_config()


@dataclass
class RunningApi:
    service: EngineService
    server: ApiServer
    thread: threading.Thread
    backend: LocalBackend

    @property
    def token(self) -> str:
        return self.server.token

    def client(self, token: str | None = None) -> Client:
        return Client(self.server.url, self.token if token is None else token)

    def tick(self) -> None:
        """One step of the simulated market, on the engine thread (its events are published like any)."""
        self.service.call(lambda s: s.emit(s.session.events(s.session.backend.tick(s.session.now()))))

    def ws_url(self, **params: Any) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"token": self.token, **params}.items() if v is not None)
        return self.server.url.replace("http://", "ws://") + "/api/v1/stream" + (f"?{query}" if query else "")


@contextlib.contextmanager
def running_api(
    run_dir: Path, *, tick_ms: int = HOUR_MS, config: Any = None, engine: Engine | None = None, **options: Any
) -> Iterator[RunningApi]:
    """An engine (``engine``, or one of ``config``) on its own thread with the API in front of it."""
    engine = engine if engine is not None else Engine(config if config is not None else engine_config())
    backend = LocalBackend(engine)
    session = Session(backend, symbols=set(engine.instruments), clock=time.time_ns)
    service = EngineService(
        session, tick=backend.tick, tick_ms=tick_ms, valuation=backend.valuation(), halt=backend.halt,
        resume=backend.resume, mode="sim",
    )  # fmt: skip
    thread = threading.Thread(target=service.run, kwargs={"install_signals": False}, name="engine", daemon=True)
    thread.start()
    wait_for(lambda: service.started_ns and service.hub.seq > 0, what="the engine's first tick")
    server = serve_api(service, "127.0.0.1:0", run_dir=run_dir, token=options.pop("token", None),
                       announce=options.pop("announce", lambda line: None), **options)  # fmt: skip
    try:
        yield RunningApi(service, server, thread, backend)
    finally:
        server.close()
        service.stop()
        thread.join(30)
        assert not thread.is_alive(), "the engine loop did not stop"


class Client:
    """A keep-alive HTTP client: ``request`` returns (status, JSON body or text, headers)."""

    def __init__(self, url: str, token: str | None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token = token
        self.conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:  # fmt: skip
        sent = dict(headers or {})
        if self.token is not None and "Authorization" not in sent:
            sent["Authorization"] = f"Bearer {self.token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                self.conn.connect()  # headers and body go in two sends: no Nagle wait (40 ms) between them
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.conn.request(method, path, body=data, headers=sent)
                response = self.conn.getresponse()
                payload = response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
        if response.getheader("connection", "").lower() == "close":
            self.close()
        kind = response.getheader("content-type", "")
        parsed = json.loads(payload) if kind.startswith("application/json") and payload else payload.decode()
        return response.status, parsed, {k.lower(): v for k, v in response.getheaders()}

    def get(self, path: str) -> Any:
        status, body, _ = self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    def order(self, **fields: Any) -> tuple[int, Any]:
        status, body, _ = self.request("POST", "/api/v1/orders", fields)
        return status, body


def flatten(message: str) -> list[dict[str, Any]]:
    """One stream message -> its objects (a message holds one object or an array of them)."""
    parsed = json.loads(message)
    return parsed if isinstance(parsed, list) else [parsed]


class Watcher:
    """A WebSocket client of the stream, read on the caller's thread."""

    def __init__(self, url: str, **connect: Any) -> None:
        self.ws = websockets.sync.client.connect(url, open_timeout=10, **connect).__enter__()
        self.pending: list[dict[str, Any]] = []

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        while not self.pending:
            self.pending.extend(flatten(self.ws.recv(timeout=timeout)))
        return self.pending.pop(0)

    def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> list[dict[str, Any]]:
        """Every object up to and including the first one ``predicate`` accepts."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            obj = self.next(timeout=max(0.01, deadline - time.monotonic()))
            out.append(obj)
            if predicate(obj):
                return out

    def close(self) -> None:
        self.ws.close()


def below_reference(api: RunningApi, percent: int, symbol: str = "BTCUSDT") -> str:
    """A limit price ``percent`` under the reference price, on the 0.01 tick (inside the 5 % band for percent < 5)."""
    reference = api.service.call(lambda s: s.session.backend.engine.kernel.reference[symbol])
    return format_decimal(reference * (100 - percent) // 100 // 1_000_000 * 1_000_000)
