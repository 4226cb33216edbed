import uuid
from decimal import Decimal

from sqlmodel import Session

from app.crud import ai_model as ai_model_crud
from app.models.agent import Agent
from app.models.ai_model import AIModel, AIModelListQuery
from app.models.user import User
from tests.factories import create_ai_model

EVERYTHING = AIModelListQuery(include_disabled=True)


def listed(db: Session, user: User, query: AIModelListQuery) -> list[AIModel]:
    page = ai_model_crud.list_models(session=db, user=user, query=query)
    assert page.count == len(page.data)
    return list(page.data)


class TestLookups:
    def test_get_model_by_provider_and_name(self, db: Session) -> None:
        model = create_ai_model(db, provider="openai", name="gpt-4o")
        assert ai_model_crud.get_model(session=db, provider="openai", name="gpt-4o") == model
        assert ai_model_crud.get_model(session=db, provider="ollama", name="gpt-4o") is None
        assert ai_model_crud.get_model(session=db, provider="openai", name="GPT-4o") is None

    def test_get_model_by_id(self, db: Session) -> None:
        model = create_ai_model(db)
        assert ai_model_crud.get_model_by_id(session=db, model_id=model.id) == model
        assert ai_model_crud.get_model_by_id(session=db, model_id=uuid.uuid4()) is None

    def test_prices_come_back_exactly(self, db: Session) -> None:
        model = create_ai_model(
            db, input_price_per_million=Decimal("0.000001"), output_price_per_million=Decimal("0")
        )
        db.expire(model)  # read the row again, not the object
        assert model.input_price_per_million == Decimal("0.000001")
        assert str(model.input_price_per_million) == "0.000001"
        assert str(model.output_price_per_million) == "0.000000"


class TestVisibility:
    def test_a_disabled_model_exists_only_for_superusers(
        self, db: Session, user: User, superuser: User
    ) -> None:
        disabled = create_ai_model(db, is_enabled=False)
        enabled = create_ai_model(db)
        assert ai_model_crud.get_visible_model(session=db, user=user, model_id=disabled.id) is None
        assert (
            ai_model_crud.get_visible_model(session=db, user=superuser, model_id=disabled.id)
            == disabled
        )
        assert ai_model_crud.get_visible_model(session=db, user=user, model_id=enabled.id) == (
            enabled
        )

    def test_a_regular_user_never_lists_disabled_models(self, db: Session, user: User) -> None:
        enabled = create_ai_model(db)
        create_ai_model(db, is_enabled=False)
        assert listed(db, user, EVERYTHING) == [enabled]


class TestListModels:
    def test_enabled_only_by_provider_then_display_name(self, db: Session, user: User) -> None:
        b = create_ai_model(db, provider="openai", display_name="beta")
        a = create_ai_model(db, provider="openai", display_name="Alpha")
        local = create_ai_model(db, provider="ollama", display_name="Zed")
        create_ai_model(db, provider="openai", display_name="Aardvark", is_enabled=False)
        assert listed(db, user, AIModelListQuery()) == [local, a, b]

    def test_a_superuser_includes_disabled_on_request(self, db: Session, superuser: User) -> None:
        enabled = create_ai_model(db, display_name="B")
        disabled = create_ai_model(db, display_name="A", is_enabled=False)
        assert listed(db, superuser, AIModelListQuery()) == [enabled]
        assert listed(db, superuser, EVERYTHING) == [disabled, enabled]


class TestIsInUse:
    def test_true_while_an_agent_uses_the_model(self, db: Session, user: User) -> None:
        model = create_ai_model(db)
        other = create_ai_model(db)
        db.add(Agent(owner_id=user.id, name="x", model_id=model.id))
        db.commit()
        assert ai_model_crud.is_in_use(session=db, model=model)
        assert not ai_model_crud.is_in_use(session=db, model=other)
