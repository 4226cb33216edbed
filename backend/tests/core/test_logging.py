"""Logs keep secrets, and JSON lines are what a log pipeline expects."""

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from app.api.deps import SessionDep
from app.core.config import Settings
from app.core.db import create_db_engine
from app.core.logger import configure_logging
from tests.conftest import AppFactory
from tests.environment import settings

SECRET_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2VjcmV0LWhhc2g"
SECRET_TEXT = "words only the author may read"
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
# Leaves out email, which can be null nowhere.
FAILING_WRITE = text(
    'INSERT INTO "user" (id, hashed_password, full_name) VALUES (:id, :hash, :name)'
)

router = APIRouter(prefix="/test-only", tags=["test"])


@router.post("/failing-write", operation_id="test_failing_write")
def failing_write(session: SessionDep) -> None:
    session.execute(
        FAILING_WRITE, {"id": str(uuid.uuid4()), "hash": SECRET_HASH, "name": SECRET_TEXT}
    )
    session.commit()


def capture_log() -> io.StringIO:
    """Points the handler `configure_logging` set up at a buffer."""
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    stream = io.StringIO()
    handler.setStream(stream)
    return stream


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    configure_logging(settings)


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def assert_no_secret(logged: str) -> None:
    for secret in (SECRET_HASH, "c2VjcmV0LWhhc2g", SECRET_TEXT):
        assert secret not in logged


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_failing_write_logs_no_parameter_values(make_app: AppFactory, log_format: str) -> None:
    app = make_app(Settings(LOG_FORMAT=log_format))
    app.include_router(router, prefix="/api/v1")
    stream = capture_log()
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/api/v1/test-only/failing-write", headers={"X-Request-ID": "w1"})
    assert response.status_code == 500
    logged = stream.getvalue()
    assert "IntegrityError" in logged
    assert "(id, hashed_password, full_name) VALUES" in logged  # placeholders only
    assert_no_secret(logged)
    if log_format == "json":
        [error] = [line for line in json_lines(stream) if line["logger"] == "agentry.error"]
        assert error["request_id"] == "w1"
        assert "Traceback" in str(error["exc_info"])


def test_a_database_error_quoting_a_value_is_logged_without_it(connection: Connection) -> None:
    configure_logging(Settings(LOG_FORMAT="json"))
    stream = capture_log()
    statement = text("SELECT CAST(:value AS INTEGER) + 1")
    try:
        # PostgreSQL: 'invalid input syntax for type integer: "<the value>"'.
        with connection.begin_nested():
            connection.execute(statement, {"value": SECRET_TEXT}).scalar_one()
    except Exception:
        logging.getLogger("agentry.error").exception("query failed")
    else:
        pytest.skip("SQLite casts any text to an integer")
    assert_no_secret(stream.getvalue())
    [line] = json_lines(stream)
    assert "SQLSTATE 22P02" in str(line["exc_info"])


def test_neither_engine_quotes_parameters(tmp_path: Path) -> None:
    sqlite = create_db_engine(Settings(DATABASE_URL=f"sqlite:///{tmp_path}/probe.db"))
    postgres = create_db_engine(Settings(DATABASE_URL="postgresql://nobody@127.0.0.1:9/none"))
    try:
        assert sqlite.hide_parameters
        assert postgres.hide_parameters
    finally:
        sqlite.dispose()
        postgres.dispose()


def test_json_lines_have_an_iso_utc_time_and_no_colour() -> None:
    configure_logging(Settings(LOG_FORMAT="json", LOG_LEVEL="INFO"))
    stream = capture_log()
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 42, extra={"color_message": "Started [\x1b[36m%d\x1b[0m]"}
    )
    [line] = json_lines(stream)
    assert ISO_UTC.fullmatch(str(line["time"]))
    assert line["level"] == "INFO"
    assert line["logger"] == "uvicorn.error"
    assert line["message"] == "Started server process [42]"
    assert "color_message" not in line
    assert "\x1b" not in stream.getvalue()
    assert "\\u001b" not in stream.getvalue()
