"""Celery, for running agent runs in worker processes (`agentry worker`)."""

import uuid
from typing import Any

from celery import Celery
from celery.signals import worker_ready

from app.core.config import settings
from app.modules.llm.client import LLMClient
from app.tasks.resources import build_llm_client, default_session
from app.tasks.runs import execute_run, recover_interrupted_runs

celery_app = Celery("agentry", broker=settings.CELERY_BROKER_URL or "redis://127.0.0.1:6379/0")
celery_app.conf.update(
    # A run is acknowledged once done, and handed to another worker if this one dies:
    # execute_run's claim makes a second delivery harmless.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_time_limit=settings.RUN_TIME_LIMIT_SECONDS + 30,
    task_soft_time_limit=settings.RUN_TIME_LIMIT_SECONDS,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    accept_content=["json"],
)


@celery_app.task(name="agentry.execute_run")
def execute_run_task(run_id: str) -> None:
    execute_run(uuid.UUID(run_id), session_factory=default_session, llm=_llm())


@worker_ready.connect
def _recover(**_kwargs: Any) -> None:
    recover_interrupted_runs(session_factory=default_session)


_client: LLMClient | None = None


def _llm() -> LLMClient:
    """One pooled client per worker process, created on its first run."""
    global _client
    if _client is None:
        _client = build_llm_client(settings)
    return _client
