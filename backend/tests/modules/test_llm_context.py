"""Fitting a conversation into a model's context window."""

import pytest

from app.modules.llm.client import ChatMessage
from app.modules.llm.context import (
    MESSAGE_OVERHEAD_TOKENS,
    ContextTooLong,
    Sources,
    estimate_tokens,
    fit_context,
)

INSTRUCTIONS = "You are a helpful assistant."


def user(content: str) -> ChatMessage:
    return ChatMessage(role="user", content=content)


def assistant(content: str) -> ChatMessage:
    return ChatMessage(role="assistant", content=content)


def cost(*messages: ChatMessage) -> int:
    return sum(estimate_tokens(message.content) for message in messages)


SYSTEM = ChatMessage(role="system", content=INSTRUCTIONS)
# Ten messages of identical cost, oldest first, ending with the user's newest question.
HISTORY = [(user if i % 2 == 0 else assistant)(f"message {i} " + "x" * 50) for i in range(9)] + [
    user("message 9 " + "x" * 50)
]


class TestEstimateTokens:
    @pytest.mark.parametrize(
        ("text", "at_least"),
        [
            # Real tokenizers (cl100k/o200k) count no more than these; overhead is extra.
            ("", 0),
            ("Hello, world!", 4),
            ("The quick brown fox jumps over the lazy dog. " * 20, 10 * 20),
            ("日本語のテキストを数える。" * 10, 13 * 10),  # about a token per CJK character
            ("Привет, как дела?" * 10, 6 * 10),
        ],
        ids=["empty", "short-ascii", "english", "cjk", "cyrillic"],
    )
    def test_never_below_a_real_count(self, text: str, at_least: int) -> None:
        assert estimate_tokens(text) >= at_least + MESSAGE_OVERHEAD_TOKENS

    def test_counts_bytes_not_characters(self) -> None:
        assert estimate_tokens("ab") == 1 + MESSAGE_OVERHEAD_TOKENS
        assert estimate_tokens("日本") == 2 + MESSAGE_OVERHEAD_TOKENS  # 6 UTF-8 bytes


class TestFitContext:
    def test_keeps_everything_when_it_fits(self) -> None:
        fitted = fit_context(
            instructions=INSTRUCTIONS,
            history=HISTORY,
            context_window=10_000,
            max_output_tokens=1_000,
        )

        assert fitted.messages == [SYSTEM, *HISTORY]
        assert fitted.omitted == 0
        assert fitted.estimated_input_tokens == cost(SYSTEM, *HISTORY)

    def test_omits_the_oldest_first(self) -> None:
        budget = cost(SYSTEM, *HISTORY[-4:])  # exactly the system and the last four
        fitted = fit_context(
            instructions=INSTRUCTIONS,
            history=HISTORY,
            context_window=budget + 500,
            max_output_tokens=500,
        )

        assert fitted.messages == [SYSTEM, *HISTORY[-4:]]
        assert fitted.omitted == 6
        assert fitted.estimated_input_tokens == budget

    def test_one_token_short_drops_one_more(self) -> None:
        budget = cost(SYSTEM, *HISTORY[-4:]) - 1
        fitted = fit_context(
            instructions=INSTRUCTIONS, history=HISTORY, context_window=budget, max_output_tokens=0
        )

        assert fitted.messages == [SYSTEM, *HISTORY[-3:]]
        assert fitted.omitted == 7

    def test_keeps_a_contiguous_suffix(self) -> None:
        # A big old message stops the walk: smaller, older ones behind it are not pulled in.
        history = [user("old"), assistant("y" * 3_000), user("newest")]
        fitted = fit_context(
            instructions="", history=history, context_window=100, max_output_tokens=10
        )

        assert fitted.messages == [history[-1]]
        assert fitted.omitted == 2

    def test_system_message_always_first(self) -> None:
        budget = cost(SYSTEM, HISTORY[-1])
        fitted = fit_context(
            instructions=INSTRUCTIONS, history=HISTORY, context_window=budget, max_output_tokens=0
        )

        assert fitted.messages == [SYSTEM, HISTORY[-1]]
        assert fitted.omitted == len(HISTORY) - 1

    def test_no_instructions_no_system_message(self) -> None:
        fitted = fit_context(
            instructions="", history=HISTORY, context_window=10_000, max_output_tokens=100
        )

        assert fitted.messages == HISTORY
        assert fitted.estimated_input_tokens == cost(*HISTORY)

    def test_newest_alone_too_big(self) -> None:
        history = [user("hi"), user("z" * 3_000)]

        with pytest.raises(ContextTooLong) as caught:
            fit_context(
                instructions=INSTRUCTIONS,
                history=history,
                context_window=1_000,
                max_output_tokens=200,
            )

        assert caught.value.needed == cost(SYSTEM, history[-1])
        assert caught.value.available == 800

    def test_instructions_too_big_for_any_message(self) -> None:
        with pytest.raises(ContextTooLong):
            fit_context(
                instructions="i" * 3_000,
                history=[user("hi")],
                context_window=500,
                max_output_tokens=0,
            )

    def test_output_reservation_larger_than_window(self) -> None:
        with pytest.raises(ContextTooLong):
            fit_context(
                instructions="", history=[user("hi")], context_window=100, max_output_tokens=200
            )

    def test_empty_history_is_a_programming_error(self) -> None:
        with pytest.raises(ValueError, match="newest message"):
            fit_context(instructions="", history=[], context_window=100, max_output_tokens=10)


PREAMBLE = "Sources:\n"
PASSAGES = [f"[{n}] passage {n} " + "p" * 60 for n in range(1, 5)]


def sources_message(kept: int) -> ChatMessage:
    return ChatMessage(role="system", content=PREAMBLE + "\n\n".join(PASSAGES[:kept]))


class TestFitSources:
    def test_all_fit_after_the_instructions(self) -> None:
        fitted = fit_context(
            instructions=INSTRUCTIONS,
            history=HISTORY,
            context_window=10_000,
            max_output_tokens=1_000,
            sources=Sources(preamble=PREAMBLE, passages=PASSAGES, max_tokens=1_000),
        )

        assert fitted.messages == [SYSTEM, sources_message(4), *HISTORY]
        assert fitted.sources_kept == 4
        assert fitted.estimated_input_tokens == cost(SYSTEM, sources_message(4), *HISTORY)

    def test_the_lowest_ranked_go_first_then_older_history(self) -> None:
        # Room for the system, the newest message, two sources and one older message,
        # which is less than three sources take.
        budget = cost(SYSTEM, sources_message(2), *HISTORY[-2:])
        assert cost(sources_message(3)) > cost(sources_message(2), HISTORY[-2])
        fitted = fit_context(
            instructions=INSTRUCTIONS,
            history=HISTORY,
            context_window=budget,
            max_output_tokens=0,
            sources=Sources(preamble=PREAMBLE, passages=PASSAGES, max_tokens=1_000),
        )

        assert fitted.messages == [SYSTEM, sources_message(2), *HISTORY[-2:]]
        assert fitted.sources_kept == 2
        assert fitted.omitted == len(HISTORY) - 2
        assert fitted.estimated_input_tokens == budget

    def test_their_own_limit_holds_however_large_the_window(self) -> None:
        limit = estimate_tokens(sources_message(3).content)
        fitted = fit_context(
            instructions=INSTRUCTIONS,
            history=HISTORY,
            context_window=100_000,
            max_output_tokens=1_000,
            sources=Sources(preamble=PREAMBLE, passages=PASSAGES, max_tokens=limit),
        )

        assert fitted.messages[1] == sources_message(3)
        assert fitted.sources_kept == 3

    def test_none_that_fit_send_no_message(self) -> None:
        budget = cost(SYSTEM, HISTORY[-1])
        fitted = fit_context(
            instructions=INSTRUCTIONS,
            history=HISTORY,
            context_window=budget + 10,
            max_output_tokens=0,
            sources=Sources(preamble=PREAMBLE, passages=PASSAGES, max_tokens=1_000),
        )

        assert fitted.messages == [SYSTEM, HISTORY[-1]]
        assert fitted.sources_kept == 0
        assert fitted.estimated_input_tokens == budget

    def test_sources_never_make_room_for_the_newest_message(self) -> None:
        with pytest.raises(ContextTooLong):
            fit_context(
                instructions=INSTRUCTIONS,
                history=[user("z" * 3_000)],
                context_window=1_000,
                max_output_tokens=200,
                sources=Sources(preamble=PREAMBLE, passages=PASSAGES, max_tokens=1_000),
            )
