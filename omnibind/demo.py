"""The README's main job: real example media of every modality in a collection, searched across
modalities, and each caption ranked against all media.

Media are taken at set-up from installed Debian packages (nothing is committed): Tux Paint
stamps (photos and sound effects, *test* split only, so nothing the default space was built
from) and OpenCV's sample photos and videos. Two short videos with sound are assembled from a
Tux Paint test stamp's picture and its sound effect.
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omnibind.errors import OmnibindError
from omnibind.evaluate.datasets import TUXPAINT_ROOT, DataMissingError, stamp_split

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
CAPTIONS = "captions.tsv"

# (file name in the folder, modality, caption, where it comes from)
_TUX_IMAGES = ["animals/mammals/cats/tiger", "animals/mammals/giraffe", "household/kettle", "hobbies/camera_35mm"]
_TUX_SOUNDS = ["animals/mammals/dogs/dog", "animals/mammals/bovines/cow", "animals/birds/rooster", "hobbies/music/percussion/drumkit"]
_TUX_VIDEOS = ["animals/mammals/elephant", "animals/mammals/equines/horse"]
_OPENCV_IMAGES = [("baboon.jpg", "A baboon, a monkey with a red and blue face."), ("orange.jpg", "An orange.")]
_OPENCV_VIDEOS = [("vtest.avi", "People walking along a street."), ("Megamind.avi", "An animated cartoon character talking.")]
# Text notes beside the media, so that the collection mixes all four modalities.
NOTES = {
    "kettle.txt": "Remember to descale the kettle before making tea for the guests.",
    "zoo.txt": "At the zoo we watched the giraffes eat leaves from the tallest trees.",
    "band.txt": "Band practice on Thursday: bring the drum sticks and the spare cymbal.",
    "farm.txt": "Farm visit: cows in the barn, and a rooster crowing at dawn.",
}
# The demo's searches: (what is asked, a text or a file name in the example folder).
QUERIES = [
    ("text", "a dog barking"),
    ("text", "a big cat with stripes"),
    ("text", "people walking down a street"),
    ("text", "a cup of tea"),
    ("file", "baboon.jpg"),
    ("file", "drumkit.ogg"),
]


@dataclass(frozen=True)
class Example:
    path: Path
    modality: str
    caption: str


@dataclass
class DemoRun:
    """Everything the demo did, for the CLI to print."""

    collection: Any
    examples: list[Example]
    ingest: Any  # omnibind.ingest.IngestReport
    searches: list[tuple[str, list]]
    ranks: "RankReport"


@dataclass
class RankReport:
    sims: np.ndarray  # captions x media cosine similarity
    hits: int
    by_modality: dict[str, tuple[int, int]]  # modality -> (first among all media, first among its own modality)
    chance: float


def build_examples(folder: Path) -> list[Example]:
    """Copy/assemble the example media into `folder` and write its captions.tsv."""
    for need, package in ((TUXPAINT_ROOT, "tuxpaint-stamps-default"), (OPENCV_DATA, "opencv-doc")):
        if not need.is_dir():
            raise DataMissingError(f"{need} not found: run `apt-get install {package}` (make setup does)")
    folder.mkdir(parents=True, exist_ok=True)
    examples: list[Example] = []
    for key in _TUX_IMAGES + _TUX_SOUNDS + _TUX_VIDEOS:
        assert stamp_split(key) == "test", f"{key} is a train stamp: the demo shows only held-out media"
    for key in _TUX_IMAGES:
        examples.append(_copy(TUXPAINT_ROOT / f"{key}.png", folder, "image", _caption(key)))
    for name, caption in _OPENCV_IMAGES:
        examples.append(_copy(OPENCV_DATA / name, folder, "image", caption))
    for key in _TUX_SOUNDS:
        sound = next(p for p in (TUXPAINT_ROOT / f"{key}.ogg", TUXPAINT_ROOT / f"{key}.wav") if p.exists())
        examples.append(_copy(sound, folder, "audio", _caption(key)))
    for name, caption in _OPENCV_VIDEOS:
        examples.append(_copy(OPENCV_DATA / name, folder, "video", caption))
    for key in _TUX_VIDEOS:
        out = folder / f"{Path(key).name}.mp4"
        if not out.exists():
            stamp_video(TUXPAINT_ROOT / f"{key}.png", TUXPAINT_ROOT / f"{key}.ogg", out)
        examples.append(Example(out, "video", _caption(key)))
    write_notes(folder)
    with open(folder / CAPTIONS, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t")
        writer.writerow(["file", "modality", "caption"])
        for ex in examples:
            writer.writerow([ex.path.name, ex.modality, ex.caption])
    return examples


def run_demo(space: Any, folder: Path, collection: str = "demo", k: int = 5, home: Path | None = None) -> DemoRun:
    """The README's main job: build (once) the example folder, ingest it into a collection
    (re-embedding it if the space changed), run the demo searches and rank every caption."""
    from omnibind.collection import Collection
    from omnibind.ingest import ingest

    examples = load_examples(folder)
    write_notes(folder)
    coll = Collection.open(collection, space=space, reembed=True, home=home)
    report = ingest(coll, folder, exclude=[CAPTIONS])
    searches = demo_searches(coll, folder, k)
    ids = [os.path.abspath(ex.path) for ex in examples]
    rows = {r["id"]: r["vector"] for r in coll.get(ids, ["id", "vector"])}
    media = np.stack([rows[i] for i in ids]) if len(rows) == len(ids) else None
    return DemoRun(coll, examples, report, searches, rank_report(space, examples, media))


def load_examples(folder: Path) -> list[Example]:
    """Read `folder/captions.tsv`, building the folder first if it does not exist yet."""
    if not (folder / CAPTIONS).exists():
        return build_examples(folder)
    with open(folder / CAPTIONS, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [Example(folder / r["file"], r["modality"], r["caption"]) for r in rows]


def write_notes(folder: Path) -> list[Path]:
    """The demo's text notes, in `folder/notes/`."""
    (folder / "notes").mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in NOTES.items():
        path = folder / "notes" / name
        if not path.exists():
            path.write_text(text + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def demo_searches(collection, folder: Path, k: int = 5) -> list[tuple[str, list]]:
    """Run QUERIES against a collection of the example folder: [(query label, hits)]."""
    from omnibind.search import search

    out = []
    for kind, query in QUERIES:
        target = folder / query if kind == "file" else query
        if kind == "file" and not target.exists():
            raise OmnibindError(f"demo query file {target} is missing: rebuild the example folder")
        label = f"file {query}" if kind == "file" else repr(query)
        hits = search(collection, target, k=k + (1 if kind == "file" else 0))
        if kind == "file":  # the query file itself is in the collection: show what else it finds
            hits = [h for h in hits if h.id != os.path.abspath(target)][:k]
        out.append((label, hits))
    return out


def rank_report(space, examples: list[Example], media: np.ndarray | None = None) -> RankReport:
    """Embed captions (and media, unless their vectors are given); a caption 'hits' when its own
    media is the most similar."""
    captions = space.embed([ex.caption for ex in examples])
    media = space.embed([ex.path for ex in examples]) if media is None else media
    sims = captions @ media.T
    best = sims.argmax(axis=1)
    modality = np.array([ex.modality for ex in examples])
    by_modality: dict[str, tuple[int, int]] = {}
    for i, ex in enumerate(examples):
        same = np.where(modality == ex.modality, sims[i], -np.inf)
        overall, within = by_modality.get(ex.modality, (0, 0))
        by_modality[ex.modality] = (overall + int(best[i] == i), within + int(same.argmax() == i))
    return RankReport(sims, int((best == np.arange(len(examples))).sum()), by_modality, 1.0)


def _caption(key: str) -> str:
    return (TUXPAINT_ROOT / f"{key}.txt").read_text("utf-8").splitlines()[0].strip()


def _copy(src: Path, folder: Path, modality: str, caption: str) -> Example:
    if not src.exists():
        raise OmnibindError(f"example source {src} is missing")
    dest = folder / src.name
    if not dest.exists():
        shutil.copyfile(src, dest)
    return Example(dest, modality, caption)


def stamp_video(picture: Path, sound: Path, out: Path, fps: int = 10) -> Path:
    """A short MP4: the picture slowly zooming in, with the sound effect as soundtrack."""
    import av
    from PIL import Image

    from omnibind.inputs import load_file, to_rgb

    rate = 44100
    samples = np.concatenate(list(load_file(sound).payload.stream(rate, rate)))
    seconds = max(2.0, samples.size / rate)
    base = to_rgb(Image.open(picture)).resize((320, 320))
    tmp = out.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width = video.height = 320
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=rate)
        audio.layout = "mono"
        frames = int(seconds * fps)
        for i in range(frames):
            crop = int(24 * i / max(1, frames - 1))
            frame = base.crop((crop, crop, 320 - crop, 320 - crop)).resize((320, 320))
            container.mux(video.encode(av.VideoFrame.from_image(frame)))
        container.mux(video.encode())
        size = audio.codec_context.frame_size or 1024
        for start in range(0, samples.size, size):
            chunk = samples[start : start + size]
            frame = av.AudioFrame.from_ndarray(chunk[None, :].astype(np.float32), format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    tmp.replace(out)
    return out
