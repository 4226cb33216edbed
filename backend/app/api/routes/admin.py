from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import SessionDep, SuperuserDep
from app.api.errors import error_responses
from app.api.routing import OneTripRoute
from app.crud.page import CursorPage
from app.models.audit import AuditEntry, AuditEntryListQuery, AuditLogPublic
from app.services.audit_service import AuditService

router = APIRouter(route_class=OneTripRoute, prefix="/admin", tags=["admin"])


@router.get(
    "/audit-log",
    response_model=AuditLogPublic,
    operation_id="list_audit_log",
    summary="Read the audit log",
    responses=error_responses(401, 403),
)
def list_audit_log(
    session: SessionDep, _: SuperuserDep, query: Annotated[AuditEntryListQuery, Query()]
) -> CursorPage[AuditEntry]:
    """Who did what, newest first; entries are never edited or deleted."""
    return AuditService.list_entries(session=session, query=query)
