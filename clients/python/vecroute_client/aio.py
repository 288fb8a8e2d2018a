"""The asyncio client: the same methods as :class:`~vecroute_client.VecrouteClient`, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar, Unpack

import httpx
import numpy as np

from vecroute_client import calls
from vecroute_client.calls import Call, Metric, PointId, SearchOptions, Vector
from vecroute_client.client import DEFAULT_BATCH
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


class AsyncVecrouteClient:
    """``AsyncVecrouteClient("http://127.0.0.1:8000", api_key=None)``; ``async with`` it or
    await :meth:`close`. Errors are raised as :class:`~vecroute_client.ApiError`."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        read_your_writes: bool = True,
        timeout: float = 60.0,
    ) -> None:
        self.session = Session(url, api_key, read_your_writes)
        self._http = httpx.AsyncClient(**self.session.client_options(timeout))

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncVecrouteClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def last_seq(self) -> int | None:
        """The newest write sequence number this client was given, or was handed (set it
        to carry read-your-writes to another client or process); it only moves forward."""
        return self.session.last_seq

    @last_seq.setter
    def last_seq(self, seq: int) -> None:
        self.session.observe(seq)

    async def _run(self, call: Call[T]) -> T:
        response = await self._http.request(**self.session.request(call))
        return self.session.answer(call, response)

    # -- collections ----------------------------------------------------------------------

    async def create_collection(
        self, name: str, dim: int, metric: Metric = "ip", **fields: Any
    ) -> CollectionInfo:
        """``fields``: ``nlist``, ``clustering``, ``default_nprobe``, ``payload_indexes``,
        ``quantization`` (e.g. ``{"kind": "pq"}``), ``shards`` and ``replicas``."""
        return await self._run(calls.create_collection(name, dim, metric, **fields))

    async def list_collections(self) -> list[CollectionInfo]:
        return await self._run(calls.list_collections())

    async def get_collection(self, name: str) -> CollectionInfo:
        return await self._run(calls.get_collection(name))

    async def delete_collection(self, name: str) -> None:
        await self._run(calls.delete_collection(name))

    async def set_payload_indexes(self, name: str, fields: dict[str, str]) -> CollectionInfo:
        return await self._run(calls.set_payload_indexes(name, fields))

    async def set_quantization(self, name: str, quantization: dict[str, Any]) -> str:
        """Rebuild the lists with other codes (e.g. ``{"kind": "rabitq"}``); searches go on
        meanwhile. Returns the job id (see :meth:`wait_for_job`)."""
        return await self._run(calls.set_quantization(name, quantization))

    async def build(self, name: str, *, nlist: int | None = None, seed: int | None = None) -> str:
        """(Re)cluster now; returns the job id (see :meth:`wait_for_job`)."""
        return await self._run(calls.build(name, nlist, seed))

    # -- points ---------------------------------------------------------------------------

    async def upsert(self, collection: str, points: Iterable[PointLike]) -> Upserted:
        """One atomic batch: all points are stored, or none and an error says why."""
        return await self._run(calls.upsert(collection, [calls.point_dict(p) for p in points]))

    async def delete(self, collection: str, ids: Sequence[PointId]) -> Deleted:
        return await self._run(calls.delete_points(collection, ids))

    async def get_point(self, collection: str, point_id: PointId) -> Point:
        return await self._run(calls.get_point(collection, point_id))

    async def get_points(self, collection: str, ids: Sequence[PointId]) -> list[Point]:
        """The points that exist among ``ids``, in their order (requests in flight together)."""
        found = await asyncio.gather(*(self._run(calls.find_point(collection, i)) for i in ids))
        return [p for p in found if p is not None]

    async def upload_points(
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
                done = await self._retrying(calls.upsert(collection, batch), retry, tally)
                tally.add(done.upserted, done.seq)
                bar.update(len(batch))
        return tally.result()

    async def upload_arrays(
        self,
        collection: str,
        vectors: np.ndarray,
        ids: Sequence[PointId] | None = None,
        payloads: Sequence[Payload | None] | None = None,
        **options: Any,
    ) -> UploadResult:
        """:meth:`upload_points` for a 2-d array (ids default to the row numbers)."""
        points = array_points(np.asarray(vectors), ids, payloads)
        return await self.upload_points(collection, points, total=len(vectors), **options)

    async def _retrying(self, call: Call[T], policy: RetryPolicy, tally: Tally) -> T:
        attempt = 0
        while True:
            try:
                return await self._run(call)
            except (ApiError, httpx.TransportError) as exc:
                attempt += 1
                delay = policy.delay(attempt, exc)
                if delay is None:
                    raise
                tally.retries += 1
                await asyncio.sleep(delay)

    # -- search ---------------------------------------------------------------------------

    async def search(
        self, collection: str, vector: Vector, k: int = 10, **options: Unpack[SearchOptions]
    ) -> SearchResult:
        return await self._run(calls.search(collection, vector, k, options))

    async def search_batch(
        self,
        collection: str,
        vectors: Sequence[Vector] | np.ndarray,
        k: int = 10,
        **options: Unpack[SearchOptions],
    ) -> BatchSearchResult:
        return await self._run(calls.search_batch(collection, vectors, k, options))

    # -- routers and jobs -----------------------------------------------------------------

    async def train_router(
        self, collection: str, kind: str = "linear", objective: str = "top1", **fields: Any
    ) -> str:
        """Returns the job id; 409 :class:`ConflictError` while too few queries are logged."""
        return await self._run(calls.train_router(collection, kind, objective, **fields))

    async def get_job(self, job_id: str) -> Job:
        return await self._run(calls.get_job(job_id))

    async def wait_for_job(self, job_id: str, timeout_s: float = 600, poll_s: float = 0.2) -> Job:
        """The job once succeeded or failed; TimeoutError if it is neither by then."""
        deadline = time.monotonic() + timeout_s
        while not (job := await self.get_job(job_id)).done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s} s")
            await asyncio.sleep(poll_s)
        return job

    async def router_report(self, name: str) -> dict[str, Any]:
        return await self._run(calls.router_report(name))

    async def router_report_svg(self, name: str) -> str:
        return await self._run(calls.router_report_svg(name))

    # -- operations -----------------------------------------------------------------------

    async def healthz(self) -> bool:
        return await self._run(calls.healthz())

    async def readyz(self) -> Ready:
        return await self._run(calls.readyz())

    async def metrics(self) -> str:
        return await self._run(calls.metrics())

    async def openapi(self) -> dict[str, Any]:
        return await self._run(calls.openapi())
