"""Chunks: a long text cut into pieces the anchor can read whole.

The anchor's text encoder reads a fixed number of tokens (MiniLM: 256) and silently drops the
rest, so a sentence at the end of a long note is never embedded. This view cuts a long text into
overlapping windows counted in the anchor's *own* tokens (its tokenizer's character offsets), so
no window is truncated, and cuts where a paragraph or sentence ends when one lies in the last
part of a window. Chunks are 128 tokens (the sequence length MiniLM was trained with: a
sentence in a 256-token window is diluted by the rest, see docs/views-documents.md); a text
that fits the model's whole window (256) gets no chunks. Tokenizing works on bounded pieces of the text: a 50 MB text never goes to the
tokenizer in one call. Short texts (one window) get no chunks: the item's own vector covers them.
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from omnibind.views import Segment

if TYPE_CHECKING:
    from omnibind.inputs import Input
    from omnibind.space import Space

CHUNK_LENGTH = 128  # tokens per chunk, special tokens included: the length MiniLM was trained on
OVERLAP = 32  # tokens shared by neighbouring chunks: a sentence cut by a window is whole in one of them
PIECE_CHARS = 100_000  # characters handed to the tokenizer at once (bounds memory and time per call)
CUT_REGION = 1 / 3  # look for a sentence or paragraph end in the last third of a window
FALLBACK_MAX_TOKENS = 256  # an anchor whose backbone has no tokenizer: see WordTokenizer
_SENTENCE_END = frozenset(".!?;:…。！？")
_CLOSERS = frozenset("\"')]»”’")
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n")


class WordTokenizer:
    """A stand-in for anchors without a reachable HF tokenizer: words and punctuation marks as
    tokens (a subword tokenizer makes at least as many, so pair it with a smaller window)."""

    _TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)

    def __call__(self, text: str, **_: Any) -> dict[str, list[tuple[int, int]]]:
        return {"offset_mapping": [m.span() for m in self._TOKEN.finditer(text)]}


def token_offsets(tokenizer: Any, text: str, start: int = 0, end: int | None = None) -> np.ndarray:
    """[n, 2] absolute character offsets of the tokens of text[start:end] (no special tokens)."""
    piece = text[start:end]
    kwargs = dict(add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False,
                  return_token_type_ids=False, verbose=False)
    enc = tokenizer(piece, **kwargs) if not isinstance(tokenizer, WordTokenizer) else tokenizer(piece)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    offsets = offsets[offsets[:, 1] > offsets[:, 0]]  # zero-width entries are no text
    return offsets + start


def chunk_spans(text: str, tokenizer: Any, max_tokens: int, overlap: int = OVERLAP,
                piece_chars: int = PIECE_CHARS) -> list[tuple[int, int]]:
    """[start, end) character spans of `text`, each at most `max_tokens` tokens of `tokenizer`
    (special tokens not counted: pass the model's length minus them), neighbours sharing about
    `overlap` tokens. Empty for a blank text; one span when the text fits one window."""
    if max_tokens < 8:
        raise ValueError(f"max_tokens must be at least 8, got {max_tokens}")
    overlap = max(0, min(overlap, max_tokens // 4))
    spans: list[tuple[int, int]] = []
    pos = 0
    while pos < len(text):
        end, last = _piece_end(text, pos, piece_chars)
        offs = token_offsets(tokenizer, text, pos, end)
        n, i = len(offs), 0
        while n - i > max_tokens:
            j = _cut(text, offs, i, max_tokens)
            spans.append((int(offs[i, 0]), int(offs[j - 1, 1])))
            i = _next_start(text, offs, i, j, overlap)
        if last:
            if i < n:
                spans.append((int(offs[i, 0]), int(offs[n - 1, 1])))
            break
        if i == 0:  # degenerate piece (a few giant tokens): take it whole rather than loop
            if n:
                spans.append((int(offs[0, 0]), int(offs[max(n - 2, 0), 1])))
            pos = int(offs[n - 1, 0]) if n >= 2 else end
        else:
            pos = int(offs[i, 0])  # the tail not yet in a window is tokenized again with the next piece
    return spans


def _piece_end(text: str, pos: int, piece_chars: int) -> tuple[int, bool]:
    """Where the piece starting at `pos` ends (at whitespace when there is some near its end)."""
    end = pos + piece_chars
    if end >= len(text):
        return len(text), True
    cut = max(text.rfind(" ", end - 2000, end), text.rfind("\n", end - 2000, end))
    return (cut if cut > pos else end), False


def _boundary(text: str, offs: np.ndarray, j: int) -> int:
    """How good a cut before token j is: 4 paragraph, 3 sentence end, 2 line break, 1 word, 0 inside a word."""
    before_end = int(offs[j - 1, 1])
    gap = text[before_end : int(offs[j, 0])] if j < len(offs) else " "
    if _PARAGRAPH.search(gap):
        return 4
    last = text[before_end - 1]
    if last in _CLOSERS and before_end >= 2:
        last = text[before_end - 2]
    if last in _SENTENCE_END and (gap or last in "。！？"):
        return 3
    if "\n" in gap:
        return 2
    return 1 if gap else 0


def _cut(text: str, offs: np.ndarray, i: int, max_tokens: int) -> int:
    """The end (exclusive token index) of the window starting at token i: the best boundary in
    the window's last part, the latest among equals."""
    hi = i + max_tokens
    lo = max(i + 1, hi - int(max_tokens * CUT_REGION))
    best, best_j = -1, hi
    for j in range(hi, lo - 1, -1):
        score = _boundary(text, offs, j)
        if score > best:
            best, best_j = score, j
            if score == 4:
                break
    return best_j


def _next_start(text: str, offs: np.ndarray, i: int, j: int, overlap: int) -> int:
    """Where the next window starts: `overlap` tokens before j, moved forward to the first
    sentence start (else word start) in the overlap, never at or before i."""
    lo = max(i + 1, j - overlap)
    if lo >= j:
        return j
    word = None
    for k in range(lo, j):
        score = _boundary(text, offs, k)
        if score >= 2:
            return k
        if score == 1 and word is None:
            word = k
    return word if word is not None else lo


@dataclass
class Chunker:
    """A tokenizer and its window: what the anchor of one space can read at once."""

    tokenizer: Any
    max_tokens: int  # tokens of text per chunk (CHUNK_LENGTH minus the special tokens)
    window: int  # tokens of text the model reads at once (its max length minus special tokens)
    overlap: int = OVERLAP

    def spans(self, text: str) -> list[tuple[int, int]]:
        return chunk_spans(text, self.tokenizer, self.max_tokens, self.overlap)

    def fits(self, text: str) -> bool:
        """Whether the model reads the text whole. Cheap: length bounds first (a token spans at
        least one character), then one tokenizer call on at most `PIECE_CHARS` characters."""
        if len(text) <= self.window:
            return True
        if len(text) > PIECE_CHARS:
            return False
        return len(token_offsets(self.tokenizer, text)) <= self.window


_CHUNKERS: "weakref.WeakKeyDictionary[Any, Chunker]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def chunker(space: "Space") -> Chunker:
    """The chunker of a space's anchor (built once per text backbone)."""
    backbone = space.towers[space.anchor].backbone
    try:
        with _LOCK:
            found = _CHUNKERS.get(backbone)
            if found is None:
                found = _CHUNKERS[backbone] = _build(backbone)
            return found
    except TypeError:  # a backbone that cannot be weakly referenced: built each time
        return _build(backbone)


def _build(backbone: Any) -> Chunker:
    """sentence-transformers backbones: `model.tokenizer` and `model.max_seq_length`; anything
    else with a `tokenizer` attribute too; otherwise words, in a window of half the fallback."""
    model = getattr(backbone, "model", None)
    tokenizer = getattr(model, "tokenizer", None) or getattr(backbone, "tokenizer", None)
    if tokenizer is None or not getattr(tokenizer, "is_fast", True):
        return Chunker(WordTokenizer(), CHUNK_LENGTH // 2, FALLBACK_MAX_TOKENS // 2)
    length = getattr(model, "max_seq_length", None) or getattr(tokenizer, "model_max_length", FALLBACK_MAX_TOKENS)
    length = min(int(length), 8192)  # HF's "no limit" sentinel is a huge integer
    specials = tokenizer.num_special_tokens_to_add(False) if hasattr(tokenizer, "num_special_tokens_to_add") else 2
    return Chunker(tokenizer, min(length, CHUNK_LENGTH) - specials, length - specials)


def needs_chunking(text: str, space: "Space") -> bool:
    """Whether a text is longer than the space's anchor reads at once (then it gets chunks)."""
    return not chunker(space).fits(text)


def text_chunks(text: str, space: "Space", kind: str = "chunk", page: int | None = None,
                cutter: Chunker | None = None) -> list[Segment]:
    """Segments for every chunk of `text` (one when it fits a chunk; none when blank). `cutter`
    replaces the space's own chunker (evaluation of other chunk lengths)."""
    out = []
    for s, e in (cutter or chunker(space)).spans(text):
        out.append(Segment(kind, text=text[s:e], chars=(s, e), page=page))
    return out


class ChunksView:
    """Texts longer than the anchor reads at once -> chunks of CHUNK_LENGTH tokens; others -> nothing."""

    name = "chunks"
    modalities = ("text",)
    shapes_vector = True  # a long note's vector is the mean of its chunks

    def segments(self, item: "Input", space: "Space") -> list[Segment]:
        if item.modality not in self.modalities or not isinstance(item.payload, str):
            return []
        if not needs_chunking(item.payload, space):
            return []
        found = text_chunks(item.payload, space)
        return found if len(found) > 1 else []
