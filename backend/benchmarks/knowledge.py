"""Knowledge bases: how fast documents are ingested, what a search costs at 10,000 and
100,000 passages, and how often search puts the passage that answers a question first.

    cd backend && uv run python -m benchmarks.knowledge                    # SQLite
    cd backend && uv run python -m benchmarks.knowledge \\
        --postgres-admin-url postgresql://postgres@127.0.0.1:5432/postgres

Everything runs through the code the API runs: extraction and chunking
(app.modules.documents), the ingestion service delivered inline as in the tests, and the
search service the search route calls. Text, questions and facts come from a fixed seed,
so the figures repeat on the same engine. See README.md for what each stage does.
"""

import argparse
import hashlib
import itertools
import random
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Engine, Select, column, func, insert, literal_column, table, text
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, delete

from app.core.config import Settings
from app.core.db import utcnow
from app.crud import chunk as chunk_crud
from app.models.document import Chunk, Document, DocumentStatus, SearchQuery
from app.models.knowledge_base import KnowledgeBase
from app.models.user import User
from app.modules.documents.chunking import chunk_document
from app.modules.documents.detect import CONTENT_TYPES, DocumentKind, detect_kind
from app.modules.documents.extract import extract
from app.modules.llm.client import LLMClient
from app.modules.storage import LocalStorage, Storage
from app.services.ingestion_service import IngestPolicy
from app.services.run_runtime import RunPolicy
from app.services.search_service import SearchService, search_words
from app.tasks.dispatch import InlineDispatcher
from benchmarks.scratch import at_least, engine_name, scratch_database, scratch_directory, stage
from tests.documents import make_pdf

T = TypeVar("T")
WARM_UP = 20
COUNTED_QUERIES = 50  # searches whose matching passages are counted (untimed)
BATCH = 2_000
SEARCH_LIMIT = 10  # the route's default
RECALL_AT = 5
KNOWLEDGE_BASES = 50
OWNERS = 2
CHUNKS_PER_DOCUMENT = (10, 70)

# ==================== text ====================

# Knowledge bases here have no embedding model: search never calls a provider.
NO_PROVIDERS = LLMClient(providers={})


def _listed(words: str) -> list[str]:
    return words.split()


# The most frequent English words, in about their order: every question holds some, and
# lexical search matches them too.
FUNCTION_WORDS = _listed("""the of and to a in is it you that he was for on are with as his they
be at one have this from or had by not but what some we can out other were all there when
up use your how said an each she which do their time if will way about many then them
would like so these her make see him two has more day could go come did no most my over
than who may down been now any new also after should where just only before must through
back much because under here same while those both between why again off very
still own last against into during without""")
# Words of the planted facts and their questions, among the frequent ones: they appear in
# the filler prose too, so no question is answered by a rare word it shares with a fact.
DOMAIN_WORDS = _listed("""vault code opens reactor runs degrees normal operation temperature
station founded year bridge metres long length span pump serviced service days interval
maintenance warehouse holds pallets capacity store flights flight leave gate board
inspector manages team charge leads hot old often report meeting letter minutes spring
repainted visited arrived filed late office north south river city plan budget week
morning evening engineer manager records visit project system water power street""")
_ONSETS = _listed("b c d f g h j l m n p r s t v w br cl dr fl gr pl pr sh st tr th ch sp")
_VOWELS = _listed("a e i o u ai ea ou ie oa")
_CODAS = ["", "", "n", "r", "s", "t", "l", "nd", "st", "m", "ck"]
_NAME_ONSETS = _listed("z x k q y zh kr vr")

FACTS: list[tuple[str, str, list[str]]] = [
    # (fact, the thing it is about, three questions: close, reworded, paraphrased)
    (
        "The {name} vault opens with code {number}.",
        "vault",
        [
            "Which code opens the {name} vault?",
            "What is the code for the vault called {name}?",
            "How do I get into {name}'s safe?",
        ],
    ),
    (
        "The {name} reactor runs at {number} degrees in normal operation.",
        "reactor",
        [
            "At what temperature does the {name} reactor run in normal operation?",
            "How many degrees does the reactor named {name} normally run at?",
            "What's the operating temperature of {name}?",
        ],
    ),
    (
        "{name} Station was founded in the year {year}.",
        "station",
        [
            "In which year was {name} Station founded?",
            "When was the station called {name} founded?",
            "How old is {name}?",
        ],
    ),
    (
        "The {name} bridge is {number} metres long.",
        "bridge",
        [
            "How long is the {name} bridge, in metres?",
            "What is the length of the bridge named {name}?",
            "How far does {name} span across the water?",
        ],
    ),
    (
        "The {name} pump must be serviced every {number} days.",
        "pump",
        [
            "How often must the {name} pump be serviced?",
            "What is the service interval of the pump called {name}?",
            "When is {name} due for maintenance?",
        ],
    ),
    (
        "The {name} warehouse holds {number} pallets.",
        "warehouse",
        [
            "How many pallets does the {name} warehouse hold?",
            "What is the pallet capacity of the warehouse named {name}?",
            "How much can {name} store?",
        ],
    ),
    (
        "Flights to {name} leave from gate {number}.",
        "flight",
        [
            "Which gate do flights to {name} leave from?",
            "From what gate does the flight to {name} leave?",
            "Where do I board for {name}?",
        ],
    ),
    (
        "Inspector {name} manages the {team} team.",
        "team",
        [
            "Who manages the {team} team?",
            "Which inspector is in charge of the team called {team}?",
            "Who leads {team}?",
        ],
    ),
]
PHRASINGS = ("close", "reworded", "paraphrased")
DISTRACTORS = [
    "A letter about {name} arrived on Monday.",
    "Nobody at the meeting had visited {name} before.",
    "The {name} {thing} was repainted last spring.",
    "The report on the {name} {thing} was filed late.",
]
QUESTION_OPENINGS = ["what", "how", "which", "where", "when", "why", "who", "is", "can", "does"]


class Corpus:
    """Prose and questions over one vocabulary whose word frequencies fall off like a
    natural language's (Zipf: the word of rank r about 1/r as frequent as the first)."""

    def __init__(self, rng: random.Random, size: int) -> None:
        self.rng = rng
        taken = set(FUNCTION_WORDS) | set(DOMAIN_WORDS)
        made: list[str] = []
        while len(made) < size - len(taken):
            word = _pseudo_word(rng, _ONSETS, rng.choice((1, 2, 2, 2, 3, 3)))
            if word not in taken:
                taken.add(word)
                made.append(word)
        # The domain words among the first few hundred ranks, spaced out.
        for index, word in enumerate(DOMAIN_WORDS):
            made.insert(20 + index * 5, word)
        self.words = FUNCTION_WORDS + made
        self.taken = taken
        self.cumulative = list(
            itertools.accumulate(1 / rank for rank in range(1, len(self.words) + 1))
        )
        # What questions ask about: ranks 100 to 3,000, as likely as they are frequent.
        end = min(size, 3_000)
        self.content_words = self.words[100:end]
        self.content_weights = [value - self.cumulative[99] for value in self.cumulative[100:end]]

    def prose(self, words: int) -> str:
        """`words` words of sentences of 6 to 20 words each."""
        drawn = self.rng.choices(self.words, cum_weights=self.cumulative, k=words)
        sentences = []
        start = 0
        while start < words:
            end = start + self.rng.randint(6, 20)
            sentence = drawn[start:end]
            sentences.append(" ".join([sentence[0].capitalize(), *sentence[1:]]) + ".")
            start = end
        return " ".join(sentences)

    def paragraphs(self, words: int) -> list[str]:
        """About `words` words in paragraphs of 40 to 120."""
        paragraphs = []
        while words > 0:
            size = min(words, self.rng.randint(40, 120))
            paragraphs.append(self.prose(size))
            words -= size
        return paragraphs

    def page(self) -> list[str]:
        """The paragraphs of a page of 250 to 450 words."""
        return self.paragraphs(self.rng.randint(250, 450))

    def question(self) -> str:
        """A question of 5 to 12 words as people type them: an opening word, frequent
        words, rarer ones, and sometimes a comma, quotes, a hyphen or an apostrophe."""
        rest = self.rng.randint(4, 11)
        common = self.rng.randint(rest // 3, (rest + 1) // 2)
        body = self.rng.choices(self.words[:150], k=common) + self.rng.choices(
            self.content_words, cum_weights=self.content_weights, k=rest - common
        )
        self.rng.shuffle(body)
        words = [self.rng.choice(QUESTION_OPENINGS).capitalize(), *body]
        mark = self.rng.random()
        if mark < 0.15:
            words[-2] += ","
        elif mark < 0.25:
            words[1:3] = [f'"{words[1]}', f'{words[2]}"']
        elif mark < 0.35:
            words[-2:] = [f"{words[-2]}-{words[-1]}"]
        elif mark < 0.45:
            words[-2] += "'s"
        return " ".join(words) + self.rng.choice("???.")

    def name(self) -> str:
        """A proper noun found nowhere else in the corpus."""
        while True:
            word = _pseudo_word(self.rng, _NAME_ONSETS, self.rng.choice((2, 3)))
            if word not in self.taken:
                self.taken.add(word)
                return word.capitalize()


def _pseudo_word(rng: random.Random, onsets: list[str], syllables: int) -> str:
    return "".join(
        rng.choice(onsets) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)
    )


# ==================== the database ====================


class TimedSessions:
    """The ingestion service's session factory, adding up the time its sessions are open:
    the database's share of an ingestion (the claim, then the passages and the status)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seconds = 0.0

    def __call__(self) -> Session:
        return _TimedSession(self, self.engine)


class _TimedSession(Session):
    def __init__(self, clock: TimedSessions, engine: Engine) -> None:
        super().__init__(engine, expire_on_commit=False)
        self.clock = clock
        self.opened = 0.0

    def __enter__(self) -> "_TimedSession":
        self.opened = time.perf_counter()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
        self.clock.seconds += time.perf_counter() - self.opened


def new_owner(session: Session, role: str) -> User:
    owner = User(email=f"{role}-{uuid.uuid4().hex[:8]}@example.com", hashed_password="-")  # noqa: S106
    session.add(owner)
    session.commit()
    return owner


def new_knowledge_base(session: Session, owner: User, name: str) -> KnowledgeBase:
    knowledge_base = KnowledgeBase(owner_id=owner.id, name=name)
    session.add(knowledge_base)
    session.commit()
    return knowledge_base


def queue_pdf(
    session: Session, knowledge_base: KnowledgeBase, storage: Storage, data: bytes, title: str
) -> Document:
    """A PDF as an upload leaves it: stored, and its document queued."""
    document = Document(
        knowledge_base_id=knowledge_base.id,
        owner_id=knowledge_base.owner_id,
        title=title,
        filename=f"{title}.pdf",
        content_type=CONTENT_TYPES[DocumentKind.PDF],
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        storage_key=storage.put(data),
    )
    session.add(document)
    session.commit()
    return document


def ingest_all(
    engine: Engine, config: Settings, storage: Storage, document_ids: list[uuid.UUID]
) -> tuple[float, float]:
    """Delivers each document to the ingestion service in this thread, as the tests do;
    the seconds it took, and the seconds of it spent in the database. Every document must
    end ready."""
    sessions = TimedSessions(engine)
    dispatcher = InlineDispatcher(
        llm=LLMClient(providers={}),
        storage=storage,
        policy=RunPolicy.from_settings(config),
        ingest_policy=IngestPolicy.from_settings(config),
        session_factory=sessions,
    )
    started = time.perf_counter()
    try:
        for document_id in document_ids:
            dispatcher.ingest(document_id)
    finally:
        dispatcher.close()
    seconds = time.perf_counter() - started
    with Session(engine) as session:
        for document_id in document_ids:
            document = session.get(Document, document_id)
            assert document is not None
            assert document.status == DocumentStatus.READY, document.error_code
    return seconds, sessions.seconds


def delete_owners(engine: Engine, owners: list[User]) -> None:
    """Their knowledge bases, documents and passages go too (cascades; on SQLite the
    triggers keep chunk_fts in step)."""
    with Session(engine) as session:
        session.execute(delete(User).where(col(User.id).in_([owner.id for owner in owners])))
        session.commit()


def chunk_total(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.execute(sa_select(func.count()).select_from(Chunk)).scalar_one())


# ==================== ingestion throughput ====================


@dataclass
class Ingestion:
    pages: int
    chunks: int
    extract_seconds: float  # extraction and chunking alone
    service_seconds: float  # the service end to end: claim, file, extraction, write
    database_seconds: float  # the service's time inside its database sessions


def measure_ingestion(
    engine: Engine, config: Settings, storage: Storage, corpus: Corpus, args: argparse.Namespace
) -> Ingestion:
    files = [
        make_pdf(["\n\n".join(corpus.page()) for _ in range(args.pdf_pages)])
        for _ in range(args.pdf_documents)
    ]
    limits = IngestPolicy.from_settings(config).limits
    extract(files[0], DocumentKind.PDF, limits)  # warm-up: the first parse loads modules
    started = time.perf_counter()
    chunks = 0
    for data in files:
        extracted = extract(data, detect_kind(data, "manual.pdf"), limits)
        chunks += len(chunk_document(extracted))
    extract_seconds = time.perf_counter() - started
    with Session(engine, expire_on_commit=False) as session:
        owner = new_owner(session, "ingestion")
        knowledge_base = new_knowledge_base(session, owner, "manuals")
        ids = [
            queue_pdf(session, knowledge_base, storage, data, f"manual {number}").id
            for number, data in enumerate(files)
        ]
    service_seconds, database_seconds = ingest_all(engine, config, storage, ids)
    assert chunk_total(engine) == chunks
    delete_owners(engine, [owner])
    return Ingestion(
        pages=len(files) * args.pdf_pages,
        chunks=chunks,
        extract_seconds=extract_seconds,
        service_seconds=service_seconds,
        database_seconds=database_seconds,
    )


# ==================== retrieval quality ====================


@dataclass
class Planted:
    document: int  # index of the document that holds it
    sentence: str
    questions: list[str]  # one per phrasing


@dataclass
class Quality:
    documents: int
    pages: int
    chunks: int
    facts: int
    ranks: dict[str, list[int | None]]  # per phrasing: the answer's rank, None if not found


def plant_facts(corpus: Corpus, documents: list[list[list[str]]], facts: int) -> list[Planted]:
    """Puts each fact in a random paragraph of a random page of its own document, and its
    subject's name in two other documents, in sentences that answer nothing."""
    rng = corpus.rng
    planted = []
    for index, holder in enumerate(rng.sample(range(len(documents)), facts)):
        fact, thing, questions = FACTS[index % len(FACTS)]
        values = {
            "name": corpus.name(),
            "team": corpus.name(),
            "number": str(rng.randint(100, 9_999)),
            "year": str(rng.randint(1850, 2015)),
        }
        sentence = fact.format(**values)
        _insert_sentence(rng, documents[holder], sentence)
        subject = values["team" if thing == "team" else "name"]
        others = [number for number in range(len(documents)) if number != holder]
        for other in rng.sample(others, 2):
            distractor = rng.choice(DISTRACTORS).format(name=subject, thing=thing)
            _insert_sentence(rng, documents[other], distractor)
        planted.append(Planted(holder, sentence, [q.format(**values) for q in questions]))
    return planted


def _insert_sentence(rng: random.Random, pages: list[list[str]], sentence: str) -> None:
    paragraphs = rng.choice(pages)
    index = rng.randrange(len(paragraphs))
    sentences = paragraphs[index].split(". ")
    sentences.insert(rng.randint(0, len(sentences) - 1), sentence.removesuffix("."))
    paragraphs[index] = ". ".join(sentences)


def measure_quality(
    engine: Engine, config: Settings, storage: Storage, corpus: Corpus, args: argparse.Namespace
) -> Quality:
    rng = corpus.rng
    documents = [
        [corpus.page() for _ in range(rng.randint(1, 5))] for _ in range(args.quality_documents)
    ]
    planted = plant_facts(corpus, documents, args.facts)
    with Session(engine, expire_on_commit=False) as session:
        owner = new_owner(session, "quality")
        knowledge_base = new_knowledge_base(session, owner, "library")
        ids = [
            queue_pdf(
                session,
                knowledge_base,
                storage,
                make_pdf(["\n\n".join(page) for page in pages]),
                f"report {number}",
            ).id
            for number, pages in enumerate(documents)
        ]
    ingest_all(engine, config, storage, ids)
    ranks: dict[str, list[int | None]] = {phrasing: [] for phrasing in PHRASINGS}
    with Session(engine) as session:
        for fact in planted:
            answers = _chunks_holding(session, ids[fact.document], fact.sentence)
            assert answers, f"no passage holds {fact.sentence!r} whole"
            for phrasing, question in zip(PHRASINGS, fact.questions, strict=True):
                results = SearchService.search(
                    session=session,
                    config=config,
                    llm=NO_PROVIDERS,
                    user=owner,
                    kb_id=knowledge_base.id,
                    query=SearchQuery(q=question, limit=SEARCH_LIMIT),
                )
                found = [hit.chunk_id in answers for hit in results.data]
                ranks[phrasing].append(found.index(True) + 1 if any(found) else None)
    quality = Quality(
        documents=len(documents),
        pages=sum(len(pages) for pages in documents),
        chunks=chunk_total(engine),
        facts=len(planted),
        ranks=ranks,
    )
    delete_owners(engine, [owner])
    return quality


def _chunks_holding(session: Session, document_id: uuid.UUID, sentence: str) -> set[int]:
    """The passages of the document that hold the sentence whole (overlap can make two)."""
    statement = sa_select(col(Chunk.id), col(Chunk.text)).where(
        col(Chunk.document_id) == document_id
    )
    return {
        chunk_id
        for chunk_id, passage in session.execute(statement)
        if sentence in " ".join(passage.split())
    }


# ==================== search latency ====================


@dataclass
class Latency:
    chunks: int
    inserted: int
    insert_seconds: float
    largest: int  # passages in the largest knowledge base
    spread: list[float]  # ms per search, each in a random knowledge base
    in_largest: list[float]  # ms per search in the largest knowledge base
    matched_in_kb: list[int]  # passages of its knowledge base a search ranked
    matched_in_table: list[int]  # passages of every knowledge base that hold a word


Search = tuple[User, KnowledgeBase, str]


def measure_search(
    engine: Engine, config: Settings, corpus: Corpus, args: argparse.Namespace
) -> list[Latency]:
    with Session(engine, expire_on_commit=False) as session:
        owners = [new_owner(session, f"search{number}") for number in range(OWNERS)]
        bases = [
            new_knowledge_base(session, owners[number % OWNERS], f"collection {number}")
            for number in range(KNOWLEDGE_BASES)
        ]
    by_id = {owner.id: owner for owner in owners}
    sizes = dict.fromkeys([base.id for base in bases], 0)
    questions = [corpus.question() for _ in range(WARM_UP + args.queries)]
    figures = []
    for target in (args.chunks // 10, args.chunks):
        plan = plan_documents(corpus.rng, bases, sizes, target)
        insert_seconds = fill(engine, config, corpus, plan, args.chunk_words)
        tidy(engine)
        filled = [base for base in bases if sizes[base.id]]
        largest = max(filled, key=lambda base: sizes[base.id])
        picks = random.Random(f"{args.seed}/{target}")
        spread = [
            (by_id[base.owner_id], base, q) for q in questions for base in [picks.choice(filled)]
        ]
        in_largest = [(by_id[largest.owner_id], largest, q) for q in questions[WARM_UP:]]
        timed_searches(engine, config, spread[:WARM_UP], args.case_seconds)
        figures.append(
            Latency(
                chunks=target,
                inserted=sum(count for _base, count in plan),
                insert_seconds=insert_seconds,
                largest=sizes[largest.id],
                spread=timed_searches(engine, config, spread[WARM_UP:], args.case_seconds),
                in_largest=timed_searches(
                    engine, config, in_largest[: args.largest_queries], args.case_seconds
                ),
                **count_matches(engine, spread[WARM_UP : WARM_UP + COUNTED_QUERIES]),
            )
        )
    return figures


def plan_documents(
    rng: random.Random, bases: list[KnowledgeBase], sizes: dict[uuid.UUID, int], target: int
) -> list[tuple[KnowledgeBase, int]]:
    """Documents of 10 to 70 passages until `target` passages in all, each in a knowledge
    base drawn so that a few are big and many small (the n-th gets about 1/n as many)."""
    weights = [1 / rank for rank in range(1, len(bases) + 1)]
    plan = []
    total = sum(sizes.values())
    while total < target:
        base = rng.choices(bases, weights=weights)[0]
        count = min(rng.randint(*CHUNKS_PER_DOCUMENT), target - total)
        plan.append((base, count))
        sizes[base.id] += count
        total += count
    return plan


def ready_document(base: KnowledgeBase, pages: int, now: datetime) -> Document:
    """A ready document of `pages` pages (a passage each) as bulk seeding writes it: no
    stored file, a made-up content hash."""
    return Document(
        knowledge_base_id=base.id,
        owner_id=base.owner_id,
        title=f"document {uuid.uuid4().hex[:8]}",
        filename="document.pdf",
        content_type=CONTENT_TYPES[DocumentKind.PDF],
        size_bytes=pages * 4_000,
        sha256=secrets.token_hex(32),
        storage_key=f"sha256/00/{secrets.token_hex(32)}",
        status=DocumentStatus.READY,
        page_count=pages,
        chunk_count=pages,
        processed_at=now,
    )


def fill(
    engine: Engine,
    config: Settings,
    corpus: Corpus,
    plan: list[tuple[KnowledgeBase, int]],
    words: int,
) -> float:
    """Inserts a ready document per planned entry and its passages, in batches as one
    bulk load would; the seconds spent in the database (the text is made outside)."""
    rng = corpus.rng
    now = utcnow()
    documents = [ready_document(base, count, now) for base, count in plan]
    seconds = 0.0
    with Session(engine) as session:
        started = time.perf_counter()
        for start in range(0, len(documents), BATCH):
            rows = [document.model_dump() for document in documents[start : start + BATCH]]
            session.execute(insert(Document), rows)
        session.commit()
        seconds += time.perf_counter() - started
        chunks = _chunk_rows(corpus, rng, documents, words)
        while batch := list(itertools.islice(chunks, BATCH)):
            started = time.perf_counter()
            session.execute(insert(Chunk), batch)
            # PostgreSQL's stored vectors, as ingestion writes them.
            chunk_crud.write_search_vectors(
                session=session,
                document_ids=list({row["document_id"] for row in batch}),
                language=config.SEARCH_LANGUAGE,
            )
            session.commit()
            seconds += time.perf_counter() - started
    return seconds


def _chunk_rows(
    corpus: Corpus, rng: random.Random, documents: list[Document], words: int
) -> Iterator[dict[str, Any]]:
    for document in documents:
        offset = 0
        for ordinal in range(document.chunk_count or 0):
            passage = corpus.prose(rng.randint(words * 45 // 100, words * 155 // 100))
            yield {
                "document_id": document.id,
                "knowledge_base_id": document.knowledge_base_id,
                "owner_id": document.owner_id,
                "ordinal": ordinal,
                "text": passage,
                "page_start": ordinal + 1,
                "page_end": ordinal + 1,
                "heading": None,
                "char_start": offset,
                "char_end": offset + len(passage),
            }
            offset += len(passage) + 2


def tidy(engine: Engine) -> None:
    """On PostgreSQL, what autovacuum would soon do after a bulk load: planner statistics,
    and the GIN index's pending entries merged. SQLite has nothing to catch up."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE chunk, document, knowledge_base"))


def timed_searches(
    engine: Engine, config: Settings, searches: list[Search], budget: float
) -> list[float]:
    """Milliseconds per search, for as many of `searches` as `budget` seconds allow."""
    samples: list[float] = []
    deadline = time.monotonic() + budget
    for user, base, question in searches:
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        with Session(engine) as session:  # as the route: a session, the service, its answer
            SearchService.search(
                session=session,
                config=config,
                llm=NO_PROVIDERS,
                user=user,
                kb_id=base.id,
                query=SearchQuery(q=question, limit=SEARCH_LIMIT),
            )
        samples.append((time.perf_counter() - started) * 1000)
    return samples


_FTS = table("chunk_fts", column("rowid"))
_FTS_MATCH: Any = literal_column("chunk_fts")
_PG_CONFIG: Any = literal_column("'simple'::regconfig")


def count_matches(engine: Engine, searches: list[Search]) -> dict[str, list[int]]:
    """How many passages each search ranked (those of its knowledge base holding any of
    its words) and how many the full-text index matched in the whole table."""
    in_kb, in_table = [], []
    with Session(engine) as session:
        for _user, base, question in searches:
            everywhere = _matching(engine.dialect.name, search_words(question))
            mine = everywhere.where(col(Chunk.knowledge_base_id) == base.id)
            in_kb.append(int(session.execute(mine).scalar_one()))
            in_table.append(int(session.execute(everywhere).scalar_one()))
    return {"matched_in_kb": in_kb, "matched_in_table": in_table}


def _matching(dialect: str, words: list[str]) -> Select[Any]:
    if dialect == "sqlite":
        return (
            sa_select(func.count())
            .select_from(_FTS)
            .join(Chunk, col(Chunk.id) == _FTS.c.rowid)
            .where(_FTS_MATCH.op("MATCH")(chunk_crud.fts5_query(words)))
        )
    vector = func.to_tsvector(_PG_CONFIG, col(Chunk.text))
    query = func.to_tsquery(_PG_CONFIG, chunk_crud.tsquery(words))
    return sa_select(func.count()).select_from(Chunk).where(vector.op("@@")(query))


# ==================== the run ====================


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.database_url and args.postgres_admin_url:
        parser.error("give --database-url or --postgres-admin-url, not both")
    if args.facts > args.quality_documents - 2:
        parser.error("--facts must be at most --quality-documents - 2")
    if args.largest_queries > args.queries:
        parser.error("--largest-queries must be at most --queries")
    try:
        with (
            scratch_directory("agentry-knowledge-") as workdir,
            scratch_database(
                workdir,
                database_url=args.database_url,
                postgres_admin_url=args.postgres_admin_url,
            ) as (config, engine),
        ):
            print(run(engine, config, LocalStorage(workdir / "files"), args))
        return 0
    except KeyboardInterrupt:
        print("benchmark: interrupted", file=sys.stderr)
        return 130


def run(engine: Engine, config: Settings, storage: Storage, args: argparse.Namespace) -> str:
    corpus = Corpus(random.Random(args.seed), args.vocabulary)
    print(f"{engine_name(engine)}, seed {args.seed}", flush=True)
    started = time.perf_counter()
    ingestion = stage(
        f"ingestion: {args.pdf_documents} PDFs of {args.pdf_pages} pages",
        lambda: measure_ingestion(engine, config, storage, corpus, args),
    )
    quality = stage(
        f"retrieval quality: {args.quality_documents} documents, {args.facts} facts",
        lambda: measure_quality(engine, config, storage, corpus, args),
    )
    latencies = stage(
        f"search latency: {args.chunks // 10:,} then {args.chunks:,} chunks",
        lambda: measure_search(engine, config, corpus, args),
    )
    elapsed = time.perf_counter() - started
    return "\n".join(
        [
            "",
            *ingestion_table(ingestion, args),
            "",
            *latency_table(latencies),
            "",
            *quality_table(quality),
            "",
            f"{engine_name(engine)}, seed {args.seed}, {elapsed:.0f} s in all",
        ]
    )


def ingestion_table(figures: Ingestion, args: argparse.Namespace) -> list[str]:
    def row(name: str, seconds: float) -> str:
        pages, chunks = figures.pages / seconds, figures.chunks / seconds
        return f"  {name:<34} {pages:>9,.0f} pages/s {chunks:>9,.0f} chunks/s {seconds:>7.2f} s"

    return [
        f"ingestion: {args.pdf_documents} PDFs x {args.pdf_pages} pages = {figures.pages:,} "
        f"pages, {figures.chunks:,} chunks",
        row("extraction + chunking", figures.extract_seconds),
        row("database write (claim, passages)", figures.database_seconds),
        row("ingestion service, end to end", figures.service_seconds),
    ]


def latency_table(figures: list[Latency]) -> list[str]:
    lines = [
        f"search latency, ms (the search service, limit {SEARCH_LIMIT}; "
        f"{KNOWLEDGE_BASES} knowledge bases of {OWNERS} owners)",
        f"  {'':<38} {'p50':>7} {'p95':>7} {'p99':>7} {'mean':>7}   matched (median)",
    ]
    for latency in figures:
        kb = statistics.median(latency.matched_in_kb)
        everywhere = statistics.median(latency.matched_in_table)
        spread = f"{latency.chunks:,} chunks, {len(latency.spread)} over the KBs"
        largest = f"{latency.chunks:,} chunks, {len(latency.in_largest)} in the largest KB"
        lines += [
            f"  {spread:<38}{_percentiles(latency.spread)}   {kb:,.0f} in its KB, "
            f"{everywhere:,.0f} in all",
            f"  {largest:<38}{_percentiles(latency.in_largest)}   "
            f"(it holds {latency.largest:,} chunks)",
        ]
    inserts = ", ".join(
        f"{latency.inserted:,} in {latency.insert_seconds:.1f} s" for latency in figures
    )
    lines.append(f"  bulk insert, index upkeep included: {inserts}")
    return lines


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))]

    figures = (statistics.median(ordered), at(0.95), at(0.99), statistics.fmean(ordered))
    return "".join(f" {value:>7.1f}" for value in figures)


def quality_table(figures: Quality) -> list[str]:
    lines = [
        f"retrieval quality: {figures.documents} documents ({figures.pages:,} pages, "
        f"{figures.chunks:,} chunks), {figures.facts} planted facts, one question per "
        "fact and phrasing",
        f"  {'questions':<24} {'recall@1':>9} {'recall@5':>9} {'MRR@10':>9}",
    ]
    everything = [rank for ranks in figures.ranks.values() for rank in ranks]
    for name, ranks in [*figures.ranks.items(), ("all", everything)]:
        at_1 = sum(rank == 1 for rank in ranks) / len(ranks)
        at_5 = sum(rank is not None and rank <= RECALL_AT for rank in ranks) / len(ranks)
        mrr = sum(1 / rank for rank in ranks if rank is not None) / len(ranks)
        lines.append(f"  {name + f' ({len(ranks)})':<24} {at_1:>9.2f} {at_5:>9.2f} {mrr:>9.3f}")
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.knowledge",
        description="Ingestion throughput, search latency at 10k and 100k passages, and "
        "retrieval quality, through the services the API runs.",
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
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--vocabulary", type=at_least(3_000), default=4_000, help="words")
    parser.add_argument("--pdf-documents", type=at_least(1), default=20)
    parser.add_argument("--pdf-pages", type=at_least(1), default=50, help="pages per PDF")
    parser.add_argument(
        "--chunks", type=at_least(700), default=100_000, help="measured at a tenth and all"
    )
    parser.add_argument(
        "--chunk-words", type=at_least(10), default=270, help="mean words per chunk"
    )
    parser.add_argument("--queries", type=at_least(COUNTED_QUERIES), default=300)
    parser.add_argument("--largest-queries", type=at_least(1), default=100)
    parser.add_argument(
        "--case-seconds",
        type=at_least(1),
        default=40,
        help="stop a latency case's searches after this long (PostgreSQL is slow)",
    )
    parser.add_argument("--quality-documents", type=at_least(3), default=300)
    parser.add_argument("--facts", type=at_least(1), default=100)
    return parser


if __name__ == "__main__":
    sys.exit(main())
