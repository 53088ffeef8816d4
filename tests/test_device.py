"""Device and precision choice (omnibind/device.py), its CLI flags, and the DDP backend choice."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from typer.testing import CliRunner

from omnibind import device
from omnibind.cli import app
from omnibind.scale import ddp


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(device.DEVICE_ENV, raising=False)
    monkeypatch.delenv(device.PRECISION_ENV, raising=False)
    device.reset()
    yield
    device.reset()


def fake_gpus(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


def test_auto_is_cpu_here_and_cuda_when_torch_sees_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 0)
    assert device.resolve_device() == "cpu"
    assert device.resolve_device("auto") == "cpu"
    fake_gpus(monkeypatch, 2)
    assert device.resolve_device() == "cuda"
    assert device.resolve_device("cuda:1") == "cuda:1"
    assert device.resolve_device("cpu") == "cpu"  # forced


def test_missing_or_unknown_devices_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 1)
    with pytest.raises(device.DeviceError, match="cuda:3"):
        device.resolve_device("cuda:3")
    with pytest.raises(device.DeviceError, match="unknown device"):
        device.resolve_device("tpu")


def test_this_machine_resolves_to_what_torch_reports() -> None:
    """The real choice on this machine (CPU in CI), not a mocked one."""
    expected = "cuda" if torch.cuda.is_available() and torch.cuda.device_count() else "cpu"
    assert device.resolve_device() == expected


def test_precision_auto_follows_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 0)
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    assert device.resolve_precision() == "int8"
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert device.resolve_precision() == "fp32"  # no VNNI/AMX: int8 GEMMs do not pay
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"amx_int8"}))
    assert device.resolve_precision() == "int8"
    fake_gpus(monkeypatch, 1)
    assert device.resolve_precision() == "fp32"  # GPUs run the fp32 graph


def test_precision_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset({"avx512_vnni"}))
    monkeypatch.setenv(device.PRECISION_ENV, "fp32")
    assert device.resolve_precision() == "fp32"
    assert device.resolve_precision("int8") == "int8"  # an explicit argument beats the environment
    with pytest.raises(device.DeviceError, match="bf8"):
        device.resolve_precision("bf8")


def test_onnx_runtime_gets_cuda_only_when_asked_and_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    fake_gpus(monkeypatch, 2)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert device.ort_providers("cuda:1") == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert device.ort_providers("cpu") == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert device.ort_providers("cuda") == ["CPUExecutionProvider"]  # onnxruntime without CUDA: CPU, no error


def test_configure_sets_the_process_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    device.configure(device="cpu", precision="FP32")
    assert device.resolve_device() == "cpu" and device.resolve_precision() == "fp32"
    monkeypatch.setenv(device.PRECISION_ENV, "int8")
    assert device.resolve_precision() == "fp32"  # the process's choice beats the environment
    with pytest.raises(device.DeviceError):
        device.configure(device="gpu")
    with pytest.raises(device.DeviceError):
        device.configure(precision="int4")


def test_cli_flags_reach_the_library(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    result = CliRunner().invoke(app, ["--precision", "int4", "collections", "--home", str(tmp_path)])
    assert result.exit_code == 2 and "int4" in result.output
    result = CliRunner().invoke(app, ["--device", "cpu", "--precision", "fp32", "collections", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert device.resolve_precision() == "fp32" and device.resolve_device() == "cpu"


def test_ddp_backend_follows_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpus(monkeypatch, 0)
    assert ddp.choose_backend(2) == "gloo"
    fake_gpus(monkeypatch, 2)
    assert ddp.choose_backend(2) == "nccl"
    assert ddp.choose_backend(4) == "gloo"  # fewer GPUs than processes
    monkeypatch.setenv(device.DEVICE_ENV, "cpu")
    assert ddp.choose_backend(2) == "gloo"  # forced to the CPU
    assert ddp.comm_device() == torch.device("cpu")  # no process group: collectives stay on the CPU


def test_workers_get_the_process_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Ray actors are handed (scale/ray_ingest.py): configure() first, then the environment."""
    assert device.chosen() == {"device": None, "precision": None}
    monkeypatch.setenv(device.DEVICE_ENV, "cpu")
    device.configure(precision="fp32")
    assert device.chosen() == {"device": "cpu", "precision": "fp32"}
