"""Celery, for executing runs and ingesting documents in worker processes (`agentry
worker`), and the one way to put either on its queue: with a hard time bound, so a broker
that is down or frozen costs a post or an upload a few seconds at most, never a hung
request thread. Runs go to Celery's default queue, documents to a queue of their own."""

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from app.core.config import Settings
from app.modules.storage import build_storage
from app.services.ingestion_service import IngestPolicy
from app.services.run_runtime import QueueUnavailableError, RunPolicy, SessionFactory
from app.tasks.background import RunHost
from app.tasks.resources import build_llm_client

logger = logging.getLogger("agentry.runs")

EXECUTE_RUN = "agentry.execute_run"
INGEST_DOCUMENT = "agentry.ingest_document"
INDEX_KNOWLEDGE_BASE = "agentry.index_knowledge_base"
RUN_QUEUE = "celery"  # Celery's default queue
INGEST_QUEUE = "agentry.ingest"
# What `agentry worker` consumes unless told otherwise (--queues).
WORKER_QUEUES = (RUN_QUEUE, INGEST_QUEUE)
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


def build_celery(config: Settings) -> Celery:
    """The Celery app of this process: app processes publish run ids with it, and
    `agentry worker` (build_worker_app) executes them."""
    timeout = config.CELERY_PUBLISH_TIMEOUT_SECONDS
    celery = Celery("agentry", broker=config.CELERY_BROKER_URL or DEFAULT_BROKER_URL)
    celery.conf.update(
        # A worker holds no message it has not acknowledged: it takes one only when a thread
        # is free, and acknowledges it as the thread starts the run. When Redis drops, Celery
        # puts unacknowledged messages back on a connection that is already gone, and that
        # stops the worker for good (kombu's redis transport); with none held, it reconnects.
        # The run rows make up for it: the sweep delivers a queued run nobody started again
        # and ends a started one whose worker died, once its lease expires.
        task_acks_late=False,
        worker_disable_prefetch=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        task_default_queue=RUN_QUEUE,
        task_routes={INGEST_DOCUMENT: {"queue": INGEST_QUEUE}},
        accept_content=["json"],
        # Reconnect for as long as the broker is away, at start-up and after a drop.
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        broker_connection_timeout=timeout,
        broker_transport_options={
            "socket_timeout": timeout + 2,  # above the 1 s blocking pop of workers
            "socket_connect_timeout": timeout,
            "retry_on_timeout": True,
            # No copy of taken messages in Redis to restore after an hour: the sweep redelivers
            # sooner, and an acknowledgement then never needs the broker.
            "ack_emulation": False,
        },
        # A run in flight goes on when the broker blinks.
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return celery


def build_worker_app(config: Settings, *, session_factory: SessionFactory) -> Celery:
    """The Celery app of `agentry worker`: it executes runs and ingests documents, and
    hosts the sweep and the lease renewal from the moment the worker is ready until it
    shuts down."""
    celery = build_celery(config)
    runs = _WorkerRuns(config=config, celery=celery, session_factory=session_factory)

    @celery.task(name=EXECUTE_RUN)
    def execute_run(run_id: str) -> None:
        runs.host.execute(uuid.UUID(run_id))

    @celery.task(name=INGEST_DOCUMENT)
    def ingest_document(document_id: str) -> None:
        runs.host.ingest(uuid.UUID(document_id))

    @celery.task(name=INDEX_KNOWLEDGE_BASE)
    def index_knowledge_base(kb_id: str) -> None:
        runs.host.index(uuid.UUID(kb_id))

    worker_ready.connect(runs.start, weak=False)
    worker_shutdown.connect(runs.stop, weak=False)
    return celery


class Publisher:
    """Puts run ids (calling it) and document ids (`ingest`) on their queues within
    `timeout` seconds, or raises QueueUnavailableError.

    Publishing happens on a few threads of its own: a request waits at most `timeout`,
    and when every one of them is stuck on a frozen broker, posts fail over at once."""

    def __init__(self, celery: Celery, *, timeout: float, threads: int = 4) -> None:
        self._celery = celery
        self._timeout = timeout
        self._free = threading.BoundedSemaphore(threads)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="agentry-publish")

    def __call__(self, run_id: uuid.UUID) -> None:
        self._send(EXECUTE_RUN, run_id, RUN_QUEUE)

    def ingest(self, document_id: uuid.UUID) -> None:
        self._send(INGEST_DOCUMENT, document_id, INGEST_QUEUE)

    def index(self, kb_id: uuid.UUID) -> None:
        self._send(INDEX_KNOWLEDGE_BASE, kb_id, INGEST_QUEUE)

    def _send(self, task: str, object_id: uuid.UUID, queue: str) -> None:
        if not self._free.acquire(blocking=False):
            raise QueueUnavailableError("every publisher is waiting on the broker")
        try:
            future = self._pool.submit(self._publish, task, object_id, queue)
        except RuntimeError as error:  # shut down
            self._free.release()
            raise QueueUnavailableError("the publisher is shut down") from error
        try:
            future.result(timeout=self._timeout)
        except FutureTimeout as error:
            raise QueueUnavailableError("the broker did not answer in time") from error
        except Exception as error:
            raise QueueUnavailableError(f"the broker refused ({type(error).__name__})") from error

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _publish(self, task: str, object_id: uuid.UUID, queue: str) -> None:
        try:
            self._celery.send_task(task, args=[str(object_id)], queue=queue, retry=False)
        finally:
            self._free.release()


class _WorkerRuns:
    """A worker process's host of runs and documents, and its publisher (for
    re-deliveries by its sweep)."""

    def __init__(self, *, config: Settings, celery: Celery, session_factory: SessionFactory):
        self.celery = celery
        self.host = RunHost(
            policy=RunPolicy.from_settings(config),
            ingest_policy=IngestPolicy.from_settings(config),
            session_factory=session_factory,
            llm=build_llm_client(config),
            storage=build_storage(config),
        )
        self.publisher = Publisher(celery, timeout=config.CELERY_PUBLISH_TIMEOUT_SECONDS)

    def start(self, sender: Any = None, **_kwargs: Any) -> None:
        if getattr(sender, "app", None) is not self.celery:
            return  # another Celery app's worker (signals are process-wide)
        self.host.start(
            dispatch=self.publisher, ingest=self.publisher.ingest, index=self.publisher.index
        )
        logger.info("worker ready: sweeping every %ss", self.host.policy.sweep_interval)

    def stop(self, sender: Any = None, **_kwargs: Any) -> None:
        if getattr(sender, "app", None) is not self.celery:
            return
        self.host.stop()
        self.publisher.close()
