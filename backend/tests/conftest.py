"""Test harness: a migrated database, one rolled-back transaction per test.

SQLite (a temporary file) by default; PostgreSQL when TEST_DATABASE_URL is set.
"""

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator

_data_dir = tempfile.mkdtemp(prefix="agentry-tests-")
os.environ["ENVIRONMENT"] = "test"
os.environ["DATA_DIR"] = _data_dir
os.environ["DATABASE_URL"] = os.environ.get("TEST_DATABASE_URL") or (
    f"sqlite:///{_data_dir}/test.db"
)
os.environ.setdefault("LOG_LEVEL", "WARNING")

import pytest  # noqa: E402
import redis  # noqa: E402
from alembic import command  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import Connection  # noqa: E402
from sqlmodel import Session  # noqa: E402

from app.core import migrations  # noqa: E402
from app.core.config import Settings, settings  # noqa: E402
from app.core.db import engine, get_session  # noqa: E402
from app.core.throttle import connect_redis  # noqa: E402
from app.main import create_app  # noqa: E402
from app.models.user import User  # noqa: E402
from app.modules.llm.client import LLMClient  # noqa: E402
from app.services.run_runtime import RunPolicy  # noqa: E402
from app.tasks.dispatch import InlineDispatcher  # noqa: E402
from tests.factories import auth_headers, create_user  # noqa: E402
from tests.modules.fake_llm import FakeLLM  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _migrated_database() -> None:
    with engine.begin() as connection:
        command.upgrade(migrations.alembic_config(connection), "head")


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

    def open_session() -> Session:
        return Session(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )

    return open_session


@pytest.fixture
def make_app(session_factory: Callable[[], Session]) -> AppFactory:
    """Apps whose sessions live inside the test's transaction; settings may differ.

    Runs execute in the request's thread (InlineDispatcher) so that they see the test's
    rows; with no provider configured they fail with llm_not_configured."""

    def session_in_test_transaction() -> Iterator[Session]:
        with session_factory() as session:
            yield session

    def make(config: Settings = settings) -> FastAPI:
        application = create_app(config)
        application.dependency_overrides[get_session] = session_in_test_transaction
        application.state.run_dispatcher = InlineDispatcher(
            llm=LLMClient(providers={}),
            policy=RunPolicy.from_settings(config),
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
