import threading
import uuid

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import Session, col, select

from app.core.db import SessionFactory
from app.models.audit import AuditEntry
from app.models.auth import LoginSession
from app.models.user import User
from tests.environment import engine
from tests.factories import PASSWORD, auth_headers, create_user
from tests.smtp_server import Mailbox, body_of

USERS = "/api/v1/users"


class TestListUsers:
    def test_anonymous_401_and_regular_user_403(
        self, client: TestClient, user_headers: dict[str, str]
    ) -> None:
        assert client.get(USERS).status_code == 401
        response = client.get(USERS, headers=user_headers)
        assert response.status_code == 403
        assert response.json()["code"] == "superuser_required"

    def test_filters_sorts_and_pages(
        self, client: TestClient, db: Session, superuser_headers: dict[str, str]
    ) -> None:
        tag = uuid.uuid4().hex[:8]
        for name in ("Charlie", "alice", "Bob"):
            create_user(db, email=f"{name.lower()}-{tag}@example.com", full_name=f"{name} {tag}")
        create_user(db, email=f"dora-{tag}@example.com", is_active=False)
        response = client.get(
            USERS,
            headers=superuser_headers,
            params={"q": tag.upper(), "is_active": True, "sort": "full_name", "limit": 2},
        )
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == 3
        assert [u["full_name"] for u in body["data"]] == [f"alice {tag}", f"Bob {tag}"]
        second = client.get(
            USERS,
            headers=superuser_headers,
            params={"q": tag, "is_active": True, "sort": "full_name", "skip": 2},
        ).json()
        assert [u["full_name"] for u in second["data"]] == [f"Charlie {tag}"]

    @pytest.mark.parametrize(
        "q",
        ["ÉLODIE", "élodie", "\u0394\u0397\u039c\u0397\u03a4\u03a1\u0391"],  # Greek capitals
        ids=["latin-upper", "latin-lower", "greek-upper"],
    )
    def test_search_ignores_case_beyond_ascii(
        self, client: TestClient, db: Session, superuser_headers: dict[str, str], q: str
    ) -> None:
        wanted = create_user(db, full_name="Élodie \u0394\u03b7\u03bc\u03b7\u03c4\u03c1\u03b1")
        create_user(db, full_name="Elodie Demetra")
        response = client.get(USERS, headers=superuser_headers, params={"q": q})
        assert [u["id"] for u in response.json()["data"]] == [str(wanted.id)]

    def test_like_wildcards_in_q_are_literal(
        self, client: TestClient, superuser_headers: dict[str, str]
    ) -> None:
        response = client.get(USERS, headers=superuser_headers, params={"q": "%"})
        assert response.json()["count"] == 0

    @pytest.mark.parametrize(
        "params",
        [{"limit": 0}, {"limit": 101}, {"skip": -1}, {"sort": "hashed_password"}, {"sort": "-id"}],
    )
    def test_bad_paging_is_422(
        self, client: TestClient, superuser_headers: dict[str, str], params: dict[str, str | int]
    ) -> None:
        response = client.get(USERS, headers=superuser_headers, params=params)
        assert response.status_code == 422
        assert response.json()["code"] == "validation_error"


class TestCreateUser:
    def test_superuser_creates_a_superuser(
        self, client: TestClient, db: Session, superuser: User, superuser_headers: dict[str, str]
    ) -> None:
        response = client.post(
            USERS,
            headers=superuser_headers,
            json={"email": "ops@example.com", "password": PASSWORD, "is_superuser": True},
        )
        assert response.status_code == 201
        created = db.exec(select(User).where(User.email == "ops@example.com")).one()
        assert created.is_superuser
        entry = db.exec(select(AuditEntry).where(AuditEntry.action == "user.created")).one()
        assert (entry.actor_id, entry.target_id) == (superuser.id, str(created.id))
        assert entry.request_id == response.headers["X-Request-ID"]
        assert PASSWORD not in str(entry.details)

    def test_regular_user_cannot(
        self, client: TestClient, db: Session, user_headers: dict[str, str]
    ) -> None:
        response = client.post(
            USERS, headers=user_headers, json={"email": "x@example.com", "password": PASSWORD}
        )
        assert response.status_code == 403
        assert db.exec(select(User).where(User.email == "x@example.com")).first() is None

    def test_duplicate_is_409(
        self, client: TestClient, user: User, superuser_headers: dict[str, str]
    ) -> None:
        response = client.post(
            USERS, headers=superuser_headers, json={"email": user.email, "password": PASSWORD}
        )
        assert response.status_code == 409

    @pytest.mark.parametrize(
        ("given", "status"),
        [
            ("E\u0301LODIE@xn--bcher-kva.example", 409),  # decomposed, upper case, punycode
            ("\uff45lodie@b\u00fccher.example", 422),  # a full-width e
        ],
        ids=["another-spelling", "full-width"],
    )
    def test_an_address_that_reads_like_a_taken_one_is_refused(
        self,
        client: TestClient,
        db: Session,
        superuser_headers: dict[str, str],
        given: str,
        status: int,
    ) -> None:
        taken = create_user(db, email="\u00e9lodie@b\u00fccher.example")
        response = client.post(
            USERS, headers=superuser_headers, json={"email": given, "password": PASSWORD}
        )
        assert response.status_code == status
        if status == 409:
            assert response.json()["code"] == "email_taken"
        others = db.exec(select(User).where(col(User.email).like("%b\u00fccher%"))).all()
        assert [u.id for u in others] == [taken.id]


class TestReadUser:
    def test_superuser_reads_anyone_and_unknown_is_404(
        self, client: TestClient, user: User, superuser_headers: dict[str, str]
    ) -> None:
        assert client.get(f"{USERS}/{user.id}", headers=superuser_headers).json()["id"] == str(
            user.id
        )
        missing = client.get(f"{USERS}/{uuid.uuid4()}", headers=superuser_headers)
        assert missing.status_code == 404
        assert missing.json()["code"] == "not_found"

    def test_regular_user_gets_403_even_for_themselves(
        self, client: TestClient, user: User, user_headers: dict[str, str]
    ) -> None:
        assert client.get(f"{USERS}/{user.id}", headers=user_headers).status_code == 403


class TestUpdateUser:
    def test_deactivation_revokes_every_session(
        self, client: TestClient, db: Session, user: User, superuser_headers: dict[str, str]
    ) -> None:
        headers = auth_headers(db, user=user)
        response = client.patch(
            f"{USERS}/{user.id}", headers=superuser_headers, json={"is_active": False}
        )
        assert response.status_code == 200
        assert response.json()["is_active"] is False
        assert client.get("/api/v1/users/me", headers=headers).status_code == 401
        db.expire_all()
        sessions = db.exec(select(LoginSession).where(LoginSession.user_id == user.id)).all()
        assert sessions
        assert all(s.revoked_at is not None for s in sessions)
        assert db.exec(select(AuditEntry).where(AuditEntry.action == "user.deactivated")).one()

    def test_demotion_revokes_every_session(
        self, client: TestClient, db: Session, superuser_headers: dict[str, str]
    ) -> None:
        other_admin = create_user(db, is_superuser=True)
        headers = auth_headers(db, user=other_admin)
        response = client.patch(
            f"{USERS}/{other_admin.id}", headers=superuser_headers, json={"is_superuser": False}
        )
        assert response.status_code == 200
        assert response.json()["is_superuser"] is False
        assert client.get("/api/v1/users/me", headers=headers).status_code == 401
        db.refresh(other_admin)
        assert other_admin.is_superuser is False

    def test_new_password_works_old_sessions_end_and_the_user_is_told(
        self,
        client: TestClient,
        db: Session,
        user: User,
        superuser_headers: dict[str, str],
        mailbox: Mailbox,
    ) -> None:
        headers = auth_headers(db, user=user)
        response = client.patch(
            f"{USERS}/{user.id}",
            headers=superuser_headers,
            json={"password": "a brand new passphrase"},
        )
        assert response.status_code == 200
        assert client.get("/api/v1/users/me", headers=headers).status_code == 401
        login = client.post(
            "/api/v1/login/access-token",
            data={"username": user.email, "password": "a brand new passphrase"},
        )
        assert login.status_code == 200
        [notice] = mailbox.messages
        assert notice["To"] == user.email
        assert notice["Subject"] == "Your Agentry password was set by an administrator"
        assert "a brand new passphrase" not in notice.as_string()
        assert "every session of the account was ended" in body_of(notice)

    def test_setting_my_own_password_sends_no_notice(
        self,
        client: TestClient,
        superuser: User,
        superuser_headers: dict[str, str],
        mailbox: Mailbox,
    ) -> None:
        response = client.patch(
            f"{USERS}/{superuser.id}",
            headers=superuser_headers,
            json={"password": "a brand new passphrase"},
        )
        assert response.status_code == 200
        assert mailbox.messages == []

    def test_a_new_email_is_told_to_the_old_address_and_audited(
        self,
        client: TestClient,
        db: Session,
        user: User,
        superuser: User,
        superuser_headers: dict[str, str],
        mailbox: Mailbox,
    ) -> None:
        old_email = user.email
        response = client.patch(
            f"{USERS}/{user.id}",
            headers=superuser_headers,
            json={"email": "Moved@Example.com", "password": "a brand new passphrase"},
        )
        assert response.status_code == 200
        assert response.json()["email"] == "moved@example.com"
        notices = mailbox.messages
        assert [m["To"] for m in notices] == [old_email, old_email]
        assert f"{old_email} to moved@example.com" in body_of(notices[0])
        db.expire_all()
        entry = db.exec(select(AuditEntry).where(AuditEntry.action == "user.email_changed")).one()
        assert (entry.actor_id, entry.target_id) == (superuser.id, str(user.id))
        assert entry.details == {
            "fields": ["email", "password"],
            "old_email": old_email,
            "new_email": "moved@example.com",
        }

    def test_superuser_cannot_demote_or_deactivate_themselves(
        self, client: TestClient, db: Session, superuser: User, superuser_headers: dict[str, str]
    ) -> None:
        for change in ({"is_superuser": False}, {"is_active": False}):
            response = client.patch(
                f"{USERS}/{superuser.id}", headers=superuser_headers, json=change
            )
            assert response.status_code == 403
            assert response.json()["code"] == "cannot_modify_self"
        db.refresh(superuser)
        assert superuser.is_superuser
        assert superuser.is_active

    def test_unknown_fields_are_422(
        self, client: TestClient, user: User, superuser_headers: dict[str, str]
    ) -> None:
        response = client.patch(
            f"{USERS}/{user.id}", headers=superuser_headers, json={"hashed_password": "x"}
        )
        assert response.status_code == 422


@pytest.mark.skipif(engine.dialect.name != "postgresql", reason="needs concurrent writers")
def test_two_superusers_demoting_each_other_at_once_leave_one(app: FastAPI) -> None:
    """Each may demote the other, but not both: one request wins, the other is refused
    (409 when it got past authentication before the first committed, else 401)."""
    app.state.open_session = SessionFactory(engine)  # real pooled sessions, committed
    with Session(engine, expire_on_commit=False) as setup:
        existing = setup.exec(select(func.count()).where(User.is_superuser, User.is_active)).one()
    for _ in range(5):
        with Session(engine, expire_on_commit=False) as setup:
            first, second = (
                create_user(setup, is_superuser=True),
                create_user(setup, is_superuser=True),
            )
            pairs = [
                (auth_headers(setup, user=first), second),
                (auth_headers(setup, user=second), first),
            ]
        try:
            statuses = _concurrently(app, pairs)
            with Session(engine) as check:
                remaining = check.exec(
                    select(User).where(User.id.in_([first.id, second.id]), User.is_superuser)  # type: ignore[attr-defined]
                ).all()
            if existing == 0:
                assert len(remaining) == 1, statuses
            assert sorted(statuses)[0] == 200
            assert sorted(statuses)[1] in {401, 409}
        finally:
            with Session(engine) as cleanup:
                for account in (first, second):
                    cleanup.delete(cleanup.get(User, account.id))
                cleanup.commit()


def _concurrently(app: FastAPI, pairs: list[tuple[dict[str, str], User]]) -> list[int]:
    barrier = threading.Barrier(len(pairs))
    statuses: list[int] = []
    with TestClient(app) as client:

        def demote(headers: dict[str, str], target: User) -> None:
            barrier.wait()
            response = client.patch(
                f"{USERS}/{target.id}", headers=headers, json={"is_superuser": False}
            )
            statuses.append(response.status_code)

        threads = [threading.Thread(target=demote, args=pair) for pair in pairs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return statuses
