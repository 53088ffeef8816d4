"""Where models run and at what precision: one choice per process, made from the machine.

`device="auto"` (the default everywhere) means the first CUDA GPU when torch sees one, else the
CPU. Precision `auto` allows int8 graphs on CPUs with fast int8 dot products (AVX-512 VNNI,
AVX-VNNI or AMX) for the backbones whose int8 graph keeps the space (none today: the image and
audio graphs move a few vectors far, the text graph's vectors move with the batch; docs/speed.md),
fp32 elsewhere and on GPUs. Both can be forced: `OMNIBIND_DEVICE=cpu|cuda|cuda:N`,
`OMNIBIND_PRECISION=fp32|int8`, or for this process `configure()` (the CLI's global `--device` /
`--precision`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from omnibind.errors import OmnibindError

DEVICE_ENV = "OMNIBIND_DEVICE"
PRECISION_ENV = "OMNIBIND_PRECISION"
PRECISIONS = ("auto", "fp32", "int8")
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # CPUs where int8 GEMMs beat fp32 clearly
_CHOSEN: dict[str, str | None] = {"device": None, "precision": None}  # configure(): beats the environment


class DeviceError(OmnibindError):
    """A device or precision that does not exist or is not available here."""


def configure(device: str | None = None, precision: str | None = None) -> None:
    """Choose device and precision for this process (what the CLI's --device / --precision do).
    Takes effect for backbones loaded afterwards; checks the names without importing torch.
    Worker processes (DDP ranks, Ray actors) read $OMNIBIND_DEVICE / $OMNIBIND_PRECISION."""
    if device is not None:
        _CHOSEN["device"] = _device_name(device)
    if precision is not None:
        _CHOSEN["precision"] = _precision_name(precision)


def _device_name(device: str) -> str:
    """'auto', 'cpu', 'cuda' or 'cuda:N', normalised; DeviceError for anything else."""
    name = device.strip().lower()
    if not (name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise DeviceError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
    return name


def _precision_name(precision: str) -> str:
    """One of PRECISIONS, normalised; DeviceError for anything else."""
    name = precision.strip().lower()
    if name not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    return name


def chosen() -> dict[str, str | None]:
    """What `configure` set in this process (None: not set), to hand to worker processes."""
    return {"device": _CHOSEN["device"] or os.environ.get(DEVICE_ENV),
            "precision": _CHOSEN["precision"] or os.environ.get(PRECISION_ENV)}


def reset() -> None:
    """Forget `configure`'s choice (tests)."""
    _CHOSEN.update(device=None, precision=None)


def resolve_device(device: str | None = None) -> str:
    """'cpu', 'cuda' or 'cuda:N' for a request (None: `configure`'s, $OMNIBIND_DEVICE, else 'auto')."""
    wanted = _device_name(device or _CHOSEN["device"] or os.environ.get(DEVICE_ENV) or "auto")
    if wanted == "auto":
        return "cuda" if _cuda_count() > 0 else "cpu"
    if wanted != "cpu":
        index = int(wanted[5:]) if ":" in wanted else 0
        if index >= _cuda_count():
            raise DeviceError(f"device {wanted!r} asked for, but torch sees {_cuda_count()} CUDA device(s)")
    return wanted


def requested_precision(precision: str | None = None) -> str:
    """What was asked for: 'auto', 'fp32' or 'int8' (argument, `configure`, $OMNIBIND_PRECISION).
    Backbones whose int8 graph is opt-in run it only when it was asked for by name."""
    return _precision_name(precision or _CHOSEN["precision"] or os.environ.get(PRECISION_ENV) or "auto")


def resolve_precision(precision: str | None = None, device: str | None = None) -> str:
    """'fp32' or 'int8' for a request (None: `configure`'s, $OMNIBIND_PRECISION, else 'auto')."""
    wanted = requested_precision(precision)
    if wanted != "auto":
        return wanted
    if resolve_device(device) != "cpu":
        return "fp32"  # int8 ONNX graphs are CPU kernels; GPUs run the fp32 graph
    return "int8" if fast_int8_cpu() else "fp32"


def fast_int8_cpu() -> bool:
    """Whether this CPU has the instructions that make int8 inference pay (VNNI or AMX)."""
    return bool(cpu_flags() & set(INT8_FLAGS))


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def ort_providers(device: str | None = None) -> list[Any]:
    """ONNX Runtime providers for a device: CUDA first when asked for and installed, CPU always."""
    import onnxruntime as ort

    resolved = resolve_device(device)
    if resolved.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        index = int(resolved.split(":")[1]) if ":" in resolved else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def machine() -> dict[str, Any]:
    """What `omnibind info` and the benchmarks record about where models run."""
    return {"device": resolve_device(), "precision": resolve_precision(),
            "int8_flags": sorted(cpu_flags() & set(INT8_FLAGS)),
            "bf16": "avx512_bf16" in cpu_flags() or "amx_bf16" in cpu_flags()}


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
