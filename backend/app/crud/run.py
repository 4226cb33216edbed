"""Runs. Their metadata is visible to the owner and to superusers; the thread behind a
run stays private to its owner (see crud.thread)."""

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import func, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.core.db import exact_sum
from app.models.run import ACTIVE_STATUSES, Run, RunStatus
from app.models.thread import Thread
from app.models.user import User

T = TypeVar("T")


def _visible_to(statement: SelectOfScalar[T], user: User) -> SelectOfScalar[T]:
    """Which runs a user may see: their own; superusers see every run's metadata."""
    if user.is_superuser:
        return statement
    return statement.where(Run.owner_id == user.id)


def get_run(*, session: Session, user: User, run_id: uuid.UUID) -> Run | None:
    return session.exec(_visible_to(select(Run).where(Run.id == run_id), user)).first()


def list_thread_runs(
    *, session: Session, thread: Thread, skip: int, limit: int
) -> tuple[list[Run], int]:
    """Runs of a thread the caller already holds (crud.thread decided it is theirs)."""
    statement = select(Run).where(Run.thread_id == thread.id)
    count = session.exec(select(func.count()).select_from(statement.subquery())).one()
    page = statement.order_by(col(Run.created_at).desc(), col(Run.id)).offset(skip).limit(limit)
    return list(session.exec(page).all()), count


def has_active_run(*, session: Session, thread: Thread) -> bool:
    statement = select(Run.id).where(
        Run.thread_id == thread.id, col(Run.status).in_(ACTIVE_STATUSES)
    )
    return session.exec(statement.limit(1)).first() is not None


def reserved_total(*, session: Session, user: User) -> Decimal:
    dialect = session.get_bind().dialect.name
    statement = select(exact_sum(Run.reserved_usd, dialect)).where(
        Run.owner_id == user.id, col(Run.status).in_(ACTIVE_STATUSES)
    )
    total = session.exec(statement).one()
    return Decimal(total or 0)


def claim(*, session: Session, run_id: uuid.UUID, now: datetime) -> bool:
    """queued -> running, atomically: of two deliveries of one run, one gets it."""
    result = session.execute(
        update(Run)
        .where(col(Run.id) == run_id, col(Run.status) == RunStatus.QUEUED)
        .values(status=RunStatus.RUNNING, started_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish(*, session: Session, run_id: uuid.UUID, values: dict[str, object]) -> bool:
    """running -> a final status, only if it is still running (not cancelled meanwhile)."""
    result = session.execute(
        update(Run)
        .where(col(Run.id) == run_id, col(Run.status) == RunStatus.RUNNING)
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def cancel(*, session: Session, run_id: uuid.UUID, now: datetime) -> bool:
    result = session.execute(
        update(Run)
        .where(col(Run.id) == run_id, col(Run.status).in_(ACTIVE_STATUSES))
        .values(status=RunStatus.CANCELLED, finished_at=now, reserved_usd=Decimal(0))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def stale_running(*, session: Session, started_before: datetime) -> list[Run]:
    statement = select(Run).where(
        Run.status == RunStatus.RUNNING, col(Run.started_at) < started_before
    )
    return list(session.exec(statement).all())


def queued_ids(*, session: Session) -> list[uuid.UUID]:
    statement = select(Run.id).where(Run.status == RunStatus.QUEUED).order_by(col(Run.created_at))
    return list(session.exec(statement).all())


def lock_owner(*, session: Session, user: User) -> None:
    """Serialises a user's run starts: a row lock on PostgreSQL, and on SQLite the
    database's single write lock, taken now by this no-op write."""
    session.execute(update(User).where(col(User.id) == user.id).values(id=User.id))


def settle_cancelled(*, session: Session, run_id: uuid.UUID, cost: Decimal, attempts: int) -> None:
    session.execute(
        update(Run)
        .where(col(Run.id) == run_id, col(Run.status) == RunStatus.CANCELLED)
        .values(cost_usd=cost, attempts=attempts)
    )


def note_context(*, session: Session, run_id: uuid.UUID, omitted: int) -> None:
    session.execute(update(Run).where(col(Run.id) == run_id).values(messages_omitted=omitted))
