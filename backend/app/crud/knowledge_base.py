"""Knowledge bases. Their content (documents, chunks, search) is their owner's alone,
superusers included; superusers may list another owner's knowledge bases' metadata."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import func, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.core.errors import UnprocessableError
from app.crud import text as text_crud
from app.crud.page import Page, read_page
from app.models.document import Document
from app.models.knowledge_base import KnowledgeBase, KnowledgeBaseListQuery
from app.models.user import User

T = TypeVar("T")


@dataclass(frozen=True)
class Contents:
    document_count: int
    size_bytes: int


EMPTY = Contents(document_count=0, size_bytes=0)


def _owned_by(statement: SelectOfScalar[T], user: User) -> SelectOfScalar[T]:
    """Which knowledge bases a user may open, change or delete: their own, superusers
    included."""
    return statement.where(KnowledgeBase.owner_id == user.id)


def _listed_for(
    statement: SelectOfScalar[T], user: User, *, owner_id: uuid.UUID | None
) -> SelectOfScalar[T]:
    """Which knowledge bases a list shows: one's own; a superuser may name another owner
    (metadata only). Naming an owner is for superusers only (422 otherwise)."""
    if owner_id is None:
        return _owned_by(statement, user)
    if not user.is_superuser:
        raise UnprocessableError(
            "Only superusers may filter knowledge bases by owner",
            loc=("query", "owner_id"),
            code="owner_filter_forbidden",
        )
    return statement.where(KnowledgeBase.owner_id == owner_id)


def get_knowledge_base(*, session: Session, user: User, kb_id: uuid.UUID) -> KnowledgeBase | None:
    return session.exec(
        _owned_by(select(KnowledgeBase).where(KnowledgeBase.id == kb_id), user)
    ).first()


def get_many(*, session: Session, user: User, kb_ids: Sequence[uuid.UUID]) -> list[KnowledgeBase]:
    """These knowledge bases, those of `user`'s own only."""
    if not kb_ids:
        return []
    statement = select(KnowledgeBase).where(col(KnowledgeBase.id).in_(kb_ids))
    return list(session.exec(_owned_by(statement, user)).all())


def owned_ids(*, session: Session, user: User, kb_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of `kb_ids` name knowledge bases of `user`'s own."""
    if not kb_ids:
        return set()
    statement = _owned_by(select(KnowledgeBase.id).where(col(KnowledgeBase.id).in_(kb_ids)), user)
    return set(session.exec(statement).all())


def name_taken(
    *, session: Session, user: User, name: str, other_than: uuid.UUID | None = None
) -> bool:
    statement = _owned_by(select(KnowledgeBase.id).where(KnowledgeBase.name == name), user)
    if other_than is not None:
        statement = statement.where(KnowledgeBase.id != other_than)
    return session.exec(statement.limit(1)).first() is not None


def list_knowledge_bases(
    *, session: Session, user: User, query: KnowledgeBaseListQuery
) -> Page[KnowledgeBase]:
    statement = _listed_for(select(KnowledgeBase), user, owner_id=query.owner_id)
    if query.q:
        statement = statement.where(
            or_(
                text_crud.contains(session, col(KnowledgeBase.name), query.q),
                text_crud.contains(session, col(KnowledgeBase.description), query.q),
            )
        )
    field = query.sort.lstrip("-")
    key = (
        text_crud.lower(session, col(KnowledgeBase.name))
        if field == "name"
        else col(getattr(KnowledgeBase, field))
    )
    order = key.desc() if query.sort.startswith("-") else key.asc()
    return read_page(session, statement, order, col(KnowledgeBase.id), query=query)


def contents(*, session: Session, kb_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Contents]:
    """How many documents and stored bytes each knowledge base holds, in one query for
    a whole page (absent from the answer: none)."""
    if not kb_ids:
        return {}
    statement = (
        select(
            Document.knowledge_base_id,
            func.count(col(Document.id)),
            func.coalesce(func.sum(Document.size_bytes), 0),
        )
        .where(col(Document.knowledge_base_id).in_(kb_ids))
        .group_by(col(Document.knowledge_base_id))
    )
    return {
        kb_id: Contents(document_count=int(count), size_bytes=int(size))
        for kb_id, count, size in session.exec(statement).all()
    }


def stored_files(*, session: Session, kb: KnowledgeBase) -> list[tuple[str, str]]:
    """(sha256, storage_key) of the files a knowledge base's documents refer to."""
    statement = (
        select(Document.sha256, Document.storage_key)
        .where(Document.knowledge_base_id == kb.id)
        .distinct()
    )
    return [(sha256, key) for sha256, key in session.exec(statement).all()]
