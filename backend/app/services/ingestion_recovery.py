"""Keeping ingestion moving whatever dies: lease renewal, the sweep, start-up recovery.

The same loops as runs' (run_recovery), in the same processes. A processing document
whose lease expired is queued again and re-delivered while it has attempts left, then
fails with `ingestion_interrupted`: ingestion is free and idempotent, so doing it again
is right. A queued document overdue for delivery is delivered again, each time after a
longer wait; one that never had a due time (its upload's delivery failed before one was
set) is due once it is `redeliver_after` old.
"""

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from app.core.codes import DocumentErrorCode
from app.core.db import utcnow
from app.crud import ingestion as ingestion_crud
from app.models.document import DocumentStatus
from app.services.ingestion_service import MAX_BACKOFF_DOUBLINGS, IngestPolicy
from app.services.run_recovery import pid_alive
from app.services.run_runtime import (
    INCARNATION,
    Dispatch,
    LeaseRegistry,
    QueueUnavailableError,
    SessionFactory,
    host_prefix,
    lease_pid,
)

logger = logging.getLogger("agentry.ingestion")

SWEEP_BATCH = 200
INTERRUPTED = "Processing stopped too many times before it finished; reprocess it"


@dataclass(frozen=True)
class IngestSweepReport:
    requeued: int = 0
    interrupted: int = 0
    redelivered: int = 0


def renew(*, session_factory: SessionFactory, leases: LeaseRegistry, policy: IngestPolicy) -> int:
    held = leases.live()
    if not held:
        return 0
    with session_factory() as session:
        renewed = ingestion_crud.renew_leases(
            session=session, leases=held, expires_at=utcnow() + policy.lease
        )
        session.commit()
    return renewed


def sweep(
    *, session_factory: SessionFactory, policy: IngestPolicy, dispatch: Dispatch
) -> IngestSweepReport:
    """At most SWEEP_BATCH documents per call; the next sweep takes the rest."""
    now = utcnow()
    with session_factory() as session:
        overdue = ingestion_crud.overdue(
            session=session, now=now, stale_before=now - policy.redeliver_after, limit=SWEEP_BATCH
        )
        if not overdue:
            return IngestSweepReport()
        interrupted = requeued = 0
        to_deliver = []
        for document in overdue:
            outcome = _settle(session, document, now=now, policy=policy)
            if outcome in ("requeued", "redelivered"):
                to_deliver.append(document.id)
                requeued += outcome == "requeued"
            interrupted += outcome == "interrupted"
        session.commit()
    undelivered = _deliver(to_deliver, dispatch)
    if undelivered:
        # The queue is away: due again soon, so they go out once it is back.
        with session_factory() as session:
            ingestion_crud.make_due(
                session=session, document_ids=undelivered, due=now + policy.redeliver_after
            )
            session.commit()
    report = IngestSweepReport(
        requeued=requeued,
        interrupted=interrupted,
        redelivered=len(to_deliver) - len(undelivered),
    )
    logger.warning("ingestion sweep: %s", report)
    return report


def _settle(
    session: Session, document: ingestion_crud.Overdue, *, now: datetime, policy: IngestPolicy
) -> str | None:
    if document.status == DocumentStatus.PROCESSING:
        if document.attempts >= policy.max_attempts:
            failed = ingestion_crud.fail_expired(
                session=session,
                document_id=document.id,
                now=now,
                code=DocumentErrorCode.INGESTION_INTERRUPTED,
                message=INTERRUPTED,
            )
            return "interrupted" if failed else None
        next_due = now + policy.backoff(document.attempts)
        requeued = ingestion_crud.requeue_expired(
            session=session, document_id=document.id, now=now, next_due=next_due
        )
        return "requeued" if requeued else None
    if document.status == DocumentStatus.QUEUED:
        # The longer it has waited, the longer until the next delivery (up to a bound).
        waited = max(now - document.created_at, policy.redeliver_after)
        wait = min(waited, policy.backoff(MAX_BACKOFF_DOUBLINGS))
        taken = ingestion_crud.take_delivery(
            session=session, document_id=document.id, now=now, next_due=now + wait
        )
        return "redelivered" if taken else None
    ingestion_crud.clear_lease(session=session, document_id=document.id)
    return None


def _deliver(document_ids: list[uuid.UUID], dispatch: Dispatch) -> list[uuid.UUID]:
    """Delivers in order; returns the documents not delivered because the queue is away."""
    for count, document_id in enumerate(document_ids):
        try:
            dispatch(document_id)
        except QueueUnavailableError:
            logger.warning(
                "ingestion sweep: the queue is unavailable; %d document(s) wait",
                len(document_ids) - count,
            )
            return document_ids[count:]
    return []


def recover(
    *,
    session_factory: SessionFactory,
    policy: IngestPolicy,
    dispatch: Dispatch,
    is_alive: Callable[[int], bool] | None = None,
) -> IngestSweepReport:
    """At start-up: documents held by processes of this host that no longer exist are
    swept at once, without waiting for their leases to run out; then a normal sweep."""
    alive = is_alive or pid_alive
    with session_factory() as session:
        held = ingestion_crud.leases_owned_by(session=session, prefix=host_prefix())
        dead = [lease.document_id for lease in held if not _owner_alive(lease.owner, alive)]
        if dead:
            ingestion_crud.expire_now(
                session=session, document_ids=dead, now=utcnow() - timedelta(seconds=1)
            )
            session.commit()
    return sweep(session_factory=session_factory, policy=policy, dispatch=dispatch)


def _owner_alive(owner: str, alive: Callable[[int], bool]) -> bool:
    parsed = lease_pid(owner)
    if parsed is None:
        return True  # not a name this code gives: leave it to its lease
    pid, incarnation = parsed
    if pid == os.getpid():
        return incarnation == INCARNATION
    return alive(pid)
