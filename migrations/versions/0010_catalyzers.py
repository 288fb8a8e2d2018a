"""Paper 003's catalyzers: the trained transform of a catalyzer-kind collection (issue 15).

``catalyzers`` holds immutable versions of the weights (npz bytes, ``Catalyzer.to_bytes``);
``collections.catalyzer_version`` names the one the lists are coded with, so every API
process and replica loads the same catalyzer. Null: no catalyzer (any other kind, or a
catalyzer kind the worker has not trained yet: float lists).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "catalyzers",
        sa.Column("id", _BIG_ID, primary_key=True, autoincrement=True),
        sa.Column(
            "collection_id",
            _BIG_ID,
            sa.ForeignKey("collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("weights", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("collection_id", "version"),
    )
    with op.batch_alter_table("collections") as batch:
        batch.add_column(sa.Column("catalyzer_version", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("catalyzer_version")
    op.drop_table("catalyzers")
