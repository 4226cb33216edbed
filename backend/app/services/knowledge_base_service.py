import uuid

from sqlmodel import Session

from app.core.db import utcnow
from app.core.errors import ConflictError, NotFoundError
from app.crud import knowledge_base as kb_crud
from app.crud.page import Page
from app.models.knowledge_base import (
    KnowledgeBase,
    KnowledgeBaseCreate,
    KnowledgeBaseListQuery,
    KnowledgeBasePublic,
    KnowledgeBaseUpdate,
)
from app.models.user import User
from app.modules.storage import Storage
from app.services.document_service import release_files
from app.services.transactions import commit_or_conflict

# The name the naming convention gives UniqueConstraint("owner_id", "name").
KB_NAME_UNIQUE = "uq_knowledge_base_owner_id_name"


class KnowledgeBaseService:
    @staticmethod
    def list_knowledge_bases(
        *, session: Session, user: User, query: KnowledgeBaseListQuery
    ) -> Page[KnowledgeBasePublic]:
        page = kb_crud.list_knowledge_bases(session=session, user=user, query=query)
        contents = kb_crud.contents(session=session, kb_ids=[kb.id for kb in page.data])
        return Page(
            data=[_public(kb, contents.get(kb.id, kb_crud.EMPTY)) for kb in page.data],
            count=page.count,
        )

    @staticmethod
    def get(*, session: Session, user: User, kb_id: uuid.UUID) -> KnowledgeBase:
        kb = kb_crud.get_knowledge_base(session=session, user=user, kb_id=kb_id)
        if kb is None:
            raise NotFoundError("Knowledge base not found")  # missing or not yours alike
        return kb

    @staticmethod
    def read(*, session: Session, user: User, kb_id: uuid.UUID) -> KnowledgeBasePublic:
        kb = KnowledgeBaseService.get(session=session, user=user, kb_id=kb_id)
        return _with_contents(session, kb)

    @staticmethod
    def create(*, session: Session, user: User, kb_in: KnowledgeBaseCreate) -> KnowledgeBasePublic:
        if kb_crud.name_taken(session=session, user=user, name=kb_in.name):
            raise _name_taken()
        kb = KnowledgeBase.model_validate(kb_in, update={"owner_id": user.id})
        session.add(kb)
        commit_or_conflict(session, {KB_NAME_UNIQUE: _name_taken()})
        return _public(kb, kb_crud.EMPTY)

    @staticmethod
    def update(
        *, session: Session, user: User, kb_id: uuid.UUID, kb_in: KnowledgeBaseUpdate
    ) -> KnowledgeBasePublic:
        kb = KnowledgeBaseService.get(session=session, user=user, kb_id=kb_id)
        changes = kb_in.model_dump(exclude_unset=True)
        name = changes.get("name")
        if name is not None and kb_crud.name_taken(
            session=session, user=user, name=name, other_than=kb.id
        ):
            raise _name_taken()
        kb.sqlmodel_update(changes)
        kb.updated_at = utcnow()
        session.add(kb)
        commit_or_conflict(session, {KB_NAME_UNIQUE: _name_taken()})
        return _with_contents(session, kb)

    @staticmethod
    def delete(*, session: Session, user: User, kb_id: uuid.UUID, storage: Storage) -> None:
        """Deletes a knowledge base with its documents and their chunks (ON DELETE
        CASCADE), then the stored files no other document refers to."""
        kb = KnowledgeBaseService.get(session=session, user=user, kb_id=kb_id)
        files = kb_crud.stored_files(session=session, kb=kb)
        session.delete(kb)
        session.commit()
        release_files(session=session, storage=storage, files=files)


def _name_taken() -> ConflictError:
    return ConflictError(
        "You already have a knowledge base with this name", code="knowledge_base_name_taken"
    )


def _with_contents(session: Session, kb: KnowledgeBase) -> KnowledgeBasePublic:
    contents = kb_crud.contents(session=session, kb_ids=[kb.id])
    return _public(kb, contents.get(kb.id, kb_crud.EMPTY))


def _public(kb: KnowledgeBase, contents: kb_crud.Contents) -> KnowledgeBasePublic:
    return KnowledgeBasePublic.model_validate(
        kb,
        update={"document_count": contents.document_count, "size_bytes": contents.size_bytes},
    )
