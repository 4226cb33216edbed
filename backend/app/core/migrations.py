"""Alembic, driven from code: `agentry migrate`, `agentry serve` and the tests use it."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.engine import Connection

SCRIPT_LOCATION = Path(__file__).resolve().parent.parent / "alembic"

# Made by migrations, unknown to the models: the full-text index over chunks (an FTS5
# table and its shadow tables on SQLite; on PostgreSQL a stored tsvector column and its
# GIN index).
_SEARCH_TABLE_PREFIX = "chunk_fts"
_SEARCH_INDEX = "ix_chunk_search"
_SEARCH_COLUMN = "search_vector"  # PostgreSQL only: a generated, stored tsvector


def include_name(name: str | None, type_: str, _parent_names: object) -> bool:
    """Whether autogenerate and the models-versus-migrations test compare this object."""
    if type_ == "table":
        return not (name or "").startswith(_SEARCH_TABLE_PREFIX)
    if type_ == "index":
        return name != _SEARCH_INDEX
    if type_ == "column":
        return name != _SEARCH_COLUMN
    return True


def alembic_config(connection: Connection | None = None, *, engine: Engine | None = None) -> Config:
    """Alembic's configuration, on an open connection or on an engine (alembic/env.py
    reads them; with neither, it builds an engine from the environment's settings)."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if connection is not None:
        config.attributes["connection"] = connection
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head", *, sql: bool = False) -> None:
    command.upgrade(alembic_config(engine=engine), revision, sql=sql)


def migrate_to(engine: Engine, target: str, *, sql: bool = False) -> None:
    """Upgrade or downgrade, whichever reaches `target` from where the database is."""
    config = alembic_config(engine=engine)
    if sql or target == "head" or not _is_below_current(engine, config, target):
        command.upgrade(config, target, sql=sql)
    else:
        command.downgrade(config, target)


def _is_below_current(engine: Engine, config: Config, target: str) -> bool:
    if target == "base" or target.startswith("-"):
        return True
    script = ScriptDirectory.from_config(config)
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        return False
    resolved = script.get_revision(target)
    if resolved is None:
        return False
    return resolved.revision != current and any(
        revision.revision == resolved.revision
        for revision in script.iterate_revisions(current, "base")
    )
