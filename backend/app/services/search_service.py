"""Search over a knowledge base: what people type, as they type it.

A question, a phrase in quotes, words with hyphens, stray operators or emoji: the query
is cut into its words (runs of letters, digits and marks in any script) and a passage
matches if it holds any of them, ranked by how well it matches them all. Nothing typed
is ever read as query syntax, so nothing typed is an error, and one word that appears
nowhere never hides the passages that hold the others.
"""

import logging
import unicodedata
import uuid
from collections.abc import Iterator

from sqlmodel import Session

from app.core.config import Settings
from app.core.errors import (
    AppError,
    ConflictError,
    NotFoundError,
    PaymentRequiredError,
    ServiceUnavailableError,
)
from app.crud import chunk as chunk_crud
from app.crud import knowledge_base as knowledge_base_crud
from app.models.document import SearchQuery, SearchResults
from app.models.embedding import SearchMode
from app.models.user import User
from app.modules.llm.client import LLMClient, LLMError
from app.services.embedding_service import ChargedTo
from app.services.semantic_search import CANDIDATES, cap, fuse, semantic_hits

logger = logging.getLogger("agentry.search")

# Passages of one document a fused (hybrid) answer keeps at most.
PER_DOCUMENT = 3

# Letters, marks (accents, vowel signs) and numbers, as the full-text indexes read them.
_WORD_CATEGORIES = frozenset("LMN")


def search_words(text: str) -> list[str]:
    """The distinct words of `text`, lower-cased, in the order they first appear."""
    words: dict[str, None] = {}
    current: list[str] = []
    for character in f"{text} ":
        if unicodedata.category(character)[0] in _WORD_CATEGORIES:
            current.append(character)
        elif current:
            words.setdefault("".join(current).lower())
            current = []
    return list(words)


# English function words: nearly every passage holds them, so as search terms they match
# everything and rank nothing (ts_rank_cd, unlike bm25, does not discount common words),
# and they make the index return every passage of the knowledge base.
_STOP_WORDS = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours
    yourself yourselves"""
STOP_WORDS = frozenset(_STOP_WORDS.split())


def query_terms(text: str) -> list[str]:
    """The words a search looks for: `text`'s words without the function words, unless
    nothing else is left (a search for "to be or not to be" still finds Hamlet)."""
    words = search_words(text)
    content = [word for word in words if word not in STOP_WORDS]
    return content or words


class SearchService:
    @staticmethod
    def language_problem(*, session: Session, config: Settings) -> str | None:
        """One line naming SEARCH_LANGUAGE when PostgreSQL has no such text search
        configuration; None when it has (and on SQLite, whose index has no language)."""
        if session.get_bind().dialect.name == "sqlite":
            return None
        if chunk_crud.language_exists(session=session, language=config.SEARCH_LANGUAGE):
            return None
        return (
            f"SEARCH_LANGUAGE: {config.SEARCH_LANGUAGE!r} is not a text search configuration "
            "of this PostgreSQL database; expected one it has (pg_ts_config), "
            "such as simple or english"
        )

    @staticmethod
    def reindex(*, session: Session, config: Settings) -> Iterator[int]:
        """PostgreSQL: every passage's vector rewritten in SEARCH_LANGUAGE, one committed
        batch at a time (search keeps serving meanwhile); yields each batch's size."""
        after = 0
        while True:
            ids = chunk_crud.reindex_batch(
                session=session, after=after, language=config.SEARCH_LANGUAGE
            )
            session.commit()
            if not ids:
                return
            yield len(ids)
            after = max(ids)

    @staticmethod
    def search(
        *,
        session: Session,
        config: Settings,
        llm: LLMClient,
        user: User,
        kb_id: uuid.UUID,
        query: SearchQuery,
    ) -> SearchResults:
        """By words, by meaning, or both fused (hybrid, the default when the knowledge
        base has a semantic index). Hybrid falls back to words alone, and says so in
        `mode`, when the question cannot be embedded (provider away, budget spent)."""
        knowledge_base = knowledge_base_crud.get_knowledge_base(
            session=session, user=user, kb_id=kb_id
        )
        if knowledge_base is None:
            raise NotFoundError("Knowledge base not found")
        mode = query.mode or (
            SearchMode.HYBRID if knowledge_base.index_model_id else SearchMode.KEYWORD
        )
        if mode != SearchMode.KEYWORD and knowledge_base.index_model_id is None:
            raise ConflictError(
                "This knowledge base has no semantic index yet; give it an embedding model "
                "and wait for its index, or search by keyword",
                code="semantic_index_unavailable",
            )
        words = query_terms(query.q)
        candidates = query.limit if mode == SearchMode.KEYWORD else CANDIDATES
        keyword = (
            chunk_crud.search(
                session=session,
                user=user,
                knowledge_base_ids=[knowledge_base.id],
                words=words,
                limit=candidates,
                language=config.SEARCH_LANGUAGE,
            )
            if words and mode != SearchMode.SEMANTIC
            else []
        )
        if mode == SearchMode.KEYWORD:
            return SearchResults(data=keyword, mode=mode)
        try:
            semantic = semantic_hits(
                session=session,
                llm=llm,
                user=user,
                knowledge_bases=[knowledge_base],
                question=query.q,
                limit=query.limit if mode == SearchMode.SEMANTIC else CANDIDATES,
                charged_to=ChargedTo(user_id=user.id, knowledge_base_id=knowledge_base.id),
            )
        except (LLMError, PaymentRequiredError) as error:
            if mode == SearchMode.SEMANTIC:
                raise _not_embedded(error) from error
            logger.warning("hybrid search by keyword only: %s", _code_of(error))
            return SearchResults(
                data=cap(keyword, limit=query.limit, per_document=PER_DOCUMENT),
                mode=SearchMode.KEYWORD,
            )
        if mode == SearchMode.SEMANTIC:
            return SearchResults(data=semantic, mode=mode)
        return SearchResults(
            data=fuse([keyword, semantic], limit=query.limit, per_document=PER_DOCUMENT),
            mode=mode,
        )


def _code_of(error: LLMError | PaymentRequiredError) -> str:
    return error.code if isinstance(error, LLMError) else error.error_code


def _not_embedded(error: LLMError | PaymentRequiredError) -> AppError:
    if isinstance(error, PaymentRequiredError):
        return error
    return ServiceUnavailableError(
        "The question could not be embedded: " + error.message, code=error.code
    )
