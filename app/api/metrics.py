"""Prometheus metrics: one registry per app (so tests can run several apps in a process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.service.service import Service


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "vecroute_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )
        self.points_indexed = Counter(
            "vecroute_points_indexed",
            "Points upserted through this process",
            registry=self.registry,
        )
        self.searches = Counter(
            "vecroute_search_queries", "Queries searched", ["routing"], registry=self.registry
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).observe(seconds)

    def watch(self, service: Service) -> None:
        self.registry.register(_ServiceCollector(lambda: service))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ServiceCollector(Collector):
    """Gauges read at scrape time: applied seq, points per collection, dropped log entries."""

    def __init__(self, service: Callable[[], Service]) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        service = self.service()
        applied = GaugeMetricFamily("vecroute_applied_seq", "Writes applied in this process")
        applied.add_metric([], service.registry.applied_seq)
        yield applied
        dropped = GaugeMetricFamily("vecroute_query_log_dropped", "Logged queries dropped")
        dropped.add_metric([], service.query_log.dropped)
        yield dropped
        points = GaugeMetricFamily(
            "vecroute_points", "Points per collection", labels=["collection"]
        )
        if service.ready:
            for live in service.registry.all():
                points.add_metric([live.name], live.index.count)
        yield points
