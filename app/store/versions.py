"""Clustering and router versions: immutable rows, published and activated atomically.

Publishing is how the worker hands a new artefact to every API process: the row and the
collection's new active version commit in one write transaction with a new write seq, and
each API process's catch-up loop swaps it in on its next poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.engine.clustering import Algorithm, Clustering
from app.engine.metric import Metric
from app.engine.routing import MlpTerm, Router, RouterKind
from app.store.arrays import pack_arrays, unpack_arrays
from app.store.codebooks import NewCodebook, add_codebook
from app.store.collections import set_active_versions
from app.store.db import Store
from app.store.models import ClusteringRow, Collection, RouterRow, as_utc
from app.store.seq import next_seq


class StaleClusteringError(RuntimeError):
    """A router was published for a clustering that is no longer the active one."""


def publish_clustering(
    store: Store,
    collection_id: int,
    clustering: Clustering,
    *,
    n_points: int,
    recall_table: dict[str, Any] | None = None,
    codebook: NewCodebook | None = None,
) -> int:
    """Store ``clustering`` as the next version and make it active; returns the version.
    ``codebook``: the collection's codebook trained for it, stored in the same transaction
    (every process that adopts the clustering finds it).

    Routers of older clusterings stop applying: the collection falls back to centroids,
    whose held-out ``recall_table`` (if the build could measure one) comes along.
    """
    with store.write() as session:
        next_seq(session)
        version = _next_version(session, ClusteringRow, collection_id)
        session.add(
            ClusteringRow(
                collection_id=collection_id,
                version=version,
                algorithm=str(clustering.algorithm),
                arrays=pack_arrays(
                    representatives=clustering.representatives, bias=clustering.bias
                ),
                params=clustering.params,
                n_points=n_points,
            )
        )
        session.flush()
        if codebook is not None:
            add_codebook(session, collection_id, version, codebook.key, codebook.codebook)
        set_active_versions(
            session,
            collection_id,
            clustering_version=version,
            router_version=None,
            recall_table=_stamped(recall_table, version, None),
        )
    return version


def load_clustering(session: Session, collection_id: int, version: int) -> Clustering:
    row = session.execute(
        select(ClusteringRow, Collection.metric)
        .join(Collection, Collection.id == ClusteringRow.collection_id)
        .where(ClusteringRow.collection_id == collection_id, ClusteringRow.version == version)
    ).one()
    clustering_row, metric = row
    arrays = unpack_arrays(clustering_row.arrays)
    return Clustering(
        representatives=arrays["representatives"],
        bias=arrays["bias"],
        algorithm=Algorithm(clustering_row.algorithm),
        metric=Metric(metric),
        version=version,
        params=dict(clustering_row.params or {}),
    )


def clustering_size(session: Session, collection_id: int, version: int) -> int:
    """How many points the clustering was built from (the worker's recluster policy)."""
    stmt = select(ClusteringRow.n_points).where(
        ClusteringRow.collection_id == collection_id, ClusteringRow.version == version
    )
    return int(session.execute(stmt).scalar_one())


def publish_router(
    store: Store,
    collection_id: int,
    router: Router,
    *,
    metrics: dict[str, Any] | None = None,
    activate: bool,
    recall_table: dict[str, Any] | None = None,
) -> int:
    """Store ``router`` as the next router version; if ``activate``, make it the active one.

    ``recall_table`` is the held-out table of whichever routing is active afterwards (the
    new router if activated, else the one serving now, freshly measured); None keeps the
    collection's table.

    Raises ``StaleClusteringError`` when activation is asked for a router whose clustering
    was replaced meanwhile (it would route against lists that no longer exist).
    """
    with store.write() as session:
        next_seq(session)
        active, active_router, table = session.execute(
            select(
                Collection.clustering_version, Collection.router_version, Collection.recall_table
            ).where(Collection.id == collection_id)
        ).one()
        if activate and active != router.clustering_version:
            raise StaleClusteringError(
                f"router trained for clustering {router.clustering_version}, active is {active}"
            )
        version = _next_version(session, RouterRow, collection_id)
        mlp = router.mlp
        session.add(
            RouterRow(
                collection_id=collection_id,
                clustering_version=router.clustering_version,
                version=version,
                kind=str(router.kind),
                arrays=pack_arrays(
                    weights=router.weights,
                    bias=router.bias,
                    hidden_weights=mlp.hidden_weights if mlp else None,
                    hidden_bias=mlp.hidden_bias if mlp else None,
                    output_weights=mlp.output_weights if mlp else None,
                ),
                temperature=router.temperature,
                params=router.params,
                metrics=metrics or {},
                active=activate,
            )
        )
        if activate:
            session.execute(
                update(RouterRow)
                .where(RouterRow.collection_id == collection_id, RouterRow.version != version)
                .values(active=False)
            )
        if activate or recall_table is not None:
            set_active_versions(
                session,
                collection_id,
                clustering_version=active,
                router_version=version if activate else active_router,
                recall_table=table
                if recall_table is None
                else _stamped(recall_table, active, version if activate else active_router),
            )
    return version


def _stamped(
    table: dict[str, Any] | None, clustering_version: int, router_version: int | None
) -> dict[str, Any] | None:
    """The table, stamped with the versions it describes (known only at publish)."""
    if table is None:
        return None
    return table | {"clustering_version": clustering_version, "router_version": router_version}


def load_router(session: Session, collection_id: int, version: int) -> Router:
    row = session.execute(
        select(RouterRow).where(
            RouterRow.collection_id == collection_id, RouterRow.version == version
        )
    ).scalar_one()
    arrays = unpack_arrays(row.arrays)
    mlp = None
    if "hidden_weights" in arrays:
        mlp = MlpTerm(arrays["hidden_weights"], arrays["hidden_bias"], arrays["output_weights"])
    return Router(
        kind=RouterKind(row.kind),
        weights=arrays["weights"],
        bias=arrays.get("bias"),
        clustering_version=row.clustering_version,
        version=version,
        temperature=row.temperature,
        mlp=mlp,
        params=dict(row.params or {}),
    )


@dataclass(frozen=True)
class RouterEvaluation:
    """A stored router version's held-out evidence (what the train-router job measured)."""

    version: int
    kind: str
    active: bool
    metrics: dict[str, Any]
    created_at: datetime


def last_evaluation(
    session: Session, collection_id: int, clustering_version: int
) -> RouterEvaluation | None:
    """The newest router trained for this clustering, activated or not; None if none yet."""
    row = session.execute(
        select(
            RouterRow.version,
            RouterRow.kind,
            RouterRow.active,
            RouterRow.metrics,
            RouterRow.created_at,
        )
        .where(
            RouterRow.collection_id == collection_id,
            RouterRow.clustering_version == clustering_version,
        )
        .order_by(RouterRow.version.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        return None
    version, kind, active, metrics, created_at = row
    return RouterEvaluation(version, kind, bool(active), dict(metrics or {}), as_utc(created_at))


def _next_version(session: Session, model: type[ClusteringRow] | type[RouterRow], cid: int) -> int:
    current = session.execute(
        select(func.max(model.version)).where(model.collection_id == cid)
    ).scalar_one()
    return int(current or 0) + 1
