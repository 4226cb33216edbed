"""Citations: the sources an assistant message names with [n], as they read when it was
written. Document and chunk ids are kept without foreign keys, and the title, pages and
quote are copies, so a citation reads the same after its document is deleted."""

import uuid

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from app.core.db import BigIntId

QUOTE_MAX_LENGTH = 500


class Citation(SQLModel, table=True):
    # One row per source number an answer uses; the constraint also serves the lookups
    # of a page of messages' citations by message_id.
    __table_args__ = (UniqueConstraint("message_id", "index"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntId)
    message_id: uuid.UUID = Field(foreign_key="message.id", ondelete="CASCADE")
    run_id: uuid.UUID
    index: int
    document_id: uuid.UUID
    chunk_id: int = Field(sa_type=BigIntId)
    document_title: str = Field(max_length=300)
    page_start: int | None = None
    page_end: int | None = None
    quote: str = Field(max_length=QUOTE_MAX_LENGTH)


class CitationPublic(SQLModel):
    index: int = Field(description="The n of the [n] markers in the answer.")
    document_id: uuid.UUID = Field(description="May name a document deleted since.")
    chunk_id: int
    document_title: str
    page_start: int | None
    page_end: int | None
    quote: str = Field(description=f"The passage, cut to {QUOTE_MAX_LENGTH} characters.")
