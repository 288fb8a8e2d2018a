"""Stored codebooks: the trained, empty code IVF of a collection per clustering and kind.

``codebooks`` holds one immutable row per (collection, clustering version, quantization
key), written by whoever trains it first (the worker's quantize or build job); every API
process and shard replica codes its lists with it, so codes are equal everywhere. A
collection without one (data written before this revision) trains its codebooks per
process, as before.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "codebooks",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column(
            "collection_id",
            _BIG_ID,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("clustering_version", sa.Integer, nullable=False),
        sa.Column("quantization", sa.String(64), nullable=False),
        sa.Column("codebook", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("collection_id", "clustering_version", "quantization"),
    )


def downgrade() -> None:
    op.drop_table("codebooks")
