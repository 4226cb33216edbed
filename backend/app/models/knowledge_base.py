"""Knowledge bases: a user's collections of documents that agents draw on."""

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import String, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.codes import IndexErrorCode
from app.core.db import ExactDecimal, UTCDateTime, utcnow
from app.core.types import (
    COST_DIGITS,
    COST_PLACES,
    Input,
    OffsetListQuery,
    Omittable,
    Output,
    Patch,
    Text,
)
from app.models.embedding import IndexStatus


class KnowledgeBaseBase(SQLModel):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=2_000)


class KnowledgeBase(KnowledgeBaseBase, table=True):
    __tablename__ = "knowledge_base"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    owner_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # The semantic index (models/embedding.py): the model asked for, the model whose
    # vectors serve searches, and the background build between them. No foreign keys (so
    # that SQLite can add and drop the columns in place): the catalog refuses to delete a
    # model a knowledge base names, as it does for agents (crud.ai_model.is_in_use).
    embedding_model_id: uuid.UUID | None = None
    index_model_id: uuid.UUID | None = None
    index_status: IndexStatus = Field(default=IndexStatus.NONE, sa_type=String(16))
    index_error_code: str | None = Field(default=None, max_length=64)
    # As for runs and documents: who builds it and until when; when it is due again.
    index_lease_owner: str | None = Field(default=None, max_length=120)
    index_lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    index_attempts: int = 0
    # Raised by whatever asks for a (re)build (a document became ready, the model changed);
    # a build marks the index ready only if nothing asked again while it ran.
    index_version: int = 0
    # The worst case of the embedding batch in flight, held against the owner's budget.
    index_reserved_usd: Decimal = Field(
        default=Decimal(0), sa_type=ExactDecimal(COST_DIGITS, COST_PLACES)
    )


class KnowledgeBaseCreate(KnowledgeBaseBase, Input):
    embedding_model_id: uuid.UUID | None = Field(
        default=None,
        description="An enabled embedding model of the catalog; none: keyword search only.",
    )


class KnowledgeBaseUpdate(Patch):
    name: Omittable[str] = Field(default=None, min_length=1, max_length=100)
    description: Omittable[str] = Field(default=None, max_length=2_000)
    embedding_model_id: uuid.UUID | None = Field(
        default=None,
        description="Another embedding model re-indexes in the background; null: keyword only.",
    )


class KnowledgeBaseIndex(SQLModel):
    """The semantic index: which model serves, and how far a build has got."""

    status: IndexStatus
    model_id: uuid.UUID | None = Field(description="The model whose vectors serve searches.")
    building_model_id: uuid.UUID | None = Field(
        description="The model being built, while status is building."
    )
    chunks_embedded: int = Field(description="Passages with a vector of the wanted model.")
    chunks_total: int = Field(description="Passages of the ready documents.")
    error_code: IndexErrorCode | None


class KnowledgeBasePublic(KnowledgeBaseBase, Output):
    id: uuid.UUID
    owner_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    document_count: int = Field(description="Documents in it, whatever their status.")
    size_bytes: int = Field(description="Bytes of its stored files.")
    embedding_model_id: uuid.UUID | None
    index: KnowledgeBaseIndex


KnowledgeBaseSort = Literal[
    "created_at", "-created_at", "updated_at", "-updated_at", "name", "-name"
]


class KnowledgeBaseListQuery(OffsetListQuery):
    """`GET /knowledge-bases`: which knowledge bases, in what order, which page."""

    q: Text | None = Field(
        default=None, max_length=100, description="Part of a name or description."
    )
    owner_id: uuid.UUID | None = Field(
        default=None, description="Superusers only: one owner's, for administration."
    )
    sort: KnowledgeBaseSort = Field(
        default="-created_at", description="A field; '-' first for descending."
    )


class KnowledgeBasesPublic(SQLModel):
    data: list[KnowledgeBasePublic]
    count: int
