"""Every route of the app against every kind of caller.

Each operation must have an entry here: a new route without one fails the suite, so its
access rules are decided on purpose. The world: `owner` owns an agent, a thread with a
message, a login session and a knowledge base with a ready document; `other` is another
regular user; `superuser` manages users and the catalog but, like `other`, never reads
someone else's conversations or documents.
"""

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.core.security import create_access_token
from app.main import create_app
from app.models.agent import Agent
from app.models.ai_model import AIModel
from app.models.auth import LoginSession
from app.models.document import Document, DocumentStatus
from app.models.knowledge_base import KnowledgeBase
from app.models.run import Run
from app.models.thread import Thread
from app.models.user import User
from app.modules.storage import build_storage
from tests.environment import settings
from tests.factories import (
    PASSWORD,
    create_agent,
    create_ai_model,
    create_document,
    create_knowledge_base,
    create_login_session,
    create_message,
    create_run,
    create_thread,
    create_user,
)

ACTORS = ("anonymous", "owner", "other", "superuser")


@dataclass
class World:
    owner: User
    other: User
    superuser: User
    agent: Agent
    thread: Thread
    model: AIModel
    owner_session: LoginSession
    run: Run
    knowledge_base: KnowledgeBase
    document: Document


Body = Callable[[World], dict[str, Any]] | None


@dataclass(frozen=True)
class Case:
    path: Callable[[World], str]
    expected: tuple[int, int, int, int]  # anonymous, owner, other, superuser
    json: Body = None
    form: Body = None
    files: Body = None


def fresh_email(_: World) -> dict[str, Any]:
    return {"email": f"new-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD}


MATRIX: dict[str, Case] = {
    # login and recovery are public: every caller gets the same answer
    "login_access_token": Case(
        lambda w: "/login/access-token",
        (200, 200, 200, 200),
        form=lambda w: {"username": w.owner.email, "password": PASSWORD},
    ),
    "refresh_token": Case(
        lambda w: "/login/refresh", (401, 401, 401, 401), json=lambda w: {"refresh_token": "x"}
    ),
    "logout": Case(lambda w: "/login/logout", (401, 204, 204, 204)),
    "recover_password": Case(
        lambda w: "/password-recovery",
        (202, 202, 202, 202),
        json=lambda w: {"email": w.owner.email},
    ),
    "reset_password": Case(
        lambda w: "/reset-password",
        (400, 400, 400, 400),
        json=lambda w: {"token": "not-a-token", "new_password": "a fresh passphrase"},
    ),
    # my account
    "read_user_me": Case(lambda w: "/users/me", (401, 200, 200, 200)),
    "update_user_me": Case(
        lambda w: "/users/me", (401, 200, 200, 200), json=lambda w: {"full_name": "Renamed"}
    ),
    "delete_user_me": Case(lambda w: "/users/me", (401, 204, 204, 403)),
    "update_password_me": Case(
        lambda w: "/users/me/password",
        (401, 200, 200, 200),
        json=lambda w: {"current_password": PASSWORD, "new_password": "a fresh passphrase"},
    ),
    "list_my_sessions": Case(lambda w: "/users/me/sessions", (401, 200, 200, 200)),
    "revoke_my_session": Case(
        lambda w: f"/users/me/sessions/{w.owner_session.id}", (401, 204, 404, 404)
    ),
    "register_user": Case(lambda w: "/users/signup", (201, 201, 201, 201), json=fresh_email),
    # user management
    "list_users": Case(lambda w: "/users", (401, 403, 403, 200)),
    "create_user": Case(lambda w: "/users", (401, 403, 403, 201), json=fresh_email),
    "read_user": Case(lambda w: f"/users/{w.owner.id}", (401, 403, 403, 200)),
    "update_user": Case(
        lambda w: f"/users/{w.owner.id}", (401, 403, 403, 200), json=lambda w: {"full_name": "X"}
    ),
    "delete_user": Case(lambda w: f"/users/{w.owner.id}", (401, 403, 403, 204)),
    "revoke_user_sessions": Case(
        lambda w: f"/users/{w.owner.id}/revoke-sessions", (401, 403, 403, 200)
    ),
    "list_audit_log": Case(lambda w: "/admin/audit-log", (401, 403, 403, 200)),
    # the catalog: everyone reads, superusers write
    "list_models": Case(lambda w: "/models", (401, 200, 200, 200)),
    "read_model": Case(lambda w: f"/models/{w.model.id}", (401, 200, 200, 200)),
    "create_model": Case(
        lambda w: "/models",
        (401, 403, 403, 201),
        json=lambda w: {
            "provider": "openai",
            "name": f"m-{uuid.uuid4().hex[:8]}",
            "display_name": "M",
            "context_window": 1000,
            "max_output_tokens": 100,
            "input_price_per_million": "1.5",
            "output_price_per_million": "2",
        },
    ),
    "update_model": Case(
        lambda w: f"/models/{w.model.id}",
        (401, 403, 403, 200),
        json=lambda w: {"display_name": "N"},
    ),
    "delete_model": Case(lambda w: f"/models/{w.model.id}", (401, 403, 403, 204)),
    # agents: the owner's, and every one for superusers
    "list_agents": Case(lambda w: "/agents", (401, 200, 200, 200)),
    "create_agent": Case(lambda w: "/agents", (401, 201, 201, 201), json=lambda w: {"name": "A"}),
    "read_agent": Case(lambda w: f"/agents/{w.agent.id}", (401, 200, 404, 200)),
    "update_agent": Case(
        lambda w: f"/agents/{w.agent.id}", (401, 200, 404, 200), json=lambda w: {"name": "B"}
    ),
    "delete_agent": Case(lambda w: f"/agents/{w.agent.id}", (401, 204, 404, 204)),
    # conversations: the owner's alone
    "list_threads": Case(lambda w: "/threads", (401, 200, 200, 200)),
    "create_thread": Case(
        lambda w: "/threads", (401, 201, 404, 404), json=lambda w: {"agent_id": str(w.agent.id)}
    ),
    "read_thread": Case(lambda w: f"/threads/{w.thread.id}", (401, 200, 404, 404)),
    "update_thread": Case(
        lambda w: f"/threads/{w.thread.id}", (401, 200, 404, 404), json=lambda w: {"title": "T"}
    ),
    "delete_thread": Case(lambda w: f"/threads/{w.thread.id}", (401, 204, 404, 404)),
    "list_messages": Case(lambda w: f"/threads/{w.thread.id}/messages", (401, 200, 404, 404)),
    "create_message": Case(
        lambda w: f"/threads/{w.thread.id}/messages",
        (401, 409, 404, 404),  # the world's thread has a queued run already
        json=lambda w: {"content": "hi"},
    ),
    "list_thread_runs": Case(lambda w: f"/threads/{w.thread.id}/runs", (401, 200, 404, 404)),
    # runs: metadata for the owner and superusers
    "read_run": Case(lambda w: f"/runs/{w.run.id}", (401, 200, 404, 200)),
    "cancel_run": Case(lambda w: f"/runs/{w.run.id}/cancel", (401, 200, 404, 200)),
    # knowledge bases and their documents: the owner's alone, superusers included
    "list_knowledge_bases": Case(lambda w: "/knowledge-bases", (401, 200, 200, 200)),
    "create_knowledge_base": Case(
        lambda w: "/knowledge-bases", (401, 201, 201, 201), json=lambda w: {"name": "KB"}
    ),
    "read_knowledge_base": Case(
        lambda w: f"/knowledge-bases/{w.knowledge_base.id}", (401, 200, 404, 404)
    ),
    "update_knowledge_base": Case(
        lambda w: f"/knowledge-bases/{w.knowledge_base.id}",
        (401, 200, 404, 404),
        json=lambda w: {"description": "D"},
    ),
    "delete_knowledge_base": Case(
        lambda w: f"/knowledge-bases/{w.knowledge_base.id}", (401, 204, 404, 404)
    ),
    "upload_document": Case(
        lambda w: f"/knowledge-bases/{w.knowledge_base.id}/documents",
        (401, 202, 404, 404),
        files=lambda w: {"file": ("new.txt", f"New words {uuid.uuid4()}".encode())},
    ),
    "list_documents": Case(
        lambda w: f"/knowledge-bases/{w.knowledge_base.id}/documents", (401, 200, 404, 404)
    ),
    "read_document": Case(lambda w: f"/documents/{w.document.id}", (401, 200, 404, 404)),
    "download_document": Case(lambda w: f"/documents/{w.document.id}/file", (401, 200, 404, 404)),
    "delete_document": Case(lambda w: f"/documents/{w.document.id}", (401, 204, 404, 404)),
    "reprocess_document": Case(
        lambda w: f"/documents/{w.document.id}/reprocess", (401, 202, 404, 404)
    ),
    "search_knowledge_base": Case(
        lambda w: f"/knowledge-bases/{w.knowledge_base.id}/search?q=Words+to+find",
        (401, 200, 404, 404),
    ),
    # usage
    "read_my_usage": Case(lambda w: "/users/me/usage", (401, 200, 200, 200)),
    "read_my_quota": Case(lambda w: "/users/me/quota", (401, 200, 200, 200)),
    "read_usage_report": Case(lambda w: "/admin/usage", (401, 403, 403, 200)),
    # probes
    "health_check": Case(lambda w: "/utils/health-check", (200, 200, 200, 200)),
    "readiness_check": Case(lambda w: "/utils/readiness", (200, 200, 200, 200)),
}


def operations() -> dict[str, tuple[str, str]]:
    """operation_id -> (method, path) for every route the app serves."""
    found = {}
    for context in iter_route_contexts(create_app().routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.operation_id:
            [method] = list(route.methods or ())
            found[route.operation_id] = (method, context.path_format or route.path)
    return found


OPERATIONS = operations()


def test_every_route_has_an_entry() -> None:
    missing = sorted(set(OPERATIONS) - set(MATRIX))
    stale = sorted(set(MATRIX) - set(OPERATIONS))
    assert missing == [], f"add these operations to MATRIX: {missing}"
    assert stale == [], f"these MATRIX entries name no route: {stale}"


@pytest.fixture
def world(db: Session) -> World:
    owner = create_user(db)
    agent = create_agent(db, owner=owner, model=create_ai_model(db))
    thread = create_thread(db, owner=owner, agent=agent)
    message = create_message(db, thread=thread)
    run = create_run(db, thread=thread, agent=agent, message=message)
    knowledge_base = create_knowledge_base(db, owner=owner)
    document = create_document(
        db,
        knowledge_base=knowledge_base,
        data=f"Words to find {uuid.uuid4()}".encode(),
        status=DocumentStatus.READY,
        storage=build_storage(settings),
    )
    return World(
        run=run,
        knowledge_base=knowledge_base,
        document=document,
        owner=owner,
        other=create_user(db),
        superuser=create_user(db, is_superuser=True),
        agent=agent,
        thread=thread,
        model=create_ai_model(db),
        owner_session=create_login_session(db, user=owner),
    )


def headers_for(db: Session, world: World, actor: str) -> dict[str, str]:
    if actor == "anonymous":
        return {}
    user = {"owner": world.owner, "other": world.other, "superuser": world.superuser}[actor]
    session_id = world.owner_session.id if actor == "owner" else None
    if session_id is None:
        session_id = create_login_session(db, user=user).id
    token, _ = create_access_token(user_id=user.id, session_id=session_id, config=settings)
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("operation_id", sorted(MATRIX))
def test_access(
    client: TestClient, db: Session, world: World, operation_id: str, actor: str
) -> None:
    case = MATRIX[operation_id]
    method, template = OPERATIONS[operation_id]
    path = case.path(world)
    pattern = re.sub(r"\{[^}]+\}", "[^/]+", template)
    route = "/api/v1" + path.partition("?")[0]
    assert re.fullmatch(pattern, route), f"{operation_id}: {path} is not {template}"
    headers = headers_for(db, world, actor)
    response = client.request(
        method,
        "/api/v1" + path,
        headers=headers,
        json=case.json(world) if case.json else None,
        data=case.form(world) if case.form else None,
        files=case.files(world) if case.files else None,
    )
    expected = case.expected[ACTORS.index(actor)]
    assert response.status_code == expected, (
        f"{operation_id} as {actor}: {response.status_code} {response.text[:200]}"
    )
    if expected >= 400:
        assert set(response.json()) >= {"detail", "code", "request_id"}
