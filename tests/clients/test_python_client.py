"""``vecroute_client`` (clients/python) against a real server, SQLite and PostgreSQL:
every endpoint, typed results, errors as exceptions, bulk upload, read-your-writes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from vecroute_client import (
    ApiError,
    AsyncVecrouteClient,
    ConflictError,
    Hit,
    NotFoundError,
    Point,
    RetryPolicy,
    UnavailableError,
    VecrouteClient,
)

from tests.api.servers import Server
from tests.clients.conftest import readme_example, unique
from tests.waiting import wait_until

DIM = 8
KEY = "client-test-key"


@pytest.fixture
def client(server: Server) -> Iterator[VecrouteClient]:
    with VecrouteClient(server.url) as c:
        yield c


@pytest.fixture(scope="module")
def replica(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second API process on the same store, catching up as slowly as allowed, with an
    API key (the first has none)."""
    r = Server(
        server.env["VECROUTE_DATABASE_URL"],
        tmp_path_factory.mktemp("replica"),
        VECROUTE_CATCHUP_INTERVAL_S="0.5",
        VECROUTE_EMBEDDED_WORKER="false",
        VECROUTE_API_KEY=KEY,
    )
    r.env["VECROUTE_MIN_SEQ_TIMEOUT_S"] = "10"
    r.launch()
    try:
        _wait_ready(r, KEY)
        yield r
    finally:
        r.stop()


def _wait_ready(s: Server, api_key: str) -> None:
    """``Server.wait_ready`` asks without a key; this replica wants one even for /readyz."""
    with VecrouteClient(s.url, api_key, timeout=1) as client:

        def ready() -> bool:
            assert s.proc is not None and s.proc.poll() is None, "replica exited"
            try:
                return client.readyz().ready
            except (UnavailableError, httpx.TransportError):
                return False

        wait_until(ready, what=f"the server on port {s.port} to be ready")


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def test_tour_of_every_endpoint(client: VecrouteClient) -> None:
    name = unique("tour")
    info = client.create_collection(name, 2, "ip", payload_indexes={"lang": "keyword"})
    assert (info.name, info.dim, info.metric, info.count) == (name, 2, "ip", 0)
    assert info.index.state == "flat" and info.payload_indexes == {"lang": "keyword"}
    assert name in [c.name for c in client.list_collections()]

    written = client.upsert(
        name,
        [
            {"id": "a1", "vector": [0.1, 0.2], "payload": {"lang": "en"}},
            ("a2", np.array([0.3, 0.4])),
            Point(id="a3", vector=[-1.0, -1.0], payload={"lang": "de"}),
            (7, [0.0, 0.1]),
        ],
    )
    assert written.upserted == 4 and written.seq == client.last_seq
    assert client.get_collection(name).count == 4

    found = client.search(name, [1, 1], k=2)
    assert [(h.id, h.payload) for h in found.hits] == [("a2", None), ("a1", {"lang": "en"})]
    assert [h.score for h in found.hits] == pytest.approx([0.7, 0.3], abs=1e-6)
    assert all(isinstance(h, Hit) for h in found.hits)
    assert found.routing == "exact" and found.plan == "exact"
    de = {"must": [{"key": "lang", "match": {"value": "de"}}]}
    only_de = client.search(name, [1, 1], k=5, filter=de)
    assert [h.id for h in only_de.hits] == ["a3"] and only_de.matches == 1
    batch = client.search_batch(name, np.array([[1, 1], [-1, -1]]), k=1, with_payload=False)
    assert [r.hits[0].id for r in batch.results] == ["a2", "a3"]

    point = client.get_point(name, "7")
    assert point.id == "7" and point.vector == pytest.approx([0.0, 0.1]) and point.payload is None
    assert [p.id for p in client.get_points(name, ["a3", "missing", "a1"])] == ["a3", "a1"]
    deleted = client.delete(name, ["a3", "missing"])
    assert deleted.deleted == 1 and deleted.seq == client.last_seq > written.seq
    indexes = client.set_payload_indexes(name, {"year": "integer"}).payload_indexes
    assert indexes == {"year": "integer"}

    job = client.wait_for_job(client.build(name, nlist=1), timeout_s=60, poll_s=0.05)
    assert (job.kind, job.status, job.result and job.result["nlist"]) == ("build", "succeeded", 1)
    # swapped in by catch-up
    wait_until(lambda: client.get_collection(name).index.state == "ivf", what="the IVF")
    with pytest.raises(ConflictError) as refused:
        client.train_router(name, kind="linear")
    assert refused.value.slug == "too-few-queries" and refused.value.problem["status"] == 409
    assert client.router_report(name)["learned"] is None
    assert client.router_report_svg(name).startswith("<svg")

    assert client.healthz() and client.readyz().ready
    assert re.search(r"^vecroute_\w+", client.metrics(), re.MULTILINE)
    assert "/search" in client.openapi()["paths"]
    client.delete_collection(name)
    assert name not in [c.name for c in client.list_collections()]


def test_numpy_vectors_of_any_layout_and_dtype_arrive_as_their_numbers(
    client: VecrouteClient,
) -> None:
    """Bodies are encoded by orjson, arrays as they are; whatever numpy hands the client
    (strided views, integers, booleans, float64) arrives as the same numbers, and payload
    keys that are not strings arrive as strings, as the standard json module writes them."""
    name = unique("arrays")
    client.create_collection(name, 4, "ip")
    wide = np.arange(8, dtype=np.float64).reshape(1, 8) / 8
    points = [
        ("strided", wide[0, ::2]),  # not contiguous
        ("ints", np.array([1, 0, 2, 0])),
        ("bools", np.array([True, False, True, False])),
        ("f32", np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32), {1: "one"}),
    ]
    client.upsert(name, points)
    for point in points:
        stored = client.get_point(name, point[0])
        assert stored.vector == np.asarray(point[1], dtype=np.float32).tolist()
    assert client.get_point(name, "f32").payload == {"1": "one"}

    query = np.array([[0.5, 0.0, 0.25, 1.0, 9.0]])[:, :4]  # a strided 2-d view
    by_array = client.search(name, query, k=4)
    assert by_array == client.search(name, query[0].tolist(), k=4)
    batch = client.search_batch(name, np.vstack([query, query]).astype(np.int64), k=4)
    assert [len(r.hits) for r in batch.results] == [4, 4]
    client.delete_collection(name)


def test_compressed_collections_report_codes_and_exact_scores(client: VecrouteClient) -> None:
    name = unique("codes")
    vectors = _vectors(400, seed=3)
    client.create_collection(name, DIM, "ip", quantization={"kind": "sq8"})
    client.upload_arrays(name, vectors, ids=[str(i) for i in range(len(vectors))])
    assert client.wait_for_job(client.build(name, nlist=4), timeout_s=60).status == "succeeded"
    wait_until(lambda: client.get_collection(name).index.state == "ivf", what="the IVF")
    index = client.get_collection(name).index
    assert index.quantization == {"kind": "sq8"} and index.bytes_per_vector

    query = _vectors(1, seed=4)[0]
    found = client.search(name, query, k=5, nprobe=4, rerank=20)
    assert found.candidates == 20
    exact = {h.id: float(vectors[int(h.id)] @ query) for h in found.hits}
    assert [h.score for h in found.hits] == pytest.approx([exact[h.id] for h in found.hits])

    job = client.wait_for_job(client.set_quantization(name, {"kind": "rabitq"}), timeout_s=60)
    assert (job.kind, job.status) == ("quantize", "succeeded")
    wait_until(
        lambda: client.get_collection(name).index.quantization == {"kind": "rabitq"},
        what="the rabitq lists",
    )
    client.delete_collection(name)


def test_readme_example(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    exec(readme_example(0, server.url), {})
    out, err = capsys.readouterr()
    assert "10000/10000" in err  # the progress bar of a large upload
    hits, status = out.strip().splitlines()
    assert hits.count("'year': 202") == 5 and status == "succeeded"


def test_errors_are_exceptions_carrying_the_problem(client: VecrouteClient) -> None:
    name = unique("errors")
    client.create_collection(name, DIM)
    with pytest.raises(ConflictError) as exists:
        client.create_collection(name, DIM)
    assert exists.value.slug == "collection-exists" and exists.value.status == 409
    with pytest.raises(NotFoundError) as missing:
        client.get_point(name, "nope")
    assert missing.value.slug == "point-not-found" and "nope" in missing.value.detail
    with pytest.raises(NotFoundError) as no_collection:
        client.search("no-such-collection", [0.0] * DIM)
    assert no_collection.value.problem["type"].endswith("/collection-not-found")
    with pytest.raises(ApiError) as invalid:
        client.search(name, [0.0] * (DIM + 1))
    assert invalid.value.status in (400, 422) and invalid.value.problem["title"]
    with pytest.raises(ApiError) as bad_k:
        client.search(name, [0.0] * DIM, k=0)
    assert bad_k.value.status == 422 and bad_k.value.problem["errors"]


def test_bulk_upload_of_an_array_batches_and_shows_progress(
    client: VecrouteClient, capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique("bulk")
    client.create_collection(name, DIM, "l2")
    vectors = _vectors(3000)
    ids = [f"doc-{i}" for i in range(3000)]
    payloads = [{"row": i} for i in range(3000)]
    done = client.upload_arrays(name, vectors, ids, payloads, batch_size=700, progress=True)
    assert (done.upserted, done.batches, done.retries) == (3000, 5, 0)
    assert done.seq == client.last_seq
    assert "3000/3000" in capsys.readouterr().err
    assert client.get_collection(name).count == 3000
    hit = client.search(name, vectors[1234], k=1, routing="exact").hits[0]
    assert (hit.id, hit.payload) == ("doc-1234", {"row": 1234})
    assert client.get_point(name, "doc-42").vector == pytest.approx(vectors[42].tolist())


def test_bulk_upload_of_an_iterable_without_length(
    client: VecrouteClient, capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique("stream")
    client.create_collection(name, DIM)
    vectors = _vectors(1000, seed=1)
    stream = ((str(i), v, {"even": i % 2 == 0}) for i, v in enumerate(vectors))
    done = client.upload_points(name, stream, batch_size=300)
    assert (done.upserted, done.batches) == (1000, 4)
    assert capsys.readouterr().err == ""  # small, and of unknown length: no bar unless asked
    even = {"must": [{"key": "even", "match": {"value": True}}]}
    evens = client.search(name, vectors[0], k=1000, filter=even)
    assert len(evens.hits) == 500


def test_upload_retries_through_a_server_restart(server: Server) -> None:
    """Connection refused while the server is down, 503 while it loads: the upload waits
    it out with backoff, and every point arrives."""
    name = unique("restart")
    with VecrouteClient(server.url) as client:
        client.create_collection(name, DIM)
        server.stop()
        server.launch()
        try:
            patient = RetryPolicy(attempts=400, initial_s=0.05, max_s=0.2)
            done = client.upload_arrays(name, _vectors(600, seed=2), batch_size=200, retry=patient)
        finally:
            server.wait_ready()
        assert done.upserted == 600 and done.retries >= 1
        assert client.get_collection(name).count == 600


def test_retry_policy_retries_only_what_may_succeed_later() -> None:
    policy = RetryPolicy(attempts=3, initial_s=0.1, max_s=1.0)
    busy = UnavailableError(503, {"title": "Service Unavailable"}, retry_after=1.0)
    assert policy.delay(1, busy) == pytest.approx(1.0)  # the server's Retry-After
    assert policy.delay(3, busy) is None  # out of attempts
    gone = NotFoundError(404, {"title": "Not found"})
    assert policy.delay(1, gone) is None


def test_reads_wait_for_the_clients_own_writes_on_another_replica(
    server: Server, replica: Server
) -> None:
    """Writes go to one process, searches to another that catches up every 0.5 s: each
    search still sees the write just made, because it carries the writer's ``min_seq``."""
    name = unique("ryw")
    vectors = _vectors(20, seed=3)
    with VecrouteClient(server.url) as writer, VecrouteClient(replica.url, KEY) as reader:
        writer.create_collection(name, DIM, "l2")
        for i, v in enumerate(vectors):
            writer.upsert(name, [(f"p{i}", v)])
            reader.last_seq = writer.last_seq
            assert reader.search(name, v, k=1, routing="exact").hits[0].id == f"p{i}"


def test_the_api_key_is_sent_as_a_bearer_token(server: Server, replica: Server) -> None:
    with VecrouteClient(replica.url) as anonymous:
        with pytest.raises(ApiError) as refused:
            anonymous.list_collections()
        assert refused.value.status == 401 and refused.value.slug == "unauthorized"
    with VecrouteClient(replica.url, api_key=KEY) as keyed:
        assert isinstance(keyed.list_collections(), list)


async def test_async_client(server: Server) -> None:
    name = unique("async")
    vectors = _vectors(1500, seed=4)
    async with AsyncVecrouteClient(server.url) as client:
        await client.create_collection(name, DIM, "cosine")
        done = await client.upload_arrays(name, vectors, batch_size=500)
        assert (done.upserted, done.batches) == (1500, 3) and client.last_seq == done.seq
        found = await client.search(name, vectors[7], k=3)
        assert found.hits[0].id == "7" and found.hits[0].score == pytest.approx(1.0, abs=1e-5)
        batch = await client.search_batch(name, vectors[:4], k=1)
        assert [r.hits[0].id for r in batch.results] == ["0", "1", "2", "3"]
        points = await client.get_points(name, ["3", "nope", "1499"])
        assert [p.id for p in points] == ["3", "1499"]
        assert (await client.delete(name, ["3"])).deleted == 1
        with pytest.raises(NotFoundError):
            await client.get_point(name, "3")
        job_id = await client.build(name, nlist=4)
        job = await client.wait_for_job(job_id, timeout_s=60, poll_s=0.05)
        assert job.status == "succeeded" and job.result and job.result["nlist"] == 4
        await client.delete_collection(name)
        with pytest.raises(NotFoundError):
            await client.get_collection(name)
