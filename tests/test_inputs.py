"""The input layer: detection by content, Python conventions, decoding, and every bad-input class.

All media are generated here (Pillow, soundfile, PyAV), small and short, so the module runs in
seconds. Files are mostly written *without* an extension so detection can only come from the
content.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image, ImageDraw

from conftest import draw_image, tone, write_video, write_wav
from omnibind.errors import InputError, MislabelledInputWarning
from omnibind.inputs import (
    AudioClip,
    Input,
    Limits,
    VideoClip,
    load_bytes,
    load_file,
    sniff,
    to_input,
    to_inputs,
)

# --------------------------------------------------------------------------------------------
# Generators


def save_image(path: Path, fmt: str, image: Image.Image | None = None) -> Path:
    (image or draw_image()).save(path, format=fmt)
    return path


AUDIO_FORMATS = {  # name: (soundfile format, subtype)
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "VORBIS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


def write_audio(path: Path, fmt: str, seconds: float = 2.0, freq: float = 440.0, rate: int = 22050) -> Path:
    major, subtype = AUDIO_FORMATS[fmt]
    sf.write(path, tone(seconds, freq, rate), rate, format=major, subtype=subtype)
    return path


def gray_video(
    path: Path,
    codec: str = "mpeg4",
    seconds: float = 2.0,
    fps: int = 10,
    size: int = 64,
    audio_codec: str | None = None,
    options: dict | None = None,
    container_format: str | None = None,
) -> Path:
    """Frame i of N is a flat gray of level `gray_level(i, N)`, so a sampled frame tells its index."""
    import av

    n = int(seconds * fps)
    with av.open(str(path), "w", format=container_format, options=options or {}) as out:
        v = out.add_stream(codec, rate=fps)
        v.width = v.height = size
        v.pix_fmt = "yuv420p"
        a = None
        if audio_codec:
            a = out.add_stream(audio_codec, rate=48000 if "opus" in audio_codec else 22050)
            a.layout = "mono"
        for i in range(n):
            level = gray_level(i, n)
            frame = av.VideoFrame.from_image(Image.new("RGB", (size, size), (level, level, level)))
            frame.pts = i
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
        if a is not None:
            _encode_tone(out, a, seconds)
    return path


def gray_level(i: int, n: int) -> int:
    return round(16 + 220 * i / (n - 1))


def _encode_tone(out, stream, seconds: float, freq: float = 330.0) -> None:
    import av

    rate = stream.codec_context.sample_rate
    samples = tone(seconds, freq, rate)
    size = stream.codec_context.frame_size or 1024
    for k in range(0, samples.size, size):
        chunk = samples[k : k + size]
        if chunk.size < size:
            chunk = np.pad(chunk, (0, size - chunk.size))
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk[None, :]), format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = k
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def audio_only_mp4(path: Path, seconds: float = 2.0, container_format: str | None = None) -> Path:
    """AAC sound in an MP4 container, no video stream (what .m4a files are)."""
    import av

    with av.open(str(path), "w", format=container_format or "mp4") as out:
        a = out.add_stream("aac", rate=22050)
        a.layout = "mono"
        _encode_tone(out, a, seconds)
    return path


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (a decompression-bomb shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


def truncated_copy(path: Path, fraction: float, name: str | None = None) -> Path:
    data = path.read_bytes()
    out = path.with_name(name or f"cut{int(fraction * 100)}_{path.name}")
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def decode_fully(item: Input) -> None:
    """Force every lazy decoding step: whole audio stream, sampled frames, soundtrack."""
    payload = item.payload
    if isinstance(payload, AudioClip):
        for _ in payload.stream(44100, 65536):
            pass
    elif isinstance(payload, VideoClip):
        payload.frames(8)
        track = payload.audio()
        if track is not None:
            for _ in track.stream(44100, 65536):
                pass


def load_and_decode(path: Path, limits: Limits | None = None) -> Input:
    item = load_file(path, limits) if limits else load_file(path)
    decode_fully(item)
    return item


def collect(clip: AudioClip, rate: int, block: int) -> np.ndarray:
    return np.concatenate(list(clip.stream(rate, block)))


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * rate / samples.size)


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> dict[str, Path]:
    """One extensionless file per format, made once for the module."""
    d = tmp_path_factory.mktemp("lib")
    files: dict[str, Path] = {}
    for name, fmt in [("jpeg", "JPEG"), ("png", "PNG"), ("webp", "WEBP"), ("gif", "GIF"), ("bmp", "BMP")]:
        files[name] = save_image(d / f"image_{name}", fmt)
    for fmt in AUDIO_FORMATS:
        files[fmt] = write_audio(d / f"audio_{fmt}", fmt)
    files["mp4"] = gray_video(d / "video_mp4", container_format="mp4")
    files["mp4_sound"] = gray_video(d / "video_mp4_sound", audio_codec="aac", container_format="mp4")
    files["mp4_faststart"] = gray_video(
        d / "video_mp4_faststart", audio_codec="aac", container_format="mp4", options={"movflags": "faststart"}
    )
    files["mkv"] = gray_video(d / "video_mkv", codec="libx264", container_format="matroska")
    files["webm"] = gray_video(d / "video_webm", codec="libvpx", audio_codec="libopus", container_format="webm")
    files["avi"] = gray_video(d / "video_avi", container_format="avi")
    files["m4a"] = audio_only_mp4(d / "audio_m4a")
    return files


# --------------------------------------------------------------------------------------------
# Detection from content, and decoding


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "gif", "bmp"])
def test_image_formats_detected_from_content_and_decoded(lib, fmt):
    path = lib[fmt]
    assert sniff(path.read_bytes()[:4096]) == "image"
    item = load_file(path)
    assert item.modality == "image"
    assert item.source == str(path)
    image = item.payload
    assert image.mode == "RGB" and image.size == (96, 96)
    r, g, b = image.getpixel((48, 48))  # the red circle
    assert r > 200 and g < 60 and b < 60
    assert min(image.getpixel((2, 2))) > 230  # the white page
    # the same content as bytes decodes to the same pixels
    from_bytes = load_bytes(path.read_bytes())
    assert from_bytes.modality == "image" and from_bytes.source == "<bytes>"
    assert from_bytes.payload.tobytes() == image.tobytes()


@pytest.mark.parametrize("fmt", list(AUDIO_FORMATS))
def test_audio_formats_detected_from_content_and_decoded(lib, fmt):
    path = lib[fmt]
    item = load_file(path)
    assert item.modality == "audio"
    assert item.source == str(path)
    clip = item.payload
    assert isinstance(clip, AudioClip)
    assert clip.sampling_rate == 22050
    assert clip.duration == pytest.approx(2.0, abs=0.1)
    samples = collect(clip, 22050, 4096)
    assert samples.dtype == np.float32
    assert samples.size == pytest.approx(44100, abs=2500)  # lossy codecs pad a little
    assert peak_hz(samples, 22050) == pytest.approx(440, abs=5)
    assert 0.3 < np.abs(samples).max() < 0.5  # the tone's amplitude is 0.4


def test_mp3_behind_an_id3_tag_is_audio(lib):
    id3 = b"ID3\x04\x00\x00\x00\x00\x00\x00"  # ID3v2.4 header, empty tag
    item = load_bytes(id3 + lib["mp3"].read_bytes())
    assert item.modality == "audio"
    assert peak_hz(collect(item.payload, 22050, 8192), 22050) == pytest.approx(440, abs=5)


def test_text_starting_with_id3_is_still_text():
    assert sniff(b"ID3 tags carry the title and artist of a song") == "text"
    assert load_bytes(b"ID3 tags carry the title and artist").modality == "text"


@pytest.mark.parametrize("fmt", ["mp4", "mkv", "webm", "avi"])
def test_video_formats_detected_from_content_and_decoded(lib, fmt):
    path = lib[fmt]
    item = load_file(path)
    assert item.modality == "video"
    assert item.source == str(path)
    clip = item.payload
    assert isinstance(clip, VideoClip)
    assert clip.duration == pytest.approx(2.0, abs=0.15)
    frames = clip.frames(4)
    assert len(frames) == 4
    assert all(f.mode == "RGB" and f.size == (64, 64) for f in frames)
    levels = [f.getpixel((32, 32))[0] for f in frames]
    assert levels == sorted(levels) and levels[-1] - levels[0] > 100  # in time order, spread out


@pytest.mark.parametrize("container_format, name", [("mp4", "song.m4a"), ("mp4", "song.mp4"), ("ipod", "song")])
def test_audio_only_mp4_is_audio_not_video(tmp_path, container_format, name):
    path = audio_only_mp4(tmp_path / name, container_format=container_format)
    assert sniff(path.read_bytes()[:4096]) == "container"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an audio-only .mp4 is not mislabelled
        item = load_file(path)
    assert item.modality == "audio"
    samples = collect(item.payload, 22050, 8192)
    assert samples.size == pytest.approx(44100, abs=3000)
    assert peak_hz(samples, 22050) == pytest.approx(330, abs=5)


def test_utf8_text_file(tmp_path):
    content = "Café au lait — naïve façade, 日本語のテキスト 🎵\nsecond line\n"
    path = tmp_path / "note"
    path.write_text(content, encoding="utf-8")
    item = load_file(path)
    assert (item.modality, item.payload, item.source) == ("text", content, str(path))


def test_utf8_text_with_bom_and_a_character_cut_by_the_sniff_window(tmp_path):
    # 4095 bytes of ASCII then a 3-byte character: the first 4096 bytes end mid-character
    content = "a" * 4092 + "€" + " and more"
    path = tmp_path / "long.txt"
    path.write_bytes(b"\xef\xbb\xbf" + content.encode("utf-8"))
    assert len(path.read_bytes()[:4096].decode("utf-8", errors="ignore")) < 4096
    item = load_file(path)
    assert item.modality == "text"
    assert item.payload == content  # BOM dropped, the cut character intact


# --------------------------------------------------------------------------------------------
# Python conventions


def test_str_is_text_not_a_path(tmp_path):
    """str is text (sentence-transformers' convention), but one that names a file is warned about."""
    from omnibind.errors import PathLikeTextWarning

    png = save_image(tmp_path / "x.png", "PNG")
    with pytest.warns(PathLikeTextWarning, match="a string looks like a file path .*a file on disk"):
        item = to_input(str(png))
    assert item.modality == "text" and item.payload == str(png) and item.source == "<text>"


def test_path_is_a_file(tmp_path):
    png = save_image(tmp_path / "x.png", "PNG")
    item = to_input(png)
    assert item.modality == "image" and item.source == str(png)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_bytes_are_file_content(lib, wrap):
    item = to_input(wrap(lib["png"].read_bytes()))
    assert item.modality == "image" and item.source == "<bytes>"
    assert item.payload.size == (96, 96)
    assert to_input(wrap("some words".encode())).payload == "some words"
    assert to_input(wrap(lib["wav"].read_bytes())).modality == "audio"
    assert to_input(wrap(lib["mp4"].read_bytes())).modality == "video"


def test_pil_image_is_an_image():
    image = draw_image("square", color="blue")
    item = to_input(image)
    assert item.modality == "image" and item.source == "<PIL image>"
    assert item.payload.mode == "RGB"
    assert item.payload.tobytes() == image.tobytes()


def test_lazily_opened_truncated_pil_image_is_an_input_error(lib):
    data = lib["png"].read_bytes()
    lazy = Image.open(io.BytesIO(data[: len(data) // 2]))  # header read, pixels not yet
    with pytest.raises(InputError) as err:
        to_input(lazy)
    assert err.value.source == "<PIL image>" and "truncated" in err.value.reason


def test_audio_dict_mono():
    wave = tone(1.0, 440, 16000)
    item = to_input({"array": wave, "sampling_rate": 16000})
    assert item.modality == "audio" and item.source == "<audio array>"
    clip = item.payload
    assert clip.sampling_rate == 16000 and clip.duration == pytest.approx(1.0)
    assert np.array_equal(collect(clip, 16000, 1000), wave)


def test_audio_dict_channels_last_is_mixed_to_mono():
    left = np.full(8000, 0.5, dtype=np.float32)
    right = np.full(8000, -0.1, dtype=np.float32)
    item = to_input({"array": np.stack([left, right], axis=1), "sampling_rate": 8000})
    samples = collect(item.payload, 8000, 8000)
    assert samples.shape == (8000,)
    assert np.allclose(samples, 0.2)


def test_audio_dict_of_python_lists():
    item = to_input({"array": [0.0, 0.1, -0.1, 0.2] * 100, "sampling_rate": 400})
    assert item.payload.duration == pytest.approx(1.0)


@pytest.mark.parametrize(
    "obj, words",
    [
        ({"array": np.zeros((2, 8000), np.float32), "sampling_rate": 8000}, "channels-first"),
        ({"array": np.zeros(100, np.float32)}, "sampling_rate"),
        ({"array": np.zeros(100, np.float32), "sampling_rate": 0}, "positive"),
        ({"array": np.zeros(0, np.float32), "sampling_rate": 8000}, "non-empty"),
        ({"array": np.zeros((2, 2, 2), np.float32), "sampling_rate": 8000}, "1-D"),
        ({"array": np.array([0.0, np.nan] * 50, np.float32), "sampling_rate": 8000}, "NaN"),
        ({"array": ["a", "b"], "sampling_rate": 8000}, "array"),
    ],
)
def test_bad_audio_dicts(obj, words):
    with pytest.raises(InputError) as err:
        to_input(obj)
    assert err.value.source == "<audio array>"
    assert words in err.value.reason


def test_list_of_images_is_a_video():
    images = [Image.new("RGB", (32, 32), (v, v, v)) for v in (10, 100, 200)]
    item = to_input(images)
    assert item.modality == "video" and item.source == "<frame list>"
    clip = item.payload
    assert clip.has_audio is False and clip.audio() is None
    assert [f.getpixel((0, 0))[0] for f in clip.frames(3)] == [10, 100, 200]
    assert [f.getpixel((0, 0))[0] for f in clip.frames(6)] == [10, 10, 100, 100, 200, 200]
    assert [f.getpixel((0, 0))[0] for f in clip.frames(1)] == [100]
    assert to_input(tuple(images)).modality == "video"


def test_input_passes_through():
    item = Input("text", "hello", "<text>")
    assert to_input(item) is item
    with pytest.raises(ValueError):
        Input("smell", "x", "<nose>")


@pytest.mark.parametrize(
    "obj",
    [42, 3.5, None, [], ["a", "b"], [draw_image(), "a"], {"text": "x"}, np.zeros(10), object()],
    ids=["int", "float", "None", "empty-list", "list-of-str", "mixed-list", "dict", "ndarray", "object"],
)
def test_anything_else_is_an_input_error(obj):
    with pytest.raises(InputError) as err:
        to_input(obj)
    assert err.value.source == f"<{type(obj).__name__}>"
    assert "not an input omnibind understands" in err.value.reason


def test_to_inputs_converts_each_and_stops_at_the_first_bad(lib):
    items = to_inputs(["words", lib["png"], draw_image()])
    assert [x.modality for x in items] == ["text", "image", "image"]
    with pytest.raises(InputError):
        to_inputs(["words", 7])


# --------------------------------------------------------------------------------------------
# Bad inputs: each raises InputError naming the source and the reason


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.touch()
    with pytest.raises(InputError) as err:
        load_file(path)
    assert err.value.source == str(path) and "empty" in err.value.reason
    with pytest.raises(InputError, match="empty"):
        load_bytes(b"")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(InputError) as err:
        to_input(path)
    assert err.value.source == str(path) and "not found" in err.value.reason


def test_directory(tmp_path):
    with pytest.raises(InputError) as err:
        to_input(tmp_path)
    assert err.value.source == str(tmp_path) and "directory" in err.value.reason


@pytest.mark.parametrize("fmt", ["png", "jpeg", "gif", "webp", "bmp"])
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_image(lib, tmp_path, fmt, fraction):
    path = truncated_copy(lib[fmt], fraction, name=f"cut_{fmt}")
    path = path.rename(tmp_path / path.name)
    with pytest.raises(InputError) as err:
        load_file(path)
    assert err.value.source == str(path)
    assert err.value.reason  # Pillow's words vary by format; truncation must still be caught
    if fmt in ("png", "jpeg"):
        assert "truncated" in err.value.reason


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3"])
@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.8])
def test_truncated_audio(lib, tmp_path, fmt, fraction):
    # (MP3 cut in its last few frames can pass for codec padding: 0.8 is as close as it gets)
    path = tmp_path / f"cut_{fmt}"
    path.write_bytes(lib[fmt].read_bytes()[: int(lib[fmt].stat().st_size * fraction)])
    with pytest.raises(InputError) as err:
        load_and_decode(path)  # may fail when opened or only when the stream is decoded
    assert err.value.source == str(path)
    assert any(w in err.value.reason for w in ("truncated", "lost sync", "corrupt"))


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_audio_missing_only_its_last_bytes(lib, tmp_path, fmt):
    path = tmp_path / f"cut_{fmt}"
    path.write_bytes(lib[fmt].read_bytes()[:-200])
    with pytest.raises(InputError) as err:
        load_and_decode(path)
    assert err.value.source == str(path)
    assert any(w in err.value.reason for w in ("truncated", "lost sync"))


def test_truncated_wav_is_caught_when_opened(lib, tmp_path):
    path = truncated_copy(lib["wav"], 0.5)
    with pytest.raises(InputError) as err:
        load_file(path)
    assert "truncated WAV" in err.value.reason and "2.00s" in err.value.reason


def test_truncated_mp3_stream_does_not_invent_samples(lib, tmp_path):
    # libsndfile's header promises the full length; the decoder must not pad it with stale data
    # (load_file refuses it up front now: the last MP3 frame is cut; the decoder itself must
    # still stop at the real end, so it is opened here without the container check)
    from omnibind.decoders import open_audio

    path = truncated_copy(lib["mp3"], 0.5)
    with pytest.raises(InputError, match="truncated MP3"):
        load_file(path)
    clip = open_audio(path.read_bytes(), str(path))
    got: list[np.ndarray] = []
    with pytest.raises(InputError, match="truncated audio"):
        for block in clip.stream(22050, 4096):
            got.append(block)
    assert sum(b.size for b in got) < 0.7 * 44100


@pytest.mark.parametrize("fmt", ["mp4", "mp4_sound", "mp4_faststart", "mkv", "webm", "m4a"])
@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.8])
def test_truncated_video_and_mp4(lib, tmp_path, fmt, fraction):
    path = tmp_path / f"cut_{fmt}"
    path.write_bytes(lib[fmt].read_bytes()[: int(lib[fmt].stat().st_size * fraction)])
    with pytest.raises(InputError) as err:
        load_and_decode(path)
    assert err.value.source == str(path)
    assert any(w in err.value.reason for w in ("truncated", "corrupt"))


def test_valid_ogg_and_mkv_pass_the_truncation_checks(lib):
    for fmt in ("ogg", "mkv", "webm", "mp4_faststart"):
        load_and_decode(lib[fmt])  # no error


CORRUPT_HEADER_BYTES = {
    "png": 16, "jpeg": 4, "gif": 6, "webp": 16, "bmp": 30,
    "wav": 12, "flac": 4, "ogg": 4, "mp3": 4,
    "mp4": 12, "mkv": 4, "webm": 4, "avi": 12, "m4a": 12,
}


@pytest.mark.parametrize("fmt", sorted(CORRUPT_HEADER_BYTES))
def test_corrupt_file_with_valid_magic(lib, tmp_path, fmt):
    magic = lib[fmt].read_bytes()[: CORRUPT_HEADER_BYTES[fmt]]
    path = tmp_path / f"corrupt_{fmt}"
    path.write_bytes(magic + np.random.default_rng(7).bytes(6000))
    assert sniff(path.read_bytes()[:4096]) is not None  # it does look like the format
    with pytest.raises(InputError) as err:
        load_and_decode(path)
    assert err.value.source == str(path)
    assert err.value.reason


def test_corrupt_bytes_name_the_given_source(lib):
    data = lib["png"].read_bytes()[:16] + np.random.default_rng(3).bytes(2000)
    with pytest.raises(InputError) as err:
        load_bytes(data, source="upload:photo.png")
    assert err.value.source == "upload:photo.png"
    assert "corrupt" in err.value.reason


@pytest.mark.parametrize(
    "head", [b"", b"PK\x03\x04", b"\x7fELF\x02\x01\x01\x00"], ids=["none", "zip", "elf"]
)
def test_unsupported_binary(tmp_path, head):
    path = tmp_path / "blob.bin"
    path.write_bytes(head + np.random.default_rng(11).bytes(5000))
    with pytest.raises(InputError) as err:
        load_file(path)
    assert err.value.source == str(path)
    assert "unsupported" in err.value.reason


def test_random_bytes_after_a_pdf_header_are_a_bad_pdf(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"%PDF-1.7\n\x00\x01" + np.random.default_rng(11).bytes(5000))
    with pytest.raises(InputError, match="PDF") as err:
        load_file(path)
    assert err.value.source == str(path)


def test_over_max_file_bytes(lib, tmp_path):
    limits = Limits(max_file_bytes=100)
    path = lib["png"]
    assert path.stat().st_size > 100
    with pytest.raises(InputError) as err:
        load_file(path, limits)
    assert err.value.source == str(path) and "over the limit of 100" in err.value.reason
    with pytest.raises(InputError, match="over the limit of 100"):
        load_bytes(path.read_bytes(), limits=limits)
    with pytest.raises(InputError, match="over the limit"):
        to_input(path.read_bytes(), limits)
    load_file(path, Limits(max_file_bytes=path.stat().st_size))  # at the limit is fine


def test_over_max_image_pixels(lib):
    limits = Limits(max_image_pixels=96 * 96 - 1)
    with pytest.raises(InputError) as err:
        load_file(lib["png"], limits)
    assert err.value.source == str(lib["png"]) and "pixels" in err.value.reason
    with pytest.raises(InputError, match="pixels"):
        to_input(draw_image(), limits)
    with pytest.raises(InputError, match="pixels"):
        to_input([draw_image(), draw_image()], limits)
    assert load_file(lib["png"], Limits(max_image_pixels=96 * 96)).payload.size == (96, 96)


def test_decompression_bomb_png_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(5000, 5000))  # 25 Mpx claimed by a ~100-byte file
    assert path.stat().st_size < 200
    with pytest.raises(InputError) as err:
        load_file(path, Limits(max_image_pixels=1_000_000))
    assert err.value.source == str(path)
    assert "5000x5000" in err.value.reason and "over the limit" in err.value.reason


def test_decompression_bomb_png_with_default_limits(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(100_000, 100_000))  # 10 Gpx
    with pytest.raises(InputError) as err:
        load_file(path)
    assert err.value.source == str(path) and "too large" in err.value.reason


def test_over_max_audio_seconds(lib):
    limits = Limits(max_audio_seconds=1.5)
    for fmt in ("wav", "flac", "ogg", "mp3", "m4a"):
        with pytest.raises(InputError) as err:
            load_file(lib[fmt], limits)
        assert err.value.source == str(lib[fmt]) and "over the limit" in err.value.reason
    with pytest.raises(InputError, match="over the limit"):
        to_input({"array": tone(2.0, rate=8000), "sampling_rate": 8000}, limits)
    assert load_file(lib["wav"], Limits(max_audio_seconds=2.5)).modality == "audio"


def test_over_max_video_seconds(lib):
    limits = Limits(max_video_seconds=1.5)
    for fmt in ("mp4", "mkv", "webm", "avi"):
        with pytest.raises(InputError) as err:
            load_file(lib[fmt], limits)
        assert err.value.source == str(lib[fmt]) and "over the limit" in err.value.reason
    assert load_file(lib["mp4"], Limits(max_video_seconds=2.5)).modality == "video"


def test_video_frames_over_max_image_pixels(lib):
    with pytest.raises(InputError, match="64x64"):
        load_file(lib["mp4"], Limits(max_image_pixels=64 * 64 - 1))


def test_over_max_text_chars(tmp_path):
    limits = Limits(max_text_chars=100)
    with pytest.raises(InputError) as err:
        to_input("x" * 101, limits)
    assert err.value.source == "<text>" and "over the limit of 100" in err.value.reason
    assert to_input("x" * 100, limits).payload == "x" * 100
    path = tmp_path / "long.txt"
    path.write_text("é" * 101, encoding="utf-8")  # 202 bytes, 101 characters
    with pytest.raises(InputError) as err:
        load_file(path, limits)
    assert err.value.source == str(path) and "over the limit of 100" in err.value.reason
    big = tmp_path / "big.txt"
    big.write_text("word " * 1000, encoding="utf-8")  # refused from its size alone
    with pytest.raises(InputError, match="over the limit of 100"):
        load_file(big, limits)


def test_non_utf8_text(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Le café est très bon à Besançon.\n".encode("latin-1") * 20)
    with pytest.raises(InputError) as err:
        load_file(path)
    assert err.value.source == str(path) and "UTF-8" in err.value.reason


def test_non_utf8_byte_after_the_sniff_window(tmp_path):
    path = tmp_path / "late.txt"
    path.write_bytes(b"plain ascii " * 500 + "naïve".encode("latin-1"))
    with pytest.raises(InputError) as err:
        load_file(path)
    assert err.value.source == str(path) and "not valid UTF-8" in err.value.reason


def test_nul_bytes_after_the_sniff_window(tmp_path):
    path = tmp_path / "nul.txt"
    path.write_bytes(b"plain ascii " * 500 + b"\x00\x00\x00")
    with pytest.raises(InputError, match="NUL"):
        load_file(path)


@pytest.mark.parametrize("content", ["", "   ", "\n\n\t \n"])
def test_empty_text(tmp_path, content):
    with pytest.raises(InputError) as err:
        to_input(content)
    assert err.value.source == "<text>" and err.value.reason == "empty text"
    if content:
        path = tmp_path / "blank.txt"
        path.write_text(content)
        with pytest.raises(InputError) as err:
            load_file(path)
        assert err.value.source == str(path) and err.value.reason == "empty text"


# --------------------------------------------------------------------------------------------
# Mislabelled files: the content wins, with a warning


def test_png_named_wav_is_an_image(lib, tmp_path):
    path = tmp_path / "sound.wav"
    path.write_bytes(lib["png"].read_bytes())
    with pytest.warns(MislabelledInputWarning, match="sound.wav"):
        item = load_file(path)
    assert item.modality == "image" and item.payload.size == (96, 96)


def test_wav_named_jpg_is_audio(lib, tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(lib["wav"].read_bytes())
    with pytest.warns(MislabelledInputWarning, match="photo.jpg"):
        item = to_input(path)
    assert item.modality == "audio"
    assert peak_hz(collect(item.payload, 22050, 4096), 22050) == pytest.approx(440, abs=5)


def test_video_named_txt_and_text_named_png(lib, tmp_path):
    video = tmp_path / "notes.txt"
    video.write_bytes(lib["mp4"].read_bytes())
    with pytest.warns(MislabelledInputWarning):
        assert load_file(video).modality == "video"
    text = tmp_path / "picture.png"
    text.write_text("not a picture at all")
    with pytest.warns(MislabelledInputWarning):
        assert load_file(text).payload == "not a picture at all"


@pytest.mark.parametrize("fmt, name", [("png", "a.png"), ("jpeg", "a.JPG"), ("wav", "a.wav"), ("mp4", "a.mp4"),
                                       ("ogg", "a.ogg"), ("m4a", "a.m4a"), ("png", "no_extension")])
def test_correctly_named_files_do_not_warn(lib, tmp_path, fmt, name):
    path = tmp_path / name
    path.write_bytes(lib[fmt].read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error", MislabelledInputWarning)
        load_file(path)


# --------------------------------------------------------------------------------------------
# Transparency


def _rgba_picture() -> Image.Image:
    image = Image.new("RGBA", (40, 20), (0, 0, 0, 0))  # transparent black
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 0, 39, 9), fill=(0, 0, 255, 255))  # opaque blue
    draw.rectangle((20, 10, 39, 19), fill=(255, 0, 0, 128))  # half-transparent red
    return image


def test_rgba_png_composited_onto_white(tmp_path):
    path = tmp_path / "stamp.png"
    _rgba_picture().save(path)
    image = load_file(path).payload
    assert image.mode == "RGB"
    assert image.getpixel((5, 5)) == (255, 255, 255)  # transparent black -> white, not black
    assert image.getpixel((30, 5)) == (0, 0, 255)
    r, g, b = image.getpixel((30, 15))
    assert r == 255 and 120 <= g <= 135 and 120 <= b <= 135


def test_transparency_composited_for_pil_images_palette_and_la(tmp_path):
    assert to_input(_rgba_picture()).payload.getpixel((5, 5)) == (255, 255, 255)
    la = Image.new("LA", (8, 8), (0, 0))
    assert to_input(la).payload.getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((7, 7), 1)
    path = tmp_path / "palette.png"
    palette.save(path, transparency=0)
    image = load_file(path).payload
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((7, 7)) == (0, 255, 0)
    gif = tmp_path / "palette.gif"
    palette.save(gif, transparency=0)
    assert load_file(gif).payload.getpixel((0, 0)) == (255, 255, 255)


# --------------------------------------------------------------------------------------------
# Video


def _levels(frames: list[Image.Image]) -> list[int]:
    return [f.getpixel((32, 32))[0] for f in frames]


@pytest.mark.parametrize("fmt", ["mp4", "mkv", "webm", "avi"])
def test_frame_sampling_is_deterministic(lib, fmt):
    first = load_file(lib[fmt]).payload.frames(8)
    again = load_file(lib[fmt]).payload
    assert [f.tobytes() for f in again.frames(8)] == [f.tobytes() for f in first]
    assert [f.tobytes() for f in again.frames(8)] == [f.tobytes() for f in first]
    assert len({f.tobytes() for f in first}) == 8  # 20 source frames, 8 distinct picks


def test_frames_are_taken_at_slice_centres(lib):
    # 20 frames at 10 fps; 4 slices of 0.5 s have centres 0.25, 0.75, 1.25, 1.75 s:
    # the first frames at or after them are frames 3, 8, 13 and 18
    frames = load_file(lib["mp4"]).payload.frames(4)
    expected = [gray_level(i, 20) for i in (3, 8, 13, 18)]
    assert _levels(frames) == pytest.approx(expected, abs=5)


@pytest.mark.parametrize("n", [1, 3, 8, 20, 33])
def test_frame_count(lib, n):
    frames = load_file(lib["mp4_sound"]).payload.frames(n)
    assert len(frames) == n
    levels = _levels(frames)
    assert levels == sorted(levels)


def test_frame_count_must_be_positive(lib):
    with pytest.raises(ValueError):
        load_file(lib["mp4"]).payload.frames(0)


@pytest.mark.parametrize("fmt", ["mp4_sound", "webm"])
def test_video_with_soundtrack(lib, fmt):
    clip = load_file(lib[fmt]).payload
    assert clip.has_audio is True
    track = clip.audio()
    assert isinstance(track, AudioClip)
    samples = collect(track, 44100, 44100)
    assert samples.size == pytest.approx(88200, abs=4000)
    assert peak_hz(samples, 44100) == pytest.approx(330, abs=5)
    assert np.array_equal(collect(clip.audio(), 44100, 44100), samples)


@pytest.mark.parametrize("fmt", ["mp4", "mkv", "avi"])
def test_video_without_soundtrack(lib, fmt):
    clip = load_file(lib[fmt]).payload
    assert clip.has_audio is False
    assert clip.audio() is None
    assert len(clip.frames(2)) == 2


def test_conftest_video_fixture(media):
    clip = to_input(media["video"]).payload
    assert clip.has_audio and isinstance(clip.audio(), AudioClip)
    assert len(clip.frames(8)) == 8


# --------------------------------------------------------------------------------------------
# AudioClip.stream


@pytest.mark.parametrize("block", [1000, 4096, 65536, 100_000])
def test_stream_gives_exact_blocks(lib, block):
    clip = load_file(lib["wav"]).payload
    blocks = list(clip.stream(22050, block))
    sizes = [b.size for b in blocks]
    assert all(s == block for s in sizes[:-1])
    assert 0 < sizes[-1] <= block
    assert sum(sizes) == 44100
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    reference, _ = sf.read(lib["wav"], dtype="float32")
    assert np.array_equal(np.concatenate(blocks), reference)


def test_stream_blocks_from_an_array():
    wave = np.arange(10_000, dtype=np.float32) / 10_000
    blocks = list(to_input({"array": wave, "sampling_rate": 8000}).payload.stream(8000, 3000))
    assert [b.size for b in blocks] == [3000, 3000, 3000, 1000]
    assert np.array_equal(np.concatenate(blocks), wave)


def test_streamed_blocks_are_independent_arrays():
    wave = np.arange(9000, dtype=np.float32)
    blocks = list(to_input({"array": wave, "sampling_rate": 8000}).payload.stream(8000, 3000))
    blocks[0][:] = -1  # the caller may write into a block
    assert blocks[1][0] == 3000 and blocks[2][0] == 6000


def test_stream_rejects_bad_arguments(lib):
    clip = load_file(lib["wav"]).payload
    with pytest.raises(ValueError):
        list(clip.stream(44100, 0))
    with pytest.raises(ValueError):
        list(clip.stream(0, 1024))


@pytest.mark.parametrize("rate", [22050, 48000])
def test_stream_resamples_to_44100(tmp_path, rate):
    path = write_wav(tmp_path / f"tone{rate}.wav", seconds=2.0, freq=1000.0, rate=rate)
    clip = load_file(path).payload
    assert clip.sampling_rate == rate
    samples = collect(clip, 44100, 44100)
    assert samples.size == pytest.approx(88200, abs=64)
    assert peak_hz(samples, 44100) == pytest.approx(1000, abs=3)
    assert 0.35 < np.abs(samples[1000:-1000]).max() < 0.45


@pytest.mark.parametrize("source", ["wav", "flac", "ogg", "mp3", "m4a", "array"])
def test_stream_twice_gives_the_same_samples(lib, source):
    if source == "array":
        clip = to_input({"array": tone(2.0, 440, 22050), "sampling_rate": 22050}).payload
    else:
        clip = load_file(lib[source]).payload
    first = collect(clip, 44100, 10_000)
    second = collect(clip, 44100, 10_000)
    assert first.size > 80_000
    assert np.array_equal(first, second)
    if source != "array":  # and a second opening of the same file too
        assert np.array_equal(collect(load_file(lib[source]).payload, 44100, 10_000), first)


def test_stereo_file_is_mixed_to_mono(tmp_path):
    path = tmp_path / "stereo.flac"
    left, right = tone(1.0, 440, 16000), np.zeros(16000, np.float32)
    sf.write(path, np.stack([left, right], axis=1), 16000)
    samples = collect(load_file(path).payload, 16000, 4096)
    assert samples.size == 16000
    assert np.allclose(samples, left / 2, atol=1e-4)


# --------------------------------------------------------------------------------------------
# Hardening (issue 13): budgets before the work, finite samples and vectors, container
# integrity, plausible text, special files


def pcm_wav(rate: int, body: bytes, bits: int = 8, channels: int = 1, fmt: int = 1) -> bytes:
    """A WAV built by hand, so its header may declare anything (1 Hz, NaN floats...)."""
    block = channels * bits // 8
    head = struct.pack("<HHIIHH", fmt, channels, rate, rate * block, block, bits)
    chunks = b"fmt " + struct.pack("<I", 16) + head + b"data" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def test_default_budgets():
    limits = Limits()
    assert limits.max_audio_seconds == 3600 and limits.max_video_seconds == 7200
    assert limits.min_sample_rate == 4000 and limits.max_video_frames == 300_000


@pytest.mark.parametrize("rate, size", [(1, 7_000), (1, 29_000), (100, 7_000), (3999, 7_000)])
def test_sample_rate_below_the_minimum_is_refused_before_decoding(tmp_path, rate, size):
    # on main a 7 KB WAV at 1 Hz took 46 s and 2.1 GB: it was resampled to 44.1 kHz
    path = tmp_path / f"rate{rate}.wav"
    path.write_bytes(pcm_wav(rate, np.random.default_rng(1).bytes(size)))
    start = time.perf_counter()
    with pytest.raises(InputError) as err:
        load_file(path)
    assert time.perf_counter() - start < 0.5
    assert f"sample rate of {rate} Hz is below the minimum of 4000 Hz" in err.value.reason


def test_sample_rate_limits_can_be_moved(tmp_path):
    path = tmp_path / "low.wav"
    path.write_bytes(pcm_wav(2000, (tone(1.0, rate=2000) * 100 + 128).astype(np.uint8).tobytes()))
    with pytest.raises(InputError, match="below the minimum"):
        load_file(path)
    clip = load_file(path, Limits(min_sample_rate=1000)).payload
    assert collect(clip, 8000, 4096).size == pytest.approx(8000, abs=16)
    with pytest.raises(InputError, match="over the maximum of 1000 Hz"):
        load_file(path, Limits(min_sample_rate=100, max_sample_rate=1000))


def test_two_hours_of_audio_refused_before_decoding_and_accepted_when_raised(tmp_path):
    path = tmp_path / "silence.wav"
    path.write_bytes(pcm_wav(4000, bytes(4000 * 7200)))  # 2 h of 8-bit silence, 29 MB
    start = time.perf_counter()
    with pytest.raises(InputError, match="lasts 7200s, over the limit of 3600s") as err:
        load_file(path)
    assert time.perf_counter() - start < 0.5 and "max_audio_seconds" in err.value.reason
    clip = load_file(path, Limits(max_audio_seconds=3 * 3600)).payload
    assert clip.duration == 7200


def test_stream_stops_at_the_limit_whatever_the_header_said():
    def endless(rate):
        while True:
            yield np.zeros(rate, np.float32)  # a second at a time, never ending

    clip = AudioClip("<liar>", 8000, 1.0, endless, max_seconds=3.0)
    got = 0
    with pytest.raises(InputError, match="decodes to more than the limit of 3s") as err:
        for block in clip.stream(8000, 4000):
            got += block.size
    assert got <= 4 * 8000 and err.value.source == "<liar>"


def test_soundtrack_is_held_to_the_video_limit_not_the_audio_one(lib):
    item = load_file(lib["mp4_sound"], Limits(max_audio_seconds=1.0, max_video_seconds=10.0))
    decode_fully(item)  # a 2 s soundtrack of a video is fine under a 1 s audio limit
    with pytest.raises(InputError, match="video lasts"):
        load_file(lib["mp4_sound"], Limits(max_video_seconds=1.0))


@pytest.mark.parametrize("fmt", ["mp4", "avi", "webm"])
def test_max_video_frames(lib, fmt):
    limits = Limits(max_video_frames=5)  # these videos have 20 frames
    with pytest.raises(InputError, match="over the limit of 5") as err:
        load_and_decode(lib[fmt], limits)  # from the index when there is one, else while decoding
    assert "max_video_frames" in err.value.reason
    load_and_decode(lib[fmt], Limits(max_video_frames=20))


def float_wav(path: Path, values: np.ndarray, subtype: str = "FLOAT") -> Path:
    sf.write(path, values, 22050, format="WAV", subtype=subtype)
    return path


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
@pytest.mark.parametrize("kind", ["all-nan", "one-nan", "late-nan", "inf", "-inf"])
def test_nan_or_inf_samples_are_an_input_error(tmp_path, kind, subtype):
    wave = tone(1.0)
    values = {
        "all-nan": np.full(22050, np.nan), "one-nan": np.where(np.arange(22050) == 7, np.nan, wave),
        "late-nan": np.concatenate([np.tile(wave, 10), [np.nan]]),  # only in the last streamed chunk
        "inf": np.where(np.arange(22050) == 7, np.inf, wave), "-inf": np.full(22050, -np.inf),
    }[kind]
    path = float_wav(tmp_path / f"{kind}.wav", values, subtype)
    with pytest.raises(InputError) as err:
        load_and_decode(path)
    assert err.value.source == str(path) and "NaN or infinite" in err.value.reason


def test_nan_wav_is_skipped_by_embed_not_returned_as_a_nan_vector(space, tmp_path):
    good = write_wav(tmp_path / "good.wav", seconds=1.0)
    bad = float_wav(tmp_path / "bad.wav", np.full(22050, np.nan))
    result = space.embed([good, bad, "a sentence"], on_error="skip")
    assert result.indices == [0, 2] and np.isfinite(result.vectors).all()
    assert [(e.index, e.source) for e in result.errors] == [(1, str(bad))]
    assert "NaN" in result.errors[0].reason


def test_a_non_finite_vector_is_that_inputs_error(space, monkeypatch):
    tower, backbone = space.towers["text"], space.towers["text"].backbone
    project = tower.project
    marked = backbone.features(backbone.collate(list(backbone.segments(to_input("second sentence")))))
    key = next(iter(marked))

    def poisoned(features):  # the head "fails" on one input: its row comes out NaN
        out = project(features)
        rows = [j for j in range(out.shape[0]) if np.allclose(features[key][j].numpy(), marked[key][0].numpy())]
        out[rows] = np.nan
        return out

    monkeypatch.setattr(tower, "project", poisoned)
    result = space.embed(["first sentence", "second sentence", "third"], on_error="skip", batch_size=32)
    assert result.indices == [0, 2] and np.isfinite(result.vectors).all()
    assert result.errors[0].index == 1 and "non-finite vector" in result.errors[0].reason
    with pytest.raises(InputError, match="non-finite") as err:
        space.embed(["first sentence", "second sentence"])
    assert err.value.index == 1
    vectors, errors = tower.embed([to_input("one"), to_input("second sentence")])
    assert list(errors) == [1] and np.isnan(vectors[1]).all() and np.isfinite(vectors[0]).all()


END_CUTS = [1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 30, 50, 75, 100, 150, 200]
CUT_FORMATS = ["png", "jpeg", "gif", "webp", "bmp", "wav", "flac", "ogg", "mp3", "mp4", "mp4_sound",
               "mp4_faststart", "mkv", "webm", "avi", "m4a"]


@pytest.mark.parametrize("fmt", CUT_FORMATS)
def test_every_cut_is_refused(lib, fmt):
    # On main, cuts of 1-200 bytes at the end passed for MP3 15/15, AVI 15/15, MP4 10/15, PNG 6/15
    data = lib[fmt].read_bytes()
    cuts = [int(len(data) * i / 21) for i in range(1, 21)] + [len(data) - k for k in END_CUTS]
    accepted = []
    for cut in cuts:
        try:
            decode_fully(load_bytes(data[:cut], f"cut{cut}"))
            accepted.append(len(data) - cut)
        except InputError:
            pass
    # A GIF missing only its trailer byte lost nothing (old encoders omit it): accepted
    assert accepted == ([1] if fmt == "gif" else [])


REAL_MEDIA = [Path("/usr/share/doc/opencv-doc/examples/data") / n for n in ("vtest.avi", "Megamind.avi", "tree.avi")]


@pytest.mark.parametrize("path", REAL_MEDIA, ids=lambda p: p.name)
def test_real_videos_still_decode_and_their_cuts_do_not(path):
    if not path.exists():
        pytest.skip(f"{path} not installed (Debian opencv-doc)")
    decode_fully(load_file(path))
    data = path.read_bytes()
    for cut in [len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1]:
        with pytest.raises(InputError, match="truncated AVI"):
            load_bytes(data[:cut])


def tuxpaint_files(ext: str, n: int) -> list[Path]:
    root = Path("/usr/share/tuxpaint/stamps")
    return sorted(root.rglob(f"*.{ext}"))[:n] if root.exists() else []


def test_real_sounds_and_images_still_decode():
    files = tuxpaint_files("ogg", 20) + tuxpaint_files("wav", 5) + tuxpaint_files("png", 20)
    if not files:
        pytest.skip("Tux Paint stamps not installed")
    for path in files:
        decode_fully(load_file(path))


def test_data_after_the_end_marker_is_ignored(lib, tmp_path):
    # Motion Photos carry a video after the JPEG's EOI; tools append bytes after a PNG's IEND
    jpeg = tmp_path / "motion.jpg"
    jpeg.write_bytes(lib["jpeg"].read_bytes() + lib["mp4"].read_bytes())
    assert load_file(jpeg).payload.size == (96, 96)
    png = tmp_path / "trailing.png"
    png.write_bytes(lib["png"].read_bytes() + b"appended by some tool")
    assert load_file(png).payload.size == (96, 96)


def test_png_with_a_broken_critical_crc(lib):
    data = bytearray(lib["png"].read_bytes())
    idat = data.find(b"IDAT")
    data[idat + 8] ^= 0x01  # one bit of compressed pixels
    with pytest.raises(InputError, match="CRC mismatch in its 'IDAT' chunk"):
        load_bytes(bytes(data))


def test_gif_without_its_trailer_byte_is_accepted(lib):
    data = lib["gif"].read_bytes()
    assert data.endswith(b"\x00;")
    assert load_bytes(data[:-1]).payload.size == (96, 96)  # like Python's old idlelib icons
    with pytest.raises(InputError, match="truncated GIF"):
        load_bytes(data[:-2])


def test_mp3_tags_at_the_end_are_allowed(lib):
    data = lib["mp3"].read_bytes()
    id3v1 = b"TAG" + b"title".ljust(30, b"\x00") + bytes(95)
    ape_footer = b"APETAGEX" + struct.pack("<IIII", 2000, 32, 0, 0) + bytes(8)  # an item-less APEv2 tag
    for tail in (id3v1, ape_footer, ape_footer + id3v1):
        decode_fully(load_bytes(data + tail))
    with pytest.raises(InputError, match="truncated MP3/AAC file: its last frame lacks 1 bytes"):
        load_bytes(data[:-1] + id3v1)


def test_avi_without_its_announced_index(lib):
    data = lib["avi"].read_bytes()
    at = data.rfind(b"idx1")
    cut = data[:at]  # the index chunk gone, the RIFF size told so: a tool stopped before writing it
    cut = cut[:4] + struct.pack("<I", len(cut) - 8) + cut[8:]
    with pytest.raises(InputError, match="announces an index"):
        load_bytes(cut)


def test_mp4_trailing_padding_and_junk(lib):
    data = lib["mp4_sound"].read_bytes()
    decode_fully(load_bytes(data + bytes(4)))  # zero padding
    decode_fully(load_bytes(data + b"\x00\x00\x00\x10\x01\x02\x03\x04junkjunk"))  # no box type: not a box
    with pytest.raises(InputError, match="box header at byte"):
        load_bytes(data + b"\x00\x00\x01")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-16-be-bom", "utf-32-be-bom", "utf-8-sig"])
def test_utf16_and_utf32_text_with_a_byte_order_mark(tmp_path, encoding):
    text = "Grüße aus Köln — 猫が好きです。 The cat sat on the mat.\n"
    data = ("\ufeff" + text).encode(encoding[:-4]) if encoding.endswith("-bom") else text.encode(encoding)
    path = tmp_path / "note.txt"
    path.write_bytes(data)
    item = load_file(path)
    assert item.modality == "text" and item.payload == text


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_utf16_and_utf32_without_a_byte_order_mark_are_named(tmp_path, encoding):
    path = tmp_path / "note.txt"
    path.write_bytes("Grüße aus Köln — 猫. The cat sat on the mat.\n".encode(encoding) * 3)
    with pytest.raises(InputError, match="UTF-16/32 text without a byte-order mark"):
        load_file(path)


@pytest.mark.parametrize("data, words", [
    (b"k", "fewer than two"), (b"!!", "fewer than two"), (b"\x01", "control characters"), (b"a\x02", "control"),
    (b"\x05\x06\x07", "control"), (bytes(range(1, 32)) * 20, "control"), (b"ab" * 60 + b"\x02" * 2, "control"),
])
def test_bytes_that_are_not_text(data, words):
    with pytest.raises(InputError) as err:
        load_bytes(data, "upload")
    assert words in err.value.reason


@pytest.mark.parametrize("data", [b"ab", b"42", "é".encode(), "猫".encode(), "😀😀".encode(), b"\x1b[32mOK\x1b[0m done\n",
                                  b"tab\tseparated\fpage\x0bvertical\r\n", b"x" * 200 + b"\x02"])
def test_short_or_unusual_text_that_is_text(data):
    assert load_bytes(data, "upload").modality == "text"


def test_a_python_string_is_never_judged():
    assert to_input("a").payload == "a" and to_input("!").payload == "!"  # the caller chose it


def test_real_small_text_files_are_all_accepted():
    files = tuxpaint_files("txt", 10_000) + sorted(Path("/usr/share/common-licenses").glob("*"))
    if not files:
        pytest.skip("no Tux Paint captions or licence texts installed")
    refused = []
    for path in files:
        try:
            load_file(path)
        except InputError as exc:
            refused.append(f"{path}: {exc.reason}")
    assert refused == []


def test_special_files_are_named_and_never_read(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "socket.png"))
    sparse = tmp_path / "sparse.mp4"
    with open(sparse, "wb") as fh:
        fh.truncate(5 * 1024**3)  # 5 GiB, no blocks on disk
    cases = [(fifo, "named pipe"), (tmp_path / "socket.png", "socket"), (Path("/dev/zero"), "character device"),
             (tmp_path, "directory"), (sparse, "over the limit")]
    try:
        for path, words in cases:
            start = time.perf_counter()
            with pytest.raises(InputError) as err:
                load_file(path)
            assert time.perf_counter() - start < 0.1, path
            assert err.value.source == str(path) and words in err.value.reason
    finally:
        sock.close()


def test_sparse_file_is_refused_by_ingest_before_hashing(space, tmp_path):
    from omnibind.pipeline import embed_batch

    sparse = tmp_path / "sparse.wav"
    with open(sparse, "wb") as fh:
        fh.truncate(5 * 1024**3)
    start = time.perf_counter()
    result = embed_batch(space, [str(sparse)], {})
    assert time.perf_counter() - start < 0.1
    assert result.failed and "over the limit" in result.failed[0][1] and not result.rows


def test_float_image_with_nan_pixels():
    pixels = np.ones((8, 8), np.float32)
    assert to_input(Image.fromarray(pixels, mode="F")).modality == "image"
    pixels[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN or infinite pixel"):
        to_input(Image.fromarray(pixels, mode="F"))
    pixels[3, 3] = np.inf
    with pytest.raises(InputError, match="NaN or infinite pixel"):
        to_input(Image.fromarray(pixels, mode="F"))

