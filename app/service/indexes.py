"""How this process builds a collection's index: its codes, where its exact vectors live;
or, for a collection its shards serve, the routing-only index (no vectors) from the store."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.orm import Session

from app.engine.clustering import Clustering
from app.engine.codes import CATALYZER_KINDS, Quantization
from app.engine.exact import ExactStorage
from app.engine.ivf import VectorIndex
from app.engine.metric import Metric, prepare
from app.engine.routing_index import RoutingIndex
from app.store.codebooks import load_codes
from app.store.collections import CollectionRecord
from app.store.point_lists import iter_point_lists


@dataclass(frozen=True)
class IndexFactory:
    """``exact_storage``/``exact_dir``: the process's setting for compressed kinds' vectors."""

    exact_storage: ExactStorage = ExactStorage.FLOAT32
    exact_dir: Path | None = None

    def new(
        self,
        record: CollectionRecord,
        clustering: Clustering | None = None,
        codes: Quantization | None = None,
    ) -> VectorIndex:
        """``codes``: the record's with what the store holds for them (``stored_codes``);
        default: the description alone (codebooks trained here, float lists until a
        catalyzer kind's catalyzer is attached)."""
        return VectorIndex(
            record.dim,
            Metric(record.metric),
            clustering,
            codes or quantization_of(record),
            self.exact_storage,
            self.exact_dir,
        )


def routing_index(
    session: Session, record: CollectionRecord, clustering: Clustering
) -> RoutingIndex:
    """Every live point's list under ``clustering``: the store's labels, and the vectors
    only of rows not labelled for it (assigned here, then dropped)."""
    metric = Metric(record.metric)
    index = RoutingIndex(record.dim, metric, clustering)
    index.quantization = quantization_of(record)  # until the shards say what they hold
    for ids, lists, unlabelled in iter_point_lists(
        session, record.id, clustering.version, record.dim
    ):
        if len(unlabelled):
            lists[lists < 0] = clustering.assign(prepare(unlabelled, metric, record.dim))
        index.place(ids, lists)
    return index


def quantization_of(record: CollectionRecord) -> Quantization:
    """The codes the record asks for (stored objects were checked when written), without
    a catalyzer: a new index of a catalyzer kind starts as float lists."""
    return Quantization.parse(record.quantization, record.dim)


def wanted_codes(
    session: Session, record: CollectionRecord, current: Quantization
) -> Quantization | None:
    """The codes to rebuild with when they differ from ``current`` (their description, the
    catalyzer version, the clustering their stored codebook was trained for), else None;
    the catalyzer or codebook is read from the store only when it changed."""
    if _described(record) == current:
        return None
    wanted = stored_codes(session, record)
    return wanted if wanted != current else None


def stored_codes(session: Session, record: CollectionRecord) -> Quantization:
    """The record's codes with what the store holds for them (``load_codes``): a catalyzer
    kind's catalyzer, the codebook trained for the record's clustering."""
    return load_codes(
        session,
        record.id,
        quantization_of(record),
        record.catalyzer_version,
        record.clustering_version,
    )


def _described(record: CollectionRecord) -> Quantization:
    """What ``stored_codes`` returns, compared by versions (no bytes read), supposing a
    codebook is stored for the record's clustering."""
    wanted = quantization_of(record)
    if wanted.kind in CATALYZER_KINDS and record.catalyzer_version is not None:
        return wanted.with_catalyzer(None, record.catalyzer_version)
    if wanted.stores_codebook and record.clustering_version is not None:
        return replace(wanted, codebook_version=record.clustering_version)
    return wanted
