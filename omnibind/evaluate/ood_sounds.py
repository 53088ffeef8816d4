"""Out-of-domain sounds: a sound–caption validation set unlike Tux Paint, built from Debian packages.

A trained audio head that is better on Tux Paint's test sounds and worse on sounds unlike them is a
regression (DESIGN.md, "Real data for evaluation"), so the project needs real sounds from elsewhere,
captioned by what they are. None ships with captions, so the captions are written for omnibind in
`omnibind/data/ood_sounds.tsv` (committed); the audio is read from installed packages or rendered:

* `freedesktop`: recorded desktop sounds of `sound-theme-freedesktop`, only those whose file name
  says what the sound is (an alarm clock, a bell, a camera shutter, phone tones);
* `gm`: the 128 General MIDI programs, one note each, rendered by `fluidsynth` from the TimGM6mb
  SoundFont (`timgm6mb-soundfont`, recorded and synthesised samples);
* `gm-drum`: 44 pieces of the General MIDI drum kit, one hit each, from the same SoundFont.

Rendering is deterministic (reverb and chorus off, float output, fixed slots) and cached under
`$OMNIBIND_CACHE/ood-sounds/v{VERSION}`; it is never committed. These sounds never train anything.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from omnibind.evaluate.datasets import DataMissingError

if TYPE_CHECKING:
    from omnibind.evaluate.results import TaskResult

VERSION = 1  # bump when rendering changes: the cache folder is keyed by it
FREEDESKTOP = Path("/usr/share/sounds/freedesktop/stereo")
SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
RATE = 22050
TICKS_PER_SECOND = 960  # division 480 at the default 120 bpm
PACKAGES = {"freedesktop": "sound-theme-freedesktop", "gm": "timgm6mb-soundfont", "gm-drum": "timgm6mb-soundfont"}
LICENCES = {"sound-theme-freedesktop": "CC-BY-SA-3.0 / CC-BY-3.0 / GPL-2+ per file (debian/copyright)",
            "timgm6mb-soundfont": "GPL-2"}
# (seconds held, seconds per slot) for a melodic note and a drum hit
NOTE, DRUM = (1.5, 3.0), (0.5, 2.0)
LOW_PROGRAMS = frozenset({32, 33, 34, 35, 36, 37, 38, 39, 43, 47, 58, 67, 70, 116})  # played at C3
HIGH_PROGRAMS = frozenset({8, 9, 10, 72, 79, 112})  # played at C5


@dataclass(frozen=True)
class OodSound:
    """One captioned sound; `label` is the instrument name (GM programs only, else "")."""

    path: Path
    caption: str
    source: str  # freedesktop | gm | gm-drum
    package: str
    key: str = ""
    label: str = ""


@dataclass(frozen=True)
class _Row:
    source: str
    key: str
    name: str
    label: str
    caption: str


def rows() -> list[_Row]:
    """The committed caption table, in file order."""
    text = resources.files("omnibind.data").joinpath("ood_sounds.tsv").read_text("utf-8")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    header, body = lines[0].split("\t"), lines[1:]
    if header != ["source", "key", "name", "label", "caption"]:
        raise DataMissingError(f"ood_sounds.tsv: unexpected header {header}")
    return [_Row(*ln.split("\t")) for ln in body]


def cache_root() -> Path:
    from omnibind.backbones.onnx import cache_dir

    return cache_dir() / "ood-sounds" / f"v{VERSION}"


def load() -> list[OodSound]:
    """Every captioned sound, rendering the General MIDI ones on first use (cached afterwards).

    Raises DataMissingError naming the Debian package to install when a source is absent.
    """
    table = rows()
    if not FREEDESKTOP.is_dir():
        raise DataMissingError(f"{FREEDESKTOP} not found: run `apt-get install sound-theme-freedesktop`")
    rendered = render_gm([r for r in table if r.source != "freedesktop"])
    out = []
    for r in table:
        path = FREEDESKTOP / f"{r.key}.oga" if r.source == "freedesktop" else rendered[(r.source, r.key)]
        if not path.is_file():
            raise DataMissingError(f"{path} not found: reinstall {PACKAGES[r.source]}")
        out.append(OodSound(path, r.caption, r.source, PACKAGES[r.source], r.key, r.label))
    return out


def _events(items: list[_Row]) -> tuple[bytes, list[tuple[float, float]]]:
    """One MIDI track playing each item in its own slot; returns (track bytes, [(start, length) s])."""
    track, slots, now_tick, t = bytearray(), [], 0, 0.0

    def at(seconds: float, data: bytes) -> None:
        nonlocal now_tick
        tick = round(seconds * TICKS_PER_SECOND)
        track.extend(_varlen(tick - now_tick) + data)
        now_tick = tick

    for r in items:
        k = int(r.key)
        if r.source == "gm":
            held, slot = NOTE
            pitch = 48 if k in LOW_PROGRAMS else 72 if k in HIGH_PROGRAMS else 60
            at(t, bytes([0xC0, k]))
            at(t, bytes([0x90, pitch, 100]))
            at(t + held, bytes([0x80, pitch, 0]))
        else:
            held, slot = DRUM
            at(t, bytes([0x99, k, 100]))
            at(t + held, bytes([0x89, k, 0]))
        slots.append((t, slot))
        t += slot
    at(t, b"\xff\x2f\x00")  # end of track after the last slot's tail
    return bytes(track), slots


def _varlen(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def _midi_file(track: bytes) -> bytes:
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(track)) + track


def render_gm(items: list[_Row]) -> dict[tuple[str, str], Path]:
    """WAV files of the General MIDI items, rendered once by fluidsynth into the cache."""
    if not SOUNDFONT.is_file():
        raise DataMissingError(f"{SOUNDFONT} not found: run `apt-get install timgm6mb-soundfont`")
    folder = cache_root() / "gm"
    paths = {(r.source, r.key): folder / f"{r.source}-{int(r.key):03d}.wav" for r in items}
    track, slots = _events(items)
    stamp = hashlib.sha256(track + SOUNDFONT.read_bytes()[:1 << 20] + str(SOUNDFONT.stat().st_size).encode()).hexdigest()
    marker = folder / "done.json"
    if marker.is_file() and json.loads(marker.read_text()).get("stamp") == stamp and all(p.is_file() for p in paths.values()):
        return paths
    audio = render_midi(_midi_file(track), SOUNDFONT, sum(s for _, s in slots))
    _write_clips(audio, slots, list(paths.values()), folder)
    marker.write_text(json.dumps({"stamp": stamp, "soundfont": str(SOUNDFONT), "rate": RATE, "n": len(items)}))
    return paths


def render_midi(midi: bytes, soundfont: Path, seconds: float) -> np.ndarray:
    """Mono float audio of a MIDI file at RATE by fluidsynth (reverb and chorus off: deterministic);
    also how the sound bank renders its General MIDI notes (omnibind/bind/sound_bank.py)."""
    import soundfile as sf

    if shutil.which("fluidsynth") is None:
        raise DataMissingError("fluidsynth not found: run `apt-get install --no-install-recommends fluidsynth`")
    with tempfile.TemporaryDirectory(prefix="omnibind-gm-") as tmp:
        mid, wav = Path(tmp) / "all.mid", Path(tmp) / "all.wav"
        mid.write_bytes(midi)
        cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-r", str(RATE), "-O", "float", "-T", "wav",
               "-F", str(wav), str(soundfont), str(mid)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=max(60.0, seconds))
        except (OSError, subprocess.SubprocessError) as e:
            raise DataMissingError(f"fluidsynth failed to render {soundfont}: {e}") from None
        audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    if rate != RATE:
        raise DataMissingError(f"fluidsynth wrote {rate} Hz, expected {RATE}")
    return audio.mean(1)


def _write_clips(audio: np.ndarray, slots: list[tuple[float, float]], paths: list[Path], folder: Path) -> None:
    """Cut one clip per slot, trim trailing silence (>= 0.5 s kept), peak-normalise, write 16-bit WAV."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    for (start, length), path in zip(slots, paths):
        clip = audio[round(start * RATE):round((start + length) * RATE)]
        peak = float(np.abs(clip).max()) if clip.size else 0.0
        if peak <= 0:
            raise DataMissingError(f"{SOUNDFONT} rendered silence for {path.stem}")
        loud = np.flatnonzero(np.abs(clip) > peak * 1e-3)
        clip = clip[:max(int(loud[-1]) + 1, RATE // 2)] * (0.5 / peak)
        tmp = path.with_suffix(".tmp.wav")
        sf.write(str(tmp), clip, RATE, subtype="PCM_16")
        tmp.replace(path)


def _dataset(sounds: list[OodSound], what: str) -> dict[str, object]:
    from omnibind.evaluate.results import debian_version

    packages = sorted({s.package for s in sounds})
    return {"name": what, "n": len(sounds), "source": ", ".join(f"debian:{p}" for p in packages),
            "version": ", ".join(f"{p}={debian_version(p)}" for p in packages),
            "licences": {p: LICENCES[p] for p in packages}}


def retrieval_task(embed: Any, limit: int | None) -> TaskResult:
    """Caption <-> sound retrieval over every out-of-domain sound (one caption per sound)."""
    from omnibind.evaluate.results import _retrieval

    sounds = load()[:limit]
    caps, snds = embed([s.caption for s in sounds], "text"), embed([s.path for s in sounds], "audio")
    return _retrieval("ood-sounds", caps, snds, ("caption", "sound"), _dataset(
        sounds, "Out-of-domain sounds: freedesktop theme, General MIDI notes and drums (TimGM6mb), captions written for omnibind"))


def instrument_task(embed: Any, limit: int | None) -> TaskResult:
    """Zero-shot naming of the 128 General MIDI instruments, the audio modality's prompt templates."""
    from omnibind import modalities
    from omnibind.evaluate import metrics as M
    from omnibind.evaluate.results import TaskResult, _label_vectors

    gm = [s for s in load() if s.source == "gm"]
    names = [s.label for s in gm]
    sounds = gm[:limit]
    labels = _label_vectors(embed, names, modalities.templates("audio"))
    scores = embed([s.path for s in sounds], "audio") @ labels.T
    y = np.arange(len(sounds))
    return TaskResult("ood-instruments", "classification", _dataset(
        sounds, "General MIDI instruments (TimGM6mb, one note each), zero-shot among the 128 names"),
        M.classification_metrics(scores, y, names))
