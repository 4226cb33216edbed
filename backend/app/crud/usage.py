"""The usage ledger: appended to by runs, read by reports and quota checks."""

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import String, cast, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from app.core.db import exact_sum
from app.models.usage import UsageEntry


@dataclass(frozen=True)
class UsageGroup:
    """One group of a usage report: its key and what its rows add up to."""

    key: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    runs: int


def add_entry(*, session: Session, entry: UsageEntry) -> None:
    session.add(entry)


def has_run_entry(*, session: Session, run_id: uuid.UUID) -> bool:
    statement = select(UsageEntry.id).where(UsageEntry.run_id == run_id).limit(1)
    return session.exec(statement).first() is not None


def grouped(
    *,
    session: Session,
    group_by: str,
    start: datetime,
    end: datetime,
    user_id: uuid.UUID | None,
) -> list[UsageGroup]:
    """What the ledger rows created in [start, end) add up to, per group."""
    dialect = session.get_bind().dialect.name
    key = _group_key(group_by, dialect)
    statement = (
        sa_select(
            key,
            func.coalesce(func.sum(UsageEntry.input_tokens), 0),
            func.coalesce(func.sum(UsageEntry.output_tokens), 0),
            exact_sum(UsageEntry.cost_usd, dialect),
            func.count(func.distinct(UsageEntry.run_id)),
        )
        .where(col(UsageEntry.created_at) >= start, col(UsageEntry.created_at) < end)
        .group_by(key)
        .order_by(key)
    )
    if user_id is not None:
        statement = statement.where(col(UsageEntry.user_id) == user_id)
    rows = session.execute(statement).all()
    return [
        UsageGroup(
            key="none" if k is None else str(k),  # an agent: none for index builds
            input_tokens=int(i),
            output_tokens=int(o),
            cost_usd=Decimal(c or 0),
            runs=int(r),
        )
        for k, i, o, c, r in rows
    ]


def _group_key(group_by: str, dialect: str) -> Any:
    if group_by == "day":
        if dialect == "sqlite":
            return func.substr(cast(UsageEntry.created_at, String), 1, 10)
        return func.to_char(func.timezone("UTC", col(UsageEntry.created_at)), "YYYY-MM-DD")
    if group_by == "model":  # the names the row copied: readable after the model is gone
        return col(UsageEntry.model_provider) + "/" + col(UsageEntry.model_name)
    if group_by == "kind":  # chat or embedding
        return col(UsageEntry.kind)
    return col(UsageEntry.agent_id) if group_by == "agent" else col(UsageEntry.user_id)
