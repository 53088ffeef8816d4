"""The speech view: espeak-ng sentences come back as located words; tones, noise, silence and
videos without a soundtrack give nothing; long audio is streamed in bounded pieces; a changed
model file is refused. Media are generated here (espeak-ng, NumPy, PyAV)."""

from __future__ import annotations

import shutil
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from omnibind.errors import BackboneError, InputError
from omnibind.inputs import AudioClip, Input, load_file, to_input
from omnibind.views import speech
from omnibind.views.speech import Heard, SpeechRule, SpeechView, merge, pieces

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt-get install espeak-ng)")
SENTENCE = "Please leave a message after the tone"


@pytest.fixture(scope="module")
def view() -> SpeechView:
    return SpeechView(cpu_threads=1)


def spoken(tmp_path: Path, text: str = SENTENCE) -> tuple[np.ndarray, int]:
    """espeak-ng's voice saying `text`: (float32 samples, rate)."""
    import soundfile as sf

    wav = tmp_path / "spoken.wav"
    subprocess.run(["espeak-ng", "-s", "140", "-w", str(wav), text], check=True, timeout=30)
    audio, rate = sf.read(str(wav), dtype="float32")
    return audio, rate


def clip_of(audio: np.ndarray, rate: int) -> Input:
    return to_input({"array": audio, "sampling_rate": rate})


def write_video(path: Path, audio: np.ndarray | None, rate: int = 22050, seconds: float = 2.0) -> Path:
    """An MP4 of grey frames with `audio` (mono float32) as its AAC soundtrack, or none."""
    import av

    with av.open(str(path), "w") as out:
        v = out.add_stream("mpeg4", rate=10)
        v.width = v.height = 32
        v.pix_fmt = "yuv420p"
        a = out.add_stream("aac", rate=rate) if audio is not None else None
        if a is not None:
            a.layout = "mono"
        for _ in range(int(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 128, np.uint8), format="rgb24")
            out.mux(v.encode(frame))
        out.mux(v.encode())
        if a is not None:
            size = a.codec_context.frame_size or 1024
            for k in range(0, audio.size, size):
                frame = av.AudioFrame.from_ndarray(audio[None, k:k + size], format="flt", layout="mono")
                frame.sample_rate, frame.pts = rate, k
                out.mux(a.encode(frame))
            out.mux(a.encode())
    return path


@needs_espeak
def test_spoken_sentence_gives_its_words_inside_the_clip(view, tmp_path):
    audio, rate = spoken(tmp_path)
    segs = view.segments(clip_of(audio, rate), None)
    assert segs and all(s.kind == "speech" for s in segs)
    words = " ".join(s.text for s in segs).lower()
    assert all(w in words for w in ("leave", "message", "tone")), words
    duration = audio.size / rate
    assert all(0.0 <= s.start <= s.end <= duration + 1e-6 for s in segs)
    assert all(s.confidence is not None and -1.5 < s.confidence <= 0 for s in segs)


@needs_espeak
def test_speech_late_in_a_long_clip_keeps_its_time_across_pieces(tmp_path):
    """Silence, then the sentence at 12 s; pieces of 10 s: the words are found near 12 s."""
    audio, rate = spoken(tmp_path)
    track = np.concatenate([np.zeros(12 * rate, np.float32), audio, np.zeros(3 * rate, np.float32)])
    segs = SpeechView(cpu_threads=1, piece_seconds=10.0).segments(clip_of(track, rate), None)
    assert segs and "message" in " ".join(s.text for s in segs).lower()
    assert 10.5 <= segs[0].start <= 13.0 and segs[-1].end <= track.size / rate + 1e-6


def test_tone_noise_silence_and_tiny_clips_give_nothing(view):
    rate = 16000
    t = np.arange(3 * rate) / rate
    rng = np.random.default_rng(0)
    for audio in (0.4 * np.sin(2 * np.pi * 440 * t), 0.3 * rng.standard_normal(3 * rate), np.zeros(2 * rate),
                  np.full(5, 0.1), 0.9 * np.sign(np.sin(2 * np.pi * 3 * t))):
        assert view.segments(clip_of(audio.astype(np.float32), rate), None) == []


def test_bad_audio_raises_a_typed_error_and_other_modalities_give_nothing(view):
    nan = AudioClip("nan.wav", 16000, 1.0, lambda rate: iter([np.full(16000, np.nan, np.float32)]))
    with pytest.raises(InputError, match="NaN"):
        view.segments(Input("audio", nan, "nan.wav"), None)
    empty = AudioClip("empty.wav", 16000, 0.0, lambda rate: iter([]))
    with pytest.raises(InputError, match="no samples"):
        view.segments(Input("audio", empty, "empty.wav"), None)
    assert view.segments(Input("text", "hello there", "note"), None) == []


@needs_espeak
def test_video_soundtrack_is_transcribed(view, tmp_path):
    audio, rate = spoken(tmp_path)
    video = load_file(write_video(tmp_path / "talk.mp4", audio, rate, seconds=audio.size / rate + 0.5))
    assert video.modality == "video"
    segs = view.segments(video, None)
    assert segs and "message" in " ".join(s.text for s in segs).lower()


def test_video_without_sound_or_with_a_silent_soundtrack_gives_nothing(view, tmp_path):
    mute = load_file(write_video(tmp_path / "mute.mp4", None))
    assert mute.modality == "video" and view.segments(mute, None) == []
    quiet = load_file(write_video(tmp_path / "quiet.mp4", np.zeros(2 * 22050, np.float32)))
    assert quiet.payload.has_audio and view.segments(quiet, None) == []


def test_three_hours_stream_in_bounded_pieces():
    """A 3-hour recording (never held whole): pieces are contiguous, about 10 min each, capped."""
    rate, block = 16000, np.full(16000 * 7, 0.01, np.float32)  # 7 s blocks of faint sound
    hours3 = AudioClip("long.wav", rate, 10800.0, lambda r: (block for _ in range(10800 // 7 + 1)))
    tracemalloc.start()
    offsets, sizes = [], []
    for offset, piece in pieces(hours3, 600.0, 10800.0):
        offsets.append(offset)
        sizes.append(piece.size)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sum(sizes) == 10800 * rate and 18 <= len(offsets) <= 19
    assert all(abs(o - sum(sizes[:i]) / rate) < 1e-6 for i, o in enumerate(offsets))
    assert max(sizes) <= 630 * rate and min(sizes[:-1]) >= 540 * rate
    assert peak < 200 * 2**20  # a few pieces, never 3 h of float32 (691 MB)
    capped = list(pieces(hours3, 600.0, 3599.5))  # not a whole number of blocks
    assert sum(p.size for _, p in capped) == int(3599.5 * rate)


def test_pieces_cut_in_the_quietest_place():
    rate = 16000
    audio = np.full(25 * rate, 0.5, np.float32)
    audio[int(18.5 * rate):int(18.7 * rate)] = 0.0  # a pause inside the last tenth of a 20 s piece
    clip = AudioClip("x", rate, 25.0, lambda r: iter([audio]))
    (o1, p1), (o2, p2) = list(pieces(clip, 20.0, 3600.0))
    assert o1 == 0.0 and abs(p1.size / rate - 18.6) < 0.1 and o2 == p1.size / rate and p1.size + p2.size == audio.size


def test_rule_and_merge():
    def h(start, end, text="words", lp=-0.3, nsp=0.05, cr=1.0):
        return Heard(start, end, text, lp, nsp, cr)

    rule = SpeechRule()
    assert rule.keeps(h(0, 1))
    assert not rule.keeps(h(0, 1, lp=-1.2, nsp=0.7))  # Whisper's no-speech rule
    doubtful = rule.tuned_no_speech_prob + 0.02
    assert not rule.keeps(h(0, 1, nsp=doubtful, lp=rule.tuned_avg_logprob - 0.05))  # the tuned pair
    assert rule.keeps(h(0, 1, nsp=doubtful, lp=-0.15))  # confident speech in a long window
    assert not rule.keeps(h(0, 1, cr=rule.compression_ratio + 0.1))  # a hallucinated loop
    assert not rule.keeps(h(0, 1, text=" . "))
    heard = [h(0, 5, "a", lp=-0.2), h(6, 20, "b", lp=-0.4), h(21, 40, "c"), h(41, 45, "d")]
    merged = merge(heard, 30.0)
    assert [(s.text, s.start, s.end) for s in merged] == [("a b", 0, 20), ("c d", 21, 45)]
    assert merged[0].confidence == pytest.approx((-0.2 * 5 - 0.4 * 14) / 19)
    assert [s.text for s in merge(heard, 0.0)] == ["a", "b", "c", "d"]


def test_a_changed_model_file_is_refused(monkeypatch):
    folder = speech.model_dir()
    speech.verify_model(folder)  # the installed files match the pins
    wrong = "0" * 64
    with pytest.raises(BackboneError, match=f"expected {wrong}") as err:
        speech.verify_model(folder, {"model.bin": wrong})
    assert speech.MODEL_SHA256["model.bin"] in str(err.value)  # names the hash it found
    monkeypatch.setattr(speech, "MODEL_SHA256", {**speech.MODEL_SHA256, "config.json": wrong})
    monkeypatch.setattr(speech, "_MODELS", {})
    with pytest.raises(BackboneError, match="config.json"):
        SpeechView(cpu_threads=1).segments(clip_of(np.zeros(16000, np.float32), 16000), None)


def test_registered_as_the_speech_view():
    from omnibind import views

    v = views.get("speech")
    assert isinstance(v, SpeechView) and v.name == "speech" and v.modalities == ("audio", "video")


def test_whisper_times_are_clamped_to_the_piece_and_shifted(monkeypatch):
    """Whisper rounds segment ends up to its 30 s grid (7.0 s for a 5.2 s prompt): clamped."""
    import threading
    from types import SimpleNamespace

    found = [SimpleNamespace(start=-0.2, end=7.0, text=" hello there ", avg_logprob=-0.3, no_speech_prob=0.1,
                             compression_ratio=1.0)]
    fake = SimpleNamespace(transcribe=lambda audio, **kw: (iter(found), None))
    monkeypatch.setattr(speech, "load_model", lambda threads: (fake, threading.Lock()))
    (h,) = SpeechView(cpu_threads=1).transcribe(np.zeros(5 * 16000, np.float32), offset=600.0)
    assert (h.start, h.end, h.text) == (600.0, 605.0, "hello there")
