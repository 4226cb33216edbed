"""Celery, for executing runs in worker processes (`agentry worker`), and the one way to
put a run on its queue: with a hard time bound, so a broker that is down or frozen costs
a post a few seconds at most, never a hung request thread."""

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from app.core.config import settings
from app.services.run_runtime import QueueUnavailableError, RunPolicy
from app.tasks.background import RunHost
from app.tasks.resources import build_llm_client, default_session

logger = logging.getLogger("agentry.runs")

_PUBLISH_TIMEOUT = settings.CELERY_PUBLISH_TIMEOUT_SECONDS
celery_app = Celery("agentry", broker=settings.CELERY_BROKER_URL or "redis://127.0.0.1:6379/0")
celery_app.conf.update(
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
    accept_content=["json"],
    # Reconnect for as long as the broker is away, at start-up and after a drop.
    broker_connection_retry_on_startup=True,
    broker_connection_retry=True,
    broker_connection_max_retries=None,
    broker_connection_timeout=_PUBLISH_TIMEOUT,
    broker_transport_options={
        "socket_timeout": _PUBLISH_TIMEOUT + 2,  # above the 1 s blocking pop of workers
        "socket_connect_timeout": _PUBLISH_TIMEOUT,
        "retry_on_timeout": True,
        # No copy of taken messages in Redis to restore after an hour: the sweep redelivers
        # sooner, and an acknowledgement then never needs the broker.
        "ack_emulation": False,
    },
    # A run in flight goes on when the broker blinks.
    worker_cancel_long_running_tasks_on_connection_loss=False,
)


@celery_app.task(name="agentry.execute_run")
def execute_run_task(run_id: str) -> None:
    _worker_host().execute(uuid.UUID(run_id))


class Publisher:
    """Puts run ids on the queue within `timeout` seconds or raises QueueUnavailableError.

    Publishing happens on a few threads of its own: a request waits at most `timeout`,
    and when every one of them is stuck on a frozen broker, posts fail over at once."""

    def __init__(self, *, timeout: float, threads: int = 4) -> None:
        self._timeout = timeout
        self._free = threading.BoundedSemaphore(threads)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="agentry-publish")

    def __call__(self, run_id: uuid.UUID) -> None:
        if not self._free.acquire(blocking=False):
            raise QueueUnavailableError("every publisher is waiting on the broker")
        try:
            future = self._pool.submit(self._publish, run_id)
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

    def _publish(self, run_id: uuid.UUID) -> None:
        try:
            execute_run_task.apply_async(args=[str(run_id)], retry=False)
        finally:
            self._free.release()


_host: RunHost | None = None
_publisher: Publisher | None = None
_host_lock = threading.Lock()


def _worker_host() -> RunHost:
    """This worker process's runs host, created on first use."""
    global _host
    with _host_lock:
        if _host is None:
            _host = RunHost(
                policy=RunPolicy.from_settings(settings),
                session_factory=default_session,
                llm=build_llm_client(settings),
            )
        return _host


@worker_ready.connect
def _start_host(**_kwargs: Any) -> None:
    global _publisher
    _publisher = Publisher(timeout=_PUBLISH_TIMEOUT)
    _worker_host().start(dispatch=_publisher)
    logger.info("worker ready: sweeping every %ss", settings.RUN_SWEEP_INTERVAL_SECONDS)


@worker_shutdown.connect
def _stop_host(**_kwargs: Any) -> None:
    if _host is not None:
        _host.stop()
    if _publisher is not None:
        _publisher.close()
