"""The service facade: the one door the API (and the CLI's import) enters by.

Requests come in here; the background work (loading, catch-up, snapshots, the query-log
flusher, an embedded worker) lives in ``Runtime``, started and stopped through this object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sqlalchemy import text

from app.engine.allowed import AllowedCache
from app.engine.codes import (
    CATALYZER_KINDS,
    Quantization,
    QuantizationError,
)
from app.engine.exact import ExactStorage
from app.engine.ivf import VectorIndex
from app.engine.recall_table import RecallTable
from app.engine.views import FilterViews
from app.service import browse
from app.service import payload_indexes as payload_indexes_service
from app.service import points as point_writes
from app.service.errors import (
    CodesUnavailable,
    CollectionExists,
    CollectionNotFound,
    InvalidInput,
    JobNotFound,
    NoCluster,
    PointNotFound,
    SeqNotReached,
    TooFewQueries,
    TooManyCollections,
)
from app.service.indexes import IndexFactory
from app.service.live import LiveCollection
from app.service.query_log import QueryLogBuffer
from app.service.registry import Registry
from app.service.router_report import router_report
from app.service.runtime import EmbeddedWorker, Runtime
from app.service.search import Route, SearchOptions, plan_route, run_search
from app.service.sharded_search import ShardCoordinator, search_shards
from app.service.snapshots import SnapshotDir
from app.service.stats import ServiceStats, collect_stats
from app.service.vectors import check_direction
from app.settings import Settings
from app.store import counters, jobs
from app.store.collections import create_collection, delete_collection
from app.store.db import Store
from app.store.jobs import JobRecord, collections_with_pending
from app.store.points import get_point
from app.store.query_log import count_queries

BUILD, TRAIN_ROUTER, QUANTIZE = "build", "train-router", "quantize"


class Service:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        worker: EmbeddedWorker | None = None,
        cluster: ShardCoordinator | None = None,
    ) -> None:
        """``worker``: one to run in this process (``vecroute serve``), or None; ``cluster``:
        the coordinator of sharded collections (with ``VECROUTE_CLUSTER_ADDRESS``), or None."""
        self.settings = settings
        self.cluster = cluster
        self.store = store
        self.registry = Registry(
            store,
            SnapshotDir(settings.snapshot_dir),
            AllowedCache(settings.filter_cache_mib << 20),
            FilterViews(settings.filter_view_mib << 20),
            IndexFactory(ExactStorage(settings.exact_vectors), settings.exact_vectors_dir),
            cluster,
        )
        self.query_log = QueryLogBuffer(
            store, max_buffer=settings.query_log_max_buffer, flush_s=settings.query_log_flush_s
        )
        self.worker = worker
        if worker is not None:  # a finished job may have published versions: catch up now
            worker.add_job_listener(lambda *_: self.registry.wake.set())
        self.runtime = Runtime(settings, store, self.registry, self.query_log, worker)

    # -- lifecycle and status ------------------------------------------------------------------

    def start(self) -> None:
        self.runtime.start()
        if self.cluster is not None:
            self.cluster.start()

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        self.runtime.stop()

    @property
    def ready(self) -> bool:
        return self.registry.ready

    @property
    def load_failure(self) -> str | None:
        return self.runtime.load_failure

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the indexes are loaded; raises if loading failed or took too long."""
        if not self.runtime.loaded.wait(timeout_s):
            raise TimeoutError(f"the indexes did not load within {timeout_s} s")
        if self.runtime.load_error is not None:
            raise RuntimeError("loading the indexes failed") from self.runtime.load_error

    @property
    def applied_seq(self) -> int:
        """Every write up to this sequence number is searchable in this process."""
        return self.registry.applied_seq

    def store_reachable(self) -> bool:
        try:
            with self.store.read() as session:
                session.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def stats(self) -> ServiceStats:
        return collect_stats(self.store, self.registry, self.query_log)

    def add_job_listener(self, listener: Callable[[str, str, float], None]) -> None:
        """Be told of every job the embedded worker finishes (none without one)."""
        if self.worker is not None:
            self.worker.add_job_listener(listener)

    # -- collections ----------------------------------------------------------------------

    def create_collection(
        self,
        *,
        name: str,
        dim: int,
        metric: str,
        nlist: int | None,
        algorithm: str,
        default_nprobe: int | None,
        payload_indexes: Mapping[str, str] | None = None,
        shards: int = 1,
        replicas: int = 1,
        quantization: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        sharded = shards > 1 or replicas > 1
        if sharded and self.cluster is None:
            raise NoCluster(
                f"shards={shards}, replicas={replicas}: this service runs without a cluster, "
                "so a collection is one shard held whole by every API process"
            )
        declared = payload_indexes_service.checked(payload_indexes or {})
        if dim > self.settings.max_dim:
            raise InvalidInput(f"dim must be at most {self.settings.max_dim}")
        codes = _checked_codes(quantization, dim)
        with self.registry.apply_lock:
            # Counted here, not in the store: replicas may briefly overshoot together.
            if len(self.registry.all()) >= self.settings.max_collections:
                raise TooManyCollections(
                    f"at most {self.settings.max_collections} collections; delete one first"
                )
            record = create_collection(
                self.store,
                name=name,
                dim=dim,
                metric=metric,
                nlist=nlist,
                algorithm=algorithm,
                default_nprobe=default_nprobe,
                payload_indexes=declared,
                quantization=codes.to_dict() if codes.compressed else None,
            )
            if record is None:
                raise CollectionExists(f"collection {name!r} already exists")
            live = LiveCollection.empty(
                record,
                self.registry.indexes.new(record),
                self.registry.filter_cache,
                self.registry.filter_views,
            )
            if sharded and self.cluster is not None:
                self.cluster.request(record.id, shards, replicas)
            self.registry.add(live)
            self.registry.note_local_write(record.seq)
        return self.info(live, building=False)

    def delete_collection(self, name: str) -> int:
        with self.registry.apply_lock:
            self.registry.get(name)
            seq = delete_collection(self.store, name)
            if seq is None:
                raise CollectionNotFound(f"collection {name!r} does not exist")
            self.registry.drop(name)
            self.registry.note_local_write(seq)
        return seq

    def set_payload_indexes(self, name: str, fields: Mapping[str, str]) -> dict[str, Any]:
        payload_indexes_service.declare(self.registry, name, fields)
        return self.get_collection(name)

    def get_collection(self, name: str) -> dict[str, Any]:
        live = self.registry.get(name)
        with self.store.read() as session:
            building = name in collections_with_pending(session, BUILD)
        return self.info(live, building=building)

    def list_collections(self) -> list[dict[str, Any]]:
        lives = self.registry.all()
        with self.store.read() as session:
            building = collections_with_pending(session, BUILD)
        return [self.info(live, building=live.name in building) for live in lives]

    def info(self, live: LiveCollection, *, building: bool) -> dict[str, Any]:
        clustering = live.index.clustering
        state = "ivf" if clustering is not None else ("building" if building else "flat")
        router = live.router
        table = live.record.recall_table
        return {
            "name": live.name,
            "dim": live.record.dim,
            "metric": live.record.metric,
            "count": live.index.count,
            "clustering": live.record.algorithm,
            "nlist_requested": live.record.nlist,
            "default_nprobe": live.record.default_nprobe,
            "index": {
                "state": state,
                "nlist": clustering.nlist if clustering is not None else None,
                "clustering_version": clustering.version if clustering is not None else None,
                "building": building,
                "quantization": live.index.quantization.to_dict(),
                "bytes_per_vector": round(live.index.bytes_per_vector(), 1),
            },
            "router": {
                "kind": str(router.kind) if router is not None else "centroid",
                "version": router.version if router is not None else None,
            },
            "recall_table": _recall_summary(live, table) if table else None,
            "payload_indexes": {k: str(v) for k, v in live.payloads.fields.items()},
            "created_at": live.record.created_at.isoformat(),
            **self._shards_info(live),
        }

    def _shards_info(self, live: LiveCollection) -> dict[str, Any]:
        shards = self.cluster.describe(live.record.id) if self.cluster is not None else None
        return {"shards": shards} if shards is not None else {}

    # -- points ---------------------------------------------------------------------------

    def collection_dims(self) -> dict[str, int]:
        """Each collection's dimension; empty while loading (a lookup by name says so)."""
        registry = self.registry
        return {c.name: c.record.dim for c in registry.all()} if registry.ready else {}

    def collection_dim(self, name: str) -> int:
        return self.registry.get(name).record.dim

    def index_points(self, name: str, points: Any) -> tuple[int, int]:
        """Check, store and index a batch of raw points atomically; returns (upserted, seq)."""
        ids, vectors, payloads = point_writes.parse_points(
            points, self.collection_dim(name), self.settings.max_batch_points
        )
        return len(ids), self.upsert_points(name, ids, vectors, payloads)

    def upsert_points(
        self, name: str, ids: list[str], vectors: np.ndarray, payloads: list[Any]
    ) -> int:
        """Store and index a parsed batch atomically; returns its write seq."""
        return point_writes.upsert(self.registry, name, ids, vectors, payloads)

    def delete_points(self, name: str, ids: Any) -> tuple[int, int]:
        if not isinstance(ids, list) or len(ids) > self.settings.max_batch_points:
            raise InvalidInput(
                f"ids must be a list of at most {self.settings.max_batch_points} ids"
            )
        parsed = [point_writes.external_id(v, f"ids[{i}]") for i, v in enumerate(ids)]
        return point_writes.delete(self.registry, name, parsed)

    def get_point(self, name: str, point_id: str) -> dict[str, Any]:
        point_id = point_writes.external_id(point_id, "point_id")
        live = self.registry.get(name)
        with self.store.read() as session:
            point = get_point(session, live.record.id, point_id, live.record.dim)
        if point is None:
            raise PointNotFound(f"point {point_id!r} not found in {name!r}")
        return {"id": point.external_id, "payload": point.payload, "vector": point.vector.tolist()}

    def list_points(self, name: str, after: str | None, limit: int) -> dict[str, Any]:
        """A page of points in id order (``{"points", "next"}``), for browsing."""
        return browse.points_page(self.registry, name, after, limit)

    # -- search ---------------------------------------------------------------------------

    def wait_for_seq(self, min_seq: int | None) -> None:
        if min_seq is None or min_seq <= self.registry.applied_seq:
            return
        if not self.registry.wait_for_seq(min_seq, self.settings.min_seq_timeout_s):
            raise SeqNotReached(
                f"this replica has applied writes up to seq {self.registry.applied_seq}, "
                f"not yet {min_seq}; retry"
            )

    def is_cheap(self, name: str, n_queries: int, opts: SearchOptions) -> bool:
        return self.plan_search(name, n_queries, opts)[1]

    def plan_search(self, name: str, n_queries: int, opts: SearchOptions) -> tuple[Route, bool]:
        """The route a search will take, and whether it reads few enough vectors to run on
        the event loop itself (pass the route on to ``search``: it is resolved once).

        Counted for the most it may read: the probes the search will resolve to (an adaptive
        query's most), and for a filtered one every matching vector, since a query short of
        k hits widens to all lists. A filtered one only with its bitmap cached, too:
        evaluating a filter may read every payload.
        """
        live = self.registry.get(name)
        index = live.index
        route = plan_route(live, opts, self.settings.default_nprobe)
        if not isinstance(index, VectorIndex) or (
            self.cluster is not None and self.cluster.serving_clustering(live.record.id) is not None
        ):
            return route, False  # the shards answer over the network: never on the loop
        if opts.filter is None:
            if route.nprobe is None or route.clustering is None:
                read = index.count
            else:
                read = index.count * route.nprobe // route.clustering.nlist
        else:
            allowed = live.payloads.cached(opts.filter)
            if allowed is None:
                return route, False
            views = live.filter_views
            on_view = views is not None and views.view(index, allowed) is not None
            read = allowed.count if on_view else index.count
        return route, n_queries * read <= self.settings.inline_search_max_vectors

    def search(
        self,
        name: str,
        queries: np.ndarray,
        opts: SearchOptions,
        *,
        route: Route | None = None,
    ) -> dict[str, Any]:
        """``route``: from ``plan_search`` for these options, else resolved here."""
        live = self.registry.get(name)
        check_direction(queries, live.record.metric, "query vectors")
        out = None
        if self.cluster is not None:
            if route is None or route.clustering is not live.index.clustering:
                route = plan_route(live, opts, self.settings.default_nprobe)
            out = search_shards(self.cluster, live, queries, opts, route, self.applied_seq)
        if out is None:
            out = run_search(live, queries, opts, self.settings.default_nprobe, route)
        return out

    def log_queries(self, name: str, queries: np.ndarray, k: int) -> None:
        """Buffer a search's queries for router training: the API does once it has sent the
        answer, when a request asks for it (a collection dropped since logs nothing)."""
        try:
            live = self.registry.get(name)
        except CollectionNotFound:
            return
        self.query_log.add(live.record.id, queries, k)

    def router_report(self, name: str) -> dict[str, Any]:
        """Held-out top-1 and recall against nprobe, centroid and learned (see router_report)."""
        return router_report(self.store, self.registry.get(name))

    # -- jobs -----------------------------------------------------------------------------

    def build(self, name: str, params: dict[str, Any]) -> JobRecord:
        self.registry.get(name)
        with self.store.read() as session:
            pending = jobs.pending_jobs(session, name, BUILD)
        if pending and not params:
            return pending[0]
        job = jobs.enqueue(
            self.store, BUILD, name, params, max_attempts=self.settings.job_max_attempts
        )
        if self.worker is not None:
            self.worker.wake()
        return job

    def set_quantization(self, name: str, quantization: Mapping[str, Any]) -> JobRecord:
        """Check the codes asked for and enqueue the rebuild (the worker checks they can be
        trained on the collection, then records them; every process swaps its index)."""
        live = self.registry.get(name)
        codes = _checked_codes(quantization, live.record.dim)
        if codes.kind in CATALYZER_KINDS:
            with self.store.read() as session:
                held = counters.live_points(session, live.record.id)
            needed = self.settings.catalyzer_min_points
            if held < needed:
                raise CodesUnavailable(
                    f"quantization: {codes.kind.value} trains paper 003's catalyzer, which "
                    f"mines each point's 50th neighbour and holds out 10% of the points: it "
                    f"needs at least {needed} points; {name!r} holds {held}"
                )
        job = jobs.enqueue(
            self.store,
            QUANTIZE,
            name,
            {"quantization": codes.to_dict()},
            max_attempts=self.settings.job_max_attempts,
        )
        if self.worker is not None:
            self.worker.wake()
        return job

    def train_router(self, name: str, params: dict[str, Any]) -> JobRecord:
        if params.get("k", 1) > self.settings.max_k:
            raise InvalidInput(f"k must be in [1, {self.settings.max_k}]")
        if "architecture" in params and params.get("kind") != "emulator":
            raise InvalidInput("architecture applies to kind 'emulator' only")
        live = self.registry.get(name)
        self.query_log.flush()
        with self.store.read() as session:
            logged = count_queries(session, live.record.id)
        needed = self.settings.train_min_queries
        if logged < needed:
            raise TooFewQueries(
                f"{logged} queries logged for {name!r}; training needs at least {needed}"
            )
        job = jobs.enqueue(
            self.store, TRAIN_ROUTER, name, params, max_attempts=self.settings.job_max_attempts
        )
        if self.worker is not None:
            self.worker.wake()
        return job

    def get_job(self, job_id: str) -> JobRecord:
        job = jobs.get_job(self.store, job_id)
        if job is None:
            raise JobNotFound(f"job {job_id!r} not found")
        return job

    def list_jobs(self, collection: str | None, status: str | None, limit: int) -> list[JobRecord]:
        """The newest jobs first, optionally of one collection and status."""
        return browse.jobs_page(self.store, collection, status, limit)


def _checked_codes(raw: Mapping[str, Any] | None, dim: int) -> Quantization:
    """A request's quantization: 422 if malformed."""
    try:
        return Quantization.parse(raw, dim)
    except QuantizationError as exc:
        raise InvalidInput(f"quantization: {exc}") from None


def _recall_summary(live: LiveCollection, table: dict[str, Any]) -> dict[str, Any]:
    """The fixed-nprobe table, and beside it the adaptive probing of the router it measured."""
    summary = RecallTable.from_dict(table).summary()
    router = live.router
    if router is None or summary["router_version"] != router.version:
        return summary
    calibration = live.adaptive_for(router)
    if calibration is not None:
        summary["adaptive"] = [
            {
                "target": lv.target,
                "recall": lv.recall,
                "mean_nprobe": lv.mean_nprobe,
                "mean_scanned": lv.mean_scanned,
            }
            for lv in calibration.levels
        ]
    return summary
