import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Connection
from sqlmodel import Session, col, select

from app.core.db import SessionFactory, utcnow
from app.core.security import ALGORITHM, PRODUCTION_ARGON2, hash_token, password_context
from app.models.audit import AuditEntry
from app.models.auth import LoginSession, RefreshToken
from app.models.user import User
from tests.environment import engine, settings
from tests.factories import PASSWORD, auth_headers, create_login_session, create_user

LOGIN = "/api/v1/login/access-token"
REFRESH = "/api/v1/login/refresh"
ME = "/api/v1/users/me"


def login(client: TestClient, email: str, password: str = PASSWORD) -> Any:
    return client.post(LOGIN, data={"username": email, "password": password})


def audit_actions(db: Session, user: User) -> list[str]:
    db.expire_all()
    rows = db.exec(select(AuditEntry).where(AuditEntry.target_id == str(user.id))).all()
    return [row.action for row in rows]


class TestLogin:
    def test_success_returns_a_token_pair_and_records_the_session(
        self, client: TestClient, db: Session, user: User
    ) -> None:
        response = login(client, user.email.upper())
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == settings.ACCESS_TOKEN_EXPIRE_MINUTES * 60
        assert response.headers["Cache-Control"] == "no-store"
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["sub"] == str(user.id)
        assert claims["type"] == "access"
        assert {"exp", "iat", "nbf", "jti", "iss", "aud", "sid"} <= set(claims)
        db.expire_all()
        stored = db.get(LoginSession, uuid.UUID(claims["sid"]))
        assert stored is not None
        assert stored.user_id == user.id
        token_row = db.exec(
            select(RefreshToken).where(RefreshToken.token_hash == hash_token(body["refresh_token"]))
        ).one()
        assert token_row.session_id == stored.id
        assert db.get(User, user.id).last_login_at is not None  # type: ignore[union-attr]
        assert "login.succeeded" in audit_actions(db, user)
        assert client.get(ME, headers={"Authorization": f"Bearer {body['access_token']}"}).json()[
            "id"
        ] == str(user.id)

    def test_wrong_password_and_unknown_email_answer_alike(
        self, client: TestClient, db: Session, user: User
    ) -> None:
        wrong = login(client, user.email, "not the password at all")
        unknown = login(client, "nobody-here@example.com", "not the password at all")
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.headers["WWW-Authenticate"] == "Bearer"
        wrong_body, unknown_body = wrong.json(), unknown.json()
        assert wrong_body.pop("request_id") != unknown_body.pop("request_id")
        assert wrong_body == unknown_body
        assert wrong.json()["code"] == "invalid_credentials"
        assert audit_actions(db, user) == ["login.failed"]

    @pytest.mark.parametrize(
        "spelling",
        [
            "\u00c9LODIE@B\u00dcCHER.example",  # upper case
            "E\u0301lodie@bu\u0308cher.example",  # decomposed (NFD)
            "\u00e9lodie@xn--bcher-kva.example",  # the domain in punycode
            "  \u00e9lodie@b\u00fccher.example ",  # blanks around it
        ],
        ids=["upper-case", "decomposed", "punycode", "blanks"],
    )
    def test_any_spelling_sign_up_accepts_finds_the_account(
        self, client: TestClient, spelling: str
    ) -> None:
        signed_up = client.post(
            "/api/v1/users/signup",
            json={"email": "\u00c9lodie@B\u00fccher.example", "password": PASSWORD},
        )
        assert signed_up.status_code == 201
        assert signed_up.json()["email"] == "\u00e9lodie@b\u00fccher.example"
        assert login(client, spelling).status_code == 200

    def test_a_full_width_spelling_is_another_address(
        self, client: TestClient, db: Session, user: User
    ) -> None:
        local, _, domain = user.email.partition("@")
        full_width = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in local)
        response = login(client, f"{full_width}@{domain}")
        assert response.status_code == 401
        assert audit_actions(db, user) == []

    def test_deactivated_account_is_403_with_its_own_code(
        self, client: TestClient, db: Session
    ) -> None:
        inactive = create_user(db, is_active=False)
        response = login(client, inactive.email)
        assert response.status_code == 403
        assert response.json()["code"] == "account_inactive"
        assert db.exec(select(LoginSession).where(LoginSession.user_id == inactive.id)).all() == []

    def test_unknown_form_fields_and_huge_passwords_are_422(
        self, client: TestClient, user: User
    ) -> None:
        extra = client.post(
            LOGIN, data={"username": user.email, "password": PASSWORD, "is_superuser": "true"}
        )
        huge = client.post(LOGIN, data={"username": user.email, "password": "x" * 129})
        assert extra.status_code == huge.status_code == 422

    def test_bcrypt_hash_verifies_and_is_upgraded(self, client: TestClient, db: Session) -> None:
        legacy = create_user(db)
        legacy.hashed_password = password_context(settings).handler("bcrypt").hash(PASSWORD)
        db.add(legacy)
        db.commit()
        assert login(client, legacy.email).status_code == 200
        db.refresh(legacy)
        assert legacy.hashed_password.startswith("$argon2id$")


def test_production_hashing_parameters() -> None:
    production = password_context(settings.model_copy(update={"ENVIRONMENT": "production"}))
    hashed = production.hash("correct horse battery staple")
    memory, passes = PRODUCTION_ARGON2
    assert hashed.startswith(f"$argon2id$v=19$m={memory},t={passes},p=1$")
    assert production.verify("correct horse battery staple", hashed)
    assert not production.verify("correct horse battery stapler", hashed)


def _token(user: User, session_id: uuid.UUID, **overrides: Any) -> str:
    now = utcnow()
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "sid": str(session_id),
        "type": "access",
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
    }
    # Times are given relative to now: parameters are built long before the test runs.
    claims.update({k: now + v if isinstance(v, timedelta) else v for k, v in overrides.items()})
    key = claims.pop("_key", settings.secret_key)
    algorithm = claims.pop("_alg", ALGORITHM)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=algorithm)


class TestAccessTokens:
    @pytest.fixture
    def session_id(self, db: Session, user: User) -> uuid.UUID:
        return create_login_session(db, user=user).id

    def test_a_well_formed_token_is_accepted(
        self, client: TestClient, user: User, session_id: uuid.UUID
    ) -> None:
        response = client.get(ME, headers={"Authorization": f"Bearer {_token(user, session_id)}"})
        assert response.status_code == 200
        assert response.json()["email"] == user.email

    @pytest.mark.parametrize(
        "overrides",
        [
            {"_alg": "none", "_key": None},
            {"_key": "a-different-key-that-is-long-enough-to-use"},
            {"exp": timedelta(seconds=-1)},
            {"nbf": timedelta(minutes=1)},
            {"aud": "someone-else"},
            {"iss": "someone-else"},
            {"type": "refresh"},
            {"jti": None},
            {"sid": None},
            {"sub": "not-a-uuid"},
        ],
        ids=[
            "alg-none",
            "wrong-key",
            "expired",
            "not-yet-valid",
            "audience",
            "issuer",
            "type",
            "missing-jti",
            "missing-sid",
            "bad-sub",
        ],
    )
    def test_bad_tokens_are_401_with_the_error_body(
        self, client: TestClient, user: User, session_id: uuid.UUID, overrides: dict[str, Any]
    ) -> None:
        token = _token(user, session_id, **overrides)
        response = client.get(ME, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["code"] == "invalid_token"

    def test_a_token_accepted_before_is_refused_once_it_expires(
        self, client: TestClient, user: User, session_id: uuid.UUID
    ) -> None:
        """Verified tokens are remembered; their expiry is checked on every request."""
        headers = {"Authorization": f"Bearer {_token(user, session_id, exp=timedelta(seconds=2))}"}
        assert client.get(ME, headers=headers).status_code == 200
        assert client.get(ME, headers=headers).status_code == 200
        time.sleep(2.1)  # claims are whole seconds: valid for 1 to 2 s from now
        response = client.get(ME, headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_token"

    def test_a_token_not_valid_yet_is_accepted_once_it_is(
        self, client: TestClient, user: User, session_id: uuid.UUID
    ) -> None:
        """A refusal is not remembered."""
        headers = {"Authorization": f"Bearer {_token(user, session_id, nbf=timedelta(seconds=2))}"}
        assert client.get(ME, headers=headers).status_code == 401
        time.sleep(2.1)  # claims are whole seconds: valid 1 to 2 s from now
        assert client.get(ME, headers=headers).status_code == 200

    def test_missing_token_is_401(self, client: TestClient) -> None:
        response = client.get(ME)
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_token"

    def test_token_in_query_string_is_ignored(
        self, client: TestClient, user: User, session_id: uuid.UUID
    ) -> None:
        response = client.get(f"{ME}?access_token={_token(user, session_id)}")
        assert response.status_code == 401

    def test_refresh_token_is_not_an_access_token(self, client: TestClient, user: User) -> None:
        pair = login(client, user.email).json()
        response = client.get(ME, headers={"Authorization": f"Bearer {pair['refresh_token']}"})
        assert response.status_code == 401

    def test_token_of_a_deleted_user_is_401(
        self, client: TestClient, db: Session, user: User
    ) -> None:
        headers = auth_headers(db, user=user)
        db.delete(user)
        db.commit()
        response = client.get(ME, headers=headers)
        assert response.status_code == 401


class TestRefresh:
    def test_rotation_issues_a_new_pair_and_spends_the_old_token(
        self, client: TestClient, db: Session, user: User
    ) -> None:
        first = login(client, user.email).json()
        response = client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
        assert response.status_code == 200
        second = response.json()
        assert second["refresh_token"] != first["refresh_token"]
        db.expire_all()
        old = db.exec(
            select(RefreshToken).where(
                RefreshToken.token_hash == hash_token(first["refresh_token"])
            )
        ).one()
        assert old.rotated_at is not None
        headers = {"Authorization": f"Bearer {second['access_token']}"}
        assert client.get(ME, headers=headers).status_code == 200

    def test_reuse_of_a_rotated_token_revokes_the_session(
        self, client: TestClient, db: Session, user: User
    ) -> None:
        first = login(client, user.email).json()
        second = client.post(REFRESH, json={"refresh_token": first["refresh_token"]}).json()
        replay = client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
        assert replay.status_code == 401
        assert replay.json()["code"] == "refresh_token_reused"
        # Everything from that session is dead now, the newest pair included.
        headers = {"Authorization": f"Bearer {second['access_token']}"}
        assert client.get(ME, headers=headers).status_code == 401
        again = client.post(REFRESH, json={"refresh_token": second["refresh_token"]})
        assert again.status_code == 401
        assert "refresh_token.reused" in audit_actions(db, user)

    def test_access_token_is_not_a_refresh_token(self, client: TestClient, user: User) -> None:
        pair = login(client, user.email).json()
        response = client.post(REFRESH, json={"refresh_token": pair["access_token"]})
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_refresh_token"

    def test_expired_refresh_token_is_401(
        self, client: TestClient, db: Session, user: User
    ) -> None:
        pair = login(client, user.email).json()
        row = db.exec(
            select(RefreshToken).where(RefreshToken.token_hash == hash_token(pair["refresh_token"]))
        ).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.add(row)
        db.commit()
        response = client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_refresh_token"


class TestLogout:
    def test_logout_ends_the_session_at_once(
        self, client: TestClient, db: Session, user: User
    ) -> None:
        pair = login(client, user.email).json()
        headers = {"Authorization": f"Bearer {pair['access_token']}"}
        assert client.post("/api/v1/login/logout", headers=headers).status_code == 204
        assert client.get(ME, headers=headers).status_code == 401
        refreshed = client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 401
        assert "logout" in audit_actions(db, user)

    def test_an_ended_session_is_401_before_its_input_is_looked_at(
        self, client: TestClient, user: User
    ) -> None:
        """Authentication, the login session's state included, comes before input
        validation: an ended session learns nothing about what its input should be."""
        pair = login(client, user.email).json()
        headers = {"Authorization": f"Bearer {pair['access_token']}"}
        invalid = {"name": 42, "unknown": True}
        assert client.post("/api/v1/agents", headers=headers, json=invalid).status_code == 422
        assert client.post("/api/v1/login/logout", headers=headers).status_code == 204

        ended = client.post("/api/v1/agents", headers=headers, json=invalid)
        unsigned = client.post(
            "/api/v1/agents", headers={"Authorization": "Bearer nope"}, json=invalid
        )

        assert (ended.status_code, ended.json()["code"]) == (401, "session_revoked")
        assert (unsigned.status_code, unsigned.json()["code"]) == (401, "invalid_token")


@pytest.mark.skipif(engine.dialect.name != "postgresql", reason="needs concurrent writers")
def test_concurrent_refreshes_with_one_token_let_exactly_one_through(
    app: FastAPI, connection: Connection
) -> None:
    """Two threads, two real connections, one refresh token: one rotation wins."""
    with Session(engine, expire_on_commit=False) as setup:
        user = create_user(setup)
    try:
        app.state.open_session = SessionFactory(engine)  # real, committed for real
        with TestClient(app) as client:
            token = login(client, user.email).json()["refresh_token"]
            barrier = threading.Barrier(2)
            statuses: list[int] = []

            def refresh() -> None:
                barrier.wait()
                statuses.append(client.post(REFRESH, json={"refresh_token": token}).status_code)

            threads = [threading.Thread(target=refresh) for _ in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert sorted(statuses) == [200, 401]
        with Session(engine) as check:
            rows = check.exec(
                select(RefreshToken)
                .join(LoginSession, col(LoginSession.id) == RefreshToken.session_id)
                .where(LoginSession.user_id == user.id)
            ).all()
            assert len(rows) == 2  # the login's token, rotated once; the loser added nothing
    finally:
        with Session(engine) as cleanup:
            cleanup.delete(cleanup.get(User, user.id))
            cleanup.commit()
