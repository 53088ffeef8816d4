"""Zero-shot classification of any modality: labels -> prompt templates -> label vectors ->
softmax over cosine similarity.

Each label is embedded through several templates written for the input's modality (CLIP's
prompt ensembling: "a photo of a {}." for images, "the sound of {}." for audio; the templates
are the modality table's, omnibind/modalities.py); the template
vectors are averaged and renormalised into one label vector. Probabilities are a softmax of
cosine / temperature (the space's temperature, 0.05 by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from omnibind import modalities
from omnibind.errors import InputError
from omnibind.inputs import to_input
from omnibind.space import Space

CLEAR, UNSURE = 0.5, 0.2  # margins (top minus runner-up probability) of a clear answer and of a guess


@dataclass
class Classification:
    """One input's result: probabilities over `labels`, best first in `ranked()`."""

    source: str
    modality: str
    labels: list[str]
    probabilities: np.ndarray

    @property
    def label(self) -> str:
        return self.labels[int(self.probabilities.argmax())]

    def ranked(self) -> list[tuple[str, float]]:
        order = np.argsort(-self.probabilities, kind="stable")
        return [(self.labels[i], float(self.probabilities[i])) for i in order]

    @property
    def margin(self) -> float:
        """How far the top label is ahead of the runner-up (probabilities; 1.0 with one label)."""
        ranked = self.ranked()
        return ranked[0][1] - (ranked[1][1] if len(ranked) > 1 else 0.0)

    @property
    def confidence(self) -> str:
        """"clear", "likely" or "unsure": a softmax at temperature 0.05 turns small cosine gaps into
        large probabilities, so a top label barely ahead of the next is said to be a guess."""
        return "clear" if self.margin >= CLEAR else "likely" if self.margin >= UNSURE else "unsure"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "modality": self.modality, "label": self.label,
                "margin": round(self.margin, 4), "confidence": self.confidence, "probabilities": dict(self.ranked())}


def label_vectors(space: Space, labels: Sequence[str], modality: str,
                  templates: Sequence[str] | None = None) -> np.ndarray:
    """[labels, dim] unit vectors: each label's template ensemble, averaged and renormalised."""
    labels = _check_labels(labels)
    templates = tuple(templates) if templates else modalities.templates(modality)
    if any("{}" not in t for t in templates):
        raise ValueError("every template needs a '{}' where the label goes")
    prompts = [t.format(label) for label in labels for t in templates]
    v = space.embed(prompts).reshape(len(labels), len(templates), -1).mean(1)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def classify(space: Space, inputs: Sequence[Any], labels: Sequence[str], templates: Sequence[str] | None = None,
             temperature: float | None = None, batch_size: int = 32,
             errors: list[InputError] | None = None) -> list[Classification]:
    """Classify each input (any modality, mixed allowed) among `labels`. A bad input raises,
    unless an `errors` list is given: then it is appended there and the others are classified."""
    labels = _check_labels(labels)
    t = temperature if temperature is not None else space.temperature
    if not t > 0:
        raise ValueError(f"temperature must be positive, got {t}")
    if errors is None:
        items = [to_input(x, space.limits) for x in inputs]
        vectors = space.embed(items, batch_size=batch_size)
    else:
        items, vectors = _embed_skipping(space, inputs, batch_size, errors)
    by_modality = {m: label_vectors(space, labels, m, templates) for m in {i.modality for i in items}}
    out = []
    for item, v in zip(items, vectors):
        logits = by_modality[item.modality] @ v / t
        p = np.exp(logits - logits.max())
        out.append(Classification(item.source, item.modality, list(labels), p / p.sum()))
    return out


def _embed_skipping(space: Space, inputs: Sequence[Any], batch_size: int,
                    errors: list[InputError]) -> tuple[list[Any], np.ndarray]:
    items = []
    for i, x in enumerate(inputs):
        try:
            items.append(to_input(x, space.limits))
        except InputError as exc:
            errors.append(exc.with_index(i))
    result = space.embed(items, batch_size=batch_size, on_error="skip")
    errors.extend(result.errors)
    return [items[i] for i in result.indices], result.vectors


def _check_labels(labels: Sequence[str]) -> list[str]:
    cleaned = [str(x).strip() for x in labels]
    if len(cleaned) < 2 or any(not x for x in cleaned):
        raise ValueError("give at least two non-empty labels")
    if len(set(cleaned)) != len(cleaned):
        raise ValueError("labels must be distinct")
    return cleaned
