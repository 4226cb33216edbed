"""Field types shared by the schemas: bounded, normalised, safe to take from clients."""

from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, EmailStr, Field, StringConstraints
from sqlmodel import SQLModel

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
EMAIL_MAX_LENGTH = 254

_COMMON_PASSWORDS = frozenset(
    line.strip().lower()
    for line in (Path(__file__).parent / "common_passwords.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)


def _lower(value: str) -> str:
    return value.strip().lower()


def _not_common(value: str) -> str:
    if value.lower() in _COMMON_PASSWORDS:
        raise ValueError("this password is too common; choose another")
    return value


Email = Annotated[EmailStr, StringConstraints(max_length=EMAIL_MAX_LENGTH), AfterValidator(_lower)]
# Length only: no truncation, no character-class rules, common passwords refused.
NewPassword = Annotated[
    str,
    StringConstraints(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH),
    AfterValidator(_not_common),
]
# What a person types to prove who they are: bounded, never judged.
GivenPassword = Annotated[str, StringConstraints(min_length=1, max_length=PASSWORD_MAX_LENGTH)]
# A monthly budget in USD: exact, non-negative, at most cents of a cent.
Budget = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6)]
FullName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)]


class Input(SQLModel):
    """Base of every input schema: unknown fields are refused with 422, never ignored."""

    # SQLModel types its config as its own TypedDict; pydantic's ConfigDict is the same shape.
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]
