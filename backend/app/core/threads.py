"""Sync work started from the event loop: one hop to a worker thread and back.

Requests run their sync code (database sessions, the services) in the event loop's
default executor, a thread pool of THREADPOOL_SIZE threads that `AdmissionMiddleware`
installs. A hop through `asyncio`'s executor costs about a third of one through
`anyio.to_thread` (measured: 17 against 55 µs of CPU with 32 concurrent callers), which
adds a capacity limiter and cancel scopes that admission control makes redundant.
"""

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

THREAD_NAME_PREFIX = "agentry-request"


def install_executor(loop: asyncio.AbstractEventLoop, threads: int) -> None:
    """The loop's default executor becomes a pool of `threads` request threads."""
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix=THREAD_NAME_PREFIX)
    )


async def run_in_thread(function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`function(*args, **kwargs)` in a worker thread, with the caller's context variables
    (the request id of log lines).

    Once started, the call runs to its end even if the awaiting task is cancelled, and
    the cancellation takes effect after it: the thread may hold the request's database
    session, which nothing else may touch meanwhile."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    future = loop.run_in_executor(None, functools.partial(context.run, function, *args, **kwargs))
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError as error:
            if future.done():
                raise
            cancelled = error
            continue
        if cancelled is not None:
            raise cancelled
        return result
