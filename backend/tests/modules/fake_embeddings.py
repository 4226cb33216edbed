"""Deterministic embeddings that know a little about meaning, for retrieval tests.

`embed_text(text, dimensions)` reads a text as a bag of concepts:

1. lower-case it and split it into words (runs of letters and digits);
2. drop a small set of English function words ("the", "of", "is", ...);
3. map each word to a concept through `SYNONYMS` ("automobile", "cars" and "vehicle" are
   all the concept "car"), after a crude suffix-stripping ("refunds", "refunding" ->
   "refund"); a word outside the table is its own concept, stemmed the same way;
4. add, for every concept occurrence, a signed 1 into a few of the `dimensions` buckets
   chosen by blake2b of the concept (stable across processes, unlike `hash()`);
5. scale the sum to unit length.

So two texts that share concepts ("refund for the automobile" / "reimbursement of the
car") have a cosine near 1, and texts with no concept in common a cosine near 0 (not
exactly 0: concepts can share a bucket, more often with few dimensions). A text with no
concept at all (empty, or only function words) gets one fixed unit vector.
"""

import hashlib
import math
import re
from collections.abc import Mapping

# Concept -> the words that express it; tests pick two words of a group for a paraphrase.
SYNONYMS: Mapping[str, tuple[str, ...]] = {
    "car": ("car", "automobile", "vehicle", "auto"),
    "doctor": ("doctor", "physician", "medic", "clinician"),
    "buy": ("buy", "bought", "purchase", "acquire"),
    "sell": ("sell", "sold", "vend"),
    "refund": ("refund", "reimburse", "reimbursement", "repayment", "repay"),
    "price": ("price", "cost", "fee", "charge"),
    "money": ("money", "cash", "funds", "currency"),
    "house": ("house", "home", "residence", "dwelling"),
    "big": ("big", "large", "huge", "enormous"),
    "small": ("small", "little", "tiny", "minor"),
    "fast": ("fast", "quick", "rapid", "speedy"),
    "happy": ("happy", "glad", "joyful", "cheerful"),
    "sad": ("sad", "unhappy", "sorrowful", "gloomy"),
    "begin": ("begin", "start", "commence", "launch"),
    "finish": ("finish", "end", "conclude", "terminate"),
    "help": ("help", "assist", "aid", "support"),
    "error": ("error", "mistake", "fault", "bug"),
    "fix": ("fix", "repair", "mend", "resolve"),
    "employee": ("employee", "worker", "staff", "personnel"),
    "manager": ("manager", "boss", "supervisor"),
    "company": ("company", "firm", "business", "corporation", "enterprise"),
    "customer": ("customer", "client", "buyer", "shopper"),
    "booking": ("booking", "reservation", "order"),
    "deliver": ("deliver", "delivery", "shipment", "shipping", "dispatch"),
    "parcel": ("parcel", "package"),
    "travel": ("travel", "journey", "trip", "voyage"),
    "airplane": ("airplane", "plane", "aircraft", "jet"),
    "hotel": ("hotel", "inn", "lodging", "accommodation"),
    "food": ("food", "meal", "cuisine", "dish"),
    "eat": ("eat", "ate", "eaten", "consume", "dine"),
    "drink": ("drink", "beverage"),
    "illness": ("illness", "disease", "sickness", "ailment"),
    "medicine": ("medicine", "medication", "drug", "remedy"),
    "hospital": ("hospital", "clinic"),
    "child": ("child", "children", "kid", "youngster"),
    "law": ("law", "statute", "regulation", "legislation"),
    "contract": ("contract", "agreement", "deal"),
    "password": ("password", "passphrase", "passcode", "credentials"),
    "email": ("email", "mail", "inbox"),
    "phone": ("phone", "telephone", "mobile", "cellphone"),
    "computer": ("computer", "pc", "laptop", "desktop"),
    "cancel": ("cancel", "revoke", "annul", "rescind"),
    "delete": ("delete", "remove", "erase"),
    "create": ("create", "make", "build", "construct"),
    "question": ("question", "query", "inquiry"),
    "answer": ("answer", "reply", "response", "respond"),
    "rain": ("rain", "rainfall", "downpour", "drizzle"),
    "dog": ("dog", "puppy", "hound", "canine"),
    "cat": ("cat", "kitten", "feline"),
    "warranty": ("warranty", "guarantee"),
    "broken": ("broken", "damaged", "defective", "faulty"),
    "salary": ("salary", "wage", "pay", "paycheck", "earnings"),
    "vacation": ("vacation", "holiday", "furlough"),
    "meeting": ("meeting", "conference", "appointment"),
}

_STOP_WORDS = """
a an the and or but nor of to in on at for with by from as into about over under
is are was were be been being am it its this that these those there here
i you he she we they me him her us them my your his our their
do does did have has had can could will would should shall may might must
what which who whom when where why how
if then than so not no yes all any some more most very just also too
get got want need please
"""
STOP_WORDS = frozenset(_STOP_WORDS.split())

_WORD = re.compile(r"[a-z0-9]+")
# Tried in order; the first that leaves a stem of at least three letters is removed.
_SUFFIXES = ("ies", "ing", "ed", "es", "ly", "s")
_BUCKETS_PER_CONCEPT = 4
_NO_CONCEPT = "\x00nothing"


def words(text: str) -> list[str]:
    """The text's words: lower-cased runs of letters and digits."""
    return _WORD.findall(text.lower())


def token_count(text: str) -> int:
    """What the fake provider bills for one input: its words, at least 1."""
    return max(1, len(words(text)))


def _stem(word: str) -> str:
    """A crude, consistent stem: 'refunds', 'refunding' and 'refunded' all give 'refund'."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word.endswith("ss"):
                continue
            word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "aeiou":
        word = word[:-1]  # 'shipp' (from 'shipped') -> 'ship'
    if len(word) >= 4 and word.endswith("e"):
        word = word[:-1]  # 'purchase' and 'purchas' (from 'purchased') meet
    return word


def _build_table() -> tuple[dict[str, str], dict[str, str]]:
    by_word: dict[str, str] = {}
    by_stem: dict[str, str] = {}
    for concept, group in SYNONYMS.items():
        for word in group:
            if by_word.setdefault(word, concept) != concept:
                raise ValueError(f"{word!r} is in two synonym groups")
            if by_stem.setdefault(_stem(word), concept) != concept:
                raise ValueError(f"the stem of {word!r} is in two synonym groups")
    return by_word, by_stem


_BY_WORD, _BY_STEM = _build_table()


def concept_of(word: str) -> str:
    """The concept a (lower-case) word stands for."""
    concept = _BY_WORD.get(word)
    if concept is not None:
        return concept
    stem = _stem(word)
    return _BY_STEM.get(stem, stem)


def concepts(text: str) -> list[str]:
    """The text's concepts, in order, function words left out."""
    return [concept_of(word) for word in words(text) if word not in STOP_WORDS]


def embed_text(text: str, dimensions: int) -> list[float]:
    """A unit vector of `dimensions` floats; equal concept bags give equal vectors."""
    if dimensions < 1:
        raise ValueError("dimensions must be >= 1")
    vector = [0.0] * dimensions
    for concept in concepts(text) or [_NO_CONCEPT]:
        digest = hashlib.blake2b(concept.encode(), digest_size=8 * _BUCKETS_PER_CONCEPT).digest()
        for part in range(_BUCKETS_PER_CONCEPT):
            value = int.from_bytes(digest[8 * part : 8 * part + 8], "little")
            sign = 1.0 if value & 1 else -1.0
            vector[(value >> 1) % dimensions] += sign
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0.0:  # every bucket cancelled out (possible with very few dimensions)
        return [1.0] + [0.0] * (dimensions - 1)
    return [x / norm for x in vector]
