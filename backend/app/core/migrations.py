"""Alembic, driven from code: `agentry migrate`, `agentry serve` and the tests use it."""

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

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
_SEARCH_COLUMN = "search_vector"  # PostgreSQL only: a stored tsvector
# PostgreSQL with pgvector only: chunk_vector's `embedding vector` column and its HNSW
# indexes, one per embedding model (crud.chunk_vector).
_VECTOR_COLUMN = ("chunk_vector", "embedding")
VECTOR_INDEX_PREFIX = "ix_chunk_vector_hnsw_"


def include_name(
    name: str | None, type_: str, parent_names: MutableMapping[Any, str | None]
) -> bool:
    """Whether autogenerate and the models-versus-migrations test compare this object."""
    if type_ == "table":
        return not (name or "").startswith(_SEARCH_TABLE_PREFIX)
    if type_ == "index":
        return name != _SEARCH_INDEX and not (name or "").startswith(VECTOR_INDEX_PREFIX)
    if type_ == "column":
        return name != _SEARCH_COLUMN and (parent_names.get("table_name"), name) != _VECTOR_COLUMN
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
