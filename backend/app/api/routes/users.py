import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, status

from app.api.deps import (
    CurrentAuth,
    CurrentUser,
    LimitParam,
    RequestContextDep,
    SessionDep,
    SkipParam,
    SuperuserDep,
    ThrottleDep,
)
from app.api.errors import error_responses
from app.core.types import Text
from app.models.auth import LoginSessionsPublic, Notice
from app.models.user import (
    UpdatePassword,
    User,
    UserCreate,
    UserPublic,
    UserRegister,
    UserSort,
    UsersPublic,
    UserUpdate,
    UserUpdateMe,
)
from app.services.user_service import UserService

router = APIRouter(prefix="/users", tags=["users"])

AUTHENTICATED = error_responses(401)
SUPERUSER = error_responses(401, 403)

# ==================== my account ====================


@router.get(
    "/me",
    response_model=UserPublic,
    operation_id="read_user_me",
    summary="Read my account",
    responses=AUTHENTICATED,
)
def read_user_me(current_user: CurrentUser) -> User:
    """The account the access token belongs to."""
    return current_user


@router.patch(
    "/me",
    response_model=UserPublic,
    operation_id="update_user_me",
    summary="Update my account",
    responses=error_responses(400, 401, 409, 429),
)
def update_user_me(
    session: SessionDep,
    throttle: ThrottleDep,
    current_user: CurrentUser,
    context: RequestContextDep,
    user_in: UserUpdateMe,
    background_tasks: BackgroundTasks,
) -> User:
    """Change my name, or my email with my current password (the old address is told)."""
    return UserService.update_me(
        session=session,
        throttle=throttle,
        user=current_user,
        user_in=user_in,
        context=context,
        after_response=background_tasks,
    )


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_user_me",
    summary="Delete my account",
    responses=SUPERUSER,
)
def delete_user_me(
    session: SessionDep, current_user: CurrentUser, context: RequestContextDep
) -> None:
    """Delete my account and everything I own; superusers cannot delete themselves."""
    UserService.delete_me(session=session, user=current_user, context=context)


@router.patch(
    "/me/password",
    response_model=Notice,
    operation_id="update_password_me",
    summary="Change my password",
    responses=error_responses(400, 401, 429),
)
def update_password_me(
    session: SessionDep,
    throttle: ThrottleDep,
    auth: CurrentAuth,
    context: RequestContextDep,
    body: UpdatePassword,
) -> Notice:
    """Change my password; my other sessions are ended."""
    UserService.change_password(
        session=session, throttle=throttle, auth=auth, body=body, context=context
    )
    return Notice(message="Password updated")


@router.get(
    "/me/sessions",
    response_model=LoginSessionsPublic,
    operation_id="list_my_sessions",
    summary="List my sessions",
    responses=AUTHENTICATED,
)
def list_my_sessions(session: SessionDep, auth: CurrentAuth) -> LoginSessionsPublic:
    """My live login sessions, most recently used first."""
    return UserService.list_sessions(session=session, auth=auth)


@router.delete(
    "/me/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="revoke_my_session",
    summary="End one of my sessions",
    responses=error_responses(401, 404),
)
def revoke_my_session(
    session: SessionDep, auth: CurrentAuth, context: RequestContextDep, session_id: uuid.UUID
) -> None:
    """End a login session of mine; its tokens stop working at once."""
    UserService.revoke_my_session(
        session=session, auth=auth, session_id=session_id, context=context
    )


@router.post(
    "/signup",
    response_model=UserPublic,
    status_code=status.HTTP_201_CREATED,
    operation_id="register_user",
    summary="Sign up",
    responses=error_responses(403, 409, 429),
)
def register_user(
    session: SessionDep, throttle: ThrottleDep, context: RequestContextDep, user_in: UserRegister
) -> User:
    """Create an account, when this server has open sign-up."""
    return UserService.signup(session=session, throttle=throttle, user_in=user_in, context=context)


# ==================== superusers ====================


@router.get(
    "",
    response_model=UsersPublic,
    operation_id="list_users",
    summary="List users",
    responses=SUPERUSER,
)
def list_users(
    session: SessionDep,
    _: SuperuserDep,
    skip: SkipParam = 0,
    limit: LimitParam = 50,
    q: Annotated[
        Text | None, Query(max_length=254, description="Part of an email or name.")
    ] = None,
    is_active: bool | None = None,
    is_superuser: bool | None = None,
    sort: Annotated[UserSort, Query(description="A field; '-' first for descending.")] = (
        "-created_at"
    ),
) -> UsersPublic:
    """Every account, filtered, sorted and paged."""
    page = UserService.list_users(
        session=session,
        q=q,
        is_active=is_active,
        is_superuser=is_superuser,
        sort=sort,
        skip=skip,
        limit=limit,
    )
    return UsersPublic.model_validate({"data": page.rows, "count": page.count})


@router.post(
    "",
    response_model=UserPublic,
    status_code=status.HTTP_201_CREATED,
    operation_id="create_user",
    summary="Create a user",
    responses=error_responses(401, 403, 409),
)
def create_user(
    session: SessionDep, actor: SuperuserDep, context: RequestContextDep, user_in: UserCreate
) -> User:
    """Create an account, optionally a superuser."""
    return UserService.create(session=session, actor=actor, user_in=user_in, context=context)


@router.get(
    "/{user_id}",
    response_model=UserPublic,
    operation_id="read_user",
    summary="Read a user",
    responses=error_responses(401, 403, 404),
)
def read_user(session: SessionDep, _: SuperuserDep, user_id: uuid.UUID) -> User:
    """One account."""
    return UserService.get(session=session, user_id=user_id)


@router.patch(
    "/{user_id}",
    response_model=UserPublic,
    operation_id="update_user",
    summary="Update a user",
    responses=error_responses(401, 403, 404, 409),
)
def update_user(
    session: SessionDep,
    actor: SuperuserDep,
    context: RequestContextDep,
    user_id: uuid.UUID,
    user_in: UserUpdate,
    background_tasks: BackgroundTasks,
) -> User:
    """Change an account; deactivation, demotion and a new password end its sessions."""
    return UserService.update(
        session=session,
        actor=actor,
        user_id=user_id,
        user_in=user_in,
        context=context,
        after_response=background_tasks,
    )


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_user",
    summary="Delete a user",
    responses=error_responses(401, 403, 404, 409),
)
def delete_user(
    session: SessionDep, actor: SuperuserDep, context: RequestContextDep, user_id: uuid.UUID
) -> None:
    """Delete an account and what it owns; audit entries about it remain."""
    UserService.delete(session=session, actor=actor, user_id=user_id, context=context)


@router.post(
    "/{user_id}/revoke-sessions",
    response_model=Notice,
    operation_id="revoke_user_sessions",
    summary="End a user's sessions",
    responses=error_responses(401, 403, 404),
)
def revoke_user_sessions(
    session: SessionDep, actor: SuperuserDep, context: RequestContextDep, user_id: uuid.UUID
) -> Notice:
    """End every login session of an account."""
    revoked = UserService.revoke_sessions(
        session=session, actor=actor, user_id=user_id, context=context
    )
    return Notice(message=f"{revoked} session(s) ended")
