"""Keeping runs moving whatever dies: lease renewal, the periodic sweep, start-up recovery.

Every process that executes runs renews the leases of the runs it holds. Every process
that serves the API or executes runs sweeps every few seconds: a claimed run whose lease
expired is failed with `run_interrupted` (its provider call may have been made, so it is
never sent twice); a queued run overdue for delivery is delivered again, with a growing
wait, and fails with `run_not_started` once it has waited RUN_QUEUE_TIMEOUT_SECONDS.
"""

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from app.core.codes import RunErrorCode
from app.core.db import utcnow
from app.crud import run as run_crud
from app.models.run import RunStatus
from app.services.run_runtime import (
    INCARNATION,
    Dispatch,
    LeaseRegistry,
    QueueUnavailableError,
    RunPolicy,
    SessionFactory,
    host_prefix,
    lease_pid,
)

logger = logging.getLogger("agentry.runs")

SWEEP_BATCH = 200
MAX_BACKOFF_DOUBLINGS = 5
INTERRUPTED = "The process running it stopped before it finished; post again to retry"
NOT_STARTED = "No worker started this run in time; post again to retry"


@dataclass(frozen=True)
class SweepReport:
    interrupted: int = 0
    released: int = 0
    redelivered: int = 0
    not_started: int = 0


def renew(*, session_factory: SessionFactory, leases: LeaseRegistry, policy: RunPolicy) -> int:
    held = leases.live()
    if not held:
        return 0
    with session_factory() as session:
        renewed = run_crud.renew_leases(
            session=session, leases=held, expires_at=utcnow() + policy.lease
        )
        session.commit()
    return renewed


def sweep(*, session_factory: SessionFactory, policy: RunPolicy, dispatch: Dispatch) -> SweepReport:
    now = utcnow()
    with session_factory() as session:
        expired = run_crud.expired_leases(session=session, now=now, limit=SWEEP_BATCH)
        if not expired:
            return SweepReport()
        counts = {"interrupted": 0, "released": 0, "not_started": 0}
        to_deliver = []
        for run in expired:
            outcome = _settle_expired(session, run, now=now, policy=policy)
            if outcome == "redelivered":
                to_deliver.append(run.id)
            elif outcome is not None:
                counts[outcome] += 1
        session.commit()
    undelivered = _deliver(to_deliver, dispatch)
    if undelivered:
        # The queue is away: try again soon, with no doubling for a delivery that never
        # happened, so a run still goes out once the broker is back.
        with session_factory() as session:
            run_crud.undo_delivery(
                session=session, run_ids=undelivered, next_due=now + policy.redeliver_after
            )
            session.commit()
    redelivered = len(to_deliver) - len(undelivered)
    report = SweepReport(redelivered=redelivered, **counts)
    logger.warning("sweep: %s", report)
    return report


def _settle_expired(
    session: Session, run: run_crud.ExpiredLease, *, now: datetime, policy: RunPolicy
) -> str | None:
    if run.status == RunStatus.RUNNING:
        failed = run_crud.fail_expired(
            session=session,
            run_id=run.id,
            now=now,
            code=RunErrorCode.RUN_INTERRUPTED,
            message=INTERRUPTED,
        )
        return "interrupted" if failed else None
    if run.status == RunStatus.CANCELLED:
        released = run_crud.release_expired(session=session, run_id=run.id, now=now)
        return "released" if released else None
    if run.status == RunStatus.QUEUED:
        if run.created_at + policy.queue_timeout <= now:
            failed = run_crud.fail_queued(
                session=session,
                run_id=run.id,
                now=now,
                code=RunErrorCode.RUN_NOT_STARTED,
                message=NOT_STARTED,
            )
            return "not_started" if failed else None
        wait = policy.redeliver_after * 2 ** min(run.deliveries, MAX_BACKOFF_DOUBLINGS)
        taken = run_crud.take_delivery(session=session, run_id=run.id, now=now, next_due=now + wait)
        return "redelivered" if taken else None
    run_crud.clear_lease(session=session, run_id=run.id)
    return None


def _deliver(run_ids: list[uuid.UUID], dispatch: Dispatch) -> list[uuid.UUID]:
    """Delivers in order; returns the runs not delivered because the queue is away."""
    for count, run_id in enumerate(run_ids):
        try:
            dispatch(run_id)
        except QueueUnavailableError:
            logger.warning("sweep: the queue is unavailable; %d run(s) wait", len(run_ids) - count)
            return run_ids[count:]
    return []


def recover(
    *,
    session_factory: SessionFactory,
    policy: RunPolicy,
    dispatch: Dispatch,
    is_alive: Callable[[int], bool] | None = None,
) -> SweepReport:
    """At start-up: runs held by processes of this host that no longer exist are swept
    at once, without waiting for their leases to run out; then a normal sweep."""
    alive = is_alive or pid_alive
    with session_factory() as session:
        held = run_crud.leases_owned_by(session=session, prefix=host_prefix())
        dead = [lease.run_id for lease in held if not _owner_alive(lease.owner, alive)]
        if dead:
            run_crud.expire_now(session=session, run_ids=dead, now=utcnow() - timedelta(seconds=1))
            session.commit()
    return sweep(session_factory=session_factory, policy=policy, dispatch=dispatch)


def _owner_alive(owner: str, alive: Callable[[int], bool]) -> bool:
    parsed = lease_pid(owner)
    if parsed is None:
        return True  # not a name this code gives: leave it to its lease
    pid, incarnation = parsed
    if pid == os.getpid():
        return incarnation == INCARNATION  # a former process that had this pid is gone
    return alive(pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True
