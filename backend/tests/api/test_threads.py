import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.core.db import utcnow
from app.models.thread import Message, Thread
from app.models.user import User
from tests.factories import create_agent, create_message, create_thread, create_user

THREADS = "/api/v1/threads"


class TestCreateThread:
    def test_starts_a_thread_on_my_agent(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        agent = create_agent(db, owner=user)
        response = client.post(THREADS, headers=user_headers, json={"agent_id": str(agent.id)})
        assert response.status_code == 201
        body = response.json()
        assert body["title"] is None
        assert body["last_message_at"] == body["created_at"]
        stored = db.get(Thread, uuid.UUID(body["id"]))
        assert stored is not None
        assert (stored.owner_id, stored.agent_id) == (user.id, agent.id)

    def test_someone_elses_agent_is_404_and_nothing_is_created(
        self,
        client: TestClient,
        db: Session,
        user: User,
        superuser: User,
        superuser_headers: dict[str, str],
    ) -> None:
        theirs = create_agent(db, owner=user)
        response = client.post(
            THREADS, headers=superuser_headers, json={"agent_id": str(theirs.id)}
        )
        assert response.status_code == 404
        assert db.exec(select(Thread).where(Thread.agent_id == theirs.id)).all() == []

    @pytest.mark.parametrize(
        "payload",
        [{}, {"agent_id": "nope"}, {"agent_id": str(uuid.uuid4()), "title": "x" * 201}],
    )
    def test_bad_input_is_422(
        self, client: TestClient, user_headers: dict[str, str], payload: dict[str, object]
    ) -> None:
        assert client.post(THREADS, headers=user_headers, json=payload).status_code == 422


class TestListThreads:
    def test_mine_most_recent_first_with_filters(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        agent, other_agent = create_agent(db, owner=user), create_agent(db, owner=user)
        old = create_thread(db, owner=user, agent=agent, title="old")
        new = create_thread(db, owner=user, agent=agent, title="new")
        old.last_message_at = utcnow() - timedelta(days=1)
        db.add(old)
        db.commit()
        create_thread(db, owner=user, agent=other_agent, title="elsewhere")
        create_thread(db, owner=create_user(db), agent=agent, title="not mine")
        response = client.get(THREADS, headers=user_headers, params={"agent_id": str(agent.id)})
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == 2
        assert [t["id"] for t in body["data"]] == [str(new.id), str(old.id)]

    def test_archived_filter(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        agent = create_agent(db, owner=user)
        archived = create_thread(db, owner=user, agent=agent)
        archived.is_archived = True
        db.add(archived)
        db.commit()
        create_thread(db, owner=user, agent=agent)
        body = client.get(THREADS, headers=user_headers, params={"is_archived": True}).json()
        assert [t["id"] for t in body["data"]] == [str(archived.id)]

    def test_superusers_do_not_see_others_conversations(
        self, client: TestClient, db: Session, user: User, superuser_headers: dict[str, str]
    ) -> None:
        thread = create_thread(db, owner=user, agent=create_agent(db, owner=user))
        assert client.get(THREADS, headers=superuser_headers).json()["count"] == 0
        response = client.get(f"{THREADS}/{thread.id}", headers=superuser_headers)
        assert response.status_code == 404
        messages = client.get(f"{THREADS}/{thread.id}/messages", headers=superuser_headers)
        assert messages.status_code == 404


class TestUpdateDeleteThread:
    def test_rename_and_archive(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        thread = create_thread(db, owner=user, agent=create_agent(db, owner=user))
        response = client.patch(
            f"{THREADS}/{thread.id}",
            headers=user_headers,
            json={"title": "Plans", "is_archived": True},
        )
        assert response.status_code == 200
        db.refresh(thread)
        assert (thread.title, thread.is_archived) == ("Plans", True)

    def test_someone_elses_thread_is_404_and_unchanged(
        self, client: TestClient, db: Session, user_headers: dict[str, str]
    ) -> None:
        owner = create_user(db)
        thread = create_thread(db, owner=owner, agent=create_agent(db, owner=owner), title="t")
        patch = client.patch(f"{THREADS}/{thread.id}", headers=user_headers, json={"title": "x"})
        delete = client.delete(f"{THREADS}/{thread.id}", headers=user_headers)
        assert patch.status_code == delete.status_code == 404
        db.refresh(thread)
        assert thread.title == "t"

    def test_delete_takes_messages_along(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        thread = create_thread(db, owner=user, agent=create_agent(db, owner=user))
        create_message(db, thread=thread)
        thread_id = thread.id
        assert client.delete(f"{THREADS}/{thread_id}", headers=user_headers).status_code == 204
        db.expunge_all()
        assert db.get(Thread, thread_id) is None
        assert db.exec(select(Message).where(Message.thread_id == thread_id)).all() == []
