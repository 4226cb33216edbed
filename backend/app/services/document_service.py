"""Documents: uploaded, stored by content, handed to ingestion, downloaded, deleted.

An upload is refused before anything is stored: too large, not a kind we read, the same
content already in the knowledge base, or beyond the owner's storage quota. The quota is
checked and the document inserted under the owner's lock, and the file is stored under a
lock on its content, which deleting an unreferenced file takes too (`release_files`): a
file two documents share is never deleted while one of them is being uploaded.
"""

import hashlib
import logging
import re
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import (
    ConflictError,
    NotFoundError,
    RequestTooLargeError,
    ServiceUnavailableError,
    UnprocessableError,
    UnsupportedMediaTypeError,
)
from app.crud import document as document_crud
from app.crud import ingestion as ingestion_crud
from app.crud import knowledge_base as kb_crud
from app.crud.page import Page
from app.models.document import Document, DocumentListQuery, DocumentPublic
from app.models.knowledge_base import KnowledgeBase
from app.models.user import User
from app.modules.documents.detect import (
    CONTENT_TYPES,
    DocumentKind,
    UnsupportedDocument,
    detect_kind,
)
from app.modules.storage import Storage, StorageError, StoredFileMissing
from app.services.run_runtime import Dispatch, QueueUnavailableError
from app.services.transactions import commit_or_conflict

logger = logging.getLogger("agentry.documents")

# The name the naming convention gives UniqueConstraint("knowledge_base_id", "sha256").
CONTENT_UNIQUE = "uq_document_knowledge_base_id_sha256"
FILENAME_MAX_LENGTH = 255
TITLE_MAX_LENGTH = 300
DEFAULT_FILENAME = "document"
_PATH_SEPARATORS = re.compile(r"[/\\]")
# Control and format characters (bidirectional overrides that disguise an extension
# included) and surrogates: nothing a file name needs.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int  # one file
    quota_bytes: int  # all of one owner's documents

    @classmethod
    def from_settings(cls, config: Settings) -> "UploadLimits":
        return cls(max_bytes=config.MAX_UPLOAD_BYTES, quota_bytes=config.STORAGE_QUOTA_BYTES)


@dataclass(frozen=True)
class Upload:
    """A file as it arrived: its bytes (not yet read), the name it came with, a title."""

    stream: BinaryIO
    filename: str | None
    title: str | None


@dataclass(frozen=True)
class DocumentFile:
    filename: str
    content_type: str
    data: bytes


class DocumentService:
    @staticmethod
    def upload(
        *,
        session: Session,
        user: User,
        kb_id: uuid.UUID,
        upload: Upload,
        limits: UploadLimits,
        storage: Storage,
        ingest: Dispatch,
    ) -> DocumentPublic:
        """Stores the file and a queued document, then delivers it to ingestion. If the
        queue cannot take it, it stays queued and the sweep delivers it later."""
        kb = _knowledge_base(session=session, user=user, kb_id=kb_id)
        data = _read(upload.stream, limits.max_bytes)
        filename = clean_filename(upload.filename)
        try:
            kind = detect_kind(data, filename)
        except UnsupportedDocument as error:
            raise UnsupportedMediaTypeError(error.message) from None
        title = (upload.title or "").strip() or default_title(filename)
        document = _store(
            session=session,
            user=user,
            kb=kb,
            data=data,
            kind=kind,
            names=(filename, title),
            limits=limits,
            storage=storage,
        )
        public = DocumentPublic.model_validate(document)  # as created: queued
        _deliver(session, document, ingest)
        return public

    @staticmethod
    def list_documents(
        *, session: Session, user: User, kb_id: uuid.UUID, query: DocumentListQuery
    ) -> Page[Document]:
        kb = _knowledge_base(session=session, user=user, kb_id=kb_id)
        return document_crud.list_documents(session=session, kb=kb, query=query)

    @staticmethod
    def get(*, session: Session, user: User, document_id: uuid.UUID) -> Document:
        document = document_crud.get_document(session=session, user=user, document_id=document_id)
        if document is None:
            raise NotFoundError("Document not found")  # missing or not yours alike
        return document

    @staticmethod
    def read_file(
        *, session: Session, user: User, document_id: uuid.UUID, storage: Storage
    ) -> DocumentFile:
        document = DocumentService.get(session=session, user=user, document_id=document_id)
        try:
            data = storage.get(document.storage_key)
        except StoredFileMissing:
            logger.error("document %s: its stored file is missing", document.id)
            raise NotFoundError(
                "This document's file is missing from storage", code="file_missing"
            ) from None
        except StorageError as error:
            raise _storage_unavailable() from error
        return DocumentFile(
            filename=document.filename, content_type=document.content_type, data=data
        )

    @staticmethod
    def delete(*, session: Session, user: User, document_id: uuid.UUID, storage: Storage) -> None:
        """Deletes a document and its chunks (ON DELETE CASCADE), then its stored file
        unless another document refers to it."""
        document = DocumentService.get(session=session, user=user, document_id=document_id)
        files = [(document.sha256, document.storage_key)]
        session.delete(document)
        session.commit()
        release_files(session=session, storage=storage, files=files)

    @staticmethod
    def reprocess(
        *, session: Session, user: User, document_id: uuid.UUID, ingest: Dispatch
    ) -> DocumentPublic:
        """A ready or failed document back to queued, its chunks and errors gone, and
        delivered again; 409 while it is queued or processing."""
        document = DocumentService.get(session=session, user=user, document_id=document_id)
        if not document_crud.requeue(session=session, document=document):
            raise ConflictError(
                "This document is queued or being processed already", code="document_busy"
            )
        session.commit()
        # The UPDATE brought `document` up to date (synchronize_session); reading it again
        # would open a transaction, held for no reason while ingestion runs (inline).
        public = DocumentPublic.model_validate(document)
        _deliver(session, document, ingest)
        return public


def release_files(*, session: Session, storage: Storage, files: list[tuple[str, str]]) -> None:
    """Deletes each stored file, given as (sha256, storage_key), that no document refers
    to any more. Called after the commit that removed the documents; a file that cannot
    be deleted now is only logged: it takes space, and nothing refers to it."""
    for sha256, storage_key in files:
        try:
            document_crud.lock_file(session=session, sha256=sha256)
            if not document_crud.file_in_use(session=session, storage_key=storage_key):
                storage.delete(storage_key)
            session.commit()
        except (SQLAlchemyError, StorageError) as error:
            session.rollback()
            logger.warning("stored file %s kept: %s", storage_key, type(error).__name__)


def clean_filename(name: str | None) -> str:
    """The last part of a path a client sent, without control or format characters,
    at most FILENAME_MAX_LENGTH characters with its extension kept; never empty."""
    base = _PATH_SEPARATORS.split(unicodedata.normalize("NFC", name or ""))[-1]
    base = "".join(c for c in base if unicodedata.category(c) not in _UNSAFE_CATEGORIES).strip()
    if base in ("", ".", ".."):
        return DEFAULT_FILENAME
    if len(base) <= FILENAME_MAX_LENGTH:
        return base
    suffix = PurePosixPath(base).suffix
    if not 1 < len(suffix) <= 16:
        return base[:FILENAME_MAX_LENGTH].strip()
    return base[: FILENAME_MAX_LENGTH - len(suffix)].strip() + suffix


def default_title(filename: str) -> str:
    """The file name without its extension."""
    return (PurePosixPath(filename).stem.strip() or filename)[:TITLE_MAX_LENGTH]


def _knowledge_base(*, session: Session, user: User, kb_id: uuid.UUID) -> KnowledgeBase:
    kb = kb_crud.get_knowledge_base(session=session, user=user, kb_id=kb_id)
    if kb is None:
        raise NotFoundError("Knowledge base not found")
    return kb


def _read(stream: BinaryIO, max_bytes: int) -> bytes:
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise RequestTooLargeError(
            f"A document may not exceed {max_bytes} bytes", code="upload_too_large"
        )
    if not data:
        raise UnprocessableError("The file is empty", loc=("body", "file"), code="empty_file")
    return data


def _store(
    *,
    session: Session,
    user: User,
    kb: KnowledgeBase,
    data: bytes,
    kind: DocumentKind,
    names: tuple[str, str],
    limits: UploadLimits,
    storage: Storage,
) -> Document:
    """Checks the upload against the knowledge base and the quota, stores the file and
    commits the queued document, all under the owner's lock and the content's."""
    sha256 = hashlib.sha256(data).hexdigest()
    document_crud.lock_owner(session=session, user=user)
    existing = document_crud.find_same_content(session=session, kb=kb, sha256=sha256)
    if existing is not None:
        raise _duplicate(existing.id)
    used = document_crud.stored_bytes(session=session, user=user)
    if used + len(data) > limits.quota_bytes:
        raise RequestTooLargeError(
            f"This file would take your stored documents beyond your quota of "
            f"{limits.quota_bytes} bytes",
            code="storage_quota_exceeded",
            extra={"used_bytes": used, "quota_bytes": limits.quota_bytes},
        )
    document_crud.lock_file(session=session, sha256=sha256)
    try:
        storage_key = storage.put(data)
    except StorageError as error:
        raise _storage_unavailable() from error
    filename, title = names
    document = Document(
        knowledge_base_id=kb.id,
        owner_id=kb.owner_id,
        title=title,
        filename=filename,
        content_type=CONTENT_TYPES[kind],
        size_bytes=len(data),
        sha256=sha256,
        storage_key=storage_key,
    )
    session.add(document)
    try:
        commit_or_conflict(session, {CONTENT_UNIQUE: _duplicate(None)})
    except (SQLAlchemyError, ConflictError):
        session.rollback()
        release_files(session=session, storage=storage, files=[(sha256, storage_key)])
        raise
    return document


def _deliver(session: Session, document: Document, ingest: Dispatch) -> None:
    try:
        ingest(document.id)
    except QueueUnavailableError:
        logger.warning("document %s stays queued: the queue is unavailable", document.id)
        ingestion_crud.make_due(session=session, document_ids=[document.id], due=utcnow())
        session.commit()


def _duplicate(document_id: uuid.UUID | None) -> ConflictError:
    return ConflictError(
        "This knowledge base already holds a document with the same content",
        code="duplicate_document",
        extra={"document_id": document_id},
    )


def _storage_unavailable() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "The file storage is unavailable; try again shortly", code="storage_unavailable"
    )
