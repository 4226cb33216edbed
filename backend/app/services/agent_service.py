import uuid

from sqlmodel import Session

from app.core.db import utcnow
from app.core.errors import NotFoundError, UnprocessableError
from app.crud import agent as agent_crud
from app.crud import ai_model as ai_model_crud
from app.crud import run as run_crud
from app.crud.page import Page
from app.models.agent import Agent, AgentCreate, AgentListQuery, AgentUpdate
from app.models.user import User


class AgentService:
    @staticmethod
    def list_agents(*, session: Session, user: User, query: AgentListQuery) -> Page[Agent]:
        return agent_crud.list_agents(session=session, user=user, query=query)

    @staticmethod
    def get(*, session: Session, user: User, agent_id: uuid.UUID) -> Agent:
        agent = agent_crud.get_agent(session=session, user=user, agent_id=agent_id)
        if agent is None:
            raise NotFoundError("Agent not found")  # same answer for missing and not yours
        return agent

    @staticmethod
    def create(*, session: Session, user: User, agent_in: AgentCreate) -> Agent:
        _check_model(
            session=session,
            model_id=agent_in.model_id,
            max_output_tokens=agent_in.max_output_tokens,
        )
        agent = Agent.model_validate(agent_in, update={"owner_id": user.id})
        session.add(agent)
        session.commit()
        return agent

    @staticmethod
    def update(
        *, session: Session, user: User, agent_id: uuid.UUID, agent_in: AgentUpdate
    ) -> Agent:
        agent = AgentService.get(session=session, user=user, agent_id=agent_id)
        changes = agent_in.model_dump(exclude_unset=True)
        # Checked before the row changes: a flush of an unknown model_id would fail.
        _check_model(
            session=session,
            model_id=changes.get("model_id", agent.model_id),
            max_output_tokens=changes.get("max_output_tokens", agent.max_output_tokens),
        )
        agent.sqlmodel_update(changes)
        agent.updated_at = utcnow()
        session.add(agent)
        session.commit()
        return agent

    @staticmethod
    def delete(*, session: Session, user: User, agent_id: uuid.UUID) -> None:
        agent = AgentService.get(session=session, user=user, agent_id=agent_id)
        # As for a deleted thread: runs in flight stay until they settle.
        run_crud.cancel_active(session=session, now=utcnow(), agent_id=agent.id)
        run_crud.delete_settled(session=session, agent_id=agent.id)
        session.delete(agent)  # its threads and their messages go with it (ON DELETE CASCADE)
        session.commit()


def _check_model(
    *, session: Session, model_id: uuid.UUID | None, max_output_tokens: int | None
) -> None:
    """An agent's model must exist and be enabled, and its output limit must fit it."""
    if model_id is None:
        return
    model = ai_model_crud.get_model_by_id(session=session, model_id=model_id)
    if model is None or not model.is_enabled:
        raise UnprocessableError(
            "model_id does not name an enabled model of the catalog",
            loc=("body", "model_id"),
            code="model_unavailable",
        )
    if max_output_tokens is not None and max_output_tokens > model.max_output_tokens:
        raise UnprocessableError(
            f"max_output_tokens exceeds the model's limit of {model.max_output_tokens}",
            loc=("body", "max_output_tokens"),
            code="max_output_tokens_too_large",
        )
