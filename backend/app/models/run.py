"""Agent runs: one provider conversation turn, from queued to a final status."""

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import Index, String, Text
from sqlmodel import Field, SQLModel

from app.core.codes import RunErrorCode
from app.core.db import ExactDecimal, UTCDateTime, utcnow
from app.core.types import (
    COST_DIGITS,
    COST_PLACES,
    PRICE_DIGITS,
    PRICE_PLACES,
    Money,
    OffsetListQuery,
)
from app.models.thread import MessagePublic


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


class Run(SQLModel, table=True):
    """One conversation turn. Queued and running runs hold a reservation against their
    owner's budget (`reserved_usd`) until they settle; see services.run_service."""

    __table_args__ = (
        Index("ix_run_owner_id_status", "owner_id", "status"),
        Index("ix_run_thread_id_created_at", "thread_id", "created_at"),
        Index("ix_run_lease_expires_at", "lease_expires_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    # No foreign key: a run whose provider call is in flight outlives its deleted thread
    # until it settles, so its reservation is never dropped with the thread.
    thread_id: uuid.UUID
    owner_id: uuid.UUID = Field(foreign_key="user.id", ondelete="CASCADE")
    agent_id: uuid.UUID
    # No foreign key: a run keeps naming the model it used after the model is deleted.
    model_id: uuid.UUID
    user_message_id: uuid.UUID
    assistant_message_id: uuid.UUID | None = None
    status: RunStatus = Field(default=RunStatus.QUEUED, sa_type=String(16))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, max_length=500)
    messages_omitted: int | None = None
    # Knowledge: the sources given to the model, and how many of them the answer cites.
    passages_retrieved: int | None = None
    passages_used: int | None = None
    # What the run was priced at when posted, and so what it sends and is billed at:
    # later edits of the agent or the catalog do not change a run already queued.
    max_output_tokens: int
    temperature: float
    instructions: str = Field(default="", sa_type=Text)
    context_window: int
    # The most its numbered sources may take of the request (estimated tokens), priced in:
    # 0 when the agent had no knowledge bases, and then no sources are sent.
    source_tokens: int = 0
    input_price_per_million: Decimal = Field(sa_type=ExactDecimal(PRICE_DIGITS, PRICE_PLACES))
    output_price_per_million: Decimal = Field(sa_type=ExactDecimal(PRICE_DIGITS, PRICE_PLACES))
    # The worst case held against the owner's budget until the run settles.
    reserved_usd: Decimal = Field(
        default=Decimal(0), sa_type=ExactDecimal(COST_DIGITS, COST_PLACES)
    )
    cost_usd: Decimal | None = Field(default=None, sa_type=ExactDecimal(COST_DIGITS, COST_PLACES))
    # Who executes the run and until when, renewed while it works; for a queued run, when
    # it is due to be delivered again. An expired lease is swept.
    lease_owner: str | None = Field(default=None, max_length=120)
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    deliveries: int = Field(default=0, description="Times handed to an executor.")


class RunPublic(SQLModel):
    """Run metadata: never the conversation's content."""

    id: uuid.UUID
    thread_id: uuid.UUID
    agent_id: uuid.UUID
    model_id: uuid.UUID
    status: RunStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int = Field(description="Provider calls made for this run, retries included.")
    error_code: RunErrorCode | None
    error_message: str | None
    messages_omitted: int | None = Field(
        description="Older messages left out of the request to fit the model's context."
    )
    passages_retrieved: int | None = Field(
        description="Passages of the agent's knowledge bases given to the model as numbered "
        "sources (as many as fit its context); null when the agent has none."
    )
    passages_used: int | None = Field(
        description="Sources the answer cites; null until answered, or without knowledge bases."
    )
    cost_usd: Money | None


class RunListQuery(OffsetListQuery):
    """`GET /threads/{thread_id}/runs`: a page of a thread's runs, newest first."""


class RunsPublic(SQLModel):
    data: list[RunPublic]
    count: int


class PostedMessage(SQLModel):
    message: MessagePublic
    run: RunPublic
