"""Prometheus metrics: one registry per app (so tests can run several apps in a process).

Counted on the request path: latency per route, searches by routing and nprobe, points
indexed; everything else is read at scrape time (index sizes, query log, jobs), so it
costs the searches nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.job_metrics import JobMetrics
from app.service.service import Service
from app.service.stats import ServiceStats


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
            "vecroute_search_queries",
            "Queries searched, by the routing used and nprobe ('none' for exact search, "
            "'adaptive' for per-query probes)",
            ["routing", "nprobe"],
            registry=self.registry,
        )
        # labels() takes a lock and builds a key on each call: cache the children instead.
        self._search_children: dict[tuple[str, int | str | None], Counter] = {}
        self.jobs = JobMetrics(self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).observe(seconds)

    def count_searches(self, routing: str, nprobe: float | None, n: int = 1) -> None:
        # A mean of adaptive probes is a float: one label for all, not one per value.
        probes = nprobe if nprobe is None or isinstance(nprobe, int) else "adaptive"
        key = (routing, probes)
        child = self._search_children.get(key)
        if child is None:
            child = self.searches.labels(routing, "none" if probes is None else str(probes))
            self._search_children[key] = child
        child.inc(n)

    def watch(self, service: Service) -> None:
        self.registry.register(_ServiceCollector(service))
        service.add_job_listener(self.jobs.observe)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ServiceCollector(Collector):
    """Gauges read at scrape time from the service (this process and the store)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self.service.stats()
        for name, doc, value in (
            ("vecroute_applied_seq", "Writes applied in this process", stats.applied_seq),
            ("vecroute_query_log_dropped", "Logged queries dropped", stats.query_log_dropped),
            (
                "vecroute_query_log_buffered",
                "Logged queries not yet written to the store",
                stats.query_log_buffered,
            ),
            (
                "vecroute_filter_views",
                "Copies of repeated filters' matching vectors held",
                stats.filter_views,
            ),
            ("vecroute_filter_view_bytes", "Memory of those copies", stats.filter_view_bytes),
        ):
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], value)
            yield gauge
        yield from _collections(stats)
        if stats.jobs is not None:
            jobs = GaugeMetricFamily(
                "vecroute_jobs", "Jobs in the store by kind and status", labels=["kind", "status"]
            )
            for (kind, status), n in sorted(stats.jobs.items()):
                jobs.add_metric([kind, status], n)
            yield jobs


def _collections(stats: ServiceStats) -> Iterator[GaugeMetricFamily]:
    labels = ["collection"]
    points = GaugeMetricFamily("vecroute_points", "Points per collection", labels=labels)
    lists = GaugeMetricFamily(
        "vecroute_index_lists", "IVF lists per collection (0 while exact)", labels=labels
    )
    size = GaugeMetricFamily(
        "vecroute_index_bytes", "Estimated index memory per collection", labels=labels
    )
    logged = GaugeMetricFamily(
        "vecroute_query_log_queries",
        "Logged queries kept in the store per collection",
        labels=labels,
    )
    for c in stats.collections:
        points.add_metric([c.name], c.points)
        lists.add_metric([c.name], c.lists)
        size.add_metric([c.name], c.index_bytes)
        if c.logged_queries is not None:
            logged.add_metric([c.name], c.logged_queries)
    yield from (points, lists, size)
    if stats.jobs is not None:  # the store answered
        yield logged
