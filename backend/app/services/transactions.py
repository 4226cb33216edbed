from collections.abc import Mapping

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.core.db import violation_of
from app.core.errors import ConflictError


def commit_or_conflict(session: Session, conflicts: Mapping[str, ConflictError]) -> None:
    """Commits. A constraint named in `conflicts` that a concurrent request got to first
    becomes its conflict (409) rather than a 500, and nothing of this transaction is kept;
    any other integrity error is raised as it is, for the handler to answer by its kind."""
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        conflict = conflicts.get(violation_of(error).constraint or "")
        if conflict is None:
            raise
        raise conflict from error
