import uuid
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Response, status

from app.api.deps import CurrentUser, RunDispatcherDep, SessionDep, StorageDep
from app.api.errors import error_responses
from app.api.routing import OneTripRoute
from app.models.document import Document, DocumentPublic
from app.services.document_service import DocumentService

router = APIRouter(route_class=OneTripRoute, prefix="/documents", tags=["documents"])


class FileDownload(Response):
    media_type = "application/octet-stream"


def _download_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The file, and errors as JSON: `error_responses` would document them in the
    route's own media type, application/octet-stream."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    responses: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "The file as it was uploaded, as an attachment.",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    }
    for status_code in statuses:
        responses[status_code] = {"description": HTTPStatus(status_code).phrase, "content": error}
    return responses


def attachment(filename: str) -> str:
    """Content-Disposition for a download (RFC 6266): the exact name as UTF-8 (RFC 8187),
    and an ASCII fallback for clients that know only `filename`."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get(
    "/{document_id}",
    response_model=DocumentPublic,
    operation_id="read_document",
    summary="Read a document",
    responses=error_responses(401, 404),
)
def read_document(
    session: SessionDep, current_user: CurrentUser, document_id: uuid.UUID
) -> Document:
    """One document of mine: its status, and on failure why."""
    return DocumentService.get(session=session, user=current_user, document_id=document_id)


@router.get(
    "/{document_id}/file",
    response_model=bytes,
    response_class=FileDownload,
    operation_id="download_document",
    summary="Download a document's file",
    responses=_download_responses(401, 404, 503),
)
def download_document(
    session: SessionDep, current_user: CurrentUser, storage: StorageDep, document_id: uuid.UUID
) -> Response:
    """The original bytes of a document of mine."""
    file = DocumentService.read_file(
        session=session, user=current_user, document_id=document_id, storage=storage
    )
    headers = {
        "Content-Disposition": attachment(file.filename),
        "X-Content-Type-Options": "nosniff",
        # Opened directly anyway, an HTML file runs no script and reaches nothing.
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    return FileDownload(file.data, media_type=file.content_type, headers=headers)


@router.delete(
    "/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_document",
    summary="Delete a document",
    responses=error_responses(401, 404),
)
def delete_document(
    session: SessionDep, current_user: CurrentUser, storage: StorageDep, document_id: uuid.UUID
) -> None:
    """Delete a document of mine with its passages, and its file unless shared."""
    DocumentService.delete(
        session=session, user=current_user, document_id=document_id, storage=storage
    )


@router.post(
    "/{document_id}/reprocess",
    response_model=DocumentPublic,
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="reprocess_document",
    summary="Process a document again",
    responses=error_responses(401, 404, 409),
)
def reprocess_document(
    session: SessionDep,
    current_user: CurrentUser,
    dispatcher: RunDispatcherDep,
    document_id: uuid.UUID,
) -> DocumentPublic:
    """Queue a ready or failed document of mine for ingestion again."""
    return DocumentService.reprocess(
        session=session, user=current_user, document_id=document_id, ingest=dispatcher.ingest
    )
