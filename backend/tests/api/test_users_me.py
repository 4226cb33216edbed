import uuid

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.core.config import settings
from app.models.audit import AuditEntry
from app.models.auth import LoginSession
from app.models.user import User
from tests.factories import PASSWORD, auth_headers, create_user

ME = "/api/v1/users/me"


def login(client: TestClient, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post(
        "/api/v1/login/access-token", data={"username": email, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


class TestReadMe:
    def test_anonymous_is_401(self, client: TestClient) -> None:
        assert client.get(ME).status_code == 401

    def test_returns_my_account_without_secrets(
        self, client: TestClient, user: User, user_headers: dict[str, str]
    ) -> None:
        response = client.get(ME, headers=user_headers)
        assert response.status_code == 200
        body = response.json()
        assert body["id"] == str(user.id)
        assert body["email"] == user.email
        assert body["full_name"] == "Ada Lovelace"
        assert "hashed_password" not in body
        assert "password" not in response.text
        assert response.headers["Cache-Control"] == "no-store"


class TestUpdateMe:
    def test_changes_name_and_email(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        response = client.patch(
            ME, headers=user_headers, json={"full_name": "Ada King", "email": "ADA@Example.com"}
        )
        assert response.status_code == 200
        assert response.json()["email"] == "ada@example.com"
        db.refresh(user)
        assert (user.full_name, user.email) == ("Ada King", "ada@example.com")

    def test_cannot_make_myself_superuser(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        response = client.patch(ME, headers=user_headers, json={"is_superuser": True})
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["body", "is_superuser"]
        db.refresh(user)
        assert user.is_superuser is False

    def test_duplicate_email_is_409(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        other = create_user(db)
        response = client.patch(ME, headers=user_headers, json={"email": other.email})
        assert response.status_code == 409
        assert response.json()["code"] == "email_taken"
        db.refresh(user)
        assert user.email != other.email

    def test_invalid_email_is_422(self, client: TestClient, user_headers: dict[str, str]) -> None:
        response = client.patch(ME, headers=user_headers, json={"email": "not-an-email"})
        assert response.status_code == 422


class TestChangePassword:
    def test_changes_it_and_ends_my_other_sessions(
        self, client: TestClient, db: Session, user: User
    ) -> None:
        current = login(client, user.email)
        other = login(client, user.email)
        response = client.patch(
            f"{ME}/password",
            headers=current,
            json={"current_password": PASSWORD, "new_password": "another fine passphrase"},
        )
        assert response.status_code == 200
        assert client.get(ME, headers=current).status_code == 200
        assert client.get(ME, headers=other).status_code == 401
        login(client, user.email, "another fine passphrase")
        db.expire_all()
        assert db.exec(
            select(AuditEntry).where(
                AuditEntry.action == "password.changed", AuditEntry.target_id == str(user.id)
            )
        ).one().details == {"sessions_revoked": 1}

    def test_wrong_current_password_is_400(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        before = user.hashed_password
        response = client.patch(
            f"{ME}/password",
            headers=user_headers,
            json={"current_password": "wrong one", "new_password": "another fine passphrase"},
        )
        assert response.status_code == 400
        assert response.json()["code"] == "incorrect_password"
        db.refresh(user)
        assert user.hashed_password == before

    @pytest.mark.parametrize(
        "new_password", ["short", "x" * 129, "password123", "PassWord123", "qwertyuiop"]
    )
    def test_weak_passwords_are_422(
        self, client: TestClient, user_headers: dict[str, str], new_password: str
    ) -> None:
        response = client.patch(
            f"{ME}/password",
            headers=user_headers,
            json={"current_password": PASSWORD, "new_password": new_password},
        )
        assert response.status_code == 422

    def test_long_passwords_are_not_truncated(self, client: TestClient, db: Session) -> None:
        long_password = "y" * 120 + "z" * 8
        account = create_user(db, password=long_password)
        login(client, account.email, long_password)
        response = client.post(
            "/api/v1/login/access-token",
            data={"username": account.email, "password": "y" * 120 + "z" * 7 + "q"},
        )
        assert response.status_code == 401


class TestSessions:
    def test_lists_mine_with_the_current_one_marked(self, client: TestClient, user: User) -> None:
        first = login(client, user.email)
        login(client, user.email)
        response = client.get(f"{ME}/sessions", headers=first)
        assert response.status_code == 200
        sessions = response.json()["data"]
        assert len(sessions) == 2
        assert [s["is_current"] for s in sessions].count(True) == 1
        assert set(sessions[0]) == {
            "id",
            "created_at",
            "last_used_at",
            "user_agent",
            "ip",
            "is_current",
        }
        assert sessions[0]["user_agent"] == "testclient"

    def test_revoking_one_stops_its_tokens(
        self, client: TestClient, db: Session, user: User
    ) -> None:
        keeper = login(client, user.email)
        doomed = login(client, user.email)
        doomed_id = next(
            s["id"]
            for s in client.get(f"{ME}/sessions", headers=doomed).json()["data"]
            if s["is_current"]
        )
        response = client.delete(f"{ME}/sessions/{doomed_id}", headers=keeper)
        assert response.status_code == 204
        assert client.get(ME, headers=doomed).status_code == 401
        assert client.get(ME, headers=keeper).status_code == 200
        db.expire_all()
        assert db.get(LoginSession, uuid.UUID(doomed_id)).revoked_at is not None  # type: ignore[union-attr]

    def test_someone_elses_session_is_404_and_stays(
        self, client: TestClient, db: Session, user_headers: dict[str, str]
    ) -> None:
        other = create_user(db)
        other_headers = login(client, other.email)
        other_session = client.get(f"{ME}/sessions", headers=other_headers).json()["data"][0]
        response = client.delete(f"{ME}/sessions/{other_session['id']}", headers=user_headers)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        assert client.get(ME, headers=other_headers).status_code == 200


class TestSignup:
    def test_creates_an_account(self, client: TestClient, db: Session) -> None:
        response = client.post(
            "/api/v1/users/signup",
            json={"email": "New@Example.com", "password": PASSWORD, "full_name": "New"},
        )
        assert response.status_code == 201
        assert response.json()["email"] == "new@example.com"
        assert response.json()["is_superuser"] is False
        stored = db.exec(select(User).where(User.email == "new@example.com")).one()
        assert stored.hashed_password.startswith("$argon2id$")

    def test_duplicate_is_409(self, client: TestClient, user: User) -> None:
        response = client.post(
            "/api/v1/users/signup", json={"email": user.email.upper(), "password": PASSWORD}
        )
        assert response.status_code == 409
        assert response.json()["code"] == "email_taken"

    def test_cannot_sign_up_as_superuser(self, client: TestClient, db: Session) -> None:
        response = client.post(
            "/api/v1/users/signup",
            json={"email": "sneaky@example.com", "password": PASSWORD, "is_superuser": True},
        )
        assert response.status_code == 422
        assert db.exec(select(User).where(User.email == "sneaky@example.com")).first() is None

    def test_closed_signup_is_403(
        self, client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(settings, "OPEN_SIGNUP", False)
        response = client.post(
            "/api/v1/users/signup", json={"email": "late@example.com", "password": PASSWORD}
        )
        assert response.status_code == 403
        assert response.json()["code"] == "signup_closed"
        assert db.exec(select(User).where(User.email == "late@example.com")).first() is None


class TestDeleteMe:
    def test_deletes_me_and_my_sessions_but_not_the_audit_trail(
        self, client: TestClient, db: Session, user: User
    ) -> None:
        headers = login(client, user.email)
        user_id, email = user.id, user.email
        assert client.delete(ME, headers=headers).status_code == 204
        db.expire_all()
        assert db.get(User, user_id) is None
        assert db.exec(select(LoginSession).where(LoginSession.user_id == user_id)).all() == []
        deleted = db.exec(select(AuditEntry).where(AuditEntry.action == "user.deleted")).one()
        assert (deleted.actor_id, deleted.actor_email) == (user_id, email)
        assert client.get(ME, headers=headers).status_code == 401

    def test_superuser_cannot_delete_themselves(
        self, client: TestClient, db: Session, superuser: User
    ) -> None:
        response = client.delete(ME, headers=auth_headers(db, user=superuser))
        assert response.status_code == 403
        assert response.json()["code"] == "cannot_modify_self"
        db.expire_all()
        assert db.get(User, superuser.id) is not None
