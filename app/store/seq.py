"""The store's write sequence.

Every write transaction takes the next number with ``UPDATE ... SET value = value + 1
RETURNING value``. The row lock it takes is held until commit, so writers are serialised
and sequence order equals commit order: a replica that has seen number N and then reads
``seq > N`` can never miss a write that commits later with a lower number (a plain SQL
SEQUENCE would allow exactly that).
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.store.models import WriteSeq

SEQ_ROW = 1


def next_seq(session: Session) -> int:
    """Claim the next write number inside the caller's (write) transaction."""
    stmt = (
        update(WriteSeq)
        .where(WriteSeq.id == SEQ_ROW)
        .values(value=WriteSeq.value + 1)
        .returning(WriteSeq.value)
    )
    return int(session.execute(stmt).scalar_one())


def current_seq(session: Session) -> int:
    """The highest committed write number: every write up to it is visible from now on."""
    return int(session.execute(select(WriteSeq.value).where(WriteSeq.id == SEQ_ROW)).scalar_one())
