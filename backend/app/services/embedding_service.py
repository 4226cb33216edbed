"""Embedding calls, priced and billed like chat calls.

Every call whose provider reports usage adds one ledger row of kind `embedding`, charged
to the knowledge base's owner, at the model's input price, exactly as chat calls are;
a call that reports no usage (some local servers) costs nothing and adds no row. Before
a call its worst case (the token estimate of chat: UTF-8 bytes / 3 + 4 per input) must
fit what is left of the owner's budget.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlmodel import Session

from app.core.pricing import cost_usd
from app.core.types import MAX_REPORTED_TOKENS
from app.crud import usage as usage_crud
from app.models.ai_model import AIModel
from app.models.usage import UsageEntry, UsageKind
from app.modules.llm.client import Embeddings
from app.modules.llm.context import estimate_tokens


def estimated_cost(model: AIModel, texts: Sequence[str]) -> Decimal:
    """The most embedding `texts` can cost, by the token estimate."""
    tokens = sum(estimate_tokens(text) for text in texts)
    return cost_usd(
        input_price_per_million=model.input_price_per_million,
        output_price_per_million=Decimal(0),
        input_tokens=tokens,
        output_tokens=0,
    )


@dataclass(frozen=True)
class ChargedTo:
    """Whom and what an embedding call is billed to."""

    user_id: uuid.UUID
    knowledge_base_id: uuid.UUID | None
    run_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    thread_id: uuid.UUID | None = None


def record(
    *, session: Session, model: AIModel, embeddings: Embeddings, charged_to: ChargedTo
) -> UsageEntry | None:
    """The call's ledger row, added to `session` (not committed); None when the provider
    reported no usage."""
    if embeddings.input_tokens is None:
        return None
    tokens = min(embeddings.input_tokens, MAX_REPORTED_TOKENS)
    entry = UsageEntry(
        user_id=charged_to.user_id,
        kind=UsageKind.EMBEDDING,
        knowledge_base_id=charged_to.knowledge_base_id,
        run_id=charged_to.run_id,
        agent_id=charged_to.agent_id,
        thread_id=charged_to.thread_id,
        model_id=model.id,
        model_provider=model.provider,
        model_name=model.name,
        input_tokens=tokens,
        output_tokens=0,
        input_price_per_million=model.input_price_per_million,
        output_price_per_million=Decimal(0),
        cost_usd=cost_usd(
            input_price_per_million=model.input_price_per_million,
            output_price_per_million=Decimal(0),
            input_tokens=tokens,
            output_tokens=0,
        ),
    )
    usage_crud.add_entry(session=session, entry=entry)
    return entry
