import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import RowMapping, Select, delete, insert, or_
from sqlmodel import Session, col, select

from app.core.errors import UnprocessableError
from app.crud import text as text_crud
from app.crud.page import Page, columns_of, read_rows_page
from app.models.agent import Agent, AgentKnowledgeBase, AgentListQuery
from app.models.user import User

S = TypeVar("S", bound=Select[Any])


def _visible_to(statement: S, user: User, *, owner_id: uuid.UUID | None = None) -> S:
    """The only place that decides which agents a user may see: their own; superusers
    every agent, or one owner's. Naming an owner is for superusers only (422 otherwise,
    rather than quietly answering with one's own)."""
    if user.is_superuser:
        return statement if owner_id is None else statement.where(col(Agent.owner_id) == owner_id)
    if owner_id is not None:
        raise UnprocessableError(
            "Only superusers may filter agents by owner",
            loc=("query", "owner_id"),
            code="owner_filter_forbidden",
        )
    return statement.where(col(Agent.owner_id) == user.id)


def _usable_by(statement: S, user: User) -> S:
    """Which agents a user may talk to: only their own, superusers included."""
    return statement.where(col(Agent.owner_id) == user.id)


def get_agent(*, session: Session, user: User, agent_id: uuid.UUID) -> Agent | None:
    return session.exec(_visible_to(select(Agent).where(Agent.id == agent_id), user)).first()


def get_usable_agent(*, session: Session, user: User, agent_id: uuid.UUID) -> Agent | None:
    return session.exec(_usable_by(select(Agent).where(Agent.id == agent_id), user)).first()


def list_agents(*, session: Session, user: User, query: AgentListQuery) -> Page[RowMapping]:
    """A page of the agents `user` may see, as rows (the list only shows them)."""
    statement = _visible_to(columns_of(Agent), user, owner_id=query.owner_id)
    if query.q:
        statement = statement.where(
            or_(
                text_crud.contains(session, col(Agent.name), query.q),
                text_crud.contains(session, col(Agent.description), query.q),
            )
        )
    field = query.sort.lstrip("-")
    key = (
        text_crud.lower(session, col(Agent.name)) if field == "name" else col(getattr(Agent, field))
    )
    order = key.desc() if query.sort.startswith("-") else key.asc()
    return read_rows_page(session, statement, order, col(Agent.id), query=query)


# ==================== knowledge bases ====================


def knowledge_base_ids(
    *, session: Session, agent_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """The knowledge bases of each agent, ordered by id, in one query for a whole page
    (an agent absent from the answer has none)."""
    if not agent_ids:
        return {}
    agent_id, kb_id = col(AgentKnowledgeBase.agent_id), col(AgentKnowledgeBase.knowledge_base_id)
    statement = select(agent_id, kb_id).where(agent_id.in_(agent_ids)).order_by(agent_id, kb_id)
    found: dict[uuid.UUID, list[uuid.UUID]] = {}
    for linked_agent, linked_kb in session.exec(statement).all():
        found.setdefault(linked_agent, []).append(linked_kb)
    return found


def set_knowledge_bases(*, session: Session, agent: Agent, kb_ids: Sequence[uuid.UUID]) -> None:
    """The agent's knowledge bases become `kb_ids` (the service checked they are the
    agent owner's); the agent's row must have been flushed."""
    session.execute(delete(AgentKnowledgeBase).where(col(AgentKnowledgeBase.agent_id) == agent.id))
    add_knowledge_bases(session=session, agent=agent, kb_ids=kb_ids)


def add_knowledge_bases(*, session: Session, agent: Agent, kb_ids: Sequence[uuid.UUID]) -> None:
    """Links the agent to `kb_ids`, which it has no links to yet."""
    if kb_ids:
        rows = [{"agent_id": agent.id, "knowledge_base_id": kb_id} for kb_id in kb_ids]
        session.execute(insert(AgentKnowledgeBase), rows)
