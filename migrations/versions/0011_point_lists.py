"""Each point's IVF list under a clustering, so a shard replica reads only its lists (issue 19).

``points.list_no`` is the list the point's current vector falls in under clustering
``points.list_version`` (both null before any clustering). The API process writes them with
every upsert, under the clustering its index holds; a build rewrites them for the new
clustering (rows written meanwhile keep their writer's pair). A pair is always right for
its version, so a reader of another version assigns those rows itself.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("points") as batch:
        batch.add_column(sa.Column("list_version", sa.Integer, nullable=True))
        batch.add_column(sa.Column("list_no", sa.Integer, nullable=True))
    op.create_index(
        "ix_points_collection_list", "points", ["collection_id", "list_version", "list_no"]
    )


def downgrade() -> None:
    op.drop_index("ix_points_collection_list", "points")
    with op.batch_alter_table("points") as batch:
        batch.drop_column("list_no")
        batch.drop_column("list_version")
