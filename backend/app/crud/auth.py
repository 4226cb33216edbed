"""Login sessions, refresh tokens and password-reset tokens."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.models.auth import LoginSession, PasswordResetToken, RefreshToken
from app.models.user import User


def _of(user: User) -> ColumnElement[bool]:
    """The only place that decides whose login sessions a statement touches: one's own."""
    return col(LoginSession.user_id) == user.id


def _sessions_of(user: User) -> SelectOfScalar[LoginSession]:
    return select(LoginSession).where(_of(user))


def list_active_sessions(*, session: Session, user: User, now: datetime) -> list[LoginSession]:
    statement = _sessions_of(user).where(
        col(LoginSession.revoked_at).is_(None), LoginSession.expires_at > now
    )
    return list(session.exec(statement.order_by(col(LoginSession.last_used_at).desc())).all())


def get_active_session(
    *, session: Session, user: User, session_id: uuid.UUID, now: datetime
) -> LoginSession | None:
    statement = _sessions_of(user).where(
        LoginSession.id == session_id,
        col(LoginSession.revoked_at).is_(None),
        LoginSession.expires_at > now,
    )
    return session.exec(statement).first()


def revoke_sessions(
    *, session: Session, user: User, now: datetime, keep: uuid.UUID | None = None
) -> int:
    """Revokes the user's live sessions (all but `keep`); returns how many."""
    statement = (
        update(LoginSession)
        .where(_of(user), col(LoginSession.revoked_at).is_(None))
        .values(revoked_at=now)
    )
    if keep is not None:
        statement = statement.where(col(LoginSession.id) != keep)
    return session.execute(statement).rowcount  # type: ignore[attr-defined, no-any-return]


def revoke_session_by_id(*, session: Session, session_id: uuid.UUID, now: datetime) -> None:
    session.execute(
        update(LoginSession)
        .where(col(LoginSession.id) == session_id, col(LoginSession.revoked_at).is_(None))
        .values(revoked_at=now)
    )


def rotate_refresh_token(*, session: Session, token_hash: str, now: datetime) -> bool:
    """Marks a live token used, atomically: of two concurrent rotations one wins."""
    result = session.execute(
        update(RefreshToken)
        .where(
            col(RefreshToken.token_hash) == token_hash,
            col(RefreshToken.rotated_at).is_(None),
            col(RefreshToken.expires_at) > now,
        )
        .values(rotated_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RefreshTokenWithSession:
    token: RefreshToken
    login_session: LoginSession


def get_refresh_token(*, session: Session, token_hash: str) -> RefreshTokenWithSession | None:
    statement = (
        select(RefreshToken, LoginSession)
        .join(LoginSession, col(LoginSession.id) == RefreshToken.session_id)
        .where(RefreshToken.token_hash == token_hash)
    )
    row = session.exec(statement).first()
    return RefreshTokenWithSession(token=row[0], login_session=row[1]) if row is not None else None


def void_reset_tokens(*, session: Session, user: User, now: datetime) -> None:
    """Any earlier reset link stops working (a newer one was sent, or the password changed)."""
    session.execute(
        update(PasswordResetToken)
        .where(
            col(PasswordResetToken.user_id) == user.id,
            col(PasswordResetToken.used_at).is_(None),
        )
        .values(used_at=now)
    )


def use_reset_token(*, session: Session, token_hash: str, now: datetime) -> uuid.UUID | None:
    """Spends a live reset token, atomically; returns whose it was."""
    token = session.exec(
        select(PasswordResetToken).where(PasswordResetToken.token_hash == token_hash)
    ).first()
    if token is None:
        return None
    result = session.execute(
        update(PasswordResetToken)
        .where(
            col(PasswordResetToken.id) == token.id,
            col(PasswordResetToken.used_at).is_(None),
            col(PasswordResetToken.expires_at) > now,
        )
        .values(used_at=now)
    )
    return token.user_id if result.rowcount else None  # type: ignore[attr-defined]
