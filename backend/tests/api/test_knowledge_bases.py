"""Knowledge bases through HTTP: their owner's alone, superusers included; a superuser may
list another owner's (metadata only)."""

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection
from sqlmodel import Session, col, func, select

from app.models.document import Chunk, Document
from app.models.knowledge_base import KnowledgeBase
from app.models.user import User
from app.modules.storage import Storage, build_storage
from tests.environment import settings
from tests.factories import (
    auth_headers,
    create_chunk,
    create_document,
    create_knowledge_base,
    create_user,
)
from tests.statements import statements_on

API = "/api/v1/knowledge-bases"


@pytest.fixture
def storage() -> Storage:
    return build_storage(settings)


@pytest.fixture
def other(db: Session) -> User:
    return create_user(db, full_name="Other Person")


@pytest.fixture
def other_headers(db: Session, other: User) -> dict[str, str]:
    return auth_headers(db, user=other)


def unique(text: str) -> bytes:
    """Content no other test stores: files are shared by content."""
    return f"{text} {uuid.uuid4().hex}".encode()


def kb_count(db: Session, owner: User) -> int:
    statement = select(func.count()).where(KnowledgeBase.owner_id == owner.id)
    return db.exec(statement).one()


class TestCreateKnowledgeBase:
    def test_anonymous_is_401(self, client: TestClient, db: Session, user: User) -> None:
        response = client.post(API, json={"name": "Docs"})
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_token"
        assert kb_count(db, user) == 0

    def test_creates_an_empty_knowledge_base(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        response = client.post(
            API, headers=user_headers, json={"name": "Handbook", "description": "HR policies"}
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["name"] == "Handbook"
        assert body["description"] == "HR policies"
        assert body["owner_id"] == str(user.id)
        assert (body["document_count"], body["size_bytes"]) == (0, 0)
        kb = db.get(KnowledgeBase, uuid.UUID(body["id"]))
        assert kb is not None
        assert (kb.owner_id, kb.name, kb.description) == (user.id, "Handbook", "HR policies")

    def test_a_name_i_already_use_is_409(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        create_knowledge_base(db, owner=user, name="Handbook")
        response = client.post(API, headers=user_headers, json={"name": "Handbook"})
        assert response.status_code == 409
        assert response.json()["code"] == "knowledge_base_name_taken"
        assert kb_count(db, user) == 1

    def test_the_name_of_someone_elses_is_free(
        self, client: TestClient, db: Session, user: User, other: User, user_headers: dict[str, str]
    ) -> None:
        create_knowledge_base(db, owner=other, name="Handbook")
        response = client.post(API, headers=user_headers, json={"name": "Handbook"})
        assert response.status_code == 201
        assert kb_count(db, user) == 1

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"name": "a\x00b"}, "name"),
            ({"name": ""}, "name"),
            ({"name": "n" * 101}, "name"),
            ({"name": "Docs", "description": "d" * 2001}, "description"),
            ({"name": "Docs", "owner_id": str(uuid.uuid4())}, "owner_id"),
            ({}, "name"),
        ],
        ids=["nul", "empty", "long-name", "long-description", "owner-id", "missing"],
    )
    def test_bad_input_is_422(
        self,
        client: TestClient,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        body: dict[str, Any],
        field: str,
    ) -> None:
        response = client.post(API, headers=user_headers, json=body)
        assert response.status_code == 422
        assert ["body", field] in [error["loc"] for error in response.json()["errors"]]
        assert kb_count(db, user) == 0


class TestListKnowledgeBases:
    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.get(API).status_code == 401

    def test_mine_only_with_their_contents(
        self,
        client: TestClient,
        db: Session,
        user: User,
        other: User,
        user_headers: dict[str, str],
    ) -> None:
        full = create_knowledge_base(db, owner=user, name="Full")
        empty = create_knowledge_base(db, owner=user, name="Empty")
        create_knowledge_base(db, owner=other, name="Theirs")
        create_document(db, knowledge_base=full, data=b"x" * 10, filename="a.txt")
        create_document(db, knowledge_base=full, data=b"y" * 32, filename="b.txt")
        response = client.get(API, headers=user_headers, params={"sort": "name"})
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == 2
        assert [(kb["id"], kb["document_count"], kb["size_bytes"]) for kb in body["data"]] == [
            (str(empty.id), 0, 0),
            (str(full.id), 2, 42),
        ]

    def test_search_sort_and_pages(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        for name in ("beta notes", "Alpha notes", "gamma", "Delta Notes"):
            create_knowledge_base(db, owner=user, name=name)
        response = client.get(
            API, headers=user_headers, params={"q": "NOTES", "sort": "-name", "limit": 2}
        )
        body = response.json()
        assert body["count"] == 3
        assert [kb["name"] for kb in body["data"]] == ["Delta Notes", "beta notes"]
        response = client.get(
            API, headers=user_headers, params={"q": "notes", "sort": "-name", "skip": 2}
        )
        assert [kb["name"] for kb in response.json()["data"]] == ["Alpha notes"]

    def test_one_aggregate_query_per_page(
        self,
        client: TestClient,
        db: Session,
        connection: Connection,
        user: User,
        user_headers: dict[str, str],
    ) -> None:
        def statements_for_a_page() -> int:
            with statements_on(connection) as seen:
                response = client.get(API, headers=user_headers)
            assert response.status_code == 200
            return len(seen)

        kb = create_knowledge_base(db, owner=user)
        create_document(db, knowledge_base=kb, data=unique("one"))
        one = statements_for_a_page()
        for _ in range(5):
            kb = create_knowledge_base(db, owner=user)
            create_document(db, knowledge_base=kb, data=unique("more"))
        assert statements_for_a_page() == one

    def test_superusers_see_their_own_unless_they_name_an_owner(
        self,
        client: TestClient,
        db: Session,
        user: User,
        superuser: User,
        superuser_headers: dict[str, str],
    ) -> None:
        mine = create_knowledge_base(db, owner=superuser, name="Admin's")
        theirs = create_knowledge_base(db, owner=user, name="User's")
        create_document(db, knowledge_base=theirs, data=b"z" * 7)
        response = client.get(API, headers=superuser_headers)
        assert [kb["id"] for kb in response.json()["data"]] == [str(mine.id)]
        response = client.get(API, headers=superuser_headers, params={"owner_id": str(user.id)})
        assert response.status_code == 200
        [listed] = response.json()["data"]
        assert (listed["id"], listed["owner_id"]) == (str(theirs.id), str(user.id))
        assert (listed["document_count"], listed["size_bytes"]) == (1, 7)

    def test_an_owner_filter_from_a_regular_user_is_422(
        self, client: TestClient, db: Session, user: User, other: User, user_headers: dict[str, str]
    ) -> None:
        create_knowledge_base(db, owner=other)
        response = client.get(API, headers=user_headers, params={"owner_id": str(other.id)})
        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "owner_filter_forbidden"
        assert body["errors"][0]["loc"] == ["query", "owner_id"]

    @pytest.mark.parametrize(
        "params",
        [{"q": "a\x00b"}, {"sort": "owner_id"}, {"limit": 101}, {"skip": -1}, {"q": "q" * 101}],
    )
    def test_bad_parameters_are_422(
        self, client: TestClient, user_headers: dict[str, str], params: dict[str, Any]
    ) -> None:
        response = client.get(API, headers=user_headers, params=params)
        assert response.status_code == 422
        [name] = params
        assert response.json()["errors"][0]["loc"] == ["query", name]


class TestReadKnowledgeBase:
    def test_anonymous_is_401(self, client: TestClient, db: Session, user: User) -> None:
        kb = create_knowledge_base(db, owner=user)
        assert client.get(f"{API}/{kb.id}").status_code == 401

    def test_mine_with_its_contents(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        kb = create_knowledge_base(db, owner=user, name="Mine", description="Things")
        create_document(db, knowledge_base=kb, data=b"abc")
        response = client.get(f"{API}/{kb.id}", headers=user_headers)
        assert response.status_code == 200
        body = response.json()
        assert (body["id"], body["name"], body["description"]) == (str(kb.id), "Mine", "Things")
        assert (body["document_count"], body["size_bytes"]) == (1, 3)

    @pytest.mark.parametrize("caller", ["other", "superuser"])
    def test_someone_elses_is_404(
        self,
        client: TestClient,
        db: Session,
        user: User,
        other_headers: dict[str, str],
        superuser_headers: dict[str, str],
        caller: str,
    ) -> None:
        kb = create_knowledge_base(db, owner=user)
        headers = other_headers if caller == "other" else superuser_headers
        response = client.get(f"{API}/{kb.id}", headers=headers)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"

    def test_an_unknown_one_is_404(self, client: TestClient, user_headers: dict[str, str]) -> None:
        response = client.get(f"{API}/{uuid.uuid4()}", headers=user_headers)
        assert response.status_code == 404


class TestUpdateKnowledgeBase:
    def test_anonymous_is_401(self, client: TestClient, db: Session, user: User) -> None:
        kb = create_knowledge_base(db, owner=user, name="Kept")
        assert client.patch(f"{API}/{kb.id}", json={"name": "X"}).status_code == 401
        db.refresh(kb)
        assert kb.name == "Kept"

    def test_renames_and_describes(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        kb = create_knowledge_base(db, owner=user, name="Old", description="Kept")
        before = kb.updated_at
        response = client.patch(f"{API}/{kb.id}", headers=user_headers, json={"name": "New"})
        assert response.status_code == 200
        body = response.json()
        assert (body["name"], body["description"], body["document_count"]) == ("New", "Kept", 0)
        db.refresh(kb)
        assert (kb.name, kb.description) == ("New", "Kept")
        assert kb.updated_at > before

    @pytest.mark.parametrize("caller", ["other", "superuser"])
    def test_someone_elses_is_404_and_unchanged(
        self,
        client: TestClient,
        db: Session,
        user: User,
        other_headers: dict[str, str],
        superuser_headers: dict[str, str],
        caller: str,
    ) -> None:
        kb = create_knowledge_base(db, owner=user, name="Kept")
        headers = other_headers if caller == "other" else superuser_headers
        response = client.patch(f"{API}/{kb.id}", headers=headers, json={"name": "Taken"})
        assert response.status_code == 404
        db.refresh(kb)
        assert kb.name == "Kept"

    def test_a_name_i_already_use_is_409(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        create_knowledge_base(db, owner=user, name="First")
        kb = create_knowledge_base(db, owner=user, name="Second")
        response = client.patch(f"{API}/{kb.id}", headers=user_headers, json={"name": "First"})
        assert response.status_code == 409
        assert response.json()["code"] == "knowledge_base_name_taken"
        db.refresh(kb)
        assert kb.name == "Second"

    def test_keeping_its_own_name_is_fine(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        kb = create_knowledge_base(db, owner=user, name="Same")
        response = client.patch(
            f"{API}/{kb.id}", headers=user_headers, json={"name": "Same", "description": "D"}
        )
        assert response.status_code == 200
        db.refresh(kb)
        assert kb.description == "D"

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"name": None}, "name"),
            ({"name": "a\x00b"}, "name"),
            ({"description": "d" * 2001}, "description"),
            ({"owner_id": str(uuid.uuid4())}, "owner_id"),
        ],
        ids=["null", "nul", "long", "unknown"],
    )
    def test_bad_input_is_422(
        self,
        client: TestClient,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        body: dict[str, Any],
        field: str,
    ) -> None:
        kb = create_knowledge_base(db, owner=user, name="Kept")
        response = client.patch(f"{API}/{kb.id}", headers=user_headers, json=body)
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", field]
        db.refresh(kb)
        assert (kb.name, kb.owner_id) == ("Kept", user.id)


class TestDeleteKnowledgeBase:
    def test_anonymous_is_401(self, client: TestClient, db: Session, user: User) -> None:
        kb = create_knowledge_base(db, owner=user)
        assert client.delete(f"{API}/{kb.id}").status_code == 401
        assert db.get(KnowledgeBase, kb.id) is not None

    @pytest.mark.parametrize("caller", ["other", "superuser"])
    def test_someone_elses_is_404_and_kept(
        self,
        client: TestClient,
        db: Session,
        user: User,
        storage: Storage,
        other_headers: dict[str, str],
        superuser_headers: dict[str, str],
        caller: str,
    ) -> None:
        kb = create_knowledge_base(db, owner=user)
        document = create_document(db, knowledge_base=kb, data=unique("kept"), storage=storage)
        headers = other_headers if caller == "other" else superuser_headers
        assert client.delete(f"{API}/{kb.id}", headers=headers).status_code == 404
        db.expire_all()
        assert db.get(KnowledgeBase, kb.id) is not None
        assert db.get(Document, document.id) is not None
        assert storage.exists(document.storage_key)

    def test_deletes_documents_chunks_and_unshared_files(
        self,
        client: TestClient,
        db: Session,
        user: User,
        other: User,
        storage: Storage,
        user_headers: dict[str, str],
    ) -> None:
        kb = create_knowledge_base(db, owner=user)
        alone = create_document(db, knowledge_base=kb, data=unique("alone"), storage=storage)
        shared_data = unique("shared")
        shared = create_document(db, knowledge_base=kb, data=shared_data, storage=storage)
        elsewhere = create_document(
            db, knowledge_base=create_knowledge_base(db, owner=other), data=shared_data
        )
        create_chunk(db, document=alone, text="A passage about gardening")
        create_chunk(db, document=shared, text="Another passage")
        kb_id, ids = kb.id, [alone.id, shared.id]
        alone_key, shared_key = alone.storage_key, shared.storage_key

        response = client.delete(f"{API}/{kb_id}", headers=user_headers)
        assert response.status_code == 204
        db.expire_all()
        assert db.get(KnowledgeBase, kb_id) is None
        assert db.exec(select(Document).where(col(Document.id).in_(ids))).all() == []
        assert db.exec(select(Chunk).where(col(Chunk.document_id).in_(ids))).all() == []
        assert not storage.exists(alone_key)
        # Another owner's document holds the same content: its file stays.
        assert db.get(Document, elsewhere.id) is not None
        assert storage.exists(shared_key)
