"""The ``build`` job: cluster a collection's vectors from the store and publish the version.

It reads the store, not an API process's index, so any process can run it (the embedded
worker or ``vecroute worker``); API processes swap the new clustering in by catch-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from app.engine.clustering import Algorithm, auto_nlist, train_clustering
from app.engine.metric import Metric, prepare
from app.store.collections import get_collection
from app.store.db import Store
from app.store.points import count_points, iter_live_points
from app.store.versions import publish_clustering

Progress = Callable[[float], None]


class BuildError(RuntimeError):
    """The collection cannot be clustered (gone, or empty); retrying will not help."""

    permanent = True


def run_build(store: Store, collection: str, params: dict[str, Any], progress: Progress) -> dict:
    started = time.perf_counter()
    with store.read() as session:
        record = get_collection(session, collection)
        if record is None:
            raise BuildError(f"collection {collection!r} no longer exists")
        total = count_points(session, record.id)
        if total == 0:
            raise BuildError("the collection is empty")
        blocks = []
        for _, vectors, _ in iter_live_points(session, record.id, record.dim):
            blocks.append(vectors)
            progress(0.4 * sum(len(b) for b in blocks) / total)
    metric = Metric(record.metric)
    x = prepare(np.concatenate(blocks), metric, record.dim)
    nlist = min(params.get("nlist") or record.nlist or auto_nlist(len(x)), len(x))
    clustering = train_clustering(
        x, nlist, Algorithm(record.algorithm), metric, seed=int(params.get("seed", 0))
    )
    progress(0.9)
    version = publish_clustering(store, record.id, clustering, n_points=len(x))
    return {
        "clustering_version": version,
        "nlist": nlist,
        "n_points": len(x),
        "seconds": round(time.perf_counter() - started, 3),
    }
