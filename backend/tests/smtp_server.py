"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives.

`hold()` makes it keep each mail's DATA unanswered until `release()`, which shows
whether the sender waits for the mail (a request would not answer) or not.
"""

import asyncio
import email
import email.policy
import socket
import threading
import time
from email.message import EmailMessage
from types import TracebackType

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

HOLD_AT_MOST_SECONDS = 30  # a held mail is let through after this, so no test can hang


class Mailbox:
    def __init__(self) -> None:
        self.port = _free_port()
        self._received: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> "Mailbox":
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._open.set()
        self._controller.stop()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        await asyncio.get_running_loop().run_in_executor(
            None, self._open.wait, HOLD_AT_MOST_SECONDS
        )
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self._received.append(message)
        return "250 Message accepted"

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return list(self._received)

    def wait_for(self, count: int, *, seconds: float = 15) -> list[EmailMessage]:
        """The first `count` mails, once they have arrived (mail sent after a response
        may still be on its way when the client has the answer)."""
        deadline = time.monotonic() + seconds
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} mail(s) expected, {len(self.messages)} arrived")
            time.sleep(0.02)
        return self.messages


def body_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    text: str = part.get_content()
    return text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
