import uuid
from datetime import datetime

from sqlmodel import Session, col, select

from app.models.audit import AuditEntry


def add_entry(*, session: Session, entry: AuditEntry) -> None:
    session.add(entry)


def list_entries(
    *,
    session: Session,
    actor_id: uuid.UUID | None,
    action: str | None,
    target_type: str | None,
    target_id: str | None,
    since: datetime | None,
    until: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[AuditEntry]:
    """Newest first; `before_id` continues a previous page."""
    statement = select(AuditEntry)
    if actor_id is not None:
        statement = statement.where(AuditEntry.actor_id == actor_id)
    if action is not None:
        statement = statement.where(AuditEntry.action == action)
    if target_type is not None:
        statement = statement.where(AuditEntry.target_type == target_type)
    if target_id is not None:
        statement = statement.where(AuditEntry.target_id == target_id)
    if since is not None:
        statement = statement.where(AuditEntry.created_at >= since)
    if until is not None:
        statement = statement.where(AuditEntry.created_at < until)
    if before_id is not None:
        statement = statement.where(col(AuditEntry.id) < before_id)
    return list(session.exec(statement.order_by(col(AuditEntry.id).desc()).limit(limit)).all())
