"""Python client for vecroute: ``VecrouteClient`` (sync) and ``AsyncVecrouteClient``."""

from vecroute_client.aio import AsyncVecrouteClient
from vecroute_client.client import VecrouteClient
from vecroute_client.errors import ApiError, ConflictError, NotFoundError, UnavailableError
from vecroute_client.models import (
    BatchSearchResult,
    CollectionInfo,
    Deleted,
    Hit,
    Job,
    Point,
    Ready,
    SearchResult,
    Shard,
    ShardReplica,
    UploadResult,
    Upserted,
)
from vecroute_client.upload import RetryPolicy

__all__ = [
    "ApiError",
    "AsyncVecrouteClient",
    "BatchSearchResult",
    "CollectionInfo",
    "ConflictError",
    "Deleted",
    "Hit",
    "Job",
    "NotFoundError",
    "Point",
    "Ready",
    "RetryPolicy",
    "SearchResult",
    "Shard",
    "ShardReplica",
    "UnavailableError",
    "UploadResult",
    "Upserted",
    "VecrouteClient",
]
