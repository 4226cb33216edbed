import logging

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from app.models.user import User


def test_one_line_per_request_without_secrets(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="agentry.request"):
        response = client.get(
            "/api/v1/utils/readiness?token=query-secret",
            headers={
                "Authorization": "Bearer header-secret",
                "Cookie": "session=cookie-secret",
                "X-Request-ID": "log-1",
            },
        )
    assert response.status_code == 200
    [record] = [r for r in caplog.records if r.name == "agentry.request"]
    assert record.__dict__["method"] == "GET"
    assert record.__dict__["route"] == "/api/v1/utils/readiness"
    assert record.__dict__["status"] == 200
    assert record.__dict__["duration_ms"] >= 0
    assert record.__dict__["request_id"] == "log-1"
    assert record.__dict__["user_id"] is None
    logged = caplog.text + str(record.__dict__)
    for secret in ("query-secret", "header-secret", "cookie-secret"):
        assert secret not in logged


def test_unmatched_paths_are_not_logged_verbatim(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="agentry.request"):
        client.get("/reset/some-token-in-a-path")
    [record] = [r for r in caplog.records if r.name == "agentry.request"]
    assert record.__dict__["route"] == "<unmatched>"
    assert record.__dict__["status"] == 404
    assert "some-token" not in caplog.text


class TestCors:
    def test_listed_origin_may_send_credentials(self) -> None:
        config = Settings(BACKEND_CORS_ORIGINS="https://admin.example.com")
        with TestClient(create_app(config)) as client:
            response = client.get(
                "/api/v1/utils/health-check", headers={"Origin": "https://admin.example.com"}
            )
        assert response.headers["access-control-allow-origin"] == "https://admin.example.com"
        assert response.headers["access-control-allow-credentials"] == "true"

    def test_wildcard_never_comes_with_credentials(self) -> None:
        with TestClient(create_app(Settings(BACKEND_CORS_ORIGINS="*"))) as client:
            response = client.get(
                "/api/v1/utils/health-check", headers={"Origin": "https://evil.example.com"}
            )
        assert response.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in response.headers


def test_the_line_names_the_user_when_known(
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
    user: User,
    user_headers: dict[str, str],
) -> None:
    with caplog.at_level(logging.INFO, logger="agentry.request"):
        assert client.get("/api/v1/users/me", headers=user_headers).status_code == 200
    [record] = [r for r in caplog.records if r.name == "agentry.request"]
    assert record.__dict__["user_id"] == str(user.id)
    assert record.__dict__["route"] == "/api/v1/users/me"
