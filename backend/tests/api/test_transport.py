"""Transport limits, against a real uvicorn server over raw sockets.

A request is admitted only once its body has arrived, so clients that send slowly hold
no worker thread and no admission slot; bodies over MAX_REQUEST_BODY_BYTES are refused
as soon as that is known, and bodies that stop arriving are dropped with 408.
"""

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import httpx2
import pytest
import uvicorn
from fastapi import APIRouter
from pydantic import BaseModel

from app.core.config import Settings
from app.main import create_app

SLOW_CLIENTS = 64
NORMAL_REQUESTS = 64
LIMIT = 1_048_576
ECHO = "/api/v1/test-only/echo"

router = APIRouter(prefix="/test-only", tags=["test"])


class Payload(BaseModel):
    name: str


class Echoed(BaseModel):
    length: int


@router.post("/echo", response_model=Echoed, operation_id="test_transport_echo")
def echo(payload: Payload) -> Echoed:
    return Echoed(length=len(payload.name))


@dataclass
class LiveServer:
    server: uvicorn.Server
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=15)


def wait_until(condition: Callable[[], bool], *, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)


@contextmanager
def live_server(config: Settings) -> Iterator[LiveServer]:
    app = create_app(config)
    app.include_router(router, prefix="/api/v1")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    uvicorn_config = uvicorn.Config(
        app, log_config=None, access_log=False, backlog=512, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(uvicorn_config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started)
        yield LiveServer(server=server, port=sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture
def live() -> Iterator[LiveServer]:
    # 8 slots; a request refused a slot would get 503 after 2 s, well within the waits.
    config = Settings(THREADPOOL_SIZE=8, REQUEST_QUEUE_TIMEOUT=2, REQUEST_BODY_TIMEOUT_SECONDS=60)
    with live_server(config) as server:
        yield server


def request_head(*headers: str) -> bytes:
    lines = [f"POST {ECHO} HTTP/1.1", "Host: test", "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        decoded: dict[str, object] = json.loads(self.body)
        return decoded


def read_response(sock: socket.socket) -> RawResponse:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of a response"
        body += chunk
    return RawResponse(status=int(status_line.split()[1]), headers=headers, body=body)


def assert_closed(sock: socket.socket) -> None:
    assert sock.recv(1) == b""


class TestUnfinishedBodies:
    def test_they_take_no_slot_from_other_requests(self, live: LiveServer) -> None:
        body = json.dumps({"name": "slow" * 10}).encode()
        slow = [live.connect() for _ in range(SLOW_CLIENTS)]
        try:
            for sock in slow:
                sock.sendall(request_head(f"Content-Length: {len(body)}") + body[:5])
            # Every one of them has reached the application, which is waiting for its body.
            wait_until(lambda: len(live.server.server_state.tasks) >= SLOW_CLIENTS)

            def normal(index: int) -> int:
                with httpx2.Client(base_url=live.url, timeout=15) as http:
                    if index % 2:
                        return http.get("/api/v1/utils/readiness").status_code
                    return http.post(ECHO, json={"name": "quick"}).status_code

            with ThreadPoolExecutor(max_workers=16) as pool:
                statuses = list(pool.map(normal, range(NORMAL_REQUESTS)))
            assert statuses == [200] * NORMAL_REQUESTS

            # The slow clients were only waiting: their bodies complete normally.
            for sock in slow:
                sock.sendall(body[5:])
            for sock in slow:
                response = read_response(sock)
                assert response.status == 200
                assert response.json() == {"length": 40}
        finally:
            for sock in slow:
                sock.close()

    def test_a_body_that_stops_arriving_is_408(self) -> None:
        config = Settings(REQUEST_BODY_TIMEOUT_SECONDS=0.5)
        with live_server(config) as server, server.connect() as sock:
            sock.sendall(request_head("Content-Length: 100", "X-Request-ID: slow-1") + b'{"na')
            response = read_response(sock)
            assert response.status == 408
            assert response.json() == {
                "detail": "The request body did not arrive in time",
                "code": "request_timeout",
                "request_id": "slow-1",
            }
            assert response.headers["connection"] == "close"
            assert_closed(sock)


class TestBodyLimit:
    def test_a_declared_length_over_the_limit_is_refused_before_the_body(
        self, live: LiveServer
    ) -> None:
        with live.connect() as sock:
            sock.sendall(
                request_head(
                    "Content-Length: 209715200", "Expect: 100-continue", "X-Request-ID: big-1"
                )
            )
            response = read_response(sock)  # not "100 Continue": no byte of the body is wanted
            assert response.status == 413
            assert response.json() == {
                "detail": f"The request body may not exceed {LIMIT} bytes",
                "code": "request_too_large",
                "request_id": "big-1",
            }
            assert response.headers["connection"] == "close"
            assert_closed(sock)

    def test_a_chunked_body_is_refused_once_it_passes_the_limit(self, live: LiveServer) -> None:
        with live.connect() as sock:
            sock.sendall(request_head("Transfer-Encoding: chunked"))
            block = b"x" * 65536
            for _ in range(LIMIT // len(block)):
                sock.sendall(b"%x\r\n%b\r\n" % (len(block), block))
            sock.sendall(b"1\r\nx\r\n")  # one byte over; the body never ends
            response = read_response(sock)
            assert response.status == 413
            assert response.json()["code"] == "request_too_large"
            assert_closed(sock)

    def test_a_body_of_exactly_the_limit_reaches_the_route_intact(self, live: LiveServer) -> None:
        envelope = len(json.dumps({"name": ""}))
        body = json.dumps({"name": "é" * ((LIMIT - envelope) // 2)}, ensure_ascii=False)
        content = body.encode().ljust(LIMIT)  # JSON allows trailing whitespace
        with httpx2.Client(base_url=live.url, timeout=15) as http:
            accepted = http.post(
                ECHO, content=content, headers={"Content-Type": "application/json"}
            )
            refused = http.post(
                ECHO, content=content + b" ", headers={"Content-Type": "application/json"}
            )
        assert accepted.status_code == 200
        assert accepted.json() == {"length": (LIMIT - envelope) // 2}
        assert refused.status_code == 413
        assert refused.json()["code"] == "request_too_large"
