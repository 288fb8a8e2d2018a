"""Placements of sharded collections: which shard holds each list, by epoch (issue 19).

One row per (collection, epoch): the clustering version it places, the shard of every list
(an ``.npz`` blob), the replicas per shard, how it was built, and whether it is the one
serving. A new placement is stored inactive, its replicas are built, then it is activated
(the old one deactivated) in one write transaction.

Numbered 0009 while 0007/0008 are taken on other branches; it revises 0006, the head of
main when written: renumber and re-chain at merge.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


# As in 0002: SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "placements",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "collection_id",
            BigId,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("clustering_version", sa.Integer, nullable=False),
        sa.Column("shards", sa.Integer, nullable=False),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("shard_of", sa.LargeBinary, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("collection_id", "epoch"),
    )


def downgrade() -> None:
    op.drop_table("placements")
