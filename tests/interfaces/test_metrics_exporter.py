"""The Prometheus exporter on the loopback: a request naming another host (a web page's DNS name rebound to
127.0.0.1) is refused, and a client that connects and never sends does not hold up a scrape."""

from __future__ import annotations

import http.client
import socket

from veloz_actors.interfaces.metrics import serve_metrics


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
