"""The synchronous client: one keep-alive connection pool, typed results."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar, Unpack

import httpx
import numpy as np

from vecroute_client import calls
from vecroute_client.calls import Call, Metric, PointId, SearchOptions, Vector
from vecroute_client.core import DEFAULT_URL, Session
from vecroute_client.errors import ApiError
from vecroute_client.models import (
    BatchSearchResult,
    CollectionInfo,
    Deleted,
    Job,
    Payload,
    Point,
    Ready,
    SearchResult,
    UploadResult,
    Upserted,
)
from vecroute_client.upload import (
    DEFAULT_RETRY,
    PointLike,
    RetryPolicy,
    Tally,
    array_points,
    batches,
    known_length,
    progress_bar,
)

T = TypeVar("T")
DEFAULT_BATCH = 500


class VecrouteClient:
    """``VecrouteClient("http://127.0.0.1:8000", api_key=None)``; use as a context manager
    or call :meth:`close`. Errors are raised as :class:`~vecroute_client.ApiError`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        read_your_writes: bool = True,
        timeout: float = 60.0,
    ) -> None:
        self.session = Session(url, api_key, read_your_writes)
        self._http = httpx.Client(**self.session.client_options(timeout))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> VecrouteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def last_seq(self) -> int | None:
        """The newest write sequence number this client was given, or was handed (set it
        to carry read-your-writes to another client or process); it only moves forward."""
        return self.session.last_seq

    @last_seq.setter
    def last_seq(self, seq: int) -> None:
        self.session.observe(seq)

    def _run(self, call: Call[T]) -> T:
        return self.session.answer(call, self._http.request(**self.session.request(call)))

    # -- collections ----------------------------------------------------------------------

    def create_collection(
        self, name: str, dim: int, metric: Metric = "ip", **fields: Any
    ) -> CollectionInfo:
        """``fields``: ``nlist``, ``clustering``, ``default_nprobe``, ``payload_indexes``,
        ``quantization`` (e.g. ``{"kind": "pq"}``), ``shards`` and ``replicas``."""
        return self._run(calls.create_collection(name, dim, metric, **fields))

    def list_collections(self) -> list[CollectionInfo]:
        return self._run(calls.list_collections())

    def get_collection(self, name: str) -> CollectionInfo:
        return self._run(calls.get_collection(name))

    def delete_collection(self, name: str) -> None:
        self._run(calls.delete_collection(name))

    def set_payload_indexes(self, name: str, fields: dict[str, str]) -> CollectionInfo:
        return self._run(calls.set_payload_indexes(name, fields))

    def set_quantization(self, name: str, quantization: dict[str, Any]) -> str:
        """Rebuild the lists with other codes (e.g. ``{"kind": "rabitq"}``); searches go on
        meanwhile. Returns the job id (see :meth:`wait_for_job`)."""
        return self._run(calls.set_quantization(name, quantization))

    def build(self, name: str, *, nlist: int | None = None, seed: int | None = None) -> str:
        """(Re)cluster now; returns the job id (see :meth:`wait_for_job`)."""
        return self._run(calls.build(name, nlist, seed))

    # -- points ---------------------------------------------------------------------------

    def upsert(self, collection: str, points: Iterable[PointLike]) -> Upserted:
        """One atomic batch: all points are stored, or none and an error says why."""
        return self._run(calls.upsert(collection, [calls.point_dict(p) for p in points]))

    def delete(self, collection: str, ids: Sequence[PointId]) -> Deleted:
        return self._run(calls.delete_points(collection, ids))

    def get_point(self, collection: str, point_id: PointId) -> Point:
        return self._run(calls.get_point(collection, point_id))

    def get_points(self, collection: str, ids: Sequence[PointId]) -> list[Point]:
        """The points that exist among ``ids``, in their order (one request each, on the
        same connection)."""
        found = (self._run(calls.find_point(collection, i)) for i in ids)
        return [p for p in found if p is not None]

    def upload_points(
        self,
        collection: str,
        points: Iterable[PointLike],
        *,
        batch_size: int = DEFAULT_BATCH,
        progress: bool | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        total: int | None = None,
    ) -> UploadResult:
        """Upsert any number of points in batches, retrying 503s and connection errors.

        ``progress``: None shows a bar for inputs of known length ≥ 10,000 points.
        """
        tally = Tally()
        with progress_bar(total or known_length(points), progress) as bar:
            for batch in batches(points, batch_size):
                done = self._retrying(calls.upsert(collection, batch), retry, tally)
                tally.add(done.upserted, done.seq)
                bar.update(len(batch))
        return tally.result()

    def upload_arrays(
        self,
        collection: str,
        vectors: np.ndarray,
        ids: Sequence[PointId] | None = None,
        payloads: Sequence[Payload | None] | None = None,
        **options: Any,
    ) -> UploadResult:
        """:meth:`upload_points` for a 2-d array (ids default to the row numbers)."""
        points = array_points(np.asarray(vectors), ids, payloads)
        return self.upload_points(collection, points, total=len(vectors), **options)

    def _retrying(self, call: Call[T], policy: RetryPolicy, tally: Tally) -> T:
        attempt = 0
        while True:
            try:
                return self._run(call)
            except (ApiError, httpx.TransportError) as exc:
                attempt += 1
                delay = policy.delay(attempt, exc)
                if delay is None:
                    raise
                tally.retries += 1
                time.sleep(delay)

    # -- search ---------------------------------------------------------------------------

    def search(
        self, collection: str, vector: Vector, k: int = 10, **options: Unpack[SearchOptions]
    ) -> SearchResult:
        return self._run(calls.search(collection, vector, k, options))

    def search_batch(
        self,
        collection: str,
        vectors: Sequence[Vector] | np.ndarray,
        k: int = 10,
        **options: Unpack[SearchOptions],
    ) -> BatchSearchResult:
        return self._run(calls.search_batch(collection, vectors, k, options))

    # -- routers and jobs -----------------------------------------------------------------

    def train_router(
        self, collection: str, kind: str = "linear", objective: str = "top1", **fields: Any
    ) -> str:
        """Returns the job id; 409 :class:`ConflictError` while too few queries are logged."""
        return self._run(calls.train_router(collection, kind, objective, **fields))

    def get_job(self, job_id: str) -> Job:
        return self._run(calls.get_job(job_id))

    def wait_for_job(self, job_id: str, timeout_s: float = 600, poll_s: float = 0.2) -> Job:
        """The job once succeeded or failed; TimeoutError if it is neither by then."""
        deadline = time.monotonic() + timeout_s
        while not (job := self.get_job(job_id)).done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s} s")
            time.sleep(poll_s)
        return job

    def router_report(self, name: str) -> dict[str, Any]:
        return self._run(calls.router_report(name))

    def router_report_svg(self, name: str) -> str:
        return self._run(calls.router_report_svg(name))

    # -- operations -----------------------------------------------------------------------

    def healthz(self) -> bool:
        return self._run(calls.healthz())

    def readyz(self) -> Ready:
        return self._run(calls.readyz())

    def metrics(self) -> str:
        return self._run(calls.metrics())

    def openapi(self) -> dict[str, Any]:
        return self._run(calls.openapi())
