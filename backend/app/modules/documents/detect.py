"""What kind of document a file is, decided by its bytes.

A file's name is never trusted with the format: a PDF is a file that starts `%PDF-`, a
DOCX a ZIP whose central directory holds a Word document, and everything else must be
valid UTF-8 text. Only among text does the name's extension choose between markdown, CSV
and plain text, since those read the same byte for byte. Executables, images, archives and
other Office formats are refused, whatever they are called.
"""

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from enum import StrEnum


class DocumentKind(StrEnum):
    PDF = "pdf"
    DOCX = "docx"
    HTML = "html"
    MARKDOWN = "markdown"
    TEXT = "text"
    CSV = "csv"


CONTENT_TYPES: dict[DocumentKind, str] = {
    DocumentKind.PDF: "application/pdf",
    DocumentKind.DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    DocumentKind.HTML: "text/html",
    DocumentKind.MARKDOWN: "text/markdown",
    DocumentKind.TEXT: "text/plain",
    DocumentKind.CSV: "text/csv",
}


class UnsupportedDocument(Exception):  # noqa: N818 (the shared interface names it)
    """The file is not a kind we can read; `message` says why, for the person uploading."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


# Signatures that no text file starts with (each holds a byte outside printable ASCII),
# so refusing them by name gives a clearer answer than "not UTF-8".
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xfe", "Only UTF-8 text is supported; this file is UTF-16"),
    (b"\xfe\xff", "Only UTF-8 text is supported; this file is UTF-16"),
    (b"\x7fELF", "Executable files are not supported"),
    (b"\xfe\xed\xfa\xce", "Executable files are not supported"),
    (b"\xfe\xed\xfa\xcf", "Executable files are not supported"),
    (b"\xce\xfa\xed\xfe", "Executable files are not supported"),
    (b"\xcf\xfa\xed\xfe", "Executable files are not supported"),
    (b"\xca\xfe\xba\xbe", "Executable files are not supported"),
    (b"\x89PNG\r\n\x1a\n", "Images are not supported"),
    (b"\xff\xd8\xff", "Images are not supported"),
    (b"\x1f\x8b", "Compressed archives are not supported"),
    (b"7z\xbc\xaf\x27\x1c", "Compressed archives are not supported"),
    (b"Rar!\x1a\x07", "Compressed archives are not supported"),
    (b"\xfd7zXZ\x00", "Compressed archives are not supported"),
    (b"\x28\xb5\x2f\xfd", "Compressed archives are not supported"),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "Legacy Office files (.doc, .xls, .ppt) are not supported",
    ),
)
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_TEXT_IMAGE = re.compile(rb"\A(GIF8[79]a|RIFF....WEBP|II\*\x00|MM\x00\*)", re.DOTALL)

# C0 controls other than tab, newlines and form feeds, DEL and the C1 controls: text has
# few of them (an escape sequence in a log), binary data that happens to decode has many.
_CONTROL = re.compile(r"[\x01-\x08\x0e-\x1f\x7f-\x9f]")
_MAX_CONTROL_RATIO = 0.05

# What may stand before the first tag of an HTML file: a BOM, whitespace, an XML prolog,
# comments.
_HTML_PREAMBLE = re.compile(r"\A(?:\s+|<\?xml[^>]{0,500}\?>|<!--.*?-->)*", re.DOTALL)
_HTML_START = re.compile(r"<(?:!doctype\s+html|html|head|body)[\s>/]", re.IGNORECASE)
_SVG_START = re.compile(r"<(?:!doctype\s+svg|svg)[\s>/]", re.IGNORECASE)
_CLOSING_TAG = re.compile(r"</[a-zA-Z][a-zA-Z0-9]*\s*>")
_HTML_EXTENSIONS = frozenset({"html", "htm", "xhtml"})
_MARKDOWN_EXTENSIONS = frozenset({"md", "markdown"})

_CSV_SNIFF_CHARS = 16_384
_CSV_DELIMITERS = ",\t;|"


def detect_kind(data: bytes, filename: str) -> DocumentKind:
    """The kind of `data`, or UnsupportedDocument. `filename` only tells markdown, CSV and
    plain text apart (and lets an HTML fragment named .html be read as HTML)."""
    head = data[:1024]
    if head.lstrip().startswith(b"%PDF-"):
        return DocumentKind.PDF
    if head.startswith(_ZIP_SIGNATURES):
        return _detect_zip(data)
    for signature, message in _BINARY_SIGNATURES:
        if head.startswith(signature):
            raise UnsupportedDocument(message)
    if head.startswith(b"MZ") and b"\x00" in head[:64]:
        raise UnsupportedDocument("Executable files are not supported")
    if _TEXT_IMAGE.match(head):
        raise UnsupportedDocument("Images are not supported")
    text = _decode_text(data)
    return _detect_text(text, _extension(filename))


def _detect_zip(data: bytes) -> DocumentKind:
    """A DOCX, read off the central directory only: nothing is decompressed here."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except Exception as error:  # zipfile's many ways of refusing a damaged archive
        raise UnsupportedDocument("The file is a damaged ZIP archive") from error
    if "word/document.xml" in names and "[Content_Types].xml" in names:
        return DocumentKind.DOCX
    raise UnsupportedDocument(
        "ZIP archives are not supported, nor Office files other than Word (.docx)"
    )


def _decode_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnsupportedDocument(
            "The file is neither a PDF, a Word document nor UTF-8 text"
        ) from error
    if "\x00" in text:
        raise UnsupportedDocument("The file is binary, not text")
    controls = sum(1 for _ in _CONTROL.finditer(text))
    if controls > len(text) * _MAX_CONTROL_RATIO:
        raise UnsupportedDocument("The file is binary, not text")
    return text


def _detect_text(text: str, extension: str) -> DocumentKind:
    start = _HTML_PREAMBLE.match(text[:65_536])
    rest = text[start.end() if start else 0 :]
    if _HTML_START.match(rest):
        return DocumentKind.HTML
    if _SVG_START.match(rest):
        raise UnsupportedDocument("Images are not supported")
    if rest.startswith("{\\rtf"):
        raise UnsupportedDocument("Rich Text Format files are not supported")
    if extension in _HTML_EXTENSIONS and rest.startswith("<") and _CLOSING_TAG.search(rest):
        return DocumentKind.HTML
    if extension in _MARKDOWN_EXTENSIONS:
        return DocumentKind.MARKDOWN
    if extension == "csv" and _is_table(text):
        return DocumentKind.CSV
    return DocumentKind.TEXT


def _extension(filename: str) -> str:
    name = filename.replace("\\", "/").rpartition("/")[2]
    stem, dot, extension = name.rpartition(".")
    return extension.lower() if dot and stem else ""


def csv_rows(text: str) -> Iterator[list[str]]:
    """The non-empty rows of CSV text. Fields stay within the csv module's default size
    limit; a longer one raises csv.Error."""
    delimiter = _sniff_delimiter(text)
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
        if any(field.strip() for field in row):
            yield row


def _sniff_delimiter(text: str) -> str:
    """The first of , tab ; | that splits the rows at the start of the text into the same
    number (two or more) of columns; a comma when none does. (csv.Sniffer guesses wrong
    on short files.)"""
    sample = text[:_CSV_SNIFF_CHARS]
    for delimiter in _CSV_DELIMITERS:
        try:
            rows = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
            widths = [len(row) for row in rows if any(field.strip() for field in row)]
        except csv.Error:
            continue
        if len(text) > len(sample):
            widths = widths[:-1]  # the sample may end inside a row
        if widths and min(widths) == max(widths) >= 2:
            return delimiter
    return ","


def _is_table(text: str) -> bool:
    """Whether the text parses as CSV with the same number (two or more) of columns on
    every row."""
    columns: int | None = None
    try:
        for row in csv_rows(text):
            if columns is None:
                columns = len(row)
            elif len(row) != columns:
                return False
    except csv.Error:
        return False
    return columns is not None and columns >= 2
