"""`agentry worker` as a process: it outlives Redis restarts, and when it stops it says why
and exits non-zero, so that a supervisor restarts it. Runs here are committed rows (the
worker has its own connections); the `committed` fixture removes them."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from app.main import create_app
from app.models.run import Run, RunStatus
from tests.environment import engine
from tests.factories import run_policy
from tests.modules.fake_llm import FakeLLM, FakeResponse, completion_body
from tests.redis_server import RedisServer
from tests.tasks.conftest import Committed, celery_dispatcher

OUTAGE_SECONDS = 2.0
DEADLINE_SECONDS = 60.0


@pytest.fixture
def private_broker(redis_server: RedisServer) -> str:
    return redis_server.url()


@pytest.fixture
def worker_log(tmp_path: Path) -> Path:
    return tmp_path / "worker.log"


def start_worker(log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--concurrency", "2"],
            env={**os.environ, "LOG_LEVEL": "INFO", **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def stop_at_exit() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def run_status(run_id: uuid.UUID) -> RunStatus:
    with Session(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run.status


def wait_until(
    done: Callable[[], object], worker: subprocess.Popen[bytes], log: Path, what: str
) -> None:
    """Polls `done()` while the worker lives, for DEADLINE_SECONDS at most."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline and worker.poll() is None:
        if done():
            return
        time.sleep(0.05)
    state = "running" if worker.poll() is None else f"exited with {worker.returncode}"
    tail = log.read_text(errors="replace")[-3000:]
    raise AssertionError(f"{what}: not before the deadline; the worker {state}:\n{tail}")


def test_a_worker_outlives_a_redis_restart_with_a_run_in_flight(
    committed: Committed,
    fake_llm: FakeLLM,
    redis_server: RedisServer,
    private_broker: str,
    worker_log: Path,
    stop_at_exit: list[subprocess.Popen[bytes]],
) -> None:
    # The first answer outlasts the outage: the worker holds that run while Redis is gone.
    fake_llm.script(FakeResponse(json=completion_body("Slow.", 5, 3), delay=OUTAGE_SECONDS + 1.5))
    worker = start_worker(
        worker_log,
        CELERY_BROKER_URL=private_broker,
        DATABASE_URL=engine.url.render_as_string(hide_password=False),
        LLM_PROVIDERS__OPENAI__BASE_URL=fake_llm.base_url,
    )
    stop_at_exit.append(worker)
    app = create_app()
    app.state.run_dispatcher = celery_dispatcher(
        private_broker, policy=run_policy(), publish_timeout=1
    )
    with TestClient(app) as client:

        def post(thread_index: int) -> uuid.UUID:
            thread = committed.threads[thread_index]
            response = client.post(
                f"/api/v1/threads/{thread.id}/messages",
                headers=committed.headers,
                json={"content": f"Question {thread_index}"},
            )
            assert response.status_code == 202, response.text
            return uuid.UUID(response.json()["run"]["id"])

        in_flight = post(0)
        wait_until(lambda: fake_llm.requests, worker, worker_log, "the first run's call")
        redis_server.stop()
        time.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for a result
        redis_server.start()  # the same port, an empty dataset
        after = post(1)
        wait_until(
            lambda: run_status(after) == RunStatus.SUCCEEDED,
            worker,
            worker_log,
            "the run posted after the restart",
        )
        # The first answer may still be on its way: the second run can finish first.
        wait_until(
            lambda: run_status(in_flight) != RunStatus.RUNNING,
            worker,
            worker_log,
            "the run that was in flight",
        )
    assert run_status(in_flight) == RunStatus.SUCCEEDED
    assert len(fake_llm.requests) == 2
    assert worker.poll() is None  # the same process did both
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=DEADLINE_SECONDS) == 0
    output = worker_log.read_text(errors="replace")
    assert "agentry worker: stopped by SIGTERM" in output
    assert "Unrecoverable error" not in output


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # nothing listens on it once the probe is closed


def test_a_worker_whose_database_is_unreachable_exits_with_one_line(
    worker_log: Path, stop_at_exit: list[subprocess.Popen[bytes]]
) -> None:
    port = closed_port()
    worker = start_worker(
        worker_log,
        CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/0",
        DATABASE_URL=f"postgresql+psycopg://agentry@127.0.0.1:{port}/agentry",
    )
    stop_at_exit.append(worker)
    assert worker.wait(timeout=DEADLINE_SECONDS) == 1
    output = worker_log.read_text(errors="replace")
    assert "agentry worker: stopped: cannot reach the database (" in output
    assert "; exit code 1" in output
    assert "Traceback" not in output
