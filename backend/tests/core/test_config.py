import stat
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from app.core.config import ConfigurationError, Settings
from app.main import create_app
from tests.conftest import AgentryCommand

STRONG_KEY = "k" * 48


def make(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


class TestDatabaseUrl:
    @pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
    def test_postgres_schemes_use_psycopg(self, scheme: str) -> None:
        config = make(DATABASE_URL=f"{scheme}://u:p@db:5432/agentry")
        assert config.database_url == "postgresql+psycopg://u:p@db:5432/agentry"

    def test_default_is_a_sqlite_file_in_data_dir(self, tmp_path: Path) -> None:
        config = make(DATA_DIR=tmp_path, DATABASE_URL="")
        assert config.database_url == f"sqlite:///{tmp_path.as_posix()}/agentry.db"
        assert config.is_sqlite


class TestSecretKey:
    def test_development_generates_and_keeps_a_private_key(self, tmp_path: Path) -> None:
        first = make(DATA_DIR=tmp_path, ENVIRONMENT="development").secret_key
        second = make(DATA_DIR=tmp_path, ENVIRONMENT="development").secret_key
        key_file = tmp_path / "secret_key"
        assert first == second
        assert len(first) >= 32
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    @pytest.mark.parametrize(
        ("key", "problem"),
        [
            (None, "SECRET_KEY is required in production"),
            ("changethis", "SECRET_KEY is a placeholder"),
            ("short-but-not-a-placeholder", "SECRET_KEY must be at least 32 bytes"),
        ],
    )
    def test_production_refuses_weak_keys(self, key: str | None, problem: str) -> None:
        config = make(ENVIRONMENT="production", SECRET_KEY=key)
        assert any(p.startswith(problem) for p in config.problems())
        with pytest.raises(ConfigurationError, match="SECRET_KEY"):
            create_app(config)

    def test_production_accepts_a_strong_key(self) -> None:
        config = make(
            ENVIRONMENT="production",
            SECRET_KEY=SecretStr(STRONG_KEY),
            FIRST_SUPERUSER_EMAIL="root@example.com",
            FIRST_SUPERUSER_PASSWORD="a long production passphrase",
        )
        assert config.problems() == []
        assert config.secret_key == STRONG_KEY


def test_production_requires_the_first_superuser_settings() -> None:
    config = make(ENVIRONMENT="production", SECRET_KEY=STRONG_KEY)
    assert config.problems() == [
        "FIRST_SUPERUSER_EMAIL is required in production",
        "FIRST_SUPERUSER_PASSWORD is required in production",
    ]
    assert config.first_superuser_email is None
    assert make(ENVIRONMENT="development").first_superuser_email == "admin@example.com"


class TestProductionDefaults:
    def test_json_logs_and_no_docs(self) -> None:
        config = make(ENVIRONMENT="production", SECRET_KEY=STRONG_KEY)
        assert config.log_format == "json"
        assert config.docs_exposed is False

    def test_cors_wildcard_refused_in_production(self) -> None:
        config = make(ENVIRONMENT="production", SECRET_KEY=STRONG_KEY, BACKEND_CORS_ORIGINS="*")
        assert "BACKEND_CORS_ORIGINS must list origins, not '*'" in config.problems()

    def test_cors_origins_must_be_http(self) -> None:
        with pytest.raises(ValidationError, match="not an http"):
            make(BACKEND_CORS_ORIGINS="ftp://example.com")


def test_serve_refuses_unsafe_production_settings(tmp_path: Path, agentry: AgentryCommand) -> None:
    result = agentry(
        "serve",
        env={"ENVIRONMENT": "production", "SECRET_KEY": "changethis", "DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "refusing to start: SECRET_KEY is a placeholder" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("RUN_LEASE_SECONDS", "thirty", "RUN_LEASE_SECONDS: Input should be a valid integer"),
        ("ENVIRONMENT", "staging", "ENVIRONMENT: Input should be 'development', 'test' or"),
        ("SEARCH_LANGUAGE", "english; drop", "SEARCH_LANGUAGE: String should match pattern"),
    ],
)
def test_a_malformed_setting_is_one_line_naming_it(
    agentry: AgentryCommand, name: str, value: str, expected: str
) -> None:
    result = agentry("migrate", "--sql", env={name: value})
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"agentry: refusing to start: {expected}")
    assert "Traceback" not in result.stderr
