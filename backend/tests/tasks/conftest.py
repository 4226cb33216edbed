"""Execution tests run against committed rows (workers use their own connections), so
every test here cleans up what it made."""

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from fastapi import FastAPI
from sqlalchemy import delete
from sqlmodel import Session, col

from app.core.config import ProviderSettings
from app.main import create_app
from app.models.agent import Agent
from app.models.ai_model import AIModel
from app.models.thread import Thread
from app.models.usage import UsageEntry
from app.models.user import User
from app.modules.llm.client import LLMClient
from app.modules.storage import build_storage
from app.services.ingestion_service import IngestPolicy
from app.services.run_runtime import RunPolicy
from app.tasks.celery_app import build_celery
from app.tasks.dispatch import CeleryDispatcher, RunDispatcher, ThreadPoolDispatcher
from tests.environment import default_session, engine, settings
from tests.factories import (
    auth_headers,
    create_agent,
    create_ai_model,
    create_thread,
    create_user,
    ingest_policy,
    run_policy,
)
from tests.modules.fake_llm import FakeLLM
from tests.redis_server import RedisServer


@dataclass
class Committed:
    user: User
    headers: dict[str, str]
    model: AIModel
    agent: Agent
    threads: list[Thread]


@pytest.fixture
def committed() -> Iterator[Committed]:
    with Session(engine, expire_on_commit=False) as session:
        user = create_user(session)
        user.monthly_budget_usd = Decimal("0.005")
        session.add(user)
        model = create_ai_model(
            session,
            provider="openai",
            max_output_tokens=1_000,
            input_price_per_million=Decimal(0),
            output_price_per_million=Decimal(1),
        )
        agent = create_agent(session, owner=user, model=model)
        agent.max_output_tokens = 1_000
        session.add(agent)
        session.commit()
        threads = [create_thread(session, owner=user, agent=agent) for _ in range(12)]
        headers = auth_headers(session, user=user)
    try:
        yield Committed(user=user, headers=headers, model=model, agent=agent, threads=threads)
    finally:
        with Session(engine) as session:
            session.execute(delete(UsageEntry).where(col(UsageEntry.user_id) == user.id))
            session.execute(delete(User).where(col(User.id) == user.id))  # cascades
            session.execute(delete(AIModel).where(col(AIModel.id) == model.id))
            session.commit()


@pytest.fixture
def broker_url(redis_server: RedisServer) -> str:
    """The test's own redis-server, as a broker."""
    return redis_server.url()


def real_app(dispatcher: RunDispatcher) -> FastAPI:
    """The app with its own sessions on committed rows, delivering runs with `dispatcher`."""
    app = create_app(settings)
    app.state.run_dispatcher = dispatcher
    return app


def thread_pool_dispatcher(fake_llm: FakeLLM, *, workers: int) -> ThreadPoolDispatcher:
    """What an app process without a broker delivers runs with, calling `fake_llm` as the
    catalog's openai provider."""
    llm = LLMClient(providers={"openai": ProviderSettings(base_url=fake_llm.base_url)})
    return ThreadPoolDispatcher(
        workers=workers,
        ingest_workers=1,
        llm=llm,
        storage=build_storage(settings),
        policy=run_policy(),
        ingest_policy=ingest_policy(),
        session_factory=default_session,
    )


def celery_dispatcher(
    broker_url: str, *, policy: RunPolicy, publish_timeout: float
) -> CeleryDispatcher:
    """What an app process with CELERY_BROKER_URL=broker_url delivers runs with."""
    config = settings.model_copy(update={"CELERY_BROKER_URL": broker_url})
    return CeleryDispatcher(
        celery=build_celery(config),
        policy=policy,
        ingest_policy=IngestPolicy.from_settings(config),
        publish_timeout=publish_timeout,
        session_factory=default_session,
    )
