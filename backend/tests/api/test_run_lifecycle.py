"""Runs that end whatever the provider sends, priced and sent as they were posted."""

import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.core.types import MAX_REPORTED_TOKENS
from app.models.agent import Agent
from app.models.ai_model import AIModel
from app.models.run import Run, RunStatus
from app.models.thread import Message, MessageRole, Thread
from app.models.usage import UsageEntry
from app.models.user import User
from app.modules.llm.client import LLMClient
from app.modules.storage import build_storage
from app.tasks.dispatch import InlineDispatcher
from tests.api.conftest import post
from tests.environment import settings
from tests.factories import ParkedDispatcher, ingest_policy, run_policy
from tests.modules.fake_llm import FakeLLM, FakeResponse, completion_body


def answers(db: Session, thread: Thread) -> list[Message]:
    db.expire_all()
    statement = select(Message).where(
        Message.thread_id == thread.id, Message.role == MessageRole.ASSISTANT
    )
    return list(db.exec(statement).all())


def ledger(db: Session, run_id: str) -> list[UsageEntry]:
    return list(db.exec(select(UsageEntry).where(UsageEntry.run_id == uuid.UUID(run_id))).all())


class TestAnswersTheDatabaseWouldRefuse:
    def test_nul_characters_are_removed_and_the_run_succeeds(
        self,
        run_app: FastAPI,
        db: Session,
        thread: Thread,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
    ) -> None:
        fake_llm.script(FakeResponse(json=completion_body("Pa\x00ris\x00.", 10, 3)))
        with TestClient(run_app) as client:
            run_id = post(client, thread, user_headers).json()["run"]["id"]
            run = client.get(f"/api/v1/runs/{run_id}", headers=user_headers).json()
            page = client.get(f"/api/v1/threads/{thread.id}/messages", headers=user_headers)
        assert (run["status"], run["error_code"]) == ("succeeded", None)
        assert [m.content for m in answers(db, thread)] == ["Paris."]
        assert page.json()["data"][-1]["content"] == "Paris."
        assert len(ledger(db, run_id)) == 1

    def test_an_unreadable_answer_fails_the_run(
        self,
        run_app: FastAPI,
        db: Session,
        thread: Thread,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
    ) -> None:
        body = b'{"choices":[{"message":{"content":"a\\ud800b"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}'  # noqa: E501
        fake_llm.script(FakeResponse(body=body))
        with TestClient(run_app) as client:
            run_id = post(client, thread, user_headers).json()["run"]["id"]
            run = client.get(f"/api/v1/runs/{run_id}", headers=user_headers).json()
        assert (run["status"], run["error_code"]) == ("failed", "llm_bad_response")
        assert answers(db, thread) == []
        stored = db.get(Run, uuid.UUID(run_id))
        assert stored is not None
        assert stored.reserved_usd == 0


class TestAbsurdUsage:
    @pytest.mark.parametrize(
        ("reported", "recorded"),
        [(10**15, 10**15), (10**30, MAX_REPORTED_TOKENS)],
        ids=["1e15", "1e30"],
    )
    def test_is_billed_as_reported_up_to_the_cap_and_flagged(
        self,
        run_app: FastAPI,
        db: Session,
        user: User,
        thread: Thread,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
        reported: int,
        recorded: int,
    ) -> None:
        user.monthly_budget_usd = Decimal(100)
        db.add(user)
        db.commit()
        fake_llm.script(FakeResponse(json=completion_body("Big.", reported, reported)))
        with TestClient(run_app) as client:
            run_id = post(client, thread, user_headers).json()["run"]["id"]
            run = client.get(f"/api/v1/runs/{run_id}", headers=user_headers).json()
            quota = client.get("/api/v1/users/me/quota", headers=user_headers)
            usage = client.get("/api/v1/users/me/usage", headers=user_headers)
            later = post(client, thread, user_headers, "Again?")
        # $2.5/M in and $10/M out: 12.5 USD per million tokens each way.
        cost = Decimal(recorded) * Decimal("12.5") / 1_000_000
        assert run["status"] == "succeeded"
        assert Decimal(run["cost_usd"]) == cost
        [entry] = ledger(db, run_id)
        assert (entry.input_tokens, entry.output_tokens) == (recorded, recorded)
        assert entry.implausible is True
        assert entry.cost_usd == cost
        [answer] = answers(db, thread)
        assert (answer.input_tokens, answer.cost_usd) == (recorded, cost)
        assert quota.status_code == 200
        assert Decimal(quota.json()["spent"]) == cost
        assert usage.status_code == 200
        assert Decimal(usage.json()["totals"]["cost_usd"]) == cost
        assert usage.json()["totals"]["output_tokens"] == recorded
        assert later.status_code == 402  # the budget is gone, and says so

    def test_usage_within_the_window_is_not_flagged(
        self,
        run_app: FastAPI,
        db: Session,
        thread: Thread,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
    ) -> None:
        fake_llm.script(FakeResponse(json=completion_body("Small.", 7_500, 500)))
        with TestClient(run_app) as client:
            run_id = post(client, thread, user_headers).json()["run"]["id"]
        [entry] = ledger(db, run_id)
        assert entry.implausible is False


class TestPricedAsPosted:
    """A queued run sends the instructions, output limit and prices it was priced at."""

    def test_edits_while_queued_change_nothing_the_run_sends_or_pays(
        self,
        app: FastAPI,
        db: Session,
        user: User,
        agent: Agent,
        model: AIModel,
        thread: Thread,
        user_headers: dict[str, str],
        llm: LLMClient,
        session_factory: Callable[[], Session],
        superuser_headers: dict[str, str],
        fake_llm: FakeLLM,
    ) -> None:
        app.state.run_dispatcher = ParkedDispatcher()
        with TestClient(app) as client:
            run_id = post(client, thread, user_headers).json()["run"]["id"]
            edited = client.patch(
                f"/api/v1/agents/{agent.id}",
                headers=user_headers,
                json={"instructions": "x" * 20_000, "max_output_tokens": 1_000},
            )
            repriced = client.patch(
                f"/api/v1/models/{model.id}",
                headers=superuser_headers,
                json={"output_price_per_million": "1000"},
            )
        assert (edited.status_code, repriced.status_code) == (200, 200)
        fake_llm.script(FakeResponse(json=completion_body("Done.", 20, 500)))
        InlineDispatcher(
            llm=llm,
            storage=build_storage(settings),
            policy=run_policy(),
            ingest_policy=ingest_policy(),
            session_factory=session_factory,
        ).dispatch(uuid.UUID(run_id))
        [sent] = fake_llm.requests
        assert sent.json["messages"][0] == {"role": "system", "content": "Answer in one line."}
        assert sent.json["max_tokens"] == 500
        db.expire_all()
        run = db.get(Run, uuid.UUID(run_id))
        assert run is not None
        assert run.status == RunStatus.SUCCEEDED
        expected = Decimal("0.005050000000")  # 20 at $2.5/M + 500 at $10/M, as posted
        assert run.cost_usd == expected
        [entry] = ledger(db, run_id)
        assert (entry.cost_usd, entry.output_price_per_million) == (expected, Decimal(10))


class TestQueuedRunsEnd:
    def test_a_run_nobody_takes_fails_after_the_queue_timeout_and_frees_the_thread(
        self,
        app: FastAPI,
        db: Session,
        thread: Thread,
        user_headers: dict[str, str],
        llm: LLMClient,
        session_factory: Callable[[], Session],
    ) -> None:
        app.state.run_dispatcher = ParkedDispatcher()
        with TestClient(app) as client:
            run_id = post(client, thread, user_headers).json()["run"]["id"]
            blocked = post(client, thread, user_headers, "Still there?")
            sweeper = InlineDispatcher(
                llm=llm,
                storage=build_storage(settings),
                policy=run_policy(queue_timeout=timedelta(0)),
                ingest_policy=ingest_policy(),
                session_factory=session_factory,
            )
            stored = db.get(Run, uuid.UUID(run_id))
            assert stored is not None
            stored.lease_expires_at = stored.created_at  # overdue for delivery
            db.add(stored)
            db.commit()
            report = sweeper.sweep()
            run = client.get(f"/api/v1/runs/{run_id}", headers=user_headers).json()
            quota = client.get("/api/v1/users/me/quota", headers=user_headers).json()
            freed = post(client, thread, user_headers, "Now?")
        assert blocked.status_code == 409
        assert report.not_started == 1
        assert (run["status"], run["error_code"]) == ("failed", "run_not_started")
        assert Decimal(quota["reserved"]) == 0
        assert freed.status_code == 202
