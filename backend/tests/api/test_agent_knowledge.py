"""Agents that draw on knowledge bases: which ones (create, update, read, only the
owner's), and runs that send numbered sources inside the context budget and store the
citations their answers make. Documents are real PDFs ingested inline; the model is the
real local chat-completions server of tests/modules/fake_llm.py, which records what it
received."""

import re
import uuid
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection
from sqlmodel import Session, select

from app.core.pricing import cost_usd
from app.models.agent import Agent, AgentKnowledgeBase
from app.models.ai_model import AIModel
from app.models.citation import Citation
from app.models.document import Chunk
from app.models.knowledge_base import KnowledgeBase
from app.models.run import Run
from app.models.thread import MessageRole, Thread
from app.models.user import User
from app.modules.llm.context import estimate_tokens
from app.services.retrieval import SOURCE_TOKENS
from tests.api.conftest import post
from tests.documents import make_pdf
from tests.factories import (
    ParkedDispatcher,
    auth_headers,
    create_agent,
    create_ai_model,
    create_knowledge_base,
    create_message,
    create_thread,
    create_user,
)
from tests.modules.fake_llm import FakeLLM, ok
from tests.statements import statements_on

API = "/api/v1"
AGENTS = f"{API}/agents"
QUESTION = "What code opens the Zephyr vault?"


def links(db: Session, agent_id: uuid.UUID | str) -> set[uuid.UUID]:
    db.expire_all()
    rows = db.exec(
        select(AgentKnowledgeBase).where(AgentKnowledgeBase.agent_id == uuid.UUID(str(agent_id)))
    ).all()
    return {row.knowledge_base_id for row in rows}


def ids(*kbs: KnowledgeBase) -> list[str]:
    """As the API lists them: ordered by id."""
    return sorted(str(kb.id) for kb in kbs)


def upload_ready(
    client: TestClient, kb: KnowledgeBase, headers: dict[str, str], title: str, pages: list[str]
) -> dict[str, Any]:
    """Uploads a PDF of `pages` (unique content: stored files are shared by content) and
    answers the document, ingested by the inline dispatcher."""
    pages = [f"{pages[0]}\nReference {uuid.uuid4().hex}.", *pages[1:]]
    response = client.post(
        f"{API}/knowledge-bases/{kb.id}/documents",
        headers=headers,
        files={"file": (f"{title}.pdf", make_pdf(pages))},
        data={"title": title},
    )
    assert response.status_code == 202, response.text
    document = client.get(f"{API}/documents/{response.json()['id']}", headers=headers).json()
    assert document["status"] == "ready", document
    return dict(document)


def messages(client: TestClient, thread: Thread, headers: dict[str, str]) -> list[Any]:
    response = client.get(f"{API}/threads/{thread.id}/messages", headers=headers)
    assert response.status_code == 200
    return list(response.json()["data"])


def sources_message(sent: dict[str, Any]) -> str | None:
    """The content of the numbered sources' system message of a request, if it has one."""
    found = [
        m["content"]
        for m in sent["messages"]
        if m["role"] == "system" and "Sources (cite them as [n]):" in m["content"]
    ]
    assert len(found) <= 1
    return found[0] if found else None


def labels(sources: str) -> list[int]:
    return [int(n) for n in re.findall(r"^\[(\d+)\] ", sources, flags=re.MULTILINE)]


def link(db: Session, agent: Agent, *kbs: KnowledgeBase) -> None:
    db.add_all(AgentKnowledgeBase(agent_id=agent.id, knowledge_base_id=kb.id) for kb in kbs)
    db.commit()


# ==================== which knowledge bases ====================


class TestAgentKnowledgeBases:
    def test_created_with_mine_read_and_listed(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        first = create_knowledge_base(db, owner=user)
        second = create_knowledge_base(db, owner=user)
        response = client.post(
            AGENTS,
            headers=user_headers,
            json={
                "name": "Librarian",
                "knowledge_base_ids": [str(second.id), str(first.id), str(second.id)],
            },
        )
        assert response.status_code == 201, response.text
        agent_id = response.json()["id"]
        assert response.json()["knowledge_base_ids"] == ids(first, second)  # repeats once
        assert links(db, agent_id) == {first.id, second.id}
        read = client.get(f"{AGENTS}/{agent_id}", headers=user_headers)
        assert read.status_code == 200
        assert read.json()["knowledge_base_ids"] == ids(first, second)
        listed = client.get(AGENTS, headers=user_headers).json()["data"]
        assert [a["knowledge_base_ids"] for a in listed] == [ids(first, second)]

    def test_none_by_default(
        self, client: TestClient, db: Session, user_headers: dict[str, str]
    ) -> None:
        response = client.post(AGENTS, headers=user_headers, json={"name": "Plain"})
        assert response.status_code == 201
        assert response.json()["knowledge_base_ids"] == []
        assert links(db, response.json()["id"]) == set()

    def test_update_replaces_keeps_or_clears(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        first, second = create_knowledge_base(db, owner=user), create_knowledge_base(db, owner=user)
        agent = create_agent(db, owner=user)
        link(db, agent, first)
        url = f"{AGENTS}/{agent.id}"

        replaced = client.patch(
            url, headers=user_headers, json={"knowledge_base_ids": [str(second.id)]}
        )
        assert replaced.status_code == 200
        assert replaced.json()["knowledge_base_ids"] == ids(second)
        assert links(db, agent.id) == {second.id}

        renamed = client.patch(url, headers=user_headers, json={"name": "Renamed"})
        assert renamed.json()["knowledge_base_ids"] == ids(second)  # absent: unchanged
        assert links(db, agent.id) == {second.id}

        refused = client.patch(url, headers=user_headers, json={"knowledge_base_ids": None})
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["type"] == "null_not_allowed"
        assert links(db, agent.id) == {second.id}

        cleared = client.patch(url, headers=user_headers, json={"knowledge_base_ids": []})
        assert cleared.status_code == 200
        assert cleared.json()["knowledge_base_ids"] == []
        assert links(db, agent.id) == set()

    @pytest.mark.parametrize("whose", ["someone_elses", "missing"])
    def test_a_knowledge_base_not_mine_is_422_and_nothing_is_stored(
        self,
        client: TestClient,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        whose: str,
    ) -> None:
        mine = create_knowledge_base(db, owner=user)
        other = create_knowledge_base(db, owner=create_user(db))
        bad = other.id if whose == "someone_elses" else uuid.uuid4()
        created = client.post(
            AGENTS,
            headers=user_headers,
            json={"name": "Thief", "knowledge_base_ids": [str(mine.id), str(bad)]},
        )
        assert created.status_code == 422
        body = created.json()
        assert body["code"] == "knowledge_base_not_found"
        assert body["errors"][0]["loc"] == ["body", "knowledge_base_ids"]
        assert str(bad) not in created.text  # never says whose it is
        assert db.exec(select(Agent).where(Agent.name == "Thief")).all() == []

        agent = create_agent(db, owner=user)
        link(db, agent, mine)
        updated = client.patch(
            f"{AGENTS}/{agent.id}", headers=user_headers, json={"knowledge_base_ids": [str(bad)]}
        )
        assert updated.status_code == 422
        assert updated.json()["code"] == "knowledge_base_not_found"
        assert links(db, agent.id) == {mine.id}

    def test_at_most_twenty(
        self, client: TestClient, db: Session, user_headers: dict[str, str]
    ) -> None:
        many = [str(uuid.uuid4()) for _ in range(21)]
        response = client.post(
            AGENTS, headers=user_headers, json={"name": "Greedy", "knowledge_base_ids": many}
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "knowledge_base_ids"]
        assert db.exec(select(Agent).where(Agent.name == "Greedy")).all() == []

    def test_a_superuser_attaches_only_the_agents_owners(
        self,
        client: TestClient,
        db: Session,
        user: User,
        superuser: User,
        superuser_headers: dict[str, str],
    ) -> None:
        owners = create_knowledge_base(db, owner=user)
        admins = create_knowledge_base(db, owner=superuser)
        agent = create_agent(db, owner=user)
        url = f"{AGENTS}/{agent.id}"
        refused = client.patch(
            url, headers=superuser_headers, json={"knowledge_base_ids": [str(admins.id)]}
        )
        assert refused.status_code == 422
        assert refused.json()["code"] == "knowledge_base_not_found"
        assert links(db, agent.id) == set()
        accepted = client.patch(
            url, headers=superuser_headers, json={"knowledge_base_ids": [str(owners.id)]}
        )
        assert accepted.status_code == 200
        assert accepted.json()["knowledge_base_ids"] == ids(owners)
        assert links(db, agent.id) == {owners.id}

    def test_a_deleted_knowledge_base_leaves_its_agents(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        kept, deleted = create_knowledge_base(db, owner=user), create_knowledge_base(db, owner=user)
        agent = create_agent(db, owner=user)
        link(db, agent, kept, deleted)
        response = client.delete(f"{API}/knowledge-bases/{deleted.id}", headers=user_headers)
        assert response.status_code == 204
        read = client.get(f"{AGENTS}/{agent.id}", headers=user_headers)
        assert read.json()["knowledge_base_ids"] == ids(kept)
        assert links(db, agent.id) == {kept.id}

    def test_a_deleted_agent_takes_its_links(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        kb = create_knowledge_base(db, owner=user)
        agent = create_agent(db, owner=user)
        link(db, agent, kb)
        assert client.delete(f"{AGENTS}/{agent.id}", headers=user_headers).status_code == 204
        assert links(db, agent.id) == set()
        assert db.get(KnowledgeBase, kb.id) is not None

    def test_one_query_for_a_pages_knowledge_bases(
        self,
        client: TestClient,
        db: Session,
        connection: Connection,
        user: User,
        user_headers: dict[str, str],
    ) -> None:
        def statements_for_a_page() -> int:
            with statements_on(connection) as seen:
                response = client.get(AGENTS, headers=user_headers)
            assert response.status_code == 200
            return len(seen)

        link(db, create_agent(db, owner=user), create_knowledge_base(db, owner=user))
        one = statements_for_a_page()
        for _ in range(5):
            link(db, create_agent(db, owner=user), create_knowledge_base(db, owner=user))
        assert statements_for_a_page() == one

    def test_a_page_its_count_and_links_in_one_statement(
        self,
        client: TestClient,
        db: Session,
        connection: Connection,
        user: User,
        user_headers: dict[str, str],
    ) -> None:
        kbs = [create_knowledge_base(db, owner=user) for _ in range(3)]
        plain = create_agent(db, owner=user, name="a plain")
        linked = create_agent(db, owner=user, name="b linked")
        link(db, linked, *kbs)
        someone = create_user(db)
        other = create_agent(db, owner=someone, name="c someone else's")
        link(db, other, create_knowledge_base(db, owner=someone))
        plain_id, linked_id, expected = str(plain.id), str(linked.id), ids(*kbs)
        with statements_on(connection) as seen:
            page = client.get(AGENTS, headers=user_headers, params={"sort": "name"}).json()
            read = client.get(f"{AGENTS}/{linked_id}", headers=user_headers).json()
        assert page["count"] == 2
        assert [(a["id"], a["knowledge_base_ids"]) for a in page["data"]] == [
            (plain_id, []),
            (linked_id, expected),
        ]
        assert read["knowledge_base_ids"] == expected
        # Each request: its login-session check, then one statement for the answer (the
        # test's own savepoints aside).
        queries = [sql for sql in seen if "SAVEPOINT" not in sql]
        assert len(queries) == 4, "\n---\n".join(queries)

    @pytest.mark.parametrize(("skip", "shown"), [(0, 3), (2, 1), (3, 0), (50, 0)])
    def test_the_count_holds_on_every_page(
        self,
        client: TestClient,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        skip: int,
        shown: int,
    ) -> None:
        for name in ("a", "b", "c"):
            create_agent(db, owner=user, name=name)
        response = client.get(
            AGENTS, headers=user_headers, params={"skip": skip, "sort": "created_at"}
        )
        assert response.status_code == 200
        assert (response.json()["count"], len(response.json()["data"])) == (3, shown)

    def test_an_empty_list_counts_zero(
        self, client: TestClient, user_headers: dict[str, str]
    ) -> None:
        response = client.get(AGENTS, headers=user_headers)
        assert response.status_code == 200
        assert response.json() == {"data": [], "count": 0}


# ==================== answers that cite ====================


@pytest.fixture
def kb(db: Session, user: User, agent: Agent) -> KnowledgeBase:
    """A knowledge base of the test user's, which the conftest's agent draws on."""
    knowledge_base = create_knowledge_base(db, owner=user, name="Bank")
    link(db, agent, knowledge_base)
    return knowledge_base


class TestAnswersThatCite:
    def test_sources_are_sent_and_the_answers_markers_stored(
        self,
        run_app: FastAPI,
        db: Session,
        kb: KnowledgeBase,
        thread: Thread,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
    ) -> None:
        fake_llm.script(ok("It is 7391 [1]. See also [9]."))
        with TestClient(run_app) as client:
            document = upload_ready(
                client,
                kb,
                user_headers,
                "Bank handbook",
                [
                    "Welcome to the handbook of the bank.",
                    "The Zephyr vault opens with code 7391.",
                    "Lunch is served at noon in the canteen.",
                ],
            )
            posted = post(client, thread, user_headers, QUESTION)
            assert posted.status_code == 202
            assert posted.json()["message"]["citations"] == []
            run = client.get(f"{API}/runs/{posted.json()['run']['id']}", headers=user_headers)
            before = messages(client, thread, user_headers)
            [chunk] = db.exec(
                select(Chunk).where(
                    Chunk.document_id == uuid.UUID(document["id"]), Chunk.page_start == 2
                )
            ).all()
            deleted = client.delete(f"{API}/documents/{document['id']}", headers=user_headers)
            after = messages(client, thread, user_headers)

        [sent] = fake_llm.requests
        chat = sent.json["messages"]
        assert chat[0] == {"role": "system", "content": "Answer in one line."}
        assert chat[-1] == {"role": "user", "content": QUESTION}
        sources = sources_message(sent.json)
        assert sources is not None
        assert chat[1]["content"] == sources
        assert "cite every source you use" in sources
        assert "[1] Bank handbook, p. 2\nThe Zephyr vault opens with code 7391." in sources

        citation = {
            "index": 1,
            "document_id": document["id"],
            "chunk_id": chunk.id,
            "document_title": "Bank handbook",
            "page_start": 2,
            "page_end": 2,
            "quote": chunk.text,
        }
        assert [m["role"] for m in before] == ["user", "assistant"]
        assert before[0]["citations"] == []
        assert before[1]["content"] == "It is 7391 [1]. See also [9]."
        assert before[1]["citations"] == [citation]  # [9] named no source: dropped
        assert run.json()["passages_retrieved"] >= 1
        assert run.json()["passages_used"] == 1
        stored_run = db.get(Run, uuid.UUID(run.json()["id"]))
        assert stored_run is not None
        assert stored_run.passages_used == 1
        [stored] = db.exec(select(Citation)).all()
        assert (stored.message_id, stored.run_id) == (
            uuid.UUID(before[1]["id"]),
            stored_run.id,
        )

        # The document and its passages are gone; the citation reads the same.
        assert deleted.status_code == 204
        assert db.exec(select(Chunk).where(Chunk.id == chunk.id)).all() == []
        assert after == before

    def test_lists_and_repeats_count_once_in_order_of_first_use(
        self,
        run_app: FastAPI,
        db: Session,
        kb: KnowledgeBase,
        thread: Thread,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
    ) -> None:
        fake_llm.script(ok("Both [2][1], as [1, 2] say; not [0], [3] or [12345]."))
        with TestClient(run_app) as client:
            upload_ready(client, kb, user_headers, "Vaults", ["The Zephyr vault is green."])
            upload_ready(client, kb, user_headers, "Codes", ["The Zephyr code is 7391."])
            run_id = post(client, thread, user_headers, QUESTION).json()["run"]["id"]
            run = client.get(f"{API}/runs/{run_id}", headers=user_headers).json()
            answer = messages(client, thread, user_headers)[1]
        sources = sources_message(fake_llm.requests[0].json)
        assert sources is not None
        assert labels(sources) == [1, 2]
        assert run["passages_retrieved"] == 2
        assert [c["index"] for c in answer["citations"]] == [2, 1]
        assert run["passages_used"] == 2
        assert len(db.exec(select(Citation)).all()) == 2

    def test_a_follow_up_is_searched_with_the_question_before_it(
        self,
        run_app: FastAPI,
        kb: KnowledgeBase,
        thread: Thread,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
    ) -> None:
        with TestClient(run_app) as client:
            upload_ready(client, kb, user_headers, "Vaults", ["The Zephyr vault is painted green."])
            post(client, thread, user_headers, "Tell me about the Zephyr vault please.")
            post(client, thread, user_headers, "Colour?")  # no word of it is in any passage
            post(client, thread, user_headers, "Describe for me any colour you like in sunsets.")
        first, follow_up, long_one = (sources_message(r.json) for r in fake_llm.requests)
        assert first is not None
        assert "[1] Vaults, p. 1\nThe Zephyr vault" in first
        assert follow_up is not None
        assert "[1] Vaults, p. 1\nThe Zephyr vault" in follow_up
        assert long_one is None  # eight words or more: read alone; none match

    def test_an_agent_without_knowledge_bases_sends_no_sources_and_cites_nothing(
        self,
        run_app: FastAPI,
        db: Session,
        user: User,
        thread: Thread,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
    ) -> None:
        fake_llm.script(ok("It is 7391 [1]."))
        with TestClient(run_app) as client:
            unused = create_knowledge_base(db, owner=user)  # mine, but not the agent's
            upload_ready(client, unused, user_headers, "Vaults", ["The Zephyr vault code is 7391."])
            run_id = post(client, thread, user_headers, QUESTION).json()["run"]["id"]
            run = client.get(f"{API}/runs/{run_id}", headers=user_headers).json()
            answer = messages(client, thread, user_headers)[1]
        [sent] = fake_llm.requests
        assert [m["role"] for m in sent.json["messages"]] == ["system", "user"]
        assert sources_message(sent.json) is None
        assert answer["citations"] == []
        assert (run["passages_retrieved"], run["passages_used"]) == (None, None)
        assert db.exec(select(Citation)).all() == []
        stored = db.get(Run, uuid.UUID(run_id))
        assert stored is not None
        assert stored.source_tokens == 0

    def test_retrieval_never_crosses_owners(
        self,
        run_app: FastAPI,
        db: Session,
        agent: Agent,
        kb: KnowledgeBase,
        thread: Thread,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
    ) -> None:
        other = create_user(db)
        theirs = create_knowledge_base(db, owner=other, name="Theirs")
        with TestClient(run_app) as client:
            upload_ready(client, kb, user_headers, "Fruit", ["Bananas grow in bunches."])
            upload_ready(
                client,
                theirs,
                auth_headers(db, user=other),
                "Their vault",
                ["The Zephyr vault opens with code 0000."],
            )
            # Even a link the API would refuse (written here behind its back) finds nothing:
            # the owner is a condition of the search itself.
            link(db, agent, theirs)
            run_id = post(client, thread, user_headers, QUESTION).json()["run"]["id"]
            run = client.get(f"{API}/runs/{run_id}", headers=user_headers).json()
        [sent] = fake_llm.requests
        assert "0000" not in str(sent.json)
        assert "Their vault" not in str(sent.json)
        assert sources_message(sent.json) is None  # nothing of mine matches either
        assert run["status"] == "succeeded"
        assert run["passages_retrieved"] == 0
        assert run["passages_used"] == 0
        assert db.exec(select(Citation)).all() == []

    @pytest.mark.parametrize(
        "content",
        [
            "Zephyr " + "x" * 5_000,  # a word longer than any full-text index takes
            "Zephyr's \"vault\" & | ! :* ( ) -code OR NOT NEAR(a b) \\ ' ''",
            "Zephyr 🔐 金庫 " + " ".join(f"w{n}" for n in range(2_000)),  # many words
            "?!… —",  # no word at all
        ],
        ids=["long-word", "operators", "many-words", "no-words"],
    )
    def test_any_message_is_searched_safely(
        self,
        run_app: FastAPI,
        kb: KnowledgeBase,
        thread: Thread,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
        content: str,
    ) -> None:
        with TestClient(run_app) as client:
            upload_ready(client, kb, user_headers, "Vaults", ["The Zephyr vault is green."])
            posted = post(client, thread, user_headers, content)
            assert posted.status_code == 202
            run = client.get(f"{API}/runs/{posted.json()['run']['id']}", headers=user_headers)
        assert run.json()["status"] == "succeeded"
        [sent] = fake_llm.requests
        sources = sources_message(sent.json)
        if content.startswith("Zephyr"):
            assert sources is not None
            assert "[1] Vaults, p. 1\nThe Zephyr vault is green." in sources
        else:
            assert sources is None
            assert run.json()["passages_retrieved"] == 0

    @pytest.mark.parametrize("context_window", [1_400, 260], ids=["some-fit", "none-fit"])
    def test_sources_that_do_not_fit_the_window_are_dropped(
        self,
        run_app: FastAPI,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
        context_window: int,
    ) -> None:
        model = create_ai_model(
            db,
            provider="openai",
            name="gpt-small",
            context_window=context_window,
            max_output_tokens=200,
        )
        agent = create_agent(db, owner=user, model=model, instructions="Answer in one line.")
        kb = create_knowledge_base(db, owner=user)
        link(db, agent, kb)
        thread = create_thread(db, owner=user, agent=agent)
        filler = " ".join(["alpha beta gamma delta epsilon"] * 30)
        with TestClient(run_app) as client:
            for name in ("North", "South", "East"):
                upload_ready(
                    client,
                    kb,
                    user_headers,
                    name,
                    [f"Zephyr {name} one. {filler}", f"Zephyr {name} two. {filler}"],
                )
            hits = client.get(
                f"{API}/knowledge-bases/{kb.id}/search",
                headers=user_headers,
                params={"q": "Where is Zephyr?"},
            ).json()["data"]
            run_id = post(client, thread, user_headers, "Where is Zephyr?").json()["run"]["id"]
            run = client.get(f"{API}/runs/{run_id}", headers=user_headers).json()
        assert len(hits) == 6
        [sent] = fake_llm.requests
        budget = context_window - sent.json["max_tokens"]
        assert sum(estimate_tokens(m["content"]) for m in sent.json["messages"]) <= budget
        assert sent.json["messages"][-1]["content"] == "Where is Zephyr?"
        sources = sources_message(sent.json)
        kept = labels(sources) if sources is not None else []
        assert kept == list(range(1, len(kept) + 1))  # the best ones, numbered in order
        assert run["passages_retrieved"] == len(kept)
        assert run["status"] == "succeeded"
        if context_window == 1_400:
            assert 1 <= len(kept) < 6
        else:
            assert kept == []


class TestCitationsOfAPage:
    def test_one_query_for_a_pages_citations(
        self,
        client: TestClient,
        db: Session,
        connection: Connection,
        thread: Thread,
        user_headers: dict[str, str],
    ) -> None:
        documents: list[str] = []

        def cite(count: int) -> None:
            for _ in range(count):
                answer = create_message(db, thread=thread, role=MessageRole.ASSISTANT)
                document_ids = {n: uuid.uuid4() for n in (2, 1)}
                documents.append(str(document_ids[1]))
                db.add_all(
                    Citation(
                        message_id=answer.id,
                        run_id=uuid.uuid4(),
                        index=n,
                        document_id=document_ids[n],
                        chunk_id=n,
                        document_title="Handbook",
                        page_start=n,
                        page_end=n,
                        quote=f"Passage {n}.",
                    )
                    for n in (2, 1)
                )
                db.commit()

        def statements_for_a_page() -> tuple[int, list[Any]]:
            url = f"{API}/threads/{thread.id}/messages"
            with statements_on(connection) as seen:
                response = client.get(url, headers=user_headers)
            assert response.status_code == 200
            return len([sql for sql in seen if "SAVEPOINT" not in sql]), response.json()["data"]

        cite(1)
        one, data = statements_for_a_page()
        assert one == 2  # the login-session check, then the page with its citations
        assert [c["index"] for c in data[0]["citations"]] == [2, 1]  # as stored: first use
        assert data[0]["citations"][1] == {
            "index": 1,
            "document_id": documents[0],
            "chunk_id": 1,
            "document_title": "Handbook",
            "page_start": 1,
            "page_end": 1,
            "quote": "Passage 1.",
        }
        cite(5)
        more, data = statements_for_a_page()
        assert more == one
        assert len(data) == 6
        assert all(len(message["citations"]) == 2 for message in data)
        assert [m["citations"][1]["document_id"] for m in data] == documents


# ==================== pricing ====================


class TestSourcesArePriced:
    def test_a_run_reserves_room_for_its_sources_and_sends_as_priced(
        self,
        run_app: FastAPI,
        db: Session,
        user: User,
        agent: Agent,
        model: AIModel,
        thread: Thread,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
    ) -> None:
        plain = create_agent(db, owner=user, model=model, instructions="Answer in one line.")
        plain.max_output_tokens = 500
        db.add(plain)
        db.commit()
        plain_thread = create_thread(db, owner=user, agent=plain)
        kb = create_knowledge_base(db, owner=user)
        link(db, agent, kb)
        conversation = estimate_tokens("Answer in one line.") + estimate_tokens(QUESTION)

        def worst_case(input_tokens: int) -> Decimal:
            return cost_usd(
                input_price_per_million=model.input_price_per_million,
                output_price_per_million=model.output_price_per_million,
                input_tokens=input_tokens,
                output_tokens=500,
            )

        with TestClient(run_app) as client:
            upload_ready(client, kb, user_headers, "Vaults", ["The Zephyr vault code is 7391."])
            executor = run_app.state.run_dispatcher
            run_app.state.run_dispatcher = ParkedDispatcher()  # runs stay queued
            grounded = post(client, thread, user_headers, QUESTION).json()["run"]["id"]
            ungrounded = post(client, plain_thread, user_headers, QUESTION).json()["run"]["id"]
            db.expire_all()
            queued = {run_id: db.get(Run, uuid.UUID(run_id)) for run_id in (grounded, ungrounded)}
            # What was reserved: the conversation, plus the most the sources may take.
            assert {
                run_id: (run.reserved_usd, run.source_tokens)
                for run_id, run in queued.items()
                if run
            } == {
                grounded: (worst_case(conversation + SOURCE_TOKENS), SOURCE_TOKENS),
                ungrounded: (worst_case(conversation), 0),
            }
            # Knowledge added after the post is not sent: the run goes as it was priced.
            link(db, plain, kb)
            executor.dispatch(uuid.UUID(grounded))
            executor.dispatch(uuid.UUID(ungrounded))
            runs = {
                run_id: client.get(f"{API}/runs/{run_id}", headers=user_headers).json()
                for run_id in (grounded, ungrounded)
            }

        grounded_sent, ungrounded_sent = fake_llm.requests
        assert sources_message(grounded_sent.json) is not None
        assert sources_message(ungrounded_sent.json) is None
        assert runs[grounded]["status"] == runs[ungrounded]["status"] == "succeeded"
        assert runs[grounded]["passages_retrieved"] == 1
        assert runs[ungrounded]["passages_retrieved"] is None
