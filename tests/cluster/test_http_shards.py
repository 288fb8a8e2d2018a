"""Sharded collections over HTTP: a real server process (``vecroute serve``) with
``VECROUTE_CLUSTER_ADDRESS`` set coordinates 2 shards x 2 replicas on the module's local
3-node Ray cluster, over PostgreSQL (the store cluster mode is documented for).

Parity with an unsharded twin collection (same points, same build seed, so the same
clustering): unfiltered, filtered (both plans) and exact searches; read-your-writes, kill
-9 of a replica mid search loop, a shard with no live replica (503, or partial results
when asked), kill -9 of the API process while writing, and the shard snapshots of a
dropped collection removed (dropped while running, or while no API process ran). Once its
shards serve, the API process holds the sharded collection routing-only (each point's
list, no vector): every search above is the shards' answer, learned and adaptive
(``target_recall``) ones too (one router published for both twins); emulator searches of
it are refused (409), and codes asked of it rebuild its shards with them (the API process
stays routing-only).
One server and one pair of collections for the module (each start costs seconds).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from ray.cluster_utils import Cluster

from app.store.collections import get_collection
from app.store.db import Store
from app.store.placements import active_placement
from app.store.query_log import count_queries
from tests.api.servers import Server, maps_torch
from tests.cluster.published import publish_linear_emulator, publish_linear_router
from tests.conftest import reset_pg
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

DIM, N_POINTS, NLIST, K, NPROBE = 16, 3000, 24, 10, 4
ROUTING_BYTES = 8  # per point, at most, of a routing-only index of these few points
SHARDED = {"name": "sharded", "dim": DIM, "metric": "l2", "nlist": NLIST}
TWIN = {"name": "twin", "dim": DIM, "metric": "l2", "nlist": NLIST}


def _points(seed: int, n: int) -> np.ndarray:
    """Points around 32 centres: lists of uneven sizes, as real data has."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(32, DIM)) * 4
    return (centres[rng.integers(0, 32, n)] + rng.normal(size=(n, DIM))).astype(np.float32)


POINTS = _points(0, N_POINTS)
QUERIES = _points(1, 40)


def _server(database_url: str, data_dir: Path, cluster: Cluster) -> Server:
    return Server(
        database_url,
        data_dir,
        VECROUTE_CLUSTER_ADDRESS=cluster.address,
        VECROUTE_CLUSTER_SEARCH_TIMEOUT_S="2",
        VECROUTE_CLUSTER_SYNC_INTERVAL_S="0.2",
        VECROUTE_AUTO_POLICY="false",
        VECROUTE_SNAPSHOT_INTERVAL_S="0.5",
    ).start()


@pytest.fixture(scope="module")
def server(
    ray_cluster: Cluster, pg_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    reset_pg(pg_database)
    data_dir = tmp_path_factory.mktemp("api")
    srv = _server(pg_database, data_dir, ray_cluster)
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        created = c.post("/collections", json={**SHARDED, "shards": 2, "replicas": 2})
        assert created.status_code == 201, created.text
        assert [s["replicas"] for s in created.json()["shards"]] == [[], []]
        assert c.post("/collections", json=TWIN).status_code == 201
        for name in ("sharded", "twin"):
            points = [
                {"id": str(i), "vector": v.tolist(), "payload": {"half": i % 2, "tenth": i % 10}}
                for i, v in enumerate(POINTS)
            ]
            assert c.post("/index", json={"collection": name, "points": points}).status_code == 200
            assert c.post(f"/collections/{name}/build", json={"seed": 7}).status_code == 202
        wait_until(lambda: _all_ready(c), what="both collections built, every replica ready")
        wait_until(lambda: _routing_only(c), what="the API holding the sharded one routing-only")
    yield srv
    srv.stop()


def _all_ready(c: httpx.Client) -> bool:
    infos = {i["name"]: i for i in c.get("/collections").json()["collections"]}
    built = all(infos[n]["index"]["state"] == "ivf" for n in ("sharded", "twin"))
    shards = infos["sharded"]["shards"]
    replicas = [r for s in shards for r in s["replicas"]]
    return built and len(replicas) == 4 and all(r["state"] == "ready" for r in replicas)


def _routing_only(c: httpx.Client) -> bool:
    """The sharded collection's index in the API process holds no vectors: a list number
    per id of the pages its ids fall in (4 bytes; the twin's ids share some pages here,
    and these are few), not a DIM-float vector (64 bytes)."""
    return bool(c.get("/collections/sharded").json()["index"]["bytes_per_vector"] <= ROUTING_BYTES)


def _search(c: httpx.Client, name: str, queries: np.ndarray, **extra: Any) -> httpx.Response:
    """A batch search (``None`` in ``extra`` leaves that field out, e.g. ``nprobe``)."""
    body = {"collection": name, "vectors": queries.tolist(), "k": K, "nprobe": NPROBE, "log": False}
    body = {key: value for key, value in {**body, **extra}.items() if value is not None}
    return c.post("/search/batch", json=body)


def _hits(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    return [[h["id"] for h in r["hits"]] for r in response.json()["results"]]


def _shards(c: httpx.Client) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = c.get("/collections/sharded").json()["shards"]
    return shards


def test_sharded_search_equals_the_unsharded_twin(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        sharded, twin = _search(c, "sharded", QUERIES), _search(c, "twin", QUERIES)
        assert _hits(sharded) == _hits(twin)
        got, want = sharded.json(), twin.json()
        scores = [[h["score"] for h in r["hits"]] for r in got["results"]]
        expected = [[h["score"] for h in r["hits"]] for r in want["results"]]
        np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
        assert 1.0 <= got["shards_probed"] <= 2.0 and "shards_probed" not in want
        assert got["scanned"] == pytest.approx(want["scanned"], abs=0.1)
        shards = _shards(c)
        assert sum(s["points"] for s in shards) == N_POINTS
        info, twin_info = c.get("/collections/sharded").json(), c.get("/collections/twin").json()
        assert info["count"] == twin_info["count"] == N_POINTS
        assert info["index"]["bytes_per_vector"] <= ROUTING_BYTES < DIM * 4
        assert twin_info["index"]["bytes_per_vector"] > DIM * 4
        assert sum(s["lists"] for s in shards) == NLIST
        for shard in shards:  # the two replicas of a shard on distinct nodes
            assert len({r["node"] for r in shard["replicas"]}) == 2


@pytest.mark.parametrize(
    ("key", "plan"),
    [("half", "ivf"), ("tenth", "exact")],  # 50%: the base nprobe; 10%: too many lists
)
def test_a_filtered_search_runs_the_twin_s_plan_on_the_shards(
    server: Server, key: str, plan: str
) -> None:
    f = {"must": [{"key": key, "match": {"value": 1}}]}
    with httpx.Client(base_url=server.url, timeout=60) as c:
        sharded = _search(c, "sharded", QUERIES, filter=f)
        twin = _search(c, "twin", QUERIES, filter=f)
        assert _hits(sharded) == _hits(twin)
        got, want = sharded.json(), twin.json()
        assert "shards_probed" in got, "answered by the shards, not the API's own index"
        for field in ("plan", "routing", "nprobe", "matches"):
            assert got[field] == want[field], field
        assert got["plan"] == plan
        assert got["scanned"] == pytest.approx(want["scanned"], abs=0.1)


def test_an_exact_search_scans_every_list_on_the_shards(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        sharded = _search(c, "sharded", QUERIES, routing="exact")
        twin = _search(c, "twin", QUERIES, routing="exact")
        assert _hits(sharded) == _hits(twin)
        got, want = sharded.json(), twin.json()
        assert (got["routing"], got["plan"], got["nprobe"]) == ("exact", "exact", None)
        assert got["shards_probed"] == 2.0 and got["scanned"] == want["scanned"] == N_POINTS


@contextmanager
def _store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    try:
        yield store
    finally:
        store.dispose()


def test_an_emulator_search_of_a_routing_only_collection_is_409_and_changes_nothing(
    server: Server, pg_database: str
) -> None:
    """The emulator proposes member ids for this process to re-score with their vectors,
    which it does not hold for a routing-only collection; the twin, held whole, serves it."""
    with _store(pg_database) as store:
        for name in ("sharded", "twin"):  # in this order: the twin served means both adopted
            publish_linear_emulator(store, name)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        twin = wait_until(
            lambda: (r := _search(c, "twin", QUERIES, routing="emulator")).status_code == 200 and r,
            what="the twin serving its emulator",
        )
        assert twin.json()["routing"] == "emulator"
        before = _unchanging(c)

        refused = _search(c, "sharded", QUERIES, routing="emulator")

        assert refused.status_code == 409
        assert refused.headers["content-type"].startswith("application/problem+json")
        problem = refused.json()
        assert problem["type"].endswith("no-emulator") and "shards hold" in problem["detail"]
        assert _unchanging(c) == before


def _unchanging(c: httpx.Client) -> tuple[dict[str, Any], list[list[str]]]:
    """The sharded collection's info (its shards' health aside) and a search's hits."""
    info = c.get("/collections/sharded").json()
    del info["shards"]
    return info, _hits(_search(c, "sharded", QUERIES))


def test_codes_asked_of_a_sharded_collection_rebuild_its_shards_under_a_search_loop(
    server: Server, pg_database: str
) -> None:
    """sq8 codes: the shards are rebuilt with the stored codebook (new epoch), scan codes
    and re-rank exactly, while the API process stays routing-only; float lists again: the
    shards are rebuilt again. No search fails meanwhile."""
    stop, failures, answers = threading.Event(), [], []

    def loop() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as lc:
            while not stop.is_set():
                response = _search(lc, "sharded", QUERIES)
                (answers if response.status_code == 200 else failures).append(response.text)

    def quantize(c: httpx.Client, kind: str) -> None:
        for name in ("sharded", "twin"):
            asked = c.patch(f"/collections/{name}", json={"quantization": {"kind": kind}})
            assert asked.status_code == 202, asked.text

    thread = threading.Thread(target=loop)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        epoch, _ = _active_placement(pg_database)
        thread.start()
        try:
            quantize(c, "sq8")
            wait_until(lambda: _codes(c) == ["sq8", "sq8"], what="both answering from sq8 codes")
            assert _active_placement(pg_database)[0] > epoch and _routing_only(c)
            pids = [r["pid"] for s in _shards(c) for r in s["replicas"]]
            assert pids and not any(maps_torch(pid) for pid in pids)  # codes served by numpy
            coded = {name: _search(c, name, QUERIES).json() for name in ("sharded", "twin")}
            # Every candidate of the probed lists re-scored: exact search over them.
            every = {
                name: _search(c, name, QUERIES, rerank=N_POINTS) for name in ("sharded", "twin")
            }
            quantize(c, "none")
            wait_until(lambda: _codes(c) == ["none", "none"], what="both on float lists again")
            after = len(answers)
            wait_until(lambda: len(answers) >= after + 3, what="searches after the way back")
        finally:
            stop.set()
            thread.join()
        back, twin = _search(c, "sharded", QUERIES), _search(c, "twin", QUERIES)
        assert _routing_only(c)
    assert failures == []
    got, want = coded["sharded"], coded["twin"]
    assert "shards_probed" in got  # the shards answered, from their codes
    assert got["candidates"] >= want["candidates"] > 0  # each touched shard re-ranks its own
    assert _hits(every["sharded"]) == _hits(every["twin"])
    for q, result in zip(QUERIES, got["results"], strict=True):
        rows = [int(h["id"]) for h in result["hits"]]
        exact = -((POINTS[rows] - q) ** 2).sum(axis=1)
        np.testing.assert_allclose(
            [h["score"] for h in result["hits"]], exact, rtol=1e-5, atol=1e-3
        )
    assert "shards_probed" in back.json() and _hits(back) == _hits(twin)
    assert back.json()["candidates"] == 0


def _codes(c: httpx.Client) -> list[str]:
    """The quantization kind each twin's serving index holds."""
    return [
        c.get(f"/collections/{name}").json()["index"]["quantization"]["kind"]
        for name in ("sharded", "twin")
    ]


def test_read_your_writes_across_shards(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        vector = (QUERIES[0] + 0.001).tolist()
        written = c.post(
            "/index", json={"collection": "sharded", "points": [{"id": "fresh", "vector": vector}]}
        )
        assert written.status_code == 200
        seq = written.json()["seq"]
        found = _search(c, "sharded", QUERIES[:1], min_seq=seq)
        assert _hits(found)[0][0] == "fresh" and "shards_probed" in found.json()
        assert (
            c.post("/delete", json={"collection": "sharded", "ids": ["fresh"]}).status_code == 200
        )


def test_kill_9_of_a_replica_mid_search_loop_fails_no_search(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        expected = _hits(_search(c, "sharded", QUERIES))
        victim = _shards(c)[0]["replicas"][0]
        stop, failures, answers = threading.Event(), [], []

        def loop() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as lc:
                while not stop.is_set():
                    response = _search(lc, "sharded", QUERIES)
                    if response.status_code != 200:
                        failures.append(response.text)
                    else:
                        answers.append(_hits(response))

        thread = threading.Thread(target=loop)
        thread.start()
        try:
            wait_until(lambda: len(answers) >= 3, what="searches before the kill")
            os.kill(victim["pid"], signal.SIGKILL)
            wait_until(
                lambda: _replaced(c, victim["pid"]),
                what="the killed replica rebuilt from the store",
            )
            after = len(answers)
            wait_until(lambda: len(answers) >= after + 3, what="searches after the rebuild")
        finally:
            stop.set()
            thread.join()
        assert failures == []
        assert all(a == expected for a in answers)


def _replaced(c: httpx.Client, pid: int) -> bool:
    replica = _shards(c)[0]["replicas"][0]
    return replica["state"] == "ready" and replica["pid"] != pid


def test_a_shard_without_a_live_replica_is_503_or_partial_when_asked(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        hung = [r["pid"] for r in _shards(c)[1]["replicas"]]
        for pid in hung:
            os.kill(pid, signal.SIGSTOP)
        try:
            refused = _search(c, "sharded", QUERIES)
            assert refused.status_code == 503
            problem = refused.json()
            assert problem["type"].endswith("shard-unavailable") and "shard 1" in problem["detail"]
            partial = _search(c, "sharded", QUERIES, allow_partial=True)
            assert partial.status_code == 200
            body = partial.json()
            assert body["partial"] is True and body["missing_shards"] == [1]
        finally:
            for pid in hung:
                os.kill(pid, signal.SIGCONT)
        wait_until(lambda: _all_ready(c), what="the stopped replicas answering again")
        whole = _search(c, "sharded", QUERIES, allow_partial=True)
        assert whole.json()["partial"] is False and whole.json()["missing_shards"] == []
    # Shard 0's part of each whole answer leads its partial answer, in order; the rest of
    # the whole answer (shard 1's) is what the flag says is missing.
    short, full = _hits(partial), _hits(whole)
    assert short != full and any(short)
    for got, want in zip(short, full, strict=True):
        kept = [h for h in want if h in set(got)]
        assert got[: len(kept)] == kept


def _active_placement(database_url: str) -> tuple[int, str]:
    placement, _ = _in_store(database_url)
    return placement


def _in_store(database_url: str) -> tuple[tuple[int, str], int]:
    """The sharded collection's active placement (epoch, method) and its logged queries."""
    store = Store(database_url)
    try:
        with store.read() as session:
            record = get_collection(session, "sharded")
            assert record is not None
            placement = active_placement(session, record.id)
            logged = count_queries(session, record.id)
    finally:
        store.dispose()
    assert placement is not None
    return (placement[0].epoch, placement[0].method), logged


def test_a_reclustering_is_placed_by_co_probes_under_a_search_loop(
    server: Server, pg_database: str
) -> None:
    """Both collections rebuilt alike: the shards of the old clustering answer (routed by the
    API's routing-only index of it) until the new placement serves, then its shards; the
    API's index follows them to the new clustering, still without vectors."""
    before, _ = _active_placement(pg_database)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert _search(c, "sharded", _points(3, 300), log=True).status_code == 200
        wait_until(lambda: _in_store(pg_database)[1] >= 300, what="the queries logged")
        old = _hits(_search(c, "sharded", QUERIES))
        stop, failures, answers = threading.Event(), [], []

        def loop() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as lc:
                while not stop.is_set():
                    response = _search(lc, "sharded", QUERIES)
                    if response.status_code != 200:
                        failures.append(response.text)
                    else:
                        answers.append((_hits(response), "shards_probed" in response.json()))

        thread = threading.Thread(target=loop)
        thread.start()
        try:
            wait_until(lambda: len(answers) >= 3, what="searches before the rebuild")
            for name in ("sharded", "twin"):
                rebuilt = c.post(f"/collections/{name}/build", json={"seed": 11, "nlist": 16})
                assert rebuilt.status_code == 202
            wait_until(
                lambda: _active_placement(pg_database)[0] > before and _all_ready(c),
                what="the new clustering's placement serving",
            )
            wait_until(lambda: _rebuilt(c), what="both collections on the new clustering")
            after = len(answers)
            wait_until(lambda: len(answers) >= after + 3, what="searches on the new epoch")
        finally:
            stop.set()
            thread.join()
        new = _hits(_search(c, "twin", QUERIES))
        wait_until(lambda: _routing_only(c), what="the routing-only index of the new clustering")
        assert c.get("/collections/sharded").json()["count"] == N_POINTS
    assert _active_placement(pg_database)[1] == "coprobe"
    assert failures == [] and old != new
    assert all(hits in (old, new) for hits, _ in answers)
    assert answers[-1] == (new, True)  # the new epoch's shards answer


def _rebuilt(c: httpx.Client) -> bool:
    infos = c.get("/collections").json()["collections"]
    return all(i["index"]["nlist"] == 16 for i in infos)


def test_learned_and_target_recall_searches_scan_the_router_s_lists_on_the_shards(
    server: Server, pg_database: str
) -> None:
    """One router activated for both twins: the API process routes the sharded one with it
    (fixed nprobe, and adaptive probing by its calibration), the shards scan those lists."""
    before, _ = _active_placement(pg_database)
    with _store(pg_database) as store:
        publish_linear_router(store, ["sharded", "twin"], _points(4, 300), seed=5)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        wait_until(
            lambda: all(_router(c, name) == "linear" for name in ("sharded", "twin")),
            what="both collections routing with the router",
        )
        wait_until(
            lambda: _active_placement(pg_database)[0] > before and _all_ready(c),
            what="the shards placed again for the router",
        )
        for extra in ({"routing": "learned"}, {"target_recall": 0.9, "nprobe": None}):
            sharded, twin = (
                _search(c, "sharded", QUERIES, **extra),
                _search(c, "twin", QUERIES, **extra),
            )
            assert _hits(sharded) == _hits(twin), extra
            got, want = sharded.json(), twin.json()
            assert got["routing"] == want["routing"] == "learned", extra
            assert got["router_version"] == want["router_version"] is not None
            assert got["nprobe"] == pytest.approx(want["nprobe"]), extra
            assert got["scanned"] == pytest.approx(want["scanned"], abs=0.1), extra
            assert 1.0 <= got["shards_probed"] <= 2.0 and "shards_probed" not in want
        assert got["nprobe"] != NPROBE  # adaptive: the mean of each query's own probes


def _router(c: httpx.Client, name: str) -> str:
    kind: str = c.get(f"/collections/{name}").json()["router"]["kind"]
    return kind


def test_dropping_a_sharded_collection_removes_its_shard_snapshots(
    server: Server, pg_database: str
) -> None:
    snapshots = server.data_dir / "shard-snapshots"
    with httpx.Client(base_url=server.url, timeout=60) as c:
        body = {"name": "dropped", "dim": DIM, "metric": "l2", "nlist": 4, "replicas": 2}
        assert c.post("/collections", json=body).status_code == 201
        points = [{"id": str(i), "vector": v.tolist()} for i, v in enumerate(POINTS[:400])]
        assert c.post("/index", json={"collection": "dropped", "points": points}).status_code == 200
        assert c.post("/collections/dropped/build", json={"seed": 7}).status_code == 202
        with _store(pg_database) as store, store.read() as session:
            ids = {n: get_collection(session, n) for n in ("dropped", "sharded")}
        dropped, kept = (f"c{record.id}-*" for record in ids.values() if record is not None)
        wait_until(lambda: any(snapshots.glob(dropped)), what="its replicas' shard snapshots")

        assert c.delete("/collections/dropped").status_code == 204

        wait_until(lambda: not any(snapshots.glob(dropped)), what="its shard snapshots removed")
    assert any(snapshots.glob(kept))


def test_kill_9_of_the_api_process_while_writing_loses_nothing_acknowledged(
    server: Server, ray_cluster: Cluster, pg_database: str
) -> None:
    """The restarted process loads the sharded collection from its routing-only snapshot
    (ids and lists, no vector) and catches up with the writes acknowledged after it."""
    fresh = _points(2, 400) + 50  # far from the rest: each is its own nearest point
    acked: list[int] = []
    snapshot = server.data_dir / "snapshots" / "sharded.lists"
    wait_until(snapshot.exists, what="a routing-only snapshot of the sharded collection")
    assert not (server.data_dir / "snapshots" / "sharded.snap").exists()

    def write() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as wc:
            for i, v in enumerate(fresh):
                point = {"id": f"w{i}", "vector": v.tolist()}
                try:
                    answer = wc.post("/index", json={"collection": "sharded", "points": [point]})
                except httpx.HTTPError:
                    return
                if answer.status_code == 200:
                    acked.append(i)

    writer = threading.Thread(target=write)
    writer.start()
    wait_until(lambda: len(acked) >= 20, what="writes acknowledged before the kill")
    server.kill()
    writer.join()
    # A collection dropped while no API process ran left its shard snapshot behind.
    leftover = server.data_dir / "shard-snapshots" / "c999-v1-0123456789abcdef.snap"
    leftover.write_bytes(b"a dropped collection's lists")
    restarted = _server(pg_database, server.data_dir, ray_cluster)
    try:
        wait_until(lambda: not leftover.exists(), what="the leftover shard snapshot removed")
        with httpx.Client(base_url=restarted.url, timeout=60) as c:
            # Loaded routing-only from the store's labels: no vector read into this process.
            assert _routing_only(c)
            wait_until(lambda: _all_ready(c), what="the shards rebuilt from the store")
            found = c.post(
                "/search/batch",
                json={
                    "collection": "sharded",
                    "vectors": fresh[acked].tolist(),
                    "k": 1,
                    "nprobe": 1,  # each in its own list: the one its centroid is nearest
                    "routing": "centroid",
                    "log": False,
                },
            )
            assert found.status_code == 200 and "shards_probed" in found.json()
            assert _hits(found) == [[f"w{i}"] for i in acked]
            # Every committed write counted: the acknowledged, maybe one cut off by the kill.
            count = c.get("/collections/sharded").json()["count"]
            assert N_POINTS + len(acked) <= count <= N_POINTS + len(acked) + 1
    finally:
        restarted.stop()
