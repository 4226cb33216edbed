"""The outermost layer of every HTTP request: request id, admission, request log.

Admission is what keeps sync routes from stalling under overload. Each admitted request
runs at most one piece of sync work at a time in the threadpool, and no more requests are
admitted than the threadpool has threads, so a request that needs a thread always finds
one. A thread waiting for a pooled database connection therefore only ever waits for
requests that are still moving, and at worst gives up after the pool timeout (503).
Requests beyond that wait here, on the event loop, holding neither a thread nor a
connection, and get 503 with Retry-After once REQUEST_QUEUE_TIMEOUT passes.
"""

import logging
import re
import time
import uuid
from collections.abc import Mapping

import anyio
from anyio.lowlevel import RunVar
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import ServiceUnavailableError, error_body
from app.core.logger import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

access_logger = logging.getLogger("agentry.request")
error_logger = logging.getLogger("agentry.error")

# Per event loop, like anyio's own default thread limiter that it is sized against.
_admission: RunVar[anyio.CapacityLimiter] = RunVar("agentry_admission")


def incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _VALID_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class RequestMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        admission_slots: int,
        queue_timeout: float,
        unadmitted_paths: frozenset[str] = frozenset(),
        route_templates: Mapping[int, str] | None = None,
    ) -> None:
        self.app = app
        # Keyed by id(route): routes are unhashable, and live as long as the app.
        self.route_templates = route_templates or {}
        self.admission_slots = admission_slots
        self.queue_timeout = queue_timeout
        self.unadmitted_paths = unadmitted_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                # API answers carry tokens and personal data: no cache may keep them.
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._admit_and_call(scope, receive, send_with_id)
        except Exception:
            error_logger.exception("unhandled error in %s %s", scope["method"], self._route(scope))
            if not response_started:
                body = error_body(
                    detail="Internal server error", code="internal_error", request_id=request_id
                )
                await JSONResponse(body, status_code=500)(scope, receive, send_with_id)
        finally:
            self._log(scope, status, started)
            request_id_var.reset(token)

    async def _admit_and_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] in self.unadmitted_paths:
            await self.app(scope, receive, send)
            return
        limiter = self._limiter()
        with anyio.move_on_after(self.queue_timeout) as waited:
            await limiter.acquire()
        if waited.cancelled_caught:
            busy = ServiceUnavailableError("The server is busy; try again shortly", retry_after=2)
            body = error_body(detail=busy.detail, code=busy.code, request_id=request_id_var.get())
            response = JSONResponse(body, status_code=busy.status_code, headers=busy.headers)
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            limiter.release()

    def _limiter(self) -> anyio.CapacityLimiter:
        try:
            return _admission.get()
        except LookupError:
            limiter = anyio.CapacityLimiter(self.admission_slots)
            anyio.to_thread.current_default_thread_limiter().total_tokens = self.admission_slots
            _admission.set(limiter)
            return limiter

    def _log(self, scope: Scope, status: int, started: float) -> None:
        state = scope.get("state") or {}
        route = self._route(scope)
        access_logger.info(
            "%s %s %s",
            scope["method"],
            route,
            status,
            extra={
                "method": scope["method"],
                "route": route,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "user_id": state.get("user_id"),
            },
        )

    def _route(self, scope: Scope) -> str:
        """The route template, never the raw path: paths and queries may carry secrets."""
        route = scope.get("route")
        if route is None:
            return "<unmatched>"
        template = self.route_templates.get(id(route)) or getattr(route, "path", None)
        return template if isinstance(template, str) else "<unmatched>"
