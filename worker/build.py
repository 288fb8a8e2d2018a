"""The ``build`` job: cluster a collection's vectors from the store and publish the version.

It reads the store, not an API process's index, so any process can run it (the embedded
worker or ``vecroute worker``); API processes swap the new clustering in by catch-up. When
enough queries are logged, it also measures centroid routing's held-out recall table, so
``target_recall`` works from the first clustering on, before any router is trained (on code
lists, by searching them: ``recall_table``).

Unless the build or the collection names one, the list count is the one the collection's
codes prefer (``codes.preferred_nlist``: about sqrt(n) for fast-scan codes, 4 sqrt(n) else).
A collection with codes gets their codebook for the new clustering trained here and stored
with it (``codes.py``: every process codes its lists with the stored codebook).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from app.engine.clustering import Algorithm, Clustering, train_clustering
from app.engine.codes import (
    CATALYZER_KINDS,
    Quantization,
    min_train_points,
    preferred_nlist,
    trained_codebook,
)
from app.engine.labels import exact_neighbours, list_labels
from app.engine.metric import Metric, prepare, prepare_in_place
from app.engine.recall_table import (
    CODED_QUERIES,
    code_stamp,
    coded_index,
    kept_by_nprobe,
    measure,
)
from app.engine.routing import centroid_router
from app.store.codebooks import NewCodebook
from app.store.collections import get_collection
from app.store.db import Store
from app.store.points import read_live_points
from app.store.query_log import load_queries
from app.store.versions import publish_clustering

Progress = Callable[[float], None]

# Queries for the centroid recall table: enough for a tight bound, cheap to label.
TABLE_MIN_QUERIES = 200
TABLE_MAX_QUERIES = 5000


class BuildError(RuntimeError):
    """The collection cannot be clustered (gone, or empty); retrying will not help."""

    permanent = True


def run_build(
    store: Store,
    collection: str,
    params: dict[str, Any],
    progress: Progress,
    codes: Quantization | None = None,
) -> dict:
    """``codes``: the quantization to train the new clustering's codebook for (default:
    the collection's; the quantize job passes the one it is about to record)."""
    started = time.perf_counter()
    with store.read() as session:
        record = get_collection(session, collection)
        if record is None:
            raise BuildError(f"collection {collection!r} no longer exists")
        _, raw = read_live_points(session, record.id, record.dim, lambda f: progress(0.4 * f))
        if len(raw) == 0:
            raise BuildError("the collection is empty")
        _, queries = load_queries(session, record.id, record.dim, limit=TABLE_MAX_QUERIES)
    metric = Metric(record.metric)
    x = prepare_in_place(raw, metric)
    codes = codes or Quantization.parse(record.quantization, record.dim)
    nlist = min(params.get("nlist") or record.nlist or preferred_nlist(codes, len(x)), len(x))
    clustering = train_clustering(
        x, nlist, Algorithm(record.algorithm), metric, seed=int(params.get("seed", 0))
    )
    progress(0.8)
    codebook = _codebook(codes, clustering, x)
    table = None
    if len(queries) >= TABLE_MIN_QUERIES:
        table = _centroid_table(clustering, x, queries, codes, codebook)
    progress(0.95)
    version = publish_clustering(
        store, record.id, clustering, n_points=len(x), recall_table=table, codebook=codebook
    )
    return {
        "clustering_version": version,
        "nlist": nlist,
        "n_points": len(x),
        "recall_table_queries": len(queries) if table is not None else 0,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _codebook(codes: Quantization, clustering: Clustering, x: np.ndarray) -> NewCodebook | None:
    """The codebook of the collection's codes for the new clustering, trained here once so
    that every process codes its lists alike; None for kinds that learn none, or too few
    points (the lists stay float32 then, as in every process)."""
    if not codes.stores_codebook or len(x) < min_train_points(codes):
        return None
    return NewCodebook(codes.key, trained_codebook(codes, clustering, x))


def _centroid_table(
    clustering: Clustering,
    docs: np.ndarray,
    queries: np.ndarray,
    codes: Quantization,
    codebook: NewCodebook | None,
) -> dict | None:
    """The centroid routing's recall table; on code lists, measured by searching the lists
    coded with the codebook trained here. None for a catalyzer kind (its catalyzer is
    another job's: its table comes with the next router training) and for code lists
    without a codebook (too few points)."""
    if codes.kind in CATALYZER_KINDS or (codes.compressed and codebook is None):
        return None
    q = prepare(queries, clustering.metric, clustering.dim)
    neighbours = exact_neighbours(docs, q, 10, clustering.metric, prepared=True)
    lists = list_labels(neighbours, clustering.assign(docs))
    router = centroid_router(clustering)
    if codebook is None:
        return measure(router, q, lists).to_dict()
    coded = coded_index(codes.with_codebook(codebook.codebook, None), clustering, docs)
    q, neighbours, lists = q[:CODED_QUERIES], neighbours[:CODED_QUERIES], lists[:CODED_QUERIES]
    kept = kept_by_nprobe(coded, router, q, neighbours)
    return measure(router, q, lists, kept=kept, codes=code_stamp(codes, None)).to_dict()
