"""The fixed inputs behind tests/data/reference_vectors.npz (see tests/test_reference_vectors.py).

One definition, used by the test and by scripts/make_reference_vectors.py, so the vectors on disk
and the vectors a test run makes always come from the same inputs. Each input is:

- a real file that every setup has (Tux Paint stamps of the *test* split, OpenCV samples; see
  docs/testing.md), identified by the sha256 of its bytes, or
- generated media made here with plain NumPy (no drawing library, no lossy codec), identified by
  the sha256 of the generated pixels / samples, so it is the same on every machine.

If an input's digest differs from the one recorded next to the vectors, the input changed (a
Debian package update, a different generator), not the space: the test skips that input and
says so instead of reporting a regression.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

TUX = Path("/usr/share/tuxpaint/stamps")
OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
SPACES = ("default", "bridge")
AISFX_RATE, AISFX_WINDOW = 44100, 102_400  # the audio backbone's fixed, non-overlapping windows


@dataclass(frozen=True)
class RefInput:
    name: str  # unique, "<modality>:<what>"
    modality: str
    description: str
    source: str  # a file path, or "generated"
    make: Callable[[], Any]  # what space.embed takes (a path, a string, a PIL image, an audio dict, bytes)
    digest: Callable[[], str]  # sha256 of the input's content

    @property
    def available(self) -> bool:
        return self.source == "generated" or Path(self.source).is_file()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file(name: str, modality: str, path: Path, description: str) -> RefInput:
    return RefInput(name, modality, description, str(path), lambda: path, lambda: _sha(path.read_bytes()))


def _text(name: str, text: str) -> RefInput:
    return RefInput(name, "text", f"the sentence {text!r}", "generated", lambda: text, lambda: _sha(text.encode()))


# -- generated media (NumPy only) -------------------------------------------------------------------


def gradient_image() -> np.ndarray:
    """96x96 RGB: a dark blue disc on a horizontal red-to-yellow gradient."""
    y, x = np.mgrid[0:96, 0:96].astype(np.float64)
    img = np.stack([np.full_like(x, 230.0), 40 + 2.0 * x, np.full_like(x, 30.0)], axis=-1)
    disc = (x - 48) ** 2 + (y - 40) ** 2 < 24**2
    img[disc] = (20, 30, 140)
    return img.round().astype(np.uint8)


def two_window_sound() -> np.ndarray:
    """Exactly two aisfx windows at 44.1 kHz: a loud 97 Hz square wave, then a quiet train of clicks
    (10 a second). The two windows' head outputs differ in norm (0.62 vs 0.79 in `default`), so
    fusing them without normalising each first would change the vector."""
    t = np.arange(AISFX_WINDOW) / AISFX_RATE
    square = 0.8 * np.sign(np.sin(2 * np.pi * 97.0 * t))
    clicks = 0.3 * (np.arange(AISFX_WINDOW) % 4410 == 0)
    return np.concatenate([square, clicks]).astype(np.float32)


def low_rate_tone() -> np.ndarray:
    """3 s of a 660 Hz tone with a 3 Hz tremolo at 22.05 kHz (the resampling path)."""
    t = np.arange(3 * 22050) / 22050
    return (0.4 * np.sin(2 * np.pi * 660.0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t))).astype(np.float32)


def video_frames(n: int = 12, size: int = 64) -> list[np.ndarray]:
    """A blue square moving left to right over a white background."""
    frames = []
    for i in range(n):
        f = np.full((size, size, 3), 255, np.uint8)
        x = i * (size - 16) // (n - 1)
        f[24:40, x : x + 16] = (0, 0, 255)
        frames.append(f)
    return frames


def video_sound(seconds: float = 2.4, rate: int = 44100) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)


def lossless_video_bytes() -> bytes:
    """An MKV of `video_frames` (FFV1, lossless) at 5 fps with `video_sound` (16-bit PCM): the
    decoded frames and samples are the generated arrays on any FFmpeg, so the vector is too."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        v = out.add_stream("ffv1", rate=5)
        v.width = v.height = 64
        v.pix_fmt = "yuv444p"
        a = out.add_stream("pcm_s16le", rate=44100)
        a.layout = "mono"
        for f in video_frames():
            for packet in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
        pcm = (video_sound() * 32767).round().astype(np.int16)
        for k in range(0, pcm.size, 1024):
            frame = av.AudioFrame.from_ndarray(pcm[None, k : k + 1024], format="s16", layout="mono")
            frame.sample_rate, frame.pts = 44100, k
            for packet in a.encode(frame):
                out.mux(packet)
        for packet in a.encode():
            out.mux(packet)
    return buf.getvalue()


def _generated(name: str, modality: str, description: str, make: Callable[[], Any],
               content: Callable[[], bytes]) -> RefInput:
    return RefInput(name, modality, description, "generated", make, lambda: _sha(content()))


def _frames_bytes() -> bytes:
    return b"".join(f.tobytes() for f in video_frames())


def reference_inputs() -> list[RefInput]:
    """The fixed inputs, in the order of the stored vectors."""
    stamp = "Tux Paint stamp (test split)"
    return [
        _text("text:dog", "a dog barking in the garden"),
        _text("text:apple", "a red apple on a wooden table"),
        _text("text:markets", "stock markets fell sharply on Monday"),
        _text("text:french", "Le chat dort sur le canapé."),
        _file("image:tux-blackbird", "image", TUX / "animals/birds/blackbird.png", f"{stamp}: A blackbird."),
        _file("image:tux-grapes", "image", TUX / "food/fruit/grapes.png", f"{stamp}: A bunch of grapes."),
        _file("image:opencv-fruits", "image", OPENCV / "fruits.jpg", "OpenCV sample photo: fruits"),
        _file("image:opencv-baboon", "image", OPENCV / "baboon.jpg", "OpenCV sample photo: baboon"),
        _generated("image:gradient-disc", "image", "generated 96x96: blue disc on a red-yellow gradient",
                   lambda: Image.fromarray(gradient_image()), lambda: gradient_image().tobytes()),
        _file("audio:tux-dog", "audio", TUX / "animals/mammals/dogs/dog.ogg", "Tux Paint sound (test split): A dog."),
        _file("audio:tux-lightning", "audio", TUX / "naturalforces/lightningbolt.ogg",
              "Tux Paint sound (test split): A lightning bolt."),
        _generated("audio:two-windows", "audio",
                   "generated: two aisfx windows, loud 97 Hz square wave then quiet clicks (44.1 kHz)",
                   lambda: {"array": two_window_sound(), "sampling_rate": AISFX_RATE},
                   lambda: two_window_sound().tobytes()),
        _generated("audio:tremolo-22k", "audio", "generated: 3 s 660 Hz tone with tremolo at 22.05 kHz",
                   lambda: {"array": low_rate_tone(), "sampling_rate": 22050}, lambda: low_rate_tone().tobytes()),
        _file("video:opencv-megamind", "video", OPENCV / "Megamind.avi", "OpenCV sample video, soundtrack, 11.3 s"),
        _generated("video:ffv1-square", "video", "generated lossless MKV: moving blue square, 330 Hz soundtrack",
                   lossless_video_bytes, lambda: _frames_bytes() + video_sound().tobytes()),
        _generated("video:frame-list", "video", "generated frame list (no soundtrack): moving blue square",
                   lambda: [Image.fromarray(f) for f in video_frames()], _frames_bytes),
    ]
