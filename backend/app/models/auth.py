"""Login sessions, their refresh tokens, and password-reset tokens."""

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from app.core.db import UTCDateTime, utcnow
from app.core.types import Email, Input, NewPassword, Output

TOKEN_HASH_LENGTH = 64  # hex SHA-256


class LoginSession(SQLModel, table=True):
    """One login: every refresh token it issues, and every access token, names it."""

    __tablename__ = "login_session"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    user_agent: str | None = Field(default=None, max_length=255)
    ip: str | None = Field(default=None, max_length=64)


class RefreshToken(SQLModel, table=True):
    """Kept after rotation, so that a replayed token is recognised and ends its session."""

    __tablename__ = "refresh_token"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    session_id: uuid.UUID = Field(foreign_key="login_session.id", index=True, ondelete="CASCADE")
    token_hash: str = Field(max_length=TOKEN_HASH_LENGTH, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    rotated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PasswordResetToken(SQLModel, table=True):
    __tablename__ = "password_reset_token"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="user.id", index=True, ondelete="CASCADE")
    token_hash: str = Field(max_length=TOKEN_HASH_LENGTH, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class TokenPair(Output):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"  # noqa: S105 (OAuth2's name for the scheme)
    expires_in: int = Field(description="Seconds until the access token expires.")


class RefreshRequest(Input):
    refresh_token: str = Field(min_length=1, max_length=512)


class LoginSessionPublic(SQLModel):
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    ip: str | None
    is_current: bool


class LoginSessionsPublic(SQLModel):
    data: list[LoginSessionPublic]


class PasswordRecoveryRequest(Input):
    email: Email


class PasswordReset(Input):
    token: str = Field(min_length=1, max_length=512)
    new_password: NewPassword


class Notice(SQLModel):
    """A one-line notice to the person who asked: `{"message": ...}`."""

    message: str
