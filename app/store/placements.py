"""Placements of sharded collections, by epoch: stored first, activated once served.

Rebalancing (a new placement, or a new clustering) stores the new placement inactive,
builds its shard replicas from the store, then activates it: one write transaction that
deactivates the old epoch, activates the new one and bumps the collection's ``seq``, so
every API process (the coordinators) notices it through the change sequence, as it
notices a new clustering. The old epoch's replicas are drained after the switch.

Epoch 0 is a sharded collection's request (``request_shards``): its shards and replicas,
stored when it is created, before any clustering exists to place (no lists, never active).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.cluster.placement import Placement
from app.store.arrays import pack_arrays, unpack_arrays
from app.store.db import Store
from app.store.models import Collection, PlacementRow
from app.store.seq import next_seq


class UnknownPlacement(LookupError):
    """No placement of that epoch for that collection."""


def save_placement(
    store: Store, collection_id: int, clustering_version: int, placement: Placement, replicas: int
) -> int:
    """Store ``placement`` (inactive) as the collection's next epoch; returns the epoch."""
    if replicas < 1:
        raise ValueError("replicas must be at least 1")
    with store.write() as session:
        next_seq(session)
        last = session.execute(
            select(func.max(PlacementRow.epoch)).where(PlacementRow.collection_id == collection_id)
        ).scalar_one()
        epoch = 1 if last is None else int(last) + 1
        session.add(
            PlacementRow(
                collection_id=collection_id,
                epoch=epoch,
                clustering_version=clustering_version,
                shards=placement.shards,
                replicas=replicas,
                method=placement.method,
                shard_of=pack_arrays(shard_of=placement.shard_of),
                active=False,
            )
        )
    return epoch


REQUESTED = "requested"


def request_shards(store: Store, collection_id: int, shards: int, replicas: int) -> None:
    """Record that ``collection_id`` is served by ``shards`` x ``replicas`` (epoch 0)."""
    if shards < 1 or replicas < 1:
        raise ValueError("shards and replicas must be at least 1")
    with store.write() as session:
        next_seq(session)
        session.add(
            PlacementRow(
                collection_id=collection_id,
                epoch=0,
                clustering_version=0,
                shards=shards,
                replicas=replicas,
                method=REQUESTED,
                shard_of=pack_arrays(shard_of=np.zeros(0, np.int64)),
                active=False,
            )
        )


def requested_shards(session: Session) -> dict[int, tuple[int, int]]:
    """Every sharded collection's (shards, replicas), by collection id."""
    rows = session.execute(
        select(PlacementRow.collection_id, PlacementRow.shards, PlacementRow.replicas).where(
            PlacementRow.epoch == 0
        )
    )
    return {int(cid): (int(shards), int(replicas)) for cid, shards, replicas in rows}


def activate_placement(store: Store, collection_id: int, epoch: int) -> int:
    """Make ``epoch`` the serving placement (the previous one stops); returns the write seq."""
    with store.write() as session:
        seq = next_seq(session)
        exists = session.execute(
            select(PlacementRow.id).where(
                PlacementRow.collection_id == collection_id, PlacementRow.epoch == epoch
            )
        ).scalar_one_or_none()
        if exists is None:
            raise UnknownPlacement(f"collection {collection_id} has no placement epoch {epoch}")
        session.execute(
            update(PlacementRow)
            .where(PlacementRow.collection_id == collection_id)
            .values(active=PlacementRow.epoch == epoch)
        )
        session.execute(update(Collection).where(Collection.id == collection_id).values(seq=seq))
    return seq


def load_placement(session: Session, collection_id: int, epoch: int) -> tuple[Placement, int]:
    """The placement of ``epoch`` and its replicas per shard."""
    row = session.execute(
        select(PlacementRow).where(
            PlacementRow.collection_id == collection_id, PlacementRow.epoch == epoch
        )
    ).scalar_one_or_none()
    if row is None:
        raise UnknownPlacement(f"collection {collection_id} has no placement epoch {epoch}")
    return _of(row), row.replicas


def active_placement(session: Session, collection_id: int) -> tuple[Placement, int, int] | None:
    """(placement, replicas, clustering version) serving now, or None (not sharded yet)."""
    row = session.execute(
        select(PlacementRow).where(
            PlacementRow.collection_id == collection_id, PlacementRow.active.is_(True)
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    return _of(row), row.replicas, row.clustering_version


def _of(row: PlacementRow) -> Placement:
    shard_of = unpack_arrays(row.shard_of)["shard_of"]
    return Placement(shard_of, row.shards, epoch=row.epoch, method=row.method)
