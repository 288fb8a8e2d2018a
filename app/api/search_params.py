"""A search body's parameters (all but its vectors), validated once per parameter set.

Searches repeat their parameters (collection, k, nprobe, routing) while the vector changes.
In the server each search meets caches that the engine's scan of its lists has just flushed;
there pydantic's validation and the options took ~35 us of CPU per search, more than the
rest of the handler's parsing but orjson's (bench/request_cpu.py --stub-touch-mb 3). So the
validated parameters and their options are kept per parameter set, by one cache per app
(made with its settings, injected into the fast path and the FastAPI routes).
"""

from __future__ import annotations

from typing import Any

from app.api.schemas import SearchParams
from app.engine.filters import Filter, FilterError, parse_filter
from app.service.errors import InvalidInput
from app.service.search import SearchOptions
from app.settings import Settings

Validated = tuple[SearchParams, SearchOptions]
# Only bodies of plain scalars are kept (a filter is validated every time).
_SCALARS = frozenset({str, int, float, bool, type(None)})


class SearchParamCache:
    """Up to ``kept`` parameter sets, then all forgotten (a client cycling through more
    sets pays the validation, and memory stays bounded)."""

    def __init__(self, settings: Settings, kept: int = 256) -> None:
        self.settings = settings
        self.kept = kept
        self._validated: dict[tuple[Any, ...], Validated] = {}

    def __len__(self) -> int:
        return len(self._validated)

    def resolve(self, body: dict[str, Any]) -> Validated:
        """The body's parameters and the search options they give (InvalidInput or
        pydantic's ValidationError when they are not valid; errors are not kept)."""
        values = tuple(body.values())
        # A key holds each value's type, since True, 1 and 1.0 are one key to a dict.
        kinds = tuple(map(type, values))
        if not _SCALARS.issuperset(kinds):
            return self._validate(body)
        key = (tuple(body), values, kinds)
        kept = self._validated.get(key)
        if kept is None:
            kept = self._validate(body)
            if len(self._validated) >= self.kept:
                self._validated.clear()
            self._validated[key] = kept
        return kept

    def _validate(self, body: dict[str, Any]) -> Validated:
        params = SearchParams.model_validate(body)
        return params, search_options(params, self.settings)


def search_options(params: SearchParams, settings: Settings) -> SearchOptions:
    """The engine's options for validated parameters, checked against the settings' limits."""
    if params.k > settings.max_k:
        raise InvalidInput(f"k must be in [1, {settings.max_k}]")
    if params.target_recall is not None and params.nprobe is not None:
        raise InvalidInput("give nprobe or target_recall, not both")
    if params.target_recall is not None and params.routing == "exact":
        raise InvalidInput("target_recall does not apply to exact search")
    if params.rerank is not None and params.rerank > settings.max_rerank:
        raise InvalidInput(f"rerank must be in [1, {settings.max_rerank}]")
    return SearchOptions(
        params.k,
        params.nprobe,
        params.routing,
        params.with_payload,
        params.target_recall,
        _filter(params),
        settings.emulator_candidates_per_list,
        params.rerank,
        allow_partial=params.allow_partial,
    )


def _filter(params: SearchParams) -> Filter | None:
    """The engine's filter; the schema checked the shape, the engine checks the rest."""
    if params.filter is None:
        return None
    try:
        return parse_filter(params.filter.model_dump(exclude_unset=True))
    except FilterError as exc:
        raise InvalidInput(str(exc)) from None
