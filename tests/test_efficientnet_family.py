"""The EfficientNet-Lite family (issue 15): Lite1/Lite2 load from their packages at their native
sizes, run through ONNX Runtime matching PyTorch, and Lite0's preprocessing (which keys the
feature cache of the shipped spaces) is exactly what it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnibind.backbones import load_backbone
from omnibind.backbones.efficientnet import VARIANTS, EfficientNetLite, preprocess_image
from omnibind.errors import BackboneError
from omnibind.inputs import to_input
from tests.conftest import draw_image

# Lite0's preprocess_config() before the family existed: changing it would orphan every cached feature.
LITE0_CONFIG = {"size": 224, "mean": 127.0, "std": 128.0, "fill": (255, 255, 255), "resample": "bicubic",
                "reducing_gap": 3.0, "max_canvas_side": 4096}


def test_lite0_preprocessing_is_unchanged():
    b = load_backbone("efficientnet-lite0")
    assert b.ref == "efficientnet-lite0" and b.preprocess_config() == LITE0_CONFIG
    assert repr(b.preprocess_config()) == repr(LITE0_CONFIG)  # same key order: same cache fingerprint


@pytest.mark.parametrize("ref,size", [("efficientnet-lite1", 240), ("efficientnet-lite2", 260)])
def test_variants_native_sizes(ref, size):
    assert VARIANTS[ref].preprocess.size == size
    config = {**LITE0_CONFIG, "size": size}
    assert VARIANTS[ref].preprocess == type(VARIANTS[ref].preprocess)(**config)
    assert preprocess_image(draw_image("square", 300), VARIANTS[ref].preprocess).shape == (3, size, size)


def test_lite1_loads_shapes_and_onnx_matches_torch():
    b = load_backbone("efficientnet-lite1")
    assert b.ref == "efficientnet-lite1" and b.runtime == "onnxruntime" and "Lite1" in b.describe()["weights"]
    images = [draw_image("circle"), draw_image("square", 300, "blue")]
    batch = b.collate([s for im in images for s in b.segments(to_input(im))])
    assert batch.shape == (2, 3, 240, 240)
    fast, ref = b.features(batch), b.torch_features(batch)
    assert fast["pooled"].shape == (2, 1280) and fast["logits"].shape == (2, 1000)
    assert np.abs(fast["logits"].numpy() - ref["logits"].numpy()).max() <= 1e-4
    assert np.abs(fast["pooled"].numpy() - ref["pooled"].numpy()).max() <= 1e-4
    # a different network from Lite0: same images, different logits
    lite0 = load_backbone("efficientnet-lite0")
    l0 = lite0.features(lite0.collate([s for im in images for s in lite0.segments(to_input(im))]))["logits"]
    assert not torch.allclose(l0, fast["logits"], atol=1e-2)


def test_unknown_variant_is_a_typed_error():
    with pytest.raises(BackboneError, match="unknown EfficientNet-Lite variant"):
        EfficientNetLite("efficientnet-lite9")
