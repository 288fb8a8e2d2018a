"""The API process's side of sharded collections (``VECROUTE_CLUSTER_ADDRESS`` set): which
collections are sharded, their serving shard sets, and the placement that follows every
new clustering or router.

A sharded collection is asked for at creation (``request``, stored as placement epoch 0).
Until the worker has built its clustering it is flat and the API process answers it alone.
Whenever the store shows a clustering, an active router or codes (quantization, catalyzer)
this coordinator has not placed yet, it places the lists by the logged queries' co-probes
under that routing (contiguous before any query is logged) and rebalances: new replicas
are built from the store, the epoch is switched, the old set drained
(``ShardedCollection.rebalance``). Searches keep
going to the old epoch meanwhile. The store stays the source of truth: a restarted API
process places and builds everything again from it. The shard snapshots of a dropped
collection are removed from every node when it goes (and at start-up, those of collections
dropped while this process was down).

Imports ray (through ``shard_set``): the service imports this module only with a cluster.

Threads: one sync thread places and rebalances (one collection at a time); ``_lock``
guards the dictionaries, read by the request threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cluster.placement import Placement, contiguous_placement, coprobe_placement
from app.cluster.replica import ShardCodes, ShardSpec
from app.cluster.shard_set import ShardedHits, ShardUnavailable
from app.cluster.shard_snapshots import remove_dropped
from app.cluster.sharded import ShardedCollection, label_lists
from app.engine.clustering import Clustering
from app.engine.metric import Metric, prepare
from app.engine.routing import Router, centroid_router
from app.service.errors import ShardDown
from app.store.db import Store
from app.store.models import Collection
from app.store.placements import request_shards, requested_shards
from app.store.point_lists import list_sizes
from app.store.query_log import load_queries
from app.store.versions import load_clustering, load_router

log = logging.getLogger(__name__)

# How long stopping waits for a placement in progress (its actors die with this driver).
STOP_WAIT_S = 5.0
# What a placement was made for: (clustering version, router version or None, the codes).
Placed = tuple[int, int | None, ShardCodes]


class Coordinator:
    def __init__(
        self,
        store: Store,
        database_url: str,
        nodes: Callable[[], Sequence[str]],
        *,
        on_every_node: Callable[..., None],
        nprobe: int,
        placement_queries: int,
        sync_interval_s: float,
        search_timeout_s: float,
        ready_timeout_s: float,
        snapshot_dir: str | None = None,
        snapshot_interval_s: float = 60.0,
        exact_storage: str = "float32",
        exact_dir: str | None = None,
    ) -> None:
        """``nodes``: the live node ids; ``on_every_node(fn, *args)`` runs ``fn`` on each
        (``ray_runtime``); ``nprobe``: the probes per logged query whose co-probes guide
        placement; ``snapshot_dir``: where replicas keep their shard snapshots (None: none);
        ``exact_storage``/``exact_dir``: where replicas keep the exact vectors of code lists."""
        self.store = store
        self.database_url = database_url
        self._nodes = nodes
        self._on_every_node = on_every_node
        self._nprobe = nprobe
        self._placement_queries = placement_queries
        self._sync_interval_s = sync_interval_s
        self._search_timeout_s = search_timeout_s
        self._ready_timeout_s = ready_timeout_s
        self._snapshot_dir = snapshot_dir
        self._snapshot_interval_s = snapshot_interval_s
        self._exact = (exact_storage, exact_dir)
        self._lock = threading.Lock()
        self._requested: dict[int, tuple[int, int]] = {}
        self._sharded: dict[int, ShardedCollection] = {}
        self._placed: dict[int, Placed] = {}
        self._swept = False  # the snapshots of collections dropped while down: not yet
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shard-placement", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:  # a rebalance under way is abandoned with its actors
            self._thread.join(timeout=STOP_WAIT_S)
        with self._lock:
            sharded, self._sharded = list(self._sharded.values()), {}
        for collection in sharded:
            collection.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # the store or the cluster is away: the next round retries
                log.exception("shard placement failed")
            self._wake.wait(self._sync_interval_s)
            self._wake.clear()

    # -- requests -------------------------------------------------------------------------

    def request(self, collection_id: int, shards: int, replicas: int) -> None:
        """Serve the new collection ``collection_id`` by ``shards`` x ``replicas``."""
        request_shards(self.store, collection_id, shards, replicas)
        with self._lock:
            self._requested[collection_id] = (shards, replicas)

    def describe(self, collection_id: int) -> list[dict[str, Any]] | None:
        """Collection info's ``shards`` (API.md), None for a collection that is not sharded;
        before its first placement, its shards with no lists and no replicas yet."""
        with self._lock:
            requested = self._requested.get(collection_id)
            sharded = self._sharded.get(collection_id)
        if requested is None:
            return None
        serving = sharded.serving if sharded is not None else None
        if serving is None:
            empty: list[dict[str, Any]] = []
            return [
                {"shard": s, "lists": 0, "points": 0, "replicas": empty}
                for s in range(requested[0])
            ]
        return serving.describe()

    # -- searching ------------------------------------------------------------------------------

    def serving_clustering(self, collection_id: int) -> Clustering | None:
        """The clustering the shards of ``collection_id`` serve, None if they serve none yet."""
        with self._lock:
            sharded = self._sharded.get(collection_id)
        return sharded.clustering if sharded is not None else None

    def serving_codes(self, collection_id: int) -> dict[str, Any] | None:
        """The quantization object the serving shards of ``collection_id`` hold (None:
        float lists, or nothing served yet)."""
        with self._lock:
            sharded = self._sharded.get(collection_id)
        if sharded is None or sharded.clustering is None:
            return None
        return sharded.spec.quantization

    def search(
        self,
        collection_id: int,
        queries: np.ndarray,
        k: int,
        nprobe: int,
        *,
        router: Router | None,
        lists: np.ndarray | None,
        min_seq: int,
        partial: bool,
        allowed: np.ndarray | None = None,
        rerank: int | None = None,
        exact: bool = False,
    ) -> ShardedHits:
        """The merged top-``k`` of the shards (see ``ShardedCollection.search``), among the
        ids the bitmap ``allowed`` lets through if given; a shard with no live replica is
        ``ShardDown`` unless ``partial``."""
        with self._lock:
            sharded = self._sharded.get(collection_id)
        if sharded is None:  # dropped since the caller looked
            raise ShardDown(f"collection {collection_id} is no longer served by shards")
        try:
            return sharded.search(
                queries,
                k,
                nprobe,
                router=router,
                lists=lists,
                allowed=allowed,
                min_seq=min_seq,
                partial=partial,
                rerank=rerank,
                exact=exact,
            )
        except ShardUnavailable as exc:
            raise ShardDown(
                f"shard {exc.shard} has no live replica: retry, or pass allow_partial"
            ) from None

    # -- placing --------------------------------------------------------------------------

    def sync(self) -> None:
        """Place every sharded collection whose clustering or router is new; drop the gone."""
        with self.store.read() as session:
            requested = requested_shards(session)
            rows = session.execute(
                select(
                    Collection.id,
                    Collection.dim,
                    Collection.metric,
                    Collection.clustering_version,
                    Collection.router_version,
                    Collection.quantization,
                    Collection.catalyzer_version,
                ).where(Collection.id.in_(list(requested)))
            ).all()
        with self._lock:
            self._requested = requested
            gone = [cid for cid in self._sharded if cid not in requested]
            closing = [self._sharded.pop(cid) for cid in gone]
            for cid in gone:
                self._placed.pop(cid, None)
        for collection in closing:
            collection.close()
        if closing or not self._swept:
            self._remove_dropped_snapshots(set(requested))
        for cid, dim, metric, clustering_version, router_version, codes, catalyzer in rows:
            if self._stop.is_set():
                return
            if clustering_version is None:
                continue
            held = ShardCodes(dict(codes) if codes else None, catalyzer)
            wanted: Placed = (int(clustering_version), router_version, held)
            if self._placed.get(cid) != wanted:
                self._place(int(cid), int(dim), str(metric), wanted, requested[cid])

    def _remove_dropped_snapshots(self, kept: set[int]) -> None:
        """On every node, the shard snapshots of collections no longer sharded."""
        if self._snapshot_dir is not None:
            self._on_every_node(remove_dropped, Path(self._snapshot_dir), kept)
        self._swept = True

    def _place(
        self, cid: int, dim: int, metric: str, wanted: Placed, shape: tuple[int, int]
    ) -> None:
        version, router_version, codes = wanted
        shards, replicas = shape
        with self.store.read() as session:
            clustering = load_clustering(session, cid, version)
        label_lists(self.store, cid, metric, clustering)  # the placement counts by the labels
        with self.store.read() as session:
            router = load_router(session, cid, router_version) if router_version else None
            if router is not None and router.clustering_version != version:
                router = None
            placement = self._placement(session, cid, Metric(metric), clustering, router, shards)
        with self._lock:
            sharded = self._sharded.get(cid)
        if sharded is None:
            spec = ShardSpec(
                self.database_url,
                cid,
                dim,
                metric,
                version,
                0,
                (),
                snapshot_dir=self._snapshot_dir,
                snapshot_interval_s=self._snapshot_interval_s,
                exact_storage=self._exact[0],
                exact_dir=self._exact[1],
            )
            sharded = ShardedCollection(
                self.store, spec, self._nodes, search_timeout_s=self._search_timeout_s
            )
            with self._lock:
                self._sharded[cid] = sharded
        epoch = sharded.rebalance(
            placement,
            replicas,
            clustering_version=version,
            codes=codes,
            ready_timeout_s=self._ready_timeout_s,
        )
        self._placed[cid] = wanted
        log.info(
            "sharded collection placed",
            extra={"collection_id": cid, "epoch": epoch, "method": placement.method},
        )

    def _placement(
        self,
        session: Session,
        cid: int,
        metric: Metric,
        clustering: Clustering,
        router: Router | None,
        shards: int,
    ) -> Placement:
        """Co-probe placement of the logged queries under ``router`` (else centroids), the
        lists' sizes counted from the store's labels."""
        shards = min(shards, clustering.nlist)
        _, queries = load_queries(session, cid, clustering.dim, limit=self._placement_queries)
        if len(queries) == 0 or shards == 1:
            return contiguous_placement(clustering.nlist, shards)
        chosen = router if router is not None else centroid_router(clustering)
        probes = chosen.route(prepare(queries, metric, clustering.dim), self._nprobe)
        sizes = list_sizes(session, cid, clustering.version, clustering.nlist)
        return coprobe_placement(probes, sizes, shards)
