"""Fitting a conversation into a model's context window.

No tokenizer is downloaded: providers use different ones, and a worker must not fetch
vocabularies at run time. Instead the count is over-estimated, so that a conversation we
send always fits; the cost is occasionally dropping an old message that would have fit.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from app.modules.llm.client import ChatMessage

# Role markers and separators that chat templates wrap around every message; OpenAI
# documents 3-4 tokens per message.
MESSAGE_OVERHEAD_TOKENS = 4
# English and other Latin-script text average ~4 bytes per token with BPE tokenizers, and
# Cyrillic or Greek (2-byte letters) about two letters per token, so a token per 3 bytes
# over-counts them. A common CJK character is 3 bytes and about one token (cl100k; o200k
# needs fewer), which this matches rather than exceeds; rare characters and emoji that fall
# back to byte tokens can cost more. Only MESSAGE_OVERHEAD_TOKENS and the part of the
# window a reply leaves unused absorb that: an exact count needs the provider's tokenizer.
BYTES_PER_TOKEN = 3


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens one message with this content costs, overhead
    included."""
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS


@dataclass(frozen=True)
class Sources:
    """Passages to ground an answer in, best first, sent as one system message after the
    instructions: `preamble`, then as many whole passages as fit (blank lines between).
    They take at most `max_tokens` of the request; the lowest-ranked go first."""

    preamble: str
    passages: Sequence[str]
    max_tokens: int


@dataclass(frozen=True)
class FittedContext:
    messages: list[ChatMessage]
    omitted: int  # history messages left out, all older than every kept one
    estimated_input_tokens: int
    sources_kept: int = 0  # the first this many passages of `sources` were sent


class ContextTooLong(Exception):  # noqa: N818 (the name callers already use)
    """The instructions and the newest message alone exceed the input budget."""

    def __init__(self, *, needed: int, available: int) -> None:
        self.needed = needed
        self.available = available
        super().__init__(
            f"The instructions and the newest message need about {needed} tokens; "
            f"the model accepts {max(available, 0)} besides its answer."
        )


def fit_context(
    *,
    instructions: str,
    history: Sequence[ChatMessage],
    context_window: int,
    max_output_tokens: int,
    sources: Sources | None = None,
) -> FittedContext:
    """The system message, the sources that fit, and the longest suffix of `history`
    (oldest-first) that fits in `context_window - max_output_tokens`.

    The instructions and the newest message come first: when they do not fit,
    ContextTooLong is raised. Then the sources, best first, while they fit (in the room
    left and in `sources.max_tokens`): they answer the newest message. Then older
    history, newest first, while it fits."""
    if not history:
        raise ValueError("history must end with the newest message")
    available = context_window - max_output_tokens
    system = [ChatMessage(role="system", content=instructions)] if instructions else []
    newest = history[-1]
    used = sum(estimate_tokens(message.content) for message in [*system, newest])
    if used > available:
        raise ContextTooLong(needed=used, available=available)
    grounding, kept_sources, grounding_cost = _fit_sources(sources, room=available - used)
    used += grounding_cost
    kept = 1
    for message in reversed(history[:-1]):
        cost = estimate_tokens(message.content)
        if used + cost > available:
            break
        used += cost
        kept += 1
    return FittedContext(
        messages=system + grounding + list(history[len(history) - kept :]),
        omitted=len(history) - kept,
        estimated_input_tokens=used,
        sources_kept=kept_sources,
    )


def _fit_sources(sources: Sources | None, *, room: int) -> tuple[list[ChatMessage], int, int]:
    """The sources' system message (none if not one passage fits), how many passages it
    holds, and its estimated cost."""
    if sources is None:
        return [], 0, 0
    limit = min(room, sources.max_tokens)
    content, kept = sources.preamble, 0
    for passage in sources.passages:
        longer = f"{content}\n\n{passage}" if kept else f"{content}{passage}"
        if estimate_tokens(longer) > limit:
            break
        content, kept = longer, kept + 1
    if kept == 0:
        return [], 0, 0
    return [ChatMessage(role="system", content=content)], kept, estimate_tokens(content)
