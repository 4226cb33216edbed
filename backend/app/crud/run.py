"""Runs. Their metadata is visible to the owner and to superusers; the thread behind a
run stays private to its owner (see crud.thread).

Every change of a run's state is one conditional UPDATE that names the state it expects
(and, once claimed, the lease owner), so two processes can never both move one run.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, delete, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.core.codes import RunErrorCode
from app.core.db import exact_sum
from app.crud.page import Page, read_page
from app.models.knowledge_base import KnowledgeBase
from app.models.run import ACTIVE_STATUSES, Run, RunListQuery, RunStatus
from app.models.thread import Thread
from app.models.usage import UsageEntry
from app.models.user import User

T = TypeVar("T")

# Statuses whose runs may still hold a reservation: a run cancelled while its provider
# call is in flight keeps holding until the call returns and is billed.
HOLDING_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.CANCELLED)
_ZERO = Decimal(0)
_NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


@dataclass(frozen=True)
class ExpiredLease:
    id: uuid.UUID
    status: RunStatus
    created_at: datetime
    deliveries: int


def _visible_to(statement: SelectOfScalar[T], user: User) -> SelectOfScalar[T]:
    """Which runs a user may see: their own; superusers see every run's metadata."""
    if user.is_superuser:
        return statement
    return statement.where(Run.owner_id == user.id)


def get_run(*, session: Session, user: User, run_id: uuid.UUID) -> Run | None:
    return session.exec(_visible_to(select(Run).where(Run.id == run_id), user)).first()


def list_thread_runs(*, session: Session, thread: Thread, query: RunListQuery) -> Page[Run]:
    """Runs of a thread the caller already holds (crud.thread decided it is theirs)."""
    statement = select(Run).where(Run.thread_id == thread.id)
    return read_page(session, statement, col(Run.created_at).desc(), col(Run.id), query=query)


def has_active_run(*, session: Session, thread: Thread) -> bool:
    statement = select(Run.id).where(
        Run.thread_id == thread.id, col(Run.status).in_(ACTIVE_STATUSES)
    )
    return session.exec(statement.limit(1)).first() is not None


@dataclass(frozen=True)
class BudgetUse:
    spent: Decimal
    reserved: Decimal


def budget_use(*, session: Session, user: User, since: datetime) -> BudgetUse:
    """What a user spent since `since` and holds in reservations, read in ONE statement:
    two statements could each miss a run that settled between them (its hold already
    released, its cost not yet seen), and a budget check would then let too much in."""
    dialect = session.get_bind().dialect.name
    spent = (
        select(exact_sum(UsageEntry.cost_usd, dialect))
        .where(UsageEntry.user_id == user.id, UsageEntry.created_at >= since)
        .scalar_subquery()
    )
    reserved = (
        select(exact_sum(Run.reserved_usd, dialect))
        .where(
            Run.owner_id == user.id,
            col(Run.status).in_(HOLDING_STATUSES),
            col(Run.reserved_usd) != _ZERO,
        )
        .scalar_subquery()
    )
    # A knowledge base holds the worst case of the embedding batch it has in flight.
    indexing = (
        select(exact_sum(KnowledgeBase.index_reserved_usd, dialect))
        .where(
            KnowledgeBase.owner_id == user.id,
            col(KnowledgeBase.index_reserved_usd) != _ZERO,
        )
        .scalar_subquery()
    )
    row = session.execute(sa_select(spent, reserved, indexing)).one()
    return BudgetUse(
        spent=Decimal(row[0] or 0), reserved=Decimal(row[1] or 0) + Decimal(row[2] or 0)
    )


def lock_owner(*, session: Session, user: User) -> None:
    """Serialises a user's run starts: a row lock on PostgreSQL, and on SQLite the
    database's single write lock, taken now by this no-op write."""
    session.execute(update(User).where(col(User.id) == user.id).values(id=User.id))


def _move(session: Session, run_id: uuid.UUID, *where: ColumnElement[bool], **values: Any) -> bool:
    result = session.execute(update(Run).where(col(Run.id) == run_id, *where).values(**values))
    return bool(result.rowcount)  # type: ignore[attr-defined]


# ==================== executing ====================


def claim(
    *, session: Session, run_id: uuid.UUID, owner: str, now: datetime, expires_at: datetime
) -> bool:
    """queued -> running under a lease: of two deliveries of one run, one gets it."""
    return _move(
        session,
        run_id,
        col(Run.status) == RunStatus.QUEUED,
        status=RunStatus.RUNNING,
        started_at=now,
        lease_owner=owner,
        lease_expires_at=expires_at,
    )


def renew_leases(*, session: Session, leases: dict[uuid.UUID, str], expires_at: datetime) -> int:
    """Pushes back the expiry of the leases this process holds; returns how many held."""
    result = session.execute(
        update(Run)
        .where(col(Run.id).in_(leases), col(Run.lease_owner).in_(leases.values()))
        .values(lease_expires_at=expires_at)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def note_context(
    *, session: Session, run_id: uuid.UUID, omitted: int, passages_retrieved: int | None
) -> None:
    session.execute(
        update(Run)
        .where(col(Run.id) == run_id)
        .values(messages_omitted=omitted, passages_retrieved=passages_retrieved)
    )


def finish(*, session: Session, run_id: uuid.UUID, owner: str, values: dict[str, Any]) -> bool:
    """running -> a final status, releasing the reservation and the lease, only while
    this executor still holds the run (not cancelled, not swept meanwhile)."""
    return _move(
        session,
        run_id,
        col(Run.status) == RunStatus.RUNNING,
        col(Run.lease_owner) == owner,
        **values,
        reserved_usd=_ZERO,
        **_NO_LEASE,
    )


def settle_cancelled(
    *, session: Session, run_id: uuid.UUID, owner: str, cost: Decimal | None, attempts: int
) -> bool:
    """A run cancelled during its provider call: bill what the call cost, release the hold."""
    return _move(
        session,
        run_id,
        col(Run.status) == RunStatus.CANCELLED,
        col(Run.lease_owner) == owner,
        cost_usd=cost,
        attempts=attempts,
        reserved_usd=_ZERO,
        **_NO_LEASE,
    )


# ==================== cancelling ====================


def cancel(*, session: Session, run_id: uuid.UUID, now: datetime) -> bool:
    return _cancel_where(session, col(Run.id) == run_id, now=now) > 0


def cancel_active(
    *,
    session: Session,
    now: datetime,
    thread_id: uuid.UUID | None = None,
    agent_id: uuid.UUID | None = None,
) -> int:
    """Cancels the active runs of a thread or an agent about to be deleted."""
    return _cancel_where(session, _of(thread_id, agent_id), now=now)


def _of(thread_id: uuid.UUID | None, agent_id: uuid.UUID | None) -> ColumnElement[bool]:
    """The runs of one thread, or else of one agent."""
    if thread_id is not None:
        return col(Run.thread_id) == thread_id
    return col(Run.agent_id) == agent_id


def _cancel_where(session: Session, scope: ColumnElement[bool], *, now: datetime) -> int:
    """A queued run releases its hold at once; a running one keeps it (and its lease)
    until its executor learns the call's cost."""
    queued = session.execute(
        update(Run)
        .where(scope, col(Run.status) == RunStatus.QUEUED)
        .values(status=RunStatus.CANCELLED, finished_at=now, reserved_usd=_ZERO, **_NO_LEASE)
    )
    running = session.execute(
        update(Run)
        .where(scope, col(Run.status) == RunStatus.RUNNING)
        .values(status=RunStatus.CANCELLED, finished_at=now)
    )
    return int(queued.rowcount) + int(running.rowcount)  # type: ignore[attr-defined]


def delete_settled(
    *, session: Session, thread_id: uuid.UUID | None = None, agent_id: uuid.UUID | None = None
) -> None:
    """Deletes the runs of a thread or agent that hold nothing; runs still holding a
    reservation stay until they settle."""
    session.execute(delete(Run).where(_of(thread_id, agent_id), col(Run.lease_owner).is_(None)))


# ==================== recovering ====================


def expired_leases(*, session: Session, now: datetime, limit: int) -> list[ExpiredLease]:
    """Runs whose lease (or, queued, whose delivery) is overdue: an index range scan that
    finds nothing, and writes nothing, when all is well."""
    statement = (
        select(Run.id, Run.status, Run.created_at, Run.deliveries)
        .where(col(Run.lease_expires_at) < now)
        .order_by(col(Run.lease_expires_at))
        .limit(limit)
    )
    return [
        ExpiredLease(id=run_id, status=RunStatus(status), created_at=at, deliveries=deliveries)
        for run_id, status, at, deliveries in session.exec(statement).all()
    ]


@dataclass(frozen=True)
class HeldLease:
    run_id: uuid.UUID
    owner: str


def leases_owned_by(*, session: Session, prefix: str) -> list[HeldLease]:
    """The leases of the claimed runs whose owner names start with `prefix`."""
    statement = select(Run.id, Run.lease_owner).where(
        col(Run.status).in_((RunStatus.RUNNING, RunStatus.CANCELLED)),
        col(Run.lease_owner).startswith(prefix, autoescape=True),
    )
    rows = session.exec(statement).all()
    return [HeldLease(run_id=run_id, owner=str(owner)) for run_id, owner in rows]


def expire_now(*, session: Session, run_ids: list[uuid.UUID], now: datetime) -> None:
    session.execute(
        update(Run)
        .where(col(Run.id).in_(run_ids), col(Run.lease_owner).is_not(None))
        .values(lease_expires_at=now)
    )


def fail_expired(
    *, session: Session, run_id: uuid.UUID, now: datetime, code: RunErrorCode, message: str
) -> bool:
    """A claimed run whose executor stopped renewing its lease."""
    return _move(
        session,
        run_id,
        col(Run.status) == RunStatus.RUNNING,
        col(Run.lease_expires_at) < now,
        status=RunStatus.FAILED,
        error_code=code,
        error_message=message,
        finished_at=now,
        reserved_usd=_ZERO,
        **_NO_LEASE,
    )


def release_expired(*, session: Session, run_id: uuid.UUID, now: datetime) -> bool:
    """A cancelled run whose executor died before the call's cost was known."""
    return _move(
        session,
        run_id,
        col(Run.status) == RunStatus.CANCELLED,
        col(Run.lease_expires_at) < now,
        reserved_usd=_ZERO,
        **_NO_LEASE,
    )


def take_delivery(
    *, session: Session, run_id: uuid.UUID, now: datetime, next_due: datetime
) -> bool:
    """An overdue queued run, for one sweeper to deliver again (and not all of them)."""
    return _move(
        session,
        run_id,
        col(Run.status) == RunStatus.QUEUED,
        col(Run.lease_expires_at) < now,
        lease_expires_at=next_due,
        deliveries=Run.deliveries + 1,
    )


def undo_delivery(*, session: Session, run_ids: list[uuid.UUID], next_due: datetime) -> None:
    """Taken deliveries that the queue refused: due again at `next_due`, uncounted."""
    session.execute(
        update(Run)
        .where(col(Run.id).in_(run_ids), col(Run.status) == RunStatus.QUEUED)
        .values(lease_expires_at=next_due, deliveries=Run.deliveries - 1)
    )


def fail_queued(
    *, session: Session, run_id: uuid.UUID, now: datetime, code: RunErrorCode, message: str
) -> bool:
    return _move(
        session,
        run_id,
        col(Run.status) == RunStatus.QUEUED,
        status=RunStatus.FAILED,
        error_code=code,
        error_message=message,
        finished_at=now,
        reserved_usd=_ZERO,
        **_NO_LEASE,
    )


def clear_lease(*, session: Session, run_id: uuid.UUID) -> None:
    """A finished run that still carries a lease (never expected): stop sweeping it."""
    session.execute(
        update(Run)
        .where(col(Run.id) == run_id, col(Run.status).not_in(HOLDING_STATUSES))
        .values(**_NO_LEASE)
    )


def make_due(*, session: Session, run_id: uuid.UUID, now: datetime) -> None:
    """A queued run whose delivery failed: the next sweep delivers it again."""
    _move(session, run_id, col(Run.status) == RunStatus.QUEUED, lease_expires_at=now)
