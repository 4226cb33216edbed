"""Ingestion on the runs' machinery: delivered by the in-process pool or Celery, claimed
under a lease, swept when its process dies, and idempotent whatever is delivered twice.

Rows here are committed (ingestion opens its own sessions); the `library` fixture
removes them. Files go to this process's own storage (a directory under its DATA_DIR),
or to a private S3 server where a test needs storage that stops answering.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete
from sqlmodel import Session, col, select

from app.core.config import ProviderSettings, Settings
from app.core.db import utcnow
from app.models.ai_model import AIModel, ModelKind
from app.models.document import Chunk, Document, DocumentStatus
from app.models.embedding import ChunkVector
from app.models.knowledge_base import KnowledgeBase
from app.models.usage import UsageEntry, UsageKind
from app.models.user import User
from app.modules.documents.extract import ExtractionLimits
from app.modules.llm.client import LLMClient
from app.modules.storage import LocalStorage, Storage, build_storage
from app.services import ingestion_recovery
from app.services.ingestion_recovery import IngestSweepReport
from app.services.run_runtime import HOST, INCARNATION
from app.tasks.celery_app import build_celery
from app.tasks.dispatch import CeleryDispatcher, InlineDispatcher, ThreadPoolDispatcher
from tests.documents import (
    make_encrypted_pdf,
    make_pdf,
    make_scanned_pdf,
    make_zip_bomb_docx,
)
from tests.environment import default_session, engine, settings
from tests.factories import (
    ParkedDispatcher,
    auth_headers,
    create_ai_model,
    create_document,
    create_knowledge_base,
    create_user,
    ingest_policy,
    run_policy,
)
from tests.modules.fake_llm import FakeLLM
from tests.redis_server import RedisServer
from tests.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Server
from tests.tasks.conftest import real_app

T = TypeVar("T")
WAIT_SECONDS = 60.0
STORAGE = build_storage(settings)
PAST = timedelta(seconds=5)


@dataclass
class Library:
    user: User
    headers: dict[str, str]
    kb: KnowledgeBase


@pytest.fixture
def library() -> Iterator[Library]:
    with Session(engine, expire_on_commit=False) as session:
        user = create_user(session)
        kb = create_knowledge_base(session, owner=user, name="Manuals")
        headers = auth_headers(session, user=user)
    try:
        yield Library(user=user, headers=headers, kb=kb)
    finally:
        with Session(engine) as session:  # knowledge bases, documents, chunks cascade
            session.execute(delete(User).where(col(User.id) == user.id))
            session.commit()


def unique_text(topic: str) -> str:
    """Text no other test stores: content-addressed files are never shared by accident."""
    return f"{topic} {uuid.uuid4().hex}"


def inline(storage: Storage = STORAGE, **changes: Any) -> InlineDispatcher:
    """Ingests in the caller's thread, on committed rows, with ingest_policy(**changes)."""
    return InlineDispatcher(
        llm=LLMClient(providers={}),
        storage=storage,
        policy=run_policy(),
        ingest_policy=ingest_policy(**changes),
        session_factory=default_session,
    )


def stored(document_id: uuid.UUID) -> Document:
    with Session(engine) as session:
        document = session.get(Document, document_id)
        assert document is not None
        return document


def chunks_of(document_id: uuid.UUID) -> list[Chunk]:
    with Session(engine) as session:
        statement = select(Chunk).where(Chunk.document_id == document_id)
        return list(session.exec(statement.order_by(col(Chunk.ordinal))).all())


def queued_document(library: Library, data: bytes, **fields: Any) -> Document:
    with Session(engine, expire_on_commit=False) as session:
        return create_document(session, knowledge_base=library.kb, data=data, **fields)


def wait_until(what: str, check: Callable[[], T | None]) -> T:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        result = check()
        if result is not None:
            return result
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def settled(body: dict[str, Any]) -> dict[str, Any] | None:
    """A document's body once its ingestion ended, else None (for wait_until)."""
    return None if body["status"] in ("queued", "processing") else body


def in_status(document_id: uuid.UUID, status: DocumentStatus) -> Document | None:
    document = stored(document_id)
    return document if document.status == status else None


def upload(client: TestClient, library: Library, filename: str, data: bytes) -> dict[str, Any]:
    response = client.post(
        f"/api/v1/knowledge-bases/{library.kb.id}/documents",
        headers=library.headers,
        files={"file": (filename, data)},
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "queued"
    return body


def read(client: TestClient, library: Library, document_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/documents/{document_id}", headers=library.headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def assert_ingested(document: Document, *, attempts: int) -> list[Chunk]:
    """Ready, its lease released, its chunks stored once with its owner and knowledge base."""
    assert document.status == DocumentStatus.READY
    assert (document.error_code, document.error_message) == (None, None)
    assert (document.lease_owner, document.lease_expires_at) == (None, None)
    assert document.attempts == attempts
    assert document.processed_at is not None
    chunks = chunks_of(document.id)
    assert document.chunk_count == len(chunks) > 0
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    assert {(c.owner_id, c.knowledge_base_id) for c in chunks} == {
        (document.owner_id, document.knowledge_base_id)
    }
    return chunks


def assert_failed(document: Document, code: str) -> None:
    assert (document.status, document.error_code) == (DocumentStatus.FAILED, code)
    assert document.error_message
    assert (document.lease_owner, document.lease_expires_at) == (None, None)
    assert document.processed_at is not None
    assert chunks_of(document.id) == []


# ==================== delivery ====================


def test_an_upload_becomes_ready_through_the_thread_pool(library: Library) -> None:
    words = unique_text("The boiler pressure must stay below two bar")
    pdf = make_pdf(["Maintenance manual", f"{words}. Check it monthly."])
    dispatcher = ThreadPoolDispatcher(
        workers=1,
        ingest_workers=2,
        llm=LLMClient(providers={}),
        storage=STORAGE,
        policy=run_policy(),
        ingest_policy=ingest_policy(),
        session_factory=default_session,
    )
    with TestClient(real_app(dispatcher)) as client:
        document_id = upload(client, library, "boiler.pdf", pdf)["id"]
        body = wait_until(
            "the document to be ingested",
            lambda: settled(read(client, library, document_id)),
        )
        found = client.get(
            f"/api/v1/knowledge-bases/{library.kb.id}/search",
            headers=library.headers,
            params={"q": "What pressure must the boiler stay below?"},
        )
    assert (body["page_count"], body["error_code"]) == (2, None)
    chunks = assert_ingested(stored(uuid.UUID(document_id)), attempts=1)
    assert body["chunk_count"] == len(chunks)
    assert found.status_code == 200
    [hit] = found.json()["data"]
    assert (hit["document_id"], hit["page_start"], hit["page_end"]) == (document_id, 2, 2)
    assert words in hit["text"]


def test_a_document_delivered_twice_at_once_is_ingested_once(library: Library) -> None:
    document = queued_document(library, unique_text("Twice delivered").encode(), storage=STORAGE)
    dispatcher = inline()
    barrier = threading.Barrier(2)

    def deliver() -> None:
        barrier.wait()
        dispatcher.ingest(document.id)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT_SECONDS)
    first = stored(document.id)
    chunks = assert_ingested(first, attempts=1)
    dispatcher.ingest(document.id)  # delivered again, late: nothing changes
    again = stored(document.id)
    assert (again.attempts, again.processed_at) == (1, first.processed_at)
    assert [c.id for c in chunks_of(document.id)] == [c.id for c in chunks]


# ==================== the sweep ====================


def test_an_expired_lease_is_swept_back_to_queued_and_ingested_once(library: Library) -> None:
    document = queued_document(
        library,
        unique_text("Interrupted").encode(),
        storage=STORAGE,
        status=DocumentStatus.PROCESSING,
        lease_owner="elsewhere/1/gone/doc",
        lease_expires_at=utcnow() - PAST,
        attempts=1,
    )
    alive = queued_document(
        library,
        unique_text("Still held").encode(),
        status=DocumentStatus.PROCESSING,
        lease_owner="elsewhere/2/live/doc",
        lease_expires_at=utcnow() + timedelta(seconds=60),
        attempts=1,
    )
    delivered: list[uuid.UUID] = []
    policy = ingest_policy()
    report = ingestion_recovery.sweep(
        session_factory=default_session, policy=policy, dispatch=delivered.append
    )
    assert report == IngestSweepReport(requeued=1, redelivered=1)
    assert delivered == [document.id]
    requeued = stored(document.id)
    assert (requeued.status, requeued.lease_owner, requeued.attempts) == (
        DocumentStatus.QUEUED,
        None,
        1,
    )
    assert requeued.lease_expires_at is not None
    assert requeued.lease_expires_at > utcnow()  # due again only if this delivery is lost
    again = ingestion_recovery.sweep(
        session_factory=default_session, policy=policy, dispatch=delivered.append
    )
    assert again == IngestSweepReport()
    dispatcher = inline()
    dispatcher.ingest(document.id)
    dispatcher.ingest(document.id)  # the delivery of a sweep that raced: a no-op
    chunks = assert_ingested(stored(document.id), attempts=2)
    assert len(chunks) == 1
    untouched = stored(alive.id)
    assert (untouched.status, untouched.lease_owner) == (
        DocumentStatus.PROCESSING,
        "elsewhere/2/live/doc",
    )


def test_a_document_out_of_attempts_fails_with_ingestion_interrupted(library: Library) -> None:
    policy = ingest_policy(max_attempts=3)
    document = queued_document(
        library,
        unique_text("Crashes every time").encode(),
        status=DocumentStatus.PROCESSING,
        lease_owner="elsewhere/1/gone/doc",
        lease_expires_at=utcnow() - PAST,
        attempts=3,
    )
    delivered: list[uuid.UUID] = []
    report = ingestion_recovery.sweep(
        session_factory=default_session, policy=policy, dispatch=delivered.append
    )
    assert report == IngestSweepReport(interrupted=1)
    assert delivered == []
    failed = stored(document.id)
    assert_failed(failed, "ingestion_interrupted")
    assert failed.attempts == 3


def test_a_queued_document_nobody_took_is_delivered_again(library: Library) -> None:
    now = utcnow()
    policy = ingest_policy(redeliver_after=timedelta(seconds=30))
    lost = queued_document(  # its delivery was lost before any due time was set
        library, unique_text("Lost").encode(), created_at=now - timedelta(minutes=10)
    )
    overdue = queued_document(library, unique_text("Overdue").encode(), lease_expires_at=now - PAST)
    fresh = queued_document(library, unique_text("Fresh").encode(), created_at=now)
    delivered: list[uuid.UUID] = []
    report = ingestion_recovery.sweep(
        session_factory=default_session, policy=policy, dispatch=delivered.append
    )
    assert report == IngestSweepReport(redelivered=2)
    assert sorted(delivered) == sorted([lost.id, overdue.id])
    # The longer one has waited, the longer until it is due again (at most 16 waits).
    lost_due, overdue_due = stored(lost.id).lease_expires_at, stored(overdue.id).lease_expires_at
    assert lost_due is not None
    assert overdue_due is not None
    assert now + timedelta(minutes=8) < lost_due < now + timedelta(minutes=11)
    assert now + timedelta(seconds=25) < overdue_due < now + timedelta(seconds=60)
    assert stored(fresh.id).lease_expires_at is None
    assert (
        ingestion_recovery.sweep(
            session_factory=default_session, policy=policy, dispatch=delivered.append
        )
        == IngestSweepReport()
    )
    assert all(stored(d.id).status == DocumentStatus.QUEUED for d in (lost, overdue, fresh))


def test_a_sweep_takes_a_bounded_batch(library: Library) -> None:
    count = ingestion_recovery.SWEEP_BATCH + 5
    with Session(engine) as session:
        session.add_all(
            Document(
                knowledge_base_id=library.kb.id,
                owner_id=library.user.id,
                title=f"Batch {n}",
                filename=f"batch-{n}.txt",
                content_type="text/plain",
                size_bytes=1,
                sha256=f"{n:064x}",
                storage_key=f"sha256/00/00{n:062x}",
                lease_expires_at=utcnow() - PAST,
            )
            for n in range(count)
        )
        session.commit()
    delivered: list[uuid.UUID] = []
    sweeps = [
        ingestion_recovery.sweep(
            session_factory=default_session, policy=ingest_policy(), dispatch=delivered.append
        )
        for _ in range(3)
    ]
    assert [s.redelivered for s in sweeps] == [ingestion_recovery.SWEEP_BATCH, 5, 0]
    assert len(set(delivered)) == count


def test_start_up_recovery_takes_back_what_dead_processes_of_this_host_held(
    library: Library,
) -> None:
    dead = queued_document(
        library,
        unique_text("Held by a dead process").encode(),
        storage=STORAGE,
        status=DocumentStatus.PROCESSING,
        lease_owner=f"{HOST}/{os.getpid()}/{'f' * 8}/doc",  # a former process with this pid
        lease_expires_at=utcnow() + timedelta(seconds=60),
        attempts=1,
    )
    live = queued_document(
        library,
        unique_text("Held by this process").encode(),
        status=DocumentStatus.PROCESSING,
        lease_owner=f"{HOST}/{os.getpid()}/{INCARNATION}/doc",
        lease_expires_at=utcnow() + timedelta(seconds=60),
        attempts=1,
    )
    dispatcher = inline()
    dispatcher.recover()  # recovers, then delivers inline
    assert_ingested(stored(dead.id), attempts=2)
    assert stored(live.id).status == DocumentStatus.PROCESSING


# ==================== failures ====================


def test_a_missing_stored_file_fails_with_file_missing(library: Library) -> None:
    data = unique_text("Soon gone").encode()
    with TestClient(real_app(ParkedDispatcher())) as client:
        document_id = upload(client, library, "gone.txt", data)["id"]
        STORAGE.delete(stored(uuid.UUID(document_id)).storage_key)
        inline().ingest(uuid.UUID(document_id))
        body = read(client, library, document_id)
    assert (body["status"], body["error_code"]) == ("failed", "file_missing")
    assert_failed(stored(uuid.UUID(document_id)), "file_missing")


def too_many_pages() -> bytes:
    return make_pdf(["one", "two", "three"])


@pytest.mark.parametrize(
    ("filename", "build", "code"),
    [
        ("secret.pdf", lambda: make_encrypted_pdf(["Classified"]), "encrypted_document"),
        ("scan.pdf", make_scanned_pdf, "no_text_extracted"),
        ("broken.pdf", lambda: b"%PDF-1.7\n" + os.urandom(64), "unreadable_document"),
        ("bomb.docx", make_zip_bomb_docx, "document_too_large"),
        ("long.pdf", too_many_pages, "document_too_large"),
    ],
)
def test_extraction_failures_end_with_their_codes(
    library: Library, filename: str, build: Callable[[], bytes], code: str
) -> None:
    limits = ExtractionLimits(max_pages=2, max_bytes=settings.MAX_EXTRACTED_BYTES)
    with TestClient(real_app(inline(limits=limits))) as client:
        document_id = upload(client, library, filename, build())["id"]
        body = read(client, library, document_id)  # ingested within the upload
    assert (body["status"], body["error_code"]) == ("failed", code)
    assert body["error_message"]
    document = stored(uuid.UUID(document_id))
    assert_failed(document, code)
    assert document.attempts == 1


def test_a_storage_that_is_away_puts_the_document_back_then_fails_it(
    library: Library, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_bytes(b"")  # every path under it fails, and not as a missing file
    away = LocalStorage(blocked)
    policy = ingest_policy(max_attempts=2, redeliver_after=timedelta(seconds=30))
    document = queued_document(library, unique_text("Unreachable").encode())
    dispatcher = inline(storage=away, max_attempts=2, redeliver_after=timedelta(seconds=30))
    before = utcnow()
    dispatcher.ingest(document.id)
    released = stored(document.id)
    assert (released.status, released.lease_owner, released.attempts) == (
        DocumentStatus.QUEUED,
        None,
        1,
    )
    assert released.error_code is None
    assert released.lease_expires_at is not None
    assert released.lease_expires_at >= before + policy.backoff(1)  # 60 s: the second wait
    dispatcher.ingest(document.id)  # the last attempt
    failed = stored(document.id)
    assert_failed(failed, "storage_unavailable")
    assert failed.attempts == 2


# ==================== storage that stops answering ====================


class GatedProxy:
    """A TCP proxy on 127.0.0.1 to `upstream_port` that holds every connection, reading
    and answering nothing, until it is opened: a store that stops answering, then
    recovers (or never does)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._gate = threading.Event()
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        self._gate.set()

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closed = True
        self._gate.set()
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for held in self._sockets:
                held.close()

    def _keep(self, held: socket.socket) -> None:
        with self._lock:
            self._sockets.append(held)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return
            self._keep(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self._gate.wait()
        if self._closed:
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        self._keep(upstream)
        threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
        _pipe(upstream, client)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65_536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        with suppress(OSError):
            target.shutdown(socket.SHUT_WR)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[str]:
    client = s3_server.client()
    name = f"ingest-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    yield name
    for item in client.list_objects_v2(Bucket=name).get("Contents", []):
        client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


def s3_env(bucket: str, endpoint: str) -> dict[str, str]:
    return {
        "STORAGE_URL": f"s3://{bucket}",
        "S3_ENDPOINT_URL": endpoint,
        "S3_REGION": REGION,
        "S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    }


def s3_storage(bucket: str, endpoint: str) -> Storage:
    values: dict[str, Any] = s3_env(bucket, endpoint)
    return build_storage(Settings(_env_file=None, **values))


def test_a_document_deleted_during_its_ingestion_gets_no_chunks(
    library: Library, s3_server: S3Server, bucket: str
) -> None:
    data = unique_text("Deleted while read").encode()
    storage = s3_storage(bucket, s3_server.url)
    with Session(engine, expire_on_commit=False) as session:
        # The same file in a second knowledge base: deleting one document keeps it.
        other_kb = create_knowledge_base(session, owner=library.user, name="Copies")
        copy = create_document(session, knowledge_base=other_kb, data=data, storage=storage)
        document = create_document(session, knowledge_base=library.kb, data=data, storage=storage)
    app = real_app(ParkedDispatcher())
    app.state.storage = storage
    with GatedProxy(s3_server.port) as proxy, TestClient(app) as client:
        ingesting = threading.Thread(
            target=inline(storage=s3_storage(bucket, proxy.url)).ingest, args=(document.id,)
        )
        ingesting.start()
        wait_until(
            "the document to be claimed",
            lambda: in_status(document.id, DocumentStatus.PROCESSING),
        )
        deleted = client.delete(f"/api/v1/documents/{document.id}", headers=library.headers)
        proxy.open()  # the file arrives after all; the document is gone
        ingesting.join(timeout=WAIT_SECONDS)
    assert not ingesting.is_alive()
    assert deleted.status_code == 204
    with Session(engine) as session:
        assert session.get(Document, document.id) is None
    assert chunks_of(document.id) == []
    untouched = stored(copy.id)
    assert (untouched.status, untouched.attempts) == (DocumentStatus.QUEUED, 0)
    assert storage.exists(copy.storage_key)


def test_a_long_ingestion_keeps_its_lease_and_is_not_swept(
    library: Library, s3_server: S3Server, bucket: str
) -> None:
    lease = timedelta(seconds=3)
    with GatedProxy(s3_server.port) as slow:
        dispatcher = ThreadPoolDispatcher(
            workers=1,
            ingest_workers=1,
            llm=LLMClient(providers={}),
            storage=s3_storage(bucket, slow.url),
            policy=run_policy(sweep_interval=0.5, lease=lease),
            ingest_policy=ingest_policy(lease=lease),
            session_factory=default_session,
        )
        app = real_app(dispatcher)
        app.state.storage = s3_storage(bucket, s3_server.url)
        with TestClient(app) as client:  # its heartbeat and sweep run
            data = unique_text("Slow to read").encode()
            document_id = uuid.UUID(upload(client, library, "slow.txt", data)["id"])
            claimed = wait_until(
                "the document to be claimed",
                lambda: in_status(document_id, DocumentStatus.PROCESSING),
            )
            assert claimed.lease_expires_at is not None
            first_expiry = claimed.lease_expires_at
            wait_until(
                "the first lease and a sweep to have passed",
                lambda: utcnow() > first_expiry + timedelta(seconds=1) or None,
            )
            held = stored(document_id)
            slow.open()
            wait_until(
                "the document to be ingested",
                lambda: in_status(document_id, DocumentStatus.READY),
            )
    assert (held.status, held.lease_owner) == (DocumentStatus.PROCESSING, claimed.lease_owner)
    assert held.lease_expires_at is not None
    assert held.lease_expires_at > first_expiry
    assert_ingested(stored(document_id), attempts=1)


# ==================== a worker killed mid-ingestion ====================

FAST = {
    "RUN_LEASE_SECONDS": "3",
    "RUN_SWEEP_INTERVAL_SECONDS": "0.5",
    "RUN_REDELIVER_SECONDS": "1",
    "CELERY_PUBLISH_TIMEOUT_SECONDS": "1",
}


def start_worker(log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker", "--concurrency", "2"],
            env={**os.environ, "LOG_LEVEL": "INFO", **FAST, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_worker_killed_mid_ingestion_is_recovered_by_another(
    library: Library,
    s3_server: S3Server,
    bucket: str,
    redis_server: RedisServer,
    workers: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    broker = redis_server.url()
    database = engine.url.render_as_string(hide_password=False)
    log = tmp_path / "workers.log"
    config = settings.model_copy(update={"CELERY_BROKER_URL": broker})
    dispatcher = CeleryDispatcher(
        celery=build_celery(config),
        policy=run_policy(sweep_interval=0.5, redeliver_after=timedelta(seconds=1)),
        ingest_policy=ingest_policy(
            lease=timedelta(seconds=3), redeliver_after=timedelta(seconds=1)
        ),
        publish_timeout=1,
        session_factory=default_session,
    )
    app = real_app(dispatcher)
    app.state.storage = s3_storage(bucket, s3_server.url)
    with GatedProxy(s3_server.port) as frozen, TestClient(app) as client:
        # The first worker reaches the store through a proxy that never answers.
        first = start_worker(
            log,
            {"CELERY_BROKER_URL": broker, "DATABASE_URL": database, **s3_env(bucket, frozen.url)},
        )
        workers.append(first)
        data = make_pdf([unique_text("Valve clearance is checked every 500 hours")])
        document_id = uuid.UUID(upload(client, library, "valves.pdf", data)["id"])
        held = wait_until(
            "the first worker to claim the document",
            lambda: in_status(document_id, DocumentStatus.PROCESSING),
        )
        assert held.lease_owner is not None
        assert f"/{first.pid}/" in held.lease_owner
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=WAIT_SECONDS) == -signal.SIGKILL
        second = start_worker(
            log,
            {
                "CELERY_BROKER_URL": broker,
                "DATABASE_URL": database,
                **s3_env(bucket, s3_server.url),
            },
        )
        workers.append(second)
        wait_until(
            "the document to be ingested after the kill",
            lambda: in_status(document_id, DocumentStatus.READY),
        )
        body = read(client, library, str(document_id))
    document = stored(document_id)
    chunks = assert_ingested(document, attempts=2)
    assert (body["status"], body["chunk_count"], body["page_count"]) == ("ready", len(chunks), 1)
    assert second.poll() is None
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=WAIT_SECONDS) == 0, log.read_text(errors="replace")[-3000:]


# ==================== semantic indexes ====================


@pytest.fixture
def embedder() -> Iterator[AIModel]:
    """An embedding model of the catalog, committed (workers read it in their sessions)."""
    with Session(engine, expire_on_commit=False) as session:
        model = create_ai_model(
            session,
            provider="openai",
            max_output_tokens=1,
            input_price_per_million=Decimal("0.020000"),
            output_price_per_million=Decimal(0),
        )
        model.kind = ModelKind.EMBEDDING
        model.dimensions = 64
        session.add(model)
        session.commit()
    try:
        yield model
    finally:
        with Session(engine) as session:
            session.execute(delete(AIModel).where(col(AIModel.id) == model.id))
            session.commit()


def test_agentry_workers_build_a_semantic_index_through_the_broker(
    library: Library,
    embedder: AIModel,
    fake_llm: FakeLLM,
    redis_server: RedisServer,
    workers: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    broker = redis_server.url()
    config = settings.model_copy(update={"CELERY_BROKER_URL": broker})
    dispatcher = CeleryDispatcher(
        celery=build_celery(config),
        policy=run_policy(sweep_interval=0.5, redeliver_after=timedelta(seconds=1)),
        ingest_policy=ingest_policy(redeliver_after=timedelta(seconds=1)),
        publish_timeout=1,
        session_factory=default_session,
    )
    log = tmp_path / "workers.log"
    kb_path = f"/api/v1/knowledge-bases/{library.kb.id}"
    app = real_app(dispatcher)
    # The app process embeds the searched question itself.
    app.state.llm = LLMClient(providers={"openai": ProviderSettings(base_url=fake_llm.base_url)})
    with TestClient(app) as client:
        workers.append(
            start_worker(
                log,
                {
                    "CELERY_BROKER_URL": broker,
                    "DATABASE_URL": engine.url.render_as_string(hide_password=False),
                    "LLM_PROVIDERS__OPENAI__BASE_URL": fake_llm.base_url,
                },
            )
        )
        patched = client.patch(
            kb_path, headers=library.headers, json={"embedding_model_id": str(embedder.id)}
        )
        assert patched.status_code == 200, patched.text
        words = unique_text("The turbine blades are inspected after every storm")
        upload(client, library, "turbine.txt", f"{words}.\n".encode())

        def indexed() -> dict[str, Any] | None:
            index: dict[str, Any] = client.get(kb_path, headers=library.headers).json()["index"]
            done = index["status"] == "ready" and index["chunks_embedded"] > 0
            return index if done and index["chunks_embedded"] == index["chunks_total"] else None

        index = wait_until("the worker to embed the document", indexed)
        found = client.get(
            f"{kb_path}/search",
            headers=library.headers,
            params={"q": "turbine blade inspections", "mode": "semantic"},
        )
    assert index["model_id"] == str(embedder.id)
    assert found.status_code == 200, found.text
    assert words in found.json()["data"][0]["text"]
    with Session(engine) as session:
        vectors = session.exec(
            select(ChunkVector.model_id).where(col(ChunkVector.knowledge_base_id) == library.kb.id)
        ).all()
        billed = session.exec(
            select(UsageEntry).where(
                col(UsageEntry.user_id) == library.user.id,
                col(UsageEntry.kind) == UsageKind.EMBEDDING,
                col(UsageEntry.knowledge_base_id) == library.kb.id,
            )
        ).all()
        session.execute(delete(UsageEntry).where(col(UsageEntry.user_id) == library.user.id))
        session.commit()
    assert len(vectors) == index["chunks_total"]
    assert set(vectors) == {embedder.id}
    assert len(billed) >= 1  # the passages, and the searched question
    assert workers[0].poll() is None, log.read_text(errors="replace")[-3000:]
