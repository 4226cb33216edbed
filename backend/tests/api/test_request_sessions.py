"""A request's database session: read-only for routes that only read, and released
whatever ends the request."""

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlmodel import Session

from app.api.deps import CurrentUser, SessionDep
from app.api.routing import OneTripRoute, writes
from app.core.config import Settings
from app.core.db import PREPARE_THRESHOLD, SessionFactory, create_db_engine
from app.main import create_app
from app.models.user import User
from tests.environment import settings
from tests.factories import auth_headers, create_user

router = APIRouter(prefix="/test-only", tags=["test"], route_class=OneTripRoute)


@router.get("/rename", operation_id="test_rename_on_get")
def rename_on_get(session: SessionDep, current_user: CurrentUser) -> dict[str, str]:
    current_user.full_name = "Renamed by a GET"
    session.add(current_user)
    session.commit()
    return {"status": "renamed"}


@router.get("/rename-declared", operation_id="test_rename_on_declared_get")
@writes
def rename_on_declared_get(session: SessionDep, current_user: CurrentUser) -> dict[str, str]:
    return rename_on_get(session, current_user)


@pytest.fixture
def engine() -> Iterator[Engine]:
    """An engine of the test's own, so that its pool counts only these requests."""
    own = create_db_engine(settings)
    try:
        yield own
    finally:
        own.dispose()


@pytest.fixture
def user(engine: Engine) -> Iterator[User]:
    with Session(engine, expire_on_commit=False) as setup:
        created = create_user(setup)
    try:
        yield created
    finally:
        with Session(engine) as cleanup:
            row = cleanup.get(User, created.id)
            if row is not None:
                cleanup.delete(row)
                cleanup.commit()


@pytest.fixture
def real_app(engine: Engine) -> FastAPI:
    """The app as it serves: its sessions from SessionFactory on a real pool."""
    application = create_app(settings)
    application.include_router(router, prefix="/api/v1")
    application.state.open_session = SessionFactory(engine)
    return application


def headers_for(engine: Engine, user: User) -> dict[str, str]:
    with Session(engine, expire_on_commit=False) as setup:
        headers = auth_headers(setup, user=user)
        setup.commit()
    return headers


class TestReadOnlySessions:
    def test_a_get_route_that_writes_is_refused_and_writes_nothing(
        self, real_app: FastAPI, engine: Engine, user: User
    ) -> None:
        headers = headers_for(engine, user)
        with TestClient(real_app, raise_server_exceptions=False) as client:
            response = client.get("/api/v1/test-only/rename", headers=headers)
        assert response.status_code == 500
        assert response.json()["code"] == "internal_error"
        with Session(engine) as check:
            assert check.get(User, user.id).full_name == user.full_name  # type: ignore[union-attr]

    def test_a_get_route_declared_to_write_writes(
        self, real_app: FastAPI, engine: Engine, user: User
    ) -> None:
        headers = headers_for(engine, user)
        with TestClient(real_app) as client:
            response = client.get("/api/v1/test-only/rename-declared", headers=headers)
        assert response.status_code == 200
        with Session(engine) as check:
            assert check.get(User, user.id).full_name == "Renamed by a GET"  # type: ignore[union-attr]

    @pytest.mark.skipif(settings.is_sqlite, reason="PostgreSQL transactions")
    def test_reads_run_without_a_transaction_and_writes_within_one(
        self, real_app: FastAPI, engine: Engine, user: User
    ) -> None:
        """Each statement of a GET is a transaction of its own (no BEGIN, no ROLLBACK);
        the pooled connection is given back as it was, so a POST on it still runs in
        one transaction."""
        headers = headers_for(engine, user)
        seen: list[tuple[str, bool]] = []

        def record(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            seen.append((statement.split()[0], conn.connection.dbapi_connection.autocommit))

        event.listen(engine, "before_cursor_execute", record)
        try:
            with TestClient(real_app) as client:
                assert client.get("/api/v1/users/me", headers=headers).status_code == 200
                reads = list(seen)
                seen.clear()
                ended = client.post("/api/v1/login/logout", headers=headers)
                assert ended.status_code == 204
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert reads == [("SELECT", True)]
        assert ("SELECT", False) in seen
        assert all(not autocommit for _, autocommit in seen)


class TestSessionsAreReleased:
    def test_every_way_a_request_ends_gives_its_connection_back(
        self, real_app: FastAPI, engine: Engine, user: User
    ) -> None:
        headers = headers_for(engine, user)
        unknown = "00000000-0000-0000-0000-000000000000"
        with TestClient(real_app, raise_server_exceptions=False) as client:
            answers = [
                client.get("/api/v1/users/me", headers=headers).status_code,
                # Refused after authentication used the session, before the route ran:
                client.post("/api/v1/agents", headers=headers, json={"name": ""}).status_code,
                client.get(f"/api/v1/agents/{unknown}", headers=headers).status_code,
                client.get("/api/v1/users/me", headers={"Authorization": "Bearer x"}).status_code,
                client.get("/api/v1/test-only/rename", headers=headers).status_code,
            ]
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert answers == [200, 422, 404, 401, 500]


def test_request_ids_are_unique_and_uuid_shaped(client: TestClient) -> None:
    ids = {client.get("/api/v1/utils/health-check").headers["X-Request-ID"] for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in ids)


@pytest.mark.skipif(settings.is_sqlite, reason="PostgreSQL prepared statements")
@pytest.mark.parametrize("prepared", [True, False])
def test_statements_run_again_and_again_are_prepared_on_the_server_unless_turned_off(
    engine: Engine, user: User, prepared: bool
) -> None:
    config = Settings(DB_POOL_SIZE=1, DB_MAX_OVERFLOW=0, DB_PREPARED_STATEMENTS=prepared)
    app = create_app(config)
    with Session(engine) as setup:
        headers = auth_headers(setup, user=user)
    with TestClient(app) as client:
        for _ in range(PREPARE_THRESHOLD + 2):
            response = client.get("/api/v1/users/me", headers=headers)
            assert response.status_code == 200
            assert response.json()["id"] == str(user.id)
        with app.state.engine.connect() as connection:  # the pool's one connection
            statements = connection.exec_driver_sql(
                "SELECT statement FROM pg_prepared_statements"
            ).scalars()
            login_checks = [text for text in statements if "login_session" in text]
    assert len(login_checks) == (1 if prepared else 0)
