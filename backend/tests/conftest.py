"""Test harness: a migrated database, one rolled-back transaction per test.

tests/environment.py builds the settings and the engine (SQLite by default, PostgreSQL
when TEST_DATABASE_URL is set; one database per pytest-xdist worker).
"""

import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import pytest
import redis
from alembic import command
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection
from sqlmodel import Session

from app import cli
from app.core import migrations
from app.core.config import Settings
from app.core.db import READ_ONLY
from app.core.throttle import build_throttle, connect_redis
from app.main import create_app
from app.models.user import User
from app.modules.llm.client import LLMClient
from app.modules.storage import build_storage
from app.services.ingestion_service import IngestPolicy
from app.services.run_runtime import RunPolicy
from app.tasks.dispatch import InlineDispatcher
from tests.environment import clean_up, engine, settings
from tests.factories import auth_headers, create_user
from tests.modules.fake_llm import FakeLLM
from tests.redis_server import RedisServer


@pytest.fixture(scope="session", autouse=True)
def _migrated_database() -> Iterator[None]:
    with engine.begin() as connection:
        command.upgrade(migrations.alembic_config(connection), "head")
    yield
    clean_up()


@pytest.fixture
def connection() -> Iterator[Connection]:
    """One connection whose outer transaction is rolled back after the test."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # pysqlite's implicit transactions break SAVEPOINT; take control of BEGIN.
            conn.connection.driver_connection.isolation_level = None  # type: ignore[union-attr]
        transaction = conn.begin()
        if sqlite:
            conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            transaction.rollback()
            if sqlite:
                conn.connection.driver_connection.isolation_level = ""  # type: ignore[union-attr]


@pytest.fixture
def db(connection: Connection) -> Iterator[Session]:
    """The test's own view of the database; the app's commits are savepoints in it."""
    with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
        yield session


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def session_factory(connection: Connection) -> Callable[[], Session]:
    """Sessions inside the test's transaction, for code that opens its own (runs)."""

    def open_session(*, read_only: bool = False) -> Session:
        session = Session(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        if read_only:  # as the app's SessionFactory marks them: writing raises
            session.info[READ_ONLY] = True
        return session

    return open_session


@pytest.fixture(scope="session")
def shared_app() -> FastAPI:
    """One app on the test settings for the whole session: building one costs more than
    most tests. `make_app` sets afresh, for each test, all a test may change on it, and
    refuses it once routes were added to it (a test that adds routes takes an app of its
    own: `make_app(settings)`)."""
    application = create_app(settings)
    application.state.route_count = len(application.routes)
    return application


@pytest.fixture
def make_app(request: pytest.FixtureRequest, session_factory: Callable[[], Session]) -> AppFactory:
    """Apps whose sessions live inside the test's transaction; settings may differ (a new
    app), or not (the session's app, reset).

    Runs execute in the request's thread (InlineDispatcher) so that they see the test's
    rows; with no provider configured they fail with llm_not_configured."""

    def make(config: Settings | None = None) -> FastAPI:
        if config is None:
            application: FastAPI = request.getfixturevalue("shared_app")
            if len(application.routes) != application.state.route_count:
                raise AssertionError(
                    "a test added routes to the shared app: use make_app(settings)"
                )
            config = settings
        else:
            application = create_app(config)
        application.dependency_overrides = {}
        application.state.open_session = session_factory
        application.state.settings = config
        application.state.throttle = build_throttle(config)
        application.state.llm = LLMClient(providers=config.LLM_PROVIDERS)
        application.state.run_dispatcher = InlineDispatcher(
            llm=LLMClient(providers=config.LLM_PROVIDERS),
            storage=build_storage(config),
            policy=RunPolicy.from_settings(config),
            ingest_policy=IngestPolicy.from_settings(config),
            session_factory=session_factory,
        )
        return application

    return make


@pytest.fixture
def app(make_app: AppFactory) -> FastAPI:
    return make_app()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = connect_redis(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        message = f"Redis at TEST_REDIS_URL is unreachable ({type(exc).__name__})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield client
    client.close()


@pytest.fixture
def key_prefix() -> str:
    return f"agentry-test:{uuid.uuid4().hex}:"


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A real chat-completions server on 127.0.0.1 with scripted answers."""
    with FakeLLM() as fake:
        yield fake


@pytest.fixture
def user(db: Session) -> User:
    return create_user(db, full_name="Ada Lovelace")


@pytest.fixture
def user_headers(db: Session, user: User) -> dict[str, str]:
    return auth_headers(db, user=user)


@pytest.fixture
def superuser(db: Session) -> User:
    return create_user(db, is_superuser=True, full_name="Grace Hopper")


@pytest.fixture
def superuser_headers(db: Session, superuser: User) -> dict[str, str]:
    return auth_headers(db, user=superuser)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free port, for tests that stop, kill or freeze it."""
    executable = shutil.which("redis-server")
    if executable is None:
        message = "redis-server is not on PATH"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with RedisServer(executable=executable) as server:
        yield server


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


AgentryCommand = Callable[..., CommandResult]


@pytest.fixture
def agentry(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> AgentryCommand:
    """Runs an `agentry` command in this process, with `env` on top of the test's
    environment, as `python -m app.cli` would in its own (one test still starts the
    installed command itself: tests/core/test_bootstrap.py)."""

    def run(*args: str, env: Mapping[str, str] | None = None) -> CommandResult:
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()  # what the test printed before is not the command's
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return CommandResult(code, captured.out, captured.err)

    return run
