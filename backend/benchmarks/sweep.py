"""What a run sweep costs: with nothing to do (the common case, every few seconds in every
process) and with a batch of expired leases, over a table of finished runs.

    cd backend && uv run python -m benchmarks.sweep [--runs 10000] [--database-url URL]

Without --database-url it uses a fresh SQLite file; with one (an empty PostgreSQL
database, say) it migrates it first. Prints the median and p99 of each case.
"""

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

_parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
_parser.add_argument("--runs", type=int, default=10_000, help="finished runs in the table")
_parser.add_argument("--expired", type=int, default=100, help="runs with an expired lease")
_parser.add_argument("--repeat", type=int, default=200, help="sweeps timed per case")
_parser.add_argument("--database-url", default=None)
ARGS = _parser.parse_args()
os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="agentry-sweep-")
os.environ["DATABASE_URL"] = ARGS.database_url or f"sqlite:///{os.environ['DATA_DIR']}/sweep.db"
os.environ.setdefault("LOG_LEVEL", "ERROR")

from sqlmodel import Session  # noqa: E402

from app.core import migrations  # noqa: E402
from app.core.config import load_settings  # noqa: E402
from app.core.db import create_db_engine, utcnow  # noqa: E402
from app.models.run import Run, RunStatus  # noqa: E402
from app.models.user import User  # noqa: E402
from app.services.run_service import RunService  # noqa: E402
from app.tasks.resources import session_factory_for  # noqa: E402
from tests.factories import run_policy  # noqa: E402

BATCH = 1_000
engine = create_db_engine(load_settings())
default_session = session_factory_for(engine)


def seed(session: Session, owner: User, *, count: int, **fields: Any) -> None:
    now = utcnow()
    for start in range(0, count, BATCH):
        session.add_all(
            Run(
                thread_id=uuid.uuid4(),
                owner_id=owner.id,
                agent_id=uuid.uuid4(),
                model_id=uuid.uuid4(),
                user_message_id=uuid.uuid4(),
                max_output_tokens=100,
                temperature=1.0,
                context_window=8_000,
                input_price_per_million=Decimal(1),
                output_price_per_million=Decimal(1),
                created_at=now - timedelta(seconds=count - i),
                **fields,
            )
            for i in range(start, min(start + BATCH, count))
        )
        session.commit()


def timed(action: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def report(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{name:<44} median {statistics.median(ordered):7.3f} ms   p99 {p99:7.3f} ms")


def main() -> int:
    logging.getLogger("agentry").setLevel(logging.ERROR)  # each sweep that acts logs a line
    migrations.upgrade(engine, "head")
    policy = run_policy()
    delivered: list[uuid.UUID] = []
    with Session(engine, expire_on_commit=False) as session:
        owner = User(email=f"sweep-{uuid.uuid4().hex[:8]}@example.com", hashed_password="-")  # noqa: S106
        session.add(owner)
        session.commit()
        seed(session, owner, count=ARGS.runs, status=RunStatus.SUCCEEDED)

    def sweep() -> None:
        RunService.sweep(session_factory=default_session, policy=policy, dispatch=delivered.append)

    print(f"{engine.dialect.name}, {ARGS.runs:,} finished runs in the table")
    report("sweep, nothing due", timed(sweep, ARGS.repeat))

    batches = []
    for _ in range(max(1, ARGS.repeat // 20)):
        with Session(engine, expire_on_commit=False) as session:
            seed(
                session,
                owner,
                count=ARGS.expired,
                status=RunStatus.RUNNING,
                lease_owner="gone/1/dead/run",
                lease_expires_at=utcnow() - timedelta(seconds=1),
            )
        batches += timed(sweep, 1)
    report(f"sweep, {ARGS.expired} expired leases to fail", batches)
    return 0


if __name__ == "__main__":
    sys.exit(main())
