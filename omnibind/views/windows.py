"""Windows: fixed time windows of a recording or a video, each with its own vector and its times.

An hour-long recording embedded as one vector blurs a door slam into an hour of rain; a search
that should say *when* something happens needs pieces. This view cuts a recording into fixed
windows (`kind="window"`) and a video into fixed scenes (`kind="scene"`); each segment's media is a
new `AudioClip` / `VideoClip` covering [start, end) that the space's own towers embed.

The parent is decoded once for all of its windows: a recording into one compact array (float16
at the audio backbone's rate, from which every window is a slice), a video front to back at the
frames each scene needs (small JPEG copies, longest side `frame_side` px), its soundtrack once,
on first use. Windows are capped (`max_windows`): a three-hour file costs as much as the covered
span, never more. An item shorter than 1.5 windows gets no segments: its own vector covers it.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from omnibind.decoders import DEFAULT_LIMITS, AudioClip, Limits, VideoClip
from omnibind.errors import InputError
from omnibind.inputs import Input
from omnibind.views import Segment

if TYPE_CHECKING:
    from PIL import Image

    from omnibind.space import Space

AUDIO_WINDOW = 5.0  # seconds, rounded to whole blocks of the audio backbone (aisfx: 2 x 2.32 s = 4.64 s)
AUDIO_HOP = 5.0  # idem; the choice is measured in docs/views-windows.md
SCENE_WINDOW = 5.0
SCENE_HOP = 5.0
MAX_WINDOWS = 1440  # per item: 2 h of video at 5 s scenes (the default video limit), 1 h 51 min of audio
MIN_WINDOWS = 1.5  # an item shorter than this many windows gets none
FRAME_SIDE = 256  # kept frames: longest side (the image tower letterboxes to 224)
MAX_STORE_RATE = 48000  # when the space has no audio backbone rate to follow
CHUNK = 65536


def spans(duration: float, window: float, hop: float, max_windows: int = MAX_WINDOWS) -> list[tuple[float, float]]:
    """[start, end) of each window: starts every `hop` seconds, the last one reaches the end of the
    item (it may be shorter than `window`), at most `max_windows`; none for an item shorter than
    MIN_WINDOWS windows."""
    if not duration or duration < MIN_WINDOWS * window:
        return []
    n = min(max_windows, math.ceil((duration - window) / hop - 1e-9) + 1)
    return [(k * hop, min(k * hop + window, duration)) for k in range(n)]


def covered(window: float, hop: float, max_windows: int) -> float:
    """Seconds of an item the capped windows can reach: decoding stops there."""
    return (max_windows - 1) * hop + window


def fragment(source: str, start: float, end: float) -> str:
    """`song.wav#t=10,20`: a media-fragment URI naming the window."""
    return f"{source}#t={round(start, 3):g},{round(end, 3):g}"


@dataclass
class WindowsView:
    """Fixed windows of audio (`window`/`hop` seconds) and scenes of video (`scene`/`scene_hop`).

    `frames_per_scene`: frames decoded for each scene (None: what the space's video fusion uses)."""

    window: float = AUDIO_WINDOW
    hop: float = AUDIO_HOP
    scene: float = SCENE_WINDOW
    scene_hop: float = SCENE_HOP
    max_windows: int = MAX_WINDOWS
    frames_per_scene: int | None = 2  # 1, 2, 4 and 8 scored alike (docs/views-windows.md); 2 costs a quarter of 8
    frame_side: int = FRAME_SIDE
    name: str = "windows"
    modalities: tuple[str, ...] = ("audio", "video")
    shapes_vector: bool = False  # located copies of the item: its own vector stays as it is

    def __post_init__(self) -> None:
        if min(self.window, self.hop, self.scene, self.scene_hop) <= 0 or self.max_windows < 1:
            raise ValueError("window, hop, scene and scene_hop must be positive and max_windows at least 1")

    def segments(self, item: Input, space: "Space") -> list[Segment]:
        limits = getattr(space, "limits", DEFAULT_LIMITS)
        rate, block = audio_grid(space)
        if item.modality == "audio":
            return self.audio_windows(item.payload, item.source, rate, block, limits)
        if item.modality == "video":
            per = self.frames_per_scene or _space_frames(space)
            return self.video_scenes(item.payload, item.source, per, rate, limits)
        return []

    def audio_windows(self, clip: AudioClip, source: str, rate: int | None, block: float | None = None,
                      limits: Limits = DEFAULT_LIMITS) -> list[Segment]:
        """Windows of a recording, decoded once (at `rate`, or the clip's own rate up to 48 kHz);
        window and hop rounded to whole `block`s (the audio backbone's own window) when given."""
        window, hop = aligned(self.window, block), aligned(self.hop, block)
        if not spans(clip.duration, window, hop, self.max_windows):
            return []  # short by its header: not worth decoding
        rate = rate or min(clip.sampling_rate, MAX_STORE_RATE)
        reach = min(covered(window, hop, self.max_windows), limits.max_audio_seconds)
        track = decode_track(clip, rate, reach)
        cuts = spans(track.shape[0] / rate, window, hop, self.max_windows)
        return [
            Segment(kind="window", media=_input("audio", slice_clip(track, rate, a, b, fragment(source, a, b))), start=a, end=b)
            for a, b in cuts
        ]

    def video_scenes(self, clip: VideoClip, source: str, per: int, rate: int | None,
                     limits: Limits = DEFAULT_LIMITS) -> list[Segment]:
        """Scenes of a video: one front-to-back decode picks `per` frames for every scene."""
        cuts = spans(clip.duration or 0.0, self.scene, self.scene_hop, self.max_windows)
        data = video_data(clip)
        if not cuts or data is None:
            return []  # short, of unknown length, or not a decoded file (a list of frames)
        frames = scene_frames(data, source, cuts, per, self.frame_side, clip.duration or 0.0, limits)
        soundtrack = _Soundtrack(clip, rate, min(cuts[-1][1], limits.max_video_seconds)) if clip.has_audio else None
        out = []
        for (a, b), kept in zip(cuts, frames):
            name = fragment(source, a, b)
            scene = VideoClip(name, b - a, clip.has_audio, _frame_picker(kept, a, b),
                              _audio_slicer(soundtrack, a, b, name))
            out.append(Segment(kind="scene", media=_input("video", scene), start=a, end=b))
        return out


def _input(modality: str, payload: Any) -> Input:
    return Input(modality, payload, payload.source)


def audio_grid(space: "Space") -> tuple[int | None, float | None]:
    """(sample rate, block seconds) the space's audio backbone reads (aisfx: 44,100 Hz, blocks of
    102,400 samples), None where the space does not say."""
    tower = getattr(space, "towers", {}).get("audio")
    if tower is None:
        return None, None
    config = tower.backbone.preprocess_config()
    rate = config.get("sample_rate") or config.get("sampling_rate")
    samples = config.get("window_samples")
    return (int(rate) if rate else None), (samples / rate if rate and samples else None)


def aligned(seconds: float, block: float | None) -> float:
    """`seconds` rounded to a whole number (at least one) of `block`s: a window of the audio
    backbone never straddles a window of the view (a straddling tail would be padded or dropped)."""
    return max(1, round(seconds / block)) * block if block else seconds


def _space_frames(space: "Space") -> int:
    fusion = getattr(space, "video", None)
    return int(getattr(fusion, "frames", 8))


# -- audio ------------------------------------------------------------------------------------------


def decode_track(clip: AudioClip, rate: int, seconds: float) -> np.ndarray:
    """The first `seconds` of a recording at `rate` Hz, mono float16 (half the memory of float32;
    ~-66 dB of rounding noise, far below what an audio backbone hears). One decode."""
    limit = int(seconds * rate)
    parts: list[np.ndarray] = []
    got = 0
    for block in clip.stream(rate, CHUNK):
        take = min(block.shape[0], limit - got)
        parts.append(np.clip(block[:take], -65504.0, 65504.0).astype(np.float16))
        got += take
        if got >= limit:
            break
    return np.concatenate(parts) if parts else np.zeros(0, np.float16)


def slice_clip(track: np.ndarray, rate: int, start: float, end: float, source: str) -> AudioClip:
    """A window of a decoded track as an AudioClip (no copy until it is streamed)."""
    a, b = int(round(start * rate)), min(track.shape[0], int(round(end * rate)))

    def blocks(target: int) -> Iterator[np.ndarray]:
        from omnibind.decoders import _resample_chunks

        chunks = (track[k : min(k + CHUNK, b)].astype(np.float32) for k in range(a, b, CHUNK))
        yield from _resample_chunks(chunks, rate, target)

    return AudioClip(source, rate, (b - a) / rate, blocks, expected_samples=b - a)


class _Soundtrack:
    """A video's soundtrack, decoded once on first use and shared by all of its scenes."""

    def __init__(self, parent: VideoClip, rate: int | None, seconds: float) -> None:
        self.parent, self.rate, self.seconds = parent, rate, seconds
        self._lock = threading.Lock()
        self._done = False
        self._track: tuple[np.ndarray, int] | None = None
        self._error: InputError | None = None

    def get(self) -> tuple[np.ndarray, int] | None:
        with self._lock:
            if not self._done:
                self._done = True
                try:
                    audio = self.parent.audio()
                    if audio is not None:
                        rate = self.rate or min(audio.sampling_rate, MAX_STORE_RATE)
                        self._track = (decode_track(audio, rate, self.seconds), rate)
                except InputError as exc:
                    self._error = exc
            if self._error is not None:
                raise self._error
            return self._track


def _audio_slicer(soundtrack: _Soundtrack | None, start: float, end: float, source: str):
    def audio() -> AudioClip | None:
        got = soundtrack.get() if soundtrack is not None else None
        if got is None or got[0].shape[0] <= int(start * got[1]):
            return None
        return slice_clip(got[0], got[1], start, end, source)

    return audio


# -- video ------------------------------------------------------------------------------------------


def video_data(clip: VideoClip) -> Any:
    """The bytes a decoded video file was opened from, or None (a clip made of a list of frames)."""
    return getattr(clip, "data", None)


def scene_targets(cuts: list[tuple[float, float]], per: int) -> list[tuple[float, int, int]]:
    """(time, scene, frame) for `per` frames at the centres of equal slices of each scene, by time."""
    out = [(a + (j + 0.5) * (b - a) / per, k, j) for k, (a, b) in enumerate(cuts) for j in range(per)]
    return sorted(out)


def scene_frames(data: Any, source: str, cuts: list[tuple[float, float]], per: int, side: int,
                 duration: float, limits: Limits) -> list[list[tuple[float, bytes]]]:
    """One front-to-back decode: for each scene, `per` (time, JPEG) frames, the first frame at or
    after each target time, scaled to at most `side` px. A video that stops well short of its
    header's duration is refused as truncated, like whole-video sampling does."""
    import av

    from omnibind.decoders import _counted_frames, _opener

    targets = scene_targets(cuts, per)
    out: list[list[tuple[float, bytes]]] = [[(0.0, b"")] * per for _ in cuts]
    at, last, last_time, jpeg = 0, None, 0.0, b""
    with av.open(_opener(data)) as container:
        for frame in _counted_frames(container, source, limits):
            last, last_time, jpeg = frame, float(frame.time or 0.0), b""
            while at < len(targets) and last_time + 1e-6 >= targets[at][0]:
                jpeg = jpeg or _small_jpeg(frame, side)
                _, k, j = targets[at]
                out[k][j] = (targets[at][0], jpeg)
                at += 1
            if at == len(targets):
                break
        if last is None:
            raise InputError(source, "no decodable video frames")
        if at < len(targets) and last_time < 0.9 * min(duration, cuts[-1][1]) - 0.5:
            raise InputError(source, f"truncated video: header promises {duration:.2f}s, frames stop at {last_time:.2f}s")
        jpeg = _small_jpeg(last, side) if at < len(targets) else b""
        for t, k, j in targets[at:]:
            out[k][j] = (t, jpeg)
    return out


def _small_jpeg(frame: Any, side: int) -> bytes:
    """A decoded frame scaled (by FFmpeg) to at most `side` px on its longest side, as JPEG."""
    scale = min(1.0, side / max(frame.width, frame.height))
    w, h = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    image = frame.reformat(width=w, height=h, format="rgb24").to_image()
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _frame_picker(kept: list[tuple[float, bytes]], start: float, end: float):
    """`frames(n)` of a scene: for the centres of n equal slices of [start, end), the kept frame
    nearest each centre, each kept frame once: a scene decoded with 2 frames costs the image tower
    2 frames, not the space's 8 copies of them (the fused mean is the same)."""
    times = np.asarray([t for t, _ in kept])

    def frames(n: int) -> "list[Image.Image]":
        from PIL import Image

        centres = [start + (i + 0.5) * (end - start) / n for i in range(n)]
        picks = list(dict.fromkeys(int(np.abs(times - t).argmin()) for t in centres))
        return [Image.open(io.BytesIO(kept[p][1])).convert("RGB") for p in picks]

    return frames
