"""Typed results. Fields the server adds later are kept (``extra="allow"``), so a newer
server never breaks an older client."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Payload = dict[str, Any]


class Result(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class IndexState(Result):
    state: Literal["flat", "building", "ivf"]
    nlist: int | None = None
    clustering_version: int | None = None
    building: bool = False
    quantization: dict[str, Any] | None = None  # {"kind": ..., params}: what the lists hold
    bytes_per_vector: float | None = None  # resident bytes per point of the serving index


class RouterInfo(Result):
    kind: str
    version: int | None = None


class ShardReplica(Result):
    node: str
    pid: int
    state: Literal["ready", "loading"]


class Shard(Result):
    shard: int
    lists: int
    points: int
    replicas: list[ShardReplica]


class CollectionInfo(Result):
    name: str
    dim: int
    metric: Literal["ip", "cosine", "l2"]
    count: int
    index: IndexState
    router: RouterInfo
    clustering: str | None = None
    default_nprobe: int | None = None
    payload_indexes: dict[str, str] = {}
    recall_table: dict[str, Any] | None = None
    shards: list[Shard] | None = None  # with a cluster only


class Point(Result):
    id: str
    vector: list[float]
    payload: Payload | None = None


class Hit(Result):
    id: str
    score: float
    payload: Payload | None = None


class Routed(Result):
    """How a search (single or batch) was routed and what it cost."""

    nprobe: float | None = None  # fixed nprobe, or the mean of adaptive probes
    routing: str
    router_version: int | None = None
    plan: str | None = None
    matches: int | None = None
    scanned: float | None = None  # vectors scored per query (mean)
    candidates: float | None = None  # candidates re-scored exactly per query (mean)
    shards_probed: float | None = None  # with a cluster: shards asked per query (mean)
    partial: bool | None = None  # with allow_partial: shards were left out of these hits
    missing_shards: list[int] | None = None  # with allow_partial: the shards left out


class SearchResult(Routed):
    hits: list[Hit]


class BatchHits(Result):
    hits: list[Hit]


class BatchSearchResult(Routed):
    results: list[BatchHits]


class Upserted(Result):
    upserted: int
    seq: int


class Deleted(Result):
    deleted: int
    seq: int


class Job(Result):
    id: str
    kind: str
    collection: str | None
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: float
    result: dict[str, Any] | None = None
    error: str | None = None
    attempts: int = 0

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed")


class Ready(Result):
    ready: bool
    store: bool
    indexes_loaded: bool
    applied_seq: int


class UploadResult(Result):
    """What a bulk upload did: points sent, requests made, and the last write's ``seq``."""

    upserted: int
    batches: int
    retries: int
    seq: int | None
