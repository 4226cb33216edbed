"""Build and send the mail the app sends (password recovery, notices of account changes).

SMTP when SMTP_HOST is set. Without it, development and tests write the whole mail to
the log so a developer can follow the reset link; production logs only that mail is not
configured, because a reset link in a production log would let anyone who reads the log
take over the account.
"""

import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid

from app.core.config import Settings

logger = logging.getLogger("agentry.mail")


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str


def password_reset_email(*, config: Settings, to: str, token: str) -> OutgoingEmail:
    link = f"{config.FRONTEND_URL.rstrip('/')}/reset-password?token={token}"
    text = (
        f"Someone asked to reset the password of your {config.PROJECT_NAME} account.\n"
        "\n"
        "To choose a new password, open this link:\n"
        "\n"
        f"{link}\n"
        "\n"
        f"The link expires in {config.PASSWORD_RESET_EXPIRE_MINUTES} minutes and works once.\n"
        "\n"
        "If you did not ask for this, ignore this mail: your password stays as it is.\n"
    )
    return OutgoingEmail(to=to, subject=f"Reset your {config.PROJECT_NAME} password", text=text)


def email_changed_email(*, config: Settings, to: str, new_email: str) -> OutgoingEmail:
    """To the old address, so its owner hears of a change they did not make."""
    text = (
        f"The email address of your {config.PROJECT_NAME} account was changed from\n"
        f"{to} to {new_email}.\n"
        "\n"
        "Mail about the account, password-reset links included, now goes to the new address.\n"
        "\n"
        "If you did not make this change, someone else has your password: contact your\n"
        f"{config.PROJECT_NAME} administrator at once.\n"
    )
    return OutgoingEmail(
        to=to, subject=f"Your {config.PROJECT_NAME} email address was changed", text=text
    )


def password_set_email(*, config: Settings, to: str) -> OutgoingEmail:
    """To an account whose password a superuser set."""
    text = (
        f"An administrator set a new password for your {config.PROJECT_NAME} account, and\n"
        "every session of the account was ended. Ask them for the new password, or choose\n"
        f"your own with a password-reset link from {config.FRONTEND_URL.rstrip('/')}\n"
        "\n"
        "If you did not expect this, ask your administrator why.\n"
    )
    return OutgoingEmail(
        to=to, subject=f"Your {config.PROJECT_NAME} password was set by an administrator", text=text
    )


def send_email(message: OutgoingEmail, *, config: Settings) -> None:
    """Deliver or log `message`; never raises for delivery problems.

    It runs as a background task after the response has gone, so nobody could act on
    an exception: failures are logged instead.
    """
    host = config.SMTP_HOST
    if not host:
        _log_instead_of_sending(message, config=config)
        return
    mime = _to_mime(message, config=config)
    try:
        _deliver(mime, host=host, config=config)
    except (smtplib.SMTPException, OSError) as exc:
        # The exception text is the server's reply or the socket error; neither carries
        # the body (which holds the link) nor the password.
        logger.error(
            "Could not send mail %r to %s via %s:%s: %s: %s",
            message.subject,
            message.to,
            host,
            config.SMTP_PORT,
            type(exc).__name__,
            exc,
        )


def _log_instead_of_sending(message: OutgoingEmail, *, config: Settings) -> None:
    if config.is_production:
        logger.error(
            "Mail is not configured (SMTP_HOST is unset); mail %r to %s was not sent",
            message.subject,
            message.to,
        )
        return
    logger.warning(
        "SMTP_HOST is unset; mail not sent, logged instead.\nTo: %s\nSubject: %s\n\n%s",
        message.to,
        message.subject,
        message.text,
    )


def _to_mime(message: OutgoingEmail, *, config: Settings) -> EmailMessage:
    mime = EmailMessage()
    mime["From"] = formataddr((config.EMAILS_FROM_NAME, config.EMAILS_FROM_EMAIL))
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = formatdate(usegmt=True)
    # An explicit domain: the default looks up this host's FQDN, which can stall on DNS.
    domain = config.EMAILS_FROM_EMAIL.rpartition("@")[2] or "localhost"
    mime["Message-ID"] = make_msgid(domain=domain)
    mime.set_content(message.text)
    return mime


def _deliver(mime: EmailMessage, *, host: str, config: Settings) -> None:
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if config.SMTP_SSL:
        client = smtplib.SMTP_SSL(
            host, config.SMTP_PORT, timeout=config.SMTP_TIMEOUT, context=context
        )
    else:
        client = smtplib.SMTP(host, config.SMTP_PORT, timeout=config.SMTP_TIMEOUT)
    with client:
        if config.SMTP_STARTTLS and not config.SMTP_SSL:
            # Raises when the server does not offer STARTTLS: we never fall back to
            # sending credentials and reset links in the clear.
            client.starttls(context=context)
        if config.SMTP_USER is not None:
            password = config.SMTP_PASSWORD.get_secret_value() if config.SMTP_PASSWORD else ""
            client.login(config.SMTP_USER, password)
        client.send_message(mime)
