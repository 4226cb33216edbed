"""Schemathesis over every operation of a live Agentry server, as a user and a superuser.

    cd backend && uv run python -m fuzz.run --postgres-admin-url postgresql://postgres@127.0.0.1:5432/postgres

Migrates a fresh database, starts the server, seeds a catalog, accounts, agents, threads
and runs over HTTP, logs both accounts in, then runs schemathesis (examples, coverage and
fuzzing phases, a bounded number of examples per operation) once per account, checking
that no answer is a 5xx and that every answer matches its response schema. Prints each
5xx with a curl line and the server's traceback; exits 1 if a check failed or a pass did
not finish in time, 2 if the server could not be set up.
"""

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import FrameType

from benchmarks import servers
from fuzz import passes, report, seed

API = "/api/v1"
SUPERUSER_EMAIL = "fuzz-admin@example.com"
# Longer than any run: a pass never sees its token expire.
TOKEN_MINUTES = 120
DEFAULT_TIME_LIMIT = 300
REQUEST_TIMEOUT = 20.0
# Held back from the main passes for the short ones that follow them.
FINAL_PASS_SECONDS = 20
MAX_CURL_CHARS = 2_000
DEFAULT_CHECKS = "not_a_server_error,response_schema_conformance"


class Outcome(Enum):
    PASSED = "passed"
    FAILED = "failed"  # some check failed: a 5xx, or an answer its schema does not describe
    UNFINISHED = "unfinished"  # stopped at the time limit, or schemathesis itself failed


@dataclass(frozen=True)
class PassRun:
    fuzz_pass: passes.Pass
    ndjson: Path  # schemathesis's report: every request of the pass and its answer
    outcome: Outcome


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    deadline = time.monotonic() + args.time_limit
    workdir = Path(tempfile.mkdtemp(prefix="agentry-fuzz-"))
    database_name: str | None = None
    app: servers.Process | None = None
    try:
        database_url = args.database_url or f"sqlite:///{(workdir / 'fuzz.db').as_posix()}"
        if args.postgres_admin_url:
            database_name = f"agentry_fuzz_{secrets.token_hex(4)}"
            database_url = servers.create_database(args.postgres_admin_url, database_name)
        superuser_password = seed.new_password()
        env = _server_env(database_url, workdir, superuser_password)
        servers.run_to_end("migrate", ["-m", "app.cli", "migrate"], env=env, log_dir=workdir)
        port = args.port or servers.free_port()
        app = servers.start_app(port=port, workers=1, env=env, log_dir=workdir)
        base_url = f"http://127.0.0.1:{port}"
        servers.wait_ready(app, f"{base_url}{API}/utils/readiness")
        fixture = seed.seed(
            base_url, superuser_email=SUPERUSER_EMAIL, superuser_password=superuser_password
        )
        plan = passes.plan(
            fixture, max_examples=args.max_examples, final_examples=args.final_examples
        )
        runs = []
        for number, fuzz_pass in enumerate(plan):
            still_to_run = sum(1 for later in plan[number + 1 :] if later.self_ending)
            budget = deadline - time.monotonic() - FINAL_PASS_SECONDS * still_to_run
            ndjson = workdir / f"pass-{number}.ndjson"
            outcome = _run_pass(args, fuzz_pass, fixture, base_url, workdir, ndjson, budget)
            runs.append(PassRun(fuzz_pass, ndjson, outcome))
        app.stop()  # flushes its log before it is read
        return _report(args, runs, workdir / "app.log")
    except (servers.ServerError, seed.SeedError) as error:
        print(f"fuzz: {error}", file=sys.stderr)
        if app is not None:
            print(f"server log (last lines):\n{app.tail()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fuzz: interrupted; stopping the server", file=sys.stderr)
        return 130
    finally:
        if app is not None:
            app.stop()
        if database_name is not None:
            servers.drop_database(args.postgres_admin_url, database_name)
        if args.keep:
            print(f"fuzz: kept {workdir} (server log, configs, schemathesis reports)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fuzz.run",
        description="Schemathesis over every operation of a live server, as a user and as "
        "a superuser; exits 1 on any 5xx or other failed check.",
    )
    database = parser.add_mutually_exclusive_group()
    database.add_argument(
        "--database-url", help="a throwaway database to use (default: a SQLite file)"
    )
    database.add_argument(
        "--postgres-admin-url",
        help="create a fresh PostgreSQL database through this URL and drop it at the end",
    )
    parser.add_argument(
        "--max-examples", type=int, default=25, help="per operation and pass (default 25)"
    )
    parser.add_argument(
        "--final-examples",
        type=int,
        default=5,
        help="per operation for logout and delete_user_me, run last (default 5)",
    )
    parser.add_argument(
        "--time-limit",
        type=int,
        default=DEFAULT_TIME_LIMIT,
        help=f"seconds for the whole run; a pass still going then fails it "
        f"(default {DEFAULT_TIME_LIMIT})",
    )
    parser.add_argument("--workers", type=int, default=2, help="schemathesis workers (default 2)")
    parser.add_argument(
        "--checks",
        default=DEFAULT_CHECKS,
        help=f"schemathesis checks, comma-separated (default {DEFAULT_CHECKS})",
    )
    parser.add_argument("--seed", type=int, help="schemathesis's random seed, to repeat a run")
    parser.add_argument("--port", type=int, default=0, help="the server's port (0: a free one)")
    parser.add_argument("--findings", type=Path, help="also write every 5xx to this JSON file")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs, reports)"
    )
    return parser


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _server_env(database_url: str, workdir: Path, superuser_password: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        DATA_DIR=str(workdir / "data"),
        SECRET_KEY=secrets.token_urlsafe(48),
        ENVIRONMENT="test",  # cheap password hashing: the fuzzer logs in and signs up a lot
        LOG_FORMAT="json",  # read back for the tracebacks of 5xx answers
        LOG_LEVEL="INFO",
        FIRST_SUPERUSER_EMAIL=SUPERUSER_EMAIL,
        FIRST_SUPERUSER_PASSWORD=superuser_password,
        ACCESS_TOKEN_EXPIRE_MINUTES=str(TOKEN_MINUTES),
    )
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "SMTP_HOST"):
        env.pop(name, None)  # in-process throttles and runs, mail logged: nothing else to run
    return env


def _run_pass(
    args: argparse.Namespace,
    fuzz_pass: passes.Pass,
    fixture: seed.Fixture,
    base_url: str,
    workdir: Path,
    ndjson: Path,
    budget: float,
) -> Outcome:
    if budget < 1:
        print(f"\n== schemathesis as the {fuzz_pass.name}: no time left", flush=True)
        return Outcome.UNFINISHED
    print(f"\n== schemathesis as the {fuzz_pass.name} ({budget:.0f} s at most)", flush=True)
    config = workdir / f"{fuzz_pass.name.replace(', ', '-')}.toml"
    passes.write_config(
        config, fuzz_pass=fuzz_pass, fixture=fixture, request_timeout=REQUEST_TIMEOUT
    )
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run"]
    command += [f"{base_url}{API}/openapi.json", "--phases", ",".join(passes.PHASES)]
    command += ["--checks", args.checks, "--max-examples", str(fuzz_pass.max_examples)]
    command += ["--workers", str(args.workers), "--continue-on-failure", "--no-color"]
    command += ["--report", "ndjson", "--report-ndjson-path", str(ndjson)]
    command += fuzz_pass.filters()
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    # Its own session and directory: a stop reaches all of it, and nothing lands in the repo.
    process = subprocess.Popen(command, cwd=workdir, start_new_session=True)  # noqa: S603
    try:
        code = process.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        print(f"fuzz: the {fuzz_pass.name} pass ran out of time", file=sys.stderr)
        return Outcome.UNFINISHED
    if code == 0:
        return Outcome.PASSED
    if code == 1:  # schemathesis's "some check failed"
        return Outcome.FAILED
    print(f"fuzz: schemathesis exited with {code}", file=sys.stderr)
    return Outcome.UNFINISHED


def _report(args: argparse.Namespace, runs: list[PassRun], log: Path) -> int:
    found: list[report.Finding] = []
    for run in runs:
        if run.ndjson.exists():
            name, token = run.fuzz_pass.name, run.fuzz_pass.account.token
            found += report.findings(run.ndjson, account=name, token=token, log=log)
    if args.findings:
        report.write_json(args.findings, found)
    answered = {finding.request_id for finding in found if finding.request_id}
    unanswered = report.unanswered_errors(log, answered)
    print("\n== fuzz findings")
    if found:
        print(f"{len(found)} answers were 5xx; by operation, account and error:\n")
        print(_clip(report.render(report.group(found))))
        print(
            "\nReproduce against a server at $AGENTRY_URL with $TOKEN an access token of the "
            "same kind of account (the ids above existed only in the fuzzed database)."
        )
    else:
        print("no 5xx answers")
    if unanswered:
        print("\nthe server also logged errors that no 5xx answer explains:")
        print("\n".join(f"- {line}" for line in unanswered))
    failed = [run.fuzz_pass.name for run in runs if run.outcome is Outcome.FAILED]
    unfinished = [run.fuzz_pass.name for run in runs if run.outcome is Outcome.UNFINISHED]
    if failed:
        print(f"\nchecks failed in: {', '.join(failed)} (schemathesis's reports above say which)")
    if unfinished:
        print(f"\nunfinished passes: {', '.join(unfinished)}")
    return 1 if found or failed or unfinished else 0


def _clip(text: str) -> str:
    return "\n".join(
        line if len(line) <= MAX_CURL_CHARS else line[:MAX_CURL_CHARS] + " ... (clipped)"
        for line in text.splitlines()
    )


if __name__ == "__main__":
    sys.exit(main())
