"""Faults against real processes: an app server or a Celery worker killed with a run in
flight, and a broker that is down when runs are posted. Every process here is real
(`agentry serve`, `agentry worker`, redis-server, a chat-completions server); timings are
shortened through settings, and every wait is a bounded poll on an outcome."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlmodel import Session, col, select

from app.api.routes.utils import LIVENESS_PATH
from app.main import API_PREFIX
from app.models.run import ACTIVE_STATUSES, Run, RunStatus
from app.models.thread import Message, MessageRole, Thread
from app.models.usage import UsageEntry
from app.models.user import User
from app.services.run_runtime import RunPolicy
from tests.environment import engine, settings
from tests.factories import run_policy
from tests.modules.fake_llm import FakeLLM, FakeResponse, completion_body
from tests.redis_server import RedisServer
from tests.tasks.conftest import Committed, celery_dispatcher, real_app

T = TypeVar("T")

# Bounds on waiting, never expectations of speed: outcomes are asserted, not durations.
WAIT_SECONDS = 60.0
REQUEST_GUARD_SECONDS = 30.0
# Answers later than any test waits: the call is in flight when its executor is killed.
SLOW_CALL = FakeResponse(json=completion_body("Never heard.", 5, 3), delay=30)
FAST_RUNS = {
    "RUN_LEASE_SECONDS": "3",
    "RUN_SWEEP_INTERVAL_SECONDS": "0.5",
    "RUN_REDELIVER_SECONDS": "1",
    "CELERY_PUBLISH_TIMEOUT_SECONDS": "1",
}


def fast_policy() -> RunPolicy:
    """The in-test app's timings, as FAST_RUNS gives them to the processes."""
    return run_policy(
        lease=timedelta(seconds=3), sweep_interval=0.5, redeliver_after=timedelta(seconds=1)
    )


def wait_until(what: str, check: Callable[[], T | None]) -> T:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        result = check()
        if result is not None:
            return result
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def process_env(fake_llm: FakeLLM, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "DATA_DIR": str(data_dir),
        "SECRET_KEY": settings.secret_key,  # the tokens of the tests' users verify
        "LLM_PROVIDERS__OPENAI__BASE_URL": fake_llm.base_url,
        **FAST_RUNS,
        **extra,
    }
    if "CELERY_BROKER_URL" not in extra:
        env.pop("CELERY_BROKER_URL", None)
    return env


@contextmanager
def agentry(*args: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`agentry <args>` as a process of its own, ended however the test ends."""
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args], env=env, stdout=out, stderr=out
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def sigkill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def stored_run(run_id: uuid.UUID) -> Run:
    with Session(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def finished_run(run_id: uuid.UUID) -> Run:
    def finished() -> Run | None:
        run = stored_run(run_id)
        return None if run.status in ACTIVE_STATUSES else run

    return wait_until(f"run {run_id} to finish", finished)


def ledger(run_id: uuid.UUID) -> list[UsageEntry]:
    with Session(engine) as session:
        return list(session.exec(select(UsageEntry).where(UsageEntry.run_id == run_id)).all())


def assistant_messages(thread: Thread) -> list[str]:
    with Session(engine) as session:
        statement = select(Message.content).where(
            Message.thread_id == thread.id, Message.role == MessageRole.ASSISTANT
        )
        return list(session.exec(statement).all())


def assert_interrupted(run: Run) -> None:
    assert (run.status, run.error_code) == (RunStatus.FAILED, "run_interrupted")
    assert run.reserved_usd == 0
    assert (run.lease_owner, run.lease_expires_at) == (None, None)
    assert ledger(run.id) == []  # the call never came back: nothing to bill


def post_guarded(client: TestClient, thread: Thread, headers: dict[str, str]) -> uuid.UUID:
    """Posts from another thread, so that a request that never ends fails the test."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        response = pool.submit(
            client.post,
            f"{API_PREFIX}/threads/{thread.id}/messages",
            headers=headers,
            json={"content": "Anyone there?"},
        ).result(timeout=REQUEST_GUARD_SECONDS)
    finally:
        pool.shutdown(wait=False)
    assert response.status_code == 202, response.text
    return uuid.UUID(response.json()["run"]["id"])


@pytest.fixture
def first_superuser_email() -> Iterator[str]:
    """`agentry serve` creates a first superuser when there is none; this one goes after."""
    email = f"first-{uuid.uuid4().hex[:10]}@example.com"
    yield email
    with Session(engine) as session:
        session.execute(delete(User).where(col(User.email) == email))
        session.commit()


# ==================== executors killed mid-run ====================


def test_a_run_in_flight_when_the_app_is_killed_fails_when_it_restarts(
    committed: Committed, fake_llm: FakeLLM, tmp_path: Path, first_superuser_email: str
) -> None:
    fake_llm.script(SLOW_CALL)
    port = free_port()
    env = process_env(fake_llm, tmp_path, FIRST_SUPERUSER_EMAIL=first_superuser_email)
    log = tmp_path / "serve.log"
    thread = committed.threads[0]
    url = f"http://127.0.0.1:{port}{API_PREFIX}"

    def serving(server: subprocess.Popen[bytes], http: httpx2.Client) -> None:
        def ready() -> bool | None:
            assert server.poll() is None, f"the server exited:\n{tail(log)}"
            try:
                return http.get(LIVENESS_PATH).status_code == 200 or None
            except httpx2.TransportError:
                return None

        wait_until("the server to answer", ready)

    def post(http: httpx2.Client) -> uuid.UUID:
        response = http.post(
            f"/threads/{thread.id}/messages",
            headers=committed.headers,
            json={"content": "Still there?"},
        )
        assert response.status_code == 202, response.text
        return uuid.UUID(response.json()["run"]["id"])

    with (
        agentry("serve", "--port", str(port), env=env, log=log) as server,
        httpx2.Client(base_url=url, timeout=REQUEST_GUARD_SECONDS) as http,
    ):
        serving(server, http)
        killed = post(http)
        wait_until("the provider to get the call", lambda: fake_llm.requests or None)
        sigkill(server)
    assert stored_run(killed).status == RunStatus.RUNNING  # nobody ended it: it was killed

    with (
        agentry("serve", "--port", str(port), env=env, log=log) as server,
        httpx2.Client(base_url=url, timeout=REQUEST_GUARD_SECONDS) as http,
    ):
        serving(server, http)
        assert_interrupted(finished_run(killed))
        again = post(http)  # the thread is free again
        assert finished_run(again).status == RunStatus.SUCCEEDED
    assert len(fake_llm.requests) == 2  # the interrupted call was never sent again


@pytest.mark.skipif(engine.dialect.name != "postgresql", reason="needs concurrent writers")
def test_a_run_on_a_killed_celery_worker_fails_without_a_worker_restart(
    committed: Committed, fake_llm: FakeLLM, broker_url: str, tmp_path: Path
) -> None:
    fake_llm.script(SLOW_CALL)
    env = process_env(fake_llm, tmp_path, CELERY_BROKER_URL=broker_url)
    app = real_app(celery_dispatcher(broker_url, policy=fast_policy(), publish_timeout=1))
    with (
        agentry("worker", "--concurrency", "2", env=env, log=tmp_path / "worker.log") as worker,
        TestClient(app) as client,
    ):
        run_id = post_guarded(client, committed.threads[0], committed.headers)
        wait_until("the provider to get the call", lambda: fake_llm.requests or None)
        sigkill(worker)
        assert_interrupted(finished_run(run_id))  # swept by the app once the lease ran out


# ==================== the broker down ====================


def test_a_post_while_the_broker_is_down_stays_queued_and_runs_once_it_is_back(
    committed: Committed,
    fake_llm: FakeLLM,
    redis_server: RedisServer,
    broker_url: str,
    tmp_path: Path,
) -> None:
    fake_llm.script(FakeResponse(json=completion_body("Late but here.", 5, 3)))
    env = process_env(fake_llm, tmp_path, CELERY_BROKER_URL=broker_url)
    thread = committed.threads[0]
    redis_server.stop()
    with TestClient(
        real_app(celery_dispatcher(broker_url, policy=fast_policy(), publish_timeout=1))
    ) as client:
        run_id = post_guarded(client, thread, committed.headers)
        assert stored_run(run_id).status == RunStatus.QUEUED
        redis_server.start()
        with agentry("worker", "--concurrency", "2", env=env, log=tmp_path / "worker.log"):
            run = finished_run(run_id)
    assert run.status == RunStatus.SUCCEEDED, run
    assert assistant_messages(thread) == ["Late but here."]
    assert [entry.output_tokens for entry in ledger(run_id)] == [3]
    assert len(fake_llm.requests) == 1


def test_posts_while_redis_is_stopped_each_run_once_it_is_back(
    committed: Committed,
    fake_llm: FakeLLM,
    redis_server: RedisServer,
    broker_url: str,
    tmp_path: Path,
) -> None:
    env = process_env(fake_llm, tmp_path, CELERY_BROKER_URL=broker_url)
    first, *during = committed.threads[:5]
    app = real_app(celery_dispatcher(broker_url, policy=fast_policy(), publish_timeout=1))
    with (
        agentry("worker", "--concurrency", "2", env=env, log=tmp_path / "worker.log"),
        TestClient(app) as client,
    ):
        # A first turn proves the worker is consuming before Redis goes away under it.
        warm_up = post_guarded(client, first, committed.headers)
        assert finished_run(warm_up).status == RunStatus.SUCCEEDED
        redis_server.stop()
        run_ids = [post_guarded(client, thread, committed.headers) for thread in during]
        redis_server.start()
        runs = [finished_run(run_id) for run_id in run_ids]
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * len(during)
    for thread, run in zip(during, runs, strict=True):
        assert len(assistant_messages(thread)) == 1
        assert len(ledger(run.id)) == 1
    assert len(fake_llm.requests) == 1 + len(during)  # no run was executed twice
