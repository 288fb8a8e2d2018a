"""Every endpoint as a :class:`Call`: the request to send and how to read the answer.

The sync and async clients only differ in how they send a call, so the shapes of the HTTP
contract live here once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypedDict, TypeVar
from urllib.parse import quote

import httpx
import numpy as np
from pydantic import BaseModel

from vecroute_client.models import (
    BatchSearchResult,
    CollectionInfo,
    Deleted,
    Job,
    Payload,
    Point,
    Ready,
    SearchResult,
    Upserted,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Vector = Sequence[float] | np.ndarray
PointId = str | int
Metric = Literal["ip", "cosine", "l2"]


class SearchOptions(TypedDict, total=False):
    """Optional search fields (API.md "Search"); ``filter`` is README's filter language."""

    nprobe: int
    target_recall: float
    routing: Literal["auto", "learned", "centroid", "exact", "emulator"]
    rerank: int
    allow_partial: bool
    with_payload: bool
    log: bool
    min_seq: int
    filter: dict[str, Any]


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    body: dict[str, Any] | None = None
    # Searches wait for the client's last write (read-your-writes) through ``min_seq``.
    after_writes: bool = False
    # A 404 of this problem type is an answer (None), not an error.
    absent: str | None = None


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    # pydantic's own JSON parser, straight into the model: no dict in between.
    return lambda response: model.model_validate_json(response.content)


def _none(_: httpx.Response) -> None:
    return None


def _job_id(response: httpx.Response) -> str:
    return str(response.json()["job_id"])


def _seg(value: str) -> str:
    return quote(value, safe="")


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def as_json_vector(vector: Vector) -> np.ndarray | list[float]:
    """A vector as the request body holds it: a flat float array (encoded by
    ``core.encode`` as it is, no Python floats made), or a list of floats."""
    if isinstance(vector, np.ndarray):
        return _floats(vector).ravel()
    return [float(x) for x in vector]


def _floats(array: np.ndarray) -> np.ndarray:
    """``array`` as float32 or float64 (integers and booleans as float64), as numbers."""
    return array if array.dtype in _FLOATS else array.astype(np.float64)


def _json_vectors(vectors: Sequence[Vector] | np.ndarray) -> np.ndarray | list[Any]:
    """``as_json_vector`` for many: a 2-d float array whole."""
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
        return _floats(vectors)
    return [as_json_vector(v) for v in vectors]


def is_json_vector(value: Any) -> bool:
    """Shaped as ``as_json_vector`` returns it (a list, or a flat float array)."""
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and value.dtype in _FLOATS
    return isinstance(value, list)


def create_collection(name: str, dim: int, metric: Metric, **fields: Any) -> Call[CollectionInfo]:
    body = {"name": name, "dim": dim, "metric": metric, **_given(fields)}
    return Call("POST", "/collections", _model(CollectionInfo), body)


def list_collections() -> Call[list[CollectionInfo]]:
    def read(response: httpx.Response) -> list[CollectionInfo]:
        return [CollectionInfo.model_validate(c) for c in response.json()["collections"]]

    return Call("GET", "/collections", read)


def get_collection(name: str) -> Call[CollectionInfo]:
    return Call("GET", f"/collections/{_seg(name)}", _model(CollectionInfo))


def delete_collection(name: str) -> Call[None]:
    return Call("DELETE", f"/collections/{_seg(name)}", _none)


def set_payload_indexes(name: str, fields: dict[str, str]) -> Call[CollectionInfo]:
    path = f"/collections/{_seg(name)}/payload-indexes"
    return Call("PUT", path, _model(CollectionInfo), {"fields": fields})


def set_quantization(name: str, quantization: dict[str, Any]) -> Call[str]:
    body = {"quantization": quantization}
    return Call("PATCH", f"/collections/{_seg(name)}", _job_id, body)


def build(name: str, nlist: int | None, seed: int | None) -> Call[str]:
    body = _given({"nlist": nlist, "seed": seed})
    return Call("POST", f"/collections/{_seg(name)}/build", _job_id, body)


def upsert(collection: str, points: list[dict[str, Any]]) -> Call[Upserted]:
    return Call("POST", "/index", _model(Upserted), {"collection": collection, "points": points})


def delete_points(collection: str, ids: Sequence[PointId]) -> Call[Deleted]:
    return Call("POST", "/delete", _model(Deleted), {"collection": collection, "ids": list(ids)})


def get_point(collection: str, point_id: PointId) -> Call[Point]:
    path = f"/collections/{_seg(collection)}/points/{_seg(str(point_id))}"
    return Call("GET", path, _model(Point))


def find_point(collection: str, point_id: PointId) -> Call[Point | None]:
    path = f"/collections/{_seg(collection)}/points/{_seg(str(point_id))}"
    return Call("GET", path, _model(Point), absent="point-not-found")


def search(collection: str, vector: Vector, k: int, options: SearchOptions) -> Call[SearchResult]:
    body = {"collection": collection, "vector": as_json_vector(vector), "k": k, **options}
    return Call("POST", "/search", _model(SearchResult), body, after_writes=True)


def search_batch(
    collection: str, vectors: Sequence[Vector] | np.ndarray, k: int, options: SearchOptions
) -> Call[BatchSearchResult]:
    body = {"collection": collection, "vectors": _json_vectors(vectors), "k": k, **options}
    return Call("POST", "/search/batch", _model(BatchSearchResult), body, after_writes=True)


def train_router(collection: str, kind: str, objective: str, **fields: Any) -> Call[str]:
    body = {"collection": collection, "kind": kind, "objective": objective, **_given(fields)}
    return Call("POST", "/train-router", _job_id, body)


def get_job(job_id: str) -> Call[Job]:
    return Call("GET", f"/jobs/{_seg(job_id)}", _model(Job))


def router_report(name: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/collections/{_seg(name)}/router/report", lambda r: dict(r.json()))


def router_report_svg(name: str) -> Call[str]:
    return Call("GET", f"/collections/{_seg(name)}/router/report.svg", lambda r: r.text)


def healthz() -> Call[bool]:
    return Call("GET", "/healthz", lambda r: r.json().get("status") == "ok")


def readyz() -> Call[Ready]:
    return Call("GET", "/readyz", _model(Ready))


def metrics() -> Call[str]:
    return Call("GET", "/metrics", lambda r: r.text)


def openapi() -> Call[dict[str, Any]]:
    return Call("GET", "/openapi.json", lambda r: dict(r.json()))


def point_dict(point: Point | dict[str, Any] | tuple[Any, ...]) -> dict[str, Any]:
    """A point as ``/index`` takes it, from a :class:`Point`, a dict or ``(id, vector[,
    payload])``."""
    if isinstance(point, Point):
        return point_body(point.id, point.vector, point.payload)
    if isinstance(point, dict):
        return point_body(point["id"], point["vector"], point.get("payload"))
    return point_body(*point)


def point_body(point_id: PointId, vector: Vector, payload: Payload | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": point_id, "vector": as_json_vector(vector)}
    if payload is not None:
        body["payload"] = payload
    return body


def _given(fields: dict[str, Any]) -> dict[str, Any]:
    """Only the fields the caller set: absent means the server's default."""
    return {key: value for key, value in fields.items() if value is not None}
