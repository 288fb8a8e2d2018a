"""Request and response models: validation of scalar fields and the OpenAPI contract.

Vectors are declared here for the schema, but the hot routes validate them with numpy
(app/service/vectors.py): the ``*Params`` models hold every other field and are what the
routes validate at run time.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.filter_models import FilterMatches, PayloadIndexes, SearchFilter, SearchPlan
from app.service.points import exact_integer

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="1-64 of [A-Za-z0-9_-]")]
PointId = Annotated[str | int, Field(description="string of 1-256 chars, or an int")]
Routing = Literal["auto", "learned", "centroid", "exact", "emulator"]
# Bounds the store's 32-bit integer columns and faiss's C int seed can hold.
MAX_NLIST = 1 << 20
MAX_SEED = (1 << 31) - 1


class Strict(BaseModel):
    """A request body: unknown fields refused, and no value coerced into another type
    (``true`` is no id or k, ``"2"`` no number); but a number with no fractional part
    (``7.0``) is an integer, as JSON Schema says, and integers are numbers."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _integral_numbers(cls, data: Any) -> Any:
        """Integral floats as integers, in the body's fields and its lists of scalars (ids)."""
        if not isinstance(data, dict):
            return data
        return {
            key: [exact_integer(x) for x in value]
            if isinstance(value, list)
            else exact_integer(value)
            for key, value in data.items()
        }


QuantizationKind = Literal["none", "sq8", "pq", "rabitq", "catalyzer-sign", "catalyzer-lattice"]


class QuantizationSpec(Strict):
    """What the IVF lists hold; codes are scanned, then the best ``rerank`` candidates are
    re-scored with exact vectors (scores returned are always exact)."""

    kind: QuantizationKind = Field(
        description="none: float32 lists; sq8: 8-bit scalar codes; pq: 4-bit fast-scan "
        "product codes; rabitq: RaBitQ; catalyzer-sign / catalyzer-lattice: paper 003's "
        "catalyzer then sign bits / a spherical lattice code (409 until available)."
    )
    m: int | None = Field(
        default=None, ge=1, description="pq only: sub-quantizers (must divide dim)"
    )
    bits: int | None = Field(
        default=None, ge=1, description="catalyzer-sign: 64, 128 or 256; catalyzer-lattice: 64"
    )


class CollectionCreate(Strict):
    name: Name
    dim: int = Field(ge=1, le=65536)
    metric: Literal["ip", "cosine", "l2"] = "ip"
    nlist: int | None = Field(default=None, ge=1, le=MAX_NLIST)
    clustering: Literal["kmeans", "spherical", "shallow"] = "kmeans"
    default_nprobe: int | None = Field(default=None, ge=1, le=MAX_NLIST)
    payload_indexes: PayloadIndexes | None = None
    shards: int = Field(
        default=1,
        ge=1,
        description="Shards over a Ray cluster (VECROUTE_CLUSTER_ADDRESS); without one, "
        "above 1 is 409",
    )
    replicas: int = Field(
        default=1,
        ge=1,
        description="Copies of each shard over a Ray cluster; without one, above 1 is 409",
    )
    quantization: QuantizationSpec | None = None


class CollectionPatch(Strict):
    """Changes that rebuild the index: answered 202 with the job that does it."""

    quantization: QuantizationSpec


class ShardReplicaInfo(BaseModel):
    node: str = Field(description="The Ray node id the replica runs on")
    pid: int
    state: Literal["ready", "loading"]


class ShardInfo(BaseModel):
    shard: int
    lists: int
    points: int
    replicas: list[ShardReplicaInfo]


ShardsField = Annotated[
    list[ShardInfo] | None,
    Field(
        description="Only for a sharded collection (a cluster): its shards under the serving "
        "placement (no lists and no replicas until the worker has built its clustering).",
    ),
]
ShardsProbed = Annotated[
    float | None,
    Field(description="Sharded collections: distinct shards searched per query (mean)."),
]
Partial = Annotated[
    bool | None,
    Field(description="With allow_partial: whether shards were left out of these hits."),
]
MissingShards = Annotated[
    list[int] | None,
    Field(description="With allow_partial: the shards left out (no live replica)."),
]


class PayloadIndexesUpdate(Strict):
    """The complete set of declared payload indexes (replaces the previous one)."""

    fields: PayloadIndexes


class IndexState(BaseModel):
    state: Literal["flat", "building", "ivf"]
    nlist: int | None
    clustering_version: int | None
    building: bool
    quantization: QuantizationSpec = Field(description="What the serving index's lists hold")
    bytes_per_vector: float = Field(
        description="Resident bytes per point of the serving index: codes (or float32 "
        "vectors), list ids, id maps, and re-rank vectors where they are held in memory"
    )


class RouterInfo(BaseModel):
    kind: Literal["centroid", "linear", "mlp"]
    version: int | None


class AdaptiveRow(BaseModel):
    target: float
    recall: float
    mean_nprobe: float
    mean_scanned: float


class RecallTableSummary(BaseModel):
    routing: Literal["centroid", "learned"]
    clustering_version: int | None
    router_version: int | None
    k: int
    n_queries: int
    nprobe: list[int]
    recall: list[float]
    recall_lower_bound: list[float]
    codes: dict[str, Any] | None = Field(
        default=None,
        description="The codes the table was measured on, by searching them (null: float32 "
        "lists); target_recall is served only while the lists hold these.",
    )
    adaptive: list[AdaptiveRow] | None = Field(
        default=None,
        description="With a learned router: the adaptive probing that target_recall uses, "
        "per calibrated target (values on the held-out calibration queries).",
    )


class CollectionInfo(BaseModel):
    name: str
    dim: int
    metric: Literal["ip", "cosine", "l2"]
    count: int
    clustering: Literal["kmeans", "spherical", "shallow"]
    nlist_requested: int | None
    default_nprobe: int | None
    index: IndexState
    router: RouterInfo
    recall_table: RecallTableSummary | None = Field(
        default=None,
        description="Held-out recall@k against nprobe of the active routing: what "
        "target_recall searches choose from (null until measured on logged queries).",
    )
    payload_indexes: dict[str, str] = Field(default_factory=dict)
    created_at: str
    shards: ShardsField = None


class CollectionList(BaseModel):
    collections: list[CollectionInfo]


class PointIn(Strict):
    id: PointId
    vector: list[float]
    payload: dict[str, Any] | None = None


class IndexParams(Strict):
    collection: Name


class IndexRequest(IndexParams):
    points: list[PointIn]


class IndexResponse(BaseModel):
    upserted: int
    seq: int


class DeleteRequest(Strict):
    collection: Name
    ids: list[PointId]


class DeleteResponse(BaseModel):
    deleted: int
    seq: int


class PointOut(BaseModel):
    id: str
    payload: dict[str, Any] | None
    vector: list[float]


# Page sizes: a page of 384-dim points at the cap is about 3 MB of JSON.
MAX_POINTS_PAGE = 1000
MAX_JOBS_PAGE = 500


class PointPage(BaseModel):
    points: list[PointOut] = Field(description="Live points in id order")
    next: str | None = Field(
        description="Pass as ``after`` for the following page; null on the last page"
    )


class SearchParams(Strict):
    collection: Name
    k: int = Field(default=10, ge=1)
    nprobe: int | None = Field(default=None, ge=1)
    target_recall: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Instead of nprobe: the smallest nprobe whose held-out recall@10 (lower "
        "confidence bound) reaches this; the response says which nprobe was used.",
    )
    routing: Routing = "auto"
    rerank: int | None = Field(
        default=None,
        ge=1,
        description="Compressed lists: the best code candidates re-scored with the exact "
        "vectors (absent: the collection's default for its kind; ignored for float lists).",
    )
    with_payload: bool = True
    log: bool = True
    min_seq: int | None = Field(default=None, ge=0)
    filter: SearchFilter = None
    allow_partial: bool = Field(
        default=False,
        description="Sharded collections: with a shard that has no live replica, answer from "
        "the others (flagged by partial and missing_shards) instead of 503.",
    )


class SearchRequest(SearchParams):
    vector: list[float]


class BatchSearchRequest(SearchParams):
    vectors: list[list[float]]


class Hit(BaseModel):
    id: str
    score: float
    payload: dict[str, Any] | None = None


Probes = Annotated[
    float | None,
    Field(
        description="Lists probed per query: the fixed nprobe, or with adaptive probing "
        "(target_recall and a learned router) the mean over the batch; null for exact search."
    ),
]
Scanned = Annotated[
    float, Field(description="Vectors scored per query in the probed lists (mean).")
]
Candidates = Annotated[
    float,
    Field(
        description=(
            "Candidates re-scored with exact vectors per query (mean): the best code "
            "candidates, or the emulator's proposals; 0 for float lists."
        )
    ),
]


class SearchResponse(BaseModel):
    hits: list[Hit]
    nprobe: Probes
    routing: Literal["learned", "centroid", "exact", "emulator"]
    router_version: int | None
    plan: SearchPlan
    matches: FilterMatches = None
    scanned: Scanned
    candidates: Candidates
    shards_probed: ShardsProbed = None
    partial: Partial = None
    missing_shards: MissingShards = None


class BatchResult(BaseModel):
    hits: list[Hit]


class BatchSearchResponse(BaseModel):
    results: list[BatchResult]
    nprobe: Probes
    routing: Literal["learned", "centroid", "exact", "emulator"]
    router_version: int | None
    plan: SearchPlan
    matches: FilterMatches = None
    scanned: Scanned
    candidates: Candidates
    shards_probed: ShardsProbed = None
    partial: Partial = None
    missing_shards: MissingShards = None


class BuildRequest(Strict):
    nlist: int | None = Field(default=None, ge=1, le=MAX_NLIST)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)


class TrainRouterRequest(Strict):
    collection: Name
    kind: Literal["linear", "mlp", "emulator"] = Field(
        default="linear",
        description="linear | mlp: a learned router of the lists; emulator: paper 002's "
        "two-level emulator, searched with routing 'emulator'.",
    )
    architecture: Literal["linear", "paper"] | None = Field(
        default=None,
        description="emulator only: 'linear' (default: a linear router, then learned "
        "per-point representatives) or 'paper' (the paper's 1-D convolutional networks).",
    )
    objective: Literal["top1", "topk", "mixed", "graded"] = Field(
        default="top1",
        description="top1: rank first the list of the exact nearest neighbour (the papers); "
        "topk: the lists of the exact top-k (recall@k); mixed: both; graded: the top-k "
        "lists weighted by their neighbours' exact scores, so near-ties of the nearest "
        "neighbour share the target (best measured, used by automatic retraining).",
    )
    k: int | None = Field(default=None, ge=1)


class JobAccepted(BaseModel):
    job_id: str


JobStatus = Literal["queued", "running", "succeeded", "failed"]


class JobOut(BaseModel):
    id: str
    kind: str
    collection: str | None
    status: JobStatus
    progress: float
    result: dict[str, Any] | None = Field(
        description="What a succeeded job did (build: clustering_version, nlist, n_points; "
        "train-router: router_version, activated, held-out recall of both routers); null "
        "until then."
    )
    error: str | None
    attempts: int
    created_at: str
    updated_at: str


class JobList(BaseModel):
    jobs: list[JobOut] = Field(description="Newest first")


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    store: bool
    indexes_loaded: bool
    applied_seq: int


REQUEST_BODIES: dict[str, type[BaseModel]] = {
    "index_points": IndexRequest,
    "search": SearchRequest,
    "search_batch": BatchSearchRequest,
}
