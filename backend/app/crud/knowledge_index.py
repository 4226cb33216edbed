"""Knowledge bases' semantic index state: none | building | ready | failed, under a lease.

As for runs and documents, every change is one conditional UPDATE naming the state it
expects and, once claimed, the lease owner, so two processes never build one index at
once. Whatever asks for a build raises `index_version`; a build only marks the index
ready if the version it claimed is still current, so passages that became ready while
it ran are never left without vectors.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, or_, update
from sqlmodel import Session, col, select

from app.core.codes import DocumentErrorCode, IndexErrorCode
from app.models.document import Document
from app.models.embedding import IndexStatus
from app.models.knowledge_base import KnowledgeBase

_NO_LEASE: dict[str, Any] = {"index_lease_owner": None, "index_lease_expires_at": None}
_ZERO = Decimal(0)


@dataclass(frozen=True)
class ClaimedIndex:
    id: uuid.UUID
    owner_id: uuid.UUID
    model_id: uuid.UUID  # the model whose vectors the build makes
    serving_model_id: uuid.UUID | None
    version: int
    attempts: int


def _move(session: Session, kb_id: uuid.UUID, *where: ColumnElement[bool], **values: Any) -> bool:
    result = session.execute(
        update(KnowledgeBase).where(col(KnowledgeBase.id) == kb_id, *where).values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _held_by(owner: str) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return (
        col(KnowledgeBase.index_status) == IndexStatus.BUILDING,
        col(KnowledgeBase.index_lease_owner) == owner,
    )


def request_build(*, session: Session, kb_ids: list[uuid.UUID], now: datetime) -> None:
    """These knowledge bases (those with an embedding model) need vectors for passages
    that have none: building, due now unless a build holds them (it will go round again,
    seeing the version change)."""
    if not kb_ids:
        return
    wanting = (
        col(KnowledgeBase.id).in_(kb_ids),
        col(KnowledgeBase.embedding_model_id).is_not(None),
    )
    session.execute(
        update(KnowledgeBase)
        .where(*wanting)
        .values(
            index_status=IndexStatus.BUILDING,
            index_version=KnowledgeBase.index_version + 1,
            index_error_code=None,
        )
    )
    session.execute(
        update(KnowledgeBase)
        .where(*wanting, col(KnowledgeBase.index_lease_owner).is_(None))
        .values(index_lease_expires_at=now, index_attempts=0)
    )


def claim(
    *, session: Session, kb_id: uuid.UUID, owner: str, now: datetime, expires_at: datetime
) -> ClaimedIndex | None:
    """A building index nobody holds (or whose holder's lease ran out) becomes ours."""
    statement = (
        update(KnowledgeBase)
        .where(
            col(KnowledgeBase.id) == kb_id,
            col(KnowledgeBase.index_status) == IndexStatus.BUILDING,
            col(KnowledgeBase.embedding_model_id).is_not(None),
            or_(
                col(KnowledgeBase.index_lease_owner).is_(None),
                col(KnowledgeBase.index_lease_expires_at) < now,
            ),
        )
        .values(
            index_lease_owner=owner,
            index_lease_expires_at=expires_at,
            index_attempts=KnowledgeBase.index_attempts + 1,
        )
        .returning(
            col(KnowledgeBase.owner_id),
            col(KnowledgeBase.embedding_model_id),
            col(KnowledgeBase.index_model_id),
            col(KnowledgeBase.index_version),
            col(KnowledgeBase.index_attempts),
        )
    )
    row = session.execute(statement).first()
    if row is None:
        return None
    return ClaimedIndex(
        id=kb_id,
        owner_id=row[0],
        model_id=row[1],
        serving_model_id=row[2],
        version=row[3],
        attempts=row[4],
    )


def holds(*, session: Session, claimed: ClaimedIndex, owner: str) -> bool:
    """Whether `owner` still holds the build, for the model it claimed it for."""
    statement = select(KnowledgeBase.id).where(
        col(KnowledgeBase.id) == claimed.id,
        col(KnowledgeBase.embedding_model_id) == claimed.model_id,
        *_held_by(owner),
    )
    return session.exec(statement).first() is not None


def reserve(*, session: Session, claimed: ClaimedIndex, owner: str, amount: Decimal) -> bool:
    """Holds `amount` against the owner's budget for the batch about to be sent."""
    return _move(session, claimed.id, *_held_by(owner), index_reserved_usd=amount)


def release_reservation(*, session: Session, kb_id: uuid.UUID, owner: str) -> None:
    """The batch was paid for (or not sent): its hold goes, unless the build has changed
    hands meanwhile (the sweep cleared it, and the new holder's hold is its own)."""
    _move(session, kb_id, col(KnowledgeBase.index_lease_owner) == owner, index_reserved_usd=_ZERO)


def finish(*, session: Session, claimed: ClaimedIndex, owner: str) -> bool:
    """building -> ready, the claimed model now serving, if nothing asked for another
    build meanwhile; False (and nothing changed) otherwise."""
    return _move(
        session,
        claimed.id,
        *_held_by(owner),
        col(KnowledgeBase.index_version) == claimed.version,
        col(KnowledgeBase.embedding_model_id) == claimed.model_id,
        index_status=IndexStatus.READY,
        index_model_id=claimed.model_id,
        index_error_code=None,
        index_attempts=0,
        index_reserved_usd=_ZERO,
        **_NO_LEASE,
    )


def release(
    *,
    session: Session,
    kb_id: uuid.UUID,
    owner: str,
    next_due: datetime,
    reset_attempts: bool = False,
) -> bool:
    """Gives the build back, still building, due again at `next_due`; with
    `reset_attempts` (it made progress) its failed deliveries count from zero again."""
    attempts: dict[str, Any] = {"index_attempts": 0} if reset_attempts else {}
    return _move(
        session,
        kb_id,
        *_held_by(owner),
        index_lease_owner=None,
        index_lease_expires_at=next_due,
        index_reserved_usd=_ZERO,
        **attempts,
    )


def mark_documents(
    *, session: Session, document_ids: list[uuid.UUID], code: DocumentErrorCode | None
) -> None:
    """These documents' passages are (code) or are again (None) left out of embedding."""
    if document_ids:
        session.execute(
            update(Document)
            .where(col(Document.id).in_(document_ids))
            .values(embedding_error_code=code)
        )


def clear_document_marks(*, session: Session, kb_id: uuid.UUID) -> None:
    """Every document of the knowledge base may be embedded again (a new model)."""
    session.execute(
        update(Document)
        .where(
            col(Document.knowledge_base_id) == kb_id,
            col(Document.embedding_error_code).is_not(None),
        )
        .values(embedding_error_code=None)
    )


def fail(*, session: Session, kb_id: uuid.UUID, owner: str | None, code: IndexErrorCode) -> bool:
    """building -> failed with `code`; the index that served keeps serving."""
    where = _held_by(owner) if owner is not None else ()
    return _move(
        session,
        kb_id,
        *where,
        index_status=IndexStatus.FAILED,
        index_error_code=code,
        index_reserved_usd=_ZERO,
        **_NO_LEASE,
    )


def fail_expired(
    *, session: Session, kb_id: uuid.UUID, now: datetime, code: IndexErrorCode
) -> bool:
    """A build whose holder's lease ran out -> failed with `code`."""
    return _move(
        session,
        kb_id,
        col(KnowledgeBase.index_status) == IndexStatus.BUILDING,
        col(KnowledgeBase.index_lease_owner).is_not(None),
        col(KnowledgeBase.index_lease_expires_at) <= now,
        index_status=IndexStatus.FAILED,
        index_error_code=code,
        index_reserved_usd=_ZERO,
        **_NO_LEASE,
    )


def renew_leases(*, session: Session, leases: dict[uuid.UUID, str], expires_at: datetime) -> int:
    result = session.execute(
        update(KnowledgeBase)
        .where(
            col(KnowledgeBase.id).in_(leases),
            col(KnowledgeBase.index_lease_owner).in_(leases.values()),
            col(KnowledgeBase.index_status) == IndexStatus.BUILDING,
        )
        .values(index_lease_expires_at=expires_at)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class OverdueIndex:
    id: uuid.UUID
    attempts: int
    held: bool  # a holder's lease ran out (it died), rather than a due delivery


def overdue(*, session: Session, now: datetime, limit: int) -> list[OverdueIndex]:
    """Building indexes due for a delivery or whose holder's lease ran out."""
    statement = (
        select(
            KnowledgeBase.id,
            KnowledgeBase.index_attempts,
            KnowledgeBase.index_lease_owner,
        )
        .where(
            col(KnowledgeBase.index_status) == IndexStatus.BUILDING,
            col(KnowledgeBase.index_lease_expires_at) <= now,
        )
        .order_by(col(KnowledgeBase.index_lease_expires_at))
        .limit(limit)
    )
    return [
        OverdueIndex(id=row[0], attempts=row[1], held=row[2] is not None)
        for row in session.exec(statement)
    ]


def postpone(*, session: Session, kb_id: uuid.UUID, due: datetime, now: datetime) -> bool:
    """An overdue index handed to a delivery: its lease cleared, due again at `due`
    (a delivery that claims it first moves the date on)."""
    return _move(
        session,
        kb_id,
        col(KnowledgeBase.index_status) == IndexStatus.BUILDING,
        col(KnowledgeBase.index_lease_expires_at) <= now,
        index_lease_owner=None,
        index_lease_expires_at=due,
        index_reserved_usd=_ZERO,
    )
