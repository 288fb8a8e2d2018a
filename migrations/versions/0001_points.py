"""Collections, points and the write sequence.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("nlist", sa.Integer, nullable=True),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("default_nprobe", sa.Integer, nullable=True),
        sa.Column("clustering_version", sa.Integer, nullable=True),
        sa.Column("router_version", sa.Integer, nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "points",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "collection_id",
            BigId,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("external_id", sa.String(256), nullable=False),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("payload", sa.JSON, nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.UniqueConstraint("collection_id", "external_id", name="uq_points_collection_external"),
    )
    op.create_index("ix_points_collection_seq", "points", ["collection_id", "seq"])
    op.create_index("ix_points_seq", "points", ["seq"])
    op.create_table(
        "write_seq",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO write_seq (id, value) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table("write_seq")
    op.drop_table("points")
    op.drop_table("collections")
