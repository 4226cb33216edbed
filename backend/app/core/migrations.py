"""Alembic, driven from code: `agentry migrate`, `agentry serve` and the tests use it."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from app.core.db import engine

SCRIPT_LOCATION = Path(__file__).resolve().parent.parent / "alembic"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(revision: str = "head", *, sql: bool = False) -> None:
    command.upgrade(alembic_config(), revision, sql=sql)


def migrate_to(target: str, *, sql: bool = False) -> None:
    """Upgrade or downgrade, whichever reaches `target` from where the database is."""
    config = alembic_config()
    if sql or target == "head" or not _is_below_current(config, target):
        command.upgrade(config, target, sql=sql)
    else:
        command.downgrade(config, target)


def _is_below_current(config: Config, target: str) -> bool:
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
