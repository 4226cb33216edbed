"""SQL statements per request, counted: each endpoint's requests sent in-process (TestClient)
to Agentry (`create_app`) and to the reference, with a `before_cursor_execute` listener on
each app's engine.

Run by `benchmarks.run` in a subprocess with exactly the servers' environment (the same
database and settings), after seeding. Only statements run on the threads that serve
requests count: the app's background delivery threads are not the request's work.
BEGIN, COMMIT and ROLLBACK are not statements here (the driver sends them without a
cursor); pool pre-ping is not either.
"""

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from app.core.threads import THREAD_NAME_PREFIX
from app.main import create_app
from benchmarks import reference

# Sync routes and dependencies run on anyio's worker threads (the reference), or on the
# request threads of Agentry's executor (app/core/threads.py).
REQUEST_THREADS = ("AnyIO worker thread", THREAD_NAME_PREFIX)


class Counter:
    def __init__(self, engine: Engine) -> None:
        self.statements: list[str] = []
        event.listen(engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, *args: Any) -> None:
        if threading.current_thread().name.startswith(REQUEST_THREADS):
            self.statements.append(" ".join(str(args[2]).split()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Count SQL per request (used by benchmarks.run).")
    parser.add_argument("--requests", type=Path, required=True, help="JSON: endpoint -> requests")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    plan: dict[str, list[dict[str, Any]]] = json.loads(args.requests.read_text())
    agentry = create_app()
    counted = {
        "agentry": _count(agentry, agentry.state.engine, plan, args.repeat),
        "reference": _count(reference.app, reference.engine, plan, args.repeat),
    }
    args.out.write_text(json.dumps(counted))
    return 0


def _count(
    app: FastAPI, engine: Engine, plan: dict[str, list[dict[str, Any]]], repeat: int
) -> dict[str, Any]:
    counter = Counter(engine)
    found: dict[str, Any] = {}
    one: list[str] = []
    with TestClient(app) as client:
        for name, requests in plan.items():
            _send(client, requests[0])  # untimed and uncounted: first-use work
            counter.statements.clear()
            for number in range(repeat):
                _send(client, requests[number % len(requests)])
                if number == 0:
                    one = list(counter.statements)
            found[name] = {"per_request": len(counter.statements) / repeat, "one": one}
    return found


def _send(client: TestClient, request: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {request['token']}"}
    response = client.request(
        request["method"], request["path"], headers=headers, json=request["body"]
    )
    if response.status_code != request["expect"]:
        raise RuntimeError(
            f"{request['method']} {request['path']}: HTTP {response.status_code} "
            f"{response.text[:300]}"
        )


if __name__ == "__main__":
    sys.exit(main())
