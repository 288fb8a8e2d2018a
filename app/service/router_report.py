"""The router report: held-out top-1 accuracy and recall@k against nprobe, for centroid and
learned routing of a collection's active clustering.

It shows the last evaluation the worker stored, never a new measurement (that needs exact
labels of logged queries: worker work, not API work):
- after a train-router job on the active clustering: both curves, measured on that job's
  held-out queries, for the newest router trained (activated or not: ``evaluation`` says);
- before any: ``learned`` is null, and ``centroid`` is the recall the build measured on
  logged queries (top-1 accuracy null: the build does not measure it), if it could;
- without a clustering (search is exact), or without logged queries at build: both null.
"""

from __future__ import annotations

from typing import Any

from app.engine.recall_table import RecallTable
from app.service.live import LiveCollection
from app.store.db import Store
from app.store.versions import RouterEvaluation, last_evaluation


def router_report(store: Store, live: LiveCollection) -> dict[str, Any]:
    record = live.record
    report: dict[str, Any] = {
        "collection": live.name,
        "clustering_version": record.clustering_version,
        "active_router_version": record.router_version,
        "evaluation": None,
        "nprobe": [],
        "centroid": None,
        "learned": None,
    }
    if record.clustering_version is None:
        return report
    with store.read() as session:
        evaluation = last_evaluation(session, record.id, record.clustering_version)
    if evaluation is not None and "candidate" in evaluation.metrics:
        return report | _from_training(evaluation)
    table = record.recall_table
    measured_at_build = (
        table is not None
        and table["routing"] == "centroid"
        and table["clustering_version"] == record.clustering_version
    )
    if table is not None and measured_at_build:
        return report | _from_build(RecallTable.from_dict(table))
    return report


def _from_training(evaluation: RouterEvaluation) -> dict[str, Any]:
    learned = evaluation.metrics["candidate"]
    centroid = evaluation.metrics.get("centroid")
    return {
        "evaluation": {
            "source": "train-router",
            "router_version": evaluation.version,
            "router_kind": evaluation.kind,
            "activated": evaluation.active,
            "reason": evaluation.metrics.get("reason"),
            "heldout_queries": learned["n_queries"],
            "k": learned["k"],
            "created_at": evaluation.created_at.isoformat(),
        },
        "nprobe": learned["nprobes"],
        "centroid": _curve(centroid) if centroid else None,
        "learned": _curve(learned),
    }


def _curve(report: dict[str, Any]) -> dict[str, Any]:
    return {"top1_accuracy": report["top1_accuracy"], "recall": report["recall"]}


def _from_build(table: RecallTable) -> dict[str, Any]:
    summary = table.summary()
    return {
        "evaluation": {
            "source": "build",
            "router_version": None,
            "router_kind": "centroid",
            "activated": None,
            "reason": None,
            "heldout_queries": table.n_queries,
            "k": table.k,
            "created_at": None,
        },
        "nprobe": summary["nprobe"],
        "centroid": {"top1_accuracy": None, "recall": summary["recall"]},
    }
