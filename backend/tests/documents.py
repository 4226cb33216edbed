"""Real files for tests, built the way the tools people use build them: PDFs by reportlab
(read back by pypdf), Word documents by python-docx, HTML and CSV as text. Each builder
returns the file's bytes."""

import csv
import functools
import html
import io
import struct
import textwrap
import zipfile
from collections.abc import Sequence

import docx
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

ZIP_BOMB_UNCOMPRESSED_BYTES = 300 * 1_048_576
PDF_PASSWORD = "open sesame"

_MARGIN = 50
_FONT_SIZE = 9
_LEADING = 11
_LINE_CHARS = 100


def make_pdf(pages: list[str]) -> bytes:
    """A PDF with one page per string, its text drawn line by line (wrapped at 100
    characters; a blank line stays blank), so pypdf reads the words back."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=True)
    _width, height = A4
    for page in pages:
        text = pdf.beginText(_MARGIN, height - _MARGIN)
        text.setFont("Helvetica", _FONT_SIZE, leading=_LEADING)
        for line in page.split("\n"):
            for wrapped in textwrap.wrap(line, _LINE_CHARS) or [""]:
                text.textLine(wrapped)
        pdf.drawText(text)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def make_scanned_pdf(pages: int = 1) -> bytes:
    """A PDF of drawings only, as a scanner's would be to a text extractor: no text."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=True)
    for number in range(pages):
        pdf.rect(100, 100, 300 + number, 400, fill=1)
        pdf.line(50, 50, 500, 700)
        pdf.circle(300, 500, 80)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def make_encrypted_pdf(pages: list[str], *, algorithm: str = "AES-256") -> bytes:
    """make_pdf(pages) that opens only with PDF_PASSWORD."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(pages))))
    writer.encrypt(user_password=PDF_PASSWORD, owner_password="owner", algorithm=algorithm)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_owner_locked_pdf(pages: list[str]) -> bytes:
    """make_pdf(pages) encrypted with an owner password only: it opens without one."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf(pages))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def make_docx(
    blocks: Sequence[tuple[int | None, str]], *, table: list[list[str]] | None = None
) -> bytes:
    """A Word document: each block a heading of its level (0 is the title) or, for None, a
    paragraph; then `table`, if given, one list of cell texts per row."""
    document = docx.Document()
    for level, text in blocks:
        if level is None:
            document.add_paragraph(text)
        else:
            document.add_heading(text, level)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table, strict=True):
            for cell, value in zip(row.cells, values, strict=True):
                cell.text = value
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


@functools.cache
def make_zip_bomb_docx() -> bytes:
    """A real DOCX whose word/document.xml inflates to ZIP_BOMB_UNCOMPRESSED_BYTES of
    zeros (about 300 KB compressed). Written in slices: building it holds 1 MB at a time."""
    source = zipfile.ZipFile(io.BytesIO(make_docx([(None, "harmless")])))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bomb:
        for entry in source.infolist():
            if entry.filename != "word/document.xml":
                bomb.writestr(entry.filename, source.read(entry.filename))
                continue
            with bomb.open("word/document.xml", "w", force_zip64=True) as member:
                zeros = bytes(1_048_576)
                for _ in range(ZIP_BOMB_UNCOMPRESSED_BYTES // len(zeros)):
                    member.write(zeros)
    return buffer.getvalue()


def make_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


CHROME_TEXT = "SITE-CHROME"


def make_html(
    blocks: Sequence[tuple[int | None, str]], *, title: str = "A test page", chrome: bool = True
) -> bytes:
    """An HTML page: each block an <hN> of its level (1-6) or, for None, a <p>; text is
    escaped. With `chrome`, a script, a style, a nav, a header and a footer, each holding
    CHROME_TEXT, which extraction must drop."""
    body = "\n".join(
        f"<p>{html.escape(text)}</p>"
        if level is None
        else f"<h{level}>{html.escape(text)}</h{level}>"
        for level, text in blocks
    )
    head = f"<title>{html.escape(title)}</title>"
    if chrome:
        head += f"<style>body::before {{ content: '{CHROME_TEXT}'; }}</style>"
        head += f"<script>console.log('{CHROME_TEXT}');</script>"
        body = (
            f"<header><a href='/'>{CHROME_TEXT}</a></header>\n"
            f"<nav><ul><li><a href='/a'>{CHROME_TEXT}</a></li></ul></nav>\n"
            f"<main>\n{body}\n</main>\n"
            f"<footer><p>{CHROME_TEXT} &copy; 2026</p></footer>\n"
            f"<script>document.write('{CHROME_TEXT}')</script>"
        )
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
        f"{head}</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    return page.encode()


def make_csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()


def _fake_exe() -> bytes:
    """The start of a Windows PE file: a DOS header pointing at a PE signature and a COFF
    header, the DOS stub's message in between."""
    dos_header = b"MZ" + struct.pack("<29H", 0x90, 3, 0, 4, 0, 0xFFFF, 0, 0xB8, *([0] * 21))
    dos_header += struct.pack("<I", 0x80)  # e_lfanew: where the PE header starts
    stub = b"\x0e\x1f\xba\x0e\x00\xb4\x09\xcd\x21\xb8\x01\x4c\xcd\x21"
    stub += b"This program cannot be run in DOS mode.\r\r\n$"
    pe_header = b"PE\x00\x00" + struct.pack("<HHIIIHH", 0x8664, 3, 0, 0, 0, 0xF0, 0x22)
    return (dos_header + stub).ljust(0x80, b"\x00") + pe_header + bytes(256)


FAKE_EXE = _fake_exe()
# The first 300 bytes of a real PDF: a header, then the document cut off mid-object.
CORRUPT_PDF = make_pdf(["This file was cut off in transit."])[:300]
