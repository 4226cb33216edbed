"""Search by meaning, and its fusion with search by words.

A question is embedded by each serving model of the knowledge bases searched (one call
per model, billed to the searcher like any embedding call), then compared with those
models' vectors only (crud.chunk_vector). Hybrid ranking fuses the keyword and the
semantic rankings by reciprocal rank fusion: a passage scores the sum over the rankings
it appears in of 1 / (k + its rank there), k = 60, so agreeing rankings lift a passage
and neither ranking's raw scores need to be comparable. At most a few passages of any
one document are kept, so one long document cannot fill the answer.
"""

import uuid
from collections.abc import Sequence
from decimal import Decimal

from sqlmodel import Session

from app.crud import ai_model as ai_model_crud
from app.crud import chunk_vector as chunk_vector_crud
from app.models.ai_model import AIModel, ModelKind
from app.models.document import SearchHit
from app.models.knowledge_base import KnowledgeBase
from app.models.user import User
from app.modules.llm.client import LLMClient
from app.services import embedding_service
from app.services.embedding_service import ChargedTo
from app.services.quota_service import QuotaService

RRF_K = 60
# Candidates each ranking contributes to a fusion.
CANDIDATES = 50
# The most characters of a question that are embedded (a message may hold 32,000).
MAX_QUESTION_CHARS = 2_000


def serving_models(
    *, session: Session, knowledge_bases: Sequence[KnowledgeBase]
) -> dict[uuid.UUID, AIModel]:
    """The embedding models whose vectors serve these knowledge bases, by id."""
    models: dict[uuid.UUID, AIModel] = {}
    for model_id in {kb.index_model_id for kb in knowledge_bases if kb.index_model_id}:
        model = ai_model_crud.get_model_by_id(session=session, model_id=model_id)
        if model is not None and model.kind == ModelKind.EMBEDDING and model.dimensions:
            models[model.id] = model
    return models


def question_worst_case(*, session: Session, knowledge_bases: Sequence[KnowledgeBase]) -> Decimal:
    """The most embedding a question for these knowledge bases can cost: one call per
    serving model, of MAX_QUESTION_CHARS characters of 4 bytes each, by the estimate."""
    longest = "\U0010ffff" * MAX_QUESTION_CHARS
    models = serving_models(session=session, knowledge_bases=knowledge_bases)
    return sum(
        (embedding_service.estimated_cost(model, [longest]) for model in models.values()),
        Decimal(0),
    )


def semantic_hits(
    *,
    session: Session,
    llm: LLMClient,
    user: User,
    knowledge_bases: Sequence[KnowledgeBase],
    question: str,
    limit: int,
    charged_to: ChargedTo,
    deadline: float | None = None,
) -> list[SearchHit]:
    """The passages nearest in meaning to `question` among the knowledge bases' vectors
    of their serving models. Raises PaymentRequiredError when embedding the question
    does not fit the budget, LLMError when the provider fails; the embedding calls are
    recorded (committed) before the search."""
    models = serving_models(session=session, knowledge_bases=knowledge_bases)
    sources = [
        (kb.id, model.id, model.dimensions or 0)
        for kb in knowledge_bases
        if kb.index_model_id is not None and (model := models.get(kb.index_model_id))
    ]
    if not sources:
        return []
    text = question[:MAX_QUESTION_CHARS]
    # A question's worst case is a few hundred tokens: checked, not reserved.
    worst = sum(
        (embedding_service.estimated_cost(model, [text]) for model in models.values()),
        Decimal(0),
    )
    QuotaService.ensure_room(session=session, user=user, amount=worst)
    # Nothing is written yet: end the read transaction, so that no connection is held
    # while the provider answers.
    session.commit()
    query_vectors: dict[uuid.UUID, list[float]] = {}
    for model in models.values():
        embeddings = llm.embed(
            provider=model.provider,
            model=model.name,
            inputs=[text],
            dimensions=model.dimensions or 0,
            deadline=deadline,
        )
        embedding_service.record(
            session=session, model=model, embeddings=embeddings, charged_to=charged_to
        )
        session.commit()
        query_vectors[model.id] = embeddings.vectors[0]
    return chunk_vector_crud.search(
        session=session, user=user, sources=sources, query_vectors=query_vectors, limit=limit
    )


def fuse(
    rankings: Sequence[Sequence[SearchHit]],
    *,
    limit: int,
    per_document: int | None,
    k: int = RRF_K,
) -> list[SearchHit]:
    """Reciprocal rank fusion of `rankings` (each best first); ties by passage id."""
    scores: dict[int, float] = {}
    hits: dict[int, SearchHit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + 1.0 / (k + rank)
            hits.setdefault(hit.chunk_id, hit)
    return cap(
        [
            hits[chunk_id].model_copy(update={"score": scores[chunk_id]})
            for chunk_id in sorted(scores, key=lambda chunk_id: (-scores[chunk_id], chunk_id))
        ],
        limit=limit,
        per_document=per_document,
    )


def cap(hits: Sequence[SearchHit], *, limit: int, per_document: int | None) -> list[SearchHit]:
    """The first `limit` hits, at most `per_document` of any one document."""
    kept: list[SearchHit] = []
    taken: dict[uuid.UUID, int] = {}
    for hit in hits:
        if per_document is not None and taken.get(hit.document_id, 0) >= per_document:
            continue
        taken[hit.document_id] = taken.get(hit.document_id, 0) + 1
        kept.append(hit)
        if len(kept) == limit:
            break
    return kept
