"""LLM clients for the client's own tests: provider "fake", served by the fake_llm
fixture's real local server, with sleeps and attempts recorded instead of waited."""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from app.core.config import ProviderSettings
from app.modules.llm.client import LLMClient
from tests.modules.fake_llm import FakeLLM

API_KEY = "sk-test-7f3c9a1e-never-log-me"
UPSTREAM_SECRET = "secret upstream detail"

MakeClient = Callable[..., LLMClient]


class Recorder:
    """Stands in for time.sleep and on_attempt: remembers, never waits."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, value: Any) -> None:
        self.calls.append(value)


@pytest.fixture
def sleeps() -> Recorder:
    return Recorder()


@pytest.fixture
def attempts() -> Recorder:
    return Recorder()


@pytest.fixture
def make_client(fake_llm: FakeLLM, sleeps: Recorder) -> Iterator[MakeClient]:
    """Clients for the provider "fake" (served by fake_llm unless base_url says otherwise)."""
    clients: list[LLMClient] = []

    def make(
        *, base_url: str | None = None, api_key: str | None = API_KEY, **options: Any
    ) -> LLMClient:
        provider = ProviderSettings(
            base_url=base_url or fake_llm.base_url,
            api_key=SecretStr(api_key) if api_key is not None else None,
        )
        client = LLMClient(providers={"fake": provider}, sleep=sleeps, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
