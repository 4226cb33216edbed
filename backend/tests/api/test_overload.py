"""Overload must not stall sync routes (the threadpool/connection-pool deadlock).

A real server, a database pool of 2 and 8 worker threads; 200 requests at once to a
route that holds its pooled connection while it works and returns a response_model.
Without admission control the worker threads all block waiting for a connection while
the requests holding the connections wait for a thread to serialise their response.
"""

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from sqlalchemy import text

from app.api.deps import SessionDep
from app.api.routing import OneTripRoute
from app.core.config import Settings
from app.core.db import SessionFactory, create_db_engine
from app.main import create_app

CONCURRENT_REQUESTS = 200

router = APIRouter(prefix="/test-only", tags=["test"], route_class=OneTripRoute)


class Reading(BaseModel):
    value: int


@router.get("/reading", response_model=Reading, operation_id="test_reading")
def reading(session: SessionDep) -> Reading:
    value = session.execute(text("SELECT 1")).scalar_one()
    time.sleep(0.005)  # a slow query: the connection stays checked out meanwhile
    return Reading(value=value)


# What the routes below saw: requests served by `counted`, requests holding a slot in
# `hold`, and the gate `hold` waits on.
served: list[str] = []
holding: list[str] = []
gate = threading.Event()


@router.get("/hold", response_model=Reading, operation_id="test_hold")
def hold() -> Reading:
    holding.append("hold")
    gate.wait(timeout=10)  # keeps its admission slot until the test opens the gate
    return Reading(value=0)


@router.post("/counted", response_model=Reading, operation_id="test_counted")
@router.get("/counted", response_model=Reading, operation_id="test_counted_get")
def counted(session: SessionDep) -> Reading:
    served.append("counted")
    return Reading(value=session.execute(text("SELECT 1")).scalar_one())


def serve(config: Settings) -> Iterator[str]:
    engine = create_db_engine(config)
    app: FastAPI = create_app(config)
    app.include_router(router, prefix="/api/v1")

    app.state.open_session = SessionFactory(engine)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, access_log=False, backlog=CONCURRENT_REQUESTS * 2)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/api/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        engine.dispose()


@pytest.fixture
def server_url() -> Iterator[str]:
    config = Settings(THREADPOOL_SIZE=8, DB_POOL_SIZE=2, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=3)
    yield from serve(config)


@pytest.fixture
def two_slot_url() -> Iterator[str]:
    served.clear()
    holding.clear()
    gate.clear()
    yield from serve(Settings(THREADPOOL_SIZE=2, REQUEST_QUEUE_TIMEOUT=10))
    gate.set()


def test_concurrent_requests_beyond_the_threadpool_all_complete(server_url: str) -> None:
    def fetch(_: int) -> int:
        with httpx2.Client(timeout=30) as http:
            return http.get(f"{server_url}/test-only/reading").status_code

    with ThreadPoolExecutor(max_workers=CONCURRENT_REQUESTS) as pool:
        statuses = list(pool.map(fetch, range(CONCURRENT_REQUESTS)))

    assert len(statuses) == CONCURRENT_REQUESTS
    assert statuses.count(200) == CONCURRENT_REQUESTS, sorted(set(statuses))
    after = httpx2.get(f"{server_url}/test-only/reading", timeout=2)
    assert after.status_code == 200
    assert after.json() == {"value": 1}


def test_every_route_of_the_app_releases_its_session_in_its_own_trip() -> None:
    """A route of another class would hold its connection until the response is sent,
    while FastAPI's own trips wait for threads: the deadlock above."""
    app = create_app(Settings())
    routes = [
        context.original_route
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
    ]
    assert len(routes) > 50
    assert [route.path for route in routes if not isinstance(route, OneTripRoute)] == []


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_request_whose_client_left_while_queued_is_never_served(
    two_slot_url: str, method: str
) -> None:
    """Under overload, clients give up; what they asked for must not be served to no one
    while live requests wait behind it."""
    host, port = two_slot_url.removeprefix("http://").split("/")[0].split(":")
    with ThreadPoolExecutor(max_workers=2) as holders:
        held = [
            holders.submit(httpx2.get, f"{two_slot_url}/test-only/hold", timeout=15)
            for _ in range(2)
        ]
        deadline = time.monotonic() + 10
        while len(holding) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(holding) == 2  # both admission slots taken
        body = b'{"value": 1}'
        request = (
            f"{method} /api/v1/test-only/counted HTTP/1.1\r\nHost: {host}\r\n"
            + (
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                if method == "POST"
                else ""
            )
            + "\r\n"
        ).encode() + (body if method == "POST" else b"")
        abandoned = [socket.create_connection((host, int(port))) for _ in range(20)]
        for connection in abandoned:
            connection.sendall(request)
        time.sleep(1)  # all 20 read and queued
        for connection in abandoned:
            connection.close()
        time.sleep(1)
        assert served == []
        gate.set()
        assert [future.result().status_code for future in held] == [200, 200]
    live = httpx2.request(method, f"{two_slot_url}/test-only/counted", json={"value": 1}, timeout=5)
    assert live.status_code == 200
    assert served == ["counted"]  # the live request only
