"""Run leases, what a run was priced at, 64-bit tokens, wider money columns.

Runs also outlive their thread while a provider call is in flight (no foreign key).

Revision ID: 5331bc8e7a33
Revises: 24a7aca64f81
Create Date: 2026-11-30 03:34:20.293708+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "5331bc8e7a33"
down_revision: str | None = "24a7aca64f81"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NARROW_COST = app.core.db.ExactDecimal(precision=24, scale=12)
WIDE_COST = app.core.db.ExactDecimal(precision=38, scale=12)
PRICE = app.core.db.ExactDecimal(precision=18, scale=6)
COSTS = {"message": ["cost_usd"], "run": ["reserved_usd", "cost_usd"], "usage_ledger": ["cost_usd"]}
TOKENS = {"message": True, "usage_ledger": False}  # table: whether the columns are nullable
THREAD_FK = "fk_run_thread_id_thread"


def upgrade() -> None:
    # On SQLite, integers are 64-bit and ExactDecimal is text already: only PostgreSQL's
    # column types change.
    if not _sqlite():
        _retype_tokens(sa.Integer(), sa.BigInteger())
        _retype_costs(NARROW_COST, WIDE_COST)
    _drop_thread_foreign_key()

    # Plain ADD COLUMN (no table rebuild) on both engines.
    for column in (
        sa.Column("instructions", sa.Text(), nullable=False, server_default=""),
        sa.Column("context_window", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("input_price_per_million", PRICE, nullable=False, server_default="0"),
        sa.Column("output_price_per_million", PRICE, nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(length=120), nullable=True),
        sa.Column("lease_expires_at", app.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("deliveries", sa.Integer(), nullable=False, server_default="0"),
    ):
        op.add_column("run", column)
    op.create_index("ix_run_lease_expires_at", "run", ["lease_expires_at"], unique=False)

    # Runs posted before this revision are priced as their model and agent are now.
    op.execute(
        "UPDATE run SET"
        " context_window = COALESCE((SELECT context_window FROM ai_model"
        "   WHERE ai_model.id = run.model_id), 0),"
        " input_price_per_million = COALESCE((SELECT input_price_per_million FROM ai_model"
        "   WHERE ai_model.id = run.model_id), input_price_per_million),"
        " output_price_per_million = COALESCE((SELECT output_price_per_million FROM ai_model"
        "   WHERE ai_model.id = run.model_id), output_price_per_million),"
        " instructions = COALESCE((SELECT instructions FROM agent"
        "   WHERE agent.id = run.agent_id), '')"
    )
    # Active runs get a lease that is already due, so the first sweep takes them.
    op.execute("UPDATE run SET lease_expires_at = created_at WHERE status IN ('queued', 'running')")

    op.add_column(
        "usage_ledger",
        sa.Column("implausible", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("usage_ledger", schema=None) as batch_op:
        batch_op.drop_column("implausible")

    # Runs of deleted threads cannot point at them again.
    op.execute("DELETE FROM run WHERE thread_id NOT IN (SELECT id FROM thread)")
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.create_foreign_key(THREAD_FK, "thread", ["thread_id"], ["id"], ondelete="CASCADE")
        batch_op.drop_index("ix_run_lease_expires_at")
        for column in (
            "deliveries",
            "lease_expires_at",
            "lease_owner",
            "output_price_per_million",
            "input_price_per_million",
            "context_window",
            "instructions",
        ):
            batch_op.drop_column(column)

    if not _sqlite():
        _retype_costs(WIDE_COST, NARROW_COST)
        _retype_tokens(sa.BigInteger(), sa.Integer())


def _sqlite() -> bool:
    return bool(op.get_context().dialect.name == "sqlite")


def _drop_thread_foreign_key() -> None:
    if not _sqlite():
        op.drop_constraint(THREAD_FK, "run", type_="foreignkey")
        return
    # SQLite rebuilds the table; from this definition, so that `migrate --sql` works
    # without a database to read the table from.
    with op.batch_alter_table("run", copy_from=_run_table_before(), recreate="always") as batch_op:
        batch_op.drop_constraint(THREAD_FK, type_="foreignkey")


def _run_table_before() -> sa.Table:
    utc = app.core.db.UTCDateTime(timezone=True)
    return sa.Table(
        "run",
        sa.MetaData(),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("thread_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Uuid(), nullable=False),
        sa.Column("user_message_id", sa.Uuid(), nullable=False),
        sa.Column("assistant_message_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("started_at", utc, nullable=True),
        sa.Column("finished_at", utc, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=500), nullable=True),
        sa.Column("messages_omitted", sa.Integer(), nullable=True),
        sa.Column("max_output_tokens", sa.Integer(), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column("reserved_usd", NARROW_COST, nullable=False),
        sa.Column("cost_usd", NARROW_COST, nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["user.id"], name="fk_run_owner_id_user", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["thread_id"], ["thread.id"], name=THREAD_FK, ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_run"),
        sa.Index("ix_run_owner_id_status", "owner_id", "status"),
        sa.Index("ix_run_thread_id_created_at", "thread_id", "created_at"),
    )


def _retype_tokens(old: sa.types.TypeEngine[int], new: sa.types.TypeEngine[int]) -> None:
    for table, nullable in TOKENS.items():
        for column in ("input_tokens", "output_tokens"):
            op.alter_column(table, column, existing_type=old, type_=new, existing_nullable=nullable)


def _retype_costs(old: app.core.db.ExactDecimal, new: app.core.db.ExactDecimal) -> None:
    for table, columns in COSTS.items():
        for column in columns:
            op.alter_column(table, column, existing_type=old, type_=new)
