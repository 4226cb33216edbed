import uuid
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, status

from app.api.deps import (
    ConfigDep,
    CurrentAuth,
    CurrentUser,
    RequestContextDep,
    SessionDep,
    SuperuserDep,
    ThrottleDep,
)
from app.api.errors import error_responses
from app.api.routing import OneTripRoute
from app.crud.page import Page
from app.models.auth import LoginSessionPublic, LoginSessionsPublic, Notice
from app.models.user import (
    UpdatePassword,
    User,
    UserCreate,
    UserListQuery,
    UserPublic,
    UserRegister,
    UsersPublic,
    UserUpdate,
    UserUpdateMe,
)
from app.services.user_service import UserService

router = APIRouter(route_class=OneTripRoute, prefix="/users", tags=["users"])

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
    config: ConfigDep,
    throttle: ThrottleDep,
    current_user: CurrentUser,
    context: RequestContextDep,
    user_in: UserUpdateMe,
    background_tasks: BackgroundTasks,
) -> User:
    """Change my name, or my email with my current password (the old address is told)."""
    return UserService.update_me(
        session=session,
        config=config,
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
    config: ConfigDep,
    throttle: ThrottleDep,
    auth: CurrentAuth,
    context: RequestContextDep,
    body: UpdatePassword,
) -> Notice:
    """Change my password; my other sessions are ended."""
    UserService.change_password(
        session=session, config=config, throttle=throttle, auth=auth, body=body, context=context
    )
    return Notice(message="Password updated")


@router.get(
    "/me/sessions",
    response_model=LoginSessionsPublic,
    operation_id="list_my_sessions",
    summary="List my sessions",
    responses=AUTHENTICATED,
)
def list_my_sessions(session: SessionDep, auth: CurrentAuth) -> Page[LoginSessionPublic]:
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
    session: SessionDep,
    config: ConfigDep,
    throttle: ThrottleDep,
    context: RequestContextDep,
    user_in: UserRegister,
) -> User:
    """Create an account, when this server has open sign-up."""
    return UserService.signup(
        session=session, config=config, throttle=throttle, user_in=user_in, context=context
    )


# ==================== superusers ====================


@router.get(
    "",
    response_model=UsersPublic,
    operation_id="list_users",
    summary="List users",
    responses=SUPERUSER,
)
def list_users(
    session: SessionDep, _: SuperuserDep, query: Annotated[UserListQuery, Query()]
) -> Page[User]:
    """Every account, filtered, sorted and paged."""
    return UserService.list_users(session=session, query=query)


@router.post(
    "",
    response_model=UserPublic,
    status_code=status.HTTP_201_CREATED,
    operation_id="create_user",
    summary="Create a user",
    responses=error_responses(401, 403, 409),
)
def create_user(
    session: SessionDep,
    config: ConfigDep,
    actor: SuperuserDep,
    context: RequestContextDep,
    user_in: UserCreate,
) -> User:
    """Create an account, optionally a superuser."""
    return UserService.create(
        session=session, config=config, actor=actor, user_in=user_in, context=context
    )


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
    config: ConfigDep,
    actor: SuperuserDep,
    context: RequestContextDep,
    user_id: uuid.UUID,
    user_in: UserUpdate,
    background_tasks: BackgroundTasks,
) -> User:
    """Change an account; deactivation, demotion and a new password end its sessions."""
    return UserService.update(
        session=session,
        config=config,
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
