"""The ``train-router`` job: label logged queries exactly, train, gate, publish.

Runs on the store alone (any worker process can take it): it reads the collection's live
points and its newest logged queries, labels each query with the lists of its exact top-k
under the active clustering, trains a router on most of them and compares it with the
routing that serves now on the rest. The new version is stored either way, with its
evidence, and becomes active only if the gate says it wins; API processes swap it in by
catch-up. A worker dying mid-job leaves the active router untouched: nothing is written
before the final publish, and the job's lease expiry hands it to another worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from app.engine.adaptive import MAX_NPROBE, AdaptiveCalibration, calibrate
from app.engine.clustering import Clustering
from app.engine.codes import Quantization
from app.engine.gate import compare, evaluate
from app.engine.labels import Objective, exact_search, list_labels
from app.engine.metric import Metric, prepare, prepare_in_place
from app.engine.recall_table import (
    CODED_QUERIES,
    code_stamp,
    coded_index,
    coded_reach,
    kept_by_nprobe,
    kept_neighbours,
    measure,
)
from app.engine.routing import Router, RouterKind, centroid_router
from app.store.codebooks import load_codes
from app.store.collections import CollectionRecord, get_collection
from app.store.db import Store
from app.store.points import read_live_points
from app.store.query_log import load_queries
from app.store.versions import load_clustering, load_router, publish_router

Progress = Callable[[float], None]


class TrainingError(RuntimeError):
    """The collection cannot be trained for as it stands; retrying will not help."""

    permanent = True


@dataclass(frozen=True)
class TrainingPlan:
    """How a train-router job uses the log; from settings, overridable per request."""

    max_queries: int = 200_000
    holdout_fraction: float = 0.2
    min_queries: int = 100
    default_nprobe: int = 8
    k: int = 10


def run_train_router(
    store: Store, collection: str, params: dict[str, Any], progress: Progress, plan: TrainingPlan
) -> dict[str, Any]:
    started = time.perf_counter()
    record, clustering, current, docs, queries, last_query_id, codes = _load(
        store, collection, plan
    )
    progress(0.1)
    metric = Metric(record.metric)
    k = int(params.get("k", plan.k))
    # Normalised in place on cosine (the job's own array): the exact neighbours and the
    # coded index below read it as it is.
    docs = prepare_in_place(docs, metric)
    doc_lists = clustering.assign(docs)
    q = prepare(queries, metric, record.dim)
    neighbours, neighbour_scores = exact_search(docs, q, k, metric, prepared=True)
    neighbour_lists = list_labels(neighbours, doc_lists)
    progress(0.25)

    rng = np.random.default_rng(int(params.get("seed", 0)))
    order = rng.permutation(len(q))
    n_hold = max(1, round(plan.holdout_fraction * len(q)))
    hold, train = order[:n_hold], order[n_hold:]
    # torch loads here, in the job's child process (worker/child.py), never when a server or
    # worker starts: it costs about 4 s of start-up and a few hundred MB that API processes
    # never need.
    from app.engine.training import TrainConfig, train_router

    config = TrainConfig(
        kind=RouterKind(params.get("kind", RouterKind.LINEAR)),
        objective=Objective(params.get("objective", Objective.TOP1)),
        k=k,
        seed=int(params.get("seed", 0)),
    )
    candidate = train_router(
        q[train],
        neighbour_lists[train],
        clustering,
        config,
        progress=lambda f: progress(0.25 + 0.65 * f),
        neighbour_scores=neighbour_scores[train],
    )
    nprobe = min(record.default_nprobe or plan.default_nprobe, clustering.nlist)
    gate = compare(current, candidate, q[hold], neighbour_lists[hold], nprobe, k=k)
    # Centroid routing on the same held-out queries, whatever serves now: the router
    # report (GET /collections/{name}/router/report) plots it beside the learned curve.
    baseline = evaluate(
        centroid_router(clustering),
        q[hold],
        neighbour_lists[hold],
        k=k,
        nprobes=tuple(gate.current.nprobes),
    )
    serving = candidate if gate.activate else current
    routing = "centroid" if serving.kind is RouterKind.CENTROID else "learned"
    # Adaptive probing and the fixed-nprobe table for target_recall, on held-out queries
    # only; on code lists, what the codes lose is measured by searching them.
    measured, table_kept, coded, widest = hold, None, None, MAX_NPROBE
    stamp = code_stamp(codes, record.catalyzer_version)
    if stamp is not None:
        coded = coded_index(codes, clustering, docs)
        measured = hold[:CODED_QUERIES]
        raw, nb = queries[measured], neighbours[measured]
        widest = min(MAX_NPROBE, coded_reach(clustering.nlist, len(docs), len(measured)))
        table_kept = kept_by_nprobe(coded, serving, raw, nb)
    sizes = np.bincount(doc_lists, minlength=clustering.nlist)

    def calibrated(router: Router) -> AdaptiveCalibration:
        kept = kept_neighbours(coded, router, raw, nb, widest) if coded is not None else None
        return calibrate(
            router,
            q[measured],
            neighbour_lists[measured],
            sizes,
            k=k,
            max_nprobe=widest,
            kept=kept,
            codes=stamp,
        )

    adaptive = calibrated(candidate)
    # The serving learned router is calibrated afresh even when it stays: the codes, the
    # lists' sizes or the queries may have changed since its own training measured it.
    serving_adaptive = None
    if serving is candidate:
        serving_adaptive = adaptive
    elif serving.kind is not RouterKind.CENTROID:
        serving_adaptive = calibrated(serving)
    progress(0.95)
    candidate = _with_provenance(candidate, len(train), len(hold), last_query_id)
    candidate = replace(candidate, params=candidate.params | {"adaptive": adaptive.to_dict()})
    table = measure(
        serving,
        q[measured],
        neighbour_lists[measured],
        k=k,
        routing=routing,
        kept=table_kept,
        codes=stamp,
        adaptive=serving_adaptive.to_dict() if serving_adaptive is not None else None,
    )
    version = publish_router(
        store,
        record.id,
        candidate,
        metrics=gate.to_dict() | {"centroid": asdict(baseline)},
        activate=gate.activate,
        recall_table=table.to_dict(),
    )
    return {
        "router_version": version,
        "activated": gate.activate,
        "reason": gate.reason,
        "clustering_version": clustering.version,
        "kind": str(config.kind),
        "objective": str(config.objective),
        "train_queries": len(train),
        "heldout_queries": len(hold),
        "nprobes": gate.current.nprobes,
        "heldout_recall": {"current": gate.current.recall, "new": gate.candidate.recall},
        "heldout_top1_accuracy": {
            "current": gate.current.top1_accuracy,
            "new": gate.candidate.top1_accuracy,
        },
        "nprobe_for_recall": {
            "current": gate.current.nprobe_for_recall,
            "new": gate.candidate.nprobe_for_recall,
        },
        "adaptive": adaptive.to_dict(),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _load(
    store: Store, collection: str, plan: TrainingPlan
) -> tuple[CollectionRecord, Clustering, Router, np.ndarray, np.ndarray, int, Quantization]:
    """Everything the job needs, read in one snapshot of the store."""
    with store.read() as session:
        record = get_collection(session, collection)
        if record is None:
            raise TrainingError(f"collection {collection!r} no longer exists")
        if record.clustering_version is None:
            raise TrainingError("the collection has no clustering yet: build it first")
        clustering = load_clustering(session, record.id, record.clustering_version)
        current = centroid_router(clustering)
        if record.router_version is not None:
            active = load_router(session, record.id, record.router_version)
            if active.clustering_version == clustering.version:
                current = active
        _, docs = read_live_points(session, record.id, record.dim)
        log_ids, queries = load_queries(session, record.id, record.dim, limit=plan.max_queries)
        described = Quantization.parse(record.quantization, record.dim)
        codes = load_codes(
            session, record.id, described, record.catalyzer_version, clustering.version
        )
    if len(docs) == 0:
        raise TrainingError("the collection is empty")
    if len(queries) < plan.min_queries:
        raise TrainingError(f"{len(queries)} queries logged; training needs {plan.min_queries}")
    last_query_id = int(log_ids[-1]) if len(log_ids) else 0
    return record, clustering, current, docs, queries, last_query_id, codes


def _with_provenance(router: Router, n_train: int, n_hold: int, last_query_id: int) -> Router:
    """Record which log the router learned from, so the policy can count newer queries."""
    data = {"train_queries": n_train, "heldout_queries": n_hold, "last_query_id": last_query_id}
    return replace(router, params=router.params | {"data": data})
