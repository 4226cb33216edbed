"""Cutting a document's text into the passages search returns and answers cite.

Structure first: a chunk never spans two sections with different headings or pages
(adjacent sections with the same heading and page are read as one). Then size: a longer
run of text is cut at paragraph breaks, then sentence ends (and line breaks), then between
words, into pieces of about `target_tokens`; each piece after the first begins with the
last `overlap_tokens` or so of the one before, so a sentence cut in two is whole in one.

Offsets are into the document's full text: its sections' texts joined by a blank line
("\\n\\n"), in order. For every chunk `full_text[chunk.char_start:chunk.char_end] ==
chunk.text`.

Token counts are estimated, not computed: no tokenizer is downloaded (models differ, and a
worker must not fetch vocabularies at run time). A token is a run of letters and digits, a
single punctuation mark or a single CJK character. A word of up to 7 characters counts as
one token and every 4 characters more add one (so a long identifier, URL or base64 run
counts about characters / 4, as BPE tokenizers split them). For English prose this is
within about 20% of cl100k's count, erring high on long words.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import NamedTuple

from app.modules.documents.extract import MAX_HEADING_PATH_CHARS, Extracted, Section

SECTION_SEPARATOR = "\n\n"

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")
_CHARS_PER_EXTRA_TOKEN = 4
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")
# Parts are trimmed, so neither pattern needs to take the spaces around a break (and
# neither backtracks over a long run of spaces).
_SENTENCE_ENDS = ".!?\u2026\u3002\uff01\uff1f"
_SENTENCE_BREAK = re.compile(rf"(?<=[{_SENTENCE_ENDS}])\s|\n")
_WORD, _LINE, _SENTENCE, _PARAGRAPH = 0, 1, 2, 3


@dataclass(frozen=True)
class ChunkDraft:
    ordinal: int
    text: str
    page_start: int | None
    page_end: int | None
    heading: str | None
    char_start: int
    char_end: int


def token_weight(token: str) -> int:
    return 1 + max(0, len(token) - _CHARS_PER_EXTRA_TOKEN) // _CHARS_PER_EXTRA_TOKEN


def estimate_tokens(text: str) -> int:
    """About how many tokens a language model's tokenizer makes of `text` (see above)."""
    return sum(token_weight(match.group()) for match in _TOKEN.finditer(text))


def chunk_document(
    extracted: Extracted, *, target_tokens: int = 500, overlap_tokens: int = 60
) -> list[ChunkDraft]:
    """The chunks of a document, ordinals 0..n-1 in reading order."""
    if target_tokens < 1 or not 0 <= overlap_tokens < target_tokens:
        raise ValueError("need target_tokens >= 1 and 0 <= overlap_tokens < target_tokens")
    full_text = SECTION_SEPARATOR.join(section.text for section in extracted.sections)
    drafts: list[ChunkDraft] = []
    for start, end, section in _runs(full_text, extracted.sections):
        heading = section.heading[:MAX_HEADING_PATH_CHARS] if section.heading else None
        for char_start, char_end in _split(full_text, start, end, target_tokens, overlap_tokens):
            drafts.append(
                ChunkDraft(
                    ordinal=len(drafts),
                    text=full_text[char_start:char_end],
                    page_start=section.page,
                    page_end=section.page,
                    heading=heading,
                    char_start=char_start,
                    char_end=char_end,
                )
            )
    return drafts


def _runs(full_text: str, sections: list[Section]) -> Iterator[tuple[int, int, Section]]:
    """(start, end, first section) of each run of adjacent sections sharing a heading and
    a page, trimmed of surrounding whitespace; blank sections are left out."""
    run: tuple[int, int, Section] | None = None
    offset = 0
    for section in sections:
        start, end = _trim(full_text, offset, offset + len(section.text))
        offset += len(section.text) + len(SECTION_SEPARATOR)
        if start == end:
            continue
        if run is not None and (run[2].heading, run[2].page) == (section.heading, section.page):
            run = (run[0], end, run[2])
            continue
        if run is not None:
            yield run
        run = (start, end, section)
    if run is not None:
        yield run


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


class _Unit(NamedTuple):
    """A sentence, or a run of words of a longer one: what a piece is made of."""

    start: int
    end: int
    tokens: int
    rank: int  # what a piece ending just before it ends at: _PARAGRAPH ... _WORD


def _split(text: str, start: int, end: int, target: int, overlap: int) -> list[tuple[int, int]]:
    """Pieces of text[start:end] of at most `target` tokens each, overlapping."""
    if estimate_tokens(text[start:end]) <= target:
        return [(start, end)]
    # Units small enough that an overlap and one unit always fit in a piece.
    units = list(_units(text, start, end, target - overlap))
    before = list(accumulate((unit.tokens for unit in units), initial=0))
    pieces: list[tuple[int, int]] = []
    first = 0
    lead_start, lead_tokens = units[0].start, 0
    while first < len(units):
        last = first + 1
        while last < len(units) and lead_tokens + before[last + 1] - before[first] <= target:
            last += 1
        if last < len(units):
            last = _best_cut(units, before, first, last, lead_tokens, target)
        pieces.append((lead_start, units[last - 1].end))
        first = last
        if first < len(units):
            lead_start, lead_tokens = _overlap(text, pieces[-1], overlap)
            if lead_tokens == 0:
                lead_start = units[first].start
    return pieces


def _best_cut(
    units: list[_Unit], before: list[int], first: int, last: int, lead: int, target: int
) -> int:
    """Where a piece of units[first:last] (the most that fit) should end: before the last
    paragraph, else sentence, else line that leaves it at least half full."""
    for rank in (_PARAGRAPH, _SENTENCE, _LINE):
        for cut in range(last, first, -1):
            if lead + before[cut] - before[first] < target / 2:
                break
            if units[cut].rank >= rank:
                return cut
    return last


def _units(text: str, start: int, end: int, limit: int) -> Iterator[_Unit]:
    """The sentences of text[start:end] (line breaks end them too), those over `limit`
    tokens cut into runs of words."""
    for paragraph_start, paragraph_end in _parts(text, start, end, _PARAGRAPH_BREAK):
        rank, previous_end = _PARAGRAPH, paragraph_start
        for part_start, part_end in _parts(text, paragraph_start, paragraph_end, _SENTENCE_BREAK):
            if rank != _PARAGRAPH:
                rank = _SENTENCE if text[previous_end - 1] in _SENTENCE_ENDS else _LINE
            tokens = estimate_tokens(text[part_start:part_end])
            if tokens <= limit:
                yield _Unit(part_start, part_end, tokens, rank)
            else:
                for run_start, run_end, run_tokens in _word_runs(text, part_start, part_end, limit):
                    yield _Unit(run_start, run_end, run_tokens, rank)
                    rank = _WORD
            previous_end = part_end
            rank = _LINE


def _parts(
    text: str, start: int, end: int, separator: re.Pattern[str]
) -> Iterator[tuple[int, int]]:
    """The non-blank stretches of text[start:end] between matches of `separator`, trimmed."""
    part_start = start
    breaks = [match.span() for match in separator.finditer(text, start, end)]
    for part_end, next_start in [*breaks, (end, end)]:
        part = _trim(text, part_start, part_end)
        part_start = next_start
        if part[0] < part[1]:
            yield part


def _word_runs(text: str, start: int, end: int, limit: int) -> Iterator[tuple[int, int, int]]:
    """Runs of whole tokens of at most `limit` tokens; a single longer token (a huge word)
    is cut into runs of characters."""
    run_start, run_end, weight = start, start, 0
    for match in _TOKEN.finditer(text, start, end):
        token_start, token_end = match.span()
        token = token_weight(match.group())
        if weight and weight + token > limit:
            yield (run_start, run_end, weight)
            weight = 0
        if not weight:
            run_start = token_start
        if token > limit:
            step = limit * _CHARS_PER_EXTRA_TOKEN
            for cut in range(token_start, token_end, step):
                piece_end = min(cut + step, token_end)
                yield (cut, piece_end, token_weight(text[cut:piece_end]))
            continue
        run_end = token_end
        weight += token
    if weight:
        yield (run_start, run_end, weight)


def _overlap(text: str, piece: tuple[int, int], overlap: int) -> tuple[int, int]:
    """Where the next piece starts so that it repeats the end of `piece`: the start of the
    earliest word, among the last ones, that keeps the repeat within `overlap` tokens.
    (start, 0) when not even the last word fits."""
    tokens = list(_TOKEN.finditer(text, piece[0], piece[1]))
    best_start, best_weight, weight = piece[1], 0, 0
    for match in reversed(tokens):
        weight += token_weight(match.group())
        if weight > overlap:
            break
        position = match.start()
        if position == piece[0] or text[position - 1].isspace():
            best_start, best_weight = position, weight
    return best_start, best_weight
