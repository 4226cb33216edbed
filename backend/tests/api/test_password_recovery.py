import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx2
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Connection, delete
from sqlmodel import Session, col, select

from app.core.db import SessionFactory, create_db_engine, utcnow
from app.core.security import hash_token
from app.main import create_app
from app.models.audit import AuditEntry
from app.models.auth import LoginSession, PasswordResetToken
from app.models.user import User
from app.modules.llm.client import LLMClient
from app.modules.storage import build_storage
from app.services.ingestion_service import IngestPolicy
from app.services.run_runtime import RunPolicy
from app.tasks.dispatch import InlineDispatcher
from tests.environment import engine, settings
from tests.factories import auth_headers, create_user
from tests.smtp_server import Mailbox, body_of

RECOVER = "/api/v1/password-recovery"
RESET = "/api/v1/reset-password"
NEW_PASSWORD = "a completely fresh passphrase"


def request_link(
    client: TestClient, caplog: pytest.LogCaptureFixture, email: str
) -> tuple[int, dict[str, object], str | None]:
    """Asks for a reset link; returns the status, body and the token the mail carried."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agentry.mail"):
        response = client.post(RECOVER, json={"email": email})
    match = re.search(r"token=([A-Za-z0-9_-]+)", caplog.text)
    return response.status_code, response.json(), match.group(1) if match else None


class TestRequest:
    def test_same_answer_for_known_and_unknown_emails(
        self, client: TestClient, caplog: pytest.LogCaptureFixture, db: Session, user: User
    ) -> None:
        known_status, known_body, token = request_link(client, caplog, user.email)
        unknown_status, unknown_body, no_token = request_link(client, caplog, "ghost@example.com")
        assert known_status == unknown_status == 202
        assert known_body == unknown_body
        assert token is not None
        assert no_token is None
        stored = db.exec(
            select(PasswordResetToken).where(PasswordResetToken.user_id == user.id)
        ).one()
        assert stored.token_hash == hash_token(token)
        assert stored.token_hash != token
        expires_in = stored.expires_at - utcnow()
        assert timedelta(minutes=59) < expires_in <= timedelta(minutes=60)

    def test_any_spelling_of_the_address_gets_the_link(
        self, client: TestClient, caplog: pytest.LogCaptureFixture, db: Session
    ) -> None:
        account = create_user(db, email="\u00e9lodie@b\u00fccher.example")
        status, _, token = request_link(client, caplog, "E\u0301LODIE@xn--bcher-kva.example")
        assert status == 202
        assert token is not None
        stored = db.exec(
            select(PasswordResetToken).where(PasswordResetToken.user_id == account.id)
        ).one()
        assert stored.token_hash == hash_token(token)

    def test_a_full_width_spelling_is_refused(self, client: TestClient, user: User) -> None:
        local, _, domain = user.email.partition("@")
        full_width = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in local)
        response = client.post(RECOVER, json={"email": f"{full_width}@{domain}"})
        assert response.status_code == 422

    def test_a_newer_link_voids_the_older_one(
        self, client: TestClient, caplog: pytest.LogCaptureFixture, user: User
    ) -> None:
        _, _, old = request_link(client, caplog, user.email)
        _, _, new = request_link(client, caplog, user.email)
        assert old is not None
        assert new is not None
        stale = client.post(RESET, json={"token": old, "new_password": NEW_PASSWORD})
        assert stale.status_code == 400
        assert (
            client.post(RESET, json={"token": new, "new_password": NEW_PASSWORD}).status_code == 200
        )

    def test_throttled_per_email(
        self, client: TestClient, caplog: pytest.LogCaptureFixture, db: Session, user: User
    ) -> None:
        statuses = [request_link(client, caplog, user.email)[0] for _ in range(4)]
        assert statuses == [202, 202, 202, 429]
        response = client.post(RECOVER, json={"email": user.email})
        assert int(response.headers["Retry-After"]) > 0
        assert response.json()["code"] == "rate_limited"
        issued = db.exec(
            select(PasswordResetToken).where(PasswordResetToken.user_id == user.id)
        ).all()
        assert len(issued) == 3


class TestReset:
    def test_sets_the_password_and_ends_every_session(
        self, client: TestClient, caplog: pytest.LogCaptureFixture, db: Session, user: User
    ) -> None:
        headers = auth_headers(db, user=user)
        _, _, token = request_link(client, caplog, user.email)
        response = client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD})
        assert response.status_code == 200
        assert client.get("/api/v1/users/me", headers=headers).status_code == 401
        login = client.post(
            "/api/v1/login/access-token", data={"username": user.email, "password": NEW_PASSWORD}
        )
        assert login.status_code == 200
        db.expire_all()
        sessions = db.exec(select(LoginSession).where(LoginSession.user_id == user.id)).all()
        assert len(sessions) == 2
        assert sum(s.revoked_at is None for s in sessions) == 1  # only the new login lives
        actions = db.exec(select(AuditEntry.action).where(AuditEntry.target_id == str(user.id)))
        assert {"password_reset.requested", "password.reset"} <= set(actions.all())

    def test_a_token_works_once(
        self, client: TestClient, caplog: pytest.LogCaptureFixture, user: User
    ) -> None:
        _, _, token = request_link(client, caplog, user.email)
        first = client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD})
        second = client.post(RESET, json={"token": token, "new_password": "yet another passphrase"})
        assert first.status_code == 200
        assert second.status_code == 400
        assert second.json()["code"] == "invalid_reset_token"

    def test_expired_token_is_refused(
        self, client: TestClient, caplog: pytest.LogCaptureFixture, db: Session, user: User
    ) -> None:
        _, _, token = request_link(client, caplog, user.email)
        row = db.exec(select(PasswordResetToken).where(PasswordResetToken.user_id == user.id)).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.add(row)
        db.commit()
        before = user.hashed_password
        response = client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD})
        assert response.status_code == 400
        db.refresh(user)
        assert user.hashed_password == before

    def test_a_password_change_voids_outstanding_links(
        self, client: TestClient, caplog: pytest.LogCaptureFixture, db: Session, user: User
    ) -> None:
        _, _, token = request_link(client, caplog, user.email)
        changed = client.patch(
            "/api/v1/users/me/password",
            headers=auth_headers(db, user=user),
            json={
                "current_password": "a long and unusual passphrase",
                "new_password": NEW_PASSWORD,
            },
        )
        assert changed.status_code == 200
        response = client.post(RESET, json={"token": token, "new_password": "other passphrase x"})
        assert response.status_code == 400

    def test_weak_new_password_is_422(self, client: TestClient) -> None:
        response = client.post(RESET, json={"token": "whatever", "new_password": "password1"})
        assert response.status_code == 422


@pytest.fixture
def server_url() -> Iterator[str]:
    """The app behind a real HTTP server, on its own pool of real sessions (committed
    rows) that wait a minute for a lock rather than the usual few seconds."""
    patient = create_db_engine(
        settings.model_copy(
            update={"SQLITE_BUSY_TIMEOUT_MS": 60_000, "DB_STATEMENT_TIMEOUT_MS": 60_000}
        )
    )

    app = create_app(settings)
    app.state.open_session = SessionFactory(patient)
    app.state.run_dispatcher = InlineDispatcher(
        llm=LLMClient(providers={}),
        storage=build_storage(settings),
        policy=RunPolicy.from_settings(settings),
        ingest_policy=IngestPolicy.from_settings(settings),
        session_factory=lambda: Session(patient, expire_on_commit=False),
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        patient.dispose()


@pytest.fixture
def committed_user() -> Iterator[User]:
    with Session(engine, expire_on_commit=False) as session:
        user = create_user(session)
    yield user
    with Session(engine) as session:
        session.execute(delete(AuditEntry).where(col(AuditEntry.target_id) == str(user.id)))
        session.execute(delete(User).where(col(User.id) == user.id))  # cascades
        session.commit()


@contextmanager
def writes_held() -> Iterator[Connection]:
    """No reset link can be written until the block ends: SQLite's one write lock, or
    PostgreSQL's lock on the table of links. Reads go on."""
    with engine.connect() as blocker:
        sqlite = blocker.dialect.name == "sqlite"
        driver = blocker.connection.driver_connection
        if sqlite:
            driver.isolation_level = None  # type: ignore[union-attr]
            blocker.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            blocker.begin()
            blocker.exec_driver_sql("LOCK TABLE password_reset_token IN SHARE ROW EXCLUSIVE MODE")
        try:
            yield blocker
        finally:
            if sqlite:
                blocker.exec_driver_sql("ROLLBACK")
                driver.isolation_level = ""  # type: ignore[union-attr]
            else:
                blocker.rollback()


def test_the_answer_comes_before_the_link_is_made_and_mailed(
    server_url: str, committed_user: User, mailbox: Mailbox
) -> None:
    """While nothing can be written, a request for a real account is still answered at
    once, exactly like one for an unknown address: the link is made and mailed after."""
    with writes_held() as blocker, httpx2.Client(base_url=server_url, timeout=30) as http:
        unknown = http.post("/password-recovery", json={"email": "nobody-here@example.com"})
        known = http.post("/password-recovery", json={"email": committed_user.email})
        assert known.status_code == unknown.status_code == 202
        assert known.json() == unknown.json()
        waiting = blocker.execute(
            select(PasswordResetToken).where(PasswordResetToken.user_id == committed_user.id)
        ).all()
        assert waiting == []
        assert mailbox.messages == []
    [mail] = mailbox.wait_for(1)
    assert mail["To"] == committed_user.email
    assert "/reset-password?token=" in body_of(mail)
    with Session(engine) as session:
        issued = session.exec(
            select(PasswordResetToken).where(PasswordResetToken.user_id == committed_user.id)
        ).all()
    assert len(issued) == 1
