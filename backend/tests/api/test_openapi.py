import json
import re
from pathlib import Path

from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app

SNAPSHOT = Path(__file__).resolve().parents[2] / "openapi.json"
SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


def api_routes() -> list[APIRoute]:
    app = create_app()
    return [
        context.original_route
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
    ]


def test_committed_schema_matches_the_app() -> None:
    current = create_app().openapi()
    committed = json.loads(SNAPSHOT.read_text())
    assert current == committed, (
        "backend/openapi.json is stale; regenerate it with: "
        "uv run agentry openapi backend/openapi.json"
    )


def test_every_route_is_documented_for_the_generated_client() -> None:
    seen: set[str] = set()
    for route in api_routes():
        where = f"{sorted(route.methods or ())} {route.path}"
        assert route.operation_id, f"{where}: set an explicit operation_id"
        assert SNAKE_CASE.fullmatch(route.operation_id), f"{where}: operation_id not snake_case"
        assert route.operation_id not in seen, f"{where}: duplicate operation_id"
        seen.add(route.operation_id)
        assert route.tags, f"{where}: no tag"
        assert route.summary, f"{where}: no summary"
        assert route.description, f"{where}: no docstring"
        assert route.response_model is not None or route.status_code == 204, (
            f"{where}: no response_model"
        )


def test_every_operation_declares_its_errors_with_the_error_body() -> None:
    schema = create_app().openapi()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "500" in responses, f"{method} {path}"
            for status, response in responses.items():
                if int(status) < 400:
                    continue
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorResponse"), f"{method} {path} {status}"
            if operation.get("parameters") or operation.get("requestBody"):
                assert "422" in responses, f"{method} {path}"
            if operation.get("requestBody"):  # received, and bounded, before the route runs
                assert {"408", "413"} <= set(responses), f"{method} {path}"


class TestDocsExposure:
    def test_served_by_default_outside_production(self, client: TestClient) -> None:
        assert client.get("/api/v1/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200

    def test_hidden_when_disabled(self) -> None:
        with TestClient(create_app(Settings(EXPOSE_DOCS=False))) as hidden:
            assert hidden.get("/api/v1/openapi.json").status_code == 404
            assert hidden.get("/docs").status_code == 404
