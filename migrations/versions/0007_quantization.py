"""Each collection's quantization: what its IVF lists hold (issue 15).

``collections.quantization`` is the API's object (``{"kind": "pq", "m": 96}``); null means
``{"kind": "none"}``, float32 lists, as every collection had before.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.add_column(sa.Column("quantization", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("quantization")
