"""The floor: Agentry's own SQL for `/users/me` and one agent, with nothing around it.

Where the bare route is the least any route can cost, this is the least these two
endpoints can cost on the same stack (uvicorn, FastAPI, a sync `def` route, psycopg on
PostgreSQL): the token checked as Agentry checks it (signature once per token, expiry and
the login session on every request), the same statements Agentry sends, each on a pooled
connection in autocommit, and a plain dict as the answer. No ORM, no dependency injection,
no middleware, no response model, no request log. What Agentry costs above it is what
those layers cost. PostgreSQL only; `benchmarks.run` serves it with uvicorn:

    uvicorn benchmarks.floor:app
"""

import uuid
from typing import Any, cast

import psycopg
from fastapi import FastAPI, HTTPException, Request, status
from psycopg.rows import DictRow, dict_row
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import QueuePool

from app.core.config import load_settings
from app.core.db import utcnow
from app.core.security import decode_access_token

API = "/api/v1"
POOL_SIZE = 5  # with Agentry (20) and the reference (15) up, per worker, under 100

USER = """
SELECT u.id, u.email, u.full_name, u.is_active, u.is_superuser, u.created_at,
       u.monthly_budget_usd, s.revoked_at, s.expires_at
FROM "user" u JOIN login_session s ON s.user_id = u.id
WHERE s.id = %(session_id)s AND u.id = %(user_id)s
"""
AGENT = """
SELECT a.id, a.owner_id, a.model_id, a.name, a.description, a.instructions, a.temperature,
       a.max_output_tokens, a.is_active, a.created_at, a.updated_at,
       (SELECT string_agg(CAST(l.knowledge_base_id AS VARCHAR), ',')
        FROM agent_knowledge_base l WHERE l.agent_id = a.id) AS knowledge_base_ids
FROM agent a
WHERE a.id = %(agent_id)s AND a.owner_id = %(owner_id)s
"""

settings = load_settings()
_url = make_url(settings.database_url).set(drivername="postgresql")
_conninfo = _url.render_as_string(hide_password=False)


def _connect() -> DBAPIConnection:
    return cast(DBAPIConnection, psycopg.connect(_conninfo, autocommit=True, row_factory=dict_row))


pool = QueuePool(
    _connect,
    pool_size=POOL_SIZE,
    max_overflow=0,
    reset_on_return=None,  # autocommit: nothing to roll back
)

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


def _fetch_one(statement: str, params: dict[str, Any]) -> DictRow | None:
    pooled = pool.connect()
    try:
        connection = cast("psycopg.Connection[DictRow]", pooled.driver_connection)
        return connection.execute(statement, params).fetchone()
    finally:
        pooled.close()  # back to the pool


def _user(request: Request) -> DictRow:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    claims = decode_access_token(token, config=settings)  # Agentry's check, remembered
    if scheme.lower() != "bearer" or claims is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED)
    params = {"session_id": claims.session_id, "user_id": claims.user_id}
    user = _fetch_one(USER, params)
    if user is None or user["revoked_at"] is not None or user["expires_at"] <= utcnow():
        raise HTTPException(status.HTTP_401_UNAUTHORIZED)
    if not user["is_active"]:
        raise HTTPException(status.HTTP_403_FORBIDDEN)
    return user


@app.get(f"{API}/users/me")
def read_user_me(request: Request) -> dict[str, Any]:
    user = _user(request)
    return {
        "id": str(user["id"]),
        "email": user["email"],
        "full_name": user["full_name"],
        "is_active": user["is_active"],
        "is_superuser": user["is_superuser"],
        "monthly_budget_usd": user["monthly_budget_usd"],
        "created_at": user["created_at"].isoformat(),
    }


@app.get(f"{API}/agents/{{agent_id}}")
def read_agent(agent_id: uuid.UUID, request: Request) -> dict[str, Any]:
    user = _user(request)
    agent = _fetch_one(AGENT, {"agent_id": agent_id, "owner_id": user["id"]})
    if agent is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND)
    links = agent["knowledge_base_ids"]
    return {
        "id": str(agent["id"]),
        "owner_id": str(agent["owner_id"]),
        "model_id": str(agent["model_id"]) if agent["model_id"] else None,
        "name": agent["name"],
        "description": agent["description"],
        "instructions": agent["instructions"],
        "temperature": agent["temperature"],
        "max_output_tokens": agent["max_output_tokens"],
        "is_active": agent["is_active"],
        "knowledge_base_ids": sorted(links.split(",")) if links else [],
        "created_at": agent["created_at"].isoformat(),
        "updated_at": agent["updated_at"].isoformat(),
    }
