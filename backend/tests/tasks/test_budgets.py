"""Budgets hold while a provider call is in flight: cancelling the run or deleting its
thread keeps the reservation until the call returns and is billed."""

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from functools import partial

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.models.agent import Agent
from app.models.run import Run, RunStatus
from app.models.thread import Message, Thread
from app.models.usage import UsageEntry
from app.models.user import User
from tests.environment import engine
from tests.modules.fake_llm import FakeLLM, FakeResponse, completion_body
from tests.tasks.conftest import Committed, real_app, thread_pool_dispatcher

BUDGET = Decimal("0.0015")  # room for one run's hold ($0.001: 1,000 tokens at $1/M)


@pytest.fixture
def client(committed: Committed, fake_llm: FakeLLM) -> Iterator[TestClient]:
    with Session(engine) as session:
        user = session.get(User, committed.user.id)
        assert user is not None
        user.monthly_budget_usd = BUDGET
        session.add(user)
        session.commit()
    # The provider bills the whole output limit, after a while.
    fake_llm.script(FakeResponse(json=completion_body("Late.", 0, 1_000), delay=1.5))
    app = real_app(thread_pool_dispatcher(fake_llm, workers=2))
    with TestClient(app) as test_client:
        yield test_client


def post(client: TestClient, committed: Committed, thread: Thread) -> httpx2.Response:
    return client.post(
        f"/api/v1/threads/{thread.id}/messages", headers=committed.headers, json={"content": "Hi"}
    )


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def settled(run_id: uuid.UUID) -> bool:
    with Session(engine) as session:
        run = session.get(Run, run_id)
        return run is not None and run.cost_usd is not None and run.reserved_usd == 0


def quota(client: TestClient, committed: Committed) -> dict[str, str]:
    body: dict[str, str] = client.get("/api/v1/users/me/quota", headers=committed.headers).json()
    return body


@pytest.mark.parametrize("stop", ["cancel", "delete_thread"])
def test_stopping_a_run_mid_call_keeps_its_hold_until_the_call_is_billed(
    committed: Committed, client: TestClient, fake_llm: FakeLLM, stop: str
) -> None:
    first, second = committed.threads[:2]
    posted = post(client, committed, first)
    assert posted.status_code == 202
    run_id = uuid.UUID(posted.json()["run"]["id"])
    wait_until(lambda: len(fake_llm.requests) == 1, "the provider call")

    if stop == "cancel":
        stopped = client.post(f"/api/v1/runs/{run_id}/cancel", headers=committed.headers)
        assert (stopped.status_code, stopped.json()["status"]) == (200, "cancelled")
    else:
        stopped = client.delete(f"/api/v1/threads/{first.id}", headers=committed.headers)
        assert stopped.status_code == 204
    held = quota(client, committed)
    refused = post(client, committed, second)

    assert Decimal(held["reserved"]) == Decimal("0.001")
    assert refused.status_code == 402
    assert refused.json()["code"] == "quota_exceeded"

    wait_until(lambda: settled(run_id), "the call to be billed")
    after = quota(client, committed)
    assert Decimal(after["spent"]) == Decimal("0.001")
    assert Decimal(after["reserved"]) == 0
    assert Decimal(after["spent"]) <= BUDGET
    with Session(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        assert (run.status, run.cost_usd, run.lease_owner) == (
            RunStatus.CANCELLED,
            Decimal("0.001"),
            None,
        )
        [entry] = session.exec(select(UsageEntry).where(UsageEntry.run_id == run_id)).all()
        assert entry.cost_usd == Decimal("0.001")
        contents = session.exec(select(Message.content).where(Message.thread_id == first.id))
        assert contents.all() == ([] if stop == "delete_thread" else ["Hi"])
        assert (session.get(Thread, first.id) is None) == (stop == "delete_thread")


@pytest.mark.skipif(engine.dialect.name != "postgresql", reason="needs concurrent writers")
def test_concurrent_posts_cancels_and_edits_never_spend_past_the_budget(
    committed: Committed, fake_llm: FakeLLM
) -> None:
    """Twelve threads post, cancel mid-call and raise the agent's output limit, against a
    provider that bills every run its whole output limit: the ledger stays within the
    budget, because each run is billed at most what it was priced at when posted."""
    budget = Decimal("0.004")
    with Session(engine) as session:
        user = session.get(User, committed.user.id)
        agent = session.get(Agent, committed.agent.id)
        assert user is not None
        assert agent is not None
        user.monthly_budget_usd = budget
        agent.max_output_tokens = 250  # $0.00025 a run at $1/M
        session.add_all([user, agent])
        session.commit()
    fake_llm.script(*[FakeResponse(bill_max_tokens=True, delay=0.2)] * 100)
    app = real_app(thread_pool_dispatcher(fake_llm, workers=4))
    barrier = threading.Barrier(len(committed.threads))
    statuses: list[int] = []

    with TestClient(app) as client:

        def converse(index: int, thread: Thread) -> None:
            barrier.wait()
            for turn in range(4):
                response = post(client, committed, thread)
                statuses.append(response.status_code)
                if response.status_code != 202:
                    continue
                run_id = uuid.UUID(response.json()["run"]["id"])
                if (index + turn) % 3 == 0:
                    client.post(f"/api/v1/runs/{run_id}/cancel", headers=committed.headers)
                elif (index + turn) % 3 == 1:
                    client.patch(
                        f"/api/v1/agents/{committed.agent.id}",
                        headers=committed.headers,
                        json={"max_output_tokens": 1_000},
                    )
                wait_until(partial(holds_nothing, run_id), "the run to settle")

        workers = [
            threading.Thread(target=converse, args=(i, t)) for i, t in enumerate(committed.threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    assert statuses.count(202) >= 4
    assert set(statuses) <= {202, 402}
    with Session(engine) as session:
        entries = session.exec(
            select(UsageEntry).where(UsageEntry.user_id == committed.user.id)
        ).all()
        spent = sum((entry.cost_usd for entry in entries), Decimal(0))
        runs = session.exec(select(Run).where(Run.owner_id == committed.user.id)).all()
    assert spent <= budget
    assert all(run.reserved_usd == 0 for run in runs)
    assert len(entries) == sum(1 for run in runs if run.cost_usd is not None)


def holds_nothing(run_id: uuid.UUID) -> bool:
    with Session(engine) as session:
        run = session.get(Run, run_id)
        return run is None or (run.reserved_usd == 0 and run.status != RunStatus.RUNNING)
