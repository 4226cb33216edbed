"""`agentry serve`: the served app, in processes of its own."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from app.core.migrations import alembic_config
from app.core.serving import SWITCH_INTERVAL_SECONDS, YOUNG_THRESHOLD

READY_SECONDS = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _environment(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ENVIRONMENT": "development",
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path}/served.db",
        "LOG_LEVEL": "WARNING",
    }


def test_serve_migrates_then_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as output:
        server = subprocess.Popen(
            command,
            env=_environment(tmp_path),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + READY_SECONDS
        ready: httpx2.Response | None = None
        while ready is None and time.monotonic() < deadline and server.poll() is None:
            try:
                ready = httpx2.get(f"{base}/utils/readiness", timeout=2)
            except httpx2.TransportError:
                time.sleep(0.1)
        assert ready is not None, log.read_text(errors="replace")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok"}
        anonymous = httpx2.get(f"{base}/users/me", timeout=2)
        assert anonymous.status_code == 401
        assert anonymous.json()["code"] == "invalid_token"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            returncode = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()  # no server left behind by a failed run
            server.wait()
            raise
    # uvicorn shuts down, then raises the signal again so that the exit status says it.
    assert returncode in (0, -signal.SIGTERM)
    assert "Traceback" not in log.read_text(errors="replace")
    engine = create_engine(f"sqlite:///{tmp_path}/served.db")
    try:
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
    assert stored == ScriptDirectory.from_config(alembic_config()).get_current_head()


PROBE = """
import gc, json, sys
from fastapi.testclient import TestClient
from app.main import create_served_app

app = create_served_app()
walked = {id(thing) for thing in gc.get_objects()}
with TestClient(app) as client:
    status = client.get("/api/v1/users/me").status_code
print(json.dumps({
    "frozen": gc.get_freeze_count(),
    "walked": len(walked),
    "app_walked": id(app) in walked,
    "routes_walked": any(id(route) in walked for route in app.routes),
    "threshold": gc.get_threshold(),
    "switch_interval": sys.getswitchinterval(),
    "status": status,
}))
"""


def test_a_served_app_is_kept_out_of_the_collectors_walks(tmp_path: Path) -> None:
    """What the serving process holds once the app is built is frozen (the collector's
    permanent generation), young collections wait for YOUNG_THRESHOLD allocations, and
    threads hand the interpreter over every SWITCH_INTERVAL_SECONDS when none waits."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert state["app_walked"] is False
    assert state["routes_walked"] is False
    assert state["frozen"] > 10 * state["walked"]  # the bulk of the process, not a corner
    assert state["threshold"][0] == YOUNG_THRESHOLD
    assert state["switch_interval"] == pytest.approx(SWITCH_INTERVAL_SECONDS)
    assert state["status"] == 401  # and it serves
