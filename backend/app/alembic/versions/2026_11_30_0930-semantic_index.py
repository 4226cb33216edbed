"""Semantic search: embedding models in the catalog, passages' vectors, knowledge bases'
semantic index, and embedding calls in the usage ledger.

- ai_model.kind (chat | embedding) and ai_model.dimensions; every model so far is chat.
- chunk_vector: one vector per passage and embedding model (float32 bytes). On PostgreSQL
  with the pgvector extension available, the extension is created and a column
  `embedding vector` is added for HNSW indexes (one per model, made when a knowledge base
  first uses it; crud.chunk_vector); without it the column is not made and search reads
  the bytes. The migration checks for the extension rather than failing without it.
- knowledge_base: the embedding model wanted, the one serving, and the build's state.
- document.embedding_error_code.
- usage_ledger.kind and knowledge_base_id; a ledger row of an embedding call may name no
  run, agent or thread.

The knowledge_base columns are added and dropped in place, with no foreign keys: on
SQLite, copying the table, as a batch operation would, drops it, and with foreign keys on
that deletes every document of every knowledge base.

Revision ID: 2913deb89658
Revises: 0b5d2e8f1c37
Create Date: 2026-11-30 09:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "2913deb89658"
down_revision: str | None = "0b5d2e8f1c37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = app.core.db.ExactDecimal(precision=38, scale=12)


def upgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    op.create_table(
        "chunk_vector",
        sa.Column("chunk_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("knowledge_base_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chunk_id"],
            ["chunk.id"],
            name=op.f("fk_chunk_vector_chunk_id_chunk"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["ai_model.id"],
            name=op.f("fk_chunk_vector_model_id_ai_model"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("chunk_id", "model_id", name=op.f("pk_chunk_vector")),
    )
    op.create_index(
        "ix_chunk_vector_knowledge_base_id_model_id",
        "chunk_vector",
        ["knowledge_base_id", "model_id"],
    )
    if not sqlite:
        _add_pgvector_column()

    with op.batch_alter_table("ai_model", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="chat")
        )
        batch_op.add_column(sa.Column("dimensions", sa.Integer(), nullable=True))

    op.add_column("document", sa.Column("embedding_error_code", sa.String(64), nullable=True))

    op.add_column("knowledge_base", sa.Column("embedding_model_id", sa.Uuid(), nullable=True))
    op.add_column("knowledge_base", sa.Column("index_model_id", sa.Uuid(), nullable=True))
    op.add_column(
        "knowledge_base",
        sa.Column("index_status", sa.String(16), nullable=False, server_default="none"),
    )
    op.add_column("knowledge_base", sa.Column("index_error_code", sa.String(64), nullable=True))
    op.add_column("knowledge_base", sa.Column("index_lease_owner", sa.String(120), nullable=True))
    op.add_column(
        "knowledge_base",
        sa.Column("index_lease_expires_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "knowledge_base",
        sa.Column("index_attempts", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "knowledge_base",
        sa.Column("index_version", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "knowledge_base",
        sa.Column("index_reserved_usd", MONEY, nullable=False, server_default="0"),
    )
    op.create_index(
        "ix_knowledge_base_index_lease_expires_at", "knowledge_base", ["index_lease_expires_at"]
    )

    op.add_column(
        "usage_ledger",
        sa.Column("kind", sa.String(length=16), nullable=False, server_default="chat"),
    )
    op.add_column("usage_ledger", sa.Column("knowledge_base_id", sa.Uuid(), nullable=True))
    with op.batch_alter_table("usage_ledger", copy_from=_ledger_table(nullable=False)) as batch_op:
        batch_op.alter_column("agent_id", existing_type=sa.Uuid(), nullable=True)
        batch_op.alter_column("thread_id", existing_type=sa.Uuid(), nullable=True)
        batch_op.alter_column("run_id", existing_type=sa.Uuid(), nullable=True)


def _add_pgvector_column() -> None:
    """The `embedding vector` column, if pgvector is installed on this server and this
    role may create it in this database; otherwise nothing (search reads the bytes)."""
    bind = op.get_bind()
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    ).first()
    if available is None:
        return
    try:
        with bind.begin_nested():
            bind.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    except sa.exc.DBAPIError:
        return  # not allowed to create it: a superuser may, then migrate again
    op.execute("ALTER TABLE chunk_vector ADD COLUMN embedding vector")


def downgrade() -> None:
    op.execute("DELETE FROM usage_ledger WHERE run_id IS NULL")
    with op.batch_alter_table("usage_ledger", copy_from=_ledger_table(nullable=True)) as batch_op:
        batch_op.alter_column("run_id", existing_type=sa.Uuid(), nullable=False)
        batch_op.alter_column("thread_id", existing_type=sa.Uuid(), nullable=False)
        batch_op.alter_column("agent_id", existing_type=sa.Uuid(), nullable=False)
        batch_op.drop_column("knowledge_base_id")
        batch_op.drop_column("kind")

    op.drop_index("ix_knowledge_base_index_lease_expires_at", table_name="knowledge_base")
    for column in (
        "index_reserved_usd",
        "index_version",
        "index_attempts",
        "index_lease_expires_at",
        "index_lease_owner",
        "index_error_code",
        "index_status",
        "index_model_id",
        "embedding_model_id",
    ):
        op.drop_column("knowledge_base", column)

    op.drop_column("document", "embedding_error_code")
    with op.batch_alter_table("ai_model", schema=None) as batch_op:
        batch_op.drop_column("dimensions")
        batch_op.drop_column("kind")

    op.drop_index("ix_chunk_vector_knowledge_base_id_model_id", table_name="chunk_vector")
    op.drop_table("chunk_vector")


def _ledger_table(*, nullable: bool) -> sa.Table:
    """usage_ledger as it is before the batch operation (which, on SQLite, copies it), so
    that `migrate --sql` needs no live database; `nullable`: of its run, agent, thread."""
    tokens = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    price = app.core.db.ExactDecimal(precision=18, scale=6)
    return sa.Table(
        "usage_ledger",
        sa.MetaData(),
        sa.Column("id", tokens, nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=nullable),
        sa.Column("thread_id", sa.Uuid(), nullable=nullable),
        sa.Column("run_id", sa.Uuid(), nullable=nullable),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("model_provider", sa.String(50), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("input_tokens", tokens, nullable=False),
        sa.Column("output_tokens", tokens, nullable=False),
        sa.Column("input_price_per_million", price, nullable=False),
        sa.Column("output_price_per_million", price, nullable=False),
        sa.Column("cost_usd", MONEY, nullable=False),
        sa.Column("implausible", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("kind", sa.String(16), nullable=False, server_default="chat"),
        sa.Column("knowledge_base_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_usage_ledger"),
        sa.Index("ix_usage_ledger_created_at", "created_at"),
        sa.Index("ix_usage_ledger_run_id", "run_id"),
        sa.Index("ix_usage_ledger_user_id_created_at", "user_id", "created_at"),
    )
