"""The ``train-router`` job with ``"kind": "emulator"``: paper 002's emulator, trained and
published.

Reads the collection's live points, its active clustering and its newest logged queries in
one snapshot of the store (and the store's seq then: points written later are "fresh" to
the emulator, always re-scored at serving). Labels each query by exact search: its true
nearest neighbour, and that neighbour's list. Trains on most queries, measures each level
on the rest, and publishes the new version, which serves from then on.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from app.engine.emulator import Architecture, Emulator
from app.engine.labels import exact_search
from app.engine.metric import Metric, prepare, prepare_in_place
from app.store.collections import get_collection
from app.store.db import Store
from app.store.emulators import publish_emulator
from app.store.points import read_live_points
from app.store.query_log import load_queries
from app.store.seq import current_seq
from app.store.versions import load_clustering
from worker.train_router import Progress, TrainingError, TrainingPlan

TOP = 5  # level 2 is right when the true neighbour is among its top 5 (the paper's measure)


def run_train_emulator(
    store: Store, collection: str, params: dict[str, Any], progress: Progress, plan: TrainingPlan
) -> dict[str, Any]:
    started = time.perf_counter()
    with store.read() as session:
        seq = current_seq(session)
        record = get_collection(session, collection)
        if record is None:
            raise TrainingError(f"collection {collection!r} no longer exists")
        if record.clustering_version is None:
            raise TrainingError("the collection has no clustering yet: build it first")
        clustering = load_clustering(session, record.id, record.clustering_version)
        doc_ids, raw = read_live_points(session, record.id, record.dim)
        _, queries = load_queries(session, record.id, record.dim, limit=plan.max_queries)
    if len(doc_ids) == 0:
        raise TrainingError("the collection is empty")
    if len(queries) < plan.min_queries:
        raise TrainingError(f"{len(queries)} queries logged; training needs {plan.min_queries}")
    metric = Metric(record.metric)
    docs = prepare_in_place(raw, metric)
    q = prepare(queries, metric, record.dim)
    doc_lists = clustering.assign(docs)
    top, _ = exact_search(docs, q, TOP, metric, prepared=True)
    progress(0.2)

    rng = np.random.default_rng(int(params.get("seed", 0)))
    order = rng.permutation(len(q))
    n_hold = max(1, round(plan.holdout_fraction * len(q)))
    hold, train = order[:n_hold], order[n_hold:]
    # torch loads here, in the worker, never in an API process.
    from app.engine.emulator_training import EmulatorConfig, EmulatorData, train_emulator

    architecture = Architecture(params.get("architecture", Architecture.LINEAR))
    config = EmulatorConfig(
        level1=architecture, level2=architecture, seed=int(params.get("seed", 0))
    )
    data = EmulatorData(docs, doc_ids, doc_lists, q[train], top[train])
    emulator = train_emulator(
        data, clustering, config, lambda f: progress(0.2 + 0.7 * f), trained_seq=seq
    )
    nprobe = min(record.default_nprobe or plan.default_nprobe, clustering.nlist)
    heldout = heldout_accuracy(
        emulator, q[hold], doc_ids[top[hold]], doc_lists[top[hold, 0]], nprobe
    )
    version = publish_emulator(store, record.id, emulator, metrics=heldout)
    return {
        "emulator_version": version,
        "kind": "emulator",
        "architecture": str(architecture),
        "clustering_version": clustering.version,
        "trained_seq": seq,
        "train_queries": len(train),
        "heldout_queries": len(hold),
        **heldout,
        "seconds": round(time.perf_counter() - started, 3),
    }


def heldout_accuracy(
    emulator: Emulator, q: np.ndarray, top_ids: np.ndarray, true_lists: np.ndarray, nprobe: int
) -> dict[str, Any]:
    """The paper's per-level accuracy on held-out queries, and how often the true nearest
    neighbour is among the candidates served at ``nprobe`` lists and ``TOP`` per list."""
    level1 = emulator.level1.route(q, nprobe)
    level2 = [
        top_ids[i, 0] in emulator.level2.top(q[i : i + 1], int(true_lists[i]), TOP)[0]
        for i in range(len(q))
    ]
    proposed, _ = emulator.propose(q, nprobe, TOP)
    found = [top_ids[i, 0] in proposed[i] for i in range(len(q))]
    return {
        "level1_accuracy": round(float(np.mean(level1[:, 0] == true_lists)), 4),
        f"level1_accuracy_at_{nprobe}": round(
            float(np.mean((level1 == true_lists[:, None]).any(1))), 4
        ),
        "level2_top5_accuracy": round(float(np.mean(level2)), 4),
        "nearest_in_candidates": round(float(np.mean(found)), 4),
        "nprobe": nprobe,
    }
