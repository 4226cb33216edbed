"""What a call cost: tokens times prices, exact, never a float. Pure arithmetic."""

from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)

from app.core.types import COST_PLACES

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
