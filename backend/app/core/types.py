"""Field types shared by the schemas: bounded, normalised, safe to take from clients."""

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError
from sqlmodel import SQLModel

T = TypeVar("T")

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
# Monthly budgets are amounts of the same precision as prices: PRICE_DIGITS, PRICE_PLACES.

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


# An address the server sends: stored as `Email` left it, so not checked again (checking
# an address costs more than the rest of a user's answer); the schema is Email's.
StoredEmail = Annotated[
    str, WithJsonSchema({"type": "string", "maxLength": EMAIL_MAX_LENGTH, "format": "email"})
]


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
FullName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=255)]

# ==================== text ====================


def refuse_nul(value: T) -> T:
    """`value`, unless some text in it holds a NUL character, which PostgreSQL cannot
    store (and nothing a person types contains)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise PydanticCustomError("nul_character", "Text may not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_nul(key)
            refuse_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            refuse_nul(item)
    return value


# Every text query parameter has this type; every field of an `Input` is checked alike.
Text = Annotated[str, AfterValidator(refuse_nul)]

# ==================== money ====================

# Decimal inputs are documented as strings, which JSON numbers (binary floats in most
# clients) cannot round: at most PRICE_DIGITS digits, PRICE_PLACES of them after the point.
# A string must match the pattern; a JSON number is still accepted.
DECIMAL_PATTERN = rf"^[0-9]{{1,{PRICE_DIGITS - PRICE_PLACES}}}(\.[0-9]{{1,{PRICE_PLACES}}})?$"
_DECIMAL_TEXT = re.compile(DECIMAL_PATTERN)


def _decimal_text(value: object) -> object:
    if isinstance(value, str) and not _DECIMAL_TEXT.fullmatch(value):
        raise PydanticCustomError(
            "decimal_format", "Write the amount as digits, with at most one point"
        )
    return value


def _usd(description: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "examples": ["2.50"],
            "description": description,
        }
    )


_EXACT_USD = Field(ge=0, max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
# A price per million tokens in USD, and a monthly budget in USD: exact, non-negative.
Price = Annotated[
    Decimal,
    _EXACT_USD,
    BeforeValidator(_decimal_text),
    _usd("USD per million tokens, as a decimal string."),
]
Budget = Annotated[
    Decimal,
    _EXACT_USD,
    BeforeValidator(_decimal_text),
    _usd("USD per calendar month, as a decimal string."),
]

# Amounts the server sends: always a JSON string of plain digits (never an exponent, never
# a number), as many places as the column keeps. Clients add them with a decimal type.
MONEY_PATTERN = rf"^-?[0-9]+(\.[0-9]{{1,{COST_PLACES}}})?$"
Money = Annotated[
    Decimal,
    PlainSerializer(lambda value: format(value, "f"), return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MONEY_PATTERN,
            "examples": ["0.001250000000"],
            "description": "USD, as an exact decimal string.",
        }
    ),
]

# ==================== time ====================

# What every engine stores and Python computes with: a day inside `datetime`'s own range
# at each end, so that moving to UTC or to the next day can never overflow.
EARLIEST_DAY = date(1, 1, 2)
LATEST_DAY = date(9999, 12, 30)


def _out_of_range() -> PydanticCustomError:
    return PydanticCustomError(
        "date_out_of_range",
        "Dates must fall between {earliest} and {latest}",
        {"earliest": EARLIEST_DAY.isoformat(), "latest": LATEST_DAY.isoformat()},
    )


def storable_day(value: date) -> date:
    if not EARLIEST_DAY <= value <= LATEST_DAY:
        raise _out_of_range()
    return value


def storable_instant(value: datetime) -> datetime:
    """`value` in UTC, when the database can hold it and compare with it."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise _out_of_range() from None
    storable_day(utc.date())
    return utc


Day = Annotated[date, AfterValidator(storable_day)]
Instant = Annotated[AwareDatetime, AfterValidator(storable_instant)]

# ==================== input schemas ====================


class _NotNull:
    """Marks a field of a `Patch` that may be left out but not set to null (its column
    cannot hold one): the schema shows no null, and `Patch` refuses it."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        branches = [b for b in json_schema.get("anyOf", ()) if b != {"type": "null"}]
        if "anyOf" not in json_schema or len(branches) != 1:
            return json_schema
        rest = {key: value for key, value in json_schema.items() if key != "anyOf"}
        return {**rest, **branches[0]}


NOT_NULL = _NotNull()
# `name: Omittable[str] = None`: absent means unchanged; null is refused with 422.
Omittable = Annotated[T | None, NOT_NULL]


class Output(SQLModel):
    """Base of response schemas: a field with a default is still always sent, so the
    schema marks every field required (nullable where it can be null), and generated
    clients type none of them as optional."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)  # type: ignore[assignment]

    @classmethod
    def of(cls, row: Mapping[Any, Any], /, **extra: Any) -> Self:
        """The answer for a row's values and `extra` fields, checked by pydantic's core
        directly (SQLModel's model_validate costs twice as much)."""
        return cls.__pydantic_validator__.validate_python({**row, **extra})  # type: ignore[no-any-return]


class Input(SQLModel):
    """Base of every input schema: unknown fields are refused with 422, never ignored, and
    so is text holding a NUL character, in every field, present and future."""

    # SQLModel types its config as its own TypedDict; pydantic's ConfigDict is the same shape.
    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_nul(cls, value: object) -> object:
        return refuse_nul(value)


def _no_defaults(schema: dict[str, Any]) -> None:
    # In a PATCH an absent field stays as it is: it has no default, null least of all.
    for field_schema in schema.get("properties", {}).values():
        field_schema.pop("default", None)


class Patch(Input):
    """Base of every PATCH body. Absent fields stay as they are; null clears a field
    whose column can be empty, and is refused (422) for an `Omittable` one."""

    model_config = ConfigDict(json_schema_extra=_no_defaults)

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: object, info: ValidationInfo) -> object:
        field = cls.model_fields.get(info.field_name or "")
        if value is None and field is not None and NOT_NULL in field.metadata:
            raise PydanticCustomError("null_not_allowed", "May be left out, but not null")
        return value


# ==================== list queries ====================

# The paging bounds every list shares; a list's query type takes them from here.
MAX_PAGE_SIZE = 100
MAX_SKIP = 1_000_000
PageSize = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)]
Limit = Annotated[PageSize, Field(description=f"Rows to return, 1 to {MAX_PAGE_SIZE}.")]
Skip = Annotated[int, Field(ge=0, le=MAX_SKIP, description="Rows to skip.")]


class ListQuery(BaseModel):
    """Base of every list's query: its filters, sort and paging as one value, which the
    route takes from the query string (`Annotated[XListQuery, Query()]`) and hands on
    unchanged to crud, where the query applies it. Its fields are the documented query
    parameters, in order; unknown parameters are ignored, as they always were."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class OffsetListQuery(ListQuery):
    """A list paged by offset, answered with `{data, count}`."""

    skip: Skip = 0
    limit: Limit = 50
