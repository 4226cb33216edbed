"""Usage reports and quotas: mine, and everyone's for superusers."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app.api.deps import CurrentUser, SessionDep, SuperuserDep
from app.api.errors import error_responses
from app.api.routing import OneTripRoute
from app.core.types import Day
from app.models.usage import AdminGroup, QuotaPublic, UsageReport, UserGroup
from app.services.quota_service import QuotaService
from app.services.usage_service import UsageService

router = APIRouter(route_class=OneTripRoute, tags=["usage"])

From = Annotated[Day | None, Query(alias="from", description="First day (UTC).")]
To = Annotated[Day | None, Query(alias="to", description="Last day (UTC), inclusive.")]


@router.get(
    "/users/me/usage",
    response_model=UsageReport,
    operation_id="read_my_usage",
    summary="Read my usage",
    responses=error_responses(401),
)
def read_my_usage(
    session: SessionDep,
    current_user: CurrentUser,
    start: From = None,
    end: To = None,
    group_by: UserGroup = "day",
) -> UsageReport:
    """My tokens and cost per day, model or agent; this month so far by default."""
    return UsageService.report(
        session=session, user_id=current_user.id, start=start, end=end, group_by=group_by
    )


@router.get(
    "/users/me/quota",
    response_model=QuotaPublic,
    operation_id="read_my_quota",
    summary="Read my quota",
    responses=error_responses(401),
)
def read_my_quota(session: SessionDep, current_user: CurrentUser) -> QuotaPublic:
    """My monthly budget, what is spent and reserved, what is left, and when it resets."""
    return QuotaService.status(session=session, user=current_user)


@router.get(
    "/admin/usage",
    response_model=UsageReport,
    operation_id="read_usage_report",
    summary="Read the usage report",
    responses={
        **error_responses(401, 403),
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
    },
)
def read_usage_report(
    session: SessionDep,
    _: SuperuserDep,
    start: From = None,
    end: To = None,
    group_by: AdminGroup = "user",
    format: Literal["json", "csv"] = "json",
) -> UsageReport | Response:
    """Everyone's tokens and cost per user, model, agent or day, as JSON or CSV."""
    report = UsageService.report(
        session=session, user_id=None, start=start, end=end, group_by=group_by
    )
    if format == "csv":
        filename = f"usage-{report.start}-{report.end}-{group_by}.csv"
        return Response(
            UsageService.to_csv(report),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return report
