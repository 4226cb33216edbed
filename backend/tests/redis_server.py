"""A private redis-server on 127.0.0.1, for tests that break Redis on purpose.

    with RedisServer() as server:
        client = redis.Redis.from_url(server.url(db=1))
        server.freeze()    # accepts TCP connections, never answers
        server.thaw()
        server.kill()      # SIGKILL: no goodbye to its clients
        server.restart()   # the same port, an empty dataset

Nothing is persisted (no RDB, no AOF) and nothing is written outside a temporary
directory. The process is reaped by `stop()`, by leaving the `with` block, or at the
latest when the interpreter exits, so a failing test never leaves one behind.
"""

import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

STARTUP_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0


class RedisServerError(RuntimeError):
    """The server could not be started, or was used in a state that forbids it."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _reap(process: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    """Ends the process however it is: a stopped one must be continued to hear SIGTERM."""
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        log.close()


class RedisServer:
    def __init__(
        self,
        *,
        executable: str = "redis-server",
        startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
    ) -> None:
        self.executable = executable
        self.startup_timeout = startup_timeout
        self.port = _free_port()
        self._workdir = tempfile.TemporaryDirectory(prefix="agentry-redis-")
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: Callable[[], object] | None = None  # reaps the current process
        self._frozen = False

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def running(self) -> bool:
        """The process exists (it may be frozen)."""
        return self._process is not None and self._process.poll() is None

    @property
    def frozen(self) -> bool:
        return self._frozen

    @property
    def pid(self) -> int:
        return self._running_process().pid

    def start(self) -> None:
        """Starts the server on `self.port` and returns once it answers PING."""
        if self.running:
            raise RedisServerError(f"redis-server is already running on port {self.port}")
        log_path = Path(self._workdir.name) / "redis.log"
        log = open(log_path, "ab")  # noqa: SIM115 - closed by _reap
        try:
            process = subprocess.Popen(
                [self.executable, *self._arguments()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        except BaseException:
            log.close()
            raise
        self._process = process
        self._frozen = False
        self._finalizer = weakref.finalize(self, _reap, process, log)
        try:
            self._wait_until_ready(process, log_path)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Shuts the server down (SIGTERM) and waits for it; thaws it first if frozen."""
        self._end()

    def kill(self) -> None:
        """Ends the server at once (SIGKILL): its clients' connections just break."""
        process = self._running_process()
        process.kill()
        process.wait()
        self._end()

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections, the server answers nothing."""
        self._running_process().send_signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """SIGCONT: the server answers again, starting with whatever queued up."""
        self._running_process().send_signal(signal.SIGCONT)
        self._frozen = False

    def restart(self) -> None:
        """Stops the server if it runs, then starts a new one on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        self._workdir.cleanup()

    def _arguments(self) -> list[str]:
        return [
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),  # nothing on disk, nothing to reload
            *("--daemonize", "no", "--dir", self._workdir.name),
        ]

    def _end(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs _reap once; a no-op if it already ran
        self._finalizer = None
        self._process = None
        self._frozen = False

    def _running_process(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            raise RedisServerError(f"redis-server is not running on port {self.port}")
        return self._process

    def _wait_until_ready(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        """Until PING answers, from this very process (not another one on a reused port)."""
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise RedisServerError(
                        f"redis-server exited with status {process.returncode} on port "
                        f"{self.port}:\n{_tail(log_path)}"
                    )
                try:
                    if client.ping() and client.info("server")["process_id"] == process.pid:
                        return
                    last_error = RedisServerError("another server answers on this port")
                except redis.RedisError as exc:
                    last_error = exc
                time.sleep(0.02)
        finally:
            client.close()
        raise RedisServerError(
            f"redis-server did not answer PING on port {self.port} within "
            f"{self.startup_timeout:g}s (last error: {last_error!r}):\n{_tail(log_path)}"
        )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"
