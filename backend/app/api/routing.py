"""How a route's sync function runs: one trip through the threadpool per request.

FastAPI runs a `def` route in the threadpool and then, because the route is not a
coroutine, validates its answer against `response_model` in a second trip, and closes
the request's session (the dependency's exit) in a third. Each trip is a hand-off between
threads, which under load costs more than the work it carries. `OneTripRoute` runs the
route's function in the threadpool itself, from an async function of the same signature,
and releases the request's database session in the same trip once the function returns;
FastAPI then checks the answer (already an object of the response model's class, so
that is cheap) without leaving the event loop.

Routes stay plain `def` functions taking `SessionDep` and `CurrentUser`; only what runs
them changes. Their answers are built inside the function, from loaded rows, so nothing
reads the database after the session is released.
"""

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from sqlmodel import Session


class OneTripRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _in_one_trip(endpoint)
        super().__init__(path, endpoint, **kwargs)


def _in_one_trip(function: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    def call_and_release(**values: Any) -> Any:
        try:
            return function(**values)
        finally:
            for value in values.values():
                if isinstance(value, Session):
                    value.close()  # the connection goes back to the pool from this thread

    @functools.wraps(function)
    async def endpoint(**values: Any) -> Any:
        return await run_in_threadpool(call_and_release, **values)

    return endpoint
