"""Counters kept on write, so the worker's policy never counts rows.

``collections`` gains the live points, the logged queries kept and the queries ever logged;
each ``query_log`` row gains its ordinal in its collection (1, 2, ... in id order), so
"queries since training" is the total minus the ordinal of the last query trained on.
Existing rows are backfilled.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COUNTERS = ("live_points", "logged_queries", "queries_appended")


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        for name in _COUNTERS:
            batch.add_column(sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))
    with op.batch_alter_table("query_log") as batch:
        batch.add_column(sa.Column("ordinal", sa.BigInteger, nullable=False, server_default="0"))
    op.execute(
        "UPDATE query_log SET ordinal = r.n FROM (SELECT id, ROW_NUMBER() OVER "
        "(PARTITION BY collection_id ORDER BY id) AS n FROM query_log) AS r "
        "WHERE r.id = query_log.id"
    )
    op.execute(
        "UPDATE collections SET "
        "live_points = (SELECT COUNT(*) FROM points p "
        "WHERE p.collection_id = collections.id AND NOT p.deleted), "
        "logged_queries = (SELECT COUNT(*) FROM query_log q "
        "WHERE q.collection_id = collections.id), "
        "queries_appended = (SELECT COALESCE(MAX(q.ordinal), 0) FROM query_log q "
        "WHERE q.collection_id = collections.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("query_log") as batch:
        batch.drop_column("ordinal")
    with op.batch_alter_table("collections") as batch:
        for name in _COUNTERS:
            batch.drop_column(name)
