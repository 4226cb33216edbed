import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ConfigDep, CurrentUser, SessionDep
from app.api.errors import error_responses
from app.models.document import SearchQuery, SearchResults
from app.services.search_service import SearchService

router = APIRouter(prefix="/knowledge-bases", tags=["knowledge-bases"])


@router.get(
    "/{kb_id}/search",
    response_model=SearchResults,
    operation_id="search_knowledge_base",
    summary="Search a knowledge base",
    responses=error_responses(401, 404),
)
def search_knowledge_base(
    session: SessionDep,
    config: ConfigDep,
    current_user: CurrentUser,
    kb_id: uuid.UUID,
    query: Annotated[SearchQuery, Query()],
) -> SearchResults:
    """The passages of my knowledge base's ready documents that best match what I typed."""
    return SearchService.search(
        session=session, config=config, user=current_user, kb_id=kb_id, query=query
    )
