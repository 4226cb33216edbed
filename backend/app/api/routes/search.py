import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ConfigDep, CurrentUser, LLMDep, SessionDep
from app.api.errors import error_responses
from app.api.routing import OneTripRoute, writes
from app.models.document import SearchQuery, SearchResults
from app.services.search_service import SearchService

router = APIRouter(route_class=OneTripRoute, prefix="/knowledge-bases", tags=["knowledge-bases"])


@router.get(
    "/{kb_id}/search",
    response_model=SearchResults,
    operation_id="search_knowledge_base",
    summary="Search a knowledge base",
    responses=error_responses(401, 402, 404, 409, 503),
)
@writes  # embedding the question is billed: a usage-ledger row
def search_knowledge_base(
    session: SessionDep,
    config: ConfigDep,
    llm: LLMDep,
    current_user: CurrentUser,
    kb_id: uuid.UUID,
    query: Annotated[SearchQuery, Query()],
) -> SearchResults:
    """The passages of my knowledge base's ready documents that best match what I typed:
    by words (`keyword`), by meaning (`semantic`), or both fused (`hybrid`, the default
    when the knowledge base has a semantic index). Embedding the question is billed to
    me; `mode` in the answer says how the passages were found."""
    return SearchService.search(
        session=session, config=config, llm=llm, user=current_user, kb_id=kb_id, query=query
    )
