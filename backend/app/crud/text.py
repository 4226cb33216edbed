"""Matching text without regard to case, for all of Unicode, on both engines."""

from typing import Any

from sqlalchemy import func
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session


def contains_pattern(text: str) -> str:
    """A LIKE pattern, lower-cased, that matches `text` literally (escape "\\")."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def lower(session: Session, expression: Any) -> ColumnElement[Any]:
    """`expression` in lower case, Unicode-aware on either engine (PostgreSQL's lower()
    already is, given a UTF-8 LC_CTYPE)."""
    if session.get_bind().dialect.name == "sqlite":
        # Registered on every SQLite connection by app.core.db: SQLite's own lower()
        # only knows ASCII.
        return func.unicode_lower(expression)
    return func.lower(expression)


def contains(session: Session, expression: Any, text: str) -> ColumnElement[bool]:
    """Whether `expression` holds `text`, ignoring case."""
    return lower(session, expression).like(contains_pattern(text), escape="\\")
