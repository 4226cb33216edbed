from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, Protocol

P = ParamSpec("P")


@dataclass(frozen=True)
class RequestContext:
    """Who is on the other end of a request, as far as the audit log is concerned."""

    ip: str | None
    user_agent: str | None
    request_id: str | None


class AfterResponse(Protocol):
    """Work to do once the response has gone (FastAPI's BackgroundTasks is one): mail,
    and whatever would let the time taken to answer tell the client something."""

    def add_task(self, func: Callable[P, Any], *args: P.args, **kwargs: P.kwargs) -> None: ...
