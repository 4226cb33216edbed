import uuid

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from app.models.audit import AuditEntry
from app.models.auth import LoginSession, PasswordResetToken
from app.models.user import User
from tests.environment import settings
from tests.factories import PASSWORD, auth_headers, create_user
from tests.smtp_server import Mailbox, body_of

ME = "/api/v1/users/me"


def audit(db: Session, user: User, action: str) -> list[AuditEntry]:
    db.expire_all()
    statement = select(AuditEntry).where(
        AuditEntry.action == action, AuditEntry.target_id == str(user.id)
    )
    return list(db.exec(statement).all())


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
    def test_changes_my_name_without_the_password(
        self,
        client: TestClient,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        mailbox: Mailbox,
    ) -> None:
        response = client.patch(
            ME, headers=user_headers, json={"full_name": "Ada King", "email": user.email}
        )
        assert response.status_code == 200
        db.refresh(user)
        assert user.full_name == "Ada King"
        assert mailbox.messages == []
        [entry] = audit(db, user, "user.updated")
        assert entry.details == {"fields": ["email", "full_name"]}

    def test_changes_my_email_with_the_password_and_tells_the_old_address(
        self,
        client: TestClient,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        mailbox: Mailbox,
    ) -> None:
        old_email = user.email
        reset_link = client.post("/api/v1/password-recovery", json={"email": old_email})
        assert reset_link.status_code == 202
        response = client.patch(
            ME,
            headers=user_headers,
            json={"email": "ADA@Example.com", "current_password": PASSWORD},
        )
        assert response.status_code == 200
        assert response.json()["email"] == "ada@example.com"
        assert "current_password" not in response.json()
        db.refresh(user)
        assert user.email == "ada@example.com"
        _, notice = mailbox.wait_for(2)
        assert notice["To"] == old_email
        assert notice["Subject"] == "Your Agentry email address was changed"
        assert f"{old_email} to ada@example.com" in body_of(notice)
        [entry] = audit(db, user, "user.email_changed")
        assert entry.details == {
            "fields": ["email"],
            "old_email": old_email,
            "new_email": "ada@example.com",
        }
        assert (entry.actor_id, entry.request_id) == (user.id, response.headers["X-Request-ID"])
        # The link mailed to the old address no longer works.
        tokens = db.exec(select(PasswordResetToken).where(PasswordResetToken.user_id == user.id))
        assert [token.used_at is not None for token in tokens] == [True]

    def test_an_email_change_without_the_password_is_422(
        self,
        client: TestClient,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        mailbox: Mailbox,
    ) -> None:
        before = user.email
        response = client.patch(
            ME, headers=user_headers, json={"email": "thief@example.com", "full_name": "X"}
        )
        assert response.status_code == 422
        body = response.json()
        assert body["code"] == "current_password_required"
        assert [e["loc"] for e in body["errors"]] == [["body", "current_password"]]
        db.refresh(user)
        assert (user.email, user.full_name) == (before, "Ada Lovelace")
        assert mailbox.messages == []

    def test_an_email_change_with_a_wrong_password_is_400_and_recorded(
        self,
        client: TestClient,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        mailbox: Mailbox,
    ) -> None:
        before = user.email
        response = client.patch(
            ME,
            headers=user_headers,
            json={"email": "thief@example.com", "current_password": "a lucky guess"},
        )
        assert response.status_code == 400
        assert response.json()["code"] == "incorrect_password"
        db.refresh(user)
        assert user.email == before
        assert mailbox.messages == []
        [entry] = audit(db, user, "password.check_failed")
        assert entry.details == {"purpose": "email_change"}

    def test_wrong_passwords_for_an_email_change_count_against_the_password_throttle(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        def change(password: str) -> int:
            body = {"email": "thief@example.com", "current_password": password}
            return client.patch(ME, headers=user_headers, json=body).status_code

        limit = settings.PASSWORD_CHANGE_MAX_FAILURES
        assert [change(f"guess {i}") for i in range(limit)] == [400] * limit
        locked = client.patch(
            ME,
            headers=user_headers,
            json={"email": "thief@example.com", "current_password": PASSWORD},
        )
        assert locked.status_code == 429
        assert 0 < int(locked.headers["Retry-After"]) <= settings.PASSWORD_CHANGE_WINDOW_SECONDS
        # One counter per account: the password change is locked too.
        password = client.patch(
            f"{ME}/password",
            headers=user_headers,
            json={"current_password": PASSWORD, "new_password": "another fine passphrase"},
        )
        assert password.status_code == 429
        db.refresh(user)
        assert user.email != "thief@example.com"

    def test_right_passwords_do_not_use_up_the_throttle(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        for i in range(settings.PASSWORD_CHANGE_MAX_FAILURES + 2):
            body = {"email": f"ada-{i}@example.com", "current_password": PASSWORD}
            assert client.patch(ME, headers=user_headers, json=body).status_code == 200
        db.refresh(user)
        assert user.email == f"ada-{settings.PASSWORD_CHANGE_MAX_FAILURES + 1}@example.com"

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
        response = client.patch(
            ME, headers=user_headers, json={"email": other.email, "current_password": PASSWORD}
        )
        assert response.status_code == 409
        assert response.json()["code"] == "email_taken"
        db.refresh(user)
        assert user.email != other.email

    def test_invalid_email_is_422(self, client: TestClient, user_headers: dict[str, str]) -> None:
        response = client.patch(ME, headers=user_headers, json={"email": "not-an-email"})
        assert response.status_code == 422

    @pytest.mark.parametrize(
        ("taken", "given", "status"),
        [
            ("elodie@example.com", "\uff45lodie@example.com", 422),  # full-width e
            ("file@example.com", "\ufb01le@example.com", 422),  # the "fi" ligature
            ("\u00e9lodie@example.com", "E\u0301LODIE@EXAMPLE.COM", 409),  # NFD, upper case
            ("ada@b\u00fccher.example", "ADA@xn--bcher-kva.example", 409),  # punycode
        ],
        ids=["full-width", "ligature", "decomposed", "punycode"],
    )
    def test_another_spelling_of_a_taken_address_is_refused(
        self,
        client: TestClient,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        taken: str,
        given: str,
        status: int,
    ) -> None:
        create_user(db, email=taken)
        response = client.patch(
            ME, headers=user_headers, json={"email": given, "current_password": PASSWORD}
        )
        assert response.status_code == status
        if status == 409:
            assert response.json()["code"] == "email_taken"
        db.refresh(user)
        assert user.email.startswith("user-")


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

    def test_five_wrong_current_passwords_lock_it_even_for_the_right_one(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        def change(current: str) -> httpx2.Response:
            body = {"current_password": current, "new_password": "another fine passphrase"}
            return client.patch(f"{ME}/password", headers=user_headers, json=body)

        limit = settings.PASSWORD_CHANGE_MAX_FAILURES
        assert [change(f"guess {i}").status_code for i in range(limit)] == [400] * limit
        locked = change(PASSWORD)
        assert locked.status_code == 429
        assert locked.json()["code"] == "rate_limited"
        assert 0 < int(locked.headers["Retry-After"]) <= settings.PASSWORD_CHANGE_WINDOW_SECONDS
        before = user.hashed_password
        db.refresh(user)
        assert user.hashed_password == before
        entries = audit(db, user, "password.check_failed")
        assert [e.details for e in entries] == [{"purpose": "password_change"}] * limit

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

    def test_ten_sign_ups_an_hour_from_one_address_then_429(
        self, client: TestClient, db: Session
    ) -> None:
        def sign_up(i: int) -> httpx2.Response:
            body = {"email": f"burst-{i}@example.com", "password": PASSWORD}
            return client.post("/api/v1/users/signup", json=body)

        limit = settings.SIGNUP_MAX_PER_IP
        assert [sign_up(i).status_code for i in range(limit)] == [201] * limit
        refused = sign_up(limit)
        assert refused.status_code == 429
        assert refused.json()["code"] == "rate_limited"
        assert 0 < int(refused.headers["Retry-After"]) <= settings.SIGNUP_WINDOW_SECONDS
        made = db.exec(select(User).where(col(User.email).like("burst-%@example.com"))).all()
        assert len(made) == limit

    def test_refused_sign_ups_count_too(self, client: TestClient, user: User) -> None:
        # Otherwise 409s would tell, without limit, who has an account here.
        body = {"email": user.email, "password": PASSWORD}
        statuses = [
            client.post("/api/v1/users/signup", json=body).status_code
            for _ in range(settings.SIGNUP_MAX_PER_IP + 1)
        ]
        assert statuses == [409] * settings.SIGNUP_MAX_PER_IP + [429]

    @pytest.mark.parametrize(
        ("given", "status"),
        [
            ("\uff41da@example.com", 422),  # full-width a
            ("A\u0064a@EXAMPLE.com", 409),
            ("ada@EXAMPLE.com.", 422),
        ],
        ids=["full-width", "upper-case", "trailing-dot"],
    )
    def test_another_spelling_of_a_taken_address_is_refused(
        self, client: TestClient, db: Session, given: str, status: int
    ) -> None:
        create_user(db, email="ada@example.com")
        response = client.post("/api/v1/users/signup", json={"email": given, "password": PASSWORD})
        assert response.status_code == status
        assert db.exec(select(User).where(User.email != "ada@example.com")).all() == []

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
