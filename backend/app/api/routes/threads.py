import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from app.api.deps import CurrentUser, RunDispatcherDep, SessionDep
from app.api.errors import error_responses
from app.api.routing import OneTripRoute
from app.crud.page import CursorPage, Page
from app.models.run import PostedMessage, Run, RunListQuery, RunsPublic
from app.models.thread import (
    MessageCreate,
    MessageListQuery,
    MessagePublic,
    MessagesPublic,
    Thread,
    ThreadCreate,
    ThreadListQuery,
    ThreadPublic,
    ThreadsPublic,
    ThreadUpdate,
)
from app.services.run_service import RunService
from app.services.thread_service import ThreadService

router = APIRouter(route_class=OneTripRoute, prefix="/threads", tags=["threads"])

# ==================== threads ====================


@router.get(
    "",
    response_model=ThreadsPublic,
    operation_id="list_threads",
    summary="List threads",
    responses=error_responses(401),
)
def list_threads(
    session: SessionDep, current_user: CurrentUser, query: Annotated[ThreadListQuery, Query()]
) -> Page[Thread]:
    """My threads, most recently active first."""
    return ThreadService.list_threads(session=session, user=current_user, query=query)


@router.post(
    "",
    response_model=ThreadPublic,
    status_code=status.HTTP_201_CREATED,
    operation_id="create_thread",
    summary="Start a thread",
    responses=error_responses(401, 404),
)
def create_thread(
    session: SessionDep, current_user: CurrentUser, thread_in: ThreadCreate
) -> Thread:
    """Start a conversation with one of my agents."""
    return ThreadService.create(session=session, user=current_user, thread_in=thread_in)


@router.get(
    "/{thread_id}",
    response_model=ThreadPublic,
    operation_id="read_thread",
    summary="Read a thread",
    responses=error_responses(401, 404),
)
def read_thread(session: SessionDep, current_user: CurrentUser, thread_id: uuid.UUID) -> Thread:
    """One thread of mine."""
    return ThreadService.get(session=session, user=current_user, thread_id=thread_id)


@router.patch(
    "/{thread_id}",
    response_model=ThreadPublic,
    operation_id="update_thread",
    summary="Rename or archive a thread",
    responses=error_responses(401, 404),
)
def update_thread(
    session: SessionDep, current_user: CurrentUser, thread_id: uuid.UUID, thread_in: ThreadUpdate
) -> Thread:
    """Change a thread's title, or archive or unarchive it."""
    return ThreadService.update(
        session=session, user=current_user, thread_id=thread_id, thread_in=thread_in
    )


@router.delete(
    "/{thread_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="delete_thread",
    summary="Delete a thread",
    responses=error_responses(401, 404),
)
def delete_thread(session: SessionDep, current_user: CurrentUser, thread_id: uuid.UUID) -> None:
    """Delete a thread with its messages."""
    ThreadService.delete(session=session, user=current_user, thread_id=thread_id)


# ==================== messages ====================


@router.get(
    "/{thread_id}/messages",
    response_model=MessagesPublic,
    operation_id="list_messages",
    summary="List a thread's messages",
    responses=error_responses(401, 404),
)
def list_messages(
    session: SessionDep,
    current_user: CurrentUser,
    thread_id: uuid.UUID,
    query: Annotated[MessageListQuery, Query()],
) -> CursorPage[MessagePublic]:
    """A page of messages, oldest first by default; follow next_cursor for more."""
    return ThreadService.list_messages(
        session=session, user=current_user, thread_id=thread_id, query=query
    )


@router.post(
    "/{thread_id}/messages",
    response_model=PostedMessage,
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="create_message",
    summary="Post a message",
    responses=error_responses(401, 402, 404, 409),
)
def create_message(
    session: SessionDep,
    current_user: CurrentUser,
    dispatcher: RunDispatcherDep,
    thread_id: uuid.UUID,
    message_in: MessageCreate,
) -> PostedMessage:
    """Add my message and start the run that answers it; the reply arrives as a message."""
    return RunService.post(
        session=session,
        user=current_user,
        thread_id=thread_id,
        message_in=message_in,
        policy=dispatcher.policy,
        dispatch=dispatcher.dispatch,
    )


@router.get(
    "/{thread_id}/runs",
    response_model=RunsPublic,
    operation_id="list_thread_runs",
    summary="List a thread's runs",
    responses=error_responses(401, 404),
)
def list_thread_runs(
    session: SessionDep,
    current_user: CurrentUser,
    thread_id: uuid.UUID,
    query: Annotated[RunListQuery, Query()],
) -> Page[Run]:
    """The runs of one of my threads, newest first."""
    return RunService.list_for_thread(
        session=session, user=current_user, thread_id=thread_id, query=query
    )
