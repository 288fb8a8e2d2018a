"""Codebooks are trained once, by the job that first needs them, and stored per clustering
and kind; lists built from the stored codebook hold equal codes whatever points they hold."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from app.engine.codes import Quantization
from app.engine.ivf import VectorIndex
from app.engine.metric import Metric
from app.service.indexes import stored_codes
from app.store.codebooks import load_codebook
from app.store.collections import CollectionRecord, get_collection
from app.store.db import Store
from app.store.points import iter_live_points
from app.store.versions import load_clustering
from tests.worker.collections import DIM, stored_collection
from worker.build import run_build
from worker.quantize import run_quantize

SQ8 = {"kind": "sq8"}
PQ = {"kind": "pq"}


def _record(store: Store) -> CollectionRecord:
    with store.read() as session:
        record = get_collection(session, "c")
    assert record is not None and record.clustering_version is not None
    return record


def _stored(store: Store, record: CollectionRecord, raw: dict) -> bytes | None:
    key = Quantization.parse(raw, DIM).key
    assert record.clustering_version is not None
    with store.read() as session:
        return load_codebook(session, record.id, record.clustering_version, key)


def test_the_quantize_job_stores_the_codebook_of_the_clustering_it_keeps(store: Store) -> None:
    stored_collection(store)
    run_build(store, "c", {"nlist": 40}, lambda _: None)
    assert _stored(store, _record(store), SQ8) is None  # float lists: nothing to store
    run_quantize(store, "c", {"quantization": SQ8}, lambda _: None)
    record = _record(store)
    assert _stored(store, record, SQ8) is not None
    with store.read() as session:
        codes = stored_codes(session, record)
    assert codes.codebook is not None and codes.codebook_version == record.clustering_version


def test_builds_of_a_coded_collection_store_the_codebook_of_each_new_clustering(
    store: Store,
) -> None:
    stored_collection(store, PQ)
    run_build(store, "c", {}, lambda _: None)
    first = _record(store)
    assert _stored(store, first, PQ) is not None
    run_build(store, "c", {"nlist": 20}, lambda _: None)  # reclustered: a new codebook
    second = _record(store)
    assert second.clustering_version != first.clustering_version
    assert _stored(store, second, PQ) is not None
    # A quantize job that re-clusters stores the codebook of the new kind for its clustering.
    run_quantize(store, "c", {"quantization": {"kind": "rabitq"}}, lambda _: None)
    third = _record(store)
    assert third.clustering_version != second.clustering_version
    assert _stored(store, third, {"kind": "rabitq"}) is not None


def _codes_by_id(index: VectorIndex) -> dict[int, bytes]:
    ivf: Any = index._state.ivf
    out = {}
    for list_no in range(ivf.nlist):
        size = ivf.invlists.list_size(list_no)
        if not size:
            continue
        ids = faiss.rev_swig_ptr(ivf.invlists.get_ids(list_no), size).copy()
        codes = faiss.rev_swig_ptr(ivf.invlists.get_codes(list_no), size * ivf.code_size)
        rows = np.asarray(codes).reshape(size, ivf.code_size)
        out.update({int(i): rows[r].tobytes() for r, i in enumerate(ids)})
    return out


def test_lists_built_from_the_stored_codebook_hold_equal_codes_whatever_they_hold(
    store: Store,
) -> None:
    stored_collection(store, SQ8)
    run_build(store, "c", {}, lambda _: None)
    record = _record(store)
    with store.read() as session:
        codes = stored_codes(session, record)
        clustering = load_clustering(session, record.id, record.clustering_version or 0)
        blocks = list(iter_live_points(session, record.id, DIM))
    ids, x = np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])
    metric = Metric(record.metric)
    whole = VectorIndex(DIM, metric, clustering, codes)
    whole.upsert(ids, x)
    part = VectorIndex(DIM, metric, clustering, codes)  # e.g. a shard: a few of the points
    few = ids[::7]
    part.upsert(few, x[::7])
    assert whole.coded and part.coded
    assert whole.quantization.codebook_version == record.clustering_version
    held, parted = _codes_by_id(whole), _codes_by_id(part)
    assert sorted(parted) == sorted(few.tolist())
    assert all(parted[i] == held[i] for i in parted)
    # Trained by each index instead, from its own points, the codes differ.
    trained = VectorIndex(DIM, metric, clustering, codes.with_codebook(None, None))
    trained.upsert(few, x[::7])
    assert trained.quantization.codebook_version is None
    retrained = _codes_by_id(trained)
    assert any(retrained[i] != held[i] for i in retrained)
