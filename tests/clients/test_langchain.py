"""``VecrouteVectorStore`` against a real server: LangChain's standard vector-store suite,
then what the suite does not cover (metadata filters, scores, MMR, creation on first write)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests.vectorstores import VectorStoreIntegrationTests
from vecroute_client import VecrouteClient
from vecroute_client.langchain import VecrouteVectorStore
from vecroute_client.langchain.filters import to_vecroute

from tests.api.servers import Server
from tests.clients.conftest import readme_example, unique


class TestStandardSuite(VectorStoreIntegrationTests):
    """langchain-tests' own checks, sync and async, one fresh collection per test."""

    @pytest.fixture
    def vectorstore(self, server: Server) -> Iterator[VectorStore]:
        store = VecrouteVectorStore(
            embedding=self.get_embeddings(), collection_name=unique("lc"), url=server.url
        )
        try:
            yield store
        finally:
            store.delete()  # the whole collection
            store.close()


class Table(Embeddings):
    """Fixed 3-d vectors per text, so that tests know which documents are nearest."""

    VECTORS: ClassVar[dict[str, list[float]]] = {
        "apple": [1.0, 0.0, 0.0],
        "apple pie": [0.99, 0.14, 0.0],
        "banana": [0.7, 0.7, 0.1],
        "cherry": [0.0, 1.0, 0.0],
        "durian": [0.0, 0.0, 1.0],
    }

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.VECTORS[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.VECTORS[text]


FRUIT = [
    ("apple", {"colour": "red", "price": 3, "weight": 0.2, "tags": ["pie", "tree"]}),
    ("apple pie", {"colour": "brown", "price": 12, "weight": 1.5, "tags": ["pie"]}),
    ("banana", {"colour": "yellow", "price": 2, "weight": 0.2, "origin": {"country": "EC"}}),
    ("cherry", {"colour": "red", "price": 8, "weight": 0.01, "tags": ["tree"]}),
    ("durian", {"colour": "green", "price": 20, "weight": 2.0}),
]


@pytest.fixture
def fruit(server: Server) -> Iterator[VecrouteVectorStore]:
    texts, metas = zip(*FRUIT, strict=True)
    store = VecrouteVectorStore.from_texts(
        list(texts), Table(), list(metas), ids=list(texts), collection_name=unique("fruit"),
        url=server.url,
    )  # fmt: skip
    yield store
    store.delete()
    store.close()


def _ids(docs: list[Document]) -> list[str]:
    return [d.id or "" for d in docs]


@pytest.mark.parametrize(
    ("langchain_filter", "expected"),
    [
        ({"colour": "red"}, ["apple", "cherry"]),
        ({"colour": {"$eq": "red"}, "price": {"$gt": 5}}, ["cherry"]),
        ({"colour": {"$ne": "red"}}, ["apple pie", "banana", "durian"]),
        ({"colour": {"$in": ["green", "yellow"]}}, ["banana", "durian"]),
        ({"colour": {"$nin": ["red", "brown"]}}, ["banana", "durian"]),
        ({"price": {"$gte": 3, "$lt": 12}}, ["apple", "cherry"]),
        ({"price": {"$between": [8, 12]}}, ["apple pie", "cherry"]),
        ({"weight": 0.2}, ["apple", "banana"]),
        ({"weight": {"$in": [0.01, 2.0]}}, ["cherry", "durian"]),
        ({"tags": "tree"}, ["apple", "cherry"]),
        ({"origin.country": "EC"}, ["banana"]),
        ({"tags": {"$exists": False}}, ["banana", "durian"]),
        ({"$or": [{"colour": "green"}, {"price": {"$lte": 2}}]}, ["banana", "durian"]),
        ({"$and": [{"colour": "red"}, {"$not": {"price": 3}}]}, ["cherry"]),
        ({"must": [{"key": "metadata.colour", "match": {"value": "brown"}}]}, ["apple pie"]),
    ],
)
def test_metadata_filters_select_the_documents_they_name(
    fruit: VecrouteVectorStore, langchain_filter: dict, expected: list[str]
) -> None:
    found = fruit.similarity_search("apple", k=5, filter=langchain_filter)
    assert sorted(_ids(found)) == expected


def test_filters_it_cannot_express_are_refused_before_a_request() -> None:
    for bad in ({"colour": {"$like": "re%"}}, {"$nor": [{"a": 1}]}, {"price": {"$gt": "3"}},
                {"a": {"$in": []}}, {"a": [1, 2]}):  # fmt: skip
        with pytest.raises(ValueError):
            to_vecroute(bad)


def test_scores_are_similarities_best_first(fruit: VecrouteVectorStore) -> None:
    scored = fruit.similarity_search_with_score("apple", k=3)
    assert (scored[0][0].id, scored[0][0].page_content) == ("apple", "apple")
    assert _ids([d for d, _ in scored]) == ["apple", "apple pie", "banana"]
    scores = [s for _, s in scored]
    assert scores[0] == pytest.approx(1.0, abs=1e-5) and scores == sorted(scores, reverse=True)
    assert scored[1][0].metadata == dict(FRUIT[1][1])
    relevance = fruit.similarity_search_with_relevance_scores("durian", k=5)
    assert relevance[0][1] == pytest.approx(1.0, abs=1e-5)
    assert all(0.0 <= r <= 1.0 for _, r in relevance)
    by_vector = fruit.similarity_search_by_vector([0.0, 0.9, 0.1], k=1)
    assert _ids(by_vector) == ["cherry"]


def test_mmr_trades_a_near_duplicate_for_diversity(fruit: VecrouteVectorStore) -> None:
    plain = fruit.similarity_search("apple", k=2)
    assert _ids(plain) == ["apple", "apple pie"]
    diverse = fruit.max_marginal_relevance_search("apple", k=2, fetch_k=5, lambda_mult=0.3)
    assert _ids(diverse)[0] == "apple" and _ids(diverse)[1] != "apple pie"
    filtered = fruit.max_marginal_relevance_search("apple", k=2, filter={"colour": "red"})
    assert sorted(_ids(filtered)) == ["apple", "cherry"]


async def test_async_mmr_and_filters(fruit: VecrouteVectorStore) -> None:
    diverse = await fruit.amax_marginal_relevance_search("apple", k=2, fetch_k=5, lambda_mult=0.3)
    assert _ids(diverse)[0] == "apple" and _ids(diverse)[1] != "apple pie"
    found = await fruit.asimilarity_search("cherry", k=5, filter={"price": {"$gt": 10}})
    assert sorted(_ids(found)) == ["apple pie", "durian"]


def test_the_collection_is_created_by_the_first_write_with_the_metric(server: Server) -> None:
    name = unique("first-write")
    with VecrouteClient(server.url) as client:
        store = VecrouteVectorStore(
            embedding=Table(), collection_name=name, client=client, metric="l2"
        )
        assert store.similarity_search("apple") == []  # nothing yet, and no error
        assert name not in [c.name for c in client.list_collections()]
        store.add_texts(["cherry", "durian"], ids=["c", "d"])
        info = client.get_collection(name)
        assert (info.dim, info.metric, info.count) == (3, "l2", 2)
        [(doc, score)] = store.similarity_search_with_score("cherry", k=1)
        assert doc.id == "c" and score == pytest.approx(0.0, abs=1e-6)  # -squared distance
        other = VecrouteVectorStore(embedding=Table(), collection_name=name, client=client)
        other.add_texts(["apple"], ids=["a"])  # the collection exists already: reused
        assert client.get_collection(name).count == 3
        store.delete()
        assert name not in [c.name for c in client.list_collections()]


def test_readme_example(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    exec(readme_example(1, server.url), {})
    scored, diverse, retrieved = capsys.readouterr().out.strip().splitlines()
    assert "IVF lists route queries" in scored and "HNSW" not in scored  # year filter
    assert "IVF" in diverse and "HNSW" in diverse
    assert "IVF lists route queries" in retrieved and "HNSW" not in retrieved
