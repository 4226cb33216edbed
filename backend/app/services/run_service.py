"""Starting, reading and cancelling agent runs. Executing them is app.tasks.runs."""

import uuid

from sqlmodel import Session

from app.core.db import utcnow
from app.core.errors import ConflictError, NotFoundError, UnprocessableError
from app.crud import agent as agent_crud
from app.crud import run as run_crud
from app.crud import thread as thread_crud
from app.models.run import Run
from app.models.thread import Message, MessageCreate, MessageRole, Thread
from app.models.user import User
from app.modules.ai_models.manager import model_manager
from app.modules.ai_models.models import AIModel
from app.modules.llm.client import ChatMessage
from app.modules.llm.context import ContextTooLong, estimate_tokens, fit_context
from app.services.quota_service import QuotaService
from app.services.thread_service import ThreadService, title_from

# How far back a run looks; older messages would not fit any model's window anyway.
HISTORY_LIMIT = 500


class RunService:
    @staticmethod
    def start(
        *, session: Session, user: User, thread_id: uuid.UUID, message_in: MessageCreate
    ) -> tuple[Message, Run]:
        """Stores the user's message and queues a run, or refuses with nothing stored."""
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
            model_manager.get_model_by_id(session=session, model_id=agent.model_id)
            if agent.model_id
            else None
        )
        if model is None or not model.is_enabled:
            raise UnprocessableError(
                "This agent has no enabled model to answer with", code="model_unavailable"
            )
        max_output = min(
            agent.max_output_tokens or model.max_output_tokens, model.max_output_tokens
        )

        run_crud.lock_owner(session=session, user=user)
        if run_crud.has_active_run(session=session, thread=thread):
            raise ConflictError(
                "A run is already queued or running in this thread", code="run_in_progress"
            )
        worst_case = model_manager.cost(
            model,
            input_tokens=_estimate_input(
                session=session,
                thread=thread,
                instructions=agent.instructions,
                new_content=message_in.content,
                model=model,
                max_output=max_output,
            ),
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
            reserved_usd=worst_case,
            created_at=now,
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
        *, session: Session, user: User, thread_id: uuid.UUID, skip: int, limit: int
    ) -> tuple[list[Run], int]:
        thread = ThreadService.get(session=session, user=user, thread_id=thread_id)
        return run_crud.list_thread_runs(session=session, thread=thread, skip=skip, limit=limit)

    @staticmethod
    def cancel(*, session: Session, user: User, run_id: uuid.UUID) -> Run:
        """Stops a queued run, or marks a running one so its answer is dropped (a call
        already made is still billed)."""
        run = RunService.get(session=session, user=user, run_id=run_id)
        if not run_crud.cancel(session=session, run_id=run.id, now=utcnow()):
            raise ConflictError(f"This run is already {run.status}", code="run_finished")
        session.commit()
        session.refresh(run)
        return run


def conversation(*, session: Session, thread: Thread) -> list[ChatMessage]:
    """A thread's recent messages as the provider receives them, oldest first."""
    return [
        ChatMessage(role=str(m.role), content=m.content)
        for m in thread_crud.recent_messages(session=session, thread=thread, limit=HISTORY_LIMIT)
    ]


def _estimate_input(
    *,
    session: Session,
    thread: Thread,
    instructions: str,
    new_content: str,
    model: AIModel,
    max_output: int,
) -> int:
    """Input tokens the run will most likely send: the context it will fit, estimated
    conservatively. A conversation that cannot fit is priced at its newest message; the
    run will fail without calling the provider."""
    history = conversation(session=session, thread=thread)
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
    return fitted.estimated_input_tokens
