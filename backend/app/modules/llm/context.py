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
class FittedContext:
    messages: list[ChatMessage]
    omitted: int  # history messages left out, all older than every kept one
    estimated_input_tokens: int


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
) -> FittedContext:
    """The system message plus the longest suffix of `history` (oldest-first) that fits
    in `context_window - max_output_tokens`. The newest message is never dropped: when
    it does not fit, ContextTooLong is raised instead."""
    if not history:
        raise ValueError("history must end with the newest message")
    available = context_window - max_output_tokens
    system = [ChatMessage(role="system", content=instructions)] if instructions else []
    used = sum(estimate_tokens(message.content) for message in system)
    kept = 0
    for message in reversed(history):
        cost = estimate_tokens(message.content)
        if used + cost > available:
            break
        used += cost
        kept += 1
    if kept == 0:
        raise ContextTooLong(
            needed=used + estimate_tokens(history[-1].content), available=available
        )
    return FittedContext(
        messages=system + list(history[len(history) - kept :]),
        omitted=len(history) - kept,
        estimated_input_tokens=used,
    )
