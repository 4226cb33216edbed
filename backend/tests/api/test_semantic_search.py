"""Semantic and hybrid retrieval: embedding models in the catalog, knowledge bases'
semantic indexes built in the background and billed, the three search modes, re-indexing
without downtime, and runs whose sources are found by meaning.

Embeddings come from the real local server of tests/modules/fake_llm.py, whose default
embeddings (tests/modules/fake_embeddings.py) put synonyms close together, so a question
worded differently from its answer is found by meaning and missed by words."""

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import Session, col, select

from app.core.db import utcnow
from app.core.pricing import cost_usd
from app.models.agent import AgentKnowledgeBase
from app.models.ai_model import AIModel, ModelKind
from app.models.document import Chunk
from app.models.embedding import ChunkVector, IndexStatus
from app.models.knowledge_base import KnowledgeBase
from app.models.run import Run
from app.models.thread import Thread
from app.models.usage import UsageEntry, UsageKind
from app.models.user import User
from app.modules.llm.client import LLMClient
from app.modules.llm.context import estimate_tokens
from app.services.retrieval import SOURCE_TOKENS
from app.services.semantic_search import MAX_QUESTION_CHARS
from app.tasks.dispatch import InlineDispatcher
from tests.api.conftest import post
from tests.factories import ParkedDispatcher, create_ai_model, create_knowledge_base
from tests.modules.fake_llm import FakeLLM, FakeResponse, ok

API = "/api/v1"
EMBED_PRICE = Decimal("0.020000")
DIMENSIONS = 64

# A fact and a question that shares none of its words, only their meanings.
FACT = "Physicians reimburse the automobile fee within seven days."
PARAPHRASE = "When does a doctor repay a car charge?"
FILLER = [
    "The garden behind the library grows tomatoes and basil in summer.",
    "Our office closes early on public holidays and reopens the next morning.",
    "The annual report lists every committee and its members by name.",
]


def embedding_model(db: Session, *, dimensions: int = DIMENSIONS, name: str = "") -> AIModel:
    model = create_ai_model(
        db,
        provider="openai",
        name=name or f"embed-{uuid.uuid4().hex[:8]}",
        context_window=8_192,
        max_output_tokens=1,
        input_price_per_million=EMBED_PRICE,
        output_price_per_million=Decimal(0),
    )
    model.kind = ModelKind.EMBEDDING
    model.dimensions = dimensions
    db.add(model)
    db.commit()
    return model


@pytest.fixture
def semantic_app(run_app: FastAPI, llm: LLMClient) -> FastAPI:
    """The app with runs, ingestion and index builds inline, and its own provider calls
    (embedding searches) going to the fake server."""
    run_app.state.llm = llm
    return run_app


@pytest.fixture
def embedder(db: Session) -> AIModel:
    return embedding_model(db)


def new_kb(
    client: TestClient, headers: dict[str, str], model: AIModel | None, name: str = "Policies"
) -> dict[str, Any]:
    response = client.post(
        f"{API}/knowledge-bases",
        headers=headers,
        json={"name": name, "embedding_model_id": str(model.id) if model else None},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def upload(
    client: TestClient, kb_id: str, headers: dict[str, str], text: str, name: str = "doc.txt"
) -> dict[str, Any]:
    response = client.post(
        f"{API}/knowledge-bases/{kb_id}/documents",
        headers=headers,
        files={"file": (name, f"{text}\n\nReference {uuid.uuid4().hex}.\n".encode())},
    )
    assert response.status_code == 202, response.text
    document = client.get(f"{API}/documents/{response.json()['id']}", headers=headers).json()
    assert document["status"] == "ready", document
    return dict(document)


def search(client: TestClient, kb_id: str, headers: dict[str, str], q: str, **params: Any) -> Any:
    return client.get(
        f"{API}/knowledge-bases/{kb_id}/search", headers=headers, params={"q": q, **params}
    )


def texts(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["text"] for hit in response.json()["data"]]


def vectors_of(db: Session, kb_id: str, model: AIModel) -> int:
    db.expire_all()
    statement = select(func.count()).where(
        col(ChunkVector.knowledge_base_id) == uuid.UUID(kb_id),
        col(ChunkVector.model_id) == model.id,
    )
    return int(db.exec(statement).one())


def embedding_entries(db: Session, user: User) -> list[UsageEntry]:
    db.expire_all()
    statement = select(UsageEntry).where(
        UsageEntry.user_id == user.id, UsageEntry.kind == UsageKind.EMBEDDING
    )
    return list(db.exec(statement.order_by(col(UsageEntry.id))).all())


def embedding_requests(fake: FakeLLM) -> list[Any]:
    return [r for r in fake.requests if r.path.endswith("/embeddings")]


# ==================== the catalog ====================


class TestEmbeddingModelsInTheCatalog:
    def test_an_embedding_model_needs_dimensions_and_cannot_back_an_agent(
        self,
        client: TestClient,
        superuser_headers: dict[str, str],
        user_headers: dict[str, str],
    ) -> None:
        entry = {
            "provider": "openai",
            "name": "text-embedding-3-small",
            "display_name": "Embedding 3 small",
            "context_window": 8_191,
            "max_output_tokens": 1,
            "input_price_per_million": "0.020000",
            "output_price_per_million": "0.000000",
            "kind": "embedding",
        }
        missing = client.post(f"{API}/models", headers=superuser_headers, json=entry)
        assert missing.status_code == 422
        assert "dimensions" in missing.text
        created = client.post(
            f"{API}/models", headers=superuser_headers, json={**entry, "dimensions": 1_536}
        )
        assert created.status_code == 201, created.text
        assert created.json()["kind"] == "embedding"
        assert created.json()["dimensions"] == 1_536

        agent = client.post(
            f"{API}/agents",
            headers=user_headers,
            json={"name": "Indexer", "model_id": created.json()["id"]},
        )
        assert agent.status_code == 422
        assert agent.json()["code"] == "model_not_chat"

    def test_a_chat_model_cannot_have_dimensions(
        self, client: TestClient, superuser_headers: dict[str, str]
    ) -> None:
        response = client.post(
            f"{API}/models",
            headers=superuser_headers,
            json={
                "provider": "openai",
                "name": "gpt-dims",
                "display_name": "GPT",
                "context_window": 8_000,
                "max_output_tokens": 1_000,
                "input_price_per_million": "1.000000",
                "output_price_per_million": "1.000000",
                "dimensions": 16,
            },
        )
        assert response.status_code == 422
        assert "dimensions are for embedding models only" in response.text

    def test_a_knowledge_base_needs_an_enabled_embedding_model(
        self,
        client: TestClient,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        embedder: AIModel,
    ) -> None:
        chat = create_ai_model(db)
        disabled = embedding_model(db)
        disabled.is_enabled = False
        db.add(disabled)
        db.commit()
        for model_id, code in (
            (chat.id, "model_not_embedding"),
            (disabled.id, "model_unavailable"),
            (uuid.uuid4(), "model_unavailable"),
        ):
            response = client.post(
                f"{API}/knowledge-bases",
                headers=user_headers,
                json={"name": f"kb {code}", "embedding_model_id": str(model_id)},
            )
            assert response.status_code == 422, response.text
            assert response.json()["code"] == code
        mine = select(func.count()).where(col(KnowledgeBase.owner_id) == user.id)
        assert db.exec(mine).one() == 0

    def test_a_model_a_knowledge_base_uses_cannot_be_deleted(
        self,
        semantic_app: FastAPI,
        superuser_headers: dict[str, str],
        user_headers: dict[str, str],
        embedder: AIModel,
    ) -> None:
        with TestClient(semantic_app) as client:
            new_kb(client, user_headers, embedder)
            response = client.delete(f"{API}/models/{embedder.id}", headers=superuser_headers)
        assert response.status_code == 409
        assert response.json()["code"] == "model_in_use"


# ==================== building the index ====================


class TestTheIndex:
    def test_an_upload_is_embedded_in_the_background_and_billed(
        self,
        semantic_app: FastAPI,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        embedder: AIModel,
        fake_llm: FakeLLM,
    ) -> None:
        with TestClient(semantic_app) as client:
            kb = new_kb(client, user_headers, embedder)
            assert kb["embedding_model_id"] == str(embedder.id)
            assert kb["index"] == {
                "status": "ready",  # nothing to embed yet
                "model_id": str(embedder.id),
                "building_model_id": None,
                "chunks_embedded": 0,
                "chunks_total": 0,
                "error_code": None,
            }
            document = upload(client, kb["id"], user_headers, "\n\n".join([FACT, *FILLER]))
            read = client.get(f"{API}/knowledge-bases/{kb['id']}", headers=user_headers).json()

        chunks = document["chunk_count"]
        assert chunks >= 1
        assert document["embedding_error_code"] is None
        assert read["index"]["status"] == "ready"
        assert read["index"]["chunks_embedded"] == read["index"]["chunks_total"] == chunks
        assert vectors_of(db, kb["id"], embedder) == chunks
        [request] = embedding_requests(fake_llm)
        assert request.json["model"] == embedder.name
        assert len(request.json["input"]) == chunks
        [entry] = embedding_entries(db, user)
        assert entry.knowledge_base_id == uuid.UUID(kb["id"])
        assert entry.run_id is None
        assert entry.agent_id is None
        assert entry.model_id == embedder.id
        assert entry.output_tokens == 0
        assert entry.input_tokens > 0
        assert entry.cost_usd == cost_usd(
            input_price_per_million=EMBED_PRICE,
            output_price_per_million=Decimal(0),
            input_tokens=entry.input_tokens,
            output_tokens=0,
        )
        assert db.get(KnowledgeBase, uuid.UUID(kb["id"])).index_reserved_usd == 0  # type: ignore[union-attr]

    def test_a_document_over_budget_stays_searchable_by_keyword(
        self,
        semantic_app: FastAPI,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        embedder: AIModel,
        fake_llm: FakeLLM,
    ) -> None:
        user.monthly_budget_usd = Decimal(0)
        db.add(user)
        db.commit()
        with TestClient(semantic_app) as client:
            kb = new_kb(client, user_headers, embedder)
            document = upload(client, kb["id"], user_headers, FACT)
            read = client.get(f"{API}/knowledge-bases/{kb['id']}", headers=user_headers).json()
            by_keyword = search(client, kb["id"], user_headers, "automobile fee", mode="keyword")
            by_default = search(client, kb["id"], user_headers, "automobile fee")

        assert document["status"] == "ready"
        assert read["index"]["status"] == "ready"
        assert read["index"]["chunks_embedded"] == 0
        assert embedding_requests(fake_llm) == []  # nothing was sent, nothing billed
        assert embedding_entries(db, user) == []
        assert FACT in texts(by_keyword)[0]
        # Hybrid cannot embed the question either: it answers by keyword and says so.
        assert by_default.json()["mode"] == "keyword"
        assert FACT in texts(by_default)[0]

    def test_the_documents_mark_reads_quota_exceeded(
        self,
        semantic_app: FastAPI,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        embedder: AIModel,
    ) -> None:
        user.monthly_budget_usd = Decimal(0)
        db.add(user)
        db.commit()
        with TestClient(semantic_app) as client:
            kb = new_kb(client, user_headers, embedder)
            document = upload(client, kb["id"], user_headers, FACT)
            again = client.get(f"{API}/documents/{document['id']}", headers=user_headers)
        assert again.json()["embedding_error_code"] == "quota_exceeded"

    def test_a_provider_sending_other_dimensions_fails_the_index_not_the_documents(
        self,
        semantic_app: FastAPI,
        db: Session,
        user_headers: dict[str, str],
    ) -> None:
        wrong = embedding_model(db, dimensions=32)  # the server sends 64
        with TestClient(semantic_app) as client:
            kb = new_kb(client, user_headers, wrong)
            document = upload(client, kb["id"], user_headers, FACT)
            read = client.get(f"{API}/knowledge-bases/{kb['id']}", headers=user_headers).json()
            found = texts(search(client, kb["id"], user_headers, "automobile"))
        assert document["status"] == "ready"
        assert read["index"]["status"] == "failed"
        assert read["index"]["error_code"] == "embedding_dimensions_mismatch"
        assert vectors_of(db, kb["id"], wrong) == 0
        assert FACT in found[0]  # by keyword, through the index that served before

    def test_a_provider_sending_zero_vectors_fails_the_index_and_bills_the_call(
        self,
        semantic_app: FastAPI,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        embedder: AIModel,
        fake_llm: FakeLLM,
    ) -> None:
        with TestClient(semantic_app) as client:
            kb = new_kb(client, user_headers, embedder)
            zeros = {
                "data": [{"index": 0, "embedding": [0.0] * DIMENSIONS}],
                "usage": {"prompt_tokens": 9},
            }
            fake_llm.script(FakeResponse(json=zeros))
            document = upload(client, kb["id"], user_headers, FACT)
            read = client.get(f"{API}/knowledge-bases/{kb['id']}", headers=user_headers).json()
            found = texts(search(client, kb["id"], user_headers, "automobile", mode="keyword"))
        assert document["status"] == "ready"
        assert (read["index"]["status"], read["index"]["error_code"]) == (
            "failed",
            "llm_bad_response",
        )
        assert read["index"]["chunks_embedded"] == 0
        assert vectors_of(db, kb["id"], embedder) == 0
        assert embedding_entries(db, user) == []  # an unusable answer is not recorded, as for chat
        assert db.get(KnowledgeBase, uuid.UUID(kb["id"])).index_reserved_usd == 0  # type: ignore[union-attr]
        assert FACT in found[0]

    def test_the_same_model_again_retries_a_failed_build(
        self,
        semantic_app: FastAPI,
        db: Session,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
    ) -> None:
        model = embedding_model(db, dimensions=32)
        with TestClient(semantic_app) as client:
            fake_llm.embedding_dimensions = 64  # a provider misconfigured for a while
            kb = new_kb(client, user_headers, model)
            upload(client, kb["id"], user_headers, FACT)
            failed = client.get(f"{API}/knowledge-bases/{kb['id']}", headers=user_headers)
            fake_llm.embedding_dimensions = 32  # fixed
            retried = client.patch(
                f"{API}/knowledge-bases/{kb['id']}",
                headers=user_headers,
                json={"embedding_model_id": str(model.id)},
            )
        assert failed.json()["index"]["status"] == "failed"
        assert retried.status_code == 200, retried.text
        index = retried.json()["index"]
        assert (index["status"], index["model_id"], index["error_code"]) == (
            "ready",
            str(model.id),
            None,
        )
        assert index["chunks_embedded"] == index["chunks_total"] >= 1
        assert vectors_of(db, kb["id"], model) == index["chunks_total"]

    def test_a_build_whose_worker_died_is_delivered_again_by_the_sweep(
        self,
        semantic_app: FastAPI,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        embedder: AIModel,
    ) -> None:
        dispatcher = semantic_app.state.run_dispatcher
        assert isinstance(dispatcher, InlineDispatcher)
        with TestClient(semantic_app) as client:
            kb = new_kb(client, user_headers, None)
            upload(client, kb["id"], user_headers, FACT)
            row = db.get(KnowledgeBase, uuid.UUID(kb["id"]))
            assert row is not None
            # A worker claimed the build, then died: its lease ran out.
            row.embedding_model_id = embedder.id
            row.index_status = IndexStatus.BUILDING
            row.index_lease_owner = "dead-host/1/abc/def"
            row.index_lease_expires_at = utcnow() - timedelta(seconds=1)
            row.index_attempts = 1
            db.add(row)
            db.commit()

            assert dispatcher.sweep_indexes() == 1
            read = client.get(f"{API}/knowledge-bases/{kb['id']}", headers=user_headers).json()
        assert read["index"]["status"] == "ready"
        assert read["index"]["model_id"] == str(embedder.id)
        assert read["index"]["chunks_embedded"] == read["index"]["chunks_total"] >= 1

    def test_a_build_whose_workers_keep_dying_fails(
        self,
        semantic_app: FastAPI,
        db: Session,
        user: User,
        embedder: AIModel,
    ) -> None:
        dispatcher = semantic_app.state.run_dispatcher
        kb = create_knowledge_base(db, owner=user)
        kb.embedding_model_id = embedder.id
        kb.index_status = IndexStatus.BUILDING
        kb.index_lease_owner = "dead-host/1/abc/def"
        kb.index_lease_expires_at = utcnow() - timedelta(seconds=1)
        kb.index_attempts = dispatcher.host.index_policy.max_attempts
        db.add(kb)
        db.commit()

        assert dispatcher.sweep_indexes() == 0
        db.refresh(kb)
        assert kb.index_status == IndexStatus.FAILED
        assert kb.index_error_code == "index_interrupted"
        assert kb.index_lease_owner is None


# ==================== searching ====================


class TestSearchModes:
    def test_by_meaning_words_and_both(
        self,
        semantic_app: FastAPI,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        embedder: AIModel,
    ) -> None:
        with TestClient(semantic_app) as client:
            kb = new_kb(client, user_headers, embedder)
            for text in [FACT, *FILLER]:
                upload(client, kb["id"], user_headers, text)
            billed_before = len(embedding_entries(db, user))
            keyword = search(client, kb["id"], user_headers, PARAPHRASE, mode="keyword")
            semantic = search(client, kb["id"], user_headers, PARAPHRASE, mode="semantic")
            hybrid = search(client, kb["id"], user_headers, PARAPHRASE)

        assert keyword.json()["mode"] == "keyword"
        assert all(FACT not in text for text in texts(keyword))  # no word in common
        assert semantic.json()["mode"] == "semantic"
        assert FACT in texts(semantic)[0]
        assert hybrid.json()["mode"] == "hybrid"  # the default with an index
        assert FACT in texts(hybrid)[0]
        # Each embedded question is one ledger row charged to me and my knowledge base.
        questions = embedding_entries(db, user)[billed_before:]
        assert len(questions) == 2
        assert {entry.knowledge_base_id for entry in questions} == {uuid.UUID(kb["id"])}

    def test_semantic_without_an_index_is_409(
        self, semantic_app: FastAPI, user_headers: dict[str, str]
    ) -> None:
        with TestClient(semantic_app) as client:
            kb = new_kb(client, user_headers, None)
            upload(client, kb["id"], user_headers, FACT)
            for mode in ("semantic", "hybrid"):
                response = search(client, kb["id"], user_headers, "fee", mode=mode)
                assert response.status_code == 409
                assert response.json()["code"] == "semantic_index_unavailable"
            default = search(client, kb["id"], user_headers, "fee")
        assert default.json()["mode"] == "keyword"
        assert FACT in texts(default)[0]

    def test_semantic_search_when_the_provider_is_down_is_503_and_hybrid_falls_back(
        self,
        semantic_app: FastAPI,
        user_headers: dict[str, str],
        embedder: AIModel,
        fake_llm: FakeLLM,
    ) -> None:
        with TestClient(semantic_app) as client:
            kb = new_kb(client, user_headers, embedder)
            upload(client, kb["id"], user_headers, FACT)
            fake_llm.script(*[FakeResponse(status=503)] * 6)
            semantic = search(client, kb["id"], user_headers, PARAPHRASE, mode="semantic")
            hybrid = search(client, kb["id"], user_headers, "automobile fee")
        assert semantic.status_code == 503
        assert semantic.json()["code"] == "llm_unavailable"
        assert hybrid.status_code == 200
        assert hybrid.json()["mode"] == "keyword"
        assert FACT in texts(hybrid)[0]

    def test_someone_elses_knowledge_base_is_404_in_every_mode(
        self,
        semantic_app: FastAPI,
        db: Session,
        user_headers: dict[str, str],
        superuser_headers: dict[str, str],
        embedder: AIModel,
        fake_llm: FakeLLM,
    ) -> None:
        with TestClient(semantic_app) as client:
            kb = new_kb(client, user_headers, embedder)
            upload(client, kb["id"], user_headers, FACT)
            asked = len(embedding_requests(fake_llm))
            for mode in ("keyword", "semantic", "hybrid"):
                response = search(client, kb["id"], superuser_headers, PARAPHRASE, mode=mode)
                assert response.status_code == 404
        assert len(embedding_requests(fake_llm)) == asked  # nothing embedded for them


class TestReindexing:
    def test_a_new_model_builds_while_the_old_one_serves_then_switches(
        self,
        semantic_app: FastAPI,
        db: Session,
        user_headers: dict[str, str],
        embedder: AIModel,
        fake_llm: FakeLLM,
    ) -> None:
        newer = embedding_model(db, name="embed-newer")
        with TestClient(semantic_app) as client:
            kb = new_kb(client, user_headers, embedder)
            upload(client, kb["id"], user_headers, FACT)
            # The new model's provider is away for every attempt of this delivery.
            fake_llm.script(*[FakeResponse(status=503)] * 3)
            patched = client.patch(
                f"{API}/knowledge-bases/{kb['id']}",
                headers=user_headers,
                json={"embedding_model_id": str(newer.id)},
            )
            during = search(client, kb["id"], user_headers, PARAPHRASE, mode="semantic")
            assert vectors_of(db, kb["id"], embedder) >= 1
            assert vectors_of(db, kb["id"], newer) == 0

            semantic_app.state.run_dispatcher.index(uuid.UUID(kb["id"]))  # delivered again
            after = client.get(f"{API}/knowledge-bases/{kb['id']}", headers=user_headers)
            searched = search(client, kb["id"], user_headers, PARAPHRASE, mode="semantic")

        assert patched.status_code == 200, patched.text
        assert patched.json()["embedding_model_id"] == str(newer.id)
        assert patched.json()["index"]["status"] == "building"
        assert patched.json()["index"]["model_id"] == str(embedder.id)
        assert patched.json()["index"]["building_model_id"] == str(newer.id)
        assert patched.json()["index"]["chunks_embedded"] == 0
        assert FACT in texts(during)[0]  # the old vectors answered meanwhile
        assert during.status_code == 200
        index = after.json()["index"]
        assert index["status"] == "ready"
        assert index["model_id"] == str(newer.id)
        assert index["chunks_embedded"] == index["chunks_total"] >= 1
        assert vectors_of(db, kb["id"], embedder) == 0  # the old vectors went at the switch
        assert FACT in texts(searched)[0]
        questions = [r.json for r in embedding_requests(fake_llm) if len(r.json["input"]) == 1]
        assert questions[-1]["model"] == "embed-newer"

    def test_dropping_the_model_drops_the_vectors(
        self,
        semantic_app: FastAPI,
        db: Session,
        user_headers: dict[str, str],
        embedder: AIModel,
    ) -> None:
        with TestClient(semantic_app) as client:
            kb = new_kb(client, user_headers, embedder)
            upload(client, kb["id"], user_headers, FACT)
            patched = client.patch(
                f"{API}/knowledge-bases/{kb['id']}",
                headers=user_headers,
                json={"embedding_model_id": None},
            )
            default = search(client, kb["id"], user_headers, "automobile")
        assert patched.status_code == 200
        assert patched.json()["index"]["status"] == "none"
        assert patched.json()["index"]["model_id"] is None
        assert vectors_of(db, kb["id"], embedder) == 0
        assert default.json()["mode"] == "keyword"


# ==================== runs ====================


def test_a_run_finds_its_sources_by_meaning_and_bills_the_question(
    semantic_app: FastAPI,
    db: Session,
    user: User,
    user_headers: dict[str, str],
    thread: Thread,
    embedder: AIModel,
    fake_llm: FakeLLM,
) -> None:
    with TestClient(semantic_app) as client:
        kb = new_kb(client, user_headers, embedder)
        for text in [FACT, *FILLER]:
            upload(client, kb["id"], user_headers, text)
        db.add(AgentKnowledgeBase(agent_id=thread.agent_id, knowledge_base_id=uuid.UUID(kb["id"])))
        db.commit()
        # The question's embedding (the default answer), then the chat answer.
        fake_llm.script(FakeResponse(), ok("Within seven days [1]."))
        posted = post(client, thread, user_headers, PARAPHRASE)
        assert posted.status_code == 202, posted.text

    [chat] = [r for r in fake_llm.requests if r.path.endswith("/chat/completions")]
    sources = [m["content"] for m in chat.json["messages"] if "Sources (cite" in m["content"]]
    assert len(sources) == 1
    assert FACT in sources[0].split("[2]")[0]  # the first source
    run = db.get(Run, uuid.UUID(posted.json()["run"]["id"]))
    assert run is not None
    assert run.passages_used == 1
    [question] = [e for e in embedding_entries(db, user) if e.run_id is not None]
    assert question.run_id == run.id
    assert question.agent_id == thread.agent_id
    assert question.thread_id == thread.id
    assert question.cost_usd > 0


def test_a_run_reserves_the_most_its_question_can_cost_to_embed(
    semantic_app: FastAPI,
    db: Session,
    user_headers: dict[str, str],
    thread: Thread,
    model: AIModel,
    embedder: AIModel,
) -> None:
    with TestClient(semantic_app) as client:
        kb = new_kb(client, user_headers, embedder)
        upload(client, kb["id"], user_headers, FACT)
        db.add(AgentKnowledgeBase(agent_id=thread.agent_id, knowledge_base_id=uuid.UUID(kb["id"])))
        db.commit()
        semantic_app.state.run_dispatcher = ParkedDispatcher()  # the run stays queued
        posted = post(client, thread, user_headers, PARAPHRASE)
    assert posted.status_code == 202, posted.text
    run = db.get(Run, uuid.UUID(posted.json()["run"]["id"]))
    assert run is not None
    conversation = estimate_tokens("Answer in one line.") + estimate_tokens(PARAPHRASE)
    chat = cost_usd(
        input_price_per_million=model.input_price_per_million,
        output_price_per_million=model.output_price_per_million,
        input_tokens=conversation + SOURCE_TOKENS,
        output_tokens=run.max_output_tokens,
    )
    # 2,000 characters of 4 bytes: the longest question embedded, by the token estimate.
    question = cost_usd(
        input_price_per_million=EMBED_PRICE,
        output_price_per_million=Decimal(0),
        input_tokens=estimate_tokens("\U0010ffff" * MAX_QUESTION_CHARS),
        output_tokens=0,
    )
    assert question > 0
    assert run.reserved_usd == chat + question


# ==================== quality ====================


def test_hybrid_recall_at_5_is_at_least_keywords_on_paraphrased_questions(
    semantic_app: FastAPI,
    db: Session,
    user_headers: dict[str, str],
    embedder: AIModel,
) -> None:
    """A generated corpus: each planted fact pairs two concepts of the fake embedder's
    synonym table; each question names them by other synonyms, half the time with one
    word of the fact kept (so keyword search finds some)."""
    from tests.modules.fake_embeddings import SYNONYMS

    groups = [words for words in SYNONYMS.values() if len(words) >= 3]
    facts: list[tuple[str, str]] = []
    for number in range(min(24, len(groups) - 1)):
        first, second = groups[number], groups[number + 1]
        fact = f"Entry {number} pairs the {first[0]} with the {second[0]}."
        kept = first[0] if number % 2 else first[1]
        question = f"What about a {kept} and a {second[2]}?"
        facts.append((fact, question))
    with TestClient(semantic_app) as client:
        kb = new_kb(client, user_headers, embedder, name="Corpus")
        for fact, _question in facts:
            upload(client, kb["id"], user_headers, fact)

        def recall(mode: str) -> float:
            found = 0
            for fact, question in facts:
                hits = texts(search(client, kb["id"], user_headers, question, mode=mode, limit=5))
                found += any(fact in hit for hit in hits)
            return found / len(facts)

        keyword, hybrid = recall("keyword"), recall("hybrid")
    assert hybrid >= keyword
    assert hybrid >= 0.9, (keyword, hybrid)
    assert db.exec(select(func.count()).select_from(Chunk)).one() >= len(facts)
