"""Agentry beside a reference app of the canonical shape and a bare sync route, measured
interleaved on the same database and data.

    cd backend && uv run python -m benchmarks.run --help

Starts the three servers itself, seeds its own data, loads each endpoint with wrk (or the
Python generator when wrk is not installed), and prints per connection count the medians
of the rounds: requests/s, p50 and p99 per endpoint and server, Agentry's ratios to the
reference and to the bare route, and the SQL statements per request, counted. Exits 1 if
any request to Agentry or the bare route failed, timed out or stalled.
"""

import argparse
import asyncio
import json
import math
import os
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks import load, servers, wrk, yardstick
from benchmarks.load import Target

API = "/api/v1"
PAGE = 20
# Long enough for any run; the benchmark mints tokens once, before the first request.
TOKEN_MINUTES = 12 * 60
# Rows cycled over per endpoint: enough that no row is hammered, few enough that every
# wrk thread formats them all at start in well under a second.
MAX_TARGETS = 10_000
SQL_REPEAT = 50
WARMUP_SECONDS = 1
SELECT_LIST = re.compile(r"SELECT (.*?) FROM")
CREATED_NAME = "Benchmark agent"  # what POST sends, and what is deleted after each round
SERVERS = ("bare", "reference", "floor", "agentry")
# What the floor serves (benchmarks/floor.py), on PostgreSQL only.
FLOOR_ENDPOINTS = frozenset({"me", "agent"})
# Errors after which a server may still hold requests wrk gave up on.
BACKLOG_ERRORS = {"timeout", "stalled", "read", "connect"}
# Keys for --endpoints, in the order a round runs them: the write last, so the reads of a
# round see the seeded rows (its agents are deleted after each round).
ENDPOINTS = {
    "me": "GET /users/me",
    "agent": "GET /agents/{agent_id}",
    "list": f"GET /agents?limit={PAGE} (page + count)",
    "messages": f"GET /threads/{{id}}/messages?limit={PAGE}",
    "create": "POST /agents",
}


@dataclass(frozen=True)
class Endpoint:
    key: str
    targets: list[Target]

    @property
    def name(self) -> str:
        return ENDPOINTS[self.key]


@dataclass
class Sample:
    """One server's figures for one endpoint in one round."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int] = field(default_factory=dict)
    stalled_windows: int = 0
    cpu_ms: float = math.nan  # the server's CPU time per answered request
    # The whole machine's busy CPUs over the run: the server, the database and wrk.
    machine_cpus: float = math.nan


@dataclass
class Measure:
    generator: str
    workdir: Path
    seconds: int
    wrk_threads: int
    files: dict[str, Path] = field(default_factory=dict)

    def run(
        self,
        url: str,
        name: str,
        targets: list[Target],
        connections: int,
        seconds: int | None = None,
    ) -> Sample:
        seconds = seconds or self.seconds
        if self.generator == "wrk":
            if name not in self.files:
                self.files[name] = self.workdir / f"requests-{len(self.files)}.tsv"
                wrk.write_requests(self.files[name], targets)
            found = wrk.run(
                url,
                self.files[name],
                expect=targets[0].expect,
                connections=connections,
                seconds=seconds,
                threads=self.wrk_threads,
                workdir=self.workdir,
            )
            return Sample(
                found.rps, found.p50_ms, found.p99_ms, found.errors, found.stalled_windows
            )
        phase = asyncio.run(
            load.measure(url, targets, concurrency=connections, seconds=seconds, warmup=0)
        )
        return Sample(
            phase.rps,
            phase.percentile_ms(50),
            phase.percentile_ms(99),
            dict(phase.errors),
            phase.stalled_windows(),
        )


@dataclass
class Fleet:
    """The three servers, each its own process on its own port."""

    env: dict[str, str]
    workdir: Path
    workers: int
    urls: dict[str, str] = field(default_factory=dict)
    processes: dict[str, servers.Process] = field(default_factory=dict)
    ready_headers: dict[str, str] = field(default_factory=dict)

    def start(self, name: str) -> None:
        url = self.urls.setdefault(name, f"http://127.0.0.1:{servers.free_port()}")
        port = int(url.rsplit(":", 1)[1])
        common: dict[str, Any] = {"port": port, "workers": self.workers, "env": self.env}
        if name == "agentry":
            process = servers.start_app(**common, log_dir=self.workdir)
        else:
            target = f"benchmarks.{'yardstick' if name == 'bare' else name}:app"
            process = servers.start_uvicorn(name, target, **common, log_dir=self.workdir)
        self.processes[name] = process
        ready = {
            "agentry": f"{API}/utils/readiness",  # after serving migrated the database
            "reference": f"{API}/users/me",
            "floor": f"{API}/users/me",
            "bare": yardstick.PATH,
        }[name]
        headers = self.ready_headers if name in ("reference", "floor") else None
        servers.wait_ready(process, f"{url}{ready}", headers=headers)

    def restart(self, name: str) -> None:
        """A server left with a backlog would go on working through the next server's run."""
        self.processes.pop(name).stop()
        self.start(name)

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            process.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.database_url and args.postgres_admin_url:
        parser.error("give --database-url or --postgres-admin-url, not both")
    if args.sqlite and (args.database_url or args.postgres_admin_url):
        parser.error("--sqlite is the default; it takes no other database option")
    if args.generator == "wrk" and not wrk.available():
        parser.error("wrk is not installed (apt-get install wrk)")
    generator = "wrk" if args.generator == "auto" and wrk.available() else args.generator
    generator = "python" if generator == "auto" else generator
    # A plain `kill` must clean up like Ctrl-C does: servers stopped, database dropped.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    workdir = Path(tempfile.mkdtemp(prefix="agentry-bench-"))
    database_name: str | None = None
    fleet: Fleet | None = None
    try:
        database_url = args.database_url or f"sqlite:///{(workdir / 'bench.db').as_posix()}"
        if args.postgres_admin_url:
            database_name = f"agentry_bench_{secrets.token_hex(4)}"
            database_url = servers.create_database(args.postgres_admin_url, database_name)
        env = _server_env(database_url, workdir)
        fleet = Fleet(env, workdir, args.workers)
        fleet.start("agentry")
        fixture = _seed(args, env, workdir)
        endpoints = _endpoints(fixture, args.endpoints)
        fleet.ready_headers = {"Authorization": f"Bearer {fixture['users'][0]['token']}"}
        fleet.start("reference")
        fleet.start("bare")
        engine = "postgresql" if database_url.startswith("postgres") else "sqlite"
        if engine == "postgresql" and FLOOR_ENDPOINTS & set(args.endpoints):
            fleet.start("floor")
        sql = _count_sql(endpoints, env, workdir)
        servers.delete_agents_named(database_url, CREATED_NAME)

        meta: dict[str, Any] = {
            "engine": engine,
            "workers": args.workers,
            "rounds": args.rounds,
            "seconds": args.duration,
            "generator": generator,
            "cpus": os.cpu_count(),
            **fixture["counts"],
        }
        if generator == "python":
            print(
                "wrk is not installed (apt-get install wrk): the Python generator loads the "
                "servers instead, and on a small machine it caps the figures (it takes the CPU "
                "the servers need); read the ratios, not the requests/s.",
                file=sys.stderr,
                flush=True,
            )
        measure = Measure(generator, workdir, args.duration, args.wrk_threads)
        bare = [Target(yardstick.PATH)]
        report: dict[str, Any] = {"meta": meta, "sql": sql, "passes": []}
        failures = 0
        for connections in args.connections:
            load_before = os.getloadavg()
            samples = _interleaved(measure, fleet, endpoints, bare, connections, args, database_url)
            rows = [_summary(endpoint, samples[endpoint.key], sql) for endpoint in endpoints]
            print(_header(meta, connections, load_before, os.getloadavg()))
            print(_table(rows, meta["cpus"] or 1), end="\n\n", flush=True)
            failures += sum(
                row[server]["errors"] + row[server]["stalled_windows"]
                for row in rows
                for server in ("bare", "agentry")
            )
            report["passes"].append({"connections": connections, "endpoints": rows})
        print(_sql_table(endpoints, sql))
        if failures:
            print(
                f"agentry log (last lines):\n{fleet.processes['agentry'].tail()}\n", file=sys.stderr
            )
        print(f"errors and stalls (agentry and bare): {failures}")
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        return 1 if failures else 0
    except servers.ServerError as error:
        print(f"benchmark: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchmark: interrupted; stopping the servers", file=sys.stderr)
        return 130
    finally:
        if fleet is not None:
            fleet.stop()
        if database_name is not None:
            servers.drop_database(args.postgres_admin_url, database_name)
        shutil.rmtree(workdir, ignore_errors=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Agentry's hot endpoints beside a canonical reference app and a bare "
        "sync route: requests/s, p50, p99, ratios and SQL statements per request.",
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
    parser.add_argument(
        "--sqlite",
        action="store_true",
        help="a fresh SQLite file in a temp dir (the default without a database option)",
    )
    parser.add_argument(
        "--workers", type=_positive, default=1, help="uvicorn workers, for each server"
    )
    parser.add_argument(
        "--connections",
        "--concurrency",
        type=_positive_list,
        default=[32, 256],
        help="connections, comma-separated; one table each (default: 32,256)",
    )
    parser.add_argument(
        "--duration", type=_positive, default=5, help="seconds per endpoint, server and round"
    )
    parser.add_argument("--rounds", type=_positive, default=3, help="interleaved rounds")
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds a server is left idle before each run (default: 2)",
    )
    parser.add_argument(
        "--endpoints",
        type=_endpoint_keys,
        default=list(ENDPOINTS),
        help=f"comma-separated, of {','.join(ENDPOINTS)} (default: all)",
    )
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="auto: wrk when installed, else the Python generator",
    )
    parser.add_argument("--wrk-threads", type=_positive, default=1)
    parser.add_argument("--users", type=_positive, default=1000)
    parser.add_argument("--agents-per-user", type=_positive, default=100)
    parser.add_argument(
        "--messages",
        type=_positive,
        default=5000,
        help="over threads of the first 50 users, every thread at least a page long",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def _positive_list(text: str) -> list[int]:
    return [_positive(part) for part in text.split(",") if part.strip()]


def _endpoint_keys(text: str) -> list[str]:
    keys = {part.strip() for part in text.split(",") if part.strip()}
    unknown = keys - set(ENDPOINTS)
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"choose from {','.join(ENDPOINTS)}")
    return [key for key in ENDPOINTS if key in keys]


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _server_env(database_url: str, workdir: Path) -> dict[str, str]:
    # Everything else (pool size, THREADPOOL_SIZE, ...) is Agentry's default or the
    # environment's: it is measured as it ships.
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        DATA_DIR=str(workdir / "data"),
        SECRET_KEY=secrets.token_urlsafe(48),
        ENVIRONMENT="development",
        LOG_LEVEL="WARNING",  # a line per request would be part of what we measure
        ACCESS_TOKEN_EXPIRE_MINUTES=str(TOKEN_MINUTES),
    )
    return env


def _seed(args: argparse.Namespace, env: dict[str, str], workdir: Path) -> dict[str, Any]:
    out = workdir / "fixture.json"
    seed_args = ["-m", "benchmarks.seed", "--users", str(args.users), "--out", str(out)]
    seed_args += ["--agents-per-user", str(args.agents_per_user)]
    seed_args += ["--messages", str(max(args.messages, 150)), "--chat-users", "50"]
    servers.run_to_end("seed", seed_args, env=env, log_dir=workdir)
    fixture: dict[str, Any] = json.loads(out.read_text())
    print(f"seeded {fixture['counts']} in {fixture['seconds']} s", file=sys.stderr, flush=True)
    return fixture


def _endpoints(fixture: dict[str, Any], keys: list[str]) -> list[Endpoint]:
    users = fixture["users"]
    # A few agents of every user, users interleaved: MAX_TARGETS rows over all owners.
    per_user = max(1, MAX_TARGETS // len(users))
    agents = [
        Target(f"{API}/agents/{user['agent_ids'][index]}", token=user["token"])
        for pick in range(per_user)
        for user in users
        if (index := pick * len(user["agent_ids"]) // per_user) < len(user["agent_ids"])
    ]
    threads = [thread for thread in fixture["threads"] if thread["messages"] >= PAGE]
    targets = {
        "me": [Target(f"{API}/users/me", token=user["token"]) for user in users],
        "agent": agents[:MAX_TARGETS],
        "list": [Target(f"{API}/agents?limit={PAGE}", token=user["token"]) for user in users],
        "messages": [
            Target(
                f"{API}/threads/{thread['thread_id']}/messages?limit={PAGE}",
                token=thread["token"],
            )
            for thread in threads
        ],
        "create": [
            Target(
                f"{API}/agents",
                method="POST",
                token=user["token"],
                body={"name": CREATED_NAME},
                expect=201,
            )
            for user in users
        ],
    }
    return [Endpoint(key, targets[key]) for key in keys]


def _count_sql(
    endpoints: list[Endpoint], env: dict[str, str], workdir: Path
) -> dict[str, dict[str, Any]]:
    plan = {
        endpoint.key: [
            {**asdict(target), "body": target.body} for target in endpoint.targets[:SQL_REPEAT]
        ]
        for endpoint in endpoints
    }
    requests, out = workdir / "sql-requests.json", workdir / "sql.json"
    requests.write_text(json.dumps(plan))
    args = ["-m", "benchmarks.sqlcount", "--requests", str(requests), "--out", str(out)]
    servers.run_to_end("sqlcount", [*args, "--repeat", str(SQL_REPEAT)], env=env, log_dir=workdir)
    counted: dict[str, dict[str, Any]] = json.loads(out.read_text())
    return counted


def _interleaved(
    measure: Measure,
    fleet: Fleet,
    endpoints: list[Endpoint],
    bare: list[Target],
    connections: int,
    args: argparse.Namespace,
    database_url: str,
) -> dict[str, dict[str, list[Sample]]]:
    """Round after round, endpoint after endpoint: the servers back to back."""
    samples: dict[str, dict[str, list[Sample]]] = {
        endpoint.key: {
            server: []
            for server in SERVERS
            if server in fleet.processes and (server != "floor" or endpoint.key in FLOOR_ENDPOINTS)
        }
        for endpoint in endpoints
    }
    for number in range(args.rounds):
        for endpoint in endpoints:
            for server in samples[endpoint.key]:
                name, targets = (
                    ("bare", bare) if server == "bare" else (endpoint.key, endpoint.targets)
                )
                url = fleet.urls[server]
                if number == 0:  # warm-up: connections opened, statements cached
                    time.sleep(args.settle)
                    measure.run(url, name, targets, connections, WARMUP_SECONDS)
                # Measured from idle: a server still busy with the last run's clients
                # (gone when it ended) would be measured recovering from that run.
                time.sleep(args.settle)
                cpu_before = fleet.processes[server].cpu_seconds()
                busy_before, started = servers.machine_busy_seconds(), time.monotonic()
                sample = measure.run(url, name, targets, connections)
                cpu = fleet.processes[server].cpu_seconds() - cpu_before
                busy = servers.machine_busy_seconds() - busy_before
                sample.machine_cpus = busy / (time.monotonic() - started)
                answered = sample.rps * measure.seconds
                sample.cpu_ms = 1000 * cpu / answered if answered else math.nan
                samples[endpoint.key][server].append(sample)
                errors = sum(sample.errors.values())
                print(
                    f"  c={connections} round {number + 1} {endpoint.name:<40} {server:<9} "
                    f"{sample.rps:8.0f} req/s  p50 {sample.p50_ms:7.1f}  p99 {sample.p99_ms:7.1f}"
                    f"  errors {errors}  stalled {sample.stalled_windows}"
                    f"  cpu {sample.cpu_ms:.2f} ms/request  machine {sample.machine_cpus:.2f} CPUs",
                    file=sys.stderr,
                    flush=True,
                )
                if sample.stalled_windows or set(sample.errors) & BACKLOG_ERRORS:
                    print(
                        f"  restarting {server}: requests may still be queued in it",
                        file=sys.stderr,
                        flush=True,
                    )
                    fleet.restart(server)
            if endpoint.key == "create":
                servers.delete_agents_named(database_url, CREATED_NAME)
            time.sleep(0.5)  # let the database settle (autovacuum, WAL) between endpoints
    return samples


def _summary(
    endpoint: Endpoint, samples: dict[str, list[Sample]], sql: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    row: dict[str, Any] = {"endpoint": endpoint.name}
    for server, runs in samples.items():
        row[server] = {
            "rps": statistics.median(sample.rps for sample in runs),
            "p50_ms": statistics.median(sample.p50_ms for sample in runs),
            "p99_ms": statistics.median(sample.p99_ms for sample in runs),
            "cpu_ms": statistics.median(sample.cpu_ms for sample in runs),
            "machine_cpus": statistics.median(sample.machine_cpus for sample in runs),
            "rounds_rps": [round(sample.rps, 1) for sample in runs],
            "errors": sum(sum(sample.errors.values()) for sample in runs),
            "error_kinds": _merged([sample.errors for sample in runs]),
            "stalled_windows": sum(sample.stalled_windows for sample in runs),
        }
    agentry = row["agentry"]["rps"]
    row["agentry_per_reference"] = _ratio(agentry, row["reference"]["rps"])
    row["agentry_per_bare"] = _ratio(agentry, row["bare"]["rps"])
    row["agentry_per_floor"] = _ratio(agentry, row["floor"]["rps"]) if "floor" in row else math.nan
    row["sql_reference"] = sql["reference"][endpoint.key]["per_request"]
    row["sql_agentry"] = sql["agentry"][endpoint.key]["per_request"]
    return row


def _merged(all_errors: list[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for errors in all_errors:
        for kind, count in errors.items():
            merged[kind] = merged.get(kind, 0) + count
    return merged


def _ratio(value: float, base: float) -> float:
    return value / base if base else math.nan


def _header(
    meta: dict[str, Any],
    connections: int,
    before: tuple[float, float, float],
    after: tuple[float, float, float],
) -> str:
    return (
        f"{meta['engine']} | {meta['workers']} worker(s) per server | {connections} connections"
        f" | {meta['generator']} | median of {meta['rounds']} interleaved rounds of "
        f"{meta['seconds']} s | {meta['cpus']} CPUs, load average {before[0]:.2f} before, "
        f"{after[0]:.2f} after | seeded {meta['users']} users, {meta['agents']} agents, "
        f"{meta['messages']} messages in {meta['threads']} threads"
    )


def _table(rows: list[dict[str, Any]], cpus: int) -> str:
    columns = (
        "endpoint",
        "bare rps",
        "ref rps",
        "ref p50",
        "ref p99",
        "floor rps",
        "agentry rps",
        "p50",
        "p99",
        "x ref",
        "x bare",
        "x floor",
        "SQL/req ref",
        "agentry",
        "CPU ms/req b/r/f/a",
        "CPUs busy",
        "room",
        "errors b/r/f/a",
        "stalls b/r/f/a",
    )
    lines = [
        (
            row["endpoint"],
            f"{row['bare']['rps']:.0f}",
            f"{row['reference']['rps']:.0f}",
            _ms(row["reference"]["p50_ms"]),
            _ms(row["reference"]["p99_ms"]),
            f"{row['floor']['rps']:.0f}" if "floor" in row else "-",
            f"{row['agentry']['rps']:.0f}",
            _ms(row["agentry"]["p50_ms"]),
            _ms(row["agentry"]["p99_ms"]),
            _times(row["agentry_per_reference"]),
            _times(row["agentry_per_bare"]),
            _times(row["agentry_per_floor"]),
            f"{row['sql_reference']:g}",
            f"{row['sql_agentry']:g}",
            _each(row, lambda figures: _cpu(figures["cpu_ms"])),
            _cpu(row["agentry"]["machine_cpus"]),
            _times(_ratio(cpus, row["agentry"]["machine_cpus"])),
            _each(row, lambda figures: str(figures["errors"])),
            _each(row, lambda figures: str(figures["stalled_windows"])),
        )
        for row in rows
    ]
    kinds = [
        f"  {row['endpoint']} {server}: {_kinds(row[server]['error_kinds'])}"
        for row in rows
        for server in SERVERS
        if server in row and row[server]["error_kinds"]
    ]
    notes = [
        "x floor: Agentry's requests/s over the floor's (benchmarks/floor.py: the same SQL by "
        "psycopg, no ORM, dependencies, middleware or response model).",
        "CPUs busy: the whole machine's (Agentry, the database and wrk) during Agentry's runs; "
        f"room: {cpus} CPUs over that, the most more workers can add on this machine.",
    ]
    table = _render(columns, lines) + "\n" + "\n".join(notes)
    return table + ("\nerrors:\n" + "\n".join(kinds) if kinds else "")


def _each(row: dict[str, Any], show: Callable[[dict[str, Any]], str]) -> str:
    """One figure per server, in SERVERS order; "-" for a server not run."""
    return "/".join(show(row[server]) if server in row else "-" for server in SERVERS)


def _sql_table(endpoints: list[Endpoint], sql: dict[str, dict[str, Any]]) -> str:
    """One request's statements per endpoint and app, as counted."""
    lines = ["SQL statements of one request (counted in-process, BEGIN/COMMIT not included):"]
    for endpoint in endpoints:
        for server in ("reference", "agentry"):
            counted = sql[server][endpoint.key]
            lines.append(f"  {endpoint.name} | {server}: {counted['per_request']:g} per request")
            lines += [f"      {_shape(statement)}" for statement in counted["one"]]
    return "\n".join(lines)


def _shape(statement: str) -> str:
    """A statement with its long column lists elided, so what it reads and joins shows."""
    short = SELECT_LIST.sub(
        lambda found: f"SELECT {found[1] if len(found[1]) <= 40 else '...'} FROM", statement
    )
    return short if len(short) <= 220 else short[:217] + "..."


def _render(columns: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(line[i]) for line in [columns, *lines]) for i in range(len(columns))]

    def render(cells: Sequence[str]) -> str:
        first, *rest = cells
        return " | ".join(
            [first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        )

    rule = "-+-".join("-" * width for width in widths)
    return "\n".join([render(columns), rule, *(render(line) for line in lines)])


def _ms(value: float) -> str:
    return "-" if math.isnan(value) or value == 0 else f"{value:.1f}"


def _cpu(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def _times(ratio: float) -> str:
    return "-" if math.isnan(ratio) else f"{ratio:.2f}"


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{kind}: {count}" for kind, count in sorted(kinds.items()))


if __name__ == "__main__":
    sys.exit(main())
