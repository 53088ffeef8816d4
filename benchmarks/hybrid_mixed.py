"""Vector against hybrid (the default) on the held-out mixed collection of tests/test_first_hour.py
(omnibind/evaluate/mixed.py): does fusing words keep the photo in the mixed top 5 and keep sounds
from crowding the list? Acceptance only (test split): nothing is chosen here.

    python benchmarks/hybrid_mixed.py    # one JSON line per mode
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import omnibind
from omnibind import fulltext
from omnibind.collection import Collection
from omnibind.evaluate.mixed import measure, mixed_set
from omnibind.search import search


def main() -> None:
    data = mixed_set()
    with tempfile.TemporaryDirectory() as tmp:
        c = Collection.open(Path(tmp) / "mixed", omnibind.load_space())
        c.add(data.items, ids=data.ids)
        c.calibration.refresh()
        fulltext.ensure_fts(c)
        for mode in ("vector", "hybrid"):
            print(json.dumps({"split": "test", "set": "mixed", "mode": mode, **measure(search, c, data, mode=mode)}))


if __name__ == "__main__":
    main()
