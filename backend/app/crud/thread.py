"""Threads and their messages: private to their owner, superusers included."""

import uuid
from datetime import datetime
from typing import NamedTuple, TypeVar

from sqlalchemy import RowMapping, and_, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.crud.page import Page, Slice, columns_of, read_page, read_rows_slice
from app.models.thread import Message, MessageListQuery, Thread, ThreadListQuery
from app.models.user import User

T = TypeVar("T")


class MessageKey(NamedTuple):
    """Where a message sits in a thread's order: what a message cursor names."""

    created_at: datetime
    id: uuid.UUID


def _visible_to(statement: SelectOfScalar[T], user: User) -> SelectOfScalar[T]:
    """The only place that decides whose threads a query sees: one's own, always."""
    return statement.where(Thread.owner_id == user.id)


def get_thread(*, session: Session, user: User, thread_id: uuid.UUID) -> Thread | None:
    return session.exec(_visible_to(select(Thread).where(Thread.id == thread_id), user)).first()


def list_threads(*, session: Session, user: User, query: ThreadListQuery) -> Page[Thread]:
    statement = _visible_to(select(Thread), user)
    if query.agent_id is not None:
        statement = statement.where(Thread.agent_id == query.agent_id)
    if query.is_archived is not None:
        statement = statement.where(Thread.is_archived == query.is_archived)
    column = col(getattr(Thread, query.sort.lstrip("-")))
    order = column.desc() if query.sort.startswith("-") else column.asc()
    return read_page(session, statement, order, col(Thread.id), query=query)


def list_messages(
    *, session: Session, thread: Thread, query: MessageListQuery, after: MessageKey | None
) -> Slice[RowMapping]:
    """A keyset page of a thread's messages (the thread must come from get_thread),
    starting strictly after `after` (the key the query's cursor names).

    Rows are ordered by (created_at, id) and a page starts strictly after the last row of
    the previous one, so rows inserted meanwhile never shift a page or repeat a row.
    """
    statement = columns_of(Message).where(col(Message.thread_id) == thread.id)
    created_at, message_id = col(Message.created_at), col(Message.id)
    if after is not None:
        at, last_id = after.created_at, after.id
        if query.order == "asc":
            beyond = or_(created_at > at, and_(created_at == at, message_id > last_id))
        else:
            beyond = or_(created_at < at, and_(created_at == at, message_id < last_id))
        statement = statement.where(beyond)
    if query.order == "asc":
        statement = statement.order_by(created_at.asc(), message_id.asc())
    else:
        statement = statement.order_by(created_at.desc(), message_id.desc())
    return read_rows_slice(session, statement, limit=query.limit)


def recent_messages(*, session: Session, thread: Thread, limit: int) -> list[Message]:
    """The newest `limit` messages of a thread the caller holds, oldest first."""
    statement = (
        select(Message)
        .where(Message.thread_id == thread.id)
        .order_by(col(Message.created_at).desc(), col(Message.id).desc())
        .limit(limit)
    )
    return list(reversed(session.exec(statement).all()))
