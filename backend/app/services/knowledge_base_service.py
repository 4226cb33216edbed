import logging
import uuid

from sqlmodel import Session

from app.core.codes import IndexErrorCode
from app.core.db import utcnow
from app.core.errors import ConflictError, NotFoundError
from app.crud import chunk_vector as chunk_vector_crud
from app.crud import knowledge_base as kb_crud
from app.crud import knowledge_index as index_crud
from app.crud.page import Page
from app.models.ai_model import ModelKind
from app.models.embedding import IndexStatus
from app.models.knowledge_base import (
    KnowledgeBase,
    KnowledgeBaseCreate,
    KnowledgeBaseIndex,
    KnowledgeBaseListQuery,
    KnowledgeBasePublic,
    KnowledgeBaseUpdate,
)
from app.models.user import User
from app.modules.storage import Storage
from app.services.ai_model_service import AIModelService
from app.services.document_service import release_files
from app.services.run_runtime import Dispatch, QueueUnavailableError
from app.services.transactions import commit_or_conflict

logger = logging.getLogger("agentry.index")

# The name the naming convention gives UniqueConstraint("owner_id", "name").
KB_NAME_UNIQUE = "uq_knowledge_base_owner_id_name"


class KnowledgeBaseService:
    @staticmethod
    def list_knowledge_bases(
        *, session: Session, user: User, query: KnowledgeBaseListQuery
    ) -> Page[KnowledgeBasePublic]:
        page = kb_crud.list_knowledge_bases(session=session, user=user, query=query)
        return Page(data=_publics(session, list(page.data)), count=page.count)

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
    def create(
        *, session: Session, user: User, kb_in: KnowledgeBaseCreate, index: Dispatch
    ) -> KnowledgeBasePublic:
        if kb_crud.name_taken(session=session, user=user, name=kb_in.name):
            raise _name_taken()
        _check_embedding_model(session, kb_in.embedding_model_id)
        kb = KnowledgeBase.model_validate(kb_in, update={"owner_id": user.id})
        if kb.embedding_model_id is not None:
            kb.index_status = IndexStatus.BUILDING  # nothing to embed yet: ready at once
            kb.index_lease_expires_at = utcnow()
        session.add(kb)
        commit_or_conflict(session, {KB_NAME_UNIQUE: _name_taken()})
        if kb.embedding_model_id is not None:
            _deliver_build(session, kb, index)
        return _with_contents(session, kb)

    @staticmethod
    def update(
        *,
        session: Session,
        user: User,
        kb_id: uuid.UUID,
        kb_in: KnowledgeBaseUpdate,
        index: Dispatch,
    ) -> KnowledgeBasePublic:
        """A new embedding model starts a build while the old index keeps serving (the
        same model again retries a failed build); none drops the semantic index (search
        is by keyword alone)."""
        kb = KnowledgeBaseService.get(session=session, user=user, kb_id=kb_id)
        changes = kb_in.model_dump(exclude_unset=True)
        name = changes.get("name")
        if name is not None and kb_crud.name_taken(
            session=session, user=user, name=name, other_than=kb.id
        ):
            raise _name_taken()
        rebuild = False
        # Another model, or the same one again after a build failed: build (again).
        if "embedding_model_id" in changes and (
            changes["embedding_model_id"] != kb.embedding_model_id
            or kb.index_status == IndexStatus.FAILED
        ):
            _check_embedding_model(session, changes["embedding_model_id"])
            rebuild = changes["embedding_model_id"] is not None
        kb.sqlmodel_update(changes)
        kb.updated_at = utcnow()
        if "embedding_model_id" in changes and kb.embedding_model_id is None:
            kb.index_model_id = None
            kb.index_status = IndexStatus.NONE
            kb.index_error_code = None
            chunk_vector_crud.delete_others(
                session=session, knowledge_base_id=kb.id, keep_model_id=None
            )
        session.add(kb)
        if rebuild:
            session.flush()
            index_crud.clear_document_marks(session=session, kb_id=kb.id)
            index_crud.request_build(session=session, kb_ids=[kb.id], now=utcnow())
        commit_or_conflict(session, {KB_NAME_UNIQUE: _name_taken()})
        if rebuild:  # before this session reads again: the build must not wait for it
            _deliver_build(session, kb, index)
        else:
            session.refresh(kb)
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


def _check_embedding_model(session: Session, model_id: uuid.UUID | None) -> None:
    if model_id is not None:
        AIModelService.require_usable(
            session=session,
            model_id=model_id,
            kind=ModelKind.EMBEDDING,
            field="embedding_model_id",
            user_of="a knowledge base",
        )


def _deliver_build(session: Session, kb: KnowledgeBase, index: Dispatch) -> None:
    """Hands the build to the ingestion lane (the knowledge base is building and due);
    if the queue is away it stays due and the sweep delivers it."""
    try:
        index(kb.id)
    except QueueUnavailableError:
        logger.warning("index of %s stays due: the queue is unavailable", kb.id)
    session.refresh(kb)


def _with_contents(session: Session, kb: KnowledgeBase) -> KnowledgeBasePublic:
    [public] = _publics(session, [kb])
    return public


def _publics(session: Session, kbs: list[KnowledgeBase]) -> list[KnowledgeBasePublic]:
    """Each with its contents and its index's progress, in two grouped queries."""
    kb_ids = [kb.id for kb in kbs]
    contents = kb_crud.contents(session=session, kb_ids=kb_ids)
    progress = chunk_vector_crud.progress(
        session=session,
        knowledge_base_ids=kb_ids,
        model_id_by_kb={kb.id: kb.embedding_model_id for kb in kbs},
    )
    return [
        _public(kb, contents.get(kb.id, kb_crud.EMPTY), progress.get(kb.id, (0, 0))) for kb in kbs
    ]


def _public(
    kb: KnowledgeBase, contents: kb_crud.Contents, progress: tuple[int, int]
) -> KnowledgeBasePublic:
    embedded, total = progress
    building = kb.index_status == IndexStatus.BUILDING
    index = KnowledgeBaseIndex(
        status=kb.index_status,
        model_id=kb.index_model_id,
        building_model_id=kb.embedding_model_id if building else None,
        chunks_embedded=embedded if kb.embedding_model_id is not None else 0,
        chunks_total=total,
        error_code=None if kb.index_error_code is None else IndexErrorCode(kb.index_error_code),
    )
    return KnowledgeBasePublic.model_validate(
        kb,
        update={
            "document_count": contents.document_count,
            "size_bytes": contents.size_bytes,
            "index": index,
        },
    )
