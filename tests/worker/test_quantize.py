"""The quantize job re-clusters a collection into the list count its new kind prefers,
unless the collection names its own; builds take the recorded kind's count."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.codes import Quantization, preferred_nlist
from app.store.collections import get_collection
from app.store.db import Store
from app.store.versions import load_clustering
from tests.worker.collections import DIM, N, stored_collection
from worker.build import run_build
from worker.quantize import run_quantize

PQ = {"kind": "pq"}


def _clustering_lists(store: Store) -> tuple[int, int]:
    """(clustering version, its list count) of the collection now."""
    with store.read() as session:
        record = get_collection(session, "c")
        assert record is not None and record.clustering_version is not None
        clustering = load_clustering(session, record.id, record.clustering_version)
    return record.clustering_version, clustering.nlist


def test_a_kind_preferring_other_lists_reclusters_before_its_codes_are_recorded(
    store: Store,
) -> None:
    stored_collection(store)
    run_build(store, "c", {"nlist": 20}, lambda _: None)  # far from what pq prefers
    before, _ = _clustering_lists(store)
    seen: list[float] = []

    result = run_quantize(store, "c", {"quantization": PQ}, seen.append)

    version, nlist = _clustering_lists(store)
    wanted = preferred_nlist(Quantization.parse(PQ, DIM), N)
    assert wanted == round(np.sqrt(N)) and nlist == wanted
    assert version == result["reclustered_version"] and version > before
    assert seen == sorted(seen) and seen[-1] <= 1
    with store.read() as session:
        record = get_collection(session, "c")
        assert record is not None and record.quantization == {"kind": "pq", "m": DIM // 4}


def test_a_clustering_near_the_preferred_lists_is_kept(store: Store) -> None:
    stored_collection(store)
    run_build(store, "c", {"nlist": 40}, lambda _: None)  # within 2x of sqrt(3000) = 55
    before = _clustering_lists(store)
    result = run_quantize(store, "c", {"quantization": PQ}, lambda _: None)
    assert result["reclustered_version"] is None and _clustering_lists(store) == before


def test_a_collection_naming_its_lists_keeps_them_whatever_the_kind(store: Store) -> None:
    stored_collection(store, nlist=20)
    run_build(store, "c", {}, lambda _: None)
    before = _clustering_lists(store)
    assert before[1] == 20
    result = run_quantize(store, "c", {"quantization": PQ}, lambda _: None)
    assert result["reclustered_version"] is None and _clustering_lists(store) == before


@pytest.mark.parametrize(("quantization", "root"), [(None, 4), (PQ, 1), ({"kind": "sq8"}, 4)])
def test_a_build_takes_the_list_count_of_the_recorded_kind(
    store: Store, quantization: dict | None, root: int
) -> None:
    stored_collection(store, quantization)
    result = run_build(store, "c", {}, lambda _: None)
    assert result["nlist"] == min(round(root * np.sqrt(N)), N // 39)
