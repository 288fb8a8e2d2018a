"""Routers and emulators published to the store the way the worker's jobs publish them
(``publish_router``, ``publish_emulator``), without their torch training: what an API
process does with a version does not depend on how it was trained, and training in the
cluster tests would cost seconds each. Everything else is the worker's: the clustering
and the points read from the store, the adaptive calibration measured on held-out queries.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from app.engine.adaptive import calibrate
from app.engine.clustering import Clustering
from app.engine.emulator import Architecture, ClusterModel, Emulator, NeighbourModels
from app.engine.labels import exact_search, list_labels
from app.engine.metric import Metric, prepare
from app.engine.routing import Router, RouterKind
from app.store.collections import CollectionRecord, get_collection
from app.store.db import Store
from app.store.emulators import publish_emulator
from app.store.points import iter_live_points
from app.store.seq import current_seq
from app.store.versions import load_clustering, publish_router

K = 10


def _read(store: Store, name: str) -> tuple[CollectionRecord, Clustering, np.ndarray, np.ndarray]:
    """The collection's record, active clustering, live ids and raw vectors."""
    with store.read() as session:
        record = get_collection(session, name)
        assert record is not None and record.clustering_version is not None
        clustering = load_clustering(session, record.id, record.clustering_version)
        blocks = list(iter_live_points(session, record.id, record.dim))
    ids = np.concatenate([b[0] for b in blocks])
    vectors = np.concatenate([b[1] for b in blocks])
    return record, clustering, ids, vectors


def publish_linear_router(store: Store, names: list[str], heldout: np.ndarray, seed: int) -> None:
    """One linear router, activated for each of ``names`` (twins: same points, same
    clustering): the clustering's assignment rule perturbed, so that it routes unlike the
    centroids, with its ``target_recall`` calibration measured on ``heldout`` queries as
    the train-router job measures it."""
    rng = np.random.default_rng(seed)
    router = None
    for name in names:
        record, clustering, _, vectors = _read(store, name)
        if router is None:
            scale = float(np.abs(clustering.representatives).mean())
            noise = rng.normal(scale=0.3 * scale, size=clustering.representatives.shape)
            router = Router(
                RouterKind.LINEAR,
                clustering.representatives + noise.astype(np.float32),
                clustering.bias,
                clustering_version=clustering.version,
            )
            metric = Metric(record.metric)
            docs, q = prepare(vectors, metric, record.dim), prepare(heldout, metric, record.dim)
            doc_lists = clustering.assign(docs)
            neighbours, _ = exact_search(docs, q, K, metric)
            sizes = np.bincount(doc_lists, minlength=clustering.nlist)
            adaptive = calibrate(router, q, list_labels(neighbours, doc_lists), sizes, k=K)
            router = replace(router, params={"adaptive": adaptive.to_dict()})
        assert router.clustering_version == clustering.version
        publish_router(store, record.id, router, activate=True)


def publish_linear_emulator(store: Store, name: str) -> int:
    """A linear emulator as its training starts (level 1: the centroids' rule; level 2:
    each member scored by its own vector), published as the collection's serving version."""
    record, clustering, ids, vectors = _read(store, name)
    docs = prepare(vectors, Metric(record.metric), record.dim)
    lists = clustering.assign(docs)
    order = np.argsort(lists, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(lists, minlength=clustering.nlist))])
    level1 = ClusterModel(Architecture.LINEAR, clustering.representatives, clustering.bias)
    level2 = NeighbourModels(
        Architecture.LINEAR,
        ids[order],
        offsets.astype(np.int64),
        docs[order],
        np.zeros(len(ids), np.float32),
        clustering.representatives,
    )
    with store.read() as session:
        seq = current_seq(session)
    emulator = Emulator(level1, level2, clustering.version, trained_seq=seq)
    emulator = replace(emulator, params=emulator.describe())
    return publish_emulator(store, record.id, emulator, metrics={})
