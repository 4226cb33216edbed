"""The application factory: the composition root of the web process. Settings, the
database engine, the throttle, the file storage and the run dispatcher are built here,
once, and reach routes through `app.state` (see api/deps.py)."""

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import iter_route_contexts
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import Scope
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.api.errors import register_error_handlers
from app.api.main import routers
from app.api.openapi import openapi_builder
from app.api.routes.knowledge_bases import UPLOAD_PATH
from app.api.routes.utils import LIVENESS_PATH
from app.core.codes import ErrorCode
from app.core.config import ConfigurationError, Settings, load_settings
from app.core.db import SessionFactory, create_db_engine
from app.core.errors import AppError, AuthenticationError
from app.core.logger import configure_logging
from app.core.middleware import AdmissionMiddleware, BodyLimit, RequestMiddleware
from app.core.security import decode_access_token
from app.core.serving import settle_for_serving
from app.core.throttle import build_throttle
from app.modules.storage import build_storage
from app.tasks.dispatch import build_dispatcher
from app.tasks.resources import build_llm_client

API_PREFIX = "/api/v1"
# Room for the multipart framing and the title around an upload's file; the service
# checks the file's own size against MAX_UPLOAD_BYTES.
UPLOAD_OVERHEAD_BYTES = 64 * 1024


def create_app(config: Settings | None = None) -> FastAPI:
    """The app for `config`, or for the environment's settings (uvicorn's factory call)."""
    if config is None:
        config = load_settings()
    problems = config.problems()
    if problems:
        raise ConfigurationError(problems)
    _ = config.secret_key  # generated and kept in DATA_DIR now, not at the first login
    configure_logging(config)
    docs = config.docs_exposed
    engine = create_db_engine(config)
    storage = build_storage(config)
    dispatcher = build_dispatcher(config, engine, storage)

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[None]:
        # The dispatcher on app.state may have been replaced (tests); use that one.
        await run_in_threadpool(application.state.run_dispatcher.recover)
        yield
        await run_in_threadpool(application.state.run_dispatcher.close)
        application.state.llm.close()
        application.state.engine.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title=config.PROJECT_NAME,
        summary="The backend of an AI agent workspace.",
        version="0.1.0",
        openapi_url=f"{API_PREFIX}/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        separate_input_output_schemas=False,
    )
    app.state.settings = config
    app.state.engine = engine
    app.state.open_session = SessionFactory(engine)  # api/deps.get_session
    app.state.throttle = build_throttle(config)
    app.state.storage = storage
    app.state.run_dispatcher = dispatcher
    # For the requests' own provider calls (embedding a search); runs use the dispatcher's.
    app.state.llm = build_llm_client(config)
    for router in routers:  # each straight into the app: one level of routers to match
        app.include_router(router, prefix=API_PREFIX)
    unadmitted = frozenset({API_PREFIX + LIVENESS_PATH})
    app.openapi = openapi_builder(app, unadmitted_paths=unadmitted)  # type: ignore[method-assign]
    register_error_handlers(app)
    # Added innermost first. CORS wraps admission, so that 408, 413, 500 and 503 answers
    # carry its headers too; the request id and the log line wrap everything.
    app.add_middleware(
        AdmissionMiddleware,
        admission_slots=config.THREADPOOL_SIZE,
        queue_timeout=config.REQUEST_QUEUE_TIMEOUT,
        max_body_bytes=config.MAX_REQUEST_BODY_BYTES,
        body_timeout=config.REQUEST_BODY_TIMEOUT_SECONDS,
        unadmitted_paths=unadmitted,
        body_limits=(upload_limit(config),),
    )
    if config.FORWARDED_ALLOW_IPS:
        # Only these peers may say who the client is; everyone else is the client.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=config.FORWARDED_ALLOW_IPS)
    if config.BACKEND_CORS_ORIGINS:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.BACKEND_CORS_ORIGINS,
            allow_credentials="*" not in config.BACKEND_CORS_ORIGINS,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(
        RequestMiddleware,
        route_templates={
            id(context.original_route): context.path_format or ""
            for context in iter_route_contexts(app.routes)
        },
    )
    return app


def create_served_app() -> FastAPI:
    """uvicorn's factory for `agentry serve`, called in each worker process: the app for
    the environment's settings, with what the process holds once it is built kept out of
    the garbage collector's way (core/serving.py). Tests build apps with `create_app`."""
    app = create_app()
    settle_for_serving()
    return app


def upload_limit(config: Settings) -> BodyLimit:
    """Document uploads may be larger than other bodies (413 upload_too_large beyond),
    and are given as long per byte to arrive."""
    max_bytes = config.MAX_UPLOAD_BYTES + UPLOAD_OVERHEAD_BYTES
    scale = max(1.0, max_bytes / config.MAX_REQUEST_BODY_BYTES)
    return BodyLimit(
        method="POST",
        path=re.compile(re.escape(API_PREFIX) + UPLOAD_PATH),
        max_bytes=max_bytes,
        timeout=config.REQUEST_BODY_TIMEOUT_SECONDS * scale,
        code=ErrorCode.UPLOAD_TOO_LARGE,
        detail=f"A document may not exceed {config.MAX_UPLOAD_BYTES} bytes",
        precheck=partial(_refuse_without_token, config=config),
    )


def _refuse_without_token(scope: Scope, *, config: Settings) -> AppError | None:
    """401 before an upload's body is read unless it carries a validly signed, unexpired
    access token; the route still checks the session and the account as usual."""
    headers = Headers(scope=scope)
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and decode_access_token(token.strip(), config=config):
        return None
    return AuthenticationError("Could not validate credentials", code="invalid_token")
