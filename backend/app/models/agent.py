import uuid
from datetime import datetime
from typing import Literal

from sqlmodel import Field, SQLModel

from app.core.db import UTCDateTime, utcnow
from app.core.types import Input, OffsetListQuery, Omittable, Output, Patch, Text


class AgentBase(SQLModel):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=1_000)
    model_id: uuid.UUID | None = None
    instructions: str = Field(default="", max_length=20_000, description="The system prompt.")
    temperature: float = Field(default=1.0, ge=0, le=2)
    max_output_tokens: int | None = Field(default=None, ge=1, le=10_000_000)
    is_active: bool = True


class Agent(AgentBase, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    owner_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    # RESTRICT: a model in use cannot be deleted; disabling it is how one retires it.
    model_id: uuid.UUID | None = Field(
        default=None, foreign_key="ai_model.id", index=True, ondelete="RESTRICT"
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# How many knowledge bases one agent may draw on.
MAX_AGENT_KNOWLEDGE_BASES = 20


class AgentKnowledgeBase(SQLModel, table=True):
    """Which knowledge bases an agent's runs search; a deleted agent or knowledge base
    takes its rows with it."""

    __tablename__ = "agent_knowledge_base"

    agent_id: uuid.UUID = Field(foreign_key="agent.id", primary_key=True, ondelete="CASCADE")
    knowledge_base_id: uuid.UUID = Field(
        foreign_key="knowledge_base.id", primary_key=True, index=True, ondelete="CASCADE"
    )


class AgentCreate(AgentBase, Input):
    knowledge_base_ids: list[uuid.UUID] = Field(
        default=[],
        max_length=MAX_AGENT_KNOWLEDGE_BASES,
        description="My knowledge bases its answers draw on and cite; repeats count once.",
    )


class AgentUpdate(Patch):
    name: Omittable[str] = Field(default=None, min_length=1, max_length=100)
    description: Omittable[str] = Field(default=None, max_length=1_000)
    model_id: uuid.UUID | None = Field(default=None, description="null: no model.")
    instructions: Omittable[str] = Field(default=None, max_length=20_000)
    temperature: Omittable[float] = Field(default=None, ge=0, le=2)
    max_output_tokens: int | None = Field(
        default=None, ge=1, le=10_000_000, description="null: the model's limit."
    )
    is_active: Omittable[bool] = None
    knowledge_base_ids: Omittable[list[uuid.UUID]] = Field(
        default=None,
        max_length=MAX_AGENT_KNOWLEDGE_BASES,
        description="Replaces the list; [] for none.",
    )


class AgentPublic(AgentBase, Output):
    id: uuid.UUID
    owner_id: uuid.UUID
    knowledge_base_ids: list[uuid.UUID] = Field(
        description="The knowledge bases its answers draw on, ordered by id."
    )
    created_at: datetime
    updated_at: datetime


# The orders the agent list offers: a field, '-' first for descending.
AgentSort = Literal["created_at", "-created_at", "updated_at", "-updated_at", "name", "-name"]


class AgentListQuery(OffsetListQuery):
    """`GET /agents`: which agents, in what order, which page."""

    q: Text | None = Field(
        default=None, max_length=100, description="Part of a name or description."
    )
    owner_id: uuid.UUID | None = Field(default=None, description="Superusers only.")
    sort: AgentSort = Field(default="-created_at", description="A field; '-' first for descending.")


class AgentsPublic(SQLModel):
    data: list[AgentPublic]
    count: int
