"""Documents: PDF and HTML sniffing, reading, hostile files, and the pages view."""

from __future__ import annotations

import io
import time
import zlib
from types import SimpleNamespace

import pytest
from PIL import Image

from omnibind import documents, views
from omnibind.decoders import sniff
from omnibind.documents import Document, decode_html, decode_pdf
from omnibind.errors import InputError
from omnibind.inputs import load_bytes, load_file
from omnibind.views.document import PagesView


def make_pdf(pages: list[list[str]], title: str | None = None, streams: list[bytes] | None = None,
             image: Image.Image | None = None) -> bytes:
    """A small valid PDF written by hand: one page per list of lines (Helvetica), or raw content
    `streams` (compressed when bytes start with b'Z:'), or one full-page JPEG (a scanned page)."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    font = 3
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    contents = streams if streams is not None else [_text_stream(lines) for lines in pages]
    for stream in contents:
        extra = b""
        if stream.startswith(b"Z:"):
            stream, extra = zlib.compress(stream[2:], 9), b" /Filter /FlateDecode"
        objects.append(b"<< /Length %d%s >>\nstream\n" % (len(stream), extra) + stream + b"\nendstream")
        resources = b"<< /Font << /F1 %d 0 R >> >>" % font
        if image is not None:
            buf = io.BytesIO()
            image.convert("RGB").save(buf, "JPEG")
            jpeg = buf.getvalue()
            objects.append(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
                           b"/BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n"
                           % (image.width, image.height, len(jpeg)) + jpeg + b"\nendstream")
            resources = b"<< /XObject << /Im1 %d 0 R >> >>" % len(objects)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R /Resources %s >>"
                       % (len(objects) - (1 if image is not None else 0), resources))
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    info = b""
    if title:
        objects.append(b"<< /Title (%s) >>" % title.encode("latin-1"))
        info = b" /Info %d 0 R" % len(objects)
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info, xref)
    return bytes(out)


def _text_stream(lines: list[str]) -> bytes:
    body = b"BT /F1 12 Tf 72 720 Td 14 TL\n"
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        body += b"(%s) Tj T*\n" % escaped.encode("latin-1")
    return body + b"ET"


THREE_PAGES = [
    ["Chapter one: the lighthouse keeper lit the lamp every evening."],
    ["Chapter two: a storm broke the glass of the lantern room."],
    ["Chapter three: the ship reached the harbour safely at dawn."],
]


def test_pdf_pages_have_their_text_and_the_title():
    doc = decode_pdf(make_pdf(THREE_PAGES, title="Keeper"), "k.pdf")
    assert [p.number for p in doc.pages] == [1, 2, 3]
    assert "storm broke the glass" in doc.pages[1].text and "harbour" in doc.pages[2].text
    assert doc.title == "Keeper" and doc.format == "pdf" and not doc.truncated and doc.pages_total == 3


def test_a_pdf_file_is_a_document_not_text(tmp_path):
    data = make_pdf(THREE_PAGES)  # its whole head is plain ASCII: the text sniffer would take it
    assert data[:4096].decode("ascii") and sniff(data[:4096]) == "document"
    path = tmp_path / "plain.pdf"
    path.write_bytes(data)
    item = load_file(path)
    assert item.modality == "document" and isinstance(item.payload, Document)
    assert len(item.payload.pages) == 3


def test_text_that_mentions_a_pdf_header_stays_text():
    note = b"My notes: every PDF starts with %PDF-1.7 and ends with %%EOF; nothing else here."
    assert load_bytes(note, "notes.txt").modality == "text"


def _encrypted(user_password: str) -> bytes:
    import pypdf

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(THREE_PAGES))))
    writer.encrypt(user_password, "owner-secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_encrypted_pdf_is_an_input_error_naming_encryption():
    with pytest.raises(InputError, match="encrypted PDF: it needs a password") as err:
        load_bytes(_encrypted("letmein"), "secret.pdf")
    assert err.value.source == "secret.pdf"


def test_pdf_encrypted_with_an_empty_password_is_read():
    doc = load_bytes(_encrypted(""), "permissions.pdf").payload
    assert "lighthouse keeper" in doc.pages[0].text


def test_truncated_pdf_is_an_input_error():
    data = make_pdf(THREE_PAGES)
    with pytest.raises(InputError, match="truncated PDF"):
        load_bytes(data[: len(data) * 2 // 3], "cut.pdf")


def test_corrupt_pdf_is_an_input_error():
    with pytest.raises(InputError, match="corrupt PDF|no page"):
        load_bytes(b"%PDF-1.4\n" + b"\x00garbage\xff" * 300 + b"\n%%EOF\n", "junk.pdf")


def test_long_pdf_is_capped_not_refused(monkeypatch):
    monkeypatch.setattr(documents, "MAX_PAGES", 2)
    doc = decode_pdf(make_pdf([[f"page number {i} text"] for i in range(5)]), "long.pdf")
    assert len(doc.pages) == 2 and doc.pages_total == 5 and doc.truncated


def test_decompression_bomb_page_is_bounded():
    bomb = b"Z:" + b"BT /F1 12 Tf 72 720 Td (boom) Tj ET " + b" " * 100_000_000  # ~100 KB compressed
    data = make_pdf([], streams=[_text_stream(["a fine first page"]), bomb])
    start = time.perf_counter()
    doc = decode_pdf(data, "bomb.pdf")
    assert time.perf_counter() - start < 10
    assert "fine first page" in doc.pages[0].text
    assert doc.problems and doc.problems[0].startswith("page 2: LimitReached")  # pypdf stops inflating at 75 MB
    assert doc.pages[1].text == ""


def test_deeply_nested_content_is_bounded():
    nested = b"[" * 200_000 + b"]" * 200_000
    data = make_pdf([], streams=[_text_stream(["survivor page"]), b"BT " + nested + b" TJ ET"])
    try:
        doc = decode_pdf(data, "deep.pdf")
    except InputError:
        return
    assert "survivor page" in doc.pages[0].text


def test_html_visible_text_without_script_or_style():
    html = (b"<!DOCTYPE html><html><head><title>Garden notes</title><style>p {color: red}</style>"
            b"<script>var secret = 'do not index';</script></head><body><p>Tomatoes need sun.</p>"
            b"<h1>Watering</h1><p>Water early &amp; deeply.</p><script>track()</script>"
            b"<h2>Pests</h2><div>Aphids<br>slugs</div></body></html>")
    doc = load_bytes(html, "garden.html").payload
    assert doc.format == "html" and doc.title == "Garden notes"
    assert [p.heading for p in doc.pages] == [None, "Watering", "Pests"]
    assert "secret" not in doc.text and "color" not in doc.text and "track" not in doc.text
    assert "Water early & deeply." in doc.pages[1].text and "slugs" in doc.pages[2].text


def test_html_without_closing_head_still_has_its_body():
    doc = decode_html(b"<html><head><title>x</title><body><p>visible words</p>", "open.html")
    assert "visible words" in doc.text


def test_text_containing_a_tag_is_still_text():
    assert load_bytes(b"Remember: use <b>bold</b> sparingly in emails.", "n.txt").modality == "text"
    assert load_bytes(b"# Title\n\nSome markdown with <em>inline</em> HTML.\n", "r.md").modality == "text"
    assert load_bytes(b"  <!DOCTYPE html>\n<html><body>hello page</body></html>", "p.txt").modality == "document"


def test_html_with_no_visible_text_is_an_input_error():
    with pytest.raises(InputError, match="no visible text"):
        load_bytes(b"<html><head><script>only()</script></head><body></body></html>", "empty.html")


def _word_space() -> SimpleNamespace:
    """A stand-in space whose anchor has no tokenizer: the chunker falls back to words (fast)."""
    return SimpleNamespace(anchor="text", towers={"text": SimpleNamespace(backbone=SimpleNamespace())})


def test_pages_view_chunks_every_page_with_its_number_and_range():
    long_page = " ".join(f"Sentence {i} about harbours and lighthouses." for i in range(80))
    doc = decode_pdf(make_pdf([["short first page text"], [long_page[i:i + 90] for i in range(0, len(long_page), 90)]]),
                     "p.pdf")
    segments = PagesView().segments(_item(doc), _word_space())
    pages = [s.page for s in segments]
    assert pages[0] == 1 and pages.count(2) >= 3 and all(s.kind == "page" for s in segments)
    for s in segments:
        text = doc.pages[s.page - 1].text
        assert text[s.chars[0]:s.chars[1]] == s.text


def _item(doc: Document):
    from omnibind.inputs import Input

    return Input("document", doc, doc.source)


class _FakeOcr:
    name, modalities = "ocr", ("image",)

    def segments(self, item, space):
        assert item.payload.size == (300, 400)
        return [views.Segment("ocr", text="Invoice total due in thirty days", confidence=0.9)]


def test_scanned_page_offers_its_image_and_is_read_by_ocr():
    scan = Image.new("RGB", (300, 400), "white")
    doc = decode_pdf(make_pdf([], streams=[b"q 612 0 0 792 0 0 cm /Im1 Do Q"], image=scan), "scan.pdf")
    assert doc.pages[0].scanned and doc.pages[0].image().size == (300, 400)
    views.register("ocr", _FakeOcr)
    try:
        segments = PagesView().segments(_item(doc), _word_space())
    finally:
        views.register("ocr", "omnibind.views.ocr:OcrView")
    assert [(s.kind, s.page, s.text) for s in segments] == [("page", 1, "Invoice total due in thirty days")]


def test_document_row_claims_pdf_and_html_names_and_leaves_markdown_to_text():
    from omnibind import modalities

    assert [modalities.by_extension(f"x{s}") for s in (".pdf", ".html", ".htm", ".xhtml", ".md")] == \
        ["document"] * 4 + ["text"]
    assert modalities.get("document").calibration_name == "text"


def test_eval_queries_are_two_per_document_in_the_middle_and_at_the_end():
    from collections import Counter

    from omnibind.evaluate.documents import DISTRACTORS, load_queries

    queries = load_queries()
    per_doc = Counter(q.doc for q in queries)
    assert len(per_doc) >= 20 and set(per_doc.values()) == {2} and not set(per_doc) & set(DISTRACTORS)
    assert {(q.doc, q.position) for q in queries} == {(d, p) for d in per_doc for p in ("middle", "end")}
    assert all(q.text and q.evidence and q.page >= 2 for q in queries)


def test_eval_rankings_by_best_chunk_top_two_and_item_vector():
    import numpy as np

    from omnibind.evaluate.documents import Query, _doc_scores, answer_pages

    vectors = np.eye(4, dtype=np.float32)  # doc 0: chunks 0, 1; doc 1: chunks 2, 3
    owner = np.array([0, 0, 1, 1])
    sims = np.array([[0.9, 0.0, 0.5, 0.5]], dtype=np.float32)
    tables = _doc_scores(sims, owner, 2, vectors)
    assert tables["max"][0].tolist() == pytest.approx([0.9, 0.5])
    assert tables["top2"][0].tolist() == pytest.approx([0.45, 0.5])
    assert tables["item"][0].tolist() == pytest.approx([0.45 * 2 ** 0.5, 0.5 * 2 ** 0.5])
    doc = decode_pdf(make_pdf(THREE_PAGES), "k.pdf")
    moved = Query("k", "end", 1, "the ship   REACHED", "q")
    assert answer_pages(doc, moved) == {3} and answer_pages(doc, Query("k", "end", 2, "nowhere", "q")) == {2}
