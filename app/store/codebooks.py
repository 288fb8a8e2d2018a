"""Stored codebooks: a collection's trained, empty code IVF per clustering version and
quantization key (``codes.codebook_bytes``), immutable once written; the first writer wins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.engine.catalyzer import Catalyzer
from app.engine.codes import CATALYZER_KINDS, Quantization
from app.store.models import CatalyzerRow, CodebookRow


@dataclass(frozen=True)
class NewCodebook:
    """A codebook to store with a clustering or a quantization (its version: the clustering
    it was trained for; None when it is stored with that clustering's publication)."""

    key: str  # ``Quantization.key``
    codebook: bytes
    clustering_version: int | None = None


def add_codebook(
    session: Session, collection_id: int, clustering_version: int, key: str, codebook: bytes
) -> bool:
    """Store the codebook unless one is stored for the same triple; whether this one was.

    Two jobs training the same codebook at once: one row stays, and both describe codes
    of the same kind for the same lists, so either serves."""
    stored = session.execute(
        select(CodebookRow.id).where(*_triple(collection_id, clustering_version, key))
    ).first()
    if stored is not None:  # its id only: a codebook can be megabytes
        return False
    try:
        with session.begin_nested():
            session.add(
                CodebookRow(
                    collection_id=collection_id,
                    clustering_version=clustering_version,
                    quantization=key,
                    codebook=codebook,
                )
            )
    except IntegrityError:
        return False
    return True


def load_codebook(
    session: Session, collection_id: int, clustering_version: int, key: str
) -> bytes | None:
    """The stored codebook, or None (none trained yet, or data older than stored codebooks)."""
    return session.execute(
        select(CodebookRow.codebook).where(*_triple(collection_id, clustering_version, key))
    ).scalar_one_or_none()


def _triple(collection_id: int, clustering_version: int, key: str) -> tuple[Any, ...]:
    """The conditions naming one stored codebook (unique per triple)."""
    return (
        CodebookRow.collection_id == collection_id,
        CodebookRow.clustering_version == clustering_version,
        CodebookRow.quantization == key,
    )


def load_codes(
    session: Session,
    collection_id: int,
    wanted: Quantization,
    catalyzer_version: int | None,
    clustering_version: int | None,
) -> Quantization:
    """``wanted`` with what the store holds for it: a catalyzer kind's catalyzer of
    ``catalyzer_version``, else the codebook trained for ``clustering_version`` (none
    stored: without, and whoever builds the lists trains its own)."""
    if wanted.kind in CATALYZER_KINDS:
        if catalyzer_version is None:
            return wanted
        weights = session.execute(
            select(CatalyzerRow.weights).where(
                CatalyzerRow.collection_id == collection_id,
                CatalyzerRow.version == catalyzer_version,
            )
        ).scalar_one()
        return wanted.with_catalyzer(Catalyzer.from_bytes(weights), catalyzer_version)
    if wanted.stores_codebook and clustering_version is not None:
        codebook = load_codebook(session, collection_id, clustering_version, wanted.key)
        return wanted.with_codebook(codebook, clustering_version)
    return wanted
