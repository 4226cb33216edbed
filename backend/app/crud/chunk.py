"""Chunks: the passages of documents, written by ingestion and read by search.

Search runs on each engine's own full-text index (see the knowledge-base migration): on
SQLite the FTS5 table chunk_fts, ranked by bm25; on PostgreSQL the GIN index over
to_tsvector('simple', text), ranked by ts_rank_cd. Either way the knowledge base, the
owner and the document's status are conditions of the one statement that ranks, never a
filter applied to its results, so a limit always counts passages the caller may read.
"""

import uuid
from typing import Any

from sqlalchemy import (
    ColumnClause,
    Select,
    column,
    delete,
    func,
    insert,
    literal_column,
    table,
)
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from app.models.document import Chunk, Document, DocumentStatus, SearchHit
from app.models.knowledge_base import KnowledgeBase
from app.models.user import User

# Written exactly as the index ix_chunk_search is, so that PostgreSQL uses it.
_PG_CONFIG: ColumnClause[Any] = literal_column("'simple'::regconfig")
_FTS = table("chunk_fts", column("rowid"))
_FTS_MATCH: ColumnClause[Any] = literal_column("chunk_fts")


def replace_chunks(*, session: Session, document_id: uuid.UUID, chunks: list[Chunk]) -> None:
    """The document's chunks become `chunks` (the full-text index follows on both
    engines: triggers on SQLite, the expression index on PostgreSQL)."""
    session.execute(delete(Chunk).where(col(Chunk.document_id) == document_id))
    if chunks:
        rows = [chunk.model_dump(exclude={"id"}) for chunk in chunks]
        session.execute(insert(Chunk), rows)


def fts5_query(words: list[str]) -> str:
    """Any of `words`, each a quoted FTS5 string: no word is ever read as syntax."""
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in words)


def tsquery(words: list[str]) -> str:
    """Any of `words`, each a quoted tsquery lexeme: no word is ever read as an operator."""
    return " | ".join("'" + word.replace("\\", "\\\\").replace("'", "''") + "'" for word in words)


def search(
    *,
    session: Session,
    user: User,
    knowledge_base: KnowledgeBase,
    words: list[str],
    limit: int,
) -> list[SearchHit]:
    """The passages of `knowledge_base`'s ready documents that hold any of `words`, best
    first; only the caller's own (superusers included)."""
    statement = search_statement(
        dialect=session.get_bind().dialect.name,
        user=user,
        knowledge_base=knowledge_base,
        words=words,
        limit=limit,
    )
    return [SearchHit.model_validate(row._mapping) for row in session.execute(statement)]


def search_statement(
    *, dialect: str, user: User, knowledge_base: KnowledgeBase, words: list[str], limit: int
) -> Select[Any]:
    """The one ranked, scoped and limited statement of `search`, for `dialect`."""
    if dialect == "sqlite":
        rank: Any = func.bm25(_FTS_MATCH)
        statement = (
            sa_select(*_HIT_COLUMNS, (-rank).label("score"))
            .select_from(_FTS)
            .join(Chunk, col(Chunk.id) == _FTS.c.rowid)
            .where(_FTS_MATCH.op("MATCH")(fts5_query(words)))
            .order_by(rank, col(Chunk.id))
        )
    else:
        vector = func.to_tsvector(_PG_CONFIG, col(Chunk.text))
        query = func.to_tsquery(_PG_CONFIG, tsquery(words))
        rank = func.ts_rank_cd(vector, query)
        statement = (
            sa_select(*_HIT_COLUMNS, rank.label("score"))
            .select_from(Chunk)
            .where(vector.op("@@")(query))
            .order_by(rank.desc(), col(Chunk.id))
        )
    return (
        statement.join(Document, col(Document.id) == col(Chunk.document_id))
        .where(
            col(Chunk.knowledge_base_id) == knowledge_base.id,
            col(Chunk.owner_id) == user.id,
            col(Document.status) == DocumentStatus.READY,
        )
        .limit(limit)
    )


_HIT_COLUMNS: tuple[Any, ...] = (
    col(Chunk.id).label("chunk_id"),
    col(Chunk.document_id),
    col(Document.title).label("document_title"),
    col(Chunk.page_start),
    col(Chunk.page_end),
    col(Chunk.heading),
    col(Chunk.text),
)
