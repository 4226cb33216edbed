import uuid
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import Session, select

from app.core.config import ProviderSettings, Settings
from app.crud import ai_model as ai_model_crud
from app.models.agent import Agent
from app.models.ai_model import AIModel
from app.models.audit import AuditEntry
from app.models.user import User
from tests.conftest import AppFactory
from tests.environment import settings
from tests.factories import create_ai_model

MODELS = "/api/v1/models"


def with_providers(providers: dict[str, ProviderSettings]) -> Settings:
    return settings.model_copy(update={"LLM_PROVIDERS": providers})


@pytest.fixture
def app(make_app: AppFactory) -> FastAPI:
    """No provider configured unless a test says so, whatever the developer's .env holds."""
    return make_app(with_providers({}))


def payload(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": "openai",
        "name": "gpt-4o",
        "display_name": "GPT-4o",
        "context_window": 128_000,
        "max_output_tokens": 16_384,
        "input_price_per_million": "2.50",
        "output_price_per_million": "10.00",
    }
    return {**body, **overrides}


def model_count(db: Session) -> int:
    return db.exec(select(func.count()).select_from(AIModel)).one()


def reread(db: Session, model_id: uuid.UUID) -> AIModel | None:
    """The row as the database now holds it, not as this session remembers it."""
    db.expire_all()
    return db.get(AIModel, model_id)


def audit_entries(db: Session, action: str, model_id: uuid.UUID | str) -> list[AuditEntry]:
    statement = select(AuditEntry).where(
        AuditEntry.action == action, AuditEntry.target_id == str(model_id)
    )
    return list(db.exec(statement).all())


def ids(response_body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in response_body["data"]]


class TestListModels:
    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.get(MODELS).status_code == 401

    def test_enabled_models_by_provider_then_name(
        self, client: TestClient, db: Session, user_headers: dict[str, str]
    ) -> None:
        mini = create_ai_model(db, name="gpt-4o-mini", display_name="GPT-4o mini")
        gpt = create_ai_model(db, name="gpt-4o", display_name="GPT-4o")
        local = create_ai_model(db, provider="ollama", display_name="Llama 3.1 8B")
        create_ai_model(db, display_name="A retired model", is_enabled=False)
        response = client.get(MODELS, headers=user_headers)
        assert response.status_code == 200
        body = response.json()
        assert ids(body) == [str(local.id), str(gpt.id), str(mini.id)]
        assert body["count"] == 3

    def test_prices_come_back_exactly_as_strings(
        self, client: TestClient, db: Session, user_headers: dict[str, str]
    ) -> None:
        create_ai_model(
            db,
            input_price_per_million=Decimal("0.000001"),
            output_price_per_million=Decimal("123456789012.345678"),
        )
        [item] = client.get(MODELS, headers=user_headers).json()["data"]
        assert item["input_price_per_million"] == "0.000001"
        assert item["output_price_per_million"] == "123456789012.345678"

    def test_regular_user_cannot_include_disabled(
        self, client: TestClient, user_headers: dict[str, str]
    ) -> None:
        response = client.get(MODELS, headers=user_headers, params={"include_disabled": True})
        assert response.status_code == 403
        assert response.json()["code"] == "superuser_required"

    def test_superuser_includes_disabled_on_request(
        self, client: TestClient, db: Session, superuser_headers: dict[str, str]
    ) -> None:
        enabled = create_ai_model(db, display_name="B")
        disabled = create_ai_model(db, display_name="A", is_enabled=False)
        default = client.get(MODELS, headers=superuser_headers).json()
        assert ids(default) == [str(enabled.id)]
        everything = client.get(
            MODELS, headers=superuser_headers, params={"include_disabled": True}
        ).json()
        assert ids(everything) == [str(disabled.id), str(enabled.id)]
        assert [item["is_enabled"] for item in everything["data"]] == [False, True]

    def test_is_configured_follows_the_provider_settings(
        self,
        client: TestClient,
        make_app: AppFactory,
        db: Session,
        user_headers: dict[str, str],
    ) -> None:
        create_ai_model(db, provider="openai")
        create_ai_model(db, provider="ollama")
        before = client.get(MODELS, headers=user_headers).json()["data"]
        assert [item["is_configured"] for item in before] == [False, False]
        openai = ProviderSettings(base_url="http://127.0.0.1:9/v1")
        with TestClient(make_app(with_providers({"openai": openai}))) as configured:
            after = configured.get(MODELS, headers=user_headers).json()["data"]
        assert [(item["provider"], item["is_configured"]) for item in after] == [
            ("ollama", False),
            ("openai", True),
        ]

    def test_include_disabled_must_be_a_boolean(
        self, client: TestClient, superuser_headers: dict[str, str]
    ) -> None:
        response = client.get(MODELS, headers=superuser_headers, params={"include_disabled": "x"})
        assert response.status_code == 422


class TestReadModel:
    def test_anonymous_is_401(self, client: TestClient, db: Session) -> None:
        assert client.get(f"{MODELS}/{create_ai_model(db).id}").status_code == 401

    def test_reads_a_model(
        self, client: TestClient, db: Session, user_headers: dict[str, str]
    ) -> None:
        model = create_ai_model(
            db,
            provider="openai",
            name="gpt-4.1",
            display_name="GPT-4.1",
            context_window=1_047_576,
            max_output_tokens=32_768,
            input_price_per_million=Decimal("2"),
            output_price_per_million=Decimal("8"),
        )
        response = client.get(f"{MODELS}/{model.id}", headers=user_headers)
        assert response.status_code == 200
        body = response.json()
        assert body == {
            "id": str(model.id),
            "provider": "openai",
            "name": "gpt-4.1",
            "display_name": "GPT-4.1",
            "context_window": 1_047_576,
            "max_output_tokens": 32_768,
            "input_price_per_million": "2.000000",
            "output_price_per_million": "8.000000",
            "is_enabled": True,
            "kind": "chat",
            "dimensions": None,
            "is_configured": False,
            "created_at": body["created_at"],
            "updated_at": body["updated_at"],
        }

    def test_disabled_is_404_for_a_regular_user_and_visible_to_a_superuser(
        self,
        client: TestClient,
        db: Session,
        user_headers: dict[str, str],
        superuser_headers: dict[str, str],
    ) -> None:
        disabled = create_ai_model(db, is_enabled=False)
        hidden = client.get(f"{MODELS}/{disabled.id}", headers=user_headers)
        assert hidden.status_code == 404
        assert hidden.json()["code"] == "not_found"
        shown = client.get(f"{MODELS}/{disabled.id}", headers=superuser_headers)
        assert shown.status_code == 200
        assert shown.json()["is_enabled"] is False

    def test_unknown_is_404_and_a_malformed_id_422(
        self, client: TestClient, user_headers: dict[str, str]
    ) -> None:
        missing = client.get(f"{MODELS}/{uuid.uuid4()}", headers=user_headers)
        assert missing.status_code == 404
        assert missing.json()["code"] == "not_found"
        assert client.get(f"{MODELS}/not-a-uuid", headers=user_headers).status_code == 422


class TestCreateModel:
    def test_anonymous_is_401(self, client: TestClient, db: Session) -> None:
        assert client.post(MODELS, json=payload()).status_code == 401
        assert model_count(db) == 0

    def test_regular_user_is_403(
        self, client: TestClient, db: Session, user_headers: dict[str, str]
    ) -> None:
        response = client.post(MODELS, headers=user_headers, json=payload())
        assert response.status_code == 403
        assert response.json()["code"] == "superuser_required"
        assert model_count(db) == 0

    def test_superuser_adds_a_model(
        self, client: TestClient, db: Session, superuser: User, superuser_headers: dict[str, str]
    ) -> None:
        response = client.post(MODELS, headers=superuser_headers, json=payload())
        assert response.status_code == 201
        body = response.json()
        assert body["input_price_per_million"] == "2.500000"
        assert body["output_price_per_million"] == "10.000000"
        assert body["is_enabled"] is True
        assert body["is_configured"] is False
        stored = db.exec(select(AIModel).where(AIModel.name == "gpt-4o")).one()
        assert str(stored.id) == body["id"]
        assert stored.input_price_per_million == Decimal("2.5")
        assert str(stored.input_price_per_million) == "2.500000"
        assert (stored.context_window, stored.max_output_tokens) == (128_000, 16_384)
        [entry] = audit_entries(db, "model.created", body["id"])
        assert (entry.actor_id, entry.target_type, entry.target_id) == (
            superuser.id,
            "ai_model",
            body["id"],
        )
        # What the API answered is what it answers when asked again.
        again = client.get(f"{MODELS}/{body['id']}", headers=superuser_headers).json()
        assert again == body

    def test_prices_as_json_numbers_are_taken_exactly(
        self, client: TestClient, db: Session, superuser_headers: dict[str, str]
    ) -> None:
        response = client.post(
            MODELS,
            headers=superuser_headers,
            json=payload(input_price_per_million=0.1, output_price_per_million=0),
        )
        assert response.status_code == 201
        assert response.json()["input_price_per_million"] == "0.100000"
        assert response.json()["output_price_per_million"] == "0.000000"
        stored = db.exec(select(AIModel)).one()
        assert stored.input_price_per_million == Decimal("0.1")

    def test_the_same_name_under_another_provider_is_fine(
        self, client: TestClient, db: Session, superuser_headers: dict[str, str]
    ) -> None:
        create_ai_model(db, provider="openai", name="gpt-4o")
        response = client.post(MODELS, headers=superuser_headers, json=payload(provider="azure"))
        assert response.status_code == 201
        assert model_count(db) == 2

    def test_duplicate_is_409(
        self, client: TestClient, db: Session, superuser_headers: dict[str, str]
    ) -> None:
        create_ai_model(db, provider="openai", name="gpt-4o")
        response = client.post(MODELS, headers=superuser_headers, json=payload())
        assert response.status_code == 409
        assert response.json()["code"] == "model_exists"
        assert model_count(db) == 1

    def test_a_duplicate_the_check_missed_is_409_from_the_constraint(
        self,
        client: TestClient,
        db: Session,
        superuser_headers: dict[str, str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        create_ai_model(db, provider="openai", name="gpt-4o")
        # As if a concurrent request added it between the check and the commit.
        monkeypatch.setattr(ai_model_crud, "get_model", lambda **_kwargs: None)
        response = client.post(MODELS, headers=superuser_headers, json=payload())
        assert response.status_code == 409
        assert response.json()["code"] == "model_exists"
        assert model_count(db) == 1

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"input_price_per_million": "0.0000001"}, "input_price_per_million"),
            ({"output_price_per_million": "1.1234567"}, "output_price_per_million"),
            ({"input_price_per_million": "-1"}, "input_price_per_million"),
            ({"input_price_per_million": "NaN"}, "input_price_per_million"),
            ({"input_price_per_million": "1234567890123"}, "input_price_per_million"),
            ({"provider": "Open AI"}, "provider"),
            ({"provider": "-openai"}, "provider"),
            ({"provider": "x" * 51}, "provider"),
            ({"name": ""}, "name"),
            ({"name": "x" * 201}, "name"),
            ({"context_window": 0}, "context_window"),
            ({"max_output_tokens": 10_000_001}, "max_output_tokens"),
            ({"owner_id": str(uuid.uuid4())}, "owner_id"),
        ],
    )
    def test_bad_input_is_422_and_writes_nothing(
        self,
        client: TestClient,
        db: Session,
        superuser_headers: dict[str, str],
        overrides: dict[str, Any],
        field: str,
    ) -> None:
        response = client.post(MODELS, headers=superuser_headers, json=payload(**overrides))
        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "validation_error"
        assert ["body", field] in [error["loc"] for error in body["errors"]]
        assert model_count(db) == 0

    def test_max_output_beyond_the_context_window_is_422(
        self, client: TestClient, db: Session, superuser_headers: dict[str, str]
    ) -> None:
        response = client.post(
            MODELS,
            headers=superuser_headers,
            json=payload(context_window=8192, max_output_tokens=8193),
        )
        assert response.status_code == 422
        assert "cannot exceed context_window" in response.json()["errors"][0]["msg"]
        assert model_count(db) == 0

    def test_max_output_equal_to_the_context_window_is_fine(
        self, client: TestClient, superuser_headers: dict[str, str]
    ) -> None:
        response = client.post(
            MODELS,
            headers=superuser_headers,
            json=payload(context_window=8192, max_output_tokens=8192),
        )
        assert response.status_code == 201


class TestUpdateModel:
    def test_anonymous_is_401(self, client: TestClient, db: Session) -> None:
        model = create_ai_model(db)
        response = client.patch(f"{MODELS}/{model.id}", json={"is_enabled": False})
        assert response.status_code == 401

    def test_regular_user_is_403_and_the_row_is_unchanged(
        self, client: TestClient, db: Session, user_headers: dict[str, str]
    ) -> None:
        model = create_ai_model(db)
        response = client.patch(
            f"{MODELS}/{model.id}", headers=user_headers, json={"is_enabled": False}
        )
        assert response.status_code == 403
        stored = reread(db, model.id)
        assert stored is not None
        assert stored.is_enabled

    def test_superuser_changes_prices_and_disables(
        self, client: TestClient, db: Session, superuser: User, superuser_headers: dict[str, str]
    ) -> None:
        model = create_ai_model(db, display_name="Old name")
        before = model.updated_at
        response = client.patch(
            f"{MODELS}/{model.id}",
            headers=superuser_headers,
            json={"input_price_per_million": "1.25", "is_enabled": False},
        )
        assert response.status_code == 200
        body = response.json()
        assert body["input_price_per_million"] == "1.250000"
        assert body["output_price_per_million"] == "10.000000"
        assert body["is_enabled"] is False
        assert body["display_name"] == "Old name"
        stored = reread(db, model.id)
        assert stored is not None
        assert stored.input_price_per_million == Decimal("1.25")
        assert not stored.is_enabled
        assert stored.updated_at > before
        [entry] = audit_entries(db, "model.updated", model.id)
        assert entry.actor_id == superuser.id
        assert entry.details["fields"] == ["input_price_per_million", "is_enabled"]

    def test_renaming_onto_another_model_is_409(
        self, client: TestClient, db: Session, superuser_headers: dict[str, str]
    ) -> None:
        create_ai_model(db, provider="openai", name="gpt-4o")
        model = create_ai_model(db, provider="openai", name="gpt-4o-mini")
        response = client.patch(
            f"{MODELS}/{model.id}", headers=superuser_headers, json={"name": "gpt-4o"}
        )
        assert response.status_code == 409
        assert response.json()["code"] == "model_exists"
        stored = reread(db, model.id)
        assert stored is not None
        assert stored.name == "gpt-4o-mini"

    def test_keeping_its_own_name_is_not_a_duplicate(
        self, client: TestClient, db: Session, superuser_headers: dict[str, str]
    ) -> None:
        model = create_ai_model(db, provider="openai", name="gpt-4o")
        response = client.patch(
            f"{MODELS}/{model.id}",
            headers=superuser_headers,
            json={"provider": "openai", "name": "gpt-4o"},
        )
        assert response.status_code == 200

    def test_max_output_beyond_the_stored_context_window_is_422(
        self, client: TestClient, db: Session, superuser_headers: dict[str, str]
    ) -> None:
        model = create_ai_model(db, context_window=8192, max_output_tokens=4096)
        response = client.patch(
            f"{MODELS}/{model.id}", headers=superuser_headers, json={"max_output_tokens": 8193}
        )
        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "validation_error"
        assert body["errors"][0]["loc"] == ["body", "max_output_tokens"]
        shrinking = client.patch(
            f"{MODELS}/{model.id}", headers=superuser_headers, json={"context_window": 4095}
        )
        assert shrinking.status_code == 422
        stored = reread(db, model.id)
        assert stored is not None
        assert (stored.context_window, stored.max_output_tokens) == (8192, 4096)

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"input_price_per_million": "0.1234567"}, "input_price_per_million"),
            ({"name": None}, "name"),
            ({"is_enabled": None}, "is_enabled"),
            ({"provider": "OpenAI"}, "provider"),
            ({"id": str(uuid.uuid4())}, "id"),
        ],
    )
    def test_bad_input_is_422_and_the_row_is_unchanged(
        self,
        client: TestClient,
        db: Session,
        superuser_headers: dict[str, str],
        change: dict[str, Any],
        field: str,
    ) -> None:
        model = create_ai_model(db, name="kept")
        response = client.patch(f"{MODELS}/{model.id}", headers=superuser_headers, json=change)
        assert response.status_code == 422
        assert ["body", field] in [error["loc"] for error in response.json()["errors"]]
        stored = reread(db, model.id)
        assert stored is not None
        assert (stored.name, stored.input_price_per_million) == ("kept", Decimal("2.5"))

    def test_unknown_is_404(self, client: TestClient, superuser_headers: dict[str, str]) -> None:
        response = client.patch(
            f"{MODELS}/{uuid.uuid4()}", headers=superuser_headers, json={"is_enabled": False}
        )
        assert response.status_code == 404


class TestDeleteModel:
    def test_anonymous_is_401(self, client: TestClient, db: Session) -> None:
        model = create_ai_model(db)
        assert client.delete(f"{MODELS}/{model.id}").status_code == 401
        assert reread(db, model.id) is not None

    def test_regular_user_is_403(
        self, client: TestClient, db: Session, user_headers: dict[str, str]
    ) -> None:
        model = create_ai_model(db)
        response = client.delete(f"{MODELS}/{model.id}", headers=user_headers)
        assert response.status_code == 403
        assert reread(db, model.id) is not None

    def test_superuser_deletes_an_unused_model(
        self, client: TestClient, db: Session, superuser: User, superuser_headers: dict[str, str]
    ) -> None:
        model_id = create_ai_model(db).id
        response = client.delete(f"{MODELS}/{model_id}", headers=superuser_headers)
        assert response.status_code == 204
        assert response.content == b""
        assert reread(db, model_id) is None
        [entry] = audit_entries(db, "model.deleted", model_id)
        assert (entry.actor_id, entry.target_id) == (superuser.id, str(model_id))

    def test_a_model_an_agent_uses_is_409(
        self, client: TestClient, db: Session, user: User, superuser_headers: dict[str, str]
    ) -> None:
        model = create_ai_model(db)
        db.add(Agent(owner_id=user.id, name="x", model_id=model.id))
        db.commit()
        response = client.delete(f"{MODELS}/{model.id}", headers=superuser_headers)
        assert response.status_code == 409
        assert response.json()["code"] == "model_in_use"
        assert reread(db, model.id) is not None
        assert audit_entries(db, "model.deleted", model.id) == []

    def test_the_foreign_key_stops_a_delete_the_check_missed(
        self,
        client: TestClient,
        db: Session,
        user: User,
        superuser_headers: dict[str, str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        model = create_ai_model(db)
        db.add(Agent(owner_id=user.id, name="x", model_id=model.id))
        db.commit()
        # As if the agent took the model up between the check and the commit.
        monkeypatch.setattr(ai_model_crud, "is_in_use", lambda **_kwargs: False)
        response = client.delete(f"{MODELS}/{model.id}", headers=superuser_headers)
        assert response.status_code == 409
        assert response.json()["code"] == "model_in_use"
        assert reread(db, model.id) is not None

    def test_unknown_is_404(self, client: TestClient, superuser_headers: dict[str, str]) -> None:
        response = client.delete(f"{MODELS}/{uuid.uuid4()}", headers=superuser_headers)
        assert response.status_code == 404
