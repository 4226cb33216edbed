"""What the rest of the app asks about the catalog: which models there are, whether this
server can call them, and what a call cost.

Queries only: nothing here commits.
"""

import uuid
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)

from sqlalchemy import func
from sqlmodel import Session, col, select

from app.core.config import settings
from app.core.types import COST_PLACES
from app.models.agent import Agent
from app.modules.ai_models.models import AIModel

COST_QUANTUM = Decimal(1).scaleb(-COST_PLACES)
TOKENS_PER_PRICE_UNIT = Decimal(1_000_000)

# Sums and products of token counts and prices are exact: a rounding in them would be a
# bug, so it raises instead of passing silently. Only the final quantize rounds.
_EXACT = Context(prec=80, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
_ROUNDED = Context(prec=80, rounding=ROUND_HALF_UP)


def cost_usd(
    *,
    input_price_per_million: Decimal,
    output_price_per_million: Decimal,
    input_tokens: int,
    output_tokens: int,
) -> Decimal:
    """USD for one call: tokens times the price per million, exact, never a float;
    rounded half up to COST_PLACES places."""
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError("token counts cannot be negative")
    input_cost = _EXACT.multiply(Decimal(input_tokens), input_price_per_million)
    output_cost = _EXACT.multiply(Decimal(output_tokens), output_price_per_million)
    total = _EXACT.divide(_EXACT.add(input_cost, output_cost), TOKENS_PER_PRICE_UNIT)
    return total.quantize(COST_QUANTUM, context=_ROUNDED)


class ModelManager:
    def get_model(self, session: Session, provider: str, name: str) -> AIModel | None:
        statement = select(AIModel).where(AIModel.provider == provider, AIModel.name == name)
        return session.exec(statement).first()

    def get_model_by_id(self, session: Session, model_id: uuid.UUID) -> AIModel | None:
        return session.get(AIModel, model_id)

    def list_available_models(
        self, session: Session, *, include_disabled: bool = False
    ) -> list[AIModel]:
        """By provider, then display name (case-insensitive, as people read a list)."""
        statement = select(AIModel)
        if not include_disabled:
            statement = statement.where(col(AIModel.is_enabled))
        statement = statement.order_by(
            col(AIModel.provider), func.lower(col(AIModel.display_name)), col(AIModel.name)
        )
        return list(session.exec(statement).all())

    def is_in_use(self, session: Session, model: AIModel) -> bool:
        """Whether any agent is bound to the model (and so it may not be deleted)."""
        statement = select(Agent.id).where(Agent.model_id == model.id).limit(1)
        return session.exec(statement).first() is not None

    def cost(self, model: AIModel, *, input_tokens: int, output_tokens: int) -> Decimal:
        """USD for one call to `model` at its current prices."""
        return cost_usd(
            input_price_per_million=model.input_price_per_million,
            output_price_per_million=model.output_price_per_million,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )

    def is_configured(self, provider: str) -> bool:
        """Whether settings name a base URL for the provider, so its models can be called."""
        return provider in settings.LLM_PROVIDERS


model_manager = ModelManager()
