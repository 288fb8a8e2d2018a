"""Prometheus metrics: one registry per app (so tests can run several apps in a process).

Counted on the request path: latency per route, searches by routing and nprobe, points
indexed; everything else is read at scrape time (index sizes, query log, jobs), so it
costs the searches nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.service.service import Service
from app.store.jobs import count_by_status
from app.store.query_log import count_by_collection
from worker.metrics import JobMetrics

log = logging.getLogger(__name__)


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
            "Queries searched, by the routing used and nprobe ('none' for exact search)",
            ["routing", "nprobe"],
            registry=self.registry,
        )
        # labels() takes a lock and builds a key on each call: cache the children instead.
        self._search_children: dict[tuple[str, int | None], Counter] = {}
        self._request_children: dict[tuple[str, str, int], Histogram] = {}
        self.jobs = JobMetrics(self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)  # bounded: routes are templates, methods and statuses few
        child = self._request_children.get(key)
        if child is None:
            child = self.requests.labels(method, route, str(status))
            self._request_children[key] = child
        child.observe(seconds)

    def count_searches(self, routing: str, nprobe: int | None, n: int = 1) -> None:
        key = (routing, nprobe)
        child = self._search_children.get(key)
        if child is None:
            child = self.searches.labels(routing, "none" if nprobe is None else str(nprobe))
            self._search_children[key] = child
        child.inc(n)

    def watch(self, service: Service) -> None:
        self.registry.register(_ServiceCollector(service))
        if service.worker is not None:
            service.worker.add_job_listener(self.jobs.observe)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ServiceCollector(Collector):
    """Gauges read at scrape time from this process and from the store."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        service = self.service
        applied = GaugeMetricFamily("vecroute_applied_seq", "Writes applied in this process")
        applied.add_metric([], service.registry.applied_seq)
        yield applied
        dropped = GaugeMetricFamily("vecroute_query_log_dropped", "Logged queries dropped")
        dropped.add_metric([], service.query_log.dropped)
        yield dropped
        buffered = GaugeMetricFamily(
            "vecroute_query_log_buffered", "Logged queries not yet written to the store"
        )
        buffered.add_metric([], service.query_log.pending)
        yield buffered
        views = service.registry.filter_views
        held = GaugeMetricFamily(
            "vecroute_filter_views", "Copies of repeated filters' matching vectors held"
        )
        held.add_metric([], len(views))
        yield held
        size = GaugeMetricFamily("vecroute_filter_view_bytes", "Memory of those copies")
        size.add_metric([], views.nbytes)
        yield size
        yield from self._indexes()
        yield from self._store()

    def _indexes(self) -> Iterator[GaugeMetricFamily]:
        labels = ["collection"]
        points = GaugeMetricFamily("vecroute_points", "Points per collection", labels=labels)
        lists = GaugeMetricFamily(
            "vecroute_index_lists", "IVF lists per collection (0 while exact)", labels=labels
        )
        size = GaugeMetricFamily(
            "vecroute_index_bytes", "Estimated index memory per collection", labels=labels
        )
        if self.service.ready:
            for live in self.service.registry.all():
                clustering = live.index.clustering
                points.add_metric([live.name], live.index.count)
                lists.add_metric([live.name], clustering.nlist if clustering else 0)
                size.add_metric([live.name], live.index.memory_bytes())
        yield from (points, lists, size)

    def _store(self) -> Iterator[GaugeMetricFamily]:
        """Store-wide counts: a failing store must not fail the scrape (readyz says why)."""
        logged = GaugeMetricFamily(
            "vecroute_query_log_queries",
            "Logged queries kept in the store per collection",
            labels=["collection"],
        )
        jobs = GaugeMetricFamily(
            "vecroute_jobs", "Jobs in the store by kind and status", labels=["kind", "status"]
        )
        try:
            with self.service.store.read() as session:
                per_id = count_by_collection(session)
                by_status = count_by_status(session)
        except Exception:
            log.warning("metrics: the store is unreachable", exc_info=True)
            return
        if self.service.ready:
            for live in self.service.registry.all():
                logged.add_metric([live.name], per_id.get(live.record.id, 0))
        for (kind, status), n in sorted(by_status.items()):
            jobs.add_metric([kind, status], n)
        yield from (logged, jobs)
