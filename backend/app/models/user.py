import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from sqlmodel import Field, SQLModel

from app.core.db import ExactDecimal, UTCDateTime, utcnow
from app.core.types import (
    EMAIL_MAX_LENGTH,
    PRICE_DIGITS,
    PRICE_PLACES,
    Budget,
    Email,
    FullName,
    GivenPassword,
    Input,
    Money,
    NewPassword,
    OffsetListQuery,
    Omittable,
    Output,
    Patch,
    StoredEmail,
    Text,
)


class UserBase(SQLModel):
    email: Email = Field(max_length=EMAIL_MAX_LENGTH)
    full_name: FullName | None = Field(default=None, max_length=255)


# The unique index on user.email, by the name the naming convention gives it.
EMAIL_UNIQUE = "ix_user_email"


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
    monthly_budget_usd: Decimal | None = Field(
        default=None, sa_type=ExactDecimal(PRICE_DIGITS, PRICE_PLACES)
    )


class UserCreate(UserBase, Input):
    """A superuser creates an account."""

    password: NewPassword
    is_active: bool = True
    is_superuser: bool = False


class UserRegister(UserBase, Input):
    """Someone signs up."""

    password: NewPassword


class UserUpdate(Patch):
    """A superuser changes an account; absent fields stay as they are."""

    email: Omittable[Email] = None
    full_name: FullName | None = None
    password: Omittable[NewPassword] = None
    is_active: Omittable[bool] = None
    is_superuser: Omittable[bool] = None
    monthly_budget_usd: Budget | None = Field(default=None, description="null: unlimited.")


class UserUpdateMe(Patch):
    email: Omittable[Email] = None
    full_name: FullName | None = None
    current_password: Omittable[GivenPassword] = Field(
        default=None, description="Required to change the email; checked, never stored."
    )


class UpdatePassword(Input):
    current_password: GivenPassword
    new_password: NewPassword


class UserPublic(UserBase, Output):
    email: StoredEmail
    id: uuid.UUID
    is_active: bool
    is_superuser: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    monthly_budget_usd: Money | None


# The orders the user list offers: a field, '-' first for descending.
UserSort = Literal[
    "created_at",
    "-created_at",
    "email",
    "-email",
    "full_name",
    "-full_name",
    "last_login_at",
    "-last_login_at",
]


class UserListQuery(OffsetListQuery):
    """`GET /users`: which accounts, in what order, which page."""

    q: Text | None = Field(default=None, max_length=254, description="Part of an email or name.")
    is_active: bool | None = None
    is_superuser: bool | None = None
    sort: UserSort = Field(default="-created_at", description="A field; '-' first for descending.")


class UsersPublic(SQLModel):
    data: list[UserPublic]
    count: int
