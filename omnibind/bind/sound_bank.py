"""The captioned sound bank: ~1,000+ real sounds from Debian packages, for the audio bridge and binding.

The audio tower's bridge (an exemplar ConSE head over aisfx features) can only name sounds like
its exemplars; 55 Tux Paint train sounds are too few (issue 15). `omnibind/data/sound_bank.tsv`
(written by scripts/make_sound_bank.py, committed) lists sounds from game and education data
packages whose file names say what they are, with a caption, a near-duplicate group and the
package's licence. Audio is never committed: this module resolves each row to a file of an
installed package, extracts files packed in GCompris Qt resource archives (`x.rcc#inner/path`),
and renders General MIDI notes of fluid-soundfont-gm (`x.sf2#gm:PPP:NN`, `x.sf2#drum:NNN`) with
fluidsynth, deterministically, into `$OMNIBIND_CACHE/sound-bank/v{VERSION}`.

Evaluation data never enters the bank: sound-theme-freedesktop and timgm6mb-soundfont (the
out-of-domain sets) and Tux Paint stamp sounds are not listed; Tux Paint *train* sounds are
added in code by `tux_train_exemplars`.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from omnibind.evaluate.datasets import DataMissingError
from omnibind.evaluate.ood_sounds import RATE  # the rate ood_sounds.render_midi renders at

if TYPE_CHECKING:
    from omnibind.heads import ConSEHead

VERSION = 1
HEADER = ["package", "path", "caption", "group", "licence"]
EXCLUDED_PACKAGES = frozenset({"sound-theme-freedesktop", "timgm6mb-soundfont", "tuxpaint-stamps-default"})
NOTE_SECONDS, NOTE_SLOT, DRUM_SECONDS, DRUM_SLOT = 1.5, 3.0, 0.5, 2.0


@dataclass(frozen=True)
class BankSound:
    """One row of the manifest; `path` is what `resolve` turns into a readable file."""

    package: str
    path: str
    caption: str
    group: str
    licence: str

    @property
    def is_gm(self) -> bool:
        return "#gm:" in self.path or "#drum:" in self.path


def rows(text: str | None = None) -> list[BankSound]:
    """The manifest's rows (the committed file unless `text` is given)."""
    if text is None:
        text = resources.files("omnibind.data").joinpath("sound_bank.tsv").read_text("utf-8")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    if not lines or lines[0].split("\t") != HEADER:
        raise DataMissingError(f"sound_bank.tsv: header must be {HEADER}")
    out = []
    for n, ln in enumerate(lines[1:], 2):
        cells = ln.split("\t")
        if len(cells) != len(HEADER) or not all(cells):
            raise DataMissingError(f"sound_bank.tsv line {n}: expected {len(HEADER)} non-empty cells")
        out.append(BankSound(*cells))
    return out


def cache_root() -> Path:
    from omnibind.backbones.onnx import cache_dir

    return cache_dir() / "sound-bank" / f"v{VERSION}"


def load(sounds: list[BankSound] | None = None, packages: set[str] | None = None,
         skip_silent: bool = False) -> list[tuple[BankSound, Path]]:
    """(row, readable file) for every row (of `packages` when given), extracting and rendering into
    the cache on first use. Raises DataMissingError naming the apt package when one is missing."""
    sounds = [s for s in (rows() if sounds is None else sounds) if packages is None or s.package in packages]
    bad = sorted({s.package for s in sounds} & EXCLUDED_PACKAGES)
    if bad:
        raise DataMissingError(f"the sound bank may not hold evaluation data: {', '.join(bad)}")
    rendered = render_gm([s for s in sounds if s.is_gm], skip_silent)
    return [(s, rendered[s.path] if s.is_gm else _plain_or_rcc(s)) for s in sounds if not s.is_gm or s.path in rendered]


def _plain_or_rcc(s: BankSound) -> Path:
    outer, _, inner = s.path.partition("#")
    if not Path(outer).is_file():
        raise DataMissingError(f"{outer} not found: run `apt-get install --no-install-recommends {s.package}`")
    if not inner:
        return Path(outer)
    target = cache_root() / "rcc" / hashlib.sha256(s.path.encode()).hexdigest()[:16] / Path(inner).name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(rcc_read(Path(outer), inner))
        tmp.replace(target)
    return target


def _rcc_tree(data: bytes) -> dict[str, tuple[int, int]]:
    """Qt resource archive (.rcc, versions 1-3): inner path -> (data offset, flags)."""
    if data[:4] != b"qres":
        raise DataMissingError("not a Qt resource archive (.rcc)")
    version, tree, dat, names = struct.unpack(">IIII", data[4:20])
    node = 14 if version == 1 else 22
    out: dict[str, tuple[int, int]] = {}
    stack = [(0, "")]
    while stack:
        i, prefix = stack.pop()
        p = tree + i * node
        name_off, flags = struct.unpack(">IH", data[p:p + 6])
        length = struct.unpack(">H", data[names + name_off:names + name_off + 2])[0]
        name = data[names + name_off + 6:names + name_off + 6 + 2 * length].decode("utf-16-be") if i else ""
        if flags & 2:  # directory: children are nodes first..first+count-1
            count, first = struct.unpack(">II", data[p + 6:p + 14])
            stack += [(c, f"{prefix}{name}/" if i else "") for c in range(first, first + count)]
        else:
            out[prefix + name] = (dat + struct.unpack(">I", data[p + 10:p + 14])[0], flags)
    return out


def rcc_members(path: Path) -> list[str]:
    """Inner paths of the files in a Qt resource archive, sorted."""
    return sorted(_rcc_tree(path.read_bytes()))


def rcc_read(path: Path, inner: str) -> bytes:
    """The bytes of one file inside a Qt resource archive (zlib-compressed entries inflated)."""
    data = path.read_bytes()
    tree = _rcc_tree(data)
    if inner not in tree:
        raise DataMissingError(f"{inner} not in {path}: reinstall the package that ships it")
    offset, flags = tree[inner]
    size = struct.unpack(">I", data[offset:offset + 4])[0]
    blob = data[offset + 4:offset + 4 + size]
    if flags & 4:
        raise DataMissingError(f"{path}#{inner} is zstd-compressed, which omnibind does not read")
    return zlib.decompress(blob[4:]) if flags & 1 else blob


def _gm_spec(path: str) -> tuple[str, int, int]:
    """'...sf2#gm:040:60' -> (soundfont, program 40, pitch 60); '...#drum:036' -> (soundfont, -1, 36)."""
    sf2, _, spec = path.partition("#")
    kind, *nums = spec.split(":")
    return (sf2, int(nums[0]), int(nums[1])) if kind == "gm" else (sf2, -1, int(nums[0]))


def _midi_track(specs: list[tuple[int, int]]) -> tuple[bytes, list[tuple[float, float]]]:
    """One MIDI track, each (program, pitch) in its own slot (program -1: a drum on channel 10)."""
    from omnibind.evaluate.ood_sounds import TICKS_PER_SECOND, _varlen

    track, slots, now, t = bytearray(), [], 0, 0.0
    for program, pitch in specs:
        held, slot = (NOTE_SECONDS, NOTE_SLOT) if program >= 0 else (DRUM_SECONDS, DRUM_SLOT)
        events = [(t, bytes([0xC0, program])), (t, bytes([0x90, pitch, 100])), (t + held, bytes([0x80, pitch, 0]))] \
            if program >= 0 else [(t, bytes([0x99, pitch, 100])), (t + held, bytes([0x89, pitch, 0]))]
        for at, data in events:
            tick = round(at * TICKS_PER_SECOND)
            track += _varlen(tick - now) + data
            now = tick
        slots.append((t, slot))
        t += slot
    track += _varlen(round(t * TICKS_PER_SECOND) - now) + b"\xff\x2f\x00"
    return bytes(track), slots


def render_gm(sounds: list[BankSound], skip_silent: bool = False) -> dict[str, Path]:
    """WAV files of the General MIDI rows, rendered once per soundfont by fluidsynth into the cache.

    A note the soundfont renders as silence raises DataMissingError, or is left out of the result
    with `skip_silent` (how scripts/make_sound_bank.py keeps such notes out of the manifest)."""
    from omnibind.evaluate.ood_sounds import _midi_file, render_midi

    out: dict[str, Path] = {}
    by_font: dict[str, list[BankSound]] = {}
    for s in sounds:
        by_font.setdefault(_gm_spec(s.path)[0], []).append(s)
    for sf2, items in sorted(by_font.items()):
        if not Path(sf2).is_file():
            raise DataMissingError(f"{sf2} not found: run `apt-get install --no-install-recommends {items[0].package}`")
        specs = [_gm_spec(s.path)[1:] for s in items]
        track, slots = _midi_track(specs)
        stamp = hashlib.sha256(track + sf2.encode() + str(Path(sf2).stat().st_size).encode()).hexdigest()
        folder = cache_root() / "gm" / stamp[:16]
        paths = [folder / f"{'drum' if p < 0 else f'gm{p:03d}'}-{n:03d}.wav" for p, n in specs]
        out.update({s.path: p for s, p in zip(items, paths)})
        marker = folder / "done.json"
        if not marker.is_file():
            audio = render_midi(_midi_file(track), Path(sf2), sum(s for _, s in slots))
            silent = _write_clips(audio, slots, paths, folder)
            marker.write_text(json.dumps({"soundfont": sf2, "rate": RATE, "n": len(items), "silent": silent}))
        silent = set(json.loads(marker.read_text()).get("silent", []))
        if silent and not skip_silent:
            raise DataMissingError(f"{sf2} renders silence for {sorted(silent)[:5]}: regenerate the manifest")
        out = {k: v for k, v in out.items() if v.name not in silent}
    return out


def _write_clips(audio: np.ndarray, slots: list[tuple[float, float]], paths: list[Path], folder: Path) -> list[str]:
    """One 16-bit WAV per slot: trailing silence trimmed (>= 0.5 s kept), peak 0.5. Returns the
    names of silent slots (not written)."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    silent = []
    for (start, length), path in zip(slots, paths):
        clip = audio[round(start * RATE):round((start + length) * RATE)]
        peak = float(np.abs(clip).max()) if clip.size else 0.0
        if peak < 1e-4:
            silent.append(path.name)
            continue
        loud = np.flatnonzero(np.abs(clip) > peak * 1e-3)
        clip = clip[:max(int(loud[-1]) + 1, RATE // 2)] * (0.5 / peak)
        tmp = path.with_suffix(".tmp.wav")
        sf.write(str(tmp), clip, RATE, subtype="PCM_16")
        tmp.replace(path)
    return silent


def tux_train_exemplars() -> list[tuple[str, Path]]:
    """(caption, sound) of the Tux Paint *train* natural sounds; never a test stamp."""
    from omnibind.evaluate.datasets import stamp_split, tuxpaint_sounds

    train = tuxpaint_sounds("train")
    if any(stamp_split(s.key) != "train" for s in train):
        raise DataMissingError("a Tux Paint test stamp leaked into the train exemplars")
    return [(s.caption, s.sound) for s in train if s.sound is not None]


def audio_bridge_head(top_k: int = 10, temperature: float = 0.05, merge: bool = False, include_gm: bool = True,
                      include_tux_train: bool = True) -> tuple["ConSEHead", dict[str, object]]:
    """The audio tower's exemplar ConSE head over the sound bank (+ Tux Paint train sounds).

    Prototype of a sound = mean of its L2-normalised aisfx window embeddings; class embedding =
    the anchor's (MiniLM) embedding of its caption. With `merge`, sounds sharing a caption become
    one class (prototype = mean of theirs). Returns (head, provenance facts for space.json).
    """
    import torch

    from omnibind.backbones import load_backbone
    from omnibind.heads import ConSEHead
    from omnibind.inputs import load_file

    pairs = [(s.caption, p) for s, p in load() if include_gm or not s.is_gm]
    pairs += tux_train_exemplars() if include_tux_train else []
    aisfx = load_backbone("aisfx")
    protos = []
    for _, path in pairs:
        win = aisfx.features(aisfx.collate(list(aisfx.segments(load_file(path)))))["embedding"]
        protos.append(torch.nn.functional.normalize(win, dim=-1).mean(0))
    captions = [c for c, _ in pairs]
    proto = torch.stack(protos)
    if merge:
        names = sorted(set(captions))
        index = torch.tensor([names.index(c) for c in captions])
        proto = torch.zeros(len(names), proto.shape[1]).index_add_(0, index, proto)
        captions = names
    minilm = load_backbone("minilm")
    text = torch.cat([minilm.features(captions[i:i + 256])["embedding"] for i in range(0, len(captions), 256)])
    head = ConSEHead.from_classes("embedding", text, top_k, temperature, prototypes=proto)
    keys = hashlib.sha256("\n".join(f"{c}\t{p}" for c, p in pairs).encode()).hexdigest()[:16]
    return head, {"exemplars": len(pairs), "classes": len(captions), "top_k": top_k, "temperature": temperature,
                  "merge_captions": merge, "general_midi": include_gm, "tux_train": include_tux_train,
                  "manifest": "omnibind/data/sound_bank.tsv", "exemplar_sha256": keys}
