from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    """Who is on the other end of a request, as far as the audit log is concerned."""

    ip: str | None
    user_agent: str | None
    request_id: str | None
