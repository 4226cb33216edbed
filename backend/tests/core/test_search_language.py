"""SEARCH_LANGUAGE: PostgreSQL's text search configuration for passages and queries,
checked at start-up, written by ingestion and rewritten by `agentry reindex-search`."""

import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, text
from sqlmodel import Session, col

from app.main import create_app
from app.models.document import DocumentStatus
from app.models.user import User
from tests.conftest import AgentryCommand, AppFactory
from tests.environment import engine, settings
from tests.factories import (
    auth_headers,
    create_chunk,
    create_document,
    create_knowledge_base,
    create_user,
)

on_postgres = pytest.mark.skipif(settings.is_sqlite, reason="PostgreSQL's text search")
on_sqlite = pytest.mark.skipif(not settings.is_sqlite, reason="SQLite's FTS5")
ENGLISH = settings.model_copy(update={"SEARCH_LANGUAGE": "english"})
PASSAGE = "Damaged parcels are refunded in full within thirty days."


def search(client: TestClient, kb_id: uuid.UUID, headers: dict[str, str], q: str) -> list[str]:
    response = client.get(
        f"/api/v1/knowledge-bases/{kb_id}/search", headers=headers, params={"q": q}
    )
    assert response.status_code == 200, response.text
    return [hit["text"] for hit in response.json()["data"]]


@on_postgres
def test_ingestion_writes_vectors_in_the_language(
    make_app: AppFactory, db: Session, user: User, user_headers: dict[str, str]
) -> None:
    kb = create_knowledge_base(db, owner=user)
    with TestClient(make_app(ENGLISH)) as client:
        response = client.post(
            f"/api/v1/knowledge-bases/{kb.id}/documents",
            headers=user_headers,
            files={"file": ("policy.txt", PASSAGE.encode())},
        )
        assert response.status_code == 202, response.text
        document = client.get(
            f"/api/v1/documents/{response.json()['id']}", headers=user_headers
        ).json()
        assert document["status"] == "ready"
        # English stems both "refunding" and "refunded" to "refund".
        assert search(client, kb.id, user_headers, "refunding parcel") == [PASSAGE]
    stored = db.execute(
        text("SELECT search_vector::text FROM chunk WHERE document_id = :id"),
        {"id": document["id"]},
    ).scalar_one()
    assert "'refund'" in stored
    assert "'parcel'" in stored
    # Searched in 'simple', the stemmed words are not the words typed.
    with TestClient(make_app()) as client:
        assert search(client, kb.id, user_headers, "refunding") == []


@pytest.fixture
def committed_owner() -> Iterator[tuple[User, uuid.UUID, dict[str, str]]]:
    """A user with a knowledge base of one passage indexed in 'simple', committed so that
    a command in its own session sees it."""
    with Session(engine, expire_on_commit=False) as session:
        user = create_user(session)
        kb = create_knowledge_base(session, owner=user)
        document = create_document(session, knowledge_base=kb, status=DocumentStatus.READY)
        create_chunk(session, document=document, text=PASSAGE)
        headers = auth_headers(session, user=user)
    try:
        yield user, kb.id, headers
    finally:
        with Session(engine) as session:
            session.execute(delete(User).where(col(User.id) == user.id))  # cascades
            session.commit()


@on_postgres
def test_reindex_search_rewrites_the_vectors(
    agentry: AgentryCommand, committed_owner: tuple[User, uuid.UUID, dict[str, str]]
) -> None:
    _user, kb_id, headers = committed_owner
    with TestClient(create_app(ENGLISH)) as client:
        assert search(client, kb_id, headers, "refunding") == []  # still in 'simple'

        result = agentry("reindex-search", env={"SEARCH_LANGUAGE": "english"})

        assert result.returncode == 0, result.stderr
        assert re.fullmatch(r"[1-9]\d* passages now searched in english\n", result.stdout)
        assert search(client, kb_id, headers, "refunding") == [PASSAGE]
    with Session(engine) as session:
        stored = session.execute(
            text("SELECT search_vector::text FROM chunk WHERE knowledge_base_id = :id"),
            {"id": kb_id},
        ).scalar_one()
    assert "'refund'" in stored


@on_postgres
@pytest.mark.parametrize("command", ["serve", "reindex-search"])
def test_an_unknown_language_is_one_line(agentry: AgentryCommand, command: str) -> None:
    result = agentry(command, env={"SEARCH_LANGUAGE": "klingon"})

    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "agentry: refusing to start: SEARCH_LANGUAGE: 'klingon' is not a text search "
        "configuration of this PostgreSQL database"
    ), line


@on_sqlite
def test_sqlite_has_nothing_to_reindex(agentry: AgentryCommand) -> None:
    result = agentry("reindex-search", env={"SEARCH_LANGUAGE": "english"})

    assert result.returncode == 0, result.stderr
    assert result.stdout == "SQLite's full-text index has no language: nothing to rewrite\n"
