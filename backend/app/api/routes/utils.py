from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from app.api.deps import SessionDep
from app.api.errors import error_responses
from app.api.routing import OneTripRoute
from app.services.health_service import HealthService

router = APIRouter(route_class=OneTripRoute, prefix="/utils", tags=["utils"])

LIVENESS_PATH = "/utils/health-check"


class HealthStatus(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    status: Literal["ok"] = "ok"


@router.get(
    "/health-check",
    response_model=HealthStatus,
    operation_id="health_check",
    summary="Liveness probe",
)
async def health_check() -> HealthStatus:
    """Answers as long as the process serves requests; touches no database."""
    # async on purpose: a liveness probe must not queue behind busy worker threads.
    return HealthStatus()


@router.get(
    "/readiness",
    response_model=HealthStatus,
    operation_id="readiness_check",
    summary="Readiness probe",
    responses=error_responses(503),
)
def readiness_check(session: SessionDep) -> HealthStatus:
    """Answers once the database does; 503 while it cannot be reached."""
    HealthService.check_database(session=session)
    return HealthStatus()
