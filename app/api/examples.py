"""One example per schema of the OpenAPI document, keyed by model name.

Kept apart from the models so the contract in schemas.py stays readable; a test validates
each example against its model, so they change together.
"""

from __future__ import annotations

from typing import Any

_INFO: dict[str, Any] = {
    "name": "docs",
    "dim": 2,
    "metric": "ip",
    "count": 50000,
    "clustering": "kmeans",
    "nlist_requested": None,
    "default_nprobe": None,
    "index": {
        "state": "ivf",
        "nlist": 256,
        "clustering_version": 3,
        "building": False,
        "quantization": {"kind": "sq8"},
        "bytes_per_vector": 42.0,
    },
    "router": {"kind": "linear", "version": 2},
    "recall_table": None,
    "created_at": "2026-11-01T12:00:00+00:00",
}
_HITS = [{"id": "a2", "score": 0.11, "payload": None}, {"id": "a1", "score": 0.05}]
_CURVE = {"top1_accuracy": [0.61, 0.78, 0.9], "recall": [0.42, 0.63, 0.82]}

_JOB: dict[str, Any] = {
    "id": "4f7c1a9e-6a43-4b5e-9d0b-2f1e8c3a7b10",
    "kind": "train-router",
    "collection": "docs",
    "status": "running",
    "progress": 0.4,
    "result": None,
    "error": None,
    "attempts": 1,
    "created_at": "2026-11-01T12:00:00+00:00",
    "updated_at": "2026-11-01T12:00:03+00:00",
}

EXAMPLES: dict[str, dict[str, Any]] = {
    "CollectionCreate": {
        "name": "docs",
        "dim": 384,
        "metric": "cosine",
        "clustering": "kmeans",
        "quantization": {"kind": "pq", "m": 96},
    },
    "CollectionPatch": {"quantization": {"kind": "sq8"}},
    "CollectionInfo": _INFO,
    "CollectionList": {"collections": [_INFO]},
    "IndexRequest": {
        "collection": "docs",
        "points": [
            {"id": "a1", "vector": [0.1, 0.2], "payload": {"lang": "en"}},
            {"id": "a2", "vector": [0.3, 0.4]},
        ],
    },
    "IndexResponse": {"upserted": 2, "seq": 2},
    "DeleteRequest": {"collection": "docs", "ids": ["a1"]},
    "DeleteResponse": {"deleted": 1, "seq": 3},
    "PointOut": {"id": "a1", "payload": {"lang": "en"}, "vector": [0.1, 0.2]},
    "PointPage": {
        "points": [{"id": "a1", "payload": {"lang": "en"}, "vector": [0.1, 0.2]}],
        "next": "a1",
    },
    "SearchRequest": {"collection": "docs", "vector": [0.1, 0.2], "k": 10, "nprobe": 4},
    "SearchResponse": {
        "hits": _HITS,
        "nprobe": 4,
        "routing": "learned",
        "router_version": 2,
        "plan": "ivf",
        "scanned": 241.0,
        "candidates": 100.0,
    },
    "BatchSearchRequest": {"collection": "docs", "vectors": [[0.1, 0.2], [0.3, 0.1]], "k": 2},
    "BatchSearchResponse": {
        "results": [{"hits": _HITS}, {"hits": _HITS[:1]}],
        "nprobe": 8,
        "routing": "centroid",
        "router_version": None,
        "plan": "ivf",
        "scanned": 496.5,
        "candidates": 0.0,
    },
    "BuildRequest": {"nlist": 256, "seed": 0},
    "TrainRouterRequest": {"collection": "docs", "kind": "linear", "objective": "top1"},
    "JobAccepted": {"job_id": "4f7c1a9e-6a43-4b5e-9d0b-2f1e8c3a7b10"},
    "JobOut": _JOB,
    "JobList": {"jobs": [_JOB]},
    "Health": {"status": "ok"},
    "Ready": {"ready": True, "store": True, "indexes_loaded": True, "applied_seq": 42},
    "Problem": {
        "type": "https://vecroute.dev/problems/collection-not-found",
        "title": "Not found",
        "status": 404,
        "detail": "collection 'docs' does not exist",
    },
    "RouterReport": {
        "collection": "docs",
        "clustering_version": 3,
        "active_router_version": 2,
        "evaluation": {
            "source": "train-router",
            "router_version": 2,
            "router_kind": "linear",
            "activated": True,
            "reason": "wins at default nprobe 8, not worse elsewhere",
            "heldout_queries": 1000,
            "k": 10,
            "created_at": "2026-11-01T12:00:00+00:00",
        },
        "nprobe": [1, 2, 4],
        "centroid": {"top1_accuracy": [0.5, 0.7, 0.85], "recall": [0.33, 0.52, 0.74]},
        "learned": _CURVE,
    },
}
