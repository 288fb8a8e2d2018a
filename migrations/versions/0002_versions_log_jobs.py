"""Clustering and router versions, the query log, and the job queue.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _collection_fk() -> sa.Column:
    return sa.Column(
        "collection_id",
        BigId,
        sa.ForeignKey("collections.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "clusterings",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        _collection_fk(),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("arrays", sa.LargeBinary, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("n_points", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("collection_id", "version"),
    )
    op.create_table(
        "routers",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        _collection_fk(),
        sa.Column("clustering_version", sa.Integer, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("arrays", sa.LargeBinary, nullable=False),
        sa.Column("temperature", sa.Float, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("collection_id", "version"),
    )
    op.create_table(
        "query_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        _collection_fk(),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("k", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_query_log_collection_id", "query_log", ["collection_id", "id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("collection", sa.String(64), nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("error", sa.String, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("worker_id", sa.String(128), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_jobs_status_created", "jobs", ["status", "created_at"])


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("query_log")
    op.drop_table("routers")
    op.drop_table("clusterings")
