"""Field types shared by the schemas: bounded, normalised, safe to take from clients."""

from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, EmailStr, Field, StringConstraints
from sqlmodel import SQLModel

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
EMAIL_MAX_LENGTH = 254

# Money is exact decimal USD. Prices are per million tokens; costs carry COST_PLACES
# places in columns of COST_DIGITS digits, wide enough for the cost of MAX_REPORTED_TOKENS
# in and out at the highest price the catalog accepts (10**21 USD needs 22 of their 26
# integer digits), so no price and token count that storage takes can overflow it.
PRICE_DIGITS = 18
PRICE_PLACES = 6
COST_DIGITS = 38
COST_PLACES = 12
# Token counts a provider reports are recorded up to this; beyond it they are clamped.
MAX_REPORTED_TOKENS = 10**15

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
Budget = Annotated[Decimal, Field(ge=0, max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)]
FullName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)]


class Input(SQLModel):
    """Base of every input schema: unknown fields are refused with 422, never ignored."""

    # SQLModel types its config as its own TypedDict; pydantic's ConfigDict is the same shape.
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]
