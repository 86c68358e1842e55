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
    veloz_subscribers                          gauge      subscriptions open on the event bus
    veloz_subscriber_dropped_total             counter    events dropped by the subscribers' drop-oldest queues (all
                                                          subscriptions, closed ones' too)
    veloz_subscriber_queued_max                gauge      events waiting in the fullest subscriber queue
    veloz_log_dropped_lines_total{actor,file}  counter    lines a process's log file lost since it was opened:
                                                          refused (a full disk, an I/O error) or dropped by a writer
                                                          that fell 10,000 lines behind (STATUS ``logs``)
    veloz_log_file_failing{actor,file}         gauge      1 while that file refuses lines

No metric is labelled by subscription: its id is new on every subscribe (STATUS ``subscribers`` has each one's).

The risk actor's gauges, when the engine's status carries them under ``risk_gauges`` (``RiskActor.gauges()``);
amounts are in the valuation asset (label ``asset``), quantities in the symbol's base asset::

    veloz_risk_equity_amount{asset}                       gauge    engine equity
    veloz_risk_peak_equity_amount{asset}                  gauge    highest engine equity since start or reset
    veloz_risk_loss_amount{asset}                         gauge    fall from the starting equity
    veloz_risk_drawdown_ratio                             gauge    fall from the peak, as a fraction of the peak
    veloz_risk_gross_exposure_amount{asset}               gauge    sum of |position| x mark over accounts
    veloz_risk_symbol_exposure_base_quantity{symbol}      gauge    sum of |position| over accounts
    veloz_risk_asset_exposure_amount{asset}               gauge    sum of |balance| over accounts
    veloz_risk_limit_use_ratio{limit,subject}             gauge    measure / limit (1 = at the limit)
    veloz_risk_halted                                     gauge    1 while the risk actor's halt is in force
    veloz_risk_fills_total                                counter  fills applied by the risk actor
    veloz_risk_duplicate_fills_total                      counter  re-sent fills it ignored

Live market data, when the engine streams it (``market_data`` in its status; label ``venue``)::

    veloz_market_data_connected{venue}                    gauge      1 while the stream connection is open
    veloz_market_data_reconnects_total{venue}             counter    connections opened after the first
    veloz_market_data_resyncs_total{venue,symbol}         counter    book rebuilds from a new snapshot
    veloz_market_data_last_event_age_seconds{venue,stream} gauge     time since the stream's last event
    veloz_market_data_clock_offset_seconds{venue}         gauge      exchange clock minus ours
    veloz_market_data_latency_seconds{venue,stage,percentile} gauge  exchange -> receive per stream kind, and
                                                                     receive -> publish (stage ``publish``);
                                                                     percentile ``50`` and ``99``
    veloz_market_data_bad_input_total{venue,kind}         counter    bad frames by kind (malformed, gap, ...)
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

__all__ = [
    "EngineCollector",
    "MetricsServer",
    "log_metric_families",
    "market_data_metric_families",
    "risk_metric_families",
    "serve_metrics",
]


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
        from ..actors.spec import LATENCY_BUCKETS

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
        if "supervisor_restarts" in status:  # the actor engine's: its actors were built again each time
            restarts.add_metric(["supervisor"], status["supervisor_restarts"])
        yield from (up, depth, restarts)
        rejections = CounterMetricFamily("veloz_order_rejections", "Order rejections by reason", labels=["reason"])
        for reason, count in sorted(status.get("rejections", {}).items()):
            rejections.add_metric([reason], count)
        yield rejections
        # Totals, not a series per subscription: a subscription's id is new on every subscribe, so as a label it would
        # make a series per client that vanishes with it (STATUS ``subscribers`` has each one's figures).
        subscribers = status.get("subscribers", {}).values()
        yield GaugeMetricFamily("veloz_subscribers", "Subscriptions open on the event bus", value=len(subscribers))
        yield CounterMetricFamily(
            "veloz_subscriber_dropped", "Events dropped by the subscribers' drop-oldest queues, closed ones' too",
            value=status.get("subscriber_dropped", 0),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "veloz_subscriber_queued_max", "Events waiting in the fullest subscriber queue",
            value=max((sub.get("queued", 0) for sub in subscribers), default=0),
        )  # fmt: skip
        yield from log_metric_families(status.get("logs") or {})
        risk = status.get("risk_gauges")
        if risk:
            yield from risk_metric_families(risk, status.get("valuation_asset", "USDT"))
        market = status.get("market_data")
        if market:
            yield from market_data_metric_families(market)


def log_metric_families(logs: dict[str, Any]) -> Iterator[Metric]:
    """STATUS ``logs`` (each process's :func:`~veloz_actors.logs.log_file_status`, by actor) as metric families."""
    dropped = CounterMetricFamily(
        "veloz_log_dropped_lines",
        "Lines the process's log file lost (refused: full disk, I/O error; or dropped: writer behind)",
        labels=["actor", "file"],
    )
    failing = GaugeMetricFamily(
        "veloz_log_file_failing", "1 while the log file refuses lines", labels=["actor", "file"]
    )
    for actor, entry in sorted(logs.items()):
        labels = [actor, str(entry.get("file"))]
        dropped.add_metric(labels, entry.get("dropped") or 0)
        failing.add_metric(labels, 1 if entry.get("failing") else 0)
    yield from (dropped, failing)


def market_data_metric_families(market: dict[str, Any]) -> Iterator[Metric]:
    """The live market-data client's status (``BinanceMarketData.status()``) as metric families."""
    venue = str(market.get("venue", "binance"))
    connected = GaugeMetricFamily(
        "veloz_market_data_connected", "1 while the market-data stream connection is open", labels=["venue"]
    )
    connected.add_metric([venue], 1 if market.get("state") == "connected" else 0)
    yield connected
    reconnects = CounterMetricFamily(
        "veloz_market_data_reconnects", "Stream connections after the first", labels=["venue"]
    )
    reconnects.add_metric([venue], market.get("reconnects", 0))
    yield reconnects
    resyncs = CounterMetricFamily(
        "veloz_market_data_resyncs", "Book rebuilds from a new snapshot", labels=["venue", "symbol"]
    )
    for symbol, count in sorted((market.get("resyncs") or {}).get("by_symbol", {}).items()):
        resyncs.add_metric([venue, symbol], count)
    yield resyncs
    age = GaugeMetricFamily(
        "veloz_market_data_last_event_age_seconds", "Time since the stream's last event", labels=["venue", "stream"]
    )
    for stream, ms in sorted((market.get("last_event_age_ms") or {}).items()):
        if ms is not None:
            age.add_metric([venue, stream], ms / 1000)
    yield age
    offset = market.get("clock_offset_ms")
    clock = GaugeMetricFamily(
        "veloz_market_data_clock_offset_seconds", "Exchange clock minus this engine's", labels=["venue"]
    )
    if offset is not None:
        clock.add_metric([venue], offset / 1000)
    yield clock
    # ``percentile``, not ``quantile``: Prometheus reserves that label for summaries, and this is a gauge of the
    # client's own p50 and p99 over its recent events
    latency = GaugeMetricFamily(
        "veloz_market_data_latency_seconds",
        "Exchange -> receive per stream kind, receive -> publish (stage publish), p50 and p99",
        labels=["venue", "stage", "percentile"],
    )
    for stage, stats in sorted((market.get("latency_ms") or {}).items()):
        for percentile in ("50", "99"):
            value = (stats or {}).get("p" + percentile)
            if value is not None:
                latency.add_metric([venue, stage, percentile], value / 1000)
    yield latency
    bad = CounterMetricFamily("veloz_market_data_bad_input", "Bad frames by kind", labels=["venue", "kind"])
    for kind, count in sorted((market.get("bad_input") or {}).items()):
        bad.add_metric([venue, kind], count)
    yield bad


def risk_metric_families(gauges: dict[str, float], valuation_asset: str = "USDT") -> Iterator[Metric]:
    """The risk actor's gauges (``RiskMonitor.gauges()``: ``equity``, ``symbol_exposure:BTCUSDT``, ...) as metric
    families with full-word names, unit suffixes and labels."""
    amounts = {
        "equity": ("veloz_risk_equity_amount", "Engine equity in the valuation asset"),
        "peak_equity": ("veloz_risk_peak_equity_amount", "Highest engine equity since start or reset"),
        "loss": ("veloz_risk_loss_amount", "Fall of engine equity from its starting value"),
        "gross_exposure": ("veloz_risk_gross_exposure_amount", "Sum of |position| x mark over accounts"),
    }
    for key, (name, doc) in amounts.items():
        family = GaugeMetricFamily(name, doc, labels=["asset"])
        family.add_metric([valuation_asset], gauges.get(key, 0.0))
        yield family
    yield GaugeMetricFamily(
        "veloz_risk_drawdown_ratio",
        "Fall of engine equity from its peak, as a fraction",
        value=gauges.get("drawdown", 0.0),
    )
    yield GaugeMetricFamily(
        "veloz_risk_halted", "1 while the risk actor's halt is in force", value=gauges.get("halted", 0.0)
    )
    yield CounterMetricFamily("veloz_risk_fills", "Fills applied by the risk actor", value=gauges.get("fills", 0.0))
    yield CounterMetricFamily(
        "veloz_risk_duplicate_fills", "Re-sent fills the risk actor ignored", value=gauges.get("duplicate_fills", 0.0)
    )
    symbols = GaugeMetricFamily(
        "veloz_risk_symbol_exposure_base_quantity", "Sum of |position| over accounts", labels=["symbol"]
    )
    assets = GaugeMetricFamily("veloz_risk_asset_exposure_amount", "Sum of |balance| over accounts", labels=["asset"])
    use = GaugeMetricFamily(
        "veloz_risk_limit_use_ratio",
        "Engine risk measure over its limit (1 = at the limit)",
        labels=["limit", "subject"],
    )
    for key, value in sorted(gauges.items()):
        kind, _, rest = key.partition(":")
        if kind == "symbol_exposure":
            symbols.add_metric([rest], value)
        elif kind == "asset_exposure":
            assets.add_metric([rest], value)
        elif kind == "limit_use":
            limit, _, subject = rest.partition(":")
            use.add_metric([limit, subject], value)
    yield from (symbols, assets, use)


REQUEST_SECONDS = 10.0  # a scrape's connection that neither sends nor reads for this long is closed
MAX_CONNECTIONS = 32  # scrapes at once (each a thread); one more is closed at once


class _QuietHandler(WSGIRequestHandler):
    def setup(self) -> None:
        self.request.settimeout(REQUEST_SECONDS)  # for each read and write
        super().setup()

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # timed out, or the client left: the connection is closed, quietly
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        return


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per scrape, at most :data:`MAX_CONNECTIONS` at once: a client that connects and never sends does not
    hold up the others, and is closed after :data:`REQUEST_SECONDS`. Each connection is a thread and a file descriptor
    of the engine's driver process: 500 that sent nothing were 500 threads held for as long as they stayed open."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # closed at once: its descriptor is free again
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _ThreadingServer6(_ThreadingServer):
    """The same on an IPv6 address (``::1``, ``::``): a server's socket is IPv4 unless its class says otherwise."""

    address_family = socket.AF_INET6


_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _loopback_only(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """An exporter bound to the loopback answers only requests naming a loopback host: a web page elsewhere cannot
    read the engine's figures through a DNS name rebound to 127.0.0.1."""

    def checked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST", "")
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1 : host.find("]")]
        if name not in _LOOPBACK:
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"host {host[:100]!r} not allowed: this exporter answers on the loopback only\n".encode()]
        return app(environ, start_response)

    return checked


class MetricsServer:
    """A running exporter: ``.port`` is the bound port (useful with port 0); ``close()`` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host = str(server.server_address[0])
        self.port = int(server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address, bracketed as a URL needs
        return f"http://{host}:{self.port}/metrics"

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
    """Serve ``/metrics`` for an engine on ``host:port`` (127.0.0.1 unless configured otherwise) in a thread. An IPv6
    address (``::1``, ``::``, also written ``[::1]``) is served over IPv6; a name, over IPv4."""
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(status, round_trip))  # type: ignore[arg-type]
    app = make_wsgi_app(registry)
    if host in _LOOPBACK:
        app = _loopback_only(app)
    server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
    server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="veloz-metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
