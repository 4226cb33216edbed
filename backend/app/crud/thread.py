"""Threads and their messages: private to their owner, superusers included."""

import uuid
from datetime import datetime
from typing import TypeVar

from sqlalchemy import and_, func, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.crud.page import Page
from app.models.thread import Message, MessageOrder, Thread, ThreadSort
from app.models.user import User

T = TypeVar("T")


def _visible_to(statement: SelectOfScalar[T], user: User) -> SelectOfScalar[T]:
    """The only place that decides whose threads a query sees: one's own, always."""
    return statement.where(Thread.owner_id == user.id)


def get_thread(*, session: Session, user: User, thread_id: uuid.UUID) -> Thread | None:
    return session.exec(_visible_to(select(Thread).where(Thread.id == thread_id), user)).first()


def list_threads(
    *,
    session: Session,
    user: User,
    agent_id: uuid.UUID | None,
    is_archived: bool | None,
    sort: ThreadSort,
    skip: int,
    limit: int,
) -> Page[Thread]:
    statement = _visible_to(select(Thread), user)
    if agent_id is not None:
        statement = statement.where(Thread.agent_id == agent_id)
    if is_archived is not None:
        statement = statement.where(Thread.is_archived == is_archived)
    count = session.exec(select(func.count()).select_from(statement.subquery())).one()
    column = col(getattr(Thread, sort.lstrip("-")))
    order = column.desc() if sort.startswith("-") else column.asc()
    page = statement.order_by(order, col(Thread.id)).offset(skip).limit(limit)
    return Page(rows=session.exec(page).all(), count=count)


def list_messages(
    *,
    session: Session,
    thread: Thread,
    after: tuple[datetime, uuid.UUID] | None,
    order: MessageOrder,
    limit: int,
) -> list[Message]:
    """A keyset page of a thread's messages (the thread must come from get_thread).

    Rows are ordered by (created_at, id) and a page starts strictly after the last row of
    the previous one, so rows inserted meanwhile never shift a page or repeat a row.
    """
    statement = select(Message).where(Message.thread_id == thread.id)
    created_at, message_id = col(Message.created_at), col(Message.id)
    if after is not None:
        at, last_id = after
        if order == "asc":
            beyond = or_(created_at > at, and_(created_at == at, message_id > last_id))
        else:
            beyond = or_(created_at < at, and_(created_at == at, message_id < last_id))
        statement = statement.where(beyond)
    if order == "asc":
        statement = statement.order_by(created_at.asc(), message_id.asc())
    else:
        statement = statement.order_by(created_at.desc(), message_id.desc())
    return list(session.exec(statement.limit(limit)).all())


def recent_messages(*, session: Session, thread: Thread, limit: int) -> list[Message]:
    """The newest `limit` messages of a thread the caller holds, oldest first."""
    statement = (
        select(Message)
        .where(Message.thread_id == thread.id)
        .order_by(col(Message.created_at).desc(), col(Message.id).desc())
        .limit(limit)
    )
    return list(reversed(session.exec(statement).all()))
