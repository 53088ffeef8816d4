"""The chunks view: long texts cut by the anchor's own tokenizer, so their end is found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from omnibind.inputs import Input
from omnibind.views import chunks
from omnibind.views.chunks import ChunksView, WordTokenizer, chunk_spans, chunker, needs_chunking, text_chunks

LICENSES = Path("/usr/share/common-licenses")  # Debian base-files: always there on Debian
PLANTED = ("Postscript from the kitchen: our golden retriever figured out how to pull open the refrigerator "
           "door and devoured the entire birthday cake before the party.")


def _token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _check_cover(text: str, spans: list[tuple[int, int]]) -> None:
    """Spans are in order, overlap or touch, and every non-blank character lies in one."""
    covered = np.zeros(len(text), dtype=bool)
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert s0 < s1 <= e0 < e1 or (s1 >= e0 and not text[e0:s1].strip()), ((s0, e0), (s1, e1))
    for s, e in spans:
        covered[s:e] = True
    missed = [i for i in np.flatnonzero(~covered) if not text[i].isspace()]
    assert not missed, f"characters {missed[:5]} are in no chunk"


@pytest.mark.skipif(not (LICENSES / "GPL-3").exists(), reason="needs Debian's /usr/share/common-licenses")
def test_sentence_at_the_end_of_a_5000_word_note_is_found(space):
    long_note = (LICENSES / "GPL-3").read_text() + "\n\n" + PLANTED
    assert len(long_note.split()) > 5000
    notes = {"long": long_note, "apache": (LICENSES / "Apache-2.0").read_text(),
             "cat": "Our cat sleeps on the warm laundry every afternoon and ignores the mice.",
             "garden": "The tomatoes in the back garden need water twice a day in July.",
             "trip": "We drove to the coast on Saturday and had fish and chips by the harbour."}
    query = space.embed(["the dog that got into the fridge and ate the cake"])[0]
    best = {}
    for name, text in notes.items():
        segments = ChunksView().segments(Input("text", text, name), space) or [chunks.Segment("chunk", text=text)]
        scores = space.embed([s.text for s in segments]) @ query
        best[name] = float(scores.max())
        if name == "long":
            assert int(scores.argmax()) == len(segments) - 1  # the last chunk, the one holding the sentence
    assert max(best, key=best.get) == "long", best
    whole = dict(zip(notes, space.embed(list(notes.values())) @ query))  # one vector, truncated at 256 tokens
    assert max(whole, key=whole.get) != "long"  # what chunking fixes


@pytest.mark.skipif(not (LICENSES / "GPL-3").exists(), reason="needs Debian's /usr/share/common-licenses")
def test_spans_cover_the_text_with_overlap_and_respect_the_token_limit(space):
    c = chunker(space)
    assert c.max_tokens == 126 and c.window == 254  # MiniLM: 128 and 256 tokens less [CLS] and [SEP]
    text = (LICENSES / "GPL-3").read_text()
    spans = c.spans(text)
    assert len(spans) > 30
    _check_cover(text, spans)
    counts = [_token_count(c.tokenizer, text[s:e]) for s, e in spans]
    assert max(counts) <= c.max_tokens and min(counts[:-1]) >= c.max_tokens * 2 // 3
    ends = [text[e - 1] for s, e in spans[:-1]]
    assert sum(ch in ".!?:;)\"" for ch in ends) >= len(ends) // 2  # cut at sentence ends where there are some


def test_spans_hold_on_text_without_spaces_or_sentences(space):
    c = chunker(space)
    for text in ("数据" * 3000, "x" * 20_000 + " tail words", ("word " * 50 + "\n\n") * 40):
        spans = c.spans(text)
        _check_cover(text, spans)
        assert all(_token_count(c.tokenizer, text[s:e]) <= c.max_tokens for s, e in spans)


def test_short_text_gets_no_chunks_and_long_text_does(space):
    short = "A short note about the weather. " * 10
    assert not needs_chunking(short, space)
    assert ChunksView().segments(Input("text", short, "s"), space) == []
    long = "The committee met again to discuss the budget. " * 200
    assert needs_chunking(long, space)
    segments = ChunksView().segments(Input("text", long, "l"), space)
    assert len(segments) > 5 and all(s.kind == "chunk" and long[s.chars[0]:s.chars[1]] == s.text for s in segments)


def test_tokenizer_is_called_on_bounded_pieces(monkeypatch):
    calls = []

    class Recording(WordTokenizer):
        def __call__(self, text, **kw):
            calls.append(len(text))
            return super().__call__(text)

    monkeypatch.setattr(chunks, "PIECE_CHARS", 10_000)
    text = "Many words make a long text. " * 40_000  # 1.2 MB
    spans = chunk_spans(text, Recording(), 100, 20, piece_chars=chunks.PIECE_CHARS)
    assert max(calls) <= 10_000 and sum(calls) < 1.2 * len(text)  # retokenized tails stay small
    _check_cover(text, spans)


def test_text_chunks_of_a_page_carry_the_page_number(space):
    page = "Section 4 explains the warranty terms in detail. " * 60
    segments = text_chunks(page, space, kind="page", page=4)
    assert segments and {s.page for s in segments} == {4} and all(s.kind == "page" for s in segments)
