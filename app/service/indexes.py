"""How this process builds a collection's index: its codes, where its exact vectors live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.engine.clustering import Clustering
from app.engine.codes import Quantization
from app.engine.exact import ExactStorage
from app.engine.ivf import VectorIndex
from app.engine.metric import Metric
from app.store.collections import CollectionRecord


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
    """The codes the record asks for (stored objects were checked when written)."""
    return Quantization.parse(record.quantization, record.dim)
