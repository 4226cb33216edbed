"""The reference: Agentry's hot endpoints written the canonical FastAPI + SQLModel way.

Sync `def` routes, a `yield` session dependency, `CurrentUser` as a JWT decode then
`session.get(User, id)`, `response_model`, SQLAlchemy's default pool and Starlette's default
threadpool; no middleware. It reads and writes Agentry's own tables (the models are
imported, so the rows and the response bodies are the same) and accepts Agentry's access
tokens (the same secret, algorithm, audience and issuer, from the same environment). It
does less than Agentry on purpose: no login-session check, no request id, no log line, no
admission control. `benchmarks.run` serves it with uvicorn beside Agentry:

    uvicorn benchmarks.reference:app
"""

import uuid
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import func
from sqlmodel import Session, col, create_engine, select

from app.core.config import load_settings
from app.core.security import ALGORITHM
from app.models.agent import Agent, AgentCreate, AgentKnowledgeBase, AgentPublic, AgentsPublic
from app.models.citation import Citation, CitationPublic
from app.models.thread import Message, MessagePublic, MessagesPublic, Thread
from app.models.user import User, UserPublic

API = "/api/v1"

settings = load_settings()
# Default pool (5 connections, 10 overflow); SQLite's connections cross threads.
_connect_args: dict[str, Any] = (
    {"check_same_thread": False} if settings.database_url.startswith("sqlite") else {}
)
engine = create_engine(settings.database_url, connect_args=_connect_args)


def get_db() -> Iterator[Session]:
    with Session(engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]
reusable_oauth2 = OAuth2PasswordBearer(tokenUrl=f"{API}/login/access-token")
TokenDep = Annotated[str, Depends(reusable_oauth2)]


def get_current_user(session: SessionDep, token: TokenDep) -> User:
    try:
        payload = jwt.decode(
            token,
            settings.secret_key,
            algorithms=[ALGORITHM],
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
        )
        user_id = uuid.UUID(payload["sub"])
    except (jwt.InvalidTokenError, KeyError, ValueError):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN, detail="Could not validate credentials"
        ) from None
    user = session.get(User, user_id)
    if user is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="User not found")
    if not user.is_active:
        raise HTTPException(status_code=status.HTTP_400_BAD_REQUEST, detail="Inactive user")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get(f"{API}/users/me", response_model=UserPublic)
def read_user_me(current_user: CurrentUser) -> Any:
    return current_user


@app.get(f"{API}/agents", response_model=AgentsPublic)
def read_agents(
    session: SessionDep,
    current_user: CurrentUser,
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Any:
    mine = col(Agent.owner_id) == current_user.id
    count = session.exec(select(func.count()).select_from(Agent).where(mine)).one()
    statement = (
        select(Agent)
        .where(mine)
        .order_by(col(Agent.created_at).desc(), col(Agent.id))
        .offset(skip)
        .limit(limit)
    )
    agents = session.exec(statement).all()
    links = _knowledge_base_ids(session, [agent.id for agent in agents])
    data = [_agent_public(agent, links.get(agent.id, [])) for agent in agents]
    return AgentsPublic(data=data, count=count)


@app.get(f"{API}/agents/{{agent_id}}", response_model=AgentPublic)
def read_agent(session: SessionDep, current_user: CurrentUser, agent_id: uuid.UUID) -> Any:
    agent = session.get(Agent, agent_id)
    if agent is None or (agent.owner_id != current_user.id and not current_user.is_superuser):
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Agent not found")
    return _agent_public(agent, _knowledge_base_ids(session, [agent.id]).get(agent.id, []))


@app.post(f"{API}/agents", response_model=AgentPublic, status_code=status.HTTP_201_CREATED)
def create_agent(session: SessionDep, current_user: CurrentUser, agent_in: AgentCreate) -> Any:
    agent = Agent.model_validate(
        agent_in.model_dump(exclude={"knowledge_base_ids"}), update={"owner_id": current_user.id}
    )
    session.add(agent)
    for kb_id in agent_in.knowledge_base_ids:
        session.add(AgentKnowledgeBase(agent_id=agent.id, knowledge_base_id=kb_id))
    session.commit()
    session.refresh(agent)
    return _agent_public(agent, sorted(agent_in.knowledge_base_ids))


@app.get(f"{API}/threads/{{thread_id}}/messages", response_model=MessagesPublic)
def read_messages(
    session: SessionDep,
    current_user: CurrentUser,
    thread_id: uuid.UUID,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Any:
    """The first page, oldest first; `next_cursor` only says whether more follow."""
    thread = session.get(Thread, thread_id)
    if thread is None or thread.owner_id != current_user.id:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Thread not found")
    statement = (
        select(Message)
        .where(Message.thread_id == thread_id)
        .order_by(col(Message.created_at), col(Message.id))
        .limit(limit + 1)
    )
    messages = session.exec(statement).all()
    page = messages[:limit]
    cited: dict[uuid.UUID, list[CitationPublic]] = {}
    if page:
        citations = select(Citation).where(col(Citation.message_id).in_([m.id for m in page]))
        for citation in session.exec(citations.order_by(col(Citation.index))).all():
            cited.setdefault(citation.message_id, []).append(
                CitationPublic.model_validate(citation)
            )
    data = [
        MessagePublic.model_validate(message, update={"citations": cited.get(message.id, [])})
        for message in page
    ]
    return MessagesPublic(
        data=data, next_cursor=str(page[-1].id) if len(messages) > limit else None
    )


def _knowledge_base_ids(
    session: Session, agent_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    if not agent_ids:
        return {}
    statement = select(AgentKnowledgeBase).where(col(AgentKnowledgeBase.agent_id).in_(agent_ids))
    found: dict[uuid.UUID, list[uuid.UUID]] = {}
    for link in session.exec(statement).all():
        found.setdefault(link.agent_id, []).append(link.knowledge_base_id)
    return {agent_id: sorted(ids) for agent_id, ids in found.items()}


def _agent_public(agent: Agent, kb_ids: list[uuid.UUID]) -> AgentPublic:
    return AgentPublic.model_validate(agent, update={"knowledge_base_ids": kb_ids})
