"""The payload filter of ``/search`` and ``/search/batch`` as OpenAPI models, with examples.

Strict models (no coercion, no unknown fields) so a type mismatch or an unknown operator is
a 422 at the door; the engine (app/engine/filters.py) parses the same document again for
the checks a schema cannot express (one operator per condition, bounds, nesting limits)
and defines what a filter means.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MatchValue = Annotated[str | int | bool, Field(description="a string, an integer or a boolean")]
PayloadIndexType = Literal["keyword", "integer", "float", "bool"]
PayloadIndexes = Annotated[
    dict[str, PayloadIndexType],
    Field(
        description="Payload keys (dotted paths allowed) to keep in typed in-memory columns, "
        "so filters on them need no payload scan: keyword (strings), integer, float, bool.",
        examples=[{"lang": "keyword", "year": "integer", "price": "float", "draft": "bool"}],
    ),
]

SearchPlan = Annotated[
    Literal["exact", "ivf"],
    Field(description="exact: every (matching) vector scored; ivf: probed lists only"),
]
FilterMatches = Annotated[
    int | None, Field(description="points passing the filter (null without one)")
]

EXAMPLES: list[Any] = [
    {"must": [{"key": "lang", "match": {"value": "en"}}]},
    {
        "must": [
            {"key": "year", "range": {"gte": 2020, "lt": 2025}},
            {"key": "tags", "match": {"any": ["faiss", "ivf"]}},
        ],
        "must_not": [{"key": "draft", "match": {"value": True}}],
    },
    {
        "should": [
            {"key": "meta.lang", "match": {"value": "de"}},
            {"must": [{"key": "price", "range": {"lt": 9.5}}, {"key": "stock", "exists": True}]},
        ]
    },
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class MatchSpec(_Strict):
    """Exactly one of ``value`` and ``any``."""

    value: MatchValue | None = None
    any: list[MatchValue] | None = Field(default=None, min_length=1, max_length=1024)


class RangeSpec(_Strict):
    """At least one bound, on numbers (booleans are not numbers)."""

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


class FieldCondition(_Strict):
    """One condition on the value at ``key``: exactly one of match, range, exists.

    A list value satisfies match or range when one of its elements does.
    """

    key: str = Field(min_length=1, max_length=256, description="payload key or dotted path")
    match: MatchSpec | None = None
    range: RangeSpec | None = None
    exists: bool | None = Field(default=None, description="true: present and not null")


class Filter(_Strict):
    """``must``: all hold; ``should``: at least one holds; ``must_not``: none holds.

    Items are conditions or nested filters. Searches with a filter return k hits whenever
    at least k points match, and report the plan they used.
    """

    model_config = ConfigDict(json_schema_extra={"examples": EXAMPLES})

    must: list[FieldCondition | Filter] = Field(default_factory=list)
    should: list[FieldCondition | Filter] = Field(default_factory=list)
    must_not: list[FieldCondition | Filter] = Field(default_factory=list)


SearchFilter = Annotated[
    Filter | None,
    Field(description="Only points whose payload passes; k hits whenever at least k match."),
]
