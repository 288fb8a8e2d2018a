"""Collection rows: create, read, delete, and point them at new clustering/router versions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.store.codebooks import NewCodebook, add_codebook
from app.store.db import Store
from app.store.models import CatalyzerRow, Collection, as_utc
from app.store.seq import next_seq


@dataclass(frozen=True)
class CollectionRecord:
    """A detached copy of a collection row, safe to share between threads."""

    id: int
    name: str
    dim: int
    metric: str
    nlist: int | None
    algorithm: str
    default_nprobe: int | None
    clustering_version: int | None
    router_version: int | None
    recall_table: dict[str, Any] | None
    payload_indexes: dict[str, str]
    quantization: dict[str, Any] | None  # None: {"kind": "none"}
    catalyzer_version: int | None  # the catalyzer of a catalyzer kind, once trained
    seq: int
    created_at: datetime

    @classmethod
    def of(cls, row: Collection) -> CollectionRecord:
        return cls(
            id=row.id,
            name=row.name,
            dim=row.dim,
            metric=row.metric,
            nlist=row.nlist,
            algorithm=row.algorithm,
            default_nprobe=row.default_nprobe,
            clustering_version=row.clustering_version,
            router_version=row.router_version,
            recall_table=row.recall_table,
            payload_indexes=dict(row.payload_indexes or {}),
            quantization=dict(row.quantization) if row.quantization else None,
            catalyzer_version=row.catalyzer_version,
            seq=row.seq,
            created_at=as_utc(row.created_at),
        )


def create_collection(
    store: Store,
    *,
    name: str,
    dim: int,
    metric: str,
    nlist: int | None,
    algorithm: str,
    default_nprobe: int | None = None,
    payload_indexes: dict[str, str] | None = None,
    quantization: dict[str, Any] | None = None,
) -> CollectionRecord | None:
    """The new collection, or None if the name is taken."""
    try:
        with store.write() as session:
            row = Collection(
                name=name,
                dim=dim,
                metric=metric,
                nlist=nlist,
                algorithm=algorithm,
                default_nprobe=default_nprobe,
                payload_indexes=payload_indexes or None,
                quantization=quantization,
                seq=next_seq(session),
            )
            session.add(row)
            session.flush()
            return CollectionRecord.of(row)
    except IntegrityError:
        return None


def delete_collection(store: Store, name: str) -> int | None:
    """The write seq of the deletion, or None if there was no such collection."""
    with store.write() as session:
        seq = next_seq(session)  # first, like every writer: one lock order, no deadlocks
        found = session.execute(
            delete(Collection).where(Collection.name == name).returning(Collection.id)
        ).first()
        return seq if found is not None else None


def get_collection(session: Session, name: str) -> CollectionRecord | None:
    row = session.execute(select(Collection).where(Collection.name == name)).scalar_one_or_none()
    return CollectionRecord.of(row) if row else None


def list_collections(session: Session) -> list[CollectionRecord]:
    rows = session.execute(select(Collection).order_by(Collection.name)).scalars()
    return [CollectionRecord.of(r) for r in rows]


def set_active_versions(
    session: Session,
    collection_id: int,
    *,
    clustering_version: int | None,
    router_version: int | None,
    recall_table: dict[str, Any] | None,
) -> int:
    """Point the collection at new versions and the recall table of the routing they make.

    Replicas notice through the write seq.
    """
    seq = next_seq(session)
    session.execute(
        update(Collection)
        .where(Collection.id == collection_id)
        .values(
            clustering_version=clustering_version,
            router_version=router_version,
            recall_table=recall_table,
            seq=seq,
        )
    )
    return seq


def set_payload_indexes(store: Store, name: str, fields: dict[str, str]) -> int | None:
    """Declare the collection's payload indexes (replacing the previous set).

    Returns the write seq (replicas notice through it), or None if there is no such collection.
    """
    with store.write() as session:
        seq = next_seq(session)
        found = session.execute(
            update(Collection)
            .where(Collection.name == name)
            .values(payload_indexes=fields or None, seq=seq)
            .returning(Collection.id)
        ).first()
        return seq if found is not None else None


def set_quantization(
    store: Store,
    name: str,
    quantization: dict[str, Any] | None,
    catalyzer: bytes | None = None,
    codebook: NewCodebook | None = None,
) -> int | None:
    """Record what the collection's lists should hold (None: float32) and, for a catalyzer
    kind, a new version of its catalyzer's weights, or the codebook trained for a clustering
    version (``codebook``), in one transaction; API
    processes rebuild their index when they catch up with the write seq. None if no such
    collection."""
    with store.write() as session:
        seq = next_seq(session)
        collection_id = session.execute(
            select(Collection.id).where(Collection.name == name)
        ).scalar_one_or_none()
        if collection_id is None:
            return None
        version = None
        if catalyzer is not None:
            newest = session.execute(
                select(func.max(CatalyzerRow.version)).where(
                    CatalyzerRow.collection_id == collection_id
                )
            ).scalar_one()
            version = (newest or 0) + 1
            session.add(
                CatalyzerRow(collection_id=collection_id, version=version, weights=catalyzer)
            )
        if codebook is not None:
            assert codebook.clustering_version is not None
            add_codebook(
                session, collection_id, codebook.clustering_version, codebook.key, codebook.codebook
            )
        session.execute(
            update(Collection)
            .where(Collection.id == collection_id)
            .values(quantization=quantization, catalyzer_version=version, seq=seq)
        )
        return seq
