"""A conversation ready to run: a real local chat-completions server behind the app, a
priced model, an agent and a thread of the test user's."""

from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.core.config import ProviderSettings
from app.models.agent import Agent
from app.models.ai_model import AIModel
from app.models.thread import Thread
from app.models.user import User
from app.modules.llm.client import LLMClient
from app.modules.storage import build_storage
from app.tasks.dispatch import InlineDispatcher
from tests.environment import settings
from tests.factories import (
    create_agent,
    create_ai_model,
    create_thread,
    ingest_policy,
    run_policy,
)
from tests.modules.fake_llm import FakeLLM
from tests.smtp_server import Mailbox


@pytest.fixture
def llm(fake_llm: FakeLLM) -> Iterator[LLMClient]:
    client = LLMClient(
        providers={"openai": ProviderSettings(base_url=fake_llm.base_url)},
        read_timeout=2,
        max_retries=2,
        sleep=lambda _seconds: None,
    )
    yield client
    client.close()


@pytest.fixture
def run_app(app: FastAPI, llm: LLMClient, session_factory: Callable[[], Session]) -> FastAPI:
    app.state.run_dispatcher = InlineDispatcher(
        llm=llm,
        storage=build_storage(settings),
        policy=run_policy(),
        ingest_policy=ingest_policy(),
        session_factory=session_factory,
    )
    return app


@pytest.fixture
def mailbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mailbox]:
    """A real SMTP server on 127.0.0.1 that the app's mail goes to."""
    with Mailbox() as server:
        monkeypatch.setattr(settings, "SMTP_HOST", "127.0.0.1")
        monkeypatch.setattr(settings, "SMTP_PORT", server.port)
        monkeypatch.setattr(settings, "SMTP_STARTTLS", False)
        yield server


@pytest.fixture
def model(db: Session) -> AIModel:
    return create_ai_model(
        db,
        provider="openai",
        name="gpt-test",
        context_window=8_000,
        max_output_tokens=1_000,
        input_price_per_million=Decimal("2.500000"),
        output_price_per_million=Decimal("10.000000"),
    )


@pytest.fixture
def agent(db: Session, user: User, model: AIModel) -> Agent:
    agent = create_agent(db, owner=user, model=model, instructions="Answer in one line.")
    agent.max_output_tokens = 500
    db.add(agent)
    db.commit()
    return agent


@pytest.fixture
def thread(db: Session, user: User, agent: Agent) -> Thread:
    return create_thread(db, owner=user, agent=agent)


def post(
    client: TestClient, thread: Thread, headers: dict[str, str], content: str = "Hi"
) -> httpx2.Response:
    """Posts a message to a thread (a helper, not a fixture: import it from here)."""
    return client.post(
        f"/api/v1/threads/{thread.id}/messages", headers=headers, json={"content": content}
    )
