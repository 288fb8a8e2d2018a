"""A collection's id is never reused: SQLite's ``collections`` gets AUTOINCREMENT.

Without it SQLite hands a new row the largest id + 1, so a collection created after the
newest one was deleted got the deleted one's id, and with it whatever still carried that id
(buffered logged queries, a snapshot). PostgreSQL's sequence never reuses ids: nothing to do.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # The table is rebuilt (copy, drop, rename): app.store.migrate turns SQLite's foreign
    # keys off meanwhile, else dropping the old table would cascade to every point.
    with op.batch_alter_table(
        "collections", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("collections", recreate="always"):
        pass
