"""Redis faults through HTTP: a stopped, killed or frozen Redis makes the routes that count
attempts answer 503 at once, and the same app answers normally once Redis is back.

Each test breaks its own redis-server (the `redis_server` fixture); the machine's shared
Redis is never touched.
"""

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest
import redis
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.core.throttle import DEFAULT_KEY_PREFIX
from app.models.audit import AuditEntry
from app.models.auth import LoginSession, PasswordResetToken
from app.models.user import User
from tests.conftest import AppFactory
from tests.environment import settings
from tests.factories import PASSWORD
from tests.redis_server import RedisServer

LOGIN = "/api/v1/login/access-token"
RECOVER = "/api/v1/password-recovery"
# Only there to turn a hung request into a failure instead of a stuck run; an answer is
# due within one Redis socket timeout, and no test measures how long it took.
HANG_GUARD_SECONDS = 60.0


@pytest.fixture
def throttled_client(make_app: AppFactory, redis_server: RedisServer) -> Iterator[TestClient]:
    app = make_app(settings.model_copy(update={"REDIS_URL": redis_server.url()}))
    with TestClient(app) as client:
        yield client


def without_hanging(request: Callable[[], httpx2.Response]) -> httpx2.Response:
    """Sends from another thread, so that a request that never ends fails the test."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(request).result(timeout=HANG_GUARD_SECONDS)
    finally:
        pool.shutdown(wait=False)


def login(client: TestClient, email: str, password: str) -> httpx2.Response:
    return without_hanging(
        lambda: client.post(LOGIN, data={"username": email, "password": password})
    )


def recover(client: TestClient, email: str) -> httpx2.Response:
    return without_hanging(lambda: client.post(RECOVER, json={"email": email}))


def assert_redis_unavailable(response: httpx2.Response) -> None:
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "redis_unavailable"
    assert body["detail"] == "Redis is unavailable; try again shortly"
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["Retry-After"] == "5"


def connections_accepted(probe: redis.Redis) -> int:
    accepted: int = probe.info("stats")["total_connections_received"]
    return accepted


def login_sessions(db: Session, user: User) -> list[LoginSession]:
    return list(db.exec(select(LoginSession).where(LoginSession.user_id == user.id)).all())


def audit_actions(db: Session, user: User) -> list[str]:
    entries = db.exec(select(AuditEntry).where(AuditEntry.target_id == str(user.id))).all()
    return sorted(entry.action for entry in entries)


def reset_links(db: Session, user: User) -> list[bool]:
    """Whether each of the user's reset links still works, false first."""
    statement = select(PasswordResetToken.used_at).where(PasswordResetToken.user_id == user.id)
    return sorted(used_at is None for used_at in db.exec(statement).all())


class TestLoginWhenRedisFails:
    @pytest.mark.parametrize("outage", ["stop", "kill"])
    def test_a_redis_that_went_away_is_503_until_it_is_back(
        self,
        throttled_client: TestClient,
        redis_server: RedisServer,
        db: Session,
        user: User,
        outage: str,
    ) -> None:
        # A first login leaves a pooled connection that the outage breaks.
        assert login(throttled_client, user.email, PASSWORD).status_code == 200
        getattr(redis_server, outage)()

        assert_redis_unavailable(login(throttled_client, user.email, PASSWORD))
        assert len(login_sessions(db, user)) == 1
        assert audit_actions(db, user) == ["login.succeeded"]

        redis_server.restart()
        assert login(throttled_client, user.email, PASSWORD).status_code == 200
        assert len(login_sessions(db, user)) == 2
        assert audit_actions(db, user) == ["login.succeeded", "login.succeeded"]

    def test_failures_are_counted_again_once_redis_is_back(
        self, throttled_client: TestClient, redis_server: RedisServer, db: Session, user: User
    ) -> None:
        redis_server.stop()
        assert_redis_unavailable(login(throttled_client, user.email, "wrong guess!"))
        assert audit_actions(db, user) == []

        redis_server.start()
        refused = login(throttled_client, user.email, "wrong guess!")
        assert refused.status_code == 401
        assert refused.json()["code"] == "invalid_credentials"
        assert audit_actions(db, user) == ["login.failed"]
        with redis.Redis.from_url(redis_server.url()) as counters:
            assert counters.get(f"{DEFAULT_KEY_PREFIX}login:account:{user.email}") == b"1"

    def test_a_frozen_redis_is_503_without_hanging_until_it_thaws(
        self, throttled_client: TestClient, redis_server: RedisServer, db: Session, user: User
    ) -> None:
        assert login(throttled_client, user.email, PASSWORD).status_code == 200
        with redis.Redis.from_url(redis_server.url()) as probe:
            accepted_before = connections_accepted(probe)
            redis_server.freeze()

            assert_redis_unavailable(login(throttled_client, user.email, PASSWORD))
            # The pooled connection timed out and was dropped: this one opens another.
            assert_redis_unavailable(login(throttled_client, user.email, PASSWORD))
            assert len(login_sessions(db, user)) == 1

            redis_server.thaw()
            # One attempt per request: retrying a timeout would only double each wait,
            # and would have opened a connection more for each request.
            assert connections_accepted(probe) - accepted_before == 1
        assert login(throttled_client, user.email, PASSWORD).status_code == 200
        assert len(login_sessions(db, user)) == 2


class TestPasswordRecoveryWhenRedisFails:
    def test_a_stopped_redis_is_503_until_it_restarts(
        self, throttled_client: TestClient, redis_server: RedisServer, db: Session, user: User
    ) -> None:
        redis_server.stop()

        assert_redis_unavailable(recover(throttled_client, user.email))
        assert reset_links(db, user) == []
        assert audit_actions(db, user) == []

        redis_server.start()
        assert recover(throttled_client, user.email).status_code == 202
        assert reset_links(db, user) == [True]
        assert audit_actions(db, user) == ["password_reset.requested"]

    def test_a_frozen_redis_is_503_without_hanging_until_it_thaws(
        self, throttled_client: TestClient, redis_server: RedisServer, db: Session, user: User
    ) -> None:
        assert recover(throttled_client, user.email).status_code == 202
        redis_server.freeze()

        assert_redis_unavailable(recover(throttled_client, user.email))
        assert reset_links(db, user) == [True]

        redis_server.thaw()
        assert recover(throttled_client, user.email).status_code == 202
        assert reset_links(db, user) == [False, True]  # the new link voided the first
        assert audit_actions(db, user) == ["password_reset.requested"] * 2
