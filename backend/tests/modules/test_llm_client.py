"""The chat-completions client against a real local HTTP server (tests.modules.fake_llm)."""

import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from app.modules.llm.client import RETRY_AFTER_CAP, ChatMessage, LLMClient, LLMError
from tests.modules.conftest import API_KEY, UPSTREAM_SECRET, MakeClient, Recorder
from tests.modules.fake_llm import DEFAULT_CONTENT, FakeLLM, FakeResponse, completion_body, ok

MESSAGES = [
    ChatMessage(role="system", content="Be brief."),
    ChatMessage(role="user", content="Hello?"),
]


def complete(client: LLMClient, attempts: Recorder | None = None, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "provider": "fake",
        "model": "gpt-test",
        "messages": MESSAGES,
        "max_tokens": 256,
        "temperature": 0.3,
        "on_attempt": attempts,
    }
    return client.complete(**(arguments | overrides))


def fail(client: LLMClient, attempts: Recorder | None = None, **overrides: Any) -> LLMError:
    with pytest.raises(LLMError) as caught:
        complete(client, attempts, **overrides)
    return caught.value


def success_with(**fields: Any) -> FakeResponse:
    """A success body with some fields replaced."""
    return FakeResponse(json=completion_body() | fields)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TestSuccess:
    def test_returns_content_and_usage(
        self, make_client: MakeClient, fake_llm: FakeLLM, attempts: Recorder
    ) -> None:
        fake_llm.script(ok("Hi there.", prompt_tokens=21, completion_tokens=4))

        completion = complete(make_client(), attempts)

        assert completion.content == "Hi there."
        assert (completion.input_tokens, completion.output_tokens) == (21, 4)
        assert completion.model == "fake-model-2025-01-01"
        assert completion.finish_reason == "stop"
        assert attempts.calls == [1]

    def test_sends_the_openai_request(self, make_client: MakeClient, fake_llm: FakeLLM) -> None:
        complete(make_client())

        [request] = fake_llm.requests
        assert request.method == "POST"
        assert request.path == "/v1/chat/completions"
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        assert request.json == {
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello?"},
            ],
            "max_tokens": 256,
            "temperature": 0.3,
        }

    def test_no_key_sends_no_authorization(
        self, make_client: MakeClient, fake_llm: FakeLLM
    ) -> None:
        complete(make_client(api_key=None))

        assert "authorization" not in fake_llm.requests[0].headers

    def test_trailing_slash_in_base_url(self, make_client: MakeClient, fake_llm: FakeLLM) -> None:
        complete(make_client(base_url=fake_llm.base_url + "/"))

        assert fake_llm.requests[0].path == "/v1/chat/completions"

    def test_missing_model_falls_back_to_the_requested_one(
        self, make_client: MakeClient, fake_llm: FakeLLM
    ) -> None:
        body = completion_body()
        del body["model"]
        fake_llm.script(FakeResponse(json=body))

        assert complete(make_client()).model == "gpt-test"

    def test_one_client_serves_many_threads(
        self, make_client: MakeClient, fake_llm: FakeLLM
    ) -> None:
        client = make_client()
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda _: complete(client), range(16)))

        assert {result.content for result in results} == {DEFAULT_CONTENT}
        assert len(fake_llm.requests) == 16


class TestRetries:
    def test_429_waits_retry_after_then_succeeds(
        self, make_client: MakeClient, fake_llm: FakeLLM, sleeps: Recorder, attempts: Recorder
    ) -> None:
        fake_llm.script(FakeResponse(status=429, headers={"Retry-After": "2"}), ok("Later."))

        completion = complete(make_client(), attempts)

        assert completion.content == "Later."
        assert sleeps.calls == [2.0]
        assert attempts.calls == [1, 2]
        assert len(fake_llm.requests) == 2

    def test_retry_after_as_http_date(
        self, make_client: MakeClient, fake_llm: FakeLLM, sleeps: Recorder
    ) -> None:
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
        fake_llm.script(FakeResponse(status=503, headers={"Retry-After": when}))

        complete(make_client())

        [delay] = sleeps.calls
        assert 7 <= delay <= 10

    def test_retry_after_beyond_the_cap_gives_up_at_once(
        self, make_client: MakeClient, fake_llm: FakeLLM, sleeps: Recorder
    ) -> None:
        wait = RETRY_AFTER_CAP + 90
        fake_llm.script(FakeResponse(status=429, headers={"Retry-After": str(int(wait))}))

        error = fail(make_client())

        assert error.code == "llm_rate_limited"
        assert error.retry_after == wait
        assert sleeps.calls == []
        assert len(fake_llm.requests) == 1

    def test_500_twice_then_success(
        self, make_client: MakeClient, fake_llm: FakeLLM, sleeps: Recorder, attempts: Recorder
    ) -> None:
        fake_llm.script(FakeResponse(status=500), FakeResponse(status=502), ok("Finally."))

        completion = complete(make_client(backoff_base=0.5), attempts)

        assert completion.content == "Finally."
        assert attempts.calls == [1, 2, 3]
        first, second = sleeps.calls
        assert 0 <= first <= 0.5  # full jitter under base * 2**0
        assert 0 <= second <= 1.0  # ... and under base * 2**1

    def test_persistent_500_is_unavailable_after_all_attempts(
        self, make_client: MakeClient, fake_llm: FakeLLM, sleeps: Recorder, attempts: Recorder
    ) -> None:
        fake_llm.script(*[FakeResponse(status=500)] * 10)

        error = fail(make_client(max_retries=3), attempts)

        assert error.code == "llm_unavailable"
        assert error.status_code == 500
        assert attempts.calls == [1, 2, 3, 4]
        assert len(fake_llm.requests) == 4
        assert len(sleeps.calls) == 3

    def test_backoff_is_capped(
        self, make_client: MakeClient, fake_llm: FakeLLM, sleeps: Recorder
    ) -> None:
        fake_llm.script(*[FakeResponse(status=503)] * 8)

        fail(make_client(max_retries=7, backoff_base=1.0, backoff_max=2.0))

        assert len(sleeps.calls) == 7
        assert all(0 <= delay <= 2.0 for delay in sleeps.calls)

    def test_no_retries_when_max_retries_is_zero(
        self, make_client: MakeClient, fake_llm: FakeLLM, sleeps: Recorder
    ) -> None:
        fake_llm.script(FakeResponse(status=429, headers={"Retry-After": "1"}))

        error = fail(make_client(max_retries=0))

        assert error.code == "llm_rate_limited"
        assert error.retry_after == 1.0
        assert sleeps.calls == []


class TestFailures:
    def test_too_slow_is_a_timeout(
        self, make_client: MakeClient, fake_llm: FakeLLM, attempts: Recorder
    ) -> None:
        fake_llm.script(FakeResponse(delay=1.0), FakeResponse(delay=1.0))

        error = fail(make_client(read_timeout=0.2, max_retries=1), attempts)

        assert error.code == "llm_timeout"
        assert attempts.calls == [1, 2]

    @pytest.mark.parametrize(
        "response",
        [
            pytest.param(FakeResponse(body=b"<html>Bad gateway</html>"), id="not-json"),
            pytest.param(FakeResponse(body=b'{"choices": ['), id="truncated-json"),
            pytest.param(FakeResponse(body=b"\xff\xfe\x00"), id="not-utf8"),
            pytest.param(FakeResponse(json=[completion_body()]), id="not-an-object"),
            pytest.param(success_with(usage=None), id="null-usage"),
            pytest.param(success_with(choices=[]), id="no-choices"),
            pytest.param(success_with(choices=[{"message": {}}]), id="no-content"),
            pytest.param(success_with(choices=[{"message": {"content": None}}]), id="null-content"),
            pytest.param(
                success_with(usage={"prompt_tokens": "12", "completion_tokens": 3}),
                id="tokens-as-string",
            ),
            pytest.param(
                success_with(usage={"prompt_tokens": -1, "completion_tokens": 3}),
                id="negative-tokens",
            ),
        ],
    )
    def test_malformed_success_is_a_bad_response(
        self, make_client: MakeClient, fake_llm: FakeLLM, response: FakeResponse
    ) -> None:
        fake_llm.script(response)

        error = fail(make_client())

        assert error.code == "llm_bad_response"
        assert len(fake_llm.requests) == 1  # an answer that arrived is not retried

    def test_undecodable_body_is_a_bad_response(
        self, make_client: MakeClient, fake_llm: FakeLLM
    ) -> None:
        fake_llm.script(FakeResponse(body=b"not gzip", headers={"Content-Encoding": "gzip"}))

        assert fail(make_client()).code == "llm_bad_response"
        assert len(fake_llm.requests) == 1

    def test_missing_usage_is_a_bad_response(
        self, make_client: MakeClient, fake_llm: FakeLLM
    ) -> None:
        body = completion_body()
        del body["usage"]
        fake_llm.script(FakeResponse(json=body))

        assert fail(make_client()).code == "llm_bad_response"

    @pytest.mark.parametrize("status", [401, 403])
    def test_refused_credentials_are_not_retried(
        self, make_client: MakeClient, fake_llm: FakeLLM, sleeps: Recorder, status: int
    ) -> None:
        fake_llm.script(FakeResponse(status=status, json={"error": UPSTREAM_SECRET}))

        error = fail(make_client())

        assert error.code == "llm_auth_failed"
        assert error.status_code == status
        assert len(fake_llm.requests) == 1
        assert sleeps.calls == []

    @pytest.mark.parametrize("status", [400, 404, 422])
    def test_other_4xx_is_a_bad_request(
        self, make_client: MakeClient, fake_llm: FakeLLM, status: int
    ) -> None:
        fake_llm.script(FakeResponse(status=status, json={"error": {"message": UPSTREAM_SECRET}}))

        error = fail(make_client())

        assert error.code == "llm_bad_request"
        assert len(fake_llm.requests) == 1

    def test_connection_refused_is_unavailable(
        self, make_client: MakeClient, attempts: Recorder
    ) -> None:
        client = make_client(base_url=f"http://127.0.0.1:{closed_port()}/v1", max_retries=2)

        error = fail(client, attempts)

        assert error.code == "llm_unavailable"
        assert error.status_code is None
        assert attempts.calls == [1, 2, 3]

    def test_unknown_provider_sends_nothing(
        self, make_client: MakeClient, fake_llm: FakeLLM, attempts: Recorder
    ) -> None:
        error = fail(make_client(), attempts, provider="nobody")

        assert error.code == "llm_not_configured"
        assert attempts.calls == []
        assert fake_llm.requests == []


class TestSecrecy:
    @pytest.mark.parametrize(
        "response",
        [
            FakeResponse(status=400, json={"error": {"message": UPSTREAM_SECRET}}),
            FakeResponse(status=401, json={"error": UPSTREAM_SECRET}),
            FakeResponse(
                status=429, json={"error": UPSTREAM_SECRET}, headers={"Retry-After": "999"}
            ),
            FakeResponse(status=200, body=UPSTREAM_SECRET.encode()),
            FakeResponse(status=200, json={"choices": [{"message": {"content": UPSTREAM_SECRET}}]}),
        ],
        ids=["400", "401", "429", "not-json", "no-usage"],
    )
    def test_upstream_text_stays_out_of_errors_and_logs(
        self,
        make_client: MakeClient,
        fake_llm: FakeLLM,
        caplog: pytest.LogCaptureFixture,
        response: FakeResponse,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        fake_llm.script(response)

        error = fail(make_client())

        for text in (error.message, str(error), repr(error), caplog.text):
            assert UPSTREAM_SECRET not in text
        assert error.__cause__ is None

    def test_api_key_never_logged(
        self, make_client: MakeClient, fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)  # including the HTTP library's own debug lines
        fake_llm.script(FakeResponse(status=500), FakeResponse(status=429), ok())
        client = make_client()

        complete(client)
        fake_llm.script(FakeResponse(status=401))
        fail(client)

        assert "status 500" in caplog.text  # the retries were logged...
        assert "llm_auth_failed" in caplog.text
        assert API_KEY not in caplog.text  # ...without the key
