"""Knowledge bases: a user's collections of documents that agents draw on."""

import uuid
from datetime import datetime
from typing import Literal

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.db import UTCDateTime, utcnow
from app.core.types import Input, OffsetListQuery, Omittable, Patch, Text


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


class KnowledgeBaseCreate(KnowledgeBaseBase, Input):
    pass


class KnowledgeBaseUpdate(Patch):
    name: Omittable[str] = Field(default=None, min_length=1, max_length=100)
    description: Omittable[str] = Field(default=None, max_length=2_000)


class KnowledgeBasePublic(KnowledgeBaseBase):
    id: uuid.UUID
    owner_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    document_count: int = Field(description="Documents in it, whatever their status.")
    size_bytes: int = Field(description="Bytes of its stored files.")


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
