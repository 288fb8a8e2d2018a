"""Filter views: bought once their rent pays for the copy, only ever used for their exact
state, bounded by bytes; filtered search over a view returns what the selector returns."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from app.engine.allowed import AllowedIds
from app.engine.clustering import Algorithm, train_clustering
from app.engine.filtered import Plan, filtered_search
from app.engine.filters import Filter, parse_filter
from app.engine.ivf import VectorIndex
from app.engine.metric import Metric, prepare
from app.engine.payload_index import PayloadIndex
from app.engine.views import FilterViews
from tests.engine.conftest import brute_force

K = 10
NLIST = 16
# More than any copy of these small indexes costs: charging it makes a view due at once.
DUE = 60.0


def bucket_below(share: float) -> Filter:
    return parse_filter({"must": [{"key": "bucket", "range": {"lt": 100 * share}}]})


@pytest.fixture
def collection(random_vectors: np.ndarray) -> tuple[VectorIndex, PayloadIndex]:
    """The random vectors under ids 0.. with ``bucket`` uniform in [0, 100)."""
    clustering = train_clustering(
        prepare(random_vectors, Metric.IP), NLIST, Algorithm.KMEANS, Metric.IP, seed=1
    )
    index = VectorIndex(random_vectors.shape[1], Metric.IP, clustering)
    index.upsert(np.arange(len(random_vectors)), random_vectors)
    buckets = np.random.default_rng(5).integers(0, 100, len(random_vectors)).tolist()
    payloads = PayloadIndex.build({"bucket": "integer"}, enumerate({"bucket": b} for b in buckets))
    return index, payloads


def same_vectors(index: VectorIndex, x: np.ndarray) -> VectorIndex:
    """Another index of the same clustering holding ``x`` under ids 0.."""
    other = VectorIndex(index.dim, Metric.IP, index.clustering)
    other.upsert(np.arange(len(x)), x)
    return other


def built(views: FilterViews, index: VectorIndex, allowed: AllowedIds) -> VectorIndex | None:
    views.charge(index, allowed, DUE)
    views.wait()
    return views.view(index, allowed)


def test_a_view_is_built_only_once_its_rent_pays_for_the_copy(
    collection: tuple[VectorIndex, PayloadIndex],
) -> None:
    index, payloads = collection
    views = FilterViews(1 << 30)
    allowed = payloads.allowed(bucket_below(0.5))
    views.charge(index, allowed, 1e-9)  # a filter seen once
    views.wait()
    assert views.view(index, allowed) is None and len(views) == 0
    view = built(views, index, allowed)
    assert view is not None and view.count == allowed.count
    assert len(views) == 1 and views.nbytes == view.memory_bytes() > 0


def test_a_filter_every_point_passes_never_earns_a_view(
    collection: tuple[VectorIndex, PayloadIndex],
) -> None:
    """Rent is the time a view would have saved: none when it would hold every vector."""
    index, payloads = collection
    views = FilterViews(1 << 30)
    assert built(views, index, payloads.allowed(bucket_below(1.0))) is None


def test_filtered_search_on_a_view_returns_what_the_selector_returns(
    collection: tuple[VectorIndex, PayloadIndex], random_queries: np.ndarray
) -> None:
    index, payloads = collection
    views = FilterViews(1 << 30)
    for share in (0.5, 0.1, 0.02):
        allowed = payloads.allowed(bucket_below(share))
        assert built(views, index, allowed) is not None
        for plan in (None, Plan.EXACT, Plan.IVF):
            plain = filtered_search(index, random_queries, K, allowed, nprobe=2, plan=plan)
            out = filtered_search(
                index, random_queries, K, allowed, nprobe=2, plan=plan, views=views
            )
            assert out.view and not plain.view
            assert (out.plan, out.nprobe) == (plain.plan, plain.nprobe)
            np.testing.assert_array_equal(out.result.ids, plain.result.ids)
            np.testing.assert_array_equal(out.result.scores, plain.result.scores)


def test_a_write_to_payloads_or_vectors_voids_the_view(
    collection: tuple[VectorIndex, PayloadIndex], random_vectors: np.ndarray
) -> None:
    index, payloads = collection
    views = FilterViews(1 << 30)
    f = bucket_below(0.5)
    assert built(views, index, payloads.allowed(f)) is not None
    payloads.upsert([0], [{"bucket": 1}])
    fresh = payloads.allowed(f)
    assert views.view(index, fresh) is None
    assert built(views, index, fresh) is not None
    index.upsert(np.array([0]), random_vectors[1:2])
    assert views.view(index, payloads.allowed(f)) is None
    index.remove(np.array([0]))
    assert views.view(index, payloads.allowed(f)) is None


def test_forgetting_an_index_drops_its_views(
    collection: tuple[VectorIndex, PayloadIndex], random_vectors: np.ndarray
) -> None:
    index, payloads = collection
    views = FilterViews(1 << 30)
    other = same_vectors(index, random_vectors)
    others = PayloadIndex.build({}, [(i, {"bucket": i % 100}) for i in range(len(random_vectors))])
    f = bucket_below(0.5)
    assert built(views, index, payloads.allowed(f)) is not None
    kept = built(views, other, others.allowed(f))
    assert kept is not None and len(views) == 2
    views.forget(index)
    assert views.view(index, payloads.allowed(f)) is None
    assert views.view(other, others.allowed(f)) is kept and views.nbytes == kept.memory_bytes()


def test_views_serve_only_the_index_they_were_copied_from(
    collection: tuple[VectorIndex, PayloadIndex], random_vectors: np.ndarray
) -> None:
    index, payloads = collection
    views = FilterViews(1 << 30)
    allowed = payloads.allowed(bucket_below(0.5))
    assert built(views, index, allowed) is not None
    other = same_vectors(index, random_vectors)
    assert views.view(other, allowed) is None


def test_the_byte_budget_drops_the_least_recently_used_view(
    collection: tuple[VectorIndex, PayloadIndex],
) -> None:
    index, payloads = collection
    per_point = index.memory_bytes() / index.count
    first, second = (payloads.allowed(bucket_below(s)) for s in (0.3, 0.31))
    budget = int(per_point * (first.count + second.count) * 0.8)
    views = FilterViews(budget)
    assert built(views, index, first) is not None
    assert built(views, index, second) is not None
    assert views.view(index, first) is None and len(views) == 1
    assert 0 < views.nbytes <= budget
    views.charge(index, first, 1e-9)  # evicted, it earns its next copy anew
    views.wait()
    assert views.view(index, first) is None and views.view(index, second) is not None
    too_big = payloads.allowed(bucket_below(0.9))
    assert built(views, index, too_big) is None
    assert views.view(index, second) is not None


def test_no_views_without_a_budget_an_origin_or_after_close(
    collection: tuple[VectorIndex, PayloadIndex],
) -> None:
    index, payloads = collection
    f = bucket_below(0.5)
    assert built(FilterViews(0), index, payloads.allowed(f)) is None
    views = FilterViews(1 << 30)
    assert built(views, index, AllowedIds.from_mask(payloads.matching(f))) is None
    assert built(views, index, payloads.allowed(f)) is not None
    views.close()
    assert views.view(index, payloads.allowed(f)) is None and views.nbytes == 0
    assert built(views, index, payloads.allowed(f)) is None
    with pytest.raises(ValueError):
        FilterViews(-1)


def test_filtered_search_between_writes_is_exact_whatever_views_exist(
    random_vectors: np.ndarray, random_queries: np.ndarray
) -> None:
    """Writes (as a live collection orders them: payloads before an upsert's vectors, after a
    removal's) between repeated filtered searches whose views are built as soon as they can
    be, even between the two halves of a write: every answer is the brute-force answer over
    the points as they are at that moment."""
    rng = np.random.default_rng(11)
    index = VectorIndex(32, Metric.IP, None)
    clustering = train_clustering(
        prepare(random_vectors, Metric.IP), NLIST, Algorithm.KMEANS, Metric.IP, seed=2
    )
    index.set_clustering(clustering)
    payloads = PayloadIndex({"bucket": "integer"})
    views = FilterViews(1 << 30)
    state: dict[int, tuple[np.ndarray, int]] = {}
    shares = (0.5, 0.1)
    filters = [bucket_below(s) for s in shares]
    used_views = 0
    for _ in range(60):
        ids = rng.choice(300, size=int(rng.integers(1, 20)), replace=False)
        if rng.random() < 0.7:
            vecs = random_vectors[rng.integers(0, len(random_vectors), len(ids))]
            buckets: list[Any] = rng.integers(0, 100, len(ids)).tolist()
            payloads.upsert(ids.tolist(), [{"bucket": b} for b in buckets])
            if rng.random() < 0.3:  # a view of the moment between the two writes
                built(views, index, payloads.allowed(filters[0]))
            index.upsert(ids, vecs)
            state.update(zip(ids.tolist(), zip(vecs, buckets, strict=True), strict=True))
        else:
            index.remove(ids)
            payloads.remove(ids.tolist())
            for i in ids.tolist():
                state.pop(i, None)
        for f, share in zip(filters, shares, strict=True):
            for _ in range(2):  # the second search may find the view the first one paid for
                allowed = payloads.allowed(f)
                out = filtered_search(
                    index, random_queries[:5], K, allowed, nprobe=2, plan=Plan.EXACT, views=views
                )
                views.charge(index, allowed, DUE)
                views.wait()
                used_views += out.view
                passing = sorted(i for i, (_, b) in state.items() if b < 100 * share)
                got = out.result.ids
                if not passing:
                    assert (got == -1).all()
                    continue
                x = np.stack([state[i][0] for i in passing])
                scores, _ = brute_force(x, np.array(passing), random_queries[:5], K, Metric.IP)
                need = min(K, len(passing))
                assert ((got >= 0).sum(axis=1) == need).all()
                assert np.isin(got[got >= 0], passing).all()
                np.testing.assert_allclose(out.result.scores[:, :need], scores[:, :need], atol=1e-4)
    assert used_views > 0


def test_concurrent_writes_searches_and_copies_never_mix_states(
    random_vectors: np.ndarray, random_queries: np.ndarray
) -> None:
    """A writer flips half the points in and out of the filter and turns their vectors around
    (payloads, then vectors, as a live collection writes) while readers search with views
    copied as often as possible:
    a point that never passes is never returned, and once the writer stops every answer
    is the brute-force answer again."""
    x = random_vectors
    current = x.copy()  # the vectors as the writer left them
    clustering = train_clustering(prepare(x, Metric.IP), NLIST, Algorithm.KMEANS, Metric.IP, seed=4)
    index = VectorIndex(32, Metric.IP, clustering)
    ids = np.arange(len(x))
    index.upsert(ids, x)
    never = ids[ids % 2 == 1]  # bucket 99: never passes
    flips = ids[ids % 2 == 0]
    payloads = PayloadIndex.build({"bucket": "integer"}, [(int(i), {"bucket": 99}) for i in ids])
    payloads.upsert(flips.tolist(), [{"bucket": 0}] * len(flips))
    views = FilterViews(1 << 30)
    f = bucket_below(0.5)
    errors: list[BaseException] = []
    stop = time.monotonic() + 2.0
    rng = np.random.default_rng(7)

    def writer() -> None:
        while time.monotonic() < stop:
            batch = rng.choice(flips, size=100, replace=False)
            buckets = rng.choice([0, 60], size=len(batch)).tolist()
            vectors = x[batch] * rng.choice([-1, 1], size=(len(batch), 1)).astype(np.float32)
            payloads.upsert(batch.tolist(), [{"bucket": b} for b in buckets])
            index.upsert(batch, vectors)
            current[batch] = vectors

    def reader() -> None:
        while time.monotonic() < stop:
            try:
                allowed = payloads.allowed(f)
                out = filtered_search(index, random_queries, K, allowed, nprobe=4, views=views)
                views.charge(index, allowed, DUE)
                assert not np.isin(out.result.ids, never).any()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                return

    threads = [threading.Thread(target=t) for t in (writer, reader, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    views.wait()
    allowed = payloads.allowed(f)
    passing = np.flatnonzero(np.unpackbits(allowed.bits, bitorder="little"))
    _, expected = brute_force(current[passing], passing, random_queries, K, Metric.IP)
    for _ in range(2):  # through the selector, then (once copied) on the view
        out = filtered_search(index, random_queries, K, allowed, nprobe=NLIST, views=views)
        np.testing.assert_array_equal(out.result.ids, expected)
        views.charge(index, allowed, DUE)
        views.wait()
    assert out.view
