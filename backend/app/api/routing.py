"""How a route's sync function runs: one trip through the threadpool per request.

FastAPI runs a `def` route in the threadpool and then, because the route is not a
coroutine, validates its answer against `response_model` in a second trip, and closes
the request's session (the dependency's exit) in a third. Each trip is a hand-off between
threads, which under load costs more than the work it carries. `OneTripRoute` runs the
route's function in a worker thread itself (core/threads.run_in_thread), from an async
function of the same signature plus the request, and releases the request's database
session (kept in the request's scope by api/deps.get_session) in the same trip once the
function returns; FastAPI then checks the answer without leaving the event loop.

Routes stay plain `def` functions taking `SessionDep` and `CurrentUser`; only what runs
them changes. Their answers are built inside the function, from loaded rows, so nothing
reads the database after the session is released. A route of a safe method gets a
read-only session (core/db.SessionFactory) unless it is marked with `writes`.
"""

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.types import Scope

from app.core.db import REQUEST_SESSION
from app.core.threads import run_in_thread

# The name under which the wrapper asks FastAPI for the request; no route uses it.
_REQUEST = "_one_trip_request"


# Requests that only read (RFC 9110 9.2.1).
SAFE_METHODS = frozenset({"GET", "HEAD"})
_WRITES = "_writes_when_reading"

F = TypeVar("F", bound=Callable[..., Any])


def writes(function: F) -> F:
    """Marks a route of a safe method that writes all the same (a search records the
    cost of embedding its question): its session is a read-write one."""
    setattr(function, _WRITES, True)
    return function


class OneTripRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        writes_anyway = getattr(endpoint, _WRITES, False)
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _in_one_trip(endpoint)
        super().__init__(path, endpoint, **kwargs)
        # Read by api/deps.get_session: a read-only session for routes that only read.
        self.read_only = not writes_anyway and (self.methods or {"GET"}) <= SAFE_METHODS


def _in_one_trip(function: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    def call_and_release(scope: Scope, values: dict[str, Any]) -> Any:
        try:
            return function(**values)
        finally:
            session = scope.pop(REQUEST_SESSION, None)
            if session is not None:
                session.close()  # the connection goes back to the pool from this thread

    @functools.wraps(function)
    async def endpoint(**values: Any) -> Any:
        request: Request = values.pop(_REQUEST)
        return await run_in_thread(call_and_release, request.scope, values)

    # The function's own parameters, and the request, whose scope holds the session.
    signature = inspect.signature(function)
    request = inspect.Parameter(_REQUEST, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
    endpoint.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), request]
    )
    return endpoint
