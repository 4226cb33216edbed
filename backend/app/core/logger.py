"""Logging: one configuration for the app, uvicorn and workers; JSON in production.

Every record carries the id of the request it was written for, so a traceback in the
log can be found from the `request_id` a client saw in an error body. Logs keep no
secrets: the engine never quotes SQL parameters, and tracebacks drop what database
drivers and validation errors quote from their input (password hashes, tokens, message
text), keeping the error's kind, SQLSTATE, table, column and constraint.
"""

import logging
import logging.config
import traceback
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import pydantic_core
from fastapi.exceptions import ValidationException
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy import exc as sa_exc

from app.core.config import LogFormat, Settings

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

logger = logging.getLogger("agentry")

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def _driver_text(error: BaseException) -> str | None:
    """PostgreSQL's message without DETAIL, which quotes keys and whole failing rows."""
    diag = getattr(error, "diag", None)  # psycopg; SQLite's messages never quote values
    if diag is None:
        return None
    sqlstate = diag.sqlstate or "?"
    # Data exceptions (class 22) quote the offending value in the message itself.
    message = "data exception" if sqlstate.startswith("22") else diag.message_primary
    names = {
        "table": diag.table_name,
        "column": diag.column_name,
        "constraint": diag.constraint_name,
    }
    where = "".join(f", {name} {value}" for name, value in names.items() if value)
    return f"{message} (SQLSTATE {sqlstate}{where})"


def _problems(errors: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg')}"
        f" [{error.get('type')}]"
        for error in errors
    )


def safe_error_text(error: BaseException) -> str | None:
    """The message of an error that may quote user data, without it; None for the rest."""
    if isinstance(error, sa_exc.StatementError):
        original = error.orig
        if original is None:
            return f"[SQL: {error.statement}]"
        said = _driver_text(original) or str(original)
        kind = type(original)
        return f"({kind.__module__}.{kind.__qualname__}) {said}\n[SQL: {error.statement}]"
    if isinstance(error, pydantic_core.ValidationError):
        errors = error.errors(include_url=False, include_context=False, include_input=False)
        return f"{error.title}: {_problems(errors)}"
    if isinstance(error, ValidationException):
        return _problems(error.errors())
    return _driver_text(error)


def format_exception(error: BaseException) -> str:
    """Like `traceback.format_exception`, with `safe_error_text` for every message."""
    chain: list[tuple[BaseException, str]] = []
    current: BaseException | None = error
    link = ""
    while current is not None and all(current is not seen for seen, _ in chain):
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    parts: list[str] = []
    for exc, link in reversed(chain):
        if exc.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_tb(exc.__traceback__))
        safe = safe_error_text(exc)
        if safe is None:
            parts.extend(traceback.format_exception_only(exc))
        else:
            kind = type(exc)
            name = kind.__qualname__
            if kind.__module__ != "builtins":
                name = f"{kind.__module__}.{name}"
            parts.append(f"{name}: {safe}\n")
        parts.append(link)
    return "".join(parts).rstrip("\n")


class ConsoleLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None  # another handler may have cached the unredacted traceback
        return super().format(record)

    def formatException(self, ei: _ExcInfo) -> str:  # noqa: N802 (logging's name)
        return "" if ei[1] is None else format_exception(ei[1])


class JsonLogFormatter(JsonFormatter):
    """One JSON object per line, its `time` in ISO 8601 UTC (2025-01-31T09:30:00.123Z)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def formatException(self, ei: _ExcInfo) -> str:  # noqa: N802 (logging's name)
        return "" if ei[1] is None else format_exception(ei[1])


def configure_logging(config: Settings) -> None:
    formatter: dict[str, Any]
    if config.log_format is LogFormat.JSON:
        formatter = {
            "()": JsonLogFormatter,
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            # uvicorn's terminal copy of its message, with ANSI colour codes.
            "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
        }
    else:
        formatter = {
            "()": ConsoleLogFormatter,
            "format": "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s",
        }
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": {"request_id": {"()": RequestIdFilter}},
            "formatters": {"default": formatter},
            "handlers": {
                "default": {
                    "class": "logging.StreamHandler",
                    "formatter": "default",
                    "filters": ["request_id"],
                    "stream": "ext://sys.stderr",
                }
            },
            "root": {"handlers": ["default"], "level": config.LOG_LEVEL.upper()},
            "loggers": {
                # Our own request line replaces uvicorn's access log, which would print
                # raw query strings.
                "uvicorn.access": {"handlers": [], "propagate": False},
                "uvicorn": {"handlers": [], "propagate": True},
                "uvicorn.error": {"handlers": [], "propagate": True},
            },
        }
    )
