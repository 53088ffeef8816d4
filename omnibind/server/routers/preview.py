"""Playable previews of videos (and sounds) that browsers cannot play as they are.

Browsers play H.264/VP8/VP9/AV1 video in MP4 or WebM and AAC/MP3/Opus/Vorbis/FLAC/PCM sound; an
AVI, an MPEG-4 Part 2 or FFV1 video, an AIFF... give a greyed player and no message. So:

* `GET /v1/items/{id}/playback?start=S`: what the page should do, from a container/codec probe
  with PyAV: `{"playable", "container", "video_codec", "audio_codec", "src", "poster", "download",
  "preview_start", "preview_seconds", "reason"}`; `src` is the file itself when it plays, the
  preview URL when it must be transcoded, null when it cannot be (`reason` says why).
* `GET /v1/items/{id}/preview?start=S`: a WebM (VP8 + Opus; H.264 + AAC MP4 where PyAV has no
  libvpx) of at most `PREVIEW_SECONDS` from `start` (snapped down to `START_STEP`, so one item
  has few previews), at most `PREVIEW_WIDTH` px wide and `MAX_FPS`, made on demand within
  `TRANSCODE_BUDGET_S` (a longer job keeps what it has made), one at a time.
* `GET /v1/items/{id}/poster?start=S`: a JPEG frame at `start`, `PREVIEW_WIDTH` wide.
* Each also at `/v1/collections/{name}/items/{id}/...` for a served collection other than the
  default; the links in the answers point there.

Previews are cached on disk (`$OMNIBIND_CACHE/previews`, else `previews/` in the collection's
folder), keyed by the file's content hash (the one stored at ingest while size and mtime still
match, else hashed now), written to a temporary name and renamed into place (atomic: concurrent
requests and processes never see half a file; a per-key lock makes one thread do the work). A
failure is cached too. The file is read through the media router's serve-time rule (no symlink,
inside the roots), and answers carry the same media headers.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from omnibind.collection import source_path
from omnibind.server.deps import Coll, State, scoped_routes
from omnibind.server.errors import ApiError, retry_later
from omnibind.server.files import OpenFileResponse
from omnibind.server.routers.media import MEDIA_HEADERS, open_file

router = APIRouter(tags=["items"])
PREVIEW_SECONDS = 60.0  # the most one preview holds
START_STEP = 30.0  # previews start at multiples of this (a segment at t is inside the one from floor(t / step) * step)
PREVIEW_WIDTH = 480
MAX_FPS = 30
TRANSCODE_BUDGET_S = 60.0  # wall time of one transcode; past it the preview ends where it got to
QUEUE_WAIT_S = 30.0  # how long a request waits for the transcoder before a 503
VIDEO_BITRATE = 600_000
# What browsers play (Chromium, Firefox, Safari alike): containers by PyAV's format names, codecs by decoder name.
PLAYABLE = {
    "mp4": ({"h264", "vp9", "av1"}, {"aac", "mp3", "opus", "flac"}),
    "webm": ({"vp8", "vp9", "av1"}, {"vorbis", "opus"}),
    "ogg": ({"theora", "vp8"}, {"vorbis", "opus", "flac"}),
    "mp3": (set(), {"mp3"}),
    "wav": (set(), {"pcm_s16le", "pcm_u8", "pcm_s24le", "pcm_f32le"}),
    "flac": (set(), {"flac"}),
}
_TRANSCODER = threading.BoundedSemaphore(1)  # transcoding takes every core it can get: one at a time
_KEY_LOCKS: dict[str, threading.Lock] = {}
_KEY_LOCKS_GUARD = threading.Lock()


class PreviewError(Exception):
    """This item cannot be previewed (no encoder, undecodable file); the message says why."""


@dataclass(frozen=True)
class Probe:
    container: str  # PyAV's format name, e.g. "avi", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"
    video: str | None  # decoder name of the first video stream
    audio: str | None
    duration: float | None  # seconds

    def family(self) -> str:
        """The container as browsers know it: mp4, webm, ogg, mp3, wav, flac, or PyAV's first name."""
        names = set(self.container.split(","))
        if names & {"mp4", "mov"}:
            return "mp4"
        if "webm" in names or "matroska" in names:
            return "webm" if {self.video, self.audio} - {None} <= {"vp8", "vp9", "av1", "opus", "vorbis"} else "matroska"
        return self.container.split(",")[0]

    def playable(self) -> bool:
        videos, audios = PLAYABLE.get(self.family(), (set(), set()))
        return ((self.video is None or self.video in videos) and (self.audio is None or self.audio in audios)
                and (self.video or self.audio) is not None)

    def reason(self) -> str | None:
        """Why a browser cannot play it (None if it can)."""
        if self.playable():
            return None
        codecs = " + ".join(c for c in (self.video, self.audio) if c)
        return f"{self.family().upper()} ({codecs or 'no streams'}) does not play in web browsers"


def probe(fd: int) -> Probe:
    """Container and codecs of an open media file (header only); PreviewError if PyAV cannot open it."""
    import av

    try:
        with _open(fd) as c:
            video = c.streams.video[0].codec_context.name if c.streams.video else None
            audio = c.streams.audio[0].codec_context.name if c.streams.audio else None
            seconds = c.duration / 1_000_000 if c.duration else None
            name = c.format.name
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise PreviewError(f"cannot read the file: {exc}") from None
    if video is None and audio is None:
        raise PreviewError("cannot read the file: no picture or sound found in it")
    return Probe(name, video, audio, seconds)


def encoders() -> tuple[str, str, str | None] | None:
    """(container, video encoder, audio encoder or None) this PyAV can write, best first; None if none."""
    import av

    have = av.codecs_available
    for fmt, videos, audios in (("webm", ("libvpx", "libvpx-vp9"), ("libopus", "opus")),
                                ("mp4", ("libx264", "h264", "libopenh264"), ("aac",))):
        video = next((v for v in videos if v in have), None)
        if video:
            return fmt, video, next((a for a in audios if a in have), None)
    return None


def snap(start: float, duration: float | None) -> float:
    """The preview start for a wanted moment: a multiple of START_STEP, not past the end."""
    if not math.isfinite(start) or start <= 0:
        return 0.0
    if duration:
        start = min(start, max(0.0, duration - 1.0))
    return math.floor(start / START_STEP) * START_STEP


# -- the cache ---------------------------------------------------------------------------------


def cache_dir(coll: Any) -> Path:
    base = os.environ.get("OMNIBIND_CACHE")
    return Path(base) / "previews" if base else Path(coll.path) / "previews"


def content_key(fd: int, row: dict[str, Any]) -> str:
    """The file's content hash: the one stored at ingest while size and mtime match, else hashed now."""
    st = os.fstat(fd)
    stored = row.get("sha256")
    if stored and row.get("size") == st.st_size and row.get("mtime") is not None and abs(row["mtime"] - st.st_mtime) < 1:
        return str(stored)
    digest, pos = hashlib.sha256(), 0
    while chunk := os.pread(fd, 1 << 20, pos):
        digest.update(chunk)
        pos += len(chunk)
    return digest.hexdigest()


@contextmanager
def key_lock(key: str) -> Iterator[None]:
    with _KEY_LOCKS_GUARD:
        lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with lock:
        yield


def cached(path: Path, make: Any) -> Path:
    """`path`, made by `make(tmp_path)` if missing (atomic rename); a cached failure raises PreviewError."""
    failed = path.with_name(path.name + ".failed")
    with key_lock(str(path)):
        if path.exists():
            return path
        if failed.exists():
            raise PreviewError(failed.read_text("utf-8"))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        os.close(fd)
        try:
            make(Path(tmp))
            os.replace(tmp, path)
        except PreviewError as exc:
            failed.write_text(str(exc), "utf-8")
            raise
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


# -- transcoding -------------------------------------------------------------------------------


def _even(x: float) -> int:
    return max(2, int(x) // 2 * 2)


@contextmanager
def _open(fd: int) -> Iterator[Any]:
    """A PyAV container on a duplicate of `fd`, read from the start (both closed after)."""
    import av

    os.lseek(fd, 0, os.SEEK_SET)
    with os.fdopen(os.dup(fd), "rb") as f, av.open(f) as container:
        yield container


def transcode(fd: int, target: Path, start: float, encoder: tuple[str, str, str | None]) -> None:
    """Write at most PREVIEW_SECONDS of the file from `start` to `target` (bounded in time and size)."""
    import av

    fmt, video_codec, audio_codec = encoder
    try:
        with _open(fd) as src, av.open(str(target), "w", format=fmt) as out:
            vin = src.streams.video[0] if src.streams.video else None
            ain = src.streams.audio[0] if src.streams.audio and audio_codec else None
            if vin is None and ain is None:
                raise PreviewError("it has no picture or sound this server can encode")
            vout = _video_out(out, vin, video_codec) if vin is not None else None
            aout = None
            if ain is not None:
                aout = out.add_stream(audio_codec, rate=48000)
                aout.layout = "stereo" if (ain.codec_context.channels or 1) >= 2 else "mono"
            if start > 0:
                src.seek(int(start * av.time_base))
            frames = _pump(src, [s for s in (vin, ain) if s is not None], vout, aout, start, out)
            if not frames:
                raise PreviewError(f"nothing to show from {start:g} s")
    except (av.FFmpegError, ValueError) as exc:
        raise PreviewError(f"transcoding failed: {exc}") from None


def _video_out(out: Any, vin: Any, codec: str) -> Any:
    width = _even(min(PREVIEW_WIDTH, vin.codec_context.width or PREVIEW_WIDTH))
    height = _even(width * (vin.codec_context.height or width) / (vin.codec_context.width or width))
    rate = vin.average_rate or vin.guessed_rate or 25
    stream = out.add_stream(codec, rate=min(MAX_FPS, max(1, round(float(rate)))))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)
    stream.bit_rate = VIDEO_BITRATE
    stream.gop_size = 2 * MAX_FPS  # a key frame every ~2 s: seeking in the player stays quick
    if codec.startswith("libvpx"):
        stream.options = {"deadline": "realtime", "cpu-used": "8", "threads": "2"}
    elif codec == "libx264":
        stream.options = {"preset": "veryfast", "threads": "2"}
    return stream


def _pump(src: Any, streams: list[Any], vout: Any, aout: Any, start: float, out: Any) -> int:
    """Decode from the (sought) position, encode what lies in [start, start + PREVIEW_SECONDS); frames written."""
    end, deadline = start + PREVIEW_SECONDS, time.monotonic() + TRANSCODE_BUDGET_S
    finished: set[int] = set()
    expected: dict[int, float] = {}  # where the next frame of each stream should be (for frames without a time)
    last_video, written = -math.inf, 0
    for packet in src.demux(*streams):
        if time.monotonic() > deadline or len(finished) == len(streams):
            break
        for frame in _decoded(packet):
            t = frame.time if frame.time is not None else expected.get(packet.stream.index)
            if t is None:
                continue
            expected[packet.stream.index] = t + _length(frame, packet.stream)
            if t < start - 1e-3:
                continue
            if t >= end:
                finished.add(packet.stream.index)
                continue
            if packet.stream.type == "video":
                if t - last_video < 1 / MAX_FPS - 1e-4:
                    continue  # over MAX_FPS: drop
                last_video = t
                frame = frame.reformat(width=vout.width, height=vout.height, format="yuv420p")
                frame.pts, frame.time_base = round((t - start) * 1000), Fraction(1, 1000)
                out.mux(vout.encode(frame))
            else:
                frame.pts = None  # the encoder counts samples (and resamples to 48 kHz)
                out.mux(aout.encode(frame))
            written += 1
    for stream in (vout, aout):
        if stream is not None:
            out.mux(stream.encode())
    return written


def _decoded(packet: Any) -> list[Any]:
    """The packet's frames; none for a damaged packet (players skip those too)."""
    import av

    try:
        return list(packet.decode())
    except av.InvalidDataError:
        return []


def _length(frame: Any, stream: Any) -> float:
    """How long a decoded frame lasts, in seconds."""
    if stream.type == "audio":
        return frame.samples / (frame.sample_rate or 48000)
    return 1 / float(stream.average_rate or stream.guessed_rate or 25)


def poster(fd: int, target: Path, start: float) -> None:
    """A JPEG of the first frame at or after `start`, at most PREVIEW_WIDTH wide."""
    import av

    deadline = time.monotonic() + 10.0
    try:
        with _open(fd) as src:
            if not src.streams.video:
                raise PreviewError("it has no picture")
            if start > 0:
                src.seek(int(start * av.time_base))
            for frame in src.decode(src.streams.video[0]):
                if frame.time is not None and frame.time < start - 0.05 and time.monotonic() < deadline:
                    continue
                image = frame.to_image()
                image.thumbnail((PREVIEW_WIDTH, PREVIEW_WIDTH * 4))
                image.save(target, format="JPEG", quality=82)
                return
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise PreviewError(f"no frame could be read: {exc}") from None
    raise PreviewError(f"no frame at {start:g} s")


# -- the endpoints -----------------------------------------------------------------------------

ROW = ["id", "modality", "source", "sha256", "size", "mtime", "duration"]


def _item(state: Any, coll: Any, item_id: str) -> tuple[dict[str, Any], int]:
    """The row of a video or sound of `coll` and its file, opened under the media rule (caller closes)."""
    state.refresh(coll)
    row = state.row(item_id, ROW, coll)
    if row["modality"] not in ("video", "audio"):
        raise ApiError(422, f"item {item_id[:300]!r} is {row['modality']}: only videos and sounds have previews")
    return row, open_file(item_id, row.get("source") or "", state)


def _made(state: Any, coll: Any, item_id: str, start: float, kind: str) -> tuple[Path, str]:
    """The cached preview ('preview') or poster ('poster') of an item, made if missing; and its type."""
    row, fd = _item(state, coll, item_id)
    try:
        found = probe(fd)
        at = snap(start, found.duration or row.get("duration"))
        key = content_key(fd, row)
        if kind == "poster":
            return cached(cache_dir(coll) / f"{key}-{at:g}.jpg", lambda tmp: poster(fd, tmp, at)), "image/jpeg"
        encoder = encoders()
        if encoder is None:
            raise PreviewError("this server's PyAV has neither a VP8/VP9 nor an H.264 encoder")
        path = cache_dir(coll) / f"{key}-{at:g}.{encoder[0]}"
        if not path.exists():
            if not _TRANSCODER.acquire(timeout=QUEUE_WAIT_S):
                raise retry_later(503, "the transcoder is busy with another preview; try again", 5)
            try:
                cached(path, lambda tmp: transcode(fd, tmp, at, encoder))
            finally:
                _TRANSCODER.release()
        kind_of = "video" if found.video else "audio"
        return path, f"{kind_of}/{encoder[0]}"
    except PreviewError as exc:
        raise ApiError(422, f"item {item_id[:300]!r} cannot be previewed: {exc}") from None
    except OSError as exc:
        raise ApiError(500, f"the preview cache cannot be written: {exc.strerror}") from None
    finally:
        os.close(fd)


@scoped_routes(router, "GET", "/v1/items/{item_id:path}/playback")
def playback(item_id: str, state: State, coll: Coll, start: float = 0.0) -> dict[str, Any]:
    """How to play a video or sound here: the file itself, a transcoded preview, or nothing (and why)."""
    row, fd = _item(state, coll, item_id)
    base = state.links_base(coll) + quote(item_id, safe="")
    out: dict[str, Any] = {"id": item_id, "modality": row["modality"], "download": base + "/media",
                           "preview_start": 0.0, "preview_seconds": None, "poster": None}
    try:
        found: Probe | None = probe(fd)
    except PreviewError as exc:
        found, out["reason"] = None, str(exc)
    finally:
        os.close(fd)
    if found is None:
        return {**out, "playable": False, "src": None, "container": None, "video_codec": None, "audio_codec": None}
    out.update(container=found.family(), video_codec=found.video, audio_codec=found.audio, playable=found.playable(),
               reason=found.reason())
    if found.video:
        out["poster"] = base + "/media?thumbnail=true"
    if found.playable():
        return {**out, "src": base + "/media"}
    at = snap(start, found.duration or row.get("duration"))
    left = (found.duration or row.get("duration") or PREVIEW_SECONDS) - at
    out.update(preview_start=at, preview_seconds=round(max(0.0, min(PREVIEW_SECONDS, left)), 3))
    if found.video:
        out["poster"] = f"{base}/poster?start={at:g}"
    if encoders() is None:
        return {**out, "src": None, "reason": f"{out['reason']}, and this server cannot transcode it (no encoder)"}
    return {**out, "src": f"{base}/preview?start={at:g}"}


@scoped_routes(router, "GET", "/v1/items/{item_id:path}/preview")
def preview(item_id: str, request: Request, state: State, coll: Coll, start: float = 0.0) -> Response:
    """A WebM (or MP4) the browser can play: at most PREVIEW_SECONDS from `start`, made once and cached."""
    path, media_type = _made(state, coll, item_id, start, "preview")
    return OpenFileResponse(os.open(path, os.O_RDONLY), media_type, request.headers.get("range"),
                            {**MEDIA_HEADERS, "Cache-Control": "max-age=86400"})


@scoped_routes(router, "GET", "/v1/items/{item_id:path}/poster")
def poster_frame(item_id: str, state: State, coll: Coll, start: float = 0.0) -> Response:
    """A JPEG frame of the video at `start` (snapped like the preview), PREVIEW_WIDTH wide."""
    path, media_type = _made(state, coll, item_id, start, "poster")
    return Response(path.read_bytes(), media_type=media_type, headers={**MEDIA_HEADERS, "Cache-Control": "max-age=86400"})
