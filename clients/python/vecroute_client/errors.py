"""Errors the server answered with, raised as exceptions that carry its problem+json."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    """A 4xx/5xx answer. ``problem`` is the RFC 9457 document (``type``, ``title``,
    ``status``, ``detail``, and ``errors`` on 422)."""

    def __init__(self, status: int, problem: dict[str, Any], retry_after: float | None = None):
        self.status = status
        self.problem = problem
        self.retry_after = retry_after
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}")

    @property
    def type(self) -> str:
        return str(self.problem.get("type", "about:blank"))

    @property
    def slug(self) -> str:
        """The last segment of ``type`` (``collection-not-found``, ``too-few-queries``…)."""
        return self.type.rsplit("/", 1)[-1]

    @property
    def detail(self) -> str:
        return str(self.problem.get("detail", ""))


class NotFoundError(ApiError):
    """404: a collection, point or job that does not exist."""


class ConflictError(ApiError):
    """409: the collection exists, too few logged queries, no learned router yet…"""


class UnavailableError(ApiError):
    """503: the store is unreachable, indexes are loading, or ``min_seq`` is not reached
    yet; worth retrying after ``retry_after`` seconds."""


_BY_STATUS: dict[int, type[ApiError]] = {
    404: NotFoundError,
    409: ConflictError,
    503: UnavailableError,
}


def raise_for_problem(response: httpx.Response) -> None:
    """Raise the response's problem as an :class:`ApiError` when it is an error."""
    if response.is_success:
        return
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):  # not from vecroute (a proxy's page, say)
        problem = {"title": response.reason_phrase, "status": response.status_code,
                   "detail": response.text[:500]}  # fmt: skip
    retry_after = response.headers.get("retry-after")
    cls = _BY_STATUS.get(response.status_code, ApiError)
    raise cls(
        response.status_code,
        problem,
        float(retry_after) if retry_after and retry_after.isdigit() else None,
    )
