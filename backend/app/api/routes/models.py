import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from app.api.deps import ConfigDep, CurrentUser, RequestContextDep, SessionDep, SuperuserDep
from app.api.errors import error_responses
from app.api.routing import OneTripRoute
from app.crud.page import Page
from app.models.ai_model import (
    AIModelCreate,
    AIModelListQuery,
    AIModelPublic,
    AIModelsPublic,
    AIModelUpdate,
)
from app.services.ai_model_service import AIModelService

router = APIRouter(route_class=OneTripRoute, prefix="/models", tags=["models"])

# ==================== everyone signed in ====================


@router.get(
    "",
    response_model=AIModelsPublic,
    operation_id="list_models",
    summary="List models",
    responses=error_responses(401, 403),
)
def list_models(
    session: SessionDep,
    current_user: CurrentUser,
    config: ConfigDep,
    query: Annotated[AIModelListQuery, Query()],
) -> Page[AIModelPublic]:
    """The models agents can use, by provider then display name, with prices per million tokens."""
    return AIModelService.list_models(
        session=session, user=current_user, query=query, providers=config.LLM_PROVIDERS
    )


@router.get(
    "/{model_id}",
    response_model=AIModelPublic,
    operation_id="read_model",
    summary="Read a model",
    responses=error_responses(401, 404),
)
def read_model(
    session: SessionDep, current_user: CurrentUser, config: ConfigDep, model_id: uuid.UUID
) -> AIModelPublic:
    """One model; a disabled one only for superusers."""
    return AIModelService.get(
        session=session, user=current_user, model_id=model_id, providers=config.LLM_PROVIDERS
    )


# ==================== superusers ====================


@router.post(
    "",
    response_model=AIModelPublic,
    status_code=status.HTTP_201_CREATED,
    operation_id="create_model",
    summary="Add a model",
    responses=error_responses(401, 403, 409),
)
def create_model(
    session: SessionDep,
    actor: SuperuserDep,
    context: RequestContextDep,
    config: ConfigDep,
    model_in: AIModelCreate,
) -> AIModelPublic:
    """Add a model to the catalog; a provider's model names are unique."""
    return AIModelService.create(
        session=session,
        actor=actor,
        model_in=model_in,
        context=context,
        providers=config.LLM_PROVIDERS,
    )


@router.patch(
    "/{model_id}",
    response_model=AIModelPublic,
    operation_id="update_model",
    summary="Update a model",
    responses=error_responses(401, 403, 404, 409),
)
def update_model(
    session: SessionDep,
    actor: SuperuserDep,
    context: RequestContextDep,
    config: ConfigDep,
    model_id: uuid.UUID,
    model_in: AIModelUpdate,
) -> AIModelPublic:
    """Change a model's names, limits or prices, or disable it to retire it."""
    return AIModelService.update(
        session=session,
        actor=actor,
        model_id=model_id,
        model_in=model_in,
        context=context,
        providers=config.LLM_PROVIDERS,
    )


@router.delete(
    "/{model_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_model",
    summary="Delete a model",
    responses=error_responses(401, 403, 404, 409),
)
def delete_model(
    session: SessionDep, actor: SuperuserDep, context: RequestContextDep, model_id: uuid.UUID
) -> None:
    """Delete a model no agent uses; disable one that is in use instead."""
    AIModelService.delete(session=session, actor=actor, model_id=model_id, context=context)
