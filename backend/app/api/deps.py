"""Dependencies shared by the routes."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlmodel import Session

from app.core.config import Settings
from app.core.db import REQUEST_SESSION
from app.core.errors import PermissionDeniedError
from app.core.logger import request_id_var
from app.core.threads import run_in_thread
from app.core.throttle import Throttle
from app.models.user import User
from app.modules.llm.client import LLMClient
from app.modules.storage import Storage
from app.services.auth_service import Authenticated, AuthService
from app.services.context import RequestContext
from app.tasks.dispatch import RunDispatcher


async def get_session(request: Request) -> Session:
    """A session for the length of the request, opened by the app's session factory
    (`app.state.open_session`, set by create_app).

    Async and not a generator, so that it costs no trip through the threadpool and no
    exit stack: a Session holds no connection until its first statement, which runs in
    the sync code that uses it. Routes that only read (`OneTripRoute.read_only`) get a
    read-only one (core/db.SessionFactory). It is kept in the request's scope; the route's own trip
    releases it once the route returns (api/routing.py), and `AdmissionMiddleware`
    releases it when the request ended before the route ran (a failed dependency)."""
    read_only = getattr(request.scope.get("route"), "read_only", False)
    session: Session = request.app.state.open_session(read_only=read_only)
    request.scope[REQUEST_SESSION] = session
    return session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_config(request: Request) -> Settings:
    """The settings the app was built with (create_app); async: it only reads state."""
    config: Settings = request.app.state.settings
    return config


ConfigDep = Annotated[Settings, Depends(get_config)]

# auto_error=False: a missing token must reach our handler and get the error body.
bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/login/access-token", auto_error=False)


async def get_current_user(
    request: Request,
    session: SessionDep,
    token: Annotated[str | None, Depends(bearer)],
) -> User:
    """The user of the request's access token, once its login session is checked (401
    otherwise). The settings are read from the app, not through ConfigDep: every request
    resolves this, and each dependency costs the resolving."""
    config: Settings = request.app.state.settings
    auth = await run_in_thread(_authenticate, session=session, config=config, token=token)
    request.state.auth = auth  # for CurrentAuth
    request.state.user_id = str(auth.user.id)  # for the request log line
    return auth.user


def _authenticate(*, session: Session, config: Settings, token: str | None) -> Authenticated:
    """In a worker thread; a refused token releases the session's connection there."""
    try:
        return AuthService.authenticate(session=session, config=config, token=token)
    except BaseException:
        session.close()
        raise


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_current_auth(request: Request, _user: CurrentUser) -> Authenticated:
    """The user and login session behind the request (get_current_user checked them)."""
    auth: Authenticated = request.state.auth
    return auth


CurrentAuth = Annotated[Authenticated, Depends(get_current_auth)]


# The dependencies below only read what others resolved or what the app holds: async, so
# that none of them costs a trip through the threadpool.


async def get_current_superuser(user: CurrentUser) -> User:
    if not user.is_superuser:
        raise PermissionDeniedError("This needs a superuser", code="superuser_required")
    return user


SuperuserDep = Annotated[User, Depends(get_current_superuser)]


async def get_request_context(request: Request) -> RequestContext:
    user_agent = request.headers.get("user-agent")
    return RequestContext(
        # The socket peer, or what a trusted proxy said (FORWARDED_ALLOW_IPS).
        ip=request.client.host if request.client else None,
        user_agent=user_agent[:255] if user_agent else None,
        request_id=request_id_var.get(),
    )


RequestContextDep = Annotated[RequestContext, Depends(get_request_context)]


async def get_throttle(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.throttle
    return throttle


ThrottleDep = Annotated[Throttle, Depends(get_throttle)]


async def get_run_dispatcher(request: Request) -> RunDispatcher:
    dispatcher: RunDispatcher = request.app.state.run_dispatcher
    return dispatcher


RunDispatcherDep = Annotated[RunDispatcher, Depends(get_run_dispatcher)]


async def get_storage(request: Request) -> Storage:
    """Where uploaded files live (built once by create_app)."""
    storage: Storage = request.app.state.storage
    return storage


StorageDep = Annotated[Storage, Depends(get_storage)]


async def get_llm(request: Request) -> LLMClient:
    """The app's client for provider calls made while answering a request (embedding a
    search); async: it only reads state."""
    llm: LLMClient = request.app.state.llm
    return llm


LLMDep = Annotated[LLMClient, Depends(get_llm)]
