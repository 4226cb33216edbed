import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.db import ExactDecimal, UTCDateTime, utcnow

PRICE_PLACES = 6
PROVIDER_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,49}$"


class AIModelBase(SQLModel):
    provider: str = Field(min_length=1, max_length=50, regex=PROVIDER_PATTERN)
    name: str = Field(min_length=1, max_length=200, description="The provider's model id.")
    display_name: str = Field(min_length=1, max_length=200)
    context_window: int = Field(ge=1, le=100_000_000, description="Tokens in and out.")
    max_output_tokens: int = Field(ge=1, le=10_000_000)
    input_price_per_million: Decimal = Field(
        ge=0, max_digits=18, decimal_places=PRICE_PLACES, description="USD per million tokens."
    )
    output_price_per_million: Decimal = Field(
        ge=0, max_digits=18, decimal_places=PRICE_PLACES, description="USD per million tokens."
    )
    is_enabled: bool = True


class AIModel(AIModelBase, table=True):
    __tablename__ = "ai_model"
    __table_args__ = (UniqueConstraint("provider", "name"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    input_price_per_million: Decimal = Field(sa_type=ExactDecimal(18, PRICE_PLACES))
    output_price_per_million: Decimal = Field(sa_type=ExactDecimal(18, PRICE_PLACES))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
