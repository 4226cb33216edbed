"""Forgotten passwords: a single-use, short-lived link by mail."""

from datetime import timedelta

from sqlmodel import Session

from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import BadRequestError
from app.core.security import hash_password, hash_token, new_opaque_token
from app.core.throttle import Limit, Throttle
from app.crud import auth as auth_crud
from app.crud import user as user_crud
from app.models.auth import PasswordResetToken
from app.modules.mail.sender import password_reset_email, send_email
from app.services.audit_service import AuditService
from app.services.context import AfterResponse, RequestContext


class PasswordRecoveryService:
    @staticmethod
    def request(
        *,
        session: Session,
        config: Settings,
        throttle: Throttle,
        email: str,
        context: RequestContext,
        after_response: AfterResponse,
    ) -> None:
        """Counts the request, and leaves everything else (finding the account, issuing a
        link, mailing it) until the response has gone: the answer takes the same time
        whether or not the account exists."""
        window = config.RECOVERY_WINDOW_SECONDS
        throttle.consume(
            f"recovery:ip:{context.ip}",
            Limit(attempts=config.RECOVERY_MAX_PER_IP, window_seconds=window),
        )
        throttle.consume(
            f"recovery:email:{email}",
            Limit(attempts=config.RECOVERY_MAX_PER_EMAIL, window_seconds=window),
        )
        after_response.add_task(
            PasswordRecoveryService.send_link,
            session=session,
            config=config,
            email=email,
            context=context,
        )

    @staticmethod
    def send_link(
        *, session: Session, config: Settings, email: str, context: RequestContext
    ) -> None:
        """Issues a link and mails it, if the address is an active account's."""
        user = user_crud.get_user_by_email(session=session, email=email)
        if user is None or not user.is_active:
            return
        now = utcnow()
        auth_crud.void_reset_tokens(session=session, user=user, now=now)
        token = new_opaque_token()
        session.add(
            PasswordResetToken(
                user_id=user.id,
                token_hash=hash_token(token),
                expires_at=now + timedelta(minutes=config.PASSWORD_RESET_EXPIRE_MINUTES),
            )
        )
        AuditService.record(
            session=session,
            context=context,
            actor=None,
            action="password_reset.requested",
            target=user,
        )
        session.commit()
        send_email(password_reset_email(config=config, to=user.email, token=token), config=config)

    @staticmethod
    def reset(
        *,
        session: Session,
        config: Settings,
        token: str,
        new_password: str,
        context: RequestContext,
    ) -> None:
        now = utcnow()
        user_id = auth_crud.use_reset_token(session=session, token_hash=hash_token(token), now=now)
        user = user_crud.get_user(session=session, user_id=user_id) if user_id else None
        if user is None:
            raise BadRequestError(
                "This reset link is invalid or has expired", code="invalid_reset_token"
            )
        user.hashed_password = hash_password(new_password, config=config)
        user.updated_at = now
        session.add(user)
        auth_crud.void_reset_tokens(session=session, user=user, now=now)
        revoked = auth_crud.revoke_sessions(session=session, user=user, now=now)
        AuditService.record(
            session=session,
            context=context,
            actor=user,
            action="password.reset",
            target=user,
            details={"sessions_revoked": revoked},
        )
        session.commit()
