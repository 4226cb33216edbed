"""Building a knowledge base's semantic index: every passage of its ready documents gets
a vector of the embedding model the knowledge base wants.

    none --model chosen--> building --every passage embedded--> ready
                              |  ^--a document became ready, the model changed--|
                              |--provider refused (auth, bad request, dims)----> failed
                              |--provider away: released, due after a backoff; sweep

A build is a background job on the ingestion lane (queue agentry.ingest), under a lease
on the knowledge base like a document's. It embeds the passages that have no vector of
the wanted model, a batch at a time: each batch's worst case is reserved against the
owner's budget first (a batch that does not fit marks its documents `quota_exceeded`;
they stay searchable by keyword), then sent, then its vectors, its ledger row and the
release of the reservation are written in one transaction. Vectors of a batch that was
already stored are skipped, so a build that dies and is delivered again repeats at most
the batch in flight. While a build runs, the model that served before keeps serving; the
switch to the new model, and the removal of the old vectors, is one transaction.
"""

import logging
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from app.core.codes import DocumentErrorCode, IndexErrorCode
from app.core.db import utcnow
from app.core.errors import PaymentRequiredError
from app.crud import chunk as chunk_crud
from app.crud import chunk_vector as chunk_vector_crud
from app.crud import knowledge_index as index_crud
from app.crud import run as run_crud
from app.models.ai_model import AIModel, ModelKind
from app.models.document import Chunk
from app.models.knowledge_base import KnowledgeBase
from app.models.user import User
from app.modules.llm.client import MAX_EMBED_BATCH, RETRYABLE, LLMClient, LLMError
from app.services import embedding_service
from app.services.embedding_service import ChargedTo
from app.services.ingestion_service import MAX_BACKOFF_DOUBLINGS, IngestPolicy
from app.services.quota_service import QuotaService
from app.services.run_runtime import (
    Dispatch,
    LeaseRegistry,
    QueueUnavailableError,
    SessionFactory,
)

logger = logging.getLogger("agentry.index")


@dataclass(frozen=True)
class IndexPolicy:
    lease: timedelta  # how long a claimed build stays ours without a renewal
    redeliver_after: timedelta  # first wait before a build is delivered again
    time_limit: float  # seconds one delivery may build; then it gives the build back
    max_attempts: int  # deliveries in a row that fail before the index fails
    batch: int = MAX_EMBED_BATCH  # passages per embedding call

    def backoff(self, times: int) -> timedelta:
        return self.redeliver_after * (1 << min(max(times, 0), MAX_BACKOFF_DOUBLINGS))

    @classmethod
    def of_ingestion(cls, policy: IngestPolicy) -> "IndexPolicy":
        """Builds ride with ingestion: the same lane, leases, timings and attempts."""
        return cls(
            lease=policy.lease,
            redeliver_after=policy.redeliver_after,
            time_limit=policy.time_limit,
            max_attempts=policy.max_attempts,
        )


class IndexService:
    @staticmethod
    def build(
        kb_id: uuid.UUID,
        *,
        session_factory: SessionFactory,
        llm: LLMClient,
        leases: LeaseRegistry,
        policy: IndexPolicy,
    ) -> None:
        """One delivery of a knowledge base's build: claims it (or does nothing if it is
        not building, or held by a live process), then embeds until done, out of time,
        or stopped by the provider."""
        owner = LeaseRegistry.new_owner()
        now = utcnow()
        with session_factory() as session:
            claimed = index_crud.claim(
                session=session, kb_id=kb_id, owner=owner, now=now, expires_at=now + policy.lease
            )
            session.commit()
        if claimed is None:
            return
        leases.hold(kb_id, owner, seconds=policy.time_limit)
        try:
            _build(claimed, owner, session_factory, llm, policy)
        except Exception as error:
            # The type only: an error's text can quote passages. Delivered again after a
            # backoff, and failed once its deliveries are used up, as when workers die.
            logger.error("index of %s: build failed (%s)", kb_id, type(error).__name__)
            with session_factory() as session:
                if claimed.attempts >= policy.max_attempts:
                    index_crud.fail(
                        session=session,
                        kb_id=kb_id,
                        owner=owner,
                        code=IndexErrorCode.INDEX_INTERRUPTED,
                    )
                else:
                    index_crud.release(
                        session=session,
                        kb_id=kb_id,
                        owner=owner,
                        next_due=utcnow() + policy.backoff(claimed.attempts),
                    )
                session.commit()
        finally:
            leases.release(kb_id)


def _build(
    claimed: index_crud.ClaimedIndex,
    owner: str,
    session_factory: SessionFactory,
    llm: LLMClient,
    policy: IndexPolicy,
) -> None:
    with session_factory() as session:
        model = session.get(AIModel, claimed.model_id)
        if model is None or model.kind != ModelKind.EMBEDDING or model.dimensions is None:
            index_crud.fail(
                session=session,
                kb_id=claimed.id,
                owner=owner,
                code=IndexErrorCode.MODEL_UNAVAILABLE,
            )
            session.commit()
            return
        session.expunge(model)
    deadline = time.monotonic() + policy.time_limit
    while True:
        with session_factory() as session:
            if not index_crud.holds(session=session, claimed=claimed, owner=owner):
                return  # the model changed, the base was deleted, or the sweep took it
            chunks = chunk_vector_crud.missing(
                session=session,
                knowledge_base_id=claimed.id,
                model_id=model.id,
                limit=policy.batch,
            )
            if not chunks:
                if index_crud.finish(session=session, claimed=claimed, owner=owner):
                    chunk_vector_crud.delete_others(
                        session=session, knowledge_base_id=claimed.id, keep_model_id=model.id
                    )
                    session.commit()
                    return
                # Asked again meanwhile: go round once more at the current version.
                current = session.get(KnowledgeBase, claimed.id)
                if current is None:
                    return
                claimed = replace(claimed, version=current.index_version)
                continue
            for chunk in chunks:
                session.expunge(chunk)
        if time.monotonic() >= deadline:  # out of time, not failing: due again at once
            _give_back(claimed, owner, session_factory, next_due=utcnow(), progressed=True)
            return
        texts = [chunk.text for chunk in chunks]
        if not _reserve(claimed, owner, session_factory, model, texts, chunks):
            continue  # its documents were marked quota_exceeded; the others go on
        try:
            embeddings = llm.embed(
                provider=model.provider,
                model=model.name,
                inputs=texts,
                dimensions=model.dimensions,
                deadline=deadline,
            )
        except LLMError as error:
            _stopped_by_provider(claimed, owner, session_factory, policy, error)
            return
        # The call is paid for whatever happens next: its ledger row first, on its own.
        with session_factory() as session:
            embedding_service.record(
                session=session,
                model=model,
                embeddings=embeddings,
                charged_to=ChargedTo(user_id=claimed.owner_id, knowledge_base_id=claimed.id),
            )
            index_crud.release_reservation(session=session, kb_id=claimed.id, owner=owner)
            session.commit()
        with session_factory() as session:
            # Passages deleted meanwhile (their document was) get no vector.
            alive = chunk_crud.existing_ids(
                session=session, chunk_ids=[chunk.id for chunk in chunks if chunk.id]
            )
            chunk_vector_crud.store(
                session=session,
                model=model,
                vectors=[
                    (chunk, vector)
                    for chunk, vector in zip(chunks, embeddings.vectors, strict=True)
                    if chunk.id in alive
                ],
            )
            session.commit()


def _reserve(
    claimed: index_crud.ClaimedIndex,
    owner: str,
    session_factory: SessionFactory,
    model: AIModel,
    texts: list[str],
    chunks: list[Chunk],
) -> bool:
    """Holds the batch's worst case against the owner's budget; when it does not fit,
    the batch's documents are marked quota_exceeded instead (False)."""
    amount = embedding_service.estimated_cost(model, texts)
    with session_factory() as session:
        user = session.get(User, claimed.owner_id)
        if user is None:
            return False
        run_crud.lock_owner(session=session, user=user)
        try:
            QuotaService.ensure_room(session=session, user=user, amount=amount)
        except PaymentRequiredError:
            document_ids = sorted({chunk.document_id for chunk in chunks})
            index_crud.mark_documents(
                session=session, document_ids=document_ids, code=DocumentErrorCode.QUOTA_EXCEEDED
            )
            session.commit()
            logger.info("index of %s: %d document(s) over budget", claimed.id, len(document_ids))
            return False
        held = index_crud.reserve(session=session, claimed=claimed, owner=owner, amount=amount)
        session.commit()
        return held


def _stopped_by_provider(
    claimed: index_crud.ClaimedIndex,
    owner: str,
    session_factory: SessionFactory,
    policy: IndexPolicy,
    error: LLMError,
) -> None:
    if error.code in RETRYABLE and claimed.attempts < policy.max_attempts:
        next_due = utcnow() + policy.backoff(claimed.attempts)
        _give_back(claimed, owner, session_factory, next_due=next_due, progressed=False)
        return
    with session_factory() as session:
        index_crud.fail(
            session=session, kb_id=claimed.id, owner=owner, code=IndexErrorCode(error.code)
        )
        session.commit()
    logger.warning("index of %s: failed (%s)", claimed.id, error.code)


def _give_back(
    claimed: index_crud.ClaimedIndex,
    owner: str,
    session_factory: SessionFactory,
    *,
    next_due: datetime,
    progressed: bool,
) -> None:
    with session_factory() as session:
        index_crud.release(
            session=session,
            kb_id=claimed.id,
            owner=owner,
            next_due=next_due,
            reset_attempts=progressed,
        )
        session.commit()


# ==================== keeping builds moving ====================

SWEEP_BATCH = 100


def renew(*, session_factory: SessionFactory, leases: LeaseRegistry, policy: IndexPolicy) -> int:
    held = leases.live()
    if not held:
        return 0
    with session_factory() as session:
        renewed = index_crud.renew_leases(
            session=session, leases=held, expires_at=utcnow() + policy.lease
        )
        session.commit()
    return renewed


def sweep(*, session_factory: SessionFactory, policy: IndexPolicy, dispatch: Dispatch) -> int:
    """Delivers builds that are due, or whose holder died; a build whose holders died
    `max_attempts` times in a row fails with index_interrupted. Returns deliveries."""
    now = utcnow()
    deliver: list[uuid.UUID] = []
    with session_factory() as session:
        for index in index_crud.overdue(session=session, now=now, limit=SWEEP_BATCH):
            if index.held and index.attempts >= policy.max_attempts:
                index_crud.fail_expired(
                    session=session, kb_id=index.id, now=now, code=IndexErrorCode.INDEX_INTERRUPTED
                )
                continue
            due = now + policy.backoff(index.attempts)
            if index_crud.postpone(session=session, kb_id=index.id, due=due, now=now):
                deliver.append(index.id)
        session.commit()
    delivered = 0
    for kb_id in deliver:
        try:
            dispatch(kb_id)
        except QueueUnavailableError:
            break  # due again later: the next sweep tries once the queue is back
        delivered += 1
    if deliver:
        logger.info("index sweep: %d build(s) delivered", delivered)
    return delivered
