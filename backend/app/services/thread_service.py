"""Threads and messages. Conversations are personal: nobody but their owner reads them."""

import base64
import binascii
import uuid
from datetime import datetime

from sqlmodel import Session

from app.core.db import utcnow
from app.core.errors import NotFoundError, UnprocessableError
from app.core.types import storable_instant
from app.crud import agent as agent_crud
from app.crud import citation as citation_crud
from app.crud import run as run_crud
from app.crud import thread as thread_crud
from app.crud.page import CursorPage, Page
from app.models.thread import (
    MessageListQuery,
    MessagePublic,
    Thread,
    ThreadCreate,
    ThreadListQuery,
    ThreadUpdate,
)
from app.models.user import User

TITLE_LENGTH = 80


class ThreadService:
    @staticmethod
    def list_threads(*, session: Session, user: User, query: ThreadListQuery) -> Page[Thread]:
        return thread_crud.list_threads(session=session, user=user, query=query)

    @staticmethod
    def get(*, session: Session, user: User, thread_id: uuid.UUID) -> Thread:
        thread = thread_crud.get_thread(session=session, user=user, thread_id=thread_id)
        if thread is None:
            raise NotFoundError("Thread not found")
        return thread

    @staticmethod
    def create(*, session: Session, user: User, thread_in: ThreadCreate) -> Thread:
        agent = agent_crud.get_usable_agent(session=session, user=user, agent_id=thread_in.agent_id)
        if agent is None:
            raise NotFoundError("Agent not found")
        now = utcnow()
        thread = Thread(
            owner_id=user.id,
            agent_id=agent.id,
            title=thread_in.title,
            created_at=now,
            updated_at=now,
            last_message_at=now,
        )
        session.add(thread)
        session.commit()
        return thread

    @staticmethod
    def update(
        *, session: Session, user: User, thread_id: uuid.UUID, thread_in: ThreadUpdate
    ) -> Thread:
        thread = ThreadService.get(session=session, user=user, thread_id=thread_id)
        thread.sqlmodel_update(thread_in.model_dump(exclude_unset=True))
        thread.updated_at = utcnow()
        session.add(thread)
        session.commit()
        return thread

    @staticmethod
    def delete(*, session: Session, user: User, thread_id: uuid.UUID) -> None:
        thread = ThreadService.get(session=session, user=user, thread_id=thread_id)
        # A run whose provider call is in flight keeps its row and its reservation until
        # the call returns and is billed; every other run goes with the thread.
        run_crud.cancel_active(session=session, now=utcnow(), thread_id=thread.id)
        run_crud.delete_settled(session=session, thread_id=thread.id)
        session.delete(thread)  # its messages go with it (ON DELETE CASCADE)
        session.commit()

    @staticmethod
    def list_messages(
        *, session: Session, user: User, thread_id: uuid.UUID, query: MessageListQuery
    ) -> CursorPage[MessagePublic]:
        try:
            after = _decode_cursor(query.cursor) if query.cursor else None
        except UnprocessableError:
            ThreadService.get(session=session, user=user, thread_id=thread_id)  # 404 first
            raise
        found = thread_crud.list_messages(
            session=session, user=user, thread_id=thread_id, query=query, after=after
        )
        if found is None:
            raise NotFoundError("Thread not found")
        last = found.rows[-1] if found.rows else None
        next_cursor = (
            _encode_cursor(last["created_at"], last["id"]) if last and found.has_more else None
        )
        data = [
            MessagePublic.of(row, citations=citation_crud.citations_of(row)) for row in found.rows
        ]
        return CursorPage(data=data, next_cursor=next_cursor)


def title_from(content: str) -> str:
    words = " ".join(content.split())
    return words if len(words) <= TITLE_LENGTH else words[: TITLE_LENGTH - 1].rstrip() + "…"


def _encode_cursor(created_at: datetime, message_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{message_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> thread_crud.MessageKey:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, message_id = raw.split("|")
        created_at = datetime.fromisoformat(at)
        if created_at.tzinfo is None:
            raise ValueError("naive")
        # A forged cursor may name any instant; only those the database can hold pass.
        return thread_crud.MessageKey(
            created_at=storable_instant(created_at), id=uuid.UUID(message_id)
        )
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise UnprocessableError(
            "cursor is not one this API gave out", loc=("query", "cursor"), code="invalid_cursor"
        ) from error
