"""Queries on accounts. Accounts belong to nobody: who may reach them is the route's rule
(yourself through /users/me, anyone through superuser routes)."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, or_
from sqlmodel import Session, col, select

from app.crud import text as text_crud
from app.crud.page import Page, read_page
from app.models.auth import LoginSession
from app.models.user import User, UserListQuery

_TEXT_SORTS = frozenset({"email", "full_name"})  # people expect "alice" before "Bob"


def get_user(*, session: Session, user_id: uuid.UUID) -> User | None:
    return session.get(User, user_id)


def get_user_by_email(*, session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == email.lower())).first()


@dataclass(frozen=True)
class UserWithSession:
    """A user and the state of one of their login sessions (only what a request checks:
    loading the session as an object too would cost every request for nothing)."""

    user: User
    session_id: uuid.UUID
    revoked_at: datetime | None
    expires_at: datetime


# Built once: every request runs it, and building a statement costs more than running it
# (SQLAlchemy also keeps its cache key with it).
_USER_WITH_LOGIN_SESSION = (
    select(User, LoginSession.revoked_at, LoginSession.expires_at)
    .join(LoginSession, col(LoginSession.user_id) == User.id)
    .where(col(LoginSession.id) == bindparam("session_id"), col(User.id) == bindparam("user_id"))
)


def get_user_with_login_session(
    *, session: Session, user_id: uuid.UUID, session_id: uuid.UUID
) -> UserWithSession | None:
    """Both rows an access token names, in one round trip."""
    params = {"session_id": session_id, "user_id": user_id}
    row = session.exec(_USER_WITH_LOGIN_SESSION, params=params).first()
    if row is None:
        return None
    return UserWithSession(user=row[0], session_id=session_id, revoked_at=row[1], expires_at=row[2])


def list_users(*, session: Session, query: UserListQuery) -> Page[User]:
    statement = select(User)
    if query.q:
        statement = statement.where(
            or_(
                # Emails are stored in lower case already.
                col(User.email).like(text_crud.contains_pattern(query.q), escape="\\"),
                text_crud.contains(session, col(User.full_name), query.q),
            )
        )
    if query.is_active is not None:
        statement = statement.where(User.is_active == query.is_active)
    if query.is_superuser is not None:
        statement = statement.where(User.is_superuser == query.is_superuser)
    field = query.sort.lstrip("-")
    column = col(getattr(User, field))
    key = text_crud.lower(session, column) if field in _TEXT_SORTS else column
    order = key.desc() if query.sort.startswith("-") else key.asc()
    # Nulls last either way, then id, so pages never overlap or skip rows.
    return read_page(session, statement, column.is_(None), order, col(User.id), query=query)


def count_active_superusers(*, session: Session) -> int:
    statement = select(func.count()).where(User.is_superuser, User.is_active)
    return session.exec(statement).one()


def lock_active_superusers(*, session: Session) -> None:
    """Serialises changes that could leave no active superuser (PostgreSQL row locks;
    SQLite takes its single write lock at the first write of the transaction)."""
    session.exec(select(User.id).where(User.is_superuser, User.is_active).with_for_update()).all()
