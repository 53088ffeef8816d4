"""Pages: a document's pages, cut into anchor-sized chunks, as located segments.

A PDF or HTML item (`omnibind.documents.Document`) is embedded through its words: every page
(an HTML section counts as a page) is cut by the anchor's tokenizer (`omnibind.views.chunks`)
and each piece becomes a "page" segment that knows its page number and its character range
within the page, so a search can say "page 7" and show the words. A scanned page (no text
layer, one big image) is read by the OCR view when one is registered and works.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnibind.views import Segment
from omnibind.views.chunks import text_chunks

if TYPE_CHECKING:
    from omnibind.documents import Document, Page
    from omnibind.inputs import Input
    from omnibind.space import Space
    from omnibind.views.chunks import Chunker


class PagesView:
    """Document items -> one segment per chunk of each page (kind "page")."""

    name = "pages"
    modalities = ("document",)
    shapes_vector = True  # a document's vector is the mean of its pages' chunks

    def segments(self, item: "Input", space: "Space") -> list[Segment]:
        from omnibind.documents import Document

        if item.modality not in self.modalities or not isinstance(item.payload, Document):
            return []
        return document_segments(item.payload, space)


def document_segments(doc: "Document", space: "Space", cutter: "Chunker | None" = None) -> list[Segment]:
    """Every page's chunks, in page order; scanned pages through OCR when it is available.
    `cutter` replaces the space's chunker (evaluation)."""
    out: list[Segment] = []
    ocr = None
    for page in doc.pages:
        if page.scanned:
            ocr = ocr if ocr is not None else _ocr_view()
            out += _scanned_page(page, doc.source, space, ocr, cutter) if ocr else []
        elif page.text.strip():
            out += text_chunks(page.text, space, kind="page", page=page.number, cutter=cutter)
    return out


def _ocr_view() -> object | bool:
    """The registered OCR view, or False when there is none (not built, or its model is missing)."""
    try:
        from omnibind import views

        return views.get("ocr")
    except (ImportError, ValueError, ModuleNotFoundError):
        return False


def _scanned_page(page: "Page", source: str, space: "Space", ocr: object, cutter: "Chunker | None") -> list[Segment]:
    """OCR the page's image; its words, joined in reading order, are chunked like any page."""
    from omnibind.inputs import Input

    image = page.image()
    if image is None:
        return []
    found = ocr.segments(Input("image", image.convert("RGB"), f"{source}#page={page.number}"), space)  # type: ignore[attr-defined]
    words = [s for s in found if s.text]
    if not words:
        return []
    text = page.text = "\n".join(s.text for s in words if s.text)  # the OCR text becomes the page's text
    confidences = [s.confidence for s in words if s.confidence is not None]
    segments = text_chunks(text, space, kind="page", page=page.number, cutter=cutter)
    for segment in segments:
        segment.confidence = min(confidences) if confidences else None
    return segments
