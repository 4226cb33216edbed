import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.core.db import utcnow
from app.models.run import RunStatus
from app.models.usage import UsageEntry
from app.models.user import User
from app.services.quota_service import month_bounds
from tests.factories import (
    create_agent,
    create_ai_model,
    create_message,
    create_run,
    create_thread,
    create_usage,
    create_user,
)


def test_month_bounds_roll_over_the_year() -> None:
    start, resets = month_bounds(datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    assert (start, resets) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


class TestMyUsage:
    def test_groups_and_totals_exactly(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        today = utcnow().replace(hour=12)
        create_usage(db, user=user, cost="0.000000000001", at=today, model_name="a", tokens=(1, 2))
        create_usage(db, user=user, cost="0.100000000002", at=today, model_name="b", tokens=(3, 4))
        create_usage(db, user=create_user(db), cost="5", at=today)  # someone else's
        response = client.get(
            "/api/v1/users/me/usage", headers=user_headers, params={"group_by": "model"}
        )
        assert response.status_code == 200
        body = response.json()
        assert [row["key"] for row in body["data"]] == ["openai/a", "openai/b"]
        assert body["totals"]["input_tokens"] == 4
        assert body["totals"]["output_tokens"] == 6
        assert Decimal(body["totals"]["cost_usd"]) == Decimal("0.100000000003")
        assert body["totals"]["runs"] == 2

    def test_dates_are_inclusive_and_utc(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        day = datetime(2026, 3, 10, tzinfo=UTC)
        create_usage(db, user=user, cost="1", at=day + timedelta(hours=23, minutes=59))
        create_usage(db, user=user, cost="2", at=day + timedelta(days=1))
        response = client.get(
            "/api/v1/users/me/usage",
            headers=user_headers,
            params={"from": "2026-03-10", "to": "2026-03-10", "group_by": "day"},
        )
        body = response.json()
        assert [(row["key"], Decimal(row["cost_usd"])) for row in body["data"]] == [
            ("2026-03-10", Decimal(1))
        ]

    @pytest.mark.parametrize(
        "params",
        [
            {"from": "2026-03-10", "to": "2026-03-09"},
            {"from": "2024-01-01", "to": "2026-01-01"},
            {"group_by": "user"},
            {"from": "yesterday"},
        ],
    )
    def test_bad_queries_are_422(
        self, client: TestClient, user_headers: dict[str, str], params: dict[str, str]
    ) -> None:
        assert (
            client.get("/api/v1/users/me/usage", headers=user_headers, params=params).status_code
            == 422
        )


class TestAdminUsage:
    def test_per_user_as_json_and_csv(
        self, client: TestClient, db: Session, user: User, superuser_headers: dict[str, str]
    ) -> None:
        other = create_user(db)
        now = utcnow()
        create_usage(db, user=user, cost="1.5", at=now)
        create_usage(db, user=other, cost="0.25", at=now)
        report = client.get(
            "/api/v1/admin/usage", headers=superuser_headers, params={"group_by": "user"}
        ).json()
        by_user = {row["key"]: Decimal(row["cost_usd"]) for row in report["data"]}
        assert by_user[str(user.id)] == Decimal("1.5")
        assert by_user[str(other.id)] == Decimal("0.25")
        response = client.get(
            "/api/v1/admin/usage",
            headers=superuser_headers,
            params={"group_by": "user", "format": "csv"},
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0] == ["key", "input_tokens", "output_tokens", "cost_usd", "runs"]
        assert rows[-1][0] == "total"
        assert Decimal(rows[-1][3]) == sum(by_user.values())

    def test_ledger_rows_outlive_what_they_name(
        self, client: TestClient, db: Session, user: User, superuser_headers: dict[str, str]
    ) -> None:
        entry = create_usage(db, user=user, cost="0.5", at=utcnow())
        entry_id = entry.id
        assert (
            client.delete(f"/api/v1/users/{user.id}", headers=superuser_headers).status_code == 204
        )
        db.expunge_all()
        kept = db.get(UsageEntry, entry_id)
        assert kept is not None
        assert kept.cost_usd == Decimal("0.5")


class TestQuota:
    def test_spent_reserved_remaining(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        user.monthly_budget_usd = Decimal("10")
        db.add(user)
        db.commit()
        create_usage(db, user=user, cost="2.25", at=utcnow())
        create_usage(db, user=user, cost="100", at=month_bounds(utcnow())[0] - timedelta(seconds=1))
        agent = create_agent(db, owner=user, model=create_ai_model(db))
        thread = create_thread(db, owner=user, agent=agent)
        message = create_message(db, thread=thread)
        create_run(db, thread=thread, agent=agent, message=message, reserved_usd=Decimal("1.5"))
        create_run(
            db,
            thread=thread,
            agent=agent,
            message=message,
            status=RunStatus.SUCCEEDED,
            reserved_usd=Decimal("0"),
        )
        body = client.get("/api/v1/users/me/quota", headers=user_headers).json()
        assert Decimal(body["monthly_budget_usd"]) == 10
        assert Decimal(body["spent"]) == Decimal("2.25")
        assert Decimal(body["reserved"]) == Decimal("1.5")
        assert Decimal(body["remaining"]) == Decimal("6.25")
        assert body["resets_at"].startswith(month_bounds(utcnow())[1].date().isoformat())

    def test_unlimited_budget(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        user.monthly_budget_usd = None
        db.add(user)
        db.commit()
        body = client.get("/api/v1/users/me/quota", headers=user_headers).json()
        assert body["monthly_budget_usd"] is None
        assert body["remaining"] is None

    def test_only_a_superuser_sets_budgets(
        self,
        client: TestClient,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        superuser_headers: dict[str, str],
    ) -> None:
        mine = client.patch(
            "/api/v1/users/me", headers=user_headers, json={"monthly_budget_usd": "999"}
        )
        assert mine.status_code == 422
        set_it = client.patch(
            f"/api/v1/users/{user.id}",
            headers=superuser_headers,
            json={"monthly_budget_usd": "25.5"},
        )
        assert set_it.status_code == 200
        assert Decimal(set_it.json()["monthly_budget_usd"]) == Decimal("25.5")
        unlimited = client.patch(
            f"/api/v1/users/{user.id}", headers=superuser_headers, json={"monthly_budget_usd": None}
        )
        assert unlimited.json()["monthly_budget_usd"] is None
        negative = client.patch(
            f"/api/v1/users/{user.id}", headers=superuser_headers, json={"monthly_budget_usd": "-1"}
        )
        assert negative.status_code == 422
        db.refresh(user)
        assert user.monthly_budget_usd is None

    def test_new_accounts_get_the_default_budget(self, client: TestClient, db: Session) -> None:
        response = client.post(
            "/api/v1/users/signup",
            json={"email": "budget@example.com", "password": "a long and unusual passphrase"},
        )
        assert Decimal(response.json()["monthly_budget_usd"]) == Decimal("10")
        stored = db.exec(select(User).where(User.email == "budget@example.com")).one()
        assert stored.monthly_budget_usd == Decimal("10")
