"""What every evaluation task shares: its result record, where its data came from, and the
retrieval and label-prompt helpers. Kept apart from suite.py so that task modules (the
out-of-domain sets, say) can build results without importing the suite that lists them."""

from __future__ import annotations

import functools
import importlib.metadata
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omnibind.evaluate import metrics as M

MATRYOSHKA_DIMS = (16, 32, 64, 128, 256, 384)
HISTOGRAM_PAIRS = 2000  # unmatched pairs sampled per task for the similarity histograms
SEED = 0


@dataclass
class TaskResult:
    """One task on one space: headline metrics plus what the plots need."""

    task: str
    kind: str  # retrieval | classification | sts
    dataset: dict[str, Any]
    metrics: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)  # matryoshka curve, similarity samples
    seconds: float = 0.0


@functools.cache
def debian_version(package: str) -> str | None:
    """The installed Debian package's version (cached: dpkg-query is slow), None if absent."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def pypi_version(package: str) -> str | None:
    """The installed PyPI distribution's version, None if absent."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _source(kind: str, package: str) -> dict[str, Any]:
    version = debian_version(package) if kind == "debian" else pypi_version(package)
    return {"source": f"{kind}:{package}", "version": version}


def _matched_unmatched(a: np.ndarray, b: np.ndarray, relevant: list[set[int]] | None = None) -> dict[str, list[float]]:
    """Cosines of matched pairs and of a fixed random sample of unmatched pairs (histograms)."""
    sims = a @ b.T
    rel = relevant if relevant is not None else [{i} for i in range(len(a))]
    matched = [round(float(sims[i, j]), 4) for i, js in enumerate(rel) for j in js]
    rng = np.random.default_rng(SEED)
    qi, ij = rng.integers(0, len(a), HISTOGRAM_PAIRS * 2), rng.integers(0, len(b), HISTOGRAM_PAIRS * 2)
    unmatched = [round(float(sims[q, j]), 4) for q, j in zip(qi, ij) if j not in rel[q]][:HISTOGRAM_PAIRS]
    return {"matched": matched, "unmatched": unmatched}


def _retrieval(name: str, a: np.ndarray, b: np.ndarray, names: tuple[str, str], dataset: dict[str, Any],
               matryoshka: bool = False) -> TaskResult:
    metrics = M.retrieval_both_directions(a, b, None, *names)
    extra: dict[str, Any] = {"similarities": {f"{names[0]}-{names[1]}": _matched_unmatched(a, b)}}
    if matryoshka:
        def r_at(dim: int, k: str) -> float:
            return M.retrieval_metrics(M.truncate(a, dim) @ M.truncate(b, dim).T)[k]

        dims = [d for d in MATRYOSHKA_DIMS if d <= a.shape[1]]
        extra["matryoshka"] = {f"{names[0]}->{names[1]} {k}": M.matryoshka_curve(functools.partial(r_at, k=k), dims)
                               for k in ("R@1", "R@5", "R@10")}
    return TaskResult(name, "retrieval", dataset, metrics, extra)


def _label_vectors(embed: Callable[[Sequence[str], str], np.ndarray], names: Sequence[str], templates: Sequence[str]) -> np.ndarray:
    """One unit vector per class: the mean of its prompts' embeddings (CLIP's prompt ensembling)."""
    prompts = embed([t.format(n) for n in names for t in templates], "text")
    vecs = prompts.reshape(len(names), len(templates), -1).mean(1)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
