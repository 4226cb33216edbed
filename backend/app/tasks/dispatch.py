"""Ways to deliver a run id to RunService.execute: a bounded thread pool inside the app
process (the default, so the quick start needs nothing else), Celery workers when
CELERY_BROKER_URL is set, or right away in the caller's thread (tests, debugging).

Whichever it is, the app process also sweeps: runs whose executor died are ended, and
queued runs nobody took are delivered again.
"""

import logging
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from celery import Celery
from sqlalchemy import Engine

from app.core.config import Settings
from app.modules.llm.client import LLMClient
from app.services.run_recovery import SweepReport
from app.services.run_runtime import QueueUnavailableError, RunPolicy, SessionFactory
from app.services.run_service import RunService
from app.tasks.background import RunHost
from app.tasks.celery_app import Publisher, build_celery
from app.tasks.resources import build_llm_client, session_factory_for

logger = logging.getLogger("agentry.runs")


class RunDispatcher(Protocol):
    policy: RunPolicy

    def dispatch(self, run_id: uuid.UUID) -> None:
        """Delivers a queued run; raises QueueUnavailableError if it cannot."""

    def recover(self) -> None:
        """At start-up: recover what dead processes left, start the background loops."""

    def close(self) -> None: ...


class ThreadPoolDispatcher:
    def __init__(
        self,
        *,
        workers: int,
        llm: LLMClient,
        policy: RunPolicy,
        session_factory: SessionFactory,
    ) -> None:
        self.policy = policy
        self.host = RunHost(policy=policy, session_factory=session_factory, llm=llm)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agentry-run")
        # Runs waiting in this pool: a sweep's re-delivery of one of them is a no-op.
        self._waiting: set[uuid.UUID] = set()
        self._lock = threading.Lock()

    def dispatch(self, run_id: uuid.UUID) -> None:
        with self._lock:
            if run_id in self._waiting:
                return
            self._waiting.add(run_id)
        try:
            future = self.pool.submit(self._execute, run_id)
        except RuntimeError as error:  # shutting down: the sweep of another process takes it
            with self._lock:
                self._waiting.discard(run_id)
            raise QueueUnavailableError("this process is shutting down") from error
        future.add_done_callback(_log_crash)

    def _execute(self, run_id: uuid.UUID) -> None:
        with self._lock:
            self._waiting.discard(run_id)
        self.host.execute(run_id)

    def recover(self) -> None:
        self.host.start(dispatch=self.dispatch)

    def close(self) -> None:
        # Runs not started stay queued for another process; running ones finish while
        # the heartbeat still renews their leases.
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.host.stop()


class InlineDispatcher:
    """Executes in the caller's thread before returning, with no background loops: for
    tests and debugging. `sweep()` runs one sweep."""

    def __init__(
        self,
        *,
        llm: LLMClient,
        policy: RunPolicy,
        session_factory: SessionFactory,
    ) -> None:
        self.policy = policy
        self.host = RunHost(policy=policy, session_factory=session_factory, llm=llm)

    def dispatch(self, run_id: uuid.UUID) -> None:
        self.host.execute(run_id)

    def recover(self) -> None:
        RunService.recover(
            session_factory=self.host.session_factory, policy=self.policy, dispatch=self.dispatch
        )

    def sweep(self) -> SweepReport:
        return RunService.sweep(
            session_factory=self.host.session_factory, policy=self.policy, dispatch=self.dispatch
        )

    def close(self) -> None:
        if self.host.llm is not None:
            self.host.llm.close()


class CeleryDispatcher:
    """Queues the run on the broker; `agentry worker` processes execute it. The app
    process still sweeps, so runs are re-delivered and ended with no worker restart."""

    def __init__(
        self,
        *,
        celery: Celery,
        policy: RunPolicy,
        publish_timeout: float,
        session_factory: SessionFactory,
    ) -> None:
        self.policy = policy
        self.host = RunHost(policy=policy, session_factory=session_factory)
        self.publisher = Publisher(celery, timeout=publish_timeout)

    def dispatch(self, run_id: uuid.UUID) -> None:
        self.publisher(run_id)

    def recover(self) -> None:
        self.host.start(dispatch=self.dispatch)

    def close(self) -> None:
        self.host.stop()
        self.publisher.close()


def build_dispatcher(config: Settings, engine: Engine) -> RunDispatcher:
    policy = RunPolicy.from_settings(config)
    session_factory = session_factory_for(engine)
    if config.CELERY_BROKER_URL:
        return CeleryDispatcher(
            celery=build_celery(config),
            policy=policy,
            publish_timeout=config.CELERY_PUBLISH_TIMEOUT_SECONDS,
            session_factory=session_factory,
        )
    return ThreadPoolDispatcher(
        workers=config.RUN_WORKERS,
        llm=build_llm_client(config),
        policy=policy,
        session_factory=session_factory,
    )


def _log_crash(future: Future[None]) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        logger.error("run delivery crashed", exc_info=error)
