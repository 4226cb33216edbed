"""Ingesting a document: from its stored file to the chunks that search reads.

    queued --claim--> processing --write--> ready
       ^                 |--fail---------> failed  (extraction's code, file_missing,
       |                 |                          storage_unavailable, ingestion_failed)
       |--release--------| storage away, attempts left
       |--sweep----------| lease expired, attempts left; none left: ingestion_interrupted

As for runs, the document row is the single source of truth. A delivery claims it in one
conditional UPDATE, so a document delivered twice is processed once. The file is read,
extracted and chunked with no transaction open while the heartbeat renews the lease; the
chunks and the final status are then written in one transaction that only the lease's
holder can commit. Unlike a provider call, ingestion costs nothing and repeats exactly,
so a document whose process died is queued again (ingestion_recovery) rather than failed.
"""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from app.core.codes import DocumentErrorCode
from app.core.config import Settings
from app.core.db import utcnow
from app.core.text import storable
from app.crud import chunk as chunk_crud
from app.crud import ingestion as ingestion_crud
from app.crud import knowledge_index as index_crud
from app.models.document import Chunk, DocumentStatus
from app.modules.documents.chunking import ChunkDraft, chunk_document
from app.modules.documents.detect import CONTENT_TYPES, UnsupportedDocument, detect_kind
from app.modules.documents.extract import ExtractionError, ExtractionLimits, extract
from app.modules.storage import Storage, StorageError, StoredFileMissing
from app.services.run_runtime import LeaseRegistry, SessionFactory

logger = logging.getLogger("agentry.ingestion")

MAX_BACKOFF_DOUBLINGS = 5
HEADING_MAX = 500
_KINDS = {content_type: kind for kind, content_type in CONTENT_TYPES.items()}


@dataclass(frozen=True)
class IngestPolicy:
    lease: timedelta  # how long a claimed document stays ours without a renewal
    redeliver_after: timedelta  # first wait before a queued document is delivered again
    time_limit: float  # seconds of renewals one ingestion gets; then its lease runs out
    max_attempts: int  # claims of one document before an interrupted one fails
    limits: ExtractionLimits
    search_language: str = "simple"  # PostgreSQL's text search configuration

    def backoff(self, times: int) -> timedelta:
        """The wait before a delivery that comes after `times` others."""
        doublings: int = min(max(times, 0), MAX_BACKOFF_DOUBLINGS)
        return self.redeliver_after * (1 << doublings)

    @classmethod
    def from_settings(cls, config: Settings) -> "IngestPolicy":
        # Leases and deliveries keep the runs' timings: one sweep serves both.
        return cls(
            lease=timedelta(seconds=config.RUN_LEASE_SECONDS),
            redeliver_after=timedelta(seconds=config.RUN_REDELIVER_SECONDS),
            time_limit=float(config.INGEST_TIME_LIMIT_SECONDS),
            max_attempts=config.INGEST_MAX_ATTEMPTS,
            limits=ExtractionLimits(
                max_pages=config.MAX_DOCUMENT_PAGES, max_bytes=config.MAX_EXTRACTED_BYTES
            ),
            search_language=config.SEARCH_LANGUAGE,
        )


class IngestionFailedError(Exception):
    def __init__(self, code: DocumentErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Retry(Exception):  # noqa: N818 (an outcome, not an error)
    """Storage was away: the document goes back to the queue if attempts are left."""


class IngestionService:
    @staticmethod
    def process(
        document_id: uuid.UUID,
        *,
        session_factory: SessionFactory,
        storage: Storage,
        leases: LeaseRegistry,
        policy: IngestPolicy,
    ) -> uuid.UUID | None:
        """Claims, reads, extracts, chunks and stores one delivered document; every path
        ends it, or leaves it to a retry (storage away) or to the sweep (process died).
        Returns its knowledge base's id when the document became ready there: its
        semantic index, if it has one, now has passages to embed."""
        owner = leases.new_owner()
        with session_factory() as session:
            claimed = ingestion_crud.claim(
                session=session,
                document_id=document_id,
                owner=owner,
                expires_at=utcnow() + policy.lease,
            )
            session.commit()
        if claimed is None:
            return None  # another delivery has it, or it is done, or it was deleted
        leases.hold(document_id, owner, seconds=policy.time_limit)
        try:
            stored = _ingest(claimed, owner, session_factory, storage, policy)
        finally:
            leases.release(document_id)
        return claimed.knowledge_base_id if stored else None


def _ingest(
    claimed: ingestion_crud.Claimed,
    owner: str,
    session_factory: SessionFactory,
    storage: Storage,
    policy: IngestPolicy,
) -> bool:
    """Whether the document is now ready."""
    try:
        drafts, page_count = _read(claimed, storage, policy)
        return _store(claimed, owner, session_factory, drafts, page_count, policy.search_language)
    except _Retry:
        _retry(claimed, owner, session_factory, policy)
    except IngestionFailedError as failure:
        _end(claimed.id, owner, session_factory, failure)
    return False


def _read(
    claimed: ingestion_crud.Claimed, storage: Storage, policy: IngestPolicy
) -> tuple[list[ChunkDraft], int | None]:
    """The document's passages and page count, read with no transaction open."""
    try:
        data = storage.get(claimed.storage_key)
        kind = _KINDS.get(claimed.content_type.partition(";")[0].strip())
        extracted = extract(data, kind or detect_kind(data, claimed.filename), policy.limits)
        return chunk_document(extracted), extracted.page_count
    except StoredFileMissing as error:
        raise IngestionFailedError(
            DocumentErrorCode.FILE_MISSING, "The stored file is missing"
        ) from error
    except StorageError as error:
        logger.warning("document %s: storage unavailable (%s)", claimed.id, error)
        raise _Retry from error
    except UnsupportedDocument as error:
        raise IngestionFailedError(DocumentErrorCode.UNSUPPORTED_DOCUMENT, error.message) from error
    except ExtractionError as error:
        raise IngestionFailedError(error.code, error.message) from error
    except Exception as error:
        # The type only: an error's text can quote the document.
        logger.error("document %s: ingestion failed (%s)", claimed.id, type(error).__name__)
        raise IngestionFailedError(
            DocumentErrorCode.INGESTION_FAILED, "The document could not be processed"
        ) from error


def _store(
    claimed: ingestion_crud.Claimed,
    owner: str,
    session_factory: SessionFactory,
    drafts: list[ChunkDraft],
    page_count: int | None,
    search_language: str,
) -> bool:
    """The chunks and `ready`, in one transaction, if `owner` still holds the document;
    its knowledge base's semantic index, if any, is asked to embed them."""
    chunks = [_chunk(claimed, draft) for draft in drafts]
    values: dict[str, Any] = {
        "status": DocumentStatus.READY,
        "page_count": page_count,
        "chunk_count": len(chunks),
        "processed_at": utcnow(),
        "error_code": None,
        "error_message": None,
        "embedding_error_code": None,
    }
    try:
        with session_factory() as session:
            # The status first: not held (deleted, swept, taken) means no chunks either.
            if ingestion_crud.finish(
                session=session, document_id=claimed.id, owner=owner, values=values
            ):
                chunk_crud.replace_chunks(
                    session=session,
                    document_id=claimed.id,
                    chunks=chunks,
                    language=search_language,
                )
                index_crud.request_build(
                    session=session, kb_ids=[claimed.knowledge_base_id], now=utcnow()
                )
                session.commit()
                return True
            return False
    except Exception as error:
        logger.error("document %s: chunks not stored (%s)", claimed.id, type(error).__name__)
        raise IngestionFailedError(
            DocumentErrorCode.INGESTION_FAILED, "The document's passages could not be stored"
        ) from error


def _chunk(claimed: ingestion_crud.Claimed, draft: ChunkDraft) -> Chunk:
    heading = storable(draft.heading)[:HEADING_MAX] if draft.heading is not None else None
    return Chunk(
        document_id=claimed.id,
        knowledge_base_id=claimed.knowledge_base_id,
        owner_id=claimed.owner_id,
        ordinal=draft.ordinal,
        text=storable(draft.text),
        page_start=draft.page_start,
        page_end=draft.page_end,
        heading=heading,
        char_start=draft.char_start,
        char_end=draft.char_end,
    )


def _end(
    document_id: uuid.UUID,
    owner: str,
    session_factory: SessionFactory,
    failure: IngestionFailedError,
) -> None:
    values = {
        "status": DocumentStatus.FAILED,
        "error_code": failure.code,
        "error_message": storable(failure.message)[:500],
        "processed_at": utcnow(),
    }

    def fail(session: Session) -> bool:
        return ingestion_crud.finish(
            session=session, document_id=document_id, owner=owner, values=values
        )

    if _write(document_id, session_factory, fail):
        logger.info("document %s failed: %s", document_id, failure.code)


def _retry(
    claimed: ingestion_crud.Claimed,
    owner: str,
    session_factory: SessionFactory,
    policy: IngestPolicy,
) -> None:
    if claimed.attempts >= policy.max_attempts:
        failure = IngestionFailedError(
            DocumentErrorCode.STORAGE_UNAVAILABLE,
            "The file storage could not be reached; reprocess it later",
        )
        _end(claimed.id, owner, session_factory, failure)
        return
    next_due = utcnow() + policy.backoff(claimed.attempts)

    def release(session: Session) -> bool:
        return ingestion_crud.release(
            session=session, document_id=claimed.id, owner=owner, next_due=next_due
        )

    _write(claimed.id, session_factory, release)


def _write(
    document_id: uuid.UUID, session_factory: SessionFactory, step: Callable[[Session], bool]
) -> bool:
    """Commits one outcome; True if it applied. If the database is away, the lease runs
    out and the sweep takes the document back."""
    try:
        with session_factory() as session:
            applied = step(session)
            session.commit()
    except Exception as error:
        logger.error("document %s: outcome not stored (%s)", document_id, type(error).__name__)
        return False
    return applied
