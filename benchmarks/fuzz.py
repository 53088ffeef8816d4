#!/usr/bin/env python
"""Fuzz the input layer: thousands of hostile files through `space.embed`, `ingest` and `/v1/embed`.

    python benchmarks/fuzz.py                # short mode (~1,000 files, about a minute on 2 cores)
    python benchmarks/fuzz.py --full         # more cut points, bit flips, random bytes and real files
    python benchmarks/fuzz.py --json out.json --keep /tmp/fuzz

Categories (issue 13): empty files, 1-3 random bytes, files truncated at many cut points (PNG,
JPEG, GIF, BMP, WebP, WAV, FLAC, OGG, MP3, AVI, MP4, WebM, M4A), wrong extensions, bit-flipped
headers and bodies, huge declared dimensions / durations / frame counts with tiny bodies, 0 / 1 Hz
and absurd sample rates, NaN / inf float WAVs, UTF-16/32 text with and without a byte-order mark,
binary with NUL and control bytes, huge lines and deep nesting, special files.

Every file must end as a typed `InputError` or a success with a finite vector (any other exception
is a crash), none may take over 60 s, the process may not grow over 1 GB above its warmed-up
size, and in the ingest (the hostile files mixed with good ones) every good file must be stored.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import socket
import struct
import sys
import tempfile
import time
import warnings
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

MAX_SECONDS = 60.0  # a 1 MB text is chunked whole: 1,000 anchor chunks (Limits.max_segments): 17 s idle, 43 s on a loaded box
MAX_RSS_GROWTH_MB = 1024
OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
TUXPAINT = Path("/usr/share/tuxpaint/stamps")

# ingest_every: the ingest folder gets every n-th hostile file (all of them in full mode)
SHORT = {"random": 420, "mid_cuts": 20, "end_cuts": 10, "header_flips": 6, "body_flips": 2, "real": False,
         "server": 100, "ingest_every": 2}
FULL = {"random": 900, "mid_cuts": 45, "end_cuts": 15, "header_flips": 30, "body_flips": 12, "real": True,
        "server": 100_000, "ingest_every": 1}
END_CUTS = [1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 30, 50, 75, 100, 150, 200, 300]
SOURCES = ["png", "jpg", "gif", "bmp", "webp", "wav", "flac", "ogg", "mp3", "avi", "mp4", "webm", "m4a"]
WRONG = {"image": ".wav", "audio": ".png", "video": ".txt", "text": ".mp4"}


@dataclass
class Case:
    category: str
    name: str  # file name, extension included
    data: bytes
    good: bool = False  # a valid file: must succeed (in the ingest: must be stored)


# -- good seed files -------------------------------------------------------------------------


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def picture(size: int = 96, colour: str = "red") -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).ellipse((size // 6, size // 6, size - size // 6, size - size // 6), fill=colour)
    return image


def image_bytes(fmt: str, colour: str = "red") -> bytes:
    out = io.BytesIO()
    if fmt == "GIF":
        frames = [picture(96, c) for c in (colour, "blue")]
        frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    else:
        picture(96, colour).save(out, format=fmt)
    return out.getvalue()


def sound_bytes(fmt: str, subtype: str, seconds: float = 1.5, rate: int = 22050, freq: float = 440.0) -> bytes:
    out = io.BytesIO()
    sf.write(out, tone(seconds, rate, freq), rate, format=fmt, subtype=subtype)
    return out.getvalue()


def video_bytes(fmt: str, codec: str, audio: str | None, seconds: float = 1.0, shade: int = 0) -> bytes:
    import av

    out = io.BytesIO()
    with av.open(out, "w", format=fmt) as box:
        v = box.add_stream(codec, rate=10)
        v.width = v.height = 64
        v.pix_fmt = "yuv420p"
        a = box.add_stream(audio, rate=48000 if audio == "libopus" else 22050) if audio else None
        if a is not None:
            a.layout = "mono"
        for i in range(int(seconds * 10)):
            level = (shade + 20 * i) % 256
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 64), (level, 255 - level, 128)))
            frame.pts = i
            box.mux(v.encode(frame))
        box.mux(v.encode())
        if a is not None:
            _encode_sound(box, a, seconds)
    return out.getvalue()


def _encode_sound(box, stream, seconds: float) -> None:
    import av

    rate = stream.codec_context.sample_rate
    samples, size = tone(seconds, rate, 330.0), stream.codec_context.frame_size or 1024
    for k in range(0, samples.size, size):
        chunk = np.pad(samples[k : k + size], (0, max(0, size - samples[k : k + size].size)))
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk[None, :]), format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, k
        box.mux(stream.encode(frame))
    box.mux(stream.encode())


def m4a_bytes(seconds: float = 1.5) -> bytes:
    import av

    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as box:
        a = box.add_stream("aac", rate=22050)
        a.layout = "mono"
        _encode_sound(box, a, seconds)
    return out.getvalue()


def seeds(variant: int = 0) -> dict[str, bytes]:
    """One small valid file per format (`variant` changes the content, not the format)."""
    colour = ["red", "green", "orange", "purple"][variant % 4]
    freq = 440.0 + 110 * variant
    return {
        "png": image_bytes("PNG", colour), "jpg": image_bytes("JPEG", colour), "gif": image_bytes("GIF", colour),
        "bmp": image_bytes("BMP", colour), "webp": image_bytes("WEBP", colour),
        "wav": sound_bytes("WAV", "PCM_16", freq=freq), "flac": sound_bytes("FLAC", "PCM_16", freq=freq),
        "ogg": sound_bytes("OGG", "VORBIS", freq=freq), "mp3": sound_bytes("MP3", "MPEG_LAYER_III", freq=freq),
        "avi": video_bytes("avi", "mpeg4", None, shade=40 * variant),
        "mp4": video_bytes("mp4", "mpeg4", "aac", shade=40 * variant),
        "webm": video_bytes("webm", "libvpx", "libopus", shade=40 * variant),
        "m4a": m4a_bytes(1.5 + 0.25 * variant),
        "txt": f"Note {variant}: the {colour} kite flew over the harbour at dawn.\n".encode(),
    }


def real_files() -> dict[str, bytes]:
    """Real media shipped by Debian packages, where installed (full mode)."""
    found = {}
    for name in ("vtest.avi", "Megamind.avi"):
        if (OPENCV / name).exists():
            found[f"real-{name}"] = (OPENCV / name).read_bytes()
    for ext in ("ogg", "wav", "png"):
        first = next(iter(sorted(TUXPAINT.rglob(f"*.{ext}"))), None) if TUXPAINT.exists() else None
        if first is not None:
            found[f"real-{first.stem}.{ext}"] = first.read_bytes()
    return found


# -- hostile files ---------------------------------------------------------------------------


def cut_points(size: int, mid: int, end: int) -> list[int]:
    middle = [int(size * i / (mid + 1)) for i in range(1, mid + 1)]
    tail = [size - k for k in END_CUTS[:end] if size - k > 0]
    return sorted(set(middle + tail) - {0, size})


def truncated(source: dict[str, bytes], cfg: dict) -> Iterator[Case]:
    for fmt, data in source.items():
        if fmt == "txt":
            continue
        ext = fmt.rsplit(".", 1)[-1]
        for cut in cut_points(len(data), cfg["mid_cuts"], cfg["end_cuts"]):
            yield Case("truncated", f"cut-{fmt}-{len(data) - cut}-of-{len(data)}.{ext}", data[:cut])


def flipped(source: dict[str, bytes], cfg: dict, rng: np.random.Generator) -> Iterator[Case]:
    for fmt, data in source.items():
        ext = fmt.rsplit(".", 1)[-1]
        for k in range(cfg["header_flips"] + cfg["body_flips"]):
            buf = bytearray(data)
            span = min(len(buf), 64) if k < cfg["header_flips"] else len(buf)
            for _ in range(int(rng.integers(1, 5))):
                buf[int(rng.integers(0, span))] ^= 1 << int(rng.integers(0, 8))
            yield Case("bit-flipped", f"flip-{fmt}-{k}.{ext}", bytes(buf))


def wrong_extensions(source: dict[str, bytes]) -> Iterator[Case]:
    kind = {"png": "image", "jpg": "image", "gif": "image", "bmp": "image", "webp": "image", "wav": "audio",
            "flac": "audio", "ogg": "audio", "mp3": "audio", "m4a": "audio", "avi": "video", "mp4": "video",
            "webm": "video", "txt": "text"}
    for fmt, data in source.items():
        yield Case("wrong extension", f"misnamed-{fmt}{WRONG[kind[fmt]]}", data, good=True)
        yield Case("wrong extension", f"noext-{fmt}", data, good=True)


def tiny(rng: np.random.Generator, n: int) -> Iterator[Case]:
    yield Case("empty", "empty.txt", b"")
    yield Case("empty", "empty.png", b"")
    for k in range(n):
        yield Case("1-3 random bytes", f"tiny-{k}.{['txt', 'png', 'wav', 'bin'][k % 4]}", rng.bytes(1 + k % 3))


def riff_wav(rate: int, body: bytes, channels: int = 1, bits: int = 16, fmt: int = 1,
             data_size: int | None = None) -> bytes:
    """A WAV built by hand, so its header may declare anything."""
    block = max(1, channels * bits // 8)
    rate, rate_bytes = rate & 0xFFFFFFFF, (rate * block) & 0xFFFFFFFF
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, rate_bytes, block & 0xFFFF, bits)
    size = len(body) if data_size is None else data_size
    chunks = b"fmt " + struct.pack("<I", 16) + fmt_chunk + b"data" + struct.pack("<I", size) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def sample_rates(rng: np.random.Generator) -> Iterator[Case]:
    body = (rng.random(7000) * 255).astype(np.uint8).tobytes()
    for rate in (0, 1, 3, 100, 3999, 4_000_000_000):
        yield Case("sample rates", f"rate-{rate}.wav", riff_wav(rate, body, bits=8))
    yield Case("sample rates", "rate-1-29k.wav", riff_wav(1, rng.bytes(29_000), bits=8))
    yield Case("sample rates", "rate-ok-4000.wav", riff_wav(4000, (tone(1.0, 4000) * 30000).astype("<i2").tobytes()),
               good=True)


def non_finite() -> Iterator[Case]:
    wave = tone(1.0, 22050)
    at = np.arange(22050)
    for name, values in [("nan-all", np.full(22050, np.nan)), ("nan-one", np.where(at == 9000, np.nan, wave)),
                         ("inf", np.where(at == 5, np.inf, wave)), ("-inf", np.full(22050, -np.inf)),
                         ("huge", np.full(22050, 3e38)), ("nan-late", np.concatenate([np.tile(wave, 8), [np.nan]]))]:
        for subtype in ("FLOAT", "DOUBLE"):
            out = io.BytesIO()
            sf.write(out, np.asarray(values, np.float64), 22050, format="WAV", subtype=subtype)
            yield Case("NaN/inf audio", f"{name}-{subtype.lower()}.wav", out.getvalue())
    rng = np.random.default_rng(5)
    nan_bytes = struct.pack("<f", float("nan")) * 8000
    yield Case("NaN/inf audio", "nan-raw.wav", riff_wav(8000, nan_bytes, bits=32, fmt=3))
    yield Case("NaN/inf audio", "noise-float.wav", riff_wav(8000, rng.bytes(32000), bits=32, fmt=3))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, body: bytes = b"\x00" * 1000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(body)) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def patched(data: bytes, marker: bytes, offset: int, value: bytes) -> bytes:
    """`data` with `value` written `offset` bytes after the first `marker` (unchanged if absent)."""
    at = data.find(marker)
    if at < 0 or at + offset + len(value) > len(data):
        return data
    at += offset
    return data[:at] + value + data[at + len(value):]


def huge_images(source: dict[str, bytes]) -> Iterator[Case]:
    for w, h in [(60_000, 60_000), (1, 2**31 - 1), (2**31 - 1, 1), (8000, 8000), (0, 10)]:
        yield Case("huge declared size", f"png-{w}x{h}.png", png_claiming(w, h))
    big, huge = struct.pack(">HH", 65000, 65000), struct.pack("<HH", 65535, 65535)
    yield Case("huge declared size", "jpeg-65000.jpg", patched(source["jpg"], b"\xff\xc0", 5, big))
    yield Case("huge declared size", "gif-65535.gif", patched(source["gif"], b"GIF89a", 6, huge))
    yield Case("huge declared size", "gif-frame-65535.gif", patched(source["gif"], b"\x00\x2c", 6, huge))
    bmp, webp = source["bmp"], source["webp"]
    yield Case("huge declared size", "bmp-30000.bmp", patched(bmp, b"BM", 18, struct.pack("<ii", 30000, 30000)))
    yield Case("huge declared size", "bmp-negative.bmp", patched(bmp, b"BM", 18, struct.pack("<ii", -5, -2**31)))
    yield Case("huge declared size", "webp-riff-huge.webp", patched(webp, b"RIFF", 4, struct.pack("<I", 2**32 - 16)))


def huge_media(source: dict[str, bytes], rng: np.random.Generator) -> Iterator[Case]:
    body = (tone(0.5, 8000) * 30000).astype("<i2").tobytes()
    yield Case("huge declared duration", "wav-data-4g.wav", riff_wav(8000, body, data_size=0xFFFFFFF0))
    yield Case("huge declared duration", "wav-streamed.wav", riff_wav(8000, body, data_size=0xFFFFFFFF))
    yield Case("huge declared duration", "wav-65535ch.wav", riff_wav(8000, body, channels=65535))
    yield Case("huge declared duration", "wav-0ch.wav", riff_wav(8000, body, channels=0))
    yield Case("huge declared duration", "wav-0bits.wav", riff_wav(8000, body, bits=0))
    yield Case("huge declared duration", "wav-2h-silent.wav", riff_wav(4000, bytes(4000 * 7200), bits=8))
    flac = source["flac"]  # STREAMINFO at 18: rate 20 bits, channels 3, bits 5, total samples 36
    info = int.from_bytes(flac[18:26], "big")
    for name, value in [("flac-1hz", (info & ~(0xFFFFF << 44)) | (1 << 44)), ("flac-long", info | (2**36 - 1))]:
        yield Case("huge declared duration", f"{name}.flac", patched(flac, b"fLaC", 18, value.to_bytes(8, "big")))
    avi = source["avi"]
    for name, offset, value in [("frames", 16, 0x7FFFFFFF), ("width", 32, 60000), ("height", 36, 60000)]:
        yield Case("huge declared size", f"avi-{name}.avi", patched(avi, b"avih", 8 + offset, struct.pack("<I", value)))
    yield Case("huge declared size", "avi-strf.avi", patched(avi, b"strf", 12, struct.pack("<ii", 60000, 60000)))
    mp4 = source["mp4"]
    yield Case("huge declared duration", "mp4-mvhd.mp4", patched(mp4, b"mvhd", 16, struct.pack(">II", 1, 2**32 - 1)))
    wide = struct.pack(">II", 2**32 - 2**16, 2**32 - 2**16)
    yield Case("huge declared size", "mp4-tkhd.mp4", patched(mp4, b"tkhd", 80, wide))
    for box in (b"stsz", b"stco", b"stts", b"stsc"):
        yield Case("huge declared size", f"mp4-{box.decode()}.mp4", patched(mp4, box, 8, struct.pack(">I", 2**31 - 1)))
    yield Case("huge declared duration", "webm-duration.webm",
               patched(source["webm"], b"\x44\x89\x88", 3, struct.pack(">d", 1e15)))
    yield Case("huge declared duration", "ogg-1hz.ogg", patched(source["ogg"], b"\x01vorbis", 12, struct.pack("<I", 1)))


def texts(rng: np.random.Generator) -> Iterator[Case]:
    note = "Grüße aus Köln: the cat sat on the mat. 猫が好きです。\n" * 3
    for enc in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "utf-8-sig"):
        data = note.encode(enc)
        good = enc in ("utf-16", "utf-32", "utf-8-sig")  # with a byte-order mark: decoded
        yield Case("UTF-16/32 text", f"note-{enc}.txt", data, good=good)
    yield Case("UTF-16/32 text", "utf16-odd-length.txt", note.encode("utf-16")[:-1])
    lone = "\ufeffabc".encode("utf-16-le") + b"\x00\xd8" + b"a\x00" * 20
    yield Case("UTF-16/32 text", "utf16-lone-surrogate.txt", lone)
    yield Case("binary/NUL", "nul.txt", b"plain text " * 400 + b"\x00")
    yield Case("binary/NUL", "controls.txt", bytes(range(1, 32)) * 50)
    yield Case("binary/NUL", "elf.bin", b"\x7fELF\x02\x01\x01\x00" + rng.bytes(4000))
    yield Case("binary/NUL", "zip.txt", b"PK\x03\x04" + rng.bytes(3000))
    yield Case("binary/NUL", "latin1.txt", "Le café est très bon à Besançon.\n".encode("latin-1") * 20)
    yield Case("binary/NUL", "random-utf8.txt", "".join(chr(int(c)) for c in rng.integers(32, 0x2FFF, 3000)).encode())
    yield Case("binary/NUL", "ansi-log.txt", b"\x1b[32mOK\x1b[0m build finished in 3s\n" * 50, good=True)
    yield Case("huge lines", "one-line-999k.txt", b"a" * 999_000)
    yield Case("huge lines", "nested-brackets.json", b"[" * 500_000 + b"]" * 500_000)
    yield Case("huge lines", "nested-braces.json", b'{"a":' * 150_000 + b"1" + b"}" * 150_000)
    yield Case("huge lines", "over-limit.txt", b"word " * 900_000)
    yield Case("huge lines", "emoji-line.txt", "😀".encode() * 250_000)
    yield Case("huge lines", "newlines.txt", b"\n" * 1_000_000 + b"end")
    yield Case("huge lines", "long-words.txt", (("x" * 5000 + " ") * 150).encode())


def corpus(cfg: dict, seed: int = 13) -> list[Case]:
    rng = np.random.default_rng(seed)
    source = seeds(0)
    extra = real_files() if cfg["real"] else {}
    cases = list(tiny(rng, cfg["random"]))
    cases += truncated({**source, **extra}, cfg)
    cases += flipped({**source, **extra}, cfg, rng)
    cases += wrong_extensions(source)
    cases += huge_images(source)
    cases += huge_media(source, rng)
    cases += sample_rates(rng)
    cases += non_finite()
    cases += texts(rng)
    return cases


def good_files(variants: int) -> list[Case]:
    """Valid files of every format, all different: in the ingest these must all be stored."""
    return [Case("good", f"good-{v}-{fmt}.{fmt}", data, good=True) for v in range(variants)
            for fmt, data in seeds(v + 1).items()]


# -- running ---------------------------------------------------------------------------------


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            line = next((x for x in fh if x.startswith(field + ":")), None)
        return int(line.split()[1]) / 1024 if line else None
    except OSError:
        return None


def reset_peak() -> None:
    """Reset the process's RSS high-water mark (Linux: /proc/self/clear_refs), so each file's
    peak is its own and not the largest one before it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak RSS since the last `reset_peak` (since the start where it cannot be reset)."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    return _status_mb("VmRSS") or peak_rss_mb()


@dataclass
class Outcome:
    case: Case
    status: str  # "ok", "input error", "crash"
    seconds: float
    rss_growth_mb: float  # how far this file pushed the process's peak above the warmed-up size
    detail: str = ""


def write_cases(cases: list[Case], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, case in enumerate(cases):
        path = folder / f"{k:05d}-{case.name}"
        path.write_bytes(case.data)
        paths.append(path)
    return paths


def warm_up(space, folder: Path) -> None:
    """Load every backbone (and settle the allocator) before measuring."""
    paths = write_cases(good_files(1), folder / "warm")
    for _ in range(2):
        space.embed(paths, on_error="skip")


def embed_one(space, case: Case, path: Path, baseline: float) -> Outcome:
    from omnibind.errors import InputError

    reset_peak()
    start = time.perf_counter()
    try:
        result = space.embed([path], on_error="skip")
        if result.errors:
            status, detail = "input error", result.errors[0].reason
            if not isinstance(result.errors[0], InputError):
                status = "crash"
        elif not np.isfinite(result.vectors).all():
            status, detail = "crash", "non-finite vector returned as a success"
        else:
            status, detail = "ok", ""
    except Exception as exc:  # anything but a typed InputError is what the fuzz looks for
        status, detail = "crash", f"{type(exc).__name__}: {exc}"
    return Outcome(case, status, time.perf_counter() - start, max(0.0, peak_rss_mb() - baseline), detail)


def run_embed(space, cases: list[Case], folder: Path, baseline: float) -> list[Outcome]:
    paths = write_cases(cases, folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [embed_one(space, case, path, baseline) for case, path in zip(cases, paths)]


def special_files(folder: Path) -> list[str]:
    """A FIFO, a socket, a dangling link, a link loop and a folder named like a file, where the
    system allows them; they sit in the ingest folder beside the files (kept open: the socket)."""
    made = []
    folder.mkdir(parents=True, exist_ok=True)
    makers = [("fifo.wav", lambda p: os.mkfifo(p)), ("dangling.png", lambda p: os.symlink(folder / "nowhere", p)),
              ("loop.txt", lambda p: os.symlink(p, p)), ("folder.png", lambda p: p.mkdir())]
    for name, make in makers:
        try:
            make(folder / name)
            made.append(name)
        except (OSError, AttributeError):
            pass
    try:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(folder / "socket.mp3"))
        special_files.keep = sock  # type: ignore[attr-defined]
        made.append("socket.mp3")
    except (OSError, AttributeError):
        pass
    return made


def run_ingest(space, cases: list[Case], good: list[Case], folder: Path) -> dict:
    """The hostile files and good ones in one folder through `omnibind.ingest.ingest`."""
    from omnibind.collection import Collection
    from omnibind.ingest import ingest

    write_cases(cases, folder / "hostile")
    good_paths = write_cases(good, folder / "good")
    specials = special_files(folder / "special")
    collection = Collection.open(folder.parent / "fuzz-collection", space=space)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = ingest(collection, folder, build_index=False)
    except Exception as exc:
        return {"crash": f"{type(exc).__name__}: {exc}", "seconds": time.perf_counter() - start}
    stored = set(collection.column("id").column("id").to_pylist())
    missing = [str(p) for p in good_paths if str(p) not in stored]
    return {"files": len(cases) + len(good) + len(specials), "stored": len(stored), "failed": len(report.failed),
            "good": len(good), "good_missing": missing, "specials": specials,
            "specials_reported": sorted(Path(s).name for s, _ in report.failed if "/special/" in s),
            "seconds": round(time.perf_counter() - start, 1), "crash": None}


def run_server(space, cases: list[Case], folder: Path, limit: int) -> dict:
    """Each file uploaded to `POST /v1/embed` (FastAPI's TestClient): 200 or a 4xx, never a 500."""
    from fastapi.testclient import TestClient

    from omnibind.collection import Collection
    from omnibind.server import ServerSettings, create_app

    home = folder / "home"
    collection = Collection.open("fuzz-web", space=space, home=home)
    settings = ServerSettings(collection="fuzz-web", roots=[folder], home=home, max_upload_bytes=64 * 1024**2)
    statuses: Counter = Counter()
    bad: list[str] = []
    picked = cases[:: max(1, len(cases) // limit)][:limit]
    with TestClient(create_app(settings, "fuzz-token", collection), raise_server_exceptions=False,
                    base_url="http://localhost") as client:  # the Host header the server answers to
        for case in picked:
            reply = client.post("/v1/embed", files={"file": (case.name, case.data, "application/octet-stream")},
                                headers={"Authorization": "Bearer fuzz-token"})
            statuses[reply.status_code] += 1
            if reply.status_code >= 500 or (case.good and reply.status_code != 200):
                bad.append(f"{case.name}: {reply.status_code} {reply.text[:200]}")
    return {"requests": len(picked), "statuses": dict(statuses), "bad": bad}


# -- report ----------------------------------------------------------------------------------


def summarise(outcomes: list[Outcome]) -> dict:
    by_category: dict[str, Counter] = defaultdict(Counter)
    slowest: dict[str, float] = defaultdict(float)
    for o in outcomes:
        by_category[o.case.category][o.status] += 1
        slowest[o.case.category] = max(slowest[o.case.category], o.seconds)
    worst = max(outcomes, key=lambda o: o.seconds)
    return {
        "files": len(outcomes),
        "categories": {c: {**dict(n), "files": sum(n.values()), "max_seconds": round(slowest[c], 2)}
                       for c, n in sorted(by_category.items())},
        "max_seconds": round(worst.seconds, 2), "slowest": worst.case.name,
        "max_rss_growth_mb": round(max(o.rss_growth_mb for o in outcomes), 1),
        "slowest_files": [f"{o.case.name}: {o.seconds:.2f}s" for o in sorted(outcomes, key=lambda o: -o.seconds)[:5]],
        "largest_rss_growth": [f"{o.case.name}: +{o.rss_growth_mb:.0f} MB"
                               for o in sorted(outcomes, key=lambda o: -o.rss_growth_mb)[:5]],
        "crashes": [f"{o.case.name}: {o.detail}" for o in outcomes if o.status == "crash"],
        "too_slow": [f"{o.case.name}: {o.seconds:.1f}s" for o in outcomes if o.seconds > MAX_SECONDS],
        "good_refused": [f"{o.case.name}: {o.detail}" for o in outcomes if o.case.good and o.status != "ok"],
        "truncated_accepted": sorted(o.case.name for o in outcomes
                                     if o.case.category == "truncated" and o.status == "ok"),
    }


def problems(result: dict) -> list[str]:
    """Everything that breaks the fuzz's promises; empty when it passes."""
    embed = result["embed"]
    found = [f"crash: {c}" for c in embed["crashes"]] + [f"over {MAX_SECONDS}s: {s}" for s in embed["too_slow"]]
    found += [f"good file refused: {g}" for g in embed["good_refused"]]
    if result["max_rss_growth_mb"] > MAX_RSS_GROWTH_MB:
        found.append(f"RSS grew {result['max_rss_growth_mb']} MB: {embed['largest_rss_growth'][:2]}")
    ingest = result.get("ingest") or {}
    if ingest.get("crash"):
        found.append(f"ingest crashed: {ingest['crash']}")
    found += [f"good file not stored by ingest: {p}" for p in ingest.get("good_missing", [])]
    server = result.get("server") or {}
    found += [f"server: {b}" for b in server.get("bad", [])]
    return found


def run(full: bool = False, workdir: Path | None = None, server: bool = True, ingest: bool = True) -> dict:
    import omnibind

    cfg = FULL if full else SHORT
    workdir = Path(workdir or tempfile.mkdtemp(prefix="omnibind-fuzz-"))
    started = time.perf_counter()
    space = omnibind.load_space()
    cases = corpus(cfg)
    warm_up(space, workdir)
    baseline = rss_mb()
    result: dict = {"mode": "full" if full else "short", "baseline_rss_mb": round(baseline)}
    phase = time.perf_counter()
    result["embed"] = summarise(run_embed(space, cases, workdir / "embed", baseline))
    result["embed"]["seconds"] = round(time.perf_counter() - phase, 1)
    peaks = [result["embed"]["max_rss_growth_mb"]]
    if ingest:
        reset_peak()
        hostile = cases[:: cfg["ingest_every"]]
        result["ingest"] = run_ingest(space, hostile, good_files(2), workdir / "ingest" / "files")
        result["ingest"]["rss_growth_mb"] = round(peak_rss_mb() - baseline, 1)
        peaks.append(result["ingest"]["rss_growth_mb"])
    if server:
        reset_peak()
        phase = time.perf_counter()
        result["server"] = run_server(space, cases, workdir / "server", cfg["server"])
        result["server"]["seconds"] = round(time.perf_counter() - phase, 1)
        result["server"]["rss_growth_mb"] = round(peak_rss_mb() - baseline, 1)
        peaks.append(result["server"]["rss_growth_mb"])
    result["max_rss_growth_mb"] = max(peaks)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["problems"] = problems(result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="more cut points, bit flips, random bytes and real files")
    parser.add_argument("--keep", type=Path, help="write the files here and keep them")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--no-server", action="store_true")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="omnibind-fuzz-"))
    try:
        result = run(args.full, workdir, server=not args.no_server)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
