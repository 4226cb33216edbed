import uuid
from collections.abc import Sequence
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import RowMapping, Select, String, bindparam, cast, delete, func, insert, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.core.errors import UnprocessableError
from app.crud import text as text_crud
from app.crud.page import (
    Page,
    PageStatements,
    columns_of,
    page_statements,
    read_prebuilt_page,
    read_rows_page,
    rows_of,
)
from app.crud.prebuilt import Viewer, params_for
from app.models.agent import Agent, AgentKnowledgeBase, AgentListQuery
from app.models.user import User

S = TypeVar("S", bound=Select[Any])


def _visible_to(statement: S, user: User | Viewer, *, owner_id: Any = None) -> S:
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


def _usable_by(statement: S, user: User | Viewer) -> S:
    """Which agents a user may talk to: only their own, superusers included."""
    return statement.where(col(Agent.owner_id) == user.id)


@cache
def _agent_by_id(superuser: bool, *, usable: bool) -> SelectOfScalar[Agent]:
    """One agent by id (`agent_id`) as a user of this kind may see it, or use it."""
    statement = select(Agent).where(col(Agent.id) == bindparam("agent_id"))
    viewer = Viewer(is_superuser=superuser)
    return _usable_by(statement, viewer) if usable else _visible_to(statement, viewer)


# An agent's knowledge bases as one column of comma-separated ids (string_agg on
# PostgreSQL, group_concat on SQLite), so that agents are read with their links in one
# statement; `linked_knowledge_base_ids` reads it.
_LINKED = "linked_knowledge_base_ids"
_LINKED_IDS = (
    select(func.aggregate_strings(cast(col(AgentKnowledgeBase.knowledge_base_id), String), ","))
    .where(col(AgentKnowledgeBase.agent_id) == col(Agent.id))
    .scalar_subquery()
    .label(_LINKED)
)


def _agent_columns() -> Select[Any]:
    """An agent's columns and its knowledge bases (`linked_knowledge_base_ids`)."""
    return columns_of(Agent).add_columns(_LINKED_IDS)


def linked_knowledge_base_ids(row: RowMapping) -> list[uuid.UUID]:
    """The knowledge bases of an agent read with `_agent_columns`, ordered by id."""
    linked: str | None = row[_LINKED]
    return sorted(uuid.UUID(text) for text in linked.split(",")) if linked else []


@cache
def _agent_row_by_id(superuser: bool) -> Select[Any]:
    """One agent by id (`agent_id`) and its knowledge bases, as a user of this kind may
    see it."""
    statement = _agent_columns().where(col(Agent.id) == bindparam("agent_id"))
    return _visible_to(statement, Viewer(is_superuser=superuser))


def read_agent(*, session: Session, user: User, agent_id: uuid.UUID) -> RowMapping | None:
    """An agent `user` may see, as a row with its knowledge bases (for answers only)."""
    statement = _agent_row_by_id(user.is_superuser)
    params = params_for(user, agent_id=agent_id)
    return rows_of(session, statement, params).mappings().first()


def get_agent(*, session: Session, user: User, agent_id: uuid.UUID) -> Agent | None:
    statement = _agent_by_id(user.is_superuser, usable=False)
    return session.exec(statement, params=params_for(user, agent_id=agent_id)).first()


def get_usable_agent(*, session: Session, user: User, agent_id: uuid.UUID) -> Agent | None:
    statement = _agent_by_id(user.is_superuser, usable=True)
    return session.exec(statement, params=params_for(user, agent_id=agent_id)).first()


def list_agents(*, session: Session, user: User, query: AgentListQuery) -> Page[RowMapping]:
    """A page of the agents `user` may see, as rows with their knowledge bases (the list
    only shows them)."""
    if not query.q and not query.sort.endswith("name"):  # the usual lists: built once
        statements = _agent_page(user.is_superuser, query.owner_id is not None, query.sort)
        params = params_for(user, owner_id=query.owner_id)
        return read_prebuilt_page(session, statements, params, query=query)
    statement = _visible_to(_agent_columns(), user, owner_id=query.owner_id)
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


@cache
def _agent_page(superuser: bool, by_owner: bool, sort: str) -> PageStatements:
    """The agent list of a user of this kind, maybe of one owner (`owner_id`), in a
    column's order."""
    owner_id: Any = bindparam("owner_id") if by_owner else None
    viewer = Viewer(is_superuser=superuser)
    statement = _visible_to(_agent_columns(), viewer, owner_id=owner_id)
    column = col(getattr(Agent, sort.lstrip("-")))
    order = column.desc() if sort.startswith("-") else column.asc()
    return page_statements(statement, order, col(Agent.id))


# ==================== knowledge bases ====================


_KNOWLEDGE_BASE_IDS = (
    select(col(AgentKnowledgeBase.agent_id), col(AgentKnowledgeBase.knowledge_base_id))
    .where(col(AgentKnowledgeBase.agent_id).in_(bindparam("agent_ids", expanding=True)))
    .order_by(col(AgentKnowledgeBase.agent_id), col(AgentKnowledgeBase.knowledge_base_id))
)


def knowledge_base_ids(
    *, session: Session, agent_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """The knowledge bases of each agent, ordered by id, in one query for a whole page
    (an agent absent from the answer has none)."""
    if not agent_ids:
        return {}
    found: dict[uuid.UUID, list[uuid.UUID]] = {}
    rows = session.exec(_KNOWLEDGE_BASE_IDS, params={"agent_ids": list(agent_ids)}).all()
    for linked_agent, linked_kb in rows:
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
