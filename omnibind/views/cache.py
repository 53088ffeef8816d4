"""A disk cache of what the word-finding views found (speech transcripts, text in images), keyed
by the content's sha256 (`bind.cache.content_key`, as the feature cache) and the view's name and
version.

Evaluation re-embeds the same real files on every run with a new space or new head weights; the
transcripts and OCR lines do not change with the space, so they are found once. Only segments
that carry words are cached (time windows hold pieces of media and are cheap to cut again).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from omnibind.views import Segment


class SegmentCache:
    """Segments with words, as JSON files under `root/<view>-<version>/<sha[:2]>/<sha>.json`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, view: str, version: str, key: str) -> Path:
        return self.root / f"{view}-{version}" / key[:2] / f"{key}.json"

    def get(self, view: str, version: str, key: str) -> list[Segment] | None:
        try:
            rows = json.loads(self._path(view, version, key).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return [Segment(r["kind"], text=r["text"], start=r.get("start"), end=r.get("end"), page=r.get("page"),
                        chars=tuple(r["chars"]) if r.get("chars") else None, confidence=r.get("confidence"))
                for r in rows]

    def put(self, view: str, version: str, key: str, segments: list[Segment]) -> None:
        """Atomic (temp file + rename): a crash never leaves half a list."""
        rows = [{"kind": s.kind, "text": s.text, "start": s.start, "end": s.end, "page": s.page,
                 "chars": list(s.chars) if s.chars else None, "confidence": s.confidence}
                for s in segments if s.text is not None]
        path = self._path(view, version, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(rows), encoding="utf-8")
        os.replace(tmp, path)
