"""Documents: telling a file's kind by its bytes, reading its text with pages and
headings, and cutting it into chunks, on real files built by tests/documents.py."""

import codecs
import io
import itertools
import random
import re
import textwrap
import time
import tracemalloc
from typing import ClassVar

import docx
import pytest
from docx.enum.style import WD_STYLE_TYPE

from app.modules.documents.chunking import (
    SECTION_SEPARATOR,
    ChunkDraft,
    chunk_document,
    estimate_tokens,
)
from app.modules.documents.detect import (
    CONTENT_TYPES,
    DocumentKind,
    UnsupportedDocument,
    detect_kind,
)
from app.modules.documents.extract import (
    MAX_HEADING_PATH_CHARS,
    Extracted,
    ExtractionError,
    ExtractionLimits,
    Section,
    clean,
    extract,
)
from tests.documents import (
    CHROME_TEXT,
    CORRUPT_PDF,
    FAKE_EXE,
    ZIP_BOMB_UNCOMPRESSED_BYTES,
    make_csv,
    make_docx,
    make_encrypted_pdf,
    make_html,
    make_owner_locked_pdf,
    make_pdf,
    make_scanned_pdf,
    make_zip,
    make_zip_bomb_docx,
)

LIMITS = ExtractionLimits(max_pages=50, max_bytes=5_000_000)
WORDS = [
    *("the", "a", "of", "to", "and", "knowledge", "base", "answer", "source", "cite"),
    *("retrieval", "passage", "chunk", "search", "index", "document", "page", "heading"),
    *("section", "table", "row", "column", "paragraph", "sentence"),
]


def prose(rng: random.Random, sentences: int) -> str:
    return " ".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 18))).capitalize() + "."
        for _ in range(sentences)
    )


def full_text(extracted: Extracted) -> str:
    return SECTION_SEPARATOR.join(section.text for section in extracted.sections)


def read(data: bytes, kind: DocumentKind, limits: ExtractionLimits = LIMITS) -> list[Section]:
    return extract(data, kind, limits).sections


def extraction_error(data: bytes, kind: DocumentKind, limits: ExtractionLimits = LIMITS) -> str:
    with pytest.raises(ExtractionError) as caught:
        extract(data, kind, limits)
    assert caught.value.message
    return caught.value.code


# ==================== detect_kind ====================


class TestDetectKind:
    @pytest.mark.parametrize(
        ("data", "filename", "kind"),
        [
            (make_pdf(["hello"]), "report.pdf", DocumentKind.PDF),
            # The content decides, not the name.
            (make_pdf(["hello"]), "report.txt", DocumentKind.PDF),
            (b"\n  " + make_pdf(["hello"]), "x", DocumentKind.PDF),
            (make_docx([(None, "hi")]), "notes.docx", DocumentKind.DOCX),
            (make_docx([(None, "hi")]), "notes.txt", DocumentKind.DOCX),
            (make_html([(1, "Hi")]), "page.txt", DocumentKind.HTML),
            (b"<html><body><p>Hi</p></body></html>", "page", DocumentKind.HTML),
            (
                codecs.BOM_UTF8 + b"<?xml version='1.0'?>\n<!-- saved -->\n<!doctype HTML><p>x",
                "saved.md",
                DocumentKind.HTML,
            ),
            (b"  <BODY>\n<p>x</p>", "a.csv", DocumentKind.HTML),
            (b"<h1>Fragment</h1><p>text</p>", "fragment.html", DocumentKind.HTML),
            # A README that starts with a centred logo stays markdown.
            (
                b'<div align="center"><img src="x.png"></div>\n# Title\n',
                "README.md",
                DocumentKind.MARKDOWN,
            ),
            (b"# Title\n\nText.", "notes.md", DocumentKind.MARKDOWN),
            (b"# Title\n\nText.", "NOTES.Markdown", DocumentKind.MARKDOWN),
            (b"# Title\n\nText.", "notes.txt", DocumentKind.TEXT),
            (b"Just words.", "notes", DocumentKind.TEXT),
            (b"Just words.", ".md", DocumentKind.TEXT),
            (codecs.BOM_UTF8 + "Grüße, 世界\tand a tab\r\n".encode(), "x.txt", DocumentKind.TEXT),
            (b"", "empty.txt", DocumentKind.TEXT),
            (
                b"Log line \x1b[31mred\x1b[0m and more words on the same long line of text",
                "x.log",
                DocumentKind.TEXT,
            ),
            (
                make_csv([["name", "age"], ["Ann", "31"], ["Bo", "4"]]),
                "people.csv",
                DocumentKind.CSV,
            ),
            (b"name;age\r\nAnn;31\r\nBo;4\r\n\r\n", "C:\\data\\people.CSV", DocumentKind.CSV),
            # Not a consistent table of two or more columns: read as text.
            (b"name\nAnn\nBo\n", "names.csv", DocumentKind.TEXT),
            (b"a,b\n1,2,3\n", "ragged.csv", DocumentKind.TEXT),
            (make_csv([["name", "age"], ["Ann", "31"]]), "people.txt", DocumentKind.TEXT),
        ],
    )
    def test_kind_by_content(self, data: bytes, filename: str, kind: DocumentKind) -> None:
        assert detect_kind(data, filename) == kind

    @pytest.mark.parametrize(
        ("data", "filename", "reason"),
        [
            (FAKE_EXE, "invoice.pdf", "Executable"),
            (FAKE_EXE, "notes.txt", "Executable"),
            (b"\x7fELF\x02\x01\x01" + bytes(100), "run.txt", "Executable"),
            (b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + bytes(100), "app.md", "Executable"),
            (b"\x89PNG\r\n\x1a\n" + bytes(100), "scan.pdf", "Images"),
            (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "photo.txt", "Images"),
            (b"GIF89a\x01\x00\x01\x00", "anim.txt", "Images"),
            (
                b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>',
                "logo.txt",
                "Images",
            ),
            (b"\x1f\x8b\x08\x00" + bytes(20), "data.csv", "archives"),
            (b"7z\xbc\xaf\x27\x1c\x00\x04", "a.txt", "archives"),
            (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "old.doc", "Legacy Office"),
            ("UTF-16 from Notepad".encode("utf-16"), "notes.txt", "UTF-16"),
            (b"{\\rtf1\\ansi Hello}", "letter.txt", "Rich Text"),
            (make_zip({"readme.txt": b"hello"}), "bundle.docx", "ZIP archives"),
            (
                make_zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"}),
                "sheet.xlsx",
                "ZIP archives",
            ),
            (
                make_zip(
                    {"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"}
                ),
                "text.odt",
                "ZIP archives",
            ),
            (b"PK\x03\x04" + bytes(60), "broken.docx", "damaged ZIP"),
            ("Grüße in Latin-1".encode("latin-1"), "x.txt", "UTF-8"),
            (b"text with a NUL\x00 inside", "x.txt", "binary"),
            (bytes(range(1, 9)) * 20, "x.txt", "binary"),
            (b"\xed\xa0\x80 an encoded surrogate", "x.txt", "UTF-8"),
        ],
    )
    def test_refused(self, data: bytes, filename: str, reason: str) -> None:
        with pytest.raises(UnsupportedDocument) as caught:
            detect_kind(data, filename)
        assert reason in caught.value.message

    def test_damaged_files_are_refused_or_recognised_never_an_error(self) -> None:
        rng = random.Random("detect")
        samples = [rng.randbytes(rng.randint(0, 2000)) for _ in range(50)]
        for original in TestExtractNeverRaisesAnythingElse.SAMPLES.values():
            for _ in range(10):
                samples.append(original[: rng.randint(0, len(original))])
                flipped = bytearray(original)
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
                samples.append(bytes(flipped))
        names = ["a.pdf", "a.csv", "a.md", "a"]
        outcomes = {self._kind_or_refusal(sample, rng.choice(names)) for sample in samples}
        assert outcomes <= {*DocumentKind, "refused"}
        assert "refused" in outcomes

    @staticmethod
    def _kind_or_refusal(data: bytes, filename: str) -> str:
        try:
            return detect_kind(data, filename)
        except UnsupportedDocument as refusal:
            return "refused" if refusal.message else "refused without a reason"

    def test_a_zip_with_a_word_document_but_no_content_types_is_refused(self) -> None:
        with pytest.raises(UnsupportedDocument):
            detect_kind(make_zip({"word/document.xml": b"<w:document/>"}), "a.docx")

    def test_every_kind_has_a_content_type(self) -> None:
        assert set(CONTENT_TYPES) == set(DocumentKind)
        assert CONTENT_TYPES[DocumentKind.PDF] == "application/pdf"
        assert CONTENT_TYPES[DocumentKind.DOCX] == (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        )
        assert CONTENT_TYPES[DocumentKind.CSV] == "text/csv"


# ==================== extract ====================


class TestExtractPdf:
    def test_one_section_per_page_numbered_from_one(self) -> None:
        data = make_pdf(["First   page\there.", "", "Third page.\n\nAfter a blank line."])
        extracted = extract(data, DocumentKind.PDF, LIMITS)
        assert extracted.page_count == 3
        assert extracted.sections == [
            Section(text="First page here.", page=1, heading=None),
            Section(text="Third page.\nAfter a blank line.", page=3, heading=None),
        ]

    def test_a_long_page_is_read_whole(self) -> None:
        text = prose(random.Random(1), 30)
        [section] = read(make_pdf([text]), DocumentKind.PDF)
        assert section.text.split() == text.split()

    def test_more_pages_than_allowed(self) -> None:
        data = make_pdf(["page"] * 4)
        assert extraction_error(data, DocumentKind.PDF, ExtractionLimits(3, 10**6)) == (
            "document_too_large"
        )
        assert len(read(data, DocumentKind.PDF, ExtractionLimits(4, 10**6))) == 4

    def test_more_text_than_allowed(self) -> None:
        data = make_pdf(["x" * 600, "y" * 600])
        assert extraction_error(data, DocumentKind.PDF, ExtractionLimits(10, 1024)) == (
            "document_too_large"
        )

    @pytest.mark.parametrize("algorithm", ["AES-256", "AES-128", "RC4-128"])
    def test_password_protected(self, algorithm: str) -> None:
        data = make_encrypted_pdf(["secret"], algorithm=algorithm)
        assert extraction_error(data, DocumentKind.PDF) == "encrypted_document"

    def test_restricted_by_an_owner_password_only_is_read(self) -> None:
        assert read(make_owner_locked_pdf(["open text"]), DocumentKind.PDF) == [
            Section(text="open text", page=1, heading=None)
        ]

    def test_scanned(self) -> None:
        assert extraction_error(make_scanned_pdf(3), DocumentKind.PDF) == "no_text_extracted"

    @pytest.mark.parametrize("data", [CORRUPT_PDF, FAKE_EXE, b"%PDF-1.7\n", b""])
    def test_unreadable(self, data: bytes) -> None:
        assert extraction_error(data, DocumentKind.PDF) == "unreadable_document"


class TestExtractDocx:
    def test_headings_make_the_path_of_the_paragraphs_under_them(self) -> None:
        data = make_docx(
            [
                (None, "Before any heading."),
                (1, "Intro"),
                (None, "Why."),
                (None, "Still why."),
                (2, "Scope"),
                (None, "What."),
                (3, "Deep"),
                (None, "Deeper."),
                (1, "Usage"),
                (None, "How."),
                (2, "Empty heading"),
                (2, "Install"),
                (None, "Steps."),
            ]
        )
        extracted = extract(data, DocumentKind.DOCX, LIMITS)
        assert extracted.page_count is None
        assert extracted.sections == [
            Section(text="Before any heading.", page=None, heading=None),
            Section(text="Why.\n\nStill why.", page=None, heading="Intro"),
            Section(text="What.", page=None, heading="Intro > Scope"),
            Section(text="Deeper.", page=None, heading="Intro > Scope > Deep"),
            Section(text="How.", page=None, heading="Usage"),
            Section(text="Steps.", page=None, heading="Usage > Install"),
        ]

    def test_the_title_heads_the_path_and_tables_are_read(self) -> None:
        data = make_docx(
            [(0, "Handbook"), (1, "Prices"), (None, "See the table.")],
            table=[["Plan", "Price"], ["Basic", "10"], ["Pro", ""]],
        )
        assert read(data, DocumentKind.DOCX) == [
            Section(
                text="See the table.\n\nPlan | Price\n\nBasic | 10\n\nPro",
                page=None,
                heading="Handbook > Prices",
            )
        ]

    def test_a_style_based_on_a_heading_is_a_heading(self) -> None:
        document = docx.Document()
        chapter = document.styles.add_style("Chapter", WD_STYLE_TYPE.PARAGRAPH)
        chapter.base_style = document.styles["Heading 2"]
        document.add_heading("Book", 1)
        document.add_paragraph("Chapter one", style="Chapter")
        document.add_paragraph("Text.", style="Quote")
        buffer = io.BytesIO()
        document.save(buffer)
        assert read(buffer.getvalue(), DocumentKind.DOCX) == [
            Section(text="Text.", page=None, heading="Book > Chapter one")
        ]

    def test_no_text(self) -> None:
        data = make_docx([(1, "Only a heading"), (None, "   ")])
        assert extraction_error(data, DocumentKind.DOCX) == "no_text_extracted"

    def test_zip_bomb_fails_fast_without_inflating(self) -> None:
        bomb = make_zip_bomb_docx()
        assert len(bomb) < 2_000_000
        assert detect_kind(bomb, "bomb.docx") == DocumentKind.DOCX
        # Refused by the declared size, and by the ratio alone under a generous limit.
        for limits in (LIMITS, ExtractionLimits(10, 2 * ZIP_BOMB_UNCOMPRESSED_BYTES)):
            tracemalloc.start()
            started = time.monotonic()
            try:
                assert extraction_error(bomb, DocumentKind.DOCX, limits) == "document_too_large"
                _current, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert time.monotonic() - started < 2
            assert peak < 20_000_000

    def test_a_large_legitimate_document_passes_the_bomb_check(self) -> None:
        rng = random.Random(2)
        paragraphs = [(None, prose(rng, 8)) for _ in range(400)]
        sections = read(make_docx(paragraphs), DocumentKind.DOCX)
        assert len(sections) == 1
        assert sections[0].text.count("\n\n") == 399

    @pytest.mark.parametrize(
        "data",
        [
            make_zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<not xml"}),
            make_docx([(None, "cut")])[:2000],
            b"not a zip at all",
        ],
    )
    def test_unreadable(self, data: bytes) -> None:
        assert extraction_error(data, DocumentKind.DOCX) == "unreadable_document"


class TestExtractHtml:
    def test_chrome_dropped_headings_make_paths_entities_decoded(self) -> None:
        data = make_html(
            [
                (None, "Lead paragraph."),
                (1, "Guide"),
                (None, "Fish & chips < 5 €"),
                (2, "Setup"),
                (None, "First."),
                (None, "Second."),
                (2, "Use"),
                (None, "Third."),
            ]
        )
        sections = read(data, DocumentKind.HTML)
        assert sections == [
            Section(text="Lead paragraph.", page=None, heading=None),
            Section(text="Fish & chips < 5 €", page=None, heading="Guide"),
            Section(text="First.\n\nSecond.", page=None, heading="Guide > Setup"),
            Section(text="Third.", page=None, heading="Guide > Use"),
        ]
        assert CHROME_TEXT not in str(sections)

    def test_blocks_line_breaks_and_preformatted_text(self) -> None:
        page = (
            "<!doctype html><body><h2>Notes &amp; <em>more</em></h2>"
            "<div>one\n   two<br>three</div><ul><li>item&nbsp;a</li><li>item b</li></ul>"
            "<pre>  code\n    indented</pre>"
            "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>"
            "<style>p { color: red }</style><p>tail &#x263A;"
        )
        assert read(page.encode(), DocumentKind.HTML) == [
            Section(
                text="one two\nthree\n\nitem a\n\nitem b\n\n  code\n    indented\n\na b\n\nc d"
                "\n\ntail \u263a",
                page=None,
                heading="Notes & more",
            )
        ]

    def test_comments_dropped_and_a_stray_less_than_kept(self) -> None:
        page = b"<p>a < b</p><!-- <p>hidden</p> < --><pre>if x<y:</pre><p>z<!-- unclosed <p>gone"
        assert read(page, DocumentKind.HTML) == [
            Section(text="a < b\n\nif x<y:\n\nz", page=None, heading=None)
        ]

    @pytest.mark.parametrize("unclosed", ["<a", "<!--", "</", "<?", "<!", "<a b='", "<script>"])
    def test_markup_that_never_closes_takes_linear_time(self, unclosed: str) -> None:
        """html.parser alone takes minutes on these (it rescans the rest at each one)."""
        data = f"<p>first</p>{unclosed * 100_000}".encode()
        started = time.monotonic()
        sections = read(data, DocumentKind.HTML)
        assert time.monotonic() - started < 3
        assert sections[0].text.startswith("first")

    def test_no_text(self) -> None:
        data = make_html([(1, "Heading only")])
        assert extraction_error(data, DocumentKind.HTML) == "no_text_extracted"


class TestExtractMarkdown:
    def test_atx_headings_make_paths_and_fenced_code_stays(self) -> None:
        text = (
            "Preamble line one\nline two\n\n"
            "# Intro #\nWhy.\n\n"
            "## Scope\n"
            "```python\n# not a heading\n\nprint('x')\n```\n"
            "#not-a-heading either\n"
            "### Deep\nDeeper.\n"
            "## Next ##\nNext text.\n"
            "~~~\n## still code\n~~~\n"
        )
        assert read(text.encode(), DocumentKind.MARKDOWN) == [
            Section(text="Preamble line one\nline two", page=None, heading=None),
            Section(text="Why.", page=None, heading="Intro"),
            Section(
                text="```python\n# not a heading\n\nprint('x')\n```\n#not-a-heading either",
                page=None,
                heading="Intro > Scope",
            ),
            Section(text="Deeper.", page=None, heading="Intro > Scope > Deep"),
            Section(text="Next text.\n~~~\n## still code\n~~~", page=None, heading="Intro > Next"),
        ]

    def test_a_heading_with_a_long_run_of_spaces_takes_linear_time(self) -> None:
        data = ("# a" + " " * 200_000 + "b #\nbody").encode()
        started = time.monotonic()
        [section] = read(data, DocumentKind.MARKDOWN)
        assert time.monotonic() - started < 1
        assert section.heading == "a b"
        assert section.text == "body"

    def test_a_long_heading_path_is_bounded(self) -> None:
        text = "".join(f"{'#' * level} {'h' * 300}\n" for level in range(1, 7)) + "body"
        [section] = read(text.encode(), DocumentKind.MARKDOWN)
        assert section.heading is not None
        assert len(section.heading) == MAX_HEADING_PATH_CHARS


class TestExtractText:
    def test_paragraphs_split_on_blank_lines_and_tidied(self) -> None:
        text = "\ufeff  \r\nFirst line  \r\nsecond line\r\n\r\n\r\n \t \nNext\x00 para\x07.\n\n\n"
        assert read(text.encode(), DocumentKind.TEXT) == [
            Section(text="First line\nsecond line\n\nNext para.", page=None, heading=None)
        ]

    def test_empty(self) -> None:
        assert extraction_error(b" \n\n\t", DocumentKind.TEXT) == "no_text_extracted"

    def test_not_utf8(self) -> None:
        assert extraction_error(b"caf\xe9", DocumentKind.TEXT) == "unreadable_document"

    def test_more_text_than_allowed(self) -> None:
        limits = ExtractionLimits(max_pages=1, max_bytes=1024)
        assert extraction_error("é".encode() * 513, DocumentKind.TEXT, limits) == (
            "document_too_large"
        )
        assert read("é".encode() * 512, DocumentKind.TEXT, limits)

    def test_clean_removes_nul_and_unpaired_surrogates(self) -> None:
        assert clean("a\x00b\ud800c\udfffd\x1be") == "abcde"
        assert clean("x\u2028y\x0cz") == "x\ny\nz"


class TestExtractCsv:
    def test_one_section_per_row_with_its_column_names(self) -> None:
        data = make_csv(
            [
                ["name", "city", "note"],
                ["Ann", "Oslo", 'said "hi", twice'],
                ["", "", ""],
                ["Bo", "", "multi\nline"],
                ["Cy", "Rome", "x", "extra"],
            ]
        )
        assert read(data, DocumentKind.CSV) == [
            Section(
                text='name: Ann; city: Oslo; note: said "hi", twice', page=None, heading="row 1"
            ),
            Section(text="name: Bo; note: multi line", page=None, heading="row 2"),
            Section(
                text="name: Cy; city: Rome; note: x; column 4: extra", page=None, heading="row 3"
            ),
        ]

    def test_sniffed_dialect(self) -> None:
        data = b"\xef\xbb\xbfsku;price\r\nA-1;9,50\r\nB-2;12,00\r\n"
        assert [section.text for section in read(data, DocumentKind.CSV)] == [
            "sku: A-1; price: 9,50",
            "sku: B-2; price: 12,00",
        ]

    def test_header_only(self) -> None:
        assert extraction_error(b"a,b\n", DocumentKind.CSV) == "no_text_extracted"

    def test_a_field_beyond_the_size_bound(self) -> None:
        data = b'a,b\n1,"' + b"x" * 200_000 + b'"\n'
        assert extraction_error(data, DocumentKind.CSV) == "unreadable_document"


class TestExtractNeverRaisesAnythingElse:
    """Random bytes, truncations and bit flips of real files, read as every kind: the
    answer is sections or an ExtractionError with a documented code, nothing else."""

    CODES = frozenset(
        {"no_text_extracted", "encrypted_document", "unreadable_document", "document_too_large"}
    )
    SAMPLES: ClassVar[dict[DocumentKind, bytes]] = {
        DocumentKind.PDF: make_pdf(["Some text on a page.", "More on the next."]),
        DocumentKind.DOCX: make_docx([(1, "Head"), (None, "Body text.")], table=[["a", "b"]]),
        DocumentKind.HTML: make_html([(1, "Head"), (None, "Body <text> & more.")]),
        DocumentKind.MARKDOWN: b"# Head\n\n```\ncode\n```\n## Sub\ntext\n",
        DocumentKind.TEXT: "Plain text, ünïcode.\n\nSecond.".encode(),
        DocumentKind.CSV: make_csv([["a", "b"], ["1", '2 "quoted"'], ["3", "4"]]),
    }

    @pytest.mark.parametrize("kind", list(DocumentKind))
    def test_damaged_input(self, kind: DocumentKind) -> None:
        rng = random.Random(f"documents-{kind}")
        outcomes = {self._outcome(sample, kind) for sample in self._damaged(rng)}
        assert outcomes <= {*self.CODES, "read"}
        assert "unreadable_document" in outcomes or kind is DocumentKind.TEXT

    @staticmethod
    def _outcome(data: bytes, kind: DocumentKind) -> str:
        """An error's code, or "read" for sections that are all storable text."""
        try:
            extracted = extract(data, kind, ExtractionLimits(max_pages=20, max_bytes=1_000_000))
        except ExtractionError as error:
            return error.code
        readable = extracted.sections and all(
            s.text and "\x00" not in s.text for s in extracted.sections
        )
        return "read" if readable else "bad sections"

    def _damaged(self, rng: random.Random) -> list[bytes]:
        samples = [rng.randbytes(rng.randint(0, 3000)) for _ in range(15)]
        for original in self.SAMPLES.values():
            for _ in range(8):
                cut = rng.randint(0, len(original))
                samples.append(original[:cut])
                flipped = bytearray(original)
                for _ in range(rng.randint(1, 10)):
                    flipped[rng.randrange(len(flipped))] = rng.randrange(256)
                samples.append(bytes(flipped))
        return samples


# ==================== chunk_document ====================


def assert_invariants(extracted: Extracted, chunks: list[ChunkDraft]) -> None:
    """Offsets slice the full text, ordinals count up, and each chunk lies inside
    sections that all share its heading and page."""
    text = full_text(extracted)
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    bounds = []
    offset = 0
    for section in extracted.sections:
        bounds.append((offset, offset + len(section.text), section))
        offset += len(section.text) + len(SECTION_SEPARATOR)
    previous_end = 0
    for chunk in chunks:
        assert text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.text
        assert chunk.text == chunk.text.strip()
        assert chunk.char_start >= previous_end - len(chunk.text)  # reading order
        previous_end = chunk.char_end
        covered = [
            s for start, end, s in bounds if start < chunk.char_end and chunk.char_start < end
        ]
        assert covered
        assert {(s.heading, s.page) for s in covered} == {(chunk.heading, chunk.page_start)}
        assert chunk.page_start == chunk.page_end
    # Every character of the document but whitespace is in some chunk.
    covered_characters = bytearray(len(text))
    for chunk in chunks:
        covered_characters[chunk.char_start : chunk.char_end] = b"\x01" * len(chunk.text)
    assert all(covered_characters[i] or char.isspace() for i, char in enumerate(text))


class TestChunkDocument:
    def test_a_short_document_is_one_chunk(self) -> None:
        extracted = Extracted([Section("Hello there.", None, None)], page_count=None)
        assert chunk_document(extracted) == [ChunkDraft(0, "Hello there.", None, None, None, 0, 12)]

    def test_long_sections_split_near_the_target_with_overlap(self) -> None:
        rng = random.Random(3)
        text = "\n\n".join(prose(rng, rng.randint(1, 12)) for _ in range(60))
        extracted = Extracted([Section(text, 4, "Intro > Scope")], page_count=9)
        chunks = chunk_document(extracted, target_tokens=200, overlap_tokens=30)
        assert_invariants(extracted, chunks)
        assert len(chunks) > 5
        sizes = [estimate_tokens(chunk.text) for chunk in chunks]
        assert max(sizes) <= 200
        assert all(size >= 100 for size in sizes[:-1])
        for before, after in itertools.pairwise(chunks):
            assert after.char_start < before.char_end  # they overlap...
            assert 0 < estimate_tokens(text[after.char_start : before.char_end]) <= 30
            assert after.char_start > before.char_start  # ...and move on
            assert text[after.char_start - 1].isspace()  # at a word
        assert {(c.heading, c.page_start, c.page_end) for c in chunks} == {("Intro > Scope", 4, 4)}

    def test_pieces_end_at_paragraphs_then_sentences_then_words(self) -> None:
        sentence = "One two three four five six seven eight nine ten."  # 11 tokens
        words = " ".join(["word"] * 45)
        text = f"{sentence} {sentence}\n\n{' '.join([sentence] * 6)}\n\n{words}"
        extracted = Extracted([Section(text, None, None)], page_count=None)
        chunks = chunk_document(extracted, target_tokens=40, overlap_tokens=0)
        assert_invariants(extracted, chunks)
        assert [chunk.text for chunk in chunks] == [
            # A third sentence would fit, but ending at the paragraph leaves it half full.
            f"{sentence} {sentence}",
            " ".join([sentence] * 3),
            " ".join([sentence] * 3),
            " ".join(["word"] * 40),
            " ".join(["word"] * 5),
        ]

    def test_a_line_break_inside_a_sentence_is_the_last_place_to_cut(self) -> None:
        rng = random.Random(8)
        sentences = [" ".join(rng.choice(WORDS) for _ in range(12)) + "." for _ in range(12)]
        # Lines wrapped as a PDF page's are, mostly in the middle of sentences.
        text = "\n".join(textwrap.wrap(" ".join(sentences), 45))
        extracted = Extracted([Section(text, 1, None)], page_count=1)
        chunks = chunk_document(extracted, target_tokens=40, overlap_tokens=0)
        assert_invariants(extracted, chunks)
        assert len(chunks) >= 4
        assert all(chunk.text.endswith(".") for chunk in chunks)

    def test_never_across_headings_or_pages_but_small_neighbours_merge(self) -> None:
        extracted = Extracted(
            [
                Section("Page one, part one.", 1, "A"),
                Section("Page one, part two.", 1, "A"),
                Section("Page one under B.", 1, "A > B"),
                Section("Page two under B.", 2, "A > B"),
                Section("  ", 2, "A > B"),
                Section("Still page two.", 2, "A > B"),
            ],
            page_count=2,
        )
        chunks = chunk_document(extracted)
        assert_invariants(extracted, chunks)
        assert [(c.text, c.page_start, c.heading) for c in chunks] == [
            ("Page one, part one.\n\nPage one, part two.", 1, "A"),
            ("Page one under B.", 1, "A > B"),
            ("Page two under B.\n\n  \n\nStill page two.", 2, "A > B"),
        ]

    def test_pages_of_a_real_pdf(self) -> None:
        rng = random.Random(4)
        pages = [prose(rng, 25), "A short page.", prose(rng, 40)]
        extracted = extract(make_pdf(pages), DocumentKind.PDF, LIMITS)
        chunks = chunk_document(extracted, target_tokens=120, overlap_tokens=20)
        assert_invariants(extracted, chunks)
        assert [c.page_start for c in chunks] == sorted(c.page_start or 0 for c in chunks)
        assert {c.page_start for c in chunks} == {1, 2, 3}
        assert [c.text for c in chunks if c.page_start == 2] == ["A short page."]

    def test_headings_of_a_real_docx_and_rows_of_a_csv(self) -> None:
        rng = random.Random(5)
        data = make_docx([(1, "Intro"), (None, prose(rng, 30)), (2, "Scope"), (None, "Small.")])
        extracted = extract(data, DocumentKind.DOCX, LIMITS)
        chunks = chunk_document(extracted, target_tokens=100, overlap_tokens=10)
        assert_invariants(extracted, chunks)
        assert (chunks[-1].heading, chunks[-1].text) == ("Intro > Scope", "Small.")
        assert {c.heading for c in chunks[:-1]} == {"Intro"}

        rows = extract(make_csv([["k", "v"], ["a", "1"], ["b", "2"]]), DocumentKind.CSV, LIMITS)
        assert [(c.heading, c.text) for c in chunk_document(rows)] == [
            ("row 1", "k: a; v: 1"),
            ("row 2", "k: b; v: 2"),
        ]

    def test_a_huge_word_and_cjk_text_are_cut_too(self) -> None:
        extracted = Extracted(
            [Section("x" * 5000, None, "blob"), Section("知识库" * 300, None, "中文")],
            page_count=None,
        )
        chunks = chunk_document(extracted, target_tokens=100, overlap_tokens=10)
        assert_invariants(extracted, chunks)
        assert all(estimate_tokens(chunk.text) <= 100 for chunk in chunks)
        assert "".join(c.text for c in chunks if c.heading == "blob") == "x" * 5000
        assert len([c for c in chunks if c.heading == "中文"]) >= 9

    def test_long_runs_of_spaces_take_linear_time(self) -> None:
        text = "Words here. " * 200 + " " * 300_000 + "end. " + "\n \n" * 100_000 + "last"
        extracted = Extracted([Section(text, None, None)], page_count=None)
        started = time.monotonic()
        chunks = chunk_document(extracted, target_tokens=50, overlap_tokens=5)
        assert time.monotonic() - started < 2
        assert_invariants(extracted, chunks)
        assert chunks[-1].text.split()[-2:] == ["end.", "last"]

    def test_a_long_heading_is_bounded(self) -> None:
        extracted = Extracted([Section("text", None, "h" * 900)], page_count=None)
        [chunk] = chunk_document(extracted)
        assert chunk.heading == "h" * MAX_HEADING_PATH_CHARS

    def test_nothing_to_chunk(self) -> None:
        assert chunk_document(Extracted([], None)) == []
        assert chunk_document(Extracted([Section(" \n ", None, None)], None)) == []

    @pytest.mark.parametrize(("target", "overlap"), [(0, 0), (10, 10), (10, -1)])
    def test_bad_sizes(self, target: int, overlap: int) -> None:
        with pytest.raises(ValueError, match="target_tokens"):
            chunk_document(
                Extracted([Section("x", None, None)], None),
                target_tokens=target,
                overlap_tokens=overlap,
            )

    def test_random_documents_keep_every_invariant(self) -> None:
        rng = random.Random(6)
        pieces = [*WORDS, "\n", "\n\n", "\n \n", ".", "!", "x" * 70, "知识", "-", "  "]
        for _ in range(60):
            sections = [
                Section(
                    " ".join(rng.choice(pieces) for _ in range(rng.randint(0, 400))),
                    rng.choice([None, 1, 2]),
                    rng.choice([None, "A", "A > B"]),
                )
                for _ in range(rng.randint(1, 6))
            ]
            extracted = Extracted(sections, page_count=None)
            target = rng.randint(5, 120)
            overlap = rng.randint(0, target - 1)
            chunks = chunk_document(extracted, target_tokens=target, overlap_tokens=overlap)
            assert_invariants(extracted, chunks)
            assert all(estimate_tokens(chunk.text) <= target for chunk in chunks)


class TestEstimateTokens:
    @pytest.mark.parametrize(
        ("text", "tokens"),
        [
            ("", 0),
            ("Hello, world!", 4),
            ("knowledge", 2),
            ("a" * 40, 10),
            ("知识库 search", 4),
            ("https://example.com/a/b", 11),
        ],
    )
    def test_estimate(self, text: str, tokens: int) -> None:
        assert estimate_tokens(text) == tokens

    def test_english_prose_is_near_four_characters_a_token(self) -> None:
        text = prose(random.Random(7), 200)
        assert 3 <= len(text) / estimate_tokens(text) <= 6
        assert re.search(r"\w", text)
