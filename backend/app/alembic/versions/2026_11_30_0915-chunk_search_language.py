"""PostgreSQL passages' search vectors are written in the configured language.

`search_vector` stops being generated from to_tsvector('simple', text): ingestion now
writes it in SEARCH_LANGUAGE, and `agentry reindex-search` rewrites it after that setting
changes. The vectors already stored keep their values (in 'simple', the only language
there was), and the GIN index ix_chunk_search stays as it is. Nothing changes on SQLite.

Revision ID: 0b5d2e8f1c37
Revises: 6c1f0e2b9a47
Create Date: 2026-11-30 09:15:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0b5d2e8f1c37"
down_revision: str | None = "6c1f0e2b9a47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXPRESSION = "to_tsvector('simple'::regconfig, text)"


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        return
    op.execute("ALTER TABLE chunk ALTER COLUMN search_vector DROP EXPRESSION")


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        return
    # A generated column cannot be made from a plain one: the column is made again.
    op.execute("DROP INDEX IF EXISTS ix_chunk_search")
    op.execute("ALTER TABLE chunk DROP COLUMN IF EXISTS search_vector")
    op.execute(
        "ALTER TABLE chunk ADD COLUMN search_vector tsvector"
        f" GENERATED ALWAYS AS ({EXPRESSION}) STORED"
    )
    op.execute("CREATE INDEX ix_chunk_search ON chunk USING gin (search_vector)")
