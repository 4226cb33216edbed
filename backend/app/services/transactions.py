from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.core.errors import ConflictError


def commit_or_conflict(session: Session, conflict: ConflictError) -> None:
    """Commits; a unique value taken by a concurrent request becomes `conflict` (409)
    rather than a 500, and nothing of this transaction is kept."""
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise conflict from error
