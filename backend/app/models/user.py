import uuid
from datetime import datetime
from decimal import Decimal

from sqlmodel import Field, SQLModel

from app.core.db import ExactDecimal, UTCDateTime, utcnow
from app.core.types import (
    EMAIL_MAX_LENGTH,
    Budget,
    Email,
    FullName,
    GivenPassword,
    Input,
    NewPassword,
)


class UserBase(SQLModel):
    email: Email = Field(max_length=EMAIL_MAX_LENGTH)
    full_name: FullName | None = Field(default=None, max_length=255)


class User(UserBase, table=True):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    email: str = Field(max_length=EMAIL_MAX_LENGTH, unique=True, index=True)
    hashed_password: str = Field(max_length=255)
    is_active: bool = True
    is_superuser: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # USD per calendar month (UTC) for runs; null means unlimited.
    monthly_budget_usd: Decimal | None = Field(default=None, sa_type=ExactDecimal(18, 6))


class UserCreate(UserBase, Input):
    """A superuser creates an account."""

    password: NewPassword
    is_active: bool = True
    is_superuser: bool = False


class UserRegister(UserBase, Input):
    """Someone signs up."""

    password: NewPassword


class UserUpdate(Input):
    """A superuser changes an account; absent fields stay as they are."""

    email: Email | None = None
    full_name: FullName | None = None
    password: NewPassword | None = None
    is_active: bool | None = None
    is_superuser: bool | None = None
    monthly_budget_usd: Budget | None = None


class UserUpdateMe(Input):
    email: Email | None = None
    full_name: FullName | None = None
    current_password: GivenPassword | None = Field(
        default=None, description="Required to change the email; checked, never stored."
    )


class UpdatePassword(Input):
    current_password: GivenPassword
    new_password: NewPassword


class UserPublic(UserBase):
    id: uuid.UUID
    is_active: bool
    is_superuser: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    monthly_budget_usd: Decimal | None


class UsersPublic(SQLModel):
    data: list[UserPublic]
    count: int
