"""The `agentry` command: the composition root of every process but the web app's.

Settings are read once here, from the environment, and handed to each command, which
builds what it needs (an engine, a Celery worker) from them."""

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import uvicorn
from celery import Celery
from celery.signals import worker_shutting_down
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from app.core import migrations
from app.core.config import ConfigurationError, Settings, load_settings
from app.core.db import create_db_engine, open_session
from app.core.errors import AppError
from app.core.logger import configure_logging
from app.main import create_app
from app.services.ai_model_service import AIModelService
from app.services.bootstrap_service import BootstrapService
from app.services.search_service import SearchService
from app.tasks.celery_app import WORKER_QUEUES, build_worker_app
from app.tasks.resources import session_factory_for

logger = logging.getLogger("agentry.worker")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        config = load_settings()
    except ConfigurationError as error:
        return _refuse(error.problems)
    configure_logging(config)
    result: int = handler(args, config)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentry", description="Run and manage Agentry.")
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="migrate, prepare start-up data, serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--reload", action="store_true", help="restart on code changes (dev)")
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="upgrade or downgrade the database schema")
    migrate.add_argument("--to", default="head", help="target revision (default: head)")
    migrate.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    migrate.set_defaults(handler=_migrate)

    superuser = commands.add_parser(
        "create-superuser", help="create the first superuser from FIRST_SUPERUSER_* settings"
    )
    superuser.set_defaults(handler=_create_superuser)

    worker = commands.add_parser(
        "worker", help="run agent runs and ingest documents from CELERY_BROKER_URL"
    )
    worker.add_argument("--concurrency", type=int, default=4, help="runs at once (default 4)")
    worker.add_argument(
        "--queues",
        default=",".join(WORKER_QUEUES),
        help=f"queues to consume, comma-separated (default {','.join(WORKER_QUEUES)})",
    )
    worker.set_defaults(handler=_worker)

    reindex = commands.add_parser(
        "reindex-search",
        help="rewrite the passages' search vectors in SEARCH_LANGUAGE (PostgreSQL)",
    )
    reindex.set_defaults(handler=_reindex_search)

    openapi = commands.add_parser("openapi", help="write the OpenAPI schema")
    openapi.add_argument("file", nargs="?", type=Path, help="where to write (default: stdout)")
    openapi.set_defaults(handler=_openapi)

    catalog = commands.add_parser("models", help="manage the model catalog")
    catalog_commands = catalog.add_subparsers(title="models commands")
    catalog_import = catalog_commands.add_parser(
        "import", help="add or update models from a JSON price list"
    )
    catalog_import.add_argument("file", type=Path, help="the price list (JSON)")
    catalog_import.set_defaults(handler=_import_models)
    return parser


def _refuse(problems: list[str]) -> int:
    for problem in problems:
        print(f"agentry: refusing to start: {problem}", file=sys.stderr)
    return 2


def _serve(args: argparse.Namespace, config: Settings) -> int:
    if config.problems():
        return _refuse(config.problems())
    engine = create_db_engine(config)
    migrations.upgrade(engine, "head")
    problem = _search_language_problem(engine, config)
    if problem is not None:
        engine.dispose()
        return _refuse([problem])
    _bootstrap(engine, config)
    engine.dispose()
    uvicorn.run(
        "app.main:create_served_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=None if args.reload else args.workers,
        reload=args.reload,
        proxy_headers=False,  # the app itself decides whom to believe (FORWARDED_ALLOW_IPS)
        access_log=False,  # the app writes one line per request, without query strings
        log_config=None,
    )
    return 0


def _bootstrap(engine: Engine, config: Settings) -> None:
    with open_session(engine) as session:
        for notice in BootstrapService.run(session=session, config=config):
            print(notice, flush=True)


def _create_superuser(_args: argparse.Namespace, config: Settings) -> int:
    if config.problems():
        return _refuse(config.problems())
    if config.first_superuser_email is None:
        print("agentry: set FIRST_SUPERUSER_EMAIL first", file=sys.stderr)
        return 2
    engine = create_db_engine(config)
    try:
        migrations.upgrade(engine, "head")
        _bootstrap(engine, config)
    finally:
        engine.dispose()
    return 0


def _worker(args: argparse.Namespace, config: Settings) -> int:
    """Runs until stopped. A supervisor restarts it by its exit code: 0 only when it was
    asked to stop (SIGTERM, SIGINT), anything else is a failure it reports in one line."""
    if config.problems():
        return _refuse(config.problems())
    if not config.CELERY_BROKER_URL:
        print("agentry: set CELERY_BROKER_URL to run workers", file=sys.stderr)
        return 2
    engine = create_db_engine(config)
    try:
        migrations.upgrade(engine, "head")
    except SQLAlchemyError as error:
        return _worker_failed(f"cannot reach the database ({_first_line(error)})")
    problem = _search_language_problem(engine, config)
    if problem is not None:
        engine.dispose()
        return _refuse([problem])
    celery = build_worker_app(config, session_factory=session_factory_for(engine))
    try:
        return _run_celery_worker(celery, concurrency=args.concurrency, queues=args.queues)
    finally:
        engine.dispose()


def _run_celery_worker(celery: Celery, *, concurrency: int, queues: str) -> int:
    stop_signals: list[str] = []

    def record_stop_signal(sig: str, **_kwargs: Any) -> None:
        stop_signals.append(sig)

    last_critical = _LastCritical()
    celery_logger = logging.getLogger("celery")
    worker_shutting_down.connect(record_stop_signal, weak=False)
    try:
        worker = celery.Worker(
            loglevel="INFO",
            concurrency=concurrency,
            queues=queues,
            pool_cls="threads",
            # Workers share nothing through Celery (no revokes, no events); gossip and
            # mingle only slow down every reconnection, and gossip's restart fails noisily.
            without_gossip=True,
            without_mingle=True,
        )
        celery_logger.addHandler(last_critical)  # after Celery's logging set-up, which resets it
        worker.start()
    except SystemExit as error:
        return _worker_failed(f"exit requested ({error.code!r})", _exit_code(error.code))
    except BaseException as error:  # whatever ends it, the supervisor hears it in one line
        return _worker_failed(f"{type(error).__name__}: {_first_line(error)}")
    finally:
        celery_logger.removeHandler(last_critical)
        worker_shutting_down.disconnect(record_stop_signal)
    code = _exit_code(worker.exitcode)
    if not stop_signals:
        return _worker_failed(last_critical.message or "the worker stopped on its own", code)
    if stop_signals[0] not in _ASKED_TO_STOP:
        return _worker_failed(f"{stop_signals[0]} received", code)
    logger.info("agentry worker: stopped by %s", stop_signals[0])
    return 0


# A supervisor's stop (systemd sends SIGTERM) or Ctrl+C: runs in flight were let finish.
_ASKED_TO_STOP = {signal.SIGTERM.name, signal.SIGINT.name}


def _exit_code(value: object) -> int:
    """A failure's exit code: never 0, whatever Celery or SystemExit carried."""
    return value if isinstance(value, int) and value else 1


def _worker_failed(reason: str, code: int = 1) -> int:
    logger.error("agentry worker: stopped: %s; exit code %d", reason, code)
    return code


def _first_line(error: BaseException) -> str:
    """An error's first line: a database error's next lines can quote SQL and parameters."""
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


class _LastCritical(logging.Handler):
    """Keeps the message of Celery's last CRITICAL record ("Unrecoverable error: ...")."""

    def __init__(self) -> None:
        super().__init__(level=logging.CRITICAL)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        lines = record.getMessage().splitlines()
        self.message = lines[0] if lines else None


def _migrate(args: argparse.Namespace, config: Settings) -> int:
    engine = create_db_engine(config)
    try:
        migrations.migrate_to(engine, args.to, sql=args.sql)
    finally:
        engine.dispose()
    return 0


def _search_language_problem(engine: Engine, config: Settings) -> str | None:
    with open_session(engine) as session:
        return SearchService.language_problem(session=session, config=config)


def _reindex_search(_args: argparse.Namespace, config: Settings) -> int:
    if config.problems():
        return _refuse(config.problems())
    engine = create_db_engine(config)
    try:
        migrations.upgrade(engine, "head")
        problem = _search_language_problem(engine, config)
        if problem is not None:
            return _refuse([problem])
        if config.is_sqlite:
            print("SQLite's full-text index has no language: nothing to rewrite")
            return 0
        rewritten = 0
        with open_session(engine) as session:
            for batch in SearchService.reindex(session=session, config=config):
                rewritten += batch
                print(f"{rewritten} passages rewritten", file=sys.stderr)
        print(f"{rewritten} passages now searched in {config.SEARCH_LANGUAGE}")
    finally:
        engine.dispose()
    return 0


def _openapi(args: argparse.Namespace, config: Settings) -> int:
    schema = json.dumps(create_app(config).openapi(), indent=2, sort_keys=False) + "\n"
    if args.file is None:
        sys.stdout.write(schema)
    else:
        args.file.write_text(schema)
        print(f"wrote {args.file}", file=sys.stderr)
    return 0


def _import_models(args: argparse.Namespace, config: Settings) -> int:
    if config.problems():
        return _refuse(config.problems())
    try:
        raw = args.file.read_bytes()
    except OSError as error:
        print(f"agentry: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return 2
    engine = create_db_engine(config)
    try:
        catalog = AIModelService.parse_catalog(raw)
        migrations.upgrade(engine, "head")
        with open_session(engine) as session:
            created, updated = AIModelService.import_catalog(
                session=session, entries=catalog.models
            )
    except AppError as error:
        print(f"agentry: {args.file}: {error.detail}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(f"{created} created, {updated} updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
