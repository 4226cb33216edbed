"""Ways to deliver a run to `execute_run`: a bounded thread pool inside the app process
(the default, so the quick start needs nothing else), Celery workers when
CELERY_BROKER_URL is set, or right away in the caller's thread (tests, debugging)."""

import logging
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from app.core.config import Settings
from app.modules.llm.client import LLMClient
from app.tasks.celery_app import execute_run_task
from app.tasks.resources import build_llm_client, default_session
from app.tasks.runs import SessionFactory, execute_run, recover_interrupted_runs

logger = logging.getLogger("agentry.runs")


class RunDispatcher(Protocol):
    def dispatch(self, run_id: uuid.UUID) -> None: ...

    def recover(self) -> None: ...

    def close(self) -> None: ...


class ThreadPoolDispatcher:
    def __init__(
        self, *, workers: int, llm: LLMClient, session_factory: SessionFactory = default_session
    ) -> None:
        self.llm = llm
        self.session_factory = session_factory
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agentry-run")

    def dispatch(self, run_id: uuid.UUID) -> None:
        future = self.pool.submit(
            execute_run, run_id, session_factory=self.session_factory, llm=self.llm
        )
        future.add_done_callback(_log_crash)

    def recover(self) -> None:
        for run_id in recover_interrupted_runs(session_factory=self.session_factory):
            self.dispatch(run_id)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=False)
        self.llm.close()


class InlineDispatcher:
    """Executes in the caller's thread before returning: for tests and debugging."""

    def __init__(
        self, *, llm: LLMClient, session_factory: SessionFactory = default_session
    ) -> None:
        self.llm = llm
        self.session_factory = session_factory

    def dispatch(self, run_id: uuid.UUID) -> None:
        execute_run(run_id, session_factory=self.session_factory, llm=self.llm)

    def recover(self) -> None:
        for run_id in recover_interrupted_runs(session_factory=self.session_factory):
            self.dispatch(run_id)

    def close(self) -> None:
        self.llm.close()


class CeleryDispatcher:
    """Queues the run on the broker; `agentry worker` processes execute it."""

    def dispatch(self, run_id: uuid.UUID) -> None:
        execute_run_task.delay(str(run_id))

    def recover(self) -> None:
        """Workers recover interrupted runs themselves; queued runs stay on the broker."""

    def close(self) -> None:
        pass


def build_dispatcher(config: Settings) -> RunDispatcher:
    if config.CELERY_BROKER_URL:
        return CeleryDispatcher()
    return ThreadPoolDispatcher(workers=config.RUN_WORKERS, llm=build_llm_client(config))


def _log_crash(future: Future[None]) -> None:
    error = future.exception()
    if error is not None:
        logger.error("run delivery crashed", exc_info=error)
