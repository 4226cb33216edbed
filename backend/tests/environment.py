"""The test process's settings and engine, built once, before anything else of `app` runs.

SQLite (a file in a temporary directory of this process) by default; PostgreSQL when
TEST_DATABASE_URL is set. Under pytest-xdist each worker process gets a database of its
own: its own SQLite file, or `<TEST_DATABASE_URL's database>_<worker>` on PostgreSQL,
created here and dropped at the end of the session (conftest.py), which also removes
the process's temporary data directory.
"""

import atexit
import os
import shutil
import tempfile

import psycopg
from sqlalchemy.engine import make_url

from app.core.config import Settings, load_settings
from app.core.db import create_db_engine
from app.tasks.resources import session_factory_for

DATA_DIR = tempfile.mkdtemp(prefix="agentry-tests-")
# Every process that imports this removes its own at exit: the xdist controller, which
# runs no session fixture, as well as the workers.
atexit.register(shutil.rmtree, DATA_DIR, ignore_errors=True)
WORKER = os.environ.get("PYTEST_XDIST_WORKER")


def _database_url() -> str:
    given = os.environ.get("TEST_DATABASE_URL")
    if not given:
        return f"sqlite:///{DATA_DIR}/test.db"
    if WORKER is None:
        return given
    url = make_url(given)
    worker_url = url.set(database=f"{url.database}_{WORKER}")
    _recreate_database(given, worker_url.database or "")
    return worker_url.render_as_string(hide_password=False)


def _admin_dsn(url: str) -> str:
    """A libpq address of the server's `postgres` database, for CREATE and DROP."""
    parsed = make_url(url).set(drivername="postgresql", database="postgres")
    return parsed.render_as_string(hide_password=False)


def _recreate_database(url: str, name: str) -> None:
    with psycopg.connect(_admin_dsn(url), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def clean_up() -> None:
    """Removes this process's data directory (the SQLite file, stored documents) and, on
    PostgreSQL under xdist, drops this worker's own database."""
    engine.dispose()
    shutil.rmtree(DATA_DIR, ignore_errors=True)
    given = os.environ.get("TEST_DATABASE_URL")
    if not given or WORKER is None:
        return
    name = make_url(DATABASE_URL).database
    with psycopg.connect(_admin_dsn(given), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


DATABASE_URL = _database_url()
os.environ["ENVIRONMENT"] = "test"
os.environ["DATA_DIR"] = DATA_DIR
os.environ["DATABASE_URL"] = DATABASE_URL
os.environ.setdefault("LOG_LEVEL", "WARNING")

settings: Settings = load_settings()
engine = create_db_engine(settings)
# Sessions on committed rows, for tests of code that opens its own (runs, workers).
default_session = session_factory_for(engine)
