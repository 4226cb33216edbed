from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, status
from pydantic import Field

from app.api.deps import ConfigDep, CurrentAuth, RequestContextDep, SessionDep, ThrottleDep
from app.api.errors import error_responses
from app.api.routing import OneTripRoute
from app.core.types import Input
from app.models.auth import (
    Notice,
    PasswordRecoveryRequest,
    PasswordReset,
    RefreshRequest,
    TokenPair,
)
from app.services.auth_service import AuthService
from app.services.password_recovery_service import PasswordRecoveryService

router = APIRouter(route_class=OneTripRoute, tags=["login"])

RECOVERY_ACCEPTED = "If that account exists, a link to reset its password is on its way."


class LoginForm(Input):
    """OAuth2's password grant, as /docs' Authorize button sends it."""

    username: str = Field(min_length=1, max_length=254, description="The account's email.")
    password: str = Field(min_length=1, max_length=128)
    grant_type: str | None = Field(default=None, pattern="^password$")
    scope: str = Field(default="", max_length=200)
    client_id: str | None = Field(default=None, max_length=200)
    client_secret: str | None = Field(default=None, max_length=200)


@router.post(
    "/login/access-token",
    response_model=TokenPair,
    operation_id="login_access_token",
    summary="Log in",
    responses=error_responses(401, 403, 429),
)
def login_access_token(
    session: SessionDep,
    config: ConfigDep,
    throttle: ThrottleDep,
    context: RequestContextDep,
    form: Annotated[LoginForm, Form()],
) -> TokenPair:
    """Trade an email and password for an access token and a refresh token."""
    return AuthService.login(
        session=session,
        config=config,
        throttle=throttle,
        email=form.username,
        password=form.password,
        context=context,
    )


@router.post(
    "/login/refresh",
    response_model=TokenPair,
    operation_id="refresh_token",
    summary="Refresh tokens",
    responses=error_responses(401),
)
def refresh_token(
    session: SessionDep, config: ConfigDep, context: RequestContextDep, body: RefreshRequest
) -> TokenPair:
    """Trade a refresh token for a new pair; each refresh token works once."""
    return AuthService.refresh(
        session=session, config=config, refresh_token=body.refresh_token, context=context
    )


@router.post(
    "/login/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="logout",
    summary="Log out",
    responses=error_responses(401),
)
def logout(session: SessionDep, auth: CurrentAuth, context: RequestContextDep) -> None:
    """End the current login session; its tokens stop working at once."""
    AuthService.logout(session=session, auth=auth, context=context)


@router.post(
    "/password-recovery",
    response_model=Notice,
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="recover_password",
    summary="Request a password reset",
    responses=error_responses(429),
)
def recover_password(
    session: SessionDep,
    config: ConfigDep,
    throttle: ThrottleDep,
    context: RequestContextDep,
    body: PasswordRecoveryRequest,
    background_tasks: BackgroundTasks,
) -> Notice:
    """Mail a reset link; same answer, in the same time, whether or not the account exists."""
    PasswordRecoveryService.request(
        session=session,
        config=config,
        throttle=throttle,
        email=body.email,
        context=context,
        after_response=background_tasks,
    )
    return Notice(message=RECOVERY_ACCEPTED)


@router.post(
    "/reset-password",
    response_model=Notice,
    operation_id="reset_password",
    summary="Reset a password",
    responses=error_responses(400),
)
def reset_password(
    session: SessionDep, config: ConfigDep, context: RequestContextDep, body: PasswordReset
) -> Notice:
    """Set a new password with a reset link's token; every session is ended."""
    PasswordRecoveryService.reset(
        session=session,
        config=config,
        token=body.token,
        new_password=body.new_password,
        context=context,
    )
    return Notice(message="Password updated; log in with the new one.")
