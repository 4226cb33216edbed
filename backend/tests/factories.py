"""Rows for tests, made the way the app makes them. Keyword-only; objects, not ids."""

import hashlib
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from app.core.db import utcnow
from app.core.security import create_access_token, hash_password
from app.crud import chunk as chunk_crud
from app.models.agent import Agent
from app.models.ai_model import AIModel
from app.models.auth import LoginSession
from app.models.document import Chunk, Document, DocumentStatus
from app.models.knowledge_base import KnowledgeBase
from app.models.run import Run, RunStatus
from app.models.thread import Message, MessageRole, Thread
from app.models.usage import UsageEntry
from app.models.user import User
from app.modules.storage import Storage, key_for
from app.services.ingestion_service import IngestPolicy
from app.services.run_runtime import RunPolicy
from tests.environment import settings

PASSWORD = "a long and unusual passphrase"


def create_user(
    session: Session,
    *,
    email: str | None = None,
    password: str = PASSWORD,
    full_name: str | None = None,
    is_superuser: bool = False,
    is_active: bool = True,
) -> User:
    user = User(
        email=email or f"user-{uuid.uuid4().hex[:10]}@example.com",
        full_name=full_name,
        hashed_password=hash_password(password, config=settings),
        is_superuser=is_superuser,
        is_active=is_active,
    )
    session.add(user)
    session.commit()
    return user


def create_login_session(session: Session, *, user: User) -> LoginSession:
    login_session = LoginSession(user_id=user.id, expires_at=utcnow() + timedelta(days=30))
    session.add(login_session)
    session.commit()
    return login_session


def auth_headers(session: Session, *, user: User) -> dict[str, str]:
    """A bearer header on a fresh login session of `user`, without going through /login."""
    login_session = create_login_session(session, user=user)
    token, _ = create_access_token(user_id=user.id, session_id=login_session.id, config=settings)
    return {"Authorization": f"Bearer {token}"}


def create_agent(
    session: Session,
    *,
    owner: User,
    name: str = "Helper",
    description: str = "",
    model: AIModel | None = None,
    instructions: str = "Be brief.",
) -> Agent:
    agent = Agent(
        owner_id=owner.id,
        name=name,
        description=description,
        model_id=model.id if model else None,
        instructions=instructions,
    )
    session.add(agent)
    session.commit()
    return agent


def create_thread(
    session: Session, *, owner: User, agent: Agent, title: str | None = None
) -> Thread:
    now = utcnow()
    thread = Thread(
        owner_id=owner.id,
        agent_id=agent.id,
        title=title,
        created_at=now,
        updated_at=now,
        last_message_at=now,
    )
    session.add(thread)
    session.commit()
    return thread


def create_message(
    session: Session,
    *,
    thread: Thread,
    content: str = "Hello",
    role: MessageRole = MessageRole.USER,
    created_at: datetime | None = None,
) -> Message:
    message = Message(
        thread_id=thread.id, role=role, content=content, created_at=created_at or utcnow()
    )
    session.add(message)
    session.commit()
    return message


def create_ai_model(
    session: Session,
    *,
    provider: str = "openai",
    name: str | None = None,
    display_name: str | None = None,
    context_window: int = 128_000,
    max_output_tokens: int = 16_384,
    input_price_per_million: Decimal = Decimal("2.500000"),
    output_price_per_million: Decimal = Decimal("10.000000"),
    is_enabled: bool = True,
) -> AIModel:
    name = name or f"model-{uuid.uuid4().hex[:10]}"
    model = AIModel(
        provider=provider,
        name=name,
        display_name=display_name or name,
        context_window=context_window,
        max_output_tokens=max_output_tokens,
        input_price_per_million=input_price_per_million,
        output_price_per_million=output_price_per_million,
        is_enabled=is_enabled,
    )
    session.add(model)
    session.commit()
    return model


def create_run(
    session: Session,
    *,
    thread: Thread,
    agent: Agent,
    message: Message,
    status: RunStatus = RunStatus.QUEUED,
    reserved_usd: Decimal = Decimal(0),
    lease_owner: str | None = None,
    lease_expires_at: datetime | None = None,
    created_at: datetime | None = None,
) -> Run:
    """A run as RunService.post would leave it, priced at the agent's model."""
    assert agent.model_id is not None
    model = session.get(AIModel, agent.model_id)
    assert model is not None
    run = Run(
        thread_id=thread.id,
        owner_id=thread.owner_id,
        agent_id=agent.id,
        model_id=agent.model_id,
        user_message_id=message.id,
        status=status,
        max_output_tokens=100,
        temperature=agent.temperature,
        instructions=agent.instructions,
        context_window=model.context_window,
        input_price_per_million=model.input_price_per_million,
        output_price_per_million=model.output_price_per_million,
        reserved_usd=reserved_usd,
        lease_owner=lease_owner,
        lease_expires_at=lease_expires_at,
        created_at=created_at or utcnow(),
    )
    session.add(run)
    session.commit()
    return run


def create_usage(
    session: Session,
    *,
    user: User,
    cost: str,
    at: datetime,
    model_name: str = "gpt-test",
    tokens: tuple[int, int] = (10, 5),
) -> UsageEntry:
    """A ledger row as a billed call leaves it (the ids it names need not exist)."""
    entry = UsageEntry(
        created_at=at,
        user_id=user.id,
        agent_id=uuid.uuid4(),
        thread_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        model_id=uuid.uuid4(),
        model_provider="openai",
        model_name=model_name,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        input_price_per_million=Decimal("1"),
        output_price_per_million=Decimal("2"),
        cost_usd=Decimal(cost),
    )
    session.add(entry)
    session.commit()
    return entry


def run_policy(**changes: Any) -> RunPolicy:
    """The run timings of the test settings, with `changes` (RunPolicy fields)."""
    return replace(RunPolicy.from_settings(settings), **changes)


def ingest_policy(**changes: Any) -> IngestPolicy:
    """The ingestion timings and limits of the test settings, with `changes`."""
    return replace(IngestPolicy.from_settings(settings), **changes)


def create_knowledge_base(
    session: Session, *, owner: User, name: str | None = None, description: str = ""
) -> KnowledgeBase:
    knowledge_base = KnowledgeBase(
        owner_id=owner.id,
        name=name or f"kb-{uuid.uuid4().hex[:10]}",
        description=description,
    )
    session.add(knowledge_base)
    session.commit()
    return knowledge_base


def create_document(
    session: Session,
    *,
    knowledge_base: KnowledgeBase,
    data: bytes = b"A few words to find.",
    filename: str = "notes.txt",
    content_type: str = "text/plain",
    title: str | None = None,
    status: DocumentStatus = DocumentStatus.QUEUED,
    storage: Storage | None = None,
    lease_owner: str | None = None,
    lease_expires_at: datetime | None = None,
    attempts: int = 0,
    created_at: datetime | None = None,
) -> Document:
    """A document as an upload leaves it; its file is stored only if `storage` is given."""
    document = Document(
        knowledge_base_id=knowledge_base.id,
        owner_id=knowledge_base.owner_id,
        title=title or filename,
        filename=filename,
        content_type=content_type,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        storage_key=storage.put(data) if storage is not None else key_for(data),
        status=status,
        lease_owner=lease_owner,
        lease_expires_at=lease_expires_at,
        attempts=attempts,
        created_at=created_at or utcnow(),
    )
    session.add(document)
    session.commit()
    return document


def create_chunk(
    session: Session,
    *,
    document: Document,
    text: str,
    ordinal: int = 0,
    heading: str | None = None,
    page: int | None = None,
) -> Chunk:
    """A passage of `document`, as ingestion writes it (the full-text index follows)."""
    chunk = Chunk(
        document_id=document.id,
        knowledge_base_id=document.knowledge_base_id,
        owner_id=document.owner_id,
        ordinal=ordinal,
        text=text,
        page_start=page,
        page_end=page,
        heading=heading,
        char_start=0,
        char_end=len(text),
    )
    session.add(chunk)
    session.flush()
    chunk_crud.write_search_vectors(
        session=session, document_ids=[document.id], language=settings.SEARCH_LANGUAGE
    )
    session.commit()
    return chunk


class ParkedDispatcher:
    """Delivers nothing: runs, documents and index builds stay queued, as behind a slow
    worker."""

    policy = RunPolicy.from_settings(settings)

    def dispatch(self, run_id: uuid.UUID) -> None:
        pass

    def ingest(self, document_id: uuid.UUID) -> None:
        pass

    def index(self, kb_id: uuid.UUID) -> None:
        pass

    def recover(self) -> None:
        pass

    def close(self) -> None:
        pass
