"""Shared fixtures: the offline default space (loaded once) and small generated media."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def space():
    import omnibind

    return omnibind.load_space()


def draw_image(kind: str = "circle", size: int = 96, color: str = "red") -> Image.Image:
    """A simple drawing: a filled circle or square on white."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    box = (size // 6, size // 6, size - size // 6, size - size // 6)
    (draw.ellipse if kind == "circle" else draw.rectangle)(box, fill=color)
    return image


def tone(seconds: float = 3.0, freq: float = 440.0, rate: int = 22050) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, seconds: float = 3.0, freq: float = 440.0, rate: int = 22050) -> Path:
    import soundfile as sf

    sf.write(path, tone(seconds, freq, rate), rate, subtype="PCM_16")
    return path


def write_video(path: Path, seconds: float = 2.0, fps: int = 10, with_audio: bool = False, size: int = 64) -> Path:
    """An MP4 (or MKV) of a moving square, optionally with a sine soundtrack, made with PyAV."""
    import av

    with av.open(str(path), "w") as out:
        v = out.add_stream("mpeg4", rate=fps)
        v.width = v.height = size
        v.pix_fmt = "yuv420p"
        a = None
        if with_audio:
            a = out.add_stream("aac", rate=22050)
            a.layout = "mono"
        for i in range(int(seconds * fps)):
            image = Image.new("RGB", (size, size), "white")
            x = int(i * (size - 16) / max(1, seconds * fps - 1))
            ImageDraw.Draw(image).rectangle((x, 24, x + 16, 40), fill="blue")
            for packet in v.encode(av.VideoFrame.from_image(image)):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
        if a is not None:
            samples = tone(seconds, 330.0, 22050)
            frame_size = a.codec_context.frame_size or 1024
            for k in range(0, samples.size, frame_size):
                chunk = samples[k : k + frame_size]
                frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                frame.sample_rate = 22050
                frame.pts = k
                for packet in a.encode(frame):
                    out.mux(packet)
            for packet in a.encode():
                out.mux(packet)
    return path


@pytest.fixture
def media(tmp_path: Path) -> dict[str, Path]:
    """One small file per modality in a temp folder."""
    png = tmp_path / "circle.png"
    draw_image().save(png)
    text = tmp_path / "note.txt"
    text.write_text("a red circle on a white page\n", encoding="utf-8")
    return {
        "image": png,
        "audio": write_wav(tmp_path / "tone.wav"),
        "video": write_video(tmp_path / "clip.mp4", with_audio=True),
        "text": text,
    }


class LinesView:
    """A test view: each non-blank line of a text is a chunk segment (`calls` counts its runs)."""

    name = "lines"
    modalities = ("text",)
    shapes_vector = True
    calls = 0

    def segments(self, item, space):
        from omnibind.views import Segment

        LinesView.calls += 1
        out, pos = [], 0
        for line in item.payload.split("\n"):
            if line.strip():
                out.append(Segment("chunk", text=line, chars=(pos, pos + len(line))))
            pos += len(line) + 1
        return out if len(out) > 1 else []


@pytest.fixture
def lines_view():
    """The `lines` view registered for one test."""
    from omnibind import views

    views.register("lines", LinesView)
    yield LinesView
    views.unregister("lines")
