import uuid
from collections.abc import Sequence

from sqlalchemy import RowMapping
from sqlmodel import Session

from app.core.db import utcnow
from app.core.errors import NotFoundError, UnprocessableError
from app.crud import agent as agent_crud
from app.crud import knowledge_base as kb_crud
from app.crud import run as run_crud
from app.crud import user as user_crud
from app.crud.page import Page
from app.models.agent import Agent, AgentCreate, AgentListQuery, AgentPublic, AgentUpdate
from app.models.ai_model import ModelKind
from app.models.user import User
from app.services.ai_model_service import AIModelService


class AgentService:
    @staticmethod
    def list_agents(*, session: Session, user: User, query: AgentListQuery) -> Page[AgentPublic]:
        page = agent_crud.list_agents(session=session, user=user, query=query)
        return Page(
            data=[_public_row(row) for row in page.data],
            count=page.count,
        )

    @staticmethod
    def get(*, session: Session, user: User, agent_id: uuid.UUID) -> Agent:
        agent = agent_crud.get_agent(session=session, user=user, agent_id=agent_id)
        if agent is None:
            raise NotFoundError("Agent not found")  # same answer for missing and not yours
        return agent

    @staticmethod
    def read(*, session: Session, user: User, agent_id: uuid.UUID) -> AgentPublic:
        row = agent_crud.read_agent(session=session, user=user, agent_id=agent_id)
        if row is None:
            raise NotFoundError("Agent not found")  # same answer for missing and not yours
        return _public_row(row)

    @staticmethod
    def create(*, session: Session, user: User, agent_in: AgentCreate) -> AgentPublic:
        _check_model(
            session=session,
            model_id=agent_in.model_id,
            max_output_tokens=agent_in.max_output_tokens,
        )
        kb_ids = _check_knowledge_bases(
            session=session, owner=user, kb_ids=agent_in.knowledge_base_ids
        )
        agent = Agent.model_validate(
            agent_in.model_dump(exclude={"knowledge_base_ids"}), update={"owner_id": user.id}
        )
        session.add(agent)
        if kb_ids:  # a new agent has no links to replace
            session.flush()  # the links refer to the agent's row
            agent_crud.add_knowledge_bases(session=session, agent=agent, kb_ids=kb_ids)
        session.commit()
        return _public(agent, sorted(kb_ids))

    @staticmethod
    def update(
        *, session: Session, user: User, agent_id: uuid.UUID, agent_in: AgentUpdate
    ) -> AgentPublic:
        agent = AgentService.get(session=session, user=user, agent_id=agent_id)
        changes = agent_in.model_dump(exclude_unset=True)
        new_kb_ids = changes.pop("knowledge_base_ids", None)
        # Checked before the row changes: a flush of an unknown model_id would fail.
        _check_model(
            session=session,
            model_id=changes.get("model_id", agent.model_id),
            max_output_tokens=changes.get("max_output_tokens", agent.max_output_tokens),
        )
        if new_kb_ids is not None:
            # A superuser editing someone else's agent attaches that owner's, never their own.
            owner = user_crud.get_user(session=session, user_id=agent.owner_id)
            if owner is None:  # deleted meanwhile, and the agent with them
                raise NotFoundError("Agent not found")
            kb_ids = _check_knowledge_bases(session=session, owner=owner, kb_ids=new_kb_ids)
            agent_crud.set_knowledge_bases(session=session, agent=agent, kb_ids=kb_ids)
        agent.sqlmodel_update(changes)
        agent.updated_at = utcnow()
        session.add(agent)
        session.commit()
        return _with_knowledge_bases(session, agent)

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
    model = AIModelService.require_usable(
        session=session,
        model_id=model_id,
        kind=ModelKind.CHAT,
        field="model_id",
        user_of="an agent",
    )
    if max_output_tokens is not None and max_output_tokens > model.max_output_tokens:
        raise UnprocessableError(
            f"max_output_tokens exceeds the model's limit of {model.max_output_tokens}",
            loc=("body", "max_output_tokens"),
            code="max_output_tokens_too_large",
        )


def _check_knowledge_bases(
    *, session: Session, owner: User, kb_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """`kb_ids` without repeats, if every one names a knowledge base of the agent's owner;
    someone else's is refused exactly like one that does not exist."""
    distinct = list(dict.fromkeys(kb_ids))
    owned = kb_crud.owned_ids(session=session, user=owner, kb_ids=distinct)
    if len(owned) != len(distinct):
        raise UnprocessableError(
            "knowledge_base_ids names a knowledge base the agent's owner does not have",
            loc=("body", "knowledge_base_ids"),
            code="knowledge_base_not_found",
        )
    return distinct


def _with_knowledge_bases(session: Session, agent: Agent) -> AgentPublic:
    kb_ids = agent_crud.knowledge_base_ids(session=session, agent_ids=[agent.id])
    return _public(agent, kb_ids.get(agent.id, []))


def _public_row(row: RowMapping) -> AgentPublic:
    """The answer for an agent read as a row with its knowledge bases."""
    return AgentPublic.of(row, knowledge_base_ids=agent_crud.linked_knowledge_base_ids(row))


def _public(agent: Agent, kb_ids: list[uuid.UUID]) -> AgentPublic:
    return AgentPublic.model_validate(agent, update={"knowledge_base_ids": kb_ids})
