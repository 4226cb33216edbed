"""Outgoing mail against a real SMTP server (aiosmtpd on 127.0.0.1)."""

import email
import email.policy
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from app.core.config import Settings
from app.modules.mail.sender import OutgoingEmail, password_reset_email, send_email

TOKEN = "tok-3f9a1c_example-reset-token"
SMTP_USER = "mailer"
SMTP_PASSWORD = "s3cret-smtp-pass"


@dataclass
class Collector:
    """An aiosmtpd handler that keeps every envelope it accepts."""

    envelopes: list[Envelope] = field(default_factory=list)
    authenticated: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        self.envelopes.append(envelope)
        self.authenticated.append(bool(session.authenticated))
        return "250 Message accepted"

    def messages(self) -> list[EmailMessage]:
        parsed = []
        for envelope in self.envelopes:
            assert isinstance(envelope.content, bytes)
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def check_password(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    # handled=False: aiosmtpd then answers a failure with 535 itself.
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


def start_server(**smtp_options: Any) -> tuple[Controller, Collector]:
    collector = Collector()
    controller = Controller(collector, hostname="127.0.0.1", port=free_port(), **smtp_options)
    controller.start()
    return controller, collector


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Collector]]:
    controller, collector = start_server()
    try:
        yield controller.port, collector
    finally:
        controller.stop()


@pytest.fixture
def smtp_server_with_auth() -> Iterator[tuple[int, Collector]]:
    # Plaintext AUTH is fine on loopback; the production path uses STARTTLS or SSL.
    controller, collector = start_server(authenticator=check_password, auth_require_tls=False)
    try:
        yield controller.port, collector
    finally:
        controller.stop()


def make(**values: Any) -> Settings:
    defaults: dict[str, Any] = {
        "ENVIRONMENT": "development",
        "PROJECT_NAME": "Agentry",
        "FRONTEND_URL": "https://app.example.com/",
        "PASSWORD_RESET_EXPIRE_MINUTES": 45,
        "EMAILS_FROM_EMAIL": "noreply@example.com",
        "EMAILS_FROM_NAME": "Agentry Team",
        "SMTP_TIMEOUT": 5,
    }
    return Settings(_env_file=None, **(defaults | values))


def smtp_settings(port: int, **values: Any) -> Settings:
    return make(**({"SMTP_HOST": "127.0.0.1", "SMTP_PORT": port, "SMTP_STARTTLS": False} | values))


def mail_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "agentry.mail"]


class TestPasswordResetEmail:
    def test_body_has_the_link_and_the_expiry(self) -> None:
        message = password_reset_email(config=make(), to="ada@example.com", token=TOKEN)
        assert message.to == "ada@example.com"
        assert message.subject == "Reset your Agentry password"
        assert f"https://app.example.com/reset-password?token={TOKEN}\n" in message.text
        assert "45 minutes" in message.text
        assert "ignore this mail" in message.text


class TestSmtp:
    def test_reset_mail_arrives(self, smtp_server: tuple[int, Collector]) -> None:
        port, collector = smtp_server
        config = smtp_settings(port)

        send_email(
            password_reset_email(config=config, to="ada@example.com", token=TOKEN), config=config
        )

        assert len(collector.envelopes) == 1
        assert collector.authenticated == [False]
        envelope = collector.envelopes[0]
        assert envelope.mail_from == "noreply@example.com"
        assert envelope.rcpt_tos == ["ada@example.com"]
        [message] = collector.messages()
        assert parseaddr(message["From"]) == ("Agentry Team", "noreply@example.com")
        assert message["To"] == "ada@example.com"
        assert message["Subject"] == "Reset your Agentry password"
        sent_at = parsedate_to_datetime(message["Date"])
        assert abs(datetime.now(UTC) - sent_at) < timedelta(minutes=1)
        assert message["Message-ID"].endswith("@example.com>")
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        assert f"https://app.example.com/reset-password?token={TOKEN}" in body.get_content()

    def test_login_with_user_and_password(
        self, smtp_server_with_auth: tuple[int, Collector], caplog: pytest.LogCaptureFixture
    ) -> None:
        port, collector = smtp_server_with_auth
        config = smtp_settings(port, SMTP_USER=SMTP_USER, SMTP_PASSWORD=SMTP_PASSWORD)

        send_email(OutgoingEmail(to="ada@example.com", subject="Hi", text="hello"), config=config)

        [message] = collector.messages()
        assert message["Subject"] == "Hi"
        assert collector.authenticated == [True]
        assert mail_records(caplog) == []

    def test_wrong_password_is_logged_without_the_password(
        self, smtp_server_with_auth: tuple[int, Collector], caplog: pytest.LogCaptureFixture
    ) -> None:
        port, collector = smtp_server_with_auth
        config = smtp_settings(port, SMTP_USER=SMTP_USER, SMTP_PASSWORD="wrong-pass-123")
        message = password_reset_email(config=config, to="ada@example.com", token=TOKEN)

        send_email(message, config=config)

        assert collector.envelopes == []
        [record] = mail_records(caplog)
        assert record.levelno == logging.ERROR
        assert "SMTPAuthenticationError" in record.getMessage()
        assert "wrong-pass-123" not in caplog.text
        assert TOKEN not in caplog.text

    def test_starttls_not_offered_fails_instead_of_sending_in_clear(
        self, smtp_server: tuple[int, Collector], caplog: pytest.LogCaptureFixture
    ) -> None:
        port, collector = smtp_server
        config = smtp_settings(port, SMTP_STARTTLS=True)
        message = password_reset_email(config=config, to="ada@example.com", token=TOKEN)

        send_email(message, config=config)

        assert collector.envelopes == []
        [record] = mail_records(caplog)
        assert record.levelno == logging.ERROR
        assert "STARTTLS" in record.getMessage()
        assert TOKEN not in caplog.text

    def test_unreachable_server_is_logged_not_raised(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        config = smtp_settings(free_port())  # nothing listens there any more
        message = password_reset_email(config=config, to="ada@example.com", token=TOKEN)

        send_email(message, config=config)

        [record] = mail_records(caplog)
        assert record.levelno == logging.ERROR
        assert "ConnectionRefusedError" in record.getMessage()
        assert "ada@example.com" in record.getMessage()
        assert TOKEN not in caplog.text


class TestWithoutSmtp:
    def test_development_logs_the_whole_mail(self, caplog: pytest.LogCaptureFixture) -> None:
        config = make(ENVIRONMENT="development")
        message = password_reset_email(config=config, to="ada@example.com", token=TOKEN)

        with caplog.at_level(logging.WARNING, logger="agentry.mail"):
            send_email(message, config=config)

        [record] = mail_records(caplog)
        assert record.levelno == logging.WARNING
        logged = record.getMessage()
        assert "ada@example.com" in logged
        assert "Reset your Agentry password" in logged
        assert f"https://app.example.com/reset-password?token={TOKEN}" in logged

    def test_production_logs_an_error_without_the_link(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        config = make(ENVIRONMENT="production")
        message = password_reset_email(config=config, to="ada@example.com", token=TOKEN)

        send_email(message, config=config)

        [record] = mail_records(caplog)
        assert record.levelno == logging.ERROR
        assert "not configured" in record.getMessage()
        assert TOKEN not in caplog.text
        assert "reset-password" not in caplog.text
