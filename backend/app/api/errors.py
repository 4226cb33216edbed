"""Turns every failure into the one error body, and declares it in OpenAPI."""

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.codes import ErrorCode
from app.core.db import ViolationKind, violation_of
from app.core.errors import AppError, ConflictError, ServiceUnavailableError, error_body
from app.core.logger import request_id_var

logger = logging.getLogger("agentry.error")

# Codes for HTTP errors raised by the framework itself (unknown path, wrong method, ...).
# Any other status is a bug of ours, and its body says so by the status's class.
_HTTP_CODES = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.NOT_AUTHENTICATED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    406: ErrorCode.NOT_ACCEPTABLE,
    413: ErrorCode.REQUEST_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    429: ErrorCode.RATE_LIMITED,
}


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """The body of every non-2xx response."""

    detail: str = Field(description="What went wrong, for people.")
    code: ErrorCode = Field(description="What went wrong, for programs: stable snake_case.")
    request_id: str | None = Field(description="The X-Request-ID of the failed request.")
    errors: list[ValidationErrorItem] | None = Field(
        default=None, description="Per-field problems; present on 422 responses."
    )


def _json(
    status: int,
    *,
    detail: str,
    code: ErrorCode,
    headers: Mapping[str, str] | None = None,
    errors: list[Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body = error_body(detail=detail, code=code, request_id=request_id_var.get(), errors=errors)
    if extra:
        body.update(jsonable_encoder(extra))
    return JSONResponse(body, status_code=status, headers=headers)


# Starlette types every handler as taking Exception; each is registered for one class.
def _app_error(_request: Request, error: Exception) -> JSONResponse:
    exc = cast(AppError, error)
    return _json(
        exc.status_code,
        detail=exc.detail,
        code=exc.error_code,
        headers=exc.headers,
        errors=exc.errors,
        extra=exc.extra,
    )


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path; Starlette names only the first route's."""
    path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
    methods: set[str] = set()
    for context in iter_route_contexts(request.app.routes):
        pattern = getattr(context, "path_regex", None)
        if context.methods and pattern is not None and pattern.match(path):
            methods |= context.methods
    return ", ".join(sorted(methods))


def _http_error(request: Request, error: Exception) -> JSONResponse:
    exc = cast(StarletteHTTPException, error)
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    code = _HTTP_CODES.get(
        status, ErrorCode.BAD_REQUEST if status < 500 else ErrorCode.INTERNAL_ERROR
    )
    headers = dict(exc.headers or {})
    if status == 405 and (allowed := _allowed_methods(request)):
        headers["Allow"] = allowed
    return _json(status, detail=detail, code=code, headers=headers)


def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    exc = cast(RequestValidationError, error)
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error["type"]}
        for error in exc.errors()
    ]
    # Input is never echoed back: it may hold a password.
    if any(error["type"] == "json_invalid" for error in errors):
        return _json(
            422,
            detail="The request body is not valid JSON",
            code=ErrorCode.MALFORMED_JSON,
            errors=errors,
        )
    return _json(
        422, detail="The request is not valid", code=ErrorCode.VALIDATION_ERROR, errors=errors
    )


def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    logger.warning("database unavailable: %s", type(exc).__name__)
    error = ServiceUnavailableError("The database is unavailable; try again shortly")
    return _json(
        error.status_code,
        detail=error.detail,
        code=ErrorCode.DATABASE_UNAVAILABLE,
        headers=error.headers,
    )


# A write that collided with data another request changed meanwhile, by the kind of
# constraint it broke; a service maps the constraints it expects (`commit_or_conflict`).
_COLLISIONS: dict[ViolationKind, ConflictError] = {
    "unique": ConflictError("A row with these values already exists", code="duplicate"),
    "foreign_key": ConflictError(
        "Something this change refers to no longer exists", code="reference_missing"
    ),
}


def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    violation = violation_of(cast(sa_exc.IntegrityError, exc))
    error = _COLLISIONS.get(violation.kind)
    if error is None:
        raise exc  # a missing value or a broken check is our bug: a logged 500
    # The kind and the name only: the engine's message quotes the values.
    logger.warning("integrity error: %s on %s", violation.kind, violation.constraint)
    return _json(error.status_code, detail=error.detail, code=error.error_code)


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(sa_exc.IntegrityError, _integrity_error)
    # Pool exhausted (TimeoutError) or the server unreachable or gone (OperationalError,
    # InterfaceError): the client should come back later, this is not a bug.
    for error in (sa_exc.TimeoutError, sa_exc.OperationalError, sa_exc.InterfaceError):
        app.add_exception_handler(error, _database_unavailable)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of the error responses a route can give."""
    return {
        status: {"model": ErrorResponse, "description": HTTPStatus(status).phrase}
        for status in statuses
    }
