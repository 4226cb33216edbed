"""What the in-process benchmarks (knowledge, retrieval, vectors) share: a scratch
directory and database that go away however a run ends (Ctrl-C, a plain `kill`), and
small helpers for their options and reports."""

import argparse
import logging
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from sqlalchemy import Engine

from app.core import migrations
from app.core.config import Settings, load_settings
from app.core.db import create_db_engine
from benchmarks import servers

T = TypeVar("T")


@contextmanager
def scratch_directory(prefix: str) -> Iterator[Path]:
    """A temporary directory, removed at the end; SIGTERM ends the run like Ctrl-C, so
    that it is. Agentry's own log lines below ERROR are silenced."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    logging.getLogger("agentry").setLevel(logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def scratch_database(
    workdir: Path,
    *,
    database_url: str | None = None,
    postgres_admin_url: str | None = None,
    environment: Mapping[str, str] | None = None,
) -> Iterator[tuple[Settings, Engine]]:
    """Settings and a migrated engine on `database_url`, on a fresh PostgreSQL database
    made through `postgres_admin_url` (dropped at the end), or else on a SQLite file in
    `workdir`; `environment` holds further settings."""
    database_name: str | None = None
    engine: Engine | None = None
    try:
        url = database_url or f"sqlite:///{(workdir / 'benchmark.db').as_posix()}"
        if postgres_admin_url:
            database_name = f"agentry_bench_{secrets.token_hex(4)}"
            url = servers.create_database(postgres_admin_url, database_name)
        os.environ.update({"DATABASE_URL": url, "DATA_DIR": str(workdir / "data")})
        os.environ.update(environment or {})
        config = load_settings()
        engine = create_db_engine(config)
        migrations.upgrade(engine, "head")
        yield config, engine
    finally:
        if engine is not None:
            engine.dispose()
        if database_name is not None and postgres_admin_url:
            servers.drop_database(postgres_admin_url, database_name)


def at_least(least: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than `least`."""

    def parse(text: str) -> int:
        value = int(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} is less than {least}")
        return value

    return parse


def stage(name: str, measure: Callable[[], T]) -> T:
    """Runs `measure`, printing its name and how long it took."""
    print(f"{name} ...", end="", flush=True)
    started = time.perf_counter()
    result = measure()
    print(f" {time.perf_counter() - started:.0f} s", flush=True)
    return result


def engine_name(engine: Engine) -> str:
    with engine.connect() as connection:
        version = connection.dialect.server_version_info or ()
    return f"{engine.dialect.name} {'.'.join(str(part) for part in version)}"


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> Any:
    raise SystemExit(128 + signum)
