"""Numbers about a running service, read at scrape time for ``/metrics``."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.service.query_log import QueryLogBuffer
from app.service.registry import Registry
from app.store.db import Store
from app.store.jobs import count_by_status
from app.store.query_log import count_by_collection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectionStats:
    name: str
    points: int
    lists: int  # 0 while search is exact
    index_bytes: int
    logged_queries: int | None  # None when the store could not be read


@dataclass(frozen=True)
class ServiceStats:
    applied_seq: int
    query_log_dropped: int
    query_log_buffered: int
    filter_views: int
    filter_view_bytes: int
    collections: list[CollectionStats]  # empty while loading
    jobs: dict[tuple[str, str], int] | None  # by (kind, status); None: store unreachable


def collect_stats(store: Store, registry: Registry, query_log: QueryLogBuffer) -> ServiceStats:
    """A failing store must not fail the scrape (``/readyz`` says why): its counts go None."""
    try:
        with store.read() as session:
            logged: dict[int, int] | None = count_by_collection(session)
            jobs: dict[tuple[str, str], int] | None = count_by_status(session)
    except Exception:
        log.warning("metrics: the store is unreachable", exc_info=True)
        logged, jobs = None, None
    collections = [
        CollectionStats(
            name=live.name,
            points=live.index.count,
            lists=live.index.clustering.nlist if live.index.clustering is not None else 0,
            index_bytes=live.index.memory_bytes(),
            logged_queries=logged.get(live.record.id, 0) if logged is not None else None,
        )
        for live in (registry.all() if registry.ready else [])
    ]
    views = registry.filter_views
    return ServiceStats(
        applied_seq=registry.applied_seq,
        query_log_dropped=query_log.dropped,
        query_log_buffered=query_log.pending,
        filter_views=len(views),
        filter_view_bytes=views.nbytes,
        collections=collections,
        jobs=jobs,
    )
