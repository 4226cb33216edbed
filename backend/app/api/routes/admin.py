import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import SessionDep, SuperuserDep
from app.api.errors import error_responses
from app.core.types import Instant, Text
from app.models.audit import AuditLogPublic
from app.services.audit_service import AuditService

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get(
    "/audit-log",
    response_model=AuditLogPublic,
    operation_id="list_audit_log",
    summary="Read the audit log",
    responses=error_responses(401, 403),
)
def list_audit_log(
    session: SessionDep,
    _: SuperuserDep,
    actor_id: uuid.UUID | None = None,
    action: Annotated[Text | None, Query(max_length=64)] = None,
    target_type: Annotated[Text | None, Query(max_length=32)] = None,
    target_id: Annotated[Text | None, Query(max_length=64)] = None,
    since: Annotated[Instant | None, Query(description="From this time on.")] = None,
    until: Annotated[Instant | None, Query(description="Before this time.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[
        Text | None, Query(max_length=32, description="next_cursor of a page.")
    ] = None,
) -> AuditLogPublic:
    """Who did what, newest first; entries are never edited or deleted."""
    return AuditService.list_entries(
        session=session,
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        since=since,
        until=until,
        cursor=cursor,
        limit=limit,
    )
