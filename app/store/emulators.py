"""Emulator versions (paper 002): immutable rows; publishing one is a write replicas see.

The newest version of a collection serves ``routing: "emulator"``. Publishing bumps the
collection's seq in the same transaction, so every API process's catch-up notices it and
loads the new version (``app/service/registry.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.engine.emulator import Emulator
from app.store.arrays import pack_arrays, unpack_arrays
from app.store.db import Store
from app.store.models import Collection, EmulatorRow, Point
from app.store.seq import next_seq


def publish_emulator(
    store: Store, collection_id: int, emulator: Emulator, metrics: dict[str, Any]
) -> int:
    """Store ``emulator`` as the collection's next (and serving) version; returns it."""
    with store.write() as session:
        seq = next_seq(session)
        current = session.execute(
            select(func.max(EmulatorRow.version)).where(EmulatorRow.collection_id == collection_id)
        ).scalar_one()
        version = int(current or 0) + 1
        session.add(
            EmulatorRow(
                collection_id=collection_id,
                clustering_version=emulator.clustering_version,
                version=version,
                trained_seq=emulator.trained_seq,
                arrays=pack_arrays(**emulator.to_arrays()),
                params=emulator.params,
                metrics=metrics,
            )
        )
        session.execute(update(Collection).where(Collection.id == collection_id).values(seq=seq))
    return version


def newest_emulator_version(session: Session, collection_id: int) -> int | None:
    stmt = select(func.max(EmulatorRow.version)).where(EmulatorRow.collection_id == collection_id)
    found = session.execute(stmt).scalar_one()
    return int(found) if found is not None else None


def load_emulator(session: Session, collection_id: int, version: int) -> Emulator:
    row = session.execute(
        select(EmulatorRow).where(
            EmulatorRow.collection_id == collection_id, EmulatorRow.version == version
        )
    ).scalar_one()
    return Emulator.from_arrays(
        unpack_arrays(row.arrays),
        dict(row.params or {}),
        clustering_version=row.clustering_version,
        trained_seq=int(row.trained_seq),
        version=version,
    )


def written_since(session: Session, collection_id: int, seq: int) -> np.ndarray:
    """Internal ids of the live points written after ``seq`` (the emulator never saw them)."""
    stmt = select(Point.id).where(
        Point.collection_id == collection_id, Point.seq > seq, Point.deleted.is_(False)
    )
    return np.fromiter(session.execute(stmt).scalars(), dtype=np.int64)
