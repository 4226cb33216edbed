"""Threads and their messages: private to their owner, superusers included."""

import uuid
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import RowMapping, Select, and_, bindparam, or_
from sqlmodel import Session, col, select

from app.crud import citation as citation_crud
from app.crud.page import (
    Page,
    Slice,
    columns_of,
    read_page,
    read_prebuilt_slice,
    slice_statement,
)
from app.crud.prebuilt import Viewer, params_for
from app.models.thread import Message, MessageListQuery, Thread, ThreadListQuery
from app.models.user import User

T = TypeVar("T")


class MessageKey(NamedTuple):
    """Where a message sits in a thread's order: what a message cursor names."""

    created_at: datetime
    id: uuid.UUID


S = TypeVar("S", bound=Select[Any])


def _visible_to(statement: S, user: User | Viewer) -> S:
    """The only place that decides whose threads a query sees: one's own, always."""
    return statement.where(col(Thread.owner_id) == user.id)


# One thread by id (`thread_id`), as any user may see it (built once: crud/prebuilt.py).
_THREAD_BY_ID = _visible_to(
    select(Thread).where(col(Thread.id) == bindparam("thread_id")), Viewer(is_superuser=False)
)


def get_thread(*, session: Session, user: User, thread_id: uuid.UUID) -> Thread | None:
    return session.exec(_THREAD_BY_ID, params=params_for(user, thread_id=thread_id)).first()


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
    *,
    session: Session,
    user: User,
    thread_id: uuid.UUID,
    query: MessageListQuery,
    after: MessageKey | None,
) -> Slice[RowMapping] | None:
    """A keyset page of the messages of a thread `user` may see, with their citations
    (`citation_crud.citations_of`), starting strictly after `after` (the key the query's
    cursor names); None if there is no such thread.

    Rows are ordered by (created_at, id) and a page starts strictly after the last row of
    the previous one, so rows inserted meanwhile never shift a page or repeat a row. The
    thread's ownership is checked in the page's own statement; only an empty page costs
    a second one, to tell an empty thread from one that is not there.
    """
    params = params_for(user, thread_id=thread_id)
    if after is not None:
        params.update(after_created_at=after.created_at, after_id=after.id)
    statement = _message_slice(query.order, after is not None)
    found = read_prebuilt_slice(session, statement, params, limit=query.limit)
    if not found.rows and get_thread(session=session, user=user, thread_id=thread_id) is None:
        return None
    return found


@cache
def _message_slice(order: str, after: bool) -> Select[Any]:
    """A thread's messages (`thread_id`) in `order`, maybe after a message's key
    (`after_created_at`, `after_id`); built once per shape (crud/prebuilt.py)."""
    messages = columns_of(Message).add_columns(citation_crud.cited(col(Message.id)))
    statement = _visible_to(
        messages.join(Thread, col(Thread.id) == col(Message.thread_id)),
        Viewer(is_superuser=False),
    ).where(col(Message.thread_id) == bindparam("thread_id"))
    created_at, message_id = col(Message.created_at), col(Message.id)
    if after:
        at: Any = bindparam("after_created_at")
        last_id: Any = bindparam("after_id")
        if order == "asc":
            beyond = or_(created_at > at, and_(created_at == at, message_id > last_id))
        else:
            beyond = or_(created_at < at, and_(created_at == at, message_id < last_id))
        statement = statement.where(beyond)
    if order == "asc":
        statement = statement.order_by(created_at.asc(), message_id.asc())
    else:
        statement = statement.order_by(created_at.desc(), message_id.desc())
    return slice_statement(statement)


def recent_messages(*, session: Session, thread: Thread, limit: int) -> list[Message]:
    """The newest `limit` messages of a thread the caller holds, oldest first."""
    statement = (
        select(Message)
        .where(Message.thread_id == thread.id)
        .order_by(col(Message.created_at).desc(), col(Message.id).desc())
        .limit(limit)
    )
    return list(reversed(session.exec(statement).all()))
