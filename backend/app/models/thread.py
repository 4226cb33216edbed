import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, String, Text
from sqlmodel import Field, SQLModel

from app.core.db import UTCDateTime, utcnow


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
    content: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
