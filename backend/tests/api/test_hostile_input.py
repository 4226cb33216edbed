"""Input that can never cause a 500: NUL characters, values beyond what the database holds,
null in a PATCH, unknown referenced ids, integrity errors, and 422s that name the field.

The NUL, null and bounds cases are generated from the OpenAPI schema, so a new route, field
or parameter is covered as soon as it exists.
"""

import base64
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import jwt
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from app.api.deps import SessionDep
from app.core.db import utcnow
from app.core.errors import ConflictError
from app.core.security import ACCESS_TOKEN_TYPE, ALGORITHM
from app.core.types import DECIMAL_PATTERN, Input, Patch
from app.main import create_app
from app.models.agent import Agent
from app.models.ai_model import AIModel
from app.models.thread import Message
from app.models.user import EMAIL_UNIQUE, User
from app.services.transactions import commit_or_conflict
from tests.conftest import AppFactory
from tests.environment import settings
from tests.factories import (
    create_agent,
    create_ai_model,
    create_login_session,
    create_message,
    create_thread,
    create_user,
)

API = "/api/v1"
NUL = "a\x00b"
OPENAPI = create_app().openapi()
COMPONENTS = OPENAPI["components"]["schemas"]


# ==================== walking the schema ====================


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return resolve(COMPONENTS[ref.rsplit("/", 1)[1]]) if ref else schema


def branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    schema = resolve(schema)
    return [resolve(b) for b in schema["anyOf"]] if "anyOf" in schema else [schema]


def is_text(schema: dict[str, Any]) -> bool:
    return any(b.get("type") == "string" for b in branches(schema))


def is_free_text(schema: dict[str, Any]) -> bool:
    """Text that is not an enum, a date or an id: only the NUL check can refuse NUL in it."""
    return any(
        b.get("type") == "string" and "enum" not in b and "format" not in b
        for b in branches(schema)
    )


def accepts_null(schema: dict[str, Any]) -> bool:
    return any(b.get("type") == "null" for b in branches(schema))


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in OPENAPI["paths"].items()
        for method, operation in methods.items()
    ]


def body_of(operation: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The body's media type and its properties."""
    content = operation.get("requestBody", {}).get("content", {})
    for media_type, media in content.items():
        return media_type, resolve(media["schema"])["properties"]
    return None


def required(path: str, method: str, name: str) -> bool:
    operation = OPENAPI["paths"][path][method.lower()]
    content = operation["requestBody"]["content"]
    [media] = content.values()
    return name in resolve(media["schema"]).get("required", [])


def fill_path(path: str) -> str:
    """Every path parameter is an id; an unknown one is as good as any for validation."""
    return "/".join(str(uuid.uuid4()) if part.startswith("{") else part for part in path.split("/"))


def text_query_cases() -> list[Any]:
    return [
        pytest.param(
            method,
            path,
            parameter["name"],
            is_free_text(parameter["schema"]),
            id=f"{operation['operationId']}-{parameter['name']}",
        )
        for method, path, operation in operations()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query" and is_text(parameter["schema"])
    ]


def body_field_cases(wanted: Any, *, json_only: bool = False) -> list[Any]:
    cases = []
    for method, path, operation in operations():
        body = body_of(operation)
        if body is None or (json_only and body[0] != "application/json"):
            continue  # a form has no null
        media_type, properties = body
        for name, schema in properties.items():
            if wanted(method, schema):
                cases.append(
                    pytest.param(
                        method, path, media_type, name, id=f"{operation['operationId']}-{name}"
                    )
                )
    return cases


def send(
    client: TestClient,
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    media_type: str = "application/json",
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    url = fill_path(path)
    # A form's fields are read alike from either encoding (an upload's file field too,
    # which then holds text).
    if media_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return client.request(method, url, headers=headers, data=body, params=params)
    return client.request(method, url, headers=headers, json=body, params=params)


def errors_at(response: Any, loc: list[str | int]) -> list[dict[str, Any]]:
    return [error for error in response.json().get("errors") or [] if error["loc"] == loc]


def assert_names_the_field(response: Any, loc: list[str | int]) -> dict[str, Any]:
    """A 422 whose `errors` name `loc`, each with loc, msg and type."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"], body
    for error in body["errors"]:
        assert set(error) == {"loc", "msg", "type"}
        assert error["msg"]
    [error] = errors_at(response, loc)
    return error


# ==================== NUL characters ====================


class TestNul:
    """PostgreSQL cannot store NUL; every text input refuses it before anything is read."""

    def test_the_schema_has_text_to_try(self) -> None:
        assert len(text_query_cases()) >= 8
        assert len(body_field_cases(lambda _m, schema: is_text(schema))) >= 30

    @pytest.mark.parametrize(("method", "path", "name", "free_text"), text_query_cases())
    def test_in_a_query_parameter(
        self,
        client: TestClient,
        superuser_headers: dict[str, str],
        method: str,
        path: str,
        name: str,
        free_text: bool,
    ) -> None:
        response = send(
            client, method, path, headers=superuser_headers, params={name: NUL}, body=None
        )
        error = assert_names_the_field(response, ["query", name])
        # An id, a date or an enum is refused by its own parsing first.
        if free_text:
            assert error["type"] == "nul_character"

    @pytest.mark.parametrize(
        ("method", "path", "media_type", "name"),
        body_field_cases(lambda _m, schema: is_text(schema)),
    )
    def test_in_a_body_field(
        self,
        client: TestClient,
        superuser_headers: dict[str, str],
        method: str,
        path: str,
        media_type: str,
        name: str,
    ) -> None:
        response = send(
            client, method, path, headers=superuser_headers, media_type=media_type, body={name: NUL}
        )
        error = assert_names_the_field(response, ["body", name])
        assert error["type"] == "nul_character"
        assert error["msg"] == "Text may not contain NUL characters"

    def test_login_refuses_it_without_looking_the_account_up(
        self, client: TestClient, db: Session
    ) -> None:
        response = client.post(
            f"{API}/login/access-token", data={"username": f"x{NUL}@example.com", "password": "x"}
        )
        assert errors_at(response, ["body", "username"])[0]["type"] == "nul_character"

    def test_nothing_is_written(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        agent = create_agent(db, owner=user, name="Kept")
        thread = create_thread(db, owner=user, agent=agent)
        writes = [
            ("PATCH", f"/agents/{agent.id}", {"name": NUL}),
            ("PATCH", "/users/me", {"full_name": NUL}),
            ("POST", f"/threads/{thread.id}/messages", {"content": NUL}),
            ("POST", "/users/signup", {"email": "nul@example.com", "password": NUL * 8}),
        ]
        for method, path, body in writes:
            response = client.request(method, API + path, headers=user_headers, json=body)
            assert response.status_code == 422, path
        db.expire_all()
        assert db.get(Agent, agent.id).name == "Kept"  # type: ignore[union-attr]
        assert db.get(User, user.id).full_name == "Ada Lovelace"  # type: ignore[union-attr]
        assert db.exec(select(Message).where(Message.thread_id == thread.id)).all() == []
        assert db.exec(select(User).where(User.email == "nul@example.com")).first() is None

    def test_every_body_is_an_input_and_every_partial_one_a_patch(self) -> None:
        for context in iter_route_contexts(create_app().routes):
            route = context.original_route
            if not isinstance(route, APIRoute):
                continue
            for param in route.dependant.body_params:
                model = param.field_info.annotation
                assert isinstance(model, type)
                assert issubclass(model, Input), f"{route.path}: {model} is not an Input"
                partial = not any(f.is_required() for f in model.model_fields.values())
                if "PATCH" in (route.methods or ()) and partial:
                    assert issubclass(model, Patch), f"{route.path}: {model} is not a Patch"


# ==================== null ====================


class TestNull:
    """Where the schema shows no null, null is refused; where it shows one, it is taken."""

    @pytest.mark.parametrize(
        ("method", "path", "media_type", "name"),
        body_field_cases(lambda _m, schema: not accepts_null(schema), json_only=True),
    )
    def test_refused_where_the_schema_shows_none(
        self,
        client: TestClient,
        superuser_headers: dict[str, str],
        method: str,
        path: str,
        media_type: str,
        name: str,
    ) -> None:
        response = send(
            client,
            method,
            path,
            headers=superuser_headers,
            media_type=media_type,
            body={name: None},
        )
        error = assert_names_the_field(response, ["body", name])
        if method == "PATCH" and not required(path, method, name):
            assert error["type"] == "null_not_allowed"

    @pytest.mark.parametrize(
        ("method", "path", "media_type", "name"),
        body_field_cases(lambda _m, schema: accepts_null(schema)),
    )
    def test_taken_where_the_schema_shows_one(
        self,
        client: TestClient,
        superuser_headers: dict[str, str],
        method: str,
        path: str,
        media_type: str,
        name: str,
    ) -> None:
        response = send(
            client,
            method,
            path,
            headers=superuser_headers,
            media_type=media_type,
            body={name: None},
        )
        assert response.status_code != 500
        if response.status_code == 422:
            assert errors_at(response, ["body", name]) == []

    def test_patch_schemas_give_no_defaults(self) -> None:
        for method, _path, operation in operations():
            body = body_of(operation)
            if method == "PATCH" and body is not None:
                for name, schema in body[1].items():
                    assert "default" not in schema, f"{operation['operationId']}.{name}"

    def test_a_null_email_is_refused_not_taken(
        self, client: TestClient, db: Session, superuser_headers: dict[str, str]
    ) -> None:
        target = create_user(db, email="kept@example.com")
        response = client.patch(
            f"{API}/users/{target.id}", headers=superuser_headers, json={"email": None}
        )
        error = assert_names_the_field(response, ["body", "email"])
        assert error["type"] == "null_not_allowed"
        assert response.json()["code"] == "validation_error"
        db.refresh(target)
        assert target.email == "kept@example.com"

    def test_null_clears_what_can_be_empty(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        model = create_ai_model(db)
        agent = create_agent(db, owner=user, model=model)
        thread = create_thread(db, owner=user, agent=agent)
        response = client.patch(
            f"{API}/agents/{agent.id}", headers=user_headers, json={"model_id": None}
        )
        assert response.status_code == 200
        assert response.json()["model_id"] is None
        response = client.patch(
            f"{API}/threads/{thread.id}", headers=user_headers, json={"title": None}
        )
        assert response.status_code == 200
        response = client.patch(f"{API}/users/me", headers=user_headers, json={"full_name": None})
        assert response.status_code == 200
        db.expire_all()
        assert db.get(Agent, agent.id).model_id is None  # type: ignore[union-attr]
        assert db.get(User, user.id).full_name is None  # type: ignore[union-attr]

    def test_a_null_name_leaves_the_agent_as_it_was(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        agent = create_agent(db, owner=user, name="Kept")
        response = client.patch(
            f"{API}/agents/{agent.id}", headers=user_headers, json={"name": None, "is_active": None}
        )
        assert response.status_code == 422
        assert {tuple(e["loc"]) for e in response.json()["errors"]} == {
            ("body", "name"),
            ("body", "is_active"),
        }
        db.refresh(agent)
        assert (agent.name, agent.is_active) == ("Kept", True)


# ==================== decimals ====================


class TestDecimals:
    def test_every_decimal_input_is_a_string_with_its_pattern(self) -> None:
        decimals = 0
        for _method, _path, operation in operations():
            body = body_of(operation)
            for name, schema in (body[1] if body else {}).items():
                kinds = [b.get("type") for b in branches(schema)]
                assert "number" not in kinds or "string" not in kinds, (
                    f"{operation['operationId']}.{name}: a Decimal without its string type"
                )
                if any(b.get("pattern") == DECIMAL_PATTERN for b in branches(schema)):
                    decimals += 1
        assert decimals == 5  # two prices on create and update, the budget

    @pytest.mark.parametrize(
        ("sent", "stored"),
        [("12.5", Decimal("12.500000")), (12.5, Decimal("12.500000")), ("0", Decimal(0))],
    )
    def test_a_budget_as_a_string_or_a_number(
        self,
        client: TestClient,
        db: Session,
        superuser_headers: dict[str, str],
        sent: Any,
        stored: Decimal,
    ) -> None:
        target = create_user(db)
        response = client.patch(
            f"{API}/users/{target.id}",
            headers=superuser_headers,
            json={"monthly_budget_usd": sent},
        )
        assert response.status_code == 200, response.text
        db.refresh(target)
        assert target.monthly_budget_usd == stored

    @pytest.mark.parametrize(
        "sent", ["1e3", "-1", " 1", "1.0000001", "1" * 13, "NaN", "Infinity", "١٢", 1e30]
    )
    def test_a_price_off_the_pattern_is_refused(
        self, client: TestClient, db: Session, superuser_headers: dict[str, str], sent: Any
    ) -> None:
        model = create_ai_model(db)
        response = client.patch(
            f"{API}/models/{model.id}",
            headers=superuser_headers,
            json={"input_price_per_million": sent},
        )
        assert_names_the_field(response, ["body", "input_price_per_million"])
        db.refresh(model)
        assert model.input_price_per_million == Decimal("2.500000")


# ==================== beyond what the database holds ====================


def integer_parameters() -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    return [
        (method, path, operation, parameter)
        for method, path, operation in operations()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query" and parameter["schema"].get("type") == "integer"
    ]


def bounded_integer_cases() -> list[Any]:
    cases = []
    for method, path, operation, parameter in integer_parameters():
        schema = parameter["schema"]
        if "maximum" in schema and "minimum" in schema:
            for value in (schema["maximum"] + 1, schema["minimum"] - 1, 2**63, -(2**63) - 1):
                cases.append(
                    pytest.param(
                        method,
                        path,
                        parameter["name"],
                        value,
                        id=f"{operation['operationId']}-{parameter['name']}={value}",
                    )
                )
    return cases


class TestOutOfRange:
    def test_every_integer_parameter_has_bounds(self) -> None:
        for _method, _path, operation, parameter in integer_parameters():
            where = f"{operation['operationId']}.{parameter['name']}"
            assert "maximum" in parameter["schema"], where
            assert "minimum" in parameter["schema"], where

    @pytest.mark.parametrize(("method", "path", "name", "value"), bounded_integer_cases())
    def test_integers_beyond_their_bounds(
        self,
        client: TestClient,
        superuser_headers: dict[str, str],
        method: str,
        path: str,
        name: str,
        value: int,
    ) -> None:
        response = send(client, method, path, headers=superuser_headers, params={name: value})
        assert_names_the_field(response, ["query", name])

    @pytest.mark.parametrize("path", ["/users/me/usage", "/admin/usage"])
    @pytest.mark.parametrize(
        "params",
        [
            {"from": "9999-12-31", "to": "9999-12-31"},
            {"to": "9999-12-31"},
            {"from": "0001-01-01", "to": "0001-01-01"},
            {"from": "0001-01-01"},
        ],
    )
    def test_report_days_beyond_the_range(
        self,
        client: TestClient,
        superuser_headers: dict[str, str],
        path: str,
        params: dict[str, str],
    ) -> None:
        response = client.get(API + path, headers=superuser_headers, params=params)
        for name, value in params.items():
            if value in ("9999-12-31", "0001-01-01"):
                error = assert_names_the_field(response, ["query", name])
                assert error["type"] == "date_out_of_range"

    @pytest.mark.parametrize(("first", "last"), [("9999-12-30", "9999-12-30"), ("0001-01-02",) * 2])
    def test_report_days_at_the_edges(
        self, client: TestClient, superuser_headers: dict[str, str], first: str, last: str
    ) -> None:
        response = client.get(
            f"{API}/admin/usage", headers=superuser_headers, params={"from": first, "to": last}
        )
        assert response.status_code == 200, response.text
        assert response.json()["totals"]["runs"] == 0

    @pytest.mark.parametrize(
        "params",
        [
            {"since": "9999-12-31T23:00:00-05:00"},
            {"until": "0001-01-01T00:00:00+01:00"},
            {"since": "0001-01-01T12:00:00Z"},
        ],
    )
    def test_audit_log_instants_beyond_the_range(
        self, client: TestClient, superuser_headers: dict[str, str], params: dict[str, str]
    ) -> None:
        response = client.get(f"{API}/admin/audit-log", headers=superuser_headers, params=params)
        [name] = params
        assert assert_names_the_field(response, ["query", name])["type"] == "date_out_of_range"

    @pytest.mark.parametrize(
        "cursor", ["9223372036854775808", "9" * 19, "9" * 20, "²", "١٢", "-1", "1.5"]
    )
    def test_audit_log_cursors_beyond_a_bigint(
        self, client: TestClient, superuser_headers: dict[str, str], cursor: str
    ) -> None:
        response = client.get(
            f"{API}/admin/audit-log", headers=superuser_headers, params={"cursor": cursor}
        )
        assert_names_the_field(response, ["query", "cursor"])

    def test_the_largest_audit_cursor_is_taken(
        self, client: TestClient, superuser_headers: dict[str, str]
    ) -> None:
        response = client.get(
            f"{API}/admin/audit-log",
            headers=superuser_headers,
            params={"cursor": str(2**63 - 1)},
        )
        assert response.status_code == 200

    @pytest.mark.parametrize(
        "at",
        [
            "9999-12-31T23:59:59.999999+00:00",
            "0001-01-01T00:00:00+05:00",
            "0001-01-01T00:00:00+00:00",
            "99999-01-01T00:00:00+00:00",
        ],
    )
    def test_message_cursors_naming_instants_beyond_the_range(
        self,
        client: TestClient,
        db: Session,
        user: User,
        user_headers: dict[str, str],
        at: str,
    ) -> None:
        thread = create_thread(db, owner=user, agent=create_agent(db, owner=user))
        create_message(db, thread=thread)
        raw = f"{at}|{uuid.uuid4()}".encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        for order in ("asc", "desc"):
            response = client.get(
                f"{API}/threads/{thread.id}/messages",
                headers=user_headers,
                params={"cursor": cursor, "order": order},
            )
            error = assert_names_the_field(response, ["query", "cursor"])
            assert response.json()["code"] == "invalid_cursor"
            assert error["type"] == "value_error"

    def test_a_message_cursor_at_the_edge_is_taken(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        thread = create_thread(db, owner=user, agent=create_agent(db, owner=user))
        create_message(db, thread=thread)
        raw = f"9999-12-30T00:00:00+00:00|{uuid.uuid4()}".encode()
        response = client.get(
            f"{API}/threads/{thread.id}/messages",
            headers=user_headers,
            params={"cursor": base64.urlsafe_b64encode(raw).decode(), "order": "desc"},
        )
        assert response.status_code == 200
        assert len(response.json()["data"]) == 1

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            (method, path)
            for method, path, _ in operations()
            if "{" in path and method in ("GET", "DELETE")
        ],
    )
    def test_ids_unknown_or_malformed(
        self, client: TestClient, superuser_headers: dict[str, str], method: str, path: str
    ) -> None:
        # Required query parameters (a search's `q`) are given: only the id is at fault.
        parameters = OPENAPI["paths"][path][method.lower()].get("parameters", [])
        params = {p["name"]: "x" for p in parameters if p["in"] == "query" and p.get("required")}
        response = send(client, method, path, headers=superuser_headers, params=params)
        assert response.status_code == 404, response.text
        for bad in ("1", "9" * 40, "%00"):
            url = "/".join(bad if part.startswith("{") else part for part in path.split("/"))
            response = client.request(method, url, headers=superuser_headers, params=params)
            assert response.status_code == 422, bad
            assert response.json()["errors"][0]["loc"][0] == "path"


# ==================== tokens ====================


def forged_token(*, session_id: uuid.UUID, user_id: uuid.UUID, **claims: Any) -> str:
    """A token signed with the server's key, so that only its claims are at fault."""
    now = utcnow()
    payload = {
        "sub": str(user_id),
        "sid": str(session_id),
        "type": ACCESS_TOKEN_TYPE,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        **claims,
    }
    return jwt.encode(payload, settings.secret_key, algorithm=ALGORITHM)


class TestTokens:
    @pytest.mark.parametrize(
        "claims",
        [
            {"exp": 10**20},
            {"exp": 1e20},
            {"exp": 2**63},
            {"exp": float("inf")},
            {"exp": 253402300800},  # 10000-01-01
            {"iat": 1e20},
            {"nbf": float("inf")},
        ],
        ids=lambda claims: "-".join(f"{k}={v}" for k, v in claims.items()),
    )
    def test_claims_no_datetime_can_hold_give_401(
        self, client: TestClient, db: Session, user: User, claims: dict[str, Any]
    ) -> None:
        login = create_login_session(db, user=user)
        token = forged_token(session_id=login.id, user_id=user.id, **claims)
        response = client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert response.json()["code"] == "invalid_token"

    def test_the_same_token_with_a_sane_exp_works(
        self, client: TestClient, db: Session, user: User
    ) -> None:
        login = create_login_session(db, user=user)
        token = forged_token(session_id=login.id, user_id=user.id)
        response = client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200


# ==================== references ====================


class TestUnknownReferences:
    def test_an_agent_moved_to_an_unknown_model(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        model = create_ai_model(db)
        agent = create_agent(db, owner=user, model=model)
        response = client.patch(
            f"{API}/agents/{agent.id}",
            headers=user_headers,
            json={"model_id": str(uuid.uuid4()), "name": "Moved"},
        )
        assert_names_the_field(response, ["body", "model_id"])
        assert response.json()["code"] == "model_unavailable"
        db.refresh(agent)
        assert (agent.model_id, agent.name) == (model.id, "Helper")

    def test_an_agent_created_on_an_unknown_model(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        response = client.post(
            f"{API}/agents",
            headers=user_headers,
            json={"name": "New", "model_id": str(uuid.uuid4())},
        )
        assert_names_the_field(response, ["body", "model_id"])
        assert db.exec(select(Agent).where(Agent.owner_id == user.id)).all() == []

    def test_a_thread_with_an_unknown_agent(
        self, client: TestClient, user_headers: dict[str, str]
    ) -> None:
        response = client.post(
            f"{API}/threads", headers=user_headers, json={"agent_id": str(uuid.uuid4())}
        )
        assert response.status_code == 404


# ==================== integrity errors ====================

router = APIRouter(prefix="/test-only", tags=["test"])
EMAIL_TAKEN = {
    EMAIL_UNIQUE: ConflictError("A user with this email already exists", code="email_taken")
}


@router.post("/duplicate-email", operation_id="test_duplicate_email")
def duplicate_email(session: SessionDep, email: str) -> None:
    session.add(User(email=email, hashed_password="x"))
    commit_or_conflict(session, EMAIL_TAKEN)


@router.post("/duplicate-model", operation_id="test_duplicate_model")
def duplicate_model(session: SessionDep, provider: str, name: str) -> None:
    price = Decimal(1)
    session.add(
        AIModel(
            provider=provider,
            name=name,
            display_name=name,
            context_window=10,
            max_output_tokens=1,
            input_price_per_million=price,
            output_price_per_million=price,
        )
    )
    commit_or_conflict(session, EMAIL_TAKEN)


@router.post("/dangling-model", operation_id="test_dangling_model")
def dangling_model(session: SessionDep, owner_id: uuid.UUID) -> None:
    session.add(Agent(owner_id=owner_id, name="Dangling", model_id=uuid.uuid4()))
    commit_or_conflict(session, EMAIL_TAKEN)


class TestIntegrityErrors:
    """What a concurrent request could leave a commit to find, provoked directly."""

    @pytest.fixture
    def app(self, make_app: AppFactory) -> FastAPI:
        # An app of its own: routes added to the session's shared app would stay.
        app = make_app(settings)
        app.include_router(router, prefix=API)
        return app

    def test_only_the_email_index_is_email_taken(
        self, client: TestClient, db: Session, user: User
    ) -> None:
        response = client.post(f"{API}/test-only/duplicate-email", params={"email": user.email})
        assert response.status_code == 409
        assert response.json()["code"] == "email_taken"
        assert len(db.exec(select(User).where(User.email == user.email)).all()) == 1

    def test_another_unique_constraint_is_a_duplicate(
        self, client: TestClient, db: Session
    ) -> None:
        model = create_ai_model(db)
        response = client.post(
            f"{API}/test-only/duplicate-model",
            params={"provider": model.provider, "name": model.name},
        )
        assert response.status_code == 409
        assert response.json()["code"] == "duplicate"
        assert len(db.exec(select(AIModel).where(AIModel.name == model.name)).all()) == 1

    def test_a_missing_reference_is_reference_missing(
        self, client: TestClient, db: Session, user: User
    ) -> None:
        response = client.post(f"{API}/test-only/dangling-model", params={"owner_id": str(user.id)})
        assert response.status_code == 409
        assert response.json()["code"] == "reference_missing"
        assert db.exec(select(Agent).where(Agent.owner_id == user.id)).all() == []


# ==================== 422s name the field ====================


class TestServiceErrorsNameTheField:
    """422s that only a service can decide carry `errors` like a schema's."""

    def test_a_report_that_ends_before_it_starts(
        self, client: TestClient, user_headers: dict[str, str]
    ) -> None:
        response = client.get(
            f"{API}/users/me/usage",
            headers=user_headers,
            params={"from": "2026-02-01", "to": "2026-01-01"},
        )
        assert_names_the_field(response, ["query", "to"])
        assert response.json()["code"] == "invalid_range"

    def test_a_report_too_long(self, client: TestClient, user_headers: dict[str, str]) -> None:
        response = client.get(
            f"{API}/users/me/usage", headers=user_headers, params={"from": "2000-01-01"}
        )
        assert_names_the_field(response, ["query", "from"])

    def test_an_owner_filter_from_a_user(
        self, client: TestClient, user: User, user_headers: dict[str, str]
    ) -> None:
        response = client.get(
            f"{API}/agents", headers=user_headers, params={"owner_id": str(user.id)}
        )
        assert_names_the_field(response, ["query", "owner_id"])
        assert response.json()["code"] == "owner_filter_forbidden"

    def test_an_output_limit_beyond_the_model(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        model = create_ai_model(db, max_output_tokens=100, context_window=1_000)
        agent = create_agent(db, owner=user, model=model)
        response = client.patch(
            f"{API}/agents/{agent.id}", headers=user_headers, json={"max_output_tokens": 101}
        )
        assert_names_the_field(response, ["body", "max_output_tokens"])
        db.refresh(agent)
        assert agent.max_output_tokens is None

    def test_a_message_to_an_agent_without_a_model(
        self, client: TestClient, db: Session, user: User, user_headers: dict[str, str]
    ) -> None:
        thread = create_thread(db, owner=user, agent=create_agent(db, owner=user))
        response = client.post(
            f"{API}/threads/{thread.id}/messages", headers=user_headers, json={"content": "Hi"}
        )
        assert_names_the_field(response, ["path", "thread_id"])
        assert response.json()["code"] == "model_unavailable"
        assert db.exec(select(Message).where(Message.thread_id == thread.id)).all() == []

    def test_a_body_that_is_not_utf8(
        self, client: TestClient, user_headers: dict[str, str]
    ) -> None:
        response = client.patch(
            f"{API}/users/me",
            headers={**user_headers, "Content-Type": "application/json"},
            content='{"full_name": "é"}'.encode("utf-16"),
        )
        assert assert_names_the_field(response, ["body"])["type"] == "json_invalid"
