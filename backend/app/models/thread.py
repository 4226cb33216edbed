import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from sqlalchemy import Index, String
from sqlalchemy import Text as TextColumn
from sqlmodel import Field, SQLModel

from app.core.db import ExactDecimal, TokenCount, UTCDateTime, utcnow
from app.core.types import (
    COST_DIGITS,
    COST_PLACES,
    Input,
    Limit,
    ListQuery,
    Money,
    OffsetListQuery,
    Omittable,
    Output,
    Patch,
    Text,
)
from app.models.citation import CitationPublic


class Thread(SQLModel, table=True):
    __table_args__ = (Index("ix_thread_owner_id_last_message_at", "owner_id", "last_message_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    owner_id: uuid.UUID = Field(foreign_key="user.id", ondelete="CASCADE")
    agent_id: uuid.UUID = Field(foreign_key="agent.id", index=True, ondelete="CASCADE")
    title: str | None = Field(default=None, max_length=200)
    is_archived: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_message_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MessageRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


class Message(SQLModel, table=True):
    __table_args__ = (Index("ix_message_thread_id_created_at_id", "thread_id", "created_at", "id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    thread_id: uuid.UUID = Field(foreign_key="thread.id", ondelete="CASCADE")
    role: MessageRole = Field(sa_type=String(16))
    content: str = Field(sa_type=TextColumn)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Set on assistant messages: which run wrote it, with which model, at what cost.
    run_id: uuid.UUID | None = None
    model_id: uuid.UUID | None = None
    input_tokens: int | None = Field(default=None, sa_type=TokenCount)
    output_tokens: int | None = Field(default=None, sa_type=TokenCount)
    cost_usd: Decimal | None = Field(default=None, sa_type=ExactDecimal(COST_DIGITS, COST_PLACES))


class ThreadCreate(Input):
    agent_id: uuid.UUID
    title: str | None = Field(default=None, min_length=1, max_length=200)


class ThreadUpdate(Patch):
    title: str | None = Field(
        default=None, min_length=1, max_length=200, description="null: no title."
    )
    is_archived: Omittable[bool] = None


class ThreadPublic(SQLModel):
    id: uuid.UUID
    agent_id: uuid.UUID
    title: str | None
    is_archived: bool
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime


# The orders the thread list offers: a field, '-' first for descending.
ThreadSort = Literal[
    "last_message_at", "-last_message_at", "created_at", "-created_at", "updated_at", "-updated_at"
]


class ThreadListQuery(OffsetListQuery):
    """`GET /threads`: which of my threads, in what order, which page."""

    agent_id: uuid.UUID | None = None
    is_archived: bool | None = None
    sort: ThreadSort = Field(
        default="-last_message_at", description="A field; '-' first for descending."
    )


class ThreadsPublic(SQLModel):
    data: list[ThreadPublic]
    count: int


MESSAGE_MAX_LENGTH = 32_000


class MessageCreate(Input):
    content: str = Field(min_length=1, max_length=MESSAGE_MAX_LENGTH)


class MessagePublic(Output):
    id: uuid.UUID
    thread_id: uuid.UUID
    role: MessageRole
    content: str
    created_at: datetime
    run_id: uuid.UUID | None = None
    model_id: uuid.UUID | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: Money | None = None
    citations: list[CitationPublic] = Field(
        description="The sources an answer cites, in order of first use."
    )


# Messages are paged oldest first (asc) or newest first (desc).
MessageOrder = Literal["asc", "desc"]


class MessageListQuery(ListQuery):
    """`GET /threads/{thread_id}/messages`: a keyset page of a thread's messages."""

    limit: Limit = 50
    cursor: Text | None = Field(default=None, max_length=200, description="A next_cursor.")
    order: MessageOrder = "asc"


class MessagesPublic(SQLModel):
    data: list[MessagePublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")
