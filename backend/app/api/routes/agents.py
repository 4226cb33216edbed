import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from app.api.deps import CurrentUser, SessionDep
from app.api.errors import error_responses
from app.api.routing import OneTripRoute
from app.crud.page import Page
from app.models.agent import (
    AgentCreate,
    AgentListQuery,
    AgentPublic,
    AgentsPublic,
    AgentUpdate,
)
from app.services.agent_service import AgentService

router = APIRouter(route_class=OneTripRoute, prefix="/agents", tags=["agents"])

# ==================== CRUD ====================


@router.get(
    "",
    response_model=AgentsPublic,
    operation_id="list_agents",
    summary="List agents",
    responses=error_responses(401),
)
def list_agents(
    session: SessionDep, current_user: CurrentUser, query: Annotated[AgentListQuery, Query()]
) -> Page[AgentPublic]:
    """My agents (a superuser's: everyone's), filtered, sorted and paged."""
    return AgentService.list_agents(session=session, user=current_user, query=query)


@router.post(
    "",
    response_model=AgentPublic,
    status_code=status.HTTP_201_CREATED,
    operation_id="create_agent",
    summary="Create an agent",
    responses=error_responses(401),
)
def create_agent(
    session: SessionDep, current_user: CurrentUser, agent_in: AgentCreate
) -> AgentPublic:
    """Create an agent on an enabled model of the catalog, drawing on my knowledge bases."""
    return AgentService.create(session=session, user=current_user, agent_in=agent_in)


@router.get(
    "/{agent_id}",
    response_model=AgentPublic,
    operation_id="read_agent",
    summary="Read an agent",
    responses=error_responses(401, 404),
)
def read_agent(session: SessionDep, current_user: CurrentUser, agent_id: uuid.UUID) -> AgentPublic:
    """One agent of mine (a superuser: anyone's)."""
    return AgentService.read(session=session, user=current_user, agent_id=agent_id)


@router.patch(
    "/{agent_id}",
    response_model=AgentPublic,
    operation_id="update_agent",
    summary="Update an agent",
    responses=error_responses(401, 404),
)
def update_agent(
    session: SessionDep, current_user: CurrentUser, agent_id: uuid.UUID, agent_in: AgentUpdate
) -> AgentPublic:
    """Change an agent's name, model, instructions, settings or knowledge bases."""
    return AgentService.update(
        session=session, user=current_user, agent_id=agent_id, agent_in=agent_in
    )


@router.delete(
    "/{agent_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_agent",
    summary="Delete an agent",
    responses=error_responses(401, 404),
)
def delete_agent(session: SessionDep, current_user: CurrentUser, agent_id: uuid.UUID) -> None:
    """Delete an agent with its threads and their messages."""
    AgentService.delete(session=session, user=current_user, agent_id=agent_id)
