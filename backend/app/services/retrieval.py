"""Answers grounded in an agent's knowledge bases: which passages a run sends as numbered
sources, and which of them its answer cites.

A run of an agent with knowledge bases searches them (its owner's alone) for the newest
user message, with the previous one too when the newest is short ("and in 2023?"), by
words and, where a knowledge base has a semantic index, by meaning (fused as in
search), and sends the best passages as one system message of numbered sources. The answer's `[n]`
markers become citations that copy what they point at, so they outlive the documents.
"""

import logging
import re
import uuid
from collections.abc import Sequence

from sqlmodel import Session

from app.core.errors import PaymentRequiredError
from app.crud import agent as agent_crud
from app.crud import chunk as chunk_crud
from app.crud import knowledge_base as kb_crud
from app.crud import user as user_crud
from app.models.citation import QUOTE_MAX_LENGTH, Citation
from app.models.document import SearchHit
from app.models.run import Run
from app.modules.llm.client import ChatMessage, LLMClient, LLMError
from app.modules.llm.context import Sources
from app.services.embedding_service import ChargedTo
from app.services.search_service import query_terms, search_words
from app.services.semantic_search import CANDIDATES, cap, fuse, semantic_hits

logger = logging.getLogger("agentry.runs")

# The most the sources may take of a request, in estimated tokens (context.py): six
# passages of about 500 tokens (chunking's target) at the estimate's 3 bytes a token,
# with their labels. A run of an agent with knowledge bases is priced with this much more.
SOURCE_TOKENS = 6_000
MAX_SOURCES = 6
MAX_SOURCES_PER_DOCUMENT = 2
# A newest message shorter than this many words is read with the one before it.
SHORT_QUESTION_WORDS = 8
# Bounds on what a message (up to 32,000 characters) makes a search of; PostgreSQL
# refuses tsquery words of 2,048 bytes or more.
MAX_SEARCH_WORDS = 64
MAX_WORD_LENGTH = 100

PREAMBLE = (
    "Answer from the numbered sources below when they hold the answer, and cite every "
    "source you use by its number in square brackets, as [1] or [1][3]. If they do not "
    "contain the answer, say so.\n\nSources (cite them as [n]):\n"
)
# "[2]", "[1, 3]", "[ 4 ]"; "[1][2]" is two markers.
_MARKER = re.compile(r"\[\s*(\d{1,4}(?:\s*,\s*\d{1,4})*)\s*\]")


def question_words(history: Sequence[ChatMessage]) -> list[str]:
    """What to search for: the newest user message's words, with the previous user
    message's after them when the newest is short (a follow-up)."""
    users = [message.content for message in history if message.role == "user"]
    if not users:
        return []
    words = query_terms(users[-1])
    if len(words) < SHORT_QUESTION_WORDS and len(users) > 1:
        words += [word for word in query_terms(users[-2]) if word not in words]
    return [word for word in words if len(word) <= MAX_WORD_LENGTH][:MAX_SEARCH_WORDS]


def question_text(history: Sequence[ChatMessage]) -> str:
    """What to embed: the newest user message, after the previous one when the newest is
    short (a follow-up)."""
    users = [message.content for message in history if message.role == "user"]
    if not users:
        return ""
    if len(search_words(users[-1])) < SHORT_QUESTION_WORDS and len(users) > 1:
        return f"{users[-2]}\n{users[-1]}"
    return users[-1]


def retrieve(
    *,
    session: Session,
    llm: LLMClient,
    run: Run,
    history: Sequence[ChatMessage],
    language: str,
    deadline: float | None = None,
) -> list[SearchHit]:
    """The best passages of the agent's knowledge bases for the conversation's newest
    question, searched as the run's owner, at most MAX_SOURCES of them and
    MAX_SOURCES_PER_DOCUMENT of any one document: by words and, where a knowledge base
    has a semantic index, by meaning too (fused). Embedding the question is billed to the
    run's owner; if it cannot be (provider away, budget spent) words alone decide."""
    kb_ids = agent_crud.knowledge_base_ids(session=session, agent_ids=[run.agent_id]).get(
        run.agent_id
    )
    owner = user_crud.get_user(session=session, user_id=run.owner_id)
    if not kb_ids or owner is None:
        return []
    words = question_words(history)
    keyword = (
        chunk_crud.search(
            session=session,
            user=owner,
            knowledge_base_ids=kb_ids,
            words=words,
            limit=CANDIDATES,
            language=language,
            per_document=MAX_SOURCES_PER_DOCUMENT,
        )
        if words
        else []
    )
    knowledge_bases = kb_crud.get_many(session=session, user=owner, kb_ids=kb_ids)
    question = question_text(history)
    semantic: list[SearchHit] = []
    if question and any(kb.index_model_id for kb in knowledge_bases):
        try:
            semantic = semantic_hits(
                session=session,
                llm=llm,
                user=owner,
                knowledge_bases=knowledge_bases,
                question=question,
                limit=CANDIDATES,
                charged_to=ChargedTo(
                    user_id=run.owner_id,
                    knowledge_base_id=None,
                    run_id=run.id,
                    agent_id=run.agent_id,
                    thread_id=run.thread_id,
                ),
                deadline=deadline,
            )
        except (LLMError, PaymentRequiredError) as error:
            code = error.code if isinstance(error, LLMError) else error.error_code
            logger.warning("run %s: sources by keyword only (%s)", run.id, code)
    if not semantic:
        return cap(keyword, limit=MAX_SOURCES, per_document=MAX_SOURCES_PER_DOCUMENT)
    return fuse([keyword, semantic], limit=MAX_SOURCES, per_document=MAX_SOURCES_PER_DOCUMENT)


def sources(hits: Sequence[SearchHit], *, max_tokens: int) -> Sources:
    """The passages as numbered sources, best first: "[1] Title, p. 3-4 — Heading"."""
    return Sources(
        preamble=PREAMBLE,
        passages=[f"[{n}] {_label(hit)}\n{hit.text}" for n, hit in enumerate(hits, start=1)],
        max_tokens=max_tokens,
    )


def _label(hit: SearchHit) -> str:
    label = hit.document_title
    if hit.page_start is not None:
        pages = str(hit.page_start)
        if hit.page_end is not None and hit.page_end != hit.page_start:
            pages += f"-{hit.page_end}"
        label += f", p. {pages}"
    if hit.heading:
        label += f" — {hit.heading}"
    return label


def cited_numbers(answer: str, *, sources_given: int) -> list[int]:
    """The source numbers an answer's [n] markers use, each once, in order of first use;
    a number naming no source given is dropped."""
    numbers: dict[int, None] = {}
    for marker in _MARKER.finditer(answer):
        for part in marker.group(1).split(","):
            number = int(part)
            if 1 <= number <= sources_given:
                numbers.setdefault(number)
    return list(numbers)


def citations(
    *, message_id: uuid.UUID, run_id: uuid.UUID, hits: Sequence[SearchHit], numbers: list[int]
) -> list[Citation]:
    """One citation per number used, copying what its source said and where."""
    return [
        Citation(
            message_id=message_id,
            run_id=run_id,
            index=number,
            document_id=hits[number - 1].document_id,
            chunk_id=hits[number - 1].chunk_id,
            document_title=hits[number - 1].document_title,
            page_start=hits[number - 1].page_start,
            page_end=hits[number - 1].page_end,
            quote=hits[number - 1].text[:QUOTE_MAX_LENGTH],
        )
        for number in numbers
    ]
