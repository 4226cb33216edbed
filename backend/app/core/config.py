"""Settings, read from the environment and `.env` once per process by its composition
root (`create_app`, the CLI, the worker) and handed down from there: nothing else reads
the environment, and no module holds a global settings object."""

import os
import secrets
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.core.types import PRICE_DIGITS, PRICE_PLACES

GENERATE_KEY_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
PLACEHOLDER_SECRETS = frozenset({"changethis", "changeme", "secret", "your-secret-key"})
SECRET_KEY_MIN_BYTES = 32
MIN_PASSWORD_LENGTH = 8
SECRET_KEY_FILE = "secret_key"  # noqa: S105 (a file name, not a secret)


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class ProviderSettings(BaseModel):
    """Where one LLM provider's OpenAI-compatible API lives. Only settings name URLs that
    the server calls; no request ever does."""

    base_url: str = Field(pattern=r"^https?://", max_length=500)
    api_key: SecretStr | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_ignore_empty=True, extra="ignore", env_nested_delimiter="__"
    )

    PROJECT_NAME: str = "Agentry"
    ENVIRONMENT: Environment = Environment.DEVELOPMENT
    DATA_DIR: Path = Path("./data")
    DATABASE_URL: str = ""
    SECRET_KEY: SecretStr | None = None

    BACKEND_CORS_ORIGINS: Annotated[list[str], NoDecode] = []
    FORWARDED_ALLOW_IPS: Annotated[list[str], NoDecode] = []
    LOG_LEVEL: str = "INFO"
    LOG_FORMAT: LogFormat | None = None
    EXPOSE_DOCS: bool | None = None

    # Database pool (both engines) and timeouts.
    # Overflow connections are closed as soon as they are returned: under steady load each
    # one is a new PostgreSQL backend per burst, so the default pool covers the load itself.
    DB_POOL_SIZE: int = Field(default=20, ge=1, le=500)
    DB_MAX_OVERFLOW: int = Field(default=0, ge=0, le=500)
    DB_POOL_TIMEOUT: float = Field(default=5.0, gt=0, le=60)
    DB_CONNECT_TIMEOUT: int = Field(default=5, ge=1, le=60)
    DB_STATEMENT_TIMEOUT_MS: int = Field(default=15_000, ge=100, le=600_000)
    # psycopg prepares a statement on the server once a connection has run it 5 times;
    # off behind a pooler that cannot keep prepared statements (PgBouncer's transaction
    # mode before 1.21).
    DB_PREPARED_STATEMENTS: bool = True
    SQLITE_BUSY_TIMEOUT_MS: int = Field(default=5_000, ge=0, le=600_000)

    # Worker threads that run sync routes; admitted requests never outnumber them.
    THREADPOOL_SIZE: int = Field(default=40, ge=2, le=1000)
    REQUEST_QUEUE_TIMEOUT: float = Field(default=10.0, gt=0, le=300)
    # A request is admitted only once its whole body has arrived: bodies bigger than this
    # are refused (413), and bodies still incomplete after the timeout are dropped (408).
    MAX_REQUEST_BODY_BYTES: int = Field(default=1_048_576, ge=1024, le=100 * 1_048_576)
    REQUEST_BODY_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=300)

    # Accounts and tokens.
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=15, ge=1, le=24 * 60)
    REFRESH_TOKEN_EXPIRE_DAYS: int = Field(default=30, ge=1, le=365)
    PASSWORD_RESET_EXPIRE_MINUTES: int = Field(default=60, ge=5, le=24 * 60)
    JWT_ISSUER: str = "agentry"
    JWT_AUDIENCE: str = "agentry-api"
    FIRST_SUPERUSER_EMAIL: str | None = None
    FIRST_SUPERUSER_PASSWORD: SecretStr | None = None
    OPEN_SIGNUP: bool | None = None
    FRONTEND_URL: str = "http://localhost:5173"

    # Outgoing mail; without SMTP_HOST, development logs reset links instead.
    SMTP_HOST: str | None = None
    SMTP_PORT: int = Field(default=587, ge=1, le=65535)
    SMTP_USER: str | None = None
    SMTP_PASSWORD: SecretStr | None = None
    SMTP_STARTTLS: bool = True
    SMTP_SSL: bool = False
    SMTP_TIMEOUT: float = Field(default=10.0, gt=0, le=120)
    EMAILS_FROM_EMAIL: str = "agentry@localhost"
    EMAILS_FROM_NAME: str = "Agentry"

    # LLM providers by catalog slug: LLM_PROVIDERS__OPENAI__BASE_URL, ..._API_KEY.
    LLM_PROVIDERS: dict[str, ProviderSettings] = {}

    # Agent runs.
    DEFAULT_MONTHLY_BUDGET_USD: Decimal | None = Field(
        default=Decimal("10"), ge=0, max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES
    )
    CELERY_BROKER_URL: str | None = None
    RUN_WORKERS: int = Field(default=4, ge=1, le=256)
    RUN_TIME_LIMIT_SECONDS: int = Field(default=300, ge=10, le=3600)
    # A claimed run's lease, renewed every third of it while the run executes; a run
    # whose process died is failed within one lease plus one sweep interval.
    RUN_LEASE_SECONDS: int = Field(default=30, ge=3, le=3600)
    RUN_SWEEP_INTERVAL_SECONDS: float = Field(default=5.0, ge=0.1, le=600)
    # A queued run nobody took is delivered again after this, then twice as long, ...
    RUN_REDELIVER_SECONDS: int = Field(default=30, ge=1, le=3600)
    RUN_QUEUE_TIMEOUT_SECONDS: int = Field(default=900, ge=10, le=7 * 86_400)
    CELERY_PUBLISH_TIMEOUT_SECONDS: float = Field(default=3.0, gt=0, le=60)
    LLM_CONNECT_TIMEOUT: float = Field(default=5.0, gt=0, le=60)
    LLM_READ_TIMEOUT: float = Field(default=120.0, gt=0, le=1800)
    LLM_MAX_RETRIES: int = Field(default=3, ge=0, le=10)

    # State shared between processes (throttling counters); in-memory when unset.
    REDIS_URL: str | None = None

    # Knowledge bases: uploads, stored files and their ingestion.
    MAX_UPLOAD_BYTES: int = Field(default=25 * 1_048_576, ge=1024, le=1024 * 1_048_576)
    STORAGE_QUOTA_BYTES: int = Field(default=1024 * 1_048_576, ge=0, le=2**50)
    # Where uploaded files live: a directory under DATA_DIR when empty, else
    # s3://bucket/prefix on S3-compatible storage shared by every process.
    STORAGE_URL: str = Field(
        default="", pattern=r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?)?$"
    )
    S3_ENDPOINT_URL: str | None = Field(default=None, pattern=r"^https?://")
    S3_REGION: str = "us-east-1"
    S3_ACCESS_KEY_ID: str | None = None
    S3_SECRET_ACCESS_KEY: SecretStr | None = None
    INGEST_WORKERS: int = Field(default=2, ge=1, le=64)
    INGEST_TIME_LIMIT_SECONDS: int = Field(default=600, ge=10, le=86_400)
    INGEST_MAX_ATTEMPTS: int = Field(default=3, ge=1, le=20)
    # Bounds on what one document may expand to (zip bombs, huge PDFs).
    MAX_DOCUMENT_PAGES: int = Field(default=2000, ge=1, le=100_000)
    MAX_EXTRACTED_BYTES: int = Field(default=200 * 1_048_576, ge=1024, le=2**34)
    # PostgreSQL's text search configuration for passages and queries: `simple` (words as
    # written, any language) or one that stems, such as english or german. After changing
    # it, `agentry reindex-search` rebuilds the stored vectors. SQLite's index ignores it.
    SEARCH_LANGUAGE: str = Field(default="simple", pattern=r"^[a-z][a-z0-9_]{0,62}$")

    # Credential throttling.
    LOGIN_MAX_FAILURES_PER_ACCOUNT: int = Field(default=5, ge=1, le=1000)
    LOGIN_MAX_FAILURES_PER_IP: int = Field(default=20, ge=1, le=100_000)
    LOGIN_FAILURE_WINDOW_SECONDS: int = Field(default=15 * 60, ge=1, le=86_400)
    RECOVERY_MAX_PER_EMAIL: int = Field(default=3, ge=1, le=1000)
    RECOVERY_MAX_PER_IP: int = Field(default=20, ge=1, le=100_000)
    RECOVERY_WINDOW_SECONDS: int = Field(default=60 * 60, ge=1, le=86_400)
    SIGNUP_MAX_PER_IP: int = Field(default=10, ge=1, le=100_000)
    SIGNUP_WINDOW_SECONDS: int = Field(default=60 * 60, ge=1, le=86_400)
    # Wrong current passwords (changing the password or the email) per account.
    PASSWORD_CHANGE_MAX_FAILURES: int = Field(default=5, ge=1, le=1000)
    PASSWORD_CHANGE_WINDOW_SECONDS: int = Field(default=15 * 60, ge=1, le=86_400)

    @field_validator("BACKEND_CORS_ORIGINS", "FORWARDED_ALLOW_IPS", mode="before")
    @classmethod
    def _parse_list(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("DATABASE_URL")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value.removeprefix(prefix)
        return value

    @field_validator("BACKEND_CORS_ORIGINS")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"{origin!r} is not an http(s) origin")
        return [origin.rstrip("/") for origin in value]

    @property
    def is_production(self) -> bool:
        return self.ENVIRONMENT is Environment.PRODUCTION

    @property
    def signup_open(self) -> bool:
        return self.OPEN_SIGNUP if self.OPEN_SIGNUP is not None else not self.is_production

    @property
    def first_superuser_email(self) -> str | None:
        if self.FIRST_SUPERUSER_EMAIL:
            return self.FIRST_SUPERUSER_EMAIL
        return None if self.is_production else "admin@example.com"

    @property
    def database_url(self) -> str:
        if self.DATABASE_URL:
            return self.DATABASE_URL
        return f"sqlite:///{(self.DATA_DIR / 'agentry.db').as_posix()}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def log_format(self) -> LogFormat:
        if self.LOG_FORMAT is not None:
            return self.LOG_FORMAT
        return LogFormat.JSON if self.is_production else LogFormat.CONSOLE

    @property
    def docs_exposed(self) -> bool:
        return self.EXPOSE_DOCS if self.EXPOSE_DOCS is not None else not self.is_production

    @cached_property
    def secret_key(self) -> str:
        """The signing key: configured, or generated once and kept in DATA_DIR."""
        if self.SECRET_KEY is not None:
            return self.SECRET_KEY.get_secret_value()
        if self.is_production:
            raise ConfigurationError(["SECRET_KEY is required in production"])
        return _load_or_create_secret(self.DATA_DIR / SECRET_KEY_FILE)

    def ensure_data_dir(self) -> None:
        self.DATA_DIR.mkdir(parents=True, exist_ok=True)

    def problems(self) -> list[str]:
        """Settings the app refuses to start with (only production is strict)."""
        if not self.is_production:
            return []
        problems = []
        if (problem := secret_key_problem(self.SECRET_KEY)) is not None:
            problems.append(f"SECRET_KEY {problem}")
        if not self.FIRST_SUPERUSER_EMAIL:
            problems.append("FIRST_SUPERUSER_EMAIL is required in production")
        if self.FIRST_SUPERUSER_PASSWORD is None:
            problems.append("FIRST_SUPERUSER_PASSWORD is required in production")
        elif len(self.FIRST_SUPERUSER_PASSWORD.get_secret_value()) < MIN_PASSWORD_LENGTH:
            problems.append(
                f"FIRST_SUPERUSER_PASSWORD must be at least {MIN_PASSWORD_LENGTH} characters"
            )
        if "*" in self.BACKEND_CORS_ORIGINS:
            problems.append("BACKEND_CORS_ORIGINS must list origins, not '*'")
        return problems


def secret_key_problem(value: SecretStr | None) -> str | None:
    if value is None:
        return "is required in production"
    key = value.get_secret_value()
    if key.strip().lower() in PLACEHOLDER_SECRETS:
        return "is a placeholder; generate one with: " + GENERATE_KEY_HINT
    if len(key.encode()) < SECRET_KEY_MIN_BYTES:
        return f"must be at least {SECRET_KEY_MIN_BYTES} bytes long"
    return None


def _load_or_create_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        with open(path, "x", opener=_open_private) as handle:
            handle.write(key)
    except FileExistsError:  # another process won the race; use its key
        return path.read_text().strip()
    return key


def _open_private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


class ConfigurationError(Exception):
    """Settings that must be fixed before the app may start."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def load_settings() -> Settings:
    """Settings from the environment and `.env`; a value of the wrong form is a
    ConfigurationError with one line per setting, naming it and the form expected."""
    try:
        return Settings()
    except ValidationError as error:
        raise ConfigurationError([_describe(problem) for problem in error.errors()]) from None


def _describe(problem: Any) -> str:
    name = "__".join(str(part) for part in problem["loc"]) or "settings"
    return f"{name}: {problem['msg']}"
