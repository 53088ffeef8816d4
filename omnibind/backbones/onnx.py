"""ONNX Runtime fast path for frozen CNN backbones, with the PyTorch module as the reference.

The module is exported once per (weights, torch version) into the omnibind cache, written
atomically, and checked against the module on a random probe every time it is loaded; a
mismatch above the tolerance, or any failure, means PyTorch is used instead.

Int8 (`precision="int8"`, the default on CPUs with VNNI/AMX through `omnibind.device`): the fp32
graph is quantised once per machine into the cache with ONNX Runtime's static QDQ quantiser
(per-channel int8 weights, uint8 activations), from activation ranges that ship with omnibind
(`omnibind/data/quant/<name>.json`, computed on training data by scripts/quantize_towers.py), so
no calibration data is needed at run time. The int8 graph is checked against the fp32 graph on
the backbone's probe (cosine per output row) each time it is loaded; any failure or a low
cosine means the fp32 graph runs instead, with a logged warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnibind.errors import BackboneError

log = logging.getLogger(__name__)
TOLERANCE = 1e-4
QUANT_FORMAT = 1  # version of omnibind/data/quant/*.json
PROBE_COSINE_MEAN = 0.99  # the int8 graph's outputs vs the fp32 graph's, on the backbone's probe
PROBE_COSINE_MIN = 0.97
PROBE_SLACK = 0.01  # below the probe cosines a recipe's graph reached when it was made


class QuantizationError(BackboneError):
    """An int8 graph could not be built or does not agree with its fp32 graph."""


def cache_dir() -> Path:
    """Where omnibind keeps derived files (ONNX exports, feature caches)."""
    root = os.environ.get("OMNIBIND_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "omnibind"
    )
    return Path(root)


def onnx_disabled() -> bool:
    return os.environ.get("OMNIBIND_NO_ONNX") == "1"


def _session(path: Path, device: str | None = None) -> Any:
    import onnxruntime as ort

    from omnibind.device import ort_providers

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    return ort.InferenceSession(str(path), options, providers=ort_providers(device))


class OnnxRunner:
    """Runs `module` (inputs: one float32 array) through ONNX Runtime; outputs as numpy arrays."""

    precision = "fp32"

    def __init__(self, module: torch.nn.Module, name: str, weights: str, probe: np.ndarray,
                 outputs: Sequence[str], input_name: str = "x", device: str | None = None) -> None:
        self.input_name, self.outputs, self.name = input_name, list(outputs), name
        self.path = self._export(module, name, weights, probe)
        self.weights_digest = self.path.stem.split("-")[-2]
        self.session = _session(self.path, device)
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


class QuantizedRunner:
    """The int8 graph of an `OnnxRunner`'s fp32 graph, built from shipped ranges and checked against it."""

    precision = "int8"

    def __init__(self, fp32: OnnxRunner, spec: dict[str, Any], probe: np.ndarray, device: str | None = None) -> None:
        self.input_name, self.outputs, self.name = fp32.input_name, fp32.outputs, fp32.name
        self.spec = spec
        self.path = quantized_graph(fp32.path, spec)
        self.session = _session(self.path, device)
        self.agreement = agreement(fp32(probe), self(probe))
        mean, low = self.agreement
        need_mean, need_min = probe_bounds(spec)
        if mean < need_mean or low < need_min:
            raise QuantizationError(f"{self.name}: int8 graph agrees with fp32 at cosine mean {mean:.4f} / min "
                                    f"{low:.4f} on the probe (needs {need_mean:.4f} / {need_min:.4f})")

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})


def probe_bounds(spec: dict[str, Any]) -> tuple[float, float]:
    """The cosine (mean, min) an int8 graph must reach on the probe: 0.99 / 0.97, or a little under
    what the recipe's graph reached when it was made (`spec["probe"]`), whichever is lower; a graph
    that a runtime builds or runs differently (a bug, another version) falls far below either."""
    made = spec.get("probe") or {}
    return (min(PROBE_COSINE_MEAN, made.get("mean", 1.0) - PROBE_SLACK),
            min(PROBE_COSINE_MIN, made.get("min", 1.0) - 2 * PROBE_SLACK))


def agreement(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> tuple[float, float]:
    """(mean, min) over outputs and rows of the cosine between candidate and reference rows."""
    cosines = []
    for ref, got in zip(reference, candidate):
        ref, got = ref.reshape(len(ref), -1).astype(np.float64), got.reshape(len(got), -1).astype(np.float64)
        norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
        cosines.append((ref * got).sum(axis=1) / np.maximum(norms, 1e-30))
    every = np.concatenate(cosines)
    return float(every.mean()), float(every.min())


def quant_spec(name: str) -> dict[str, Any] | None:
    """The shipped quantisation recipe of a backbone (ranges, excluded nodes, provenance), or None."""
    resource = resources.files("omnibind.data").joinpath("quant", f"{name}.json")
    if not resource.is_file():
        return None
    spec = json.loads(resource.read_text("utf-8"))
    if spec.get("format") != QUANT_FORMAT:
        raise QuantizationError(f"{name}: quantisation recipe format {spec.get('format')} != {QUANT_FORMAT}")
    return spec


def quantized_graph(fp32_path: Path, spec: dict[str, Any]) -> Path:
    """The int8 QDQ graph of `fp32_path` under `spec`, built once into the cache (atomic write)."""
    import onnxruntime as ort

    recipe = {k: spec[k] for k in ("ranges", "exclude", "per_channel", "method")}
    digest = hashlib.sha256(json.dumps([fp32_path.name, recipe, ort.__version__], sort_keys=True).encode()).hexdigest()
    path = fp32_path.with_name(f"{fp32_path.stem}-int8-{digest[:12]}.onnx")
    if path.exists():
        return path
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        _quantize(fp32_path, tmp, spec)
        os.replace(tmp, path)
    finally:
        for leftover in tmp.parent.glob(f"{tmp.name}*"):
            leftover.unlink(missing_ok=True)
    return path


def _quantize(fp32_path: Path, out: Path, spec: dict[str, Any]) -> None:
    """ONNX Runtime's static QDQ quantiser, fed the shipped ranges through its calibration cache."""
    import inspect

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise QuantizationError("this ONNX Runtime cannot take precomputed ranges (needs a newer onnxruntime)")
    pre, cache = out.with_name(out.name + ".pre.onnx"), out.with_name(out.name + ".ranges.json")
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    graph = onnx.load(str(pre)).graph
    missing = needed_ranges(graph, spec["exclude"]) - set(spec["ranges"])
    if missing:
        raise QuantizationError(f"shipped ranges do not cover this graph ({len(missing)} tensors, e.g. {min(missing)}):"
                                " it was exported by another torch version")
    method = CalibrationMethod[spec["method"]]
    ranges = {k: TensorData(lowest=np.array([lo], np.float32), highest=np.array([hi], np.float32))
              for k, (lo, hi) in spec["ranges"].items()}
    save_tensors_data(TensorsData(method, ranges), cache)
    quantize_static(str(pre), str(out), None, quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=spec["per_channel"], calibrate_method=method,
                    nodes_to_exclude=list(spec["exclude"]), calibration_cache_path=str(cache))



def needed_ranges(graph: Any, exclude: Sequence[str]) -> set[str]:
    """Activation tensors whose ranges the quantiser reads: inputs and outputs of the Conv/Gemm/MatMul
    nodes it quantises (weights and constants excluded)."""
    constants = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    needed: set[str] = set()
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and node.name not in exclude:
            needed.update(t for t in [node.input[0], *node.output] if t and t not in constants)
    return needed


def try_onnx(module: torch.nn.Module, name: str, weights: str, probe: np.ndarray, outputs: Sequence[str],
             strict: bool = False, precision: str | None = "fp32", quant_probe: np.ndarray | None = None,
             device: str | None = None) -> OnnxRunner | QuantizedRunner | None:
    """An ONNX Runtime runner, or None (with a logged warning) when ONNX Runtime cannot be used.

    `precision`: "fp32" (the default), "int8", "auto", or None for `omnibind.device`'s choice
    ($OMNIBIND_PRECISION, else auto: int8 on VNNI/AMX CPUs). int8 means the int8 graph when omnibind
    ships a recipe for `name` (used under auto only if the recipe passed its real-data check) and
    the graph agrees with fp32 on `quant_probe` (default `probe`); otherwise the fp32 runner, with a
    logged warning. The runner's `precision` says which one runs."""
    from omnibind.device import PRECISION_ENV, resolve_precision

    requested = (precision or os.environ.get(PRECISION_ENV) or "auto").strip().lower()
    resolved = resolve_precision(precision, device)
    if onnx_disabled():
        return None
    try:
        runner = OnnxRunner(module, name, weights, probe, outputs, device=device)
    except Exception as exc:
        if strict:
            raise BackboneError(f"ONNX Runtime path for {name} failed: {exc}") from exc
        log.warning("%s: ONNX Runtime unavailable (%s); using PyTorch", name, exc)
        return None
    if resolved != "int8":
        return runner
    return try_int8(runner, probe if quant_probe is None else quant_probe, device, forced=requested == "int8")


def try_int8(runner: OnnxRunner, probe: np.ndarray, device: str | None = None,
             forced: bool = False) -> OnnxRunner | QuantizedRunner:
    """The checked int8 runner for `runner`'s graph, or `runner` itself when there is no recipe, the
    recipe is opt-in (`"auto": false`) and int8 was not `forced`, or it fails (warning logged)."""
    try:
        spec = quant_spec(runner.name)
        if spec is None or not (forced or spec.get("auto", True)):
            log.info("%s: %s; running fp32", runner.name, "no int8 recipe ships with omnibind" if spec is None else
                     "its int8 recipe is opt-in (OMNIBIND_PRECISION=int8): it failed the real-data check")
            return runner
        if spec.get("weights_digest") not in (None, runner.weights_digest):
            raise QuantizationError("the recipe was computed for other weights")
        return QuantizedRunner(runner, spec, probe, device)
    except Exception as exc:
        log.warning("%s: int8 graph unavailable (%s); running fp32", runner.name, exc)
        return runner
