"""Domain errors: each carries its HTTP status and a stable machine-readable code.

Services raise these; one handler in `app.api.errors` turns them into the error body.
"""

from collections.abc import Sequence
from typing import Any, ClassVar

from app.core.codes import ErrorCode


class AppError(Exception):
    """`code` may be given as a string; one that is not an `ErrorCode` raises ValueError
    at once, so that a misspelt code fails where it is raised rather than in a client."""

    status_code: ClassVar[int] = 400
    code: ClassVar[ErrorCode] = ErrorCode.BAD_REQUEST
    default_detail: ClassVar[str] = "Bad request"
    # Per-field problems ({loc, msg, type}, as a schema's 422 lists them), or None.
    errors: list[dict[str, Any]] | None = None

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: ErrorCode | str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        self.error_code = self.code if code is None else ErrorCode(code)
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(self.detail)


class BadRequestError(AppError):
    pass


class AuthenticationError(AppError):
    status_code = 401
    code = ErrorCode.NOT_AUTHENTICATED
    default_detail = "Not authenticated"

    def __init__(self, detail: str | None = None, *, code: ErrorCode | str | None = None) -> None:
        super().__init__(detail, code=code, headers={"WWW-Authenticate": "Bearer"})


class PaymentRequiredError(AppError):
    status_code = 402
    code = ErrorCode.PAYMENT_REQUIRED
    default_detail = "Payment required"


class PermissionDeniedError(AppError):
    status_code = 403
    code = ErrorCode.PERMISSION_DENIED
    default_detail = "You do not have permission to do this"


class NotFoundError(AppError):
    status_code = 404
    code = ErrorCode.NOT_FOUND
    default_detail = "Not found"


class RequestTimeoutError(AppError):
    status_code = 408
    code = ErrorCode.REQUEST_TIMEOUT
    default_detail = "The request body did not arrive in time"


class ConflictError(AppError):
    status_code = 409
    code = ErrorCode.CONFLICT
    default_detail = "Conflict"


class RequestTooLargeError(AppError):
    status_code = 413
    code = ErrorCode.REQUEST_TOO_LARGE
    default_detail = "The request body is too large"


class UnsupportedMediaTypeError(AppError):
    status_code = 415
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE
    default_detail = "This kind of content is not supported"


class UnprocessableError(AppError):
    """Input that is well-formed but breaks a rule only the service can check. Like a
    schema's 422 it names the input at fault (`loc`, e.g. ("body", "model_id")), so that a
    client can mark the field."""

    status_code = 422
    code = ErrorCode.VALIDATION_ERROR
    default_detail = "Invalid input"

    def __init__(
        self,
        detail: str,
        *,
        loc: Sequence[str | int],
        code: ErrorCode | str | None = None,
        type: str = "value_error",
        msg: str | None = None,
    ) -> None:
        super().__init__(detail, code=code)
        self.errors = [{"loc": list(loc), "msg": msg or detail, "type": type}]


class RateLimitedError(AppError):
    status_code = 429
    code = ErrorCode.RATE_LIMITED
    default_detail = "Too many requests; try again later"

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailableError(AppError):
    status_code = 503
    code = ErrorCode.SERVICE_UNAVAILABLE
    default_detail = "The service is temporarily unavailable; try again shortly"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: ErrorCode | str | None = None,
        retry_after: int = 5,
    ) -> None:
        super().__init__(detail, code=code, headers={"Retry-After": str(retry_after)})


def error_body(
    *, detail: str, code: ErrorCode, request_id: str | None, errors: list[Any] | None = None
) -> dict[str, Any]:
    """The one error body every non-2xx response carries."""
    body: dict[str, Any] = {"detail": detail, "code": code, "request_id": request_id}
    if errors is not None:
        body["errors"] = errors
    return body
