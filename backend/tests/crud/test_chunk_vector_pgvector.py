"""crud.chunk_vector on PostgreSQL with pgvector (a server the tests start, see
tests/pgvector_server.py): the migration's column, the models' HNSW indexes, and search
by the index that still returns the exact nearest passages where the index alone would
come up short."""

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import Engine, insert, text
from sqlmodel import Session, col, select

from app.core import vectors
from app.crud import chunk_vector as chunk_vector_crud
from app.models.ai_model import AIModel, ModelKind
from app.models.document import Chunk, DocumentStatus
from app.models.knowledge_base import KnowledgeBase
from app.models.user import User
from tests.core.test_migrations import differences
from tests.factories import create_ai_model, create_document, create_knowledge_base, create_user
from tests.pgvector_server import pgvector_database

DIMENSIONS = 64
LIMIT = 10


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with pgvector_database() as pgvector_engine:
        yield pgvector_engine


@dataclass
class Corpus:
    """Committed once for the module: ~2,000 random vectors of one model, most of them in
    one big knowledge base."""

    owner: User
    model: AIModel
    other_model: AIModel
    big: KnowledgeBase  # 1,500 passages
    small: KnowledgeBase  # 40 passages, and 10 of a document being processed
    mostly_unready: KnowledgeBase  # 12 ready passages, 300 being processed
    theirs: KnowledgeBase  # another owner's, 150 passages
    # chunk id -> unit vector, of the ready passages of each knowledge base
    ready: dict[uuid.UUID, dict[int, npt.NDArray[np.float64]]]


def create_embedding_model(db: Session, *, dimensions: int = DIMENSIONS) -> AIModel:
    model = create_ai_model(
        db, input_price_per_million=Decimal("0.02"), output_price_per_million=Decimal("0")
    )
    model.kind = ModelKind.EMBEDDING
    model.dimensions = dimensions
    db.add(model)
    db.commit()
    return model


def add_passages(
    db: Session,
    *,
    knowledge_base: KnowledgeBase,
    count: int,
    status: DocumentStatus = DocumentStatus.READY,
) -> list[Chunk]:
    document = create_document(
        db, knowledge_base=knowledge_base, status=status, data=uuid.uuid4().bytes
    )
    db.execute(
        insert(Chunk),
        [
            {
                "document_id": document.id,
                "knowledge_base_id": knowledge_base.id,
                "owner_id": knowledge_base.owner_id,
                "ordinal": n,
                "text": f"passage {n}",
                "char_start": 0,
                "char_end": 9,
            }
            for n in range(count)
        ],
    )
    statement = select(Chunk).where(col(Chunk.document_id) == document.id).order_by(col(Chunk.id))
    return list(db.exec(statement))


@pytest.fixture(scope="module")
def corpus(engine: Engine) -> Corpus:
    rng = np.random.default_rng(2026)
    with Session(engine, expire_on_commit=False) as db:
        owner = create_user(db)
        model = create_embedding_model(db)
        other_model = create_embedding_model(db)
        kbs = {
            name: create_knowledge_base(db, owner=owner, name=name)
            for name in ("big", "small", "mostly_unready")
        }
        theirs = create_knowledge_base(db, owner=create_user(db), name="theirs")
        layout = [
            (kbs["big"], 1_500, DocumentStatus.READY),
            (kbs["small"], 40, DocumentStatus.READY),
            (kbs["small"], 10, DocumentStatus.PROCESSING),
            (kbs["mostly_unready"], 12, DocumentStatus.READY),
            (kbs["mostly_unready"], 300, DocumentStatus.PROCESSING),
            (theirs, 150, DocumentStatus.READY),
        ]
        ready: dict[uuid.UUID, dict[int, npt.NDArray[np.float64]]] = {}
        for kb, count, status in layout:
            passages = add_passages(db, knowledge_base=kb, count=count, status=status)
            matrix = rng.standard_normal((count, DIMENSIONS))
            chunk_vector_crud.store(
                session=db, model=model, vectors=list(zip(passages, matrix.tolist(), strict=True))
            )
            if status == DocumentStatus.READY:
                units = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
                ready.setdefault(kb.id, {}).update(
                    {p.id: unit for p, unit in zip(passages, units, strict=True) if p.id}
                )
        # The small knowledge base's passages by another model, all very near any query
        # of that model: they must never reach a search by `model`.
        small_passages = list(
            db.exec(select(Chunk).where(col(Chunk.knowledge_base_id) == kbs["small"].id))
        )
        chunk_vector_crud.store(
            session=db,
            model=other_model,
            vectors=[(p, [1.0] * DIMENSIONS) for p in small_passages],
        )
        db.commit()
        db.execute(text("ANALYZE"))
        db.commit()
        return Corpus(
            owner=owner,
            model=model,
            other_model=other_model,
            big=kbs["big"],
            small=kbs["small"],
            mostly_unready=kbs["mostly_unready"],
            theirs=theirs,
            ready=ready,
        )


@pytest.fixture
def pg_db(engine: Engine) -> Iterator[Session]:
    """A session whose writes are rolled back after the test."""
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
                yield session
        finally:
            transaction.rollback()


def exact_nearest(corpus: Corpus, kb: KnowledgeBase, query: npt.NDArray[np.float64]) -> list[int]:
    ids = list(corpus.ready[kb.id])
    matrix = np.array([corpus.ready[kb.id][chunk_id] for chunk_id in ids])
    scores = matrix @ (query / np.linalg.norm(query))
    return [ids[row] for row in np.argsort(-scores)[:LIMIT]]


def search(
    db: Session, corpus: Corpus, kb: KnowledgeBase, query: npt.NDArray[np.float64]
) -> list[int]:
    hits = chunk_vector_crud.search(
        session=db,
        user=corpus.owner,
        sources=[(kb.id, corpus.model.id, DIMENSIONS)],
        query_vectors={corpus.model.id: query.tolist(), corpus.other_model.id: [1.0] * 64},
        limit=LIMIT,
    )
    return [hit.chunk_id for hit in hits]


def nearest(corpus: Corpus, kb: KnowledgeBase, query: list[float]) -> Any:
    """The statement search runs first: ordered by the model's HNSW index."""
    return chunk_vector_crud.nearest_statement(
        user=corpus.owner,
        source=chunk_vector_crud.VectorSource(kb.id, corpus.model.id, DIMENSIONS),
        query=query,
        limit=LIMIT,
    )


def explain(db: Session, corpus: Corpus, kb: KnowledgeBase) -> str:
    statement = nearest(corpus, kb, [1.0] * DIMENSIONS)
    compiled = statement.compile(bind=db.get_bind(), compile_kwargs={"render_postcompile": True})
    plan = db.connection().exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
    return "\n".join(row[0] for row in plan)


class TestSchema:
    def test_the_migration_made_the_extension_and_the_column(self, pg_db: Session) -> None:
        extension = pg_db.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'"))
        assert extension.first() is not None
        column = pg_db.execute(
            text(
                "SELECT udt_name FROM information_schema.columns "
                "WHERE table_name = 'chunk_vector' AND column_name = 'embedding'"
            )
        ).scalar()
        assert column == "vector"
        assert chunk_vector_crud.has_pgvector(pg_db) is True

    # Reflection knows no `vector` type; the column is left out of the comparison.
    @pytest.mark.filterwarnings("ignore:Did not recognize type 'vector':sqlalchemy.exc.SAWarning")
    def test_models_and_migrations_still_agree(self, engine: Engine, corpus: Corpus) -> None:
        assert differences(engine) == []


class TestStore:
    def test_the_models_partial_hnsw_index_and_the_embedding_column(
        self, pg_db: Session, corpus: Corpus
    ) -> None:
        model = create_embedding_model(pg_db, dimensions=3)
        kb = create_knowledge_base(pg_db, owner=corpus.owner)
        first, second = add_passages(pg_db, knowledge_base=kb, count=2)
        chunk_vector_crud.store(session=pg_db, model=model, vectors=[(first, [3.0, 0.0, 4.0])])
        # A retried batch: the stored vector stays, the missing one is added.
        chunk_vector_crud.store(
            session=pg_db,
            model=model,
            vectors=[(first, [1.0, 0.0, 0.0]), (second, [0.0, 2.0, 0.0])],
        )

        name = f"ix_chunk_vector_hnsw_{model.id.hex}"
        definition = pg_db.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"), {"name": name}
        ).scalar()
        assert definition == (
            f"CREATE INDEX {name} ON public.chunk_vector USING hnsw "
            f"(((embedding)::vector(3)) vector_cosine_ops) WHERE (model_id = '{model.id}'::uuid)"
        )
        rows = pg_db.execute(
            text(
                "SELECT chunk_id, embedding::text, vector FROM chunk_vector "
                "WHERE model_id = :model ORDER BY chunk_id"
            ),
            {"model": model.id},
        ).all()
        assert [(row[0], row[1]) for row in rows] == [
            (first.id, "[0.6,0,0.8]"),
            (second.id, "[0,1,0]"),
        ]
        assert rows[0][2] == vectors.pack([0.6, 0.0, 0.8])

    def test_too_many_dimensions_for_hnsw_are_searched_exactly(
        self, pg_db: Session, corpus: Corpus
    ) -> None:
        dimensions = chunk_vector_crud.HNSW_MAX_DIMENSIONS + 1
        model = create_embedding_model(pg_db, dimensions=dimensions)
        kb = create_knowledge_base(pg_db, owner=corpus.owner)
        passages = add_passages(pg_db, knowledge_base=kb, count=3)

        def at(angle: float) -> list[float]:
            return [math.cos(angle), math.sin(angle)] + [0.0] * (dimensions - 2)

        chunk_vector_crud.store(
            session=pg_db,
            model=model,
            vectors=list(zip(passages, [at(1.0), at(0.2), at(0.6)], strict=True)),
        )
        name = f"ix_chunk_vector_hnsw_{model.id.hex}"
        assert pg_db.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is None
        hits = chunk_vector_crud.search(
            session=pg_db,
            user=corpus.owner,
            sources=[(kb.id, model.id, dimensions)],
            query_vectors={model.id: at(0.0)},
            limit=2,
        )
        assert [hit.chunk_id for hit in hits] == [passages[1].id, passages[2].id]
        assert [hit.score for hit in hits] == pytest.approx([math.cos(0.2), math.cos(0.6)])


class TestSearch:
    def test_a_big_knowledge_base_is_searched_by_the_hnsw_index(
        self, pg_db: Session, corpus: Corpus
    ) -> None:
        assert f"ix_chunk_vector_hnsw_{corpus.model.id.hex}" in explain(pg_db, corpus, corpus.big)
        rng = np.random.default_rng(1)
        found = 0
        for _ in range(5):
            query = rng.standard_normal(DIMENSIONS)
            hits = search(pg_db, corpus, corpus.big, query)
            assert len(hits) == LIMIT
            assert set(hits) <= set(corpus.ready[corpus.big.id])
            found += len(set(hits) & set(exact_nearest(corpus, corpus.big, query)))
        # Approximate: random vectors are HNSW's hardest case.
        assert found / (5 * LIMIT) >= 0.8

    @pytest.mark.parametrize("name", ["small", "mostly_unready"])
    def test_a_small_part_of_the_index_gets_the_exact_nearest(
        self, pg_db: Session, corpus: Corpus, name: str
    ) -> None:
        kb: KnowledgeBase = getattr(corpus, name)
        # The index's candidates are nearly all of other knowledge bases: by the index
        # alone, fewer than LIMIT passages come back.
        assert f"ix_chunk_vector_hnsw_{corpus.model.id.hex}" in explain(pg_db, corpus, kb)
        assert len(pg_db.execute(nearest(corpus, kb, [1.0] * DIMENSIONS)).all()) < LIMIT
        rng = np.random.default_rng(2)
        for _ in range(5):
            query = rng.standard_normal(DIMENSIONS)
            assert search(pg_db, corpus, kb, query) == exact_nearest(corpus, kb, query)

    def test_scores_are_the_cosine_similarity(self, pg_db: Session, corpus: Corpus) -> None:
        query = np.random.default_rng(3).standard_normal(DIMENSIONS)
        hits = chunk_vector_crud.search(
            session=pg_db,
            user=corpus.owner,
            sources=[(corpus.small.id, corpus.model.id, DIMENSIONS)],
            query_vectors={corpus.model.id: query.tolist()},
            limit=3,
        )
        unit = query / np.linalg.norm(query)
        expected = [float(corpus.ready[corpus.small.id][hit.chunk_id] @ unit) for hit in hits]
        assert [hit.score for hit in hits] == pytest.approx(expected, abs=1e-5)

    def test_never_another_owners_passages(self, pg_db: Session, corpus: Corpus) -> None:
        query = np.random.default_rng(4).standard_normal(DIMENSIONS)
        assert search(pg_db, corpus, corpus.theirs, query) == []

    def test_the_knowledge_bases_merge_by_score(self, pg_db: Session, corpus: Corpus) -> None:
        query = np.random.default_rng(5).standard_normal(DIMENSIONS)
        hits = chunk_vector_crud.search(
            session=pg_db,
            user=corpus.owner,
            sources=[
                (corpus.small.id, corpus.model.id, DIMENSIONS),
                (corpus.mostly_unready.id, corpus.model.id, DIMENSIONS),
            ],
            query_vectors={corpus.model.id: query.tolist()},
            limit=LIMIT,
        )
        both = {**corpus.ready[corpus.small.id], **corpus.ready[corpus.mostly_unready.id]}
        unit = query / np.linalg.norm(query)
        expected = sorted(both, key=lambda chunk_id: -float(both[chunk_id] @ unit))[:LIMIT]
        assert [hit.chunk_id for hit in hits] == expected
