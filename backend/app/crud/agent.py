import uuid
from typing import TypeVar

from sqlalchemy import func, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.crud import text as text_crud
from app.crud.page import Page
from app.models.agent import Agent, AgentSort
from app.models.user import User

T = TypeVar("T")


def _visible_to(
    statement: SelectOfScalar[T], user: User, *, owner_id: uuid.UUID | None = None
) -> SelectOfScalar[T]:
    """Which agents a user may see: their own; superusers every agent, or one owner's."""
    if user.is_superuser:
        return statement if owner_id is None else statement.where(Agent.owner_id == owner_id)
    return statement.where(Agent.owner_id == user.id)


def _usable_by(statement: SelectOfScalar[T], user: User) -> SelectOfScalar[T]:
    """Which agents a user may talk to: only their own, superusers included."""
    return statement.where(Agent.owner_id == user.id)


def get_agent(*, session: Session, user: User, agent_id: uuid.UUID) -> Agent | None:
    return session.exec(_visible_to(select(Agent).where(Agent.id == agent_id), user)).first()


def get_usable_agent(*, session: Session, user: User, agent_id: uuid.UUID) -> Agent | None:
    return session.exec(_usable_by(select(Agent).where(Agent.id == agent_id), user)).first()


def list_agents(
    *,
    session: Session,
    user: User,
    q: str | None,
    owner_id: uuid.UUID | None,
    sort: AgentSort,
    skip: int,
    limit: int,
) -> Page[Agent]:
    statement = _visible_to(select(Agent), user, owner_id=owner_id)
    if q:
        statement = statement.where(
            or_(
                text_crud.contains(session, col(Agent.name), q),
                text_crud.contains(session, col(Agent.description), q),
            )
        )
    count = session.exec(select(func.count()).select_from(statement.subquery())).one()
    field = sort.lstrip("-")
    key = (
        text_crud.lower(session, col(Agent.name)) if field == "name" else col(getattr(Agent, field))
    )
    order = key.desc() if sort.startswith("-") else key.asc()
    page = statement.order_by(order, col(Agent.id)).offset(skip).limit(limit)
    return Page(rows=session.exec(page).all(), count=count)
