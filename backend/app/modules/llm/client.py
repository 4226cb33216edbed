"""A synchronous client for OpenAI-compatible chat-completions and embeddings APIs.

Every failure leaves as an `LLMError` with a stable code and a sentence of our own.
Upstream bodies can echo prompts, keys or internal detail, so none of their text reaches
an error message or a log line; logs carry only provider, status and code.
"""

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Annotated, Any, Self, TypeVar

import httpx2
from pydantic import (
    AllowInfNan,
    BaseModel,
    Field,
    Strict,
    StrictInt,
    StrictStr,
    ValidationError,
)

from app.core.codes import LLMErrorCode
from app.core.config import ProviderSettings

logger = logging.getLogger("agentry.llm")

_MESSAGES: dict[LLMErrorCode, str] = {
    LLMErrorCode.LLM_NOT_CONFIGURED: "The model's provider is not configured on this server.",
    LLMErrorCode.LLM_UNAVAILABLE: "The model provider is unavailable; try again later.",
    LLMErrorCode.LLM_TIMEOUT: "The model provider did not answer in time.",
    LLMErrorCode.LLM_RATE_LIMITED: "The model provider is rate limiting requests; try again later.",
    LLMErrorCode.LLM_AUTH_FAILED: "The model provider refused this server's credentials.",
    LLMErrorCode.LLM_BAD_REQUEST: "The model provider refused the request.",
    LLMErrorCode.LLM_BAD_RESPONSE: "The model provider sent a response that could not be read.",
    LLMErrorCode.EMBEDDING_DIMENSIONS_MISMATCH: (
        "The embedding model returned vectors of another length than the catalog says."
    ),
}
RETRYABLE: frozenset[LLMErrorCode] = frozenset(
    {LLMErrorCode.LLM_UNAVAILABLE, LLMErrorCode.LLM_TIMEOUT, LLMErrorCode.LLM_RATE_LIMITED}
)

# A provider asking us to wait longer than this would hold a worker thread for too long;
# the caller hears the code (and retry_after) at once instead.
RETRY_AFTER_CAP = 30.0
# Enough for the worker threads (THREADPOOL_SIZE) to share one provider without queueing
# behind each other in the common case.
_LIMITS = httpx2.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=30)
# Inputs per embeddings call: providers cap a request (OpenAI at 2048 inputs and a token
# total), and a smaller batch keeps one retry cheap. Callers split longer lists.
MAX_EMBED_BATCH = 64

_T = TypeVar("_T")


class LLMError(Exception):
    """A model call that failed; `message` never contains upstream text."""

    def __init__(
        self,
        code: LLMErrorCode,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.code: LLMErrorCode = code
        self.message = _MESSAGES[code]
        self.status_code = status_code  # the upstream HTTP status, when there was one
        self.retry_after = retry_after  # seconds the provider asked us to wait
        super().__init__(self.message)


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True)
class Completion:
    content: str
    input_tokens: int
    output_tokens: int
    model: str  # as the provider reports it (may name a dated snapshot)
    finish_reason: str | None


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]  # in the order of the inputs, each `dimensions` long
    input_tokens: int | None  # None when the provider reports no usage (Ollama may not)
    model: str  # as the provider reports it, else the requested one


class _Usage(BaseModel):
    prompt_tokens: StrictInt = Field(ge=0)
    completion_tokens: StrictInt = Field(ge=0)


class _Message(BaseModel):
    content: StrictStr


class _Choice(BaseModel):
    message: _Message
    finish_reason: StrictStr | None = None


class _CompletionBody(BaseModel):
    model: StrictStr | None = None
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage


# Strict: a JSON `true` or `"0.5"` is not a coordinate; NaN and infinities are refused too.
_Coordinate = Annotated[float, Strict(), AllowInfNan(False)]


class _EmbeddingItem(BaseModel):
    index: StrictInt = Field(ge=0)
    embedding: list[_Coordinate]


class _EmbeddingUsage(BaseModel):
    prompt_tokens: StrictInt | None = Field(default=None, ge=0)
    total_tokens: StrictInt | None = Field(default=None, ge=0)


class _EmbeddingsBody(BaseModel):
    model: StrictStr | None = None
    data: list[_EmbeddingItem]
    usage: _EmbeddingUsage | None = None


class LLMClient:
    """Shared by worker threads: one connection pool per provider base URL."""

    def __init__(
        self,
        *,
        providers: Mapping[str, ProviderSettings],
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        if max_retries < 0 or backoff_base < 0 or backoff_max < 0:
            raise ValueError("max_retries, backoff_base and backoff_max must be >= 0")
        self._providers = dict(providers)
        # write gets the read budget: a long prompt may take a while to upload.
        self._timeout = httpx2.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        )
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._sleep = sleep
        self._transport = transport
        self._clients: dict[str, httpx2.Client] = {}
        self._lock = threading.Lock()

    def complete(
        self,
        *,
        provider: str,
        model: str,
        messages: Sequence[ChatMessage],
        max_tokens: int,
        temperature: float,
        on_attempt: Callable[[int], None] | None = None,
        deadline: float | None = None,
    ) -> Completion:
        """One chat completion; `on_attempt(n)` runs before each HTTP attempt (1-based).
        With a `deadline` (time.monotonic()), no attempt or wait runs past it."""
        payload = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        return self._post(
            provider=provider,
            path="/chat/completions",
            payload=payload,
            read=lambda response: _read_completion(response, requested_model=model),
            on_attempt=on_attempt,
            deadline=deadline,
        )

    def embed(
        self,
        *,
        provider: str,
        model: str,
        inputs: Sequence[str],
        dimensions: int,
        on_attempt: Callable[[int], None] | None = None,
        deadline: float | None = None,
    ) -> Embeddings:
        """One vector per input, in input order, each `dimensions` long; at most
        MAX_EMBED_BATCH inputs. Retries, timeouts and `deadline` work as in `complete`."""
        if not 1 <= len(inputs) <= MAX_EMBED_BATCH:
            raise ValueError(f"embed takes 1 to {MAX_EMBED_BATCH} inputs, not {len(inputs)}")
        if dimensions < 1:
            raise ValueError("dimensions must be >= 1")
        payload = {"model": model, "input": list(inputs), "encoding_format": "float"}
        return self._post(
            provider=provider,
            path="/embeddings",
            payload=payload,
            read=lambda response: _read_embeddings(
                response, requested_model=model, count=len(inputs), dimensions=dimensions
            ),
            on_attempt=on_attempt,
            deadline=deadline,
        )

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _post(
        self,
        *,
        provider: str,
        path: str,
        payload: dict[str, Any],
        read: Callable[[httpx2.Response], _T],
        on_attempt: Callable[[int], None] | None,
        deadline: float | None,
    ) -> _T:
        """POST `payload` to the provider's `path` with retries; `read` turns a 2xx into
        the result (or raises). `on_attempt(n)` runs before each HTTP attempt (1-based)."""
        config = self._providers.get(provider)
        if config is None:
            raise LLMError(LLMErrorCode.LLM_NOT_CONFIGURED)
        base_url = config.base_url.rstrip("/")
        http = self._http_client(base_url)
        headers = {}
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        attempts = self._max_retries + 1
        for attempt in range(1, attempts + 1):
            timeout = self._timeout_before(deadline)
            if timeout is None:
                raise LLMError(LLMErrorCode.LLM_TIMEOUT)
            if on_attempt is not None:
                on_attempt(attempt)
            try:
                response = http.post(
                    f"{base_url}{path}", json=payload, headers=headers, timeout=timeout
                )
            except httpx2.TimeoutException:
                error = LLMError(LLMErrorCode.LLM_TIMEOUT)
            except httpx2.TransportError:
                error = LLMError(LLMErrorCode.LLM_UNAVAILABLE)
            except httpx2.DecodingError:  # a body its Content-Encoding cannot undo
                error = LLMError(LLMErrorCode.LLM_BAD_RESPONSE)
            else:
                if response.is_success:
                    return read(response)
                error = _status_error(response)
            delay = self._retry_delay(error, attempt) if attempt < attempts else None
            if delay is not None and deadline is not None and time.monotonic() + delay >= deadline:
                delay = None  # no time left for another attempt
            if delay is None:
                logger.warning(
                    "LLM call to %s failed: %s (status %s) after %d attempt(s)",
                    provider,
                    error.code,
                    error.status_code,
                    attempt,
                )
                raise error
            logger.warning(
                "LLM call to %s: %s (status %s) on attempt %d of %d; retrying in %.2fs",
                provider,
                error.code,
                error.status_code,
                attempt,
                attempts,
                delay,
            )
            self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _http_client(self, base_url: str) -> httpx2.Client:
        with self._lock:
            client = self._clients.get(base_url)
            if client is None:
                client = httpx2.Client(
                    timeout=self._timeout, limits=_LIMITS, transport=self._transport
                )
                self._clients[base_url] = client
            return client

    def _timeout_before(self, deadline: float | None) -> httpx2.Timeout | None:
        """The configured timeouts, cut to what is left before `deadline` (None: none)."""
        if deadline is None:
            return self._timeout
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        return httpx2.Timeout(
            connect=min(self._connect_timeout, left),
            read=min(self._read_timeout, left),
            write=min(self._read_timeout, left),
            pool=min(self._connect_timeout, left),
        )

    def _retry_delay(self, error: LLMError, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if error.code not in RETRYABLE:
            return None
        if error.retry_after is not None:
            return error.retry_after if error.retry_after <= RETRY_AFTER_CAP else None
        # Full jitter: clients that failed together spread out instead of retrying in step.
        ceiling = min(self._backoff_max, self._backoff_base * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)  # noqa: S311 (jitter, not cryptography)


def _status_error(response: httpx2.Response) -> LLMError:
    status = response.status_code
    code: LLMErrorCode
    if status == 429:
        code = LLMErrorCode.LLM_RATE_LIMITED
    elif status in (401, 403):
        code = LLMErrorCode.LLM_AUTH_FAILED
    elif status == 408:
        code = LLMErrorCode.LLM_TIMEOUT
    elif status >= 500:
        code = LLMErrorCode.LLM_UNAVAILABLE
    elif 400 <= status < 500:
        code = LLMErrorCode.LLM_BAD_REQUEST
    else:  # 1xx/3xx: redirects are not followed, so this is not an answer we can use
        code = LLMErrorCode.LLM_BAD_RESPONSE
    retry_after = _parse_retry_after(response.headers.get("Retry-After"))
    return LLMError(code, status_code=status, retry_after=retry_after)


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After as delay-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT; a naive result means "-0000"
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)


def _read_completion(response: httpx2.Response, *, requested_model: str) -> Completion:
    try:
        body = _CompletionBody.model_validate_json(response.content)
    except ValidationError:
        logger.warning("LLM response unreadable (status %s)", response.status_code)
        # `from None`: pydantic's error quotes the body, which must not travel with us.
        raise LLMError(LLMErrorCode.LLM_BAD_RESPONSE, status_code=response.status_code) from None
    choice = body.choices[0]
    return Completion(
        content=choice.message.content,
        input_tokens=body.usage.prompt_tokens,
        output_tokens=body.usage.completion_tokens,
        model=body.model or requested_model,
        finish_reason=choice.finish_reason,
    )


def _read_embeddings(
    response: httpx2.Response, *, requested_model: str, count: int, dimensions: int
) -> Embeddings:
    try:
        body = _EmbeddingsBody.model_validate_json(response.content)
    except ValidationError:
        logger.warning("LLM embeddings response unreadable (status %s)", response.status_code)
        raise LLMError(LLMErrorCode.LLM_BAD_RESPONSE, status_code=response.status_code) from None
    items = sorted(body.data, key=lambda item: item.index)
    if [item.index for item in items] != list(range(count)):
        logger.warning(
            "LLM embeddings response has %d vector(s) for %d input(s) or gaps in its indexes",
            len(items),
            count,
        )
        raise LLMError(LLMErrorCode.LLM_BAD_RESPONSE, status_code=response.status_code)
    lengths = {len(item.embedding) for item in items}
    if lengths != {dimensions}:
        logger.warning(
            "LLM embeddings of length(s) %s where the catalog says %d",
            sorted(lengths),
            dimensions,
        )
        raise LLMError(LLMErrorCode.EMBEDDING_DIMENSIONS_MISMATCH, status_code=response.status_code)
    if any(not any(item.embedding) for item in items):
        # All zeros: a vector with no direction, which nothing can be compared with.
        logger.warning("LLM embeddings response holds a zero vector")
        raise LLMError(LLMErrorCode.LLM_BAD_RESPONSE, status_code=response.status_code)
    input_tokens = None
    if body.usage is not None:
        input_tokens = body.usage.prompt_tokens
        if input_tokens is None:
            input_tokens = body.usage.total_tokens
    return Embeddings(
        vectors=[item.embedding for item in items],
        input_tokens=input_tokens,
        model=body.model or requested_model,
    )
