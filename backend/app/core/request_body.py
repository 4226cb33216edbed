"""Request bodies, received in full on the event loop before a request is admitted.

A body that trickles in must hold neither a worker thread nor an admission slot, or a
few slow clients would starve everyone (see `app.core.middleware`). So the body is read
here, by a coroutine that holds nothing, within a size limit and a deadline, and then
replayed to the application as a single message.
"""

import anyio
from starlette.types import Message, Receive, Scope

from app.core.errors import RequestTimeoutError, RequestTooLargeError, UnprocessableError


class ClientDisconnectedError(Exception):
    """The client left before its body arrived; there is no one left to answer."""


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def receive_body(scope: Scope, receive: Receive, *, limit: int, timeout: float) -> bytes:
    """The whole body, or an error as soon as it is known to be too large or too slow."""
    too_large = RequestTooLargeError(f"The request body may not exceed {limit} bytes")
    # The server has already checked that Content-Length is a number.
    declared = _header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large  # before a byte is read, and before any 100 Continue
    body = bytearray()
    try:
        with anyio.fail_after(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnectedError
                body += message.get("body", b"")
                if len(body) > limit:  # a chunked body, refused before its end
                    raise too_large
                if not message.get("more_body", False):
                    return bytes(body)
    except TimeoutError:
        raise RequestTimeoutError from None


def check_json_encoding(scope: Scope, body: bytes) -> None:
    """JSON bodies are UTF-8 (RFC 8259); `json.loads` would also guess UTF-16 and UTF-32.

    A raw NUL byte is never valid in JSON text, and every UTF-16 or UTF-32 text has one.
    """
    content_type = _header(scope, b"content-type")
    if not body or content_type is None:
        return
    media_type = content_type.split(b";", 1)[0].strip().lower()
    if media_type != b"application/json" and not (
        media_type.startswith(b"application/") and media_type.endswith(b"+json")
    ):
        return
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if b"\x00" not in body:
            return
    raise UnprocessableError(
        "The request body is not valid JSON",
        loc=("body",),
        code="malformed_json",
        type="json_invalid",
        msg="JSON must be encoded as UTF-8",
    )


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands over the buffered body, then waits for the disconnect."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed
