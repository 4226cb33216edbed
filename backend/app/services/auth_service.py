"""Logging in and out, refreshing, and recognising who sent a request."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session

from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import AuthenticationError, PermissionDeniedError
from app.core.security import (
    create_access_token,
    decode_access_token,
    hash_token,
    new_opaque_token,
    verify_password,
    waste_password_check,
)
from app.core.throttle import Limit, Throttle
from app.core.types import canonical_email
from app.crud import auth as auth_crud
from app.crud import user as user_crud
from app.models.auth import LoginSession, RefreshToken, TokenPair
from app.models.user import User
from app.services.audit_service import AuditService
from app.services.context import RequestContext

INVALID_CREDENTIALS = "Incorrect email or password"


@dataclass(frozen=True)
class Authenticated:
    user: User
    session_id: uuid.UUID


@dataclass(frozen=True)
class LoginLimits:
    account: Limit
    ip: Limit


def _login_limits(config: Settings) -> LoginLimits:
    window = config.LOGIN_FAILURE_WINDOW_SECONDS
    return LoginLimits(
        account=Limit(attempts=config.LOGIN_MAX_FAILURES_PER_ACCOUNT, window_seconds=window),
        ip=Limit(attempts=config.LOGIN_MAX_FAILURES_PER_IP, window_seconds=window),
    )


class AuthService:
    @staticmethod
    def login(
        *,
        session: Session,
        config: Settings,
        throttle: Throttle,
        email: str,
        password: str,
        context: RequestContext,
    ) -> TokenPair:
        email = canonical_email(email)  # the form sign-up stored it in
        account_key, ip_key = f"login:account:{email}", f"login:ip:{context.ip}"
        limits = _login_limits(config)
        # Every attempt counts before its password is checked, so concurrent guesses get
        # no more checks than the limits, and a locked account is locked for everyone,
        # right password included. A success takes its hits back below.
        throttle.consume(ip_key, limits.ip)
        throttle.consume(account_key, limits.account)

        user = user_crud.get_user_by_email(session=session, email=email)
        if user is None:
            waste_password_check(config=config)
            matches, new_hash = False, None
        else:
            matches, new_hash = verify_password(password, user.hashed_password, config=config)
        if user is None or not matches:
            AuditService.record(
                session=session,
                context=context,
                actor=user,
                action="login.failed",
                target=user,
                details={"email": email, "reason": "invalid_credentials"},
            )
            session.commit()
            raise AuthenticationError(INVALID_CREDENTIALS, code="invalid_credentials")
        if not user.is_active:
            AuditService.record(
                session=session,
                context=context,
                actor=user,
                action="login.failed",
                target=user,
                details={"email": email, "reason": "account_inactive"},
            )
            session.commit()
            raise PermissionDeniedError("This account is deactivated", code="account_inactive")

        throttle.reset(account_key)
        throttle.release(ip_key)  # people behind one address who log in do not use it up
        now = utcnow()
        if new_hash is not None:
            user.hashed_password = new_hash
        user.last_login_at = now
        login_session = LoginSession(
            user_id=user.id,
            expires_at=now + timedelta(days=config.REFRESH_TOKEN_EXPIRE_DAYS),
            user_agent=context.user_agent,
            ip=context.ip,
        )
        session.add(user)
        session.add(login_session)
        refresh_token = _issue_refresh_token(session=session, login_session=login_session)
        AuditService.record(
            session=session,
            context=context,
            actor=user,
            action="login.succeeded",
            target=user,
            details={"session_id": str(login_session.id)},
        )
        session.commit()
        return _token_pair(
            config=config, user=user, login_session=login_session, refresh_token=refresh_token
        )

    @staticmethod
    def refresh(
        *, session: Session, config: Settings, refresh_token: str, context: RequestContext
    ) -> TokenPair:
        token_hash = hash_token(refresh_token)
        now = utcnow()
        if not auth_crud.rotate_refresh_token(session=session, token_hash=token_hash, now=now):
            AuthService._refuse_refresh(session=session, token_hash=token_hash, context=context)
        found = auth_crud.get_refresh_token(session=session, token_hash=token_hash)
        login_session = found.login_session if found is not None else None
        user = (
            user_crud.get_user(session=session, user_id=login_session.user_id)
            if login_session
            else None
        )
        if (
            login_session is None
            or login_session.revoked_at is not None
            or login_session.expires_at <= now
            or user is None
            or not user.is_active
        ):
            session.rollback()
            raise AuthenticationError("Session has ended", code="invalid_refresh_token")
        login_session.last_used_at = now
        login_session.expires_at = now + timedelta(days=config.REFRESH_TOKEN_EXPIRE_DAYS)
        session.add(login_session)
        new_token = _issue_refresh_token(session=session, login_session=login_session)
        session.commit()
        return _token_pair(
            config=config, user=user, login_session=login_session, refresh_token=new_token
        )

    @staticmethod
    def _refuse_refresh(*, session: Session, token_hash: str, context: RequestContext) -> None:
        found = auth_crud.get_refresh_token(session=session, token_hash=token_hash)
        if found is not None and found.token.rotated_at is not None:
            # A rotated token came back: it was copied. End the session it belongs to.
            login_session = found.login_session
            if login_session.revoked_at is None:
                auth_crud.revoke_session_by_id(
                    session=session, session_id=login_session.id, now=utcnow()
                )
                owner = user_crud.get_user(session=session, user_id=login_session.user_id)
                AuditService.record(
                    session=session,
                    context=context,
                    actor=owner,
                    action="refresh_token.reused",
                    target=owner,
                    details={"session_id": str(login_session.id)},
                )
                session.commit()
            raise AuthenticationError(
                "Refresh token was already used; the session has been ended",
                code="refresh_token_reused",
            )
        raise AuthenticationError("Invalid or expired refresh token", code="invalid_refresh_token")

    @staticmethod
    def logout(*, session: Session, auth: Authenticated, context: RequestContext) -> None:
        auth_crud.revoke_session_by_id(session=session, session_id=auth.session_id, now=utcnow())
        AuditService.record(
            session=session,
            context=context,
            actor=auth.user,
            action="logout",
            target=auth.user,
            details={"session_id": str(auth.session_id)},
        )
        session.commit()

    @staticmethod
    def authenticate(*, session: Session, config: Settings, token: str | None) -> Authenticated:
        """The user and login session behind an access token, or 401."""
        claims = decode_access_token(token, config=config) if token else None
        if claims is None:
            raise AuthenticationError("Could not validate credentials", code="invalid_token")
        found = user_crud.get_user_with_login_session(
            session=session, user_id=claims.user_id, session_id=claims.session_id
        )
        if found is None:
            raise AuthenticationError("Could not validate credentials", code="invalid_token")
        if found.revoked_at is not None or found.expires_at <= utcnow():
            raise AuthenticationError("This session has ended", code="session_revoked")
        if not found.user.is_active:
            raise AuthenticationError("This account is deactivated", code="account_inactive")
        return Authenticated(user=found.user, session_id=found.session_id)


def _issue_refresh_token(*, session: Session, login_session: LoginSession) -> str:
    token = new_opaque_token()
    session.add(
        RefreshToken(
            session_id=login_session.id,
            token_hash=hash_token(token),
            expires_at=login_session.expires_at,
        )
    )
    return token


def _token_pair(
    *, config: Settings, user: User, login_session: LoginSession, refresh_token: str
) -> TokenPair:
    access_token, expires_in = create_access_token(
        user_id=user.id, session_id=login_session.id, config=config
    )
    return TokenPair(access_token=access_token, refresh_token=refresh_token, expires_in=expires_in)
