"""Field types shared by the schemas: bounded, normalised, safe to take from clients."""

import unicodedata
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
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


def normalise_email(value: str) -> str:
    """NFC, then lower case (local part and domain): the form addresses are kept in."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value.strip()).lower())


def _one_identity(value: str) -> str:
    email = normalise_email(value)
    # Compatibility forms (full-width letters, ligatures, ...) read as the plain letters
    # they stand for: refused, so no address can pass for another one.
    if normalise_email(unicodedata.normalize("NFKC", email)) != email:
        raise ValueError(
            "write every character in its plain form (no full-width letters or ligatures)"
        )
    return email


def _not_common(value: str) -> str:
    if value.lower() in _COMMON_PASSWORDS:
        raise ValueError("this password is too common; choose another")
    return value


# Sign-up, admin creation, email change and recovery all take this type, and login looks
# accounts up with `canonical_email`: one address, one form, one account.
Email = Annotated[
    EmailStr, StringConstraints(max_length=EMAIL_MAX_LENGTH), AfterValidator(_one_identity)
]
_EMAIL = TypeAdapter(Email)


def canonical_email(value: str) -> str:
    """`value` as `Email` would store it (IDNA domain, NFC, lower case); text that is no
    valid address, which no account can have, is only normalised."""
    try:
        return _EMAIL.validate_python(value)
    except ValidationError:
        return normalise_email(value)


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
