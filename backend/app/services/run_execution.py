"""Executing a claimed run: prepare, call the provider, record; every path ends the run.

The run row is the single source of truth. A delivery claims the run (queued -> running
under a lease) in one conditional UPDATE, so a run delivered twice executes once. The
provider is called with no transaction open while the heartbeat renews the lease. The
answer, its citations, the ledger row and the final status are then written together; if
that cannot be done, the call is still written to the ledger and the run fails with a
stable code. A run priced with sources (services.retrieval) retrieves them as it prepares.
"""

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import DisconnectionError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlmodel import Session

from app.core.codes import RunErrorCode
from app.core.db import utcnow
from app.core.pricing import cost_usd
from app.core.text import storable
from app.core.types import MAX_REPORTED_TOKENS
from app.crud import ai_model as ai_model_crud
from app.crud import run as run_crud
from app.crud import thread as thread_crud
from app.crud import usage as usage_crud
from app.models.ai_model import AIModel
from app.models.document import SearchHit
from app.models.run import Run, RunStatus
from app.models.thread import Message, MessageRole, Thread
from app.models.usage import UsageEntry
from app.modules.llm.client import ChatMessage, Completion, LLMClient, LLMError
from app.modules.llm.context import ContextTooLong, fit_context
from app.services import retrieval
from app.services.run_runtime import LeaseRegistry, RunPolicy, SessionFactory

logger = logging.getLogger("agentry.runs")

# How far back a run looks; older messages would not fit any model's window anyway.
HISTORY_LIMIT = 500
_TRANSIENT = (OperationalError, DisconnectionError, PoolTimeoutError)


class RunFailedError(Exception):
    def __init__(self, code: RunErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _Prepared:
    run: Run
    model: AIModel
    messages: list[ChatMessage]
    # The passages sent as sources [1], [2], ...; None when the run draws on no knowledge.
    sources: list[SearchHit] | None


@dataclass(frozen=True)
class _Usage:
    input_tokens: int
    output_tokens: int
    cost: Decimal
    implausible: bool


def conversation(*, session: Session, thread: Thread) -> list[ChatMessage]:
    """A thread's recent messages as the provider receives them, oldest first."""
    return [
        ChatMessage(role=str(m.role), content=m.content)
        for m in thread_crud.recent_messages(session=session, thread=thread, limit=HISTORY_LIMIT)
    ]


def execute(
    run_id: uuid.UUID,
    *,
    session_factory: SessionFactory,
    llm: LLMClient,
    leases: LeaseRegistry,
    policy: RunPolicy,
) -> None:
    owner = leases.new_owner()
    now = utcnow()
    with session_factory() as session:
        claimed = run_crud.claim(
            session=session, run_id=run_id, owner=owner, now=now, expires_at=now + policy.lease
        )
        session.commit()
    if not claimed:
        return  # another delivery has it, or it was cancelled or already finished
    # Renewed until the time limit; a hung executor's lease then expires and is swept.
    leases.hold(run_id, owner, seconds=policy.time_limit + policy.record_retry)
    try:
        _execute_claimed(run_id, owner, session_factory, llm, policy)
    finally:
        leases.release(run_id)


def _execute_claimed(
    run_id: uuid.UUID,
    owner: str,
    session_factory: SessionFactory,
    llm: LLMClient,
    policy: RunPolicy,
) -> None:
    attempts = 0

    def count_attempt(_number: int) -> None:
        nonlocal attempts
        attempts += 1

    try:
        prepared = _prepare(run_id, session_factory, llm, policy.search_language)
        if prepared is None:
            _end(run_id, owner, session_factory, policy, failure=None, attempts=0)
            return  # cancelled before the call: nothing spent
        run = prepared.run
        completion = llm.complete(
            provider=prepared.model.provider,
            model=prepared.model.name,
            messages=prepared.messages,
            max_tokens=run.max_output_tokens,
            temperature=run.temperature,
            on_attempt=count_attempt,
            deadline=time.monotonic() + policy.time_limit,
        )
    except (RunFailedError, LLMError) as error:
        failure = RunFailedError(RunErrorCode(error.code), error.message)
        _end(run_id, owner, session_factory, policy, failure=failure, attempts=attempts)
        return
    except Exception:
        logger.exception("run %s failed unexpectedly", run_id)
        failure = RunFailedError(RunErrorCode.INTERNAL_ERROR, "The run failed unexpectedly")
        _end(run_id, owner, session_factory, policy, failure=failure, attempts=attempts)
        return
    _record(prepared, completion, owner, session_factory, policy, attempts)


def _prepare(
    run_id: uuid.UUID, session_factory: SessionFactory, llm: LLMClient, search_language: str
) -> _Prepared | None:
    """What to send, from what the run was priced at; None if it was cancelled meanwhile."""
    with session_factory() as session:
        run = session.get(Run, run_id)
        if run is None or run.status != RunStatus.RUNNING:
            return None
        thread = session.get(Thread, run.thread_id)
        if thread is None:
            raise RunFailedError(RunErrorCode.THREAD_DELETED, "The thread was deleted")
        model = ai_model_crud.get_model_by_id(session=session, model_id=run.model_id)
        if model is None or not model.is_enabled:
            raise RunFailedError(
                RunErrorCode.MODEL_UNAVAILABLE, "The run's model is no longer available"
            )
        history = conversation(session=session, thread=thread)
        hits = None
        if run.source_tokens > 0:  # priced with sources: the agent had knowledge bases
            hits = retrieval.retrieve(
                session=session, llm=llm, run=run, history=history, language=search_language
            )
        try:
            fitted = fit_context(
                instructions=run.instructions,
                history=history,
                context_window=run.context_window,
                max_output_tokens=run.max_output_tokens,
                sources=None
                if hits is None
                else retrieval.sources(hits, max_tokens=run.source_tokens),
            )
        except ContextTooLong as error:
            raise RunFailedError(
                RunErrorCode.CONTEXT_TOO_LONG,
                "The newest message alone does not fit the model's context",
            ) from error
        given = None if hits is None else hits[: fitted.sources_kept]
        run_crud.note_context(
            session=session,
            run_id=run_id,
            omitted=fitted.omitted,
            passages_retrieved=None if given is None else len(given),
        )
        session.commit()  # the transaction ends here: the provider call comes next
        return _Prepared(run=run, model=model, messages=fitted.messages, sources=given)


def _end(
    run_id: uuid.UUID,
    owner: str,
    session_factory: SessionFactory,
    policy: RunPolicy,
    *,
    failure: RunFailedError | None,
    attempts: int,
) -> None:
    """Fails the run (or settles it if it was cancelled meanwhile); nothing is billed."""

    def end(session: Session) -> None:
        _close(session, run_id, owner, failure=failure, attempts=attempts, cost=None)

    if _write(session_factory, [end], policy=policy, run_id=run_id) and failure:
        logger.info("run %s failed: %s", run_id, failure.code)


def _close(
    session: Session,
    run_id: uuid.UUID,
    owner: str,
    *,
    failure: RunFailedError | None,
    attempts: int,
    cost: Decimal | None,
) -> None:
    values: dict[str, Any] = {
        "status": RunStatus.FAILED,
        "attempts": attempts,
        "finished_at": utcnow(),
    }
    if failure is not None:
        values |= {"error_code": failure.code, "error_message": failure.message[:500]}
    if cost is not None:
        values["cost_usd"] = cost
    if failure is None or not run_crud.finish(
        session=session, run_id=run_id, owner=owner, values=values
    ):
        run_crud.settle_cancelled(
            session=session, run_id=run_id, owner=owner, cost=cost, attempts=attempts
        )


def _record(
    prepared: _Prepared,
    completion: Completion,
    owner: str,
    session_factory: SessionFactory,
    policy: RunPolicy,
    attempts: int,
) -> None:
    run, model = prepared.run, prepared.model
    usage = _measure(run, completion)
    now = utcnow()
    answer = Message(
        thread_id=run.thread_id,
        role=MessageRole.ASSISTANT,
        content=storable(completion.content),
        created_at=now,
        run_id=run.id,
        model_id=model.id,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=usage.cost,
    )
    sources = prepared.sources or []
    cited = retrieval.cited_numbers(answer.content, sources_given=len(sources))

    def bill(session: Session) -> None:
        # Billed whatever happened to the run meanwhile: the provider did the work.
        if not usage_crud.has_run_entry(session=session, run_id=run.id):
            usage_crud.add_entry(session=session, entry=_ledger_entry(run, model, usage, now))

    def answered(session: Session) -> None:
        bill(session)
        values = {
            "status": RunStatus.SUCCEEDED,
            "finished_at": now,
            "attempts": attempts,
            "assistant_message_id": answer.id,
            "cost_usd": usage.cost,
            "passages_used": None if prepared.sources is None else len(cited),
        }
        if run_crud.finish(session=session, run_id=run.id, owner=owner, values=values):
            session.add(answer)
            if cited:
                session.flush()  # the citations refer to the answer's row
                session.add_all(
                    retrieval.citations(
                        message_id=answer.id, run_id=run.id, hits=sources, numbers=cited
                    )
                )
            thread = session.get(Thread, run.thread_id)
            if thread is not None:
                thread.last_message_at = thread.updated_at = now
                session.add(thread)
        else:  # cancelled while the provider worked: keep the bill, drop the answer
            run_crud.settle_cancelled(
                session=session, run_id=run.id, owner=owner, cost=usage.cost, attempts=attempts
            )

    def unanswered(session: Session) -> None:
        bill(session)
        failure = RunFailedError(RunErrorCode.ANSWER_NOT_STORED, "The answer could not be stored")
        _close(session, run.id, owner, failure=failure, attempts=attempts, cost=usage.cost)

    _write(session_factory, [answered, unanswered], policy=policy, run_id=run.id)


def _measure(run: Run, completion: Completion) -> _Usage:
    """Reported usage, recorded as reported up to MAX_REPORTED_TOKENS each way; usage a
    call cannot have had (beyond the window plus the output limit) is flagged."""
    reported_in, reported_out = completion.input_tokens, completion.output_tokens
    input_tokens = min(reported_in, MAX_REPORTED_TOKENS)
    output_tokens = min(reported_out, MAX_REPORTED_TOKENS)
    implausible = reported_in + reported_out > run.context_window + run.max_output_tokens
    if implausible:
        logger.warning(
            "run %s: the provider reported %d input and %d output tokens, beyond the "
            "model's window; billed as reported and flagged in the ledger",
            run.id,
            reported_in,
            reported_out,
        )
    cost = cost_usd(
        input_price_per_million=run.input_price_per_million,
        output_price_per_million=run.output_price_per_million,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )
    return _Usage(input_tokens, output_tokens, cost, implausible)


def _ledger_entry(run: Run, model: AIModel, usage: _Usage, now: datetime) -> UsageEntry:
    return UsageEntry(
        user_id=run.owner_id,
        agent_id=run.agent_id,
        thread_id=run.thread_id,
        run_id=run.id,
        model_id=model.id,
        model_provider=model.provider,
        model_name=model.name,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        implausible=usage.implausible,
        input_price_per_million=run.input_price_per_million,
        output_price_per_million=run.output_price_per_million,
        cost_usd=usage.cost,
        created_at=now,
    )


def _write(
    session_factory: SessionFactory,
    steps: list[Callable[[Session], None]],
    *,
    policy: RunPolicy,
    run_id: uuid.UUID,
) -> bool:
    """Commits the first step that works. A step the database refuses gives way to the
    next; a database that is away is waited for (up to policy.record_retry seconds),
    then every step is tried again. If nothing lands, the lease expires and the sweep
    ends the run."""
    deadline = time.monotonic() + policy.record_retry
    delay = 0.25
    while True:
        for step in steps:
            try:
                with session_factory() as session:
                    step(session)
                    session.commit()
                return True
            except _TRANSIENT:
                logger.warning("run %s: the database is unavailable; retrying", run_id)
                break
            except (SQLAlchemyError, ValueError) as error:
                # The type only: the statement's parameters hold the conversation's text.
                logger.error("run %s: a write was refused (%s)", run_id, type(error).__name__)
        if time.monotonic() + delay > deadline:
            logger.error("run %s: gave up writing its outcome; the sweep will end it", run_id)
            return False
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
