"""Agent runs, from post to a final status: the one owner of a run's life.

    queued --claim--> running --record--> succeeded
       |                 |--fail-------> failed   (provider error, sweep: run_interrupted)
       |--sweep--> failed (run_not_started)
       |--cancel--> cancelled             running --cancel--> cancelled (billed on return)

A run is priced when posted: its worst case is reserved against the owner's budget and
everything that decides its cost (model, prices, instructions, window, output limit) is
kept on the run, so what it sends is what it was priced at. Executing is in
run_execution, sweeping and recovery in run_recovery; app.tasks only delivers run ids.
"""

import logging
import uuid

from sqlmodel import Session

from app.core.db import utcnow
from app.core.errors import ConflictError, NotFoundError, UnprocessableError
from app.core.pricing import cost_usd
from app.crud import agent as agent_crud
from app.crud import ai_model as ai_model_crud
from app.crud import knowledge_base as kb_crud
from app.crud import run as run_crud
from app.crud.page import Page
from app.models.ai_model import AIModel
from app.models.run import PostedMessage, Run, RunListQuery
from app.models.thread import Message, MessageCreate, MessagePublic, MessageRole, Thread
from app.models.user import User
from app.modules.llm.client import ChatMessage, LLMClient
from app.modules.llm.context import ContextTooLong, estimate_tokens, fit_context
from app.services import retrieval, run_execution, run_recovery, semantic_search
from app.services.quota_service import QuotaService
from app.services.run_runtime import (
    Dispatch,
    LeaseRegistry,
    QueueUnavailableError,
    RunPolicy,
    SessionFactory,
)
from app.services.thread_service import ThreadService, title_from

logger = logging.getLogger("agentry.runs")


class RunService:
    @staticmethod
    def post(
        *,
        session: Session,
        user: User,
        thread_id: uuid.UUID,
        message_in: MessageCreate,
        policy: RunPolicy,
        dispatch: Dispatch,
    ) -> PostedMessage:
        """Stores the user's message and a run priced at its worst case, then delivers it.
        Refusals store nothing. If the queue cannot take the run, it stays queued and the
        sweep delivers it once the queue is back."""
        message, run = RunService._start(
            session=session, user=user, thread_id=thread_id, message_in=message_in, policy=policy
        )
        # As created: a user's message cites nothing.
        public = MessagePublic.model_validate(message, update={"citations": []})
        posted = PostedMessage.model_validate({"message": public, "run": run})
        try:
            dispatch(run.id)
        except QueueUnavailableError:
            logger.warning("run %s stays queued: the queue is unavailable", run.id)
            run_crud.make_due(session=session, run_id=run.id, now=utcnow())
            session.commit()
        return posted

    @staticmethod
    def _start(
        *,
        session: Session,
        user: User,
        thread_id: uuid.UUID,
        message_in: MessageCreate,
        policy: RunPolicy,
    ) -> tuple[Message, Run]:
        thread = ThreadService.get(session=session, user=user, thread_id=thread_id)
        if thread.is_archived:
            raise ConflictError(
                "This thread is archived; unarchive it first", code="thread_archived"
            )
        agent = agent_crud.get_usable_agent(session=session, user=user, agent_id=thread.agent_id)
        if agent is None:
            raise NotFoundError("Thread not found")
        if not agent.is_active:
            raise ConflictError("This agent is deactivated", code="agent_inactive")
        model = (
            ai_model_crud.get_model_by_id(session=session, model_id=agent.model_id)
            if agent.model_id
            else None
        )
        if model is None or not model.is_enabled:
            raise UnprocessableError(
                "This agent has no enabled model to answer with",
                loc=("path", "thread_id"),
                code="model_unavailable",
            )
        max_output = min(
            agent.max_output_tokens or model.max_output_tokens, model.max_output_tokens
        )

        # An agent with knowledge bases sends sources too: priced at the most they may take,
        # with the most embedding the question for their semantic indexes may cost.
        kb_ids = agent_crud.knowledge_base_ids(session=session, agent_ids=[agent.id]).get(
            agent.id, []
        )
        source_tokens = retrieval.SOURCE_TOKENS if kb_ids else 0
        question_cost = semantic_search.question_worst_case(
            session=session,
            knowledge_bases=kb_crud.get_many(session=session, user=user, kb_ids=kb_ids),
        )

        run_crud.lock_owner(session=session, user=user)
        if run_crud.has_active_run(session=session, thread=thread):
            raise ConflictError(
                "A run is already queued or running in this thread", code="run_in_progress"
            )
        input_tokens = _estimate_input(
            session=session,
            thread=thread,
            instructions=agent.instructions,
            new_content=message_in.content,
            model=model,
            max_output=max_output,
            source_tokens=source_tokens,
        )
        worst_case = question_cost + cost_usd(
            input_price_per_million=model.input_price_per_million,
            output_price_per_million=model.output_price_per_million,
            input_tokens=input_tokens,
            output_tokens=max_output,
        )
        QuotaService.ensure_room(session=session, user=user, amount=worst_case)

        now = utcnow()
        message = Message(
            thread_id=thread.id, role=MessageRole.USER, content=message_in.content, created_at=now
        )
        run = Run(
            thread_id=thread.id,
            owner_id=user.id,
            agent_id=agent.id,
            model_id=model.id,
            user_message_id=message.id,
            max_output_tokens=max_output,
            temperature=agent.temperature,
            instructions=agent.instructions,
            context_window=model.context_window,
            source_tokens=source_tokens,
            input_price_per_million=model.input_price_per_million,
            output_price_per_million=model.output_price_per_million,
            reserved_usd=worst_case,
            created_at=now,
            deliveries=1,
            lease_expires_at=now + policy.redeliver_after,  # delivered again if not taken
        )
        if thread.title is None:
            thread.title = title_from(message_in.content)
        thread.last_message_at = thread.updated_at = now
        session.add_all([message, run, thread])
        session.commit()
        return message, run

    @staticmethod
    def get(*, session: Session, user: User, run_id: uuid.UUID) -> Run:
        run = run_crud.get_run(session=session, user=user, run_id=run_id)
        if run is None:
            raise NotFoundError("Run not found")
        return run

    @staticmethod
    def list_for_thread(
        *, session: Session, user: User, thread_id: uuid.UUID, query: RunListQuery
    ) -> Page[Run]:
        thread = ThreadService.get(session=session, user=user, thread_id=thread_id)
        return run_crud.list_thread_runs(session=session, thread=thread, query=query)

    @staticmethod
    def cancel(*, session: Session, user: User, run_id: uuid.UUID) -> Run:
        """Stops a queued run. A running one is marked cancelled and its answer dropped;
        its reservation holds until the provider call returns and is billed."""
        run = RunService.get(session=session, user=user, run_id=run_id)
        if not run_crud.cancel(session=session, run_id=run.id, now=utcnow()):
            raise ConflictError(f"This run is already {run.status}", code="run_finished")
        session.commit()
        session.refresh(run)
        return run

    # ==================== executing and recovering ====================

    @staticmethod
    def execute(
        run_id: uuid.UUID,
        *,
        session_factory: SessionFactory,
        llm: LLMClient,
        leases: LeaseRegistry,
        policy: RunPolicy,
    ) -> None:
        """Claims, prepares, calls and records one delivered run; every path ends it."""
        run_execution.execute(
            run_id, session_factory=session_factory, llm=llm, leases=leases, policy=policy
        )

    @staticmethod
    def renew_leases(
        *, session_factory: SessionFactory, leases: LeaseRegistry, policy: RunPolicy
    ) -> int:
        return run_recovery.renew(session_factory=session_factory, leases=leases, policy=policy)

    @staticmethod
    def sweep(
        *, session_factory: SessionFactory, policy: RunPolicy, dispatch: Dispatch
    ) -> run_recovery.SweepReport:
        return run_recovery.sweep(session_factory=session_factory, policy=policy, dispatch=dispatch)

    @staticmethod
    def recover(
        *, session_factory: SessionFactory, policy: RunPolicy, dispatch: Dispatch
    ) -> run_recovery.SweepReport:
        return run_recovery.recover(
            session_factory=session_factory, policy=policy, dispatch=dispatch
        )


def _estimate_input(
    *,
    session: Session,
    thread: Thread,
    instructions: str,
    new_content: str,
    model: AIModel,
    max_output: int,
    source_tokens: int,
) -> int:
    """Input tokens the run may send: the context it will fit, estimated conservatively,
    plus the most its sources may take, within the window less the output limit. (The
    sources take room from older history, never more.) A conversation that cannot fit
    is priced at its newest message; the run will fail without calling the provider."""
    history = run_execution.conversation(session=session, thread=thread)
    history.append(ChatMessage(role=MessageRole.USER.value, content=new_content))
    try:
        fitted = fit_context(
            instructions=instructions,
            history=history,
            context_window=model.context_window,
            max_output_tokens=max_output,
        )
    except ContextTooLong:
        return estimate_tokens(new_content)
    return min(fitted.estimated_input_tokens + source_tokens, model.context_window - max_output)
