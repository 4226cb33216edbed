from sqlmodel import Session, col, select

from app.crud.page import Slice, read_slice
from app.models.audit import AuditEntry, AuditEntryListQuery


def add_entry(*, session: Session, entry: AuditEntry) -> None:
    session.add(entry)


def list_entries(
    *, session: Session, query: AuditEntryListQuery, before_id: int | None
) -> Slice[AuditEntry]:
    """Newest first; `before_id` (what the query's cursor names) continues a previous page."""
    statement = select(AuditEntry)
    if query.actor_id is not None:
        statement = statement.where(AuditEntry.actor_id == query.actor_id)
    if query.action is not None:
        statement = statement.where(AuditEntry.action == query.action)
    if query.target_type is not None:
        statement = statement.where(AuditEntry.target_type == query.target_type)
    if query.target_id is not None:
        statement = statement.where(AuditEntry.target_id == query.target_id)
    if query.since is not None:
        statement = statement.where(AuditEntry.created_at >= query.since)
    if query.until is not None:
        statement = statement.where(AuditEntry.created_at < query.until)
    if before_id is not None:
        statement = statement.where(col(AuditEntry.id) < before_id)
    return read_slice(session, statement.order_by(col(AuditEntry.id).desc()), limit=query.limit)
