"""The Prometheus exporter on the loopback: a request naming another host (a web page's DNS name rebound to
127.0.0.1) is refused, and a client that connects and never sends does not hold up a scrape, and is closed; at most
``MAX_CONNECTIONS`` at once; the subscribers are exported as totals, never a series per subscription."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from veloz_actors.config import MetricsModel, load_engine_config
from veloz_actors.interfaces import metrics
from veloz_actors.interfaces.metrics import EngineCollector, serve_metrics

from ..actors.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _get(port: int, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics", headers={"Host": host})
    status = conn.getresponse().status
    conn.close()
    return status


def test_the_exporter_listens_on_the_loopback_unless_told_otherwise() -> None:
    """Its gauges tell the account's equity and exposure, with no token: only a deliberate ``host`` exposes them."""
    config = load_engine_config(ROOT / "configs" / "engine.yaml")
    assert config.metrics.host == "127.0.0.1"
    assert MetricsModel().host == "127.0.0.1"  # a config without a metrics: section
    server = serve_metrics(lambda: {}, port=0)
    try:
        assert server.host == "127.0.0.1"
    finally:
        server.close()


def test_a_request_naming_another_host_is_refused_and_an_idle_client_blocks_no_one() -> None:
    asked: list[int] = []

    def status() -> dict:
        asked.append(1)
        raise RuntimeError("the engine is not running")  # the exporter reports it without failing the scrape

    server = serve_metrics(status, port=0)
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=10)  # connects, never sends
    try:
        assert _get(server.port, f"evil.example:{server.port}") == 403 and not asked
        assert _get(server.port, f"rebound.attacker.test:{server.port}") == 403 and not asked
        for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}"):
            assert _get(server.port, host) == 200  # veloz_engine_up 0: the scrape itself works
        assert asked  # the loopback's scrapes reached the engine's status
    finally:
        idle.close()
        server.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_an_ipv6_host_is_served(host: str) -> None:
    """``metrics.host: "::1"`` failed to bind (the server's socket was IPv4 only: "Address family for hostname not
    supported") and the engine ran with no metrics but a warning. It is served over IPv6, loopback-only as
    127.0.0.1 is, and its URL is bracketed."""
    server = serve_metrics(lambda: {}, host=host, port=0)
    try:
        assert server.url == f"http://[::1]:{server.port}/metrics"
        for name, expected in ((f"[::1]:{server.port}", 200), (f"evil.example:{server.port}", 403)):
            conn = http.client.HTTPConnection("::1", server.port, timeout=10)
            conn.request("GET", "/metrics", headers={"Host": name})
            response = conn.getresponse()
            assert response.status == expected, name
            if expected == 200:
                assert b"veloz_engine_up" in response.read()
            conn.close()
    finally:
        server.close()


def test_a_client_that_sends_nothing_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each connection is a thread and a file descriptor of the engine's driver process: 500 that sent nothing were
    500 threads held for as long as they stayed open."""
    monkeypatch.setattr(metrics, "REQUEST_SECONDS", 0.2)
    server = serve_metrics(lambda: {}, port=0)
    try:
        silent = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        half = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and no more
        for sock in (silent, half):
            assert sock.recv(65536) == b""  # closed without an answer (the socket's own timeout is 30 s)
            sock.close()
        assert _get(server.port, f"127.0.0.1:{server.port}") == 200
    finally:
        server.close()


def test_connections_past_the_limit_are_closed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "MAX_CONNECTIONS", 3)
    monkeypatch.setattr(metrics, "REQUEST_SECONDS", 3600.0)
    server = serve_metrics(lambda: {}, port=0)
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(3)]
    try:
        late = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        assert late.recv(65536) == b""  # no thread was started for it
        late.close()
        idle[0].setblocking(False)
        with pytest.raises(BlockingIOError):  # the first ones are still served (waiting for their requests)
            idle[0].recv(1)
        for sock in idle:
            sock.close()  # their threads end: room again
        wait_for(lambda: _status_or_none(server.port) == 200, what="a scrape once the idle clients left")
    finally:
        for sock in idle:
            sock.close()
        server.close()


def _status_or_none(port: int) -> int | None:
    try:
        return _get(port, f"127.0.0.1:{port}")
    except (ConnectionError, http.client.HTTPException):
        return None  # closed at once: no room yet


def test_subscribers_are_exported_as_totals_without_a_series_per_subscription() -> None:
    status = {
        "subscribers": {  # ids as the bus makes them: a new one on every subscribe
            "204875680385267": {"queued": 3, "limit": 10, "dropped": 2, "delivered": 40},
            "204875680385268": {"queued": 7, "limit": 10, "dropped": 0, "delivered": 12},
        },
        "subscriber_dropped": 9,  # the bus's total: the open ones' 2 and 7 of subscriptions since closed
    }
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(lambda: status, None))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert "subscriber=" not in text and "204875680385267" not in text
    lines = text.splitlines()
    assert "veloz_subscribers 2.0" in lines
    assert "veloz_subscriber_dropped_total 9.0" in lines
    assert "veloz_subscriber_queued_max 7.0" in lines
