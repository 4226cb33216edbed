import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from app.core.codes import AuditAction
from app.core.db import utcnow
from app.models.audit import AuditEntry
from app.models.user import User

AUDIT = "/api/v1/admin/audit-log"


# Real actions: the public schema lists every one (AuditAction), so an entry with
# another would not be readable. Neither is recorded by the fixtures these tests use.
EVENT = AuditAction.MODELS_IMPORTED
OTHER = AuditAction.PASSWORD_CHECK_FAILED


def add_entries(db: Session, *, actor: User, count: int, action: AuditAction = EVENT) -> None:
    for number in range(count):
        db.add(
            AuditEntry(
                actor_id=actor.id,
                actor_email=actor.email,
                action=action,
                target_type="user",
                target_id=str(actor.id),
                details={"n": number},
            )
        )
    db.commit()


class TestAuditLog:
    def test_anonymous_401_and_regular_user_403(
        self, client: TestClient, user_headers: dict[str, str]
    ) -> None:
        assert client.get(AUDIT).status_code == 401
        assert client.get(AUDIT, headers=user_headers).status_code == 403

    def test_pages_newest_first_with_a_cursor(
        self, client: TestClient, db: Session, superuser: User, superuser_headers: dict[str, str]
    ) -> None:
        add_entries(db, actor=superuser, count=5)
        params: dict[str, str | int] = {"actor_id": str(superuser.id), "action": EVENT}
        first = client.get(AUDIT, headers=superuser_headers, params={**params, "limit": 3}).json()
        assert [e["details"]["n"] for e in first["data"]] == [4, 3, 2]
        assert first["next_cursor"] is not None
        second = client.get(
            AUDIT,
            headers=superuser_headers,
            params={**params, "limit": 3, "cursor": first["next_cursor"]},
        ).json()
        assert [e["details"]["n"] for e in second["data"]] == [1, 0]
        assert second["next_cursor"] is None

    def test_filters_by_target_and_time(
        self, client: TestClient, db: Session, user: User, superuser_headers: dict[str, str]
    ) -> None:
        add_entries(db, actor=user, count=2, action=OTHER)
        response = client.get(
            AUDIT,
            headers=superuser_headers,
            params={
                "target_type": "user",
                "target_id": str(user.id),
                "since": (utcnow() - timedelta(minutes=1)).isoformat(),
                "until": (utcnow() + timedelta(minutes=1)).isoformat(),
            },
        )
        assert response.status_code == 200
        assert {e["action"] for e in response.json()["data"]} == {OTHER}
        later = client.get(
            AUDIT,
            headers=superuser_headers,
            params={
                "target_id": str(user.id),
                "since": (utcnow() + timedelta(hours=1)).isoformat(),
            },
        )
        assert later.json()["data"] == []

    @pytest.mark.parametrize(
        "params",
        [
            {"limit": 0},
            {"limit": 101},
            {"cursor": "not-a-cursor"},
            {"actor_id": "nope"},
            {"since": "2026-01-01T00:00:00"},  # no timezone: ambiguous
        ],
    )
    def test_bad_queries_are_422(
        self, client: TestClient, superuser_headers: dict[str, str], params: dict[str, str | int]
    ) -> None:
        response = client.get(AUDIT, headers=superuser_headers, params=params)
        assert response.status_code == 422

    def test_entries_outlive_the_user_they_name(
        self, client: TestClient, db: Session, user: User, superuser_headers: dict[str, str]
    ) -> None:
        user_id, email = user.id, user.email
        add_entries(db, actor=user, count=1)
        assert (
            client.delete(f"/api/v1/users/{user_id}", headers=superuser_headers).status_code == 204
        )
        db.expire_all()
        kept = db.exec(select(AuditEntry).where(AuditEntry.action == EVENT)).one()
        assert (kept.actor_id, kept.actor_email) == (user_id, email)

    def test_no_route_edits_or_deletes_entries(
        self, client: TestClient, db: Session, superuser: User, superuser_headers: dict[str, str]
    ) -> None:
        add_entries(db, actor=superuser, count=1)
        before = db.exec(select(func.count()).select_from(AuditEntry)).one()
        for method in ("PUT", "PATCH", "DELETE"):
            response = client.request(method, AUDIT, headers=superuser_headers)
            assert response.status_code == 405
            entry_path = f"{AUDIT}/{uuid.uuid4()}"
            assert client.request(method, entry_path, headers=superuser_headers).status_code == 404
        assert db.exec(select(func.count()).select_from(AuditEntry)).one() == before
