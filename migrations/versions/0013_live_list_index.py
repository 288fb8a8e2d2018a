"""``deleted`` joins the list index, so live points per list are counted from the index.

A shard replica sizes each of its lists before it loads them, and the coordinator places
lists by their sizes: both count a list's live points, which with ``(collection_id,
list_version, list_no)`` alone meant reading every row (vector included) for its
``deleted`` flag.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_NAME = "ix_points_collection_list"
_COLUMNS = ["collection_id", "list_version", "list_no"]


def upgrade() -> None:
    op.drop_index(_NAME, "points")
    op.create_index(_NAME, "points", [*_COLUMNS, "deleted"])


def downgrade() -> None:
    op.drop_index(_NAME, "points")
    op.create_index(_NAME, "points", _COLUMNS)
