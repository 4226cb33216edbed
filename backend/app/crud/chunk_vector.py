"""Passages' vectors: stored, counted and searched by cosine similarity.

Every vector is kept as float32 bytes (`ChunkVector.vector`, unit length), and search
compares them exactly with NumPy: SQLite, and PostgreSQL without pgvector. On PostgreSQL
with pgvector (migration 2913deb89658 made the `embedding vector` column) the same vector
is written to `embedding` too, each embedding model has a partial HNSW index on
`(embedding::vector(<dimensions>))`, and search orders by the index.

Either way the owner, the knowledge bases, the model and the document's status are
conditions of the statement that reads the vectors, never a filter applied to its
results: nothing of another owner, another model or an unready document is ever loaded,
and a limit counts only passages the caller may read.
"""

import uuid
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    ColumnElement,
    Engine,
    Float,
    LargeBinary,
    Select,
    Uuid,
    and_,
    bindparam,
    cast,
    column,
    delete,
    false,
    func,
    literal_column,
    or_,
    table,
    text,
)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import UserDefinedType
from sqlmodel import Session, col, select

from app.core import vectors as vector_ops
from app.core.migrations import VECTOR_INDEX_PREFIX
from app.models.ai_model import AIModel
from app.models.document import Chunk, Document, DocumentStatus, SearchHit
from app.models.embedding import ChunkVector
from app.models.user import User

# pgvector 0.6 indexes vectors of at most 2,000 dimensions; longer ones are searched
# exactly, in SQL, without an index.
HNSW_MAX_DIMENSIONS = 2_000
# HNSW filters after the index scan: it finds ef_search candidates, then drops those of
# other knowledge bases, owners or unready documents. More candidates, more survivors.
MIN_EF_SEARCH = 40
MAX_EF_SEARCH = 1_000
# Rows read per round trip by the NumPy search: memory stays bounded on large indexes.
SCAN_BATCH = 2_048


class Passage(Protocol):
    """What a vector is stored for: a chunk, or any row with these."""

    @property
    def id(self) -> int | None: ...
    @property
    def knowledge_base_id(self) -> uuid.UUID: ...
    @property
    def owner_id(self) -> uuid.UUID: ...


class VectorSource(NamedTuple):
    """A knowledge base to search, by the vectors of the model that serves it."""

    knowledge_base_id: uuid.UUID
    model_id: uuid.UUID
    dimensions: int


class _Vector(UserDefinedType[str]):
    """pgvector's `vector` (of `dimensions`, or any): values are its text form, always
    cast explicitly."""

    cache_ok = True

    def __init__(self, dimensions: int | None = None) -> None:
        self.dimensions = dimensions

    def get_col_spec(self, **_kw: Any) -> str:
        return "vector" if self.dimensions is None else f"vector({int(self.dimensions)})"

    def bind_expression(self, bindvalue: Any) -> Any:
        return cast(bindvalue, self)


# PostgreSQL with pgvector only: the column the models do not know.
_EMBEDDING: ColumnElement[str] = literal_column("chunk_vector.embedding", type_=_Vector())
_PG_CHUNK_VECTOR = table(
    "chunk_vector",
    column("chunk_id"),
    column("model_id", Uuid()),
    column("knowledge_base_id", Uuid()),
    column("owner_id", Uuid()),
    column("vector", LargeBinary()),
    column("embedding", _Vector()),
)
Rows = Select[*tuple[Any, ...]]
_WITH_PGVECTOR: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def has_pgvector(session: Session) -> bool:
    """Whether this database is PostgreSQL with chunk_vector.embedding (asked once per
    engine: the column comes with a migration, which runs before the app serves)."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    engine = bind if isinstance(bind, Engine) else bind.engine
    known = _WITH_PGVECTOR.get(engine)
    if known is None:
        found = session.execute(
            text(
                "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('chunk_vector') "
                "AND attname = 'embedding' AND NOT attisdropped"
            )
        ).first()
        known = _WITH_PGVECTOR[engine] = found is not None
    return known


def index_name(model_id: uuid.UUID) -> str:
    return f"{VECTOR_INDEX_PREFIX}{model_id.hex}"


def _dimensions(model: AIModel) -> int:
    if model.dimensions is None:
        raise ValueError(f"model {model.id} has no dimensions: not an embedding model")
    return int(model.dimensions)


def ensure_index(*, session: Session, model: AIModel) -> None:
    """pgvector: the model's partial HNSW index, made if missing (empty models make it in
    an instant; inserts keep it up to date). Only the model's id and dimensions, a UUID
    and an int, are written into the statement."""
    dimensions = _dimensions(model)
    if not has_pgvector(session) or dimensions > HNSW_MAX_DIMENSIONS:
        return
    name = index_name(model.id)
    if session.execute(text("SELECT to_regclass(:name)"), {"name": name}).scalar() is not None:
        return
    # CREATE INDEX IF NOT EXISTS races with itself; a second build of the same model
    # waits here for the first one's commit and then finds the index.
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
    session.execute(
        text(
            f"CREATE INDEX IF NOT EXISTS {name} ON chunk_vector USING hnsw "
            f"((embedding::vector({dimensions})) vector_cosine_ops) "
            f"WHERE model_id = '{uuid.UUID(str(model.id))}'"
        )
    )


def drop_index(*, session: Session, model_id: uuid.UUID) -> None:
    """pgvector: the model's HNSW index goes (the model itself is being deleted)."""
    if has_pgvector(session):
        session.execute(text(f"DROP INDEX IF EXISTS {index_name(uuid.UUID(str(model_id)))}"))


def store(
    *, session: Session, model: AIModel, vectors: Sequence[tuple[Passage, Sequence[float]]]
) -> None:
    """The passages' vectors by `model`, normalised. A passage that has one already keeps
    it: a retried batch stores what is missing and fails on nothing."""
    dimensions = _dimensions(model)
    rows: list[dict[str, Any]] = []
    for passage, values in vectors:
        if passage.id is None:
            raise ValueError("a passage that is not written yet has no vector")
        if len(values) != dimensions:
            raise ValueError(f"a vector of {len(values)} numbers for {dimensions} dimensions")
        rows.append(
            {
                "chunk_id": passage.id,
                "model_id": model.id,
                "knowledge_base_id": passage.knowledge_base_id,
                "owner_id": passage.owner_id,
                "vector": vector_ops.pack(values),
            }
        )
    if not rows:
        return
    if has_pgvector(session):
        ensure_index(session=session, model=model)
        for row in rows:
            row["embedding"] = vector_ops.to_pgvector(vector_ops.unpack(row["vector"], dimensions))
        session.execute(postgresql.insert(_PG_CHUNK_VECTOR).on_conflict_do_nothing(), rows)
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(dialect.insert(ChunkVector).on_conflict_do_nothing(), rows)


def missing(
    *, session: Session, knowledge_base_id: uuid.UUID, model_id: uuid.UUID, limit: int
) -> list[Chunk]:
    """The first `limit` passages, by id, of the knowledge base's ready documents that
    have no vector by `model_id` (documents that could not be embedded are left out)."""
    has_vector = (
        sa_select(col(ChunkVector.chunk_id))
        .where(col(ChunkVector.chunk_id) == col(Chunk.id), col(ChunkVector.model_id) == model_id)
        .exists()
    )
    statement = (
        select(Chunk)
        .join(Document, col(Document.id) == col(Chunk.document_id))
        .where(
            col(Chunk.knowledge_base_id) == knowledge_base_id,
            col(Document.status) == DocumentStatus.READY,
            col(Document.embedding_error_code).is_(None),
            ~has_vector,
        )
        .order_by(col(Chunk.id))
        .limit(limit)
    )
    return list(session.exec(statement))


def progress(
    *,
    session: Session,
    knowledge_base_ids: Sequence[uuid.UUID],
    model_id_by_kb: Mapping[uuid.UUID, uuid.UUID | None],
) -> dict[uuid.UUID, tuple[int, int]]:
    """(passages with a vector by the knowledge base's model, passages) of the ready
    documents of each knowledge base, in one statement. A knowledge base with no model
    named has none embedded."""
    pairs = [
        (kb_id, model_id)
        for kb_id in knowledge_base_ids
        if (model_id := model_id_by_kb.get(kb_id)) is not None
    ]
    of_its_model = (
        or_(
            *(
                and_(
                    col(ChunkVector.knowledge_base_id) == kb_id,
                    col(ChunkVector.model_id) == model_id,
                )
                for kb_id, model_id in pairs
            )
        )
        if pairs
        else false()
    )
    statement = (
        sa_select(
            col(Chunk.knowledge_base_id),
            func.count(col(ChunkVector.chunk_id)),
            func.count(col(Chunk.id)),
        )
        .select_from(Chunk)
        .join(Document, col(Document.id) == col(Chunk.document_id))
        .outerjoin(ChunkVector, and_(col(ChunkVector.chunk_id) == col(Chunk.id), of_its_model))
        .where(
            col(Chunk.knowledge_base_id).in_(knowledge_base_ids),
            col(Document.status) == DocumentStatus.READY,
        )
        .group_by(col(Chunk.knowledge_base_id))
    )
    counts = dict.fromkeys(knowledge_base_ids, (0, 0))
    for kb_id, embedded, total in session.execute(statement):
        counts[kb_id] = (int(embedded), int(total))
    return counts


def delete_others(
    *, session: Session, knowledge_base_id: uuid.UUID, keep_model_id: uuid.UUID | None
) -> None:
    """The knowledge base's vectors of every model but `keep_model_id` (all, if None)."""
    statement = delete(ChunkVector).where(col(ChunkVector.knowledge_base_id) == knowledge_base_id)
    if keep_model_id is not None:
        statement = statement.where(col(ChunkVector.model_id) != keep_model_id)
    session.execute(statement)


def search(
    *,
    session: Session,
    user: User,
    sources: Sequence[VectorSource | tuple[uuid.UUID, uuid.UUID, int]],
    query_vectors: Mapping[uuid.UUID, Sequence[float]],
    limit: int,
) -> list[SearchHit]:
    """The `limit` passages nearest to the query among the caller's own (superusers
    included) in the ready documents of these knowledge bases, each knowledge base by its
    own model's vectors and the query's vector by that model; best first, `score` the
    cosine similarity."""
    if limit < 1:
        return []
    groups: dict[uuid.UUID, tuple[int, list[uuid.UUID]]] = {}
    for kb_id, model_id, dimensions in sources:
        groups.setdefault(model_id, (dimensions, []))[1].append(kb_id)
    pgvector = has_pgvector(session)
    found: list[tuple[float, int]] = []
    for model_id, (dimensions, kb_ids) in groups.items():
        if model_id not in query_vectors:
            raise ValueError(f"no query vector by model {model_id}")
        query = vector_ops.normalise(query_vectors[model_id])
        if query.size != dimensions:
            raise ValueError(f"a query of {query.size} dimensions for {dimensions}")
        nearest = _nearest_in_sql if pgvector else _nearest_in_numpy
        found += nearest(session, _Scope(user, model_id, kb_ids), query, limit)
    found.sort(key=lambda hit: (-hit[0], hit[1]))
    return _hits(session, user, found[:limit])


class _Scope(NamedTuple):
    user: User
    model_id: uuid.UUID
    knowledge_base_ids: list[uuid.UUID]


def _readable(statement: Rows, scope: _Scope, model_id: Any) -> Rows:
    """Vectors of `model_id` of the caller's own passages in these knowledge bases' ready
    documents."""
    return (
        statement.select_from(ChunkVector)
        .join(Chunk, col(Chunk.id) == col(ChunkVector.chunk_id))
        .join(Document, col(Document.id) == col(Chunk.document_id))
        .where(
            col(ChunkVector.model_id) == model_id,
            col(ChunkVector.knowledge_base_id).in_(scope.knowledge_base_ids),
            col(ChunkVector.owner_id) == scope.user.id,
            col(Document.status) == DocumentStatus.READY,
        )
    )


def _nearest_in_numpy(
    session: Session, scope: _Scope, query: npt.NDArray[np.float32], limit: int
) -> list[tuple[float, int]]:
    """Exact: the scoped vectors, read in batches, scored by one product per batch; the
    best of each batch are kept, and the best of those are the best of all."""
    statement = _readable(
        sa_select(col(ChunkVector.chunk_id), col(ChunkVector.vector)), scope, scope.model_id
    ).execution_options(yield_per=SCAN_BATCH)
    found: list[tuple[float, int]] = []
    # Core rows, not the ORM's: a search may read a hundred thousand of them.
    for batch in session.connection().execute(statement).partitions():
        chunk_ids, blobs = zip(*batch, strict=True)
        ids = np.array(chunk_ids, dtype=np.int64)
        matrix = vector_ops.unpack_rows(blobs, query.size)
        scores = vector_ops.similarities(matrix, query)
        found += [(float(scores[i]), int(ids[i])) for i in vector_ops.best(scores, ids, limit)]
    return found


def _nearest_in_sql(
    session: Session, scope: _Scope, query: npt.NDArray[np.float32], limit: int
) -> list[tuple[float, int]]:
    """pgvector: ordered by the model's HNSW index; when its candidates held fewer than
    `limit` readable passages (a small knowledge base among many of the same model), the
    exact order instead, by an expression the index does not serve."""
    literal = vector_ops.to_pgvector(query)
    if query.size <= HNSW_MAX_DIMENSIONS:
        ef_search = min(MAX_EF_SEARCH, max(MIN_EF_SEARCH, 4 * limit))
        session.execute(
            text("SELECT set_config('hnsw.ef_search', :value, true)"), {"value": str(ef_search)}
        )
        statement = _pgvector_statement(scope, _distance(literal, query.size), limit, indexed=True)
        rows = _scored(session, statement)
        if len(rows) >= limit:
            return rows
    exact = _pgvector_statement(scope, _distance(literal, None), limit, indexed=False)
    return _scored(session, exact)


def _distance(literal: str, dimensions: int | None) -> Any:
    """Cosine distance to the query vector `literal`: of `embedding::vector(dimensions)`,
    the expression of the model's HNSW index, or of the bare column (None), which no
    index serves."""
    embedding = _EMBEDDING if dimensions is None else cast(_EMBEDDING, _Vector(dimensions))
    query = bindparam("query", literal, type_=_Vector(dimensions))
    return embedding.op("<=>", return_type=Float())(query)


def _pgvector_statement(scope: _Scope, distance: Any, limit: int, *, indexed: bool) -> Rows:
    # The model's id is written into the statement, as in the index's predicate, so the
    # planner can prove the partial index applies whatever plan it caches.
    model_id = bindparam("model_id", scope.model_id, type_=Uuid(), literal_execute=True)
    statement = _readable(
        sa_select(col(ChunkVector.chunk_id), distance.label("distance")), scope, model_id
    ).where(_EMBEDDING.is_not(None))  # rows stored before the extension was installed
    # An index scan yields the distance order alone: a second sort key would forbid it.
    # (The merge in `search` breaks ties by chunk id.)
    order = (distance,) if indexed else (distance, col(ChunkVector.chunk_id))
    return statement.order_by(*order).limit(limit)


def _scored(session: Session, statement: Rows) -> list[tuple[float, int]]:
    return [
        (1.0 - float(distance), int(chunk_id)) for chunk_id, distance in session.execute(statement)
    ]


def nearest_statement(
    *, user: User, source: VectorSource, query: Sequence[float], limit: int
) -> Rows:
    """The statement `search` runs first on pgvector, for EXPLAIN."""
    literal = vector_ops.to_pgvector(vector_ops.normalise(query))
    scope = _Scope(user, source.model_id, [source.knowledge_base_id])
    return _pgvector_statement(scope, _distance(literal, source.dimensions), limit, indexed=True)


def _hits(session: Session, user: User, found: list[tuple[float, int]]) -> list[SearchHit]:
    """The passages' rows, in the order found, each with its score."""
    if not found:
        return []
    statement = (
        sa_select(*_HIT_COLUMNS)
        .select_from(Chunk)
        .join(Document, col(Document.id) == col(Chunk.document_id))
        .where(
            col(Chunk.id).in_([chunk_id for _, chunk_id in found]),
            col(Chunk.owner_id) == user.id,
            col(Document.status) == DocumentStatus.READY,
        )
    )
    rows = {row.chunk_id: row._mapping for row in session.execute(statement)}
    return [
        SearchHit.model_validate({**rows[chunk_id], "score": score})
        for score, chunk_id in found
        if chunk_id in rows
    ]


_HIT_COLUMNS: tuple[Any, ...] = (
    col(Chunk.id).label("chunk_id"),
    col(Chunk.document_id),
    col(Document.title).label("document_title"),
    col(Chunk.page_start),
    col(Chunk.page_end),
    col(Chunk.heading),
    col(Chunk.text),
)
