"""A LangChain ``VectorStore`` over a vecroute collection.

Each document is one point: its id, the embedding of its text, and the payload
``{"page_content": text, "metadata": {...}}``. The collection is created (with the
embedding's dimension and ``metric``) by the first write when it does not exist; reading
a collection that does not exist finds nothing. Metadata filters: see ``filters.py``.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from vecroute_client.aio import AsyncVecrouteClient
from vecroute_client.calls import Metric, SearchOptions, point_body
from vecroute_client.client import VecrouteClient
from vecroute_client.core import DEFAULT_URL
from vecroute_client.errors import ConflictError, NotFoundError
from vecroute_client.langchain.filters import to_vecroute
from vecroute_client.models import Hit, Point

CONTENT = "page_content"
METADATA = "metadata"
# Search options a caller may pass through LangChain's **kwargs.
SEARCH_OPTIONS = ("nprobe", "target_recall", "routing", "log")
DELETE_BATCH = 1000


class VecrouteVectorStore(VectorStore):
    """``VecrouteVectorStore(embedding=..., collection_name="docs", url=..., api_key=None)``.

    Give ``client`` to share a :class:`VecrouteClient` (its url and key are then used).
    Async methods use an :class:`AsyncVecrouteClient` on the same server, sharing the sync
    client's read-your-writes sequence number.
    """

    def __init__(
        self,
        embedding: Embeddings,
        collection_name: str,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        client: VecrouteClient | None = None,
        metric: Metric = "cosine",
        *,
        batch_size: int = 256,
    ) -> None:
        self._embedding = embedding
        self.collection_name = collection_name
        self.metric = metric
        self.batch_size = batch_size
        self._owns_client = client is None
        self.client = client or VecrouteClient(url, api_key)
        self._aclient: AsyncVecrouteClient | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._created = False

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        collection_name: str = "langchain",
        **kwargs: Any,
    ) -> VecrouteVectorStore:
        store = cls(embedding=embedding, collection_name=collection_name, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    # -- writes ---------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        texts = list(texts)
        if not texts:
            return []
        ids = _ids(ids, len(texts))
        vectors = self._embedding.embed_documents(texts)
        self._ensure_collection(len(vectors[0]))
        points = _points(ids, vectors, texts, metadatas)
        self.client.upload_points(self.collection_name, points, batch_size=self.batch_size)
        return ids

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        texts = list(texts)
        if not texts:
            return []
        ids = _ids(ids, len(texts))
        vectors = await self._embedding.aembed_documents(texts)
        await self._aensure_collection(len(vectors[0]))
        points = _points(ids, vectors, texts, metadatas)
        client = self._async_client()
        await client.upload_points(self.collection_name, points, batch_size=self.batch_size)
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete these documents; ``ids=None`` deletes the whole collection."""
        try:
            if ids is None:
                self.client.delete_collection(self.collection_name)
                self._created = False
            for chunk in _chunks(ids or []):
                self.client.delete(self.collection_name, chunk)
        except NotFoundError as exc:
            _missing_collection(exc)
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        client = self._async_client()
        try:
            if ids is None:
                await client.delete_collection(self.collection_name)
                self._created = False
            for chunk in _chunks(ids or []):
                await client.delete(self.collection_name, chunk)
        except NotFoundError as exc:
            _missing_collection(exc)
        return True

    def _ensure_collection(self, dim: int) -> None:
        if not self._created:
            try:
                self.client.create_collection(self.collection_name, dim, self.metric)
            except ConflictError as exc:
                _existing_collection(exc)
            self._created = True

    async def _aensure_collection(self, dim: int) -> None:
        if not self._created:
            try:
                await self._async_client().create_collection(self.collection_name, dim, self.metric)
            except ConflictError as exc:
                _existing_collection(exc)
            self._created = True

    # -- reads ----------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        try:
            return [_document(p) for p in self.client.get_points(self.collection_name, ids)]
        except NotFoundError as exc:
            _missing_collection(exc)
            return []

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        try:
            points = await self._async_client().get_points(self.collection_name, ids)
        except NotFoundError as exc:
            _missing_collection(exc)
            return []
        return [_document(p) for p in points]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents with the metric's similarity (higher is closer; for ``l2`` the
        negative squared distance)."""
        vector = self._embedding.embed_query(query)
        return self.similarity_search_with_score_by_vector(vector, k, **kwargs)

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        vector = await self._embedding.aembed_query(query)
        return await self.asimilarity_search_with_score_by_vector(vector, k, **kwargs)

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        found = self.similarity_search_with_score_by_vector(embedding, k, **kwargs)
        return [doc for doc, _ in found]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[Document]:
        found = await self.asimilarity_search_with_score_by_vector(embedding, k, **kwargs)
        return [doc for doc, _ in found]

    def similarity_search_with_score_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        return _scored(self._hits(embedding, k, _options(filter, kwargs)))

    async def asimilarity_search_with_score_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        return _scored(await self._ahits(embedding, k, _options(filter, kwargs)))

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        vector = self._embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, **kwargs
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """The ``fetch_k`` nearest, then ``k`` of them chosen for relevance and diversity
        (their vectors read with one request per candidate)."""
        hits = self._hits(embedding, fetch_k, _options(filter, kwargs))
        points = self.client.get_points(self.collection_name, [h.id for h in hits])
        return _diverse(embedding, points, k, lambda_mult)

    async def amax_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        vector = await self._embedding.aembed_query(query)
        return await self.amax_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, **kwargs
        )

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        hits = await self._ahits(embedding, fetch_k, _options(filter, kwargs))
        points = await self._async_client().get_points(self.collection_name, [h.id for h in hits])
        return _diverse(embedding, points, k, lambda_mult)

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Scores to [0, 1]: cosine and ip (for unit vectors) from [-1, 1]; l2 from the
        squared distance of unit vectors (at most 4)."""
        if self.metric == "l2":
            return lambda score: 1.0 - math.sqrt(max(-score, 0.0)) / 2.0
        return lambda score: (1.0 + score) / 2.0

    def _hits(self, vector: list[float], k: int, options: SearchOptions) -> list[Hit]:
        try:
            return self.client.search(self.collection_name, vector, k, **options).hits
        except NotFoundError as exc:
            _missing_collection(exc)
            return []

    async def _ahits(self, vector: list[float], k: int, options: SearchOptions) -> list[Hit]:
        try:
            found = await self._async_client().search(self.collection_name, vector, k, **options)
        except NotFoundError as exc:
            _missing_collection(exc)
            return []
        return found.hits

    def _async_client(self) -> AsyncVecrouteClient:
        """One async client per event loop (an httpx pool cannot outlive its loop), sharing
        the sync client's session so read-your-writes spans both."""
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aloop is not loop:
            session = self.client.session
            self._aclient = AsyncVecrouteClient(session.url, session.api_key)
            self._aclient.session = session
            self._aloop = loop
        return self._aclient


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[start : start + DELETE_BATCH] for start in range(0, len(ids), DELETE_BATCH)]


def _ids(ids: Sequence[str | None] | None, n: int) -> list[str]:
    """The given ids, with new UUIDs where none is given."""
    if ids is not None and len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} texts")
    return [i if i else str(uuid.uuid4()) for i in (ids or [None] * n)]


def _points(
    ids: list[str],
    vectors: list[list[float]],
    texts: list[str],
    metadatas: list[dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    if metadatas is not None and len(metadatas) != len(texts):
        raise ValueError(f"{len(metadatas)} metadatas for {len(texts)} texts")
    metas = metadatas or [{}] * len(texts)
    return [
        point_body(i, v, {CONTENT: t, METADATA: m or {}})
        for i, v, t, m in zip(ids, vectors, texts, metas, strict=True)
    ]


def _document(point: Point | Hit) -> Document:
    payload = point.payload or {}
    return Document(
        id=point.id,
        page_content=str(payload.get(CONTENT, "")),
        metadata=dict(payload.get(METADATA) or {}),
    )


def _scored(hits: list[Hit]) -> list[tuple[Document, float]]:
    return [(_document(hit), hit.score) for hit in hits]


def _diverse(query: list[float], points: list[Point], k: int, lambda_mult: float) -> list[Document]:
    if not points:
        return []
    chosen = maximal_marginal_relevance(
        np.asarray(query, dtype=np.float32), [p.vector for p in points], lambda_mult, k
    )
    return [_document(points[i]) for i in chosen]


def _options(filter_: dict[str, Any] | None, kwargs: dict[str, Any]) -> SearchOptions:
    options: dict[str, Any] = {key: kwargs[key] for key in SEARCH_OPTIONS if key in kwargs}
    vecroute_filter = to_vecroute(filter_)
    if vecroute_filter is not None:
        options["filter"] = vecroute_filter
    return SearchOptions(**options)  # type: ignore[typeddict-item]


def _existing_collection(exc: ConflictError) -> None:
    """Creating on first write: another writer may have created it first."""
    if exc.slug != "collection-exists":
        raise exc


def _missing_collection(exc: NotFoundError) -> None:
    """Nothing was written yet: reads find nothing, deletes have nothing to do."""
    if exc.slug != "collection-not-found":
        raise exc
