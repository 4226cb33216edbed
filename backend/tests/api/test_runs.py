"""Runs end to end: a real local chat-completions server, the app, the database."""

import uuid
from decimal import Decimal

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from app.models.ai_model import AIModel
from app.models.run import Run, RunStatus
from app.models.thread import Message, MessageRole, Thread
from app.models.usage import UsageEntry
from app.models.user import User
from tests.api.conftest import post
from tests.factories import (
    ParkedDispatcher,
    auth_headers,
    create_agent,
    create_ai_model,
    create_thread,
    create_user,
)
from tests.modules.fake_llm import FakeLLM, FakeResponse, completion_body


class TestConversationTurn:
    def test_a_post_is_answered_billed_once_and_recorded(
        self,
        run_app: FastAPI,
        db: Session,
        thread: Thread,
        model: AIModel,
        user: User,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
    ) -> None:
        fake_llm.script(FakeResponse(json=completion_body("Paris.", 1200, 34)))
        with TestClient(run_app) as client:
            response = post(client, thread, user_headers, "Capital of France?")
            assert response.status_code == 202
            body = response.json()
            assert body["run"]["status"] == "queued"
            assert body["message"]["role"] == "user"
            run_id = body["run"]["id"]
            run = client.get(f"/api/v1/runs/{run_id}", headers=user_headers).json()
        assert run["status"] == "succeeded"
        assert run["attempts"] == 1
        assert run["messages_omitted"] == 0
        [sent] = fake_llm.requests
        assert sent.json["model"] == "gpt-test"
        assert sent.json["max_tokens"] == 500
        assert sent.json["messages"][0] == {"role": "system", "content": "Answer in one line."}
        assert sent.json["messages"][-1] == {"role": "user", "content": "Capital of France?"}
        db.expire_all()
        answer = db.exec(
            select(Message).where(
                Message.thread_id == thread.id, Message.role == MessageRole.ASSISTANT
            )
        ).one()
        expected_cost = Decimal("0.003340000000")  # 1200 * 2.5e-6 + 34 * 1e-5
        assert answer.content == "Paris."
        assert (answer.input_tokens, answer.output_tokens) == (1200, 34)
        assert answer.cost_usd == expected_cost
        assert answer.model_id == model.id
        [entry] = db.exec(select(UsageEntry).where(UsageEntry.run_id == uuid.UUID(run_id))).all()
        assert entry.cost_usd == expected_cost
        assert (entry.model_provider, entry.model_name) == ("openai", "gpt-test")
        assert entry.input_price_per_million == Decimal("2.500000")
        stored = db.get(Run, uuid.UUID(run_id))
        assert stored is not None
        assert stored.reserved_usd == 0
        assert stored.assistant_message_id == answer.id

    def test_429_then_success_counts_both_attempts(
        self,
        run_app: FastAPI,
        thread: Thread,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
    ) -> None:
        fake_llm.script(
            FakeResponse(status=429, json={"error": "slow down"}, headers={"Retry-After": "1"}),
            FakeResponse(json=completion_body("ok", 10, 2)),
        )
        with TestClient(run_app) as client:
            run_id = post(client, thread, user_headers).json()["run"]["id"]
            run = client.get(f"/api/v1/runs/{run_id}", headers=user_headers).json()
        assert (run["status"], run["attempts"]) == ("succeeded", 2)

    @pytest.mark.parametrize(
        ("responses", "code"),
        [
            ([FakeResponse(status=500, json={"error": "boom"})] * 3, "llm_unavailable"),
            ([FakeResponse(status=401, json={"error": "bad key sk-secret"})], "llm_auth_failed"),
            ([FakeResponse(status=200, body=b"{not json")], "llm_bad_response"),
            ([FakeResponse(status=400, json={"error": "nope"})], "llm_bad_request"),
            ([FakeResponse(json=completion_body("late"), delay=3)] * 3, "llm_timeout"),
        ],
        ids=["5xx", "401", "malformed", "400", "too-slow"],
    )
    def test_provider_failures_fail_the_run_and_bill_nothing(
        self,
        run_app: FastAPI,
        db: Session,
        thread: Thread,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
        responses: list[FakeResponse],
        code: str,
    ) -> None:
        fake_llm.script(*responses)
        with TestClient(run_app) as client:
            run_id = post(client, thread, user_headers).json()["run"]["id"]
            run = client.get(f"/api/v1/runs/{run_id}", headers=user_headers).json()
        assert run["status"] == "failed"
        assert run["error_code"] == code
        assert "secret" not in (run["error_message"] or "")
        assert "boom" not in (run["error_message"] or "")
        db.expire_all()
        assert db.exec(select(UsageEntry).where(UsageEntry.thread_id == thread.id)).all() == []
        assert (
            db.exec(
                select(Message).where(
                    Message.thread_id == thread.id, Message.role == MessageRole.ASSISTANT
                )
            ).all()
            == []
        )
        stored = db.get(Run, uuid.UUID(run_id))
        assert stored is not None
        assert stored.reserved_usd == 0

    def test_unconfigured_provider_accepts_the_post_and_fails_the_run(
        self, app: FastAPI, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        model = create_ai_model(db, provider="nowhere", name="m")
        thread = create_thread(db, owner=user, agent=create_agent(db, owner=user, model=model))
        with TestClient(app) as client:
            response = post(client, thread, user_headers)
            assert response.status_code == 202
            run = client.get(
                f"/api/v1/runs/{response.json()['run']['id']}", headers=user_headers
            ).json()
        assert (run["status"], run["error_code"], run["attempts"]) == (
            "failed",
            "llm_not_configured",
            0,
        )

    def test_the_same_run_delivered_twice_answers_once(
        self,
        run_app: FastAPI,
        db: Session,
        thread: Thread,
        user_headers: dict[str, str],
        fake_llm: FakeLLM,
    ) -> None:
        with TestClient(run_app) as client:
            run_id = uuid.UUID(post(client, thread, user_headers).json()["run"]["id"])
        run_app.state.run_dispatcher.dispatch(run_id)  # a second delivery
        db.expire_all()
        assert len(fake_llm.requests) == 1
        assert len(db.exec(select(UsageEntry).where(UsageEntry.run_id == run_id)).all()) == 1
        answers = db.exec(select(Message).where(Message.run_id == run_id)).all()
        assert len(answers) == 1


def test_a_message_too_long_for_the_model_fails_the_run_without_a_call(
    run_app: FastAPI,
    db: Session,
    user: User,
    user_headers: dict[str, str],
    fake_llm: FakeLLM,
) -> None:
    tiny = create_ai_model(db, context_window=600, max_output_tokens=100)
    thread = create_thread(db, owner=user, agent=create_agent(db, owner=user, model=tiny))
    with TestClient(run_app) as client:
        run_id = post(client, thread, user_headers, "word " * 1_000).json()["run"]["id"]
        run = client.get(f"/api/v1/runs/{run_id}", headers=user_headers).json()
    assert (run["status"], run["error_code"], run["attempts"]) == ("failed", "context_too_long", 0)
    assert fake_llm.requests == []


class TestRefusedPosts:
    def test_one_active_run_per_thread(
        self, app: FastAPI, db: Session, thread: Thread, user_headers: dict[str, str]
    ) -> None:
        app.state.run_dispatcher = ParkedDispatcher()  # leaves runs queued
        with TestClient(app) as client:
            assert post(client, thread, user_headers).status_code == 202
            second = post(client, thread, user_headers, "again")
        assert second.status_code == 409
        assert second.json()["code"] == "run_in_progress"
        assert len(db.exec(select(Message).where(Message.thread_id == thread.id)).all()) == 1

    def test_agent_without_model_is_422_and_nothing_is_stored(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        thread = create_thread(db, owner=user, agent=create_agent(db, owner=user))
        response = post(client, thread, user_headers)
        assert response.status_code == 422
        assert response.json()["code"] == "model_unavailable"
        assert db.exec(select(Message).where(Message.thread_id == thread.id)).all() == []
        assert db.exec(select(Run).where(Run.thread_id == thread.id)).all() == []

    def test_over_budget_is_402_and_nothing_is_stored(
        self,
        client: TestClient,
        db: Session,
        user: User,
        thread: Thread,
        user_headers: dict[str, str],
    ) -> None:
        user.monthly_budget_usd = Decimal("0.001")  # below 500 output tokens at $10/M
        db.add(user)
        db.commit()
        response = post(client, thread, user_headers)
        assert response.status_code == 402
        body = response.json()
        assert body["code"] == "quota_exceeded"
        assert Decimal(body["remaining"]) == Decimal("0.001")
        assert body["resets_at"].endswith(("+00:00", "Z"))
        assert db.exec(select(Message).where(Message.thread_id == thread.id)).all() == []
        assert db.exec(select(Run).where(Run.thread_id == thread.id)).all() == []


class TestCancel:
    def test_a_queued_run_can_be_cancelled_once(
        self, app: FastAPI, db: Session, thread: Thread, user_headers: dict[str, str]
    ) -> None:
        app.state.run_dispatcher = ParkedDispatcher()
        with TestClient(app) as client:
            run_id = post(client, thread, user_headers).json()["run"]["id"]
            cancelled = client.post(f"/api/v1/runs/{run_id}/cancel", headers=user_headers)
            again = client.post(f"/api/v1/runs/{run_id}/cancel", headers=user_headers)
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert again.status_code == 409
        assert again.json()["code"] == "run_finished"
        stored = db.get(Run, uuid.UUID(run_id))
        assert stored is not None
        assert stored.reserved_usd == 0

    def test_others_get_404_and_superusers_see_metadata_only(
        self,
        app: FastAPI,
        db: Session,
        thread: Thread,
        user_headers: dict[str, str],
        superuser_headers: dict[str, str],
    ) -> None:
        app.state.run_dispatcher = ParkedDispatcher()
        other = create_user(db)
        with TestClient(app) as client:
            run_id = post(client, thread, user_headers, "private words").json()["run"]["id"]
            stranger = client.get(f"/api/v1/runs/{run_id}", headers=auth_headers(db, user=other))
            admin = client.get(f"/api/v1/runs/{run_id}", headers=superuser_headers)
            runs = client.get(f"/api/v1/threads/{thread.id}/runs", headers=superuser_headers)
        assert stranger.status_code == 404
        assert admin.status_code == 200
        assert "private words" not in admin.text
        assert runs.status_code == 404  # the thread itself stays private


def test_thread_runs_are_listed_newest_first(
    app: FastAPI, db: Session, thread: Thread, user_headers: dict[str, str]
) -> None:
    with TestClient(app) as client:
        first = post(client, thread, user_headers).json()["run"]["id"]
        second = post(client, thread, user_headers).json()["run"]["id"]
        listed = client.get(f"/api/v1/threads/{thread.id}/runs", headers=user_headers).json()
    assert [r["id"] for r in listed["data"]] == [second, first]
    assert listed["count"] == 2
    assert db.exec(select(Run).where(col(Run.id).in_([uuid.UUID(first)]))).one().status == (
        RunStatus.FAILED
    )
