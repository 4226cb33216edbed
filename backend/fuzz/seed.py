"""The rows a fuzz run needs, made over HTTP as a client would make them.

The first superuser comes from the server's FIRST_SUPERUSER_* settings; everything else
is made through the API, so seeding goes through the same code the fuzzer then attacks.
Each account logs in three times: one session is the one its pass fuzzes with; the id of
the second and the refresh token of the third are handed to the fuzzer, so that ending
a session and refreshing one are exercised on real ones without ending the pass's own
(a refresh token sent twice ends its session, so the two must not share one).
"""

import secrets
from dataclasses import dataclass, field
from typing import Any

import httpx2

API = "/api/v1"
REQUEST_TIMEOUT = 30.0
PASSWORD_BYTES = 18


class SeedError(Exception):
    """The server refused a request seeding needs."""


@dataclass(frozen=True)
class Account:
    user_id: str
    email: str
    password: str
    token: str  # the access token of the session the pass fuzzes with
    spare_session_id: str
    refresh_token: str  # of a third session


@dataclass
class Fixture:
    user: Account
    superuser: Account
    model_ids: list[str] = field(default_factory=list)
    # Accounts only the superuser's pass may change; never a pass's own.
    victim_ids: list[str] = field(default_factory=list)
    victim_emails: list[str] = field(default_factory=list)
    agent_ids: list[str] = field(default_factory=list)
    thread_ids: list[str] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    # Rows made to be deleted: the only ids delete operations are given, so that the
    # first deletion that succeeds leaves every other operation its rows.
    doomed: dict[str, list[str]] = field(default_factory=dict)


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def seed(base_url: str, *, superuser_email: str, superuser_password: str) -> Fixture:
    """A catalog of models, a normal user, victims, and for both the normal user and the
    superuser an agent with a thread holding one posted message (and its run); and one
    more of each kind of row for the delete operations."""
    with httpx2.Client(base_url=base_url + API, timeout=REQUEST_TIMEOUT) as client:
        superuser = _account(client, email=superuser_email, password=superuser_password)
        admin = _headers(superuser.token)
        models = [
            _post(client, "/models", admin, _model(name, enabled=enabled))["id"]
            for name, enabled in (("enabled", True), ("disabled", False), ("doomed", True))
        ]
        user_email, user_password = "fuzz-user@example.com", new_password()
        _post(client, "/users", admin, {"email": user_email, "password": user_password})
        user = _account(client, email=user_email, password=user_password)
        fixture = Fixture(user=user, superuser=superuser, model_ids=models[:2])
        fixture.doomed["models"] = [models[2]]
        for name in ("victim-1", "victim-2", "doomed"):
            email = f"fuzz-{name}@example.com"
            victim = _post(client, "/users", admin, {"email": email, "password": new_password()})
            if name == "doomed":
                fixture.doomed["users"] = [victim["id"]]
            else:
                fixture.victim_ids.append(victim["id"])
                fixture.victim_emails.append(email)
        for account in (user, superuser):
            _workspace(client, fixture, account=account, model_id=models[0])
        return fixture


def _account(client: httpx2.Client, *, email: str, password: str) -> Account:
    fuzzed, spare, refreshed = (_login(client, email=email, password=password) for _ in range(3))
    me = _get(client, "/users/me", _headers(fuzzed["access_token"]))
    sessions = _get(client, "/users/me/sessions", _headers(spare["access_token"]))["data"]
    spare_id = next(item["id"] for item in sessions if item["is_current"])
    return Account(
        user_id=me["id"],
        email=email,
        password=password,
        token=fuzzed["access_token"],
        spare_session_id=spare_id,
        refresh_token=refreshed["refresh_token"],
    )


def _workspace(client: httpx2.Client, fixture: Fixture, *, account: Account, model_id: str) -> None:
    headers = _headers(account.token)
    agent, doomed_agent = (
        _post(client, "/agents", headers, {"name": name, "model_id": model_id})["id"]
        for name in ("Fuzz agent", "Doomed agent")
    )
    thread, doomed_thread = (
        _post(client, "/threads", headers, {"agent_id": agent, "title": title})["id"]
        for title in ("Fuzz thread", "Doomed thread")
    )
    message = {"content": "Hello, agent."}
    path = f"/threads/{thread}/messages"
    posted = _post(client, path, headers, message, expect=httpx2.codes.ACCEPTED)
    fixture.agent_ids.append(agent)
    fixture.thread_ids.append(thread)
    fixture.run_ids.append(posted["run"]["id"])
    fixture.doomed.setdefault("agents", []).append(doomed_agent)
    fixture.doomed.setdefault("threads", []).append(doomed_thread)


def _model(name: str, *, enabled: bool) -> dict[str, Any]:
    return {
        "provider": "openai",
        "name": f"fuzz-{name}",
        "display_name": f"Fuzz {name}",
        "context_window": 128_000,
        "max_output_tokens": 16_384,
        "input_price_per_million": "0.15",
        "output_price_per_million": "0.60",
        "is_enabled": enabled,
    }


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _login(client: httpx2.Client, *, email: str, password: str) -> dict[str, Any]:
    response = client.post("/login/access-token", data={"username": email, "password": password})
    return _expect(response, httpx2.codes.OK)


def _get(client: httpx2.Client, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return _expect(client.get(path, headers=headers), httpx2.codes.OK)


def _post(
    client: httpx2.Client,
    path: str,
    headers: dict[str, str],
    body: dict[str, Any],
    *,
    expect: int = httpx2.codes.CREATED,
) -> dict[str, Any]:
    return _expect(client.post(path, headers=headers, json=body), expect)


def _expect(response: httpx2.Response, status: int) -> dict[str, Any]:
    if response.status_code != status:
        request = response.request
        raise SeedError(
            f"{request.method} {request.url.path}: HTTP {response.status_code} "
            f"(expected {status}): {response.text[:500]}"
        )
    body: dict[str, Any] = response.json()
    return body
