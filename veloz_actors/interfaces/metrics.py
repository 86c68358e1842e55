"""Prometheus metrics of a running actor engine (prometheus-client), served on 127.0.0.1 by default.

The exporter pulls the engine's status at scrape time (a custom collector), so the engine pays nothing between
scrapes. Metrics (full words, unit suffixes)::

    veloz_orders_total                         counter    orders applied by the OMS (rate = orders per second)
    veloz_market_events_total                  counter    market events through the book actors (rate = events/s)
    veloz_order_round_trip_seconds             histogram  client -> OMS -> client, measured by the engine handle
    veloz_order_processing_seconds             histogram  time inside the OMS per command
    veloz_inbox_depth{actor}                   gauge      calls queued for each actor
    veloz_actor_up{actor}                      gauge      1 when the actor answers its health check
    veloz_actor_restarts_total{actor}          counter    restarts seen by the supervisor
    veloz_order_rejections_total{reason}       counter    rejections by reason code
    veloz_subscriber_dropped_total{subscriber} counter    events dropped by a subscriber's drop-oldest queue
    veloz_subscriber_queued{subscriber}        gauge      events waiting in a subscriber's queue
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

__all__ = ["EngineCollector", "MetricsServer", "serve_metrics"]


def _histogram(name: str, doc: str, bounds: Sequence[float], counts: Sequence[int], total: float) -> Metric:
    buckets, cumulative = [], 0
    for bound, count in zip(bounds, counts, strict=False):
        cumulative += count
        buckets.append((repr(bound), cumulative))
    cumulative += counts[len(bounds)] if len(counts) > len(bounds) else 0
    buckets.append(("+Inf", cumulative))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


class EngineCollector:
    """Turns ``status()`` of an engine handle (and its round-trip histogram) into metric families."""

    def __init__(self, status: Callable[[], dict[str, Any]], round_trip: Callable[[], tuple[list[int], float]] | None):
        self._status = status
        self._round_trip = round_trip

    def collect(self) -> Iterator[Metric]:
        from ..actors.nodes import LATENCY_BUCKETS

        try:
            status = self._status()
        except Exception:  # noqa: BLE001 - an engine that does not answer shows as down, the scrape still works
            yield GaugeMetricFamily("veloz_engine_up", "1 when the engine answered this scrape", value=0)
            return
        yield GaugeMetricFamily("veloz_engine_up", "1 when the engine answered this scrape", value=1)
        yield CounterMetricFamily("veloz_orders", "Orders applied by the OMS", value=status.get("orders", 0))
        yield CounterMetricFamily(
            "veloz_market_events", "Market events through the book actors", value=status.get("market_events", 0)
        )
        counts = status.get("latency_counts") or [0] * (len(LATENCY_BUCKETS) + 1)
        yield _histogram(
            "veloz_order_processing_seconds", "Time inside the OMS per command", LATENCY_BUCKETS, counts,
            status.get("latency_sum", 0.0),
        )  # fmt: skip
        if self._round_trip is not None:
            rt_counts, rt_sum = self._round_trip()
            yield _histogram(
                "veloz_order_round_trip_seconds", "Order round trip client -> OMS -> client", LATENCY_BUCKETS,
                rt_counts, rt_sum,
            )  # fmt: skip
        up = GaugeMetricFamily("veloz_actor_up", "1 when the actor answers its health check", labels=["actor"])
        depth = GaugeMetricFamily("veloz_inbox_depth", "Calls queued for the actor", labels=["actor"])
        restarts = CounterMetricFamily("veloz_actor_restarts", "Restarts seen by the supervisor", labels=["actor"])
        for name, actor in sorted(status.get("actors", {}).items()):
            up.add_metric([name], 1 if actor.get("alive") else 0)
            depth.add_metric([name], actor.get("inbox_depth") or 0)
            restarts.add_metric([name], actor.get("restarts") or 0)
        yield from (up, depth, restarts)
        rejections = CounterMetricFamily("veloz_order_rejections", "Order rejections by reason", labels=["reason"])
        for reason, count in sorted(status.get("rejections", {}).items()):
            rejections.add_metric([reason], count)
        yield rejections
        dropped = CounterMetricFamily(
            "veloz_subscriber_dropped", "Events dropped by a subscriber's drop-oldest queue", labels=["subscriber"]
        )
        queued = GaugeMetricFamily("veloz_subscriber_queued", "Events waiting for a subscriber", labels=["subscriber"])
        for sid, sub in sorted(status.get("subscribers", {}).items()):
            dropped.add_metric([sid], sub.get("dropped", 0))
            queued.add_metric([sid], sub.get("queued", 0))
        yield from (dropped, queued)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        return


class MetricsServer:
    """A running exporter: ``.port`` is the bound port (useful with port 0); ``close()`` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host = str(server.server_address[0])
        self.port = int(server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2.0)


def serve_metrics(
    status: Callable[[], dict[str, Any]],
    *,
    host: str = "127.0.0.1",
    port: int = 9464,
    round_trip: Callable[[], tuple[list[int], float]] | None = None,
) -> MetricsServer:
    """Serve ``/metrics`` for an engine on ``host:port`` (127.0.0.1 unless configured otherwise) in a thread."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(status, round_trip))  # type: ignore[arg-type]
    server = make_server(host, port, make_wsgi_app(registry), handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="veloz-metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
