import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.core.db import utcnow
from app.models.thread import Message, Thread
from app.models.user import User
from tests.factories import (
    create_agent,
    create_ai_model,
    create_message,
    create_thread,
    create_user,
)


def messages_url(thread: Thread) -> str:
    return f"/api/v1/threads/{thread.id}/messages"


@pytest.fixture
def thread(db: Session, user: User) -> Thread:
    agent = create_agent(db, owner=user, model=create_ai_model(db))
    return create_thread(db, owner=user, agent=agent)


class TestPostMessage:
    def test_stores_my_message_and_titles_the_thread(
        self, client: TestClient, db: Session, thread: Thread, user_headers: dict[str, str]
    ) -> None:
        content = "  What is   the boiling point of water at 2,000 metres? " + "x" * 100
        response = client.post(
            messages_url(thread), headers=user_headers, json={"content": content}
        )
        assert response.status_code == 202
        body = response.json()["message"]
        assert body["role"] == "user"
        assert body["content"] == content
        stored = db.get(Message, uuid.UUID(body["id"]))
        assert stored is not None
        assert stored.content == content
        db.refresh(thread)
        assert thread.title is not None
        assert thread.title.startswith("What is the boiling point of water at 2,000 metres?")
        assert len(thread.title) == 80
        assert thread.last_message_at == stored.created_at

    def test_a_given_title_is_kept(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        agent = create_agent(db, owner=user, model=create_ai_model(db))
        titled = create_thread(db, owner=user, agent=agent, title="Mine")
        client.post(messages_url(titled), headers=user_headers, json={"content": "hi"})
        db.refresh(titled)
        assert titled.title == "Mine"

    @pytest.mark.parametrize(
        "payload",
        [
            {"content": ""},
            {"content": "x" * 32_001},
            {"content": "hi", "role": "assistant"},
            {"content": "hi", "role": "system"},
            {},
        ],
    )
    def test_bad_input_is_422_and_nothing_is_stored(
        self,
        client: TestClient,
        db: Session,
        thread: Thread,
        user_headers: dict[str, str],
        payload: dict[str, object],
    ) -> None:
        response = client.post(messages_url(thread), headers=user_headers, json=payload)
        assert response.status_code == 422
        assert db.exec(select(Message).where(Message.thread_id == thread.id)).all() == []

    def test_someone_elses_thread_is_404_and_nothing_is_stored(
        self, client: TestClient, db: Session, thread: Thread, superuser_headers: dict[str, str]
    ) -> None:
        response = client.post(
            messages_url(thread), headers=superuser_headers, json={"content": "hi"}
        )
        assert response.status_code == 404
        assert db.exec(select(Message).where(Message.thread_id == thread.id)).all() == []

    def test_archived_thread_is_409(
        self, client: TestClient, db: Session, thread: Thread, user_headers: dict[str, str]
    ) -> None:
        thread.is_archived = True
        db.add(thread)
        db.commit()
        response = client.post(messages_url(thread), headers=user_headers, json={"content": "x"})
        assert response.status_code == 409
        assert response.json()["code"] == "thread_archived"


class TestListMessages:
    def test_pages_by_cursor_in_both_orders(
        self, client: TestClient, db: Session, thread: Thread, user_headers: dict[str, str]
    ) -> None:
        start = utcnow() - timedelta(minutes=10)
        for number in range(5):
            create_message(
                db,
                thread=thread,
                content=f"m{number}",
                created_at=start + timedelta(seconds=number),
            )
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = client.get(messages_url(thread), headers=user_headers, params=params).json()
            seen += [m["content"] for m in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ["m0", "m1", "m2", "m3", "m4"]
        newest = client.get(
            messages_url(thread), headers=user_headers, params={"order": "desc", "limit": 3}
        ).json()
        assert [m["content"] for m in newest["data"]] == ["m4", "m3", "m2"]

    def test_rows_inserted_between_pages_do_not_shift_them(
        self, client: TestClient, db: Session, thread: Thread, user_headers: dict[str, str]
    ) -> None:
        start = utcnow() - timedelta(minutes=10)
        for number in range(4):
            create_message(
                db,
                thread=thread,
                content=f"m{number}",
                created_at=start + timedelta(seconds=number),
            )
        first = client.get(
            messages_url(thread), headers=user_headers, params={"order": "desc", "limit": 2}
        ).json()
        create_message(db, thread=thread, content="newer")  # arrives mid-way
        second = client.get(
            messages_url(thread),
            headers=user_headers,
            params={"order": "desc", "limit": 2, "cursor": first["next_cursor"]},
        ).json()
        assert [m["content"] for m in first["data"] + second["data"]] == ["m3", "m2", "m1", "m0"]

    def test_same_timestamp_messages_are_neither_lost_nor_repeated(
        self, client: TestClient, db: Session, thread: Thread, user_headers: dict[str, str]
    ) -> None:
        moment = utcnow() - timedelta(minutes=1)
        for number in range(5):
            create_message(db, thread=thread, content=f"t{number}", created_at=moment)
        ids: list[str] = []
        cursor = None
        for _ in range(5):
            params: dict[str, str | int] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = client.get(messages_url(thread), headers=user_headers, params=params).json()
            ids += [m["id"] for m in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(ids) == len(set(ids)) == 5

    @pytest.mark.parametrize(
        "params",
        [{"limit": 0}, {"limit": 101}, {"order": "sideways"}, {"cursor": "!!not-base64!!"}],
    )
    def test_bad_queries_are_422(
        self,
        client: TestClient,
        thread: Thread,
        user_headers: dict[str, str],
        params: dict[str, str | int],
    ) -> None:
        response = client.get(messages_url(thread), headers=user_headers, params=params)
        assert response.status_code == 422

    @pytest.fixture
    def theirs(self, db: Session) -> Thread:
        """Someone else's thread, with one private message."""
        owner = create_user(db)
        thread = create_thread(db, owner=owner, agent=create_agent(db, owner=owner))
        create_message(db, thread=thread, content="private")
        return thread

    def test_someone_elses_thread_is_404(
        self, client: TestClient, theirs: Thread, user_headers: dict[str, str]
    ) -> None:
        response = client.get(messages_url(theirs), headers=user_headers)
        assert response.status_code == 404
        assert "private" not in response.text

    def test_someone_elses_thread_is_404_whatever_the_cursor(
        self, client: TestClient, theirs: Thread, user_headers: dict[str, str]
    ) -> None:
        """The page's own statement checks the thread; a cursor is judged after it."""
        for cursor in ("not-a-cursor", "MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHwx"):
            response = client.get(
                messages_url(theirs), headers=user_headers, params={"cursor": cursor}
            )
            assert response.status_code == 404
            assert response.json()["code"] == "not_found"

    def test_my_thread_without_messages_is_an_empty_page(
        self, client: TestClient, thread: Thread, user_headers: dict[str, str]
    ) -> None:
        response = client.get(messages_url(thread), headers=user_headers)
        assert response.status_code == 200
        assert response.json() == {"data": [], "next_cursor": None}
