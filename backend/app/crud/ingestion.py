"""Documents' ingestion state: queued -> processing -> ready | failed, under a lease.

As for runs (crud.run), every change is one conditional UPDATE that names the state it
expects and, once claimed, the lease owner: two processes never both move one document,
and a delivery of a document that is not queued changes nothing.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, update
from sqlmodel import Session, col, select

from app.core.codes import DocumentErrorCode
from app.models.document import Document, DocumentStatus

_NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}


@dataclass(frozen=True)
class Claimed:
    """What a claimed document's ingestion reads: where its file is and what it is."""

    id: uuid.UUID
    knowledge_base_id: uuid.UUID
    owner_id: uuid.UUID
    filename: str
    content_type: str
    storage_key: str
    attempts: int


@dataclass(frozen=True)
class Overdue:
    id: uuid.UUID
    status: DocumentStatus
    created_at: datetime
    attempts: int


@dataclass(frozen=True)
class HeldLease:
    document_id: uuid.UUID
    owner: str


def _move(
    session: Session, document_id: uuid.UUID, *where: ColumnElement[bool], **values: Any
) -> bool:
    result = session.execute(
        update(Document).where(col(Document.id) == document_id, *where).values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _held_by(owner: str) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return col(Document.status) == DocumentStatus.PROCESSING, col(Document.lease_owner) == owner


# ==================== processing ====================


def claim(
    *, session: Session, document_id: uuid.UUID, owner: str, expires_at: datetime
) -> Claimed | None:
    """queued -> processing under a lease, counting the attempt; None when the document
    is not queued (another delivery has it, it is done, or it was deleted)."""
    statement = (
        update(Document)
        .where(col(Document.id) == document_id, col(Document.status) == DocumentStatus.QUEUED)
        .values(
            status=DocumentStatus.PROCESSING,
            lease_owner=owner,
            lease_expires_at=expires_at,
            attempts=Document.attempts + 1,
        )
        .returning(
            col(Document.knowledge_base_id),
            col(Document.owner_id),
            col(Document.filename),
            col(Document.content_type),
            col(Document.storage_key),
            col(Document.attempts),
        )
    )
    row = session.execute(statement).first()
    if row is None:
        return None
    kb_id, owner_id, filename, content_type, storage_key, attempts = row
    return Claimed(document_id, kb_id, owner_id, filename, content_type, storage_key, attempts)


def renew_leases(*, session: Session, leases: dict[uuid.UUID, str], expires_at: datetime) -> int:
    """Pushes back the expiry of the leases this process holds; returns how many held."""
    result = session.execute(
        update(Document)
        .where(
            col(Document.id).in_(leases),
            col(Document.lease_owner).in_(leases.values()),
            col(Document.status) == DocumentStatus.PROCESSING,
        )
        .values(lease_expires_at=expires_at)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def finish(*, session: Session, document_id: uuid.UUID, owner: str, values: dict[str, Any]) -> bool:
    """processing -> a final status, releasing the lease, only while `owner` holds it:
    False if the document was deleted, swept or taken by another delivery meanwhile."""
    return _move(session, document_id, *_held_by(owner), **values, **_NO_LEASE)


def release(*, session: Session, document_id: uuid.UUID, owner: str, next_due: datetime) -> bool:
    """processing -> queued, to be delivered again at `next_due` (storage was away)."""
    return _move(
        session,
        document_id,
        *_held_by(owner),
        status=DocumentStatus.QUEUED,
        lease_owner=None,
        lease_expires_at=next_due,
    )


# ==================== recovering ====================


def overdue(
    *, session: Session, now: datetime, stale_before: datetime, limit: int
) -> list[Overdue]:
    """Documents whose lease (or, queued, whose delivery) is overdue, oldest first; and
    queued documents that were never given a due time, once created before `stale_before`."""
    never_due = and_(
        col(Document.lease_expires_at).is_(None),
        col(Document.status) == DocumentStatus.QUEUED,
        col(Document.created_at) < stale_before,
    )
    statement = (
        select(Document.id, Document.status, Document.created_at, Document.attempts)
        .where(or_(col(Document.lease_expires_at) < now, never_due))
        .order_by(col(Document.lease_expires_at), col(Document.created_at))
        .limit(limit)
    )
    return [
        Overdue(id=document_id, status=DocumentStatus(status), created_at=at, attempts=attempts)
        for document_id, status, at, attempts in session.exec(statement).all()
    ]


def _expired(now: datetime) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return col(Document.status) == DocumentStatus.PROCESSING, col(Document.lease_expires_at) < now


def requeue_expired(
    *, session: Session, document_id: uuid.UUID, now: datetime, next_due: datetime
) -> bool:
    """A processing document whose process stopped renewing its lease: queued again, for
    the sweeper that moved it to deliver (due again at `next_due` if that delivery is lost)."""
    return _move(
        session,
        document_id,
        *_expired(now),
        status=DocumentStatus.QUEUED,
        lease_owner=None,
        lease_expires_at=next_due,
    )


def fail_expired(
    *,
    session: Session,
    document_id: uuid.UUID,
    now: datetime,
    code: DocumentErrorCode,
    message: str,
) -> bool:
    return _move(
        session,
        document_id,
        *_expired(now),
        status=DocumentStatus.FAILED,
        error_code=code,
        error_message=message,
        processed_at=now,
        **_NO_LEASE,
    )


def take_delivery(
    *, session: Session, document_id: uuid.UUID, now: datetime, next_due: datetime
) -> bool:
    """An overdue queued document, for one sweeper to deliver again (and not all of them)."""
    due = or_(col(Document.lease_expires_at) < now, col(Document.lease_expires_at).is_(None))
    return _move(
        session,
        document_id,
        col(Document.status) == DocumentStatus.QUEUED,
        due,
        lease_expires_at=next_due,
    )


def make_due(*, session: Session, document_ids: list[uuid.UUID], due: datetime) -> None:
    """Queued documents the queue did not take: the sweep delivers them again at `due`."""
    session.execute(
        update(Document)
        .where(col(Document.id).in_(document_ids), col(Document.status) == DocumentStatus.QUEUED)
        .values(lease_expires_at=due)
    )


def clear_lease(*, session: Session, document_id: uuid.UUID) -> None:
    """A finished document that still carries a lease (never expected): stop sweeping it."""
    session.execute(
        update(Document)
        .where(
            col(Document.id) == document_id,
            col(Document.status).not_in((DocumentStatus.QUEUED, DocumentStatus.PROCESSING)),
        )
        .values(**_NO_LEASE)
    )


def leases_owned_by(*, session: Session, prefix: str) -> list[HeldLease]:
    """The leases of processing documents whose owner names start with `prefix`."""
    statement = select(Document.id, Document.lease_owner).where(
        col(Document.status) == DocumentStatus.PROCESSING,
        col(Document.lease_owner).startswith(prefix, autoescape=True),
    )
    return [
        HeldLease(document_id=document_id, owner=str(owner))
        for document_id, owner in session.exec(statement).all()
    ]


def expire_now(*, session: Session, document_ids: list[uuid.UUID], now: datetime) -> None:
    session.execute(
        update(Document)
        .where(col(Document.id).in_(document_ids), col(Document.lease_owner).is_not(None))
        .values(lease_expires_at=now)
    )
