"""The database engine, the session factory and a UTC datetime column type."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Context, Decimal, localcontext
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    DateTime,
    Engine,
    Integer,
    Numeric,
    String,
    TypeDecorator,
    UniqueConstraint,
    event,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeEngine
from sqlmodel import Session, SQLModel, create_engine

from app.core.config import Settings


def utcnow() -> datetime:
    return datetime.now(UTC)


# Wide enough for any ExactDecimal column and for sums of millions of them: the default
# context (28 digits) would round a cost of COST_DIGITS (core.types) digits.
_WIDE = Context(prec=80)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back timezone-aware datetimes, on every engine.

    SQLite has no timezone type, so values are normalised to UTC on the way in and
    tagged as UTC on the way out; PostgreSQL stores `timestamptz`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """A decimal stored exactly on every engine: NUMERIC on PostgreSQL, text on SQLite
    (whose NUMERIC goes through floating point). Values with more places are refused."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale
        self.quantum = Decimal(1).scaleb(-scale)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(50))
        return dialect.type_descriptor(Numeric(self.precision, self.scale))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        with localcontext(_WIDE):
            exact = Decimal(value)
            quantized = exact.quantize(self.quantum)
        if exact != quantized:
            raise ValueError(f"{value} has more than {self.scale} decimal places")
        if quantized.adjusted() >= self.precision - self.scale:
            raise ValueError(f"{value} does not fit {self.precision} digits")
        return str(quantized) if dialect.name == "sqlite" else quantized

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        with localcontext(_WIDE):
            return Decimal(value).quantize(self.quantum)


# Token counts: 64-bit (SQLite's INTEGER is 64-bit already, and says so when reflected).
TokenCount = BigInteger().with_variant(Integer(), "sqlite")
# Auto-incrementing 64-bit primary keys of append-only tables (the audit log, the usage
# ledger): BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER primary key.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")

EXACT_SUM = "exact_sum"


class _DecimalSum:
    """SUM for ExactDecimal text columns on SQLite, whose own SUM goes through floats."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: str | None) -> None:
        if value is not None:
            self.total = _WIDE.add(self.total, Decimal(value))

    def finalize(self) -> str:
        return str(self.total)


def exact_sum(column: Any, dialect_name: str) -> Any:
    """An exact SQL sum of an ExactDecimal column on either engine (NULL on no rows)."""
    return getattr(func, EXACT_SUM)(column) if dialect_name == "sqlite" else func.sum(column)


# Executions of a statement on one connection after which psycopg prepares it.
PREPARE_THRESHOLD = 5


def create_db_engine(config: Settings, **overrides: Any) -> Engine:
    """One engine per process, tuned per backend; `overrides` exist for tests.

    SQL parameters are user data (password hashes, tokens, message text): errors never
    quote them, so they cannot reach a log.
    """
    url = config.database_url
    if url.startswith("sqlite"):
        config.ensure_data_dir()
        options: dict[str, Any] = {
            "hide_parameters": True,
            "connect_args": {"check_same_thread": False},
            "pool_size": config.DB_POOL_SIZE,
            "max_overflow": config.DB_MAX_OVERFLOW,
            "pool_timeout": config.DB_POOL_TIMEOUT,
        }
        options.update(overrides)
        engine = create_engine(url, **options)
        _tune_sqlite(engine, config.SQLITE_BUSY_TIMEOUT_MS)
        return engine
    # No ping before each checkout: that would be a round trip on every request. A
    # connection the server dropped fails the request that meets it (503), and the pool
    # then replaces every connection it held (tests/api/test_errors.py). Statements a
    # connection runs again and again are prepared on the server (psycopg's default),
    # which then neither parses nor plans them anew: less of the database's CPU per
    # request, more left for the app's workers.
    options = {
        "hide_parameters": True,
        "pool_size": config.DB_POOL_SIZE,
        "max_overflow": config.DB_MAX_OVERFLOW,
        "pool_timeout": config.DB_POOL_TIMEOUT,
        "connect_args": {
            "connect_timeout": config.DB_CONNECT_TIMEOUT,
            "options": f"-c statement_timeout={config.DB_STATEMENT_TIMEOUT_MS}",
            "application_name": config.PROJECT_NAME.lower(),
            "prepare_threshold": PREPARE_THRESHOLD if config.DB_PREPARED_STATEMENTS else None,
        },
    }
    options.update(overrides)
    return create_engine(url, **options)


def _tune_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    def unicode_lower(value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()
        dbapi_connection.create_aggregate(EXACT_SUM, 1, _DecimalSum)
        # SQLite's own lower() knows only ASCII; this one knows all of Unicode, as
        # PostgreSQL's does. Under its own name (app.crud.text.lower calls it), so that
        # lower() keeps its meaning for anything else that uses it.
        dbapi_connection.create_function("unicode_lower", 1, unicode_lower, deterministic=True)


ViolationKind = Literal["unique", "foreign_key", "not_null", "check", "other"]
_PG_KINDS: dict[str, ViolationKind] = {
    "23505": "unique",
    "23503": "foreign_key",
    "23502": "not_null",
    "23514": "check",
}
_SQLITE_KINDS: dict[str, ViolationKind] = {
    "UNIQUE": "unique",
    "FOREIGN KEY": "foreign_key",
    "NOT NULL": "not_null",
    "CHECK": "check",
}
_SQLITE_MESSAGE = re.compile(r"(UNIQUE|FOREIGN KEY|NOT NULL|CHECK) constraint failed(?:: (.*))?")


@dataclass(frozen=True)
class Violation:
    """Which kind of constraint a write broke, and its name where the engine tells it."""

    kind: ViolationKind
    constraint: str | None


def violation_of(error: IntegrityError) -> Violation:
    """The constraint behind an IntegrityError, named alike on both engines (the names of
    `SQLModel.metadata`, which the migrations use). SQLite names no foreign key."""
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is not None:  # psycopg
        diag = getattr(error.orig, "diag", None)
        return Violation(_PG_KINDS.get(sqlstate, "other"), getattr(diag, "constraint_name", None))
    match = _SQLITE_MESSAGE.match(str(error.orig))
    if match is None:
        return Violation("other", None)
    kind = _SQLITE_KINDS[match.group(1)]
    columns = match.group(2)
    return Violation(kind, _unique_named(columns) if kind == "unique" and columns else None)


def _unique_named(columns: str) -> str | None:
    """SQLite says "UNIQUE constraint failed: user.email"; the metadata knows its name."""
    qualified = [column.strip().split(".", 1) for column in columns.split(",")]
    table = SQLModel.metadata.tables.get(qualified[0][0])
    if table is None:
        return None
    wanted = {name for _, name in qualified}
    candidates = [index for index in table.indexes if index.unique] + [
        constraint for constraint in table.constraints if isinstance(constraint, UniqueConstraint)
    ]
    for candidate in candidates:
        if {column.name for column in candidate.columns} == wanted:
            return str(candidate.name)
    return None


# The ASGI scope key under which a request keeps its session (api/deps.get_session), so
# that whatever ends the request can release the session's connection.
REQUEST_SESSION = "agentry.session"
# Session.info key of sessions that may only read (SessionFactory).
READ_ONLY = "read_only"


class ReadOnlySessionError(RuntimeError):
    """A read-only session was asked to write: a bug, never an input error."""


def open_session(engine: Engine) -> Session:
    """A session whose objects stay readable after commit; services refresh what the
    database computes."""
    return Session(engine, expire_on_commit=False)


class SessionFactory:
    """The sessions of the web process's requests, on one engine.

    A read-only session (for GET and HEAD requests) runs each statement in a transaction
    of its own on PostgreSQL (autocommit): no BEGIN before its first statement and no
    ROLLBACK when its connection goes back to the pool, two round trips fewer per
    request. Under READ COMMITTED, the default, each statement of a transaction sees its
    own snapshot anyway, so reads see what they saw before. SQLite's driver begins a
    transaction only before a write already. Read-only sessions refuse to write
    (`ReadOnlySessionError`), so that no write can lose the atomicity of a transaction.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        postgres = engine.dialect.name == "postgresql"
        self.reads = engine.execution_options(isolation_level="AUTOCOMMIT") if postgres else engine

    def __call__(self, *, read_only: bool = False) -> Session:
        if not read_only:
            return open_session(self.engine)
        session = open_session(self.reads)
        session.info[READ_ONLY] = True
        return session


@event.listens_for(Session, "do_orm_execute")
def _refuse_dml(state: ORMExecuteState) -> None:
    if state.session.info.get(READ_ONLY) and (
        state.is_insert or state.is_update or state.is_delete
    ):
        raise ReadOnlySessionError("a read-only session may not write")


@event.listens_for(Session, "before_flush")
def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    if session.info.get(READ_ONLY):
        raise ReadOnlySessionError("a read-only session may not write")
