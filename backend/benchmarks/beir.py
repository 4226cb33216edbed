"""BEIR-format retrieval datasets: reading one, making one, and scoring a ranking.

A BEIR dataset is a directory of `corpus.jsonl` (`{"_id", "title", "text"}` a line),
`queries.jsonl` (`{"_id", "text"}`) and `qrels/<split>.tsv` (`query-id`, `corpus-id`,
`score`, tab-separated, with a header; a score above 0 is relevant, higher more so).
SciFact, the one whose BM25 figure retrieval.py prints beside its own, is at
https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip.

The metrics are the usual ones (as BEIR computes them with pytrec_eval): nDCG@k with the
judged score as the gain and log2(rank + 1) as the discount, over the ideal ordering of
the query's judgements; recall@k, the share of a query's relevant documents in its
first k; MRR@k, the reciprocal rank of its first relevant document within k, else 0.
Every kept query counts, one that found nothing with zeros.
"""

import csv
import json
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Qrels = dict[str, dict[str, int]]  # query id -> document id -> judged score


@dataclass
class BeirDocument:
    id: str
    title: str
    text: str


@dataclass
class Dataset:
    name: str
    documents: list[BeirDocument]
    queries: dict[str, str]  # id -> text, in the file's order
    qrels: Qrels  # of the kept queries only
    corpus_size: int  # documents in corpus.jsonl, kept or not
    query_total: int  # queries of the split with a relevant document, kept or not


# ==================== reading ====================


def read_dataset(
    path: Path, *, split: str = "test", max_queries: int | None = None, max_docs: int | None = None
) -> Dataset:
    """The split's queries that have a relevant document (the first `max_queries` of them
    in queries.jsonl's order), and the corpus: every document judged for a kept query,
    then others in the file's order up to `max_docs` in all."""
    qrels = read_qrels(path / "qrels" / f"{split}.tsv")
    judged_queries = [
        (query_id, text)
        for query_id, text in _read_queries(path / "queries.jsonl")
        if any(score > 0 for score in qrels.get(query_id, {}).values())
    ]
    kept = dict(judged_queries[:max_queries] if max_queries else judged_queries)
    kept_qrels = {query_id: qrels[query_id] for query_id in kept}
    judged = {doc_id for judgements in kept_qrels.values() for doc_id in judgements}
    documents: list[BeirDocument] = []
    others = 0
    corpus_size = 0
    for document in _read_corpus(path / "corpus.jsonl"):
        corpus_size += 1
        if document.id in judged:
            documents.append(document)
        elif max_docs is None or len(judged) + others < max_docs:
            documents.append(document)
            others += 1
    return Dataset(
        name=path.resolve().name,
        documents=documents,
        queries=kept,
        qrels=kept_qrels,
        corpus_size=corpus_size,
        query_total=len(judged_queries),
    )


def read_qrels(path: Path) -> Qrels:
    qrels: Qrels = {}
    with path.open(newline="", encoding="utf-8") as file:
        rows = csv.reader(file, delimiter="\t")
        for row in rows:
            if not row or row[0] == "query-id":  # the header
                continue
            query_id, doc_id, score = row[0], row[1], int(row[2])
            qrels.setdefault(query_id, {})[doc_id] = score
    return qrels


def _read_queries(path: Path) -> Iterator[tuple[str, str]]:
    for line in _lines(path):
        row = json.loads(line)
        yield str(row["_id"]), str(row["text"])


def _read_corpus(path: Path) -> Iterator[BeirDocument]:
    for line in _lines(path):
        row = json.loads(line)
        yield BeirDocument(str(row["_id"]), str(row.get("title") or ""), str(row["text"]))


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as file:
        for line in file:
            if line.strip():
                yield line


# ==================== metrics ====================


def ndcg(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    gained = sum(
        judged.get(doc_id, 0) / math.log2(rank + 1)
        for rank, doc_id in enumerate(ranked[:k], start=1)
        if judged.get(doc_id, 0) > 0
    )
    ideal = sorted((score for score in judged.values() if score > 0), reverse=True)[:k]
    best = sum(score / math.log2(rank + 1) for rank, score in enumerate(ideal, start=1))
    return gained / best if best else 0.0


def recall(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    relevant = {doc_id for doc_id, score in judged.items() if score > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def reciprocal_rank(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    for rank, doc_id in enumerate(ranked[:k], start=1):
        if judged.get(doc_id, 0) > 0:
            return 1 / rank
    return 0.0


@dataclass
class Scores:
    ndcg_10: float
    recall_10: float
    recall_100: float
    mrr_10: float


def score(rankings: Mapping[str, Sequence[str]], qrels: Qrels) -> Scores:
    """Means over every query of `qrels`; a query missing from `rankings` scores 0."""
    count = len(qrels)
    if count == 0:
        return Scores(0.0, 0.0, 0.0, 0.0)

    def mean(metric: str, k: int) -> float:
        total = 0.0
        for query_id, judged in qrels.items():
            ranked = rankings.get(query_id, [])
            total += _METRICS[metric](ranked, judged, k)
        return total / count

    return Scores(mean("ndcg", 10), mean("recall", 10), mean("recall", 100), mean("mrr", 10))


_METRICS = {"ndcg": ndcg, "recall": recall, "mrr": reciprocal_rank}


# ==================== a generated dataset ====================


@dataclass(frozen=True)
class Kind:
    noun: str
    fact: str  # answers the question (judged 2)
    restated: str  # answers it in other words, in another document (judged 1)
    questions: tuple[str, str, str]  # close, reworded, paraphrased
    context: tuple[str, ...]  # sentences about the thing that answer nothing


KINDS = (
    Kind(
        "vault",
        "The {name} vault opens with code {number}.",
        "Staff were told that {number} is the combination of the {name} strongroom.",
        (
            "Which code opens the {name} vault?",
            "What is the code for the vault called {name}?",
            "What combination unlocks {name}'s safe?",
        ),
        (
            "The {name} vault was moved to the basement in the spring.",
            "Two guards watch the {name} vault at night.",
            "The door of the {name} vault was repainted last year.",
            "Visitors to the {name} vault must sign the register.",
        ),
    ),
    Kind(
        "reactor",
        "The {name} reactor runs at {number} degrees in normal operation.",
        "Engineers keep the {name} core near {number} degrees on an ordinary day.",
        (
            "At what temperature does the {name} reactor run in normal operation?",
            "How many degrees does the reactor named {name} normally run at?",
            "How hot does {name} get during routine use?",
        ),
        (
            "The {name} reactor was shut down for an inspection in May.",
            "A new control room was built next to the {name} reactor.",
            "The {name} reactor is run by a team of twelve operators.",
            "The report on the {name} reactor was filed late.",
        ),
    ),
    Kind(
        "station",
        "{name} Station was founded in the year {number}.",
        "The first train stopped at {name} Station in {number}, the year it opened.",
        (
            "In which year was {name} Station founded?",
            "When was the station called {name} founded?",
            "How old is the {name} railway stop?",
        ),
        (
            "{name} Station has four platforms and a small cafe.",
            "The roof of {name} Station leaks when it rains.",
            "Commuters at {name} Station complained about the timetable.",
            "A new ticket office opened at {name} Station.",
        ),
    ),
    Kind(
        "bridge",
        "The {name} bridge is {number} metres long.",
        "Walking across the {name} crossing means covering about {number} metres.",
        (
            "How long is the {name} bridge, in metres?",
            "What is the length of the bridge named {name}?",
            "How far does the {name} span reach from bank to bank?",
        ),
        (
            "The {name} bridge was closed to lorries after the storm.",
            "Tourists take photographs from the {name} bridge at sunset.",
            "The {name} bridge was repainted green last spring.",
            "A letter about the {name} bridge arrived on Monday.",
        ),
    ),
    Kind(
        "pump",
        "The {name} pump must be serviced every {number} days.",
        "Mechanics check the {name} pump on a {number}-day maintenance cycle.",
        (
            "How often must the {name} pump be serviced?",
            "What is the service interval of the pump called {name}?",
            "When is {name} due for its next overhaul?",
        ),
        (
            "The {name} pump moves water from the river to the reservoir.",
            "The {name} pump was made by a firm in the north.",
            "Nobody at the meeting had seen the {name} pump before.",
            "The {name} pump is painted blue and sits in a shed.",
        ),
    ),
    Kind(
        "warehouse",
        "The {name} warehouse holds {number} pallets.",
        "When full, the {name} depot stores {number} pallets of goods.",
        (
            "How many pallets does the {name} warehouse hold?",
            "What is the pallet capacity of the warehouse named {name}?",
            "How much stock fits in the {name} storage building?",
        ),
        (
            "The {name} warehouse is open from six in the morning.",
            "Trucks leave the {name} warehouse every hour.",
            "The {name} warehouse was sold to a new owner.",
            "A fire drill was held at the {name} warehouse.",
        ),
    ),
    Kind(
        "flight",
        "Flights to {name} leave from gate {number}.",
        "Passengers travelling to {name} board their plane at gate {number}.",
        (
            "Which gate do flights to {name} leave from?",
            "From what gate does the flight to {name} leave?",
            "Where do I get on the plane for {name}?",
        ),
        (
            "Flights to {name} were delayed by fog on Friday.",
            "The airline added a second daily flight to {name}.",
            "Tickets to {name} are cheaper in the winter.",
            "The flight to {name} takes about three hours.",
        ),
    ),
    Kind(
        "team",
        "Inspector {number} manages the {name} team.",
        "The {name} group reports to Inspector {number}.",
        (
            "Who manages the {name} team?",
            "Which inspector is in charge of the team called {name}?",
            "Who is the boss of {name}?",
        ),
        (
            "The {name} team meets every Tuesday morning.",
            "The {name} team moved to a larger office.",
            "Members of the {name} team wrote the annual report.",
            "The {name} team won an award for safety.",
        ),
    ),
)
PHRASINGS = ("close", "reworded", "paraphrased")
_SUBJECTS = (
    "The committee",
    "The city council",
    "Local engineers",
    "The board",
    "A visiting inspector",
    "The night shift",
    "Our office",
    "The regional manager",
    "Several residents",
    "The auditors",
)
_VERBS = (
    "reviewed",
    "discussed",
    "approved",
    "postponed",
    "questioned",
    "praised",
    "rewrote",
    "published",
    "rejected",
    "summarised",
)
_OBJECTS = (
    "the annual budget",
    "a new safety plan",
    "the spring timetable",
    "the pump schedule",
    "the bridge repairs",
    "the gate assignments",
    "the access codes",
    "the reactor inspection",
    "the warehouse inventory",
    "the station timetable",
    "the team rota",
    "the maintenance records",
    "the temperature logs",
    "the length of the meeting",
    "the flight plans",
)
_WHEN = (
    "in March",
    "after a long debate",
    "last week",
    "without comment",
    "on Tuesday",
    "before the holidays",
    "at short notice",
    "in a brief letter",
    "during the evening session",
    "for the second time",
)
_SURNAMES = (
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Ferreira",
    "Novak",
    "Haddad",
    "Kowalski",
    "Brennan",
    "Achterberg",
    "Sato",
    "Mbeki",
    "Castillo",
    "Olsen",
    "Petrov",
    "Quinn",
)
_TITLES = ("The {name} {noun}", "About the {name} {noun}", "{name} {noun} notes", "{name}")
_ONSETS = "b c d f g h k l m n p r s t v z br dr gr kr pr st tr"
_VOWELS = "a e i o u ai ou ei"
_CODAS = ("", "", "n", "r", "s", "l", "k", "nd", "m")
DOCUMENTS_PER_THING = 5


def generate(directory: Path, *, documents: int, queries: int, seed: int) -> None:
    """Writes a BEIR dataset to `directory`: things (a bridge, a pump...) with made-up
    names, five documents each, of which one holds a fact about it (judged 2), half the
    time another restates it in other words (judged 1), and the others say only things
    that answer nothing. Each query asks for one fact, phrased close to it, reworded, or
    paraphrased (few words in common but the name), in turn. The name is in every
    document of its thing, so words alone must tell the fact's document from the
    others. Deterministic for a seed."""
    rng = random.Random(seed)
    things = documents // DOCUMENTS_PER_THING
    if not 1 <= queries <= things:
        raise ValueError(f"queries must be 1 to {things} for {documents} documents")
    names = _names(rng, things)
    rows: list[tuple[str, str, str, int]] = []  # title, text, thing's name, judged score
    facts: list[tuple[Kind, dict[str, str]]] = []
    for name in names:
        kind = rng.choice(KINDS)
        values = {"name": name, "number": str(rng.randint(100, 9_999))}
        if kind.noun == "station":
            values["number"] = str(rng.randint(1850, 2015))
        elif kind.noun == "team":
            values["number"] = rng.choice(_SURNAMES)
        facts.append((kind, values))
        restated = rng.random() < 0.5
        for part in range(DOCUMENTS_PER_THING):
            # The name as often in each: its count tells no document from the others.
            sentences = [s.format(**values) for s in rng.sample(kind.context, 2)]
            score = 0
            if part == 0:
                sentences[1] = kind.fact.format(**values)
                score = 2
            elif part == 1 and restated:
                sentences[1] = kind.restated.format(**values)
                score = 1
            sentences += [_filler(rng) for _ in range(rng.randint(3, 7))]
            rng.shuffle(sentences)
            title = rng.choice(_TITLES).format(name=name, noun=kind.noun)
            rows.append((title, " ".join(sentences), name, score))
    rng.shuffle(rows)
    doc_ids = {}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "qrels").mkdir(exist_ok=True)
    with (directory / "corpus.jsonl").open("w", encoding="utf-8") as corpus:
        for number, (title, text, name, score) in enumerate(rows):
            doc_id = f"d{number:05d}"
            if score:
                doc_ids[(name, score)] = doc_id
            corpus.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    asked = rng.sample(range(things), queries)
    with (
        (directory / "queries.jsonl").open("w", encoding="utf-8") as out,
        (directory / "qrels" / "test.tsv").open("w", encoding="utf-8") as judgements,
    ):
        judgements.write("query-id\tcorpus-id\tscore\n")
        for number, index in enumerate(asked):
            kind, values = facts[index]
            query_id = f"q{number:04d}"
            text = kind.questions[number % len(PHRASINGS)].format(**values)
            out.write(json.dumps({"_id": query_id, "text": text}) + "\n")
            for score in (2, 1):
                if (values["name"], score) in doc_ids:
                    doc_id = doc_ids[(values["name"], score)]
                    judgements.write(f"{query_id}\t{doc_id}\t{score}\n")


def phrasing_of(query_id: str) -> str:
    """The phrasing of a generated query, from its id."""
    return PHRASINGS[int(query_id.removeprefix("q")) % len(PHRASINGS)]


def _filler(rng: random.Random) -> str:
    parts = (_SUBJECTS, _VERBS, _OBJECTS, _WHEN)
    return " ".join(rng.choice(words) for words in parts) + "."


def _names(rng: random.Random, count: int) -> list[str]:
    onsets, vowels = _ONSETS.split(), _VOWELS.split()
    names: dict[str, None] = {}
    while len(names) < count:
        syllables = rng.choice((2, 2, 3))
        word = "".join(
            rng.choice(onsets) + rng.choice(vowels) + rng.choice(_CODAS) for _ in range(syllables)
        )
        names.setdefault(word.capitalize())
    return list(names)
