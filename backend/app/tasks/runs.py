"""Executing a run: the one task function behind every way of running it.

The run row is the single source of truth. A delivery first claims the run (queued ->
running in one conditional UPDATE), so a run delivered twice is executed once. The
provider is called with no database transaction open; the answer, the ledger entry and
the run's final status are then written in one transaction.
"""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from sqlmodel import Session

from app.core.config import settings
from app.core.db import utcnow
from app.crud import run as run_crud
from app.crud import usage as usage_crud
from app.models.agent import Agent
from app.models.run import Run, RunStatus
from app.models.thread import Message, MessageRole, Thread
from app.models.usage import UsageEntry
from app.modules.ai_models.manager import model_manager
from app.modules.ai_models.models import AIModel
from app.modules.llm.client import ChatMessage, Completion, LLMClient, LLMError
from app.modules.llm.context import ContextTooLong, fit_context
from app.services.run_service import conversation

logger = logging.getLogger("agentry.runs")

SessionFactory = Callable[[], Session]


@dataclass(frozen=True)
class _Prepared:
    run: Run
    model: AIModel
    messages: list[ChatMessage]


class _RunFailedError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def execute_run(run_id: uuid.UUID, *, session_factory: SessionFactory, llm: LLMClient) -> None:
    attempts = 0

    def count_attempt(_number: int) -> None:
        nonlocal attempts
        attempts += 1

    try:
        prepared = _claim_and_prepare(run_id, session_factory)
        if prepared is None:
            return  # another delivery has it, or it was cancelled or already finished
        run = prepared.run
        completion = llm.complete(
            provider=prepared.model.provider,
            model=prepared.model.name,
            messages=prepared.messages,
            max_tokens=run.max_output_tokens,
            temperature=run.temperature,
            on_attempt=count_attempt,
        )
    except _RunFailedError as failure:
        _fail(run_id, session_factory, failure.code, failure.message, attempts)
        return
    except LLMError as error:
        _fail(run_id, session_factory, error.code, error.message, attempts)
        return
    except Exception:
        logger.exception("run %s failed unexpectedly", run_id)
        _fail(run_id, session_factory, "internal_error", "The run failed unexpectedly", attempts)
        return
    _record(prepared, completion, session_factory, attempts)


def _claim_and_prepare(run_id: uuid.UUID, session_factory: SessionFactory) -> _Prepared | None:
    with session_factory() as session:
        if not run_crud.claim(session=session, run_id=run_id, now=utcnow()):
            session.rollback()
            return None
        session.commit()
        run = session.get(Run, run_id)
        thread = session.get(Thread, run.thread_id) if run else None
        agent = session.get(Agent, run.agent_id) if run else None
        model = (
            model_manager.get_model_by_id(session=session, model_id=run.model_id) if run else None
        )
        if run is None or thread is None or agent is None:
            return None  # deleted while queued: nothing left to answer
        if model is None:
            raise _RunFailedError(
                "model_unavailable", "The agent's model is no longer in the catalog"
            )
        try:
            fitted = fit_context(
                instructions=agent.instructions,
                history=conversation(session=session, thread=thread),
                context_window=model.context_window,
                max_output_tokens=run.max_output_tokens,
            )
        except ContextTooLong as error:
            raise _RunFailedError(
                "context_too_long", "The newest message alone does not fit the model's context"
            ) from error
        run_crud.note_context(session=session, run_id=run_id, omitted=fitted.omitted)
        session.commit()  # the transaction ends here: the provider call comes next
        return _Prepared(run=run, model=model, messages=fitted.messages)


def _fail(
    run_id: uuid.UUID, session_factory: SessionFactory, code: str, message: str, attempts: int
) -> None:
    with session_factory() as session:
        finished = run_crud.finish(
            session=session,
            run_id=run_id,
            values={
                "status": RunStatus.FAILED,
                "error_code": code,
                "error_message": message[:500],
                "attempts": attempts,
                "finished_at": utcnow(),
                "reserved_usd": Decimal(0),
            },
        )
        session.commit()
    if finished:
        logger.info("run %s failed: %s", run_id, code)


def _record(
    prepared: _Prepared, completion: Completion, session_factory: SessionFactory, attempts: int
) -> None:
    run, model = prepared.run, prepared.model
    cost = model_manager.cost(
        model, input_tokens=completion.input_tokens, output_tokens=completion.output_tokens
    )
    now = utcnow()
    with session_factory() as session:
        # Billed whatever happened to the run meanwhile: the provider did the work.
        usage_crud.add_entry(
            session=session,
            entry=UsageEntry(
                user_id=run.owner_id,
                agent_id=run.agent_id,
                thread_id=run.thread_id,
                run_id=run.id,
                model_id=model.id,
                model_provider=model.provider,
                model_name=model.name,
                input_tokens=completion.input_tokens,
                output_tokens=completion.output_tokens,
                input_price_per_million=model.input_price_per_million,
                output_price_per_million=model.output_price_per_million,
                cost_usd=cost,
                created_at=now,
            ),
        )
        answer = Message(
            thread_id=run.thread_id,
            role=MessageRole.ASSISTANT,
            content=completion.content,
            created_at=now,
            run_id=run.id,
            model_id=model.id,
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            cost_usd=cost,
        )
        succeeded = run_crud.finish(
            session=session,
            run_id=run.id,
            values={
                "status": RunStatus.SUCCEEDED,
                "finished_at": now,
                "attempts": attempts,
                "assistant_message_id": answer.id,
                "cost_usd": cost,
                "reserved_usd": Decimal(0),
            },
        )
        if succeeded:
            session.add(answer)
            thread = session.get(Thread, run.thread_id)
            if thread is not None:
                thread.last_message_at = thread.updated_at = now
                session.add(thread)
        else:  # cancelled while the provider worked: keep the bill, drop the answer
            run_crud.settle_cancelled(session=session, run_id=run.id, cost=cost, attempts=attempts)
        session.commit()


def recover_interrupted_runs(*, session_factory: SessionFactory) -> list[uuid.UUID]:
    """Fails runs left `running` by a process that died (older than any run may live) and
    returns the queued runs, for the caller to deliver again."""
    cutoff = utcnow() - timedelta(seconds=settings.RUN_TIME_LIMIT_SECONDS * 2)
    with session_factory() as session:
        stale = run_crud.stale_running(session=session, started_before=cutoff)
        for run in stale:
            run_crud.finish(
                session=session,
                run_id=run.id,
                values={
                    "status": RunStatus.FAILED,
                    "error_code": "run_interrupted",
                    "error_message": "The process running it stopped; post again to retry",
                    "finished_at": utcnow(),
                    "reserved_usd": Decimal(0),
                },
            )
        queued = run_crud.queued_ids(session=session)
        session.commit()
    if stale:
        logger.warning("failed %d interrupted run(s)", len(stale))
    return queued
