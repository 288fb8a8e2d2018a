"""All configuration, read once from the environment (prefix ``VECROUTE_``) and an optional .env."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VECROUTE_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file under data_dir"
    )
    # Full-access and read-only (search and GET) keys. Each may list several keys separated
    # by commas, all accepted: that is how a key is rotated without downtime (README).
    api_key: str | None = None
    read_api_key: str | None = None

    # Request limits: the API rejects anything larger before touching the store.
    max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_k: int = Field(default=1000, ge=1)
    max_batch_points: int = Field(default=10_000, ge=1)
    max_batch_queries: int = Field(default=1_000, ge=1)
    max_dim: int = Field(default=4096, ge=1)
    max_collections: int = Field(default=1000, ge=1)
    # /index bodies up to this size are parsed in-process; larger ones in a worker process
    # (app/service/parsing.py), where parsing cannot hold this process's GIL.
    index_inline_max_bytes: int = Field(default=256 * 1024, ge=0)

    # Search defaults and read-your-writes.
    default_nprobe: int = Field(default=8, ge=1)
    # routing "emulator" (paper 002): level 2's best members proposed per probed list, each
    # re-scored exactly.
    emulator_candidates_per_list: int = Field(default=10, ge=1)
    min_seq_timeout_s: float = Field(default=2.0, ge=0)
    # Searches scanning fewer vectors run on the event loop (a thread hop costs ~100 us).
    inline_search_max_vectors: int = Field(default=20_000, ge=0)
    # Bitmaps of recently used filters (all collections), valid until a write (0: off).
    filter_cache_mib: int = Field(default=64, ge=0)
    # Copies of repeated filters' matching vectors (all collections), built when they pay
    # for themselves, valid until a write (0: off). A 50% filter's copy is half the index.
    filter_view_mib: int = Field(default=256, ge=0)

    # Compressed lists (quantization kinds): where the exact vectors that re-rank code
    # candidates live: "float32" or "float16" in memory, or "mmap": float32 in a local file
    # under data_dir/vectors, paged in on demand (resident memory per point far below the
    # vector's size). Re-ranking defaults: the kind's measured default (README).
    exact_vectors: Literal["float32", "float16", "mmap"] = "float32"
    max_rerank: int = Field(default=10_000, ge=1)

    # Replication and snapshots.
    catchup_interval_s: float = Field(default=0.2, gt=0, le=0.5)
    snapshot_interval_s: float = Field(default=60.0, gt=0)

    # Index building and router training: the worker's automatic policy (worker/policy.py).
    embedded_worker: bool = True
    auto_policy: bool = True
    schedule_interval_s: float = Field(default=2.0, gt=0)
    build_min_points: int = Field(default=4096, ge=1)
    recluster_growth: float = Field(default=2.0, gt=1)
    recluster_shrink: float = Field(default=0.5, gt=0, lt=1)
    train_min_queries: int = Field(default=1000, ge=1)
    # Paper 003's catalyzer (quantization catalyzer-sign/-lattice), trained by the quantize
    # job: it mines each point's 50th output neighbour and holds out 10% to choose lambda, so
    # fewer points than this are refused (409); epochs and hidden width set its cost.
    catalyzer_min_points: int = Field(default=2000, ge=1000)
    catalyzer_epochs: int = Field(default=10, ge=1)
    catalyzer_hidden: int = Field(default=1024, ge=16)
    retrain_min_new_queries: int = Field(default=5000, ge=1)
    job_lease_s: float = Field(default=30.0, gt=0)
    job_max_attempts: int = Field(default=3, ge=1)
    worker_poll_s: float = Field(default=0.5, gt=0)

    # Query logging for router training: buffered, flushed off the request path.
    query_log_flush_s: float = Field(default=1.0, gt=0)
    query_log_max_buffer: int = Field(default=10_000, ge=1)
    # Newest logged queries kept per collection (and the most a training job reads).
    query_log_retention: int = Field(default=200_000, ge=1)

    # Sharded collections (issue 19): a Ray cluster's address, or "local" to start one in
    # this process for trying it. Unset: one process, and ray is never imported.
    cluster_address: str | None = None
    # A replica that does not answer a search within this is lost: its shard's next answers.
    cluster_search_timeout_s: float = Field(default=10.0, gt=0)
    # How often the coordinator looks for new clusterings and routers to place.
    cluster_sync_interval_s: float = Field(default=1.0, gt=0)
    # How long new replicas may take to load before a rebalance gives up (the old serve on).
    cluster_ready_timeout_s: float = Field(default=600.0, gt=0)
    # The newest logged queries whose co-probes place the lists.
    placement_queries: int = Field(default=20_000, ge=1)
    # Where each node keeps its shard replicas' snapshots (written every
    # snapshot_interval_s; a restarted replica starts from its shard's file). Unset:
    # data_dir/shard-snapshots, as an absolute path.
    cluster_snapshot_dir: Path | None = None

    log_level: str = "INFO"
    # One JSON line per request (method, path, status, ms, request_id); off by default
    # because it costs a log write on every search.
    access_log: bool = False

    @model_validator(mode="after")
    def _read_key_needs_full_key(self) -> Settings:
        if self.read_api_key and not self.api_key:
            raise ValueError("VECROUTE_READ_API_KEY needs VECROUTE_API_KEY (else writes are open)")
        return self

    @property
    def api_keys(self) -> tuple[str, ...]:
        return _keys(self.api_key)

    @property
    def read_api_keys(self) -> tuple[str, ...]:
        return _keys(self.read_api_key)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vecroute.db').resolve()}"

    @property
    def snapshot_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def shard_snapshot_dir(self) -> Path:
        return (self.cluster_snapshot_dir or self.data_dir / "shard-snapshots").resolve()

    @property
    def exact_vectors_dir(self) -> Path:
        return self.data_dir / "vectors"


def _keys(value: str | None) -> tuple[str, ...]:
    return tuple(k.strip() for k in (value or "").split(",") if k.strip())
