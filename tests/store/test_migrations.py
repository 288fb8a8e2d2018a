"""The schema from the migrations equals the models, fresh and upgraded step by step."""

from __future__ import annotations

from datetime import datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, select

from app.store import counters
from app.store.collections import get_collection
from app.store.db import Store
from app.store.migrate import current_revision, upgrade
from app.store.models import Base, Collection, Point, QueryLogRow, WriteSeq

HEAD = "0013"


def _diff(store: Store) -> list:
    with store.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_fresh_database_reaches_head_matching_the_models(database_url: str) -> None:
    store = Store(database_url)
    upgrade(store)
    assert current_revision(store) == HEAD
    assert _diff(store) == []
    upgrade(store)  # idempotent: a second start-up changes nothing
    store.dispose()


def test_upgrade_from_previous_revision_keeps_data(database_url: str) -> None:
    store = Store(database_url)
    upgrade(store, "0001")
    assert current_revision(store) == "0001"
    with store.write() as s:
        s.execute(
            insert(Collection).values(
                id=1,
                name="old",
                dim=2,
                metric="ip",
                algorithm="kmeans",
                seq=1,
                created_at=datetime(2026, 1, 1),
            )
        )
        s.execute(
            insert(Point).values(
                collection_id=1, external_id="a", vector=b"\0" * 8, seq=1, deleted=False
            )
        )
    upgrade(store)
    assert current_revision(store) == HEAD
    assert _diff(store) == []
    with store.read() as s:
        assert s.execute(select(Point.external_id)).scalars().all() == ["a"]
        assert s.execute(select(WriteSeq.value)).scalar_one() == 0
        old = get_collection(s, "old")
        assert old is not None and old.payload_indexes == {}
    store.dispose()


def test_upgrade_backfills_the_counters(database_url: str) -> None:
    store = Store(database_url)
    upgrade(store, "0004")
    with store.write() as s:
        for cid in (1, 2):
            s.execute(
                insert(Collection).values(
                    id=cid, name=f"c{cid}", dim=2, metric="ip", algorithm="kmeans", seq=1
                )
            )
        s.execute(
            insert(Point),
            [
                {"collection_id": 1, "external_id": e, "vector": b"\0" * 8, "seq": 1, "deleted": d}
                for e, d in (("a", False), ("b", True), ("c", False))
            ],
        )
        s.execute(
            insert(QueryLogRow),
            [{"collection_id": cid, "vector": b"\0" * 8, "k": 10} for cid in (2, 1, 2, 2)],
        )
    upgrade(store)
    with store.read() as s:
        assert counters.read(s, 1) == counters.Counters(2, 1, 1)
        assert counters.read(s, 2) == counters.Counters(0, 3, 3)
        ordinals = s.execute(
            select(QueryLogRow.collection_id, QueryLogRow.ordinal).order_by(QueryLogRow.id)
        ).all()
        assert [tuple(r) for r in ordinals] == [(2, 1), (1, 1), (2, 2), (2, 3)]
    store.dispose()
