"""``vecroute serve``'s HTTP protocol (app/api/protocol.py) answers the fast routes itself and
leaves HTTP/1.1 as uvicorn keeps it: keep-alive, pipelining, ``Connection: close``, HTTP/1.0,
chunked and large bodies, ``Expect: 100-continue``, and searches that must wait, all over
raw sockets to a real server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import uvicorn
from fastapi.testclient import TestClient
from uvicorn.server import ServerState

from app.api.protocol import InlineHttpProtocol
from app.main import VecrouteApp
from tests.api.conftest import LogLines
from tests.api.servers import Server

KEY = "test-key"


class Connection:
    """One keep-alive connection: raw requests out, framed responses in."""

    def __init__(self, server: Server) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        self.buf = b""

    def send(self, raw: bytes) -> None:
        self.sock.sendall(raw)

    def response(self) -> tuple[int, dict[bytes, bytes], bytes]:
        """The next response: status, headers (lower-case names), body."""
        while b"\r\n\r\n" not in self.buf:
            self._read()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, *lines = head.split(b"\r\n")
        headers = dict(line.split(b": ", 1) for line in lines)
        headers = {name.lower(): value for name, value in headers.items()}
        length = int(headers.get(b"content-length", b"0"))
        while len(self.buf) < length:
            self._read()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(status_line.split()[1]), headers, body

    def closed_by_server(self) -> bool:
        return self.buf == b"" and self.sock.recv(1) == b""

    def _read(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()


def request(method: str, path: str, body: bytes = b"", *extra: str, version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", *extra]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def search(vector: list[float], **params: object) -> bytes:
    body = orjson.dumps({"collection": "docs", "vector": vector, **params})
    return request("POST", "/search", body)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("protocol")
    running = Server(f"sqlite:///{root / 'store.db'}", root / "data").start()
    points = [{"id": "a", "vector": [1, 0], "payload": {"x": 1}}, {"id": "b", "vector": [0, 1]}]
    with httpx.Client(base_url=running.url) as client:
        assert client.post("/collections", json={"name": "docs", "dim": 2}).status_code == 201
        body = {"collection": "docs", "points": points}
        assert client.post("/index", json=body).status_code == 200
    yield running
    running.stop()


@pytest.fixture
def conn(server: Server) -> Iterator[Connection]:
    c = Connection(server)
    yield c
    c.close()


def test_fast_routes_answer_over_one_keep_alive_connection(conn: Connection) -> None:
    for _ in range(3):
        conn.send(search([1, 0.1], k=1))
        status, headers, body = conn.response()
        assert status == 200
        assert orjson.loads(body)["hits"] == [{"id": "a", "score": 1.0, "payload": {"x": 1}}]
        assert headers[b"content-type"] == b"application/json"
        assert headers[b"server-timing"].startswith(b"engine;dur=")
        assert b"date" in headers and b"x-request-id" in headers
        conn.send(request("GET", "/healthz"))
        assert conn.response()[::2] == (200, b'{"status":"ok"}')


def test_a_request_id_is_echoed_and_errors_are_problems(conn: Connection) -> None:
    conn.send(request("POST", "/search", b"{not json", "X-Request-ID: abc-123"))
    status, headers, body = conn.response()
    assert status == 400 and headers[b"x-request-id"] == b"abc-123"
    assert headers[b"content-type"] == b"application/problem+json"
    assert orjson.loads(body)["type"].endswith("malformed-body")
    conn.send(request("POST", "/search", b'{"collection": "nope", "vector": [1, 0]}'))
    assert conn.response()[0] == 404
    conn.send(search([1, 0]))  # the connection is still good
    assert conn.response()[0] == 200


def test_pipelined_requests_are_answered_in_order(conn: Connection) -> None:
    conn.send(
        search([0, 1], k=1)
        + request("GET", "/collections/docs")  # FastAPI's, between two fast ones
        + request("GET", "/healthz")
        + search([1, 0], k=1)
    )
    first, info, health, last = (conn.response() for _ in range(4))
    assert orjson.loads(first[2])["hits"][0]["id"] == "b"
    assert orjson.loads(info[2])["name"] == "docs"
    assert health[0] == 200
    assert orjson.loads(last[2])["hits"][0]["id"] == "a"


def test_a_long_pipeline_behind_a_routed_request_is_answered_whole(conn: Connection) -> None:
    conn.send(request("GET", "/collections/docs") + request("GET", "/healthz") * 1000)
    assert orjson.loads(conn.response()[2])["name"] == "docs"
    assert all(conn.response()[0] == 200 for _ in range(1000))


def test_a_chunked_get_body_beyond_the_read_ahead_does_not_stall(conn: Connection) -> None:
    chunk = b"x" * 200_000
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    conn.send(head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk))
    assert conn.response()[::2] == (200, b'{"status":"ok"}')


def test_connection_close_and_http_1_0_close_after_the_answer(server: Server) -> None:
    for extra, version in (("Connection: close", "1.1"), ("X-Any: 1", "1.0")):
        c = Connection(server)
        body = orjson.dumps({"collection": "docs", "vector": [1, 0]})
        c.send(request("POST", "/search", body, extra, version=version))
        status, headers, _ = c.response()
        assert status == 200 and headers[b"connection"] == b"close"
        assert c.closed_by_server()
        c.close()


def test_chunked_and_large_bodies_are_answered_through_asgi(conn: Connection) -> None:
    body = orjson.dumps({"collection": "docs", "vector": [0, 1], "k": 1})
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    head = "POST /search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    conn.send(head.encode() + chunked)
    status, _, out = conn.response()
    assert status == 200 and orjson.loads(out)["hits"][0]["id"] == "b"
    # Beyond what uvicorn reads before pausing (64 KiB): JSON allows the padding.
    padded = body[:-1] + b" " * 100_000 + b"}"
    conn.send(request("POST", "/search", padded))
    status, _, out = conn.response()
    assert status == 200 and orjson.loads(out)["hits"][0]["id"] == "b"


def test_expect_100_continue_gets_its_interim_response(conn: Connection) -> None:
    body = orjson.dumps({"collection": "docs", "vector": [0, 1], "k": 1})
    head = request("POST", "/search", body, "Expect: 100-continue")
    conn.send(head[: -len(body)])
    assert conn.sock.recv(1 << 10) == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.send(body)
    status, _, out = conn.response()
    assert status == 200 and orjson.loads(out)["hits"][0]["id"] == "b"


def test_a_search_waiting_for_a_write_is_answered_once_it_is_applied(
    server: Server, conn: Connection
) -> None:
    with httpx.Client(base_url=server.url) as client:
        seq = client.get("/readyz").json()["applied_seq"]
        conn.send(search([1, 1], k=3, min_seq=seq + 1))  # not applied yet: it waits
        points = [{"id": "c", "vector": [1, 1]}]
        write = client.post("/index", json={"collection": "docs", "points": points})
        assert write.json()["seq"] == seq + 1
    status, _, out = conn.response()
    assert status == 200 and orjson.loads(out)["hits"][0]["id"] == "c"


def test_inline_answers_are_counted_in_the_metrics(conn: Connection) -> None:
    conn.send(search([1, 0]))
    conn.response()
    conn.send(request("GET", "/metrics"))
    metrics = conn.response()[2].decode()
    assert 'route="/search",status="200"' in metrics
    assert 'route="/healthz",status="200"' in metrics


def test_api_keys_and_big_scans_hold_on_the_inline_path(tmp_path: Path) -> None:
    env = {"VECROUTE_API_KEY": KEY, "VECROUTE_INLINE_SEARCH_MAX_VECTORS": "0"}
    running = Server(f"sqlite:///{tmp_path / 'store.db'}", tmp_path / "data", **env).start()
    try:
        auth = f"Authorization: Bearer {KEY}"
        with httpx.Client(base_url=running.url, headers=running.headers) as client:
            assert client.post("/collections", json={"name": "docs", "dim": 2}).status_code == 201
            points = [{"id": "a", "vector": [1, 0]}]
            assert client.post("/index", json={"collection": "docs", "points": points}).is_success
        c = Connection(running)
        c.send(search([1, 0]))
        status, headers, _ = c.response()
        assert status == 401 and headers[b"content-type"] == b"application/problem+json"
        body = orjson.dumps({"collection": "docs", "vector": [1, 0]})
        c.send(request("POST", "/search", body, auth))  # every search too big for the loop
        status, _, out = c.response()
        assert status == 200 and orjson.loads(out)["hits"][0]["id"] == "a"
        c.close()
    finally:
        running.stop()


class Transport(asyncio.Transport):
    """What the protocol writes, kept."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False


def _connected(client: TestClient, loop: asyncio.AbstractEventLoop) -> tuple[Any, Transport]:
    """A protocol of the client's app on a transport that keeps what is written, with the
    collection "docs" holding one point."""
    body = {"collection": "docs", "points": [{"id": "a", "vector": [1, 0]}]}
    assert client.post("/collections", json={"name": "docs", "dim": 2}).status_code == 201
    assert client.post("/index", json=body).status_code == 200
    app = client.app
    assert isinstance(app, VecrouteApp) and app.edge is not None
    config = uvicorn.Config(app, http=InlineHttpProtocol.for_edge(app.edge), log_config=None)
    config.load()
    protocol = config.http_protocol_class(  # type: ignore[call-arg]
        config=config, server_state=ServerState(), app_state={}, _loop=loop
    )
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


def test_a_fast_route_is_answered_by_the_call_that_completes_its_body(
    client: TestClient,
) -> None:
    loop = asyncio.new_event_loop()
    protocol, transport = _connected(client, loop)
    state = protocol.server_state
    raw = search([1, 0], k=1)
    protocol.data_received(raw[:-5])
    assert transport.writes == []  # the body is not all in
    protocol.data_received(raw[-5:])
    assert len(transport.writes) == 1 and not state.tasks  # one write, no ASGI task
    head, out = transport.writes[0].split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert orjson.loads(out)["hits"] == [{"id": "a", "score": 1.0, "payload": None}]
    loop.close()


def test_a_search_is_logged_and_counted_after_its_answer_is_written(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client does not wait for the query log and the search counter."""
    loop = asyncio.new_event_loop()
    protocol, transport = _connected(client, loop)
    service = protocol.edge.fast.service
    writes_before_logging: list[int] = []
    logged: list[tuple[str, list[list[float]], int]] = []

    def log_queries(name: str, queries: np.ndarray, k: int) -> None:
        writes_before_logging.append(len(transport.writes))
        logged.append((name, queries.tolist(), k))

    monkeypatch.setattr(service, "log_queries", log_queries)
    protocol.data_received(search([1, 0], k=1))
    assert writes_before_logging == [1]  # the answer was out first
    assert logged == [("docs", [[1.0, 0.0]], 1)]
    protocol.data_received(search([1, 0], k=1, log=False))
    assert len(logged) == 1  # "log": false is not logged
    loop.close()


def test_a_failure_of_the_fast_path_is_answered_through_asgi(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.new_event_loop()
    protocol, transport = _connected(client, loop)

    def broken(*_: Any) -> None:
        raise RuntimeError("a defect")

    monkeypatch.setattr(protocol.edge.fast, "answer_now", broken)
    protocol.data_received(search([1, 0], k=1))
    assert transport.writes == [] and len(protocol.tasks) == 1  # handed to an ASGI task
    loop.run_until_complete(asyncio.gather(*protocol.tasks))
    head, out = b"".join(transport.writes).split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert orjson.loads(out)["hits"][0]["id"] == "a"
    loop.close()


def test_an_inline_answer_leaves_no_keep_alive_timer_under_the_next_request(
    client: TestClient,
) -> None:
    loop = asyncio.new_event_loop()
    protocol, transport = _connected(client, loop)
    # /healthz answered inline, then, in the same bytes, a search that must wait for a write.
    protocol.data_received(request("GET", "/healthz") + search([1, 0], min_seq=10**9))
    assert len(transport.writes) == 1 and len(protocol.tasks) == 1
    assert protocol.timeout_keep_alive_task is None  # it would close the connection under it
    for task in protocol.tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*protocol.tasks, return_exceptions=True))
    loop.close()


def test_inline_answers_are_access_logged_under_their_request_id(
    access_logged: tuple[TestClient, LogLines],
) -> None:
    client, lines = access_logged
    loop = asyncio.new_event_loop()
    protocol, transport = _connected(client, loop)
    body = orjson.dumps({"collection": "docs", "vector": [1, 0]})
    protocol.data_received(request("POST", "/search", body, "X-Request-ID: inline-1"))
    assert len(transport.writes) == 1 and not protocol.tasks
    line = next(line for line in lines.lines if line.get("request_id") == "inline-1")
    assert line["path"] == "/search" and line["status"] == 200
    loop.close()
