"""Rows for tests, made the way the app makes them. Keyword-only; objects, not ids."""

import uuid
from datetime import timedelta

from sqlmodel import Session

from app.core.db import utcnow
from app.core.security import create_access_token, hash_password
from app.models.auth import LoginSession
from app.models.user import User

PASSWORD = "a long and unusual passphrase"


def create_user(
    session: Session,
    *,
    email: str | None = None,
    password: str = PASSWORD,
    full_name: str | None = None,
    is_superuser: bool = False,
    is_active: bool = True,
) -> User:
    user = User(
        email=email or f"user-{uuid.uuid4().hex[:10]}@example.com",
        full_name=full_name,
        hashed_password=hash_password(password),
        is_superuser=is_superuser,
        is_active=is_active,
    )
    session.add(user)
    session.commit()
    return user


def create_login_session(session: Session, *, user: User) -> LoginSession:
    login_session = LoginSession(user_id=user.id, expires_at=utcnow() + timedelta(days=30))
    session.add(login_session)
    session.commit()
    return login_session


def auth_headers(session: Session, *, user: User) -> dict[str, str]:
    """A bearer header on a fresh login session of `user`, without going through /login."""
    login_session = create_login_session(session, user=user)
    token, _ = create_access_token(user_id=user.id, session_id=login_session.id)
    return {"Authorization": f"Bearer {token}"}
