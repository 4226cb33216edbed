"""Bursts of concurrent guesses, on real threads and real connections.

Every attempt is counted before its password is checked, so a burst gets no more checks
than the limit, however many requests arrive together. Rows here are committed (each
request thread uses its own pooled connection), so every test deletes what it made.
"""

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx2
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlmodel import Session, col, select

from app.core.throttle import CounterStore, MemoryCounterStore, RedisCounterStore, Throttle
from app.main import create_app
from app.models.audit import AuditEntry
from app.models.auth import PasswordResetToken
from app.models.user import User
from app.modules.llm.client import LLMClient
from app.modules.storage import build_storage
from app.services.ingestion_service import IngestPolicy
from app.services.run_runtime import RunPolicy
from app.tasks.dispatch import InlineDispatcher
from tests.environment import engine, settings
from tests.factories import PASSWORD, create_user

LOGIN = "/api/v1/login/access-token"
RECOVER = "/api/v1/password-recovery"
BURST = 30
WRONG = "not the password at all"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Counters:
    store: CounterStore
    clock: FakeClock | None  # memory only: lets the window pass without waiting


@pytest.fixture(params=["memory", "redis"])
def counters(request: pytest.FixtureRequest, key_prefix: str) -> Iterator[Counters]:
    if request.param == "memory":
        clock = FakeClock()
        yield Counters(store=MemoryCounterStore(clock=clock), clock=clock)
        return
    client: redis.Redis = request.getfixturevalue("redis_client")
    yield Counters(store=RedisCounterStore(client, key_prefix=key_prefix), clock=None)
    keys = list(client.scan_iter(match=key_prefix + "*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def accounts() -> Iterator[Callable[[int], list[User]]]:
    """Committed accounts; they and the audit entries about them go afterwards."""
    made: list[User] = []

    def make(count: int) -> list[User]:
        with Session(engine, expire_on_commit=False) as session:
            users = [create_user(session) for _ in range(count)]
        made.extend(users)
        return users

    yield make
    with Session(engine) as session:
        ids = [user.id for user in made]
        session.execute(delete(AuditEntry).where(col(AuditEntry.target_id).in_(map(str, ids))))
        session.execute(delete(User).where(col(User.id).in_(ids)))  # cascades
        session.commit()


@pytest.fixture
def client(counters: Counters) -> Iterator[TestClient]:
    """The app on real pooled sessions: each request thread has its own connection."""
    app: FastAPI = create_app(settings)
    app.state.throttle = Throttle(counters.store)
    app.state.run_dispatcher = InlineDispatcher(
        llm=LLMClient(providers={}),
        storage=build_storage(settings),
        policy=RunPolicy.from_settings(settings),
        ingest_policy=IngestPolicy.from_settings(settings),
        session_factory=lambda: Session(engine, expire_on_commit=False),
    )
    with TestClient(app) as test_client:
        yield test_client


def burst(send: Callable[[int], httpx2.Response], count: int = BURST) -> list[int]:
    """`count` requests released together from as many threads; their statuses."""
    barrier = threading.Barrier(count)
    statuses: list[int] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        barrier.wait()
        status = send(index).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(statuses)


def checked_logins(users: list[User]) -> int:
    """Attempts whose password was checked and found wrong: each leaves one entry."""
    with Session(engine) as session:
        entries = session.exec(
            select(AuditEntry).where(
                AuditEntry.action == "login.failed",
                col(AuditEntry.target_id).in_([str(user.id) for user in users]),
            )
        ).all()
    return len(entries)


def login(client: TestClient, email: str, password: str) -> httpx2.Response:
    return client.post(LOGIN, data={"username": email, "password": password})


class TestLoginBurst:
    def test_thirty_wrong_passwords_for_one_account_get_five_checks_then_the_right_one_waits(
        self,
        client: TestClient,
        counters: Counters,
        accounts: Callable[[int], list[User]],
    ) -> None:
        [victim] = accounts(1)
        limit = settings.LOGIN_MAX_FAILURES_PER_ACCOUNT

        statuses = burst(lambda _: login(client, victim.email, WRONG))

        assert statuses == [401] * limit + [429] * (BURST - limit)
        assert checked_logins([victim]) == limit
        right = login(client, victim.email, PASSWORD)
        assert right.status_code == 429
        assert right.json()["code"] == "rate_limited"
        assert 0 < int(right.headers["Retry-After"]) <= settings.LOGIN_FAILURE_WINDOW_SECONDS
        assert checked_logins([victim]) == limit
        if counters.clock is not None:
            counters.clock.now += settings.LOGIN_FAILURE_WINDOW_SECONDS
            assert login(client, victim.email, PASSWORD).status_code == 200

    def test_thirty_accounts_guessed_at_once_from_one_address_get_the_ip_limit_of_checks(
        self,
        client: TestClient,
        accounts: Callable[[int], list[User]],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(settings, "LOGIN_MAX_FAILURES_PER_IP", 7)
        victims = accounts(BURST)

        statuses = burst(lambda i: login(client, victims[i].email, WRONG))

        assert statuses == [401] * 7 + [429] * (BURST - 7)
        assert checked_logins(victims) == 7
        assert login(client, victims[0].email, PASSWORD).status_code == 429

    def test_right_passwords_in_a_burst_do_not_use_up_the_address(
        self,
        client: TestClient,
        accounts: Callable[[int], list[User]],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(settings, "LOGIN_MAX_FAILURES_PER_IP", 7)
        people = accounts(7)  # an office behind one NAT, all logging in at nine

        statuses = burst(lambda i: login(client, people[i].email, PASSWORD), count=7)

        assert statuses == [200] * 7
        assert login(client, people[0].email, PASSWORD).status_code == 200


class TestRecoveryBurst:
    def test_thirty_requests_for_one_address_issue_the_limit_of_links(
        self, client: TestClient, accounts: Callable[[int], list[User]]
    ) -> None:
        [user] = accounts(1)
        limit = settings.RECOVERY_MAX_PER_EMAIL

        statuses = burst(lambda _: client.post(RECOVER, json={"email": user.email}))

        assert statuses == [202] * limit + [429] * (BURST - limit)
        with Session(engine) as session:
            issued = session.exec(
                select(PasswordResetToken).where(PasswordResetToken.user_id == user.id)
            ).all()
        assert len(issued) == limit
