"""The HTTP/WebSocket API over real sockets: a real engine, uvicorn on its own thread, clients in the test.

Every endpoint, the token on every protected one, the body cap, bad bodies (named fields, and a hypothesis fuzz that
must never get a 5xx or move a balance), orders that fill, rest and cancel, the kill switch, paging, the WebSocket
stream (numbering, gaps of a slow client), the token file, and no token in any log line; then ``veloz start --http``
as a subprocess and the actor engine behind the same API.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import websockets.exceptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veloz_actors import InvalidInput
from veloz_actors.fixed import parse_formatted
from veloz_actors.interfaces import http_api
from veloz_actors.interfaces.http_api import parse_address, resolve_token

from .api_helpers import Client, RunningApi, Watcher, below_reference, engine_config, running_api, wait_for

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "engine.yaml"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> RunningApi:
    with running_api(tmp_path_factory.mktemp("api-run")) as running:
        yield running


@pytest.fixture
def client(api: RunningApi) -> Client:
    c = api.client()
    yield c
    c.close()


def _balances(client: Client) -> dict[str, Any]:
    return client.get("/api/v1/balances")["balances"]


def _dec(text: str) -> Decimal:
    return Decimal(text)


# ------------------------------------------------------------------------------------------------- the token

PROTECTED = [
    ("GET", "/api/v1/status"),
    ("GET", "/api/v1/balances"),
    ("GET", "/api/v1/positions"),
    ("GET", "/api/v1/orders"),
    ("GET", "/api/v1/orders?state=closed"),
    ("GET", "/api/v1/orders/some-cid"),
    ("GET", "/api/v1/fills"),
    ("GET", "/api/v1/pnl"),
    ("GET", "/api/v1/actors"),
    ("GET", "/api/v1/risk"),
    ("GET", "/api/v1/venue"),
    ("GET", "/api/v1/reports"),
    ("GET", "/reports/some/report.html"),
    ("POST", "/api/v1/orders"),
    ("DELETE", "/api/v1/orders/some-cid"),
    ("POST", "/api/v1/halt"),
    ("POST", "/api/v1/resume"),
]
BAD_AUTH = {
    "missing": None,
    "wrong": "Bearer wrong-token-0123456789abcdef",
    "truncated": "Bearer {token_truncated}",
    "basic-scheme": "Basic {token}",
    "no-scheme": "{token}",
    "empty": "Bearer ",
}


@pytest.mark.parametrize("method,path", PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
@pytest.mark.parametrize("auth", list(BAD_AUTH), ids=list(BAD_AUTH))
def test_protected_endpoints_answer_401_without_the_right_token(api: RunningApi, method: str, path: str,
                                                                 auth: str) -> None:  # fmt: skip
    template = BAD_AUTH[auth]
    headers = {}
    if template is not None:
        headers["Authorization"] = template.format(token=api.token, token_truncated=api.token[:-1])
    body = {"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01"} if method == "POST" else None
    client = Client(api.server.url, None)
    try:
        status, answer, response_headers = client.request(method, path, body, headers=headers)
    finally:
        client.close()
    assert status == 401
    assert answer == {"detail": "missing or wrong API token"}
    assert response_headers["www-authenticate"] == "Bearer"
    assert api.token not in json.dumps(answer)


def test_a_refused_halt_did_not_halt(api: RunningApi, client: Client) -> None:
    anonymous = Client(api.server.url, None)
    assert anonymous.request("POST", "/api/v1/halt")[0] == 401
    anonymous.close()
    assert client.get("/api/v1/risk")["use"]["halted"] is False


def test_the_bearer_scheme_is_case_insensitive(api: RunningApi) -> None:
    client = Client(api.server.url, None)
    status, _, _ = client.request("GET", "/api/v1/status", headers={"Authorization": f"bearer {api.token}"})
    client.close()
    assert status == 200


@pytest.mark.parametrize("path", ["/api/v1/health", "/", "/static/app.js", "/openapi.json"])
def test_health_the_page_and_the_schema_need_no_token(api: RunningApi, path: str) -> None:
    client = Client(api.server.url, None)
    status, _, _ = client.request("GET", path)
    client.close()
    assert status == 200


@pytest.mark.parametrize("query", ["", "?token=wrong-token-0123456789", "?token="])
def test_the_stream_closes_4401_without_the_right_token(api: RunningApi, query: str) -> None:
    url = api.server.url.replace("http://", "ws://") + "/api/v1/stream" + query
    with _closed(url) as closed:
        pass
    assert closed.code == 4401
    assert closed.reason == "missing or wrong API token"


class _closed:
    """Connect and read until the server closes; ``code`` and ``reason`` are the server's close frame."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.code: int | None = None
        self.reason = ""

    def __enter__(self) -> _closed:
        watcher = Watcher(self.url)
        try:
            watcher.ws.recv(timeout=10)
            raise AssertionError("the server sent a message instead of closing")
        except websockets.exceptions.ConnectionClosed as exc:
            self.code, self.reason = exc.rcvd.code, exc.rcvd.reason
        finally:
            watcher.close()
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("queue", ["0", "100001", "abc", "-1", "%C2%B2", "9" * 5000])
def test_a_bad_queue_size_closes_4400_naming_it(api: RunningApi, queue: str) -> None:
    with _closed(api.ws_url(queue=queue)) as closed:
        pass
    assert closed.code == 4400
    assert "queue must be 1..100000" in closed.reason


def test_a_link_planted_where_the_token_is_written_is_never_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token went through the temporary file's name: a link there (a shared run folder) sent it elsewhere."""
    monkeypatch.delenv("VELOZ_API_TOKEN", raising=False)
    run_dir, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run_dir.mkdir()
    elsewhere.write_text("")
    (run_dir / f".api-token.{os.getpid()}").symlink_to(elsewhere)
    token = resolve_token(None, run_dir)
    assert elsewhere.read_text() == "" and (run_dir / "api-token").read_text().strip() == token
    assert not (run_dir / "api-token").is_symlink() and stat.S_IMODE((run_dir / "api-token").stat().st_mode) == 0o600


def test_the_token_file_is_written_0600_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VELOZ_API_TOKEN", raising=False)
    run_dir = tmp_path / "run"
    first = resolve_token(None, run_dir)
    path = run_dir / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first and len(first) >= 40
    assert resolve_token(None, run_dir) == first  # reused
    monkeypatch.setenv("VELOZ_API_TOKEN", "from-the-environment-0123")
    assert resolve_token(None, run_dir) == "from-the-environment-0123"
    assert resolve_token("given-explicitly-0123456", run_dir) == "given-explicitly-0123456"
    with pytest.raises(InvalidInput, match="at least 16 characters"):
        resolve_token("short", run_dir)
    with pytest.raises(InvalidInput, match=r"^the token must be printable ASCII, as an HTTP header carries it$"):
        resolve_token("mot-de-passe-très-secret", run_dir)  # it could never match a request's header


def test_a_new_token_file_is_on_the_disk_before_it_takes_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new token was renamed into place unflushed: a power loss could leave ``api-token`` empty, and the next
    start made another token, refusing the one the user's scripts and page hold."""
    monkeypatch.delenv("VELOZ_API_TOKEN", raising=False)
    steps: list[str] = []
    fsync, replace = os.fsync, os.replace

    def recorded_fsync(fd: int) -> None:
        steps.append(f"fsync {Path(os.readlink(f'/proc/self/fd/{fd}')).name}")
        fsync(fd)

    def recorded_replace(source: Any, target: Any) -> None:
        steps.append(f"rename to {Path(target).name}")
        replace(source, target)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded_replace)
    resolve_token(None, tmp_path)
    assert steps == [f"fsync .api-token.{os.getpid()}", "rename to api-token", f"fsync {tmp_path.name}"]


def test_a_readable_token_file_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VELOZ_API_TOKEN", raising=False)
    path = tmp_path / "api-token"
    path.write_text("an-old-token-0123456789\n")
    path.chmod(0o644)
    assert resolve_token(None, tmp_path) == "an-old-token-0123456789"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "content", ["\ufeff" + "a" * 32 + "\n", "é" * 20, "a token\twith a tab inside"], ids=["bom", "accents", "tab"]
)
def test_a_token_file_a_header_cannot_carry_is_refused_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    """A token that is not printable ASCII never matched (a request's header is read as latin-1; the page's fetch
    refuses to send it): every request was a 401, and the page asked for the token again and again."""
    monkeypatch.delenv("VELOZ_API_TOKEN", raising=False)
    path = tmp_path / "api-token"
    path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(InvalidInput, match="api-token must hold printable ASCII only") as raised:
        resolve_token(None, tmp_path)
    assert content.strip() not in str(raised.value)  # a secret: never shown


def test_a_token_file_of_bytes_that_are_no_text_is_refused_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VELOZ_API_TOKEN", raising=False)
    path = tmp_path / "api-token"
    path.write_bytes(b"\xff\xfe" + b"a" * 30)  # was a UnicodeDecodeError out of veloz start
    path.chmod(0o600)
    with pytest.raises(InvalidInput, match="api-token must hold printable ASCII only"):
        resolve_token(None, tmp_path)


def test_a_server_restarted_on_the_same_run_folder_keeps_its_token(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("VELOZ_API_TOKEN", raising=False)
    with running_api(tmp_path) as first:
        token = first.token
        assert first.client().get("/api/v1/health")["status"] == "ok"
    with running_api(tmp_path) as second:
        assert second.token == token
        assert second.client().get("/api/v1/status")["engine"] == "single-process"


@pytest.mark.parametrize(
    "address,expected",
    [("8080", ("127.0.0.1", 8080)), ("0.0.0.0:0", ("0.0.0.0", 0)), ("[::1]:9000", ("::1", 9000)),
     ("localhost:1", ("localhost", 1))],
)  # fmt: skip
def test_addresses_parse(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["", "x", "host:", "1:65536", "a b:80", "[::1]8080", "-1"])
def test_bad_addresses_are_named(address: str) -> None:
    with pytest.raises(InvalidInput, match="--http"):
        parse_address(address)


def test_no_token_in_any_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("VELOZ_API_TOKEN", raising=False)
    caplog.set_level(logging.DEBUG)
    announced: list[str] = []
    with running_api(tmp_path, announce=announced.append) as running:
        token = running.token
        client = running.client()
        client.get("/api/v1/status")
        client.order(symbol="BTCUSDT", side="BUY", qty="0.01")
        Client(running.server.url, "wrong-token-0123456789").request("GET", "/api/v1/status")
        Client(running.server.url, None).request("GET", f"/reports/x.html?token={token}")
        watcher = Watcher(running.ws_url())
        assert watcher.next()["type"] == "snapshot"
        watcher.close()
        with _closed(running.server.url.replace("http://", "ws://") + "/api/v1/stream?token=" + token[:-1]):
            pass
        client.close()
    assert announced == [f"api: {running.server.url}/?token={token} (schema: {running.server.url}/openapi.json)"]
    lines = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.client")]  # the test's own
    assert any("WebSocket" in line for line in lines)  # uvicorn did log the stream's path: redacted
    assert not [line for line in lines if token in line or token[:-1] in line]


def test_the_openapi_schema_declares_the_token_on_protected_paths(api: RunningApi) -> None:
    schema = Client(api.server.url, None).get("/openapi.json")
    assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert schema["paths"]["/api/v1/orders"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/api/v1/health"]["get"]
    assert set(schema["components"]["schemas"]["OrderBody"]["properties"]) == {"symbol", "side", "qty", "price",
                                                                              "tif", "cid"}  # fmt: skip


# -------------------------------------------------------------------------------------------- reads


def test_health_is_ok_with_the_mode_and_the_sequence(api: RunningApi) -> None:
    health = Client(api.server.url, None).get("/api/v1/health")
    assert health["status"] == "ok" and health["mode"] == "sim"
    assert health["seq"] >= 1 and health["uptime_seconds"] > 0


def test_status_is_the_engines_with_the_api_counters(client: Client) -> None:
    status = client.get("/api/v1/status")
    assert status["engine"] == "single-process" and status["state"] == "running"
    assert set(status["reference_prices"]) == {"BTCUSDT", "ETHUSDT"}
    assert all(type(p) is str and parse_formatted(p) > 0 for p in status["reference_prices"].values())
    assert status["mode"] == "sim"
    assert set(status["api"]) == {"clients", "dropped"}


def test_balances_and_equity(client: Client) -> None:
    body = client.get("/api/v1/balances")
    assert body["account"] == "main"
    assert set(body["balances"]) == {"USDT", "BTC", "ETH"}
    assert all(set(b) == {"free", "locked"} for b in body["balances"].values())
    equity = body["equity"]
    assert equity["asset"] == "USDT" and equity["complete"] is True
    assert _dec(equity["equity"]) > 100_000


def test_actors_of_the_single_process_engine(client: Client) -> None:
    body = client.get("/api/v1/actors")
    depth = body["actors"]["engine"]["inbox_depth"]
    assert type(depth) is int and depth >= 0
    assert body == {
        "engine": "single-process",
        "actors": {"engine": {"alive": True, "inbox_depth": depth, "restarts": 0, "last_error": None}},
    }


def test_risk_shows_the_limits_as_decimal_strings(client: Client) -> None:
    body = client.get("/api/v1/risk")
    limits = body["limits"]
    assert limits["max_order_qty"] == {"BTCUSDT": "10", "ETHUSDT": "100"}
    assert limits["max_position"] == {"BTCUSDT": "20", "ETHUSDT": "200"}
    assert limits["price_band"] == "0.05" and limits["max_drawdown"] == "0.2"
    assert limits["orders_per_second"] == 1_000_000
    use = body["use"]
    assert set(use["positions"]) == {"BTCUSDT", "ETHUSDT"}
    assert use["positions"]["ETHUSDT"]["max_position"] == "200"
    assert isinstance(use["open_orders"], int) and use["halted"] is False


def test_risk_use_of_max_position_counts_deposited_coins_sold_as_no_position(tmp_path: Path) -> None:
    from veloz_actors.core.risk import RiskLimits
    from veloz_actors.messages import Tick
    from veloz_actors.testing import START_NS, d, place
    from veloz_actors.testing import engine_config as kit_config
    from veloz_actors.venues.engine import Engine

    limits = RiskLimits(max_position={"BTCUSDT": d("0.5")})
    engine = Engine(kit_config(sim=True, risk=limits, balances={"main": {"USDT": d("100000"), "BTC": d("1")}}))
    engine.apply(Tick(ts=START_NS))
    engine.apply(place("s", "SELL", "1", ts=START_NS + 1))  # the deposited BTC sold at market: position -1
    with running_api(tmp_path, engine=engine) as api:
        client = api.client()
        try:
            used = client.get("/api/v1/risk")["use"]["positions"]["BTCUSDT"]
        finally:
            client.close()
    assert used == {"qty": "-1", "max_position": "0.5", "used": "0"}  # the limit a buy meets: none of it used yet


def test_venue_shows_the_simulated_venues(client: Client) -> None:
    body = client.get("/api/v1/venue")
    assert body["mode"] == "sim"
    assert set(body["venues"]) == {"BTCUSDT", "ETHUSDT"}
    assert body["venues"]["BTCUSDT"]["venue"] == "SIM"
    assert body["market_data"] is None and body["trading"] is None


def test_pnl_series_is_oldest_first(api: RunningApi, client: Client) -> None:
    client.order(symbol="ETHUSDT", side="BUY", qty="0.01")
    body = client.get("/api/v1/pnl")
    series = body["series"]
    assert series and [p["ts"] for p in series] == sorted(p["ts"] for p in series)
    assert set(series[0]) == {"ts", "equity", "drawdown"}
    assert body["equity"]["asset"] == "USDT"
    assert client.request("GET", "/api/v1/pnl?limit=1")[0] == 422


@pytest.mark.parametrize(
    "query,name",
    [("state=all", "state"), ("limit=0", "limit"), ("limit=10001", "limit"), ("since=-1", "since"),
     ("until=x", "until")],
)  # fmt: skip
def test_bad_query_parameters_are_422_naming_them(client: Client, query: str, name: str) -> None:
    status, body, _ = client.request("GET", f"/api/v1/orders?{query}")
    assert status == 422
    assert body["detail"][0]["loc"] == ["query", name]


def test_reports_lists_report_pages_and_serves_them_only(tmp_path: Path) -> None:
    (tmp_path / "bt1").mkdir()
    (tmp_path / "bt1" / "report.html").write_text("<html>one</html>")
    deep = tmp_path / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    (deep / "report.html").write_text("<html>deep</html>")
    too_deep = deep / "e"
    too_deep.mkdir()
    (too_deep / "report.html").write_text("<html>too deep</html>")
    (tmp_path / "engine.journal").write_text("secret journal")
    with running_api(tmp_path, token="a-test-token-0123456789") as running:
        client = running.client()
        listed = client.get("/api/v1/reports")["reports"]
        assert sorted(r["path"] for r in listed) == ["a/b/c/d/report.html", "bt1/report.html"]
        assert all(r["size"] > 0 and r["mtime"] > 0 for r in listed)
        status, text, headers = client.request("GET", "/reports/bt1/report.html")
        assert status == 200 and text == "<html>one</html>" and headers["content-type"].startswith("text/html")
        for path in ["/reports/engine.journal", "/reports/api-token", "/reports/../../etc/passwd",
                     "/reports/%2e%2e/%2e%2e/etc/hosts", "/reports/bt1/nothing.html"]:  # fmt: skip
            assert client.request("GET", path)[0] == 404, path
        link = Client(running.server.url, None)  # a link in a browser: the token in the query
        status, text, _ = link.request("GET", "/reports/bt1/report.html?token=a-test-token-0123456789")
        assert status == 200 and text == "<html>one</html>"
        client.close()
        link.close()


def test_the_page_is_served_from_the_web_folder(tmp_path: Path) -> None:
    web = tmp_path / "web"
    with running_api(tmp_path, web_dir=web) as running:
        anonymous = Client(running.server.url, None)
        status, text, _ = anonymous.request("GET", "/")
        assert (status, text) == (503, "monitoring page not installed")
        web.mkdir()
        (web / "index.html").write_text("<html>page</html>")
        (web / "app.js").write_text("console.log(1)")
        assert anonymous.request("GET", "/")[:2] == (200, "<html>page</html>")
        status, text, headers = anonymous.request("GET", "/static/app.js")
        assert (status, text) == (200, "console.log(1)") and "javascript" in headers["content-type"]
        assert anonymous.request("GET", "/static/../web/app.js")[:2] == (200, "console.log(1)")  # still inside web/
        assert anonymous.request("GET", "/static/%2e%2e/api-token")[0] == 404
        anonymous.close()


# ----------------------------------------------------------------------------------- callers and headers


def _raw_handshake(api: RunningApi, host: str, origin: str | None = None) -> tuple[int, str]:
    """A WebSocket handshake for the stream written over a plain socket, so that any ``Host`` can be sent: the
    status and the body of the answer (the whole answer is read: the server closes after a refusal)."""
    port = api.server.port
    lines = [f"GET /api/v1/stream?token={api.token} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]  # fmt: skip
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status == 101:
            return status, ""
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, body.decode()


@pytest.mark.parametrize("path", ["/api/v1/health", "/", "/static/app.js", "/api/v1/status", "/openapi.json"])
@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}", "[::2]:{port}",
                                  "localhost:x", ""])  # fmt: skip
def test_a_request_naming_another_host_is_400_naming_the_header(api: RunningApi, client: Client, path: str,
                                                                host: str) -> None:  # fmt: skip
    shown = host.format(port=api.server.port)
    status, body, headers = client.request("GET", path, headers={"Host": shown})
    assert status == 400, body
    assert body["detail"].startswith(f"Host header {shown!r} not allowed")
    assert headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}", "127.0.0.1"])
def test_the_loopback_names_are_answered_on_any_port(client: Client, host: str, api: RunningApi) -> None:
    assert client.request("GET", "/api/v1/status", headers={"Host": host.format(port=api.server.port)})[0] == 200


def test_allowed_hosts_are_answered_and_their_origin_may_stream(tmp_path: Path) -> None:
    with running_api(tmp_path, allowed_hosts=("mybox.lan",)) as running:
        client = running.client()
        port = running.server.port
        assert client.request("GET", "/api/v1/status", headers={"Host": f"mybox.lan:{port}"})[0] == 200
        assert client.request("GET", "/api/v1/status", headers={"Host": f"otherbox.lan:{port}"})[0] == 400
        client.close()
        assert _raw_handshake(running, f"mybox.lan:{port}", origin=f"http://mybox.lan:{port}")[0] == 101
        assert _raw_handshake(running, f"otherbox.lan:{port}", origin=f"http://otherbox.lan:{port}")[0] == 400


def test_a_stream_handshake_naming_another_host_is_400_naming_the_header(api: RunningApi) -> None:
    status, body = _raw_handshake(api, f"rebound.example:{api.server.port}")
    assert status == 400
    assert json.loads(body)["detail"].startswith(f"Host header 'rebound.example:{api.server.port}' not allowed")


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:1", "null", "https://127.0.0.1.evil.example",
                                    "http://127.0.0.1"])  # fmt: skip
def test_a_stream_handshake_from_another_origin_is_403_naming_the_header(api: RunningApi, origin: str) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        Watcher(api.ws_url(), origin=origin)
    assert refused.value.response.status_code == 403
    detail = json.loads(refused.value.response.body)["detail"]
    assert detail.startswith(f"Origin header {origin!r} not allowed")
    assert api.token not in detail


def test_the_stream_takes_its_own_origin_allowed_origins_and_clients_without_one(tmp_path: Path) -> None:
    with running_api(tmp_path, allowed_origins=("https://dash.example",)) as running:
        port = running.server.port
        for url, origin in [
            (running.ws_url(), f"http://127.0.0.1:{port}"),  # the page the API served
            (running.ws_url().replace("127.0.0.1", "localhost"), f"http://localhost:{port}"),
            (running.ws_url(), "https://dash.example"),  # api.allowed_origins
            (running.ws_url(), None),  # a program: no Origin header
        ]:
            watcher = Watcher(url, origin=origin)
            assert watcher.next()["type"] == "snapshot", origin
            watcher.close()
        with pytest.raises(websockets.exceptions.InvalidStatus):
            Watcher(running.ws_url(), origin="https://other.example")


@pytest.mark.parametrize("path,status", [("/", 200), ("/static/app.js", 200), ("/api/v1/health", 200),
                                         ("/api/v1/balances", 401), ("/static/nothing.js", 404)])  # fmt: skip
def test_every_answer_has_the_pages_security_headers(api: RunningApi, path: str, status: int) -> None:
    anonymous = Client(api.server.url, None)
    got, _, headers = anonymous.request("GET", path)
    anonymous.close()
    assert got == status
    assert headers["content-security-policy"] == http_api.PAGE_POLICY
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "'unsafe-inline'" not in headers["content-security-policy"]
    assert (headers["x-content-type-options"], headers["referrer-policy"], headers["x-frame-options"]) == (
        "nosniff", "no-referrer", "DENY",
    )  # fmt: skip


def test_a_report_has_its_own_policy_that_connects_nowhere(tmp_path: Path) -> None:
    (tmp_path / "bt").mkdir()
    (tmp_path / "bt" / "report.html").write_text("<html>report</html>")
    with running_api(tmp_path, token="a-test-token-0123456789") as running:
        link = Client(running.server.url, None)
        for path, status in [("/reports/bt/report.html?token=a-test-token-0123456789", 200),
                             ("/reports/bt/report.html", 401)]:  # fmt: skip
            got, _, headers = link.request("GET", path)
            assert got == status
            assert headers["content-security-policy"] == http_api.REPORT_POLICY
            assert "connect-src 'none'" in headers["content-security-policy"]
            assert "'unsafe-eval'" not in headers["content-security-policy"]
            assert (headers["referrer-policy"], headers["x-frame-options"]) == ("no-referrer", "DENY")
        link.close()


# ------------------------------------------------------------------------------------------- bad bodies


def test_an_oversized_body_is_413(client: Client) -> None:
    body = {"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "cid": "x" * 20_000}
    status, answer, _ = client.request("POST", "/api/v1/orders", body)
    assert status == 413
    assert "16384 bytes" in answer["detail"]


def test_an_oversized_chunked_body_is_413(api: RunningApi) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", api.server.port, timeout=30)
    chunks = (b'{"symbol": "BTCUSDT", "pad": "' + b"x" * 4096 + b'"' for _ in range(8))
    conn.request("POST", "/api/v1/orders", body=chunks, encode_chunked=True,
                 headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"})  # fmt: skip
    response = conn.getresponse()
    assert response.status == 413
    conn.close()


BAD_BODIES = [
    ({"side": "BUY", "qty": "0.01"}, "symbol"),
    ({"symbol": "BTCUSDT", "side": "HOLD", "qty": "0.01"}, "side"),
    ({"symbol": "BTCUSDT", "side": "buy", "qty": "0.01"}, "side"),
    ({"symbol": "BTCUSDT", "side": "BUY"}, "qty"),
    ({"symbol": "BTCUSDT", "side": "BUY", "qty": 0.01}, "qty"),
    ({"symbol": "BTCUSDT", "side": "BUY", "qty": "-1"}, "qty"),
    ({"symbol": "BTCUSDT", "side": "BUY", "qty": "0"}, "qty"),
    ({"symbol": "BTCUSDT", "side": "BUY", "qty": "abc"}, "qty"),
    ({"symbol": "BTCUSDT", "side": "BUY", "qty": "nan"}, "qty"),
    ({"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "price": "x"}, "price"),
    ({"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "price": 60000}, "price"),
    ({"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "tif": "DAY"}, "tif"),
    ({"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "tif": "POST_ONLY"}, "tif"),
    ({"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "cid": "not valid!"}, "cid"),
    ({"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "cid": "x" * 37}, "cid"),
    ({"symbol": "DOGEUSDT", "side": "BUY", "qty": "0.01"}, "symbol"),
    ({"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "leverage": "10"}, "leverage"),
]


@pytest.mark.parametrize("body,field", BAD_BODIES, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD_BODIES)])
def test_a_bad_order_body_is_422_naming_the_field(client: Client, body: dict[str, Any], field: str) -> None:
    before = _balances(client)
    status, answer, _ = client.request("POST", "/api/v1/orders", body)
    assert status == 422, answer
    locations = [d["loc"] for d in answer["detail"]]
    assert ["body", field] in locations, answer
    assert all(d["msg"] for d in answer["detail"])
    assert _balances(client) == before


@pytest.mark.parametrize("kind", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data; b=x"])
def test_a_body_that_is_not_sent_as_json_is_415_naming_the_header(client: Client, kind: str) -> None:
    body = b'{"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01"}'
    status, answer, _ = client.request("POST", "/api/v1/orders", raw=body, headers={"Content-Type": kind})
    assert status == 415 and "Content-Type: application/json" in answer["detail"]
    assert kind.split(";")[0] in answer["detail"]


def test_a_chunked_body_that_is_not_json_is_415_too(api: RunningApi) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", int(api.server.url.rsplit(":", 1)[1]), timeout=30)
    body = iter([b'{"symbol": "BTCUSDT", ', b'"side": "BUY", "qty": "0.01"}'])
    headers = {"Authorization": f"Bearer {api.token}", "Content-Type": "text/plain", "Transfer-Encoding": "chunked"}
    conn.request("POST", "/api/v1/orders", body=body, headers=headers, encode_chunked=True)
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    assert response.status == 415 and "text/plain" in answer["detail"]


def _raw_post(api: RunningApi, path: str, chunks: list[bytes] | None, headers: dict[str, str]) -> tuple[int, Any]:
    """POST exactly these headers (and the token): http.client adds Content-Length (or chunked), never a
    Content-Type. ``chunks`` None: no body and no Content-Length at all (``curl -X POST``)."""
    conn = http.client.HTTPConnection("127.0.0.1", api.server.port, timeout=30)
    try:
        sent = {"Authorization": f"Bearer {api.token}", **headers}
        if chunks is None:
            conn.putrequest("POST", path, skip_accept_encoding=True)
            for name, value in sent.items():
                conn.putheader(name, value)
            conn.endheaders()
        elif len(chunks) == 1:
            conn.request("POST", path, body=chunks[0], headers=sent)
        else:
            conn.request("POST", path, body=iter(chunks), headers=sent, encode_chunked=True)
        response = conn.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else None
    finally:
        conn.close()


def _nothing_placed(client: Client, cid: str, balances: dict[str, Any], open_orders: list[Any]) -> None:
    assert client.request("GET", f"/api/v1/orders/{cid}")[0] == 404
    assert _balances(client) == balances
    assert client.get("/api/v1/orders")["items"] == open_orders


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_json_body_without_a_content_type_is_415_and_places_nothing(api: RunningApi, client: Client,
                                                                      chunked: bool) -> None:  # fmt: skip
    cid = f"no-content-type-{int(chunked)}"
    body = json.dumps({"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "price": below_reference(api, 3), "cid": cid})
    before, open_before = _balances(client), client.get("/api/v1/orders")["items"]
    chunks = [body[:20].encode(), body[20:].encode()] if chunked else [body.encode()]
    status, answer = _raw_post(api, "/api/v1/orders", chunks, {})
    assert status == 415, answer
    assert "must be JSON" in answer["detail"] and "Content-Type: application/json" in answer["detail"]
    assert "no Content-Type" in answer["detail"]
    _nothing_placed(client, cid, before, open_before)


def test_bodiless_halt_and_resume_need_no_content_type(api: RunningApi, client: Client) -> None:
    try:
        status, answer = _raw_post(api, "/api/v1/halt", None, {})
        assert status == 200 and answer["halted"] is True, answer
    finally:
        status, answer = _raw_post(api, "/api/v1/resume", None, {})
    assert status == 200 and answer["halted"] is False, answer
    assert client.get("/api/v1/risk")["use"]["halted"] is False


REPEATED_KEYS = [
    ('{{"symbol": "BTCUSDT", "side": "BUY", "qty": "5", "qty": "0.01", "price": "{price}", "cid": "{cid}"}}', "qty"),
    (
        '{{"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "price": "{price}", "cid": "{cid}", "side": "SELL"}}',
        "side",
    ),
    (
        '{{"symbol": "BTCUSDT", "side": "BUY", "qty": "5", "q\\u0074y": "0.01", "price": "{price}", "cid": "{cid}"}}',
        "qty",
    ),
    (
        '{{"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "price": "{price}", "cid": "{cid}", "cid": "{cid}"}}',
        "cid",
    ),
]


@pytest.mark.parametrize("template,key", REPEATED_KEYS, ids=[f"{k}-{i}" for i, (_, k) in enumerate(REPEATED_KEYS)])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_repeated_key_is_422_naming_it_and_places_nothing(api: RunningApi, client: Client, template: str, key: str,
                                                            chunked: bool) -> None:  # fmt: skip
    cid = f"repeated-{key}-{REPEATED_KEYS.index((template, key))}-{int(chunked)}"
    body = template.format(price=below_reference(api, 3), cid=cid).encode()
    before, open_before = _balances(client), client.get("/api/v1/orders")["items"]
    chunks = [body[:30], body[30:]] if chunked else [body]
    status, answer = _raw_post(api, "/api/v1/orders", chunks, {"Content-Type": "application/json"})
    assert status == 422, answer
    [detail] = answer["detail"]
    assert detail["loc"] == ["body", key]
    assert repr(key) in detail["msg"] and "more than once" in detail["msg"]
    _nothing_placed(client, cid, before, open_before)


def test_a_repeated_key_in_a_nested_object_is_422_too(client: Client) -> None:
    before = _balances(client)
    raw = b'{"symbol": "BTCUSDT", "side": "BUY", "qty": "0.01", "cid": {"a": 1, "a": 2}}'
    status, answer, _ = client.request("POST", "/api/v1/orders", raw=raw)
    assert status == 422 and answer["detail"][0]["loc"] == ["body", "a"], answer
    assert _balances(client) == before


def test_a_repeated_key_that_is_no_valid_text_is_422_too(client: Client) -> None:
    """A lone surrogate (valid JSON escapes, no valid UTF-8) in the message's echo of the key made it a 500."""
    status, answer, _ = client.request("POST", "/api/v1/orders", raw=b'{"\\ud800": 1, "\\ud800": 2}')
    assert status == 422, answer
    assert answer["detail"][0]["loc"] == ["body", "\\ud800"] and "more than once" in answer["detail"][0]["msg"]


def test_an_order_in_a_damaged_order_history_is_a_500_naming_the_file_and_the_engine_goes_on(tmp_path: Path) -> None:
    from dataclasses import replace

    from veloz_actors.venues.engine import Engine

    engine = Engine(replace(engine_config(), retain_closed_ns=1), journal_path=tmp_path / "e.journal",
                    durability="none")  # fmt: skip
    with running_api(tmp_path, engine=engine) as running:
        client = running.client()
        status, body = client.order(symbol="BTCUSDT", side="BUY", qty="0.01", price=below_reference(running, 3),
                                    cid="old")  # fmt: skip
        assert status == 201 and client.request("DELETE", "/api/v1/orders/old")[0] == 200
        assert running.service.call(lambda s: s.session.backend.engine.kernel.evict(before_ts=2**62)) == 1
        assert client.get("/api/v1/orders/old")["status"] == "CANCELLED"  # read back from the history file
        history = tmp_path / "e.journal.orders"
        history.write_bytes(history.read_bytes()[:50] + b"\n")  # its record, damaged
        status, answer, _ = client.request("GET", "/api/v1/orders/old")
        assert status == 500 and answer["detail"].startswith("ORDER_HISTORY_UNREADABLE: ")
        assert f"{history}:1" in answer["detail"]
        assert client.get("/api/v1/health")["status"] == "ok"
        client.close()


def test_there_is_no_swagger_page_to_run_a_cdns_script_beside_the_token(api: RunningApi) -> None:
    client = Client(api.server.url, api.token)
    status, _, _ = client.request("GET", "/docs")
    client.close()
    assert status == 404


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b'"BUY"', b"{"])
def test_a_body_that_is_not_an_object_is_422(client: Client, raw: bytes) -> None:
    status, answer, _ = client.request("POST", "/api/v1/orders", raw=raw)
    assert status == 422 and answer["detail"][0]["loc"][0] == "body"


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=6,
    )  # noqa: E501


PLAUSIBLE = {
    "symbol": st.sampled_from(["BTCUSDT", "ETHUSDT", "btcusdt", "DOGEUSDT", ""]),
    "side": st.sampled_from(["BUY", "SELL", "buy", "HOLD"]),
    "qty": st.sampled_from(["0.01", "0.001", "1e-3", "0", "-0.01", "1e30", "0.000000001", "99999", "1", "0x10"]),
    "price": st.sampled_from([None, "60000", "1", "1000000000", "0.001", "-5", "inf", "59000.5"]),
    "tif": st.sampled_from(["GTC", "IOC", "FOK", "POST_ONLY", "gtc", "DAY"]),
    "cid": st.sampled_from([None, "fuzz-1", "fuzz-1", "bad cid", "", "x" * 36, "x" * 37, "é"]),
}


@st.composite
def _order_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name, plausible in PLAUSIBLE.items():
        choice = draw(st.sampled_from(["missing", "plausible", "plausible", "random"]))
        if choice == "plausible":
            body[name] = draw(plausible)
        elif choice == "random":
            body[name] = draw(_json_values())
    if draw(st.booleans()) and draw(st.booleans()):
        body[draw(st.text(min_size=1, max_size=8))] = draw(_json_values())
    return body


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> RunningApi:
    with running_api(tmp_path_factory.mktemp("fuzz-run")) as running:
        yield running


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_order_bodies())
def test_fuzzed_order_bodies_never_break_the_server_or_move_money(fuzz_api: RunningApi, body: dict[str, Any]) -> None:
    client = fuzz_api.client()
    try:
        before = _balances(client)
        status, answer, _ = client.request("POST", "/api/v1/orders", body)
        assert status in (201, 409, 422), (status, answer)
        if status != 201:
            assert _balances(client) == before, (status, answer)
        if status == 422:
            assert answer["detail"] and all(d["loc"][0] == "body" for d in answer["detail"])
        else:
            assert isinstance(answer["accepted"], bool) and answer["events"]
        assert Client(fuzz_api.server.url, None).get("/api/v1/health")["status"] == "ok"
    finally:
        client.close()


# ------------------------------------------------------------------------------------------------ orders


def test_a_market_order_fills_and_moves_the_balances_exactly(client: Client) -> None:
    before = _balances(client)
    status, body = client.order(symbol="BTCUSDT", side="BUY", qty="0.01", cid="mkt-fill-1")
    assert status == 201 and body["accepted"] is True and body["cid"] == "mkt-fill-1"
    fills = [e for e in body["events"] if e["type"] == "fill"]
    assert fills and sum(_dec(f["qty"]) for f in fills) == Decimal("0.01")
    statuses = [e["status"] for e in body["events"] if e["type"] == "order_update"]
    assert statuses == ["ACCEPTED", "FILLED"]
    after = _balances(client)
    cost = sum(_dec(f["price"]) * _dec(f["qty"]) + _dec(f["fee"]) for f in fills)
    assert _dec(after["BTC"]["free"]) - _dec(before["BTC"]["free"]) == Decimal("0.01")
    assert _dec(before["USDT"]["free"]) - _dec(after["USDT"]["free"]) == cost
    assert after["USDT"]["locked"] == before["USDT"]["locked"]
    state = client.get("/api/v1/orders/mkt-fill-1")
    assert state["status"] == "FILLED" and state["filled_qty"] == "0.01"
    assert [h["status"] for h in state["history"]][-1] == "FILLED"
    positions = client.get("/api/v1/positions")["positions"]
    assert any(p["symbol"] == "BTCUSDT" and _dec(p["qty"]) >= Decimal("0.01") for p in positions)


def test_a_repeated_cid_is_rejected_409_duplicate(client: Client) -> None:
    assert client.order(symbol="ETHUSDT", side="BUY", qty="0.01", cid="dup-1")[0] == 201
    before = _balances(client)
    status, body = client.order(symbol="ETHUSDT", side="BUY", qty="0.01", cid="dup-1")
    assert status == 409 and body["accepted"] is False
    [update] = [e for e in body["events"] if e["type"] == "order_update"]
    assert update["status"] == "REJECTED" and update["reason"] == "DUPLICATE_CLIENT_ORDER_ID" and update["detail"]
    assert _balances(client) == before


def test_an_order_the_kernel_refuses_is_409_with_the_reason(client: Client) -> None:
    before = _balances(client)
    status, body = client.order(symbol="BTCUSDT", side="BUY", qty="5", price="59000")  # 295,000 USDT > balance
    assert status == 409
    [update] = [e for e in body["events"] if e["type"] == "order_update"]
    assert update["reason"] in ("INSUFFICIENT_BALANCE", "MAX_ORDER_NOTIONAL", "PRICE_BAND")
    assert _balances(client) == before
    rejected = client.get("/api/v1/risk")["rejections"]
    assert rejected[0]["cid"] == body["cid"]


def test_a_resting_order_is_listed_then_cancelled(api: RunningApi, client: Client) -> None:
    price = below_reference(api, 3)
    before = _balances(client)
    status, body = client.order(symbol="BTCUSDT", side="BUY", qty="0.01", price=price, cid="rest-cancel-1")
    assert status == 201, body
    assert [e["status"] for e in body["events"] if e["type"] == "order_update"] == ["ACCEPTED"]
    open_orders = client.get("/api/v1/orders")
    assert "rest-cancel-1" in [o["cid"] for o in open_orders["items"]]
    assert open_orders["count"] == len(open_orders["items"])
    locked = _dec(_balances(client)["USDT"]["locked"]) - _dec(before["USDT"]["locked"])
    assert locked >= Decimal(price) * Decimal("0.01")
    status, answer, _ = client.request("DELETE", "/api/v1/orders/rest-cancel-1")
    assert status == 200 and answer["cancelled"] is True
    assert [e["status"] for e in answer["events"] if e["type"] == "order_update"] == ["CANCELLED"]
    assert _balances(client) == before
    assert client.get("/api/v1/orders/rest-cancel-1")["status"] == "CANCELLED"
    assert "rest-cancel-1" not in [o["cid"] for o in client.get("/api/v1/orders")["items"]]
    status, again, _ = client.request("DELETE", "/api/v1/orders/rest-cancel-1")
    assert status == 409 and again["cancelled"] is False


@pytest.mark.parametrize("cid", ["never-placed", "bad%20cid!"])
def test_unknown_orders_are_404(client: Client, cid: str) -> None:
    assert client.request("GET", f"/api/v1/orders/{cid}")[0] == 404
    assert client.request("DELETE", f"/api/v1/orders/{cid}")[0] == 404


def test_halt_rejects_orders_with_circuit_breaker_and_resume_accepts_again(tmp_path: Path) -> None:
    with running_api(tmp_path) as running:
        client = running.client()
        price = below_reference(running, 3)
        assert client.order(symbol="BTCUSDT", side="BUY", qty="0.01", price=price, cid="before-halt")[0] == 201
        status, halted, _ = client.request("POST", "/api/v1/halt")
        assert status == 200 and halted["halted"] is True
        assert any(e.get("cid") == "before-halt" and e.get("status") == "CANCELLED" for e in halted["events"])
        assert client.get("/api/v1/risk")["use"]["halted"] is True
        before = _balances(client)
        status, body = client.order(symbol="BTCUSDT", side="BUY", qty="0.01")
        assert status == 409
        [update] = [e for e in body["events"] if e["type"] == "order_update"]
        assert update["reason"] == "CIRCUIT_BREAKER"
        assert _balances(client) == before
        status, resumed, _ = client.request("POST", "/api/v1/resume")
        assert status == 200 and resumed["halted"] is False
        assert client.get("/api/v1/risk")["use"]["halted"] is False
        assert client.order(symbol="BTCUSDT", side="BUY", qty="0.01")[0] == 201
        client.close()


def test_fills_and_closed_orders_page_without_losing_a_row(tmp_path: Path) -> None:
    with running_api(tmp_path) as running:
        client = running.client()
        cids = []
        for i in range(6):
            qty = "0.6" if i == 2 else "0.01"  # 0.6 sweeps two 0.5 levels: two fills with one timestamp
            status, body = client.order(symbol="BTCUSDT", side="BUY" if i % 2 == 0 else "SELL", qty=qty)
            assert status == 201, body
            cids.append(body["cid"])
        client.order(symbol="BTCUSDT", side="BUY", qty="-1")  # a 422: not an order
        everything = client.get("/api/v1/fills?limit=10000")["items"]
        assert len(everything) >= 7 and {f["cid"] for f in everything} == set(cids)
        assert [f["ts"] for f in everything] == sorted((f["ts"] for f in everything), reverse=True)
        paged, until, pages = [], None, 0
        while True:
            page = client.get("/api/v1/fills?limit=2" + (f"&until={until}" if until else ""))
            paged += page["items"]
            pages += 1
            assert page["count"] == len(page["items"])
            if not page["more"]:
                assert page["next_until"] is None
                break
            until = page["next_until"]
        assert paged == everything and pages >= 3
        closed = client.get("/api/v1/orders?state=closed&limit=4")
        assert closed["count"] == 4 and closed["more"] is True
        rest = client.get(f"/api/v1/orders?state=closed&limit=100&until={closed['next_until']}")
        assert [o["cid"] for o in closed["items"] + rest["items"]] == list(reversed(cids))
        assert all(o["status"] == "FILLED" for o in closed["items"] + rest["items"])
        since = everything[2]["ts"]
        assert client.get(f"/api/v1/fills?since={since}")["items"] == [f for f in everything if f["ts"] >= since]
        client.close()


# ------------------------------------------------------------------------------------------------ the stream


def _events_after(watcher: Watcher, seq: int, count: int) -> list[dict[str, Any]]:
    out = []
    while len(out) < count:
        obj = watcher.next()
        assert obj.get("type") not in ("gap", "snapshot"), obj
        out.append(obj)
    return out


def test_the_stream_starts_with_a_snapshot_then_numbers_every_event(tmp_path: Path) -> None:
    with running_api(tmp_path) as running:
        client = running.client()
        watcher = Watcher(running.ws_url())
        snapshot = watcher.next()
        assert snapshot["type"] == "snapshot" and snapshot["mode"] == "sim"
        assert {"seq", "ts", "balances", "positions", "open_orders", "fills", "equity", "marks"} <= set(snapshot)
        answers = []
        for side in ("BUY", "SELL", "BUY"):
            status, body = client.order(symbol="BTCUSDT", side=side, qty="0.01")
            assert status == 201
            answers += body["events"]
        running.tick()
        events = _events_after(watcher, snapshot["seq"], len(answers) + 1)
        assert [e["seq"] for e in events] == list(range(snapshot["seq"] + 1, snapshot["seq"] + len(events) + 1))
        assert [{k: v for k, v in e.items() if k != "seq"} for e in events[: len(answers)]] == answers
        assert events[-1]["type"] == "market"
        watcher.close()
        client.close()


def test_a_slow_client_gets_a_gap_with_the_missed_count_then_a_fresh_snapshot(tmp_path: Path) -> None:
    with running_api(tmp_path) as running:
        client = running.client()
        dropped_before = client.get("/api/v1/status")["api"]["dropped"]
        watcher = Watcher(running.ws_url(queue=5))
        snapshot = watcher.next()
        assert snapshot["type"] == "snapshot"
        status, body = client.order(symbol="BTCUSDT", side="BUY", qty="0.01")  # one batch of 6 events
        assert status == 201 and len(body["events"]) > 5
        gap = watcher.next()
        assert gap == {"type": "gap", "missed": len(body["events"]) - 5, "last_seq": snapshot["seq"]}
        fresh = watcher.next()
        assert fresh["type"] == "snapshot" and fresh["seq"] == snapshot["seq"] + len(body["events"])
        assert any(f["cid"] == body["cid"] for f in fresh["fills"])
        running.tick()  # the next events follow the fresh snapshot's number
        after = watcher.next()
        assert after["seq"] == fresh["seq"] + 1 and after["type"] == "market"
        status = client.get("/api/v1/status")["api"]
        assert status["dropped"] - dropped_before == gap["missed"] and status["clients"] == 1
        watcher.close()
        wait_for(lambda: client.get("/api/v1/status")["api"]["clients"] == 0, what="the client to leave")
        assert client.get("/api/v1/status")["api"]["dropped"] - dropped_before == gap["missed"]  # counted after it left
        client.close()


def test_a_client_that_keeps_falling_behind_gets_a_fresh_snapshot_at_most_once_per_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each snapshot costs the engine's thread: 20 clients with a queue of 1 took an order's p50 from 4 to 91 ms."""
    monkeypatch.setattr(http_api, "RESYNC_SECONDS", 60.0)
    with running_api(tmp_path) as running:
        client = running.client()
        watcher = Watcher(running.ws_url(queue=5))
        assert watcher.next()["type"] == "snapshot"
        assert client.order(symbol="BTCUSDT", side="BUY", qty="0.01")[0] == 201
        assert watcher.next()["type"] == "gap"
        fresh = watcher.next()
        assert fresh["type"] == "snapshot"  # the first one at once
        assert client.order(symbol="BTCUSDT", side="BUY", qty="0.01")[0] == 201
        gap = watcher.next()
        assert gap["type"] == "gap" and gap["last_seq"] >= fresh["seq"]  # it fell behind after the fresh snapshot
        with pytest.raises(TimeoutError):
            watcher.next(timeout=2.0)  # the next snapshot waits out the interval (60 s here)
        assert client.get("/api/v1/status")["api"]["clients"] == 1
        watcher.close()
        client.close()


def test_more_stream_clients_than_the_limit_are_told_to_come_back_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every client costs the engine's thread per event: 300 silent clients took an order's p50 from 1.7 to 18 ms."""
    monkeypatch.setattr(http_api, "MAX_STREAMS", 2)
    with running_api(tmp_path) as running:
        first, second = Watcher(running.ws_url()), Watcher(running.ws_url())
        assert first.next()["type"] == second.next()["type"] == "snapshot"
        with _closed(running.ws_url()) as closed:
            pass
        assert (closed.code, closed.reason) == (1013, "too many stream clients (the limit is 2)")
        second.close()
        client = running.client()
        wait_for(lambda: client.get("/api/v1/status")["api"]["clients"] == 1, what="the second client to leave")
        third = Watcher(running.ws_url())
        assert third.next()["type"] == "snapshot"  # a place is free again
        for watcher in (first, third):
            watcher.close()
        client.close()


def _connect(api: RunningApi, sent: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", api.server.port), timeout=30)
    if sent:
        sock.sendall(sent)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed ``sock`` without answering (end of stream, or a reset), as of now."""
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


def test_a_connection_that_sends_no_whole_request_is_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each connection holds a file descriptor of the engine's process, and opening one needs no token: 400 that sent
    nothing held every descriptor of an engine limited to 256 for as long as they stayed open (uvicorn closes only an
    idle keep-alive connection, and only until it sends a byte), and the kill switch did not answer."""
    monkeypatch.setattr(http_api, "REQUEST_SECONDS", 0.2)
    with running_api(tmp_path) as running:
        auth = f"Authorization: Bearer {running.token}\r\n".encode()
        head = b"POST /api/v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + auth
        silent = _connect(running)
        half_header = _connect(running, b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        half_body = _connect(running, head + b'Content-Length: 80\r\n\r\n{"symbol": "BTCUSDT", "side": "BUY",')
        client = running.client()
        before = client.get("/api/v1/orders")["count"], _balances(client)
        for sock in (silent, half_header, half_body):
            assert sock.recv(65536) == b""  # closed without an answer (the socket's own timeout is 30 s)
            sock.close()
        assert (client.get("/api/v1/orders")["count"], _balances(client)) == before  # the cut body placed nothing
        kept = client.request("GET", "/api/v1/health")  # a client that sends its requests is served as before
        assert kept[0] == 200
        client.close()


def test_beyond_the_connection_limit_the_longest_waiting_one_is_closed_never_a_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_api, "MAX_CONNECTIONS", 8)
    monkeypatch.setattr(http_api, "_EVICT_AFTER_SECONDS", 0.0)  # (a second in use: its request may be on its way)
    with running_api(tmp_path) as running:
        watcher = Watcher(running.ws_url())
        assert watcher.next()["type"] == "snapshot"
        idle = [_connect(running) for _ in range(30)]
        wait_for(lambda: sum(_closed_by_server(s) for s in idle) >= 30 - 7, what="the idle connections past the limit")
        assert not any(_closed_by_server(s) for s in idle[-7:])  # the newest stay: the oldest went first
        client = running.client()  # one more: the longest-waiting idle one makes room
        assert client.request("GET", "/api/v1/status")[0] == 200
        wait_for(lambda: _closed_by_server(idle[-7]), what="the longest-waiting connection to be closed")
        running.tick()
        assert watcher.next()["seq"] > 0  # the stream was never closed for them
        for sock in idle:
            sock.close()
        watcher.close()
        client.close()


def test_a_connection_past_the_limit_that_nothing_can_make_room_for_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ones waiting have only just connected (their requests may be on their way) or are streams: the new one
    goes."""
    monkeypatch.setattr(http_api, "MAX_CONNECTIONS", 4)
    monkeypatch.setattr(http_api, "_EVICT_AFTER_SECONDS", 3600.0)
    with running_api(tmp_path) as running:
        watcher = Watcher(running.ws_url())
        assert watcher.next()["type"] == "snapshot"
        first = [_connect(running) for _ in range(3)]  # with the stream: the limit
        late = _connect(running)
        assert late.recv(65536) == b""
        assert not any(_closed_by_server(s) for s in first)
        running.tick()
        assert watcher.next()["seq"] > 0
        for sock in [*first, late]:
            sock.close()
        watcher.close()


def test_closing_the_server_closes_the_stream_going_away(tmp_path: Path) -> None:
    with running_api(tmp_path) as running:
        watcher = Watcher(running.ws_url())
        assert watcher.next()["type"] == "snapshot"
        running.server.close()
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            watcher.next(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        running.server.close()  # idempotent


def test_health_says_stalled_while_the_engine_loop_is_blocked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop blocked (a venue call that never returns) answers no call: each waits 30 s for a 504. /health said
    "ok" all along, so neither a monitor polling it nor the page (stale on a health failure) could tell."""
    monkeypatch.setattr(http_api, "STALL_SECONDS", 0.5)
    with running_api(tmp_path) as running:
        client = running.client()
        assert client.request("GET", "/api/v1/health")[1]["status"] == "ok"
        gate = threading.Event()
        running.service.call_async(lambda s: gate.wait(60))  # the engine's thread, held
        try:
            status, body = wait_for(lambda: _health_unless(client, 200), what="health to say the loop stalled")
            assert (status, body["status"]) == (503, "stalled") and body["loop_age_seconds"] > 0.5
        finally:
            gate.set()
        status, body = wait_for(lambda: _health_unless(client, 503), what="health to say ok again")
        assert (status, body["status"]) == (200, "ok")
        client.close()


def _health_unless(client: Client, status: int) -> tuple[int, Any] | None:
    answer = client.request("GET", "/api/v1/health")
    return None if answer[0] == status else answer[:2]


def test_an_engine_that_stopped_answers_503(tmp_path: Path) -> None:
    with running_api(tmp_path) as running:
        running.service.stop()
        running.thread.join(10)
        client = running.client()
        assert client.request("GET", "/api/v1/balances")[0] == 503
        assert client.request("POST", "/api/v1/orders", {"symbol": "BTCUSDT", "side": "BUY", "qty": "1"})[0] == 503
        status, body, _ = client.request("GET", "/api/v1/health")
        assert status == 503 and body["status"] == "stopping"
        client.close()


# --------------------------------------------------------------------------------------------- the CLI


class _Veloz:
    """``veloz start --local --single-process --no-journal`` as a subprocess in ``folder``, stdin a pipe kept open,
    stderr read by a thread; :meth:`api_line` waits for the ``api:`` line."""

    def __init__(self, folder: Path, *args: str) -> None:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        env.pop("VELOZ_API_TOKEN", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "veloz_actors.interfaces.cli", "start", "--local", "--single-process",
             "--no-journal", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=folder, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        self.lines.extend(line.decode() for line in self.process.stderr)

    def api_line(self) -> tuple[str, str, str]:
        """(the line, the URL, the token)."""
        line = wait_for(lambda: next((x for x in self.lines if x.startswith("api: ")), None), what="the api: line")
        return line, line.split()[1].split("/?token=")[0], line.split("/?token=")[1].split()[0]

    def stop(self) -> tuple[int, str]:
        """Close stdin; the exit code and stdout."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        try:
            code = self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
        self.reader.join(10)
        return code, self.process.stdout.read().decode()


def test_veloz_start_serves_the_api_until_stdin_closes(tmp_path: Path) -> None:
    veloz = _Veloz(tmp_path, "--config", str(CONFIG), "--http", "127.0.0.1:0")
    try:
        line, url, token = veloz.api_line()
        assert line.strip() == f"api: {url}/?token={token} (schema: {url}/openapi.json)"
        assert (tmp_path / "runs" / "api-token").read_text().strip() == token
        assert Client(url, None).get("/api/v1/health")["status"] == "ok"
        balances = Client(url, token).get("/api/v1/balances")
        assert balances["balances"]["USDT"] == {"free": "100000", "locked": "0"}
    finally:
        code, stdout = veloz.stop()
    assert code == 0
    assert json.loads(stdout.splitlines()[-1])["state"] == "stopped"
    assert token not in stdout
    assert [x for x in veloz.lines if token in x] == [line]


def test_the_config_api_section_serves_without_the_flag(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(CONFIG.read_text())
    data["engine"]["api"] = {"enabled": True, "port": 0, "token": "token-from-the-config-0123", "queue": 7}
    config = tmp_path / "engine.yaml"
    config.write_text(yaml.safe_dump(data))
    veloz = _Veloz(tmp_path, "--config", str(config))
    try:
        _, url, token = veloz.api_line()
        assert token == "token-from-the-config-0123" and url.startswith("http://127.0.0.1:")
        assert not (tmp_path / "runs" / "api-token").exists()  # a given token is never written
        watcher = Watcher(url.replace("http://", "ws://") + f"/api/v1/stream?token={token}")
        assert watcher.next()["type"] == "snapshot"
        watcher.close()
    finally:
        assert veloz.stop()[0] == 0


def test_a_bad_http_address_fails_before_the_engine_starts(tmp_path: Path) -> None:
    veloz = _Veloz(tmp_path, "--config", str(CONFIG), "--http", "localhost:99999")
    code, stdout = veloz.stop()
    assert code == 2 and stdout == ""
    assert veloz.lines == [
        "error: --http 'localhost:99999': the port must be a number 0..65535 (0 picks a free port)\n"
    ]


# ------------------------------------------------------------------------------------------ the actor engine


@pytest.mark.ray
def test_the_api_over_the_actor_engine(ray_runtime, tmp_path: Path) -> None:
    from veloz_actors.actors.api import start_local
    from veloz_actors.interfaces.engine_cli import ActorBackend
    from veloz_actors.interfaces.http_api import serve_api
    from veloz_actors.interfaces.service import EngineService
    from veloz_actors.interfaces.stdio import Session

    from ..actors.helpers import file_config

    engine = start_local(file_config(subscriber_queue=100_000, risk=True), name="api-test-engine")  # halts one-way
    backend = ActorBackend(engine, owned=True, market=True)
    session = Session(backend, symbols=set(engine.symbols), clock=time.time_ns)
    service = EngineService(
        session, tick=backend.tick, tick_ms=250, side_feed=backend.poll, valuation=backend.valuation(),
        halt=backend.halt, resume=backend.resume, mode="sim",
    )  # fmt: skip
    thread = threading.Thread(target=service.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    server = serve_api(service, "127.0.0.1:0", run_dir=tmp_path, token=None, announce=lambda line: None)
    client = Client(server.url, server.token)
    try:
        actors = client.get("/api/v1/actors")
        assert actors["engine"] == "actors"
        assert {"oms", "bus", "account", "feed"} <= set(actors["actors"])
        assert all(a["alive"] for a in actors["actors"].values())
        watcher = Watcher(server.url.replace("http://", "ws://") + f"/api/v1/stream?token={server.token}")
        assert watcher.next()["type"] == "snapshot"
        watcher.until(lambda e: e.get("kind") == "book_top" and e["symbol"] == "BTCUSDT", timeout=60)  # quotes
        watcher.close()
        status, body = client.order(symbol="BTCUSDT", side="BUY", qty="0.01", cid="actor-mkt-1")
        assert status == 201, body
        wait_for(lambda: any(f["cid"] == "actor-mkt-1" for f in client.get("/api/v1/fills")["items"]),
                 what="the fill")  # fmt: skip
        assert client.get("/api/v1/orders/actor-mkt-1")["status"] == "FILLED"
        assert client.get("/api/v1/risk")["limits"]["max_position"]["BTCUSDT"] == "20"
        status, halted, _ = client.request("POST", "/api/v1/halt")  # through the risk actor: answered once in force
        assert (status, halted["halted"]) == (200, True)
        assert client.get("/api/v1/risk")["use"]["halted"] is True
        status, body = client.order(symbol="BTCUSDT", side="BUY", qty="0.01")
        assert status == 409
        assert [e["reason"] for e in body["events"] if e["type"] == "order_update"] == ["CIRCUIT_BREAKER"]
        status, resumed, _ = client.request("POST", "/api/v1/resume")
        assert (status, resumed["halted"]) == (200, False)
        assert client.order(symbol="BTCUSDT", side="BUY", qty="0.01")[0] == 201
    finally:
        client.close()
        server.close()
        service.stop()
        thread.join(60)
    assert not thread.is_alive()
