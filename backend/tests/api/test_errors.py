import logging
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, text
from sqlmodel import Session, col

from app.api.deps import get_session
from app.core.config import Settings
from app.core.db import create_db_engine
from app.main import create_app
from app.models.user import User
from tests.conftest import AppFactory
from tests.environment import engine, settings
from tests.factories import auth_headers, create_user

boom = APIRouter(prefix="/test-only", tags=["test"])


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


@boom.get("/boom", operation_id="test_boom")
def explode() -> None:
    raise RuntimeError("SELECT password_hash FROM users -- internal detail")


@boom.post("/echo", operation_id="test_echo")
def echo(payload: Payload) -> Payload:
    return payload


@pytest.fixture
def raw_client(make_app: AppFactory) -> Iterator[TestClient]:
    # An app of its own: routes added to the session's shared app would stay.
    app = make_app(settings)
    app.include_router(boom, prefix="/api/v1")
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def assert_error_body(body: dict[str, object], code: str, request_id: str) -> None:
    assert body["code"] == code
    assert body["request_id"] == request_id
    assert isinstance(body["detail"], str)
    assert body["detail"]


class TestRequestId:
    def test_valid_id_is_kept(self, client: TestClient) -> None:
        response = client.get("/api/v1/nowhere", headers={"X-Request-ID": "abc.DEF_1-2"})
        assert response.headers["X-Request-ID"] == "abc.DEF_1-2"
        assert response.json()["request_id"] == "abc.DEF_1-2"

    @pytest.mark.parametrize("bad", ["", "a" * 65, "spaces are bad", "ünïcode", "a;b"])
    def test_bad_id_is_replaced(self, client: TestClient, bad: str) -> None:
        response = client.get("/api/v1/nowhere", headers=[(b"X-Request-ID", bad.encode())])
        assert response.headers["X-Request-ID"] != bad
        assert len(response.headers["X-Request-ID"]) == 32
        assert response.json()["request_id"] == response.headers["X-Request-ID"]

    def test_success_carries_an_id_too(self, client: TestClient) -> None:
        response = client.get("/api/v1/utils/health-check")
        assert response.status_code == 200
        assert len(response.headers["X-Request-ID"]) == 32


class TestFrameworkErrors:
    def test_unknown_path_is_404(self, client: TestClient) -> None:
        response = client.get("/api/v1/nowhere", headers={"X-Request-ID": "r1"})
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found", "code": "not_found", "request_id": "r1"}

    def test_wrong_method_is_405(self, client: TestClient) -> None:
        response = client.delete("/api/v1/utils/readiness", headers={"X-Request-ID": "r2"})
        assert response.status_code == 405
        assert response.headers["Allow"] == "GET"
        assert_error_body(response.json(), "method_not_allowed", "r2")

    def test_malformed_json_is_422(self, raw_client: TestClient) -> None:
        response = raw_client.post(
            "/api/v1/test-only/echo",
            content=b'{"name": ',
            headers={"Content-Type": "application/json", "X-Request-ID": "r3"},
        )
        assert response.status_code == 422
        body = response.json()
        assert_error_body(body, "malformed_json", "r3")
        assert body["errors"][0]["type"] == "json_invalid"

    def test_invalid_body_lists_each_problem_without_echoing_input(
        self, raw_client: TestClient
    ) -> None:
        response = raw_client.post(
            "/api/v1/test-only/echo",
            json={"name": 5, "password": "hunter2-secret"},
            headers={"X-Request-ID": "r4"},
        )
        assert response.status_code == 422
        body = response.json()
        assert_error_body(body, "validation_error", "r4")
        assert {tuple(e["loc"]) for e in body["errors"]} == {
            ("body", "name"),
            ("body", "password"),
        }
        assert set(body["errors"][0]) == {"loc", "msg", "type"}
        assert "hunter2-secret" not in response.text


class TestUnhandledError:
    def test_500_body_is_generic_and_the_log_has_the_traceback(
        self, raw_client: TestClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.ERROR, logger="agentry.error"):
            response = raw_client.get("/api/v1/test-only/boom", headers={"X-Request-ID": "r5"})
        assert response.status_code == 500
        assert response.json() == {
            "detail": "Internal server error",
            "code": "internal_error",
            "request_id": "r5",
        }
        assert "SELECT" not in response.text
        assert response.headers["X-Request-ID"] == "r5"
        [record] = [r for r in caplog.records if r.name == "agentry.error"]
        assert record.exc_info is not None
        assert "password_hash" in str(record.exc_info[1])
        assert getattr(record, "request_id", None) == "r5"


def _unreachable_session() -> Iterator[Session]:
    config = Settings(DATABASE_URL="postgresql://nobody@127.0.0.1:9/none", DB_CONNECT_TIMEOUT=1)
    engine = create_db_engine(config)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


class TestDatabaseUnavailable:
    def test_readiness_is_503_when_the_database_is_unreachable(
        self, app: FastAPI, client: TestClient
    ) -> None:
        app.dependency_overrides[get_session] = _unreachable_session
        response = client.get("/api/v1/utils/readiness", headers={"X-Request-ID": "r6"})
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert_error_body(response.json(), "database_unavailable", "r6")

    def test_readiness_is_200_when_the_database_answers(self, client: TestClient) -> None:
        response = client.get("/api/v1/utils/readiness")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    def test_exhausted_pool_is_503_not_500(self, app: FastAPI, client: TestClient) -> None:
        config = Settings(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_POOL_TIMEOUT=0.2)
        engine = create_db_engine(config)

        def pooled_session() -> Iterator[Session]:
            with Session(engine) as session:
                yield session

        app.dependency_overrides[get_session] = pooled_session
        try:
            with engine.connect():  # the pool's only connection, held by someone else
                response = client.get("/api/v1/utils/readiness")
        finally:
            engine.dispose()
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.json()["code"] == "database_unavailable"


@pytest.mark.skipif(settings.is_sqlite, reason="PostgreSQL server connections")
def test_connections_a_database_restart_killed_cost_at_most_one_request() -> None:
    """Pooled connections are not pinged before each use (a round trip per request): when
    the server drops them (a restart, a failover), the first request to meet a dead one
    answers 503 and the pool replaces every connection it had, so the next ones succeed."""
    config = settings.model_copy(update={"PROJECT_NAME": f"Agentry {uuid.uuid4().hex[:8]}"})
    name = config.PROJECT_NAME.lower()
    with Session(engine, expire_on_commit=False) as session:
        user = create_user(session)
        headers = auth_headers(session, user=user)
    try:
        with TestClient(create_app(config)) as client:
            with ThreadPoolExecutor(4) as pool:  # several connections in the pool
                warm = list(pool.map(lambda _: me(client, headers), range(8)))
            with engine.connect() as connection:
                killed = connection.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": name},
                ).scalar_one()
            after = [me(client, headers) for _ in range(6)]
    finally:
        with Session(engine) as session:
            session.execute(delete(User).where(col(User.id) == user.id))
            session.commit()
    assert warm == [200] * 8
    assert killed >= 1
    assert after[0] in (200, 503)
    assert after[1:] == [200] * 5


def me(client: TestClient, headers: dict[str, str]) -> int:
    return client.get("/api/v1/users/me", headers=headers).status_code
