"""`GET /knowledge-bases/{kb_id}/search`: what people type finds what they mean, on both
engines, and only in their own ready documents."""

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert
from sqlmodel import Session, col, select

from app.core.types import MAX_PAGE_SIZE
from app.crud import chunk as chunk_crud
from app.models.document import Chunk, Document, DocumentStatus
from app.models.knowledge_base import KnowledgeBase
from app.models.user import User
from app.services.search_service import search_words
from tests.environment import settings
from tests.factories import (
    auth_headers,
    create_chunk,
    create_document,
    create_knowledge_base,
    create_user,
)

REFUNDS = (
    "Refund policy: damaged goods are refunded in full within 30 days of delivery. "
    "Send a photo of the damage with your order number."
)
SHIPPING = "Shipping takes three to five working days; express delivery takes one."
RETURNS = "Returns of unopened items are accepted for 14 days; the buyer pays the postage."
ALL_TEXTS = (REFUNDS, SHIPPING, RETURNS)


def search_path(knowledge_base: KnowledgeBase | uuid.UUID) -> str:
    kb_id = knowledge_base if isinstance(knowledge_base, uuid.UUID) else knowledge_base.id
    return f"/api/v1/knowledge-bases/{kb_id}/search"


def search(
    client: TestClient,
    knowledge_base: KnowledgeBase | uuid.UUID,
    headers: dict[str, str],
    q: str,
    **params: Any,
) -> Any:
    return client.get(search_path(knowledge_base), headers=headers, params={"q": q, **params})


@pytest.fixture
def kb(db: Session, user: User) -> KnowledgeBase:
    return create_knowledge_base(db, owner=user, name="Help centre")


@pytest.fixture
def policies(db: Session, kb: KnowledgeBase) -> dict[str, Chunk]:
    """A ready document of three passages: refunds, shipping, returns."""
    document = create_document(
        db, knowledge_base=kb, title="Store policies", status=DocumentStatus.READY
    )
    chunks = {}
    for ordinal, (name, text) in enumerate(
        zip(("refunds", "shipping", "returns"), ALL_TEXTS, strict=True)
    ):
        chunks[name] = create_chunk(
            db, document=document, text=text, ordinal=ordinal, heading=name.title(), page=1
        )
    return chunks


def hit_ids(response: Any) -> list[int]:
    return [hit["chunk_id"] for hit in response.json()["data"]]


def holds_a_word_of(text: str, q: str) -> bool:
    return bool(set(search_words(text)) & set(search_words(q)))


class TestSearchKnowledgeBase:
    def test_anonymous_is_refused(self, client: TestClient, kb: KnowledgeBase) -> None:
        response = client.get(search_path(kb), params={"q": "refund"})
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_token"

    def test_a_whole_question_finds_the_passage_that_answers_it(
        self,
        client: TestClient,
        kb: KnowledgeBase,
        policies: dict[str, Chunk],
        user_headers: dict[str, str],
    ) -> None:
        response = search(client, kb, user_headers, "What's your refund policy for DAMAGED goods?!")
        assert response.status_code == 200
        data = response.json()["data"]
        assert data[0] == {
            "chunk_id": policies["refunds"].id,
            "document_id": str(policies["refunds"].document_id),
            "document_title": "Store policies",
            "page_start": 1,
            "page_end": 1,
            "heading": "Refunds",
            "text": REFUNDS,
            "score": data[0]["score"],
        }
        assert isinstance(data[0]["score"], float)
        scores = [hit["score"] for hit in data]
        assert scores == sorted(scores, reverse=True)
        assert scores[0] > scores[-1] or len(scores) == 1

    @pytest.mark.parametrize(
        "q",
        [
            "damaged-goods refund-policy",
            '"refund policy"',
            '"unbalanced refund',
            "refund AND OR NOT *",
            "refund NEAR(policy damaged)",
            "refund:* | !policy & (damaged)",
            "'; DROP TABLE chunk; -- refund",
            "refund 🙂🙂 👍🏽",
            "réfund refund\u0301 REFUND",
            "\\refund\\ ^policy$ [damaged]{1} <goods>",
            "refund " + "x" * 993,
            "photo " * 166 + "refu",
        ],
    )
    def test_anything_typed_is_searched_for_its_words(
        self,
        client: TestClient,
        kb: KnowledgeBase,
        policies: dict[str, Chunk],
        user_headers: dict[str, str],
        q: str,
    ) -> None:
        assert len(q) <= 1_000
        response = search(client, kb, user_headers, q)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data[0]["chunk_id"] == policies["refunds"].id
        assert all(holds_a_word_of(hit["text"], q) for hit in data)

    def test_operators_alone_are_searched_as_the_words_they_are(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        policies: dict[str, Chunk],
        user_headers: dict[str, str],
    ) -> None:
        document = create_document(
            db, knowledge_base=kb, data=b"ops", title="Logic", status=DocumentStatus.READY
        )
        logic = create_chunk(db, document=document, text="Either this or that, and not both.")
        response = search(client, kb, user_headers, "AND OR NOT *")
        assert response.status_code == 200
        assert hit_ids(response) == [logic.id]

    @pytest.mark.parametrize("q", ["?", "...!!! ---", "🙂🙂", '"" * ()', "\u0301"])
    def test_no_words_at_all_finds_nothing(
        self,
        client: TestClient,
        kb: KnowledgeBase,
        policies: dict[str, Chunk],
        user_headers: dict[str, str],
        q: str,
    ) -> None:
        response = search(client, kb, user_headers, q)
        assert response.status_code == 200
        assert response.json() == {"data": [], "mode": "keyword"}

    def test_a_word_found_nowhere_does_not_hide_the_others(
        self,
        client: TestClient,
        kb: KnowledgeBase,
        policies: dict[str, Chunk],
        user_headers: dict[str, str],
    ) -> None:
        response = search(client, kb, user_headers, "zyxwvut express delivery")
        assert response.status_code == 200
        assert hit_ids(response)[0] == policies["shipping"].id
        assert set(hit_ids(response)) == {policies["shipping"].id, policies["refunds"].id}

    def test_function_words_neither_match_nor_rank(
        self,
        db: Session,
        client: TestClient,
        kb: KnowledgeBase,
        policies: dict[str, Chunk],
        user_headers: dict[str, str],
    ) -> None:
        chatter = create_document(
            db, knowledge_base=kb, title="Chatter", data=b"chatter", status=DocumentStatus.READY
        )
        noise = create_chunk(
            db, document=chatter, text="What is it, and what is the thing that it is? " * 20
        )
        response = search(client, kb, user_headers, "What is the postage for returns?")
        assert response.status_code == 200
        assert hit_ids(response) == [policies["returns"].id]
        # Nothing but function words: those are searched for, rather than nothing.
        only_them = search(client, kb, user_headers, "what is it?")
        assert only_them.status_code == 200
        assert hit_ids(only_them)[0] == noise.id

    def test_nothing_matches_nothing(
        self,
        client: TestClient,
        kb: KnowledgeBase,
        policies: dict[str, Chunk],
        user_headers: dict[str, str],
    ) -> None:
        response = search(client, kb, user_headers, "zyxwvut qqqq")
        assert response.status_code == 200
        assert response.json() == {"data": [], "mode": "keyword"}

    def test_the_limit_counts_only_passages_of_this_knowledge_base(
        self,
        client: TestClient,
        db: Session,
        user: User,
        kb: KnowledgeBase,
        policies: dict[str, Chunk],
        user_headers: dict[str, str],
    ) -> None:
        # Better matches elsewhere, more than the limit: filtering after ranking would
        # leave nothing.
        elsewhere = create_knowledge_base(db, owner=user, name="Elsewhere")
        document = create_document(db, knowledge_base=elsewhere, status=DocumentStatus.READY)
        for ordinal in range(12):
            create_chunk(db, document=document, text="postage postage postage", ordinal=ordinal)
        response = search(client, kb, user_headers, "postage", limit=1)
        assert response.status_code == 200
        assert hit_ids(response) == [policies["returns"].id]

    def test_limit_bounds_the_answer(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
    ) -> None:
        document = create_document(db, knowledge_base=kb, status=DocumentStatus.READY)
        for ordinal in range(55):
            create_chunk(db, document=document, text=f"widget number {ordinal}", ordinal=ordinal)
        default = search(client, kb, user_headers, "widget")
        three = search(client, kb, user_headers, "widget", limit=3)
        most = search(client, kb, user_headers, "widget", limit=50)
        assert (default.status_code, three.status_code, most.status_code) == (200, 200, 200)
        assert (len(hit_ids(default)), len(hit_ids(three)), len(hit_ids(most))) == (10, 3, 50)

    @pytest.mark.parametrize(
        "params",
        [
            {},
            {"q": ""},
            {"q": "x" * 1_001},
            {"q": "refund\x00"},
            {"q": "refund", "limit": 0},
            {"q": "refund", "limit": 51},
            {"q": "refund", "limit": "ten"},
        ],
    )
    def test_bad_input_is_refused(
        self,
        client: TestClient,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
        params: dict[str, Any],
    ) -> None:
        response = client.get(search_path(kb), headers=user_headers, params=params)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"
        assert response.json()["errors"][0]["loc"][0] == "query"

    def test_an_unknown_knowledge_base_is_not_found(
        self, client: TestClient, user_headers: dict[str, str]
    ) -> None:
        response = search(client, uuid.uuid4(), user_headers, "refund")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"

    def test_someone_elses_knowledge_base_is_not_found(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        policies: dict[str, Chunk],
    ) -> None:
        other = create_user(db)
        response = search(client, kb, auth_headers(db, user=other), "refund")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        assert "data" not in response.json()

    def test_superusers_do_not_search_other_peoples_knowledge_bases(
        self,
        client: TestClient,
        kb: KnowledgeBase,
        policies: dict[str, Chunk],
        superuser_headers: dict[str, str],
    ) -> None:
        response = search(client, kb, superuser_headers, "refund")
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"

    def test_other_peoples_passages_never_appear(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        policies: dict[str, Chunk],
        user_headers: dict[str, str],
    ) -> None:
        other = create_user(db)
        theirs = create_knowledge_base(db, owner=other, name="Theirs")
        document = create_document(db, knowledge_base=theirs, status=DocumentStatus.READY)
        create_chunk(db, document=document, text="refund refund refund secret")
        mine = search(client, kb, user_headers, "refund secret")
        their_own = search(client, theirs, auth_headers(db, user=other), "refund secret")
        assert (mine.status_code, their_own.status_code) == (200, 200)
        assert hit_ids(mine) == [policies["refunds"].id]
        assert [hit["text"] for hit in their_own.json()["data"]] == ["refund refund refund secret"]

    @pytest.mark.parametrize(
        "status", [DocumentStatus.QUEUED, DocumentStatus.PROCESSING, DocumentStatus.FAILED]
    )
    def test_passages_of_documents_that_are_not_ready_never_appear(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
        status: DocumentStatus,
    ) -> None:
        document = create_document(db, knowledge_base=kb, status=status)
        create_chunk(db, document=document, text="an unfinished passage about refunds")
        response = search(client, kb, user_headers, "unfinished refunds")
        assert response.status_code == 200
        assert response.json() == {"data": [], "mode": "keyword"}
        assert db.exec(select(Chunk).where(Chunk.document_id == document.id)).one()


class TestSearchAfterUploadAndDelete:
    def test_an_uploaded_document_is_found_and_its_deletion_removes_it(
        self, client: TestClient, db: Session, kb: KnowledgeBase, user_headers: dict[str, str]
    ) -> None:
        markdown = (
            b"# Warranty\n\nEvery kettle carries a two-year warranty.\n\n"
            b"## Claims\n\nTo claim, keep the receipt and describe the fault.\n"
        )
        uploaded = client.post(
            f"/api/v1/knowledge-bases/{kb.id}/documents",
            headers=user_headers,
            files={"file": ("warranty.md", markdown, "text/markdown")},
        )
        assert uploaded.status_code == 202, uploaded.text
        document_id = uploaded.json()["id"]
        read = client.get(f"/api/v1/documents/{document_id}", headers=user_headers)
        assert read.json()["status"] == "ready"  # ingested in the request (InlineDispatcher)
        found = search(client, kb, user_headers, "How do I claim on the kettle's warranty?")
        assert found.status_code == 200
        hits = found.json()["data"]
        assert {hit["document_id"] for hit in hits} == {document_id}
        assert hits[0]["document_title"] == "warranty"
        assert "receipt" in hits[0]["text"] or "two-year" in hits[0]["text"]
        assert {hit["heading"] for hit in hits} <= {"Warranty", "Warranty > Claims"}

        deleted = client.delete(f"/api/v1/documents/{document_id}", headers=user_headers)
        assert deleted.status_code == 204
        after = search(client, kb, user_headers, "How do I claim on the kettle's warranty?")
        assert after.status_code == 200
        assert after.json() == {"data": [], "mode": "keyword"}
        db.expire_all()
        assert db.get(Document, uuid.UUID(document_id)) is None
        left = db.exec(
            select(func.count())
            .select_from(Chunk)
            .where(col(Chunk.document_id) == uuid.UUID(document_id))
        ).one()
        assert left == 0


class TestSearchUsesTheFullTextIndex:
    def test_the_plan_reads_the_index(
        self, db: Session, user: User, kb: KnowledgeBase, policies: dict[str, Chunk]
    ) -> None:
        # A knowledge base of many passages, few of which hold the words searched for.
        document = db.get(Document, policies["refunds"].document_id)
        assert document is not None
        filler = Chunk(
            document_id=document.id,
            knowledge_base_id=kb.id,
            owner_id=user.id,
            ordinal=0,
            text="filler",
            char_start=0,
            char_end=6,
        )
        rows = [
            filler.model_dump(exclude={"id"}) | {"ordinal": n, "text": f"filler passage {n}"}
            for n in range(3, 3_000)
        ]
        db.execute(insert(Chunk), rows)
        chunk_crud.write_search_vectors(
            session=db, document_ids=[document.id], language=settings.SEARCH_LANGUAGE
        )
        connection = db.connection()
        connection.exec_driver_sql("ANALYZE chunk")
        statement = chunk_crud.search_statement(
            dialect=connection.dialect.name,
            user=user,
            knowledge_base_ids=[kb.id],
            words=["refund", "policy"],
            limit=MAX_PAGE_SIZE,
        )
        compiled = statement.compile(
            dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
        )
        if connection.dialect.name == "sqlite":
            positional = tuple(str(compiled.params[name]) for name in compiled.positiontup or ())
            plan_rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", positional)
            plan = " ".join(str(row[-1]) for row in plan_rows)
            assert "chunk_fts VIRTUAL TABLE INDEX" in plan, plan
        else:
            plan_rows = connection.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params)
            plan = " ".join(str(row[0]) for row in plan_rows)
            assert "ix_chunk_search" in plan, plan
