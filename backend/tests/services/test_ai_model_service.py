import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import Session, col, select

from app.core.errors import UnprocessableError
from app.models.ai_model import AIModel
from app.models.audit import AuditEntry
from app.models.user import User
from app.services.ai_model_service import AIModelService
from tests.conftest import AgentryCommand, CommandResult
from tests.factories import create_ai_model

SAMPLE = Path(__file__).resolve().parents[2] / "app" / "services" / "sample_catalog.json"


def entry(**overrides: Any) -> dict[str, Any]:
    return {
        "provider": "openai",
        "name": "gpt-4o",
        "display_name": "GPT-4o",
        "context_window": 128_000,
        "max_output_tokens": 16_384,
        "input_price_per_million": "2.50",
        "output_price_per_million": "10.00",
        **overrides,
    }


def model_count(db: Session) -> int:
    return db.exec(select(func.count()).select_from(AIModel)).one()


class TestIsConfigured:
    def test_follows_the_providers_given(self, db: Session, user: User) -> None:
        model = create_ai_model(db, provider="openai")
        for providers, expected in [((), False), ({"openai"}, True), ({"ollama"}, False)]:
            public = AIModelService.get(
                session=db, user=user, model_id=model.id, providers=providers
            )
            assert public.is_configured is expected


class TestSampleCatalog:
    def test_is_a_valid_catalog_with_exact_prices(self) -> None:
        catalog = AIModelService.parse_catalog(SAMPLE.read_bytes())
        assert len(catalog.models) >= 6
        for model in catalog.models:
            # Strings, so that no price goes through a float on its way in.
            assert isinstance(model["input_price_per_million"], str)
            assert isinstance(model["output_price_per_million"], str)


class TestParseCatalog:
    def test_numbers_are_read_as_decimals(self) -> None:
        raw = b'{"prices_read_on": "2026-11-22", "source": "s", "models": [{"p": 0.1}]}'
        assert AIModelService.parse_catalog(raw).models == [{"p": Decimal("0.1")}]

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            (b"{not json", "not valid JSON"),
            (b"\xff\xfe\x00", "not valid JSON"),
            (b'{"source": "s", "models": []}', "prices_read_on: Field required"),
            (b'{"prices_read_on": "soon", "source": "s", "models": []}', "prices_read_on"),
            (b'{"prices_read_on": "2026-11-22", "source": "s", "models": [1]}', "models.0"),
            (b'{"prices_read_on": "2026-11-22", "source": "s", "models": [], "x": 1}', "x:"),
        ],
    )
    def test_bad_files_are_refused(self, raw: bytes, message: str) -> None:
        with pytest.raises(UnprocessableError, match=message):
            AIModelService.parse_catalog(raw)


class TestImportCatalog:
    def test_creates_then_updates_only_what_changed(self, db: Session) -> None:
        entries = [entry(), entry(name="gpt-4o-mini", input_price_per_million="0.15")]
        assert AIModelService.import_catalog(session=db, entries=entries) == (2, 0)
        assert AIModelService.import_catalog(session=db, entries=entries) == (0, 0)
        entries[1]["input_price_per_million"] = Decimal("0.2")
        assert AIModelService.import_catalog(session=db, entries=entries) == (0, 1)
        assert model_count(db) == 2
        mini = db.exec(select(AIModel).where(AIModel.name == "gpt-4o-mini")).one()
        db.refresh(mini)
        assert mini.input_price_per_million == Decimal("0.2")
        [last, *_] = db.exec(
            select(AuditEntry)
            .where(AuditEntry.action == "models.imported")
            .order_by(col(AuditEntry.id).desc())
        ).all()
        assert last.details == {"created": 0, "updated": 1}

    def test_an_entry_without_is_enabled_keeps_the_current_choice(self, db: Session) -> None:
        retired = create_ai_model(db, provider="openai", name="gpt-4o", is_enabled=False)
        assert AIModelService.import_catalog(session=db, entries=[entry()]) == (0, 1)
        db.refresh(retired)
        assert not retired.is_enabled
        assert retired.input_price_per_million == Decimal("2.5")

    def test_one_invalid_entry_and_nothing_is_written(self, db: Session) -> None:
        existing = create_ai_model(db, provider="openai", name="gpt-4o")
        entries = [
            entry(input_price_per_million="1.00"),
            entry(name="new"),
            entry(name="bad", input_price_per_million="0.0000001"),
        ]
        with pytest.raises(UnprocessableError, match=r"models\[2\]\.input_price_per_million"):
            AIModelService.import_catalog(session=db, entries=entries)
        db.refresh(existing)
        assert existing.input_price_per_million == Decimal("2.5")
        assert model_count(db) == 1

    @pytest.mark.parametrize(
        ("bad", "message"),
        [
            (entry(max_output_tokens=200_000), r"models\[1\]: .*cannot exceed context_window"),
            (entry(provider="Open AI"), r"models\[1\]\.provider"),
            (entry(price=1), r"models\[1\]\.price: Extra inputs"),
            (entry(), r"models\[1\]: openai/gpt-4o is already models\[0\]"),
        ],
    )
    def test_errors_name_the_entry_and_field(self, db: Session, bad: Any, message: str) -> None:
        with pytest.raises(UnprocessableError, match=message):
            AIModelService.import_catalog(session=db, entries=[entry(), bad])
        assert model_count(db) == 0


def run_import(agentry: AgentryCommand, tmp_path: Path, file: Path) -> CommandResult:
    env = {
        "ENVIRONMENT": "development",
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
    }
    return agentry("models", "import", str(file), env=env)


def stored_models(tmp_path: Path) -> list[tuple[str, str, str, int]]:
    with sqlite3.connect(tmp_path / "cli.db") as connection:
        rows = connection.execute(
            "SELECT provider, name, input_price_per_million, is_enabled FROM ai_model"
            " ORDER BY provider, name"
        ).fetchall()
    return [tuple(row) for row in rows]


class TestImportCommand:
    def test_imports_the_sample_catalog_and_updates_on_reimport(
        self, tmp_path: Path, agentry: AgentryCommand
    ) -> None:
        sample = json.loads(SAMPLE.read_text())
        first = run_import(agentry, tmp_path, SAMPLE)
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == f"{len(sample['models'])} created, 0 updated"
        rows = stored_models(tmp_path)
        assert len(rows) == len(sample["models"])
        assert ("openai", "gpt-4o", "2.500000", 1) in rows

        again = run_import(agentry, tmp_path, SAMPLE)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == "0 created, 0 updated"

        sample["models"][0]["input_price_per_million"] = "2.75"
        changed = tmp_path / "changed.json"
        changed.write_text(json.dumps(sample))
        updated = run_import(agentry, tmp_path, changed)
        assert updated.returncode == 0, updated.stderr
        assert updated.stdout.strip() == "0 created, 1 updated"
        rows_after = stored_models(tmp_path)
        assert len(rows_after) == len(sample["models"])
        first_model = sample["models"][0]
        assert (first_model["provider"], first_model["name"], "2.750000", 1) in rows_after

    def test_an_invalid_entry_exits_2_and_writes_nothing(
        self, tmp_path: Path, agentry: AgentryCommand
    ) -> None:
        catalog = {
            "prices_read_on": "2026-11-22",
            "source": "test",
            "models": [entry(), entry(name="bad", output_price_per_million="1.1234567")],
        }
        file = tmp_path / "catalog.json"
        file.write_text(json.dumps(catalog))
        result = run_import(agentry, tmp_path, file)
        assert result.returncode == 2
        assert "models[1].output_price_per_million" in result.stderr
        assert result.stdout == ""
        assert stored_models(tmp_path) == []

    @pytest.mark.parametrize("content", [None, "{not json"])
    def test_a_missing_or_malformed_file_exits_2(
        self, tmp_path: Path, agentry: AgentryCommand, content: str | None
    ) -> None:
        file = tmp_path / "catalog.json"
        if content is not None:
            file.write_text(content)
        result = run_import(agentry, tmp_path, file)
        assert result.returncode == 2
        assert str(file) in result.stderr
        assert not (tmp_path / "cli.db").exists()  # refused before touching the database
