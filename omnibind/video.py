"""Video: not a backbone of its own. A fixed number of frames sampled uniformly in time go
through the image tower, the soundtrack (if any) through the audio tower, and the two are
fused by a weighted mean in the shared space. Same file, same frames, same vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from omnibind.errors import InputError
from omnibind.inputs import Input, VideoClip
from omnibind.tower import Progress, fuse

if TYPE_CHECKING:
    from omnibind.tower import Tower


@dataclass(frozen=True)
class VideoFusion:
    """How a space turns a video into one vector; stored in `space.json`."""

    frames: int = 8
    image_weight: float = 0.75
    audio_weight: float = 0.25

    def config(self) -> dict[str, Any]:
        return asdict(self)


def embed_videos(
    videos: Sequence[Input],
    image_tower: "Tower",
    audio_tower: "Tower | None",
    fusion: VideoFusion,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> tuple[np.ndarray, dict[int, InputError]]:
    """One fused vector per video (NaN rows for failures) and the errors by position."""
    out = np.full((len(videos), image_tower.dim), np.nan, dtype=np.float32)
    errors: dict[int, InputError] = {}
    chunk = max(1, batch_size // fusion.frames)  # bound decoded frames held in memory
    for start in range(0, len(videos), chunk):
        part = videos[start : start + chunk]
        vectors, part_errors = _embed_chunk(part, image_tower, audio_tower, fusion, batch_size)
        out[start : start + len(part)] = vectors
        errors.update({start + i: e.with_index(start + i) for i, e in part_errors.items()})
        if progress:
            progress(len(part))
    return out, errors


def _embed_chunk(
    videos: Sequence[Input], image_tower: "Tower", audio_tower: "Tower | None", fusion: VideoFusion, batch_size: int
) -> tuple[np.ndarray, dict[int, InputError]]:
    errors: dict[int, InputError] = {}
    frames: list[Input] = []
    frame_owner: list[int] = []
    sounds: list[Input] = []
    sound_owner: list[int] = []
    for i, video in enumerate(videos):
        clip: VideoClip = video.payload
        try:
            picked = clip.frames(fusion.frames)
            track = clip.audio() if audio_tower is not None else None
        except InputError as exc:
            errors[i] = exc
            continue
        frames += [Input("image", im, f"{video.source}#frame{k}") for k, im in enumerate(picked)]
        frame_owner += [i] * len(picked)
        if track is not None:
            sounds.append(Input("audio", track, video.source))
            sound_owner.append(i)
    image_vecs, image_errors = image_tower.embed(frames, batch_size)
    for j, exc in image_errors.items():
        errors.setdefault(frame_owner[j], InputError(videos[frame_owner[j]].source, f"frame: {exc.reason}"))
    good = [j for j in range(len(frames)) if j not in image_errors]
    picture = fuse(image_vecs[good], np.asarray(frame_owner, dtype=np.int64)[good], len(videos))
    parts, owners, weights = [picture], list(range(len(videos))), [fusion.image_weight] * len(videos)
    if sounds and audio_tower is not None:
        sound_vecs, sound_errors = audio_tower.embed(sounds, batch_size)
        for j, exc in sound_errors.items():
            errors.setdefault(sound_owner[j], InputError(videos[sound_owner[j]].source, f"soundtrack: {exc.reason}"))
        heard = [j for j in range(len(sounds)) if j not in sound_errors]
        parts.append(torch.from_numpy(sound_vecs[heard]))
        owners += [sound_owner[j] for j in heard]
        weights += [fusion.audio_weight] * len(heard)
    fused = fuse(torch.cat(parts), owners, len(videos), weights).numpy()
    fused[list(errors)] = np.nan
    return fused, errors
