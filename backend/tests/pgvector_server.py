"""A PostgreSQL with pgvector for the tests of the HNSW path: the `pgserver` package's
server (PostgreSQL 16 with pgvector), started once per test process in a temporary
directory of its own, on a unix socket (so pytest-xdist workers never share one), and
stopped and removed when the process exits.

`pgvector_database()` gives an engine on a fresh database of it, migrated to head, and
drops the database afterwards. Where the server cannot start, the tests that need it are
skipped (failed on CI).
"""

import atexit
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from app.core import migrations
from app.core.db import create_db_engine
from tests.environment import settings

with warnings.catch_warnings():
    # platformdirs warns, on import, when XDG_RUNTIME_DIR is unset (containers, CI).
    warnings.simplefilter("ignore")
    from pgserver.postgres_server import PostgresServer, get_server


class _Server:
    """This process's server, started on first use; None once it failed to start."""

    instance: PostgresServer | None = None
    failure: str | None = None


def _server() -> PostgresServer:
    if _Server.instance is not None:
        return _Server.instance
    if _Server.failure is None:
        parent = tempfile.mkdtemp(prefix="agentry-pgvector-")
        # Registered first, so it runs last: after pgserver has stopped the server.
        atexit.register(shutil.rmtree, parent, ignore_errors=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _Server.instance = get_server(Path(parent) / "data", cleanup_mode="delete")
            return _Server.instance
        except Exception as exc:  # any failure to start means: no server
            _Server.failure = f"pgserver could not start a PostgreSQL ({type(exc).__name__}: {exc})"
    if os.environ.get("CI"):
        pytest.fail(_Server.failure)
    pytest.skip(_Server.failure)


def database_url(server: PostgresServer, database: str) -> str:
    """The SQLAlchemy address of `database` on the server's unix socket."""
    given = make_url(server.get_uri())
    host = given.query["host"]
    return f"postgresql+psycopg://{given.username}@/{database}?host={host}"


@contextmanager
def pgvector_database() -> Iterator[Engine]:
    """An engine, built as the app builds one, on a new database migrated to head."""
    server = _server()
    name = f"agentry_pgvector_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.get_uri(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    engine = create_db_engine(
        settings.model_copy(update={"DATABASE_URL": database_url(server, name)})
    )
    try:
        migrations.upgrade(engine, "head")
        yield engine
    finally:
        engine.dispose()
        with psycopg.connect(server.get_uri(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
