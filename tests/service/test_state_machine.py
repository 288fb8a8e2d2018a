"""A Hypothesis state machine over the store and the live index (Chroma's harness, ours).

Upserts, deletes, clusterings and restarts (clean, or a crash that leaves only an older
snapshot, or none) in any order; after every step the service must agree with a
dict model: the same points, exact search equal to brute force over the model, IVF
probing every list equal to exact search, and no removed id ever returned.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from app.engine.metric import Metric
from app.service.search import SearchOptions
from tests.engine.conftest import brute_force
from tests.service.services import start_service
from worker.build import run_build

DIM = 6
K = 5
IDS = st.lists(st.integers(0, 15), min_size=1, max_size=8)


class StoreAndIndex(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="vecroute-sm-"))
        self.url = f"sqlite:///{self.root / 'store.db'}"
        self.service = start_service(self.url, self.root / "data")
        self.model: dict[str, tuple[np.ndarray, dict]] = {}
        self.saved_snapshot: bytes | None = None
        self.dirty = False  # writes since the last restart: only then is one worth a step
        self.metric = Metric.IP

    @property
    def snapshot_file(self) -> Path:
        return self.root / "data" / "snapshots" / "docs.snap"

    @initialize(metric=st.sampled_from(list(Metric)))
    def create(self, metric: Metric) -> None:
        self.metric = metric
        self.service.create_collection(
            name="docs",
            dim=DIM,
            metric=metric.value,
            nlist=None,
            algorithm="kmeans",
            default_nprobe=None,
        )

    @rule(ids=IDS, seed=st.integers(0, 2**16))
    def upsert(self, ids: list[int], seed: int) -> None:
        vectors = np.random.default_rng(seed).standard_normal((len(ids), DIM)).astype(np.float32)
        points = [
            {"id": f"p{i}", "vector": v.tolist(), "payload": {"seed": seed}}
            for i, v in zip(ids, vectors, strict=True)
        ]
        upserted, _ = self.service.index_points("docs", points)
        assert upserted == len(set(ids))
        for p, v in zip(points, vectors, strict=True):
            self.model[p["id"]] = (v, p["payload"])
        self.dirty = True

    @precondition(lambda self: self.model)
    @rule(ids=IDS)
    def delete(self, ids: list[int]) -> None:
        names = [f"p{i}" for i in ids]
        deleted, _ = self.service.delete_points("docs", names)
        assert deleted == len(set(names) & self.model.keys())
        for name in names:
            self.model.pop(name, None)
        self.dirty = True

    @precondition(lambda self: len(self.model) >= 8)
    @rule(nlist=st.integers(1, 4))
    def cluster(self, nlist: int) -> None:
        run_build(self.service.store, "docs", {"nlist": nlist}, lambda _: None)
        self.service.registry.catch_up()
        assert self.service.registry.get("docs").index.clustering is not None
        self.dirty = True

    @precondition(lambda self: self.dirty)
    @rule()
    def restart(self) -> None:
        """A clean stop writes a snapshot: kept as the last periodic one."""
        self.service.stop()
        if self.snapshot_file.exists():
            self.saved_snapshot = self.snapshot_file.read_bytes()
        self.service = start_service(self.url, self.root / "data")
        self.dirty = False

    @precondition(lambda self: self.dirty)
    @rule()
    def crash(self) -> None:
        """A crash loses the shutdown snapshot: the last periodic one (or none) is loaded
        and the store's change feed must bring it up to date."""
        self.service.stop()
        self.snapshot_file.unlink(missing_ok=True)
        if self.saved_snapshot is not None:
            self.snapshot_file.write_bytes(self.saved_snapshot)
        self.service = start_service(self.url, self.root / "data")
        self.dirty = False

    def _search(
        self, queries: np.ndarray, routing: str = "exact", nprobe: int | None = None
    ) -> list[list[dict]]:
        opts = SearchOptions(k=K, nprobe=nprobe, routing=routing, with_payload=True)
        return self.service.search("docs", queries, opts)["results"]

    @invariant()
    def agrees_with_the_model(self) -> None:
        live = self.service.registry.get("docs")
        assert live.index.count == len(self.model)
        rng = np.random.default_rng(len(self.model))
        queries = rng.standard_normal((3, DIM)).astype(np.float32)
        exact = self._search(queries)
        for hits in exact:
            ids = [h["id"] for h in hits]
            assert len(ids) == len(set(ids)) == min(K, len(self.model))
            assert set(ids) <= self.model.keys()
            scores = [h["score"] for h in hits]
            assert scores == sorted(scores, reverse=True)
            assert all(h["payload"] == self.model[h["id"]][1] for h in hits)
        if self.model:
            names = sorted(self.model)
            docs = np.stack([self.model[n][0] for n in names])
            k = min(K, len(names))
            expected, _ = brute_force(docs, np.arange(len(names)), queries, k, self.metric)
            got = np.array([[h["score"] for h in hits] for hits in exact])
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
            point = self.service.get_point("docs", names[0])
            np.testing.assert_allclose(point["vector"], self.model[names[0]][0], rtol=1e-6)
        clustering = live.index.clustering
        if clustering is not None:
            every = self._search(queries, routing="centroid", nprobe=clustering.nlist)
            for a, b in zip(every, exact, strict=True):
                np.testing.assert_allclose(
                    [h["score"] for h in a], [h["score"] for h in b], rtol=1e-5, atol=1e-5
                )

    def teardown(self) -> None:
        try:
            self.service.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


# No shrinking: every step may restart a service, so shrinking a failure takes minutes; the
# unshrunk steps are reported instead (and derandomized, so a failure reproduces).
StoreAndIndex.TestCase.settings = settings(
    phases=[Phase.explicit, Phase.generate],
    max_examples=10,
    stateful_step_count=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
TestStoreAndIndex = StoreAndIndex.TestCase
