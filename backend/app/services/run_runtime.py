"""What the run services need from the process they run in: sessions, timings, a way to
deliver a run, and the leases this process holds. Built at the composition root."""

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session

from app.core.config import Settings

SessionFactory = Callable[[], Session]


class QueueUnavailableError(Exception):
    """The queue did not take the run (broker down or too slow); the sweep retries."""


# Hands a queued run to an executor; raises QueueUnavailableError if it cannot.
Dispatch = Callable[[uuid.UUID], None]


@dataclass(frozen=True)
class RunPolicy:
    lease: timedelta  # how long a claimed run stays ours without a renewal
    sweep_interval: float  # seconds between sweeps of overdue leases
    redeliver_after: timedelta  # first wait before a queued run is delivered again
    queue_timeout: timedelta  # a run nobody started by then fails with run_not_started
    time_limit: float  # seconds an executor may spend on one run
    record_retry: float = 60.0  # seconds to keep retrying the write of a paid answer
    search_language: str = "simple"  # PostgreSQL's text search configuration

    @property
    def renew_every(self) -> float:
        return self.lease.total_seconds() / 3

    @classmethod
    def from_settings(cls, config: Settings) -> "RunPolicy":
        return cls(
            lease=timedelta(seconds=config.RUN_LEASE_SECONDS),
            sweep_interval=config.RUN_SWEEP_INTERVAL_SECONDS,
            redeliver_after=timedelta(seconds=config.RUN_REDELIVER_SECONDS),
            queue_timeout=timedelta(seconds=config.RUN_QUEUE_TIMEOUT_SECONDS),
            time_limit=float(config.RUN_TIME_LIMIT_SECONDS),
            search_language=config.SEARCH_LANGUAGE,
        )


HOST = socket.gethostname()[:60]
# Tells a restarted process with a recycled pid (pid 1 in a container) from its former self.
INCARNATION = uuid.uuid4().hex[:8]


def host_prefix(host: str = HOST) -> str:
    return f"{host}/"


def lease_pid(owner: str) -> tuple[int, str] | None:
    """(pid, incarnation) from a lease owner name, or None if it is not one of ours."""
    try:
        _host, pid, incarnation, _run = owner.split("/")
        return int(pid), incarnation
    except ValueError:
        return None


@dataclass
class _Held:
    owner: str
    renew_until: float  # monotonic; past it the lease is left to expire


class LeaseRegistry:
    """The runs this process is executing, for the heartbeat to renew their leases.

    A run that overstays its time limit stops being renewed, so even a hung executor's
    run is swept within one lease of the limit."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[uuid.UUID, _Held] = {}
        self._lock = threading.Lock()

    @staticmethod
    def new_owner() -> str:
        return f"{HOST}/{os.getpid()}/{INCARNATION}/{uuid.uuid4().hex[:12]}"

    def hold(self, run_id: uuid.UUID, owner: str, *, seconds: float) -> None:
        with self._lock:
            self._held[run_id] = _Held(owner=owner, renew_until=self._clock() + seconds)

    def release(self, run_id: uuid.UUID) -> None:
        with self._lock:
            self._held.pop(run_id, None)

    def live(self) -> dict[uuid.UUID, str]:
        now = self._clock()
        with self._lock:
            return {run_id: h.owner for run_id, h in self._held.items() if now < h.renew_until}
