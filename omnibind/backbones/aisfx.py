"""aisfx: a sound-effects CNN (ISMIR 2022) from the package `aisfx`, 512-d per ~2.3 s window.

Long audio is cut into fixed, non-overlapping windows of 100 spectrogram frames (102,400
samples at 44.1 kHz, 2.32 s); each window is one segment, so the same file always gives the
same windows and memory stays bounded however long the file is. aisfx's own front end
normalises each file by its peak; streaming cannot see the whole file first, so omnibind
normalises each window by its own peak instead.

The CNN runs on ONNX Runtime, at int8 when asked (`OMNIBIND_PRECISION=int8`; under "auto" only
once its recipe passes the real-data acceptance, docs/speed.md): the graph is built from the
shipped recipe (omnibind/data/quant/aisfx.json) and checked against fp32 on generated sounds, and
"precision" enters `preprocess_config()` so the feature cache keeps int8 and fp32 apart.

aisfx ships classifier heads for its training sets but no class names, so it offers no
classes to a ConSE bridge (see heads.ConSEHead's exemplar mode for what the default uses).
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from typing import Any

import numpy as np
import torch

from omnibind.backbones.base import Backbone, Features
from omnibind.backbones.registry import register
from omnibind.backbones.onnx import try_onnx
from omnibind.errors import BackboneError
from omnibind.inputs import AudioClip, Input

SAMPLE_RATE = 44100
N_FFT = 2048
HOP = 1024
FRAMES = 100  # aisfx's EMB_BLOCK_LENGTH
WINDOW_SAMPLES = FRAMES * HOP  # 102,400 samples = 2.32 s
MIN_TAIL_SAMPLES = SAMPLE_RATE  # a last partial window shorter than 1 s is dropped (unless it is all there is)
SPEC_MAX = 9.457798957824707  # aisfx 'original' min-max normalisation (min 0)


class LogMel(torch.nn.Module):
    """aisfx's spectrogram (librosa settings) in torch: log10(mel(|STFT|^2) * 1e4 + 1) / max."""

    def __init__(self) -> None:
        super().__init__()
        with resources.files("omnibind.data").joinpath("aisfx_mel_filters.npy").open("rb") as fh:
            mel = np.load(fh)
        self.register_buffer("mel", torch.from_numpy(mel))
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True))

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(waves, N_FFT, HOP, N_FFT, self.window, center=True, pad_mode="constant", return_complex=True)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(self.mel, power)  # (n, 96, frames)
        return torch.log10(mel * 10000.0 + 1.0) / SPEC_MAX


class AisfxBackbone(Backbone):
    ref = "aisfx"
    modality = "audio"
    outputs = {"embedding": 512}
    prefetch = True  # the tower decodes and resamples the next sounds in threads while the network runs

    def __init__(self, precision: str | None = None) -> None:
        try:
            import aisfx  # noqa: F401  (the package holds the checkpoint and the network)
            from aisfx.models.cnn2d import EmbeddingNet
        except ImportError as exc:
            raise BackboneError("backbone 'aisfx' needs the package aisfx (pip install --no-deps aisfx)") from exc
        self.weights = str(resources.files("aisfx").joinpath("models/checkpoint.pth"))
        # The checkpoint pickles numpy scalars next to the state dict, hence weights_only=False.
        state, _ = torch.load(self.weights, map_location="cpu", weights_only=False)
        net = EmbeddingNet("max", 3, 1, 64)
        net.load_state_dict({k.removeprefix("embedding_net."): v for k, v in state.items() if k.startswith("embedding_net.")})
        self.net = net.eval()
        self.logmel = LogMel().eval()
        # The CNN runs about 2x faster on ONNX Runtime (benchmarks/embed_throughput.py); the
        # spectrogram stays in torch. Checked against the module on load, PyTorch on any failure.
        probe = np.random.default_rng(0).uniform(0, 1, size=(3, FRAMES, 96)).astype(np.float32)
        self.onnx = try_onnx(self.net, "aisfx", self.weights, probe, ("embedding",),
                             precision=precision, quant_probe=self.spectra(probe_sounds()))
        self.runtime = "onnxruntime" if self.onnx is not None else "torch"
        self.precision = getattr(self.onnx, "precision", "fp32")

    def segments(self, item: Input) -> Iterator[Any]:
        clip: AudioClip = item.payload
        emitted = False
        for window in clip.stream(SAMPLE_RATE, WINDOW_SAMPLES):
            if window.shape[0] < WINDOW_SAMPLES:
                if emitted and window.shape[0] < MIN_TAIL_SAMPLES:
                    continue
                window = np.pad(window, (0, WINDOW_SAMPLES - window.shape[0]))
            peak = float(np.abs(window).max())
            emitted = True
            yield window / peak if peak > 0 else window

    def collate(self, segments: list[Any]) -> torch.Tensor:
        return torch.from_numpy(np.stack(segments).astype(np.float32, copy=False))

    @torch.inference_mode()
    def spectra(self, batch: torch.Tensor) -> np.ndarray:
        """The network's input for a batch of windows: (n, time, mel) log-mel spectra."""
        return self.logmel(batch)[:, :, :FRAMES].transpose(1, 2).contiguous().numpy()

    @torch.inference_mode()
    def features(self, batch: torch.Tensor) -> Features:
        spec = self.logmel(batch)[:, :, :FRAMES].transpose(1, 2).contiguous()  # aisfx wants (n, time, mel)
        if self.onnx is not None:
            return {"embedding": torch.from_numpy(self.onnx(spec.numpy())[0])}
        return {"embedding": self.net(spec)}

    @torch.inference_mode()
    def torch_features(self, batch: torch.Tensor) -> Features:
        """The PyTorch reference, whatever runtime `features` uses."""
        return {"embedding": self.net(self.logmel(batch)[:, :, :FRAMES].transpose(1, 2).contiguous())}

    def preprocess_config(self) -> dict[str, Any]:
        """How sound becomes windows, plus the precision when it is not fp32 (fp32 keys stay as they were)."""
        config = {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP, "frames": FRAMES,
                  "window_samples": WINDOW_SAMPLES, "min_tail_samples": MIN_TAIL_SAMPLES, "spec_max": SPEC_MAX,
                  "normalise": "peak per window"}
        return config if self.precision == "fp32" else {**config, "precision": self.precision}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "weights": f"aisfx sound-effects CNN from package aisfx ({self.weights})",
                "window_seconds": round(WINDOW_SAMPLES / SAMPLE_RATE, 3), "runtime": self.runtime,
                "precision": self.precision}


def probe_sounds(n: int = 6) -> torch.Tensor:
    """Deterministic windows (harmonic tones with vibrato and decay, noise bursts, clicks), peak-
    normalised like real ones: the probe on which an int8 graph must agree with fp32."""
    rng = np.random.default_rng(1234)
    t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE
    windows = []
    for k in range(n):
        f0 = 110.0 * 2 ** (k / 2)
        tone = sum(np.sin(2 * np.pi * f0 * h * t + 3 * np.sin(2 * np.pi * 5 * t)) / h for h in range(1, 6))
        noise = rng.standard_normal(WINDOW_SAMPLES) * (np.sin(np.pi * t * (k + 1)) ** 8)
        wave = tone * np.exp(-t * (k % 3)) + noise * (k % 2) * 0.5
        wave[:: 4410 * (k + 1)] += 2.0
        windows.append(wave / np.abs(wave).max())
    return torch.from_numpy(np.stack(windows).astype(np.float32))


@register("aisfx", "audio")
def _factory(_: str, modality: str) -> Backbone:
    return AisfxBackbone()
