"""Credential throttling through HTTP, on both counter stores."""

from collections.abc import Iterator

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.core.throttle import MemoryCounterStore, RedisCounterStore, Throttle
from app.models.audit import AuditEntry
from app.models.user import User
from tests.conftest import AppFactory
from tests.environment import settings
from tests.factories import PASSWORD, create_user

LOGIN = "/api/v1/login/access-token"


@pytest.fixture(params=["memory", "redis"])
def throttled_client(
    request: pytest.FixtureRequest, app: FastAPI, key_prefix: str
) -> Iterator[TestClient]:
    if request.param == "redis":
        client: redis.Redis = request.getfixturevalue("redis_client")
        app.state.throttle = Throttle(RedisCounterStore(client, key_prefix=key_prefix))
    else:
        app.state.throttle = Throttle(MemoryCounterStore())
    with TestClient(app) as test_client:
        yield test_client
    if request.param == "redis":
        keys = list(client.scan_iter(match=key_prefix + "*"))
        if keys:
            client.delete(*keys)


def attempt(client: TestClient, email: str, password: str, ip: str | None = None) -> int:
    headers = {"X-Forwarded-For": ip} if ip else {}
    return client.post(
        LOGIN, data={"username": email, "password": password}, headers=headers
    ).status_code


class TestLoginThrottling:
    def test_account_locks_after_five_failures_even_for_the_right_password(
        self, throttled_client: TestClient, db: Session, user: User
    ) -> None:
        failures = [attempt(throttled_client, user.email, "wrong guess!") for _ in range(5)]
        assert failures == [401] * 5
        locked = throttled_client.post(LOGIN, data={"username": user.email, "password": PASSWORD})
        assert locked.status_code == 429
        assert locked.json()["code"] == "rate_limited"
        retry_after = int(locked.headers["Retry-After"])
        assert 0 < retry_after <= settings.LOGIN_FAILURE_WINDOW_SECONDS
        successes = db.exec(
            select(AuditEntry).where(
                AuditEntry.action == "login.succeeded", AuditEntry.target_id == str(user.id)
            )
        )
        assert successes.all() == []

    def test_every_spelling_of_an_address_shares_one_counter(
        self, throttled_client: TestClient, user: User
    ) -> None:
        local, _, domain = user.email.partition("@")
        spellings = [user.email.upper(), f" {user.email}", f"{local}@{domain.upper()}"]
        spellings += [user.email, user.email.title()]
        assert [attempt(throttled_client, s, "wrong guess!") for s in spellings] == [401] * 5
        assert attempt(throttled_client, user.email, PASSWORD) == 429

    def test_a_success_before_the_limit_clears_the_account_counter(
        self, throttled_client: TestClient, user: User
    ) -> None:
        assert [attempt(throttled_client, user.email, "wrong guess!") for _ in range(4)] == [
            401
        ] * 4
        assert attempt(throttled_client, user.email, PASSWORD) == 200
        assert [attempt(throttled_client, user.email, "wrong guess!") for _ in range(4)] == [
            401
        ] * 4
        assert attempt(throttled_client, user.email, PASSWORD) == 200

    def test_one_address_is_limited_across_accounts(
        self, throttled_client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(settings, "LOGIN_MAX_FAILURES_PER_IP", 3)
        victims = [create_user(db) for _ in range(4)]
        statuses = [attempt(throttled_client, v.email, "wrong guess!") for v in victims]
        assert statuses == [401, 401, 401, 429]


class TestClientAddress:
    def test_forwarded_for_from_an_untrusted_peer_changes_nothing(
        self, throttled_client: TestClient, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(settings, "LOGIN_MAX_FAILURES_PER_IP", 2)
        victims = [create_user(db) for _ in range(3)]
        # A new spoofed address each time: still one peer, so still one counter.
        statuses = [
            attempt(throttled_client, v.email, "wrong guess!", ip=f"203.0.113.{i}")
            for i, v in enumerate(victims)
        ]
        assert statuses == [401, 401, 429]
        entries = db.exec(select(AuditEntry).where(AuditEntry.action == "login.failed")).all()
        assert {e.ip for e in entries} == {"testclient"}

    def test_a_trusted_proxy_is_believed(self, make_app: AppFactory, db: Session) -> None:
        trusted = make_app(settings.model_copy(update={"FORWARDED_ALLOW_IPS": ["testclient"]}))
        account = create_user(db)
        with TestClient(trusted) as client:
            status = attempt(client, account.email, "wrong guess!", ip="198.51.100.7")
        assert status == 401
        entry = db.exec(select(AuditEntry).where(AuditEntry.action == "login.failed")).one()
        assert entry.ip == "198.51.100.7"
