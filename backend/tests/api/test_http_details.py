"""HTTP details a client relies on: Allow on 405, CORS on every answer, UTF-8 JSON."""

import json
import logging
import re
import threading
import uuid
from collections.abc import Iterator, Mapping

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from app.core.config import Settings
from tests.conftest import AppFactory

ORIGIN = "https://dash.example.com"
AGENTS = "/api/v1/agents"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PARAMETER = re.compile(r"\{[^}]+\}")


class TestMethodNotAllowed:
    def test_allow_lists_every_method_of_the_path(self, client: TestClient) -> None:
        response = client.post(f"{AGENTS}/{uuid.uuid4()}", headers={"X-Request-ID": "m1"})
        assert response.status_code == 405
        assert response.headers["Allow"] == "DELETE, GET, PATCH"
        assert response.json() == {
            "detail": "Method Not Allowed",
            "code": "method_not_allowed",
            "request_id": "m1",
        }

    def test_every_path_of_the_schema_names_its_methods(
        self, app: FastAPI, client: TestClient
    ) -> None:
        paths: dict[str, dict[str, object]] = app.openapi()["paths"]
        patterns = {
            template: "[^/]+".join(re.escape(part) for part in PARAMETER.split(template))
            for template in paths
        }
        for template in paths:
            path = PARAMETER.sub(str(uuid.uuid4()), template)
            # /users/signup is also /users/{user_id}: both templates' methods are served.
            served = {
                method.upper()
                for other, operations in paths.items()
                if re.fullmatch(patterns[other], path)
                for method in operations
            }
            unserved = next(method for method in METHODS if method not in served)
            response = client.request(unserved, path)
            assert response.status_code == 405, (unserved, template)
            assert set(response.headers["Allow"].split(", ")) == served, template


boom = APIRouter(prefix="/test-only", tags=["test"])


@boom.get("/boom", operation_id="test_http_boom")
def explode() -> None:
    raise RuntimeError("internal detail")


@pytest.fixture
def cors_app(make_app: AppFactory) -> FastAPI:
    config = Settings(
        BACKEND_CORS_ORIGINS=ORIGIN,
        MAX_REQUEST_BODY_BYTES=1024,
        THREADPOOL_SIZE=2,
        REQUEST_QUEUE_TIMEOUT=0.2,
    )
    app = make_app(config)
    app.include_router(boom, prefix="/api/v1")
    return app


@pytest.fixture
def cors_client(cors_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(cors_app, raise_server_exceptions=False) as test_client:
        yield test_client


def assert_cors(headers: Mapping[str, str]) -> None:
    assert headers.get("access-control-allow-origin") == ORIGIN
    assert headers.get("access-control-allow-credentials") == "true"
    assert "x-request-id" in headers.get("access-control-expose-headers", "").lower()


class TestCorsOnEveryAnswer:
    def test_an_unhandled_error_is_a_500_a_browser_can_read(
        self, cors_client: TestClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO):
            response = cors_client.get(
                "/api/v1/test-only/boom", headers={"Origin": ORIGIN, "X-Request-ID": "c1"}
            )
        assert response.status_code == 500
        assert response.json() == {
            "detail": "Internal server error",
            "code": "internal_error",
            "request_id": "c1",
        }
        assert_cors(response.headers)
        assert response.headers["X-Request-ID"] == "c1"
        # Still one traceback and one request line, as before.
        [error] = [r for r in caplog.records if r.name == "agentry.error"]
        assert error.exc_info is not None
        [line] = [r for r in caplog.records if r.name == "agentry.request"]
        assert line.__dict__["status"] == 500

    def test_a_busy_server_is_a_503_a_browser_can_read(self, cors_app: FastAPI) -> None:
        entered = threading.Semaphore(0)
        release = threading.Event()
        hold = APIRouter()

        @hold.get("/api/v1/test-only/hold", operation_id="test_http_hold")
        def held() -> None:
            entered.release()
            release.wait(timeout=15)

        cors_app.include_router(hold)
        with TestClient(cors_app) as client:
            statuses: list[int] = []

            def hold_a_slot() -> None:
                statuses.append(client.get("/api/v1/test-only/hold").status_code)

            holders = [threading.Thread(target=hold_a_slot) for _ in range(2)]
            for thread in holders:
                thread.start()
            try:
                for _ in holders:  # both admission slots are taken
                    assert entered.acquire(timeout=15)
                response = client.get(
                    "/api/v1/utils/readiness", headers={"Origin": ORIGIN, "X-Request-ID": "c2"}
                )
            finally:
                release.set()
                for thread in holders:
                    thread.join(timeout=15)
        assert response.status_code == 503
        assert response.json()["code"] == "service_unavailable"
        assert response.json()["request_id"] == "c2"
        assert response.headers["Retry-After"] == "2"
        assert_cors(response.headers)
        assert statuses == [200, 200]

    def test_a_body_over_the_limit_is_a_413_a_browser_can_read(
        self, cors_client: TestClient
    ) -> None:
        response = cors_client.post(
            AGENTS, content=b"x" * 1025, headers={"Origin": ORIGIN, "X-Request-ID": "c3"}
        )
        assert response.status_code == 413
        assert response.json() == {
            "detail": "The request body may not exceed 1024 bytes",
            "code": "request_too_large",
            "request_id": "c3",
        }
        assert_cors(response.headers)

    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [
            ("GET", "/api/v1/nowhere", 404),
            ("PUT", AGENTS, 405),
            ("GET", AGENTS, 401),
            ("GET", "/api/v1/utils/health-check", 200),
        ],
    )
    def test_other_answers_carry_the_headers_too(
        self, cors_client: TestClient, method: str, path: str, status: int
    ) -> None:
        response = cors_client.request(method, path, headers={"Origin": ORIGIN})
        assert response.status_code == status
        assert_cors(response.headers)
        assert len(response.headers["X-Request-ID"]) == 32

    def test_a_preflight_keeps_its_request_id_and_log_line(
        self, cors_client: TestClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO, logger="agentry.request"):
            response = cors_client.options(
                AGENTS,
                headers={
                    "Origin": ORIGIN,
                    "Access-Control-Request-Method": "POST",
                    "X-Request-ID": "c4",
                },
            )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["X-Request-ID"] == "c4"
        [line] = [r for r in caplog.records if r.name == "agentry.request"]
        assert line.__dict__["method"] == "OPTIONS"
        assert line.__dict__["status"] == 200

    def test_an_unlisted_origin_gets_no_headers(self, cors_client: TestClient) -> None:
        response = cors_client.get(
            "/api/v1/test-only/boom", headers={"Origin": "https://evil.example.com"}
        )
        assert response.status_code == 500
        assert "access-control-allow-origin" not in response.headers


class TestJsonEncoding:
    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            ('{"name": "café"}'.encode("latin-1"), "application/json"),
            (json.dumps({"name": "café"}).encode("utf-16"), "application/json"),
            (json.dumps({"name": "café"}).encode("utf-16-le"), "application/json"),
            (json.dumps({"name": "café"}).encode("utf-32"), "application/json; charset=utf-32"),
            (b'{"name": "caf\x00"}', "application/json"),
        ],
        ids=["latin-1", "utf-16", "utf-16-le-no-bom", "utf-32", "raw-nul"],
    )
    def test_a_body_that_is_not_utf8_json_is_422(
        self,
        client: TestClient,
        user_headers: dict[str, str],
        body: bytes,
        content_type: str,
    ) -> None:
        response = client.post(
            AGENTS,
            content=body,
            headers={**user_headers, "Content-Type": content_type, "X-Request-ID": "j1"},
        )
        assert response.status_code == 422
        assert response.json() == {
            "detail": "The request body is not valid JSON",
            "code": "malformed_json",
            "request_id": "j1",
            "errors": [
                {"loc": ["body"], "msg": "JSON must be encoded as UTF-8", "type": "json_invalid"}
            ],
        }
        listed = client.get(AGENTS, headers=user_headers).json()
        assert listed["count"] == 0

    def test_utf8_json_is_accepted(self, client: TestClient, user_headers: dict[str, str]) -> None:
        response = client.post(
            AGENTS,
            content=json.dumps({"name": "café ☕"}, ensure_ascii=False).encode(),
            headers={**user_headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 201
        assert response.json()["name"] == "café ☕"
        listed = client.get(AGENTS, headers=user_headers).json()
        assert [agent["name"] for agent in listed["data"]] == ["café ☕"]
