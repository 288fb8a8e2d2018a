"""The service facade the API calls: one object per process, built from the settings.

Background threads (all daemons, stopped by ``stop``): the initial load, the catch-up
loop, periodic snapshots, the query-log flusher and, if embedded, the worker.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy import text

from app.engine.allowed import AllowedCache
from app.engine.filtered import vectors_read
from app.engine.recall_table import RecallTable
from app.engine.views import FilterViews
from app.service import payload_indexes as payload_indexes_service
from app.service import points as point_writes
from app.service.errors import (
    CollectionExists,
    CollectionNotFound,
    InvalidInput,
    JobNotFound,
    PointNotFound,
    SeqNotReached,
    TooFewQueries,
    TooManyCollections,
)
from app.service.live import LiveCollection
from app.service.query_log import QueryLogBuffer
from app.service.registry import Registry
from app.service.search import SearchOptions, run_search
from app.service.snapshots import SnapshotDir
from app.settings import Settings
from app.store import jobs
from app.store.collections import create_collection, delete_collection
from app.store.db import Store
from app.store.jobs import JobRecord, collections_with_pending
from app.store.migrate import upgrade
from app.store.outage import OutageLog
from app.store.points import get_point
from app.store.query_log import count_queries
from worker.worker import Worker

log = logging.getLogger(__name__)

BUILD, TRAIN_ROUTER = "build", "train-router"


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.resolved_database_url)
        self.registry = Registry(
            self.store,
            SnapshotDir(settings.snapshot_dir),
            AllowedCache(settings.filter_cache_mib << 20),
            FilterViews(settings.filter_view_mib << 20),
        )
        self.query_log = QueryLogBuffer(
            self.store,
            max_buffer=settings.query_log_max_buffer,
            flush_s=settings.query_log_flush_s,
        )
        self.worker: Worker | None = None
        if settings.embedded_worker:
            self.worker = Worker(settings, self.store, on_done=self.registry.wake.set)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.load_error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Migrate, then load indexes in the background (``/readyz`` says when done)."""
        upgrade(self.store)
        self._spawn("load", self._load_then_loop)
        self.query_log.start()
        if self.worker is not None:
            self.worker.start()

    def stop(self) -> None:
        self._stop.set()
        self.registry.wake.set()
        if self.worker is not None:
            self.worker.stop()
        for t in self._threads:
            t.join(timeout=30)
        self.query_log.stop()
        self.registry.filter_views.close()
        if self.registry.ready:
            self.snapshot_all(force=False)
        self.store.dispose()
        gc.unfreeze()  # what died since can be collected (tests run many services)

    def _spawn(self, name: str, target: Any) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _load_then_loop(self) -> None:
        try:
            self.registry.load_all()
            # Start-up objects (modules, loaded labels) live as long as the process. Frozen,
            # a full collection no longer walks them: measured 100-250 ms holding the GIL,
            # triggered by an ingest's allocations, against ~20 ms after (issue 7).
            gc.collect()
            gc.freeze()
        except BaseException as exc:
            self.load_error = exc
            log.exception("loading indexes failed")
            return
        self._spawn("snapshots", self._snapshot_loop)
        interval = self.settings.catchup_interval_s
        outage = OutageLog(log, "catch-up")
        while not self._stop.is_set():
            self.registry.wake.wait(interval)
            self.registry.wake.clear()
            if self._stop.is_set():
                break
            with outage.attempt():
                self.registry.catch_up()

    def _snapshot_loop(self) -> None:
        while not self._stop.wait(self.settings.snapshot_interval_s):
            try:
                self.snapshot_all(force=False)
            except Exception:
                log.exception("snapshot failed")

    def snapshot_all(self, *, force: bool) -> int:
        """Write snapshots of changed collections; returns how many were written."""
        written = 0
        for live in self.registry.all():
            if not force and live.snapshot_seq >= live.changed_seq:
                continue
            seq = self.registry.applied_seq  # read first: the index holds at least this
            meta = {
                "collection_id": live.record.id,
                "seq": seq,
                "clustering_version": live.clustering_version,
            }
            if self.registry.save_snapshot(live, meta):
                live.snapshot_seq = max(live.changed_seq, seq)
                written += 1
        return written

    @property
    def ready(self) -> bool:
        return self.registry.ready

    def store_reachable(self) -> bool:
        try:
            with self.store.read() as session:
                session.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

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
    ) -> dict[str, Any]:
        declared = payload_indexes_service.checked(payload_indexes or {})
        if dim > self.settings.max_dim:
            raise InvalidInput(f"dim must be at most {self.settings.max_dim}")
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
            )
            if record is None:
                raise CollectionExists(f"collection {name!r} already exists")
            live = LiveCollection.empty(
                record, self.registry.filter_cache, self.registry.filter_views
            )
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
            },
            "router": {
                "kind": str(router.kind) if router is not None else "centroid",
                "version": router.version if router is not None else None,
            },
            "recall_table": RecallTable.from_dict(table).summary() if table else None,
            "payload_indexes": {k: str(v) for k, v in live.payloads.fields.items()},
            "created_at": live.record.created_at.isoformat(),
        }

    # -- points ---------------------------------------------------------------------------

    def index_points(self, name: str, points: Any) -> tuple[int, int]:
        """Store and index a batch atomically; returns (upserted, seq)."""
        live = self.registry.get(name)
        ids, vectors, payloads = point_writes.parse_points(
            points, live.record.dim, self.settings.max_batch_points
        )
        seq = point_writes.upsert(self.registry, name, ids, vectors, payloads)
        return len(ids), seq

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
        """Whether a search reads few enough vectors to run on the event loop itself.

        A filtered one only with its bitmap cached: evaluating a filter may scan every payload.
        """
        live = self.registry.get(name)
        index = live.index
        clustering = index.clustering
        nlist = clustering.nlist if clustering is not None and opts.routing != "exact" else None
        nprobe = opts.nprobe or live.record.default_nprobe or self.settings.default_nprobe
        nprobe = min(nprobe, nlist or 1)
        if opts.filter is None:
            read = index.count * nprobe // nlist if nlist else index.count
        else:
            allowed = live.payloads.cached(opts.filter)
            if allowed is None:
                return False
            views = live.filter_views
            on_view = views is not None and views.view(index, allowed) is not None
            read = vectors_read(allowed.count, index.count, nprobe, nlist, on_view)
        return n_queries * read <= self.settings.inline_search_max_vectors

    def search(
        self, name: str, queries: np.ndarray, opts: SearchOptions, *, log_queries: bool
    ) -> dict[str, Any]:
        live = self.registry.get(name)
        out = run_search(live, queries, opts, self.settings.default_nprobe)
        if log_queries:
            self.query_log.add(live.record.id, queries, opts.k)
        return out

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

    def train_router(self, name: str, params: dict[str, Any]) -> JobRecord:
        if params.get("k", 1) > self.settings.max_k:
            raise InvalidInput(f"k must be in [1, {self.settings.max_k}]")
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
