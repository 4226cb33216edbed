"""PostgreSQL search reads a stored tsvector instead of computing one per passage.

The GIN index ix_chunk_search moves from the expression to_tsvector('simple', text) to
a generated, stored column `search_vector` of the same value, which ranking reads too:
a search no longer parses every candidate passage twice (to match, then to rank). Like
the index, the column is made here and unknown to the models (core.migrations
.include_name). Nothing changes on SQLite, whose FTS5 table keeps its own index.

Revision ID: 6c1f0e2b9a47
Revises: d81c3de41d97
Create Date: 2026-11-30 08:12:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "6c1f0e2b9a47"
down_revision: str | None = "d81c3de41d97"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXPRESSION = "to_tsvector('simple'::regconfig, text)"


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        return
    op.execute("DROP INDEX IF EXISTS ix_chunk_search")
    op.execute(
        "ALTER TABLE chunk ADD COLUMN search_vector tsvector"
        f" GENERATED ALWAYS AS ({EXPRESSION}) STORED"
    )
    op.execute("CREATE INDEX ix_chunk_search ON chunk USING gin (search_vector)")


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        return
    op.execute("DROP INDEX IF EXISTS ix_chunk_search")
    op.execute("ALTER TABLE chunk DROP COLUMN IF EXISTS search_vector")
    op.execute(f"CREATE INDEX ix_chunk_search ON chunk USING gin ({EXPRESSION})")
