import uuid

from fastapi import APIRouter

from app.api.deps import CurrentUser, SessionDep
from app.api.errors import error_responses
from app.api.routing import OneTripRoute
from app.models.run import Run, RunPublic
from app.services.run_service import RunService

router = APIRouter(route_class=OneTripRoute, prefix="/runs", tags=["runs"])


@router.get(
    "/{run_id}",
    response_model=RunPublic,
    operation_id="read_run",
    summary="Read a run",
    responses=error_responses(401, 404),
)
def read_run(session: SessionDep, current_user: CurrentUser, run_id: uuid.UUID) -> Run:
    """A run's status, timing, attempts and errors (no conversation content)."""
    return RunService.get(session=session, user=current_user, run_id=run_id)


@router.post(
    "/{run_id}/cancel",
    response_model=RunPublic,
    operation_id="cancel_run",
    summary="Cancel a run",
    responses=error_responses(401, 404, 409),
)
def cancel_run(session: SessionDep, current_user: CurrentUser, run_id: uuid.UUID) -> Run:
    """Stop a queued or running run; a provider call already made is still billed."""
    return RunService.cancel(session=session, user=current_user, run_id=run_id)
