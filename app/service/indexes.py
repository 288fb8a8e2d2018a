"""How this process builds a collection's index: its codes, where its exact vectors live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from app.engine.catalyzer import Catalyzer
from app.engine.clustering import Clustering
from app.engine.codes import CATALYZER_KINDS, Quantization
from app.engine.exact import ExactStorage
from app.engine.ivf import VectorIndex
from app.engine.metric import Metric
from app.store.collections import CollectionRecord, load_catalyzer


@dataclass(frozen=True)
class IndexFactory:
    """``exact_storage``/``exact_dir``: the process's setting for compressed kinds' vectors."""

    exact_storage: ExactStorage = ExactStorage.FLOAT32
    exact_dir: Path | None = None

    def new(self, record: CollectionRecord, clustering: Clustering | None = None) -> VectorIndex:
        return VectorIndex(
            record.dim,
            Metric(record.metric),
            clustering,
            quantization_of(record),
            self.exact_storage,
            self.exact_dir,
        )


def quantization_of(record: CollectionRecord) -> Quantization:
    """The codes the record asks for (stored objects were checked when written), without
    a catalyzer: a new index of a catalyzer kind starts as float lists."""
    return Quantization.parse(record.quantization, record.dim)


def wanted_codes(
    session: Session, record: CollectionRecord, current: Quantization
) -> Quantization | None:
    """The codes to rebuild with when they differ from ``current``, else None; a catalyzer
    kind's catalyzer is read from the store (only when it changed: a few MB)."""
    wanted = quantization_of(record)
    version = record.catalyzer_version if wanted.kind in CATALYZER_KINDS else None
    if version is None:
        return wanted if wanted != current else None
    if wanted.with_catalyzer(None, version) == current:
        return None
    catalyzer = Catalyzer.from_bytes(load_catalyzer(session, record.id, version))
    return wanted.with_catalyzer(catalyzer, version)
