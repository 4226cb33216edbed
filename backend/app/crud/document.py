"""Documents of knowledge bases: their owner's alone, superusers included.

Files are stored by content and may be shared by documents of several owners, so a file
is deleted only once no document refers to it. `lock_file` serialises that decision with
uploads of the same content (see services.document_service).
"""

import hashlib
import uuid
from typing import TypeVar

from sqlalchemy import delete, func, or_, text, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.crud import text as text_crud
from app.crud.page import Page, read_page
from app.models.document import Chunk, Document, DocumentListQuery, DocumentStatus
from app.models.knowledge_base import KnowledgeBase
from app.models.user import User

T = TypeVar("T")

# What may be processed again; queued and processing documents are still on their way.
SETTLED_STATUSES = (DocumentStatus.READY, DocumentStatus.FAILED)


def _owned_by(statement: SelectOfScalar[T], user: User) -> SelectOfScalar[T]:
    """Which documents a user may see: their own, superusers included."""
    return statement.where(Document.owner_id == user.id)


def get_document(*, session: Session, user: User, document_id: uuid.UUID) -> Document | None:
    return session.exec(_owned_by(select(Document).where(Document.id == document_id), user)).first()


def list_documents(
    *, session: Session, kb: KnowledgeBase, query: DocumentListQuery
) -> Page[Document]:
    """Documents of a knowledge base the caller already holds (crud.knowledge_base)."""
    statement = select(Document).where(Document.knowledge_base_id == kb.id)
    if query.status is not None:
        statement = statement.where(Document.status == query.status)
    if query.q:
        statement = statement.where(
            or_(
                text_crud.contains(session, col(Document.title), query.q),
                text_crud.contains(session, col(Document.filename), query.q),
            )
        )
    field = query.sort.lstrip("-")
    key = (
        text_crud.lower(session, col(Document.title))
        if field == "title"
        else col(getattr(Document, field))
    )
    order = key.desc() if query.sort.startswith("-") else key.asc()
    return read_page(session, statement, order, col(Document.id), query=query)


def find_same_content(*, session: Session, kb: KnowledgeBase, sha256: str) -> Document | None:
    statement = select(Document).where(
        Document.knowledge_base_id == kb.id, Document.sha256 == sha256
    )
    return session.exec(statement).first()


def stored_bytes(*, session: Session, user: User) -> int:
    """The bytes of all a user's documents, whatever their status: what the quota counts."""
    statement = select(func.coalesce(func.sum(Document.size_bytes), 0)).where(
        Document.owner_id == user.id
    )
    return int(session.exec(statement).one())


def lock_owner(*, session: Session, user: User) -> None:
    """Serialises a user's uploads, so that two cannot both fit the quota: a row lock on
    PostgreSQL, and on SQLite the database's single write lock, taken now by this no-op
    write. Held until the transaction ends."""
    session.execute(update(User).where(col(User.id) == user.id).values(id=User.id))


def lock_file(*, session: Session, sha256: str) -> None:
    """Serialises what is done with the stored file of this content: storing it for a new
    document, and deleting it once unreferenced. A transaction-scoped advisory lock on
    PostgreSQL; on SQLite the single write lock. Held until the transaction ends."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(Document).where(col(Document.sha256) == sha256).values(sha256=Document.sha256)
        )
        return
    lock_id = int.from_bytes(hashlib.sha256(sha256.encode()).digest()[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:lock_id)"), {"lock_id": lock_id})


def file_in_use(*, session: Session, storage_key: str) -> bool:
    statement = select(Document.id).where(Document.storage_key == storage_key).limit(1)
    return session.exec(statement).first() is not None


def requeue(*, session: Session, document: Document) -> bool:
    """ready or failed -> queued, as if just uploaded, its chunks gone (the full-text
    index follows them: triggers on SQLite). False if it is queued or processing."""
    result = session.execute(
        update(Document)
        .where(col(Document.id) == document.id, col(Document.status).in_(SETTLED_STATUSES))
        .values(
            status=DocumentStatus.QUEUED,
            error_code=None,
            error_message=None,
            page_count=None,
            chunk_count=None,
            processed_at=None,
            lease_owner=None,
            lease_expires_at=None,
            attempts=0,
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    session.execute(delete(Chunk).where(col(Chunk.document_id) == document.id))
    return True
