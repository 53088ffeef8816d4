"""Moments: does a caption find *when* something happens in a long recording or video?

Real clips with known boundaries are assembled into long items: Tux Paint sound effects one
after another in a WAV (each in a slot of silence at least ~8 s long), Tux Paint photo-like stamps
as slides of a slideshow video (6-10 s each). Each clip's caption is a query; the windows view
cuts the long item into windows/scenes (`omnibind.views.windows`, the real thing), the space
embeds them, and the best window's centre must lie inside the clip the caption describes.
Built deterministically from a seed, from one split (test for numbers, train for tuning), and
cached under a cache folder: never committed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from omnibind.evaluate import datasets as ds
from omnibind.inputs import Input, load_file
from omnibind.views.windows import WindowsView

if TYPE_CHECKING:
    from omnibind.space import Space

FORMAT = 2  # bump when the way sets are built changes: cached sets are rebuilt
AUDIO_RATE = 44100
FRAME = (320, 240)


@dataclass(frozen=True)
class Part:
    """One real clip inside a long item: its caption and its [start, end) in seconds."""

    key: str
    caption: str
    start: float
    end: float


@dataclass
class Recording:
    """A long item assembled from parts: a WAV (audio) or a slideshow MP4 (video)."""

    path: Path
    modality: str
    duration: float
    parts: list[Part] = field(default_factory=list)


def cache_root() -> Path:
    """$OMNIBIND_CACHE/moments (default ~/.cache/omnibind/moments)."""
    base = os.environ.get("OMNIBIND_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "omnibind")
    return Path(base) / "moments"


def _cached(folder: Path, params: dict[str, Any]) -> list[Recording] | None:
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return None
    saved = json.loads(manifest.read_text("utf-8"))
    if saved.get("params") != params:
        return None
    return [Recording(folder / r["path"], r["modality"], r["duration"], [Part(**p) for p in r["parts"]])
            for r in saved["recordings"]]


def _save(folder: Path, params: dict[str, Any], recordings: list[Recording]) -> None:
    rows = [{**asdict(r), "path": r.path.name, "parts": [asdict(p) for p in r.parts]} for r in recordings]
    (folder / "manifest.json").write_text(json.dumps({"params": params, "recordings": rows}, indent=1), "utf-8")


def _groups(n_items: int, n_groups: int, per: int, seed: int) -> list[np.ndarray]:
    """Seeded disjoint groups of `per` item indices (as many groups as the items allow)."""
    order = np.random.default_rng(seed).permutation(n_items)
    n_groups = min(n_groups, n_items // per)
    return [order[k * per : (k + 1) * per] for k in range(n_groups)]


def build_audio(split: str = "test", recordings: int = 5, per: int = 10, seed: int = 0,
                min_slot: float = 8.0, root: Path | None = None) -> list[Recording]:
    """Long WAVs of `per` Tux Paint sounds of `split` each; every sound sits at a random place in
    a slot of silence min_slot..min_slot+6 s long (longer sounds get 2 s more than their length)."""
    params = {"format": FORMAT, "split": split, "recordings": recordings, "per": per, "seed": seed, "min_slot": min_slot}
    folder = (root or cache_root()) / f"audio-{split}-s{seed}"
    found = _cached(folder, params)
    if found is not None:
        return found
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    stamps = ds.tuxpaint_sounds(split)
    rng = np.random.default_rng([seed, 1, split == "test"])
    out = []
    for k, group in enumerate(_groups(len(stamps), recordings, per, seed)):
        pieces, parts, t = [], [], 0.0
        for i in group:
            sound = _sound(stamps[i].sound)
            slot = max(min_slot + rng.uniform(0, 6), sound.size / AUDIO_RATE + 2.0)
            before = int((slot * AUDIO_RATE - sound.size) * rng.uniform(0.2, 0.8))
            after = int(round(slot * AUDIO_RATE)) - sound.size - before
            pieces += [np.zeros(before, np.float32), sound, np.zeros(after, np.float32)]
            end = t + (before + sound.size + after) / AUDIO_RATE
            parts.append(Part(stamps[i].key, stamps[i].caption, t, end))
            t = end
        path = folder / f"recording{k:02d}.wav"
        sf.write(path, np.concatenate(pieces), AUDIO_RATE, subtype="PCM_16")
        out.append(Recording(path, "audio", t, parts))
    _save(folder, params, out)
    return out


def _sound(path: Path) -> np.ndarray:
    """A sound file, mono float32 at AUDIO_RATE, peak at most 0.9 (decoded by omnibind itself)."""
    clip = load_file(path).payload
    wave = np.concatenate(list(clip.stream(AUDIO_RATE, 65536)))
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    return wave * (0.9 / peak) if peak > 0.9 else wave


def build_video(split: str = "test", videos: int = 6, per: int = 10, seed: int = 0, fps: int = 2,
                show: tuple[float, float] = (6.0, 10.0), root: Path | None = None) -> list[Recording]:
    """Slideshow MP4s (MPEG-4 Part 2, 320x240, `fps`) of `per` Tux Paint photo-like stamps of
    `split` each, every slide shown for a random show[0]..show[1] seconds (whole frames)."""
    params = {"format": FORMAT, "split": split, "videos": videos, "per": per, "seed": seed, "fps": fps,
              "show": list(show)}
    folder = (root or cache_root()) / f"video-{split}-s{seed}"
    found = _cached(folder, params)
    if found is not None:
        return found
    folder.mkdir(parents=True, exist_ok=True)
    stamps = ds.tuxpaint_images(split)
    rng = np.random.default_rng([seed, 2, split == "test"])
    out = []
    for k, group in enumerate(_groups(len(stamps), videos, per, seed)):
        slides = [(stamps[i], int(round(rng.uniform(*show) * fps))) for i in group]
        path = folder / f"slideshow{k:02d}.mp4"
        _write_slideshow(path, [(_slide(s.image), n) for s, n in slides], fps)
        parts, t = [], 0
        for stamp, n in slides:
            parts.append(Part(stamp.key, stamp.caption, t / fps, (t + n) / fps))
            t += n
        out.append(Recording(path, "video", t / fps, parts))
    _save(folder, params, out)
    return out


def _slide(path: Path) -> Any:
    """A stamp letterboxed on a white 320x240 frame."""
    from PIL import Image

    from omnibind.decoders import to_rgb

    with Image.open(path) as image:
        picture = to_rgb(image)
    picture.thumbnail(FRAME)
    frame = Image.new("RGB", FRAME, "white")
    frame.paste(picture, ((FRAME[0] - picture.width) // 2, (FRAME[1] - picture.height) // 2))
    return frame


def _write_slideshow(path: Path, slides: list[tuple[Any, int]], fps: int) -> None:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = FRAME[0], FRAME[1], "yuv420p"
        stream.bit_rate = 800_000
        pts = 0
        for image, n in slides:
            for _ in range(n):
                frame = av.VideoFrame.from_image(image)
                frame.pts = pts
                pts += 1
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


# -- scoring ----------------------------------------------------------------------------------------


@dataclass
class _Windows:
    """The windows of one recording: their [start, end) and their vectors."""

    times: np.ndarray  # (n, 2)
    vectors: np.ndarray  # (n, dim)


def embed_windows(space: "Space", recording: Recording, view: WindowsView) -> _Windows:
    """The recording decoded like any file, cut by the view, each window embedded by the space."""
    segments = view.segments(load_file(recording.path), space)
    media: list[Input] = [s.media for s in segments]
    vectors = space.embed(media) if media else np.zeros((0, space.dim), np.float32)
    return _Windows(np.asarray([(s.start, s.end) for s in segments], dtype=float).reshape(-1, 2), vectors)


def _inside(times: np.ndarray, part: Part) -> np.ndarray:
    centres = times.mean(axis=1)
    return (centres >= part.start) & (centres < part.end)


def score_group(space: "Space", recordings: list[Recording], view: WindowsView) -> dict[str, Any]:
    """Hit rates for one modality's recordings (see `score`)."""
    t0 = time.perf_counter()
    windows = [embed_windows(space, r, view) for r in recordings]
    seconds = time.perf_counter() - t0
    parts = [(k, p) for k, r in enumerate(recordings) for p in r.parts]
    queries = space.embed([p.caption for _, p in parts])
    everything = np.concatenate([w.vectors for w in windows])
    owner = np.concatenate([np.full(len(w.times), k) for k, w in enumerate(windows)])
    hits = chance = right_rec = right_both = rec_chance = 0.0
    for q, (k, part) in zip(queries, parts):
        w = windows[k]
        inside = _inside(w.times, part)
        if len(w.times):
            hits += bool(inside[int(np.argmax(w.vectors @ q))])
            chance += float(inside.mean())
        best = int(np.argmax(everything @ q))
        right_rec += owner[best] == k
        right_both += owner[best] == k and bool(inside[best - int(np.flatnonzero(owner == k)[0])])
        rec_chance += len(w.times) / len(owner)
    n = len(parts)
    return {"queries": n, "recordings": len(recordings), "windows": int(len(owner)),
            "seconds": round(sum(r.duration for r in recordings), 1),
            "hit_rate": 100 * hits / n, "chance": 100 * chance / n,
            "right_recording": 100 * right_rec / n, "right_recording_chance": 100 * rec_chance / n,
            "right_recording_and_clip": 100 * right_both / n, "embed_seconds": round(seconds, 2)}


def clips_alone(space: "Space", recordings: list[Recording], files: dict[str, Path]) -> float:
    """Reference: R@1 of each caption among the clips of its recording embedded one by one
    (what the windows could reach if they were cut exactly at the boundaries)."""
    hits = total = 0
    for r in recordings:
        vectors = space.embed([files[p.key] for p in r.parts])
        queries = space.embed([p.caption for p in r.parts])
        hits += int((np.argmax(queries @ vectors.T, axis=1) == np.arange(len(r.parts))).sum())
        total += len(r.parts)
    return 100 * hits / max(1, total)


def score(space: "Space", audio: list[Recording], video: list[Recording], view: WindowsView | None = None,
          reference: bool = True) -> dict[str, Any]:
    """{"audio": {...}, "video": {...}}: per modality, `hit_rate` (% of captions whose best window
    in their own recording has its centre inside the right clip) with `chance` (the share of that
    recording's windows inside the clip), `right_recording` (best window over all recordings'
    windows is in the right recording; chance alongside), and `clips_alone` (R@1 among the
    recording's clips embedded whole) when `reference`."""
    view = view or WindowsView()
    out: dict[str, Any] = {"view": {"window": view.window, "hop": view.hop, "scene": view.scene,
                                    "scene_hop": view.scene_hop}}
    for name, group in (("audio", audio), ("video", video)):
        if not group:
            continue
        out[name] = score_group(space, group, view)
        if reference:
            stamps = {s.key: s for s in ds.tuxpaint_stamps()}
            files = {k: (s.sound if name == "audio" else s.image) for k, s in stamps.items()}
            out[name]["clips_alone"] = clips_alone(space, group, files)
    return out
