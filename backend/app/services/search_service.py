"""Search over a knowledge base: what people type, as they type it.

A question, a phrase in quotes, words with hyphens, stray operators or emoji: the query
is cut into its words (runs of letters, digits and marks in any script) and a passage
matches if it holds any of them, ranked by how well it matches them all. Nothing typed
is ever read as query syntax, so nothing typed is an error, and one word that appears
nowhere never hides the passages that hold the others.
"""

import unicodedata
import uuid

from sqlmodel import Session

from app.core.errors import NotFoundError
from app.crud import chunk as chunk_crud
from app.crud import knowledge_base as knowledge_base_crud
from app.models.document import SearchQuery, SearchResults
from app.models.user import User

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


class SearchService:
    @staticmethod
    def search(
        *, session: Session, user: User, kb_id: uuid.UUID, query: SearchQuery
    ) -> SearchResults:
        knowledge_base = knowledge_base_crud.get_knowledge_base(
            session=session, user=user, kb_id=kb_id
        )
        if knowledge_base is None:
            raise NotFoundError("Knowledge base not found")
        words = search_words(query.q)
        if not words:
            return SearchResults(data=[])
        hits = chunk_crud.search(
            session=session,
            user=user,
            knowledge_base_ids=[knowledge_base.id],
            words=words,
            limit=query.limit,
        )
        return SearchResults(data=hits)
