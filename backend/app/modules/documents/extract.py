"""The text of a document, in sections that remember their page and heading path.

Input is whatever someone uploaded, so `extract` raises nothing but ExtractionError, with
one of four stable codes, however broken the bytes are: a parser's own exception means the
file is unreadable. Sizes are checked before work that could blow up (a PDF's page count,
a DOCX's declared uncompressed size, the text gathered so far).

A section's text holds its body only: the heading path lives in `heading` (a heading
with no body under it yields no section). Text is cleaned for storage (no NUL, no
unpaired surrogates, no control characters but tab and newline), its paragraphs separated
by exactly one blank line and stripped.
"""

import csv
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser

import docx
from docx.styles.style import BaseStyle, ParagraphStyle
from docx.table import Table
from docx.text.paragraph import Paragraph
from pypdf import PasswordType, PdfReader

from app.core.codes import DocumentErrorCode
from app.modules.documents.detect import DocumentKind, csv_rows

# Heading paths are stored in a 500-character column; one heading rarely needs 200.
MAX_HEADING_CHARS = 200
MAX_HEADING_PATH_CHARS = 500
HEADING_SEPARATOR = " > "

# A DOCX entry that inflates more than this many times over is a zip bomb, not XML: real
# document parts compress 5 to 20 times.
_MAX_COMPRESSION_RATIO = 100
_RATIO_CHECKED_FROM_BYTES = 1_048_576
_MAX_DOCX_ENTRIES = 10_000


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None
    heading: str | None


@dataclass(frozen=True)
class Extracted:
    sections: list[Section]
    page_count: int | None


@dataclass(frozen=True)
class ExtractionLimits:
    max_pages: int
    max_bytes: int


class ExtractionError(Exception):
    """Why a document yields no text; `code` is stable, `message` is for people."""

    def __init__(self, code: DocumentErrorCode, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def extract(data: bytes, kind: DocumentKind, limits: ExtractionLimits) -> Extracted:
    """The sections of `data` read as `kind`, or ExtractionError (and nothing else)."""
    try:
        return _EXTRACTORS[kind](data, limits)
    except ExtractionError:
        raise
    except Exception as error:  # any parser failure on untrusted bytes
        raise ExtractionError(
            DocumentErrorCode.UNREADABLE_DOCUMENT,
            f"The {_NAMES.get(kind, 'file')} could not be read",
        ) from error


_NAMES = {
    DocumentKind.PDF: "PDF",
    DocumentKind.DOCX: "Word document",
    DocumentKind.HTML: "HTML page",
    DocumentKind.MARKDOWN: "Markdown file",
    DocumentKind.TEXT: "text file",
    DocumentKind.CSV: "CSV file",
}


# ==================== Gathering sections ====================

_REMOVED = re.compile(r"[\x00-\x08\x0e-\x1f\x7f\ud800-\udfff]")
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n(?:[^\S\n]*\n)+")
_WHITESPACE = re.compile(r"\s+")


def clean(text: str, *, collapse_spaces: bool = False) -> str:
    """Storable text: line breaks as \\n, no NUL, surrogate or other control character,
    no trailing spaces, one blank line between paragraphs, nothing blank at either end."""
    text = _REMOVED.sub("", _LINE_BREAKS.sub("\n", text))
    if collapse_spaces:
        text = _SPACES.sub(" ", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip("\n").strip()


class _Sections:
    """Sections as they are found, the heading path they fall under, and the size so far."""

    def __init__(self, limits: ExtractionLimits) -> None:
        self.limits = limits
        self.sections: list[Section] = []
        self.size = 0
        self._headings: list[tuple[int, str]] = []
        self._paragraphs: list[str] = []

    @property
    def heading(self) -> str | None:
        path = HEADING_SEPARATOR.join(text for _level, text in self._headings)
        return path[:MAX_HEADING_PATH_CHARS] or None

    def enter_heading(self, level: int, text: str) -> None:
        """A heading of `level` (lower is outer) ends the section before it."""
        self.flush()
        while self._headings and self._headings[-1][0] >= level:
            self._headings.pop()
        text = " ".join(clean(text).split())[:MAX_HEADING_CHARS]
        if text:
            self._headings.append((level, text))

    def paragraph(self, text: str) -> None:
        self._paragraphs.append(text)

    def flush(self) -> None:
        self.add("\n\n".join(self._paragraphs), page=None, heading=self.heading)
        self._paragraphs = []

    def add(
        self, text: str, *, page: int | None, heading: str | None, spaces: bool = False
    ) -> None:
        text = clean(text, collapse_spaces=spaces)
        if not text:
            return
        self.size += len(text.encode("utf-8"))
        if self.size > self.limits.max_bytes:
            raise ExtractionError(
                DocumentErrorCode.DOCUMENT_TOO_LARGE,
                f"The document holds more than {self.limits.max_bytes} bytes of text",
            )
        self.sections.append(Section(text=text, page=page, heading=heading))

    def result(self, page_count: int | None = None) -> Extracted:
        self.flush()
        if not self.sections:
            raise ExtractionError(
                DocumentErrorCode.NO_TEXT_EXTRACTED,
                "No text was found in the document (a scanned document needs OCR first)",
            )
        return Extracted(sections=self.sections, page_count=page_count)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ExtractionError(
            DocumentErrorCode.UNREADABLE_DOCUMENT, "The file is not UTF-8 text"
        ) from error


# ==================== PDF ====================


def _extract_pdf(data: bytes, limits: ExtractionLimits) -> Extracted:
    """One section per page that has text. A PDF that opens without a password (one
    restricted by an owner password only) is read like any other."""
    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not _opens_without_password(reader):
        raise ExtractionError(
            DocumentErrorCode.ENCRYPTED_DOCUMENT, "The PDF is protected by a password"
        )
    page_count = len(reader.pages)
    if page_count > limits.max_pages:
        raise ExtractionError(
            DocumentErrorCode.DOCUMENT_TOO_LARGE, f"The PDF has more than {limits.max_pages} pages"
        )
    sections = _Sections(limits)
    for number, page in enumerate(reader.pages, start=1):
        sections.add(page.extract_text(), page=number, heading=None, spaces=True)
    return sections.result(page_count)


def _opens_without_password(reader: PdfReader) -> bool:
    """Whether the empty password opens an encrypted PDF. Failing to try (AES needs the
    optional `cryptography` package) counts as no: the file is still password-protected,
    not broken."""
    try:
        return reader.decrypt("") != PasswordType.NOT_DECRYPTED
    except Exception:
        return False


# ==================== DOCX ====================

_DOCX_HEADING = re.compile(r"heading\s*([1-9])", re.IGNORECASE)
_MAX_STYLE_ANCESTORS = 5


def _extract_docx(data: bytes, limits: ExtractionLimits) -> Extracted:
    _check_archive(data, limits)
    sections = _Sections(limits)
    for block in docx.Document(io.BytesIO(data)).iter_inner_content():
        if isinstance(block, Table):
            for row in _table_rows(block):
                sections.paragraph(row)
            continue
        level = _heading_level(block)
        if level is None:
            sections.paragraph(block.text)
        else:
            sections.enter_heading(level, block.text)
    return sections.result()


def _check_archive(data: bytes, limits: ExtractionLimits) -> None:
    """Refuse a zip bomb from its central directory, before anything is inflated. The
    declared sizes bind: zipfile never inflates an entry past its declared size."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = archive.infolist()
    too_large = ExtractionError(
        DocumentErrorCode.DOCUMENT_TOO_LARGE,
        f"The document unpacks to more than {limits.max_bytes} bytes",
    )
    if len(entries) > _MAX_DOCX_ENTRIES:
        raise too_large
    if sum(entry.file_size for entry in entries) > limits.max_bytes:
        raise too_large
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size > _RATIO_CHECKED_FROM_BYTES and ratio > _MAX_COMPRESSION_RATIO:
            raise too_large


def _heading_level(paragraph: Paragraph) -> int | None:
    """0 for the document's title, N for "Heading N" (or a style based on it), None for
    any other paragraph."""
    style: BaseStyle | None = paragraph.style
    for _ in range(_MAX_STYLE_ANCESTORS):
        if style is None:
            return None
        name = (style.name or "").strip()
        if name.lower() == "title":
            return 0
        if match := _DOCX_HEADING.fullmatch(name):
            return int(match.group(1))
        style = style.base_style if isinstance(style, ParagraphStyle) else None
    return None


def _table_rows(table: Table) -> list[str]:
    """Each row as its cells' text joined by " | " (a merged cell counted once)."""
    rows = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is not previous:
                cells.append(" ".join(cell.text.split()))
            previous = cell._tc
        rows.append(" | ".join(text for text in cells if text))
    return rows


# ==================== HTML ====================


class _HTMLText(HTMLParser):
    """Headings h1-h6 make the heading path; block elements end paragraphs; the contents
    of script, style, navigation, page headers and footers are dropped."""

    SKIPPED = frozenset(
        {"script", "style", "nav", "header", "footer", "noscript", "template", "title", "svg"}
    )
    HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
    BLOCKS = frozenset(
        {
            "p", "div", "section", "article", "main", "aside", "blockquote", "pre", "ul",
            "ol", "li", "dl", "dt", "dd", "table", "tr", "thead", "tbody", "tfoot",
            "caption", "figure", "figcaption", "form", "fieldset", "address", "hr", "body",
            "details", "summary",
        }
    )  # fmt: skip

    def __init__(self, sections: _Sections) -> None:
        super().__init__(convert_charrefs=True)
        self.sections = sections
        self.skipping: list[str] = []
        self.heading_level: int | None = None
        self.buffer: list[str] = []
        self.preformatted = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIPPED:
            self.skipping.append(tag)
        elif self.skipping:
            return
        elif tag in self.HEADINGS:
            self.end_block()
            self.heading_level = int(tag[1])
        elif tag in self.BLOCKS:
            self.end_block()
            self.preformatted += tag == "pre"
        elif tag == "br":
            self.buffer.append("\n")
        elif tag in ("td", "th"):
            self.buffer.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.skipping:
            while self.skipping.pop() != tag:
                pass
        elif self.skipping:
            return
        elif tag in self.HEADINGS or tag in self.BLOCKS:
            self.end_block()
            if tag == "pre":
                self.preformatted = max(0, self.preformatted - 1)

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.buffer.append(data if self.preformatted else _WHITESPACE.sub(" ", data))

    def end_block(self) -> None:
        text = "".join(self.buffer)
        self.buffer = []
        if self.heading_level is not None:
            self.sections.enter_heading(self.heading_level, text)
            self.heading_level = None
        elif self.preformatted:
            self.sections.paragraph(text)
        else:
            self.sections.paragraph("\n".join(" ".join(line.split()) for line in text.split("\n")))

    def close(self) -> None:
        super().close()
        self.end_block()


def _extract_html(data: bytes, limits: ExtractionLimits) -> Extracted:
    sections = _Sections(limits)
    parser = _HTMLText(sections)
    parser.feed(_defused(_decode(data)))
    parser.close()
    return sections.result()


_UNCLOSED_MARKUP = re.compile(r"<(?=[^<>]*(?:<|\Z))")


def _defused(page: str) -> str:
    """The page without what makes html.parser quadratic: it rescans the rest of the input
    at every construct that never closes ("<a<a<a...", "<!--<!--..."), so comments are
    dropped here (an unclosed one runs to the end, as in browsers) and a "<" that no ">"
    follows before the next "<" is escaped to text."""
    kept: list[str] = []
    position = 0
    while (start := page.find("<!--", position)) >= 0:
        kept.append(page[position:start])
        end = page.find("-->", start + 4)
        position = len(page) if end < 0 else end + 3
    kept.append(page[position:])
    return _UNCLOSED_MARKUP.sub("&lt;", "".join(kept))


# ==================== Markdown, plain text, CSV ====================

_ATX_HEADING = re.compile(r" {0,3}(#{1,6})(?=[ \t]|$)")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


def _extract_markdown(data: bytes, limits: ExtractionLimits) -> Extracted:
    """ATX headings (# to ######) make the heading path; fenced code stays as text."""
    sections = _Sections(limits)
    lines: list[str] = []
    fence: str | None = None
    for line in _decode(data).splitlines():
        opening = _FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
        elif opening:
            fence = opening.group(1)
        elif heading := _ATX_HEADING.match(line):
            sections.paragraph("\n".join(lines))
            lines = []
            sections.enter_heading(len(heading.group(1)), _atx_text(line[heading.end() :]))
            continue
        lines.append(line)
    sections.paragraph("\n".join(lines))
    return sections.result()


def _atx_text(rest: str) -> str:
    """A heading's text without the optional closing run of #s (kept when it is glued to
    a word, as in "C#")."""
    text = rest.strip()
    unclosed = text.rstrip("#")
    if unclosed != text and (not unclosed or unclosed[-1] in " \t"):
        return unclosed.strip()
    return text


def _extract_text(data: bytes, limits: ExtractionLimits) -> Extracted:
    sections = _Sections(limits)
    sections.add(_decode(data), page=None, heading=None)
    return sections.result()


def _extract_csv(data: bytes, limits: ExtractionLimits) -> Extracted:
    """The first row names the columns; each further row is a section "row N" whose text
    reads "column: value; ..." (empty values left out)."""
    sections = _Sections(limits)
    header: list[str] | None = None
    number = 0
    try:
        for row in csv_rows(_decode(data)):
            if header is None:
                header = [" ".join(name.split()) for name in row]
                continue
            number += 1
            pairs = [
                f"{_column(header, index)}: {' '.join(value.split())}"
                for index, value in enumerate(row)
                if value.strip()
            ]
            sections.add("; ".join(pairs), page=None, heading=f"row {number}")
    except csv.Error as error:
        raise ExtractionError(
            DocumentErrorCode.UNREADABLE_DOCUMENT, f"The CSV file is malformed: {error}"
        ) from error
    return sections.result()


def _column(header: list[str], index: int) -> str:
    name = header[index] if index < len(header) else ""
    return name or f"column {index + 1}"


_EXTRACTORS: dict[DocumentKind, Callable[[bytes, ExtractionLimits], Extracted]] = {
    DocumentKind.PDF: _extract_pdf,
    DocumentKind.DOCX: _extract_docx,
    DocumentKind.HTML: _extract_html,
    DocumentKind.MARKDOWN: _extract_markdown,
    DocumentKind.TEXT: _extract_text,
    DocumentKind.CSV: _extract_csv,
}
