"""Benchmark a live Agentry server against a bare FastAPI route measured in the same run.

    cd backend && uv run python -m benchmarks.run --help

Starts the app and the yardstick itself, seeds its own data, prints one table per
concurrency, and exits 1 if any request failed, timed out or stalled.
"""

import argparse
import asyncio
import json
import math
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode

import httpx2

from benchmarks import PAGE_SIZE, PAGING_THREAD_MESSAGES, load, servers, yardstick
from benchmarks.load import Phase, Target

API = "/api/v1"
YARDSTICK = "yardstick: bare sync route"
# Long enough for any run; the benchmark mints tokens once, before the first request.
TOKEN_MINUTES = 12 * 60


@dataclass
class Plan:
    """Who sends what: seeded tokens and rows, turned into per-endpoint request cycles."""

    endpoints: dict[str, list[Target]]
    counts: dict[str, int]


@dataclass
class Report:
    meta: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)
    errors: int = 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.database_url and args.postgres_admin_url:
        parser.error("give --database-url or --postgres-admin-url, not both")
    if args.messages < PAGING_THREAD_MESSAGES:
        parser.error(f"--messages must be at least {PAGING_THREAD_MESSAGES}")
    # A plain `kill` must clean up like Ctrl-C does: servers stopped, database dropped.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix="agentry-bench-"))
    database_name: str | None = None
    processes: list[servers.Process] = []
    try:
        database_url = args.database_url or f"sqlite:///{(workdir / 'bench.db').as_posix()}"
        if args.postgres_admin_url:
            database_name = f"agentry_bench_{secrets.token_hex(4)}"
            database_url = servers.create_database(args.postgres_admin_url, database_name)
        env = _server_env(database_url, workdir)
        port = args.port or servers.free_port()
        app = servers.start_app(port=port, workers=args.workers, env=env, log_dir=workdir)
        processes.append(app)
        app_url = f"http://127.0.0.1:{port}"
        servers.wait_ready(app, f"{app_url}{API}/utils/readiness")
        plan = _seed(args, env, workdir, app_url)
        stick_port = servers.free_port()
        stick = servers.start_yardstick(
            port=stick_port, workers=args.workers, env=env, log_dir=workdir
        )
        processes.append(stick)
        stick_url = f"http://127.0.0.1:{stick_port}"
        servers.wait_ready(stick, f"{stick_url}{yardstick.PATH}")

        engine = "postgresql" if database_url.startswith("postgres") else "sqlite"
        report = Report(meta={"engine": engine, "workers": args.workers, **plan.counts})
        report.meta["duration"] = args.duration
        for concurrency in args.concurrency:
            print(_header(report.meta, concurrency), flush=True)
            rows = asyncio.run(_run_all(plan, app_url, stick_url, concurrency, args.duration))
            report.runs.append({"concurrency": concurrency, "endpoints": rows})
            report.errors += sum(row["errors"] for row in rows)
            print(_table(rows), end="\n\n", flush=True)
        if report.errors:
            print(f"app log (last lines):\n{app.tail()}\n", file=sys.stderr)
        print(f"errors: {report.errors}")
        if args.json:
            args.json.write_text(json.dumps(report.__dict__, indent=2) + "\n")
        return 1 if report.errors else 0
    except servers.ServerError as error:
        print(f"benchmark: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchmark: interrupted; stopping the servers", file=sys.stderr)
        return 130
    finally:
        for process in reversed(processes):
            process.stop()
        if database_name is not None:
            servers.drop_database(args.postgres_admin_url, database_name)
        shutil.rmtree(workdir, ignore_errors=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Requests per second, p50 and p99 of Agentry's hot endpoints, "
        "beside a bare sync FastAPI route measured in the same run.",
    )
    parser.add_argument(
        "--database-url",
        help="a database to migrate and seed (default: a fresh SQLite file in a temp dir)",
    )
    parser.add_argument(
        "--postgres-admin-url",
        help="create a fresh PostgreSQL database through this URL, drop it at the end "
        "(e.g. postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    parser.add_argument("--workers", type=_positive, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--concurrency",
        type=_concurrencies,
        default=[32, 256],
        help="connections, comma-separated (default: 32,256)",
    )
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds per endpoint per concurrency"
    )
    parser.add_argument("--users", type=_positive, default=300)
    parser.add_argument("--agents-per-user", type=_positive, default=10)
    parser.add_argument(
        "--messages",
        type=int,
        default=2000,
        help=f"spread over threads of a few users; at least {PAGING_THREAD_MESSAGES}",
    )
    parser.add_argument("--port", type=int, default=0, help="the app's port (0: a free one)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def _concurrencies(text: str) -> list[int]:
    return [_positive(part) for part in text.split(",") if part.strip()]


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _server_env(database_url: str, workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        DATA_DIR=str(workdir / "data"),
        SECRET_KEY=secrets.token_urlsafe(48),
        ENVIRONMENT="development",
        LOG_LEVEL="WARNING",  # a line per request would be part of what we measure
        ACCESS_TOKEN_EXPIRE_MINUTES=str(TOKEN_MINUTES),
    )
    # Enough connections for every threadpool thread (THREADPOOL_SIZE, 40 by default), so
    # requests wait for a thread, not a connection; the environment may say otherwise.
    env.setdefault("DB_POOL_SIZE", "20")
    env.setdefault("DB_MAX_OVERFLOW", "20")
    return env


def _seed(args: argparse.Namespace, env: dict[str, str], workdir: Path, app_url: str) -> Plan:
    out = workdir / "fixture.json"
    seed_args = ["-m", "benchmarks.seed", "--users", str(args.users), "--out", str(out)]
    seed_args += ["--agents-per-user", str(args.agents_per_user)]
    seed_args += ["--messages", str(args.messages)]
    servers.run_to_end("seed", seed_args, env=env, log_dir=workdir)
    fixture = json.loads(out.read_text())
    print(f"seeded {fixture['counts']} in {fixture['seconds']} s", file=sys.stderr, flush=True)
    users = fixture["users"]
    endpoints = {
        "GET /users/me": [Target(f"{API}/users/me", token=user["token"]) for user in users],
        "GET /agents/{agent_id}": [
            Target(f"{API}/agents/{agent_id}", token=user["token"])
            for user in users
            for agent_id in user["agent_ids"]
        ],
        "GET /agents?limit=20": [
            Target(f"{API}/agents?limit=20", token=user["token"]) for user in users
        ],
        "GET /threads/{id}/messages page 2": _second_pages(app_url, fixture["threads"]),
        # Last: it adds agents, so within a round the reads before it see the seeded ones only.
        "POST /agents": [
            Target(
                f"{API}/agents",
                method="POST",
                token=user["token"],
                body={"name": "Benchmark agent"},
                expect=httpx2.codes.CREATED,
            )
            for user in users
        ],
    }
    return Plan(endpoints=endpoints, counts=fixture["counts"])


def _second_pages(app_url: str, threads: list[dict[str, Any]]) -> list[Target]:
    """The cursor of each long thread's first page, fetched once, as the second page."""
    targets = []
    with httpx2.Client(base_url=app_url, timeout=load.REQUEST_TIMEOUT) as client:
        for thread in threads:
            path = f"{API}/threads/{thread['thread_id']}/messages"
            headers = {"Authorization": f"Bearer {thread['token']}"}
            first = client.get(path, params={"limit": PAGE_SIZE}, headers=headers)
            if first.status_code != httpx2.codes.OK or not first.json()["next_cursor"]:
                raise servers.ServerError(
                    f"first page of messages: HTTP {first.status_code} {first.text[:300]}"
                )
            query = urlencode({"limit": PAGE_SIZE, "cursor": first.json()["next_cursor"]})
            targets.append(Target(f"{path}?{query}", token=thread["token"]))
    return targets


async def _run_all(
    plan: Plan, app_url: str, stick_url: str, concurrency: int, seconds: float
) -> list[dict[str, Any]]:
    stick = await load.measure(
        stick_url, [Target(yardstick.PATH)], concurrency=concurrency, seconds=seconds
    )
    rows = [_row(YARDSTICK, stick, stick.rps)]
    for name, targets in plan.endpoints.items():
        phase = await load.measure(app_url, targets, concurrency=concurrency, seconds=seconds)
        rows.append(_row(name, phase, stick.rps))
    return rows


def _row(name: str, phase: Phase, yardstick_rps: float) -> dict[str, Any]:
    return {
        "endpoint": name,
        "requests": phase.requests,
        "rps": round(phase.rps, 1),
        "p50_ms": _round(phase.percentile_ms(50)),
        "p99_ms": _round(phase.percentile_ms(99)),
        "errors": phase.error_count,
        "error_kinds": dict(phase.errors),
        "pct_of_yardstick": round(100 * phase.rps / yardstick_rps, 1) if yardstick_rps else None,
    }


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 1)


def _header(meta: dict[str, Any], concurrency: int) -> str:
    return (
        f"engine {meta['engine']} | workers {meta['workers']} | concurrency {concurrency} | "
        f"{meta['duration']:g} s per endpoint | seeded {meta['users']} users, "
        f"{meta['agents']} agents, {meta['messages']} messages in {meta['threads']} threads"
    )


def _table(rows: list[dict[str, Any]]) -> str:
    columns = ("endpoint", "requests/s", "p50 ms", "p99 ms", "errors", "% of yardstick")
    lines = [
        (
            row["endpoint"],
            f"{row['rps']:.0f}",
            _cell(row["p50_ms"]),
            _cell(row["p99_ms"]),
            str(row["errors"]) + _kinds(row["error_kinds"]),
            _cell(row["pct_of_yardstick"]),
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [columns, *lines]) for i in range(len(columns))]

    def render(cells: Sequence[str]) -> str:
        first, *rest = cells
        return " | ".join(
            [first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        )

    rule = "-+-".join("-" * width for width in widths)
    return "\n".join([render(columns), rule, *(render(line) for line in lines)])


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _kinds(kinds: dict[str, int]) -> str:
    if not kinds:
        return ""
    return " (" + ", ".join(f"{kind}: {count}" for kind, count in sorted(kinds.items())) + ")"


if __name__ == "__main__":
    sys.exit(main())
