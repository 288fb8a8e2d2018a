"""The list index holds ``deleted``, so live points per list are counted from it alone.

A shard replica sizes each of its lists before it loads them, and the coordinator places
lists by their sizes: both count a list's live points, which with ``(collection_id,
list_version, list_no)`` alone meant reading every row (vector included) for its
``deleted`` flag. The new index is made before the old one goes, so the table is never
without one (on PostgreSQL, dropping an index locks the table until the transaction ends).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_OLD = "ix_points_collection_list"
_NEW = "ix_points_list_live"
_COLUMNS = ["collection_id", "list_version", "list_no"]


def upgrade() -> None:
    op.create_index(_NEW, "points", [*_COLUMNS, "deleted"])
    op.drop_index(_OLD, "points")


def downgrade() -> None:
    op.create_index(_OLD, "points", _COLUMNS)
    op.drop_index(_NEW, "points")
