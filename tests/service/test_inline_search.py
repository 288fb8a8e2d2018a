"""Which searches run on the event loop: those reading few vectors, a filtered one only with
its bitmap cached (evaluating a filter may scan every payload), counted on its view if any."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from app.engine.filters import parse_filter
from app.service.search import SearchOptions
from tests.service.services import create_docs, start_service
from worker.build import run_build

N = 2000
INLINE = 1000  # vectors a search may read on the loop: fewer than the collection holds


def test_filtered_searches_go_inline_once_cached_and_cheap(tmp_path: Path) -> None:
    service = start_service(
        f"sqlite:///{tmp_path / 'store.db'}", tmp_path, inline_search_max_vectors=INLINE
    )
    try:
        create_docs(service, {"bucket": "integer"})
        rng = np.random.default_rng(3)
        points = [
            {"id": f"p{i}", "vector": v.tolist(), "payload": {"bucket": i % 100}}
            for i, v in enumerate(rng.standard_normal((N, 8)))
        ]
        service.index_points("docs", points)
        f = parse_filter({"must": [{"key": "bucket", "range": {"lt": 10}}]})
        unfiltered = SearchOptions(k=5, nprobe=None, routing="auto", with_payload=False)
        opts = replace(unfiltered, filter=f)
        query = rng.standard_normal((1, 8)).astype(np.float32)

        assert not service.is_cheap("docs", 1, unfiltered)  # exact over 2,000 vectors
        assert not service.is_cheap("docs", 1, opts)  # the filter is not evaluated yet
        service.search("docs", query, opts)  # caches the filter's bitmap
        live = service.registry.get("docs")
        views = live.filter_views
        assert views is not None
        # The search's rent is its duration: on a loaded machine one search may have bought
        # a view already. Dropped here, so the check below sees the bitmap alone.
        views.wait()
        views.forget(live.index)
        assert live.payloads.cached(f) is not None
        assert not service.is_cheap("docs", 1, opts)  # cached, but its plan reads 2,000

        views.charge(live.index, live.payloads.allowed(f), 60.0)
        views.wait()
        assert service.is_cheap("docs", 1, opts)  # its view holds 200
        assert not service.is_cheap("docs", 6, opts)  # six queries read 1,200

        service.index_points("docs", points[:1])  # a write: bitmap and view are stale
        assert not service.is_cheap("docs", 1, opts)
    finally:
        service.stop()


def test_a_filtered_ivf_search_that_may_widen_to_every_list_never_runs_inline(
    tmp_path: Path,
) -> None:
    service = start_service(
        f"sqlite:///{tmp_path / 'store.db'}", tmp_path, inline_search_max_vectors=INLINE
    )
    try:
        service.create_collection(
            name="docs",
            dim=8,
            metric="ip",
            nlist=16,
            algorithm="kmeans",
            default_nprobe=1,
            payload_indexes={"bucket": "integer"},
        )
        rng = np.random.default_rng(4)
        service.index_points(
            "docs",
            [
                {"id": f"p{i}", "vector": v.tolist(), "payload": {"bucket": i % 2}}
                for i, v in enumerate(rng.standard_normal((N, 8)))
            ],
        )
        run_build(service.store, "docs", {}, lambda _: None)
        service.registry.catch_up()
        unfiltered = SearchOptions(k=5, nprobe=None, routing="auto", with_payload=False)
        half = replace(
            unfiltered, filter=parse_filter({"must": [{"key": "bucket", "match": {"value": 0}}]})
        )
        query = rng.standard_normal((1, 8)).astype(np.float32)
        assert service.is_cheap("docs", 1, unfiltered)  # one of 16 lists: ~125 vectors
        assert service.search("docs", query, half)["plan"] == "ivf"
        # Cached now, and its first pass reads one list; but a query short of hits widens to
        # all 16 lists, 2,000 vectors: that may never happen on the event loop.
        assert not service.is_cheap("docs", 1, half)
    finally:
        service.stop()
