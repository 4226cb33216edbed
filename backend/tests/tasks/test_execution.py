import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.core.db import utcnow
from app.models.run import Run, RunStatus
from app.models.thread import Message, Thread
from app.models.usage import UsageEntry
from app.services.run_recovery import SweepReport
from app.services.run_runtime import QueueUnavailableError
from app.services.run_service import RunService
from tests.environment import default_session, engine
from tests.factories import (
    ParkedDispatcher,
    create_message,
    create_run,
    run_policy,
)
from tests.modules.fake_llm import FakeLLM, FakeResponse, completion_body
from tests.tasks.conftest import Committed, celery_dispatcher, real_app, thread_pool_dispatcher


def wait_for_run(client: TestClient, run_id: str, headers: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run: dict[str, object] = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish")


def test_thread_pool_runs_a_conversation_turn(committed: Committed, fake_llm: FakeLLM) -> None:
    fake_llm.script(FakeResponse(json=completion_body("Pong.", 5, 3)))
    app = real_app(thread_pool_dispatcher(fake_llm, workers=2))
    thread = committed.threads[0]
    with TestClient(app) as client:
        posted = client.post(
            f"/api/v1/threads/{thread.id}/messages",
            headers=committed.headers,
            json={"content": "Ping?"},
        )
        assert posted.status_code == 202
        run = wait_for_run(client, posted.json()["run"]["id"], committed.headers)
    assert run["status"] == "succeeded"
    with Session(engine) as session:
        answers = session.exec(select(Message).where(Message.thread_id == thread.id)).all()
        assert sorted(m.content for m in answers) == ["Ping?", "Pong."]
        [entry] = session.exec(select(UsageEntry).where(UsageEntry.thread_id == thread.id)).all()
        assert entry.cost_usd == Decimal("0.000003000000")


def test_a_sweep_fails_expired_leases_and_redelivers_overdue_queued_runs(
    committed: Committed,
) -> None:
    thread_a, thread_b, thread_c = committed.threads[:3]
    past, later = utcnow() - timedelta(seconds=5), utcnow() + timedelta(seconds=60)
    with Session(engine, expire_on_commit=False) as session:

        def run(thread: Thread, **fields: Any) -> Run:
            message = create_message(session, thread=thread)
            return create_run(
                session, thread=thread, agent=committed.agent, message=message, **fields
            )

        stuck = run(
            thread_a,
            status=RunStatus.RUNNING,
            reserved_usd=Decimal("0.001"),
            lease_owner="elsewhere/1/dead/run",
            lease_expires_at=past,
        )
        waiting = run(thread_b, reserved_usd=Decimal("0.001"), lease_expires_at=past)
        alive = run(
            thread_c,
            status=RunStatus.RUNNING,
            lease_owner="elsewhere/2/live/run",
            lease_expires_at=later,
        )
    delivered: list[uuid.UUID] = []
    report = RunService.sweep(
        session_factory=default_session, policy=run_policy(), dispatch=delivered.append
    )
    assert report == SweepReport(interrupted=1, redelivered=1)
    assert delivered == [waiting.id]
    again = RunService.sweep(
        session_factory=default_session, policy=run_policy(), dispatch=delivered.append
    )
    assert again == SweepReport()  # the redelivered run is not due again yet
    with Session(engine) as session:
        failed = session.get(Run, stuck.id)
        assert failed is not None
        assert (failed.status, failed.error_code) == (RunStatus.FAILED, "run_interrupted")
        assert failed.reserved_usd == 0
        assert (failed.lease_owner, failed.lease_expires_at) == (None, None)
        queued = session.get(Run, waiting.id)
        assert queued is not None
        assert (queued.status, queued.deliveries, queued.reserved_usd) == (
            RunStatus.QUEUED,
            1,
            Decimal("0.001"),
        )
        assert queued.lease_expires_at is not None
        assert queued.lease_expires_at > utcnow()
        untouched = session.get(Run, alive.id)
        assert untouched is not None
        assert untouched.status == RunStatus.RUNNING


def test_a_delivery_the_queue_refuses_is_tried_again_soon_and_not_counted(
    committed: Committed,
) -> None:
    thread = committed.threads[0]
    with Session(engine, expire_on_commit=False) as session:
        message = create_message(session, thread=thread)
        waiting = create_run(
            session,
            thread=thread,
            agent=committed.agent,
            message=message,
            lease_expires_at=utcnow() - timedelta(seconds=1),
        )

    def broker_down(_run_id: uuid.UUID) -> None:
        raise QueueUnavailableError("down")

    before = utcnow()
    report = RunService.sweep(
        session_factory=default_session, policy=run_policy(), dispatch=broker_down
    )
    assert report == SweepReport()
    with Session(engine) as session:
        queued = session.get(Run, waiting.id)
        assert queued is not None
        assert (queued.status, queued.deliveries) == (RunStatus.QUEUED, 0)
        assert queued.lease_expires_at is not None
        # Due again after one redelivery wait, however often it was tried before.
        assert queued.lease_expires_at - before <= run_policy().redeliver_after + timedelta(
            seconds=5
        )


@pytest.mark.skipif(engine.dialect.name != "postgresql", reason="needs concurrent writers")
def test_concurrent_posts_never_reserve_past_the_budget(committed: Committed) -> None:
    """Twelve posts at once, each reserving $0.001 (1,000 output tokens at $1/M) against a
    $0.005 budget: exactly five get in."""
    app = real_app(ParkedDispatcher())
    barrier = threading.Barrier(len(committed.threads))
    statuses: list[int] = []
    with TestClient(app) as client:

        def post(thread_id: uuid.UUID) -> None:
            barrier.wait()
            response = client.post(
                f"/api/v1/threads/{thread_id}/messages",
                headers=committed.headers,
                json={"content": "hi"},
            )
            statuses.append(response.status_code)

        workers = [threading.Thread(target=post, args=(t.id,)) for t in committed.threads]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert sorted(statuses) == [202] * 5 + [402] * 7
    with Session(engine) as session:
        runs = session.exec(select(Run).where(Run.owner_id == committed.user.id)).all()
        assert len(runs) == 5
        assert sum((r.reserved_usd for r in runs), Decimal(0)) <= Decimal("0.005")


def test_a_celery_worker_runs_a_conversation_turn(
    committed: Committed, fake_llm: FakeLLM, broker_url: str
) -> None:
    fake_llm.script(FakeResponse(json=completion_body("From the worker.", 7, 4)))
    env = {
        **os.environ,
        "CELERY_BROKER_URL": broker_url,
        "DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "LLM_PROVIDERS__OPENAI__BASE_URL": fake_llm.base_url,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--concurrency", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        thread = committed.threads[0]
        with TestClient(
            real_app(celery_dispatcher(broker_url, policy=run_policy(), publish_timeout=3))
        ) as client:
            posted = client.post(
                f"/api/v1/threads/{thread.id}/messages",
                headers=committed.headers,
                json={"content": "Who answers?"},
            )
            assert posted.status_code == 202
            run = wait_for_run(client, posted.json()["run"]["id"], committed.headers)
        assert run["status"] == "succeeded", run
        with Session(engine) as session:
            contents = session.exec(
                select(Message.content).where(Message.thread_id == thread.id)
            ).all()
            assert sorted(contents) == ["From the worker.", "Who answers?"]
            ledger = session.exec(select(UsageEntry).where(UsageEntry.thread_id == thread.id))
            assert len(ledger.all()) == 1
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_a_run_cancelled_while_the_provider_works_is_billed_but_not_answered(
    committed: Committed, fake_llm: FakeLLM
) -> None:
    fake_llm.script(FakeResponse(json=completion_body("Too late.", 9, 6), delay=1.5))
    app = real_app(thread_pool_dispatcher(fake_llm, workers=1))
    thread = committed.threads[0]
    with TestClient(app) as client:
        run_id = client.post(
            f"/api/v1/threads/{thread.id}/messages",
            headers=committed.headers,
            json={"content": "Slow question"},
        ).json()["run"]["id"]
        deadline = time.monotonic() + 10
        while not fake_llm.requests and time.monotonic() < deadline:
            time.sleep(0.02)  # wait until the provider has the request
        cancelled = client.post(f"/api/v1/runs/{run_id}/cancel", headers=committed.headers)
        assert cancelled.status_code == 200
        app.state.run_dispatcher.runs.shutdown()  # let the call come back
        run = client.get(f"/api/v1/runs/{run_id}", headers=committed.headers).json()
    assert run["status"] == "cancelled"
    assert Decimal(run["cost_usd"]) == Decimal("0.000006000000")  # 6 output tokens at $1/M
    with Session(engine) as session:
        contents = session.exec(select(Message.content).where(Message.thread_id == thread.id))
        assert contents.all() == ["Slow question"]
        ledger = session.exec(select(UsageEntry).where(UsageEntry.thread_id == thread.id)).all()
        assert [entry.output_tokens for entry in ledger] == [6]
