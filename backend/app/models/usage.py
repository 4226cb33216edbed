"""The usage ledger: one append-only row per provider call that reported usage.

Rows copy what they name (model, prices) and have no foreign keys, so past spending never
changes when users, agents, threads or models go away.
"""

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from sqlalchemy import Index, String
from sqlmodel import Field, SQLModel

from app.core.db import BigIntId, ExactDecimal, TokenCount, UTCDateTime, utcnow
from app.core.types import COST_DIGITS, COST_PLACES, PRICE_DIGITS, PRICE_PLACES, Money


class UsageKind(StrEnum):
    CHAT = "chat"
    EMBEDDING = "embedding"


class UsageEntry(SQLModel, table=True):
    __tablename__ = "usage_ledger"
    __table_args__ = (Index("ix_usage_ledger_user_id_created_at", "user_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    user_id: uuid.UUID
    kind: UsageKind = Field(default=UsageKind.CHAT, sa_type=String(16))
    # A chat call names its run, agent and thread; an embedding call its knowledge base
    # (and the run whose question it embedded, if any).
    agent_id: uuid.UUID | None = None
    thread_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = Field(default=None, index=True)
    knowledge_base_id: uuid.UUID | None = None
    model_id: uuid.UUID
    model_provider: str = Field(max_length=50)
    model_name: str = Field(max_length=200)
    input_tokens: int = Field(sa_type=TokenCount)
    output_tokens: int = Field(sa_type=TokenCount)
    # Usage beyond the model's context window plus the run's output limit: recorded and
    # billed as reported, marked for a person to look at.
    implausible: bool = False
    input_price_per_million: Decimal = Field(sa_type=ExactDecimal(PRICE_DIGITS, PRICE_PLACES))
    output_price_per_million: Decimal = Field(sa_type=ExactDecimal(PRICE_DIGITS, PRICE_PLACES))
    cost_usd: Decimal = Field(sa_type=ExactDecimal(COST_DIGITS, COST_PLACES))


UserGroup = Literal["day", "model", "agent", "kind"]
AdminGroup = Literal["day", "model", "agent", "kind", "user"]


class UsageRow(SQLModel):
    key: str
    input_tokens: int
    output_tokens: int
    cost_usd: Money
    runs: int


class UsageTotals(SQLModel):
    input_tokens: int
    output_tokens: int
    cost_usd: Money
    runs: int


class UsageReport(SQLModel):
    start: date = Field(description="First day counted (UTC).")
    end: date = Field(description="Last day counted (UTC), inclusive.")
    group_by: AdminGroup
    data: list[UsageRow]
    totals: UsageTotals


class QuotaPublic(SQLModel):
    monthly_budget_usd: Money | None = Field(description="null: unlimited.")
    spent: Money
    reserved: Money
    remaining: Money | None
    resets_at: datetime
