"""Semantic search: what storing and searching passages' vectors costs on each path the
app takes, at 10,000 and 100,000 passages.

    cd backend && uv run python -m benchmarks.vectors        # sqlite, postgres, pgvector
    cd backend && uv run python -m benchmarks.vectors --paths sqlite,pgvector --sizes 10000

The paths: `sqlite` (a temp file) and `postgres` (a fresh database on the server of
`--postgres-admin-url`, without pgvector) compare every vector exactly with NumPy;
`pgvector` (a PostgreSQL with pgvector the `pgserver` package starts in a temp dir, as
the tests do) orders by the embedding model's HNSW index, or exactly in SQL when the
index's candidates hold too few passages of the knowledge base searched.

Passages are bulk inserted; their vectors (random unit vectors from a fixed seed, the
same on every path) go through `chunk_vector.store` in the index job's batches, so on
pgvector the HNSW index exists first and every insert updates it, as in production.
Searches call `chunk_vector.search` as the search service does. See README.md.
"""

import argparse
import os
import platform
import secrets
import shutil
import sqlite3
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import psycopg
from sqlalchemy import Engine, func, insert, text
from sqlalchemy import select as sa_select
from sqlalchemy.engine import make_url
from sqlmodel import Session, col

from app.core import migrations
from app.core import vectors as vector_ops
from app.core.config import Settings, load_settings
from app.core.db import create_db_engine, utcnow
from app.crud import chunk_vector as chunk_vector_crud
from app.models.ai_model import AIModel, ModelKind
from app.models.document import Chunk, Document
from app.models.embedding import ChunkVector, IndexStatus
from app.models.knowledge_base import KnowledgeBase
from app.models.user import User
from app.modules.llm.client import MAX_EMBED_BATCH
from benchmarks import servers
from benchmarks.knowledge import ready_document
from benchmarks.scratch import at_least, scratch_directory

with warnings.catch_warnings():
    # platformdirs warns, on import, when XDG_RUNTIME_DIR is unset (containers, CI).
    warnings.simplefilter("ignore")
    from pgserver.postgres_server import PostgresServer, get_server

PATHS = ("sqlite", "postgres", "pgvector")
SEARCH_LIMIT = 10  # the route's default
WARM_UP = 5  # searches per case before the timed ones
BATCH = 2_000  # rows per bulk insert
CHUNKS_PER_DOCUMENT = 50
SMALL_KNOWLEDGE_BASES = 10
BIG_SHARE = 0.8  # of the passages, in the one big knowledge base; the rest over the small
# The index build after a bulk load gets memory enough to keep the graph in it.
BUILD_MAINTENANCE_WORK_MEM = "1GB"
BUILD_INDEX = "ix_bench_hnsw_bulk"

Matrix = npt.NDArray[np.float32]


class Passage(NamedTuple):
    id: int
    knowledge_base_id: uuid.UUID
    owner_id: uuid.UUID


@dataclass
class Library:
    """One owner, an embedding model, one big knowledge base and a few small ones."""

    owner: User
    model: AIModel
    big: KnowledgeBase
    small: list[KnowledgeBase]
    sizes: dict[uuid.UUID, int] = field(default_factory=dict)

    def source(self, base: KnowledgeBase) -> chunk_vector_crud.VectorSource:
        dimensions = self.model.dimensions or 0
        return chunk_vector_crud.VectorSource(base.id, self.model.id, dimensions)


@dataclass
class Step:
    chunks: int
    stored: int  # vectors stored to reach `chunks`
    store_seconds: float
    big_chunks: int
    small_chunks: int
    big: list[float]  # ms per search in the big knowledge base
    small: list[float]  # ms per search in a small one
    recall: float  # mean recall@10 of the big knowledge base's searches, against exact


@dataclass
class PathFigures:
    path: str
    engine: str
    steps: list[Step] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    index_build: tuple[int, float] | None = None  # (vectors, seconds)
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average before, after
    seconds: float = 0.0


# ==================== the databases ====================


@contextmanager
def database(
    path: str, config: Settings, workdir: Path, args: argparse.Namespace
) -> Iterator[Engine]:
    """A fresh database of the path, migrated to head; dropped (and its server stopped)
    afterwards, also on Ctrl-C or `kill`."""
    if path == "sqlite":
        file = workdir / "vectors.db"
        with _engine(config, f"sqlite:///{file.as_posix()}") as engine:
            yield engine
        file.unlink(missing_ok=True)
    elif path == "postgres":
        name = f"agentry_bench_{secrets.token_hex(4)}"
        url = servers.create_database(args.postgres_admin_url, name)
        try:
            with _engine(config, url) as engine:
                yield engine
        finally:
            servers.drop_database(args.postgres_admin_url, name)
    else:
        server = _pgserver(workdir / "pgvector")
        try:
            name = f"agentry_bench_{secrets.token_hex(4)}"
            with psycopg.connect(server.get_uri(), autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            with _engine(config, _socket_url(server, name)) as engine:
                yield engine
        finally:
            server.cleanup()
            shutil.rmtree(workdir / "pgvector", ignore_errors=True)


def _pgserver(directory: Path) -> PostgresServer:
    directory.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_server(directory / "data", cleanup_mode="stop")


def _socket_url(server: PostgresServer, database: str) -> str:
    given = make_url(server.get_uri())
    return f"postgresql+psycopg://{given.username}@/{database}?host={given.query['host']}"


@contextmanager
def _engine(config: Settings, url: str) -> Iterator[Engine]:
    engine = create_db_engine(config.model_copy(update={"DATABASE_URL": url}))
    try:
        migrations.upgrade(engine, "head")
        yield engine
    finally:
        engine.dispose()


def new_library(engine: Engine, dimensions: int) -> Library:
    with Session(engine, expire_on_commit=False) as session:
        owner = User(email=f"vectors-{uuid.uuid4().hex[:8]}@example.com", hashed_password="-")  # noqa: S106
        model = AIModel(
            provider="bench",
            name=f"embed-{dimensions}",
            display_name="Benchmark embeddings",
            context_window=8_192,
            max_output_tokens=1,
            input_price_per_million=Decimal("0.02"),
            output_price_per_million=Decimal(0),
            kind=ModelKind.EMBEDDING,
            dimensions=dimensions,
        )
        session.add_all([owner, model])
        session.flush()
        bases = [
            KnowledgeBase(
                owner_id=owner.id,
                name=f"collection {number}",
                embedding_model_id=model.id,
                index_model_id=model.id,
                index_status=IndexStatus.READY,
            )
            for number in range(1 + SMALL_KNOWLEDGE_BASES)
        ]
        session.add_all(bases)
        session.commit()
    library = Library(owner, model, bases[0], bases[1:])
    library.sizes = dict.fromkeys([base.id for base in bases], 0)
    return library


def fill(engine: Engine, library: Library, target: int) -> list[Passage]:
    """Ready documents of CHUNKS_PER_DOCUMENT passages until `target` passages in all,
    BIG_SHARE of them in the big knowledge base and the rest evenly over the small ones;
    the new passages, by knowledge base then id."""
    wanted = {library.big.id: round(target * BIG_SHARE)}
    rest = target - wanted[library.big.id]
    for number, base in enumerate(library.small):
        wanted[base.id] = rest // len(library.small) + (number < rest % len(library.small))
    bases = [library.big, *library.small]
    now = utcnow()
    documents: list[dict[str, Any]] = []
    chunks: list[dict[str, Any]] = []
    for base in bases:
        while library.sizes[base.id] < wanted[base.id]:
            count = min(CHUNKS_PER_DOCUMENT, wanted[base.id] - library.sizes[base.id])
            document = _document(base, count, now)
            documents.append(document)
            chunks += [_chunk(document, ordinal) for ordinal in range(count)]
            library.sizes[base.id] += count
    with Session(engine) as session:
        last = session.execute(sa_select(func.max(col(Chunk.id)))).scalar()
        for start in range(0, len(documents), BATCH):
            session.execute(insert(Document), documents[start : start + BATCH])
        for start in range(0, len(chunks), BATCH):
            session.execute(insert(Chunk), chunks[start : start + BATCH])
        session.commit()
        rows = session.execute(
            sa_select(col(Chunk.id), col(Chunk.knowledge_base_id), col(Chunk.owner_id))
            .where(col(Chunk.id) > (last or 0))
            .order_by(col(Chunk.knowledge_base_id), col(Chunk.id))
        )
        return [Passage(int(row[0]), row[1], row[2]) for row in rows]


def _document(base: KnowledgeBase, count: int, now: Any) -> dict[str, Any]:
    return ready_document(base, count, now).model_dump()


def _chunk(document: dict[str, Any], ordinal: int) -> dict[str, Any]:
    passage = f"Passage {ordinal} of {document['title']}."
    return {
        "document_id": document["id"],
        "knowledge_base_id": document["knowledge_base_id"],
        "owner_id": document["owner_id"],
        "ordinal": ordinal,
        "text": passage,
        "page_start": ordinal + 1,
        "page_end": ordinal + 1,
        "heading": None,
        "char_start": 0,
        "char_end": len(passage),
    }


def tidy(engine: Engine) -> None:
    """On PostgreSQL, what autovacuum soon does after a bulk load: planner statistics."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE chunk, document, chunk_vector"))


# ==================== measures ====================


def unit_vectors(rng: np.random.Generator, count: int, dimensions: int) -> Matrix:
    """Random directions, uniform over the sphere."""
    matrix = rng.standard_normal((count, dimensions)).astype(np.float32)
    unit: Matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit


@dataclass
class Directions:
    """Where vectors point: uniformly anywhere, or near one of some topics' centres (as
    embeddings of passages on a few subjects do). Noise of norm about 1 around a unit
    centre puts a vector at cosine about 0.7 from its centre, 0.5 from its neighbours."""

    dimensions: int
    centres: Matrix | None

    def draw(self, rng: np.random.Generator, count: int) -> Matrix:
        if self.centres is None:
            return unit_vectors(rng, count, self.dimensions)
        picked = self.centres[rng.integers(0, len(self.centres), count)]
        noise = rng.standard_normal((count, self.dimensions)) / np.sqrt(self.dimensions)
        matrix = (picked + noise).astype(np.float32)
        unit: Matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        return unit


def store_vectors(
    engine: Engine,
    library: Library,
    passages: list[Passage],
    vectors: tuple[Directions, np.random.Generator],
    batch: int,
) -> float:
    """Stores a vector for each passage, `batch` at a time, each batch in its own
    transaction as the index job stores them; the seconds spent storing (the vectors
    are made outside)."""
    directions, rng = vectors
    seconds = 0.0
    for start in range(0, len(passages), batch):
        chunk = passages[start : start + batch]
        values = directions.draw(rng, len(chunk)).tolist()  # lists, as JSON hands them
        started = time.perf_counter()
        with Session(engine) as session:
            chunk_vector_crud.store(
                session=session, model=library.model, vectors=list(zip(chunk, values, strict=True))
            )
            session.commit()
        seconds += time.perf_counter() - started
    return seconds


def timed_searches(
    engine: Engine,
    library: Library,
    base: KnowledgeBase,
    queries: list[list[float]],
    budget: float,
) -> tuple[list[float], list[list[int]]]:
    """Milliseconds per search after WARM_UP untimed ones, for as many queries as
    `budget` seconds allow, and the passages each found."""
    source = library.source(base)
    samples: list[float] = []
    found: list[list[int]] = []
    deadline = time.monotonic() + budget
    for number, query in enumerate(queries):
        if number >= WARM_UP and time.monotonic() > deadline:
            break
        started = time.perf_counter()
        with Session(engine) as session:  # as the route: a session, the search, its answer
            hits = chunk_vector_crud.search(
                session=session,
                user=library.owner,
                sources=[source],
                query_vectors={library.model.id: query},
                limit=SEARCH_LIMIT,
            )
        if number >= WARM_UP:
            samples.append((time.perf_counter() - started) * 1000)
            found.append([hit.chunk_id for hit in hits])
    return samples, found


def recall(
    engine: Engine,
    library: Library,
    base: KnowledgeBase,
    queries: list[list[float]],
    found: list[list[int]],
) -> float:
    """Mean share of each query's exact 10 nearest (NumPy over the stored bytes) that its
    search found."""
    dimensions = library.model.dimensions or 0
    with engine.connect() as connection:
        rows = connection.execute(
            sa_select(col(ChunkVector.chunk_id), col(ChunkVector.vector)).where(
                col(ChunkVector.knowledge_base_id) == base.id,
                col(ChunkVector.model_id) == library.model.id,
            )
        ).all()
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    matrix = vector_ops.unpack_rows([row[1] for row in rows], dimensions)
    shares = []
    for query, hits in zip(queries, found, strict=False):
        scores = vector_ops.similarities(matrix, vector_ops.normalise(query))
        exact = {int(ids[i]) for i in vector_ops.best(scores, ids, SEARCH_LIMIT)}
        shares.append(len(exact & set(hits)) / len(exact))
    return statistics.fmean(shares) if shares else float("nan")


def index_build(engine: Engine, library: Library) -> float:
    """pgvector: seconds to build the model's HNSW index over the vectors already stored
    (a second index, dropped afterwards), as after a bulk load."""
    dimensions = library.model.dimensions or 0
    with engine.connect() as connection:
        connection.execute(text("SET LOCAL statement_timeout = 0"))
        connection.execute(text(f"SET LOCAL maintenance_work_mem = '{BUILD_MAINTENANCE_WORK_MEM}'"))
        started = time.perf_counter()
        connection.execute(
            text(
                f"CREATE INDEX {BUILD_INDEX} ON chunk_vector USING hnsw "
                f"((embedding::vector({int(dimensions)})) vector_cosine_ops) "
                f"WHERE model_id = '{uuid.UUID(str(library.model.id))}'"
            )
        )
        seconds = time.perf_counter() - started
        connection.execute(text(f"DROP INDEX {BUILD_INDEX}"))
        connection.commit()
    return seconds


def measure_path(
    path: str, config: Settings, workdir: Path, args: argparse.Namespace
) -> PathFigures:
    started = time.perf_counter()
    before = os.getloadavg()[0]
    with database(path, config, workdir, args) as engine:
        figures = PathFigures(path, engine_name(engine))
        print(f"{path}: {figures.engine}", flush=True)
        library = new_library(engine, args.dimensions)
        centres = (
            unit_vectors(np.random.default_rng(args.seed - 1), args.clusters, args.dimensions)
            if args.clusters
            else None
        )
        directions = Directions(args.dimensions, centres)
        vectors = (directions, np.random.default_rng(args.seed))
        queries = directions.draw(np.random.default_rng(args.seed + 1), WARM_UP + args.queries)
        for size in args.sizes:
            if path == "pgvector" and args.max_pgvector_size and size > args.max_pgvector_size:
                figures.skipped.append(size)
                continue
            figures.steps.append(
                measure_step(engine, library, vectors, queries.tolist(), size, args)
            )
        if path == "pgvector" and args.index_build and figures.steps:
            print("  index build after bulk load ...", end="", flush=True)
            seconds = index_build(engine, library)
            figures.index_build = (sum(library.sizes.values()), seconds)
            print(f" {seconds:.0f} s", flush=True)
    figures.load = (before, os.getloadavg()[0])
    figures.seconds = time.perf_counter() - started
    return figures


def measure_step(
    engine: Engine,
    library: Library,
    vectors: tuple[Directions, np.random.Generator],
    queries: list[list[float]],
    size: int,
    args: argparse.Namespace,
) -> Step:
    print(f"  {size:,} chunks: storing vectors ...", end="", flush=True)
    passages = fill(engine, library, size)
    store_seconds = store_vectors(engine, library, passages, vectors, args.store_batch)
    tidy(engine)
    print(f" {store_seconds:.0f} s; searching ...", end="", flush=True)
    started = time.perf_counter()
    big, found = timed_searches(engine, library, library.big, queries, args.case_seconds)
    small, _ = timed_searches(engine, library, library.small[0], queries, args.case_seconds)
    share = recall(engine, library, library.big, queries[WARM_UP:], found)
    print(f" {time.perf_counter() - started:.0f} s", flush=True)
    return Step(
        chunks=size,
        stored=len(passages),
        store_seconds=store_seconds,
        big_chunks=library.sizes[library.big.id],
        small_chunks=library.sizes[library.small[0].id],
        big=big,
        small=small,
        recall=share,
    )


# ==================== the run ====================


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.paths = _listed(parser, args.paths, PATHS)
    args.sizes = sorted({_size(parser, value) for value in args.sizes.split(",")})
    if "postgres" in args.paths and not args.postgres_admin_url:
        parser.error("the postgres path needs --postgres-admin-url")
    try:
        with scratch_directory("agentry-vectors-") as workdir:
            os.environ["DATA_DIR"] = str(workdir / "data")
            config = load_settings()
            print(machine(), flush=True)
            started = time.perf_counter()
            results = [measure_path(path, config, workdir, args) for path in args.paths]
            elapsed = time.perf_counter() - started
            print("\n".join(["", *report(results, args), "", f"{elapsed:.0f} s in all"]))
        return 0
    except KeyboardInterrupt:
        print("benchmark: interrupted", file=sys.stderr)
        return 130


def machine() -> str:
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"NumPy {np.__version__}, SQLite {sqlite3.sqlite_version}; load average {load}"
    )


def engine_name(engine: Engine) -> str:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        version = connection.execute(text("SHOW server_version")).scalar()
        buffers = connection.execute(text("SHOW shared_buffers")).scalar()
        pgvector = connection.execute(
            text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        ).scalar()
    extension = f"pgvector {pgvector}" if pgvector else "no pgvector"
    return f"PostgreSQL {version}, {extension}, shared_buffers {buffers}"


def report(results: list[PathFigures], args: argparse.Namespace) -> list[str]:
    lines = [
        f"semantic search, {args.dimensions} dimensions, limit {SEARCH_LIMIT}: "
        f"{_spread(args.clusters)}; "
        f"{BIG_SHARE:.0%} of the chunks in one knowledge base, the rest over "
        f"{SMALL_KNOWLEDGE_BASES}; store in batches of {args.store_batch}; "
        f"up to {args.queries} searches per case in {args.case_seconds} s",
    ]
    header = (
        f"  {'chunks':>8} {'store vec/s':>11}   {'big KB':>7} {'p50 ms':>8} {'p99 ms':>8} {'n':>4}"
        f"   {'small KB':>8} {'p50 ms':>8} {'p99 ms':>8} {'n':>4}   {'recall@10':>9}"
    )
    for figures in results:
        lines += [
            "",
            f"{figures.path}: {figures.engine} ({figures.seconds:.0f} s, "
            f"load average {figures.load[0]:.2f} before, {figures.load[1]:.2f} after)",
            header,
        ]
        for step in figures.steps:
            rate = step.stored / step.store_seconds if step.store_seconds else 0.0
            lines.append(
                f"  {step.chunks:>8,} {rate:>11,.0f}   {step.big_chunks:>7,}"
                f"{_percentiles(step.big)} {len(step.big):>4}   {step.small_chunks:>8,}"
                f"{_percentiles(step.small)} {len(step.small):>4}   {step.recall:>9.3f}"
            )
        if figures.skipped:
            skipped = ", ".join(f"{size:,}" for size in figures.skipped)
            lines.append(f"  skipped (over --max-pgvector-size): {skipped} chunks")
        if figures.index_build is not None:
            vectors, seconds = figures.index_build
            lines.append(
                f"  HNSW index build after bulk load: {vectors:,} vectors in {seconds:.1f} s "
                f"({vectors / seconds:,.0f} vec/s, maintenance_work_mem "
                f"{BUILD_MAINTENANCE_WORK_MEM})"
            )
    return lines


def _spread(clusters: int) -> str:
    if clusters:
        return f"vectors and queries near {clusters:,} random centres"
    return "uniform random vectors and queries"


def _percentiles(samples: list[float]) -> str:
    if not samples:
        return f" {'-':>8} {'-':>8}"
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f" {statistics.median(ordered):>8.1f} {p99:>8.1f}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.vectors",
        description="What storing vectors and semantic search cost on SQLite, PostgreSQL "
        "without pgvector (NumPy, exact) and PostgreSQL with pgvector (HNSW).",
    )
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated")
    parser.add_argument(
        "--postgres-admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="the postgres path creates a fresh database through this URL and drops it",
    )
    parser.add_argument(
        "--sizes", default="10000,100000", help="chunks in all, comma-separated, cumulative"
    )
    parser.add_argument(
        "--max-pgvector-size",
        type=at_least(0),
        default=0,
        help="skip the pgvector path's sizes above this (0: none skipped)",
    )
    parser.add_argument("--dimensions", type=at_least(2), default=384)
    parser.add_argument(
        "--store-batch",
        type=at_least(1),
        default=MAX_EMBED_BATCH,
        help="vectors per store call and transaction, as the index job",
    )
    parser.add_argument("--queries", type=at_least(1), default=50, help="per case")
    parser.add_argument(
        "--case-seconds",
        type=at_least(1),
        default=20,
        help="stop a case's searches after this long",
    )
    parser.add_argument(
        "--index-build",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pgvector: also time an HNSW build over the vectors stored",
    )
    parser.add_argument(
        "--clusters",
        type=at_least(0),
        default=0,
        help="vectors and queries near one of this many random centres (0: uniform)",
    )
    parser.add_argument("--seed", type=int, default=12)
    return parser


def _listed(parser: argparse.ArgumentParser, value: str, known: tuple[str, ...]) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        parser.error(f"--paths takes some of {', '.join(known)}")
    return names


def _size(parser: argparse.ArgumentParser, value: str) -> int:
    if not value.strip().isdigit() or int(value) < 1_000:
        parser.error(f"a size is a number of chunks, at least 1000: {value!r}")
    return int(value)


if __name__ == "__main__":
    sys.exit(main())
