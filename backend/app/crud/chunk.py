"""Chunks: the passages of documents, written by ingestion and read by search.

Search runs on each engine's own full-text index (see the knowledge-base migration): on
SQLite the FTS5 table chunk_fts, ranked by bm25; on PostgreSQL the stored tsvector
`search_vector` (to_tsvector(SEARCH_LANGUAGE, text), written with the passage) and its
GIN index, ranked by ts_rank_cd.
Either way the knowledge bases, the owner and the document's status are conditions of
the one statement that ranks, never a filter applied to its results, so a limit always
counts passages the caller may read.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnClause,
    Select,
    cast,
    column,
    delete,
    func,
    insert,
    literal,
    literal_column,
    table,
    text,
    update,
)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import REGCONFIG
from sqlmodel import Session, col

from app.models.document import Chunk, Document, DocumentStatus, SearchHit
from app.models.user import User

# PostgreSQL only: to_tsvector(language, text), stored beside the passage and indexed by
# ix_chunk_search (migrations 6c1f0e2b9a47, 0b5d2e8f1c37); not a column of the model.
_PG_VECTOR: ColumnClause[Any] = literal_column("chunk.search_vector")
_PG_CHUNK = table(
    "chunk", column("id"), column("document_id"), column("text"), column("search_vector")
)
REINDEX_BATCH = 2_000


def _pg_config(language: str) -> Any:
    return cast(literal(language), REGCONFIG)


_FTS = table("chunk_fts", column("rowid"))
_FTS_MATCH: ColumnClause[Any] = literal_column("chunk_fts")


def replace_chunks(
    *, session: Session, document_id: uuid.UUID, chunks: list[Chunk], language: str
) -> None:
    """The document's chunks become `chunks`, and the full-text index follows: triggers on
    SQLite, the passages' vectors in `language` on PostgreSQL."""
    session.execute(delete(Chunk).where(col(Chunk.document_id) == document_id))
    if not chunks:
        return
    rows = [chunk.model_dump(exclude={"id"}) for chunk in chunks]
    session.execute(insert(Chunk), rows)
    write_search_vectors(session=session, document_ids=[document_id], language=language)


def existing_ids(*, session: Session, chunk_ids: Sequence[int]) -> set[int]:
    """Which of these passages still exist."""
    if not chunk_ids:
        return set()
    statement = sa_select(col(Chunk.id)).where(col(Chunk.id).in_(chunk_ids))
    return {int(chunk_id) for chunk_id in session.execute(statement).scalars()}


def write_search_vectors(
    *, session: Session, document_ids: Sequence[uuid.UUID], language: str
) -> None:
    """PostgreSQL: the vectors, in `language`, of these documents' passages that have
    none yet (SQLite's triggers index a passage as it is written)."""
    if session.get_bind().dialect.name == "sqlite":
        return
    session.execute(
        update(_PG_CHUNK)
        .where(_PG_CHUNK.c.document_id.in_(document_ids), _PG_VECTOR.is_(None))
        .values(search_vector=func.to_tsvector(_pg_config(language), _PG_CHUNK.c.text))
    )


def reindex_batch(*, session: Session, after: int, language: str) -> list[int]:
    """PostgreSQL: the vectors of the next REINDEX_BATCH passages after id `after`
    rewritten in `language`; the ids rewritten."""
    ids = (
        sa_select(_PG_CHUNK.c.id)
        .where(_PG_CHUNK.c.id > after)
        .order_by(_PG_CHUNK.c.id)
        .limit(REINDEX_BATCH)
        .scalar_subquery()
    )
    rewritten = session.execute(
        update(_PG_CHUNK)
        .where(_PG_CHUNK.c.id.in_(ids))
        .values(search_vector=func.to_tsvector(_pg_config(language), _PG_CHUNK.c.text))
        .returning(_PG_CHUNK.c.id)
    ).scalars()
    return list(rewritten)


def language_exists(*, session: Session, language: str) -> bool:
    """PostgreSQL: whether `language` names one of the database's text search
    configurations."""
    found = session.execute(
        text("SELECT 1 FROM pg_ts_config WHERE cfgname = :name"), {"name": language}
    )
    return found.first() is not None


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
    knowledge_base_ids: Sequence[uuid.UUID],
    words: list[str],
    limit: int,
    language: str,
    per_document: int | None = None,
) -> list[SearchHit]:
    """The passages of these knowledge bases' ready documents that hold any of `words`,
    best first, at most `per_document` of any one document; only the caller's own
    (superusers included)."""
    statement = search_statement(
        dialect=session.get_bind().dialect.name,
        user=user,
        knowledge_base_ids=knowledge_base_ids,
        words=words,
        limit=limit,
        language=language,
        per_document=per_document,
    )
    return [SearchHit.model_validate(row._mapping) for row in session.execute(statement)]


def search_statement(
    *,
    dialect: str,
    user: User,
    knowledge_base_ids: Sequence[uuid.UUID],
    words: list[str],
    limit: int,
    language: str = "simple",
    per_document: int | None = None,
) -> Select[Any]:
    """The one ranked, scoped and limited statement of `search`, for `dialect`."""
    if dialect == "sqlite":
        rank: Any = func.bm25(_FTS_MATCH)  # lower is better
        best_first: tuple[Any, ...] = (rank, col(Chunk.id))
        statement = (
            sa_select(*_HIT_COLUMNS, (-rank).label("score"))
            .select_from(_FTS)
            .join(Chunk, col(Chunk.id) == _FTS.c.rowid)
            .where(_FTS_MATCH.op("MATCH")(fts5_query(words)))
        )
    else:
        vector = _PG_VECTOR
        query = func.to_tsquery(_pg_config(language), tsquery(words))
        score = func.ts_rank_cd(vector, query)
        best_first = (score.desc(), col(Chunk.id))
        statement = (
            sa_select(*_HIT_COLUMNS, score.label("score"))
            .select_from(Chunk)
            .where(vector.op("@@")(query))
        )
    statement = statement.join(Document, col(Document.id) == col(Chunk.document_id)).where(
        col(Chunk.knowledge_base_id).in_(knowledge_base_ids),
        col(Chunk.owner_id) == user.id,
        col(Document.status) == DocumentStatus.READY,
    )
    if per_document is None:
        return statement.order_by(*best_first).limit(limit)
    # Each document's passages numbered best first, then the best `per_document` of each.
    ranked = statement.subquery("ranked")
    numbered = sa_select(
        ranked,
        func.row_number()
        .over(
            partition_by=ranked.c.document_id,
            order_by=(ranked.c.score.desc(), ranked.c.chunk_id),
        )
        .label("place"),
    ).subquery("numbered")
    return (
        sa_select(*(numbered.c[name] for name in _HIT_NAMES))
        .where(numbered.c.place <= per_document)
        .order_by(numbered.c.score.desc(), numbered.c.chunk_id)
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
_HIT_NAMES = (
    "chunk_id",
    "document_id",
    "document_title",
    "page_start",
    "page_end",
    "heading",
    "text",
    "score",
)
