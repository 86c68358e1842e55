"""The Prometheus exporter on the loopback: a request naming another host (a web page's DNS name rebound to
127.0.0.1) is refused, and a client that connects and never sends does not hold up a scrape; the subscribers are
exported as totals, never a series per subscription."""

from __future__ import annotations

import http.client
import socket

from prometheus_client import CollectorRegistry, generate_latest

from veloz_actors.interfaces.metrics import EngineCollector, serve_metrics


def _get(port: int, host: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics", headers={"Host": host})
    status = conn.getresponse().status
    conn.close()
    return status


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
