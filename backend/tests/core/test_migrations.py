"""Models and migrations agree, and every migration can be undone, on each engine."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

import app.models  # noqa: F401
from app.core import migrations
from app.core.config import Settings
from app.core.db import create_db_engine
from tests.conftest import AgentryCommand
from tests.environment import engine as app_engine


@pytest.fixture
def empty_engine(tmp_path: Path) -> Iterator[Engine]:
    """A database of its own, so migrations run from nothing."""
    if app_engine.dialect.name == "sqlite":
        engine = create_db_engine(Settings(DATABASE_URL=f"sqlite:///{tmp_path}/migrations.db"))
        yield engine
        engine.dispose()
        return
    name = f"agentry_migrations_{uuid.uuid4().hex[:8]}"
    admin = create_engine(app_engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(make_url(app_engine.url).set(database=name))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}"'))
        admin.dispose()


def run(engine: Engine, action: str, revision: str) -> None:
    with engine.begin() as connection:
        getattr(command, action)(migrations.alembic_config(connection), revision)


def differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_name": migrations.include_name}
        )
        return list(compare_metadata(context, SQLModel.metadata))


def test_upgrade_matches_models_and_round_trips(empty_engine: Engine) -> None:
    run(empty_engine, "upgrade", "head")
    assert differences(empty_engine) == []
    tables = set(inspect(empty_engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= tables

    run(empty_engine, "downgrade", "base")
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}

    run(empty_engine, "upgrade", "head")
    assert differences(empty_engine) == []


def test_migrate_command_prints_sql_and_moves_both_ways(
    tmp_path: Path, agentry: AgentryCommand
) -> None:
    env = {"DATA_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/cli.db"}
    offline = agentry("migrate", "--sql", env=env)
    assert offline.returncode == 0, offline.stderr
    assert "CREATE TABLE user" in offline.stdout or 'CREATE TABLE "user"' in offline.stdout
    assert not (tmp_path / "cli.db").exists() or not _tables(tmp_path / "cli.db")

    assert agentry("migrate", env=env).returncode == 0
    assert "user" in _tables(tmp_path / "cli.db")
    assert agentry("migrate", "--to", "base", env=env).returncode == 0
    assert _tables(tmp_path / "cli.db") <= {"alembic_version"}
    assert agentry("migrate", "--to", "head", env=env).returncode == 0
    assert "user" in _tables(tmp_path / "cli.db")


def _tables(path: Path) -> set[str]:
    engine = create_engine(f"sqlite:///{path}")
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
