"""Typed SQLAlchemy models; the Alembic migrations in ``migrations/`` create the same schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid); PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(t: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class Collection(Base):
    __tablename__ = "collections"
    # Ids are never reused (SQLite would reuse a deleted newest row's id without it).
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    dim: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(16))
    nlist: Mapped[int | None] = mapped_column(Integer, nullable=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    default_nprobe: Mapped[int | None] = mapped_column(Integer, nullable=True)
    clustering_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    router_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Held-out recall against nprobe of the active routing (engine.recall_table), or None.
    recall_table: Mapped[Any] = mapped_column(JSON, nullable=True)
    # Declared payload indexes, {key: "keyword" | "integer" | "float" | "bool"}, or None.
    payload_indexes: Mapped[Any] = mapped_column(JSON, nullable=True)
    # What the IVF lists hold, the API's object ({"kind": "pq", "m": 96}); None: float32.
    quantization: Mapped[Any] = mapped_column(JSON, nullable=True)
    # The catalyzer the lists of a catalyzer kind are coded with (catalyzers.version).
    catalyzer_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Counters kept in the transaction of every write (app/store/counters.py), so the
    # worker's policy reads them instead of counting rows.
    live_points: Mapped[int] = mapped_column(BigInteger, server_default="0")
    logged_queries: Mapped[int] = mapped_column(BigInteger, server_default="0")
    queries_appended: Mapped[int] = mapped_column(BigInteger, server_default="0")


class Point(Base):
    __tablename__ = "points"
    __table_args__ = (
        UniqueConstraint("collection_id", "external_id", name="uq_points_collection_external"),
        Index("ix_points_collection_seq", "collection_id", "seq"),
        Index("ix_points_seq", "seq"),
        # With ``deleted``: a list's live points are counted from the index alone.
        Index("ix_points_list_live", "collection_id", "list_version", "list_no", "deleted"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(256))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    payload: Mapped[Any] = mapped_column(JSON, nullable=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # The vector's IVF list under clustering ``list_version`` (migration 0011): a shard
    # replica reads only its lists' rows. Null before any clustering.
    list_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    list_no: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ClusteringRow(Base):
    __tablename__ = "clusterings"
    __table_args__ = (UniqueConstraint("collection_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    algorithm: Mapped[str] = mapped_column(String(16))
    arrays: Mapped[bytes] = mapped_column(LargeBinary)
    params: Mapped[Any] = mapped_column(JSON, default=dict)
    n_points: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CatalyzerRow(Base):
    """Paper 003's trained catalyzer, immutable per version (``Catalyzer.to_bytes``)."""

    __tablename__ = "catalyzers"
    __table_args__ = (UniqueConstraint("collection_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    weights: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CodebookRow(Base):
    """A trained, empty code IVF (``codes.codebook_bytes``), immutable per (collection,
    clustering version, quantization key): every process codes its lists with it."""

    __tablename__ = "codebooks"
    __table_args__ = (UniqueConstraint("collection_id", "clustering_version", "quantization"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    clustering_version: Mapped[int] = mapped_column(Integer)
    quantization: Mapped[str] = mapped_column(String(64))
    codebook: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RouterRow(Base):
    __tablename__ = "routers"
    __table_args__ = (UniqueConstraint("collection_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    clustering_version: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    arrays: Mapped[bytes] = mapped_column(LargeBinary)
    temperature: Mapped[float] = mapped_column(Float, default=1.0)
    params: Mapped[Any] = mapped_column(JSON, default=dict)
    metrics: Mapped[Any] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PlacementRow(Base):
    """Which shard holds each list of one clustering (issue 19); one active per collection."""

    __tablename__ = "placements"
    __table_args__ = (UniqueConstraint("collection_id", "epoch"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)
    clustering_version: Mapped[int] = mapped_column(Integer)
    shards: Mapped[int] = mapped_column(Integer)
    replicas: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(16))
    shard_of: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EmulatorRow(Base):
    """Paper 002's emulator (app/engine/emulator.py); the newest version serves."""

    __tablename__ = "emulators"
    __table_args__ = (UniqueConstraint("collection_id", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    clustering_version: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)
    # Every point written at or before this seq was seen by training; later ones are fresh.
    trained_seq: Mapped[int] = mapped_column(BigInteger)
    arrays: Mapped[bytes] = mapped_column(LargeBinary)
    params: Mapped[Any] = mapped_column(JSON, nullable=True)
    metrics: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=utcnow, nullable=True
    )


class QueryLogRow(Base):
    __tablename__ = "query_log"
    __table_args__ = (Index("ix_query_log_collection_id", "collection_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    k: Mapped[int] = mapped_column(Integer)
    # 1, 2, ... per collection in id order: queries since one = queries_appended - its ordinal.
    ordinal: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    collection: Mapped[str | None] = mapped_column(String(64), nullable=True)
    params: Mapped[Any] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(String, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    worker_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WriteSeq(Base):
    """One row: the store's write sequence; its row lock serialises writers (see seq.py)."""

    __tablename__ = "write_seq"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
