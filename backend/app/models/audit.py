"""The audit log: append-only, and outliving the users it names."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from app.core.codes import AuditAction
from app.core.db import BigIntId, UTCDateTime, utcnow
from app.core.types import Instant, ListQuery, PageSize, Text

JsonDetails = JSON().with_variant(JSONB(), "postgresql")


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"

    # Increasing ids give a stable newest-first order and a cursor that never skips rows.
    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    # No foreign keys: the row keeps who it was about after they are deleted.
    actor_id: uuid.UUID | None = Field(default=None, index=True)
    actor_email: str | None = Field(default=None, max_length=254)
    action: str = Field(max_length=64, index=True)
    target_type: str | None = Field(default=None, max_length=32)
    target_id: str | None = Field(default=None, max_length=64, index=True)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=255)
    request_id: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=JsonDetails)


class AuditEntryPublic(SQLModel):
    id: int
    created_at: datetime
    actor_id: uuid.UUID | None
    actor_email: str | None
    action: AuditAction
    target_type: str | None
    target_id: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]


class AuditEntryListQuery(ListQuery):
    """`GET /admin/audit-log`: which entries, newest first, from which cursor."""

    actor_id: uuid.UUID | None = None
    action: Text | None = Field(default=None, max_length=64)
    target_type: Text | None = Field(default=None, max_length=32)
    target_id: Text | None = Field(default=None, max_length=64)
    since: Instant | None = Field(default=None, description="From this time on.")
    until: Instant | None = Field(default=None, description="Before this time.")
    limit: PageSize = 50
    cursor: Text | None = Field(default=None, max_length=32, description="next_cursor of a page.")


class AuditLogPublic(SQLModel):
    data: list[AuditEntryPublic]
    next_cursor: str | None
