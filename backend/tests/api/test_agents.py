import uuid

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.models.agent import Agent
from app.models.thread import Message, Thread
from app.models.user import User
from tests.factories import (
    auth_headers,
    create_agent,
    create_ai_model,
    create_message,
    create_thread,
    create_user,
)

AGENTS = "/api/v1/agents"


class TestCreateAgent:
    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.post(AGENTS, json={"name": "x"}).status_code == 401

    def test_creates_an_agent_owned_by_me(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        model = create_ai_model(db, max_output_tokens=4096)
        response = client.post(
            AGENTS,
            headers=user_headers,
            json={
                "name": "Researcher",
                "description": "Finds sources",
                "model_id": str(model.id),
                "instructions": "Cite everything.",
                "temperature": 0.2,
                "max_output_tokens": 1024,
            },
        )
        assert response.status_code == 201
        body = response.json()
        assert body["owner_id"] == str(user.id)
        assert body["temperature"] == 0.2
        stored = db.get(Agent, uuid.UUID(body["id"]))
        assert stored is not None
        assert (stored.owner_id, stored.model_id, stored.max_output_tokens) == (
            user.id,
            model.id,
            1024,
        )

    @pytest.mark.parametrize(
        "payload",
        [
            {"name": ""},
            {"name": "x" * 101},
            {"name": "x", "temperature": 2.5},
            {"name": "x", "temperature": -0.1},
            {"name": "x", "instructions": "x" * 20_001},
            {"name": "x", "max_output_tokens": 0},
            {"name": "x", "owner_id": str(uuid.uuid4())},
            {"name": "x", "id": str(uuid.uuid4())},
        ],
    )
    def test_bad_input_is_422_and_nothing_is_stored(
        self,
        client: TestClient,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        payload: dict[str, object],
    ) -> None:
        response = client.post(AGENTS, headers=user_headers, json=payload)
        assert response.status_code == 422
        assert db.exec(select(Agent).where(Agent.owner_id == user.id)).all() == []

    def test_unknown_or_disabled_model_is_422(
        self, client: TestClient, db: Session, user_headers: dict[str, str]
    ) -> None:
        disabled = create_ai_model(db, is_enabled=False)
        for model_id in (uuid.uuid4(), disabled.id):
            response = client.post(
                AGENTS, headers=user_headers, json={"name": "x", "model_id": str(model_id)}
            )
            assert response.status_code == 422
            assert response.json()["code"] == "model_unavailable"

    def test_output_limit_above_the_models_is_422(
        self, client: TestClient, db: Session, user_headers: dict[str, str]
    ) -> None:
        model = create_ai_model(db, max_output_tokens=4096)
        response = client.post(
            AGENTS,
            headers=user_headers,
            json={"name": "x", "model_id": str(model.id), "max_output_tokens": 4097},
        )
        assert response.status_code == 422
        assert response.json()["code"] == "max_output_tokens_too_large"


class TestListAgents:
    def test_mine_only_with_search_sort_and_count(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        for name in ("beta bot", "Alpha bot", "gamma"):
            create_agent(db, owner=user, name=name)
        create_agent(db, owner=create_user(db), name="alpha bot of someone else")
        response = client.get(
            AGENTS, headers=user_headers, params={"q": "BOT", "sort": "name", "limit": 1}
        )
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == 2
        assert [a["name"] for a in body["data"]] == ["Alpha bot"]

    def test_description_is_searched_too(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        create_agent(db, owner=user, name="plain", description="Knows 100% of Python")
        found = client.get(AGENTS, headers=user_headers, params={"q": "100%"}).json()
        assert [a["name"] for a in found["data"]] == ["plain"]

    @pytest.mark.parametrize(
        "q",
        ["ÜBERSETZER", "übersetzer", "\u0394\u0397\u039c\u0397\u03a4\u03a1\u0391"],
        ids=["latin-upper", "latin-lower", "greek-upper"],
    )
    def test_search_ignores_case_beyond_ascii(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str], q: str
    ) -> None:
        create_agent(db, owner=user, name="Übersetzer")
        create_agent(
            db, owner=user, name="helper", description="\u0394\u03b7\u03bc\u03b7\u03c4\u03c1\u03b1"
        )
        create_agent(db, owner=user, name="Ubersetzer Demetra")
        found = client.get(AGENTS, headers=user_headers, params={"q": q, "sort": "name"}).json()
        expected = "helper" if q.startswith("\u0394") else "Übersetzer"
        assert [a["name"] for a in found["data"]] == [expected]

    def test_names_sort_ignoring_case_beyond_ascii(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        for name in ("Zebra", "ÉCOLE", "éclair", "Apple"):
            create_agent(db, owner=user, name=name)
        found = client.get(AGENTS, headers=user_headers, params={"sort": "name"}).json()
        names = [a["name"] for a in found["data"]]
        # Where "é" goes is the collation's business; "éclair" before "ÉCOLE" is case's.
        assert names.index("ÉCOLE") == names.index("éclair") + 1
        assert names.index("Apple") < names.index("Zebra")

    def test_superuser_sees_everyone_and_may_filter_by_owner(
        self, client: TestClient, db: Session, user: User, superuser_headers: dict[str, str]
    ) -> None:
        mine = create_agent(db, owner=user, name="owned")
        response = client.get(AGENTS, headers=superuser_headers, params={"owner_id": str(user.id)})
        assert response.status_code == 200
        assert [a["id"] for a in response.json()["data"]] == [str(mine.id)]

    def test_owner_filter_is_422_for_others(
        self, client: TestClient, user: User, user_headers: dict[str, str]
    ) -> None:
        response = client.get(AGENTS, headers=user_headers, params={"owner_id": str(user.id)})
        assert response.status_code == 422
        assert response.json()["code"] == "owner_filter_forbidden"

    @pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"sort": "owner_id"}])
    def test_bad_paging_is_422(
        self, client: TestClient, user_headers: dict[str, str], params: dict[str, str | int]
    ) -> None:
        assert client.get(AGENTS, headers=user_headers, params=params).status_code == 422


class TestReadUpdateDeleteAgent:
    def test_someone_elses_agent_is_404_like_a_random_id_and_unchanged(
        self, client: TestClient, db: Session, user_headers: dict[str, str]
    ) -> None:
        other = create_agent(db, owner=create_user(db), name="theirs")
        random = client.get(f"{AGENTS}/{uuid.uuid4()}", headers=user_headers)
        for method, payload in (("GET", None), ("PATCH", {"name": "mine now"}), ("DELETE", None)):
            response = client.request(
                method, f"{AGENTS}/{other.id}", headers=user_headers, json=payload
            )
            assert response.status_code == 404
            body, expected = response.json(), random.json()
            assert body.pop("request_id") != expected.pop("request_id")
            assert body == expected
        db.refresh(other)
        assert other.name == "theirs"

    def test_owner_updates(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        agent = create_agent(db, owner=user)
        response = client.patch(
            f"{AGENTS}/{agent.id}",
            headers=user_headers,
            json={"name": "Renamed", "is_active": False},
        )
        assert response.status_code == 200
        assert response.json()["name"] == "Renamed"
        db.refresh(agent)
        assert (agent.name, agent.is_active) == ("Renamed", False)
        assert agent.updated_at > agent.created_at

    def test_null_for_a_required_field_is_422(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        agent = create_agent(db, owner=user)
        response = client.patch(f"{AGENTS}/{agent.id}", headers=user_headers, json={"name": None})
        assert response.status_code == 422
        db.refresh(agent)
        assert agent.name == "Helper"

    def test_superuser_may_read_and_edit_any_agent(
        self, client: TestClient, db: Session, user: User, superuser_headers: dict[str, str]
    ) -> None:
        agent = create_agent(db, owner=user)
        assert client.get(f"{AGENTS}/{agent.id}", headers=superuser_headers).status_code == 200

    def test_delete_takes_threads_and_messages_along(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        agent = create_agent(db, owner=user)
        thread = create_thread(db, owner=user, agent=agent)
        create_message(db, thread=thread)
        agent_id, thread_id = agent.id, thread.id
        assert client.delete(f"{AGENTS}/{agent_id}", headers=user_headers).status_code == 204
        db.expunge_all()
        assert db.get(Agent, agent_id) is None
        assert db.exec(select(Thread).where(Thread.agent_id == agent_id)).all() == []
        assert db.exec(select(Message).where(Message.thread_id == thread_id)).all() == []


def test_deleting_a_user_deletes_their_agents(
    client: TestClient, db: Session, superuser_headers: dict[str, str]
) -> None:
    owner = create_user(db)
    agent_id = create_agent(db, owner=owner).id
    auth_headers(db, user=owner)
    assert client.delete(f"/api/v1/users/{owner.id}", headers=superuser_headers).status_code == 204
    db.expunge_all()
    assert db.get(Agent, agent_id) is None
