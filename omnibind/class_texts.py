"""Texts that stand for a classifier's classes in the anchor's space (the ConSE bridge's class
embeddings), from WordNet: each ImageNet-1k class's synonyms, definition and hypernyms.

The data is generated once (scripts/make_imagenet_class_texts.py) into
omnibind/data/imagenet_class_texts.tsv, so nothing here needs WordNet. A *style* names how a
class becomes prompts; a class's embedding is the mean of its prompts' anchor embeddings
(CLIP's prompt ensembling), unit-normalised. scripts/choose_image_bridge.py compares the styles.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import torch

from omnibind.errors import OmnibindError

# A handful of CLIP-style templates (after Radford et al. 2021's ImageNet ensemble), chosen to
# fit clip art, drawings and photos alike.
ENSEMBLE_TEMPLATES = (
    "a photo of a {}.", "a drawing of a {}.", "a picture of a {}.", "a close-up photo of a {}.",
    "a cartoon {}.", "an illustration of a {}.", "a good photo of the {}.",
)


@dataclass(frozen=True)
class ClassText:
    """One class: WordNet synset id, synonyms (first = the usual name), gloss, hypernym names."""

    wnid: str
    synonyms: tuple[str, ...]
    gloss: str
    hypernyms: tuple[str, ...]  # first lemma of each direct hypernym synset

    @property
    def name(self) -> str:
        return self.synonyms[0]


def imagenet_class_texts() -> list[ClassText]:
    """ImageNet-1k classes in model index order (omnibind/data/imagenet_class_texts.tsv)."""
    text = resources.files("omnibind.data").joinpath("imagenet_class_texts.tsv").read_text("utf-8")
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        wnid, synonyms, gloss, hypernyms = line.split("\t")
        out.append(ClassText(wnid, tuple(s.strip() for s in synonyms.split(",") if s.strip()), gloss.strip(),
                             tuple(h.split(",")[0].strip() for h in hypernyms.split("|") if h.strip())))
    if len(out) != 1000:
        raise OmnibindError(f"imagenet_class_texts.tsv has {len(out)} classes, expected 1000")
    return out


def _kind(c: ClassText) -> str:
    return c.hypernyms[0] if c.hypernyms else "thing"


STYLES: dict[str, Callable[[ClassText], list[str]]] = {
    "photo": lambda c: [f"a photo of a {s}." for s in c.synonyms],  # the bridge before issue 15
    "ensemble": lambda c: [t.format(s) for s in c.synonyms for t in ENSEMBLE_TEMPLATES],
    "hypernym": lambda c: [f"a photo of a {s}, a kind of {_kind(c)}." for s in c.synonyms],
    "gloss": lambda c: [f"{s}: {c.gloss}" for s in c.synonyms],
    "name-gloss": lambda c: [f"a photo of a {c.name}, {c.gloss}."],
    "kind-gloss": lambda c: [f"{s}, a kind of {_kind(c)}: {c.gloss}" for s in c.synonyms],
    "photo+hypernym": lambda c: STYLES["photo"](c) + STYLES["hypernym"](c),
    "photo+gloss": lambda c: STYLES["photo"](c) + STYLES["gloss"](c),
    "hypernym+gloss": lambda c: STYLES["hypernym"](c) + STYLES["gloss"](c),
    "ensemble+hypernym": lambda c: STYLES["ensemble"](c) + STYLES["hypernym"](c),
    "ensemble+gloss": lambda c: STYLES["ensemble"](c) + STYLES["gloss"](c),
    "ensemble+hypernym+gloss": lambda c: STYLES["ensemble"](c) + STYLES["hypernym"](c) + STYLES["gloss"](c),
}


def class_prompts(c: ClassText, style: str) -> list[str]:
    """The prompts that stand for class `c` in `style` (a key of STYLES)."""
    if style not in STYLES:
        raise OmnibindError(f"unknown class-text style {style!r}; known: {', '.join(STYLES)}")
    return STYLES[style](c)


def class_embeddings(classes: Sequence[ClassText], style: str,
                     encode: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
    """[n_classes, d] unit vectors: each class's mean prompt embedding (`encode` embeds texts)."""
    prompts = [class_prompts(c, style) for c in classes]
    flat = [p for ps in prompts for p in ps]
    vectors = torch.nn.functional.normalize(encode(flat).float(), dim=-1)
    out, start = [], 0
    for ps in prompts:
        out.append(vectors[start : start + len(ps)].mean(0))
        start += len(ps)
    return torch.nn.functional.normalize(torch.stack(out), dim=-1)
