import uuid
from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile, status
from sqlmodel import Field

from app.api.deps import ConfigDep, CurrentUser, RunDispatcherDep, SessionDep, StorageDep
from app.api.errors import error_responses
from app.api.routing import OneTripRoute
from app.core.types import Input
from app.crud.page import Page
from app.models.document import Document, DocumentListQuery, DocumentPublic, DocumentsPublic
from app.models.knowledge_base import (
    KnowledgeBaseCreate,
    KnowledgeBaseListQuery,
    KnowledgeBasePublic,
    KnowledgeBasesPublic,
    KnowledgeBaseUpdate,
)
from app.services.document_service import DocumentService, Upload, UploadLimits
from app.services.knowledge_base_service import KnowledgeBaseService

router = APIRouter(route_class=OneTripRoute, prefix="/knowledge-bases", tags=["knowledge-bases"])

# Uploads may be larger than other bodies (main.py gives this path its own limit).
UPLOAD_PATH = "/knowledge-bases/[^/]+/documents"


class DocumentUpload(Input):
    """`POST /knowledge-bases/{kb_id}/documents`: a multipart form."""

    file: UploadFile = Field(description="The document: PDF, DOCX, HTML, Markdown, text, CSV.")
    title: str | None = Field(
        default=None, max_length=300, description="Its title; by default the file's name."
    )


# ==================== CRUD ====================


@router.get(
    "",
    response_model=KnowledgeBasesPublic,
    operation_id="list_knowledge_bases",
    summary="List knowledge bases",
    responses=error_responses(401),
)
def list_knowledge_bases(
    session: SessionDep,
    current_user: CurrentUser,
    query: Annotated[KnowledgeBaseListQuery, Query()],
) -> Page[KnowledgeBasePublic]:
    """My knowledge bases (a superuser may list one owner's), filtered, sorted and paged."""
    return KnowledgeBaseService.list_knowledge_bases(
        session=session, user=current_user, query=query
    )


@router.post(
    "",
    response_model=KnowledgeBasePublic,
    status_code=status.HTTP_201_CREATED,
    operation_id="create_knowledge_base",
    summary="Create a knowledge base",
    responses=error_responses(401, 409, 422),
)
def create_knowledge_base(
    session: SessionDep,
    current_user: CurrentUser,
    dispatcher: RunDispatcherDep,
    kb_in: KnowledgeBaseCreate,
) -> KnowledgeBasePublic:
    """Create an empty knowledge base; names are unique among mine. With an embedding
    model its passages are also searched by meaning."""
    return KnowledgeBaseService.create(
        session=session, user=current_user, kb_in=kb_in, index=dispatcher.index
    )


@router.get(
    "/{kb_id}",
    response_model=KnowledgeBasePublic,
    operation_id="read_knowledge_base",
    summary="Read a knowledge base",
    responses=error_responses(401, 404),
)
def read_knowledge_base(
    session: SessionDep, current_user: CurrentUser, kb_id: uuid.UUID
) -> KnowledgeBasePublic:
    """One knowledge base of mine, with how many documents and bytes it holds."""
    return KnowledgeBaseService.read(session=session, user=current_user, kb_id=kb_id)


@router.patch(
    "/{kb_id}",
    response_model=KnowledgeBasePublic,
    operation_id="update_knowledge_base",
    summary="Update a knowledge base",
    responses=error_responses(401, 404, 409, 422),
)
def update_knowledge_base(
    session: SessionDep,
    current_user: CurrentUser,
    dispatcher: RunDispatcherDep,
    kb_id: uuid.UUID,
    kb_in: KnowledgeBaseUpdate,
) -> KnowledgeBasePublic:
    """Rename a knowledge base of mine, change its description, or change its embedding
    model: the new index is built in the background while the old one keeps serving."""
    return KnowledgeBaseService.update(
        session=session, user=current_user, kb_id=kb_id, kb_in=kb_in, index=dispatcher.index
    )


@router.delete(
    "/{kb_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_knowledge_base",
    summary="Delete a knowledge base",
    responses=error_responses(401, 404),
)
def delete_knowledge_base(
    session: SessionDep, current_user: CurrentUser, storage: StorageDep, kb_id: uuid.UUID
) -> None:
    """Delete a knowledge base of mine with its documents, their passages and files."""
    KnowledgeBaseService.delete(session=session, user=current_user, kb_id=kb_id, storage=storage)


# ==================== documents ====================


@router.post(
    "/{kb_id}/documents",
    response_model=DocumentPublic,
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="upload_document",
    summary="Upload a document",
    responses=error_responses(401, 404, 409, 413, 415, 503),
)
def upload_document(
    session: SessionDep,
    current_user: CurrentUser,
    config: ConfigDep,
    storage: StorageDep,
    dispatcher: RunDispatcherDep,
    kb_id: uuid.UUID,
    upload_in: Annotated[DocumentUpload, File()],
) -> DocumentPublic:
    """Add a file to a knowledge base of mine; it is queued for ingestion."""
    upload = Upload(
        stream=upload_in.file.file, filename=upload_in.file.filename, title=upload_in.title
    )
    return DocumentService.upload(
        session=session,
        user=current_user,
        kb_id=kb_id,
        upload=upload,
        limits=UploadLimits.from_settings(config),
        storage=storage,
        ingest=dispatcher.ingest,
    )


@router.get(
    "/{kb_id}/documents",
    response_model=DocumentsPublic,
    operation_id="list_documents",
    summary="List a knowledge base's documents",
    responses=error_responses(401, 404),
)
def list_documents(
    session: SessionDep,
    current_user: CurrentUser,
    kb_id: uuid.UUID,
    query: Annotated[DocumentListQuery, Query()],
) -> Page[Document]:
    """The documents of a knowledge base of mine, filtered, sorted and paged."""
    return DocumentService.list_documents(
        session=session, user=current_user, kb_id=kb_id, query=query
    )
