"""Agents that cite: the knowledge bases an agent draws on, the citations of its answers
(copies of what they cite, without foreign keys to documents or chunks, so they outlive
them), and what a run retrieved, used and was priced for.

Revision ID: d81c3de41d97
Revises: f488551e3015
Create Date: 2026-11-30 07:14:21.852673+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d81c3de41d97"
down_revision: str | None = "f488551e3015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_knowledge_base",
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("knowledge_base_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agent.id"],
            name=op.f("fk_agent_knowledge_base_agent_id_agent"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["knowledge_base_id"],
            ["knowledge_base.id"],
            name=op.f("fk_agent_knowledge_base_knowledge_base_id_knowledge_base"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "agent_id", "knowledge_base_id", name=op.f("pk_agent_knowledge_base")
        ),
    )
    with op.batch_alter_table("agent_knowledge_base", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agent_knowledge_base_knowledge_base_id"),
            ["knowledge_base_id"],
            unique=False,
        )

    op.create_table(
        "citation",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("chunk_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("document_title", sa.String(length=300), nullable=False),
        sa.Column("page_start", sa.Integer(), nullable=True),
        sa.Column("page_end", sa.Integer(), nullable=True),
        sa.Column("quote", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["message.id"],
            name=op.f("fk_citation_message_id_message"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_citation")),
        sa.UniqueConstraint("message_id", "index", name=op.f("uq_citation_message_id_index")),
    )
    # Plain ADD COLUMN (no table rebuild) on both engines; runs posted before this
    # revision were priced without sources, and send none.
    for column in (
        sa.Column("passages_retrieved", sa.Integer(), nullable=True),
        sa.Column("passages_used", sa.Integer(), nullable=True),
        sa.Column("source_tokens", sa.Integer(), nullable=False, server_default="0"),
    ):
        op.add_column("run", column)


def downgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_column("source_tokens")
        batch_op.drop_column("passages_used")
        batch_op.drop_column("passages_retrieved")

    op.drop_table("citation")
    with op.batch_alter_table("agent_knowledge_base", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_knowledge_base_knowledge_base_id"))

    op.drop_table("agent_knowledge_base")
