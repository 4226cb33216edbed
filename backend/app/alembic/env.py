"""Alembic environment: the metadata comes from every model, the database from the
caller.

A caller hands over an open connection in `config.attributes["connection"]` (the tests)
or an engine in `config.attributes["engine"]` (`agentry migrate`, `serve`, `worker`); the
`alembic` command itself hands over neither, and the environment's settings name the
database.
"""

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import app.models  # noqa: F401  (registers every table on the metadata)
from app.core.config import load_settings
from app.core.db import create_db_engine
from app.core.migrations import include_name

config = context.config
target_metadata = SQLModel.metadata


def render_item(type_: str, obj: Any, _context: AutogenContext) -> str | Literal[False]:
    """Plain `sa.String` in revisions instead of SQLModel's AutoString subclass."""
    if type_ == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    return False


def given_engine() -> Engine:
    engine = config.attributes.get("engine")
    if engine is None:
        engine = config.attributes["engine"] = create_db_engine(load_settings())
    return engine


def run_offline() -> None:
    engine = given_engine()
    context.configure(
        url=engine.url.render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=engine.dialect.name == "sqlite",
        render_item=render_item,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
        include_name=include_name,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    with given_engine().connect() as connection:
        run_with(connection)
        connection.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
