"""Accounts: signing up, one's own account, and superusers managing everyone's."""

import secrets
import uuid
from collections.abc import Iterable
from typing import Any

from sqlmodel import Session

from app.core.codes import AuditAction
from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableError,
)
from app.core.security import hash_password, verify_password
from app.core.throttle import Limit, Throttle
from app.core.types import canonical_email
from app.crud import auth as auth_crud
from app.crud import user as user_crud
from app.crud.page import Page
from app.models.auth import LoginSessionPublic
from app.models.user import (
    EMAIL_UNIQUE,
    UpdatePassword,
    User,
    UserCreate,
    UserListQuery,
    UserRegister,
    UserUpdate,
    UserUpdateMe,
)
from app.modules.mail.sender import email_changed_email, password_set_email, send_email
from app.services.audit_service import AuditService
from app.services.auth_service import Authenticated
from app.services.context import AfterResponse, RequestContext
from app.services.transactions import commit_or_conflict


class UserService:
    # ==================== my account ====================

    @staticmethod
    def signup(
        *,
        session: Session,
        config: Settings,
        throttle: Throttle,
        user_in: UserRegister,
        context: RequestContext,
    ) -> User:
        if not config.signup_open:
            raise PermissionDeniedError("Sign-up is closed on this server", code="signup_closed")
        # Every attempt counts, refused ones too: 409s would otherwise list who has an account.
        throttle.consume(
            f"signup:ip:{context.ip}",
            Limit(attempts=config.SIGNUP_MAX_PER_IP, window_seconds=config.SIGNUP_WINDOW_SECONDS),
        )
        user = _new_user(
            session=session,
            config=config,
            email=user_in.email,
            password=user_in.password,
            full_name=user_in.full_name,
        )
        AuditService.record(
            session=session,
            context=context,
            actor=user,
            action="user.created",
            target=user,
            details={"via": "signup"},
        )
        _commit_unique(session)
        return user

    @staticmethod
    def update_me(
        *,
        session: Session,
        config: Settings,
        throttle: Throttle,
        user: User,
        user_in: UserUpdateMe,
        context: RequestContext,
        after_response: AfterResponse,
    ) -> User:
        changes = user_in.model_dump(exclude_unset=True, exclude={"current_password"})
        old_email, new_email = user.email, changes.get("email")
        if new_email is not None and new_email != old_email:
            # An access token alone must not move the account (and its password resets)
            # to another mailbox; checked before the address, which would tell who has one.
            if user_in.current_password is None:
                raise UnprocessableError(
                    "Changing the email needs the current password",
                    loc=("body", "current_password"),
                    code="current_password_required",
                    type="missing",
                    msg="Field required to change the email",
                )
            _prove_password(
                session=session,
                config=config,
                throttle=throttle,
                user=user,
                password=user_in.current_password,
                context=context,
                purpose="email_change",
            )
        _apply(session=session, user=user, changes=changes)
        AuditService.record(
            session=session,
            context=context,
            actor=user,
            action=_update_action(user=user, old_email=old_email),
            target=user,
            details=_update_details(user=user, old_email=old_email, fields=changes),
        )
        _commit_unique(session)
        _notify(config=config, user=user, old_email=old_email, after_response=after_response)
        return user

    @staticmethod
    def change_password(
        *,
        session: Session,
        config: Settings,
        throttle: Throttle,
        auth: Authenticated,
        body: UpdatePassword,
        context: RequestContext,
    ) -> None:
        user = auth.user
        _prove_password(
            session=session,
            config=config,
            throttle=throttle,
            user=user,
            password=body.current_password,
            context=context,
            purpose="password_change",
        )
        if body.new_password == body.current_password:
            raise BadRequestError("The new password is the current one", code="password_unchanged")
        now = utcnow()
        user.hashed_password = hash_password(body.new_password, config=config)
        user.updated_at = now
        session.add(user)
        revoked = auth_crud.revoke_sessions(
            session=session, user=user, now=now, keep=auth.session_id
        )
        auth_crud.void_reset_tokens(session=session, user=user, now=now)
        AuditService.record(
            session=session,
            context=context,
            actor=user,
            action="password.changed",
            target=user,
            details={"sessions_revoked": revoked},
        )
        session.commit()

    @staticmethod
    def delete_me(*, session: Session, user: User, context: RequestContext) -> None:
        if user.is_superuser:
            raise PermissionDeniedError(
                "A superuser cannot delete their own account", code="cannot_modify_self"
            )
        UserService._delete(session=session, actor=user, user=user, context=context)

    @staticmethod
    def list_sessions(*, session: Session, auth: Authenticated) -> Page[LoginSessionPublic]:
        """Every live session, unpaged: the count is the rows'."""
        rows = auth_crud.list_active_sessions(session=session, user=auth.user, now=utcnow())
        data = [
            LoginSessionPublic.model_validate(row, update={"is_current": row.id == auth.session_id})
            for row in rows
        ]
        return Page(data=data, count=len(data))

    @staticmethod
    def revoke_my_session(
        *, session: Session, auth: Authenticated, session_id: uuid.UUID, context: RequestContext
    ) -> None:
        now = utcnow()
        target = auth_crud.get_active_session(
            session=session, user=auth.user, session_id=session_id, now=now
        )
        if target is None:
            raise NotFoundError("Session not found")
        auth_crud.revoke_session_by_id(session=session, session_id=target.id, now=now)
        AuditService.record(
            session=session,
            context=context,
            actor=auth.user,
            action="sessions.revoked",
            target=auth.user,
            details={"session_id": str(target.id)},
        )
        session.commit()

    # ==================== superusers ====================

    @staticmethod
    def list_users(*, session: Session, query: UserListQuery) -> Page[User]:
        return user_crud.list_users(session=session, query=query)

    @staticmethod
    def get(*, session: Session, user_id: uuid.UUID) -> User:
        user = user_crud.get_user(session=session, user_id=user_id)
        if user is None:
            raise NotFoundError("User not found")
        return user

    @staticmethod
    def create(
        *,
        session: Session,
        config: Settings,
        actor: User,
        user_in: UserCreate,
        context: RequestContext,
    ) -> User:
        user = _new_user(
            session=session,
            config=config,
            email=user_in.email,
            password=user_in.password,
            full_name=user_in.full_name,
            is_active=user_in.is_active,
            is_superuser=user_in.is_superuser,
        )
        AuditService.record(
            session=session,
            context=context,
            actor=actor,
            action="user.created",
            target=user,
            details={"is_superuser": user.is_superuser},
        )
        _commit_unique(session)
        return user

    @staticmethod
    def update(
        *,
        session: Session,
        config: Settings,
        actor: User,
        user_id: uuid.UUID,
        user_in: UserUpdate,
        context: RequestContext,
        after_response: AfterResponse,
    ) -> User:
        user = UserService.get(session=session, user_id=user_id)
        old_email = user.email
        changes = user_in.model_dump(exclude_unset=True, exclude={"password"})
        deactivating = user.is_active and changes.get("is_active") is False
        demoting = user.is_superuser and changes.get("is_superuser") is False
        if user.id == actor.id and (deactivating or demoting):
            raise PermissionDeniedError(
                "You cannot deactivate or demote yourself", code="cannot_modify_self"
            )
        guard = user.is_superuser and user.is_active and (deactivating or demoting)
        if guard:
            user_crud.lock_active_superusers(session=session)
        now = utcnow()
        _apply(session=session, user=user, changes=changes)
        revoke_all = deactivating or demoting or user_in.password is not None
        if user_in.password is not None:
            user.hashed_password = hash_password(user_in.password, config=config)
            auth_crud.void_reset_tokens(session=session, user=user, now=now)
        if revoke_all:
            auth_crud.revoke_sessions(session=session, user=user, now=now)
        if guard:
            _ensure_a_superuser_remains(session)
        fields = [*changes, *(["password"] if user_in.password is not None else [])]
        AuditService.record(
            session=session,
            context=context,
            actor=actor,
            action=(
                AuditAction.USER_DEACTIVATED
                if deactivating
                else _update_action(user=user, old_email=old_email)
            ),
            target=user,
            details=_update_details(user=user, old_email=old_email, fields=fields),
        )
        _commit_unique(session)
        _notify(
            config=config,
            user=user,
            old_email=old_email,
            after_response=after_response,
            password_set=user_in.password is not None and user.id != actor.id,
        )
        return user

    @staticmethod
    def delete(
        *, session: Session, actor: User, user_id: uuid.UUID, context: RequestContext
    ) -> None:
        user = UserService.get(session=session, user_id=user_id)
        if user.id == actor.id:
            raise PermissionDeniedError("You cannot delete yourself", code="cannot_modify_self")
        UserService._delete(session=session, actor=actor, user=user, context=context)

    @staticmethod
    def revoke_sessions(
        *, session: Session, actor: User, user_id: uuid.UUID, context: RequestContext
    ) -> int:
        user = UserService.get(session=session, user_id=user_id)
        revoked = auth_crud.revoke_sessions(session=session, user=user, now=utcnow())
        AuditService.record(
            session=session,
            context=context,
            actor=actor,
            action="sessions.revoked",
            target=user,
            details={"sessions_revoked": revoked},
        )
        session.commit()
        return revoked

    @staticmethod
    def ensure_first_superuser(
        *, session: Session, config: Settings
    ) -> tuple[User, str | None] | None:
        """Creates the first superuser when there is none; returns it and any generated
        password (to be shown once). Idempotent."""
        configured = config.first_superuser_email
        if configured is None or user_crud.count_active_superusers(session=session) > 0:
            return None
        email = canonical_email(configured)
        given = config.FIRST_SUPERUSER_PASSWORD
        password = given.get_secret_value() if given else secrets.token_urlsafe(18)
        existing = user_crud.get_user_by_email(session=session, email=email)
        if existing is not None:
            existing.is_superuser = existing.is_active = True
            session.add(existing)
            session.commit()
            return existing, None
        user = User(
            email=email,
            hashed_password=hash_password(password, config=config),
            is_superuser=True,
            full_name="Administrator",
            monthly_budget_usd=config.DEFAULT_MONTHLY_BUDGET_USD,
        )
        session.add(user)
        session.commit()
        return user, None if given else password

    @staticmethod
    def _delete(*, session: Session, actor: User, user: User, context: RequestContext) -> None:
        guard = user.is_superuser and user.is_active
        if guard:
            user_crud.lock_active_superusers(session=session)
        AuditService.record(
            session=session,
            context=context,
            actor=actor,
            action="user.deleted",
            target=user,
            details={"email": user.email},
        )
        session.delete(user)
        session.flush()
        if guard:
            _ensure_a_superuser_remains(session)
        session.commit()


def _new_user(
    *,
    session: Session,
    config: Settings,
    email: str,
    password: str,
    full_name: str | None,
    is_active: bool = True,
    is_superuser: bool = False,
) -> User:
    if user_crud.get_user_by_email(session=session, email=email) is not None:
        raise ConflictError("A user with this email already exists", code="email_taken")
    user = User(
        email=email,
        full_name=full_name,
        hashed_password=hash_password(password, config=config),
        is_active=is_active,
        is_superuser=is_superuser,
        monthly_budget_usd=config.DEFAULT_MONTHLY_BUDGET_USD,
    )
    session.add(user)
    return user


def _prove_password(
    *,
    session: Session,
    config: Settings,
    throttle: Throttle,
    user: User,
    password: str,
    context: RequestContext,
    purpose: str,
) -> None:
    """The current password, or 400. Every attempt counts before the check (so concurrent
    guesses get no more checks than the limit); a right one is taken back."""
    key = f"password:account:{user.id}"
    throttle.consume(
        key,
        Limit(
            attempts=config.PASSWORD_CHANGE_MAX_FAILURES,
            window_seconds=config.PASSWORD_CHANGE_WINDOW_SECONDS,
        ),
    )
    matches, _ = verify_password(password, user.hashed_password, config=config)
    if not matches:
        # Kept: a stolen access token guessing at the password should leave a trace.
        AuditService.record(
            session=session,
            context=context,
            actor=user,
            action="password.check_failed",
            target=user,
            details={"purpose": purpose},
        )
        session.commit()
        raise BadRequestError("The current password is not correct", code="incorrect_password")
    throttle.release(key)


def _update_action(*, user: User, old_email: str) -> AuditAction:
    if user.email != old_email:
        return AuditAction.USER_EMAIL_CHANGED
    return AuditAction.USER_UPDATED


def _update_details(*, user: User, old_email: str, fields: Iterable[str]) -> dict[str, Any]:
    details: dict[str, Any] = {"fields": sorted(fields)}
    if user.email != old_email:
        details |= {"old_email": old_email, "new_email": user.email}
    return details


def _notify(
    *,
    config: Settings,
    user: User,
    old_email: str,
    after_response: AfterResponse,
    password_set: bool = False,
) -> None:
    """Tells the account's owner, at the address it had, of changes they may not have made."""
    if user.email != old_email:
        message = email_changed_email(config=config, to=old_email, new_email=user.email)
        after_response.add_task(send_email, message, config=config)
    if password_set:
        message = password_set_email(config=config, to=old_email)
        after_response.add_task(send_email, message, config=config)


def _apply(*, session: Session, user: User, changes: dict[str, Any]) -> None:
    email = changes.get("email")
    taken = (
        email is not None
        and email != user.email
        and (user_crud.get_user_by_email(session=session, email=email) is not None)
    )
    if taken:
        raise ConflictError("A user with this email already exists", code="email_taken")
    if email is not None and email != user.email:
        # Reset links already mailed went to the old address: they must not outlive it.
        auth_crud.void_reset_tokens(session=session, user=user, now=utcnow())
    user.sqlmodel_update(changes)
    user.updated_at = utcnow()
    session.add(user)


def _ensure_a_superuser_remains(session: Session) -> None:
    session.flush()
    if user_crud.count_active_superusers(session=session) == 0:
        raise ConflictError(
            "The last active superuser cannot be removed, deactivated or demoted",
            code="last_superuser",
        )


def _commit_unique(session: Session) -> None:
    commit_or_conflict(
        session,
        {EMAIL_UNIQUE: ConflictError("A user with this email already exists", code="email_taken")},
    )
