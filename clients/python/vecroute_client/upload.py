"""Bulk upload: points in batches, retried with backoff, with a progress bar for large inputs.

Retrying a batch is safe because ``/index`` is an upsert: the same id again replaces the
point. Batches are sent one after another so that a point repeated later in the input wins.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import httpx
import numpy as np
from tqdm.auto import tqdm

from vecroute_client.calls import PointId, is_json_vector, point_body, point_dict
from vecroute_client.errors import ApiError, UnavailableError
from vecroute_client.models import Payload, Point, UploadResult

PointLike = Point | dict[str, Any] | tuple[Any, ...]
# Inputs at least this large show a progress bar unless told otherwise.
LARGE_INPUT = 10_000


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for 503 answers and connection errors."""

    attempts: int = 8  # tries in all, the first included
    initial_s: float = 0.1
    max_s: float = 5.0
    multiplier: float = 2.0

    def delay(self, attempt: int, error: Exception) -> float | None:
        """Seconds to wait before retrying after ``attempt`` failures, or None to give up."""
        if attempt >= self.attempts or not retryable(error):
            return None
        backoff = min(self.max_s, self.initial_s * self.multiplier ** (attempt - 1))
        backoff *= random.uniform(0.5, 1.0)  # spread clients that failed together
        hinted = error.retry_after if isinstance(error, ApiError) else None
        return max(backoff, min(hinted or 0.0, self.max_s))


DEFAULT_RETRY = RetryPolicy()


def retryable(error: Exception) -> bool:
    return isinstance(error, UnavailableError | httpx.TransportError)


def array_points(
    vectors: np.ndarray,
    ids: Sequence[PointId] | None = None,
    payloads: Sequence[Payload | None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows of a 2-d array as points; ids default to the row numbers."""
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be a 2-d array, not {vectors.ndim}-d")
    n = len(vectors)
    if ids is not None and len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} vectors")
    if payloads is not None and len(payloads) != n:
        raise ValueError(f"{len(payloads)} payloads for {n} vectors")
    for i in range(n):
        yield point_body(
            ids[i] if ids is not None else str(i),
            vectors[i],
            payloads[i] if payloads is not None else None,
        )


def batches(points: Iterable[PointLike], size: int) -> Iterator[list[dict[str, Any]]]:
    if size < 1:
        raise ValueError("batch_size must be at least 1")
    it = (p if _is_body(p) else point_dict(p) for p in points)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _is_body(point: PointLike) -> TypeGuard[dict[str, Any]]:
    """Already shaped for ``/index`` (as :func:`array_points` yields): no second copy."""
    return isinstance(point, dict) and is_json_vector(point.get("vector"))


def progress_bar(total: int | None, show: bool | None) -> tqdm:
    if show is None:
        show = total is not None and total >= LARGE_INPUT
    return tqdm(total=total, disable=not show, unit="pt", desc="upload")


def known_length(points: Iterable[Any]) -> int | None:
    return len(points) if isinstance(points, Sequence | np.ndarray) else None


class Tally:
    """Counts an upload as it goes."""

    def __init__(self) -> None:
        self.upserted = 0
        self.batches = 0
        self.retries = 0
        self.seq: int | None = None

    def add(self, upserted: int, seq: int) -> None:
        self.upserted += upserted
        self.batches += 1
        self.seq = seq

    def result(self) -> UploadResult:
        return UploadResult(
            upserted=self.upserted, batches=self.batches, retries=self.retries, seq=self.seq
        )
