"""crud.chunk_vector on the test database (SQLite, or PostgreSQL without pgvector): the
vectors are stored as bytes and searched exactly with NumPy, only among the caller's own
passages of ready documents, by the vectors of each knowledge base's own model."""

import math
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert
from sqlmodel import Session, col, select

from app.core import vectors
from app.crud import chunk_vector as chunk_vector_crud
from app.models.ai_model import AIModel, ModelKind
from app.models.document import Chunk, Document, DocumentStatus
from app.models.embedding import ChunkVector
from app.models.knowledge_base import KnowledgeBase
from app.models.user import User
from tests.factories import (
    create_ai_model,
    create_chunk,
    create_document,
    create_knowledge_base,
    create_user,
)
from tests.statements import statements_on

DIMENSIONS = 4
QUERY = [1.0, 0.0, 0.0, 0.0]


def at(angle: float) -> list[float]:
    """A vector `angle` radians away from QUERY: its cosine similarity is cos(angle)."""
    return [math.cos(angle), math.sin(angle), 0.0, 0.0]


def create_embedding_model(db: Session, *, dimensions: int = DIMENSIONS) -> AIModel:
    model = create_ai_model(
        db, input_price_per_million=Decimal("0.02"), output_price_per_million=Decimal("0")
    )
    model.kind = ModelKind.EMBEDDING
    model.dimensions = dimensions
    db.add(model)
    db.commit()
    return model


def create_passages(
    db: Session,
    *,
    knowledge_base: KnowledgeBase,
    count: int,
    status: DocumentStatus = DocumentStatus.READY,
    title: str = "Handbook",
    embedding_error_code: str | None = None,
) -> list[Chunk]:
    document = create_document(
        db,
        knowledge_base=knowledge_base,
        title=title,
        data=uuid.uuid4().bytes,
        status=status,
    )
    if embedding_error_code is not None:
        document.embedding_error_code = embedding_error_code
        db.add(document)
        db.commit()
    return [
        create_chunk(
            db, document=document, text=f"{title} {n}", ordinal=n, heading=f"Part {n}", page=n + 1
        )
        for n in range(count)
    ]


def store(db: Session, model: AIModel, *pairs: tuple[Chunk, Sequence[float]]) -> None:
    chunk_vector_crud.store(session=db, model=model, vectors=list(pairs))
    db.commit()


def stored(db: Session, model: AIModel | None = None) -> dict[int, bytes]:
    statement = select(ChunkVector)
    if model is not None:
        statement = statement.where(col(ChunkVector.model_id) == model.id)
    return {row.chunk_id: row.vector for row in db.exec(statement)}


def search(
    db: Session,
    user: User,
    sources: Sequence[tuple[KnowledgeBase, AIModel]],
    limit: int = 10,
    query_vectors: dict[uuid.UUID, Sequence[float]] | None = None,
) -> list[Any]:
    return chunk_vector_crud.search(
        session=db,
        user=user,
        sources=[
            chunk_vector_crud.VectorSource(kb.id, model.id, DIMENSIONS) for kb, model in sources
        ],
        query_vectors=query_vectors or {model.id: QUERY for _, model in sources},
        limit=limit,
    )


@contextmanager
def statements_counted(db: Session) -> Iterator[list[str]]:
    """The SQL statements the session's connection runs inside the block."""
    with statements_on(db.connection()) as seen:
        yield seen


@pytest.fixture
def model(db: Session) -> AIModel:
    return create_embedding_model(db)


@pytest.fixture
def kb(db: Session, user: User) -> KnowledgeBase:
    return create_knowledge_base(db, owner=user, name="Handbook")


class TestStore:
    def test_each_passage_gets_its_unit_vector(
        self, db: Session, user: User, kb: KnowledgeBase, model: AIModel
    ) -> None:
        first, second = create_passages(db, knowledge_base=kb, count=2)
        store(db, model, (first, [3.0, 4.0, 0.0, 0.0]), (second, [0.0, 0.0, 0.0, 2.0]))
        rows = db.exec(select(ChunkVector).order_by(col(ChunkVector.chunk_id))).all()
        assert [
            (row.chunk_id, row.model_id, row.knowledge_base_id, row.owner_id) for row in rows
        ] == [
            (first.id, model.id, kb.id, user.id),
            (second.id, model.id, kb.id, user.id),
        ]
        assert rows[0].vector == vectors.pack([0.6, 0.8, 0.0, 0.0])
        assert np.allclose(vectors.unpack(rows[1].vector, DIMENSIONS), [0, 0, 0, 1])

    def test_a_retried_batch_stores_what_is_missing_and_keeps_what_is_there(
        self, db: Session, kb: KnowledgeBase, model: AIModel
    ) -> None:
        first, second = create_passages(db, knowledge_base=kb, count=2)
        store(db, model, (first, at(0.0)))
        store(db, model, (first, at(1.0)), (second, at(0.5)))
        assert stored(db) == {first.id: vectors.pack(at(0.0)), second.id: vectors.pack(at(0.5))}

    def test_a_passage_has_one_vector_per_model(
        self, db: Session, kb: KnowledgeBase, model: AIModel
    ) -> None:
        (passage,) = create_passages(db, knowledge_base=kb, count=1)
        other = create_embedding_model(db)
        store(db, model, (passage, at(0.0)))
        store(db, other, (passage, at(1.0)))
        assert stored(db, model) == {passage.id: vectors.pack(at(0.0))}
        assert stored(db, other) == {passage.id: vectors.pack(at(1.0))}

    def test_refuses_vectors_that_do_not_fit_the_model(
        self, db: Session, kb: KnowledgeBase, model: AIModel
    ) -> None:
        first, second = create_passages(db, knowledge_base=kb, count=2)
        chat = create_ai_model(db)
        with pytest.raises(ValueError, match="3 numbers for 4 dimensions"):
            store(db, model, (first, at(0.0)), (second, [1.0, 2.0, 3.0]))
        with pytest.raises(ValueError, match="zero vector"):
            store(db, model, (first, [0.0] * DIMENSIONS))
        with pytest.raises(ValueError, match="not an embedding model"):
            store(db, chat, (first, at(0.0)))
        assert stored(db) == {}

    def test_an_empty_batch_stores_nothing(self, db: Session, model: AIModel) -> None:
        store(db, model)
        assert stored(db) == {}

    def test_this_database_has_no_pgvector(self, db: Session) -> None:
        assert chunk_vector_crud.has_pgvector(db) is False


class TestMissing:
    def test_passages_of_ready_documents_without_the_models_vector_by_id(
        self, db: Session, user: User, kb: KnowledgeBase, model: AIModel
    ) -> None:
        ready = create_passages(db, knowledge_base=kb, count=4)
        create_passages(db, knowledge_base=kb, count=2, status=DocumentStatus.PROCESSING)
        create_passages(db, knowledge_base=kb, count=2, embedding_error_code="quota_exceeded")
        create_passages(db, knowledge_base=create_knowledge_base(db, owner=user), count=2)
        other_model = create_embedding_model(db)
        store(db, model, (ready[1], at(0.0)))
        store(db, other_model, (ready[2], at(0.0)))

        def missing(limit: int) -> list[int | None]:
            found = chunk_vector_crud.missing(
                session=db, knowledge_base_id=kb.id, model_id=model.id, limit=limit
            )
            return [chunk.id for chunk in found]

        assert missing(10) == [ready[0].id, ready[2].id, ready[3].id]
        assert missing(2) == [ready[0].id, ready[2].id]
        store(db, model, (ready[0], at(0.0)), (ready[2], at(0.0)), (ready[3], at(0.0)))
        assert missing(10) == []


class TestProgress:
    def test_embedded_and_total_passages_of_ready_documents_in_one_statement(
        self, db: Session, user: User, kb: KnowledgeBase, model: AIModel
    ) -> None:
        ready = create_passages(db, knowledge_base=kb, count=3)
        (unready,) = create_passages(db, knowledge_base=kb, count=1, status=DocumentStatus.QUEUED)
        other_model = create_embedding_model(db)
        store(db, model, (ready[0], at(0.0)), (ready[1], at(0.0)), (unready, at(0.0)))
        store(db, other_model, (ready[2], at(0.0)))
        keyword_only = create_knowledge_base(db, owner=user)
        create_passages(db, knowledge_base=keyword_only, count=2)
        empty = create_knowledge_base(db, owner=user)
        switching = create_knowledge_base(db, owner=user)
        (switched,) = create_passages(db, knowledge_base=switching, count=1)
        store(db, model, (switched, at(0.0)))

        kb_ids = [kb.id, keyword_only.id, empty.id, switching.id]
        model_id_by_kb = {kb.id: model.id, switching.id: other_model.id}
        with statements_counted(db) as statements:
            counts = chunk_vector_crud.progress(
                session=db, knowledge_base_ids=kb_ids, model_id_by_kb=model_id_by_kb
            )
        assert counts == {
            kb.id: (2, 3),
            keyword_only.id: (0, 2),
            empty.id: (0, 0),
            switching.id: (0, 1),
        }
        assert len(statements) == 1


class TestDeleteOthers:
    def test_only_the_kept_models_vectors_of_that_knowledge_base_stay(
        self, db: Session, user: User, kb: KnowledgeBase, model: AIModel
    ) -> None:
        old = create_embedding_model(db)
        passages = create_passages(db, knowledge_base=kb, count=2)
        neighbour = create_passages(
            db, knowledge_base=create_knowledge_base(db, owner=user), count=1
        )
        store(db, model, *((p, at(0.0)) for p in passages))
        store(db, old, *((p, at(0.0)) for p in [*passages, *neighbour]))

        chunk_vector_crud.delete_others(session=db, knowledge_base_id=kb.id, keep_model_id=model.id)
        assert set(stored(db, model)) == {p.id for p in passages}
        assert set(stored(db, old)) == {neighbour[0].id}

        chunk_vector_crud.delete_others(session=db, knowledge_base_id=kb.id, keep_model_id=None)
        assert stored(db, model) == {}
        assert set(stored(db, old)) == {neighbour[0].id}


class TestSearch:
    def test_nearest_first_scored_by_cosine_similarity(
        self, db: Session, user: User, kb: KnowledgeBase, model: AIModel
    ) -> None:
        passages = create_passages(db, knowledge_base=kb, count=4, title="Travel policy")
        store(db, model, *zip(passages, [at(1.0), at(0.1), at(2.5), at(0.5)], strict=True))

        hits = search(db, user, [(kb, model)], limit=3)
        assert [hit.chunk_id for hit in hits] == [passages[1].id, passages[3].id, passages[0].id]
        assert [hit.score for hit in hits] == pytest.approx(
            [math.cos(0.1), math.cos(0.5), math.cos(1.0)], abs=1e-6
        )
        first = hits[0]
        assert (first.document_title, first.heading, first.page_start, first.text) == (
            "Travel policy",
            "Part 1",
            2,
            "Travel policy 1",
        )
        assert first.document_id == passages[1].document_id

    def test_never_another_owners_passages(
        self, db: Session, user: User, superuser: User, kb: KnowledgeBase, model: AIModel
    ) -> None:
        (mine,) = create_passages(db, knowledge_base=kb, count=1)
        theirs_kb = create_knowledge_base(db, owner=create_user(db))
        (theirs,) = create_passages(db, knowledge_base=theirs_kb, count=1)
        store(db, model, (mine, at(1.0)), (theirs, at(0.0)))

        hits = search(db, user, [(kb, model), (theirs_kb, model)])
        assert [hit.chunk_id for hit in hits] == [mine.id]
        assert search(db, superuser, [(kb, model), (theirs_kb, model)]) == []

    def test_the_limit_counts_only_passages_of_ready_documents(
        self, db: Session, user: User, kb: KnowledgeBase, model: AIModel
    ) -> None:
        readable = create_passages(db, knowledge_base=kb, count=3)
        for status in (DocumentStatus.QUEUED, DocumentStatus.PROCESSING, DocumentStatus.FAILED):
            unready = create_passages(db, knowledge_base=kb, count=2, status=status)
            store(db, model, *((p, at(0.0)) for p in unready))
        store(db, model, *zip(readable, [at(0.3), at(0.2), at(0.1)], strict=True))

        hits = search(db, user, [(kb, model)], limit=3)
        assert [hit.chunk_id for hit in hits] == [p.id for p in reversed(readable)]

    def test_each_knowledge_base_by_its_own_models_vectors_only(
        self, db: Session, user: User, kb: KnowledgeBase, model: AIModel
    ) -> None:
        old = create_embedding_model(db)
        near, far = create_passages(db, knowledge_base=kb, count=2)
        # By the old model `far` is the nearest; the knowledge base is served by `model`.
        store(db, model, (near, at(0.2)), (far, at(1.2)))
        store(db, old, (near, at(3.0)), (far, at(0.0)))

        hits = search(db, user, [(kb, model)], query_vectors={model.id: QUERY, old.id: QUERY})
        assert [hit.chunk_id for hit in hits] == [near.id, far.id]
        assert [hit.score for hit in hits] == pytest.approx(
            [math.cos(0.2), math.cos(1.2)], abs=1e-6
        )

    def test_knowledge_bases_of_different_models_merge_by_score(
        self, db: Session, user: User, kb: KnowledgeBase, model: AIModel
    ) -> None:
        other = create_embedding_model(db)
        other_kb = create_knowledge_base(db, owner=user)
        mine = create_passages(db, knowledge_base=kb, count=2)
        theirs = create_passages(db, knowledge_base=other_kb, count=2)
        store(db, model, (mine[0], at(0.1)), (mine[1], at(0.7)))
        store(db, other, (theirs[0], at(0.4)), (theirs[1], at(1.5)))

        hits = search(db, user, [(kb, model), (other_kb, other)], limit=3)
        assert [hit.chunk_id for hit in hits] == [mine[0].id, theirs[0].id, mine[1].id]

    def test_a_knowledge_base_without_vectors_finds_nothing(
        self, db: Session, user: User, kb: KnowledgeBase, model: AIModel
    ) -> None:
        create_passages(db, knowledge_base=kb, count=2)
        assert search(db, user, [(kb, model)]) == []
        assert search(db, user, []) == []

    def test_the_query_must_fit_each_model(
        self, db: Session, user: User, kb: KnowledgeBase, model: AIModel
    ) -> None:
        with pytest.raises(ValueError, match="no query vector"):
            search(db, user, [(kb, model)], query_vectors={uuid.uuid4(): QUERY})
        with pytest.raises(ValueError, match="3 dimensions for 4"):
            search(db, user, [(kb, model)], query_vectors={model.id: [1.0, 0.0, 0.0]})

    def test_exact_over_many_batches_on_random_vectors(
        self, db: Session, user: User, kb: KnowledgeBase
    ) -> None:
        dimensions = 32
        count = 2 * chunk_vector_crud.SCAN_BATCH + 100
        model = create_embedding_model(db, dimensions=dimensions)
        document = create_document(db, knowledge_base=kb, status=DocumentStatus.READY)
        db.execute(
            insert(Chunk),
            [
                {
                    "document_id": document.id,
                    "knowledge_base_id": kb.id,
                    "owner_id": user.id,
                    "ordinal": n,
                    "text": f"passage {n}",
                    "char_start": 0,
                    "char_end": 9,
                }
                for n in range(count)
            ],
        )
        passages = list(
            db.exec(
                select(Chunk).where(col(Chunk.document_id) == document.id).order_by(col(Chunk.id))
            )
        )
        rng = np.random.default_rng(12)
        matrix = rng.standard_normal((count, dimensions))
        store(db, model, *zip(passages, matrix.tolist(), strict=True))
        query = rng.standard_normal(dimensions)

        hits = chunk_vector_crud.search(
            session=db,
            user=user,
            sources=[(kb.id, model.id, dimensions)],
            query_vectors={model.id: query.tolist()},
            limit=20,
        )
        unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        scores = unit @ (query / np.linalg.norm(query))
        expected = [passages[row].id for row in np.argsort(-scores)[:20]]
        assert [hit.chunk_id for hit in hits] == expected
        assert [hit.score for hit in hits] == pytest.approx(np.sort(scores)[::-1][:20], abs=1e-5)
        assert db.get(Document, document.id) is not None
