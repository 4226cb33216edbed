"""The embeddings client against a real local HTTP server (tests.modules.fake_llm), and the
fake provider's meaning-aware vectors (tests.modules.fake_embeddings)."""

import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from app.core.config import ProviderSettings
from app.modules.llm.client import MAX_EMBED_BATCH, Embeddings, LLMClient, LLMError
from tests.modules.conftest import API_KEY, UPSTREAM_SECRET, MakeClient, Recorder
from tests.modules.fake_embeddings import SYNONYMS, embed_text
from tests.modules.fake_llm import FakeLLM, FakeResponse, embeddings_body

INPUTS = ["The physician refunded the automobile.", "Rain in spring", "A kitten"]
DIMENSIONS = 64  # FakeLLM's default


def embed(client: LLMClient, attempts: Recorder | None = None, **overrides: Any) -> Embeddings:
    arguments: dict[str, Any] = {
        "provider": "fake",
        "model": "embed-test",
        "inputs": INPUTS,
        "dimensions": DIMENSIONS,
        "on_attempt": attempts,
    }
    return client.embed(**(arguments | overrides))


def fail(client: LLMClient, attempts: Recorder | None = None, **overrides: Any) -> LLMError:
    with pytest.raises(LLMError) as caught:
        embed(client, attempts, **overrides)
    return caught.value


def body(**fields: Any) -> dict[str, Any]:
    """A success body for INPUTS with some fields replaced."""
    return embeddings_body(INPUTS, DIMENSIONS) | fields


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


class TestSuccess:
    def test_returns_one_vector_per_input_and_the_usage(
        self, make_client: MakeClient, attempts: Recorder
    ) -> None:
        result = embed(make_client(), attempts)

        assert result.vectors == [embed_text(text, DIMENSIONS) for text in INPUTS]
        assert result.input_tokens == 5 + 3 + 2  # the fake bills one token per word
        assert result.model == "embed-test"
        assert attempts.calls == [1]

    def test_sends_the_openai_request(self, make_client: MakeClient, fake_llm: FakeLLM) -> None:
        embed(make_client())

        [request] = fake_llm.requests
        assert request.method == "POST"
        assert request.path == "/v1/embeddings"
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        assert request.json == {"model": "embed-test", "input": INPUTS, "encoding_format": "float"}

    def test_vectors_follow_the_inputs_when_data_arrives_out_of_order(
        self, make_client: MakeClient, fake_llm: FakeLLM
    ) -> None:
        shuffled = body()
        shuffled["data"] = [shuffled["data"][i] for i in (2, 0, 1)]
        fake_llm.script(FakeResponse(json=shuffled))

        result = embed(make_client())

        assert result.vectors == [embed_text(text, DIMENSIONS) for text in INPUTS]

    def test_missing_usage_gives_no_token_count(
        self, make_client: MakeClient, fake_llm: FakeLLM
    ) -> None:
        without_usage = body()
        del without_usage["usage"]
        fake_llm.script(FakeResponse(json=without_usage))

        assert embed(make_client()).input_tokens is None

    def test_total_tokens_stand_in_for_missing_prompt_tokens(
        self, make_client: MakeClient, fake_llm: FakeLLM
    ) -> None:
        fake_llm.script(FakeResponse(json=body(usage={"total_tokens": 17})))

        assert embed(make_client()).input_tokens == 17

    def test_the_reported_model_wins_and_a_missing_one_falls_back(
        self, make_client: MakeClient, fake_llm: FakeLLM
    ) -> None:
        without_model = body()
        del without_model["model"]
        fake_llm.script(
            FakeResponse(json=body(model="embed-test-v2")), FakeResponse(json=without_model)
        )
        client = make_client()

        assert embed(client).model == "embed-test-v2"
        assert embed(client).model == "embed-test"

    def test_integer_coordinates_are_numbers(
        self, make_client: MakeClient, fake_llm: FakeLLM
    ) -> None:
        data = [{"index": 0, "embedding": [1, 0, 0]}]
        fake_llm.script(FakeResponse(json={"data": data}))

        result = embed(make_client(), inputs=["one"], dimensions=3)

        assert result.vectors == [[1.0, 0.0, 0.0]]

    def test_a_full_batch_at_the_configured_dimensions(
        self, make_client: MakeClient, fake_llm: FakeLLM
    ) -> None:
        fake_llm.embedding_dimensions = 384
        inputs = [f"passage number {i}" for i in range(MAX_EMBED_BATCH)]

        result = embed(make_client(), inputs=inputs, dimensions=384)

        assert len(result.vectors) == MAX_EMBED_BATCH
        assert result.vectors[7] == embed_text("passage number 7", 384)
        assert result.input_tokens == 3 * MAX_EMBED_BATCH

    def test_chat_default_is_unchanged(self, fake_llm: FakeLLM) -> None:
        with LLMClient(providers={"fake": ProviderSettings(base_url=fake_llm.base_url)}) as client:
            completion = client.complete(
                provider="fake", model="gpt-test", messages=[], max_tokens=8, temperature=0
            )

        assert completion.model == "fake-model-2025-01-01"


class TestBatchSize:
    @pytest.mark.parametrize("count", [0, MAX_EMBED_BATCH + 1])
    def test_outside_the_batch_limits_is_refused_before_any_request(
        self, make_client: MakeClient, fake_llm: FakeLLM, attempts: Recorder, count: int
    ) -> None:
        with pytest.raises(ValueError, match="inputs"):
            embed(make_client(), attempts, inputs=["text"] * count)

        assert attempts.calls == []
        assert fake_llm.requests == []

    def test_no_dimensions_is_refused(self, make_client: MakeClient, fake_llm: FakeLLM) -> None:
        with pytest.raises(ValueError, match="dimensions"):
            embed(make_client(), dimensions=0)

        assert fake_llm.requests == []


class TestRetries:
    @pytest.mark.parametrize("status", [429, 503])
    def test_waits_retry_after_then_succeeds(
        self,
        make_client: MakeClient,
        fake_llm: FakeLLM,
        sleeps: Recorder,
        attempts: Recorder,
        status: int,
    ) -> None:
        fake_llm.script(FakeResponse(status=status, headers={"Retry-After": "2"}))

        result = embed(make_client(), attempts)

        assert len(result.vectors) == len(INPUTS)
        assert sleeps.calls == [2.0]
        assert attempts.calls == [1, 2]
        assert [request.path for request in fake_llm.requests] == ["/v1/embeddings"] * 2

    def test_persistent_503_is_unavailable_after_all_attempts(
        self, make_client: MakeClient, fake_llm: FakeLLM, sleeps: Recorder, attempts: Recorder
    ) -> None:
        fake_llm.script(*[FakeResponse(status=503)] * 5)

        error = fail(make_client(max_retries=2, backoff_base=0.5), attempts)

        assert error.code == "llm_unavailable"
        assert attempts.calls == [1, 2, 3]
        first, second = sleeps.calls
        assert 0 <= first <= 0.5
        assert 0 <= second <= 1.0

    def test_a_passed_deadline_sends_nothing(
        self, make_client: MakeClient, fake_llm: FakeLLM, attempts: Recorder
    ) -> None:
        error = fail(make_client(), attempts, deadline=time.monotonic() - 1)

        assert error.code == "llm_timeout"
        assert attempts.calls == []
        assert fake_llm.requests == []

    def test_no_retry_when_the_wait_would_pass_the_deadline(
        self, make_client: MakeClient, fake_llm: FakeLLM, sleeps: Recorder
    ) -> None:
        fake_llm.script(FakeResponse(status=429, headers={"Retry-After": "20"}))

        error = fail(make_client(), deadline=time.monotonic() + 5)

        assert error.code == "llm_rate_limited"
        assert sleeps.calls == []
        assert len(fake_llm.requests) == 1


class TestFailures:
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

    def test_too_slow_is_a_timeout(
        self, make_client: MakeClient, fake_llm: FakeLLM, attempts: Recorder
    ) -> None:
        fake_llm.script(FakeResponse(delay=1.0), FakeResponse(delay=1.0))

        error = fail(make_client(read_timeout=0.2, max_retries=1), attempts)

        assert error.code == "llm_timeout"
        assert attempts.calls == [1, 2]

    @pytest.mark.parametrize(
        "dimensions", [pytest.param(DIMENSIONS - 1, id="shorter"), pytest.param(128, id="longer")]
    )
    def test_vectors_of_another_length_are_a_dimensions_mismatch(
        self, make_client: MakeClient, fake_llm: FakeLLM, dimensions: int
    ) -> None:
        fake_llm.script(FakeResponse(json=embeddings_body(INPUTS, dimensions)))

        error = fail(make_client())

        assert error.code == "embedding_dimensions_mismatch"
        assert "catalog" in error.message
        assert len(fake_llm.requests) == 1  # a model that answers so will not change its mind

    def test_one_vector_of_another_length_is_a_dimensions_mismatch(
        self, make_client: MakeClient, fake_llm: FakeLLM
    ) -> None:
        mixed = body()
        mixed["data"][1]["embedding"] = mixed["data"][1]["embedding"][:-1]
        fake_llm.script(FakeResponse(json=mixed))

        assert fail(make_client()).code == "embedding_dimensions_mismatch"

    @pytest.mark.parametrize(
        "response",
        [
            pytest.param(FakeResponse(body=b"<html>Bad gateway</html>"), id="not-json"),
            pytest.param(FakeResponse(body=b'{"data": ['), id="truncated-json"),
            pytest.param(FakeResponse(json=[body()]), id="not-an-object"),
            pytest.param(FakeResponse(json=body(data=None)), id="null-data"),
            pytest.param(FakeResponse(json={"model": "embed-test"}), id="no-data"),
            pytest.param(FakeResponse(json=body(data=body()["data"][:2])), id="too-few"),
            pytest.param(
                FakeResponse(json=body(data=body()["data"] + body()["data"][:1])), id="too-many"
            ),
            pytest.param(FakeResponse(json=body(usage={"prompt_tokens": -1})), id="negative-usage"),
            pytest.param(FakeResponse(json=body(usage={"prompt_tokens": "9"})), id="string-usage"),
        ],
    )
    def test_malformed_success_is_a_bad_response(
        self, make_client: MakeClient, fake_llm: FakeLLM, response: FakeResponse
    ) -> None:
        fake_llm.script(response)

        error = fail(make_client())

        assert error.code == "llm_bad_response"
        assert len(fake_llm.requests) == 1  # an answer that arrived is not retried

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("index", None),  # missing: the key is removed below
            ("index", 5),  # out of range, so index 1 is missing
            ("index", 0),  # a duplicate, so index 1 is missing
            ("index", "1"),
            ("embedding", None),
            ("embedding", [float("nan")] * DIMENSIONS),
            ("embedding", [float("inf")] * DIMENSIONS),
            ("embedding", ["0.5"] * DIMENSIONS),
            ("embedding", [True] * DIMENSIONS),
            ("embedding", [0.0] * DIMENSIONS),  # no direction: nothing compares with it
        ],
        ids=[
            "missing-index",
            "index-out-of-range",
            "duplicate-index",
            "string-index",
            "null-embedding",
            "nan",
            "infinity",
            "string-coordinates",
            "boolean-coordinates",
            "zero-vector",
        ],
    )
    def test_a_malformed_item_is_a_bad_response(
        self, make_client: MakeClient, fake_llm: FakeLLM, field: str, value: Any
    ) -> None:
        broken = body()
        if value is None and field == "index":
            del broken["data"][1]["index"]
        else:
            broken["data"][1][field] = value
        # json.dumps writes NaN and Infinity as bare literals, as a careless server would.
        fake_llm.script(FakeResponse(body=json.dumps(broken).encode()))

        error = fail(make_client())

        assert error.code == "llm_bad_response"
        assert len(fake_llm.requests) == 1


class TestSecrecy:
    @pytest.mark.parametrize(
        "response",
        [
            FakeResponse(status=400, json={"error": {"message": UPSTREAM_SECRET}}),
            FakeResponse(status=200, body=UPSTREAM_SECRET.encode()),
            FakeResponse(status=200, json={"data": [{"index": 0, "embedding": UPSTREAM_SECRET}]}),
            FakeResponse(status=200, json={"data": [], "model": UPSTREAM_SECRET}),
        ],
        ids=["400", "not-json", "text-embedding", "no-vectors"],
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
        assert API_KEY not in caplog.text
        assert error.__cause__ is None


def paraphrases(first: int, second: int) -> tuple[str, str]:
    """Two texts of the same concepts, in the words `first` and `second` of each group."""
    groups = [group for group in SYNONYMS.values() if len(group) > max(first, second)]
    return (
        " the ".join(group[first] for group in groups[:4]),
        " of ".join(group[second] for group in groups[:4]),
    )


class TestFakeEmbedder:
    def test_vectors_are_unit_length_and_deterministic(self) -> None:
        for text in ["A refund for the car", "", "the of and", "x" * 500]:
            vector = embed_text(text, 96)
            assert len(vector) == 96
            assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0)
            assert embed_text(text, 96) == vector

    def test_vectors_are_the_same_in_another_process(self) -> None:
        script = (
            "from tests.modules.fake_embeddings import embed_text\n"
            "print(embed_text('car refund', 16))"
        )
        backend = Path(__file__).resolve().parents[2]
        env = os.environ | {"PYTHONHASHSEED": "12345", "PYTHONPATH": str(backend)}
        output = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout

        assert json.loads(output) == embed_text("car refund", 16)

    def test_paraphrases_are_closer_than_unrelated_texts(self) -> None:
        query = "I was refunded for the automobile that the physician purchased"
        paraphrase = "The doctor got a reimbursement for the car he bought"
        unrelated = "A kitten sleeps while rain falls on the hotel"

        close = cosine(embed_text(query, 256), embed_text(paraphrase, 256))
        far = cosine(embed_text(query, 256), embed_text(unrelated, 256))

        assert close > 0.9
        assert close - far > 0.6

    @pytest.mark.parametrize(("first", "second"), [(0, 1), (1, 2), (0, 2)])
    def test_synonym_groups_give_paraphrases(self, first: int, second: int) -> None:
        text, paraphrase = paraphrases(first, second)
        unrelated = " ".join(group[first] for group in list(SYNONYMS.values())[-4:])

        close = cosine(embed_text(text, 256), embed_text(paraphrase, 256))
        far = cosine(embed_text(text, 256), embed_text(unrelated, 256))

        assert close > 0.99
        assert far < 0.5

    def test_inflections_and_function_words_do_not_change_the_meaning(self) -> None:
        assert embed_text("refund", 64) == embed_text("the refunds", 64)
        assert embed_text("refund", 64) == embed_text("refunding", 64)
        assert embed_text("purchase cars", 64) == embed_text("purchased a car", 64)
