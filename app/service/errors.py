"""Domain errors: typed, raised by the service, mapped to problem+json in one place (api)."""

from __future__ import annotations


class DomainError(Exception):
    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(DomainError):
    status = 422
    title = "Invalid request"
    slug = "invalid-request"


class MalformedBody(DomainError):
    status = 400
    title = "Malformed request body"
    slug = "malformed-body"


class NotFound(DomainError):
    status = 404
    title = "Not found"
    slug = "not-found"


class CollectionNotFound(NotFound):
    slug = "collection-not-found"


class PointNotFound(NotFound):
    slug = "point-not-found"


class JobNotFound(NotFound):
    slug = "job-not-found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class CollectionExists(Conflict):
    slug = "collection-exists"


class TooManyCollections(Conflict):
    slug = "too-many-collections"


class TooFewQueries(Conflict):
    slug = "too-few-queries"


class NoLearnedRouter(Conflict):
    slug = "no-learned-router"


class NoRecallTable(Conflict):
    slug = "no-recall-table"


class NoCluster(Conflict):
    """Shards or replicas were asked of a service that runs in one process."""

    slug = "no-cluster"


class NoEmulator(Conflict):
    slug = "no-emulator"


class CodesUnavailable(Conflict):
    slug = "codes-unavailable"


class Unavailable(DomainError):
    status = 503
    title = "Service unavailable"
    slug = "unavailable"


class NotReady(Unavailable):
    slug = "not-ready"


class SeqNotReached(Unavailable):
    slug = "min-seq-not-reached"


class ShardDown(Unavailable):
    """A shard of a sharded collection has no live replica: its answer would be short."""

    slug = "shard-unavailable"
