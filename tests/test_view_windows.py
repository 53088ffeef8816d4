"""The windows view: audio windows and video scenes with the right times and the right content,
cut from one decode of the parent, capped, and none for a short item. All media generated here."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from omnibind.decoders import DEFAULT_LIMITS
from omnibind.inputs import load_file
from omnibind.views import get
from omnibind.views.windows import WindowsView, spans

RATE = 16000
COLOURS = [(220, 30, 30), (30, 200, 40), (30, 40, 220)]  # red, green, blue sections


def stub_space(frames: int = 3, rate: int | None = None, block: int | None = None):
    """What the view reads of a space: limits, the video fusion's frame count, the audio
    backbone's rate and block (window_samples)."""
    towers = {}
    if rate is not None:
        backbone = SimpleNamespace(preprocess_config=lambda: {"sample_rate": rate, "window_samples": block})
        towers["audio"] = SimpleNamespace(backbone=backbone)
    return SimpleNamespace(limits=DEFAULT_LIMITS, video=SimpleNamespace(frames=frames), towers=towers)


def tone_noise_tone(path: Path, part: float = 10.0) -> np.ndarray:
    import soundfile as sf

    t = np.arange(int(part * RATE)) / RATE
    noise = np.random.default_rng(0).uniform(-0.4, 0.4, t.size)
    wave = np.concatenate([0.4 * np.sin(2 * np.pi * 440 * t), noise, 0.4 * np.sin(2 * np.pi * 880 * t)])
    sf.write(path, wave.astype(np.float32), RATE, subtype="FLOAT")
    return wave.astype(np.float32)


def streamed(clip, rate: int = RATE) -> np.ndarray:
    return np.concatenate(list(clip.stream(rate, 4096)))


def coloured_video(path: Path, section: float = 4.0, fps: int = 10, audio: bool = False) -> Path:
    """Red, then green, then blue, `section` seconds each; a 16 kHz soundtrack whose amplitude
    tells the section (0.1, 0.2, 0.3) when `audio`."""
    import av

    with av.open(str(path), "w", format="matroska") as out:
        v = out.add_stream("mpeg4", rate=fps)
        v.width, v.height, v.pix_fmt = 96, 64, "yuv420p"
        a = out.add_stream("pcm_s16le", rate=RATE, layout="mono") if audio else None
        n = int(section * fps)
        for i, colour in enumerate(c for c in COLOURS for _ in range(n)):
            frame = av.VideoFrame.from_image(Image.new("RGB", (96, 64), colour))
            frame.pts = i
            for packet in v.encode(frame):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
        if a is not None:
            wave = np.concatenate([np.full(int(section * RATE), 0.1 * (k + 1)) for k in range(3)])
            frame = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16)[None, :], format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, 0
            for packet in list(a.encode(frame)) + list(a.encode()):
                out.mux(packet)
    return path


def nearest_colour(image: Image.Image) -> int:
    pixel = np.asarray(image.convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0)
    return int(np.argmin([np.abs(pixel - c).sum() for c in COLOURS]))


def test_spans_cover_the_item_and_respect_the_cap():
    assert spans(30.0, 10, 5) == [(0, 10), (5, 15), (10, 20), (15, 25), (20, 30)]
    assert spans(21.0, 10, 5)[-1] == (15, 21.0)  # the last window reaches the end
    assert spans(14.9, 10, 5) == []  # shorter than 1.5 windows
    assert len(spans(3 * 3600.0, 10, 5, max_windows=720)) == 720


def test_audio_windows_have_the_right_times_and_samples(tmp_path: Path):
    wave = tone_noise_tone(tmp_path / "tnt.wav")
    item = load_file(tmp_path / "tnt.wav")
    segs = WindowsView(window=10, hop=5).segments(item, stub_space())
    assert [(s.kind, s.start, s.end) for s in segs] == [("window", a, b) for a, b in spans(30.0, 10, 5)]
    assert segs[0].start == 0 and segs[-1].end == pytest.approx(30.0)
    assert segs[2].media.source == f"{item.source}#t=10,20" and segs[2].media.modality == "audio"
    for s in segs:
        got = streamed(s.media.payload)
        want = wave[int(s.start * RATE) : int(s.end * RATE)]
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-3  # float16 storage
    noise = streamed(segs[2].media.payload)
    assert noise.std() > 0.2 and np.abs(np.fft.rfft(noise[:RATE])).argmax() not in (440, 880)


def test_audio_windows_follow_the_backbone_rate(tmp_path: Path):
    tone_noise_tone(tmp_path / "tnt.wav")
    segs = WindowsView(window=10, hop=5).segments(load_file(tmp_path / "tnt.wav"), stub_space(rate=8000))
    clip = segs[0].media.payload
    assert clip.sampling_rate == 8000 and streamed(clip, 8000).shape[0] == 80000


def test_audio_windows_are_whole_blocks_of_the_backbone(tmp_path: Path):
    tone_noise_tone(tmp_path / "tnt.wav")
    # blocks of 1.5 s: a 5 s window/hop becomes 3 blocks = 4.5 s, samples land on block edges
    segs = WindowsView(window=5, hop=5).segments(load_file(tmp_path / "tnt.wav"), stub_space(rate=8000, block=12000))
    assert [(s.start, s.end) for s in segs][:2] == [(0, 4.5), (4.5, 9.0)] and segs[-1].end == pytest.approx(30.0)
    assert all(streamed(s.media.payload, 8000).shape[0] == 36000 for s in segs[:-1])


def test_a_short_clip_gets_no_windows(tmp_path: Path):
    tone_noise_tone(tmp_path / "short.wav", part=4.0)  # 12 s < 1.5 x 10 s
    assert WindowsView(window=10, hop=5).segments(load_file(tmp_path / "short.wav"), stub_space()) == []
    coloured_video(tmp_path / "short.mkv", section=2.0)  # 6 s < 1.5 x 5 s
    assert WindowsView().segments(load_file(tmp_path / "short.mkv"), stub_space()) == []


def test_the_parent_is_decoded_once_and_only_as_far_as_the_cap(tmp_path: Path):
    tone_noise_tone(tmp_path / "tnt.wav")
    item = load_file(tmp_path / "tnt.wav")
    clip, calls, samples = item.payload, [], []
    inner = clip._blocks

    def counted(rate):
        calls.append(rate)
        for block in inner(rate):
            samples.append(len(block))
            yield block

    clip._blocks = counted
    segs = WindowsView(window=10, hop=5, max_windows=2).segments(item, stub_space())
    assert [(s.start, s.end) for s in segs] == [(0, 10), (5, 15)]
    for s in segs:
        streamed(s.media.payload)
    assert len(calls) == 1  # one decode for every window
    assert sum(samples) <= 15 * RATE + 65536  # stopped within a chunk of the 15 s the two windows reach (of 30 s)


def test_video_scenes_show_the_right_section(tmp_path: Path, monkeypatch):
    import av

    item = load_file(coloured_video(tmp_path / "rgb.mkv"))
    opened = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    segs = WindowsView(scene=4.0, scene_hop=4.0, frames_per_scene=None).segments(item, stub_space(frames=3))
    assert [(s.kind, s.start, round(s.end, 2)) for s in segs] == [("scene", 0, 4), ("scene", 4, 8), ("scene", 8, 12)]
    for k, s in enumerate(segs):
        clip = s.media.payload
        assert s.media.modality == "video" and clip.duration == pytest.approx(4.0)
        for n in (3, 8):  # 3 frames kept per scene: asking for 8 gives each kept frame once
            frames = clip.frames(n)
            assert len(frames) == 3 and max(max(f.size) for f in frames) <= 256
            assert [nearest_colour(f) for f in frames] == [k] * 3, (k, n)
        assert clip.audio() is None
    assert len(opened) == 1  # one front-to-back decode for every scene


def test_video_scenes_carry_their_slice_of_the_soundtrack(tmp_path: Path):
    item = load_file(coloured_video(tmp_path / "rgb_audio.mkv", audio=True))
    opened, inner = [], item.payload._audio
    item.payload._audio = lambda: opened.append(1) or inner()
    segs = WindowsView(scene=4.0, scene_hop=4.0).segments(item, stub_space(frames=2))
    assert len(segs) == 3 and opened == []  # the soundtrack waits until a scene asks for it
    for k, s in enumerate(segs):
        sound = streamed(s.media.payload.audio())
        assert sound.shape[0] == pytest.approx(4 * RATE, abs=RATE // 50)
        assert np.median(sound) == pytest.approx(0.1 * (k + 1), abs=0.01)
    assert opened == [1]  # decoded once for every scene


def test_the_view_ignores_other_modalities():
    from omnibind.inputs import to_input

    view = get("windows")
    assert isinstance(view, WindowsView) and view.name == "windows" and set(view.modalities) == {"audio", "video"}
    assert view.segments(to_input("a sentence"), stub_space()) == []
    frames = [Image.new("RGB", (32, 32), c) for c in COLOURS] * 10
    assert view.segments(to_input(frames), stub_space()) == []  # a list of frames has no times
