"""Citations of assistant messages; readable by whoever may read the messages."""

import uuid
from collections.abc import Sequence

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from app.models.citation import Citation

# Built once (crud/prebuilt.py); `message_ids` is expanded into an IN list when it runs.
_OF_MESSAGES = (
    select(Citation)
    .where(col(Citation.message_id).in_(bindparam("message_ids", expanding=True)))
    .order_by(col(Citation.message_id), col(Citation.id))
)


def for_messages(
    *, session: Session, message_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Citation]]:
    """The citations of each message of a page the caller already holds, in order of
    first use, in one query (a message absent from the answer cites nothing)."""
    if not message_ids:
        return {}
    found: dict[uuid.UUID, list[Citation]] = {}
    for citation in session.exec(_OF_MESSAGES, params={"message_ids": list(message_ids)}).all():
        found.setdefault(citation.message_id, []).append(citation)
    return found
