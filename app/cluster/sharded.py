"""A sharded collection as the coordinator serves it: the shard set of the active
placement epoch, replaced whole when the collection is rebalanced.

Rebalancing (a new placement, or a new clustering to place) follows the store: every point
is labelled with its list under the clustering (so a replica reads only its lists), the new
placement is saved inactive, its replicas are built from the store (``ShardSet``), and
only once every one is ready is the epoch activated in the store and the new set swapped
in; the old set is then drained (searches that picked it up before the swap finish on
it) and its actors stopped. Searches keep answering throughout.

Locks: ``_swap`` serialises rebalancing; the serving set and its clustering are one
attribute, read once per search, so a search runs wholly on one epoch. ``ShardSet`` counts
its searches in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from app.cluster.placement import Placement
from app.cluster.replica import ShardCodes, ShardSpec
from app.cluster.shard_set import ShardedHits, ShardSet
from app.engine.clustering import Clustering
from app.engine.metric import Metric, prepare
from app.engine.routing import Router, centroid_router
from app.store.db import Store
from app.store.placements import activate_placement, save_placement
from app.store.point_lists import relabel
from app.store.versions import load_clustering


class RebalanceFailed(RuntimeError):
    """The new shard replicas did not all become ready: the old epoch keeps serving."""


class ShardedCollection:
    def __init__(
        self,
        store: Store,
        spec: ShardSpec,
        nodes: Callable[[], Sequence[str]],
        *,
        search_timeout_s: float = 10.0,
    ) -> None:
        """``spec``: the collection's (shard and lists are per shard); ``nodes``: the live
        node ids when a shard set is started."""
        self.store = store
        self.spec = spec
        self._nodes = nodes
        self._search_timeout_s = search_timeout_s
        self._swap = threading.Lock()
        # The serving set and its clustering, replaced together (one attribute store).
        self._serving: tuple[ShardSet, Clustering] | None = None

    @property
    def serving(self) -> ShardSet | None:
        return self._serving[0] if self._serving is not None else None

    @property
    def clustering(self) -> Clustering | None:
        return self._serving[1] if self._serving is not None else None

    def rebalance(
        self,
        placement: Placement,
        replicas: int,
        *,
        clustering_version: int | None = None,
        codes: ShardCodes | None = None,
        ready_timeout_s: float = 600.0,
    ) -> int:
        """Serve ``placement`` (of ``clustering_version``, default: the current one) with
        ``replicas`` per shard holding ``codes`` (default: the current ones): build,
        activate, drain the old. Returns the new epoch."""
        with self._swap:
            version = clustering_version or self.spec.clustering_version
            with self.store.read() as session:
                clustering = load_clustering(session, self.spec.collection_id, version)
            if clustering.nlist != placement.nlist:
                raise ValueError(
                    f"the placement covers {placement.nlist} lists, "
                    f"the clustering {clustering.nlist}"
                )
            cid = self.spec.collection_id
            label_lists(self.store, cid, self.spec.metric, clustering)
            epoch = save_placement(self.store, cid, version, placement, replicas)
            spec = replace(self.spec, clustering_version=version)
            if codes is not None:
                spec = replace(
                    spec, quantization=codes.quantization, catalyzer_version=codes.catalyzer_version
                )
            fresh = ShardSet(
                spec,
                replace(placement, epoch=epoch),
                replicas,
                self._nodes(),
                search_timeout_s=self._search_timeout_s,
            )
            if not fresh.wait_ready(ready_timeout_s):
                fresh.close()
                raise RebalanceFailed(f"epoch {epoch}: not every replica became ready")
            activate_placement(self.store, cid, epoch)
            old = self.serving
            self.spec, self._serving = spec, (fresh, clustering)
        if old is not None:
            old.drain_and_close(ready_timeout_s)
        return epoch

    def search(
        self,
        queries: np.ndarray,
        k: int,
        nprobe: int,
        *,
        router: Router | None = None,
        lists: np.ndarray | None = None,
        allowed: np.ndarray | None = None,
        min_seq: int = 0,
        partial: bool = False,
        rerank: int | None = None,
        exact: bool = False,
    ) -> ShardedHits:
        """Route (``router``, else centroids) and search the serving epoch (code lists:
        ``rerank`` candidates per shard, every one if ``exact``). Preassigned
        ``lists`` (adaptive probing) come with the ``router`` that chose them. A router of
        another clustering (swapped meanwhile) gives way to the serving clustering's
        centroids, and so do lists without their router."""
        current = self._serving
        if current is None:
            raise RebalanceFailed("no placement is serving yet")
        serving, clustering = current
        serving.enter()
        try:
            fits = router is not None and router.clustering_version == clustering.version
            if lists is None or not fits:
                chosen = router if fits and router is not None else centroid_router(clustering)
                q = prepare(queries, Metric(self.spec.metric), self.spec.dim)
                lists = chosen.route(q, min(nprobe, clustering.nlist))
            return serving.search(
                queries,
                k,
                lists,
                allowed,
                min_seq=min_seq,
                partial=partial,
                rerank=rerank,
                exact=exact,
            )
        finally:
            serving.leave()

    def close(self) -> None:
        with self._swap:
            if self._serving is not None:
                self._serving[0].close()
                self._serving = None


def label_lists(store: Store, collection_id: int, metric: str, clustering: Clustering) -> int:
    """Label every point with its list under ``clustering`` before replicas read by the
    labels (rows written before it was active, or while it was built); returns how many
    rows it read (none once they are labelled)."""
    m, dim = Metric(metric), clustering.dim

    def assign(x: np.ndarray) -> np.ndarray:
        return clustering.assign(prepare(x, m, dim))

    return relabel(store, collection_id, clustering.version, dim, assign)
