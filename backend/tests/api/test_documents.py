"""Documents through HTTP: upload (limits, kinds, duplicates, quota, storage and queue
failures), list, read, download, delete and reprocess. Files are real (tests/documents.py)
and stored in the test DATA_DIR; ingestion runs inline (the test app's InlineDispatcher)."""

import hashlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import delete
from sqlmodel import Session, col, func, select

from app.core.db import utcnow
from app.main import create_app
from app.models.document import Chunk, Document, DocumentStatus
from app.models.knowledge_base import KnowledgeBase
from app.models.user import User
from app.modules.storage import Storage, build_storage, key_for
from app.services.ingestion_service import IngestPolicy
from app.services.run_runtime import RunPolicy
from app.tasks.celery_app import build_celery
from app.tasks.dispatch import CeleryDispatcher
from tests.conftest import AppFactory
from tests.documents import CORRUPT_PDF, FAKE_EXE, make_csv, make_docx, make_html, make_pdf
from tests.environment import engine, settings
from tests.factories import (
    ParkedDispatcher,
    auth_headers,
    create_chunk,
    create_document,
    create_knowledge_base,
    create_user,
)
from tests.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, S3Server

API = "/api/v1"
OVERHEAD = 64 * 1024  # app.main.UPLOAD_OVERHEAD_BYTES


@pytest.fixture
def storage() -> Storage:
    return build_storage(settings)


@pytest.fixture
def kb(db: Session, user: User) -> KnowledgeBase:
    return create_knowledge_base(db, owner=user, name="Handbook")


@pytest.fixture
def other_headers(db: Session) -> dict[str, str]:
    return auth_headers(db, user=create_user(db))


@pytest.fixture(params=["other", "superuser"])
def stranger_headers(
    request: pytest.FixtureRequest,
    other_headers: dict[str, str],
    superuser_headers: dict[str, str],
) -> dict[str, str]:
    """Someone who is not the owner: another user, or a superuser (content is private)."""
    return other_headers if request.param == "other" else superuser_headers


def text(words: str) -> bytes:
    """Text content no other test stores (stored files are shared by content)."""
    return f"{words}\n\nReference {uuid.uuid4().hex}.\n".encode()


def upload(
    client: TestClient,
    kb: KnowledgeBase,
    headers: dict[str, str],
    filename: str,
    data: bytes,
    **fields: str,
) -> httpx2.Response:
    return client.post(
        f"{API}/knowledge-bases/{kb.id}/documents",
        headers=headers,
        files={"file": (filename, data)},
        data=fields,
    )


def raw_upload(
    client: TestClient, kb: KnowledgeBase, headers: dict[str, str], filename: str, data: bytes
) -> httpx2.Response:
    """A multipart body written by hand, so that the file name arrives byte for byte."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return client.post(
        f"{API}/knowledge-bases/{kb.id}/documents",
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=body,
    )


def documents_in(db: Session, kb: KnowledgeBase) -> list[Document]:
    db.expire_all()
    return list(db.exec(select(Document).where(Document.knowledge_base_id == kb.id)).all())


def chunk_count(db: Session, document_id: uuid.UUID) -> int:
    return db.exec(select(func.count()).where(Chunk.document_id == document_id)).one()


def indexed(db: Session, word: str) -> list[int]:
    """Chunk ids the SQLite full-text index answers `word` with (PostgreSQL: none kept)."""
    if db.get_bind().dialect.name != "sqlite":
        return []
    result = db.connection().exec_driver_sql(
        "SELECT rowid FROM chunk_fts WHERE chunk_fts MATCH ?", (word,)
    )
    return [row[0] for row in result]


# ==================== upload ====================


class TestUpload:
    def test_anonymous_is_401(self, client: TestClient, db: Session, kb: KnowledgeBase) -> None:
        response = upload(client, kb, {}, "notes.txt", text("Hello"))
        assert response.status_code == 401
        assert documents_in(db, kb) == []

    def test_someone_elses_knowledge_base_is_404(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        storage: Storage,
        stranger_headers: dict[str, str],
    ) -> None:
        data = text("Not theirs")
        response = upload(client, kb, stranger_headers, "notes.txt", data)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
        assert documents_in(db, kb) == []
        assert not storage.exists(key_for(data))

    def test_a_pdf_is_queued_stored_and_then_ingested(
        self,
        client: TestClient,
        db: Session,
        user: User,
        kb: KnowledgeBase,
        storage: Storage,
        user_headers: dict[str, str],
    ) -> None:
        data = make_pdf([f"Gardening in spring {uuid.uuid4().hex}", "Pruning roses"])
        response = upload(client, kb, user_headers, "Garden Guide.pdf", data)
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "queued"
        assert (body["title"], body["filename"]) == ("Garden Guide", "Garden Guide.pdf")
        assert body["content_type"] == "application/pdf"
        assert body["size_bytes"] == len(data)
        assert body["sha256"] == hashlib.sha256(data).hexdigest()
        assert body["knowledge_base_id"] == str(kb.id)
        [document] = documents_in(db, kb)
        assert str(document.id) == body["id"]
        assert document.owner_id == user.id
        assert storage.get(document.storage_key) == data
        # The test app ingests inline: by now it is done.
        response = client.get(f"{API}/documents/{document.id}", headers=user_headers)
        assert response.status_code == 200
        assert response.json()["status"] == "ready"
        assert response.json()["page_count"] == 2
        assert document.status == DocumentStatus.READY
        assert document.chunk_count is not None
        assert chunk_count(db, document.id) == document.chunk_count > 0

    @pytest.mark.parametrize(
        ("filename", "build", "content_type"),
        [
            (
                "memo.docx",
                lambda: make_docx([(1, "Memo"), (None, uuid.uuid4().hex)]),
                "wordprocessing",
            ),
            ("page.html", lambda: make_html([(1, "Page"), (None, uuid.uuid4().hex)]), "html"),
            ("rows.csv", lambda: make_csv([["a", "b"], ["1", uuid.uuid4().hex]]), "text/csv"),
            ("readme.md", lambda: text("# Title\n\nSome *markdown*"), "text/markdown"),
            ("plain.txt", lambda: text("Plain words"), "text/plain"),
        ],
        ids=["docx", "html", "csv", "markdown", "text"],
    )
    def test_every_supported_kind(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
        filename: str,
        build: Callable[[], bytes],
        content_type: str,
    ) -> None:
        response = upload(client, kb, user_headers, filename, build())
        assert response.status_code == 202, response.text
        assert content_type in response.json()["content_type"]
        [document] = documents_in(db, kb)
        assert document.content_type == response.json()["content_type"]
        assert document.status == DocumentStatus.READY

    def test_a_title_may_be_given(
        self, client: TestClient, db: Session, kb: KnowledgeBase, user_headers: dict[str, str]
    ) -> None:
        response = upload(
            client, kb, user_headers, "q3.txt", text("Numbers"), title="  Quarterly report  "
        )
        assert response.status_code == 202
        assert response.json()["title"] == "Quarterly report"
        [document] = documents_in(db, kb)
        assert (document.title, document.filename) == ("Quarterly report", "q3.txt")

    @pytest.mark.parametrize(
        ("sent", "kept"),
        [
            ("../../etc/notes.txt", "notes.txt"),
            ("C:\\Users\\ada\\notes.txt", "notes.txt"),
            ("no\x07tes\x7f.txt", "notes.txt"),
            ("report\u202etxt.exe.md", "reporttxt.exe.md"),
            ("  ..  ", "document"),
            ("", "document"),
            ("r\u00e9sum\u00e9.md", "r\u00e9sum\u00e9.md"),
        ],
        ids=["posix-path", "windows-path", "controls", "bidi", "dots", "empty", "accents"],
    )
    def test_file_names_are_made_safe(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
        sent: str,
        kept: str,
    ) -> None:
        response = raw_upload(client, kb, user_headers, sent, text("Named"))
        assert response.status_code == 202, response.text
        assert response.json()["filename"] == kept
        [document] = documents_in(db, kb)
        assert document.filename == kept

    def test_a_long_file_name_keeps_its_extension(
        self, client: TestClient, db: Session, kb: KnowledgeBase, user_headers: dict[str, str]
    ) -> None:
        response = upload(client, kb, user_headers, "n" * 400 + ".md", text("Long"))
        assert response.status_code == 202
        [document] = documents_in(db, kb)
        assert document.filename == "n" * 252 + ".md"
        assert document.title == "n" * 252

    def test_an_executable_called_pdf_is_415(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        storage: Storage,
        user_headers: dict[str, str],
    ) -> None:
        response = upload(client, kb, user_headers, "report.pdf", FAKE_EXE)
        assert response.status_code == 415
        assert response.json()["code"] == "unsupported_media_type"
        assert documents_in(db, kb) == []
        assert not storage.exists(key_for(FAKE_EXE))

    def test_the_same_content_twice_is_409_naming_the_first(
        self, client: TestClient, db: Session, kb: KnowledgeBase, user_headers: dict[str, str]
    ) -> None:
        data = text("Twice")
        first = upload(client, kb, user_headers, "one.txt", data)
        response = upload(client, kb, user_headers, "two.txt", data, title="Other")
        assert response.status_code == 409
        body = response.json()
        assert body["code"] == "duplicate_document"
        assert body["document_id"] == first.json()["id"]
        assert [d.filename for d in documents_in(db, kb)] == ["one.txt"]

    def test_the_same_content_in_another_knowledge_base_is_fine(
        self,
        client: TestClient,
        db: Session,
        user: User,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
    ) -> None:
        data = text("Shared")
        second = create_knowledge_base(db, owner=user, name="Second")
        assert upload(client, kb, user_headers, "a.txt", data).status_code == 202
        assert upload(client, second, user_headers, "a.txt", data).status_code == 202
        [first], [copy] = documents_in(db, kb), documents_in(db, second)
        assert first.storage_key == copy.storage_key

    @pytest.mark.parametrize(
        ("fields", "files", "field", "kind"),
        [
            ({}, {"file": ("empty.txt", b"")}, "file", "value_error"),
            ({}, None, "file", "missing"),
            ({"file": "text, not a file"}, None, "file", None),
            ({"title": "a\x00b"}, {"file": ("t.txt", b"words")}, "title", "nul_character"),
            ({"title": "t" * 301}, {"file": ("t.txt", b"words")}, "title", "string_too_long"),
            ({"owner_id": str(uuid.uuid4())}, {"file": ("t.txt", b"x")}, "owner_id", None),
        ],
        ids=["empty-file", "no-file", "text-file", "nul-title", "long-title", "unknown-field"],
    )
    def test_bad_input_is_422(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
        fields: dict[str, str],
        files: dict[str, Any] | None,
        field: str,
        kind: str | None,
    ) -> None:
        response = client.post(
            f"{API}/knowledge-bases/{kb.id}/documents",
            headers=user_headers,
            data=fields,
            files=files,
        )
        assert response.status_code == 422, response.text
        errors = [e for e in response.json()["errors"] if e["loc"] == ["body", field]]
        assert errors, response.json()
        if kind is not None:
            assert errors[0]["type"] == kind
        assert documents_in(db, kb) == []

    def test_an_empty_file_is_named(
        self, client: TestClient, kb: KnowledgeBase, user_headers: dict[str, str]
    ) -> None:
        response = upload(client, kb, user_headers, "empty.txt", b"")
        assert response.json()["code"] == "empty_file"


class TestUploadLimits:
    MAX = 4096

    @pytest.fixture
    def small_client(self, make_app: AppFactory) -> Iterator[TestClient]:
        config = settings.model_copy(update={"MAX_UPLOAD_BYTES": self.MAX})
        with TestClient(make_app(config)) as client:
            yield client

    def test_a_body_just_over_the_limit_is_refused_before_it_is_read(
        self,
        small_client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
    ) -> None:
        limit = self.MAX + OVERHEAD
        for size in (limit + 1, limit + 1_000_000):
            response = small_client.post(
                f"{API}/knowledge-bases/{kb.id}/documents",
                headers={**user_headers, "Content-Type": "multipart/form-data; boundary=b"},
                content=b"x" * size,
            )
            assert response.status_code == 413
            assert response.json()["code"] == "upload_too_large"
            assert response.json()["detail"] == f"A document may not exceed {self.MAX} bytes"
            assert response.headers["connection"] == "close"
        assert documents_in(db, kb) == []

    @pytest.mark.parametrize(
        "authorization", [None, "Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer "]
    )
    def test_without_a_valid_token_it_is_401_before_the_body_is_read(
        self, small_client: TestClient, db: Session, kb: KnowledgeBase, authorization: str | None
    ) -> None:
        sent: list[int] = []

        def body() -> Iterator[bytes]:
            for _ in range(64):  # far beyond any limit, if it were read
                sent.append(1)
                yield b"x" * 65536

        headers = {"Content-Type": "multipart/form-data; boundary=b"}
        if authorization is not None:
            headers["Authorization"] = authorization
        response = small_client.post(
            f"{API}/knowledge-bases/{kb.id}/documents", headers=headers, content=body()
        )
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_token"
        assert response.headers["connection"] == "close"
        assert len(sent) < 64  # refused before the whole body was taken
        assert documents_in(db, kb) == []

    def test_a_body_sent_in_chunks_is_refused_too(
        self,
        small_client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
    ) -> None:
        def chunks() -> Iterator[bytes]:
            for _ in range(20):
                yield b"x" * 8192

        response = small_client.post(
            f"{API}/knowledge-bases/{kb.id}/documents",
            headers={**user_headers, "Content-Type": "multipart/form-data; boundary=b"},
            content=chunks(),
        )
        assert response.status_code == 413
        assert response.json()["code"] == "upload_too_large"
        assert documents_in(db, kb) == []

    def test_a_file_one_byte_over_is_413_and_one_at_the_limit_is_taken(
        self,
        small_client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
    ) -> None:
        over = text("Over").ljust(self.MAX + 1, b".")
        response = upload(small_client, kb, user_headers, "over.txt", over)
        assert response.status_code == 413
        assert response.json()["code"] == "upload_too_large"
        assert documents_in(db, kb) == []
        response = upload(small_client, kb, user_headers, "fits.txt", over[: self.MAX])
        assert response.status_code == 202
        assert [d.size_bytes for d in documents_in(db, kb)] == [self.MAX]

    def test_uploads_may_exceed_the_limit_of_other_bodies(
        self,
        make_app: AppFactory,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
    ) -> None:
        config = settings.model_copy(update={"MAX_REQUEST_BODY_BYTES": 2048})
        with TestClient(make_app(config)) as client:
            data = text(" ".join(["lorem ipsum"] * 1000))
            assert upload(client, kb, user_headers, "big.txt", data).status_code == 202
            response = client.post(
                f"{API}/agents", headers=user_headers, json={"name": "A", "description": "d" * 3000}
            )
            assert response.status_code == 413
            assert response.json()["code"] == "request_too_large"
        assert [d.size_bytes for d in documents_in(db, kb)] == [len(data)]

    def test_beyond_the_storage_quota_is_413(
        self,
        make_app: AppFactory,
        db: Session,
        user: User,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
    ) -> None:
        elsewhere = create_knowledge_base(db, owner=user, name="Elsewhere")
        create_document(db, knowledge_base=elsewhere, data=b"x" * 600)
        config = settings.model_copy(update={"STORAGE_QUOTA_BYTES": 1000})
        with TestClient(make_app(config)) as client:
            response = upload(client, kb, user_headers, "big.txt", text("Words").ljust(401, b"."))
            assert response.status_code == 413
            body = response.json()
            assert body["code"] == "storage_quota_exceeded"
            assert (body["used_bytes"], body["quota_bytes"]) == (600, 1000)
            assert documents_in(db, kb) == []
            response = upload(client, kb, user_headers, "fits.txt", text("Words").ljust(400, b"."))
            assert response.status_code == 202
        assert [d.size_bytes for d in documents_in(db, kb)] == [400]

    def test_other_owners_documents_do_not_count(
        self,
        make_app: AppFactory,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
    ) -> None:
        theirs = create_knowledge_base(db, owner=create_user(db))
        create_document(db, knowledge_base=theirs, data=b"x" * 900)
        config = settings.model_copy(update={"STORAGE_QUOTA_BYTES": 1000})
        with TestClient(make_app(config)) as client:
            data = text("Mine").ljust(1000, b".")
            assert upload(client, kb, user_headers, "mine.txt", data).status_code == 202


class TestUploadFailures:
    def test_storage_unavailable_is_503_and_stores_nothing(
        self,
        make_app: AppFactory,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
    ) -> None:
        with S3Server() as server, TestClient(make_app(s3_without_bucket(server))) as client:
            response = upload(client, kb, user_headers, "notes.txt", text("Nowhere"))
        assert response.status_code == 503
        assert response.json()["code"] == "storage_unavailable"
        assert response.headers["retry-after"]
        assert documents_in(db, kb) == []

    def test_a_queue_that_is_down_leaves_it_queued_for_the_sweep(
        self,
        app: FastAPI,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
        session_factory: Callable[[], Session],
    ) -> None:
        app.state.run_dispatcher = unreachable_broker(session_factory)
        try:
            before = utcnow()
            response = upload(client, kb, user_headers, "notes.txt", text("Queued"))
        finally:
            app.state.run_dispatcher.close()
        assert response.status_code == 202
        assert response.json()["status"] == "queued"
        [document] = documents_in(db, kb)
        assert document.status == DocumentStatus.QUEUED
        assert document.lease_expires_at is not None
        assert before <= document.lease_expires_at <= utcnow()  # due at once


def s3_without_bucket(server: S3Server) -> Any:
    return settings.model_copy(
        update={
            "STORAGE_URL": f"s3://missing-{uuid.uuid4().hex[:12]}",
            "S3_ENDPOINT_URL": server.url,
            "S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "S3_SECRET_ACCESS_KEY": SecretStr(SECRET_ACCESS_KEY),
        }
    )


def unreachable_broker(session_factory: Callable[[], Session]) -> CeleryDispatcher:
    """What an app process delivers with when its broker is down (a port nobody holds)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = settings.model_copy(update={"CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0"})
    return CeleryDispatcher(
        celery=build_celery(config),
        policy=RunPolicy.from_settings(config),
        ingest_policy=IngestPolicy.from_settings(config),
        publish_timeout=0.5,
        session_factory=session_factory,
    )


@pytest.mark.skipif(engine.dialect.name != "postgresql", reason="needs concurrent writers")
def test_concurrent_uploads_never_pass_the_quota() -> None:
    """Twelve uploads of 100 bytes at once against a quota of 550: exactly five get in."""
    with Session(engine, expire_on_commit=False) as session:
        owner = create_user(session)
        kb = create_knowledge_base(session, owner=owner)
        headers = auth_headers(session, user=owner)
    app = create_app(settings.model_copy(update={"STORAGE_QUOTA_BYTES": 550}))
    app.state.run_dispatcher = ParkedDispatcher()
    files = [text("Concurrent").ljust(100, b".") for _ in range(12)]
    barrier = threading.Barrier(len(files))
    statuses: list[int] = []
    try:
        with TestClient(app) as client:

            def post(data: bytes) -> None:
                barrier.wait()
                statuses.append(upload(client, kb, headers, "same.txt", data).status_code)

            workers = [threading.Thread(target=post, args=(data,)) for data in files]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        assert sorted(statuses) == [202] * 5 + [413] * 7
        with Session(engine) as session:
            stored = session.exec(select(Document).where(Document.owner_id == owner.id)).all()
            assert sum(document.size_bytes for document in stored) == 500
    finally:
        with Session(engine) as session:
            session.execute(delete(User).where(col(User.id) == owner.id))  # cascades
            session.commit()
        storage = build_storage(settings)
        for data in files:
            storage.delete(key_for(data))


# ==================== list and read ====================


class TestListDocuments:
    def test_anonymous_is_401(self, client: TestClient, kb: KnowledgeBase) -> None:
        assert client.get(f"{API}/knowledge-bases/{kb.id}/documents").status_code == 401

    def test_someone_elses_knowledge_base_is_404(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        stranger_headers: dict[str, str],
    ) -> None:
        create_document(db, knowledge_base=kb)
        response = client.get(f"{API}/knowledge-bases/{kb.id}/documents", headers=stranger_headers)
        assert response.status_code == 404

    def test_filters_sorts_and_pages(
        self,
        client: TestClient,
        db: Session,
        user: User,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
    ) -> None:
        now = utcnow()
        made = [
            ("Alpha plan", "alpha.txt", DocumentStatus.READY),
            ("beta plan", "b.txt", DocumentStatus.FAILED),
            ("Gamma", "gamma-plan.txt", DocumentStatus.READY),
            ("Delta", "delta.txt", DocumentStatus.QUEUED),
        ]
        for index, (title, filename, status) in enumerate(made):
            create_document(
                db,
                knowledge_base=kb,
                data=text(title),
                title=title,
                filename=filename,
                status=status,
                created_at=now - timedelta(minutes=index),
            )
        create_document(db, knowledge_base=create_knowledge_base(db, owner=user), data=text("x"))
        url = f"{API}/knowledge-bases/{kb.id}/documents"

        def titles(**params: Any) -> tuple[int, list[str]]:
            response = client.get(url, headers=user_headers, params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            return body["count"], [document["title"] for document in body["data"]]

        assert titles() == (4, ["Alpha plan", "beta plan", "Gamma", "Delta"])
        assert titles(status="ready", sort="created_at") == (2, ["Gamma", "Alpha plan"])
        assert titles(q="PLAN", sort="-title") == (3, ["Gamma", "beta plan", "Alpha plan"])
        assert titles(sort="title", skip=1, limit=2) == (4, ["beta plan", "Delta"])

    @pytest.mark.parametrize(
        "params",
        [{"status": "done"}, {"q": "a\x00b"}, {"sort": "sha256"}, {"limit": 0}, {"skip": -1}],
    )
    def test_bad_parameters_are_422(
        self,
        client: TestClient,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
        params: dict[str, Any],
    ) -> None:
        response = client.get(
            f"{API}/knowledge-bases/{kb.id}/documents", headers=user_headers, params=params
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["query", *params]


class TestReadDocument:
    def test_anonymous_is_401(self, client: TestClient, db: Session, kb: KnowledgeBase) -> None:
        document = create_document(db, knowledge_base=kb)
        assert client.get(f"{API}/documents/{document.id}").status_code == 401

    def test_mine(
        self, client: TestClient, db: Session, kb: KnowledgeBase, user_headers: dict[str, str]
    ) -> None:
        document = create_document(
            db, knowledge_base=kb, data=b"abc", title="T", status=DocumentStatus.FAILED
        )
        response = client.get(f"{API}/documents/{document.id}", headers=user_headers)
        assert response.status_code == 200
        body = response.json()
        assert (body["id"], body["title"], body["status"]) == (str(document.id), "T", "failed")
        assert "storage_key" not in body
        assert "owner_id" not in body

    def test_someone_elses_is_404(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        stranger_headers: dict[str, str],
    ) -> None:
        document = create_document(db, knowledge_base=kb)
        response = client.get(f"{API}/documents/{document.id}", headers=stranger_headers)
        assert response.status_code == 404


# ==================== download ====================


class TestDownload:
    def test_anonymous_is_401(
        self, client: TestClient, db: Session, kb: KnowledgeBase, storage: Storage
    ) -> None:
        document = create_document(db, knowledge_base=kb, data=text("x"), storage=storage)
        assert client.get(f"{API}/documents/{document.id}/file").status_code == 401

    def test_someone_elses_is_404(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        storage: Storage,
        stranger_headers: dict[str, str],
    ) -> None:
        document = create_document(db, knowledge_base=kb, data=text("x"), storage=storage)
        response = client.get(f"{API}/documents/{document.id}/file", headers=stranger_headers)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"

    def test_the_original_bytes_as_an_attachment(
        self, client: TestClient, kb: KnowledgeBase, user_headers: dict[str, str]
    ) -> None:
        data = text("# R\u00e9sum\u00e9\n\nExperience")
        posted = raw_upload(
            client, kb, user_headers, "R\u00e9sum\u00e9 \u00abfinal\u00bb; 2026.md", data
        )
        assert posted.status_code == 202
        response = client.get(f"{API}/documents/{posted.json()['id']}/file", headers=user_headers)
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["content-type"] == "text/markdown; charset=utf-8"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-disposition"] == (
            'attachment; filename="R_sum_ _final_; 2026.md"; '
            "filename*=UTF-8''R%C3%A9sum%C3%A9%20%C2%ABfinal%C2%BB%3B%202026.md"
        )

    def test_a_pdf_keeps_its_type(
        self, client: TestClient, kb: KnowledgeBase, user_headers: dict[str, str]
    ) -> None:
        data = make_pdf([f"Page {uuid.uuid4().hex}"])
        posted = upload(client, kb, user_headers, "doc.pdf", data)
        response = client.get(f"{API}/documents/{posted.json()['id']}/file", headers=user_headers)
        assert response.content == data
        assert response.headers["content-type"] == "application/pdf"

    def test_a_file_missing_from_storage_is_404(
        self, client: TestClient, db: Session, kb: KnowledgeBase, user_headers: dict[str, str]
    ) -> None:
        document = create_document(db, knowledge_base=kb, data=text("never stored"))
        response = client.get(f"{API}/documents/{document.id}/file", headers=user_headers)
        assert response.status_code == 404
        assert response.json()["code"] == "file_missing"

    def test_storage_unavailable_is_503(
        self,
        make_app: AppFactory,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
    ) -> None:
        document = create_document(db, knowledge_base=kb, data=text("x"))
        with S3Server() as server, TestClient(make_app(s3_without_bucket(server))) as client:
            response = client.get(f"{API}/documents/{document.id}/file", headers=user_headers)
        assert response.status_code == 503
        assert response.json()["code"] == "storage_unavailable"


# ==================== delete ====================


class TestDeleteDocument:
    def test_anonymous_is_401(self, client: TestClient, db: Session, kb: KnowledgeBase) -> None:
        document = create_document(db, knowledge_base=kb)
        assert client.delete(f"{API}/documents/{document.id}").status_code == 401
        assert documents_in(db, kb) != []

    def test_someone_elses_is_404_and_kept(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        storage: Storage,
        stranger_headers: dict[str, str],
    ) -> None:
        document = create_document(db, knowledge_base=kb, data=text("kept"), storage=storage)
        create_chunk(db, document=document, text="kept words")
        response = client.delete(f"{API}/documents/{document.id}", headers=stranger_headers)
        assert response.status_code == 404
        assert [d.id for d in documents_in(db, kb)] == [document.id]
        assert chunk_count(db, document.id) == 1
        assert storage.exists(document.storage_key)

    def test_removes_the_row_its_chunks_their_index_and_the_file(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        storage: Storage,
        user_headers: dict[str, str],
    ) -> None:
        word = f"zq{uuid.uuid4().hex[:10]}"
        posted = upload(client, kb, user_headers, "notes.txt", text(f"Notes about {word}"))
        [document] = documents_in(db, kb)
        document_id, storage_key = document.id, document.storage_key
        assert chunk_count(db, document_id) > 0
        sqlite = db.get_bind().dialect.name == "sqlite"
        assert (indexed(db, word) != []) == sqlite
        response = client.delete(f"{API}/documents/{posted.json()['id']}", headers=user_headers)
        assert response.status_code == 204
        assert documents_in(db, kb) == []
        assert chunk_count(db, document_id) == 0
        assert indexed(db, word) == []
        assert not storage.exists(storage_key)
        response = client.get(f"{API}/documents/{document_id}", headers=user_headers)
        assert response.status_code == 404

    def test_a_file_another_document_refers_to_stays(
        self,
        client: TestClient,
        db: Session,
        user: User,
        kb: KnowledgeBase,
        storage: Storage,
        user_headers: dict[str, str],
    ) -> None:
        data = text("Shared")
        document = create_document(db, knowledge_base=kb, data=data, storage=storage)
        twin = create_document(db, knowledge_base=create_knowledge_base(db, owner=user), data=data)
        response = client.delete(f"{API}/documents/{document.id}", headers=user_headers)
        assert response.status_code == 204
        db.expire_all()
        assert db.get(Document, twin.id) is not None
        assert storage.get(twin.storage_key) == data


# ==================== reprocess ====================


class TestReprocess:
    def test_anonymous_is_401(self, client: TestClient, db: Session, kb: KnowledgeBase) -> None:
        document = create_document(db, knowledge_base=kb, status=DocumentStatus.FAILED)
        assert client.post(f"{API}/documents/{document.id}/reprocess").status_code == 401

    def test_someone_elses_is_404_and_unchanged(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        stranger_headers: dict[str, str],
    ) -> None:
        document = create_document(db, knowledge_base=kb, status=DocumentStatus.FAILED)
        response = client.post(f"{API}/documents/{document.id}/reprocess", headers=stranger_headers)
        assert response.status_code == 404
        db.refresh(document)
        assert document.status == DocumentStatus.FAILED

    @pytest.mark.parametrize("status", [DocumentStatus.QUEUED, DocumentStatus.PROCESSING])
    def test_while_on_its_way_it_is_409(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
        status: DocumentStatus,
    ) -> None:
        document = create_document(db, knowledge_base=kb, status=status, attempts=1)
        response = client.post(f"{API}/documents/{document.id}/reprocess", headers=user_headers)
        assert response.status_code == 409
        assert response.json()["code"] == "document_busy"
        db.refresh(document)
        assert (document.status, document.attempts) == (status, 1)

    def test_a_ready_one_goes_back_to_queued_without_its_chunks(
        self,
        app: FastAPI,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        user_headers: dict[str, str],
    ) -> None:
        word = f"zq{uuid.uuid4().hex[:10]}"
        posted = upload(client, kb, user_headers, "notes.txt", text(f"About {word}"))
        document_id = uuid.UUID(posted.json()["id"])
        assert chunk_count(db, document_id) > 0
        app.state.run_dispatcher = ParkedDispatcher()  # delivered, never taken
        response = client.post(f"{API}/documents/{document_id}/reprocess", headers=user_headers)
        assert response.status_code == 202
        body = response.json()
        assert (body["status"], body["chunk_count"], body["processed_at"]) == ("queued", None, None)
        [document] = documents_in(db, kb)
        assert (document.status, document.attempts) == (DocumentStatus.QUEUED, 0)
        assert (document.chunk_count, document.page_count, document.lease_owner) == (
            None,
            None,
            None,
        )
        assert chunk_count(db, document_id) == 0
        assert indexed(db, word) == []

    def test_a_failed_one_is_ingested_again(
        self,
        client: TestClient,
        db: Session,
        kb: KnowledgeBase,
        storage: Storage,
        user_headers: dict[str, str],
    ) -> None:
        data = text("Now readable")
        document = create_document(
            db,
            knowledge_base=kb,
            data=data,
            storage=storage,
            status=DocumentStatus.FAILED,
            attempts=3,
        )
        document.error_code, document.error_message = "unreadable_document", "Could not read"
        db.add(document)
        db.commit()
        response = client.post(f"{API}/documents/{document.id}/reprocess", headers=user_headers)
        assert response.status_code == 202
        assert response.json()["error_code"] is None
        [document] = documents_in(db, kb)
        assert (document.status, document.error_code, document.error_message) == (
            DocumentStatus.READY,
            None,
            None,
        )
        assert document.attempts == 1
        assert document.chunk_count is not None
        assert chunk_count(db, document.id) == document.chunk_count > 0

    def test_a_corrupt_file_fails_again(
        self, client: TestClient, db: Session, kb: KnowledgeBase, user_headers: dict[str, str]
    ) -> None:
        posted = upload(client, kb, user_headers, "cut.pdf", CORRUPT_PDF)
        [document] = documents_in(db, kb)
        assert document.status == DocumentStatus.FAILED
        response = client.post(
            f"{API}/documents/{posted.json()['id']}/reprocess", headers=user_headers
        )
        assert response.status_code == 202
        [document] = documents_in(db, kb)
        assert (document.status, document.error_code) == (
            DocumentStatus.FAILED,
            "unreadable_document",
        )
        assert document.attempts == 1
