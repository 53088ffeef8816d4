"""Documents: PDF and HTML files read into pages of text.

A document is not embedded by a tower of its own: its words are. The reader turns the file into
a `Document` (title, pages of text), the pages view (`omnibind/views/document.py`) cuts each page
into anchor-sized chunks, and the item's vector is built from those. PDFs are read with pypdf
(BSD; it has no rasteriser, so a scanned page offers its largest embedded image for OCR), HTML
with the standard library's parser (visible text only; one "page" per <h1>/<h2> section).

Every bad file is an `InputError` naming it: encrypted, truncated or corrupt PDFs, undecodable
HTML. Long documents are bounded (pages, characters), never refused for being long: what was
left out is recorded on the `Document`.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from PIL import Image

from omnibind import decoders
from omnibind.decoders import Data, Limits
from omnibind.errors import InputError

MAX_PAGES = 2000  # pages read from one document; later pages are left out (Document.pages_total says how many there were)
MAX_CHARS = 4_000_000  # characters of text kept from one document (~1,600 pages of prose)
MAX_HTML_BYTES = 64 * 1024**2  # an HTML file larger than this is refused (markup included)
SCANNED_CHARS = 16  # a PDF page with fewer characters of text than this counts as scanned (image only)
_EOF_WINDOW = 1024  # a complete PDF ends with %%EOF within its last KiB (as Acrobat requires)


@dataclass
class Page:
    """One page (PDF) or section (HTML) of a document. `number` is 1-based."""

    number: int
    text: str
    heading: str | None = None  # HTML: the section's <h1>/<h2> text
    _image: Callable[[], Image.Image | None] | None = field(default=None, repr=False)

    @property
    def scanned(self) -> bool:
        """A page without a text layer that carries an image: its words can only come from OCR."""
        return self._image is not None and len(self.text.strip()) < SCANNED_CHARS

    def image(self) -> Image.Image | None:
        """The page as a picture for OCR: its largest embedded image (pypdf cannot rasterise a
        page, so drawn vector text and layouts are not rendered). None when there is none."""
        return self._image() if self._image is not None else None


@dataclass
class Document:
    """A decoded document: where it came from, its title, its pages."""

    source: str
    title: str | None
    pages: list[Page]
    format: str  # "pdf" or "html"
    pages_total: int = 0  # pages in the file (more than len(pages) when capped)
    truncated: bool = False  # pages or characters were left out by MAX_PAGES / MAX_CHARS
    problems: list[str] = field(default_factory=list)  # pages that could not be read, and why

    @property
    def text(self) -> str:
        """All pages' text, pages separated by a blank line."""
        return "\n\n".join(p.text for p in self.pages if p.text.strip())

    def __str__(self) -> str:  # snippets and logs show the words, not the dataclass
        return self.text


# ---------------------------------------------------------------------------------------------
# Sniffing

_HTML_START = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]{0,200}\?>\s*)?(?:<!--.{0,2000}?-->\s*)*"
    rb"(?:<!doctype\s+html\b|<html[\s>]|<head[\s>]|<body[\s>])",
    re.IGNORECASE | re.DOTALL,
)


def is_pdf(head: bytes) -> bool:
    """`%PDF-` at the start, or later in the first KiB with PDF objects after it."""
    return decoders.sniff(head) == "document"


def is_html(head: bytes) -> bool:
    """An HTML document: after an optional BOM, XML declaration and comments, the first thing is
    a doctype, <html>, <head> or <body>. A text that merely contains a tag stays text."""
    return _HTML_START.match(head) is not None


# ---------------------------------------------------------------------------------------------
# PDF


def decode_pdf(data: Data, source: str, limits: Limits | None = None) -> Document:
    """A PDF's pages of text (pypdf). Encrypted (without an empty password), truncated and
    corrupt files raise InputError; a page that fails alone is recorded in `problems`."""
    try:
        import pypdf
        from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError
    except ImportError:
        raise InputError(source, "reading PDFs needs the package pypdf (pip install pypdf)") from None

    if bytes(data[-_EOF_WINDOW:]).find(b"%%EOF") < 0:
        raise InputError(source, "truncated PDF file: no %%EOF marker at its end")
    try:
        reader = pypdf.PdfReader(io.BytesIO(bytes(data)), strict=False)
        _unlock(reader, source)
        total = len(reader.pages)
        title = _pdf_title(reader)
    except InputError:
        raise
    except (FileNotDecryptedError, DependencyError) as exc:
        raise InputError(source, f"encrypted PDF: cannot decrypt it ({exc})") from None
    except (PdfReadError, RecursionError, Exception) as exc:  # pypdf raises many types on bad files
        raise InputError(source, f"corrupt PDF file: {type(exc).__name__}: {exc}") from None
    if total == 0:
        raise InputError(source, "PDF file has no pages")
    doc = Document(source, title, [], "pdf", pages_total=total, truncated=total > MAX_PAGES)
    _read_pdf_pages(reader, doc, limits)
    if doc.problems and len(doc.problems) == min(total, MAX_PAGES):
        raise InputError(source, f"corrupt PDF file: no page could be read ({doc.problems[0]})")
    return doc


def _unlock(reader: Any, source: str) -> None:
    """Open an encrypted PDF with the empty user password (permission-only encryption, common
    and readable by every viewer); anything else needs a password we do not have."""
    if not reader.is_encrypted:
        return
    try:
        ok = reader.decrypt("")
    except Exception as exc:  # AES needs the `cryptography` package; odd handlers raise too
        raise InputError(source, f"encrypted PDF: cannot decrypt it ({type(exc).__name__}: {exc})") from None
    if not ok:
        raise InputError(source, "encrypted PDF: it needs a password")


def _pdf_title(reader: Any) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata is not None else None
    except Exception:
        return None
    return str(title).strip() or None if title else None


def _read_pdf_pages(reader: Any, doc: Document, limits: Limits | None) -> None:
    """Text of each page up to MAX_PAGES pages and MAX_CHARS characters."""
    chars = 0
    max_pixels = limits.max_image_pixels if limits is not None else 64_000_000
    for index in range(min(doc.pages_total, MAX_PAGES)):
        try:
            page = reader.pages[index]
            text = _clean(page.extract_text() or "")
        except Exception as exc:  # one bad page does not lose the document
            doc.problems.append(f"page {index + 1}: {type(exc).__name__}: {exc}"[:300])
            page, text = None, ""
        if chars + len(text) > MAX_CHARS:
            text, doc.truncated = text[: MAX_CHARS - chars], True
        chars += len(text)
        image = _image_getter(page, doc.source, max_pixels) if page is not None and len(text.strip()) < SCANNED_CHARS else None
        doc.pages.append(Page(index + 1, text, _image=image))
        if chars >= MAX_CHARS:
            break


_SPACES = re.compile(r"[ \t\u00a0]+")
_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")


def _clean(text: str) -> str:
    """Extracted text: NULs dropped, runs of spaces collapsed, words hyphenated across lines joined."""
    text = text.replace("\x00", "")
    text = _SPACES.sub(" ", text)
    return _HYPHEN_BREAK.sub(r"\1\2", text).strip()


def _image_getter(page: Any, source: str, max_pixels: int) -> Callable[[], Image.Image | None] | None:
    """A loader of the page's largest embedded image (a scanned page is one big image), or None
    when the page has no images. Loaded only when asked (OCR)."""
    try:
        images = list(page.images) if "/Resources" in page else []
    except Exception:
        return None
    if not images:
        return None

    def load() -> Image.Image | None:
        best = None
        for image_file in images:
            try:
                image = image_file.image
            except Exception:  # JBIG2 without jbig2dec, broken streams: no picture of this one
                continue
            if image is None or image.width * image.height > max_pixels:
                continue
            if best is None or image.width * image.height > best.width * best.height:
                best = image
        return best

    return load


# ---------------------------------------------------------------------------------------------
# HTML

_SKIP = frozenset({"script", "style", "template", "noscript", "svg", "math", "iframe", "object"})
_BLOCK = frozenset({
    "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer", "nav",
    "aside", "main", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "dd", "dt", "dl", "figure",
    "figcaption", "hr", "form", "fieldset", "address", "details", "summary", "caption",
})
_VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "track", "wbr"})


class _VisibleText(HTMLParser):
    """Collects visible text, split into sections at <h1>/<h2>; <title> kept apart."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[tuple[str | None, list[str]]] = [(None, [])]
        self.skip_depth = 0
        self.title: list[str] = []
        self.in_title = False
        self.heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP and tag not in _VOID:
            self.skip_depth += 1
        elif tag == "title":
            self.in_title = True
        elif tag in ("h1", "h2") and not self.skip_depth:
            self.sections.append((None, []))
            self.heading = []
        if tag in _BLOCK:
            self.sections[-1][1].append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and tag not in _VOID:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "title":
            self.in_title = False
        elif tag in ("h1", "h2") and self.heading is not None:
            words = " ".join("".join(self.heading).split())
            self.sections[-1] = (words or None, self.sections[-1][1])
            self.heading = None
        if tag in _BLOCK:
            self.sections[-1][1].append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif not self.skip_depth:
            self.sections[-1][1].append(data)
            if self.heading is not None:
                self.heading.append(data)


_META_CHARSET = re.compile(rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]{1,40})", re.IGNORECASE)


def _html_text(data: Data, source: str) -> str:
    """The file as text: BOM, else <meta charset>, else UTF-8 (bad bytes replaced: browsers do)."""
    raw = bytes(data)
    if raw.startswith(codecs.BOM_UTF8):
        return raw[3:].decode("utf-8", errors="replace")
    for bom, name in ((codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            return raw.decode(name, errors="replace")
    found = _META_CHARSET.search(raw[:4096])
    encoding = "utf-8"
    if found:
        try:
            encoding = codecs.lookup(found.group(1).decode("ascii")).name
        except LookupError:
            pass
    if encoding.startswith("utf-16"):  # a <meta> that says UTF-16 in ASCII bytes is lying
        encoding = "utf-8"
    return raw.decode(encoding, errors="replace")


_BLANK_LINES = re.compile(r"\n\s*\n\s*")


def decode_html(data: Data, source: str, limits: Limits | None = None) -> Document:
    """An HTML file's visible text (no script, style or head), one page per <h1>/<h2> section."""
    if len(data) > MAX_HTML_BYTES:
        raise InputError(source, f"HTML file is {len(data)} bytes, over the limit of {MAX_HTML_BYTES}")
    parser = _VisibleText()
    try:
        parser.feed(_html_text(data, source))
        parser.close()
    except Exception as exc:  # html.parser is lenient; this is a last resort
        raise InputError(source, f"cannot parse HTML: {type(exc).__name__}: {exc}") from None
    pages, chars, truncated = [], 0, False
    for heading, parts in parser.sections:
        text = _BLANK_LINES.sub("\n\n", "\n".join(_SPACES.sub(" ", line).strip() for line in "".join(parts).split("\n")))
        text = text.strip()
        if not text:
            continue
        if len(pages) >= MAX_PAGES or chars + len(text) > MAX_CHARS:
            truncated = True
            text = text[: max(0, MAX_CHARS - chars)]
            if not text or len(pages) >= MAX_PAGES:
                break
        chars += len(text)
        pages.append(Page(len(pages) + 1, text, heading=heading))
    if not pages:
        raise InputError(source, "HTML file has no visible text")
    title = " ".join("".join(parser.title).split()) or None
    return Document(source, title, pages, "html", pages_total=len(parser.sections), truncated=truncated)


def decode_document(data: Data, source: str, limits: Limits) -> Document:
    """The document modality's decoder: PDF or HTML, by content."""
    head = bytes(data[:4096])
    if is_pdf(head):
        return decode_pdf(data, source, limits)
    if is_html(head):
        return decode_html(data, source, limits)
    raise InputError(source, "not a PDF or HTML document")


def sniff_document(head: bytes, data: Data, source: str) -> bool:
    """The modality table's sniffer for documents: a PDF, or a text file that is an HTML page."""
    family = decoders.sniff(head)
    return family == "document" or (family == "text" and is_html(head))


def thumbnail(doc: Document) -> Image.Image | None:
    """A preview for result pages: the first page's image if it is scanned, else none."""
    first = doc.pages[0] if doc.pages else None
    return first.image() if first is not None and first.scanned else None
