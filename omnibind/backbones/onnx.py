"""ONNX Runtime fast path for frozen CNN backbones, with the PyTorch module as the reference.

The module is exported once per (weights, torch version) into the omnibind cache, written
atomically, and checked against the module on a random probe every time it is loaded; a
mismatch above the tolerance, or any failure, means PyTorch is used instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from omnibind.errors import BackboneError

log = logging.getLogger(__name__)
TOLERANCE = 1e-4


def cache_dir() -> Path:
    """Where omnibind keeps derived files (ONNX exports, feature caches)."""
    root = os.environ.get("OMNIBIND_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "omnibind"
    )
    return Path(root)


def onnx_disabled() -> bool:
    return os.environ.get("OMNIBIND_NO_ONNX") == "1"


class OnnxRunner:
    """Runs `module` (inputs: one float32 array) through ONNX Runtime; outputs as numpy arrays."""

    def __init__(self, module: torch.nn.Module, name: str, weights: str, probe: np.ndarray,
                 outputs: Sequence[str], input_name: str = "x") -> None:
        import onnxruntime as ort

        self.input_name, self.outputs = input_name, list(outputs)
        path = self._export(module, name, weights, probe)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._verify(module, probe)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})

    def _export(self, module: torch.nn.Module, name: str, weights: str, probe: np.ndarray) -> Path:
        key = hashlib.sha256(Path(weights).read_bytes())
        key.update(repr((self.input_name, self.outputs, probe.shape[1:])).encode())  # the graph's interface
        digest = key.hexdigest()[:16]
        path = cache_dir() / "onnx" / f"{name}-{digest}-torch{torch.__version__.split('+')[0]}.onnx"
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        axes = {self.input_name: {0: "n"}, **{o: {0: "n"} for o in self.outputs}}
        with torch.inference_mode():
            torch.onnx.export(module, (torch.from_numpy(probe[:2]),), str(tmp), input_names=[self.input_name],
                              output_names=self.outputs, dynamic_axes=axes, opset_version=17, dynamo=False)
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written model behind
        return path

    def _verify(self, module: torch.nn.Module, probe: np.ndarray) -> None:
        with torch.inference_mode():
            ref = module(torch.from_numpy(probe))
        ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
        got = self(probe)
        diff = max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref))
        if diff > TOLERANCE:
            raise BackboneError(f"ONNX export differs from PyTorch by {diff:.2e} > {TOLERANCE}")


def try_onnx(module: torch.nn.Module, name: str, weights: str, probe: np.ndarray, outputs: Sequence[str],
             strict: bool = False) -> OnnxRunner | None:
    """An `OnnxRunner`, or None (with a logged warning) when ONNX Runtime cannot be used."""
    if onnx_disabled():
        return None
    try:
        return OnnxRunner(module, name, weights, probe, outputs)
    except Exception as exc:
        if strict:
            raise BackboneError(f"ONNX Runtime path for {name} failed: {exc}") from exc
        log.warning("%s: ONNX Runtime unavailable (%s); using PyTorch", name, exc)
        return None
