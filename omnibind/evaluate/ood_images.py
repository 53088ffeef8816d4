"""Out-of-domain image-text validation: real photographs unlike the Tux Paint stamps.

Every space the project trains learns from Tux Paint stamps (cut-out, centred objects). A head can
get better on stamps and worse on ordinary photographs; only photographs it never saw show that.
These sets are photos that ship in Debian packages (desktop wallpapers and a KDE jigsaw's
pictures, OpenCV's sample and tutorial images, Scratch 1.4's stage backdrops), each with one
caption written for this project by looking at the picture (never from its file name), recorded
with the file's sha256 and its package's licence in `omnibind/data/ood_images.tsv`.

They are for validation only: never train, tune a prompt, or pick a hyperparameter on them; a
default is accepted only if it does not lower any of them (docs/ood-images.md).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from omnibind.errors import OmnibindError

if TYPE_CHECKING:
    import numpy as np

    from omnibind.evaluate.results import TaskResult

TSV = Path(__file__).resolve().parent.parent / "data" / "ood_images.tsv"
SETS = ("wallpapers", "opencv-photos", "scratch-backdrops")
SET_NAMES = {
    "wallpapers": "Desktop wallpaper and jigsaw photographs (landscapes, animals, objects)",
    "opencv-photos": "OpenCV sample and tutorial photographs (objects, animals, people, places)",
    "scratch-backdrops": "Scratch 1.4 stage backdrop photographs (places, rooms, sports grounds)",
}
COLUMNS = ("set", "package", "path", "sha256", "caption", "license")


class OodDataMissingError(OmnibindError):
    """A set's files are not installed; the message names the Debian packages to install."""


class OodChecksumWarning(UserWarning):
    """A listed photo's bytes differ from the recorded sha256 (a changed package); it is skipped."""


@dataclass(frozen=True)
class OodImage:
    path: Path
    caption: str
    set: str
    package: str


@dataclass(frozen=True)
class _Row:
    set: str
    package: str
    path: Path
    sha256: str
    caption: str
    license: str


def rows(tsv: Path = TSV) -> list[_Row]:
    """Every row of the captions table, as written (no file access)."""
    with tsv.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise OmnibindError(f"{tsv}: header must be {' '.join(COLUMNS)}")
        return [_Row(r["set"], r["package"], Path(r["path"]), r["sha256"], r["caption"], r["license"])
                for r in reader]


@functools.lru_cache(maxsize=512)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    """The file's sha256, cached per (path, size, mtime): a run hashes each photo once."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    st = path.stat()
    return _sha256(path, st.st_size, st.st_mtime_ns)


def load(set_name: str | None = None, tsv: Path = TSV) -> list[OodImage]:
    """The photos of one set (None: all sets), in table order.

    Raises OodDataMissingError naming the packages when any listed file is absent; skips, with
    an OodChecksumWarning, a file whose sha256 differs from the table's.
    """
    if set_name is not None and set_name not in SETS:
        raise OmnibindError(f"unknown out-of-domain image set {set_name!r}: choose from {', '.join(SETS)}")
    wanted = [r for r in rows(tsv) if set_name in (None, r.set)]
    missing = sorted({r.package for r in wanted if not r.path.is_file()})
    if missing:
        raise OodDataMissingError(
            f"out-of-domain image set {set_name or 'all'}: files missing; install the Debian "
            f"package(s) {' '.join(missing)} (apt-get install --no-install-recommends {' '.join(missing)})")
    out = []
    for r in wanted:
        if _file_sha256(r.path) != r.sha256:
            warnings.warn(f"{r.path}: sha256 differs from the recorded one (package {r.package} changed?); "
                          "skipped", OodChecksumWarning, stacklevel=2)
            continue
        out.append(OodImage(r.path, r.caption, r.set, r.package))
    return out


def _debian_version(package: str) -> str | None:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def dataset_info(set_name: str, items: list[OodImage]) -> dict[str, Any]:
    """What a report records about the set: its name, size, source packages and their versions."""
    packages = sorted({i.package for i in items})
    return {"name": f"{SET_NAMES[set_name]}, out-of-domain validation only", "n": len(items),
            "source": ", ".join(f"debian:{p}" for p in packages),
            "version": ", ".join(f"{p} {_debian_version(p)}" for p in packages)}


def retrieval_task(embed: Callable[[list[Any], str], "np.ndarray"], limit: int | None,
                   set_name: str) -> "TaskResult":
    """Caption <-> image retrieval on one set, named `ood-<set>` (the suite's task signature plus the set)."""
    from omnibind.evaluate.results import _retrieval

    items = load(set_name)[:limit]
    caps = embed([i.caption for i in items], "text")
    imgs = embed([i.path for i in items], "image")
    return _retrieval(f"ood-{set_name}", caps, imgs, ("caption", "image"), dataset_info(set_name, items))


def tasks() -> dict[str, Callable[[Any, int | None], "TaskResult"]]:
    """One suite task per set, keyed `ood-<set>`, ready to merge into the suite's TASKS."""
    return {f"ood-{s}": functools.partial(retrieval_task, set_name=s) for s in SETS}
