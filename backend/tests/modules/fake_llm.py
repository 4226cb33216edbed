"""A scripted OpenAI-compatible server on 127.0.0.1, for tests that call a model.

    with FakeLLM() as fake:
        fake.script(FakeResponse(status=429, headers={"Retry-After": "2"}), FakeResponse())
        ...  # point a provider's base_url at fake.base_url
        assert fake.requests[0].json["model"] == "gpt-test"

Each request takes the next scripted response; once the script is empty every request
gets a default success: `completion_body()` for chat, and for a path ending in
/embeddings `embeddings_body(...)` of the request's inputs, each vector from
`fake_embeddings.embed_text` with `embedding_dimensions` floats. A scripted
`FakeResponse` without `json` or `body` sends the same default. It is a real HTTP
server, so clients are tested with their real transport, pooling and timeouts.
"""

import json
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from tests.modules.fake_embeddings import embed_text, token_count

DEFAULT_CONTENT = "Hello from the fake model."


def completion_body(
    content: str = DEFAULT_CONTENT,
    prompt_tokens: int = 12,
    completion_tokens: int = 7,
    *,
    model: str = "fake-model-2025-01-01",
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """A chat-completions success body, as OpenAI shapes it."""
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def embeddings_body(
    inputs: Sequence[str], dimensions: int = 64, *, model: str = "fake-embedding"
) -> dict[str, Any]:
    """An embeddings success body, as OpenAI shapes it: one `embed_text` vector per input
    and usage of one token per word (at least one per input)."""
    tokens = sum(token_count(text) for text in inputs)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": embed_text(text, dimensions)}
            for index, text in enumerate(inputs)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


@dataclass(frozen=True)
class FakeResponse:
    """One scripted answer. `body` (raw bytes) wins over `json`; with neither, a
    default success body is sent."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    # Report the request's whole max_tokens as output: a provider billing the worst case.
    bill_max_tokens: bool = False

    def encoded(self, request: Any = None) -> bytes:
        if self.body is not None:
            return self.body
        if self.bill_max_tokens and isinstance(request, dict):
            return json.dumps(completion_body("Long.", 0, int(request["max_tokens"]))).encode()
        return json.dumps(completion_body() if self.json is None else self.json).encode()


def ok(
    content: str = DEFAULT_CONTENT, prompt_tokens: int = 12, completion_tokens: int = 7
) -> FakeResponse:
    return FakeResponse(json=completion_body(content, prompt_tokens, completion_tokens))


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    json: Any  # None when the body was not JSON


class FakeLLM:
    """The server runs in a daemon thread from `start()` (or `with`) to `stop()`.
    `embedding_dimensions` (settable at any time) sizes the default embedding vectors."""

    def __init__(self, *, embedding_dimensions: int = 64) -> None:
        self.embedding_dimensions = embedding_dimensions
        self._script: deque[FakeResponse] = deque()
        self._requests: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True  # a delayed answer must not block stop()
        # A short poll interval: shutdown() waits for one, and every test stops a server.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host!s}:{port}/v1"

    def script(self, *responses: FakeResponse) -> None:
        with self._lock:
            self._script.extend(responses)

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _record(self, request: ReceivedRequest) -> FakeResponse:
        with self._lock:
            self._requests.append(request)
            return self._script.popleft() if self._script else FakeResponse()

    def _payload(self, response: FakeResponse, path: str, request: Any) -> bytes:
        if response.body is None and response.json is None and path.endswith("/embeddings"):
            inputs = request.get("input") if isinstance(request, dict) else None
            if isinstance(inputs, str):  # OpenAI also takes one bare string
                inputs = [inputs]
            model = request.get("model") if isinstance(request, dict) else None
            body = embeddings_body(
                [str(text) for text in inputs or []],
                self.embedding_dimensions,
                model=model if isinstance(model, str) else "fake-embedding",
            )
            return json.dumps(body).encode()
        return response.encoded(request)


def _handler_for(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real providers do
        # Headers and body leave in two writes; with Nagle on, the body waits ~40 ms for
        # the client's delayed ACK on every kept-alive request.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            headers = {name.lower(): value for name, value in self.headers.items()}
            response = fake._record(
                ReceivedRequest(method="POST", path=self.path, headers=headers, json=parsed)
            )
            time.sleep(response.delay)
            payload = fake._payload(response, self.path, parsed)
            try:
                self.send_response(response.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test); nobody is listening

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

    return Handler
