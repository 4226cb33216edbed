"""Documents of a knowledge base, the chunks they are cut into, and search over them."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

from sqlalchemy import BigInteger, Index, String, UniqueConstraint
from sqlalchemy import Text as TextColumn
from sqlmodel import Field, SQLModel

from app.core.codes import DocumentErrorCode
from app.core.db import BigIntId, UTCDateTime, utcnow
from app.core.types import ListQuery, OffsetListQuery, Text
from app.models.embedding import SearchMode


class DocumentStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class Document(SQLModel, table=True):
    """An uploaded file and how far its ingestion got. The file itself lives in storage
    (modules/storage) under `storage_key`; its chunks are what search reads."""

    __table_args__ = (
        # The same content twice in one knowledge base is refused (409 duplicate_document).
        UniqueConstraint("knowledge_base_id", "sha256"),
        Index("ix_document_owner_id_status", "owner_id", "status"),
        Index("ix_document_lease_expires_at", "lease_expires_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    knowledge_base_id: uuid.UUID = Field(
        foreign_key="knowledge_base.id", index=True, ondelete="CASCADE"
    )
    # The knowledge base's owner, kept on the row: scoping and the storage quota read it.
    owner_id: uuid.UUID = Field(foreign_key="user.id", ondelete="CASCADE")
    title: str = Field(max_length=300)
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=100)
    size_bytes: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64)
    storage_key: str = Field(max_length=300)
    status: DocumentStatus = Field(default=DocumentStatus.QUEUED, sa_type=String(16))
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, max_length=500)
    page_count: int | None = None
    chunk_count: int | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # As for runs: who processes it and until when; for a queued document, when it is due
    # to be delivered again. Ingestion is idempotent, so an expired lease re-queues it.
    lease_owner: str | None = Field(default=None, max_length=120)
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    # Why its passages have no vectors of the knowledge base's embedding model (for
    # example quota_exceeded); it stays searchable by keyword.
    embedding_error_code: str | None = Field(default=None, max_length=64)


class DocumentPublic(SQLModel):
    id: uuid.UUID
    knowledge_base_id: uuid.UUID
    title: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    status: DocumentStatus
    error_code: DocumentErrorCode | None
    error_message: str | None
    page_count: int | None
    chunk_count: int | None
    created_at: datetime
    processed_at: datetime | None
    embedding_error_code: DocumentErrorCode | None = Field(
        description="Why its passages have no vectors (quota_exceeded: the owner's budget "
        "ran out); it is still searched by keyword."
    )


DocumentSort = Literal["created_at", "-created_at", "title", "-title", "size_bytes", "-size_bytes"]


class DocumentListQuery(OffsetListQuery):
    """`GET /knowledge-bases/{kb_id}/documents`: which documents, in what order, which page."""

    status: DocumentStatus | None = None
    q: Text | None = Field(
        default=None, max_length=100, description="Part of a title or file name."
    )
    sort: DocumentSort = Field(
        default="-created_at", description="A field; '-' first for descending."
    )


class DocumentsPublic(SQLModel):
    data: list[DocumentPublic]
    count: int


class Chunk(SQLModel, table=True):
    """A passage of a document, where it came from, and what search matches.

    An integer key: SQLite's full-text index (chunk_fts, kept by triggers) refers to rows
    by it. On PostgreSQL a stored tsvector column, search_vector, and its GIN index serve
    search; both are made by migrations and are not fields here."""

    __table_args__ = (
        Index("ix_chunk_document_id_ordinal", "document_id", "ordinal"),
        Index("ix_chunk_knowledge_base_id", "knowledge_base_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    document_id: uuid.UUID = Field(foreign_key="document.id", ondelete="CASCADE")
    knowledge_base_id: uuid.UUID
    owner_id: uuid.UUID
    ordinal: int
    text: str = Field(sa_type=TextColumn)
    page_start: int | None = None
    page_end: int | None = None
    heading: str | None = Field(default=None, max_length=500)
    char_start: int
    char_end: int


class SearchQuery(ListQuery):
    """`GET /knowledge-bases/{kb_id}/search`: what people type, as they type it."""

    q: Text = Field(min_length=1, max_length=1_000, description="Words, a question, anything.")
    limit: int = Field(default=10, ge=1, le=50, description="Passages to return, 1 to 50.")
    mode: SearchMode | None = Field(
        default=None,
        description="keyword, semantic or hybrid; default hybrid when the knowledge base "
        "has a semantic index, else keyword.",
    )


class SearchHit(SQLModel):
    chunk_id: int
    document_id: uuid.UUID
    document_title: str
    page_start: int | None
    page_end: int | None
    heading: str | None
    text: str
    score: float = Field(description="Higher is better; comparable within one answer only.")


class SearchResults(SQLModel):
    data: list[SearchHit]
    mode: SearchMode = Field(description="How these passages were found.")
