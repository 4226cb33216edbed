import re
from typing import Any

from sqlmodel import Session

from app.core.codes import AuditAction
from app.core.errors import UnprocessableError
from app.crud import audit as audit_crud
from app.crud.page import CursorPage
from app.models.audit import AuditEntry, AuditEntryListQuery
from app.models.user import User
from app.services.context import RequestContext


class AuditService:
    @staticmethod
    def record(
        *,
        session: Session,
        context: RequestContext,
        actor: User | None,
        action: AuditAction | str,
        target: User | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Adds an entry to the caller's transaction: it lands with the change or not at all.
        An `action` that is not an AuditAction raises ValueError at once."""
        if target is not None:
            target_type, target_id = "user", str(target.id)
        audit_crud.add_entry(
            session=session,
            entry=AuditEntry(
                actor_id=actor.id if actor else None,
                actor_email=actor.email if actor else None,
                action=AuditAction(action),
                target_type=target_type,
                target_id=target_id,
                ip=context.ip,
                user_agent=context.user_agent,
                request_id=context.request_id,
                details=details or {},
            ),
        )

    @staticmethod
    def list_entries(*, session: Session, query: AuditEntryListQuery) -> CursorPage[AuditEntry]:
        before_id = _parse_cursor(query.cursor)
        found = audit_crud.list_entries(session=session, query=query, before_id=before_id)
        next_cursor = str(found.rows[-1].id) if found.has_more else None
        return CursorPage(data=found.rows, next_cursor=next_cursor)


_CURSOR = re.compile(r"[0-9]{1,19}")
_MAX_ID = 2**63 - 1  # a BIGINT, and SQLite's INTEGER


def _parse_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    # ASCII digits only (str.isdigit also takes "²"), and no more than the column holds.
    if not _CURSOR.fullmatch(cursor) or int(cursor) > _MAX_ID:
        raise UnprocessableError(
            "cursor is not one this API gave out", loc=("query", "cursor"), code="invalid_cursor"
        )
    return int(cursor)
