"""The model catalog: which models exist, who serves them and what they cost."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, WithJsonSchema, field_validator, model_validator
from sqlalchemy import String, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.db import ExactDecimal, UTCDateTime, utcnow
from app.core.types import PRICE_DIGITS, PRICE_PLACES, Input, Omittable, Output, Patch, Price

PROVIDER_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,49}$"
MAX_DIMENSIONS = 16_000


class ModelKind(StrEnum):
    CHAT = "chat"  # answers conversations; backs agents
    EMBEDDING = "embedding"  # turns passages and questions into vectors for knowledge bases


class AIModelBase(SQLModel):
    provider: str = Field(min_length=1, max_length=50, schema_extra={"pattern": PROVIDER_PATTERN})
    name: str = Field(min_length=1, max_length=200, description="The provider's model id.")
    display_name: str = Field(min_length=1, max_length=200)
    context_window: int = Field(ge=1, le=100_000_000, description="Tokens in and out.")
    max_output_tokens: int = Field(ge=1, le=10_000_000)
    input_price_per_million: Price
    output_price_per_million: Price
    is_enabled: bool = True
    kind: ModelKind = Field(
        default=ModelKind.CHAT,
        sa_type=String(16),
        description="chat models back agents; embedding models index knowledge bases.",
    )
    dimensions: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DIMENSIONS,
        description="Length of an embedding model's vectors; null for chat models.",
    )


PROVIDER_NAME_UNIQUE = "uq_ai_model_provider_name"


class AIModel(AIModelBase, table=True):
    __tablename__ = "ai_model"
    __table_args__ = (UniqueConstraint("provider", "name", name=PROVIDER_NAME_UNIQUE),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    input_price_per_million: Decimal = Field(sa_type=ExactDecimal(PRICE_DIGITS, PRICE_PLACES))
    output_price_per_million: Decimal = Field(sa_type=ExactDecimal(PRICE_DIGITS, PRICE_PLACES))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# ==================== schemas ====================

PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_PLACES)


def _exact_price(value: Decimal) -> Decimal:
    """Every price at exactly PRICE_PLACES places, as the database hands it back, so a
    response reads the same before and after a round trip, on every engine."""
    quantized = value.quantize(PRICE_QUANTUM)
    # "-0" passes ge=0, and SQLite (which stores text) would hand back "-0.000000".
    return quantized.copy_abs() if quantized.is_zero() else quantized


def check_output_fits(*, context_window: int, max_output_tokens: int) -> None:
    if max_output_tokens > context_window:
        raise ValueError(
            f"max_output_tokens ({max_output_tokens}) cannot exceed "
            f"context_window ({context_window})"
        )


class AIModelCreate(AIModelBase, Input):
    """A superuser adds a model to the catalog."""

    @field_validator("input_price_per_million", "output_price_per_million")
    @classmethod
    def _exact(cls, value: Decimal) -> Decimal:
        return _exact_price(value)

    @model_validator(mode="after")
    def _output_fits(self) -> Self:
        check_output_fits(
            context_window=self.context_window, max_output_tokens=self.max_output_tokens
        )
        return self

    @model_validator(mode="after")
    def _dimensions_for_embeddings(self) -> Self:
        if self.kind == ModelKind.EMBEDDING and self.dimensions is None:
            raise ValueError("an embedding model needs its dimensions")
        if self.kind == ModelKind.CHAT and self.dimensions is not None:
            raise ValueError("dimensions are for embedding models only")
        return self


class AIModelUpdate(Patch):
    """A superuser changes a model; absent fields stay as they are (every column is NOT
    NULL, so null is refused). Its kind and dimensions stay what they were created with:
    agents and stored vectors depend on them."""

    provider: Omittable[str] = Field(
        default=None, min_length=1, max_length=50, schema_extra={"pattern": PROVIDER_PATTERN}
    )
    name: Omittable[str] = Field(default=None, min_length=1, max_length=200)
    display_name: Omittable[str] = Field(default=None, min_length=1, max_length=200)
    context_window: Omittable[int] = Field(default=None, ge=1, le=100_000_000)
    max_output_tokens: Omittable[int] = Field(default=None, ge=1, le=10_000_000)
    input_price_per_million: Omittable[Price] = None
    output_price_per_million: Omittable[Price] = None
    is_enabled: Omittable[bool] = None

    @field_validator("input_price_per_million", "output_price_per_million")
    @classmethod
    def _exact(cls, value: Decimal) -> Decimal:
        return _exact_price(value)

    @model_validator(mode="after")
    def _output_fits(self) -> Self:
        # When only one of the two is sent, the service checks it against the row.
        if self.context_window is not None and self.max_output_tokens is not None:
            check_output_fits(
                context_window=self.context_window, max_output_tokens=self.max_output_tokens
            )
        return self


# Prices leave as strings with exactly PRICE_PLACES places ("2.500000"), never as floats;
# the schema says so, so that generated clients do not type them as numbers.
PublicPrice = Annotated[
    Decimal,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": rf"^\d+\.\d{{{PRICE_PLACES}}}$",
            "examples": [str(Decimal("2.5").quantize(PRICE_QUANTUM))],
            "description": "USD per million tokens, as an exact decimal string.",
        }
    ),
]


class AIModelPublic(AIModelBase, Output):
    input_price_per_million: PublicPrice
    output_price_per_million: PublicPrice
    id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    is_configured: bool = Field(
        description="Whether this server has settings (LLM_PROVIDERS) for the provider."
    )


class AIModelsPublic(SQLModel):
    data: list[AIModelPublic]
    count: int


class AIModelListQuery(BaseModel):
    """What `GET /models` lists: its query parameters, as one value."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    include_disabled: bool = Field(
        default=False, description="Also list disabled models; superusers only."
    )


class CatalogFile(Input):
    """A price list for `agentry models import`. Entries are validated one by one by the
    import, so that an error can name the entry."""

    prices_read_on: date
    source: str = Field(min_length=1, max_length=1_000)
    models: list[dict[str, Any]] = Field(max_length=10_000)
