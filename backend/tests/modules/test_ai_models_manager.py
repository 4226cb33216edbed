import uuid
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlmodel import Session

from app.core.config import ProviderSettings, settings
from app.models.agent import Agent
from app.models.user import User
from app.modules.ai_models.manager import COST_QUANTUM, model_manager
from app.modules.ai_models.models import AIModel
from tests.factories import create_ai_model


def priced(input_price: str, output_price: str) -> AIModel:
    """A model that never touches the database: cost() needs only its prices."""
    return AIModel(
        provider="openai",
        name="priced",
        display_name="Priced",
        context_window=1000,
        max_output_tokens=100,
        input_price_per_million=Decimal(input_price),
        output_price_per_million=Decimal(output_price),
    )


class TestCost:
    def test_tokens_times_price_per_million(self) -> None:
        cost = model_manager.cost(priced("2.50", "10.00"), input_tokens=1000, output_tokens=500)
        assert cost == Decimal("0.0075")
        assert format(cost, "f") == "0.007500000000"

    def test_always_twelve_places(self) -> None:
        cost = model_manager.cost(priced("0.15", "0.60"), input_tokens=0, output_tokens=0)
        assert cost == 0
        assert cost.as_tuple().exponent == -12

    def test_exact_where_float_is_not(self) -> None:
        cost = model_manager.cost(priced("0.1", "0.000001"), input_tokens=3, output_tokens=3)
        assert format(cost, "f") == "0.000000300003"
        # The same sum in floats is already off before any rounding.
        assert Decimal(3 * 0.1 / 1_000_000 + 3 * 0.000001 / 1_000_000) != cost

    def test_exact_at_the_largest_price_the_catalog_takes(self) -> None:
        # 18 digits, 6 of them places: more than a float holds.
        model = priced("123456789012.345678", "0")
        cost = model_manager.cost(model, input_tokens=1, output_tokens=0)
        assert cost == Decimal("123456.789012345678")
        as_float = Decimal(1 * float(model.input_price_per_million) / 1_000_000)
        assert as_float.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP) != cost

    def test_huge_token_counts_stay_exact(self) -> None:
        cost = model_manager.cost(
            priced("0.000001", "99.999999"), input_tokens=10**15, output_tokens=10**12 + 1
        )
        assert cost == Decimal("1000") + Decimal("99999999") + Decimal("0.000099999999")

    def test_rounds_half_up_at_the_twelfth_place(self) -> None:
        # Stored prices have at most 6 places, so only a model built in memory can get here;
        # half of 1e-12 goes up, where banker's rounding would go down to 0.
        cost = model_manager.cost(priced("0.0000005", "0"), input_tokens=1, output_tokens=0)
        assert cost == Decimal("0.000000000001")
        below_half = model_manager.cost(priced("0.0000004", "0"), input_tokens=1, output_tokens=0)
        assert below_half == 0

    @pytest.mark.parametrize(("input_tokens", "output_tokens"), [(-1, 0), (0, -1)])
    def test_negative_tokens_are_refused(self, input_tokens: int, output_tokens: int) -> None:
        with pytest.raises(ValueError, match="negative"):
            model_manager.cost(
                priced("1", "1"), input_tokens=input_tokens, output_tokens=output_tokens
            )


class TestLookups:
    def test_get_model_by_provider_and_name(self, db: Session) -> None:
        model = create_ai_model(db, provider="openai", name="gpt-4o")
        assert model_manager.get_model(db, "openai", "gpt-4o") == model
        assert model_manager.get_model(db, "ollama", "gpt-4o") is None
        assert model_manager.get_model(db, "openai", "GPT-4o") is None

    def test_get_model_by_id(self, db: Session) -> None:
        model = create_ai_model(db)
        assert model_manager.get_model_by_id(db, model.id) == model
        assert model_manager.get_model_by_id(db, uuid.uuid4()) is None

    def test_prices_come_back_exactly(self, db: Session) -> None:
        model = create_ai_model(
            db, input_price_per_million=Decimal("0.000001"), output_price_per_million=Decimal("0")
        )
        db.expire(model)  # read the row again, not the object
        assert model.input_price_per_million == Decimal("0.000001")
        assert str(model.input_price_per_million) == "0.000001"
        assert str(model.output_price_per_million) == "0.000000"


class TestListAvailableModels:
    def test_enabled_only_by_provider_then_display_name(self, db: Session) -> None:
        b = create_ai_model(db, provider="openai", display_name="beta")
        a = create_ai_model(db, provider="openai", display_name="Alpha")
        local = create_ai_model(db, provider="ollama", display_name="Zed")
        create_ai_model(db, provider="openai", display_name="Aardvark", is_enabled=False)
        assert model_manager.list_available_models(db) == [local, a, b]

    def test_include_disabled(self, db: Session) -> None:
        enabled = create_ai_model(db, display_name="B")
        disabled = create_ai_model(db, display_name="A", is_enabled=False)
        assert model_manager.list_available_models(db, include_disabled=True) == [
            disabled,
            enabled,
        ]


class TestIsInUse:
    def test_true_while_an_agent_uses_the_model(self, db: Session, user: User) -> None:
        model = create_ai_model(db)
        other = create_ai_model(db)
        db.add(Agent(owner_id=user.id, name="x", model_id=model.id))
        db.commit()
        assert model_manager.is_in_use(db, model)
        assert not model_manager.is_in_use(db, other)


class TestIsConfigured:
    def test_follows_llm_provider_settings(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(settings, "LLM_PROVIDERS", {})
        assert not model_manager.is_configured("openai")
        monkeypatch.setitem(
            settings.LLM_PROVIDERS, "openai", ProviderSettings(base_url="http://127.0.0.1:9/v1")
        )
        assert model_manager.is_configured("openai")
        assert not model_manager.is_configured("ollama")
