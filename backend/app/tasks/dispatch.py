"""Ways to deliver a run id to RunService.execute, and a document id to
IngestionService.process: bounded thread pools inside the app process (the default, so
the quick start needs nothing else), Celery workers when CELERY_BROKER_URL is set, or
right away in the caller's thread (tests, debugging). Documents have pools and a queue
of their own, so a big upload never keeps a chat run waiting.

Whichever it is, the app process also sweeps: runs whose executor died are ended,
documents whose process died are queued again, and whatever is queued and overdue is
delivered again.
"""

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from celery import Celery
from sqlalchemy import Engine

from app.core.config import Settings
from app.modules.llm.client import LLMClient
from app.modules.storage import Storage
from app.services import index_service, ingestion_recovery
from app.services.ingestion_service import IngestPolicy
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

    def ingest(self, document_id: uuid.UUID) -> None:
        """Delivers a queued document to ingestion; raises QueueUnavailableError if it cannot."""

    def index(self, kb_id: uuid.UUID) -> None:
        """Delivers a knowledge base's semantic index build (on the ingestion lane);
        raises QueueUnavailableError if it cannot."""

    def recover(self) -> None:
        """At start-up: recover what dead processes left, start the background loops."""

    def close(self) -> None: ...


class _Lane:
    """A thread pool for one kind of job. A job already waiting in it is not queued
    twice: a sweep's re-delivery of one of them is a no-op."""

    def __init__(self, *, workers: int, name: str, work: Callable[[uuid.UUID], None]) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._work = work
        self._waiting: set[uuid.UUID] = set()
        self._lock = threading.Lock()

    def submit(self, job_id: uuid.UUID) -> None:
        with self._lock:
            if job_id in self._waiting:
                return
            self._waiting.add(job_id)
        try:
            future = self.pool.submit(self._run, job_id)
        except RuntimeError as error:  # shutting down: the sweep of another process takes it
            with self._lock:
                self._waiting.discard(job_id)
            raise QueueUnavailableError("this process is shutting down") from error
        future.add_done_callback(_log_crash)

    def _run(self, job_id: uuid.UUID) -> None:
        with self._lock:
            self._waiting.discard(job_id)
        self._work(job_id)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class ThreadPoolDispatcher:
    def __init__(
        self,
        *,
        workers: int,
        ingest_workers: int,
        llm: LLMClient,
        storage: Storage,
        policy: RunPolicy,
        ingest_policy: IngestPolicy,
        session_factory: SessionFactory,
    ) -> None:
        self.policy = policy
        self.host = RunHost(
            policy=policy,
            ingest_policy=ingest_policy,
            session_factory=session_factory,
            llm=llm,
            storage=storage,
        )
        self.runs = _Lane(workers=workers, name="agentry-run", work=self.host.execute)
        self.documents = _Lane(workers=ingest_workers, name="agentry-ingest", work=self.host.ingest)
        self.indexes = _Lane(workers=ingest_workers, name="agentry-index", work=self.host.index)

    def dispatch(self, run_id: uuid.UUID) -> None:
        self.runs.submit(run_id)

    def ingest(self, document_id: uuid.UUID) -> None:
        self.documents.submit(document_id)

    def index(self, kb_id: uuid.UUID) -> None:
        self.indexes.submit(kb_id)

    def recover(self) -> None:
        self.host.start(dispatch=self.dispatch, ingest=self.ingest, index=self.index)

    def close(self) -> None:
        # Runs and documents not started stay queued for another process; started ones
        # finish while the heartbeat still renews their leases.
        self.runs.shutdown()
        self.documents.shutdown()
        self.indexes.shutdown()
        self.host.stop()


class InlineDispatcher:
    """Executes and ingests in the caller's thread before returning, with no background
    loops: for tests and debugging. `sweep()` runs one sweep of runs,
    `sweep_documents()` one of documents."""

    def __init__(
        self,
        *,
        llm: LLMClient,
        storage: Storage,
        policy: RunPolicy,
        ingest_policy: IngestPolicy,
        session_factory: SessionFactory,
    ) -> None:
        self.policy = policy
        self.host = RunHost(
            policy=policy,
            ingest_policy=ingest_policy,
            session_factory=session_factory,
            llm=llm,
            storage=storage,
        )

    def dispatch(self, run_id: uuid.UUID) -> None:
        self.host.execute(run_id)

    def ingest(self, document_id: uuid.UUID) -> None:
        self.host.ingest(document_id)

    def index(self, kb_id: uuid.UUID) -> None:
        self.host.index(kb_id)

    def recover(self) -> None:
        RunService.recover(
            session_factory=self.host.session_factory, policy=self.policy, dispatch=self.dispatch
        )
        ingestion_recovery.recover(
            session_factory=self.host.session_factory,
            policy=self.host.ingest_policy,
            dispatch=self.ingest,
        )

    def sweep(self) -> SweepReport:
        return RunService.sweep(
            session_factory=self.host.session_factory, policy=self.policy, dispatch=self.dispatch
        )

    def sweep_documents(self) -> ingestion_recovery.IngestSweepReport:
        return ingestion_recovery.sweep(
            session_factory=self.host.session_factory,
            policy=self.host.ingest_policy,
            dispatch=self.ingest,
        )

    def sweep_indexes(self) -> int:
        return index_service.sweep(
            session_factory=self.host.session_factory,
            policy=self.host.index_policy,
            dispatch=self.index,
        )

    def close(self) -> None:
        if self.host.llm is not None:
            self.host.llm.close()


class CeleryDispatcher:
    """Queues runs and documents on the broker (documents on a queue of their own);
    `agentry worker` processes execute and ingest them. The app process still sweeps, so
    both are re-delivered and ended with no worker restart."""

    def __init__(
        self,
        *,
        celery: Celery,
        policy: RunPolicy,
        ingest_policy: IngestPolicy,
        publish_timeout: float,
        session_factory: SessionFactory,
    ) -> None:
        self.policy = policy
        self.host = RunHost(
            policy=policy, ingest_policy=ingest_policy, session_factory=session_factory
        )
        self.publisher = Publisher(celery, timeout=publish_timeout)

    def dispatch(self, run_id: uuid.UUID) -> None:
        self.publisher(run_id)

    def ingest(self, document_id: uuid.UUID) -> None:
        self.publisher.ingest(document_id)

    def index(self, kb_id: uuid.UUID) -> None:
        self.publisher.index(kb_id)

    def recover(self) -> None:
        self.host.start(dispatch=self.dispatch, ingest=self.ingest, index=self.index)

    def close(self) -> None:
        self.host.stop()
        self.publisher.close()


def build_dispatcher(config: Settings, engine: Engine, storage: Storage) -> RunDispatcher:
    policy = RunPolicy.from_settings(config)
    ingest_policy = IngestPolicy.from_settings(config)
    session_factory = session_factory_for(engine)
    if config.CELERY_BROKER_URL:
        return CeleryDispatcher(
            celery=build_celery(config),
            policy=policy,
            ingest_policy=ingest_policy,
            publish_timeout=config.CELERY_PUBLISH_TIMEOUT_SECONDS,
            session_factory=session_factory,
        )
    return ThreadPoolDispatcher(
        workers=config.RUN_WORKERS,
        ingest_workers=config.INGEST_WORKERS,
        llm=build_llm_client(config),
        storage=storage,
        policy=policy,
        ingest_policy=ingest_policy,
        session_factory=session_factory,
    )


def _log_crash(future: Future[None]) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        logger.error("delivery crashed", exc_info=error)
