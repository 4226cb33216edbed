import logging
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.core.db import utcnow
from app.core.security import hash_token
from app.models.audit import AuditEntry
from app.models.auth import LoginSession, PasswordResetToken
from app.models.user import User
from tests.factories import auth_headers

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
