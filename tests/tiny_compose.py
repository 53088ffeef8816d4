"""A toy world with a KNOWN relation between two joint models and an anchor, for composition tests.

Every text has a latent vector z(t) (the mean of hashed word vectors, L dims). The anchor's text
tower (`toy-anchor`) gives B z; a CLIP-like model (`toyjoint:clip`, text + image) gives A1 z plus
a text offset, and A1 z_img plus a different image offset for an image; a CLAP-like one
(`toyjoint:clap`, text + audio) the same with A2 and its own offsets: a modality gap. An image
carries its latent in the red channel of its first L pixels, a sound in its first L samples.
The known-map ceiling is retrieval with the true latents (B z_img against B z_audio).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnibind.backbones import registry
from omnibind.backbones.base import Backbone
from omnibind.errors import BackboneError
from omnibind.inputs import Input, to_rgb

L = 12  # latent dimension
ANCHOR_DIM = 24
RATE = 16_000
DIMS = {"clip": 32, "clap": 20}
MEDIA = {"clip": "image", "clap": "audio"}
OFFSET, GAP = 8.0, 8.0
WORDS = ("red green blue small large old young fast slow bright dark wooden metal happy noisy quiet "
         "dog cat bird horse car train boat drum bell piano violin river forest city street kitchen "
         "runs sings barks flies rings plays sleeps falls jumps").split()


def _rng(*key: Any) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little"))


def latent(text: str) -> np.ndarray:
    """z(t): the mean of the (hashed, Gaussian) vectors of its words, times sqrt(#words)."""
    words = text.lower().split() or [""]
    return np.sum([_rng("word", w).standard_normal(L) for w in words], axis=0) / np.sqrt(len(words))


def _matrices(model: str) -> dict[str, np.ndarray]:
    rng = _rng("model", model)
    d = DIMS[model]
    a = rng.standard_normal((d, L)) / np.sqrt(L)
    # Cones as narrow as CLIP's (mean of the unit vectors ~0.8 long) and far apart: offsets
    # larger than the spread of the meanings (|A z| ~ 5.7).
    text_offset = OFFSET * rng.standard_normal(d) / np.sqrt(d)
    gap = GAP * rng.standard_normal(d) / np.sqrt(d)
    return {"A": a, "text": text_offset, "media": text_offset + gap}


ANCHOR_B = _rng("anchor").standard_normal((ANCHOR_DIM, L)) / np.sqrt(L)


def text_noise(text: str, d: int, scale: float = 0.15) -> np.ndarray:
    """What a model's text vector holds beyond the shared meaning (differs per model)."""
    return scale * _rng("noise", text, d).standard_normal(d) / np.sqrt(d)


class ToyText(Backbone):
    modality = "text"

    def __init__(self, ref: str, model: str | None) -> None:
        self.ref, self.model = ref, model
        self.outputs = {"embedding": ANCHOR_DIM if model is None else DIMS[model]}

    def segments(self, item: Input) -> Iterator[Any]:
        yield item.payload

    def collate(self, segments: list[Any]) -> list[str]:
        return list(segments)

    def features(self, batch: list[str]) -> dict[str, torch.Tensor]:
        if self.model is None:
            rows = [ANCHOR_B @ latent(t) for t in batch]
        else:
            m = _matrices(self.model)
            rows = [m["A"] @ latent(t) + m["text"] + text_noise(t, DIMS[self.model]) for t in batch]
        return {"embedding": torch.tensor(np.array(rows), dtype=torch.float32)}


class ToyMedia(Backbone):
    def __init__(self, ref: str, model: str, modality: str) -> None:
        self.ref, self.model, self.modality = ref, model, modality
        self.outputs = {"embedding": DIMS[model]}

    def segments(self, item: Input) -> Iterator[Any]:
        if self.modality == "image":
            pixels = np.asarray(to_rgb(item.payload), dtype=np.float64)[..., 0].reshape(-1)
            yield (pixels[:L] - 128.0) / 32.0
        else:
            window = next(item.payload.stream(RATE, RATE // 2))
            yield np.asarray(window[:L], dtype=np.float64) * 8.0

    def features(self, batch: Any) -> dict[str, torch.Tensor]:
        m = _matrices(self.model)
        z = batch.double().numpy()
        return {"embedding": torch.tensor(z @ m["A"].T + m["media"], dtype=torch.float32)}


def register_toys() -> None:
    """`toy-anchor` (text) and `toyjoint:clip` / `toyjoint:clap` (text + image / audio)."""

    @registry.register("toy-anchor", "text")
    def _anchor(_: str, modality: str) -> Backbone:
        return ToyText("toy-anchor", None)

    @registry.register("toyjoint:")
    def _joint(model: str, modality: str) -> Backbone:
        if model not in DIMS:
            raise BackboneError(f"toyjoint:{model} is not a toy model; known: {', '.join(DIMS)}")
        if modality == "text":
            return ToyText(f"toyjoint:{model}", model)
        if modality != MEDIA[model]:
            raise BackboneError(f"toyjoint:{model} has no {modality} tower; it has text, {MEDIA[model]}")
        return ToyMedia(f"toyjoint:{model}", model, modality)


def unregister_toys() -> None:
    registry.unregister("toy-anchor")
    registry.unregister("toyjoint:")


def caption(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=4, replace=False))


def media_latent(text: str, rng: np.random.Generator, noise: float = 0.35) -> np.ndarray:
    return latent(text) + noise * rng.standard_normal(L)


def write_image(path: Path, z: np.ndarray) -> Path:
    from PIL import Image

    pixels = np.full((8, 8, 3), 128, dtype=np.uint8)
    pixels.reshape(-1, 3)[:L, 0] = np.clip(np.round(128 + 32 * z), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_sound(path: Path, z: np.ndarray) -> Path:
    import soundfile as sf

    samples = np.zeros(RATE // 2, dtype=np.float32)
    samples[:L] = z / 8.0
    sf.write(path, samples, RATE, subtype="FLOAT")
    return path


def write_pairs(folder: Path, n: int, seed: int = 0) -> tuple[list[Path], list[Path], list[str], np.ndarray]:
    """n image/sound pairs (same caption, independent noise): (images, sounds, captions, ceiling
    similarity matrix of the true latents in the anchor space, image rows x sound columns)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images, sounds, captions, zi, za = [], [], [], [], []
    for i in range(n):
        text = caption(rng)
        captions.append(text)
        zi.append(media_latent(text, rng))
        za.append(media_latent(text, rng))
        images.append(write_image(folder / f"img{i:03d}.png", zi[-1]))
        sounds.append(write_sound(folder / f"snd{i:03d}.wav", za[-1]))
    unit = lambda z: (z @ ANCHOR_B.T) / np.linalg.norm(z @ ANCHOR_B.T, axis=1, keepdims=True)  # noqa: E731
    return images, sounds, captions, unit(np.array(zi)) @ unit(np.array(za)).T


def recall_at_1(sims: np.ndarray) -> float:
    """% of rows whose best column is their own (the diagonal)."""
    return 100.0 * float((np.asarray(sims).argmax(axis=1) == np.arange(len(sims))).mean())


def corpus(n: int = 600, seed: int = 1) -> list[str]:
    """Training texts for the maps, disjoint from nothing in particular: random word strings."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 6)), replace=False)) for _ in range(n)]
