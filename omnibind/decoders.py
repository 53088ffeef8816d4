"""Decoders: bytes of a known format -> a decoded payload (text, PIL image, AudioClip, VideoClip).

Every decoder reads from an in-memory buffer (`bytes`, or a read-only memory map for big files)
that was read from disk once (`omnibind.inputs.read_file`): hashing, sniffing and decoding all see
the same bytes, and a decoder that needs the data several times (probe, then stream) opens a new
reader over the buffer, never the file. Lazy audio and video decoding keep long files streamed.
Every failure is an `InputError` naming the source and the reason.
"""

from __future__ import annotations

import io
import mmap
import re
import unicodedata
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np
from PIL import Image

from omnibind.errors import InputError

Data = Union[bytes, mmap.mmap]  # a whole file's bytes


@dataclass(frozen=True)
class Limits:
    """Per-input budgets, checked before the work, that keep hostile or huge files from
    exhausting memory or time. Raise one to accept bigger inputs (long ones stay streamed).

    The defaults bound one input to about a minute and well under 1 GB on two cores (see the
    "Bad input" section of docs/usage.md for the measurements).
    """

    max_file_bytes: int = 4 * 1024**3
    max_image_pixels: int = 64_000_000
    max_text_chars: int = 1_000_000
    max_audio_seconds: float = 3600.0  # 1 h of sound: ~50 s to embed, memory bounded (streamed)
    max_video_seconds: float = 7200.0  # 2 h, soundtrack included
    max_video_frames: int = 300_000  # frames decoded to sample a video (2 h at 40 fps)
    min_sample_rate: int = 4000  # a file declaring less (1 Hz...) would be resampled into a flood
    max_sample_rate: int = 768_000
    max_segments: int = 1000  # per view and item: ~150 pages of chunks, 1 h of speech; more are left out and said


DEFAULT_LIMITS = Limits()



@dataclass
class AudioClip:
    """Mono audio, decoded block by block on demand.

    `stream(rate, block)` yields float32 arrays of exactly `block` samples at `rate` Hz (the
    last may be shorter); calling it twice decodes twice and gives the same samples. Every
    decoded chunk is checked as it comes: NaN or infinite samples, or more sound than
    `max_seconds` (whatever the header said), raise InputError.
    """

    source: str
    sampling_rate: int
    duration: float
    _blocks: Callable[[int], Iterator[np.ndarray]] = field(repr=False)
    expected_samples: int | None = None
    max_seconds: float | None = None

    def stream(self, rate: int, block: int) -> Iterator[np.ndarray]:
        if rate <= 0 or block <= 0:
            raise ValueError(f"rate and block must be positive, got rate={rate}, block={block}")
        # Copy each decoded chunk once into a block-sized buffer: linear in the length of the
        # audio whatever the ratio of chunk to block size.
        buf = np.empty(block, dtype=np.float32)
        fill = 0
        total_in = 0
        for chunk in self._resampled(rate):
            chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
            total_in += chunk.shape[0]
            self._check_chunk(chunk, total_in, rate)
            pos = 0
            while pos < chunk.shape[0]:
                take = min(block - fill, chunk.shape[0] - pos)
                buf[fill : fill + take] = chunk[pos : pos + take]
                fill += take
                pos += take
                if fill == block:
                    yield buf
                    buf = np.empty(block, dtype=np.float32)
                    fill = 0
        if fill:
            yield buf[:fill]
        self._check_complete(total_in, rate)

    def _check_chunk(self, chunk: np.ndarray, total: int, rate: int) -> None:
        if not np.isfinite(chunk).all():
            raise InputError(self.source, "audio contains NaN or infinite samples")
        if self.max_seconds is not None and total > (self.max_seconds + 1.0) * rate:
            raise InputError(
                self.source,
                f"audio decodes to more than the limit of {self.max_seconds:.0f}s "
                f"(its header said {self.duration:.0f}s)",
            )

    def _resampled(self, rate: int) -> Iterator[np.ndarray]:
        try:
            yield from self._blocks(rate)
        except InputError:
            raise
        except Exception as exc:  # decoder libraries raise many types; name the file
            raise InputError(self.source, f"audio decoding failed: {exc}") from exc

    def _check_complete(self, produced: int, rate: int) -> None:
        if produced == 0:
            raise InputError(self.source, "audio has no samples")
        if self.expected_samples:
            expected = self.expected_samples * rate / self.sampling_rate
            if _falls_short(produced, expected, rate):
                raise InputError(
                    self.source,
                    f"truncated audio: header promises {expected / rate:.2f}s, "
                    f"only {produced / rate:.2f}s could be decoded",
                )


def _falls_short(got: float, promised: float, rate: float) -> bool:
    """Fewer samples than a header promised, beyond codec padding (2% and 50 ms of slack)."""
    return got < 0.98 * promised - rate * 0.05


@dataclass
class VideoClip:
    """A video: frames sampled on demand, and its soundtrack if it has one."""

    source: str
    duration: float | None
    has_audio: bool
    _frames: Callable[[int], list[Image.Image]] = field(repr=False)
    _audio: Callable[[], AudioClip | None] = field(repr=False)
    data: Any = field(default=None, repr=False)  # the bytes it was opened from (time windows cut from them)

    def frames(self, n: int) -> list[Image.Image]:
        """`n` frames at the centres of `n` equal time slices: deterministic for a file."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        try:
            return self._frames(n)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(self.source, f"video decoding failed: {exc}") from exc

    def audio(self) -> AudioClip | None:
        return self._audio() if self.has_audio else None




class BufferReader(io.RawIOBase):
    """A seekable read-only file over a buffer; many readers may share one buffer (no copy)."""

    RELEASE_EVERY = 32 * 1024**2

    def __init__(self, data: Data) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._pos = 0
        # Pages of a memory-mapped file already read are handed back as a long file streams
        # through (they stay in the page cache; a later read maps them again): RSS stays flat.
        self._map = data if isinstance(data, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED") else None
        self._released = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), len(self._view) - self._pos))
        b[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        if self._map is not None and self._pos - self._released > self.RELEASE_EVERY:
            end = (self._pos - 1024**2) // mmap.PAGESIZE * mmap.PAGESIZE
            if end > self._released:
                self._map.madvise(mmap.MADV_DONTNEED, self._released, end - self._released)
                self._released = end
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def _opener(data: Data) -> io.BufferedReader | io.BytesIO:
    return io.BytesIO(data) if isinstance(data, bytes) else io.BufferedReader(BufferReader(data))


# Sniffing


def sniff(head: bytes) -> str | None:
    """Name the format family of a file from its first bytes.

    Returns "image", "audio", "video", "container" (MP4/Matroska/Ogg/AVI: audio or video,
    decided by the streams inside), "document" (PDF), "text", or None when the bytes are no
    format we know. A PDF is checked before text: its head is often plain ASCII.
    """
    if _looks_like_pdf(head):
        return "document"
    if head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in (
        12, 40, 52, 56, 64, 108, 124,
    ):
        return "image"
    if head[:4] == b"RIFF" and len(head) >= 12:
        return {b"WEBP": "image", b"WAVE": "audio", b"AVI ": "container"}.get(head[8:12])
    if head.startswith(b"fLaC"):
        return "audio"
    if head.startswith(b"ID3") and len(head) >= 10 and head[3] in (2, 3, 4) and head[4] != 0xFF:
        return "audio"  # ID3v2 tag (version 2.2-2.4) in front of MP3/AAC frames
    if bom_encoding(head) is not None:
        return "text"  # UTF-16/32 with a byte-order mark (FF FE also starts MPEG audio frames)
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) in (0xF2, 0xF0, 0xF6, 0xF4):
        return "audio"  # MPEG audio / ADTS frame sync
    if head[4:8] == b"ftyp" or head.startswith(b"\x1a\x45\xdf\xa3") or head.startswith(b"OggS"):
        return "container"
    if _looks_like_text(head):
        return "text"
    return None


_PDF_HEADER = re.compile(rb"%PDF-\d\.\d")
_PDF_OBJECT = re.compile(rb"\d+\s+\d+\s+obj\b")


def _looks_like_pdf(head: bytes) -> bool:
    """`%PDF-` at the start, or `%PDF-x.y` later in the first KiB with PDF objects after it
    (readers accept junk before the header; a note that mentions "%PDF-1.4" has no objects)."""
    if head.startswith(b"%PDF-"):
        return True
    found = _PDF_HEADER.search(head, 0, 1024)
    return found is not None and _PDF_OBJECT.search(head, found.end()) is not None


def _looks_like_text(head: bytes) -> bool:
    if bom_encoding(head) is not None:
        return True
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a multibyte character cut by the sniff window


_BOMS = (  # UTF-32 first: its little-endian BOM starts like UTF-16's
    (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"),
)


def bom_encoding(head: bytes) -> str | None:
    """"utf-16" or "utf-32" when the bytes start with that byte-order mark and what follows
    decodes in it (an MPEG audio frame can start with 0xFF 0xFE too)."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            unit = 4 if encoding == "utf-32" else 2
            body = head[: len(head) - (len(head) - len(bom)) % unit]
            try:
                text = body.decode(encoding)
            except UnicodeDecodeError as exc:
                if exc.end < len(body) - 2:  # not just a surrogate pair cut by the sniff window
                    return None
                text = body[: exc.start].decode(encoding)
            return encoding if implausible_text(text, final=False) is None else None
    return None


_CONTROLS = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")  # C0 but tab, newlines, FF, VT, ESC; DEL


def implausible_text(text: str, final: bool = True) -> str | None:
    """Why decoded file content is not text a person wrote, or None when it is.

    Control characters other than whitespace and ESC must stay under 1% (none at all in a text
    of fewer than 100 characters), and a text needs at least two letters, digits or symbols, or
    one beyond ASCII (a single CJK character is a word). `final=False` for a file's first bytes:
    the words may come later.
    """
    if "\x00" in text:
        return "binary content (NUL bytes) in what looked like text"
    controls = len(_CONTROLS.findall(text))
    if controls > len(text) // 100:
        return f"binary content ({controls} control characters in {len(text)}) in what looked like text"
    if final and text.strip() and not _has_words(text):
        return "not text: fewer than two letters, digits or symbols"
    return None


def _has_words(text: str) -> bool:
    found = 0
    for c in text:
        if c.isalnum() or unicodedata.category(c)[0] == "S":
            if ord(c) > 0x7F or found:
                return True
            found = 1
    return False


def decode_text(where: Data, source: str, limits: Limits) -> str:
    """UTF-8 text (a BOM is dropped), or UTF-16/32 with a byte-order mark; NUL bytes, binary
    content or other encodings are refused by name."""
    size = len(where)
    # UTF-8 spends at most 4 bytes a character (+3 for a BOM): refuse before decoding it all.
    if size > 4 * limits.max_text_chars + 4:
        raise InputError(source, f"text file is {size} bytes, over the limit of {limits.max_text_chars} characters")
    encoding = bom_encoding(bytes(where[:4096])) or "utf-8-sig"
    try:
        text = bytes(where).decode(encoding)
    except UnicodeDecodeError as exc:
        name = "UTF-8" if encoding == "utf-8-sig" else encoding.upper()
        raise InputError(source, f"not valid {name} text (byte {exc.start}); re-save it as UTF-8") from None
    reason = implausible_text(text)
    if reason is not None:
        raise InputError(source, reason)
    return text


def check_text(text: str, source: str, limits: Limits) -> str:
    """A text within the character limit and not blank."""
    if len(text) > limits.max_text_chars:
        raise InputError(source, f"text has {len(text)} characters, over the limit of {limits.max_text_chars}")
    if not text.strip():
        raise InputError(source, "empty text")
    return text


def decode_text_input(where: Data, source: str, limits: Limits) -> str:
    return check_text(decode_text(where, source, limits), source, limits)


def looks_like_bomless_utf16(head: bytes) -> bool:
    """UTF-16 or UTF-32 text without a byte-order mark: NUL bytes at a fixed stride (the high
    bytes of Latin characters), the bytes between them not."""
    for unit in (2, 4):
        usable = len(head) // unit * unit
        if usable < 4 * unit:
            continue
        lanes = [head[k:usable:unit] for k in range(unit)]
        zeros = [lane.count(0) / len(lane) for lane in lanes]
        low = max(range(unit), key=lambda k: -zeros[k])  # the lane holding the characters
        if zeros[low] < 0.05 and all(z >= 0.6 for k, z in enumerate(zeros) if k != low):
            return True
    return False


def looks_like_legacy_text(head: bytes) -> bool:
    """Text in a legacy 8-bit encoding (Latin-1, cp1252...): no NULs, almost no control bytes."""
    if not head or b"\x00" in head:
        return False
    controls = sum(1 for b in head if b < 0x20 and b not in b"\t\n\r\f") + head.count(0x7F)
    return controls <= len(head) // 100




# --------------------------------------------------------------------------------------------
# Images


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB with any transparency composited onto white (stamps and logos look right)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _checked_image(image: Image.Image, source: str, limits: Limits) -> Image.Image:
    w, h = image.size
    if w * h > limits.max_image_pixels:
        raise InputError(source, f"image is {w}x{h} = {w * h} pixels, over the limit of {limits.max_image_pixels}")
    if w == 0 or h == 0:
        raise InputError(source, "image has zero width or height")
    return image


def image_object(image: Image.Image, source: str, limits: Limits) -> Image.Image:
    """A PIL image handed in by the caller: size-checked, decoded now (a lazily opened file
    may be truncated), RGB with transparency on white like images decoded from files."""
    _checked_image(image, source, limits)
    try:
        image.load()
    except Exception as exc:
        raise InputError(source, f"truncated or corrupt image: {exc}") from None
    if image.mode == "F" and not np.isfinite(np.asarray(image)).all():  # 32-bit float pixels
        raise InputError(source, "image contains NaN or infinite pixel values")
    return to_rgb(image)


def open_image(where: Data, source: str, limits: Limits) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(_opener(where))
            _checked_image(image, source, limits)
            image.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(source, f"image too large (decompression bomb guard): {exc}") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on bad files
        raise InputError(source, f"truncated or corrupt image: {exc}") from None
    return to_rgb(image)


# --------------------------------------------------------------------------------------------
# Audio


def audio_from_array(obj: dict, source: str, limits: Limits) -> AudioClip:
    """An in-memory waveform: `{"array": (n,) or (n, channels), "sampling_rate": int}`.

    The caller's array is taken at its word (no minimum sample rate: the samples are already in
    memory), but it is resampled in chunks like a file, so memory stays bounded."""
    try:
        rate = int(obj["sampling_rate"])
        array = np.asarray(obj["array"], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(source, f"audio dict needs 'array' and 'sampling_rate': {exc}") from None
    if rate <= 0:
        raise InputError(source, f"sampling_rate must be positive, got {rate}")
    if array.ndim == 2:
        if array.shape[1] > array.shape[0]:
            raise InputError(
                source,
                f"audio array of shape {array.shape} looks channels-first; pass (samples, channels)",
            )
        array = array.mean(axis=1)
    if array.ndim != 1 or array.size == 0:
        raise InputError(source, f"audio array must be 1-D (or 2-D with channels last) and non-empty, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise InputError(source, "audio array contains NaN or infinite samples")
    duration = array.size / rate
    _check_duration(duration, source, limits.max_audio_seconds)

    def blocks(target: int) -> Iterator[np.ndarray]:
        yield from _resample_chunks((array[k : k + 65536] for k in range(0, array.size, 65536)), rate, target)

    return AudioClip(source, rate, duration, blocks, max_seconds=limits.max_audio_seconds)


def _resample_chunks(chunks: Iterable[np.ndarray], rate: int, target: int) -> Iterator[np.ndarray]:
    """Mono float32 chunks at `rate` -> at `target`, streamed (same samples as one-shot soxr)."""
    if rate == target:
        yield from chunks
        return
    import soxr

    resampler = soxr.ResampleStream(rate, target, 1, dtype="float32")
    for chunk in chunks:
        yield resampler.resample_chunk(np.ascontiguousarray(chunk, dtype=np.float32))
    yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def _check_duration(seconds: float, source: str, limit: float, what: str = "audio") -> None:
    if seconds > limit:
        raise InputError(
            source,
            f"{what} lasts {seconds:.0f}s, over the limit of {limit:.0f}s (raise Limits.max_{what}_seconds for more)",
        )


def _check_rate(rate: float, source: str, limits: Limits) -> None:
    """A file's declared sample rate, checked before any decoding: resampling a 1 Hz file to
    44.1 kHz turns a few KB into gigabytes."""
    if rate < limits.min_sample_rate:
        raise InputError(
            source,
            f"sample rate of {rate:g} Hz is below the minimum of {limits.min_sample_rate} Hz (corrupt or not sound)",
        )
    if rate > limits.max_sample_rate:
        raise InputError(source, f"sample rate of {rate:g} Hz is over the maximum of {limits.max_sample_rate} Hz")


def open_audio(where: Data, source: str, limits: Limits = DEFAULT_LIMITS) -> AudioClip:
    """Open audio with libsndfile (WAV/FLAC/OGG/MP3), falling back to FFmpeg through PyAV."""
    import soundfile as sf

    try:
        info = sf.info(_opener(where))
    except Exception:
        return _open_audio_av(where, source, limits, limits.max_audio_seconds)
    if info.frames <= 0 or info.samplerate <= 0:
        raise InputError(source, "audio has no samples")
    _check_rate(info.samplerate, source, limits)
    if info.format in ("WAV", "WAVEX"):
        _check_wav_complete(where, source, info)
    _check_duration(info.frames / info.samplerate, source, limits.max_audio_seconds)
    rate = int(info.samplerate)

    def blocks(target: int) -> Iterator[np.ndarray]:
        yield from _resample_chunks(_sf_chunks(where), rate, target)

    return AudioClip(source, rate, info.frames / rate, blocks, expected_samples=int(info.frames),
                     max_seconds=limits.max_audio_seconds)


def _sf_chunks(where: Data) -> Iterator[np.ndarray]:
    """Mono float32 chunks as libsndfile decodes them."""
    import soundfile as sf

    with sf.SoundFile(_opener(where)) as fh:
        # Not fh.blocks(): past a truncation it keeps yielding full blocks of stale buffer
        # up to the frame count in the header. read() returns only what was decoded.
        while True:
            chunk = fh.read(65536, dtype="float32", always_2d=True)
            if chunk.shape[0] == 0:
                break
            yield chunk.mean(axis=1, dtype=np.float32)


def _check_wav_complete(where: Data, source: str, info: Any) -> None:
    """libsndfile quietly shortens a WAV whose data chunk runs past the end of the file; the
    RIFF header still says how many bytes of samples there should be."""
    try:
        fh = _opener(where)
    except OSError as exc:  # pragma: no cover - an in-memory reader does not fail to open
        raise InputError(source, f"cannot read file: {exc.strerror or exc}") from None
    with fh:
        pos, block_align = 12, 0
        for _ in range(4096):  # chunks before 'data' (fmt, LIST, fact...): never that many
            fh.seek(pos)
            header = fh.read(8)
            if len(header) < 8:
                return
            chunk_id, chunk_size = header[:4], int.from_bytes(header[4:], "little")
            if chunk_id == b"fmt ":
                fmt = fh.read(16)
                block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) == 16 else 0
            elif chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF) or block_align <= 0:
                    return  # streamed WAV (size never filled in): nothing promised
                promised = chunk_size // block_align
                if info.frames < promised:  # PCM has no codec padding: every frame must be there
                    raise InputError(
                        source,
                        f"truncated WAV: header promises {promised} frames ({promised / info.samplerate:.2f}s), "
                        f"the file holds {info.frames} ({info.frames / info.samplerate:.2f}s)",
                    )
                return
            pos += 8 + chunk_size + (chunk_size & 1)


def _open_audio_av(where: Data, source: str, limits: Limits, max_seconds: float, what: str = "audio") -> AudioClip:
    """Audio (or a video's soundtrack: `what="video"`, held to the video's duration limit)
    through FFmpeg; the stream's declared rate and duration are checked before decoding."""
    import av

    try:
        with av.open(_opener(where)) as container:
            if not container.streams.audio:
                raise InputError(source, "no audio stream")
            stream = container.streams.audio[0]
            if stream.codec_context is None:
                raise InputError(source, "unsupported audio codec (FFmpeg has no decoder for it)")
            rate = int(stream.codec_context.sample_rate or 0)
            duration = _stream_seconds(container, stream)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(source, f"unsupported or corrupt audio: {exc}") from None
    if rate <= 0:
        raise InputError(source, "audio stream has no sample rate")
    _check_rate(rate, source, limits)
    _check_duration(duration or 0.0, source, max_seconds, what)
    return AudioClip(source, rate, duration or 0.0, lambda target: _av_audio_blocks(where, source, target),
                     max_seconds=max_seconds)


def _av_audio_blocks(where: Data, source: str, target: int) -> Iterator[np.ndarray]:
    import av

    with av.open(_opener(where)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=target)
        for frame in decode_tolerant(container, container.streams.audio[0], source):
            for out in resampler.resample(frame):
                yield out.to_ndarray().reshape(-1)
        for out in resampler.resample(None):
            yield out.to_ndarray().reshape(-1)


MAX_BAD_PACKET_FRACTION = 0.05


def decode_tolerant(container: Any, stream: Any, source: str) -> Iterator[Any]:
    """Decode a stream like FFmpeg's players do: skip the odd corrupt packet, fail on many.

    Real files often carry a damaged packet or two; a file where more than 5% of the
    packets are damaged (or none decodes) is reported as corrupt.
    """
    import av

    good = bad = 0
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            bad += 1
            continue
        good += 1
        yield from frames
    if bad and (good == 0 or bad > max(2, MAX_BAD_PACKET_FRACTION * (good + bad))):
        raise InputError(source, f"corrupt {stream.type} stream: {bad} of {good + bad} packets undecodable")


def _stream_seconds(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


# --------------------------------------------------------------------------------------------
# Video


def container_modality(where: Data, source: str) -> str:
    """MP4 / Matroska / Ogg hold video or only sound: ask the streams."""
    import av

    try:
        with av.open(_opener(where)) as container:
            has_video = any(
                not (s.disposition & av.stream.Disposition.attached_pic) for s in container.streams.video
            )
            if has_video:
                return "video"
            if container.streams.audio:
                return "audio"
    except Exception as exc:
        raise InputError(source, f"corrupt or unsupported media container: {exc}") from None
    raise InputError(source, "media container has no audio or video stream")


def open_video(where: Data, source: str, limits: Limits = DEFAULT_LIMITS) -> VideoClip:
    """Probe a video file; frames and soundtrack are decoded later, on demand. The declared
    frame size, duration and frame count are checked here, before any decoding."""
    import av

    try:
        with av.open(_opener(where)) as container:
            if not container.streams.video:
                raise InputError(source, "no video stream")
            vstream = container.streams.video[0]
            duration = _stream_seconds(container, vstream)
            has_audio = bool(container.streams.audio)
            w, h = vstream.codec_context.width, vstream.codec_context.height
            indexed = int(vstream.frames or 0)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(source, f"corrupt or unsupported video: {exc}") from None
    if w * h > limits.max_image_pixels:
        raise InputError(source, f"video frames are {w}x{h}, over the limit of {limits.max_image_pixels} pixels")
    if duration is not None:
        _check_duration(duration, source, limits.max_video_seconds, "video")
    if indexed > limits.max_video_frames:
        raise InputError(source, _too_many_frames(indexed, limits))

    def frames(n: int) -> list[Image.Image]:
        return _sample_frames(where, source, n, duration, limits)

    def audio() -> AudioClip:
        return _open_audio_av(where, source, limits, limits.max_video_seconds, "video")

    return VideoClip(source, duration, has_audio, frames, audio, data=where)


def _too_many_frames(count: int | str, limits: Limits) -> str:
    return (
        f"video has {count} frames, over the limit of {limits.max_video_frames} "
        "(raise Limits.max_video_frames for more)"
    )


def _counted_frames(container: Any, source: str, limits: Limits) -> Iterator[Any]:
    """The video stream's frames, decoded tolerantly, at most `max_video_frames` of them, each
    within the pixel limit (a stream may change size after its header)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    for count, frame in enumerate(decode_tolerant(container, stream, source), 1):
        if count > limits.max_video_frames:
            raise InputError(source, _too_many_frames(f"more than {limits.max_video_frames}", limits))
        if frame.width * frame.height > limits.max_image_pixels:
            raise InputError(
                source,
                f"video frame {count} is {frame.width}x{frame.height}, over the limit of {limits.max_image_pixels} px",
            )
        yield frame


def _sample_frames(where: Data, source: str, n: int, duration: float | None, limits: Limits) -> list[Image.Image]:
    """Decode once, front to back, keeping the first frame at or after each slice centre."""
    import av

    if not duration:
        duration = _decoded_duration(where, source, limits)
    targets = [(i + 0.5) * duration / n for i in range(n)]
    picked: list[Image.Image] = []
    last_frame = None
    last_time = 0.0
    decoded = 0
    with av.open(_opener(where)) as container:
        indexed = int(container.streams.video[0].frames or 0)  # frame count from the index (MP4, AVI), or 0
        for frame in _counted_frames(container, source, limits):
            decoded += 1
            last_frame, last_time = frame, float(frame.time or 0.0)
            while len(picked) < n and last_time + 1e-6 >= targets[len(picked)]:
                picked.append(_timed_image(frame, last_time))
            if len(picked) == n:
                break
        if last_frame is None:
            raise InputError(source, "no decodable video frames")
        if len(picked) < n:
            if indexed and decoded < 0.98 * indexed - 2:
                raise InputError(
                    source, f"truncated video: the index lists {indexed} frames, only {decoded} could be decoded"
                )
            if last_time < 0.9 * duration - 0.5:
                raise InputError(
                    source, f"truncated video: header promises {duration:.2f}s, frames stop at {last_time:.2f}s"
                )
            picked.extend([_timed_image(last_frame, last_time)] * (n - len(picked)))
    return picked


def _timed_image(frame: Any, seconds: float) -> Image.Image:
    """A decoded frame as a PIL image that knows when it was shown (`info["time"]`, seconds):
    what a view that reads frames (OCR) reports as the moment."""
    image = frame.to_image()
    image.info["time"] = seconds
    return image


def _decoded_duration(where: Data, source: str, limits: Limits) -> float:
    import av

    end = 0.0
    with av.open(_opener(where)) as container:
        for frame in _counted_frames(container, source, limits):
            end = max(end, float(frame.time or 0.0))
    _check_duration(end, source, limits.max_video_seconds, "video")
    return end or 1.0


def video_from_frames(frames: list[Image.Image], source: str, limits: Limits) -> VideoClip:
    """A list of PIL images taken as a video with no soundtrack."""
    images = [image_object(f, source, limits) for f in frames]

    def sample(n: int) -> list[Image.Image]:
        return [images[min(len(images) - 1, int((i + 0.5) * len(images) / n))] for i in range(n)]

    return VideoClip(source, None, False, sample, lambda: None)


# --------------------------------------------------------------------------------------------
# Container integrity: a cut-off file is refused by its own structure, before decoding


def check_ogg_complete(where: Data, source: str) -> None:
    """The last Ogg page must be whole; in a cut-off file it runs past the end.

    (libsndfile and FFmpeg take a truncated Ogg for a shorter one and say nothing.)
    """
    max_page = 27 + 255 + 255 * 255
    tail = _read_tail(where, source, max_page + 4)
    at = tail.rfind(b"OggS\x00")  # capture pattern + stream structure version 0
    if at < 0:
        raise InputError(source, "truncated or corrupt Ogg file: no page header near its end")
    segments = tail[at + 26] if at + 26 < len(tail) else None
    if segments is None or at + 27 + segments > len(tail):
        raise InputError(source, "truncated Ogg file: its last page header is cut off")
    end = at + 27 + segments + sum(tail[at + 27 : at + 27 + segments])
    if end > len(tail):
        raise InputError(source, f"truncated Ogg file: its last page lacks {end - len(tail)} bytes")


def _read_tail(where: Data, source: str, n: int) -> bytes:
    return bytes(where[-n:])


def _ebml_vint(data: bytes, at: int) -> tuple[int, int, bool] | None:
    """(value, length, all-ones) of the EBML variable-length integer at `at`, or None."""
    if at >= len(data) or data[at] == 0:
        return None
    length = 9 - data[at].bit_length()
    if at + length > len(data):
        return None
    value = data[at] & (0xFF >> length)
    for b in data[at + 1 : at + length]:
        value = (value << 8) | b
    return value, length, value == (1 << (7 * length)) - 1


def check_matroska_complete(head: bytes, where: Data, source: str) -> None:
    """Matroska/WebM: the Segment element says how long it is; a cut-off file is shorter."""
    size = len(where)
    header = _ebml_vint(head, 4)  # the EBML header's size, after its 4-byte ID
    if header is None:
        return
    at = 4 + header[1] + header[0]
    if head[at : at + 4] != b"\x18\x53\x80\x67":  # Segment ID
        return
    segment = _ebml_vint(head, at + 4)
    if segment is None or segment[2]:
        return  # unknown size (a live recording): nothing promised
    end = at + 4 + segment[1] + segment[0]
    if end > size:
        raise InputError(source, f"truncated Matroska/WebM file: its segment promises {end} bytes, the file has {size}")


def check_integrity(head: bytes, where: Data, source: str) -> None:
    """Refuse a file whose own structure says it is cut off (or broken) before any decoder sees
    it: decoders fill in, skip or stop early quietly on many formats.

    PNG must reach IEND (critical chunks' CRCs intact), JPEG its EOI, GIF its trailer; RIFF
    (AVI, WebP) and ISO media (MP4, MOV, M4A) boxes must fit in the file; an MP3/AAC stream's
    last frame must be whole; Ogg's last page and Matroska's segment must be complete.
    """
    if head.startswith(b"OggS"):
        check_ogg_complete(where, source)
    elif head.startswith(b"\x1a\x45\xdf\xa3"):
        check_matroska_complete(head, where, source)
    elif head.startswith(b"\x89PNG\r\n\x1a\n"):
        _check_png(where, source)
    elif head.startswith(b"\xff\xd8\xff"):
        _check_jpeg(where, source)
    elif head[:6] in (b"GIF87a", b"GIF89a"):
        _check_gif(where, source)
    elif head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"WEBP"):
        _check_riff(where, source)
    elif head[4:8] == b"ftyp":
        _check_iso_boxes(where, source)
    elif (head.startswith(b"ID3") or head[:1] == b"\xff") and sniff(head) == "audio":
        _check_mpeg_audio(where, source)


def _truncated(source: str, fmt: str, what: str) -> InputError:
    return InputError(source, f"truncated {fmt} file: {what}")


def _be(view: memoryview, at: int, n: int) -> int:
    return int.from_bytes(view[at : at + n], "big")


def _le(view: memoryview, at: int, n: int) -> int:
    return int.from_bytes(view[at : at + n], "little")


MAX_STRUCTURE_STEPS = 1_000_000  # chunks, boxes or blocks walked before a file counts as corrupt


_PNG_CRITICAL = (b"IHDR", b"PLTE", b"IDAT", b"IEND")


def _check_png(where: Data, source: str) -> None:
    """Every chunk fits in the file, critical chunks' CRCs match (as libpng insists), and the
    walk reaches IEND (anything after it is ignored, as viewers do)."""
    view, size, pos = memoryview(where), len(where), 8
    for _ in range(MAX_STRUCTURE_STEPS):
        if pos + 12 > size:
            raise _truncated(source, "PNG", "it ends before its IEND chunk")
        length, kind = _be(view, pos, 4), bytes(view[pos + 4 : pos + 8])
        end = pos + 12 + length
        if length > 0x7FFFFFFF:
            raise InputError(source, f"corrupt PNG file: chunk length {length} at byte {pos}")
        if end > size:
            raise _truncated(source, "PNG", f"its {kind.decode('latin-1')!r} chunk lacks {end - size} bytes")
        if kind in _PNG_CRITICAL and zlib.crc32(view[pos + 4 : end - 4]) != _be(view, end - 4, 4):
            raise InputError(source, f"corrupt PNG file: CRC mismatch in its {kind.decode('latin-1')!r} chunk")
        if kind == b"IEND":
            return
        pos = end
    raise InputError(source, f"corrupt PNG file: more than {MAX_STRUCTURE_STEPS} chunks")


_JPEG_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")  # a marker (not stuffing, RSTn or fill)
_JPEG_STANDALONE = frozenset([0x01, 0xD8])  # TEM, SOI: no length field


def _check_jpeg(where: Data, source: str) -> None:
    """Markers are followed from SOI, segments skipped by their length (an EXIF thumbnail's own
    EOI is never mistaken for the image's), until the EOI marker; data after it is ignored
    (Motion Photos carry a video there)."""
    view, size, pos = memoryview(where), len(where), 2
    for _ in range(MAX_STRUCTURE_STEPS):
        found = _JPEG_MARKER.search(where, pos)
        if found is None:
            raise _truncated(source, "JPEG", "it has no end-of-image (EOI) marker")
        at = found.start()
        code = view[at + 1]
        if code == 0xD9:
            return
        if code in _JPEG_STANDALONE:
            pos = at + 2
            continue
        if at + 4 > size:
            raise _truncated(source, "JPEG", "a marker segment is cut off")
        pos = at + 2 + _be(view, at + 2, 2)
        if pos > size:
            raise _truncated(source, "JPEG", f"its marker segment 0xFF{code:02X} lacks {pos - size} bytes")
    raise InputError(source, f"corrupt JPEG file: more than {MAX_STRUCTURE_STEPS} marker segments")


def _check_gif(where: Data, source: str) -> None:
    """Blocks (extensions, images and their LZW sub-blocks) are followed to the trailer; the
    last block must be whole (a missing trailer byte alone is accepted: some encoders omit it)."""
    view, size = memoryview(where), len(where)
    if size < 13:
        raise _truncated(source, "GIF", "its header is cut off")
    pos = 13 + (3 << ((view[10] & 7) + 1) if view[10] & 0x80 else 0)
    steps = images = 0
    while steps < MAX_STRUCTURE_STEPS:
        if pos >= size and images:
            return  # the last block is whole and only the trailer byte is missing: old encoders
        if pos >= size:
            raise _truncated(source, "GIF", "it ends before its first image")
        block = view[pos]
        if block == 0x3B:
            return
        if block == 0x21:
            pos += 2
        elif block == 0x2C:
            if pos + 10 > size:
                raise _truncated(source, "GIF", "an image descriptor is cut off")
            packed = view[pos + 9]
            pos += 11 + (3 << ((packed & 7) + 1) if packed & 0x80 else 0)  # descriptor, colour table, LZW size
        elif images:
            return  # bytes after the last image that are no block: browsers stop there too
        else:
            raise InputError(source, f"corrupt GIF file: unknown block 0x{block:02X} at byte {pos}")
        images += block == 0x2C
        while True:  # data sub-blocks up to the empty one
            steps += 1
            if pos >= size:
                raise _truncated(source, "GIF", "an image or extension's data is cut off")
            length = view[pos]
            pos += 1 + length
            if length == 0 or steps >= MAX_STRUCTURE_STEPS:
                break
    raise InputError(source, f"corrupt GIF file: more than {MAX_STRUCTURE_STEPS} blocks")


def _check_riff(where: Data, source: str) -> None:
    """RIFF (AVI, WebP): the RIFF chunk and the chunks inside it fit in the file; an AVI whose
    header announces an index has its idx1 chunk. OpenDML's extra RIFF 'AVIX' chunks too."""
    view, size = memoryview(where), len(where)
    fmt = bytes(view[8:12]).decode("latin-1").strip()
    riff_end = 8 + _le(view, 4, 4)
    if riff_end > size:
        raise _truncated(source, fmt, f"its RIFF header promises {riff_end} bytes, the file has {size}")
    kinds = _riff_chunks(view, 12, riff_end, source, fmt)
    if fmt == "AVI" and _avi_announces_index(view) and b"idx1" not in kinds and size <= riff_end + 8:
        raise _truncated(source, fmt, "its header announces an index (idx1) and there is none")
    pos = riff_end + (riff_end & 1)
    while pos + 12 <= size and bytes(view[pos : pos + 4]) == b"RIFF":  # OpenDML: RIFF 'AVIX' ...
        end = pos + 8 + _le(view, pos + 4, 4)
        if end > size:
            raise _truncated(source, fmt, f"its RIFF chunk at byte {pos} promises {end} bytes, the file has {size}")
        pos = end + (end & 1)


def _riff_chunks(view: memoryview, pos: int, end: int, source: str, fmt: str) -> set[bytes]:
    """The ids of the chunks between `pos` and `end`, each checked to fit."""
    kinds: set[bytes] = set()
    for _ in range(MAX_STRUCTURE_STEPS):
        if pos + 8 > end:
            return kinds
        kind, length = bytes(view[pos : pos + 4]), _le(view, pos + 4, 4)
        if pos + 8 + length > end:
            raise _truncated(source, fmt, f"its {kind.decode('latin-1')!r} chunk lacks {pos + 8 + length - end} bytes")
        kinds.add(kind)
        pos += 8 + length + (length & 1)
    raise InputError(source, f"corrupt {fmt} file: more than {MAX_STRUCTURE_STEPS} chunks")


def _avi_announces_index(view: memoryview) -> bool:
    """AVIF_HASINDEX in the main AVI header (RIFF 'AVI ' LIST 'hdrl' 'avih')."""
    if bytes(view[12:16]) != b"LIST" or bytes(view[20:24]) != b"hdrl" or bytes(view[24:28]) != b"avih":
        return False
    return len(view) >= 48 and bool(_le(view, 44, 4) & 0x10)


def _four_cc(kind: bytes) -> bool:
    return all(0x20 <= b < 0x7F or b == 0xA9 for b in kind)


def _check_iso_boxes(where: Data, source: str) -> None:
    """ISO media (MP4, MOV, M4A, 3GP, HEIF): the top-level boxes (ftyp, moov, mdat, moof...)
    tile the file and none runs past its end. Bytes that are no box after the last one
    (padding, junk a tool appended) end the walk."""
    view, size, pos = memoryview(where), len(where), 0
    for _ in range(MAX_STRUCTURE_STEPS):
        if pos == size:
            return
        if pos + 8 > size:
            if any(view[pos:size]):
                raise _truncated(source, "MP4", f"a box header at byte {pos} is cut off")
            return
        length, kind, header = _be(view, pos, 4), bytes(view[pos + 4 : pos + 8]), 8
        if not _four_cc(kind):
            return
        if length == 1:
            if pos + 16 > size:
                raise _truncated(source, "MP4", f"the {kind.decode('latin-1')!r} box header is cut off")
            length, header = _be(view, pos + 8, 8), 16
        elif length == 0:
            length = size - pos  # "to the end of the file"
        if length < header:
            raise InputError(source, f"corrupt MP4 file: a {kind.decode('latin-1')!r} box of {length} bytes")
        if pos + length > size:
            raise _truncated(source, "MP4", f"its {kind.decode('latin-1')!r} box lacks {pos + length - size} bytes")
        pos += length
    raise InputError(source, f"corrupt MP4 file: more than {MAX_STRUCTURE_STEPS} top-level boxes")


# MPEG audio frame lengths: kbit/s by (MPEG-1?, layer) and bitrate index; sample rates by version.
_MPEG_KBPS = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _audio_frame(view: memoryview, pos: int) -> tuple[int, tuple[int, int]] | None:
    """(length, stream signature) of an MPEG audio or ADTS (AAC) frame header at `pos`, or None.
    Frames of one stream share a signature (version, layer, sample rate)."""
    if pos + 7 > len(view) or view[pos] != 0xFF or view[pos + 1] & 0xE0 != 0xE0:
        return None
    b1, b2 = view[pos + 1], view[pos + 2]
    if b1 & 0xF6 == 0xF0:  # ADTS: 13-bit frame length, header included
        length = ((view[pos + 3] & 3) << 11) | (view[pos + 4] << 3) | (view[pos + 5] >> 5)
        return (length, (b1 & 0xFE, b2 & 0x3C)) if length >= 7 and (b2 >> 2) & 0xF < 13 else None
    version, layer, index, rate_index = (b1 >> 3) & 3, 4 - ((b1 >> 1) & 3), b2 >> 4, (b2 >> 2) & 3
    if version == 1 or layer == 4 or index in (0, 15) or rate_index == 3:
        return None  # reserved values, or free format (no length in the header)
    kbps, rate, pad = _MPEG_KBPS[(version == 3, layer)][index], _MPEG_RATES[version][rate_index], (b2 >> 1) & 1
    if layer == 1:
        length = (12000 * kbps // rate + pad) * 4
    else:
        length = (144000 if layer == 2 or version == 3 else 72000) * kbps // rate + pad
    return length, (b1 & 0xFE, rate_index)


def _mpeg_audio_bounds(view: memoryview) -> tuple[int, int]:
    """Where the frames of an MP3/AAC file start and end: after ID3v2 tags, before the
    APEv2, Lyrics3 and ID3v1 tags that players accept at the end."""
    start, end = 0, len(view)
    for _ in range(64):
        if bytes(view[start : start + 3]) != b"ID3" or start + 10 > end:
            break
        size = sum((view[start + 6 + k] & 0x7F) << (7 * (3 - k)) for k in range(4))
        start += 10 + size + (10 if view[start + 5] & 0x10 else 0)
    for _ in range(3):
        if end >= 128 and bytes(view[end - 128 : end - 125]) == b"TAG":
            end -= 128
        elif end >= 32 and bytes(view[end - 32 : end - 24]) == b"APETAGEX":
            end -= _le(view, end - 20, 4) + (32 if _le(view, end - 12, 4) & 0x80000000 else 0)
        elif end >= 15 and bytes(view[end - 9 : end]) == b"LYRICS200" and bytes(view[end - 15 : end - 9]).isdigit():
            end -= 15 + int(bytes(view[end - 15 : end - 9]))
    return start, max(start, end)


def _synced_frame(view: memoryview, pos: int, end: int, signature: Any = None) -> int | None:
    """The first position at or after `pos` (within 64 KiB) where three frames of one stream
    follow each other (or run exactly to `end`): a frame boundary, not a chance 0xFF."""
    data = bytes(view[pos : min(end, pos + 65536 + 8192)])
    at = data.find(b"\xff")
    while 0 <= at < 65536:
        p, chain = pos + at, 0
        while chain < 3 and p < end:
            frame = _audio_frame(view, p)
            if frame is None or (signature or frame[1]) != frame[1]:
                break
            signature, p, chain = signature or frame[1], p + frame[0], chain + 1
        if chain == 3 or (chain and p == end):
            return pos + at
        at = data.find(b"\xff", at + 1)
    return None


def _check_mpeg_audio(where: Data, source: str) -> None:
    """MP3 (and ADTS AAC): the frames near the end are followed to the end of the stream; the
    last one must be whole. Tags at the end are allowed; bytes that are no frame end the walk."""
    view = memoryview(where)
    start, end = _mpeg_audio_bounds(view)
    first = _synced_frame(view, start, end)
    if first is None:
        return  # no frame stream we can follow (free format, FLAC behind ID3...): the decoder judges
    length, signature = _audio_frame(view, first)
    promised = _xing_bytes(view, first, length)
    if promised > len(view):
        raise _truncated(
            source, "MP3", f"its Xing/Info header promises {promised} bytes of frames, the file has {len(view)}"
        )
    pos = _synced_frame(view, max(first, end - 65536), end, signature) or first
    for _ in range(MAX_STRUCTURE_STEPS):
        if pos >= end:
            return
        if end - pos < 7:
            if any(view[pos:end]):
                raise _truncated(source, "MP3/AAC", "its last frame header is cut off")
            return
        frame = _audio_frame(view, pos)
        if frame is None or frame[1] != signature:
            return
        if pos + frame[0] > end:
            raise _truncated(source, "MP3/AAC", f"its last frame lacks {pos + frame[0] - end} bytes")
        pos += frame[0]


def _xing_bytes(view: memoryview, first: int, length: int) -> int:
    """The stream size a VBR (Xing/Info) header in the first frame announces, or 0."""
    frame = bytes(view[first : first + min(length, 200)])
    at = max(frame.find(b"Xing"), frame.find(b"Info"))
    if at < 0 or at + 16 > len(frame):
        return 0
    flags = int.from_bytes(frame[at + 4 : at + 8], "big")
    if not flags & 2:
        return 0
    at += 12 if flags & 1 else 8
    return int.from_bytes(frame[at : at + 4], "big")
