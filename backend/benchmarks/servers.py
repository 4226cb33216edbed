"""The processes a benchmark starts and stops: the app, the reference, the bare route and
the helpers it runs to the end; and the throwaway PostgreSQL database it may create."""

import math
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx2
import psycopg
from psycopg import sql
from sqlalchemy.engine import URL, make_url

BACKEND_DIR = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
LOG_TAIL_LINES = 30


class ServerError(Exception):
    """A process the benchmark needs did not start or did not finish."""


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if not self.log.closed:
            self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the process and its descendants (uvicorn's workers)
        have used so far; NaN where there is no /proc."""
        return cpu_seconds(self.popen.pid)

    def stop(self) -> None:
        """SIGTERM, a graceful wait, then SIGKILL for whatever its process group still holds
        (uvicorn's workers included): the group is ours, started in its own session."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self.log.close()


def cpu_seconds(root: int) -> float:
    proc = Path("/proc")
    if not proc.is_dir():
        return math.nan
    children: dict[int, list[int]] = {}
    used: dict[int, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces; the fields after its ")" do not.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        pid = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(pid)
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    total, pending = 0.0, [root]
    while pending:
        pid = pending.pop()
        total += used.get(pid, 0.0)
        pending += children.get(pid, [])
    return total


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent running something (all CPUs, every process:
    user, nice, system, interrupts); NaN where there is no /proc/stat."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(field) for field in stat.readline().split()[1:8]]
        user, nice, system, _idle, _iowait, irq, softirq = fields
    except (OSError, ValueError):
        return math.nan
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def spawn(name: str, args: list[str], *, env: Mapping[str, str], log_dir: Path) -> Process:
    log_path = log_dir / f"{name}.log"
    log = log_path.open("wb")
    popen = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        [sys.executable, *args],
        cwd=BACKEND_DIR,  # where `app` and `benchmarks` import from
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own process group: Ctrl-C reaches only us, and we stop it in order.
        start_new_session=True,
    )
    return Process(name, popen, log_path, log)


def start_app(*, port: int, workers: int, env: Mapping[str, str], log_dir: Path) -> Process:
    args = ["-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return spawn("app", [*args, "--workers", str(workers)], env=env, log_dir=log_dir)


def start_uvicorn(
    name: str, target: str, *, port: int, workers: int, env: Mapping[str, str], log_dir: Path
) -> Process:
    """`module:app` under uvicorn, as the app serves: access log off, warnings only."""
    args = ["-m", "uvicorn", target, "--host", "127.0.0.1"]
    args += ["--port", str(port), "--workers", str(workers)]
    # The app turns uvicorn's access log off too; logging each request is not measured.
    args += ["--log-level", "warning", "--no-access-log"]
    return spawn(name, args, env=env, log_dir=log_dir)


def wait_ready(
    process: Process,
    url: str,
    *,
    timeout: float = READY_TIMEOUT,
    headers: Mapping[str, str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    with httpx2.Client(timeout=2.0, headers=dict(headers or {})) as client:
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise ServerError(f"{process.name} exited early:\n{process.tail()}")
            try:
                if client.get(url).status_code == httpx2.codes.OK:
                    return
            except httpx2.TransportError:
                pass  # not listening yet
            time.sleep(0.2)
    raise ServerError(f"{process.name} not ready after {timeout:.0f} s:\n{process.tail()}")


def run_to_end(name: str, args: list[str], *, env: Mapping[str, str], log_dir: Path) -> None:
    process = spawn(name, args, env=env, log_dir=log_dir)
    try:
        code = process.popen.wait()
        if code != 0:
            raise ServerError(f"{name} failed with exit code {code}:\n{process.tail()}")
    finally:
        process.stop()


# ==================== PostgreSQL ====================


def _libpq(url: URL) -> str:
    # psycopg speaks libpq URIs, which know no "+driver" suffix.
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(admin_url: str, name: str) -> str:
    """Create database `name` next to the admin URL's; return the URL that names it."""
    admin = make_url(admin_url)
    with psycopg.connect(_libpq(admin), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _libpq(admin.set(database=name))


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(_libpq(make_url(admin_url)), autocommit=True) as connection:
        # FORCE: a server killed mid-request may leave a connection behind.
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        connection.execute(statement.format(sql.Identifier(name)))


def delete_agents_named(database_url: str, name: str) -> None:
    """The benchmark's own upkeep: remove the agents its writes added."""
    if database_url.startswith("sqlite"):
        path = make_url(database_url).database or ""
        with closing(sqlite3.connect(path, timeout=30)) as lite, lite:
            lite.execute("DELETE FROM agent WHERE name = ?", (name,))
        return
    with psycopg.connect(_libpq(make_url(database_url)), autocommit=True) as connection:
        connection.execute("DELETE FROM agent WHERE name = %s", (name,))
