"""A collection's calibration sample: a fixed random sample of each modality's vectors.

Search standardises a query's cosines against the query's cosines to this sample ("how unusual is
this item for this query, among items of its modality"; omnibind/search.py). The sample is state of
the collection, kept in `calibration.npz` beside its table, redrawn after every ingest (`refresh`)
and cached in memory until then. Deterministic for a given table: rows are drawn by sorted id.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from omnibind import modalities

FILE = "calibration.npz"
SAMPLE_PER_MODALITY = 512
REFERENCE_TEXTS = 500  # class names: the text sample of a collection with too few words of its own

# () -> (ids, modality per row, vectors [n, dim]) of every row of the collection
RowReader = Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]]


class Calibration:
    """The per-modality reference samples of one collection (see the module docstring)."""

    def __init__(self, folder: Path, read_rows: RowReader, per_modality: int = SAMPLE_PER_MODALITY, seed: int = 0) -> None:
        self.path = Path(folder) / FILE
        self._read_rows, self.per_modality, self.seed = read_rows, per_modality, seed
        self._samples: dict[str, np.ndarray] | None = None
        self._lock = threading.Lock()  # one redraw at a time (server threads may all find it stale)

    def samples(self) -> dict[str, np.ndarray]:
        """modality -> sample vectors (drawn now if the file is missing)."""
        if self._samples is None:
            if not self.path.exists():
                self.refresh()
            with np.load(self.path) as data:
                self._samples = {k: data[k] for k in data.files}
        return self._samples

    def stale(self, counts: dict[str, int]) -> bool:
        """Whether the sample no longer fits the table: a modality appeared or vanished, or a
        modality's sample is more than 10% off the size it would be drawn at now (a sample fitted on
        5 rows, e.g. by an ingest killed before its end, is redrawn once the table holds 200)."""
        have = {m: len(v) for m, v in self.samples().items()}
        want = {m: min(n, self.per_modality) for m, n in counts.items() if n}
        if set(have) != set(want):
            return True
        return any(abs(have[m] - want[m]) > max(1, 0.1 * want[m]) for m in want)

    def text_reference(self, space: Any) -> np.ndarray:
        """A stand-in text sample for a collection whose words are too few to calibrate against
        (two OCR lines among a thousand sound windows): the anchor's vectors of REFERENCE_TEXTS
        ImageNet class names, the same for every collection of a space (cached beside the sample)."""
        path = self.path.with_name(f"reference-text-{space.fingerprint()[:16]}.npy")
        if path.exists():
            return np.load(path)
        from omnibind.backbones.efficientnet import imagenet_class_names  # the one reader of that list

        names = [synonyms[0] for synonyms in imagenet_class_names()]
        vectors = space.embed(names[:: max(1, len(names) // REFERENCE_TEXTS)][:REFERENCE_TEXTS], views=())
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}.npy")
        np.save(tmp, vectors.astype(np.float32))
        os.replace(tmp, path)
        return vectors

    def refresh(self) -> Path:
        """Redraw the samples from the table as it is now and write them atomically."""
        with self._lock:
            return self._redraw()

    def _redraw(self) -> Path:
        ids, modality, vectors = self._read_rows()
        order = np.argsort(ids, kind="stable")  # independent of the order rows were written in
        rng = np.random.default_rng(self.seed)
        samples = {}
        present = set(modality.tolist())
        for m in [m for m in modalities.names() if m in present]:  # table order: the rng draws in it
            rows = order[modality[order] == m]
            pick = rows if len(rows) <= self.per_modality else rng.choice(rows, self.per_modality, replace=False)
            samples[str(m)] = vectors[np.sort(pick)].astype(np.float32)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}-{threading.get_ident()}.npz")
        np.savez(tmp, **samples)
        os.replace(tmp, self.path)
        self._samples = None
        return self.path
