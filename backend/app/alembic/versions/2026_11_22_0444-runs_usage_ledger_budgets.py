"""Agent runs, the usage ledger, monthly budgets and run details on messages.

Revision ID: 24a7aca64f81
Revises: 5745224de252
Create Date: 2026-11-22 04:44:39.866989+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "24a7aca64f81"
down_revision: str | None = "5745224de252"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "usage_ledger",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("thread_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("model_provider", sa.String(length=50), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column(
            "input_price_per_million",
            app.core.db.ExactDecimal(precision=18, scale=6),
            nullable=False,
        ),
        sa.Column(
            "output_price_per_million",
            app.core.db.ExactDecimal(precision=18, scale=6),
            nullable=False,
        ),
        sa.Column("cost_usd", app.core.db.ExactDecimal(precision=24, scale=12), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_ledger")),
    )
    with op.batch_alter_table("usage_ledger", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_usage_ledger_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_usage_ledger_run_id"), ["run_id"], unique=False)
        batch_op.create_index(
            "ix_usage_ledger_user_id_created_at", ["user_id", "created_at"], unique=False
        )

    op.create_table(
        "run",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("thread_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("user_message_id", sa.Uuid(), nullable=False),
        sa.Column("assistant_message_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=500), nullable=True),
        sa.Column("messages_omitted", sa.Integer(), nullable=True),
        sa.Column("max_output_tokens", sa.Integer(), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column("reserved_usd", app.core.db.ExactDecimal(precision=24, scale=12), nullable=False),
        sa.Column("cost_usd", app.core.db.ExactDecimal(precision=24, scale=12), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["user.id"], name=op.f("fk_run_owner_id_user"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"], ["thread.id"], name=op.f("fk_run_thread_id_thread"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run")),
    )
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.create_index("ix_run_owner_id_status", ["owner_id", "status"], unique=False)
        batch_op.create_index(
            "ix_run_thread_id_created_at", ["thread_id", "created_at"], unique=False
        )

    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("model_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("input_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("output_tokens", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("cost_usd", app.core.db.ExactDecimal(precision=24, scale=12), nullable=True)
        )

    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "monthly_budget_usd", app.core.db.ExactDecimal(precision=18, scale=6), nullable=True
            )
        )


def downgrade() -> None:

    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_column("monthly_budget_usd")

    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_column("cost_usd")
        batch_op.drop_column("output_tokens")
        batch_op.drop_column("input_tokens")
        batch_op.drop_column("model_id")
        batch_op.drop_column("run_id")

    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_index("ix_run_thread_id_created_at")
        batch_op.drop_index("ix_run_owner_id_status")

    op.drop_table("run")
    with op.batch_alter_table("usage_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_ledger_user_id_created_at")
        batch_op.drop_index(batch_op.f("ix_usage_ledger_run_id"))
        batch_op.drop_index(batch_op.f("ix_usage_ledger_created_at"))

    op.drop_table("usage_ledger")
