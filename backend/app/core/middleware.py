"""The two layers around every HTTP request, with CORS between them.

`RequestMiddleware`, the outermost, gives each request its id and its log line.
`AdmissionMiddleware`, inside CORS (so that a browser can read its answers), receives
the body, admits the request, and turns an unhandled exception into a 500.

Admission is what keeps sync routes from stalling under overload. Each admitted request
runs at most one piece of sync work at a time in the threadpool, and no more requests are
admitted than the threadpool has threads, so a request that needs a thread always finds
one. A thread waiting for a pooled database connection therefore only ever waits for
requests that are still moving, and at worst gives up after the pool timeout (503).
Requests beyond that wait here, on the event loop, holding neither a thread nor a
connection, and get 503 with Retry-After once REQUEST_QUEUE_TIMEOUT passes. A request
is admitted only once its whole body has arrived (`app.core.request_body`), so clients
that send slowly wait on the event loop too, and cannot take the slots from others.
Bodies are bounded by MAX_REQUEST_BODY_BYTES, except where a `BodyLimit` (document
uploads) allows more.
"""

import asyncio
import itertools
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.codes import ErrorCode
from app.core.db import REQUEST_SESSION
from app.core.errors import AppError, RequestTooLargeError, ServiceUnavailableError, error_body
from app.core.logger import request_id_var
from app.core.request_body import (
    ClientDisconnectedError,
    check_json_encoding,
    receive_body,
    replay,
)
from app.core.threads import install_executor, run_in_thread

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# nginx's code for a client that left before it was answered.
_CLIENT_CLOSED = 499

access_logger = logging.getLogger("agentry.request")
error_logger = logging.getLogger("agentry.error")


@dataclass(frozen=True)
class BodyLimit:
    """A body limit of its own for one kind of request (a document upload): its size,
    the deadline for receiving it, and the 413 that refuses a larger body."""

    method: str
    path: re.Pattern[str]
    max_bytes: int
    timeout: float
    code: ErrorCode
    detail: str
    # Checked before a byte of the body is read: an error it returns is the answer, so
    # that nobody without credentials can make the server hold a large body.
    precheck: Callable[[Scope], AppError | None] | None = None

    def applies_to(self, scope: Scope) -> bool:
        return scope["method"] == self.method and self.path.fullmatch(scope["path"]) is not None


def _disconnect(message: Message) -> bool:
    return bool(message["type"] == "http.disconnect")


def _bodiless(scope: Scope) -> bool:
    """A request without Content-Length or Transfer-Encoding has no body (RFC 9112 6.3):
    there is nothing to wait for."""
    return not any(
        name == b"content-length" or name == b"transfer-encoding" for name, _ in scope["headers"]
    )


def incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _VALID_REQUEST_ID.fullmatch(candidate):
                return candidate
            break
    return _request_ids.next()


class _RequestIds:
    """Ids unique across processes without a system call each: a random prefix drawn
    once per process, then a counter; 32 hex digits, as a UUID's."""

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._counter = itertools.count()

    def next(self) -> str:
        if self._pid != os.getpid():  # a new process (a worker forked after import)
            self._pid = os.getpid()
            self._prefix = secrets.token_hex(8)
        return f"{self._prefix}{next(self._counter):016x}"


_request_ids = _RequestIds()


def _internal_error() -> JSONResponse:
    body = error_body(
        detail="Internal server error",
        code=ErrorCode.INTERNAL_ERROR,
        request_id=request_id_var.get(),
    )
    return JSONResponse(body, status_code=500)


def _error_response(error: AppError, *, close: bool = False) -> JSONResponse:
    body = error_body(
        detail=error.detail,
        code=error.error_code,
        request_id=request_id_var.get(),
        errors=error.errors,
    )
    body.update(error.extra)
    headers = dict(error.headers)
    if close:
        # The rest of the body may still be on its way; do not wait to read it.
        headers["Connection"] = "close"
    return JSONResponse(body, status_code=error.status_code, headers=headers)


class RequestMiddleware:
    """The request id, `Cache-Control: no-store`, and one log line per request."""

    def __init__(self, app: ASGIApp, *, route_templates: Mapping[int, str] | None = None) -> None:
        self.app = app
        # Keyed by id(route): routes are unhashable, and live as long as the app.
        self.route_templates = route_templates or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = incoming_request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = _CLIENT_CLOSED
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
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_logger.exception("unhandled error in %s %s", scope["method"], self._route(scope))
            if not response_started:  # the error came from outside AdmissionMiddleware
                await _internal_error()(scope, receive, send_with_id)
        finally:
            self._log(scope, status, started)
            request_id_var.reset(token)

    def _log(self, scope: Scope, status: int, started: float) -> None:
        if not access_logger.isEnabledFor(logging.INFO):
            return
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


class AdmissionMiddleware:
    """Receives the body, admits the request, and answers 500 for unhandled errors."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        admission_slots: int,
        queue_timeout: float,
        max_body_bytes: int,
        body_timeout: float,
        unadmitted_paths: frozenset[str] = frozenset(),
        body_limits: tuple[BodyLimit, ...] = (),
    ) -> None:
        self.app = app
        self.admission_slots = admission_slots
        self.queue_timeout = queue_timeout
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.unadmitted_paths = unadmitted_paths
        self.body_limits = body_limits
        self._loop: asyncio.AbstractEventLoop | None = None
        self._semaphore = asyncio.Semaphore(admission_slots)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def watched_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._receive_and_admit(scope, receive, watched_send)
        except Exception:
            # Answered here, inside CORS, so that a browser can read it; logged outside.
            if not response_started:
                await _internal_error()(scope, receive, send)
            raise

    async def _receive_and_admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        special = next((limit for limit in self.body_limits if limit.applies_to(scope)), None)
        refused = special.precheck(scope) if special and special.precheck else None
        if refused is not None:
            await _error_response(refused, close=True)(scope, receive, send)
            return
        try:
            body = (
                None
                if _bodiless(scope)
                else await receive_body(
                    scope,
                    receive,
                    limit=special.max_bytes if special else self.max_body_bytes,
                    timeout=special.timeout if special else self.body_timeout,
                )
            )
        except ClientDisconnectedError:
            return
        except AppError as error:
            if special is not None and isinstance(error, RequestTooLargeError):
                error = RequestTooLargeError(special.detail, code=special.code)
            await _error_response(error, close=True)(scope, receive, send)
            return
        try:
            if body:
                check_json_encoding(scope, body)
        except AppError as error:
            await _error_response(error)(scope, receive, send)
            return
        if scope["path"] in self.unadmitted_paths:
            await self.app(scope, replay(body, receive) if body is not None else receive, send)
            return
        slots = self._slots()
        if not slots.locked():
            await slots.acquire()
        else:  # all taken: wait on the event loop, up to the queue timeout
            if body is None:  # bodiless: its one message is read now, and handed on later
                first = await receive()
                if first["type"] == "http.disconnect":
                    return
                body = first.get("body", b"")
            try:
                if not await self._queue(slots, receive):
                    return  # the client left while queued: nobody to answer, nothing to do
            except TimeoutError:
                busy = ServiceUnavailableError(
                    "The server is busy; try again shortly", retry_after=2
                )
                await _error_response(busy)(scope, receive, send)
                return
        if body is not None:
            receive = replay(body, receive)
        try:
            await self.app(scope, receive, send)
        finally:
            try:
                await release_session(scope)
            finally:
                slots.release()  # even when releasing the session failed (database gone)

    async def _queue(self, slots: asyncio.Semaphore, receive: Receive) -> bool:
        """Waits for a slot, up to the queue timeout (TimeoutError). False, with no slot
        taken, when the client disconnected meanwhile: under overload, clients that gave
        up would otherwise leave their requests to be served to no one, delaying every
        live request queued behind them. `receive` must have handed over the whole body:
        what it gives next is the disconnect."""
        left = asyncio.ensure_future(receive())
        try:
            async with asyncio.timeout(self.queue_timeout):
                await slots.acquire()
        finally:
            gone = (
                left.done()
                and not left.cancelled()
                and left.exception() is None
                and _disconnect(left.result())
            )
            if not left.done():
                left.cancel()
        if gone:
            slots.release()
        return not gone

    def _slots(self) -> asyncio.Semaphore:
        """The admission slots of the running event loop, and its thread pool of as
        many threads (made at its first request)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            install_executor(loop, self.admission_slots)
            # For what FastAPI and Starlette still run through anyio (uploaded files).
            anyio.to_thread.current_default_thread_limiter().total_tokens = self.admission_slots
            self._semaphore = asyncio.Semaphore(self.admission_slots)
            self._loop = loop
        return self._semaphore


async def release_session(scope: Scope) -> None:
    """Releases the request's database session if the route's trip did not (a
    dependency failed before the route ran); in a thread when it holds a connection,
    since returning one to the pool talks to the database."""
    session = scope.pop(REQUEST_SESSION, None)
    if session is None:
        return
    if session.in_transaction():
        await run_in_thread(session.close)
    else:
        session.close()
